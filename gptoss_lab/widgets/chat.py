"""ChatView: the streaming chat widget (anywidget) for `%%gptoss` cells.

Python owns the state and renders Markdown/code to sanitised HTML; the front end (static/chat.js) only
applies batches of small operations. Deltas are batched by time (at most `max_syncs_per_s` syncs),
and each sync carries only what is new, so a long turn costs linear time and bandwidth.

While the cell runs, the kernel's main thread is busy, so the widget's Run/Skip/Stop clicks wait in
the shell queue. `_CommPump` reads that queue from the running cell, handles this widget's comm
messages at once, and hands every other message back to the kernel's own handler, in order, to run
after the cell (as it would have).
"""
from __future__ import annotations

import time
from typing import Any

import anywidget
import traitlets

from ..events import Delta, Event, MessageEnd, MessageStart, Notice, ParseError, ToolCall, ToolEnd, ToolStart, \
    ToolUpdate, TurnEnd, TurnStart
from . import asset, esm
from .transcript import Block, Transcript, code_html, markdown_html, stable_markdown_end



class ChatView(anywidget.AnyWidget):
    """The chat view of `%%gptoss` turns: reasoning, tool cards, answer, stats, Run/Skip/Stop."""

    _esm = esm("chat.js")
    _css = asset("chat.css")
    _chunk = traitlets.Dict().tag(sync=True)       # the latest batch of operations {seq, ops}
    _snapshot = traitlets.Dict().tag(sync=True)    # all operations so far, synced at turn end (re-render)
    _action = traitlets.Dict().tag(sync=True)      # front end -> kernel: {kind: run|skip|stop, index, n}
    _rendered = traitlets.Bool(False).tag(sync=True)  # a front end has drawn the view

    max_syncs_per_s: float = 20.0
    pump_interval: float = 0.1        # seconds between looks at the shell queue during generation
    ready_timeout: float = 3.0        # how long approve() waits for a front end to draw the view

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.transcript = Transcript()
        self.syncs = 0                      # state syncs sent, for tests and benchmarks
        self._ops: list[dict[str, Any]] = []    # waiting for the next flush
        self._log: list[dict[str, Any]] = []    # everything sent, for the snapshot
        self._md: dict[int, tuple[str, int]] = {}  # streaming Markdown block -> (unrendered text, rendered units)
        self._last_flush = 0.0
        self._last_pump = 0.0
        self._shown = False
        self._stop = False
        self._decisions: dict[int, bool] = {}
        self._pump: _CommPump | None = None
        self.observe(self._on_action, names="_action")

    @classmethod
    def show(cls, **kwargs: Any) -> "ChatView":
        """Create a view and display it in the current cell's output."""
        from IPython.display import display

        view = cls(**kwargs)
        display(view)
        return view

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        self._shown = True
        bundle = super()._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        if isinstance(data, dict):  # not the default repr, which lists every trait (the whole log)
            data["text/plain"] = "gptoss_lab chat view (the transcript follows when the turn ends)"
        return bundle

    # ------------------------------------------------------------ View protocol

    def handle(self, event: Event) -> None:
        """Fold an event into the transcript, queue its operations, flush at most max_syncs_per_s."""
        i = self.transcript.apply(event)
        urgent = False
        if isinstance(event, TurnStart):
            from IPython.display import display

            if not self._shown:
                display(self)
            if event.routing is not None:  # the expert grid below the chat, growing as tokens come
                display(event.routing.view())
            self._stop = False
            self._decisions.clear()
            self._queue({"op": "turn", "prompt": event.prompt, "effort": event.effort, "model": event.model,
                         "approval": event.approval})
        elif isinstance(event, MessageStart):
            block = self.transcript.items[i]
            self._queue({"op": "block", "i": i, "kind": block.kind, "channel": block.channel,
                         "recipient": block.recipient})
            if block.kind in ("final", "commentary"):
                self._md[i] = ("", 0)
        elif isinstance(event, Delta):
            self._queue_text(i, event.text)
        elif isinstance(event, MessageEnd) and i is not None:
            self._queue(self._end_op(i))
            urgent = True  # a message is complete: show it whole now (one sync per message)
        elif isinstance(event, (ToolStart, ToolUpdate, ToolEnd)):
            self._queue(self._tool_op(i, event.call, isinstance(event, ToolEnd)))
            urgent = event.call.status in ("waiting", "running") or isinstance(event, ToolEnd)
        elif isinstance(event, Notice):
            self._queue({"op": "notice", "text": event.text, "level": event.level})
        elif isinstance(event, ParseError):
            self._queue({"op": "error", "reason": event.reason, "raw": event.raw})
        elif isinstance(event, TurnEnd):
            self._queue({"op": "stats", "line": self.transcript.footer(), "interrupted": event.reply.interrupted})
            self._flush()
            self._snapshot = {"seq": self.syncs, "ops": list(self._log)}
            self._show_fallback()
            return
        self._maybe_flush(urgent)

    def approve(self, call: ToolCall) -> bool | None:
        """Wait for Run or Skip on the call's card; None when no front end can answer (input() then)."""
        self._flush()
        pump = self._comm_pump()
        if pump is None or not self._wait(lambda: self._rendered, self.ready_timeout):
            return None
        index = self._card_of(call)
        self._wait(lambda: index in self._decisions or self._stop, None)
        return self._decisions.pop(index, False)

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

    # ------------------------------------------------------------ operations and flushing

    def _queue(self, op: dict[str, Any]) -> None:
        self._ops.append(op)
        self._log.append(op)

    def _queue_text(self, i: int, text: str) -> None:
        last = self._ops[-1] if self._ops else None
        if last is not None and last["op"] == "text" and last["i"] == i:
            last["t"] += text  # the same dict is in the log: merged there too
        else:
            self._queue({"op": "text", "i": i, "t": text})
        if i in self._md:
            pending, units = self._md[i]
            self._md[i] = (pending + text, units)

    def _render_markdown_so_far(self) -> None:
        """Send the HTML of Markdown blocks that are complete; the front end shows the rest as text."""
        for i, (pending, units) in self._md.items():
            end = stable_markdown_end(pending)
            if end:
                done = pending[:end]
                units += _utf16_len(done)
                self._queue({"op": "md", "i": i, "html": markdown_html(done), "upto": units})
                self._md[i] = (pending[end:], units)

    def _end_op(self, i: int) -> dict[str, Any]:
        block: Block = self.transcript.items[i]  # type: ignore[assignment]
        op: dict[str, Any] = {"op": "end", "i": i, "seconds": round(block.seconds, 2), "tokens": block.tokens}
        if self._md.pop(i, None) is not None:
            op["html"] = markdown_html(block.text)
        elif block.kind == "tool":
            op["code"] = code_html(block.text, "json" if "json" in (block.content_type or "") else "python")
        return op

    def _tool_op(self, i: int, call: ToolCall, ended: bool) -> dict[str, Any]:
        op: dict[str, Any] = {"op": "tool", "i": i, "status": call.status, "recipient": call.recipient}
        if ended:
            op["output"] = call.output
            op["seconds"] = round(call.seconds, 2)
        return op

    def _maybe_flush(self, urgent: bool) -> None:
        if self._ops and (urgent or time.perf_counter() - self._last_flush >= 1.0 / self.max_syncs_per_s):
            self._flush()

    def _flush(self) -> None:
        self._render_markdown_so_far()
        if not self._ops:
            return
        self.syncs += 1
        self._chunk = {"seq": self.syncs, "ops": self._ops}
        self._ops = []
        self._last_flush = time.perf_counter()

    def _show_fallback(self) -> None:
        """Put the finished turn in the output as text/html/markdown too, for readers without the widget."""
        from IPython.display import display

        display(self.transcript._repr_mimebundle_(), raw=True)

    # ------------------------------------------------------------ front end -> kernel

    def _on_action(self, change: dict[str, Any]) -> None:
        action = change["new"] or {}
        if action.get("kind") == "stop":
            self._stop = True
        elif action.get("kind") in ("run", "skip"):
            self._decisions[int(action["index"])] = action["kind"] == "run"

    def _card_of(self, call: ToolCall) -> int:
        for i, item in enumerate(self.transcript.items):
            if isinstance(item, Block) and item.call is call:
                return i
        return -1

    def _comm_pump(self) -> "_CommPump | None":
        if self._pump is None:
            self._pump = _CommPump.find()
        return self._pump

    def _wait(self, done: Any, timeout: float | None) -> bool:
        """Handle this widget's comm messages until done() or timeout; True when done."""
        deadline = None if timeout is None else time.perf_counter() + timeout
        while not done():
            if deadline is not None and time.perf_counter() > deadline:
                return False
            if not self._pump.pump(self.comm.comm_id):  # type: ignore[union-attr]
                time.sleep(0.02)
        return True


