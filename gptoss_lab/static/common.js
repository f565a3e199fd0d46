// Shared by every view module: gptoss_lab.widgets.esm() puts this file in front of chat.js and
// routing.js (anywidget loads one module from a blob URL, so a relative import cannot work), after
// the vendored DOMPurify (static/vendor/purify.min.js), which it gives this module as `DOMPurify`.

function h(tag, cls, text) {
  // A DOM element with a class and text content (never innerHTML).
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function expertColor(e) {
  // Golden-ratio hue walk, the same as gptoss_lab's matplotlib expert colormap.
  const hue = (e * 0.618034) % 1, s = 0.55 + (0.25 * (e % 3)) / 2, v = 0.95 - (0.2 * (Math.floor(e / 3) % 3)) / 2;
  const i = Math.floor(hue * 6), f = hue * 6 - i, p = v * (1 - s), q = v * (1 - f * s), t = v * (1 - (1 - f) * s);
  const [r, g, b] = [[v, t, p], [q, v, p], [p, v, t], [p, q, v], [t, p, v], [v, p, q]][i % 6];
  return `rgb(${Math.round(r * 255)},${Math.round(g * 255)},${Math.round(b * 255)})`;
}

function grouped(n) {
  // A count with its digits grouped, "12,288", as the kernel writes one (gptoss_lab.events.counted): the same in any
  // browser language (toLocaleString() wrote "12.288" in a German one, and the routing view "12288").
  return Number(n).toLocaleString("en-US");
}

function counted(n, noun) {
  // `n` things, plural unless one: "1 token", "12,288 tokens" (gptoss_lab.events.counted).
  return `${grouped(n)} ${noun}${n === 1 ? "" : "s"}`;
}

// ---------------------------------------------------------------- sanitised HTML
// The kernel already sanitises every fragment (gptoss_lab/widgets/sanitize.py); this is the second,
// independent allow-list, applied before anything touches the DOM: the kernel's tags and attributes and no more
// (DOMPurify's own HTML profile keeps <dialog open>, drawn over the approval card below it, <label for> that clicks
// a control elsewhere in JupyterLab, and data-commandlinker-command, a JupyterLab command run on click), links to
// http(s)/mailto opening in a new tab without an opener, no style or class that could restyle the page.

// The attributes of each HTML element, as the kernel keeps them (widgets/sanitize.py `_cleaner`): no title on any (a
// link's title was its name for a screen reader, "Source 1: …", and passed for a citation chip); a chip's name, role
// and tabindex (widgets/citations.py) and a tool card's name (widgets/transcript.py); dir="auto" on prose.
const HTML_ATTRS = new Map([["a", ["href", "aria-label", "tabindex", "role"]], ["ol", ["start"]],
  ["table", ["aria-label"]], ["th", ["style"]], ["td", ["style"]], ["details", ["open"]], ["sup", ["data-cite"]],
  ...["div", "p", "li", "h4", "h5", "h6"].map((tag) => [tag, ["dir"]])].map(([tag, names]) => [tag, new Set(names)]));
// The classes each element may carry: Pygments' short token classes on a span (highlighted code), and the browser's
// chips, sources and cards (widgets/citations.py; a chip's popup is its data-cite text); the kernel's other classes
// are the saved transcript's own blocks, which a live view draws itself.
const PYGMENTS = /^[a-z]{1,3}[0-9]?$/;
const CLASSES = new Map(Object.entries({
  span: ["gx-browse-source", "gx-browse-snippet", "gx-browse-n", "gx-cite-lines", "gx-tex"], code: ["gx-math"],
  div: ["gx-cite-head", "gx-browse", "gx-browse-head", "gx-browse-note"], details: ["gx-browse-raw"],
  pre: ["gx-code", "gx-output", "gx-browse-lines"], sup: ["gx-cite", "gx-cite-missing"],
  ol: ["gx-cite-sources"], ul: ["gx-browse-results"]}).map(([tag, names]) => [tag, new Set(names)]));
// The one value each of these may have, as in the kernel: a chip with no link is reached by Tab in the page's order
// and read as a reference to a note; prose reads in its first letter's direction (no text turned right to left).
const ONLY = new Map([["tabindex", "0"], ["role", "doc-noteref"], ["dir", "auto"]]);
// No mathcolor / mathbackground: \color{white} hid text on a white page.
const MATH_ATTRS = new Set(["display", "displaystyle", "scriptlevel", "mathvariant",
  "stretchy", "fence", "separator", "accent", "accentunder", "largeop", "movablelimits", "symmetric", "lspace",
  "rspace", "minsize", "maxsize", "linethickness", "width", "height", "depth", "voffset", "columnalign", "rowalign",
  "columnspacing", "rowspacing", "columnlines", "rowlines", "frame", "framespacing", "columnspan", "rowspan",
  "notation", "open", "close", "separators", "align", "xmlns", "encoding"]);
const PURIFY = {
  // No h1-h3 (the kernel shows a model's headings three levels down): none becomes an entry of the page's outline.
  ALLOWED_TAGS: ["a", "abbr", "b", "blockquote", "br", "code", "del", "details", "div", "em", "h4", "h5", "h6", "hr",
    "i", "kbd", "li", "ol", "p", "pre", "s", "span", "strong", "sub", "summary", "sup", "table", "tbody", "td",
    "tfoot", "th", "thead", "tr", "ul", "math", "mi", "mn", "mo", "ms", "mspace", "mtext", "mrow",
    "mfrac", "msqrt", "mroot", "mstyle", "merror", "mpadded", "mphantom", "mfenced", "menclose", "msub", "msup",
    "msubsup", "munder", "mover", "munderover", "mmultiscripts", "mprescripts", "none", "mtable", "mtr", "mtd",
    "mlabeledtr", "semantics", "annotation"],
  ALLOWED_ATTR: ["class", ...[...HTML_ATTRS.values()].flatMap((names) => [...names]), ...MATH_ATTRS],
  ALLOW_DATA_ATTR: false,
  ALLOW_ARIA_ATTR: false,   // aria-label only where the kernel keeps it (above)
  RETURN_DOM_FRAGMENT: true,
};
// Links only to http(s) and mailto (checked in the hook: DOMPurify's ALLOWED_URI_REGEXP applies to the value
// of every attribute, and would drop MathML's display, linethickness ... and a list's start), written as the kernel
// requires: "http:lab/tree" and "http:\\host" (a page of this server, another host) are no http:// link there.
const LINK_OK = /^(?:https?:\/\/|mailto:)/i;
// MathML lengths a formula could use to paint outside its own box (\smash{\raise{30em}{...}} over the page
// above): mpadded's are dropped, and no length may be negative or larger than 12 em (as in widgets/sanitize.py).
// A fraction's line at most 0.5 em (\above 300em drew a bar 4 213 px tall).
const MATH_LENGTHS = new Set(["width", "height", "depth", "lspace", "rspace", "voffset", "minsize", "maxsize",
  "linethickness"]);
const EM = {"": 1, em: 1, ex: 0.5, px: 1 / 16, pt: 1 / 12, pc: 1, in: 6, cm: 2.362, mm: 0.2362, mu: 1 / 18, "%": 0.01};

function smallLength(value, limit = 12) {
  // A non-negative length of at most `limit` em, or a named one (thinmathspace, thick).
  if (/^\s*[a-z]+\s*$/i.test(value)) return !/^\s*negative/i.test(value);   // negativeveryverythickmathspace
  const m = /^\s*(\d*\.?\d+)\s*([a-z%]*)\s*$/i.exec(value);
  const unit = m && EM[m[2].toLowerCase()];
  return Boolean(unit) && parseFloat(m[1]) * unit <= limit;
}
const MATHML = "http://www.w3.org/1998/Math/MathML";
// Text a reader is shown or read (a chip's cited lines, its name): DOMPurify drops any attribute whose value holds
// "-->", "]>" or "</style" (SAFE_FOR_XML, against markup re-read from a serialised string), so a chip citing
// "parse --> tokens" lost its popup and its name. Those two, once allowed, are set again on the node as text: nothing
// re-reads them.
const TEXT_ATTRS = new Set(["data-cite", "aria-label"]);
const TEXT_KEPT = new WeakMap();   // node -> [[name, value], ...]

function purifyHooks() {
  DOMPurify.addHook("uponSanitizeAttribute", (node, data) => {
    const name = data.attrName, tag = node.localName;
    if (node.namespaceURI === MATHML ? !MATH_ATTRS.has(name)
      : !(name === "class" ? CLASSES.has(tag) : HTML_ATTRS.get(tag)?.has(name))) {
      data.keepAttr = false;      // not on this element (<table width=...>, <a title=...>, <span role=...>)
    } else if (ONLY.has(name)) {
      data.keepAttr = data.attrValue === ONLY.get(name);
    } else if (name === "style") {       // only a table column's alignment
      data.keepAttr = /^\s*text-align:\s*(left|right|center)\s*;?\s*$/i.test(data.attrValue);
    } else if (name === "class") {
      data.attrValue = data.attrValue.split(/\s+/)
        .filter((c) => (tag === "span" && PYGMENTS.test(c)) || CLASSES.get(tag).has(c)).join(" ");
      data.keepAttr = data.attrValue !== "";
    } else if (name === "href") {
      data.keepAttr = LINK_OK.test(data.attrValue.trim());
    } else if (node.namespaceURI === MATHML && MATH_LENGTHS.has(name)) {
      data.keepAttr = node.localName !== "mpadded" && smallLength(data.attrValue, name === "linethickness" ? 0.5 : 12);
    } else if (name === "scriptlevel") {   // no larger font at each step (and no mathsize at all: nested \Huge)
      data.keepAttr = !data.attrValue.trim().startsWith("-");
    } else if (TEXT_ATTRS.has(name)) {
      TEXT_KEPT.set(node, [...(TEXT_KEPT.get(node) || []), [name, data.attrValue]]);
    }
  });
  DOMPurify.addHook("afterSanitizeAttributes", (node) => {
    for (const [name, value] of TEXT_KEPT.get(node) || []) node.setAttribute(name, value);
    TEXT_KEPT.delete(node);
    if (node.nodeName !== "A") return;
    if (node.hasAttribute("href")) {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer");
    } else {
      node.removeAttribute("target");
    }
  });
}
if (DOMPurify.isSupported) purifyHooks();

function safeHTML(html) {
  // A DOM fragment of sanitised nodes (never a string put back through innerHTML); where DOMPurify
  // cannot run, the markup is shown as text.
  if (!DOMPurify.isSupported) return document.createTextNode(String(html));
  return DOMPurify.sanitize(String(html), PURIFY);
}

function setHTML(node, html) {
  node.replaceChildren(safeHTML(html));
}

// ---------------------------------------------------------------- the saved notebook
// JupyterLab and Notebook 7 give the widget manager the notebook's document context; VS Code, Colab and
// others do not, and a view then does without it (documented fallbacks).
const WIDGET_MIME = "application/vnd.jupyter.widget-view+json";

function notebookContext(model) {
  const ctx = model.widget_manager && model.widget_manager.context;
  return ctx && ctx.model && ctx.model.sharedModel && ctx.saveState ? ctx : null;
}

function outputsOf(cell) {
  const outputs = cell.ymodel && cell.ymodel.get && cell.ymodel.get("outputs");
  if (!outputs) return [];
  const list = [];
  for (let i = 0; i < outputs.length; i++) {
    const out = outputs.get(i);
    const data = out && (out.get ? out.get("data") : out.data);
    if (data) list.push(data);
  }
  return list;
}

// A saved notebook keeps each view as still MIME data (the chat's transcript, the routing view's picture), not as a
// widget reference: JupyterLab and Notebook 7 draw a reference over every other data of its output, and once the
// kernel is gone it reopens as "Error displaying widget: model not found". Just before the notebook is serialised,
// the output data of each view (found by the model id in `_id`) loses the reference and gets `still(model)` in place
// (no change event, so the live view stays); it is swapped back once the file is written.
const SAVERS = new WeakMap();   // document context -> Map(model id -> [model, still])

function saveStill(ctx, model, still) {
  let views = SAVERS.get(ctx);
  if (!views) {
    views = new Map();
    SAVERS.set(ctx, views);
    const swapped = [];
    ctx.saveState.connect((_, state) => {
      if (state === "started") {
        for (const cell of ctx.model.sharedModel.cells) {
          for (const data of outputsOf(cell)) {
            const ref = data[WIDGET_MIME];
            const owner = ref && views.get(ref.model_id);
            if (!owner) continue;
            swapped.push([data, { ...data }]);
            delete data[WIDGET_MIME];
            Object.assign(data, owner[1](owner[0]));
          }
        }
      } else {
        for (const [data, original] of swapped.splice(0)) {
          for (const key of Object.keys(data)) delete data[key];
          Object.assign(data, original);
        }
      }
    });
  }
  views.set(model.get("_id"), [model, still]);
}
