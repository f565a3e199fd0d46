"""The python tool: code the model writes runs in THIS kernel, in the user's namespace.

The user's variables are visible to the model's code and what the code defines stays there,
exactly like a notebook cell. The code runs under `containment.contain`: on its own thread, with
a timeout it cannot defeat, unable to end the kernel from Python, stopped by the user's interrupt
(see that module for what no in-process guard can prevent). Its output (stdout, stderr, the last
expression's value, or the traceback) is captured as text, bounded while it is written, and fed
back to the model.
"""
from __future__ import annotations

import ast
import builtins
import functools
import io
import sys
import time
import traceback
from collections.abc import Callable
from types import CodeType
from typing import Any

from openai_harmony import ToolNamespaceConfig

from .. import settings
from ..events import ToolCall
from . import containment
from .base import TIMEOUT_HINT, Tool, ToolResult, interrupted, reporting
from .containment import Seized, ToolTimeout, contain, deadline

__all__ = ["MAX_OUTPUT_CHARS", "Capture", "PythonTool", "ToolTimeout", "deadline", "truncate"]

# This module's functions run on the code's thread after it (the value's repr, the output's writes): they look
# builtins up in a copy, as containment's do, so code that empties `builtins` still has its value shown.
__builtins__ = dict(vars(builtins))
MAX_OUTPUT_CHARS = 6000
_LOCK = type(containment._allocate_lock())
_FILENAME = "<gptoss-python>"
_LAB_FILES = {sys._getframe().f_code.co_filename, containment._HERE}   # frames left out of tracebacks
DESCRIPTION = (
    "Use this tool to execute Python code in your chain of thought. The code runs in the user's live "
    "Jupyter kernel (IPython): the user's variables are available to it, and whatever it defines stays "
    "there for the user. python will respond with the output of the execution (printed text, the value "
    "of the last expression, or the traceback){timeout}. "
    "The user may have to approve each call before it runs."
)


class Capture(io.TextIOBase):
    """A text stream that keeps at most `limit` characters while it is written: the first two thirds
    and the last third, with the number of characters cut between them stated (thread-safe)."""

    def __init__(self, limit: int = MAX_OUTPUT_CHARS) -> None:
        self._empty(limit)

    def _empty(self, limit: int) -> None:
        """No text kept yet, and the bounds for `limit` characters."""
        self.limit, self.total = limit, 0
        self._head_size, self._tail_size = limit * 2 // 3, limit // 3
        self._keep = limit - self._head_size      # tail kept while the whole text may still fit
        self._head: list[str] = []
        self._tail: list[str] = []
        self._head_len = self._tail_len = 0
        self._lock = containment._allocate_lock()

    def _seized(self) -> Seized:
        """This capture's lock, taken as `Seized` takes it (the code can take it and keep it). The code reaches its
        capture (the router's closure) and replaced the lock with an object whose `acquire` looped: the lab's read of
        the output after the call ran it on the kernel's thread, and the turn never ended. Parts that are not the lab's
        kinds (a lock, lists, ints, which run no code of another's) are dropped, with the text kept so far."""
        if not (type(self._lock) is _LOCK and type(self._head) is type(self._tail) is list
                and type(self.limit) is type(self.total) is type(self._head_size) is type(self._tail_size)
                is type(self._keep) is type(self._head_len) is type(self._tail_len) is int):
            self._empty(MAX_OUTPUT_CHARS)
        return Seized(self._lock)

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        text = str.__str__(text)  # a str subclass's own __len__/__getitem__ cannot unbound the capture
        written = len(text)
        with self._seized():   # not `with self._lock`: the code can take it (sys.stdout._lock) and keep it
            self.total += written
            if self._head_len < self._head_size:
                piece = text[: self._head_size - self._head_len]
                self._head.append(piece)
                self._head_len += len(piece)
                text = text[len(piece):]
            if len(text) >= self._keep:
                self._tail, self._tail_len = [text[-self._keep:]], self._keep
            elif text:
                self._tail.append(text)
                self._tail_len += len(text)
                if self._tail_len > 2 * self._keep:  # trim now and then: amortised O(1) per character
                    self._tail, self._tail_len = ["".join(self._tail)[-self._keep:]], self._keep
        return written

    def writable(self) -> bool:
        return True

    def getvalue(self) -> str:
        with self._seized():
            head, tail = "".join(self._head), "".join(self._tail)
        if self.total <= self.limit:
            return head + tail
        tail = tail[-self._tail_size:]
        return f"{head}\n... [{self.total - len(head) - len(tail)} characters cut] ...\n{tail}"


