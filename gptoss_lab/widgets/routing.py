"""RoutingView: the interactive token × layer expert grid of a `Routing`, live while it grows."""
from __future__ import annotations

from typing import Any

import anywidget
import numpy as np
import traitlets

from ..routing import Routing
from . import asset, esm



class RoutingView(anywidget.AnyWidget):
    """Canvas grid coloured by top-1 expert, hover for top-k weights, click a token for its routing
    across layers, per-layer expert-load bars and a channel filter.

    The full record is synced as compact binary traits (expert ids and gate weights as uint16, the
    weight scaled to 0..65535); while the routing grows only the new tokens are sent, as custom
    messages with binary buffers, and a view that renders late asks for what it missed.
    """

    _esm = esm("routing.js")
    _css = asset("routing.css")

    layers = traitlets.Int(0).tag(sync=True)
    top_k = traitlets.Int(0).tag(sync=True)
    num_experts = traitlets.Int(0).tag(sync=True)
    experts = traitlets.Bytes(b"").tag(sync=True)   # uint16 [tokens, layers, k]
    weights = traitlets.Bytes(b"").tag(sync=True)   # uint16 [tokens, layers, k], weight × 65535
    strings = traitlets.List(traitlets.Unicode()).tag(sync=True)
    labels = traitlets.List(traitlets.Unicode()).tag(sync=True)
    channel = traitlets.Unicode("").tag(sync=True)  # show only this label's tokens; "" = all
    selected = traitlets.Int(-1).tag(sync=True)     # the token whose routing the panel shows
    layer = traitlets.Int(-1).tag(sync=True)        # the layer of the load bars; -1 = all layers

    def __init__(self, routing: Routing, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.routing = routing
        self._snapshot()
        routing.observe(self._changed)
        self.on_msg(self._message)

    def _snapshot(self) -> None:
        """Sync the whole record (on creation and once the labels are final)."""
        r = self.routing
        experts, weights = _pack(r, 0)
        with self.hold_sync():
            self.layers, self.top_k, self.num_experts = r.layers, r.top_k, r.num_experts
            self.experts, self.weights = experts, weights
            self.strings, self.labels = list(r.strings), list(r.labels)

    def _changed(self, kind: str, start: int) -> None:
        if kind != "append":
            self._snapshot()
        else:
            self._send_from(start)

    def _send_from(self, start: int) -> None:
        """Send the tokens from `start` on (every open view appends what it lacks)."""
        r = self.routing
        self.send({"kind": "append", "start": start, "layers": r.layers, "top_k": r.top_k,
                   "num_experts": r.num_experts, "strings": r.strings[start:], "labels": r.labels[start:]},
                  list(_pack(r, start)))

    def _message(self, widget: Any, content: dict[str, Any], buffers: list[bytes]) -> None:
        if content.get("kind") == "sync" and int(content.get("have", 0)) < len(self.routing):
            self._send_from(int(content["have"]))


def _pack(routing: Routing, start: int) -> tuple[bytes, bytes]:
    experts = routing.experts[start:].astype("<u2").tobytes()
    weights = np.rint(np.clip(routing.weights[start:], 0, 1) * 65535).astype("<u2").tobytes()
    return experts, weights
