"""Names and addresses the browser shows the model and the user: a document renamed apart from another is called by
its shown name everywhere (result titles, page headers, citations), a name differing from another only by invisible
characters is told apart, and a URL's control, direction and zero-width characters are written as escapes wherever
it is kept (results, links, pages, citations), while its page still opens by its number."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gptoss_lab.events import ToolCall
from gptoss_lab.tools.browser import Browser
from gptoss_lab.tools.browser.page import Page, SearchResult
from gptoss_lab.widgets.sanitize import HIDDEN

UNCLEAN = re.compile(f"[\x00-\x1f\x7f-\x9f]|{HIDDEN.pattern}")
RESULT = re.compile(r"【(\d+)†([^†】]*)†([^】]*)】")


def _run(browser: Browser, function: str, **args: object):
    return browser.run(ToolCall(f"browser.{function}", "analysis", json.dumps(args), "code"))


def _strings(data: object) -> list[str]:
    """Every string in a tool result's data (what the views show)."""
    if isinstance(data, str):
        return [data]
    items = data.values() if isinstance(data, dict) else data if isinstance(data, (list, tuple)) else []
    return [text for item in items for text in _strings(item)]


def _results(browser: Browser, query: str) -> dict[str, tuple[int, str]]:
    """label -> (result id, title), as the model reads the result page."""
    result = _run(browser, "search", query=query)
    assert result.status == "done", result.output
    return {label: (int(i), title) for i, title, label in RESULT.findall(result.output)}


def test_a_document_renamed_apart_goes_by_its_shown_name_in_results_headers_and_citations(tmp_path: Path) -> None:
    """`owls\\x1b[31m.txt` is shown as `owls (2).txt` (another file is `owls.txt`), but its title stayed `owls.txt`:
    two results read `owls.txt`, its page's header and a citation of it named `owls.txt` too."""
    (tmp_path / "owls.txt").write_text("Plain owls eat voles.\n")
    (tmp_path / "owls\x1b[31m.txt").write_text("Coloured owls eat mice.\n")
    for browser in (Browser(tmp_path), Browser({"owls.txt": "Plain owls eat voles.\n",
                                                "owls\x1b[31m.txt": "Coloured owls eat mice.\n"})):
        hits = _results(browser, "owls")
        assert {label: title for label, (_, title) in hits.items()} == {"owls.txt": "owls.txt",
                                                                        "owls (2).txt": "owls (2).txt"}
        opened = _run(browser, "open", id=hits["owls (2).txt"][0], cursor=0)
        assert opened.output.startswith("[1] owls (2).txt (owls (2).txt)\n"), opened.output
        assert opened.data["title"] == "owls (2).txt" and "L2: Coloured owls eat mice." in opened.output
        found = _run(browser, "find", pattern="mice", cursor=1)
        assert "`owls (2).txt`" in found.output and found.data["title"] == "owls (2).txt"
        cited = browser.citations("Owls eat mice 【1†L2】 as found 【2†L1】.")
        assert [(c.url, c.title, c.start, c.end, c.text) for c in cited] == [
            ("owls (2).txt", "owls (2).txt", 2, 2, "Coloured owls eat mice."),
            ("owls (2).txt", "owls (2).txt", 2, 2, "Coloured owls eat mice.")]


def test_a_name_that_differs_only_by_invisible_characters_is_told_apart(tmp_path: Path) -> None:
    """`owls\\u200d.txt` (a zero-width joiner) read exactly as `owls.txt` in the results, yet was another file; a word
    joiner or byte order mark in a name did the same."""
    texts = {"owls.txt": "Plain owls eat voles.", "owls\u200d.txt": "Joined owls eat shrews.",
             "bats.md": "Bats eat moths.", "bats\u2060.md": "Joined bats eat gnats.", "\ufeffcats.md": "Cats."}
    for name, text in texts.items():
        (tmp_path / name).write_text(text + "\n")
    for browser in (Browser(tmp_path), Browser(texts)):
        assert sorted(page.url for page in browser.backend.pages) == [
            "bats (2).md", "bats.md", "cats.md", "owls (2).txt", "owls.txt"]
        for query, text in (("shrews", "Joined owls"), ("gnats", "Joined bats")):
            hits = _results(browser, query)
            assert not any(UNCLEAN.search(label + title) for label, (_, title) in hits.items())
            (label, (number, _)), = hits.items()
            assert text in _run(browser, "open", id=label).output
            assert text in _run(browser, "open", id=number, cursor=len(browser.stack) - 2).output


