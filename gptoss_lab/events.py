"""The typed events a turn produces, in order; views (chat widget, text fallback) consume them.

A turn is: TurnStart, then for each assistant message MessageStart, Delta..., MessageEnd, with
ToolStart/ToolUpdate/ToolEnd around each tool call, and TurnEnd carrying the finished Reply.
"""
from __future__ import annotations

import contextlib
import reprlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from .widgets.sanitize import WrittenOut

if TYPE_CHECKING:
    from openai_harmony import Message

    from .routing import Routing

_SHORT = reprlib.Repr()
_SHORT.maxstring = 60  # how much of a text a repr quotes (a Reply's, a tool call's, a citation's)

ToolStatus = Literal["pending", "waiting", "running", "done", "error", "timeout", "skipped", "interrupted"]


@dataclass
class ToolCall:
    """One tool call by the model: what it asked for and what came back."""

    recipient: str                      # "python", "functions.NAME", "browser.search" ...
    channel: str | None
    input: str                          # the code, or the JSON arguments
    content_type: str | None = None
    status: ToolStatus = "pending"
    output: str = ""
    seconds: float = 0.0
    question: str = ""                  # what the view asks before it runs (approval `ask`)
    reason: str = ""                    # why it did not run, as its card tells the user (the model reads `output`)
    data: Any = None                    # the tool's structured result, for views (search results ...)
    progress: str = ""                  # what the running call is doing now, one line (a search service busy, retried)

    @property
    def name(self) -> str:
        return self.recipient.removeprefix("functions.")

    def __repr__(self) -> str:
        """One bounded line (the dataclass's repr dumped the whole code, output and data: `print(reply.tool_calls)`
        printed screens of one long output, or of a search's results)."""
        parts = [f"{_SHORT.repr(self.recipient)}", self.status, f"input={_SHORT.repr(self.input)}",
                 f"output={_SHORT.repr(self.output)}"]
        if self.reason:
            parts.append(f"reason={_SHORT.repr(self.reason)}")
        return f"ToolCall({', '.join(parts)}, {self.seconds:.2f} s)"

    @property
    def shown(self) -> str:
        """What a view shows as the call's result: why it did not run, said to the user, else what the model read."""
        return self.reason or self.output


@dataclass
class TurnStart:
    prompt: str
    effort: str
    model: str
    approval: str
    routing: "Routing | None" = None    # live expert routing, growing while the turn runs
    context_window: int | None = None   # the model's context length in tokens, when known


@dataclass
class MessageStart:
    channel: str | None
    recipient: str | None
    content_type: str | None = None


@dataclass
class Delta:
    text: str
    channel: str | None


@dataclass
class MessageEnd:
    message: "Message | None"           # None when generation stopped inside the message
    stop_token: int | None


@dataclass
class ParseError:
    raw: str                            # the model's text that was not valid Harmony
    reason: str


@dataclass
class ToolStart:
    call: ToolCall


@dataclass
class ToolUpdate:
    call: ToolCall                      # status changed (waiting -> running ...)


@dataclass
class ToolEnd:
    call: ToolCall


@dataclass
class Notice:
    text: str                           # a one-line note for the user (default model, stop, limits)
    level: Literal["info", "warning", "error"] = "info"


@dataclass
class TurnEnd:
    reply: "Reply"


@dataclass
class Approval:
    """A user's answer to "run this call?": run or skip, maybe with edited input, maybe for good.

    `code` replaces the call's input (the edited code is what runs and what the model is told
    ran); `always` allows this tool (python, the browser; of function tools the one function) for the rest of the
    conversation, until the approval setting is set again. `by` names who decided, as a skipped call's card says it:
    "you" where the reader answered (a card's button, the input box), else the view's code (its class name when "")."""

    run: bool
    code: str | None = None
    always: bool = False
    by: str = ""


