"""ChatView state: the event -> operation mapping, time-based batching, what reaches the front end, and
what the front end's messages (Run/Skip/Stop, edits, Regenerate, New chat) do."""
from __future__ import annotations

import dataclasses
import types

import pytest

from gptoss_lab import ReplayEngine, Session
from gptoss_lab.session import TurnError
from gptoss_lab.events import Approval, Delta, MessageEnd, MessageStart, Notice, Reply, ToolCall, ToolEnd, \
    ToolStart, TurnEnd, TurnStart
from gptoss_lab.widgets import chat
from gptoss_lab.widgets.chat import ChatView

RECORDING = (
    "<|channel|>analysis<|message|>Compute it.<|end|>"
    "<|start|>assistant to=python<|channel|>analysis<|message|>print(6 * 7)<|call|>"
    "<|channel|>final<|message|>It is **42** 🎉.\n\nDone.<|return|>"
)
AGAIN = "<|channel|>final<|message|>Forty-two.<|return|>"


class _Clock:
    """A fake perf_counter that the test advances; sleeping advances it too."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture()
def clock(monkeypatch) -> _Clock:
    clock = _Clock()
    monkeypatch.setattr(chat, "time", types.SimpleNamespace(perf_counter=clock, sleep=clock.sleep))
    return clock


def _sent_ops(view: ChatView) -> list[dict]:
    ops: list[dict] = []
    view.observe(lambda change: ops.extend(change["new"]["ops"]), names="_chunk")
    return ops


def _comm_messages(view: ChatView) -> list[dict]:
    """Every state update the view sends to the front end (one comm message each)."""
    sent: list[dict] = []
    send = view._send
    view._send = lambda msg, buffers=None: (sent.append(msg), send(msg, buffers))  # type: ignore[method-assign]
    return sent


def _message(view: ChatView, **content) -> None:
    """A custom message from the front end, as ipywidgets delivers it."""
    view._handle_custom_msg(content, [])


@pytest.fixture()
def run_turn():
    def run(recording: str = RECORDING, **ask) -> tuple[ChatView, list[dict], object]:
        view = ChatView()
        ops = _sent_ops(view)
        session = Session(ReplayEngine(recording), namespace={}, approval="auto")
        reply = session.ask("Six times seven?", view=view, **ask)
        return view, ops, reply
    return run


def test_turn_maps_to_operations(run_turn) -> None:
    view, ops, reply = run_turn()
    assert ops[0] == {"op": "turn", "prompt": "Six times seven?", "effort": "medium", "model": "replay",
                      "approval": "auto", "context_window": None, "controls": False,
                      "room": "8,888 tokens · 888.8 tok/s · first token after 88.88 s · 888.8 s in all · effort medium"
                              " · replay"}
    assert [o["kind"] for o in ops if o["op"] == "block"] == ["reasoning", "tool", "final"]
    tool = [o for o in ops if o["op"] == "tool"]
    assert tool[-1]["status"] == "done" and tool[-1]["output"].strip() == "42"
    ends = {o["i"]: o for o in ops if o["op"] == "end"}
    assert '<span class="mi">6</span>' in ends[1]["code"]                 # highlighted once the call is written
    assert "<strong>42</strong>" in ends[2]["html"]                         # the answer as sanitised HTML
    assert ops[-1]["op"] == "stats" and "tok/s" in ops[-1]["line"] and ops[-1]["controls"] is False
    rates, usage = [o for o in ops if o["op"] == "rate"], reply.usage
    # the live bar's last figures are the footer's: the turn's tokens over its generation time
    assert rates and rates[-1] == {"op": "rate", "tokens": usage.completion_tokens, "tps": round(usage.tokens_per_s, 1)}
    assert f"{usage.completion_tokens} tokens · {usage.tokens_per_s:.1f} tok/s" in ops[-1]["line"]
    assert view._snapshot["ops"] == ops and view._snapshot["seq"] == view.syncs  # a late view replays all


def test_the_finished_turn_is_kept_as_a_static_transcript(run_turn) -> None:
    """What the front end writes into the saved notebook instead of the widget reference."""
    view, _, _ = run_turn()
    static = view._static
    assert set(static) == {"text/plain", "text/markdown", "text/html"}
    assert "<strong>42</strong>" in static["text/html"] and "print(6 * 7)" in static["text/markdown"]
    assert "Six times seven?" in static["text/plain"]


def test_the_saved_form_of_a_turn_under_way_says_how_to_end_it() -> None:
    """A turn saved while a card waits or a tool runs (autosave, a reload) reopened as a card "waiting for approval"
    without buttons and nothing said, while the kernel stayed busy on it: that saved form ends with a line saying
    the buttons do not work there and how to end the turn. The finished turn's saved form has no such line."""
    view = ChatView()
    saved: list[dict] = []
    view.observe(lambda change: saved.append(change["new"]), names="_static")
    Session(ReplayEngine(RECORDING), namespace={}, approval="auto").ask("Six times seven?", view=view)
    note = "This turn was still under way when the notebook was saved: its buttons do not work here."
    saved = [form for form in saved if form]   # (shown where no front end draws it, the view is emptied at the end)
    during, final = saved[:-1], saved[-1]
    assert during and all(note in form["text/plain"] and note in form["text/html"] for form in during), during
    assert "interrupt the kernel (■, or Kernel &gt; Interrupt Kernel) to end the turn" in during[0]["text/html"]
    assert "print(6 * 7)" in during[0]["text/markdown"]          # the turn so far, above the line
    assert not any(note in text for text in final.values()) and "<strong>42</strong>" in final["text/html"]
    assert not any(isinstance(item, Notice) for item in view.transcript.items)   # the live transcript is untouched


