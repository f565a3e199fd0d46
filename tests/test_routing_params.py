"""Mistyped arguments of the routing analyses answer in one line: a min_count given as text, one token's position
given to `select`, and a transitions figure of a layer its table lacks."""
from __future__ import annotations

import numpy as np
import pytest

from gptoss_lab.routing import Routing


def _record() -> Routing:
    rng = np.random.default_rng(0)
    return Routing(rng.integers(0, 100, 50), rng.integers(0, 8, (50, 4, 2)), np.full((50, 4, 2), 0.5),
                   ["user"] * 20 + ["final"] * 30, num_experts=8)


def test_a_min_count_given_as_text_is_refused_in_one_line():
    """It was numpy's "ufunc 'greater_equal' did not contain a loop with signature matching types"."""
    r = _record()
    with pytest.raises(TypeError, match=r"^min_count must be a whole number, not '5'$"):
        r.token_concentration("5")
    with pytest.raises(TypeError, match=r"^min_count must be a whole number, not '2'$"):
        r.top_tokens(min_count="2")
    assert len(r.top_tokens(min_count=2)) and len(r.token_concentration(1))


def test_selecting_one_position_says_how():
    """`r.select(3)` was "TypeError: object of type 'numpy.int32' has no len()"."""
    r = _record()
    with pytest.raises(TypeError, match=r"^select takes a slice, a boolean mask or token positions, not 3: "
                                        r"select\(\[3\]\) is the record of that one token$"):
        r.select(3)
    assert r.select([3]).tokens.tolist() == [r.tokens[3]]


@pytest.mark.parametrize("which,wrong", [([999], 999), ([0, -51], -51), (np.array([49, 50]), 50)])
def test_selecting_a_position_the_record_lacks_says_which_it_has(which, wrong):
    """It was numpy's "index 999 is out of bounds for axis 0 with size 50"."""
    with pytest.raises(IndexError, match=rf"^this record has tokens 0\.\.49 \(-1 = the last\): there is no token {wrong}$"):
        _record().select(which)
    assert len(_record().select([0, -50, 49])) == 3


def test_a_transitions_figure_of_a_layer_the_table_lacks_is_refused_in_one_line():
    """`plot(layer=99)` was a KeyError: 99; one layer's table drawn for another layer was titled with that layer."""
    r = _record()
    with pytest.raises(ValueError, match=r"^this table has the transitions from layers 0..2, not from layer 99$"):
        r.transitions().plot(layer=99)
    with pytest.raises(ValueError, match=r"^this table has the transitions from layer 0, not from layer 2$"):
        r.transitions(0).plot(layer=2)
    assert r.transitions().plot(layer=2).axes[0].get_title() == "transitions from layer 2 to 3"
    assert r.transitions(1).plot().axes[0].get_title() == "transitions from layer 1 to 2"