def test_urls_keep_no_control_direction_or_zero_width_character_and_still_open_by_number() -> None:
    """A search function's hit at `https://owls.example/a\\u202egnp.exe` (and an ESC, a zero-width space) kept those
    characters in the result's URL the views show, in the links of the page and in a citation's URL: an address
    read backwards, or as another. They are percent-escapes now (the same address), and the page opens by number."""
    fetched: list[str] = []
    raw = "https://owls.example/a\u202egnp.exe\x1b[2J\u200b"

    def search(query: str, topn: int) -> list[dict[str, str]]:
        return [{"title": "Owls", "url": raw, "snippet": "Owls hunt."},
                {"title": "Bats", "url": "https://bats.example/x\u200dy", "text": "Bats hunt at dusk."}]

    def fetch(url: str) -> dict[str, str]:
        fetched.append(url)
        return {"title": "Owls", "html": '<p>Owls <a href="https://evil.example/&#x202e;fdp.exe">read</a> and '
                                          '<a href="/z&#x200b;&#x1b;[31m">more</a>.</p>'}

    browser = Browser(search=search, fetch=fetch)
    results = _run(browser, "search", query="owls")
    owls = _run(browser, "open", id=0, cursor=0)
    assert owls.status == "done" and "Owls 【0†read†evil.example】 and 【1†more】." in owls.output
    assert fetched == [raw]                    # the user's function is asked for the address it gave
    texts = Browser(search=search)             # no fetch function: pages are the texts given with the hits
    _run(texts, "search", query="bats")
    bats = _run(texts, "open", id=1, cursor=0)
    assert bats.status == "done" and "Bats hunt at dusk." in bats.output
    link = _run(browser, "open", id=0, cursor=1)
    assert link.status == "done" and fetched[-1] == "https://evil.example/%E2%80%AEfdp.exe"
    cited = browser.citations("【1†L2】") + texts.citations("【1†L2】")
    assert [c.url for c in cited] == ["https://owls.example/a%E2%80%AEgnp.exe%1B[2J%E2%80%8B",
                                      "https://bats.example/x%E2%80%8Dy"]
    assert browser.stack[1].urls == {"0": "https://evil.example/%E2%80%AEfdp.exe",
                                     "1": "https://owls.example/z%E2%80%8B%1B[31m"}
    for result in (results, owls, bats, link):
        assert not UNCLEAN.search(result.output.replace("\n", "")), result.output
        assert not any(UNCLEAN.search(text.replace("\n", "")) for text in _strings(result.data)), result.data
    assert not any(UNCLEAN.search(c.url + c.title) for c in cited)
    assert not any(UNCLEAN.search(url) for page in browser.stack + texts.stack for url in [page.url, *page.urls.values()])


def test_a_page_header_never_decodes_an_escape_into_an_invisible_character() -> None:
    """The header decodes a URL's escapes for reading (`%20` a space), so `%E2%80%8D` put a zero-width joiner in it,
    and `%E2%80%8F` a right-to-left mark: they are left out there, as a `%E2%80%AE` was (the URL keeps them)."""
    page = Page(url="https://owls.example/a%E2%80%8Db%E2%80%8F%20c", title="Owls", text="\nURL: x\nOwls hunt.")
    browser = Browser(search=lambda q, n: [], fetch=lambda url: page)
    opened = _run(browser, "open", id="https://owls.example/")
    assert opened.output.split("\n")[0] == "[0] Owls (https://owls.example/ab c)"
    assert opened.data["url"] == "https://owls.example/a%E2%80%8Db%E2%80%8F%20c"


def test_a_hit_without_a_title_is_named_by_its_url_without_faking_a_link() -> None:
    """A hit with no title was named by its URL as it was: `https://x.org/a】 fake【1†b` closed the result's link and
    opened another, of the page's choosing."""
    browser = Browser(search=lambda q, n: [SearchResult("", "https://x.org/a】 fake【1†b", "Owls.")])
    output = browser.search("owls")
    assert output.endswith("\nL4:   * 【0†https://x.org/a〗 fake〖1‡b†x.org】 Owls.")
    assert len(RESULT.findall(output)) == 1


def test_find_without_matches_says_the_pattern_back_on_one_line_without_control_characters() -> None:
    """`No find results for pattern: ...` gave the pattern back as it was: a line break in it made a line `L1: ...`
    of the model's choosing, and its terminal sequences, direction overrides and link syntax went with it."""
    browser = Browser({"a.txt": "alpha\nbeta\n"})
    browser.open(id="a.txt")
    found = _run(browser, "find", pattern="zz\x1b[2J\u202e【0†fake】\nL9: x", cursor=0)
    assert found.output.split("\n")[3:] == ["L0: No `find` results for pattern: `zz〖0†fake〗 l9: x`"]
    assert not UNCLEAN.search(json.dumps(found.data["lines"], ensure_ascii=False))


