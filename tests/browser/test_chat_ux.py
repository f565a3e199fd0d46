"""The chat view used by keyboard and screen reader in real JupyterLab + Chromium (a ReplayEngine session).

Screenshots: /tmp/gptoss_chat_ux_focus.png, /tmp/gptoss_chat_ux_grey_light.png, /tmp/gptoss_chat_ux_grey_dark.png,
/tmp/gptoss_chat_ux_stop.png, /tmp/gptoss_chat_ux_narrow.png, /tmp/gptoss_chat_ux_restart.png, /tmp/gptoss_chat_ux_touch.png,
/tmp/gptoss_chat_ux_rtl.png.
"""
from __future__ import annotations

import re

import pytest

from tests.browser.conftest import in_sight, write_notebook
from tests.browser.test_chat_browser import CONTRAST

pytestmark = pytest.mark.shared_page   # each test opens its own notebook in the JupyterLab page the one before left

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


FOCUSED = "() => [document.activeElement.tagName, document.activeElement.className]"


def _shift_enter(page, jupyter_lab, open_notebook, cells: list[str], runs: int) -> None:
    """Open a notebook of `cells` and run its first `runs` cells with Shift+Enter, as a user does."""
    name = f"nb_keys_{len(cells)}_{runs}.ipynb"
    write_notebook(jupyter_lab.root / name, cells)
    open_notebook(name, kernel=True)
    page.evaluate("window.jupyterapp.shell.collapseLeft()")
    page.locator(".jp-Notebook .jp-Cell").first.locator(".cm-content").click()
    for _ in range(runs):
        page.keyboard.press("Shift+Enter")


def test_a_waiting_card_takes_focus_after_shift_enter(page, jupyter_lab, open_notebook):
    """Shift+Enter runs the cell; when its card waits for approval, keyboard focus is on its ▶ Run, as it is in
    input()'s box (it stayed in the notebook, 14 Tab presses away). Enter runs the call, the next card takes focus
    in turn, and once the last is decided focus stays on its card, not on the page's <body>. An Enter pressed as
    a card takes focus (a double Enter meant for the card before) runs nothing: the keyboard decides 0.7 s later.
    Screenshot: /tmp/gptoss_chat_ux_focus.png."""
    _shift_enter(page, jupyter_lab, open_notebook, CELLS, 2)
    page.wait_for_selector(".gx-tool[data-status='waiting'] .gx-run", timeout=60_000)
    page.wait_for_function("() => document.activeElement.classList.contains('gx-run')", timeout=5_000)
    assert page.evaluate(FOCUS_CARD) == 0
    page.screenshot(path="/tmp/gptoss_chat_ux_focus.png")
    page.wait_for_timeout(800)
    page.keyboard.press("Enter")
    page.wait_for_selector(".gx-tool[data-status='done']", timeout=30_000)
    assert page.locator(".gx-chat .gx-tool").first.locator(".gx-output").inner_text().strip() == "42"
    page.wait_for_function("() => document.activeElement.classList.contains('gx-run')", timeout=30_000)
    assert page.evaluate(FOCUS_CARD) == 1
    page.keyboard.press("Enter")                 # at once: the second Enter of a double press
    page.wait_for_timeout(400)
    waiting = page.locator(".gx-chat .gx-tool").nth(1)
    assert waiting.get_attribute("data-status") == "waiting", "an Enter as the card took focus ran its call"
    assert page.evaluate(FOCUS_CARD) == 1
    page.wait_for_timeout(400)
    page.keyboard.press("Enter")
    page.wait_for_selector(".gx-chat .gx-footer", timeout=30_000)
    assert page.locator(".gx-chat .gx-tool").nth(1).locator(".gx-output").inner_text().strip() == "43"
    assert page.evaluate(FOCUS_CARD) == 1, page.evaluate(FOCUSED)


def test_a_waiting_card_leaves_focus_in_the_editor_being_typed_in(page, jupyter_lab, open_notebook):
    """A user types in another cell while the model thinks: the card that then waits for approval takes no focus, and
    the rest of what they type goes on into their cell (not onto ▶ Run, where a space or Enter would run the call)."""
    slow = [CELLS[0].replace("delay=0.005", "delay=0.05").replace("'<|channel|>analysis<|message|>Two steps.",
                                                                  "'<|channel|>analysis<|message|>" + "Two steps. " * 60),
            CELLS[1], ""]
    assert slow[0] != CELLS[0]
    _shift_enter(page, jupyter_lab, open_notebook, slow, 2)
    scratch = page.locator(".jp-Notebook .jp-Cell").nth(2)
    scratch.locator(".cm-content").click()
    page.keyboard.type("typed = 1")
    assert page.locator(".gx-chat .gx-tool[data-status='waiting']").count() == 0, "the card came before the typing"
    page.wait_for_selector(".gx-tool[data-status='waiting'] .gx-run", timeout=60_000)
    page.wait_for_timeout(300)
    page.keyboard.type(" + 1")
    assert scratch.locator(".cm-content").inner_text() == "typed = 1 + 1", page.evaluate(FOCUSED)
    assert page.locator(".gx-chat .gx-tool[data-status='waiting'] .gx-run").count() == 1


