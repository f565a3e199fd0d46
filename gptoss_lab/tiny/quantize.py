"""MXFP4, gpt-oss's 4-bit expert weights: `python -m gptoss_lab.tiny.quantize` writes a GptOss checkpoint that way.

Each row of an expert projection is cut into blocks of 32 values that share one power-of-two scale,
stored as an E8M0 byte (the exponent plus 127); each value divided by its scale is rounded to the
nearest E2M1 number (sign and ±0, 0.5, 1, 1.5, 2, 3, 4, 6), a 4-bit code, two codes a byte with the
even element in the low nibble. The scale is the smallest power of two that brings the block's
largest magnitude to at most 6, so nothing is clipped (as the gpt-oss Triton kernels quantize).

The result has openai/gpt-oss-20b's on-disk layout: `…experts.gate_up_proj_blocks` uint8
[experts, 2·intermediate, hidden/32, 16] and `…_scales` uint8 [experts, 2·intermediate, hidden/32]
(rows are output features), the same for `down_proj`, everything else bf16 under its usual name,
and the public `quantization_config`. transformers reads it back with its own dequantizer
(`transformers.integrations.mxfp4.convert_moe_packed_tensors`), which the tests compare with.
"""
from __future__ import annotations

from . import Parser, command, importing, path

with importing(__name__):   # Ctrl-C while the command starts: one line, as in its work (torch takes seconds)
    import json
    import shlex
    import shutil
    from collections.abc import Sequence
    from dataclasses import dataclass
    from pathlib import Path
    from typing import Any

    from ..engines.checkpoint import (CHECKPOINT_FILES, LoadError, checked_folder, own_file, own_weight_files,
                                      read_json, resolve, stored_format)
    from . import CHECKPOINT, checkpoint_folder, new_folder

E2M1 = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)  # the magnitudes of codes 0..7; code | 8 is the negative
BLOCK = 32  # values sharing one scale
SCALE_BIAS = 127  # E8M0: the stored byte is the power-of-two exponent plus this
EXPERT_WEIGHTS = ("mlp.experts.gate_up_proj", "mlp.experts.down_proj")
# The public gpt-oss configs keep these modules in bf16 (https://huggingface.co/openai/gpt-oss-20b config.json).
QUANTIZATION_CONFIG = {
    "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"],
    "quant_method": "mxfp4",
}
# Ties between two E2M1 magnitudes go to the even code (round half to even): down at these midpoints ...
_TIES_DOWN = (0.25, 1.25, 2.5, 5.0)
_TIES_UP = (0.75, 1.75, 3.5)  # ... and up at these.


