"""RoutingView in real JupyterLab + Chromium with gate weights no router should give: they show as themselves."""
from __future__ import annotations

from tests.browser.conftest import in_sight

BROKEN = """
import numpy as np
from gptoss_lab.routing import Routing
weights = np.array([[[np.nan, 0.25], [0.5, np.inf]], [[7.5, 0.25], [0.5, 0.5]]], np.float32)
routing = Routing([11, 12], np.array([[[1, 2], [3, 0]]] * 2), weights, ["final"] * 2, num_experts=4)
view = routing.view()
view.selected = 0
view
"""


def test_a_nan_gate_weight_shows_as_nan_in_the_token_panel(lab_notebook):
    """The live view carried weights as 16-bit fixed point, so a broken router's NaN showed as a plausible 0.000,
    infinity and 7.5 as 1.000 (saving such a record is refused; the view is what the researcher looks at)."""
    page = lab_notebook([BROKEN], wait_for=".gptoss-routing .gr-panel.gr-open", timeout=60)
    picks = page.locator(".gptoss-routing .gr-panel .gr-pick-text").all_inner_texts()
    assert picks == ["e1 NaN", "e2 0.250", "e3 0.500", "e0 Infinity"], picks

PROTOTYPE = """
import numpy as np
from gptoss_lab.routing import Routing
routing = Routing([11, 12, 13], np.zeros((3, 2, 1), int), np.ones((3, 2, 1)), ["constructor", "__proto__", "final"],
                  num_experts=2)
routing.view()
"""


def test_labels_named_like_javascript_object_keys_get_the_unknown_labels_colour(lab_notebook):
    """A label "constructor" or "__proto__" (any text is a label: a file's, a corpus's) looked its colour up in a plain
    object and found Object's own members: its channel strip was drawn black and its legend swatch had no colour."""
    page = lab_notebook([PROTOTYPE], wait_for=".gptoss-routing[data-draw-ms]", timeout=60)
    strip = page.evaluate("""() => { const c = document.querySelector('.gptoss-routing .gr-canvas');
        const d = window.devicePixelRatio || 1, ctx = c.getContext('2d');  // the middle of each token's strip
        const at = (t) => ctx.getImageData(Math.round((48 + 32 * t + 16) * d), Math.round(4 * d), 1, 1).data;
        return [0, 1, 2].map((t) => Array.from(at(t))); }""")
    assert strip == [[153, 153, 153, 255], [153, 153, 153, 255], [77, 138, 79, 255]], strip  # final: #4d8a4f
    swatches = page.locator(".gptoss-routing .gr-legend .gr-legend-item .gr-swatch").evaluate_all(
        "nodes => nodes.slice(0, 3).map((n) => n.style.background)")
    assert swatches == ["rgb(153, 153, 153)", "rgb(153, 153, 153)", "rgb(77, 138, 79)"], swatches

TOP0 = """
import numpy as np
from gptoss_lab.routing import Routing
Routing([11, 12], np.zeros((2, 3, 0), int), np.zeros((2, 3, 0)), ["final"] * 2, num_experts=4).view()
"""


def test_a_record_of_top_0_draws_empty_cells_not_black_ones(lab_notebook):
    """A record of top-0 (hand-made, or a file's) has no pick to colour a cell with: the grid read past its data and
    drew every cell black, a colour no expert has."""
    page = lab_notebook([TOP0], wait_for=".gptoss-routing[data-draw-ms]", timeout=60)
    cells = page.evaluate("""() => { const c = document.querySelector('.gptoss-routing .gr-canvas');
        const d = window.devicePixelRatio || 1, ctx = c.getContext('2d');  // token t, layer 1 (rows of 16 px)
        const at = (t) => ctx.getImageData(Math.round((48 + 32 * t + 16) * d), Math.round(35 * d), 1, 1).data;
        return [0, 1].map((t) => Array.from(at(t))); }""")
    assert cells == [[150, 150, 150, 255]] * 2, cells  # the grey of an empty slot

MANY = """
import numpy as np
from gptoss_lab.routing import Routing
ids = (32767 - np.arange(12_000)).reshape(3000, 1, 4).repeat(2, axis=1)  # experts 20768..32767, once each a layer
routing = Routing(np.arange(1, 3001), ids, np.full((3000, 2, 4), 0.25), ["final"] * 3000, num_experts=32768)
view = routing.view()
view.layer = 0
view
"""


def test_shares_among_32768_experts_are_not_all_0_percent(page, lab_notebook):
    """Among 32,768 experts a share is a few thousandths of a percent: the load axis was topped "0.0%" and every
    expert card said "0.0% of the layer". Its expert ids, one every 1,000, ran together ("1000011000120001300...")."""
    page.add_init_script("""{ const fill = CanvasRenderingContext2D.prototype.fillText; window.__texts = [];
        window.__loadTicks = [];   // [x, width] of each centred number on the load axis, the last drawing's
        CanvasRenderingContext2D.prototype.fillText = function (text, ...rest) { window.__texts.push(String(text));
        if (this.canvas.classList.contains('gr-load') && this.textAlign === 'right') window.__loadTicks = [];
        else if (this.canvas.classList.contains('gr-load') && /^[0-9]+$/.test(text))
          window.__loadTicks.push([rest[0], this.measureText(String(text)).width]);
        return fill.call(this, text, ...rest); }; }""")
    page = lab_notebook([MANY], wait_for=".gptoss-routing[data-draw-ms]", timeout=90)
    assert "0.0083%" in page.evaluate("() => window.__texts")  # 1 pick of 12,000: the top of the load axis
    ticks = page.evaluate("() => window.__loadTicks")
    assert len(ticks) >= 3 and all(x + w / 2 + 4 <= after - v / 2 for (x, w), (after, v) in zip(ticks, ticks[1:])), ticks
    box = in_sight(page.locator(".gptoss-routing .gr-load")).bounding_box()   # below the grid: maybe off screen
    page.mouse.click(box["x"] + box["width"] - 8, box["y"] + 60)  # a bar near the right end: an expert chosen once
    card = page.locator(".gptoss-routing .gr-card.gr-open .gr-panel-title")
    page.wait_for_function("() => /of the layer/.test(document.querySelector('.gptoss-routing .gr-card').innerText)",
                           timeout=20_000)
    assert "1 pick · 0.0083% of the layer" in card.inner_text(), card.inner_text()


