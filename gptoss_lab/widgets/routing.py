"""RoutingView: the interactive token × layer expert grid of a `Routing`, live while it grows.

The record is synced as compact binary traits (expert ids as uint16, gate weights as float32, so a
NaN or 7.5 from a broken router shows as itself, not as a plausible 0 or 1); while it grows, the new
tokens are sent as custom messages with binary buffers, batched by time (at most `max_syncs_per_s`
messages a second, whatever the token rate: the kernel's iopub channel drops messages past ~1,000/s),
and a view that renders late asks for what it missed. Clicking an expert asks the kernel for its
card (`analysis.expert_card`). The output also carries a PNG of the grid and the load, so a saved
notebook shows the routing without the widget.
"""
from __future__ import annotations

import math
import reprlib
import threading
import time
from typing import Any

import numpy as np
import traitlets

from ..events import counted
from ..routing import analysis
from ..routing.record import Routing
from . import asset, esm
from .view import WIDGET_MIME, NotebookView

_CONTROLS = ("channel", "selected", "layer", "zoom")  # the traits a front end changes; the record's are the kernel's
_REQUESTS = {"sync": ("have",), "card": ("layer", "expert")}  # the messages a front end sends, and their numbers


class RoutingView(NotebookView):
    """Canvas grid coloured by top-1 expert (zoom and scroll over thousands of tokens, token text
    on hover and on the zoomed axis), a token's routing across layers on click, per-layer expert
    load bars, a channel filter, a colour legend, and expert cards."""

    _esm = esm("routing_draw.js") + "\n" + asset("routing.js").read_text()  # drawing, then the view
    _css = asset("routing.css")

    layers = traitlets.Int(0).tag(sync=True)
    top_k = traitlets.Int(0).tag(sync=True)
    num_experts = traitlets.Int(0).tag(sync=True)
    total = traitlets.Int(0).tag(sync=True)         # tokens in the record (the view shows the first `_shown()`)
    intervention = traitlets.Unicode("").tag(sync=True)  # how its routers were changed, in words ("" = the model's own)
    experts = traitlets.Bytes(b"").tag(sync=True)   # uint16 [tokens, layers, k]; 65535 = empty slot
    weights = traitlets.Bytes(b"").tag(sync=True)   # float32 [tokens, layers, k]
    strings = traitlets.List(traitlets.Unicode()).tag(sync=True)
    labels = traitlets.List(traitlets.Unicode()).tag(sync=True)
    channel = traitlets.Unicode("").tag(sync=True)  # show only this label's tokens; "" = all
    selected = traitlets.Int(-1).tag(sync=True)     # the token whose routing the panel shows
    layer = traitlets.Int(None, allow_none=True).tag(sync=True)  # the layer of the load bars; None = all layers
    zoom = traitlets.Float(0.0).tag(sync=True)      # cell width in px; 0 = fit the whole record

    max_syncs_per_s: float = 20.0
    limit: int = 50_000  # tokens shown at most (the first ones); the rest is counted in `total`
    cells: int = 50_000 * 36 * 4  # and entries (token × layer × pick): 50,000 tokens at top-32 are 8 times more

    def __init__(self, routing: Routing, **kwargs: Any) -> None:
        self.routing = routing  # first: the traits given are checked against it
        super().__init__(**kwargs)
        self.syncs = 0                   # comm messages sent for the record (snapshots and appends)
        self._lock = threading.RLock()   # the flush timer runs on its own thread
        self._pending: int | None = None  # first token not sent yet
        self._sent = 0                   # tokens the front end has (sent or snapshotted)
        self._last = 0.0
        self._timer: threading.Timer | None = None
        self._handle: Any = None
        self._snapshot()
        routing.observe(self._changed)
        self.on_msg(self._message)

    @traitlets.validate("layer")
    def _valid_layer(self, proposal: dict[str, Any]) -> int | None:
        """None (all layers) or a layer of the record, a negative one from the last as every `layer` of the routing
        lab (-1 meant all layers here, the last layer elsewhere); the bars of layer 36 of 36 were the next token's."""
        if proposal["value"] is None:
            return None
        try:
            return analysis.layer_index(proposal["value"], self.routing.layers)
        except (TypeError, ValueError) as error:  # True: a TypeError, which set_state let out of the comm handler
            raise traitlets.TraitError(f"layer is None (all layers) or a layer: {error}") from None

    @traitlets.validate("selected")
    def _valid_selected(self, proposal: dict[str, Any]) -> int:
        """-1 (none) or a token of the record: -5 was a token counted from the end for code reading `selected`."""
        if not -1 <= proposal["value"] < len(self.routing):
            raise traitlets.TraitError(f"selected is -1 (no token) or one of the record's {counted(len(self.routing), 'token')}, "
                                       f"not {proposal['value']}")
        return proposal["value"]

    @traitlets.validate("zoom")
    def _valid_zoom(self, proposal: dict[str, Any]) -> float:
        """A cell width in px, 0 = fit: NaN and infinity are no JSON numbers."""
        if not 0 <= proposal["value"] < math.inf:
            raise traitlets.TraitError(f"zoom is a cell width in px ≥ 0 (0 = fit the record), "
                                       f"not {proposal['value']}")
        return proposal["value"]

    def set_state(self, sync_data: dict[str, Any]) -> None:
        """A front end's changes: of the controls only (the record's traits are the kernel's: ignored), each checked
        as a user's is; a token or layer the record lacks is answered with the kernel's value, not a traceback."""
        for name in _CONTROLS:
            if name in sync_data:
                try:
                    super().set_state({name: sync_data[name]})
                except traitlets.TraitError:
                    self.send_state(name)

    def show(self, *, replacing: RoutingView | None = None) -> RoutingView:
        """Display the view in the current output, or in the output of the view it is `replacing` (a regenerated
        turn's grid in place of the old turn's); when the record is finished the output is updated with a still
        picture of it too (for saved notebooks). `display(view)` does the same. The replaced view is left open: JupyterLab
        draws the new one with the old one's renderer, which hid the output when the old widget was closed."""
        from IPython.display import display

        if replacing is not None and replacing._handle is not None:
            self._handle = replacing._handle
            self._handle.update(self._bundle(), raw=True)
        else:
            self._handle = display(self._bundle(), raw=True, display_id=True)
        return self

    def _ipython_display_(self) -> None:
        self.show()

    def close(self) -> None:
        """Stop following the record (a closed view sends nothing more) and close the widget."""
        self.routing.unobserve(self._changed)
        with self._lock:
            self._cancel()
        super().close()

    # ------------------------------------------------------------ kernel -> front end

    def _snapshot(self) -> None:
        """Sync the whole record (on creation and once the labels are final): one comm message."""
        r = self.routing
        n = self._shown()
        with self._lock:
            self._cancel()
            part = r.select(slice(0, n))  # decoded and converted alone: a record may hold millions of tokens
            experts, weights = _pack(part)
            with self.hold_sync():
                self.layers, self.top_k, self.num_experts, self.total = r.layers, r.top_k, r.num_experts, len(r)
                self.intervention = r.intervention_shown
                self.experts, self.weights = experts, weights
                self.strings, self.labels = part.strings, part.labels
                if self.selected >= len(r):  # the token was dropped (a regenerated turn)
                    self.selected = -1
            self._sent, self._pending, self._last = n, None, time.perf_counter()
            self.syncs += 1

    def _changed(self, kind: str, start: int) -> None:
        if kind == "intervention":  # the record's summary changed: the view, the output's picture and text say it
            self.intervention = self.routing.intervention_shown
            self.finish_output()
            return
        if kind != "append":
            self._snapshot()
            if kind == "labels":
                self.finish_output()
            return
        with self._lock:
            self._pending = start if self._pending is None else min(self._pending, start)
            wait = self._last + 1.0 / self.max_syncs_per_s - time.perf_counter()
            if wait <= 0:
                self._flush()
            elif self._timer is None:  # the last tokens of a burst go out when the interval has passed
                self._timer = threading.Timer(wait, self._flush_later)
                self._timer.daemon = True
                self._timer.start()

    def _flush_later(self) -> None:
        with self._lock:
            self._timer = None
            self._flush()

    def _flush(self) -> None:
        """Send the tokens from the first pending one on (every open view appends what it lacks)."""
        if self._pending is None:
            return
        self._send_from(self._pending)
        self._pending = None

    def _send_from(self, start: int) -> None:
        r = self.routing
        end = self._shown()
        if start >= end:  # past the limit: only the count changes
            if self.total != len(r):
                self.total = len(r)
                self.syncs += 1
            return
        part = r.select(slice(start, end))
        self.send({"kind": "append", "start": start, "total": len(r), "layers": r.layers, "top_k": r.top_k,
                   "num_experts": r.num_experts, "strings": part.strings, "labels": part.labels}, list(_pack(part)))
        self._sent, self._last = end, time.perf_counter()
        self.syncs += 1

    def _shown(self) -> int:
        """Tokens the view carries: the first `limit`, fewer where a token has more than 36 layers × top-4 entries."""
        r = self.routing
        return min(len(r), self.limit, self.cells // max(r.layers * r.top_k, 1))

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def finish_output(self, drawn: bool = True) -> None:
        """The record is finished: put its picture in this view's output (shown by `show`). `drawn=False`
        (no front end drew the views: nbclient, papermill) leaves the widget out, so nbconvert shows the picture, and
        empties its code and record, which nbclient would save in the notebook's widget state (120 kB a turn)."""
        if self._handle is not None:
            bundle = self._bundle()
            self._handle.update(bundle if drawn else {k: v for k, v in bundle.items() if k != WIDGET_MIME}, raw=True)
        if not drawn:
            self._undrawn("experts", "weights", "strings", "labels")

    # ------------------------------------------------------------ front end -> kernel

    def _message(self, widget: Any, content: Any, buffers: list[bytes]) -> None:
        """A front end asks for the tokens it lacks ("sync", after the `have` it has) or an expert's card. The numbers
        are checked first (a negative `have` sent the last tokens as the first; text raised in the comm handler):
        a request the view never makes is answered with one line."""
        NotebookView.drawn_here = True
        try:
            kind, numbers = _request(content)
        except ValueError as error:
            self.send({"kind": "error", "error": str(error)})
            return
        if kind == "sync" and numbers["have"] < self._shown():
            with self._lock:
                self._send_from(numbers["have"])
        elif kind == "card":
            self._send_card(numbers["layer"], numbers["expert"])

    def _send_card(self, layer: int, expert: int) -> None:
        """The expert card the front end asked for (or why there is none)."""
        try:
            card: dict[str, Any] = analysis.expert_card(self.routing, layer, expert).to_dict()
        except ValueError as error:
            card = {"layer": layer, "expert": expert, "error": str(error)}
        self.send({"kind": "card", "card": card})

    # ------------------------------------------------------------ display

    def _bundle(self) -> dict[str, Any]:
        """The widget (where front ends draw views here, or may), the PNG and the summary."""
        bundle = super()._repr_mimebundle_()
        data = dict(bundle[0] if isinstance(bundle, tuple) else bundle)
        if NotebookView.drawn_here is False:
            data.pop(WIDGET_MIME, None)
        data.update(static_bundle(self.routing))
        return data

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self._bundle()


def static_bundle(routing: Routing) -> dict[str, Any]:
    """text/plain (the summary) and, when matplotlib is installed, image/png of the grid and load."""
    bundle: dict[str, Any] = {"text/plain": repr(routing) if len(routing) else
                              "Expert routing: no tokens recorded"}
    if len(routing):
        try:
            from .routing_figures import png, view_figure

            bundle["image/png"] = png(view_figure(routing))
        except ImportError:
            pass
    return bundle


def routing_bundle(routing: Routing) -> dict[str, Any]:
    """A Routing's display: the widget where widgets render (the record's one view, shown again: a new one per
    display stayed in the kernel, with its copy of the record), with the PNG and summary as fallbacks."""
    return routing.view()._bundle()


def _request(content: Any) -> tuple[str, dict[str, int]]:
    """(kind, its whole numbers ≥ 0) of a front end's message, or a one-line ValueError."""
    kind = content.get("kind") if isinstance(content, dict) else None
    if not isinstance(kind, str) or kind not in _REQUESTS:
        raise ValueError(f"the routing view asks for 'sync' or 'card', not {reprlib.repr(kind)}")
    numbers = {name: content.get(name) for name in _REQUESTS[kind]}
    for name, value in numbers.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"a {kind} request's {name} is a whole number ≥ 0, not {reprlib.repr(value)}")
    return kind, numbers


def _pack(routing: Routing) -> tuple[bytes, bytes]:
    """(expert ids as uint16, gate weights as float32): fixed point showed a NaN weight as 0 and 7.5 as 1."""
    experts = np.asarray(routing.experts).astype(np.int64) % 65536  # -1 (empty slot) -> 65535
    return experts.astype("<u2").tobytes(), np.asarray(routing.weights, "<f4").tobytes()