def test_typing_meant_for_the_new_cell_goes_on_there_and_runs_nothing(page, jupyter_lab, open_notebook):
    """The card took focus from the empty cell Shift+Enter left, and the user, not looking, types their next line
    there: the letters were notebook shortcuts ("r" made the cell holding this view raw text: the view was gone, the
    kernel still waiting on it) and a space could click ▶ Run (the call ran unread). Now the first letter gives focus
    back to that cell, with the letter, and what they type goes on there; the card waits, and a click decides it.
    Screenshot: /tmp/h42d_shots/typed_into_card.png."""
    _shift_enter(page, jupyter_lab, open_notebook, CELLS, 2)
    page.wait_for_selector(".gx-tool[data-status='waiting'] .gx-run", timeout=60_000)
    page.wait_for_function("() => document.activeElement.classList.contains('gx-run')", timeout=5_000)
    page.wait_for_timeout(800)                    # past the 0.7 s in which the keyboard decides nothing
    page.keyboard.type("import os", delay=120)
    page.wait_for_timeout(400)
    page.screenshot(path="/tmp/h42d_shots/typed_into_card.png")
    card = page.locator(".gx-chat .gx-tool").first
    assert card.get_attribute("data-status") == "waiting", "the space typed after 'import' ran the call"
    new_cell = page.locator(".jp-Notebook .jp-Cell").nth(2)
    assert new_cell.locator(".cm-content").inner_text() == "import os", page.evaluate(FOCUSED)
    assert "jp-CodeCell" in new_cell.get_attribute("class")  # no letter was a notebook shortcut
    page.keyboard.press("Enter")                  # in the cell: a new line, no decision
    assert card.get_attribute("data-status") == "waiting"
    card.locator(".gx-run").click()
    page.wait_for_selector(".gx-tool[data-status='done']", timeout=30_000)
    assert card.locator(".gx-output").inner_text().strip() == "42"


