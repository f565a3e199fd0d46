"""A gpt-oss checkpoint before its weights load: where it is, what its config says, what it will need.

`plan_load` resolves "tiny", a folder or a hub id, checks that it is gpt-oss, decides whether
MXFP4 experts stay packed here (transformers' kernels) or are dequantized, and refuses in one line
what cannot fit. The counting (parameters, weight bytes, KV cache, attention scratch) works from
the config alone, so the doctor can answer for a model that is not on this machine.
`routing_visible` says whether router hooks will see a loaded model's routing.
"""
from __future__ import annotations

import copy
import importlib.util
import itertools
import json
import logging
import math
import os
import re
import shlex
import socket
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISREG
from typing import Any, NoReturn
from urllib.parse import urlparse

from .base import EngineError

CONFIGS = Path(__file__).resolve().parent.parent / "configs"  # public config.json of the released models
MXFP4_BYTES = 4.25 / 8  # 4-bit values plus one 8-bit scale per block of 32
EXPERT_WEIGHTS = ("experts.gate_up_proj", "experts.down_proj")
LEAN_COPIES = 8   # [heads, chunk, head_dim] float32 tensors live at the lean CPU forward's attention peak
SCORE_COPIES = 3  # live copies of the attention scores at eager attention's peak (3.13 measured on CPU, K/V repeats included)
HEADROOM = 0.05  # share of the free memory kept for activations, the allocator and the runtime
FLOAT32_CONTEXT = 4096  # tokens of context a CPU load takes float32 only with room for (else the slower bfloat16)
MXFP4_KERNEL_REPO = "kernels-community/gpt-oss-triton-kernels"  # what transformers fetches for MXFP4 on GPU
# a module name with at most one ".*" (openai/gpt-oss-20b's: "model.layers.*.self_attn"): transformers matches these as
# regular expressions, and many ".*" backtrack for hours on each layer's name
_MODULE_PATTERN = re.compile(r"[\w.]*(?:(?<=\.)\*[\w.]*)?")  # no backtracking here either: "*" is no [\w.]
_HUB_ID = re.compile(r"[A-Za-z0-9_][\w.-]*(/[\w.-]+)?")
# what `%gptoss connect` takes: a URL (scheme://...), or host:port with a user:password@ before it or a path after it
_SERVER = re.compile(r"(?i:https?)://.*|([^/\s]*@)?[\w.-]+:\d{1,5}(/.*)?", re.DOTALL)
# a model's page on the Hugging Face Hub, as a browser shows it (its Hub id after the host)
_HUB_PAGE = re.compile(r"(?i:https?://(?:www\.)?(?:huggingface\.co|hf\.co))/([\w.-]+/[\w.-]+)(?:[/?#].*)?", re.DOTALL)
_HUB_KERNEL = re.compile(r"[\w.-]+/[\w.-]+(@[\w.-]+)?(:[\w.-]+)?")  # what transformers fetches as an attention kernel
_HUB_KW = ("revision", "cache_dir", "token", "subfolder", "local_files_only")
# transformers' loading options a load may pass on; others it takes as config values after this module's checks
_LOAD_OPTIONS = (*_HUB_KW, "trust_remote_code", "use_safetensors", "use_kernels", "attn_implementation", "max_memory",
                 "offload_folder", "low_cpu_mem_usage")
_MULTI_DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")
ITEMSIZE = {"float32": 4, "float64": 8, "bfloat16": 2, "float16": 2}
# what other tools and torch's aliases call the dtypes (`--dtype bf16`, torch.half)
_DTYPE_MEANT = {"bf16": "bfloat16", "fp16": "float16", "f16": "float16", "half": "float16", "fp32": "float32",
                "f32": "float32", "float": "float32", "fp64": "float64", "f64": "float64", "double": "float64"}
_STORED_FLOATS = {"BF16": "bfloat16", "F16": "float16", "F32": "float32", "F64": "float64"}  # safetensors' names
MAX_LAYERS = 1024  # gpt-oss-120b has 36; transformers lists a layer type per layer before any check
MAX_SIZE = 2**40  # a config's largest size or window: torch sizes tensors and masks in 64-bit integers
MAX_ATTENTION_SCALING = 100  # yarn's attention factor: gpt-oss's is 1.35; 10**15 overflows the scores (NaN logits)
MAX_PARAMETERS = 10**15  # 2 PB of bfloat16 weights, no machine's memory (gpt-oss-120b: 1.2 * 10**11)
_SCAN_SLICE = 2**26  # weight values checked for NaN at once (64 MB of booleans where a sum overflows)
MAX_JSON_BYTES = 16 * 2**20  # a checkpoint's config, generation config or shard index (gpt-oss-120b's index: 60 kB)
# what a checkpoint's config may choose (kind: config attribute, load option, choices): implementations in
# transformers' own code that gpt-oss runs (sdpa is none: see _check_attention); any other (a Hub kernel "org/name",
# flash_attention_2, deepgemm) makes transformers download a kernel and run it, which only the user's own load option
# may ask for
_BUILT_IN_IMPLEMENTATIONS = {
    "attention": ("_attn_implementation", "attn_implementation", ("eager", "flex_attention")),
    "experts": ("_experts_implementation", "experts_implementation", ("eager", "grouped_mm", "batched_mm")),
}


class LoadError(EngineError):
    """A checkpoint could not be loaded; the message says why and what to do, in one line. `instead`, where set, are
    the loads that would work, each a change of the options given (`{"device": "cpu"}`) after `reason`: the message
    words them as Python calls, `%gptoss load` as its own command (`load_command`)."""

    def __init__(self, message: str, *, reason: str = "", instead: tuple[dict[str, Any], ...] = ()) -> None:
        super().__init__(message)
        self.reason, self.instead = reason, instead


LOAD_OPTIONS = ("device", "device_map", "dtype", "dequantize")   # the load's arguments `%gptoss load` has options for


def load_command(model: Any, options: dict[str, Any]) -> str:
    """The `%gptoss load` line that loads `model` with `options`, for a message to give the user to copy: their model's
    own name or path and options, where a message said `%gptoss load NAME`. An option the line cannot write (a device
    map given as a dict) is left out."""
    words = ["%gptoss load", shlex.quote(str(model))]
    for key in LOAD_OPTIONS:
        value = options.get(key)
        value = str(value).removeprefix("torch.") if type(value).__name__ == "dtype" else value  # torch.bfloat16
        if value is True:
            words.append(f"--{key.replace('_', '-')}")
        elif isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            words.append(f"--{key.replace('_', '-')} {shlex.quote(str(value))}")
    return " ".join(words)


@dataclass(frozen=True)
class Source:
    """A model the user named: what to give transformers, a short name, and whether it is a hub id."""

    path: str
    name: str
    hub: bool


def resolve(name_or_path: str | Path) -> Source:
    """"tiny", a checkpoint folder or a hub id, checked for what can be known without the network. Only the string
    "tiny" is the bundled model: a Path, "./tiny" or "tiny/" is the folder of that name; a server's address is
    refused pointing to `%gptoss connect`, without its user:password@, and a Hub page's naming its Hub id."""
    if not isinstance(name_or_path, (str, os.PathLike)) or name_or_path == "":  # None: a TypeError; "": this folder
        raise LoadError(f"give 'tiny', a checkpoint folder or a Hub id such as openai/gpt-oss-20b, "
                        f"not {clip(repr(name_or_path), 40)}")
    if isinstance(name_or_path, str) and name_or_path == "tiny":
        from ..tiny import CHECKPOINT

        if not (CHECKPOINT / "config.json").is_file():
            raise LoadError(f"the bundled gpt-oss-tiny checkpoint is missing from {CHECKPOINT}: reinstall gptoss_lab")
        return Source(str(CHECKPOINT), "gpt-oss-tiny", False)
    path = local_path(name_or_path)
    if path.is_dir():
        if not os.path.lexists(path / "config.json"):  # a link that loops is there: reading it says so
            inside = _checkpoint_inside(path)
            raise LoadError(f"{path} has no config.json, so it is not a transformers checkpoint folder: " + (
                f"the one inside it is {inside}" if inside else
                "give the folder that holds config.json and the .safetensors files"))
        return Source(str(path), path.resolve().name, False)
    if path.exists():
        raise LoadError(_file_given(path))
    if path.is_symlink():  # not a Hub id to look up
        raise LoadError(f"{path} is a symbolic link to nothing (it dangles or loops): give the checkpoint folder")
    text = str(name_or_path)
    if isinstance(name_or_path, str) and (page := _HUB_PAGE.fullmatch(text)):  # not a server to connect to
        raise LoadError(f"{clip(text, 120)} is a page of the Hugging Face Hub: load the model by its Hub id, {page[1]}")
    if isinstance(name_or_path, str) and _SERVER.fullmatch(text):  # its user:password@ was echoed in the error
        from .remote import shown_url

        raise LoadError(f"{shown_url(text)} is a server's address, not a checkpoint: talk to the model it "
                        "serves with `%gptoss connect URL` (Session.connect(url) in Python)")
    if not isinstance(name_or_path, str) or not _HUB_ID.fullmatch(text):
        raise LoadError(f"checkpoint folder not found: {text}{_near(path)}")
    if text.lower() in ("tiny", "gpt-oss-tiny"):  # mistyped names, not Hub ids to look up (offline: "hf download Tiny")
        raise LoadError(f"{text} is not a checkpoint folder here: the bundled model (gpt-oss-tiny) loads as tiny, "
                        "in lower case")
    if "/" not in text and _tiny_mistyped(text):   # offline it was "hf download tyni": a Hub lookup of a typo
        raise LoadError(f"{text} is not a checkpoint folder here (did you mean tiny, the bundled gpt-oss-tiny?)")
    if "/" not in text and shipped_config(text.lower()):
        raise LoadError(f"{text} is not a checkpoint folder here: the released model's Hub id is openai/{text.lower()}")
    return Source(text, text.rsplit("/", 1)[-1], True)


def _tiny_mistyped(name: str) -> bool:
    """Whether `name` is a slip of `tiny` or `gpt-oss-tiny` (`tinny`, `tyni`, `gpt-oss-tin`): no Hub id without an
    owner's name is a gpt-oss model, so a close one is the bundled model mistyped."""
    import difflib

    folded = name.lower()
    return sorted(folded) == sorted("tiny") or bool(difflib.get_close_matches(folded, ("tiny", "gpt-oss-tiny"), 1, 0.75))


def _near(path: Path) -> str:
    """` (did you mean …?)` naming a folder beside `path` whose name is close to it (`~/models/gpt-oss-20` for
    `gpt-oss-20b`), or "": a mistyped folder was only "not found". Reads at most 2,000 names of the parent."""
    import difflib
    from itertools import islice

    try:
        with os.scandir(path.parent) as entries:
            folders = [entry.name for entry in islice(entries, 2000) if entry.is_dir()]
    except OSError:
        return ""
    near = difflib.get_close_matches(path.name, folders, 1, 0.8)
    return f" (did you mean {printable(str(path.parent / near[0]))}?)" if near else ""


