"""Routing analyses against results computed by hand on small records, and the record's file format."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import gptoss_lab
from gptoss_lab import harmony
from gptoss_lab.routing import Corpus, Frame, Routing, load


def _record() -> Routing:
    """4 tokens (ids a b a c), 3 layers, top-2 of 4 experts, two labels.

    layer 0: token a always goes to {0, 1}; b to {2, 3}; c to {0, 2}
    layer 1: every token goes to {1, 0} (top-1 = 1)
    layer 2: top-1 follows layer 0's top-1 plus one: a -> 1, b -> 3, c -> 1
    """
    a, b, c = harmony.encode_text(" alpha")[0], harmony.encode_text(" beta")[0], harmony.encode_text(" gamma")[0]
    experts = np.array([
        [[0, 1], [1, 0], [1, 2]],   # a
        [[2, 3], [1, 0], [3, 0]],   # b
        [[0, 1], [1, 0], [1, 3]],   # a
        [[0, 2], [1, 0], [1, 0]],   # c
    ])
    weights = np.array([[[0.75, 0.25], [0.5, 0.5], [0.6, 0.4]]] * 4)
    return Routing([a, b, a, c], experts, weights, ["user", "user", "final", "final"], num_experts=4)


def test_top_tokens_counts_and_specialisation():
    r = _record()
    a, b = int(r.tokens[0]), int(r.tokens[1])
    table = r.top_tokens(2, layer=0)
    expert0 = table[table.expert == 0]
    # expert 0 of layer 0 is chosen for a twice (of 2 uses) and for c once (of 1 use)
    assert expert0[["token", "count", "specialisation"]].values.tolist()[0] == [a, 2, 1.0]
    assert expert0["count"].tolist() == [2, 1] and expert0["text"].tolist()[0] == " alpha"
    assert table[table.expert == 3][["token", "count"]].values.tolist() == [[b, 1]]
    by_spec = r.top_tokens(1, layer=0, by="specialisation", min_count=2)  # only a is seen twice
    assert set(by_spec["token"]) == {a} and set(by_spec["expert"]) == {0, 1}
    # its figure drew the counts under a title of counts, x axes unlabelled: what a bar measures is said, and drawn
    for by, measure, axis in (("count", "count", "times chosen"), ("specialisation", "specialisation", "share")):
        table = r.top_tokens(2, layer=0, by=by)
        panel = table.plot().axes[0]   # expert 0: a twice of its 2 uses, c once of its 1
        assert [bar.get_width() for bar in panel.patches] == table[table.expert == 0][measure].tolist()
        assert axis in panel.get_xlabel()
    assert list(r.top_tokens(1).groupby("layer").size()) == [4, 2, 4]  # experts that were ever chosen, per layer


def test_token_concentration_separates_token_id_from_context_routing():
    r = _record()
    table = r.token_concentration(min_count=2)  # only token a (2 uses) qualifies
    assert list(table.index) == [int(r.tokens[0])] and table["count"].tolist() == [2]
    # a's picks: layer 0 {0,1} {0,1} -> its 2 usual experts take 4/4; layer 2: {1,2} {1,3} -> 1 and 2 (or 3) take 3/4
    assert table.loc[int(r.tokens[0]), ["layer 0", "layer 1", "layer 2"]].tolist() == [1.0, 1.0, 0.75]
    assert table["mean"].iloc[0] == pytest.approx(2.75 / 3)


def test_label_load_and_divergence():
    r = _record()
    table = r.label_load()
    assert list(table.index.get_level_values("label").unique()) == ["user", "final"]
    np.testing.assert_allclose(table.loc[("user", 0)].values, [0.25, 0.25, 0.25, 0.25])
    np.testing.assert_allclose(table.loc[("final", 0)].values, [0.5, 0.25, 0.25, 0.0])
    assert table.attrs["tokens"] == {"user": 2, "final": 2}
    divergence = r.label_divergence()
    # layer 1: both labels go to {0, 1} only -> 0 bits; layer 0: JSD of (1/4,1/4,1/4,1/4) and (1/2,1/4,1/4,0)
    p, q = np.array([0.25, 0.25, 0.25, 0.25]), np.array([0.5, 0.25, 0.25, 0.0])
    m = (p + q) / 2
    h = lambda x: -(x[x > 0] * np.log2(x[x > 0])).sum()  # noqa: E731
    expected = h(m) - (h(p) + h(q)) / 2
    assert divergence.loc[0, "jsd"] == pytest.approx(expected)            # equal weights: generalised = plain JSD
    assert divergence.loc[0, "user vs rest"] == pytest.approx(expected)   # two labels: the rest is the other one
    assert divergence.loc[1, "jsd"] == pytest.approx(0.0)
    # labels given per token (e.g. a domain) replace the channels
    by_word = r.label_load(["a", "b", "a", "c"])
    np.testing.assert_allclose(by_word.loc[("a", 0)].values, [0.5, 0.5, 0.0, 0.0])
    with pytest.raises(ValueError, match="one label per token"):
        r.label_load(["x"])


def test_transitions_top1_and_all_pairs():
    r = _record()
    top1 = r.transitions(1)  # layer 1 top-1 is always 1; layer 2 top-1: 1, 3, 1, 1
    assert top1.loc[1, 1] == 3 and top1.loc[1, 3] == 1 and top1.values.sum() == 4
    pairs = r.transitions(0, top1=False)  # every pair of top-2 picks: 4 tokens × 2 × 2
    assert pairs.values.sum() == 16 and pairs.loc[2, 1] == 2 and pairs.loc[0, 0] == 3  # 2 -> 1: b and c
    every = r.transitions(normalize=True)
    assert every.index.names == ["layer", "expert"] and every.shape == (2 * 4, 4)
    np.testing.assert_allclose(every.loc[(0, 0)].values, [0, 1, 0, 0])  # a, a, c: top-1 0 -> 1
    with pytest.raises(ValueError, match=r"^layer 2 is the last, which no layer follows: transitions go from layers 0..1"):
        r.transitions(2)


def test_transition_figures_say_what_their_colours_measure():
    """The colour bar said "tokens" also for probabilities (normalize=True) and for pairs of top-k picks."""
    r = _record()
    for table, label in ((r.transitions(0), "tokens"), (r.transitions(top1=False), "pairs of top-k picks"),
                         (r.transitions(1, normalize=True), "P(next expert | expert)")):
        figure = table.plot()   # a panel per layer of the table, each with its colour bar (an axis without title)
        assert {ax.get_ylabel() for ax in figure.axes if not ax.get_title()} == {label}


def test_figures_coloured_by_expert_or_layer_have_a_key_saying_so():
    """The grid (`figure("grid")` and the still image of a routing view) coloured each cell by its top-1 expert
    with no key: a reader could not tell an expert id from a gate weight, nor what a grey cell was. The
    hot-and-cold lines were coloured by layer with no range given."""
    from matplotlib.figure import Figure

    from gptoss_lab.widgets.routing_figures import view_figure

    r = _record()  # 4 tokens ("user", "user", "final", "final"), 3 layers, top-2 of 4 experts

    def key(figure: Figure) -> Any:
        """The colour bar of the figure's grid (its first panel's image)."""
        bar = figure.axes[0].images[0].colorbar
        assert bar is not None and bar.ax in figure.axes, "the grid has no colour bar"
        return bar

    for figure in (r.figure("grid"), view_figure(r)):
        bar = key(figure)
        assert bar.ax.get_ylabel() == "top-1 expert (id)"
        assert (bar.norm.vmin, bar.norm.vmax) == (-0.5, 3.5)  # one band per expert id 0..3
        assert list(bar.get_ticks()) == [0, 1, 2, 3]  # ticked at whole ids, all of them here
    greyed = key(r.figure("grid", channel="final")).ax.yaxis.label  # the "user" tokens are grey
    assert greyed.get_text() == "top-1 expert (id)\ngrey: not final" and greyed.get_parse_math() is False
    assert [ax.get_ylabel() for ax in view_figure(r).axes[2:]] == ["top-1 expert (id)", "share of top-k picks"]
    lines = r.hot_and_cold(top=1).plot()
    assert [ax.get_ylabel() for ax in lines.axes] == ["cumulative share of picks", "layer"]  # the lines' colour bar
    assert lines.axes[1].get_ylim() == (0, 2)  # layers 0..2, dark to light


def test_hot_and_cold_experts():
    r = _record()
    table = r.hot_and_cold(top=1)
    assert table.loc[1, "hot_share"] == 0.5 and table.loc[1, "unused"] == 2  # only experts 0 and 1 in layer 1
    # layer 2 picks: 1 ×3, 2, 3 ×2, 0 -> hot expert 1 with 3/8, cold expert 2 or 0 with 1/8
    assert table.loc[2, "hot"] == 1 and table.loc[2, "hot_share"] == 3 / 8 and table.loc[2, "cold_share"] == 1 / 8
    assert table.loc[2, "top1_share"] == 3 / 8
    assert table.loc[1, "balance"] == pytest.approx(0.5)  # 1 bit of log2(4) = 2


def test_agreement_and_route_changes():
    r = _record()
    other_experts = r.experts.copy()
    other_experts[1, 0] = [3, 1]      # token 1, layer 0: {2,3} -> {3,1}: overlap 1 of 2, top-1 differs
    other_experts[3, 2] = [0, 1]      # token 3, layer 2: same set {1,0}, top-1 differs
    other = Routing(r.tokens, other_experts, r.weights, r.labels, num_experts=4)
    table = r.agreement(other)
    assert table.loc[0].tolist() == [pytest.approx(7 / 8), 0.75, 0.75]
    assert table.loc[1].tolist() == [1.0, 1.0, 1.0]
    assert table.loc[2].tolist() == [1.0, 0.75, 1.0]
    changes = r.route_changes(other)
    assert changes["layers_changed"].tolist() == [0, 1, 0, 0] and changes["top1_changed"].tolist() == [0, 1, 0, 1]
    with pytest.raises(ValueError, match="same tokens"):
        r.agreement(r.select(slice(0, 3)))


def test_a_layer_given_to_the_grid_figure_is_refused_in_one_line():
    """`figure("grid", layer=5)` on a record of 3 layers drew every layer and said nothing (a layer it lacks, or True,
    read as "this layer's grid"); "load" draws one layer."""
    r = _record()
    for layer in (5, 1, True):
        with pytest.raises(TypeError, match=rf"^the grid figure shows every layer: layer={layer!r} is an option of "
                                            r"kind 'load'$"):
            r.figure("grid", layer=layer)
    assert r.figure("load", layer=-1).axes[0].get_title() == "expert load, layer 2"


def test_the_agreement_of_records_without_tokens_is_refused_in_one_line():
    """Two empty records (an empty text's, `corpus[i]`) agreed 0.0 in every layer: a record and itself, without
    tokens, read as routed entirely differently."""
    empty = _record().select([])
    with pytest.raises(ValueError, match=r"^these records have no tokens \(an empty text routes none\): there is no "
                                         r"agreement to measure$"):
        empty.agreement(empty)
    assert len(empty.route_changes(empty)) == 0  # per token: no rows, as before
    with pytest.raises(ValueError, match="same tokens"):
        empty.agreement(_record())


def test_empty_slots_and_smaller_top_k_in_agreement():
    # a top-1 intervention on layer 0 left slot 1 empty: the record agrees fully with itself
    experts = np.array([[[0, -1], [1, 2]], [[3, -1], [0, 1]]])
    r = Routing([5, 6], experts, np.full((2, 2, 2), 0.5), ["text"] * 2, num_experts=4)
    assert r.agreement(r).values.tolist() == [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    assert r.route_changes(r)["layers_changed"].tolist() == [0, 0]
    # {0, 1} against {0}: half of a's experts are in b's, the top-1 agrees, the sets differ
    two = Routing([5], np.array([[[0, 1]]]), np.full((1, 1, 2), 0.5), num_experts=4)
    one = Routing([5], np.array([[[0]]]), np.ones((1, 1, 1)), num_experts=4)
    assert two.agreement(one).values.tolist() == [[0.5, 1.0, 0.0]]
    assert one.agreement(two).values.tolist() == [[1.0, 1.0, 0.0]]
    assert two.route_changes(one)["layers_changed"].tolist() == [1]


def test_user_errors_are_one_line_value_errors():
    r = _record()
    with pytest.raises(ValueError, match="expert ids go from 0 to 3 .* not 4"):
        Routing([1], np.array([[[0, 4]]]), np.full((1, 1, 2), 0.5), num_experts=4)  # was counted in the next layer
    with pytest.raises(ValueError, match="not -2"):
        Routing([1], np.array([[[0, -2]]]), np.full((1, 1, 2), 0.5), num_experts=4)
    with pytest.raises(ValueError, match="not 40000"):
        Routing([1], np.array([[[40000]]]), np.ones((1, 1, 1)))  # past int16: it wrapped around
    for call in (lambda: r.coactivation(3), lambda: r.coactivation(-4), lambda: r.top_tokens(layer=3),
                 lambda: r.top_tokens(layer=-4), lambda: r.figure("load", layer=3)):
        with pytest.raises(ValueError, match=r"this record has layers 0..2 \(-1 = the last\): there is no layer"):
            call()
    # -1 is the last layer, as in interventions and --ablate (it was refused here: a researcher's review)
    np.testing.assert_array_equal(r.coactivation(-1), r.coactivation(2))
    assert r.top_tokens(layer=-1).equals(r.top_tokens(layer=2))
    assert repr(r.expert_card(-1, 1)) == repr(r.expert_card(2, 1))
    with pytest.raises(ValueError, match="no label 'finall': this record has 'user', 'final'"):
        r.load("finall")  # a typo used to give an all-zero load
    assert r.load("analysis").counts.sum() == 0  # a Harmony channel this turn did not use is empty
    with pytest.raises(ValueError, match="at least 1, not -1"):
        r.top_tokens(-1)
    with pytest.raises(ValueError, match="at least 1, not 0"):
        r.hot_and_cold(top=0)


def test_layer_and_expert_indices_must_be_whole_numbers():
    """A bool or a float as a layer or an expert is refused in one line (it gave a numpy broadcasting
    or indexing error, or silently meant layer 1)."""
    r = _record()
    for call, message in ((lambda: r.top_tokens(layer=True), "layer must be a whole number, not True"),
                          (lambda: r.coactivation(1.0), "layer must be a whole number, not 1.0"),
                          (lambda: r.transitions(0.5), "layer must be a whole number, not 0.5"),
                          (lambda: r.expert_card(True, 1), "layer must be a whole number, not True"),
                          (lambda: r.expert_card(1, 2.0), "expert must be a whole number, not 2.0"),
                          (lambda: r.figure("load", layer=1.5), "layer must be a whole number, not 1.5"),
                          (lambda: r.hot_and_cold(top=True), "top must be a whole number, not True")):
        with pytest.raises(TypeError) as error:
            call()
        assert str(error.value) == message
    assert r.expert_card(np.int64(1), np.int64(0)).picks == 4  # numpy integers are whole numbers


def test_token_text_with_dollar_signs_plots_as_written():
    """"$$" is one token (LaTeX): matplotlib read it as mathematics and failed to draw the top
    tokens and the expert card (a multi-line ParseException). Token texts and labels are drawn as
    the text they are."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from gptoss_lab.routing.analysis import result_table
    from gptoss_lab.widgets.routing_figures import view_figure

    dollars = harmony.encode_text("$$")
    assert len(dollars) == 1
    r = Routing(dollars * 3, np.zeros((3, 2, 1), int), np.ones((3, 2, 1)), ["$a$"] * 3, num_experts=2)
    for figure, want in ((r.top_tokens().plot(), "$$"), (r.expert_card(0, 0).plot(), "$$"),
                         (r.expert_card(0, 0).plot(), "$a$"), (r.label_load().plot(), "$a$ (3 tokens)"),
                         (r.label_divergence(["$a$", "$b$", "$b$"]).plot(), "$a$ vs rest"),
                         (view_figure(r), "$a$ 3"), (r.figure(channel="$a$"), "($a$)"),
                         (r.figure("load", channel="$a$"), "($a$)"),
                         (result_table(pd.DataFrame({"label": ["$a$"], "change": [0.5]}), "token_effect").plot(),
                          "$a$\n(1 token)")):   # "(1 tokens)" before
        FigureCanvasAgg(figure).draw()
        texts = [t for ax in figure.axes for t in (*ax.get_xticklabels(), *ax.get_yticklabels(), ax.title)]
        texts += [*figure.axes[0].get_legend().get_texts()] if figure.axes[0].get_legend() else []
        texts += [figure._suptitle] if figure._suptitle else []
        shown = [t for t in texts if want in t.get_text()]
        assert shown and not any(t.get_parse_math() for t in shown), [t.get_text() for t in texts]


def test_labels_without_tokens_or_without_a_rest():
    r = _record()
    unlabelled = r.label_load([None] * 4)  # e.g. texts routed without labels
    assert unlabelled.empty and unlabelled.plot().axes
    # no labelled picks (no labels, or no tokens: an empty text's record): 0 bits said "the labels are routed alike"
    assert np.isnan(r.label_divergence([None] * 4)["jsd"]).all()
    assert np.isnan(r.select(slice(0, 0)).label_divergence()["jsd"]).all()
    single = r.label_divergence(["code"] * 4)  # one label: no "vs rest" (there is no rest)
    assert list(single.columns) == ["jsd"] and single["jsd"].tolist() == [0.0, 0.0, 0.0]
    assert r.select(slice(0, 0)).top_tokens().plot() is not None


def test_a_label_of_empty_text_is_no_label_whichever_way_it_comes_in():
    """A record's "" (not known yet: its repr says unlabelled) was a row with a blank name in label_load, channel_load
    and an expert card; a text's "" from route/Corpus was a label of its own, where None was left out."""
    r = Routing([1, 2], np.array([[[0]], [[1]]]), np.ones((2, 1, 1)), ["", "text"], num_experts=2)
    assert r.label_load().attrs["tokens"] == {"text": 1} and list(r.channel_load()) == ["text"]
    assert r.expert_card(0, 0).labels["label"].tolist() == ["text"]
    assert r.expert_card(0, 0).to_dict()["overall"] == 0.5  # the widget's "share of all tokens": not of labelled ones
    assert r.label_load(["", "x"]).attrs["tokens"] == {"x": 1} == r.label_load(pd.Categorical(["", "x"])).attrs["tokens"]
    corpus = Corpus(r, [0, 1, 2], ["", "a"])
    assert corpus.doc_labels == [None, "a"] and corpus.label_load().attrs["tokens"] == {"a": 1}
    assert list(corpus.label_load().index.get_level_values("label")) == ["a"]


@pytest.mark.parametrize("missing", [float("nan"), np.float32("nan"), pd.NA, None])
def test_a_missing_label_is_no_label(missing):
    """A table's empty cell as a text's label (NaN, NA) was a label "nan" or "<NA>" with tokens of its own."""
    texts = Corpus(_record(), [0, 2, 4], ["code", missing])
    assert texts.doc_labels == ["code", None]
    assert texts.label_load().attrs["tokens"] == {"code": 2}
    assert list(texts.label_divergence().columns) == ["jsd"]  # one label, no rest
    assert _record().label_load(["code", "code", missing, missing]).attrs["tokens"] == {"code": 2}


def test_labels_are_read_as_text_and_one_per_token():
    r = _record()
    assert r.label_load([1, "1", 2, 2]).attrs["tokens"] == {"1": 2, "2": 2}  # two labels named "1" before
    for wrong in ([["a", "b"]] * 4, dict.fromkeys(range(4), "a")):  # pandas' NotImplementedError, "must be list-like"
        with pytest.raises(TypeError, match="^labels is a list of one label per token, not a (list|dict)$"):
            r.label_load(wrong)


def test_expert_card():
    r = _record()
    card = r.expert_card(0, 0)  # tokens a, a, c chose expert 0 in layer 0
    assert card.picks == 3 and card.share == pytest.approx(3 / 8)
    assert card.tokens["count"].tolist() == [2, 1] and card.tokens["specialisation"].tolist() == [1.0, 1.0]
    assert card.labels.set_index("label")["chose"].to_dict() == {"user": 0.5, "final": 1.0}
    assert card.next.set_index("expert")["share"].to_dict() == {1: 1.0} and card.previous.empty
    assert "alpha" in card._repr_html_() and "<script" not in card._repr_html_()
    assert "vs all tokens</th>" in card._repr_html_() and "<td>1.33×</td>" in card._repr_html_()  # 100 % over 3 of 4
    with pytest.raises(ValueError, match="no expert 9 in layer 0"):
        r.expert_card(0, 9)


def test_empty_slots_are_never_counted(tmp_path):
    experts = np.array([[[0, -1], [1, 2]]])  # a top-1 intervention left layer 0 one slot
    r = Routing([5], experts, np.array([[[1.0, 0.0], [0.5, 0.5]]]), ["text"], num_experts=3)
    assert r.load().counts.tolist() == [[1, 0, 0], [0, 1, 1]]
    assert r.coactivation(0).tolist() == [[1, 0, 0], [0, 0, 0], [0, 0, 0]]
    r.save(tmp_path / "r")
    assert load(tmp_path / "r").experts.tolist() == experts.tolist()  # still empty after a round trip


def test_every_table_plots():
    r = _record()
    other = Routing(r.tokens, r.experts[:, :, ::-1], r.weights, r.labels, num_experts=4)
    tables = [r.top_tokens(3), r.token_concentration(1), r.label_load(), r.label_divergence(), r.transitions(),
              r.hot_and_cold(), r.agreement(other), r.route_changes(other)]
    for table in tables:
        figure = table.plot()
        assert figure.axes and figure.axes[0].get_title(), table.figure_kind
    assert r.expert_card(2, 1).plot().axes
    assert type(tables[0].head(2)) is Frame  # derived tables are frames with pandas' own plot


def test_layer_expert_and_token_axes_tick_whole_numbers():
    """A reader counts layers and experts: the saved picture of a four-layer record ticked layers 0 and 2 alone,
    the expert load -0.5, 0.0, 0.5 ..., and token concentration's layers 0.5, 1.5 ...; a blank token's bar in the
    top tokens was unlabelled."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from gptoss_lab.widgets.routing_figures import view_figure

    rng = np.random.default_rng(0)
    ids = harmony.encode_text("one two three four five six seven eight nine ten") + harmony.encode_text(" ")
    n = len(ids)
    chosen = np.argsort(rng.random((n, 4, 8)), axis=-1)[..., :2]
    r = Routing(ids, chosen, np.full((n, 4, 2), 0.5), ["final"] * n, num_experts=8)

    def ticks(axis) -> list[float]:
        low, high = sorted(axis.get_view_interval())
        return sorted(t for t in axis.get_majorticklocs() if low - 1e-9 <= t <= high + 1e-9)

    picture = view_figure(r)
    FigureCanvasAgg(picture).draw()
    grid, load = picture.axes[:2]
    assert ticks(grid.yaxis) == [0, 1, 2, 3]                                  # every layer of four
    assert all(t == int(t) for t in ticks(load.xaxis)) and len(ticks(load.xaxis)) >= 4
    assert all(t == int(t) for t in ticks(grid.xaxis))
    concentration = r.token_concentration(1).plot()
    FigureCanvasAgg(concentration).draw()
    assert ticks(concentration.axes[0].xaxis) == [0, 1, 2, 3]
    top = r.top_tokens(20, layer=0).plot()
    FigureCanvasAgg(top).draw()
    names = {t.get_text() for ax in top.axes for t in ax.get_yticklabels()}
    assert "␣" in names and "" not in names                                   # the blank token is named


# ---------------------------------------------------------------- files


def test_save_and_load_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    n, layers, k, experts = 300, 5, 4, 128
    chosen = np.argsort(rng.random((n, layers, experts)), axis=-1)[..., :k]
    weights = rng.dirichlet(np.ones(k), (n, layers))
    labels = list(rng.choice(["system", "user", "analysis", "final"], n))
    r = Routing(rng.integers(0, 200000, n), chosen, weights, labels, num_experts=experts)
    r.save(tmp_path / "run")
    back = load(tmp_path / "run")
    assert isinstance(back.experts, np.memmap) and back.experts.dtype == np.uint8  # compact and memory-mapped
    np.testing.assert_array_equal(back.experts, r.experts)
    np.testing.assert_array_equal(back.tokens, r.tokens)
    np.testing.assert_allclose(back.weights, r.weights, atol=1 / 65535)
    assert back.labels == labels and back.num_experts == experts and back.strings == r.strings
    assert back.load().counts.tolist() == r.load().counts.tolist()
    on_disk = sum(f.stat().st_size for f in (tmp_path / "run").iterdir())
    assert on_disk < n * layers * k * 3 + 4096  # 1 byte per id, 2 per weight, + small columns and meta
    back.append([7], chosen[:1], weights[:1], ["final"])  # a loaded record still grows
    assert len(back) == n + 1 and back.labels[-1] == "final"


def test_corpus_save_load_keeps_texts_and_labels(tmp_path):
    parts = [Routing([1, 2, 3], np.zeros((3, 2, 2), int), np.full((3, 2, 2), 0.5), ["text"] * 3, num_experts=300),
             Routing([4], np.full((1, 2, 2), 299), np.full((1, 2, 2), 0.5), ["final"], num_experts=300)]
    combined = Routing(num_experts=300)
    for part in parts:
        combined.append(part.tokens, part.experts, part.weights, part.labels)
    corpus = Corpus(combined, [0, 3, 4], ["prose", "math"])
    corpus.save(tmp_path / "c")
    back = Corpus.load(tmp_path / "c")
    assert len(back) == 2 and back.doc_labels == ["prose", "math"] and back.lengths.tolist() == [3, 1]
    assert back[1].tokens.tolist() == [4] and back[1].experts.dtype == np.uint16 and back[1].experts.max() == 299
    assert list(back.token_labels()) == ["prose"] * 3 + ["math"]
    labels = Corpus(combined, [0, 3, 4], ["\x1b[2J", " a\u202e"]).token_labels()  # its printout showed them raw
    assert repr(labels) == ("['\\x1b[2J', '\\x1b[2J', '\\x1b[2J', '␣a\\u202e']\n"
                            "Categories (2, str): ['\\x1b[2J', '␣a\\u202e']")
    assert labels.categories.tolist() == ["\x1b[2J", " a\u202e"]  # the labels as given: data
    alike = Corpus(combined, [0, 3, 4], [" a", "\u2423a"]).token_labels()  # shown alike: quoted, still two
    assert repr(alike) == "[' a', ' a', ' a', '␣a']\nCategories (2, str): [' a', '␣a']"
    assert back.label_load().attrs["tokens"] == {"math": 1, "prose": 3}
    odd = Corpus.load(corpus.save(tmp_path / "a\x1b[2J\u202eb "))  # its folder's name was shown raw
    assert repr(odd).endswith(f", stored in {tmp_path}/a\\x1b[2J\\u202eb␣)") and odd.meta["path"].endswith("b ")


def test_a_loaded_record_saves_over_its_own_folder(tmp_path):
    # in a child process: writing over the memory-mapped columns used to kill the process (SIGBUS)
    script = (f"import numpy as np; from gptoss_lab.routing import Routing, load\n"
              f"path = {str(tmp_path / 'r')!r}\n"
              f"Routing([1, 2], np.array([[[0, 1]], [[2, 3]]]), np.full((2, 1, 2), 0.5), ['user', 'ünï ✓'], "
              f"num_experts=4).save(path)\n"
              f"r = load(path); r.relabel(['a', 'b']); r.save(path)\n"
              f"back = load(path); assert back.labels == ['a', 'b'] and back.experts.tolist() == [[[0, 1]], [[2, 3]]]\n")
    root = Path(gptoss_lab.__file__).parents[1]  # the child imports this same checkout
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=root)
    assert result.returncode == 0, result.stderr[-500:]


def test_load_refuses_what_is_not_a_record(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a routing record"):
        load(tmp_path)
    (tmp_path / "x").write_text("data")
    with pytest.raises(FileExistsError, match="not a routing record"):
        _record().save(tmp_path)


def _meta(path: Path, **changes) -> None:
    import json

    meta = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps({**meta, **changes}))


def _npz(path: Path) -> None:
    """An .npz archive under a .npy name (np.load opens both)."""
    with open(path, "wb") as file:
        np.savez(file, np.arange(4))


def _below_zero(path: Path) -> np.ndarray:
    """The record's expert ids as int8, with id -2 in layer 1 (bin -1 of layer 1 is expert 3 of layer 0)."""
    experts = np.load(path).astype(np.int8)
    experts[:, 1] = -2
    return experts


@pytest.mark.parametrize("damage, why", [
    (lambda p: _meta(p, num_experts=2), "experts.npy has expert 3, past the 2 experts meta.json says"),
    (lambda p: _meta(p, layers=9), "experts.npy holds uint8 [4, 3, 2], not the unsigned integers [4, 9, 2] meta.json says"),
    (lambda p: _meta(p, num_experts="4"), "meta.json has num_experts = '4', not a whole number ≥ 0"),
    (lambda p: _meta(p, num_experts=10**12), "meta.json has num_experts = 1000000000000, past the 32768 a record holds"),
    (lambda p: _meta(p, label_names=None), "meta.json's label_names is not a list of at most 255 texts"),
    (lambda p: _meta(p, seconds="soon"), "meta.json has seconds = 'soon', not a number"),
    (lambda p: np.save(p / "labels.npy", np.full(4, 7, np.uint8)), "labels.npy has label 7 of 2 label_names"),
    (lambda p: np.save(p / "tokens.npy", np.arange(2, dtype=np.int32)),
     "tokens.npy holds int32 [2], not the integers [4]"),
    (lambda p: np.save(p / "tokens.npy", np.full(4, 2**30, np.int32)), "tokens.npy has token ids outside 0..201087"),
    (lambda p: np.save(p / "experts.npy", np.zeros((4, 3, 2), np.float32)), "experts.npy holds float32 [4, 3, 2]"),
    (lambda p: np.save(p / "experts.npy", _below_zero(p / "experts.npy")),  # was counted in the layer before
     "experts.npy holds int8 [4, 3, 2], not the unsigned integers [4, 3, 2]"),
    (lambda p: np.save(p / "labels.npy", np.full(4, -1, np.int8)), "labels.npy holds int8 [4], not the unsigned"),
    (lambda p: np.save(p / "tokens.npy", np.array([{}] * 4, object), allow_pickle=True),
     "tokens.npy: Array can't be memory-mapped"),  # never unpickled
    (lambda p: _npz(p / "tokens.npy"), "tokens.npy is not a .npy array"),
    (lambda p: np.save(p / "offsets.npy", np.array([0, 9])), "offsets.npy does not split 4 tokens into documents"),
    (lambda p: (p / "meta.json").write_text("{"), "meta.json: Expecting property name"),
])
def test_a_damaged_or_foreign_record_is_refused_in_one_line(tmp_path, damage, why):
    """A record whose meta.json and columns disagree (another model's, a damaged or a hand-made one) is
    refused on load with one line saying what is wrong: it loaded, then counted an expert id past the
    record's expert count in the next layer's load (wrong numbers, no error), or failed deep inside an
    analysis (IndexError, UFuncTypeError, OverflowError ...)."""
    _record().save(tmp_path / "r")
    damage(tmp_path / "r")
    with pytest.raises(ValueError) as error:
        load(tmp_path / "r").load()
    assert str(error.value).startswith(f"{tmp_path / 'r'} is not a valid routing record: {why}")
    assert "\n" not in str(error.value)


def test_save_never_writes_over_a_folder_that_is_not_a_record(tmp_path):
    """A folder with a meta.json of its own (a project's) is not a record: `save` refuses it in one line and
    leaves it as it was (its meta.json was replaced by the record's, and .npy columns were written beside it)."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "meta.json").write_text('{"name": "my project"}')
    with pytest.raises(FileExistsError, match="exists and is not a routing record: choose another path"):
        _record().save(project)
    assert (project / "meta.json").read_text() == '{"name": "my project"}'
    assert sorted(f.name for f in project.iterdir()) == ["meta.json"]
    _record().save(tmp_path / "r")
    assert len(load(_record().save(tmp_path / "r"))) == 4  # a record's own folder is written over


def test_comparing_with_a_routing_of_no_picks_is_refused_not_half_a_bit_apart():
    """`r.select(slice(0, 0)).compare(r)` reported 0.500 bits in every layer: a load of zeros compared as a
    distribution (a researcher's review)."""
    r = Routing([1, 2, 3], np.array([[[0, 1]], [[2, 3]], [[1, 2]]]), np.full((3, 1, 2), 0.5), num_experts=4)
    with pytest.raises(ValueError, match="^compare: the first routing has no expert picks"):
        r.select(slice(0, 0)).compare(r)
    with pytest.raises(ValueError, match="^compare: the second routing has no expert picks"):
        r.compare(r.select(slice(0, 0)))
    assert r.compare(r).jsd.max() == 0


def test_blank_tokens_have_labels_of_their_own_in_the_top_tokens_charts():
    """Notebook 07's expert card drew the space and the newline token as two bars both labelled ␣ (every blank token
    was ␣ up to three times), so a reader could not tell which bar was which; the table beside it said ' ' and '\\n'.
    "the" and " the" (most words come in both) were both labelled "the"."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    blanks = [" ", "\n", "\t", "   ", "    ", "the", " the"]   # and a word with and without its leading space
    ids = [harmony.encode_text(b)[0] for b in blanks]
    ids = [t for i, t in enumerate(ids) for _ in range(len(ids) - i)]       # counts 7 6 ... 1: one bar each
    r = Routing(ids, np.zeros((len(ids), 1, 1), int), np.ones((len(ids), 1, 1)), ["final"] * len(ids), num_experts=2)
    for figure in (r.expert_card(0, 0).plot(), r.top_tokens(layer=0).plot()):
        FigureCanvasAgg(figure).draw()
        names = [t.get_text() for t in figure.axes[0].get_yticklabels()]
        seen = {name.strip() for name in names}   # what a reader sees: a label's outer spaces are not drawn
        assert len(seen) == len(blanks) and all(seen), names


def test_token_concentration_counts_the_picks_a_layer_has_under_a_top_k_intervention():
    """In a top-1 layer of a top-2 record (top_k(1, layers=[0])) a token sent to expert 3, then to expert 5 read 1.0,
    "always the same experts": its two most frequent experts were counted where each occurrence had one pick."""
    experts = np.array([[[3, -1], [1, 2]], [[5, -1], [1, 2]], [[4, -1], [0, 1]], [[4, -1], [0, 1]]])
    r = Routing([7, 7, 9, 9], experts, np.where(experts >= 0, 0.5, 0.0), num_experts=8)
    table = r.token_concentration(min_count=2)
    assert table.loc[7, ["layer 0", "layer 1"]].tolist() == [0.5, 1.0]
    assert table.loc[9, ["layer 0", "layer 1"]].tolist() == [1.0, 1.0]
    uniform = next(line for line in table.plot().axes[0].lines if line.get_label() == "uniform (context only)")
    assert [float(y) for y in uniform.get_ydata()] == [1 / 8, 2 / 8]   # the bound of each layer's picks


def test_a_long_token_tick_label_is_cut_between_its_characters():
    """A tick label was cut at 14 characters after its escapes were written out: three and four ideographic spaces both
    read `\\u3000\\u3000\\u`, an escape cut in two; it is cut between characters, with "…"."""
    ids = [25234, 12754, 37280]   # "\u3000" × 3, × 4, "\xa0" × 4
    r = Routing(ids, np.zeros((3, 1, 1), int), np.ones((3, 1, 1)), ["final"] * 3, num_experts=1)
    names = sorted(t.get_text() for t in r.top_tokens(layer=0).plot().axes[0].get_yticklabels())
    assert names == ["\\u3000\\u3000…", "\\u3000\\u3000…", "\\xa0\\xa0\\xa0…"], names


def test_figures_write_a_labels_controls_out_as_the_tables_do():
    """Figures drew a label as it was: its ESC sequence and zero-width space unseen, "a\\u200b" read as "a" (the tables
    and cards beside them write them out, `a\\x1b[2J\\u200b`)."""
    label = "a\x1b[2J\u200b"
    r = Routing([11, 12, 13], np.zeros((3, 2, 1), int), np.ones((3, 2, 1)), [label, "a", "a"], num_experts=2)
    for figure in (r.label_load().plot(), r.label_divergence().plot(), r.expert_card(0, 0).plot(),
                   r.figure(channel=label)):
        texts = [t.get_text() for ax in figure.axes for t in (*ax.get_xticklabels(), ax.title)]
        texts += [t.get_text() for t in figure.axes[0].get_legend().get_texts()] if figure.axes[0].get_legend() else []
        assert not any("\x1b" in t or "\u200b" in t for t in texts), texts
        assert any("a\\x1b[2J\\u200b" in t for t in texts), texts
