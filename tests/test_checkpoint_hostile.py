"""Hostile or damaged checkpoint folders: each refused in one line before any weight loads (or loaded, where
transformers would load it), and nothing in them run: pickled weights, JSON files that fill the memory, configs
transformers builds for minutes or fails on mid-turn, shard indexes that reach outside the folder, stray files."""
from __future__ import annotations

import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gptoss_lab.engines import checkpoint
from gptoss_lab.engines.checkpoint import LoadError
from gptoss_lab.engines.doctor import doctor
from gptoss_lab.engines.local import LocalEngine
from gptoss_lab.tiny.quantize import quantize_checkpoint
from test_kernel import run  # tests/ is on sys.path

# Runs a load in a child whose address space is capped, so a checkpoint that fills the memory fails there, not here.
CAPPED_LOAD = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))
from gptoss_lab.engines.checkpoint import LoadError
from gptoss_lab.engines.local import LocalEngine
try:
    LocalEngine.from_pretrained(sys.argv[1], progress=False)
except LoadError as error:
    print(f"LoadError: {error}")
"""


def one_line_error(call) -> str:
    with pytest.raises(LoadError) as info:
        call()
    assert "\n" not in str(info.value) and (info.value.__context__ is None or info.value.__suppress_context__)
    return str(info.value)


def load(folder: Path, **kw) -> LocalEngine:
    return LocalEngine.from_pretrained(folder, progress=False, **kw)


def capped_load(folder: Path) -> str:
    """What a load of `folder` says, in a child process capped at 3 GiB of address space."""
    child = subprocess.run([sys.executable, "-c", CAPPED_LOAD, str(folder)], capture_output=True, text=True,
                           timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert child.returncode == 0, child.stderr[-2000:]
    return child.stdout.strip()


def copy_with_config(source: Path, folder: Path, **changes) -> Path:
    """A copy of a checkpoint folder with keys of its config.json changed (None: removed)."""
    shutil.copytree(source, folder)
    config = json.loads((folder / "config.json").read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def sharded(tmp_path_factory, random_checkpoint) -> Path:
    """The random checkpoint in openai/gpt-oss-20b's layout: MXFP4 experts in two shards named by an index."""
    folder = tmp_path_factory.mktemp("sharded") / "gpt-oss-random"
    quantize_checkpoint(random_checkpoint, folder)
    return in_two_shards(folder, first=0)


