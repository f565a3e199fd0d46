"""The chat widget in real JupyterLab (and Notebook 7) + Chromium: a ReplayEngine session streams through
ChatView.

Checks what a user sees and what their clicks do while the cell is still running: Run executes the
approved code, Skip skips it, Stop ends the turn with the partial reply kept, the kernel reads busy from
the first to the last token, Stop ends a user function that runs, and the chat controls (timer, live tokens/s, Edit, Always allow, Copy,
Insert as cell, context meter, Regenerate, New chat) work.
Screenshots: /tmp/gptoss_chat_light.png, /tmp/gptoss_chat_dark.png, /tmp/gptoss_chat_tiny.png,
/tmp/gptoss_chat_approval.png, /tmp/gptoss_chat_controls.png, /tmp/gptoss_chat_keyboard.png,
/tmp/gptoss_chat_math.png, /tmp/gptoss_chat_saved_narrow.png, /tmp/gptoss_chat_stop_function.png,
/tmp/gptoss_chat_wide_line.png.
"""
from __future__ import annotations

import re
import time

import pytest

from gptoss_lab.widgets.chat import ChatView
from tests.browser.conftest import crafted_notebook, in_sight

pytestmark = pytest.mark.shared_page   # each test opens its own notebook in the JupyterLab page the one before left

RECORDING = (
    "<|channel|>analysis<|message|>The user asks for the sum of squares below 10. "
    "I will compute it with Python to be sure.<|end|>"
    "<|start|>assistant to=python<|channel|>analysis<|message|>print(sum(i * i for i in range(10)))<|call|>"
    "<|channel|>analysis<|message|>The tool answered; now I can reply.<|end|>"
    "<|start|>assistant<|channel|>final<|message|>The sum is **285**.\n\n"
    "- squares: `0, 1, 4, ..., 81`\n- closed form: $\\frac{n(n+1)(2n+1)}{6}$\n\n"
    "$$\\sum_{i=0}^{9} i^2 = 285$$\n<|return|>"
)
LONG = ("<|channel|>analysis<|message|>" + " ".join(f"thought{i}" for i in range(400)) + "<|end|>"
        "<|start|>assistant<|channel|>final<|message|>Done.<|return|>")
CONTROLS = (
    "<|channel|>analysis<|message|>" + " ".join(f"step{i}" for i in range(40)) + "<|end|>"
    "<|start|>assistant to=python<|channel|>analysis<|message|>x = 6 * 7\nprint(x)<|call|>"
    "<|start|>assistant to=python<|channel|>analysis<|message|>print(x + 1)<|call|>"
    "<|channel|>final<|message|>It is **48**.<|return|>"
    "<|channel|>final<|message|>A regenerated answer.<|return|>"
)


def _cells(recording: str, approval: str, delay: float) -> list[str]:
    return [
        "from gptoss_lab import Session, ReplayEngine\nfrom gptoss_lab.widgets.chat import ChatView\n"
        f"session = Session(ReplayEngine({recording!r}, delay={delay}), approval={approval!r})",
        "reply = session.ask('What is the sum of the squares below 10?', view=ChatView.show())",
        "print('REPLY', reply.interrupted, [c.status for c in reply.tool_calls], len(reply.final),"
        " len(reply.analysis))",
    ]


def _reply_line(page) -> str:
    page.wait_for_selector("text=/^REPLY /", timeout=30_000)
    return in_sight(page.locator("text=/^REPLY /")).inner_text()     # the cell below the chat: maybe off screen


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
    assert reasoning.evaluate_all("nodes => nodes.map(n => n.open)") == [True, True]  # left to the reader to fold
    assert re.match(r"Thought for (under 0\.1|\d+\.\d) s · \d+ tokens", reasoning.first.locator("summary").inner_text())
    assert "0.0 s" not in reasoning.first.locator("summary").inner_text()
    assert "unfiltered" in reasoning.first.locator(".gx-note").text_content()
    assert page.locator(".gx-chat .gx-note").count() == 1       # the disclaimer once, not under each block
    final = page.locator(".gx-chat .gx-final")
    assert final.locator("strong").inner_text() == "285"         # Markdown rendered, not shown raw
    assert final.locator("li").count() == 2 and final.locator("math").count() == 2
    assert "tok/s" in page.locator(".gx-chat .gx-footer").inner_text()
    assert page.locator(".gx-stop").count() == 0                 # the turn is over
    assert _reply_line(page).startswith("REPLY False ['done'] ")
    page.screenshot(path="/tmp/gptoss_chat_light.png", full_page=True)


