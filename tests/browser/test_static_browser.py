"""The saved form of a turn with citations (what nbconvert's HTML, a bare HTML host such as VS Code's output, and a
notebook reopened without its kernel show), in Chromium with no script of ours: each citation's popup is whole in
the window, wide or 400 px narrow, on hover and on keyboard focus; every chip is reached by Tab; the turn's labels
stay readable to a screen reader; its text reads at 4.5:1 on light and dark pages, themed or not.

A saved search's results read as one list of ids where the page's style applies and where it is dropped.

Screenshots: /tmp/gptoss_static_popup_{400,1280}.png, /tmp/gptoss_static_{nbconvert_light,nbconvert_dark,bare_dark,
bare_light}.png, /tmp/gptoss_static_results_{nbconvert,no_style,github}.png.
"""
from __future__ import annotations

import re

import nbformat
import pytest
from nbconvert import HTMLExporter

from gptoss_lab import ReplayEngine, Session
from gptoss_lab.events import Citation
from gptoss_lab.tools.browser import Browser, demo_folder
from gptoss_lab.widgets.transcript import Transcript

RECORDING = (
    "<|channel|>analysis<|message|>Think about owls.<|end|>"
    "<|start|>assistant to=python<|channel|>analysis<|message|>print('\\n'.join(str(i) for i in range(40)))<|call|>"
    "<|channel|>final<|message|>Owls hunt at night 【0†L1-L6】 and sleep by day, which is a sentence long enough to "
    "reach the right edge of a narrow window 【1†L2-L3】.<|return|>")
CITATIONS = [
    Citation("【0†L1-L6】", 0, 1, 6, "https://a.example/owls", "Owls of the world",
             "\n".join(f"Line {i}: owls are birds of prey that hunt mostly at night and rest by day." for i in range(1, 7))),
    Citation("【1†L2-L3】", 1, 2, 3, "", "manuals/owl.pdf", "Owls sleep in the day.\nThey roost in trees."),
]
# The popup's box in the window (a ::after's resolved geometry) and the box it can be seen in: the window, cut by
# every ancestor whose overflow is not visible (an output area's `overflow: auto`).
POPUP_BOX = """(sup) => {
  const s = getComputedStyle(sup, '::after');
  if (s.display === 'none') return null;
  const r = sup.getBoundingClientRect(), fixed = s.position === 'fixed';
  const left = (fixed ? 0 : r.left) + parseFloat(s.left) + parseFloat(s.marginLeft);
  const top = (fixed ? 0 : r.top) + parseFloat(s.top) + parseFloat(s.marginTop);
  const box = [left, top, left + parseFloat(s.width), top + parseFloat(s.height)];
  let seen = [0, 0, innerWidth, innerHeight];
  if (!fixed) for (let n = sup.parentElement; n; n = n.parentElement) {
    const c = getComputedStyle(n);
    if (c.overflowX === 'visible' && c.overflowY === 'visible') continue;
    const q = n.getBoundingClientRect();
    seen = [Math.max(seen[0], q.left), Math.max(seen[1], q.top), Math.min(seen[2], q.right), Math.min(seen[3], q.bottom)];
  }
  return {box: box.map(Math.round), seen: seen.map(Math.round)};
}"""
# The contrast of every element of the turn with text of its own (a visually hidden label left out), and of each
# open popup, against the colours under it.
CONTRASTS = r"""() => {
  const rgba = s => { let m = s.replace('/', ' ').match(/[\d.]+/g).map(Number);
    if (s.startsWith('color(srgb')) m = m.map((v, i) => i < 3 ? v * 255 : v); return [m[0], m[1], m[2], m.length > 3 ? m[3] : 1]; };
  const over = (top, under) => top.slice(0, 3).map((c, i) => c * top[3] + under[i] * (1 - top[3])).concat([1]);
  const lum = c => { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
  const under = (n, pseudo) => { const layers = pseudo ? [rgba(getComputedStyle(n, pseudo).backgroundColor)] : [];
    for (let e = n; e; e = e.parentElement) layers.push(rgba(getComputedStyle(e).backgroundColor));
    return layers.reverse().reduce((c, l) => over(l, c), [255, 255, 255, 1]); };
  const ratio = (fg, bg) => { const a = lum(over(fg, bg)) + 0.05, b = lum(bg) + 0.05; return Math.max(a, b) / Math.min(a, b); };
  const out = {};
  const note = (name, value) => { out[name] = Math.min(out[name] || 99, Math.round(value * 100) / 100); };
  for (const n of document.querySelectorAll('.gx-fallback *')) {
    const s = getComputedStyle(n);
    if (![...n.childNodes].some(t => t.nodeType === 3 && t.textContent.trim()) || s.display === 'none'
        || s.clipPath.startsWith('inset') || n.closest('style')) continue;
    note(n.tagName.toLowerCase() + (n.className ? '.' + n.className.split(' ')[0] : ''), ratio(rgba(s.color), under(n)));
  }
  for (const n of document.querySelectorAll('.gx-fallback sup.gx-cite')) {
    const s = getComputedStyle(n, '::after');
    if (s.display !== 'none') note('popup', ratio(rgba(s.color), under(n, '::after')));
  }
  return out;
}"""


