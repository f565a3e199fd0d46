"""Edge cases of checking a final answer against its format, and of what its errors say."""
from __future__ import annotations

import json
import re
import typing
from decimal import Decimal

import pydantic
import pytest

from gptoss_lab.structured import ResponseFormat, StructuredOutputError

_REASON = "Input should be greater than or equal to 0"


@pytest.mark.parametrize("kind", [dict[int, typing.Annotated[int, pydantic.Field(ge=0)]],
                                  {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}],
                         ids=["typed", "schema dict"])
@pytest.mark.parametrize("key, where", [(" 1", '" 1"'), ("1\n", '"1\\n"'), ("", '""'), ("7" * 1000, "7" * 39 + "…")],
                         ids=["space", "line break", "empty", "1000 digits"])
def test_an_error_names_the_key_as_written_and_short_enough_for_its_reason_to_show(kind, key, where):
    """A key " 1" was told as `1.[key]` (its space collapsed), a key the answer did not have, and a 1 000-digit key
    filled the error's 200 characters, so the reason was cut off: a key is quoted when it is not one plain line, and
    cut short with "…"."""
    with pytest.raises(StructuredOutputError) as err:
        ResponseFormat.from_user(kind).parse(json.dumps({key: -1}))
    message = str(err.value)
    assert message.startswith(f"the final answer does not match the schema: {where}")
    assert message.endswith(_REASON if isinstance(kind, type(dict[int, int])) else "-1 is less than the minimum of 0")
    assert "\n" not in message and len(message) < 200


@pytest.mark.parametrize("kind, refusal", [
    ({"type": "string", "format": "regex"}, "is not a 'regex'"), (re.Pattern, "Input should be a valid regular expression"),
], ids=["schema dict", "re.Pattern"])
@pytest.mark.parametrize("text", ["a{4294967296}", "(" * 2000 + ")" * 2000, "["], ids=["huge repeat", "deep", "open class"])
def test_a_text_re_cannot_compile_is_not_a_regex_whatever_re_raises(kind, refusal, text):
    """`"a{4294967296}"` for a "regex" format said the answer "could not be checked against the schema
    (OverflowError: ...)", deep parentheses (RecursionError) the same: re raised other than re.error. It is not a regex."""
    with pytest.raises(StructuredOutputError, match="^the final answer does not match the schema: ") as err:
        ResponseFormat.from_user(kind).parse(json.dumps(text))
    assert str(err.value).endswith(refusal) or len(str(err.value)) == 400  # (a long answer's text fills the line)
    assert ResponseFormat.from_user(kind).parse('"a+"') in ("a+", re.compile("a+"))
