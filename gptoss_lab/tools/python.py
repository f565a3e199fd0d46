"""The python tool: code the model writes runs in THIS kernel, in the user's namespace.

The user's variables are visible to the model's code and what the code defines stays there,
exactly like a notebook cell. Output (stdout, stderr, the last expression's value, or the
traceback) is captured as text and fed back to the model, cut to a bounded length.
"""
from __future__ import annotations

import ast
import contextlib
import io
import signal
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Literal

MAX_OUTPUT_CHARS = 6000
_FILENAME = "<gptoss-python>"


class ToolTimeout(Exception):
    """The model's code ran past the tool's timeout."""


@dataclass
class ToolResult:
    status: Literal["done", "error", "timeout"]
    output: str
    seconds: float


def truncate(text: str, limit: int = MAX_OUTPUT_CHARS) -> str:
    """Keep the head and tail of long output and say how much was cut, so the model knows."""
    if len(text) <= limit:
        return text
    head, tail = text[: limit * 2 // 3], text[-(limit // 3):]
    return f"{head}\n... [{len(text) - len(head) - len(tail)} characters cut] ...\n{tail}"


@contextlib.contextmanager
def alarm(seconds: float | None):
    """Raise ToolTimeout in the main thread after `seconds` (SIGALRM; a no-op off the main thread)."""
    if not seconds or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return

    def _raise(signum, frame):
        raise ToolTimeout(f"Timed out after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class PythonTool:
    """Runs model-written code in `namespace` (the IPython user namespace inside a kernel)."""

    def __init__(self, namespace: dict[str, Any] | None = None, *, timeout: float | None = 120.0) -> None:
        self.namespace = namespace if namespace is not None else {}
        self.timeout = timeout

    def run(self, code: str) -> ToolResult:
        """Execute `code` like a notebook cell: statements run, the last expression's value is shown."""
        start = time.perf_counter()
        out = io.StringIO()
        status: Literal["done", "error", "timeout"] = "done"
        try:
            tree = ast.parse(code, filename=_FILENAME)
        except SyntaxError:
            return ToolResult("error", truncate(traceback.format_exc(limit=0)), time.perf_counter() - start)
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out), alarm(self.timeout):
                exec(compile(tree, _FILENAME, "exec"), self.namespace)
                if last is not None:
                    value = eval(compile(ast.Expression(last.value), _FILENAME, "eval"), self.namespace)
                    if value is not None:
                        print(repr(value))
        except ToolTimeout as err:
            status = "timeout"
            out.write(f"\n{err}" if out.tell() else str(err))
        except KeyboardInterrupt:
            raise
        except BaseException as err:  # the model's error goes back to the model, never up the stack
            status = "error"
            out.write(_format_error(err))
        return ToolResult(status, truncate(out.getvalue()), time.perf_counter() - start)


def _format_error(err: BaseException) -> str:
    """A traceback that starts at the model's code (the lab's own frames are left out)."""
    tb = err.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != _FILENAME:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(err), err, tb))
