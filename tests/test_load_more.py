"""More of what a load takes on trust: a checkpoint's config cannot choose code for transformers to download and run
(a Hub attention or experts kernel; its auto_map is never followed); a model given as None, a number or "", a
prefill_chunk of 0 (in the doctor or on the engine), configs no gpt-oss model can have (a negative swiglu_limit,
another hidden_act, a quantization that is not MXFP4, return_dict false), a shard index without metadata, reaching
outside the folder or naming a pickle, a folder that is a symbolic link loop and a server's address (its password left
out) are refused in one line; hostile token ids in generation_config.json load and answer."""
from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
from pathlib import Path

import pytest
import torch

from gptoss_lab.engines.base import Sampling
from gptoss_lab.engines.doctor import doctor
from gptoss_lab.engines.local import LocalEngine
from gptoss_lab.session import Session
from test_load_trust import load, one_line_error  # tests/ is on sys.path


def with_config(source: Path, folder: Path, **changes) -> Path:
    """A copy of a checkpoint folder with keys of its config.json changed."""
    shutil.copytree(source, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))
    return folder


@pytest.fixture
def no_downloads(monkeypatch) -> list[str]:
    """transformers' loaders of Hub kernels and of a checkpoint's own code, replaced by a record of what was asked."""
    import transformers.modeling_utils as modeling
    import transformers.models.auto.auto_factory as factory
    import transformers.models.auto.configuration_auto as configuration

    asked: list[str] = []

    def record(what, *args, **kw):
        asked.append(str(what))
        raise RuntimeError(f"asked to fetch {what}")

    monkeypatch.setattr(modeling, "lazy_import_flash_attention", record)
    for module in (factory, configuration):
        monkeypatch.setattr(module, "get_class_from_dynamic_module", record)
    return asked


ATTENTION = ("which transformers would download from the Hub and run: a checkpoint may choose eager, "
             "flex_attention")


@pytest.mark.parametrize("changes, message", [
    ({"attn_implementation": "kernels-community/vllm-flash-attn3"},
     "the attention implementation 'kernels-community/vllm-flash-attn3', " + ATTENTION),
    ({"attn_implementation": "evil/kernel"}, "the attention implementation 'evil/kernel', " + ATTENTION),
    ({"attn_implementation": "flash_attention_2"},  # gpt-oss takes a Hub kernel for it
     "the attention implementation 'flash_attention_2', " + ATTENTION),
    ({"experts_implementation": "deepgemm"},  # kernels-community/deep-gemm
     "the experts implementation 'deepgemm', which transformers would download from the Hub and run: a checkpoint "
     "may choose eager, grouped_mm, batched_mm"),
], ids=["hub-kernel", "attn-implementation", "flash-attention", "experts"])
def test_a_config_cannot_choose_a_hub_kernel_to_run(tmp_path, random_checkpoint, no_downloads, changes, message):
    """The config's choice went to transformers, which fetched the kernel from the Hub (here: `kernels` is not
    installed, said in a line about installing it) and ran it; the user may still ask for it. A config's
    "attn_implementation" outranks the load's attn_implementation=, so asking for another does not help."""
    folder = with_config(random_checkpoint, tmp_path / "kernel", **changes)
    expected = f"{folder} cannot be loaded: its config asks for {message}"
    assert one_line_error(lambda: load(folder)) == expected
    assert one_line_error(lambda: doctor(folder)) == expected  # the doctor sized it and said it fits
    config = folder / "config.json"
    assert one_line_error(lambda: doctor(config)) == expected.replace(str(folder), str(config))
    assert one_line_error(lambda: doctor(json.loads(config.read_text()))) == expected.replace(str(folder), "the config")
    assert no_downloads == []
    if "experts_implementation" not in changes:
        (value,) = changes.values()
        assert one_line_error(lambda: load(folder, attn_implementation="eager")) == expected
        asked = one_line_error(lambda: load(folder, attn_implementation=value))  # the user's ask
        if value.startswith("flash_attention") and not torch.cuda.is_available():  # no kernel for it runs on a CPU
            assert asked.endswith(f"{value} runs on a GPU only: use attn_implementation='eager', or load on a GPU")
        else:
            assert "asked to fetch" in asked and no_downloads


