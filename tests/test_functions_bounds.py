"""A function tool's call stays within its bounds whatever the function gives back: an error's message is read
within the call's timeout, a huge list or dict is read only as far as the model can be shown it, and the model's
arguments are the JSON types it was shown (`true` is no integer)."""
from __future__ import annotations

import json
import re
import time
import typing

import pydantic
import pytest

from gptoss_lab.tools.functions import tool
from gptoss_lab.tools.python import MAX_OUTPUT_CHARS


class _Slow:
    """A value whose text takes 5 s to make."""

    def __str__(self) -> str:
        time.sleep(5)
        return "slow"


class _SlowMessageError(Exception):
    def __str__(self) -> str:
        time.sleep(5)
        return "slow message"


def _raise_slow_message() -> str:
    raise _SlowMessageError


def _raise_with_slow_argument() -> str:
    raise ValueError(_Slow())  # BaseException's own __str__ makes the argument's text


@pytest.mark.parametrize("function", [_raise_slow_message, _raise_with_slow_argument], ids=["own __str__", "argument"])
def test_an_error_whose_message_is_slow_ends_at_the_timeout_with_a_one_line_note(function):
    """The message was read after the call's deadline had ended: a 1 s call took as long as the message (5 s)."""
    started = time.perf_counter()
    result = tool(function).call("{}", timeout=1)
    took = time.perf_counter() - started
    kind = "_SlowMessageError" if function is _raise_slow_message else "ValueError"
    assert (result.status, result.output) == (
        "error", f"Error: {kind}: (its message could not be read in time: Timed out after 1 s)")
    assert took < 2.5, took


def _cut_count(text: str, what: str) -> int:
    return int(re.fullmatch(rf"(?:\.\.\. )?\[(\d+) {what} cut\](?: \.\.\.)?", text).group(1))


def test_a_list_of_three_million_items_is_read_at_its_ends_only():
    """It was written whole to JSON and then cut to 6 000 characters: 5.8 s and 470 MB here; now 0.03 s."""
    numbers = list(range(3_000_000))
    started = time.perf_counter()
    result = tool(lambda: numbers, name="numbers").call("{}")
    took = time.perf_counter() - started
    shown = json.loads(result.output)
    note = next(item for item in shown if isinstance(item, str))
    kept = [item for item in shown if not isinstance(item, str)]
    assert result.status == "done" and len(result.output) <= MAX_OUTPUT_CHARS
    assert kept[0] == 0 and kept[-1] == 2_999_999 and len(kept) + _cut_count(note, "items") == 3_000_000
    assert len(result.output) > MAX_OUTPUT_CHARS * 0.9  # as much as fits, as before
    assert took < 1.5, took


@pytest.mark.parametrize("kind", [tuple, set, dict, list])
def test_a_huge_container_inside_a_result_is_read_only_as_far_as_it_is_shown(kind):
    """Each kind, nested, counts what it left out once (a cut of a cut still counts the whole)."""
    size = 1_000_000
    value = dict.fromkeys(range(size), 0) if kind is dict else kind(range(size))
    started = time.perf_counter()
    result = tool(lambda: {"rows": value, "total": size}, name="table").call("{}")
    took = time.perf_counter() - started
    shown = json.loads(result.output)
    assert result.status == "done" and shown["total"] == size and len(result.output) <= MAX_OUTPUT_CHARS
    rows = shown["rows"]
    if kind is dict:
        note = rows.pop("...")
        assert list(rows)[:3] == ["0", "1", "2"] and len(rows) + _cut_count(note, "more keys") == size
    else:
        note = next(item for item in rows if isinstance(item, str))
        assert len(rows) - 1 + _cut_count(note, "items") == size
    assert took < 1.0, took


_CALLED: list[str] = []  # the functions below that ran


def count(n: int) -> int:
    """Count."""
    _CALLED.append("count")
    return n


def scale(x: float) -> float:
    """Scale."""
    _CALLED.append("scale")
    return x


def level(n: typing.Literal[1, 2]) -> int:
    """Pick a level."""
    _CALLED.append("level")
    return n


def total(xs: list[int]) -> int:
    """Add up."""
    _CALLED.append("total")
    return sum(xs)


