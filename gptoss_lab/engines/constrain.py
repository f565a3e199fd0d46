"""Grammar-constrained final answers: a transformers logits processor that keeps the `final` channel
inside a JSON schema (llguidance), so a structured answer always parses.

Only the content of a `final` message is constrained; reasoning, tool calls and headers are free.
Once the JSON is complete the only token allowed is `<|return|>`. Needs `pip install llguidance`.
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .. import harmony
from ..tools.schema import response_format_section

@functools.cache
def _tokenizer() -> Any:
    """The Harmony vocabulary as an llguidance tokenizer, from the bundled file (about a second; cached)."""
    import llguidance

    specials = {name: token for token, name in harmony.special_tokens().items()}
    return llguidance.LLTokenizer.from_tiktoken(
        encoder=harmony.ranks(), special_tokens=specials, pattern=harmony.O200K_PATTERN, eos_token=harmony.RETURN,
        n_vocab=harmony.VOCAB_SIZE,
    )


class JsonSchemaProcessor:
    """Logits processor (transformers' `__call__(input_ids, scores)`) for one JSON schema.

    Stateless across engine calls: each call finds the message being written in `input_ids`, so the
    same processor serves every call of a tool-using turn.
    """

    def __init__(self, schema: dict[str, Any]) -> None:
        import llguidance

        # compact JSON: with free whitespace a weak model can pad forever without closing the object
        compact = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
        self.grammar = llguidance.LLMatcher.grammar_from_json_schema(schema, defaults=compact)
        self._matcher: Any = None
        self._consumed: list[int] = []

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        content = _final_content(input_ids[0].tolist())
        if content is None:
            return scores
        self._advance(content)
        import torch

        bits = np.unpackbits(np.frombuffer(self._matcher.compute_bitmask(), dtype=np.uint8), bitorder="little")
        forbidden = torch.from_numpy(bits[: scores.shape[-1]] == 0).to(scores.device)
        return scores.masked_fill(forbidden, float("-inf"))

    def _advance(self, content: list[int]) -> None:
        """Bring the matcher to `content` (a new final message starts a fresh matcher)."""
        import llguidance

        if self._matcher is None or content[:len(self._consumed)] != self._consumed:
            self._matcher, self._consumed = llguidance.LLMatcher(_tokenizer(), self.grammar), []
        new = content[len(self._consumed):]
        if new and not self._matcher.consume_tokens(new):
            raise RuntimeError(f"constrained decoding lost track of the answer: {self._matcher.get_error()}")
        self._consumed = content


def _final_content(ids: list[int]) -> list[int] | None:
    """The tokens written so far in an open `final` message, or None when the model is elsewhere."""
    start = max((i for i, t in enumerate(ids) if t == harmony.START), default=-1)
    header_end = next((i for i in range(start + 1, len(ids)) if ids[i] == harmony.MESSAGE), None)
    if header_end is None or any(t in (harmony.END, *harmony.STOP_TOKENS) for t in ids[header_end + 1:]):
        return None
    header = ids[start + 1:header_end]
    if harmony.CHANNEL not in header or "final" not in harmony.decode(header[header.index(harmony.CHANNEL) + 1:]):
        return None
    return ids[header_end + 1:]


def json_schema_processor(response_format: Any) -> JsonSchemaProcessor:
    """A processor for `Sampling.logits_processor` from a pydantic model, dataclass, TypedDict or schema dict."""
    return JsonSchemaProcessor(response_format_section(response_format)["schema"])
