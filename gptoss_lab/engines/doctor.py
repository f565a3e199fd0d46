"""The memory doctor: will a gpt-oss model fit here, in what form, with how much context — before any weight loads.

`doctor(model)` reads only the config (the public configs of gpt-oss-20b and gpt-oss-120b ship with
the package, so those answer offline), counts parameters and bytes with `engines.checkpoint`, looks
at this machine (device, free memory, whether transformers' MXFP4 kernels can run) and says it in
one line. The result is an object with fields, a text form and an HTML table.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from ..events import counted
from . import checkpoint
from .checkpoint import HEADROOM, KVCache, LoadError, Parameters, size

PACKAGES = ("torch", "transformers", "triton", "kernels", "accelerate")
_LEAST_BARE = 10**6  # a bare number of bytes below 1 MB is no machine's memory: "16" meant 16 GB
_MOST = 10**15       # 1 PB, more than any machine has: a larger memory= is a slip ("1e30 GB")
_UNITS = {"b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


@dataclass(frozen=True)
class Diagnosis:
    """What `doctor` found: the model's figures, this machine's, and the verdict (`str()` for text, HTML in notebooks)."""

    model: str
    parameters: Parameters
    layers: int
    experts: int
    top_k: int
    mxfp4_checkpoint: bool | None  # the checkpoint stores its experts in MXFP4 (None: a loaded model's is unreadable now)
    dequantized_to: str | None  # the dtype those MXFP4 experts load (loaded: were loaded) in unpacked; None: packed
    loaded: bool             # sized as loaded in this kernel, not as a load here would be
    mxfp4_bytes: int         # weights with MXFP4 experts
    bf16_bytes: int          # weights all in bfloat16 (what a fallback load takes)
    device: str
    device_name: str
    packages: dict[str, str | None]
    kernels: str | None      # None when the MXFP4 kernels are usable here, else why not
    kernels_assumed: bool    # the caller said whether they are (mxfp4_kernels=), not this machine
    load_bytes: int          # what loading it here takes
    load_how: str
    kv: KVCache
    prefill_chunk: int
    free: int | None
    free_assumed: bool
    free_counts_loaded: bool  # the model is loaded on this device: its weights count as free for it
    max_context: int
    scratch_bytes: int       # the attention's working memory at that context
    context_limit: int
    fits: bool
    verdict: str
    free_given: str = ""     # memory= as the caller wrote it ("16 GiB" shows as 17.2 GB: said beside it)
    not_float32: str = ""    # why a CPU load gets a slower dtype than float32 (as the load's note says it)
    lean: bool = False       # the lab's CPU forward runs it (fastpath): no score matrix, a KV store grown by doubling
    head_copy: int = 0       # the lean forward's transposed copy of lm_head, sized beside the weights (0: none to count)
    weights_here: bool = True  # False: a folder of its JSON files alone, sized from config.json (a load refuses it)
    format_note: str = ""    # where config.json and the weights disagree on the experts' format (the weights decide)
    experts_as: str = "MXFP4"  # the MXFP4 experts' format in words: "MXFP4 (2 of 8 expert tensors) + bfloat16" if mixed

    @property
    def kv_per_1k(self) -> int:
        """KV-cache bytes per 1,000 tokens past the sliding window: what a long conversation adds."""
        return self.kv.per_token_layer * self.kv.full_layers * 1000

    @property
    def kv_per_1k_lab(self) -> int:
        """The same in this lab's engine, whose sliding-window layers keep their past so a turn can rewind exactly."""
        return self.kv.bytes(1000, keep_past=True)

    def rows(self) -> list[tuple[str, str]]:
        """(label, text) pairs of the report, in reading order."""
        p, kv = self.parameters, self.kv
        kernels = ("usable" + " (assumed)" * self.kernels_assumed if self.kernels is None else
                   f"not usable: {self.kernels}")
        if self.mxfp4_checkpoint and not self.dequantized_to:
            kernels += " → the experts stay in MXFP4"
        elif self.mxfp4_checkpoint:
            kernels += (" → the experts load dequantized" if self.kernels is not None else
                        ", but the experts " + ("were" if self.loaded else "are") + " dequantized all the same")
        free = "unknown (a per-module device map)" if self.free is None else (
            size(self.free) + ((f" (given as {self.free_given})" if self.free_given else " (as given)")
                               if self.free_assumed else
                               " free now, with the loaded weights" if self.free_counts_loaded else " free now"))
        return [
            ("parameters", f"{_count(p.total)} total, {_count(p.active)} active per token "
                           f"({self.layers} layers, {self.experts} experts, top-{self.top_k})"),
            ("weights", f"{size(self.mxfp4_bytes)} with MXFP4 experts (4.25 bits a value), {size(self.bf16_bytes)} in bfloat16"),
            ("checkpoint", self._checkpoint()),
            ("device", f"{self.device}: {self.device_name}, {free}"),
            ("MXFP4 kernels", kernels),
            ("packages", " · ".join(f"{k} {v or '—'}" for k, v in self.packages.items())),
            ("loads as", f"{self.load_how}: {size(self.load_bytes)} of weights"
                         + (f"; {self.not_float32}" if self.not_float32 else "")),
            ("KV cache", f"{size(self.kv_per_1k)} per 1,000 tokens ({kv.full_layers} full-attention layers; the "
                         f"{kv.sliding_layers} sliding-window layers hold at most {counted(kv.window, 'token')}, "
                         f"{size(kv.bytes(kv.window) - kv.per_token_layer * kv.full_layers * kv.window)} in all); "
                         f"{size(self.kv_per_1k_lab)} per 1,000 in this lab's engine, which keeps the sliding "
                         "layers' past to rewind a turn exactly"),
            ("longest context", self._context()),
            ("verdict", self.verdict),
        ]

    def _checkpoint(self) -> str:
        """What the checkpoint stores and, for MXFP4 experts, whether they stay packed: a model loaded from MXFP4
        weights and dequantized (on a CPU, say) is no unquantized model, though its config no longer says MXFP4."""
        notes = "" if self.weights_here else ("; its weights are not in the folder (sized from config.json: download "
                                              "them to load it)")
        notes += f"; {self.format_note}" if self.format_note else ""
        if self.mxfp4_checkpoint is None:
            return "unknown: the checkpoint it was loaded from cannot be read now"
        if not self.mxfp4_checkpoint:
            return "not quantized" + notes
        if not self.dequantized_to:
            return f"{self.experts_as} experts (quant_method mxfp4)" + notes
        return f"{self.experts_as} experts (quant_method mxfp4), dequantized to {self.dequantized_to} " + (
            "on load" if self.loaded else "when loaded here") + notes

    def _context(self) -> str:
        if self.max_context == 0:
            return "none: the weights leave no room"
        n = self.max_context
        if self.lean:
            cache, kind = self.kv.store_peak(n, self.context_limit), "KV store (at most: it doubles as it grows)"
        else:
            cache, kind = self.kv.bytes(n, keep_past=True), "KV cache"
        scratch, attention = self.scratch_bytes, "the lab's CPU forward" if self.lean else "eager attention"
        text = (f"{n:,} tokens of {self.context_limit:,}: {kind} {size(cache)} + attention scratch {size(scratch)} "
                f"({attention}, prompts computed {self.prefill_chunk:,} tokens at a time)")
        if self.head_copy:
            text += f" + its transposed copy of lm_head {size(self.head_copy)}"
        if n < self.context_limit and scratch > cache:
            text += "; a smaller prefill chunk (engine.prefill_chunk) leaves room for more"
        return text

    def __str__(self) -> str:
        width = max(len(label) for label, _ in self.rows())
        return "\n".join([f"doctor: {self.model}"] + [f"  {label:<{width}}  {text}" for label, text in self.rows()])

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))

    def _repr_html_(self) -> str:
        cells = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(label)}</th>"
                        f"<td style='text-align:left'>{html.escape(text)}</td></tr>" for label, text in self.rows())
        from ..widgets.sanitize import NO_TYPESETTING, one_html_block

        return one_html_block(f"<div class='{NO_TYPESETTING}'><b>doctor: {html.escape(self.model)}</b>"
                              f"<table>{cells}</table></div>")   # a folder's name or an error may hold a blank line