def in_two_shards(folder: Path, first: int = 1) -> Path:
    """`folder`'s model.safetensors split into two shards (numbered from `first`) named by an index, as released
    checkpoints are stored."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    names = sorted(tensors)
    weight_map = {}
    for i, part in enumerate((names[: len(names) // 2], names[len(names) // 2:])):
        shard = f"model-0000{i + first}-of-00002.safetensors"
        save_file({n: tensors[n] for n in part}, folder / shard, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, shard))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


def test_pickled_weights_are_refused_and_never_unpickled(tmp_path, random_checkpoint):
    """A folder whose weights are pytorch_model.bin: transformers unpickled it (a benign one loaded) and, for a pickle
    that calls a function, raised torch's multi-line UnpicklingError advising to retry with weights_only=False (which
    runs the code). Only .safetensors load now; the doctor, which said such a model fits, refuses it as the load
    does."""
    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'ran'}",)

    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(random_checkpoint / "config.json", folder)
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"model.norm.weight": Payload()}))
    refused = (f"{folder} cannot be loaded: its weights are pickled (pytorch_model.bin), which the lab never loads "
               "(unpickling can run code): give safetensors weights (model.safetensors)")
    assert one_line_error(lambda: load(folder)) == refused
    assert one_line_error(lambda: doctor(folder)) == refused  # it said the model fits
    assert "use_safetensors=False is refused" in one_line_error(lambda: load(random_checkpoint, use_safetensors=False))
    assert not (tmp_path / "ran").exists()


def pickled_snapshot(random_checkpoint: Path, hub: Path, repo_id: str, *, sharded: bool) -> Path:
    """A Hub id cached as `hf download` leaves it (snapshots/<rev>, refs/main) whose weights are torch.save's pickle:
    pytorch_model.bin alone, or a model.safetensors.index.json naming a pickled shard."""
    import torch
    from safetensors.torch import load_file

    repo = hub / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc")
    shutil.copy(random_checkpoint / "config.json", snapshot)
    tensors = load_file(random_checkpoint / "model.safetensors")
    shard = "pytorch_model-00001-of-00001.bin" if sharded else "pytorch_model.bin"
    torch.save(tensors, snapshot / shard)
    if sharded:
        (snapshot / "model.safetensors.index.json").write_text(json.dumps(
            {"metadata": {}, "weight_map": dict.fromkeys(tensors, shard)}))
    return snapshot


@pytest.mark.parametrize("online, sharded, shard", [(False, False, "pytorch_model.bin"),
                                                    (True, True, "pytorch_model-00001-of-00001.bin")],
                         ids=["cached-offline", "fetched-online"])
def test_pickled_weights_of_a_hub_id_are_never_unpickled(tmp_path, random_checkpoint, monkeypatch, online, sharded,
                                                         shard):
    """A Hub id whose weights are pickled: cached, offline, it was said to be "not in the Hugging Face cache"; loaded
    online (files the checks cannot see before the load fetches them), its index's .bin shard was read with
    torch.load and the model loaded. Here the Hub does not answer and its files come from the cache, as transformers
    falls back to them."""
    import time

    import torch

    def unreachable(*args, **kw):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    if online:  # the checks see no folder before the load: what transformers fetches is unseen
        monkeypatch.setattr(checkpoint, "hub_reachable", lambda: True)
        monkeypatch.setattr(time, "sleep", lambda seconds: None)  # huggingface_hub's retries of the unreachable Hub
    pickled_snapshot(random_checkpoint, tmp_path / "hub", "someone/pickled", sharded=sharded)
    unpickled = []
    monkeypatch.setattr(torch, "load", lambda *args, **kw: unpickled.append(args) or {})
    message = one_line_error(lambda: LocalEngine.from_pretrained("someone/pickled", progress=False,
                                                                 cache_dir=str(tmp_path / "hub")))
    assert message == (f"someone/pickled cannot be loaded: its weights are pickled ({shard}), which the lab never "
                       "loads (unpickling can run code): give safetensors weights (model.safetensors)")
    assert unpickled == []


@pytest.mark.parametrize("weights", ["adapter_model.bin", "other.safetensors"])
def test_a_config_cannot_name_another_weights_file(tmp_path, random_checkpoint, monkeypatch, weights):
    """config.json's "transformers_weights" makes transformers load that file instead of model.safetensors: an
    adapter_model.bin was unpickled (torch.load; a benign pickle loaded), and another .safetensors file loaded
    without the checks, which had read model.safetensors."""
    import torch

    unpickled = []
    monkeypatch.setattr(torch, "load", lambda *args, **kw: unpickled.append(args) or {})
    folder = copy_with_config(random_checkpoint, tmp_path / "named", transformers_weights=weights)
    shutil.copy(folder / "model.safetensors", folder / weights)
    expected = (f"the config of {folder} is not a valid gpt-oss config: transformers_weights ({weights!r}) would load "
                "weights other than model.safetensors or the shards model.safetensors.index.json names, unchecked "
                "(a .bin file is a pickle): remove it")
    assert one_line_error(lambda: load(folder)) == expected
    assert one_line_error(lambda: doctor(folder)) == expected
    assert unpickled == []


@pytest.mark.parametrize("name", ["config.json", "generation_config.json", "model.safetensors.index.json"])
def test_a_json_file_of_gigabytes_is_refused_before_it_is_read(tmp_path, random_checkpoint, sharded, name):
    """transformers reads these files whole: a sparse 64 GiB one (no disk used) raised MemoryError, or filled the RAM."""
    folder = tmp_path / "huge-json"
    shutil.copytree(sharded if name.endswith("index.json") else random_checkpoint, folder)
    with open(folder / name, "r+b") as file:
        file.truncate(64 * 2**30)
    assert capped_load(folder) == (f"LoadError: {folder} cannot be loaded: {name} is 68.7 GB, more than a checkpoint's "
                                   "JSON file can be (16.8 MB)")
    if name == "config.json":
        assert "is 68.7 GB, more than" in one_line_error(lambda: doctor(folder / name))


def test_a_config_of_a_billion_layers_is_refused_before_transformers_lists_them(tmp_path, random_checkpoint):
    """transformers builds one layer_types entry per layer (8 GB for 10**9): a MemoryError after 20 s here."""
    folder = copy_with_config(random_checkpoint, tmp_path / "deep", num_hidden_layers=10**9, layer_types=None)
    assert capped_load(folder) == (f"LoadError: the config of {folder} is not a valid gpt-oss config: num_hidden_layers "
                                   "(1,000,000,000) is more than the 1,024 this lab loads (gpt-oss-120b has 36)")


@pytest.mark.parametrize("changes, message", [
    ({"quantization_config": "mxfp4"}, "quantization_config must be an object, not 'mxfp4'"),  # was AttributeError
    ({"sliding_window": 0}, "sliding_window must be a positive whole number, not 0"),  # loaded, then every turn failed
    ({"sliding_window": -5}, "sliding_window must be a positive whole number, not -5"),
])
def test_config_values_transformers_fails_on_later_are_one_line(tmp_path, random_checkpoint, changes, message):
    folder = copy_with_config(random_checkpoint, tmp_path / "odd", **changes)
    expected = f"the config of {folder} is not a valid gpt-oss config: {message}"
    assert one_line_error(lambda: load(folder)) == expected
    assert one_line_error(lambda: doctor(folder)) == expected


TOO_LARGE = "is more than 1,099,511,627,776 (2**40), larger than any model this lab loads"


@pytest.mark.parametrize("changes, message", [
    ({"num_local_experts": 2**62}, f"num_local_experts {TOO_LARGE}"),  # torch's RuntimeError building the model
    ({"vocab_size": 10**400}, f"vocab_size {TOO_LARGE}"),  # the doctor's OverflowError
    ({"sliding_window": 2**64}, f"sliding_window {TOO_LARGE}"),  # loaded, then every turn was an OverflowError
    ({"hidden_size": 2**30, "intermediate_size": 2**30},  # the doctor's verdict: "5.3e+29 GB of weights"
     "its sizes make more than 1,000,000,000,000,000 parameters (gpt-oss-120b has 116,829,156,672)"),
], ids=["experts", "vocab", "window", "parameters"])
def test_sizes_no_machine_can_hold_are_refused_in_one_line(tmp_path, random_checkpoint, changes, message):
    """The doctor said "does not fit" with a size of two hundred digits, or raised OverflowError; the load raised
    torch's RuntimeError, or loaded a window every turn then failed on."""
    _refused_by_load_and_doctor(copy_with_config(random_checkpoint, tmp_path / "huge", **changes), message)


