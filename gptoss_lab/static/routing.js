// RoutingView: the state and events of the expert-routing view (drawing is in routing_draw.js).
// Data arrives as arrays [tokens, layers, k], expert ids uint16 and gate weights float32 (a snapshot,
// then batched appends); the grid zooms from "whole record in the width" to wide cells with token text,
// scrolls horizontally, and redraws on resize and theme change. Clicking an expert asks the kernel for its card.
// By keyboard the grid and the load bars are one tab stop each (WAI-ARIA grid and toolbar): arrows move a ringed
// active cell or bar, named for screen readers through aria-activedescendant; moving or Enter does what a click does.

function typed(view, Type) {
  // A DataView from the kernel (maybe unaligned) -> its own typed array; anything else (a notebook file's widget state
  // can hold any JSON, bytes of any length) is empty, and the arrays' lengths are checked (misshapen).
  if (!ArrayBuffer.isView(view) || view.byteLength % Type.BYTES_PER_ELEMENT) return new Type(0);
  return new Type(view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength));
}

function u16(view) { return typed(view, Uint16Array); }

function f32(view) { return typed(view, Float32Array); } // gate weights: a NaN stays NaN

// A record's bounds, as the kernel's (routing/record.py MAX_LAYERS, MAX_TOP_K, MAX_EXPERT + 1): a view's state can
// come from a notebook file's widget state, not the kernel, and one saying a million layers drew a million-entry
// layer menu and froze the tab.
const LIMITS = { L: 1024, k: 256, E: 32768 };

function misshapen(L, k, E, strings, labels, experts, weights) {
  // Why data is no routing record the view can draw ("" if it is one): counts out of bounds, arrays of other
  // lengths than [tokens, layers, k], tokens or labels that are not text.
  const whole = (x, top) => Number.isInteger(x) && x >= 0 && x <= top;
  if (!whole(L, LIMITS.L) || !whole(k, LIMITS.k) || !whole(E, LIMITS.E)) {
    return `${L} layers × top-${k} of ${E} experts is past a record's ${LIMITS.L} × ${LIMITS.k} of ${LIMITS.E}`;
  }
  const text = (list) => Array.isArray(list) && list.every((x) => typeof x === "string");
  if (!text(strings) || !text(labels) || labels.length !== strings.length) return "its tokens or labels are not text";
  const n = strings.length * L * k;
  if (experts.length !== n || weights.length !== n) return `its arrays are not ${counted(n, "value")} long`;
  return "";
}

const MAX_CELL = 32;
const GRID_KEYS = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] }; // [token, layer] steps

function setAttrs(node, attrs) { for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value); }

function placeTip(tip, box, x, y, above = false) {
  // Show a tooltip right of (x, y) in `box`, kept inside its width: below it, or `above` (the load chart is the view's
  // foot, where the output cut a tooltip below the pointer off).
  tip.style.display = "block";
  tip.style.left = `${Math.max(Math.min(x + 14, box.clientWidth - tip.offsetWidth - 4), 0)}px`;
  tip.style.top = `${above ? Math.max(y - tip.offsetHeight - 8, 0) : y + 14}px`;
}

// A record's end draws its view's output anew (widgets/routing.py finish_output): the new view takes over where the
// one it replaces was (active cell and bar, scroll, open card) and the keyboard focus that the old one lost with it,
// and disposes of the old one (anywidget never calls its cleanup on this redraw: its listeners stayed on the model).
const LATEST = new Map();   // a model's id -> its view drawn last (a WeakRef): each view has a model object of its own
const FOCUSABLE = "button, select, input, [tabindex]";

class RoutingGrid {
  constructor(model, host) {
    this.model = model;
    this.data = { n: 0, L: 0, k: 0, E: 0, total: 0, experts: new Uint16Array(0), weights: new Float32Array(0),
                  strings: [], labels: [] };
    this.palette = expertPalette(0);
    this.shares = null;      // expert-load bars, recomputed only when the data or the filter changes
    this.card = null;        // the open expert card: {layer, expert, ...} or null
    this.active = { t: 0, l: 0 }; // the keyboard's cell of the grid (a click moves it too)
    this.activeExpert = 0;   // the keyboard's bar of the load
    this.keyed = false;      // the active cell was last moved by keyboard (its layer's row scrolls into the panel)
    this.byKeys = false;     // the view was last used by keyboard: its hints name keys, not clicks
    this.uid = `gr${Math.random().toString(36).slice(2, 10)}`; // for the active cell's and bar's ids
    this.frame = 0;
    this.build(host);
    this.listen();
    this.loadSnapshot();
    model.send({ kind: "sync", have: this.data.n }); // tokens that arrived after the synced snapshot
  }