def doctor(
    model: Any = "tiny",
    *,
    device: str | None = None,
    dtype: str | None = None,
    memory: int | str | None = None,
    mxfp4_kernels: bool | None = None,
    prefill_chunk: int | None = None,
) -> Diagnosis:
    """Will `model` fit here? A hub id, "tiny", a checkpoint folder, a config.json path, a config, a dict, a loaded
    LocalEngine or a Session holding one; no weights load (a folder's MXFP4 scales are read, as the load checks them).

    `device` defaults to the GPU when there is one; `memory` ("80 GB", "16 GiB" or bytes) replaces the
    measured free memory, and `mxfp4_kernels` the check for transformers' MXFP4 kernels, to ask about
    another machine; `prefill_chunk` is how many prompt tokens the engine computes at once (default: a loaded
    engine's own `prefill_chunk`, else 2048).
    """
    checkpoint.import_held()
    model = getattr(model, "engine", model)  # a Session was refused as "give 'tiny', a checkpoint folder ..."

    checkpoint.check_device(device)  # "bogus" was sized as this machine's RAM: "does not fit on bogus"
    if mxfp4_kernels is not None and not isinstance(mxfp4_kernels, bool):  # "False" was true: "fits", not asked
        raise TypeError(f"mxfp4_kernels must be True, False or None (this machine's own check), "
                        f"not {mxfp4_kernels!r:.60}")
    if prefill_chunk is None:  # an engine's own: sized with 2048, it said a smaller one would help after it was set
        prefill_chunk = getattr(model, "prefill_chunk", 2048)
    checkpoint.check_prefill_chunk(prefill_chunk)
    name, config, folder, stored, weights_here = _config(model)
    name = checkpoint.printable(name)
    target = checkpoint.default_device(device)
    if memory is None:
        checkpoint.check_gpu(target, model if isinstance(model, str | Path) else name, "doctor",
                             ", or give memory= (e.g. '80 GB') to size the model for another machine")
    p = checkpoint.count_parameters(config)
    free = memory_bytes(memory) if memory is not None else checkpoint.free_bytes(target)
    loaded = getattr(model, "config", None) is config
    in_memory = checkpoint.held_weights(model) if loaded else None
    held = in_memory if dtype is None else None  # as in memory, not as configured
    default = None if loaded else checkpoint.cpu_default(config, target, free)
    dtype_name = held[0] if held else checkpoint.dtype_name(config, dtype or default, stored)
    packed_mxfp4 = checkpoint.weight_bytes(config, "bfloat16", packed=True)
    bf16 = checkpoint.weight_bytes(config, "bfloat16", packed=False)
    if mxfp4_kernels is None:
        kernels = checkpoint.mxfp4_kernels(target)
    else:
        kernels = None if mxfp4_kernels else "assumed unavailable"
    mxfp4 = checkpoint.is_mxfp4(config, stored)   # stays packed where the kernels run
    packed = mxfp4 and kernels is None and held is None
    if loaded:   # transformers drops a dequantized model's quantization_config: the checkpoint it came from tells
        origin = _loaded_from(config)
        in_mxfp4 = mxfp4 or (origin.mxfp4 if origin is not None else None)
    else:
        origin = stored
        in_mxfp4 = mxfp4 or checkpoint.stores_mxfp4(config, stored)
    unpacked = (in_memory[0] if in_memory else None) if loaded else (None if packed else dtype_name)
    load = held[1] if held else checkpoint.weight_bytes(config, dtype_name, packed=packed)
    resident = loaded and memory is None and free is not None and _on(model, target)
    if resident:  # the measured free memory leaves out the weights already loaded there, the KV cache they computed
        free += load + getattr(model, "lm_head_copy", 0) + getattr(model, "cache_bytes", 0)  # and the copy of lm_head
    if folder is not None and in_mxfp4:  # the load refuses them: no report saying it fits
        checkpoint.check_scales(folder, "bfloat16" if packed else dtype_name)
    how = dtype_name + (" with MXFP4 experts" if packed else "")
    kv = KVCache.of(config, dtype_name)
    limit = int(config.max_position_embeddings)
    lean = _lean(model, loaded, target, dtype_name, packed, config)
    head = _head_copy(model, loaded, config, free - load) if lean and free is not None else 0
    context = 0 if free is None else _longest_context(config, kv, load + head, free, limit, prefill_chunk, dtype_name,
                                                      lean)
    fits = context > 0
    unload = None if fits or loaded or memory is not None or free is None else checkpoint.unload_hint(
        target, free, lambda room: _longest_context(config, kv, load + head, room, limit, prefill_chunk, dtype_name,
                                                    lean) > 0)
    diagnosis = dict(
        model=name, parameters=p, layers=config.num_hidden_layers, experts=config.num_local_experts,
        top_k=config.num_experts_per_tok, mxfp4_checkpoint=in_mxfp4, dequantized_to=unpacked if in_mxfp4 else None,
        loaded=loaded, mxfp4_bytes=packed_mxfp4, bf16_bytes=bf16,
        device=str(target), device_name=_device_name(target), packages=_versions(), kernels=kernels,
        kernels_assumed=mxfp4_kernels is not None,
        load_bytes=load, load_how=how, kv=kv, prefill_chunk=prefill_chunk, free=free,
        free_assumed=memory is not None, free_given=memory.strip() if isinstance(memory, str) else "",
        free_counts_loaded=resident, max_context=context, context_limit=limit, fits=fits,
        scratch_bytes=checkpoint.attention_scratch(config, context, prefill_chunk, dtype_name, lean=lean), lean=lean,
        head_copy=head, weights_here=weights_here, format_note=checkpoint.format_mismatch(config, stored) or "",
        experts_as=origin.experts_as() if origin is not None and origin.mxfp4 else "MXFP4",
        not_float32="" if dtype or loaded else checkpoint.not_float32(name, config, dtype_name, target, free,
                                                                      here=memory is None) or "",
    )
    verdict = _verdict(name, fits, free, load, how, context, limit, mxfp4, kernels, packed_mxfp4, str(target))
    return Diagnosis(**diagnosis, verdict=f"{verdict}; {unload}" if unload else verdict)


