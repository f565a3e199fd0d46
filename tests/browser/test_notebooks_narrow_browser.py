"""The teaching notebooks' prose in a narrow window (400 px: a phone, or the notebook beside another panel): a
diagram, a Harmony layout or a table keeps its lines and scrolls sideways in its own box, each line starting in
sight; none wraps into noise (notebook 04's routing diagram did) or is cut off at the cell's edge with no box of its
own to scroll (notebook 02's tables, whose scroll bar was the whole cell's, under its last paragraph).

Screenshot: /tmp/gptoss_notebook_narrow.png (notebook 04's diagram at 400 px).
"""
from __future__ import annotations

import json
import shutil

import pytest

from tests.browser.conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))

# What a reader cannot read in one rendered Markdown cell: a block drawn in more lines than it has, a line of it that
# starts out of sight, and a part past the cell's visible width that no box of its own scrolls to.
_UNREADABLE = """cell => {
  const output = cell.querySelector(".jp-MarkdownOutput");
  const edge = output.getBoundingClientRect().left + output.clientLeft + output.clientWidth + 1;
  const scrolls = node => ["auto", "scroll"].includes(getComputedStyle(node).overflowX);
  const box = node => { for (let p = node; p && p !== output; p = p.parentElement) if (scrolls(p)) return p;
                        return null; };
  const problems = [];
  for (const pre of output.querySelectorAll("pre")) {
    const lines = pre.textContent.replace(/\\n$/, "").split("\\n");
    const drawn = Math.round(pre.clientHeight / parseFloat(getComputedStyle(pre).lineHeight));
    if (drawn !== lines.length) problems.push(`${lines.length} lines drawn as ${drawn}: ${lines[0].slice(0, 30)}`);
    const sight = pre.getBoundingClientRect().left + pre.clientLeft + pre.clientWidth;
    const texts = document.createTreeWalker(pre, NodeFilter.SHOW_TEXT);
    for (let text = texts.nextNode(); text; text = texts.nextNode()) {
      let offset = 0;
      for (const line of text.data.split("\\n")) {   // a line that starts past the box: the reader sees nothing there
        const first = document.createRange(), start = line.search(/\\S/);
        if (start >= 0) {
          first.setStart(text, offset + start);
          first.setEnd(text, offset + start + 1);
          if (first.getBoundingClientRect().left >= sight) problems.push(`starts out of sight: ${line.trim()}`);
        }
        offset += line.length + 1;
      }
    }
  }
  for (const node of output.querySelectorAll("*")) {
    const text = document.createRange();
    text.selectNodeContents(node);
    const past = Math.max(node.getBoundingClientRect().right, text.getBoundingClientRect().right) - edge;
    const scroller = box(node.parentElement), reached = scroller && scroller.getBoundingClientRect().right <= edge;
    if (past > 0 && !scrolls(node) && !reached)
      problems.push(`cut off by ${Math.ceil(past)} px: ${node.tagName} ${node.textContent.slice(0, 30)}`);
  }
  return problems;
}"""


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[n.stem for n in NOTEBOOKS])
def test_the_notebooks_prose_reads_whole_in_a_400_px_window(notebook, page, open_notebook, jupyter_lab) -> None:
    shutil.copy(notebook, jupyter_lab.root / notebook.name)
    page.set_viewport_size({"width": 400, "height": 900})
    open_notebook(notebook.name)
    markdown = sum(c["cell_type"] == "markdown" for c in json.loads(notebook.read_text())["cells"])
    page.wait_for_function("n => document.querySelectorAll('.jp-MarkdownCell .jp-MarkdownOutput').length === n",
                           arg=markdown)
    page.add_style_tag(content=".jp-Cell { content-visibility: visible !important; }")   # every cell laid out
    cells = page.locator(".jp-MarkdownCell")
    problems = [f"cell {i}: {p}" for i, found in enumerate(cells.evaluate_all(f"cells => cells.map({_UNREADABLE})"))
                for p in found]
    if notebook.name.startswith("04"):
        cells.first.screenshot(path="/tmp/gptoss_notebook_narrow.png")
    assert not problems, f"{notebook.name} at 400 px: {problems}"
