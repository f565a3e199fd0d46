"""The saved form's largest citation popup (a title and an address of NAME_CHARS, twelve cited lines of POPUP_CHARS)
is whole in narrow windows: in nbconvert's HTML and in the saved turn in JupyterLab, light and dark, at 320, 400, 600
and 800 px, on a phone's short screen as on a laptop's; no text of it cut, no horizontal scroll of the page.

Screenshots: /tmp/gptoss_popup_{nbconvert,lab}_{light,dark}_{width}.png.
"""
from __future__ import annotations

import nbformat
import pytest
from nbconvert import HTMLExporter

from gptoss_lab import ReplayEngine, Session
from gptoss_lab.events import Citation
from gptoss_lab.widgets.transcript import Transcript

RECORDING = "<|channel|>final<|message|>Owls hunt at night 【0†L1-L40】 and roost in trees 【1†L2-L3】.<|return|>"
LINES = "\n".join(f"Line {i}: owls are birds of prey that hunt mostly at night and rest by day, said the page."
                  for i in range(1, 41))
# The same turn shown by a cell (a trusted text/html output, as the saved turn in a notebook reopened)
CELLS = ["from IPython.display import HTML, display\nfrom tests.browser.test_popups_browser import _saved_html\n"
         "display(HTML(_saved_html()))"]
# (width, height) of the windows: a phone held upright (320 x 568), a narrow side-by-side window, a small laptop's
WINDOWS = [(320, 568), (400, 640), (600, 700), (800, 600)]

# The popup of `sup` as the reader sees it: its box (a ::after's resolved geometry, placed in its containing block),
# the part of the window it can be seen in (cut by every ancestor whose overflow is not visible), the height its
# text needs at its width (measured on a copy: a box cut to the window hides the rest of its text), and whether the
# page, or a panel the chip is in, scrolls sideways.
POPUP = """(sup) => {
  const s = getComputedStyle(sup, '::after');
  if (s.display === 'none') return null;
  const fixed = s.position === 'fixed';
  let block = null;   // what a fixed box is placed in: the window, unless an ancestor transforms or contains
  for (let n = sup.parentElement; fixed && n && !block; n = n.parentElement) {
    const c = getComputedStyle(n);
    if (c.transform !== 'none' || c.filter !== 'none' || c.perspective !== 'none' || /paint|layout|strict|content/
        .test(c.contain) || /transform|filter|perspective/.test(c.willChange) || (c.containerType || 'normal') !== 'normal')
      block = n;
  }
  const at = fixed ? (block ? block.getBoundingClientRect() : {left: 0, top: 0}) : sup.getBoundingClientRect();
  const left = at.left + parseFloat(s.left) + parseFloat(s.marginLeft);
  const top = at.top + parseFloat(s.top) + parseFloat(s.marginTop);
  const box = [left, top, left + parseFloat(s.width), top + parseFloat(s.height)];
  let seen = [0, 0, innerWidth, innerHeight];
  // a fixed box is cut by the box it is placed in (JupyterLab's contain: strict paints nothing outside it)
  for (let n = fixed ? block : sup.parentElement; n; n = fixed ? null : n.parentElement) {
    const c = getComputedStyle(n);
    if (n !== block && c.overflowX === 'visible' && c.overflowY === 'visible') continue;
    const q = n.getBoundingClientRect();
    seen = [Math.max(seen[0], q.left), Math.max(seen[1], q.top), Math.min(seen[2], q.right), Math.min(seen[3], q.bottom)];
  }
  const copy = document.createElement('div');
  copy.textContent = sup.dataset.cite;
  for (const p of ['font', 'whiteSpace', 'overflowWrap', 'wordBreak', 'letterSpacing', 'padding', 'border', 'boxSizing'])
    copy.style[p] = s[p];
  Object.assign(copy.style, {width: s.width, position: 'absolute', visibility: 'hidden', left: '0', top: '0'});
  document.body.append(copy);
  const needs = copy.getBoundingClientRect().height;
  copy.remove();
  let sideways = document.scrollingElement.scrollWidth > innerWidth + 1;
  for (let n = sup.parentElement; n; n = n.parentElement) sideways = sideways || n.scrollWidth > n.clientWidth + 1
    && ['auto', 'scroll'].includes(getComputedStyle(n).overflowX);
  return {box: box.map(Math.round), seen: seen.map(Math.round), height: parseFloat(s.height), needs, sideways};
}"""


def _saved_html() -> str:
    """The saved form of a turn whose first citation makes the largest popup, and whose second is a local file's."""
    transcript = Transcript.from_reply(Session(ReplayEngine(RECORDING), namespace={}, approval="auto").ask("Owls?"))
    transcript.citations = [
        Citation("【0†L1-L40】", 0, 1, 40, "https://a.example/" + "owls/" * 80, "Owls of the world " * 30, LINES),
        Citation("【1†L2-L3】", 1, 2, 3, "", "manuals/owl.pdf", "Owls sleep by day.\nThey roost in trees.")]
    return transcript.to_html()


