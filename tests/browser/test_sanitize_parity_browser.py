"""The kernel's sanitizer (nh3, widgets/sanitize.py) and the front end's (DOMPurify, static/common.js) on one hostile
corpus, in real Chromium with no Jupyter server: mutation XSS, namespace confusion, script and data links written with
entities and whitespace, CSS that fetches, forms, <base>, <meta refresh>, srcset, SVG <use>, <iframe srcdoc>.

Each payload is drawn as every form draws model text: the kernel's HTML put in the page as it is (a trusted saved
notebook, which no front-end sanitizer sees), the same through DOMPurify (the live view), and the raw payload through
DOMPurify alone (HTML that skipped the kernel). Nothing may run, nothing may be fetched (every request the page makes
is counted), the page may not navigate, and the two allow-lists must agree: what one keeps, the other keeps as it is.
A model's Markdown (`markdown_html`) shows its HTML as text. Screenshot: /tmp/gptoss_sanitize_parity.png.
"""
from __future__ import annotations

import re

import pytest

from gptoss_lab.events import Citation, ToolCall
from gptoss_lab.widgets import esm
from gptoss_lab.widgets.citations import card_html, sources_html, with_chips
from gptoss_lab.widgets.sanitize import sanitize
from gptoss_lab.widgets.transcript import markdown_html

