"""Kernel comm plumbing: hear one widget's messages while the cell that drives it is still running.

While a `%%gptoss` cell runs, the kernel's main thread is busy, so a widget's Run/Skip/Stop messages wait
in the shell queue behind the cell. `CommPump` reads that queue from the running cell, handles the
messages of one comm at once, and hands every other message back to the kernel's own handler, in order,
to run after the cell (as it would have).

It publishes no busy/idle status around the messages it handles: the kernel stays busy from the first to
the last token of a turn (JupyterLab, Notebook 7 and `/api/kernels` all read the kernel's state from
those status messages, whatever their parent). The widget's front end therefore sends its actions as
custom messages (`model.send`), which ipywidgets does not hold back waiting for an idle status, unlike
state syncs (`save_changes`). `BusyStatus` covers the other source of a false idle: the control
channel.
"""
from __future__ import annotations

import inspect
from typing import Any

# Requests that only read the kernel's state, which a front end that (re)connects sends before it can draw a widget (a
# reloaded tab: kernel info, then every widget's state over ipywidgets' control comm, or the open comms and each
# widget's state). Behind the running cell they would wait for the turn's end: a turn waiting on a card left the
# reloaded tab without a kernel and without its other widgets.
_READS = ("kernel_info_request", "comm_info_request")
_CONTROL = "jupyter.widget.control"
_STATE_READS = ("request_state", "request_states")


class CommPump:
    """Handles one comm's messages that wait in the busy kernel's shell queue.

    ipykernel 7 forwards shell messages from its shell-channel thread to the main thread over an
    inproc socket; ipykernel 6 reads the shell socket on the main thread. Either way the running
    cell can read that socket itself: the comm's own `comm_msg` is dispatched now, and so are the requests that only
    read state (`_READS`, ipywidgets' control comm, any widget's `request_state`); anything else is passed to the
    kernel's own receive callback, which queues it behind the running cell in order.
    """

    def __init__(self, kernel: Any, stream: Any) -> None:
        self.kernel, self.stream = kernel, stream

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
            return cls(kernel, stream)
        except Exception:  # no kernel, or an ipykernel laid out differently: no live buttons
            return None

    def pump(self, comm_id: str) -> int:
        """Handle the waiting messages for `comm_id`; returns how many were handled. Raises ConnectionError once
        the kernel closed its shell socket (Kernel > Shut Down): the turn ends, saying so, as nothing can answer it."""
        import zmq

        handled = 0
        while True:
            socket = self.stream.socket
            if socket is None or socket.closed:
                raise ConnectionError("the kernel is shutting down")
            try:
                frames = socket.recv_multipart(zmq.NOBLOCK, copy=False)
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
            kind = session.unpack(parts[1].bytes).get("msg_type")
            content = session.unpack(parts[4].bytes) if kind in ("comm_msg", "comm_open") else {}
            if not _now(kind, content, comm_id):
                return False
            msg = session.deserialize(parts, content=True, copy=False)
        except Exception:
            return False
        _run_now(self.kernel.shell_handlers[kind](self.stream, idents, msg))
        return True


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