def _saved_output() -> str:
    """The text/html a saved notebook holds for a turn with reasoning, a long tool output and two citations (one to
    a web page, one to a local file, which has no link)."""
    transcript = Transcript.from_reply(Session(ReplayEngine(RECORDING), namespace={}, approval="auto").ask("Owls?"))
    transcript.citations = CITATIONS
    return transcript._repr_mimebundle_()["text/html"]


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The saved turn as nbconvert's HTML (light and dark JupyterLab themes) and in a bare host page with no
    JupyterLab variables (dark, as VS Code's, and light), as file:// URLs."""
    folder, html = tmp_path_factory.mktemp("static"), _saved_output()
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("reply", outputs=[
        nbformat.v4.new_output("display_data", data={"text/html": html, "text/plain": "reply"})])])
    hosts = {f"nbconvert_{theme}": HTMLExporter(theme=theme).from_notebook_node(notebook)[0] for theme in ("light", "dark")}
    hosts["nbconvert_sanitized"] = HTMLExporter(sanitize_html=True).from_notebook_node(notebook)[0]
    for theme, page, text, link in (("dark", "#1e1e1e", "#cccccc", "#3794ff"), ("light", "#ffffff", "#1f2328", "#0969da")):
        hosts[f"bare_{theme}"] = (f'<!doctype html><meta charset="utf-8"><style>a{{color:{link}}}</style>'
                                  f'<body style="background:{page};color:{text};font-family:sans-serif">{html}</body>')
    urls = {}
    for name, text in hosts.items():
        (folder / f"{name}.html").write_text(text, encoding="utf-8")
        urls[name] = (folder / f"{name}.html").as_uri()
    return urls


def test_the_saved_turn_reads_as_text_where_nbconvert_sanitizes_it(chromium, pages) -> None:
    """`jupyter nbconvert --to html --HTMLExporter.sanitize_html=True` (and readers like it) escapes every tag its
    sanitizer does not keep (bleach's list and div, pre, span, table, tr, td: no <style>, <p>, <br>, headings): the turn
    was a page of our CSS as text, its prompt, reasoning and answer strewn with `<br>` and `<p dir="auto">`. The style
    now sits in a box nbconvert's own CSS hides, and those use tags it keeps. Screenshot: /tmp/gptoss_static_sanitized.png."""
    page = chromium.new_page(viewport={"width": 900, "height": 900})
    try:
        page.goto(pages["nbconvert_sanitized"])
        page.screenshot(path="/tmp/gptoss_static_sanitized.png", full_page=True)
        shown = page.locator(".jp-OutputArea-output").inner_text()
        assert "gx-fallback" not in shown and "{" not in shown, shown[:300]          # no CSS
        assert re.findall(r"</?(?:p|br|h[1-6]|hr|style|thead|th|sup|button)\b[^>]*>", shown) == [], shown
        # each chip reads as what it cites, once: "night ([1] Owls of the world · L1–L6 Line 1: …)" (its tags, with the
        # cited lines again in data-cite, read as text before it)
        assert " ".join(shown.split()).count("Owls of the world · L1–L6") == 2, shown   # the chip's and the Sources'
        assert "Owls hunt at night ([1] Owls of the world" in " ".join(shown.split()), shown
        lines = shown.splitlines()
        assert any(line.startswith("python · done") for line in lines), shown       # the tool card's head
        assert "You: Owls?" in lines and "Think about owls." in lines                 # the prompt, the reasoning
        assert any(line.startswith("Owls hunt at night") for line in lines), shown   # the answer
    finally:
        page.close()


