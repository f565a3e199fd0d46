"""The routing lab at scale and given the wrong things: a record's display stays short and its still image counts
a bounded number of tokens, analyses given a Corpus (or a list) say what they take in one line, and intervention
parameters of the wrong type or range are refused in one line naming the parameter."""
from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from gptoss_lab.routing import Effect, Routing, analysis, disable, force, top_k
from gptoss_lab.routing.corpus import Corpus
from gptoss_lab.widgets.routing_figures import view_figure


def _record(n: int, layers: int = 2, k: int = 2, experts: int = 8, labels: int = 2) -> Routing:
    rng = np.random.default_rng(0)
    return Routing.from_arrays(rng.integers(0, 50_000, n).astype(np.int32),
                               rng.integers(0, experts, (n, layers, k)).astype(np.int16),
                               np.full((n, layers, k), 1 / k, np.float32), (np.arange(n) % labels).astype(np.uint8),
                               [f"label {i}" for i in range(labels)], num_experts=experts)


def _corpus() -> Corpus:
    return Corpus(_record(6), [0, 3, 6])


# ---------------------------------------------------------------- displays of large records


def test_the_summary_of_a_record_of_many_labels_is_one_short_line():
    """255 labels (one per document of a corpus) made a 2,500-character repr, also the still image's title."""
    text = repr(_record(10_000, labels=255))
    assert len(text) < 250, text
    assert text.startswith("Routing(10,000 tokens × 2 layers × top-2 of 8 experts; label 0 40, label 1 40")
    assert text.endswith("and 247 more labels)")


def test_the_still_image_of_a_long_record_counts_a_sample_and_says_so():
    """Each display of a record counted every token for the load panel: 2.3 s a display at a million tokens."""
    routing = _record(40_000, layers=64, k=4, experts=32)  # 10 million picks
    figure = view_figure(routing)
    titles = [ax.get_title() for ax in figure.axes]
    assert "expert load (one token in 3)" in titles, titles
    assert routing.load().counts.sum() == 40_000 * 64 * 4  # the record's own analysis still counts them all
    assert "one token in" not in view_figure(_record(100)).axes[1].get_title()  # a short record: every token


# ---------------------------------------------------------------- analyses given a Corpus or a list