def _utf16_len(text: str) -> int:
    """Length in JavaScript string units."""
    return len(text.encode("utf-16-le")) // 2


class _CommPump:
    """Handles one widget's comm messages that wait in the busy kernel's shell queue.

    ipykernel 7 forwards shell messages from its shell-channel thread to the main thread over an
    inproc socket; ipykernel 6 reads the shell socket on the main thread. Either way the running
    cell can read that socket itself: this widget's comm_msg is dispatched now, anything else is
    passed to the kernel's own receive callback, which queues it behind the running cell in order.
    """

    def __init__(self, kernel: Any, stream: Any) -> None:
        self.kernel, self.stream = kernel, stream

    @classmethod
    def find(cls) -> "_CommPump | None":
        """The pump for the current kernel, or None outside a (supported) ipykernel."""
        try:
            from IPython import get_ipython

            kernel = get_ipython().kernel  # type: ignore[union-attr]
            thread = getattr(kernel, "shell_channel_thread", None)
            stream = thread.manager._shell_channel_to_main.to_stream if thread else kernel.shell_stream
            if stream is None or stream._recv_callback is None:
                return None
            return cls(kernel, stream)
        except Exception:  # no kernel, or an ipykernel laid out differently: no live buttons
            return None

    def pump(self, comm_id: str) -> int:
        """Handle the waiting messages for `comm_id`; returns how many were handled."""
        import zmq

        handled = 0
        while True:
            try:
                frames = self.stream.socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return handled
            if self._dispatch(frames, comm_id):
                handled += 1
            else:
                self.stream._run_callback(self.stream._recv_callback, frames)

    def _dispatch(self, frames: list[Any], comm_id: str) -> bool:
        # Peek at header and content without `deserialize`: it records the signature, and the
        # kernel would then reject a message handed back to it as a replay.
        session = self.kernel.session
        try:
            idents, parts = session.feed_identities(frames, copy=False)
            header = session.unpack(parts[1].bytes)
            if header.get("msg_type") != "comm_msg" or session.unpack(parts[4].bytes).get("comm_id") != comm_id:
                return False
            msg = session.deserialize(parts, content=True, copy=False)
        except Exception:
            return False
        # busy/idle around it, as the kernel's own dispatch does: ipywidgets in the browser sends
        # a model's next update only after it saw the kernel go idle on the previous one.
        self.kernel._publish_status("busy", "shell", parent=msg)
        try:
            self.kernel.shell_handlers["comm_msg"](self.stream, idents, msg)
        finally:
            self.kernel._publish_status("idle", "shell", parent=msg)
        return True
