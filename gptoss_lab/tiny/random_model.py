"""Randomly initialised GptOss checkpoints: the untrained baseline for routing studies, tests and benchmarks."""
from __future__ import annotations

from pathlib import Path


def make_random_checkpoint(path: Path, *, seed: int = 0, layers: int = 4, experts: int = 8, top_k: int = 2,
                           hidden: int = 64, sliding_window: int = 8) -> Path:
    """Save a randomly initialised GptOssForCausalLM (real vocab size) with `from_pretrained`'s layout."""
    import torch
    from transformers import GptOssConfig, GptOssForCausalLM

    torch.manual_seed(seed)
    config = GptOssConfig(
        vocab_size=201088, hidden_size=hidden, intermediate_size=hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_local_experts=experts,
        num_experts_per_tok=top_k, sliding_window=sliding_window, max_position_embeddings=4096,
        tie_word_embeddings=True, layer_types=["sliding_attention", "full_attention"] * (layers // 2),
    )
    model = GptOssForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(path)
    return path
