"""How browsing shows: citation chips and sources (HTML, Markdown, text), browser call cards, and that
nothing a document or the model wrote becomes live HTML."""
from __future__ import annotations

import dataclasses
import io
import json
import os
from html.parser import HTMLParser
from pathlib import Path

import pytest

from gptoss_lab import ReplayEngine, Session
from gptoss_lab.events import Citation, Reply, ToolCall
from gptoss_lab.tools.browser import Browser, demo_folder
from gptoss_lab.tools.browser.demo import DEMO_QUESTION, DEMO_RECORDING
from gptoss_lab.widgets.chat import ChatView
from gptoss_lab.widgets.citations import card_html, numbered, sources_html, sources_markdown, sources_text, with_chips
from gptoss_lab.widgets.text import TextView
from gptoss_lab.widgets.transcript import Transcript, markdown_html

HOSTILE = '<img src=x onerror="alert(1)"><script>alert(2)</script>"><b onclick=x>'


class Elements(HTMLParser):
    """Every element and attribute of an HTML fragment, as a browser would parse it."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))

    def tags(self) -> set[str]:
        return {tag for tag, _ in self.found}


def chips_of(html: str) -> list[dict[str, str | None]]:
    return [attrs for tag, attrs in Elements(html).found if tag == "sup"]


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_folder(tmp_path_factory.mktemp("views") / "docs")


@pytest.fixture(scope="module")
def reply(docs: Path):
    session = Session(ReplayEngine(DEMO_RECORDING), namespace={}, browser=Browser(docs), tools="browser",
                      approval="auto", date="2026-11-25")
    return session.ask(DEMO_QUESTION)


def test_each_citation_becomes_a_numbered_chip_with_the_cited_lines(reply) -> None:
    html = with_chips(markdown_html(reply.final), reply.citations)
    assert "【" not in html
    first, second = chips_of(html)
    assert first["class"] == "gx-cite" and first["data-cite"].startswith("[1] Greenhouse operating manual · L4\n")
    assert "Keep the humidity at 68 percent during the day and let it fall at night." in first["data-cite"]
    assert first["data-cite"].endswith("\nmanuals/greenhouse.pdf")
    assert "The temperature should stay between 18 and 24 degrees Celsius." in second["data-cite"]
    anchors = [attrs for tag, attrs in Elements(html).found if tag == "a"]
    assert all("href" not in a for a in anchors)          # a local file: nothing to open in a browser tab


def test_web_sources_open_in_a_new_tab_and_unresolved_citations_say_so() -> None:
    cites = [Citation("【3†L2-L3】", 3, 2, 3, "https://example.org/a", "A page", "line two\nline three"),
             Citation("【3†L2-L3】", 3, 2, 3, "https://example.org/a", "A page", "line two\nline three"),
             Citation("【9†L1】", 9, 1, 1)]
    html = with_chips(markdown_html("One 【3†L2-L3】, again 【3†L2-L3】, lost 【9†L1】, `code 【3†L2-L3】`."), cites)
    chips = chips_of(html)
    assert [c["class"] for c in chips] == ["gx-cite", "gx-cite", "gx-cite gx-cite-missing"]
    assert chips[0]["data-cite"] == chips[1]["data-cite"] == "[1] A page · L2–L3\nline two\nline three\nhttps://example.org/a"
    assert chips[2]["data-cite"] == "[2] The model cites cursor 9, a page it was never shown."
    links = [attrs for tag, attrs in Elements(html).found if tag == "a" and "href" in attrs]
    assert [(a["href"], a["target"], a["rel"]) for a in links] == [("https://example.org/a", "_blank", "noopener noreferrer")] * 2
    assert "<code>code 【3†L2-L3】</code>" in html        # code is shown as written


def test_a_citation_of_a_blank_line_is_not_said_to_be_missing() -> None:
    browser = Browser({"notes.md": "# Notes\n\nOwls hunt at night."})
    browser.open(id="notes.md")
    blank, past = browser.citations("Owls 【0†L3】 【0†L50-L60】")
    assert browser.stack[0].lines[3] == "" and blank.text == ""   # L3 exists: a blank line
    assert [chip["data-cite"] for chip in chips_of(with_chips("Owls 【0†L3】 【0†L50-L60】", [blank, past]))] == [
        "[1] The page at cursor 0 (Notes) showed the model no text at L3.",
        "[2] Notes · L50–L60\n[L50–L60: not on the page, whose last line is L4]\nnotes.md"]   # no text "at L50"


def test_sources_list_the_cited_lines_for_saved_notebooks_and_terminals(reply) -> None:
    text = sources_text(reply.citations)
    assert text.splitlines()[:3] == [
        "Sources:", f"  [1] Greenhouse operating manual ({reply.citations[0].url}), L4:",
        "      Keep the humidity at 68 percent during the day and let it fall at night."]
    markdown = sources_markdown(reply.citations)
    assert "1. **Greenhouse operating manual** (manuals/greenhouse.pdf) · L4" in markdown
    assert "   > Keep the humidity at 68 percent during the day and let it fall at night." in markdown


def test_document_text_never_becomes_html() -> None:
    cites = [Citation("【0†L1】", 0, 1, 1, "javascript:alert(1)", HOSTILE, HOSTILE + "\n" + HOSTILE)]
    html = with_chips(markdown_html("Answer 【0†L1】"), cites)
    elements = Elements(html)
    assert elements.tags() == {"p", "sup", "a"}
    assert all(not name.startswith("on") and name != "href" for _, attrs in elements.found for name in attrs)
    assert HOSTILE in chips_of(html)[0]["data-cite"]        # shown as text in the popup
    call = ToolCall("browser.search", "analysis", "{}", status="done", output=HOSTILE,
                    data={"kind": "search", "cursor": 0, "query": HOSTILE, "title": "", "url": "", "start": 0, "end": 0,
                          "total": 0, "lines": [], "results": [{"id": 0, "title": HOSTILE, "url": "javascript:x",
                                                                "source": HOSTILE, "snippet": HOSTILE}]})
    card = Elements(card_html(call))
    assert card.tags() <= {"div", "b", "ul", "li", "span", "br", "details", "summary", "pre"}
    assert all(not name.startswith("on") for _, attrs in card.found for name in attrs)
    assert "\\<img src=x onerror=\"alert\\(1\\)\"\\>" in sources_markdown(cites)   # Markdown shows it as text


def test_cards_show_results_windows_and_matches(reply) -> None:
    search, opened, found = reply.tool_calls
    card = card_html(search)
    assert 'Search <b>greenhouse humidity</b> · 1 result · cursor 0' in card
    assert '<li><span class="gx-browse-n">id 0</span> <b>Greenhouse operating manual</b>' in card
    assert '<span class="gx-browse-source">manuals/greenhouse.pdf</span>' in card
    assert "What the model read" in card
    window = card_html(opened)
    assert "lines 2–8 of 8 · cursor 1" in window
    assert ('<span class="gx-browse-n">L4</span> Keep the humidity at 68 percent during the day and let it fall '
            "at night.") in window
    matches = card_html(found)
    assert "Find <b>humidity</b> in <b>Greenhouse operating manual</b> · 1 match · cursor 2" in matches
    assert '<span class="gx-browse-n">L4</span> Keep the humidity' in matches
    assert card_html(ToolCall("python", "analysis", "1+1", status="done", output="2")) is None
    assert json.loads(json.dumps(opened.data)) == opened.data      # plain data: it travels to the front end


def test_cards_name_pages_and_results_as_the_models_calls_do_and_the_model_reads_its_own_format(reply) -> None:
    """A card names its page "cursor 1" and each result "id 0", the words of the model's calls (`"cursor": 1`,
    `"id": 0`): "page [1]" and results numbered from 0 said nothing to a reader. What the model read is unchanged:
    gpt-oss's `[1] title` header and `【0†title†source】` result links."""
    search, opened, found = reply.tool_calls
    assert json.loads(opened.input) == {"id": 0, "cursor": 0}             # what the user reads in the open call
    cards = [card_html(call) for call in reply.tool_calls]
    assert [card.split("</div>")[0].rsplit(" · ", 1)[1] for card in cards] == ["cursor 0", "cursor 1", "cursor 2"]
    assert not any("page [" in card for card in cards)
    assert '<li><span class="gx-browse-n">id 0</span> <b>Greenhouse operating manual</b>' in cards[0]
    assert "【0†Greenhouse operating manual†" in search.output                # the model's text, as gpt-oss writes it
    assert opened.output.startswith("[1] ") and found.output.startswith("[2] ")