def test_skip_skips_the_call(lab_notebook):
    """Skip: the call does not run, and its card says so in the user's words ("Skipped by you"), not in the sentence
    written for the model ("Not run: the user chose not to run this call. Answer without it, and say so.")."""
    page = lab_notebook(_cells(RECORDING, "ask", 0.005), wait_for=".gx-skip", theme="dark")
    page.locator(".gx-skip").click()
    page.wait_for_selector(".gx-tool[data-status='skipped']", timeout=30_000)
    page.wait_for_selector(".gx-footer", timeout=30_000)
    assert "['skipped']" in _reply_line(page)
    assert page.locator(".gx-chat .gx-output").inner_text() == "Skipped by you"
    page.screenshot(path="/tmp/gptoss_chat_dark.png", full_page=True)


def test_stop_ends_the_turn_and_keeps_the_partial_reasoning(lab_notebook):
    page = lab_notebook(_cells(LONG, "auto", 0.02), wait_for=".gx-reasoning")
    page.wait_for_function("() => document.querySelector('.gx-reasoning-text').innerText.includes('thought20')")
    assert page.locator(".gx-reasoning .gx-label").inner_text().startswith("Thinking…")
    page.locator(".gx-stop").click()
    page.wait_for_selector(".gx-footer", timeout=30_000)
    line = _reply_line(page)
    assert line.startswith("REPLY True [] 0 ")
    kept = int(line.rsplit(" ", 1)[1])
    assert 0 < kept < len(" ".join(f"thought{i}" for i in range(400)))
    assert "Stopped" in page.locator(".gx-chat .gx-notice").inner_text()
    label = page.locator(".gx-reasoning .gx-label").inner_text()
    assert label.startswith("Thought for") and "Thinking" not in label   # not left "Thinking…" after Stop


STATUSES = (
    "<|start|>assistant to=python<|channel|>analysis<|message|>1 / 0<|call|>"
    "<|start|>assistant to=python<|channel|>analysis<|message|>print(2)<|call|>"
    "<|channel|>final<|message|>Done.<|return|>"
)
# WCAG contrast of an element's text against what is painted behind it (semi-transparent colours composited;
# the canvas turns any CSS colour, color-mix() included, into sRGB bytes).
# The contrast of `node`'s text with what is under it: its and its ancestors' backgrounds, and, given `under` (a
# selector in its parent), that element's background at its opacity (a bar drawn behind the text)
CONTRAST = """(node, under) => {
  const ctx = document.createElement('canvas').getContext('2d', { willReadFrequently: true });
  const rgba = (css) => { ctx.clearRect(0, 0, 1, 1); ctx.fillStyle = '#000'; ctx.fillStyle = css; ctx.fillRect(0, 0, 1, 1);
    const d = ctx.getImageData(0, 0, 1, 1).data; return [d[0], d[1], d[2], d[3] / 255]; };
  const over = (top, below) => top.slice(0, 3).map((c, i) => top[3] * c + (1 - top[3]) * below[i]);
  const layers = [];
  for (let n = node; n; n = n.parentElement) {
    const c = rgba(getComputedStyle(n).backgroundColor);
    if (c[3] > 0) layers.push(c);
    if (c[3] === 1) break;
  }
  let bg = [255, 255, 255];
  for (const layer of layers.reverse()) bg = over(layer, bg);
  const bar = typeof under === "string" && node.parentElement.querySelector(under);   // not map()'s index
  if (bar) { const c = rgba(getComputedStyle(bar).backgroundColor); c[3] *= parseFloat(getComputedStyle(bar).opacity); bg = over(c, bg); }
  const ink = rgba(getComputedStyle(node).color);   // faded by its own and its boxes' opacity, into what is under it
  for (let n = node; n; n = n.parentElement) ink[3] *= parseFloat(getComputedStyle(n).opacity);
  const fg = over(ink, bg);
  const lum = (c) => { const [r, g, b] = c.map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
  return (a + 0.05) / (b + 0.05);
}"""


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_tool_status_reads_at_4_5_to_1_in_light_and_dark(lab_notebook, theme):
    """A card's status ("waiting for approval", "error", "done") is small text on the card's grey head: it must
    read at WCAG AA (4.5:1), not at the 2.3:1 of the theme's orange (light) or 2.7:1 of its red (dark)."""
    page = lab_notebook(_cells(STATUSES, "ask", 0.005), wait_for=".gx-tool[data-status='waiting'] .gx-run", theme=theme)
    seen = {}
    for status in ("waiting", "error", "waiting", "done"):
        card = page.locator(f".gx-chat .gx-tool[data-status='{status}']").first
        card.wait_for(timeout=30_000)
        seen[status] = round(card.locator(".gx-status").evaluate(CONTRAST), 2)
        if status == "waiting":
            card.locator(".gx-run").click()
    page.wait_for_selector(".gx-chat .gx-footer", timeout=30_000)
    assert all(ratio >= 4.5 for ratio in seen.values()), seen


