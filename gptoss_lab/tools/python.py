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
from typing import Any, Literal

from openai_harmony import ToolNamespaceConfig

from ..events import ToolCall
from .base import Tool, ToolResult

MAX_OUTPUT_CHARS = 6000
_FILENAME = "<gptoss-python>"
DESCRIPTION = (
    "Use this tool to execute Python code in your chain of thought. The code runs in the user's live "
    "Jupyter kernel (IPython): the user's variables are available to it, and whatever it defines stays "
    "there for the user. python will respond with the output of the execution (printed text, the value "
    "of the last expression, or the traceback){timeout}. "
    "The user may have to approve each call before it runs."
)


class ToolTimeout(Exception):
    """The model's code ran past the tool's timeout."""


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


class PythonTool(Tool):
    """Runs model-written code in `namespace` (the IPython user namespace inside a kernel)."""

    name = "python"

    def __init__(self, namespace: dict[str, Any] | None = None, *, timeout: float | None = 120.0) -> None:
        self.namespace = namespace if namespace is not None else {}
        self.timeout = timeout

    def system_config(self) -> ToolNamespaceConfig:
        """The python namespace, saying truthfully where the code runs (this kernel) and its timeout,
        instead of openai-harmony's default sandbox text."""
        limit = f" or time out after {self.timeout:g} seconds" if self.timeout else ""
        return ToolNamespaceConfig(name="python", description=DESCRIPTION.format(timeout=limit), tools=[])

    def answers(self, recipient: str) -> bool:
        # gpt-oss also writes `to=python code` (a content type) and `python.exec`
        return recipient.split(" ")[0] in ("python", "python.exec")

    def author(self, call: ToolCall) -> str:
        return "python"

    def approval_question(self, call: ToolCall) -> str:
        return "Run this code in your kernel?"

    def run(self, call: ToolCall) -> ToolResult:
        """Run the call's code (see `execute`)."""
        return self.execute(call.input)

    def execute(self, code: str) -> ToolResult:
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
