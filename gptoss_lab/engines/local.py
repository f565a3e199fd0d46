"""LocalEngine: a gpt-oss checkpoint in this process, run with transformers.

The KV cache lives between calls, so a follow-up turn only computes the tokens after the longest
prefix it shares with what is cached. On a CPU, plain GptOss models run through `KVForward` (a
lean forward with a static KV store and fused chunked attention, see `fastpath`); other models
(GPUs, MXFP4 kernels, hub kernels) run through transformers' forward with a DynamicCache.
torch and transformers are imported only when used.
"""
from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from . import checkpoint, fastpath
from .base import EngineError, Sampling
from ..harmony import FormatGuard
from ..tools.containment import _never
from ..widgets import say, transformers_bars
from .checkpoint import LoadError

__all__ = ["LocalEngine", "LoadError"]

ROUTING_BATCH = 16  # generated tokens whose routing is taken from the hooks at once (a take costs ~0.1 ms)


class LocalEngine:
    """A GptOss model in this process: streams tokens with a KV cache kept between calls.

    Each `stream` call reuses the longest common prefix of its prompt with the cached tokens
    (`last_prefill` tells how many prompt tokens had to be computed); weights changed in place or
    replaced since (a training step, an edited expert) make it start again, but a change through
    a parameter's `.data` cannot be seen: call `reset()` after one. Sliding-window layers keep
    their past states so the cache can go back to any earlier position exactly. `fast=False`
    (or a model `fastpath` does not support; `slow_path_reason` says why) uses transformers' forward.
    """

    def __init__(self, model: Any, *, name: str | None = None, fast: bool = True) -> None:
        self.model = model.eval()
        self.config = model.config
        self.name = name or str(getattr(self.config, "_name_or_path", "") or "gpt-oss").rstrip("/").rsplit("/", 1)[-1]
        # what `from_pretrained` was given (the name or path, and the options of `checkpoint.LOAD_OPTIONS`), so that a
        # message can write the load again; None for a model made in Python
        self.loaded_from: tuple[str, dict[str, Any]] | None = None
        self.default_sampling = _default_sampling(getattr(model, "generation_config", None))
        self.context_window: int | None = getattr(self.config, "max_position_embeddings", None)  # tokens
        # gpt-oss-tiny (and what its training script makes) learned with earlier turns' tool calls in the prompt
        self.keeps_past_tool_calls = getattr(self.config, "gptoss_lab_keeps_past_tool_calls", False) is True
        self.prefill_chunk = 2048
        self.last_prefill = 0
        self._streams = 0  # stream calls started and resets: only the latest stream may still touch the cache
        self._lock = threading.RLock()  # one thread computes at a time (threads sharing the engine)
        self._fast_asked = fast
        self.reset()

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        *,
        device: str | None = None,
        dtype: Any = None,
        device_map: Any = None,
        dequantize: bool = False,
        progress: bool = True,
        fast: bool = True,
        **kw: Any,
    ) -> LocalEngine:
        """Load "tiny", a local checkpoint folder or a hub id; refuse early, in one line, what can't work.

        MXFP4 experts stay packed where transformers' kernels run, else (or with `dequantize=True`)
        they load as `dtype`, and a one-line note says so and what it costs. On a CPU the default
        dtype is float32 (bf16 matmuls are emulated on most CPUs) and torch leaves one core free
        (see `share_cores`); the load line says both.
        """
        if isinstance(dtype, str) and dtype != "auto":   # a misspelt dtype refused before seconds of imports
            checkpoint.dtype_name(None, dtype)
        if progress and "transformers" not in sys.modules:   # in a new kernel, seconds with nothing shown
            say("Starting torch and transformers (seconds, once per kernel) ...", flush=True)
        plan = checkpoint.plan_load(name_or_path, device=device, dtype=dtype, device_map=device_map,
                                    dequantize=dequantize, **kw)
        from safetensors import SafetensorError
        from transformers import AutoModelForCausalLM

        how = plan.how + (", the CPU default" if dtype is None and plan.target == "cpu" and plan.how == "float32" else "")
        if plan.target == "cpu":
            threads = share_cores()
            how += f", {threads} torch thread{'s' * (threads > 1)}"
        if progress:
            say(f"Loading {plan.source.name} on {plan.target} ({how}, {checkpoint.size(plan.weights)}) ...", flush=True)
            if plan.note:
                say(f"Note: {plan.note}.", flush=True)
        interrupted = False
        try:
            with transformers_bars(progress), checkpoint.quiet_mxfp4_warnings(plan.note is not None), \
                    checkpoint.no_unpickling(plan.source.path):
                model, info = AutoModelForCausalLM.from_pretrained(plan.source.path, output_loading_info=True, **plan.kwargs)
        except (OSError, ValueError, TypeError, ImportError, RuntimeError, SafetensorError) as error:
            raise plan.failed(error) from None  # bad files, out of memory, a quantization_config it cannot build
        except KeyboardInterrupt:
            interrupted = True
        if interrupted:  # raised anew here: the interrupted load's frames held the half-loaded model
            raise KeyboardInterrupt
        try:   # the scan for NaN reads every weight: Ctrl-C there is raised anew too, the model let go
            wrong = (LoadError(f"{plan.source.path} cannot be loaded: the weight {min(info['missing_keys'])} is missing "
                               "from its .safetensors files")
                     if info["missing_keys"]  # transformers filled them with random values: another model than asked for
                     else checkpoint.non_finite(model, plan.folder, plan.source.path, name_or_path))
        except KeyboardInterrupt:
            wrong, interrupted = None, True
        if wrong or interrupted:
            del model, info   # not kept alive by this frame in the error's traceback
            if interrupted:
                raise KeyboardInterrupt
            raise wrong
        engine = cls(model, name=plan.source.name, fast=fast)
        given = {"device": device, "device_map": device_map, "dtype": dtype, "dequantize": dequantize}
        engine.loaded_from = str(name_or_path), {k: v for k, v in given.items() if v is not None and v is not False}
        checkpoint.remember_loaded(model, engine.name, plan.folder or plan.source.path)
        if progress and plan.packed and (held := checkpoint.held_weights(model)):  # its own checks differ from the plan's
            say(f"Note: transformers dequantized the MXFP4 experts to {held[0]} after all: "
                f"{checkpoint.size(held[1])} of weights, not {checkpoint.size(plan.weights)}.", flush=True)
        if progress and (hidden := checkpoint.routing_visible(model)):
            say(f"Note: routing cannot be recorded on this model: {hidden}.", flush=True)
        return engine

    @property
    def prefill_chunk(self) -> int:
        """Prompt tokens per forward: bounds the attention memory of long prompts (the doctor sizes it)."""
        return self._prefill_chunk

    @prefill_chunk.setter
    def prefill_chunk(self, tokens: int) -> None:
        checkpoint.check_prefill_chunk(tokens)
        self._prefill_chunk = tokens

    @property
    def slow_path_reason(self) -> str | None:
        """Why the next turn runs through transformers' forward, not the lean one (None: the lean one), for the model
        as it is now: read before that turn (the doctor sizing the context), it said how the model was loaded."""
        return fastpath.unsupported(self.model) if self._fast_asked else "fast=False was asked for"

    @property
    def lm_head_copy(self) -> int:
        """Bytes of the lean forward's transposed copy of lm_head held now (0: none yet): memory the weights do not count."""
        return self._fast.head_bytes if self._fast is not None else 0

    @property
    def cache_bytes(self) -> int:
        """Bytes the KV cache holds now (the lean forward's store to its capacity, a cut cache's whole storage): memory
        the weights do not count."""
        if self._fast is not None:
            tensors = self._fast.store
        else:
            layers = self._cache.layers if self._cache is not None else ()
            tensors = [t for layer in layers if layer.is_initialized for t in (layer.keys, layer.values)]
        return sum({t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}.values())

    def _follow_model(self) -> None:
        """Take the model as it is now: its device, and the lean forward only where it runs it exactly (decided again
        when the weights change: after `model.to(torch.bfloat16)` the lean path's tokens differed from transformers')."""
        self._device = self.model.get_input_embeddings().weight.device
        checkpoint.fit_experts(self.model)
        if self.slow_path_reason is not None:
            self._fast = None
        elif self._fast is None:
            self._fast = fastpath.KVForward(self.model)

    def reset(self) -> None:
        """Forget the KV cache (and the routing kept with it), e.g. to free its memory, and what the lean forward
        derived from the weights (its copy of lm_head): after a change through a parameter's `.data`, unseen here.
        A stream started before it cannot go on (it decoded on from the emptied cache, its tokens silently wrong)."""
        with self._lock:
            self._streams += 1
            self._fast: fastpath.KVForward | None = None
            self._follow_model()
            self._forget()

    def _forget(self) -> None:
        """Forget the KV cache and the routing kept with it."""
        self._cache: Any = None
        self._made_with = self._made_now()  # what the cache was computed with
        if self._fast is not None:
            self._fast.reset()
        self._tokens: list[int] = []
        self._routes: list[tuple[np.ndarray, np.ndarray]] = []  # routing of positions [0, _routed)
        self._routed = 0

    def stream(
        self,
        prompt: Sequence[int],
        *,
        stop: Collection[int],
        sampling: Sampling = Sampling(),
        recorder: Any = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Iterator[int]:
        """Yield generated ids until a stop token (yielded too) or `sampling.max_new_tokens`.

        With a `recorder`, it gets the expert routing of every prompt position and then of each
        generated token. `should_stop` (the view's Stop) is asked between prefill chunks, so a long
        prompt does not hold Stop until its first token, and after each generated token; the stream
        then ends where it is. Closing the iterator early (or Ctrl-C) leaves the cache consistent.
        """
        import torch

        prompt = [int(t) for t in prompt]
        if not prompt:
            raise ValueError("the prompt is empty")
        return torch.inference_mode()(self._generate)(prompt, frozenset(stop), sampling, recorder,
                                                      should_stop or _never)

    def _generate(self, prompt: list[int], stop: frozenset[int], sampling: Sampling, recorder: Any,
                  should_stop: Callable[[], bool]) -> Iterator[int]:
        """The decode loop of `stream` (run under inference mode, one token per resume)."""
        from transformers import DynamicCache

        with ExitStack() as stack:
            with self._lock:  # held between this stream's yields only: a newer stream makes it stale, see below
                if self._made_now() != self._made_with:
                    self._follow_model()
                    self._forget()
                if self._cache is None and self._fast is None:
                    self._cache = DynamicCache(config=self.config)
                    self._cache.activate_past_recording()
                self._streams += 1
                current = self._streams
                reuse = self._common_prefix(prompt, routed=recorder is not None)
                self._rollback(reuse)
                self.last_prefill = len(prompt) - reuse
                pick = self._sampler(sampling, prompt)
                hooks = stack.enter_context(_router_hooks(self.model, recorder))
                unrecorded: list[int] = []  # computed tokens whose routing the hooks still hold

                def forward(tokens: list[int], *, record: bool = True, asking: Callable[[], bool] = _never) -> Any:
                    before = len(self._tokens)
                    try:
                        logits = self._forward(tokens, asking)
                    except BaseException:  # an error or a Ctrl-C half-way: the tokens computed keep their routing
                        done = unrecorded + tokens[: len(self._tokens) - before]
                        if hooks is not None and done:
                            self._record(done, hooks, recorder, failed=True)
                        raise
                    if logits is None:  # stopped between chunks: the hooks' partial routing goes with them
                        return None
                    if hooks is not None:
                        unrecorded.extend(tokens)
                        if record or len(unrecorded) >= ROUTING_BATCH:
                            self._record(unrecorded, hooks, recorder)
                            unrecorded.clear()
                    return logits

                if hooks is not None:
                    if hasattr(recorder, "num_experts"):
                        recorder.num_experts = self.config.num_local_experts
                    if reuse:
                        recorder.add(prompt[:reuse], *self._routes_upto(reuse))
                logits = forward(prompt[reuse:], asking=should_stop)
                if logits is None:
                    return
            for step in range(sampling.max_new_tokens):
                with self._lock:  # the logits may be a buffer that a newer stream's forward has written
                    self._owned_by(current)
                    token = pick(logits)
                done = token in stop or step + 1 == sampling.max_new_tokens
                try:
                    yield token
                    done = done or should_stop()
                except GeneratorExit:
                    done = True
                    raise
                finally:
                    if done and hooks is not None and current == self._streams:  # (a newer stream may hold the lock)
                        with self._lock:
                            if current == self._streams:
                                forward([token])  # so the last token's routing is recorded too
                if done:
                    return
                with self._lock:
                    self._owned_by(current)
                    logits = forward([token], record=False)

    def _owned_by(self, stream: int) -> None:
        """Refuse to go on with a stream that a newer `stream` call or a `reset()` replaced: the cache is not its own."""
        if stream != self._streams:
            raise RuntimeError("this stream was left behind by a newer stream call or a reset() of the same engine")

    def _made_now(self) -> tuple[Any, ...]:
        """The weights and the routing intervention a forward runs with now: a cache computed under an intervention
        applied to the model itself (not through this engine) was reused after it, and its positions under it."""
        from .hooks import intervention_on

        return self._weights_now(), intervention_on(self.model)

    def _weights_now(self) -> tuple[tuple[int, int, int], ...]:
        """Each parameter's and buffer's identity, storage and in-place version: changes when weights change.
        Offloaded weights (on "meta" between forwards, put back by accelerate's hooks) are left out, and
        tensors made under inference mode have no version to read."""
        from itertools import chain

        tensors = chain(self.model.parameters(), self.model.buffers())
        return tuple((id(t), t.data_ptr(), -1 if t.is_inference() else t._version)
                     for t in tensors if t.device.type != "meta")

    def _forward(self, tokens: list[int], should_stop: Callable[[], bool] = _never) -> Any:
        """Run `tokens` through the model onto the cache; return the float32 logits [1, vocab] of the last one,
        or None when `should_stop()` (asked before each chunk after the first) said yes."""
        import torch

        for i in range(0, len(tokens), self.prefill_chunk):
            if i and should_stop():
                return None
            chunk = tokens[i:i + self.prefill_chunk]
            if self._fast is not None:
                logits = self._fast(chunk)
            else:
                ids = torch.tensor([chunk], dtype=torch.long, device=self._device)
                logits = self.model(input_ids=ids, cache=self._cache, use_cache=True, logits_to_keep=1).logits[:, -1, :].float()
            # Only now is the chunk cached in every layer; a forward stopped half-way (Ctrl-C) leaves
            # some layers longer than `_tokens`, and the next call's `_rollback` cuts them back.
            self._tokens.extend(chunk)
        return logits

    def _record(self, tokens: list[int], hooks: Any, recorder: Any, *, failed: bool = False) -> None:
        """Hand the routing of the last computed `tokens` to the recorder, and keep it with the cache; after a forward
        that `failed` half-way, the routing its own token left in the layers before the failure is dropped."""
        start = len(self._tokens) - len(tokens)
        experts, weights = hooks.take(len(tokens) if failed else None)
        recorder.add(tokens, experts, weights)  # first: it refuses routing that does not cover the tokens
        if self._routed == start:
            self._routes.append((experts, weights))
            self._routed += len(tokens)

    def _common_prefix(self, prompt: list[int], *, routed: bool) -> int:
        """How many cached positions the prompt can reuse (never all of it: the last token gives the logits)."""
        limit = min(len(prompt) - 1, len(self._tokens), self._routed if routed else len(self._tokens))
        n = 0
        while n < limit and prompt[n] == self._tokens[n]:
            n += 1
        return n

    def _rollback(self, n: int) -> None:
        """Keep only the first `n` cached positions.

        `Cache.crop` would also trim sliding-window layers to their window, losing the states that
        an earlier branch point needs; these layers record their past, so slicing is exact.
        """
        del self._tokens[n:]
        if self._fast is not None:
            self._fast.truncate(n)
        for layer in self._cache.layers if self._cache is not None else ():
            if layer.is_initialized and layer.keys.shape[-2] > n:
                layer.keys, layer.values = layer.keys[..., :n, :], layer.values[..., :n, :]
            if layer.is_initialized and hasattr(layer, "cumulative_length"):
                layer.cumulative_length = layer.keys.shape[-2]
        if self._routed > n:
            self._routes = [self._routes_upto(n)]
            self._routed = n

    def _routes_upto(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(experts, weights) of the first `n` cached positions."""
        experts = np.concatenate([e for e, _ in self._routes])[:n]
        weights = np.concatenate([w for _, w in self._routes])[:n]
        return experts, weights

    def _sampler(self, sampling: Sampling, prompt: list[int]) -> Callable[[Any], int]:
        """A function from last-position logits to the next id: processors, then greedy or a seeded draw."""
        import torch
        from transformers import TopPLogitsWarper

        temperature = sampling.temperature if sampling.temperature is not None else self.default_sampling.temperature
        top_p = sampling.top_p if sampling.top_p is not None else self.default_sampling.top_p
        # called in turn, not through transformers' LogitsProcessorList, which inspects each one's signature at
        # every token (0.11 ms, about 5 % of a gpt-oss-tiny decode step on a 2-core CPU)
        processors = [p for p in (FormatGuard() if sampling.guard else None, sampling.logits_processor) if p is not None]
        greedy = not temperature or temperature < torch.finfo(torch.float32).tiny  # below it, it is greedy in effect
        if not greedy:
            if temperature != 1.0:
                processors.append(_tempered(temperature))
            if top_p is not None and top_p < 1.0:
                processors.append(TopPLogitsWarper(top_p))
        device = self.model.get_output_embeddings().weight.device  # where the logits are
        generator = None
        if not greedy and sampling.seed is not None:
            generator = torch.Generator(device=device).manual_seed(sampling.seed)

        def draw(logits: Any) -> int:
            if greedy:  # the first of equal maxima, as argmax, and faster over 201k logits
                return int(logits.max(-1).indices)
            return int(torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator))

        if not processors:
            return draw
        ids = torch.empty((1, len(prompt) + sampling.max_new_tokens), dtype=torch.long, device=device)
        ids[0, :len(prompt)] = torch.tensor(prompt)
        length = len(prompt)

        def pick(logits: Any) -> int:
            nonlocal length
            for processor in processors:
                logits = processor(ids[:, :length], logits)
            token = draw(logits)
            ids[0, length] = token
            length += 1
            return token

        return pick


_CHOSEN_THREADS: list[int] = []   # the count `use_threads` set: kept by every later load


def use_threads(threads: int | None) -> int:
    """Set torch's CPU threads to `threads` for the model loaded now and every later one (`%gptoss config
    threads=N`): `share_cores` keeps the choice, even at or above the core count. None (`threads=default`) sets
    the count a load picks again: OMP_NUM_THREADS where it is set, else all physical cores but one. Returns it."""
    import os

    import torch

    omp = os.environ.get("OMP_NUM_THREADS", "")
    default = int(omp) if omp.isdigit() and int(omp) > 0 else max(1, _physical_cores() - 1)
    torch.set_num_threads(threads if threads is not None else default)
    _CHOSEN_THREADS[:] = [threads] if threads is not None else []
    return torch.get_num_threads()


def _physical_cores() -> int:
    """This machine's physical CPU cores (its logical ones where psutil cannot tell)."""
    import os

    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def share_cores() -> int:
    """torch's CPU threads for the model: all physical cores but one (at least one), so Jupyter and
    the browser sharing the machine keep a core; a choice already made (OMP_NUM_THREADS, `use_threads`, or
    `torch.set_num_threads` below the default) is kept. Returns the count."""
    import os

    import torch

    cores = _physical_cores()
    chosen = torch.get_num_threads() in _CHOSEN_THREADS
    if "OMP_NUM_THREADS" not in os.environ and not chosen and torch.get_num_threads() >= cores:
        torch.set_num_threads(max(1, cores - 1))
    return torch.get_num_threads()


def _default_sampling(generation_config: Any) -> Sampling:
    """The checkpoint's own sampling defaults (generation_config.json); greedy when it does not sample."""
    if generation_config is None or not generation_config.do_sample:
        return Sampling(temperature=0.0)
    temperature, top_p = generation_config.temperature, generation_config.top_p   # an int (2) failed every turn
    return Sampling(temperature=1.0 if temperature is None else float(temperature),
                    top_p=1.0 if top_p is None else float(top_p))


def _tempered(temperature: float) -> Callable[[Any, Any], Any]:
    """A logits processor dividing by `temperature` once the largest logit is taken off (the same distribution):
    transformers' TemperatureLogitsWarper divides first, so a tiny temperature (1e-40, a checkpoint's sampling default
    or `%gptoss config`) made inf - inf = NaN in the softmax and every sampled turn failed."""
    return lambda ids, scores: (scores - scores.max(-1, keepdim=True).values) / temperature


def _router_hooks(model: Any, recorder: Any) -> Any:
    """RouterHooks on the model when routing is recorded, else nothing."""
    if recorder is None:
        return nullcontext()
    hidden = checkpoint.routing_visible(model)
    if hidden:  # before the first token, instead of a turn whose routing comes back empty
        raise EngineError(f"routing cannot be recorded on this model: {hidden}")
    from .hooks import RouterHooks

    return RouterHooks(model)
