"""Objects of the model's code must not run on the kernel's own thread, the one that watches the call. What the code
leaves where the clean-up puts names back (`builtins.print = E()`) is kept, never freed: freed by the put-back, a
loop in its __del__ held the kernel for good, and an error whose __str__ loops did too (Python's report of the error
asks for its str). A finalizer that runs there all the same (the garbage collector's) is one line of the lab's."""
from __future__ import annotations

import io
import subprocess
import sys

import pytest

from gptoss_lab.tools import containment

CALL = """
import builtins, sys, time
from gptoss_lab.tools.python import PythonTool
kernels = builtins.print, sys.stdout
start = time.perf_counter()
result = PythonTool({{}}, timeout=1).execute({code!r})
print(f"{{time.perf_counter() - start:.2f}}", (builtins.print, sys.stdout) == kernels, repr(result.output), flush=True)
"""
LEFT_BEHIND = "class E:\n    def __del__(self):\n{body}\nimport builtins\nbuiltins.print = E()\n{where}x = 1\n"
BODIES = {
    "a loop": "        while True: pass",
    "os._exit": "        import os; os._exit(3)",
    "an error whose str loops": "        class X(Exception):\n            def __str__(self):\n                while True: pass\n"
                                "        raise X()",
}
PLACES = {"builtins": "", "threading.Thread": "import threading\nthreading.Thread.run = E()\n",
          "sys.stdout": "import sys\nsys.stdout = E()\n"}


@pytest.mark.parametrize("where", PLACES.values(), ids=PLACES.keys())
@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
def test_what_the_code_leaves_behind_is_put_back_and_never_run_on_the_kernels_thread(body, where):
    code = LEFT_BEHIND.format(body=body, where=where)
    done = subprocess.run([sys.executable, "-c", CALL.format(code=code)], capture_output=True, text=True, timeout=60)
    # the process lived and ended (freed as the interpreter ends, a loop held its exit; os._exit(3) ended it with 3)
    assert done.returncode == 0, done.stderr[-2000:]
    seconds, put_back, output = done.stdout.split(" ", 2)
    assert float(seconds) < 1, seconds   # the call returned at once: the loop held it for ever
    assert put_back == "True" and output.strip() == "''" and done.stderr == "", done


def test_a_finalizer_that_runs_on_the_watching_thread_is_one_line_of_the_labs():
    """The garbage collector can finalize the code's objects on any thread, the watcher's too: the report is the lab's
    line in the call's output, which asks the code's error for nothing (its looping __str__ held the kernel)."""

    class Looping(Exception):
        def __str__(self) -> str:
            while True:
                pass

    class Refusing:
        def __del__(self) -> None:
            raise containment.ExitRefused("os._exit() would end the kernel's process")

    class Failing:
        def __del__(self) -> None:
            raise Looping()

    output = io.StringIO()
    with containment._GUARDS.running(output, None):   # this thread watches the run, as `contain`'s caller does
        Refusing()
        Failing()
    assert output.getvalue() == ("gptoss_lab: an object the code left behind tried to end the kernel as it was freed: "
                                 "ignored\ngptoss_lab: an object the code left behind failed as it was freed: ignored\n")


GC_CALL = """
import gc, sys, time
from gptoss_lab.tools.python import PythonTool
def users(phase, info):
    pass
gc.callbacks.append(users)
result = PythonTool({}, timeout=1).execute("import gc\\ndef cb(phase, info):\\n    while True: pass\\ngc.callbacks.append(cb)")
start = time.perf_counter()
gc.collect()
print(result.status, gc.callbacks == [users], f"{time.perf_counter() - start:.2f}", flush=True)
"""


def test_a_gc_callback_of_the_codes_goes_with_its_call():
    """A gc callback the code added stayed after the call: the next collection on the kernel's thread (any cell that
    allocates enough) ran its loop and hung the kernel for good. The user's own callbacks stay."""
    done = subprocess.run([sys.executable, "-c", GC_CALL], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    status, users_only, seconds = done.stdout.split()
    assert (status, users_only) == ("done", "True") and float(seconds) < 1, done.stdout


def test_a_thread_that_starts_while_the_thread_table_is_read_does_not_fail_the_read():
    """Reading threading's table (which thread is this: the model's or the kernel's?) raised `dictionary changed size
    during iteration` when a thread started or ended mid-read (seen in CI: Session.connect failed). A finalizer run by
    a collection in the middle of the read stands in for that other thread here, at each point of the read."""
    import gc
    import threading

    class Starts:
        def __init__(self) -> None:
            self.me = self  # a cycle: freed by a collection, which may come in the middle of the read

        def __del__(self) -> None:
            threading._active[-1] = None  # type: ignore[attr-defined]

    threshold = gc.get_threshold()
    gc.freeze()  # the collections below pass over the objects made here only (the whole suite's took a minute)
    try:
        for each in range(1, 12):
            for garbage in range(12):
                gc.collect()
                gc.set_threshold(each)
                for _ in range(garbage):
                    Starts()
                try:
                    assert containment._thread_of(threading.get_ident()) is threading.current_thread()
                finally:
                    gc.set_threshold(*threshold)
                    threading._active.pop(-1, None)  # type: ignore[attr-defined]
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()
