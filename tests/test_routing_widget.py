"""RoutingView on the kernel side: comm messages stay few whatever the token rate, every token
still arrives, expert cards answer, and the output carries a picture for saved notebooks."""
from __future__ import annotations

import json
import subprocess
import time

import numpy as np
import pytest

from gptoss_lab.routing import Recorder, Routing
from gptoss_lab.widgets.routing import RoutingView
from gptoss_lab.widgets.view import NotebookView

L, K, E = 36, 4, 128


def _counting(view: RoutingView) -> list[dict]:
    """Every comm message the widget sends (state syncs and custom messages) lands in the list."""
    sent: list[dict] = []
    send = view._send

    def counted(msg, buffers=None):
        sent.append(msg)
        return send(msg, buffers)

    view._send = counted
    return sent


def _drain(view: RoutingView) -> None:
    deadline = time.monotonic() + 10
    while view._pending is not None or view._timer is not None:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def _appended(sent: list[dict]) -> list[int]:
    """Token positions carried by the custom append messages."""
    out = []
    for msg in sent:
        content = msg.get("content", {})
        if msg.get("method") == "custom" and content.get("kind") == "append":
            out += range(content["start"], content["start"] + len(content["strings"]))
    return out


def test_two_thousand_appends_send_few_messages_and_every_token():
    rng = np.random.default_rng(0)
    routing = Routing(num_experts=E)
    view = RoutingView(routing)
    sent = _counting(view)
    experts = rng.integers(0, E, (2000, L, K))
    start = time.perf_counter()
    for i in range(2000):  # as fast as Python goes (a fast model, or a replay)
        routing.append([1000 + i], experts[i:i + 1], np.full((1, L, K), 0.25))
    burst = time.perf_counter() - start
    _drain(view)
    assert len(sent) <= view.max_syncs_per_s * burst + 2, (len(sent), burst)
    assert sorted(set(_appended(sent))) == list(range(2000))  # the trailing tokens were sent too

    sent.clear()
    start = time.perf_counter()
    for i in range(2000, 2300):  # a steady 600 tokens/s for half a second
        routing.append([1000 + i], experts[i % 2000:i % 2000 + 1], np.full((1, L, K), 0.25))
        time.sleep(1 / 600)
    elapsed = time.perf_counter() - start
    _drain(view)
    assert len(sent) <= 30 * elapsed + 2 and len(sent) >= 5  # throttled, but still live
    assert sorted(set(_appended(sent))) == list(range(2000, 2300))


def test_finished_turn_resyncs_once_and_updates_the_output_picture():
    recorder = Recorder(num_experts=8)
    view = RoutingView(recorder.routing)
    sent = _counting(view)
    updates = []

    class Handle:
        def update(self, bundle, raw=False):
            updates.append(bundle)

    view._handle = Handle()
    recorder.add([200006, 173781], np.zeros((2, 4, 2), np.int16), np.full((2, 4, 2), 0.5))
    _drain(view)
    recorder.finish(["format", "format"])
    state = [m for m in sent if m.get("method") == "update"]
    assert state and state[-1]["state"]["labels"] == ["format", "format"]
    (bundle,) = updates
    assert bundle["image/png"][:4] == b"\x89PNG" and bundle["text/plain"].startswith("Routing(2 tokens")
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_a_closed_view_stops_following_the_record():
    routing = Routing(num_experts=8)
    view = RoutingView(routing)
    sent = _counting(view)
    view.close()
    routing.append([1], np.zeros((1, 4, 2), int), np.full((1, 4, 2), 0.5))
    time.sleep(0.1)
    assert sent == [] and routing._observers == []


def test_display_bundle_has_a_picture_and_a_summary():
    routing = Routing([1, 2, 3], np.zeros((3, 4, 2), int), np.full((3, 4, 2), 0.5), ["user"] * 3, num_experts=8)
    bundle = RoutingView(routing)._repr_mimebundle_()
    assert bundle["text/plain"] == repr(routing) and "object at 0x" not in bundle["text/plain"]
    assert bundle["image/png"][:4] == b"\x89PNG"
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"]
    # still recording, a turn that recorded nothing, or a selection with no tokens (which "yet" said would grow)
    empty = RoutingView(Routing())._repr_mimebundle_()
    assert "image/png" not in empty and empty["text/plain"] == "Expert routing: no tokens recorded"


