"""An object the model's code leaves in a kernel table (`builtins.print = E()`) is freed by the clean-up on the
kernel's own thread. Its refused or failing `__del__` is reported in one line of the lab's in the call's output (the
model and the tool card see it): Python's own hook printed the lab's traceback in the cell and asked the code's
exception for its str there, which could loop for ever."""
from __future__ import annotations

import subprocess
import sys

import pytest

from gptoss_lab.tools import containment

CALL = """
import sys, time
from gptoss_lab.tools.python import PythonTool
start = time.perf_counter()
result = PythonTool({{}}, timeout=1).execute({code!r})
print(f"{{time.perf_counter() - start:.2f}}", repr(result.output), flush=True)
"""
LEFT_BEHIND = "class E:\n    def __del__(self):\n{body}\nimport builtins\nbuiltins.print = E()\nx = 1\n"
CASES = {
    "its __del__ calls os._exit": ("        import os; os._exit(3)", "tried to end the kernel"),
    "its __del__ raises an error whose str loops": (
        "        class X(Exception):\n            def __str__(self):\n                while True: pass\n"
        "        raise X()", "failed"),
    "its __del__ raises a plain error": ("        raise ValueError('boom')", "failed"),
}


@pytest.mark.parametrize("body,what", CASES.values(), ids=CASES.keys())
def test_a_freed_object_of_the_codes_is_one_line_and_holds_nothing(body, what):
    code = LEFT_BEHIND.format(body=body)
    done = subprocess.run([sys.executable, "-c", CALL.format(code=code)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]  # the process lived (os._exit(3) would end it with 3)
    seconds, output = done.stdout.split(" ", 1)
    assert float(seconds) < 1 + containment.GRACE + 1, seconds  # the call returned; the loop in __str__ held it
    assert output.strip() == repr(f"gptoss_lab: an object the code left behind {what} as it was freed: ignored\n")
    assert done.stderr == "", done.stderr  # no traceback of the lab's frames
