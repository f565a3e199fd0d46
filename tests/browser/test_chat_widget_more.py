"""The chat view in real JupyterLab + Chromium where the conversation or the kernel moves on under it: Regenerate on
older turns, a kernel shut down while a card waits, a notebook saved and a tab reloaded mid-turn, and reduced motion.

Screenshots: /tmp/gptoss_chat_more_older.png, /tmp/gptoss_chat_more_shutdown.png,
/tmp/gptoss_chat_more_reload.png, /tmp/gptoss_chat_more_reload_static.png.
"""
from __future__ import annotations

import pytest

from tests.browser.conftest import in_sight

pytestmark = pytest.mark.shared_page   # each test opens its own notebook in the JupyterLab page the one before left

SETUP = "from gptoss_lab import Session, ReplayEngine\nfrom gptoss_lab.widgets.chat import ChatView\n"
ANSWER = "<|channel|>final<|message|>Forty-two.<|return|>"
CALL = ("<|channel|>analysis<|message|>Compute.<|end|>"
        "<|start|>assistant to=python<|channel|>analysis<|message|>print(6 * 7)<|call|>"
        "<|channel|>final<|message|>Done.<|return|>")
WAITING = ".gx-tool[data-status='waiting'] .gx-run"
WIDGET = "application/vnd.jupyter.widget-view+json"
NOT_LAST = ("Only the conversation's last answer can be regenerated: a later turn or New chat has replaced "
            "this one")
# The buttons of a view that talk to the kernel (Copy and Insert as cell do not).
LIVE_BUTTONS = ".gx-chat button:not(.gx-copy):not(.gx-copy-code):not(.gx-insert):not(.gx-prompt-toggle)"
WAITING_TURN = [SETUP + f"session = Session(ReplayEngine({CALL!r}), approval='ask')",  # Regenerate and New chat too
                "reply = session.ask('Compute it', view=ChatView.show().connect(session))"]


def test_regenerate_is_disabled_on_older_turns(lab_notebook):
    """Two turns of one conversation in two cells: ↻ Regenerate stays only on the last answer (the kernel would
    refuse the older one: it is no longer the last turn of the conversation), the older one is disabled and its
    title says why; after New chat no answer offers it. Screenshot: /tmp/gptoss_chat_more_older.png."""
    page = lab_notebook([
        SETUP + f"session = Session(ReplayEngine({ANSWER * 3!r}, delay=0.05), approval='auto')",
        "first = session.ask('One?', view=ChatView.show().connect(session))",
        "second = session.ask('Two?', view=ChatView.show().connect(session))",
    ], wait_for=".gx-chat >> nth=1 >> .gx-footer .gx-regenerate")
    older, newer = (page.locator(".gx-chat").nth(i).locator(".gx-regenerate") for i in (0, 1))
    page.wait_for_function("() => document.querySelector('.gx-chat .gx-regenerate').disabled", timeout=10_000)
    page.screenshot(path="/tmp/gptoss_chat_more_older.png")
    assert older.is_disabled() and older.get_attribute("title") == NOT_LAST
    assert newer.is_enabled()
    page.locator(".gx-chat").nth(1).locator(".gx-new-chat").click()
    page.wait_for_selector(".gx-notice:has-text('New conversation')")
    assert newer.is_disabled() and older.is_disabled()
    assert newer.get_attribute("title") == NOT_LAST


