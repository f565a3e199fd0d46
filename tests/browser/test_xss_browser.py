"""Hostile model text in real Chromium: no script runs and nothing reaches the kernel, in the live chat view,
in the saved notebook reopened in JupyterLab (trusted, so Lab does not sanitise it) and in nbconvert's HTML.

The front end's own sanitizer is tested apart: HTML that skips the kernel's is pushed into the view.
Every payload calls `window.__hit()` if it ever runs; the page defines it to raise a flag and to ask the
kernel to create a marker file. A positive control at the end proves that detector works.
Screenshot: /tmp/gptoss_xss_live.png (the payloads shown as text, links without targets).
"""
from __future__ import annotations

import re
import time

HIT = "window.__hit()"
PAYLOADS = [
    f"<script>{HIT}</script>",
    f"<img src=x onerror={HIT}>",
    f'$\\text{{<img/src="x"/onerror="{HIT}">}}$',
    f"$\\href{{javascript:{HIT}}}{{math link}}$",
    f"$\\style{{background:url(javascript:{HIT})}}{{styled}}$",
    f"[md link](javascript:{HIT})",
    f"[entity link](jav&#x61;script:{HIT})",
    f'<a href="javascript:{HIT}">raw link</a>',
    f'<svg onload="{HIT}"><circle r="5"/></svg>',
    f"<math><mtext><table><mglyph><style><img src=x onerror={HIT}>",
    f'<details open ontoggle="{HIT}"><summary>toggle</summary></details>',
    f'<iframe srcdoc="<script>parent.__hit()</script>"></iframe>',
    f'<form action="javascript:{HIT}"><button>go</button></form>',
    f"[data link](data:text/html,<script>{HIT}</script>)",
    f'<input autofocus onfocus="{HIT}">',
    f"![pixel](javascript:{HIT})",
    # what would fetch a model-chosen address when the turn is drawn (a reader's visit told to its server): none may
    "![pixel](https://evil.example/leak.png?live) <img src=https://evil.example/raw.png> <img srcset='https://evil.example/s.png 1x'>",
    "<div style=\"background:url(https://evil.example/css.png)\">css</div> <link rel=prefetch href=https://evil.example/pre>",
    "$\\href{https://evil.example/math}{math}$ <svg><use href=https://evil.example/use.svg#a /></svg>",
    # script links written otherwise: a tab, capitals, spaces, angle brackets, an autolink, a definition, vbscript
    f"[tab link](java\tscript:{HIT}) [caps link](JaVaScRiPt:{HIT}) [spaced link](  javascript:{HIT})",
    f"[angle link](<javascript:{HIT}>) <javascript:{HIT}> [defined link][r] [vb link](vbscript:msgbox(1))\n\n"
    f"[r]: javascript:{HIT}",
    f"![svg pixel](data:image/svg+xml,<svg onload={HIT}>) [titled link](javascript:{HIT} \"Source 1\")",
    # TeX that other renderers (KaTeX, MathJax) turn into links, classes or characters
    f"$\\url{{javascript:{HIT}}}$ $\\htmlClass{{gx-run}}{{Run}}$ $\\unicode{{x3c}}img src=x onerror={HIT}\\unicode{{x3e}}$",
]
# HTML the kernel would never send (its sanitizer removes all of it): pushed straight into the view to
# show that the front end's own sanitizer (DOMPurify) stops it before the DOM.
RAW = "".join([
    f"<img src=x onerror={HIT}>", f'<a href="javascript:{HIT}">raw link</a>', f'<svg onload="{HIT}"></svg>',
    f'<math><mi href="javascript:{HIT}">m</mi></math>', f'<iframe srcdoc="<script>parent.__hit()</script>"></iframe>',
    f'<div style="position:fixed;inset:0;z-index:99" onclick="{HIT}">overlay</div>',
    '<span class="gx-run jp-Dialog nb">spoofed classes</span>', f'<form action="javascript:{HIT}"><input></form>',
    '<math><mpadded voffset="30em" height="0"><mtext>lifted</mtext></mpadded><mspace width="-40em"/>'
    '<mspace height="300em" mathbackground="black"/><mspace depth="1e9px"/><mi mathcolor="white">hid</mi></math>',
    '<img src="https://evil.example/past-kernel.png"><video poster="https://evil.example/poster.png"></video>',
    "<strong>unsanitised-ok</strong>",
])
PUSH_RAW = f"""
items = view.transcript.items
final = [i for i, b in enumerate(items) if getattr(b, "kind", "") == "final"][0]
tool = [i for i, b in enumerate(items) if getattr(b, "kind", "") == "tool"][0]
view._chunk = {{"seq": 10 ** 6, "ops": [
    {{"op": "end", "i": final, "html": {RAW!r}, "seconds": 0, "tokens": 0}},
    {{"op": "end", "i": tool, "code": {RAW!r}, "seconds": 0, "tokens": 0}}]}}
print("pushed")
"""
DETECTOR = """
window.__hit = () => {
  window.__pwned = (window.__pwned || 0) + 1;
  try {
    window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.requestExecute(
      {code: "open('pwned.marker', 'w').close()"});
  } catch (e) {}
};
"""