ANSWER = ("<|start|>assistant to=python<|channel|>analysis<|message|>print(285)<|call|>"
          "<|channel|>final<|message|>| n | squares |\n|:-|-:|\n| 9 | 285 |\n\n"
          "The sum $\\sum_{i=0}^{9} i^2$ is 285.<|return|>")
# what the sanitized page showed as text: MathML (`<math xmlns=… display="inline"><mrow><msubsup>…`), a table's head
_SHOWN_TAGS = re.compile(r"</?(?:math|mrow|msubsup|msup|mi|mn|mo|thead|th)\b[^>]*>")


@pytest.mark.parametrize("template", ["lab", "classic"])
def test_a_saved_answers_math_table_and_card_head_read_where_nbconvert_sanitizes(chromium, tmp_path, template: str):
    """Under `--HTMLExporter.sanitize_html=True` a formula was its MathML as text ("The sum <math xmlns=… <mrow>…
    </math> (\\sum_{i=0}^{9} i^2)"), a table's head row its tags (`<th style="text-align:left">n</th>`), and a tool
    card's head stood at the card's right edge (the page right-aligns table cells; the sanitizer drops our style).
    Now the formula reads as its TeX, the head row as its words, and the card's head from the left.
    Screenshot: /tmp/gptoss_static_sanitized_math_{lab,classic}.png."""
    transcript = Transcript.from_reply(Session(ReplayEngine(ANSWER), namespace={}, approval="auto").ask("Sum?"))
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("reply", outputs=[nbformat.v4.new_output(
        "display_data", data={"text/html": transcript._repr_mimebundle_()["text/html"], "text/plain": "reply"})])])
    export = tmp_path / "sanitized.html"
    export.write_text(HTMLExporter(sanitize_html=True, template_name=template).from_notebook_node(notebook)[0])
    page = chromium.new_page(viewport={"width": 900, "height": 700})
    try:
        page.goto(export.as_uri())
        page.screenshot(path=f"/tmp/gptoss_static_sanitized_math_{template}.png", full_page=True)
        shown = page.locator(".gx-fallback").inner_text()
        assert _SHOWN_TAGS.findall(shown) == [], shown
        assert "The sum (\\sum_{i=0}^{9} i^2) is 285." in " ".join(shown.split()), shown   # its TeX, once
        assert re.search(r"n\s+squares\s+9\s+285", shown), shown                           # the table's words
        assert page.locator(".gx-fallback .gx-footer").evaluate("n => getComputedStyle(n).fontWeight") == "400"
        head = page.locator(".gx-fallback .gx-tool-head").first
        offset = head.evaluate("td => td.querySelector('b').getBoundingClientRect().left - td.getBoundingClientRect().left")
        assert offset < 24, f"the card's head starts {offset:.0f} px into its row"
    finally:
        page.close()


