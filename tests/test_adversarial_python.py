"""Hostile model code in the python tool: it cannot end the kernel, hold it past the timeout, flood
its memory, or turn the user's interrupt into silence.

First each case on the tool itself (this process is the "kernel": that the test goes on at all shows
it lived), then in a real kernel (jupyter_client) through a whole turn, where after every case the
kernel must be alive and the next turn must work.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
import tracemalloc

import pytest

from gptoss_lab.tools import containment
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
    "import sys\nsys.exit(3)": "SystemExit: 3",
    "raise SystemExit": "SystemExit",
}


@pytest.mark.parametrize("code", EXITS)
def test_ending_the_process_is_reported_as_an_error(code):
    ns = {"exit": "the user's own exit"}
    result = PythonTool(ns, timeout=5).execute("print('before')\n" + code + "\nprint('after')")
    assert result.status == "error"
    assert result.output.startswith("before\nTraceback (most recent call last):\n")
    assert EXITS[code] in result.output and "after" not in result.output.split("\n", 1)[1]
    assert os._exit is REAL_EXIT and signal.alarm is not None and not containment._GUARDS.installed
    assert ns["exit"] == "the user's own exit"  # what the namespace held is back


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


HOLDS = {
    "except Exception, sleeping": "import time\nwhile True:\n    try:\n        time.sleep(0.01)\n    except Exception:\n        pass",
    "except BaseException, nested": ("n = 0\nwhile True:\n    try:\n        n = 1\n        while True:\n            try:\n"
                                     "                n += 1\n            except BaseException:\n                pass\n"
                                     "    except BaseException:\n        continue"),
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
}


@pytest.mark.parametrize("code", HOLDS.values(), ids=HOLDS.keys())
def test_the_timeout_cannot_be_defeated(code):
    before = threading.active_count()
    result = PythonTool({}, timeout=0.5).execute(code)
    assert result.status == "timeout" and result.output.endswith("Timed out after 0.5 s")
    assert result.seconds < 0.5 + containment.GRACE + 0.5
    assert "did not stop" not in result.output and "still running" not in result.output  # it did stop
    assert threading.active_count() <= before + 1  # (+ the reaper, for a moment)
    assert _guards_gone()


def test_the_first_stop_lets_cleanup_run():
    result = PythonTool({}, timeout=0.3).execute("try:\n    n = 1\n    while True: n += 1\nfinally:\n    print('cleaned up')")
    assert result.output == "cleaned up\n\nTimed out after 0.3 s"


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


def test_threads_the_code_starts_do_not_hold_the_call(monkeypatch):
    shown: list = []
    monkeypatch.setattr(threading, "excepthook", shown.append)  # where a thread's uncaught error is shown
    ns: dict = {}
    result = PythonTool(ns, timeout=5).execute(
        "import threading, time\ndef later():\n    time.sleep(0.5)\n    import os\n    os._exit(1)\n"
        "threading.Thread(target=later).start()\n'returned'")
    assert result.status == "done" and result.seconds < 0.4
    assert result.output == "'returned'\n\n[1 thread started by this code is still running in the background]"
    assert os._exit is not REAL_EXIT  # still guarded while the model's thread lives ...
    assert _guards_gone()  # ... whose os._exit is refused: this process is still here
    assert [type(args.exc_value).__name__ for args in shown] == ["ExitRefused"]  # and the user is shown why


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
    ("import sys\nsys.exit()", "error", "SystemExit"),
    ("raise SystemExit", "error", "SystemExit"),
    (HOLDS["except BaseException, nested"], "timeout", "Timed out after 1 s"),
    (HOLDS["SIGALRM ignored and setitimer(0)"], "timeout", "refused: signal only works in main thread"),
    ("import ctypes\nctypes.CDLL(None).signal(2, ctypes.c_void_p(1))\n" + HOLDS["SIGINT ignored"], "timeout", "Timed out"),
    (HOLDS["a thread that loops forever"], "timeout", "Timed out after 1 s"),
    ("while True:\n    print('x' * 1000)", "timeout", "characters cut"),
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


@pytest.fixture(scope="module")
def kernel():
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3")
    out, content = _execute(kc, SETUP)
    assert content["status"] == "ok", out
    yield km, kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def _assert_alive_and_answering(km, kc) -> None:
    time.sleep(0.2)  # IPython's exit would stop the kernel 0.1 s after it was asked
    assert km.is_alive()
    out, content = _execute(kc, NEXT_TURN)
    assert content["status"] == "ok", out
    assert json.loads(out) == {"status": "done", "output": "42\n", "final": "done", "interrupted": False}


@pytest.mark.kernel
def test_hostile_code_in_a_kernel_turn(kernel):
    km, kc = kernel
    _execute(kc, NEXT_TURN + "\nrss = psutil.Process().memory_info().rss\nthreads = len(__import__('threading').enumerate())")
    for code, status, said in KERNEL_CASES:
        out, content = _execute(kc, f"print(json.dumps(turn({code!r})))")
        assert content["status"] == "ok", (code, out)
        result = json.loads(out.strip().splitlines()[-1])
        assert result["status"] == status and said in result["output"], (code, result)
        assert result["final"] == "done"  # the turn went on to the model's answer
        _assert_alive_and_answering(km, kc)
    out, _ = _execute(kc, "import threading, time\ntime.sleep(0.5)\n"
                          "print((psutil.Process().memory_info().rss - rss) // 2**20, len(threading.enumerate()) - threads,"
                          " type(os._exit).__name__, type(exit).__name__, 'exit_now' in get_ipython()._trait_validators)")
    grown, *rest = out.split()
    assert int(grown) < 100 and rest == ["0", "builtin_function_or_method", "ZMQExitAutocall", "False"], out


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
def test_interrupt_mid_run_in_a_kernel(kernel):
    """The user's interrupt (or Stop) while the code runs: recorded as interrupted with what it printed,
    the turn ends as interrupted, and after the code ignored SIGINT the user's interrupt still works."""
    km, kc = kernel
    code = "import signal, time\nprint('partial', flush=True)\nwhile True:\n    time.sleep(0.01)"
    kc.execute(f"r = turn({code!r}, timeout=60)")
    time.sleep(1.5)
    km.interrupt_kernel()
    assert kc.get_shell_msg(timeout=10)["content"]["status"] == "ok"
    out, _ = _execute(kc, "print(json.dumps(r))")
    result = json.loads(out)
    assert result["status"] == "interrupted" and result["interrupted"] is True
    assert result["output"].endswith("Output before the interrupt:\npartial\n")
    _assert_alive_and_answering(km, kc)
    kc.execute("import time\ntime.sleep(30)")
    time.sleep(0.5)
    km.interrupt_kernel()
    reply = kc.get_shell_msg(timeout=10)["content"]
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt"


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
        assert time.perf_counter() - start < 0.5 + containment.GRACE + 0.5
    finally:
        time.monotonic, threading.Thread.join = saved


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
    assert result.output == "'returned'\n\n[1 thread started by this code is still running in the background]"
    assert _guards_gone()


def test_the_stand_ins_do_not_hand_out_the_real_function():
    result = PythonTool({}, timeout=5).execute("import os\nos._exit.__wrapped__(1)")
    assert result.status == "error" and "has no attribute '__wrapped__'" in result.output


def test_a_str_subclass_cannot_unbound_the_output():
    result = PythonTool({}, timeout=5).execute(
        "import sys\nclass S(str):\n    def __getitem__(self, k): return 'y' * 10**6\n    def __len__(self): return 1\n"
        "for _ in range(3): sys.stdout.write(S('a'))")
    assert (result.status, result.output) == ("done", "aaa")
