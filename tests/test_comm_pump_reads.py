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