@pytest.mark.parametrize("width", [400, 1280])
def test_every_citation_popup_is_whole_in_the_window_on_hover_and_on_focus(chromium, pages, width: int) -> None:
    """At 400 px the first popup ran 96 px past the output area's right edge (clipped: the cited lines cut
    mid-word), and the chip of a local file (no link) could not be reached by Tab at all."""
    page = chromium.new_page(viewport={"width": width, "height": 700})
    try:
        page.goto(pages["nbconvert_light"])
        chips = page.locator(".gx-fallback sup.gx-cite")
        assert chips.count() == 2
        for i in range(2):
            chips.nth(i).scroll_into_view_if_needed()
            chips.nth(i).hover()
            shown = chips.nth(i).evaluate(POPUP_BOX)
            assert shown is not None, f"chip {i + 1}: no popup on hover"
            (left, top, right, bottom), seen = shown["box"], shown["seen"]
            assert seen[0] <= left and seen[1] <= top and right <= seen[2] and bottom <= seen[3], \
                f"chip {i + 1} at {width}px: popup {shown['box']} cut off by {seen}"
            if i == 0:
                page.screenshot(path=f"/tmp/gptoss_static_popup_{width}.png")
        page.mouse.move(0, 0)
        page.locator(".gx-fallback .gx-prompt").click()
        focused = []
        for _ in range(12):   # Tab through the turn: each chip takes the focus; Enter opens its popup, whole
            page.keyboard.press("Tab")
            chip = page.evaluate("document.activeElement.closest('sup.gx-cite') ? document.activeElement.textContent : ''")
            if chip:
                page.keyboard.press("Enter")
                shown = chips.nth(int(chip) - 1).evaluate(POPUP_BOX)
                assert shown is not None, f"chip {chip}: no popup on Enter"
                (left, top, right, bottom), seen = shown["box"], shown["seen"]
                assert seen[0] <= left and seen[1] <= top and right <= seen[2] and bottom <= seen[3]
                if width == 1280 and chip == "1":
                    page.screenshot(path="/tmp/gptoss_static_popup_open.png")
                page.keyboard.press("Escape")
                assert chips.nth(int(chip) - 1).evaluate(POPUP_BOX) is None, f"chip {chip}: Escape left its popup open"
                focused.append(chip)
            if chip == "2":
                break
        assert focused == ["1", "2"]
    finally:
        page.close()


def test_a_saved_citation_popup_opens_by_keyboard_and_closes_with_escape_or_a_click_elsewhere(chromium, pages) -> None:
    """The saved form has no script: a chip's popup was shown while the chip had keyboard focus, and Escape could not
    close it (it covered the window's bottom until the focus moved on). The chip is now a button whose popup Enter
    opens and Escape, a click elsewhere or the chip again closes; it keeps the focus."""
    page = chromium.new_page(viewport={"width": 1000, "height": 700})
    try:
        page.goto(pages["nbconvert_light"])
        chip = page.locator(".gx-fallback sup.gx-cite").first
        button = chip.locator("button")
        button.focus()
        assert chip.evaluate(POPUP_BOX) is None   # focus alone opens nothing that could not be closed
        page.keyboard.press("Enter")
        assert chip.evaluate(POPUP_BOX) is not None and button.get_attribute("aria-label").startswith("Source 1")
        page.screenshot(path="/tmp/gptoss_static_popup_enter.png")
        page.keyboard.press("Escape")
        assert chip.evaluate(POPUP_BOX) is None
        assert page.evaluate("document.activeElement.textContent") == "1"
        page.screenshot(path="/tmp/gptoss_static_popup_escaped.png")
        page.keyboard.press("Space")
        assert chip.evaluate(POPUP_BOX) is not None
        page.mouse.click(5, 650)   # a click elsewhere (light dismiss)
        assert chip.evaluate(POPUP_BOX) is None
        button.click()
        assert chip.evaluate(POPUP_BOX) is not None
        page.mouse.move(5, 650)    # the pointer leaving does not close what a click opened
        assert chip.evaluate(POPUP_BOX) is not None
        button.click()
        page.mouse.move(5, 650)
        assert chip.evaluate(POPUP_BOX) is None
    finally:
        page.close()


def test_the_turns_labels_and_citations_have_names_a_screen_reader_reads(chromium, pages) -> None:
    """"You:" and "Answer:" were display: none and nothing said them (the prompt and the answer read as one text),
    a chip read as a bare number, and a tool card as a table with no name. (Chromium's own accessibility tree.)"""
    page = chromium.new_page(viewport={"width": 900, "height": 700})
    try:
        page.goto(pages["nbconvert_light"])
        for part in (".gx-prompt", ".gx-final"):   # said, out of sight
            label = page.locator(f".gx-fallback {part}").evaluate("n => getComputedStyle(n, '::before').width")
            assert label in ("1px", "auto"), f"{part}: a label {label} wide"
        tree = page.context.new_cdp_session(page).send("Accessibility.getFullAXTree")["nodes"]
        named = {(n["role"]["value"], n.get("name", {}).get("value", "")) for n in tree}
        assert {("StaticText", "You:"), ("StaticText", "Answer:"), ("table", "Tool call, done"),
                ("button", "Source 1, titled “Owls of the world” from “a.example”, lines 1 to 6"),
                ("button", "Source 2, titled “manuals/owl.pdf”, lines 2 to 3")} <= named   # each opens its popup
    finally:
        page.close()