def test_footer_buttons_stay_together_in_a_narrow_notebook(lab_notebook):
    """Where the footer wraps (a notebook 400-800 px wide), Regenerate and New chat wrap as one group at the
    right, never Regenerate at the end of the stats line and New chat alone at the next line's left."""
    page = lab_notebook([
        "from gptoss_lab import Session, ReplayEngine\nfrom gptoss_lab.widgets.chat import ChatView\n"
        f"session = Session(ReplayEngine({RECORDING!r}), approval='auto')",
        "reply = session.ask('What is the sum of the squares below 10?', view=ChatView.show().connect(session))",
    ], wait_for=".gx-chat .gx-footer .gx-new-chat")
    footer = page.locator(".gx-chat .gx-footer")
    apart, wrapped = [], 0
    for width in range(800, 399, -10):
        page.set_viewport_size({"width": width, "height": 900})
        _settle(page, footer)  # JupyterLab lays the notebook out again a frame or more after a resize
        stats, again, fresh = (footer.locator(s).bounding_box() for s in (".gx-stats", ".gx-regenerate", ".gx-new-chat"))
        box = footer.bounding_box()
        wrapped += fresh["y"] > stats["y"] + 2
        if abs(again["y"] - fresh["y"]) >= 2 or abs(fresh["x"] + fresh["width"] - box["x"] - box["width"]) >= 2:
            apart.append(width)
            footer.screenshot(path="/tmp/gptoss_chat_footer_narrow.png")
    assert wrapped, "the footer never wrapped: the test needs narrower pages"
    assert apart == [], f"Regenerate and New chat apart, or not at the right, at widths {apart}"


def _settle(page, locator, frames: int = 3) -> None:
    """Wait until `locator`'s layout has stayed the same for `frames` animation frames (at most ~2 s)."""
    last, still = None, 0
    for _ in range(120):
        page.evaluate("() => new Promise(done => requestAnimationFrame(() => done()))")
        box = (locator.bounding_box(), locator.evaluate("node => node.innerText.length"),
               [locator.locator(s).bounding_box() for s in (".gx-regenerate", ".gx-new-chat")])
        still = still + 1 if box == last else 0
        if still >= frames:
            return
        last = box


STALLED_SERVER = """
import json, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Stalled(BaseHTTPRequestHandler):  # an OpenAI-compatible server that says a few words, then goes silent
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        body = json.dumps({"object": "list", "data": [{"id": "stalled", "object": "model"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        text = "<|channel|>analysis<|message|>Let me think about this carefully"
        self.wfile.write(b"data: " + json.dumps({"choices": [{"index": 0, "text": text}]}).encode() + b"\\n\\n")
        self.wfile.flush()
        time.sleep(300)

server = ThreadingHTTPServer(("127.0.0.1", 0), Stalled)
threading.Thread(target=server.serve_forever, daemon=True).start()
from gptoss_lab import Session
from gptoss_lab.widgets.chat import ChatView
session = Session.connect(f"http://127.0.0.1:{server.server_address[1]}", timeout=600)
"""


def test_stop_ends_a_turn_while_a_remote_server_is_silent(lab_notebook):
    page = lab_notebook([STALLED_SERVER, "reply = session.ask('Think hard', view=ChatView.show())",
                         "print('REPLY', reply.interrupted, repr(reply.analysis))"], wait_for=".gx-reasoning")
    page.wait_for_function("() => document.querySelector('.gx-reasoning-text').innerText.includes('think about')")
    time.sleep(1.0)  # the server is silent now (for 300 s; the engine's own timeout is 600 s)
    clicked = time.perf_counter()
    page.locator(".gx-stop").click()
    page.wait_for_selector(".gx-footer", timeout=20_000)
    assert time.perf_counter() - clicked < 20
    assert _reply_line(page).startswith("REPLY True 'Let me think about this")
    assert "Stopped" in page.locator(".gx-chat .gx-notice").inner_text()


SLOW_FUNCTION = """
import time
from gptoss_lab import Session, ReplayEngine
from gptoss_lab.widgets.chat import ChatView

def crunch() -> int:
    "Crunch the numbers (for five minutes)."
    time.sleep(300)
    return 1

session = Session(ReplayEngine('<|channel|>analysis<|message|>Crunch first.<|end|><|start|>assistant to=functions.crunch'
                               '<|channel|>commentary <|constrain|>json<|message|>{}<|call|>'
                               '<|channel|>final<|message|>never<|return|>'), tools=[crunch], approval='auto', timeout=600)
"""


SLOW_SEARCH = """
import time
from gptoss_lab import Session, ReplayEngine
from gptoss_lab.tools.browser import Browser
from gptoss_lab.widgets.chat import ChatView

def intranet(query: str, topn: int) -> list:
    time.sleep(300)   # a search service that does not answer
    return []

session = Session(ReplayEngine('<|channel|>commentary to=browser.search <|constrain|>json<|message|>{"query": "q"}<|call|>'
                               '<|channel|>final<|message|>never<|return|>'), browser=Browser(search=intranet),
                  tools='browser', approval='auto', timeout=600)
"""