def test_the_saved_transcript_and_the_text_view_show_chips_cards_and_sources(reply, docs: Path) -> None:
    transcript = Transcript.from_reply(reply)
    html = transcript.to_html()
    assert ".gx-cite::after" in html                                       # the chip style travels with it
    chips = chips_of(html)
    assert len(chips) == 2 and "68 percent" in chips[0]["data-cite"]
    assert '<div class="gx-cite-head">Sources</div><ol class="gx-cite-sources"><li><div><b>Greenhouse operating manual</b> · L4' in html
    assert 'Search <b>greenhouse humidity</b> · 1 result · cursor 0' in html   # the search call's card
    assert "Sources:\n  [1] Greenhouse operating manual (" in transcript.to_text()
    assert "**Sources**\n\n1. **Greenhouse operating manual**" in transcript.to_markdown()

    out = io.StringIO()
    view = TextView(out, colour=False)
    session = Session(ReplayEngine(DEMO_RECORDING), namespace={}, browser=Browser(docs), tools="browser",
                      approval="auto", view=view)
    session.ask(DEMO_QUESTION)
    printed = out.getvalue()
    assert "[browser.search: done]\n    [0] greenhouse humidity\n    **viewing lines [0 - 7] of 7**" in printed
    assert "\nSources:\n  【1†L4】 Greenhouse operating manual (manuals/greenhouse.pdf), L4:" in printed
    assert "L4:\n      Keep the humidity at 68 percent during the day and let it fall at night.\n  【1†L5】" in printed


