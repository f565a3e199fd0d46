"""The routing lab, more: re-displaying a record keeps no extra view in the kernel, label and card analyses stay
fast on large records, hand-made records with no experts or top-0 answer in one line, and saved records refuse
numbers JSON does not have."""
from __future__ import annotations

import gc
import time
import tracemalloc

import numpy as np
import pandas as pd
import pytest

from gptoss_lab.routing import Routing, load
from gptoss_lab.routing.corpus import Corpus
from gptoss_lab.routing.record import RecordWriter

_WIDGET = "application/vnd.jupyter.widget-view+json"


def _record(n: int, layers: int = 24, k: int = 4, experts: int = 32) -> Routing:
    rng = np.random.default_rng(0)
    return Routing.from_arrays(rng.integers(0, 50_000, n).astype(np.int32),
                               rng.integers(0, experts, (n, layers, k)).astype(np.int16),
                               np.full((n, layers, k), 1 / k, np.float32), (np.arange(n) % 2).astype(np.uint8),
                               ["analysis", "final"], num_experts=experts)


def test_showing_a_record_again_keeps_one_view_in_the_kernel():
    """Each display (a cell ending in `r`, `%gptoss routing`) made a new RoutingView that stayed an observer of
    the record and a live widget with its own copy of the record: re-running the cell grew the kernel each time."""
    r = _record(20_000)  # its view carries 11.5 MB of packed ids and weights
    first = r._repr_mimebundle_()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(3):  # the cell run three more times
            again = r._repr_mimebundle_()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(r._observers) == 1
    assert again[_WIDGET]["model_id"] == first[_WIDGET]["model_id"] and r.view() is r.view()
    assert again["image/png"][:4] == b"\x89PNG"
    assert grown < 2 << 20, f"{grown:,} bytes more after three displays"
    view = r.view()
    view.close()  # a closed view is not shown again: the next display makes a new one
    shown = r._repr_mimebundle_()
    assert shown[_WIDGET]["model_id"] != first[_WIDGET]["model_id"] and len(r._observers) == 1
    r.view().close()


def test_label_load_of_many_labels_is_fast():
    """Token counts per label were one pass over the tokens per label: 1.7 s for 20,000 labels of 200,000 tokens."""
    n, m = 200_000, 20_000
    rng = np.random.default_rng(0)
    r = _record(n, layers=1, k=1, experts=4)
    labels = pd.Categorical.from_codes(rng.integers(0, m, n), [f"label {i}" for i in range(m)])
    start = time.perf_counter()
    table = r.label_load(labels)
    took = time.perf_counter() - start
    expected = np.bincount(labels.codes, minlength=m)
    assert table.attrs["tokens"] == {f"label {i}": int(expected[i]) for i in np.flatnonzero(expected)}
    assert took < 0.5, f"{took:.2f} s"


def _no_experts() -> list[Routing]:
    """Hand-made records with no experts: empty, and two tokens × 3 layers × top-0."""
    return [Routing(), Routing([1, 2], np.zeros((2, 3, 0), int), np.zeros((2, 3, 0)), ["text"] * 2)]


def test_label_load_of_a_record_with_no_experts_is_empty():
    """It raised numpy's "cannot reshape array of size 0 into shape (0)"."""
    for r, rows in zip(_no_experts(), (0, 3)):
        table = r.label_load()
        assert table.shape == (rows, 0)


def test_hot_and_cold_of_a_record_with_no_experts_says_so_in_one_line():
    """It raised numpy's "attempt to get argmax of an empty sequence"."""
    for r in _no_experts():
        with pytest.raises(ValueError, match=r"^this record has no experts \(num_experts is 0\): none is hot or cold$"):
            r.hot_and_cold()


def test_hot_and_cold_of_a_record_with_no_picks_says_so_in_one_line():
    """A channel with no tokens (`r.select(r.mask("commentary"))`) or a top-0 record named expert 0 both the hottest
    and the coldest expert of every layer, with a share of 0 and a balance of 0, as if measured."""
    r = _record(40, layers=2, experts=8)
    for empty in (r.select(r.mask("commentary")), Routing([1, 2], np.zeros((2, 2, 0), int), np.zeros((2, 2, 0)),
                                                          num_experts=8)):
        with pytest.raises(ValueError, match=r"^this record has no expert picks \(no tokens, or top-0\): "
                                             r"none is hot or cold$"):
            empty.hot_and_cold()
    assert r.select(r.mask("final")).hot_and_cold()["hot_share"].gt(0).all()