def test_a_configs_auto_map_and_trust_remote_code_are_never_followed(tmp_path, random_checkpoint, no_downloads):
    """transformers has gpt-oss's code, so it leaves a checkpoint's auto_map (its own modeling code) unread."""
    folder = with_config(random_checkpoint, tmp_path / "remote", trust_remote_code=True,
                         auto_map={"AutoConfig": "evil/repo--configuration.Config",
                                   "AutoModelForCausalLM": "evil/repo--modeling.Model"})
    assert load(folder).name == "remote"
    assert doctor(folder).fits
    assert no_downloads == []


ADAPTER = {"peft_type": "LORA", "base_model_name_or_path": "someone/another-model", "r": 8, "lora_alpha": 16,
           "target_modules": ["q_proj", "v_proj"]}


def test_a_folder_holding_a_peft_adapter_is_refused_before_transformers_could_apply_it(tmp_path, random_checkpoint,
                                                                                      monkeypatch):
    """Where peft is installed, transformers finds adapter_config.json next to config.json and applies the adapter's
    weights on top of the checked ones (or, for a Hub id, loads the base model the adapter names); without peft it
    ignores the file, so the same folder was another model on another machine. peft is not installed here: transformers
    is told it is, and the load fails in peft's import if anything reaches it."""
    import transformers.integrations.peft as peft_integration

    folder = tmp_path / "adapted"
    shutil.copytree(random_checkpoint, folder)
    (folder / "adapter_config.json").write_text(json.dumps(ADAPTER))
    expected = (f"{folder} cannot be loaded: it holds a PEFT adapter (adapter_config.json), which transformers would "
                "apply to its weights where peft is installed: load a folder without it (merge the adapter first)")
    assert one_line_error(lambda: load(folder)) == expected
    assert one_line_error(lambda: doctor(folder)) == expected
    monkeypatch.setattr(peft_integration, "is_peft_available", lambda: True)
    assert one_line_error(lambda: load(folder)) == expected
    monkeypatch.setattr(socket, "create_connection", unreachable)  # a Hub id in the cache, offline
    repo = tmp_path / "models--someone--adapted"
    (repo / "snapshots" / "abc").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc")
    shutil.copytree(folder, repo / "snapshots" / "abc", dirs_exist_ok=True)
    message = one_line_error(lambda: load("someone/adapted", cache_dir=str(tmp_path)))
    assert message == expected.replace(str(folder), "someone/adapted")


def unreachable(*args, **kw):
    raise OSError("network is unreachable")


ACCEPTED = "give 'tiny', a checkpoint folder or a Hub id such as openai/gpt-oss-20b, not "


