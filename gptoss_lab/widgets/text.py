"""TextView: the turn as streamed text, for terminal IPython and front ends without widgets.

Headers, statuses and notices start at a line's start; the model's text and tools' outputs are indented under
theirs, so that no answer, output or page can print a line that passes for a header ("── Answer ──") or a prompt
("You:").
In a terminal that supports it, headers, reasoning, tool statuses and notices are coloured (ANSI);
`NO_COLOR` (https://no-color.org), `TERM=dumb` or output that is not a terminal turn colour off.
"""
from __future__ import annotations

import os
import re
import sys
from typing import TextIO

from ..events import Approval, Delta, Event, MessageEnd, MessageStart, Notice, ParseError, ToolCall, ToolEnd, \
    ToolUpdate, TurnEnd, TurnStart
from ..harmony import clean
from .citations import browse_note, sources_text
from .sanitize import reveal_hidden, reveal_in_code, shown_output, visible, visible_line
from .transcript import LABEL, STATUS_LABEL, Transcript, hang, tool_name

_STYLE = {"header": "1;36", "reasoning": "2", "prompt": "1", "ok": "32", "bad": "31", "warn": "33", "dim": "2"}
_STATUS_STYLE = {"done": "ok", "error": "bad", "timeout": "bad", "interrupted": "warn", "skipped": "warn",
                 "waiting": "warn"}
_LEVEL_STYLE = {"warning": "warn", "error": "bad", "info": "dim"}
_INDENT = "    "
_LINE_START = re.compile(r"(?<=\n)(?=[^\n])")  # where a line of streamed text begins (blank lines stay blank)


def supports_colour(stream: TextIO) -> bool:
    """ANSI colour for this stream: a terminal, not TERM=dumb, and the user has not set NO_COLOR."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return is_terminal(stream)


def is_terminal(stream: TextIO) -> bool:
    """Whether `stream` is a terminal (which redraws a line in place); False for a closed or stand-in stream."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or fake stream
        return False


