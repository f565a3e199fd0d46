"""The routing lab under records a researcher or an attacker might bring: broken gate weights, models with
thousands of experts, large saved records. Memory stays bounded and nothing wrong is shown as plausible."""
from __future__ import annotations

import json
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
import pytest
import traitlets

from gptoss_lab.routing import Routing, load
from gptoss_lab.widgets.routing import RoutingView


def _peak(call: Callable[[], object]) -> tuple[object, int]:
    """(what `call()` returned or raised, the peak bytes it allocated)."""
    tracemalloc.start()
    try:
        try:
            result = call()
        except Exception as error:  # the caller checks what was raised
            result = error
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _many_experts(n: int = 2000, layers: int = 3, k: int = 4, experts: int = 32768) -> Routing:
    rng = np.random.default_rng(0)
    ids = np.stack([rng.choice(experts, (layers, k), replace=False) for _ in range(n)])
    return Routing(rng.integers(1, 1000, n), ids, np.full((n, layers, k), 1 / k), num_experts=experts)


def test_the_live_view_sends_a_nan_gate_weight_as_nan():
    """The view packed weights as 16-bit fixed point: NaN arrived as 0, infinity and 7.5 as 1 (the browser test
    tests/browser/test_routing_trust_browser.py shows what the panel then says)."""
    weights = np.array([[[np.nan, 0.25]], [[7.5, np.inf]]], np.float32)
    view = RoutingView(Routing([1, 2], [[[0, 1]], [[1, 0]]], weights, num_experts=2))
    sent = np.frombuffer(view.weights, "<f4").reshape(2, 1, 2)
    np.testing.assert_array_equal(sent, weights)
    view.close()


def test_coactivation_of_32768_experts_is_refused_in_one_line_not_8_gb():
    """An experts × experts array of a 32,768-expert record is 8 GiB (int64): it was allocated (more than once)."""
    r = _many_experts()
    for call, what in ((lambda: r.coactivation(), "co-activation of 32768 experts would be 32768 × 32768 counts"),
                       (lambda: r.coactivation(1), "co-activation of 32768 experts would be 32768 × 32768 counts"),
                       (lambda: r.transitions(0), "transitions of 32768 experts would be 32768 × 32768 counts"),
                       (lambda: r.transitions(), "transitions of 32768 experts would be 2 × 32768 × 32768 counts")):
        error, peak = _peak(call)
        assert isinstance(error, ValueError), error
        message = str(error)
        assert "\n" not in message and message.startswith(what)
        assert "GiB): pass experts=[...] to count a subset" in message
        assert peak < 1 << 20
    assert "(8.0 GiB)" in str(_peak(r.coactivation)[0])


def test_coactivation_and_transitions_of_a_subset_of_many_experts_stay_small():
    r = _many_experts()
    busiest = np.argsort(-r.load().counts.sum(0), kind="stable")[:50]
    table, peak = _peak(lambda: r.coactivation(experts=busiest))
    assert table.shape == (50, 50) and peak < 16 << 20
    expected = np.zeros((50, 50), np.int64)  # counted by hand
    where = {int(e): i for i, e in enumerate(busiest)}
    for token in r.experts:
        for picks in token:
            chosen = [where[int(e)] for e in picks if int(e) in where]
            for a in chosen:
                for b in chosen:
                    expected[a, b] += 1
    np.testing.assert_array_equal(table, expected)
    flows, peak = _peak(lambda: r.transitions(experts=busiest))
    assert flows.shape == (2 * 50, 50) and peak < 16 << 20
    assert list(flows.columns) == busiest.tolist() and list(flows.loc[0].index) == busiest.tolist()


