"""Hostile model code in the python tool: it cannot end the kernel, hold it past the timeout, flood
its memory or its output, turn the user's interrupt into silence, prompt the user for input, close the
kernel's file descriptors or streams, crash it by deep recursion, or take the builtins or modules
away from later cells.

First each case on the tool itself (this process is the "kernel": that the test goes on at all shows
it lived), then in a real kernel (jupyter_client) through a whole turn, where after every case the
kernel must be alive and the next turn must work.
"""
from __future__ import annotations

import _thread
import builtins
import contextlib
import gc
import getpass
import importlib
import io
import json
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from gptoss_lab.tools import containment
from gptoss_lab.tools.base import TIMEOUT_HINT
from gptoss_lab.tools.containment import ToolTimeout, deadline
from gptoss_lab.tools.python import MAX_OUTPUT_CHARS, PythonTool

REAL_EXIT = os._exit


def _guards_gone(within: float = 2.0) -> bool:
    """True once the stand-ins are out again (the reaper takes them out when the model's threads end)."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        if os._exit is REAL_EXIT and not containment._GUARDS.installed:
            return True
        time.sleep(0.05)
    return False


# ---------------------------------------------------------------- the tool itself

EXITS = {
    "exit()": "exit() would end the kernel",
    "quit()": "quit() would end the kernel",
    "import os\nos._exit(1)": "os._exit() would end",
    "import posix\nposix._exit(0)": "os._exit() would end",
    "import os\nos.abort()": "os.abort() would end",
    "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)": "would signal the kernel's own process",
    "import os, signal\nos.kill(0, signal.SIGTERM)": "would signal the kernel's own process",
    "import os, signal\nos.killpg(os.getpgrp(), signal.SIGTERM)": "own process group",
    "import signal\nsignal.raise_signal(signal.SIGTERM)": "signal.raise_signal() would signal",
    "import signal, threading\nsignal.pthread_kill(threading.main_thread().ident, signal.SIGINT)": "signal a kernel thread",
    "import _thread\n_thread.interrupt_main()": "would interrupt the kernel",
    "import os, sys\nos.execl(sys.executable, 'python', '-c', 'pass')": "would replace the kernel's process",
    "import signal\nsignal.alarm(1)": "SIGALRM has no handler",
    "import faulthandler\nfaulthandler._sigabrt()": "faulthandler._sigabrt() would crash the kernel's process",
    "import faulthandler\nfaulthandler.dump_traceback_later(0.3, exit=True)": "would end the kernel when it fires",
    "import resource\nresource.setrlimit(resource.RLIMIT_CPU, (1, resource.getrlimit(resource.RLIMIT_CPU)[1]))":
        "would lower a limit of the kernel's own process",
    "import sys\nsys.setrecursionlimit(25)": "sys.setrecursionlimit(25) would put the kernel's own code over its",
    "import os, signal\nclass P(int):\n    def __eq__(self, other): return False\n    __hash__ = int.__hash__\n"
    "os.kill(P(os.getpid()), signal.SIGKILL)": "os.kill(",  # a pid that says it is not this one
    "import sys\nclass N(int):\n    def __lt__(self, other): return False\nsys.setrecursionlimit(N(25))":
        "sys.setrecursionlimit(25) would put",
    # a thread's id is the whole process's to kill(2) and prlimit(2) on Linux; a pidfd or /proc folder of it too
    "import os, signal, threading\nos.kill(threading.get_native_id(), signal.SIGKILL)": "signal the kernel's own process",
    "import os, signal, threading\nos.kill(threading.main_thread().native_id, signal.SIGTERM)": "the kernel's own process",
    "import os, signal\nsignal.pidfd_send_signal(os.pidfd_open(os.getpid()), signal.SIGKILL)":
        "signal.pidfd_send_signal() could signal the kernel's own process",
    "import os, signal\nsignal.pidfd_send_signal(os.open('/proc/self', os.O_RDONLY), signal.SIGKILL)":
        "signal.pidfd_send_signal() could signal the kernel's own process",
    "import resource, threading\nresource.prlimit(threading.get_native_id(), resource.RLIMIT_CPU, (1, 1))":
        "would lower a limit of the kernel's own process",
    "import sys\nsys.exit(3)": "SystemExit: 3",
    "raise SystemExit": "SystemExit",
}


@pytest.mark.parametrize("code", EXITS)
def test_ending_the_process_is_reported_as_an_error(code):
    ns = {"exit": "the user's own exit"}
    limit = sys.getrecursionlimit()
    result = PythonTool(ns, timeout=5).execute("print('before')\n" + code + "\nprint('after')")
    assert result.status == "error" and sys.getrecursionlimit() == limit
    assert result.output.startswith("before\nTraceback (most recent call last):\n")
    assert EXITS[code] in result.output and "after" not in result.output.split("\n", 1)[1]
    assert os._exit is REAL_EXIT and signal.alarm is not None and not containment._GUARDS.installed
    assert ns["exit"] == "the user's own exit"  # what the namespace held is back


def test_code_that_keeps_the_guards_own_lock_ends_at_its_timeout_and_the_next_call_runs():
    """The watcher waited for the lab's lock, which the code's dead thread owned: the call never ended (a review)."""
    started = time.monotonic()
    result = PythonTool({}, timeout=1).execute(
        "from gptoss_lab.tools import containment\ncontainment._GUARDS.lock.acquire()\nprint('kept')")
    assert (result.status, result.output.strip()) == ("done", "kept") and time.monotonic() - started < 10
    assert PythonTool({}, timeout=5).execute("print(6 * 7)").output.strip() == "42"
    assert _guards_gone()


def test_a_fork_hook_of_the_codes_runs_in_the_kernels_process_only_while_the_run_is_guarded():
    """`os.register_at_fork(before=lambda: os._exit(3))` ended the kernel at the user's next fork (a multiprocessing
    Pool; a review). A hook for the new process stays: modules the code imports first register them (random)."""
    result = PythonTool({}, timeout=5).execute(
        "import os\nos.register_at_fork(before=lambda: os._exit(3), after_in_parent=lambda: os._exit(4),\n"
        "                   after_in_child=lambda: print('child hook'))\nprint('registered')")
    assert (result.status, result.output.strip()) == ("done", "registered") and _guards_gone()
    pid = os.fork()  # as the user's Pool would: the kernel's process goes on (the hook ended it here)
    if pid == 0:
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0


def test_the_interpreters_settings_the_code_changes_are_put_back():
    """`gc.set_threshold(1, 1, 1)` made every later allocation of the kernel collect, `gc.disable()` stopped
    collection for good, and `sys.set_int_max_str_digits(640)` failed the user's later `str(10**700)` (a review);
    `gc.freeze()` kept every object of the kernel's from being collected for good."""
    before = (gc.get_threshold(), gc.isenabled(), sys.get_int_max_str_digits(), gc.get_freeze_count())
    assert before[3] == 0
    result = PythonTool({}, timeout=5).execute(
        "import gc, sys\ngc.set_threshold(1, 1, 1)\ngc.disable()\nsys.set_int_max_str_digits(640)\ngc.freeze()\n"
        "print(gc.get_threshold(), gc.isenabled(), sys.get_int_max_str_digits(), gc.get_freeze_count() > 0)")
    assert (result.status, result.output.strip()) == ("done", "(1, 1, 1) False 640 True")  # as the code set them
    assert (gc.get_threshold(), gc.isenabled(), sys.get_int_max_str_digits(), gc.get_freeze_count()) == before
    assert len(str(10**700)) == 701


BLINDS = {  # a function the guards rely on, replaced by the code first (threading's own put back once refused)
    "threading.get_ident": ("main, real = threading.main_thread().ident, threading.get_ident\n"
                            "threading.get_ident = lambda: main\ntry:\n    _thread.interrupt_main()\n"
                            "finally:\n    threading.get_ident = real"),
    "threading.current_thread": ("main, real = threading.main_thread(), threading.current_thread\n"
                                 "threading.current_thread = lambda: main\ntry:\n    _thread.interrupt_main()\n"
                                 "finally:\n    threading.current_thread = real"),
    "os.getpid": "me = os.getpid()\nos.getpid = lambda: 1\nos.kill(me, signal.SIGUSR1)",
    "signal.getsignal": "signal.getsignal = lambda sig: None\nsignal.alarm(5)",
    "resource.getrlimit": ("soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
                           "resource.getrlimit = lambda which: (0, 0)\n"
                           "resource.setrlimit(resource.RLIMIT_NOFILE, (soft - 1, hard))"),
}


@pytest.mark.parametrize("code", BLINDS.values(), ids=BLINDS.keys())
def test_replacing_what_the_guards_rely_on_does_not_blind_them(code, monkeypatch):
    for owner, name in ((threading, "get_ident"), (threading, "current_thread"), (os, "getpid"),
                        (signal, "getsignal"), (resource, "getrlimit")):
        monkeypatch.setattr(owner, name, getattr(owner, name))  # put back after the test
    received: list[int] = []
    monkeypatch.setattr(signal, "signal", signal.signal)
    signal.signal(signal.SIGUSR1, lambda sig, frame: received.append(sig))  # were it sent, the test would go on
    limits = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        result = PythonTool({}, timeout=5).execute("import _thread, os, resource, signal, threading\n" + code)
    finally:
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        signal.alarm(0)
        resource.setrlimit(resource.RLIMIT_NOFILE, limits)
    assert result.status == "error" and "ExitRefused: " in result.output and not received
    assert _guards_gone()


def test_raising_a_limit_is_allowed():
    """Only lowering the process's limits is refused: recursive code may raise the recursion limit, as in a cell."""
    limit = sys.getrecursionlimit()
    high = max(limit, containment._SAFE_RECURSION)  # as far as the stack allows (see below)
    try:
        result = PythonTool({}, timeout=5).execute(
            f"import resource, sys\nsys.setrecursionlimit({high})\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE))\n"
            f"sys.setrecursionlimit({(limit + high) // 2})\nsys.getrecursionlimit()")  # down again, not under the start
    finally:
        sys.setrecursionlimit(limit)
    assert (result.status, result.output) == ("done", f"{(limit + high) // 2}\n")


@pytest.mark.parametrize("code", ["answer = input('Password: ')", "import getpass\nanswer = getpass.getpass('Key: ')"])
def test_the_code_cannot_put_a_prompt_in_front_of_the_user(code, monkeypatch):
    """In a kernel input() and getpass() show a box in the notebook and wait for the user: the model's code
    could ask for a password that way. It gets EOFError, as when there is nobody to type; the user still can."""
    asked: list[str] = []
    for owner, name in ((builtins, "input"), (getpass, "getpass")):  # as ipykernel puts them during a cell
        monkeypatch.setattr(owner, name, lambda prompt="": asked.append(prompt) or "hunter2")
    ns: dict = {}
    result = PythonTool(ns, timeout=5).execute(code)
    assert asked == [] and "answer" not in ns
    assert result.status == "error" and result.output.splitlines()[-1].startswith("EOFError: ")
    assert "the python tool's code cannot read input" in result.output
    assert input("yours? ") == "hunter2" and asked == ["yours? "]


