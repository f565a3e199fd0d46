"""Limits of reading the user's documents, as the user meets them: looking through a huge folder stops (at a count
or a deadline), says in one line what it left out, keeps what it found and shows a progress bar while it takes
long; every HTML step up to the parse keeps the deadline, and deep old HTML is read whole; what the model reads
holds no NUL; XHTML's declared encoding is honoured."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from test_browser_hostile import pdf

from gptoss_lab.events import ToolCall
from gptoss_lab.tools.browser import Browser, extract, local
from gptoss_lab.tools.browser.extract import document_page, html_page

OWLS = "# Owls\n\nBarn owls hunt at dusk.\n"


def _tree(root: Path) -> None:
    """top.md, a/one.md, a/b/two.md, a/b/c/three.md."""
    (root / "a" / "b" / "c").mkdir(parents=True)
    for name in ("top.md", "a/one.md", "a/b/two.md", "a/b/c/three.md"):
        (root / name).write_text(OWLS)


def opened(browser: Browser, **args: object) -> str:
    result = browser.run(ToolCall("browser.open", "analysis", json.dumps(args), "code"))
    assert result.status == "done", result.output
    return result.output


def test_looking_for_documents_stops_at_max_documents_keeping_the_shallowest(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "MAX_DOCUMENTS", 2, raising=False)
    _tree(tmp_path)
    browser = Browser(tmp_path)              # was every file of the folder, however many millions (a home folder)
    assert [page.url for page in browser.backend.pages] == ["a/one.md", "top.md"]
    assert browser.describe() == f"2 documents in {tmp_path} (2 Markdown; 6 lines); left out the rest: the browser " \
        "reads at most 2 documents"
    quiet = local.LocalBackend.from_paths([tmp_path], progress=False)   # was every file: only the bar counted them
    assert [page.url for page in quiet.pages] == ["a/one.md", "top.md"] and quiet.left_out == browser.backend.left_out


def test_a_glob_stops_at_max_documents_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "MAX_DOCUMENTS", 3, raising=False)
    _tree(tmp_path)
    browser = Browser(f"{tmp_path}/**/*.md")
    assert len(browser.backend.pages) == 3
    assert browser.describe().endswith("; left out the rest: the browser reads at most 3 documents")


def test_looking_for_documents_stops_after_max_list_seconds_keeping_what_it_found(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tree(tmp_path)
    monkeypatch.setattr(local, "MAX_LIST_SECONDS", 0.6, raising=False)
    scandir = os.scandir

    def slow(path: object) -> object:          # a folder on a slow network disk: 0.4 s to list
        time.sleep(0.4)
        return scandir(path)                   # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", slow)
    browser = Browser(tmp_path)
    monkeypatch.undo()
    assert [page.url for page in browser.backend.pages] == ["top.md"]
    assert browser.describe() == f"1 document in {tmp_path} (1 Markdown; 3 lines); left out the rest: looking for " \
        "documents took longer than 0.6 s"


def test_looking_for_documents_for_long_shows_a_progress_bar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(local, "LIST_PROGRESS_AFTER", 0, raising=False)   # as if the folder took that long
    _tree(tmp_path)
    Browser(tmp_path)
    assert "Looking for documents: 4 files [" in capsys.readouterr().out   # was silence, for minutes on a home folder
    monkeypatch.undo()
    Browser(tmp_path)
    assert capsys.readouterr().out == ""           # a short look shows none


def test_a_listing_a_little_longer_than_its_delay_shows_its_bar_in_a_notebook_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The bar was redrawn only every 3 s outside a terminal (a notebook): a listing of 2.5 s (50,000 files) was
    silent, though longer than LIST_PROGRESS_AFTER."""
    _tree(tmp_path)
    monkeypatch.setattr(local, "LIST_PROGRESS_AFTER", 0.2, raising=False)
    scandir = os.scandir

    def slow(path: object) -> object:          # 4 folders, 0.5 s to list them all
        time.sleep(0.12)
        return scandir(path)                   # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", slow)
    Browser(tmp_path)
    assert "Looking for documents: 2 files [" in capsys.readouterr().out


