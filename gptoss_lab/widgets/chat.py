"""ChatView: the streaming chat widget (anywidget) for `%%gptoss` cells.

Python owns the state and renders Markdown/code to sanitised HTML; the front end (static/chat.js) only
applies batches of small operations, sanitising again before anything reaches the DOM. Operations are
batched by time (at most `max_syncs_per_s` syncs whatever the token or message rate), and each sync
carries only what is new, so a long turn costs linear time and bandwidth.

The front end answers with custom messages (Run/Skip/Stop, Regenerate, New chat), heard during the turn
through `comm.CommPump`. When the turn ends the view also holds the turn as a static transcript
(`_static`): the front end writes it into the saved notebook in place of the widget, so a reopened
notebook, nbconvert and GitHub show the transcript, never "Error displaying widget".
"""
from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import traitlets

from ..events import Approval, Delta, Event, MessageEnd, MessageStart, Notice, ParseError, ToolCall, ToolEnd, \
    ToolStart, ToolUpdate, TurnEnd, TurnStart
from ..harmony import clean
from . import asset, esm
from .comm import CommPump, busy_status
from .citations import card_html, sources_html, with_chips
from .sanitize import shown_output
from .text import ask_on_stdin
from .transcript import Block, MarkdownBlocks, Transcript, code_html, code_language, markdown_html, stats_line
from .view import WIDGET_MIME, NotebookView

if TYPE_CHECKING:
    from ..events import Reply, Usage

# The views connected to a session (Regenerate and New chat act on it): a turn in one of them tells the others that
# theirs is no longer the session's last answer.
_CONNECTED: "weakref.WeakSet[ChatView]" = weakref.WeakSet()
# The widest figures a turn's stats line is likely to show: the live bar holds room for that line (chat.css), so the
# footer that replaces it at the turn's end is no taller and the cell below stays put.
_ROOM = {"tokens": 8888, "tokens_per_s": 888.8, "ttft": 88.88, "seconds": 888.8}
# The last line of the saved form of a turn under way (a card waits, a tool runs): shown where a tab reloaded or the
# notebook opened again cannot draw the live view back (below), while the kernel may still be waiting on the card.
_UNDER_WAY = ("This turn was still under way when the notebook was saved: its buttons do not work here. If the kernel "
              "is still busy with it, interrupt the kernel (■, or Kernel > Interrupt Kernel) to end the turn; the "
              "conversation keeps what it wrote so far.")
# In that saved form too: the view's model, which a tab reloaded (or the notebook opened again) while the kernel still
# runs the turn restores from the kernel; the front end then draws the live view there again, its buttons working.
LIVE_MIME = "application/vnd.gptoss-lab.live+json"


