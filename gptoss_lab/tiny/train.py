"""Train gpt-oss-tiny on CPU: `python -m gptoss_lab.tiny.train [--out DIR] [--quick]`.

The model is the real `GptOssForCausalLM`. The 201088-way softmax is made cheap, exactly: the
model trains on the rows of the vocabulary the data uses; every other id keeps a zero embedding
row, so (tied embeddings) its logit is exactly 0 and all of them together are one extra logit of
log(N_unused). At the end the trained rows are scattered back into the full embedding and the
checkpoint is saved with `save_pretrained`, loadable by `AutoModelForCausalLM.from_pretrained`.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm
from transformers import GptOssConfig, GptOssForCausalLM

from .. import harmony
from . import data

RUNS = Path("/tmp/tiny_runs")


def model_config(vocab_size: int = harmony.VOCAB_SIZE) -> GptOssConfig:
    """gpt-oss in miniature: 4 layers alternating sliding/full attention, 8 experts top-2, hidden 128."""
    return GptOssConfig(
        vocab_size=vocab_size, hidden_size=128, intermediate_size=256, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, num_local_experts=8, num_experts_per_tok=2,
        sliding_window=128, max_position_embeddings=4096, tie_word_embeddings=True,
        layer_types=["sliding_attention", "full_attention"] * 2, router_aux_loss_coef=0.0,
        eos_token_id=harmony.RETURN if vocab_size == harmony.VOCAB_SIZE else None, pad_token_id=None, bos_token_id=None,
        attn_implementation="eager",
    )


def vocabulary(sequences: list[list[int]]) -> list[int]:
    """Ids the model trains: those in the data, every 1-3 digit number token, the Harmony specials."""
    used = {t for seq in sequences for t in seq}
    for n in range(1000):
        for text in {str(n), f"{n:03d}", f"{n:02d}"}:
            ids = harmony.encode(text)
            if len(ids) == 1:
                used.add(ids[0])
    used.update(range(200000, 200019))
    return sorted(used)


def subset_loss(hidden: torch.Tensor, rows: torch.Tensor, targets: torch.Tensor, n_unused: int) -> torch.Tensor:
    """Cross-entropy over the full vocabulary, computed on the used rows plus one logit for the rest.

    Exact when the unused ids' (tied) embedding rows are zero: each unused logit is 0, so their
    log-sum-exp is log(n_unused). `targets` index `rows`.
    """
    logits = hidden @ rows.T
    rest = torch.full_like(logits[..., :1], math.log(n_unused)) if n_unused else logits[..., :0]
    return F.cross_entropy(torch.cat([logits, rest], dim=-1).float(), targets)


def _lr(step: int, steps: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup))))


def save(model: GptOssForCausalLM, vocab: list[int], out: Path) -> Path:
    """Scatter the trained rows into a full-vocabulary GptOss (other rows zero) and save it in bf16."""
    full = GptOssForCausalLM(model_config())
    state = {k: v for k, v in model.state_dict().items() if "embed_tokens" not in k and "lm_head" not in k}
    embed = torch.zeros(harmony.VOCAB_SIZE, model.config.hidden_size)
    embed[torch.tensor(vocab)] = model.get_input_embeddings().weight.detach().float()
    state["model.embed_tokens.weight"] = embed
    missing, unexpected = full.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    full.tie_weights()
    full.generation_config.do_sample = False
    full.generation_config.eos_token_id = sorted(harmony.STOP_TOKENS)
    full.generation_config.pad_token_id = harmony.RETURN
    full.config.architectures = ["GptOssForCausalLM"]
    out.mkdir(parents=True, exist_ok=True)
    full.to(torch.bfloat16).save_pretrained(out)
    return out


def _system_length(example: data.Example) -> int:
    return len(harmony.encoding().render(example.messages[0]))


def _batches(rendered: list[tuple[list[int], list[bool], int, str]], batch: int, rng: random.Random) -> list[list[int]]:
    """Batches of one reasoning effort and similar length (one shared system prompt, little padding)."""
    chunks = []
    for effort in harmony.EFFORTS:
        idx = [i for i, r in enumerate(rendered) if r[3] == effort]
        idx.sort(key=lambda i: (len(rendered[i][0]) - rendered[i][2], rng.random()))
        chunks += [idx[i:i + batch] for i in range(0, len(idx), batch)]
    rng.shuffle(chunks)
    return chunks


def hidden_states(model: GptOssForCausalLM, prefix: torch.Tensor, suffixes: torch.Tensor) -> torch.Tensor:
    """Last hidden states of `prefix + suffix` for each suffix row; the shared prefix (the system
    message, 2/3 of every example) is computed once and its key/value cache reused by the batch."""
    cache = model.model(input_ids=prefix[None], use_cache=True).past_key_values
    cache.batch_repeat_interleave(len(suffixes))
    positions = torch.arange(len(prefix), len(prefix) + suffixes.shape[1])[None].expand(len(suffixes), -1)
    return model.model(input_ids=suffixes, cache=cache, position_ids=positions, use_cache=True).last_hidden_state


def _initial_model(vocab: list[int], full: GptOssForCausalLM | None) -> GptOssForCausalLM:
    """A fresh subset-vocabulary model, or one gathered from a saved checkpoint (a second phase)."""
    model = GptOssForCausalLM(model_config(len(vocab)))
    if full is not None:
        state = {k: v for k, v in full.state_dict().items() if "embed_tokens" not in k and "lm_head" not in k}
        state["model.embed_tokens.weight"] = full.get_input_embeddings().weight.detach()[torch.tensor(vocab)]
        model.load_state_dict(state, strict=False)
        model.tie_weights()
    return model


def train(out: Path, *, steps: int, batch: int, examples: int, lr: float, seed: int, resume: Path | None = None,
          log_every: int = 10) -> dict:
    """Train (from scratch, or on from `resume`) and save to `out`; returns a summary with the final loss."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    start = time.time()
    rendered = [(*data.tokens(e), _system_length(e), e.effort)
                for e in tqdm(data.dataset(examples, seed), desc="rendering data", leave=False)]
    vocab = vocabulary([r[0] for r in rendered])  # (a resumed run keeps only the rows its own data uses)
    resumed = GptOssForCausalLM.from_pretrained(resume, dtype=torch.float32) if resume else None
    index = torch.full((harmony.VOCAB_SIZE,), -1, dtype=torch.long)
    index[torch.tensor(vocab)] = torch.arange(len(vocab))
    n_unused = harmony.VOCAB_SIZE - len(vocab)

    model = _initial_model(vocab, resumed)
    model.train()
    optim = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.01)
    out.mkdir(parents=True, exist_ok=True)
    log = (out / "loss.jsonl").open("w")
    order: list[list[int]] = []
    recent: list[float] = []
    bar = tqdm(range(steps), desc="training")
    for step in bar:
        if not order:
            order = _batches(rendered, batch, rng)
        chunk = [rendered[i] for i in order.pop()]
        prefix = index[torch.tensor(chunk[0][0][:chunk[0][2]])]
        suffixes = [(ids[n:], covered[n:]) for ids, covered, n, _ in chunk]
        width = max(len(s) for s, _ in suffixes)
        local = index[torch.tensor([s + [harmony.RETURN] * (width - len(s)) for s, _ in suffixes])]
        covered = torch.tensor([c[1:] + [False] * (width - len(c)) for _, c in suffixes])  # target p+1 from p
        hidden = hidden_states(model, prefix, local)[:, :-1][covered]
        loss = subset_loss(hidden, model.get_input_embeddings().weight, local[:, 1:][covered], n_unused)
        for group in optim.param_groups:
            group["lr"] = _lr(step, steps, lr, warmup=max(1, min(100, steps // 10)))
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        recent = (recent + [loss.item()])[-log_every:]
        if step % log_every == 0 or step == steps - 1:
            avg = sum(recent) / len(recent)
            bar.set_postfix(loss=f"{avg:.4f}")
            log.write(json.dumps({"step": step, "loss": round(avg, 5), "seconds": round(time.time() - start, 1)}) + "\n")
            log.flush()
    save(model, vocab, out)
    summary = {"resume": str(resume) if resume else None, "steps": steps, "batch": batch, "examples": examples, "lr": lr, "seed": seed, "vocab_rows": len(vocab),
               "final_loss": round(sum(recent) / len(recent), 5), "seconds": round(time.time() - start, 1)}
    (out / "train_summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def main(argv: list[str] | None = None) -> None:
    """Command line: full training run by default, `--quick` for a few steps (notebooks, tests)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=RUNS / "latest", help="checkpoint folder to write")
    p.add_argument("--steps", type=int, default=1600)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--examples", type=int, default=25600)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", type=Path, default=None, help="start from this checkpoint (a second phase)")
    p.add_argument("--threads", type=int, default=1, help="1 is fastest on a busy 2-core machine")
    p.add_argument("--quick", action="store_true", help="a few steps on a little data (a smoke run)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.steps, args.batch, args.examples = 30, 8, 200
    summary = train(args.out, steps=args.steps, batch=args.batch, examples=args.examples, lr=args.lr, seed=args.seed,
                    resume=args.resume)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