def test_a_regenerate_that_fails_gives_the_earlier_answer_back(lab_notebook, save_notebook):
    """Regenerate whose new sample fails after it started (the recording is played out, as a server that drops would
    fail) showed only the failure where the answer had been, and the conversation had lost it: the earlier answer is
    drawn again under a one-line error, stays the conversation's last (Regenerate still offered) and is what the saved
    notebook holds. Screenshot: /tmp/gptoss_chat_more_regenerate_failed.png."""
    page = lab_notebook([SETUP + f"session = Session(ReplayEngine({CALL!r}), approval='auto')",
                         "reply = session.ask('Compute it', view=ChatView.show().connect(session))"],
                        wait_for=".gx-chat .gx-footer .gx-regenerate", name="regenerate_failed.ipynb")
    page.locator(".gx-chat .gx-regenerate").click()
    notice = page.locator(".gx-chat .gx-notice:has-text('Regenerate failed')")
    notice.wait_for(timeout=30_000)
    page.screenshot(path="/tmp/gptoss_chat_more_regenerate_failed.png")
    assert notice.inner_text().endswith("asked for reply 3; a recording plays once: run the cell that made it again, "
                                        "then this one, or give the recording more replies (a reply ends at each "
                                        "tool call and at each answer); the earlier answer is kept")
    chat = page.locator(".gx-chat")
    assert chat.locator(".gx-turn").count() == 1 and chat.locator(".gx-final p").inner_text() == "Done."
    assert chat.locator(".gx-tool .gx-output").inner_text().strip() == "42"     # its tool card, as it was
    assert "The turn failed" not in chat.inner_text()
    assert chat.locator(".gx-regenerate").is_enabled() and chat.locator(".gx-footer").count() == 1
    page.wait_for_timeout(500)
    html = "".join(save_notebook("regenerate_failed.ipynb")["cells"][1]["outputs"][0]["data"]["text/html"])
    assert "Done." in html and "the earlier answer is kept" in html and "The turn failed" not in html


def test_stop_pressed_at_once_after_regenerate_keeps_the_answer(lab_notebook, kernel_run):
    """↻ Regenerate and then ■ Stop before the new answer had any text left "Stopped before the model had written any
    text: nothing to keep." where the answer had been, and the conversation had lost it: the answer is drawn again
    with a note. Screenshot: /tmp/gptoss_chat_more_regenerate_stopped.png."""
    page = lab_notebook([SETUP + f"session = Session(ReplayEngine({ANSWER * 2!r}), approval='auto')",
                         "reply = session.ask('Six times seven?', view=ChatView.show().connect(session))"],
                        wait_for=".gx-chat .gx-footer .gx-regenerate")
    kernel_run("session.engine.delay = 2.0")          # the new answer's first token comes after 2 s
    page.locator(".gx-chat .gx-regenerate").click()
    page.locator(".gx-chat .gx-stop").click(timeout=10_000)
    notice = page.locator(".gx-chat .gx-notice:has-text('Regenerate stopped')")
    notice.wait_for(timeout=30_000)
    page.screenshot(path="/tmp/gptoss_chat_more_regenerate_stopped.png")
    chat = page.locator(".gx-chat")
    assert notice.inner_text() == ("Regenerate stopped before the model had written any text; the earlier answer is "
                                   "kept.")
    assert chat.locator(".gx-final p").inner_text() == "Forty-two." and "nothing to keep" not in chat.inner_text()
    assert kernel_run("print(len(session.replies), session.replies[-1] is reply)").strip() == "1 True"


BREAK = """
from gptoss_lab.engines.base import EngineError
stream = s.engine.stream
def broken(*args, **kwargs):   # the next sample breaks after its first token
    tokens = stream(*args, **kwargs)
    yield next(tokens)
    raise EngineError("the model broke (a test)")
s.engine.stream = broken
"""


