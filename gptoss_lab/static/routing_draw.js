// RoutingView drawing: the token × layer grid (pixels written into one ImageData, so 36 layers ×
// thousands of tokens draw in a few milliseconds), its axes and channel strip, the expert-load bars,
// and the DOM of the tooltip, token panel, legend and expert card. Pure functions of the view's data;
// static/routing.js owns the state and the events. Text only ever goes in through textContent.

const GUTTER = 48;       // px left of the grid: layer numbers and the axis title
const STRIP = 8;         // px band above the grid: each token's channel
const STRIP_GAP = 3;
const TICKS_AXIS = 30;   // px below the grid: token positions and the axis title
const TEXT_CELL = 12;    // cell width (px) from which token text is written on the axis, down from its top + 2 px
const TEXT_BELOW = 16;   // px under the longest token text: a gap and the axis title's line
const LOAD_HEIGHT = 120;
// Darker and greyer than any expert's colour (value 0.75-0.95, saturation 0.55-0.8): final's green was expert 7's,
// commentary's teal expert 4's, tool's orange expert 5's
const CHANNEL_COLORS = {
  system: "#7a7a7a", developer: "#8a6a50", user: "#4d6e99", tool: "#99703d", analysis: "#7a5c99",
  commentary: "#3d8a80", final: "#4d8a4f", format: "#b4b4b4", text: "#5a6e8a",
};
const EMPTY_SLOT = 65535;

// Own keys only: a label "constructor" or "__proto__" found Object's members (a black strip, a swatch without colour).
function channelColor(label) { return Object.hasOwn(CHANNEL_COLORS, label) ? CHANNEL_COLORS[label] : "#999999"; }

function rgbBytes(color) {
  // "rgb(r,g,b)" or "#rrggbb" -> [r, g, b]
  if (color[0] === "#") return [1, 3, 5].map((i) => parseInt(color.slice(i, i + 2), 16));
  return color.match(/\d+/g).slice(0, 3).map(Number);
}

function expertPalette(E) {
  // RGB bytes of every expert id, then one grey for an empty slot.
  const pal = new Uint8Array(3 * (E + 1));
  for (let e = 0; e < E; e++) pal.set(rgbBytes(expertColor(e)), 3 * e);
  pal.set([150, 150, 150], 3 * E);
  return pal;
}

// A text (a token, a label) as the kernel's `shown_text` writes it (widgets/sanitize.py: the routing tables, figures and
// reprs), so the view and a table read alike: what a line would not show as itself (controls, line separators,
// invisible operators, direction and zero-width characters, lone surrogates) written as Python writes it in a string
// (\x1b, \n, \u202e), and edge spaces as ␣ (" a" and "a" read alike). Obeyed, a U+202E reversed the tooltip after it.
const UNSEEN = /[\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff\ud800-\udfff]/gu;
const ESCAPES = { "\t": "\\t", "\n": "\\n", "\r": "\\r" };

