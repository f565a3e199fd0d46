"""Randomly initialised GptOss checkpoints: the untrained baseline for routing studies, tests and benchmarks.

`python -m gptoss_lab.tiny.random_model OUT` writes one into the new folder OUT.

Its default shape is smaller than the bundled gpt-oss-tiny's (gptoss_lab/tiny/checkpoint/config.json),
to be quick to make and run: the same 4 layers (sliding/full attention pairs), 8 experts, top-2,
4 query and 2 key-value heads, 201088-token vocabulary and tied embeddings, but hidden size 64
(gpt-oss-tiny: 128), expert size 64 (gpt-oss-tiny: 256), head dimension 16 (gpt-oss-tiny: 32),
sliding window 8 (gpt-oss-tiny: 128), positions 4096 (gpt-oss-tiny: 12288) and YaRN RoPE
(gpt-oss-tiny: plain RoPE). So gpt-oss-tiny's weights do not fit it, and --layers, --experts and
--top-k change its depth and routing, not its widths.
"""
from __future__ import annotations

from . import Parser, command, importing

with importing(__name__):   # Ctrl-C while the command starts: one line, as in its work (torch takes seconds)
    import argparse
    from pathlib import Path
    from typing import Any

    from . import SEED, new_folder, number, path


MAX_BYTES = 1_000_000_000   # past this a checkpoint needs --large: the default is 27 MB, and a mistyped --experts
                            # (100000) wrote 10 GB in 13 s without a word


def make_random_checkpoint(path: Path, *, seed: int = 0, layers: int = 4, experts: int = 8, top_k: int = 2,
                           hidden: int = 64, sliding_window: int = 8) -> Path:
    """Save a randomly initialised GptOssForCausalLM (real vocab size) with `from_pretrained`'s layout."""
    import torch
    from transformers import GptOssForCausalLM

    from ..widgets import transformers_bars

    torch.manual_seed(seed)
    model = GptOssForCausalLM(_config(layers, experts, top_k, hidden, sliding_window)).to(torch.bfloat16)
    with transformers_bars(False):  # "Writing model shards 0/1 ... 1/1" for one file says nothing, as in train
        model.save_pretrained(path)
    return path


def _config(layers: int, experts: int, top_k: int, hidden: int = 64, sliding_window: int = 8) -> Any:
    """The GptOssConfig of a random checkpoint of this shape (see the module docstring)."""
    from transformers import GptOssConfig

    return GptOssConfig(
        vocab_size=201088, hidden_size=hidden, intermediate_size=hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_local_experts=experts,
        num_experts_per_tok=top_k, sliding_window=sliding_window, max_position_embeddings=4096,
        tie_word_embeddings=True, layer_types=["sliding_attention", "full_attention"] * (layers // 2),
    )


def _weight_bytes(layers: int, experts: int, top_k: int) -> int:
    """The bytes of bfloat16 weights `make_random_checkpoint` writes for this shape, counted on torch's meta device
    (shapes only: nothing is allocated)."""
    import torch
    from transformers import GptOssForCausalLM

    with torch.device("meta"):
        model = GptOssForCausalLM(_config(layers, experts, top_k))
    return 2 * sum(p.numel() for p in model.parameters())   # tied embeddings counted once, as they are saved


def main(argv: list[str] | None = None) -> None:
    """Command line: write a random checkpoint into OUT and print its path."""
    p = Parser(
        prog="python -m gptoss_lab.tiny.random_model", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: python -m gptoss_lab.tiny.random_model /tmp/random-gptoss --layers 2,\nthen "
               "%gptoss load /tmp/random-gptoss (a model that routes but has learned nothing)")
    p.add_argument("out", type=path, help="a new (or empty) folder to write; nothing is overwritten")
    p.add_argument("--seed", type=SEED, default=0, help="seed of the weights (default: %(default)s)")
    p.add_argument("--layers", type=number(int, 2), default=4,
                   help="layers, an even number (sliding/full pairs) (default: %(default)s)")
    p.add_argument("--experts", type=number(int, 1), default=8, help="experts per layer (default: %(default)s)")
    p.add_argument("--top-k", type=number(int, 1), default=2, help="experts per token (default: %(default)s)")
    p.add_argument("--large", action="store_true",
                   help=f"write a checkpoint past {MAX_BYTES // 1_000_000_000} GB (refused without it)")
    args = p.parse_args(argv)
    if args.layers % 2:
        p.error(f"--layers must be an even number (sliding/full pairs), not {args.layers}")
    if args.top_k > args.experts:
        p.error(f"--top-k must be at most --experts ({args.experts}), not {args.top_k}")
    weights = _weight_bytes(args.layers, args.experts, args.top_k)
    if weights > MAX_BYTES and not args.large:
        from ..engines.checkpoint import size

        p.error(f"--layers {args.layers} --experts {args.experts} make a {size(weights)} checkpoint (the default is "
                f"{size(_weight_bytes(4, 8, 2))}); past {size(MAX_BYTES)} it is written only with --large")
    try:
        with new_folder(args.out) as partial:
            make_random_checkpoint(partial, seed=args.seed, layers=args.layers, experts=args.experts, top_k=args.top_k)
    except (OSError, ValueError) as error:
        p.error(str(error))
    except KeyboardInterrupt:
        p.exit(130, f"interrupted: nothing written to {args.out}\n")
    print(args.out)


if __name__ == "__main__":
    command(main)
