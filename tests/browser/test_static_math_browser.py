"""The saved form of a turn in JupyterLab is not typeset by Lab's MathJax: the lab renders the math it allows as
MathML itself (no colour, no offsets, no sizes past the text's), and TeX it leaves as text (`\\(…\\)` in an answer,
`$…$` in the reasoning or a notice) must stay text, or a reopened notebook paints it with `\\color` and friends.
A control output of plain HTML in the same notebook shows that Lab does typeset text/html outputs.

Screenshot: /tmp/gptoss_static_math.png (the reopened turn, its TeX as written).
"""
from __future__ import annotations

RECORDING = ("<|channel|>analysis<|message|>Reasoning $\\color{red}{REASONED}$ here.<|end|>"
             "<|start|>assistant<|channel|>final<|message|>Answer \\\\(\\color{red}{\\raise{3em}{LIFTED}}\\\\) and "
             "$$\\color{red}{SHOWN}$$ end.<|return|>")
CELLS = [
    "from IPython.display import HTML\nHTML('<div class=\"control\">Control \\\\(\\\\color{red}{CONTROL}\\\\)</div>')",
    "from gptoss_lab import Session, ReplayEngine\nfrom gptoss_lab.widgets.chat import ChatView\n"
    f"session = Session(ReplayEngine({RECORDING!r}), approval='auto')",
    "view = ChatView.show()\nreply = session.ask('Hi', view=view)\nprint('REPLY')",
]


def test_the_reopened_turn_keeps_its_tex_as_text(lab_notebook, save_notebook, open_notebook, jupyter_lab):
    page = lab_notebook(CELLS, wait_for="text=REPLY", name="static_math.ipynb")
    page.wait_for_selector(".gx-chat .gx-footer")
    save_notebook("static_math.ipynb")
    jupyter_lab.shutdown_kernels()
    page = open_notebook("static_math.ipynb", kernel=True)   # trusted: Lab renders the saved HTML as it is
    page.wait_for_selector(".gx-fallback .gx-final")
    page.wait_for_selector(".control mjx-container", timeout=30_000)   # the control: Lab typesets text/html outputs
    fallback = page.locator(".gx-fallback")
    page.wait_for_timeout(1000)
    fallback.screenshot(path="/tmp/gptoss_static_math.png")
    assert fallback.locator("mjx-container").count() == 0
    text = fallback.text_content()
    assert "\\(\\color{red}{\\raise{3em}{LIFTED}}\\)" in text and "$\\color{red}{REASONED}$" in text, text
    assert fallback.locator("math").count() == 1   # the $$…$$ the lab renders itself, as MathML without the colour
    assert fallback.locator("[mathcolor], [style*='color']").count() == 0
