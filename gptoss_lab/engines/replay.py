"""ReplayEngine: plays back recorded assistant tokens, for teaching, tests and demos."""
from __future__ import annotations

import numbers
import os
import reprlib
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import Any

from .. import harmony
from ..events import MessageEnd
from .base import EngineError, Sampling


class ReplayEngine:
    """Replays a recording segment by segment; each `stream` call plays the next segment.

    A recording is a list of token ids or Harmony text (`<|channel|>final<|message|>Hi<|return|>`);
    it is cut into segments where a session stops reading a model call (after every stop token and
    after every tool call, whatever ends it), so a tool-using turn replays as one segment per model
    call. The prompt is ignored, which is what makes replays reproducible.
    """

    def __init__(self, recording: str | Sequence[int], *, name: str = "replay", delay: float = 0.0) -> None:
        if isinstance(recording, bytes | bytearray | os.PathLike) or not isinstance(recording, str | Iterable):
            # (a file's path or a number said "'PosixPath' object is not iterable"; bytes played as token ids)
            hint = ": give the file's text, ReplayEngine(path.read_text())" if isinstance(recording, os.PathLike) else ""
            raise TypeError(f"ReplayEngine: a recording is Harmony text (one str) or token ids, not "
                            f"{type(recording).__name__}{hint}")
        ids = harmony.encode(recording) if isinstance(recording, str) else list(recording)
        odd = next((t for t in ids if not isinstance(t, numbers.Integral)), None)
        if odd is not None:  # (a list of Harmony strings played its text as one "token" and broke the parser)
            raise TypeError(f"ReplayEngine: a recording is Harmony text (one str) or token ids, not a sequence "
                            f"holding {type(odd).__name__} {reprlib.repr(odd)}")
        self.name = name
        self.delay = delay
        self.segments = _segments(ids)
        self._next = 0

    def stream(
        self,
        prompt: Sequence[int],
        *,
        stop: Collection[int],
        sampling: Sampling = Sampling(),
        recorder: Any = None,
    ) -> Iterator[int]:
        if self._next >= len(self.segments):  # said as the turn's one line (session.py shows EngineError's text)
            held = len(self.segments)
            raise EngineError(f"the ReplayEngine's recording holds {held} repl{'y' if held == 1 else 'ies'} and this "
                              f"turn asked for reply {self._next + 1}; a recording plays once: run the cell that made "
                              "it again, then this one, or give the recording more replies (a reply ends at each tool "
                              "call and at each answer)")
        segment = self.segments[self._next]
        self._next += 1
        for i, token in enumerate(segment):
            if i >= sampling.max_new_tokens:
                return
            if self.delay:
                import time

                time.sleep(self.delay)
            yield token
            if token in stop:
                return


def _segments(ids: Sequence[int]) -> list[list[int]]:
    """Cut recorded tokens into model calls where a session stops reading: after a stop token, and after a tool call
    (a session runs it at its end, also one ended by `<|end|>`: what follows it is the next call's; a message to a tool
    on a channel that is not one is left out, not run, and the model writes on)."""
    segments: list[list[int]] = []
    current: list[int] = []
    stream = harmony.HarmonyStream()  # as a session reads each model call: from right after `<|start|>assistant`
    for token in ids:
        current.append(token)
        calls = any(isinstance(event, MessageEnd) and event.message is not None
                    and harmony.is_call(event.message.channel, event.message.recipient) for event in stream.feed(token))
        if token in harmony.STOP_TOKENS or calls:
            segments.append(current)
            # a call left without its end token ends at the next <|start|>, which also begins the next call's message
            current, stream = [], harmony.HarmonyStream()
            if token == harmony.START:
                current.append(token)
                stream.feed(token)
    if current:
        segments.append(current)
    return segments