def _file_given(path: Path) -> str:
    """Why the file `path` is not what loads, and what to give instead: a GGUF file (llama.cpp's, by its name or its
    first bytes) is served and connected to, a checkpoint's own file names its folder; both were "give the folder"."""
    import shlex

    gguf = path.suffix.lower() == ".gguf"
    if not gguf and path.is_file():  # a regular file only: a FIFO would hold the read
        try:
            with path.open("rb") as file:
                gguf = file.read(4) == b"GGUF"
        except OSError:
            pass
    if gguf:
        return (f"{path} is a GGUF file, which llama.cpp runs, not transformers: serve it (python -m llama_cpp.server "
                f"--model {shlex.quote(str(path))}) and talk to it with `%gptoss connect URL` (Session.connect(url) in "
                "Python)")
    if (path.parent / "config.json").is_file():
        return f"{path} is a file: give the checkpoint folder that holds it, {path.parent}"
    return f"{path} is a file: give the checkpoint folder"


def _checkpoint_inside(folder: Path, most: int = 200) -> Path | None:
    """The first of `folder`'s subfolders (of its first `most` entries, by name) holding a config.json: the folder a
    download went into was given for the checkpoint in it (`~/models` for `~/models/gpt-oss-20b`)."""
    try:
        entries = sorted(itertools.islice(os.scandir(folder), most), key=lambda entry: entry.name)
    except OSError:
        return None
    return next((Path(e.path) for e in entries if e.is_dir() and (Path(e.path) / "config.json").is_file()), None)


def local_path(name_or_path: str | Path) -> Path:
    """`name_or_path` as a path on this machine (~ expanded); a one-line LoadError where the file system cannot look
    it up (a name longer than it allows, ~user of no such user), which `%gptoss load` showed as a traceback."""
    try:
        path = Path(name_or_path).expanduser()
        path.exists()
    except (OSError, RuntimeError) as error:
        reason = getattr(error, "strerror", None) or first_line(error)
        raise LoadError(f"checkpoint folder not found: {name_or_path} ({reason})") from None
    return path


def shipped_config(name: str | Path) -> Path | None:
    """The packaged public config folder of a released model ("openai/gpt-oss-20b" or "gpt-oss-120b"), if it is one
    (a Path is a folder, never a released model's name)."""
    if not isinstance(name, str):
        return None
    short = name.removeprefix("openai/")
    shipped = {folder.name for folder in CONFIGS.iterdir() if (folder / "config.json").is_file()}
    return CONFIGS / short if short in shipped else None


def hub_reachable() -> bool:
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


def offline_message(name: str | Path) -> str:
    return (f"{name} is not a folder on this machine, not in the Hugging Face cache, and the Hub cannot be reached "
            f"(no network, or HF_HUB_OFFLINE is set): download it where there is network "
            f"(`hf download {name} --local-dir DIR`) and load the folder DIR instead")


SIZES = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
         "head_dim", "num_local_experts", "num_experts_per_tok", "vocab_size", "max_position_embeddings",
         "sliding_window")  # a config's sizes, positive whole numbers (a window of null: every turn on a GPU failed)


def read_config(source: Source, hub_kw: dict[str, Any] | None = None, folder: str | None = None) -> Any:
    """The checkpoint's transformers config, after checking that it is a gpt-oss model; `folder` is the one that will
    load where it is known (`folder_of`), a local one's own by default."""
    from huggingface_hub.errors import StrictDataclassError
    from transformers import AutoConfig, PretrainedConfig

    hub_kw = hub_kw or {}
    folder = folder or (None if source.hub else source.path)
    if folder is not None:   # its faults said as every config's are, not as transformers words them
        check_object(config_json(Path(folder) / "config.json", source.path), f"the config of {source.path}")
    try:
        raw, _ = PretrainedConfig.get_config_dict(source.path, **hub_kw)
    except (OSError, ValueError, RecursionError) as error:  # ValueError: not JSON, a number of 4,300 digits or more
        if isinstance(error, OSError) and source.hub and hub_kw.get("local_files_only"):
            raise LoadError(offline_message(source.path)) from None
        raise LoadError(f"could not read the config of {source.path}: {first_line(error)}") from None
    check_object(raw, f"the config of {source.path}")
    check_model_type(raw["model_type"], str(source.path))
    _check_no_adapter(source, hub_kw, folder)
    check_raw(raw, f"the config of {source.path}")
    try:
        config = AutoConfig.from_pretrained(source.path, **hub_kw)
    except (ValueError, TypeError, KeyError, ArithmeticError, AttributeError, StrictDataclassError) as error:
        # transformers' checks of the values; also yarn's original context of 0 (ZeroDivisionError), "dtype": "auto"
        # and a key naming a read-only property such as use_return_dict (AttributeError)
        message = clip(" ".join(str(error).split()))
        raise LoadError(f"the config of {source.path} is not a valid gpt-oss config: {message}") from None
    check_sizes(config, f"the config of {source.path}")
    return config


def _check_no_adapter(source: Source, hub_kw: dict[str, Any], folder: str | None) -> None:
    """A one-line LoadError for a checkpoint that holds a PEFT adapter_config.json: where peft is installed,
    transformers applies the adapter's weights on top of the checked ones (for a Hub id that is only an adapter, it
    loads the base model the adapter names), and without peft it ignores the file, so the same folder is another
    model on another machine. A Hub id whose `folder` is not known is looked up (as transformers would) only where peft
    is installed."""
    from transformers.integrations import peft
    from transformers.utils.peft_utils import ADAPTER_CONFIG_NAME, find_adapter_config_file

    if folder is None:
        found = peft.is_peft_available() and find_adapter_config_file(
            source.path, **{k: hub_kw[k] for k in ("cache_dir", "token", "revision", "local_files_only", "subfolder")
                            if k in hub_kw})
    else:
        found = os.path.lexists(Path(folder) / ADAPTER_CONFIG_NAME)
    if found:
        raise LoadError(f"{source.path} cannot be loaded: it holds a PEFT adapter ({ADAPTER_CONFIG_NAME}), which "
                        "transformers would apply to its weights where peft is installed: load a folder without it "
                        "(merge the adapter first)")


def check_model_type(model_type: Any, name: str) -> bool:
    """True for a gpt-oss config's model_type; a one-line LoadError naming `name` for anything else."""
    if model_type != "gpt_oss":
        kind = f"a {clip(' '.join(str(model_type).split()), 40)}" if model_type else "an unknown"
        raise LoadError(f"{name} is {kind} model, not gpt-oss (config model_type must be 'gpt_oss')")
    return True


def config_json(path: Path, label: str) -> Any:
    """The contents of the config.json at `path` (of checkpoint `label`); not JSON is a one-line LoadError of the rule
    every fault of a config follows ("the config of LABEL is not a valid gpt-oss config: ..."), naming the file."""
    _json_file(path, label)
    try:
        return json.loads(path.read_bytes())
    except ValueError as error:  # (a UnicodeDecodeError too)
        if not isinstance(error, (json.JSONDecodeError, UnicodeDecodeError)):   # a number of 4,300 digits or more
            raise LoadError(f"could not read the config of {label}: {first_line(error)}") from None
        raise LoadError(f"the config of {label} is not a valid gpt-oss config: {path.name} is not JSON "
                        f"({first_line(error)})") from None
    except (OSError, RecursionError) as error:
        raise LoadError(f"could not read the config of {label}: {first_line(error)}") from None


