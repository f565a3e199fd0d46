"""ReplayEngine: plays back recorded assistant tokens, for teaching, tests and demos."""
from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from typing import Any

from .. import harmony
from .base import Sampling


class ReplayEngine:
    """Replays a recording segment by segment; each `stream` call plays the next segment.

    A recording is a list of token ids or Harmony text (`<|channel|>final<|message|>Hi<|return|>`);
    it is cut into segments after every stop token, so a tool-using turn replays as one
    segment per model call. The prompt is ignored, which is what makes replays reproducible.
    """

    def __init__(self, recording: str | Sequence[int], *, name: str = "replay", delay: float = 0.0) -> None:
        ids = harmony.encode(recording) if isinstance(recording, str) else list(recording)
        self.name = name
        self.delay = delay
        self.segments: list[list[int]] = []
        current: list[int] = []
        for token in ids:
            current.append(token)
            if token in harmony.STOP_TOKENS:
                self.segments.append(current)
                current = []
        if current:
            self.segments.append(current)
        self._next = 0

    def stream(
        self,
        prompt: Sequence[int],
        *,
        stop: Collection[int],
        sampling: Sampling = Sampling(),
        recorder: Any = None,
    ) -> Iterator[int]:
        if self._next >= len(self.segments):
            raise RuntimeError("ReplayEngine: the recording has no segments left to play")
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