def test_indexing_for_longer_than_a_second_shows_a_bar_naming_its_steps(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """After the reading bar, 50,000 files were indexed for 6-10 s with only bm25s's tokenizing bar shown (names and
    titles sorted out for 4-8 s before it, the index built for 2 s after it): a bar counts each step now."""
    _tree(tmp_path)
    Browser(tmp_path)
    assert capsys.readouterr().out == ""       # a small folder: none
    titles = local._distinct_titles

    def slow(*args: object) -> None:           # titles of many documents, as if they took long
        time.sleep(0.3)
        titles(*args)

    monkeypatch.setattr(local, "_distinct_titles", slow)
    monkeypatch.setattr(local, "INDEX_PROGRESS_AFTER", 0.2, raising=False)
    assert len(Browser(tmp_path).backend.pages) == 4
    shown = capsys.readouterr().out
    for step in ("names):   0%|", "other names):", "passages):", "words):", "the index): 100%|"):
        assert f"Indexing documents ({step}" in shown, shown
    local.LocalBackend.from_paths([tmp_path], progress=False)
    assert capsys.readouterr().out == ""       # none when asked for none


def test_a_small_folder_shows_no_indexing_bar_in_a_fresh_kernel(tmp_path: Path) -> None:
    """bm25s and scipy are imported at the first browse of a kernel (0.3 s, a second on a busy machine): imported
    under the indexing bar, they counted towards its delay, and a small folder's bar could show."""
    import subprocess
    import sys

    _tree(tmp_path)
    script = ("from gptoss_lab.tools.browser import Browser, local\n"
              "local.INDEX_PROGRESS_AFTER = 0.1   # far less than the imports take, far more than 4 files' index\n"
              f"print(len(Browser({str(tmp_path)!r}).backend.pages))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(Path(local.__file__).parents[3])})
    assert done.stdout == "4\n", done.stdout + done.stderr


def test_the_steps_up_to_the_parse_keep_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(extract, "MAX_HTML_SECONDS", 0.05, raising=False)
    html = "<p>" + "🦉🐭 " * 4_000_000 + "</p>"       # 36 MB of UTF-8 (a file may be 50 MB)
    t0 = time.perf_counter()
    with pytest.raises(extract.ExtractError, match=r"^converting the page took longer than 0\.05 s$"):
        html_page(html, "owls.html")
    assert time.perf_counter() - t0 < 0.8          # was 1.8 s: the characters replaced and parsed in one call each


def test_old_html_nested_deeper_than_libxml2_goes_is_read_whole() -> None:
    html = "".join(f"<font color=red>line {n}<br>\n" for n in range(5_000)) + "<p>The end.</p>"   # never closed
    text = html_page(html, "old.html").text
    assert "line 4999" in text and text.rstrip().endswith("The end.")   # was cut after line 2045, without a word
    assert text.count("line ") == 5_000


def test_deep_html_ending_in_unclosed_tags_is_read_at_once(tmp_path: Path) -> None:
    """Deep HTML is made shallow by reading its tags as written; a page ending in `<a<a<a…` with no `>` took that one
    regex call 14 s for 1,000 of them and 110 s for 2,000 (a call the deadline cannot stop, holding the kernel)."""
    (tmp_path / "deep.html").write_text("<html><body>" + "<div>" * 3000 + "<p>Barn owls hunt at dusk.</p>" + "<a" * 20_000)
    t0 = time.perf_counter()
    text = opened(Browser(tmp_path), id="deep.html")
    assert "Barn owls hunt at dusk." in text and time.perf_counter() - t0 < 10


def test_a_web_page_of_unclosed_angle_brackets_is_read_at_once() -> None:
    """Measuring a web page's text for its main content scanned the rest of the page from each `<` that no `>`
    closes: with 20,000 of them before 1 MB of text that one regex call held the kernel 13 s, and the page was refused
    as taking longer than 10 s (5 MB, a fetch's limit: minutes)."""
    html = "<html><body><p>Barn owls hunt at dusk.</p>" + "<" * 20_000 + "owl " * 250_000
    t0 = time.perf_counter()
    text = html_page(html, "https://owls.example/", main_content=True).text
    assert "Barn owls hunt at dusk." in text and time.perf_counter() - t0 < 5


@pytest.mark.parametrize("kb, depth, blanks", [(200, 50, 254), (1000, 50, 1)], ids=["blank runs", "deep"])
def test_a_web_page_readability_would_take_long_on_is_read_at_once(kb: int, depth: int, blanks: int) -> None:
    """readability-lxml cleans every candidate's whole text, before the page's deadline is first looked at: 200 kB of
    254-blank runs in 50 nested blockquotes took 14 s (Stop unheard; 5 MB: minutes), 1 MB of text in them 4.7 s."""
    text = (" " * blanks + "x") * (kb * 1000 // (blanks + 1))
    html = ("<html><body><p>Barn owls hunt at dusk.</p>" + "<blockquote>" * depth + text + "</blockquote>" * depth
            + "</body></html>")
    t0 = time.perf_counter()
    page = html_page(html, "https://owls.example/", main_content=True)
    assert time.perf_counter() - t0 < 3 and "Barn owls hunt at dusk." in page.text


@pytest.mark.parametrize("opening", ["<blockquote>", "<ol><li>", "<blockquote><ul><li>"])
def test_deep_quotes_and_lists_do_not_multiply_a_pages_text(opening: str) -> None:
    """Each level of a quote or a list writes its `>` or indent on every line in it: 250 quotes around a `<pre>` of
    20,000 lines (83 kB of HTML) made 5.2 MB of text, 120 lists 7.4 MB. Past MAX_INDENT_DEPTH they are drawn at
    that depth, their lines all kept; shallower ones as before."""
    html = opening * 250 + "<pre>" + "owl\n" * 20_000 + "</pre>"
    text = html_page(html, "deep.html").text
    assert text.count("owl") == 20_000 and len(text) < 10 * len(html)
    assert html_page("<blockquote>" * 3 + "<p>owls</p>", "q.html").text.endswith("\n> > > owls")
    deepest = "<blockquote>" * (extract.MAX_INDENT_DEPTH + 2) + "<p>owls</p>"
    assert html_page(deepest, "q.html").text.endswith("\n" + "> " * extract.MAX_INDENT_DEPTH + "owls")


def test_a_page_whose_text_would_outgrow_its_html_many_times_is_skipped_with_why(tmp_path: Path) -> None:
    """8 quotes and 8 lists (MAX_INDENT_DEPTH each) around a `<pre>` of `x` lines still wrote their `>`s and indents
    on every line: 80 kB of HTML became 1.6 MB of text, and 4.9 MB of such pages filled a folder's MAX_FOLDER_CHARS."""
    (tmp_path / "deep.html").write_text("<blockquote>" * 8 + "<ol><li>" * 8 + "<pre>" + "x\n" * 40_000 + "</pre>")
    (tmp_path / "owls.html").write_text("<h1>Owls</h1><blockquote><ol><li>Barn owls hunt at dusk.</ol></blockquote>")
    browser = Browser(tmp_path)
    assert [page.url for page in browser.backend.pages] == ["owls.html"]
    assert browser.describe().endswith("; skipped 1 that could not be read (deep.html: the page's text came to 20.5 "
                                       "times its HTML (1,640,159 characters of 80,171: quotes and lists around many "
                                       f"lines); the browser keeps at most {extract.MAX_TEXT_GROWTH} times)")
    assert "Barn owls hunt at dusk." in opened(browser, id="owls.html")


def test_a_paragraph_of_blank_lines_is_read_at_once(tmp_path: Path) -> None:
    """html2text escapes a `-` or `+` at the start of a line with `^(\\s*)(-)`, which from each line spanned all the
    white space after it: 40,000 lines of ` ` in a paragraph held the kernel 41 s, and the page was refused."""
    (tmp_path / "blank.html").write_text("<p>Barn owls" + " \n" * 40_000 + "hunt at dusk.</p><p>\n - voles\n + mice</p>")
    t0 = time.perf_counter()
    text = opened(Browser(tmp_path), id="blank.html")
    assert "Barn owls hunt at dusk." in text and "- voles + mice" in text and time.perf_counter() - t0 < 5


def test_nuls_past_the_first_8_kb_are_not_read(tmp_path: Path) -> None:
    (tmp_path / "log.txt").write_bytes(b"owls hunt\n" * 1_000 + b"bad\x00\x00 voles\n")   # a log's crash padding
    (tmp_path / "page.html").write_bytes(b"<p>" + b"owls hunt " * 1_000 + b"bad\x00 voles</p>")
    text = b"BT /F1 12 Tf 72 720 Td (bad\\000 voles) Tj ET"
    (tmp_path / "paper.pdf").write_bytes(pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(text), text),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]))
    browser = Browser(tmp_path)
    for page in browser.backend.pages:
        output = opened(browser, id=page.url, loc=max(0, len(page.lines) - 5))
        assert "bad voles" in output, page.url  # was `bad\x00\x00 voles` for the model and the reader, `bad� voles`
        assert "\x00" not in output and "\ufffd" not in output


