"""Routing lab QA: what a researcher sees of records with long labels, channels and interventions."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from gptoss_lab.routing import Routing, load, parse_ablate
from gptoss_lab.routing.analysis import result_table
from gptoss_lab.widgets.routing_figures import view_figure

LONG = "a label of many words, as a corpus's category may be written out in full"   # 72 characters
WIDE = "W" * 100   # the most a label holds, in the widest letter, no space to break at


def _long_record() -> Routing:
    """6 tokens of labels LONG and WIDE, 4 layers, top-2 of 8 experts, routed under a long intervention."""
    experts = np.array([[[t % 8, (t + 1) % 8]] * 4 for t in range(6)])
    r = Routing(list(range(100, 106)), experts, np.full((6, 4, 2), 0.5), [LONG, WIDE] * 3, num_experts=8)
    r.intervention = parse_ablate("0:0-3,1:0-3,2:0-3,3:0-3,*:5").describe()
    return r


def _cut(figure: Any) -> list[str]:
    """The titles, axis labels and legend entries of `figure` drawn past its edges (cut off in the picture)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure).draw()   # laid out as a picture of it is
    texts = [*figure.texts, *(text for ax in figure.axes for text in (ax.title, ax.xaxis.label, ax.yaxis.label,
                                                                      *getattr(ax.get_legend(), "texts", [])))]
    texts = [text for text in texts if text.get_visible() and text.get_text()]
    return [text.get_text() for text in texts if not figure.bbox.padded(1).contains(*text.get_window_extent().p0)
            or not figure.bbox.padded(1).contains(*text.get_window_extent().p1)]


@pytest.mark.filterwarnings("error:constrained_layout not applied")   # the plots collapsed under the texts
@pytest.mark.parametrize("kind", ["view", "grid", "load", "label_load", "label_divergence", "top_tokens", "hot_and_cold",
                                  "route_changes", "expert_card", "token_concentration", "token_effect"])
def test_figures_of_long_labels_and_interventions_keep_their_titles_in_the_picture(kind):
    """A title wider than its figure was drawn past both edges: the still picture of a turn run with
    `--ablate 0:0-3,1:0-3,2:0-3,3:0-3,*:5` began "final 6; routed under ..." (its token count, layers and experts cut
    off), a label's panel title ran over its neighbours', and a label's tick took the plots' room."""
    r = _long_record()
    drawn = {"view": lambda: view_figure(r), "grid": lambda: r.figure("grid", channel=WIDE),
             "load": lambda: r.figure("load", channel=LONG), "expert_card": lambda: r.expert_card(0, 1).plot(),
             "route_changes": lambda: r.route_changes(r).plot(),
             "token_effect": lambda: result_table(pd.DataFrame({"label": [LONG, WIDE], "change": [0.5, -0.5]}),
                                                  "token_effect").plot()}
    figure = drawn.get(kind, lambda: getattr(r, kind)().plot())()
    assert _cut(figure) == []
    if kind in ("token_concentration", "label_divergence", "hot_and_cold"):   # lines the panel's width: a legend in
        renderer = figure.canvas.get_renderer()     # the panel lay over one (token_concentration's "uniform" line)
        legend = figure.axes[0].get_legend().get_window_extent(renderer)
        assert not [ax.get_title() for ax in figure.axes if ax.get_visible() and legend.overlaps(ax.get_window_extent(renderer))]
    if kind == "view":   # the whole summary is there, in lines
        assert "".join(figure.texts[0].get_text().split()) == "".join(repr(r).split())


def test_the_saved_output_of_an_ablated_turn_says_so(random_checkpoint, monkeypatch):
    """The routing view's output of a turn run with `--ablate` in JupyterLab (a front end draws the views) was put
    in place when the turn's labels came, before the record knew its intervention: the saved notebook's picture and
    summary said "Routing(…)" as for the model's own routing (nbclient's, updated later, said it). A record's views
    are told when its intervention is set."""
    from gptoss_lab import Session
    from gptoss_lab.engines.local import LocalEngine
    from gptoss_lab.events import TurnStart
    from gptoss_lab.widgets.view import NotebookView

    monkeypatch.setattr(NotebookView, "drawn_here", True)   # as after a front end drew a view
    outputs: list[dict] = []

    class Output:
        def update(self, bundle: dict, raw: bool = False) -> None:
            outputs.append(bundle)

    class Lab:
        """What the chat view does with the routing of a turn as it starts: shows its view in an output (a fake)."""
        stop_requested = False

        def handle(self, event: Any) -> None:
            if isinstance(event, TurnStart) and event.routing is not None:
                event.routing.view()._handle = Output()

        def approve(self, call: Any) -> None:
            return None

    session = Session(LocalEngine.from_pretrained(str(random_checkpoint), dtype="float32"), tools="none")
    reply = session.ask("hi", routing=True, intervene="-1:3", max_new_tokens=3, view=Lab())
    said = "routed under an intervention: disable expert 3 in the last layer"
    assert reply.routing.intervention == "disable expert 3 in the last layer"
    assert said in outputs[-1]["text/plain"] and outputs[-1]["image/png"][:4] == b"\x89PNG"
    assert reply.routing.view().intervention == "disable expert 3 in the last layer"   # what the live view says


