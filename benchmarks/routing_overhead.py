"""Decode speed with expert-routing capture vs without, same LocalEngine, same run (target ratio >= 0.95).

    python benchmarks/routing_overhead.py [MODEL] [--dtype float32] [--tokens 64] [--rounds 7]

MODEL is "tiny", a checkpoint folder or a hub id; by default a random 4-layer GptOss is made in a
temporary folder. Rounds alternate with/without capture; each condition's median tok/s is reported.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from gptoss_lab import harmony
from gptoss_lab.arguments import Parser
from gptoss_lab.tools.python import PythonTool
from gptoss_lab.engines.base import Sampling
from gptoss_lab.engines.local import LocalEngine
from gptoss_lab.routing import Recorder


def decode_rate(engine: LocalEngine, prompt: list[int], tokens: int, record: bool) -> float:
    """Generated tokens per second after the first one (prefill excluded), never stopping early.

    The clock stops when the last token arrives: the one extra forward that records the last
    token's routing happens once per engine call, not per token, and is not a decode cost."""
    recorder = Recorder() if record else None
    stream = engine.stream(prompt, stop=(), sampling=Sampling(max_new_tokens=tokens, temperature=0), recorder=recorder)
    next(stream)
    start, count, seconds = time.perf_counter(), 0, 0.0
    for _ in stream:
        count += 1
        seconds = time.perf_counter() - start
    if record:
        assert len(recorder.tokens) == len(prompt) + tokens  # every position was recorded
    return count / seconds


def main() -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", help='"tiny", a checkpoint folder or hub id (default: a random GptOss)')
    parser.add_argument("--dtype", help="weights dtype, e.g. float32 (default: the checkpoint's)")
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per measurement")
    parser.add_argument("--rounds", type=int, default=7, help="measurements per condition, alternating")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.model is None:
            from gptoss_lab.tiny.random_model import make_random_checkpoint

            args.model = str(make_random_checkpoint(Path(tmp) / "random"))
        engine = LocalEngine.from_pretrained(args.model, dtype=args.dtype, progress=False)
    prompt = harmony.render([harmony.system_message("low", tools=[PythonTool().system_config()], date="2025-01-01"),
                             harmony.user_message("Count the experts, please.")])
    decode_rate(engine, prompt, 8, record=True)  # warm up both paths
    decode_rate(engine, prompt, 8, record=False)
    rates: dict[bool, list[float]] = {True: [], False: []}
    for round_ in range(args.rounds):
        for record in ((False, True) if round_ % 2 else (True, False)):  # neither condition always goes first
            rates[record].append(decode_rate(engine, prompt, args.tokens, record))
    plain, captured = statistics.median(rates[False]), statistics.median(rates[True])
    layers, experts = engine.config.num_hidden_layers, engine.config.num_local_experts
    print(f"model {engine.name} ({layers} layers x {experts} experts, {engine.model.dtype}, "
          f"{engine.model.device}), {args.tokens} new tokens x {args.rounds} rounds")
    print(f"decode without capture: {plain:8.1f} tok/s")
    print(f"decode with capture:    {captured:8.1f} tok/s")
    print(f"ratio (target >= 0.95): {captured / plain:.3f}")


if __name__ == "__main__":
    main()