def _cells() -> list[str]:
    answer = "The answer is " + "\n\n".join(PAYLOADS)
    recording = (
        f"<|channel|>analysis<|message|>Thinking about {' '.join(PAYLOADS)}<|end|>"
        "<|start|>assistant to=python<|channel|>analysis<|message|>print(PAYLOADS)<|call|>"
        f"<|channel|>final<|message|>{answer}<|return|>"
    )
    return [
        "from gptoss_lab import Session, ReplayEngine\nfrom gptoss_lab.widgets.chat import ChatView\n"
        f"PAYLOADS = {chr(10).join(PAYLOADS)!r}\n"
        f"session = Session(ReplayEngine({recording!r}), approval='auto')",
        "view = ChatView.show()\nreply = session.ask('Hi', view=view)",
        "print('REPLY', len(reply.final))",
    ]


def _provoke(page, scope: str) -> None:
    """Fire the events inline handlers listen to, on everything the transcript drew."""
    page.evaluate("""(scope) => {
      for (const node of document.querySelectorAll(scope + ' *')) {
        for (const type of ['mouseover', 'click', 'focus', 'toggle', 'load', 'error', 'animationstart']) {
          if (type === 'click' && node.closest('a[href]')) continue;   // real links would open tabs
          node.dispatchEvent(new Event(type));
        }
      }
    }""", scope)
    time.sleep(1.0)


def _assert_inert(page, scope: str, dialogs: list, marker, where: str) -> None:
    assert page.evaluate("() => window.__pwned") is None, f"{where}: a payload ran"
    assert dialogs == [], f"{where}: a dialog opened"
    assert not marker.exists(), f"{where}: a payload reached the kernel"
    live = page.evaluate("""(scope) => {
      const bad = [];
      for (const node of document.querySelectorAll(scope + ' *')) {
        const tag = node.localName;
        if (['script', 'iframe', 'object', 'embed', 'form', 'input', 'img', 'svg', 'style'].includes(tag)
            // the saved turn's own style, in its hidden box (transcript._STYLE_BOX)
            && !(tag === 'style' && node.parentElement.matches('.gx-fallback > div.lm-mod-hidden[hidden]'))) bad.push(tag);
        for (const attr of node.attributes) {
          const value = attr.value.trim().toLowerCase();
          if (attr.name.startsWith('on')) bad.push(tag + ' ' + attr.name);
          if (attr.name === 'href' && !/^(https?:|mailto:)/.test(value)) bad.push(tag + ' href=' + value);
        }
      }
      return bad;
    }""", scope)
    assert live == [], f"{where}: live markup {live}"


