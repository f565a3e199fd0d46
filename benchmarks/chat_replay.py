"""How long the chat view takes to draw a finished turn it was not there for (a tab reloaded, a view drawn after the
turn): the turn's snapshot, a cited answer of about 100 kB, replayed into the view in headless Chromium.

    python benchmarks/chat_replay.py [--paragraphs 300] [--runs 5]

The snapshot is what the kernel's ChatView sends for such a turn (its Markdown sent as it completed, the end with
the answer's HTML, the end again with its citation chips). Measured: the view's render() of it and the layout that
follows (ms), and how often the answer was sanitised (DOMPurify runs, counted in the page).

Measured 2026-12-07 in headless Debian Chromium on 2 shared cores (load 6-7), a 114,396-character answer (a snapshot
of 182 operations, 0.9 MB), 7 draws each, old and new alternating, before -> after the view applies only the last of
the answer's drawings in a batch: DOMPurify runs 61 -> 2 (the answer with its chips, its Sources), the same 372,837
characters of HTML drawn; render medians 343-738 ms -> 185-294 ms, with layout 466-920 ms -> 272-537 ms (single draws
vary twofold with the load).
"""
from __future__ import annotations

import contextlib
import io
import json
import statistics

from gptoss_lab.arguments import Parser
from gptoss_lab.events import Citation, Delta, MessageEnd, MessageStart, Reply, TurnEnd, TurnStart
from gptoss_lab.widgets import asset, esm
from gptoss_lab.widgets.chat import ChatView

PARAGRAPH = ("The **report** says the budget grew by 4 % in the last year, with `costs` cut elsewhere and a new "
             "[site](https://example.org/a) opened 【0†L1-L2】. ")
CITES = [Citation("【0†L1-L2】", 0, 1, 2, "https://example.org/a", "A page", "line one\nline two"),
         Citation("【0†L3-L4】", 0, 3, 4, "https://example.org/a", "A page", "line three\nline four")]
# The view of a page with no notebook around it; DOMPurify's sanitize counted, then the snapshot replayed.
DRAW = """async ([module, snapshot, runs]) => {
  const url = URL.createObjectURL(new Blob([module], { type: "text/javascript" }));
  const { default: widget } = await import(url);
  const times = [];
  for (let run = 0; run < runs; run++) {
    const el = document.createElement("div");
    document.body.replaceChildren(el);
    const state = { _snapshot: snapshot, _chunk: {}, _last: true, _static: {}, _id: "" };
    const model = { get: (name) => state[name], on() {}, off() {}, send() {} };
    window.__sanitized = 0;
    const t0 = performance.now();
    widget.render({ model, el });
    const drawn = performance.now();
    void document.body.offsetHeight;   // the layout it asks for
    times.push([drawn - t0, performance.now() - t0, window.__sanitized, el.innerHTML.length]);
  }
  return times;
}"""


def snapshot(paragraphs: int) -> tuple[int, dict]:
    """The length of a cited answer and its turn's snapshot, as the kernel's ChatView makes it."""
    view = ChatView()
    with contextlib.redirect_stdout(io.StringIO()):   # outside a kernel, showing the view prints its repr
        view.handle(TurnStart("Summarise the documents", "low", "replay", "auto"))
    view.handle(MessageStart("final", None))
    text = "".join(f"{PARAGRAPH * 3}\n\n" if i % 7 else f"- item {i} 【0†L3-L4】\n- second\n\n"
                   for i in range(paragraphs))
    for n, at in enumerate(range(0, len(text), 40)):   # 40 characters a token, a batch every 50 of them
        view.handle(Delta(text[at:at + 40], "final"))
        if n % 50 == 0:
            view._flush()
    view.handle(MessageEnd(None, None))
    view.handle(TurnEnd(Reply("Summarise the documents", final=text, citations=CITES)))
    return len(text), view._all_ops()


def main() -> None:
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paragraphs", type=int, default=300)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    size, snap = snapshot(args.paragraphs)
    # count DOMPurify.sanitize calls: the module's own copy, wrapped where common.js starts
    module = esm("chat.js").replace("\nfunction h(tag", "\nconst _sanitize = DOMPurify.sanitize;\nDOMPurify.sanitize = "
                                    "(...a) => { window.__sanitized++; return _sanitize(...a); };\nfunction h(tag", 1)
    css = asset("chat.css").read_text() + asset("citations.css").read_text()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 900, "height": 800})
        page.set_content(f"<style>{css}</style><body></body>")
        times = page.evaluate(DRAW, [module, snap, args.runs])
        browser.close()
    print(f"answer {size:,} characters, snapshot {len(json.dumps(snap)):,} bytes, {len(snap['ops'])} operations")
    for render, drawn, sanitized, shown in times:
        print(f"render {render:7.1f} ms  with layout {drawn:7.1f} ms  sanitize calls {sanitized}  HTML {shown:,}")
    print(f"median: render {statistics.median(t[0] for t in times):.1f} ms, "
          f"with layout {statistics.median(t[1] for t in times):.1f} ms")


if __name__ == "__main__":
    main()