def test_a_card_leaves_focus_in_another_notebook_beside_it(page, jupyter_lab, open_notebook):
    """The user went on in a new cell of another notebook open beside this one while the model thought: the card
    that then waited took focus from it (the cell was empty), so the Enter they pressed there, 1 s later, clicked
    ▶ Run (the call ran unread). Now a card takes focus only from its own notebook (or from nowhere), and the
    Enter is the other cell's. Screenshot: /tmp/h42d_shots/side_by_side.png."""
    slow = [CELLS[0].replace("delay=0.005", "delay=0.05").replace("'<|channel|>analysis<|message|>Two steps.",
                                                                  "'<|channel|>analysis<|message|>" + "Two steps. " * 60),
            CELLS[1]]
    _shift_enter(page, jupyter_lab, open_notebook, slow, 2)
    write_notebook(jupyter_lab.root / "beside.ipynb", [""])
    page.evaluate("() => { window.jupyterapp.commands.execute('docmanager:open',"
                  " {path: 'beside.ipynb', options: {mode: 'split-right'}}); }")
    page.wait_for_function("() => window.jupyterapp.shell.currentWidget.context.path === 'beside.ipynb'"
                           " && window.jupyterapp.shell.currentWidget.content.widgets.length > 0", timeout=30_000)
    beside = page.locator("#" + page.evaluate("() => window.jupyterapp.shell.currentWidget.id"))
    beside.locator(".jp-Cell .cm-content").first.click()
    assert page.locator(".gx-chat .gx-tool[data-status='waiting']").count() == 0, "the card came before the click"
    page.wait_for_selector(".gx-tool[data-status='waiting'] .gx-run", timeout=60_000)
    page.wait_for_timeout(1000)
    page.keyboard.press("Enter")
    page.wait_for_timeout(400)
    page.screenshot(path="/tmp/h42d_shots/side_by_side.png")
    assert page.locator(".gx-chat .gx-tool").first.get_attribute("data-status") == "waiting", "the Enter ran the call"
    assert beside.locator(".jp-Cell .cm-line").count() == 2, page.evaluate(FOCUSED)  # the Enter made a new line


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
    """The live bar (tokens, tok/s, model · effort), the finished turn's stats line, the reasoning disclaimer and a
    notice under the turn read at WCAG AA (4.5:1), not at the 2.7:1 of JupyterLab Light's faintest text colour (a
    projector washes that out), nor the notice's 4.45:1 (grey on grey).
    Screenshot: /tmp/gptoss_chat_ux_grey_{theme}.png."""
    cells = ["from gptoss_lab import Session, ReplayEngine\nfrom gptoss_lab.widgets.chat import ChatView\n"
             f"session = Session(ReplayEngine({LONG!r}, delay=0.02), approval='auto')",
             "reply = session.ask('Think', view=ChatView.show().connect(session))"]
    page = lab_notebook(cells, wait_for=".gx-reasoning", theme=theme)
    page.wait_for_function("() => document.querySelector('.gx-progress').textContent.includes('tok/s')")
    seen = {name: page.locator(f".gx-chat {name}").evaluate(CONTRAST) for name in (".gx-progress", ".gx-meta")}
    page.locator(".gx-stop").click()
    page.wait_for_selector(".gx-chat .gx-footer", timeout=30_000)
    page.locator(".gx-new-chat").click()
    page.wait_for_selector(".gx-chat .gx-notice")
    seen.update({name: page.locator(f".gx-chat {name}").evaluate(CONTRAST) for name in (".gx-stats", ".gx-note")})
    seen[".gx-notice"] = min(page.locator(".gx-chat .gx-notice").evaluate_all(f"nodes => nodes.map({CONTRAST})"))
    page.screenshot(path=f"/tmp/gptoss_chat_ux_grey_{theme}.png")
    assert min(seen.values()) >= 4.5, seen


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_a_skipped_cards_status_reads_at_4_5_to_1(lab_notebook, theme):
    """A card's neutral status ("skipped", and so "writing…", "pending", "running…", "not run") is small grey text on
    the card's grey head: it read at 4.45:1 in JupyterLab Light, under WCAG AA, where "done" and "waiting for approval"
    read at 5:1 or more. Screenshot: /tmp/h42e_shots/status_skipped_{theme}.png."""
    page = lab_notebook(CELLS, wait_for=".gx-tool[data-status='waiting'] .gx-skip", theme=theme)
    page.locator(".gx-tool[data-status='waiting'] .gx-skip").click()
    skipped = page.locator(".gx-chat .gx-tool[data-status='skipped']")
    skipped.wait_for(timeout=30_000)
    page.locator(".gx-tool[data-status='waiting'] .gx-skip").click()
    page.wait_for_selector(".gx-chat .gx-footer", timeout=30_000)
    page.locator(".gx-chat").screenshot(path=f"/tmp/h42e_shots/status_skipped_{theme}.png")
    ratio = skipped.first.locator(".gx-status").evaluate(CONTRAST)
    assert skipped.first.locator(".gx-status").inner_text() == "skipped"
    assert ratio >= 4.5, ratio


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_a_skipped_cards_code_reads_at_4_5_to_1_and_says_not_run(lab_notebook, theme):
    """A skipped call's code is drawn in full colour, every token at 4.5:1 or more (faded to 0.6, its tokens read at
    2.4:1 in JupyterLab Light, 2.8:1 in Dark); the card still looks not run: a dashed border and a hatched stripe beside
    the code, as a card that ran has not. Screenshot: /tmp/gptoss_chat_ux_skipped_code_{theme}.png."""
    page = lab_notebook(CELLS, wait_for=".gx-tool[data-status='waiting'] .gx-skip", theme=theme)
    page.locator(".gx-tool[data-status='waiting'] .gx-skip").click()
    page.wait_for_selector(".gx-chat .gx-tool[data-status='skipped'] ~ .gx-tool[data-status='waiting'] .gx-run",
                           timeout=30_000)
    page.locator(".gx-tool[data-status='waiting'] .gx-run").click()
    page.wait_for_selector(".gx-chat .gx-footer", timeout=30_000)
    page.locator(".gx-chat").screenshot(path=f"/tmp/gptoss_chat_ux_skipped_code_{theme}.png")
    skipped, ran = page.locator(".gx-chat .gx-tool").all()    # the second ran (a NameError: x was never set)
    ratios = skipped.locator(".gx-code code, .gx-code code span").evaluate_all(f"nodes => nodes.map({CONTRAST})")
    assert min(ratios) >= 4.5, ratios
    style = "n => [getComputedStyle(n).borderTopStyle, getComputedStyle(n.querySelector('.gx-code')).backgroundImage]"
    (border, stripe), (ran_border, ran_stripe) = skipped.evaluate(style), ran.evaluate(style)
    assert (border, ran_border) == ("dashed", "solid") and "gradient" in stripe and ran_stripe == "none"


