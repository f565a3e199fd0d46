"""The one shape every tool has, and the set of tools a turn may call.

Modelled on gpt-oss's `tools/tool.py`: a tool owns its name (the namespace the model addresses,
`python`, `browser`, `functions`), its configuration, what it shows the model (a namespace in the
system message, or function descriptions in the developer message) and its replies. The session
only asks the `Toolset` "who answers this recipient?" and never knows a tool's name or grammar.
"""
from __future__ import annotations

import builtins
import contextlib
import difflib
import functools
import inspect
import reprlib
import time
import types
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..events import Citation, ToolCall, ToolStatus

if TYPE_CHECKING:
    from openai_harmony import ToolDescription, ToolNamespaceConfig


@dataclass
class ToolResult:
    """What a tool call gave back: the text the model reads, and how it went."""

    status: ToolStatus
    output: str
    seconds: float = 0.0
    data: Any = None        # structured payload for views (search results, an opened page window)


def interrupted(output: str) -> ToolResult:
    """The result of a call the user interrupted while it ran: it may have had side effects, and the
    model is told so, with what it printed before the interrupt (one line when it printed nothing)."""
    if not output.strip():
        return ToolResult("interrupted", "Interrupted by the user while it ran, before it gave any output; it may have "
                                         "had side effects.")
    return ToolResult("interrupted", "Interrupted by the user while it ran; it may have had side effects. "
                                     f"Output before the interrupt:\n{output}")


# Which limit ended a call, and how to change it: the model reads it and the call's card shows it.
TIMEOUT_HINT = ("the turn's tool timeout; change it with %%gptoss --timeout SECONDS, %gptoss config timeout=SECONDS "
                "or ask(timeout=SECONDS)")
# The running `bounded` call's end on the monotonic clock and what ends it (see `call_limit`).
_CALL: ContextVar[tuple[float, BaseException] | None] = ContextVar("gptoss_call_limit", default=None)
# Where the running tool call says what it is doing (the turn's views; see `reporting`).
_PROGRESS: ContextVar[Callable[[str], None] | None] = ContextVar("gptoss_tool_progress", default=None)


def report(text: str) -> None:
    """Tell the views what the running tool call is doing now, in one line ("SearXNG is busy (HTTP 429), retrying in
    2 s: try 2 of 3"), so that a call that waits does not wait unseen; nothing outside a turn's call."""
    say = _PROGRESS.get()
    if say is not None:
        say(text)


@contextlib.contextmanager
def reporting(say: Callable[[str], None] | None) -> Iterator[None]:
    """While this runs, `report` hands its lines to `say` (the turn, which shows them on the call's card); None: to
    nobody (the model's code, which would write the card's status line the user reads as the lab's)."""
    token = _PROGRESS.set(say)
    try:
        yield
    finally:
        _PROGRESS.reset(token)


def bounded(work: Callable[[], ToolResult], timeout: float | None, stop: Callable[[], bool] | None) -> ToolResult:
    """`work()` run here, on the caller's thread, ended after `timeout` seconds (the model reads `Error: ToolTimeout:
    Timed out after 2 s (the turn's tool timeout; ...)`) or once `stop()` (the view's Stop) says yes (`interrupted`);
    timed."""
    from .containment import ToolTimeout, deadline

    start = time.perf_counter()
    limit = _CALL.set((time.monotonic() + timeout, ToolTimeout.after(timeout)()) if timeout else None)
    block = deadline(timeout, stop)
    try:
        with block:
            result = work()
    except ToolTimeout as err:
        result = ToolResult("timeout", f"Error: ToolTimeout: {err} ({TIMEOUT_HINT})")
    except KeyboardInterrupt:
        result = interrupted("")
    finally:
        _CALL.reset(limit)
    result.seconds = time.perf_counter() - start
    if block.taken_over:  # (a function that times itself with signal.alarm, or ignores SIGALRM, ran on for good)
        result.output += (f"\n[The call took the lab's timer over (SIGALRM's handler or the real-time timer): its "
                          f"{timeout:g} s timeout was raised into it from another thread, which reaches it only where "
                          f"it runs Python (it ran {result.seconds:.1f} s)]")
    return result


