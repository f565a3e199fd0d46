"""GPU check for a lent H100/H200 with no network: gpt-oss-20b's exact architecture, random weights, through the lab.

    python benchmarks/gpu.py [--layers 24] [--experts 32] [--tokens 128] [--device cuda] [--keep DIR]

Writes a random checkpoint with openai/gpt-oss-20b's public config in its MXFP4 on-disk layout
(`*_blocks` / `*_scales` experts, bf16 elsewhere, ~13.8 GB at full size), then loads it through the
lab twice: as it comes (MXFP4 kernels when transformers can use them here, else dequantized with the
lab's one-line note) and with `dequantize=True` (bf16 experts). For each it measures decode tokens/s
of `Session.ask` and of `model.generate` on the same prompt, whether routing is captured, and the
memory bandwidth that decode speed implies (bytes read per token × tokens/s) against the GPU's peak.
Prints one table; about 3-5 minutes on an H100. `--layers 2 --experts 4 --device cpu` proves the
script end to end on a CPU in a couple of minutes.
"""
from __future__ import annotations

import gc
import json
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from gptoss_lab import Session, harmony
from gptoss_lab.arguments import Parser
from gptoss_lab.engines import checkpoint
from gptoss_lab.engines.checkpoint import CONFIGS, MXFP4_BYTES, KVCache, count_parameters, size
from gptoss_lab.tiny.quantize import BLOCK, EXPERT_WEIGHTS, QUANTIZATION_CONFIG, SCALE_BIAS

PROMPT = "Explain how a mixture-of-experts model routes each token, step by step."
SHARD_BYTES = 4 * 10**9
# Peak memory bandwidth (GB/s) from NVIDIA's data sheets, for GPUs whose properties don't give it.
PEAK_GBPS = {"H200": 4800, "H100 NVL": 3900, "H100 PCIe": 2000, "H100": 3350, "A100-SXM4-80GB": 2039,
             "A100 80GB PCIe": 1935, "A100": 1555, "L40S": 864, "L4": 300, "A10": 600, "4090": 1008}