def test_a_prompt_is_refused_at_a_later_cell_too(monkeypatch):
    """ipykernel puts its own input() in at every cell: a run in a later cell, while a thread of an earlier
    run still keeps the guards in, refuses it too."""
    tool = PythonTool({}, timeout=5)
    lingers = "import threading, time\nthreading.Thread(target=time.sleep, args=(1,)).start()"
    assert tool.execute(lingers).status == "done"
    asked: list[str] = []
    monkeypatch.setattr(builtins, "input", lambda prompt="": asked.append(prompt) or "hunter2")  # the next cell's
    result = tool.execute("input('Password: ')")
    assert asked == [] and result.status == "error" and "EOFError: input() would wait" in result.output
    assert _guards_gone() and input("yours? ") == "hunter2"


PROMPTS = {  # ipykernel's own prompts, which builtins.input and getpass.getpass only stand for
    "Kernel.raw_input": "Kernel.raw_input(kernel, 'Password: ')",
    "Kernel.getpass": "Kernel.getpass(kernel, 'Key: ')",
    "Kernel._input_request": "Kernel._input_request(kernel, 'Password: ', None, None, password=True)",
}


@pytest.mark.parametrize("code", PROMPTS.values(), ids=PROMPTS.keys())
def test_the_code_cannot_prompt_through_the_kernel_object(code, monkeypatch):
    """`get_ipython().kernel.raw_input(...)` and the like send the notebook an input box without builtins.input."""
    from ipykernel.kernelbase import Kernel

    asked: list[str] = []
    for name in PROMPTS:
        monkeypatch.setattr(Kernel, name.split(".")[1], lambda self, prompt="", *args, **kwargs: asked.append(prompt))
    ns = {"Kernel": Kernel, "kernel": object()}
    result = PythonTool(ns, timeout=5).execute("answer = " + code)
    assert asked == [] and "answer" not in ns
    assert result.status == "error" and result.output.splitlines()[-1].startswith("EOFError: ")
    assert _guards_gone() and Kernel.raw_input(None, "yours? ") is None and asked == ["yours? "]


FDS = {
    "os.close": "os.close({r})",
    "os.closerange": "os.closerange(3, 4096)",
    "os.dup2": "os.dup2(mine, {w})",
    "open(fd)": "open({r}).close()",
    "os.fdopen": "os.fdopen({w}, 'w').close()",
    "posix.close": "import posix\nposix.close({w})",
}


@pytest.mark.parametrize("code", FDS.values(), ids=FDS.keys())
def test_the_code_cannot_close_the_kernels_file_descriptors(code):
    """Closing or replacing a descriptor the kernel had (its sockets, pipes, output) leaves it deaf; the
    code's own descriptors may be closed."""
    r, w = os.pipe()  # the kernel's, as far as the run can tell
    try:
        result = PythonTool({}, timeout=5).execute(
            "import os\nmine, theirs = os.pipe()\nos.close(theirs)\n" + code.format(r=r, w=w))
        assert result.status == "error" and "would close the kernel's own file descriptor" in result.output
        os.fstat(r), os.fstat(w)  # both still open
        assert os.write(w, b"x") == 1 and os.read(r, 1) == b"x"
    finally:
        os.close(r), os.close(w)


def test_the_code_can_close_its_own_file_descriptors():
    result = PythonTool({}, timeout=5).execute(
        "import os\na, b = os.pipe()\nc, d = os.pipe()\nos.dup2(a, b)\nos.close(a)\nos.closerange(b, b + 1)\n"
        "open(c).close()\nos.close(d)\nwith open(os.devnull) as f:\n    pass\n'closed'")
    assert (result.status, result.output) == ("done", "'closed'\n")


def test_the_code_can_write_to_its_own_file_descriptors(tmp_path):
    """os.write to any descriptor but 1 and 2 raised KeyError: 'write' (so did tempfile.mkstemp, a Pool's workers)."""
    result = PythonTool({"folder": str(tmp_path)}, timeout=5).execute(
        "import os, tempfile\nr, w = os.pipe()\nos.write(w, b'piped')\nfd, path = tempfile.mkstemp(dir=folder)\n"
        "os.write(fd, b'kept')\nos.close(fd)\nos.read(r, 5) + open(path, 'rb').read()")
    assert (result.status, result.output) == ("done", "b'pipedkept'\n")


def test_a_number_the_kernel_closed_meanwhile_is_the_codes_own_once_it_reopens_it():
    """A descriptor the kernel had at the start and closed during the run (a file object collected) got its number
    reused by the code's own pipe (subprocess.Popen's), whose closing was then refused as the kernel's (seen in CI)."""
    r, w = os.pipe()
    os.close(w)
    closer = threading.Timer(0.1, os.close, [r])  # the kernel's own thread, there before the run
    closer.start()
    result = PythonTool({}, timeout=5).execute(
        f"import os, time\ntime.sleep(0.5)\na, b = os.pipe()\nassert {r} in (a, b), (a, b)\nos.close(a)\nos.close(b)\n"
        "import subprocess\nsubprocess.run(['true'])\n'closed'")
    closer.join()
    assert (result.status, result.output) == ("done", "'closed'\n")


def test_the_kernels_stream_is_out_of_the_codes_reach(monkeypatch):
    """`sys.stdout._original.close()` closed the kernel's stream: every later cell failed on a closed file."""
    kernels = io.StringIO()
    monkeypatch.setattr(sys, "stdout", kernels)
    result = PythonTool({}, timeout=5).execute("import sys\nsys.stdout._original.close()")
    assert result.status == "error" and "AttributeError" in result.output
    assert not kernels.closed and sys.stdout is kernels


def test_os_write_to_the_output_is_bounded_like_print(capfd):
    """os.write(1, ...) and sys.__stdout__ skipped the bounded capture and went to the notebook unlimited."""
    result = PythonTool({}, timeout=5).execute("import os, sys\nos.write(1, b'x' * 100000)\nsys.__stdout__.write('x' * 100000)\n"
                                               "sys.__stdout__.flush()\nos.write(2, b'err\\n')\n'end'")
    assert result.status == "done" and "characters cut" in result.output and len(result.output) < MAX_OUTPUT_CHARS + 100
    assert result.output.endswith("err\n'end'\n")
    assert "x" not in capfd.readouterr().out  # nothing went to the process's own descriptor


def test_what_a_child_process_writes_is_the_codes_output_and_bounded(capfd):
    """`os.system`, `subprocess.run` without capture: the children's output went to the process's own
    descriptors (in a kernel: the notebook, unbounded, and never to the model). It is the code's output now."""
    result = PythonTool({}, timeout=20).execute(
        "import os, subprocess\nos.system('echo from-shell; echo err-shell >&2')\n"
        "subprocess.run('yes | head -c 100000', shell=True)\nprint('end')")
    assert result.status == "done", result.output
    assert result.output.startswith("from-shell\nerr-shell\ny\n") and result.output.endswith("y\nend\n")
    assert "characters cut" in result.output and len(result.output) < MAX_OUTPUT_CHARS + 100
    written = capfd.readouterr()
    assert "shell" not in written.out + written.err and "y\ny" not in written.out


def test_a_child_left_writing_ends_with_the_run(capfd):
    """`subprocess.Popen(['yes'])` left running wrote into the notebook for good after the call returned; its
    output now ends with the run (the pipe closes: it gets EPIPE), and nothing reaches the process's own."""
    namespace: dict = {}
    result = PythonTool(namespace, timeout=5).execute("import subprocess\np = subprocess.Popen(['yes'])\np.pid")
    note = "\n[1 process started by this code is still running in the background: it is ended at the call's 5 s timeout]"
    assert len(result.output) < MAX_OUTPUT_CHARS + 100 + len(note) and result.output.endswith("y\n" + note)  # bounded
    assert namespace["p"].wait(timeout=10) != 0  # subprocess.TimeoutExpired while it writes on
    assert "y\ny" not in capfd.readouterr().out


def test_the_code_cannot_take_builtins_or_modules_away(monkeypatch):
    """`sys.modules.clear()`, `builtins.__import__ = None`, `builtins.print = None`, `sys.displayhook = None`
    left later cells failing: what was there before the run is put back; what the code added stays, as in a cell."""
    for name in ("print", "__import__", "len"):
        monkeypatch.setattr(builtins, name, getattr(builtins, name))  # put back after the test, fix or not
    monkeypatch.setattr(sys, "displayhook", sys.displayhook)
    displayhook = sys.displayhook
    modules = dict(sys.modules)
    try:
        result = PythonTool({}, timeout=5).execute(
            "import builtins, sys, types\nsys.modules.clear()\nsys.modules['mine'] = types.ModuleType('mine')\n"
            "builtins.mine = 1\nbuiltins.print = builtins.__import__ = sys.displayhook = None\ndel builtins.len")
        put_back = {name: getattr(builtins, name, None) for name in ("print", "__import__", "len")}
        lost = [name for name in modules if name not in sys.modules]
        mine = sys.modules.pop("mine", None), builtins.__dict__.pop("mine", None)
    finally:
        sys.modules.update(modules)
    assert result.status == "done" and lost == [] and mine[0] is not None and mine[1] == 1
    assert put_back == {"print": print, "__import__": __import__, "len": len} and sys.displayhook is displayhook


def test_threadings_classes_are_put_back():
    """`threading.Thread.start = None` left every later run (and every cell starting a thread) failing with
    "'NoneType' object is not callable": threading's classes are put back as they were, what the code added to
    them (a __setattr__ every thread would run) taken out."""
    before = {cls: (cls.__bases__, dict(vars(cls))) for cls in (threading.Thread, threading.Event, threading.Timer)}
    try:
        result = PythonTool({}, timeout=5).execute(
            "import threading\nthreading.Thread.start = None\ndel threading.Event.wait\nclass Base: pass\n"
            "threading.Timer.__bases__ = (threading.Thread, Base)\nthreading.Thread.__setattr__ = lambda self, name, value: None")
        after = {cls: (cls.__bases__, dict(vars(cls))) for cls in before}
        later = PythonTool({}, timeout=5).execute("import threading\nt = threading.Thread(target=print, args=('ran',))\n"
                                                   "t.start()\nt.join()")
    finally:
        for cls, (bases, attributes) in before.items():  # put back after the test, fix or not
            for name in set(vars(cls)) - set(attributes):
                type.__delattr__(cls, name)
            for name, value in attributes.items():
                if vars(cls).get(name) is not value:
                    type.__setattr__(cls, name, value)
            cls.__bases__ = bases
    assert result.status == "done"
    assert after == before
    assert (later.status, later.output) == ("done", "ran\n")