HIT = "__hit()"
EVIL = "https://evil.example"
CORPUS = [
    # mutation XSS: markup that a second parse reads otherwise than the first
    f"<svg><style><img src=x onerror={HIT}>",
    f'<svg></p><style><a id="</style><img src=1 onerror={HIT}>">',
    f'<noscript><p title="</noscript><img src=x onerror={HIT}>">',
    f"<template><img src=x onerror={HIT}></template>",
    f"<math><mtext><table><mglyph><style><img src=x onerror={HIT}>",
    f'<math><mtext><h1><a><h6></a></h6><mglyph><svg><mtext><style><a title="</style><img src onerror={HIT}>">',
    f"<form><math><mtext></form><form><mglyph><style></math><img src onerror={HIT}>",
    f'<math><semantics><annotation-xml encoding="text/html"><img src=x onerror={HIT}></annotation-xml></semantics></math>',
    f"<math><annotation encoding=text/html><img src=x onerror={HIT}></annotation></math>",
    f"<svg><foreignObject><img src=x onerror={HIT}></foreignObject></svg>",
    f'<math><maction actiontype="statusline" xlink:href="javascript:{HIT}"><mi>x</mi></maction></math>',
    f'<math href="javascript:{HIT}"><mi xlink:href="javascript:{HIT}">m</mi></math>',
    f"<svg><animate onbegin={HIT} attributeName=x dur=1s></animate><set attributeName=onmouseover to={HIT}></set></svg>",
    f'<table><tr><td>cell</td></tr><img src=x onerror={HIT}></table>',
    # links: script and data schemes, hidden by entities, case and whitespace
    f'<a href="javascript:{HIT}">js</a>',
    f'<a href="JaVaScRiPt&colon;{HIT}">colon entity</a>',
    f'<a href="jav&#x09;ascript:{HIT}">tab entity</a>',
    f'<a href="&#106;avascript:{HIT}">decimal entity</a>',
    f'<a href="  \x01javascript:{HIT}">control and spaces</a>',
    f'<a href="java\nscript:{HIT}">newline</a>',
    f'<a href="data:text/html,<script>parent.{HIT}</script>">data</a>',
    '<a href="vbscript:msgbox(1)">vbs</a>',
    f'<a href="java\tscript:{HIT}">tab</a><a href="&#x6A;avascript&#x3A;{HIT}">hex</a><a href="javascript&NewLine;:{HIT}">nl</a>',
    f'<svg><a xlink:href="javascript:{HIT}"><text y="20">svg link</text></a></svg>',
    f'<math><mtext><a href="javascript:{HIT}">in mtext</a></mtext><mi><a href="javascript:{HIT}">in mi</a></mi></math>',
    # boxes that would cover the page (the approval card): no style but a column's alignment, no direction
    '<a href="https://ok.example" style="position:fixed;inset:0;z-index:9">cover</a><p dir="rtl">rtl</p>',
    '<table><tr><td style="text-align:left;position:fixed;top:0">td fixed</td></tr></table>',
    f'<a href="{EVIL}/a" target="_self" ping="{EVIL}/ping" download>no rel</a>',
    '<a href="/api/kernels">relative</a><a href="//evil.example/x">protocol relative</a>',
    # what fetches or navigates without a click
    f"<img src={EVIL}/img.png>",
    f'<img srcset="{EVIL}/srcset.png 1x"><picture><source srcset="{EVIL}/picture.png"></picture>',
    f'<video poster="{EVIL}/poster.png"><source src="{EVIL}/v.mp4"></video><audio src="{EVIL}/a.mp3"></audio>',
    f'<svg><use href="{EVIL}/use.svg#x"></use><use xlink:href="{EVIL}/use2.svg#x"></use><image href="{EVIL}/i.png"/></svg>',
    f'<div style="background:url({EVIL}/css.png)">css url</div>',
    f'<p style="width:expression({HIT})">expression</p>',
    f'<table><tr><td style="text-align:left;background-image:url({EVIL}/td.png)">td</td></tr></table>',
    f"<style>@import url({EVIL}/import.css); body{{background:url({EVIL}/body.png)}}</style>",
    f'<link rel="stylesheet" href="{EVIL}/link.css"><link rel="prefetch" href="{EVIL}/prefetch">',
    f'<base href="{EVIL}/"><a href="relative-after-base">after base</a>',
    f'<meta http-equiv="refresh" content="0;url={EVIL}/meta">',
    f'<iframe srcdoc="<script>parent.{HIT}</script>"></iframe><iframe src="{EVIL}/frame"></iframe>',
    f'<object data="{EVIL}/o.swf"></object><embed src="{EVIL}/e.swf">',
    f'<form action="{EVIL}/form"><input name=q value=1><button formaction="javascript:{HIT}">go</button></form>',
    f'<input type=image src="{EVIL}/input.png"><table background="{EVIL}/bg.png"><tr><td>bg</td></tr></table>',
    # handlers on kept elements
    f"<details open ontoggle={HIT}><summary onclick={HIT}>summary</summary>inside</details>",
    f'<a href="https://ok.example" onclick="{HIT}" onmouseover="{HIT}">handler</a>',
    f'<div popover id="x" onbeforetoggle="{HIT}">popover</div><button popovertarget="x">open</button>',
    f'<svg onload="{HIT}"><circle r=9 /></svg><body onload="{HIT}">',
    f"<input autofocus onfocus={HIT}><select autofocus onfocus={HIT}></select><textarea autofocus onfocus={HIT}>",
    f"<marquee onstart={HIT}>marquee</marquee>",
    "&lt;script&gt;entities stay text&lt;/script&gt; &amp;lt;img&amp;gt;",
]
# Markdown a model writes: the front end must keep all the kernel renders of it (else the live view loses it)
MARKDOWN = [
    "| left | centre | right |\n|:-|:-:|-:|\n| `a` | **b** | [c](https://c.example \"title\") |",
    "# Title\n\n## Sub\n\n---\n\n1. one\n2. two\n   - nested *em* ~~struck~~\n\n> quote\n> > deeper",
    "```python\ndef f(x):\n    return {'a': x}  # comment\n```\n\n```js\"><img src=x>\nlet a = 1;\n```",
    "$\\frac{a}{b} + \\sqrt[3]{x} + \\mathbf{v} + \\text{text} + \\hspace{3em} \\overbrace{a+b}^{n}$",
    "$$\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix} \\quad \\sum_{i=0}^{n} i^2 \\quad \\mathbb{R}$$",
    "Text[^1] and &copy; &amp; &#x1F600; <https://auto.example> mailto:a@b.example ![img](https://i.example/a.png)",
    "Line one  \nline two\\\nline three\n\n    indented code",
    # a link whose text names another host says which it opens; hidden words in tag characters are written out, an emoji
    # flag's tags and a joiner kept
    "[https://github.com/login](https://evil.example/login) 3.15." + "".join(chr(0xE0000 + ord(c)) for c in "say hi")
    + " \U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f \U0001f469\u200d\U0001f4bb",
]
# The lab's own markup around hostile page text (citation chips, sources, a search's card), as the live view gets it
HOSTILE = f'<img src=x onerror={HIT}> "</style><svg onload={HIT}>'
CITED = [Citation("【0†L1-L2】", 0, 1, 2, f"{EVIL}/page?<b>", "Arrows --> and <!-- comments -->",
                  "parse --> tokens --> tree\nDict[str, list[int]]> and </style> in a page about CSS"),
         Citation("【1†L1-L1】", 1, 1, 1, f"javascript:{HIT}", HOSTILE, HOSTILE)]
