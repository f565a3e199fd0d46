"""gpt-oss-tiny's training: the exact subset loss, attention equal to transformers' own, batches,
a seeded run that is reproducible and saves a loadable checkpoint, and the shipped model's config."""
from __future__ import annotations

import json
import logging
import os
import random

import pytest
import torch
import torch.nn.functional as F

from gptoss_lab import harmony
from gptoss_lab.tiny import CHECKPOINT, evaluate, train


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


def test_training_attention_equals_transformers_attention_and_its_gradients():
    """Sinks, the sliding window (sequences longer than 128) and right padding: same states, same gradients."""
    model = _small_model(300)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.sinks.normal_(0, 1)
    ids = torch.randint(0, 300, (2, 300))
    reference = model.model(input_ids=ids).last_hidden_state
    reference.square().sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.config._attn_implementation = train.ATTENTION
    mine = train._hidden(model, ids)
    mine.square().sum().backward()
    assert torch.allclose(mine, reference, atol=1e-5)
    for name, grad in grads.items():
        assert torch.allclose(dict(model.named_parameters())[name].grad, grad, atol=1e-3, rtol=1e-3), name


def test_vocabulary_gives_rows_in_order_of_first_use():
    vocabulary = train.Vocabulary(capacity=2000)
    start = len(vocabulary)
    assert vocabulary.index[harmony.RETURN] >= 0 and vocabulary.index[harmony.encode("444")[0]] >= 0
    hello = harmony.encode(" gpt-oss is small")
    rows = vocabulary.add(hello + hello)
    assert rows == list(range(start, start + len(set(hello) - set(vocabulary.ids[:start]))))
    assert vocabulary.add(hello) == []
    with pytest.raises(RuntimeError, match="more than 10 distinct tokens; raise train's rows"):
        train.Vocabulary(capacity=10)


def test_batches_respect_the_token_budget_never_hold_one_conversation_and_are_reproducible():
    rng = random.Random(0)
    conversations = [([1] * rng.randint(50, 3000), [True] * 10) for _ in range(300)]
    batches = list(train._batches(iter(conversations), 4096, 64, random.Random(1)))
    assert sorted(len(ids) for b in batches for ids, _ in b) == sorted(len(ids) for ids, _ in conversations)
    assert all(len(b) >= 2 for b in batches)
    over = [b for b in batches if len(b) > 2 and len(b) * max(len(ids) for ids, _ in b) > 4096]
    assert len(over) <= 0.05 * len(batches)  # (a batch of one left over joins the one before it)
    again = list(train._batches(iter(conversations), 4096, 64, random.Random(1)))
    assert [[len(ids) for ids, _ in b] for b in again] == [[len(ids) for ids, _ in b] for b in batches]


def test_quick_training_is_seeded_lowers_the_loss_and_saves_a_loadable_checkpoint(tmp_path):
    from transformers import AutoModelForCausalLM

    a = train.train(tmp_path / "a", conversations_n=24, lr=3e-3, seed=5, workers=0, long_share=0.0, compile=False)
    b = train.train(tmp_path / "b", conversations_n=24, lr=3e-3, seed=5, workers=0, long_share=0.0, compile=False)
    assert a["final_loss"] == b["final_loss"] and a["tokens"] == b["tokens"]  # the same run from the same seed
    log = [json.loads(line) for line in (tmp_path / "a" / "loss.jsonl").read_text().splitlines()]
    assert a["final_loss"] < log[0]["loss"] - 0.3  # 9 steps: 12.2 -> 11.7
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "a")
    assert type(model).__name__ == "GptOssForCausalLM" and model.config.vocab_size == harmony.VOCAB_SIZE
    rows = model.get_input_embeddings().weight
    assert rows[harmony.encode("print")[0]].abs().sum() > 0 and rows[150000].abs().sum() == 0  # unused rows zero
    assert model.dtype == torch.bfloat16
    assert json.loads((tmp_path / "a" / "generation_config.json").read_text())["do_sample"] is False
    # --resume goes on from exactly the saved model: same hidden states through the subset vocabulary
    vocabulary = train.Vocabulary(capacity=12000)
    resumed, _ = train._resumed(tmp_path / "a", vocabulary)
    ids = torch.tensor([harmony.encode("What is 37 * 12? print(37 * 12)")])
    with torch.no_grad():
        saved = model.float().model(input_ids=ids).last_hidden_state
        again = resumed.model(input_ids=vocabulary.index[ids]).last_hidden_state
    assert torch.allclose(saved, again, atol=1e-5)
    # --layers grows it deeper: sliding/full pairs that start as pass-throughs, so the outputs stay the same
    vocabulary = train.Vocabulary(capacity=12000)
    grown, arch = train._resumed(tmp_path / "a", vocabulary, layers=8)
    assert arch["layers"] == 8 and grown.config.layer_types == ["sliding_attention", "full_attention"] * 4
    with torch.no_grad():
        deeper = grown.model(input_ids=vocabulary.index[ids]).last_hidden_state
    assert torch.allclose(saved, deeper, atol=1e-5)
    assert grown.model.layers[2].mlp.experts.down_proj.abs().sum() == 0  # a new layer; layer 4 is the old layer 2
    assert torch.equal(grown.model.layers[4].mlp.router.weight, resumed.model.layers[2].mlp.router.weight)
    with pytest.raises(ValueError, match="at least the checkpoint's 4"):
        train._resumed(tmp_path / "a", train.Vocabulary(capacity=12000), layers=2)


