"""Bounds on what reading documents and pages may cost: a hostile web page, PDF or folder holds the kernel for
a bounded time and memory, and the user is told in one line what was left out; nothing waits on a file that
never ends (the kernel's /proc files, a pipe); pypdf's log of what it works around stays out of the notebook."""
from __future__ import annotations

import itertools
import json
import logging
import math
import os
import re
import socket
import threading
import time
import zlib
from pathlib import Path

import lxml.etree
import pytest
from test_browser_hostile import pdf
from test_browser_web import FakeServer, opened, server  # noqa: F401  (the fake server fixture)

from gptoss_lab.tools.browser import Browser, BrowserError, Exa, SearXNG, cache, extract, local
from gptoss_lab.tools.browser.extract import html_page
from gptoss_lab.tools.browser.page import end_line


def test_a_web_page_of_a_megabyte_of_tags_is_given_up_on_time(server: FakeServer,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(extract, "MAX_HTML_SECONDS", 0.5, raising=False)
    server.routes["GET /br"] = lambda request: (200, "text/html", b"<br>" * 250_000)
    t0 = time.perf_counter()
    status, output = opened(Browser(SearXNG(server.url)), f"{server.url}/br")
    assert time.perf_counter() - t0 < 3             # was 5 s (the fetch's 5 MB: 19 s, after its timeout)
    assert (status, output) == ("error", f"Error fetching URL `{server.url}/br`: converting the page took longer "
                                         "than 0.5 s")


def test_a_long_page_converted_a_piece_at_a_time_reads_as_one() -> None:
    html = "".join(f"<p>{n}. Barn owls &amp; <b>tawny</b> owls</p>\n<ul><li>at dusk</li></ul>" for n in range(6_000))
    text = html_page(html, "owls.html").text           # 370 kB: six pieces, each cut before a tag
    assert text == "\nURL: owls.html\n" + " \n\n".join(f"{n}. Barn owls & tawny owls\n\n  * at dusk"
                                                         for n in range(6_000))   # as for three of them


def _pages_pdf(count: int) -> bytes:
    """A PDF listing `count` distinct page objects (each a few dozen bytes), all drawing the same text."""
    text = b"BT /F1 12 Tf 72 720 Td (owls) Tj ET"
    kids = b" ".join(b"%d 0 R" % (5 + n) for n in range(count))
    return pdf([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, count),
                b"<< /Length %d >>\nstream\n%s\nendstream" % (len(text), text),
                b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
               + [b"<< /Type /Page /Parent 2 0 R /Contents 3 0 R /Resources << /Font << /F1 4 0 R >> >> >>"] * count)


def test_a_pdf_listing_more_pages_than_are_read_is_refused_before_pypdf_builds_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pypdf built all 30,000 pages before the count was read (4 s, and 105 MB at the peak): none is built now (a
    count of the pages made, where a time bound failed beside other work)."""
    import pypdf._page

    built = []
    make = pypdf._page.PageObject.__init__
    monkeypatch.setattr(pypdf._page.PageObject, "__init__", lambda page, *a, **k: built.append(1) or make(page, *a, **k))
    (tmp_path / "many.pdf").write_bytes(_pages_pdf(30_000))   # 2.5 MB
    (tmp_path / "owls.md").write_text("# Owls\n\nBarn owls hunt at dusk.\n")
    described = Browser(tmp_path).describe()
    assert len(built) == 0
    assert described.endswith("; skipped 1 that could not be read (many.pdf: the PDF has more than 5,000 pages; "
                              "the browser reads at most 5,000)")


def test_a_folder_is_read_for_at_most_max_read_seconds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "MAX_READ_SECONDS", 0.5, raising=False)
    (tmp_path / "b-slow.html").write_text("<br>" * 250_000)   # 1 MB: 5 s of html2text's time
    for name in ("a-owls.md", "c-owls.md"):
        (tmp_path / name).write_text("# Owls\n\nBarn owls hunt at dusk.\n")
    t0 = time.perf_counter()
    browser = Browser(tmp_path)
    assert time.perf_counter() - t0 < 3            # a folder of such PDFs (60 s each) was read without end
    assert browser.describe() == f"1 document in {tmp_path} (1 Markdown; 3 lines); skipped 2 that could not be " \
        "read (b-slow.html: not read: the browser reads documents for at most 0.5 s, ...)"
    assert [name for name, _ in browser.backend.skipped] == ["b-slow.html", "c-owls.md"]


def test_a_folder_is_read_up_to_max_folder_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "MAX_FOLDER_BYTES", 100, raising=False)
    (tmp_path / "a.md").write_text("# Owls\n\n" + "Barn owls hunt at dusk. " * 2)     # 56 bytes
    (tmp_path / "b.md").write_text("# Voles\n\n" + "Field voles hide at dusk. " * 2)  # 61: past the 100
    (tmp_path / "c.md").write_text("# Bats\n\nBats fly at dusk.\n")                    # 26: still in
    browser = Browser(tmp_path)
    assert browser.describe().endswith("; skipped 1 that could not be read (b.md: not read: the browser reads at "
                                       "most 0.0001 MB of documents in all)")   # was all three, however many GB
    assert [page.url for page in browser.backend.pages] == ["a.md", "c.md"]


def test_the_kernels_files_are_not_read() -> None:
    with pytest.raises(BrowserError) as error:     # /proc/kmsg the same way: it waited for the kernel's next message
        Browser("/proc/self/status")
    assert str(error.value) == "the document could not be read (status: a file of the kernel's " \
                               "(under /proc), not a document)"


def _described_unwaited(folder: Path) -> list[str]:
    """`Browser(folder).describe()` in a thread, as a one-item list; empty where it waited on the pipe voles.md for a
    writer more than 5 s (then let go)."""
    done: list[str] = []
    reader = threading.Thread(target=lambda: done.append(Browser(folder).describe()), daemon=True)
    reader.start()
    reader.join(5)
    if reader.is_alive():                          # let it go: it waited for a writer
        with open(folder / "voles.md", "wb"):
            pass
    return done


def test_a_file_that_became_a_pipe_is_not_waited_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "owls.md").write_text("# Owls\n\nBarn owls hunt at dusk.\n")
    found = local.collect([tmp_path])
    os.mkfifo(tmp_path / "voles.md")               # made a pipe after the folder was listed
    monkeypatch.setattr(local, "collect", lambda paths, **_: ([*found[0], (tmp_path / "voles.md", "voles.md")],
                                                              *found[1:]))
    assert _described_unwaited(tmp_path) == [f"1 document in {tmp_path} (1 Markdown; 3 lines); skipped 1 that could "
                                             "not be read (voles.md: not a regular file)"]


def test_pypdf_working_around_a_font_encoding_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    text = b"BT /F1 12 Tf 72 720 Td (owls) Tj ET"
    data = pdf([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                b"<< /Type /Page /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
                b"<< /Length %d >>\nstream\n%s\nendstream" % (len(text), text),
                b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /KSCms-UHC-H >>"])
    with caplog.at_level(logging.WARNING):
        described = Browser({"cjk.pdf": data.decode("latin-1")}).describe()
    assert [record.getMessage() for record in caplog.records] == []   # was "Advanced encoding /KSCms-UHC-H not ..."
    assert described == "1 document (1 PDF; 1 line)"


def test_a_page_from_a_search_api_of_a_megabyte_of_tags_is_one_line(server: FakeServer,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(extract, "MAX_HTML_SECONDS", 0.5, raising=False)
    monkeypatch.setenv("EXA_API_KEY", "secret")
    server.routes["POST /contents"] = lambda request: (200, "application/json", json.dumps(
        {"results": [{"title": "Owls", "text": "<br>" * 250_000}]}).encode())
    status, output = opened(Browser(Exa(base_url=server.url)), "https://example.com/owls")
    assert (status, output) == ("error", "Error fetching URL `https://example.com/owls`: converting the page took "
                                         "longer than 0.5 s")   # was a page, after the time it took


def test_html_of_more_than_a_million_tags_is_refused_at_once(tmp_path: Path) -> None:
    (tmp_path / "links.html").write_text("".join(f'<a href="/p{i}">l</a>' for i in range(600_000)))   # 14 MB
    (tmp_path / "owls.md").write_text("# Owls\n\nBarn owls hunt at dusk.\n")
    t0 = time.perf_counter()
    described = Browser(tmp_path).describe()
    assert time.perf_counter() - t0 < 3            # was 29 s: 10 s of deadline, after seconds parsing 1.2M elements
    assert described.endswith("; skipped 1 that could not be read (links.html: the page has more than 1,000,000 "
                              "tags; the browser converts at most 1,000,000)")


def test_the_steps_before_html2text_keep_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(extract, "MAX_HTML_SECONDS", 0.5, raising=False)
    html = "".join(f'<a href="/p{i}">link {i}</a>' for i in range(450_000))    # 900,000 tags, 13 MB
    t0 = time.perf_counter()
    with pytest.raises(extract.ExtractError, match=r"^converting the page took longer than 0\.5 s$"):
        html_page(html, "https://example.com/")
    assert time.perf_counter() - t0 < 4            # was 22 s: numbering the links, before html2text looked at the clock


def _one_page_pdf(content: bytes, form: bytes | None = None, listed: int = 1) -> bytes:
    """A one-page PDF drawing `content` (compressed; its contents list it `listed` times), which may draw the form
    XObject /X0 of `form`'s operations."""
    def stream(data: bytes, extra: bytes = b"") -> bytes:
        packed = zlib.compress(data)
        return b"<< %s/Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (extra, len(packed), packed)

    forms = b" /XObject << /X0 6 0 R >>" if form is not None else b""
    return pdf([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                b"<< /Type /Page /MediaBox [0 0 612 792] /Contents [%s] /Resources << /Font << /F1 5 0 R >>%s >> >>"
                % (b" ".join([b"4 0 R"] * listed), forms), stream(content),
                b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
               + ([stream(form, b"/Type /XObject /Subtype /Form /BBox [0 0 612 792] "
                                b"/Resources << /Font << /F1 5 0 R >> >> ")] if form is not None else []))


@pytest.mark.parametrize("content, form, listed", [
    (b"BT /F1 12 Tf <" + b"41" * 10_000_000 + b"> Tj ET", None, 1),          # one hex string of 20 MB, in 20 kB
    (b"/X0 Do", b"BT /F1 12 Tf <" + b"41" * 10_000_000 + b"> Tj ET", 1),      # the same in a form the page draws
    (b"<" + b"41" * 20_000 + b"> Tj\n", None, 500),                          # 40 kB listed 500 times: 39 s
], ids=["contents", "form", "listed"])
def test_a_pdf_page_drawing_megabytes_is_refused_before_pypdf_parses_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                          content: bytes, form: bytes | None,
                                                                          listed: int) -> None:
    monkeypatch.setattr(extract, "MAX_PDF_SECONDS", 1.0, raising=False)
    (tmp_path / "hex.pdf").write_bytes(_one_page_pdf(content, form, listed))
    (tmp_path / "owls.md").write_text("# Owls\n\nBarn owls hunt at dusk.\n")
    t0 = time.perf_counter()
    described = Browser(tmp_path).describe()
    assert time.perf_counter() - t0 < 3            # was 10-20 s: pypdf parsed a page's operations whole
    assert described.endswith("; skipped 1 that could not be read (hex.pdf: reading the PDF would take longer than "
                              "1 s (page 1 draws 20.0 MB))")


def test_a_pdf_page_listing_one_font_map_under_many_names_is_refused_before_pypdf_parses_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pypdf parses a font's ToUnicode map once for every name the page lists it under, before the first drawing
    operation reaches the deadline: a 4 kB file listing one 1.4 MB map under 150 names took 66 s of a 60 s limit."""
    monkeypatch.setattr(extract, "MAX_PDF_SECONDS", 1.0, raising=False)
    cmap = zlib.compress(b"/CIDInit /ProcSet findresource begin\nbegincmap\nbeginbfchar\n" + b"<0001> <0041>\n" * 99_000
                         + b"endbfchar\nendcmap\n", 9)
    names = b" ".join(b"/F%d 4 0 R" % i for i in range(150))
    content = b"BT /F0 12 Tf 72 700 Td (Hello) Tj ET"
    (tmp_path / "fonts.pdf").write_bytes(pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /MediaBox [0 0 612 792] /Resources << /Font << %s >> >> /Contents 5 0 R >>" % names,
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /ToUnicode 6 0 R >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(cmap), cmap)]))
    (tmp_path / "owls.md").write_text("# Owls\n\nBarn owls hunt at dusk.\n")
    t0 = time.perf_counter()
    described = Browser(tmp_path).describe()
    assert time.perf_counter() - t0 < 3
    assert described.endswith("; skipped 1 that could not be read (fonts.pdf: reading the PDF would take longer than "
                              "1 s (page 1 draws 0.0 MB and maps its fonts in 207.9 MB))"), described


def test_a_pdf_page_that_cannot_be_read_in_the_time_left_of_a_folder_is_refused(tmp_path: Path,
                                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "MAX_READ_SECONDS", 1.0, raising=False)
    (tmp_path / "hex.pdf").write_bytes(_one_page_pdf(b"BT /F1 12 Tf <" + b"41" * 10_000_000 + b"> Tj ET"))
    (tmp_path / "owls.md").write_text("# Owls\n\nBarn owls hunt at dusk.\n")
    t0 = time.perf_counter()
    described = Browser(tmp_path).describe()
    assert time.perf_counter() - t0 < 3            # was 20 s, and owls.md was left unread
    assert described.endswith("; skipped 1 that could not be read (hex.pdf: reading the PDF would take longer than "
                              "the time left (page 1 draws 20.0 MB))")


def test_a_long_pdf_is_read_under_a_bar_naming_its_page_and_running_out_of_time_says_how_far_it_got(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`%gptoss browse` of one book of 4,900 pages showed nothing for a minute (no bar below PROGRESS_FROM files),
    then "reading the PDF would take longer than 60 s (page 4337 draws 0.0 MB)", blaming a page of nothing. The
    reading bar shows once a PDF's pages are read READ_PROGRESS_AFTER in, naming the page read (other files, read in
    seconds, show none); the time running out says how far it got."""
    import pypdf

    from gptoss_lab.widgets import text

    pages = [b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R /Resources << /Font << /F1 3 0 R "
             b">> >> >>" % (5 + 2 * k) for k in range(4)]
    drawn = [b"BT /F1 12 Tf 72 700 Td (owls of page %d) Tj ET" % k for k in range(4)]
    book = tmp_path / "book"
    book.mkdir()
    (book / "book.pdf").write_bytes(pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [4 0 R 6 0 R 8 0 R 10 0 R] /Count 4 >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        *itertools.chain.from_iterable((page, b"<< /Length %d >>\nstream\n%s\nendstream" % (len(text), text))
                                       for page, text in zip(pages, drawn))]))
    extract_text = pypdf.PageObject.extract_text
    monkeypatch.setattr(pypdf.PageObject, "extract_text", lambda page, **kw: time.sleep(0.15) or extract_text(page, **kw))
    monkeypatch.setattr(text, "is_terminal", lambda stream: True)   # redrawn every 0.1 s, not every 3
    monkeypatch.setattr(local, "READ_PROGRESS_AFTER", 0.1, raising=False)
    assert Browser(book).describe() == f"1 document in {book} (1 PDF; 7 lines)"
    assert "Reading documents:   0%|          | 0/1 [" in (shown := capsys.readouterr().out)
    assert "book.pdf: page 2 of 4]" in shown and "1/1 [" in shown, shown
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "owls.md").write_text("# Owls\n")
    document_page = local.document_page
    monkeypatch.setattr(local, "document_page", lambda *a, **kw: time.sleep(0.3) or document_page(*a, **kw))
    assert Browser(tmp_path / "notes").describe().startswith("1 document") and capsys.readouterr().out == ""
    monkeypatch.setattr(local, "document_page", document_page)
    monkeypatch.setattr(extract, "MAX_PDF_SECONDS", 0.35, raising=False)
    cache.forget()   # read again, not the page kept of it
    with pytest.raises(BrowserError, match=r"^the document could not be read \(book\.pdf: reading the PDF took "
                                           r"longer than 0\.35 s \(it read [1-3] of its 4 pages\)\)$"):
        Browser(book)


