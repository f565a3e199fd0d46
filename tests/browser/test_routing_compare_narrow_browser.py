"""A routing comparison in a narrow notebook (400 px): its table of experts keeps one row a line and scrolls
sideways; as plain text, JupyterLab wrapped each row in two ("layer  3 expert   4:  17.6% vs  4" / "6.6%"),
notebook 04's comparison read as noise."""
from __future__ import annotations

COMPARE = """
import numpy as np
from gptoss_lab import harmony
from gptoss_lab.routing import Routing

def record(shift):
    ids = harmony.encode_text("The sum of the squares below ten is 285.")
    experts = np.stack([(np.arange(len(ids)) + shift) % 8, (np.arange(len(ids)) + 1) % 8], -1)[:, None].repeat(4, 1)
    return Routing(ids, experts, np.full((len(ids), 4, 2), 0.5), ["final"] * len(ids), num_experts=8)

record(0).compare(record(3), top=5)
"""


def test_a_comparison_keeps_its_rows_in_a_400_px_notebook(page, lab_notebook) -> None:
    page.set_viewport_size({"width": 400, "height": 900})
    page = lab_notebook([COMPARE], wait_for="text=/Jensen/", name="compare_narrow.ipynb")
    shown = page.locator(".jp-OutputArea-output").filter(has_text="Jensen")
    lines, drawn = shown.evaluate("""out => { const pre = out.querySelector("pre");
      return [pre.textContent.trim().split("\\n").length,
              Math.round(pre.clientHeight / parseFloat(getComputedStyle(pre).lineHeight))]; }""")
    assert lines == 6 and drawn == lines, (lines, drawn, shown.inner_text())
    assert shown.inner_text().strip().splitlines()[1].strip().startswith("layer"), shown.inner_text()