@pytest.mark.parametrize("model", [None, 5, 2.5, b"tiny", ["tiny"], ""], ids=repr)
def test_a_model_that_is_no_name_or_folder_is_one_line(model, tmp_path, monkeypatch, random_checkpoint):
    """Each was a TypeError from pathlib, with a traceback; "" (an empty variable) loaded the current folder."""
    shutil.copytree(random_checkpoint, tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    assert one_line_error(lambda: load(model)) == ACCEPTED + repr(model)
    assert one_line_error(lambda: Session.load(model)) == ACCEPTED + repr(model)
    assert one_line_error(lambda: doctor(model)) == ACCEPTED + repr(model)


CONNECT = "is a server's address, not a checkpoint: talk to the model it serves with `%gptoss connect URL`"


@pytest.mark.parametrize("given, shown", [
    ("http://user:hunter2secret@127.0.0.1:8080/v1", "http://127.0.0.1:8080/v1"),
    ("HTTPS://key:s3cr/et@llm.example.org", "HTTPS://llm.example.org"),
    ("user:hunter2secret@localhost:8000", "localhost:8000"),
    ("127.0.0.1:8080", "127.0.0.1:8080"),
])
def test_a_server_address_given_to_load_says_connect_without_its_password(given, shown, tmp_path, monkeypatch,
                                                                          random_checkpoint):
    """`%gptoss load http://user:password@host` said "checkpoint folder not found: " and the password after it (the
    notebook keeps it in the cell's output); a folder named like an address still loads."""
    for call in (load, doctor):
        message = one_line_error(lambda: call(given))
        assert message.startswith(f"{shown} {CONNECT}") and "secret" not in message
    monkeypatch.chdir(tmp_path)
    shutil.copytree(random_checkpoint, tmp_path / "127.0.0.1:8080")
    assert load("127.0.0.1:8080").name == "127.0.0.1:8080"


@pytest.mark.parametrize("page, hub_id", [
    ("https://huggingface.co/openai/gpt-oss-20b", "openai/gpt-oss-20b"),
    ("https://huggingface.co/openai/gpt-oss-120b/tree/main", "openai/gpt-oss-120b"),
    ("HTTPS://hf.co/someone/gpt-oss-20b-ft?library=transformers", "someone/gpt-oss-20b-ft"),
])
def test_a_hub_page_given_to_load_names_the_hub_id_to_give(page, hub_id):
    """The address of a model's Hub page, copied from the browser, was "checkpoint folder not found" (then a server's
    address to `%gptoss connect`)."""
    for call in (load, doctor):
        assert one_line_error(lambda: call(page)) == (f"{page} is a page of the Hugging Face Hub: load the model by its "
                                                      f"Hub id, {hub_id}")


@pytest.fixture(scope="module")
def engine(random_checkpoint) -> LocalEngine:
    return load(random_checkpoint)


CHUNKS = [0, -1, 1.5, True, "2048"]


@pytest.mark.parametrize("chunk", CHUNKS)
def test_the_doctor_refuses_a_prefill_chunk_that_is_no_positive_count(chunk):
    """0 or -1 sized no attention scores at all (and said it fits)."""
    expected = f"prefill_chunk must be a whole number of tokens, 1 or more, not {chunk!r}"
    assert one_line_error(lambda: doctor("tiny", prefill_chunk=chunk), ValueError) == expected
    assert doctor("tiny", prefill_chunk=1).prefill_chunk == 1


@pytest.mark.parametrize("chunk", CHUNKS)
def test_the_engine_refuses_a_prefill_chunk_that_is_no_positive_count(engine, chunk):
    """Set on the engine (as the doctor's report advises), it was taken, and every turn failed: range()'s "arg 3 must
    not be zero", an UnboundLocalError, a TypeError."""
    def set_chunk():
        engine.prefill_chunk = chunk

    expected = f"prefill_chunk must be a whole number of tokens, 1 or more, not {chunk!r}"
    assert one_line_error(set_chunk, ValueError) == expected
    assert engine.prefill_chunk == 2048
    engine.prefill_chunk = 2
    assert len(list(engine.stream([1, 2, 3], stop=set(), sampling=Sampling(temperature=0, max_new_tokens=2)))) == 2
    engine.prefill_chunk = 2048


INVALID = "the config of {folder} is not a valid gpt-oss config: "


@pytest.mark.parametrize("changes, message", [
    ({"swiglu_limit": -7.0}, "swiglu_limit must be a number above 0, not -7.0"),  # loaded, clamped every expert
    ({"swiglu_limit": 0.0}, "swiglu_limit must be a number above 0, not 0.0"),
    ({"swiglu_alpha": float("nan")}, "swiglu_alpha must be a number above 0, not nan"),
    ({"hidden_act": "bogus"}, "hidden_act must be 'silu' (gpt-oss's SwiGLU), not 'bogus'"),  # loaded, ignored
    ({"quantization_config": {"quant_method": "bitsandbytes", "load_in_4bit": True}},  # "requires accelerate"
     "quantization_config's quant_method must be 'mxfp4', not 'bitsandbytes'"),
    ({"quantization_config": {"quant_method": "weird"}},  # loaded unquantized, after a warning
     "quantization_config's quant_method must be 'mxfp4', not 'weird'"),
    ({"quantization_config": {}}, "quantization_config's quant_method must be 'mxfp4', not None"),
    ({"return_dict": False},  # loaded; where transformers' forward runs (a GPU), every turn was an AttributeError
     "return_dict must be true, not False (transformers' gpt-oss forward fails on the tuples it makes then)"),
], ids=["swiglu-limit-negative", "swiglu-limit-0", "swiglu-alpha-nan", "hidden-act", "bitsandbytes", "unknown-quant",
        "no-quant-method", "return-dict"])
def test_config_values_no_gpt_oss_model_has_are_refused(tmp_path, random_checkpoint, changes, message):
    folder = with_config(random_checkpoint, tmp_path / "odd", **changes)
    expected = INVALID.format(folder=folder) + message
    assert one_line_error(lambda: load(folder)) == expected
    assert one_line_error(lambda: doctor(folder)) == expected


def test_a_shard_index_without_metadata_is_one_line(tmp_path, random_checkpoint):
    """transformers adds the tensor names to the index's metadata: a KeyError with a traceback when it had none."""
    from safetensors import safe_open

    folder = tmp_path / "ckpt"
    shutil.copytree(random_checkpoint, folder)
    (folder / "model.safetensors").rename(folder / "model-00001-of-00001.safetensors")
    with safe_open(folder / "model-00001-of-00001.safetensors", "pt") as f:
        weight_map = dict.fromkeys(f.keys(), "model-00001-of-00001.safetensors")
    index = folder / "model.safetensors.index.json"
    for data in ({"weight_map": weight_map}, {"metadata": [], "weight_map": weight_map}):
        index.write_text(json.dumps(data))
        assert one_line_error(lambda: load(folder)) == (f"{folder} cannot be loaded: model.safetensors.index.json has no "
                                                        "metadata object (it may be empty: {})")
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    assert load(folder).name == "ckpt"


def test_a_folder_that_is_a_symlink_loop_is_not_looked_up_on_the_hub(tmp_path, monkeypatch, random_checkpoint):
    """`load("loop")` where ./loop links to itself was taken for a Hub id (a lookup of "loop" on the Hub, offline
    advice to download it); a config.json that loops was "has no config.json"."""
    monkeypatch.chdir(tmp_path)
    os.symlink("loop", "loop")
    expected = "loop is a symbolic link to nothing (it dangles or loops): give the checkpoint folder"
    assert one_line_error(lambda: load("loop")) == expected
    assert one_line_error(lambda: doctor("loop")) == expected
    shutil.copytree(random_checkpoint, tmp_path / "ckpt")
    (tmp_path / "ckpt" / "config.json").unlink()
    os.symlink("config.json", tmp_path / "ckpt" / "config.json")
    assert one_line_error(lambda: load("ckpt")) == ("ckpt cannot be loaded: config.json cannot be read (Too many levels "
                                                    "of symbolic links)")


def test_hostile_token_ids_in_generation_config_load_and_answer(tmp_path, random_checkpoint):
    """The engine stops on Harmony's tokens, not on the generation config's: ids past the vocabulary or negative, and a
    huge max_length, change nothing."""
    folder = tmp_path / "ids"
    shutil.copytree(random_checkpoint, folder)
    (folder / "generation_config.json").write_text(json.dumps(
        {"eos_token_id": [10**30, -5], "bos_token_id": -1, "pad_token_id": 10**12, "max_length": 10**30}))
    engine = load(folder)
    assert len(list(engine.stream([1, 2, 3], stop=set(), sampling=Sampling(temperature=0, max_new_tokens=3)))) == 3


@pytest.mark.parametrize("shard, message", [
    ("../../etc/passwd", "model.safetensors.index.json names the shard '../../etc/passwd', which is not a file in the "
                         "checkpoint folder"),
    ("/etc/passwd", "model.safetensors.index.json names the shard '/etc/passwd', which is not a file in the checkpoint "
                    "folder"),
    ("zero.safetensors", "zero.safetensors is not a regular file"),  # a link to /dev/zero: read forever
], ids=["parent", "absolute", "dev-zero"])
def test_a_shard_index_cannot_reach_outside_the_folder_or_read_forever(tmp_path, random_checkpoint, shard, message):
    folder = tmp_path / "ckpt"
    shutil.copytree(random_checkpoint, folder)
    (folder / "model.safetensors").unlink()
    (folder / "zero.safetensors").symlink_to("/dev/zero")
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {"model.norm.weight": shard}}))
    assert one_line_error(lambda: load(folder)) == f"{folder} cannot be loaded: {message}"


