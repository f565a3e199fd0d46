"""The chat view used by keyboard and screen reader in real JupyterLab + Chromium (a ReplayEngine session).

Screenshots: /tmp/gptoss_chat_ux_focus.png, /tmp/gptoss_chat_ux_grey_light.png, /tmp/gptoss_chat_ux_grey_dark.png,
/tmp/gptoss_chat_ux_stop.png, /tmp/gptoss_chat_ux_narrow.png.
"""
from __future__ import annotations

import pytest

from tests.browser.test_chat_browser import CONTRAST

TWO_CALLS = (
    "<|channel|>analysis<|message|>Two steps.<|end|>"
    "<|start|>assistant to=python<|channel|>analysis<|message|>x = 6 * 7\nprint(x)<|call|>"
    "<|start|>assistant to=python<|channel|>analysis<|message|>print(x + 1)<|call|>"
    "<|channel|>final<|message|>Done.<|return|>"
)
CELLS = [
    "from gptoss_lab import Session, ReplayEngine\nfrom gptoss_lab.widgets.chat import ChatView\n"
    f"session = Session(ReplayEngine({TWO_CALLS!r}, delay=0.005), approval='ask')",
    "reply = session.ask('Compute it', view=ChatView.show())",
]
# Which card (0, 1, ...) holds the focused element, or what else has focus.
FOCUS_CARD = """() => {
  const a = document.activeElement;
  const card = a && a.closest('.gx-tool');
  return card ? [...document.querySelectorAll('.gx-chat .gx-tool')].indexOf(card) : (a ? a.tagName : null);
}"""


def test_focus_stays_on_the_card_after_run_by_keyboard(lab_notebook):
    """Enter on ▶ Run: the card's buttons go away, but keyboard focus stays on that card (not dropped on the
    page's <body>, which sends the next Tab back to the top of JupyterLab), and Tab then reaches the next card's
    ▶ Run in a few presses."""
    page = lab_notebook(CELLS, wait_for=".gx-tool[data-status='waiting'] .gx-run")
    page.locator(".gx-tool[data-status='waiting'] .gx-run").focus()
    page.keyboard.press("Enter")
    page.wait_for_selector(".gx-tool[data-status='done']", timeout=30_000)
    page.wait_for_selector(".gx-tool[data-status='waiting'] .gx-run", timeout=30_000)
    assert page.evaluate(FOCUS_CARD) == 0, "focus left the answered card"
    page.screenshot(path="/tmp/gptoss_chat_ux_focus.png")
    for _ in range(6):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.classList.contains('gx-run')"):
            break
    assert page.evaluate(FOCUS_CARD) == 1 and page.evaluate("() => document.activeElement.className").endswith("gx-run")
    page.keyboard.press("Enter")
    page.wait_for_selector(".gx-chat .gx-footer", timeout=30_000)
    assert page.locator(".gx-chat .gx-tool").nth(1).locator(".gx-output").inner_text().strip() == "43"


def test_a_card_waiting_for_approval_is_announced(lab_notebook):
    """A screen reader hears a card's status as it changes ("waiting for approval", then "done"): the turn
    blocks on the user, so a silent card leaves them waiting for an answer that needs them."""
    page = lab_notebook(CELLS, wait_for=".gx-tool[data-status='waiting'] .gx-run")
    assert page.get_by_role("status").filter(has_text="waiting for approval").count() == 1
    page.locator(".gx-tool[data-status='waiting'] .gx-run").click()
    page.wait_for_selector(".gx-tool[data-status='done']", timeout=30_000)
    assert page.get_by_role("status").filter(has_text="done").count() == 1