def test_a_pdf_page_drawing_a_form_is_read() -> None:
    data = _one_page_pdf(b"/X0 Do BT /F1 12 Tf 72 700 Td (voles) Tj ET", b"BT /F1 12 Tf 72 720 Td (owls) Tj ET")
    assert extract.pdf_text(data)[0].split() == ["owls", "voles"]


@pytest.mark.parametrize("make", [os.mkfifo, lambda path: socket.socket(socket.AF_UNIX).bind(str(path))])
def test_naming_a_pipe_or_socket_says_it_is_not_a_regular_file(tmp_path: Path, make: object) -> None:
    make(tmp_path / "notes.md")                    # type: ignore[operator]
    done: list[str] = []

    def browse() -> None:
        try:
            Browser(str(tmp_path / "notes.md"))
        except BrowserError as err:
            done.append(str(err))

    reader = threading.Thread(target=browse, daemon=True)
    reader.start()
    reader.join(5)
    assert done == [f"not a regular file: {tmp_path / 'notes.md'}"]   # was "no such file or folder: ..."
    with pytest.raises(BrowserError, match="^not a regular file: /dev/null$"):
        Browser("/dev/null")


def test_a_pipe_or_device_named_as_a_document_in_a_folder_is_said_to_be_skipped(tmp_path: Path) -> None:
    """`%gptoss browse FOLDER` passed over a pipe named voles.md and a link named null.txt to /dev/null unsaid ("1
    document"), as if they were not there: they are skipped with the reason, and never waited on."""
    (tmp_path / "owls.md").write_text("# Owls\n\nBarn owls hunt at dusk.\n")
    os.mkfifo(tmp_path / "voles.md")
    (tmp_path / "null.txt").symlink_to("/dev/null")
    assert _described_unwaited(tmp_path) == [f"1 document in {tmp_path} (1 Markdown; 3 lines); skipped 2 that could "
                                             f"not be read (null.txt: a link to a file outside {tmp_path}, ...)"]


