"""What the model's code leaves in IPython's hook lists runs contained at later cells.

IPython calls its event callbacks (`post_run_cell` ...) and input and AST transformers on the kernel's thread at
every later cell, outside the python tool's watch. A callback the model's code registered that loops while catching
every exception held the kernel for good, from the end of the very cell that asked the model; interrupting did not
help. Now each such entry runs as the code ran (watched, under the call's timeout) and is taken out when it does not
end; well-behaved ones (matplotlib's figure flush) keep working. Real kernels (jupyter_client).
"""
from __future__ import annotations

import time

import pytest

from test_adversarial_python import _execute, started_kernel

pytestmark = pytest.mark.kernel

LOOP = ("def {name}(*args, **kwargs):\n"
        "    while True:\n"
        "        try:\n"
        "            import time; time.sleep(0.05)\n"
        "        except BaseException:\n"
        "            pass\n")


@pytest.fixture()
def kernel():
    """A kernel of its own for each test: what the code leaves in IPython's lists stays for the kernel's life."""
    with started_kernel() as both:
        yield both


def _turn(kc, code: str, timeout: float = 1.0) -> tuple[str, dict]:
    """The turn's one call of `code` under the call's `timeout`, as printed."""
    return _execute(kc, f"print(turn({code!r}, {timeout}))", timeout=30)


def _answers(kc, code: str = "print(6 * 7)", within: float = 15) -> str:
    """The next cell's output; it must come back well before `within` seconds (a held kernel never answers)."""
    start = time.monotonic()
    out, content = _execute(kc, code, timeout=within)
    assert content["status"] == "ok", out
    assert time.monotonic() - start < within
    return out


@pytest.mark.parametrize(("register", "what"), [
    ("get_ipython().events.register('post_run_cell', cb)", "post_run_cell callback"),
    ("get_ipython().events.register('pre_run_cell', cb)", "pre_run_cell callback"),
    ("get_ipython().events.callbacks['post_execute'] = [cb]", None),       # the list replaced: put back, cb dropped
    ("get_ipython().input_transformers_cleanup.append(cb)", "input transformer"),
    ("get_ipython().input_transformers_post.append(cb)", "input transformer"),
    ("import ast\nclass T(ast.NodeTransformer):\n    def visit(self, node):\n        cb()\n"
     "get_ipython().ast_transformers.append(T())", "AST transformer"),
    ("class E:\n    def trigger(self, *args, **kwargs): cb()\n    def register(self, *a): pass\n"
     "get_ipython().events = E()", None),                                  # the event manager replaced: put back
])
def test_a_looping_hook_of_the_models_code_does_not_hold_later_cells(kernel, register, what):
    km, kc = kernel
    out, content = _turn(kc, LOOP.format(name="cb") + register)
    assert content["status"] == "ok", out
    assert "'status': 'done', 'output': '', 'final': 'done'" in out
    later = [_answers(kc) for _ in range(2)]
    seen = out + "".join(later)
    if what is not None:  # said once, where it was stopped
        assert seen.count(f"gptoss_lab: a {what} that the model's code registered did not end within its 1 s: "
                          "it is taken out.") == 1, seen
    assert later[-1] == "42\n"
    assert km.is_alive()