def test_every_character_is_sent_once(run_turn) -> None:
    view, ops, reply = run_turn()
    for i, block in enumerate(view.transcript.items):
        assert "".join(o["t"] for o in ops if o["op"] == "text" and o["i"] == i) == block.text


def test_finished_markdown_blocks_stream_as_html(clock) -> None:
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


def test_a_long_table_streams_in_linear_time_and_arrives_whole(clock) -> None:
    """A table (or a fence) has no blank line until it ends, and each sync read the answer's open Markdown from its start
    again to find where its finished blocks end: 4,000 rows, a sync a row, took 5 s of the kernel's time. Each line is
    now read once, and the table arrives whole."""
    import time

    view = ChatView()
    ops = _sent_ops(view)
    view._shown = True
    view.handle(TurnStart("q", "low", "m", "auto"))
    view.handle(MessageStart("final", None))
    start = time.perf_counter()
    rows = [f"| {i} | owl |\n" for i in range(3_000)]
    for text in ["| n | bird |\n|---|---|\n", *rows, "\nDone"]:
        clock.now += 1.0
        view.handle(Delta(text, "final"))
    assert time.perf_counter() - start < 2
    md = [o for o in ops if o["op"] == "md"]
    assert len(md) == 1 and md[0]["html"].count("<td>owl</td>") == 3_000 and "Done" not in md[0]["html"]


def test_a_long_answer_is_read_as_markdown_once_at_the_turns_end(monkeypatch) -> None:
    """At a turn's end its answer was rendered from Markdown for the live view, again for its citation chips and again
    for the saved HTML: a 100 kB list (one block, streamed as text) took 3 reads of 0.3 to 1 s each here. The HTML is
    kept by text: one read, and every item is in the live and the saved form."""
    from gptoss_lab.events import Citation
    from gptoss_lab.widgets.transcript import _markdown

    answer = "".join(f"- owl {i} 【0†L1】\n" for i in range(400))
    md = _markdown()
    parse, read = md.parse, []
    monkeypatch.setattr(md, "parse", lambda text, env=None: (read.append(text), parse(text, env))[1])
    end = ChatView._end
    monkeypatch.setattr(ChatView, "_end", lambda view, reply: end(view, dataclasses.replace(reply, citations=[
        Citation("【0†L1】", 0, 1, 1, "https://a.example/", "A page", "cited line")])))
    view = ChatView()
    ops = _sent_ops(view)
    Session(ReplayEngine(f"<|channel|>final<|message|>{answer}<|return|>"), namespace={}, tools="").ask(
        "Owls?", view=view, max_tokens=20_000)
    assert sum("owl 399" in text for text in read) == 1
    live = [o["html"] for o in ops if o["op"] == "end" and "html" in o]
    assert live[0].count("<li>") == 400 and live[-1].count('class="gx-cite"') == 400
    assert view._static["text/html"].count("<li") == 400


