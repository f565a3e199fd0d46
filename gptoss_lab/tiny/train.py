"""Train gpt-oss-tiny from scratch on CPU: `python -m gptoss_lab.tiny.train [--out DIR] [--quick]`.

The model is the real `GptOssForCausalLM`. Three things make it cheap enough for a laptop CPU:

- the 201088-way softmax is computed exactly over the vocabulary rows the data has used so far,
  plus one logit of log(N_other) for all other ids (their tied embedding rows are zero, so each
  of their logits is exactly 0); rows are given out as tokens first appear in the data;
- attention is computed with `scaled_dot_product_attention` (flash kernels): causal for the full
  layers, in 128-token blocks for the sliding-window layers; the sinks become one extra key
  (tested equal to transformers' own attention);
- conversations are made by worker processes while the model trains, in a fixed order, so a run
  is reproducible from its seed on the same kind of CPU (another instruction set, AVX2 for AVX-512,
  rounds differently, and the runs part after some tens of steps).

At the end the trained rows are scattered into the full embedding and the checkpoint is saved
with `save_pretrained` (bf16, unused rows exactly zero), loadable by `AutoModelForCausalLM`.
"""
from __future__ import annotations

from . import Parser, command, importing

with importing(__name__):   # Ctrl-C while the command starts: one line, as in its work (torch takes seconds)
    import argparse
    import json
    import math
    import multiprocessing
    import os
    import random
    import signal
    import sys
    import threading
    import time
    from collections import Counter
    from collections.abc import Iterator
    from contextlib import ExitStack, closing, redirect_stdout
    from pathlib import Path
    from typing import Any

    from . import CHECKPOINT, NEW_TOPICS, SEED, checkpoint_folder, must_be_new, new_folder, number, path

RUNS = Path("/tmp/tiny_runs")
CONTEXT = 12288               # positions the model is trained and evaluated on (conversations up to ~10k tokens)
ATTENTION = "gptoss_lab_train"
MAX_BATCH_TOKENS = 65536      # ~64 kB of memory a token (4 096: 3.4 GB, 32 768: 5.2 GB): 10**6 would be ~60 GB
ROWS = 12000                  # embedding rows training keeps (tokens the data has used), by default
_PAD = 8                      # extra head dimensions: one carries the sinks, the rest keep kernels aligned
_MUON_LR = 0.02               # Muon's learning rate by default (Keller Jordan's; torch.optim.Muon's "original")


def _topic(text: str) -> tuple[str, float]:
    """`browse=0.3` -> ("browse", 0.3), for --topics (a one-line error for anything else)."""
    skill, _, weight = text.partition("=")
    try:
        value = float(weight)
    except ValueError:
        value = -1.0
    if skill not in NEW_TOPICS or not 0 <= value < math.inf:   # inf or NaN stopped the run at its first draw
        raise argparse.ArgumentTypeError(f"{text!r}: expected SKILL=WEIGHT, SKILL one of {', '.join(NEW_TOPICS)}")
    return skill, value


def _undrawable(topics: dict[str, float]) -> str | None:
    """Why a --topics mix leaves conversations with no skill to draw (`data.new_turn` would fail on them), or None."""
    weights = {**NEW_TOPICS, **topics}
    if not sum(weights.values()) > 0:
        return "every weight is 0, so no conversation has a skill to draw"
    kinds = {"with python but no functions or documents": set(weights) - {"function", "browse"},
             "with functions but no python": {"function", "skip", "direct"},
             "with documents but no python": {"browse", "skip", "direct"}}
    for kind, skills in kinds.items():
        if not sum(weights[skill] for skill in skills) > 0:
            return (f"conversations {kind} would have no skill to draw: give one of {', '.join(sorted(skills))} "
                    "a weight above 0")
    return None