SEARCH = ToolCall("browser.search", "analysis", '{"query": "owls"}', status="done", output="[0] owls", data={
    "kind": "search", "cursor": 0, "query": HOSTILE, "title": "", "url": "", "start": 0, "end": 0, "total": 0,
    "lines": [], "results": [{"id": 0, "title": HOSTILE, "url": f"{EVIL}/r", "source": HOSTILE, "snippet": HOSTILE}]})


def _lab_markup() -> list[str]:
    return [with_chips(markdown_html("Owls 【0†L1-L2】 hunt 【1†L1-L1】."), CITED), sources_html(CITED), card_html(SEARCH)]


PAGE = """<!doctype html><meta charset="utf-8"><body><div id="out"></div></body>"""
# The front end's sanitizer as the views load it (gptoss_lab.widgets.esm), and helpers: draw HTML three ways, and a
# form of a DOM that sorts attributes, so two serializations of the same tree compare equal.
HELPERS = """
window.__hits = 0;
window.__hit = () => { window.__hits += 1; };
const canon = (node) => {
  if (node.nodeType === 3) return node.data.replace(/[&<>]/g, (c) => ({'&': '&amp;', '<': '&lt;', '>': '&gt;'})[c]);
  if (node.nodeType !== 1) return '';
  // an empty class (nh3 keeps `class=""` where it drops every class) and a link's target and rel where it has no
  // address (nh3 sets them on every <a>, the front end only on a link) say nothing
  const said = (a) => !(a.name === 'class' && a.value.trim() === '')
    && !(node.localName === 'a' && !node.hasAttribute('href') && ['target', 'rel'].includes(a.name));
  const attrs = [...node.attributes].filter(said)
    .map((a) => `${a.name}="${a.value}"`).sort().join(' ');
  const ns = node.namespaceURI === 'http://www.w3.org/1999/xhtml' ? '' : node.namespaceURI.split('/').pop() + ':';
  return `<${ns}${node.localName}${attrs ? ' ' + attrs : ''}>${[...node.childNodes].map(canon).join('')}</${node.localName}>`;
};
window.__canon = (html) => { const t = document.createElement('template'); t.innerHTML = html;
  return [...t.content.childNodes].map(canon).join(''); };
window.__purified = (html) => { const d = document.createElement('div'); d.append(safeHTML(html)); return d.innerHTML; };
window.__draw = (html, how) => {
  const box = document.createElement('div');
  box.className = 'case';
  box.dataset.how = how;
  if (how === 'as-is') box.append(document.createRange().createContextualFragment(html));   // scripts would run
  else box.append(safeHTML(html));
  document.getElementById('out').append(box);
};
"""


@pytest.fixture()
def sanitizer_page(chromium):
    """A bare page with the views' sanitizer loaded; every request it makes is counted (and refused)."""
    page = chromium.new_page(viewport={"width": 1000, "height": 900})
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.route("**/*", lambda route: route.abort())
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.set_content(PAGE)
    page.add_script_tag(content=esm("chat.js").split("\n// ---------------------------------------------------------------- the saved notebook")[0]
                        .replace("const DOMPurify", "var DOMPurify") + HELPERS)
    page.requests, page.dialogs = requests, dialogs
    yield page
    page.close()


def _provoke(page) -> None:
    """Fire the events inline handlers listen to on everything drawn, and give loads and timers time to happen."""
    page.evaluate("""() => {
      for (const node of document.querySelectorAll('#out *')) {
        for (const type of ['mouseover', 'click', 'focus', 'toggle', 'load', 'error', 'beforetoggle', 'begin']) {
          if (type === 'click' && node.closest('a[href]')) continue;   // a real link would open a tab
          node.dispatchEvent(new Event(type));
        }
      }
    }""")
    page.wait_for_timeout(1500)