class _Point(pydantic.BaseModel):
    x: int


def place(point: _Point) -> int:
    """Place a point."""
    _CALLED.append("place")
    return point.x


@pytest.mark.parametrize(("function", "wrong", "error", "right", "value"), [
    (count, '{"n": true}', "n: Input should be a valid integer", '{"n": 3}', "3"),
    (count, '{"n": "3"}', "n: Input should be a valid integer", '{"n": 3}', "3"),
    (count, '{"n": 3.5}', "n: Input should be a valid integer", '{"n": -7}', "-7"),
    (scale, '{"x": false}', "x: Input should be a valid number", '{"x": 3.5}', "3.5"),
    (scale, '{"x": "3.5"}', "x: Input should be a valid number", '{"x": 3}', "3.0"),
    (total, '{"xs": [1, true]}', "xs.1: Input should be a valid integer", '{"xs": [1, 2]}', "3"),
    (place, '{"point": {"x": true}}', "point.x: Input should be a valid integer", '{"point": {"x": 4}}', "4"),
], ids=["true for int", "string for int", "float for int", "false for float", "string for float",
        "true in list[int]", "true in a model's int"])
def test_a_value_of_another_json_type_is_refused_and_the_function_not_called(function, wrong, error, right, value):
    """`{"n": true}` for `n: int` ran the function with n=1 (pydantic's lax mode); the JSON the schema asks for
    still works."""
    _CALLED.clear()
    result = tool(function).call(wrong)
    assert (result.status, result.output, _CALLED) == ("error", f"Error: ValidationError: {error}", [])
    result = tool(function).call(right)
    assert (result.status, result.output, _CALLED) == ("done", value, [function.__name__])


def test_a_boolean_is_not_a_number_choice_of_an_argument():
    """`{"n": true}` for `n: Literal[1, 2]` ran the function with True (Python's True == 1); 2 still runs it."""
    _CALLED.clear()
    result = tool(level).call('{"n": true}')
    assert (result.status, result.output, _CALLED) == ("error", "Error: ValidationError: n: Input should be 1 or 2", [])
    result = tool(level).call('{"n": 2}')
    assert (result.status, result.output, _CALLED) == ("done", "2", ["level"])


@pytest.mark.parametrize(("function", "arguments", "value"), [
    (count, '{"n": 3.0}', "3"), (count, '{"n": -7e0}', "-7"), (total, '{"xs": [1, 2.0, 30e-1]}', "6"),
    (place, '{"point": {"x": 4.0}}', "4"), (count, '{"n": 1e23}', str(10**23)),
], ids=["3.0", "-7e0", "in a list", "in a model", "1e23"])
def test_an_integer_written_with_a_zero_fraction_is_an_integer_argument(function, arguments, value):
    """`{"n": 3.0}` for `n: int` was refused ("Input should be a valid integer") where JSON Schema, which the model
    is shown, counts 3.0 as an integer; the function gets the int."""
    _CALLED.clear()
    result = tool(function).call(arguments)
    assert (result.status, result.output, _CALLED) == ("done", value, [function.__name__])


def _kinds(amount: int | float, amounts: list[int | float], count: int) -> list[str]:
    return [type(amount).__name__, *(type(item).__name__ for item in amounts), type(count).__name__]


def test_a_number_argument_typed_as_a_union_is_passed_as_the_model_wrote_it():
    """`amount: int | float` passed the model's 2.0 as the int 2 (the int choice read it first); a lone int still
    takes 2.0 as 2."""
    result = tool(_kinds).call('{"amount": 2.0, "amounts": [1.0, 1], "count": 2.0}')
    assert (result.status, result.output) == ("done", '["float", "float", "int", "int"]')


def _total_by_id(by_id: dict[int, float]) -> float:
    return sum(key * value for key, value in by_id.items())


def test_a_dict_argument_with_int_keys_can_be_given():
    """`by_id: dict[int, float]` refused every call, `{"3": 1.5}` too ("by_id.3.[key]: Input should be a valid integer"):
    JSON can write its keys only as text."""
    result = tool(_total_by_id).call('{"by_id": {"3": 1.5, "-2": 2}}')
    assert (result.status, result.output) == ("done", "0.5")
