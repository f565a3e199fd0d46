"""The base of the notebook views: an anywidget that a saved notebook keeps as still data, not as a reference."""
from __future__ import annotations

from typing import Any

import anywidget
import traitlets


WIDGET_MIME = "application/vnd.jupyter.widget-view+json"   # an output's reference to a widget


class NotebookView(anywidget.AnyWidget):
    """A view whose output the front end finds by `_id` and saves as still MIME data (`saveStill` in
    static/common.js): a widget reference would reopen as "Error displaying widget: model not found"."""

    _id = traitlets.Unicode("").tag(sync=True)     # this widget's model id: how the front end finds its output
    # Whether front ends draw views in this kernel (None: not known yet): any message from a drawn view says yes, a chat
    # turn whose view no front end drew says no (nbclient, papermill). Where no, outputs leave the widget out, so
    # nbconvert shows their picture or transcript, not the widget's empty place (its scripts come from a CDN).
    drawn_here: bool | None = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._id = self.model_id

    def _undrawn(self, *names: str) -> None:
        """Empty this view's code, style and traits `names` where no front end draws it (nbclient, papermill): they
        are saved in the notebook's widget state, which nothing reads, 100 kB a view."""
        with self.hold_sync():
            self._esm = self._css = ""
            for name in names:
                setattr(self, name, self.trait_defaults(name))