def _refused_by_load_and_doctor(folder, message: str) -> None:
    """The load, the doctor of the folder and the doctor of its config as a dict all say `message`, in one line."""
    expected = f"the config of {folder} is not a valid gpt-oss config: {message}"
    assert one_line_error(lambda: load(folder)) == expected
    assert one_line_error(lambda: doctor(folder)) == expected
    config = json.loads((folder / "config.json").read_text())
    assert one_line_error(lambda: doctor(config)) == f"the config is not a valid gpt-oss config: {message}"


@pytest.mark.parametrize("changes, message", [
    ({"dtype": "auto"}, "module 'torch' has no attribute 'auto'"),  # "auto" is a load's dtype, not a config's
    ({"use_return_dict": False}, "property 'use_return_dict' of 'GptOssConfig' object has no setter"),
], ids=["dtype-auto", "use-return-dict"])
def test_config_keys_transformers_cannot_set_are_one_line(tmp_path, random_checkpoint, changes, message):
    """transformers raised AttributeError building the config: a traceback from the load and from the doctor."""
    _refused_by_load_and_doctor(copy_with_config(random_checkpoint, tmp_path / "odd", **changes), message)


ROTARY = "its rotary settings (yarn) "


@pytest.mark.parametrize("rope, message", [
    ({"attention_factor": float("nan")}, ROTARY + "scale attention by nan: it must be a number above 0, at most 100"),
    ({"attention_factor": 1e300}, ROTARY + "scale attention by 1e+300: it must be a number above 0, at most 100"),
    ({"attention_factor": -1.0}, ROTARY + "scale attention by -1.0: it must be a number above 0, at most 100"),
    ({"attention_factor": "x" * 100}, ROTARY + f"scale attention by {'x' * 42!r:.40}…: it must be a number above 0, at "
                                               "most 100"),
    ({"beta_fast": float("nan")}, ROTARY + "compute rotary frequencies that are not finite numbers"),
    ({"partial_rotary_factor": 0.5}, ROTARY + "rotate 8 of a head's 16 dimensions; gpt-oss rotates them all "
                                              "(partial_rotary_factor must be 1)"),
    ({"original_max_position_embeddings": 0}, "division by zero"),
], ids=["attention-factor-nan", "attention-factor-huge", "attention-factor-negative", "attention-factor-text", "beta-nan",
        "partial", "zero"])
def test_rotary_settings_no_gpt_oss_can_run_are_refused_in_one_line(tmp_path, random_checkpoint, rope, message):
    """NaN or huge attention factors and a NaN beta loaded, and every turn wrote "!!!!" (NaN logits); a partial rotary
    factor loaded, and every turn was a RuntimeError; an original context of 0 was a ZeroDivisionError traceback."""
    config = json.loads((random_checkpoint / "config.json").read_text())
    folder = copy_with_config(random_checkpoint, tmp_path / "rope", rope_parameters={**config["rope_parameters"], **rope})
    expected = f"the config of {folder} is not a valid gpt-oss config: {message}"
    assert one_line_error(lambda: load(folder)) == expected
    assert one_line_error(lambda: doctor(folder)) == expected
    config = json.loads((folder / "config.json").read_text())
    assert one_line_error(lambda: doctor(config)) == f"the config is not a valid gpt-oss config: {message}"