function writtenOut(c) {
  const code = c.charCodeAt(0);
  return ESCAPES[c] || (code < 0x100 ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16).padStart(4, "0")}`);
}

function shownText(s) {
  return (s || "").replace(UNSEEN, writtenOut).replace(/^ +| +$/g, (run) => "\u2423".repeat(run.length));
}

function shownLabel(label, none) {
  // A token's label (its channel, or the user's category) as shownText writes it; `none` if unlabelled.
  return label ? shownText(label) : none;
}

function percent(share) {
  // A share as a percentage: one decimal, two significant digits below 0.1 % (among 32,768 experts all read "0.0%").
  const p = share * 100;
  return `${p === 0 || p >= 0.1 ? p.toFixed(1) : p.toPrecision(2)}%`;
}

function quoted(s) { return `"${shownText(s)}"`; } // a token in quotes, as shownText writes it

function sizeCanvas(canvas, width, height) {
  // The canvas fills its box's width (CSS); its buffer follows at the device pixel ratio.
  const dpr = window.devicePixelRatio || 1;
  const w = Math.round(width * dpr), hgt = Math.round(height * dpr);
  if (canvas.width !== w || canvas.height !== hgt) { canvas.width = w; canvas.height = hgt; }
  canvas.style.height = `${height}px`;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return { ctx, dpr };
}

function gridLayout(data, width, cell, textLength) {
  // Where everything goes in the grid canvas (CSS px) for this width and cell width; with token text on the axis, the
  // axis is as tall as the longest text (textLength px) needs.
  const rowH = Math.max(5, Math.min(16, Math.floor(360 / Math.max(data.L, 1))));
  const gridW = Math.max(width - GUTTER - 4, 1);
  const gridTop = STRIP + STRIP_GAP;
  const gridH = data.L * rowH;
  const axis = cell >= TEXT_CELL ? Math.max(TICKS_AXIS, 2 + textLength + TEXT_BELOW) : TICKS_AXIS;
  return { width, rowH, gridW, gridTop, gridH, axisTop: gridTop + gridH + 2, height: gridTop + gridH + 2 + axis, cell };
}

function cellBox(lay, scroll, t, l) {
  // The box of token t at layer l in the grid canvas (CSS px), at least 8 px wide so a ring around a thin cell shows;
  // null when the token is scrolled out of the grid.
  const x = GUTTER + t * lay.cell - scroll, width = Math.max(lay.cell, 8);
  if (x + lay.cell <= GUTTER || x >= GUTTER + lay.gridW) return null;
  return { left: x + lay.cell / 2 - width / 2, top: lay.gridTop + l * lay.rowH, width, height: lay.rowH };
}

function niceStep(minimum) {
  // The smallest 1, 2 or 5 × 10^n that is at least `minimum`.
  const base = Math.pow(10, Math.floor(Math.log10(Math.max(minimum, 1))));
  return [1, 2, 5, 10].map((m) => m * base).find((s) => s >= minimum) || 10 * base;
}

function tickStep(ctx, largest, unit, least) {
  // Numbers on an axis every `unit` px a step, spaced so the widest (`largest`, in ctx's font) stays apart from the
  // next: a fixed spacing ran 5-digit ids together ("1000011000120001300..." at 32,768 experts).
  return niceStep(Math.max(least, ctx.measureText(String(largest)).width + 8) / unit);
}

function axisText(s) {
  // A token as written on the token axis: 12 characters at most.
  const text = shownText(s);
  return text.length > 12 ? `${text.slice(0, 11)}…` : text;
}

function longestText(canvas, strings, from, font) {
  // The length (px) of the longest axis text of strings[from:] in the axis's font.
  const ctx = canvas.getContext("2d");
  ctx.font = `10px ${font}`;
  let most = 0;
  for (let t = from; t < strings.length; t++) most = Math.max(most, ctx.measureText(axisText(strings[t])).width);
  return Math.ceil(most);
}

function paintCells(ctx, dpr, data, lay, scroll, isVisible, palette) {
  // Channel strip and grid as device pixels: one ImageData, one putImageData per frame.
  const w = Math.round(lay.gridW * dpr), top = Math.round(lay.gridTop * dpr), stripH = Math.round(STRIP * dpr);
  const h = Math.round((lay.gridTop + lay.gridH) * dpr);
  if (w <= 0 || h <= 0) return;
  const image = ctx.createImageData(w, h), px = image.data;
  const rows = new Int32Array(data.L + 1).map((_, l) => top + Math.round(l * lay.rowH * dpr));
  const cellD = lay.cell * dpr, gapX = cellD >= 5, gapY = lay.rowH * dpr >= 5, per = data.L * data.k;
  const origin = scroll * dpr, stripRGB = new Map();
  for (let x = 0; x < w; x++) {
    const at = origin + x, t = Math.floor(at / cellD);
    if (t >= data.n) break;
    if (gapX && at - t * cellD >= cellD - 1) continue;
    const label = data.labels[t], alpha = isVisible(t) ? 255 : 38;
    if (!stripRGB.has(label)) stripRGB.set(label, rgbBytes(channelColor(label)));
    const strip = stripRGB.get(label);
    for (let y = 0; y < stripH; y++) {
      const o = 4 * (y * w + x);
      px[o] = strip[0]; px[o + 1] = strip[1]; px[o + 2] = strip[2]; px[o + 3] = 255;
    }
    for (let l = 0; l < data.L; l++) {
      let e = data.k ? data.experts[t * per + l * data.k] : EMPTY_SLOT; // top-0: no pick, an empty cell
      e = e >= data.E ? data.E : e;
      const r = palette[3 * e], g = palette[3 * e + 1], b = palette[3 * e + 2];
      const end = rows[l + 1] - (gapY ? 1 : 0);
      for (let y = rows[l]; y < end; y++) {
        const o = 4 * (y * w + x);
        px[o] = r; px[o + 1] = g; px[o + 2] = b; px[o + 3] = alpha;
      }
    }
  }
  ctx.putImageData(image, Math.round(GUTTER * dpr), 0);
}

function paintLayerAxis(ctx, data, lay, style) {
  ctx.fillStyle = style.color;
  ctx.font = `10px ${style.font}`;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  const every = Math.ceil(12 / lay.rowH);
  for (let l = 0; l < data.L; l += every) ctx.fillText(String(l), GUTTER - 4, lay.gridTop + l * lay.rowH + lay.rowH / 2);
  ctx.fillText("ch.", GUTTER - 4, STRIP / 2 + 1);
  ctx.save();
  ctx.translate(11, lay.gridTop + lay.gridH / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textAlign = "center";
  ctx.fillText("layer", 0, 0);
  ctx.restore();
}

function paintTokenAxis(ctx, data, lay, scroll, style) {
  // Token text under each column when zoomed in; otherwise positions at round steps.
  const first = Math.floor(scroll / lay.cell), last = Math.min(data.n, Math.ceil((scroll + lay.gridW) / lay.cell));
  const x0 = GUTTER - scroll;
  ctx.fillStyle = style.color;
  ctx.strokeStyle = style.rule;
  ctx.font = `10px ${style.font}`;
  ctx.textBaseline = "middle";
  if (lay.cell >= TEXT_CELL) {
    ctx.font = `10px ${style.mono}`;
    ctx.textAlign = "left";
    for (let t = first; t < last; t++) {
      ctx.save();
      ctx.translate(x0 + (t + 0.5) * lay.cell, lay.axisTop + 2);
      ctx.rotate(Math.PI / 2);
      ctx.fillText(axisText(data.strings[t]), 0, 0);
      ctx.restore();
    }
  } else {
    const step = tickStep(ctx, data.n - 1, lay.cell, 64);
    ctx.textAlign = "center";
    ctx.beginPath();
    for (let t = Math.ceil(first / step) * step; t < last; t += step) {
      const x = x0 + (t + 0.5) * lay.cell;
      ctx.moveTo(x + 0.5, lay.axisTop); ctx.lineTo(x + 0.5, lay.axisTop + 4);
      ctx.fillText(String(t), x, lay.axisTop + 10);
    }
    ctx.stroke();
  }
  ctx.textAlign = "right";
  ctx.font = `10px ${style.font}`;
  ctx.fillStyle = style.muted;
  ctx.fillText("token position →", lay.width - 4, lay.height - 7);
}

function paintSelection(ctx, lay, scroll, t, style) {
  if (t < 0) return;
  const x = GUTTER + t * lay.cell - scroll;
  if (x + lay.cell < GUTTER || x > lay.width) return;
  ctx.strokeStyle = style.color;
  ctx.lineWidth = 1.5;
  ctx.strokeRect(Math.max(x, GUTTER) + 0.5, lay.gridTop - 1.5, Math.max(lay.cell, 2) - 1, lay.gridH + 2);
}

function drawGrid(canvas, data, lay, view, style) {
  // The whole grid canvas for the current scroll, channel filter and selection.
  const { ctx, dpr } = sizeCanvas(canvas, lay.width, lay.height);
  ctx.clearRect(0, 0, lay.width, lay.height);
  paintCells(ctx, dpr, data, lay, view.scroll, view.isVisible, view.palette);
  paintLayerAxis(ctx, data, lay, style);
  paintTokenAxis(ctx, data, lay, view.scroll, style);
  paintSelection(ctx, lay, view.scroll, view.selected, style);
}

function loadShares(data, layer, isVisible) {
  // Share of the top-k picks each expert took (one layer or all), over the visible tokens.
  const counts = new Float64Array(data.E), per = data.L * data.k;
  const from = layer < 0 ? 0 : layer, to = layer < 0 ? data.L : layer + 1;
  let total = 0;
  for (let t = 0; t < data.n; t++) {
    if (!isVisible(t)) continue;
    for (let i = t * per + from * data.k; i < t * per + to * data.k; i++) {
      const e = data.experts[i];
      if (e < data.E) { counts[e] += 1; total += 1; }
    }
  }
  return counts.map((c) => (total ? c / total : 0));
}

function drawLoad(canvas, width, shares, style, palette) {
  // Bars per expert, with a labelled y axis (share of picks) and x axis (expert id).
  const height = LOAD_HEIGHT, bottom = 28, E = shares.length;
  const { ctx } = sizeCanvas(canvas, width, height);
  ctx.clearRect(0, 0, width, height);
  const max = Math.max(...shares, 1e-9), plotH = height - bottom - 6, bw = (width - GUTTER - 4) / Math.max(E, 1);
  ctx.strokeStyle = style.rule;
  ctx.beginPath();
  ctx.moveTo(GUTTER - 0.5, 4); ctx.lineTo(GUTTER - 0.5, height - bottom + 0.5); ctx.lineTo(width - 4, height - bottom + 0.5);
  ctx.stroke();
  shares.forEach((s, e) => {
    const barH = (s / max) * plotH;
    ctx.fillStyle = `rgb(${palette[3 * e]},${palette[3 * e + 1]},${palette[3 * e + 2]})`;
    ctx.fillRect(GUTTER + e * bw, height - bottom - barH, Math.max(bw - (bw > 3 ? 1 : 0), 1), barH);
  });
  ctx.fillStyle = style.color;
  ctx.font = `10px ${style.font}`;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  ctx.fillText(percent(max), GUTTER - 4, height - bottom - plotH);
  ctx.fillText("0", GUTTER - 4, height - bottom);
  ctx.textAlign = "center";
  const step = tickStep(ctx, E - 1, bw, 28);
  for (let e = 0; e < E; e += step) ctx.fillText(String(e), GUTTER + (e + 0.5) * bw, height - bottom + 9);
  ctx.fillStyle = style.muted;
  ctx.fillText("expert", GUTTER + (width - GUTTER) / 2, height - 7);
  ctx.save();
  ctx.translate(11, (height - bottom) / 2 + 2);
  ctx.rotate(-Math.PI / 2);
  ctx.fillText("share", 0, 0);
  ctx.restore();
  return { bw, top: 4, bottom: height - bottom };
}

// ------------------------------------------------------------------ DOM parts

function swatch(color) {
  const node = h("span", "gr-swatch");
  node.style.background = color;
  return node;
}

// What the view's hints say, to a mouse user or (byKeys) a keyboard user: the grid's arrows select a token as a click
// does and its E opens a card as a double-click does, its experts' picks below are buttons, and the load bars' arrows
// and Enter do what a click does.
const HINTS = {
  mouse: { tip: "click: this token's experts · double-click: expert card", panel: "click an expert for its card",
           load: "click a bar for the expert's card" },
  keys: { tip: "Enter: this token's experts, listed below · E: expert card · Page Up/Down: first/last layer",
          panel: "Enter on an expert: its card",
          load: "← →: choose a bar · Enter: its expert's card" },
};

function hints(byKeys) { return byKeys ? HINTS.keys : HINTS.mouse; }

function tipRows(data, t, l, byKeys) {
  // Tooltip content for token t at layer l: the token, its channel, its top-k experts and weights, and what the
  // mouse or (byKeys) the keyboard does next.
  const rows = [h("div", "gr-tip-title", `#${t} ${quoted(data.strings[t])} · ${shownLabel(data.labels[t], "…")} · layer ${l}`)];
  for (let r = 0; r < data.k; r++) {
    const i = (t * data.L + l) * data.k + r, e = data.experts[i];
    if (e === EMPTY_SLOT) continue;
    const row = h("div", "gr-tip-row");
    row.append(swatch(expertColor(e)), h("span", "gr-tip-expert", `expert ${e}`),
               h("span", "gr-tip-weight", data.weights[i].toFixed(3)));
    rows.push(row);
  }
  rows.push(h("div", "gr-tip-hint", hints(byKeys).tip));
  return rows;
}