def test_the_import_path_and_its_finders_are_put_back(tmp_path):
    """`sys.path.clear()` left every later import failing, and a finder the code put in sys.path_importer_cache
    for the standard library's folder ran at every later import, on the kernel's thread: what was there before
    is put back; what the code added stays, as in a cell."""
    path, finders = sys.path[:], dict(sys.path_importer_cache)
    ns: dict = {"ran": [], "mine": str(tmp_path)}
    try:
        result = PythonTool(ns, timeout=5).execute(
            "import sys\nclass Finder:\n    def find_spec(self, name, target=None):\n        ran.append(name)\n"
            "    def invalidate_caches(self):\n        pass\n"
            "for folder in list(sys.path_importer_cache):\n    sys.path_importer_cache[folder] = Finder()\n"
            "sys.path.clear()\nsys.path.append(mine)")
        sys.modules.pop("tabnanny", None)
        imported = importlib.import_module("tabnanny").__name__  # as the user's next cell would
        after = sys.path[:]
    finally:
        sys.path[:] = path
        sys.path_importer_cache.update(finders)
        sys.modules.pop("tabnanny", None)
    assert result.status == "done", result.output
    assert (imported, ns["ran"], after) == ("tabnanny", [], path + [str(tmp_path)])


def test_the_working_folder_environment_and_import_path_order_are_put_back_with_a_note(tmp_path, monkeypatch):
    """`os.chdir` of the code's had the user's next cell read other files by their relative paths, its
    `os.environ['PATH'] = ...` ran other programs there (a key the user set was gone), and `sys.path.insert(0, folder)`
    had its modules shadow the user's: each is put back after the call, and the call's output says so in a line. A
    module of the user's that it replaced in sys.modules is the user's again."""
    monkeypatch.setenv("USERS_KEY", "theirs")
    monkeypatch.chdir(tmp_path)
    path, environment = sys.path[:], dict(os.environ)
    try:
        result = PythonTool({"elsewhere": str(tmp_path.parent)}, timeout=5).execute(
            "import os, sys, types\nos.chdir(elsewhere)\nos.environ['PATH'] = elsewhere\ndel os.environ['USERS_KEY']\n"
            "os.environ['ITS_OWN'] = '1'\nsys.path.insert(0, elsewhere)\nsys.modules['json'] = types.ModuleType('json')\n"
            "print(os.getcwd() == elsewhere, os.environ['PATH'] == elsewhere, sys.path[0] == elsewhere)")
        after = sys.path[:]
    finally:
        sys.path[:] = path
    assert result.status == "done" and result.output.startswith("True True True\n"), result.output
    assert result.output.splitlines()[-1] == (
        f"[Put back after the call, as they were before it: sys.path (the folders it added come after the kernel's); "
        f"the working folder (os.chdir; back to {tmp_path}); the environment variables ITS_OWN, PATH, USERS_KEY]")
    assert (os.getcwd(), dict(os.environ), after) == (str(tmp_path), environment, path + [str(tmp_path.parent)])
    assert (os.environ["USERS_KEY"], sys.modules["json"]) == ("theirs", json)
    assert PythonTool({}, timeout=5).execute("import os\nos.environ.get('USERS_KEY')").output == "'theirs'\n"


def test_what_the_code_registers_to_run_at_exit_never_runs():
    """An atexit function of the code's ran as the kernel ended (restart, shutdown), unguarded and untimed:
    what the code registers is taken out again after the call."""
    script = ("from gptoss_lab.tools.python import PythonTool\n"
              "code = \"import atexit\\natexit.register(print, 'at exit')\\n@atexit.register\\ndef bye():\\n"
              "    print('bye')\\n'registered'\"\n"
              "print(PythonTool({}, timeout=5).execute(code).output, end='')")
    ended = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert (ended.returncode, ended.stdout) == (0, "'registered'\n"), ended.stderr


@pytest.mark.parametrize("then", ["1", "while True:\n    pass"], ids=["done", "timeout"])
@pytest.mark.parametrize("module", ["signal", "threading", "sys", "os", "_thread", "builtins"])
def test_a_module_the_clean_up_runs_on_can_be_emptied(module, then):
    """`vars(signal).clear()`: the lab's clean-up (signal.setitimer) raised out of the call; `vars(threading).clear()`
    or `vars(sys).clear()` before a loop: stopping the code failed, again and again, and held the kernel for good.
    What was there is put back first."""
    names = vars(sys.modules[module])
    kept = dict(names)
    try:
        result = PythonTool({}, timeout=0.5).execute(f"import {module}\nvars({module}).clear()\n{then}")
        lost = [name for name, value in kept.items() if names.get(name, names) is not value]
    finally:
        names.update(kept)
    assert lost == [] and _guards_gone()
    timed_out = ("timeout", f"Timed out after 0.5 s ({TIMEOUT_HINT})")
    assert (result.status, result.output) == (("done", "1\n") if then == "1" else timed_out)


def test_a_key_that_fails_to_compare_does_not_stop_the_put_back():
    """A key of the code's in sys.modules whose __eq__ raises, hashed as `json` (which it took out): putting
    `json` back raised out of the call (the turn had no Reply). The key is taken out: every later `import json`
    compared it (its __eq__ ran in the kernel's and the user's code)."""
    json_module, ns = sys.modules["json"], {}
    try:
        result = PythonTool(ns, timeout=5).execute(
            "import sys\nclass K(str):\n    def __hash__(self):\n        return hash('json')\n"
            "    def __eq__(self, other):\n        raise ValueError('no')\n"
            "sys.modules.pop('json')\nkey = K('x')\nsys.modules[key] = None\n'x'")
        left = [key for key in list(sys.modules) if key is ns.get("key")]
    finally:
        containment._plain_keys(sys.modules)  # the test's own clean-up, were it left there
        sys.modules["json"] = json_module
    assert (result.status, result.output) == ("done", "'x'\n") and _guards_gone() and left == []


def test_a_replaced_get_ident_does_not_stop_interrupts_being_held(monkeypatch):
    """The code's worker took the kernel's thread out of threading's table as it ended (threading asks
    threading.get_ident whose thread ends): the next run's Ctrl-C was then raised in the kernel, not held."""
    monkeypatch.setattr(threading, "get_ident", threading.get_ident)
    first = PythonTool({}, timeout=5).execute("import threading\nmain = threading.main_thread().ident\n"
                                              "threading.get_ident = lambda: main")
    assert first.status == "done"
    assert threading._active.get(threading.main_thread().ident) is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Timer(0.4, os.kill, (os.getpid(), signal.SIGINT)).start()
        try:
            result = PythonTool({}, timeout=30).execute("while True:\n    pass")
        except KeyboardInterrupt:
            pytest.fail("the interrupt was raised in the caller instead of ending the run")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert result.status == "interrupted"
    # filed under the kernel's ident by the replaced get_ident, the worker seemed ended and spun on for good
    time.sleep(0.5)
    assert not [ident for ident, frame in sys._current_frames().items() if _runs_model_code(frame)]
    assert threading.get_ident is _thread.get_ident  # put back after the call, not only by this test's monkeypatch


def _runs_model_code(frame) -> bool:
    while frame is not None:
        if frame.f_code.co_filename == "<gptoss-python>":
            return True
        frame = frame.f_back
    return False


HIJACKS = {
    "once": "raise_into_main()\n",
    "again and again": ("def pester():\n    while True:\n        try:\n            raise_into_main()\n"
                        "            time.sleep(0.001)\n        except BaseException:\n            pass\n"
                        "threading.Thread(target=pester, daemon=True).start()\n"),
}


@pytest.mark.parametrize("code", HIJACKS.values(), ids=HIJACKS.keys())
def test_an_exception_raised_into_the_callers_thread_still_stops_the_code(code):
    """PyThreadState_SetAsyncExc aimed at the kernel's thread: the call still returns, and the code is stopped."""
    ns: dict = {}
    try:
        result = PythonTool(ns, timeout=5).execute(
            "import ctypes, threading, time\nmain = threading.main_thread().ident\ndef raise_into_main():\n"
            "    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(main), ctypes.py_object(SystemExit))\n"
            + code + "n = 0\nwhile True:\n    n += 1")
        time.sleep(0.3)  # an exception still raised into this thread would land here
    except SystemExit:
        pytest.fail("the code's exception reached the caller")
    assert result.status == "error" and result.seconds < 2
    assert result.output.endswith("Hijacked: the code raised an exception into the kernel's thread, so the python "
                                  "tool stopped it\n")
    n = ns["n"]
    time.sleep(0.3)
    assert ns["n"] == n and _guards_gone()


@pytest.mark.parametrize("code", ["import sys\nsys.setrecursionlimit(10**6)",
                                  "import sys\nclass B(int):\n    pass\nsys.setrecursionlimit(B(10**9))"])
def test_the_recursion_limit_cannot_be_raised_past_the_stack(code):
    """Recursion through C code (repr, getattr) past what the thread's stack holds crashes the process."""
    limit = sys.getrecursionlimit()
    result = PythonTool({}, timeout=5).execute(code)
    assert sys.getrecursionlimit() == limit
    assert result.status == "error" and "would let deep recursion overflow the C stack" in result.output


def test_the_code_cannot_shrink_the_stacks_of_later_threads():
    """`threading.stack_size(32768)` gave every later thread a tiny stack: the next call's `repr` of a list nested
    2,000 deep then crashed the kernel (a segfault). A larger stack is allowed."""
    previous = threading.stack_size()
    try:
        shrunk = PythonTool({}, timeout=5).execute("import _thread, threading\nthreading.stack_size(32768)")
        shrunk_too = PythonTool({}, timeout=5).execute("import _thread\n_thread.stack_size(32768)")
        after = threading.stack_size()
        grown = PythonTool({}, timeout=5).execute(f"import threading\nthreading.stack_size({64 * 2**20})\n'grown'")
    finally:
        threading.stack_size(previous)
    assert after == previous and grown.output == "'grown'\n"
    for result in (shrunk, shrunk_too):
        assert result.status == "error"
        assert "ExitRefused: threading.stack_size(32768) would let recursion crash" in result.output


@pytest.mark.parametrize("code", ["__builtins__ = {}", "del __builtins__", "__builtins__ = {'print': None}"])
def test_the_code_cannot_take_the_builtins_away_from_later_code(code):
    """`__builtins__` is how the namespace's code finds print, len, import ...: rebound, every later cell and
    call would fail. It is put back after the run (the code's other names stay, as in a cell)."""
    ns = {"__builtins__": builtins, "kept": 1}  # as in IPython's namespace
    tool = PythonTool(ns, timeout=5)
    assert tool.execute(code + "\nmine = 2").status == "done"
    assert ns["__builtins__"] is builtins and (ns["kept"], ns["mine"]) == (1, 2)
    assert tool.execute("print(len('abc'))").output == "3\n"
    exec("import json\nassert len(json.dumps(1)) == 1", ns)  # as the user's next cell would run in it