def _config(model: Any) -> tuple[str, Any, str | None, checkpoint.Stored | None, bool]:
    """(name, GptOssConfig, local folder holding weights or None, the format they are stored in or None, whether a
    folder's weights are there) for anything `doctor` accepts (also a loaded engine); LoadError in one line otherwise."""
    from transformers import GptOssConfig, PretrainedConfig

    from .base import Engine

    if isinstance(getattr(model, "config", None), PretrainedConfig):  # a loaded LocalEngine or transformers model
        name = str(getattr(model, "name", "") or getattr(model.config, "_name_or_path", "") or "model")
        return name, checkpoint.check_model_type(model.config.model_type, name) and model.config, None, None, True
    if isinstance(model, Engine):
        raise LoadError(f"{getattr(model, 'name', 'this model')} is not loaded in this kernel, so doctor cannot size it: "
                        "give a hub id, a folder or a config.json")
    if isinstance(model, PretrainedConfig):
        name = str(getattr(model, "_name_or_path", "") or "config")
        return name, checkpoint.check_model_type(model.model_type, name) and model, None, None, True
    if isinstance(model, dict):
        return "config", _valid(model, "the config"), None, None, True
    shipped = checkpoint.shipped_config(model)
    if shipped is not None:
        return shipped.name, GptOssConfig.from_pretrained(shipped), None, None, True
    path = checkpoint.local_path(str(model))
    beside = path.name != "config.json" and (path.parent / "config.json").is_file()  # generation_config.json, say
    if path.suffix == ".json" and path.exists() and not path.is_dir() and not beside:  # a FIFO, a device: unread
        return path.parent.name, _valid(checkpoint.config_json(path, str(path.parent)), str(path)), None, None, True
    source = checkpoint.resolve(model)
    hub_kw = {"local_files_only": True} if source.hub and not checkpoint.hub_reachable() else {}
    folder = checkpoint.folder_of(source, hub_kw)
    config = checkpoint.read_config(source, hub_kw, folder)
    checkpoint.check_implementations(config, {}, source.path)  # the load refuses it: no report saying it fits
    if folder is not None and not checkpoint.holds_weights(folder):
        return source.name, config, None, None, False  # its config alone, as `hf download ... --include "*.json"` leaves it
    stored = checkpoint.check_folder(folder, config, source.path) if folder is not None else None  # likewise
    return source.name, config, folder, stored, True


