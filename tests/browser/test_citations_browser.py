"""Browsing in real JupyterLab + Chromium: a recorded gpt-oss browsing turn (search, open, find, answer
with citations) over a folder of documents, asked under the approval policy.

What a user sees: the approval question says what will be searched; the calls show as cards (the
numbered results, the opened window with line numbers, the matches); each citation in the answer is a
numbered chip that shows the cited lines when hovered, in the live view and in the saved notebook
reopened. Screenshots: /tmp/gptoss_browse_live.png, /tmp/gptoss_browse_hover.png, /tmp/gptoss_browse_saved.png.
"""
from __future__ import annotations

CELLS = [
    "from gptoss_lab import Session, ReplayEngine\n"
    "from gptoss_lab.tools.browser import Browser, demo_folder\n"
    "from gptoss_lab.tools.browser.demo import DEMO_QUESTION, DEMO_RECORDING\n"
    "from gptoss_lab.widgets.chat import ChatView\n"
    "session = Session(ReplayEngine(DEMO_RECORDING, delay=0.002), browser=Browser(demo_folder('kestrel_docs')),\n"
    "                  tools='browser', approval='ask')",
    "reply = session.ask(DEMO_QUESTION, view=ChatView.show())",
    "print('CITED', [c.text for c in reply.citations])",
]
POPUP = "(el) => { const s = getComputedStyle(el, '::after'); return [s.display, s.content]; }"


def _hover_shows_the_cited_lines(page, scope: str) -> None:
    chips = page.locator(f"{scope} sup.gx-cite")
    assert chips.count() == 2 and chips.all_inner_texts() == ["1", "2"]
    display, content = chips.first.evaluate(POPUP)
    assert display == "none"                                   # hidden until hovered
    chips.first.hover()
    display, content = chips.first.evaluate(POPUP)
    assert display == "block"
    assert content.startswith('"[1] Greenhouse operating manual · L4')
    assert "Keep the humidity at 68 percent during the day and let it fall at night." in content
    assert chips.first.locator("a").get_attribute("href") is None   # a local file: nothing to open in a tab


def test_browsing_turn_cards_and_citation_chips_live_and_saved(lab_notebook, save_notebook, open_notebook, jupyter_lab):
    page = lab_notebook(CELLS, name="browse.ipynb", wait_for=".gx-tool[data-status='waiting'] .gx-always")
    assert page.locator(".gx-ask").inner_text() == "Search your 4 documents for 'greenhouse humidity'?"
    page.locator(".gx-always").click()                         # allow the browser for the rest of the conversation
    page.wait_for_selector(".gx-final sup.gx-cite", timeout=60_000)
    page.wait_for_selector("text=/^CITED /", timeout=30_000)
    assert "68 percent" in page.locator("text=/^CITED /").inner_text()

    cards = page.locator(".gx-chat .gx-browse-card")
    assert cards.count() == 3
    results = cards.nth(0).locator(".gx-browse-results li")
    assert results.count() == 1 and results.first.inner_text().startswith("Greenhouse operating manual manuals/greenhouse.pdf")
    assert "L4 Keep the humidity at 68 percent" in cards.nth(1).locator(".gx-browse-lines").inner_text()
    assert "Find humidity in Greenhouse operating manual · 1 match" in cards.nth(2).inner_text()
    page.screenshot(path="/tmp/gptoss_browse_live.png", full_page=True)

    _hover_shows_the_cited_lines(page, ".gx-chat .gx-final")
    page.screenshot(path="/tmp/gptoss_browse_hover.png")

    saved = save_notebook("browse.ipynb")
    html = "".join("".join(out["data"].get("text/html", "")) for cell in saved["cells"] for out in cell.get("outputs", [])
                   if "data" in out)
    assert "gx-cite" in html and "Sources" in html
    page = open_notebook("browse.ipynb")
    page.wait_for_selector(".gx-fallback sup.gx-cite", timeout=30_000)
    _hover_shows_the_cited_lines(page, ".gx-fallback")
    assert "Keep the humidity at 68 percent" in page.locator(".gx-fallback .gx-cite-sources").inner_text()
    page.screenshot(path="/tmp/gptoss_browse_saved.png")