def test_regenerate_shows_the_new_turns_expert_routing_and_a_failed_one_the_old(lab_notebook, kernel_run):
    """With `routing=True` (`--routing`), Regenerate left the old answer's expert grid under the new answer (another
    token count, other experts) and made the new grid in no output at all; a failed Regenerate showed the failed
    turn's. The grid under the chat is always the routing of the answer shown. Screenshot:
    /tmp/gptoss_chat_more_regenerate_routing.png."""
    page = lab_notebook([SETUP + "s = Session.load('tiny')",
                         "reply = s.ask('Write a word.', view=ChatView.show().connect(s), routing=True, "
                         "temperature=1.0, approval='never', max_new_tokens=80)"],
                        wait_for=".gx-chat .gx-footer .gx-regenerate", timeout=240)
    summary = page.locator(".gptoss-routing .gr-summary")

    def shows(count: str) -> None:
        page.wait_for_function("n => document.querySelector('.gptoss-routing .gr-summary')?.textContent"
                               ".startsWith(n + ' tokens')", arg=count, timeout=60_000)
        assert page.locator(".gptoss-routing").count() == 1, "one grid under the chat"
        assert in_sight(page.locator(".gptoss-routing")).is_visible()

    first = kernel_run("print(len(reply.routing))").strip()
    shows(first)
    page.locator(".gx-chat .gx-regenerate").click()
    page.wait_for_function("() => !document.querySelector('.gx-chat .gx-stop') &&"
                           " document.querySelector('.gx-chat .gx-footer .gx-regenerate')", timeout=120_000)
    new = kernel_run("print(s.replies[-1] is not reply, len(s.replies[-1].routing))").split()
    assert new[0] == "True"
    shows(new[1])
    kernel_run(BREAK)
    page.locator(".gx-chat .gx-regenerate").click()
    page.locator(".gx-chat .gx-notice:has-text('Regenerate failed')").wait_for(timeout=60_000)
    shows(new[1])                                 # the grid of the answer given back, not of the failed sample
    assert summary.text_content().startswith(f"{new[1]} tokens ×")
    page.screenshot(path="/tmp/gptoss_chat_more_regenerate_routing.png")


def test_new_chat_is_noted_in_the_saved_notebook(lab_notebook, save_notebook, open_notebook, jupyter_lab):
    """New chat under a finished turn notes "New conversation: ..." in the live view, and the notebook saved and reopened
    (the saved turn, without the kernel) notes it too: the note was only in the live view, and a reader of the saved
    notebook could not tell the next cell's question started a fresh conversation. Screenshot:
    /tmp/gptoss_chat_more_new_chat_saved.png."""
    page = lab_notebook([SETUP + f"session = Session(ReplayEngine({ANSWER!r}), approval='auto')",
                         "reply = session.ask('One?', view=ChatView.show().connect(session))"],
                        wait_for=".gx-chat .gx-footer .gx-new-chat", name="new_chat_saved.ipynb")
    page.locator(".gx-chat .gx-new-chat").click()
    page.wait_for_selector(".gx-chat .gx-notice:has-text('New conversation')")
    page.wait_for_timeout(500)
    saved = save_notebook("new_chat_saved.ipynb")
    assert "New conversation: the next question starts fresh" in "".join(saved["cells"][1]["outputs"][0]["data"]["text/html"])
    jupyter_lab.shutdown_kernels()
    open_notebook("new_chat_saved.ipynb")
    page.wait_for_selector(".gx-fallback")
    page.screenshot(path="/tmp/gptoss_chat_more_new_chat_saved.png")
    assert page.locator(".gx-fallback .gx-notice").all_inner_texts() == [
        "New conversation: the next question starts fresh (earlier turns are forgotten)."]


def test_the_live_line_names_effort_and_model_in_the_stats_lines_order(lab_notebook):
    """While a turn runs the footer says "effort medium · replay", as the stats line that replaces it at the turn's end
    ends: it said "replay · effort medium", and the two swapped places when the turn ended. Screenshot:
    /tmp/gptoss_chat_more_live_meta.png."""
    page = lab_notebook(WAITING_TURN, wait_for=WAITING)
    live = page.locator(".gx-chat .gx-meta").inner_text()
    page.locator(".gx-chat").screenshot(path="/tmp/gptoss_chat_more_live_meta.png")
    page.locator(WAITING).click()
    page.wait_for_selector(".gx-chat .gx-footer .gx-stats")
    assert live == "effort medium · replay"
    assert page.locator(".gx-chat .gx-footer .gx-stats").inner_text().endswith(" · " + live)


SHUT_DOWN = "The kernel shut down: this conversation is gone"


def _shut_down(page) -> None:
    """Kernel > Shut Down, and wait until the notebook has no kernel."""
    page.evaluate("() => window.jupyterapp.commands.execute('kernelmenu:shutdown')")
    page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.sessionContext.session", timeout=30_000)
    page.wait_for_timeout(500)


