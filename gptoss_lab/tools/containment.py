"""Running code the user did not write in this kernel, so that it can neither end the kernel nor hold it.

`contain(fn, timeout=...)` runs `fn` (the model's code) on a worker thread while the calling thread
watches, so the caller has its answer at the timeout whatever the code does:

- At the timeout the worker gets `ToolTimeout`, a BaseException raised into it asynchronously (no
  signal is involved, so the code cannot ignore, cancel or re-time it), and again and again until it
  stops. The first one can be handled (`finally` blocks run); from POLITE seconds on, every line the
  code runs raises it again, so `except BaseException: pass` in a loop does not keep it alive.
  Raised by the tracer, the stop turns tracing off (Python's rule), so it traces again as the handler that caught
  it lets it go (nested swallowing loops around a `time.sleep` caught every stop at the same place). Threads the
  code started and child processes that outlive its call are stopped (killed) at the call's timeout too
  (`_Guards.stop_at`, `_Guards.end_at`; a grandchild whose parent ended first, adopted by init, is out of reach), and
  so are the threads of a user's function (`bound_threads`).
  Whether the code still runs is read from its thread's stack (the lab's frames told apart by their
  code objects, not file names), never from what the code can set, and the lab never asks the code's
  thread objects anything (a Thread subclass can make any look-up run its code).
- While it runs, the calls that end or freeze the process from Python (IPython's `exit`/`quit`,
  `os._exit`, `os.abort`, `os.exec*`, `os.kill`/`killpg` of this process, `signal.raise_signal` and
  `pthread_kill`, a timer whose signal would kill the process, `faulthandler`'s crash helpers and its
  exiting timer, lowering the process's resource limits or the recursion limit the kernel's own code
  runs under, `_thread.interrupt_main`, `sys.setswitchinterval`), and those that leave it deaf
  or crash it later (closing or replacing, with `os.close`, `os.closerange`, `os.dup2` or `open(fd)`, a
  file descriptor the process had before the run: its sockets, pipes and output; raising the recursion
  limit past what a thread's stack holds, where recursion through C code would overflow it, or shrinking the
  stacks of later threads with `threading.stack_size`) are
  refused in the code's threads (`ExitRefused`, a SystemExit: the code stops there, as it would have);
  the kernel's and the user's threads still get the real functions. `input()`, `getpass()` and the
  kernel's own `raw_input`/`getpass`/`_input_request` raise EOFError there: the code cannot put a
  prompt in front of the user. What it displays in the notebook is its text and images only, never live HTML
  or script, and it sends nothing else over Jupyter's channels but text: no widget or comm message, no `clear_output`,
  no request of a client of its own to the kernel (the kernel's `Session.send` stands in: see `displays`). Its `os.write` to descriptors 1 and 2 goes
  into its bounded output, as its prints do (`sys.stdout` hides the kernel's stream, which the code could close;
  what a thread it left running writes there after the call goes into the latest call's output, not into the user's
  later cells), and so does what its subprocesses write there: while runs go on, 1 and 2 are a pipe into the output (`_Descriptors`).
  The code runs off the main thread, so it cannot change signal handlers at all (Python allows that
  only on the main thread); the user's interrupt (SIGINT) still reaches the watcher and stops it.
- After each run (and before the lab's own clean-up, which runs their code) the attributes of `builtins`,
  `sys`, `threading`, `_thread`, `os` and `signal` and the `sys.modules` entries that were there before it
  are put back as they were (`sys.modules.clear()`, `builtins.print = None`, `sys.displayhook = None` would
  leave later cells failing; a replaced `threading.get_ident` would misfile every later thread); what the
  code added stays, as in a cell. So are threading's classes (`threading.Thread.start = None` left every later
  run and every thread a cell starts failing), with what the code added to them taken out. So are the entries
  of the hook lists the interpreter calls by itself, `sys.meta_path`, `sys.path_hooks`, `sys.path` and
  `gc.callbacks` (`sys.meta_path.clear()` would fail every later import), and the finders in `sys.path_importer_cache`; what the code added to them stays
  after them (folders it put first in `sys.path` are moved after the kernel's, where they shadowed the user's modules;
  a finder it put first stays first) (a library it imported, six say, needs its finder; so its own finder's `find_spec` runs at the user's next
  import, on the user's thread, unguarded), but for its gc callbacks, which go with the run
  (whichever thread collects next runs them: a looping one hung the user's next cell; during the run, one that
  the watcher's own collection runs can still hold it). So are the process's working folder and environment variables (`os.chdir`,
  `os.environ`): the call's output names them, and `sys.path`, where they were put back. What it adds to what IPython calls on the kernel's thread at
  later cells (event callbacks, input and AST transformers, display printers) stays but runs as the code ran, watched
  and under the call's timeout, and is taken out when it does not end (`_Later`); what it took out of them or
  replaced (a printer, a formatter, a list, the event manager, the handler of errors in cells, a method of the shell
  or the kernel or of their classes) is put back (`_ShellHooks`). The callbacks it puts on the kernel's event loop
  (run on the kernel's thread between cells, where interrupts are ignored) run contained too. `sys.addaudithook`,
  whose hook could never be taken out and would see every later cell, is refused; what the code registers with
  `atexit` is taken out again once its threads have ended. An exception the code raises into the kernel's thread
  (ctypes' `PyThreadState_SetAsyncExc`), once or again and again, ends the call and stops the code
  (`Hijacked`). Its threads are told apart by the first frame of their stacks, not only by threading's
  table, which it can take them out of; `_thread.start_new_thread` starts a threading thread for it.
- The watching thread runs only the lab's code while a run goes on, so whatever else runs there is the code's and
  refused as above: a key's `__eq__` a look-up compares, or a finalizer the garbage collector runs there (its failure
  is one line of the lab's in the output, never Python's report, which asks the error for its str). What the code
  left where the clean-up puts names back (`builtins.print = Evil()`) is kept, never freed (`_TAKEN_OUT`): freed
  there, a loop in its __del__ held the kernel, and freed as the interpreter ends, the process's exit. Keys that are not plain text (not plain ints, in threading's table) put
  by the code in the modules' tables above, `sys.modules`, `sys.path_importer_cache`, threading's table or the
  namespace are taken out without a comparison (`_plain_keys`): hashed as a name, a look-up of it ran their code.
- The locks the kernel's own work takes (threading's two, for every thread started or ended; logging's, for every
  new logger; the import lock, for every first import) are taken back after each run where the code took one and
  kept it (`_free_kernel_locks`; the worker gives back the import lock itself, as only its owner can): the watcher
  waited for threading's for good, and a later cell for the import lock. The lab takes its own such locks with
  `Seized`, never waiting on the code for more than HOLD seconds.
- Code stuck in a native call cannot be stopped from Python until the call returns: the caller gets
  its answer at the timeout anyway, the user is told on stderr, and the worker keeps being stopped in
  the background (every REPEAT seconds, so it may run a moment after the call returns).

Not preventable from inside the process: crashing the interpreter (ctypes, a C extension, running out
of memory), a C loop that never releases the GIL (`sum(range(10**12))` freezes the kernel exactly as
it would in a cell), or another process ending this one (`subprocess.run(["kill", ...])`). Nor are
the other ways to the same descriptors and streams (`socket.socket(fileno=...)`, `io.FileIO(fd)`, an
`os.dup` of one, the kernel's stream objects found through `gc`, a child opening `/proc/<pid>/fd/1`).
Approval is the defence against those. Nor is another lock it keeps (a library's, one of the kernel's objects', the
import lock taken in a thread of its own). Nor is what the code leaves behind and other code runs later: a
function of the lab's or of a library it uses that the code replaced (the lab's own code runs it), an
object of its in the namespace (or a cyclic one the garbage collector finalizes on another kernel thread) runs
as the user's code when used or freed; a key of the code's put in a table while the watcher puts a name back
in the same moment is compared there (it can then hold the watcher, not end the kernel). Nor is code that goes around
the stand-ins to what they stand in for: the originals are in their `__closure__`, in this module (`_GUARDS.made`) and
behind `gc.get_referents`, and the kernel's sockets and message key are reachable (`iopub_socket.send_multipart` of a
message it signs sent the page live HTML), as are the lab's checks (`session.from_model_code`) and this module's timings (`GRACE`, `POLITE`, `REPEAT`), which it can
replace. Nor is breaking the kernel's own objects:
`kernel.io_loop.stop()` ended the kernel, and `kernel.session.key = b'wrong'`, `kernel.shell_stream.close()` and
`kernel.iopub_thread.stop()` left it deaf.
"""
from __future__ import annotations

import _imp
import _thread
import abc
import asyncio
import atexit
import builtins
import codecs
import collections
import contextlib
import contextvars
import ctypes
import dis
import faulthandler
import functools
import gc
import getpass
import heapq
import io
import math
import operator
import os
import select
import selectors
import signal
import sys
import sysconfig
import threading
import time
import types
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import CodeType, FunctionType
from typing import Any, Literal, TextIO

from ..events import counted
from .displays import INERT, inert_message, refusal, shown_text, text_of, widget_refusal

try:
    import resource
except ImportError:  # Windows
    resource = None  # type: ignore[assignment]
_getrlimit = getattr(resource, "getrlimit", None)

# This module's functions look builtins up in a copy taken now (a function keeps the `__builtins__` of its
# globals as they were when it was made): code that deletes or replaces `builtins.id`, `len`, `dict` ... while it
# runs would otherwise make the watcher fail at every look, and hold the kernel past the timeout.
__builtins__ = dict(vars(builtins))
_HERE = sys._getframe().f_code.co_filename
# frames a timeout that was swallowed is not raised on each line of (`_untraced`): the lab's own and Python's
# standard library's (they let it through, and their clean-up, a context manager's exit, puts back what they changed)
_LAB = os.path.dirname(os.path.dirname(_HERE)) + os.sep
_STDLIB = ("<frozen ", *{os.path.join(sysconfig.get_paths()[name], "") for name in ("stdlib", "platstdlib")})
_INSTALLED = tuple({os.path.join(sysconfig.get_paths()[name], "") for name in ("purelib", "platlib")})
POLL = 0.02       # seconds between looks at a running worker
GRACE = 0.5       # seconds a stopped worker has to unwind before it counts as stuck
POLITE = 0.1      # seconds during which a stop can be handled (cleanup in `finally` runs) before it is forced
SETTLE = 0.25     # seconds at most that a run waits for the kernel's other threads to go idle before the code starts
_SETTLE_LOOK = 0.002  # seconds between two looks at the other threads' stacks (`_settle`)
STOP_POLL = 0.1   # seconds between asks of the view's Stop while a trusted function runs
REPEAT = 0.25     # seconds between stops of a worker that keeps running, and between deadline re-raises
HOLD = 1.0        # seconds a lock the kernel needs may stay held before it is taken from its holder (see `_seize`)


class _Ident(ctypes._SimpleCData):
    """A thread's ident as C's unsigned long. The lab's own types and function object: ctypes.c_ulong and
    ctypes.py_object the code can replace (the watcher would run its function), and ctypes.pythonapi's function
    object is the code's too (`.argtypes = [c_long, py_object]`, a common snippet, failed every call of the lab's)."""

    _type_ = "L"


class _Object(ctypes._SimpleCData):
    """A Python object, passed as such (the lab's own ctypes.py_object: see `_Ident`)."""

    _type_ = "O"


_set_async_exc = ctypes.PyDLL(None, handle=ctypes.pythonapi._handle).PyThreadState_SetAsyncExc
# Taken now, so that code which replaces time.monotonic or sys._current_frames neither re-times its own
# timeout nor gets the watcher (the kernel's main thread) to run it, and code which replaces
# threading.get_ident, sys.settrace, os.getpid, signal.getsignal ... does not blind the guards and stops.
_monotonic, _sleep, _current_frames = time.monotonic, time.sleep, sys._current_frames
_get_ident, _settrace, _gettrace, _getframe = _thread.get_ident, sys.settrace, sys.gettrace, sys._getframe
_allocate_lock = _thread.allocate_lock
_GC_CALLBACKS = gc.callbacks  # the interpreter's own list (rebinding `gc.callbacks` changes nothing it calls)
_getpid, _getpgrp, _getsignal = os.getpid, getattr(os, "getpgrp", os.getpid), signal.getsignal  # no groups on Windows
_listdir, _fstat, _modules = os.listdir, os.fstat, sys.modules
_gc_threshold, _gc_set_threshold, _gc_isenabled, _gc_enable, _gc_disable = (
    gc.get_threshold, gc.set_threshold, gc.isenabled, gc.enable, gc.disable)
_gc_frozen, _gc_unfreeze = gc.get_freeze_count, gc.unfreeze
_getcwd, _chdir, _putenv, _unsetenv = os.getcwd, os.chdir, os.putenv, os.unsetenv
_environ, _path = os.environ, sys.path
_environ_data = vars(os.environ)["_data"]  # the process's environment as os.environ keeps it (bytes on POSIX)
# (from Python 3.10.7)
_int_digits = getattr(sys, "get_int_max_str_digits", lambda: 0)
_set_int_digits = getattr(sys, "set_int_max_str_digits", lambda digits: None)
_pipe, _dup, _dup2, _close, _read, _select = os.pipe, os.dup, os.dup2, os.close, os.read, select.select
_start_thread, _unregister = _thread.start_new_thread, atexit.unregister
# whose attributes are put back after each run: the modules the kernel itself runs on
_KEPT = tuple((module, module.__dict__) for module in (builtins, sys, threading, _thread, os, signal))
# ident -> Thread, and the threads being started. The lab reads these tables and compares the thread objects
# in them by identity only: a Thread subclass of the model's can make any look-up on its objects (an
# attribute, __class__ for isinstance, __hash__, __eq__) run its code on whichever thread looks.
_active, _limbo = threading._active, threading._limbo  # type: ignore[attr-defined]
_tables_lock = threading._active_limbo_lock  # type: ignore[attr-defined]  # (threading's may be emptied by the code)
_LOCK_TYPES = (type(_allocate_lock()), _thread.RLock)


def _is_lock(value: Any) -> bool:
    """Whether `value` is a C lock or RLock (by identity of its type: no code of another object's runs)."""
    return any(type(value) is kind for kind in _LOCK_TYPES)


