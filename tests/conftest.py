"""Shared fixtures: small GptOss checkpoints the tests make themselves (real weights can't be downloaded), and
fresh kernels."""
from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings

from gptoss_lab.tiny.random_model import make_random_checkpoint
from gptoss_lab.widgets.view import NotebookView

if TYPE_CHECKING:
    from jupyter_client.blocking.client import BlockingKernelClient
    from jupyter_client.manager import KernelManager

# Fuzz tests draw the same examples in every run (a CI failure can be rerun as is) and write no database.
settings.register_profile("lab", derandomize=True, database=None, deadline=None,
                          suppress_health_check=list(HealthCheck))
settings.load_profile("lab")


@pytest.fixture(autouse=True)
def _views_not_known_drawn(monkeypatch):
    """Each test starts as a fresh kernel does: not known whether a front end draws views (a chat turn under no front
    end sets it to False for the rest of the process, which would take the widget out of every later routing view)."""
    monkeypatch.setattr(NotebookView, "drawn_here", None)


@pytest.fixture(autouse=True)
def _no_pages_kept():
    """Each test reads documents as a fresh kernel does: none kept from another test's folder (a test that makes a
    conversion fail, by a short deadline or a patched reader, was served the page an earlier test kept)."""
    kept = sys.modules.get("gptoss_lab.tools.browser.cache")
    if kept is not None:
        kept.forget()


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory) -> Path:
    """A random 4-layer, 8-expert top-2 GptOss checkpoint folder."""
    return make_random_checkpoint(tmp_path_factory.mktemp("random_gptoss"))


@pytest.fixture
def lab_shell():
    """An in-process IPython shell with the lab's extension loaded (`%gptoss` as in a notebook), cleared afterwards."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "gptoss_lab")
        yield shell
    finally:
        InteractiveShell.clear_instance()


@pytest.fixture
def ctrl_c_raises():
    """Ctrl-C raising KeyboardInterrupt, as in a kernel's cell or a terminal: tests run in the background (`pytest &`,
    as some CI runners do) start with SIGINT ignored, and then os.kill(SIGINT) and _thread.interrupt_main do nothing."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


class _Kernels:
    """Fresh python3 kernels, each launched while the test before runs (a kernel's start is a second or two that a
    test spends mostly waiting on another process): every test gets a kernel no test has used, started as one
    started now would be (a spare launched under another environment, folder or Ctrl-C handling is shut down, not
    handed out)."""

    def __init__(self) -> None:
        self._spare: tuple[KernelManager, tuple] | None = None

    @staticmethod
    def _conditions() -> tuple:
        """What a kernel takes from this process when it starts (less pytest's name of the running test)."""
        env = {name: value for name, value in os.environ.items() if name != "PYTEST_CURRENT_TEST"}
        return env, os.getcwd(), signal.getsignal(signal.SIGINT)

    def take(self) -> tuple[KernelManager, BlockingKernelClient]:
        """A started kernel and its connected client (as jupyter_client's start_new_kernel returns them)."""
        spare, self._spare = self._spare, None
        if spare is not None and spare[1] != self._conditions():
            spare[0].shutdown_kernel(now=True)
            spare = None
        km = spare[0] if spare is not None else self._launch()[0]
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=60)
        except RuntimeError:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
            raise
        self._spare = self._launch()
        return km, kc

    def _launch(self) -> tuple[KernelManager, tuple]:
        from jupyter_client.manager import KernelManager

        km = KernelManager(kernel_name="python3")
        km.start_kernel()
        return km, self._conditions()

    def close(self) -> None:
        """Shut the spare kernel down."""
        if self._spare is not None:
            self._spare[0].shutdown_kernel(now=True)
            self._spare = None


@pytest.fixture(scope="session")
def kernels() -> Iterator[_Kernels]:
    """Fresh kernels for tests that each need their own: `kernels.take()` returns (manager, client)."""
    pool = _Kernels()
    yield pool
    pool.close()
