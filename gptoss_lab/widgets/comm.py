"""Kernel comm plumbing: hear one widget's messages while the cell that drives it is still running.

While a `%%gptoss` cell runs, the kernel's main thread is busy, so a widget's Run/Skip/Stop messages wait
in the shell queue behind the cell. `CommPump` reads that queue from the running cell, handles the
messages of one comm at once, and hands every other message back to the kernel's own handler, in order,
to run after the cell (as it would have).

While model code runs (a python call, `tools.containment`), the running cell is the run's watcher, which must run
only the lab's code: then only the widget's own actions are handled, by the widget's own callbacks as they were
before the run, never through the kernel's handlers or comm manager, which the code can replace, nor any other
comm's, whose callbacks may be the code's (one that loops held the turn past its timeout, and Stop with it). The
rest is held and handed back to the kernel once no run goes on (at the next look, or the cell's end), to be handled
after the cell: handed back during a run, its handling was filed among the code's callbacks on the kernel's event
loop, run contained, and lost (a cell run meanwhile never ran).

It publishes no busy/idle status around the messages it handles: the kernel stays busy from the first to
the last token of a turn (JupyterLab, Notebook 7 and `/api/kernels` all read the kernel's state from
those status messages, whatever their parent). The widget's front end therefore sends its actions as
custom messages (`model.send`), which ipywidgets does not hold back waiting for an idle status, unlike
state syncs (`save_changes`). `BusyStatus` covers the other source of a false idle: the control
channel.
"""
from __future__ import annotations

import contextlib
import inspect
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from ..tools.containment import _GUARDS

# Requests that only read the kernel's state, which a front end that (re)connects sends before it can draw a widget (a
# reloaded tab: kernel info, then every widget's state over ipywidgets' control comm, or the open comms and each
# widget's state). Behind the running cell they would wait for the turn's end: a turn waiting on a card left the
# reloaded tab without a kernel and without its other widgets.
_READS = ("kernel_info_request", "comm_info_request")
_CONTROL = "jupyter.widget.control"
_STATE_READS = ("request_state", "request_states")
_log = logging.getLogger(__name__)