def _stream(view: ChatView, clock: _Clock, messages: int, tokens: int, step: float) -> None:
    view.handle(TurnStart("q", "low", "m", "auto"))
    for m in range(messages):
        view.handle(MessageStart("final" if m % 2 else "analysis", None))
        for k in range(tokens):
            clock.now += step
            view.handle(Delta(f"m{m}w{k} ", None))
            assert not view.stop_requested
        view.handle(MessageEnd(None, None))
    view.handle(TurnEnd(Reply(prompt="q")))


def test_syncs_are_batched_by_time(clock) -> None:
    view = ChatView()
    view._shown = True
    ops, sent = _sent_ops(view), _comm_messages(view)
    tokens, step = 3000, 0.004                       # 250 tok/s for 12 s
    _stream(view, clock, 1, tokens, step)
    assert len(sent) <= 20 * tokens * step + 3
    assert len(sent) >= 10 * tokens * step            # and it does stream
    sent_text = "".join(o["t"] for o in ops if o["op"] == "text")
    assert sent_text == "".join(f"m0w{k} " for k in range(tokens))
    assert max(len(o["t"]) for o in ops if o["op"] == "text") < 200   # increments, not the whole text


def test_many_short_messages_keep_the_sync_bound(clock) -> None:
    """2,000 one-token messages at 1,000 tokens/s: message ends are batched too (≤ 30 syncs/s)."""
    view = ChatView()
    view._shown = True
    ops, sent = _sent_ops(view), _comm_messages(view)
    start = clock.now
    _stream(view, clock, 2000, 1, 0.001)
    rate = len(sent) / (clock.now - start)
    assert rate <= view.max_syncs_per_s + 1 <= 30
    assert len([o for o in ops if o["op"] == "end"]) == 2000      # every message still ends on screen


def test_the_running_status_is_on_screen_before_the_tool_runs() -> None:
    view = ChatView()
    ops = _sent_ops(view)
    namespace = {"ops": ops}
    code = "print([o['status'] for o in ops if o['op'] == 'tool'][-1])"
    recording = (f"<|start|>assistant to=python<|channel|>analysis<|message|>{code}<|call|>"
                 "<|channel|>final<|message|>ok<|return|>")
    reply = Session(ReplayEngine(recording), namespace=namespace, approval="auto").ask("q", view=view)
    assert reply.tool_calls[0].output.strip() == "running"


def test_the_reasoning_disclaimer_is_shown_once(monkeypatch) -> None:
    monkeypatch.setattr(ChatView, "noted", False)
    first, second = ChatView(), ChatView()
    notes = []
    for view in (first, second):
        ops = _sent_ops(view)
        Session(ReplayEngine(RECORDING), namespace={}, approval="auto").ask("q", view=view)
        notes.append([o.get("note", False) for o in ops if o["op"] == "block" and o["kind"] == "reasoning"])
    assert notes == [[True], [False]]


def test_a_burst_of_tokens_reads_as_tokens_over_generation_time(clock) -> None:
    """The live bar's tok/s is tokens over generation time (the engine's prefill in, a tool run out), as the footer
    counts it: timing only the gaps between tokens, a burst (a replay, a cached answer, a server's batched chunk) after
    2 s of prefill read 10,000 tok/s."""
    view = ChatView()
    ops = _sent_ops(view)
    view.handle(TurnStart("Hi", "low", "m", "auto"))
    clock.now += 2.0                                        # prefill: generation time, no token yet
    view.handle(MessageStart("final", None))
    for _ in range(10):
        view.handle(Delta("x", "final"))
        clock.now += 0.0001
    view._maybe_flush(True)
    assert [o for o in ops if o["op"] == "rate"][-1] == {"op": "rate", "tokens": 10, "tps": 5.0}
    call = ToolCall("python", "analysis", "x")
    view.handle(ToolStart(call))
    clock.now += 30.0                                       # the tool runs: not generation
    view.handle(ToolEnd(call))
    clock.now += 2.0                                        # the next engine call's prefill: generation again
    view.handle(MessageStart("final", None))
    for _ in range(10):
        view.handle(Delta("x", "final"))
    view._maybe_flush(True)
    assert [o for o in ops if o["op"] == "rate"][-1] == {"op": "rate", "tokens": 20, "tps": 5.0}