def test_a_number_of_thousands_of_digits_in_a_config_is_one_line(tmp_path, random_checkpoint):
    """Python reads at most 4,300 digits of a whole number: the load and the doctor raised its ValueError with a
    traceback."""
    folder = tmp_path / "digits"
    shutil.copytree(random_checkpoint, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config).replace(f'"hidden_size": {config["hidden_size"]}',
                                                                   '"hidden_size": ' + "9" * 5000))
    expected = f"could not read the config of {folder}: Exceeds the limit (4300 digits) for integer string conversion"
    assert one_line_error(lambda: load(folder)).startswith(expected)
    assert one_line_error(lambda: doctor(folder)).startswith(expected)


@pytest.mark.parametrize("generation, message", [
    ([1, 2], "must be an object, not [1, 2]"),  # was transformers' TypeError, with a traceback
    ({"do_sample": True, "temperature": -1}, "is wrong: temperature must be greater than or equal to 0, not -1"),
    ({"do_sample": True, "top_p": "0.9"}, "is wrong: top_p must be a number, not '0.9'"),
])
def test_sampling_defaults_every_turn_would_fail_on_are_refused_at_load(tmp_path, random_checkpoint, generation,
                                                                        message):
    """The engine samples with generation_config.json's temperature and top_p: the load succeeded, then every turn
    ended in "The turn failed: ValueError: `temperature` (=-1) has to be a strictly positive float"."""
    folder = tmp_path / "sampling"
    shutil.copytree(random_checkpoint, folder)
    (folder / "generation_config.json").write_text(json.dumps(generation))
    assert one_line_error(lambda: load(folder)) == f"{folder} cannot be loaded: its generation_config.json {message}"
    (folder / "generation_config.json").write_text(json.dumps({"do_sample": True, "temperature": 0.6, "top_p": 1}))
    assert load(folder).default_sampling.temperature == 0.6


@pytest.mark.parametrize("text, reason", [("[" * 100_000 + "]" * 100_000, "maximum recursion depth exceeded"),
                                          ('{"temperature": ' + "9" * 5000 + "}", "Exceeds the limit (4300 digits)")],
                         ids=["nested", "digits"])
def test_a_generation_config_transformers_fails_on_is_refused_before_the_weights_load(tmp_path, random_checkpoint,
                                                                                     capsys, text, reason):
    """The check skipped a generation_config.json it could not read as "left to transformers, which ignores it", but
    transformers ignores only one that is no JSON: these it raised on after reading every weight (minutes for
    gpt-oss-120b)."""
    folder = tmp_path / "generation"
    shutil.copytree(random_checkpoint, folder)
    (folder / "generation_config.json").write_text(text)
    message = one_line_error(lambda: LocalEngine.from_pretrained(folder))
    assert message.startswith(f"{folder} cannot be loaded: its generation_config.json cannot be read ({reason}")
    assert "Loading" not in capsys.readouterr().out
    (folder / "generation_config.json").write_text('{"do_sample": ')  # no JSON: transformers ignores it
    assert load(folder).default_sampling.temperature == 0


