"""Real kernels (jupyter_client): while the model's python code runs, the chat view's look at the shell queue (for
Stop) runs none of that code's callbacks on the kernel's thread, Stop still reaches the view, and what else waits
there is handled after the run, not lost.

The model's code opens a comm whose callback spins when it runs on the kernel's main thread (the run's watcher),
then asks its own kernel, over the shell channel, for that comm's state (it registers the comm without a comm_open and
sends the request past `Session.send`, which refuses both to the model's code). The pump used to hand any comm's
`request_state` to the kernel's handlers at once, on the watcher: the turn ran past its tool timeout for as long as
the callback spun (for good with `while True: pass`), and neither Stop nor an interrupt could end it.
"""
from __future__ import annotations

import time

import pytest
from test_adversarial_python import started_kernel

pytestmark = pytest.mark.kernel

SPIN = 10.0  # seconds the model's callback holds the thread it runs on, when that is the kernel's main thread
READY = 3.0  # ChatView.ready_timeout: with no front end, a kernel's first turn waits this long for one at its end

COMM_CODE = f'''
import threading, time, ipykernel
from comm import create_comm, get_comm_manager
from jupyter_client import BlockingKernelClient
main = threading.main_thread().ident
def cb(msg):
    if threading.get_ident() == main:
        t = time.monotonic()
        while time.monotonic() - t < {SPIN}:
            pass
c = create_comm(target_name="review", primary=False)  # its comm_open is refused to the model's code: none is sent
get_comm_manager().register_comm(c)
c.on_msg(cb)
kc = BlockingKernelClient(connection_file=ipykernel.get_connection_file())
kc.load_connection_file()
kc.start_channels()
request = kc.session.msg("comm_msg", {{"comm_id": c.comm_id, "data": {{"method": "request_state"}}}})
kc.shell_channel.socket.send_multipart(kc.session.serialize(request))  # Session.send refuses it to the model's code
time.sleep(0.5)
print("sent")
'''
# ... and one that returns at once: the request arrives after the run, while the turn goes on (the model answers)
COMM_CODE_AT_ONCE = COMM_CODE.replace("time.sleep(0.5)\n", "")

# The code puts its own function in the kernel's comm_msg handler (the run puts it back at its end), then sleeps:
# Stop must reach the view all the same, and the function must not run on the watcher.
HANDLER_CODE = f'''
import time
def handler(*args):
    t = time.monotonic()
    while time.monotonic() - t < {SPIN}:
        pass
get_ipython().kernel.shell_handlers["comm_msg"] = handler
time.sleep(40)
'''


def _recording(code: str) -> str:
    return ("<|channel|>analysis<|message|>x<|end|><|start|>assistant to=python<|channel|>analysis<|message|>"
            + code + "<|call|><|channel|>final<|message|>done<|return|>")


def _setup(code: str, timeout: float) -> str:
    return ("%load_ext gptoss_lab\nfrom gptoss_lab import Session, ReplayEngine\n"
            f"s = Session(ReplayEngine({_recording(code)!r}), approval='auto', timeout={timeout})\n%gptoss use s")


@pytest.fixture()
def kernel():
    with started_kernel() as both:
        yield both


def _run(kc, code: str, timeout: float = 60) -> tuple[str, dict]:
    out: list[str] = []
    reply = kc.execute_interactive(code, timeout=timeout, output_hook=lambda m: out.append(
        m["content"].get("text", "")) if m["msg_type"] == "stream" else None)
    return "".join(out), reply["content"]


def _wait_reply(kc, msg_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        reply = kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply


@pytest.mark.parametrize("code", [COMM_CODE, COMM_CODE_AT_ONCE], ids=["during the run", "after the run"])
def test_a_comm_the_models_code_opened_does_not_hold_the_turn(kernel, code):
    """The turn ends within seconds of the tool's timeout, the call done; the callback runs after the cell, as any
    comm's would in a busy kernel, and the kernel answers once it has. A state read that arrives after the run (the
    code returned at once) is no widget's of an installed package: it waits for the cell's end too (it held the turn
    for the callback's 10 s, Stop unheard)."""
    km, kc = kernel
    assert _run(kc, _setup(code, timeout=1))[1]["status"] == "ok"
    t0 = time.monotonic()
    cell = kc.execute("%%gptoss\ngo")
    _wait_reply(kc, cell, timeout=120)
    took = time.monotonic() - t0
    assert took < 1 + READY + 3, f"the turn took {took:.1f} s with a 1 s tool timeout"
    out, content = _run(kc, "c = _gptoss.tool_calls[0]; print(c.status, repr(c.output))", timeout=SPIN + 30)
    assert content["status"] == "ok" and out.startswith(("done 'sent\\n", 'done "sent\\n')), out  # (the notes' quotes)
    assert km.is_alive()
    assert _run(kc, "print(6 * 7)")[0].strip() == "42"


def test_stop_reaches_the_view_while_the_models_code_runs(kernel):
    """Stop, sent as the chat view's front end sends it, ends the turn while the code sleeps, even though the code
    replaced the kernel's comm_msg handler; the call reads interrupted."""
    km, kc = kernel
    assert _run(kc, _setup(HANDLER_CODE, timeout=120))[1]["status"] == "ok"
    while True:  # drop what the setup published
        try:
            kc.get_iopub_msg(timeout=0.2)
        except Exception:
            break
    cell = kc.execute("%%gptoss\ngo")
    view = None
    while view is None:
        msg = kc.get_iopub_msg(timeout=60)
        content = msg["content"]
        if msg["msg_type"] == "comm_open" and "_esm" in content.get("data", {}).get("state", {}):
            view = content["comm_id"]
    time.sleep(3)  # the replay reaches the call at once: the code sleeps now
    clicked = time.monotonic()
    kc.shell_channel.send(kc.session.msg("comm_msg", {"comm_id": view,
                                                      "data": {"method": "custom", "content": {"kind": "stop"}}}))
    _wait_reply(kc, cell, timeout=120)
    took = time.monotonic() - clicked
    assert took < 5, f"the turn ended {took:.1f} s after Stop"
    out, content = _run(kc, "print(_gptoss.interrupted, [c.status for c in _gptoss.tool_calls])")
    assert content["status"] == "ok" and out.strip() == "True ['interrupted']", out
    assert _run(kc, "print(6 * 7)")[0].strip() == "42"


def test_a_cell_run_while_the_models_code_runs_runs_after_the_turn(kernel):
    """A cell the user runs (and a kernel_info_request a reloaded tab sends) while the code runs waits for the turn,
    then runs: the pump holds it through the run."""
    km, kc = kernel
    assert _run(kc, _setup("import time\ntime.sleep(3)\nprint('slept')", timeout=30))[1]["status"] == "ok"
    cell = kc.execute("%%gptoss\ngo")
    time.sleep(1.5)  # the code sleeps now
    later = kc.execute("print('later')")
    info = kc.kernel_info()
    replies = {}
    while len(replies) < 3:
        reply = kc.get_shell_msg(timeout=30)
        replies[reply["parent_header"].get("msg_id")] = reply
    assert [replies[i]["content"]["status"] for i in (cell, later, info)] == ["ok", "ok", "ok"]
    out, content = _run(kc, "print(_gptoss.tool_calls[0].status, repr(_gptoss.tool_calls[0].output))")
    assert out.strip() == "done 'slept\\n'", out
    assert _run(kc, "print(6 * 7)")[0].strip() == "42"