def _arguments(argv: list[str] | None = None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """The command line's parser and its arguments, checked as far as no checkpoint is read: it needs no torch, so
    `--help` and a usage error answer at once, before the seconds of importing torch and transformers."""
    p = Parser(
        prog="python -m gptoss_lab.tiny.train", description=__doc__.splitlines()[0],
        epilog="example: python -m gptoss_lab.tiny.train --quick --out /tmp/tiny_runs/smoke (a smoke run of a few "
               f"steps); the checkpoint card ({CHECKPOINT / 'README.md'}) has the shipped model's commands")
    p.add_argument("--out", type=path, default=RUNS / "latest",
                   help="a new (or empty) checkpoint folder, written when the run ends (until then .OUT.partial-* "
                   "beside it holds the run's loss.jsonl); nothing is overwritten (default: %(default)s)")
    p.add_argument("--conversations", type=number(int, 1), default=24000,
                   help="training conversations, 1-8 turns each (default: %(default)s)")
    p.add_argument("--lr", type=number(float, 1e-9, 1.0), default=3e-3,
                   help="peak learning rate (of AdamW's parameters alone with --optimizer muon; default: %(default)s)")
    p.add_argument("--optimizer", choices=("adamw", "muon"), default="adamw",
                   help="adamw for every parameter, or muon: Muon (orthogonalised momentum) for the layers' weight "
                   "matrices, experts each on their own, AdamW at --lr for the embedding, routers, norms, biases "
                   "and sinks (default: %(default)s)")
    p.add_argument("--muon-lr", type=number(float, 1e-9, 1.0), default=_MUON_LR,
                   help="peak learning rate of Muon's matrices with --optimizer muon, its own option (not derived from "
                   "--lr), on the same schedule; scaled by sqrt(max(1, fan_out/fan_in)) as torch.optim.Muon does "
                   "(default: %(default)s, Muon's published value)")
    p.add_argument("--seed", type=SEED, default=0, help="seed of the model and of the conversations (default: %(default)s)")
    p.add_argument("--resume", type=checkpoint_folder,
                   help="go on training this checkpoint, or tiny, gpt-oss-tiny (use another --seed for fresh data)")
    p.add_argument("--layers", type=number(int, 2), help="layers (even; default 4, or the resumed checkpoint's: more grows it "
                   "deeper, new layers starting as pass-throughs)")
    p.add_argument("--batch-tokens", type=number(int, 64, MAX_BATCH_TOKENS), default=2048,
                   help=f"tokens per batch, padding included, up to {MAX_BATCH_TOKENS:,} (default: %(default)s)")
    p.add_argument("--long-share", type=number(float, 0.0, 1.0), default=0.008,
                   help="share of conversations over 8,192 tokens (default: %(default)s)")
    p.add_argument("--context-weight", type=number(float, 0.0, 10.0), default=0.0,
                   help="also learn to predict the system, user and tool tokens, at this weight per token against "
                   "the model's own (default: %(default)s, only the model's own)")
    p.add_argument("--topics", nargs="+", action="extend", default=[], metavar="SKILL=WEIGHT", type=_topic,
                   help="reweight new topics for this phase (e.g. browse=0.3); the skills and their default weights: "
                   + ", ".join(f"{skill}={weight}" for skill, weight in NEW_TOPICS.items()))
    p.add_argument("--more-phrasings", action="store_true",
                   help="also ask the further training sentences that 15 question types have (skills.Pool.more: "
                   "64, written after reading which held-out sentences phase 45 missed; see evaluate --fresh)")
    p.add_argument("--wide-phrasings", action="store_true",
                   help="also ask the further training sentences of skills.Pool.wide (written from the training "
                   "sentences alone, before any evaluation of them was read)")
    cpus = os.cpu_count() or 1   # each worker is a process importing torch
    p.add_argument("--workers", type=number(int, 0, cpus), default=1,
                   help=f"processes making conversations while the model trains, at most this machine's {cpus} CPUs "
                   "(default: %(default)s)")
    p.add_argument("--threads", type=number(int, 1, cpus), default=1,   # --threads 100000: a segmentation fault
                   help=f"torch threads for the model, at most this machine's {cpus} CPUs; 1 is best on a busy "
                   "2-core machine (default: %(default)s)")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile (it takes minutes, then trains ~2x faster)")
    p.add_argument("--quick", action="store_true", help="a few steps on a little data (a smoke run, not compiled)")
    args = p.parse_args(argv)
    if args.layers is not None and args.layers % 2:
        p.error(f"--layers must be an even number of at least 2 (sliding/full pairs), not {args.layers}")
    if args.muon_lr != p.get_default("muon_lr") and args.optimizer != "muon":   # it would change nothing
        p.error("--muon-lr is the learning rate of --optimizer muon: add --optimizer muon or drop --muon-lr")
    if twice := sorted(skill for skill, n in Counter(skill for skill, _ in args.topics).items() if n > 1):
        p.error(f"--topics: {', '.join(twice)} given more than once: give each skill one weight")
    if why := _undrawable(dict(args.topics)):
        p.error(f"--topics: {why}")
    if args.quick:
        given = [f"--{name.replace('_', '-')}" for name in ("conversations", "long_share", "workers")
                 if getattr(args, name) != p.get_default(name)]
        if given:   # `--quick --conversations 200` ran 48 with no word
            p.error(f"--quick is a smoke run of 48 conversations, which sets {', '.join(given)} itself: drop one or "
                    "the other")
        args.conversations, args.long_share, args.workers, args.no_compile = 48, 0.0, 0, True
    if args.resume is not None and not (args.resume / "config.json").is_file():
        p.error(f"--resume: {args.resume} is not a checkpoint folder (it has no config.json)")
    try:   # new_folder checks it again when it makes the folder, after the imports
        must_be_new(args.out)
    except ValueError as error:
        p.error(f"--out: {error}")
    return p, args


if __name__ == "__main__":   # before torch's seconds: `--help` and usage errors answer at once
    _arguments()


with importing(__name__):
    import torch
    import torch.nn.functional as F
    from transformers import AttentionInterface, GptOssConfig, GptOssForCausalLM
    from transformers.models.gpt_oss.modeling_gpt_oss import repeat_kv

    from .. import harmony
    from ..engines.checkpoint import LoadError, checked_folder, own_weight_files
    from ..widgets import text_bar, transformers_bars
    from . import data   # below `_arguments()`: it imports the whole Session (~0.4 s), which --help has no use for


def model_config(vocab_size: int = harmony.VOCAB_SIZE, *, hidden: int = 128, layers: int = 4, experts: int = 8,
                 top_k: int = 2, intermediate: int = 256) -> GptOssConfig:
    """gpt-oss in miniature: alternating sliding (128) / full attention, 8 experts top-2, hidden 128,
    plain RoPE (theta 150000) over the CONTEXT positions it is trained on."""
    return GptOssConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, num_local_experts=experts,
        num_experts_per_tok=top_k, sliding_window=128, max_position_embeddings=CONTEXT, tie_word_embeddings=True,
        layer_types=["sliding_attention", "full_attention"] * (layers // 2),
        rope_parameters={"rope_type": "default", "rope_theta": 150000.0}, router_aux_loss_coef=0.0,
        eos_token_id=harmony.RETURN if vocab_size == harmony.VOCAB_SIZE else None, pad_token_id=None, bos_token_id=None,
        attn_implementation="eager",
        gptoss_lab_keeps_past_tool_calls=True,   # the training data keeps earlier turns' tool calls (tiny/data.py)
    )


# ---------------------------------------------------------------- attention for training

def _with_sink(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, sinks: torch.Tensor, scaling: float
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v padded by _PAD dims, and a first key whose score is the head's sink for every query
    (q carries a 1 where that key carries sink/scaling); its value is zero."""
    d = q.shape[-1]
    q = torch.cat([q, q.new_ones(*q.shape[:-1], 1), q.new_zeros(*q.shape[:-1], _PAD - 1)], -1)
    k, v = F.pad(k, (0, _PAD)), F.pad(v, (0, _PAD))
    sink = k.new_zeros(*k.shape[:-2], 1, d + _PAD)
    sink[..., d] = (sinks / scaling).view(1, -1, *([1] * (k.dim() - 3)))
    return q, torch.cat([sink, k], -2), torch.cat([torch.zeros_like(sink), v], -2)


def training_attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask: Any,
                       scaling: float, dropout: float = 0.0, sliding_window: int | None = None, **kwargs: Any
                       ) -> tuple[torch.Tensor, None]:
    """Causal attention with sinks for whole sequences (no cache, right padding): the same result as
    transformers' eager GptOss attention, with flash kernels and O(L * window) sliding layers."""
    key, value = repeat_kv(key, module.num_key_value_groups), repeat_kv(value, module.num_key_value_groups)
    b, h, length, d = query.shape
    if sliding_window is None:
        # a leading dummy query lets is_causal (top-left aligned) include the sink key for every real query
        q, k, v = _with_sink(F.pad(query, (0, 0, 1, 0)), key, value, module.sinks, scaling)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scaling)[:, :, 1:, :d]
        return out.transpose(1, 2).contiguous(), None
    w = sliding_window
    blocks = -(-length // w)
    pad = blocks * w - length
    q = F.pad(query, (0, 0, 0, pad)).view(b, h, blocks, w, d)
    k = F.pad(key, (0, 0, w, pad)).unfold(2, 2 * w, w).transpose(-1, -2)   # [b, h, blocks, 2w, d]: previous + own block
    v = F.pad(value, (0, 0, w, pad)).unfold(2, 2 * w, w).transpose(-1, -2)
    q, k, v = _with_sink(q, k, v, module.sinks, scaling)
    i, j = torch.arange(w)[:, None], torch.arange(2 * w)[None, :]
    allowed = (j > i) & (j <= i + w)                                        # key position in (query - w, query]
    mask = allowed.expand(blocks, w, 2 * w).clone()
    mask[0, :, :w] = False                                                   # the first block has no previous block
    mask = torch.cat([mask.new_ones(blocks, w, 1), mask], -1)               # the sink
    flat = (b, h * blocks, w, -1)                                             # 4-D, for the flash kernel
    mask = mask.expand(h, blocks, w, 2 * w + 1).reshape(1, h * blocks, w, 2 * w + 1)
    out = F.scaled_dot_product_attention(q.reshape(flat), k.reshape(b, h * blocks, 2 * w + 1, -1),
                                         v.reshape(b, h * blocks, 2 * w + 1, -1), attn_mask=mask, scale=scaling)
    out = out[..., :d].reshape(b, h, blocks * w, d)[:, :, :length]
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(ATTENTION, training_attention)


# ---------------------------------------------------------------- the loss

def subset_loss(hidden: torch.Tensor, rows: torch.Tensor, targets: torch.Tensor, n_unused: int,
                reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy over the full vocabulary, computed on the used rows plus one logit for the rest.

    Exact when the other ids' (tied) embedding rows are zero: each of their logits is 0, so their
    log-sum-exp is log(n_unused). `targets` index `rows`; `reduction` as for `F.cross_entropy`.
    """
    logits = hidden @ rows.T
    rest = torch.full_like(logits[..., :1], math.log(n_unused)) if n_unused else logits[..., :0]
    return F.cross_entropy(torch.cat([logits, rest], dim=-1).float(), targets, reduction=reduction)


class Vocabulary:
    """Which embedding row each used token id has; rows are given out as ids first appear."""

    def __init__(self, capacity: int) -> None:
        self.index = torch.full((harmony.VOCAB_SIZE,), -1, dtype=torch.long)
        self.ids: list[int] = []
        self.capacity = capacity
        self.add(self.always())

    @staticmethod
    def always() -> list[int]:
        """Every 1-3 digit number token and the Harmony special tokens: numbers the model may have to copy."""
        ids = set(range(200000, 200019))
        for n in range(1000):
            for text in {str(n), f"{n:03d}", f"{n:02d}"}:
                tokens = harmony.encode(text)
                if len(tokens) == 1:
                    ids.add(tokens[0])
        return sorted(ids)

    def add(self, ids: list[int]) -> list[int]:
        """Give rows to the ids not seen before; returns the new rows."""
        new = sorted({t for t in ids if self.index[t] < 0})
        if len(self.ids) + len(new) > self.capacity:
            raise RuntimeError(f"the data uses more than {self.capacity} distinct tokens; raise train's rows")
        rows = list(range(len(self.ids), len(self.ids) + len(new)))
        if new:
            self.index[torch.tensor(new)] = torch.tensor(rows)
            self.ids += new
        return rows

    def __len__(self) -> int:
        return len(self.ids)


# ---------------------------------------------------------------- data, made while training

def _make(args: tuple[int, int, int, float, int, dict[str, float], bool, bool]) -> list[tuple[list[int], list[bool]]]:
    """Worker: conversations [start, stop) of `seed` as (ids, covered); the first `short` have 1-2 turns."""
    seed, start, stop, long_share, short, topics, more, wide = args
    torch.set_num_threads(1)
    out = []
    for i in range(start, stop):
        draw = random.Random(f"{seed}-long-{i}")
        if i < short:
            c = data.conversation(f"{seed}-{i}", turns=draw.choice((1, 1, 2)), topics=topics, more=more,
                                  wide=wide)
        else:
            c = data.conversation(f"{seed}-{i}", long=draw.random() < long_share, topics=topics, more=more,
                                  wide=wide)
        out.append((c.ids, c.covered))
    return out


def conversations(n: int, seed: int, *, workers: int, long_share: float, short_share: float = 0.2, chunk: int = 64,
                  topics: dict[str, float] | None = None, more: bool = False, wide: bool = False
                  ) -> Iterator[tuple[list[int], list[bool]]]:
    """The `n` training conversations of `seed`, in order, made by `workers` processes (0: here). The
    first `short_share` of them have one or two turns: copying numbers and names is learned sooner on
    short conversations, and the skills of longer ones build on it."""
    jobs = [(seed, s, min(n, s + chunk), long_share, int(short_share * n), topics or {}, more, wide)
            for s in range(0, n, chunk)]
    if workers <= 0:
        for job in jobs:
            yield from _make(job)
        return
    with _spawn_pool(workers) as pool:
        for part in pool.imap(_make, jobs):
            yield from part


def _spawn_pool(workers: int) -> Any:
    """A spawn Pool whose workers start with Ctrl-C ignored (inherited), leaving it to this process, which stops
    them: each worker printed a traceback of its own when a run was interrupted."""
    main_thread = threading.current_thread() is threading.main_thread()   # only it may set signal handlers
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None
    try:
        return multiprocessing.get_context("spawn").Pool(workers)
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, previous)


def _batches(stream: Iterator[tuple[list[int], list[bool]]], tokens: int, pool: int, rng: random.Random
             ) -> Iterator[list[tuple[list[int], list[bool]]]]:
    """Batches of similar length (little padding), at most `tokens` tokens each (padding counted) but
    at least two conversations, from a window of `pool` conversations taken in random order."""
    window: list[tuple[list[int], list[bool]]] = []
    done = False
    while not done or window:
        while not done and len(window) < pool:
            try:
                window.append(next(stream))
            except StopIteration:
                done = True
        window.sort(key=lambda c: len(c[0]))
        groups, current = [], []
        for c in window:
            if len(current) >= 2 and len(c[0]) * (len(current) + 1) > tokens:
                groups.append(current)
                current = []
            current.append(c)
        if len(current) == 1 and groups:   # never a batch of one: torch.compile would specialise on it
            previous = groups[-1]
            current.insert(0, previous.pop()) if len(previous) > 2 else previous.append(current.pop())
        if current:
            groups.append(current)
        take = groups if done else rng.sample(groups, max(1, len(groups) // 2))
        rng.shuffle(take)
        for group in take:
            for c in group:
                window.remove(c)
            yield group


# ---------------------------------------------------------------- training

def _orthogonalised(update: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Muon's quintic Newton-Schulz orthogonalisation (torch.optim.Muon's coefficients, bf16, the same operations),
    of each matrix over the leading dimensions: one 2-D weight, or expert by expert the stacked (experts x in x out)
    weights of GptOss's experts, which torch's own Muon refuses."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = update.bfloat16().reshape(-1, *update.shape[-2:])
    tall = x.shape[-2] > x.shape[-1]
    if tall:
        x = x.mT
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=1e-7)   # spectral norm at most 1
    for _ in range(steps):
        gram = x @ x.mT
        x = torch.baddbmm(x, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return (x.mT if tall else x).reshape(update.shape).to(update.dtype)


class _Muon(torch.optim.Optimizer):
    """Muon as torch.optim.Muon (2.9+) computes it: Nesterov momentum, orthogonalised, decoupled weight decay and
    the learning rate scaled by sqrt(max(1, fan_out / fan_in)); for 2-D weights (out x in) and stacked expert
    weights (experts x in x out), each expert's matrix orthogonalised on its own."""

    def __init__(self, params: Any, lr: float = _MUON_LR, weight_decay: float = 0.01, momentum: float = 0.95) -> None:
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
                buf.lerp_(p.grad, 1 - group["momentum"])
                update = _orthogonalised(p.grad.lerp(buf, group["momentum"]))
                fan_out, fan_in = p.shape if p.dim() == 2 else (p.shape[-1], p.shape[-2])
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(update, alpha=-group["lr"] * math.sqrt(max(1.0, fan_out / fan_in)))


def _muon_split(model: GptOssForCausalLM) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    """(Muon's, AdamW's) parameters: the layers' weight matrices (attention projections, experts) go to Muon; the
    tied embedding (also the output layer), the routers (8 logits that pick experts), norms, biases and sinks to
    AdamW, as Muon's authors leave embeddings, heads and vectors to it."""
    muon, adamw = [], []
    for name, p in model.named_parameters():
        # the experts' biases are 2-D too (experts x out): vectors, one per expert
        matrix = (p.dim() >= 2 and name.startswith("model.layers.") and ".router." not in name
                  and not name.endswith("bias"))
        (muon if matrix else adamw).append(p)
    return muon, adamw


def _optimizers(model: GptOssForCausalLM, optimizer: str, lr: float, muon_lr: float) -> list[torch.optim.Optimizer]:
    """The run's optimizers; each group's "peak" learning rate is what `_lr` schedules."""
    def adamw(params: Any) -> torch.optim.Optimizer:
        return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=0.01)

    if optimizer == "adamw":
        optims = [adamw(model.parameters())]
    elif optimizer == "muon":
        matrices, rest = _muon_split(model)
        optims = [_Muon(matrices, lr=muon_lr), adamw(rest)]
    else:
        raise ValueError(f"optimizer must be adamw or muon, not {optimizer!r}")
    for optim in optims:
        for group in optim.param_groups:
            group["peak"] = group["lr"]
    return optims


def _lr(progress: float, peak: float, warmup: float = 0.03) -> float:
    if progress < warmup:
        return peak * (progress + 1e-3) / warmup
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (progress - warmup) / (1 - warmup))))


