"""The lab's speed on this machine, in one table: decode, prefill, llama.cpp, remote, front end, routing, format,
python tool.

    python benchmarks/run.py [--rounds 5] [--threads 1] [--lengths 1024,4096,16384,32768] [--no-llamacpp] [--quick]

Every ratio is measured in one run: the two conditions alternate round by round (which goes first
swaps), and each row gives the median with the min–max over the rounds, so a machine shared with
other work shows as spread instead of a wrong answer. The model is the bundled gpt-oss-tiny; the
lab engine is what `Session.load("tiny")` gives (float32 on a CPU, the lean forward). Long-context
rows use a copy of tiny whose config allows more positions (max_position_embeddings 40,960; same
weights). llama.cpp rows need llama-cpp-python; its GGUFs are converted with the project's own
recipe (gptoss_lab.tiny.llamacpp) and kept in ~/.cache/gptoss_lab/bench.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil

from gptoss_lab import Session, harmony
from gptoss_lab.arguments import Parser
from gptoss_lab.engines.base import Sampling
from gptoss_lab.engines.local import LocalEngine
from gptoss_lab.tiny import CHECKPOINT

sys.path.insert(0, str(Path(__file__).parent))
from routing_overhead import decode_rate  # noqa: E402  (the routing lab's own capture benchmark)

clock = time.perf_counter
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gptoss_lab" / "bench"
QUESTION = "What is Harmony?"  # tiny answers it in one call, no tool, ~80 tokens at high effort
ROWS: list[tuple[str, str, str, str, str]] = []


# ---------------------------------------------------------------- measuring


def spread(values: list[float], fmt: str = "{:.3g}") -> str:
    """median (min–max)"""
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def row(what: str, lab: str, baseline: str, ratio: str = "", target: str = "") -> None:
    ROWS.append((what, lab, baseline, ratio, target))
    print(f"  {what}: {lab} | {baseline} | {ratio} {target}", flush=True)


def alternate(conditions: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Each condition once per round, the order reversed every other round."""
    results: dict[str, list[float]] = {name: [] for name in conditions}
    for i in range(rounds):
        for name in list(conditions)[:: 1 if i % 2 else -1]:
            results[name].append(conditions[name]())
    return results


def ratios(a: list[float], b: list[float]) -> list[float]:
    """Per-round ratios a/b (the rounds were measured side by side)."""
    return [x / y for x, y in zip(a, b)]


def rate(times: list[float]) -> float:
    """Tokens per second after the first token, from the times each token arrived."""
    return (len(times) - 1) / (times[-1] - times[0])


class Clocked:
    """An engine wrapper that notes when each token reaches its consumer (whose work lies between two)."""

    def __init__(self, engine: Any) -> None:
        self.engine, self.name = engine, engine.name
        self.context_window = getattr(engine, "context_window", None)
        self.times: list[float] = []
        self.prompt: list[int] = []
        self.tokens: list[int] = []

    def stream(self, prompt: Any, **kw: Any) -> Iterator[int]:
        self.times, self.prompt, self.tokens = [], list(prompt), []
        for token in self.engine.stream(prompt, **kw):
            self.times.append(clock())
            self.tokens.append(token)
            yield token