def test_both_sanitizers_keep_the_corpus_inert_and_agree(sanitizer_page) -> None:
    page = sanitizer_page
    assert page.evaluate("() => DOMPurify.isSupported && typeof safeHTML") == "function"
    kernel = [sanitize(payload, lab=False) for payload in CORPUS]
    markdown = [markdown_html(payload) for payload in CORPUS]
    front = page.evaluate("(payloads) => payloads.map(__purified)", CORPUS)
    for markup in _lab_markup():
        page.evaluate("(html) => __draw(html, 'purified')", markup)
    for payload, kept, purified, shown in zip(CORPUS, kernel, front, markdown):
        page.evaluate("([kept, payload, shown]) => { __draw(kept, 'as-is'); __draw(kept, 'purified');"
                      " __draw(payload, 'purified'); __draw(shown, 'as-is'); __draw(shown, 'purified'); }",
                      [kept, payload, shown])
    _provoke(page)
    page.screenshot(path="/tmp/gptoss_sanitize_parity.png", full_page=True)

    assert page.evaluate("() => window.__hits") == 0, "a payload ran"
    assert page.dialogs == []
    assert page.requests == [], f"the page fetched {page.requests}"
    assert page.url == "about:blank" and page.evaluate("() => document.baseURI") == "about:blank"
    live = page.evaluate("""() => [...document.querySelectorAll('#out *')].flatMap((node) => {
      const bad = ['script', 'iframe', 'object', 'embed', 'form', 'input', 'img', 'svg', 'style', 'base', 'meta', 'link',
                   'video', 'audio', 'source', 'picture', 'template', 'button', 'select', 'textarea']
        .includes(node.localName) ? [node.localName] : [];
      for (const a of node.attributes)
        if (/^on|^(src|srcset|action|formaction|poster|background|ping|xlink:href|popover|style)$/.test(a.name)
            && !(a.name === 'style' && /^text-align:\\s*\\w+;?$/.test(a.value))
            || (a.name === 'href' && !/^(https?:\\/\\/|mailto:)/i.test(a.value))) bad.push(`${node.localName} ${a.name}=${a.value}`);
      return bad; })""")
    assert live == [], live

    # the allow-lists agree: what the kernel keeps of a model's text, the front end keeps as it is; what the front end
    # keeps, the kernel's allow-list for the lab's own markup keeps as it is
    canon = lambda html: page.evaluate("(html) => __canon(html)", html)   # noqa: E731
    differ = []
    for payload, kept, purified in zip(CORPUS, kernel, front):
        if canon(page.evaluate("(html) => __purified(html)", kept)) != canon(kept):
            differ.append(("front end changes the kernel's", payload, canon(kept), canon(page.evaluate("(html) => __purified(html)", kept))))
        if canon(sanitize(purified)) != canon(purified):   # the front end draws the lab's markup too (a fold's `open`)
            differ.append(("kernel changes the front end's", payload, canon(purified), canon(sanitize(purified))))
    for text, kept in [*((text, markdown_html(text)) for text in MARKDOWN), *(("lab markup", m) for m in _lab_markup())]:
        if canon(page.evaluate("(html) => __purified(html)", kept)) != canon(kept):
            differ.append(("front end changes the kernel's Markdown", text, canon(kept), canon(page.evaluate("(html) => __purified(html)", kept))))
    assert differ == [], "\n".join(map(repr, differ))
    drawn = page.evaluate("(html) => { const d = document.createElement('div'); d.append(safeHTML(html));"
                          " return d.textContent; }", markdown_html(MARKDOWN[-1]))
    assert drawn.startswith("https://github.com/login (opens evil.example) 3.15.\\U000e0073\\U000e0061"), drawn
    assert drawn.rstrip().endswith(MARKDOWN[-1][-11:]), drawn
    # what that means for a reader: each live chip keeps its popup (the cited lines) and its name
    chips = page.evaluate("""() => [...document.querySelectorAll('#out sup.gx-cite')].map((sup) =>
      [sup.getAttribute('data-cite') || '', sup.querySelector('a').getAttribute('aria-label') || ''])""")
    assert len(chips) == 2 and "parse --> tokens --> tree" in chips[0][0] and "Arrows --> and" in chips[0][1], chips
    assert HOSTILE in chips[1][0] and HOSTILE.replace('"', "'") in chips[1][1], chips

    # a model's Markdown shows its HTML as text: every tag it wrote is read, none is lost
    for payload, shown in zip(CORPUS, markdown):
        text = page.evaluate("(html) => { const d = document.createElement('div'); d.append(safeHTML(html));"
                             " return d.textContent; }", shown)
        for tag in re.findall(r"<[a-zA-Z][a-zA-Z-]*", payload):
            assert tag in text, (payload, tag, text)

    # Positive control: an image put in the page unsanitized is fetched (and counted), and a handler that runs is seen.
    page.evaluate(f"() => {{ document.getElementById('out').innerHTML = '<img src={EVIL}/control.png onerror={HIT}>'; }}")
    page.wait_for_timeout(1000)
    assert page.requests == [f"{EVIL}/control.png"] and page.evaluate("() => window.__hits") == 1