@pytest.mark.parametrize("setup", [SLOW_FUNCTION, SLOW_SEARCH], ids=["function", "browser-search"])
def test_stop_ends_a_turn_while_a_user_function_runs(lab_notebook, setup):
    """A user function (a function tool, or the browser's search function) runs on the kernel's own thread: Stop was
    read only once it returned (here, after 300 s); now the function is interrupted and the turn ends, the call shown
    as interrupted."""
    page = lab_notebook([setup, "reply = session.ask('Crunch', view=ChatView.show())",
                         "print('REPLY', reply.interrupted, [c.status for c in reply.tool_calls], repr(reply.final))"],
                        wait_for=".gx-chat .gx-tool")
    time.sleep(1.0)  # the function is asleep now
    clicked = time.perf_counter()
    page.locator(".gx-stop").click()
    page.wait_for_selector(".gx-footer", timeout=20_000)
    assert time.perf_counter() - clicked < 20
    assert _reply_line(page).strip() == "REPLY True ['interrupted'] ''"
    assert "Stopped" in page.locator(".gx-chat .gx-notice").inner_text()
    page.screenshot(path=f"/tmp/gptoss_chat_stop_{'function' if setup is SLOW_FUNCTION else 'search'}.png")


@pytest.mark.parametrize("ui", ["lab", "notebook"])
def test_kernel_reads_busy_from_the_first_to_the_last_token(lab_notebook, jupyter_lab, ui):
    """The status indicator and /api/kernels say busy for the whole turn, Run included (JupyterLab and
    Notebook 7); the kernel goes idle once the cell is done."""
    page = lab_notebook(_cells(RECORDING, "ask", 0.08), wait_for=".gx-chat .gx-reasoning", ui=ui)
    samples, clicked = [], False
    footer = page.locator(".gx-chat .gx-footer")
    while footer.count() == 0:
        sample = (
            page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status"),
            page.locator(".jp-Notebook-ExecutionIndicator").first.get_attribute("data-status"),
            tuple(jupyter_lab.kernel_states()),
        )
        if sample != ("busy", "busy", ("busy",)):
            time.sleep(0.5)                                      # the server hears "idle" before the page draws
            if footer.count():                                   # the footer: this sample straddled the turn's end
                break
        samples.append(sample)
        if not clicked and page.locator(".gx-run").count():
            page.locator(".gx-run").click()                      # Run still works while the kernel reads busy
            clicked = True
        time.sleep(0.25)
    assert clicked and len(samples) >= 8
    assert all(s == ("busy", "busy", ("busy",)) for s in samples), samples
    assert _reply_line(page).startswith("REPLY False ['done'] ")
    page.wait_for_function("() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status"
                           " === 'idle'", timeout=10_000)


