"""A function tool's long result: what the model reads is always JSON within MAX_OUTPUT_CHARS, cut where the
value is long, each cut saying how much it left out (the text cut in two was not JSON)."""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from gptoss_lab.tools import functions
from gptoss_lab.tools.functions import tool
from gptoss_lab.tools.python import MAX_OUTPUT_CHARS


def _read(value):
    """What the model reads of a function returning `value`, parsed, and the text's length."""
    result = tool(lambda: value, name="lookup").call("{}")
    assert result.status == "done", result.output
    assert len(result.output) <= MAX_OUTPUT_CHARS
    return json.loads(result.output), len(result.output)


def _cut_count(text: str, what: str) -> int:
    return int(re.search(rf"\[(\d+) {what} cut\]", text).group(1))


def _nested(levels: int):
    value = "bottom"
    for _ in range(levels):
        value = [value]
    return value


def test_a_huge_list_keeps_its_first_and_last_items_and_counts_the_rest():
    shown, size = _read(list(range(100_000)))
    cut = next(item for item in shown if isinstance(item, str))
    numbers = [item for item in shown if not isinstance(item, str)]
    assert shown[0] == 0 and shown[-1] == 99_999 and len(numbers) + _cut_count(cut, "items") == 100_000
    assert numbers == sorted(numbers) and size > MAX_OUTPUT_CHARS * 0.9  # as much as fits, not a token few


def test_a_huge_dict_keeps_its_first_keys_and_counts_the_rest():
    shown, _ = _read({f"city {i}": {"population": i * 1000, "country": "NL"} for i in range(5000)})
    note = shown.pop("...")
    assert list(shown)[:2] == ["city 0", "city 1"] and shown["city 1"] == {"population": 1000, "country": "NL"}
    assert len(shown) + _cut_count(note, "more keys") == 5000


@pytest.mark.parametrize("text", ["x" * 50_000, "日本語の文章🙂" * 10_000, 'a "quoted" line\n' * 5000],
                         ids=["ascii", "unicode", "escapes"])
def test_one_huge_string_keeps_its_head_and_tail(text):
    shown, _ = _read(text)
    head, tail = shown.split(" ... [")[0], shown.split("cut] ... ")[1]
    assert text.startswith(head) and text.endswith(tail) and len(head) > 1000
    assert len(head) + len(tail) + _cut_count(shown, "characters") == len(text)


def test_a_list_of_records_with_long_texts_keeps_every_record_with_its_texts_cut():
    records = [{"id": i, "body": f"report {i}: " + "lorem ipsum " * 200} for i in range(40)]
    shown, _ = _read(records)
    assert [r["id"] for r in shown] == list(range(40))
    assert all(r["body"].startswith(f"report {r['id']}: lorem") and "characters cut" in r["body"] for r in shown)


def test_a_value_at_the_limit_is_kept_whole_and_one_past_it_is_cut():
    at_limit = '"' * ((MAX_OUTPUT_CHARS - 2) // 2)  # each quote is written \"
    assert tool(lambda: at_limit, name="quotes").call("{}").output == json.dumps(at_limit)
    shown, _ = _read(at_limit + '"')
    assert shown.startswith('""""') and shown.endswith('""""') and "characters cut" in shown


def test_a_frame_and_an_array_come_back_as_json():
    frame = pd.DataFrame({"name": [f"item {i}" for i in range(3000)], "price": np.arange(3000) * 1.5,
                          "note": ["a long description of the item " * 3] * 3000})
    shown, _ = _read(frame)
    assert shown["columns"] == ["name", "price", "note"] and shown["data"][0][:2] == ["item 0", 0.0]
    assert any("rows not shown" in row or "items cut" in row for row in shown["data"] if isinstance(row, str))
    array, _ = _read(np.arange(200 * 200, dtype=float).reshape(200, 200))
    assert array[0][:3] == [0.0, 1.0, 2.0] and any(isinstance(item, str) for item in array[0])


@pytest.mark.parametrize("levels", [300, 5000])
def test_deep_nesting_is_cut_at_a_level_and_says_so(levels):
    """300 levels were "Circular reference detected", 5000 a RecursionError: no result at all."""
    shown, _ = _read({"tree": _nested(levels)})
    depth, node = 0, shown["tree"]
    while isinstance(node, list):
        depth, node = depth + 1, node[0]
    assert depth == functions.MAX_DEPTH - 1 and "nested more than" in node


def test_deep_nesting_that_is_also_wide_fits_the_limit():
    tree: dict = {"leaf": "v" * 200}
    for level in range(60):
        tree = {f"branch {level} " + "k" * 100: tree, "value": "v" * 200}
    shown, _ = _read(tree)
    assert list(shown)[1] == "value" and "cut" in json.dumps(shown)