@dataclass
class Citation:
    """A `【cursor†Lstart-Lend】` citation in a final answer, resolved against what the browser showed."""

    marker: str                         # the citation as written, e.g. 【3†L10-L12】
    cursor: int
    start: int                          # first and last cited line (inclusive)
    end: int
    url: str = ""
    title: str = ""
    text: str = ""                      # the cited lines
    changed: str = ""                   # what became of the cited file since it was read ("changed on disk"), if aught

    def __repr__(self) -> str:
        """One bounded line: the marker, where it points and the start of the cited text (the dataclass's repr
        quoted every cited line)."""
        parts = [self.marker, f"url={_SHORT.repr(self.url)}", f"title={_SHORT.repr(self.title)}",
                 f"text={_SHORT.repr(self.text)}"]
        if self.changed:
            parts.append(f"changed={_SHORT.repr(self.changed)}")
        return f"Citation({', '.join(parts)})"




Event = TurnStart | MessageStart | Delta | MessageEnd | ParseError | ToolStart | ToolUpdate | ToolEnd | Notice | TurnEnd


@dataclass
class Usage:
    """Token counts and timings of one turn."""

    prompt_tokens: int = 0          # tokens the engine was given in the turn's last call
    completion_tokens: int = 0      # tokens generated over the whole turn
    seconds: float = 0.0            # wall time of the turn, tools included
    ttft: float | None = None       # seconds from ask() to the first generated token
    generation_seconds: float = 0.0  # time spent inside the engine
    context_tokens: int = 0         # tokens the next question starts from (the window itself once none fits: full)
    context_window: int | None = None  # the model's context length in tokens, when known (what the meter measures by)

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.generation_seconds if self.generation_seconds else 0.0

    def __repr__(self) -> str:
        """The counts and times to three figures, with the speed `tokens_per_s` computes (the dataclass's repr wrote
        seconds=0.7088705900023342 and left the speed out)."""
        ttft = "None" if self.ttft is None else f"{self.ttft:.3g}"
        return (f"Usage(prompt_tokens={self.prompt_tokens}, completion_tokens={self.completion_tokens}, "
                f"seconds={self.seconds:.3g}, ttft={ttft}, generation_seconds={self.generation_seconds:.3g}, "
                f"tokens_per_s={self.tokens_per_s:.1f}, context_tokens={self.context_tokens}, "
                f"context_window={self.context_window})")


class TurnFailed(WrittenOut, RuntimeError):
    """A check of a reply whose turn failed (`Reply.raise_for_failure`): what to do, in one line."""


class Interrupted(WrittenOut, KeyboardInterrupt):
    """Ctrl-C (the kernel's interrupt) stopped a long command: what stopped and what was kept, in one line (a
    traceback through torch said neither). Still a KeyboardInterrupt, so a script or a cell's later lines stop."""

    IN_KEPT = "in this error's .kept (in a notebook: sys.last_value.kept)"   # where a message says `kept` is

    def __init__(self, message: str, kept: Any = None) -> None:
        super().__init__(message)
        self.kept = kept   # what the command finished before it stopped (route: a Corpus of the texts routed)


def ctrl_c_says(says: str | Callable[[], Interrupted]) -> contextlib.AbstractContextManager[None]:
    """Ctrl-C in the block (the bare KeyboardInterrupt of the kernel's interrupt) becomes one line, `Interrupted(says)`
    or what `says()` makes once the block has ended (what stopped, what was kept), not a traceback through torch; so
    does an error it caused (Python 3.11 raises one that lands while a class is made, as a module of the load defines
    one, as "RuntimeError: Error calling __set_name__ ..."). An Interrupted raised below, or the python tool's stop of
    its code (a subclass), goes on as it is."""
    return _CtrlCSays(says)


class _CtrlCSays(contextlib.AbstractContextManager):
    """`ctrl_c_says`. Not a generator: its frame, in the one line's traceback, kept the stopped frames alive."""

    def __init__(self, says: str | Callable[[], Interrupted]) -> None:
        self._says = says

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, frames: Any) -> None:
        if error is None or KeyboardInterrupt not in (type(error), type(error.__cause__)):
            return
        # the frames it stopped (a half-loaded model) are let go: kept in sys.last_value (the Interrupted's context,
        # and this frame in its traceback) they were held until the next error
        del frames
        error.__traceback__ = None
        if error.__cause__ is not None:
            error.__cause__.__traceback__ = None
        raise (Interrupted(self._says) if isinstance(self._says, str) else self._says()) from None


