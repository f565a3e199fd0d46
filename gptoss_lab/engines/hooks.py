"""Forward hooks on the routers of an in-kernel gpt-oss model: record their choices, or change them.

`RouterHooks` records what every `GptOssTopKRouter` chose (the routing lab's capture);
`intervened(model, plan)` makes the routers choose differently while it is active (disabled experts,
forced experts, another top-k): the mechanics behind `gptoss_lab.routing.interventions`.
torch is imported only inside the functions that run the model.
"""
from __future__ import annotations

import contextlib
import inspect
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

EMPTY = -1  # the expert id of a slot an intervention left empty (`disable(..., replace=False)`): no expert runs there
_UNDER_INTERVENTION: weakref.WeakKeyDictionary[Any, dict[int, Any]] = weakref.WeakKeyDictionary()  # model -> its plan


def routers(model: Any) -> list[Any]:
    """The model's `GptOssTopKRouter` modules in layer order; a one-line error when it has none."""
    from .checkpoint import routing_visible

    found = [m for m in model.modules() if type(m).__name__ == "GptOssTopKRouter"]
    if not found:
        raise ValueError("this model has no GptOssTopKRouter modules, so there is no routing to record or change")
    hidden = routing_visible(model)
    if hidden:
        raise ValueError(f"the routers of this model are bypassed, so its routing cannot be seen or changed: {hidden}")
    return found


