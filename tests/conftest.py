"""Shared fixtures: small GptOss checkpoints the tests make themselves (real weights can't be downloaded)."""
from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from gptoss_lab.tiny.random_model import make_random_checkpoint
from gptoss_lab.widgets.view import NotebookView

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
def ctrl_c_raises():
    """Ctrl-C raising KeyboardInterrupt, as in a kernel's cell or a terminal: tests run in the background (`pytest &`,
    as some CI runners do) start with SIGINT ignored, and then os.kill(SIGINT) and _thread.interrupt_main do nothing."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