@pytest.mark.parametrize("shard", ["pytorch_model-00001-of-00001.bin", "weights.pt", "model.safetensors.part"])
def test_a_shard_index_naming_no_safetensors_file_is_refused_before_anything_unpickles_it(tmp_path, random_checkpoint,
                                                                                        monkeypatch, shard):
    """An index naming the shard "x.bin" (a safetensors file inside, so its headers passed the checks) made transformers
    read it with torch.load, a pickle loader: an UnpicklingError traceback, and a crafted pickle can run code."""
    from safetensors import safe_open

    folder = tmp_path / "ckpt"
    shutil.copytree(random_checkpoint, folder)
    with safe_open(folder / "model.safetensors", "pt") as weights:
        names = list(weights.keys())
    (folder / "model.safetensors").rename(folder / shard)
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {name: shard for name in names}}))
    unpickled = []
    monkeypatch.setattr(torch, "load", lambda *args, **kw: unpickled.append(args))
    assert one_line_error(lambda: load(folder)) == (
        f"{folder} cannot be loaded: model.safetensors.index.json names the shard {shard!r}, which is no .safetensors "
        "file (transformers would unpickle it, and a pickle can run code): give safetensors shards")
    assert unpickled == []


def test_a_configs_private_implementation_keys_choose_nothing(tmp_path, random_checkpoint, no_downloads):
    """transformers up to 5.24 read a config.json's "_attn_implementation" and "_experts_implementation" as the
    model's choice (a Hub kernel to download and run); 5.25 ignores them: the model loads with eager attention and
    transformers' own experts code, answers, and nothing is fetched."""
    folder = with_config(random_checkpoint, tmp_path / "private", _attn_implementation="kernels-community/vllm-flash-attn3",
                         _experts_implementation="deepgemm")
    engine = load(folder, fast=False)
    assert engine.model.config._attn_implementation == "eager"
    assert engine.model.config._experts_implementation in ("eager", "grouped_mm", "batched_mm")  # transformers' own
    assert len(list(engine.stream([1, 2, 3], stop=set(), sampling=Sampling(temperature=0, max_new_tokens=2)))) == 2
    assert no_downloads == []