# the locks every later thread start (and end) takes: the code's taking one and keeping it froze the kernel
_THREADING_LOCKS = tuple(lock for lock in (_tables_lock, vars(threading).get("_shutdown_locks_lock")) if _is_lock(lock))
_release_import_lock, _import_lock_held, _NotHeld = _imp.release_lock, _imp.lock_held, RuntimeError
_MAIN_THREAD = threading.main_thread()  # the kernel's; a replaced threading.get_ident could take it out of `_active`
_MAIN = _MAIN_THREAD.ident
_stopping: set[int] = set()   # threads being stopped by force: their stop exceptions trace every line
# the code's keys taken out of the kernel's tables and the values it put where the clean-up puts names back: never freed
# (`builtins.print = Evil()`: freed by the put-back on the watcher, a loop in its __del__ held the kernel for good;
# freed as the interpreter ends, it held the process's exit). The list is given a reference nothing takes back.
_TAKEN_OUT: list[Any] = []
ctypes.PyDLL(None, handle=ctypes.pythonapi._handle).Py_IncRef(_Object(_TAKEN_OUT))


def _seize(lock: Any) -> None:
    """Acquire `lock`, one the kernel or the lab needs that the code can reach and keep (`threading._active_limbo_lock
    .acquire()` left the watcher waiting for it for good, no Reply, interrupts held): its clean holders keep it for
    microseconds, so held past HOLD seconds it is the code's and is taken from its holder (an RLock's owner is not
    asked). Waiting code threads wake at least every HOLD seconds, where a stop request reaches them."""
    while not lock.acquire(timeout=HOLD):
        try:
            if type(lock) is _thread.RLock:
                lock._release_save()
            else:
                lock.release()
        except RuntimeError:  # released meanwhile
            pass


class Seized:
    """`with Seized(lock):` as `with lock:`, for a lock the code can keep (see `_seize`). Not contextlib's: its
    exits look up builtins, which the code may have emptied (the worker's end takes threading's table lock)."""

    __slots__ = ("lock",)

    def __init__(self, lock: Any) -> None:
        self.lock = lock

    def __enter__(self) -> None:
        _seize(self.lock)

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


def _free_kernel_locks() -> None:
    """Take back the process-wide locks the code's threads took and kept: threading's (every later thread start waited
    for them), the import lock (every later import of a new module did; only its owner can release it, so the worker
    does that as it ends) and logging's (every new logger did)."""
    logging = _modules.get("logging")
    logging_lock = vars(logging).get("_lock") if type(logging) is types.ModuleType else None
    for lock in _THREADING_LOCKS + ((logging_lock,) if _is_lock(logging_lock) else ()):
        with Seized(lock):
            pass


def _thread_of(ident: int) -> Any:
    """threading's thread filed under `ident`, or None, found without a look-up: the code can put a key of its own
    with that hash in the table, and a look-up there runs the key's __eq__ on the thread that looks. The table is read
    again when a thread started or ended while it was read (`dictionary changed size during iteration`)."""
    while True:
        try:
            items = list(_active.items())
        except RuntimeError:
            continue
        return next((thread for key, thread in items if type(key) is int and key == ident), None)


def _plain_keys(table: dict[Any, Any], kind: type = str, keep: Iterable[Any] = ()) -> None:
    """Take out of `table` (a module's names, sys.modules, threading's table) each key that is not exactly a `kind`,
    comparing none: the code's key with a name's hash made each look-up of that name run the key's __eq__ on the
    thread looking, the watcher's (the kernel's own: its `os._exit` there ended the kernel). The table is taken from
    its end (`popitem` compares nothing) to the first such key and the plain keys after it put back in their order;
    what is taken out stays alive in `_TAKEN_OUT` (freed here, its __del__ would run here). Keys in `keep` (by
    identity: the user's own, there before the run) stay."""
    if {*map(type, table)} <= {kind}:
        return
    keys = list(table)
    kept = {id(key) for key in keep}
    first = next((key for key in keys if type(key) is not kind and id(key) not in kept), None)
    if first is None:
        return
    tail: list[tuple[Any, Any]] = []
    while table:
        tail.append(table.popitem())
        if tail[-1][0] is first:
            break
    stays = [type(key) is kind or id(key) in kept for key, _ in tail]
    _TAKEN_OUT.extend(item for item, stay in zip(tail, stays) if not stay)
    table.update([item for item, stay in zip(reversed(tail), reversed(stays)) if stay])


class _Stops:
    """Mixin of the exceptions raised into a thread to stop it: made in a thread that is being stopped
    (as happens when the exception is raised there), it makes every later line of that thread's code
    raise it again, so a handler that swallows it cannot keep the code going. Raised by the tracer, it turns tracing off
    (Python's rule for a tracer that raises): so it traces again as the handler that caught it lets it go, and the
    next line raises it out of that handler (off the main thread, nested `except BaseException: pass` loops around a
    `time.sleep` caught every stop at the same place, and ran on for good)."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self._trace_again()

    def __del__(self) -> None:
        self._trace_again()

    def _trace_again(self) -> None:
        """The code's frames below the caller traced to raise it, in a thread being stopped that is not traced so."""
        if _get_ident() in _stopping and not getattr(_gettrace(), "stops", False):
            _trace_to_stop(_getframe(2), type(self))


class ToolTimeout(_Stops, BaseException):
    """The code ran past its timeout. A BaseException, so `except Exception` does not swallow it."""

    seconds: float | None = None

    def __str__(self) -> str:
        said = super().__str__()
        return said or (f"Timed out after {self.seconds:g} s" if self.seconds else "Timed out")

    @classmethod
    @functools.lru_cache(maxsize=64)
    def after(cls, seconds: float) -> type[ToolTimeout]:
        """The ToolTimeout class whose instances say `Timed out after {seconds} s` (an asynchronous
        exception is raised from its class, so the message lives on the class)."""
        return type(cls.__name__, (cls,), {"seconds": seconds, "__module__": cls.__module__})


class _Interrupt(_Stops, KeyboardInterrupt):
    """The user's interrupt, passed on to the code's thread (code that handles KeyboardInterrupt sees one)."""


class Hijacked(_Stops, BaseException):
    """The code raised an exception into the kernel's thread (ctypes' PyThreadState_SetAsyncExc): it is stopped."""

    def __str__(self) -> str:
        return "the code raised an exception into the kernel's thread, so the python tool stopped it"


class ExitRefused(SystemExit):
    """Model code asked to end (or freeze) the kernel's process; the code stops here, the kernel lives on."""


def _trace_to_stop(frame: Any, stop: type[BaseException]) -> None:
    """Make every line and opcode of this thread's frames below `frame` (down to this module's) raise `stop`."""

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if id(frame.f_code) in _OURS:
            return None
        frame.f_trace_opcodes = True
        if event in ("line", "opcode"):
            raise stop
        return tracer

    tracer.stops = True  # type: ignore[attr-defined]
    while frame is not None and id(frame.f_code) not in _OURS:
        frame.f_trace, frame.f_trace_opcodes = tracer, True
        frame = frame.f_back
    _settrace(tracer)


# ---------------------------------------------------------------- the worker and its watcher

@dataclass
class Outcome:
    """How a contained run went. `still_running`: the code did not stop when told (stuck in a native
    call) and keeps being stopped in the background; `threads`, `processes`: threads and child processes it started
    that still run (ended at the call's timeout).
    The code's error itself is not kept: it is dropped on the code's thread (see `_Worker`)."""

    status: Literal["done", "error", "timeout", "interrupted"]
    value: Any = None
    still_running: bool = False
    threads: int = 0
    processes: int = 0
    put_back: tuple[str, ...] = ()  # what of the kernel's the code changed and the run put back, in words (`_Run.said`)


class _Worker(threading.Thread):
    """The thread the code runs on. `finished` is set with no call in between, so a stop request
    checked against it (with the GIL held) never lands after the code is done. The code can reach this
    object (`threading.current_thread()`) and set `finished` or `ident` itself: so it starts only once
    `go` is released (the watcher has the ident by then), and `finished` counts only once no frame of the
    code's is left on the thread's stack (see `_running`). The code can change this class too (a
    `__getattribute__` that loops held the watcher past the timeout): the watcher reads `finished`, `failed`
    and `value` through their slots' own descriptors (`_FINISHED` ...), never by a look-up on the object, and
    `go` is a C lock. The code's error is dropped here, not kept: its `__del__` runs on this thread, under
    the timeout and the guards, not on the kernel's thread whenever the garbage collector gets to it."""

    __slots__ = ("finished", "failed", "value", "fn", "context", "go", "ended")

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__(name="gptoss-python", daemon=True)
        self.fn, self.context = fn, contextvars.copy_context()  # the caller's decimal context etc.
        self.go = _allocate_lock()
        self.go.acquire()  # released by the watcher
        self.ended = _allocate_lock()
        self.ended.acquire()  # released once the code is done: the watcher wakes then, not at its next look
        self.value: Any = None
        self.failed = self.finished = False

    def run(self) -> None:
        ended = self.ended  # (before the code runs, which can reach this object)
        self.go.acquire()
        try:
            try:
                self.value = self.context.run(self.fn)
            except BaseException:
                self.failed = True
        except BaseException:  # a second stop request landed while the first was recorded
            self.failed = True
        self.finished = True
        try:   # the import lock the code took and kept (`_imp.acquire_lock()`); the names are this module's, as the
            while _import_lock_held():   # code may have emptied builtins
                _release_import_lock()
        except _NotHeld:  # another thread's (a kernel thread importing)
            pass
        try:  # the guards' own lock, which the code took and kept: given back here by its owner, this thread (else
            while _GUARDS.lock._is_owned():  # the watcher waited for it for good)
                _GUARDS.lock.release()
        except BaseException:
            pass
        try:
            ended.release()
            _settrace(None)
            _stopping.discard(_get_ident())
        except BaseException:  # a stop request that raced the end of the code: it has ended anyway
            pass

    def _set_ident(self) -> None:
        """File this thread under its real ident: threading asks `threading.get_ident`, which code of an earlier
        run may have replaced (the worker would be filed under the kernel's thread, seem ended, and never be stopped)."""
        self._ident = _get_ident()

    def _delete(self) -> None:
        """Take this thread out of threading's table by its own ident: threading's own way asks
        `threading.get_ident`, which the code may have replaced (it would take the kernel's thread out)."""
        with Seized(_tables_lock):
            if _thread_of(self._ident) is self:
                _plain_keys(_active, int)
                del _active[self._ident]


_FINISHED, _FAILED, _VALUE = (vars(_Worker)[name].__get__ for name in ("finished", "failed", "value"))


def _slot(read: Callable[[Any], Any], worker: _Worker, default: Any = None) -> Any:
    """A worker's slot through its own descriptor (`_FINISHED` ...); `default` where the code deleted it or made the
    worker another class."""
    if type(worker) is not _Worker:
        return default
    try:
        return read(worker)
    except AttributeError:
        return default


# threading's classes and the worker's: the lab starts, waits on and stops threads with their methods, and so do the
# kernel's own threads (`threading.Thread.start = None` left every later run, and every cell starting a thread, failing)
_KEPT_CLASSES = (*(c for c in vars(threading).values() if isinstance(c, type) and c.__module__ == "threading"), _Worker)


def _class_state() -> list[tuple[type, tuple[type, ...], dict[str, Any]]]:
    """Each of `_KEPT_CLASSES` with its bases and attributes, as `_put_back_classes` puts them back."""
    return [(cls, cls.__bases__, dict(vars(cls))) for cls in _KEPT_CLASSES]


def _put_back_classes(kept: list[tuple[type, tuple[type, ...], dict[str, Any]]], *, if_gone: bool = False) -> None:
    """The classes as they were: attributes replaced or taken out put back, and (unless `if_gone`, while the code
    runs) those added taken out (`Thread.__getattribute__` would run the code at every look-up on a thread) and the
    bases put back. Through `type`'s own setattr, which a metaclass cannot change and which keeps the method caches
    right (writing into the class's dict would not)."""
    for cls, bases, attributes in kept:
        try:
            now = vars(cls)
            if not if_gone:
                for name in [name for name in now if name not in attributes]:
                    _TAKEN_OUT.append(now[name])  # the code's: not freed here (see _TAKEN_OUT)
                    type.__delattr__(cls, name)
                if len(bases) != len(cls.__bases__) or any(a is not b for a, b in zip(bases, cls.__bases__)):
                    _TAKEN_OUT.append(cls.__bases__)
                    type.__setattr__(cls, "__bases__", bases)
            for name, value in attributes.items():
                if name not in now or (not if_gone and now[name] is not value):
                    _TAKEN_OUT.append(now.get(name))
                    type.__setattr__(cls, name, value)
        except Exception:  # a class the code made unrepairable: the rest is put back all the same
            pass


class _Defuse(BaseException):
    """Raised into the stopping thread itself, and caught there: see `_poke`."""


def _poke(threads: dict[int, Any], stop: type[BaseException], *, force: bool = True) -> None:
    """Raise `stop` in each thread (by ident) that runs Python within the next POLL seconds (with `force`,
    every later line of its code raises it too). A worker or deadline that is done is left alone.

    The exception (PyThreadState_SetAsyncExc) is never left pending on a thread stuck in a native
    call: it is taken back after POLL seconds, because on CPython 3.11 a pending one makes every
    *traced* thread (a debugger's, coverage's) spin until it is delivered (and the flag it leaves set is cleared:
    see `_drop_pending`). Each `finished` is read right before its call, with no Python call in between, so the GIL
    is not given up between the check and the raise.
    """
    exc = _Object(stop)
    targets = [(ident, thread, _Ident(ident)) for ident, thread in threads.items()]
    if force:
        _stopping.update(threads)
    for ident, thread, target in targets:
        if type(thread) is deadline:
            if not thread.finished:
                _set_async_exc(target, exc)
        elif _is(ident, thread):  # not ended (then its ident could be another thread's)
            # a worker's `finished` is read right before the call (a forged one: see `_running`); a thread
            # the code started: hitting it as it ends is harmless
            if _unfinished(ident, thread):
                _set_async_exc(target, exc)
    _sleep(POLL)  # a native call: the GIL is free for the targets to take the exception
    try:
        for _, _, target in targets:
            _set_async_exc(target, None)
    finally:
        _drop_pending()


def _drop_pending() -> None:
    """Drop an exception left pending on this thread, and the interpreter's "pending" flag with it: taking one back
    (PyThreadState_SetAsyncExc with NULL) leaves the flag set, and on CPython 3.11 every *traced* thread then spins
    for good (the user's `cProfile.run(...)` or debugger after any python call held the kernel, deaf to interrupts).
    So this thread raises one into itself and catches it, which clears the flag."""
    try:
        _set_async_exc(_Ident(_get_ident()), _Object(_Defuse))
        for _ in range(2):  # it arrives at the next check: after the call, at a function's start, a loop's end
            _noop()
    except _Defuse:
        pass