@pytest.mark.parametrize("layers", [6, 10])  # 5 panels: one in the last row; 9: one in the last row of three
def test_the_transitions_of_every_layer_label_only_the_outer_panels(layers):
    """Every panel of `transitions().plot()` had its own tick and axis labels, which the layout measured one by one:
    5.7 s for gpt-oss-120b's 35 panels. The panels share axes, labelled at the bottom of each column and on the left."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figure = _record(40, layers=layers, k=4, experts=16).transitions().plot()
    FigureCanvasAgg(figure).draw()
    panels = [ax for ax in figure.axes if ax.get_visible() and ax.images]
    shown = lambda labels: [t.get_text() for t in labels if t.get_visible() and t.get_text()]  # noqa: E731
    below = [i for i in range(len(panels)) if i + 4 >= len(panels)]   # no panel under it: the bottom of its column
    assert [i for i, ax in enumerate(panels) if shown(ax.get_xticklabels())] == below
    assert [i for i, ax in enumerate(panels) if ax.get_xlabel()] == below
    assert [i for i, ax in enumerate(panels) if shown(ax.get_yticklabels())] == list(range(0, len(panels), 4))
    assert set(shown(panels[-1].get_xticklabels())) <= {str(e) for e in range(16)}  # the expert ids


@pytest.mark.parametrize("call, name", [
    (lambda r, c: r.compare(c), "compare takes two Routing records"),
    (lambda r, c: analysis.compare(c, c), "compare takes two Routing records"),
    (lambda r, c: r.agreement(c), "agreement takes two Routing records"),  # said the tokens differ
    (lambda r, c: r.route_changes(c), "route_changes takes two Routing records"),
    (lambda r, c: analysis.load(c), "load takes a Routing record"),
    (lambda r, c: analysis.label_load(routing=c), "label_load takes a Routing record"),
    (lambda r, c: analysis.expert_card(c, 0, 0), "expert_card takes a Routing record"),
])
def test_an_analysis_given_a_corpus_says_how_to_get_a_record_in_one_line(call, name):
    with pytest.raises(TypeError) as error:
        call(_record(6), _corpus())
    message = str(error.value)
    assert message.startswith(name) and "not a Corpus: pass corpus.combined" in message and "\n" not in message


@pytest.mark.parametrize("other, shown", [([1, 2], "not [1, 2] (list)"), (None, "not None"), ("x", "not 'x' (str)")])
def test_compare_with_no_record_names_what_it_was_given(other, shown):
    with pytest.raises(TypeError, match="^compare takes two Routing records, " + re.escape(shown)):
        _record(6).compare(other)
    with pytest.raises(TypeError, match="not a list: give the records one at a time"):
        _record(6).compare([_record(6)])


def test_an_intervention_compared_on_a_corpus_asks_for_a_session():
    with pytest.raises(TypeError, match=r"^compare needs a Session \(it asks the question twice\), not a Corpus$"):
        disable({0: [1]}).compare(_corpus(), "What is 2 + 2?")


# ---------------------------------------------------------------- intervention parameters


@pytest.mark.parametrize("make, error, message", [
    (lambda: disable(5), TypeError, r"experts are given as \{layer: \[experts\]\}.*not 5 \(int\)$"),
    (lambda: disable([1, 2]), TypeError, r"\(layer, expert\) pairs, not 1 \(int\)"),  # "cannot unpack"
    (lambda: force([(1,)]), TypeError, r"\(layer, expert\) pairs, not \(1,\) \(tuple\)"),
    (lambda: disable({0: [-1]}), ValueError, "expert ids go from 0 to 32767 at most, not -1"),  # was accepted
    (lambda: force({0: [10**9]}), ValueError, "expert ids go from 0 to 32767 at most, not 1000000000"),
    (lambda: disable({0: [1]}, replace="no"), TypeError, "replace must be True or False, not 'no'"),  # was True
    (lambda: disable({0: [1]}, replace=None), TypeError, "replace must be True or False, not None"),  # was False
    (lambda: top_k(2, layers=5), TypeError, r"layers is a list of layers \(e.g. \[0, 5\]\), not 5 \(int\)"),
    (lambda: top_k(2, layers="12"), TypeError, "not '12' \\(str\\)"),  # was layer '1'
    (lambda: disable({0: [1]}).plan(2.5), TypeError, "layers must be a whole number, not 2.5"),  # made layer 0.0
])
def test_intervention_parameters_of_the_wrong_type_or_range_are_refused_in_one_line(make, error, message):
    with pytest.raises(error, match=message) as raised:
        make()
    assert "\n" not in str(raised.value)


def test_an_intervention_combined_with_no_intervention_is_a_plain_type_error():
    with pytest.raises(TypeError, match=r"unsupported operand type\(s\) for \|: 'Intervention' and 'int'"):
        disable({0: [1]}) | 3  # was "'int' object has no attribute 'edits'"


def _effect(answer: str) -> Effect:
    a = _record(5)
    reply = SimpleNamespace(final=answer, routing=a)
    return Effect(disable({0: [1]}), "q", reply, reply, pd.DataFrame({"P without": [0.5]}, index=["answer without"]),
                  analysis.route_changes(a, a), analysis.agreement(a, a), (a, a))


def test_an_effect_shows_a_long_answer_shortened():
    effect = _effect("word " * 20_000)  # 100,000 characters: shown twice in full, as text and as HTML
    assert len(repr(effect)) < 6_000 and "(100,000 characters in all)" in repr(effect)
    assert len(effect._repr_html_()) < 8_000
    assert "characters in all" not in repr(_effect("42"))


def test_changed_tokens_refuses_a_negative_count():
    with pytest.raises(ValueError, match=r"^n \(the tokens shown\) must be at least 0, not -1$"):
        _effect("42").changed_tokens(-1)  # dropped the last row, as head(-1) does


# ---------------------------------------------------------------- records and corpora of the wrong kind


def test_a_corpus_made_of_a_list_of_records_says_what_it_takes():
    with pytest.raises(TypeError, match=r"^a Corpus is all its texts' tokens as one Routing .*not a list"):
        Corpus([_record(3), _record(3)], [0, 3, 6])  # was "offsets must rise from 0 to 2"
    with pytest.raises(TypeError, match="doc_labels is a list of one label per text, not one text"):
        Corpus(_record(4), [0, 2, 4], doc_labels="ab")  # was a label per character


@pytest.mark.parametrize("which, error, message", [
    (1.5, TypeError, "select takes a slice, a boolean mask or token positions, not 1.5 (float)"),  # numpy's IndexError
    ("ab", TypeError, "not 'ab' (str)"),
    ([True], ValueError, "a mask of 1 value for a record of 4 tokens"),  # "boolean index did not match"
])
def test_select_of_no_tokens_says_what_it_takes(which, error, message):
    with pytest.raises(error, match=re.escape(message)):
        _record(4).select(which)


@pytest.mark.parametrize("options, message", [({"top1": "no"}, "top1 must be True or False, not 'no'"),
                                              ({"normalize": None}, "normalize must be True or False, not None")])
def test_transitions_refuse_a_flag_that_is_no_bool(options, message):
    with pytest.raises(TypeError, match=re.escape(message)):  # "no" counted top-1 only, as True does
        _record(4).transitions(**options)


def test_label_load_given_one_text_as_labels_says_so():
    with pytest.raises(TypeError, match="labels is a list of one label per token, not one text"):
        _record(4).label_load("abcd")  # was "Categorical input must be list-like"
