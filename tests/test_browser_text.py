"""The text the browser gives the model is the text a reader of the document sees: no escape the author never wrote,
no content cut as boilerplate, separators read as what they separate, and `find` matching a phrase wherever the
reader reads it (across wrapped lines, in any case), cited at the lines it is on."""
from __future__ import annotations

import sys
import time
from types import FrameType
from typing import Any

from gptoss_lab.events import ToolCall
from gptoss_lab.tools.browser import Browser
from gptoss_lab.tools.browser.extract import html_page
from gptoss_lab.tools.browser.page import Page, find_page


def _run(browser: Browser, function: str, arguments: str) -> str:
    """The output of the model's call of `browser.{function}` with these JSON arguments."""
    result = browser.run(ToolCall(f"browser.{function}", "analysis", arguments, "code"))
    assert result.status == "done", result.output
    return result.output


def test_a_web_pages_text_keeps_no_markdown_escape_the_author_never_wrote() -> None:
    """html2text escaped Markdown in a page's text: "2024. A good year" reached the model as `2024\\. A good year`,
    a line's `- voles` as `\\- voles`, a path `C:\\*` as `C:\\\\*`; the model read and quoted them so."""
    html = ("<p>2024. A good year</p><p>- voles\n+ mice</p><p>Files in C:\\* and a_b * c # d [e](f) `g` !</p>"
            "<ul><li>1. first</li></ul>")
    shown = _run(Browser({"notes.html": html}), "open", '{"id": "notes.html"}')
    assert shown.splitlines()[5:] == ["L2: 2024. A good year", "L3: ", "L4: - voles + mice ", "L5: ",
                                      "L6: Files in C:\\* and a_b * c # d [e](f) `g` !", "L7: ", "L8:   * 1. first"]


def test_a_web_pages_short_blocks_of_content_are_kept_and_its_boilerplate_still_goes() -> None:
    """Cut to its main content, a page lost each block of its article under 25 characters: a price or a one-line
    definition in a `<div>`, a `<section>` of one sentence; its links, its footer and its menu still go."""
    article = "<p>" + "Barn owls hunt over the meadows at dusk and swallow voles whole. " * 8 + "</p>"
    html = ("<html><body><div id='nav'><a href='/'>Home menu</a></div><main><article><h1>Owl boxes</h1>"
            f"{article}<div><p>Price: $19.99</p></div><div><dl><dt>Owlet</dt><dd>a young owl</dd></dl></div>"
            f"<section><p>Made of cedar.</p></section>{article}<div><p><a href='/share'>Share it</a></p></div>"
            "<div class='footer'><p>© Owl Boxes Ltd</p></div></article></main><footer><p>Cookie settings</p></footer>"
            "</body></html>")
    text = html_page(html, "https://example.org/owls", main_content=True).text
    assert "voles whole. \n\nPrice: $19.99 \n\nOwlet \n    a young owl \n\nMade of cedar.\n\nBarn owls" in text, text
    assert not any(boilerplate in text for boilerplate in ("Home menu", "Share it", "Owl Boxes Ltd", "Cookie"))


def test_separator_characters_read_as_line_breaks_or_spaces_and_lines_cite_as_numbered() -> None:
    """`alpha\\x1cbeta` read `alphabeta` (the file separator dropped, NEL too), and U+2028 kept in a line made two
    lines of it to str.splitlines (and a reader's view) while the page counted one. In a text document each line end a
    reader sees (Word's vertical tab and form feed, the record separators, NEL, U+2028, U+2029) starts a line; elsewhere
    (a web page, a title) every separator is a space; the numbered lines and a citation of one agree."""
    text = "Kiln\x0bfired\x0cpage\x1cfile\x1dgroup\x1erecord\x85next\u2028line\u2029para\x1fend"
    browser = Browser({"kiln.txt": text, "kiln.html": f"<title>Kiln\x1clog</title><p>{text}</p>"})
    shown = _run(browser, "open", '{"id": "kiln.txt"}')
    assert shown.splitlines() == shown.split("\n")
    assert shown.split("\n")[5:] == ["L2: Kiln", "L3: fired", "L4: page", "L5: file", "L6: group", "L7: record",
                                     "L8: next", "L9: line", "L10: para end"]
    assert browser.citations("【0†L7】")[0].text == "record"
    page = _run(browser, "open", '{"id": "kiln.html"}')
    assert page.split("\n")[0] == "[1] Kiln log (kiln.html)"
    assert page.split("\n")[5:] == ["L2: Kiln fired page file group record next line para end"]


