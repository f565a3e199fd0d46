"""What a search of the user's documents finds (every document that matches, not only the longest one) and what it
names them, also given in memory."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from gptoss_lab.events import ToolCall
from gptoss_lab.tools.browser import Browser, BrowserError
from gptoss_lab.tools.browser.demo import text_pdf


def test_a_long_document_full_of_the_word_does_not_crowd_the_others_out_of_a_search() -> None:
    texts = {"zoo/log.txt": "zebra fed at noon.\n" * 2_000,   # 500 passages, each about zebras
             "handbook.md": "# Handbook\n\nThe zebra enclosure opens at nine.\n",
             "vet.txt": "The vet checks the zebra every Monday.\n",
             "lions.txt": "Lions sleep most of the day.\n"}
    browser = Browser(texts)
    result = browser.run(ToolCall("browser.search", "analysis", json.dumps({"query": "zebra"}), "code"))
    assert result.status == "done"
    assert sorted(hit["url"] for hit in result.data["results"]) == ["handbook.md", "vet.txt", "zoo/log.txt"]
    assert "【1†" in result.output and "【2†" in result.output   # what the model reads: three results to open


def test_a_glob_into_subfolders_names_documents_by_their_path_inside_its_folder(tmp_path: Path) -> None:
    for name in ("notes.md", "field trips/notes.md"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(f"# Notes\n\nZebra sightings in {name}.\n")
    browser = Browser(f"{tmp_path}/**/*.md")
    result = browser.run(ToolCall("browser.search", "analysis", json.dumps({"query": "zebra"}), "code"))
    assert sorted(hit["url"] for hit in result.data["results"]) == ["field trips/notes.md", "notes.md"]
    assert str(tmp_path) not in result.output   # as `Browser(folder)` names them: no path of the user's disk


@pytest.mark.parametrize(("texts", "snippet"), [
    ({Path("notes/zoo.md"): "# Zoo\n\nThe zebra sleeps.\n"}, "【0†Zoo†notes/zoo.md】 Zoo The zebra sleeps."),  # a path
    ({2024: "The zebra sleeps."}, "【0†2024†2024】 The zebra sleeps."),
    ({"zoo.pdf": text_pdf(["The zebra sleeps."])}, "【0†zoo.pdf†zoo.pdf】 The zebra sleeps."),   # a file's bytes
    ({"zoo.txt": "The zebra sleeps \udcff."}, "【0†zoo.txt†zoo.txt】 The zebra sleeps \\udcff."),  # read with surrogateescape
], ids=["path", "number", "pdf-bytes", "surrogate"])
def test_documents_given_in_memory_by_path_or_as_bytes_are_searched(texts: dict, snippet: str) -> None:
    assert f"L4:   * {snippet}" in Browser(texts).search("zebra").splitlines()   # was a TypeError, a repr, ...


def test_a_document_given_in_memory_as_neither_text_nor_bytes_is_refused_in_one_line() -> None:
    with pytest.raises(BrowserError) as raised:
        Browser({"zoo.md": None})   # was a document reading "None"
    assert str(raised.value) == "zoo.md: a document is given as text (str) or bytes, not NoneType"