function cellLabel(data, t, l) {
  // What a screen reader says of token t at layer l: the token, its place and channel, its top-1 expert and weight.
  const i = (t * data.L + l) * data.k, e = data.k ? data.experts[i] : EMPTY_SLOT;
  const pick = e === EMPTY_SLOT ? "no expert" : `expert ${e}, ${data.weights[i].toFixed(3)}`;
  return `token #${t} ${quoted(data.strings[t])} (${grouped(t + 1)} of ${grouped(data.n)}, ${shownLabel(data.labels[t], "…")}), layer ${l}: ${pick}`;
}

function barLabel(e, share, layer, scope) {
  // A load bar's accessible name: the expert and its share of the picks of the layer shown (and of which tokens).
  return `expert ${e}: ${percent(share)} of the picks of ${layer < 0 ? "all layers" : `layer ${layer}`}${scope ? `, ${scope}` : ""}`;
}

function tokenPanel(data, t, onExpert, onClose, byKeys) {
  // Every layer's top-k experts of token t; each pick opens that expert's card.
  const head = h("div", "gr-panel-title");
  const close = h("button", "gr-close", "×");
  close.title = "Close";
  close.addEventListener("click", onClose);
  head.append(h("span", "", `Token ${t} `), h("code", "gr-token", quoted(data.strings[t])),
              h("span", "gr-label", shownLabel(data.labels[t], "…")), h("span", "gr-hint", hints(byKeys).panel), close);
  const table = h("div", "gr-panel-table");
  table.style.gridTemplateColumns = `auto repeat(${data.k}, minmax(70px, 1fr))`;
  for (let l = 0; l < data.L; l++) {
    table.append(h("span", "gr-panel-layer", `layer ${l}`));
    for (let r = 0; r < data.k; r++) {
      const i = (t * data.L + l) * data.k + r, e = data.experts[i], w = data.weights[i];
      const pick = h("button", "gr-pick");
      if (e !== EMPTY_SLOT) {
        const bar = h("span", "gr-bar");
        bar.style.width = `${Math.round(Math.min(Math.max(w, 0), 1) * 100) || 0}%`; // NaN: none; 7.5: the cell's width
        bar.style.background = expertColor(e);
        pick.append(bar, h("span", "gr-pick-text", `e${e} ${w.toFixed(3)}`));
        pick.title = `expert ${e} of layer ${l}: open its card`;
        pick.addEventListener("click", () => onExpert(l, e));
      } else pick.disabled = true;
      table.append(pick);
    }
  }
  return [head, table];
}