@pytest.mark.parametrize(("register", "show", "said"), [
    # int's printer replaced: the kernel's own is put back
    ("get_ipython().display_formatter.formatters['text/plain'].for_type(int, cb)", "7", None),
    ("class Point:\n    pass\npoint = Point()\n"
     "get_ipython().display_formatter.formatters['text/plain'].for_type(Point, cb)", "point",
     "a text/plain printer that the model's code registered did not end within its 1 s: it is taken out."),
    ("get_ipython().display_formatter.formatters['text/plain'].for_type_by_name('fractions', 'Fraction', cb)",
     "import fractions\nfractions.Fraction(1, 3)",
     "a text/plain printer that the model's code registered did not end within its 1 s: it is taken out."),
    ("from IPython.core.formatters import BaseFormatter\nclass F(BaseFormatter):\n"
     "    def __call__(self, obj): cb()\nget_ipython().display_formatter.formatters['text/x-evil'] = F()", "7", None),
])
def test_a_looping_printer_of_the_models_code_does_not_hold_later_displays(kernel, register, show, said):
    """A display formatter's printer runs at the user's later displays (`7` as a cell's last line): one the model's
    code registered that loops held the kernel for good."""
    km, kc = kernel
    out, content = _turn(kc, LOOP.format(name="cb") + register + "\nNone")
    assert content["status"] == "ok", out
    start = time.monotonic()
    shown: list[str] = []
    reply = kc.execute_interactive(show, timeout=15, output_hook=lambda msg: shown.append(
        msg["content"].get("text") or msg["content"].get("data", {}).get("text/plain", "")))
    assert reply["content"]["status"] == "ok" and time.monotonic() - start < 15
    seen = "".join(shown)
    assert (said in seen) if said else ("gptoss_lab" not in seen), seen
    assert _answers(kc, show) == ""  # the value is shown as an execute_result, and again without waiting
    assert _answers(kc) == "42\n"


def test_a_printer_of_the_models_code_never_puts_live_html_in_the_users_later_displays(kernel):
    """An HTML, Markdown or JavaScript printer (or a whole bundle's) the model's code registers would show its script in
    the page at the user's later `5`: it is taken out; the user's own HTML printer and the code's text printer stay."""
    km, kc = kernel
    register = ("f = get_ipython().display_formatter\n"
                "f.formatters['text/html'].for_type(int, lambda x, *a: '<script>alert(1)</script>')\n"
                "f.formatters['text/markdown'].for_type_by_name('decimal', 'Decimal', lambda x, *a: '<img src=x>')\n"
                "f.formatters['application/javascript'].for_type(complex, lambda x, *a: 'alert(3)')\n"
                "f.mimebundle_formatter.for_type(float, lambda x, *a, **k: {'text/html': '<script>4</script>'})\n"
                "class Third:\n    pass\nthird = Third()\n"
                "f.formatters['text/plain'].for_type(Third, lambda x, p, cycle: p.text('a third'))\nNone")
    _answers(kc, "get_ipython().display_formatter.formatters['text/html'].for_type(bool, lambda x, *a: '<b>mine</b>')")
    out, content = _turn(kc, register)
    assert content["status"] == "ok" and "'status': 'done'" in out, out

    def shown(code: str) -> dict:
        bundles: list[dict] = []
        reply = kc.execute_interactive(code, timeout=15, output_hook=lambda msg: bundles.append(msg["content"]["data"])
                                       if msg["msg_type"] == "execute_result" else None)
        assert reply["content"]["status"] == "ok" and len(bundles) == 1, bundles
        return bundles[0]

    for value in ("5", "import decimal\ndecimal.Decimal(2)", "1j", "1.5"):
        assert list(shown(value)) == ["text/plain"], value
    assert shown("third") == {"text/plain": "a third"}
    assert shown("True")["text/html"] == "<b>mine</b>"
    _answers(kc, "get_ipython().display_formatter.formatters['text/html'].pop(bool)")


def test_an_error_handler_of_the_models_code_is_taken_back(kernel):
    """`set_custom_exc` would run the code's handler at the user's next error in a cell: it goes with the call."""
    km, kc = kernel
    out, content = _turn(kc, LOOP.format(name="cb") + "get_ipython().set_custom_exc((ZeroDivisionError,), cb)")
    assert content["status"] == "ok", out
    start = time.monotonic()
    out, content = _execute(kc, "1 / 0", timeout=15)
    assert content["status"] == "error" and content["ename"] == "ZeroDivisionError"
    assert time.monotonic() - start < 15
    assert _answers(kc) == "42\n"


