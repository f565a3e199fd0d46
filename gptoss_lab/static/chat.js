// gptoss_lab chat view: applies the kernel's batches of operations to the DOM. Plain ES module, no bundler.
// Python renders Markdown and code to sanitised HTML; this file sanitises it again (safeHTML/setHTML from
// common.js), places it, wires the buttons, and writes the finished turn into the saved notebook.

const NOTE = "Reasoning is the model's unfiltered chain of thought, not a checked answer.";
const STATUS = {
  pending: "pending", waiting: "waiting for approval", running: "running…", done: "done",
  error: "error", timeout: "timed out", skipped: "skipped", interrupted: "interrupted",
};
const REGENERATE = "Ask the same question again for a new answer (replaces this one in the conversation)";
const NOT_LAST = "Only the conversation's last answer can be regenerated: a later turn or New chat has replaced "
  + "this one";
// A kernel status that ends every turn of the kernel (Kernel > Restart, a crash, one it does not come back from): what
// happened to it, in the line a waiting card and the buttons show
const KERNEL_GONE = { restarting: "restarted", autorestarting: "restarted", dead: "died" };
const OPS = new Set(["block", "text", "md", "end", "tool", "notice", "error", "rate", "stats"]);
// Written out (\u202e), as the kernel writes them (widgets/sanitize.py): direction controls in code (a tool's and the
// answer's), a tool's output and card, and zero-width characters too in names and notices, so none reads as
// something else.
const BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069";
const BIDI_RE = new RegExp(`[${BIDI}]`, "g");
const HIDDEN_RE = new RegExp(`[${BIDI}\u200b-\u200d\u2060\ufeff]`, "g");
// In code (a tool call's, the answer's), every character drawn as nothing written out too (widgets/sanitize.py
// CODE_UNSEEN): `exec(... for c in "")` ran the program its string held in invisible tag characters.
const CODE_RE = new RegExp(`[${BIDI}\u00ad\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200d\u2060-\u206f\u3164`
  + "\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8\u{1bca0}-\u{1bca3}\u{1d173}-\u{1d17a}\u{e0000}-\u{e0fff}]", "gu");

function reveal(text, pattern = HIDDEN_RE) {
  // As Python writes a character by its number: \u200b, or \U000e0070 past the first 65 536 (an emoji flag's tag
  // sequence that UNSEEN_RE matches whole is kept)
  return String(text).replace(pattern, (c) => {
    if (c.length > 2) return c;
    const n = c.codePointAt(0);
    return n > 0xffff ? `\\U${n.toString(16).padStart(8, "0")}` : `\\u${n.toString(16).padStart(4, "0")}`;
  });
}

function revealText(node, pattern = BIDI_RE) {
  // Every text node under `node` (or `node`, a text node) with its direction controls (`pattern`) written out.
  const walker = document.createTreeWalker(node, NodeFilter.SHOW_TEXT);
  for (let text = node.nodeType === Node.TEXT_NODE ? node : walker.nextNode(); text; text = walker.nextNode()) {
    const shown = reveal(text.data, pattern);
    if (shown !== text.data) text.data = shown;   // (an unchanged one is no change for `writeOutOverrides` to see)
  }
}

// The two direction overrides (LRO, RLO) turn every letter after them around: streamed reasoning and the answer's
// unfinished part showed `user\u202eexe.txt` as "usertxt.exe". Every text the view shows, whoever drew it, has them
// written out (\u202e), as the saved forms do (widgets/sanitize.py `written_controls`); right-to-left prose keeps its
// marks, embeddings and isolates. So have the characters drawn as nothing that prose never needs (tag characters but
// an emoji flag's, zero-width space, word joiner, byte order mark ...): "The mean is 3.15." hid 28 tag characters.
// Joiners (emoji, scripts) and variation selectors stay. An observer of the whole view: its records come before the
// page is painted. "Copy answer" copies the answer so written.
const FLAG = "\u{1f3f4}[\u{e0020}-\u{e007e}]{1,32}\u{e007f}";
const UNSEEN_RE = new RegExp(`${FLAG}|[\u202d\u202e\u115f\u1160\u17b4\u17b5\u180e\u200b\u2060-\u2065\u206a-\u206f`
  + "\u3164\ufeff\uffa0\ufff0-\ufff8\u{1bca0}-\u{1bca3}\u{1d173}-\u{1d17a}\u{e0000}-\u{e00ff}\u{e01f0}-\u{e0fff}]",
  "gu");

function writeOutOverrides(records) {
  for (const record of records) {
    for (const node of record.type === "characterData" ? [record.target] : record.addedNodes) {
      revealText(node, UNSEEN_RE);
    }
  }
}

function answerHTML(html) {
  // Sanitised answer HTML whose code (not its prose: right-to-left text) has its direction controls written out.
  const fragment = safeHTML(html);
  if (!fragment.querySelectorAll) return fragment;
  for (const code of fragment.querySelectorAll("code")) revealText(code, CODE_RE);
  // A chip of a local file is no link: focusable all the same, so Tab (and a tap) shows its popup (citations.css)
  for (const chip of fragment.querySelectorAll("sup.gx-cite > a:not([href])")) chip.tabIndex = 0;
  return fragment;
}