def test_the_users_own_threads_keep_the_real_functions_while_model_code_runs():
    """A thread of the user's (older than the run) signals this process during the run: it works."""
    received = []
    previous = signal.signal(signal.SIGUSR1, lambda *args: received.append("USR1"))
    user_thread = threading.Thread(target=lambda: (time.sleep(0.3), os.kill(os.getpid(), signal.SIGUSR1)))
    try:
        user_thread.start()
        result = PythonTool({}, timeout=5).execute("import time\ntime.sleep(0.6)\n'slept'")
    finally:
        user_thread.join()
        signal.signal(signal.SIGUSR1, previous)
    assert (result.status, result.output, received) == ("done", "'slept'\n", ["USR1"])


NESTED_LOOP = ("n = 0\nwhile True:\n    try:\n        n = 1\n        while True:\n            try:\n"
               "                n += 1\n            except BaseException:\n                pass\n"
               "    except BaseException:\n        continue")
HOLDS = {
    "except Exception, sleeping": "import time\nwhile True:\n    try:\n        time.sleep(0.01)\n    except Exception:\n        pass",
    "except BaseException, nested": NESTED_LOOP,
    # each stop came as the sleep returned, was caught by the inner handler, and its raise there (which turns tracing
    # off) by the outer one: the worker ran on for good
    "except BaseException, nested, around a sleep": ("import time\nwhile True:\n    try:\n        while True:\n"
                                                     "            try:\n                time.sleep(0.05)\n"
                                                     "            except BaseException:\n                pass\n"
                                                     "    except BaseException:\n        pass"),
    "SIGALRM ignored and setitimer(0)": ("import signal\ntry:\n    signal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
                                         "except ValueError as err:\n    print('refused:', err)\n"
                                         "signal.setitimer(signal.ITIMER_REAL, 0)\nn = 0\nwhile True:\n    n += 1"),
    "SIGINT ignored": ("import signal\ntry:\n    signal.signal(signal.SIGINT, signal.SIG_IGN)\nexcept ValueError:\n"
                       "    pass\nwhile True:\n    try:\n        n = 1\n        while True: n += 1\n"
                       "    except BaseException:\n        pass"),
    "switch interval": "import sys\ntry:\n    sys.setswitchinterval(1000)\nexcept Exception:\n    pass\nwhile True:\n    pass",
    "a thread that loops forever": ("import threading\ndef spin():\n    n = 0\n    while True:\n        n += 1\n"
                                    "threading.Thread(target=spin, daemon=True).start()\nwhile True:\n    pass"),
    "a finally that loops": "try:\n    n = 1\n    while True: n += 1\nfinally:\n    while True:\n        pass",
    "compiled under the lab's file name": ("from gptoss_lab.tools import containment\n"  # whose frames a stop spared
                                           "exec(compile('''" + NESTED_LOOP + "''', containment.__file__, 'exec'))"),
    "sys.settrace replaced": "import sys\nsys.settrace = lambda trace: None\n" + NESTED_LOOP,
    "a worker said to be finished": "import threading\nthreading.current_thread().finished = True\nwhile True:\n    pass",
    "a worker made another Thread": ("import threading\nclass P(threading.Thread):\n"  # (the same layout)
                                     "    __slots__ = type(threading.current_thread()).__slots__\n"
                                     "threading.current_thread().__class__ = P\nwhile True:\n    pass"),
    # every look-up on the worker made by the kernel's thread (the watcher: `worker.finished`) slept there 5 s
    "the worker's class changed": ("import threading, time\nmain = threading.main_thread()\n"
                                   "def held(self, name):\n    if threading.current_thread() is main:\n"
                                   "        time.sleep(5)\n    return object.__getattribute__(self, name)\n"
                                   "type(threading.current_thread()).__getattribute__ = held\nwhile True:\n    pass"),
}


EVIL_THREAD = (  # every look-up the kernel's thread could make on its objects loops there
    "import threading, time\nKERNEL = threading.main_thread().ident\n"
    "def held():\n    while threading.get_ident() == KERNEL:\n        pass\n"
    "class Meta(type):\n    def __eq__(cls, other):\n        held()\n        return cls is other\n    __hash__ = type.__hash__\n"
    "class T(threading.Thread, metaclass=Meta):\n"
    "    def __getattribute__(self, name):\n        held()\n        return object.__getattribute__(self, name)\n"
    "    def __hash__(self):\n        held()\n        return id(self)\n"
    "    def __eq__(self, other):\n        held()\n        return self is other\n"
    "    @property\n    def __class__(self):\n        held()\n        return T\n")


# Seconds a loaded 2-core machine may add to a stopped call (one ran 0.5 s over beside a browser test): the codes
# below held the call 5 s or for ever when they won
LOADED = 1.5


@pytest.mark.parametrize("code", HOLDS.values(), ids=HOLDS.keys())
def test_the_timeout_cannot_be_defeated(code):
    before = threading.active_count()
    result = PythonTool({}, timeout=0.5).execute(code)
    assert result.status == "timeout" and result.output.endswith(f"Timed out after 0.5 s ({TIMEOUT_HINT})")
    assert result.seconds < 0.5 + containment.GRACE + LOADED
    assert "did not stop" not in result.output and "still running" not in result.output  # it did stop
    assert threading.active_count() <= before + 1  # (+ the reaper, for a moment)
    assert _guards_gone()


def test_a_call_cannot_lift_the_timeout_of_the_turns_later_calls():
    """The first call's code set the turn's python tool's `timeout` to None (found through gc): the second call, a loop,
    ran 3 s past the turn's 0.5 s timeout (one that never ended held the kernel until the user interrupted it)."""
    from gptoss_lab import ReplayEngine, Session

    lift = ("import gc\nfrom gptoss_lab.tools.python import PythonTool\n"
            "for tool in gc.get_objects():\n    if type(tool) is PythonTool:\n        tool.timeout = None")
    loop = "import time\nstart = time.monotonic()\nwhile time.monotonic() - start < 3:\n    pass\nprint('ran 3 s')"
    calls = "".join(f"<|start|>assistant to=python<|channel|>analysis<|message|>{code}<|call|>" for code in (lift, loop))
    reply = Session(ReplayEngine(calls + "<|channel|>final<|message|>done<|return|>"), approval="auto",
                    namespace={}).ask("go", timeout=0.5)
    assert [call.status for call in reply.tool_calls] == ["done", "timeout"]
    assert reply.tool_calls[1].output == f"Timed out after 0.5 s ({TIMEOUT_HINT})" and reply.final == "done"


CTYPES_TAMPERING = {
    # the watcher made its thread idents with ctypes.c_ulong (here it would have slept 5 s on the kernel's thread)
    "ctypes.c_ulong replaced": ("import ctypes, threading, time\nreal, main = ctypes.c_ulong, threading.main_thread()\n"
                                "def held(ident):\n    if threading.current_thread() is main:\n        time.sleep(5)\n"
                                "    return real(ident)\nctypes.c_ulong = held\nwhile True:\n    pass"),
    # a common snippet: the lab called the same function object, which then refused its arguments (the call raised)
    "pythonapi's argtypes set": ("import ctypes\nctypes.pythonapi.PyThreadState_SetAsyncExc.argtypes = "
                                 "[ctypes.c_long, ctypes.py_object]\nwhile True:\n    pass"),
}


@pytest.mark.parametrize("code", CTYPES_TAMPERING.values(), ids=CTYPES_TAMPERING.keys())
def test_what_the_code_does_to_ctypes_does_not_reach_the_watcher(code, monkeypatch):
    import ctypes

    monkeypatch.setattr(ctypes, "c_ulong", ctypes.c_ulong)  # put back after the test (the code's change stays)
    monkeypatch.setattr(ctypes.pythonapi.PyThreadState_SetAsyncExc, "argtypes", None)
    result = PythonTool({}, timeout=0.5).execute(code)
    assert (result.status, result.output) == ("timeout", f"Timed out after 0.5 s ({TIMEOUT_HINT})")
    assert result.seconds < 0.5 + containment.GRACE + LOADED and _guards_gone()


def test_the_first_stop_lets_cleanup_run():
    result = PythonTool({}, timeout=0.3).execute("try:\n    n = 1\n    while True: n += 1\nfinally:\n    print('cleaned up')")
    assert result.output == f"cleaned up\n\nTimed out after 0.3 s ({TIMEOUT_HINT})"


def test_code_stuck_in_native_code_is_left_behind_and_the_user_told(capsys):
    ns: dict = {}
    start = time.perf_counter()
    result = PythonTool(ns, timeout=0.3).execute("import time\nprint('sleeping')\ntime.sleep(1.5)\nwoke = True\n"
                                                 "while True:\n    n = 1")
    assert time.perf_counter() - start < 0.3 + containment.GRACE + 0.5
    assert result.status == "timeout" and result.output.startswith("sleeping\n\nTimed out after 0.3 s")
    assert "did not stop when told" in result.output
    err = capsys.readouterr().err
    assert "did not stop at its 0.3 s timeout" in err and "restart the kernel" in err
    assert _guards_gone(within=3)  # once out of the sleep it was stopped by the reaper, loop or not


def _left_running(timeout: float) -> str:
    """The note that says a thread of the code's is still running after its call."""
    return (f"[1 thread started by this code is still running in the background: it is stopped at the call's {timeout} s "
            "timeout]")


def test_a_process_the_code_forks_ends_at_its_calls_timeout(capsys):
    """A child the code forked (a copy of the kernel, its sockets too) looping on its own ran on after the turn for
    good, out of the timeout's reach: it is killed at the call's timeout, and the user told in one line."""
    ns: dict = {}
    result = PythonTool(ns, timeout=0.5).execute("import os, time\npid = os.fork()\nif pid == 0:\n    while True:\n"
                                                 "        try:\n            time.sleep(0.05)\n"
                                                 "        except BaseException:\n            pass\n'forked'")
    end, ended = time.monotonic() + 0.5 + containment.REPEAT + LOADED, (0, 0)
    while ended == (0, 0) and time.monotonic() < end:
        time.sleep(0.05)
        ended = os.waitpid(ns["pid"], os.WNOHANG)
    if ended == (0, 0):  # (a copy of this test's process, left looping for good)
        os.kill(ns["pid"], signal.SIGKILL)
        os.waitpid(ns["pid"], 0)
    assert result.output == ("'forked'\n\n[1 process started by this code is still running in the background: it is "
                             "ended at the call's 0.5 s timeout]")
    assert os.WIFSIGNALED(ended[1]) and os.WTERMSIG(ended[1]) == signal.SIGKILL, ended
    assert "gptoss_lab: 1 process started by the model's python code still ran at the call's 0.5 s timeout: ended\n" in (
        capsys.readouterr().err)