def call_limit() -> tuple[float, BaseException] | None:
    """The seconds left to the running tool call under the turn's timeout, and the ToolTimeout that ends it (`bounded`
    says it); None outside a call with a timeout. A tool that waits with a clock of its own (a web request) ends its
    wait by them, so the turn's one limit ends the call in the same words, whichever clock sees it first."""
    running = _CALL.get()
    return None if running is None else (max(0.0, running[0] - time.monotonic()), running[1])


def error_text(err: BaseException, note: str = "") -> str:
    """`Error: Type: message` on one line, what the model reads of a tool's failure and the call's card shows (a user
    function's `ValueError("bad\\n<|start|>assistant...")` gave both lines of Harmony-looking text after the error)."""
    said, read = _message_of(err)
    return f"Error: {type(err).__name__}: {note}{said if read else f'({said})'}"


def _meant(name: str, builtins: Iterable[str], namespace: Mapping[str, Any]) -> str:
    """` (did you mean 'double'?)` after an unknown tool's name (`dobule`, `Python`, which were refused with no hint):
    the built-in tool or function of the namespace nearest to it, when one is near, or `none` written in capitals;
    names written with spaces between them, with commas."""
    from ..settings import folded   # in here: functions imports this module, settings brings pydantic
    from .functions import FunctionTool

    if folded(name) == "none":   # `None`, `NONE`: no tools (`nope` is a name mistyped, not none)
        return " (did you mean 'none'?)"
    if len(words := name.split()) > 1:   # `tools="python browser"` was one unknown tool, with no word of commas
        return f" (separate tool names with commas: {','.join(words)!r})"
    functions = [key for key, value in namespace.items() if isinstance(key, str) and not key.startswith("_")
                 and (inspect.isfunction(value) or isinstance(value, (Tool, FunctionTool, functools.partial)))]
    choices = {folded(choice): choice for choice in [*functions, *builtins]}
    near = difflib.get_close_matches(folded(name), list(choices), n=1, cutoff=0.7)
    return f" (did you mean {choices[near[0]]!r}?)" if near else ""


def error_message(err: BaseException) -> str:
    """An exception's message on one line, its line breaks and control characters written out (`\\n`, `\\x1b`); also
    of one whose __str__ fails (it raised out of the call, failing the turn) or outlasts the tool call's deadline."""
    return _message_of(err)[0]


def _message_of(err: BaseException) -> tuple[str, bool]:
    """`error_message`, and whether it is the exception's own (not what is said of a message that could not be read)."""
    from ..widgets.sanitize import visible_line
    from .containment import ToolTimeout

    try:
        return visible_line(str(err)), True
    except ToolTimeout as stopped:  # (a message built in 12 s held a 3 s call 12 s)
        return f"its message could not be read in time: {stopped}", False
    except Exception:
        return "its message could not be read", False