def test_buttons_are_named_by_their_word_not_their_symbol(lab_notebook):
    """▶ Run, ■ Stop and ↻ Regenerate show their symbol, but a screen reader names them "Run", "Stop", "Regenerate"
    (it read "black right-pointing triangle Run", "black square Stop")."""
    cells = [CELLS[0], "reply = session.ask('Compute it', view=ChatView.show().connect(session))"]
    page = lab_notebook(cells, wait_for=".gx-tool[data-status='waiting'] .gx-run")
    named = lambda name: page.locator(".gx-chat").get_by_role("button", name=name, exact=True)  # noqa: E731
    assert named("Run").count() == 1 and named("Stop").count() == 1
    assert page.locator(".gx-chat .gx-run").inner_text() == "▶ Run"                 # the symbol is still drawn
    named("Run").click()
    page.wait_for_selector(".gx-chat .gx-tool[data-status='done'] ~ .gx-tool[data-status='waiting'] .gx-run",
                           timeout=30_000)
    named("Run").click()
    page.wait_for_selector(".gx-chat .gx-footer", timeout=30_000)
    assert named("Regenerate").count() == 1 and named("New chat").count() == 1


def test_each_copy_button_says_what_it_copies(lab_notebook):
    """A screen reader names the answer's Copy "Copy answer" and each code card's "Copy code" (each was just "Copy");
    they still show "Copy", and a click says "Copied" to both."""
    cells = [CELLS[0].replace("approval='ask'", "approval='auto'"), CELLS[1]]
    page = lab_notebook(cells, wait_for=".gx-chat .gx-footer")
    named = lambda name: page.locator(".gx-chat").get_by_role("button", name=name, exact=True)  # noqa: E731
    assert named("Copy answer").count() == 1 and named("Copy code").count() == 2
    assert named("Copy").count() == 0
    assert page.locator(".gx-chat .gx-final .gx-copy").inner_text() == "Copy"      # the label shown is as it was
    named("Copy answer").click()
    named("Copied").wait_for(timeout=5_000)          # after the clipboard's promise: not at once on a busy machine
    assert named("Copied").count() == 1
    page.wait_for_timeout(1700)
    assert named("Copy answer").count() == 1 and page.locator(".gx-chat .gx-final .gx-copy").inner_text() == "Copy"


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
        "$$\\frac{a+b+c+d+e+f+g+h+i+j+k+l+m+n+o+p}{q+r+s+t+u+v+w+x+y+z} = 12345678901234567890$$\n\n"
        "Inline $a+b+c+d+e+f+g+h+i+j+k+l+m+n+o+p+q+r+s+t+u+v+w+x+y+z = 12345678901234567890$ too.\n<|return|>")
# For each selector in `view`: [right edge past the view's, scrolls sideways (a scroller with more than it shows), height]
BOXES = """([view, names]) => { const right = document.querySelector(view).getBoundingClientRect().right;
  return names.map((name) => { const n = document.querySelector(`${view} ${name}`); const r = n.getBoundingClientRect();
    const scroller = ['auto', 'scroll'].includes(getComputedStyle(n).overflowX);
    return [Math.round(r.right - right), scroller && n.scrollWidth > n.clientWidth, Math.round(r.height)]; }); }"""


def test_a_wide_table_scrolls_in_a_400_px_window(lab_notebook):
    """In a 400 px window, a 12-column table keeps its headers on one line and scrolls sideways inside the answer
    (it was squeezed: "column0" broke letter by letter and the last columns were cut off, out of reach), as a wide
    formula does, inline or displayed, live and saved (a formula ran past the view's edge, and the whole output
    scrolled sideways). Screenshot: /tmp/gptoss_chat_ux_narrow.png."""
    cells = ["from gptoss_lab import Session, ReplayEngine\nfrom gptoss_lab.widgets.chat import ChatView\n"
             "from gptoss_lab.widgets.transcript import Transcript\n"
             f"session = Session(ReplayEngine({WIDE!r}), approval='auto')",
             "reply = session.ask('Wide', view=ChatView.show())", "Transcript.from_reply(reply)"]
    page = lab_notebook(cells, wait_for=".gx-fallback .gx-final")
    page.wait_for_selector(".gx-chat .gx-footer")
    page.set_viewport_size({"width": 400, "height": 800})
    page.wait_for_timeout(500)
    page.locator(".gx-chat .gx-final").scroll_into_view_if_needed()
    page.screenshot(path="/tmp/gptoss_chat_ux_narrow.png")
    table, th, td = page.evaluate(BOXES, [".gx-chat", ["table", "th", "td"]])
    assert table[0] <= 1 and table[1], f"table past the view's edge or not scrollable: {table}"
    assert th[2] == td[2], f"header broken over lines: {th[2]} px high, a cell {td[2]} px"
    for view in (".gx-chat", ".gx-fallback"):
        for formula in page.evaluate(BOXES, [view, ["math[display='block']", "math[display='inline']"]]):
            assert formula[0] <= 1 and formula[1], f"{view}: formula past the view's edge or not scrollable: {formula}"


KERNEL_BACK = ("() => { const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;"
               " return k.connectionStatus === 'connected' && k.status === 'idle'; }")