def test_payloads_in_model_text_stay_inert(lab_notebook, open_notebook, save_notebook, kernel_run, jupyter_lab,
                                           page):
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    fetched: list[str] = []   # no form of the turn fetches an address the model chose (counted in every form below)
    page.on("request", lambda request: fetched.append(request.url) if "evil.example" in request.url else None)
    page.route(re.compile(r"https?://evil\.example/"), lambda route: route.abort())
    page.add_init_script(DETECTOR)
    marker = jupyter_lab.root / "pwned.marker"
    marker.unlink(missing_ok=True)

    page = lab_notebook(_cells(), wait_for="text=/^REPLY /", name="xss.ipynb")
    page.wait_for_selector(".gx-chat .gx-footer")
    final = page.locator(".gx-chat .gx-final")
    assert "The answer is" in final.inner_text() and final.locator("math").count() >= 3   # it did render
    assert "<script>" in page.locator(".gx-chat .gx-output").inner_text()                 # tool output as text
    for summary in page.locator(".gx-chat details summary").all():
        summary.click()
    _provoke(page, ".gx-chat")
    _assert_inert(page, ".gx-chat", dialogs, marker, "live widget")
    final.screenshot(path="/tmp/gptoss_xss_live.png")

    assert kernel_run(PUSH_RAW).strip() == "pushed"                   # past the kernel's sanitizer
    page.wait_for_selector(".gx-chat .gx-final strong:has-text('unsanitised-ok')")
    assert page.locator(".gx-chat .gx-code strong:has-text('unsanitised-ok')").count() == 1
    assert page.locator(".gx-chat .gx-run, .gx-chat .jp-Dialog, .gx-final [style]").count() == 0
    assert page.locator(".gx-final mpadded[voffset], .gx-final mpadded[height], .gx-final mspace[width], "
                        ".gx-final mspace[height], .gx-final mspace[depth], .gx-final [mathbackground], "
                        ".gx-final [mathcolor]").count() == 0   # nor a colour that hides text on the page
    _provoke(page, ".gx-chat")
    _assert_inert(page, ".gx-chat", dialogs, marker, "raw HTML pushed to the front end")

    save_notebook("xss.ipynb")
    jupyter_lab.shutdown_kernels()
    open_notebook("xss.ipynb", kernel=True)        # trusted: Lab renders the saved HTML unsanitised
    page.wait_for_selector(".gx-fallback")
    assert page.get_by_text("Not Trusted").count() == 0
    _provoke(page, ".gx-fallback")
    _assert_inert(page, ".gx-fallback", dialogs, marker, "saved notebook in Lab")

    from nbconvert import HTMLExporter

    html, _ = HTMLExporter().from_filename(str(jupyter_lab.root / "xss.ipynb"))
    export = jupyter_lab.root / "xss.html"
    export.write_text(html)
    page.goto(export.as_uri())
    page.wait_for_selector(".gx-fallback")
    _provoke(page, ".gx-fallback")
    _assert_inert(page, ".gx-fallback", dialogs, marker, "nbconvert HTML")
    assert fetched == [], f"fetched what the model chose: {fetched}"

    # Positive control: the detector does see a script that runs and does reach the kernel.
    open_notebook("xss.ipynb", kernel=True)
    page.evaluate(HIT)
    deadline = time.monotonic() + 15
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert page.evaluate("() => window.__pwned") == 1 and marker.exists()
    marker.unlink()
    page.evaluate("() => { new Image().src = 'https://evil.example/control.png'; }")   # and a fetch is counted
    page.wait_for_timeout(500)
    assert fetched == ["https://evil.example/control.png"]

