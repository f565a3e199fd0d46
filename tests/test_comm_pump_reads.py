"""A real kernel (jupyter_client): while a turn waits on the chat view, the requests a reloaded tab sends first are
answered at once. Under ipykernel 7 their replies went back on the socket the request came in on, and were lost: the
tab never heard which comms are open (`comm_info_request`), and the widget manager drew none of them."""
from __future__ import annotations

import time

import pytest
from test_adversarial_python import started_kernel
from test_comm_pump_contained import _run, _wait_reply

pytestmark = pytest.mark.kernel

CALL = ("<|channel|>analysis<|message|>x<|end|><|start|>assistant to=python<|channel|>analysis<|message|>print(1)"
        "<|call|><|channel|>final<|message|>done<|return|>")
SETUP = ("%load_ext gptoss_lab\nfrom gptoss_lab import Session, ReplayEngine\nfrom gptoss_lab.widgets.chat import "
         f"ChatView\nChatView.ready_timeout = 10.0\ns = Session(ReplayEngine({CALL!r}), approval='ask')\n%gptoss use s")


def test_a_tab_that_connects_while_a_card_waits_hears_the_open_comms():
    """The card waits (here for a front end to draw it, as long as for Run or Skip): the comm_info_request is
    answered within a second, naming the chat view's comm."""
    with started_kernel() as (km, kc):
        assert _run(kc, SETUP)[1]["status"] == "ok"
        cell = kc.execute("%%gptoss\ngo", allow_stdin=False)
        time.sleep(3.0)                                   # the turn is at its card, waiting
        asked, t0 = kc.comm_info(target_name="jupyter.widget"), time.monotonic()
        reply = _wait_reply(kc, asked, timeout=5)
        assert time.monotonic() - t0 < 1.0
        assert reply["content"]["comms"], "the chat view's comm is open"
        _wait_reply(kc, cell, timeout=60)


def _control_states(kc, timeout: float) -> dict | None:
    """Open ipywidgets' control comm and ask it for every widget's state, as a reloaded JupyterLab tab does; the
    states it sends back within `timeout` seconds, or None."""
    comm_id = "control-comm-of-a-reloaded-tab"
    kc.shell_channel.send(kc.session.msg("comm_open", {"comm_id": comm_id, "target_name": "jupyter.widget.control",
                                                       "data": {}}, metadata={"version": "1.0.0"}))
    kc.shell_channel.send(kc.session.msg("comm_msg", {"comm_id": comm_id, "data": {"method": "request_states"}}))
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            msg = kc.get_iopub_msg(timeout=max(0.05, end - time.monotonic()))
        except Exception:
            continue
        data = msg["content"].get("data") or {}
        if msg["msg_type"] == "comm_msg" and msg["content"].get("comm_id") == comm_id and "states" in data:
            return data["states"]
    return None


def test_a_tab_that_connects_while_a_card_waits_gets_every_widgets_state():
    """A reloaded JupyterLab tab asks for every widget's state over ipywidgets' control comm before it draws any:
    behind the waiting card that request went unanswered (it was held for the cell's end), so the tab timed out and
    drew no widget. It is answered at once, with the chat view's state among them; with a widget class the notebook
    defined among the widgets (whose state read would run the notebook's code on the running cell), it still waits."""
    with started_kernel() as (km, kc):
        assert _run(kc, SETUP)[1]["status"] == "ok"
        cell = kc.execute("%%gptoss\ngo", allow_stdin=False)
        time.sleep(3.0)                                   # the turn is at its card, waiting
        t0 = time.monotonic()
        states = _control_states(kc, timeout=3.0)
        assert states is not None and time.monotonic() - t0 < 1.5
        assert any(s["model_name"] == "AnyModel" and "_chunk" in s["state"] for s in states.values()), states.keys()
        _wait_reply(kc, cell, timeout=60)
        own = "import ipywidgets\nclass Mine(ipywidgets.Widget):\n    pass\nmine = Mine()\n"
        assert _run(kc, own + SETUP.replace("%load_ext gptoss_lab\n", ""))[1]["status"] == "ok"   # a new recording
        cell = kc.execute("%%gptoss\ngo", allow_stdin=False)
        time.sleep(3.0)
        assert _control_states(kc, timeout=2.0) is None   # held: the notebook's own widget class is among them
        assert _control_states(kc, timeout=30.0) is not None   # answered once the cell has ended
        _wait_reply(kc, cell, timeout=60)