function seenRows(node) {
  // [top, bottom] of the part of the window that node's clipping ancestors (the notebook's scroller, an output area)
  // leave visible (not the body: its overflow is the window's)
  let top = 0, bottom = window.innerHeight;
  for (let n = node.parentElement; n && n !== document.body; n = n.parentElement) {
    const style = getComputedStyle(n);
    if (style.overflowX === "visible" && style.overflowY === "visible") continue;
    const box = n.getBoundingClientRect();
    top = Math.max(top, box.top);
    bottom = Math.min(bottom, box.bottom);
  }
  return [top, bottom];
}

function placePopup(event) {
  // A citation chip's popup (citations.css) opens at the chip, moved left as far as it must to stay in the view:
  // near the right edge of a narrow notebook its lines ran past the edge and were cut off. It opens below the chip
  // when it does not fit above (a chip near the notebook's top: its lines went under the toolbar) and fits below.
  const chip = event.target.closest && event.target.closest("sup.gx-cite");
  const view = chip && chip.closest(".gx-chat");
  if (!view) return;
  const room = view.getBoundingClientRect(), at = chip.getBoundingClientRect();
  chip.style.setProperty("--gx-cite-room", `${room.width}px`);
  chip.classList.remove("gx-cite-below");
  const popup = getComputedStyle(chip, "::after");
  const width = parseFloat(popup.width) || 0, height = parseFloat(popup.height) || 0;
  chip.style.setProperty("--gx-cite-left", `${Math.max(room.left - at.left, Math.min(-4, room.right - at.left - width))}px`);
  const [top, bottom] = seenRows(chip), above = at.top - height - 8, below = at.bottom + height + 8;
  chip.classList.toggle("gx-cite-below", above < top && below - bottom < top - above);
}

function dismissPopup(root, event) {
  // Escape hides the open popup of a chip in `root` (hovered or focused) where pointer and focus are: it covers the
  // lines above the chip, and moving away was the only way to read them (WCAG 1.4.13). The key goes no further when
  // it was pressed on the chip (JupyterLab's Escape leaves the cell).
  if (event.key !== "Escape") return;   // (every key of the page comes here: no look for chips at the others)
  const open = [...root.querySelectorAll("sup.gx-cite:hover, sup.gx-cite:focus-within")]
    .filter((chip) => !chip.classList.contains("gx-cite-dismissed"));
  if (!open.length) return;
  for (const chip of open) chip.classList.add("gx-cite-dismissed");
  if (open.some((chip) => chip.contains(document.activeElement))) {
    event.preventDefault();
    event.stopPropagation();
  }
}

function undismissPopup(event) {
  // A dismissed popup opens again once both pointer and focus have left its chip (and come back to it).
  const chip = event.target.closest && event.target.closest("sup.gx-cite-dismissed");
  if (!chip || chip.contains(event.relatedTarget)) return;
  const stays = event.type === "focusout" ? chip.matches(":hover") : chip.contains(document.activeElement);
  if (!stays) chip.classList.remove("gx-cite-dismissed");
}

function showSource(event) {
  // A click, Enter or Space on the chip of a local document (no link to open) takes focus to its entry in the Sources
  // list under the answer, as a footnote's number does; the entry is highlighted while it has focus (citations.css).
  const chip = event.target.closest && event.target.closest("sup.gx-cite > a:not([href])");
  if (!chip || (event.type === "keydown" && event.key !== "Enter" && event.key !== " ")) return;
  const turn = chip.closest(".gx-turn");
  const entry = turn && turn.querySelectorAll(".gx-cite-sources > li")[Number(chip.textContent) - 1];
  if (!entry) return;
  event.preventDefault();
  event.stopPropagation();       // Enter is not JupyterLab's (edit the cell), nor Space the page's (scroll)
  entry.tabIndex = -1;
  entry.focus({ preventScroll: true });
  entry.scrollIntoView({ block: "nearest" });
}

function send(model, action) {
  // Custom messages, not state syncs: ipywidgets holds a sync back until the kernel reports idle, and
  // the kernel stays busy for the whole turn (the kernel hears these while the cell runs).
  model.send(action);
}

// A symbol and a word ("▶ Run", "■ Stop", "↻ Regenerate"): the symbol is drawn, not read (a screen reader named the
// button "black right-pointing triangle Run")
const GLYPH = /^([^\p{L}\p{N}\s])\s(.+)$/u;

// `name`, where given, is what a screen reader calls the button where its word alone is ambiguous ("Copy answer",
// "Copy code": every Copy was named just "Copy"); it starts with the word shown.
function button(cls, label, title, onclick, name) {
  const [, glyph, word] = GLYPH.exec(label) || [];
  const b = h("button", `gx-button ${cls}`, glyph ? undefined : label);
  if (glyph) {
    const icon = h("span", "", glyph);
    icon.setAttribute("aria-hidden", "true");
    b.append(icon, ` ${word}`);
  }
  if (title) b.title = title;
  if (name) b.setAttribute("aria-label", name);
  b.onclick = onclick;
  return b;
}

// The Edit button's label and title, and while its editor is open (a second click closes it, keeping the change)
// What a waiting card's question adds where a line of its code is wider than the card (Turn.sayWide)
const WIDE = "Careful: a line is wider than this card; scroll sideways to read all of it before it runs.";

const EDIT = ["Edit", "Change the code before it runs (the model is told what ran)"];
const EDITING = ["Done editing", "Close the editor and keep the change (Run runs it)"];

