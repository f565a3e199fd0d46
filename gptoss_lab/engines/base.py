"""The Engine protocol: prompt token ids in, generated token ids out, one at a time."""
from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

from ..widgets.sanitize import WrittenOut


@dataclass(frozen=True)
class Sampling:
    """How to pick the next token. `temperature=0` is greedy; `None` fields take the engine's default."""

    temperature: float | None = None
    top_p: float | None = None
    max_new_tokens: int = 2048
    seed: int | None = None
    logits_processor: Any = None  # e.g. a JSON-schema constraint; engines that can't apply it refuse
    guard: bool = False  # rule out tokens Harmony forbids where the model is (harmony.FormatGuard); servers ignore it

    def with_defaults(self, default: Sampling) -> Sampling:
        """This sampling with its unset temperature and top_p taken from `default` (an engine's own)."""
        return replace(self, temperature=default.temperature if self.temperature is None else self.temperature,
                       top_p=default.top_p if self.top_p is None else self.top_p)


@runtime_checkable
class Engine(Protocol):
    """Anything that makes Harmony tokens: the in-kernel model, a remote server, a replay.

    `stream` yields generated ids and stops after yielding a stop token (or at the token limit).
    `recorder`, when given, is told about every token the model processes (expert routing);
    engines that cannot see routing ignore it. An engine that can be busy long before a token (a
    server it waits on, a long prefill) may also take `should_stop`, a callable it asks meanwhile and
    between tokens, ending its stream when it answers True, after giving out what it held back; the
    session passes it to engines whose `stream` takes it and, at Stop, reads such a stream to its end.
    """

    name: str

    def stream(
        self,
        prompt: Sequence[int],
        *,
        stop: Collection[int],
        sampling: Sampling = Sampling(),
        recorder: Any = None,
    ) -> Iterator[int]: ...


class EngineError(WrittenOut, RuntimeError):
    """A model could not be loaded or reached; the message is one line, written for the user."""