class Tool(ABC):
    """Something the model can call. Subclasses set `name` and implement `run`."""

    name: str = ""

    def system_config(self) -> ToolNamespaceConfig | None:
        """The namespace this built-in tool adds to the system message (python, browser), if any."""
        return None

    def function_descriptions(self) -> list[ToolDescription]:
        """Function tools this tool adds to the developer message's `functions` namespace, if any."""
        return []

    def answers(self, recipient: str) -> bool:
        """Whether a message addressed `to=recipient` is for this tool (`browser.search` for `browser`)."""
        return recipient == self.name or recipient.startswith(self.name + ".")

    def author(self, call: ToolCall) -> str:
        """The author name of the tool's reply message (gpt-oss answers as the recipient it was called by)."""
        return call.recipient

    def refusal(self, call: ToolCall) -> str | None:
        """What the model reads of a call that cannot run at all (a function the tool does not have, arguments its
        schema refuses), answered at once and never put to the user to approve; None for a call that can run."""
        return None

    def approval_question(self, call: ToolCall) -> str:
        """The one-line question a view asks before the call runs under the `ask` policy."""
        return f"Run this {call.recipient} call?"

    def approval_scope(self, call: ToolCall) -> str | None:
        """What "Always allow" on this call allows for the rest of the conversation (the whole tool, by default);
        None for a call that is asked about every time, under `auto` too (the browser opening an address on this
        computer or its network)."""
        return self.name

    @abstractmethod
    def run(self, call: ToolCall, stop: Callable[[], bool] = lambda: False) -> ToolResult:
        """Do the call and say what happened; never raise for the model's mistakes (return an error result).

        `stop()` turns True when the user presses Stop; a tool that can run for long checks it and
        returns `interrupted(...)`. A tool whose `run` also names `timeout` is given the turn's seconds for one call
        (the cell's `--timeout`; `bounded` ends a call by both); python and functions are made per turn with it."""

    def citations(self, text: str) -> list[Citation]:
        """The citations in a final answer that point into this tool's results (the browser's)."""
        return []

    def reset(self) -> None:
        """Forget per-conversation state (e.g. the browser's page stack) when the conversation is cleared."""

    def snapshot(self) -> Any:
        """Per-conversation state as it is now, for `restore` when the turns after it are taken back."""
        return None

    def restore(self, snapshot: Any) -> None:
        """Go back to `snapshot` (`Session.rewind`: the browser's pages of a taken-back turn are gone with it)."""


class ToolSpecError(ValueError):
    """A tool list names something that is not a tool; the message is one line, written for the user."""


ToolSpec = str | Sequence["str | Callable[..., Any] | Tool"]
Builtin = Callable[[], Tool]