def test_where_no_front_end_draws_views_the_display_is_the_picture(monkeypatch):
    """After a chat turn that no front end drew (nbclient, papermill: NotebookView.drawn_here is False), a routing
    display leaves the widget out: nbconvert chose it over the PNG and showed an empty place. A drawn view's first
    message (it asks for the tokens it lacks) says front ends draw views here."""
    routing = Routing([1, 2, 3], np.zeros((3, 4, 2), int), np.full((3, 4, 2), 0.5), ["user"] * 3, num_experts=8)
    monkeypatch.setattr(NotebookView, "drawn_here", False)
    bundle = routing._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" not in bundle and bundle["image/png"][:4] == b"\x89PNG"
    routing.view()._message(None, {"kind": "sync", "have": 3}, [])
    assert NotebookView.drawn_here is True and "application/vnd.jupyter.widget-view+json" in routing._repr_mimebundle_()


def test_expert_card_message():
    rng = np.random.default_rng(1)
    routing = Routing(rng.integers(0, 50, 100), rng.integers(0, 8, (100, 4, 2)), np.full((100, 4, 2), 0.5),
                      ["user"] * 50 + ["final"] * 50, num_experts=8)
    view = RoutingView(routing)
    sent = _counting(view)
    view._message(view, {"kind": "card", "layer": 2, "expert": 5}, [])
    view._message(view, {"kind": "card", "layer": 9, "expert": 5}, [])
    good, bad = (m["content"]["card"] for m in sent)
    assert good["layer"] == 2 and good["expert"] == 5 and good["picks"] == int((routing.experts[:, 2] == 5).any(1).sum())
    assert {row["label"] for row in good["labels"]} == {"user", "final"} and len(good["tokens"]) <= 8
    assert "no expert 5 in layer 9" in bad["error"]


def test_large_records_show_the_first_tokens_and_say_so(monkeypatch):
    routing = Routing(np.arange(1500), np.zeros((1500, 2, 2), int), np.full((1500, 2, 2), 0.5), num_experts=4)
    monkeypatch.setattr(RoutingView, "limit", 1000)
    view = RoutingView(routing)
    assert len(view.strings) == 1000 and view.total == 1500 and len(view.experts) == 1000 * 2 * 2 * 2


def test_a_view_of_a_huge_record_decodes_only_the_tokens_it_shows(monkeypatch):
    """The view shows the first `limit` tokens, but it decoded the text and label of every token of the
    record: seconds and 1.6 GB for a 2-million-token corpus, enough to kill the kernel past that."""
    import tracemalloc

    n = 400_000
    routing = Routing.from_arrays(np.arange(n, dtype=np.int32) % 50_000, np.zeros((n, 1, 1), np.int16),
                                  np.zeros((n, 1, 1), np.float32), np.zeros(n, np.uint8), ["text"], num_experts=4)
    monkeypatch.setattr(RoutingView, "limit", 1000)
    RoutingView(routing.select(slice(0, 1000)))  # what any first view allocates once (tokenizer, widget machinery)
    tracemalloc.start()
    try:
        view = RoutingView(routing)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(view.strings) == len(view.labels) == 1000 and view.total == n
    assert peak < 1_000_000, f"{peak:,} bytes to show 1,000 tokens"