def test_figures_of_a_record_with_no_experts_say_so_without_warnings():
    """Displaying such a record (its load heat map), its label load and its transitions warned matplotlib's
    "Attempting to set identical low and high xlims" into the cell's output."""
    import warnings

    r = _no_experts()[1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figures = [r.figure("load"), r.label_load().plot(), r.transitions(0).plot()]
        assert r._repr_mimebundle_()["image/png"][:4] == b"\x89PNG"
    for figure in figures:
        assert [t.get_text() for t in figure.axes[0].texts] == ["no experts"]
    r.view().close()


def test_comparing_records_with_no_layers_prints():
    """The comparison's repr raised "zero-size array to reduction operation maximum"."""
    said = repr(Routing().compare(Routing()))
    assert said == "Jensen–Shannon divergence of expert load: the records have no layers"


def test_agreement_and_route_changes_of_top_0_records():
    """Both raised IndexError (slot 0 of a top-0 record): tokens with no experts in either record agree fully."""
    none = Routing([1, 2], np.zeros((2, 3, 0), int), np.zeros((2, 3, 0)), ["text"] * 2, num_experts=8)
    two = Routing([1, 2], np.ones((2, 3, 2), int) * [0, 1], np.full((2, 3, 2), 0.5), ["text"] * 2, num_experts=8)
    agree = none.agreement(none)
    assert agree.to_numpy().tolist() == [[1.0, 1.0, 1.0]] * 3
    assert none.route_changes(none)[["layers_changed", "top1_changed"]].to_numpy().tolist() == [[0, 0]] * 2
    assert none.agreement(two).to_numpy().tolist() == [[0.0, 0.0, 0.0]] * 3
    assert none.route_changes(two)[["layers_changed", "top1_changed"]].to_numpy().tolist() == [[3, 3]] * 2


def _corpus() -> Corpus:
    r = Routing([1, 2, 3], np.zeros((3, 2, 2), int), np.full((3, 2, 2), 0.5), ["text"] * 3, num_experts=4)
    return Corpus(r, [0, 3], ["a"], {"seconds": 1.5})


def test_a_corpus_with_fractional_offsets_is_refused_in_one_line():
    """Offsets [0, 1.5, 3] were cut to [0, 1, 3]: the texts were split where no one said."""
    with pytest.raises(ValueError, match="^offsets are whole numbers of tokens, not float64 values$"):
        Corpus(_corpus().combined, [0, 1.5, 3])
    assert Corpus(_corpus().combined, np.array([0, 1, 3], np.uint32)).lengths.tolist() == [1, 2]


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_a_saved_corpus_with_seconds_nan_is_refused_in_one_line(tmp_path, value):
    """Python's json reads NaN and Infinity, which JSON has not: the corpus loaded and its repr said "nan s"."""
    folder = _corpus().save(tmp_path / "c")
    text = (folder / "meta.json").read_text().replace('"seconds": 1.5', f'"seconds": {value}')
    (folder / "meta.json").write_text(text)
    with pytest.raises(ValueError) as error:
        Corpus.load(folder)
    assert str(error.value) == f"{folder} is not a valid routing record: meta.json: {value} is no JSON number"


def test_a_corpus_with_nan_in_its_meta_is_not_saved(tmp_path):
    """It was saved with NaN in meta.json (then refused on load)."""
    corpus = _corpus()
    corpus.meta["seconds"] = float("nan")
    with pytest.raises(TypeError, match="^a routing record's meta must be JSON data: Out of range float values"):
        corpus.save(tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_the_record_writer_refuses_nan_gate_weights(tmp_path):
    """`RecordWriter.append` stored a NaN weight as 0 (16-bit fixed point), a plausible number."""
    weights = np.full((3, 2, 2), 0.5)
    weights[1, 1, 0] = np.nan
    bad = Routing([1, 2, 3], np.zeros((3, 2, 2), int), weights, ["text"] * 3, num_experts=4)
    with pytest.raises(ValueError, match=r"^token 1 has gate weight nan in layer 1, not a share in 0\.\.1"):
        with RecordWriter(tmp_path / "w", layers=2, top_k=2, num_experts=4) as writer:
            writer.append(bad)
    assert len(load(tmp_path / "w")) == 0  # nothing of it was written


def test_an_expert_card_reads_one_layer_not_the_whole_record():
    """Its share came from the whole record's load: every card clicked on a big record scanned every layer
    (int64 blocks of 50 MB here)."""
    r = _record(100_000)
    r.expert_card(3, 5)  # what any first card allocates once (the tokenizer)
    tracemalloc.start()
    try:
        card = r.expert_card(3, 5)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert card.share == pytest.approx(r.load().share[3, 5]) and card.picks == int((r.experts[:, 3] == 5).any(1).sum())
    assert peak < 16 << 20, f"{peak:,} bytes for one card"
    by_label = card.labels.set_index("label")
    hit = (r.experts[:, 3] == 5).any(1)
    assert by_label.loc["final", "tokens"] == 50_000
    assert by_label.loc["final", "chose"] == pytest.approx(hit[1::2].mean())


def test_entropy_of_a_layer_one_expert_takes_whole_is_zero_not_minus_zero():
    """A layer where every pick is one expert's has entropy 0: it printed as "-0." (the sum negated), in the
    array and in hot_and_cold's balance column."""
    ids = np.zeros((3, 2, 1), int)
    ids[:, 1, 0] = [0, 1, 0]                      # layer 1: two experts share the picks
    r = Routing([1, 2, 3], ids, np.ones((3, 2, 1)), num_experts=2)
    shown = np.array2string(r.entropy())
    assert "-0" not in shown and shown.startswith("[0. "), shown
    assert not np.signbit(r.entropy()[0])
    # no tokens (an empty text's record, a part selected with none): 0 bits said "one expert takes every pick"
    assert np.isnan(r.select([]).entropy()).all()
