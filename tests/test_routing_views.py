"""Routing views, hostile and repeated: a part of a record (`corpus[0]`, a mask) shown again keeps one view in the
kernel, and a front end's messages and trait changes are checked before use (never raised in the comm handler)."""
from __future__ import annotations

import numpy as np
import pytest
import traitlets
from ipywidgets.widgets.widget import _instances
from test_kernel import kernel  # noqa: F401  (the kernel fixture; tests/ is on sys.path)
from test_routing_widget import _counting

from gptoss_lab.routing import Corpus, Routing
from gptoss_lab.widgets.routing import RoutingView

_WIDGET = "application/vnd.jupyter.widget-view+json"


def _record() -> Routing:
    rng = np.random.default_rng(0)
    return Routing(rng.integers(0, 100, 30), rng.integers(0, 8, (30, 4, 2)), np.full((30, 4, 2), 0.5),
                   ["user"] * 10 + ["final"] * 20, num_experts=8)


def _views() -> list[RoutingView]:
    return [w for w in list(_instances.values()) if isinstance(w, RoutingView)]


def test_showing_a_part_of_a_record_again_keeps_one_view_in_the_kernel():
    """`corpus[0]` or `r.select(mask)` is a new record each time: each display made a new widget, kept in the kernel
    with its copy of the tokens, so a cell run again or a loop over texts grew the kernel."""
    r = _record()
    corpus = Corpus(r, [0, 10, 30])
    before = len(_views())
    texts = {corpus[0]._repr_mimebundle_()[_WIDGET]["model_id"] for _ in range(3)}
    finals = {r.select(r.mask("final"))._repr_mimebundle_()[_WIDGET]["model_id"] for _ in range(3)}
    assert len(texts) == 1 and len(finals) == 1
    assert len(_views()) - before == 2
    assert corpus[1].view() is not corpus[0].view() and corpus[0].view().total == 10

    part = corpus[0]  # a part that changes is no longer the selection: its own view, following it
    part.relabel(["analysis"] * 10)
    assert part.view() is not corpus[0].view() and part.view().labels == ["analysis"] * 10
    assert corpus[0].view().labels == ["user"] * 10
    corpus[0].view().close()  # a closed view is not shown again
    assert corpus[0].view().comm is not None
    for view in _views():
        view.close()


@pytest.mark.parametrize("content", [
    {"kind": "sync", "have": -3}, {"kind": "sync", "have": 2.5}, {"kind": "sync", "have": "2"}, {"kind": "sync"},
    {"kind": "sync", "have": float("nan")}, {"kind": "sync", "have": True}, {"kind": "card", "layer": 1.7, "expert": 0},
    {"kind": "card", "layer": "x", "expert": 0}, {"kind": "card", "layer": 1}, {"kind": "card", "layer": None},
    {"kind": ["sync"]}, {"kind": "delete"}, [], None])
def test_a_front_end_request_with_bad_numbers_is_answered_in_one_line(content):
    """A negative `have` sent the record's last 3 tokens as tokens -3..-1; text or a missing number raised in the
    kernel's comm handler, and layer 1.7 opened layer 1's card."""
    view = RoutingView(_record())
    sent = _counting(view)
    view._message(view, content, [])
    (reply,) = [m["content"] for m in sent]
    assert reply["kind"] == "error" and "\n" not in reply["error"], reply
    view.close()


def test_a_front_end_request_that_is_right_is_answered():
    view = RoutingView(_record())
    sent = _counting(view)
    view._message(view, {"kind": "sync", "have": 26}, [])
    view._message(view, {"kind": "sync", "have": 10 ** 30}, [])  # has more than there is: nothing to send
    view._message(view, {"kind": "card", "layer": 1, "expert": 3}, [])
    view._message(view, {"kind": "card", "layer": 4, "expert": 3}, [])
    append, good, bad = (m["content"] for m in sent)
    assert append["kind"] == "append" and append["start"] == 26 and len(append["strings"]) == 4
    assert good["card"]["layer"] == 1 and good["card"]["expert"] == 3 and "error" not in good["card"]
    assert "no expert 3 in layer 4" in bad["card"]["error"]
    view.close()