class RouterHooks:
    """Forward hooks on every `GptOssTopKRouter` of a model (layer order), recording its choices.

    Use as a context manager around forward passes; `take()` returns what the routers returned since
    the last call (one row per token the model saw, batch rows one after the other): the softmax gate
    weights over the top-k logits and the expert ids, exactly as the model routed them (a slot whose
    gate weight is 0, an expert disabled with `replace=False`, is recorded empty: -1).

    Only models whose MoE layers call their router module are seen: transformers' `GptOssMLP` does,
    but on GPU with MXFP4 weights the hub "MegaBlocksMoeMLP" kernel (and other fused MoE kernels)
    may replace the layer's forward and route internally, bypassing the router. Then `take()` finds
    nothing and `Recorder.add` raises; load the model without those kernels to see its routing.
    """

    def __init__(self, model: Any) -> None:
        self._routers = routers(model)
        self.layers = len(self._routers)
        self.num_experts: int = int(self._routers[0].num_experts)
        self.top_k: int = int(self._routers[0].top_k)
        self._captured: list[list[tuple[Any, Any]]] = [[] for _ in self._routers]
        self._handles: list[Any] = []

    def __enter__(self) -> RouterHooks:
        try:
            for layer, router in enumerate(self._routers):
                self._handles.append(router.register_forward_hook(self._hook(layer)))
        except BaseException:  # a Ctrl-C between two: `with` calls no __exit__, and the first hooks recorded for good
            self.__exit__()
            raise
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

    def take(self, tokens: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(experts int16 [n, layers, k], weights float32 [n, layers, k]) routed since the last take; of its first
        `tokens` tokens only, where given: a forward that failed half-way left the routing of its token in the
        layers before the failure, which is dropped."""
        import torch

        captured, self._captured = self._captured, [[] for _ in self._routers]
        counts = [sum(indices.shape[0] for indices, _ in caps) for caps in captured]
        if tokens is not None and min(counts) >= tokens:
            counts = [tokens] * len(counts)
        if not any(counts):
            k = self.top_k
            return np.zeros((0, len(counts), k), np.int16), np.zeros((0, len(counts), k), np.float32)
        if len(set(counts)) != 1:
            raise RuntimeError(f"routers saw different numbers of tokens per layer: {counts}")
        widths = {indices.shape[-1] for caps in captured for indices, _ in caps}
        width = max(widths)  # an intervention may give some layers another top-k: pad with -1 / 0
        n = counts[0]
        experts = torch.stack([torch.cat([_pad(i, width, -1) for i, _ in caps])[:n] for caps in captured], dim=1)
        weights = torch.stack([torch.cat([_pad(w, width, 0) for _, w in caps])[:n] for caps in captured], dim=1)
        experts = experts.masked_fill(weights == 0, -1)  # no gate weight, no expert (disabled with replace=False)
        return experts.to(torch.int16).cpu().numpy(), weights.float().cpu().numpy()


def _pad(tensor: Any, width: int, value: float) -> Any:
    """`tensor` [n, k] widened to [n, width] with `value` (k < width only under a top-k intervention)."""
    import torch

    if tensor.shape[-1] == width:
        return tensor
    return torch.nn.functional.pad(tensor, (0, width - tensor.shape[-1]), value=value)


def model_of(target: Any) -> tuple[Any, Any]:
    """(engine or None, torch model) of a Session, a LocalEngine or a transformers GptOss model."""
    if callable(getattr(target, "modules", None)):
        return None, target
    engine = getattr(target, "engine", target)  # a Session holds its engine
    model = getattr(engine, "model", None)
    if not callable(getattr(model, "modules", None)):
        name = getattr(engine, "name", type(engine).__name__)
        raise ValueError(f"this needs a gpt-oss model in this kernel, and {name} ({type(engine).__name__}) "
                         f"has none: load one here (`%gptoss load tiny`, Session.load(...))")
    return engine, model


# ---------------------------------------------------------------- interventions


@dataclass(frozen=True)
class LayerEdit:
    """How one layer's router is changed: experts it may not choose, experts it must choose, its top-k.

    `replace=True`: a disabled expert's place goes to the router's next choice (its logit is -inf
    before the top-k). `replace=False`: the slot stays empty (expert `EMPTY`, gate weight 0, not computed)
    and the remaining gate weights are renormalised (the token uses fewer experts).
    """

    disabled: frozenset[int] = frozenset()
    forced: frozenset[int] = frozenset()
    top_k: int | None = None
    replace: bool = True

    def check(self, layer: int, num_experts: int, top_k: int) -> None:
        """One-line errors for edits that cannot apply to a router of `num_experts` and `top_k`."""
        k = self.top_k or top_k
        if not num_experts:  # "layer 0 has experts 0..-1", "top-k must be between 1 and 0"
            raise ValueError(f"layer {layer} has no experts, so its routing cannot be changed")
        bad = sorted(e for e in self.disabled | self.forced if not 0 <= e < num_experts)
        if bad:
            raise ValueError(f"layer {layer} has experts 0..{num_experts - 1}: there is no expert {bad[0]}")
        if not 1 <= k <= num_experts:
            raise ValueError(f"top-k must be between 1 and {num_experts} (the experts per layer), not {k}")
        if self.disabled & self.forced:
            raise ValueError(f"layer {layer}: expert {min(self.disabled & self.forced)} is both disabled and forced")
        if len(self.forced) > k:
            raise ValueError(f"layer {layer}: {len(self.forced)} forced experts do not fit in its top-{k}")
        if self.replace and num_experts - len(self.disabled) < k:
            raise ValueError(f"layer {layer}: disabling {len(self.disabled)} of {num_experts} experts "
                             f"leaves fewer than its top-{k}")

    def route(self, logits: Any, top_k: int) -> tuple[Any, Any]:
        """(gate weights [n, k'], expert ids [n, k']) for router logits [n, experts] under this edit."""
        import torch

        k = self.top_k or top_k
        choose = logits.float()
        if self.disabled and self.replace:
            choose = choose.index_fill(-1, _ids(self.disabled, logits), float("-inf"))
        if self.forced:
            choose = choose.index_fill(-1, _ids(self.forced, logits), float("inf"))
        _, indices = torch.topk(choose, k, dim=-1)
        values = logits.gather(-1, indices).float()  # the weights come from the router's own logits
        empty = torch.isin(indices, _ids(self.disabled, logits)) if self.disabled and not self.replace else None
        if empty is not None:
            values = values.masked_fill(empty, float("-inf"))
            indices = indices.masked_fill(empty, EMPTY)  # no expert: `intervened` has the experts compute none there
        scores = torch.nan_to_num(torch.softmax(values, dim=-1), nan=0.0)  # all disabled: no expert
        if self.forced or (self.disabled and not self.replace):
            # slots by gate weight, as the router's own top-k orders them: a forced expert stood in slot 0 with the
            # smaller weight, and a disabled one's empty slot there, which every "top-1" analysis reads as the first
            order = torch.argsort(scores, dim=-1, descending=True, stable=True)
            scores, indices = scores.gather(-1, order), indices.gather(-1, order)
        return scores.to(logits.dtype), indices


def _ids(experts: frozenset[int], like: Any) -> Any:
    import torch

    return torch.tensor(sorted(experts), dtype=torch.long, device=like.device)


def check_plan(model: Any, plan: Mapping[int, LayerEdit]) -> dict[int, LayerEdit]:
    """`plan` with its layers counted from 0 (a negative one from the last, as every `layer` of the routing lab: -1
    was refused as "no layer -1"), or a one-line refusal of layers, experts or a top-k this model does not have."""
    from ..routing.analysis import layer_index  # not at the top: the routing lab imports this module

    found = routers(model)
    checked: dict[int, LayerEdit] = {}
    for layer, edit in plan.items():
        index = layer_index(layer, len(found), "this model")
        if index in checked:
            raise ValueError(f"layers {index} and {layer} of this plan are the same layer: give it one edit")
        edit.check(index, int(found[index].num_experts), int(found[index].top_k))
        checked[index] = edit
    return checked


@contextmanager
def intervened(model: Any, plan: Mapping[int, LayerEdit]) -> Iterator[None]:
    """While active, the routers of the layers in `plan` choose as their `LayerEdit` says.

    The hooks run before any other forward hook on the routers (`RouterHooks` records the changed
    routing, which is what the experts computed with). Refuses a second intervention on the same
    model at the same time: combine them into one plan instead.
    """
    plan = check_plan(model, plan)
    if model in _UNDER_INTERVENTION:
        raise RuntimeError("this model is already under an intervention: combine them (a | b) and apply one")
    found = routers(model)
    experts = _experts_of(model)
    handles: list[Any] = []
    _UNDER_INTERVENTION[model] = dict(plan)
    try:  # the hooks are put on inside it: a Ctrl-C between two left the first ones on for good
        for layer, edit in plan.items():
            handles.append(found[layer].register_forward_hook(_edit_hook(edit, int(found[layer].top_k)), prepend=True))
            if edit.disabled and not edit.replace:
                handles.extend(_filled_slots_only(experts[found[layer]]))
        yield
    finally:
        for handle in handles:
            handle.remove()
        _UNDER_INTERVENTION.pop(model, None)


def _experts_of(model: Any) -> dict[Any, Any]:
    """Each router's experts module (the MoE layer's `experts`, which it dispatches to)."""
    return {layer.router: layer.experts for layer in model.modules()
            if type(getattr(layer, "router", None)).__name__ == "GptOssTopKRouter" and hasattr(layer, "experts")}


def _filled_slots_only(experts: Any) -> list[Any]:
    """Hooks that have `experts` compute each token's filled slots only, one (token, expert) pair a row, summed back
    per token: an emptied slot's expert ran on the token at gate weight 0, and its NaN (corrupted weights) made the
    token NaN through 0 * NaN. Calls with no empty slot run as they are. Returns the hooks' handles.

    The experts' `forward(hidden_states, router_indices, routing_weights)` may be called with these by position or by
    name: the hooks read and rewrite them through its signature."""
    signature = inspect.signature(experts.forward)
    hidden_name, indices_name, weights_name = list(signature.parameters)[:3]
    rewritten: list[tuple[Any, Any] | None] = []  # per call in flight: (token of each row, the output's shape)

    def before(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        call = signature.bind(*args, **kwargs)
        hidden, indices, weights = (call.arguments[name] for name in (hidden_name, indices_name, weights_name))
        filled = indices != EMPTY
        if bool(filled.all()):
            rewritten.append(None)
            return None
        tokens, slots = filled.nonzero(as_tuple=True)
        rewritten.append((tokens, hidden.shape))
        call.arguments.update({hidden_name: hidden[tokens], indices_name: indices[tokens, slots, None],
                               weights_name: weights[tokens, slots, None]})
        return call.args, call.kwargs

    def after(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> Any:
        call = rewritten.pop() if rewritten else None
        if call is None:
            return None
        tokens, shape = call
        return output.new_zeros(shape).index_add_(0, tokens, output)

    return [experts.register_forward_pre_hook(before, prepend=True, with_kwargs=True),
            experts.register_forward_hook(after, prepend=True, with_kwargs=True)]


def intervention_on(model: Any) -> dict[int, LayerEdit] | None:
    """The plan its routers choose by now (None: as trained): a KV cache computed under another plan is stale."""
    return _UNDER_INTERVENTION.get(model)


def _edit_hook(edit: LayerEdit, top_k: int) -> Callable[..., tuple[Any, Any, Any]]:
    def hook(module: Any, args: Any, output: tuple[Any, Any, Any]) -> tuple[Any, Any, Any]:
        logits = output[0]
        scores, indices = edit.route(logits, top_k)
        return logits, scores, indices

    return hook


def teacher_forced(model: Any, ids: list[int], positions: list[int],
                   plan: Mapping[int, LayerEdit] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One forward pass over `ids` (with `plan` applied): the log-probability of `ids[p]` given
    `ids[:p]` for each p in `positions` (p ≥ 1), and the routing of every position (experts, weights).
    The vocabulary projection runs on a few hundred positions at a time (bounded memory)."""
    import torch

    if any(not 1 <= p < len(ids) for p in positions):
        raise ValueError(f"positions must be between 1 and {len(ids) - 1} (each is predicted from the ones before)")
    from .checkpoint import fit_experts

    fit_experts(model)
    device = model.get_input_embeddings().weight.device
    with contextlib.ExitStack() as stack:
        if plan:
            stack.enter_context(intervened(model, plan))
        hooks = stack.enter_context(RouterHooks(model))
        stack.enter_context(torch.inference_mode())
        hidden = model.model(input_ids=torch.tensor([ids], dtype=torch.long, device=device), use_cache=False)
        experts, weights = hooks.take()
        chosen = []
        for start in range(0, len(positions), 256):
            part = positions[start:start + 256]
            before = torch.tensor([p - 1 for p in part], dtype=torch.long, device=device)
            logprobs = torch.log_softmax(model.lm_head(hidden.last_hidden_state[0, before]).float(), dim=-1)
            targets = torch.tensor([ids[p] for p in part], dtype=torch.long, device=logprobs.device)
            chosen.append(logprobs.gather(-1, targets[:, None])[:, 0].cpu().numpy().astype(np.float64))
    return (np.concatenate(chosen) if chosen else np.zeros(0)), experts, weights