SMALL = """
import numpy as np
from gptoss_lab.routing import Routing
ids = np.stack([np.arange(40) % 4, (np.arange(40) + 1) % 4], -1)[:, None].repeat(3, 1)
routing = Routing(np.arange(1, 41), ids, np.full((40, 3, 2), 0.5), ["final"] * 40, num_experts=4)
routing.view()
"""


def test_a_bar_clicked_with_all_layers_shown_says_to_choose_a_layer(lab_notebook):
    """With "all layers" the hint above the bars promised a card on a click, and the click gave "Expert 2 · layer -1"
    (no such layer): the hint says to choose a layer, and the click says a card is of one layer, then opens on one."""
    page = lab_notebook([SMALL], wait_for=".gptoss-routing[data-draw-ms]", timeout=60)
    hint = page.locator(".gptoss-routing .gr-load-head .gr-hint")
    assert hint.inner_text() == "choose a layer (right) for experts' cards"
    box = in_sight(page.locator(".gptoss-routing .gr-load")).bounding_box()   # below the grid: maybe off screen
    page.mouse.click(box["x"] + 48 + (box["width"] - 48) * 0.6, box["y"] + box["height"] - 12)
    title = page.locator(".gptoss-routing .gr-card.gr-open .gr-panel-title")
    title.wait_for(timeout=10_000)
    assert "layer -1" not in title.inner_text() and "all layers" in title.inner_text(), title.inner_text()
    assert "an expert's card is of one layer: choose it" in title.inner_text()
    page.locator(".gptoss-routing select.gr-layer").select_option("1")
    page.wait_for_function("() => document.querySelector('.gptoss-routing .gr-load-head .gr-hint').innerText"
                           " === \"click a bar for the expert's card\"", timeout=10_000)


SELECTED = """
import numpy as np
from gptoss_lab.routing import Routing
ids = np.stack([np.arange(400) % 8, (np.arange(400) + 3) % 8], -1)[:, None].repeat(2, 1)
routing = Routing(np.arange(1, 401), ids, np.full((400, 2, 2), 0.5), ["system"] * 200 + ["final"] * 200, num_experts=8)
view = routing.view()
view.selected = 363
view
"""


def test_zooming_with_the_slider_keeps_the_selected_token_in_view(lab_notebook):
    """The slider zoomed about the middle of the record: with token 363 selected, full zoom showed tokens far from it
    (faded ones of another channel). It zooms about the selected token, which stays in view."""
    page = lab_notebook([SELECTED], wait_for=".gptoss-routing[data-draw-ms]", timeout=60)
    page.locator(".gptoss-routing input.gr-zoom").evaluate(
        "r => { r.value = '1000'; r.dispatchEvent(new Event('input', { bubbles: true })); }")
    first, last = page.evaluate("""() => { const s = document.querySelector('.gptoss-routing .gr-scroll');
        const w = document.querySelector('.gptoss-routing .gr-scroll-spacer').offsetWidth / 400;
        return [s.scrollLeft / w, (s.scrollLeft + s.clientWidth) / w]; }""")
    assert last - first < 100 and first <= 363 <= last, (first, last)


TEX_LABEL = """
import numpy as np
from gptoss_lab.routing import Routing
routing = Routing([11, 12], np.zeros((2, 1, 1), int), np.ones((2, 1, 1)), ["$\\\\color{red}{x}$", "a"], num_experts=1)
routing.label_load()
"""


def test_an_analysis_table_shows_a_label_as_written_not_typeset(lab_notebook):
    """An analysis table (a DataFrame as text/html) of a label "$\\color{red}{x}$" (any text is a label: a corpus's,
    a file's) was typeset by Lab's MathJax: its row was named by a red x."""
    page = lab_notebook([TEX_LABEL], wait_for="table.dataframe", timeout=60)
    table = page.locator("table.dataframe")
    page.wait_for_timeout(1500)   # MathJax typesets a moment after the output is drawn
    table.screenshot(path="/tmp/gptoss_routing_table_label.png")
    assert page.locator(".jp-OutputArea-output mjx-container").count() == 0
    assert "$\\color{red}{x}$" in table.inner_text(), table.inner_text()


TEX_FRAME = """
import numpy as np
from gptoss_lab.routing import Routing
routing = Routing([11, 12], np.zeros((2, 1, 1), int), np.ones((2, 1, 1)), ["$\\\\color{red}{x}$", "a"], num_experts=1)
frame = routing.to_frame()
frame[frame.layer == 0]
"""


def test_a_slice_of_the_tidy_frame_shows_a_label_as_written_not_typeset(lab_notebook):
    """`to_frame()` and what pandas made of it were plain DataFrames: Lab's MathJax typeset a label
    "$\\color{red}{x}$" in them as a red x."""
    page = lab_notebook([TEX_FRAME], wait_for="table.dataframe", timeout=60)
    table = page.locator("table.dataframe")
    page.wait_for_timeout(1500)   # MathJax typesets a moment after the output is drawn
    assert page.locator(".jp-OutputArea-output mjx-container").count() == 0
    assert "$\\color{red}{x}$" in table.inner_text(), table.inner_text()