@pytest.mark.parametrize("replace", [
    "get_ipython().run_cell = cb",
    "type(get_ipython()).run_cell = cb",
    "from IPython.core.interactiveshell import InteractiveShell\nInteractiveShell.run_cell = cb",
    "get_ipython().kernel.do_execute = cb",
    "get_ipython().kernel.shell_handlers['execute_request'] = cb",
    "from ipykernel.kernelbase import Kernel\nKernel.execute_request = cb",
])
def test_the_shells_and_kernels_methods_are_put_back(kernel, replace):
    """A method of the shell or the kernel that the code replaced (on the object or its class) would run at every later
    cell: a looping one held the kernel for good, a quiet one would swallow every cell."""
    km, kc = kernel
    out, content = _turn(kc, LOOP.format(name="cb") + replace)
    assert content["status"] == "ok" and "'final': 'done'" in out, out
    assert _answers(kc) == "42\n"
    assert _answers(kc, "print(type(get_ipython().run_cell).__name__)") == "method\n"


@pytest.mark.parametrize("replace", [
    "magics = get_ipython().magics_manager.magics\nmagics['cell']['gptoss'] = magics['line']['time'] = cb",
    "shell = get_ipython()\nshell.register_magic_function(cb, 'cell', 'gptoss')\n"
    "shell.register_magic_function(cb, 'line', 'time')",
    "get_ipython().magics_manager.magics = {'line': {'time': cb}, 'cell': {'gptoss': cb}}",
])
def test_the_magics_the_code_replaced_are_put_back(kernel, replace):
    """A magic the code replaced, the lab's `%%gptoss` or the user's `%time`, ran the code's function on the kernel's
    thread at the user's next such cell, unwatched: a looping one held the kernel for good, a quiet one could show a
    made-up answer. They are put back; a magic the code added under a new name stays, as in a cell."""
    km, kc = kernel
    _answers(kc, "%load_ext gptoss_lab\ns = Session(ReplayEngine('<|channel|>final<|message|>hi<|return|>'))\n"
                 "%gptoss use s")
    out, content = _turn(kc, LOOP.format(name="cb") + "get_ipython().register_magic_function(lambda line: "
                             "print('mine', line), 'line', 'mine')\n" + replace + "\nNone")
    assert content["status"] == "ok" and "'final': 'done'" in out, out
    assert "── Answer ──\n    hi\n" in _answers(kc, "%%gptoss --text\nhello")
    assert "Wall time" in _answers(kc, "%time 1")
    assert _answers(kc, "%mine x") == "mine x\n"


@pytest.mark.parametrize("schedule", [
    "get_ipython().kernel.io_loop.add_callback(cb)",
    "get_ipython().kernel.io_loop.call_later(0.2, cb)",
    "import asyncio\nasync def co():\n    cb()\n"
    "asyncio.run_coroutine_threadsafe(co(), get_ipython().kernel.io_loop.asyncio_loop)",
    # a reader, called whenever its file is ready (tornado's add_handler is asyncio's add_reader)
    "import os\nr, w = os.pipe()\nget_ipython().kernel.io_loop.add_handler(r, cb, 1)\nos.write(w, b'x')",
])
def test_a_looping_callback_the_code_puts_on_the_kernels_event_loop_does_not_hold_it(kernel, schedule):
    """The kernel's thread runs its event loop between cells, where it ignores interrupts: a looping callback the
    model's code put there held the kernel for good (seen: the next cell never ran, interrupted or not); so did a
    reader of a file the code made ready."""
    km, kc = kernel
    out, content = _turn(kc, LOOP.format(name="cb") + schedule + "\nNone")
    assert content["status"] == "ok" and "'final': 'done'" in out, out
    time.sleep(0.5)
    assert _answers(kc) == "42\n"
    assert _answers(kc) == "42\n"
    assert km.is_alive()


