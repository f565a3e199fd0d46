"""A saved notebook reads well everywhere: the chat view writes its finished turn into the file as a static
transcript (text/html, text/markdown, text/plain) instead of a widget reference, so the notebook reopened
in JupyterLab or Notebook 7 without the session, and nbconvert's HTML, show prompt, foldable reasoning,
padded tool cards, the answer and the stats, with no "Error displaying widget" box and no placeholder.

Screenshots: /tmp/gptoss_saved_lab.png (trusted), /tmp/gptoss_saved_nb7.png (untrusted: the front end
sanitises and drops our <style>, as GitHub does), /tmp/gptoss_saved_nbconvert.png,
/tmp/gptoss_saved_nbconvert_sanitized.png (nbconvert's sanitize_html).
"""
from __future__ import annotations

import json

RECORDING = (
    "<|channel|>analysis<|message|>The user wants the sum of squares below 10.\nI will compute it.<|end|>"
    "<|start|>assistant to=python<|channel|>analysis<|message|>print(sum(i * i for i in range(10)))<|call|>"
    "<|channel|>final<|message|>The sum is **285**, by $\\sum_{i=0}^{9} i^2$.\n\n```\nprint(285)\n```<|return|>"
)
WIDGET = "application/vnd.jupyter.widget-view+json"
PLACEHOLDERS = ("Error displaying widget", "chat view", "transcript follows", "Loading widget")


def _cells() -> list[str]:
    return [
        "from gptoss_lab import Session, ReplayEngine\nfrom gptoss_lab.widgets.chat import ChatView\n"
        f"session = Session(ReplayEngine({RECORDING!r}), approval='auto')",
        "reply = session.ask('Sum of the squares below 10?', view=ChatView.show())",
        "print('REPLY', reply.final)",
    ]


def _check_transcript(page, where: str, mathml: bool = True) -> None:
    """What a reader of the saved notebook must see, wherever it is shown."""
    body = page.locator("body").inner_text()
    for placeholder in PLACEHOLDERS:
        assert placeholder not in body, f"{where}: {placeholder!r} shown"
    turn = page.locator(".gx-fallback")
    assert turn.count() == 1, where
    assert "Sum of the squares below 10?" in turn.locator(".gx-prompt").inner_text()
    reasoning = turn.locator("details.gx-reasoning")
    assert reasoning.count() == 1 and not reasoning.evaluate("d => d.open")       # folded ...
    reasoning.locator("summary").click()
    assert "I will compute it." in reasoning.inner_text()                         # ... and it unfolds
    card = turn.locator("table.gx-tool")
    assert "print(sum(i * i for i in range(10)))" in card.locator(".gx-code").inner_text()
    assert card.locator(".gx-output").inner_text().strip() == "285"
    padding = card.locator("td").first.evaluate("td => parseFloat(getComputedStyle(td).paddingLeft)")
    assert padding >= 4, f"{where}: tool card padding {padding}px"                # code not against the border
    assert turn.locator(".gx-final strong").inner_text() == "285"
    assert turn.locator(".gx-final math").count() == (1 if mathml else 0)   # sanitisers without MathML drop it
    # ... and then the formula's TeX follows its text ("∑i=09i2" alone meant nothing), shown once where MathML is not
    assert turn.locator(".gx-final").inner_text().count(r"\sum_{i=0}^{9} i^2") == (0 if mathml else 1), where
    assert "tok/s" in turn.locator(".gx-footer").inner_text()


TRANSPARENT = "rgba(0, 0, 0, 0)"
BACKGROUNDS = "nodes => nodes.map(n => getComputedStyle(n).backgroundColor)"


def _check_card_style(page, where: str) -> None:
    """Where our style applies (a trusted notebook, nbconvert), the front end's table and code rules do not
    restyle the transcript: the tool card's rows are neither striped nor tinted under the pointer, its code and
    output sit on the card itself (no box of the page colour inside it), and a code block in the answer has its
    own background, as in the live view."""
    card = page.locator(".gx-fallback table.gx-tool")
    rows = card.locator("tbody tr")
    assert rows.evaluate_all(BACKGROUNDS) == [TRANSPARENT] * rows.count(), where
    rows.first.hover()
    assert rows.evaluate_all(BACKGROUNDS) == [TRANSPARENT] * rows.count(), f"{where}: card tinted under the pointer"
    assert card.locator("pre").evaluate_all(BACKGROUNDS) == [TRANSPARENT] * 2, where
    # lines wrap at spaces, as in the live card (JupyterLab's outputs break words anywhere: "an / d may still be")
    assert card.locator("pre").evaluate_all("ns => ns.map(n => getComputedStyle(n).wordBreak)") == ["normal"] * 2, where
    code = page.locator(".gx-fallback .gx-final pre")
    assert code.inner_text().strip() == "print(285)"
    assert code.evaluate("n => getComputedStyle(n).backgroundColor") not in (TRANSPARENT, page.evaluate(
        "() => getComputedStyle(document.querySelector('.gx-fallback').closest('.jp-OutputArea-output')"
        " || document.body).backgroundColor")), f"{where}: the answer's code block has no background"
    assert code.locator("code").evaluate("n => getComputedStyle(n).backgroundColor") == TRANSPARENT, where


