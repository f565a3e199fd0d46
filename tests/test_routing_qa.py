"""Routing lab QA: what a researcher sees of records with long labels, channels and interventions."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from gptoss_lab.routing import Routing, parse_ablate
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
@pytest.mark.parametrize("kind", ["view", "grid", "load", "label_load", "label_divergence", "top_tokens",
                                  "hot_and_cold", "route_changes", "expert_card", "token_concentration", "token_effect"])
def test_figures_of_long_labels_and_interventions_keep_their_titles_in_the_picture(kind):
    """A title wider than its figure was drawn past both edges: the still picture of a turn run with
    `--ablate 0:0-3,1:0-3,2:0-3,3:0-3,*:5` began "final 6; routed under ..." (its token count, layers and experts cut
    off), a label's panel title ran over its neighbours', and a label's tick took the plots' room."""
    r = _long_record()
    figure = {"view": lambda: view_figure(r), "grid": lambda: r.figure("grid", channel=WIDE),
              "load": lambda: r.figure("load", channel=LONG), "expert_card": lambda: r.expert_card(0, 1).plot(),
              "token_effect": lambda: result_table(pd.DataFrame({"label": [LONG, WIDE], "change": [0.5, -0.5]}),
                                                   "token_effect").plot()}.get(kind, lambda: getattr(r, kind)(*(r,) * (kind == "route_changes")).plot())()
    assert _cut(figure) == []
    if kind == "view":   # the whole summary is there, in lines
        assert "".join(figure.texts[0].get_text().split()) == "".join(repr(r).split())
