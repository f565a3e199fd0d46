"""What the model (and the call's card) reads for a user function's return value: valid JSON, in the JSON form
a user would write by hand, never a Python repr the model has to guess at, bounded however large the value."""
from __future__ import annotations

import collections
import inspect
import json
import math
import types
from typing import Any

import numpy as np
import pandas as pd
import pytest

from gptoss_lab.tools.functions import FunctionTool
from gptoss_lab.tools.python import MAX_OUTPUT_CHARS


def _output(value: Any) -> str:
    result = FunctionTool(lambda: value, name="report").call("{}")
    assert result.status == "done", result.output
    return result.output


@pytest.mark.parametrize("value,shown", [
    (float("nan"), '"NaN"'),
    ({"mean": math.inf, "low": [-math.inf, 1.5]}, '{"mean": "Infinity", "low": ["-Infinity", 1.5]}'),
    (np.float64("nan"), '"NaN"'),
    ([np.float32("inf")], '["Infinity"]'),
], ids=["nan", "nested-inf", "numpy-nan", "numpy-float32-inf"])
def test_nan_and_infinity_are_json_strings(value, shown):
    # json.dumps wrote NaN / Infinity bare: not JSON, so the model and the card read an invalid document
    output = _output(value)
    assert output == shown
    json.loads(output, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))


@pytest.mark.parametrize("value,shown", [
    ({"a": 1, "b": 2}.keys(), ["a", "b"]),
    ({"a": 1}.values(), [1]),
    ({"a": 1}.items(), [["a", 1]]),
    (range(3), [0, 1, 2]),
    (np.array([[1, 2], [3, 4]]), [[1, 2], [3, 4]]),
    (np.int64(7), 7),
    (np.bool_(True), True),
    ({"n": np.int32(3), "when": np.datetime64("2026-11-25T10:00:00", "ns")},
     {"n": 3, "when": "2026-11-25T10:00:00.000000000"}),
    (pd.DataFrame({"city": ["Oslo", "Lima"], "temp": [3.5, float("nan")]}),
     {"columns": ["city", "temp"], "data": [["Oslo", 3.5], ["Lima", "NaN"]]}),
    (pd.DataFrame({"temp": [3.5]}, index=pd.Index(["Oslo"], name="city")),
     {"index": ["Oslo"], "columns": ["temp"], "data": [[3.5]]}),
    (pd.Series([1, 2]), [1, 2]),
    (pd.Series([1.5], index=["Oslo"]), {"index": ["Oslo"], "data": [1.5]}),
    (pd.NaT, None),
    ([np.longdouble(1.5)], [1.5]),
    ({"env": types.MappingProxyType({"a": 1}), "queue": collections.deque([1, 2])},
     {"env": {"a": 1}, "queue": [1, 2]}),
], ids=["dict-keys", "dict-values", "dict-items", "range", "array", "int64", "bool_", "numpy-in-dict",
        "frame", "frame-with-index", "series", "series-with-index", "NaT", "longdouble",
        "mappingproxy-and-deque"])
def test_common_python_values_reach_the_model_as_their_json_form(value, shown):
    # the model read "dict_keys(['a', 'b'])", "[[1 2]\n [3 4]]", "3" (a string), a DataFrame's printed table
    assert json.loads(_output(value)) == shown


def test_bytes_that_are_not_text_are_labelled_and_the_call_still_done():
    # the model read "Error: UnicodeDecodeError ..." for a call that had run (and could run it again)
    assert json.loads(_output(b"\x89PNG\r\n")) == r"<6 bytes, not UTF-8> b'\x89PNG\r\n'"
    assert json.loads(_output(b"plain text")) == "plain text"


def test_an_object_json_has_no_form_for_is_labelled_with_its_type():
    class Money:
        def __str__(self) -> str:
            return "12.50 EUR"

    assert json.loads(_output({"price": Money()})) == {"price": "<Money> 12.50 EUR"}