def test_chat_controls(lab_notebook, kernel_run):
    """Thinking… N s and live tok/s while streaming; Edit + Always allow on the approval card (the edited
    code runs, the next call runs unasked); Copy and Insert as cell on a code card; the context meter
    warns; Regenerate asks again in place; New chat forgets the conversation."""
    page = lab_notebook([
        "from gptoss_lab import Session, ReplayEngine\nfrom gptoss_lab.widgets.chat import ChatView\n"
        "question = 'Compute it. ' + 'Show the work. ' * 150  # a long question: the conversation fills ~80 %\n"
        f"probe = Session(ReplayEngine({CONTROLS!r}), approval='auto', namespace={{}}).ask(question)\n"
        f"engine = ReplayEngine({CONTROLS!r}, delay=0.06)\n"
        "engine.context_window = round(probe.usage.context_tokens / 0.8)  # a warning\n"
        "session = Session(engine, approval='ask')\nkept = []",
        "reply = session.ask(question, view=ChatView.show().connect(session, keep=kept.append))",
    ], wait_for=".gx-chat .gx-reasoning")
    page.wait_for_function("() => /^Thinking… [1-9] s$/.test(document.querySelector('.gx-reasoning .gx-label')"
                           ".textContent)", timeout=10_000)            # the timer ticks while it thinks
    assert re.fullmatch(r"\d+ tokens · \d+\.\d tok/s", page.locator(".gx-progress").inner_text())

    page.wait_for_selector(".gx-tool[data-status='waiting'] .gx-edit", timeout=30_000)
    page.locator(".gx-edit").click()
    page.locator(".gx-editor").fill("x = 6 * 8\nprint(x)")
    page.screenshot(path="/tmp/gptoss_chat_approval.png")
    page.locator(".gx-always").click()
    cards = page.locator(".gx-chat .gx-tool")
    page.wait_for_selector(".gx-chat .gx-footer", timeout=30_000)
    assert cards.nth(0).locator(".gx-output").inner_text().strip() == "48"        # the edited code ran
    assert "edited" in cards.nth(0).locator(".gx-status").inner_text()
    assert "x = 6 * 8" in cards.nth(0).locator(".gx-code").inner_text()
    assert cards.nth(1).locator(".gx-output").inner_text().strip() == "49"        # ran without asking
    assert page.locator(".gx-run").count() == 0
    told = kernel_run("print([m for m in session.history if m.recipient][0].content[0].text,"
                             " [c.status for c in reply.tool_calls])")
    assert told.strip() == "x = 6 * 8\nprint(x) ['done', 'done']"                 # the model is told what ran

    meter = page.locator(".gx-context")
    window = int(kernel_run("print(engine.context_window)"))
    assert meter.get_attribute("data-level") == "warn" and f"/ {window}" in meter.inner_text()

    cards.nth(0).hover()
    cards.nth(0).locator(".gx-copy-code").click()
    assert page.evaluate("() => navigator.clipboard.readText()") == "x = 6 * 8\nprint(x)"
    cells = page.locator(".jp-Notebook .jp-Cell")
    assert cells.count() == 2
    cards.nth(1).hover()
    cards.nth(1).locator(".gx-insert").click()
    page.wait_for_function("() => document.querySelectorAll('.jp-Notebook .jp-Cell').length === 3")
    assert "print(x + 1)" in cells.nth(2).locator(".jp-InputArea").inner_text()   # below the chat's cell
    page.screenshot(path="/tmp/gptoss_chat_controls.png", full_page=True)

    page.locator(".gx-regenerate").click()
    page.wait_for_function("() => document.querySelector('.gx-final') &&"
                           " document.querySelector('.gx-final').innerText.includes('A regenerated answer.')")
    page.wait_for_selector(".gx-chat .gx-footer", timeout=30_000)
    assert page.locator(".gx-chat .gx-turn").count() == 1                       # in place of the old answer
    assert kernel_run("print(len(session.replies), kept[-1].final)").strip() == "1 A regenerated answer."
    page.locator(".gx-new-chat").click()
    page.wait_for_selector(".gx-notice:has-text('New conversation')")
    assert kernel_run("print(len(session.history), len(session.replies))").strip() == "0 0"


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


KEYBOARD = (
    "<|channel|>analysis<|message|>Two steps.<|end|>"
    "<|start|>assistant to=python<|channel|>analysis<|message|>x = 6 * 7\nprint(x)<|call|>"
    "<|start|>assistant to=python<|channel|>analysis<|message|>print(x + 1)<|call|>"
    "<|channel|>final<|message|>Done.<|return|>"
)
FOCUSED = "() => document.activeElement && document.activeElement.className"
# Where each key went and what took focus meanwhile: once in about twenty full runs the Enter typed in the editor
# left no new line (CI of 4ddffef) and no run here reproduced it; a failure prints this log.
_KEY_LOG = """() => {
  window._gxKeys = [];
  const log = (e) => window._gxKeys.push(`${e.type}:${e.key || e.inputType || ""}@${e.target.className}`
    + `${e.defaultPrevented ? " (prevented)" : ""} t=${Math.round(performance.now())}`);
  for (const type of ["keydown", "beforeinput", "input", "focusin", "focusout"]) document.addEventListener(type, log, true);
  for (const type of ["keydown", "beforeinput"]) window.addEventListener(type, log);   // after every handler
}"""