function editLabel(b, [label, title]) {
  const edit = b.actions.querySelector(".gx-edit");
  if (edit) [edit.textContent, edit.title] = [label, title];
}

function keepFocus(leaving, target) {
  // Keyboard focus inside `leaving`, which is about to go, moves to `target`, which stays: left alone it would
  // drop to the page, and the next Tab would start again at the top of JupyterLab.
  if (!leaving.contains(document.activeElement)) return;
  if (target.tagName !== "BUTTON") target.tabIndex = -1;
  target.focus({ preventScroll: true });
}

function editor(node) {
  // Whether `node` is an editor that takes typing: a cell's, a text box's.
  return Boolean(node && (node.isContentEditable || node.tagName === "INPUT" || node.tagName === "TEXTAREA"));
}

function typingIn(node) {
  // Whether `node` (where focus is) is an editor holding text. A new empty cell, where Shift+Enter on the last cell
  // leaves focus, is nobody's typing.
  return editor(node) && (node.value !== undefined ? node.value : node.textContent).trim() !== "";
}

const ARM_MS = 700;   // how long a card that took focus by itself ignores the keyboard

function guardKeys(b) {
  // An Enter meant for the card before (pressed twice, or held down) must not approve a call its user has not yet
  // read on a card that took focus by itself: the keyboard decides only ARM_MS after that, and held keys never.
  // A letter typed on it was meant for the editor the card took focus from (the user did not see focus move): focus
  // goes back there with the letter, and no letter reaches JupyterLab's shortcuts ("r" made the cell holding this
  // view raw text); the card's keyboard then decides nothing (the space after "import" ran the call) until the user
  // moves on the card with Tab, or uses the mouse.
  b.actions.addEventListener("keydown", (event) => {
    if (event.target.tagName !== "BUTTON") return;
    if (event.repeat) event.preventDefault();
    if (event.key === "Tab") b.armAt = 0;
    const letter = event.key.length === 1 && event.key !== " " && !event.ctrlKey && !event.metaKey && !event.altKey;
    if (!b.armAt || !letter) return;   // b.armAt: the card took focus by itself, and nobody has moved on it since
    b.armAt = Infinity;
    event.stopPropagation();
    if (b.tookFrom && b.tookFrom.isConnected) b.tookFrom.focus({ preventScroll: true });
  }, true);
  b.actions.addEventListener("click", (event) => {   // a keyboard's click has no detail (no mouse press)
    if (event.detail !== 0) b.armAt = 0;
    else if (performance.now() < (b.armAt || 0)) { event.preventDefault(); event.stopPropagation(); }
  }, true);
}

function flash(node, text, restore) {
  const name = node.getAttribute("aria-label");   // a named button says "Copied" to a screen reader too
  node.textContent = text;
  if (name) node.setAttribute("aria-label", text);
  setTimeout(() => {
    node.textContent = restore;
    if (name) node.setAttribute("aria-label", name);
  }, 1500);
}

async function copyText(text, node, label) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const area = h("textarea");
    area.value = text;
    document.body.appendChild(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  flash(node, "Copied", label);
}

