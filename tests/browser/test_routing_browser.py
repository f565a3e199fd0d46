"""RoutingView in real JupyterLab + Chromium: a 400-token × 36-layer × 128-expert record draws on
the canvas, hovering a cell shows its top-k experts, clicking a token opens its panel, the channel
filter dims other tokens, and tokens appended later arrive live."""
from __future__ import annotations

import pytest

DATA = """
import numpy as np
rng = np.random.default_rng(0)
n, L, k, E = 400, 36, 4, 128
experts = np.argsort(rng.random((n, L, E)), axis=-1)[..., :k]
weights = -np.sort(-rng.dirichlet(np.ones(k), (n, L)), axis=-1)
labels = ["system"] * 50 + ["user"] * 50 + ["analysis"] * 200 + ["final"] * 100
"""
SETUP = DATA + """
from gptoss_lab.routing import Routing
routing = Routing(rng.integers(1000, 100000, n), experts, weights, labels, num_experts=E)
routing.view()
"""
LIVE = """
import time
time.sleep(3)
for i in range(10):
    routing.append([1000 + i], experts[i:i + 1], weights[i:i + 1], ["final"])
"""
GUTTER, STRIP, CELL, ROW = 34, 6, 4, 8  # static/routing.js layout at 36 layers and the default zoom


def _color(e: int) -> tuple[int, int, int]:
    from gptoss_lab.routing import _expert_colormap

    return tuple(round(c * 255) for c in _expert_colormap(128)(e)[:3])


def _pixel(page, x: float, y: float) -> list[int]:
    return page.evaluate(
        """([x, y]) => { const c = document.querySelector('.gptoss-routing .gr-canvas');
        const d = window.devicePixelRatio || 1;
        return Array.from(c.getContext('2d').getImageData(Math.round(x * d), Math.round(y * d), 1, 1).data); }""",
        [x, y])


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_routing_view_draws_hovers_and_clicks(lab_notebook, theme):
    page = lab_notebook([SETUP, LIVE], wait_for=".gptoss-routing .gr-canvas", theme=theme, timeout=90)
    data: dict = {}
    exec(DATA, data)
    experts, weights = data["experts"], data["weights"]
    page.wait_for_selector(".gptoss-routing .gr-summary:has-text('410 tokens × 36 layers × top-4 of 128 experts')",
                           timeout=30_000)

    t, layer = 7, 20
    x, y = GUTTER + t * CELL + CELL / 2, STRIP + 2 + layer * ROW + ROW / 2
    r, g, b, a = _pixel(page, x, y)
    assert a == 255 and max(abs(p - q) for p, q in zip((r, g, b), _color(experts[t, layer, 0]))) <= 2

    canvas = page.locator(".gptoss-routing .gr-canvas")
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + x, box["y"] + y)
    tooltip = page.locator(".gptoss-routing .gr-tooltip")
    tooltip.wait_for(state="visible", timeout=5_000)
    text = tooltip.inner_text()
    assert f"#{t}" in text and f"layer {layer}" in text and "system" in text
    for rank in range(4):
        assert f"expert {experts[t, layer, rank]}" in text
    assert f"{weights[t, layer, 0]:.3f}"[:4] in text

    page.mouse.click(box["x"] + x, box["y"] + y)
    panel = page.locator(".gptoss-routing .gr-panel.gr-open")
    panel.wait_for(timeout=5_000)
    assert f"Token {t}" in panel.inner_text()
    assert page.locator(".gptoss-routing .gr-panel-layer").count() == 36
    last = page.locator(".gptoss-routing .gr-panel-table").inner_text()
    assert f"e{experts[t, 35, 0]} " in last

    loaded = page.evaluate("""() => { const c = document.querySelector('.gptoss-routing .gr-load');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let painted = 0; for (let i = 3; i < d.length; i += 4) painted += d[i] > 0; return painted; }""")
    assert loaded > 500  # the expert-load bars are drawn

    page.locator(".gptoss-routing select.gr-channel").select_option("user")
    page.wait_for_timeout(300)
    assert _pixel(page, x, y)[3] < 100  # token 7 is a system token: faded
    assert _pixel(page, GUTTER + 60 * CELL + CELL / 2, y)[3] == 255  # token 60 is a user token
    page.screenshot(path=f"/tmp/gptoss_lab-routing-view-{theme}.png")
