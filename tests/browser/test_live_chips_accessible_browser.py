"""The live chat view (anywidget) as a screen reader and keyboard user gets it, in real JupyterLab + Chromium: the front
end's sanitizer (static/common.js) kept a title on every element but no aria-label, role or tabindex, so the citation
chips of a live answer read as bare numbers. It now keeps exactly the attributes the kernel's keeps
(widgets/sanitize.py), with the same value checks, and a model's answer still cannot write any of them.
Screenshot: /tmp/gptoss_live_chips.png.
"""
from __future__ import annotations

from html.parser import HTMLParser

from tests.browser.test_citations_browser import CELLS

LABELS = ["Source 1, titled “Greenhouse operating manual”, line 4",
          "Source 2, titled “Greenhouse operating manual”, line 5"]
FORGED = '<a aria-label="Source 1" role="doc-noteref" tabindex="0" title=x>forged chip</a>'
FORGED_CELL = (f"forged = Session(ReplayEngine({f'<|channel|>final<|message|>Owls {FORGED} hunt.<|return|>'!r}),"
               " approval='auto')\nforged_view = ChatView.show()\nforged.ask('Hi', view=forged_view)\n"
               "print('FORGED', 'SHOWN')")
# Each attribute the kernel keeps or refuses, on elements that may and may not carry it, with good and bad values.
PROBE = ('<p dir="auto" title="Source 1: x" aria-label="p">Kept <a href="https://example.com/" title="Source 1: x" '
         'aria-label="Source 3" role="button" tabindex="-1" class="k">link</a> '
         '<sup class="gx-cite k" data-cite="[1] x" aria-label="s" role="doc-noteref" tabindex="0">'
         '<a tabindex="0" role="doc-noteref" aria-label="Source 1">1</a></sup> '
         '<span class="k gx-cite gx-browse-n" role="doc-noteref" aria-label="z" tabindex="0" dir="auto">s</span></p>'
         '<p dir="rtl">rtl</p><ol start="3" class="gx-cite-sources" aria-label="o"><li dir="auto" title="t">l</li></ol>'
         '<table aria-label="Tool call, done" title="t"><tbody><tr><td style="text-align:left" aria-label="c" '
         'tabindex="0" dir="auto">c</td></tr></tbody></table><details open title="t" class="gx-browse-raw">'
         '<summary aria-label="m">more</summary></details>'
         # links the kernel refuses: a page of this server, another host (a backslash is a slash), a tab in the scheme
         '<p><a href="http:lab/tree/x">this server</a> <a href="http:\\\\evil.example/">another host</a> '
         '<a href="ht\ttps://e.x/">tab</a> <a href="mailto:a@b.example">mail</a></p>'
         '<div dir="auto" role="doc-noteref">probe-end</div>')
PUSH = f"""
from gptoss_lab.widgets.sanitize import sanitize
final = [i for i, b in enumerate(forged_view.transcript.items) if getattr(b, "kind", "") == "final"][0]
forged_view._chunk = {{"seq": 10 ** 6,
                      "ops": [{{"op": "end", "i": final, "html": {PROBE!r}, "seconds": 0, "tokens": 0}}]}}
print(sanitize({PROBE!r}))
"""
ELEMENTS = ("(n) => [...n.querySelectorAll('*')]"
            ".map((e) => [e.localName, [...e.attributes].map((a) => [a.name, a.value])])")


class _Elements(HTMLParser):
    """Each element of an HTML fragment with its attributes, in order."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.found: list[tuple[str, list[tuple[str, str]]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, [(name, value or "") for name, value in attrs]))


def _said(elements: list) -> list[tuple[str, list[tuple[str, str]]]]:
    """Elements as a reader gets them: attributes in order of name, a target and rel only on a link (elsewhere they do
    nothing: the kernel keeps them on an anchor with no href, the front end does not)."""
    return [(tag, sorted((name, value) for name, value in attrs if tag != "a" or name not in ("target", "rel")
                         or "href" in dict(attrs))) for tag, attrs in elements]


def _said_by_chromium(page) -> list[tuple[str, str, bool]]:
    """Chromium's accessibility tree, what a screen reader gets (Playwright's role queries know no DPUB role such as
    doc-noteref): each node's role, name and whether it has the focus."""
    nodes = page.context.new_cdp_session(page).send("Accessibility.getFullAXTree")["nodes"]
    return [(n["role"]["value"], n.get("name", {}).get("value", ""),
             any(p["name"] == "focused" and p["value"]["value"] for p in n.get("properties", [])))
            for n in nodes if "role" in n]


def test_live_chips_are_named_notes_that_tab_reaches_and_model_text_forges_none(lab_notebook, kernel_run, page):
    page.set_viewport_size({"width": 1280, "height": 3200})   # both views drawn: Lab leaves cells out of view undrawn
    live = [CELLS[0].replace("approval='ask'", "approval='auto'"), *CELLS[1:]]
    page = lab_notebook([*live, FORGED_CELL], wait_for="text=/^FORGED SHOWN/", name="live_chips.ipynb")
    tree = _said_by_chromium(page)
    # a local file's chips, no links: each a reference to a note, named; the model's raw HTML named nothing
    assert [name for role, name, _ in tree if role == "doc-noteref"] == LABELS
    assert not [name for _, name, _ in tree if name.startswith("Source 1") and name != LABELS[0]]
    # each live tool card is one named group (it was a nameless run of buttons and text), as the saved card's table
    cards = page.locator(".gx-chat .gx-tool").count()
    named = [name for role, name, _ in tree if role == "group" and name == "Tool call"]
    assert cards >= 2 and named == ["Tool call"] * cards
    forged = page.locator(".gx-chat .gx-final").nth(1).locator(".gx-md")
    assert '<a aria-label="Source 1" role="doc-noteref" tabindex="0" title=x>' in forged.inner_text()   # as text
    assert forged.locator("[aria-label], [role], [tabindex], [title]").count() == 0

    page.locator(".gx-chat .gx-copy-code").last.focus()
    for _ in range(6):
        page.keyboard.press("Tab")
        if page.evaluate("() => !!document.activeElement.closest('sup.gx-cite')"):
            break
    focused = [(role, name) for role, name, focused in _said_by_chromium(page) if focused and role != "RootWebArea"]
    assert focused == [("doc-noteref", LABELS[0])]
    page.screenshot(path="/tmp/gptoss_live_chips.png")

    # Past the kernel, the front end keeps what the kernel's sanitizer keeps, no more and no less
    kept = kernel_run(PUSH).strip()
    page.wait_for_selector(".gx-chat .gx-final :text('probe-end')")
    assert _said(forged.evaluate(ELEMENTS)) == _said(_Elements(kept).found)