def _noop() -> None:
    pass


def _never() -> bool:
    return False


def contain(fn: Callable[[], Any], *, timeout: float | None, output: TextIO | None = None,
            namespace: dict[str, Any] | None = None, label: str = "the model's code",
            stop: Callable[[], bool] = _never, settle: float = SETTLE) -> Outcome:
    """Run `fn` on a worker thread under the guards; return when it ends, at the timeout, or at the
    user's interrupt (Ctrl-C, or `stop()` turning True: recorded, passed on to the code, never raised here).

    While it runs, what the code's threads write on sys.stdout/sys.stderr goes to `output`, and
    `exit`/`quit` in `namespace` are refused to it. When the code does not stop when told, a line
    naming `label` on the user's stderr says so and what to do. The code starts once the kernel's other threads are
    idle, or after `settle` seconds (see `_settle`).
    """
    worker = _Worker(fn)
    stuck: dict[int, Any] = {}
    due = None if timeout is None else _monotonic() + timeout
    children, processes = _children(), 0
    with _held_interrupts() as interrupts:
        with _GUARDS.running(output, namespace, settle) as run:
            run.timeout = timeout
            go, ended = worker.go, worker.ended
            worker.start()
            ident = worker.ident or 0
            attacked, stopping = False, None
            while True:  # until the code is stopped, whatever it raises into this thread meanwhile
                try:
                    if go.locked():  # a C lock: no code of threading's (or the code's) runs here
                        go.release()
                    if not attacked:
                        status = _watch(worker, ident, timeout, interrupts, stop, run, ended)
                    _GUARDS.put_back(run)  # what runs from here on (threading's stops, contextlib's exits) needs them
                    if attacked or status in ("timeout", "interrupted"):  # the threads the code started go with it
                        with_ = Hijacked if attacked else _Interrupt if status == "interrupted" else ToolTimeout
                        stopping = _monotonic() if stopping is None else stopping  # not restarted: it gets forced
                        stuck = _stop({ident: worker, **run.started()}, with_, stopping)
                        _GUARDS.keep_stopping(stuck)
                    break
                except BaseException:  # raised into this thread by the code (PyThreadState_SetAsyncExc): it ends
                    status, attacked = "error", True
            _drop_pending()  # one the code left pending here is dropped, and the interpreter's flag cleared
            threads = run.started()
            if due is not None and timeout is not None:
                if status in ("done", "error"):  # (else they were stopped with the code)
                    _GUARDS.stop_at(threads, due, timeout, label)
                processes = _GUARDS.end_at(_children() - children, due, timeout, label)
    if ident in stuck:
        why = ("when interrupted" if status == "interrupted" else "when told" if attacked
               else f"at its {timeout:g} s timeout")
        print(f"gptoss_lab: {label} did not stop {why}: it is stuck in native code or keeps catching the stop. "
              "It keeps being stopped in the background and may still change your variables; restart the "
              "kernel if it does not end.", file=sys.stderr)
    if interrupts.seen:  # also when the interrupt came as the code finished: the turn ends, output kept
        status = "interrupted"
    return Outcome(status, _slot(_VALUE, worker), ident in stuck, len(threads), processes, tuple(run.said))


def _watch(worker: _Worker, ident: int, timeout: float | None, interrupts: _Interrupts, stop: Callable[[], bool],
           run: _Run, ended: Any) -> Literal["done", "error", "timeout", "interrupted"]:
    end = None if timeout is None else _monotonic() + timeout
    while _running(ident, worker):
        _GUARDS.refill(run)  # first: stop() runs the kernel's code
        if interrupts.seen or stop():
            return "interrupted"
        left = POLL if end is None else min(POLL, end - _monotonic())
        if left <= 0:
            return "timeout"
        # not worker.join (the code may have replaced Thread.join): the worker's own C lock, released as the code ends,
        # and kept by the watcher (were the code to release it early, the next look waits its POLL all the same)
        ended.acquire(True, left)
    return "error" if _slot(_FAILED, worker) is True else "done"


def _stop(threads: dict[int, Any], stop: type[BaseException], start: float | None = None) -> dict[int, Any]:
    """Raise `stop` into each thread (by ident) until it ends or GRACE passes since `start` (now, by
    default; for POLITE seconds it can be handled, so cleanup runs; then it is forced); the ones still
    running are returned (for the background reaper to keep stopping)."""
    start = _monotonic() if start is None else start
    alive = {ident: t for ident, t in threads.items() if _running(ident, t)}
    while alive and _monotonic() < start + GRACE:
        _poke(alive, stop, force=_monotonic() > start + POLITE)
        alive = {ident: t for ident, t in alive.items() if _running(ident, t)}
    return alive


def _running(ident: int, thread: Any) -> bool:
    """Whether `thread` (running as `ident`) still runs: read from the thread's stack, never from the thread
    object of a thread the code started. The worker counts as done once it says so and no frame of the
    code's is left on its stack (the code can set `finished` itself)."""
    if not _is(ident, thread):  # it has ended (and its ident may be another thread's by now)
        return False
    return _unfinished(ident, thread)


def _unfinished(ident: int, thread: Any) -> bool:
    """Whether a running `thread` has code left to run: any thread the code started, the worker until it has said it
    is finished (read from its slot, see `_Worker`) and no frame of the code's is left on its stack."""
    return type(thread) is not _Worker or _slot(_FINISHED, thread) is not True or _in_code(ident)


def _is(ident: int, thread: Any) -> bool:
    """Whether `thread` runs as `ident`: in threading's table, or found on the stack (`_threads`), for the code
    can take its threads out of the table (`threading._active.pop(...)`: it seemed ended, and ran on unstopped)."""
    return _thread_of(ident) is thread or _threads().get(ident) is thread


_BOOTSTRAP = threading.Thread._bootstrap  # type: ignore[attr-defined]
_BOOTSTRAP_CODE = _BOOTSTRAP.__code__


def _threads() -> dict[int, Any]:
    """Each threading thread by ident, read from the first frame of its stack (Thread._bootstrap's `self`), which
    the code cannot take off it, nor make answer otherwise (no look-up on the thread object is made)."""
    threads = {}
    for ident, frame in _current_frames().items():
        while frame.f_back is not None:
            frame = frame.f_back
        if frame.f_code is _BOOTSTRAP_CODE:
            threads[ident] = frame.f_locals.get("self")
    return threads


def _in_code(ident: int) -> bool:
    """Whether thread `ident` has a frame of code other than this module's and threading's on its stack."""
    frame = _current_frames().get(ident)
    while frame is not None:
        if id(frame.f_code) not in _OURS:
            return True
        frame = frame.f_back
    return False


class _Interrupts:
    seen = False


@contextlib.contextmanager
def _held_interrupts() -> Iterator[_Interrupts]:
    """On the main thread, Ctrl-C / the kernel's interrupt is recorded instead of raised, so the watcher
    is never left half-way (guards installed, output redirected) and passes the interrupt on."""
    interrupts = _Interrupts()
    if _get_ident() != _MAIN:  # not threading.current_thread(): the code can make that answer otherwise
        yield interrupts
        return

    def record(signum: int, frame: Any) -> None:
        interrupts.seen = True

    previous = signal.signal(signal.SIGINT, record)
    try:
        yield interrupts
    finally:
        # set again even if unchanged: that also reinstalls the C-level handler if the code replaced it via ctypes
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)


# ---------------------------------------------------------------- guards

def _self_targeted_kill(pid: int, sig: int) -> str | None:
    if sig and (pid in (0, -1) or _own(pid) or (pid < -1 and -pid == _getpgrp())):
        return f"os.kill({pid}, {sig}) would signal the kernel's own process"
    return None


def _own(pid: int) -> bool:
    """Whether `pid` is the kernel's process or one of its threads: on Linux a thread's id signals, limits ... the
    whole process (`os.kill(threading.get_native_id(), SIGKILL)` ended the kernel)."""
    if pid == _getpid():
        return True
    try:
        return str(pid) in _listdir("/proc/self/task")
    except OSError:  # no /proc (macOS, Windows): a thread id is no process id there
        return False


def _self_targeted_killpg(pgid: int, sig: int) -> str | None:
    if sig and pgid in (0, _getpgrp()):
        return f"os.killpg({pgid}, {sig}) would signal the kernel's own process group"
    return None


def _fatal_timer(sig: int, seconds: float, what: str) -> str | None:
    handler = _getsignal(sig)
    if seconds and handler == signal.SIG_DFL:
        return f"{what} would end the kernel when it fires ({signal.Signals(sig).name} has no handler)"
    if sig == signal.SIGALRM and _deadline_rings():
        return f"{what} would stop or move the timeout of the call the kernel is running"
    return None


def _deadline_rings() -> bool:
    """Whether the real-time timer is a `deadline`'s now (a function tool's call, on the kernel's thread): its SIGALRM
    handler is."""
    handler = _getsignal(signal.SIGALRM)
    return type(handler) is types.MethodType and handler.__func__ is deadline._on_alarm


def _lowered_limit(what: str, which: int, limits: tuple[int, int]) -> str | None:
    """Lowering a resource limit of the kernel's process ends it (a CPU or file-size limit's signal)
    or starves it, and a lowered hard limit cannot be raised again; raising one is allowed."""
    (soft, hard), (old_soft, old_hard) = (
        [math.inf if value == resource.RLIM_INFINITY else value for value in pair]
        for pair in (limits, _getrlimit(which)))
    if soft < old_soft or hard < old_hard:
        return f"{what}({which}, {tuple(limits)}) would lower a limit of the kernel's own process"
    return None


def _recursion_limit_out_of_range(limit: int) -> str | None:
    floor = _GUARDS.recursion_limit
    if limit < floor:  # the kernel's threads are deeper than a small limit: every call would fail there
        return f"sys.setrecursionlimit({limit}) would put the kernel's own code over its recursion limit ({floor})"
    if limit > max(floor, _SAFE_RECURSION):  # recursion through C (repr, getattr) then overflows the stack: a crash
        return (f"sys.setrecursionlimit({limit}) would let deep recursion overflow the C stack and crash the kernel "
                f"(at most {max(floor, _SAFE_RECURSION)} here)")
    return None


def _thread_stack() -> int:
    """The bytes of stack a new thread gets: threading's stack size, else the process's stack limit (8 MiB if none)."""
    stack = threading.stack_size()
    if not stack and _getrlimit is not None:
        soft = _getrlimit(resource.RLIMIT_STACK)[0]
        stack = soft if soft != resource.RLIM_INFINITY else 0
    return stack or 8 * 2**20


# The highest recursion limit under which recursion through C code cannot overflow a thread's stack: measured on
# CPython 3.11 (an 8 MiB stack overflows at about 12,000 levels of `__getattr__` recursion), with room to spare.
_STACK = _thread_stack()
_SAFE_RECURSION = _STACK // 1600


def _smaller_stacks(size: int = 0) -> str | None:
    """A smaller stack for every later thread (the next call's worker's, the kernel's) overflows under the recursion
    limit: `repr` of a list nested 2,000 deep then crashes the kernel. A larger one is allowed."""
    if 0 < size < _STACK:
        return (f"threading.stack_size({size}) would let recursion crash the kernel's later threads "
                f"(at least {_STACK} here)")
    return None


def _kernel_fd(what: str, *fds: int) -> str | None:
    """Closing or replacing a file descriptor the process had before the run cuts the kernel off from
    its sockets, pipes or output; the code's own may be closed."""
    kept = [fd for fd in fds if fd in _GUARDS.fds and _file_of(fd) == _GUARDS.fds[fd]]
    return f"{what} would close the kernel's own file descriptor {kept[0]}" if kept else None


def _file_of(fd: int) -> tuple[int, int] | None:
    """Which file `fd` is now (device, inode), None when it is closed: a number the kernel had at the start may
    have been closed since (a file object collected) and now be one the code opened itself (Popen's pipes)."""
    try:
        info = _fstat(fd)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _opened_kernel_fd(file: Any, *args: Any, closefd: bool = True, **kwargs: Any) -> str | None:
    if isinstance(file, int) and closefd:  # the file object closes the descriptor when closed or collected
        return _kernel_fd(f"open({file})", file)
    return None


def _timer_signal(which: int) -> int:
    return {signal.ITIMER_REAL: signal.SIGALRM, signal.ITIMER_VIRTUAL: signal.SIGVTALRM}.get(which, signal.SIGPROF)


_CRASHES = ("_read_null", "_sigabrt", "_sigfpe", "_sigsegv", "_stack_overflow", "_fatal_error_c_thread")
# why a call from the model's threads is refused (None: allowed); names not listed are always refused
_CHECKS: dict[str, Callable[..., str | None]] = {
    "kill": _self_targeted_kill,
    "killpg": _self_targeted_killpg,
    "pthread_kill": lambda ident, sig: f"signal.pthread_kill(..., {sig}) would signal a kernel thread" if sig else None,
    "alarm": lambda seconds: _fatal_timer(signal.SIGALRM, seconds, f"signal.alarm({seconds})"),
    "setitimer": lambda which, seconds, interval=0.0: _fatal_timer(_timer_signal(which), seconds,
                                                                   f"signal.setitimer({which}, {seconds})"),
    "dump_traceback_later": lambda timeout, repeat=False, file=None, exit=False: (
        f"faulthandler.dump_traceback_later({timeout}, exit=True) would end the kernel when it fires"
        if exit else None),
    "setrlimit": lambda which, limits: _lowered_limit("resource.setrlimit", which, limits),
    "prlimit": lambda pid, which, limits=None: (
        _lowered_limit("resource.prlimit", which, limits) if limits is not None and (pid == 0 or _own(pid)) else None),
    "setrecursionlimit": _recursion_limit_out_of_range,
    "stack_size": _smaller_stacks,
    "close": lambda fd: _kernel_fd(f"os.close({fd})", fd),
    "closerange": lambda low, high: _kernel_fd(f"os.closerange({low}, {high})",
                                              *(fd for fd in _GUARDS.fds if low <= fd < high)),
    "dup2": lambda fd, fd2, inheritable=True: _kernel_fd(f"os.dup2({fd}, {fd2})", fd2),
    "open": _opened_kernel_fd,
    "write": lambda fd, data: None,  # to 1 and 2 and the kernel's streams: into the run's output (see `_stand_in`)
}
_ALWAYS = {"exit": "exit() would end the kernel", "quit": "quit() would end the kernel",
           "_exit": "os._exit() would end the kernel's process", "abort": "os.abort() would end the kernel's process",
           "execv": "os.exec*() would replace the kernel's process", "execve": "os.exec*() would replace the kernel's process",
           "raise_signal": "signal.raise_signal() would signal the kernel's own process",
           "interrupt_main": "_thread.interrupt_main() would interrupt the kernel",
           "addaudithook": "sys.addaudithook() would run the code on the kernel's thread at every audited event, "
                           "unguarded and untimed, for as long as the kernel lives",
           "pidfd_send_signal": "signal.pidfd_send_signal() could signal the kernel's own process (a pidfd or a /proc "
                                "folder of it); signal a process the code started with os.kill or its Popen",
           **{name: f"faulthandler.{name}() would crash the kernel's process" for name in _CRASHES}}