def test_threads_the_code_starts_do_not_hold_the_call(monkeypatch):
    shown: list = []
    monkeypatch.setattr(threading, "excepthook", shown.append)  # where a thread's uncaught error is shown
    ns: dict = {}
    result = PythonTool(ns, timeout=5).execute(
        "import threading, time\ndef later():\n    time.sleep(0.5)\n    import os\n    os._exit(1)\n"
        "threading.Thread(target=later).start()\n'returned'")
    assert result.status == "done" and result.seconds < 0.4
    assert result.output == "'returned'\n\n" + _left_running(5)
    assert os._exit is not REAL_EXIT  # still guarded while the model's thread lives ...
    assert _guards_gone()  # ... whose os._exit is refused: this process is still here
    assert [type(args.exc_value).__name__ for args in shown] == ["ExitRefused"]  # and the user is shown why


def test_a_thread_the_code_leaves_running_ends_at_its_calls_timeout(capsys):
    """A thread the code started and left running in nested loops that swallow every stop ran on after the turn for
    good, holding a core: it is stopped at the call's timeout, and the user told in one line."""
    ns: dict = {}
    spin = "def spin():\n    global n\n" + "".join(f"    {line}\n" for line in NESTED_LOOP.splitlines())
    result = PythonTool(ns, timeout=0.5).execute(f"import threading\n{spin}threading.Thread(target=spin).start()\n'left'")
    assert result.output == "'left'\n\n" + _left_running(0.5)
    assert _guards_gone(within=0.5 + containment.REPEAT + containment.GRACE + LOADED)
    n = ns["n"]
    time.sleep(0.2)
    assert ns["n"] == n
    assert ("gptoss_lab: 1 thread started by the model's python code still ran at the call's 0.5 s timeout: stopped\n"
            in capsys.readouterr().err)


@pytest.mark.parametrize("start", ["_thread.start_new_thread", "_thread.start_new", "threading._start_new_thread"])
def test_a_bare_thread_is_guarded_and_stopped_like_the_others(start, monkeypatch):
    """A thread started with _thread.start_new_thread was in no thread table: it ran on past the timeout, and once
    the call returned the stand-ins were taken out under it (its `os._exit` then ended the kernel)."""
    shown: list = []
    monkeypatch.setattr(threading, "excepthook", shown.append)
    received: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda sig, frame: received.append(sig))
    ns: dict = {}
    try:
        later = PythonTool(ns, timeout=5).execute(
            f"import _thread, threading, os, signal, time\n"
            f"{start}(lambda: (time.sleep(0.5), os.kill(os.getpid(), signal.SIGUSR1)), ())\n'started'")
        assert _guards_gone()  # once the thread has ended
        time.sleep(0.1)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert later.output == "'started'\n\n" + _left_running(5)
    assert received == [] and [type(args.exc_value).__name__ for args in shown] == ["ExitRefused"]
    spun = PythonTool(ns, timeout=0.5).execute(
        f"import _thread, threading\ndef spin():\n    global n\n    n = 0\n    while True: n += 1\n{start}(spin, ())\n"
        "while True: pass")
    n = ns["n"]
    time.sleep(0.3)
    assert spun.status == "timeout" and ns["n"] == n and _guards_gone()


def test_a_thread_started_after_the_call_by_one_left_running_is_guarded_too(monkeypatch):
    """A thread the code left running started another once the call had returned: that one had the real
    functions (its `os._exit` ended the kernel)."""
    shown: list = []
    monkeypatch.setattr(threading, "excepthook", shown.append)
    received: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda sig, frame: received.append(sig))
    try:
        result = PythonTool({}, timeout=5).execute(
            "import os, signal, threading, time\ndef grandchild():\n    time.sleep(0.2)\n"
            "    os.kill(os.getpid(), signal.SIGUSR1)\ndef child():\n    time.sleep(0.3)\n"
            "    threading.Thread(target=grandchild).start()\nthreading.Thread(target=child).start()\n'started'")
        gone = _guards_gone(within=3)
        time.sleep(0.1)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert result.status == "done" and gone and received == []
    assert [type(args.exc_value).__name__ for args in shown] == ["ExitRefused"]


OUT_OF_THE_TABLE = {  # each takes itself out of threading's table, whence the lab read whether it still ran
    "the worker": "threading._active.pop(threading.get_ident())\nn = 0\nwhile True:\n    n += 1",
    "a thread it started": ("def spin():\n    global n\n    threading._active.pop(threading.get_ident())\n    n = 0\n"
                            "    while True:\n        n += 1\n"
                            "threading.Thread(target=spin).start()\nwhile True:\n    pass"),
    "a thread left running": ("def later():\n    threading._active.pop(threading.get_ident())\n    time.sleep(0.5)\n"
                              "    os.kill(os.getpid(), signal.SIGUSR1)\n"
                              "threading.Thread(target=later).start()\n'started'"),
}


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # threading's end, out of its table
@pytest.mark.parametrize("code", OUT_OF_THE_TABLE.values(), ids=OUT_OF_THE_TABLE.keys())
def test_code_out_of_threadings_table_is_still_stopped_and_guarded(code, monkeypatch):
    """`threading._active.pop(threading.get_ident())`: the call returned at once as done while the code ran on,
    unstopped, and the stand-ins were taken out under it (a later `os.kill` of the kernel went through)."""
    monkeypatch.setattr(threading, "excepthook", lambda args: None)
    received: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda sig, frame: received.append(sig))
    ns: dict = {}
    try:
        result = PythonTool(ns, timeout=0.5).execute("import os, signal, threading, time\n" + code)
        gone = _guards_gone()
        n = ns.get("n")
        time.sleep(0.3)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert gone and ns.get("n") == n and received == []
    if "started" in code:
        assert result.output == "'started'\n\n" + _left_running(0.5)
    else:
        assert (result.status, result.output) == ("timeout", f"Timed out after 0.5 s ({TIMEOUT_HINT})")


def test_a_thread_of_the_code_cannot_use_the_session_after_the_turn():
    """A thread the model's code left running waited for the turn to end (the session refuses a second turn while one
    runs), then asked the session on its own (a turn the user never asked, in the user's conversation, running more
    of the model's code), reset it (the conversation lost) or took back the user's turn. Each is refused in one line."""
    from gptoss_lab import ReplayEngine, Session

    code = ("import threading, time\ndef later():\n    time.sleep(0.3)\n"
            "    for act in (lambda: s.ask('again'), s.reset, s.rewind, s.regenerate):\n        try:\n            act()\n"
            "        except Exception as err:\n            errors.append(str(err))\nthreading.Thread(target=later).start()")
    namespace: dict = {"errors": []}
    session = namespace["s"] = Session(ReplayEngine(
        "<|channel|>analysis<|message|>x<|end|><|start|>assistant to=python<|channel|>analysis<|message|>" + code
        + "<|call|><|channel|>final<|message|>done<|return|>"), namespace=namespace, approval="auto")
    session.ask("go", timeout=5)
    end = time.monotonic() + 5
    while len(namespace["errors"]) < 4 and time.monotonic() < end:
        time.sleep(0.05)
    assert [reply.prompt for reply in session.replies] == ["go"] and session.replies[0].final == "done"
    assert [error.split(":")[0] for error in namespace["errors"]] == [
        f"the python tool's code cannot {name} the session" for name in ("ask", "reset", "rewind", "regenerate")]
    assert _guards_gone()


def test_a_print_flood_is_bounded_while_it_is_written():
    tracemalloc.start()
    try:
        result = PythonTool({}, timeout=1).execute("while True:\n    print('x' * 1000)")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.status == "timeout" and len(result.output) < MAX_OUTPUT_CHARS + 100
    assert "characters cut" in result.output
    assert peak < 5_000_000, f"peak {peak} bytes"


def test_an_interrupt_mid_run_returns_the_partial_output():
    """The kernel's interrupt is SIGINT to the process: the run ends as interrupted, with what was
    printed, and Ctrl-C works as before afterwards."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a kernel, whatever ran before
    try:
        timer = threading.Timer(0.4, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        result = PythonTool({}, timeout=30).execute("print('partial')\nn = 0\nwhile True:\n    n += 1")
        assert result.status == "interrupted" and result.seconds < 2
        assert result.output.endswith("Output before the interrupt:\npartial\n")
        assert "may have had side effects" in result.output
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("where", ["main thread", "other thread"])
def test_deadline_for_function_tools_cannot_be_swallowed(where):
    """`deadline` (used by function tools) raises again and again until the block ends, and nothing
    arrives after it."""
    seen = {}

    def work():
        start = time.perf_counter()
        try:
            with deadline(0.3):
                while True:
                    try:
                        time.sleep(0.01)
                    except Exception:
                        pass
        except ToolTimeout as err:
            seen["error"], seen["after"] = str(err), time.perf_counter() - start
        time.sleep(0.6)  # a stray re-raise would land here
        seen["clean"] = True

    if where == "main thread":
        work()
    else:
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
    assert seen == {"error": "Timed out after 0.3 s", "after": pytest.approx(0.3, abs=0.4), "clean": True}


# ---------------------------------------------------------------- in a real kernel, through a turn

SETUP = """
import json, os, sys, psutil
from gptoss_lab import Session, ReplayEngine

def turn(code, timeout=1.0):
    rec = ('<|channel|>analysis<|message|>x<|end|><|start|>assistant to=python<|channel|>analysis<|message|>'
           + code + '<|call|><|channel|>final<|message|>done<|return|>')
    reply = Session(ReplayEngine(rec), approval="auto").ask("go", timeout=timeout)
    call = reply.tool_calls[0]
    return {"status": call.status, "output": call.output, "final": reply.final, "interrupted": reply.interrupted}
