"""A lean forward pass for transformers' GptOss on a CPU, with a static KV store and chunked attention.

transformers' own forward spends most of a decode step on the CPU in bookkeeping (masks, cache
objects, dispatch), and its eager attention materialises a score matrix per chunk. `KVForward`
runs the same modules' weights with the same maths: the router and expert modules are called as
they are, so router hooks (routing capture, interventions) see exactly what the model routed;
keys and values go into preallocated buffers that keep every position (sliding-window layers
included), so going back to any earlier position is a length change; prompt chunks use torch's
fused CPU attention kernel (no score matrix; one pass over the keys when decoding), with gpt-oss's
attention sinks merged through its log-sum-exp, and sliding windows as small per-block masks. A float32 vocabulary projection (the
step's largest matrix by far on small models) is read from a transposed copy, 1.5x faster on the
CPU, that leaves out all-zero rows (their logits are exactly 0; gpt-oss-tiny zeroes the rows of
tokens it never saw), refreshed when the weights change. Only models that are plain
transformers GptOss on the CPU qualify (`unsupported` says why not); others use transformers.
torch is imported only when the class is used.
"""
from __future__ import annotations

from typing import Any

_FLASH = "_scaled_dot_product_flash_attention_for_cpu"
COPY_ROOM = 8  # the lm_head copy is made only where this many times its size is free


def unsupported(model: Any) -> str | None:
    """None when `KVForward` runs this model exactly as transformers would; else why not, in words."""
    import torch
    from transformers.models.gpt_oss import modeling_gpt_oss as gpt_oss

    if not hasattr(torch.ops.aten, _FLASH):
        return f"torch {torch.__version__} has no fused CPU attention kernel"
    devices = {p.device.type for p in model.parameters()}
    if devices != {"cpu"}:
        return f"the model is on {', '.join(sorted(devices))}, not only the CPU"
    dtypes = {str(p.dtype).removeprefix("torch.") for p in model.parameters() if p.is_floating_point()}
    if dtypes - {"float32"}:  # its attention computes in float32: transformers' rounds in bf16, a near tie can flip
        return f"its weights are {', '.join(sorted(dtypes))}: the lean path equals transformers in float32 only"
    config = model.config
    if getattr(config, "_attn_implementation", None) not in (None, "eager"):
        return f"it uses the {config._attn_implementation} attention implementation"
    if type(getattr(model, "model", None)) is not gpt_oss.GptOssModel or type(model.model.rotary_emb) is not gpt_oss.GptOssRotaryEmbedding:
        return "it is not transformers' GptOssModel"
    for layer in model.model.layers:
        parts = (layer, layer.self_attn, layer.mlp, layer.mlp.router, layer.mlp.experts)
        kinds = (gpt_oss.GptOssDecoderLayer, gpt_oss.GptOssAttention, gpt_oss.GptOssMLP, gpt_oss.GptOssTopKRouter,
                 gpt_oss.GptOssExperts)
        for part, kind in zip(parts, kinds):
            if type(part) is not kind:
                return f"its {type(part).__name__} is not transformers' {kind.__name__}"
            if "forward" in vars(part):
                return f"its {kind.__name__} runs a replaced forward (a hub kernel?)"
    return None


def copy_bytes(rows: int, hidden: int, available: float) -> int:
    """Bytes of the transposed float32 lm_head copy `KVForward` makes of `rows` vocabulary rows with `available` bytes
    free: 0 where it makes none (it needs COPY_ROOM times its size free, so as not to crowd out the KV store)."""
    size = rows * hidden * 4
    return size if 0 < size and size * COPY_ROOM < available else 0


def head_copy_bytes(lm_head: Any, available: float) -> int:
    """Bytes of the copy `KVForward` makes of this lm_head with `available` bytes free: its non-zero rows, in float32;
    0 where it makes none (weights not float32, a bias, too little room)."""
    import torch

    weight = lm_head.weight
    if weight.dtype != torch.float32 or lm_head.bias is not None:
        return 0
    return copy_bytes(_rows(weight, KVForward.sparse_vocabulary).numel(), weight.shape[1], available)


