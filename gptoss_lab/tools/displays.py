"""What the model's code displays in the notebook, kept inert: text and pictures only.

The code's `display(HTML(...))`, `Javascript`, `Markdown`, a widget's view or an `execute_result` of a cell it runs
reached the page as live HTML and script (JupyterLab trusts what the running kernel shows), also from a thread it
left running, into the user's later cells. `containment` sends the displays of the model's threads through
`inert_message`: their text and images are shown (a matplotlib figure still is), the rest is named, not shown; the
display ids they update are their own (`_own_id`). The text they send themselves (`text_of`: a stream message, the
error of a cell they run) is their bounded output, as their prints are. Any other message of theirs (`refusal`) is
refused: a widget's comm (an anywidget's `_esm` ran its script in the page, a new `value` of the user's HTML widget was
drawn as HTML), `clear_output` (it emptied the turn's cell, or the user's later cell), an input request on the stdin
channel (a password prompt), and what its own jupyter_client sends (an `execute_request` to its own kernel ran after
the turn as the user's cell, unguarded: `os._exit` ended it). A new value of a synced trait of a widget the page shows
is refused before the widget takes it (`widget_refusal`): refused only when sent, the kernel's widget kept the model's
value, which a reloaded page drew. A write past traitlets (`widget._trait_values['value'] = ...`) is not seen.
"""
from __future__ import annotations

import sys
from typing import Any

INERT = frozenset({"text/plain", "image/png", "image/jpeg", "image/gif", "image/bmp", "image/webp"})
_DISPLAYS = frozenset({"display_data", "update_display_data", "execute_result"})  # the messages that carry a bundle
_TEXTS = frozenset({"stream", "error"})  # text the model's threads send themselves: their output, as their prints
_SENT = _DISPLAYS | _TEXTS  # what the model's threads may send: displays made inert, and text
_OWN_IDS = "gptoss-model-code:"  # before the display ids of the model's code: none of another's is one of them


def inert(data: Any) -> dict[str, Any]:
    """A display's MIME bundle with its text and images only; where that leaves no text, a line naming what is not
    shown."""
    bundle = data if type(data) is dict else {}
    kept = {mime: value for mime, value in bundle.items() if type(mime) is str and mime in INERT}
    if "text/plain" not in kept:
        left_out = sorted(str(mime) for mime in bundle if not (type(mime) is str and mime in INERT))
        kept["text/plain"] = (f"[the model's code displayed {', '.join(left_out)[:200]}: not shown, only text and "
                              "images of the model's code are]" if left_out else "")
    return kept


def inert_message(msg_or_type: Any, content: Any) -> tuple[Any, Any]:
    """`Session.send`'s message (a built message, or a type and its content), its display bundle made `inert` and its
    display id the code's own (`_own_id`)."""
    shown = _display_content(msg_or_type, content)
    if shown is None:
        return msg_or_type, content
    shown = {**shown, "data": inert(shown.get("data"))}
    if "transient" in shown:
        shown["transient"] = _own_id(shown["transient"])
    return ({**msg_or_type, "content": shown}, content) if type(msg_or_type) is dict else (msg_or_type, shown)


def shown_text(msg_or_type: Any, content: Any) -> str | None:
    """The text a display message of `Session.send` shows once made `inert`; None for any other message."""
    shown = _display_content(msg_or_type, content)
    return None if shown is None else str(inert(shown.get("data"))["text/plain"])


def _own_id(transient: Any) -> dict[str, Any]:
    """A display's transient part with its display id made the model's code's own (`update_display(...,
    display_id='the user's')` replaced the user's display, or the turn's chat view, with the code's text): its updates
    reach the displays it made, never another's. An id that is not text is dropped."""
    kept = dict(transient) if type(transient) is dict else {}
    display_id = kept.pop("display_id", None)
    if type(display_id) is str:
        kept["display_id"] = _OWN_IDS + display_id
    return kept


def text_of(msg_or_type: Any, content: Any) -> str | None:
    """The text a stream or error message of `Session.send` shows (sent by the code itself, past its bounded output);
    None for any other message."""
    kind = _kind(msg_or_type)
    if type(msg_or_type) is dict:
        content = msg_or_type.get("content")
    if not (type(kind) is str and kind in _TEXTS and type(content) is dict):
        return None
    if kind == "stream":
        text = content.get("text")
        return text if type(text) is str else ""
    lines = content.get("traceback")  # an error message's: a cell the code ran (`run_cell`) failed
    return "\n".join(map(str, lines)) + "\n" if type(lines) is list else ""


def refusal(msg_or_type: Any) -> str | None:
    """Why the model's code may not send `Session.send`'s message (one line); None for a display or text."""
    kind = _kind(msg_or_type)
    if type(kind) is str and kind in _SENT:
        return None
    named = repr(kind[:40]) if type(kind) is str else f"a {type(kind).__name__}"
    return (f"the python tool's code cannot send {named} messages over Jupyter's channels (widgets, comms, input "
            "requests, clearing outputs, requests to a kernel): only the text and images it displays are shown")


def widget_refusal(trait: Any, owner: Any) -> str | None:
    """Why the model's code may not give `owner` a new value of `trait` (a synced trait of a widget with a comm: the
    page draws it); None for any other trait."""
    widget = getattr(sys.modules.get("ipywidgets"), "Widget", None)
    if widget is None or not isinstance(owner, widget) or owner.comm is None or trait.name not in owner.keys:
        return None
    return refusal("comm_msg")


def _kind(msg_or_type: Any) -> Any:
    """The message type of `Session.send`'s message: a built message's own, or the type given."""
    if type(msg_or_type) is not dict:
        return msg_or_type
    header = msg_or_type.get("header")
    return header.get("msg_type") if type(header) is dict else msg_or_type.get("msg_type")


def _display_content(msg_or_type: Any, content: Any) -> dict[str, Any] | None:
    """The content of a display message (a built message's own, or the one given with its type); None for others."""
    kind = _kind(msg_or_type)
    if type(msg_or_type) is dict:
        content = msg_or_type.get("content")
    return content if type(kind) is str and kind in _DISPLAYS and type(content) is dict else None