HIDDEN = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u200b-\u200d\u2060\ufeff]")
# Hebrew and Arabic with a mark, an isolate and an embedding: its controls are not written out (CARDS's `rtl`)
RTL = "\u200f\u05e9\u05dc\u05d5\u05dd \u2067\u05e2\u05d5\u05dc\u05dd\u2069 \u202b\u0645\u0631\u062d\u0628\u0627\u202c"
CARDS = r'''
from gptoss_lab.events import (Delta, MessageEnd, MessageStart, Notice, ParseError, ToolCall, ToolEnd, ToolStart,
                               TurnStart)
from gptoss_lab.widgets.chat import ChatView
title, url = "Invoice \u202efdp.exe", "https://bank\u200b.example/\u2066login"
search = ToolCall("browser.search\u202e", "analysis", '{"query": "pay"}', status="done", output=f"[0] {title}", data={
    "kind": "search", "cursor": 0, "query": "pay \u202eyap", "title": "", "url": "", "start": 0, "end": 0,
    "total": 0, "lines": [], "results": [{"id": 0, "title": title, "url": url, "source": url, "snippet": "a \u202eb"}]})
long = ToolCall("`" * 64_000, "commentary", "{}", status="error", output="unknown tool")
code = ToolCall("python", "analysis", 'print("\u202e olleh")', status="done", output="\u202e olleh")
view = ChatView.show()
view.handle(TurnStart(f"Hi user\u202eexe.txt {rtl}", "low", "replay", "auto"))
for event in (MessageStart("analysis", None), Delta(f"Send user\u202eexe.txt {rtl}", "analysis"), MessageEnd(None, None),
              ParseError("<|channel|>user\u202dtxt.exe", "no \u202emessage")):
    view.handle(event)
for call in (search, long, code):
    for event in (MessageStart(call.channel, call.recipient), Delta(call.input, call.channel), MessageEnd(None, None),
                  ToolStart(call), ToolEnd(call)):
        view.handle(event)
view.handle(Notice("The model called 'browser.search\u202e\u200b', which is not an enabled tool.", "warning"))
for event in (MessageStart("final", None), Delta(f"Open user\u202eexe.txt {rtl}", "final")):   # unfinished
    view.handle(event)
view._flush(final=True)
print("SHOWN")
'''
STATUS_IN_CARD = """() => [...document.querySelectorAll('.gx-chat .gx-tool')].map((card) => {
  const r = card.getBoundingClientRect(), s = card.querySelector('.gx-status').getBoundingClientRect();
  return s.width > 0 && s.left >= r.left && s.right <= r.right; })"""


def test_cards_write_out_hidden_characters_and_keep_their_status_in_view(lab_notebook, save_notebook, open_notebook,
                                                                          jupyter_lab):
    """A page titled `Invoice \\u202efdp.exe` (read: "Invoice exe.pdf"), an address with a zero-width space, a tool
    name with a direction control and a python output with one: the live cards and the saved ones show them written
    out; a 64 000-character tool name is cut, and every card's status stays in view. The prompt, streamed reasoning,
    an unfinished answer and a Harmony error show `user\\u202eexe.txt` (it read "usertxt.exe") with the override
    written out too, their right-to-left prose with its marks and isolates as it was."""
    page = lab_notebook([f"rtl = {RTL!r}\n{CARDS}"], wait_for="text=SHOWN", name="cards.ipynb")
    page.wait_for_selector(".gx-chat .gx-final .gx-tail:has-text('Open')")
    chat = page.locator(".gx-chat")
    assert HIDDEN.findall(chat.inner_text()) == HIDDEN.findall(RTL) * 3     # the prompt, reasoning and answer's
    for where, text in [("gx-prompt-text", "Hi"), ("gx-reasoning-text", "Send"), ("gx-tail", "Open")]:
        assert page.locator(f".gx-chat .{where}").inner_text() == f"{text} user\\u202eexe.txt {RTL}"
    assert page.locator(".gx-chat .gx-error").inner_text() == (
        "Not valid Harmony (no \\u202emessage)\n<|channel|>user\\u202dtxt.exe")
    assert "Invoice \\u202efdp.exe https://bank\\u200b.example/\\u2066login" in chat.inner_text()
    assert page.locator(".gx-chat .gx-browse-card a[href]").count() == 0         # not a link: it reads as another
    assert page.locator(".gx-chat .gx-tool-name").first.inner_text() == "browser.search\\u202e"
    assert page.locator(".gx-chat .gx-output").last.inner_text() == "\\u202e olleh"
    assert "called 'browser.search\\u202e\\u200b'" in page.locator(".gx-chat .gx-warning").inner_text()
    assert page.evaluate(STATUS_IN_CARD) == [True, True, True]
    assert page.locator(".gx-chat .gx-tool-name").nth(1).get_attribute("title") == "`" * 64_000
    chat.screenshot(path="/tmp/gptoss_xss_cards_live.png")

    save_notebook("cards.ipynb")
    jupyter_lab.shutdown_kernels()
    page = open_notebook("cards.ipynb")
    page.wait_for_selector(".gx-fallback .gx-browse")
    saved = page.locator(".gx-fallback")
    assert HIDDEN.findall(saved.inner_text()) == HIDDEN.findall(RTL) * 2   # the prompt's, the answer's (reasoning folded)
    assert saved.inner_text().count(f"user\\u202eexe.txt {RTL}") == 2
    assert "Invoice \\u202efdp.exe https://bank\\u200b.example/\\u2066login" in saved.inner_text()
    heads = page.locator(".gx-fallback .gx-tool-head").evaluate_all("hs => hs.map(h => h.getBoundingClientRect().height)")
    assert len(heads) == 3 and max(heads) < 80, heads
    saved.screenshot(path="/tmp/gptoss_xss_cards_saved.png")