@pytest.mark.parametrize("change", [{"selected": -4}, {"selected": 30}, {"selected": 10 ** 12}, {"selected": 2.5},
                                    {"layer": 4}, {"layer": -5}, {"layer": False}, {"zoom": None}, {"zoom": -3.0}, {"channel": 7}])
def test_a_front_end_change_the_record_cannot_take_is_answered_with_the_kernels_value(change):
    """selected = -4 was kept (code reading `view.selected` took the 4th token from the end); layer 4 of 4 raised in
    the comm handler."""
    view = RoutingView(_record(), selected=3, layer=1, zoom=4.0, channel="final")
    state = view.get_state()
    sent = _counting(view)
    view.set_state(dict(change))
    assert view.get_state() == state
    (update,) = [m for m in sent if m.get("method") == "update"]  # the front end is told the kernel's value
    assert update["state"] == {name: state[name] for name in change}
    view.close()


@pytest.mark.parametrize("change", [{"experts": b"\x00"}, {"total": -1}, {"num_experts": 0}, {"strings": []},
                                    {"labels": ["x"]}, {"no_such_trait": 1}])
def test_a_front_end_cannot_change_the_record(change):
    """A front end overwrote the record's own traits in the kernel (its expert ids, its token count)."""
    view = RoutingView(_record())
    state = view.get_state()
    sent = _counting(view)
    view.set_state(dict(change))
    assert view.get_state() == state and not [m for m in sent if m.get("method") == "update"]
    view.close()


def test_a_front_end_change_the_record_can_take_is_kept():
    view = RoutingView(_record())
    view.set_state({"selected": 29, "layer": 3, "zoom": 12.5, "channel": "user"})
    assert (view.selected, view.layer, view.zoom, view.channel) == (29, 3, 12.5, "user")
    with pytest.raises(traitlets.TraitError,
                       match=r"^selected is -1 \(no token\) or one of the record's 30 tokens, not -2$"):
        view.selected = -2
    with pytest.raises(traitlets.TraitError,
                       match=r"^zoom is a cell width in px ≥ 0 \(0 = fit the record\), not nan$"):
        view.zoom = float("nan")
    view.routing.truncate(20)  # a regenerated turn drops the selected token
    assert view.selected == -1 and view.total == 20
    view.close()


def test_the_views_layer_counts_from_the_last_as_every_layer_does_and_none_is_all_layers():
    """view.layer = -1 showed all layers' load, where every other `layer` of the routing lab (analyses, --ablate) reads
    -1 as the last layer, and -2 was refused: None is all layers now, and a negative layer counts from the last."""
    view = RoutingView(_record())
    assert view.layer is None  # all layers, as before
    view.layer = -1
    assert view.layer == 3
    view.layer = -4
    assert view.layer == 0
    view.set_state({"layer": None})  # the front end's "all layers"
    assert view.layer is None and RoutingView(_record(), layer=-2).layer == 2
    with pytest.raises(traitlets.TraitError, match=r"^layer is None \(all layers\) or a layer: this record has layers "
                                                   r"0..3 \(-1 = the last\): there is no layer -5$"):
        view.layer = -5
    view.close()


PARTS = """
import numpy as np
from gptoss_lab.routing import Corpus, Routing
rng = np.random.default_rng(0)
r = Routing(rng.integers(0, 100, 30), rng.integers(0, 8, (30, 4, 2)), np.full((30, 4, 2), 0.5),
            ["user"] * 10 + ["final"] * 20, num_experts=8)
corpus = Corpus(r, [0, 10, 30])
for _ in range(3):
    display(corpus[0], r.select(r.mask("final")))
"""


@pytest.mark.kernel
def test_a_cell_showing_parts_of_a_record_again_opens_one_widget_each(kernel):
    """In a real kernel: three displays of `corpus[0]` and of a masked part opened six routing widgets."""
    opened = []

    def hook(msg):
        if msg["msg_type"] == "comm_open" and msg["content"]["data"]["state"].get("_model_name") == "AnyModel":
            opened.append(msg["content"]["comm_id"])

    reply = kernel[1].execute_interactive(PARTS, timeout=120, output_hook=hook)
    assert reply["content"]["status"] == "ok"
    assert len(opened) == 2, opened