FLEX = ("flex_attention cannot run gpt-oss's attention sinks on a CPU (transformers refuses it at every turn): use "
        "attn_implementation='eager', or load on a GPU")


def test_flex_attention_on_a_cpu_is_refused_at_load(tmp_path, random_checkpoint):
    """Chosen by the config (which outranks the load's option) or by the load, the model loaded, then every turn failed:
    "ValueError: Attention sinks cannot be run on CPU with flex attention"."""
    folder = with_config(random_checkpoint, tmp_path / "flex", attn_implementation="flex_attention")
    assert one_line_error(lambda: load(folder)) == f"{folder} cannot be loaded: {FLEX}"
    assert one_line_error(lambda: load(folder, attn_implementation="eager")) == f"{folder} cannot be loaded: {FLEX}"
    expected = f"{random_checkpoint} cannot be loaded: {FLEX}"
    assert one_line_error(lambda: load(random_checkpoint, attn_implementation="flex_attention")) == expected
    engine = load(random_checkpoint, attn_implementation="eager", fast=False)
    assert len(list(engine.stream([1, 2, 3], stop=set(), sampling=Sampling(temperature=0, max_new_tokens=2)))) == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="loads on the GPU")
@pytest.mark.parametrize("attention", ["flash_attention_2", "flash_attention_3", "paged|flash_attention_4"])
def test_flash_attention_on_a_cpu_is_refused_before_a_kernel_is_fetched(random_checkpoint, no_downloads, attention):
    """transformers swapped in the Hub kernel kernels-community/vllm-flash-attn3 (a GPU's) and refused it: "... could
    not verify publisher trust status. Set trust_remote_code=True ...", which the lab refuses in turn."""
    name = attention.removeprefix("paged|")
    assert one_line_error(lambda: load(random_checkpoint, attn_implementation=attention)) == (
        f"{random_checkpoint} cannot be loaded: {name} runs on a GPU only: use attn_implementation='eager', or load on "
        "a GPU")
    assert no_downloads == []