LONG = r'''
from gptoss_lab.events import Delta, MessageEnd, MessageStart, Notice, ToolCall, ToolStart, ToolUpdate, TurnStart
from gptoss_lab.widgets.chat import ChatView
word = "w" * 3000
view = ChatView.show()
view.handle(TurnStart("Hi", "low", "model-" + word, "ask"))
view.handle(Notice(f"The model called '{word}', which is not an enabled tool.", "warning"))
call = ToolCall("browser.search", "analysis", '{"query": "scroll sideways %s"}' % word, status="waiting",
                question=f"Search your 4 documents for 'scroll sideways {word}'?")
for event in (MessageStart("analysis", "browser.search"), Delta(call.input, "analysis"), MessageEnd(None, None),
              ToolStart(call)):
    view.handle(event)
busy = ToolCall("browser.search", "analysis", '{"query": "owls"}', status="running",
                progress=f"SearXNG<img src=x onerror=alert(1)> is busy (HTTP 429), retrying in 2 s: try 2 of 3 \u202e{word}")
for event in (MessageStart("analysis", "browser.search"), Delta(busy.input, "analysis"), MessageEnd(None, None),
              ToolStart(busy), ToolUpdate(busy)):
    view.handle(event)
view._flush()
print("SHOWN")
'''
INSIDE = """(sel) => { const box = document.querySelector('.gx-chat .gx-tool').getBoundingClientRect();
  return [...document.querySelectorAll(sel)].map((n) => { const r = n.getBoundingClientRect();
    return r.width > 0 && r.left >= box.left && r.right <= box.right && n.scrollWidth <= n.clientWidth + 1; }); }"""


