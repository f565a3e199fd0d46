"""A fast turn (one that ends before the front end has drawn its view: a replay, a cached tiny-model answer) in real
JupyterLab and Notebook 7 + Chromium: it ends with the live chat view and working ↻ Regenerate and New chat, cells run
back to back (Run All) included, a second view of its output too, and the saved notebook holds its transcript; a view
drawn mid-turn counts the thinking time from the block's start.

Screenshots: /tmp/gptoss_chat_fast_lab.png, /tmp/gptoss_chat_fast_notebook.png.
"""
from __future__ import annotations

import pytest

SETUP = "from gptoss_lab import Session, ReplayEngine\nfrom gptoss_lab.widgets.chat import ChatView\n"
TWO = "<|channel|>final<|message|>Forty-two.<|return|><|channel|>final<|message|>Forty-three.<|return|>"
WIDGET = "application/vnd.jupyter.widget-view+json"
SLOWER = 4   # CPU throttling of the page while the cells run: the front end draws each view after its turn has ended
ENABLED = "n => document.querySelectorAll('.gx-chat .gx-footer .gx-regenerate:not([disabled])').length >= n"


@pytest.mark.parametrize("ui", ["lab", "notebook"])
def test_a_fast_turn_ends_with_the_live_view_and_its_controls(page, lab_notebook, save_notebook, ui):
    """Two `%%gptoss`-like cells (the view is shown when the turn starts) run back to back, each turn over in
    milliseconds: both end as live chat views, not static transcripts; ↻ Regenerate replaces the second answer and
    New chat answers under the first."""
    cells = [SETUP + f"first = Session(ReplayEngine({TWO!r}), approval='auto')\n"
             f"second = Session(ReplayEngine({TWO!r}), approval='auto')",
             "a = first.ask('One?', view=ChatView().connect(first))",
             "b = second.ask('Two?', view=ChatView().connect(second))",
             "print('DONE', a.final, b.final)"]
    cdp = page.context.new_cdp_session(page)
    cdp.send("Emulation.setCPUThrottlingRate", {"rate": SLOWER})   # a busy machine: each turn ends before its view
    lab_notebook(cells, wait_for="text=/^DONE /", ui=ui, name=f"fast_{ui}.ipynb", timeout=120)
    cdp.send("Emulation.setCPUThrottlingRate", {"rate": 1})
    page.wait_for_function(ENABLED, arg=2, timeout=20_000)
    assert page.locator(".gx-fallback").count() == 0             # no static transcript in place of a live view
    views = page.locator(".gx-chat")
    assert [views.nth(i).locator(".gx-final .gx-md").inner_text().strip() for i in (0, 1)] == ["Forty-two."] * 2
    views.nth(1).locator(".gx-regenerate").click()
    page.wait_for_function("() => document.querySelectorAll('.gx-chat')[1].querySelector('.gx-final .gx-md')"
                           "?.textContent.includes('Forty-three.')", timeout=20_000)
    page.wait_for_selector(".gx-chat >> nth=1 >> .gx-footer .gx-new-chat:not([disabled])", timeout=20_000)
    views.nth(0).locator(".gx-new-chat").click()
    page.wait_for_selector(".gx-chat >> nth=0 >> .gx-notice:has-text('New conversation')", timeout=20_000)
    page.screenshot(path=f"/tmp/gptoss_chat_fast_{ui}.png", full_page=True)
    if ui != "lab":
        return
    page.evaluate("() => { const nb = window.jupyterapp.shell.currentWidget.content; nb.activeCellIndex = 1;"
                  " window.jupyterapp.commands.execute('notebook:create-output-view'); }")
    page.wait_for_function("() => document.querySelectorAll('.gx-chat').length === 3", timeout=20_000)
    other = page.locator(".gx-chat").nth(2)                      # a second view of the first cell's output
    assert other.locator(".gx-final .gx-md").inner_text().strip() == "Forty-two."
    assert other.locator(".gx-notice").inner_text().startswith("New conversation")
    saved = save_notebook(f"fast_{ui}.ipynb")
    outputs = [cell["outputs"] for cell in saved["cells"][1:3]]
    assert [[WIDGET in o.get("data", {}) for o in out] for out in outputs] == [[False], [False]]
    assert "Forty-three." in "".join(outputs[1][0]["data"]["text/html"])   # the regenerated answer is what is kept


LONG = ("<|channel|>analysis<|message|>" + " ".join(f"thought{i}" for i in range(400)) + "<|end|>"
        "<|start|>assistant<|channel|>final<|message|>Done.<|return|>")
SECONDS = ("() => [...document.querySelectorAll('.gx-chat .gx-reasoning .gx-label')]"
           ".map(n => Number((/^Thinking… (\\d+) s$/.exec(n.textContent) || [])[1]))")


def test_a_view_drawn_mid_turn_counts_the_thinking_time_from_its_start(lab_notebook):
    """A second view of the output opened while the model thinks draws the turn from its snapshot: its "Thinking… N s"
    counts from when the reasoning started, as the first view's does (it started again at 0 s)."""
    page = lab_notebook([SETUP + f"session = Session(ReplayEngine({LONG!r}, delay=0.03), approval='auto')",
                         "reply = session.ask('Think', view=ChatView.show())"], wait_for=".gx-chat .gx-reasoning")
    page.wait_for_function(f"() => ({SECONDS})()[0] >= 4", timeout=30_000)
    page.evaluate("() => { const nb = window.jupyterapp.shell.currentWidget.content; nb.activeCellIndex = 1;"
                  " window.jupyterapp.commands.execute('notebook:create-output-view'); }")
    page.wait_for_function(f"() => ({SECONDS})().length === 2", timeout=10_000)
    page.wait_for_timeout(1100)                                  # a tick of both views' timers
    first, second = page.evaluate(SECONDS)
    assert first >= 5 and abs(first - second) <= 1, (first, second)
