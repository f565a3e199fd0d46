"""A folder read again converts only the documents whose bytes changed, and shows what each holds now."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gptoss_lab.events import ToolCall
from gptoss_lab.tools.browser import Browser, cache, extract, local


@pytest.fixture
def conversions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The URLs of the documents converted from now on."""
    converted: list[str] = []

    def counted(data: bytes, url: str, *args: object, **kwargs: object) -> object:
        converted.append(url)
        return extract.document_page(data, url, *args, **kwargs)

    monkeypatch.setattr(local, "document_page", counted)
    return converted


def _search(browser: Browser, query: str) -> str:
    return browser.run(ToolCall("browser.search", "analysis", json.dumps({"query": query}), "code")).output


def _open(browser: Browser, url: str) -> str:
    return browser.run(ToolCall("browser.open", "analysis", json.dumps({"id": url}), "code")).output


def test_a_folder_read_again_converts_only_the_file_that_changed(tmp_path: Path, conversions: list[str]) -> None:
    (tmp_path / "owls.html").write_text("<title>Owls</title><p>Barn owls hunt voles at dusk.</p>")
    (tmp_path / "bats.md").write_text("# Bats\n\nBats hunt moths at night.\n")
    (tmp_path / "notes.txt").write_text("Voles hide in the tall grass.\n")
    Browser(tmp_path)
    assert sorted(conversions) == ["bats.md", "notes.txt", "owls.html"]
    (tmp_path / "bats.md").write_text("# Bats\n\nBats hunt beetles at night.\n")
    again = Browser(tmp_path)
    assert conversions[3:] == ["bats.md"]
    shown = [_search(again, "voles hunt"), _open(again, "bats.md")]
    cache.forget()
    cold = Browser(tmp_path)
    assert shown == [_search(cold, "voles hunt"), _open(cold, "bats.md")]
    assert "beetles" in shown[1] and "moths" not in shown[1]


def test_a_file_rewritten_with_its_size_and_time_kept_is_read_anew(tmp_path: Path, conversions: list[str]) -> None:
    """Kept by the bytes, not by path, size and time: a file rewritten within the clock's tick (or its time set back,
    as a copy or an archive does) showed its old text."""
    path = tmp_path / "dose.md"
    path.write_text("# Dose\n\nTake 10 mg a day.\n")
    before = path.stat()
    assert "10 mg" in _open(Browser(tmp_path), "dose.md")
    path.write_text("# Dose\n\nTake 40 mg a day.\n")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    shown = _open(Browser(tmp_path), "dose.md")
    assert "40 mg" in shown and "10 mg" not in shown


def test_titles_a_browser_told_apart_are_not_those_of_the_next(tmp_path: Path, conversions: list[str]) -> None:
    """Each browser has its own copy of a kept page: a title renamed apart in one (two `Notes`) is the document's own
    in the next, once the other is renamed, and results and opens are what a browser read cold shows."""
    (tmp_path / "readme.md").write_text("# Notes\n\nOwls nest in barns.\n")
    (tmp_path / "b.md").write_text("# Notes\n\nBats roost in caves.\n")
    assert "Notes — readme.md" in _search(Browser(tmp_path), "owls")
    (tmp_path / "b.md").write_text("# Bats\n\nBats roost in caves.\n")
    again = Browser(tmp_path)
    assert conversions[2:] == ["b.md"]
    shown = [_search(again, "owls"), _open(again, "readme.md")]
    cache.forget()
    cold = Browser(tmp_path)
    assert shown == [_search(cold, "owls"), _open(cold, "readme.md")]
    assert "Notes" in shown[0] and "Notes — readme.md" not in shown[0]
