"""MXFP4: the project's quantizer against transformers' own dequantizer, gpt-oss-tiny in openai/gpt-oss-20b's
on-disk layout, loading it (CPU: dequantized, with a one-line note), its answers and routing, and the refusal
to record routing where a fused MoE kernel would hide it."""
from __future__ import annotations

import json
import re
import types

import numpy as np
import pytest
import torch

from gptoss_lab.engines import checkpoint
from gptoss_lab.engines.base import EngineError, Sampling
from gptoss_lab.engines.local import LocalEngine
from gptoss_lab.routing import Recorder
from gptoss_lab.tiny import CHECKPOINT
from gptoss_lab.tiny.quantize import E2M1, dequantize, main, quantize, quantize_checkpoint

# Layer 0's tensors in openai/gpt-oss-20b's (and -120b's) model.safetensors.index.json.
PUBLIC_LAYER = {
    "input_layernorm.weight", "post_attention_layernorm.weight", "mlp.router.weight", "mlp.router.bias",
    "mlp.experts.gate_up_proj_blocks", "mlp.experts.gate_up_proj_scales", "mlp.experts.gate_up_proj_bias",
    "mlp.experts.down_proj_blocks", "mlp.experts.down_proj_scales", "mlp.experts.down_proj_bias",
    "self_attn.q_proj.weight", "self_attn.q_proj.bias", "self_attn.k_proj.weight", "self_attn.k_proj.bias",
    "self_attn.v_proj.weight", "self_attn.v_proj.bias", "self_attn.o_proj.weight", "self_attn.o_proj.bias",
    "self_attn.sinks",
}
needs_tiny = pytest.mark.skipif(not (CHECKPOINT / "model.safetensors").is_file(), reason="gpt-oss-tiny weights missing")


@pytest.fixture(scope="module")
def tiny_mxfp4(tmp_path_factory):
    if not (CHECKPOINT / "model.safetensors").is_file():
        pytest.skip("gpt-oss-tiny weights are not in this checkout")
    out = tmp_path_factory.mktemp("mxfp4") / "gpt-oss-tiny-mxfp4"
    return out, quantize_checkpoint(CHECKPOINT, out)