def test_a_file_gone_or_refused_after_the_folder_was_listed_is_named_with_the_reason_in_words(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file deleted (or made unreadable) between listing the folder and reading it was skipped as
    "gone.md: [Errno 2] No such file or directory: '/home/me/docs/gone.md'": Python's error number and repr, the
    path again. The system's reason is said in words."""
    (tmp_path / "docs").mkdir()
    for name in ("owls.md", "gone.md", "locked.md"):
        (tmp_path / "docs" / name).write_text("# Owls\n\nBarn owls hunt at dusk.\n")
    found = local.collect([tmp_path / "docs"])
    (tmp_path / "docs" / "gone.md").unlink()
    monkeypatch.setattr(local, "collect", lambda paths, **_: found)
    opened = local._open_unlinked

    def refusing(path: Path, flags: int) -> int:   # another user's file without read permission (root reads all)
        if path.name == "locked.md":
            raise PermissionError(13, "Permission denied", str(path))
        return opened(path, flags)

    monkeypatch.setattr(local, "_open_unlinked", refusing)
    browser = Browser(tmp_path / "docs")
    assert browser.backend.skipped == [("gone.md", "No such file or directory"), ("locked.md", "Permission denied")]
    assert browser.describe().endswith("; skipped 2 that could not be read (gone.md: No such file or directory, ...)")


def test_a_file_made_a_link_after_the_folder_was_listed_is_not_followed(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "secret.md").write_text("# Secret\n\nThe vault code is 4711.\n")    # outside the folder
    (tmp_path / "docs" / "owls.md").write_text("# Owls\n\nBarn owls hunt at dusk.\n")
    (tmp_path / "docs" / "voles.md").write_text("# Voles\n\nVoles hide.\n")
    found = local.collect([tmp_path / "docs"])
    (tmp_path / "docs" / "voles.md").unlink()
    (tmp_path / "docs" / "voles.md").symlink_to(tmp_path / "secret.md")   # swapped in while the folder is read
    monkeypatch.setattr(local, "collect", lambda paths, **_: found)
    browser = Browser(tmp_path / "docs")
    assert "4711" not in "".join(page.text for page in browser.backend.pages)   # was read as voles.md
    assert browser.describe() == f"1 document in {tmp_path / 'docs'} (1 Markdown; 3 lines); skipped 1 that could not " \
        "be read (voles.md: made a link since the folder was listed; not followed)"


def test_long_text_without_tags_is_converted_under_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(extract, "MAX_HTML_SECONDS", 0.5, raising=False)
    t0 = time.perf_counter()
    with pytest.raises(extract.ExtractError, match=r"^converting the page took longer than 0\.5 s$"):
        html_page("<p>" + "owls &amp; voles " * 400_000 + "</p>", "owls.html")   # 6.8 MB
    assert time.perf_counter() - t0 < 2.5          # was 7-12 s: html2text was given it in one piece


def test_text_converted_a_piece_at_a_time_reads_as_one() -> None:
    lines = "".join(f"{n}. owls &amp; voles\n- at dusk &lt;{n}&gt;\n  + tawny\n" for n in range(4_000))   # 190 kB
    for html in (f"<p>{lines}</p>", f"<pre>{lines}</pre>", f"<blockquote>{lines}</blockquote>"):
        root, _ = extract._parse(html, math.inf)
        assert extract._html_to_text(root, math.inf) == html2text_whole(root)


@pytest.mark.parametrize("html", [
    "<table><tr><td><code>a()</code></td><td>full</td></tr><tr><td><code>String()</code></td><td>x &amp; </td></tr>"
    "</table>",
    "<p>a<!--c-->b x<sup>2</sup>y H<sub>2</sub>O <sup class='n'>n-1</sup> <sup>a b</sup> AT&amp;<b>T</b> 1&lt;2&gt;0</p>",
    "<ul><li>owls<br>voles</li><li> <i>tawny</i> owl </li></ul><ol start='3'><li>one</li></ol><pre>  x\r\n  y</pre>",
    "<h2>Ti<span>tle</span></h2><blockquote><p>q&nbsp;uote</p> <p>two</p></blockquote><p></p><hr>end",
])
def test_html_is_read_as_html2text_reads_it_written_out(html: str) -> None:
    """The tree's text is what html2text made of it written out and parsed again (by html.parser, in Python: half the
    time of reading a folder of HTML), spaces, entities, `^{2}` and lists alike."""
    root, _ = extract._parse(html, math.inf)
    assert extract._html_to_text(root, math.inf) == html2text_whole(root)


def test_a_page_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Converting a page parses its HTML once (libxml2): it was written out and parsed again tag by tag in Python."""
    import html.parser

    parsed = []
    real = html.parser.HTMLParser.parse_starttag
    monkeypatch.setattr(html.parser.HTMLParser, "parse_starttag", lambda self, i: parsed.append(i) or real(self, i))
    page = html_page("<ul>" + "<li><b>Owls</b> hunt at <i>dusk</i>.</li>" * 500 + "</ul>", "owls.html")
    assert page.text.count("* Owls hunt at dusk.") == 500
    assert parsed == []


def html2text_whole(root: object) -> str:
    """What the browser's html2text converter makes of the tree under `root` written out and fed at once, with its
    settings and the reference's rewriting of `<sup>`, `<sub>` and tags between words (its leading blank lines left
    out)."""
    html = lxml.etree.tostring(root, encoding="UTF-8").decode()
    html = re.sub(r"<sup( [^>]*)?>([\w\-]+)</sup>", r"^{\2}", html)
    html = re.sub(r"<sub( [^>]*)?>([\w\-]+)</sub>", r"_{\2}", html)
    converter = extract._converter_class()()
    converter.ignore_links = converter.ignore_images = converter.ignore_tables = True
    converter.ignore_emphasis = converter.unicode_snob = True
    converter.body_width = 0
    lines = converter.handle(re.sub(r"(?<=\w)((<[^>]*>)+)(?=\w)", r" \1", html)).rstrip().split("\n")
    return "\n".join(itertools.dropwhile(lambda line: not line.strip(), lines))


def test_an_answer_of_many_wide_citations_quotes_a_bounded_text() -> None:
    """Each citation of a different range (`【1†L0-L1000000】`, `…L1000001】` …) quoted every line the model was shown
    of the page: 300 of them made 48 MB of sources that the turn's end rendered for a minute with Ctrl-C held, 2 000
    280 MB. Each quote stops at QUOTE_CHARS and an answer's at QUOTED_CHARS, naming the lines left unquoted; a
    citation of lines never shown still says so after the budget is spent, and one cited twice is quoted once."""
    from gptoss_lab import ReplayEngine, Session, harmony
    from gptoss_lab.tools.browser import tool
    from gptoss_lab.widgets.transcript import Transcript

    doc = "\n".join(f"Line {i}: the greenhouse vents open at 28 degrees; pumps run every {i % 60} minutes."
                    for i in range(5000))
    calls = ['<|start|>assistant<|channel|>analysis to=browser.search<|message|>{"query": "greenhouse"}<|call|>']
    calls += ['<|start|>assistant<|channel|>analysis to=browser.open<|message|>'
              f'{{"id": "manual.md", "loc": {k * 160}, "num_lines": 100000}}<|call|>' for k in range(20)]
    final = " ".join(f"fact【1†L0-L{10**6 + i}】" for i in range(300)) + " again【1†L0-L1000000】 unseen【1†L4990-L4999】"
    recording = harmony.encode("".join(calls) + "<|start|>assistant<|channel|>final<|message|>")
    recording += harmony.encode_text(final) + harmony.encode("<|return|>")
    session = Session(ReplayEngine(recording), approval="auto", browser=Browser({"manual.md": doc}),
                      tools=["browser"], max_new_tokens=10**6, max_tool_calls=100)
    reply = session.ask("When do the vents open?")
    quotes = [c.text for c in reply.citations]
    assert len(quotes) == 302 and quotes[300] == quotes[0]                         # cited twice: the same quote
    distinct = {c.marker: c.text for c in reply.citations}                # the page's text, and a note each
    assert sum(map(len, distinct.values())) <= tool.QUOTED_CHARS + tool.QUOTE_CHARS + 100 * len(distinct)
    assert all(len(q) <= tool.QUOTE_CHARS + 200 for q in quotes)
    assert "\nLine 0: the greenhouse" in quotes[0] and quotes[0].endswith(
        "cited, not quoted here (a quote stops at 4,000 characters)]")
    assert quotes[299].endswith("cited, not quoted here (an answer's citations quote 60,000 characters at most)]")
    assert quotes[-1] == ""                                          # L4990-L4999 never shown: said as such
    t0 = time.perf_counter()
    bundle = Transcript.from_reply(reply)._repr_mimebundle_()
    assert time.perf_counter() - t0 < 10 and sum(map(len, bundle.values())) < 5_000_000   # was 61.6 s and 138 MB


class _ReadLines(list):
    """A page's lines that count how many of them are read (a slice: each line in it)."""

    read = 0

    def __getitem__(self, key):  # type: ignore[no-untyped-def]
        got = super().__getitem__(key)
        self.read += len(got) if isinstance(key, slice) else 1
        return got