_INPUTS = {"input": "input() would wait for the user to type in the notebook; the python tool's code cannot read input",
           "getpass": "getpass() would ask the user for a password in the notebook; the python tool's code cannot "
                      "read input"}
_INPUTS |= {"raw_input": _INPUTS["input"].replace("input()", "raw_input()"),
            "_input_request": _INPUTS["input"].replace("input()", "an input request")}


def _patch_table() -> list[tuple[Any, str]]:
    """(owner, name) of each function the guards stand in for, in the public module and in the C module
    behind it (`import posix; posix._exit(1)` is refused too). os.execl & co call os.execv/execve."""
    table = [(builtins, "exit"), (builtins, "quit"), (builtins, "input"), (getpass, "getpass"), (atexit, "register"),
             (_thread, "interrupt_main"), (sys, "setrecursionlimit"), (sys, "addaudithook"),
             (_thread, "stack_size"), (threading, "stack_size"),
             *((owner, name) for owner in (_thread, threading) for name in _STARTS),
             (resource, "setrlimit"), (resource, "prlimit")]
    table += [(faulthandler, name) for name in ("dump_traceback_later", *_CRASHES)]
    table += [(owner, "open") for owner in (builtins, io, sys.modules.get("_io"))]  # os.fdopen calls io.open
    kernel = getattr(sys.modules.get("ipykernel.kernelbase"), "Kernel", None)  # its own prompts, as methods
    table += [(kernel, name) for name in ("raw_input", "getpass", "_input_request")]
    table.append((getattr(sys.modules.get("jupyter_client.session"), "Session", None), "send"))  # displays: inert
    table.append((getattr(sys.modules.get("ipykernel.iostream"), "OutStream", None), "write"))  # into the output
    table.append((getattr(sys.modules.get("traitlets"), "TraitType", None), "set"))  # a widget's synced traits
    for module in (os, sys.modules.get("posix") or sys.modules.get("nt")):
        table += [(module, name) for name in ("_exit", "abort", "kill", "killpg", "execv", "execve",
                                              "close", "closerange", "dup2", "write", "register_at_fork")]
    for module in (signal, sys.modules.get("_signal")):
        table += [(module, name) for name in ("raise_signal", "pthread_kill", "alarm", "setitimer", "pidfd_send_signal")]
    table += [(asyncio.BaseEventLoop, name) for name in _SCHEDULES if not name.startswith("add_")]
    table += [(asyncio.selector_events.BaseSelectorEventLoop, name) for name in _SCHEDULES if name.startswith("add_")]
    return [(owner, name) for owner, name in table if owner is not None and hasattr(owner, name)]


class _Run:
    """One contained run as the guards see it."""

    def __init__(self) -> None:
        self.watcher = _get_ident()  # the thread that runs `contain`: the lab's code only, while the run goes on
        self.before = _thread_objects()
        self.kept: tuple[Any, ...] = ([], {}, [], {}, [])  # what `_Guards.put_back` puts back: see `_Guards.running`
        self.shell_hooks: _ShellHooks | None = None  # what IPython calls at later cells, as it was
        self.timeout: float | None = None
        # the interpreter's settings the code can change for the whole kernel: `gc.set_threshold(1, 1, 1)` made every
        # later allocation collect, `sys.set_int_max_str_digits(640)` failed the user's `str(10**700)`, `gc.freeze()`
        # kept every object of the kernel's then from being collected for good (its cycles never freed)
        self.settings = (_gc_threshold(), _gc_isenabled(), _int_digits(), _gc_frozen())
        # the process's working folder and environment: `os.chdir` made the user's next cell read other files by their
        # relative paths, `os.environ['PATH'] = ...` ran other programs from it, a deleted key failed its lookups
        self.place = (_cwd(), dict(_environ_data))
        self.said: list[str] = []   # what the code changed of those, put back, for the call's output (`Outcome`)

    def put_back_settings(self) -> None:
        """The interpreter's settings, the working folder and the environment as they were when the run began (objects
        frozen by the code thawed where none were frozen before)."""
        thresholds, enabled, digits, frozen = self.settings
        _gc_set_threshold(*thresholds)
        (_gc_enable if enabled else _gc_disable)()
        _set_int_digits(digits)
        if not frozen and _gc_frozen():
            _gc_unfreeze()
        folder, environment = self.place
        if folder is not None and _cwd() != folder:
            with contextlib.suppress(OSError):   # (the folder is gone: nowhere to go back to)
                _chdir(folder)
                self.said.append(f"the working folder (os.chdir; back to {folder})")
        if changed := _put_back_environment(environment):
            self.said.append(f"the environment variable{'s' * (len(changed) > 1)} {_listed(changed)}")

    def started(self) -> dict[int, threading.Thread]:
        """Threads the code started that still run, by ident (low-level `_thread` ones run as threading's:
        see `_start_seen`), those it took out of threading's table too."""
        return _started_since(self.before)


def _cwd() -> str | None:
    """The process's working folder, None where it was deleted."""
    try:
        return _getcwd()
    except OSError:
        return None


def _put_back_environment(wanted: dict[Any, Any]) -> list[str]:
    """`os.environ` and the process's environment as `wanted` (`_environ_data` then), where they changed; the names of
    the variables that had (compared as plain bytes or text only: no code of the code's objects runs)."""
    if vars(_environ).get("_data") is not _environ_data:   # `os.environ._data = {...}`
        vars(_environ)["_data"] = _environ_data
    if _unchanged(_environ_data, wanted):
        return []
    _plain_keys(_environ_data, type(next(iter(wanted), b"")))
    changed = [key for key in {**_environ_data, **wanted} if type(value := _environ_data.get(key)) is not
               type(was := wanted.get(key)) or value != was]
    for key in changed:
        with contextlib.suppress(OSError, ValueError):
            _putenv(key, wanted[key]) if key in wanted else _unsetenv(key)
        _environ_data.pop(key, None)
    _environ_data.update((key, wanted[key]) for key in changed if key in wanted)
    return sorted(os.fsdecode(key) for key in changed)


def _same_start(now: list[Any], then: list[Any]) -> bool:
    """Whether the list `now` starts with the items of `then`, compared by identity."""
    return len(now) >= len(then) and all(map(operator.is_, now, then))


def _listed(names: list[str], shown: int = 5) -> str:
    """Names in a line: the first `shown` of them, and how many more."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _thread_objects() -> dict[int, Any]:
    """Every thread now, by id of its object (kept, so that no later thread's object takes its id)."""
    return {id(t): t for t in [*dict(_active).values(), *dict(_limbo).values(), *_threads().values()]}


def _started_since(before: dict[int, Any]) -> dict[int, Any]:
    """The threads not in `before` (`_thread_objects`) that run now, by ident, but the lab's own (a worker, the
    reaper) and those of native code (`_DummyThread`), whichever table they are in (see `_threads`)."""
    return {ident: t for ident, t in {**_threads(), **dict(_active)}.items() if id(t) not in before
            and type(t) is not _Worker and type(t) is not threading._DummyThread and t is not _GUARDS.reaper}


class bound_threads:
    """`with bound_threads(timeout, label):` the threads the block starts (a user function's: trusted code, run in
    place) that outlive it are stopped `timeout` seconds after it began, as the model's code's are (`_Guards.stop_at`:
    a swallowing loop on one held a core for good after the turn). With no timeout it does nothing."""

    def __init__(self, timeout: float | None, label: str) -> None:
        self.timeout, self.label = timeout, label

    def __enter__(self) -> None:
        if self.timeout:
            self.when, self.before = _monotonic() + self.timeout, _thread_objects()

    def __exit__(self, *exc: object) -> None:
        if self.timeout:
            threads = _started_since(self.before)
            for ident, thread in threads.items():
                if _GUARDS.lingering.get(ident) is not thread:  # (a thread of model code's: its objects go untouched)
                    _quiet_when_stopped(thread)
            _GUARDS.stop_at(threads, self.when, self.timeout, self.label)


def _quiet_when_stopped(thread: threading.Thread) -> None:
    """A trusted thread stopped at its call's timeout ends without a traceback: the reaper's one line says it
    (threading's hook printed the stop's traceback into the user's cell after the Reply). Its other errors are
    shown as before."""
    invoke = thread._invoke_excepthook  # type: ignore[attr-defined]

    def invoke_unless_stopped(ended: threading.Thread) -> None:
        if not isinstance(sys.exc_info()[1], _Stops):
            invoke(ended)

    thread._invoke_excepthook = invoke_unless_stopped  # type: ignore[attr-defined]


def _restore(table: dict[Any, Any], key: Any, value: Any, *, if_there: bool = False, if_gone: bool = False) -> None:
    """`table[key] = value` where the code changed it (with `if_there`: only where the key is still there; with
    `if_gone`: only where it is not). A key of the code's whose __eq__ raises as this one is looked up leaves that
    entry as the code left it, and the rest is put back all the same (the error stopped the clean-up, and the
    watcher retried it for good)."""
    try:
        now = table.get(key, table)
        if now is not value and not (if_there and now is table) and not (if_gone and now is not table):
            if now is not table:  # (`table`: the key was gone)
                _TAKEN_OUT.append(now)  # the code's: not freed here (see _TAKEN_OUT)
            table[key] = value
    except Exception:
        pass


def _unchanged(table: dict[Any, Any], wanted: dict[Any, Any]) -> bool:
    """Whether `table` holds exactly `wanted`'s keys and values, in its order: one pass in C comparing by identity
    only (no key is hashed or compared, so no code of the code's keys runs), so that where nothing changed (nearly
    always; sys.modules has thousands of entries) no Python runs per key."""
    return (len(table) == len(wanted) and all(map(operator.is_, table, wanted))
            and all(map(operator.is_, table.values(), wanted.values())))


def _restore_all(table: dict[Any, Any], wanted: dict[Any, Any], *, if_gone: bool = False) -> None:
    """`table` as `wanted` (see `_restore`), its keys made plain first (`_plain_keys`), where anything changed."""
    if _unchanged(table, wanted):
        return
    _plain_keys(table)
    for key, value in wanted.items():
        _restore(table, key, value, if_gone=if_gone)


class _ShellHooks:
    """What IPython calls on the kernel's thread at later cells, as it was before a run (taken before the code runs:
    nothing of the code's runs here). `tables`: where the shell keeps it, with its handler of a cell's errors
    (`set_custom_exc`), its display formatters and its magics, as (table, its entries then); `lists`: event callbacks and input and
    AST transformers, as (what it holds, the list, its entries then); `printers`: each display formatter's printers by
    type and by type name, as (what, the table, its items then, the formatter's two tables); `objects` and `classes`:
    the shell and ipykernel's kernel, and their classes of IPython and ipykernel, with their attributes then (and
    those of the classes after each in its MRO); `loop` and `handles`: the kernel's thread's event loop (ipykernel's)
    and the callbacks it had to run. Empty outside IPython and its loop."""

    def __init__(self) -> None:
        self.tables: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self.lists: list[tuple[str, list[Any], list[Any]]] = []
        self.printers: list[tuple[str, dict[Any, Any], list[tuple[Any, Any]], tuple[dict[Any, Any], ...]]] = []
        self.formatters: tuple[dict[Any, Any], dict[str, Any]] = ({}, {})  # the display formatters by MIME type
        self.objects: list[tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]] = []  # the shell, the kernel
        self.classes: list[tuple[type, dict[str, Any], list[dict[str, Any]]]] = []  # ... and their classes
        # the event loop of the kernel's thread (ipykernel's: it runs the cells), and what it is to run: its callbacks
        self.loop: Any = asyncio._get_running_loop() if _get_ident() == _MAIN else None
        self.handles: list[Any] = ([*self.loop._ready, *self.loop._scheduled, *_readers(self.loop)]
                                   if self.loop is not None else [])
        ipython = sys.modules.get("IPython")
        shell = ipython.get_ipython() if ipython is not None else None
        if shell is None:
            return
        callbacks, display = shell.events.callbacks, shell.display_formatter
        shown = {name: vars(shell)[name] for name in ("CustomTB", "custom_exceptions") if name in vars(shell)}
        formatters = display.formatters
        self.formatters = formatters, dict(formatters)
        self.tables = [(vars(shell), {"events": shell.events, "display_formatter": display, **shown}),
                       (callbacks, dict(callbacks)), self.formatters,
                       (shell._trait_values, {"ast_transformers": shell.ast_transformers,
                                              "input_transformers_post": shell.input_transformers_post,
                                              "magics_manager": shell.magics_manager}),
                       (display._trait_values, {name: getattr(display, name) for name in
                                                ("formatters", "mimebundle_formatter", "ipython_display_formatter")})]
        # the line and cell magics by name: `magics['cell']['gptoss'] = f` ran `f` as the user's next %%gptoss cell
        magics = vars(shell.magics_manager).get("_trait_values", {})
        if type(magics.get("magics")) is dict:
            self.tables += [(magics, {"magics": magics["magics"]}),
                            *((table, dict(table)) for table in magics["magics"].values() if type(table) is dict)]
        lists = [*((f"{event} callback", hooks) for event, hooks in callbacks.items()),
                 ("input transformer", shell.input_transformers_cleanup),
                 ("input transformer", shell.input_transformer_manager.line_transforms),
                 ("input transformer", shell.input_transformers_post), ("AST transformer", shell.ast_transformers)]
        self.lists = [(what, hooks, list.copy(hooks)) for what, hooks in lists if type(hooks) is list]
        printers = [(f"{mime} printer", table, tables) for mime, formatter in
                    [*formatters.items(), ("mimebundle", display.mimebundle_formatter),
                     ("_ipython_display_", display.ipython_display_formatter)]
                    for tables in [(formatter.type_printers, formatter.deferred_printers)] for table in tables]
        self.printers = [(what, table, list(dict.items(table)), tables) for what, table, tables in printers
                         if all(type(table) is dict for table in tables)]
        kernel = shell._trait_values.get("kernel")  # ipykernel's (a trait of its shell)
        for obj in (shell, kernel) if kernel is not None else (shell,):
            mro = [cls for cls in type(obj).__mro__ if cls.__module__.split(".")[0] in ("IPython", "ipykernel")]
            states = [dict(vars(cls)) for cls in mro]
            self.objects.append((vars(obj), dict(vars(obj)), states))
            self.classes += [(cls, state, states[i + 1:]) for i, (cls, state) in enumerate(zip(mro, states))]
            for handlers in ("shell_handlers", "control_handlers"):
                if type(vars(obj).get(handlers)) is dict:  # the kernel's methods by message type
                    self.tables.append((vars(obj)[handlers], dict(vars(obj)[handlers])))

    def put_back(self, timeout: float | None) -> None:
        """As they were, with what the code added made `_Later` (run contained, as the code was): a `post_run_cell`
        callback or an `int` printer that loops while catching every exception held the kernel for good, from the end
        of the very cell that asked the model. What it took out or replaced is put back, a replacement kept, never
        freed (see `_TAKEN_OUT`); a formatter it added for a new MIME type, a printer under a key whose hash or
        comparison would run its code (not a plain class, not a name), or one whose output the page would run (HTML,
        Markdown, JavaScript, a whole bundle: see `_shows_live`) is taken out."""
        self._put_back_methods()
        self._contain_callbacks(timeout)
        for table, before in self.tables:
            _restore_all(table, before)
        for what, hooks, before in self.lists:
            now = list.copy(hooks)
            added = [_Later(entry, what, hooks, timeout) for entry in now
                     if type(entry) is not _Later and not any(entry is then for then in before)]
            if added or any(not any(then is entry for entry in now) for then in before):
                wrapped = [entry for entry in now  # by an earlier put-back of this run
                           if type(entry) is _Later and not any(entry is then for then in before)]
                hooks[:] = before + wrapped + added
        formatters, known = self.formatters  # one the code added for a new MIME type would run at every display
        for mime in [mime for mime in formatters if mime not in known]:
            _TAKEN_OUT.append(formatters.pop(mime))
        for what, table, before, tables in self.printers:
            now = list(dict.items(table))
            if len(now) == len(before) and all(key is k and value is v for (key, value), (k, v) in zip(now, before)):
                continue
            kept = list(before)  # replaced or taken out: the printers as they were
            for key, value in now:
                if any(key is k and value is v for k, v in before):
                    continue
                if any(key is k for k, _ in before) or not _plain_key(key) or _shows_live(what):
                    _TAKEN_OUT.append((key, value))
                else:  # one of an earlier put-back of this run, or added now
                    kept.append((key, value if type(value) is _Later else _Later(value, what, tables, timeout)))
            table.clear()
            table.update(kept)

    def _contain_callbacks(self, timeout: float | None) -> None:
        """What the code put on the kernel's event loop (`get_ipython().kernel.io_loop.add_callback(f)`,
        `asyncio.run_coroutine_threadsafe`) runs as the code ran, contained (`_Later`): on that loop it ran on the
        kernel's thread between cells, unwatched, where a looping one held the kernel for good (the kernel ignores
        interrupts there). Only the code adds to that loop while a run goes on: the kernel's thread waits in the
        watcher. What is not one of asyncio's own handles is taken out (the loop would call its `_run`)."""
        loop = self.loop
        if loop is None or type(loop._ready) is not collections.deque or type(loop._scheduled) is not list:
            return
        known = {id(handle) for handle in self.handles}
        for queue, kind in ((loop._ready, asyncio.Handle), (loop._scheduled, asyncio.TimerHandle)):
            added = [handle for handle in queue if id(handle) not in known]
            if any(type(handle) is not kind for handle in added):  # rebuilt, comparing nothing (no remove())
                _TAKEN_OUT.extend(handle for handle in added if type(handle) is not kind)
                kept = [handle for handle in queue if id(handle) in known or type(handle) is kind]
                queue.clear()
                queue.extend(kept)
                if kind is asyncio.TimerHandle:
                    heapq.heapify(queue)  # (TimerHandle's own order: by time)
            for handle in added:
                if type(handle) is kind:
                    _contain_handle(handle, "callback on the kernel's event loop", None, timeout)
        for handle in _readers(loop):  # called whenever its file is ready: taken out when it fails (`_Later`)
            if id(handle) not in known and type(handle) is asyncio.Handle:
                _contain_handle(handle, "reader on the kernel's event loop", handle, timeout)

    def _put_back_methods(self) -> None:
        """The shell's and the kernel's methods as they were: on their classes (IPython's and ipykernel's) and on
        themselves, replaced or taken out, and one the code set on an object or a subclass over its class's
        (`get_ipython().run_cell = ...` made every later cell run the code's function, a looping one held the kernel
        for good). Other attributes the code set stay (a setting, `%matplotlib`'s state)."""
        for cls, before, later in self.classes:
            try:
                now = vars(cls)
                for name in [name for name in now if type(name) is str and name not in before
                             and any(name in state for state in later)]:  # over a method of a base
                    _TAKEN_OUT.append(now[name])
                    type.__delattr__(cls, name)
                for name, value in before.items():
                    if now.get(name, now) is not value:
                        _TAKEN_OUT.append(now.get(name))
                        type.__setattr__(cls, name, value)
            except Exception:  # a class the code made unrepairable: the rest is put back all the same
                pass
        for table, before, states in self.objects:
            _plain_keys(table)
            for name in [name for name in table if name not in before
                         and any(_is_method(state.get(name)) for state in states)]:
                _TAKEN_OUT.append(table.pop(name))
            for name, value in before.items():
                if _is_method(value):
                    _restore(table, name, value)


