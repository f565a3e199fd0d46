"""A schema's `pattern` means what JSON Schema (ECMA-262) says, wherever an answer is checked: \\d is [0-9] and
\\w [A-Za-z0-9_] (Rust's and Python's regex read them as Unicode, so "٣", an Arabic-Indic 3, passed `^\\d$`, which
constrained decoding refuses to write) and \\b an ASCII word boundary, while \\s is Unicode whitespace, in a schema
dict, on a pydantic field, in a function's arguments and in llguidance's constraint alike (which refuses \\b)."""
from __future__ import annotations

import json
from typing import Annotated

import pydantic
import pytest

from gptoss_lab import harmony
from gptoss_lab.structured import ResponseFormat, StructuredOutputError
from gptoss_lab.tools.functions import FunctionTool

CASES = [
    (r"^\d+$", "123", True),
    (r"^\d+$", "1٣", False),  # Arabic-Indic 3
    (r"^\w+$", "a_Z9", True),
    (r"^\w+$", "café", False),
    (r"^[\w-]+$", "é-x", False),  # inside a character class too
    (r"^\D$", "٣", True),  # not an ASCII digit
    (r"^[^\W]$", "é", False),
    (r"^a\sb$", "a\u00a0b", True),  # no-break space: \s is Unicode whitespace in JSON Schema
    (r"^a\sb$", "a\u2003b", True),  # em space
    (r"^\\d$", "\\d", True),  # an escaped backslash, then the letter d
]
IDS = ["digits", "arabic-indic-digit", "word", "accented-word", "class", "not-digit", "not-not-word", "nbsp",
       "em-space", "escaped-backslash"]
# \b and \B stand between an ASCII word character and anything else (llguidance refuses them: not constrained)
BOUNDARIES = [
    (r"^x\b", "x", True),
    (r"^é\b", "é", False),  # é is no word character in JSON Schema: no boundary at the end
    (r"^x\Bé$", "xé", False),  # ... so between x and é there is one
    (r"^a\b-", "a-", True),
]
CHECKED, CHECKED_IDS = CASES + BOUNDARIES, IDS + ["boundary", "accented-boundary", "not-boundary", "hyphen-boundary"]


def _accepted(fmt: ResponseFormat, value: str, key: str = "code") -> bool:
    try:
        fmt.parse(json.dumps({key: value}, ensure_ascii=False))
    except StructuredOutputError:
        return False
    return True


@pytest.mark.parametrize("pattern,value,valid", CHECKED, ids=CHECKED_IDS)
def test_a_schema_dicts_pattern_reads_shorthand_classes_as_json_schema_does(pattern, value, valid):
    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": pattern}}}
    assert _accepted(ResponseFormat.from_user(schema), value) is valid
    keys = {"type": "object", "patternProperties": {pattern: {"type": "integer"}}, "additionalProperties": False}
    assert _accepted(ResponseFormat.from_user(keys), 1, key=value) is valid


@pytest.mark.parametrize("pattern,value,valid", CHECKED, ids=CHECKED_IDS)
def test_a_pydantic_fields_pattern_reads_shorthand_classes_as_json_schema_does(pattern, value, valid):
    class Answer(pydantic.BaseModel):
        code: Annotated[str, pydantic.Field(pattern=pattern)]

    assert _accepted(ResponseFormat.from_user(Answer), value) is valid


@pytest.mark.parametrize("pattern,value,valid", CASES, ids=IDS)
def test_constrained_decoding_writes_what_the_check_accepts(pattern, value, valid):
    llguidance = pytest.importorskip("llguidance")
    from gptoss_lab.structured import _tokenizer

    grammar = ResponseFormat.from_user({"type": "string", "pattern": pattern}).processor().grammar
    matcher = llguidance.LLMatcher(_tokenizer(), grammar)
    answer = harmony.encode_text(json.dumps(value, ensure_ascii=False))
    assert (matcher.consume_tokens(answer) and matcher.is_accepting()) is valid


def test_a_functions_arguments_are_checked_as_the_model_was_shown_the_pattern():
    def lookup(code: Annotated[str, pydantic.Field(pattern=r"^\d{3}$")]) -> str:
        """An order by its three-digit code."""
        return code

    tool = FunctionTool(lookup)
    assert tool.call('{"code": "123"}').output == '"123"'
    refused = tool.call('{"code": "١٢٣"}')  # Arabic-Indic 123 ran the function
    assert refused.status == "error"
    assert refused.output == r"Error: ValidationError: code: String should match pattern '^\d{3}$'"


def test_the_users_own_class_is_left_as_pydantic_made_it():
    class Answer(pydantic.BaseModel):
        code: Annotated[str, pydantic.Field(pattern=r"^\d$")]

    ResponseFormat.from_user(Answer)
    assert Answer(code="٣").code == "٣"  # pydantic's own validation, outside the lab, is the user's