def test_a_subset_counts_as_the_full_table_does():
    rng = np.random.default_rng(1)
    ids = np.stack([[rng.choice(6, 2, replace=False) for _ in range(3)] for _ in range(40)])
    r = Routing(rng.integers(1, 50, 40), ids, np.full(ids.shape, 0.5), num_experts=6)
    subset = [4, 0, 2]
    np.testing.assert_array_equal(r.coactivation(experts=subset), r.coactivation()[np.ix_(subset, subset)])
    np.testing.assert_array_equal(r.coactivation(2, subset), r.coactivation(2)[np.ix_(subset, subset)])
    for top1 in (True, False):
        full, part = r.transitions(1, top1=top1), r.transitions(1, top1=top1, experts=subset)
        np.testing.assert_array_equal(part.to_numpy(), full.loc[subset, subset].to_numpy())
    figure = r.transitions(1, experts=subset).plot()
    figure.canvas.draw()
    for axis in (figure.axes[0].xaxis, figure.axes[0].yaxis):  # the figure names the experts, not their positions
        assert [tick.get_text() for tick in axis.get_ticklabels() if tick.get_text()] == ["4", "0", "2"]


@pytest.mark.parametrize("experts, message", [([1, 1], "distinct ids from 0 to 5"), ([6], "distinct ids from 0 to 5"),
                                              ([-1], "distinct ids from 0 to 5"), ([0.5], "list of expert ids")])
def test_a_wrong_subset_of_experts_is_refused_in_one_line(experts, message):
    r = Routing([1, 2], np.array([[[0, 1]], [[2, 3]]]), np.full((2, 1, 2), 0.5), num_experts=6)
    with pytest.raises((ValueError, TypeError), match=message):
        r.coactivation(experts=experts)


def test_an_empty_subset_of_experts_counts_nothing_in_empty_tables():
    """`experts=[]` (a filter that kept no expert) was numpy's IndexError "arrays used as indices must be of integer
    (or boolean) type", while np.array([], int) gave the empty table."""
    r = Routing([1, 2], np.array([[[0, 1], [1, 2]], [[2, 3], [3, 4]]]), np.full((2, 2, 2), 0.5), num_experts=6)
    assert r.coactivation(experts=[]).shape == (0, 0)
    assert r.transitions(0, experts=[]).shape == (0, 0) and r.transitions(experts=[]).shape == (0, 0)


def test_selecting_tokens_of_a_loaded_record_does_not_copy_all_its_weights(tmp_path):
    """`select` with a mask converted the whole memory-mapped record's gate weights to float32 (twice its file,
    in memory) to keep a few tokens."""
    n = 200_000
    rng = np.random.default_rng(2)
    r = Routing(rng.integers(1, 1000, n), rng.integers(0, 8, (n, 2, 4)), rng.random((n, 2, 4)), num_experts=8)
    saved = load(r.save(tmp_path / "big"))
    mask = np.zeros(n, bool)
    mask[::20_000] = True
    part, peak = _peak(lambda: saved.select(mask))
    assert len(part) == 10 and peak < 1 << 20  # the float32 weights are 6.4 MB
    np.testing.assert_allclose(part.weights, r.weights[mask], atol=1 / 65535)


def test_a_record_larger_than_memory_says_so_in_one_line_instead_of_ending_the_kernel(tmp_path):
    """A record folder of sparse files (kB on disk, twice the machine's memory in size: a hand-made one, or a record
    too large for this machine) loaded, then its gate weights as float32 had the system kill the process (a 40 M-token
    record needed 30 GiB at once, of 24), or failed deep in numpy with a MemoryError. Its first tokens still read."""
    import psutil

    layers, k = 24, 4
    n = int(psutil.virtual_memory().available // (layers * k * 4)) * 2 + 1
    path = Routing([5, 6], np.zeros((2, layers, k), int), np.full((2, layers, k), 0.25), num_experts=32).save(
        tmp_path / "huge")
    for name, dtype, shape in (("tokens", "<i4", (n,)), ("labels", "u1", (n,)), ("experts", "u1", (n, layers, k)),
                               ("weights", "<u2", (n, layers, k))):
        header = np.lib.format.header_data_from_array_1_0(np.zeros(0, dtype))
        with open(path / f"{name}.npy", "wb") as file:   # a header, then a hole as large as the rows
            np.lib.format.write_array_header_1_0(file, {**header, "shape": shape})
            file.truncate(file.tell() + int(np.prod(shape)) * np.dtype(dtype).itemsize)
    np.save(path / "offsets.npy", np.array([0, n], np.int64))
    meta = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps({**meta, "tokens": n}))
    record = load(path)
    for ask, what in ((lambda: record.weights, f"the gate weights of {n:,} tokens as float32"),
                      (record.to_frame, f"a table of {n * layers * k:,} rows")):
        t0 = time.perf_counter()
        with pytest.raises(MemoryError, match=rf"^{what} would take [\d.]+ GiB, more than the [\d.]+ GiB of memory "
                                              r"free: look at a part of the record, routing.select\(slice\(0, n\)\)$"):
            ask()
        assert time.perf_counter() - t0 < 5
    part = record.select(slice(0, 1000))
    assert part.weights.shape == (1000, layers, k) and not part.weights.any()