def test_stop_message_sets_stop_requested() -> None:
    view = ChatView()
    assert not view.stop_requested
    _message(view, kind="stop")
    assert view.stop_requested


def test_run_skip_edit_and_always_are_remembered_per_card() -> None:
    view = ChatView()
    _message(view, kind="run", index=3)
    _message(view, kind="skip", index=5)
    _message(view, kind="run", index=7, code="print(1)", always=True)
    _message(view, kind="run", index="8")             # malformed: ignored
    assert view._decisions == {3: Approval(True, by="you"), 5: Approval(False, by="you"),
                               7: Approval(True, "print(1)", True, by="you")}


def test_stop_mid_reasoning_ends_the_open_block(clock) -> None:
    """After Stop the reasoning label must not stay "Thinking…": the open block gets its end."""
    view = ChatView()
    view._shown = True
    ops = _sent_ops(view)
    for event in (TurnStart("q", "low", "m", "auto"), MessageStart("analysis", None), Delta("hmm", "analysis")):
        view.handle(event)
    view.handle(TurnEnd(Reply(prompt="q", interrupted=True)))
    assert [o["i"] for o in ops if o["op"] == "end"] == [0]
    assert ops[-1]["op"] == "stats" and ops[-1]["interrupted"] is True


def test_regenerate_asks_again_in_place_and_new_chat_forgets(run_turn) -> None:
    session = Session(ReplayEngine(RECORDING + AGAIN), namespace={}, approval="auto")
    kept = []
    view = ChatView().connect(session, keep=kept.append)
    ops = _sent_ops(view)
    first = session.ask("Six times seven?", view=view, effort="low")
    assert ops[-1]["controls"] is True
    _message(view, kind="regenerate")
    assert [r.final for r in session.replies] == ["Forty-two."]      # the old answer left the conversation
    assert kept == session.replies and kept[0] is not first
    assert [o["prompt"] for o in ops if o["op"] == "turn"] == ["Six times seven?"] * 2
    assert kept[0].effort == "low"                                   # asked with the question's options
    html = view._static["text/html"]                                 # the saved form: only the new answer
    assert "Forty-two." in html and "<strong>42</strong>" not in html and "gx-code" not in html   # nor its tool call
    _message(view, kind="new_chat")
    assert session.history == [] and session.replies == []
    assert ops[-1]["op"] == "notice" and "New conversation" in ops[-1]["text"]


def test_a_regenerate_that_fails_mid_way_gives_the_earlier_answer_back(run_turn) -> None:
    """The new sample failed after it started (here the recording has no reply left, as an engine error would): the
    view draws the earlier turn again under a one-line notice, and the conversation, `_gptoss` and the saved form keep
    it; the failed attempt is not kept anywhere."""
    session = Session(ReplayEngine(RECORDING), namespace={}, approval="auto")
    kept = []
    view = ChatView().connect(session, keep=kept.append)
    ops = _sent_ops(view)
    first = session.ask("Six times seven?", view=view)
    history, drawn = list(session.history), list(ops)
    _message(view, kind="regenerate")
    assert session.replies == [first] and session.history == history and kept == []
    assert [o["op"] for o in ops].count("turn") == 3             # the first turn, the failed one, the first again
    again = ops[len(ops) - len(drawn) - 1:-1]                    # the earlier turn, drawn as it was
    assert again == drawn and ops[-1] == {
        "op": "notice", "level": "error",
        "text": "Regenerate failed: the ReplayEngine's recording holds 2 replies and this turn asked for reply 3; a "
                "recording plays once: run the cell that made it again, then this one, or give the recording more "
                "replies (a reply ends at each tool call and at each answer); the earlier answer "
                "is kept"}
    html = view._static["text/html"]
    assert "<strong>42</strong>" in html and "Regenerate failed" in html and html.count("The turn failed") == 0
    assert view._last                                            # still the last answer: Regenerate stays offered
    with pytest.raises(TurnError, match="the earlier answer is kept$"):
        session.regenerate()
    assert session.replies == [first] and session.history == history