function seconds(s) {
  return s < 60 ? `${Math.floor(s)} s` : `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
}

function compact(n) {
  return n >= 10000 ? `${Math.round(n / 1000)}k` : grouped(n);
}

// A prompt drawn taller than FOLD_LINES lines folds to its first lines (chat.css), by drawn height: a few long lines
// wrap into many in a narrow window.
const FOLD_LINES = 12;

function foldedPrompt(prompt) {
  // The user's bubble; a long prompt in it folds, with a button that shows all of it (and folds it again). Measured
  // again whenever its size changes (a narrower window, a wider one).
  const bubble = h("div", "gx-prompt"), text = h("div", "gx-prompt-text", prompt);
  const toggle = button("gx-prompt-toggle", "Show all", null, () => {
    const open = bubble.classList.toggle("gx-open");
    toggle.textContent = open ? "Show less" : "Show all";
    toggle.setAttribute("aria-expanded", String(open));
  });
  toggle.setAttribute("aria-expanded", "false");
  toggle.hidden = true;
  bubble.append(text, toggle);
  const measure = () => {
    const tall = text.scrollHeight > FOLD_LINES * (parseFloat(getComputedStyle(text).lineHeight) || 20) + 1;
    bubble.classList.toggle("gx-folded", tall);
    toggle.hidden = !tall;
  };
  // in the next frame: folding changes the size observed, which inside the observer's callback is a loop error
  new ResizeObserver(() => requestAnimationFrame(measure)).observe(text);
  return bubble;
}

// ---------------------------------------------------------------- the notebook around the view

function cellIndexOf(ctx, id) {
  const cells = ctx.model.sharedModel.cells;
  for (let i = 0; i < cells.length; i++) {
    if (outputsOf(cells[i]).some((data) => data[WIDGET_MIME] && data[WIDGET_MIME].model_id === id)) return i;
  }
  return -1;
}

// The saved notebook keeps each finished turn as its static transcript (text/html, text/markdown, text/plain; see
// saveStill in common.js). A turn still under way is saved as its transcript so far too: a widget reference would
// reopen as "model not found" once its kernel is gone (a crash, a shut down after autosave), the turn lost; a tab
// reloaded meanwhile draws the live view again (`revive`), or shows that transcript where it cannot. Each new saved
// form (a turn's end, also one Regenerate replaced, or a card waiting) marks the notebook changed, so that autosave
// or closing writes it in.
const RUNNING = "(gptoss_lab: this turn was still running when the notebook was saved)";

// The saved form of a turn under way also names its view's model (LIVE_MIME, chat.py). A tab reloaded (or the notebook
// opened again) while the kernel still runs the turn restores that model from the kernel: `revive` puts the widget
// reference back in that output, and the live view is drawn there again, its card's buttons working.
const LIVE_MIME = "application/vnd.gptoss-lab.live+json";

function revive(model) {
  const ctx = notebookContext(model);
  const id = model.get("_id");
  if (!ctx || !id) return;
  const saved = (out) => out.data && out.data[LIVE_MIME] && out.data[LIVE_MIME].model_id === id && !out.data[WIDGET_MIME];
  ctx.ready.then(() => {
    for (const cell of ctx.model.sharedModel.cells) {
      const outputs = cell.getOutputs ? cell.getOutputs() : [];
      const at = outputs.findIndex(saved);
      if (at < 0) continue;
      const { [LIVE_MIME]: _, ...data } = outputs[at].data;
      const ref = { version_major: 2, version_minor: 1, model_id: id };
      cell.updateOutputs(at, at + 1, [{ ...outputs[at], data: { ...data, [WIDGET_MIME]: ref } }]);
    }
  });
}

function transcriptOf(model) {
  const bundle = model.get("_static");
  return bundle && bundle["text/html"] ? bundle : { "text/plain": RUNNING };
}

function insertCell(model, code, node) {
  const ctx = notebookContext(model);
  if (!ctx) {
    copyText(code, node, node.textContent);
    node.title = "This front end does not let widgets add cells: the code is copied, paste it into a new cell";
    return;
  }
  const at = cellIndexOf(ctx, model.get("_id"));
  const cells = ctx.model.sharedModel;
  cells.insertCell(at < 0 ? cells.cells.length : at + 1, { cell_type: "code", source: code, metadata: {} });
  flash(node, at < 0 ? "Added at the end" : "Added below", node.textContent);
}

// ---------------------------------------------------------------- one turn

function barRow(...nodes) {
  // One of the two rows of the live bar and of the footer that replaces it (chat.css: each at least 24 px high)
  const row = h("div", "gx-bar-row");
  row.append(...nodes);
  return row;
}

class Turn {
  constructor(view, op) {
    this.view = view;
    this.model = view.model;
    this.blocks = Object.create(null);   // by the op's number: no "__proto__" reaches Object.prototype (a file's state)
    this.contextWindow = op.context_window || 0;
    this.node = h("div", "gx-turn gx-live");
    const row = h("div", "gx-prompt-row");
    row.append(foldedPrompt(op.prompt));
    this.items = h("div", "gx-items");
    this.bar = h("div", "gx-bar");
    this.bar.dataset.room = op.room || "";   // the stats line with wide figures, unseen: its room (chat.css)
    const why = "End generation (like interrupting the kernel); the partial reply is kept";
    this.stop = button("gx-stop", "■ Stop", why, () => {
      keepFocus(this.stop, this.progress);   // a disabled button loses focus; the footer's line takes it in stats()
      this.stop.disabled = true;
      this.stop.textContent = "Stopping…";
      send(this.model, { kind: "stop" });
    });
    this.progress = h("span", "gx-progress", "generating…");
    // "effort medium · gpt-oss-tiny", in the order the stats line at the turn's end ends with (it swapped the two)
    const info = h("span", "gx-meta", [op.effort && `effort ${op.effort}`, op.model].filter(Boolean).join(" · "));
    // In the footer's two rows (stats; meter and buttons), ■ Stop where ↻ Regenerate comes: the turn's end moves nothing
    this.bar.append(barRow(this.progress, info), op.controls ? this.stopRow() : barRow(this.stop));
    this.node.append(row, this.items, this.bar);
    view.root.appendChild(this.node);
  }

  stopRow() {
    // ■ Stop over room, unseen, for the footer's second row (the context meter, ↻ Regenerate and New chat): the row
    // wraps where the footer's will (at 420 px the meter and buttons took two lines, the cell below went 16 px down)
    const room = h("span", "gx-turn-buttons gx-room");
    room.append(button("", "↻ Regenerate"), button("", "New chat"));
    const buttons = h("span", "gx-turn-buttons gx-stack");
    buttons.append(room, this.stop);
    const row = barRow(buttons);
    if (this.contextWindow) {
      const meter = this.meter(0, this.contextWindow);
      meter.className = "gx-meter-room gx-room";
      row.prepend(meter);
    }
    for (const node of row.querySelectorAll(".gx-room")) {
      node.setAttribute("aria-hidden", "true");
      node.inert = true;
    }
    return row;
  }

  tick() {
    // Once a second while the turn is live: the "Thinking… N s" of open reasoning blocks.
    for (const b of Object.values(this.blocks)) {
      if (b.kind !== "reasoning" || b.ended) continue;
      b.label.textContent = `Thinking… ${seconds((Date.now() - b.t0) / 1000)}`;
    }
  }

  block(op, sent) {
    // Started `sent - op.at` seconds before its batch was sent (seconds into the turn, by the kernel's clock): a view
    // that draws the turn late, from its snapshot, counts "Thinking… N s" from the block's start, not from now
    const t0 = Date.now() - Math.max(0, (sent || 0) - (op.at || 0)) * 1000;
    const b = { kind: op.kind, raw: "", upto: 0, t0, ended: false };
    if (op.kind === "reasoning") {
      b.node = h("details", "gx-reasoning");
      b.node.open = true;
      const summary = h("summary");
      b.label = h("span", "gx-label", "Thinking… 0 s");
      summary.append(h("span", "gx-spinner"), b.label);
      b.text = h("div", "gx-reasoning-text");
      b.node.append(summary);
      if (op.note) b.node.append(h("div", "gx-note", NOTE));   // once, not under every reasoning block
      b.node.append(b.text);
    } else if (op.kind === "tool") {
      this.toolCard(b, op);
    } else {
      // The reasoning stays open when the answer starts (its summary's click folds it): folded then, it took its
      // lines from under the reader, and the answer began a box's height above the thought being read.
      b.node = h("div", `gx-${op.kind}`);
      b.md = h("div", "gx-md");
      b.text = h("div", "gx-tail");
      b.node.append(b.md, b.text);
      if (op.kind === "final") {
        const copy = button("gx-copy", "Copy", "Copy the answer as Markdown",
          () => copyText(reveal(b.raw, UNSEEN_RE), copy, "Copy"),
          "Copy answer");
        b.node.append(copy);
      }
    }
    this.blocks[op.i] = b;
    this.items.appendChild(b.node);
  }

  toolCard(b, op) {
    b.node = h("div", "gx-tool");
    b.node.dataset.status = "writing";
    b.node.setAttribute("role", "group");          // one named part for a screen reader, as the saved card's table
    b.node.setAttribute("aria-label", "Tool call");
    const head = h("div", "gx-tool-head");
    b.status = h("span", "gx-status", "writing…");
    b.status.setAttribute("role", "status");   // read out as it changes: "waiting for approval" needs the user
    const tools = h("span", "gx-tool-buttons");
    // Copied and inserted as the card shows it, its characters drawn as nothing written out (\U000e0070): a new cell of
    // the model's code ran what its reader could not see
    const copy = button("gx-copy-code", "Copy", "Copy this code",
      () => copyText(reveal(b.code(), CODE_RE), copy, "Copy"), "Copy code");
    tools.append(copy);
    if ((op.recipient || "").startsWith("python")) {
      const insert = button("gx-insert", "Insert as cell", "Add this code as a new cell below this one",
        () => insertCell(this.model, reveal(b.code(), CODE_RE), insert));
      tools.append(insert);
    }
    const name = h("span", "gx-tool-name", reveal(op.recipient || "tool"));
    name.title = name.textContent;
    head.append(name, tools, b.status);
    b.pre = h("pre", "gx-code");
    b.text = h("code");
    b.pre.append(b.text);
    b.actions = h("div", "gx-actions");
    b.actions.hidden = true;
    guardKeys(b);
    b.output = h("pre", "gx-output");
    b.output.hidden = true;
    b.code = () => (b.editor ? this.edited(b) : b.ran !== undefined ? b.ran : b.raw);
    b.node.append(head, b.pre, b.actions, b.output);
  }

  text(op, sent, later) {
    // `later`: an end later in the batch draws the whole answer, whose text this is (only kept, for Copy)
    const b = this.blocks[op.i];
    if (!b) return;
    b.raw += op.t;
    if (later) return;
    // Reasoning scrolls in its box as it streams, unless the reader scrolled up: the newest thoughts stay in view
    const box = b.kind === "reasoning" ? b.text : null;
    const follow = box && box.scrollHeight - box.scrollTop - box.clientHeight < 4;
    if (b.md) b.text.textContent = b.raw.slice(b.upto);
    else b.text.appendChild(document.createTextNode(b.kind === "tool" ? reveal(op.t, CODE_RE) : op.t));
    if (follow) box.scrollTop = box.scrollHeight;
  }

  md(op, sent, later) {
    const b = this.blocks[op.i];
    if (!b || !b.md || later) return;
    b.md.append(answerHTML(op.html));
    b.upto = op.upto;
    b.text.textContent = b.raw.slice(b.upto);
  }

  end(op, sent, later) {
    // `later`: an end later in the batch draws the answer again (with its citation chips); this one's Sources stay
    const b = this.blocks[op.i];
    if (!b) return;
    b.ended = true;
    if (b.kind === "reasoning") {
      const took = op.seconds < 0.05 ? "under 0.1 s" : `${op.seconds.toFixed(1)} s`;  // "0.0 s" read as "did not think"
      b.label.textContent = `Thought for ${took} · ${counted(op.tokens, "token")}`;
      b.node.classList.add("gx-ended");
    } else if (op.html !== undefined && b.md) {
      if (!later) {
        b.md.replaceChildren(answerHTML(op.html));
        b.upto = b.raw.length;
        b.text.textContent = "";
      }
      if (op.sources !== undefined) {   // the cited sources under the answer, as in the saved turn (citations.py)
        b.sources = b.sources || h("div", "gx-sources");
        setHTML(b.sources, op.sources);
        b.text.after(b.sources);
      }
    } else if (op.code !== undefined && b.kind === "tool") {
      setHTML(b.text, op.code);
      revealText(b.text, CODE_RE);
    }
  }

  tool(op) {
    const b = this.blocks[op.i];
    if (!b || !b.status) return;
    b.node.dataset.status = op.status;
    b.status.textContent = STATUS[op.status] || op.status;
    if (op.progress) b.status.textContent += ` · ${reveal(op.progress, BIDI_RE)}`;   // a busy service retried ...
    if (b.editor && op.status !== "waiting") this.closeEditor(b);
    if (op.code !== undefined) {          // the user's edited code is what runs
      setHTML(b.text, op.code);
      revealText(b.text, CODE_RE);
      b.status.textContent += " · edited";
    }
    b.wide?.disconnect();
    b.actions.replaceChildren();
    b.actions.hidden = op.status !== "waiting";
    if (op.status === "waiting") this.approval(b, op);
    if (op.output !== undefined) {
      b.output.textContent = reveal(op.output, BIDI_RE);
      b.output.hidden = !op.output;
      if (op.card !== undefined) {        // a browser call: results or page window (widgets/citations.py)
        b.card = b.card || h("div", "gx-browse-card");
        setHTML(b.card, op.card);
        revealText(b.card);
        b.output.after(b.card);
        b.output.hidden = true;
      }
      if (op.seconds) b.status.textContent += ` · ${op.seconds.toFixed(2)} s`;
    }
  }

  approval(b, op) {
    const decide = (kind, always) => {
      keepFocus(b.node, b.status);      // from the buttons or the editor, which go
      for (const node of b.actions.querySelectorAll("button")) node.disabled = true;
      b.status.textContent = kind === "run" ? "starting…" : "skipping…";
      const action = { kind, index: op.i, always: !!always };
      const code = b.code();            // the open editor's, or what a closed one left on the card
      if (code !== b.raw) action.code = code;
      if (b.editor) b.editor.readOnly = true;
      send(this.model, action);
    };
    const run = button("gx-run", "▶ Run", "Run this code in your kernel", () => decide("run"));
    const recipient = op.recipient || "tool";   // what Always allow covers: one function, else the whole tool
    const name = reveal(recipient.startsWith("functions.") ? recipient : recipient.split(".")[0]);
    const always = button("gx-always", "Always allow", `Run this and every later ${name} call in this conversation `
      + "without asking", () => decide("run", true));
    const edit = button("gx-edit", ...EDIT, () => (b.editor ? this.closeEditor(b) : this.openEditor(b)));
    const skip = button("gx-skip", "Skip", "Do not run it; the model is told so", () => decide("skip"));
    const question = reveal(op.question || "Run this code in your kernel?", BIDI_RE);
    const ask = h("span", "gx-ask", question);
    const buttons = h("span", "gx-buttons");   // one group: in a narrow card it wraps below the question
    buttons.append(run, always, edit, skip);
    b.actions.append(ask, buttons);
    this.sayWide(b, ask, question);
    queueMicrotask(() => this.offerFocus(b));   // after the whole batch: a replayed card may be decided in it
  }

  sayWide(b, ask, question) {
    // Code past the card's right edge runs all the same, out of sight: where a line is wider than the card (a narrow
    // window, wide letters, a run of spaces short of the kernel's 120 characters: `x = 1`, 92 spaces, `;os.remove(p)`),
    // the question says so while the card waits, as the kernel's does of a longer line (session._wide_warning, the end
    // of its question: a search's question quotes the model's query, which may say "scroll sideways" too).
    if (question.endsWith(WIDE.slice(WIDE.indexOf("scroll sideways")))) return;
    b.wide = new ResizeObserver(() => {
      if (b.node.dataset.status !== "waiting") return;
      ask.textContent = b.pre.scrollWidth > b.pre.clientWidth + 1 ? `${question} ${WIDE}` : question;
    });
    b.wide.observe(b.pre);
  }

  offerFocus(b) {
    // A card that waits for the user takes keyboard focus on ▶ Run, as JupyterLab's input() box does (it was 14 Tab
    // presses away), unless the user is typing in an editor elsewhere, or is at work outside this notebook (another
    // notebook beside it, a terminal, a console: an Enter meant there ran the call): then focus stays there.
    const run = b.actions.querySelector(".gx-run");
    const at = document.activeElement, home = b.node.closest(".jp-Notebook");
    const away = home && at && at !== document.body && !home.contains(at);
    if (!run || run.disabled || b.node.dataset.status !== "waiting" || typingIn(at) || away) return;
    b.tookFrom = editor(at) ? at : null;
    run.focus({ preventScroll: true });
    run.scrollIntoView({ block: "nearest" });
    b.armAt = performance.now() + ARM_MS;
  }

  openEditor(b) {
    // The editor shows the code as the card does, its direction controls written out (\u202e): a textarea obeys them,
    // and `x = 1 #\u202e)"ok"(tnirp ;` read `x = 1 #; print("ok")` there. Left as shown, the model's code runs as it
    // came (the same code, written out); changed, what the editor shows is what runs.
    const code = b.code();              // before b.editor exists: b.code() would read the new, empty editor
    b.editor = h("textarea", "gx-editor");
    b.editor.value = reveal(code, CODE_RE);
    b.editor.spellcheck = false;
    b.editor.title = "Shift+Enter or Ctrl+Enter runs the code";
    b.editor.addEventListener("keydown", (event) => {
      // Keys typed here are the editor's, not the notebook's (as in ipywidgets' text boxes): JupyterLab
      // would swallow Enter, and its Shift+Enter would run the cell again, clearing this view while the
      // turn waits for an answer.
      event.stopPropagation();
      if (event.key === "Enter" && (event.shiftKey || event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        b.actions.querySelector(".gx-run")?.click();
      }
    });
    b.editor.rows = Math.min(20, Math.max(3, b.editor.value.split("\n").length + 1));
    b.pre.hidden = true;
    b.pre.after(b.editor);
    editLabel(b, EDITING);
    b.editor.focus();
  }

  edited(b) {
    // What the open editor holds, as code to run: the card's code where it is left as shown (written out), else its text.
    const shown = b.ran !== undefined ? b.ran : b.raw;
    return b.editor.value === reveal(shown, CODE_RE) ? shown : b.editor.value;
  }

  closeEditor(b) {
    const code = this.edited(b);
    if (code !== b.raw) b.ran = code;
    if (b.ran !== undefined) b.text.textContent = b.ran;   // shown as typed until the kernel's highlighted copy
    b.editor.remove();
    b.editor = null;
    b.pre.hidden = false;
    editLabel(b, EDIT);
  }

  notice(op) {
    this.items.appendChild(h("div", `gx-notice gx-${op.level}`, reveal(op.text)));   // it can name a tool, a page
  }

  error(op) {
    const node = h("div", "gx-notice gx-error", `Not valid Harmony (${op.reason})`);
    if (op.raw) node.appendChild(h("pre", "gx-raw", op.raw));
    this.items.appendChild(node);
  }

  rate(op) {
    const rate = op.tps ? ` · ${op.tps.toFixed(1)} tok/s` : "";
    this.progress.textContent = `${counted(op.tokens, "token")}${rate}`;
  }

  stats(op) {
    this.node.classList.remove("gx-live");
    const footer = h("div", "gx-footer");
    footer.dataset.room = this.bar.dataset.room || "";   // a line shorter than the bar's room keeps its height
    const line = h("span", "gx-stats", op.line);
    const below = barRow();
    footer.append(barRow(line), below);
    if (op.context_tokens && this.contextWindow) below.append(this.meter(op.context_tokens, this.contextWindow));
    if (op.controls) {
      const ask = (kind) => () => {
        keepFocus(group, line);
        again.disabled = fresh.disabled = true;
        send(this.model, { kind });
      };
      const again = this.again = button("gx-regenerate", "↻ Regenerate", REGENERATE, ask("regenerate"));
      const fresh = button("gx-new-chat", "New chat", "Forget the conversation: the next question starts fresh",
        ask("new_chat"));
      const group = h("span", "gx-turn-buttons");   // wraps as one: never New chat alone on the next line
      group.append(again, fresh);
      below.append(group);
      this.regenerable(this.model.get("_last"));
    }
    this.bar.after(footer);
    keepFocus(this.bar, line);          // not to ↻ Regenerate, where a second Enter would drop the kept reply
    this.bar.remove();
    this.bar = footer;
  }

  regenerable(last) {
    // Regenerate only on the session's last answer (the kernel refuses the others): disabled, saying why, once a
    // later turn or New chat replaces this one.
    if (!this.again || this.why || last) return;
    this.again.disabled = true;
    this.again.title = NOT_LAST;
  }

  gone(why) {
    // The kernel restarted, died or was shut down (`why`): a new one knows nothing of this turn, so nothing here can
    // reach it. A waiting card says its call was not run and a running one that it was cut off; no button is left
    // that would wait forever.
    if (this.why) return;
    this.why = why;
    for (const b of Object.values(this.blocks)) {
      const status = b.status && b.node.dataset.status;
      if (!["writing", "pending", "waiting", "running"].includes(status)) continue;
      keepFocus(b.node, b.status);
      if (b.editor) b.editor.readOnly = true;
      b.node.dataset.status = "interrupted";
      b.status.textContent = status === "running" ? "interrupted" : "not run";
      const ask = b.actions.querySelector(".gx-ask");
      if (ask) ask.textContent = `The kernel ${why}: this call was not run.`;
    }
    keepFocus(this.bar, this.bar.querySelector(".gx-stats, .gx-progress"));
    // Copy, Insert and the prompt's Show all need no kernel: they stay
    for (const node of this.node.querySelectorAll(
      "button:not(.gx-copy):not(.gx-copy-code):not(.gx-insert):not(.gx-prompt-toggle)")) {
      node.disabled = true;
      node.title = `The kernel ${why}: this conversation is gone`;
    }
    if (this.node.classList.contains("gx-live")) {
      this.node.classList.remove("gx-live");
      this.progress.textContent = `the kernel ${why}`;
    } else if (this.again) {            // why ↻ Regenerate and New chat are disabled, without hovering them
      this.again.parentNode.before(h("span", "gx-gone", `the kernel ${why}`));
    }
  }

  meter(used, window) {
    // Tokens the next question starts from, of the context length; warns as it fills. The kernel sends the window
    // itself once no question fits: "full" (a rounded 99.6 % read "100%" with room left, and "before it fills" of a full one).
    const share = Math.min(1, used / window);
    const full = share >= 1;
    const node = h("span", "gx-context");
    node.dataset.level = share >= 0.9 ? "full" : share >= 0.75 ? "warn" : "ok";
    node.title = full ? `the context (${counted(window, "token")}) is full: start a new chat`
      : `${grouped(used)} of ${counted(window, "context token")} used`
        + (share >= 0.75 ? ": start a new chat before it fills" : "");
    const bar = h("span", "gx-meter");
    const fill = h("span", "gx-meter-fill");
    fill.style.width = `${(share * 100).toFixed(1)}%`;
    bar.append(fill);
    const text = full ? `context full (${compact(window)})`
      : `context ${compact(used)} / ${compact(window)} (${Math.floor(share * 100)}%)`;
    node.append(bar, h("span", "gx-meter-text", text));
    return node;
  }
}