def _valid(raw: Any, name: str) -> Any:
    """The GptOssConfig of a config.json's contents; LoadError in one line for another model or values no GptOss can have."""
    from huggingface_hub.errors import StrictDataclassError
    from transformers import GptOssConfig

    checkpoint.check_object(raw, name)
    checkpoint.check_model_type(raw["model_type"], name)
    checkpoint.check_raw(raw, name)
    try:
        config = GptOssConfig.from_dict(raw)
    except (ValueError, TypeError, KeyError, ArithmeticError, AttributeError, StrictDataclassError) as error:
        raise LoadError(f"{name} is not a valid gpt-oss config: {checkpoint.clip(' '.join(str(error).split()))}") from None
    checkpoint.check_sizes(config, name)
    checkpoint.check_implementations(config, {}, name)
    return config


def _loaded_from(config: Any) -> checkpoint.Stored | None:
    """How the checkpoint a loaded model came from stores its experts, read again (offline, its weights' headers where
    the folder holds them, else its config) where transformers recorded it (`_name_or_path`): unquantized for a model
    built in memory, None when that checkpoint cannot be read now."""
    where = str(getattr(config, "_name_or_path", "") or "")
    if not where:
        return checkpoint.Stored(None, False)
    try:
        source = checkpoint.resolve(where)
        folder = checkpoint.folder_of(source, {"local_files_only": True}) or checkpoint.shipped_config(source.path)
        raw = checkpoint.read_json(Path(folder) / "config.json", source.path) if folder else None
        stored = checkpoint.stored_format(str(folder), source.path) if folder else None
    except LoadError:   # moved or deleted since, no longer a checkpoint folder
        return None
    if not isinstance(raw, dict):
        return None
    return stored if stored is not None else checkpoint.Stored(None, checkpoint.stores_mxfp4(raw))