@pytest.mark.shared_page(False)   # a focus ring shows as the card takes focus only in a page no click has met
def test_approval_card_by_keyboard_only(lab_notebook):
    """Tab reaches Run with a visible focus ring; Edit opens on the model's code; Enter types a new line
    (not swallowed by JupyterLab); Shift+Enter in the editor runs the edited code (it does not run the cell
    again, which would clear the view while the turn waits); Space on Run approves the next call."""
    page = lab_notebook(_cells(KEYBOARD, "ask", 0.005), wait_for=".gx-tool[data-status='waiting'] .gx-run")
    for _ in range(60):   # the waiting card takes focus on ▶ Run (test_chat_ux.py); Tab reaches it anyway
        if "gx-run" in page.evaluate(FOCUSED):
            break
        page.keyboard.press("Tab")
    assert "gx-run" in page.evaluate(FOCUSED)
    box = page.locator(".gx-run").bounding_box()
    above = {"x": box["x"], "y": box["y"] - 4, "width": box["width"], "height": 2}   # 2-4 px above the button
    focused = page.screenshot(clip=above)
    page.locator(".gx-run").evaluate("b => b.blur()")
    assert page.screenshot(clip=above) != focused, "no focus ring clear of ▶ Run (one touching it looks like Run)"
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert "gx-edit" in page.evaluate(FOCUSED)
    page.keyboard.press("Enter")
    editor = page.locator(".gx-editor")
    assert page.evaluate(FOCUSED) == "gx-editor"
    assert editor.input_value() == "x = 6 * 7\nprint(x)"                  # the model's code, to change
    page.evaluate(_KEY_LOG)
    page.keyboard.press("Control+End")
    page.keyboard.press("Enter")
    page.keyboard.type("print('by keyboard')")
    keys = page.evaluate("() => window._gxKeys.join(' | ')")
    assert editor.input_value() == "x = 6 * 7\nprint(x)\nprint('by keyboard')", keys
    page.screenshot(path="/tmp/gptoss_chat_keyboard.png")
    page.keyboard.press("Shift+Enter")
    card = page.locator(".gx-chat .gx-tool").first
    page.wait_for_selector(".gx-tool[data-status='done']", timeout=30_000)
    assert card.locator(".gx-output").inner_text().split() == ["42", "by", "keyboard"]
    assert "edited" in card.locator(".gx-status").inner_text()

    page.wait_for_selector(".gx-tool[data-status='waiting'] .gx-run", timeout=30_000)
    page.locator(".gx-tool[data-status='waiting'] .gx-run").focus()
    page.wait_for_timeout(800)              # a card that took focus by itself takes keys 0.7 s later
    page.keyboard.press("Space")
    page.wait_for_selector(".gx-chat .gx-footer", timeout=30_000)
    assert page.locator(".gx-chat .gx-tool").nth(1).locator(".gx-output").inner_text().strip() == "43"
    assert _reply_line(page).startswith("REPLY False ['done', 'done'] ")
    assert page.locator(".jp-Notebook .jp-Cell").count() == 3             # no cell added or run by the keys


# A second call whose comment holds a right-to-left override: a textarea obeys it, and showed the line as
# `n = len(r"ab") #; print("ok")`, code that is not what runs.
TROJAN = 'n = len(r"\u202eab") #\u202e)"ok"(tnirp ;\nprint(n)'
EDITED = KEYBOARD.replace("print(x + 1)", TROJAN)


def test_edit_closed_before_run_runs_the_code_the_card_shows(lab_notebook):
    """Edit, change the code, Edit again to close the editor (the card shows the change), then Run: the changed
    code runs, not the model's (which the card no longer shows). The editor shows a direction control in the code
    written out (\\u202e), as the card does: left as shown, the model's code runs as it came (the raw string holds
    one character there, not six). Screenshot: /tmp/gptoss_chat_editor_bidi.png."""
    page = lab_notebook(_cells(EDITED, "ask", 0.005), wait_for=".gx-tool[data-status='waiting'] .gx-edit")
    card = page.locator(".gx-chat .gx-tool").first
    card.locator(".gx-edit").click()
    assert card.locator(".gx-edit").inner_text() == "Done editing"       # it said "Edit" with the editor open
    page.locator(".gx-editor").fill("x = 6 * 8\nprint(x)")
    card.locator(".gx-edit").click()                                      # closes the editor, keeps the change
    assert page.locator(".gx-editor").count() == 0 and card.locator(".gx-edit").inner_text() == "Edit"
    assert card.locator(".gx-code").inner_text() == "x = 6 * 8\nprint(x)"
    card.locator(".gx-run").click()
    page.wait_for_selector(".gx-tool[data-status='done']", timeout=30_000)
    assert card.locator(".gx-output").inner_text().strip() == "48"         # what the card showed ran
    assert "edited" in card.locator(".gx-status").inner_text()
    second = page.locator(".gx-chat .gx-tool").nth(1)
    page.wait_for_selector(".gx-tool[data-status='waiting'] .gx-edit", timeout=30_000)
    second.locator(".gx-edit").click()
    shown = TROJAN.replace("\u202e", "\\u202e")
    assert page.locator(".gx-editor").input_value() == shown                # what runs, in the order it runs
    second.screenshot(path="/tmp/gptoss_chat_editor_bidi.png")
    second.locator(".gx-edit").click()                                    # closed as shown
    assert second.locator(".gx-code").inner_text() == shown
    second.locator(".gx-run").click()
    page.wait_for_selector(".gx-chat .gx-footer", timeout=30_000)
    assert second.locator(".gx-output").inner_text().strip() == "3"        # the model's code ran, as it came
    assert "edited" not in second.locator(".gx-status").inner_text()
    assert _reply_line(page).startswith("REPLY False ['done', 'done'] ")


# a line of 345 characters; then one of 110, short of the kernel's warning (120) and still wider than a card in a
# 1280 px window (about 96 characters): what runs after its spaces was out of sight, unsaid
SHORT_WIDE = "p = 'notes.txt'\nx = 1" + " " * 92 + ";os.remove(p)"
WIDE = ("<|start|>assistant to=python<|channel|>analysis<|message|>print('hello')" + " " * 300
        + f"; import os; print(os.getcwd())<|call|><|start|>assistant to=python<|channel|>analysis<|message|>{SHORT_WIDE}"
        "<|call|><|channel|>final<|message|>Done.<|return|>")