def test_a_waiting_card_says_so_when_the_kernel_restarts(lab_notebook):
    """The kernel restarts while a card waits for approval: the card no longer looks live (▶ Run pressed then said
    "starting…" forever, as the new kernel knows nothing of the call). Its buttons are disabled, its line says the
    call was not run, and the turn's ■ Stop is disabled too. Screenshot: /tmp/gptoss_chat_ux_restart.png."""
    page = lab_notebook(CELLS, wait_for=".gx-tool[data-status='waiting'] .gx-run")
    page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.restart()")
    page.wait_for_function(KERNEL_BACK, timeout=60_000)
    page.wait_for_timeout(500)
    page.screenshot(path="/tmp/gptoss_chat_ux_restart.png")
    card = page.locator(".gx-chat .gx-tool").first
    assert card.locator(".gx-ask").inner_text() == "The kernel restarted: this call was not run."
    assert card.locator(".gx-status").inner_text() == "not run"
    buttons = card.locator(".gx-actions button")
    assert buttons.count() == 4 and all(b.is_disabled() for b in buttons.all())
    assert page.locator(".gx-chat .gx-stop").is_disabled()
    assert page.locator(".gx-chat .gx-progress").inner_text() == "the kernel restarted"


OVERLAP = """([a, b]) => { const r = a.getBoundingClientRect(), s = b.getBoundingClientRect();
  return r.left < s.right && s.left < r.right && r.top < s.bottom && s.top < r.bottom; }"""


@pytest.mark.shared_page(False)   # it turns touch emulation on for its page
def test_copy_buttons_show_on_a_touch_screen(lab_notebook):
    """On a touch screen (no hover) the answer's Copy and a card's Copy and Insert as cell are shown without hovering
    (they appeared only under the pointer, so a tablet user never saw them), and the answer's Copy sits under the
    answer, not over its first line. Screenshot: /tmp/gptoss_chat_ux_touch.png."""
    cells = [CELLS[0].replace("approval='ask'", "approval='auto'"), CELLS[1]]
    page = lab_notebook(cells, wait_for=".gx-chat .gx-footer")
    cdp = page.context.new_cdp_session(page)
    cdp.send("Emulation.setTouchEmulationEnabled", {"enabled": True, "maxTouchPoints": 5})   # a tablet
    assert page.evaluate("() => matchMedia('(hover: none)').matches")
    page.mouse.move(1, 1)                                 # the pointer over nothing of the view
    page.wait_for_timeout(300)                            # the opacity transition
    page.screenshot(path="/tmp/gptoss_chat_ux_touch.png")
    opacity = "nodes => nodes.map(n => getComputedStyle(n).opacity)"
    assert page.locator(".gx-chat .gx-copy").evaluate_all(opacity) == ["1"]
    assert page.locator(".gx-chat .gx-tool-buttons").evaluate_all(opacity) == ["1", "1"]
    final = page.locator(".gx-chat .gx-final")
    copy, answer = final.locator(".gx-copy").element_handle(), final.locator(".gx-md").element_handle()
    assert not page.evaluate(OVERLAP, [copy, answer])


RTL = ("<|channel|>analysis<|message|>سأحسب المجموع!\nThen answer.<|end|>"
       "<|start|>assistant<|channel|>final<|message|>الجواب هو **4**، وهذا صحيح!\n\nEnglish line!<|return|>")
# [x of the first letter, x of the first "!"] of a node's text: a right-to-left line has its "!" left of its start.
ENDS = """(node) => {
  const walker = document.createTreeWalker(node, NodeFilter.SHOW_TEXT), at = (t, i) => {
    const r = document.createRange(); r.setStart(t, i); r.setEnd(t, i + 1); return r.getBoundingClientRect().left; };
  let first = null, bang = null;
  for (let t = walker.nextNode(); t; t = walker.nextNode()) {
    if (!t.parentElement.getClientRects().length) continue;           // hidden ("You:" of the static form)
    const i = t.data.search(/\\p{L}/u), j = t.data.indexOf("!");
    if (first === null && i >= 0) first = at(t, i);
    if (bang === null && j >= 0) bang = at(t, j);
  }
  return [first, bang];
}"""


def test_arabic_reads_right_to_left_live_and_saved(lab_notebook):
    """An Arabic prompt, reasoning and answer read right to left, each line in the direction of its first letter, in
    the live view and in the static transcript: the sentence's "!" ended up on its right, its start's side (the page
    is left to right), while an English line stays left to right. Screenshot: /tmp/gptoss_chat_ux_rtl.png."""
    cells = ["from gptoss_lab import Session, ReplayEngine\nfrom gptoss_lab.widgets.chat import ChatView\n"
             "from gptoss_lab.widgets.transcript import Transcript\n"
             f"session = Session(ReplayEngine({RTL!r}), approval='auto')",
             "reply = session.ask('مرحبا بالعالم!', view=ChatView.show())",
             "Transcript.from_reply(reply)"]
    page = lab_notebook(cells, wait_for=".gx-fallback .gx-final")
    page.wait_for_selector(".gx-chat .gx-footer")
    page.locator(".gx-fallback details.gx-reasoning > summary").click()
    page.screenshot(path="/tmp/gptoss_chat_ux_rtl.png", full_page=True)
    seen = {}
    for view in (".gx-chat", ".gx-fallback"):
        for name in (".gx-prompt", ".gx-reasoning-text", ".gx-final p" if view == ".gx-chat" else ".gx-final .gx-p"):
            seen[f"{view} {name}"] = page.locator(f"{view} {name}").first.evaluate(ENDS)
    wrong = {name: ends for name, ends in seen.items() if not ends[1] < ends[0]}
    assert not wrong, f"left to right: {wrong}"
    first, bang = page.locator(".gx-chat .gx-final p").last.evaluate(ENDS)
    assert first < bang                                                   # "English line!" stays left to right