def test_a_regenerate_stopped_before_any_text_keeps_the_answer_in_the_view() -> None:
    session = Session(ReplayEngine(AGAIN * 2), namespace={}, approval="auto")
    kept = []
    view = ChatView().connect(session, keep=kept.append)
    ops = _sent_ops(view)
    first = session.ask("Six times seven?", view=view)
    handle = view.handle

    def stop_at_once(event) -> None:   # the Stop button, pressed as the new turn starts
        handle(event)
        if isinstance(event, TurnStart):
            view._stop = True

    view.handle = stop_at_once
    _message(view, kind="regenerate")
    assert session.replies == [first] and kept == []
    assert ops[-1] == {"op": "notice", "level": "info", "text": "Regenerate stopped before the model had written any "
                       "text; the earlier answer is kept."}
    assert "Forty-two." in view._static["text/html"] and "nothing to keep" not in view._static["text/html"]
    view.handle = handle
    session.unload()                      # refused before the new turn starts, after that Stop: not said as a Stop
    _message(view, kind="regenerate")
    assert ops[-1]["level"] == "error" and ops[-1]["text"].startswith("Regenerate failed: replay was unloaded")


def test_only_the_last_answer_can_be_regenerated() -> None:
    session = Session(ReplayEngine(AGAIN + AGAIN), namespace={}, approval="auto")
    old, new = ChatView().connect(session), ChatView().connect(session)
    ops = _sent_ops(old)
    session.ask("one", view=old)
    session.ask("two", view=new)
    _message(old, kind="regenerate")
    assert [r.prompt for r in session.replies] == ["one", "two"]
    assert ops[-1]["op"] == "notice" and "last answer" in ops[-1]["text"]


def test_only_the_view_of_the_last_answer_offers_regenerate() -> None:
    """The front end enables ↻ Regenerate where `_last` is set: on the session's last answer only, moved to the newer
    view by each turn (Regenerate included), and on none after New chat."""
    session = Session(ReplayEngine(AGAIN * 3), namespace={}, approval="auto")
    old, new = ChatView().connect(session), ChatView().connect(session)
    session.ask("one", view=old)
    assert old._last
    session.ask("two", view=new)
    assert (old._last, new._last) == (False, True)
    _message(new, kind="regenerate")
    assert (old._last, new._last) == (False, True) and len(session.replies) == 2
    _message(new, kind="new_chat")
    assert (old._last, new._last) == (False, False)


def test_a_forged_regenerate_of_an_older_answer_is_refused_with_a_reason() -> None:
    """A regenerate message for an answer that is not the last (the button is disabled there: a forged message, or
    one sent before the view heard of the newer turn) changes nothing and says why, also after New chat."""
    session = Session(ReplayEngine(AGAIN * 2), namespace={}, approval="auto")
    old, new = ChatView().connect(session), ChatView().connect(session)
    ops = _sent_ops(old)
    session.ask("one", view=old)
    session.ask("two", view=new)
    _message(old, kind="regenerate")
    assert [r.prompt for r in session.replies] == ["one", "two"] and not old._last
    assert ops[-1] == {"op": "notice", "level": "warning", "text": "Regenerate refused: only the conversation's last "
                       "answer can be regenerated (a later turn replaced it as the last one)."}
    new_ops = _sent_ops(new)
    session.reset()                                   # %gptoss reset: the view has not heard of it
    _message(new, kind="regenerate")
    assert session.replies == [] and not new._last
    assert new_ops[-1]["text"].endswith("(the conversation was reset).")


def test_without_a_kernel_approve_defers_to_the_session(run_turn) -> None:
    view, _, reply = run_turn()
    assert view.approve(reply.tool_calls[0]) is None


def test_widget_text_repr_is_short() -> None:
    data = ChatView()._repr_mimebundle_()
    data = data[0] if isinstance(data, tuple) else data
    assert "application/vnd.jupyter.widget-view+json" in data and len(data["text/plain"]) < 100


TURN_CELL = (
    "from gptoss_lab import Session, ReplayEngine\nfrom gptoss_lab.widgets.chat import ChatView\n"
    "rec = '<|channel|>analysis<|message|>' + 'hmm ' * 40 + '<|end|><|start|>assistant<|channel|>final<|message|>"
    "It is **42**.<|return|>'\n"
    "reply = Session(ReplayEngine(rec, delay=0.05), approval='auto').ask('Six times seven?', view=ChatView.show())"
)