def test_a_pdf_without_text_is_skipped_with_the_reason_not_kept_empty(tmp_path: Path) -> None:
    """A scanned PDF (pages without text) was kept as an empty document: counted as read, never found by a search,
    opened blank; the user was not told the browser could not read it."""
    from pypdf import PdfWriter

    scan = PdfWriter()
    scan.add_blank_page(612, 792)
    with open(tmp_path / "scan.pdf", "wb") as file:
        scan.write(file)
    (tmp_path / "owls.txt").write_text("Owls hunt at dusk.\n")
    browser = Browser(tmp_path)
    assert [page.url for page in browser.backend.pages] == ["owls.txt"]
    assert browser.describe().endswith("; skipped 1 that could not be read (scan.pdf: the PDF holds no text "
                                       "(scanned pages? the browser reads no images))")


def test_a_skipped_file_is_named_with_its_invisible_characters_written_out(tmp_path: Path) -> None:
    """`owls\\u200d.pdf` (broken) was listed as skipped under a name that read exactly as the `owls.pdf` that was
    read."""
    from gptoss_lab.tools.browser.demo import text_pdf

    (tmp_path / "owls.pdf").write_bytes(text_pdf(["Owls hunt at dusk."]))
    (tmp_path / "owls\u200d.pdf").write_bytes(b"not a PDF")
    described = Browser(tmp_path).describe()
    assert "; skipped 1 that could not be read (owls\\u200d.pdf: not a readable PDF (" in described, described


def test_a_find_match_in_a_page_source_opens_that_source_at_the_match() -> None:
    """Opening a match of `find` in a `view_source` page fetched `view-source:owls.html` as if it were a document:
    "Error fetching URL `view-source:owls.html`: not one of the 2 documents"."""
    browser = Browser({"owls.html": "<p>Intro.</p>\n" * 9 + "<p>Owls hunt <a href='bats.html'>bats</a> at dusk.</p>",
                       "bats.html": "<p>Bats</p>"})
    browser.open(id="owls.html", view_source=True)
    browser.find("dusk")
    opened = _run(browser, "open", id=0)
    assert opened.status == "done", opened.output
    assert opened.output.startswith("[2] owls.html (view-source:owls.html)\n**viewing lines [5 - 9] of 9**\n")
    assert opened.output.endswith("\nL9: <p>Owls hunt <a href='bats.html'>bats</a> at dusk.</p>")
    assert [c.text for c in browser.citations("【2†L9】")] == ["<p>Owls hunt <a href='bats.html'>bats</a> at dusk.</p>"]


def test_view_source_of_the_current_page_never_fetches_an_address_no_page_linked() -> None:
    """`view_source` of the page shown fetched the page's address again: a find page's `https://owls.example/a/find?
    pattern=dusk`, a result page's "" and a source page's `view-source:...` reached the user's fetch (a web backend
    would have requested them), and the model read another page's source. A result or find page is told it has no
    source, a source page is its own source, and only the result the model opened is fetched."""
    asked: list[str] = []
    browser = Browser(search=lambda query, topn: [("Owls", "https://owls.example/a", "Owls.")],
                      fetch=lambda url: asked.append(url) or {"title": "Owls", "html": "<p>Owls hunt at dusk.</p>"})
    browser.search("owls")
    refused = 'not a {} results page: open one of its results with it, e.g. {{"id": 0, "view_source": true}}'
    assert _run(browser, "open", view_source=True).output.endswith(refused.format("search"))
    browser.open(id=0, cursor=0)
    browser.find("dusk")
    assert _run(browser, "open", view_source=True).output.endswith(refused.format("find"))
    source = _run(browser, "open", cursor=1, view_source=True).output
    assert source.split("\n")[0] == "[3] Owls (view-source:https://owls.example/a)"
    assert source.endswith("\nL0: <p>Owls hunt at dusk.</p>")
    assert _run(browser, "open", view_source=True).output == source.replace("[3]", "[4]", 1)
    assert asked == ["https://owls.example/a"]


def test_opening_a_find_match_is_asked_about_by_the_page_and_line_it_is_at() -> None:
    """The approval card for opening a match of `find` read "Open result 2: #2 (owls.md)?": the match's title is its
    number. It names the page searched and the line the match is at."""
    browser = Browser({"owls.md": "# Barn owls\n\n" + "They nest in barns.\n" * 12 + "Owls hunt at dusk.\n"})
    browser.open(id="owls.md")
    browser.find("dusk")
    call = ToolCall("browser.open", "analysis", json.dumps({"id": 0}), "code")
    assert browser.approval_question(call) == "Open match 0 of Barn owls at line 16?"
    assert _run(browser, "open", id=0).output.startswith("[2] Barn owls (owls.md)\n**viewing lines [12 - ")


