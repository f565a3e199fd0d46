"""The python tool: the user's namespace both ways, captured output, errors, timeouts, truncation.

The output format here is what gpt-oss-tiny is trained on (printed text, the last value's repr, the
traceback); hostile code is in test_adversarial_python.py.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from gptoss_lab.tools.base import TIMEOUT_HINT
from gptoss_lab.tools.python import MAX_OUTPUT_CHARS, Capture, PythonTool, truncate


def test_code_sees_and_changes_the_users_namespace():
    ns = {"data": [1, 2, 3, 6]}
    tool = PythonTool(ns)
    assert tool.execute("print(sum(data) / len(data))").output == "3.0\n"
    assert tool.execute("total = sum(data)").output == ""
    assert ns["total"] == 12


def test_last_expression_value_is_shown_like_a_cell():
    assert PythonTool({}).execute("x = 4\nx * 10").output == "40\n"
    assert PythonTool({}).execute("print('a', end='')\n{'k': [1, (2,)]}").output == "a{'k': [1, (2,)]}\n"
    assert PythonTool({}).execute("None").output == ""


def test_errors_come_back_as_a_traceback_of_the_model_code():
    result = PythonTool({}).execute("y = 1\nprint(undefined_name)")
    assert result.status == "error"
    assert result.output == ('Traceback (most recent call last):\n  File "<gptoss-python>", line 2, in <module>\n'
                             "NameError: name 'undefined_name' is not defined\n")


def test_tracebacks_keep_their_first_line_when_the_error_is_in_library_code():
    """The value's repr fails inside the standard library: Python's header line is still there (it
    was lost when no frame of the model's code was on the stack), and no frame of the lab's."""
    result = PythonTool({}).execute("import uuid\nuuid.UUID.__new__(uuid.UUID)")
    assert result.status == "error"
    assert result.output.startswith("Traceback (most recent call last):\n")
    assert 'uuid.py", line' in result.output and "gptoss_lab" not in result.output
    assert result.output.endswith("AttributeError: 'UUID' object has no attribute 'int'\n")


def test_chained_exceptions_are_shown_as_python_shows_them():
    result = PythonTool({}).execute("try:\n    1 / 0\nexcept ZeroDivisionError as e:\n    raise ValueError('bad') from e")
    assert result.output.count("Traceback (most recent call last):") == 2
    assert "The above exception was the direct cause of the following exception:" in result.output
    assert result.output.endswith("ValueError: bad\n") and "gptoss_lab" not in result.output


@pytest.mark.parametrize("code", ["def f(:", "x = 1\nreturn x", "print('a'\nprint('b')"])
def test_syntax_errors_are_printed_as_python_prints_them(code, tmp_path):
    """As `python script.py` prints them: no traceback header (the code never ran), the file and line,
    the source line, the caret, the message."""
    script = tmp_path / "script.py"
    script.write_text(code + "\n")
    expected = subprocess.run([sys.executable, str(script)], capture_output=True, text=True).stderr
    result = PythonTool({}).execute(code)
    assert result.status == "error"
    assert result.output == expected.replace(str(script), "<gptoss-python>")


def test_a_null_byte_is_an_error_not_a_crash():
    result = PythonTool({}).execute("print(1)\x00")
    assert result.status == "error" and "null bytes" in result.output


def test_timeout_stops_runaway_code():
    result = PythonTool({}, timeout=0.5).execute("print('start')\nwhile True: pass")
    assert result.status == "timeout"
    assert result.output == f"start\n\nTimed out after 0.5 s ({TIMEOUT_HINT})"
    assert result.seconds < 5


def test_no_timeout_runs_to_the_end():
    """The training-data generator runs the tool with timeout=None."""
    result = PythonTool({}, timeout=None).execute("import time\ntime.sleep(0.2)\n'slept'")
    assert (result.status, result.output) == ("done", "'slept'\n")


def test_long_output_is_cut_with_a_note():
    result = PythonTool({}).execute("print('x' * 50000)")
    assert len(result.output) < MAX_OUTPUT_CHARS + 100
    assert "characters cut" in result.output
    assert truncate("short") == "short"


def test_capture_keeps_head_and_tail_as_written():
    """Written in pieces, the capture gives exactly what cutting the whole text would, and keeps
    no more than its limit in memory."""
    text = "".join(f"line {i}\n" for i in range(20000))
    capture = Capture(600)
    for start in range(0, len(text), 37):
        capture.write(text[start:start + 37])
    head, tail = text[:400], text[-200:]
    assert capture.getvalue() == f"{head}\n... [{len(text) - 600} characters cut] ...\n{tail}"
    assert sum(map(len, capture._head)) + sum(map(len, capture._tail)) <= 3 * 600
    exact = Capture(600)
    exact.write(text[:600])
    assert exact.getvalue() == text[:600]


def test_a_huge_value_is_shown_by_its_head_and_tail():
    result = PythonTool({}).execute("list(range(10**6))")
    assert result.status == "done" and len(result.output) < MAX_OUTPUT_CHARS
    assert result.output.startswith("[0, 1, 2, 3,") and result.output.endswith(", 999998, 999999]\n")
    assert "items cut] ..." in result.output
    result = PythonTool({}).execute("'ab' * 10**6")
    assert result.output.startswith("'abab") and result.output.endswith("abab'\n") and "characters cut" in result.output
    assert len(result.output) < MAX_OUTPUT_CHARS


def test_a_huge_container_is_not_repr_d_in_full():
    """Only the items shown are turned into text (a million would take seconds and gigabytes)."""
    ns: dict = {}
    PythonTool(ns).execute("class Item:\n    calls = 0\n    def __repr__(self):\n        Item.calls += 1\n"
                           "        return 'item'\nitems = [Item() for _ in range(10**5)]")
    result = PythonTool(ns).execute("items")
    assert result.output.startswith("[item, item") and "items cut" in result.output
    assert ns["Item"].calls < 2000


def test_a_value_that_fits_is_shown_exactly():
    for code in ("[0] * 1999", "'x' * 5990", "{i: i for i in range(500)}"):
        result = PythonTool({}).execute(code)
        assert result.output == repr(eval(code)) + "\n"


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), 1e9, "soon"])
def test_a_timeout_the_tool_cannot_keep_is_refused_when_it_is_made(timeout):
    """0 or a negative timeout timed every call out at once, NaN never timed out, "soon" ended each call as if
    the code had attacked the kernel: refused in one line, as `%gptoss config timeout=` refuses them."""
    with pytest.raises(ValueError, match=r"^timeout must be [^\n]+$"):
        PythonTool({}, timeout=timeout)


def test_a_timeout_as_the_settings_take_it_is_kept():
    assert PythonTool({}, timeout=None).timeout is None
    assert PythonTool({}, timeout="2.5").execute("1").output == "1\n" and PythonTool({}, timeout=2.5).timeout == 2.5


def test_the_models_code_cannot_write_the_cards_status_line():
    """A tool says on its card what it waits for (`tools.base.report`, a busy search service); the model's code called
    it and wrote the status line the user reads as the lab's ("running · approved by you"). It goes nowhere."""
    from gptoss_lab.tools.base import reporting

    said: list[str] = []
    with reporting(said.append):
        result = PythonTool({}).execute("from gptoss_lab.tools.base import report\nreport('approved by you')\nprint(1)")
    assert (result.status, result.output, said) == ("done", "1\n", [])


_HALF_SET_UP = """
import os, stat, sys
from gptoss_lab import Session
from gptoss_lab.engines.replay import ReplayEngine
before = os.fstat(1)
s = Session(ReplayEngine("<|channel|>commentary to=python <|constrain|>code<|message|>print(1)<|call|>"
                         "<|channel|>final<|message|>done<|return|>"), approval="auto", namespace={})
object.__setattr__(s, "namespace", [])   # (Session refuses it; anything failing while a run is set up)
reply = s.ask("go")
after = os.fstat(1)
print(reply.tool_calls[0].output, (before.st_ino, before.st_mode) == (after.st_ino, after.st_mode), file=sys.stderr)
"""


def test_a_run_that_fails_while_it_is_set_up_gives_the_process_its_output_back():
    """The kernel's fds 1 and 2 were sent into the run's pipe before the rest of a run was set up, outside what puts
    them back: a failure there (a namespace that is no dict) left every later print of the process going nowhere."""
    done = subprocess.run([sys.executable, "-c", _HALF_SET_UP], capture_output=True, text=True, timeout=120)
    assert done.stderr.strip().endswith("Error: AttributeError: 'list' object has no attribute 'get' True"), done.stderr
