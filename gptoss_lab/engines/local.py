"""LocalEngine: a gpt-oss checkpoint in this process, run with transformers.

The KV cache lives between calls, so a follow-up turn only computes the tokens after the longest
prefix it shares with what is cached. torch and transformers are imported only when used.
"""
from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from .base import EngineError, Sampling

_HUB_ID = re.compile(r"[A-Za-z0-9_][\w.-]*(/[\w.-]+)?")
_HUB_KW = ("revision", "cache_dir", "token", "subfolder", "local_files_only")
_MULTI_DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")
_MXFP4_BYTES = 4.25 / 8  # 4-bit values plus one 8-bit scale per block of 32


class LoadError(EngineError):
    """A checkpoint could not be loaded; the message says why and what to do, in one line."""


class LocalEngine:
    """A GptOss model in this process: streams tokens with a KV cache kept between calls.

    Each `stream` call reuses the longest common prefix of its prompt with the cached tokens
    (`last_prefill` tells how many prompt tokens had to be computed). Sliding-window layers keep
    their past states so the cache can go back to any earlier position exactly.
    """

    def __init__(self, model: Any, *, name: str | None = None) -> None:
        self.model = model.eval()
        self.config = model.config
        self.name = name or str(getattr(self.config, "_name_or_path", "") or "gpt-oss").rstrip("/").rsplit("/", 1)[-1]
        self.default_sampling = _default_sampling(getattr(model, "generation_config", None))
        self.prefill_chunk = 2048  # prompt tokens per forward: bounds the attention memory of long prompts
        self.last_prefill = 0
        self._streams = 0  # stream calls started: only the latest may still touch the cache
        self._device = model.get_input_embeddings().weight.device
        self.reset()

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        *,
        device: str | None = None,
        dtype: Any = None,
        device_map: Any = None,
        progress: bool = True,
        **kw: Any,
    ) -> LocalEngine:
        """Load "tiny", a local checkpoint folder or a hub id; refuse early, in one line, what can't work."""
        source, name, hub = _resolve(name_or_path)
        hub_kw = {k: kw[k] for k in _HUB_KW if k in kw}
        if hub and not _hub_reachable():
            kw["local_files_only"] = hub_kw["local_files_only"] = True
        config = _load_config(source, name_or_path, hub, hub_kw)

        import torch
        from transformers import AutoModelForCausalLM

        dtype = getattr(torch, dtype) if isinstance(dtype, str) and dtype != "auto" else dtype
        target = device_map if device_map is not None else (device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if str(target).startswith("cuda") and not torch.cuda.is_available():
            raise LoadError(f"{target} was asked for, but torch {torch.__version__} sees no CUDA GPU here: use device='cpu'")
        need, how = _weight_bytes(config, dtype, target, kw)
        free = _free_bytes(target)
        if free is not None and need > free:
            raise LoadError(f"{name} needs about {_size(need)} for its weights ({how}) but only {_size(free)} "
                            f"is free on {target}: free some memory or choose another device or dtype")
        if progress:
            print(f"Loading {name} on {target} ...", flush=True)
        if str(target) != "cpu":  # a plain load lands on the CPU; elsewhere transformers needs a device map
            kw["device_map"] = target
        try:
            with _progress_bars(progress):
                model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype or "auto", **kw)
        except (OSError, ValueError, ImportError) as error:
            if kw.get("local_files_only") and hub:
                raise LoadError(_offline_message(name_or_path)) from None
            raise LoadError(f"could not load {name_or_path}: {_first_line(error)}") from None
        return cls(model, name=name)

    def reset(self) -> None:
        """Forget the KV cache (and the routing kept with it), e.g. to free its memory."""
        self._cache: Any = None
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
    ) -> Iterator[int]:
        """Yield generated ids until a stop token (yielded too) or `sampling.max_new_tokens`.

        With a `recorder`, it gets the expert routing of every prompt position and then of each
        generated token. Closing the iterator early (or Ctrl-C) leaves the cache consistent.
        """
        import torch

        prompt = [int(t) for t in prompt]
        if not prompt:
            raise ValueError("the prompt is empty")
        return torch.inference_mode()(self._generate)(prompt, frozenset(stop), sampling, recorder)

    def _generate(self, prompt: list[int], stop: frozenset[int], sampling: Sampling, recorder: Any) -> Iterator[int]:
        """The decode loop of `stream` (run under inference mode, one token per resume)."""
        from transformers import DynamicCache

        if self._cache is None:
            self._cache = DynamicCache(config=self.config)
            self._cache.activate_past_recording()
        self._streams += 1
        current = self._streams
        reuse = self._common_prefix(prompt, routed=recorder is not None)
        self._rollback(reuse)
        self.last_prefill = len(prompt) - reuse
        pick = self._sampler(sampling, prompt)
        with _router_hooks(self.model, recorder) as hooks:
            if hooks is not None:
                if hasattr(recorder, "num_experts"):
                    recorder.num_experts = self.config.num_local_experts
                if reuse:
                    recorder.add(prompt[:reuse], *self._routes_upto(reuse))
            logits = self._forward(prompt[reuse:], hooks, recorder)
            for step in range(sampling.max_new_tokens):
                token = pick(logits)
                done = token in stop or step + 1 == sampling.max_new_tokens
                try:
                    yield token
                except GeneratorExit:
                    done = True
                    raise
                finally:
                    if done and hooks is not None and current == self._streams:
                        self._forward([token], hooks, recorder)  # so the last token's routing is recorded too
                if done:
                    return
                if current != self._streams:
                    raise RuntimeError("this stream was left behind by a newer stream call on the same engine")
                logits = self._forward([token], hooks, recorder)

    def _forward(self, tokens: list[int], hooks: Any, recorder: Any) -> Any:
        """Run `tokens` through the model onto the cache; return the float32 logits [1, vocab] of the last one."""
        import torch

        start = len(self._tokens)
        for i in range(0, len(tokens), self.prefill_chunk):
            chunk = tokens[i:i + self.prefill_chunk]
            ids = torch.tensor([chunk], dtype=torch.long, device=self._device)
            out = self.model(input_ids=ids, cache=self._cache, use_cache=True, logits_to_keep=1)
            # Only now is the chunk cached in every layer; a forward stopped half-way (Ctrl-C) leaves
            # some layers longer than `_tokens`, and the next call's `_rollback` cuts them back.
            self._tokens.extend(chunk)
        if hooks is not None:
            experts, weights = hooks.take()
            recorder.add(tokens, experts, weights)  # first: it refuses routing that does not cover the tokens
            if self._routed == start:
                self._routes.append((experts, weights))
                self._routed += len(tokens)
        return out.logits[:, -1, :].float()

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
        for layer in self._cache.layers:
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
        from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

        temperature = sampling.temperature if sampling.temperature is not None else self.default_sampling.temperature
        top_p = sampling.top_p if sampling.top_p is not None else self.default_sampling.top_p
        processors = LogitsProcessorList([sampling.logits_processor] if sampling.logits_processor is not None else [])
        greedy = not temperature
        if not greedy:
            if temperature != 1.0:
                processors.append(TemperatureLogitsWarper(temperature))
            if top_p is not None and top_p < 1.0:
                processors.append(TopPLogitsWarper(top_p))
        device = self.model.get_output_embeddings().weight.device  # where the logits are
        generator = None
        if not greedy and sampling.seed is not None:
            generator = torch.Generator(device=device).manual_seed(sampling.seed)

        def draw(logits: Any) -> int:
            if greedy:
                return int(logits.argmax(-1))
            return int(torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator))

        if not processors:
            return draw
        ids = torch.empty((1, len(prompt) + sampling.max_new_tokens), dtype=torch.long, device=device)
        ids[0, :len(prompt)] = torch.tensor(prompt)
        length = len(prompt)

        def pick(logits: Any) -> int:
            nonlocal length
            token = draw(processors(ids[:, :length], logits))
            ids[0, length] = token
            length += 1
            return token

        return pick