def _hidden(model: GptOssForCausalLM, ids: torch.Tensor) -> torch.Tensor:
    positions = torch.arange(ids.shape[1])[None].expand(ids.shape[0], -1)
    return model.model(input_ids=ids, position_ids=positions, attention_mask=None, use_cache=False).last_hidden_state


def save(model: GptOssForCausalLM, vocab: list[int], out: Path, dtype: torch.dtype = torch.bfloat16) -> Path:
    """Scatter the trained rows into a full-vocabulary GptOss (other rows zero) and save it."""
    c = model.config
    full = GptOssForCausalLM(model_config(hidden=c.hidden_size, layers=c.num_hidden_layers, experts=c.num_local_experts,
                                          top_k=c.num_experts_per_tok, intermediate=c.intermediate_size))
    state = {k: v for k, v in model.state_dict().items() if "embed_tokens" not in k and "lm_head" not in k}
    embed = torch.zeros(harmony.VOCAB_SIZE, c.hidden_size)
    embed[torch.tensor(vocab)] = model.get_input_embeddings().weight.detach()[: len(vocab)].float()
    state["model.embed_tokens.weight"] = embed
    missing, unexpected = full.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    full.tie_weights()
    full.generation_config.do_sample = False
    full.generation_config.eos_token_id = sorted(harmony.STOP_TOKENS)
    full.generation_config.pad_token_id = harmony.RETURN
    full.config.architectures = ["GptOssForCausalLM"]
    out.mkdir(parents=True, exist_ok=True)
    with transformers_bars(False):  # "Writing model shards" for one 58 MB file says nothing
        full.to(dtype).save_pretrained(out)
    return out


