"""A citation quotes what the model was shown of the lines it cites, and says in their place which of those lines it
was never shown: a citation spanning two `find` matches, or running past a window or past the page's end, read as
one whole passage the model had read (search, open and find pages alike)."""
from __future__ import annotations

from gptoss_lab.tools.browser import Browser
from gptoss_lab.widgets.citations import sources_text

# a log whose lines 3 and 11 match `owl`: find shows each with the three lines after it, as two matches
LOG = "\n".join(f"line {n}" + (" owl" if n in (3, 11) else "") for n in range(40))


def _browser() -> Browser:
    browser = Browser({"log.txt": LOG})
    browser.open(id="log.txt", num_lines=3)   # [0] the page's L0-L2 (an empty line, `URL: log.txt`, line 0)
    browser.find("owl", cursor=0)               # [1] the matches: L5-L8 and L13-L16 of the page
    return browser


def test_a_citation_spanning_two_find_matches_says_which_lines_between_them_the_model_never_saw() -> None:
    browser = _browser()
    cited = browser.citations("Owls 【1†L1-L10】.")[0]
    assert (cited.url, cited.start, cited.end) == ("log.txt", 5, 16)
    assert cited.text.split("\n") == ["line 3 owl", "line 4", "line 5", "line 6",
                                      "[L9–L12: never shown to the model]",
                                      "line 11 owl", "line 12", "line 13", "line 14"]
    # the reader's sources list says it too, under the citation
    assert "[L9–L12: never shown to the model]" in sources_text([cited])
    # lines all shown are quoted as they were, and lines none of which were shown quote nothing
    assert [c.text for c in browser.citations("【1†L1-L4】 【0†L2】 【0†L20】")] == [
        "line 3 owl\nline 4\nline 5\nline 6", "line 0", ""]


def test_a_citation_of_an_opened_page_says_which_cited_lines_were_never_shown_and_which_are_not_there() -> None:
    browser = _browser()
    past_window = browser.citations("【0†L0-L6】")[0]
    # L0-L2 opened, L5-L6 shown by find (at another cursor: the model read them), L3-L4 never
    assert past_window.text.split("\n") == ["", "URL: log.txt", "line 0", "[L3–L4: never shown to the model]",
                                            "line 3 owl", "line 4"]
    browser.open(cursor=0, loc=30)
    past_end = browser.citations("【0†L38-L45】")[0]
    assert past_end.text.split("\n") == ["line 36", "line 37", "line 38", "line 39",
                                         "[L42–L45: not on the page, whose last line is L41]"]


def test_a_citation_all_past_the_pages_end_says_the_page_ends_before_it() -> None:
    """`【0†L5】` of a page ending at L4 read "showed the model no text at L5", as if the page had that line."""
    browser = Browser({"owls.md": "owls\nhunt\nmice"})
    browser.open(id="owls.md")   # L0-L4
    cited = browser.citations("【0†L5】 【0†L6-L9】")
    assert [c.text for c in cited] == ["[L5: not on the page, whose last line is L4]",
                                       "[L6–L9: not on the page, whose last line is L4]"]
    assert "not on the page, whose last line is L4" in sources_text(cited[:1])
    assert "no text" not in sources_text(cited)


def test_a_citation_all_past_a_find_pages_end_says_that_page_ends_before_it() -> None:
    """`【1†L50】` of a find page ending at L10 read "showed the model no text at L50", naming the searched page."""
    cited = _browser().citations("【1†L50】")[0]
    assert (cited.title, cited.text) == ("Find results for text: `owl` in `log.txt`",
                                         "[L50: not on the page, whose last line is L10]")


def test_a_citation_of_a_search_page_past_its_window_says_so() -> None:
    browser = Browser({f"owls {n}.md": f"# Owls {n}\n\nOwls hunt mice, note {n}." for n in range(3)})
    browser.search("owls mice")
    cited = browser.citations("【0†L0-L20】")[0]
    lines = browser.stack[0].lines
    assert cited.text.split("\n") == lines + [f"[L{len(lines)}–L20: not on the page, whose last line is "
                                              f"L{len(lines) - 1}]"]



def test_digits_of_other_scripts_make_no_citation() -> None:
    """`【２†L2】` (full-width 2) and `【1†L٣】` (Arabic-Indic 3) resolved to cursor 2 and line 3: a reader sees
    digits that are not the ones the chip names. Only ASCII digits make a citation; the rest stays text."""
    from gptoss_lab.tools.browser import Browser

    browser = Browser({"a.md": "one\ntwo\nthree\nfour"})
    browser.open(id="a.md")
    assert browser.citations("x【0†L2】 y【０†L2】 z【0†L٣】 w【0†L2-L３】") == browser.citations("x【0†L2】")
    assert [c.marker for c in browser.citations("x【0†L2】")] == ["【0†L2】"]