@dataclass
class Reply:
    """What one `ask` produced: the answer, the reasoning, the tool calls, and how it went."""

    prompt: str
    final: str = ""
    analysis: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    citations: list[Citation] = field(default_factory=list)
    messages: list["Message"] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    routing: "Routing | None" = None
    errors: list[str] = field(default_factory=list)
    interrupted: bool = False
    failed: str = ""          # why the turn failed mid-way (an engine, tool or view error), in a line; "" when it did not
    cut: str = ""             # why the turn ended before the model finished (a limit, Stop, a failure): the note shown
    effort: str = "medium"
    model: str = ""
    parsed: Any = None
    intervention: str = ""    # how the turn changed the expert routing (`--ablate`), in words; "" when it did not
    errors_after: list[int] = field(default_factory=list)  # for each of `errors`, how many of `messages` came before it

    def note(self, text: str) -> None:
        """Keep a note for the user in `errors`, with where in the turn it came: a view rebuilt from the Reply shows
        it there, as the live view did (not after the answer)."""
        self.errors.append(text)
        self.errors_after.append(len(self.messages))

    def __str__(self) -> str:
        """What `print(reply)` shows: the answer; with the turn's notes when it failed or has no answer (a failed turn
        printed as an empty line), and with why it was cut when it was (a partial answer read as a whole one)."""
        if self.final and not self.failed:
            return f"{self.final}\n\n{self.cut}" if self.cut else self.final
        notes = self.errors or ["The turn ended without an answer."]
        return "\n\n".join([self.final, *notes] if self.final else notes)

    def __repr__(self) -> str:
        """One bounded line for debugging (the dataclass's repr dumped every message); a cell shows the transcript."""
        parts = [f"prompt={_SHORT.repr(self.prompt)}", f"final={_SHORT.repr(self.final)}",
                 counted(len(self.messages), "message"), counted(len(self.tool_calls), "tool call"),
                 counted(self.usage.completion_tokens, "token"), f"model={_SHORT.repr(self.model)}"]
        if self.errors:
            parts.append(counted(len(self.errors), "note"))
        if self.failed:
            parts.append(f"failed={_SHORT.repr(self.failed)}")
        if self.interrupted:
            parts.append("interrupted")
        return f"Reply({', '.join(parts)})"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        """A Reply as a cell's value reads as its transcript, built once (sanitized HTML where HTML renders, inert
        Markdown elsewhere, its text in a terminal); also where `%load_ext gptoss_lab` was not run, as with the Python
        API alone (it showed the one-line repr there)."""
        from .widgets.transcript import Transcript

        return Transcript.from_reply(self)._repr_mimebundle_(include, exclude)

    def raise_for_failure(self) -> None:
        """TurnFailed when the turn failed: a notebook checks this first, so a check of a failed turn (a recorded
        turn's cell run twice) says what to do, not a bare AssertionError about an empty answer."""
        if self.failed:
            raise TurnFailed("nothing to check: the turn failed (its cell says why); run it again, after the cell "
                             "that made its recording for a recorded turn, then this cell")

    @property
    def failure_note(self) -> str:
        """The note that says why the turn failed ("" when it did not): every view shows it as an error."""
        return f"The turn failed: {self.failed}" if self.failed else ""


def counted(n: int, noun: str) -> str:
    """`n` things for a message, digits grouped and plural unless one: '1 message', '12,288 tokens' (the lab's one
    way of writing a count)."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"   # (a numpy count's `n != 1` is no bool `'s' *` takes)


class View(Protocol):
    """What a turn's output goes to: the chat widget, the text fallback, or a test recorder."""

    stop_requested: bool

    def handle(self, event: Event) -> None: ...

    def approve(self, call: ToolCall) -> Approval | bool | None:
        """Run or skip `call` (None: this view cannot ask anyone)."""
