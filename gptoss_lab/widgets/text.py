"""TextView: the turn as streamed text, for terminal IPython and front ends without widgets."""
from __future__ import annotations

import sys
from typing import TextIO

from ..events import Delta, Event, MessageEnd, MessageStart, Notice, ParseError, ToolCall, ToolEnd, ToolUpdate, \
    TurnEnd, TurnStart
from .transcript import STATUS_LABEL, Transcript


class TextView:
    """Prints channel headers, deltas as they come, tool blocks and the stats line."""

    stop_requested = False

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out
        self.transcript = Transcript()

    def _print(self, text: str, end: str = "\n") -> None:
        stream = self.out or sys.stdout
        stream.write(text + end)
        stream.flush()

    def handle(self, event: Event) -> None:
        """Print what the event adds to the turn."""
        i = self.transcript.apply(event)
        if isinstance(event, TurnStart):
            self._print(f"You: {event.prompt}")
        elif isinstance(event, MessageStart):
            block = self.transcript.items[i]  # type: ignore[index]
            header = {"reasoning": "Reasoning (unfiltered model output)", "final": "Answer",
                      "commentary": "Commentary"}.get(block.kind, f"Tool call {block.recipient}")
            self._print(f"\n── {header} ──")
        elif isinstance(event, Delta):
            self._print(event.text, end="")
        elif isinstance(event, MessageEnd):
            self._print("")
        elif isinstance(event, ToolUpdate):
            self._print(f"[{event.call.recipient}: {STATUS_LABEL.get(event.call.status, event.call.status)}]")
        elif isinstance(event, ToolEnd):
            status = STATUS_LABEL.get(event.call.status, event.call.status)
            self._print(f"[{event.call.recipient}: {status}]" + (f"\n{event.call.output}" if event.call.output else ""))
        elif isinstance(event, Notice):
            self._print(f"[{event.level}] {event.text}")
        elif isinstance(event, ParseError):
            self._print(f"[not valid Harmony: {event.reason}]\n{event.raw}")
        elif isinstance(event, TurnEnd):
            self._print(f"\n-- {self.transcript.footer()}")

    def approve(self, call: ToolCall) -> bool | None:
        """Ask on stdin; None when there is no stdin to ask on."""
        try:
            answer = input(f"Run this {call.recipient} call? [y/N] ")
        except Exception:  # StdinNotImplementedError, EOFError, OSError: nobody can answer
            return None
        return answer.strip().lower() in ("y", "yes")