def test_one_long_word_cannot_push_the_approval_buttons_out_of_the_card(lab_notebook):
    """A search query of 3 000 letters in the approval question, a tool name as long in a notice, a model name as
    long in the bar: the text wraps in its box, ▶ Run and Skip stay in the card (they were 30 000 px to its right).
    The question says the code is wider than the card, whatever the query says."""
    page = lab_notebook([LONG], wait_for="text=SHOWN", name="long_words.ipynb")
    page.wait_for_selector(".gx-chat .gx-run")
    assert page.evaluate(INSIDE, ".gx-chat .gx-run, .gx-chat .gx-skip, .gx-chat .gx-ask") == [True, True, True]
    # its code is wider than the card, which the question says, though the model's query says "scroll sideways" too
    assert page.locator(".gx-chat .gx-ask").inner_text().endswith(
        "'? Careful: a line is wider than this card; scroll sideways to read all of it before it runs.")
    assert page.evaluate(INSIDE, ".gx-chat .gx-notice, .gx-chat .gx-meta") == [True, True]
    page.locator(".gx-chat .gx-actions").first.screenshot(path="/tmp/gptoss_xss_long_question.png")
    # a running call says what it waits for (a busy search service) in its status, as text, in its card
    status = page.locator(".gx-chat .gx-tool").nth(1).locator(".gx-status")
    assert status.inner_text().startswith("running… · SearXNG<img src=x onerror=alert(1)> is busy (HTTP 429), "
                                          "retrying in 2 s: try 2 of 3 \\u202ewww")
    assert page.locator(".gx-chat img").count() == 0
    assert page.evaluate(INSIDE, ".gx-chat .gx-status") == [True, True]
    page.locator(".gx-chat .gx-tool").nth(1).screenshot(path="/tmp/gptoss_xss_busy_status.png")


COMMAND = ('<span data-commandlinker-command="help:about">ABOUT</span> <sup data-cite="kept">1</sup>'
           '<span data-cite="not here">x</span>')
PUSH_COMMAND = f"""
final = [i for i, b in enumerate(view.transcript.items) if getattr(b, "kind", "") == "final"][0]
view._chunk = {{"seq": 10 ** 6, "ops": [{{"op": "end", "i": final, "html": {COMMAND!r}, "seconds": 0, "tokens": 0}}]}}
print("pushed")
"""


def test_html_past_the_kernel_cannot_name_a_lab_command(lab_notebook, kernel_run):
    """JupyterLab runs the command an element names in data-commandlinker-command when it is clicked (any command,
    with data-commandlinker-args): the front end's sanitizer keeps no data attribute but a chip's data-cite."""
    page = lab_notebook(["from gptoss_lab import Session, ReplayEngine\nfrom gptoss_lab.widgets.chat import ChatView\n"
                         "session = Session(ReplayEngine('<|channel|>final<|message|>Hello<|return|>'), approval='auto')",
                         "view = ChatView.show()\nreply = session.ask('Hi', view=view)\nprint('REPLY')"],
                        wait_for="text=REPLY", name="commands.ipynb")
    assert kernel_run(PUSH_COMMAND).strip() == "pushed"
    page.wait_for_selector(".gx-chat .gx-final :text('ABOUT')")
    page.locator(".gx-chat .gx-final :text('ABOUT')").click()
    page.wait_for_timeout(1500)
    assert page.locator(".jp-Dialog").count() == 0                         # help:about did not open
    assert page.locator(".gx-final [data-commandlinker-command]").count() == 0
    assert page.locator(".gx-final sup[data-cite='kept']").count() == 1 and page.locator(".gx-final span[data-cite]").count() == 0


HUGE = "Big: $" + "\\Huge " * 8 + "W$."
PUSH_HUGE = f"""
final = [i for i, b in enumerate(view.transcript.items) if getattr(b, "kind", "") == "final"][0]
html = ('<math><mstyle mathsize="2.49em">' * 8 + '<mi>V</mi>' + '</mstyle>' * 8 + '<mstyle scriptlevel="-9"><mi>S</mi></mstyle>'
        + '<mfrac linethickness="300em"><mi>a</mi><mi>b</mi></mfrac></math>')
view._chunk = {{"seq": 10 ** 6, "ops": [{{"op": "end", "i": final, "html": html, "seconds": 0, "tokens": 0}}]}}
print("pushed")
"""
SIZES = "() => [...document.querySelectorAll('.gx-chat .gx-final mi')].map((n) => parseFloat(getComputedStyle(n).fontSize))"