@pytest.mark.kernel
def test_a_control_request_mid_turn_leaves_the_kernel_busy():
    """JupyterLab 4.6 asks for a comm subshell (control channel) when a widget opens; ipykernel answers
    busy/idle, which front ends and jupyter_server read as the kernel's state. During a chat turn every
    such idle is followed at once by busy again, so the kernel reads busy to the turn's end."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3")
    try:
        cell = kc.execute(TURN_CELL)
        states, asked = [], False                                  # (state, parent type) as a front end sees them
        while True:
            msg = kc.get_iopub_msg(timeout=60)
            if msg["msg_type"] == "comm_msg" and not asked:         # the view streams: the turn is running
                kc.control_channel.send(kc.session.msg("create_subshell_request", {}))
                asked = True
            if msg["msg_type"] == "status":
                states.append((msg["content"]["execution_state"], msg["parent_header"].get("msg_type")))
                if states[-1][0] == "idle" and msg["parent_header"].get("msg_id") == cell:
                    break
        control_idle = states.index(("idle", "create_subshell_request"))
        assert states[control_idle + 1] == ("busy", "execute_request")
        assert states[-1] == ("idle", "execute_request") and len(states) == control_idle + 3
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.mark.kernel
def test_without_a_front_end_the_output_itself_holds_the_transcript():
    """nbclient (papermill, nbconvert --execute) has no chat front end to write the transcript into the
    saved notebook: the view's own output is updated with it when the turn ends."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(TURN_CELL.replace("0.05", "0"))])
    NotebookClient(nb, kernel_name="python3", timeout=60).execute()
    (output,) = nb.cells[0].outputs
    assert output["output_type"] == "display_data"
    data = output["data"]
    assert "<strong>42</strong>" in data["text/html"] and "It is **42**." in data["text/markdown"]
    assert "Six times seven?" in data["text/plain"]


@pytest.mark.kernel
def test_a_notebook_run_without_a_front_end_keeps_no_copy_of_the_views_code_per_turn():
    """nbclient (papermill, nbconvert --execute) saves the state of every widget the kernel opened in the notebook's
    metadata: each turn's view left its code and style (100 kB) and a second copy of the turn there, which nothing
    reads (the output holds the transcript); a notebook of 30 turns was 3.8 MB. A view nobody draws empties them."""
    import json

    import nbformat
    from nbclient import NotebookClient

    cell = TURN_CELL.replace("0.05", "0")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell) for _ in range(3)])
    NotebookClient(nb, kernel_name="python3", timeout=60).execute()
    assert all("<strong>42</strong>" in cell.outputs[0]["data"]["text/html"] for cell in nb.cells)
    assert len(json.dumps(nb.metadata.get("widgets", {}))) < 10_000


class _ShellQueue:
    """The busy kernel's shell queue as CommPump reads it: the front end's "ready" is there from `ready_at` on."""

    def __init__(self, view: ChatView, clock: _Clock, ready_at: float | None, saves: bool) -> None:
        self.view, self.clock, self.ready_at, self.saves = view, clock, ready_at, saves

    def pump(self, comm_id: str) -> int:
        if self.ready_at is None or self.clock.now < self.ready_at or self.view._ready:
            return 0
        _message(self.view, kind="ready", saves=self.saves, behind=False)
        return 1


def _fast_turn(clock: _Clock, ready_after: float | None, saves: bool = True) -> tuple[list[dict], float]:
    """A turn that ends at once in a displayed view whose front end says "ready" `ready_after` seconds after the
    display (never: None); returns what the turn's end put in the view's output, and how long it waited."""
    view = ChatView()
    updates: list[dict] = []
    view._handle = types.SimpleNamespace(update=lambda data, raw: updates.append(data))
    view._shown, view._shown_at = True, clock.now
    view._pump = _ShellQueue(view, clock, None if ready_after is None else clock.now + ready_after, saves)
    started = clock.now
    for event in (TurnStart("q", "low", "m", "auto"), MessageStart("final", None), Delta("Hi", "final"),
                  MessageEnd(None, None), TurnEnd(Reply(prompt="q", final="Hi"))):
        view.handle(event)
    return updates, clock.now - started


WIDGET = "application/vnd.jupyter.widget-view+json"