def test_context_weight_also_trains_on_the_tokens_the_model_does_not_write(tmp_path):
    """--context-weight adds the loss of predicting system, user and tool tokens; the logged loss stays the model's
    own (the same first value as without it), the other tokens' loss is logged beside it and falls, and the weights
    trained differ."""
    from safetensors.torch import load_file

    common = dict(conversations_n=16, lr=3e-3, seed=7, workers=0, long_share=0.0, compile=False, log_every=1)
    plain = train.train(tmp_path / "plain", **common)
    mixed = train.train(tmp_path / "mixed", context_weight=0.5, **common)
    assert mixed["context_weight"] == 0.5 and plain["context_weight"] == 0.0
    logs = [[json.loads(line) for line in (tmp_path / name / "loss.jsonl").read_text().splitlines()]
            for name in ("plain", "mixed")]
    assert logs[0][0]["loss"] == logs[1][0]["loss"] and "context_loss" not in logs[0][0]
    assert logs[1][-1]["context_loss"] < logs[1][0]["context_loss"] - 0.3
    a, b = (load_file(tmp_path / name / "model.safetensors") for name in ("plain", "mixed"))
    assert not torch.equal(a["model.layers.0.mlp.router.weight"], b["model.layers.0.mlp.router.weight"])


def test_shipped_checkpoint_loads_like_gpt_oss_without_warnings_and_is_small(caplog):
    from transformers import AutoModelForCausalLM

    if not (CHECKPOINT / "model.safetensors").exists():
        pytest.skip("no trained checkpoint in this checkout")
    assert (CHECKPOINT / "model.safetensors").stat().st_size <= 100 * 2**20
    config = json.loads((CHECKPOINT / "config.json").read_text())
    assert config["architectures"] == ["GptOssForCausalLM"]
    assert config["num_local_experts"] >= 8 and config["num_experts_per_tok"] >= 2
    assert config["max_position_embeddings"] >= 8192 + 2048
    rope = config["rope_parameters"]
    assert rope["rope_type"] == "default" or rope["factor"] * rope["original_max_position_embeddings"] == \
        config["max_position_embeddings"]
    with caplog.at_level(logging.WARNING):
        model = AutoModelForCausalLM.from_pretrained(CHECKPOINT)
    assert not [r for r in caplog.records if "rope" in r.getMessage().lower()]
    types = model.config.layer_types
    assert set(types) == {"sliding_attention", "full_attention"} and types[0] != types[1]
    rows = model.get_input_embeddings().weight
    assert (rows.abs().sum(-1) > 0).sum() < 20000  # only the rows training used are non-zero


def test_an_odd_layer_count_is_a_one_line_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        train.main(["--layers", "3", "--quick"])
    assert exit_.value.code == 2
    assert "--layers must be an even number of at least 2" in capsys.readouterr().err


