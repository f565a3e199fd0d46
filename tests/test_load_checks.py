"""The checks a load makes, whatever names the checkpoint: a Hub id found in the Hugging Face cache offline is checked
as its folder is; weights holding NaN or infinities (embeddings, attention, norms, routers, experts) are refused naming
the tensor; an attention implementation gpt-oss cannot run (sdpa, a name transformers does not know) is refused before
the load begins; the doctor sizes a loaded model as it is in memory."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import gptoss_lab
from gptoss_lab.engines.checkpoint import MAX_JSON_BYTES, LoadError, size
from gptoss_lab.engines.doctor import doctor
from gptoss_lab.engines.local import LocalEngine
from test_load_more import with_config  # tests/ is on sys.path
from test_load_trust import load, one_line_error
from test_remote_more import _usage_errors

GARBAGE = "holds NaN or infinite values, so every answer would be garbage: copy or download the checkpoint again"


def with_weights(source: Path, folder: Path, change) -> Path:
    """A copy of a checkpoint folder whose model.safetensors `change(tensors)` edited in place."""
    shutil.copytree(source, folder)
    tensors = load_file(folder / "model.safetensors")
    change(tensors)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def poisoned(name: str, value: float):
    def change(tensors):
        tensors[name].view(-1)[-1] = value
    return change


@pytest.mark.parametrize("name, value", [
    ("model.embed_tokens.weight", float("nan")),  # tied: also the output matrix
    ("model.layers.0.self_attn.q_proj.weight", float("inf")),
    ("model.layers.1.input_layernorm.weight", float("nan")),
    ("model.layers.2.mlp.router.weight", -float("inf")),
    ("model.layers.3.self_attn.sinks", float("nan")),
    ("model.layers.1.mlp.experts.down_proj", float("nan")),  # unquantized experts: no scales to check
])
def test_a_weight_holding_nan_or_inf_is_refused_naming_it(tmp_path, random_checkpoint, name, value):
    """Each loaded without a word, and every turn wrote "!!!!" (NaN logits) or garbage."""
    folder = with_weights(random_checkpoint, tmp_path / "poisoned", poisoned(name, value))
    assert one_line_error(lambda: load(folder)) == f"{folder} cannot be loaded: the weight {name} {GARBAGE}"


def test_a_weight_made_infinite_by_the_dtype_it_loads_in_says_which_dtype_fits(tmp_path, random_checkpoint):
    """A bfloat16 weight past float16's largest value (65504), loaded with --dtype float16: the load said the
    checkpoint holds infinities, "copy or download the checkpoint again", which mends nothing; its stored values are
    finite, and bfloat16 loads it."""
    name = "model.layers.1.mlp.router.weight"
    folder = with_weights(random_checkpoint, tmp_path / "wide", poisoned(name, 1e5))
    said = (f"{folder} cannot be loaded: the weight {name} holds values too large for float16 (they became infinite): "
            "load it in bfloat16 or float32: use ")
    assert one_line_error(lambda: load(folder, dtype="float16")) == f"{said}Session.load('{folder}', dtype='bfloat16')"
    # the magic names its own command, with this folder and the user's other options (it said `load NAME`)
    assert _usage_errors(f"load {folder} --dtype float16 --dequantize") == [
        f"%gptoss load: {said}%gptoss load {folder} --dtype bfloat16 --dequantize"]
    assert load(folder, dtype="bfloat16").model.model.layers[1].mlp.router.weight.isfinite().all()


def test_an_unloaded_models_messages_give_its_own_load_to_copy(random_checkpoint, lab_shell, capsys):
    """After `%gptoss unload`, the unload line, `%gptoss status` and a later turn of that session said `%gptoss load
    NAME`: the lab knew the name, and the options it was loaded with. Each gives the line to copy, whole on one line."""
    from gptoss_lab.session import TurnError

    again = f"%gptoss load {random_checkpoint} --dtype bfloat16"
    lab_shell.run_line_magic("gptoss", f"load {random_checkpoint} --dtype bfloat16")
    capsys.readouterr()
    lab_shell.run_line_magic("gptoss", "unload")
    lab_shell.run_line_magic("gptoss", "status")
    unloaded, status = capsys.readouterr().out.split("No model loaded")
    with pytest.raises(TurnError) as refused:
        lab_shell.find_magic("gptoss").__self__._unloaded.ask("again")
    for out in (unloaded, status):
        assert any(f"`{again}`" in line for line in out.splitlines()), out
        assert f"`{again}` for {random_checkpoint.name} again" in " ".join(out.split()), out
    assert str(refused.value) == (f"{random_checkpoint.name} was unloaded: load it again (Session.load("
                                  f"'{random_checkpoint}', dtype='bfloat16'), or {again}) to ask again")


def test_large_finite_weights_whose_sums_overflow_still_load(tmp_path, random_checkpoint):
    """The check sums each weight first: a float16 sum of large values is infinite while every value is finite."""
    def large(tensors):
        tensors["model.layers.0.mlp.router.weight"].fill_(60000)
    folder = with_weights(random_checkpoint, tmp_path / "large", large)
    engine = load(folder, dtype="float16")
    assert torch.isinf(engine.model.model.layers[0].mlp.router.weight.sum())


def test_the_attention_implementations_gpt_oss_cannot_run_are_refused_before_the_load(tmp_path, capsys,
                                                                                      random_checkpoint):
    """sdpa (transformers has none for gpt-oss's attention sinks) and an unknown name were refused by transformers
    only after "Loading ..." was printed, in a paragraph clipped mid-sentence; a config's "attn_implementation":
    "sdpa" was listed as a choice and sized by the doctor as fitting."""
    fix = "use attn_implementation='eager', or 'flex_attention' on a GPU"
    sdpa = "gpt-oss cannot run the attention implementation 'sdpa' (transformers has none with gpt-oss's attention sinks)"
    for option, message in [("sdpa", sdpa), ("paged|sdpa", sdpa),
                            ("bogus", "'bogus' is no attention implementation transformers knows"),
                            ("eagr", "'eagr' is no attention implementation transformers knows")]:
        with pytest.raises(Exception) as info:
            LocalEngine.from_pretrained(random_checkpoint, attn_implementation=option)
        assert str(info.value) == f"{random_checkpoint} cannot be loaded: {message}: {fix}"
        assert "Loading" not in capsys.readouterr().out
    folder = with_config(random_checkpoint, tmp_path / "sdpa", attn_implementation="sdpa")
    expected = f"{folder} cannot be loaded: {sdpa}: remove \"attn_implementation\" from its config.json"
    assert one_line_error(lambda: load(folder, attn_implementation="eager")) == expected
    assert one_line_error(lambda: doctor(folder)) == expected
    for option in ("eager", "paged|eager"):
        assert load(random_checkpoint, attn_implementation=option).name == random_checkpoint.name


def test_the_doctor_sizes_a_loaded_model_as_it_is_in_memory(random_checkpoint):
    """A model moved to bfloat16 after its float32 load (the CPU default) was reported as "loads as float32" with
    twice the bytes it held."""
    engine = load(random_checkpoint)
    assert doctor(engine, memory="1 GB").load_how == "float32"
    engine.model.to(torch.bfloat16)
    held = sum(p.numel() * p.element_size() for p in engine.model.parameters())
    d = doctor(engine, memory="1 GB")
    assert (d.load_how, d.load_bytes) == ("bfloat16", held)
    assert f"bfloat16: {d.load_bytes / 1e6:.1f} MB of weights" in str(d) and "float32" not in str(d)


def test_mxfp4_experts_transformers_dequantizes_against_the_plan_are_said_as_they_are(tmp_path, capsys, monkeypatch,
                                                                                    random_checkpoint):
    """Where the lab's mirror of transformers' MXFP4 checks says the kernels run but transformers falls back (a hub
    kernel it cannot fetch, a package it finds too old), the load line said "MXFP4 experts" and the packed size while
    the experts were in memory dequantized, and nothing said otherwise."""
    from gptoss_lab.engines import checkpoint
    from gptoss_lab.tiny.quantize import quantize_checkpoint

    folder = tmp_path / "mxfp4"
    quantize_checkpoint(random_checkpoint, folder)
    plan_load = checkpoint.plan_load

    def planned_packed(*args, **kw):  # the plan as on a GPU with the kernels; transformers then dequantizes
        plan = plan_load(*args, **kw)
        plan.how, plan.note, plan.packed = "float32, MXFP4 experts", None, True
        plan.weights = checkpoint.weight_bytes(checkpoint.read_config(plan.source), "float32", packed=True)
        return plan

    monkeypatch.setattr(checkpoint, "plan_load", planned_packed)
    capsys.readouterr()
    engine = LocalEngine.from_pretrained(folder)
    out = capsys.readouterr().out
    held = sum(p.numel() * p.element_size() for p in engine.model.parameters())
    packed = checkpoint.weight_bytes(engine.config, "float32", packed=True)
    said = " ".join(out.split())   # the last thing said, in lines JupyterLab's output area does not break in a word
    assert said.endswith(f"Note: transformers dequantized the MXFP4 experts to float32 after all: "
                         f"{size(held)} of weights, not {size(packed)}.") and "\nNote: transformers" in out, out


CACHED = """
import json, sys
from gptoss_lab.engines.checkpoint import LoadError
from gptoss_lab.engines.doctor import doctor
from gptoss_lab.engines.local import LocalEngine

def attempt(call):
    try:
        return call()
    except LoadError as error:
        return str(error)

print(json.dumps({
    "load": {repo: attempt(lambda: LocalEngine.from_pretrained(repo, progress=False).name) for repo in sys.argv[1:]},
    "doctor": {repo: attempt(lambda: doctor(repo, device="cpu", memory="1 MB").load_how) for repo in sys.argv[1:]},
}))
"""


def in_the_cache(hub: Path, repo: str, source: Path) -> None:
    """`source` laid out as `hf download` caches `repo` under the hub cache folder `hub`: files in blobs/, linked
    from snapshots/<commit>/, refs/main naming the commit."""
    root = hub / f"models--{repo.replace('/', '--')}"
    (root / "blobs").mkdir(parents=True)
    (root / "snapshots" / "c0ffee").mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text("c0ffee")
    for file in source.iterdir():
        shutil.copy(file, root / "blobs" / f"{repo.replace('/', '-')}-{file.name}")
        (root / "snapshots" / "c0ffee" / file.name).symlink_to(Path("../../blobs") / f"{repo.replace('/', '-')}-{file.name}")


def test_a_hub_id_in_the_cache_offline_is_checked_as_its_folder_is(tmp_path, random_checkpoint):
    """`load("openai/gpt-oss-20b")` from the Hugging Face cache (HF_HUB_OFFLINE=1) skipped checks a folder gets: a
    NaN in the embedding loaded, a config.json of more than 16 MB was read, and the doctor sized weights stored in
    float16 as bfloat16."""
    hub, made = tmp_path / "hub", tmp_path / "made"
    made.mkdir()
    nan = with_weights(random_checkpoint, made / "nan", poisoned("model.embed_tokens.weight", float("nan")))
    huge = with_config(random_checkpoint, made / "huge", padding=" " * MAX_JSON_BYTES)

    def half(tensors):
        tensors.update({k: v.half() for k, v in tensors.items() if v.is_floating_point()})

    fp16 = with_weights(random_checkpoint, made / "fp16", half)
    config = json.loads((fp16 / "config.json").read_text())
    del config["dtype"]  # the dtype is read from the safetensors headers, as for the folder itself
    (fp16 / "config.json").write_text(json.dumps(config))
    for repo, source in [("someone/nan", nan), ("someone/huge", huge), ("someone/fp16", fp16),
                         ("someone/fine", random_checkpoint)]:
        in_the_cache(hub, repo, source)
    package = str(Path(gptoss_lab.__file__).resolve().parents[1])  # the gptoss_lab under test
    env = {**os.environ, "HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([package, os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", CACHED, "someone/nan", "someone/huge", "someone/fp16", "someone/fine"],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert found["doctor"]["someone/fp16"] == doctor(fp16, device="cpu", memory="1 MB").load_how == "float16"
    assert found["load"] == {
        "someone/nan": f"someone/nan cannot be loaded: the weight model.embed_tokens.weight {GARBAGE}",
        "someone/huge": f"someone/huge cannot be loaded: config.json is {size((huge / 'config.json').stat().st_size)}, "
                        f"more than a checkpoint's JSON file can be ({size(MAX_JSON_BYTES)})",
        "someone/fp16": "fp16", "someone/fine": "fine"}
    assert found["doctor"]["someone/huge"] == found["load"]["someone/huge"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a map over GPUs is another load")
def test_a_device_map_or_dequantize_that_cannot_apply_is_said_not_silently_taken(capsys):
    engine = LocalEngine.from_pretrained("tiny", device_map="auto", dequantize=True)  # needed accelerate, loaded bf16
    assert next(engine.model.parameters()).dtype == torch.float32
    out = capsys.readouterr().out
    assert out.startswith("Loading gpt-oss-tiny on cpu (float32, the CPU default, ")
    assert "Note: gpt-oss-tiny stores no MXFP4 experts: dequantize changes nothing." in " ".join(out.split()), out
    try:
        import accelerate  # noqa: F401
    except ImportError:
        with pytest.raises(LoadError, match=r"^device_map=\{'': 'cpu'\} needs the accelerate package "
                                            r"\(pip install accelerate\), or load on one device: use "
                                            r"Session\.load\('tiny', device='cpu'\)$"):
            LocalEngine.from_pretrained("tiny", device_map={"": "cpu"})
        # the magic's: this machine's device (it said `--device cuda` on a CPU), the user's model and dtype kept
        assert _usage_errors("load tiny --device-map cpu --dtype bfloat16") == [
            "%gptoss load: device_map='cpu' needs the accelerate package (pip install accelerate), or load on one "
            "device: use %gptoss load tiny --device cpu --dtype bfloat16"]


def test_a_device_and_a_device_map_together_are_refused():
    """`device="cuda", device_map="auto"` loaded on this CPU without a word (the map won and device= was dropped, where
    device="cuda" alone says there is no GPU); giving both is refused in one line before anything loads."""
    with pytest.raises(LoadError) as refused:
        LocalEngine.from_pretrained("tiny", device="cuda", device_map="auto", progress=False)
    assert str(refused.value) == ("give device= or device_map=, not both: a device map places the weights itself, so "
                                  "device='cuda' would be ignored")


def test_a_model_with_more_experts_than_a_record_holds_says_so_before_a_routing_turn():
    """A checkpoint with 33,000 experts a layer loaded, and every routing turn then failed with "num_experts must be
    from 0 to 32768, not 33000" (a review): the reason is said as for any model whose routing cannot be recorded."""
    from gptoss_lab import Session
    from gptoss_lab.engines.checkpoint import RECORDED_EXPERTS, routing_visible
    from gptoss_lab.routing.record import MAX_EXPERT

    assert RECORDED_EXPERTS == MAX_EXPERT + 1  # (a copy: a load does not import the routing package)
    session = Session.load("tiny")
    session.engine.model.config.num_local_experts = 40_000  # as such a checkpoint's config says
    why = "it has 40,000 experts a layer, past the 32,768 a routing record holds"
    assert routing_visible(session.engine.model) == why
    reply = session.ask("What is 2 + 2?", routing=True, max_new_tokens=5)
    assert reply.errors == [f"The turn failed: routing cannot be recorded on this model: {why}"] and reply.routing is None