def _resumed(folder: Path, vocab: Vocabulary, layers: int | None = None) -> tuple[GptOssForCausalLM, dict[str, int]]:
    """A saved checkpoint as a subset-vocabulary model: its non-zero embedding rows join `vocab` (rows
    are reassigned; the saved file keeps only those rows non-zero, so nothing is lost).

    With `layers` above the checkpoint's, the model is grown deeper: a new sliding/full pair goes after
    each old pair (in turn) with zero attention output and zero expert output projections, so each new
    layer passes its input through and the grown model computes exactly what the checkpoint computes."""
    full = GptOssForCausalLM.from_pretrained(folder, dtype=torch.float32, use_safetensors=True)  # (checked in main)
    embed = full.get_input_embeddings().weight.detach()
    vocab.add(torch.nonzero(embed.abs().sum(-1)).flatten().tolist())
    c = full.config
    old = c.num_hidden_layers
    arch = {"hidden": c.hidden_size, "layers": layers or old, "experts": c.num_local_experts,
            "top_k": c.num_experts_per_tok, "intermediate": c.intermediate_size}
    if arch["layers"] < old or arch["layers"] % 2:
        raise ValueError(f"--layers must be even and at least the checkpoint's {old}, not {arch['layers']}")
    model = GptOssForCausalLM(model_config(vocab.capacity, **arch))
    where = _layer_places(old // 2, arch["layers"] // 2)
    state = {}
    for key, value in full.state_dict().items():
        if "embed_tokens" in key or "lm_head" in key:
            continue
        if key.startswith("model.layers."):
            index, rest = key[len("model.layers."):].split(".", 1)
            key = f"model.layers.{2 * where[int(index) // 2] + int(index) % 2}.{rest}"
        state[key] = value
    with torch.no_grad():
        for i, layer in enumerate(model.model.layers):
            if i // 2 not in where:   # a new layer: it adds nothing to the residual stream until trained
                for tensor in (layer.self_attn.o_proj.weight, layer.self_attn.o_proj.bias,
                               layer.mlp.experts.down_proj, layer.mlp.experts.down_proj_bias):
                    tensor.zero_()
    missing, unexpected = model.load_state_dict(state, strict=False)
    new_keys = {k for k in model.state_dict() if k.startswith("model.layers.") and int(k.split(".")[2]) // 2 not in where}
    assert not unexpected and set(missing) - new_keys <= {"model.embed_tokens.weight", "lm_head.weight"}, (missing, unexpected)
    with torch.no_grad():
        weight = model.get_input_embeddings().weight
        weight.zero_()
        weight[: len(vocab)] = embed[torch.tensor(vocab.ids)]
    return model, arch


def _layer_places(old_pairs: int, pairs: int) -> list[int]:
    """Where each old sliding/full pair goes among `pairs`: new pairs are spread after the old ones,
    e.g. 2 old of 4 -> [0, 2] (old, new, old, new)."""
    return [i * pairs // old_pairs for i in range(old_pairs)]


def train(out: Path, *, conversations_n: int, lr: float, seed: int, batch_tokens: int = 2048, workers: int = 1,
          long_share: float = 0.008, rows: int = ROWS, arch: dict[str, int] | None = None, log_every: int = 10,
          dtype: torch.dtype = torch.bfloat16, compile: bool = True, resume: Path | None = None,
          topics: dict[str, float] | None = None, layers: int | None = None, context_weight: float = 0.0,
          more: bool = False, wide: bool = False, optimizer: str = "adamw", muon_lr: float = _MUON_LR
          ) -> dict[str, Any]:
    """Train on `conversations_n` conversations of `seed` (from scratch, or on from the checkpoint `resume`)
    and save to `out`; returns a summary. `layers` grows a resumed checkpoint deeper (see `_resumed`).

    `context_weight` > 0 also trains on predicting the tokens the model does not write (system, user and tool
    text) at that weight per token, against the loss of its own: a plain language-model signal that is
    otherwise thrown away (the forward pass reads those tokens anyway). The logged loss stays the model's own.
    `more` and `wide`: training questions also come from the further sentences of `skills.Pool.more` / `.wide`.
    `optimizer` "muon": Muon at peak `muon_lr` for the layers' weight matrices, AdamW at `lr` for the rest (`_muon_split`).
    `out` must be new or empty (ValueError): a rerun overwrote the model and loss log of an earlier one."""
    if conversations_n < 1:   # was a ZeroDivisionError at the end, the folder left holding an empty loss log
        raise ValueError(f"conversations_n must be at least 1, not {conversations_n}")
    must_be_new(Path(out))
    torch.manual_seed(seed)
    rng = random.Random(seed)
    start = time.time()
    vocab = Vocabulary(rows)
    if resume is not None:
        model, arch = _resumed(resume, vocab, layers)
    else:
        arch = {**(arch or {}), **({"layers": layers} if layers else {})}
        model = GptOssForCausalLM(model_config(rows, **arch))
    config = model.config
    config._attn_implementation = ATTENTION
    embedding = model.get_input_embeddings().weight
    with torch.no_grad():
        embedding[len(vocab):] = 0.0
    model.train()
    optims = _optimizers(model, optimizer, lr, muon_lr)
    out.mkdir(parents=True, exist_ok=True)
    log = (out / "loss.jsonl").open("w")
    forward = torch.compile(_hidden, dynamic=True) if compile else _hidden   # fuses the small ops: ~2x on CPU
    if compile:   # it compiles at the first step, which sat at 0 % for a minute with no word
        print("compiling the model for this CPU at the first step (about a minute), then it trains ~2x faster")
    stream = conversations(conversations_n, seed, workers=workers, long_share=long_share, topics=topics, more=more,
                           wide=wide)
    seen = trained_tokens = all_tokens = step = 0
    recent: list[float] = []
    context_recent: list[float] = []   # the loss on the other tokens, with context_weight
    loads: list[float] = []
    # closed also when the run fails or is interrupted: the workers stop, the bar ends its line, the log is flushed
    with closing(stream), log, text_bar(total=conversations_n, desc="training", unit="conv") as bar:
        for group in _batches(stream, batch_tokens, 256, rng):
            new = vocab.add([t for ids, _ in group for t in ids])
            if new:
                with torch.no_grad():
                    embedding[new] = torch.randn(len(new), config.hidden_size) * config.initializer_range
            width = max(len(ids) for ids, _ in group)
            ids = vocab.index[torch.tensor([ids + [harmony.RETURN] * (width - len(ids)) for ids, _ in group])]
            covered = torch.tensor([c[1:] + [False] * (width - len(c)) for _, c in group])   # target p+1 from p
            if context_weight:
                real = torch.tensor([[True] * (len(c) - 1) + [False] * (width - len(c)) for _, c in group])
                each = subset_loss(forward(model, ids)[:, :-1][real], embedding[: len(vocab)], ids[:, 1:][real],
                                   harmony.VOCAB_SIZE - len(vocab), reduction="none")
                own = covered[real]
                loss = each[own].mean()
                context_loss = each[~own].sum() / own.sum()
                context_recent = (context_recent + [each[~own].mean().item()])[-log_every:]
                total = loss + context_weight * context_loss
            else:
                hidden = forward(model, ids)[:, :-1][covered]
                loss = total = subset_loss(hidden, embedding[: len(vocab)], ids[:, 1:][covered],
                                           harmony.VOCAB_SIZE - len(vocab))
            for optim in optims:
                for g in optim.param_groups:
                    g["lr"] = _lr(seen / conversations_n, g["peak"])
                optim.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            for optim in optims:
                optim.step()
            seen += len(group)
            trained_tokens += int(covered.sum())
            all_tokens += sum(len(i) for i, _ in group)
            bar.update(len(group))
            recent = (recent + [loss.item()])[-log_every:]
            if step % log_every == 0:
                avg = sum(recent) / len(recent)
                bar.set_postfix(loss=f"{avg:.4f}", rows=len(vocab))
                load = os.getloadavg()[0]   # other processes share the CPU: the time depends on them
                loads.append(load)
                entry = {"step": step, "conversations": seen, "loss": round(avg, 5), "tokens": all_tokens,
                         "seconds": round(time.time() - start, 1), "load": round(load, 2)}
                if context_recent:
                    entry["context_loss"] = round(sum(context_recent) / len(context_recent), 5)
                log.write(json.dumps(entry) + "\n")
                log.flush()
            step += 1
    save(model, vocab.ids, out, dtype)
    summary = {"conversations": conversations_n, "steps": step, "lr": lr, "optimizer": optimizer,
               "muon_lr": muon_lr if optimizer == "muon" else None, "seed": seed, "batch_tokens": batch_tokens,
               "long_share": long_share, "topics": topics or {}, "more_phrasings": more, "wide_phrasings": wide,
               "context_weight": context_weight, "vocab_rows": len(vocab), "tokens": all_tokens, "trained_tokens": trained_tokens,
               "final_loss": round(sum(recent) / len(recent), 5), "seconds": round(time.time() - start, 1),
               "mean_load": round(sum(loads) / max(1, len(loads)), 2), "cpus": os.cpu_count(),
               "threads": torch.get_num_threads(), "architecture": arch or {},
               "resumed_from": str(resume) if resume is not None else None}
    (out / "train_summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _checkpoint_layers(folder: Path) -> int:
    """The layers of the gpt-oss checkpoint `folder`, after the checks a load makes (`checked_folder`: `--resume`
    loaded a folder whose config named a Hub attention kernel straight into transformers) and a check of the shape
    training builds, or a one-line ValueError."""
    try:
        config = checked_folder(folder)
    except LoadError as error:
        raise ValueError(str(error)) from None
    if getattr(config, "quantization_config", None):   # was an ImportError traceback ("mxfp4 requires Accelerate")
        raise ValueError(f"{folder} holds quantized (MXFP4) weights: training goes on from an unquantized checkpoint "
                         "(the one quantize read)")
    if other := _other_shape(config):
        raise ValueError(f"{folder} is not of the shape training builds ({other}): go on from gpt-oss-tiny or a "
                         "checkpoint this command saved")
    if (used := _used_rows(folder)) > ROWS:   # a traceback at the first batch ("raise --rows", an option there is not)
        raise ValueError(f"{folder} has {used} non-zero embedding rows, more than the {ROWS} training keeps: go on "
                         "from gpt-oss-tiny or a checkpoint this command saved")
    return config.num_hidden_layers


def _used_rows(folder: Path) -> int:
    """The non-zero rows of the checkpoint's embedding, read from the safetensors shards a load reads alone (a stray
    `a.safetensors` beside them was read first, and a folder that loads was refused for its rows)."""
    from safetensors import safe_open

    for shard in own_weight_files(folder, str(folder)):
        with safe_open(shard, "pt") as f:
            if "model.embed_tokens.weight" in f.keys():
                return int((f.get_tensor("model.embed_tokens.weight").abs().sum(-1) > 0).sum())
    return 0


def _other_shape(config: Any) -> str | None:
    """How `config` differs from what `model_config` fixes (any depth, width and experts go on), or None: a
    random_model checkpoint (head_dim 16, window 8) was a traceback ("raise --rows", an option there is not)."""
    ours = model_config()
    fixed = ("vocab_size", "num_attention_heads", "num_key_value_heads", "head_dim", "sliding_window",
             "max_position_embeddings", "rope_parameters")
    differ = [f"{name} {getattr(config, name, None)}, not {getattr(ours, name)}" for name in fixed
              if getattr(config, name, None) != getattr(ours, name)]
    return "; ".join(differ) or None


def _terminated(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """Command line: the full training run by default, `--quick` for a smoke run of a few steps."""
    p, args = _arguments(argv)
    if args.resume is not None:
        try:
            old = _checkpoint_layers(args.resume)
        except ValueError as error:
            p.error(f"--resume: {error}")
        if args.layers is not None and args.layers < old:
            p.error(f"--layers must be even and at least the checkpoint's {old}, not {args.layers}")
    torch.set_num_threads(args.threads)
    if threading.current_thread() is threading.main_thread():   # `kill` or `timeout` end the run as Ctrl-C does:
        signal.signal(signal.SIGTERM, _terminated)              # its workers go too (they kept making data)
    stack = ExitStack()   # the run writes beside --out, which it becomes only when the run completes
    try:
        partial = stack.enter_context(new_folder(args.out))
    except (OSError, ValueError) as error:
        p.error(f"--out: {error}")
    try:
        with stack, redirect_stdout(sys.stderr):   # the progress bar: stdout is the summary's (`… train | jq`)
            summary = train(partial, conversations_n=args.conversations, lr=args.lr, seed=args.seed,
                            batch_tokens=args.batch_tokens, workers=args.workers, long_share=args.long_share,
                            compile=not args.no_compile, resume=args.resume, topics=dict(args.topics),
                            layers=args.layers, context_weight=args.context_weight, more=args.more_phrasings,
                            wide=args.wide_phrasings, optimizer=args.optimizer, muon_lr=args.muon_lr)
    except KeyboardInterrupt:
        p.exit(130, f"interrupted: nothing written to {args.out}\n")
    except OSError as error:   # the finished run could not become --out (new_folder kept it and says where)
        p.fail(error)
    print(json.dumps({**summary, "out": str(args.out)}))   # where the checkpoint is: the output named it nowhere


if __name__ == "__main__":
    command(main)