function legend(data) {
  // What the colours mean: channel strip colours present, and the expert colour scale.
  const channels = [...new Set(data.labels.filter((x) => x))];
  const items = channels.map((c) => { const item = h("span", "gr-legend-item"); item.append(swatch(channelColor(c)), h("span", "", shownLabel(c))); return item; });
  const scale = h("span", "gr-legend-scale");
  const steps = Math.min(data.E, 16);
  for (let i = 0; i < steps; i++) scale.append(swatch(expertColor(Math.round((i * (data.E - 1)) / Math.max(steps - 1, 1)))));
  const experts = h("span", "gr-legend-item");
  experts.append(h("span", "", "cells: top-1 expert"), scale, h("span", "gr-muted", `ids 0–${Math.max(data.E - 1, 0)} (hover for the id)`));
  // No token labelled yet (a live turn's record): no "channel strip:" with nothing after it.
  return [...(items.length ? [h("span", "gr-legend-title", "channel strip:"), ...items] : []), experts];
}

function chip(text, color, onClick) {
  const node = h("button", "gr-chip");
  node.append(swatch(color), h("span", "", text));
  node.addEventListener("click", onClick);
  return node;
}

function cardPanel(card, onExpert, onClose) {
  // An expert's card: share of its layer, top tokens, load by channel, and neighbouring experts.
  const head = h("div", "gr-panel-title");
  const close = h("button", "gr-close", "×");
  close.title = "Close the card";
  close.addEventListener("click", onClose);
  head.append(swatch(expertColor(card.expert)), h("b", "", `Expert ${card.expert} · ${card.layer < 0 ? "all layers" : `layer ${card.layer}`}`));
  if (card.error || card.waiting) {
    head.append(h("span", "gr-muted", card.error || "waiting for the kernel…"), close);
    return [head];
  }
  head.append(h("span", "gr-muted", `${counted(card.picks, "pick")} · ${percent(card.share)} of the layer`), close);
  const tokens = h("div", "gr-card-col");
  tokens.append(h("div", "gr-card-head", "chosen most for"));
  for (const row of card.tokens) {
    const line = h("div", "gr-card-row");
    line.append(h("code", "gr-token", shownText(row.text)), h("span", "gr-muted", `×${grouped(row.count)} · ${Math.round(row.specialisation * 100)}% of its uses`));
    tokens.append(line);
  }
  const labels = h("div", "gr-card-col");
  labels.append(h("div", "gr-card-head", "share of each channel's tokens"));
  const most = Math.max(...card.labels.map((r) => r.chose), 1e-9);
  for (const row of card.labels) {
    const line = h("div", "gr-card-row"), bar = h("span", "gr-card-bar");
    bar.style.width = `${Math.round((row.chose / most) * 60)}px`;
    bar.style.background = channelColor(row.label);
    const label = shownLabel(row.label, "?");
    line.append(h("span", "gr-card-label", label), bar, h("span", "gr-muted", `${percent(row.chose)} · ${row.lift.toFixed(2)}× all tokens`));
    // The ratio alone ("1.57×") meant nothing to a new reader: the row says what it compares, its title the numbers.
    line.title = `${percent(row.chose)} of the ${label} tokens chose expert ${card.expert}, `
      + `${row.lift.toFixed(2)} times the share of all tokens that did (${percent(card.overall)})`;
    labels.append(line);
  }
  const moves = h("div", "gr-card-col");
  for (const [name, rows, layer] of [["from layer", card.previous, card.layer - 1], ["to layer", card.next, card.layer + 1]]) {
    if (!rows.length) continue;
    moves.append(h("div", "gr-card-head", `its tokens' top-1 expert ${name} ${layer}`));
    const line = h("div", "gr-card-chips");
    for (const row of rows) line.append(chip(`e${row.expert} ${Math.round(row.share * 100)}%`, expertColor(row.expert), () => onExpert(layer, row.expert)));
    moves.append(line);
  }
  const body = h("div", "gr-card-body");
  body.append(tokens, labels, moves);
  return [head, body];
}