"""
NEXT_TURN = "print(json.dumps(turn('print(6 * 7)')))"
KERNEL_CASES = [
    ("exit()", "error", "exit() would end the kernel"),
    ("quit()", "error", "quit() would end the kernel"),
    ("get_ipython().ask_exit()", "error", "exit() would end the kernel"),
    ("import os\nos._exit(1)", "error", "os._exit() would end"),
    ("import os, time\ndel os._exit\ntime.sleep(0.1)\nos._exit(1)", "error", "os._exit() would end"),  # deleted: the guard is back
    ("import sys\nsys.exit()", "error", "SystemExit"),
    ("import sys\nsys.setrecursionlimit(25)", "error", "would put the kernel's own code over its recursion limit"),
    ("__builtins__ = {}", "done", ""),
    ("raise SystemExit", "error", "SystemExit"),
    (HOLDS["except BaseException, nested"], "timeout", "Timed out after 1 s"),
    (HOLDS["SIGALRM ignored and setitimer(0)"], "timeout", "refused: signal only works in main thread"),
    ("import ctypes\nctypes.CDLL(None).signal(2, ctypes.c_void_p(1))\n" + HOLDS["SIGINT ignored"], "timeout", "Timed out"),
    (HOLDS["a thread that loops forever"], "timeout", "Timed out after 1 s"),
    ("while True:\n    print('x' * 1000)", "timeout", "characters cut"),
    (HOLDS["a worker said to be finished"], "timeout", "Timed out after 1 s"),
    (EVIL_THREAD + "def spin():\n    while True: pass\nT(target=spin).start()\nwhile True: pass", "timeout",
     "Timed out after 1 s"),
    ("import os\nos.closerange(3, 4096)", "error", "would close the kernel's own file descriptor"),
    ("import sys\nsys.stdout._original.close()", "error", "AttributeError"),
    ("import sys\nsys.modules.clear()", "done", ""),
    ("import os\nos.chdir('/')\nos.environ['PATH'] = '/'", "done", "the environment variable PATH]"),
    ("import builtins\nbuiltins.__import__ = None", "done", ""),
    ("import builtins\nbuiltins.print = None", "done", ""),
    ("import threading\nthreading.Thread.start = threading.Event.wait = None", "done", ""),
    ("import sys\nsys.displayhook = sys.excepthook = None", "done", ""),
    ("import os, sys\nos.write(1, b'x' * 100000)\nos.write(2, b'y' * 100000)\nsys.__stdout__.write('z' * 100000)\n"
     "sys.__stdout__.flush()", "done", "characters cut"),
    *(("import ctypes, threading, time\nmain = threading.main_thread().ident\ndef raise_into_main():\n"
       "    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(main), ctypes.py_object(SystemExit))\n"
       + code + "while True: pass", "error", "Hijacked: the code raised an exception into the kernel's thread")
      for code in HIJACKS.values()),
    ("import os\nos.system('head -c 50000 /dev/zero | tr \"\\\\0\" y')", "done", "yyyyy\n... ["),
    ("import subprocess, time\nsubprocess.Popen(['yes'])\ntime.sleep(0.3)", "done", "y\ny\n"),
    # the code's objects run by the watcher (the kernel's thread): a key's __eq__ its look-ups compared, and a
    # __del__ when the clean-up dropped the code's object; each called the real os._exit there
    *((f"import builtins, os, threading, time\nme = threading.get_ident()\nclass K:\n"
       f"    def __hash__(self): return hash({key})\n"
       "    def __eq__(self, other):\n        if threading.get_ident() != me: os._exit(3)\n        return False\n"
       f"{before}{table}[K()] = 1\n{then}time.sleep(0.2)", "done", "")
      for key, table, before, then in [("'print'", "vars(builtins)", "", "del builtins.print\n"),
                                       ("me", "threading._active", "", ""),  # K before exit in the look-up's path:
                                       ("'exit'", "globals()", "e = globals().pop('exit')\n", "globals()['exit'] = e\n")]),
    ("import builtins\nclass Evil:\n    def __call__(self, *args, **kwargs): pass\n    def __del__(self):\n"
     "        import os\n        os._exit(3)\nbuiltins.print = Evil()", "done", ""),
    ("import sys\nsys.setrecursionlimit(10**6)\nclass R:\n    def __init__(self, n): self.n = n\n"
     "    def __getattr__(self, name): return getattr(R(self.n - 1), name) if self.n else 0\nR(10**5).x",
     "error", "would let deep recursion overflow the C stack"),
]


def _execute(kc, code: str, timeout: float = 60) -> tuple[str, dict]:
    """Run a cell; what it printed, and the reply's content."""
    out: list[str] = []

    def keep(msg: dict) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append("\n".join(msg["content"]["traceback"]))

    reply = kc.execute_interactive(code, timeout=timeout, output_hook=keep)
    return "".join(out), reply["content"]


@contextlib.contextmanager
def started_kernel() -> Iterator[tuple[Any, Any]]:
    """A real kernel (jupyter_client) with SETUP run in it: its manager and client; shut down after."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3")
    out, content = _execute(kc, SETUP)
    assert content["status"] == "ok", out
    yield km, kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def kernel():
    with started_kernel() as both:
        yield both


def _assert_alive_and_answering(km, kc) -> None:
    time.sleep(0.2)  # IPython's exit would stop the kernel 0.1 s after it was asked
    assert km.is_alive()
    out, content = _execute(kc, NEXT_TURN)
    assert content["status"] == "ok", out
    assert json.loads(out) == {"status": "done", "output": "42\n", "final": "done", "interrupted": False}


@pytest.mark.kernel
def test_hostile_code_in_a_kernel_turn(kernel):
    km, kc = kernel
    _execute(kc, NEXT_TURN + "\nrss = psutil.Process().memory_info().rss\nthreads = len(__import__('threading').enumerate())"
                 "\nplace = (os.getcwd(), os.environ['PATH'])")
    for code, status, said in KERNEL_CASES:
        out, content = _execute(kc, f"print(json.dumps(turn({code!r})))")
        assert content["status"] == "ok", (code, out)
        assert len(out) < 2 * MAX_OUTPUT_CHARS, (code, out[:200])  # nothing the code wrote went past the bound
        result = json.loads(out.strip().splitlines()[-1])
        assert result["status"] == status and said in result["output"], (code, result)
        assert result["final"] == "done"  # the turn went on to the model's answer
        _assert_alive_and_answering(km, kc)
    out, _ = _execute(kc, "import threading, time\ntime.sleep(0.5)\n"
                          "print((psutil.Process().memory_info().rss - rss) // 2**20, len(threading.enumerate()) - threads,"
                          " type(os._exit).__name__, type(exit).__name__, 'exit_now' in get_ipython()._trait_validators,"
                          " place == (os.getcwd(), os.environ['PATH']))")
    grown, *rest = out.split()
    assert int(grown) < 100 and rest == ["0", "builtin_function_or_method", "ZMQExitAutocall", "False", "True"], out


@pytest.mark.kernel
def test_exit_through_the_cell_magic(kernel):
    km, kc = kernel
    out, content = _execute(kc, "%load_ext gptoss_lab\n"
                                "s = Session(ReplayEngine('<|channel|>analysis<|message|>x<|end|><|start|>assistant "
                                "to=python<|channel|>analysis<|message|>exit()<|call|><|channel|>final<|message|>"
                                "done<|return|>'), approval='auto')\n%gptoss use s")
    assert content["status"] == "ok", out
    out, content = _execute(kc, "%%gptoss --text\ngo")
    assert content["status"] == "ok", out
    out, _ = _execute(kc, "print(_gptoss.tool_calls[0].status, _gptoss.final)")
    assert out.split() == ["error", "done"]
    _assert_alive_and_answering(km, kc)


@pytest.mark.kernel
def test_interrupt_mid_run_in_a_kernel(kernel, tmp_path):
    """The user's interrupt (or Stop) while the code runs: recorded as interrupted with what it printed,
    the turn ends as interrupted, and after the code ignored SIGINT the user's interrupt still works."""
    km, kc = kernel
    # The interrupt comes once the code runs, which it says with a file: after a fixed 1.5 s the kernel was, under
    # load, still in turn() building its ReplayEngine (loading the Harmony encoding), before any turn had begun.
    running = tmp_path / "running"
    code = (f"import pathlib, time\nprint('partial', flush=True)\npathlib.Path({str(running)!r}).touch()\n"
            "while True:\n    time.sleep(0.01)")
    kc.execute(f"r = turn({code!r}, timeout=60)")
    deadline = time.monotonic() + 60
    while not running.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running.exists(), "the tool never ran the code"
    km.interrupt_kernel()
    assert kc.get_shell_msg(timeout=10)["content"]["status"] == "ok"
    out, _ = _execute(kc, "print(json.dumps(r))")
    result = json.loads(out)
    assert result["status"] == "interrupted" and result["interrupted"] is True
    assert result["output"].endswith("Output before the interrupt:\npartial\n")
    _assert_alive_and_answering(km, kc)
    # stop_on_error=False: after an error the kernel aborts the requests it receives until it has caught up, and
    # under load the next test's first request arrived in that window ("aborted")
    kc.execute("import time\ntime.sleep(30)", stop_on_error=False)
    time.sleep(0.5)
    km.interrupt_kernel()
    reply = kc.get_shell_msg(timeout=10)["content"]
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt"


@pytest.mark.kernel
@pytest.mark.parametrize(("code", "said"), [
    ("input('Password: ')", "EOFError: input() would wait for the user"),
    ("get_ipython().kernel.raw_input('Password: ')", "EOFError: raw_input() would wait for the user"),
    ("get_ipython().kernel.getpass('Password: ')", "EOFError: getpass() would ask the user for a password"),
])
def test_the_code_cannot_prompt_in_the_notebook(kernel, code, said):
    """input() from the model's code would put an input box in the notebook (a phishing prompt): none is sent."""
    km, kc = kernel
    requests: list[dict] = []
    reply = kc.execute_interactive(f"r = turn({'answer = ' + code!r})", timeout=60, allow_stdin=True,
                                   stdin_hook=requests.append, output_hook=lambda msg: None)
    assert reply["content"]["status"] == "ok" and requests == []
    out, _ = _execute(kc, "print(json.dumps(r))")
    result = json.loads(out)
    assert result["status"] == "error" and said in result["output"]
    _assert_alive_and_answering(km, kc)


@pytest.mark.kernel
def test_a_thread_the_code_left_running_does_not_write_into_the_users_later_cells(kernel):
    """What a thread of the model's code printed after its call went into the user's next cells, without bound (the
    subprocess case was already a closed pipe): it goes into the call's bounded output."""
    km, kc = kernel
    code = ("import sys, threading, time\ndef flood():\n    end = time.monotonic() + 1\n    while time.monotonic() < end:\n"
            "        print('x' * 10000)\n        sys.stderr.write('y' * 10000)\n        time.sleep(0.01)\n"
            "threading.Thread(target=flood).start()")
    out, content = _execute(kc, f"print(json.dumps(turn({code!r})))")
    assert content["status"] == "ok" and len(out) < 2 * MAX_OUTPUT_CHARS, out[:300]
    assert "still running in the background" in json.loads(out.strip().splitlines()[-1])["output"]
    out, content = _execute(kc, "import time\ntime.sleep(1.5)\nprint('mine')")
    # on a loaded machine the flood outlives the call's 1 s timeout: then the lab's one line says it was stopped
    *before, last = out.splitlines()
    assert content["status"] == "ok" and last == "mine", out[:300]
    assert all(line.startswith("gptoss_lab: 1 thread started by the model's python code still ran") for line in before), \
        out[:300]
    _assert_alive_and_answering(km, kc)