def test_a_window_of_a_long_page_is_sized_from_the_lines_it_can_hold() -> None:
    """Each `open` numbered every line from its location to the page's end to size one window of about 1,024 tokens:
    a page of a million lines took half a second an open, however few lines it showed (0.9 s in a 44 MB page). Only
    the lines a window can hold are read: the same windows, each as soon as on a short page."""
    lines = _ReadLines(f"owl {i}" for i in range(1_000_000))
    for loc in (0, 10, 500_000, 999_000):
        lines.read = 0
        end = end_line(lines, loc, -1, 1024)
        assert lines.read < 20_000, lines.read      # was every line from `loc` on: up to a million
        assert end == end_line(list(lines)[:loc + 5_000], loc, -1, 1024) and loc + 50 < end < loc + 1_024
    assert end_line(lines, 999_990, -1, 1024) == 1_000_000


def test_view_source_of_a_long_document_is_refused_and_a_short_ones_made_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """`view_source` wrapped the whole source again at every open, with no bound: a 47 MB text document took 18 s an
    open (Stop unheard) and each open kept another copy. A source past MAX_SOURCE_CHARS is refused in one line;
    a shorter one is made once and opened again as the same page."""
    from gptoss_lab.tools.browser import tool

    monkeypatch.setattr(tool, "MAX_SOURCE_CHARS", 100_000)
    line = "The quick brown fox jumps over the lazy dog while owls watch from the pine trees at dusk. "
    browser = Browser({"big.md": "\n".join(f"{line}{i}" for i in range(2_000)), "small.md": "owls\n" * 100})
    browser.open(id="big.md")
    t0 = time.perf_counter()
    with pytest.raises(BrowserError) as error:
        browser.open(view_source=True)
    assert time.perf_counter() - t0 < 1
    assert str(error.value) == ("The source of `big.md` is 188,889 characters; view_source shows at most 100,000: "
                                "open the page itself")
    browser.open(id="small.md")
    first = browser.open(view_source=True)
    assert "view-source:small.md" in first and "L0: owls" in first
    source = browser.stack[-1]
    lines = source.lines
    assert browser.open(cursor=len(browser.stack) - 2, view_source=True) == first.replace(
        f"[{len(browser.stack) - 2}]", f"[{len(browser.stack) - 1}]", 1)
    assert browser.stack[-1] is source and source.lines is lines            # the same page, wrapped once
