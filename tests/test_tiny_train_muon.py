"""gpt-oss-tiny's `--optimizer muon`: the batched orthogonalisation equals torch.optim.Muon's per matrix, every
parameter is optimised exactly once, and a quick run trains and records the optimizer."""
from __future__ import annotations

import json

import pytest
import torch

from gptoss_lab.tiny import train


def test_muon_split_covers_every_parameter_exactly_once_and_gives_muon_the_layers_matrices():
    from transformers import GptOssForCausalLM

    model = GptOssForCausalLM(train.model_config(512))
    muon, adamw = train._muon_split(model)
    ids = [id(p) for p in muon + adamw]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in model.parameters()}
    names = {id(p): name for name, p in model.named_parameters()}
    assert {names[id(p)].split(".", 3)[-1] for p in muon} == {
        "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight",
        "mlp.experts.gate_up_proj", "mlp.experts.down_proj"}
    assert all(p.dim() >= 2 for p in muon)
    assert {names[id(p)] for p in adamw if p.dim() >= 2} == {"model.embed_tokens.weight"} | {   # no matrices
        f"model.layers.{i}.mlp.{name}" for i in range(4)
        for name in ("router.weight", "experts.gate_up_proj_bias", "experts.down_proj_bias")}


@pytest.mark.skipif(not hasattr(torch.optim, "Muon"), reason="torch.optim.Muon is torch 2.9+")
def test_orthogonalisation_equals_torch_muon_expert_by_expert():
    from torch.optim._muon import _zeropower_via_newtonschulz

    torch.manual_seed(0)
    for shape in [(3, 16, 40), (3, 40, 16), (24, 16)]:
        update = torch.randn(shape)
        ours = train._orthogonalised(update)
        matrices = update.reshape(-1, *shape[-2:])
        theirs = torch.stack([_zeropower_via_newtonschulz(m, (3.4445, -4.7750, 2.0315), 5, 1e-7).float()
                              for m in matrices]).reshape(shape)
        assert ours.shape == update.shape and torch.equal(ours, theirs)


@pytest.mark.skipif(not hasattr(torch.optim, "Muon"), reason="torch.optim.Muon is torch 2.9+")
def test_muon_step_on_a_matrix_is_torch_muons_step():
    torch.manual_seed(1)
    a, b = torch.nn.Parameter(torch.randn(24, 16)), torch.nn.Parameter(torch.randn(24, 16))
    with torch.no_grad():
        b.copy_(a)
    ours, theirs = train._Muon([a], lr=0.02), torch.optim.Muon([b], lr=0.02, weight_decay=0.01)
    for _ in range(3):
        grad = torch.randn(24, 16)
        a.grad, b.grad = grad.clone(), grad.clone()
        ours.step()
        theirs.step()
    assert torch.allclose(a, b, atol=1e-6)


def test_quick_muon_run_lowers_the_loss_and_records_the_optimizer(tmp_path):
    common = dict(conversations_n=24, lr=3e-3, seed=5, workers=0, long_share=0.0, compile=False)
    summary = train.train(tmp_path / "muon", optimizer="muon", muon_lr=0.02, **common)
    assert summary["optimizer"] == "muon" and summary["muon_lr"] == 0.02
    log = [json.loads(line) for line in (tmp_path / "muon" / "loss.jsonl").read_text().splitlines()]
    assert summary["final_loss"] < log[0]["loss"] - 0.3
    saved = json.loads((tmp_path / "muon" / "train_summary.json").read_text())
    assert saved["optimizer"] == "muon" and saved["muon_lr"] == 0.02


def test_muon_lr_without_muon_is_a_one_line_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        train.main(["--quick", "--muon-lr", "0.01", "--out", str(tmp_path / "run")])
    assert exit_.value.code == 2
    assert "--muon-lr is the learning rate of --optimizer muon" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
