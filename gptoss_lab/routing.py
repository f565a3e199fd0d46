"""Mixture-of-experts routing: capture it from the model, keep it per token, analyse and show it.

`RouterHooks` records what every `GptOssTopKRouter` chose, `Recorder` collects it for a turn
(prompt then generated tokens), and `Routing` is the record a `Reply` carries: tokens × layers ×
top-k expert ids and gate weights, with token strings and the Harmony channel of every token.
torch is imported only inside `RouterHooks`, so importing this module stays cheap.
"""
from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from . import harmony

LABELS = ("system", "developer", "user", "tool", "analysis", "commentary", "final", "format")


class RouterHooks:
    """Forward hooks on every `GptOssTopKRouter` of a model (layer order), recording its choices.

    Use as a context manager around forward passes (batch size 1); `take()` returns what the
    routers returned since the last call: the softmax gate weights over the top-k logits and the
    expert ids, exactly as the model routed them (nothing is recomputed).

    Only models whose MoE layers call their router module are seen: transformers' `GptOssMLP` does,
    but on GPU with MXFP4 weights the hub "MegaBlocksMoeMLP" kernel (and other fused MoE kernels)
    may replace the layer's forward and route internally, bypassing the router. Then `take()` finds
    nothing and `Recorder.add` raises; load the model without those kernels to see its routing.
    """

    def __init__(self, model: Any) -> None:
        self._routers = [m for m in model.modules() if type(m).__name__ == "GptOssTopKRouter"]
        if not self._routers:
            raise ValueError("this model has no GptOssTopKRouter modules, so there is no routing to record")
        self.num_experts: int = int(self._routers[0].num_experts)
        self.top_k: int = int(self._routers[0].top_k)
        self._captured: list[list[tuple[Any, Any]]] = [[] for _ in self._routers]
        self._handles: list[Any] = []

    def __enter__(self) -> RouterHooks:
        for layer, router in enumerate(self._routers):
            self._handles.append(router.register_forward_hook(self._hook(layer)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._captured = [[] for _ in self._routers]

    def _hook(self, layer: int) -> Callable[..., None]:
        def hook(module: Any, args: Any, output: tuple[Any, Any, Any]) -> None:
            _, scores, indices = output  # (logits, softmax of the top-k logits, top-k expert ids)
            self._captured[layer].append((indices.detach(), scores.detach()))

        return hook

    def take(self) -> tuple[np.ndarray, np.ndarray]:
        """(experts int16 [n, layers, k], weights float32 [n, layers, k]) routed since the last take."""
        import torch

        captured, self._captured = self._captured, [[] for _ in self._routers]
        counts = [sum(indices.shape[0] for indices, _ in caps) for caps in captured]
        if not any(counts):
            return np.zeros((0, len(counts), self.top_k), np.int16), np.zeros((0, len(counts), self.top_k), np.float32)
        if len(set(counts)) != 1:
            raise RuntimeError(f"routers saw different numbers of tokens per layer: {counts}")
        experts = torch.stack([torch.cat([i for i, _ in caps]) for caps in captured], dim=1)
        weights = torch.stack([torch.cat([w for _, w in caps]) for caps in captured], dim=1)
        return experts.to(torch.int16).cpu().numpy(), weights.float().cpu().numpy()


class Load(NamedTuple):
    """Expert load per layer: how often each expert was in a token's top-k, and that as a share."""

    counts: np.ndarray  # int64 [layers, experts]
    share: np.ndarray   # float64 [layers, experts], rows sum to 1 (0 where no tokens)


class Comparison(NamedTuple):
    """How two routings differ: per-layer Jensen–Shannon divergence of expert load (bits, 0..1)
    and the (layer, expert, share here, share there) entries that differ most."""

    jsd: np.ndarray
    top: list[tuple[int, int, float, float]]

    def __repr__(self) -> str:
        lines = [f"Jensen–Shannon divergence of expert load per layer (bits): mean {self.jsd.mean():.3f}, "
                 f"max {self.jsd.max():.3f} at layer {int(self.jsd.argmax())}"]
        lines += [f"  layer {layer:>2} expert {expert:>3}: {a:6.1%} vs {b:6.1%}" for layer, expert, a, b in self.top]
        return "\n".join(lines)


class Routing:
    """Which experts every token went to: tokens × layers × top-k ids and gate weights.

    `experts` (int16) and `weights` (float32) have shape [tokens, layers, k]; `tokens` are the ids,
    `strings` their text and `labels` the part of the conversation each belongs to (one of
    `LABELS`; "" while still unknown during streaming). It grows with `append`, and views
    registered with `observe` are told, so a widget can update live while the model generates.
    """

    def __init__(
        self,
        tokens: Sequence[int] = (),
        experts: np.ndarray | None = None,
        weights: np.ndarray | None = None,
        labels: Sequence[str] | None = None,
        *,
        num_experts: int | None = None,
    ) -> None:
        self._n = 0
        self._tokens = np.zeros(0, np.int32)
        self._experts = np.zeros((0, 0, 0), np.int16)
        self._weights = np.zeros((0, 0, 0), np.float32)
        self.strings: list[str] = []
        self.labels: list[str] = []
        self._num_experts = num_experts
        self._observers: list[Callable[[str, int], None]] = []
        if len(tokens):
            self.append(tokens, experts, weights, labels)

    # ------------------------------------------------------------ data

    @property
    def tokens(self) -> np.ndarray:
        return self._tokens[: self._n]

    @property
    def experts(self) -> np.ndarray:
        return self._experts[: self._n]

    @property
    def weights(self) -> np.ndarray:
        return self._weights[: self._n]

    @property
    def layers(self) -> int:
        return self._experts.shape[1]

    @property
    def top_k(self) -> int:
        return self._experts.shape[2]

    @property
    def num_experts(self) -> int:
        """Experts per layer: as given, else one more than the largest id seen."""
        if self._num_experts is not None:
            return self._num_experts
        return int(self.experts.max()) + 1 if self._n else 0

    @num_experts.setter
    def num_experts(self, value: int | None) -> None:
        self._num_experts = value

    def __len__(self) -> int:
        return self._n

    def append(self, tokens: Sequence[int], experts: np.ndarray, weights: np.ndarray,
               labels: Sequence[str] | None = None) -> None:
        """Add tokens at the end (labels default to "" = not known yet) and tell the observers."""
        experts, weights = np.asarray(experts, np.int16), np.asarray(weights, np.float32)
        n = len(tokens)
        if experts.ndim != 3 or experts.shape[0] != n or weights.shape != experts.shape:
            raise ValueError(f"need experts and weights of shape [{n}, layers, k] for {n} tokens, "
                             f"got {experts.shape} and {weights.shape}")
        if labels is not None and len(labels) != n:
            raise ValueError(f"{len(labels)} labels for {n} tokens")
        if self._n == 0 and self._experts.shape[1:] != experts.shape[1:]:
            self._experts = np.zeros((0, *experts.shape[1:]), np.int16)
            self._weights = np.zeros((0, *experts.shape[1:]), np.float32)
        if experts.shape[1:] != self._experts.shape[1:]:
            raise ValueError(f"routing of shape [layers, k] = {list(experts.shape[1:])} does not match "
                             f"{list(self._experts.shape[1:])}")
        start = self._n
        self._reserve(start + n)
        self._tokens[start:start + n] = tokens
        self._experts[start:start + n] = experts
        self._weights[start:start + n] = weights
        self._n = start + n
        self.strings.extend(harmony.decode([int(t)]) for t in tokens)
        self.labels.extend(labels if labels is not None else [""] * n)
        self._notify("append", start)

    def _reserve(self, size: int) -> None:
        """Grow the buffers geometrically, so appending token by token stays linear."""
        if size <= len(self._tokens):
            return
        cap = max(size, 2 * len(self._tokens), 64)
        for name in ("_tokens", "_experts", "_weights"):
            old = getattr(self, name)
            new = np.zeros((cap, *old.shape[1:]), old.dtype)
            new[: self._n] = old[: self._n]
            setattr(self, name, new)

    def truncate(self, n: int) -> None:
        """Keep the first `n` tokens (views redraw from scratch)."""
        self._n = min(n, self._n)
        del self.strings[self._n:], self.labels[self._n:]
        self._notify("reset", 0)

    def relabel(self, labels: Sequence[str]) -> None:
        """Set every token's label (the session does this once the turn's ids are known)."""
        if len(labels) != self._n:
            raise ValueError(f"{len(labels)} labels for {self._n} tokens")
        self.labels = list(labels)
        self._notify("labels", 0)

    def observe(self, callback: Callable[[str, int], None]) -> None:
        """Call `callback(kind, start)` after each change: kind "append" (tokens from `start` are
        new), "labels" (labels changed) or "reset" (tokens were dropped)."""
        self._observers.append(callback)

    def _notify(self, kind: str, start: int) -> None:
        for callback in self._observers:
            callback(kind, start)

    # ------------------------------------------------------------ analysis

    def _mask(self, channel: str | None) -> np.ndarray:
        if channel is None:
            return np.ones(self._n, bool)
        return np.asarray(self.labels, dtype=object) == channel

    def load(self, channel: str | None = None) -> Load:
        """Per-layer expert load over all tokens, or over the tokens of one channel (label)."""
        experts = self.experts[self._mask(channel)]
        layers, n_exp = self.layers, self.num_experts
        flat = (np.arange(layers)[None, :, None] * n_exp + experts).ravel()
        counts = np.bincount(flat, minlength=layers * n_exp).reshape(layers, n_exp)
        return Load(counts, _normalise(counts))

    def channel_load(self) -> dict[str, Load]:
        """Expert load of each channel present (analysis vs final vs tool code ...), in order of appearance."""
        return {label: self.load(label) for label in dict.fromkeys(self.labels)}

    def coactivation(self, layer: int | None = None) -> np.ndarray:
        """[experts, experts] counts of tokens that chose both experts together (one layer, or all
        layers summed); the diagonal counts how often each expert was chosen."""
        experts = self.experts if layer is None else self.experts[:, layer: layer + 1]
        n_exp = self.num_experts
        pairs = (experts[..., :, None].astype(np.int64) * n_exp + experts[..., None, :]).ravel()
        return np.bincount(pairs, minlength=n_exp * n_exp).reshape(n_exp, n_exp)

    def entropy(self) -> np.ndarray:
        """Entropy (bits) of each layer's expert load: log2(experts) is perfectly balanced, 0 one expert."""
        return _entropy(self.load().share)

    def to_frame(self) -> Any:
        """A tidy table, one row per (token, layer, rank): a pandas DataFrame, or a list of dicts
        when pandas is not installed."""
        n, layers, k = self.experts.shape
        position = np.repeat(np.arange(n), layers * k)
        columns = {
            "position": position,
            "token": np.repeat(self.tokens, layers * k),
            "text": np.asarray(self.strings, dtype=object)[position] if n else np.zeros(0, object),
            "label": np.asarray(self.labels, dtype=object)[position] if n else np.zeros(0, object),
            "layer": np.tile(np.repeat(np.arange(layers), k), n),
            "rank": np.tile(np.arange(k), n * layers),
            "expert": self.experts.ravel(),
            "weight": self.weights.ravel(),
        }
        try:
            import pandas as pd
        except ImportError:
            names = list(columns)
            return [dict(zip(names, row)) for row in zip(*(columns[c].tolist() for c in names))]
        return pd.DataFrame(columns)

    def compare(self, other: Routing, top: int = 10) -> Comparison:
        """Contrast two routings' expert usage layer by layer (e.g. two prompts on the same model)."""
        if (self.layers, self.num_experts) != (other.layers, other.num_experts):
            raise ValueError(f"cannot compare routings of {self.layers}×{self.num_experts} and "
                             f"{other.layers}×{other.num_experts} (layers × experts)")
        p, q = self.load().share, other.load().share
        m = (p + q) / 2
        jsd = np.maximum(_entropy(m) - (_entropy(p) + _entropy(q)) / 2, 0.0)
        diff = np.abs(p - q).ravel()
        order = np.argsort(-diff, kind="stable")[:top]
        pairs = [divmod(int(i), self.num_experts) for i in order if diff[i] > 0]
        return Comparison(jsd, [(layer, e, float(p[layer, e]), float(q[layer, e])) for layer, e in pairs])

    # ------------------------------------------------------------ display

    def figure(self, kind: str = "grid", *, channel: str | None = None, layer: int | None = None) -> Any:
        """A matplotlib Figure for papers and static notebooks.

        kind "grid": token × layer grid coloured by each token's top-1 expert (tokens of other
        channels greyed when `channel` is given); kind "load": expert load of `layer` as bars, or of
        all layers as a layer × expert heat map.
        """
        from matplotlib.figure import Figure

        if kind == "grid":
            fig = Figure(figsize=(min(16, 2 + self._n / 40), 1 + 0.18 * max(self.layers, 4)), layout="constrained")
            ax = fig.add_subplot()
            top1 = self.experts[:, :, 0].T.astype(float)
            if channel is not None:
                top1[:, ~self._mask(channel)] = np.nan
            cmap = _expert_colormap(self.num_experts).with_extremes(bad="#dddddd")
            ax.imshow(top1, aspect="auto", interpolation="nearest", cmap=cmap, vmin=-0.5,
                      vmax=max(self.num_experts, 1) - 0.5)
            ax.set_xlabel("token")
            ax.set_ylabel("layer")
            ax.set_title("top-1 expert per token and layer" + (f" ({channel})" if channel else ""))
            return fig
        if kind == "load":
            load = self.load(channel)
            fig = Figure(figsize=(10, 3 if layer is not None else 1 + 0.2 * max(self.layers, 4)),
                         layout="constrained")
            ax = fig.add_subplot()
            if layer is None:
                image = ax.imshow(load.share, aspect="auto", interpolation="nearest", cmap="viridis")
                fig.colorbar(image, ax=ax, label="share of top-k picks")
                ax.set_xlabel("expert")
                ax.set_ylabel("layer")
            else:
                ax.bar(np.arange(self.num_experts), load.share[layer],
                       color=_expert_colormap(self.num_experts)(np.arange(self.num_experts)))
                ax.set_xlabel("expert")
                ax.set_ylabel("share of top-k picks")
            ax.set_title("expert load" + (f", layer {layer}" if layer is not None else "")
                         + (f" ({channel})" if channel else ""))
            return fig
        raise ValueError(f"kind must be 'grid' or 'load', not {kind!r}")

    def view(self) -> Any:
        """The interactive RoutingView widget of this routing (updates live while it grows)."""
        from .widgets.routing import RoutingView

        return RoutingView(self)

    def __repr__(self) -> str:
        counts = {label: self.labels.count(label) for label in dict.fromkeys(self.labels)}
        parts = ", ".join(f"{label or '?'} {n}" for label, n in counts.items())
        return (f"Routing({self._n} tokens × {self.layers} layers × top-{self.top_k} of "
                f"{self.num_experts} experts" + (f"; {parts}" if parts else "") + ")")

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """The widget where widgets render, with a PNG grid and a text summary as fallbacks."""
        bundle: dict[str, Any] = {"text/plain": repr(self)}
        if self._n:
            try:
                buffer = io.BytesIO()
                self.figure().savefig(buffer, format="png", dpi=80)
                bundle["image/png"] = buffer.getvalue()
            except ImportError:
                pass
        try:
            widget = self.view()._repr_mimebundle_(include=include, exclude=exclude)
        except ImportError:
            return bundle
        data = widget[0] if isinstance(widget, tuple) else widget  # ipywidgets: (data, metadata)
        bundle.update({key: value for key, value in (data or {}).items() if key != "text/plain"})
        return bundle


class Recorder:
    """Collects a turn's routing token by token for the engine; `finish` labels it for the session.

    `routing` is the live record from the start, so a view can show it while tokens stream.
    Engines that know the model's expert count set `num_experts` (otherwise it is inferred).
    """

    def __init__(self, num_experts: int | None = None) -> None:
        self.routing = Routing(num_experts=num_experts)
        self._cursor = 0

    def begin(self) -> None:
        """A new engine call starts: its prompt repeats the turn so far, which is recorded once."""
        self._cursor = 0

    @property
    def tokens(self) -> list[int]:
        """The ids recorded so far (prompt, then generated), to label them."""
        return self.routing.tokens.tolist()

    @property
    def num_experts(self) -> int:
        return self.routing.num_experts

    @num_experts.setter
    def num_experts(self, value: int | None) -> None:
        self.routing.num_experts = value

    def add(self, tokens: Sequence[int], experts: np.ndarray, weights: np.ndarray) -> None:
        """Record the routing of `tokens` (prompt positions, then each generated token, in order)."""
        if len(experts) != len(tokens):
            hint = (" The routers were not called: a fused MoE kernel (e.g. MXFP4 on GPU) may bypass them."
                    if len(experts) == 0 else "")
            raise ValueError(f"routing for {len(experts)} positions given with {len(tokens)} tokens.{hint}")
        tokens = list(tokens)
        have = self.routing.tokens[self._cursor: self._cursor + len(tokens)].tolist()
        same = next((i for i, (a, b) in enumerate(zip(have, tokens)) if a != b), len(have))
        if self._cursor + same < len(self.routing):  # the prompt differs from what was recorded
            self.routing.truncate(self._cursor + same)
        self._cursor += len(tokens)
        if same < len(tokens):
            self.routing.append(tokens[same:], experts[same:], weights[same:])

    def finish(self, labels: Sequence[str]) -> Routing:
        """Label every token (see `harmony.label_tokens`) and return the finished Routing."""
        self.routing.relabel(labels)
        return self.routing


def _normalise(counts: np.ndarray) -> np.ndarray:
    total = counts.sum(axis=-1, keepdims=True)
    return np.divide(counts, total, out=np.zeros(counts.shape), where=total > 0)


def _entropy(share: np.ndarray) -> np.ndarray:
    logs = np.log2(share, out=np.zeros(share.shape), where=share > 0)
    return -(share * logs).sum(axis=-1)


def _expert_colormap(num_experts: int) -> Any:
    """Distinct colours for expert ids; the same golden-ratio hue walk as the RoutingView."""
    from matplotlib.colors import ListedColormap, hsv_to_rgb

    ids = np.arange(max(num_experts, 1))
    hsv = np.stack([(ids * 0.618034) % 1.0, 0.55 + 0.25 * (ids % 3) / 2, 0.95 - 0.2 * ((ids // 3) % 3) / 2], axis=1)
    return ListedColormap(hsv_to_rgb(hsv))