LONG = ("<|channel|>analysis<|message|>" + " ".join(f"thought{i}" for i in range(400)) + "<|end|>"
        "<|start|>assistant<|channel|>final<|message|>Done.<|return|>")


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_small_grey_text_reads_at_4_5_to_1(lab_notebook, theme):
    """The live bar (tokens, tok/s, model · effort), the finished turn's stats line and the reasoning disclaimer
    read at WCAG AA (4.5:1), not at the 2.7:1 of JupyterLab Light's faintest text colour (a projector washes
    that out). Screenshot: /tmp/gptoss_chat_ux_grey_{theme}.png."""
    cells = ["from gptoss_lab import Session, ReplayEngine\nfrom gptoss_lab.widgets.chat import ChatView\n"
             f"session = Session(ReplayEngine({LONG!r}, delay=0.02), approval='auto')",
             "reply = session.ask('Think', view=ChatView.show())"]
    page = lab_notebook(cells, wait_for=".gx-reasoning", theme=theme)
    page.wait_for_function("() => document.querySelector('.gx-progress').textContent.includes('tok/s')")
    seen = {name: page.locator(f".gx-chat {name}").evaluate(CONTRAST) for name in (".gx-progress", ".gx-meta")}
    page.locator(".gx-stop").click()
    page.wait_for_selector(".gx-chat .gx-footer", timeout=30_000)
    seen.update({name: page.locator(f".gx-chat {name}").evaluate(CONTRAST) for name in (".gx-stats", ".gx-note")})
    page.screenshot(path=f"/tmp/gptoss_chat_ux_grey_{theme}.png")
    assert min(seen.values()) >= 4.5, seen


def test_focus_stays_in_the_view_after_stop_by_keyboard(lab_notebook):
    """Enter on ■ Stop: the live bar gives way to the footer, and keyboard focus lands on the footer's stats line
    (not on <body>, nor on ↻ Regenerate, where a second Enter would throw the kept reply away); Enter on
    ↻ Regenerate then puts it on the new turn's ■ Stop."""
    cells = ["from gptoss_lab import Session, ReplayEngine\nfrom gptoss_lab.widgets.chat import ChatView\n"
             f"session = Session(ReplayEngine({LONG + LONG!r}, delay=0.02), approval='auto')",   # two turns
             "reply = session.ask('Think', view=ChatView.show().connect(session))"]
    page = lab_notebook(cells, wait_for=".gx-stop")
    page.locator(".gx-stop").focus()
    page.keyboard.press("Enter")
    page.wait_for_selector(".gx-chat .gx-footer", timeout=30_000)
    assert page.evaluate("() => document.activeElement.className") == "gx-stats"
    page.screenshot(path="/tmp/gptoss_chat_ux_stop.png")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.className").endswith("gx-regenerate")
    page.keyboard.press("Enter")                           # the new turn replaces the view: focus on its ■ Stop
    page.wait_for_function("() => document.activeElement.classList.contains('gx-stop')", timeout=10_000)


WIDE = ("<|channel|>final<|message|>| " + " | ".join(f"column{i}" for i in range(12)) + " |\n|" + "---|" * 12 + "\n| "
        + " | ".join(str(i) for i in range(12)) + " |\n\n"
        "$$\\frac{a+b+c+d+e+f+g+h+i+j+k+l+m+n+o+p}{q+r+s+t+u+v+w+x+y+z} = 12345678901234567890$$\n<|return|>")
# For each selector: [right edge past the view's, scrolls sideways, height]
BOXES = """(names) => { const right = document.querySelector('.gx-chat').getBoundingClientRect().right;
  return names.map((name) => { const n = document.querySelector(`.gx-chat ${name}`); const r = n.getBoundingClientRect();
    return [Math.round(r.right - right), n.scrollWidth > n.clientWidth, Math.round(r.height)]; }); }"""


def test_a_wide_table_scrolls_in_a_400_px_window(lab_notebook):
    """In a 400 px window, a 12-column table keeps its headers on one line and scrolls sideways inside the answer
    (it was squeezed: "column0" broke letter by letter and the last columns were cut off, out of reach), as a wide
    formula does. Screenshot: /tmp/gptoss_chat_ux_narrow.png."""
    cells = ["from gptoss_lab import Session, ReplayEngine\nfrom gptoss_lab.widgets.chat import ChatView\n"
             f"session = Session(ReplayEngine({WIDE!r}), approval='auto')",
             "reply = session.ask('Wide', view=ChatView.show())"]
    page = lab_notebook(cells, wait_for=".gx-chat .gx-footer")
    page.set_viewport_size({"width": 400, "height": 800})
    page.wait_for_timeout(500)
    page.locator(".gx-chat .gx-final").scroll_into_view_if_needed()
    page.screenshot(path="/tmp/gptoss_chat_ux_narrow.png")
    table, th, td, formula = page.evaluate(BOXES, ["table", "th", "td", "math[display='block']"])
    assert table[0] <= 1 and table[1], f"table past the view's edge or not scrollable: {table}"
    assert th[2] == td[2], f"header broken over lines: {th[2]} px high, a cell {td[2]} px"
    assert formula[0] <= 1 and formula[1], f"formula past the view's edge or not scrollable: {formula}"