// ---------------------------------------------------------------- the view

function redrawnLater(ops) {
  // The places in `ops` (a batch) of the operations whose drawing of an answer a later one of the same turn replaces:
  // its end, with the whole answer's HTML (and a cited answer's end again, with its chips). A view drawn late (a tab
  // reloaded, one drawn after the turn) laid in each Markdown part of the answer, the whole answer, then the answer
  // with its chips: 61 sanitisations of a 114 kB answer, 2 now (benchmarks/chat_replay.py).
  const later = new Set(), redrawn = new Set();
  for (let at = ops.length - 1; at >= 0; at--) {
    const op = ops[at];
    if (op.op === "turn") redrawn.clear();       // the ops before it are an earlier turn's
    if (["text", "md", "end"].includes(op.op) && redrawn.has(op.i)) later.add(at);
    if (op.op === "end" && op.html !== undefined) redrawn.add(op.i);
  }
  return later;
}

function render({ model, el }) {
  const view = { model, root: h("div", "gx-chat") };
  el.appendChild(view.root);
  const overrides = new MutationObserver(writeOutOverrides);
  overrides.observe(view.root, { childList: true, subtree: true, characterData: true });
  view.root.addEventListener("pointerover", placePopup);
  view.root.addEventListener("focusin", placePopup);
  view.root.addEventListener("click", showSource);
  view.root.addEventListener("keydown", showSource);
  view.root.addEventListener("pointerout", undismissPopup);
  view.root.addEventListener("focusout", undismissPopup);
  const onEscape = (event) => dismissPopup(view.root, event);   // a hovered chip's too, wherever focus is
  document.addEventListener("keydown", onEscape, true);
  let turn = null;
  let seq = 0;
  const apply = (ops, sent) => {
    const later = redrawnLater(ops);
    for (const [at, op] of ops.entries()) {
      if (op.op === "turn") {          // one turn per view: Regenerate replaces it
        const old = view.root.firstChild;
        turn = new Turn(view, op);
        if (old) {
          keepFocus(old, turn.stop);
          old.remove();
        }
      } else if (turn && OPS.has(op.op)) {
        turn[op.op](op, sent, later.has(at));
      }
    }
  };
  const take = (name) => {
    const batch = model.get(name);
    if (batch && batch.ops && batch.seq > seq) {
      if (name === "_snapshot") {
        view.root.replaceChildren();
        turn = null;
      }
      apply(batch.ops, batch.at);
      seq = batch.seq;
    }
  };
  take("_snapshot");
  // Drawn mid-turn (a new view of the notebook or of the output), the view has missed the turn's first batches: it
  // asks for the whole turn so far and takes no batch until that snapshot is in
  let behind = (model.get("_chunk").seq || 0) > seq + 1;
  if (!behind) take("_chunk");
  const onChunk = () => behind || take("_chunk");
  const onSnapshot = () => {
    if (behind) take("_snapshot");
    behind = behind && seq < model.get("_snapshot").seq;
  };
  model.on("change:_chunk", onChunk);
  model.on("change:_snapshot", onSnapshot);
  const onLast = () => turn && turn.regenerable(model.get("_last"));   // a later turn or New chat in the session
  model.on("change:_last", onLast);
  // The widget manager marks every model of the old kernel no longer live when the kernel restarts, but not when it
  // is shut down (Kernel > Shut Down, Change Kernel) or dies for good: the view watches the notebook's kernel itself.
  const gone = (why) => turn && turn.gone(why);
  const restarted = () => gone("restarted");
  model.on("comm_live_update", restarted);
  const timer = setInterval(() => turn && turn.node.classList.contains("gx-live") && turn.tick(), 1000);
  const ctx = notebookContext(model);
  if (ctx) saveStill(ctx, model, transcriptOf);
  const onStatic = () => ctx && (ctx.model.dirty = true);   // the saved form changed: autosave writes it in
  model.on("change:_static", onStatic);
  const kernels = ctx && ctx.sessionContext;
  const kernel = kernels && kernels.session && kernels.session.kernel;
  const onStatus = (_, status) => KERNEL_GONE[status] && gone(KERNEL_GONE[status]);
  const onKernel = (_, change) => (!change.newValue || change.newValue.id !== kernel.id) && gone("shut down");
  if (kernel) {
    kernels.statusChanged.connect(onStatus);
    kernels.kernelChanged.connect(onKernel);
  }
  send(model, { kind: "ready", saves: !!ctx, behind });
  return () => {
    clearInterval(timer);
    overrides.disconnect();
    document.removeEventListener("keydown", onEscape, true);
    model.off("change:_chunk", onChunk);
    model.off("change:_snapshot", onSnapshot);
    model.off("change:_last", onLast);
    model.off("change:_static", onStatic);
    model.off("comm_live_update", restarted);
    if (kernel) {
      kernels.statusChanged.disconnect(onStatus);
      kernels.kernelChanged.disconnect(onKernel);
    }
  };
}

export default { initialize: ({ model }) => revive(model), render };