def _readers(loop: Any) -> list[Any]:
    """The handles `loop` calls when a file it watches is ready (`add_reader`, `add_writer`, tornado's `add_handler`:
    a looping one the code registered held the kernel for good), read from its selector's table (no method of the
    selector's, which the code can replace, runs here); none where it is not one of `selectors`' own."""
    selector = vars(loop).get("_selector")
    keys = vars(selector).get("_fd_to_key") if type(selector) in _SELECTORS else None
    if type(keys) is not dict:
        return []
    return [handle for key in list(keys.values()) if type(key) is selectors.SelectorKey and type(key.data) is tuple
            for handle in key.data if handle is not None]


_SELECTORS = tuple(cls for cls in vars(selectors).values() if isinstance(cls, type) and cls.__module__ == "selectors")


def _contain_handle(handle: Any, what: str, hooks: Any, timeout: float | None) -> None:
    """An asyncio handle of the code's made to run its callback as the code ran (`_Later`)."""
    if type(handle._callback) is not _Later:
        handle._callback = _Later(handle._callback, what, hooks, timeout)
        if type(handle._context) is not contextvars.Context:
            handle._context = contextvars.copy_context()


def _is_method(value: Any) -> bool:
    """A function or a method (told by its exact type: nothing of the code's runs)."""
    return type(value) in (types.FunctionType, types.MethodType, types.BuiltinFunctionType, types.BuiltinMethodType,
                           staticmethod, classmethod, functools.partial)


def _shows_live(printer: str) -> bool:
    """Whether what a printer (`what`, "text/html printer") returns reaches the page as more than text and images:
    the user's later `5` showed the model's `<script>` through its `int` HTML printer. `_ipython_display_` printers
    show through `display`, which is made inert for the model's threads (see `displays`)."""
    mime = printer.removesuffix(" printer")
    return mime not in INERT and mime != "_ipython_display_"


def _plain_key(key: Any) -> bool:
    """Whether a printer's key hashes and compares without running anyone's code: a class of a plain metaclass, or a
    (module, name) pair of plain strings."""
    return type(key) in (type, abc.ABCMeta) or type(key) is tuple and all(type(part) is str for part in key)


class _Later:
    """A callable the model's code left for the kernel's thread to call later: in one of IPython's lists or printer
    tables (a `post_run_cell` callback, an input or AST transformer, a display formatter's printer of a type) or on
    its event loop (a callback, or a reader called whenever its file is ready). Each call runs it as the code ran, on a
    watched thread under the guards and the run's timeout. One that does not end in time, is interrupted or fails is
    taken out of its list (a reader: cancelled), with one line on stderr; a
    transformer's input then goes on unchanged (a printer's object is shown as it would be without it). Compared by
    identity with what it holds, so `events.unregister(fn)` and `fn in callbacks` (matplotlib's own checks) find it."""

    __slots__ = ("fn", "what", "hooks", "timeout")

    def __init__(self, fn: Any, what: str, hooks: list[Any] | tuple[dict[Any, Any], ...] | asyncio.Handle | None,
                 timeout: float | None) -> None:
        self.fn, self.what, self.hooks, self.timeout = fn, what, hooks, timeout

    def __eq__(self, other: object) -> bool:
        return other is self or other is self.fn

    __hash__ = object.__hash__

    def __repr__(self) -> str:  # IPython names a failing transformer with it: never the code's own repr
        return f"<{self.what} of the model's code>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._run(lambda: self.fn(*args, **kwargs), args[0] if args else None)

    def visit(self, node: Any) -> Any:
        """An AST transformer's entry point (IPython calls `transformer.visit(tree)`)."""
        return self._run(lambda: self.fn.visit(node), node)

    def _run(self, call: Callable[[], Any], unchanged: Any) -> Any:
        if _get_ident() != _MAIN or _GUARDS.runs:  # within a run already (its code ran a cell): its guards hold
            return call()
        # (not waiting for the kernel's output thread to go idle: after a cell that printed, that took 0.2 s a call)
        outcome = contain(call, timeout=self.timeout, label=f"a {self.what} of the model's code", settle=0.0)
        if outcome.status == "done":
            return outcome.value
        why = {"timeout": f"did not end within its {self.timeout:g} s" if self.timeout else "did not end",
               "interrupted": "was interrupted", "error": "failed"}[outcome.status]
        if type(self.hooks) is tuple:  # a printer: by type or by type name (IPython moves it to the first when used)
            for table in self.hooks:
                for key in [key for key, value in dict.items(table) if value is self]:  # plain keys (see `_plain_key`)
                    table.pop(key)
        elif type(self.hooks) is asyncio.Handle:  # a reader on the event loop, which drops it once it is cancelled
            self.hooks.cancel()
        elif self.hooks is not None:  # (None: a callback on the event loop, called once) by identity, not remove()
            for i in [i for i, entry in enumerate(list.copy(self.hooks)) if entry is self][::-1]:
                del self.hooks[i]
        print(f"gptoss_lab: a {self.what} that the model's code registered {why}: it is "
              f"{'stopped' if self.hooks is None else 'taken out'}.", file=sys.stderr)
        return unchanged if self.what.endswith("transformer") else None