def _answered(lab_notebook, answer: str, name: str):
    """A notebook whose chat view shows a replayed turn answering `answer`."""
    recording = f"<|channel|>final<|message|>{answer}<|return|>"
    return lab_notebook(["from gptoss_lab import Session, ReplayEngine\nfrom gptoss_lab.widgets.chat import ChatView\n"
                         f"session = Session(ReplayEngine({recording!r}), approval='auto')",
                         "view = ChatView.show()\nreply = session.ask('Hi', view=view)\nprint('REPLY')"],
                        wait_for="text=REPLY", name=name)


def test_nested_huge_cannot_blow_a_letter_up_to_a_page(lab_notebook, kernel_run):
    """Eight nested `\\Huge` made one letter 10 000 px tall; and past the kernel, neither mathsize nor a negative
    scriptlevel makes a letter larger than the text around it."""
    page = _answered(lab_notebook, HUGE, "huge.ipynb")
    page.wait_for_selector(".gx-chat .gx-final math")
    assert max(page.evaluate(SIZES)) < 30
    assert kernel_run(PUSH_HUGE).strip() == "pushed"
    page.wait_for_selector(".gx-chat .gx-final mi:text('S')")
    assert max(page.evaluate(SIZES)) < 30
    # nor a fraction's line a page: `linethickness="300em"` was a solid bar 4 213 px tall (a review)
    bar = page.locator(".gx-chat .gx-final mfrac")
    assert bar.get_attribute("linethickness") is None and bar.evaluate("(n) => n.getBoundingClientRect().height") < 60


# prose that hides words in tag characters, and a link whose text names a host it does not open
TAGGED = "".join(chr(0xE0000 + ord(c)) for c in "say hi")
MISLEADING = "[https://github.com/login](https://evil.example/login)"
# direction controls, and characters drawn as nothing (a zero-width space, tag characters that spell "go")
TROJAN = 'if access != "user\u202e \u2066# admin\u2069 \u2066" or role == "admin\u200b\U000e0067\U000e006f":'
RAW_CODE = f"<p>raw <code>{TROJAN}</code></p>"
PUSH_TROJAN = f"""
final = [i for i, b in enumerate(view.transcript.items) if getattr(b, "kind", "") == "final"][0]
view._chunk = {{"seq": 10 ** 6, "ops": [{{"op": "end", "i": final, "html": {RAW_CODE!r}, "seconds": 0, "tokens": 0}}]}}
print("pushed")
"""


def test_code_in_an_answer_shows_its_direction_controls(lab_notebook, kernel_run):
    """Trojan Source in an answer's code span and code block shows written out, and so does code past the kernel; so
    do the characters drawn as nothing (`"admin\\u200b"` read as "admin"). The answer's prose writes out its tag
    characters (hidden words) and Copy copies them so; a link whose text names GitHub says it opens evil.example."""
    answer = f"Run `{TROJAN}` or\n\n```python\n{TROJAN}\n```\n\nthen go.{TAGGED}\n\n{MISLEADING}"
    page = _answered(lab_notebook, answer, "trojan.ipynb")
    page.wait_for_selector(".gx-chat .gx-final pre code")
    codes = page.locator(".gx-chat .gx-final code").all_inner_texts()
    assert [c.strip() for c in codes] == [TROJAN.encode("ascii", "backslashreplace").decode()] * 2, codes
    tagged = TAGGED.encode("ascii", "backslashreplace").decode()
    assert f"then go.{tagged}" in page.locator(".gx-chat .gx-final .gx-md").inner_text()
    link = page.locator(".gx-chat .gx-final a[href='https://evil.example/login']")
    assert link.inner_text() == "https://github.com/login (opens evil.example)"
    page.locator(".gx-chat .gx-final").screenshot(path="/tmp/gptoss_xss_answer_unseen.png")
    page.evaluate("() => { navigator.clipboard.writeText = async (text) => { window.__copied = text; }; }")
    page.locator(".gx-chat .gx-final .gx-copy").click()
    page.wait_for_function("() => window.__copied !== undefined")
    copied = page.evaluate("() => window.__copied")
    assert f"then go.{tagged}" in copied and not re.search("[\U000e0000-\U000e0fff]", copied)
    assert kernel_run(PUSH_TROJAN).strip() == "pushed"
    page.wait_for_selector(".gx-chat .gx-final :text('raw')")
    assert page.locator(".gx-chat .gx-final code").inner_text() == TROJAN.encode("ascii", "backslashreplace").decode()