def test_a_carriage_return_written_as_a_reference_reads_as_the_space_a_browser_draws() -> None:
    """`&#13;` in a web page's `<pre>` kept a `\\r` inside a numbered line: a reader's view (str.splitlines, a terminal)
    read two lines where the page counted one, and the citation of it showed the dose after the `\\r` over the one
    before. A browser draws it as a space, and so it reads."""
    browser = Browser({"dose.html": "<pre>Dose: 40 mg&#13;Dose: 4 mg&#13;&#10;Take with food.</pre><p>a&#13;b</p>"})
    shown = _run(browser, "open", '{"id": "dose.html"}')
    assert shown.splitlines() == shown.split("\n")
    assert shown.split("\n")[5:] == ["L2:     Dose: 40 mg Dose: 4 mg ", "L3:     Take with food.", "L4: ", "L5: a b"]
    assert browser.citations("【0†L2】")[0].text == "    Dose: 40 mg Dose: 4 mg "


def test_find_matches_a_phrase_wrapped_across_lines_and_cites_the_lines_it_is_on() -> None:
    """A phrase the page's 80-column wrapping split over two lines (or the document over two, or spaced out) was
    "not found" though the model asked for words the document has; a match longer than the lines shown after it was
    cut. Each is found at its first line, shown to its last, and a citation of it quotes those lines."""
    valve = "Close the valve " + "slowly, " * 40 + "then open the vent."
    text = "x" * 70 + " humidity level must stay at sixty percent.\nKeep the\n   relief   valve shut.\n\n" + valve
    browser = Browser({"kiln.txt": text})
    lines = _run(browser, "open", '{"id": "kiln.txt"}').split("\n")
    assert lines[5:8] == ["L2: " + "x" * 70 + " humidity ", "L3: level must stay at sixty percent.", "L4: Keep the"]
    found = _run(browser, "find", '{"pattern": "Humidity level"}').split("\n")
    assert found[3:5] == ["L0: # 【0†match at L2】", "L1: " + "x" * 70 + " humidity "]
    assert browser.citations("【1†L1-L2】")[0].text == "x" * 70 + " humidity \nlevel must stay at sixty percent."
    assert _run(browser, "find", '{"pattern": "the relief valve", "cursor": 0}').split("\n")[3] == "L0: # 【0†match at L4】"
    found = _run(browser, "find", '{"pattern": "' + valve + '", "cursor": 0}').split("\n")
    assert found[3] == "L0: # 【0†match at L7】" and found[-1].endswith("then open the vent.")


def test_find_matches_case_foldings_of_other_lengths_at_the_lines_they_are_on() -> None:
    """A character whose case folding is longer than it (`ß` and `ẞ` are `ss`, the ligature `ﬁ` is `fi`, `İ` lowered
    is two characters) made find miss "STRASSE" in "Straße", "find" in "ﬁnd", "istanbul" in "İstanbul"; and matched in
    the folded text, a match's offsets were that text's: after a line of them, its line was a later one."""
    text = "ß" * 79 + "\nﬃ" * 30 + "\nFerry from İstanbul at 9.\nHotel on the Straße.\nWe ﬁnd the GROSSE Hall.\nEnd."
    browser = Browser({"trip.txt": text})
    lines = _run(browser, "open", '{"id": "trip.txt", "num_lines": 40}').split("\n")
    assert lines[36:39] == ["L33: Ferry from İstanbul at 9.", "L34: Hotel on the Straße.", "L35: We ﬁnd the GROSSE Hall."]
    for n, (pattern, line) in enumerate([("istanbul", 33), ("STRASSE", 34), ("find", 35), ("große hall", 35)]):
        found = _run(browser, "find", f'{{"pattern": "{pattern}", "cursor": 0}}').split("\n")
        assert found[3] == f"L0: # 【0†match at L{line}】", (pattern, found)
        assert browser.citations(f"【{n + 1}†L1】")[0].text == lines[3 + line].split(": ", 1)[1]