class _Guards:
    """The stand-ins, installed while model code runs or a thread it started is still alive.

    A thread is the model's during a run if it did not exist when the run began, and afterwards if it
    was still running when its run ended. The stand-ins refuse the model's threads only.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.runs: list[_Run] = []
        self.trusted: dict[int, threading.Thread] = {}     # ident -> thread, as `_Run.started` (compared by identity)
        self.lingering: dict[int, threading.Thread] = {}
        self.stuck: dict[int, threading.Thread] = {}
        # threads a call left running, stopped at its timeout: ident -> (thread, when, the timeout, whose they are)
        self.overdue: dict[int, tuple[Any, float, float, str]] = {}
        self.children: list[tuple[Any, float, float, str]] = []  # processes it started, so: (psutil.Process, ...)
        self.installed: list[tuple[Any, str, Any, Any]] = []   # owner, name, original, stand-in
        self.made: dict[tuple[Any, str], tuple[Any, Any]] = {}  # (owner, name): original, its stand-in
        self.shell: Any = None
        self.timers: list[int] = []
        self.exits: list[Callable[[], None]] = []  # what the model's threads registered with atexit, as the lab's calls
        self.recursion_limit = sys.getrecursionlimit()  # the lowest the model's code may set (taken at install)
        self.fds: dict[int, tuple[int, int]] = {}  # the process's file descriptors when the runs began: their files
        self.output: TextIO | None = None       # the latest run's: where os.write(1 or 2, ...) of the code goes
        self.descriptors: _Descriptors | None = None  # descriptors 1 and 2 sent to `output` while runs go on
        self.reaper: threading.Thread | None = None

    def is_model_thread(self) -> bool:
        ident = _get_ident()
        # read before `lingering`: a run ends by filing its threads there, then leaving `runs` (see `running`); read
        # after, a thread of the code's that looked between the two was nobody's (the kernel's real functions)
        running = bool(self.runs)
        thread = _thread_of(ident)  # None: a low-level thread, which the model's code may have started
        lingering = self.lingering.get(ident)
        if lingering is not None and _is(ident, lingering):
            return True
        return running and (thread is None or self.trusted.get(ident) is not thread)

    def caller_timeout(self) -> float | None:
        """The timeout of the call whose code runs on this thread: the latest run's, or the one the thread is stopped
        at, as one its code left running."""
        overdue = self.overdue.get(_get_ident())
        if overdue is not None:
            return overdue[2]
        runs = list(self.runs)
        return runs[-1].timeout if runs else None

    def watching(self) -> bool:
        """Whether this thread watches a run. It runs only the lab's code meanwhile, so anything else it runs is the
        code's: a finalizer of the code's objects dropped by the clean-up (`builtins.print = Evil()`, whose __del__
        called the real `os._exit` here and ended the kernel), or a key's __eq__ a look-up compared."""
        ident = _get_ident()
        return any(run.watcher == ident for run in list(self.runs))

    @contextlib.contextmanager
    def running(self, output: TextIO | None, namespace: dict[str, Any] | None,
                settle: float = SETTLE) -> Iterator[_Run]:
        """The guards installed, output routed and `exit`/`quit` in `namespace` refused, for one run."""
        with self.lock:
            if not self.runs:
                _flush_streams()
                _settle(self.lingering, settle)
                if output is not None and os.name == "posix":
                    with contextlib.suppress(OSError):   # 1 or 2 closed (a daemon): nothing to send there
                        self.descriptors = _Descriptors(self._write_output)
                self.trusted = {i: t for i, t in dict(_active).items() if self.lingering.get(i) is not t}
                self.fds = _open_fds()
            self.output = output if output is not None else self.output
            run = _Run()
            self.runs.append(run)
        # what the finally below puts back, each once it is known: a failure in between (`sys.path` made a tuple by
        # a thread of an earlier run's) had left the kernel's fds 1 and 2 sent into the run's pipe for good
        kept, names, streams, users, kept_builtins = False, None, None, [], None
        try:
            users = [key for key in list(namespace) if type(key) is not str] if namespace is not None else []  # below
            kept_builtins = namespace.get("__builtins__") if namespace is not None else None
            with self.lock:
                if not self.installed:
                    self._install()
                else:  # a thread of an earlier run's still runs; ipykernel may have put its own input() back since
                    self._stand_ins()
            names = _stand_in_names(namespace)
            streams = _route(output) if output is not None else None
            with self.lock:
                originals = {id(stand_in): original for original, stand_in in self.made.values()}
                run.kept = ([dict(zip(attributes, map(originals.get, map(id, attributes.values()), attributes.values())))
                             for _, attributes in _KEPT], dict(_modules),
                            [(hooks, hooks[:]) for hooks in (sys.meta_path, sys.path_hooks, sys.path, gc.callbacks)],
                            dict(sys.path_importer_cache), _class_state())
                run.shell_hooks = _ShellHooks()
                kept = True
            yield run
        finally:
            if kept:
                self.put_back(run)  # first: what follows runs these modules' code (contextlib's, threading's ...)
            for name, stream in (streams or {}).items():  # put back even if the code replaced them
                _TAKEN_OUT.append(vars(sys).get(name))  # (the code's, not freed here: see _TAKEN_OUT)
                setattr(sys, name, stream)
            if names is not None:   # (known once `users` and `kept_builtins` are)
                _restore_names(namespace, names, users)
            if names is not None and namespace is not None and namespace.get("__builtins__") is not kept_builtins:
                # rebound or deleted by the code: every later cell and call would have no print, import ...
                _TAKEN_OUT.append(namespace.get("__builtins__"))  # the code's, not freed here (see _TAKEN_OUT)
                if kept_builtins is None:
                    namespace.pop("__builtins__", None)
                else:
                    namespace["__builtins__"] = kept_builtins
            with self.lock:
                # the code's threads still running are the model's from here on: counted before the run ends (in
                # between, a thread of the code's was nobody's, and got the kernel's stream and the real os._exit)
                self.lingering.update(run.started())
                self.runs.remove(run)
                if not self.runs and self.descriptors is not None:
                    self.descriptors.close()
                    self.descriptors = None
                self._uninstall_if_done()
                self._watch_lingering()

    def put_back(self, run: _Run) -> None:
        """The builtins, `sys` attributes and modules that were there when the run began, as they were
        (`builtins.print = None`, `sys.modules.clear()`, `sys.displayhook = None` would leave later cells
        failing, and `vars(signal).clear()` the lab's own clean-up); what the code added stays, as in a cell.
        A stand-in still installed stays in place, and so does the run's output routing (`sys.stdout`).
        The hook lists' entries too (and sys.path's), in their order, what the code added after them (by
        identity: == would ask the code's objects' __eq__), and the finders of sys.path_importer_cache (one of the
        code's there would run at every later import); a negative entry it dropped (importlib.invalidate_caches)
        stays dropped. Threading's classes as they were, additions taken out (`_put_back_classes`)."""
        kept, kept_modules, kept_hooks, kept_finders, kept_classes = run.kept
        with self.lock:
            _put_back_classes(kept_classes)  # first: what follows runs threading's methods
            run.said += self._put_back(kept, kept_modules, kept_hooks, kept_finders)
            run.put_back_settings()
            if run.shell_hooks is not None:
                try:
                    run.shell_hooks.put_back(run.timeout)
                except Exception:  # a shell the code made unrepairable: never an error here (the watcher retries
                    pass           # a put-back that raises, as it would one the code raised into it)
        _free_kernel_locks()  # once the builtins it looks up are back

    def refill(self, run: _Run) -> None:
        """While the code runs: the builtins and attributes of `sys`, `threading`, `os` ... that it deleted, back
        within POLL. The kernel's other threads share them: `vars(builtins).clear()` left there for the whole run
        ended its output thread and its history saver the next time they woke (every name, `Exception` in an
        `except` clause too, was gone); threading's class attributes too. What the code replaced stays until the run
        ends, as the code may rely on it."""
        with self.lock:
            self._put_back_attributes(run.kept[0], if_gone=True)
            _put_back_classes(run.kept[4], if_gone=True)

    def _put_back_attributes(self, kept: list[dict[str, Any]], *, if_gone: bool = False) -> None:
        """The `_KEPT` modules' attributes as they were when the run began (with `if_gone`: only those taken out);
        where a stand-in is installed, the stand-in, never the original it guards (`del os._exit`, then
        `os._exit(1)`, would end the kernel)."""
        for (owner, attributes), before in zip(_KEPT, kept):
            guarded = {name: stand_in for installed, name, _, stand_in in self.installed
                       if installed is owner and name in before}
            _restore_all(attributes, before | guarded, if_gone=if_gone)

    def _put_back(self, kept: list[dict[str, Any]], kept_modules: dict[str, Any],
                  kept_hooks: list[tuple[list[Any], list[Any]]], kept_finders: dict[Any, Any]) -> list[str]:
        """What `put_back` says of them: the import path, where the code had changed the kernel's entries of it."""
        said = []
        for hooks, before in kept_hooks:
            added = [now for now in hooks if not any(now is then for then in before)]
            if hooks is _GC_CALLBACKS and added:  # run by whichever thread collects next, the kernel's too: they go
                _TAKEN_OUT.extend(added)          # (a looping one hung the user's next cell); kept, not freed here
                hooks[:] = before
            elif any(not any(now is then for now in hooks) for then in before) or (  # the code took one out
                    hooks is _path and not _same_start(hooks, before)):  # or put its folders first: `sys.path.insert(0,
                hooks[:] = before + added   # folder)` had its modules shadow the user's at their next import
                said += ["sys.path (the folders it added come after the kernel's)"] * (hooks is _path)
        self._put_back_attributes(kept)
        _restore_all(_modules, kept_modules)
        finders = sys.path_importer_cache  # the kernel's again, were it rebound
        with Seized(_tables_lock):  # a thread later filed under that ident would compare it (threading.current_thread())
            _plain_keys(_active, int)
        if not _unchanged(finders, kept_finders):
            _plain_keys(finders)
            for folder, finder in kept_finders.items():
                _restore(finders, folder, finder, if_there=finder is None)
        return said

    def keep_stopping(self, threads: dict[int, Any]) -> None:
        """Threads that did not stop when told: stop them again every REPEAT seconds until they end."""
        with self.lock:
            self.lingering.update(threads)
            self.stuck.update(threads)
            self._watch_lingering()

    def stop_at(self, threads: dict[int, Any], when: float, timeout: float, label: str) -> None:
        """Stop `threads` (by ident), which a call of `label` left running, at `when` (monotonic), its `timeout`'s end:
        a thread it started outlived it with no bound (a `while True: try: ... except BaseException: pass` loop held a
        core for good after the turn). Those they start meanwhile go with them (see `_start_seen`)."""
        if not threads:
            return
        with self.lock:
            self.overdue.update({ident: (thread, when, timeout, label) for ident, thread in threads.items()})
            self._watch_lingering()

    def end_at(self, pids: set[int], when: float, timeout: float, label: str) -> int:
        """End the child processes `pids` that a call of `label` started, and theirs, at `when` (monotonic), its
        `timeout`'s end: a forked child (`if os.fork() == 0: while True: pass`, a multiprocessing Process) or a
        program it started ran on after the turn for good, the fork a copy of the kernel with its sockets.
        How many still run (not those that ended and wait to be waited for)."""
        if not pids:
            return 0
        import psutil

        processes = []
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                process = psutil.Process(pid)  # (which knows its start time: a pid used again is not it)
                if process.status() != psutil.STATUS_ZOMBIE:
                    processes.append(process)
        with self.lock:
            self.children += [(process, when, timeout, label) for process in processes]
            self._watch_lingering()
        return len(processes)

    def _watch_lingering(self) -> None:
        if (self.installed or self.overdue or self.stuck or self.children) and self.reaper is None:
            self.reaper = threading.Thread(target=self._reap, name="gptoss-python-reaper", daemon=True)
            self.reaper.start()

    def _reap(self) -> None:
        """Stop the threads that are overdue, keep stopping the stuck ones, and take the stand-ins out once the model's
        threads have all ended."""
        while True:
            _sleep(REPEAT)
            self._stop_overdue()
            self._end_children()
            with self.lock:
                self.stuck = {ident: t for ident, t in self.stuck.items() if _running(ident, t)}
                _poke(self.stuck, ToolTimeout)
                self._uninstall_if_done()
                if not (self.installed or self.overdue or self.stuck or self.children):
                    self.reaper = None
                    return

    def _stop_overdue(self) -> None:
        """The threads whose call's timeout has passed stopped, as the call's own code is (`_stop`), and one line on the
        user's stderr for each call's: how many were stopped and how many did not stop (those are kept being stopped)."""
        now = _monotonic()
        with self.lock:
            ended = [ident for ident, (thread, *_) in self.overdue.items() if not _running(ident, thread)]
            due = {ident: entry for ident, entry in self.overdue.items() if entry[1] <= now and ident not in ended}
            for ident in [*ended, *due]:
                del self.overdue[ident]
        calls: dict[tuple[float, float, str], dict[int, Any]] = {}
        for ident, (thread, *call) in due.items():
            calls.setdefault(tuple(call), {})[ident] = thread
        for (_, timeout, label), threads in calls.items():
            stuck = _stop(threads, ToolTimeout.after(timeout))
            with self.lock:
                self.stuck.update(stuck)
            print(_overdue_line(label, timeout, len(threads), len(stuck)), file=sys.stderr)

    def _end_children(self) -> None:
        """The child processes whose call's timeout has passed killed (SIGKILL: a handler of the code's cannot keep
        them), with those they started, and one line on the user's stderr for each call's."""
        import psutil

        now = _monotonic()
        with self.lock:
            due = [entry for entry in self.children if entry[1] <= now]
            self.children = [entry for entry in self.children if entry[1] > now]
        calls: dict[tuple[float, float, str], int] = {}
        for process, *call in due:
            ended = 0
            with contextlib.suppress(psutil.Error):
                for each in [process, *process.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        if each.status() != psutil.STATUS_ZOMBIE:  # (one that ended, not yet waited for)
                            each.kill()
                            ended += 1
            calls[tuple(call)] = calls.get(tuple(call), 0) + ended
        for (_, timeout, label), ended in calls.items():
            if ended:
                print(f"gptoss_lab: {ended} process{'es' * (ended != 1)} started by {label} still ran at the call's "
                      f"{timeout:g} s timeout: ended", file=sys.stderr)

    def _uninstall_if_done(self) -> None:
        """Take the stand-ins out once no run is going on and no thread of the model's is alive."""
        if _thread_of(_MAIN) is not _MAIN_THREAD:  # taken out by a thread that ended under a replaced get_ident
            with Seized(_tables_lock):
                _plain_keys(_active, int)
                _active[_MAIN] = _MAIN_THREAD
        _stopping.intersection_update(_current_frames())
        self.lingering = {ident: t for ident, t in self.lingering.items() if _running(ident, t)}
        if self.runs or self.lingering:
            return
        for owner, name, original, stand_in in reversed(self.installed):
            if getattr(owner, name, None) is stand_in:
                setattr(owner, name, original)
        self.installed = []
        if self.shell is not None:
            self.shell._trait_validators.pop("exit_now", None)
            self.shell = None
        for which in self.timers:  # a timer the code set (when its signal had a handler) goes with it
            if which != signal.ITIMER_REAL or not _deadline_rings():  # (set since by a function's call, running: it
                signal.setitimer(which, 0)                            # ran on past its timeout, unbounded)
        self.timers = []
        for call in self.exits:
            _unregister(call)
        self.exits = []

    def at_exit(self, register: Callable[..., Any], fn: Any, *args: Any, **kwargs: Any) -> Any:
        """atexit.register from the model's threads: it would run the code unguarded and untimed as the kernel
        ends, so it is registered as a call of the lab's, taken out with the stand-ins (unregistering the code's
        own callable would ask its __eq__, on the kernel's thread)."""
        if not callable(fn):
            raise TypeError("the first argument must be callable")

        def call() -> None:
            fn(*args, **kwargs)

        register(call)
        self.exits.append(call)
        return fn

    def at_fork(self, register: Callable[..., Any], *args: Any, **hooks: Any) -> Any:
        """os.register_at_fork from the model's threads: `before` and `after_in_parent` would run the code in the
        kernel's own process at every later fork, unguarded and untimed (`before=lambda: os._exit(3)` ended the kernel
        at the user's next multiprocessing Pool), so they run only while the stand-ins are in; `after_in_child` runs
        in the new process only and stays (`random` reseeds there, imported first by the code)."""
        def while_guarded(hook: Callable[[], Any]) -> Callable[[], None]:
            def call() -> None:
                if self.installed:
                    hook()
            return call

        hooks = {name: while_guarded(hook) if name != "after_in_child" and callable(hook) else hook
                 for name, hook in hooks.items()}
        return register(*args, **hooks)  # (the real function's errors: arguments not by keyword, not callable)

    def write(self, original: Callable[..., Any], where: Any, data: Any) -> int:
        """os.write(1 or 2, ...) and the kernel's streams' write from the model's threads: into the latest run's
        bounded output, as print goes (a thread the code left running printed into the user's later cells without
        bound)."""
        if self.output is None:
            return original(where, data)
        self.settle()
        if isinstance(data, str):
            return self.output.write(data)
        data = memoryview(data).tobytes()
        self.output.write(data.decode(errors="replace"))
        return len(data)

    def settle(self) -> None:
        """What children wrote so far into the output, before the code's own next write (in order)."""
        descriptors = self.descriptors
        if descriptors is not None:
            descriptors.settle()

    def _write_output(self, text: str) -> None:
        output = self.output
        if output is not None:
            output.write(text)

    def _install(self) -> None:
        self.recursion_limit = sys.getrecursionlimit()
        self._stand_ins()
        switch, excepthook = sys.setswitchinterval, threading.excepthook

        def setswitchinterval(interval: float) -> None:
            if self.is_model_thread():
                raise PermissionError("sys.setswitchinterval could let the code hold the kernel past its timeout; "
                                      "the python tool does not allow it")
            switch(interval)

        def quiet_stops(args: Any) -> None:  # a thread of the model's that was stopped ends without a traceback
            if not (isinstance(args.exc_value, _Stops) and self.is_model_thread()):
                excepthook(args)

        unraisable, stderr = sys.unraisablehook, sys.stderr

        def freed_on_watcher(args: Any) -> None:
            """An object of the code's finalized on the watching thread (by the garbage collector: what the clean-up
            replaces is kept, see _TAKEN_OUT) whose __del__ was refused or failed: one line of the lab's in the run's
            output. Python's hook printed the lab's traceback in the cell and asked the code's exception for its str,
            on the kernel's thread (a loop there held the kernel for good)."""
            if not self.watching():
                unraisable(args)
                return
            what = "tried to end the kernel" if type(args.exc_value) is ExitRefused else "failed"
            text = f"gptoss_lab: an object the code left behind {what} as it was freed: ignored\n"
            if self.output is not None:
                self._write_output(text)
            else:
                stderr.write(text)

        self._replace(sys, "setswitchinterval", setswitchinterval)
        self._replace(threading, "excepthook", quiet_stops)
        self._replace(sys, "unraisablehook", freed_on_watcher)
        if hasattr(signal, "getitimer"):
            self.timers = [w for w in (signal.ITIMER_REAL, signal.ITIMER_VIRTUAL, signal.ITIMER_PROF)
                           if signal.getitimer(w) == (0.0, 0.0)]
        self._guard_ipython_exit()

    def _stand_ins(self) -> None:
        """Put each stand-in in place, where it is not already."""
        for owner, name in _patch_table():
            original = getattr(owner, name)
            made = self.made.get((owner, name))
            if made is not None and original is made[1]:
                continue
            if made is None or made[0] is not original:  # made once, unless someone else replaced it since
                made = self.made[owner, name] = original, _stand_in(original, name)
            self._replace(owner, name, made[1])

    def _replace(self, owner: Any, name: str, stand_in: Any) -> None:
        self.installed.append((owner, name, getattr(owner, name), stand_in))
        setattr(owner, name, stand_in)

    def _guard_ipython_exit(self) -> None:
        """IPython's `exit` (and `get_ipython().ask_exit()`) only set `shell.exit_now`, which stops the
        kernel moments later: a validator on that trait refuses it to the model's threads."""
        ipython = sys.modules.get("IPython")
        shell = ipython.get_ipython() if ipython is not None else None
        if shell is None or not shell.has_trait("exit_now") or "exit_now" in shell._trait_validators:
            return

        def refuse(owner: Any, proposal: Any) -> Any:
            if proposal["value"] and self.is_model_thread():
                raise ExitRefused("exit() would end the kernel, so the python tool does not allow it; "
                                  "the code stopped here")
            return proposal["value"]

        shell._trait_validators["exit_now"] = refuse
        self.shell = shell


_GUARDS = _Guards()


def from_model_code() -> bool:
    """Whether this thread runs the python tool's code: a call's, or a thread it started, also one left running."""
    return _GUARDS.is_model_thread()


def _stand_in(original: Callable[..., Any], name: str) -> Callable[..., Any]:
    """`original` for the kernel's and the user's threads; for the model's, ExitRefused when the call
    would end the process (always, for exits; by its arguments, for kill and timers), EOFError
    for a prompt to the user, and an atexit or fork registration that goes with the run (`_Guards.at_exit`,
    `at_fork`)."""
    check = _CHECKS.get(name)

    def stand_in(*args: Any, **kwargs: Any) -> Any:
        if _GUARDS.is_model_thread() or name not in _WATCHERS_OWN and _GUARDS.watching():
            if name in _INPUTS:
                raise EOFError(_INPUTS[name])
            if name == "register":
                return _GUARDS.at_exit(original, *args, **kwargs)
            if name == "register_at_fork":
                return _GUARDS.at_fork(original, *args, **kwargs)
            if name in _STARTS:
                return _start_seen(original, *args, **kwargs)
            if name in _SCHEDULES:
                return _scheduled_contained(original, name, *args, **kwargs)
            if name == "send":
                return _send_inert(original, *args, **kwargs)
            if name == "set":
                return _set_untold(original, *args, **kwargs)
            args, kwargs = tuple(map(_plain, args)), {key: _plain(value) for key, value in kwargs.items()}
            if name == "write" and len(args) == 2 and (args[0] in (1, 2) or isinstance(args[0], io.TextIOBase)):
                return _GUARDS.write(original, *args)
            try:
                why = check(*args, **kwargs) if check is not None else _ALWAYS[name]
            except (TypeError, ValueError):  # wrong arguments: the real function says so
                why = None
            if why:
                raise ExitRefused(f"{why}, so the python tool does not allow it; the code stopped here")
        return original(*args, **kwargs)

    functools.update_wrapper(stand_in, original)
    del stand_in.__wrapped__  # `os._exit.__wrapped__(1)` would be the real function
    return stand_in


def _children() -> set[int]:
    """The pids of this process's children, read where Linux lists each thread's (0.2 ms; psutil took 27 ms here)."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:  # not Linux
        import psutil

        return {child.pid for child in psutil.Process().children()}
    pids: set[int] = set()
    for task in tasks:
        with contextlib.suppress(OSError):  # a thread that ended meanwhile (or a kernel without the children file)
            with open(f"/proc/self/task/{task}/children") as listed:
                pids.update(map(int, listed.read().split()))
    return pids


def _overdue_line(label: str, timeout: float, threads: int, stuck: int) -> str:
    """What the user reads of the threads of a call of `label` that were stopped at its timeout."""
    said = f"gptoss_lab: {counted(threads, 'thread')} started by {label} still ran at the call's {timeout:g} s timeout: "
    if not stuck:
        return said + "stopped"
    one = stuck == 1
    return said + (f"{threads - stuck} stopped, {stuck} did not stop (stuck in native code) and "
                   f"{'keeps' if one else 'keep'} being stopped in the background; restart the kernel if "
                   f"{'it does' if one else 'they do'} not end")


_STARTS = ("start_new_thread", "start_new", "_start_new_thread")  # _thread's, its old alias, threading's copy
# an event loop's ways to run a function later, by where the function is in their arguments (after the loop's own)
_SCHEDULES = {"call_soon": 0, "call_soon_threadsafe": 0, "call_later": 1, "call_at": 1, "add_reader": 1, "add_writer": 1}
# what the watcher calls itself while it watches (the reaper's start, the kernel's own callbacks)
_WATCHERS_OWN = ("write", *_STARTS, *_SCHEDULES)


def _start_seen(start: Callable[..., int], function: Any, args: Any, kwargs: Any = None) -> int:
    """_thread.start_new_thread from the model's threads: the function runs in a threading.Thread, which the runs
    see, stop with the code and keep guarded while it lives (a bare thread was in no thread table: it ran on past
    the timeout, and the stand-ins were taken out under it, so its later `os._exit` ended the kernel).
    A Thread's own start (its _bootstrap) goes through; started after the runs (by a thread left running), it is
    the model's too (it had the real functions: its `os._exit` ended the kernel)."""
    if getattr(function, "__func__", None) is _BOOTSTRAP:
        thread = function.__self__  # read here, not under the lock: the object may be the code's
        ident = start(function, args, *(() if kwargs is None else (kwargs,)))
        with _GUARDS.lock:
            if not _GUARDS.runs:  # during a run, the run's end counts it among the code's threads
                _GUARDS.lingering[ident] = thread
            starter = _GUARDS.overdue.get(_get_ident())
            if starter is not None:  # it ends with its starter's call
                _GUARDS.overdue[ident] = (thread, *starter[1:])
        return ident
    if not callable(function):
        raise TypeError("first arg must be callable")
    if type(args) is not tuple or not (kwargs is None or type(kwargs) is dict):
        raise TypeError("2nd arg must be a tuple, optional 3rd arg a dictionary")
    thread = threading.Thread(target=function, args=args, kwargs=kwargs, daemon=True)
    thread.start()
    return thread.ident or 0


def _scheduled_contained(schedule: Callable[..., Any], name: str, loop: Any, *args: Any, **kwargs: Any) -> Any:
    """`loop.call_soon(f)` & co (tornado's `io_loop.add_callback`) from the model's threads, on the loop of the kernel's
    thread: `f` runs as the code ran (`_Later`), watched and under its call's timeout. A thread the code left running
    put a looping `f` there after its call returned, and the kernel ran it between cells, unwatched, for good."""
    at = _SCHEDULES[name]
    if len(args) <= at or type(args[at]) is _Later or vars(loop).get("_thread_id") != _MAIN:
        return schedule(loop, *args, **kwargs)
    reader = name.startswith("add_")
    later = _Later(args[at], f"{'reader' if reader else 'callback'} on the kernel's event loop", None,
                   _GUARDS.caller_timeout())
    scheduled = schedule(loop, *args[:at], later, *args[at + 1:], **kwargs)
    if reader:  # one that fails is cancelled, else it was called again whenever its file was ready
        later.hooks = next((handle for handle in _readers(loop) if handle._callback is later), None)
    return scheduled


def _send_inert(send: Callable[..., Any], session: Any, stream: Any, msg_or_type: Any, content: Any = None,
                *args: Any, **kwargs: Any) -> Any:
    """The kernel's Session.send from the model's threads: what its displays show is text and images only
    (`displays.inert`); `display(HTML(...))` put live HTML and script in the page. Once no call runs (a thread the
    code left running), a display's text goes into the latest call's output, as its prints do, not into the user's
    later cells. Text it sends itself (a stream message) goes into the call's bounded output, as its prints do.
    Messages other than displays and text (a widget's comm, `clear_output`, a request of the code's own client) are
    refused: PermissionError (the watcher's own go: the chat view's batches while it looks for Stop)."""
    if _GUARDS.is_model_thread():
        why = refusal(msg_or_type)
        if why is not None:
            raise PermissionError(why)
        if (text := text_of(msg_or_type, content)) is not None:
            _GUARDS._write_output(text)
            return None
    if not _GUARDS.runs and (text := shown_text(msg_or_type, content)) is not None:
        _GUARDS._write_output(text + "\n")
        return None
    return send(session, stream, *inert_message(msg_or_type, content), *args, **kwargs)


def _set_untold(set_trait: Callable[..., Any], trait: Any, owner: Any, value: Any) -> Any:
    """traitlets' TraitType.set from the model's threads: a new value of a widget's synced trait is refused before the
    widget takes it (`displays.widget_refusal`): refused only when sent, the kernel's widget kept the model's value
    (an HTML widget's `<img onerror=...>`), which the next page load drew, and the user's observers saw."""
    if _GUARDS.is_model_thread() and (why := widget_refusal(trait, owner)) is not None:
        raise PermissionError(why)
    return set_trait(trait, owner, value)


def _open_fds() -> dict[int, tuple[int, int]]:
    """The process's open file descriptors and the file each is (none where they cannot be listed)."""
    for where in ("/proc/self/fd", "/dev/fd"):
        try:
            listed = _listdir(where)
        except OSError:
            continue
        return {fd: file for fd in map(int, listed) if (file := _file_of(fd)) is not None}  # not the listing's own
    return {}


def _plain(value: Any) -> Any:
    """A number (or a tuple of them) as a plain int or float, taken once: the check and the real call then
    see the same value (an int subclass's __eq__ or __lt__, or an __index__ that answers differently at
    each call, could make the check see another pid or limit than the call)."""
    if isinstance(value, tuple):
        return tuple(map(_plain, value))
    if isinstance(value, float):
        return float(value)
    if hasattr(type(value), "__index__"):
        return operator.index(value)
    return value


def _stand_in_names(namespace: dict[str, Any] | None) -> dict[str, tuple[Any, Any]]:
    """IPython puts its own `exit`/`quit` in the user namespace: refuse them too, for this run."""
    names: dict[str, tuple[Any, Any]] = {}
    for name in ("exit", "quit"):
        if namespace is not None and name in namespace:
            names[name] = (namespace[name], _stand_in(namespace[name], name))
            namespace[name] = names[name][1]
    return names


def _restore_names(namespace: dict[str, Any] | None, names: dict[str, tuple[Any, Any]], users: list[Any]) -> None:
    """IPython's `exit`/`quit` back in the namespace, after what the code put there under keys other than text (see
    `_plain_keys`; the `users` ones were there before the run) is taken out: the look-ups here would compare them."""
    if namespace is not None:
        _plain_keys(namespace, keep=users)
    for name, (original, stand_in) in names.items():
        if namespace is not None and namespace.get(name) is stand_in:  # the code may have rebound it: keep that
            namespace[name] = original


class _Descriptors:
    """The process's descriptors 1 and 2 sent into the runs' bounded output while runs go on: what a child
    process or C code writes there (`os.system("ls")`, `subprocess.run` without capture) reaches the model
    and the card, bounded, instead of going to the kernel's output unbounded and unseen by the model. When
    they are put back the pipe closes: a child left writing (`Popen(["yes"])`) gets EPIPE, not the notebook."""

    def __init__(self, sink: Callable[[str], None]) -> None:
        self._sink, self._decode = sink, codecs.getincrementaldecoder("utf-8")(errors="replace").decode
        out = _dup(1)
        try:
            self._saved = (out, _dup(2))
        except OSError:
            _close(out)
            raise
        self._pipe, write = _pipe()
        os.set_blocking(self._pipe, False)
        self._waiting = select.poll()
        self._waiting.register(self._pipe, select.POLLIN)
        _dup2(write, 1)
        _dup2(write, 2)
        _close(write)
        self._done = self._closed = False
        self._ended, self._reading, started = _thread.allocate_lock(), _thread.allocate_lock(), _thread.allocate_lock()
        self._ended.acquire()
        started.acquire()
        _start_thread(self._pump, (started,))   # low-level: in no thread table, so no run takes it for the code's
        # Until a new thread runs, CPython 3.11 files it under the ident of the thread that started it: an
        # exception the code raises into the kernel's thread (PyThreadState_SetAsyncExc) went to the pump.
        started.acquire()

    def _pump(self, started: Any) -> None:
        started.release()
        try:
            while not self._done:
                try:
                    ready = _select([self._pipe], [], [], POLL)[0]
                except (OSError, ValueError):   # closed meanwhile (close() gave up waiting)
                    break
                if ready and not self._take():
                    break   # every writer gone
            for _ in range(16):   # what was written before 1 and 2 were put back (a child may write on)
                if not self._take():
                    break
        finally:
            self._ended.release()

    def _take(self, only_waiting: bool = False) -> bool:
        with self._reading:
            if self._closed or (only_waiting and not self._waiting.poll(0)):  # a poll: 0.3 µs, a vain read 1 µs
                return False   # closed: its number may be another file's now (a thread kept this object)
            try:
                data = _read(self._pipe, 1 << 16)
            except OSError:   # nothing there now
                return False
            if data:
                self._sink(self._decode(data))
            return bool(data)

    def settle(self) -> None:
        """Take in what is in the pipe now, before the code's own next write: a child's output that is
        complete (`os.system` returned) comes before what the code prints after it."""
        while self._take(only_waiting=True):
            pass

    def close(self) -> None:
        """Put 1 and 2 back, take in what is left and close the pipe."""
        for fd, saved in zip((1, 2), self._saved):
            _dup2(saved, fd)
            _close(saved)
        self._done = True
        self._ended.acquire(timeout=2)
        with self._reading:
            self._closed = True
            _close(self._pipe)


_STREAMS = ("stdout", "stderr", "__stdout__", "__stderr__")  # __stdout__: the process's, unbounded in a kernel


def _flush_streams() -> None:
    """What was written before the runs goes out now: it stays out of their output, and the kernel's output thread
    is asleep when the code starts, not half-way through a message when the code takes the builtins it needs.
    ipykernel's flush returns once that thread has handled what was queued before it (displays too), but the
    stream's own message is queued anew behind: a last flush of stdout waits for that one."""
    for name in (*_STREAMS, "stdout"):
        with contextlib.suppress(Exception):
            getattr(sys, name).flush()


_RUN_ONCE = asyncio.BaseEventLoop._run_once.__code__  # type: ignore[attr-defined]  # asyncio's step, which waits
_SELECTS = {cls.select.__code__ for cls in vars(selectors).values()  # an event loop's wait (asyncio's, tornado's)
            if isinstance(cls, type) and issubclass(cls, selectors.BaseSelector) and "select" in vars(cls)}


def _settle(skip: Iterable[int], bound: float = SETTLE) -> None:
    """Wait (at most `bound` seconds) until the process's other threads (but those in `skip`, the model's still
    running) are asleep, with no event loop's timer due meanwhile: what the code may do to the builtins and modules
    they share (`vars(builtins).clear()`) lasts until the watcher's next look, and a thread that runs then (the
    kernel's output thread sending, its history saver writing) fails and ends. Asleep: the same frame at the same
    instruction in two looks _SETTLE_LOOK apart, and waiting as the OS sees it (a thread inside a C call, the
    history saver in sqlite, keeps its frame too, and runs Python again when the call returns)."""
    end, seen, me = _monotonic() + bound, {}, _get_ident()
    skipped = {me, *skip}
    while _monotonic() < end:
        now = {ident: (frame, frame.f_lasti) for ident, frame in _current_frames().items() if ident not in skipped}
        if now == seen and _waiting(now) and not any(_due(frame, end - _monotonic()) for frame, _ in now.values()):
            return
        seen = now
        _sleep(_SETTLE_LOOK)


def _waiting(idents: Iterable[int]) -> bool:
    """Whether the OS has each of these threads (threading's, by ident) asleep, as Linux's /proc tells; True where
    it cannot tell (another OS, a thread threading does not know)."""
    for ident in idents:
        native = getattr(_thread_of(ident), "_native_id", None)  # the kernel's and the user's threads (see _settle)
        if native is None:
            continue
        try:
            with open(f"/proc/self/task/{native}/stat", "rb") as stat:
                state = stat.read().rpartition(b")")[2].split()[0]
        except (OSError, IndexError):
            continue
        if state not in (b"S", b"T", b"t"):  # running, or in a disk wait (inside a C call)
            return False
    return True


def _due(frame: Any, within: float) -> bool:
    """An event loop's thread waiting with a timer due within `within` seconds: asyncio's next one (its wait's
    timeout counts from when the wait began: ipykernel's output thread wakes every 10 s), else the wait's own."""
    if frame.f_code not in _SELECTS:
        return False
    caller = frame.f_back
    if caller is not None and caller.f_code is _RUN_ONCE:
        loop = caller.f_locals.get("self")
        timers = getattr(loop, "_scheduled", None)  # a heap: the next one first
        return bool(timers) and timers[0].when() - loop.time() <= within
    timeout = frame.f_locals.get("timeout")
    return type(timeout) in (int, float) and 0 <= timeout <= within  # type(): asks a code's object nothing


def _route(output: TextIO) -> dict[str, Any]:
    """Send what the model's threads write on sys.stdout/sys.stderr (and __stdout__/__stderr__) to `output`;
    return the streams to restore."""
    saved = {name: getattr(sys, name, None) for name in _STREAMS}
    for name, stream in saved.items():
        setattr(sys, name, _Router(stream, output) if stream is not None else None)
    return saved


def _settled(output: TextIO) -> TextIO:
    _GUARDS.settle()
    return output


class _Router(io.TextIOBase):
    """A sys.stdout/sys.stderr that sends the model's threads' writes to the run's output and the
    others' (the kernel's, the user's background threads) to the stream it replaced. The replaced
    stream is no attribute of it: the code's `sys.stdout._original.close()` would close the kernel's."""

    def __init__(self, original: Any, output: TextIO) -> None:
        self._target = lambda: _settled(output) if _GUARDS.is_model_thread() else original

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        if not _GUARDS.is_model_thread():
            self._target().flush()

    def close(self) -> None:
        """Closing sys.stdout from the model's code does not close the kernel's stream."""

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._target().fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._target(), "encoding", None) or "utf-8"

    def __getattr__(self, name: str) -> Any:  # the model's threads see the run's output's, the others the stream's
        return getattr(self._target(), name)