@pytest.mark.parametrize("layer_types", [None, ["full_attention"] * 4], ids=["sliding-layers", "full-layers"])
def test_a_sliding_window_of_null_is_refused(tmp_path, random_checkpoint, layer_types):
    """The check let null through ("every position"): it loaded, the doctor sized sliding layers of 0 tokens, and every
    turn on transformers' forward (any GPU, or fast=False) failed: "'NoneType' object cannot be interpreted as an
    integer", or "Could not find a `sliding_window` argument in the config" with full-attention layers only."""
    changes = {"sliding_window": None} | ({"layer_types": layer_types} if layer_types else {})
    folder = with_config(random_checkpoint, tmp_path / "window", **changes)
    expected = (f"the config of {folder} is not a valid gpt-oss config: sliding_window must be a positive whole number, "
                "not None")
    assert one_line_error(lambda: load(folder)) == expected
    assert one_line_error(lambda: doctor(folder)) == expected


def test_a_gguf_file_or_a_file_of_a_checkpoint_given_for_a_folder_says_what_to_give(tmp_path, random_checkpoint):
    """A GGUF file (llama.cpp's) and a checkpoint's own model.safetensors or config.json were each told "is a file: give
    the checkpoint folder", though a GGUF has no folder to give and the other's folder is the one beside it."""
    gguf = tmp_path / "my model.gguf"
    gguf.write_bytes(b"GGUF\x03\x00\x00\x00" + bytes(64))
    renamed = tmp_path / "weights.bin"   # a GGUF by its contents, whatever its name
    renamed.write_bytes(gguf.read_bytes())
    for file in (gguf, renamed):
        expected = (f"{file} is a GGUF file, which llama.cpp runs, not transformers: serve it (python -m "
                    f"llama_cpp.server --model {shlex.quote(str(file))}) and talk to it with `%gptoss connect URL` "
                    "(Session.connect(url) in Python)")
        assert one_line_error(lambda: load(file)) == expected
        assert one_line_error(lambda: doctor(file)) == expected
    weights = random_checkpoint / "model.safetensors"
    expected = f"{weights} is a file: give the checkpoint folder that holds it, {random_checkpoint}"
    assert one_line_error(lambda: load(weights)) == expected
    assert one_line_error(lambda: doctor(weights)) == expected
    assert one_line_error(lambda: load(random_checkpoint / "config.json")) == expected.replace("model.safetensors",
                                                                                               "config.json")
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    assert one_line_error(lambda: load(other)) == f"{other} is a file: give the checkpoint folder"


def _browse(folder: Path) -> None:
    from gptoss_lab.tools.browser import Browser

    Browser(folder)


@pytest.mark.parametrize("ask", [load, doctor, lambda folder: load(folder / "nope"), _browse],
                         ids=["load", "doctor", "not-found", "browse"])
def test_a_folder_named_with_terminal_controls_is_written_out_in_the_error(tmp_path, ask):
    """A folder named `gpt\\x1b[2J\\u202e...` reached the load's, the doctor's and the browser's one-line errors as it
    is: a terminal (or JupyterLab's ANSI rendering of a traceback) cleared the screen or reversed the line; a newline
    in it made a second line of the name's choosing."""
    from gptoss_lab.engines.checkpoint import LoadError
    from gptoss_lab.tools.browser import BrowserError

    folder = tmp_path / "gpt\x1b[2J\u202eevil\nUsageError: fake"
    folder.mkdir()
    with pytest.raises((LoadError, BrowserError)) as info:
        ask(folder)
    message = str(info.value)
    assert "gpt\\x1b[2J\\u202eevil\\nUsageError: fake" in message
    assert "\x1b" not in message and "\u202e" not in message and "\n" not in message