def test_a_top_tokens_figure_of_a_layer_or_expert_the_table_lacks_is_refused_and_one_expert_keeps_its_title():
    """`top_tokens(layer=1).plot(layer=0)`, `plot(layer=99)` and `plot(experts=[99])` drew blank panels titled as if
    counted; one expert's chart (`plot(experts=[3])`) was 3 inches wide and cut its title to "kens each expert is
    chosen for most, layer"; an expert chosen for no token drew an empty chart with ticks at -0.04 .. 0.04."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    r = _record()
    with pytest.raises(ValueError, match=r"^this table has the top tokens of layer 1, not of layer 0$"):
        r.top_tokens(layer=1).plot(layer=0)
    with pytest.raises(ValueError, match=r"^this table has the top tokens of layers 0..3, not of layer 99$"):
        r.top_tokens().plot(layer=99)
    with pytest.raises(ValueError, match=r"^this record has experts 0..7: there is no expert 99$"):
        r.top_tokens().plot(experts=[99])
    one = r.top_tokens().plot(layer=2, experts=[3])
    FigureCanvasAgg(one).draw()
    title = one._suptitle
    assert title.get_text() == "tokens each expert is chosen for most, layer 2"
    shown, page = title.get_window_extent(), one.bbox
    assert page.x0 <= shown.x0 and shown.x1 <= page.x1      # all of it on the picture
    unused = Routing([5, 6, 7], np.zeros((3, 1, 2), int) + [0, 1], np.full((3, 1, 2), 0.5), num_experts=8)
    panels = unused.top_tokens().plot(experts=[1, 7]).axes
    assert [ax.get_title() for ax in panels] == ["expert 1", "expert 7"]
    assert [t.get_text() for t in panels[1].texts] == ["no tokens"] and not panels[1].patches
    assert len(panels[0].patches) == 3                      # tokens 5, 6 and 7 each chose expert 1 once


def test_a_figure_option_the_figure_does_not_have_is_refused_not_ignored():
    """`label_load().plot(labels=["final"])`, `hot_and_cold().plot(layer=3)` or a misspelt `top_tokens().plot(layr=2)`
    drew the figure as if the option had not been given, with no word."""
    r = _record()
    for call, kind, name in ((lambda: r.label_load().plot(labels=["final"]), "label_load", "labels"),
                             (lambda: r.hot_and_cold().plot(layer=3), "hot_and_cold", "layer"),
                             (lambda: r.top_tokens().plot(layr=2), "top_tokens", "layr")):
        with pytest.raises(TypeError, match=rf"^the {kind} figure has no option '{name}'$"):
            call()
    assert r.hot_and_cold().plot(top=3).axes and r.transitions().plot(layer=1).axes   # the options they have


def test_every_layer_argument_counts_a_negative_layer_from_the_last():
    """`transitions(layer=-1)` said "layer must be between 0 and 2 ..., not -1" and `top_tokens().plot(layer=-1)`
    "this table has the top tokens of layers 0..3, not of layer -1", where the other analyses and --ablate -1:3 read
    -1 as the last layer: every `layer=` reads it so (transitions go from layers 0..2: -2 is the last of them)."""
    r = _record()
    assert r.transitions(-2).equals(r.transitions(2))
    assert r.transitions(-2).plot().axes[0].get_title() == "transitions from layer 2 to 3"
    assert r.transitions().plot(layer=-2).axes[0].get_title() == "transitions from layer 2 to 3"
    with pytest.raises(ValueError, match=r"^layer -1 is the last, which no layer follows: transitions go from layers "
                                         r"0\.\.2 \(-2 = the last of them\)$"):
        r.transitions(-1)
    assert r.top_tokens().plot(layer=-1).texts[-1].get_text().endswith("layer 3")
    assert r.top_tokens(layer=-1).plot(layer=-1).texts[-1].get_text().endswith("layer 3")
    assert np.array_equal(r.coactivation(-4), r.coactivation(0)) and r.expert_card(-1, 0).layer == 3
    for call in (lambda: r.transitions(-5), lambda: r.top_tokens(layer=-5), lambda: r.coactivation(-5)):
        with pytest.raises(ValueError, match=r"^this record has layers 0\.\.3 \(-1 = the last\): there is no layer -5$"):
            call()


def test_an_empty_record_says_it_has_no_layers_tokens_or_experts():
    """An empty record's refusals named ranges it cannot have: "layers 0..-1 ... experts 0..-1", "tokens 0..-1"."""
    empty = Routing()
    for call, message in [(lambda: empty.expert_card(0, 0), "no expert 0 in layer 0: this record has no layers and "
                                                              "no experts"),
                          (lambda: empty.select([0]), "this record has no tokens: there is no token 0"),
                          (lambda: empty.coactivation(layer=-1), "this record has no layers: there is no layer -1"),
                          (lambda: empty.top_tokens(layer=0), "this record has no layers: there is no layer 0"),
                          (lambda: empty.figure("load", layer=0), "this record has no layers: there is no layer 0"),
                          (lambda: empty.coactivation(experts=[0]), "this record has no experts: there is no expert 0")]:
        with pytest.raises((ValueError, IndexError)) as raised:
            call()
        assert str(raised.value) == message


def test_hot_and_cold_refuses_more_busiest_experts_than_the_record_has():
    """`hot_and_cold(top=100)` on 8 experts gave a column "top100_share" of 1.0, as if 100 experts had been summed."""
    r = _record()
    with pytest.raises(ValueError, match=r"^top \(the busiest experts summed\) must be at most the record's 8 experts, "
                                         r"not 100$"):
        r.hot_and_cold(top=100)
    assert r.hot_and_cold(top=8)["top8_share"].round(9).eq(1.0).all()


