"""Documents whose file names hold control characters, terminal sequences, direction overrides, line breaks, `%`
escapes or bytes that are not UTF-8: the model opens and cites each by the name it is shown, two names made alike
stay two documents, and none of those characters reaches the model or a citation. And a text document is kept once,
not a second time for `view_source`."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from gptoss_lab.events import ToolCall
from gptoss_lab.tools.browser import Browser

HIDDEN = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")   # all but the line feed
FIRST_LABEL = re.compile(r"【0†[^†】]*†([^】]*)】")


def _run(browser: Browser, function: str, **args: object):
    return browser.run(ToolCall(f"browser.{function}", "analysis", json.dumps(args), "code"))


def _strings(data: object) -> list[str]:
    """Every string in a tool result's data (what the views show), line feeds left out."""
    if isinstance(data, str):
        return [data.replace("\n", "")]
    items = data.values() if isinstance(data, dict) else data if isinstance(data, (list, tuple)) else []
    return [text for item in items for text in _strings(item)]


def test_each_file_opens_by_the_name_the_model_is_shown_and_no_hidden_character_reaches_it(tmp_path: Path) -> None:
    """`owls\\x1b[31m.txt` was shown as `owls.txt`, which opened the other file of that name; `bats\\u202egnp.md` was
    shown as `batsgnp.md`, which opened nothing; the `URL:` line of the page gave the model the escape sequence, and
    a citation of it quoted it."""
    files = {"owls.txt": "Plain owls eat voles.", "owls\x1b[31m.txt": "Coloured owls eat mice.",
             "bats\u202egnp.md": "Bats eat moths.", "a\nb.txt": "Herons by a linebreak.",
             "a b.txt": "Herons by a spacebar.", "x%41.txt": "Storks by a percentage.", "xA.txt": "Storks plainly.",
             "c\x9b2Jd.txt": "Cranes of eight bits."}
    for name, text in files.items():
        (tmp_path / name).write_text(text + "\n")
    Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9.txt")).write_text("Egrets in Latin.\n")   # read as `café`
    (tmp_path / "café.txt").write_text("Egrets in Unicode.\n")
    browser = Browser(tmp_path)
    urls = [page.url for page in browser.backend.pages]   # the two `café.txt` by their whole paths, as files alike are
    assert sorted(url.rsplit("/", 1)[-1] for url in urls) == sorted(
        ["owls.txt", "owls (2).txt", "batsgnp.md", "a b.txt", "a b (2).txt", "x％41.txt", "xA.txt", "cd.txt", "café.txt",
         "café (2).txt"])
    words = {"voles": "Plain owls", "mice": "Coloured owls", "moths": "Bats eat", "linebreak": "Herons by a line",
             "spacebar": "Herons by a space", "percentage": "Storks by a", "plainly": "Storks plainly",
             "eight": "Cranes of", "latin": "Egrets in Latin", "unicode": "Egrets in Unicode"}
    shown = []
    for word, text in words.items():
        results = _run(browser, "search", query=word)
        name = FIRST_LABEL.search(browser.stack[-1].text).group(1)   # what the model reads in the result page
        by_name = _run(browser, "open", id=name)                 # ... and writes back
        assert by_name.status == "done" and text in by_name.output, (word, name, by_name.output)
        found = _run(browser, "find", pattern=text.split()[-1])
        shown += [results, by_name, found, _run(browser, "open", id=0, cursor=len(browser.stack) - 3)]
    citations = browser.citations(" ".join(f"【{cursor}†L0-L3】" for cursor in range(len(browser.stack))))
    assert {c.url for c in citations} >= set(urls)
    for result in shown:
        assert not HIDDEN.search(result.output), result.output
        assert not any(HIDDEN.search(text) for text in _strings(result.data)), result.data
    for citation in citations:
        assert not HIDDEN.search(citation.url + citation.title + citation.text.replace("\n", "")), citation

    texts = Browser({"owls.md": "Plain owls eat voles.", "owls\x1b]0;pwned\x07.md": "Titled owls eat mice."})
    assert [page.url for page in texts.backend.pages] == ["owls.md", "owls (2).md"]
    assert "Titled owls eat mice." in texts.open(id="owls (2).md") and "voles" in texts.open(id="owls.md")


def test_a_file_name_opens_that_file_never_another_of_the_same_name_in_a_subfolder(tmp_path: Path) -> None:
    """`notes.txt` opened `a/notes.txt` (its file name came first); a name two files in subfolders share opened the
    first of them, as if it were the only one."""
    for name, text in {"a/notes.txt": "Notes in a folder.", "notes.txt": "Notes at the top.",
                       "b/dup.md": "First duplicate.", "c/dup.md": "Second duplicate.", "d/only.md": "Only one."}.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text + "\n")
    browser = Browser(tmp_path)
    assert "Notes at the top." in browser.open(id="notes.txt")
    assert "Notes in a folder." in browser.open(id="a/notes.txt")
    assert "Only one." in browser.open(id="only.md")              # a file name that is no other's still opens
    ambiguous = _run(browser, "open", id="dup.md")
    assert ambiguous.status == "error" and "not one of the 5 documents" in ambiguous.output


def test_a_document_opens_by_its_name_written_with_dot_slash_spaces_or_in_another_case_where_one_has_it(
        tmp_path: Path) -> None:
    """`./owls.md` (and `docs//bats.md`, `OWLS.MD`) was "not one of the 4 documents", though one document has it."""
    for name, text in {"owls.md": "Barn owls.", "docs/bats.md": "Fruit bats.", "Notes.md": "Upper.",
                       "notes.md": "Lower."}.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text + "\n")
    browser = Browser(tmp_path)
    for name, text in {"./owls.md": "Barn owls.", " ./owls.md ": "Barn owls.", "OWLS.md": "Barn owls.",
                       "./docs/bats.md": "Fruit bats.", "docs//bats.md": "Fruit bats.", " Bats.MD": "Fruit bats."}.items():
        opened = _run(browser, "open", id=name)
        assert opened.status == "done" and f"L2: {text}" in opened.output, (name, opened.output)
    assert "Upper." in browser.open(id="./Notes.md") and "Lower." in browser.open(id="notes.md")
    ambiguous = _run(browser, "open", id="NOTES.md")     # two documents have that name in another case
    assert ambiguous.status == "error" and "not one of the 4 documents" in ambiguous.output


def test_view_source_of_a_text_document_is_its_text_kept_once(tmp_path: Path) -> None:
    """A text or Markdown document was kept twice (its text, and the same again for `view_source`), and the view
    source of a file with Windows line ends gave the model a carriage return at the end of every line."""
    (tmp_path / "owls.md").write_bytes(b"# Owls\r\n\r\nBarn owls **hunt** at dusk.\r\n")
    (tmp_path / "bats.html").write_text("<html><body><p>Bats <b>fly</b>.</p></body></html>")
    browser = Browser(tmp_path)
    source = _run(browser, "open", id="owls.md", view_source=True)
    assert source.output.split("\n")[3:] == ["L0: # Owls", "L1: ", "L2: Barn owls **hunt** at dusk.", "L3: "]
    pages = {page.url: page for page in browser.backend.pages}
    assert pages["owls.md"].raw is None and pages["bats.html"].raw is not None   # HTML's source is not its text
    assert "<b>fly</b>" in _run(browser, "open", id="bats.html", view_source=True).output