@pytest.mark.kernel
def test_a_saved_notebook_keeps_the_picture_of_a_live_view():
    """Displayed while empty (as the chat view does at turn start), updated when the turn ends: the
    saved output holds the PNG and the summary next to the widget."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import numpy as np\nfrom IPython.display import display\nfrom gptoss_lab.routing import Recorder\n"
        "recorder = Recorder(num_experts=8)\ndisplay(recorder.routing.view())\n"
        "recorder.add([200006, 173781, 200005], np.zeros((3, 4, 2), np.int16), np.full((3, 4, 2), 0.5))\n"
        "recorder.finish(['format'] * 3);")]
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    (output,) = nb.cells[0].outputs
    assert output.data["text/plain"].startswith("Routing(3 tokens × 4 layers")
    assert output.data["image/png"] and "application/vnd.jupyter.widget-view+json" in output.data


def test_a_figure_of_a_record_with_no_tokens_says_so():
    """`Routing().figure()` raised IndexError; a shaped empty record warned 'identical low and high xlims'."""
    import warnings

    shaped = Routing([], np.zeros((0, 4, 2), int), np.zeros((0, 4, 2)), [], num_experts=8)
    for routing in (Routing(), shaped):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            figure = routing.figure()
        assert [t.get_text() for t in figure.axes[0].texts] == ["no tokens recorded"]


@pytest.mark.kernel
def test_a_notebook_run_without_a_front_end_keeps_no_copy_of_the_routing_views_code_per_turn():
    """nbclient (papermill, nbconvert --execute) saves the state of every widget the kernel opened in the notebook's
    metadata: each turn's routing view left its code and style and its record there (120 kB a turn), which nothing
    reads (the output holds the picture). A routing view nobody draws empties them, as the chat view does."""
    import json

    import nbformat
    from nbclient import NotebookClient

    cell = ("import dataclasses\nimport numpy as np\nfrom gptoss_lab import ReplayEngine, Session\n"
            "from gptoss_lab.events import TurnStart\nfrom gptoss_lab.routing import Recorder\n"
            "from gptoss_lab.widgets.chat import ChatView\n"
            "recorder, view = Recorder(num_experts=8), ChatView.show()\nhandle = view.handle\n"
            "def routed(event):  # the turn's routing, as a model's turn records it\n"
            "    if isinstance(event, TurnStart):\n"
            "        event = dataclasses.replace(event, routing=recorder.routing)\n"
            "        recorder.add(list(range(200)), np.zeros((200, 4, 2), np.int16), np.full((200, 4, 2), 0.5))\n"
            "        recorder.finish(['final'] * 200)\n"
            "    handle(event)\n"
            "view.handle = routed\n"
            "reply = Session(ReplayEngine('<|channel|>final<|message|>It is **42**.<|return|>'), approval='auto')"
            ".ask('Six times seven?', view=view)")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell) for _ in range(2)])
    NotebookClient(nb, kernel_name="python3", timeout=60).execute()
    assert all(cell.outputs[1]["data"]["text/plain"].startswith("Routing(200 tokens") for cell in nb.cells)
    assert len(json.dumps(nb.metadata.get("widgets", {}))) < 10_000


# Texts a token or label may be, each shown by the view as the kernel's tables write it: edge spaces, controls, line and
# paragraph separators, invisible operators, direction and zero-width characters, a lone surrogate, and plain text
_HOSTILE_TEXTS = [" a", "a  ", " ", "", "a\u200bb\nc", "\x1b[2J\t\r\x7f\x85", "\u2028\u2029", "\u2061\u2064x",
                  "\u202eevil\u2066", "\ufeff\u061c", "\ud800", "é 報告 😀", '"\\']


def test_the_view_writes_tokens_and_labels_as_the_tables_do():
    """The routing view (static/routing_draw.js) wrote a token or label its own way: " a" read as "a", U+2028 and
    U+2061 passed raw, ESC read \\u001b and a newline ↵ where every table, figure and repr wrote ␣a, \\x1b and \\n.
    Now its shownText writes each text as `shown_text` does."""
    from gptoss_lab.widgets import asset
    from gptoss_lab.widgets.sanitize import shown_text

    script = asset("routing_draw.js").read_text() + (
        "\nconst texts = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "\nprocess.stdout.write(JSON.stringify(texts.map((s) => [shownText(s), shownLabel(s, '…'), quoted(s)])));")
    run = subprocess.run(["node", "-e", script], input=json.dumps(_HOSTILE_TEXTS), capture_output=True, text=True,
                         timeout=30, check=True)
    expected = [[shown_text(s), shown_text(s) or "…", f'"{shown_text(s)}"'] for s in _HOSTILE_TEXTS]
    assert json.loads(run.stdout) == expected