def test_a_page_whose_file_was_edited_since_the_browse_is_said_changed_on_its_card(tmp_path: Path) -> None:
    """The pages are what the folder held when it was read, and nothing told the user who had edited a file since
    that the model read the old text: the card of a call opening (or searching in) it says so, in one line."""
    demo_folder(tmp_path)
    browser = Browser(tmp_path)
    said = "manuals/greenhouse.pdf was changed on disk since the folder was read: the model reads it as it was " \
        "then; %gptoss browse again to read it anew"

    def ask() -> tuple[str, Reply]:
        out = io.StringIO()
        session = Session(ReplayEngine(DEMO_RECORDING), namespace={}, browser=browser, tools="browser",
                          approval="auto", view=TextView(out, colour=False))
        reply = session.ask(DEMO_QUESTION)
        return out.getvalue(), reply

    assert "changed on disk" not in ask()[0] + browser.describe()         # as read
    pdf = tmp_path / "manuals" / "greenhouse.pdf"
    os.utime(pdf, ns=(pdf.stat().st_atime_ns, pdf.stat().st_mtime_ns + 10**9))   # saved again, a second later
    printed, reply = ask()
    assert f"[browser.search: done · {said}]" in printed   # its results quote the file as it was read, too
    assert f"[browser.open: done · {said}]" in printed
    assert f"[browser.find: done · {said}]" in printed
    assert '<div class="gx-browse-note">' + said in Transcript.from_reply(reply).to_html()
    assert "68 percent" in reply.citations[0].text       # citations quote what the model was shown
    note = "(changed on disk since it was read)"          # and the Sources under the answer say it changed
    transcript = Transcript.from_reply(reply)
    assert f"\n  【1†L4】 Greenhouse operating manual (manuals/greenhouse.pdf), L4 {note}:\n" in printed
    assert f"  [1] Greenhouse operating manual (manuals/greenhouse.pdf), L4 {note}:\n" in transcript.to_text()
    assert "1. **Greenhouse operating manual** (manuals/greenhouse.pdf) · L4 \\(changed on disk since it was read\\)\n" \
        in transcript.to_markdown()
    saved, live = transcript.to_html(), sources_html(reply.citations)   # the chat view draws the latter
    assert f'<span class="gx-browse-source">manuals/greenhouse.pdf</span></div><div class="gx-browse-note">{note}</div>' \
        in saved and note in live
    assert all(note in chip["data-cite"] for chip in chips_of(saved))
    assert saved.count(note) == 3 * len(chips_of(saved)) + len(numbered(reply.citations))   # each chip's popup,
    # popover and spoken label, and each source
    assert "; 1 changed on disk since read (manuals/greenhouse.pdf): %gptoss browse again to read them anew" in \
        browser.describe()                               # what %gptoss status says of the browser
    pdf.unlink()
    opened = browser.run(ToolCall("browser.open", "analysis", '{"id": "manuals/greenhouse.pdf"}'))
    assert opened.data["changed"].startswith("manuals/greenhouse.pdf was removed from disk since the folder was read")
    assert "L4 (removed from disk since it was read):" in sources_text(browser.citations(reply.final))
    (tmp_path / "handbook" / "leave.md").write_text("edited")   # several results' files: one line names them
    searched = browser.run(ToolCall("browser.search", "analysis", '{"query": "lab"}'))
    assert searched.data["changed"] == "2 of these documents (handbook/leave.md, manuals/greenhouse.pdf) were changed " \
        "or removed on disk since the folder was read: the model reads them as they were then; %gptoss browse again to read them anew"
    browser.run(ToolCall("browser.open", "analysis", '{"id": "reports/survey-2024.html", "view_source": true}'))
    (tmp_path / "reports" / "survey-2024.html").write_text("edited")   # a citation of its source is of its file
    assert browser.citations(f"【{len(browser.stack) - 1}†L1】")[0].changed == "changed on disk"