class ChatView(NotebookView):
    """The chat view of a `%%gptoss` turn: reasoning, tool cards, answer, stats and the chat controls."""

    _esm = esm("chat.js")
    _css = asset("chat.css").read_text() + asset("citations.css").read_text()
    # The latest batch of operations {seq, at, ops}: `at`, like a block's own, is seconds into the turn, so a view that
    # draws the turn late (a snapshot) dates its open blocks by the turn, not by when it got them ("Thinking… N s")
    _chunk = traitlets.Dict().tag(sync=True)
    _snapshot = traitlets.Dict().tag(sync=True)    # all operations of the turn, synced at its end (re-render)
    _static = traitlets.Dict().tag(sync=True)      # the finished turn as a MIME bundle, for the saved notebook
    # With each batch (no sync of its own): the view shows the session's last answer (the one Regenerate can replace)
    _last = traitlets.Bool(False).tag(sync=True)

    max_syncs_per_s: float = 20.0
    noted = False                     # the reasoning disclaimer was shown (once per kernel, not every turn)
    pump_interval: float = 0.1        # seconds between looks at the shell queue during generation
    ready_timeout: float = 3.0        # how long approve(), and a turn's end (drawn_here), wait for the view to be drawn
    # A turn that ends before its view said "ready" (a fast one: a replay, a short cached answer) waits for that once
    # per kernel, at most `ready_timeout` seconds from the view's display, to learn NotebookView.drawn_here: where a
    # front end answers (JupyterLab, Notebook 7, VS Code) the finished turn keeps its live view and controls, and later
    # fast turns keep theirs without waiting; where none does (nbclient, papermill) the output becomes the static
    # transcript, and later turns do not wait either.

    def __init__(self, **kwargs: Any) -> None:
        busy_status.hold()  # before the comm opens: the front end may answer it with a control request
        super().__init__(**kwargs)
        self.transcript = Transcript()
        self.syncs = 0                      # state syncs sent, for tests and benchmarks
        self._ops: list[dict[str, Any]] = []    # waiting for the next flush
        self._log: list[dict[str, Any]] = []    # the turn's operations, for the snapshot
        self._md: dict[int, tuple[MarkdownBlocks, int]] = {}  # streaming Markdown block -> (its text, rendered units)
        self._open: set[int] = set()        # blocks started and not yet ended
        self._last_flush = -1e9
        self._last_pump = 0.0
        self._rate = _Rate()
        self._t0 = time.perf_counter()      # the turn's start
        self._handle: Any = None            # the DisplayHandle of this view's output, when it displayed itself
        self._shown = False                 # in a cell's output (by show(), display() or a cell's last value)
        self._shown_at = 0.0                # ... since then (perf_counter)
        self._ready = False                 # a front end has drawn the view
        self._routing_view: Any = None      # the expert grid shown under this turn (--routing)
        self._saves = False                 # ... and writes the transcript into the saved notebook itself
        self._stop = False
        self._running = False
        self._decisions: dict[int, Approval] = {}
        self._pump: CommPump | None = None
        self._session: Any = None
        self._keep: Callable[["Reply"], None] | None = None
        self._reply: "Reply | None" = None
        self.on_msg(self._on_msg)

    @classmethod
    def show(cls, **kwargs: Any) -> "ChatView":
        """Create a view and display it in the current cell's output."""
        view = cls(**kwargs)
        view._display()
        return view

    def connect(self, session: Any, *, keep: Callable[["Reply"], None] | None = None) -> "ChatView":
        """Give Regenerate and New chat the session they act on: Regenerate asks the same prompt again with
        the options it was asked with (a new sample), `keep` receives each new Reply (`_gptoss` in the magics)."""
        self._session, self._keep = session, keep
        _CONNECTED.add(self)
        return self

    def _display(self) -> None:
        from IPython.display import display

        self._handle = display(self, display_id=True)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        if not self._shown:
            self._shown, self._shown_at = True, time.perf_counter()
        bundle = super()._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        if isinstance(data, dict):  # not the default repr, which lists every trait (the whole log)
            data["text/plain"] = "gptoss_lab chat view"
        return bundle

    # ------------------------------------------------------------ View protocol

    def handle(self, event: Event) -> None:
        """Fold an event into the transcript, queue its operations, flush at most max_syncs_per_s."""
        i = self.transcript.apply(event)
        blocking = False  # the kernel is about to wait (a tool run, the engine after a tool): show all first
        if isinstance(event, TurnStart):
            self._start(event)
        elif isinstance(event, MessageStart):
            block = self.transcript.items[i]
            op = {"op": "block", "i": i, "kind": block.kind, "channel": block.channel, "recipient": block.recipient,
                  "at": self._into_turn()}
            if block.kind == "reasoning" and not ChatView.noted:
                op["note"] = ChatView.noted = True
            self._queue(op)
            self._open.add(i)
            if block.kind in ("final", "commentary"):
                self._md[i] = (MarkdownBlocks(), 0)
        elif isinstance(event, Delta):
            self._rate.token()
            self._queue_text(i, event.text)
        elif isinstance(event, MessageEnd) and i is not None:
            self._queue(self._end_op(i))
        elif isinstance(event, (ToolStart, ToolUpdate, ToolEnd)):
            self._rate.pause()
            self._queue(self._tool_op(i, event.call, isinstance(event, ToolEnd)))
            blocking = event.call.status == "running" or isinstance(event, ToolEnd)
        elif isinstance(event, Notice):
            self._queue({"op": "notice", "text": event.text, "level": event.level})
        elif isinstance(event, ParseError):
            self._queue({"op": "error", "reason": event.reason, "raw": event.raw})
        elif isinstance(event, TurnEnd):
            self._end(event.reply)
            return
        self._maybe_flush(blocking)

    def approve(self, call: ToolCall) -> Approval | bool | None:
        """Wait for Run or Skip on the call's card; where no front end draws the widget, ask in the
        notebook's input box instead (None when there is no stdin either). The front end's answers are read only while
        a card waits, so one in the table before is none of the user's: the code of a call they ran put "Run, always"
        there for the next cards, which then ran unasked."""
        self._decisions.clear()
        self._maybe_flush(True)
        pump = self._comm_pump()
        if pump is None or not self._wait(lambda: self._ready, self.ready_timeout):
            return ask_on_stdin(call, show_input=True)
        index = self._card_of(call)
        self._wait(lambda: index in self._decisions or self._stop, None)
        return self._decisions.pop(index, Approval(False, by="you"))

    @property
    def stop_requested(self) -> bool:
        """True once Stop was clicked; looks at the shell queue at most every `pump_interval` seconds."""
        now = time.perf_counter()
        if now - self._last_pump >= self.pump_interval:
            self._last_pump = now
            pump = self._comm_pump()
            if pump is not None:
                pump.pump(self.comm.comm_id)
            self._maybe_flush(False)
        return self._stop

    # ------------------------------------------------------------ turn start and end

    def _start(self, event: TurnStart) -> None:
        if not self._shown:
            self._display()
        if event.routing is not None:  # the expert grid below the chat, growing as tokens come (Regenerate: in place)
            self._routing_view = event.routing.view().show(replacing=self._routing_view)
        self._stop, self._running = False, True
        self._others_not_last()  # this turn is the session's last from now on
        busy_status.hold()
        self._decisions.clear()
        self._log, self._md, self._open = [], {}, set()
        self._rate, self._t0 = _Rate(), time.perf_counter()
        self._queue({"op": "turn", "prompt": event.prompt, "effort": event.effort, "model": event.model,
                     "approval": event.approval, "context_window": event.context_window,
                     "room": stats_line({**_ROOM, "effort": event.effort, "model": event.model}),
                     "controls": self._session is not None})

    def _end(self, reply: "Reply") -> None:
        """Close what the turn left open (Stop mid-message), send the stats and the saved form."""
        self._running, self._reply = False, reply
        busy_status.release()
        for i in sorted(self._open):
            self._queue(self._end_op(i))
        finals = [(i, item) for i, item in enumerate(self.transcript.items)
                  if isinstance(item, Block) and item.kind == "final"]
        for i, item in finals if reply.citations else []:  # chips, and the Sources under the last answer (citations.py)
            op = {"op": "end", "i": i, "seconds": round(item.seconds, 2), "tokens": item.tokens,
                  "html": with_chips(markdown_html(item.text), reply.citations)}
            if i == finals[-1][0]:
                op["sources"] = sources_html(reply.citations)
            self._queue(op)
        self._rate.finish(reply.usage)  # the live bar's last figures are the footer's, not the view's timing
        self._queue_rate()
        self._queue({"op": "stats", "line": self.transcript.footer(context=False),  # the meter shows the context
                     "interrupted": reply.interrupted, "context_tokens": reply.usage.context_tokens,
                     "controls": self._session is not None})
        self._maybe_flush(True, final=True)
        if not self._saves:
            self._pump_once()  # a front end that drew the view meanwhile says whether it saves the transcript
        if self._saves or self._handle is None:
            return
        drawn = self._drawn()
        if self._saves:  # its front end said so while the turn waited for it
            return
        # No front end writes the transcript into the saved notebook (nbclient, VS Code ...): put it in this output's
        # own bundle, where readers without the widget find it. Where nobody draws the view (nbclient, papermill) the
        # widget goes: nbconvert would show its empty place, not the turn.
        widget = {WIDGET_MIME: {"version_major": 2, "version_minor": 1, "model_id": self.model_id}}
        self._handle.update({**(widget if drawn else {}), **self._static}, raw=True)
        if not drawn:
            self._undrawn("_chunk", "_snapshot", "_static")
        if self._routing_view is not None and not drawn:
            self._routing_view.finish_output(drawn=False)

    def _drawn(self) -> bool:
        """Whether a front end draws this view, now or once it gets to it (see `drawn_here`)."""
        if self._ready or NotebookView.drawn_here:
            return True
        if NotebookView.drawn_here is None and self._comm_pump() is not None and self.comm is not None:
            self._wait(lambda: self._ready, self._shown_at + self.ready_timeout - time.perf_counter())
            NotebookView.drawn_here = NotebookView.drawn_here or self._ready
        return self._ready

    def _after_turn(self, text: str, level: str = "info") -> None:
        """A note under a finished turn (Regenerate or New chat), kept in the snapshot and the saved form."""
        self.transcript.items.append(Notice(text, level))
        self._queue({"op": "notice", "text": text, "level": level})
        self._maybe_flush(True, final=True)

    # ------------------------------------------------------------ operations and flushing

    def _queue(self, op: dict[str, Any]) -> None:
        # each lone surrogate written out (a server's "\ud800" in a name, a notice, an answer), as the static forms
        # show it: the kernel cannot encode one, and no state update holding one would ever reach the front end
        op = {key: clean(value) if isinstance(value, str) else value for key, value in op.items()}
        self._ops.append(op)
        self._log.append(op)

    def _queue_text(self, i: int, text: str) -> None:
        text = clean(text)  # as _queue writes it: the Markdown rendered so far counts the units the front end has
        last = self._ops[-1] if self._ops else None
        if last is not None and last["op"] == "text" and last["i"] == i:
            last["t"] += text  # the same dict is in the log: merged there too
        else:
            self._queue({"op": "text", "i": i, "t": text})
        if i in self._md:
            self._md[i][0].add(text)

    def _render_markdown_so_far(self) -> None:
        """Send the HTML of Markdown blocks that are complete; the front end shows the rest as text."""
        for i, (blocks, units) in self._md.items():
            done = blocks.take()
            if done:
                units += _utf16_len(done)
                self._queue({"op": "md", "i": i, "html": markdown_html(done), "upto": units})
                self._md[i] = (blocks, units)

    def _end_op(self, i: int) -> dict[str, Any]:
        self._open.discard(i)
        block: Block = self.transcript.items[i]  # type: ignore[assignment]
        op: dict[str, Any] = {"op": "end", "i": i, "seconds": round(block.seconds, 2), "tokens": block.tokens}
        if self._md.pop(i, None) is not None:
            op["html"] = markdown_html(block.text)
        elif block.kind == "tool":
            op["code"] = code_html(block.text, code_language(block))
        return op

    def _tool_op(self, i: int, call: ToolCall, ended: bool) -> dict[str, Any]:
        op: dict[str, Any] = {"op": "tool", "i": i, "status": call.status, "recipient": call.recipient,
                              "question": call.question, "progress": call.progress if call.status == "running" else ""}
        block = self.transcript.items[i]
        if isinstance(block, Block) and call.input != block.text:  # edited before Run: show what runs
            op["code"] = code_html(call.input, code_language(block))
            op["edited"] = True
        if ended:
            op["output"] = shown_output(call.shown)
            op["seconds"] = round(call.seconds, 2)
            card = card_html(call)  # a browser call: its results or page window (citations.py)
            if card:
                op["card"] = card
        return op

    def _queue_rate(self) -> None:
        op = self._rate.op()
        if op is not None:
            self._queue(op)

    def _maybe_flush(self, blocking: bool, *, final: bool = False) -> None:
        """Flush once 1/max_syncs_per_s has passed since the last sync. Before the kernel blocks (approval,
        a tool run, the turn's end) wait out the rest of the interval and flush, so the bound holds at
        any event rate and nothing waits unseen; the saved form is brought up to date then too."""
        if not self._ops and not final and not blocking:
            return
        wait = self._last_flush + 1.0 / self.max_syncs_per_s - time.perf_counter()
        if wait > 0:
            if not blocking:
                return
            time.sleep(wait)
        self._flush(final, keep=blocking)

    def _flush(self, final: bool = False, *, keep: bool = False) -> None:
        """Send what changed in one comm message; at the turn's end (`final`) or where the kernel blocks (`keep`: a
        card waits, a tool runs, while autosave may write the notebook) the transcript so far as the saved form."""
        self._render_markdown_so_far()
        self._queue_rate()
        if not self._ops and not final and not keep:
            return
        self.syncs += 1
        with self.hold_sync():  # one comm message, whatever changed
            self._last = self._shows_last()
            if self._ops:
                self._chunk = {"seq": self.syncs, "at": self._into_turn(), "ops": self._ops}
            if final:
                self._snapshot = self._all_ops()
            if final:
                self._static = self.transcript._repr_mimebundle_()
            elif keep:
                self._static = {**_under_way(self.transcript), LIVE_MIME: {"model_id": self.model_id}}
        self._ops = []
        self._last_flush = time.perf_counter()

    # ------------------------------------------------------------ front end -> kernel

    def _on_msg(self, widget: Any, content: dict[str, Any], buffers: list[bytes]) -> None:
        kind = content.get("kind")
        if kind == "ready":
            self._ready = NotebookView.drawn_here = True
            self._saves = self._saves or bool(content.get("saves"))
            if content.get("behind"):
                self._resend()
        elif kind == "stop":
            self._stop = True
        elif kind in ("run", "skip") and isinstance(content.get("index"), int):
            code = content.get("code")
            self._decisions[content["index"]] = Approval(kind == "run", code if isinstance(code, str) else None,
                                                         bool(content.get("always")) and kind == "run", by="you")
        elif kind == "regenerate":
            self._regenerate()
        elif kind == "new_chat":
            self._new_chat()

    def _resend(self) -> None:
        """The turn so far as a snapshot, for a view drawn mid-turn that missed its first batches (a new view of the
        notebook): the views that have them all ignore it."""
        self._flush()
        self._snapshot = self._all_ops()

    def _all_ops(self) -> dict[str, Any]:
        """The turn so far as one batch (the snapshot), for a view that draws it from its start."""
        return {"seq": self.syncs, "at": self._into_turn(), "ops": list(self._log)}

    def _into_turn(self) -> float:
        """Seconds since the turn started."""
        return round(time.perf_counter() - self._t0, 3)

    def _regenerate(self) -> None:
        """Ask this view's prompt again (a new sample) in place of its answer; the last answer only (the front end
        disables Regenerate on the others: a message that asks anyway is refused)."""
        session = self._session
        if session is None or self._running:
            return
        if not session.replies or session.replies[-1] is not self._reply:
            why = "a later turn replaced it as the last one" if session.replies else "the conversation was reset"
            self._after_turn(f"Regenerate refused: only the conversation's last answer can be regenerated ({why}).",
                             "warning")
            return
        shown, log, before, grid = self.transcript, self._log, self._reply, self._routing_view
        self.transcript = Transcript()  # the new turn draws into its own, so a failed one can give the old back
        self._stop = False  # a Stop of the old turn is not one of the new (a refused one says why, not "stopped")
        try:
            reply = session.regenerate(view=self)
        except Exception as err:  # a refused turn (settings, context) or an engine failure: one line
            self.transcript, self._reply = shown, before
            if self._log is not log:  # the new turn had started (and ended, failed) in its place: draw the old again
                self._log = []
                for op in log:
                    self._queue(op)
            if grid is not None and self._routing_view is not grid:  # the old grid in its output again
                self._routing_view = grid.show(replacing=self._routing_view)
            if self._stop:  # the user's Stop before the new answer had any text
                self._after_turn(f"Regenerate {err}.")
            else:
                self._after_turn(f"Regenerate failed: {err}", "error")
            return
        if self._keep is not None:
            self._keep(reply)

    def _new_chat(self) -> None:
        if self._session is None or self._running:
            return
        self._session.reset()
        self._others_not_last()
        self._after_turn("New conversation: the next question starts fresh (earlier turns are forgotten).")

    def _shows_last(self) -> bool:
        """Whether this view's finished turn is its session's last answer (the one Regenerate replaces)."""
        replies = self._session.replies if self._session is not None else []
        return not self._running and bool(replies) and replies[-1] is self._reply

    def _others_not_last(self) -> None:
        """No other view of this view's session shows its last answer (a turn starts here, or New chat)."""
        for view in list(_CONNECTED) if self._session is not None else []:
            if view is not self and view._session is self._session:
                view._last = False

    def _card_of(self, call: ToolCall) -> int:
        for i, item in enumerate(self.transcript.items):
            if isinstance(item, Block) and item.call is call:
                return i
        return -1

    def _comm_pump(self) -> CommPump | None:
        if self._pump is None:
            self._pump = CommPump.find()
        return self._pump

    def _pump_once(self) -> None:
        pump = self._comm_pump()
        if pump is not None and self.comm is not None:
            pump.pump(self.comm.comm_id)

    def _wait(self, done: Callable[[], bool], timeout: float | None) -> bool:
        """Handle this widget's comm messages until done() or timeout; True when done."""
        deadline = None if timeout is None else time.perf_counter() + timeout
        while not done():
            if deadline is not None and time.perf_counter() > deadline:
                return False
            if not self._pump.pump(self.comm.comm_id):  # type: ignore[union-attr]
                time.sleep(0.02)
        return True