  // ---------------------------------------------------------------- DOM

  build(host) {
    const control = (text, node) => { const label = h("label", "gr-control"); label.append(h("span", "", text), node); return label; };
    this.root = h("div", "gptoss-routing");
    this.summary = h("span", "gr-summary");
    this.channelSelect = h("select", "gr-channel");
    this.channelSelect.title = "Show only the tokens of one channel (the others are faded)";
    this.zoomRange = h("input", "gr-zoom");
    Object.assign(this.zoomRange, { type: "range", min: 0, max: 1000, value: 0, title: "Cell width: from the whole record to 32 px per token" });
    this.fitButton = h("button", "gr-fit", "Fit");
    this.fitButton.title = "Show every token in the width";
    const head = h("div", "gr-head");
    head.append(h("span", "gr-title", "Expert routing"), this.summary, h("span", "gr-spacer"),
                control("Channel", this.channelSelect), control("Zoom", this.zoomRange), this.fitButton);
    this.canvas = h("canvas", "gr-canvas");
    this.tooltip = h("div", "gr-tooltip");
    this.tooltip.setAttribute("aria-hidden", "true"); // the active cell's name says it to a screen reader
    this.cursor = h("div", "gr-cursor");
    this.cursor.setAttribute("role", "gridcell");
    const cursorRow = h("div", "gr-cursor-row");
    cursorRow.setAttribute("role", "row");
    cursorRow.append(this.cursor);
    this.gridBox = h("div", "gr-grid");
    setAttrs(this.gridBox, { tabindex: "0", role: "grid", "aria-label": "Expert routing, tokens by layers: arrow keys move, "
      + "Home and End go to the first and last token, Page Up and Page Down to the first and last layer, moving or Enter "
      + "shows the token's experts, E opens the expert card" });
    this.gridBox.append(this.canvas, this.tooltip, cursorRow);
    this.scroller = h("div", "gr-scroll");
    this.scroller.title = "Scroll through the tokens (or use the mouse wheel on the grid; Ctrl + wheel zooms)";
    this.spacer = h("div", "gr-scroll-spacer");
    this.scroller.append(this.spacer);
    this.legend = h("div", "gr-legend");
    this.layerSelect = h("select", "gr-layer");
    this.layerSelect.title = "Layer whose expert load is shown (choose one to open expert cards from the bars)";
    const loadHead = h("div", "gr-head gr-load-head");
    this.loadHint = h("span", "gr-hint");
    this.loadScope = h("span", "gr-load-scope");   // under a channel filter: the bars count that channel's tokens only
    loadHead.append(h("span", "gr-subtitle", "Expert load"), this.loadScope, this.loadHint,
                    h("span", "gr-spacer"), control("Layer", this.layerSelect));
    this.loadCanvas = h("canvas", "gr-load");
    this.barCursor = h("div", "gr-cursor");
    this.barCursor.setAttribute("role", "button");
    this.loadBox = h("div", "gr-load-box");
    setAttrs(this.loadBox, { tabindex: "0", role: "toolbar",
                             "aria-label": "Expert load: arrow keys choose an expert, Enter opens its card" });
    this.loadTip = h("div", "gr-tooltip");
    this.loadTip.setAttribute("aria-hidden", "true"); // the active bar's name says it to a screen reader
    this.loadBox.append(this.loadCanvas, this.barCursor, this.loadTip);
    this.panel = h("div", "gr-panel");
    this.cardBox = h("div", "gr-card");
    this.root.append(head, this.gridBox, this.scroller, this.legend, loadHead, this.loadBox, this.cardBox, this.panel);
    host.append(this.root);
  }