def test_an_empty_query_or_pattern_is_refused_before_any_search() -> None:
    """`search` with `""` or spaces asked the backend (a paid API's call) and showed an empty result page without a
    word why; `find` with `""` listed every line of the page as a match."""
    asked: list[str] = []
    browser = Browser(search=lambda query, topn: asked.append(query) or [("Owls", "https://owls.example/", "Owls.")],
                      fetch=lambda url: "Owls hunt at dusk.")
    for query in ("", "  \t"):
        result = _run(browser, "search", query=query)
        assert (result.status, result.output) == ("error", 'Invalid function arguments: `query` is empty, e.g. '
                                                           '{"query": "solar panel cleaning"}')
    assert asked == [] and browser.stack == []
    browser.search("owls")
    browser.open(id=0)
    found = _run(browser, "find", pattern=" ")
    assert (found.status, found.output) == ("error", 'Invalid function arguments: `pattern` is empty, e.g. '
                                                     '{"pattern": "warranty"}')
    assert len(browser.stack) == 2
    with pytest.raises(ValueError, match="`query` is empty"):   # the same from Python
        browser.search("")


def test_names_alike_once_their_accents_are_composed_are_told_apart(tmp_path: Path) -> None:
    """`cafe\\u0301.txt` (an accent written apart, as macOS names files) and `café.txt` read the same, yet the model
    wrote back one of them for either."""
    texts = {"café.txt": "Egrets composed.", "cafe\u0301.txt": "Egrets decomposed.", "ne\u0301e.md": "Herons."}
    for name, text in texts.items():
        (tmp_path / name).write_text(text + "\n")
    for browser in (Browser(tmp_path), Browser(texts)):
        assert sorted(page.url for page in browser.backend.pages) == ["café (2).txt", "café.txt", "née.md"]
        assert "Egrets decomposed." in browser.open(id="café (2).txt") and "Herons." in browser.open(id="née.md")


def test_a_link_to_another_document_written_unescaped_leads_to_its_name(tmp_path: Path) -> None:
    """`<a href="café.html">` (HTML lets a link hold such letters) and `<a href="a b.html">` stayed links to
    `file:///...` paths: the approval card named the whole path on the disk, not the document."""
    (tmp_path / "index.html").write_text('<p><a href="café.html">raw</a> <a href="caf%C3%A9.html">escaped</a> '
                                         '<a href="a b.html">spaced</a> <a href="a%20b.html">escaped</a></p>')
    (tmp_path / "café.html").write_text("<p>Cafe page</p>")
    (tmp_path / "a b.html").write_text("<p>Spaced page</p>")
    browser = Browser(tmp_path)
    browser.open(id="index.html")
    assert browser.stack[0].urls == {"0": "café.html", "1": "café.html", "2": "a b.html", "3": "a b.html"}
    call = ToolCall("browser.open", "analysis", json.dumps({"id": 0}), "code")
    assert browser.approval_question(call) == "Open result 0: café.html?"
    assert "Cafe page" in _run(browser, "open", id=0).output


PHISHING = "https://paypal.com@evil.example/login"


def _phishing_search() -> tuple[Browser, list[str]]:
    """A browser whose search finds PHISHING, and the addresses its fetch function was asked for."""
    asked: list[str] = []

    def fetch(url: str) -> str:
        asked.append(url)
        return "Enter your card number."

    return Browser(search=lambda query, topn: [{"title": "Log in", "url": PHISHING, "snippet": "Log in."}],
                   fetch=fetch), asked


def test_a_web_address_with_a_user_name_reads_as_the_site_it_opens() -> None:
    """`https://paypal.com@evil.example/login` is evil.example's page (paypal.com is a user name), but the results
    labelled it `paypal.com@evil.example` and the model, the page header and the citation kept the whole address.
    The address is kept without the user name; the search function's fetch still gets the address it gave."""
    given = PHISHING
    browser, asked = _phishing_search()
    results = _run(browser, "search", query="login")
    assert "paypal.com" not in results.output and "paypal.com" not in " ".join(_strings(results.data))
    assert _results(browser, "login") == {"evil.example": (0, "Log in")}
    opened = _run(browser, "open", id=0)
    assert opened.status == "done" and asked[-1] == given
    assert "paypal.com" not in opened.output and "https://evil.example/login" in opened.output
    assert [c.url for c in browser.citations("【2†L1】")] == ["https://evil.example/login"]


def test_an_address_the_model_writes_is_opened_without_its_user_name() -> None:
    """`open(id="https://paypal.com:pw@evil.example/…")` sent the user name and password the model wrote to the site
    (the approval question showed `https://…@evil.example/…`). The address is opened without them; a result's own
    address, written out by the model, is still fetched as the search function gave it."""
    browser, asked = _phishing_search()
    _run(browser, "search", query="login")
    opened = _run(browser, "open", id="https://paypal.com:hunter2@evil.example/other")
    assert opened.status == "done" and asked[-1] == "https://evil.example/other"
    assert "hunter2" not in opened.output and "paypal.com" not in opened.output
    assert _run(browser, "open", id=PHISHING).status == "done" and asked[-1] == PHISHING