class GenerateClock:
    """A `generate` streamer that notes when each new token is produced (the first put is the prompt)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        if self.prompt_seen:
            self.times.append(clock())
        self.prompt_seen = True

    def end(self) -> None:
        pass


def generate_rate(model: Any, prompt: list[int], n: int, *, through_stops: bool = False) -> tuple[float, list[int]]:
    """transformers' `generate(do_sample=False)` with its KV cache: decode tokens/s and the ids (up to n; exactly
    n `through_stops`, as `stream(stop=())`)."""
    import torch

    streamer = GenerateClock()
    with torch.inference_mode():
        out = model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=n,
                             min_new_tokens=n if through_stops else None, streamer=streamer,
                             pad_token_id=harmony.RETURN)
    return rate(streamer.times), out[0, len(prompt):].tolist()


def stream_rate(engine: Any, prompt: list[int], n: int) -> float:
    """LocalEngine.stream decode tokens/s, never stopping before n tokens."""
    clocked = Clocked(engine)
    for _ in clocked.stream(prompt, stop=(), sampling=Sampling(temperature=0, max_new_tokens=n)):
        pass
    return rate(clocked.times)


def cold_prefill(engine: LocalEngine, ids: list[int]) -> float:
    """Seconds from an empty cache to the first generated token of `ids`."""
    engine.reset()
    start = clock()
    next(engine.stream(ids, stop=(), sampling=Sampling(temperature=0, max_new_tokens=1)))
    return clock() - start


def document(tokens: int) -> list[int]:
    """Harmony prompt ids of a long multi-turn chat, cut to `tokens` and ending where the model answers."""
    from gptoss_lab.tools.python import PythonTool

    messages = [harmony.system_message("low", tools=[PythonTool().system_config()], date="2025-01-01")]
    renderer, turn = harmony.Renderer(), 0
    while len(ids := renderer.render(messages)) < tokens:
        turn += 1
        messages.append(harmony.user_message(f"Question {turn}: what do the experts of layer {turn % 24} do? " * 8))
        messages.append(harmony.assistant_message(f"Answer {turn}: they route tokens by content. " * 12, "final"))
    return ids[:tokens - 2] + ids[-2:]


# ---------------------------------------------------------------- sections


def ask(engine: Clocked) -> float:
    """One `Session.ask` turn (one engine call: tiny answers QUESTION without its tool); decode tokens/s."""
    engine.engine.reset()
    Session(engine, namespace={}, tools="python", approval="never", effort="high", date="2025-06-01").ask(QUESTION)
    return rate(engine.times)


def decode_section(lab: LocalEngine, clocked: Clocked, rounds: int) -> None:
    """Session.ask vs generate on the same prompt and tokens; the engine alone; each speed lever."""
    print("decode", flush=True)
    prompt, answer = clocked.prompt, clocked.tokens
    same = generate_rate(lab.model, prompt, len(answer))[1] == answer
    result = alternate({"session": lambda: ask(clocked),
                        "generate": lambda: generate_rate(lab.model, prompt, len(answer))[0]}, rounds)
    row(f"decode: Session.ask vs model.generate(do_sample=False), {len(prompt)}-token prompt, the same {len(answer)} "
        f"tokens{'' if same else ' (NOT the same tokens)'}, tok/s", spread(result["session"]),
        spread(result["generate"]), spread(ratios(result["session"], result["generate"])), "≥ 0.95")

    n = 128
    result = alternate({"engine": lambda: stream_rate(lab, prompt, n),
                        "generate": lambda: generate_rate(lab.model, prompt, n, through_stops=True)[0]}, rounds)
    row(f"decode: LocalEngine.stream vs generate, {n} tokens, tok/s", spread(result["engine"]), spread(result["generate"]),
        spread(ratios(result["engine"], result["generate"])))

    bf16 = LocalEngine.from_pretrained("tiny", dtype="bfloat16", fast=False, progress=False)
    f32 = LocalEngine(lab.model, fast=False)
    whole = whole_vocabulary(lab)
    levers = alternate({"bf16": lambda: stream_rate(bf16, prompt, n), "f32": lambda: stream_rate(f32, prompt, n),
                        "lean": lambda: stream_rate(whole, prompt, n),
                        "lab": lambda: stream_rate(lab, prompt, n)}, max(3, rounds // 2))
    base = levers["bf16"]
    for name, what in [("bf16", "transformers forward, bfloat16 (the old default)"),
                       ("f32", "transformers forward, float32"),
                       ("lean", "lean forward (static KV store), float32, whole vocabulary projection"),
                       ("lab", "lean forward, float32, all-zero vocabulary rows left out (the lab's default)")]:
        row(f"decode lever: {what}, tok/s", spread(levers[name]), spread(base) if name != "bf16" else "",
            spread(ratios(levers[name], base)) + " × bf16" if name != "bf16" else "")
    print("  (torch.compile of the lean decode step, measured once: 233 s to compile, 0.64× eager: graph breaks "
          "at the router hooks and the expert choice; not used)", flush=True)


def whole_vocabulary(lab: LocalEngine) -> LocalEngine:
    """The lab's engine on the same model, projecting onto every vocabulary row (as llama.cpp and transformers do)."""
    engine = LocalEngine(lab.model)
    engine._fast.sparse_vocabulary = False
    return engine