def write_random_checkpoint(folder: Path, *, layers: int, experts: int, device: str, seed: int = 0) -> Any:
    """gpt-oss-20b's public config (cut to `layers` and `experts`) with random weights, saved in its MXFP4 layout."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, GptOssConfig

    raw = json.loads((CONFIGS / "gpt-oss-20b" / "config.json").read_text())
    raw.update(num_hidden_layers=layers, num_local_experts=experts, layer_types=raw["layer_types"][:layers])
    raw["quantization_config"] = QUANTIZATION_CONFIG
    config = GptOssConfig.from_dict({k: v for k, v in raw.items() if k != "quantization_config"})
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    generator = torch.Generator(device).manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    shard: dict[str, Any] = {}
    weight_map: dict[str, str] = {}
    total = 0

    def flush() -> None:
        name = f"model-{len(set(weight_map.values())):05d}.safetensors"
        save_file(shard, folder / name, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, name))
        shard.clear()

    for name, param in skeleton.named_parameters():
        if name.endswith(EXPERT_WEIGHTS):  # [experts, in, out] in transformers; [experts, out, in/32, 16] on disk
            e, inputs, outputs = param.shape
            # uniform nibbles (RMS 2.9) times 2**-7: weights of about 0.02, like the embeddings below
            tensors = {f"{name}_blocks": torch.randint(0, 256, (e, outputs, inputs // BLOCK, BLOCK // 2), device=device,
                                                       dtype=torch.uint8, generator=generator),
                       f"{name}_scales": torch.randint(SCALE_BIAS - 8, SCALE_BIAS - 6, (e, outputs, inputs // BLOCK),
                                                       device=device, dtype=torch.uint8, generator=generator)}
        elif "norm" in name:
            tensors = {name: torch.ones(param.shape, dtype=torch.bfloat16)}
        elif name.endswith(("bias", "sinks")):
            tensors = {name: torch.zeros(param.shape, dtype=torch.bfloat16)}
        else:
            tensors = {name: (0.02 * torch.randn(param.shape, device=device, generator=generator)).to(torch.bfloat16)}
        for key, tensor in tensors.items():
            shard[key] = tensor.cpu()
            total += tensor.numel() * tensor.element_size()
        if sum(t.numel() * t.element_size() for t in shard.values()) > SHARD_BYTES:
            flush()
    if shard:
        flush()
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    (folder / "config.json").write_text(json.dumps(raw, indent=2, sort_keys=True))
    return config


def decode_rates(session: Session, tokens: int) -> tuple[float, float, int]:
    """(Session.ask tokens/s, model.generate tokens/s, tokens Session made) on the same prompt, prefill excluded."""
    import torch

    engine = session.engine
    engine.reset()
    reply = session.ask(PROMPT, max_new_tokens=tokens + 1, temperature=0)
    usage = reply.usage
    ask_rate = (usage.completion_tokens - 1) / (usage.seconds - usage.ttft)
    model = engine.model
    ids = torch.tensor([prompt_ids(session)], device=model.device)

    def generate(n: int) -> float:
        _sync()
        start = time.perf_counter()
        model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n, do_sample=False,
                       pad_token_id=0)
        _sync()
        return time.perf_counter() - start

    generate(2)  # warm-up
    first, full = generate(1), generate(tokens + 1)
    return ask_rate, tokens / (full - first), usage.completion_tokens


def prompt_ids(session: Session) -> list[int]:
    """The ids `Session.ask(PROMPT)` gives the engine on a fresh conversation."""
    return harmony.render(session.prefix() + [harmony.user_message(PROMPT)])


def routing_check(session: Session) -> str:
    """Whether a turn on this load records routing, in a few words."""
    session.engine.reset()
    reply = session.ask("Which experts do you use?", routing=True, max_new_tokens=8, temperature=0)
    if reply.routing is not None and len(reply.routing):
        return f"captured: {len(reply.routing)} tokens × {reply.routing.experts.shape[1]} layers"
    why = next((e for e in reply.errors if "cannot be recorded" in e), None)
    if why:
        return "refused before the turn: " + why.split("on this model: ", 1)[-1]
    return "not captured: " + ("; ".join(reply.errors) or "nothing recorded")


def bytes_per_token(config: Any, packed: bool, context: int) -> int:
    """Bytes a decode step reads: the active weights (top-k experts, MXFP4 when packed) and the KV cache."""
    p = count_parameters(config)
    active_experts = p.experts * config.num_experts_per_tok // config.num_local_experts
    experts = active_experts * (MXFP4_BYTES if packed else 2)
    return int(experts + (p.active - active_experts) * 2 + KVCache.of(config).bytes(context, keep_past=True))


def peak_bandwidth(device: str) -> float | None:
    """The GPU's peak memory bandwidth in bytes/s: from its properties, else NVIDIA's data sheet, else None."""
    import torch

    if not device.startswith("cuda"):
        return None
    props = torch.cuda.get_device_properties(device)
    clock, bus = getattr(props, "memory_clock_rate", 0), getattr(props, "memory_bus_width", 0)
    if clock and bus:
        return 2 * clock * 1e3 * bus / 8  # double data rate, kHz, bits
    return next((gbps * 1e9 for key, gbps in PEAK_GBPS.items() if key in props.name), None)


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _memory(device: str) -> str:
    import torch

    return size(torch.cuda.memory_allocated(device)) if device.startswith("cuda") else "—"


def main() -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=24, help="layers of gpt-oss-20b to keep (default: all 24)")
    parser.add_argument("--experts", type=int, default=32, help="experts per layer (default: 32, as released)")
    parser.add_argument("--tokens", type=int, default=128, help="new tokens per decode measurement")
    parser.add_argument("--device", default=None, help="cuda (default when there is a GPU) or cpu")
    parser.add_argument("--keep", help="write the checkpoint under this folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        device = f"cuda:{torch.cuda.current_device()}" if device == "cuda" else device
    started = time.perf_counter()
    print(f"{torch.cuda.get_device_name(device) if device.startswith('cuda') else 'CPU'} · torch {torch.__version__}")
    with nullcontext(args.keep) if args.keep else tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "gpt-oss-20b-random"
        t0 = time.perf_counter()
        config = write_random_checkpoint(folder, layers=args.layers, experts=args.experts, device=device)
        print(f"wrote {folder} ({args.layers} layers × {args.experts} experts, MXFP4 layout) in {time.perf_counter() - t0:.0f} s")
        print(checkpoint.mxfp4_kernels(device) and f"MXFP4 kernels here: not usable ({checkpoint.mxfp4_kernels(device)})"
              or "MXFP4 kernels here: usable")
        peak = peak_bandwidth(device)
        rows = []
        for label, dequantize in (("as loaded", False), ("bf16 (dequantize=True)", True)):
            t0 = time.perf_counter()
            session = Session.load(str(folder), device=device, dequantize=dequantize, progress=True,
                                   session_options={"tools": "", "approval": "never"})
            load_s = time.perf_counter() - t0
            packed = type(session.engine.model.model.layers[0].mlp).__name__ == "Mxfp4GptOssMLP"
            ask, generate, made = decode_rates(session, args.tokens)
            moved = bytes_per_token(config, packed, context=len(prompt_ids(session)) + args.tokens // 2)
            achieved = moved * ask
            rows.append([f"{label}: {'MXFP4 kernels' if packed else 'bf16 experts'}", _memory(device), f"{load_s:.0f} s",
                         f"{ask:.1f}", f"{generate:.1f}", f"{ask / generate:.2f}", f"{made}",
                         f"{achieved / 1e9:.0f} GB/s" + (f" ({achieved / peak:.0%} of {peak / 1e9:.0f})" if peak else ""),
                         routing_check(session)])
            del session
            gc.collect()
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
    header = ["load", "weights on device", "load", "Session.ask tok/s", "generate tok/s", "ratio", "tokens",
              "bandwidth (ask)", "routing"]
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    print()
    for row in [header, ["-" * w for w in widths], *rows]:
        print(" | ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    print(f"\n{args.tokens} new tokens, greedy, batch 1; finished in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