def check_object(raw: Any, name: str) -> None:
    """A one-line LoadError (`name` is what it says is wrong) for a config.json's contents that are no object, or one
    without a model_type: they were "an unknown model, not gpt-oss", as if another model's."""
    wrong = f"{name} is not a valid gpt-oss config"
    if not isinstance(raw, dict):
        kind = {list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(type(raw), "a number")
        raise LoadError(f"{wrong}: config.json holds {kind}, not an object of settings")
    if "model_type" not in raw:
        raise LoadError(f"{wrong}: model_type is missing (it must be 'gpt_oss')")


def check_raw(raw: dict[str, Any], name: str) -> None:
    """A one-line LoadError for a config.json's contents that transformers fails on while it builds the config, or that
    makes it load what was not checked: more than MAX_LAYERS layers (a list entry per layer, 10**9 of them: 8 GB), a
    weights file of the config's choosing (transformers_weights), a quantization_config that is no object
    or not MXFP4 (gpt-oss's experts are MXFP4 or unquantized: transformers skips an unknown quant_method with a
    warning and loads the weights as unquantized ones; bitsandbytes, fp8 and others need other weights, other packages,
    and may fetch Hub kernels)."""
    wrong = f"{name} is not a valid gpt-oss config"
    for key in SIZES:   # as written ("128", 4.5): transformers' three-clause validation error named the type only
        value = raw.get(key, 1)
        if not isinstance(value, int) or isinstance(value, bool):
            raise LoadError(f"{wrong}: {key} must be a positive whole number, not {clip(repr(value), 40)}")
    layers = raw.get("num_hidden_layers")
    if isinstance(layers, int) and layers > MAX_LAYERS:
        raise LoadError(f"{wrong}: num_hidden_layers ({layers:,}) is more than the {MAX_LAYERS:,} this lab loads "
                        "(gpt-oss-120b has 36)")
    weights = raw.get("transformers_weights")  # transformers loads the file it names (even adapter_model.bin)
    if weights is not None:
        raise LoadError(f"{wrong}: transformers_weights ({clip(repr(weights), 60)}) would load weights other than "
                        "model.safetensors or the shards model.safetensors.index.json names, unchecked (a .bin file "
                        "is a pickle): remove it")
    quant = raw.get("quantization_config")
    if quant is not None and not isinstance(quant, dict):
        raise LoadError(f"{wrong}: quantization_config must be an object, not {quant!r:.40}")
    if quant is not None and quant.get("quant_method") != "mxfp4":
        raise LoadError(f"{wrong}: quantization_config's quant_method must be 'mxfp4', not "
                        f"{clip(repr(quant.get('quant_method')), 40)}")
    patterns = (quant or {}).get("modules_to_not_convert")  # regular expressions to transformers, on a GPU
    if patterns is not None and not (isinstance(patterns, list) and
                                     all(isinstance(p, str) and _MODULE_PATTERN.fullmatch(p) for p in patterns)):
        raise LoadError(f"{wrong}: quantization_config's modules_to_not_convert must be a list of module names, each "
                        f"with at most one .* (model.layers.*.self_attn), not {clip(repr(patterns), 60)}")


def check_sizes(config: Any, name: str) -> None:
    """A one-line LoadError (`name` is what it says is wrong) for sizes no GptOss model can have: transformers
    accepts them, then fails mid-load or mid-turn."""
    from ..harmony import VOCAB_SIZE

    wrong = f"{name} is not a valid gpt-oss config"
    for key in SIZES:
        value = getattr(config, key, None)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise LoadError(f"{wrong}: {key} must be a positive whole number, not {value!r}")
        _check_at_most(key, value, wrong)
    if config.vocab_size < VOCAB_SIZE:  # the prompt's Harmony tokens would index past the embedding
        raise LoadError(f"{wrong}: vocab_size ({config.vocab_size:,}) is less than the {VOCAB_SIZE:,} tokens of the "
                        "Harmony format gpt-oss reads")
    pad = getattr(config, "pad_token_id", None)  # the embedding's padding row: torch asserts it is one of its rows
    if pad is not None and (not isinstance(pad, int) or isinstance(pad, bool) or not 0 <= pad < config.vocab_size):
        raise LoadError(f"{wrong}: pad_token_id must be a token id below vocab_size ({config.vocab_size:,}), "
                        f"not {clip(repr(pad), 40)}")
    experts, top_k = config.num_local_experts, config.num_experts_per_tok
    if top_k > experts:
        raise LoadError(f"{wrong}: num_experts_per_tok ({top_k}) is more than num_local_experts ({experts})")
    if config.num_attention_heads % config.num_key_value_heads:
        raise LoadError(f"{wrong}: num_attention_heads ({config.num_attention_heads}) is not a multiple of "
                        f"num_key_value_heads ({config.num_key_value_heads})")
    if count_parameters(config).total > MAX_PARAMETERS:  # torch's RuntimeError building it; the doctor's 30-digit sizes
        raise LoadError(f"{wrong}: its sizes make more than {MAX_PARAMETERS:,} parameters (gpt-oss-120b has "
                        "116,829,156,672)")
    _check_rope(getattr(config, "rope_parameters", None) or {}, wrong)
    _check_rotary(config, wrong)
    if getattr(config, "hidden_act", None) != "silu":  # transformers ignores it: the experts compute SwiGLU anyway
        raise LoadError(f"{wrong}: hidden_act must be 'silu' (gpt-oss's SwiGLU), not "
                        f"{clip(repr(getattr(config, 'hidden_act', None)), 40)}")
    for key in ("swiglu_alpha", "swiglu_limit"):  # a limit of 0 or below clamps every expert's output to nonsense
        value = getattr(config, key, None)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
            raise LoadError(f"{wrong}: {key} must be a number above 0, not {clip(repr(value), 40)}")
    if getattr(config, "return_dict", True) is not True:  # GptOss's forward reads its own outputs by name
        raise LoadError(f"{wrong}: return_dict must be true, not {clip(repr(config.return_dict), 40)} (transformers' "
                        "gpt-oss forward fails on the tuples it makes then)")
    eps = getattr(config, "rms_norm_eps", None)  # below 0, the norms take square roots of negatives: NaN logits
    if not _finite(eps) or eps < 0:
        raise LoadError(f"{wrong}: rms_norm_eps must be a number of 0 or more, not {clip(repr(eps), 40)}")


def _check_at_most(key: str, value: int, wrong: str) -> None:
    """A one-line LoadError (after `wrong`) for a size above MAX_SIZE, not quoted: it may have thousands of digits."""
    if value > MAX_SIZE:
        raise LoadError(f"{wrong}: {key} is more than {MAX_SIZE:,} (2**40), larger than any model this lab loads")


def _check_rope(rope: Any, wrong: str) -> None:
    """A one-line LoadError (after `wrong`) for rotary settings transformers takes and then fails on: a rope_theta of 0
    or below loaded and every turn wrote "!!!!" (NaN logits), an unknown rope_type was a KeyError building the model,
    a scaling factor below 1 (transformers only warns) scrambled the positions."""
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    if not isinstance(rope, dict):
        return
    kind, theta, factor = rope.get("rope_type", "default"), rope.get("rope_theta"), rope.get("factor")
    if kind != "default" and kind not in ROPE_INIT_FUNCTIONS:
        raise LoadError(f"{wrong}: rope_type must be one of default, {', '.join(ROPE_INIT_FUNCTIONS)}, "
                        f"not {clip(repr(kind), 40)}")
    if not _finite(theta) or theta <= 0:
        raise LoadError(f"{wrong}: rope_theta must be a number above 0, not {clip(repr(theta), 40)}")
    if factor is not None and (not _finite(factor) or factor < 1):
        raise LoadError(f"{wrong}: the rope scaling factor must be a number of 1 or more, not {clip(repr(factor), 40)}")


def _check_rotary(config: Any, wrong: str) -> None:
    """A one-line LoadError (after `wrong`) for rotary settings whose embedding, computed here as transformers computes
    it, no gpt-oss can run: frequencies that are not finite or an attention scale not in (0, MAX_ATTENTION_SCALING]
    (a NaN beta or attention_factor loaded, and every turn wrote "!!!!"), or fewer frequencies than half a head (a
    partial_rotary_factor loaded, and every turn was a RuntimeError). Computed for a head of at most 256 dimensions:
    what goes wrong does not depend on it, and a head_dim of 10**12 would allocate terabytes."""
    import torch
    from transformers.models.gpt_oss.modeling_gpt_oss import GptOssRotaryEmbedding

    probe = copy.deepcopy(config)
    probe.head_dim = min(config.head_dim, 256)
    kind = probe.rope_parameters.get("rope_type", "default") if isinstance(probe.rope_parameters, dict) else "default"
    rotary = f"its rotary settings ({clip(str(kind), 40)})"
    try:
        with torch.device("cpu"):
            embedding = GptOssRotaryEmbedding(probe)
    except (ValueError, TypeError, KeyError, ArithmeticError, RuntimeError) as error:
        raise LoadError(f"{wrong}: {rotary} compute no rotary embedding ({first_line(error)})") from None
    scale = embedding.attention_scaling
    if not _finite(scale) or not 0 < scale <= MAX_ATTENTION_SCALING:
        raise LoadError(f"{wrong}: {rotary} scale attention by {clip(repr(scale), 40)}: it must be a number above 0, "
                        f"at most {MAX_ATTENTION_SCALING}")
    if not torch.isfinite(embedding.inv_freq).all():
        raise LoadError(f"{wrong}: {rotary} compute rotary frequencies that are not finite numbers")
    if 2 * embedding.inv_freq.numel() != probe.head_dim:
        raise LoadError(f"{wrong}: {rotary} rotate {2 * embedding.inv_freq.numel()} of a head's {probe.head_dim} "
                        "dimensions; gpt-oss rotates them all (partial_rotary_factor must be 1)")


def _finite(value: Any) -> bool:
    """Whether `value` is a finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Stored:
    """What a checkpoint's safetensors headers hold: the weights' floating dtype (what dtype="auto" loads in) and
    whether the experts are MXFP4 blocks and scales, the format they are in whatever config.json claims."""

    dtype: str | None
    mxfp4: bool
    packed: int = 0    # expert projection tensors stored as MXFP4 blocks and scales
    experts: int = 0   # expert projection tensors in all, MXFP4 or not

    @property
    def mixed(self) -> bool:
        """Some expert tensors are MXFP4 and others not: it is no MXFP4 checkpoint as a whole (kernels keep none)."""
        return 0 < self.packed < self.experts

    def experts_as(self) -> str:
        """The experts' format in words: "MXFP4", or for a mixed one "MXFP4 (12 of 24 expert tensors) + bfloat16"."""
        if not self.mixed:
            return "MXFP4" if self.mxfp4 else self.dtype or "floating point"
        return f"MXFP4 ({self.packed} of {self.experts} expert tensors) + {self.dtype or 'floating point'}"


def stored_format(folder: str, label: str) -> Stored | None:
    """The format of the weights in a checkpoint `folder` (named `label` in a LoadError), from the safetensors headers
    alone; None for a folder holding no weights."""
    return _stored(_headers(folder, label))


def _stored(headers: dict[str, tuple[tuple[int, ...], str]]) -> Stored | None:
    """The format `_headers` found: the first floating dtype, and how many expert weights are MXFP4 blocks."""
    if not headers:
        return None
    blocks = tuple(f"{weight}_blocks" for weight in EXPERT_WEIGHTS)
    packed = sum(key.endswith(blocks) for key in headers)
    return Stored(next((_STORED_FLOATS[dtype] for _, dtype in headers.values() if dtype in _STORED_FLOATS), None),
                  packed > 0, packed, packed + sum(key.endswith(EXPERT_WEIGHTS) for key in headers))


def check_tensors(folder: str, config: Any, name: str | None = None) -> Stored | None:
    """A one-line LoadError for a weight the config needs that the folder's safetensors lack or store in another shape or
    dtype, or one they hold that the config's model lacks: transformers would fill a missing one with random values,
    leave an unexpected one out (either way a different model, and a logged table) and report a wrong shape in a
    multi-line table. Reads only the headers, before any weight loads; `name` names the checkpoint in the message
    (default: the folder). Returns the weights' format from those headers (None: no weights)."""
    import torch
    from transformers import AutoModelForCausalLM

    label = name or folder
    check_not_pickled(folder, label)
    stored = _headers(folder, label)
    if not stored:
        return None  # no weights: transformers says what is missing
    try:
        with torch.device("meta"):  # shapes only, on a copy: the config's dtype and attention are the load's to refuse
            model = AutoModelForCausalLM.from_config(copy.deepcopy(config), dtype=torch.float32,
                                                     attn_implementation="eager")
    except (ValueError, TypeError, KeyError, ArithmeticError, AssertionError) as error:  # e.g. yarn's beta_fast < 0
        raise LoadError(f"{label} cannot be loaded: its config builds no gpt-oss model ({first_line(error)})") from None
    known = {"lm_head.weight"}  # tied to the embedding, a stored one is taken (with a warning) as untied
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue  # the embedding matrix, stored once
        wanted = {name: (tuple(tensor.shape), None)}  # None: any floating-point dtype
        if name.endswith(EXPERT_WEIGHTS) and f"{name}_blocks" in stored:  # MXFP4, rows are output features
            if getattr(config, "quantization_config", None) is None:  # transformers would load them as unexpected
                raise LoadError(f"{label} cannot be loaded: the weight {name} is stored in MXFP4 ({name}_blocks), but "
                                "its config has no quantization_config: add \"quantization_config\": "
                                "{\"quant_method\": \"mxfp4\"} to its config.json")
            experts, inputs, outputs = tensor.shape
            wanted = {f"{name}_blocks": ((experts, outputs, inputs // 32, 16), "U8"),
                      f"{name}_scales": ((experts, outputs, inputs // 32), "U8")}
        known.update(wanted)
        for key, (shape, dtype) in wanted.items():
            if key not in stored:
                raise LoadError(f"{label} cannot be loaded: the weight {key} is missing from its .safetensors files")
            got_shape, got_dtype = stored[key]
            if got_shape != shape:
                raise LoadError(f"{label} cannot be loaded: the weight {key} has shape {got_shape}, the config needs {shape}")
            if got_dtype != dtype and not (dtype is None and got_dtype in _STORED_FLOATS):
                raise LoadError(f"{label} cannot be loaded: the weight {key} is stored as {got_dtype}, "
                                f"not {dtype or 'floating point'}")
    if extra := sorted(set(stored) - known):
        raise LoadError(f"{label} cannot be loaded: its .safetensors files hold the weight "
                        f"{printable(clip(extra[0], 120))}, which the model its config describes has no place for (transformers would leave it out, and "
                        "answer with another model than the one saved): check its config.json (attention_bias, "
                        "num_hidden_layers ...)")
    return _stored(stored)


def check_scales(folder: str, dtype: str, name: str | None = None) -> None:
    """A one-line LoadError for an MXFP4 expert scale that makes weights infinite in `dtype`: a scale byte s stands
    for 2**(s - 127), transformers dequantizes without a check, so 255 (NaN in the MX format, in any dtype) or any s
    where 6 (the largest 4-bit value) times it overflows loaded inf weights, and every turn wrote "!!!!" (NaN logits).
    Reads the scales only, 1/16 of the experts' bytes; `name` names the checkpoint (default: the folder)."""
    import torch
    from safetensors import SafetensorError, safe_open

    from ..tiny.quantize import E2M1, SCALE_BIAS

    label = name or folder
    limit = min(254, SCALE_BIAS + math.floor(math.log2(torch.finfo(getattr(torch, dtype)).max / E2M1[-1])))
    suffixes = tuple(f"{weight}_scales" for weight in EXPERT_WEIGHTS)
    for shard in _weight_files(Path(folder), label):
        try:
            with safe_open(shard, "pt") as f:
                for key in f.keys():
                    if key.endswith(suffixes):
                        scales = f.get_tensor(key)
                        if scales.numel() and (top := int(scales.max())) > limit:
                            raise LoadError(f"{label} cannot be loaded: the MXFP4 scales {key!r:.120} "
                                            + _scale_refusal(top, dtype, limit))
        except (OSError, SafetensorError) as error:
            raise LoadError(f"{label} cannot be loaded: {printable(shard.name)} is damaged or incomplete "
                            f"({first_line(error)}); copy or download it again") from None


def _scale_refusal(top: int, dtype: str, limit: int) -> str:
    """Why the MXFP4 scale byte `top` cannot load in `dtype`: 255 is the MX format's NaN (a float64 load was told
    6 × 2**128 is infinite there); a byte above `limit` makes weights infinite in `dtype`."""
    from ..tiny.quantize import SCALE_BIAS

    if top == 255:
        return ("hold 255, which the MX format reserves for NaN (transformers would read it as 2**128): the "
                "checkpoint is damaged; copy or download it again")
    power = top - SCALE_BIAS
    return (f"hold {top} (2**{power}), too large for {dtype}: weights up to 6 × 2**{power} would be infinite; "
            f"scales go up to {limit}")


def check_sampling(folder: str, name: str) -> None:
    """A one-line LoadError (naming `name`) for a generation_config.json that the load fails on (no object) or whose
    sampling defaults every sampled turn would fail on: each must be a number `%gptoss config` accepts. A file that is
    no JSON (or no UTF-8) is left to transformers, which ignores it; one nested too deep, or with a number of 4,300
    digits or more, transformers raises on after every weight has loaded."""
    from ..settings import SettingsError, make

    path = Path(folder) / "generation_config.json"
    _json_file(path, name)
    try:
        data = json.loads(path.read_bytes()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return
    except (ValueError, RecursionError) as error:
        raise LoadError(f"{name} cannot be loaded: its generation_config.json cannot be read ({first_line(error)})") from None
    wrong = f"{name} cannot be loaded: its generation_config.json"
    if not isinstance(data, dict):
        raise LoadError(f"{wrong} must be an object, not {data!r:.40}")
    if not data.get("do_sample"):
        return  # greedy: the engine does not use them
    values = {key: data[key] for key in ("temperature", "top_p") if data.get(key) is not None}
    for key, value in values.items():
        if not isinstance(value, (int, float)):
            raise LoadError(f"{wrong} is wrong: {key} must be a number, not {value!r:.40}")
    try:
        make(values)
    except SettingsError as error:
        raise LoadError(f"{wrong} is wrong: {error}") from None


def folder_of(source: Source, hub_kw: dict[str, Any]) -> str | None:
    """The folder that will load, where it is known before the load: a local one, or for a Hub id loaded offline
    (`local_files_only`) its snapshot in the Hugging Face cache, which is exactly what transformers reads, so it is
    checked as a folder is (its JSON files, an adapter, the weights' headers, dtype and scales). None otherwise."""
    if not source.hub:
        return source.path
    if not hub_kw.get("local_files_only"):
        return None  # transformers downloads what the Hub has now: the loaded weights are checked after the load
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(source.path, revision=hub_kw.get("revision"), cache_dir=hub_kw.get("cache_dir"),
                                   local_files_only=True, allow_patterns=["*.json", "*.safetensors"])
    except (OSError, ValueError):  # not cached (LocalEntryNotFoundError is an OSError), a bad revision
        return None
    return str(Path(folder) / hub_kw.get("subfolder", ""))


def read_json(path: Path, label: str) -> Any:
    """A checkpoint's JSON file, refused in one line (naming `label`) when it is too large or not JSON."""
    _json_file(path, label)
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError) as error:  # ValueError: not JSON, not UTF-8
        raise LoadError(f"could not read {label}: {path.name}: {first_line(error)}") from None


def _json_file(path: Path, label: str) -> None:
    """A one-line LoadError, before anything reads it, for a JSON file (or link) that is there but no regular file
    with contents of a checkpoint's size: a FIFO or /dev/zero waits or reads forever, /proc/kmsg (a "regular" file
    of 0 bytes) waits for kernel messages, a sparse file of terabytes fills the memory."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return  # absent (or a dangling link): the caller says what is missing
    except OSError as error:
        raise LoadError(f"{label} cannot be loaded: {path.name} cannot be read ({error.strerror or error})") from None
    if not S_ISREG(stat.st_mode):
        raise LoadError(f"{label} cannot be loaded: {path.name} is not a regular file")
    if stat.st_size == 0:
        raise LoadError(f"{label} cannot be loaded: {path.name} is empty (0 bytes on disk)")
    if stat.st_size > MAX_JSON_BYTES:
        raise LoadError(f"{label} cannot be loaded: {path.name} is {size(stat.st_size)}, more than a checkpoint's JSON "
                        f"file can be ({size(MAX_JSON_BYTES)})")


def _weight_files(folder: Path, label: str) -> list[Path]:
    """The .safetensors files transformers will read: model.safetensors, else the shards its index names (each a
    .safetensors file in the folder: the index must not reach elsewhere nor name a pickle), else none."""
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.exists():
        return [single]
    if not index.exists():
        return []
    data = read_json(index, label)
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map or not all(isinstance(v, str) for v in weight_map.values()):
        raise LoadError(f"{label} cannot be loaded: {index.name} has no weight_map of tensor names to shard files")
    if not isinstance(data.get("metadata"), dict):  # transformers adds to it: a KeyError or TypeError mid-load
        raise LoadError(f"{label} cannot be loaded: {index.name} has no metadata object (it may be empty: {{}})")
    shards = sorted(set(weight_map.values()))
    present = {path.name for path in folder.iterdir()}  # not a lookup per name: one too long for the file system raises
    for shard in shards:
        if shard in ("", ".", "..") or Path(shard).name != shard:
            raise LoadError(f"{label} cannot be loaded: {index.name} names the shard {shard!r:.80}, which is not a file "
                            "in the checkpoint folder")
        if shard not in present or not (folder / shard).exists():  # exists: not a link to a blob never downloaded
            raise LoadError(f"{label} cannot be loaded: the shard {shard!r:.80} named in {index.name} is missing; "
                            "copy or download it again")
        if not shard.endswith(".safetensors"):  # transformers reads any other shard with torch.load: a pickle
            raise LoadError(f"{label} cannot be loaded: {index.name} names the shard {shard!r:.80}, which is no "
                            ".safetensors file (transformers would unpickle it, and a pickle can run code): "
                            "give safetensors shards")
    return [folder / shard for shard in shards]


def own_weight_files(folder: Path, label: str) -> list[Path]:
    """The .safetensors files a load of `folder` reads, refused in one line where one is no file of the folder's own
    (`own_file`): a command writing a new checkpoint from them (quantize, llamacpp) copied the tensors a link out of
    the folder pointed to, or a stray file no load reads, into the checkpoint the user may publish."""
    shards = _weight_files(folder, label)
    for shard in shards:
        if not own_file(folder, shard):
            raise LoadError(f"could not read {label}: {printable(shard.name)} is no file of the folder's own (a link "
                            "out of it, or no regular file): copy the file itself into the folder")
    return shards


def _headers(folder: str, label: str) -> dict[str, tuple[tuple[int, ...], str]]:
    """(shape, safetensors dtype) of every tensor in the .safetensors files transformers will read, from their headers
    alone; a tensor in two shards is refused (transformers would take one copy or the other without a word)."""
    from safetensors import SafetensorError, safe_open

    found: dict[str, tuple[tuple[int, ...], str]] = {}
    where: dict[str, str] = {}  # tensor name -> the shard it is in
    for shard in _weight_files(Path(folder), label):
        if not shard.is_file():  # e.g. a FIFO, whose read would wait forever (here and in transformers)
            raise LoadError(f"{label} cannot be loaded: {printable(shard.name)} is not a regular file")
        try:
            str(shard).encode()
        except UnicodeEncodeError:  # safetensors takes UTF-8 paths only; the file itself is fine
            raise LoadError(f"{label.encode(errors='backslashreplace').decode()} cannot be loaded: its path is not "
                            "valid UTF-8, which safetensors cannot open: rename the folder") from None
        try:
            with safe_open(shard, "pt") as f:
                for name in f.keys():
                    if name in where:
                        raise LoadError(f"{label} cannot be loaded: the weight {name!r:.120} is in two shards, "
                                        f"{where[name]!r:.80} and {shard.name!r:.80}: remove one copy")
                    tensor = f.get_slice(name)
                    found[name], where[name] = (tuple(tensor.get_shape()), tensor.get_dtype()), shard.name
        except (OSError, SafetensorError) as error:
            raise LoadError(f"{label} cannot be loaded: {printable(shard.name)} is damaged or incomplete "
                            f"({first_line(error)}); copy or download it again") from None
    return found


# ------------------------------------------------------------------ counting, from the config alone


@dataclass(frozen=True)
class Parameters:
    """Parameter counts of a GptOss config: all of them, those one token uses, and the expert weights among them."""

    total: int
    active: int   # what one token computes with: top-k experts, attention, routers, the output matrix (not the embedding lookup)
    experts: int  # expert projection weights (what MXFP4 stores in 4 bits); biases excluded

    @property
    def rest(self) -> int:
        return self.total - self.experts


def count_parameters(config: Any) -> Parameters:
    """Exact parameter counts of `GptOssForCausalLM(config)`, computed from the config's sizes."""
    h, inter, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    heads, kv_heads, head_dim = config.num_attention_heads, config.num_key_value_heads, config.head_dim
    experts, top_k, vocab = config.num_local_experts, config.num_experts_per_tok, config.vocab_size
    bias = 1 if config.attention_bias else 0
    q, kv = heads * head_dim, kv_heads * head_dim
    attention = (h + bias) * q + 2 * (h + bias) * kv + q * h + bias * h + heads  # q, k, v, o projections and sinks
    expert_weights = h * 2 * inter + inter * h
    expert_biases = 2 * inter + h
    router = experts * h + experts
    per_layer = attention + router + experts * (expert_weights + expert_biases) + 2 * h  # two RMSNorms
    embedding = vocab * h
    output = 0 if config.tie_word_embeddings else vocab * h
    total = embedding + output + layers * per_layer + h
    active_layer = attention + router + top_k * (expert_weights + expert_biases) + 2 * h
    active = layers * active_layer + h + vocab * h  # the output matrix is used in full, tied or not
    return Parameters(total, active, layers * experts * expert_weights)


def is_mxfp4(config: Any, stored: Stored | None = None) -> bool:
    """Whether the checkpoint stores its experts in MXFP4 (see `stores_mxfp4`), all of them (a mixed one loads
    dequantized), and its config does not ask to dequantize them (they stay packed where the kernels run)."""
    return (stores_mxfp4(config, stored) and not (stored is not None and stored.mixed)
            and not _quantization(config).get("dequantize"))


def stores_mxfp4(config: Any, stored: Stored | None = None) -> bool:
    """Whether the experts are stored in MXFP4, dequantized on load or not: as the safetensors headers say (`stored`),
    else, where no weights were read, as a config (or a config.json's contents) says."""
    if stored is not None:   # a bf16 checkpoint whose config.json claims MXFP4 was described and sized as MXFP4
        return stored.mxfp4
    return _claims_mxfp4(config)


def _claims_mxfp4(config: Any) -> bool:
    """Whether a config (or a config.json's contents) says the experts are MXFP4, whatever its weights hold."""
    return str(_quantization(config).get("quant_method", "")).lower().endswith("mxfp4")


def format_mismatch(config: Any, stored: Stored | None) -> str | None:
    """One line when config.json claims MXFP4 experts that the safetensors headers hold unquantized (the reverse is
    refused by `check_tensors`); None when they agree or no weights were read."""
    if stored is None or stored.mxfp4 or not _claims_mxfp4(config):
        return None
    return (f"its config.json's quantization_config says MXFP4, but its safetensors hold the experts unquantized "
            f"({stored.dtype or 'floating point'}): they load as stored")


def _quantization(config: Any) -> dict[str, Any]:
    quant = (config.get("quantization_config") if isinstance(config, dict)
             else getattr(config, "quantization_config", None)) or {}
    return quant if isinstance(quant, dict) else quant.to_dict()


def dtype_name(config: Any, dtype: Any = None, stored: Stored | None = None) -> str:
    """The dtype the weights load in: the one asked for, else the config's, else the checkpoint's floating dtype
    (`stored`, as `check_folder` read it), else bfloat16."""
    if dtype not in (None, "auto"):
        return _asked_dtype(dtype)
    configured = getattr(config, "dtype", None)
    if configured:
        name = str(configured).removeprefix("torch.")
        if name not in ITEMSIZE:  # e.g. int8, which transformers cannot build a GptOss model in
            raise LoadError(f"the config's dtype {name!r} is not one the weights can load in: give dtype= one of "
                            f"{', '.join(ITEMSIZE)}")
        return name
    return (stored and stored.dtype) or "bfloat16"  # the released gpt-oss weights are bf16 next to MXFP4 experts


def _asked_dtype(dtype: Any) -> str:
    """The name of a dtype asked for ("bfloat16", "torch.float16", torch.float32); LoadError in one line for any other."""
    name = str(dtype).removeprefix("torch.")
    if name not in ITEMSIZE:
        meant = _DTYPE_MEANT.get(name.casefold()) or (name.casefold() if name.casefold() in ITEMSIZE else None)
        raise LoadError(f"unknown dtype {str(dtype)!r}{f' (did you mean {meant!r}?)' if meant else ''}: use one of "
                        f"{', '.join(ITEMSIZE)}")
    return name


def weight_bytes(config: Any, dtype: str, *, packed: bool) -> int:
    """Bytes of the loaded weights in `dtype`, expert projections in MXFP4 when `packed`."""
    params = count_parameters(config)
    itemsize = ITEMSIZE[dtype]
    experts = params.experts * (MXFP4_BYTES if packed else itemsize)
    return int(experts + params.rest * itemsize)


@dataclass(frozen=True)
class KVCache:
    """Key/value cache sizes of a GptOss layout: full-attention layers keep every token, sliding ones at most the window."""

    per_token_layer: int  # bytes of keys and values of one token in one layer
    full_layers: int
    sliding_layers: int
    window: int

    @classmethod
    def of(cls, config: Any, dtype: str = "bfloat16") -> KVCache:
        types = list(getattr(config, "layer_types", None) or ["full_attention"] * config.num_hidden_layers)
        sliding = sum(t == "sliding_attention" for t in types)
        per = 2 * config.num_key_value_heads * config.head_dim * ITEMSIZE[dtype]
        return cls(per, len(types) - sliding, sliding, int(config.sliding_window or 0))

    def bytes(self, tokens: int, *, keep_past: bool = False) -> int:
        """Cache bytes for `tokens` tokens; `keep_past` when sliding layers keep old states to rewind (the lab's engine)."""
        sliding = tokens if keep_past else min(tokens, self.window)
        return self.per_token_layer * (self.full_layers * tokens + self.sliding_layers * sliding)

    def store_peak(self, tokens: int, limit: int) -> int:
        """The lean CPU forward's KV store (`fastpath`) at its peak on the way to `tokens`: it doubles as it grows (up
        to the context `limit`), and the old buffers, under `tokens` positions, stay beside the new ones as they copy."""
        return self.bytes(min(2 * tokens, max(tokens, limit)), keep_past=True) + self.bytes(tokens, keep_past=True)


def attention_scratch(config: Any, tokens: int, chunk: int, dtype: str = "bfloat16", *, lean: bool = False) -> int:
    """Peak working bytes of one attention layer at `tokens` of context, prompts computed `chunk` tokens at a time.

    Eager attention: the scores (heads × chunk × context, a few live copies) and the keys and values repeated for
    every query head (transformers' `repeat_kv`); both are transient, so only one layer's count matters. `lean`: the
    lab's CPU forward (`fastpath`), whose fused kernel keeps no scores: a few float32 copies of a chunk's queries,
    keys and values, whatever the context.
    """
    heads, itemsize = config.num_attention_heads, ITEMSIZE[dtype]
    if lean:
        return LEAN_COPIES * heads * min(tokens, chunk) * config.head_dim * 4
    scores = heads * min(tokens, chunk) * tokens * itemsize * SCORE_COPIES
    repeated = 2 * heads * tokens * config.head_dim * itemsize
    return int(scores + repeated)


# ------------------------------------------------------------------ this machine


def mxfp4_kernels(target: Any = None, *, use_kernels: bool = False) -> str | None:
    """None when transformers can keep MXFP4 experts packed on `target`; else why it will dequantize them, in words.

    Mirrors transformers' own checks (quantizers/quantizer_mxfp4.py): a CUDA GPU of compute capability
    ≥ 7.5 with triton ≥ 3.4, or a CPU with `use_kernels=True` and triton ≥ 3.5; the `kernels` package
    in the version range transformers accepts, accelerate, and the hub kernel within reach.
    """
    import torch
    from transformers.utils import import_utils as iu

    text = str(target if target is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    if text.startswith("cpu"):  # a multi-device map without a GPU is planned as "cpu" (plan_load)
        if not use_kernels:
            return "transformers runs MXFP4 on a CPU only with use_kernels=True"
        if not iu.is_triton_available("3.5.0"):
            return "triton ≥ 3.5 is not installed (MXFP4 on CPU)"
    else:
        if not torch.cuda.is_available():   # (mps, xpu ... too: the kernels run on CUDA GPUs)
            return f"torch {torch.__version__} sees no CUDA GPU"
        if missing := missing_gpu(text):
            return missing
        device = torch.device(int(text) if text.isdigit() else text if text.startswith("cuda") else "cuda")
        capability = torch.cuda.get_device_capability(device)
        if capability < (7, 5):
            return (f"{torch.cuda.get_device_name(device)} has compute capability {capability[0]}.{capability[1]}, "
                    "MXFP4 kernels need 7.5 or more")
        if not iu.is_triton_available("3.4.0"):
            return "triton ≥ 3.4 is not installed (`pip install triton`)"
    if not iu.is_kernels_available():
        return (f"the `kernels` package {iu.KERNELS_MIN_VERSION} ≤ version < {iu.KERNELS_MAX_VERSION} is not installed "
                f"(`pip install 'kernels>={iu.KERNELS_MIN_VERSION},<{iu.KERNELS_MAX_VERSION}'`)")
    if not iu.is_accelerate_available():
        return "accelerate is not installed (`pip install accelerate`)"
    if not hub_reachable() and not _cached(MXFP4_KERNEL_REPO):
        return f"the hub kernel {MXFP4_KERNEL_REPO} is not in the Hugging Face cache and the Hub cannot be reached"
    return None


def _cached(repo_id: str) -> bool:
    """Whether a hub repository has a snapshot in the local Hugging Face cache."""
    from huggingface_hub import constants

    folder = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    return folder.is_dir() and any(folder.iterdir())


def _device_meant(device: Any) -> str:
    """` (did you mean 'cuda'?)` for a device torch would know in lower case, or written `gpu` (`CUDA`, `GPU:1`), else
    ""."""
    import torch

    meant = re.sub(r"^gpu\b", "cuda", str(device).strip().casefold())
    try:
        torch.device(meant)
    except (RuntimeError, TypeError, ValueError):
        return ""
    return f" (did you mean {meant!r}?)"


def check_device(device: Any) -> None:
    """A one-line LoadError for a device torch does not know, or one that holds no weights (meta: shapes only, where
    "Loading ... on meta" was printed and transformers then asked for accelerate); None: the default; a GPU index is one."""
    import torch

    if device is None or str(device).isdigit():
        return
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError, ValueError):
        raise LoadError(f"{device!r} is not a device{_device_meant(device)}: use cpu, cuda, cuda:1, mps ...") from None
    if kind == "meta":
        raise LoadError(f"{device!r} holds no weights (tensors there have shapes only), so no model can answer there: "
                        "use cpu, cuda, cuda:1, mps ...")


def check_prefill_chunk(tokens: Any) -> None:
    """A one-line ValueError for a prefill chunk that is no whole number of tokens, 1 or more: 0 failed every turn with
    range()'s error, -1 with an UnboundLocalError, and either sized no attention scores in the doctor."""
    if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 1:
        raise ValueError(f"prefill_chunk must be a whole number of tokens, 1 or more, not {tokens!r:.40}")


def default_device(device: Any) -> Any:
    """`device`, or where a load goes when none is given: the GPU when there is one, else the CPU. GPU 0 is a device
    (`device=0` loaded on the CPU of a machine without one, and on the current GPU of one with several)."""
    import torch

    return device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")


def on_gpu(target: Any) -> bool:
    """Whether `target` names one CUDA GPU: "cuda", "cuda:1" or a GPU index."""
    text = str(target)
    return text.startswith("cuda") or text.isdigit()


def check_gpu(target: Any, model: Any, call: str = "Session.load", hint: str = "") -> None:
    """A one-line LoadError when `target` is a CUDA GPU and torch sees none, or another accelerator (mps, xpu ...)
    torch cannot put a tensor on here, where "Loading ... on mps" was printed and transformers then asked for
    accelerate. The message names `call` for `model` on the devices there are (`hint` ends it)."""
    import torch

    if missing := missing_gpu(target):
        _use_another(f"{target} was asked for, but {missing} here", ("cuda",) * torch.cuda.is_available() + ("cpu",),
                     f"{call}({str(model)!r}", hint)
    if (kind := _unusable_device(target)) is not None:
        _use_another(f"{target} was asked for, but torch {torch.__version__} finds no {kind} device here", ("cpu",),
                     f"{call}({str(model)!r}", hint)


def _use_another(reason: str, devices: tuple[str, ...], call: str, hint: str) -> NoReturn:
    """Refuse a device this machine lacks, naming the `call` (`Session.load('tiny'` and its other arguments, open)
    on each of `devices`."""
    raise LoadError(f"{reason}: use {' or '.join(f'{call}, device={d!r})' for d in devices)}{hint}", reason=reason,
                    instead=tuple({"device": d} for d in devices))


def missing_gpu(target: Any) -> str | None:
    """Why the CUDA GPU `target` names is not on this machine ("torch ... sees no CUDA GPU", or the GPUs it has, for
    cuda:7 on a machine of one: torch's "invalid device ordinal" was a traceback); None where it is, or for no GPU."""
    import torch

    if not on_gpu(target):
        return None
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA GPU"
    index, count = _gpu_index(target), torch.cuda.device_count()
    if index is not None and index >= count:
        return f"torch sees {count} CUDA GPU{'s' * (count > 1)} (cuda:0{f' to cuda:{count - 1}' * (count > 1)})"
    return None


def _gpu_index(target: Any) -> int | None:
    """The GPU index `target` ("cuda:1", "1") names; None for plain "cuda" (the current GPU)."""
    import torch

    text = str(target)
    return int(text) if text.isdigit() else torch.device(text).index


def _unusable_device(target: Any) -> str | None:
    """The device type of `target` (a device other than the CPU, a CUDA GPU or meta) when torch cannot place a
    tensor there; None for any other target (a device map among them)."""
    import torch

    if not isinstance(target, str | torch.device) or on_gpu(target):
        return None
    try:
        kind = torch.device(target).type
    except (RuntimeError, TypeError, ValueError):  # a device map's name ("auto", "disk")
        return None
    if kind in ("cpu", "meta"):
        return None
    try:
        torch.empty(0, device=target)
    except Exception:  # what a backend torch lacks raises: NotImplementedError, AssertionError, ImportError ...
        return kind
    return None


def free_bytes(target: Any) -> int | None:
    """Free memory where the weights will go: RAM, one GPU, or all of them for a multi-device map."""
    import torch

    if isinstance(target, dict):
        return None
    text = str(target)
    gpus = range(torch.cuda.device_count()) if torch.cuda.is_available() else range(0)
    if text in _MULTI_DEVICE_MAPS:
        return available_ram() + sum(torch.cuda.mem_get_info(i)[0] for i in gpus)
    if on_gpu(text):
        return torch.cuda.mem_get_info(torch.device(int(text) if text.isdigit() else text))[0]
    return available_ram()


def available_ram() -> int:
    """RAM that can be allocated without swapping."""
    import psutil

    return int(psutil.virtual_memory().available)


# ------------------------------------------------------------------ the load


@dataclass
class LoadPlan:
    """What `AutoModelForCausalLM.from_pretrained` gets, what the weights will take, and a note for the user."""

    source: Source
    target: Any
    kwargs: dict[str, Any] = field(default_factory=dict)
    weights: int = 0
    how: str = ""
    note: str | None = None  # one line, e.g. that MXFP4 experts are dequantized here and what that costs
    packed: bool = False  # MXFP4 experts are meant to stay packed (transformers may still dequantize them)
    folder: str | None = None  # the local folder the weights load from (a Hub id's cache snapshot), where known

    def failed(self, error: BaseException) -> LoadError:
        """The one-line LoadError for an exception transformers raised while loading. The exception (the LoadError's
        context) loses its traceback, whose frames held the half-loaded model: kept as the notebook's last error,
        its memory stayed taken, and a second try found too little free."""
        cause: BaseException | None = error
        while cause is not None:
            cause.__traceback__ = None
            cause = cause.__cause__ or cause.__context__
        if isinstance(error, LoadError):  # no_unpickling's refusal, raised inside transformers
            return error
        if isinstance(error, OSError) and self.kwargs.get("local_files_only") and self.source.hub:
            return LoadError(offline_message(self.source.path))  # a file the cache lacks (not a broken one it has)
        from safetensors import SafetensorError

        if isinstance(error, SafetensorError):
            return LoadError(f"{self.source.path} cannot be loaded: a .safetensors file is damaged or incomplete "
                             f"({first_line(error)}); copy or download it again")
        return LoadError(f"{self.source.path} cannot be loaded: {first_line(error)}")


_LOAD_MODULES = ("torch", "transformers.models.auto.modeling_auto", "transformers.models.gpt_oss.modeling_gpt_oss")


def import_held(*modules: str) -> None:
    """Import `modules` (default: torch and the parts of transformers a load uses) with Ctrl-C held until they are in,
    then honoured: an import cut short can leave a module half made for the process's life. Cut inside `import torch`,
    every later load failed with "Only a single TORCH_LIBRARY can be used ..."; cut inside transformers' import of
    torch's lazy parts (sympy, torch._dynamo), with "Could not import module 'GenerationMixin'"."""
    import signal
    import sys
    import threading

    names = modules or _LOAD_MODULES
    if all(name in sys.modules for name in names) or threading.current_thread() is not threading.main_thread():
        return
    pressed = []
    previous = signal.signal(signal.SIGINT, lambda *args: pressed.append(True))
    try:
        for name in names:
            importlib.import_module(name)
    except ImportError as error:
        top = name.partition(".")[0]
        if importlib.util.find_spec(top) is None:
            raise LoadError(f"{top} is not installed: the lab loads models with torch and transformers") from None
        raise LoadError(f"could not import {name} ({first_line(error)}); if an import was cut short (Ctrl-C), "
                        "restart the kernel") from None
    finally:
        signal.signal(signal.SIGINT, previous)
    if pressed:
        raise KeyboardInterrupt


def plan_load(
    name_or_path: str | Path,
    *,
    device: str | None = None,
    dtype: Any = None,
    device_map: Any = None,
    dequantize: bool = False,
    **kw: Any,
) -> LoadPlan:
    """Everything decided before the weights load; raises LoadError (one line) for what cannot work.

    `dequantize=True` loads MXFP4 experts as `dtype` even where the kernels could keep them packed
    (e.g. to record routing, which the fused MXFP4 MoE kernel hides).
    """
    import_held()
    import torch

    unknown = sorted(set(kw) - set(_LOAD_OPTIONS))
    if unknown:  # transformers would override the config with it, past the checks (sliding_window=0), or fail
        from ..settings import Settings

        name = unknown[0]
        hint = (f"{name} is a session setting: pass session_options={{{name!r}: ...}} or configure it after the load"
                if name in Settings.names() else
                f"give device=, dtype=, device_map=, dequantize= or one of {', '.join(_LOAD_OPTIONS)}")
        raise LoadError(f"{name} is not an option of a load: {hint}")
    if device is not None and device_map is not None:   # the map placed the weights, and device= was dropped unsaid
        raise LoadError(f"give device= or device_map=, not both: a device map places the weights itself, so "
                        f"device={device!r} would be ignored")
    if kw.get("trust_remote_code"):
        raise LoadError("trust_remote_code=True is refused: gpt-oss runs on transformers' own code, and a checkpoint's "
                        "code would run with this kernel's full authority")
    if kw.get("use_safetensors") is False:
        raise LoadError("use_safetensors=False is refused: pickled weights (pytorch_model.bin) can run code with this "
                        "kernel's full authority when loaded")
    kw["use_safetensors"] = True  # transformers would otherwise fall back to pytorch_model.bin
    if kw.get("subfolder") and isinstance(name_or_path, str | Path) and name_or_path != "tiny" \
            and local_path(name_or_path).is_dir():  # a local folder's subfolder is the folder that loads, checks
        name_or_path = local_path(name_or_path) / kw.pop("subfolder")  # included (the top one need hold no config.json)
    source = resolve(name_or_path)
    hub_kw = {k: kw[k] for k in _HUB_KW if k in kw}
    if source.hub and not hub_reachable():
        kw["local_files_only"] = hub_kw["local_files_only"] = True
    local = folder_of(source, hub_kw)
    config = read_config(source, hub_kw, local)
    check_implementations(config, kw, source.path)
    stored = check_folder(local, config, source.path) if local is not None else None

    dtype = getattr(torch, _asked_dtype(dtype)) if isinstance(dtype, str) and dtype != "auto" else dtype
    if device_map in _MULTI_DEVICE_MAPS and not torch.cuda.is_available():
        device_map, device = None, "cpu"  # all a map spreads over here: loaded as on a CPU (its dtype, its threads)
    if device_map is None:  # refused before "Loading ... on bogus" is printed, not by transformers after it
        check_device(device)
        if device is not None and not str(device).isdigit() and torch.device(device).type == "cpu":
            device = "cpu"   # cpu:7 is the CPU: it loaded in bfloat16, then failed for want of accelerate
    target = device_map if device_map is not None else default_device(device)
    if device_map is not None and importlib.util.find_spec("accelerate") is None:
        one = default_device(None)   # (cuda on a machine without one was the way on)
        reason = f"device_map={device_map!r} needs the accelerate package (pip install accelerate), or load on one device"
        raise LoadError(f"{reason}: use Session.load({str(name_or_path)!r}, device={one!r})", reason=reason,
                        instead=({"device": one},))
    check_gpu(target, name_or_path)
    on_cpu = str(target).startswith("cpu")
    attention = getattr(config, "_attn_implementation", None) or kw.get("attn_implementation")  # the config's outranks
    attention = str(attention).removeprefix("paged|")
    if on_cpu and attention == "flex_attention":
        raise LoadError(f"{source.path} cannot be loaded: flex_attention cannot run gpt-oss's attention sinks on a CPU "
                        "(transformers refuses it at every turn): use attn_implementation='eager', or load on a GPU")
    if on_cpu and attention.startswith("flash_attention"):  # transformers fetched a GPU kernel, then said to trust it
        raise LoadError(f"{source.path} cannot be loaded: {attention} runs on a GPU only: use "
                        "attn_implementation='eager', or load on a GPU")
    free = free_bytes(target)
    if dtype is None and (default := cpu_default(config, target, free)):
        dtype = getattr(torch, default)
    name = dtype_name(config, dtype, stored)
    plan = LoadPlan(source, target, kw, folder=local)
    packed = False
    if mismatch := format_mismatch(config, stored):  # loaded as on a CPU: kernels would look for blocks not there
        from transformers import Mxfp4Config

        kw["quantization_config"] = Mxfp4Config(dequantize=True)
        plan.note = f"{source.name}: {mismatch}"
    elif dequantize and not stores_mxfp4(config, stored):
        plan.note = f"{source.name} stores no MXFP4 experts: dequantize changes nothing"
    elif stored is not None and stored.mixed:  # was "stores its experts in MXFP4", sized and kept packed as if all were
        from transformers import Mxfp4Config

        kw["quantization_config"] = Mxfp4Config(dequantize=True)
        plan.note = (f"{source.name} stores its experts in {stored.experts_as()}: they load dequantized to {name} "
                     "(only experts all in MXFP4 stay packed)")
    if is_mxfp4(config, stored):
        reason = "dequantize=True was asked for" if dequantize else mxfp4_kernels(target, use_kernels=bool(kw.get("use_kernels")))
        packed = reason is None
        if not packed:
            from transformers import Mxfp4Config

            kw["quantization_config"] = Mxfp4Config(dequantize=True)
            plan.note = (f"{source.name} stores its experts in MXFP4, but {reason}: they load dequantized to {name}, "
                         f"{size(weight_bytes(config, name, packed=False))} of weights instead of "
                         f"{size(weight_bytes(config, name, packed=True))}")
    if dtype is None:  # cpu_default found no room for float32
        plan.note = "; ".join(filter(None, (plan.note, not_float32(source.name, config, name, target, free))))
    plan.weights, plan.packed = weight_bytes(config, name, packed=packed), packed
    plan.how = name + (", MXFP4 experts" if packed else "")
    if free is not None and plan.weights > free:
        raise LoadError(_no_room(plan, free))
    if local is not None:  # after the quick refusals: it reads the scales; packed experts compute in bfloat16
        check_scales(local, "bfloat16" if packed else name, source.path)
    if str(target) != "cpu":  # a plain load lands on the CPU; elsewhere transformers needs a device map
        kw["device_map"] = target
    kw["dtype"] = dtype or "auto"
    return plan


def _no_room(plan: LoadPlan, free: int) -> str:
    """Why `plan`'s weights do not fit in the `free` bytes where they go, and what makes room: unloading the models
    this process holds there, where that would (a second load was refused without a word of the first's memory)."""
    short = (f"{plan.source.name} needs about {size(plan.weights)} for its weights ({plan.how}) but only {size(free)} "
             f"is free on {plan.target}")
    hint = unload_hint(plan.target, free, lambda room: plan.weights <= room)
    if hint is None:
        return f"{short}: free some memory or choose another device or dtype"
    return f"{short}, and {hint}, or choose another device or dtype"


def not_float32(label: str, config: Any, name: str, target: Any, free: int | None, *, here: bool = True) -> str | None:
    """Why a CPU load with no dtype asked gets `name`, not the faster float32 (its weights need more than the `free`
    bytes of RAM), and, `here` (this machine's memory), the loaded model to unload where that would make room; None
    where the load is float32 or not on a CPU. The load and the doctor said the slower dtype without a word."""
    if str(target) != "cpu" or name == "float32" or free is None:
        return None
    f32 = weight_bytes(config, "float32", packed=False)
    why = f"{label} loads in {name}, not float32 (2-4x faster on a CPU): its float32 weights take {size(f32)}" + (
        f" and {size(free)} is free" if f32 > free else f" of the {size(free)} free, leaving too little room for "
                                                        f"{_float32_context(config):,} tokens of context")
    hint = unload_hint("cpu", free, lambda room: _float32_fits(config, room)) if here else None
    return f"{why}, and {hint}" if hint else why


def unload_hint(target: Any, free: int, fits: Callable[[int], bool]) -> str | None:
    """"the loaded model N holds X there: unload it first (...)" when `fits(free + what the loaded models hold on
    `target`)`, else None: one wording for the load and the doctor wherever unloading would make room."""
    names, held = held_by_loaded(target)
    if not held or not fits(free + held):
        return None
    one = len(names) == 1
    counted = Counter(names)   # a name loaded twice was listed twice ("tiny, tiny")
    listed = ", ".join(name + (f" ({count} copies)" if count > 1 else "") for name, count in counted.items())
    return (f"the loaded model{'' if one else 's'} {listed} hold{'s' if one else ''} {size(held)} there: "
            f"unload {'it' if one else 'them'} first (%gptoss unload, or session.unload() in Python)")


# the files a gpt-oss checkpoint folder is made of (config, weights and their index, generation config, tokenizer
# data): what the lab's commands stage or copy of a folder, never code (a tokenizer's `auto_map` names a .py) nor
# anything else a shared folder holds
CHECKPOINT_FILES = re.compile(r"config\.json|generation_config\.json|[^/]*\.safetensors|model\.safetensors\.index\.json|"
                              r"tokenizer\.json|tokenizer_config\.json|special_tokens_map\.json|chat_template\.jinja")


def own_file(folder: Path, path: Path) -> bool:
    """Whether `path` (in `folder`) is a regular file of the folder's own: not a link out of it, but for the Hugging
    Face cache's links from a snapshot into its model's `blobs` (`notes.txt -> ~/.cache/huggingface/token` was copied
    into a checkpoint the user may publish; a review)."""
    if not path.is_file():
        return False
    if not path.is_symlink():
        return True
    target, home = path.resolve(), folder.resolve()
    return target.is_relative_to(home) or (target.parent.name == "blobs" and len(home.parents) > 1
                                           and target.parent.parent == home.parents[1])


def checked_folder(folder: str | Path) -> Any:
    """A local checkpoint folder's config, after the checks a load makes before it reads weights (a gpt-oss model,
    implementations transformers would not download, tensors' names, shapes and dtypes from their headers, sampling
    settings): for the commands that read a folder without `plan_load` (tiny's `train --resume`, `llamacpp`), which
    skipped them (a config naming a Hub attention kernel reached transformers; a review)."""
    source = resolve(Path(folder))
    config = read_config(source)
    check_implementations(config, {}, source.path)
    check_folder(source.path, config, source.path)
    return config


def check_folder(folder: str, config: Any, label: str) -> Stored | None:
    """What a load refuses of a checkpoint `folder` (named `label`) before it reads a weight: pickled weights, tensors'
    names, shapes and dtypes from their headers, sampling settings. The doctor asks it too: it said a half-copied
    folder, or one whose config.json lies about its sizes, fits, and the load then refused it. A folder holding no
    weights is refused here (train --resume and llamacpp failed later, with a traceback). Returns the weights' format
    from the headers it read (a second read of every shard sized the dtype)."""
    if not holds_weights(folder):
        raise LoadError(f"{label} has a config.json but no weights (*.safetensors)")
    stored = check_tensors(folder, config, name=label)
    check_sampling(folder, label)
    return stored


def holds_weights(folder: str | Path) -> bool:
    """Whether a checkpoint folder holds any weights file: a .safetensors file, a pickled pytorch_model*.bin or a
    shard its index names. A folder of its JSON files alone (`hf download ... --include "*.json"`) holds none: the
    doctor sizes it from its config (it refused it for a missing shard), a load refuses it."""
    folder = Path(folder)
    if any(folder.glob("*.safetensors")) or any(folder.glob("pytorch_model*.bin*")):
        return True
    index = folder / "model.safetensors.index.json"
    if not index.exists():
        return False
    try:
        data = read_json(index, str(folder))
    except LoadError:
        return True  # an index that cannot be read (a FIFO, no JSON): check_folder says why
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict):
        return True  # an index no checkpoint has: likewise
    present = {path.name for path in folder.iterdir()}
    return any(shard in present for shard in weight_map.values() if isinstance(shard, str))


def check_implementations(config: Any, kw: dict[str, Any], label: str) -> None:
    """A one-line LoadError for an attention or experts implementation the checkpoint's config names that is not in
    transformers' own code and not the one the load asks for: transformers would download a Hub kernel for it and run
    it. Refused even when the load asks for another: a config's "attn_implementation" outranks the load's option
    (transformers 5.25 ignores the private "_attn_implementation" and "_experts_implementation" keys of a config.json)."""
    _check_attention(config, kw, label)
    for kind, (attribute, option, built_in) in _BUILT_IN_IMPLEMENTATIONS.items():
        value = getattr(config, attribute, None)
        if value is not None and value not in built_in and value != kw.get(option):
            raise LoadError(f"{label} cannot be loaded: its config asks for the {kind} implementation "
                            f"{clip(repr(value), 60)}, which transformers would download from the Hub and "
                            f"run: a checkpoint may choose {', '.join(built_in)}")


def _check_attention(config: Any, kw: dict[str, Any], label: str) -> None:
    """A one-line LoadError, before "Loading ..." is printed, for an attention implementation (the config's, else the
    load's) gpt-oss cannot run: transformers has no sdpa attention with gpt-oss's sinks and refused it only after the
    load began, in a clipped paragraph, as it did a name it does not know ("bogus", "eagr")."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    from transformers.models.gpt_oss.modeling_gpt_oss import GptOssPreTrainedModel

    configured = getattr(config, "_attn_implementation", None)
    asked = configured or kw.get("attn_implementation")
    name = asked.removeprefix("paged|") if isinstance(asked, str) else asked  # paged|eager: eager on a paged cache
    if name is None or name == "eager":
        return
    fix = ("remove \"attn_implementation\" from its config.json" if configured else
           "use attn_implementation='eager', or 'flex_attention' on a GPU")
    if name == "sdpa" and not GptOssPreTrainedModel._supports_sdpa:
        raise LoadError(f"{label} cannot be loaded: gpt-oss cannot run the attention implementation 'sdpa' (transformers "
                        f"has none with gpt-oss's attention sinks): {fix}")
    if not isinstance(name, str) or not (name in ALL_ATTENTION_FUNCTIONS.valid_keys() or _HUB_KERNEL.fullmatch(name)):
        raise LoadError(f"{label} cannot be loaded: {clip(repr(asked), 60)} is no attention implementation "
                        f"transformers knows: {fix}")


def cpu_default(config: Any, target: Any, free: int | None) -> str | None:
    """"float32" when the weights load on a CPU and fit in `free` bytes as float32 with room for a context beside them,
    else None (the checkpoint's dtype): most CPUs have no fast bf16 matmuls, so float32 computes 2-4x faster there."""
    if str(target) != "cpu" or (free is not None and not _float32_fits(config, free)):
        return None
    return "float32"


def _float32_context(config: Any) -> int:
    """Tokens of context a float32 CPU load leaves room for, or it loads in the checkpoint's dtype."""
    return min(FLOAT32_CONTEXT, int(config.max_position_embeddings))


def _float32_fits(config: Any, free: int) -> bool:
    """Whether float32 weights and the KV cache of `_float32_context` tokens fit in `free` bytes, headroom kept: weights
    alone that fit left no room for any context ("80 GiB" did not fit gpt-oss-20b where "80 GB" did, in bfloat16)."""
    need = weight_bytes(config, "float32", packed=False) + KVCache.of(config, "float32").bytes(
        _float32_context(config), keep_past=True)
    return need <= free * (1 - HEADROOM)


def check_not_pickled(folder: str, label: str) -> None:
    """A one-line LoadError (naming `label`) for a checkpoint folder whose only weights are pickled
    (pytorch_model*.bin), which the load refuses: said before the load and by the doctor, which found that it fits."""
    if not _weight_files(Path(folder), label) and (pickled := sorted(Path(folder).glob("pytorch_model*.bin*"))):
        raise refused_pickle(label, pickled[0])


def refused_pickle(label: str, weights: Any) -> LoadError:
    """The one-line LoadError for a checkpoint (named `label`) whose weights file `weights` is a pickle."""
    name = printable(clip(Path(str(getattr(weights, "name", weights))).name, 80))
    return LoadError(f"{label} cannot be loaded: its weights are pickled ({name}), which the lab never loads (unpickling "
                     "can run code): give safetensors weights (model.safetensors)")


@contextmanager
def no_unpickling(label: str) -> Iterator[None]:
    """torch.load refused, in one line naming `label`, while a checkpoint loads: transformers reads any weights file
    that is no .safetensors with it, and a Hub repository loaded online (its files fetched by the load, unseen by the
    checks) may name pickled shards; unpickling can run code. The kernel's other threads are refused it too meanwhile."""
    import torch

    def refuse(weights: Any, *args: Any, **kw: Any) -> Any:
        raise refused_pickle(label, weights)

    load = torch.load
    torch.load = refuse
    try:
        yield
    finally:
        torch.load = load


@contextmanager
def quiet_mxfp4_warnings(enabled: bool) -> Iterator[None]:
    """Silence transformers' own MXFP4 fallback warnings while loading, when the plan's note already said it in one line."""
    loggers = [logging.getLogger(n) for n in ("transformers.quantizers.quantizer_mxfp4", "transformers.quantizers.auto")]
    levels = [lg.level for lg in loggers]
    if enabled:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


# ------------------------------------------------------------------ a loaded model


def non_finite(model: Any, folder: str | None, path: str, name: Any) -> LoadError | None:
    """Why the model loaded from `path` (the `name` given) can only compute garbage, naming the first weight that holds
    NaN or an infinity, as the LoadError to raise; else None. The header checks cannot see values, and one NaN in an
    embedding row, a norm or the router loaded and wrote "!!!!" (NaN logits) at every turn. Packed MXFP4 blocks are
    whole numbers (their scales are checked before the load). A weight finite in the checkpoint `folder` (where known)
    was made infinite by the dtype it loaded in: said so, with the load in a dtype that holds it."""
    for weight, tensor in model.named_parameters():
        if tensor.is_floating_point() and tensor.device.type != "meta" and not _all_finite(tensor):
            shown = f"{path} cannot be loaded: the weight {printable(clip(weight, 120))}"
            if _stored_finite(folder, weight):   # bfloat16 values past float16's 65504: a new download mends nothing
                dtype = str(tensor.dtype).removeprefix("torch.")
                # (float64 weights past float32's range want float64)
                wider, fits = ("bfloat16", "bfloat16 or float32") if dtype == "float16" else ("float64", "float64")
                reason = f"{shown} holds values too large for {dtype} (they became infinite): load it in {fits}"
                return LoadError(f"{reason}: use Session.load({str(name)!r}, dtype={wider!r})", reason=reason,
                                 instead=({"dtype": wider},))
            return LoadError(f"{shown} holds NaN or infinite values, so every answer would be garbage: copy or "
                             "download the checkpoint again")
    return None


def _stored_finite(folder: str | None, name: str) -> bool:
    """Whether the tensor `name` is stored in the checkpoint `folder`'s .safetensors with finite values only (False
    where the folder is not known, the tensor is stored under another name, or cannot be read)."""
    from safetensors import SafetensorError, safe_open

    if folder is None:
        return False
    try:
        for shard in _weight_files(Path(folder), folder):
            with safe_open(shard, "pt") as f:
                if name in f.keys():
                    return _all_finite(f.get_tensor(name))
    except (OSError, SafetensorError, LoadError):
        pass
    return False


def _all_finite(tensor: Any) -> bool:
    """Whether every value of a floating-point tensor is finite. A slice's sum is, unless one of its values is not or
    the sum overflows (then each value is looked at): 25 times faster than `isfinite` on every value, and slices keep
    the memory it takes small next to the weights."""
    import torch

    return all(bool(torch.isfinite(part.sum())) or bool(torch.isfinite(part).all())
               for part in tensor.detach().reshape(-1).split(_SCAN_SLICE))


# the lab's loaded models: (name, the folder or Hub id they loaded from)
_LOADED: weakref.WeakKeyDictionary[Any, tuple[str, str]] = weakref.WeakKeyDictionary()


def remember_loaded(model: Any, name: str, origin: str) -> None:
    """Count `model` (named `name`, loaded from the folder or Hub id `origin`) among the models this process holds
    until it is freed, so that a load finding too little memory can say which to unload."""
    _LOADED[model] = printable(clip(name, 60)), os.path.realpath(origin) if os.path.isdir(origin) else origin


def held_by_loaded(target: Any) -> tuple[list[str], int]:
    """The names of the loaded models still held with weights where `target` loads, one per model, a checkpoint
    loaded under two names (`tiny` and its folder's path) named as it was first, and their bytes there (weights and
    buffers): what unloading them would free for `free_bytes(target)`."""
    names, held, first = [], 0, {}
    for model, (name, origin) in list(_LOADED.items()):
        here = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers())
                   if _same_memory(t.device, target))
        if here:
            names.append(first.setdefault(origin, name))
            held += here
    return names, held


def _same_memory(device: Any, target: Any) -> bool:
    """Whether a tensor on `device` takes memory that `free_bytes(target)` counts as not free."""
    import torch

    text = str(target)
    if text in _MULTI_DEVICE_MAPS:
        return device.type in ("cpu", "cuda")
    if on_gpu(text):
        index = _gpu_index(text)
        return device.type == "cuda" and device.index == (torch.cuda.current_device() if index is None else index)
    return device.type == "cpu"


def held_weights(model: Any) -> tuple[str, int] | None:
    """(dtype of the expert weights, bytes of all weights) of a loaded model (or engine) as it is in memory, or None
    when its experts are no floating-point tensors (packed MXFP4: the config counts them). What the config says can
    differ: a model moved to another dtype after its load, or MXFP4 experts transformers dequantized on its own."""
    net = model if hasattr(model, "named_parameters") else getattr(model, "model", None)
    weights = dict(net.named_parameters()) if hasattr(net, "named_parameters") else {}
    experts = [t for name, t in weights.items() if name.endswith(EXPERT_WEIGHTS) and t.is_floating_point()]
    name = str(experts[0].dtype).removeprefix("torch.") if experts else None
    if name not in ITEMSIZE:
        return None
    return name, sum(t.numel() * t.element_size() for t in weights.values())


_MADE_EAGER: weakref.WeakSet[Any] = weakref.WeakSet()  # the models fit_experts turned from grouped_mm to eager


def fit_experts(model: Any) -> None:
    """Run a model's experts eagerly while they are float64, which transformers' default grouped_mm cannot compute
    (after `model.double()` every turn failed), and on the implementation it had again once they are not: after
    `.double()` then `.float()` they stayed eager, slower for good. An implementation the user chose is left as it is."""
    now = getattr(getattr(model, "config", None), "_experts_implementation", None)
    held = held_weights(model)
    if held and held[0] == "float64":
        if now == "grouped_mm":
            model.set_experts_implementation("eager")
            _MADE_EAGER.add(model)
    elif model in _MADE_EAGER:
        _MADE_EAGER.discard(model)
        if now == "eager":  # not one the user set since
            model.set_experts_implementation("grouped_mm")


# the experts a layer a routing record holds (its ids are int16: routing.record.MAX_EXPERT + 1); not imported from
# there, as importing the routing package at every load (pandas and all) changed what a kernel has running
RECORDED_EXPERTS = 32768


def routing_visible(model: Any) -> str | None:
    """None when forward hooks on the routers will see every MoE layer's routing; else why not, in words.

    transformers' `GptOssMLP` calls its `GptOssTopKRouter`; the MXFP4 Triton path (`Mxfp4GptOssMLP`)
    computes the router logits inline and routes inside the kernel, and a hub kernel installed by
    `kernelize` replaces the layer's `forward` — either way the router module is never called.
    """
    from transformers.models.gpt_oss.modeling_gpt_oss import GptOssMLP, GptOssTopKRouter

    layers = [m for m in model.modules() if hasattr(m, "router") and hasattr(m, "experts")]
    if not layers:
        return "the model has no mixture-of-experts layers with a router"
    experts = getattr(model.config, "num_local_experts", 0)
    if isinstance(experts, int) and experts > RECORDED_EXPERTS:  # every routing turn failed with a ValueError
        return f"it has {experts:,} experts a layer, past the {RECORDED_EXPERTS:,} a routing record holds"
    for layer in layers:
        kind = type(layer).__name__
        if "forward" in vars(layer) or "forward" in vars(layer.router):
            return (f"a hub kernel ({getattr(layer, 'kernel_layer_name', 'kernelize')}) replaced the MoE layers' "
                    "forward and routes internally; load it without use_kernels to record routing")
        if kind == "Mxfp4GptOssMLP":
            if not getattr(layer.experts, "_is_hooked", False):
                return ("its MoE layers run transformers' fused MXFP4 kernels, which route inside the kernel without "
                        "calling the router; load it with dequantize=True to record routing")
        elif type(layer).forward is not GptOssMLP.forward:
            return f"its MoE layers ({kind}) are not transformers' GptOssMLP, so the router may not be called"
        if not isinstance(layer.router, GptOssTopKRouter):
            return f"its routers ({type(layer.router).__name__}) are not GptOssTopKRouter modules"
    return None


def size(n: float) -> str:
    """Bytes for people, three figures or so: 13.8 GB, 240 MB, 24.6 MB, 512 kB."""
    if n >= 1e9:
        return f"{n / 1e9:.1f} GB"
    if n >= 1e6:
        return f"{n / 1e6:.{0 if n >= 1e8 else 1}f} MB"
    return f"{n / 1e3:.0f} kB"


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (or its type), clipped, for one-line errors."""
    return clip((str(error).strip().splitlines() or [type(error).__name__])[0])


def printable(text: str) -> str:
    """`text` with control characters (newlines, terminal escapes) spelled as escapes, so a name a checkpoint chose
    (a shard's file name) cannot add lines of its own to a one-line message or a report."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def clip(text: str, limit: int = 300) -> str:
    """`text` cut to `limit` characters: transformers quotes a config's values, which can be megabytes long."""
    return text if len(text) <= limit else text[:limit] + "…"