# ---------------------------------------------------------------- deadline for trusted code

class deadline:
    """`with deadline(seconds, stop):` raises ToolTimeout in this thread once `seconds` have passed, and
    again every REPEAT seconds until the block ends (so `except Exception` cannot swallow it); on the main
    thread it also asks `stop()` (the view's Stop) every STOP_POLL seconds and, once it says yes, raises
    KeyboardInterrupt the same way. A block that swallowed the timeout and went on (`except BaseException: pass`
    in a retry loop) has it raised on each line it runs from then on, so no handler of its can keep it. For code
    the user trusts (function tools): it guards no exits and runs the block in place; model code goes through
    `contain`. With no seconds and no stop it does nothing.

    On the main thread it is SIGALRM, whose handler runs in this thread and so knows exactly where
    the block is (and wakes a blocking call such as `time.sleep`). Elsewhere a watcher thread raises
    the timeout (see `_poke`; a blocking native call then only sees it when it returns), and once the block
    swallowed it, one that traces the block as it is made there (`_traced_timeout`); `stop` is not
    asked there, as asking it reads the kernel's messages, which belongs to the main thread. So it does on the main
    thread where the block took SIGALRM's handler or the real-time timer over (a function of the user's that times
    itself with `signal.alarm`, or ignores the signal, ran on past its timeout for good): `taken_over` says so.
    """

    def __init__(self, seconds: float | None, stop: Callable[[], bool] | None = None) -> None:
        self.seconds, self.stop = seconds, stop
        self.finished = True
        self._alarm = False
        self._trace: tuple[Any] | None = None  # the tracer there before a block that swallowed the timeout was traced
        self._traced: type[ToolTimeout] | None = None  # see `_traced_timeout`
        self._ended: Any = None  # a lock the block holds while it runs (the watcher waits on it)
        self.taken_over = False  # the block took the alarm over on the main thread: the watcher raised the timeout

    def __enter__(self) -> deadline:
        on_main = threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGALRM")
        if not self.seconds and not (self.stop and on_main):
            return self
        self.ident, self.finished, self._stop_asked = threading.get_ident(), False, False
        self._swallowed, self._outer = False, sys._getframe(1)
        self._end = _monotonic() + self.seconds if self.seconds else None
        self._timeout = ToolTimeout.after(self.seconds) if self.seconds else None
        if on_main:
            self._handler = self._on_alarm  # (as `signal.getsignal` gives it back: `_rings`)
            self._previous, self._alarm = signal.signal(signal.SIGALRM, self._handler), True
            first = min(self.seconds or STOP_POLL, STOP_POLL) if self.stop else self.seconds
            self._interval = min(REPEAT, STOP_POLL) if self.stop else REPEAT
            signal.setitimer(signal.ITIMER_REAL, first, self._interval)
        if self.seconds:
            self._ended = _allocate_lock()
            self._ended.acquire()
            threading.Thread(target=self._watch, name="gptoss-deadline", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.finished = True
        if self._ended is not None:
            self._ended.release()
        if self._trace is not None:
            sys.settrace(self._trace[0])
        if self._alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, signal.SIG_DFL if self._previous is None else self._previous)

    def _on_alarm(self, signum: int, frame: Any) -> None:
        if self.finished:
            return
        if frame.f_code.co_filename == _HERE:  # not in the block's own exit, nor in the tracer
            if self._swallowed:  # the tracer's ring (`_on_line`) is for the block's code: rung again
                self._ring_soon()
            return
        if self._end is not None and _monotonic() >= self._end - 0.001:  # the timer may ring a hair early
            if self._swallowed:
                self._raise_on_each_line(frame)
            self._swallowed = True  # until the block ends: the next ring finds it swallowed
            raise self._timeout()
        self._stop_asked = self._stop_asked or bool(self.stop and self.stop())
        if self._stop_asked:
            raise KeyboardInterrupt

    def _raise_on_each_line(self, frame: Any) -> None:
        """Trace the block's frames (those running and those it calls) so that each of their lines raises the
        timeout: a handler's own first line then raises it out of the handler (not in `_untraced` frames). The
        tracer there before comes back when the block ends."""
        if self._trace is None:
            self._trace = (sys.gettrace(),)
        sys.settrace(self._on_call)
        while frame is not None and frame is not self._outer:
            if not _untraced(frame.f_code.co_filename):
                frame.f_trace = self._on_line
            frame = frame.f_back

    def _on_call(self, frame: Any, event: str, arg: Any) -> Any:
        return None if _untraced(frame.f_code.co_filename) else self._on_line

    def _on_line(self, frame: Any, event: str, arg: Any) -> Any:
        if event == "line" and not self.finished and not _exits_a_with(frame):
            # raising here turns tracing off; a handler further out that catches it meets the next ring's raise
            # (which traces again) at its next loop or call; off the main thread, the handler that lets it go
            # traces again (see `_traced_timeout`)
            if self._alarm and self._rings():
                self._ring_soon()
                raise self._timeout()
            raise self._traced_timeout()()
        return self._on_line

    def _traced_timeout(self) -> type[ToolTimeout]:
        """The timeout the watcher raises into a block, off the main thread, that swallowed the first: made in the
        block's thread (as a raised-in exception is), it traces the block's frames so that each of their lines
        raises it again (a function's `except BaseException: pass` loop on a thread kept its call going for good),
        and so it does again as a handler lets it go (raised by the tracer, it had turned tracing off: nested
        swallowing loops around a `time.sleep` caught every raise at the same place)."""
        if self._traced is not None:
            return self._traced
        block = self

        class Traced(self._timeout):  # type: ignore[name-defined,misc]
            def __init__(self, *args: object) -> None:
                super().__init__(*args)
                block._trace_again(_getframe(1))

            def __del__(self) -> None:
                block._trace_again(_getframe(1))

        Traced.__name__ = Traced.__qualname__ = ToolTimeout.__name__
        self._traced = Traced
        return Traced

    def _trace_again(self, frame: Any) -> None:
        """`frame` and those it runs in traced to raise the timeout (`_raise_on_each_line`), in the block's thread
        while the block runs."""
        if not self.finished and _get_ident() == self.ident:
            self._raise_on_each_line(frame)

    def _ring_soon(self) -> None:
        """The alarm rung in a few microseconds (not at once: `signal.raise_signal` runs the handler right there)."""
        signal.setitimer(signal.ITIMER_REAL, 1e-5, self._interval)

    def _rings(self) -> bool:
        """Whether the alarm is this block's still: its handler is SIGALRM's and the real-time timer runs."""
        return _getsignal(signal.SIGALRM) is self._handler and any(signal.getitimer(signal.ITIMER_REAL))

    def _watch(self) -> None:
        """The timeout raised into the block from this thread, from its end time on, every REPEAT seconds until the
        block ends; on the main thread only while the block keeps the alarm from ringing (`_rings`)."""
        timeout, wait = self._timeout, (self._end or 0) - _monotonic()
        while not self._ended.acquire(True, max(wait, 0)):
            wait = REPEAT
            if self._alarm and (self._rings() or self.finished):  # (read after: the block's end stops the alarm too)
                continue
            self.taken_over = self._alarm
            top = sys._current_frames().get(self.ident)
            if top is not None and top.f_code.co_filename != _HERE:  # not while the block's own exit runs
                _poke({self.ident: self}, timeout, force=False)
                if timeout is self._timeout:  # still running next time: the block swallowed it
                    timeout = self._traced_timeout()