class _Rate:
    """Live tokens and tokens/s of a turn: tokens over generation time, as the footer counts them (`Usage`).

    Generation runs from the turn's start, or a tool's end, to the latest token (the engine's prefill counted, the
    tool runs and approvals not); timing only the gaps between tokens made a burst (a replay, a cached answer, a
    server's batched chunk) read as tens of thousands of tokens per second. At the turn's end the reply's own figures
    replace the estimate."""

    def __init__(self) -> None:
        self.tokens, self.seconds = 0, 0.0          # tokens streamed; generation time before the current stretch
        self._start = time.perf_counter()           # the current stretch of generation began
        self._last: float | None = None             # its latest token
        self._final: float | None = None            # the reply's tokens/s, once the turn ended
        self._sent: dict[str, Any] = self._op()     # nothing before the first token

    def token(self) -> None:
        self._last = time.perf_counter()
        self.tokens += 1

    def pause(self) -> None:
        """A tool call: generation stopped at the latest token and resumes after the tool."""
        if self._last is not None:
            self.seconds += self._last - self._start
        self._start, self._last = time.perf_counter(), None

    def finish(self, usage: "Usage") -> None:
        """The turn's own count and rate (generated tokens over time in the engine), which the footer shows."""
        self.tokens, self._final = usage.completion_tokens, usage.tokens_per_s

    @property
    def per_s(self) -> float:
        if self._final is not None:
            return self._final
        seconds = self.seconds + (self._last - self._start if self._last is not None else 0.0)
        return self.tokens / seconds if seconds > 0 else 0.0

    def op(self) -> dict[str, Any] | None:
        """The rate operation, once per new figure (each flush reports it at most once)."""
        op = self._op()
        if op == self._sent:
            return None
        self._sent = op
        return op

    def _op(self) -> dict[str, Any]:
        return {"op": "rate", "tokens": self.tokens, "tps": round(self.per_s, 1)}


def _utf16_len(text: str) -> int:
    """Length in JavaScript string units."""
    return len(text.encode("utf-16-le")) // 2


def _under_way(transcript: Transcript) -> dict[str, str]:
    """The saved form of a turn under way: its transcript so far, then `_UNDER_WAY`."""
    transcript.items.append(Notice(_UNDER_WAY, "info"))
    try:
        return transcript._repr_mimebundle_()
    finally:
        transcript.items.pop()