@pytest.mark.parametrize("call,message", [
    (lambda r: r.token_concentration(min_count=-1), "min_count (the times a token is seen) must be at least 1, not -1"),
    (lambda r: r.token_concentration(0), "min_count (the times a token is seen) must be at least 1, not 0"),
    (lambda r: r.top_tokens(min_count=-3), "min_count (the times a token is seen) must be at least 1, not -3"),
    (lambda r: r.top_tokens(n=-1), "n (tokens per expert) must be at least 1, not -1"),
    (lambda r: r.hot_and_cold(top=-2), "top (the busiest experts summed) must be at least 1, not -2"),
    (lambda r: r.expert_card(0, 0, n=0), "n (top tokens and neighbours shown) must be at least 1, not 0"),
    (lambda r: r.compare(r, top=-1), "top (the entries that differ most) must be at least 0, not -1"),
])
def test_a_count_below_what_it_may_be_is_refused_in_one_line_naming_the_argument(call, message):
    """`token_concentration(min_count=-1)` and `top_tokens(min_count=-3)` gave tables as if every token had been seen
    often enough: each count of the analyses is read by one rule (a whole number, at least what it may be)."""
    with pytest.raises(ValueError) as raised:
        call(_record())
    assert str(raised.value) == message



def test_a_transitions_figure_reads_layer_as_every_layer_argument_does():
    """`transitions().plot(layer=-1)` said "this table has the transitions from layers 0..2, not from layer -1" where
    -1 is the last layer, which no layer follows (the analysis's own words), and `plot(layer=None)` was "layer must be
    a whole number, not None" where None is every layer: it draws one panel per layer of the table."""
    r = _record()
    last = r"^layer -1 is the last, which no layer follows: transitions go from layers 0\.\.2 \(-2 = the last of them\)$"
    for table in (r.transitions(), r.transitions(1)):
        with pytest.raises(ValueError, match=last):
            table.plot(layer=-1)
    titles = lambda figure: [ax.get_title() for ax in figure.axes if ax.get_title()]  # noqa: E731
    every = [f"transitions from layer {layer} to {layer + 1}" for layer in range(3)]
    assert titles(r.transitions().plot(layer=None)) == titles(r.transitions().plot()) == every
    assert titles(r.transitions(1).plot(layer=None)) == ["transitions from layer 1 to 2"]


def test_figures_of_no_experts_or_of_one_expert_id_answer_in_one_line():
    """`transitions(experts=[]).plot()` was pandas' "KeyError: 0" (one layer's was a panel saying "no experts") and
    `top_tokens().plot(experts=3)` Python's "'int' object is not iterable"."""
    r = _record()
    figure = r.transitions(experts=[]).plot()
    assert [text.get_text() for ax in figure.axes for text in ax.texts] == ["no experts"] * 3
    with pytest.raises(TypeError, match=r"^experts must be a list of expert ids, not 3$"):
        r.top_tokens().plot(experts=3)
    assert [ax.get_title() for ax in r.top_tokens().plot(experts=np.array([3])).axes] == ["expert 3"]


def test_an_every_layer_transitions_figure_has_one_scale_for_its_layers():
    """Each panel had a colour bar of its own, its colours on its own scale (the same colour, other counts in another
    layer), and drawing 35 of them took 10 s: the panels share one scale from 0, under one colour bar."""
    r = _record()
    figure = r.transitions().plot()
    images = [ax.images[0] for ax in figure.axes if ax.get_title()]
    top = max(r.transitions(layer).to_numpy().max() for layer in range(3))
    assert len(images) == 3 and {image.get_clim() for image in images} == {(0.0, top)}
    assert len([ax for ax in figure.axes if not ax.get_title()]) == 1   # the colour bar


def test_a_top_tokens_figure_of_every_layer_or_of_no_layer_says_what_it_draws():
    """`top_tokens().plot(layer=None)` drew layer 0 alone, where None is every layer elsewhere in the lab, and the
    figure of a record without layers was "layer must be a whole number, not None"."""
    r = _record()
    with pytest.raises(ValueError, match=r"^the top tokens figure draws one layer, not every layer \(layer=None\): "
                                         r"this table has layers 0\.\.3$"):
        r.top_tokens().plot(layer=None)
    with pytest.raises(ValueError, match=r"^this table has the top tokens of no layers \(its record has none\): "
                                         r"there is nothing to draw$"):
        Routing().top_tokens().plot()
    assert r.top_tokens().plot().texts[-1].get_text().endswith("layer 0")   # by default the first layer
    assert r.top_tokens(layer=2).plot(layer=None).texts[-1].get_text().endswith("layer 2")   # every layer it has