def _default_sampling(generation_config: Any) -> Sampling:
    """The checkpoint's own sampling defaults (generation_config.json); greedy when it does not sample."""
    if generation_config is None or not generation_config.do_sample:
        return Sampling(temperature=0.0)
    temperature, top_p = generation_config.temperature, generation_config.top_p
    return Sampling(temperature=1.0 if temperature is None else temperature, top_p=1.0 if top_p is None else top_p)


def _resolve(name_or_path: str | Path) -> tuple[str, str, bool]:
    """(what to give transformers, short model name, whether it is a hub id) for a user's model name."""
    if str(name_or_path) == "tiny":
        from ..tiny import CHECKPOINT

        if not (CHECKPOINT / "config.json").is_file():
            raise LoadError(f"the bundled gpt-oss-tiny checkpoint is missing from {CHECKPOINT}: reinstall gptoss_lab")
        return str(CHECKPOINT), "gpt-oss-tiny", False
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise LoadError(f"{path} has no config.json, so it is not a transformers checkpoint folder")
        return str(path), path.resolve().name, False
    if path.exists():
        raise LoadError(f"{path} is a file: give the checkpoint folder")
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or not _HUB_ID.fullmatch(text):
        raise LoadError(f"checkpoint folder not found: {path}")
    return text, text.rsplit("/", 1)[-1], True