@pytest.mark.parametrize("host", ["nbconvert_light", "nbconvert_dark", "bare_dark", "bare_light"])
def test_the_saved_turn_reads_at_4_5_to_1_on_light_and_dark_pages(chromium, pages, host: str) -> None:
    """On a dark page with no JupyterLab theme (VS Code), the greys (stats, sources, reasoning, tool output) read at
    2.2 to 2.9:1 and the citation chips' numbers at 1.7:1."""
    page = chromium.new_page(viewport={"width": 900, "height": 900}, color_scheme=host.rsplit("_", 1)[1])
    try:
        page.goto(pages[host])
        page.locator(".gx-fallback sup.gx-cite").first.hover()
        ratios = page.evaluate(CONTRASTS)
        page.screenshot(path=f"/tmp/gptoss_static_{host}.png", full_page=True)
        assert {"popup", "a", "div.gx-footer", "div.gx-cite-head", "pre.gx-output"} <= set(ratios)
        assert {name: ratio for name, ratio in ratios.items() if ratio < 4.5} == {}
    finally:
        page.close()


SEARCH = ("<|channel|>analysis to=browser.search code<|message|>{\"query\": \"days\"}<|call|>"
          "<|channel|>final<|message|>Two documents.<|return|>")
# Each list item as a reader sees it: the marker Chromium draws before it ("0.", "•", none), then its text.
READ_ITEMS = """(items) => items.map(li => {
  const type = getComputedStyle(li).listStyleType, list = li.parentElement;
  const marker = type === 'none' ? '' : type === 'disc' ? '• '
    : type === 'decimal' ? `${list.start + [...list.children].indexOf(li)}. ` : `[${type}] `;
  return marker + li.innerText.split('\\n')[0];
})"""


@pytest.fixture(scope="module")
def search_pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A saved search turn (two results) as nbconvert's HTML, as a page with its <style> dropped (an untrusted
    notebook), and as GitHub shows it (no <style>, no class or style attributes), as file:// URLs."""
    folder = tmp_path_factory.mktemp("search")
    session = Session(ReplayEngine(SEARCH), namespace={}, browser=Browser(demo_folder(folder / "docs")),
                      tools="browser", approval="auto")
    html = Transcript.from_reply(session.ask("Which documents mention days?"))._repr_mimebundle_()["text/html"]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("reply", outputs=[
        nbformat.v4.new_output("display_data", data={"text/html": html, "text/plain": "reply"})])])
    bare = re.sub(r"<style>.*?</style>", "", html, flags=re.DOTALL)
    hosts = {"nbconvert": HTMLExporter().from_notebook_node(notebook)[0], "no_style": bare,
             "github": re.sub(r' (?:class|style)="[^"]*"', "", bare)}
    urls = {}
    for name, text in hosts.items():
        (folder / f"{name}.html").write_text(text if name == "nbconvert" else f'<meta charset="utf-8">{text}',
                                             encoding="utf-8")
        urls[name] = (folder / f"{name}.html").as_uri()
    return urls


@pytest.mark.parametrize("host", ["nbconvert", "no_style", "github"])
def test_a_saved_search_lists_its_results_by_id_with_its_style_and_without(chromium, search_pages, host: str) -> None:
    """The results were an <ol> counted from 0 whose items each said their id: nbconvert and JupyterLab (their list
    rules outweighed ours) and GitHub (no <style>) showed "0. id 0 Paid leave…", a number read twice. Each result now
    reads "id 0 …" after a bullet at most; the model's words ("id 0") are its only number."""
    page = chromium.new_page(viewport={"width": 900, "height": 700})
    try:
        page.goto(search_pages[host])
        results = page.locator("table li").filter(has_text="id ")
        read = results.evaluate_all(READ_ITEMS)
        page.locator("table").first.screenshot(path=f"/tmp/gptoss_static_results_{host}.png")
        assert [line.removeprefix("• ") for line in read] == [
            "id 0 Paid leave at Kestrel Labs handbook/leave.md", "id 1 Greenhouse operating manual manuals/greenhouse.pdf"]
    finally:
        page.close()