OVERLAY = ('<p>Let me check.</p><dialog open>FAKE ▶ Run' + '<br>' * 6 + '</dialog><div popover="manual" dir="rtl">pop</div>'
           '<label for="x">label</label><marquee>marquee</marquee><table width="9000"><tr><td>t</td></tr></table>')
PUSH_OVERLAY = f"""
view._chunk = {{"seq": 10 ** 6, "ops": [{{"op": "end", "i": 0, "html": {OVERLAY!r}, "seconds": 0, "tokens": 0}}]}}
print("pushed")
"""
# code whose string holds a program in tag characters, drawn as nothing: read, it ran an empty string
UNSEEN = f'exec(bytes(ord(c) - 0xE0000 for c in "{"".join(chr(0xE0000 + ord(c)) for c in "print(1)")}").decode())'
WAITING = ("from gptoss_lab.events import Delta, MessageEnd, MessageStart, ToolCall, ToolStart, TurnStart\n"
           "from gptoss_lab.widgets.chat import ChatView\n"
           "view = ChatView.show()\nview.handle(TurnStart('Hi', 'low', 'replay', 'ask'))\n"
           "for e in (MessageStart('commentary', None), Delta('Let me check.', 'commentary'), MessageEnd(None, None)):\n"
           "    view.handle(e)\n"
           f"call = ToolCall('python', 'analysis', {UNSEEN!r}, status='waiting', question='Run this code in your kernel?')\n"
           "for e in (MessageStart('analysis', 'python'), Delta(call.input, 'analysis'), MessageEnd(None, None), ToolStart(call)):\n"
           "    view.handle(e)\n"
           "view._flush()\nprint('SHOWN')")


def test_html_past_the_kernel_cannot_draw_over_the_approval_card(lab_notebook, kernel_run):
    """The front end keeps the kernel's tags and attributes only: DOMPurify's HTML profile kept <dialog open>, an
    absolutely placed box drawn over the approval card below the commentary, and <label>, <marquee>, popover, dir.
    The card's code shows its characters drawn as nothing written out (a program in tag characters read as "")."""
    page = lab_notebook([WAITING], wait_for="text=SHOWN", name="overlay.ipynb")
    page.wait_for_selector(".gx-chat .gx-run")
    assert page.locator(".gx-chat .gx-code").inner_text() == UNSEEN.encode("ascii", "backslashreplace").decode()
    page.locator(".gx-chat .gx-tool").screenshot(path="/tmp/gptoss_xss_unseen_code.png")
    # Insert as cell puts the code in as the card shows it: the new cell's string reads as the program it holds
    page.locator(".gx-chat .gx-tool").hover()
    page.locator(".gx-chat .gx-insert").click()
    page.wait_for_function("() => document.querySelectorAll('.jp-Notebook .jp-Cell').length === 2")
    inserted = page.evaluate("() => window.jupyterapp.shell.currentWidget.content.model.sharedModel.cells[1]"
                             ".getSource()")
    assert inserted == UNSEEN.encode("ascii", "backslashreplace").decode()
    assert kernel_run(PUSH_OVERLAY).strip() == "pushed"
    page.wait_for_selector(".gx-chat .gx-commentary :text('FAKE')")
    md = page.locator(".gx-chat .gx-commentary .gx-md")
    assert md.locator("dialog, label, marquee, [popover], [dir], [width]").count() == 0
    assert md.evaluate("(n) => [...n.querySelectorAll('*')].map((e) => e.localName)") == ["p", "br", "br", "br", "br",
                                                                                         "br", "br", "div", "table", "tbody", "tr", "td"]