  listen() {
    const m = this.model;
    this.handlers = {
      "change:experts": () => this.loadSnapshot(), "change:labels": () => this.loadSnapshot(),
      "change:channel": () => { this.shares = null; this.refresh(); }, "change:layer": () => { this.shares = null; this.refresh(); },
      "change:selected": () => { this.followSelected(); this.schedule(); }, "change:zoom": () => this.refresh(), "change:total": () => this.refresh(),
      "change:intervention": () => this.refresh(),
      "msg:custom": (msg, buffers) => this.onMessage(msg, buffers),
    };
    for (const [name, fn] of Object.entries(this.handlers)) m.on(name, fn);
    this.channelSelect.addEventListener("change", () => this.save("channel", this.channelSelect.value));
    this.layerSelect.addEventListener("change", () => { const l = Number(this.layerSelect.value); this.save("layer", l < 0 ? null : l); });
    this.zoomRange.addEventListener("input", () => this.zoomTo(this.cellFromRange(), this.anchor()));
    this.zoomRange.addEventListener("keydown", (e) => this.zoomKey(e));
    this.fitButton.addEventListener("click", () => this.save("zoom", 0));
    this.canvas.addEventListener("mousemove", (e) => this.hover(e));
    this.canvas.addEventListener("mouseleave", () => { this.tooltip.style.display = "none"; });
    this.canvas.addEventListener("click", (e) => this.click(e));
    this.canvas.addEventListener("dblclick", (e) => { const hit = this.cellAt(e); if (hit) this.openCell(hit.t, hit.l); });
    this.canvas.addEventListener("wheel", (e) => this.wheel(e), { passive: false });
    this.loadCanvas.addEventListener("click", (e) => this.clickLoad(e));
    this.loadCanvas.addEventListener("mousemove", (e) => this.hoverLoad(e));
    this.loadCanvas.addEventListener("mouseleave", () => { this.loadTip.style.display = "none"; });
    this.gridBox.addEventListener("keydown", (e) => this.gridKey(e));
    this.gridBox.addEventListener("focus", () => this.focusGrid());
    this.gridBox.addEventListener("blur", () => { this.tooltip.style.display = "none"; });
    this.loadBox.addEventListener("keydown", (e) => this.loadKey(e));
    this.root.addEventListener("keydown", () => this.useKeys(true), true);
    this.root.addEventListener("pointerdown", () => this.useKeys(false), true);
    this.root.addEventListener("focusin", (e) => {
      this.lost = null;
      if (e.target.matches(":focus-visible")) this.useKeys(true);   // Tab into the view
    });
    this.root.addEventListener("focusout", (e) => {   // to nowhere: also as the output is drawn anew, taking this view
      this.lost = e.relatedTarget ? null : { at: performance.now(), index: this.focusables().indexOf(e.target) };
    });
    this.scroller.addEventListener("scroll", () => this.schedule());
    this.resize = new ResizeObserver(() => this.schedule());
    this.resize.observe(this.root);
    this.theme = new MutationObserver(() => this.restyle()); // JupyterLab switches themes on <body>
    this.theme.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-name", "data-jp-theme-light", "class"] });
  }

  destroy() {
    for (const [name, fn] of Object.entries(this.handlers)) this.model.off(name, fn);
    this.resize.disconnect();
    this.theme.disconnect();
    clearInterval(this.restyling);
    if (this.frame) cancelAnimationFrame(this.frame);
  }

  save(name, value) { this.model.set(name, value); this.model.save_changes(); }

  shownLayer() {
    // The layer of the load bars, -1 for all: the kernel's null (a notebook saved before it stored -1 for all layers).
    const layer = this.model.get("layer");
    return layer === null || layer < 0 ? -1 : layer;
  }

  focusables() { return [...this.root.querySelectorAll(FOCUSABLE)]; }

  takeOver() {
    // Drawn for the first time: where the view of this model that this one replaced (gone from the page) was, and the
    // index of what had focus in it if it lost focus as it went; -1 if nothing is taken over. The old view is disposed of.
    const old = LATEST.get(this.model.get("_id"))?.deref();
    LATEST.set(this.model.get("_id"), new WeakRef(this));
    if (!old || old === this || old.root.isConnected) return -1;
    old.destroy();
    Object.assign(this, { active: old.active, activeExpert: old.activeExpert, card: old.card, keyed: old.keyed });
    this.scroller.scrollLeft = old.scroller.scrollLeft;
    this.drawCard();
    const card = this.card;    // asked for again: the record may have changed since (its labels, at a turn's end)
    if (card && card.layer >= 0 && !card.error) this.model.send({ kind: "card", layer: card.layer, expert: card.expert });
    return old.lost && performance.now() - old.lost.at < 2000 ? old.lost.index : -1;
  }

  // ---------------------------------------------------------------- data

  loadSnapshot() {
    const m = this.model, d = this.data;
    const [L, k, E, strings, labels] = ["layers", "top_k", "num_experts", "strings", "labels"].map((name) => m.get(name));
    const experts = u16(m.get("experts")), weights = f32(m.get("weights"));
    this.broken = misshapen(L, k, E, strings, labels, experts, weights);
    Object.assign(d, this.broken ? { L: 0, k: 0, E: 0, experts: new Uint16Array(0), weights: new Float32Array(0),
      strings: [], labels: [] } : { L, k, E, experts, weights, strings: strings.slice(), labels: labels.slice() });
    d.n = d.strings.length;
    this.measured = { font: "", n: 0, length: 0 };
    this.palette = expertPalette(d.E);
    this.shares = null;
    this.refresh();
  }

