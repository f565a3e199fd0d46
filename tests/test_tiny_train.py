"""gpt-oss-tiny's training: the exact subset loss, a --quick run that saves a loadable checkpoint, the shipped model."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from gptoss_lab import harmony
from gptoss_lab.tiny import CHECKPOINT, train


def _small_model(vocab: int, seed: int = 0):
    from transformers import GptOssForCausalLM

    torch.manual_seed(seed)
    config = train.model_config(vocab)
    config.hidden_size, config.intermediate_size, config.head_dim = 32, 32, 8
    return GptOssForCausalLM(config)


def test_subset_loss_equals_full_vocabulary_cross_entropy():
    vocab = 500
    model = _small_model(vocab)
    used = torch.tensor(sorted(torch.randperm(vocab)[:60].tolist()))
    unused = torch.ones(vocab, dtype=torch.bool)
    unused[used] = False
    with torch.no_grad():
        model.get_input_embeddings().weight[unused] = 0.0  # the rows the data never uses
    ids = used[torch.randint(0, len(used), (3, 20))]
    hidden = model.model(input_ids=ids).last_hidden_state[:, :-1].reshape(-1, 32)
    targets = ids[:, 1:].reshape(-1)
    full = F.cross_entropy(model.lm_head(hidden), targets)
    index = torch.full((vocab,), -1)
    index[used] = torch.arange(len(used))
    subset = train.subset_loss(hidden, model.get_input_embeddings().weight[used], index[targets], int(unused.sum()))
    assert torch.allclose(subset, full, atol=1e-5), (subset, full)


def test_shared_system_prompt_gives_the_same_states_as_whole_sequences():
    model = _small_model(300)
    prefix, suffixes = torch.randint(0, 300, (140,)), torch.randint(0, 300, (2, 30))  # longer than the sliding window
    whole = model.model(input_ids=torch.cat([prefix.expand(2, -1), suffixes], dim=1)).last_hidden_state[:, 140:]
    assert torch.allclose(train.hidden_states(model, prefix, suffixes), whole, atol=1e-5)


def test_quick_training_lowers_the_loss_and_saves_a_loadable_checkpoint(tmp_path):
    from transformers import AutoModelForCausalLM

    train.main(["--quick", "--out", str(tmp_path)])
    log = [json.loads(line) for line in (tmp_path / "loss.jsonl").read_text().splitlines()]
    assert log[-1]["loss"] < log[0]["loss"] - 1.0
    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert type(model).__name__ == "GptOssForCausalLM" and model.config.vocab_size == harmony.VOCAB_SIZE
    rows = model.get_input_embeddings().weight
    assert rows[:1000].abs().sum() > 0 and rows[150000].abs().sum() == 0  # used rows trained, unused rows zero
    assert json.loads((tmp_path / "generation_config.json").read_text())["do_sample"] is False


def test_shipped_checkpoint_loads_like_gpt_oss_and_is_small():
    from transformers import AutoModelForCausalLM

    if not (CHECKPOINT / "model.safetensors").exists():
        pytest.skip("no trained checkpoint in this checkout")
    assert (CHECKPOINT / "model.safetensors").stat().st_size <= 64 * 2**20
    config = json.loads((CHECKPOINT / "config.json").read_text())
    assert config["architectures"] == ["GptOssForCausalLM"] and config["num_local_experts"] == 8
    model = AutoModelForCausalLM.from_pretrained(CHECKPOINT)
    assert model.config.layer_types == ["sliding_attention", "full_attention"] * 2


@pytest.mark.slow
def test_shipped_checkpoint_answers_held_out_questions():
    from gptoss_lab.tiny import evaluate

    if not (CHECKPOINT / "model.safetensors").exists():
        pytest.skip("no trained checkpoint in this checkout")
    table = evaluate.evaluate(CHECKPOINT, n=30)["table"]["all"]
    assert table["valid"] >= 90 and table["tool"] >= 90 and table["final"] >= 85, table