@pytest.mark.parametrize("value,shown", [
    ({1: "a", "1": "b"}, {"1 (int)": "a", "1": "b"}),
    ({"x": [{None: 1, "None": 2}]}, {"x": [{"None (NoneType)": 1, "None": 2}]}),
    ({(1, 2): "t", ("1", 2): "s", "1,2": "u"}, {"1,2 (tuple)": "t", "1,2 (tuple) 2": "s", "1,2": "u"}),
    ({1: "a", 2.5: "b", True: "c"}, {"1": "c", "2.5": "b"}),       # 1 and True are one key in Python itself
], ids=["int-and-str", "nested", "three-alike", "no-clash"])
def test_no_entry_is_lost_where_json_writes_two_keys_alike(value, shown):
    # JSON keys are strings: {1: "a", "1": "b"} reached the model as {"1": "b"}, its "a" gone unsaid
    assert json.loads(_output(value)) == shown


@pytest.mark.parametrize("make,tail", [
    (lambda: np.zeros((3, 10**6)), '"... (2 more rows not shown; the array\'s shape is (3, 1000000))"]'),
    (lambda: np.zeros((10**6, 2)), '"... (999500 more rows not shown; the array\'s shape is (1000000, 2))"]'),
    (lambda: range(10**12), '"... (more items not read: the function returned a range; read 1000)"]'),
    (lambda: pd.DataFrame({"x": np.zeros(10**6)}), '"... (999000 more rows not shown, of 1000000)"]}'),
], ids=["wide", "long", "range", "frame"])
def test_large_arrays_ranges_and_frames_are_read_bounded_and_say_so(make, tail):
    # np.zeros((3, 10**6)).tolist() is three million Python floats; range(10**12) would never end
    output = _output(make())
    assert output.endswith(tail) and len(output) < 2 * MAX_OUTPUT_CHARS


def test_a_wide_frame_is_read_bounded_by_columns_too_and_says_so():
    # 10 rows x 100 000 columns were all converted to JSON (5 s, 160 MB) before the cut showed one row of them
    frame = pd.DataFrame(np.zeros((10, 100_000)), index=[f"r{i}" for i in range(10)])
    shown = json.loads(_output(frame))
    assert shown["columns"][:3] == [0, 1, 2] and shown["index"][0] == "r0" and shown["data"][0][:3] == [0.0] * 3
    assert shown["columns"][-1] == "... (99000 more columns not shown, of 100000)"
    assert shown["data"][-1] == "... (9 more rows not shown, of 10)"


def test_a_generator_functions_values_are_json_and_its_cleanup_runs():
    closed = []

    def readings(sensor: str):
        """Readings, for ever."""
        try:
            while True:
                yield float("nan")
        finally:
            closed.append(sensor)

    result = FunctionTool(readings).call('{"sensor": "a"}')  # 1 000 items: longer than the output limit, cut
    assert result.status == "done" and result.output.startswith('["NaN", "NaN", ')
    assert "NaN" not in result.output.replace('"NaN"', "") and '"... (more items not read' in result.output
    assert closed == ["a"]


def test_a_coroutine_returned_by_a_plain_function_is_an_error_not_a_result():
    # `def fetch(url): return get(url)` for an async get: the model read "<coroutine object get at 0x...>" as the
    # result, and Python warned later that it was never awaited
    async def get(url: str) -> str:
        return "page"

    made = []

    def fetch(url: str) -> Any:
        made.append(get(url))
        return made[-1]

    result = FunctionTool(fetch).call('{"url": "a"}')
    assert result.status == "error" and "it is a coroutine, an async function's call never awaited" in result.output
    assert inspect.getcoroutinestate(made[0]) == "CORO_CLOSED"  # closed: no "never awaited" warning later


def test_an_int_past_pythons_digit_limit_is_shown_not_an_error_after_the_function_ran():
    """`math.factorial(2000)` (5 736 digits) came back as "Error: ValueError: the function ran, but JSON cannot write
    what it returned: Exceeds the limit (4300 digits) ...": the model read a failure and called it again."""
    value = math.factorial(2000)
    shown = json.loads(_output({"n": value, "small": 10 ** 4000}))
    assert shown["small"] == 10 ** 4000
    assert shown["n"] == f"<int of 5736 digits> 3.316275e+5735 (ends ...{value % 10 ** 20:020d})"
    assert json.loads(_output(1 - 10 ** 5000)) == f"<int of 5000 digits> -9.999999e+4999 (ends ...{'9' * 20})"