def test_packing_matches_transformers_dequantization_element_by_element():
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    torch.manual_seed(0)
    weight = torch.randn(3, 96, 160) * torch.logspace(-3, 1, 160)  # [experts, in, out] as transformers holds it
    weight[0, :, :32] = 0  # an all-zero block
    blocks, scales = quantize(weight.transpose(1, 2))
    assert blocks.dtype == scales.dtype == torch.uint8
    assert blocks.shape == (3, 160, 96 // 32, 16) and scales.shape == (3, 160, 96 // 32)
    theirs = convert_moe_packed_tensors(blocks, scales, dtype=torch.float32)  # back to [experts, in, out]
    assert torch.equal(dequantize(blocks, scales).transpose(1, 2), theirs)
    error = (theirs - weight).norm() / weight.norm()
    assert 0 < error < 0.15


def test_every_scale_byte_and_code_dequantizes_as_transformers_and_the_reference_do():
    """Scale byte 255 (the MX format's NaN) made every zero NaN (0 × exp2(128)); openai/gpt-oss and transformers
    compute by ldexp: 0 stays 0, 0.5 is 2**127."""
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    codes = torch.arange(16, dtype=torch.uint8).repeat(2)
    blocks = (codes[0::2] | codes[1::2] << 4).expand(1, 256, 1, 16).contiguous()  # every code, under every scale
    scales = torch.arange(256).to(torch.uint8).reshape(1, 256, 1)
    for dtype in (torch.float32, torch.bfloat16):
        theirs = convert_moe_packed_tensors(blocks, scales, dtype=dtype).transpose(1, 2)
        torch.testing.assert_close(dequantize(blocks, scales, dtype), theirs, rtol=0, atol=0)
    assert dequantize(blocks, scales)[0, 255, :2].tolist() == [0.0, 2.0**127]


def test_values_on_the_grid_survive_exactly_and_bytes_are_laid_out_as_gpt_oss_stores_them():
    values = torch.tensor(E2M1 + tuple(-v for v in E2M1))
    grid = values[torch.randint(0, 16, (4, 64), generator=torch.Generator().manual_seed(1))]
    grid[:, 0] = 6.0  # each block's largest magnitude is 6, so its scale is 2**0
    exact = grid * 2.0 ** torch.tensor([[-3.0], [0.0], [2.0], [5.0]])
    blocks, scales = quantize(exact)
    assert torch.equal(dequantize(blocks, scales), exact)
    assert scales[:, 0].tolist() == [124, 127, 129, 132]  # E8M0: exponent + 127

    block = torch.zeros(1, 32)
    block[0, :4] = torch.tensor([0.5, -6.0, 1.25, 2.5])  # 1.25 and 2.5 are ties: round half to even code
    blocks, scales = quantize(block)
    assert blocks[0, 0, :2].tolist() == [0xF1, 0x42]  # low nibble = even element: 0.5 -> 1, -6 -> 0xF; 1 -> 2, 2 -> 4
    assert scales.tolist() == [[127]]


def test_tiny_in_mxfp4_has_the_public_layout_and_config(tiny_mxfp4):
    from safetensors import safe_open

    out, errors = tiny_mxfp4
    config = json.loads((out / "config.json").read_text())
    public = json.loads((checkpoint.CONFIGS / "gpt-oss-20b" / "config.json").read_text())
    assert config["quantization_config"] == public["quantization_config"]
    assert {k: v for k, v in config.items() if k != "quantization_config"} == json.loads((CHECKPOINT / "config.json").read_text())
    hidden, inter, experts = config["hidden_size"], config["intermediate_size"], config["num_local_experts"]
    with safe_open(out / "model.safetensors", "pt") as f:
        names = set(f.keys())
        for layer in range(config["num_hidden_layers"]):
            assert {n.removeprefix(f"model.layers.{layer}.") for n in names if n.startswith(f"model.layers.{layer}.")} == PUBLIC_LAYER
        shape = {n: (f.get_slice(n).get_shape(), f.get_slice(n).get_dtype()) for n in names}
    e = "model.layers.0.mlp.experts."
    assert shape[e + "gate_up_proj_blocks"] == ([experts, 2 * inter, hidden // 32, 16], "U8")
    assert shape[e + "gate_up_proj_scales"] == ([experts, 2 * inter, hidden // 32], "U8")
    assert shape[e + "down_proj_blocks"] == ([experts, hidden, inter // 32, 16], "U8")
    assert shape[e + "down_proj_scales"] == ([experts, hidden, inter // 32], "U8")
    assert {dtype for n, (_, dtype) in shape.items() if not n.endswith(("_blocks", "_scales"))} == {"BF16"}
    assert len(errors) == 2 * config["num_hidden_layers"]
    assert all(0.05 < e.relative_rms < 0.15 for e in errors)  # 4-bit values: about 11.5 % RMS on trained weights


def test_transformers_loads_the_experts_the_quantizer_packed(tiny_mxfp4, capsys):
    from safetensors.torch import load_file

    out, _ = tiny_mxfp4
    engine = LocalEngine.from_pretrained(out)
    printed = capsys.readouterr()
    notes = " ".join(printed.out.split()).split("Note: ")[1:]   # the lines fitted to the output area, read as said
    assert len(notes) == 1 and "stores its experts in MXFP4" in notes[0] and "dequantized to float32" in notes[0]  # the CPU default dtype
    assert "use_kernels" not in printed.err  # transformers' own fallback warning is not repeated
    stored = load_file(out / "model.safetensors")
    for layer in (0, 3):
        experts = engine.model.model.layers[layer].mlp.experts
        for proj in ("gate_up_proj", "down_proj"):
            name = f"model.layers.{layer}.mlp.experts.{proj}"
            want = dequantize(stored[f"{name}_blocks"], stored[f"{name}_scales"]).transpose(1, 2)
            assert torch.equal(getattr(experts, proj).float(), want)


@needs_tiny
def test_mxfp4_tiny_answers_and_routes_like_the_bf16_tiny(tiny_mxfp4):
    from gptoss_lab import Session

    out, _ = tiny_mxfp4
    bf16, mxfp4 = Session.load("tiny", progress=False), Session.load(out, progress=False)
    a = bf16.ask("What is 37 * 12?", approval="auto", routing=True, effort="low")
    b = mxfp4.ask("What is 37 * 12?", approval="auto", routing=True, effort="low")
    assert "444" in a.final and "444" in b.final
    assert b.routing.experts.shape[1:] == (4, 2) and len(b.routing) > 100

    tokens = a.routing.tokens.tolist()  # the bf16 turn, teacher-forced through the MXFP4 model
    forced = Recorder()
    list(mxfp4.engine.stream(tokens[:-1], stop={tokens[-1]}, sampling=Sampling(temperature=0, max_new_tokens=1),
                             recorder=forced))
    n = len(tokens) - 1
    same = (np.sort(forced.routing.experts[:n], -1) == np.sort(a.routing.experts[:n], -1)).all(-1)
    assert 0.8 < same.mean() < 1.0  # quantization moves a few routes (3.8 % measured), not most


def test_routing_hidden_by_a_fused_kernel_is_refused_before_the_first_token(random_checkpoint):
    from transformers.integrations.mxfp4 import Mxfp4GptOssExperts, Mxfp4GptOssMLP

    engine = LocalEngine.from_pretrained(random_checkpoint, progress=False, dtype="float32")
    assert checkpoint.routing_visible(engine.model) is None
    mlp = engine.model.model.layers[1].mlp
    original = mlp.forward
    mlp.forward = types.MethodType(lambda self, x: original(x), mlp)  # what `kernelize` does to an instance
    assert "hub kernel" in checkpoint.routing_visible(engine.model)
    del mlp.forward
    with torch.device("meta"):
        fused = Mxfp4GptOssMLP(mlp.router, Mxfp4GptOssExperts(engine.config))
    engine.model.model.layers[1].mlp = fused
    reason = checkpoint.routing_visible(engine.model)
    assert "fused MXFP4 kernels" in reason and "dequantize=True" in reason
    stream = engine.stream([200006, 1000, 1001], stop={200002}, sampling=Sampling(max_new_tokens=2), recorder=Recorder())
    with pytest.raises(EngineError, match="routing cannot be recorded on this model: its MoE layers run"):
        next(stream)


def test_a_sharded_checkpoint_quantized_has_its_index_say_its_own_size(tmp_path, random_checkpoint):
    """The index kept the source's total_size, the size of its bf16 experts, not of the MXFP4 ones written."""
    import shutil

    from safetensors.torch import load_file
    from test_checkpoint_hostile import in_two_shards

    source = in_two_shards(shutil.copytree(random_checkpoint, tmp_path / "source"))
    index = json.loads((source / "model.safetensors.index.json").read_text())
    (source / "model.safetensors.index.json").write_text(json.dumps({**index, "metadata": {"total_size": 1}}))
    quantize_checkpoint(source, tmp_path / "out")
    written = sum(t.numel() * t.element_size() for shard in (tmp_path / "out").glob("*.safetensors")
                  for t in load_file(shard).values())
    assert json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())["metadata"] == \
        {"total_size": written}


def test_quantize_command_line(tmp_path, capsys, random_checkpoint):
    main(["--source", str(random_checkpoint), "--out", str(tmp_path / "q")])
    out = capsys.readouterr().out
    assert out.count("relative RMS error") == 8 and f"Wrote {tmp_path / 'q'}" in out
    with pytest.raises(SystemExit):
        main(["--source", str(tmp_path / "q"), "--out", str(tmp_path / "again")])
    assert "already quantized (mxfp4)" in capsys.readouterr().err


def test_quantize_reads_whether_a_checkpoint_is_quantized_from_its_weights_not_its_config(tmp_path, random_checkpoint):
    """A bf16 checkpoint whose config.json claims MXFP4 was refused as "already quantized (mxfp4)", and MXFP4 weights
    whose config says nothing were "quantized" again: the safetensors headers decide, as the load's do."""
    import shutil

    claims = shutil.copytree(random_checkpoint, tmp_path / "claims")
    config = json.loads((claims / "config.json").read_text())
    (claims / "config.json").write_text(json.dumps({**config, "quantization_config": {"quant_method": "mxfp4"}}))
    assert len(quantize_checkpoint(claims, tmp_path / "out")) == 8
    assert checkpoint.stored_format(str(tmp_path / "out"), "out").mxfp4
    (tmp_path / "out" / "config.json").write_text(json.dumps(config))   # MXFP4 weights, config.json silent
    with pytest.raises(ValueError, match=r"out is already quantized \(mxfp4\)$"):
        quantize_checkpoint(tmp_path / "out", tmp_path / "again")


@pytest.mark.kernel
def test_mxfp4_tiny_through_the_magics_in_a_real_kernel(tiny_mxfp4):
    """`%gptoss load` of the MXFP4 folder in a real kernel: 37 * 12 = 444 through a python call, routing captured."""
    from jupyter_client.manager import start_new_kernel

    from test_kernel import run  # tests/ is on sys.path (rootdir conftest, no package)

    out_dir, _ = tiny_mxfp4
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        run(kc, "%load_ext gptoss_lab")
        out, content = run(kc, f"%gptoss load {out_dir}", timeout=120)
        assert content["status"] == "ok", out
        said = " ".join(out.split())
        assert "Note: gpt-oss-tiny-mxfp4 stores its experts in MXFP4" in said and "Loaded gpt-oss-tiny-mxfp4" in said
        out, content = run(kc, "%%gptoss --text --approve auto --routing\nWhat is 37 * 12?", timeout=120)
        assert content["status"] == "ok", out
        out, _ = run(kc, "r = _gptoss.routing; c = _gptoss.tool_calls[0]\n"
                         "print(c.output.strip(), '444' in _gptoss.final, r.experts.shape[1:], len(r) == len(r.labels) > 100)")
        assert out.split() == ["444", "True", "(4,", "2)", "True"], out
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_quantize_refusals_are_one_line_and_write_nothing(tmp_path, capsys, random_checkpoint, monkeypatch):
    source_files = {p.name: p.read_bytes() for p in random_checkpoint.iterdir()}
    (tmp_path / "llama").mkdir()
    (tmp_path / "llama" / "config.json").write_text('{"model_type": "llama"}')
    (tmp_path / "list").mkdir()
    (tmp_path / "list" / "config.json").write_text("[1, 2]")
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "README.md").write_text("mine")
    (tmp_path / "empty").mkdir()
    for source, out, message in [(tmp_path / "none", tmp_path / "a", f"checkpoint folder not found: {tmp_path / 'none'}"),
                                 (tmp_path / "empty", tmp_path / "e", "empty has no config.json, so it is not a "
                                                                      "transformers checkpoint folder"),
                                 (random_checkpoint, random_checkpoint / "inner", "another folder than its source, "
                                                                                  "and not inside it"),
                                 (tmp_path / "llama", tmp_path / "b", "is not a gpt-oss checkpoint (model_type 'llama')"),
                                 (tmp_path / "list", tmp_path / "c", "is not a gpt-oss checkpoint (model_type None)"),
                                 (random_checkpoint, random_checkpoint, "another folder than its source"),
                                 (random_checkpoint, existing, "existing already exists: give a new (or empty) folder")]:
        with pytest.raises(SystemExit) as info:
            main(["--source", str(source), "--out", str(out)])
        err = capsys.readouterr().err
        assert info.value.code == 2 and err.startswith("usage: python -m gptoss_lab.tiny.quantize"), err
        assert err.splitlines()[-1].startswith("python -m gptoss_lab.tiny.quantize: error: ") and message in err, err
    assert (existing / "README.md").read_text() == "mine" and [p.name for p in existing.iterdir()] == ["README.md"]
    assert {p.name: p.read_bytes() for p in random_checkpoint.iterdir()} == source_files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "existing", "list", "llama"]

    def refuse(self, *args, **kw):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(type(tmp_path), "mkdir", refuse)
    with pytest.raises(SystemExit):
        main(["--source", str(random_checkpoint), "--out", str(tmp_path / "ro" / "q")])
    assert capsys.readouterr().err == f"python -m gptoss_lab.tiny.quantize: error: cannot write {tmp_path / 'ro' / 'q'}: Permission denied\n"


def test_quantize_into_an_empty_folder_and_nothing_left_when_it_fails(tmp_path, random_checkpoint, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert len(quantize_checkpoint(random_checkpoint, empty)) == 8 and (empty / "config.json").is_file()

    import gptoss_lab.tiny.quantize as q

    def broken(tensors):
        raise ValueError("MXFP4 needs rows of a multiple of 32 values; these have 7")

    monkeypatch.setattr(q, "quantize_state_dict", broken)
    with pytest.raises(ValueError, match="multiple of 32"):
        quantize_checkpoint(random_checkpoint, tmp_path / "half")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # no half-written folder


GATE_UP = "model.layers.0.mlp.experts.gate_up_proj"


@pytest.mark.parametrize("change, message", [
    (lambda t: t.pop(f"{GATE_UP}_scales"), f"the weight {GATE_UP}_scales is missing"),
    (lambda t: t.update({f"{GATE_UP}_blocks": t[f"{GATE_UP}_blocks"][:, :, :1].contiguous()}),
     rf"the weight {GATE_UP}_blocks has shape \(8, 128, 1, 16\), the config needs \(8, 128, 2, 16\)"),
    (lambda t: t.update({f"{GATE_UP}_scales": t[f"{GATE_UP}_scales"].to(torch.int16)}),
     f"the weight {GATE_UP}_scales is stored as I16, not U8"),
])
def test_mxfp4_blocks_or_scales_that_do_not_fit_the_config_are_one_line(tmp_path, random_checkpoint, change, message):
    """Before, transformers printed a report with a traceback per expert projection and raised a RuntimeError."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "q"
    quantize_checkpoint(random_checkpoint, folder)
    tensors = load_file(folder / "model.safetensors")
    change(tensors)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(checkpoint.LoadError, match=message) as info:
        LocalEngine.from_pretrained(folder, progress=False)
    assert "\n" not in str(info.value)


def test_mxfp4_weights_whose_config_does_not_say_so_are_refused_before_they_load(tmp_path, random_checkpoint, capfd):
    """A config.json without its quantization_config (edited, or from another converter): the header check took the
    MXFP4 tensors, transformers loaded every weight and printed a table of unexpected and missing ones, and the load
    ended in "the weight ... is missing from its .safetensors files", though it is there, packed."""
    folder = tmp_path / "q"
    quantize_checkpoint(random_checkpoint, folder)
    config = json.loads((folder / "config.json").read_text())
    del config["quantization_config"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(checkpoint.LoadError) as info:
        LocalEngine.from_pretrained(folder, progress=False)
    assert str(info.value) == (f"{folder} cannot be loaded: the weight {GATE_UP} is stored in MXFP4 ({GATE_UP}_blocks), "
                               "but its config has no quantization_config: add \"quantization_config\": "
                               "{\"quant_method\": \"mxfp4\"} to its config.json")
    assert "LOAD REPORT" not in capfd.readouterr().err  # refused before any weight loaded


@pytest.mark.parametrize("patterns", [[".*" * 16 + "Q"], "lm_head", ["model.(layers"], [7]],
                         ids=["backtracking", "no-list", "no-regex", "no-string"])
def test_modules_to_not_convert_that_are_no_module_names_are_refused(tmp_path, random_checkpoint, patterns):
    """transformers matches each pattern against every MoE layer's name as a regular expression where the experts stay
    packed (a GPU with the MXFP4 kernels): ten ".*" took 4.5 s a name here, and each two more about 30 times as long
    (sixteen: days per layer); an unbalanced "(" raised re.error and a number a TypeError (its should_convert_module,
    run here). The CPU load, which dequantizes, never reads them: each loaded here."""
    from gptoss_lab.engines.doctor import doctor

    folder = tmp_path / "q"
    quantize_checkpoint(random_checkpoint, folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["quantization_config"]["modules_to_not_convert"][0] == "model.layers.*.self_attn"  # as released
    config["quantization_config"]["modules_to_not_convert"] = patterns
    (folder / "config.json").write_text(json.dumps(config))
    expected = (f"the config of {folder} is not a valid gpt-oss config: quantization_config's modules_to_not_convert "
                f"must be a list of module names, each with at most one .* (model.layers.*.self_attn), not {patterns!r:.60}")
    for call in (lambda: LocalEngine.from_pretrained(folder, progress=False), lambda: doctor(folder)):
        with pytest.raises(checkpoint.LoadError) as info:
            call()
        assert str(info.value) == expected


def test_quantize_prints_a_load_command_that_works_when_copied_for_a_folder_with_spaces(tmp_path, capsys,
                                                                                      random_checkpoint):
    """`--out "My models/tiny mxfp4"` printed ``%gptoss load My models/tiny mxfp4``: pasted into a cell, the magic read
    three words and refused it ("unrecognized arguments"). The printed command quotes the folder as the magic reads it."""
    from IPython.core.interactiveshell import InteractiveShell

    out = tmp_path / "My models" / "tiny mxfp4"
    main(["--source", str(random_checkpoint), "--out", str(out)])
    command = re.search(r"`(%gptoss load .*)`", capsys.readouterr().out).group(1)
    shell = InteractiveShell.instance()
    try:
        shell.run_cell("%load_ext gptoss_lab")
        assert shell.run_cell(command).success, command
    finally:
        shell.run_cell("%gptoss unload")
        InteractiveShell.clear_instance()   # later tests must not find this shell's namespace
    assert f"Loaded {out.name}" in capsys.readouterr().out


def test_a_checkpoint_with_only_some_experts_in_mxfp4_says_so_and_loads_each_as_stored(tmp_path, random_checkpoint,
                                                                                      capsys):
    """Layers 0 and 1 in bf16, 2 and 3 in MXFP4 (a half-converted folder): the load note, doctor and the quantizer
    called it MXFP4 as a whole ("53.3 MB instead of 51.9 MB", "MXFP4 experts", "loads as bfloat16 with MXFP4 experts"
    where the kernels run, which keep only packed experts); each now says what it holds, and it loads dequantized,
    each layer's experts as stored."""
    from safetensors.torch import load_file, save_file

    from gptoss_lab import doctor

    quantize_checkpoint(random_checkpoint, tmp_path / "q")
    plain, packed = load_file(random_checkpoint / "model.safetensors"), load_file(tmp_path / "q" / "model.safetensors")
    mixed = {k: v for k, v in packed.items() if not (k.startswith(("model.layers.0.", "model.layers.1."))
                                                      and k.endswith(("_blocks", "_scales")))}
    mixed.update({k: v for k, v in plain.items() if k.startswith(("model.layers.0.", "model.layers.1."))
                  and k.endswith(checkpoint.EXPERT_WEIGHTS)})
    save_file(mixed, tmp_path / "q" / "model.safetensors", metadata={"format": "pt"})
    said = "MXFP4 (4 of 8 expert tensors) + bfloat16"
    assert checkpoint.stored_format(str(tmp_path / "q"), "q").experts_as() == said
    engine = LocalEngine.from_pretrained(tmp_path / "q", device="cpu", dtype="float32")
    notes = " ".join(capsys.readouterr().out.split()).split("Note: ")[1:]   # the lines fitted to the output area
    assert len(notes) == 1 and notes[0].startswith(f"q stores its experts in {said}: they load dequantized to float32 "
                                                   "(only experts all in MXFP4 stay packed).")
    for layer in range(4):
        for proj in ("gate_up_proj", "down_proj"):
            name = f"model.layers.{layer}.mlp.experts.{proj}"
            want = (plain[name].float() if layer < 2 else
                    dequantize(packed[f"{name}_blocks"], packed[f"{name}_scales"]).transpose(1, 2))
            assert torch.equal(getattr(engine.model.model.layers[layer].mlp.experts, proj).float(), want)
    assert dict(doctor(engine, device="cpu").rows())["checkpoint"] == (
        f"{said} experts (quant_method mxfp4), dequantized to float32 on load")
    where_kernels_run = dict(doctor(tmp_path / "q", device="cpu", dtype="bfloat16", mxfp4_kernels=True).rows())
    assert where_kernels_run["checkpoint"] == f"{said} experts (quant_method mxfp4), dequantized to bfloat16 when loaded here"
    assert where_kernels_run["loads as"].startswith("bfloat16: ")
    with pytest.raises(ValueError, match=rf"is already quantized \({re.escape(said)}\)$"):
        quantize_checkpoint(tmp_path / "q", tmp_path / "again")