def test_vocabulary_specialisation_of_32768_experts_counts_only_the_pairs_seen():
    """top_tokens and token_concentration counted into experts × distinct token ids tables: 32,768 experts and
    860 token ids took 1 GB a layer, a corpus's vocabulary would take the machine."""
    r = _many_experts()
    r.top_tokens(3), r.token_concentration(1)   # once first: pandas' first use imports ~38 MB, counted by whoever runs first
    table, peak = _peak(lambda: r.top_tokens(3))
    assert peak < 32 << 20
    counted = r.to_frame().groupby(["layer", "expert", "token"]).size().rename("count").reset_index()  # by hand
    counted = counted.sort_values(["layer", "expert", "count", "token"], ascending=[True, True, False, True])
    expected = counted.groupby(["layer", "expert"]).head(3).reset_index(drop=True)
    assert table[["layer", "expert", "token", "count"]].values.tolist() == expected.values.tolist()
    concentration, peak = _peak(lambda: r.token_concentration(1))
    assert peak < 32 << 20 and (concentration[[f"layer {l}" for l in range(3)]].to_numpy() > 0).all()


def _saved(tmp_path, **meta):
    """A small record folder with meta.json entries replaced (as a hand-made or hostile file might have them)."""
    r = Routing([1, 2, 3], np.array([[[0, 1]], [[2, 3]], [[1, 2]]]), np.full((3, 1, 2), 0.5),
                ["user", "final", "final"], num_experts=4)
    path = r.save(tmp_path / "record")
    data = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps({**data, **meta}))
    return path


def test_a_record_naming_a_label_twice_is_refused(tmp_path):
    """label_names ["user", "final", "final"] with codes 0, 1, 2: the tokens of code 2 were never counted as "final"
    (`load("final")` counted 1 token of 3, with nothing to say so)."""
    path = _saved(tmp_path, label_names=["final", "final"])
    with pytest.raises(ValueError, match=r"is not a valid routing record: meta.json's label_names has 'final' twice$"):
        load(path)