@pytest.mark.parametrize("codec", ["koi8-r", "windows-1251"])
def test_an_xhtml_files_declared_encoding_is_honoured(tmp_path: Path, codec: str) -> None:
    (tmp_path / "owls.xhtml").write_bytes(
        f'<?xml version="1.0" encoding="{codec}"?>\n<html xmlns="http://www.w3.org/1999/xhtml"><head><title>Совы'
        '</title></head><body><p>Совы охотятся в сумерках.</p></body></html>'.encode(codec))
    page = Browser(tmp_path).backend.pages[0]
    assert (page.title, page.text) == ("Совы", "\nURL: owls.xhtml\nСовы охотятся в сумерках.")   # was `ÑîâÛ`


def test_xml_from_the_web_honours_its_declared_encoding() -> None:
    data = "<?xml version='1.0' encoding='koi8-r'?>\n<owls>Совы</owls>".encode("koi8-r")
    assert document_page(data, "https://example.com/owls", "owls", content_type="application/xml").text.endswith(
        "<owls>Совы</owls>")
    xhtml = document_page(data, "https://example.com/owls", "owls", content_type="application/xhtml+xml")
    assert xhtml.text.endswith("Совы")
    data = '<?xml version="1.0" encoding="utf-16"?>\n<p>Café</p>'.encode()   # what the bytes contradict: UTF-8, as
    assert document_page(data, "owls.xhtml", "owls.xhtml").text.endswith("Café")   # for `<meta>`