THOUGHTS = ("<|channel|>analysis<|message|>" + "\n".join(f"thought line {i}" for i in range(150)) + "<|end|>"
            "<|start|>assistant<|channel|>final<|message|>Done.<|return|>")
SCROLL = "n => [n.scrollTop, n.scrollHeight - n.clientHeight, n.textContent.length]"


def test_streaming_reasoning_stays_in_view(lab_notebook):
    """Reasoning longer than its box scrolls as it streams, so the newest thoughts are in view (the box stayed at its
    first lines while the rest streamed unseen below); a reader who scrolls back up is left there."""
    cells = ["from gptoss_lab import Session, ReplayEngine\nfrom gptoss_lab.widgets.chat import ChatView\n"
             f"session = Session(ReplayEngine({THOUGHTS!r}, delay=0.02), approval='auto')",
             "reply = session.ask('Think', view=ChatView.show())"]
    page = lab_notebook(cells, wait_for=".gx-reasoning-text")
    box = page.locator(".gx-chat .gx-reasoning-text")
    page.wait_for_function("() => { const n = document.querySelector('.gx-reasoning-text');"
                           " return n.scrollHeight > n.clientHeight + 100; }", timeout=30_000)
    top, bottom, _ = box.evaluate(SCROLL)
    assert bottom - top <= 4, f"not following: scrolled to {top} of {bottom}"
    box.evaluate("n => { n.scrollTop = 10; }")                            # the reader scrolls back up
    length = box.evaluate(SCROLL)[2]
    page.wait_for_function(f"() => document.querySelector('.gx-reasoning-text').textContent.length > {length + 100}")
    assert box.evaluate(SCROLL)[0] == 10


def test_a_second_view_drawn_mid_turn_shows_the_turn(lab_notebook):
    """File > New View for Notebook while a card waits for approval: the new view shows the turn so far, with the
    waiting card and its ▶ Run (it was blank, and stayed blank after the turn, having missed the turn's first
    batches), and ▶ Run there runs the call, in both views."""
    page = lab_notebook(CELLS, wait_for=".gx-tool[data-status='waiting'] .gx-run")
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:clone')")
    page.wait_for_function("() => document.querySelectorAll('.gx-chat').length === 2", timeout=20_000)
    second = page.locator(".gx-chat").nth(1)
    second.locator(".gx-tool[data-status='waiting'] .gx-run").wait_for(timeout=20_000)
    assert second.locator(".gx-prompt").inner_text() == "Compute it"
    second.locator(".gx-run").click()
    page.wait_for_function("() => [...document.querySelectorAll('.gx-chat')].every("
                           "(v) => v.querySelector(\".gx-tool[data-status='done']\"))", timeout=30_000)


def test_a_long_prompt_folds_live_and_saved(lab_notebook):
    """A pasted 60-line prompt: the live bubble shows its first lines and "Show all", the saved turn its first 20 lines
    and "40 more lines (...)", so the answer stays in sight (the bubble was taller than the screen); one click shows
    all of it. Screenshot: /tmp/gptoss_chat_ux_long_prompt.png."""
    cells = ["from gptoss_lab import Session, ReplayEngine\nfrom gptoss_lab.widgets.chat import ChatView\n"
             "from gptoss_lab.widgets.transcript import Transcript\n"
             "session = Session(ReplayEngine('<|channel|>final<|message|>Read it.<|return|>'), approval='auto')\n"
             "pasted = '\\n'.join(f'line {i} of the pasted log' for i in range(60))",
             "reply = session.ask(pasted, view=ChatView.show())",
             "Transcript.from_reply(reply)"]
    page = lab_notebook(cells, wait_for=".gx-fallback .gx-prompt")
    page.wait_for_selector(".gx-chat .gx-footer")
    page.screenshot(path="/tmp/gptoss_chat_ux_long_prompt.png", full_page=True)
    live = page.locator(".gx-chat .gx-prompt")
    assert live.evaluate(FOLD) == [True, "Show all", True] and live.bounding_box()["height"] < 600
    live.locator(".gx-prompt-toggle").click()
    assert live.evaluate(FOLD) == [True, "Show less", False]                   # all 60 lines in sight
    prompt = page.locator(".gx-fallback .gx-prompt")
    summary = in_sight(prompt.locator("details > summary"))      # the 60 lines shown above pushed it off screen
    assert re.fullmatch(r"40 more lines \([\d,]+ characters\)", summary.inner_text().strip())
    assert prompt.bounding_box()["height"] < 600                              # 20 lines, not 60
    assert "line 19 of" in prompt.inner_text() and "line 59 of" not in prompt.inner_text()
    summary.click()
    assert "line 20 of" in prompt.inner_text() and "line 59 of the pasted log" in prompt.inner_text()