@pytest.mark.kernel
def test_a_thread_of_the_code_is_guarded_as_its_call_ends(kernel):
    """As a call ended, its run was over before its threads still running were counted as the model's: for the pipe's
    close (up to 20 ms) a thread of the code's was nobody's and got the real functions (a write to the user's cell,
    the real os._exit). Here a thread calls sys.setswitchinterval, refused to the model's threads, as its call ends:
    thousands of its calls got through a turn; one at most does (a rarer window, at a kernel's first such turn, is
    not found yet)."""
    km, kc = kernel
    code = ("import sys, threading, time\nleaks = []\ndef probe():\n    end = time.monotonic() + 0.3\n"
            "    while time.monotonic() < end:\n        try:\n            sys.setswitchinterval(0.005)\n"
            "            leaks.append(1)\n        except PermissionError:\n            pass\n"
            "threading.Thread(target=probe).start()")
    _execute(kc, NEXT_TURN)
    out, content = _execute(kc, "import sys, time\nsys.setswitchinterval(1e-6)\nfor _ in range(5):\n"
                                f"    turn({code!r})\n    time.sleep(0.4)\n    print(len(leaks), end=' ')\n"
                                "sys.setswitchinterval(0.005)")
    assert content["status"] == "ok" and sum(map(int, out.split())) <= 1, out
    _assert_alive_and_answering(km, kc)


@pytest.mark.kernel
def test_a_profiler_runs_after_a_call_the_users_and_the_codes():
    """Each call took back an exception it had left pending (PyThreadState_SetAsyncExc with NULL), which leaves the
    interpreter's "pending" flag set: on CPython 3.11 every traced thread then spun for good, so the user's
    `cProfile.run` after any call held the kernel (deaf to interrupts), and the model's own profiling timed out."""
    with started_kernel() as (km, kc):
        _execute(kc, NEXT_TURN)
        out, content = _execute(kc, "print(json.dumps(turn('import cProfile\\ncProfile.run(\"sum(range(9))\")\\n7', 5)))")
        result = json.loads(out.strip().splitlines()[-1])
        assert result["status"] == "done" and result["output"].endswith("\n7\n"), result
        out, content = _execute(kc, "import cProfile\ncProfile.run('sum(range(9))')", timeout=15)
        assert content["status"] == "ok" and "function calls" in out, out


@pytest.mark.kernel
def test_what_the_codes_displays_show_is_text_and_images_never_live_html(kernel):
    """`display(HTML(...))`, Javascript, Markdown, a bare publish or a cell the code runs put the model's HTML and
    script in the page (JupyterLab trusts what the running kernel shows): each shows its text only. A thread it left
    running displayed into the user's later cells, without bound: that goes into the call's output, as its prints do.
    The user's own HTML is shown as it was."""
    km, kc = kernel

    def shown(code: str) -> list[dict]:
        bundles: list[dict] = []
        reply = kc.execute_interactive(code, timeout=60, output_hook=lambda msg: bundles.append(msg["content"]["data"])
                                       if msg["msg_type"] in ("display_data", "execute_result") else None)
        assert reply["content"]["status"] == "ok"
        return bundles

    code = ("import threading, time\nfrom IPython.display import display, HTML, Javascript, Markdown\n"
            "display(HTML('<img src=x onerror=alert(1)>'), Javascript('alert(2)'), Markdown('<img src=y onerror=alert(3)>'))\n"
            "get_ipython().display_pub.publish({'text/html': '<script>alert(4)</script>'})\n"
            "get_ipython().run_cell('HTML(\"<script>alert(5)</script>\")')\n"
            "def flood():\n    time.sleep(0.3)\n    for _ in range(50):\n        display(HTML('<script>alert(6)</script>'))\n"
            "        time.sleep(0.01)\nthreading.Thread(target=flood).start()")
    bundles = shown(f"r = turn({code!r}, timeout=5)")
    assert [sorted(bundle) for bundle in bundles] == [["text/plain"]] * 5, bundles
    assert "text/html: not shown" in bundles[3]["text/plain"]
    later = shown("import time\nfrom IPython.display import display, HTML\ntime.sleep(1)\ndisplay(HTML('<b>mine</b>'))")
    assert later == [{"text/plain": "<IPython.core.display.HTML object>", "text/html": "<b>mine</b>"}], later
    _assert_alive_and_answering(km, kc)


WIDGETS_CODE = """
import threading, time, anywidget, traitlets, ipywidgets, ipykernel
from comm import create_comm
from jupyter_client import BlockingKernelClient
from IPython.display import clear_output
class Script(anywidget.AnyWidget):
    _esm = traitlets.Unicode("export default {initialize() { document.title = 'pwned' }}").tag(sync=True)
k = get_ipython().kernel
prompt = lambda: k.session.send(k.stdin_socket, "input_request", {"prompt": "Password: ", "password": True},
                                k.get_parent("shell"), ident=k._parent_ident["shell"])
client = BlockingKernelClient(connection_file=ipykernel.get_connection_file())
client.load_connection_file()
client.start_channels()
for attempt in (Script, lambda: ipywidgets.HTML(value="<img src=x onerror=alert(1)>"),
                lambda: create_comm(target_name="jupyter.widget"), lambda: setattr(mine, "value", "<img src=y>"),
                lambda: mine.close(), clear_output, prompt, lambda: client.execute("import os; os._exit(7)")):
    try:
        attempt()
    except PermissionError as err:
        print(str(err).split(" messages")[0])
def later():
    time.sleep(0.5)
    clear_output()
threading.Thread(target=later).start()
"""


@pytest.mark.kernel
def test_the_codes_threads_send_no_widget_comm_prompt_clear_output_or_request(kernel):
    """Only displays were made inert: the model's code opened widgets (an anywidget's `_esm` runs its script in the
    page), drew its HTML into the user's HTML widget, closed it, cleared the turn's cell (and, from a thread left
    running, the user's next cell), put a password prompt in front of the user over the stdin channel, and had its
    own client ask the kernel to run `os._exit` as a cell after the turn (the kernel died). Each is refused in one
    line; the user's own widget still updates from the user's cell."""
    km, kc = kernel
    sent: list[str] = []
    requests: list[dict] = []

    def cell(code: str) -> None:
        reply = kc.execute_interactive(code, timeout=20, allow_stdin=True, stdin_hook=requests.append,
                                       output_hook=lambda msg: sent.append(msg["msg_type"]))
        assert reply["content"]["status"] == "ok"

    cell("import ipywidgets\nmine = ipywidgets.HTML(value='<b>mine</b>')")
    sent.clear()
    cell(f"r = turn({WIDGETS_CODE!r}, timeout=5)")
    cell("import time\ntime.sleep(1)\nprint('mine')")  # the thread's clear_output comes meanwhile
    assert [kind for kind in sent if kind.startswith("comm") or kind == "clear_output"] == [] and requests == [], sent
    out, _ = _execute(kc, "print(json.dumps(r))\nprint(mine.comm is not None)")
    result, alive = out.strip().splitlines()
    output = json.loads(result)["output"]
    refused = "the python tool's code cannot send '{}'"
    assert output.splitlines()[:8] == [refused.format(kind) for kind in ("comm_open",) * 3 + (
        "comm_msg", "comm_close", "clear_output", "input_request", "execute_request")], output
    assert alive == "True"
    sent.clear()
    cell("mine.value = '<b>still mine</b>'")
    assert "comm_msg" in sent
    _assert_alive_and_answering(km, kc)
    cell("client.stop_channels()")  # the code's client, left running: its heartbeat thread wakes every second, and
    # died in a later test of this kernel that empties the builtins (its traceback in that call's output)


WIDGET_CHANGES = """
import ipywidgets
def held(hold):
    with hold():
        mine.description = 'model'
        mine.value = '<img src=held onerror=alert(1)>'
for change in (lambda: setattr(mine, 'value', '<img src=x onerror=alert(1)>'), lambda: mine.set_trait('value', 'set'),
               lambda: mine.set_state({'value': 'state'}), lambda: held(mine.hold_sync),
               lambda: held(mine.hold_trait_notifications)):
    try:
        change()
    except PermissionError as err:
        print(str(err).split(" messages")[0])
"""


@pytest.mark.kernel
def test_a_refused_change_of_the_users_widget_leaves_the_widget_as_it_was(kernel):
    """The send of the model's new value of the user's widget was refused, but the kernel's widget kept the value: a
    reloaded page drew the model's HTML, and the user's observer saw it. Now the widget never takes it."""
    km, kc = kernel
    _execute(kc, "import ipywidgets\nmine = ipywidgets.HTML(value='<b>mine</b>')\nseen = []\n"
                 "mine.observe(lambda change: seen.append(change['new']), names=['value', 'description'])")
    out, _ = _execute(kc, f"r = turn({WIDGET_CHANGES!r}, timeout=5)\nprint(json.dumps(r['output']))\n"
                          "print(json.dumps([mine.value, mine.description, seen, mine.get_state()['value']]))")
    output, state = map(json.loads, out.strip().splitlines()[-2:])
    assert output.splitlines() == ["the python tool's code cannot send 'comm_msg'"] * 5, output
    assert state == ["<b>mine</b>", "", [], "<b>mine</b>"]
    out, _ = _execute(kc, "mine.value = '<b>still mine</b>'\nprint(json.dumps([mine.value, seen]))")
    assert json.loads(out) == ["<b>still mine</b>", ["<b>still mine</b>"]]   # the user's own change is the user's


@pytest.mark.kernel
def test_text_the_code_sends_itself_is_its_bounded_output(kernel):
    """A stream message the model's code sent through the kernel's session itself skipped the bounded output: 100 kB
    went into the turn's cell, and from a thread left running into the user's later cell. It is the call's output,
    as its prints are."""
    km, kc = kernel
    code = ("import threading, time\nk = get_ipython().kernel\n"
            "say = lambda text: k.session.send(k.iopub_socket, 'stream', {'name': 'stdout', 'text': text}, k.get_parent())\n"
            "say('x' * 100000)\ndef later():\n    time.sleep(0.5)\n    say('later ' * 1000)\n"
            "threading.Thread(target=later).start()")
    out, content = _execute(kc, f"r = turn({code!r}, timeout=5)\nprint(len(r['output']), r['output'].count('x'))")
    assert content["status"] == "ok" and len(out) < 100, out[:300]  # none of it in the cell
    length, xs = map(int, out.split())
    assert length < MAX_OUTPUT_CHARS + 200 and xs > 1000, out  # in the call's output, cut to its bound
    out, content = _execute(kc, "import time\ntime.sleep(1)\nprint('mine')")
    assert content["status"] == "ok" and out == "mine\n", out[:300]
    _assert_alive_and_answering(km, kc)