def test_the_chat_view_sends_cards_and_chips(docs: Path) -> None:
    view = ChatView()
    ops: list[dict] = []
    view.observe(lambda change: ops.extend(change["new"]["ops"]), names="_chunk")
    session = Session(ReplayEngine(DEMO_RECORDING), namespace={}, browser=Browser(docs), tools="browser",
                      approval="auto", view=view)
    session.ask(DEMO_QUESTION)
    cards = [op["card"] for op in ops if op["op"] == "tool" and "card" in op]
    assert len(cards) == 3 and "Search <b>greenhouse humidity</b>" in cards[0]
    last_answer = [op for op in ops if op["op"] == "end" and "gx-cite" in op.get("html", "")]
    assert len(last_answer) == 1 and len(chips_of(last_answer[0]["html"])) == 2
    assert ops.index(last_answer[0]) < max(i for i, op in enumerate(ops) if op["op"] == "stats")



def test_terminal_sequences_in_a_document_reach_no_terminal_or_card() -> None:
    browser = Browser({"log.txt": "Owls \x1b]52;c;cm0gLXJmIH4=\x07hunt \x1b[2J\x1b[31mat dusk."})  # OSC 52: set the clipboard
    opened = browser.run(ToolCall("browser.open", "analysis", '{"id": "log.txt"}'))
    cites = browser.citations("Owls 【0†L2】")
    shown = [sources_text(cites), sources_markdown(cites), with_chips("Owls 【0†L2】", cites),
             card_html(dataclasses.replace(ToolCall("browser.open", "analysis", "{}"), output=opened.output, data=opened.data))]
    assert [("\x1b" in form, "Owls hunt at dusk." in form) for form in shown] == [(False, True)] * 4
    assert "\n      Owls hunt at dusk." in shown[0]    # the text/plain a terminal prints wrote the clipboard, cleared it