# A bubble's [toggle shown, its label, text cut off (drawn shorter than it is)]
FOLD = """(n) => { const t = n.querySelector('.gx-prompt-text') || n, b = n.querySelector('.gx-prompt-toggle, summary');
  return [!!b && b.getClientRects().length > 0, b && b.textContent, t.scrollHeight > t.clientHeight + 1]; }"""
FEW_LONG = "\n".join(f"Paragraph {i}: " + "the quick brown fox jumps over the lazy dog " * 5 for i in range(3))
MANY_SHORT = "\n".join(f"line {i}" for i in range(16))


def test_a_long_prompt_folds_by_its_drawn_height(lab_notebook):
    """The bubble folds by the height it is drawn at, measured again as the window changes: 16 short lines fold at any
    width (not folded before: fewer than 24 lines), three long lines show whole at 1280 px and fold at 600 px, where
    they wrap into many (before, only the lines counted). Screenshots: /tmp/h42b_shots/4_prompt_{1280,600}.png."""
    answer = "<|channel|>final<|message|>Read it.<|return|>"
    cells = ["from gptoss_lab import Session, ReplayEngine\nfrom gptoss_lab.widgets.chat import ChatView\n"
             f"session = Session(ReplayEngine({answer * 2!r}), approval='auto')",
             f"few = session.ask({FEW_LONG!r}, view=ChatView.show())",
             f"many = session.ask({MANY_SHORT!r}, view=ChatView.show())"]
    page = lab_notebook(cells, wait_for=".gx-chat .gx-footer")
    page.wait_for_function("() => document.querySelectorAll('.gx-chat .gx-footer').length === 2", timeout=30_000)
    few, many = page.locator(".gx-chat .gx-prompt").all()
    page.wait_for_timeout(300)
    page.screenshot(path="/tmp/h42b_shots/4_prompt_1280.png")
    assert many.evaluate(FOLD) == [True, "Show all", True]
    assert few.evaluate(FOLD) == [False, "Show all", False]
    page.set_viewport_size({"width": 600, "height": 900})
    page.wait_for_timeout(500)
    page.screenshot(path="/tmp/h42b_shots/4_prompt_600.png")
    assert few.evaluate(FOLD) == [True, "Show all", True]
    assert many.evaluate(FOLD) == [True, "Show all", True]
    few.locator(".gx-prompt-toggle").press("Enter")                           # by keyboard too
    assert few.evaluate(FOLD) == [True, "Show less", False]
    assert "Paragraph 2: the quick" in few.locator(".gx-prompt-text").inner_text()


ANSWER_AFTER_THOUGHTS = ("<|channel|>analysis<|message|>" + "\n".join(f"thought line {i}" for i in range(40))
                         + "<|end|><|start|>assistant<|channel|>final<|message|>"
                         + " ".join(f"answer{i}" for i in range(60)) + "<|return|>")
# Each frame while the turn streams: [reasoning open, its bottom, the answer's top (null before it), the next cell's top]
WATCH_FRAMES = """() => { window.gxFrames = [];
  const frame = () => { const r = document.querySelector('.gx-chat .gx-reasoning'), a = document.querySelector('.gx-chat .gx-final');
    window.gxFrames.push([r.open, r.getBoundingClientRect().bottom, a ? a.getBoundingClientRect().top : null,
      document.querySelectorAll('.jp-Notebook .jp-Cell')[2].getBoundingClientRect().top]);
    if (!document.querySelector('.gx-chat .gx-footer')) requestAnimationFrame(frame); };
  frame(); }"""