@pytest.mark.kernel
def test_a_refused_load_in_a_kernel_is_one_line_and_keeps_the_loaded_model(tmp_path, random_checkpoint):
    """`%gptoss load FOLDER` of a checkpoint whose generation_config.json is a list showed transformers' TypeError
    traceback; the model loaded before keeps answering either way."""
    from jupyter_client.manager import start_new_kernel

    folder = tmp_path / "list"
    shutil.copytree(random_checkpoint, folder)
    (folder / "generation_config.json").write_text("[1, 2]")
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        assert run(kc, "%load_ext gptoss_lab\n%gptoss load tiny", timeout=120)[1]["status"] == "ok"
        _, refused = run(kc, f"%gptoss load {folder}", timeout=120)
        assert (refused["ename"], refused["evalue"]) == (
            "UsageError", f"%gptoss load: {folder} cannot be loaded: its generation_config.json must be an object, "
                          "not [1, 2]")
        assert run(kc, "%gptoss status", timeout=120)[0].startswith("model: gpt-oss-tiny |")
        assert run(kc, "%%gptoss --text --approve never --max-tokens 8\nHello!", timeout=120)[1]["status"] == "ok"
        assert run(kc, "print(_gptoss.model, _gptoss.usage.completion_tokens)", timeout=120)[0].split() == ["gpt-oss-tiny", "8"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_a_load_that_fails_midway_leaves_no_model_behind(random_checkpoint, monkeypatch):
    """The LoadError's context kept transformers' traceback, whose frames held the half-loaded model: kept as the
    notebook's last error (sys.last_value), its memory stayed taken and a second try found too little free."""
    import gc
    import weakref

    from transformers.modeling_utils import PreTrainedModel

    built = []

    def unreadable(model, *args, **kw):  # the weights fail to load into the model just built
        built.append(weakref.ref(model))
        raise RuntimeError("Input/output error")

    monkeypatch.setattr(PreTrainedModel, "_load_pretrained_model", staticmethod(unreadable))
    with pytest.raises(LoadError, match=f"^{random_checkpoint} cannot be loaded: Input/output error$") as info:
        load(random_checkpoint)
    kept = info.value  # as IPython keeps the last error
    gc.collect()
    assert kept.__context__ is not None and built and built[0]() is None


def test_a_vocabulary_smaller_than_harmony_is_refused_at_load(tmp_path):
    """A checkpoint whose weights fit its config of 1,000 tokens loaded, then every turn ended in "The turn failed:
    IndexError: index out of range in self" (Harmony's <|start|> is token 200006)."""
    import torch
    from transformers import GptOssConfig, GptOssForCausalLM

    config = GptOssConfig(vocab_size=1000, hidden_size=32, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                          num_key_value_heads=1, head_dim=16, num_local_experts=2, num_experts_per_tok=1)
    GptOssForCausalLM(config).to(torch.bfloat16).save_pretrained(tmp_path / "small")
    expected = (f"the config of {tmp_path / 'small'} is not a valid gpt-oss config: vocab_size (1,000) is less than "
                "the 201,088 tokens of the Harmony format gpt-oss reads")
    assert one_line_error(lambda: load(tmp_path / "small")) == expected


def test_a_config_dtype_or_attention_this_machine_lacks_is_one_line(tmp_path, random_checkpoint):
    """The header check built the model from the config as given: a ValueError (int8) or ImportError (flash attention)
    with a traceback before the load began, and a KeyError from the doctor."""
    folder = copy_with_config(random_checkpoint, tmp_path / "int8", dtype="int8")
    assert load(folder).name == "int8"  # a CPU loads float32 by default
    expected = ("the config's dtype 'int8' is not one the weights can load in: give dtype= one of float32, float64, "
                "bfloat16, float16")
    assert one_line_error(lambda: load(folder, dtype="auto")) == expected
    assert one_line_error(lambda: doctor(folder, device="cuda", memory="80 GB")) == expected
    folder = copy_with_config(random_checkpoint, tmp_path / "flash", attn_implementation="flash_attention_2")
    assert one_line_error(lambda: load(folder)).startswith(f"{folder} cannot be loaded: ")


def test_config_values_quoted_in_a_refusal_are_clipped_to_one_short_line(tmp_path, random_checkpoint):
    """transformers quotes the value it refuses: a 1 MB hidden_size filled the notebook with a 1 MB error, and a
    model_type with a line break wrote a second line of the checkpoint's choosing under the refusal."""
    folder = copy_with_config(random_checkpoint, tmp_path / "long", hidden_size="x" * 1_000_000)
    for call in (lambda: load(folder), lambda: doctor(folder), lambda: doctor(json.loads((folder / "config.json").read_text()))):
        message = one_line_error(call)
        assert len(message) < 500 and message.endswith("x…")
    folder = copy_with_config(random_checkpoint, tmp_path / "two-lines", model_type="llama\nLoaded openai/gpt-oss-20b.")
    assert one_line_error(lambda: load(folder)) == (f"{folder} is a llama Loaded openai/gpt-oss-20b. model, not gpt-oss "
                                                    "(config model_type must be 'gpt_oss')")


def test_a_deeply_nested_config_json_is_one_line(tmp_path, random_checkpoint):
    """json raised RecursionError, with a traceback, in the load and in the doctor."""
    folder = tmp_path / "nested"
    shutil.copytree(random_checkpoint, folder)
    (folder / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    assert one_line_error(lambda: load(folder)).startswith(f"could not read the config of {folder}: maximum recursion")
    assert one_line_error(lambda: doctor(folder / "config.json")).startswith(
        f"could not read the config of {folder}: maximum recursion")


def test_stray_safetensors_files_transformers_does_not_read_do_not_block_the_load(tmp_path, random_checkpoint, sharded):
    """A partial download or old shard beside the weights: the load refused it as damaged, or took a wrong shape
    from it, though transformers reads only model.safetensors or the shards the index names."""
    from safetensors.torch import save_file
    import torch

    single = tmp_path / "single"
    shutil.copytree(random_checkpoint, single)
    (single / "model.safetensors.part.safetensors").write_bytes(b"half a download")
    assert load(single).name == "single"
    folder = tmp_path / "gpt-oss-random"
    shutil.copytree(sharded, folder)
    save_file({"model.norm.weight": torch.zeros(3)}, folder / "model-00000-of-00003.safetensors")  # an older export
    assert load(folder).name == "gpt-oss-random"


@pytest.mark.parametrize("index, message", [
    ({"metadata": {}}, "model.safetensors.index.json has no weight_map of tensor names to shard files"),  # KeyError
    ({"weight_map": [1, 2]}, "model.safetensors.index.json has no weight_map of tensor names to shard files"),
    ("../outside/model-00001-of-00002.safetensors",
     "model.safetensors.index.json names the shard '../outside/model-00001-of-00002.safetensors', which is not a file "
     "in the checkpoint folder"),
    ("gone.safetensors", "the shard 'gone.safetensors' named in model.safetensors.index.json is missing; copy or "
                         "download it again"),
    ("x" * 300, f"the shard '{'x' * 79} named in model.safetensors.index.json is missing; copy or download it again"),
    ("a\nb", "the shard 'a\\nb' named in model.safetensors.index.json is missing; copy or download it again"),
], ids=["no-weight-map", "weight-map-list", "outside", "missing", "long-name", "newline"])
def test_a_shard_index_that_is_broken_or_reaches_outside_the_folder_is_one_line(tmp_path, sharded, index, message):
    """A str `index` renames the second shard in the weight map (the file is moved there, if it can be)."""
    folder = tmp_path / "ckpt"
    shutil.copytree(sharded, folder)
    path = folder / "model.safetensors.index.json"
    if isinstance(index, str):
        data = json.loads(path.read_text())
        data["weight_map"] = {k: index if v.startswith("model-00001") else v for k, v in data["weight_map"].items()}
        if index.startswith("../"):
            (tmp_path / "outside").mkdir()
            (folder / "model-00001-of-00002.safetensors").rename(tmp_path / "outside" / "model-00001-of-00002.safetensors")
        index = data
    path.write_text(json.dumps(index))
    assert one_line_error(lambda: load(folder)) == f"{folder} cannot be loaded: {message}"


def test_a_sharded_checkpoint_in_the_hub_cache_loads_offline(tmp_path, sharded, monkeypatch):
    """openai/gpt-oss-20b as `hf download` caches it: an index and shards, each a symlink into ../../blobs."""
    def unreachable(*args, **kw):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    repo = tmp_path / "models--someone--gpt-oss-random"
    (repo / "blobs").mkdir(parents=True)
    (repo / "snapshots" / "abc").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc")
    for file in sharded.iterdir():
        shutil.copy(file, repo / "blobs" / file.name)
        (repo / "snapshots" / "abc" / file.name).symlink_to(Path("../../blobs") / file.name)
    engine = LocalEngine.from_pretrained("someone/gpt-oss-random", progress=False, cache_dir=str(tmp_path))
    assert engine.name == "gpt-oss-random"


def test_a_folder_whose_name_is_not_utf8_says_so(tmp_path, random_checkpoint):
    """safetensors opens UTF-8 paths only: the load said the intact weights were "damaged or incomplete"."""
    folder = Path(os.fsdecode(bytes(tmp_path) + b"/ckpt-\xff"))
    shutil.copytree(random_checkpoint, folder)
    message = one_line_error(lambda: load(folder))
    assert message.endswith("ckpt-\\udcff cannot be loaded: its path is not valid UTF-8, which safetensors cannot open: "
                            "rename the folder")
    message.encode()  # printable in a notebook: no lone surrogates


@pytest.mark.parametrize("name, reason", [("~nosuchuser/gpt-oss", "Could not determine home directory."),
                                          ("x" * 300, "File name too long"),
                                          ("/tmp/" + "y" * 300 + "/gpt-oss", "File name too long")],
                         ids=["no-such-user", "long-name", "long-folder"])
def test_a_name_the_file_system_cannot_look_up_is_one_line(name, reason):
    """`%gptoss load ~nosuchuser/gpt-oss` and `%gptoss doctor xxx…` showed a RuntimeError or OSError traceback."""
    expected = f"checkpoint folder not found: {name} ({reason})"
    assert one_line_error(lambda: load(name)) == expected
    assert one_line_error(lambda: doctor(name)) == expected


def test_whole_number_sampling_defaults_work(tmp_path, random_checkpoint):
    """`"temperature": 2` in generation_config.json loaded, then every sampled turn failed: "`temperature` (=2) has
    to be a strictly positive float"."""
    from gptoss_lab import Session

    folder = copy_with_config(random_checkpoint, tmp_path / "sampled")
    (folder / "generation_config.json").write_text(json.dumps({"do_sample": True, "temperature": 2, "top_p": 1}))
    reply = Session(load(folder), namespace={}, tools="none").ask("Hi", max_new_tokens=4)
    assert not any("temperature" in e for e in reply.errors), reply.errors


def test_a_load_with_missing_weights_or_stopped_midway_leaves_no_model_behind(tmp_path, random_checkpoint, monkeypatch):
    """The refusal of missing weights, and Ctrl-C during the load, kept the loaded model alive in the error's
    traceback (the notebook keeps the last error): two models in memory after an interrupted load."""
    import gc
    import weakref

    from safetensors.torch import load_file, save_file
    from transformers import GptOssForCausalLM
    from transformers.modeling_utils import PreTrainedModel

    from gptoss_lab.engines import checkpoint

    built = []
    real_init = GptOssForCausalLM.__init__

    def init(self, *args, **kw):
        real_init(self, *args, **kw)
        built.append(weakref.ref(self))

    monkeypatch.setattr(GptOssForCausalLM, "__init__", init)
    folder = copy_with_config(random_checkpoint, tmp_path / "missing")
    tensors = load_file(folder / "model.safetensors")
    tensors.pop("model.layers.0.self_attn.q_proj.weight")
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    monkeypatch.setattr(checkpoint, "check_tensors", lambda *a, **k: None)  # the path past the headers' check
    with pytest.raises(LoadError, match="the weight model.layers.0.self_attn.q_proj.weight is missing") as refused:
        load(folder)
    monkeypatch.undo()
    monkeypatch.setattr(GptOssForCausalLM, "__init__", init)

    def interrupted(model, *args, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(PreTrainedModel, "_load_pretrained_model", staticmethod(interrupted))
    with pytest.raises(KeyboardInterrupt) as stopped:
        load(random_checkpoint)
    kept = (refused.value, stopped.value)   # as IPython keeps the last error
    gc.collect()
    assert len(built) >= 2 and [ref() for ref in built if ref() is not None] == [], kept


def test_ctrl_c_while_the_loaded_weights_are_scanned_leaves_no_model_behind(random_checkpoint, monkeypatch):
    """Ctrl-C during the scan for NaN after the load (it reads every weight) kept the model alive in the error's
    traceback, which the notebook keeps: its memory stayed taken, unnamed by the next load's "unload it first"."""
    import gc
    import weakref

    from gptoss_lab.engines import checkpoint

    scanned = []

    def interrupted(tensor):
        scanned.append(weakref.ref(tensor))
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "_all_finite", interrupted)
    with pytest.raises(KeyboardInterrupt) as stopped:
        load(random_checkpoint)
    kept = stopped.value   # as IPython keeps the last error
    gc.collect()
    assert scanned and scanned[0]() is None, kept


def test_a_keyword_that_is_no_load_option_is_refused_in_one_line(random_checkpoint):
    """transformers takes an unknown keyword as a config value, after the checks (`sliding_window=0` loaded, then
    every turn failed), or fails with a traceback (`foo=1`); a session setting given to load was one of those."""
    from gptoss_lab import Session

    assert one_line_error(lambda: load(random_checkpoint, sliding_window=0)).startswith(
        "sliding_window is not an option of a load: give device=, dtype=, device_map=, dequantize= or one of revision, ")
    assert one_line_error(lambda: Session.load(str(random_checkpoint), progress=False, effort="high")) == (
        "effort is not an option of a load: effort is a session setting: pass session_options={'effort': ...} or "
        "configure it after the load")
    assert load(random_checkpoint, attn_implementation="eager").name == random_checkpoint.name


def test_a_local_folders_subfolder_is_the_folder_checked_and_loaded(tmp_path, random_checkpoint):
    """`subfolder=` on a local folder read the config there but checked the top folder's weights (none: unchecked),
    a subfolder that does not exist was "an unknown model, not gpt-oss", and a top folder without a config.json of
    its own was refused."""
    shutil.copytree(random_checkpoint, tmp_path / "top" / "sub")
    shutil.copy(random_checkpoint / "config.json", tmp_path / "top" / "config.json")
    assert load(tmp_path / "top", subfolder="sub").name == "sub"
    assert one_line_error(lambda: load(tmp_path / "top", subfolder="nope")) == (
        f"checkpoint folder not found: {tmp_path / 'top' / 'nope'}")
    (tmp_path / "top" / "config.json").unlink()  # a folder of variants: was "top has no config.json"
    assert load(tmp_path / "top", subfolder="sub").name == "sub"


def _hostile_copy(random_checkpoint: Path, tmp_path: Path, **config: object) -> Path:
    """The random checkpoint with `config` entries changed, a tokenizer whose `auto_map` names its own Python, and
    that Python (which leaves a file behind if it ever runs)."""
    folder = tmp_path / "downloaded"
    shutil.copytree(random_checkpoint, folder)
    data = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**data, **config}))
    (folder / "tokenizer_config.json").write_text(json.dumps({"auto_map": {"AutoTokenizer": ["tok.Evil", None]}}))
    (folder / "tok.py").write_text(f"open({str(tmp_path / 'RAN')!r}, 'w').write('the folder ran code')\n")
    return folder