def test_a_line_too_long_for_the_card_is_named_on_it(lab_notebook):
    """Code pushed past the card's right edge by a run of spaces is out of sight (the card scrolls sideways):
    the question on the card says a line is that long, and says a line is wider than the card where one is, though
    short of the kernel's 120 characters. Screenshot: /tmp/gptoss_chat_wide_line.png."""
    page = lab_notebook(_cells(WIDE, "ask", 0.0), wait_for=".gx-tool[data-status='waiting'] .gx-run")
    card = page.locator(".gx-chat .gx-tool").first
    code = card.locator(".gx-code")
    assert code.evaluate("pre => pre.scrollWidth > pre.clientWidth + 100")      # the rest of the line is out of view
    assert card.locator(".gx-ask").inner_text() == ("Run this code in your kernel? Careful: a line is 345 characters "
                                                    "long; scroll sideways to read all of it before it runs.")
    card.screenshot(path="/tmp/gptoss_chat_wide_line.png")
    card.locator(".gx-skip").click()
    card = page.locator(".gx-chat .gx-tool").nth(1)
    page.wait_for_selector(".gx-tool[data-status='waiting'] .gx-skip", timeout=30_000)
    assert card.locator(".gx-code").evaluate("pre => pre.scrollWidth > pre.clientWidth + 40")   # `;os.remove(p)`
    assert card.locator(".gx-ask").inner_text() == ("Run this code in your kernel? Careful: a line is wider than this "
                                                    "card; scroll sideways to read all of it before it runs.")
    card.screenshot(path="/tmp/gptoss_chat_wide_card.png")
    card.locator(".gx-skip").click()
    assert _reply_line(page).startswith("REPLY False ['skipped', 'skipped'] ")


WIDE_OUTPUT = ("<|start|>assistant to=python<|channel|>analysis<|message|>print(' '.join(['word'] * 120) + ' END')<|call|>"
               "<|channel|>final<|message|>Done.<|return|>")


def test_a_long_line_of_output_wraps_inside_the_card(lab_notebook):
    """A tool's output (the code's print, or the lab's own one-line note on a timeout) wraps in the card as a
    notebook's output does, instead of running past its right edge where only a sideways scroll shows the end.
    Screenshot: /tmp/gptoss_chat_wide_output.png."""
    page = lab_notebook(_cells(WIDE_OUTPUT, "auto", 0.0), wait_for=".gx-tool[data-status='done'] .gx-output")
    card = page.locator(".gx-chat .gx-tool").first
    output = card.locator(".gx-output")
    assert output.evaluate("pre => pre.scrollWidth <= pre.clientWidth + 1")     # nothing out of view sideways
    assert output.evaluate("pre => pre.getBoundingClientRect().height > 40")   # on several lines
    assert output.inner_text().strip().endswith("word END")
    card.screenshot(path="/tmp/gptoss_chat_wide_output.png")
    assert _reply_line(page).startswith("REPLY False ['done'] ")


MATH = (
    "<|channel|>final<|message|>Steps:\n\n3. three\n4. four\n\n"
    "Choose $\\binom{n}{k}$ in display:\n\n$$\\sum_{i=0}^{9} i^2 = 285$$\n\n"
    "Up: $\\smash{\\raise{25em}{\\text{OVERLAY-UP}}}$ down: $\\smash{\\lower{25em}{\\text{OVERLAY-DOWN}}}$"
    " left: $\\hspace{-40em}\\text{PULLED-LEFT}$\n\nEnd.<|return|>"
)
OUTSIDE = """(box) => {
  const r = document.querySelector(box).getBoundingClientRect();
  return [...document.querySelectorAll(box + ' math *')].filter((n) => {
    const q = n.getBoundingClientRect();
    return q.width && (q.top < r.top - 1 || q.bottom > r.bottom + 1 || q.left < r.left - 1 || q.right > r.right + 1);
  }).map((n) => n.localName + ' ' + n.textContent);
}"""