def test_the_answer_starts_below_the_thought_being_read(lab_notebook):
    """When the answer starts streaming the reasoning stays open, so nothing moves under the reader: the answer's first
    line appears just below the last thought (the reasoning folded, and the answer began 330 px higher, the cell below
    jumping up with it); a click on its summary folds it, the summary staying under the pointer.
    Screenshot: /tmp/gptoss_chat_ux_answer_below_reasoning.png."""
    cells = ["from gptoss_lab import Session, ReplayEngine\nfrom gptoss_lab.widgets.chat import ChatView\n"
             f"session = Session(ReplayEngine({ANSWER_AFTER_THOUGHTS!r}, delay=0.03), approval='auto')",
             "reply = session.ask('Think, then answer', view=ChatView.show())",
             "\n".join(f"x{i} = {i}" for i in range(30))]
    page = lab_notebook(cells, wait_for=".gx-chat .gx-reasoning-text")
    page.wait_for_function("() => document.querySelector('.gx-reasoning-text').textContent.includes('line 20')",
                           timeout=30_000)
    page.evaluate(WATCH_FRAMES)
    page.wait_for_selector(".gx-chat .gx-footer", timeout=30_000)
    page.screenshot(path="/tmp/gptoss_chat_ux_answer_below_reasoning.png")
    frames = page.evaluate("window.gxFrames")
    first = next(i for i, (_, _, answer, _) in enumerate(frames) if answer is not None)
    thought_ended_at, answer_at = frames[first - 1][1], frames[first][2]
    assert 0 <= answer_at - thought_ended_at <= 16, (thought_ended_at, answer_at)
    rises = [before[3] - after[3] for before, after in zip(frames, frames[1:])]
    assert max(rises) <= 1, f"the cell below moved up by {max(rises)} px"
    assert all(is_open for is_open, *_ in frames)
    summary = page.locator(".gx-chat .gx-reasoning > summary")
    at = summary.bounding_box()["y"]
    summary.click()                                                       # the reader folds it
    assert not page.locator(".gx-chat .gx-reasoning").evaluate("d => d.open")
    assert summary.bounding_box()["y"] == at


# For the waiting card: whether each button lies inside the card, and how many lines each word of its question takes.
ASK_ROW = """() => {
  const card = document.querySelector('.gx-chat .gx-tool[data-status="waiting"]');
  const box = card.getBoundingClientRect(), ask = card.querySelector('.gx-ask'), range = document.createRange();
  const inside = [...card.querySelectorAll('.gx-actions button')].map((b) => {
    const r = b.getBoundingClientRect(); return r.left >= box.left - 0.5 && r.right <= box.right + 0.5; });
  const lines = [...ask.textContent.matchAll(/\\S+/g)].map((m) => {
    range.setStart(ask.firstChild, m.index); range.setEnd(ask.firstChild, m.index + m[0].length);
    return new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size; });
  return {inside, lines};
}"""


def test_a_waiting_cards_question_and_buttons_fit_a_narrow_window(lab_notebook):
    """In a notebook 300 to 500 px wide (a phone, a split screen) the approval row kept its four buttons on one line:
    the question ("Run this code in your kernel?") was squeezed to a letter or two a line, a tall column, and Skip
    was pushed past the card's edge, out of reach. The question now takes a line of its own and the buttons wrap.
    Screenshot: /tmp/gptoss_chat_ux_narrow_card.png."""
    page = lab_notebook(CELLS, wait_for=".gx-tool[data-status='waiting'] .gx-run")
    card = page.locator(".gx-chat .gx-tool[data-status='waiting']")
    for width in (1280, 560, 460, 400, 340):
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(400)   # JupyterLab lays the notebook out again a frame or more after a resize
        in_sight(card)
        row = page.evaluate(ASK_ROW)
        if not (all(row["inside"]) and all(n == 1 for n in row["lines"])):
            card.screenshot(path="/tmp/gptoss_chat_ux_narrow_card.png")
        assert all(row["inside"]), f"a button past the card's edge at {width} px: {row}"
        assert all(n == 1 for n in row["lines"]), f"a word of the question broken over lines at {width} px: {row}"


# For each card: whether its tool's name is shown whole, and its status lies inside the card.
HEADS = """() => [...document.querySelectorAll('.gx-chat .gx-tool')].map((card) => {
  const box = card.getBoundingClientRect(), name = card.querySelector('.gx-tool-name');
  const status = card.querySelector('.gx-status').getBoundingClientRect();
  return [name.clientWidth > 0 && name.scrollWidth <= name.clientWidth, status.right <= box.right + 0.5]; })"""


def test_a_cards_name_and_status_stay_whole_in_a_narrow_window(lab_notebook):
    """In a notebook about 300 px wide (a phone), a card's head kept its name, its Copy and Insert as cell buttons
    (there, though unseen until hovered) and its status on one line: "python" was cut to nothing and the status to
    "done · 0.02". The head now wraps, its name and status whole."""
    cells = [CELLS[0].replace("approval='ask'", "approval='auto'"), CELLS[1]]
    page = lab_notebook(cells, wait_for=".gx-chat .gx-footer")
    for width in (1280, 400, 340):
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(400)   # JupyterLab lays the notebook out again a frame or more after a resize
        in_sight(page.locator(".gx-chat .gx-tool").first)
        heads = page.evaluate(HEADS)
        assert heads == [[True, True]] * 2, f"a card's name cut or status outside the card at {width} px: {heads}"