@pytest.mark.parametrize("config, why", [
    ({"architectures": ["QWenLMHeadModel"]}, "only a gpt-oss checkpoint is converted"),
    ({"attn_implementation": "attacker/evil-kernel"}, "which transformers would download from the Hub and run"),
], ids=["another architecture", "a Hub kernel"])
def test_the_gguf_command_converts_only_a_checked_gpt_oss_folder(random_checkpoint, tmp_path, capsys, config, why):
    """llama.cpp's converter picks its code by the config's architecture, and some of its handlers load the folder's
    tokenizer with trust_remote_code=True: a downloaded folder's own Python ran (a review). The folder now passes the
    checks a load makes, names GptOssForCausalLM, and only its config, weights and tokenizer data are staged."""
    from gptoss_lab.tiny import llamacpp

    folder = _hostile_copy(random_checkpoint, tmp_path, **config)
    with pytest.raises(SystemExit) as ended:
        llamacpp.main([str(tmp_path / "out.gguf"), "--checkpoint", str(folder)])
    assert ended.value.code == 2 and why in capsys.readouterr().err.splitlines()[-1]   # the folder given: a usage error
    assert not (tmp_path / "RAN").exists() and not (tmp_path / "out.gguf").exists()


def test_the_quantize_command_copies_no_file_a_link_out_of_the_folder_points_to(random_checkpoint, tmp_path):
    """`notes.txt -> ~/.cache/huggingface/token` in a shared folder: its contents were copied into the MXFP4 checkpoint
    the user may publish (a review). Only the checkpoint's own data files are copied; a link into the folder is."""
    from gptoss_lab.tiny.quantize import quantize_checkpoint

    folder = tmp_path / "shared"
    shutil.copytree(random_checkpoint, folder)
    (tmp_path / "token").write_text("SECRET-token-123")
    (folder / "notes.txt").symlink_to(tmp_path / "token")
    (folder / "tokenizer.json").symlink_to(tmp_path / "token")
    (folder / "tok.py").write_text("print('code')\n")
    (folder / "generation_config.json").unlink(missing_ok=True)
    (folder / "generation_config.json").write_text('{"eos_token_id": 200002}')
    quantize_checkpoint(folder, tmp_path / "out")
    written = {path.name: path.read_text(errors="replace") for path in (tmp_path / "out").iterdir()}
    assert not any("SECRET" in text for text in written.values())
    assert "notes.txt" not in written and "tok.py" not in written and "tokenizer.json" not in written
    assert written["generation_config.json"] == '{"eos_token_id": 200002}'
    with pytest.raises(ValueError, match="is already quantized \\(yes\\)"):  # a string, not a dict: no traceback
        (folder / "config.json").write_text(json.dumps({**json.loads((folder / "config.json").read_text()),
                                                        "quantization_config": "yes"}))
        quantize_checkpoint(folder, tmp_path / "again")


