"""Real-browser fixtures: a Jupyter server on 127.0.0.1 serving JupyterLab and Notebook 7, and headless
Debian Chromium via Playwright.

`lab_notebook(cells, wait_for=...)` writes a notebook, opens it in Lab (or Notebook 7 with `ui="notebook"`),
runs all cells and waits for a selector in the output; `open_notebook(name)` opens a saved one without
running it; a failing test leaves a screenshot in /tmp (gptoss_lab-<test>.png).
"""
from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import nbformat
import pytest
from nbformat.sign import NotebookNotary

if TYPE_CHECKING:
    from playwright.sync_api import Locator

CHROMIUM = os.environ.get("GPTOSS_LAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
REPO = Path(__file__).resolve().parents[2]
# Plugins that pop dialogs or reach the network: off, so the first paint is the notebook itself. No build check either:
# each page load asked the server whether the extensions need a rebuild (node run, about 0.5 s of CPU a page).
_DISABLED = ["@jupyterlab/apputils-extension:announcements", "@jupyterlab/extensionmanager-extension"]
_PAGE_CONFIG = {"disabledExtensions": {name: True for name in _DISABLED}, "buildCheck": False, "buildAvailable": False}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in tests/browser is a browser test."""
    for item in items:
        if "tests/browser" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Keep each phase's report on the item, so the page fixture knows whether the test failed."""
    report = yield
    setattr(item, f"_report_{report.when}", report)
    return report


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A running JupyterLab server: its URL, token and root folder, plus a tiny REST client."""

    def __init__(self, url: str, token: str, root: Path) -> None:
        self.url, self.token, self.root = url, token, root

    def api(self, path: str, method: str = "GET", body: object = None) -> object:
        """Call the server's REST API (JSON in, JSON out)."""
        request = urllib.request.Request(f"{self.url}/api/{path}", method=method,
                                         data=None if body is None else json.dumps(body).encode(),
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        """Stop every kernel, so tests do not pile up processes on a small machine."""
        for kernel in self.api("kernels"):
            self.api(f"kernels/{kernel['id']}", method="DELETE")

    def start_kernel(self, name: str) -> None:
        """Start notebook `name`'s kernel (the session the front end would ask for), if its metadata names one: the
        kernel boots while the page loads, not after, and the page connects to it as to a notebook reopened with its
        kernel running (a fresh kernel all the same; its path, and so its working folder, is the notebook's)."""
        spec = json.loads((self.root / name).read_text()).get("metadata", {}).get("kernelspec", {}).get("name")
        if spec:
            self.api("sessions", method="POST",
                     body={"path": name, "type": "notebook", "name": name, "kernel": {"name": spec}})

    def open_url(self, name: str, ui: str = "lab") -> str:
        """The page of notebook `name` in JupyterLab (`ui="lab"`) or Notebook 7 (`ui="notebook"`)."""
        if ui == "notebook":
            return f"{self.url}/notebooks/{name}?token={self.token}"
        return f"{self.url}/lab/tree/{name}?token={self.token}&reset"

    def kernel_states(self) -> list[str]:
        """`execution_state` of every running kernel, as the server's /api/kernels reports it."""
        return [kernel["execution_state"] for kernel in self.api("kernels")]


@pytest.fixture(scope="session")
def jupyter_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """JupyterLab on a free 127.0.0.1 port with a random token, a temp root and no browser."""
    pytest.importorskip("jupyterlab")
    root = tmp_path_factory.mktemp("lab_root")
    config = tmp_path_factory.mktemp("lab_config")
    (config / "labconfig").mkdir()
    (config / "labconfig" / "page_config.json").write_text(
        json.dumps(_PAGE_CONFIG))
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(config), PYTHONPATH=os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")])), JUPYTER_RUNTIME_DIR=str(config / "runtime"))
    log = open(root.parent / "jupyterlab.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--ServerApp.port_retries=0", "--expose-app-in-browser", "--allow-root",
         "--JupyterNotebookApp.expose_app_in_browser=True",
         f"--LabApp.workspaces_dir={root.parent / 'lab_workspaces'}", "--LabApp.news_url=None",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         # A kernel stopped after a test (or restarted) gets 0.5 s to exit, then a signal: one that had imported torch
         # spent 2.5 s in Python's exit (its collections over torch's objects), on each test's path.
         "--KernelManager.shutdown_wait_time=0.5"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    lab = Lab(f"http://127.0.0.1:{port}", token, root)
    deadline = time.monotonic() + 90
    while True:
        try:
            lab.api("status")
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"JupyterLab did not start; see {log.name}")
            time.sleep(0.3)
    yield lab
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


@pytest.fixture(scope="session")
def chromium() -> Iterator[object]:
    """Headless Debian Chromium driven by Playwright (no browser download needed)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


_VIEWPORT = {"width": 1280, "height": 900}


def _new_page(chromium) -> object:
    """A page in a browser context of its own (1280x900, clipboard allowed)."""
    context = chromium.new_context(viewport=_VIEWPORT, permissions=["clipboard-read", "clipboard-write"])
    return context.new_page()


@pytest.fixture(scope="module")
def _module_page() -> Iterator[list]:
    """The JupyterLab page a `shared_page` module's tests take in turn: a one-slot list, empty until a test leaves
    the page fit for the next one (JupyterLab booted, no dialog open, the test passed)."""
    slot: list = []
    yield slot
    for page in slot:
        page.context.close()


def _cleared(page, lab: Lab) -> bool:
    """Close every document of a JupyterLab page (without asking to save), so the next test opens its notebook in the
    same app; False where the page is not JupyterLab or a dialog is open (then it is not kept)."""
    if not page.url.startswith(f"{lab.url}/lab"):
        return False
    cleared = page.evaluate("""() => {
      const app = window.jupyterapp;
      if (!app || document.querySelector('.jp-Dialog')) return false;
      for (const area of ['main', 'down']) for (const widget of Array.from(app.shell.widgets(area))) widget.dispose();
      window.gxPageHandedOver = true;   // the next test's first notebook opens in this app
      return true;
    }""")
    if cleared:
        page.set_viewport_size(_VIEWPORT)
    return cleared


@pytest.fixture()
def page(chromium, jupyter_lab: Lab, request: pytest.FixtureRequest) -> Iterator[object]:
    """A browser page (1280x900); screenshot to /tmp when the test fails; kernels stopped after.

    A fresh page, or in a module marked `shared_page` the JupyterLab page the test before left, its documents
    closed: each notebook then opens in the booted app (about 4 s less a test than loading JupyterLab again). A test
    that changes the page itself (init scripts, media emulation, server settings read at load) is marked
    `shared_page(False)`; a test that fails passes on a fresh page."""
    marker = request.node.get_closest_marker("shared_page")
    slot = request.getfixturevalue("_module_page") if marker and marker.args != (False,) else None
    page = slot.pop() if slot else _new_page(chromium)
    yield page
    report = getattr(request.node, "_report_call", None)
    failed = report is not None and report.failed
    if failed:
        shot = Path("/tmp") / f"gptoss_lab-{request.node.name}.png"
        try:
            page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot: {shot}")
        except Exception as err:  # the page may be gone; the failure itself matters more
            print(f"no screenshot: {err}")
    if slot is not None and not failed and not page.is_closed() and _cleared(page, jupyter_lab):
        slot.append(page)
    else:
        page.context.close()
    jupyter_lab.shutdown_kernels()


def in_sight(locator: Locator, timeout: float = 10_000) -> Locator:
    """Scroll `locator`'s element into view, as a reader would, and wait until it is drawn; returns the locator.

    JupyterLab's "contentVisibility" windowing leaves a cell far out of view undrawn, where innerText reads '', and
    draws one scrolled in a frame or more later; a mouse aimed by bounding_box() at a part out of view hits nothing."""
    locator.scroll_into_view_if_needed()
    locator.page.wait_for_function("(node) => node.checkVisibility({contentVisibilityAuto: true})",
                                   arg=locator.element_handle(), timeout=timeout)
    return locator


def write_notebook(path: Path, cells: list[str]) -> Path:
    """Write code cells as an nbformat-4 notebook with the python3 kernel."""
    notebook = {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": [{"cell_type": "code", "id": f"c{i}", "metadata": {}, "source": src,
                   "outputs": [], "execution_count": None} for i, src in enumerate(cells)],
    }
    path.write_text(json.dumps(notebook))
    return path


def crafted_notebook(path: Path, view: type, states: list[dict]) -> str:
    """A notebook file as one made to attack its reader could be, trusted (signed as `jupyter trust` signs it): its
    widget state holds one `view` model (the lab's own code and style) per traits of `states` (bytes go as the widget
    state's base64 buffers), each shown by an output; returns its name."""
    models, outputs = {}, []
    for i, traits in enumerate(states):
        state = {"_model_module": "anywidget", "_model_module_version": "~0.11.*", "_model_name": "AnyModel",
                 "_view_module": "anywidget", "_view_module_version": "~0.11.*", "_view_name": "AnyView",
                 "_anywidget_id": f"{view.__module__}.{view.__name__}", "_esm": str(view._esm),
                 "_css": str(view._css), "_id": f"crafted{i}",
                 **{k: v for k, v in traits.items() if not isinstance(v, bytes)}}
        buffers = [{"path": [k], "encoding": "base64", "data": base64.b64encode(v).decode()}
                   for k, v in traits.items() if isinstance(v, bytes)]
        models[f"crafted{i}"] = {"model_name": "AnyModel", "model_module": "anywidget",
                                 "model_module_version": "~0.11.*", "state": state, "buffers": buffers}
        ref = {"version_major": 2, "version_minor": 1, "model_id": f"crafted{i}"}
        outputs.append({"output_type": "display_data", "metadata": {},
                        "data": {"text/plain": f"{view.__name__}()", "application/vnd.jupyter.widget-view+json": ref}})
    notebook = nbformat.from_dict({
        "nbformat": 4, "nbformat_minor": 5,
        "cells": [{"cell_type": "code", "id": "c0", "metadata": {}, "source": "", "outputs": outputs,
                   "execution_count": 1}],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                     "widgets": {"application/vnd.jupyter.widget-state+json": {
                         "version_major": 2, "version_minor": 0, "state": models}}}})
    NotebookNotary().sign(notebook)
    path.write_text(json.dumps(notebook))
    return path.name


def _open(page, lab: Lab, name: str, ui: str, kernel: bool = True) -> None:
    """Go to a notebook and wait until its kernel is idle (or, with kernel=False, until it is drawn)."""
    if kernel:
        lab.start_kernel(name)
    if ui == "lab" and page.evaluate("() => window.gxPageHandedOver === true"):   # a shared page, its documents closed
        page.evaluate("(path) => { window.gxPageHandedOver = false;"
                      " window.jupyterapp.commands.execute('docmanager:open', {path}); }", name)
        page.wait_for_function("(path) => window.jupyterapp.shell.currentWidget?.context?.path === path", arg=name,
                               timeout=60_000)
        # the Launcher JupyterLab opened in the emptied main area goes: the notebook is the one tab, as on a fresh page
        page.evaluate("() => { const shell = window.jupyterapp.shell;"
                      " for (const w of Array.from(shell.widgets('main'))) if (w !== shell.currentWidget) w.dispose(); }")
    else:
        page.goto(lab.open_url(name, ui))
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                           " && window.jupyterapp.shell.currentWidget.sessionContext", timeout=60_000)
    if kernel:
        page.wait_for_function(
            "() => { const s = window.jupyterapp.shell.currentWidget.sessionContext;"
            " return s.session && s.session.kernel && s.session.kernel.connectionStatus === 'connected'"
            " && s.session.kernel.status === 'idle'; }", timeout=60_000)
    else:
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    if ui == "lab":
        page.evaluate("window.jupyterapp.shell.collapseLeft()")


@pytest.fixture()
def save_notebook(page, jupyter_lab: Lab) -> Callable[[str], dict]:
    """Save the open notebook `name` through the front end (as Ctrl+S does); returns the file as JSON."""

    def save(name: str) -> dict:
        path = jupyter_lab.root / name
        before = path.stat().st_mtime_ns if path.exists() else 0
        page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
        deadline = time.monotonic() + 20
        while path.stat().st_mtime_ns == before:
            if time.monotonic() > deadline:
                pytest.fail(f"{name} was not saved")
            time.sleep(0.1)
        time.sleep(0.3)  # the file is replaced whole; let the write settle before reading
        return json.loads(path.read_text())

    return save


@pytest.fixture()
def kernel_run(page) -> Callable[[str], str]:
    """Run code in the open notebook's kernel from the page (as a cell would); returns what it printed."""

    def run(code: str) -> str:
        return page.evaluate("""async (code) => {
          const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
          const future = kernel.requestExecute({ code });
          let out = "";
          future.onIOPub = (msg) => { if (msg.header.msg_type === "stream") out += msg.content.text; };
          await future.done;
          return out;
        }""", code)

    return run


@pytest.fixture()
def open_notebook(page, jupyter_lab: Lab) -> Callable[..., object]:
    """Open a notebook that is already on disk, without running it; returns the page."""

    def run(name: str, *, ui: str = "lab", kernel: bool = False):
        _open(page, jupyter_lab, name, ui, kernel)
        return page

    return run


@pytest.fixture()
def lab_notebook(page, jupyter_lab: Lab) -> Callable[..., object]:
    """Open a notebook of `cells` in Lab (or Notebook 7: `ui="notebook"`), run all cells, wait for
    `wait_for`; returns the page.

    The page is in JupyterLab Light, or Dark with `theme="dark"` (the server keeps the theme a test chose,
    so every test sets its own). The app is reachable as `window.jupyterapp` (the server runs with
    --expose-app-in-browser), so tests can execute Lab commands directly.
    """

    def run(cells: list[str], *, wait_for: str | None = None, name: str | None = None,
            theme: str = "light", timeout: float = 60.0, ui: str = "lab"):
        name = name or f"nb_{secrets.token_hex(4)}.ipynb"
        write_notebook(jupyter_lab.root / name, cells)
        _open(page, jupyter_lab, name, ui)
        light = "false" if theme == "dark" else "true"
        if page.evaluate("() => document.body.dataset.jpThemeLight") != light:
            page.evaluate("window.jupyterapp.commands.execute('apputils:change-theme',"
                          f" {{theme: 'JupyterLab {theme.capitalize()}'}})")
            page.wait_for_selector(f"body[data-jp-theme-light='{light}']", state="attached", timeout=20_000)
            page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=20_000)
        # Not awaited: the command's promise resolves only when every cell has finished.
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
        if wait_for:
            page.wait_for_selector(wait_for, timeout=timeout * 1000)
        return page

    return run