@pytest.fixture(scope="module")
def nbconvert_pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """nbconvert's HTML of a notebook holding the saved turn, in its light and dark themes, as file:// URLs."""
    folder, html = tmp_path_factory.mktemp("popups"), _saved_html()
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("reply", outputs=[
        nbformat.v4.new_output("display_data", data={"text/html": html, "text/plain": "reply"})])])
    urls = {}
    for theme in ("light", "dark"):
        path = folder / f"{theme}.html"
        path.write_text(HTMLExporter(theme=theme).from_notebook_node(notebook)[0], encoding="utf-8")
        urls[theme] = path.as_uri()
    return urls


def _popup_problems(page, where: str) -> list[str]:
    """Hover, then Enter on, each chip: what is wrong with its popup (out of the window, text cut, the page scrolled
    sideways, or still open after Escape)."""
    chips, problems = page.locator(".gx-fallback sup.gx-cite"), []
    assert chips.count() == 2
    for i in range(2):
        for how in ("hover", "Enter"):
            page.mouse.move(0, 0)
            chips.nth(i).scroll_into_view_if_needed()
            if how == "hover":
                chips.nth(i).hover()
            else:
                chips.nth(i).locator("button").focus()
                page.keyboard.press("Enter")
            shown = chips.nth(i).evaluate(POPUP)
            if how == "Enter":
                page.keyboard.press("Escape")
                if chips.nth(i).evaluate(POPUP) is not None:
                    problems.append(f"{where}: chip {i + 1}: Escape left its popup open")
            if i == 0 and how == "hover":
                page.screenshot(path=f"/tmp/gptoss_popup_{where}.png")
            name = f"{where}: chip {i + 1} on {how}"
            if shown is None:
                problems.append(f"{name}: no popup")
                continue
            (left, top, right, bottom), seen = shown["box"], shown["seen"]
            if not (seen[0] <= left and seen[1] <= top and right <= seen[2] and bottom <= seen[3]):
                problems.append(f"{name}: popup {shown['box']} cut off by {seen}")
            if shown["needs"] > shown["height"] + 1:
                problems.append(f"{name}: {shown['height']:.0f} px shown of the {shown['needs']:.0f} px of its text")
            if shown["sideways"]:
                problems.append(f"{name}: the page scrolls sideways")
        chips.nth(i).locator("button").blur()
    return problems


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_the_largest_popup_is_whole_in_nbconvert_html_at_every_width(chromium, nbconvert_pages, theme: str) -> None:
    """At 320 x 568 (a phone) the popup was cut to the window's height: its last cited lines and its address unseen."""
    problems = []
    for width, height in WINDOWS:
        page = chromium.new_page(viewport={"width": width, "height": height}, color_scheme=theme)
        try:
            page.goto(nbconvert_pages[theme])
            problems += _popup_problems(page, f"nbconvert_{theme}_{width}")
        finally:
            page.close()
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("ui", "theme"), [("lab", "light"), ("lab", "dark"), ("notebook", "light")])
def test_the_largest_popup_is_whole_in_jupyterlab_at_every_width(lab_notebook, ui: str, theme: str) -> None:
    """The saved turn as JupyterLab and Notebook 7 show it (a trusted text/html output, as in a notebook reopened):
    at 320 x 568 the popup ran 113 px above JupyterLab's notebook panel (its first lines cut) and its text needed
    753 px of the 552 shown."""
    page = lab_notebook(CELLS, wait_for=".gx-fallback sup.gx-cite", theme=theme, ui=ui)
    problems = []
    for width, height in WINDOWS:
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(400)
        problems += _popup_problems(page, f"{ui}_{theme}_{width}")
    assert not problems, "\n".join(problems)


def test_a_model_link_is_not_named_as_a_source_for_a_screen_reader(chromium, tmp_path) -> None:
    """Chromium's accessibility tree of the saved turn: a model's link with no text but a title, `[](url "Source 1:
    Owls of the world, lines 1 to 2")`, was a link named as the real chip is; a titled one described itself so."""
    from tests.test_static_titles import FORGED, _turn

    path = tmp_path / "forged.html"
    path.write_text(f'<!doctype html><meta charset="utf-8"><body>{_turn(FORGED).to_html()}</body>', encoding="utf-8")
    page = chromium.new_page(viewport={"width": 900, "height": 700})
    try:
        page.goto(path.as_uri())
        tree = page.context.new_cdp_session(page).send("Accessibility.getFullAXTree")["nodes"]
        said = [(n["role"]["value"], n.get("name", {}).get("value", ""), n.get("description", {}).get("value", ""))
                for n in tree if n["role"]["value"] in ("link", "button")]   # a saved chip is a button
        assert [(role, name) for role, name, _ in said if "Source" in name] == [
            ("button", "Source 1, titled “Owls of the world” from “a.example”, lines 1 to 2")]
        assert [description for _, _, description in said if description] == []
    finally:
        page.close()