def test_the_commands_writing_a_checkpoint_take_only_the_weights_a_load_reads(random_checkpoint, tmp_path, capsys):
    """`extra.safetensors -> ~/private/model.safetensors` in a shared folder: quantize (and llamacpp's untying) read
    every *.safetensors there and wrote its tensors into the new checkpoint; a damaged shard was a SafetensorError
    traceback. They read the weights a load reads now, refused in one line where those are a link out of the folder."""
    import torch
    from safetensors.torch import load_file, save_file

    from gptoss_lab.tiny import llamacpp, quantize

    folder = tmp_path / "shared"
    shutil.copytree(random_checkpoint, folder)
    save_file({"private.weight": torch.zeros(2, 32)}, tmp_path / "private.safetensors")
    (folder / "extra.safetensors").symlink_to(tmp_path / "private.safetensors")
    quantize.main(["--source", str(folder), "--out", str(tmp_path / "out")])
    llamacpp._untie(folder, tmp_path)
    written = [name for shard in [*(tmp_path / "out").glob("*.safetensors"), tmp_path / "model.safetensors"]
               for name in load_file(shard)]
    assert "lm_head.weight" in written and "private.weight" not in written
    assert not (tmp_path / "out" / "extra.safetensors").exists()
    elsewhere = shutil.copy(random_checkpoint / "model.safetensors", tmp_path / "elsewhere.safetensors")
    for weights, why in [(elsewhere, "model.safetensors is no file of the folder's own"),
                         (None, "model.safetensors is damaged or incomplete")]:
        (folder / "model.safetensors").unlink()
        if weights:
            (folder / "model.safetensors").symlink_to(weights)
        else:
            (folder / "model.safetensors").write_bytes(b"damaged")
        with pytest.raises(SystemExit):
            quantize.main(["--source", str(folder), "--out", str(tmp_path / "again")])
        err = capsys.readouterr().err
        assert why in err.splitlines()[-1] and "Traceback" not in err and not (tmp_path / "again").exists(), err


def test_training_on_from_a_folder_makes_the_checks_a_load_makes(random_checkpoint, tmp_path, capsys):
    """`train --resume` loaded a folder whose config named a Hub attention kernel straight into transformers, which
    went to fetch it (a review); `%gptoss load` refuses that folder in one line, and so does the command now."""
    from gptoss_lab.tiny import train

    folder = _hostile_copy(random_checkpoint, tmp_path, attn_implementation="attacker/evil-kernel")
    with pytest.raises(SystemExit) as ended:
        train.main(["--resume", str(folder), "--out", str(tmp_path / "run"), "--quick"])
    assert ended.value.code == 2
    assert " cannot be loaded: " in capsys.readouterr().err and not (tmp_path / "run").exists()