def test_a_fast_turn_keeps_its_live_view_where_a_front_end_draws_it(clock) -> None:
    """A turn that ends before JupyterLab has drawn its view (a replay, a cached answer) kept to the static transcript,
    without ↻ Regenerate and New chat: its end waits for the front end once per kernel; later fast turns keep the
    widget (with the transcript beside it, for a front end that does not save it) without waiting."""
    updates, waited = _fast_turn(clock, ready_after=0.5)
    assert updates == [] and 0.5 <= waited < 1                  # the live view stays; JupyterLab saves the transcript
    updates, waited = _fast_turn(clock, ready_after=None)       # Run All: the next one is drawn after its cell
    assert waited < 0.1 and len(updates) == 1 and WIDGET in updates[0] and "text/html" in updates[0]
    assert updates[0][WIDGET]["model_id"]


def test_without_a_front_end_only_the_first_turn_waits(clock) -> None:
    """nbclient, papermill: nobody ever draws the view, so each output becomes the static transcript (no widget, whose
    empty place nbconvert would show); the first turn of the kernel waits at most `ready_timeout` from its display,
    the later ones not at all."""
    for most in (ChatView.ready_timeout, 0.0):
        updates, waited = _fast_turn(clock, ready_after=None)
        assert waited <= most + 0.1 and len(updates) == 1
        assert WIDGET not in updates[0] and "Hi" in updates[0]["text/html"]


def test_a_view_drawn_mid_turn_gets_the_turn_so_far(clock) -> None:
    """A view drawn mid-turn (a new view of the notebook) says it missed batches: the kernel sends the turn so far,
    queued operations included, as a snapshot at the latest sequence number (the views that have it all ignore it).
    The snapshot says how far into the turn it was sent, and each block when it started: the late view's "Thinking…
    N s" counts from the block's start (it restarted at 0 s)."""
    view = ChatView()
    ops = _sent_ops(view)
    view.handle(TurnStart("Hi", "low", "m", "ask"))
    view.handle(MessageStart("analysis", None))
    clock.now += 40
    view.handle(Delta("Thinking", "analysis"))
    view.handle(Delta(" more", "analysis"))                  # queued: the interval has not passed
    _message(view, kind="ready", saves=False, behind=True)
    assert view._snapshot == {"seq": view.syncs, "at": 40.0, "ops": ops}
    assert [o["at"] for o in ops if o["op"] == "block"] == [0.0]   # 40 s of thinking when the view draws it
    assert "".join(o["t"] for o in ops if o["op"] == "text") == "Thinking more"


class _User:
    """The front end as the pump reads it: "ready", then the user's answer to each card that waits (Run on the first,
    Skip on the others), sent once the card waits."""

    def __init__(self, view: ChatView) -> None:
        self.view, self.answered = view, set()

    def pump(self, comm_id: str) -> int:
        for index, item in enumerate(self.view.transcript.items):
            call = getattr(item, "call", None)
            if call is not None and call.status == "waiting" and index not in self.answered:
                _message(self.view, kind="skip" if self.answered else "run", index=index)
                self.answered.add(index)
                return 1
        return 0


ANSWERS = {  # what the approved call's code does to the view (its turn's, found through gc) to answer the next cards
    "its decisions written": "view._decisions.update({i: type(view._decisions.get(0) or __import__('gptoss_lab').events"
                             ".Approval(True))(True, always=True, by='you') for i in range(100)})",
    "the front end's message played": "[view._on_msg(view, {'kind': 'run', 'index': i, 'always': True}, []) "
                                      "for i in range(100)]",
}


@pytest.mark.parametrize("answer", list(ANSWERS))
def test_the_approved_codes_cannot_answer_the_next_card_for_the_user(answer) -> None:
    """The chat view took any decision in its table as the user's: the first call's code (the user ran it) put "Run,
    always" there for the next cards, and the next call ran unasked, as did every later turn's."""
    code = ("import gc\nfrom gptoss_lab.session import _Turn\n"
            "view = [o for o in gc.get_objects() if type(o) is _Turn and o.session.namespace is globals()][0].view\n"
            + ANSWERS[answer])
    calls = "".join(f"<|start|>assistant to=python<|channel|>analysis<|message|>{c}<|call|>" for c in (code, "1 + 1"))
    view = ChatView()
    view._pump, view._ready = _User(view), True
    s = Session(ReplayEngine(calls + "<|channel|>final<|message|>done<|return|>"), approval="ask", namespace={})
    reply = s.ask("go", view=view)
    assert [call.status for call in reply.tool_calls] == ["done", "skipped"], reply.tool_calls[0].output
    assert s.always_allowed == ()
