"""The end of a turn, where the footer (stats, context meter, ↻ Regenerate / New chat) takes the live bar's place (■ Stop,
tokens/s), and the start of one, in real JupyterLab + Chromium: the cell below stays where it is.

Screenshots: /tmp/h43F_shots/footer_{plain,controls}_{760,1280}_{light,dark}.png (the finished turn).
"""
from __future__ import annotations

import pytest

ANSWER = ("<|channel|>analysis<|message|>" + " ".join(f"step{i}" for i in range(30)) + "<|end|>"
          "<|start|>assistant<|channel|>final<|message|>" + " ".join(f"word{i}" for i in range(30)) + "<|return|>")
# From the page's load, each frame once the view is drawn: [the bar's or footer's height, is it the footer, the next
# cell's top, its text], until the footer is there
WATCH = """window.gxFrames = [];
const gxFrame = () => {
  const bar = document.querySelector('.gx-chat .gx-bar, .gx-chat .gx-footer');
  if (bar) window.gxFrames.push([bar.getBoundingClientRect().height, bar.classList.contains('gx-footer'),
    document.querySelectorAll('.jp-Notebook .jp-Cell')[2].getBoundingClientRect().top, bar.textContent]);
  if (!bar || !bar.classList.contains('gx-footer')) requestAnimationFrame(gxFrame); };
requestAnimationFrame(gxFrame);"""


@pytest.mark.parametrize(("width", "theme"), [(420, "light"), (600, "light"), (760, "light"), (760, "dark"),
                                              (1280, "light"), (1280, "dark")])
@pytest.mark.parametrize("controls", [False, True], ids=["plain", "controls"])
def test_the_cell_below_stays_when_the_turn_ends(page, lab_notebook, controls, width, theme):
    """At 420 to 1280 px, with and without ↻ Regenerate / New chat, the live bar is as tall as the footer that
    replaces it: the cell below moves by at most 2 px when the turn ends (the footer wrapped to two lines: 23 px at
    760 px; the stats line did at 600 px, 13 px; the meter and buttons did at 420 px, 16 px), and the bar keeps its
    height from the turn's first frame ("generating…") to its last (at 420 px it grew as the figures did); every figure
    of the stats line, the meter and both buttons are in view."""
    page.set_viewport_size({"width": width, "height": 900})
    view = "ChatView.show().connect(session)" if controls else "ChatView.show()"
    cells = ["from gptoss_lab import Session, ReplayEngine\nfrom gptoss_lab.widgets.chat import ChatView\n"
             f"engine = ReplayEngine({ANSWER * 2!r}, name='gpt-oss-tiny', delay=0.03)\n"
             "engine.context_window = 131072\nsession = Session(engine, approval='auto')",
             f"reply = session.ask('Say thirty words', effort='medium', view={view})",
             "\n".join(f"x{i} = {i}" for i in range(10))]
    page.add_init_script(WATCH)
    page = lab_notebook(cells, wait_for=".gx-chat .gx-bar", theme=theme)
    page.wait_for_function("() => document.querySelector('.gx-chat .gx-progress').textContent.includes('tok/s')")
    page.locator(".gx-chat").screenshot(
        path=f"/tmp/h43F_shots/live_{'controls' if controls else 'plain'}_{width}_{theme}.png")
    page.wait_for_selector(".gx-chat .gx-footer", timeout=30_000)
    page.wait_for_timeout(300)
    frames = page.evaluate("window.gxFrames")
    live = [f for f in frames if not f[1]]
    end = next(f for f in frames if f[1])
    assert "generating" in live[0][3] and "tok/s" in live[-1][3], (live[0], live[-1])    # from the turn's first frame
    assert max(h for h, *_ in live) - min(h for h, *_ in live) <= 1, [h for h, *_ in live]   # the bar keeps its height
    moved = end[2] - live[-1][2]
    assert abs(moved) <= 2, f"the cell below moved {moved} px at the turn's end ({live[-1][0]} -> {end[0]} px)"
    cell = page.locator(".jp-Notebook .jp-Cell").nth(2).bounding_box()["y"]
    assert abs(cell - end[2]) <= 2, (cell, end[2])        # nor after it
    footer = page.locator(".gx-chat .gx-footer")
    assert "first token after" in footer.locator(".gx-stats").inner_text()
    assert footer.locator(".gx-context").is_visible()
    chat = page.locator(".gx-chat").bounding_box()
    inside = [footer.locator(s).bounding_box() for s in (".gx-stats", ".gx-context")
              + ((".gx-regenerate", ".gx-new-chat") if controls else ())]
    assert all(b["x"] >= chat["x"] - 1 and b["x"] + b["width"] <= chat["x"] + chat["width"] + 1 for b in inside)
    page.locator(".gx-chat").screenshot(
        path=f"/tmp/h43F_shots/footer_{'controls' if controls else 'plain'}_{width}_{theme}.png")
    if controls:                          # ↻ Regenerate: the new turn's bar is as tall as the footer it replaces
        page.locator(".gx-regenerate").click()
        page.wait_for_selector(".gx-chat .gx-bar")
        assert abs(page.locator(".gx-chat .gx-bar").bounding_box()["height"] - end[0]) <= 1


def test_the_context_meter_says_full_and_never_rounds_up_to_it(page, lab_notebook):
    """A turn whose function output overflowed the context drew "context 400 / 400 (100%)" titled "start a new chat
    before it fills", and one with room for a next question drew "(100%)" too (99.7 % rounded): the meter says
    "context full" once no question fits, and rounds the percent down below it."""
    call = "<|start|>assistant to=functions.table<|channel|>commentary json<|message|>{}<|call|>"
    answer = "<|channel|>final<|message|>Forty-two.<|return|>"
    cells = ["from gptoss_lab import Session, ReplayEngine\nfrom gptoss_lab.widgets.chat import ChatView\n"
             "def table() -> str:\n    '''The whole table.'''\n    return 'row ' * 400\n"
             f"full = Session(ReplayEngine({call!r}), namespace={{'table': table}}, tools=['table'], approval='auto')\n"
             "full.engine.context_window = 400\nquestion = 'word ' * 6000\n"
             f"kept = Session(ReplayEngine({answer!r}), tools='none').ask(question).usage.context_tokens\n"
             f"near = Session(ReplayEngine({answer!r}), tools='none')\n"
             "near.engine.context_window = kept + 21   # room for the shortest next question, just",
             "full.ask('Show the table', view=ChatView.show())",
             "near.ask(question, view=ChatView.show())"]
    page = lab_notebook(cells)
    page.wait_for_function("() => document.querySelectorAll('.gx-chat .gx-footer .gx-context').length === 2",
                           timeout=60_000)
    full, near = (page.locator(".gx-chat .gx-footer .gx-context").nth(i) for i in (0, 1))
    assert full.inner_text() == "context full (400)" and full.get_attribute("data-level") == "full"
    assert full.get_attribute("title") == "the context (400 tokens) is full: start a new chat"
    assert near.inner_text().endswith("(99%)"), near.inner_text()
    assert near.get_attribute("title").endswith("context tokens used: start a new chat before it fills")