def test_what_a_thread_left_running_puts_on_the_kernels_event_loop_after_its_call_runs_contained(kernel):
    """A thread the code left running put a looping callback on the kernel's event loop after its call returned,
    before the call's timeout stopped the thread: the kernel ran it between cells, unwatched, and never answered
    again. Each is now run as the code ran (stopped at its 0.5 s), whichever way it was put there; a quiet one runs."""
    km, kc = kernel
    schedules = ["loop.add_callback(cb)", "loop.call_later(0.1, cb)", "loop.add_handler(r, cb, 1)\nos.write(w, b'x')",
                 "asyncio.run_coroutine_threadsafe(co(), loop.asyncio_loop)", "loop.add_callback(ran.append, 1)"]
    out, content = _turn(kc, LOOP.format(name="cb") + "import asyncio, os, threading, time\n"
                         "loop, ran = get_ipython().kernel.io_loop, []\nr, w = os.pipe()\nasync def co():\n    cb()\n"
                         "def later():\n    time.sleep(0.3)\n" + "".join(f"    {line}\n" for schedule in schedules
                                                                      for line in schedule.split("\n"))
                         + "threading.Thread(target=later, daemon=True).start()\nNone", timeout=0.5)
    assert content["status"] == "ok" and "'status': 'done'" in out and "'final': 'done'" in out, out
    time.sleep(0.5)
    assert _answers(kc, within=10) == "42\n"  # (once the four have had their half second each)
    assert _answers(kc, "print(ran)", within=3) == "[1]\n"
    assert km.is_alive()


def test_a_quiet_callback_the_code_puts_on_the_kernels_event_loop_runs_once(kernel):
    km, kc = kernel
    out, content = _turn(kc, "ran = []\nget_ipython().kernel.io_loop.add_callback(lambda: ran.append(1))\nNone")
    assert content["status"] == "ok" and "'final': 'done'" in out, out
    time.sleep(0.5)
    _answers(kc, "x = 1")
    assert _answers(kc, "print(ran)") == "[1]\n"


def test_a_hook_the_user_had_is_put_back_and_a_quiet_one_of_the_code_keeps_running(kernel):
    km, kc = kernel
    _answers(kc, "seen = []\ndef mine(result): seen.append('mine')\n"
                 "get_ipython().events.register('post_run_cell', mine)")
    out, content = _turn(kc, "calls = []\ndef counted(result): calls.append(1)\n"
                             "ip = get_ipython()\nip.events.callbacks['post_run_cell'].clear()\n"
                             "ip.events.register('post_run_cell', counted)")
    assert content["status"] == "ok" and "'status': 'done', 'output': '', 'final': 'done'" in out, out
    _answers(kc, "seen.clear(); calls.clear()")
    _answers(kc, "x = 1")
    _answers(kc, "y = 2")
    # both ran after each of the three cells (the one that cleared the lists too)
    assert _answers(kc, "print(seen, len(calls))") == "['mine', 'mine', 'mine'] 3\n"
    # the user can take the code's callback out by the function they know
    _answers(kc, "get_ipython().events.unregister('post_run_cell', counted)\ncalls.clear()")
    _answers(kc, "z = 3")
    assert _answers(kc, "print(len(calls))") == "0\n"


def test_matplotlib_started_by_the_models_code_still_shows_its_figure_and_later_ones(kernel):
    """matplotlib's inline backend registers its figure flush (a post_execute callback) when the first figure is made:
    by the model's code here. Run contained, it still shows that figure under the asking cell, and the user's later
    figures under theirs."""
    km, kc = kernel

    def images(code: str) -> list[str]:
        kinds: list[str] = []
        reply = kc.execute_interactive(code, timeout=30, output_hook=lambda msg: kinds.extend(
            msg["content"]["data"]) if msg["msg_type"] == "display_data" else None)
        assert reply["content"]["status"] == "ok"
        return kinds

    # a timeout that importing matplotlib beside other work cannot reach (at 1 s the flush was cut: text, no image)
    assert "image/png" in images("print(turn('import matplotlib.pyplot as plt\\nplt.plot([1, 3, 2])\\nNone', 30))")
    out, _ = _execute(kc, "print([type(f).__name__ for f in get_ipython().events.callbacks['post_execute']])")
    assert "_Later" in out  # the flush is the model's code's, contained
    assert "image/png" in images("plt.plot([2, 1, 3]);")
    assert images("x = 1") == []  # shown once, not again at every cell
