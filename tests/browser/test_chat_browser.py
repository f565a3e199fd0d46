"""The chat widget in real JupyterLab + Chromium: a ReplayEngine session streams through ChatView.

Checks what a user sees and what their clicks do while the cell is still running: Run executes the
approved code, Skip skips it, Stop ends the turn with the partial answer kept.
"""
from __future__ import annotations

import re

import pytest

RECORDING = (
    "<|channel|>analysis<|message|>The user asks for the sum of squares below 10. "
    "I will compute it with Python to be sure.<|end|>"
    "<|start|>assistant to=python<|channel|>analysis<|message|>print(sum(i * i for i in range(10)))<|call|>"
    "<|channel|>analysis<|message|>The tool answered; now I can reply.<|end|>"
    "<|start|>assistant<|channel|>final<|message|>The sum is **285**.\n\n"
    "- squares: `0, 1, 4, ..., 81`\n- closed form: $\\frac{n(n+1)(2n+1)}{6}$\n\n"
    "$$\\sum_{i=0}^{9} i^2 = 285$$\n<|return|>"
)
LONG = ("<|channel|>analysis<|message|>Counting slowly.<|end|><|start|>assistant<|channel|>final<|message|>"
        + " ".join(f"word{i}" for i in range(400)) + "<|return|>")


def _cells(recording: str, approval: str, delay: float) -> list[str]:
    return [
        "from gptoss_lab import Session, ReplayEngine\nfrom gptoss_lab.widgets.chat import ChatView\n"
        f"session = Session(ReplayEngine({recording!r}, delay={delay}), approval={approval!r})",
        "reply = session.ask('What is the sum of the squares below 10?', view=ChatView.show())",
        "print('REPLY', reply.interrupted, [c.status for c in reply.tool_calls], len(reply.final))",
    ]


def _reply_line(page) -> str:
    page.wait_for_selector("text=/^REPLY /", timeout=30_000)
    return page.locator("text=/^REPLY /").inner_text()


def test_run_executes_the_approved_call_and_the_answer_renders(lab_notebook):
    page = lab_notebook(_cells(RECORDING, "ask", 0.005), wait_for=".gx-tool[data-status='waiting'] .gx-run")
    card = page.locator(".gx-chat .gx-tool")
    assert "sum(i * i for i in range(10))" in card.locator(".gx-code").inner_text()
    assert card.locator(".gx-code .nb").count() >= 3            # print/sum/range highlighted as builtins
    page.locator(".gx-run").click()                              # the kernel is busy in ask(): it still hears this
    page.wait_for_selector(".gx-tool[data-status='done']", timeout=30_000)
    assert card.locator(".gx-output").inner_text().strip() == "285"
    page.wait_for_selector(".gx-footer", timeout=30_000)
    reasoning = page.locator(".gx-chat details.gx-reasoning")
    assert reasoning.count() == 2
    assert reasoning.evaluate_all("nodes => nodes.map(n => n.open)") == [False, False]  # folded for the answer
    assert re.match(r"Thought for \d+\.\d s · \d+ tokens", reasoning.first.locator("summary").inner_text())
    assert "unfiltered" in reasoning.first.locator(".gx-note").text_content()
    final = page.locator(".gx-chat .gx-final")
    assert final.locator("strong").inner_text() == "285"         # Markdown rendered, not shown raw
    assert final.locator("li").count() == 2 and final.locator("math").count() == 2
    assert "tok/s" in page.locator(".gx-chat .gx-footer").inner_text()
    assert page.locator(".gx-stop").count() == 0                 # the turn is over
    fallback = page.locator(".gx-fallback")                      # the copy for saved notebooks: hidden while live
    assert fallback.count() == 1 and not fallback.is_visible() and "285" in fallback.text_content()
    assert _reply_line(page).startswith("REPLY False ['done'] ")
    page.screenshot(path="/tmp/gptoss_chat_light.png", full_page=True)


def test_skip_skips_the_call(lab_notebook):
    page = lab_notebook(_cells(RECORDING, "ask", 0.005), wait_for=".gx-skip", theme="dark")
    page.locator(".gx-skip").click()
    page.wait_for_selector(".gx-tool[data-status='skipped']", timeout=30_000)
    page.wait_for_selector(".gx-footer", timeout=30_000)
    assert "['skipped']" in _reply_line(page)
    assert "did not allow" in page.locator(".gx-chat .gx-output").inner_text()
    page.screenshot(path="/tmp/gptoss_chat_dark.png", full_page=True)


def test_stop_ends_the_turn_and_keeps_the_partial_answer(lab_notebook):
    page = lab_notebook(_cells(LONG, "auto", 0.02), wait_for=".gx-final")
    page.wait_for_function("() => document.querySelector('.gx-final').innerText.includes('word20')")
    page.locator(".gx-stop").click()
    page.wait_for_selector(".gx-footer", timeout=30_000)
    line = _reply_line(page)
    assert line.startswith("REPLY True [] ")
    kept = int(line.rsplit(" ", 1)[1])
    assert 0 < kept < len(" ".join(f"word{i}" for i in range(400)))
    assert "Stopped" in page.locator(".gx-chat .gx-notice").inner_text()
    assert "word399" not in page.locator(".gx-chat .gx-final").inner_text()


def test_gptoss_cell_magic_on_tiny_streams_into_the_chat_view(lab_notebook):
    """The everyday path: `%load_ext`, then a `%%gptoss` cell on the bundled gpt-oss-tiny (loaded by
    default, with a note) shows reasoning, a python card with its output, and the answer."""
    from gptoss_lab.tiny import CHECKPOINT

    if not (CHECKPOINT / "model.safetensors").is_file():
        pytest.skip("gpt-oss-tiny weights are not in this checkout")
    page = lab_notebook(["%load_ext gptoss_lab", "%%gptoss --approve auto --effort medium\nWhat is 37 * 12?",
                         "print('REPLY', _gptoss.final)"], wait_for="text=/^REPLY /")
    assert page.get_by_text("No model loaded: using the bundled gpt-oss-tiny").count() == 1
    card = page.locator(".gx-chat .gx-tool")
    assert "37 * 12" in card.locator(".gx-code").inner_text()
    assert card.locator(".gx-output").inner_text().strip() == "444"
    assert page.locator(".gx-chat details.gx-reasoning").count() >= 1
    assert "444" in page.locator(".gx-chat .gx-final").inner_text()
    assert "gpt-oss-tiny" in page.locator(".gx-chat .gx-footer").inner_text()
    assert "444" in _reply_line(page)
    page.screenshot(path="/tmp/gptoss_chat_tiny.png", full_page=True)