@pytest.mark.parametrize("main, argv, message", [
    (train.main, ["--conversations", "-3"], "--conversations: expected an integer of at least 1, not '-3'"),
    (train.main, ["--long-share", "2"], "--long-share: expected a number from 0.0 to 1.0, not '2'"),
    (train.main, ["--resume", "/nonexistent", "--quick"], "--resume: /nonexistent is not a checkpoint folder"),
    (evaluate.main, ["--n", "0"], "--n: expected an integer of at least 1, not '0'"),
    # a batch of a million tokens ran until the machine's memory was gone (about 64 kB a token)
    (train.main, ["--batch-tokens", "1000000"], "--batch-tokens: expected an integer from 64 to 65536, not '1000000'"),
    # int() reads other scripts' digits, which the magics refuse: `--conversations ٣` trained 3 conversations
    (train.main, ["--conversations", "٣"], "--conversations: expected an integer of at least 1, not '٣': write 3"),
    (train.main, ["--lr", "٠.٠٠٣"], "--lr: expected a number from 1e-09 to 1.0, not '٠.٠٠٣': write 0.003"),
    (evaluate.main, ["--n", "３"], "--n: expected an integer of at least 1, not '３': write 3"),
    (train.main, ["--layers", "٦", "--quick"], "--layers: expected an integer of at least 2, not '٦': write 6"),
    (evaluate.main, ["--seed", "٣"], f"--seed: expected an integer from {-2**63} to {2**64 - 1}, not '٣': write 3"),
    (evaluate.main, ["--checkpoint", "/nonexistent"], "checkpoint folder not found: /nonexistent"),
])
def test_bad_command_line_values_are_one_line_usage_errors(main, argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and "Traceback" not in err


@pytest.mark.parametrize("module", ["train", "random_model"])
def test_a_seed_torch_cannot_take_is_a_one_line_usage_error_and_writes_nothing(module, tmp_path, capsys):
    """`--seed 99999999999999999999999` was a ValueError traceback from torch.manual_seed (train) or the bare line
    'error: Overflow when unpacking long long' (random_model)."""
    from gptoss_lab.tiny import random_model

    main, argv = {"train": (train.main, ["--quick", "--out"]), "random_model": (random_model.main, [])}[module]
    with pytest.raises(SystemExit) as exit_:
        main([*argv, str(tmp_path / "out"), "--seed", str(2**64)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    assert f"argument --seed: expected an integer from {-2**63} to {2**64 - 1}, not '{2**64}'" in err
    assert list(tmp_path.iterdir()) == []


def test_more_threads_than_cpus_is_a_one_line_usage_error_and_writes_nothing(tmp_path, capsys):
    """`--threads 100000` ended the run in a segmentation fault at its first step, its partial folder left behind."""
    too_many = str((os.cpu_count() or 1) + 1)
    with pytest.raises(SystemExit) as exit_:
        train.main(["--conversations", "2", "--workers", "0", "--no-compile", "--threads", too_many,
                    "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    assert f"argument --threads: expected an integer from 1 to {os.cpu_count() or 1}, not '{too_many}'" in err
    assert list(tmp_path.iterdir()) == []


def test_resuming_a_checkpoint_of_another_shape_is_a_one_line_usage_error_and_writes_nothing(tmp_path, capsys,
                                                                                               random_checkpoint):
    """A random_model checkpoint (head_dim 16, window 8, YaRN) was a RuntimeError traceback telling to 'raise --rows',
    an option the command does not have."""
    with pytest.raises(SystemExit) as exit_:
        train.main(["--quick", "--resume", str(random_checkpoint), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    assert (f"--resume: {random_checkpoint} is not of the shape training builds (head_dim 16, not 32; "
            "sliding_window 8, not 128;") in err
    assert list(tmp_path.iterdir()) == []


def test_train_function_refuses_a_folder_holding_an_earlier_run_and_overwrites_nothing(tmp_path):
    """`train.train(OUT, ...)` run again (notebook 05's cell, with more conversations) overwrote the earlier run's
    model.safetensors and loss.jsonl, as it would any checkpoint folder it was given."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "model.safetensors").write_text("my weights")
    (mine / "loss.jsonl").write_text("my log\n")
    with pytest.raises(ValueError, match=f"^{mine} already exists: give a new \\(or empty\\) folder, nothing there is "
                                         "overwritten$"):
        train.train(mine, conversations_n=2, lr=3e-3, seed=0, workers=0, compile=False)
    assert sorted(p.name for p in mine.iterdir()) == ["loss.jsonl", "model.safetensors"]
    assert (mine / "model.safetensors").read_text() == "my weights" and (mine / "loss.jsonl").read_text() == "my log\n"


def test_train_function_refuses_no_conversations_in_one_line_and_makes_no_folder(tmp_path):
    """`train.train(OUT, conversations_n=0, ...)` was a ZeroDivisionError, OUT left holding an empty loss.jsonl."""
    with pytest.raises(ValueError, match="^conversations_n must be at least 1, not 0$"):
        train.train(tmp_path / "run", conversations_n=0, lr=3e-3, seed=0, workers=0, compile=False)
    assert list(tmp_path.iterdir()) == []


def test_resuming_a_checkpoint_with_more_embedding_rows_than_training_keeps_is_one_line(tmp_path, capsys):
    """A checkpoint of the right shape whose every embedding row is non-zero (not one training saved) was a RuntimeError
    traceback at the first batch, telling to 'raise --rows', an option the command does not have."""
    from transformers import GptOssForCausalLM

    torch.manual_seed(0)
    model = GptOssForCausalLM(train.model_config(hidden=32, intermediate=32))   # every row random, none zero
    model.config.architectures = ["GptOssForCausalLM"]
    model.to(torch.bfloat16).save_pretrained(tmp_path / "full")
    with pytest.raises(SystemExit) as exit_:
        train.main(["--quick", "--resume", str(tmp_path / "full"), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    assert (f"--resume: {tmp_path / 'full'} has {harmony.VOCAB_SIZE} non-zero embedding rows, more than the "
            f"{train.ROWS} training keeps") in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]


def test_resume_counts_the_embedding_rows_of_the_weights_a_load_reads(tmp_path):
    """A stray `a.safetensors` beside model.safetensors (no load reads it) was read for the embedding's rows, and a
    folder that loads was refused: "has 12001 non-zero embedding rows, more than the 12000 training keeps"."""
    import shutil

    from safetensors.torch import save_file

    folder = shutil.copytree(CHECKPOINT, tmp_path / "run")
    save_file({"model.embed_tokens.weight": torch.ones(train.ROWS + 1, 4)}, folder / "a.safetensors")
    assert train._checkpoint_layers(folder) == json.loads((CHECKPOINT / "config.json").read_text())["num_hidden_layers"]