def test_find_of_a_long_pattern_in_a_page_of_repeated_words_answers_at_once() -> None:
    """A pattern's words matched with `\\s+` between them were tried again from every word of the page: 2,000 words
    against 400 kB of `a ` held the kernel 11 s (a 5 MB page: hours)."""
    browser = Browser({"a.txt": "a " * 200_000})
    _run(browser, "open", '{"id": "a.txt"}')
    t0 = time.perf_counter()
    found = _run(browser, "find", '{"pattern": "' + "a " * 2_000 + 'x"}')
    assert "L0: No `find` results for pattern: `a a a" in found and time.perf_counter() - t0 < 2


def test_find_in_a_long_page_of_wrapped_lines_makes_no_python_call_per_line() -> None:
    """`find` in a 44 MB page took 3 s, twice what its string operations take: a Python step for each wrapped line
    (which lines continue a line, the text searched joined a run of them at a time), and the page's text split again
    into lines though it had no link to strip. The Python calls a find makes no longer grow with the page's lines,
    and a phrase across a line's end is still found at its first line."""
    page = Page(url="log.txt", title="log", text="\n".join(f"{i:05d} " + "well-known " * 8 for i in range(60_000)))
    assert len(page.lines) == 120_000     # each line of 94 characters wrapped in two
    calls = 0

    def count(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal calls
        calls += event == "call"

    sys.setprofile(count)
    try:
        found = find_page("KNOWN 00042 " + "Well-Known " * 7, page)   # across `well-` and `known` wrapped
    finally:
        sys.setprofile(None)
    assert found.text.split("\n")[:5] == ["# 【0†match at L83】", *page.lines[83:87]]
    assert calls < 1_000, calls            # was 60,000 and more: one for each run of wrapped lines


def test_a_pages_source_reads_its_line_ends_as_lines() -> None:
    """`view_source` of an HTML file saved with classic Mac (`\\r`) or Windows line ends, or U+2028, kept them inside
    its numbered lines: one line `L0: <html>\\r<body>\\r...` that str.splitlines (and a reader's view) read as several."""
    browser = Browser({"mac.html": "<html>\r<body>\r<p>Owls\rhunt</p>\r\n<p>at\u2028dusk</p></body></html>"})
    _run(browser, "open", '{"id": "mac.html"}')
    source = _run(browser, "open", '{"cursor": 0, "view_source": true}')
    assert source.splitlines() == source.split("\n")
    assert source.split("\n")[3:] == ["L0: <html>", "L1: <body>", "L2: <p>Owls", "L3: hunt</p>", "L4: <p>at",
                                      "L5: dusk</p></body></html>"]
    assert browser.citations("【1†L3】")[0].text == "hunt</p>"


_TRICKY_PAGES = [
    "<html><head><title>Owls &amp; voles</title><style>p {color: red}</style><script>x = 1 < 2</script></head>"
    "<body><nav><a href='/'>Home</a></nav><h1>Barn <i>owls</i></h1><!-- a comment --><?pi x?>"
    "<p>They hunt&nbsp;voles &#12304;1&#8224;x&#12305; at dusk<br>and dawn.</p><ul><li>one<li>two<ol><li>deep</ol>"
    "</ul><table><tr><td>a</td><td>1.5</td></tr></table><pre>  code\n   kept</pre><p>x<sup>2</sup> H<sub>2</sub>O</p>"
    "<img src=o.png alt='an &#12304;owl'><a href='b.html' title='t'>next</a> <a href='https://e.org/'>off</a></body>",
    "<p hidden>gone</p><div style='display:none'>gone</div><span style='visibility:hidden'>blank</span>ok "
    "<svg><desc>d</desc><text display='none'>x</text><text>drawn</text></svg><math><mfrac><mi>a</mi><mi>b</mi>"
    "</mfrac></math><dl><dt>term<dd>meaning</dl><blockquote>quoted<p>more</blockquote><abbr title=t>A</abbr>",
    "<div>" * 300 + "deep text" + "</div>" * 300 + "<p>after &lt;tag&gt; &amp; \r\n line</p><q>said</q><s>old</s>new",
    "plain text, no tags at all \u202e with an override, owls<!-- a comment parts words -->voles",
]


def test_an_html_page_reads_as_parsed_into_lxml_html_elements_and_walked_item_by_item(monkeypatch: Any) -> None:
    """Pages are parsed into lxml.etree's elements, not lxml.html's (whose class each element got from a Python
    call: 7 % of converting a page), and walked 1,000 items at a time: the text the model reads is the same, byte for
    byte, on the benchmark's generated pages and on pages of every construct the conversion handles."""
    import importlib.util
    import tempfile
    from pathlib import Path

    import lxml.etree
    import lxml.html

    from gptoss_lab.tools.browser import extract

    def item_by_item(items: Any, deadline: float) -> Any:
        for item in items:
            extract._in_time(deadline)
            yield item

    spec = importlib.util.spec_from_file_location("browser_index", Path(__file__).parents[1] / "benchmarks" /
                                                  "browser_index.py")
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    with tempfile.TemporaryDirectory() as tmp:
        benchmark.make_folder(Path(tmp), 40)
        pages = [path.read_text() for path in sorted(Path(tmp).rglob("*.html"))] + _TRICKY_PAGES

    def read() -> list[tuple[str, str, dict[str, str]]]:
        return [(page.title, page.text, page.urls) for page in (html_page(html, "d/page.html", base="file:///d/")
                                                                for html in pages)]

    read_now = read()
    monkeypatch.setattr(lxml.etree, "HTMLParser", lxml.html.HTMLParser)
    monkeypatch.setattr(extract, "_clocked", item_by_item)
    assert read_now == read()
    assert len(pages) == 24 and all(text.count("\n") > 3 for _, text, _ in read_now[:20])


def test_references_to_link_syntax_and_hidden_characters_are_replaced_and_pages_without_are_not_walked_for_them(
        monkeypatch: Any) -> None:
    """Characters that read as link syntax or hide text are replaced in a page's text, its images' alt and its
    links' titles also where written as references (every HTML name for one, every number of one); a page with no
    such reference is not walked element by element a second time to replace them (a tenth of converting it), and a
    page of thousands of distinct references is walked rather than each looked up."""
    import html.entities

    from gptoss_lab.tools.browser import extract
    from gptoss_lab.tools.browser.page import SPECIAL_CHARACTERS

    names = [name for name, char in html.entities.html5.items() if SPECIAL_CHARACTERS.search(char)]
    numbers = [code for code in [*range(0x3100), *range(0xfe00, 0x10000), *range(0xe0000, 0xe0200)]
               if SPECIAL_CHARACTERS.search(chr(code))]
    assert len(names) > 10 and len(numbers) > 100
    for written in [*(f"&{name}" for name in names), *(f"&#{code};" for code in numbers), "&#x1b;[2J", "&#X3010;"]:
        html = f"<p>owls {written}x <img alt='{written}' src=a.png> <a href='b.html' title='{written}'>b</a></p>"
        page = html_page(html, "a.html", base="file:///d/")
        text = page.text.replace("【0†b】", "")   # the link the page makes
        assert not SPECIAL_CHARACTERS.search(text) and "\x1b" not in text, written
    walked = []
    monkeypatch.setattr(extract, "_plain", lambda text: walked.append(text) or text)
    page = html_page("<ul>" + "<li><b>Owls</b> hunt &amp; voles&nbsp;hide, 1 &lt; 2.</li>" * 500 + "</ul>", "a.html")
    assert page.text.count("* Owls hunt & voles hide, 1 < 2.") == 500
    assert walked == []
    html_page("<p>owls &#x3010;1&#x2020;x&#x3011;</p>", "a.html")
    assert walked != []
    read = []   # a page of many distinct references is walked, not each looked up (1M took 3 s, no deadline heard)
    monkeypatch.setattr(extract, "unescape", lambda reference: read.append(reference) or "")
    page = html_page("<p>" + "".join(f"&owl{n};" for n in range(5_000)) + "</p>", "a.html")
    assert page.text.endswith("&owl4998;&owl4999;") and 0 < len(read) <= 1_000