@pytest.mark.kernel
def test_the_codes_displays_update_its_own_displays_never_the_users(kernel):
    """`update_display(..., display_id=)` from the model's code replaced a display of the user's (or the chat view of
    the turn, whose id it can read) with the model's text, in the page and in the saved notebook. The code's display
    ids are its own: its updates reach its own displays, never another's."""
    km, kc = kernel
    sent: list[dict] = []

    def cell(code: str) -> None:
        reply = kc.execute_interactive(code, timeout=20, output_hook=lambda msg: sent.append(msg)
                                       if msg["msg_type"] in ("display_data", "update_display_data") else None)
        assert reply["content"]["status"] == "ok"

    cell("from IPython.display import display, HTML\nhandle = display(HTML('<b>mine</b>'), display_id='mine')")
    code = ("from IPython.display import display, update_display\nupdate_display('replaced', display_id='mine')\n"
            "own = display('counting', display_id=True)\nown.update('counted')")
    cell(f"r = turn({code!r}, timeout=5)")
    ids = [(msg["msg_type"], msg["content"]["data"]["text/plain"], msg["content"]["transient"]["display_id"])
           for msg in sent[1:]]
    assert [(kind, text) for kind, text, _ in ids] == [("update_display_data", "'replaced'"),
                                                       ("display_data", "'counting'"), ("update_display_data", "'counted'")]
    assert ids[0][2] != "mine" and ids[1][2] == ids[2][2], ids  # its update reaches its own display only
    cell("handle.update(HTML('<b>still mine</b>'))")
    assert sent[-1]["content"]["transient"]["display_id"] == "mine"
    _assert_alive_and_answering(km, kc)


@pytest.mark.kernel
@pytest.mark.parametrize(("code", "status", "said"), [
    ("import builtins\nvars(builtins).clear()\n1", "done", "1\n"),
    ("import builtins\nvars(builtins).clear()", "done", ""),
    ("import builtins\nvars(builtins).clear()\n1 / 0", "error", r"(?s).*(ZeroDivisionError|could not be shown).*"),
    ("import builtins, time\nsleep = time.sleep\nvars(builtins).clear()\nsleep(0.5)\n1", "done", "1\n"),
])
def test_emptied_builtins_are_back_after_the_call_in_a_kernel(kernel, code, status, said):
    """`vars(builtins).clear()` emptied the kernel's builtins in place: the lab's own clean-up (contextlib's
    exits) then failed, fds 1 and 2 stayed in the run's pipe, the turn never got its Reply. The kernel's other
    threads share the builtins: its output thread (woken by the flush of the print before the turn) and its
    history saver died when they ran meanwhile, and a message cut short in the middle broke the channel."""
    km, kc = kernel
    out, content = _execute(kc, "import builtins, threading\nnames = sorted(vars(builtins))\n"
                                "threads = sorted(t.name for t in threading.enumerate())\nprint('before the turn')\n"
                                f"print(json.dumps(turn({code!r})))\nprint(sorted(vars(builtins)) == names)\n"
                                "print(sorted(t.name for t in threading.enumerate()) == threads)")
    assert content["status"] == "ok", out
    *_, result, same, alive = out.strip().splitlines()
    result = json.loads(result)
    assert (result["status"], result["final"]) == (status, "done"), result
    assert re.fullmatch(said, result["output"]), result  # nothing else: no kernel thread's dying traceback
    assert same == "True"  # every builtin is back
    assert alive == "True", out  # the kernel's output thread and history saver too
    _assert_alive_and_answering(km, kc)


# ---------------------------------------------------------------- the code's objects never run on the caller's thread

AFTER_THE_CODE = {  # each would run the model's code on the caller's thread (the kernel's), unguarded and untimed
    "an error whose str loops": "class E(Exception):\n    def __str__(self):\n        while True: pass\nraise E()",
    "a finalizer in the error's frames": ("def f():\n    class D:\n        def __del__(self):\n            while True: pass\n"
                                          "    d = D()\n    raise ValueError('x')\nf()"),
    "time.monotonic replaced": "import time\ntime.monotonic = lambda: 0.0\nwhile True: pass",
    "Thread.join replaced": "import threading\nthreading.Thread.join = lambda self, timeout=None: exec('while True: pass')\nwhile True: pass",
}


@pytest.mark.parametrize("code", AFTER_THE_CODE.values(), ids=AFTER_THE_CODE.keys())
def test_the_callers_thread_never_runs_the_codes_objects(code):
    saved = time.monotonic, threading.Thread.join
    try:
        start = time.perf_counter()
        result = PythonTool({}, timeout=0.5).execute(code)
        del result  # what the call returned holds nothing of the code's that runs when dropped
        assert time.perf_counter() - start < 0.5 + containment.GRACE + LOADED
    finally:
        time.monotonic, threading.Thread.join = saved


def test_the_errors_finalizer_runs_on_the_codes_thread():
    """The code's exception is dropped where it was raised: its __del__ (which could loop or exit) runs
    under the timeout and the guards, not on the kernel's thread when the garbage collector gets to it."""
    ns: dict = {}
    result = PythonTool(ns, timeout=5).execute(
        "import threading\nran = []\nclass E(Exception):\n"
        "    def __del__(self):\n        ran.append(threading.current_thread().name)\nraise E('boom')")
    gc.collect()
    assert ns["ran"] == ["gptoss-python"]
    assert result.status == "error" and result.output.endswith("E: boom\n")


def test_an_error_whose_str_exits_is_refused():
    result = PythonTool({}, timeout=5).execute("class E(Exception):\n    def __str__(self):\n        import os\n"
                                               "        os._exit(1)\nraise E()")
    assert result.status == "error" and result.output.endswith("E: <exception str() failed>\n")


def test_a_thread_whose_is_alive_loops_does_not_hold_the_call():
    result = PythonTool({}, timeout=5).execute(
        "import threading, time\nclass T(threading.Thread):\n    def is_alive(self):\n        while True: pass\n"
        "    def __eq__(self, other):\n        while True: pass\n    __hash__ = object.__hash__\n"
        "T(target=time.sleep, args=(0.5,)).start()\n'returned'")
    assert result.status == "done" and result.seconds < 0.4
    assert result.output == "'returned'\n\n" + _left_running(5)
    assert _guards_gone()


@pytest.mark.parametrize("ending", ["done", "timeout"])
def test_a_thread_whose_every_look_up_loops_does_not_hold_the_kernel(ending):
    """A Thread subclass whose __getattribute__, __class__ (isinstance), __hash__ and __eq__ loop on the
    kernel's thread: the lab never asks it anything, so the call returns, at the timeout at the latest."""
    if ending == "done":
        code, timeout = EVIL_THREAD + "T(target=time.sleep, args=(0.5,)).start()\n'returned'", 5
    else:
        code, timeout = EVIL_THREAD + "def spin():\n    while True: pass\nT(target=spin).start()\nwhile True: pass", 0.5
    result = PythonTool({}, timeout=timeout).execute(code)
    assert result.status == ending and result.seconds < 0.4 + (0 if ending == "done" else 0.5 + containment.GRACE)
    if ending == "done":
        assert result.output == "'returned'\n\n" + _left_running(5)
    else:
        assert result.output == f"Timed out after 0.5 s ({TIMEOUT_HINT})"  # and its thread was stopped with it
    assert _guards_gone()


def test_the_stand_ins_do_not_hand_out_the_real_function():
    result = PythonTool({}, timeout=5).execute("import os\nos._exit.__wrapped__(1)")
    assert result.status == "error" and "has no attribute '__wrapped__'" in result.output


CAPTURE = ("import sys, time\ncapture = next(cell.cell_contents for cell in sys.stdout._target.__closure__\n"
           "               if type(cell.cell_contents).__name__ == 'Capture')\n")  # the call's, through the router
CAPTURE_TAMPERING = {
    # the lab read the output on the caller's (the kernel's) thread: a looping one never gave the turn its Reply
    "its lock replaced": CAPTURE + ("class Lock:\n    def acquire(self, *args, **kwargs):\n        time.sleep(3)\n"
                                    "        return True\n    def release(self):\n        pass\ncapture._lock = Lock()"),
    "text put in its parts": CAPTURE + "capture._head.append('y' * 10**6)",   # shown whole, past the bound
}


@pytest.mark.parametrize("code", CAPTURE_TAMPERING.values(), ids=CAPTURE_TAMPERING.keys())
def test_what_the_code_does_to_its_output_capture_neither_holds_nor_unbounds_the_call(code):
    result = PythonTool({}, timeout=5).execute(code)
    assert result.status == "done" and result.seconds < 1 + LOADED, result
    assert len(result.output) <= 2 * MAX_OUTPUT_CHARS + 100


def test_a_str_subclass_cannot_unbound_the_output():
    result = PythonTool({}, timeout=5).execute(
        "import sys\nclass S(str):\n    def __getitem__(self, k): return 'y' * 10**6\n    def __len__(self): return 1\n"
        "for _ in range(3): sys.stdout.write(S('a'))")
    assert (result.status, result.output) == ("done", "aaa")


KEPT_LOCKS = [  # (the code, how its call ends, what the kernel then does that needs the lock)
    ("import threading\nthreading._active_limbo_lock.acquire()", "done", "threading.Thread(target=int).start()"),
    ("import threading\nthreading._active_limbo_lock.acquire()\nwhile True:\n    pass", "timeout",
     "threading.Thread(target=int).start()"),
    ("import threading\ndef keep():\n    threading._active_limbo_lock.acquire()\n"
     "t = threading.Thread(target=keep)\nt.start()\nt.join()", "done", "threading.Thread(target=int).start()"),
    ("import threading\nthreading._shutdown_locks_lock.acquire()", "done", "threading.Thread(target=int).start()"),
    ("import _imp\n_imp.acquire_lock()", "done", "import colorsys"),   # a module not imported yet
    ("import logging\nlogging._lock.acquire()", "done", "import logging\nlogging.getLogger('a.logger.not.made.yet')"),
    ("import sys\nsys.stdout._lock.acquire()\nprint('printed')", "done", ""),
]


@pytest.mark.kernel
def test_a_lock_the_kernel_needs_taken_and_kept_by_the_code_is_taken_back():
    """Locks every later thread start, new import or new logger takes, and the output's own: the code took one and
    never let go (its thread ended holding it). The turn ended with its answer all the same, and the kernel's next
    cell did what needs the lock (before, the turn never ended or the next import waited for good)."""
    with started_kernel() as (km, kc):
        for code, status, then in KEPT_LOCKS:
            out, content = _execute(kc, f"print(json.dumps(turn({code!r}, timeout=2)))", timeout=30)
            assert content["status"] == "ok", (code, out)
            result = json.loads(out.strip().splitlines()[-1])
            assert (result["status"], result["final"]) == (status, "done"), (code, result)
            if code.endswith("print('printed')"):
                assert result["output"] == "printed\n"
            out, content = _execute(kc, then + "\nprint('went on')", timeout=30)
            assert (content["status"], out) == ("ok", "went on\n"), code
            _assert_alive_and_answering(km, kc)