def _hub_reachable() -> bool:
    """Whether the Hugging Face Hub answers (quickly: transformers would retry for half a minute)."""
    from huggingface_hub import constants, is_offline_mode

    if is_offline_mode():
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (80 if url.scheme == "http" else 443)), timeout=3).close()
    except OSError:
        return False
    return True


def _offline_message(name: str | Path) -> str:
    return (f"{name} is not a folder on this machine, not in the Hugging Face cache, and the Hub cannot be reached "
            f"(no network, or HF_HUB_OFFLINE is set): download it where there is network "
            f"(`hf download {name} --local-dir DIR`) and load the folder DIR instead")


def _load_config(source: str, name: str | Path, hub: bool, hub_kw: dict[str, Any]) -> Any:
    """The checkpoint's config, after checking that it is a gpt-oss model."""
    from transformers import AutoConfig, PretrainedConfig

    try:
        raw, _ = PretrainedConfig.get_config_dict(source, **hub_kw)
    except (OSError, json.JSONDecodeError) as error:
        if hub and hub_kw.get("local_files_only"):
            raise LoadError(_offline_message(name)) from None
        raise LoadError(f"could not read the config of {name}: {_first_line(error)}") from None
    model_type = raw.get("model_type")
    if model_type != "gpt_oss":
        raise LoadError(f"{name} is a {model_type or 'unknown'} model, not gpt-oss (config model_type must be 'gpt_oss')")
    return AutoConfig.from_pretrained(source, **hub_kw)


def _weight_bytes(config: Any, dtype: Any, target: Any, kw: dict[str, Any]) -> tuple[int, str]:
    """Bytes the weights will take once loaded, and how that was counted (dtype, MXFP4 experts)."""
    import torch
    from transformers import AutoModelForCausalLM

    if dtype in (None, "auto"):
        dtype = getattr(config, "dtype", None) or torch.float32
        dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    itemsize = torch.empty((), dtype=dtype).element_size()
    packed = _mxfp4_stays_packed(config, target, kw)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    total = 0.0
    for name, param in skeleton.named_parameters():
        expert = packed and name.endswith(("experts.gate_up_proj", "experts.down_proj"))
        total += param.numel() * (_MXFP4_BYTES if expert else itemsize)
    how = str(dtype).removeprefix("torch.") + (", MXFP4 experts" if packed else "")
    return int(total), how


def _mxfp4_stays_packed(config: Any, target: Any, kw: dict[str, Any]) -> bool:
    """Whether transformers will keep MXFP4 expert weights packed (it dequantizes them where its kernels can't run)."""
    quant = getattr(config, "quantization_config", None) or {}
    quant = quant if isinstance(quant, dict) else quant.to_dict()
    if quant.get("quant_method") != "mxfp4" or quant.get("dequantize"):
        return False
    import torch
    from transformers.utils.import_utils import is_kernels_available, is_triton_available

    if str(target).startswith("cpu"):
        return bool(kw.get("use_kernels")) and is_triton_available("3.5.0") and is_kernels_available()
    return (torch.cuda.is_available() and torch.cuda.get_device_capability() >= (7, 5)
            and is_triton_available("3.4.0") and is_kernels_available())


def _free_bytes(target: Any) -> int | None:
    """Free memory where the weights will go: RAM, one GPU, or all of them for a multi-device map."""
    import torch

    if isinstance(target, dict):
        return None
    text = str(target)
    gpus = range(torch.cuda.device_count()) if torch.cuda.is_available() else range(0)
    if text in _MULTI_DEVICE_MAPS:
        return _available_ram() + sum(torch.cuda.mem_get_info(i)[0] for i in gpus)
    if text.startswith("cuda") or text.isdigit():
        return torch.cuda.mem_get_info(torch.device(int(text) if text.isdigit() else text))[0]
    return _available_ram()


def _available_ram() -> int:
    """MemAvailable from /proc/meminfo (what can be allocated without swapping), else free pages."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os

    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def _progress_bars(enabled: bool) -> Iterator[None]:
    """transformers' loading progress bars as asked: on by default, off with progress=False."""
    if enabled:
        yield
        return
    from transformers.utils import logging

    was = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            logging.enable_progress_bar()


def _router_hooks(model: Any, recorder: Any) -> Any:
    """RouterHooks on the model when routing is recorded, else nothing."""
    if recorder is None:
        return nullcontext()
    from ..routing import RouterHooks

    return RouterHooks(model)


def _size(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
