"""The python tool: the user's namespace both ways, captured output, errors, timeouts, truncation."""
from __future__ import annotations

from gptoss_lab.tools.python import MAX_OUTPUT_CHARS, PythonTool, truncate


def test_code_sees_and_changes_the_users_namespace():
    ns = {"data": [1, 2, 3, 6]}
    tool = PythonTool(ns)
    assert tool.execute("print(sum(data) / len(data))").output == "3.0\n"
    assert tool.execute("total = sum(data)").output == ""
    assert ns["total"] == 12


def test_last_expression_value_is_shown_like_a_cell():
    assert PythonTool({}).execute("x = 4\nx * 10").output == "40\n"


def test_errors_come_back_as_a_traceback_of_the_model_code():
    result = PythonTool({}).execute("y = 1\nprint(undefined_name)")
    assert result.status == "error"
    assert "NameError: name 'undefined_name' is not defined" in result.output
    assert "line 2" in result.output and "gptoss_lab" not in result.output


def test_syntax_error():
    result = PythonTool({}).execute("def f(:")
    assert result.status == "error" and "SyntaxError" in result.output


def test_timeout_stops_runaway_code():
    result = PythonTool({}, timeout=0.5).execute("print('start')\nwhile True: pass")
    assert result.status == "timeout"
    assert result.output.startswith("start") and "Timed out after 0.5 s" in result.output
    assert result.seconds < 5


def test_long_output_is_cut_with_a_note():
    result = PythonTool({}).execute("print('x' * 50000)")
    assert len(result.output) < MAX_OUTPUT_CHARS + 100
    assert "characters cut" in result.output
    assert truncate("short") == "short"