def truncate(text: str, limit: int = MAX_OUTPUT_CHARS) -> str:
    """Keep the head and tail of long output and say how much was cut, so the model knows."""
    capture = Capture(limit)
    capture.write(text)
    return capture.getvalue()


class PythonTool(Tool):
    """Runs model-written code in `namespace` (the IPython user namespace inside a kernel)."""

    name = "python"

    def __init__(self, namespace: dict[str, Any] | None = None, *, timeout: float | None = 120.0) -> None:
        """`timeout`: seconds, as `%gptoss config timeout=` takes them (0, NaN or a negative one timed out at once or
        never); None: no timeout."""
        self.namespace = namespace if namespace is not None else {}
        self.timeout = timeout if timeout is None else settings.make({"timeout": timeout}).timeout

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

    def run(self, call: ToolCall, stop: Callable[[], bool] = lambda: False, timeout: float | None = None) -> ToolResult:
        """Run the call's code (see `execute`) for at most `timeout` seconds, the turn's (the tool's own where None: an
        earlier call's code set `tool.timeout = None`, and the turn's later calls ran unbounded); Stop in the view
        interrupts it like a kernel interrupt."""
        return self._execute(call.input, stop, self.timeout if timeout is None else timeout)

    def execute(self, code: str, *, stop: Callable[[], bool] = lambda: False) -> ToolResult:
        """Execute `code` like a notebook cell: statements run, the last expression's value is shown.

        Never raises for anything the code does: errors, `exit()`, the timeout and the user's
        interrupt (status "interrupted", with what it printed until then) come back as the result.
        """
        return self._execute(code, stop, self.timeout)

    def _execute(self, code: str, stop: Callable[[], bool], timeout: float | None) -> ToolResult:
        """`execute` under `timeout` seconds (None: no timeout)."""
        start = time.perf_counter()
        try:
            body, last = _compile(code)
        except Exception as err:  # SyntaxError; ValueError for a null byte; RecursionError for deep nesting
            return ToolResult("error", truncate("".join(traceback.format_exception_only(type(err), err))),
                              time.perf_counter() - start)
        out, shown = Capture(), []
        with reporting(None):   # its text is its output, never the card's status line
            outcome = contain(functools.partial(_run, body, last, self.namespace, out, shown), timeout=timeout,
                              output=out, namespace=self.namespace, label="the model's python code", stop=stop)
        if outcome.status == "error":  # formatted on the code's thread; this one never touches the error
            out.write(shown[0] if shown else "The code's error could not be shown (formatting it failed).\n")
        elif outcome.status == "timeout":
            said = f"Timed out after {timeout:g} s ({TIMEOUT_HINT})"   # as a function's or the browser's
            out.write("\n" + said if out.total else said)
        # bounded again: the code reaches its capture's parts (`sys.stdout._head.append('y' * 10**6)` was all shown)
        text = truncate(out.getvalue(), 2 * MAX_OUTPUT_CHARS) + _notes(outcome, timeout)
        if outcome.status == "interrupted":
            result = interrupted(text)
            result.seconds = time.perf_counter() - start
            return result
        return ToolResult(outcome.status, text, time.perf_counter() - start)


def _compile(code: str) -> tuple[CodeType, CodeType | None]:
    """The code's statements, and its last expression on its own (its value is shown, as in a cell)."""
    tree = ast.parse(code, filename=_FILENAME)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    try:
        expression = compile(ast.Expression(last.value), _FILENAME, "eval") if last is not None else None
        return compile(tree, _FILENAME, "exec"), expression
    except SyntaxError as err:  # `return` outside a function and the like: show the line, as Python does
        lines = code.splitlines()
        if err.text is None and err.lineno and err.lineno <= len(lines):
            err.text = lines[err.lineno - 1] + "\n"
        raise


def _run(body: CodeType, last: CodeType | None, namespace: dict[str, Any], out: Capture, shown: list[str]) -> None:
    try:
        namespace.setdefault("__builtins__", builtins)  # exec's default would be this module's copy
        exec(body, namespace)
        if last is not None:
            value = eval(last, namespace)
            if value is not None:
                out.write(_bounded_repr(value, out.limit) + "\n")
    except BaseException as err:
        # The error is the model's object (its __str__, its frames' source loaders): it is formatted here,
        # under the timeout and the guards, and its frames dropped here, so no finalizer of theirs runs
        # on the caller's thread later.
        try:
            shown.append(_format_error(err))
        finally:
            chained: BaseException | None = err
            for _ in range(100):  # the exception and the ones it was raised from or while handling
                if chained is None:
                    break
                chained.__traceback__, chained = None, chained.__cause__ or chained.__context__
        raise


