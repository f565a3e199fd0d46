"""Hostile model text in real Chromium: no script runs and nothing reaches the kernel, in the live chat view,
in the saved notebook reopened in JupyterLab (trusted, so Lab does not sanitise it) and in nbconvert's HTML.

The front end's own sanitizer is tested apart: HTML that skips the kernel's is pushed into the view.
Every payload calls `window.__hit()` if it ever runs; the page defines it to raise a flag and to ask the
kernel to create a marker file. A positive control at the end proves that detector works.
Screenshot: /tmp/gptoss_xss_live.png (the payloads shown as text, links without targets).
"""
from __future__ import annotations

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
]
# HTML the kernel would never send (its sanitizer removes all of it): pushed straight into the view to
# show that the front end's own sanitizer (DOMPurify) stops it before the DOM.
RAW = "".join([
    f"<img src=x onerror={HIT}>", f'<a href="javascript:{HIT}">raw link</a>', f'<svg onload="{HIT}"></svg>',
    f'<math><mi href="javascript:{HIT}">m</mi></math>', f'<iframe srcdoc="<script>parent.__hit()</script>"></iframe>',
    f'<div style="position:fixed;inset:0;z-index:99" onclick="{HIT}">overlay</div>',
    '<span class="gx-run jp-Dialog nb">spoofed classes</span>', f'<form action="javascript:{HIT}"><input></form>',
    '<math><mpadded voffset="30em" height="0"><mtext>lifted</mtext></mpadded><mspace width="-40em"/></math>',
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
            && !(tag === 'style' && node.parentElement.classList.contains('gx-fallback'))) bad.push(tag);
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
    assert page.locator(".gx-final mpadded[voffset], .gx-final mpadded[height], .gx-final mspace[width]").count() == 0
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

    # Positive control: the detector does see a script that runs and does reach the kernel.
    open_notebook("xss.ipynb", kernel=True)
    page.evaluate(HIT)
    deadline = time.monotonic() + 15
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert page.evaluate("() => window.__pwned") == 1 and marker.exists()
    marker.unlink()