def test_an_intervention_written_by_hand_is_text_that_saves_and_loads_back(tmp_path):
    """`r.intervention = 5` was kept, saved, and refused on load ("meta.json's intervention is not a text"); a lone
    surrogate (text from an undecodable file name) the same: refused when set, kept as text that loads."""
    r = Routing([1, 2], np.zeros((2, 1, 1), int), np.ones((2, 1, 1)), ["text"] * 2, num_experts=1)
    with pytest.raises(TypeError, match=r"^intervention is how the routers were changed, in words, not 5 \(int\)$"):
        r.intervention = 5
    r.intervention = "disable expert 0 in \udc80 layer 1"
    r.save(tmp_path / "r")
    assert load(tmp_path / "r").intervention == r.intervention == "disable expert 0 in \\udc80 layer 1"


def test_compare_says_in_one_line_why_it_cannot_measure(random_checkpoint):
    """`compare(session, prompt, intervene=...)` ran its turn "with" under two interventions, which failed, and then
    raised AttributeError "'NoneType' object has no attribute 'tokens'"; any turn of compare's that failed did too.
    Now the option is refused, and a failed turn is said with why it failed; the conversation is left as it was.
    The routing of the turn's tokens with the intervention (`effect.routing[1]`) said nothing of it, saved or shown."""
    from gptoss_lab import Session
    from gptoss_lab.engines.local import LocalEngine
    from gptoss_lab.routing import disable
    from gptoss_lab.session import TurnError

    session = Session(LocalEngine.from_pretrained(str(random_checkpoint), dtype="float32"), tools="none")
    ablate = disable({-1: [3]})
    with pytest.raises(ValueError, match=r"^compare: intervene= would route both turns under another intervention; "
                                         r"compare measures one against none: combine them, \(a \| b\)\.compare"):
        ablate.compare(session, "hi", intervene="0:1", max_new_tokens=3)
    stream, calls = session.engine.stream, []

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        if len(calls) == 2:   # the turn with the intervention
            raise RuntimeError("the accelerator fell over")
        return stream(*args, **kwargs)

    effect = ablate.compare(session, "hi", max_new_tokens=3)   # both routings of the turn's tokens, each as it was
    assert [r.intervention for r in effect.routing] == ["", "disable expert 3 in the last layer"]
    session.engine.stream = failing
    with pytest.raises(TurnError, match=r"^compare: the turn with the intervention failed: RuntimeError: the "
                                        r"accelerator fell over$"):
        ablate.compare(session, "hi", max_new_tokens=3)
    assert session.replies == [] and len(calls) == 2


def test_selecting_no_token_positions_is_the_empty_record():
    """`r.select([i for i in ... if ...])` that found no token raised numpy's "arrays used as indices must be of
    integer (or boolean) type" (an empty list is an array of floats); it is the record of no tokens, in its shape."""
    r = _long_record()
    for none in ([], (), range(0), [i for i in range(len(r)) if r.labels[i] == "final"]):
        part = r.select(none)
        assert (len(part), part.layers, part.top_k, part.num_experts) == (0, 4, 2, 8)
        assert part.load().counts.sum() == 0 and part.intervention == r.intervention


def test_a_corpus_routed_under_an_intervention_says_so_in_each_of_its_records(random_checkpoint, tmp_path):
    """A corpus routed in memory under an intervention said so (its repr), but its records did not: `corpus[0]`,
    `corpus.combined`, their views and `combined.save(...)` read as the model's own routing, while the same corpus
    routed with path= said it in each."""
    from gptoss_lab.engines.local import LocalEngine
    from gptoss_lab.routing import disable, route

    engine = LocalEngine.from_pretrained(str(random_checkpoint), dtype="float32")
    with disable({-1: [3]}).apply(engine):
        corpora = [route(["hello there", "two"], engine, progress=False, path=path) for path in (None, tmp_path / "c")]
    said = "disable expert 3 in layer 3"   # the plan the model routed under, its last layer by number
    for corpus in corpora:
        assert corpus[0].intervention == corpus.combined.intervention == said
        assert repr(corpus[1]).endswith(f"; routed under an intervention: {said})")
    corpora[0].combined.save(tmp_path / "combined")
    assert load(tmp_path / "combined").intervention == said