def _rows(weight: Any, sparse: bool) -> Any:
    """The vocabulary rows the lm_head copy keeps: the non-zero ones (all of them unless `sparse`)."""
    import torch

    return weight.detach().any(dim=1).nonzero()[:, 0] if sparse else torch.arange(weight.shape[0])


class KVForward:
    """Runs token chunks through a GptOss model onto its own KV store; returns the last position's logits.

    `length` positions are cached; `truncate(n)` goes back to n exactly (no state is ever dropped).
    A forward stopped half-way (Ctrl-C) leaves `length` unchanged, so what it wrote is ignored.
    """

    block = 2048  # query rows per fused-attention call on full-attention layers
    sparse_vocabulary = True  # leave all-zero vocabulary rows out of the projection (False: benchmarks compare)

    def __init__(self, model: Any) -> None:
        import torch

        self.model = model
        config = model.config
        self.heads, self.kv_heads, self.head_dim = config.num_attention_heads, config.num_key_value_heads, config.head_dim
        self.groups = self.heads // self.kv_heads
        self.windows = [config.sliding_window if kind == "sliding_attention" else None for kind in config.layer_types]
        self.limit = int(getattr(config, "max_position_embeddings", 0) or 0) or None
        self._flash = getattr(torch.ops.aten, _FLASH)
        self.length = 0
        self._keys: list[Any] = []
        self._values: list[Any] = []
        self._head: tuple[Any, tuple[int, int], Any, Any] | None = None  # (weight, its storage and version, rows or None, ids)
        self._out: Any = None  # the logits of the sparse projection, zero where the rows are (reused: no page faults)

    @property
    def capacity(self) -> int:
        return self._keys[0].shape[2] if self._keys else 0

    def reset(self) -> None:
        """Forget every position and free the buffers."""
        self.length, self._keys, self._values = 0, [], []

    def truncate(self, n: int) -> None:
        """Keep only the first `n` cached positions."""
        self.length = min(self.length, n)

    def __call__(self, tokens: list[int]) -> Any:
        """Compute `tokens` after the cached positions; the float32 logits [1, vocab] of the last one
        (a buffer that the next call may overwrite)."""
        import torch

        model = self.model.model
        start, n = self.length, len(tokens)
        ids = torch.tensor([tokens], dtype=torch.long, device=model.embed_tokens.weight.device)
        x = model.embed_tokens(ids)
        self._reserve(start + n, x)
        cos, sin = model.rotary_emb(x, torch.arange(start, start + n, device=x.device).unsqueeze(0))
        for i, layer in enumerate(model.layers):
            x = x + self._attention(layer.self_attn, i, layer.input_layernorm(x), cos, sin, start)
            x = x + self._moe(layer.mlp, layer.post_attention_layernorm(x))
        self.length = start + n
        return self._logits(model.norm(x[:, -1]))

    @property
    def store(self) -> list[Any]:
        """The KV store's buffers, keys then values (allocated to `capacity`, however few positions are cached)."""
        return [*self._keys, *self._values]

    @property
    def head_bytes(self) -> int:
        """Bytes of the lm_head copy held for the current weights (0: none, or a stale one the next forward replaces)."""
        return self._head[2].numel() * 4 if self._head_current() and self._head[2] is not None else 0

    def _head_current(self) -> bool:
        """Whether the lm_head copy (or the decision to make none) was made from the weight as it is now."""
        weight = self.model.lm_head.weight
        made = (weight.data_ptr(), weight._version)  # a tensor swapped in through .data keeps the version
        return self._head is not None and self._head[0] is weight and self._head[1] == made

    def _logits(self, x: Any) -> Any:
        """The vocabulary projection of x [1, hidden] as float32 logits [1, vocab]."""
        import psutil
        import torch

        weight = self.model.lm_head.weight
        if weight.dtype != torch.float32 or self.model.lm_head.bias is not None:
            return self.model.lm_head(x).float()
        if not self._head_current():
            self._head = None  # the stale copy goes first
            rows = _rows(weight, self.sparse_vocabulary)
            room = copy_bytes(rows.numel(), weight.shape[1], psutil.virtual_memory().available) > 0
            self._head = (weight, (weight.data_ptr(), weight._version),
                          weight.detach()[rows].t().contiguous() if room else None, rows)
            self._out = x.new_zeros((1, weight.shape[0]))
        _, _, matrix, rows = self._head
        if matrix is None:
            return self.model.lm_head(x)
        if rows.numel() == weight.shape[0]:
            return x @ matrix
        return self._out.zero_().index_copy_(1, rows, x @ matrix)  # zeroed again: a logits processor may write it

    # ------------------------------------------------------------ the KV store

    def _reserve(self, needed: int, like: Any) -> None:
        """Grow the buffers (doubling, up to the model's context unless more is needed) to hold `needed` positions."""
        if needed <= self.capacity:
            return
        size = max(needed, 2 * self.capacity, 256)
        if self.limit is not None and needed <= self.limit:  # past it (a benchmark), not one copy per token
            size = min(size, self.limit)
        keys, values = [], []
        for i in range(len(self.windows)):
            for old, new in ((self._keys, keys), (self._values, values)):
                buffer = like.new_empty((1, self.kv_heads, size, self.head_dim))
                if old:
                    buffer[:, :, :self.length] = old[i][:, :, :self.length]
                new.append(buffer)
        self._keys, self._values = keys, values

    # ------------------------------------------------------------ attention

    def _attention(self, attn: Any, i: int, x: Any, cos: Any, sin: Any, start: int) -> Any:
        """GptOssAttention's forward for positions start.. (the keys and values written to the store)."""
        import torch.nn.functional as F
        from transformers.models.gpt_oss.modeling_gpt_oss import apply_rotary_pos_emb

        n, d = x.shape[1], self.head_dim
        q = F.linear(x, attn.q_proj.weight, attn.q_proj.bias).view(1, n, self.heads, d).transpose(1, 2)
        k = F.linear(x, attn.k_proj.weight, attn.k_proj.bias).view(1, n, self.kv_heads, d).transpose(1, 2)
        v = F.linear(x, attn.v_proj.weight, attn.v_proj.bias).view(1, n, self.kv_heads, d).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        self._keys[i][:, :, start:start + n] = k
        self._values[i][:, :, start:start + n] = v
        if n == 1:
            out = self._decode(attn, i, q, start)
        elif self.windows[i] is None:
            out = _cat([self._full(attn, i, q[:, :, b:b + self.block], start + b)
                             for b in range(0, n, self.block)])
        else:
            w = self.windows[i]
            out = _cat([self._windowed(attn, i, q[:, :, b:b + w], start + b) for b in range(0, n, w)])
        return F.linear(out.transpose(1, 2).reshape(1, n, -1), attn.o_proj.weight, attn.o_proj.bias)

    def _decode(self, attn: Any, i: int, q: Any, p: int) -> Any:
        """One query at position p over its keys (the fused kernel reads each key and value once)."""
        w = self.windows[i]
        return _merge([self._fused(attn, i, q, 0 if w is None else max(0, p - w + 1), p + 1)], attn.sinks, q.dtype)

    def _full(self, attn: Any, i: int, q: Any, p0: int) -> Any:
        """Queries at positions p0.. on a full-attention layer: all earlier keys, then the block's own (causal)."""
        n = q.shape[2]
        parts = [self._fused(attn, i, q, 0, p0)] if p0 else []  # every earlier key is visible to every query
        keys, values = (self._repeat(b[i][:, :, p0:p0 + n]) for b in (self._keys, self._values))
        parts.append(self._flash(q, keys, values, 0.0, True, scale=attn.scaling))
        return _merge(parts, attn.sinks, q.dtype)

    def _windowed(self, attn: Any, i: int, q: Any, p0: int) -> Any:
        """At most `window` queries at positions p0.. on a sliding-window layer, with a small mask."""
        import torch

        n, w = q.shape[2], self.windows[i]
        lo = max(0, p0 - w + 1)
        query = torch.arange(p0, p0 + n, device=q.device).view(-1, 1)
        key = torch.arange(lo, p0 + n, device=q.device).view(1, -1)
        mask = q.new_zeros(query.shape[0], key.shape[1]).masked_fill((key > query) | (query - key >= w), float("-inf"))
        return _merge([self._fused(attn, i, q, lo, p0 + n, mask)], attn.sinks, q.dtype)

    def _fused(self, attn: Any, i: int, q: Any, lo: int, hi: int, mask: Any = None) -> tuple[Any, Any]:
        """(output, log-sum-exp) of queries q [1, heads, n, d] over cached keys lo..hi-1, in one call: the heads
        that share a key/value head are stacked as rows (no repeated keys), a mask [n, keys] repeated for them."""
        n, d = q.shape[2], self.head_dim
        stacked = q.reshape(1, self.kv_heads, self.groups * n, d)
        mask = None if mask is None else mask.repeat(self.groups, 1)
        out, lse = self._flash(stacked, self._keys[i][:, :, lo:hi], self._values[i][:, :, lo:hi], 0.0, False,
                               attn_mask=mask, scale=attn.scaling)
        return out.reshape(1, self.heads, n, d), lse.reshape(1, self.heads, n)

    def _repeat(self, states: Any) -> Any:
        """[1, kv_heads, n, d] -> [1, heads, n, d] (each key/value head serves `groups` query heads)."""
        n = states.shape[2]
        return states[:, :, None].expand(1, self.kv_heads, self.groups, n, self.head_dim).reshape(1, self.heads, n, self.head_dim)

    # ------------------------------------------------------------ experts

    def _moe(self, mlp: Any, x: Any) -> Any:
        """GptOssMLP's forward: the router module (hooks see it), then its experts; one token without bookkeeping."""
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        _, weights, experts = mlp.router(flat)
        if flat.shape[0] == 1:
            out = self._one_token(mlp.experts, flat, experts, weights)
        else:
            out = mlp.experts(flat, experts, weights)
        return out.reshape(shape)

    @staticmethod
    def _one_token(module: Any, x: Any, experts: Any, weights: Any) -> Any:
        """The chosen experts of one token, weighted and summed in top-k order (as transformers sums them); a slot an
        intervention left empty (expert -1) computes nothing."""
        total = None
        for slot, e in enumerate(experts[0].tolist()):
            if e < 0:
                continue
            up = module._apply_gate(x @ module.gate_up_proj[e] + module.gate_up_proj_bias[e])
            out = (up @ module.down_proj[e] + module.down_proj_bias[e]) * weights[:, slot:slot + 1]
            total = out if total is None else total + out
        return x.new_zeros(x.shape) if total is None else total.to(x.dtype)


def _merge(parts: list[tuple[Any, Any]], sinks: Any, dtype: Any) -> Any:
    """Attention outputs over disjoint key sets, with their log-sum-exps, as one softmax that also holds
    each head's sink logit (which takes probability mass but adds no value)."""
    import torch

    sink = sinks.float().view(1, -1, 1)
    total = sink
    for _, lse in parts:
        total = torch.logaddexp(total, lse.float())
    out = sum(o.float() * torch.exp(lse.float() - total).unsqueeze(-1) for o, lse in parts)
    return out.to(dtype)


def _cat(parts: list[Any]) -> Any:
    """Query blocks back together along the sequence."""
    import torch

    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)