def _on(model: Any, target: str) -> bool:
    """Whether a loaded model's weights are on the kind of device `target` names."""
    import torch

    net = getattr(model, "model", model)
    first = next(iter(net.parameters()), None) if hasattr(net, "parameters") else None
    return first is not None and first.device.type == torch.device(target).type


def _lean(model: Any, loaded: bool, target: Any, dtype: str, packed: bool, config: Any) -> bool:
    """Whether the engine runs the model through the lean CPU forward (`fastpath`): a loaded engine says so, a loaded
    transformers model is asked as an engine would ask it; a load here takes it on a CPU in float32, experts unpacked."""
    if loaded:
        from . import fastpath

        reason = model.slow_path_reason if hasattr(model, "slow_path_reason") else fastpath.unsupported(model)
        return reason is None
    return (str(target) == "cpu" and dtype == "float32" and not packed
            and getattr(config, "_attn_implementation", None) in (None, "eager"))


def _head_copy(model: Any, loaded: bool, config: Any, available: int) -> int:
    """Bytes of the lean forward's transposed lm_head copy, beside the weights: the one a loaded engine holds, else the
    one its first turn makes with `available` bytes beside them, of a loaded model's non-zero rows (a config's: the
    whole vocabulary), where there is room for it."""
    from . import fastpath

    if not loaded:
        return fastpath.copy_bytes(config.vocab_size, config.hidden_size, available)
    net = model.model if hasattr(model, "slow_path_reason") else model
    return getattr(model, "lm_head_copy", 0) or fastpath.head_copy_bytes(net.get_output_embeddings(), available)


def _longest_context(config: Any, kv: KVCache, load: int, free: int, limit: int, chunk: int, dtype: str,
                     lean: bool) -> int:
    """The most tokens whose KV cache (as the lab keeps it) and attention scratch fit next to the weights."""
    budget = free * (1 - HEADROOM) - load

    def fits(n: int) -> bool:
        cache = kv.store_peak(n, limit) if lean else kv.bytes(n, keep_past=True)
        return cache + checkpoint.attention_scratch(config, n, chunk, dtype, lean=lean) <= budget

    if budget <= 0 or not fits(1):
        return 0
    low, high = 1, limit
    while low < high:  # the largest n that fits
        mid = (low + high + 1) // 2
        low, high = (mid, high) if fits(mid) else (low, mid - 1)
    return low