def quantize(weight: Any) -> tuple[Any, Any]:
    """MXFP4 of `weight` [..., rows, cols] along its last axis: (blocks uint8 [..., rows, cols/32, 16], scales uint8 [..., rows, cols/32])."""
    import torch

    *lead, cols = weight.shape
    if cols % BLOCK:
        raise ValueError(f"MXFP4 needs rows of a multiple of {BLOCK} values; these have {cols}")
    w = weight.detach().float().reshape(*lead, cols // BLOCK, BLOCK)
    if not torch.isfinite(w).all():  # a NaN turned its block into zeros, an inf into NaNs (scale byte 255)
        raise ValueError("MXFP4 holds finite values only, and these weights hold inf or NaN")
    amax = w.abs().amax(dim=-1, keepdim=True)
    # smallest e with amax / 2**e <= 6; an all-zero block takes the smallest scale
    exponent = torch.ceil(torch.log2(amax / E2M1[-1])).clamp(-SCALE_BIAS, 255 - SCALE_BIAS)
    exponent = torch.where(amax > 0, exponent, torch.full_like(exponent, -SCALE_BIAS))
    magnitude = w.abs() / torch.exp2(exponent)
    code = sum((magnitude > t).to(torch.uint8) for t in _TIES_DOWN) + sum((magnitude >= t).to(torch.uint8) for t in _TIES_UP)
    code = code | (torch.signbit(w).to(torch.uint8) << 3)
    blocks = code[..., 0::2] | (code[..., 1::2] << 4)  # even element in the low nibble
    scales = (exponent.squeeze(-1) + SCALE_BIAS).to(torch.uint8)
    return blocks.contiguous(), scales.contiguous()


def dequantize(blocks: Any, scales: Any, dtype: Any = None) -> Any:
    """The values [..., rows, cols] that MXFP4 `blocks` and `scales` stand for (float32 unless `dtype`), by ldexp as
    openai/gpt-oss and transformers compute them: scale byte 255 (the MX format's NaN) is 2**128 there, and 0 stays 0."""
    import torch

    table = torch.tensor(E2M1 + tuple(-v for v in E2M1), dtype=torch.float32)
    codes = torch.stack([blocks & 0x0F, blocks >> 4], dim=-1).flatten(-2).long()  # low nibble first
    values = torch.ldexp(table[codes], (scales.int() - SCALE_BIAS).unsqueeze(-1))
    return values.flatten(-2).to(dtype or torch.float32)


@dataclass(frozen=True)
class LayerError:
    """How far one expert projection moved when quantized: relative RMS error and largest absolute change."""

    name: str
    relative_rms: float
    max_abs: float


def quantize_state_dict(tensors: dict[str, Any]) -> tuple[dict[str, Any], list[LayerError]]:
    """A GptOss state dict with its expert projections as MXFP4 `_blocks`/`_scales` (everything else bf16), and the error of each."""
    import torch

    out: dict[str, Any] = {}
    errors: list[LayerError] = []
    for name, tensor in tensors.items():
        if not name.endswith(EXPERT_WEIGHTS):
            out[name] = tensor.to(torch.bfloat16) if tensor.is_floating_point() else tensor
            continue
        weight = tensor.float().transpose(-1, -2)  # transformers holds [experts, in, out]; the checkpoint [experts, out, in]
        try:
            blocks, scales = quantize(weight)
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None
        out[f"{name}_blocks"], out[f"{name}_scales"] = blocks, scales
        change = dequantize(blocks, scales) - weight
        rms = float(change.pow(2).mean().sqrt() / weight.pow(2).mean().sqrt().clamp_min(1e-30))
        errors.append(LayerError(name, rms, float(change.abs().max())))
    return out, errors


def quantize_checkpoint(source: str | Path = CHECKPOINT, out: str | Path = "gpt-oss-tiny-mxfp4") -> list[LayerError]:
    """Write `source` (a bf16 GptOss checkpoint folder, gpt-oss-tiny by default) to `out` with MXFP4 experts.

    Every safetensors shard keeps its name (and the index its map); the other files are copied, and
    config.json gains the public `quantization_config`. Returns the quantization error per projection.
    """
    source, out = Path(source), Path(out)
    try:  # refused unread when it is no regular file (a FIFO hung the command) or too large
        resolve(source)   # a folder that is not there, a file, no config.json: said as `%gptoss load` says it
        config = read_json(source / "config.json", str(source))
        stored = stored_format(str(source), str(source))
    except LoadError as error:
        raise ValueError(str(error)) from None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type != "gpt_oss":
        raise ValueError(f"{source} is not a gpt-oss checkpoint (model_type {model_type!r})")
    quantized = config.get("quantization_config")
    how = quantized.get("quant_method") if isinstance(quantized, dict) else quantized
    if quantized and how != "mxfp4":   # bitsandbytes, fp8 ...: weights of another kind
        raise ValueError(f"{source} is already quantized ({str(how)[:80]})")
    if stored is not None and stored.mxfp4:  # the headers decide: config.json's claim of MXFP4 over bf16 was refused
        raise ValueError(f"{source} is already quantized ({'mxfp4' if not stored.mixed else stored.experts_as()})")
    try:  # the checks a load makes (a damaged shard was a SafetensorError traceback), then the shards it reads
        checked_folder(source)
        shards = own_weight_files(source, str(source))
    except LoadError as error:
        raise ValueError(str(error)) from None
    if out.resolve().is_relative_to(source.resolve()):  # the source itself, or inside it: it was written there
        raise ValueError("write the MXFP4 checkpoint to another folder than its source, and not inside it")
    with new_folder(out) as partial:
        return _write(source, shards, config, partial)


def _write(source: Path, shards: list[Path], config: dict[str, Any], out: Path) -> list[LayerError]:
    """quantize_checkpoint's writing, into the (new, empty) folder `out`."""
    from safetensors.torch import load_file, save_file

    errors: list[LayerError] = []
    renamed: dict[str, str] = {}
    total = 0  # bytes of the tensors written: the index's total_size
    for shard in shards:
        tensors, shard_errors = quantize_state_dict(load_file(shard))
        errors += shard_errors
        renamed.update({name: shard.name for name in tensors})
        total += sum(tensor.numel() * tensor.element_size() for tensor in tensors.values())
        save_file(tensors, out / shard.name, metadata={"format": "pt"})
    for file in source.iterdir():  # the checkpoint's own data files (not what a link out of the folder points to)
        if CHECKPOINT_FILES.fullmatch(file.name) and own_file(source, file) and file.suffix != ".safetensors" \
                and file.name != "config.json":
            shutil.copy2(file, out / file.name)
    index = out / "model.safetensors.index.json"
    if index.exists():
        data = json.loads(index.read_text())
        data["weight_map"] = dict(sorted(renamed.items()))
        kept = data["metadata"] if isinstance(data.get("metadata"), dict) else {}
        data["metadata"] = {**kept, "total_size": total}  # the source's (if any) was its size before quantizing
        index.write_text(json.dumps(data, indent=2) + "\n")
    config["quantization_config"] = QUANTIZATION_CONFIG
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (out / "README.md").write_text(
        f"# {source.resolve().name} in MXFP4\n\n`python -m gptoss_lab.tiny.quantize` wrote this from `{source}`: expert "
        "projections as MXFP4 `*_blocks` / `*_scales` (openai/gpt-oss-20b's layout), everything else bf16.\n")
    return errors


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: quantize gpt-oss-tiny (or SOURCE) into OUT and print the error per projection."""
    parser = Parser(
        prog="python -m gptoss_lab.tiny.quantize",
        description="Write a bf16 GptOss checkpoint (gpt-oss-tiny by default) with its expert weights in MXFP4, "
                    "openai/gpt-oss-20b's layout, and print how far each expert projection moved.",
        epilog="example: python -m gptoss_lab.tiny.quantize --out gpt-oss-tiny-mxfp4, then %gptoss load gpt-oss-tiny-mxfp4")
    parser.add_argument("--source", type=checkpoint_folder, default=CHECKPOINT,
                        help="a bf16 GptOss checkpoint folder, or tiny (the default: gpt-oss-tiny)")
    parser.add_argument("--out", type=path, default="gpt-oss-tiny-mxfp4",
                        help="a new (or empty) folder to write; nothing is overwritten (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        errors = quantize_checkpoint(args.source, args.out)
    except ValueError as error:   # the source or --out given: a usage error, as evaluate says a missing checkpoint
        parser.error(str(error))
    except OSError as error:
        parser.fail(error)
    except KeyboardInterrupt:   # (new_folder removed what was written)
        parser.exit(130, f"interrupted: nothing written to {args.out}\n")
    for e in errors:
        print(f"{e.name:<45} relative RMS error {e.relative_rms:6.2%}   max |change| {e.max_abs:.4f}")
    # quoted as the magic reads its words: a folder with a space, unquoted, was three words it refused
    print(f"Wrote {args.out} (load it with `%gptoss load {shlex.quote(str(args.out))}`).")


if __name__ == "__main__":
    command(main)