def test_saved_notebook_reads_well_in_lab_notebook7_and_nbconvert(lab_notebook, open_notebook, save_notebook,
                                                                  jupyter_lab):
    page = lab_notebook(_cells(), wait_for="text=/^REPLY /", name="saved.ipynb")
    page.wait_for_selector(".gx-chat .gx-footer")
    saved = save_notebook("saved.ipynb")
    outputs = saved["cells"][1]["outputs"]
    assert [WIDGET in o.get("data", {}) for o in outputs] == [False]               # no widget reference saved
    data = outputs[0]["data"]
    assert {"text/html", "text/markdown", "text/plain"} <= set(data)
    assert "The sum is **285**" in "".join(data["text/markdown"])
    assert not any(p in json.dumps(saved) for p in PLACEHOLDERS)
    assert "widgets" not in saved["metadata"]                                      # no widget state needed
    assert page.locator(".gx-chat .gx-final strong").inner_text() == "285"         # the live view stays live
    assert "sum_" not in page.locator(".gx-chat .gx-final").inner_text()           # its formula drawn, not its TeX
    again = save_notebook("saved.ipynb")                        # and a second save is the same
    assert again["cells"][1]["outputs"] == outputs

    jupyter_lab.shutdown_kernels()
    # A copy edited elsewhere is not trusted: the front end then sanitises the HTML itself and drops
    # our <style>, as GitHub does; the transcript must still read well.
    saved["cells"][0]["source"] = "# edited by someone else\n" + "".join(saved["cells"][0]["source"])
    (jupyter_lab.root / "saved_nb7.ipynb").write_text(json.dumps(saved))
    open_notebook("saved.ipynb")
    page.wait_for_selector(".gx-fallback")
    _check_transcript(page, "JupyterLab")
    _check_card_style(page, "JupyterLab")
    page.screenshot(path="/tmp/gptoss_saved_lab.png")

    open_notebook("saved_nb7.ipynb", ui="notebook")
    page.wait_for_selector(".gx-fallback")
    assert page.get_by_text("Not Trusted").count() == 1
    _check_transcript(page, "Notebook 7", mathml=False)
    page.screenshot(path="/tmp/gptoss_saved_nb7.png")

    from nbconvert import HTMLExporter

    html, _ = HTMLExporter().from_filename(str(jupyter_lab.root / "saved.ipynb"))
    export = jupyter_lab.root / "saved.html"
    export.write_text(html)
    page.goto(export.as_uri())
    _check_transcript(page, "nbconvert")
    _check_card_style(page, "nbconvert")
    page.screenshot(path="/tmp/gptoss_saved_nbconvert.png", full_page=True)

    # nbconvert's sanitize_html keeps classes but no style: the card's code and output still read from the left
    html, _ = HTMLExporter(sanitize_html=True).from_filename(str(jupyter_lab.root / "saved.ipynb"))
    export.write_text(html)
    page.goto(export.as_uri())
    card = page.locator("table.gx-tool")
    assert card.locator("pre").evaluate_all("ns => ns.map(n => getComputedStyle(n).textAlign)") == ["left"] * 2
    assert "print(sum(i * i for i in range(10)))" in card.inner_text()
    page.screenshot(path="/tmp/gptoss_saved_nbconvert_sanitized.png", full_page=True)


ROUTING = """
import numpy as np
from gptoss_lab import harmony
from gptoss_lab.routing import Routing
ids = harmony.encode_text("The sum of the squares below ten is 285.")
experts = np.stack([np.arange(len(ids)) % 4, (np.arange(len(ids)) + 1) % 4], -1)[:, None].repeat(2, 1)
routing = Routing(ids, experts, np.full((len(ids), 2, 2), 0.5), ["final"] * len(ids), num_experts=4)
routing.view()
"""


def test_a_saved_routing_view_reopens_as_its_picture(lab_notebook, open_notebook, save_notebook, jupyter_lab):
    """The routing view's output holds the widget and, beside it, a picture of the grid and load: saved, it keeps
    only the picture (and its summary), so the notebook reopened without the kernel shows the picture, not
    "Error displaying widget: model not found" (JupyterLab and Notebook 7 draw a widget reference over any other
    data of its output). The live view stays live. Screenshot: /tmp/gptoss_saved_routing.png."""
    page = lab_notebook([ROUTING], wait_for=".gptoss-routing[data-draw-ms]", name="routing_saved.ipynb")
    saved = save_notebook("routing_saved.ipynb")
    data = [o["data"] for o in saved["cells"][0]["outputs"] if "data" in o]
    assert len(data) == 1 and WIDGET not in data[0]                                # no widget reference saved
    assert "image/png" in data[0] and "tokens" in "".join(data[0]["text/plain"])
    assert page.locator(".gptoss-routing canvas.gr-canvas").count() == 1           # the live view stays
    jupyter_lab.shutdown_kernels()
    for ui in ("lab", "notebook"):
        open_notebook("routing_saved.ipynb", ui=ui)
        picture = page.locator(".jp-OutputArea-output img")
        picture.wait_for(timeout=30_000)
        assert picture.evaluate("img => img.naturalWidth > 200")
        body = page.locator("body").inner_text()
        assert not any(p in body for p in PLACEHOLDERS), ui
        if ui == "lab":
            page.screenshot(path="/tmp/gptoss_saved_routing.png")