class TextView:
    """Prints channel headers, deltas as they come, tool blocks and the stats line."""

    stop_requested = False

    def __init__(self, out: TextIO | None = None, *, colour: bool | None = None) -> None:
        self.out = out
        self.colour = supports_colour(out or sys.stdout) if colour is None else colour
        self.transcript = Transcript()
        self._style: str | None = None  # the style of the message being streamed
        self._code = False              # the message being streamed is a tool call's code
        self._pending = ""              # a line being streamed outside a terminal, written when it ends
        self._line_start = True         # the model's next character begins a line (and is indented)
        self._header: str | None = None  # the open message's header, printed with its first visible character
        self._held = ""                  # the whitespace the open message began with, printed after its header

    def _paint(self, text: str, style: str | None) -> str:
        return f"\x1b[{_STYLE[style]}m{text}\x1b[0m" if self.colour and style and text else text

    def _print(self, text: str, end: str = "\n", style: str | None = None) -> None:
        stream = self.out or sys.stdout
        self._pending += self._paint(clean(text), style) + end  # a server's lone surrogate: no stream can encode it
        # A terminal shows each token as it comes. Elsewhere (a notebook) only whole lines are written: each
        # write there can become an output of its own, and a saved notebook would read one token per line.
        cut = len(self._pending) if end or is_terminal(stream) else self._pending.rfind("\n") + 1
        if cut:
            stream.write(self._pending[:cut])
            stream.flush()
            self._pending = self._pending[cut:]

    def handle(self, event: Event) -> None:
        """Print what the event adds to the turn."""
        i = self.transcript.apply(event)
        if isinstance(event, TurnStart):
            self._print(f"You: {visible(hang(event.prompt))}", style="prompt")
        elif isinstance(event, MessageStart):
            block = self.transcript.items[i]  # type: ignore[index]
            header = {"reasoning": "Reasoning (unfiltered model output)", **LABEL}.get(
                block.kind, f"Tool call {visible(tool_name(block.recipient))}")
            self._style, self._line_start = "reasoning" if block.kind == "reasoning" else None, True
            self._code = block.kind == "tool"
            self._header, self._held = f"\n── {header} ──", ""
        elif isinstance(event, Delta):
            self._delta(visible(reveal_in_code(event.text) if self._code else event.text))
        elif isinstance(event, MessageEnd):
            if self._header is None:
                self._print("")
            elif event.message is not None and event.message.recipient:  # a call of no input: its run shows under it
                self._print_header()
            self._header = None   # any other message with nothing written: no header over nothing
        elif isinstance(event, ToolUpdate):
            self._print(self._status(event.call))
        elif isinstance(event, ToolEnd):
            shown = event.call.shown   # a call not run: why, in the user's words (the model reads its own sentence)
            output = f"\n{_INDENT}{visible(hang(shown_output(shown)))}" if shown else ""
            self._print(self._status(event.call) + output)  # indented as the model's text: a page prints no header
        elif isinstance(event, Notice):
            notice = visible(hang(reveal_hidden(event.text)))
            self._print(f"[{event.level}] {notice}", style=_LEVEL_STYLE.get(event.level))
        elif isinstance(event, ParseError):
            self._print(f"[not valid Harmony: {visible(hang(event.reason))}]", style="bad")
            self._print(_INDENT + visible(hang(event.raw)))
        elif isinstance(event, TurnEnd):
            if event.reply.citations:  # browser citations with the lines they cite (widgets/citations.py)
                self._print("\n" + visible(sources_text(event.reply.citations, markers=True)))
            footer = " ".join(visible(self.transcript.footer()).split())  # the model's name is a server's text
            self._print(f"\n-- {footer}", style="dim")

    def _delta(self, text: str) -> None:
        """Print the model's `text`, indented; a message's header waits for its first visible character (the
        token limit can cut a message right after `<|message|>`, which left a header over nothing)."""
        if self._header is not None:
            if not text.strip():
                self._held += text
                return
            text, self._held = self._held + text, ""
            self._print_header()
        first = _INDENT if self._line_start and text[:1] not in ("", "\n") else ""
        shown = first + _LINE_START.sub(_INDENT, text)
        self._line_start = text.endswith("\n") if text else self._line_start
        self._print(shown, end="", style=self._style)

    def _print_header(self) -> None:
        """Print the open message's header, if it has not been printed."""
        if self._header is not None:
            header, self._header = self._header, None
            self._print(header, style="header")

    def _status(self, call: ToolCall) -> str:
        label = STATUS_LABEL.get(call.status, call.status)
        doing = f" · {visible_line(call.progress)}" if call.status == "running" and call.progress else ""
        doing += f" · {visible_line(note)}" if (note := browse_note(call)) else ""
        return f"[{visible(tool_name(call.recipient))}: {self._paint(label, _STATUS_STYLE.get(call.status))}{doing}]"

    def approve(self, call: ToolCall) -> Approval | None:
        """Ask on stdin (the code was printed as it streamed); None when there is no stdin to ask on."""
        return ask_on_stdin(call)


def ask_on_stdin(call: ToolCall, *, show_input: bool = False) -> Approval | None:
    """Run or skip `call`, answered on stdin (a notebook's input box works while the cell runs);
    None when there is no stdin to ask on (the session then skips the call and says so). The code is indented as
    the text view shows it: no line of it passes for the question or an answer to it."""
    code = f"\n{_INDENT}{visible(hang(call.input))}\n" if show_input else " "
    try:
        answer = input(clean(visible(call.question or f"Run this {call.recipient} call?") + f"{code}[y/N] "))
    except Exception:  # StdinNotImplementedError, EOFError, OSError: nobody can answer
        return None
    return Approval(answer.strip().lower() in ("y", "yes"), by="you")
