"""A document folder changed while the browser reads it: a folder on the way to a document swapped for a link is
never followed out of the folder, a hard link to a file elsewhere is named, and a long URL's header is no content."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from gptoss_lab.tools.browser import Browser, local


def test_a_folder_swapped_for_a_link_while_a_document_is_opened_is_never_followed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outside, docs = tmp_path / "outside", tmp_path / "docs"
    outside.mkdir()
    (outside / "a.txt").write_text("The vault code is 4711.\n")
    (docs / "sub").mkdir(parents=True)
    (docs / "sub" / "a.txt").write_text("Barn owls hunt at dusk.\n")
    (docs / "voles.md").write_text("# Voles\n\nVoles hide.\n")   # read after sub/a.txt
    found = local.collect([docs])
    monkeypatch.setattr(local, "collect", lambda paths, **_: found)
    real_open, steps = os.open, len((docs / "sub" / "a.txt").parts)
    for swap_at in range(steps):   # before each file or folder the reader may open on its way to sub/a.txt
        calls: list[tuple[Any, ...]] = []

        def swapping_open(*args: Any, swap_at: int = swap_at, **kwargs: Any) -> int:
            if len(calls) == swap_at:   # `sub` becomes a link to `outside`, after the folder was listed and checked
                (docs / "sub").rename(docs / ".sub")
                (docs / "sub").symlink_to(outside, target_is_directory=True)
            calls.append(args)
            return real_open(*args, **kwargs)

        monkeypatch.setattr(os, "open", swapping_open)
        browser = Browser(docs)
        monkeypatch.setattr(os, "open", real_open)
        (docs / "sub").unlink()
        (docs / ".sub").rename(docs / "sub")
        assert "4711" not in "".join(page.text for page in browser.backend.pages), swap_at   # was read as sub/a.txt
        read = {page.url: page.text for page in browser.backend.pages}
        described = browser.describe()
        refused = "; skipped 1 that could not be read (sub/a.txt: made a link since the folder was listed; not followed)"
        assert "Barn owls hunt at dusk." in read.get("sub/a.txt", "") or described.endswith(refused), swap_at
        if swap_at == 0:   # swapped before anything of sub/a.txt was opened: it is skipped, and said so
            assert described == f"1 document in {docs} (1 Markdown; 3 lines){refused}"


def test_a_hard_link_to_a_file_elsewhere_is_named(tmp_path: Path) -> None:
    secret, docs = tmp_path / "secret.txt", tmp_path / "docs"
    secret.write_text("The vault code is 4711.\n")
    docs.mkdir()
    (docs / "notes.md").write_text("# Notes\n\nBarn owls hunt at dusk.\n")
    os.link(secret, docs / "copy.txt")                       # the file outside the folder, under a name inside it
    (docs / "voles.txt").write_text("Voles hide.\n")
    os.link(docs / "voles.txt", docs / "voles again.txt")    # both names in the folder: nothing elsewhere to say
    browser = Browser(docs)
    assert browser.describe() == f"4 documents in {docs} (3 text, 1 Markdown; 6 lines); 1 is a hard link to a file " \
        "also elsewhere on disk, maybe outside the folder (copy.txt)"   # was read as any other document, unsaid
    os.link(docs / "notes.md", tmp_path / "notes elsewhere.md")
    assert Browser(docs).describe().endswith("; 2 are hard links to a file also elsewhere on disk, maybe outside the "
                                             "folder (copy.txt, ...)")


def test_a_long_urls_header_is_never_indexed_nor_shown_as_a_snippet(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    folder = docs / "greenhouse-maintenance-handbook-for-the-northern-sites" / "seasonal-checklists"
    folder.mkdir(parents=True)
    (folder / "autumn-ventilation.md").write_text("# Autumn\n\nOpen the roof vents at dawn.\n")
    browser = Browser(docs)
    page = browser.backend.pages[0]
    assert page.lines[1] != f"URL: {page.url}"   # the `URL:` line wraps
    results = browser.backend.search("roof vents", 5)
    assert [result.snippet for result in results] == ["Autumn Open the roof vents at dawn."]   # was `URL: green…`
    assert "URL: greenhouse" not in browser.search("roof vents")
    assert browser.backend.search("northern sites checklists", 5) == []   # the URL's words were found as content
