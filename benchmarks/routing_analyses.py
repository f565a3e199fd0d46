"""Time and memory of the routing analyses on a synthetic record at gpt-oss-120b's shape.

    python benchmarks/routing_analyses.py [--tokens 1000000] [--layers 36] [--experts 128] [--top-k 4]

The record has Zipf-distributed token ids (a 200k vocabulary), skewed expert load (a few hot experts
per layer), distinct top-k experts per token and layer, and channel labels in runs. Each analysis is
timed once; "peak" is the most memory it allocated on top of the record (tracemalloc sees numpy's
allocations). Save and memory-mapped load are measured too.
"""
from __future__ import annotations

import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from gptoss_lab.arguments import Parser
from gptoss_lab.routing import Routing, load
from gptoss_lab.routing import analysis


def synthetic(tokens: int, layers: int, experts: int, top_k: int, seed: int = 0) -> Routing:
    """A record of `tokens` tokens with realistic skew, built in slices (bounded memory)."""
    rng = np.random.default_rng(seed)
    hot = 1.0 / (np.arange(experts) + 5.0)
    chosen = np.empty((tokens, layers, top_k), np.int16)
    for start in range(0, tokens, 1 << 17):
        n = min(1 << 17, tokens - start)
        first = np.stack([rng.permutation(experts)[rng.choice(experts, n, p=hot / hot.sum())] for _ in range(layers)], 1)
        stride = 2 * rng.integers(0, experts // 8, (n, layers)) + 1  # odd: top-k ids stay distinct
        chosen[start:start + n] = (first[..., None] + stride[..., None] * np.arange(top_k)) % experts
    weights = np.sort(rng.dirichlet(np.ones(top_k), (tokens, layers)).astype(np.float32), axis=-1)[..., ::-1]
    ids = (rng.zipf(1.3, tokens) % 200_000).astype(np.int32)
    runs = np.repeat(rng.integers(0, 5, tokens // 200 + 1), 200)[:tokens]
    names = ["system", "user", "analysis", "tool", "final"]
    return Routing.from_arrays(ids, chosen, weights, runs.astype(np.uint8), names, num_experts=experts)


def measure(name: str, fn: Callable[[], Any]) -> Any:
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] - base
    print(f"{name:<34} {seconds:8.2f} s   peak +{peak / 1e6:8.1f} MB")
    return result


def main() -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--layers", type=int, default=36)
    parser.add_argument("--experts", type=int, default=128)
    parser.add_argument("--top-k", type=int, default=4)
    args = parser.parse_args()
    start = time.perf_counter()
    r = synthetic(args.tokens, args.layers, args.experts, args.top_k)
    size = r.tokens.nbytes + r.experts.nbytes + r.weights.nbytes
    print(f"record: {len(r):,} tokens x {r.layers} layers x top-{r.top_k} of {r.num_experts} experts, "
          f"{size / 1e6:.0f} MB in memory, built in {time.perf_counter() - start:.1f} s")
    other = Routing.from_arrays(r.tokens, np.where(np.arange(len(r))[:, None, None] % 10 == 0,
                                                   (r.experts + 1) % r.num_experts, r.experts).astype(np.int16),
                                r.weights, r._codes, r.label_names, num_experts=r.num_experts)
    tracemalloc.start()
    measure("load (per-layer expert load)", lambda: analysis.load(r))
    measure("entropy", lambda: analysis.entropy(r))
    measure("coactivation (all layers)", lambda: analysis.coactivation(r))
    measure("top_tokens (10 per expert, all)", lambda: analysis.top_tokens(r, 10))
    measure("token_concentration", lambda: analysis.token_concentration(r, 20))
    measure("label_load (channels)", lambda: analysis.label_load(r))
    measure("label_divergence (channels)", lambda: analysis.label_divergence(r))
    measure("transitions (top-1, all layers)", lambda: analysis.transitions(r))
    measure("transitions (all k x k pairs, 1 layer)", lambda: analysis.transitions(r, 0, top1=False))
    measure("hot_and_cold", lambda: analysis.hot_and_cold(r))
    measure("agreement (two records)", lambda: analysis.agreement(r, other))
    measure("route_changes (two records)", lambda: analysis.route_changes(r, other))
    measure("expert_card", lambda: analysis.expert_card(r, 10, 3))
    with tempfile.TemporaryDirectory() as tmp:
        measure("save (columns)", lambda: r.save(Path(tmp) / "record"))
        disk = sum(f.stat().st_size for f in (Path(tmp) / "record").iterdir())
        back = measure("load (memory-mapped)", lambda: load(Path(tmp) / "record"))
        measure("label_load on the memory-mapped record", lambda: analysis.label_load(back))
        print(f"on disk: {disk / 1e6:.0f} MB")
    tracemalloc.stop()


if __name__ == "__main__":
    main()