class CommPump:
    """Handles one comm's messages that wait in the busy kernel's shell queue.

    ipykernel 7 forwards shell messages from its shell-channel thread to the main thread over an
    inproc socket; ipykernel 6 reads the shell socket on the main thread. Either way the running
    cell can read that socket itself: the comm's own `comm_msg` is dispatched now, and so are the requests that only
    read state (`_READS`, ipywidgets' control comm, any widget's `request_state`); anything else is passed to the
    kernel's own receive callback, which queues it behind the running cell in order. While model code runs, only the
    comm's own custom messages (the widget's actions) are handled now, by the callbacks its widget had when the
    comm was first pumped outside a run (`_callbacks`); the rest is held (`_held`) and handed back after the run.
    """

    def __init__(self, kernel: Any, stream: Any, replies: Any = None) -> None:
        self.kernel, self.stream = kernel, stream
        self._replies = replies if replies is not None else stream  # where the handled requests' replies go
        self._session = kernel.session  # taken now: the kernel's attributes are the code's to replace during a run
        self._callbacks: dict[str, tuple[Any, tuple[Callable[..., Any], ...]]] = {}  # comm id -> widget, callbacks
        self._held: deque[list[Any]] = deque()  # messages read during runs, in order, for the kernel after them
        self._at_cell_end = False  # `_cell_ended` is registered (it hands back what is still held)

    @classmethod
    def find(cls) -> "CommPump | None":
        """The pump for the current kernel, or None outside a (supported) ipykernel."""
        try:
            from IPython import get_ipython

            kernel = get_ipython().kernel  # type: ignore[union-attr]
            thread = getattr(kernel, "shell_channel_thread", None)
            stream = thread.manager._shell_channel_to_main.to_stream if thread else kernel.shell_stream
            if stream is None or stream._recv_callback is None:
                return None
            # ipykernel 7 reads the main shell's requests from one inproc socket and takes its replies on another (a
            # reply sent back on the first was lost: a client asking which comms are open mid-turn got no answer)
            # (an ipykernel 7 without that socket keeps the old way, rather than losing every live button)
            to_shell = getattr(thread.manager, "get_subshell_to_shell_channel_socket", None) if thread else None
            replies = to_shell(None) if to_shell is not None else None
            return cls(kernel, stream, replies)
        except Exception:  # no kernel, or an ipykernel laid out differently: no live buttons
            return None

    def pump(self, comm_id: str) -> int:
        """Handle the waiting messages for `comm_id`; returns how many were handled. Raises ConnectionError once
        the kernel closed its shell socket (Kernel > Shut Down): the turn ends, saying so, as nothing can answer it."""
        import zmq

        contained = bool(_GUARDS.runs)
        if not contained:
            self._outside_runs(comm_id)
        handled = 0
        while True:
            socket = self.stream.socket
            if socket is None or socket.closed:
                raise ConnectionError("the kernel is shutting down")
            try:
                frames = socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return handled
            if self._dispatch(frames, comm_id, contained):
                handled += 1
            elif contained:
                self._held.append(frames)
            else:
                self._hand_back(frames)

    def _outside_runs(self, comm_id: str) -> None:
        """Hand back what the runs held, as it is (a comm's state read among it may run the code's callback); take
        the widget's callbacks for the runs to come, and have what they hold handed back at the cell's end at the
        latest (registered here: registered during a run, IPython's callback would be filed as the code's)."""
        while self._held:
            self._hand_back(self._held.popleft())
        if comm_id not in self._callbacks:
            found = _widget_callbacks(self.kernel, comm_id)
            if found is not None:
                self._callbacks[comm_id] = found
        if not self._at_cell_end:
            try:
                self.kernel.shell.events.register("post_run_cell", self._cell_ended)
                self._at_cell_end = True
            except Exception:  # no IPython shell: nothing is held past the next look
                pass

    def _cell_ended(self, result: Any = None) -> None:
        """At a cell's end (IPython's post_run_cell), hand back what the runs held."""
        if _GUARDS.runs:  # a cell that model code ran, on its own thread: the held messages wait for the run's end
            return
        while self._held:
            self._hand_back(self._held.popleft())
        self._at_cell_end = False
        with contextlib.suppress(ValueError):  # already taken out
            self.kernel.shell.events.unregister("post_run_cell", self._cell_ended)

    def _hand_back(self, frames: list[Any]) -> None:
        """To the kernel's own receive callback, which queues the message behind the running cell."""
        self.stream._run_callback(self.stream._recv_callback, frames)

    def _dispatch(self, frames: list[Any], comm_id: str, contained: bool) -> bool:
        # Peek at header and content without `deserialize`: it records the signature, and the
        # kernel would then reject a message handed back to it as a replay.
        session = self._session
        own = self._callbacks.get(comm_id)
        if contained and own is None:  # the widget's callbacks were never taken outside a run: all waits for the run
            return False
        try:
            idents, parts = session.feed_identities(frames, copy=False)
            kind = session.unpack(parts[1].bytes).get("msg_type")
            content = session.unpack(parts[4].bytes) if kind in ("comm_msg", "comm_open") else {}
            if not (_action(kind, content, comm_id) if contained else _now(kind, content, comm_id)):
                return False
            if kind == "comm_msg" and content.get("comm_id") != comm_id and not (
                    self._packaged_widget(content) or self._control_read(content)):
                return False  # another comm's state read: only a widget of an installed package's answers now
            msg = session.deserialize(parts, content=True, copy=False)
        except Exception:
            return False
        if own is not None and contained:
            widget, callbacks = own
            _call(widget, callbacks, msg)
        else:
            _run_now(self.kernel.shell_handlers[kind](self._replies, idents, msg))
        return True


    def _packaged_widget(self, content: dict[str, Any]) -> bool:
        """Whether the comm a state read is for is a widget whose class comes from an installed package (ipywidgets',
        anywidget's, the lab's), whose state read runs the package's code: a comm the model's code opened, or a
        widget class defined in the notebook, would run code of the notebook's on the running cell (the model's comm
        asked for its state, sent by the code's own client as its run ended, spun there and held the turn, Stop
        unheard). Those wait for the cell's end, as any message does."""
        try:
            comm = self.kernel.comm_manager.get_comm(content.get("comm_id"))
            widget = comm._msg_callback.__self__
            module = type(widget).__module__
        except Exception:
            return False
        handler = getattr(comm._msg_callback, "__func__", None)
        return (handler is getattr(_widget_class(), "_handle_msg", _MISSING) and widget.comm is comm
                and _packaged(module))

    def _control_read(self, content: dict[str, Any]) -> bool:
        """Whether a state read is on ipywidgets' control comm (a reloaded tab asks for every widget's state over it
        at once; held, it timed out and the tab drew none of them) and every widget it reads is an installed
        package's, as `_packaged_widget` asks of one widget's read."""
        widget_class = _widget_class()
        try:
            callback = self.kernel.comm_manager.get_comm(content.get("comm_id"))._msg_callback
            control = widget_class._handle_control_comm_msg.__func__
            if callback.__self__ is not widget_class or callback.__func__ is not control:
                return False
            from ipywidgets.widgets.widget import _instances

            return all(_packaged(type(widget).__module__) for widget in list(_instances.values()))
        except Exception:
            return False