class Toolset:
    """The tools of one turn, asked by recipient; unknown recipients get a message listing what exists."""

    def __init__(self, tools: Iterable[Tool] = (), *, disabled: Iterable[str] = ()) -> None:
        self.tools: list[Tool] = list(tools)
        self.disabled = [name for name in disabled if name not in self.names]  # built-ins not enabled

    @classmethod
    def resolve(cls, spec: ToolSpec | None, namespace: Mapping[str, Any], builtins: Mapping[str, Builtin],
                *, timeout: float | None = None) -> Toolset:
        """Tools from `"python,get_weather"` or `["python", get_weather, my_tool]`.

        A name in `builtins` (python, browser) makes that tool; any other name is looked up in
        `namespace` (the notebook's variables): a `Tool` is used as is, a function becomes a
        function tool (run with `timeout`), a partial or callable object named as its variable is.
        `"none"` or `""` means no tools.
        """
        from .functions import FunctionTool, Functions

        items = _split(spec)
        tools: list[Tool] = []
        functions: dict[str, FunctionTool] = {}
        for item in items:
            name = item if isinstance(item, str) else None
            if name is not None:
                if name in builtins:
                    tools.append(builtins[name]())
                    continue
                if name not in namespace:
                    known = ", ".join([*builtins, "or a function defined in this kernel"])
                    raise ToolSpecError(f"unknown tool {name!r}: tools are {known}{_meant(name, builtins, namespace)}")
                item = namespace[name]
            if isinstance(item, Tool):
                tools.append(item)
                continue
            if not callable(item):
                # a variable by its name and type, an object by a short repr: a list's or a DataFrame's whole repr
                # made this one-line error hundreds of thousands of characters long
                shown = (f"{name!r} (a {type(item).__name__})" if name is not None
                         else " ".join(reprlib.repr(item).split()))
                raise ToolSpecError(f"tool {shown} is not callable; tools are {', '.join(builtins)} or functions")
            inner = item
            while isinstance(inner, functools.partial):
                inner = inner.func
            owner = None if isinstance(item, FunctionTool) else _machinery(inner)   # (one made with tool(): chosen)
            if owner is not None:
                yours = " or ".join(filter(None, (", ".join(builtins), "functions you define")))
                raise ToolSpecError(f"tool {name or getattr(inner, '__name__', type(inner).__name__)!r} is {owner}'s "
                                    f"own machinery, not a function of yours, and is not offered to the model: tools "
                                    f"are {yours}")
            own = getattr(item, "__name__", None)  # a partial or a callable object has none: the variable's name
            named = name if name is not None and not (isinstance(own, str) and own.isidentifier()) else None
            try:
                function = item if isinstance(item, FunctionTool) else FunctionTool(item, name=named)
            except TypeError as err:
                raise ToolSpecError(str(err)) from None
            known = functions.get(function.name)
            if known is not None:
                same = known.function is function.function  # the same function twice (add,add or [add, tool(add)])
                raise ToolSpecError(f"the tool {function.name!r} is listed twice{_once(spec)}" if same
                                    else f"two different tools are named {function.name!r}: give one of them "
                                         f"another name, tool(fn, name='...')")
            functions[function.name] = function
        if functions:
            tools.append(Functions(functions.values(), timeout=timeout))
        names = [t.name for t in tools]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate:
            raise ToolSpecError(f"the tool {duplicate!r} is listed twice{_once(spec)}")
        return cls(tools, disabled=builtins)

    def find(self, recipient: str) -> Tool | None:
        """The tool that answers `recipient`, or None."""
        return next((t for t in self.tools if t.answers(recipient)), None)

    def unknown(self, recipient: str) -> str:
        """The error text answering a call no tool takes, naming the tools that exist."""
        name = recipient.split(" ")[0].split(".")[0]
        if name in self.disabled:
            return f"Error: the {name} tool is not enabled in this conversation."
        names = [t.name for t in self.tools if t.system_config() is not None]
        names += [f"functions.{d.name}" for t in self.tools for d in t.function_descriptions()]
        shown = recipient if len(recipient) <= 80 else recipient[:80] + "…"  # the model may write a 64 000-long name
        return f"Error: there is no tool named {shown!r}; available: {', '.join(names) or 'none'}"

    def system_configs(self) -> list[ToolNamespaceConfig]:
        return [c for t in self.tools if (c := t.system_config()) is not None]

    def function_descriptions(self) -> list[ToolDescription]:
        return [d for t in self.tools for d in t.function_descriptions()]

    def citations(self, text: str) -> list[Citation]:
        return [c for t in self.tools for c in t.citations(text)]

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tools]


_MACHINERY = {"IPython": "IPython", "ipykernel": "IPython", "gptoss_lab": "the lab", "_sitebuiltins": "Python"}


def _machinery(item: Any) -> str | None:
    """Whose code `item` is where it is the kernel's, the lab's or Python's own (get_ipython, exit, display, a Session's
    method, eval): as a function tool the model could call it, under approval. None for any other callable (a user's, numpy's)."""
    routine = isinstance(item, (types.FunctionType, types.BuiltinFunctionType, types.MethodType))
    if isinstance(item, types.BuiltinFunctionType) and getattr(builtins, item.__name__, None) is item:   # eval, open ...
        return "Python"
    owner = getattr(item, "__self__", None) if routine else None   # a bound method: its object's class
    modules = [type(item).__module__, getattr(item, "__module__", None) if routine or isinstance(item, type) else None,
               type(owner).__module__ if owner is not None else None]
    return next((_MACHINERY[m.split(".")[0]] for m in modules if isinstance(m, str) and m.split(".")[0] in _MACHINERY),
                None)


def _once(spec: ToolSpec | None) -> str:
    """`: write 'python,add'`, the comma list `spec` with each name once (`python,python` said only "listed twice"),
    or "" for a list of tools, whose twice listed tool the message names."""
    return f": write {','.join(dict.fromkeys(_split(spec)))!r}" if isinstance(spec, str) else ""


def _split(spec: ToolSpec | None) -> list[Any]:
    if spec is None:
        return []
    if isinstance(spec, str):
        items = [s.strip() for s in spec.split(",") if s.strip()]
        return [] if items == ["none"] else items
    return list(spec)
