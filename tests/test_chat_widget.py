"""ChatView state: the event -> operation mapping, time-based batching, and what reaches the front end."""
from __future__ import annotations

import types

import pytest

from gptoss_lab import ReplayEngine, Session
from gptoss_lab.events import Delta, MessageEnd, MessageStart, TurnStart
from gptoss_lab.widgets import chat
from gptoss_lab.widgets.chat import ChatView

RECORDING = (
    "<|channel|>analysis<|message|>Compute it.<|end|>"
    "<|start|>assistant to=python<|channel|>analysis<|message|>print(6 * 7)<|call|>"
    "<|channel|>final<|message|>It is **42** 🎉.\n\nDone.<|return|>"
)


class _Clock:
    """A fake perf_counter that the test advances."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _sent_ops(view: ChatView) -> list[dict]:
    ops: list[dict] = []
    view.observe(lambda change: ops.extend(change["new"]["ops"]), names="_chunk")
    return ops


@pytest.fixture()
def run_turn():
    def run(recording: str = RECORDING, **ask) -> tuple[ChatView, list[dict], object]:
        view = ChatView()
        ops = _sent_ops(view)
        reply = Session(ReplayEngine(recording), namespace={}, approval="auto").ask("Six times seven?", view=view, **ask)
        return view, ops, reply
    return run


def test_turn_maps_to_operations(run_turn) -> None:
    view, ops, reply = run_turn()
    assert ops[0] == {"op": "turn", "prompt": "Six times seven?", "effort": "medium", "model": "replay",
                      "approval": "auto"}
    assert [o["kind"] for o in ops if o["op"] == "block"] == ["reasoning", "tool", "final"]
    tool = [o for o in ops if o["op"] == "tool"]
    assert tool[-1]["status"] == "done" and tool[-1]["output"].strip() == "42"
    ends = {o["i"]: o for o in ops if o["op"] == "end"}
    assert '<span class="mi">6</span>' in ends[1]["code"]                 # highlighted once the call is written
    assert "<strong>42</strong>" in ends[2]["html"]                         # the answer as sanitised HTML
    assert ops[-1]["op"] == "stats" and "tok/s" in ops[-1]["line"]
    assert view._snapshot["ops"] == ops and view._snapshot["seq"] == view.syncs  # a late view replays all


def test_every_character_is_sent_once(run_turn) -> None:
    view, ops, reply = run_turn()
    for i, block in enumerate(view.transcript.items):
        assert "".join(o["t"] for o in ops if o["op"] == "text" and o["i"] == i) == block.text


def test_finished_markdown_blocks_stream_as_html(monkeypatch) -> None:
    clock = _Clock()
    monkeypatch.setattr(chat, "time", types.SimpleNamespace(perf_counter=clock, sleep=lambda s: None))
    view = ChatView()
    ops = _sent_ops(view)
    view._shown = True
    for event in (TurnStart("q", "low", "m", "auto"), MessageStart("final", None), Delta("It is **42** 🎉.", "final"),
                  Delta("\n\nDone", "final")):
        clock.now += 1.0
        view.handle(event)
    md = [o for o in ops if o["op"] == "md"]
    assert len(md) == 1 and "<strong>42</strong>" in md[0]["html"] and "Done" not in md[0]["html"]
    assert md[0]["upto"] == len("It is **42** 🎉.\n\n".encode("utf-16-le")) // 2  # in JS string units


def test_syncs_are_batched_by_time(monkeypatch) -> None:
    clock = _Clock()
    monkeypatch.setattr(chat, "time", types.SimpleNamespace(perf_counter=clock, sleep=lambda s: None))
    view = ChatView()
    ops = _sent_ops(view)
    view._shown = True
    view.handle(TurnStart("q", "low", "m", "auto"))
    view.handle(MessageStart("final", None))
    tokens, step = 3000, 0.004                       # 250 tok/s for 12 s
    for k in range(tokens):
        clock.now += step
        view.handle(Delta(f"w{k} ", "final"))
        assert not view.stop_requested
    view.handle(MessageEnd(None, None))
    assert view.syncs <= 20 * tokens * step + 3
    assert view.syncs >= 10 * tokens * step           # and it does stream
    sent = "".join(o["t"] for o in ops if o["op"] == "text")
    assert sent == "".join(f"w{k} " for k in range(tokens))
    assert max(len(o["t"]) for o in ops if o["op"] == "text") < 200   # increments, not the whole text


def test_stop_button_sets_stop_requested() -> None:
    view = ChatView()
    assert not view.stop_requested
    view._action = {"kind": "stop", "n": 1}
    assert view.stop_requested


def test_run_and_skip_are_remembered_per_card() -> None:
    view = ChatView()
    view._action = {"kind": "run", "index": 3, "n": 1}
    view._action = {"kind": "skip", "index": 5, "n": 2}
    assert view._decisions == {3: True, 5: False}


def test_without_a_kernel_approve_defers_to_the_session(run_turn) -> None:
    view, _, reply = run_turn()
    assert view.approve(reply.tool_calls[0]) is None


def test_widget_text_repr_is_short() -> None:
    data = ChatView()._repr_mimebundle_()
    data = data[0] if isinstance(data, tuple) else data
    assert "application/vnd.jupyter.widget-view+json" in data and len(data["text/plain"]) < 100