def _verdict(name: str, fits: bool, free: int | None, load: int, how: str, context: int, limit: int,
             mxfp4: bool, kernels: str | None, packed: int, device: str) -> str:
    if free is None:
        return f"{name} needs {size(load)} of weights ({how}); free memory is not measured for a per-module device map"
    if fits:
        room = "its full context" if context == limit else f"{context:,} tokens of context"
        tight = " (tight)" if context < 4096 else ""
        return f"{name} fits on {device}{tight}: {size(load)} of weights ({how}) in {size(free)}, with room for {room}"
    if mxfp4 and kernels is not None and packed <= free * (1 - HEADROOM):
        return (f"{name} does not fit on {device}: without MXFP4 kernels ({kernels}) its weights take {size(load)} "
                f"({how}) and {size(free)} is free; with the kernels they would take {size(packed)}")
    if load <= free * (1 - HEADROOM):
        return f"{name} does not fit on {device}: its {size(load)} of weights ({how}) leave no room for context in {size(free)}"
    return f"{name} does not fit on {device}: {size(load)} of weights ({how}), {size(free)} free"


def _count(n: int) -> str:
    """A parameter count for people: 20.91 B, 29.1 M."""
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.1f} M"


def _device_name(target: Any) -> str:
    import torch

    text = str(target)
    if text.startswith("cuda") or text.isdigit() or text == "auto":
        if not torch.cuda.is_available():
            return "no CUDA GPU visible to torch"
        if missing := checkpoint.missing_gpu(text):  # memory= given for another machine's cuda:7
            return f"not here: {missing}"
        device = torch.device(int(text) if text.isdigit() else text if text.startswith("cuda") else "cuda")
        major, minor = torch.cuda.get_device_capability(device)
        return f"{torch.cuda.get_device_name(device)} (compute capability {major}.{minor})"
    import psutil

    return f"CPU, {psutil.cpu_count()} cores"


def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def memory_bytes(memory: int | str) -> int:
    """Bytes from 17179869184, 1e12, "80 GB", "16GiB" or "1.5e12 B"; ValueError for anything else, negative or not finite,
    a bare number too small to be a machine's bytes (16 meant "16 GB") or a size no machine has."""
    wrong = f"memory must be a number of bytes (0 or more) or like '80 GB' / '16 GiB', not {memory!r:.60}"
    if isinstance(memory, str) and (short := re.fullmatch(r"\s*(\d+\.?\d*)\s*([kmgt])\s*", memory.lower())):
        unit = short[2].upper()   # "80g", as docker and `free -g` write it: GB or GiB, not said
        wrong += f": write '{short[1]} {unit}B' or '{short[1]} {unit}iB'"
    elif isinstance(memory, str) and (grouped := re.fullmatch(r"\s*(\d{1,3}(?:[, _]\d{3})+)(\.\d+)?(\s*[a-z]*)\s*",
                                                              memory, re.IGNORECASE)):
        wrong += f": write '{re.sub('[, _]', '', grouped[1])}{grouped[2] or ''}{grouped[3]}'"   # "1,000 GB", "80 000 MB"
    unit = None
    if isinstance(memory, bool):
        raise ValueError(wrong)
    if isinstance(memory, (int, float)):
        try:
            value = float(memory)
        except OverflowError:   # 10**400: no float holds it
            raise ValueError(wrong) from None
    else:
        match = re.fullmatch(r"\s*(\d+\.?\d*|\.\d+)(e[+-]?\d+)?\s*([kmgt]i?b|b)?\s*", str(memory).lower())
        if not match:
            raise ValueError(wrong)
        unit = match.group(3)
        value = float(match.group(1) + (match.group(2) or "")) * _UNITS[unit or "b"]
    if not 0 <= value < float("inf"):  # also NaN
        raise ValueError(wrong)
    if 0 < value < _LEAST_BARE and unit is None:
        raise ValueError(f"memory={memory!r:.60} reads as {value:g} bytes: write the unit, like '{value:g} GB'")
    if value > _MOST:
        raise ValueError(f"memory={memory!r:.60} is more than any machine has (over 1 PB): write what it has, "
                         "like '80 GB'")
    return int(value)
