// gptoss_lab chat view: applies the kernel's batches of operations to the DOM. Plain ES module, no bundler.
// Python renders Markdown and code to sanitised HTML; this file only places it and wires the buttons.

const NOTE = "Reasoning is the model's unfiltered chain of thought, not a checked answer.";
const STATUS = {
  pending: "pending", waiting: "waiting for approval", running: "running…", done: "done",
  error: "error", timeout: "timed out", skipped: "skipped",
};

const OPS = new Set(["block", "text", "md", "end", "tool", "notice", "error", "stats"]);

function send(model, action) {
  model.set("_action", { ...action, n: Date.now() + Math.random() });
  model.save_changes();
}

async function copyText(text, button) {
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
  button.textContent = "Copied";
  setTimeout(() => (button.textContent = "Copy"), 1500);
}

class Turn {
  constructor(model, root, op) {
    this.model = model;
    this.blocks = {};
    this.node = h("div", "gx-turn gx-live");
    const prompt = h("div", "gx-prompt", op.prompt);
    this.items = h("div", "gx-items");
    this.bar = h("div", "gx-bar");
    this.stop = h("button", "gx-button gx-stop", "■ Stop");
    this.stop.title = "End generation (like interrupting the kernel); the partial reply is kept";
    this.stop.onclick = () => {
      this.stop.disabled = true;
      this.stop.textContent = "Stopping…";
      send(model, { kind: "stop" });
    };
    const info = h("span", "gx-meta", [op.model, op.effort && `effort ${op.effort}`].filter(Boolean).join(" · "));
    this.bar.append(this.stop, h("span", "gx-dots"), info);
    this.node.append(h("div", "gx-prompt-row"), this.items, this.bar);
    this.node.firstChild.append(prompt);
    root.appendChild(this.node);
  }

  block(op) {
    const b = { kind: op.kind, raw: "", upto: 0 };
    if (op.kind === "reasoning") {
      b.node = h("details", "gx-reasoning");
      b.node.open = true;
      const summary = h("summary");
      b.label = h("span", "gx-label", "Thinking…");
      summary.append(h("span", "gx-spinner"), b.label);
      b.text = h("div", "gx-reasoning-text");
      b.node.append(summary, h("div", "gx-note", NOTE), b.text);
    } else if (op.kind === "tool") {
      b.node = h("div", "gx-tool");
      b.node.dataset.status = "writing";
      const head = h("div", "gx-tool-head");
      b.status = h("span", "gx-status", "writing…");
      head.append(h("span", "gx-tool-name", op.recipient || "tool"), b.status);
      const pre = h("pre", "gx-code");
      b.text = h("code");
      pre.append(b.text);
      b.actions = h("div", "gx-actions");
      b.actions.hidden = true;
      b.output = h("pre", "gx-output");
      b.output.hidden = true;
      b.node.append(head, pre, b.actions, b.output);
    } else {
      if (op.kind === "final") for (const other of Object.values(this.blocks)) {
        if (other.kind === "reasoning") other.node.open = false;  // the answer is here: fold the thinking
      }
      b.node = h("div", `gx-${op.kind}`);
      b.md = h("div", "gx-md");
      b.text = h("div", "gx-tail");
      b.node.append(b.md, b.text);
      if (op.kind === "final") {
        const copy = h("button", "gx-button gx-copy", "Copy");
        copy.title = "Copy the answer as Markdown";
        copy.onclick = () => copyText(b.raw, copy);
        b.node.append(copy);
      }
    }
    this.blocks[op.i] = b;
    this.items.appendChild(b.node);
  }

  text(op) {
    const b = this.blocks[op.i];
    if (!b) return;
    b.raw += op.t;
    if (b.md) b.text.textContent = b.raw.slice(b.upto);
    else b.text.appendChild(document.createTextNode(op.t));
  }

  md(op) {
    const b = this.blocks[op.i];
    if (!b) return;
    b.md.insertAdjacentHTML("beforeend", op.html);
    b.upto = op.upto;
    b.text.textContent = b.raw.slice(b.upto);
  }

  end(op) {
    const b = this.blocks[op.i];
    if (!b) return;
    if (b.kind === "reasoning") {
      b.label.textContent = `Thought for ${op.seconds.toFixed(1)} s · ${op.tokens} tokens`;
      b.node.classList.add("gx-ended");
    } else if (op.html !== undefined) {
      b.md.innerHTML = op.html;
      b.upto = b.raw.length;
      b.text.textContent = "";
    } else if (op.code !== undefined) {
      b.text.innerHTML = op.code;
    }
  }

  tool(op) {
    const b = this.blocks[op.i];
    if (!b || !b.status) return;
    b.node.dataset.status = op.status;
    b.status.textContent = STATUS[op.status] || op.status;
    b.actions.replaceChildren();
    b.actions.hidden = op.status !== "waiting";
    if (op.status === "waiting") {
      const run = h("button", "gx-button gx-run", "▶ Run");
      const skip = h("button", "gx-button gx-skip", "Skip");
      const decide = (kind) => {
        run.disabled = skip.disabled = true;
        b.status.textContent = kind === "run" ? "starting…" : "skipping…";
        send(this.model, { kind, index: op.i });
      };
      run.onclick = () => decide("run");
      skip.onclick = () => decide("skip");
      b.actions.append(h("span", "gx-ask", "Run this code in your kernel?"), run, skip);
    }
    if (op.output !== undefined) {
      b.output.textContent = op.output;
      b.output.hidden = !op.output;
      if (op.seconds) b.status.textContent += ` · ${op.seconds.toFixed(2)} s`;
    }
  }

  notice(op) {
    this.items.appendChild(h("div", `gx-notice gx-${op.level}`, op.text));
  }

  error(op) {
    const node = h("div", "gx-notice gx-error", `Not valid Harmony (${op.reason})`);
    if (op.raw) node.appendChild(h("pre", "gx-raw", op.raw));
    this.items.appendChild(node);
  }

  stats(op) {
    this.node.classList.remove("gx-live");
    this.bar.replaceChildren(h("span", "gx-footer", op.line));
    if (op.interrupted) this.node.classList.add("gx-interrupted");
  }
}

function render({ model, el }) {
  const root = h("div", "gx-chat");
  el.appendChild(root);
  let turn = null;
  let seq = 0;
  const apply = (ops) => {
    for (const op of ops) {
      if (op.op === "turn") turn = new Turn(model, root, op);
      else if (turn && OPS.has(op.op)) turn[op.op](op);
    }
  };
  const take = (name) => {
    const batch = model.get(name);
    if (batch && batch.ops && batch.seq > seq) {
      if (name === "_snapshot") {
        root.replaceChildren();
        turn = null;
      }
      apply(batch.ops);
      seq = batch.seq;
    }
  };
  take("_snapshot");
  take("_chunk");
  const onChunk = () => take("_chunk");
  model.on("change:_chunk", onChunk);
  if (!model.get("_rendered")) {
    model.set("_rendered", true);
    model.save_changes();
  }
  return () => model.off("change:_chunk", onChunk);
}

export default { render };