def test_markdown_and_math_render_as_written_and_stay_in_the_answer_box(lab_notebook, save_notebook, open_notebook,
                                                                       jupyter_lab):
    """Display math is a centred block, a list keeps its first number, a binomial has no fraction bar; and a
    formula cannot paint outside the answer (`\\smash{\\raise{..}}` over the prompt above, negative space
    past its left edge), live or in the saved notebook. Screenshot: /tmp/gptoss_chat_math.png."""
    page = lab_notebook(_cells(MATH, "auto", 0.0), wait_for="text=/^REPLY /", name="math.ipynb")
    final = page.locator(".gx-chat .gx-final")
    assert final.locator("ol").get_attribute("start") == "3"
    assert final.locator("li").first.evaluate("li => li.parentElement.start") == 3
    shown = final.locator("math").evaluate_all("ms => ms.map(m => getComputedStyle(m).display)")
    assert shown.count("block math") == 1 and shown.count("math") == 4, shown
    assert final.locator("mfrac").get_attribute("linethickness") == "0"
    assert "OVERLAY-UP" in final.inner_text() and "PULLED-LEFT" in final.inner_text()
    assert page.evaluate(OUTSIDE, ".gx-chat .gx-final") == []
    final.screenshot(path="/tmp/gptoss_chat_math.png")

    save_notebook("math.ipynb")
    jupyter_lab.shutdown_kernels()
    page = open_notebook("math.ipynb")
    page.wait_for_selector(".gx-fallback .gx-final math")
    assert page.locator(".gx-fallback .gx-final math[display='block']").count() == 1
    assert page.evaluate(OUTSIDE, ".gx-fallback .gx-final") == []


def test_saved_turn_wraps_long_tokens_in_a_narrow_notebook(lab_notebook, save_notebook, open_notebook, jupyter_lab):
    """A 300-character token (a hash, a URL, a path) in the prompt and the answer stays readable in the saved
    transcript of a 600 px notebook: wrapped inside its box, not cut off at the output's edge."""
    token = "k" * 299 + "Z"
    recording = f"<|channel|>final<|message|>The key is {token} as asked.<|return|>"
    page = lab_notebook([
        "from gptoss_lab import Session, ReplayEngine\nfrom gptoss_lab.widgets.chat import ChatView\n"
        f"session = Session(ReplayEngine({recording!r}), approval='auto')",
        f"reply = session.ask('Spell the key {token}', view=ChatView.show())",
    ], wait_for=".gx-chat .gx-footer", name="long.ipynb")
    save_notebook("long.ipynb")
    jupyter_lab.shutdown_kernels()
    page.set_viewport_size({"width": 600, "height": 900})
    page = open_notebook("long.ipynb")
    page.wait_for_selector(".gx-fallback .gx-final")
    for part in (".gx-prompt", ".gx-final"):
        node = page.locator(f".gx-fallback {part}")
        assert token in node.inner_text().replace("\n", "")
        ends = page.evaluate("""(sel) => { const r = document.querySelector('.gx-fallback').getBoundingClientRect();
          const range = document.createRange(); range.selectNodeContents(document.querySelector(sel));
          return [range.getBoundingClientRect().right, r.right]; }""",
                             f".gx-fallback {part}")
        assert ends[0] <= ends[1] + 1, (part, ends)                        # all of its text is on screen
    page.locator(".gx-fallback").screenshot(path="/tmp/gptoss_chat_saved_narrow.png")


FLAG = "window.gxPwned = (window.gxPwned || []).concat"
PAYLOAD = (f'<img src=x onerror="{FLAG}(\'img\')"><svg onload="{FLAG}(\'svg\')"></svg>'
           f'<a href="javascript:{FLAG}(\'link\')">link</a><b>bold</b>')


def test_a_notebook_files_chat_state_draws_inert_and_leaves_the_page_alone(open_notebook, jupyter_lab):
    """A chat view's state can come from a notebook file's widget state, not the kernel (trusted, the view is drawn
    from it): its HTML draws sanitised like the kernel's, and a block numbered "__proto__" wrote `raw` and `ended` onto
    every object of the page (Object.prototype), where the view keeps its blocks."""
    ops = [{"op": "turn", "prompt": PAYLOAD, "effort": "low", "model": "m", "approval": "ask", "context_window": 10,
            "room": "", "controls": False},
           {"op": "block", "i": 0, "kind": "final", "channel": "final", "recipient": None, "at": 0},
           {"op": "end", "i": 0, "seconds": 1, "tokens": 2, "html": PAYLOAD, "sources": PAYLOAD},
           {"op": "text", "i": "__proto__", "t": "x"}, {"op": "end", "i": "__proto__", "seconds": 1, "tokens": 1}]
    name = crafted_notebook(jupyter_lab.root / "crafted_chat.ipynb", ChatView, [
        {"_last": True, "_chunk": {}, "_static": {}, "_snapshot": {"seq": 1, "at": 0, "ops": ops}}])
    page = open_notebook(name)
    answer = in_sight(page.locator(".gx-chat .gx-md"))
    assert answer.inner_text().strip() == "linkbold"   # the link without its href, the bold as bold
    assert page.locator(".gx-chat img, .gx-chat svg, .gx-chat a[href]").count() == 0
    assert page.evaluate("() => [window.gxPwned, ({}).raw, ({}).ended]") == [None, None, None]
    page.locator(".gx-chat").screenshot(path="/tmp/gptoss_lab-chat-crafted.png")