def test_a_folder_keeps_at_most_max_folder_chars_of_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "MAX_FOLDER_CHARS", 120, raising=False)
    (tmp_path / "a.md").write_text("# Owls\n\n" + "Barn owls hunt at dusk. " * 2)     # 67 characters with its URL line
    (tmp_path / "b.md").write_text("# Voles\n\n" + "Field voles hide at dusk. " * 2)  # 72: past the 120
    (tmp_path / "c.md").write_text("# Bats\n\nBats fly at dusk.\n")                    # 37: still in
    browser = Browser(tmp_path)       # was all of them: 1 GB of text files held 10 GB (6-10 MB a MB, index and all)
    assert [page.url for page in browser.backend.pages] == ["a.md", "c.md"]
    assert browser.describe().endswith("; skipped 1 that could not be read (b.md: not kept: the browser keeps at "
                                       "most 0.00012 million characters of documents' text in all)")


def test_indexing_reads_each_line_and_title_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Passages overlap by half, and each was tokenized whole with its title: every line was split into words twice
    and a title once per passage. The search still finds words at the end of a document and in a title."""
    split: list[int] = []
    words = local._WORDS

    class Counted:
        def findall(self, text: str) -> list[str]:
            split.append(len(text))
            return words.findall(text)

    monkeypatch.setattr(local, "_WORDS", Counted())
    texts = {f"{name}.md": f"# {name.title()} field notes\n\n" + "\n".join(f"Entry {i}: the {name} was seen at dawn."
                                                                          for i in range(400))
             for name in ("owl", "vole", "heron")}
    texts["heron.md"] += "\nEntry 400: a kingfisher\ndived at noon."
    backend = local.LocalBackend.from_texts(texts)
    read = sum(split)
    assert read < 1.1 * sum(len(page.text) for page in backend.pages)   # was 2.2 times the text
    assert [r.url for r in backend.search("kingfisher dived", 3)] == ["heron.md"]
    assert [r.url for r in backend.search("vole field notes", 3)][0] == "vole.md"


def test_a_folders_documents_are_each_resolved_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Looking for documents resolves the folder once, not again for each document found in it (a tenth of listing
    3,000 documents; then, each document once: 5.6 s of 50,000, unshown by any bar), only the links among them, and
    still leaves out a link to a file outside it."""
    (tmp_path / "docs" / "a").mkdir(parents=True)
    for n in range(50):
        (tmp_path / "docs" / "a" / f"owls{n}.md").write_text("# Owls\n")
    (tmp_path / "secret.md").write_text("# Secret\n")
    (tmp_path / "docs" / "secret.md").symlink_to(tmp_path / "secret.md")
    resolved = []
    real = Path.resolve
    monkeypatch.setattr(Path, "resolve", lambda self, *args: resolved.append(self) or real(self, *args))
    files, _, outside, _, _ = local.collect([tmp_path / "docs"], progress=False)
    assert len(files) == 50 and outside == [("secret.md", f"a link to a file outside {tmp_path / 'docs'}")]
    assert len(resolved) <= 1 + 2


