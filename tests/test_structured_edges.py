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
@pytest.mark.parametrize("key, where", [(" 1", '" 1"'), ("1\n", '"1\\n"'), ("", '""'), ("7" * 1000, "7" * 39 + "…"),
                                        ("\u202e", '"\\u202e"'), ("\x07", '"\\u0007"')],
                         ids=["space", "line break", "empty", "1000 digits", "direction override", "control"])
def test_an_error_names_the_key_as_written_and_short_enough_for_its_reason_to_show(kind, key, where):
    """A key " 1" was told as `1.[key]` (its space collapsed), a key the answer did not have, and a 1 000-digit key
    filled the error's 200 characters, so the reason was cut off: a key is quoted when it is not one plain line, and
    cut short with "…". A direction override or a control character in a key was told as itself (one turns the rest
    of the warning under the answer around): written out, as in the rest of the lab."""
    with pytest.raises(StructuredOutputError) as err:
        ResponseFormat.from_user(kind).parse(json.dumps({key: -1}))
    message = str(err.value)
    assert message.startswith(f"the final answer does not match the schema: {where}")
    assert message.endswith(_REASON if isinstance(kind, type(dict[int, int])) else "-1 is less than the minimum of 0")
    assert "\n" not in message and len(message) < 200


@pytest.mark.parametrize("schema, answer, reason", [
    ({"type": "string", "pattern": "^[a-z]+$"}, "a" * 5_000 + "!", "does not match '^[a-z]+$'"),
    ({"type": "array", "maxItems": 3}, list(range(1_000)), "is too long"),
    ({"type": "object", "properties": {"notes": {"type": "integer"}}}, {"notes": "x" * 5_000}, "is not of type 'integer'"),
], ids=["pattern", "maxItems", "type"])
def test_an_error_about_a_long_part_of_the_answer_still_says_what_is_wrong(schema, answer, reason):
    """A schema dict's error quoted the part of the answer it is about whole: a long text or array filled the line,
    and what was wrong with it (the pattern, the bound) was cut off. The part is quoted short."""
    with pytest.raises(StructuredOutputError) as err:
        ResponseFormat.from_user(schema).parse(json.dumps(answer))
    assert str(err.value).endswith(reason) and len(str(err.value)) < 200


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


def _same(value):
    return value


@pytest.mark.parametrize("kind, words", [
    (dict[pydantic.confloat(ge=0, lt=1), int], "is at least 0 and is less than 1"),
    (dict[pydantic.conint(multiple_of=5), int], "is a multiple of 5"),
    (dict[typing.Annotated[Decimal, pydantic.Field(max_digits=2, decimal_places=1)], int],
     "has at most 2 digits and has at most 1 decimal places"),
    (dict[typing.Annotated[int, pydantic.AfterValidator(_same), pydantic.Field(ge=5)], int], None),
    (dict[typing.Annotated[int, pydantic.Field(le=10), pydantic.AfterValidator(_same), pydantic.Field(gt=4)], int], None),
], ids=["float range", "int multiple", "Decimal digits", "int bound after a validator", "int bounds around one"])
def test_a_key_bound_its_pattern_cannot_state_is_said_in_words(kind, words):
    """`dict[confloat(ge=0, lt=1), int]` was shown a key pattern taking "7", which the check refused, and so were an
    int key's multiple_of and an int bound given after an AfterValidator: a bound the pattern cannot state is said
    in the keys' description; an integer's range is in the pattern, wherever it is given."""
    schema = ResponseFormat.from_user(kind).schema
    assert schema["propertyNames"].get("description") == (f"Each key, read as a number, {words}." if words else None)
    shown, checked = ResponseFormat.from_user(schema), ResponseFormat.from_user(kind)
    unsaid = []
    for key in ["0", "0.5", "0.25", "3", "4", "5", "7", "10", "11", "15", "-1"]:
        try:
            checked.parse(json.dumps({key: 1}))
        except StructuredOutputError as err:
            assert f"{key}.[key]: " in str(err)
            refused = True
        else:
            refused = False
        try:
            shown.parse(json.dumps({key: 1}))
        except StructuredOutputError:
            assert refused, key  # every key the check takes, the schema shown takes
        else:
            unsaid += [key] if refused else []
    assert bool(unsaid) == bool(words), unsaid  # what the pattern takes and the check refuses is said in words


@pytest.mark.parametrize("kind, shown", [
    (typing.Annotated[int, pydantic.AfterValidator(_same), pydantic.Field(ge=5, multiple_of=2)],
     {"type": "integer", "minimum": 5, "multipleOf": 2}),
    (typing.Annotated[float, pydantic.AfterValidator(_same), pydantic.Field(gt=4, lt=7)],
     {"type": "number", "exclusiveMinimum": 4, "exclusiveMaximum": 7}),
], ids=["int", "float"])
def test_a_bound_given_after_a_validator_is_shown_as_json_schema_states_it(kind, shown):
    """`Annotated[int, AfterValidator(f), Field(ge=5)]` was shown as `{"ge": 5, "type": "integer"}`, pydantic's name,
    which JSON Schema (and constrained decoding) does not read: any integer was shown taken, and 3 refused."""
    schema = ResponseFormat.from_user(kind).schema
    assert schema == shown
    as_shown, checked = ResponseFormat.from_user(schema), ResponseFormat.from_user(kind)
    for answer in ["3", "4", "5", "5.5", "6", "7", "8", "9"]:
        outcomes = []
        for fmt in (as_shown, checked):
            try:
                fmt.parse(answer)
            except StructuredOutputError:
                outcomes.append(False)
            else:
                outcomes.append(True)
        assert outcomes[0] == outcomes[1], answer


@pytest.mark.parametrize("sign", ["", "-"], ids=["positive", "negative"])
def test_an_int_key_past_pythons_digit_limit_says_it_has_too_many_digits(sign):
    """A 5 000-digit int key got pydantic's "Exceeds the limit (4300 digits) ... use sys.set_int_max_str_digits()",
    telling the user to change an interpreter setting, and filling the error: one short reason now."""
    with pytest.raises(StructuredOutputError) as err:
        ResponseFormat.from_user(dict[int, int]).parse('{"' + sign + "1" * 5000 + '": 1}')
    message = str(err.value)
    assert message.endswith(".[key]: Key has too many digits (5000)") and "sys." not in message, message
    assert len(message) < 200