def _notes(outcome: containment.Outcome, timeout: float | None) -> str:
    """What the model should know about what its code changed of the kernel's and was put back, and about code that is
    still going after the call returned (threads it started are stopped at the call's timeout)."""
    notes = ""
    if outcome.put_back:   # as a cell of the user's would find them next
        notes += f"\n[Put back after the call, as they were before it: {'; '.join(outcome.put_back)}]"
    if outcome.still_running:
        notes += ("\nThe code did not stop when told (it is stuck in native code or keeps catching the stop) "
                  "and may still be running in the background.")
    if outcome.threads:  # (at the timeout they were stopped with the code: those left are stuck)
        ends = timeout if outcome.status in ("done", "error") else None
        notes += _left_running(outcome.threads, "thread", "threads", "stopped", ends)
    if outcome.processes:
        notes += _left_running(outcome.processes, "process", "processes", "ended", timeout)
    return notes


def _left_running(count: int, noun: str, nouns: str, ended: str, timeout: float | None) -> str:
    """The note on `count` threads or processes of the code's still running, and when they are `ended`."""
    several = count > 1
    then = f": {'they are' if several else 'it is'} {ended} at the call's {timeout:g} s timeout" if timeout else ""
    return (f"\n[{count} {nouns if several else noun} started by this code {'are' if several else 'is'} still "
            f"running in the background{then}]")


_BRACKETS = {list: ("[", "]"), tuple: ("(", ")"), set: ("{", "}"), frozenset: ("frozenset({", "})"),
             dict: ("{", "}")}


def _bounded_repr(value: Any, limit: int, _seen: frozenset[int] = frozenset()) -> str:
    """repr(value); but a str/bytes or builtin container whose repr would be cut anyway (longer than
    `limit`) is shown by its head and tail with the cut stated, without building its whole repr."""
    kind = type(value)
    if kind in (str, bytes) and len(value) > limit:
        head, tail = value[: limit // 2], value[-(limit // 4):]
        cut = f" ... [{len(value) - len(head) - len(tail)} characters cut] ... "
        return repr(head)[:-1] + cut + repr(tail)[1 if kind is str else 2:]
    if kind not in _BRACKETS or len(value) <= limit // 3:  # each item takes 3 characters or more
        return repr(value)
    if id(value) in _seen:
        return "[...]"
    seen = _seen | {id(value)}

    def shown(item: Any) -> str:
        if kind is dict:
            return f"{_bounded_repr(item[0], limit, seen)}: {_bounded_repr(item[1], limit, seen)}"
        return _bounded_repr(item, limit, seen)

    items = value.items() if kind is dict else value
    head = _take(map(shown, items), limit // 2)
    ordered = kind not in (set, frozenset)  # a set's last items are no more telling than its others
    tail = _take(map(shown, reversed(items if kind is dict else value)), limit // 4)[::-1] if ordered else []
    tail = tail[: max(0, len(value) - len(head))]
    opener, closer = _BRACKETS[kind]
    cut = f"... [{len(value) - len(head) - len(tail)} items cut] ..."
    return opener + ", ".join([*head, cut, *tail]) + closer


def _take(reprs: Any, chars: int) -> list[str]:
    """Item reprs from the iterator until together they pass `chars` characters."""
    taken: list[str] = []
    total = 0
    for text in reprs:
        taken.append(text)
        total += len(text) + 2
        if total >= chars:
            break
    return taken


def _format_error(err: BaseException | None) -> str:
    """The traceback as Python prints it, from the model's code down (the lab's own frames left out)."""
    if err is None:
        return ""
    report = traceback.TracebackException(type(err), err, err.__traceback__)
    pending = [report]
    while pending:  # the exception, and the ones it was raised from or while handling
        part = pending.pop()
        part.stack = traceback.StackSummary.from_list([f for f in part.stack if f.filename not in _LAB_FILES])
        pending += [e for e in (part.__cause__, part.__context__) if e is not None]
    return "".join(report.format())