def _exits_a_with(frame: Any) -> bool:
    """Whether `frame` is about to call its `with` block's __exit__ for an exception (raising there would skip it: a
    lock the block took stayed held)."""
    code, at = frame.f_code.co_code, frame.f_lasti
    return code[at:at + 1] == _PUSH_EXC_INFO and code[at + 2:at + 3] == _WITH_EXCEPT_START


_PUSH_EXC_INFO, _WITH_EXCEPT_START = bytes([dis.opmap["PUSH_EXC_INFO"]]), bytes([dis.opmap["WITH_EXCEPT_START"]])


def _untraced(filename: str) -> bool:
    """Whether code of `filename` is the lab's or the standard library's, not another installed package's."""
    return filename.startswith(_LAB) or (filename.startswith(_STDLIB) and not filename.startswith(_INSTALLED))


def _code_ids(*modules: Any) -> frozenset[int]:
    """The ids of the code objects of these modules' functions, methods and the functions nested in them.
    By identity, not file name: code the model compiles under one of these files' names is still the code's."""
    names = {module.__name__ for module in modules}
    pending: list[Any] = [*(value for module in modules for value in vars(module).values()), *_CHECKS.values()]
    seen: set[int] = set()
    codes: set[int] = set()
    while pending:
        obj = pending.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, CodeType):
            codes.add(id(obj))
            pending += obj.co_consts
        elif isinstance(obj, FunctionType) and obj.__module__ in names:
            pending += [obj.__code__, getattr(obj, "__wrapped__", None)]
        elif isinstance(obj, (staticmethod, classmethod)):
            pending.append(obj.__func__)
        elif isinstance(obj, property):
            pending += [obj.fget, obj.fset, obj.fdel]
        elif isinstance(obj, type) and obj.__module__ in names:
            pending += vars(obj).values()
    return frozenset(codes)


_OURS = _code_ids(sys.modules[__name__], threading)  # frames a stop never raises in, nor waits for