def prefill_section(lab: LocalEngine, long_lab: LocalEngine, lengths: list[int], rounds: int) -> None:
    """Cold prefill tokens/s against context length; follow-up TTFT with and without the cache."""
    print("prefill", flush=True)
    slow = LocalEngine(long_lab.model, fast=False)
    for length in lengths:
        ids = document(length)
        times = {"lab": lambda: cold_prefill(long_lab, ids)}
        if length <= 4096:
            times["transformers"] = lambda: cold_prefill(slow, ids)
        result = alternate(times, rounds if length <= 4096 else max(2, rounds // 2))
        lab_rate = [length / s for s in result["lab"]]
        if "transformers" in result:
            ref = [length / s for s in result["transformers"]]
            row(f"cold prefill {length:,} tokens, tok/s (vs transformers' forward, float32)", spread(lab_rate),
                spread(ref), spread(ratios(lab_rate, ref)))
        else:
            row(f"cold prefill {length:,} tokens, tok/s; ms per token", spread(lab_rate),
                spread([1000 * s / length for s in result["lab"]]))
    long = max(lengths)
    short, far = document(1024), document(long)
    result = alternate({"far": lambda: stream_rate(long_lab, far, 64), "near": lambda: stream_rate(long_lab, short, 64)},
                       max(2, rounds // 2))  # each "far" round computes its prompt again
    row(f"decode after a {long:,}-token prompt vs after 1,024 tokens, 64 tokens, tok/s", spread(result["far"]),
        spread(result["near"]), spread(ratios(result["far"], result["near"])))
    history = document(4096)

    def follow_up(reuse: bool) -> float:
        lab.reset()
        turn = list(lab.stream(history, stop=(), sampling=Sampling(temperature=0, max_new_tokens=8)))
        ids = history + turn + harmony.render([harmony.user_message("And then?")])
        if not reuse:
            lab.reset()
        start = clock()
        next(lab.stream(ids, stop=(), sampling=Sampling(temperature=0, max_new_tokens=1)))
        return clock() - start

    result = alternate({"reuse": lambda: follow_up(True), "cold": lambda: follow_up(False)}, rounds)
    row(f"follow-up TTFT on a {len(history):,}-token conversation, ms (reuse vs cold)",
        spread([1000 * s for s in result["reuse"]]), spread([1000 * s for s in result["cold"]]),
        spread(ratios(result["reuse"], result["cold"])), "≤ 0.2")


def llamacpp_section(lab: LocalEngine, long_lab: LocalEngine, long_folder: Path, prompt: list[int], lengths: list[int],
                     rounds: int, threads: int) -> None:
    """The same tiny served by llama.cpp: raw decode and prefill, and RemoteEngine vs raw HTTP streaming."""
    try:
        import llama_cpp
    except ImportError:
        print("llama.cpp: llama-cpp-python is not installed (pip install llama-cpp-python); rows skipped")
        return
    print("llama.cpp", flush=True)
    ggufs = {kind: gguf(long_folder, kind) for kind in ("f32", "f16")}
    n = 128
    models = {kind: llama_cpp.Llama(model_path=str(path), n_ctx=max(lengths) + 256, n_threads=threads,
                                    n_threads_batch=threads, verbose=False) for kind, path in ggufs.items()}

    def llama_decode(llm: Any) -> float:
        import numpy as np

        llm.reset()
        llm.eval(prompt)
        times = []
        for _ in range(n):
            token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            times.append(clock())
            llm.eval([token])
        return rate(times)

    whole = whole_vocabulary(lab)
    result = alternate({"lab": lambda: stream_rate(lab, prompt, n), "whole": lambda: stream_rate(whole, prompt, n),
                        "f32": lambda: llama_decode(models["f32"]), "f16": lambda: llama_decode(models["f16"])}, rounds)
    for ours, what in (("lab", "the lab"), ("whole", "the lab projecting onto every vocabulary row")):
        for kind in ("f32", "f16"):
            row(f"decode: {what} vs llama.cpp in-process ({kind} GGUF), {n} tokens, tok/s", spread(result[ours]),
                spread(result[kind]), spread(ratios(result[ours], result[kind])), "≥ 1.0")

    for length in lengths:
        ids = document(length)

        def llama_prefill(llm: Any = models["f32"]) -> float:
            llm.reset()
            start = clock()
            llm.eval(ids)
            return length / (clock() - start)

        result = alternate({"lab": lambda: length / cold_prefill(long_lab, ids), "llama": llama_prefill},
                           rounds if length <= 4096 else max(2, rounds // 2))
        row(f"cold prefill {length:,} tokens vs llama.cpp (f32 GGUF), tok/s", spread(result["lab"]),
            spread(result["llama"]), spread(ratios(result["lab"], result["llama"])))
    models.clear()
    remote_section(ggufs["f32"], prompt, rounds, threads)


def remote_section(path: Path, prompt: list[int], rounds: int, threads: int) -> None:
    """RemoteEngine vs a raw streaming HTTP client on the same llama.cpp server, prompt and tokens."""
    import httpx
    from httpx_sse import connect_sse

    from gptoss_lab.engines.remote import RemoteEngine
    from gptoss_lab.tiny import llamacpp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = llamacpp.serve_command(path, port=port) + ["--n_threads", str(threads), "--n_threads_batch", str(threads)]
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_for(url, server)
            remote = Clocked(RemoteEngine(url, model="gpt-oss-tiny"))
            n = 96

            def through_remote() -> float:
                for _ in remote.stream(prompt, stop=harmony.STOP_TOKENS, sampling=Sampling(temperature=0, max_new_tokens=n)):
                    pass
                return rate(remote.times)

            def raw_http() -> float:
                body = {"prompt": harmony.decode(prompt), "max_tokens": n, "temperature": 0.0, "stream": True,
                        "top_k": 0, "repeat_penalty": 1.0, "min_p": 0.0}
                times = []
                with httpx.Client(timeout=120) as client, connect_sse(client, "POST", url + "/v1/completions",
                                                                      json=body) as events:
                    for event in events.iter_sse():
                        if event.data != "[DONE]" and json.loads(event.data)["choices"][0].get("text"):
                            times.append(clock())
                return rate(times)

            through_remote(), raw_http()  # the first request finds out that this server takes text prompts
            result = alternate({"remote": through_remote, "raw": raw_http}, rounds)
            row("llama.cpp server: RemoteEngine vs raw HTTP streaming, tok/s (the same prompt and answer)",
                spread(result["remote"]), spread(result["raw"]), spread(ratios(result["remote"], result["raw"])), "≥ 0.95")
        finally:
            server.terminate()
            server.wait(30)


def _wait_for(url: str, server: subprocess.Popen) -> None:
    import httpx

    for _ in range(240):
        if server.poll() is not None:
            raise RuntimeError("llama_cpp.server exited while starting")
        try:
            if httpx.get(url + "/v1/models", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.5)
    raise RuntimeError("llama_cpp.server did not start within 2 minutes")


def gguf(folder: Path, kind: str) -> Path:
    """The checkpoint as a GGUF (converted once with the project's recipe, then reused)."""
    from gptoss_lab.tiny import llamacpp

    stamp = int((CHECKPOINT / "model.safetensors").stat().st_mtime)
    path = CACHE / f"tiny-{stamp}-{kind}.gguf"
    if not path.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        print(f"  converting tiny to {path} ...", flush=True)
        llamacpp.convert(path, folder, outtype=kind)
    return path


def front_end_section(rounds: int) -> None:
    """ChatView's syncs per second at a token rate far above any model's, and its per-token cost as a message grows."""
    from gptoss_lab.engines.replay import ReplayEngine
    from gptoss_lab.widgets.chat import ChatView

    print("front end", flush=True)
    many = "".join(f"<|channel|>analysis<|message|>step {i}.<|end|><|start|>assistant" for i in range(1500))
    recording = many + "<|channel|>final<|message|>done<|return|>"
    sync_rates, token_rates = [], []
    for _ in range(rounds):
        view, engine = ChatView(), Clocked(ReplayEngine(recording))
        start = clock()
        with contextlib.redirect_stdout(io.StringIO()):  # outside a notebook the view prints itself
            Session(engine, namespace={}, tools="", max_new_tokens=100_000).ask("Go.", view=view)
        seconds = clock() - start
        sync_rates.append(view.syncs / seconds)
        token_rates.append(len(engine.tokens) / seconds)
    row(f"ChatView syncs/s streaming 1,500 short messages at {statistics.median(token_rates):,.0f} tok/s",
        spread(sync_rates), "", "", "≤ 30")

    word = harmony.encode_text(" expert")
    long_message = harmony.encode("<|channel|>analysis<|message|>") + word * 17_000 + harmony.encode("<|end|>")
    head = len(long_message) - 17_001
    early, late = [], []
    for _ in range(rounds):
        engine = Clocked(ReplayEngine(long_message + harmony.encode("<|start|>assistant<|channel|>final<|message|>x<|return|>")))
        with contextlib.redirect_stdout(io.StringIO()):
            Session(engine, namespace={}, tools="", max_new_tokens=100_000).ask("Go.", view=ChatView())
        t = engine.times
        early.append((t[head + 2000] - t[head + 1000]) / 1000)
        late.append((t[head + 17_000] - t[head + 16_000]) / 1000)
    row("ChatView per-token cost in one message, µs: tokens 16k–17k vs 1k–2k", spread([1e6 * x for x in late]),
        spread([1e6 * x for x in early]), spread(ratios(late, early)), "≤ 1.2")


def routing_section(lab: LocalEngine, rounds: int) -> None:
    """Decode with expert-routing capture vs without (benchmarks/routing_overhead.py's measurement)."""
    print("routing", flush=True)
    prompt = document(200)
    result = alternate({"capture": lambda: decode_rate(lab, prompt, 64, True),
                        "plain": lambda: decode_rate(lab, prompt, 64, False)}, rounds)
    row("decode with routing capture vs without, 64 tokens, tok/s", spread(result["capture"]), spread(result["plain"]),
        spread(ratios(result["capture"], result["plain"])), "≥ 0.95")


def format_section(rounds: int) -> None:
    """Encoding long unbroken text; the stream parser's per-token cost."""
    print("format", flush=True)
    text = "a" * 50_000
    start = clock()
    reference = harmony.encoding().encode(text, allowed_special=set(), disallowed_special=())
    theirs = clock() - start
    ours = []
    for _ in range(rounds):
        start = clock()
        ids = harmony.encode_text(text)
        ours.append(clock() - start)
    row(f"encode 50,000 × 'a', s (openai-harmony: identical ids {ids == reference})", spread(ours), f"{theirs:.2f}",
        spread([theirs / x for x in ours]) + " × faster")
    start = clock()
    harmony.encode_text("a" * 200_000)
    row("encode 200,000 × 'a', s (openai-harmony: ~17 s, quadratic)", f"{clock() - start:.2f}", "")
    guard_row(rounds)


def guard_row(rounds: int) -> None:
    """The format guard's cost per token, deep into one long message (what a long analysis pays at each token)."""
    import torch

    head = [harmony.START, harmony.ASSISTANT, harmony.CHANNEL, *harmony.encode("analysis"), harmony.MESSAGE]
    text = harmony.encode_text("Each expert reads the tokens routed to it and writes back. " * 3_000)   # > 30,000 ids
    cells = []
    for n in (100, 10_000, 30_000):
        ids = torch.tensor([document(2_000) + head + text[:n]])
        scores = torch.zeros(1, harmony.VOCAB_SIZE)
        guard = harmony.FormatGuard()
        times = []
        for _ in range(rounds):
            start = clock()
            for _ in range(20):
                guard(ids, scores)
            times.append((clock() - start) / 20 * 1e6)
        cells.append(spread(times, "{:.0f}"))
    row("format guard, µs a token, 100 / 10,000 / 30,000 tokens into a message", " / ".join(cells), "")


def tools_section(rounds: int) -> None:
    """The python tool's guards, set up and taken down at every call (snapshots of builtins and modules
    included), against running the same code with no guard: what containment costs a call."""
    print("tools", flush=True)
    from gptoss_lab.tools import containment
    from gptoss_lab.tools.python import PythonTool

    def guards() -> float:
        start = clock()
        for _ in range(100):
            with containment._GUARDS.running(None, None):
                pass
        return (clock() - start) / 100 * 1000

    def call() -> float:
        tool = PythonTool({}, timeout=5)
        start = clock()
        for _ in range(20):
            tool.execute("x = 6 * 7")
        return (clock() - start) / 20 * 1000

    guards()
    result = alternate({"guards": guards, "call": call}, rounds)
    row(f"python tool: guards per call, ms ({len(sys.modules)} modules loaded)", spread(result["guards"]), "", "",
        "< 1")
    row("python tool: whole call of `x = 6 * 7` (worker thread, guards, output), ms", spread(result["call"]), "")


def long_checkpoint(tmp: Path) -> Path:
    """tiny with max_position_embeddings 40,960 (weights linked, not copied)."""
    folder = tmp / "tiny-long"
    folder.mkdir()
    for item in CHECKPOINT.iterdir():
        if item.name != "config.json":
            (folder / item.name).symlink_to(item)
    config = json.loads((CHECKPOINT / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 40960}))
    return folder


def machine(threads: int) -> str:
    import torch
    import transformers

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    try:
        from importlib.metadata import version

        llama = f", llama-cpp-python {version('llama-cpp-python')}"
    except Exception:
        llama = ""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{cpu}, {psutil.cpu_count(logical=False)} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB; "
            f"torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}), {threads} torch thread(s); "
            f"transformers {transformers.__version__}{llama}; load average {load}")


def main() -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per comparison (alternating)")
    parser.add_argument("--threads", type=int, default=1, help="torch (and llama.cpp) threads; 1 on a shared machine")
    parser.add_argument("--lengths", default="1024,4096,16384,32768", help="context lengths for cold prefill")
    parser.add_argument("--no-llamacpp", action="store_true", help="skip the llama.cpp rows")
    parser.add_argument("--quick", action="store_true", help="3 rounds, contexts up to 4,096 (a smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.lengths = 3, "1024,4096"
    lengths = [int(x) for x in args.lengths.split(",")]
    import torch

    torch.set_num_threads(args.threads)
    started = clock()
    header = machine(args.threads)
    print(header, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        lab = LocalEngine.from_pretrained("tiny", progress=False)
        torch.set_num_threads(args.threads)  # loading leaves one core free; the benchmark says how many it uses
        folder = long_checkpoint(Path(tmp))
        long_lab = LocalEngine.from_pretrained(folder, progress=False)
        torch.set_num_threads(args.threads)
        clocked = Clocked(lab)
        ask(clocked)  # the prompt and the answer every decode comparison uses
        decode_section(lab, clocked, args.rounds)
        prefill_section(lab, long_lab, lengths, args.rounds)
        if not args.no_llamacpp:
            llamacpp_section(lab, long_lab, folder, clocked.prompt, lengths, args.rounds, args.threads)
        front_end_section(args.rounds)
        routing_section(lab, args.rounds)
        format_section(args.rounds)
        tools_section(args.rounds)
    print()
    print(f"Machine: {header} (at the start); {time.strftime('%Y-%m-%d')}, {clock() - started:.0f} s.")
    print("Each cell: median (min–max) over rounds; ratios are per round, the conditions alternating.\n")
    print("| measurement | lab | baseline | ratio | target |")
    print("|---|---|---|---|---|")
    for cells in ROWS:
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