_MISSING = object()


def _packaged(module: str) -> bool:
    """Whether a class's module is an installed package's, not the notebook's (`__main__`) or made on the fly."""
    return module.split(".")[0] not in ("__main__", "builtins") and not module.startswith("<")


def _widget_class() -> Any:
    """ipywidgets' Widget (None without ipywidgets)."""
    try:
        from ipywidgets import Widget
    except ImportError:
        return None
    return Widget


def _widget_callbacks(kernel: Any, comm_id: str) -> tuple[Any, tuple[Callable[..., Any], ...]] | None:
    """The widget on `comm_id` and its custom-message callbacks, or None where the comm is no widget's; taken while
    no model code runs, for the pump to call during runs."""
    try:
        comm = kernel.comm_manager.get_comm(comm_id)
        widget = comm._msg_callback.__self__  # ipywidgets' `Widget._handle_msg`, bound to the widget
        if widget.comm is not comm:
            return None
        return widget, tuple(widget._msg_callbacks.callbacks)
    except Exception:
        return None


def _action(kind: str, content: dict[str, Any], comm_id: str) -> bool:
    """Whether a shell message is handled while model code runs: the comm's own custom message, nothing else."""
    data = content.get("data")
    return (kind == "comm_msg" and content.get("comm_id") == comm_id and isinstance(data, dict)
            and data.get("method") == "custom" and "content" in data)


def _call(widget: Any, callbacks: tuple[Callable[..., Any], ...], msg: dict[str, Any]) -> None:
    """Hand a custom message to the widget's callbacks, as ipywidgets does; a failing one is logged, as the kernel logs
    a failing comm handler, and does not end the turn."""
    for callback in callbacks:
        try:
            callback(widget, msg["content"]["data"]["content"], msg["buffers"])
        except Exception:
            _log.exception("a widget callback failed on a message from its front end")


def _now(kind: str, content: dict[str, Any], comm_id: str) -> bool:
    """Whether a shell message is handled during the turn: the comm's own, and what only reads state."""
    data = content.get("data")
    if kind == "comm_msg":
        return content.get("comm_id") == comm_id or (isinstance(data, dict) and data.get("method") in _STATE_READS)
    if kind == "comm_open":
        return content.get("target_name") == _CONTROL  # the comm a front end asks for every widget's state over
    return kind in _READS


def _run_now(result: Any) -> None:
    """Finish a handler's coroutine (ipykernel 7's are async, and these await nothing) from inside the running cell."""
    if not inspect.iscoroutine(result):
        return
    try:
        result.send(None)
    except StopIteration:
        return
    result.close()  # it waited on something: the cell cannot wait here, and the request stays unanswered


class BusyStatus:
    """Keeps the kernel's reported status busy while the running cell (or comm message) works.

    ipykernel answers every control-channel request with busy then idle, and JupyterLab and
    jupyter_server take that idle as the kernel's state unless the request's type is on their
    "untracked" list. JupyterLab 4.6 sends such a request (`create_subshell_request`, for comms over
    subshells) when the first widget of a kernel opens, so a turn's chat view made the kernel read idle
    mid-turn. While held, each control idle is followed at once by a busy with the running request's
    parent, which is true: the main shell is still busy with it. Released at the end of the turn, and
    in any case when the cell ends. Outside a kernel it does nothing.
    """

    def __init__(self) -> None:
        self._kernel: Any = None

    def hold(self) -> None:
        """Start (or keep) re-asserting busy for the request the main shell is running now."""
        try:
            from IPython import get_ipython

            shell = get_ipython()
            kernel = shell.kernel  # type: ignore[union-attr]
            publish, parent = type(kernel)._publish_status.__get__(kernel), kernel.get_parent("shell")
        except Exception:
            return

        def _publish(status: str, channel: str, parent_: Any = None) -> None:
            publish(status, channel, parent_)
            if channel == "control" and status == "idle":
                publish("busy", "shell", parent)

        if self._kernel is None:
            shell.events.register("post_run_cell", self._cell_ended)
        kernel._publish_status = _publish
        self._kernel = kernel

    def release(self) -> None:
        """Publish statuses as ipykernel does again."""
        kernel, self._kernel = self._kernel, None
        if kernel is not None:
            kernel.__dict__.pop("_publish_status", None)
            kernel.shell.events.unregister("post_run_cell", self._cell_ended)

    def _cell_ended(self, result: Any = None) -> None:
        self.release()


busy_status = BusyStatus()