def test_a_line_of_megabytes_is_wrapped_in_memory_of_its_own_size() -> None:
    """A 40 MB text of one line (a minified JSON file) took 0.9 GB to wrap: each of its 20 million words and spaces was
    a string of its own at once. Wrapping keeps about the lines it makes, with hyphens or without."""
    from test_routing_trust import _peak

    from gptoss_lab.tools.browser.page import wrap_lines

    for line in ("owl " * 500_000, "owl-owl " * 25_000):
        lines, peak = _peak(lambda: wrap_lines(line))   # noqa: B023  (called at once)
        assert isinstance(lines, list) and len(lines) == len(line) // 80 and "".join(lines) == line
        assert peak < 4 * len(line), f"{peak / len(line):.1f} bytes a character"   # was 19 and 42


def test_a_folder_on_a_slow_disk_shows_progress_from_the_listing_on(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """After the listing, each document found was looked at again (a stat of each, to see whether it is a link) with
    no bar moving: 20,000 files were a second of silence before the reading bar, and far more on a network disk. What
    the listing learnt of each file is kept: the first bar shows as soon as reading starts."""
    for n in range(400):
        (tmp_path / f"owls{n}.md").write_text(OWLS)
    stat = os.stat

    def slow(*args: object, **kwargs: object) -> os.stat_result:   # a network disk: 4 ms a file's stat
        time.sleep(0.004)
        return stat(*args, **kwargs)   # type: ignore[arg-type]

    class Screen:
        """stdout, telling when something was first shown on it."""
        first: float | None = None

        def write(self, text: str) -> int:
            self.first = self.first or (time.monotonic() if text.strip() else None)
            return len(text)

        def flush(self) -> None:
            pass

    screen = Screen()
    monkeypatch.setattr(os, "stat", slow)
    monkeypatch.setattr("sys.stdout", screen)
    start = time.monotonic()
    Browser(tmp_path)
    monkeypatch.undo()
    assert screen.first is not None and screen.first - start < 0.8   # was 1.6 s and more of nothing shown


def test_a_long_pdf_is_read_to_a_count_of_pages_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A book of 5,000 pages of text took pypdf 52 s of CPU (10 ms a page of kerned text): it was read, or skipped
    at the 60 s deadline, as the machine's load allowed. A PDF is read to MAX_PDF_READ_PAGES pages, whatever the
    load: the model reads that it ends there, the user which document and how many pages were left."""
    monkeypatch.setattr(extract, "MAX_PDF_READ_PAGES", 3, raising=False)   # as a book of thousands of pages
    pages = [b"BT /F1 12 Tf 72 720 Td (owls on page %d) Tj ET" % n for n in range(1, 6)]
    (tmp_path / "book.pdf").write_bytes(pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R 4 0 R 5 0 R 6 0 R 7 0 R] /Count 5 >>",
        *(b"<< /Type /Page /MediaBox [0 0 612 792] /Contents %d 0 R /Resources << /Font << /F1 13 0 R >> >> >>" % n
          for n in range(8, 13)),
        *(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(text), text) for text in pages),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]))
    browser = Browser(tmp_path)
    text = opened(browser, id="book.pdf")
    assert "owls on page 3" in text and "page 4" not in text
    assert text.rstrip().endswith("[The browser read the first 3 of this PDF's 5 pages.]")
    assert browser.describe().endswith("; read 1 in part (book.pdf: its first 3 of 5 pages; the browser reads at most "
                                       "3 pages of a PDF)")


@pytest.mark.parametrize("pattern", ["", "**/*.md"])
def test_looking_through_many_files_of_other_kinds_shows_its_bar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str], pattern: str) -> None:
    """The listing's bar moved only when a document was found: a folder of 100,000 images and one note was 3 s of
    silence, and so was a glob's listing of it (`docs/**/*.md`). It moves for every file looked at."""
    for n in range(300):
        (tmp_path / f"photo{n}.png").write_bytes(b"")
    (tmp_path / "zz.md").write_text(OWLS)
    monkeypatch.setattr(local, "LIST_PROGRESS_AFTER", 0.1, raising=False)
    scandir = os.scandir

    class Entry:   # a network disk that lists no file types: each is looked at, 1 ms
        def __init__(self, entry: os.DirEntry) -> None:
            self.entry, self.name, self.path = entry, entry.name, entry.path

        def is_file(self) -> bool:
            return self.entry.is_file()

        def is_dir(self, **kwargs: bool) -> bool:
            time.sleep(0.001)
            return self.entry.is_dir(**kwargs)

        def is_symlink(self) -> bool:
            return self.entry.is_symlink()

    class Listing:
        def __init__(self, path: object) -> None:
            self.listed = scandir(path)   # type: ignore[arg-type]

        def __enter__(self) -> list[Entry]:
            return [Entry(entry) for entry in self.listed]

        def __exit__(self, *_: object) -> None:
            self.listed.close()

    monkeypatch.setattr(os, "scandir", Listing)
    Browser(tmp_path / pattern)
    assert "Looking for documents: 0 files [" in capsys.readouterr().out   # was drawn first at the one document


def test_a_large_text_file_among_a_few_is_read_under_a_bar_naming_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A folder of fewer than PROGRESS_FROM files shows its reading bar only for a PDF's pages: one text file of 10 MB
    was read for 6.6 s with nothing shown. A file of READ_PROGRESS_BYTES or more shows it at once, naming the file."""
    (tmp_path / "big.txt").write_text("Barn owls hunt at dusk.\n" * 100)
    (tmp_path / "small.md").write_text(OWLS)
    monkeypatch.setattr(local, "READ_PROGRESS_BYTES", 2_000, raising=False)
    Browser(tmp_path)
    shown = capsys.readouterr().out
    assert "Reading documents:   0%|          | 0/2 [00:00<?, ?file/s, big.txt]" in shown, shown
    assert "| 2/2 [" in shown, shown
    (tmp_path / "big.txt").write_text(OWLS)
    Browser(tmp_path)
    assert capsys.readouterr().out == ""           # small files: none