  reserve(size) {
    const d = this.data, need = size * d.L * d.k;
    if (d.experts.length >= need) return;
    const cap = Math.max(need, 2 * d.experts.length);
    for (const key of ["experts", "weights"]) {
      const grown = new d[key].constructor(cap);
      grown.set(d[key].subarray(0, d.n * d.L * d.k));
      d[key] = grown;
    }
  }

  onMessage(msg, buffers) {
    if (!msg) return;
    if (msg.kind === "card") {
      if (this.card && msg.card.layer === this.card.layer && msg.card.expert === this.card.expert) { this.card = msg.card; this.drawCard(); }
      return;
    }
    if (msg.kind !== "append" || this.broken) return;
    const d = this.data;
    if (msg.start > d.n) { this.model.send({ kind: "sync", have: d.n }); return; }
    const skip = d.n - msg.start, count = msg.strings.length - skip;
    if (count <= 0) return;
    if (msg.num_experts !== d.E) this.palette = expertPalette(msg.num_experts);
    d.L = msg.layers; d.k = msg.top_k; d.E = msg.num_experts;
    const atEnd = this.scroller.scrollLeft + this.scroller.clientWidth >= this.scroller.scrollWidth - 2;
    const per = d.L * d.k;
    this.reserve(d.n + count);
    d.experts.set(u16(buffers[0]).subarray(skip * per), d.n * per);
    d.weights.set(f32(buffers[1]).subarray(skip * per), d.n * per);
    for (let i = skip; i < msg.strings.length; i++) { d.strings.push(msg.strings[i]); d.labels.push(msg.labels[i]); }
    d.n += count;
    this.shares = null;
    this.refresh();
    if (atEnd) requestAnimationFrame(() => { this.scroller.scrollLeft = this.scroller.scrollWidth; });
  }

  isVisible() {
    const channel = this.model.get("channel"), labels = this.data.labels;
    return channel ? (t) => labels[t] === channel : () => true;
  }

  // ---------------------------------------------------------------- zoom and controls

  fitCell(width) { return (width || this.grid().gridW) / Math.max(this.data.n, 1); }

  cell(width) {
    const zoom = this.model.get("zoom"), fit = this.fitCell(width);
    return zoom > 0 ? Math.max(fit, Math.min(zoom, MAX_CELL)) : Math.min(fit, MAX_CELL);
  }

  cellFromRange() {
    // The slider is logarithmic between "fit" and MAX_CELL px per token.
    const fit = Math.min(this.fitCell(), MAX_CELL), f = Number(this.zoomRange.value) / 1000;
    return fit * Math.pow(MAX_CELL / fit, f);
  }

  anchor() {
    // Where the slider zooms about: the selected token, which stays where it is (in view), else the middle
    const t = this.model.get("selected"), width = this.grid().gridW;
    const x = t >= 0 ? (t + 0.5) * this.cell() - this.scroller.scrollLeft : -1;
    return x >= 0 && x <= width ? x : width / 2;
  }

  zoomTo(cell, anchorX) {
    const old = this.cell(), token = (this.scroller.scrollLeft + anchorX) / old;
    const fit = this.fitCell();
    this.save("zoom", cell <= fit * 1.001 ? 0 : Math.min(cell, MAX_CELL));
    this.spacer.style.width = `${this.data.n * this.cell()}px`;
    this.scroller.scrollLeft = token * this.cell() - anchorX;
    this.schedule();
  }