def test_kernel_shut_down_where_the_interrupt_does_not_reach(lab_notebook):
    """Kernel > Shut Down while a card waits, in a kernel the server's interrupt does not reach (code that ignores it):
    the turn ends saying the kernel is shutting down (it said "AttributeError: 'NoneType' object has no attribute
    'recv_multipart'"), and no button is left enabled, the footer saying why. Screenshot:
    /tmp/gptoss_chat_more_shutdown.png."""
    turn = [WAITING_TURN[0], "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN)\n" + WAITING_TURN[1]]
    page = lab_notebook(turn, wait_for=WAITING)
    _shut_down(page)
    page.screenshot(path="/tmp/gptoss_chat_more_shutdown.png")
    assert page.locator(".gx-chat .gx-tool").first.get_attribute("data-status") != "waiting"
    assert page.locator(".gx-chat .gx-notice.gx-error").inner_text() == ("The turn failed: ConnectionError: the kernel "
                                                                         "is shutting down")
    assert page.locator(".gx-chat .gx-footer .gx-gone").inner_text() == "the kernel shut down"
    buttons = page.locator(LIVE_BUTTONS)
    assert buttons.count() == 2                      # ↻ Regenerate and New chat
    assert all(b.is_disabled() and b.get_attribute("title") == SHUT_DOWN for b in buttons.all())


def test_kernel_shut_down_disables_regenerate_and_new_chat(lab_notebook):
    """Kernel > Shut Down while a card waits, in a kernel the server's interrupt reaches first: the turn ends there
    (the call skipped), and its ↻ Regenerate and New chat, with no kernel left to answer them, are disabled, saying
    why on the footer and in their titles (they were enabled, and did nothing)."""
    page = lab_notebook(WAITING_TURN, wait_for=WAITING)
    _shut_down(page)
    assert page.locator(".gx-chat .gx-tool").first.get_attribute("data-status") == "skipped"
    assert page.locator(".gx-chat .gx-footer .gx-gone").inner_text() == "the kernel shut down"
    buttons = page.locator(LIVE_BUTTONS)
    assert buttons.count() == 2                      # ↻ Regenerate and New chat
    assert all(b.is_disabled() and b.get_attribute("title") == SHUT_DOWN for b in buttons.all())
    assert not page.locator(".gx-chat .gx-prompt-toggle").is_disabled()   # unfolding the prompt needs no kernel


MOTION = """(sel) => { const node = document.querySelector(sel), style = getComputedStyle(node);
  const after = getComputedStyle(node, '::after');
  return [style.animationName, style.transitionDuration, after.transitionDuration]; }"""


@pytest.mark.shared_page(False)   # it emulates reduced motion for its page
def test_no_motion_under_prefers_reduced_motion(page, lab_notebook):
    """With the system's "reduce motion" setting the view moves nothing by itself: the "Thinking…" spinner stands
    still while the model thinks, and the reasoning's fold arrow and the card's Copy buttons change at once."""
    page.emulate_media(reduced_motion="reduce")
    thinking = "<|channel|>analysis<|message|>" + "hmm " * 80 + "<|end|>"
    lab_notebook([SETUP + f"session = Session(ReplayEngine({thinking + CALL!r}, delay=0.05), approval='ask')",
                  "reply = session.ask('Compute it', view=ChatView.show())"], wait_for=".gx-chat .gx-spinner")
    assert page.locator(".gx-chat .gx-turn.gx-live .gx-spinner").first.is_visible()      # the model still thinks
    assert page.evaluate(MOTION, ".gx-chat .gx-spinner")[0] == "none"
    assert page.evaluate(MOTION, ".gx-chat .gx-reasoning > summary")[2] == "0s"
    page.wait_for_selector(WAITING, timeout=30_000)
    assert page.evaluate(MOTION, ".gx-chat .gx-tool-buttons")[1] == "0s"


