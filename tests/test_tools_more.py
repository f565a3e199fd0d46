"""More hostile model code in the python tool: an audit hook (which could never be taken out) is refused,
emptying the interpreter's hook lists cannot break later imports, and builtins the code deletes cannot stop
the lab's own watcher (the call raised NameError, or never returned). First on the tool itself, then in a
real kernel (jupyter_client)."""
from __future__ import annotations

import builtins
import gc
import importlib
import json
import sys

import pytest

from gptoss_lab.tools import containment
from gptoss_lab.tools.base import TIMEOUT_HINT
from gptoss_lab.tools.python import PythonTool
from test_adversarial_python import SETUP  # tests/ is on sys.path: `turn(code)` asks a ReplayEngine session
from test_kernel import run

def _import_fresh(folder, name: str = "gptoss_fresh_module") -> object:
    """A module the process has not imported yet, written into `folder` and imported from there."""
    (folder / f"{name}.py").write_text("X = 2\n")
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop(name, None)


@pytest.mark.parametrize("code", ["import sys\nsys.meta_path.clear()", "import sys\nsys.path_hooks.clear()"])
def test_emptying_the_import_machinery_does_not_break_later_imports(code, tmp_path):
    result = PythonTool({}, timeout=5).execute(code)
    assert result.status == "done", result.output
    assert _import_fresh(tmp_path).X == 2


LIBRARY = """import importlib.abc, importlib.util, sys
class _Moves(importlib.abc.MetaPathFinder, importlib.abc.Loader):  # as six's finder serves six.moves
    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name == "gptoss_lib.moves" else None
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        module.ANSWER = 42
sys.meta_path.append(_Moves())
"""


def test_a_library_the_code_imports_keeps_its_import_hook(tmp_path):
    """A finder the code's imports add stays (six's, which pandas pulls in through dateutil, serves `six.moves`):
    putting the hook lists back exactly as they were broke `import six.moves` in every later cell."""
    (tmp_path / "gptoss_lib").mkdir()
    (tmp_path / "gptoss_lib" / "__init__.py").write_text(LIBRARY)
    sys.path.insert(0, str(tmp_path))
    hooks = sys.meta_path[:]
    try:
        result = PythonTool({}, timeout=5).execute("import gptoss_lib")
        assert result.status == "done", result.output
        assert importlib.import_module("gptoss_lib.moves").ANSWER == 42
    finally:
        sys.path.remove(str(tmp_path))
        sys.meta_path[:] = hooks
        for name in ("gptoss_lib", "gptoss_lib.moves"):
            sys.modules.pop(name, None)


def test_an_audit_hook_is_refused():
    """An audit hook can never be taken out: it would see (and could end or hold) every later cell."""
    ns: dict = {"ran": []}
    result = PythonTool(ns, timeout=5).execute(
        "import sys, threading\nprint('before')\n"
        "def hook(event, args):\n    if len(ran) < 3 and threading.current_thread() is threading.main_thread():\n"
        "        ran.append(event)\nsys.addaudithook(hook)\nprint('after')")
    compile("1", "<later cell>", "exec")
    assert ns["ran"] == []
    assert result.status == "error" and result.output.startswith("before\nTraceback (most recent call last):\n")
    assert "ExitRefused: sys.addaudithook() would run the code on the kernel's thread" in result.output
    assert "after" not in result.output.split("\n", 1)[1]
    assert sys.addaudithook.__module__ == "sys" and not containment._GUARDS.installed  # the real one is back


TAKEN_AWAY = {  # builtins the lab's own watcher and clean-up looked up: the call raised NameError or never returned
    "id, then a loop": ("import builtins\ndel builtins.id\nwhile True: pass", "timeout", f"Timed out after 0.5 s ({TIMEOUT_HINT})"),
    "all, then a loop": ("import builtins, threading, time\nthreading.Thread(target=time.sleep, args=(1,)).start()\n"
                         "vars(builtins).clear()\nwhile True: pass", "timeout", f"Timed out after 0.5 s ({TIMEOUT_HINT})"),
    "dict": ("import builtins\ndel builtins.dict\n1", "done", "1\n"),
    "setattr": ("import builtins\ndel builtins.setattr\n1", "done", "1\n"),
}


@pytest.mark.parametrize("name", TAKEN_AWAY)
def test_the_code_cannot_take_the_builtins_away_from_the_watcher(name):
    code, status, output = TAKEN_AWAY[name]
    names = vars(builtins)
    kept = dict(names)
    # earlier tests' garbage (a __del__ that raises) collected while the builtins are gone would fail the
    # interpreter's unraisable hook, whose message goes into the output: not what this test is about
    gc.collect()
    gc.disable()
    try:
        result = PythonTool({}, timeout=0.5).execute(code)
        back = dict(names) == kept
    finally:
        names.update(kept)  # without the fix too: the rest of the run needs them
        gc.enable()
    assert (result.status, result.output, back) == (status, output, True)


# ---------------------------------------------------------------- in a real kernel, through a turn

KILLERS = {  # after the call: the code's audit hook would run on the kernel's thread (the real os._exit)
    "an audit hook": ("import os, sys, threading\ndef hook(event, args):\n"
                      "    if event == 'compile' and threading.current_thread() is threading.main_thread():\n"
                      "        os._exit(1)\nsys.addaudithook(hook)", "error"),
    "an emptied sys.meta_path": ("import sys\nsys.meta_path.clear()", "done"),
}


@pytest.fixture
def kernel():  # one per case: a case that ends it must not fail the next
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3")
    out, content = run(kc, SETUP)
    assert content["status"] == "ok", out
    yield km, kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)


@pytest.mark.kernel
@pytest.mark.parametrize("name", KILLERS)
def test_a_hook_left_behind_cannot_end_the_kernel_later(kernel, name):
    km, kc = kernel
    code, status = KILLERS[name]
    out, content = run(kc, f"r = turn({code!r})\nprint(json.dumps(r))")
    assert content["status"] == "ok", out
    result = json.loads(out.strip().splitlines()[-1])
    assert result["status"] == status and result["final"] == "done", result
    # the next cells: a collection and an import the kernel has not done yet
    out, content = run(kc, "import gc\ngc.collect()\nimport tabnanny, sys\nsys.modules.pop('tabnanny')\nprint('alive')",
                            timeout=20)
    assert km.is_alive() and content["status"] == "ok" and out == "alive\n", out