def test_a_deeply_nested_meta_json_is_refused_in_one_line(tmp_path):
    """JSON nested past Python's recursion limit raised a RecursionError traceback, on load and on saving over it."""
    path = _saved(tmp_path)
    (path / "meta.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="is not a valid routing record: meta.json: maximum recursion depth"):
        load(path)
    with pytest.raises(FileExistsError, match="exists and is not a routing record"):
        Routing([1], np.zeros((1, 1, 1), int), np.ones((1, 1, 1))).save(path)


def test_a_wide_record_shows_as_many_entries_as_gpt_oss_120b_not_8_times_more():
    """The view carried its first 50,000 tokens whatever their width: at top-32 (a top-k intervention) that is 8 times
    the entries of gpt-oss-120b's 36 layers × top-4, hundreds of MB packed in the kernel and sent to the browser."""
    n, layers, k = 8000, 36, 32
    rng = np.random.default_rng(3)
    experts = np.argsort(rng.random((n, layers, k), dtype=np.float32), axis=-1).astype(np.int16)
    r = Routing(rng.integers(1, 1000, n), experts, np.full((n, layers, k), 1 / k, np.float32), num_experts=k)
    view = RoutingView(r)
    shown = 50_000 * 36 * 4 // (layers * k)
    assert view.total == n and len(view.strings) == shown == 6250
    assert len(view.experts) == shown * layers * k * 2 and len(view.weights) == shown * layers * k * 4
    view.close()


def _small() -> Routing:
    return Routing([1, 2, 1], np.array([[[0, 1], [2, 3]], [[1, 2], [3, 0]], [[0, 3], [2, 1]]]), np.full((3, 2, 2), 0.5),
                   ["user", "final", "final"], num_experts=4)


def test_a_view_refuses_a_layer_the_record_lacks():
    """`view.layer = 2` on a 2-layer record drew the load bars of picks 4 and 5 of each token: the next token's
    layer 0, shown as layer 2 without a word."""
    view = RoutingView(_small(), layer=1)
    assert view.layer == 1
    for bad in (2, -3):   # (-1 is the last layer, -2 the first of two: as everywhere in the routing lab)
        with pytest.raises(traitlets.TraitError, match=r"^layer is None \(all layers\) or a layer: this record has "
                           rf"layers 0..1 \(-1 = the last\): there is no layer {bad}$"):
            view.layer = bad
    assert view.layer == 1
    view.close()


@pytest.mark.parametrize("n", [0, -1])
def test_an_expert_card_of_fewer_than_one_token_is_refused(n):
    """n=-1 showed every top token and neighbour but the last, as a slice does."""
    with pytest.raises(ValueError, match=rf"^n \(top tokens and neighbours shown\) must be at least 1, not {n}$"):
        _small().expert_card(0, 0, n)


def test_a_record_of_top_0_displays(tmp_path):
    """A record of top-0 saves and loads like any (a hand-made one, a file's), but showing it raised numpy's "index 0
    is out of bounds for axis 2 with size 0" where the picture of its grid should be."""
    r = load(Routing([1, 2], np.zeros((2, 3, 0), int), np.zeros((2, 3, 0)), num_experts=4).save(tmp_path / "top0"))
    bundle = r._repr_mimebundle_()
    assert bundle["text/plain"] == "Routing(2 tokens × 3 layers × top-0 of 4 experts)"  # no labels: said by none
    assert bundle["image/png"].startswith(b"\x89PNG")


def test_label_divergence_of_thousands_of_labels_takes_seconds_not_minutes():
    """Labels are any per-token texts (documents, sources): each label's "vs rest" summed every label's counts again,
    so 3,000 labels took ~18 s and 5,000 a minute (labels² time)."""
    n, layers, k, experts = 12_000, 36, 4, 128
    rng = np.random.default_rng(4)
    r = Routing(rng.integers(1, 1000, n), rng.integers(0, experts, (n, layers, k)), np.full((n, layers, k), 0.25),
                num_experts=experts)
    labels = [f"doc {i // 4}" for i in range(n)]
    start = time.perf_counter()
    table = r.label_divergence(labels)
    assert time.perf_counter() - start < 10
    assert table.shape == (layers, 1 + 3000) and (table.to_numpy() >= 0).all()


def test_figures_of_a_thousand_labels_draw_the_biggest_sixteen():
    """Labels per document (1,000 of them): `label_load(...).plot()` made 1,000 heat maps, minutes of drawing for a
    picture no one can read (3 minutes for the PNG here); `label_divergence(...).plot()` 1,000 lines and legend rows."""
    n = 2000
    rng = np.random.default_rng(5)
    r = Routing(rng.integers(1, 1000, n), rng.integers(0, 8, (n, 4, 2)), np.full((n, 4, 2), 0.5), num_experts=8)
    labels = ["big"] * 50 + [f"doc {i % 1000}" for i in range(n - 50)]  # docs 0..949 have 2 tokens, the rest 1
    figure = r.label_load(labels).plot()
    panels = [ax.get_title() for ax in figure.axes if ax.images and ax.get_visible()]
    assert panels == ["big (50 tokens)"] + [f"doc {i} (2 tokens)" for i in range(15)]
    assert figure._suptitle.get_text().endswith("(16 of 1,001 labels: those with most tokens)")
    figure = r.label_divergence(labels).plot()
    assert len(figure.axes[0].lines) == 17  # jsd and 16 labels' "vs rest"
    assert figure.axes[0].get_legend().get_title().get_text() == "16 of 1,001 labels drawn"   # the legend's heading