@pytest.mark.parametrize("ui", ["lab", "notebook"])
def test_a_tab_reloaded_while_a_card_waits_draws_the_live_card_again(lab_notebook, save_notebook, ui):
    """Saved while a card waits for approval (autosave does it): the file keeps the turn so far as its transcript, not
    a widget reference, which reopens as "Error displaying widget: model not found" once the kernel is gone (a crash,
    a shut down), the turn lost. A tab reloaded meanwhile showed that transcript: a card "waiting for approval" with no
    buttons, the kernel busy on it until restarted (its request for the widgets' states was held behind the turn). The
    reloaded tab draws the live view again, and its ▶ Run runs the call; in JupyterLab and in Notebook 7. Screenshot:
    /tmp/gptoss_chat_more_reload.png (JupyterLab)."""
    name = f"reload_{ui}.ipynb"
    page = lab_notebook(WAITING_TURN, wait_for=WAITING, name=name, ui=ui)
    (saved,) = save_notebook(name)["cells"][1]["outputs"]
    assert WIDGET not in saved["data"] and "Compute it" in "".join(saved["data"]["text/html"])
    assert "This turn was still under way when the notebook was saved" in "".join(saved["data"]["text/html"])
    page.reload()
    page.wait_for_selector(WAITING, timeout=60_000)
    if ui == "lab":
        page.screenshot(path="/tmp/gptoss_chat_more_reload.png")
    assert page.locator(".gx-fallback").count() == 0 and page.locator(".gx-chat").count() == 1
    page.locator(WAITING).click()
    page.wait_for_selector(".gx-chat .gx-final:has-text('Done.')", timeout=30_000)
    assert page.locator(".gx-chat .gx-tool .gx-output").inner_text().strip() == "42"
    page.wait_for_timeout(500)
    (saved,) = save_notebook(name)["cells"][1]["outputs"]          # the finished turn, as any is saved
    html = "".join(saved["data"]["text/html"])
    assert WIDGET not in saved["data"] and "Done." in html and "still under way" not in html


def test_a_reloaded_tab_that_cannot_draw_the_card_says_how_to_end_the_turn(lab_notebook, save_notebook):
    """Where the reloaded tab cannot have the view back (here a widget class of the notebook's own is open, whose state
    the kernel will not read on the running turn), it shows the saved transcript, which says that its buttons do not
    work there and how to end the turn the kernel is busy with (it said nothing); interrupting ends it.
    Screenshot: /tmp/gptoss_chat_more_reload_static.png."""
    own = "import ipywidgets\nclass Mine(ipywidgets.Widget):\n    pass\nmine = Mine()\n"
    page = lab_notebook([own + WAITING_TURN[0], WAITING_TURN[1]], wait_for=WAITING, name="reload_static.ipynb")
    save_notebook("reload_static.ipynb")
    page.reload()
    page.wait_for_selector(".gx-fallback", timeout=60_000)
    kernel = "window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
    # the reloaded tab has no session at first: a predicate reading its kernel threw, which ends the wait
    page.wait_for_function("() => window.jupyterapp?.shell.currentWidget?.sessionContext?.session?.kernel"
                           "?.connectionStatus === 'connected'", timeout=60_000)
    page.wait_for_timeout(6000)                          # the widget manager gives up on the states after 4 s
    page.screenshot(path="/tmp/gptoss_chat_more_reload_static.png")
    shown = " ".join(page.locator(".gx-fallback").inner_text().split())
    assert "Compute it" in shown and page.locator(WAITING).count() == 0
    assert ("This turn was still under way when the notebook was saved: its buttons do not work here. If the kernel "
            "is still busy with it, interrupt the kernel (■, or Kernel > Interrupt Kernel) to end the turn") in shown
    assert page.evaluate(f"() => {kernel}.status") != "idle"   # still on the card ("unknown": no status since the reload)
    page.evaluate(f"() => {kernel}.interrupt()")          # what the line says to do: the turn ends, the kernel is free
    page.wait_for_function(f"() => {kernel}.status === 'idle'", timeout=60_000)
