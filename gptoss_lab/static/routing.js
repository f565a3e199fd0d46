// RoutingView: token × layer grid of top-1 experts on a canvas, hover tooltip, token panel,
// per-layer expert-load bars and a channel filter. Data arrives as uint16 arrays [tokens, layers, k].

const GUTTER = 34; // px left of the grid for layer numbers
const STRIP = 6; // px band above the grid showing each token's channel
const CHANNEL_COLORS = {
  system: "#8c8c8c", developer: "#a0785a", user: "#4a90d9", tool: "#e8a33d",
  analysis: "#9b6ad6", commentary: "#3fb6a8", final: "#4caf50", format: "#c8c8c8",
};

function u16(view) {
  // A DataView from the kernel (maybe unaligned) -> its own Uint16Array.
  if (!view || !view.byteLength) return new Uint16Array(0);
  return new Uint16Array(view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength));
}

function render({ model, el: host }) {
  const state = { n: 0, L: 0, k: 0, E: 0, experts: new Uint16Array(0), weights: new Uint16Array(0),
                  strings: [], labels: [], cell: 4, hover: null };
  const colors = [];
  const color = (e) => colors[e] || (colors[e] = expertColor(e));

  const root = h("div", "gptoss-routing");
  const head = h("div", "gr-head");
  const title = h("span", "gr-title", "Expert routing");
  const summary = h("span", "gr-summary");
  const channelSelect = h("select", "gr-channel");
  channelSelect.title = "Show only the tokens of one channel";
  const zoom = h("input", "gr-zoom");
  Object.assign(zoom, { type: "range", min: 1, max: 16, value: state.cell, title: "Cell width" });
  head.append(title, summary, h("span", "gr-spacer"), channelSelect, zoom);

  const gridBox = h("div", "gr-grid");
  const canvas = h("canvas", "gr-canvas");
  const scroller = h("div", "gr-scroll");
  const spacer = h("div", "gr-scroll-spacer");
  scroller.append(spacer);
  const tooltip = h("div", "gr-tooltip");
  gridBox.append(canvas, scroller, tooltip);

  const loadHead = h("div", "gr-head gr-load-head");
  const layerSelect = h("select", "gr-layer");
  layerSelect.title = "Layer whose expert load is shown";
  loadHead.append(h("span", "gr-subtitle", "Expert load"), layerSelect);
  const loadCanvas = h("canvas", "gr-load");
  const panel = h("div", "gr-panel");
  root.append(head, gridBox, loadHead, loadCanvas, panel);
  host.append(root);

  // ---------------------------------------------------------------- data

  function reserve(size) {
    const need = size * state.L * state.k;
    if (state.experts.length >= need) return;
    const cap = Math.max(need, 2 * state.experts.length);
    for (const key of ["experts", "weights"]) {
      const grown = new Uint16Array(cap);
      grown.set(state[key].subarray(0, state.n * state.L * state.k));
      state[key] = grown;
    }
  }

  function loadSnapshot() {
    state.L = model.get("layers"); state.k = model.get("top_k"); state.E = model.get("num_experts");
    state.experts = u16(model.get("experts")); state.weights = u16(model.get("weights"));
    state.strings = model.get("strings").slice(); state.labels = model.get("labels").slice();
    state.n = state.strings.length;
    refreshControls();
    schedule();
  }

  function onAppend(msg, buffers) {
    if (!msg || msg.kind !== "append") return;
    if (msg.start > state.n) { model.send({ kind: "sync", have: state.n }); return; }
    const skip = state.n - msg.start, count = msg.strings.length - skip;
    if (count <= 0) return;
    state.L = msg.layers; state.k = msg.top_k; state.E = msg.num_experts;
    const atEnd = scroller.scrollLeft + scroller.clientWidth >= scroller.scrollWidth - 2;
    const per = state.L * state.k;
    reserve(state.n + count);
    state.experts.set(u16(buffers[0]).subarray(skip * per), state.n * per);
    state.weights.set(u16(buffers[1]).subarray(skip * per), state.n * per);
    state.strings.push(...msg.strings.slice(skip));
    state.labels.push(...msg.labels.slice(skip));
    state.n += count;
    refreshControls();
    if (atEnd) requestAnimationFrame(() => { scroller.scrollLeft = scroller.scrollWidth; });
    schedule();
  }

  const at = (t, l, r) => (t * state.L + l) * state.k + r;
  const visible = (t) => !model.get("channel") || state.labels[t] === model.get("channel");

  // ---------------------------------------------------------------- controls

  function setOptions(select, options, value) {
    const key = options.map((o) => o[0]).join("\u0000");
    if (select.dataset.key !== key) {
      select.replaceChildren(...options.map(([v, text]) => { const o = h("option", "", text); o.value = v; return o; }));
      select.dataset.key = key;
    }
    select.value = String(value);
  }

  function refreshControls() {
    const channels = [...new Set(state.labels.filter((x) => x))];
    setOptions(channelSelect, [["", "all channels"], ...channels.map((c) => [c, c])], model.get("channel"));
    const layers = [["-1", "all layers"], ...Array.from({ length: state.L }, (_, i) => [String(i), `layer ${i}`])];
    setOptions(layerSelect, layers, model.get("layer"));
    summary.textContent = `${state.n} tokens × ${state.L} layers × top-${state.k} of ${state.E} experts`;
    spacer.style.width = `${GUTTER + state.n * state.cell}px`;
  }

  channelSelect.addEventListener("change", () => { model.set("channel", channelSelect.value); model.save_changes(); });
  layerSelect.addEventListener("change", () => { model.set("layer", Number(layerSelect.value)); model.save_changes(); });
  zoom.addEventListener("input", () => {
    const first = scroller.scrollLeft / state.cell;
    state.cell = Number(zoom.value);
    refreshControls();
    scroller.scrollLeft = first * state.cell;
    schedule();
  });

  // ---------------------------------------------------------------- drawing

  let frame = 0;
  function schedule() {
    if (!frame) frame = requestAnimationFrame(() => { frame = 0; draw(); });
  }

  function sizeCanvas(c, width, height) {
    const dpr = window.devicePixelRatio || 1;
    if (c.width !== Math.round(width * dpr) || c.height !== Math.round(height * dpr)) {
      c.width = Math.round(width * dpr); c.height = Math.round(height * dpr);
      c.style.width = `${width}px`; c.style.height = `${height}px`;
    }
    const ctx = c.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    return ctx;
  }

  function rowHeight() { return Math.max(3, Math.min(14, Math.floor(320 / Math.max(state.L, 1)))); }

  function draw() {
    drawGrid();
    drawLoad();
    drawPanel();
  }

  function drawGrid() {
    const width = Math.max(gridBox.clientWidth, 200), rh = rowHeight();
    const height = STRIP + 2 + state.L * rh;
    const ctx = sizeCanvas(canvas, width, height);
    const style = getComputedStyle(root);
    ctx.clearRect(0, 0, width, height);
    ctx.fillStyle = style.color;
    ctx.font = `9px ${style.fontFamily}`;
    ctx.textBaseline = "middle";
    const every = Math.ceil(11 / rh);
    for (let l = 0; l < state.L; l += every) ctx.fillText(String(l), 4, STRIP + 2 + l * rh + rh / 2);
    const cw = state.cell, first = Math.floor(scroller.scrollLeft / cw);
    const last = Math.min(state.n, first + Math.ceil((width - GUTTER) / cw) + 1);
    const channel = model.get("channel"), selected = model.get("selected");
    for (let t = first; t < last; t++) {
      const x = GUTTER + (t - first) * cw - (scroller.scrollLeft % cw);
      ctx.globalAlpha = 1;
      ctx.fillStyle = CHANNEL_COLORS[state.labels[t]] || "#999";
      ctx.fillRect(x, 0, Math.max(cw - (cw > 3 ? 1 : 0), 1), STRIP);
      ctx.globalAlpha = !channel || state.labels[t] === channel ? 1 : 0.12;
      for (let l = 0; l < state.L; l++) {
        ctx.fillStyle = color(state.experts[at(t, l, 0)]);
        ctx.fillRect(x, STRIP + 2 + l * rh, cw, rh);
      }
      if (t === selected) {
        ctx.globalAlpha = 1;
        ctx.strokeStyle = style.color;
        ctx.lineWidth = 1.5;
        ctx.strokeRect(x + 0.5, STRIP + 1.5, Math.max(cw, 2) - 1, state.L * rh + 1);
      }
    }
    ctx.globalAlpha = 1;
  }

  function loadShares() {
    const layer = model.get("layer"), counts = new Float64Array(state.E);
    let total = 0;
    for (let t = 0; t < state.n; t++) {
      if (!visible(t)) continue;
      for (let l = layer < 0 ? 0 : layer; l < (layer < 0 ? state.L : layer + 1); l++) {
        for (let r = 0; r < state.k; r++) { counts[state.experts[at(t, l, r)]] += 1; total += 1; }
      }
    }
    return counts.map((c) => (total ? c / total : 0));
  }

  function drawLoad() {
    const width = Math.max(gridBox.clientWidth, 200), height = 90;
    const ctx = sizeCanvas(loadCanvas, width, height);
    ctx.clearRect(0, 0, width, height);
    const shares = loadShares(), max = Math.max(...shares, 1e-9);
    const bw = (width - GUTTER) / Math.max(state.E, 1);
    ctx.strokeStyle = getComputedStyle(root).getPropertyValue("--gr-rule").trim() || "#ccc";
    ctx.beginPath(); ctx.moveTo(GUTTER, height - 12.5); ctx.lineTo(width, height - 12.5); ctx.stroke();
    shares.forEach((s, e) => {
      const barHeight = (s / max) * (height - 18);
      ctx.fillStyle = color(e);
      ctx.fillRect(GUTTER + e * bw, height - 13 - barHeight, Math.max(bw - 1, 1), barHeight);
    });
    ctx.fillStyle = getComputedStyle(root).color;
    ctx.font = `9px ${getComputedStyle(root).fontFamily}`;
    ctx.textBaseline = "top";
    ctx.fillText(`${(max * 100).toFixed(1)}%`, 0, 2);
    const step = Math.ceil(24 / bw);
    for (let e = 0; e < state.E; e += step) {
      if (GUTTER + e * bw + 18 < width) ctx.fillText(String(e), GUTTER + e * bw, height - 10);
    }
  }

  function drawPanel() {
    const t = model.get("selected");
    if (t < 0 || t >= state.n) { panel.replaceChildren(); panel.classList.remove("gr-open"); return; }
    panel.classList.add("gr-open");
    const headRow = h("div", "gr-panel-title");
    headRow.append(h("span", "", `Token ${t} `), h("code", "gr-token", JSON.stringify(state.strings[t])),
                   h("span", "gr-label", state.labels[t] || "…"));
    const close = h("button", "gr-close", "×");
    close.title = "Close";
    close.addEventListener("click", () => { model.set("selected", -1); model.save_changes(); });
    headRow.append(close);
    const table = h("div", "gr-panel-table");
    table.style.gridTemplateColumns = `auto repeat(${state.k}, minmax(70px, 1fr))`;
    for (let l = 0; l < state.L; l++) {
      table.append(h("span", "gr-panel-layer", `layer ${l}`));
      for (let r = 0; r < state.k; r++) {
        const e = state.experts[at(t, l, r)], w = state.weights[at(t, l, r)] / 65535;
        const cell = h("span", "gr-pick");
        const bar = h("span", "gr-bar");
        bar.style.width = `${Math.round(w * 100)}%`;
        bar.style.background = color(e);
        cell.append(bar, h("span", "gr-pick-text", `e${e} ${w.toFixed(3)}`));
        table.append(cell);
      }
    }
    panel.replaceChildren(headRow, table);
  }

  // ---------------------------------------------------------------- interaction

  function cellAt(event) {
    const box = canvas.getBoundingClientRect(), x = event.clientX - box.left, y = event.clientY - box.top;
    const t = Math.floor((x - GUTTER + scroller.scrollLeft) / state.cell), l = Math.floor((y - STRIP - 2) / rowHeight());
    if (x < GUTTER || t < 0 || t >= state.n || l < 0 || l >= state.L) return null;
    return { t, l, x, y };
  }

  canvas.addEventListener("mousemove", (event) => {
    const hit = cellAt(event);
    if (!hit) { tooltip.style.display = "none"; return; }
    const { t, l } = hit;
    const rows = [h("div", "gr-tip-title", `#${t} ${JSON.stringify(state.strings[t])} · ${state.labels[t] || "…"} · layer ${l}`)];
    for (let r = 0; r < state.k; r++) {
      const e = state.experts[at(t, l, r)], row = h("div", "gr-tip-row");
      const swatch = h("span", "gr-swatch");
      swatch.style.background = color(e);
      row.append(swatch, h("span", "gr-tip-expert", `expert ${e}`),
                 h("span", "gr-tip-weight", (state.weights[at(t, l, r)] / 65535).toFixed(3)));
      rows.push(row);
    }
    tooltip.replaceChildren(...rows);
    tooltip.style.display = "block";
    const left = Math.min(hit.x + 14, gridBox.clientWidth - tooltip.offsetWidth - 4);
    tooltip.style.left = `${Math.max(left, 0)}px`;
    tooltip.style.top = `${hit.y + 14}px`;
  });
  canvas.addEventListener("mouseleave", () => { tooltip.style.display = "none"; });
  canvas.addEventListener("click", (event) => {
    const box = canvas.getBoundingClientRect();
    if (event.clientX - box.left < GUTTER) { // the layer numbers: show that layer's load
      const l = Math.floor((event.clientY - box.top - STRIP - 2) / rowHeight());
      if (l >= 0 && l < state.L) { model.set("layer", l); model.save_changes(); }
      return;
    }
    const hit = cellAt(event);
    if (hit) { model.set("selected", hit.t); model.save_changes(); }
  });
  canvas.addEventListener("wheel", (event) => {
    const delta = Math.abs(event.deltaX) > Math.abs(event.deltaY) ? event.deltaX : event.deltaY;
    if (!delta || scroller.scrollWidth <= scroller.clientWidth) return;
    scroller.scrollLeft += delta;
    event.preventDefault();
  }, { passive: false });
  scroller.addEventListener("scroll", schedule);

  const onView = () => { refreshControls(); schedule(); };
  model.on("change:experts", loadSnapshot);
  model.on("change:labels", loadSnapshot);
  model.on("change:channel", onView);
  model.on("change:layer", onView);
  model.on("change:selected", schedule);
  model.on("msg:custom", onAppend);
  const resize = new ResizeObserver(schedule);
  resize.observe(root);

  loadSnapshot();
  model.send({ kind: "sync", have: state.n }); // tokens that arrived after the synced snapshot

  return () => {
    resize.disconnect();
    model.off("change:experts", loadSnapshot);
    model.off("change:labels", loadSnapshot);
    model.off("change:channel", onView);
    model.off("change:layer", onView);
    model.off("change:selected", schedule);
    model.off("msg:custom", onAppend);
  };
}

export default { render };
