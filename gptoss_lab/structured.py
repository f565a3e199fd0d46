"""Structured output: a response format built once per turn, holding everything about it.

`ResponseFormat.from_user(obj)` takes what a user gives (a pydantic model, dataclass, TypedDict or
JSON-schema dict) and holds the schema, the developer-message section the model reads, `parse()`
for the final answer, and the constraint processor for constrained decoding.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ResponseFormat:
    """A requested answer format. Build with `from_user`."""

    target: Any                 # what the user gave; `parse` returns an instance of it
    section: dict[str, Any]     # {"name", "description"?, "schema"} for the developer message

    @classmethod
    def from_user(cls, obj: Any) -> ResponseFormat:
        """From a pydantic model, dataclass, TypedDict or JSON-schema dict; TypeError for anything else."""
        if isinstance(obj, ResponseFormat):
            return obj
        from .tools.schema import response_format_section

        return cls(obj, response_format_section(obj))

    @property
    def schema(self) -> dict[str, Any]:
        return self.section["schema"]

    def parse(self, text: str) -> Any:
        """The final answer as the requested type; StructuredOutputError (a ValueError) says what is wrong."""
        from .tools.schema import parse_final

        return parse_final(text, self.target)

    def processor(self) -> Any:
        """A transformers logits processor keeping `final` answers inside the schema (needs llguidance)."""
        from .engines.constrain import JsonSchemaProcessor

        return JsonSchemaProcessor(self.schema)