  zoomKey(event) {
    // The slider's own arrow keys move it one step of its 1000, which the grid rounds back to where it was: by keyboard
    // it never zoomed. An arrow zooms by a quarter (as Ctrl + wheel does), a Page key by twice that; Home and End
    // (the whole record, 32 px per token) stay the slider's.
    const factor = { ArrowRight: 1.25, ArrowUp: 1.25, PageUp: 2, ArrowLeft: 0.8, ArrowDown: 0.8, PageDown: 0.5 }[event.key];
    if (!factor || event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
    event.preventDefault();
    event.stopPropagation();   // not the notebook's: Up and Down moved to another cell
    this.zoomTo(this.cell() * factor, this.anchor());
  }

  setOptions(select, options, value) {
    const key = options.map((o) => o[0]).join("\u0000");
    if (select.dataset.key !== key) {
      select.replaceChildren(...options.map(([v, text]) => { const o = h("option", "", text); o.value = v; return o; }));
      select.dataset.key = key;
    }
    select.value = String(value);
  }

  refresh() {
    // Controls, summary, legend and scroll width for the current data, then a redraw.
    const d = this.data;
    const channels = [...new Set(d.labels.filter((x) => x))];
    this.setOptions(this.channelSelect, [["", "all"], ...channels.map((c) => [c, shownLabel(c)])], this.model.get("channel"));
    this.setOptions(this.layerSelect, [["-1", "all layers"], ...Array.from({ length: d.L }, (_, i) => [String(i), `layer ${i}`])], this.shownLayer());
    this.drawHints();
    const channel = this.model.get("channel");
    this.loadScope.textContent = channel ? `of the ${counted(d.labels.filter((x) => x === channel).length, `${shownLabel(channel)} token`)} only` : "";
    const total = Math.max(this.model.get("total"), d.n);
    const under = this.model.get("intervention");   // an ablated turn's grid read as the model's own routing
    this.summary.textContent = `${counted(d.n, "token")} × ${counted(d.L, "layer")} × top-${d.k} of ${counted(d.E, "expert")}`
      + (total > d.n ? ` (the first ${grouped(d.n)} of ${grouped(total)} are shown)` : "")
      + (under ? `; routed under an intervention: ${under}` : "")
      + (this.broken ? `; this view's data is no routing record (${this.broken}): nothing is drawn` : "");
    this.legend.replaceChildren(...legend(d));
    const fit = Math.min(this.fitCell(), MAX_CELL), cell = this.cell();
    this.zoomRange.value = String(fit >= MAX_CELL ? 0 : Math.round((1000 * Math.log(cell / fit)) / Math.log(MAX_CELL / fit)));
    this.spacer.style.width = `${d.n * cell}px`;
    setAttrs(this.gridBox, { "aria-rowcount": d.L, "aria-colcount": d.n });
    this.schedule();
  }

  useKeys(byKeys) {
    // Used by keyboard (a key, Tab in) or by mouse: the hints shown say its keys or its clicks.
    if (this.byKeys === byKeys) return;
    this.byKeys = byKeys;
    this.drawHints();
  }

  drawHints() {
    const said = hints(this.byKeys), panel = this.panel.querySelector(".gr-hint");
    this.loadHint.textContent = this.shownLayer() < 0 ? "choose a layer (right) for experts' cards" : said.load;
    if (panel) panel.textContent = said.panel;
  }

  // ---------------------------------------------------------------- drawing

  restyle() {
    // The new theme's stylesheet lands after <body> changes, and the old one goes first: for two seconds,
    // redraw whenever the text colour differs from the one the canvas was last drawn with.
    clearInterval(this.restyling);
    let ticks = 0;
    this.restyling = setInterval(() => {
      if (getComputedStyle(this.root).color !== this.drawnColor) this.schedule();
      if (++ticks >= 40) clearInterval(this.restyling);
    }, 50);
    this.schedule();
  }

  schedule() {
    if (!this.frame) this.frame = requestAnimationFrame(() => { this.frame = 0; this.draw(); });
  }

  grid() {
    const width = this.gridBox.clientWidth, cell = this.cell(Math.max(width - GUTTER - 4, 1));
    return gridLayout(this.data, width, cell, cell >= TEXT_CELL ? this.textLength() : 0);
  }

  textLength() {
    // The longest token text on the axis (px) of the whole record, so scrolling keeps the grid's height: each token
    // measured once (all again in another font).
    const m = this.measured, d = this.data, font = this.mono || "monospace";
    if (m.font !== font) Object.assign(m, { font, n: 0, length: 0 });
    if (m.n < d.n) Object.assign(m, { n: d.n, length: Math.max(m.length, longestText(this.canvas, d.strings, m.n, font)) });
    return m.length;
  }

  style() {
    const css = getComputedStyle(this.root);
    return { color: css.color, font: css.fontFamily, mono: css.getPropertyValue("--gr-mono").trim() || "monospace",
             rule: css.getPropertyValue("--gr-rule").trim() || "#ccc", muted: css.getPropertyValue("--gr-muted").trim() || "#777" };
  }

  draw() {
    if (this.gridBox.clientWidth < 60) return; // hidden (or being laid out): the ResizeObserver calls again
    const focus = this.drawn ? -1 : this.takeOver();
    this.drawn = true;
    const start = performance.now(), style = this.style(), isVisible = this.isVisible();
    this.drawnColor = style.color;
    this.mono = style.mono;
    const lay = this.grid();
    this.spacer.style.width = `${this.data.n * lay.cell}px`;
    drawGrid(this.canvas, this.data, lay, { scroll: this.scroller.scrollLeft, isVisible, palette: this.palette,
                                            selected: this.model.get("selected") }, style);
    if (!this.shares) this.shares = loadShares(this.data, this.shownLayer(), isVisible);
    this.bars = drawLoad(this.loadCanvas, lay.width, this.shares, style, this.palette);
    this.placeCursor(lay);
    this.placeBarCursor();
    this.drawPanel();
    const lost = document.activeElement === document.body || !document.activeElement;   // not taken elsewhere since
    if (focus >= 0 && lost) this.focusables()[focus]?.focus({ preventScroll: true });
    this.root.dataset.drawMs = (performance.now() - start).toFixed(1);
  }

  drawPanel() {
    const t = this.model.get("selected"), had = this.panel.contains(document.activeElement);
    if (t < 0 || t >= this.data.n) {
      this.panel.replaceChildren(); this.panel.classList.remove("gr-open"); this.panelToken = -1;
    } else if (this.panelToken !== t || this.panelN !== this.data.n) {
      this.panelToken = t; this.panelN = this.data.n;
      this.panel.classList.add("gr-open");
      this.panel.replaceChildren(...tokenPanel(this.data, t, (l, e) => this.openCard(l, e), () => this.save("selected", -1),
                                                 this.byKeys));
      this.markLayer();
    }
    // Focus on the panel's × (Enter closed it) goes back to the grid, where tokens are chosen, not to the page's <body>
    if (had && !this.panel.contains(document.activeElement)) this.gridBox.focus({ preventScroll: true });
  }

  markLayer() {
    // The token panel's row of the active cell's layer stands out (and, moved to by keyboard, scrolls into the panel).
    const rows = this.panel.querySelectorAll(".gr-panel-layer");
    rows.forEach((row, l) => { row.classList.toggle("gr-here", l === this.active.l); });
    const row = rows[this.active.l];
    if (!this.keyed || !row) return;
    const box = this.panel.getBoundingClientRect(), at = row.getBoundingClientRect();
    if (at.top < box.top) this.panel.scrollTop -= box.top - at.top;
    else if (at.bottom > box.bottom) this.panel.scrollTop += at.bottom - box.bottom;
  }

  drawCard() {
    // Drawn anew (another expert's card from one of its chips, the kernel's answer, closed by its ×), the card keeps
    // keyboard focus that was in it on its title, or once closed gives it back to what opened it (a bar, a token's pick):
    // it dropped to the page's <body>.
    const had = this.cardBox.contains(document.activeElement);
    if (!had && this.root.contains(document.activeElement)) this.opener = document.activeElement;
    this.cardBox.classList.toggle("gr-open", !!this.card);
    this.cardBox.replaceChildren(...(this.card ? cardPanel(this.card, (l, e) => this.openCard(l, e),
                                                           () => { this.card = null; this.drawCard(); }) : []));
    if (!had) return;
    const title = this.cardBox.querySelector(".gr-panel-title b");
    if (title) title.tabIndex = -1;
    const back = this.opener && this.opener.isConnected ? this.opener : this.loadBox;
    (title || back).focus({ preventScroll: true });
  }

  openCell(t, l) {
    // The card of the expert a cell shows (token t's top-1 at layer l): a double-click's and the grid's E key's.
    const d = this.data;
    if (d.k) this.openCard(l, d.experts[(t * d.L + l) * d.k]);
  }

  openCard(layer, expert) {
    if (expert === EMPTY_SLOT || layer < 0) return;
    this.card = { layer, expert, waiting: true };
    this.drawCard();
    this.model.send({ kind: "card", layer, expert });
  }

  // ---------------------------------------------------------------- keyboard

  placeCursor(lay) {
    // The active cell's ring, and its name for a screen reader (a new id per cell, so each move is announced).
    const d = this.data;
    if (!d.n || !d.L) { this.gridBox.removeAttribute("aria-activedescendant"); this.cursor.classList.add("gr-off"); return; }
    const t = Math.min(this.active.t, d.n - 1), l = Math.min(this.active.l, d.L - 1);
    this.active = { t, l };
    const box = cellBox(lay, this.scroller.scrollLeft, t, l);
    this.cursor.classList.toggle("gr-off", !box);
    if (box) for (const key of ["left", "top", "width", "height"]) this.cursor.style[key] = `${box[key]}px`;
    this.cursor.id = `${this.uid}-t${t}-l${l}`;
    setAttrs(this.cursor, { "aria-label": cellLabel(d, t, l), "aria-colindex": t + 1,
                            "aria-selected": String(t === this.model.get("selected")) });
    this.cursor.parentNode.setAttribute("aria-rowindex", l + 1);
    this.gridBox.setAttribute("aria-activedescendant", this.cursor.id);
  }

  placeBarCursor() {
    // The active bar's ring (the whole column, so a bar of 0 shows too) and its name.
    const E = this.shares ? this.shares.length : 0;
    if (!E || !this.bars) { this.loadBox.removeAttribute("aria-activedescendant"); this.barCursor.classList.add("gr-off"); return; }
    const e = Math.min(this.activeExpert, E - 1), bw = this.bars.bw, width = Math.max(bw, 8);
    this.activeExpert = e;
    this.barCursor.classList.remove("gr-off");
    Object.assign(this.barCursor.style, { left: `${GUTTER + (e + 0.5) * bw - width / 2}px`, top: `${this.bars.top}px`,
                                          width: `${width}px`, height: `${this.bars.bottom - this.bars.top}px` });
    this.barCursor.id = `${this.uid}-e${e}`;
    this.barCursor.setAttribute("aria-label", barLabel(e, this.shares[e], this.shownLayer(), this.loadScope.textContent));
    this.loadBox.setAttribute("aria-activedescendant", this.barCursor.id);
  }

  followSelected() {
    const t = this.model.get("selected");
    if (t >= 0) this.active.t = t;
  }

  focusGrid() {
    // Tabbing in with the active token scrolled away: the first token in view becomes active (nothing scrolls).
    const lay = this.grid(), first = Math.ceil(this.scroller.scrollLeft / lay.cell);
    if (this.data.n && !cellBox(lay, this.scroller.scrollLeft, this.active.t, this.active.l)) this.active.t = Math.min(first, this.data.n - 1);
    this.placeCursor(lay);
  }

  gridKey(event) {
    // Arrows, Home and End move the active cell and select its token; Page Up and Page Down move a page of rows (a
    // WAI-ARIA grid's), here every layer: to the first and last layer. Enter and Space select it (as a click does), E
    // opens its expert's card as well (as a double-click does; no JupyterLab key). With a modifier the key is JupyterLab's
    // (Shift+Enter runs the cell).
    const d = this.data, step = GRID_KEYS[event.key], card = event.key === "e" || event.key === "E";
    if (event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
    let { t, l } = this.active;
    if (step) { t += step[0]; l += step[1]; }
    else if (event.key === "Home") t = 0;
    else if (event.key === "End") t = d.n - 1;
    else if (event.key === "PageUp") l = 0;
    else if (event.key === "PageDown") l = d.L - 1;
    else if (event.key !== "Enter" && event.key !== " " && !card) return;
    event.preventDefault();
    event.stopPropagation(); // not the notebook's: Up and Down moved to another cell, Enter edited this one
    if (!d.n || !d.L) return;
    this.active = { t: Math.max(0, Math.min(t, d.n - 1)), l: Math.max(0, Math.min(l, d.L - 1)) };
    const lay = this.grid(), x = this.active.t * lay.cell;
    if (x < this.scroller.scrollLeft) this.scroller.scrollLeft = x;
    else if (x + lay.cell > this.scroller.scrollLeft + lay.gridW) this.scroller.scrollLeft = x + lay.cell - lay.gridW;
    this.placeCursor(lay);
    const box = cellBox(lay, this.scroller.scrollLeft, this.active.t, this.active.l);
    if (box) this.showTip(this.active.t, this.active.l, box.left + box.width / 2, box.top + box.height, true);
    this.keyed = true;
    if (this.model.get("selected") !== this.active.t) this.save("selected", this.active.t);
    this.markLayer();
    if (card) this.openCell(this.active.t, this.active.l);
  }

  loadKey(event) {
    // Left and Right (Home, End) choose a bar; Enter and Space do what a click on it does.
    const E = this.shares ? this.shares.length : 0, moves = { ArrowLeft: -1, ArrowRight: 1 };
    if (event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
    let e = this.activeExpert;
    if (event.key in moves) e += moves[event.key];
    else if (event.key === "Home") e = 0;
    else if (event.key === "End") e = E - 1;
    else if (event.key !== "Enter" && event.key !== " ") return;
    event.preventDefault();
    event.stopPropagation();
    if (!E) return;
    this.activeExpert = Math.max(0, Math.min(e, E - 1));
    this.placeBarCursor();
    if (event.key === "Enter" || event.key === " ") this.pickExpert(this.activeExpert);
  }

  // ---------------------------------------------------------------- pointer

  cellAt(event) {
    const box = this.canvas.getBoundingClientRect(), lay = this.grid();
    const x = event.clientX - box.left, y = event.clientY - box.top;
    const t = Math.floor((x - GUTTER + this.scroller.scrollLeft) / lay.cell), l = Math.floor((y - lay.gridTop) / lay.rowH);
    if (x < GUTTER || t < 0 || t >= this.data.n || l < 0 || l >= this.data.L) return null;
    return { t, l, x, y };
  }

  hover(event) {
    const hit = this.cellAt(event);
    if (!hit) { this.tooltip.style.display = "none"; return; }
    this.showTip(hit.t, hit.l, hit.x, hit.y, false);
  }

  showTip(t, l, x, y, byKeys) {
    // The tooltip of token t at layer l, below and right of (x, y) in the grid, its hint for the keyboard or mouse.
    this.tooltip.replaceChildren(...tipRows(this.data, t, l, byKeys));
    placeTip(this.tooltip, this.gridBox, x, y);
  }

  barAt(event) {
    // The expert whose bar (its whole column) is under the pointer, and the pointer in the chart; null off the bars.
    if (!this.bars || !this.shares) return null;
    const box = this.loadCanvas.getBoundingClientRect(), x = event.clientX - box.left, y = event.clientY - box.top;
    const e = Math.floor((x - GUTTER) / this.bars.bw);
    return x < GUTTER || e < 0 || e >= this.shares.length ? null : { e, x, y };
  }

  hoverLoad(event) {
    // A bar's tooltip says what its name says to the keyboard: the expert and its share of the picks.
    const hit = this.barAt(event);
    if (!hit) { this.loadTip.style.display = "none"; return; }
    const name = barLabel(hit.e, this.shares[hit.e], this.shownLayer(), this.loadScope.textContent);
    this.loadTip.replaceChildren(h("div", "gr-tip-title", name));
    placeTip(this.loadTip, this.loadBox, hit.x, hit.y, true);
  }

  click(event) {
    const box = this.canvas.getBoundingClientRect(), lay = this.grid();
    if (event.clientX - box.left < GUTTER) { // the layer numbers: show that layer's load
      const l = Math.floor((event.clientY - box.top - lay.gridTop) / lay.rowH);
      if (l >= 0 && l < this.data.L) this.save("layer", l);
      return;
    }
    const hit = this.cellAt(event);
    if (!hit) return;
    this.active = { t: hit.t, l: hit.l };
    this.keyed = false;
    this.save("selected", hit.t);
    this.placeCursor(this.grid());
    this.markLayer();
  }

  clickLoad(event) {
    const hit = this.barAt(event);
    if (!hit) return;
    this.activeExpert = hit.e;
    this.placeBarCursor();
    this.pickExpert(hit.e);
  }

  pickExpert(e) {
    // A load bar's action: expert e's card of the layer shown (with all layers shown, why there is none).
    const layer = this.shownLayer();
    if (layer < 0) {
      this.card = { layer: -1, expert: e, error: "an expert's card is of one layer: choose it (right, above the bars)" };
      this.drawCard();
      return;
    }
    this.openCard(layer, e);
  }

  wheel(event) {
    const box = this.canvas.getBoundingClientRect(), x = Math.max(event.clientX - box.left - GUTTER, 0);
    if (event.ctrlKey || event.metaKey) {
      this.zoomTo(this.cell() * (event.deltaY < 0 ? 1.25 : 0.8), x);
      event.preventDefault();
      return;
    }
    const delta = Math.abs(event.deltaX) > Math.abs(event.deltaY) ? event.deltaX : event.deltaY;
    if (!delta || this.scroller.scrollWidth <= this.scroller.clientWidth) return;
    this.scroller.scrollLeft += delta;
    event.preventDefault();
  }
}

function render({ model, el }) {
  const view = new RoutingGrid(model, el);
  const ctx = notebookContext(model);
  if (ctx) saveStill(ctx, model, () => ({}));   // saved as the picture and summary the kernel put beside it
  return () => view.destroy();
}

export default { render };
