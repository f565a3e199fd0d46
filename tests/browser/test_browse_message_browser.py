"""What `%gptoss browse FOLDER` prints, as JupyterLab draws it in real Chromium: its lines break between words.

JupyterLab's output area breaks a line too long for it at any letter (`.jp-OutputArea-output pre { word-break:
break-all }`): the one-line message came out as "...documents in /srv/notes/field (2 Mark" / "down; 8 lines)...".
"""
from __future__ import annotations

import pytest

# Each character of the output's text with the top of the line it is drawn on
DRAWN = """(pre) => {
  const walker = document.createTreeWalker(pre, NodeFilter.SHOW_TEXT), range = document.createRange(), seen = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode())
    for (let i = 0; i < node.length; i++) {
      range.setStart(node, i); range.setEnd(node, i + 1);
      const rects = range.getClientRects();
      seen.push([node.data[i], rects.length ? rects[0].top : null]);
    }
  return seen;
}"""


def _split_words(drawn: list[list]) -> list[str]:
    """The words the drawing broke across two lines (a line that ends in neither a space nor a line break)."""
    text = "".join(c for c, _ in drawn)
    split = []
    for i in range(1, len(drawn)):
        (before, top0), (after, top1) = drawn[i - 1], drawn[i]
        if None in (top0, top1) or top1 <= top0 or before in " \n" or after in " \n":
            continue
        start, end = text.rfind(" ", 0, i) + 1, text.find(" ", i)
        split.append(text[start:end if end >= 0 else None])
    return split


@pytest.mark.parametrize("width", [900, 760])
def test_the_browse_message_breaks_between_words(page, lab_notebook, jupyter_lab, width):
    """At 900 and 760 px the message's lines end at spaces: no word is cut in two, and the folder's path is whole.
    (The path is given relative to the notebook, as the message then says it: a path longer than the output's width,
    such as pytest's absolute temporary folder, is broken by JupyterLab wherever it reaches the edge.)"""
    docs = "field_notes/barn_owls_of_the_western_marshes"
    (jupyter_lab.root / docs).mkdir(parents=True, exist_ok=True)
    (jupyter_lab.root / docs / "owls.md").write_text("# Owls\n\nBarn owls swallow mice whole.\n")
    (jupyter_lab.root / docs / "pellets.md").write_text("# Pellets\n\nOwls cough up the bones and fur.\n")
    page.set_viewport_size({"width": width, "height": 900})
    lab_notebook(["%load_ext gptoss_lab", f"%gptoss browse {docs}"],
                 wait_for=".jp-OutputArea-output pre:has-text('The browser reads')")
    pre = page.locator(".jp-OutputArea-output pre:has-text('The browser reads')")
    page.screenshot(path=f"/tmp/gptoss_browse_{width}.png")
    drawn = pre.evaluate(DRAWN)
    text = "".join(c for c, _ in drawn)
    assert f"in {docs} (" in " ".join(text.split()) and "2 documents" in text and "%%gptoss --tools browser" in text, text
    assert len({top for _, top in drawn}) > 1, "the message should need more than one line here"
    assert _split_words(drawn) == [], text


@pytest.mark.parametrize("width", [900, 760])
def test_status_and_load_messages_break_between_words_and_settings(page, lab_notebook, width):
    """`%gptoss status` ("... | max tok" / "ens: 2048 | ..." at 900 px) and the load's "Loading gpt-oss-tiny on cpu
    (...)" line break at spaces, a status's settings each whole on a line ("| timeout: 120 s", not "time" / "out")."""
    page.set_viewport_size({"width": width, "height": 900})
    lab_notebook(["%load_ext gptoss_lab", "%gptoss config temperature=0.5 seed=3", "%gptoss load tiny",
                  "%gptoss status"], wait_for=".jp-OutputArea-output pre:has-text('turns: 0')", timeout=180)
    page.screenshot(path=f"/tmp/gptoss_status_{width}.png")
    said = {}
    for pre in page.locator(".jp-OutputArea-output pre").all():
        drawn = pre.evaluate(DRAWN)
        said["".join(c for c, _ in drawn)] = drawn
    status = next(text for text in said if text.startswith("model: gpt-oss-tiny"))
    waiting = next(text for text in said if text.startswith("No model loaded"))
    loading = next(text for text in said if "Loading gpt-oss-tiny on cpu" in text)
    assert "| temperature: 0.5 | seed: 3 | turns: 0" in " ".join(status.split()), status
    assert "The next model starts with effort: medium | approve: ask" in " ".join(waiting.split()), waiting
    for text in (status, waiting, loading):
        assert _split_words(said[text]) == [], text
    # each setting of the status whole on a line: a line break only before a " | " separator
    assert all(line.startswith(("model: ", "| ")) for line in status.splitlines()), status
    assert len({top for _, top in said[status]}) > 1, "the status should need more than one line here"
