"""LocalEngine on a random GptOss checkpoint: exact cached decoding, prefix reuse, sampling, load errors."""
from __future__ import annotations

import ast
import io
import logging
import re
import socket
import subprocess
import sys
import weakref
from dataclasses import replace

import pytest
import torch

from gptoss_lab import harmony
from gptoss_lab.engines import checkpoint
from gptoss_lab.engines.base import Sampling
from gptoss_lab.engines.doctor import doctor
from gptoss_lab.engines.local import LoadError, LocalEngine
from gptoss_lab.routing import Recorder

STOP = frozenset({200002, 200012})
PROMPT = [200006, *range(1000, 1019)]  # 20 tokens: longer than the fixture's sliding window of 8


class NoRepeat:
    """Bans ids already in the sequence, so a random model's greedy output varies from step to step."""

    def __call__(self, input_ids, scores):
        scores = scores.clone()
        scores[:, input_ids[0]] = float("-inf")
        return scores


GREEDY = Sampling(temperature=0, max_new_tokens=6, logits_processor=NoRepeat())


@pytest.fixture(scope="module")
def engine(random_checkpoint) -> LocalEngine:
    """float32, so cached and uncached forwards agree far below the random model's logit gaps."""
    return LocalEngine.from_pretrained(random_checkpoint, dtype=torch.float32, progress=False)


def fresh(engine: LocalEngine) -> LocalEngine:
    """Another engine on the same weights, with an empty cache."""
    return LocalEngine(engine.model, name=engine.name)


def run(engine: LocalEngine, prompt: list[int], sampling: Sampling = GREEDY, **kw) -> list[int]:
    return list(engine.stream(prompt, stop=STOP, sampling=sampling, **kw))


def uncached_greedy(model, prompt: list[int], n: int) -> list[int]:
    """Greedy decoding by full forwards over the whole sequence: no cache at all."""
    ids = list(prompt)
    with torch.inference_mode():
        for _ in range(n):
            logits = model(torch.tensor([ids]), use_cache=False).logits[:, -1].float()
            ids.append(int(NoRepeat()(torch.tensor([ids]), logits).argmax(-1)))
    return ids[len(prompt):]


def test_loads_tiny_and_greedy_stream_equals_transformers_generate(random_checkpoint, monkeypatch, capsys):
    monkeypatch.setattr("gptoss_lab.tiny.CHECKPOINT", random_checkpoint)  # stands in for the bundled weights
    engine = LocalEngine.from_pretrained("tiny")
    out = capsys.readouterr().out
    said = " ".join(out.split())   # in lines JupyterLab's output area does not break inside a word
    assert "Loading gpt-oss-tiny on cpu (float32, the CPU default, " in said and " torch thread" in said, out
    assert max(len(line) for line in out.splitlines()) <= 68, out
    assert engine.name == "gpt-oss-tiny" and engine.config.model_type == "gpt_oss"
    assert engine.model.dtype == torch.float32  # a bf16 checkpoint computes in float32 on a CPU
    assert engine.slow_path_reason is None  # the lean forward, compared here with transformers' generate
    assert engine.default_sampling.temperature == 0  # its generation_config does not sample
    from transformers import LogitsProcessorList

    expected = engine.model.generate(torch.tensor([PROMPT]), do_sample=False, max_new_tokens=GREEDY.max_new_tokens,
                                     logits_processor=LogitsProcessorList([NoRepeat()]))[0, len(PROMPT):].tolist()
    assert run(engine, PROMPT) == expected
    assert engine.last_prefill == len(PROMPT)


def test_cached_decoding_past_the_sliding_window_equals_uncached_forwards(engine):
    engine = fresh(engine)
    engine.prefill_chunk = 6  # chunked prefill must not change anything either
    assert len(PROMPT) > engine.config.sliding_window
    assert run(engine, PROMPT, Sampling(temperature=0, max_new_tokens=12, logits_processor=NoRepeat())) == \
        uncached_greedy(engine.model, PROMPT, 12)


def test_follow_up_reuses_the_cached_prefix_and_matches_a_fresh_engine(engine):
    engine = fresh(engine)
    first = run(engine, PROMPT)
    follow_up = PROMPT + first + [200006, 1200, 1201]
    second = run(engine, follow_up)
    cached = len(PROMPT) + len(first) - 1  # the last generated token was never fed to the model
    assert engine.last_prefill == len(follow_up) - cached
    other = fresh(engine)
    assert second == run(other, follow_up) and other.last_prefill == len(follow_up)

    branch = PROMPT[:5] + list(range(3000, 3015))  # shares 5 tokens: goes back past the sliding window
    assert run(engine, branch) == run(fresh(engine), branch)
    assert engine.last_prefill == len(branch) - 5

    again = run(engine, branch)  # the same prompt again: all but its last token come from the cache
    assert engine.last_prefill == 1 and again == run(fresh(engine), branch)

    twig = branch[:10] + [3100, 3101]  # back again, before the previous branch point's sliding window
    assert run(engine, twig) == run(fresh(engine), twig)
    assert engine.last_prefill == 2


def test_closing_the_stream_early_or_an_interrupt_keeps_the_cache_consistent(engine):
    engine = fresh(engine)
    stream = engine.stream(PROMPT, stop=STOP, sampling=GREEDY)
    taken = [next(stream) for _ in range(3)]
    stream.close()
    follow_up = PROMPT + taken + [1300]
    assert run(engine, follow_up) == run(fresh(engine), follow_up)
    assert engine.last_prefill == 2  # the last token taken and the new one

    left_behind = engine.stream(PROMPT, stop=STOP, sampling=GREEDY)
    next(left_behind)
    run(engine, PROMPT + [1350])
    with pytest.raises(RuntimeError, match="left behind by a newer stream call"):
        next(left_behind)  # it may not write into the cache the newer call now owns

    calls = 0

    def interrupt(module, args, output):
        nonlocal calls
        calls += 1
        if calls == 3:  # in the second generated token's forward, once layers 0 and 1 (of 4) have cached it
            raise KeyboardInterrupt

    handle = engine.model.model.layers[1].mlp.router.register_forward_hook(interrupt)
    shown = []
    try:
        with pytest.raises(KeyboardInterrupt):
            shown.extend(engine.stream(PROMPT + [1400], stop=STOP, sampling=GREEDY))
    finally:
        handle.remove()
    assert len(shown) == 2
    follow_up = PROMPT + [1400, *shown, 1401]  # the partial reply goes into the next prompt
    assert run(engine, follow_up) == run(fresh(engine), follow_up)
    assert engine.last_prefill == 2  # the interrupted token is computed again


@pytest.mark.parametrize("fast", [True, False])
def test_a_stream_cannot_go_on_after_a_reset_of_its_engine(engine, fast):
    """A stream taken on after `engine.reset()` decoded from the emptied cache: its tokens went on from a context of one
    token, silently unlike the answer. It is refused in one line, as a stream a newer call left behind is."""
    engine = LocalEngine(engine.model, fast=fast)
    stream = engine.stream(PROMPT, stop=STOP, sampling=GREEDY)
    next(stream)
    engine.reset()
    with pytest.raises(RuntimeError, match=r"^this stream was left behind by a newer stream call or a reset\(\) of"):
        next(stream)
    assert run(engine, PROMPT) == run(fresh(engine), PROMPT)


def test_weights_changed_since_the_cache_was_computed_are_used_for_the_whole_prompt(random_checkpoint):
    model = LocalEngine.from_pretrained(random_checkpoint, dtype=torch.float32, progress=False).model  # not shared
    layer = model.model.layers[1]
    for fast in (True, False):
        engine = LocalEngine(model, fast=fast)
        before = run(engine, PROMPT)
        with torch.no_grad():
            layer.self_attn.v_proj.weight.mul_(-3)  # in place: a training step, an edited head
        changed = run(engine, PROMPT)
        assert changed != before and changed == run(LocalEngine(model, fast=fast), PROMPT)
        assert engine.last_prefill == len(PROMPT)  # nothing computed with the old weights is reused
        layer.mlp.experts.down_proj = torch.nn.Parameter(layer.mlp.experts.down_proj.detach() * -2)  # replaced
        assert run(engine, PROMPT) == run(LocalEngine(model, fast=fast), PROMPT) != changed
        assert engine.last_prefill == len(PROMPT)


def test_a_model_loaded_in_float64_answers_as_in_float32(engine, random_checkpoint):
    """`--dtype float64` (a dtype the load offers) loaded, then every turn failed: "RuntimeError: Expected mat_a to be
    Float32, BFloat16 or Float16 matrix, got Double" (transformers' default grouped_mm experts)."""
    wide = LocalEngine.from_pretrained(random_checkpoint, dtype="float64", progress=False)
    assert list(wide.stream(PROMPT, stop=STOP, sampling=GREEDY)) == list(engine.stream(PROMPT, stop=STOP, sampling=GREEDY))


@pytest.mark.parametrize("use", ["turn", "token_effect", "route"])
def test_a_model_turned_to_float64_after_loading_answers_as_in_float32(engine, random_checkpoint, use):
    """`model.double()` after the load failed every later turn, token_effect and route with "Expected mat_a to be
    Float32, BFloat16 or Float16 matrix, got Double" (transformers' default grouped_mm experts)."""
    from gptoss_lab.routing import disable, route

    wide = LocalEngine.from_pretrained(random_checkpoint, dtype=torch.float32, progress=False)
    run(wide, PROMPT)
    wide.model.double()
    if use == "turn":
        assert run(wide, PROMPT) == run(engine, PROMPT)
    elif use == "token_effect":
        changes = disable({0: [1]}).token_effect(wide.model, PROMPT)["change"]
        assert len(changes) == len(PROMPT) - 1 and changes.notna().all()
    else:
        routed = route([PROMPT], wide.model, progress=False)[0]
        assert routed.experts.tolist() == route([PROMPT], engine.model, progress=False)[0].experts.tolist()


def test_a_model_turned_to_float64_and_back_runs_its_experts_as_before(engine, random_checkpoint):
    """After `model.double()` then `model.float()` the experts stayed on the eager implementation the float64 turns
    needed (slower for good); an implementation the user chose is still left as it is."""
    back = LocalEngine.from_pretrained(random_checkpoint, dtype=torch.float32, progress=False)
    config = back.model.config
    before = run(back, PROMPT)
    assert config._experts_implementation == "grouped_mm"
    back.model.double()
    assert run(back, PROMPT) == before and config._experts_implementation == "eager"
    back.model.float()
    assert run(back, PROMPT) == before and config._experts_implementation == "grouped_mm"
    back.model.set_experts_implementation("eager")
    back.model.double()
    back.model.float()
    assert run(back, PROMPT) == before and config._experts_implementation == "eager"


def test_seeded_sampling_repeats_and_different_seeds_differ(engine):
    def sample(seed: int) -> list[int]:
        return run(engine, PROMPT, Sampling(temperature=1.0, top_p=0.9, seed=seed, max_new_tokens=6))

    first = sample(1)
    assert sample(1) == first and sample(2) != first


def test_stop_tokens_and_max_new_tokens_end_the_stream(engine):
    tokens = run(engine, PROMPT)
    assert len(tokens) == GREEDY.max_new_tokens
    assert list(engine.stream(PROMPT, stop={tokens[2]}, sampling=GREEDY)) == tokens[:3]
    assert run(engine, PROMPT, Sampling(temperature=0, max_new_tokens=2, logits_processor=NoRepeat())) == tokens[:2]


def test_routing_covers_every_prompt_position_and_generated_token_with_prefix_reuse(engine):
    engine = fresh(engine)
    run(engine, PROMPT)  # cached without routing: a routed call must compute the prefix again
    first = Recorder()
    tokens = run(engine, PROMPT, recorder=first)
    assert engine.last_prefill == len(PROMPT)
    assert first.routing.tokens.tolist() == PROMPT + tokens
    layers, k = engine.config.num_hidden_layers, engine.config.num_experts_per_tok
    assert first.routing.experts.shape == (len(PROMPT) + len(tokens), layers, k)

    follow_up = PROMPT + tokens + [1500]
    second, alone = Recorder(), Recorder()
    run(engine, follow_up, recorder=second)
    assert engine.last_prefill == 1  # every cached position, the last generated token included, was routed
    run(fresh(engine), follow_up, recorder=alone)
    assert second.routing.tokens.tolist() == alone.routing.tokens.tolist()
    assert (second.routing.experts == alone.routing.experts).all()


def test_load_errors_are_one_clear_line(tmp_path, monkeypatch, random_checkpoint):
    from transformers import GPT2Config

    def error(name, **kw) -> str:
        with pytest.raises(LoadError) as info:
            LocalEngine.from_pretrained(name, progress=False, **kw)
        message = str(info.value)
        assert "\n" not in message
        assert info.value.__context__ is None or info.value.__suppress_context__  # no chained traceback
        return message

    assert "checkpoint folder not found" in error(tmp_path / "nowhere")
    monkeypatch.setattr("gptoss_lab.tiny.CHECKPOINT", tmp_path / "nowhere")
    assert "bundled gpt-oss-tiny checkpoint is missing" in error("tiny")

    GPT2Config(n_layer=1, n_embd=8, n_head=1).save_pretrained(tmp_path / "gpt2")
    assert "is a gpt2 model, not gpt-oss" in error(tmp_path / "gpt2")

    monkeypatch.setattr(checkpoint, "free_bytes", lambda target: 10**6)
    assert re.search(r"needs about [\d.]+ MB for its weights \(bfloat16\) but only 1.0 MB is free on cpu",
                     error(random_checkpoint))
    monkeypatch.undo()

    def unreachable(*args, **kw):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    message = error("openai/gpt-oss-20b", cache_dir=str(tmp_path / "hf-cache"))
    assert "cannot be reached" in message and "load the folder" in message


def broken_copy(source, folder, *, config=None, tensors=None):
    """A copy of a checkpoint folder with its config.json and/or its tensors changed in place."""
    import json
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(source, folder)
    if config is not None:
        data = json.loads((folder / "config.json").read_text())
        config(data)
        (folder / "config.json").write_text(json.dumps(data))
    if tensors is not None:
        weights = load_file(folder / "model.safetensors")
        tensors(weights)
        save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def one_line_error(call) -> str:
    with pytest.raises(LoadError) as info:
        call()
    assert "\n" not in str(info.value) and (info.value.__context__ is None or info.value.__suppress_context__)
    return str(info.value)


@pytest.mark.parametrize("change, message", [
    (lambda t: t.pop("model.layers.0.self_attn.q_proj.weight"), "model.layers.0.self_attn.q_proj.weight is missing"),
    (lambda t: t.update({"model.layers.1.self_attn.k_proj.weight": torch.zeros(3, 3)}),
     r"model.layers.1.self_attn.k_proj.weight has shape \(3, 3\), the config needs \(32, 64\)"),
    (lambda t: t.update({"model.norm.weight": t["model.norm.weight"].to(torch.int32)}),
     "model.norm.weight is stored as I32, not floating point"),
])
def test_missing_misshapen_or_integer_weights_are_refused_before_loading(tmp_path, random_checkpoint, change, message):
    """transformers would fill a missing tensor with random values (a different model) and print a table for a wrong
    shape; the load refuses both in one line naming the tensor."""
    folder = broken_copy(random_checkpoint, tmp_path / "broken", tensors=change)
    assert re.search(message, one_line_error(lambda: LocalEngine.from_pretrained(folder, progress=False)))


@pytest.mark.parametrize("config, tensors, weight", [
    (lambda c: c.update(attention_bias=False), None, "model.layers.0.self_attn.k_proj.bias"),
    (lambda c: c.update(num_hidden_layers=2, layer_types=c["layer_types"][:2]), None,
     "model.layers.2.input_layernorm.weight"),
    (None, lambda t: t.update({"model.layers.0.mlp.extra": torch.zeros(2)}), "model.layers.0.mlp.extra"),
], ids=["attention-bias", "fewer-layers", "unknown"])
def test_weights_the_configs_model_has_no_place_for_are_refused_before_loading(tmp_path, random_checkpoint, capsys,
                                                                              config, tensors, weight):
    """A config edited to attention_bias false (or fewer layers) loaded: transformers left the stored biases (layers)
    out, logged a multi-line LOAD REPORT table, and every answer came from another model than the one saved."""
    folder = broken_copy(random_checkpoint, tmp_path / "extra", config=config, tensors=tensors)
    message = one_line_error(lambda: LocalEngine.from_pretrained(folder))
    assert message.startswith(f"{folder} cannot be loaded: its .safetensors files hold the weight {weight}, which the "
                              "model its config describes has no place for")
    assert "Loading" not in capsys.readouterr().out


@pytest.mark.parametrize("change, message", [
    (lambda c: c.update(hidden_size="wide"), "not a valid gpt-oss config: hidden_size must be a positive whole number, not 'wide'"),
    (lambda c: c.update(layer_types=["full_attention"]), "not a valid gpt-oss config: .*must be equal to the number"),
    (lambda c: c.update(num_experts_per_tok=9), "num_experts_per_tok \\(9\\) is more than num_local_experts \\(8\\)"),
    (lambda c: c.update(num_attention_heads=3), "num_attention_heads \\(3\\) is not a multiple of num_key_value_heads"),
    (lambda c: c.update(hidden_size=0), "hidden_size must be a positive whole number, not 0"),
])
def test_a_config_that_cannot_describe_a_gpt_oss_model_is_one_line(tmp_path, random_checkpoint, change, message):
    folder = broken_copy(random_checkpoint, tmp_path / "bad-config", config=change)
    assert re.search(message, one_line_error(lambda: LocalEngine.from_pretrained(folder, progress=False)))
    assert re.search(message, one_line_error(lambda: doctor(folder)))


def test_a_config_json_that_is_not_an_object_is_one_line(tmp_path, random_checkpoint):
    folder = broken_copy(random_checkpoint, tmp_path / "list")
    (folder / "config.json").write_text("[1, 2]")
    assert "config.json holds a list, not an object of settings" in one_line_error(
        lambda: LocalEngine.from_pretrained(folder, progress=False))


def test_remote_code_is_never_run(tmp_path, random_checkpoint):
    """A checkpoint's own Python (auto_map) would run with the kernel's authority: trust_remote_code=True is refused."""
    folder = broken_copy(random_checkpoint, tmp_path / "remote", config=lambda c: c.update(
        auto_map={"AutoConfig": "evil.Config", "AutoModelForCausalLM": "evil.Model"}))
    (folder / "evil.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').close()\n"
                                    "from transformers import GptOssConfig as Config, GptOssForCausalLM as Model\n")
    message = one_line_error(lambda: LocalEngine.from_pretrained(folder, progress=False, trust_remote_code=True))
    assert "trust_remote_code=True is refused" in message
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("change, message", [
    (lambda t: t.pop("model.layers.0.self_attn.q_proj.weight"),
     "^someone/broken cannot be loaded: the weight model.layers.0.self_attn.q_proj.weight is missing"),
    (lambda t: t.update({"model.layers.0.self_attn.q_proj.weight": torch.zeros(3, 3)}),
     r"^someone/broken cannot be loaded: the weight model.layers.0.self_attn.q_proj.weight has shape \(3, 3\), "),
])
def test_a_broken_checkpoint_in_the_hub_cache_is_not_loaded_nor_called_absent(tmp_path, monkeypatch,
                                                                              random_checkpoint, change, message):
    """Offline, a cached hub id loaded with random values for a missing weight, and a wrong shape was reported as
    "not in the Hugging Face cache", then in one line under transformers' multi-line table of sizes."""
    def unreachable(*args, **kw):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    repo = tmp_path / "hub" / "models--someone--broken"
    broken_copy(random_checkpoint, repo / "snapshots" / "abc", tensors=change)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc")
    logged = io.StringIO()
    handler = logging.StreamHandler(logged)
    logging.getLogger("transformers").addHandler(handler)  # where transformers writes its load report
    try:
        message_seen = one_line_error(lambda: LocalEngine.from_pretrained("someone/broken", progress=False,
                                                                          cache_dir=str(tmp_path / "hub")))
    finally:
        logging.getLogger("transformers").removeHandler(handler)
    assert re.search(message, message_seen)
    assert "LOAD REPORT" not in logged.getvalue(), logged.getvalue()


def test_a_device_torch_does_not_know_is_refused_before_the_loading_line(capsys):
    """`%gptoss load --device bogus` printed "Loading gpt-oss-tiny on bogus (...)" and then transformers' error."""
    with pytest.raises(LoadError, match=r"^'bogus' is not a device: use cpu, cuda, cuda:1, mps \.\.\.$"):
        LocalEngine.from_pretrained("tiny", device="bogus")
    assert "Loading" not in capsys.readouterr().out
    for device, meant in (("CUDA", "cuda"), ("gpu", "cuda"), ("GPU:1", "cuda:1"), ("Cpu", "cpu")):   # (no hint before)
        with pytest.raises(LoadError, match=rf"^'{device}' is not a device \(did you mean '{meant}'\?\): use cpu, "):
            LocalEngine.from_pretrained("tiny", device=device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a GPU 0")
def test_gpu_0_given_as_a_number_is_not_taken_for_no_device(capsys, random_checkpoint, tmp_path):
    """`device=0` (GPU 0) was falsy, so the default was used: on a machine without a GPU the model loaded on the CPU,
    and the doctor sized it for the CPU, while `device="0"` was refused."""
    from gptoss_lab.engines.doctor import doctor

    message = rf"^0 was asked for, but torch {re.escape(torch.__version__)} sees no CUDA GPU here: use "
    with pytest.raises(LoadError, match=message + re.escape(f"Session.load('{random_checkpoint}', device='cpu')")):
        LocalEngine.from_pretrained(random_checkpoint, device=0)
    braced = tmp_path / "run{1}"   # a name the message quotes as it is
    braced.symlink_to(random_checkpoint)
    with pytest.raises(LoadError, match=message + re.escape(f"Session.load('{braced}', device='cpu')")):
        LocalEngine.from_pretrained(braced, device=0)
    assert "Loading" not in capsys.readouterr().out
    with pytest.raises(LoadError, match=message):
        doctor(random_checkpoint, device=0)


@pytest.mark.parametrize("device", ["mps", "xpu:0"])
def test_an_accelerator_this_machine_lacks_is_refused_before_the_loading_line(capsys, random_checkpoint, device):
    """`%gptoss load tiny --device mps` on a machine without one printed "Loading gpt-oss-tiny on mps ..." and then
    transformers' "requires `accelerate`" (installing it changed nothing); the doctor sized the model for it."""
    from gptoss_lab.engines.doctor import doctor

    try:
        torch.empty(0, device=device)
        pytest.skip(f"this machine has a {device} device")
    except Exception:
        pass
    message = (rf"^{device} was asked for, but torch {re.escape(torch.__version__)} finds no {device[:3]} device here: "
               r"use ")
    with pytest.raises(LoadError, match=message + re.escape(f"Session.load('{random_checkpoint}', device='cpu')") + "$"):
        LocalEngine.from_pretrained(random_checkpoint, device=device)
    assert "Loading" not in capsys.readouterr().out
    with pytest.raises(LoadError, match=message + re.escape(f"doctor('{random_checkpoint}', device='cpu'), or give")):
        doctor(random_checkpoint, device=device)
    assert doctor(random_checkpoint, device=device, memory="16 GB").fits


def test_a_stream_started_from_another_thread_waits_for_the_running_forward(engine):
    """Two threads sharing an engine (two Sessions on one model): the second stream's cut-back and prefill
    ran in the middle of the first one's forward, which then wrote its keys over them; a follow-up on the
    second conversation reused that cache and gave other tokens than a fresh engine."""
    import threading

    engine = fresh(engine)
    entered, go = threading.Event(), threading.Event()
    first_thread: list[threading.Thread] = []

    def pause(module, args, output):  # the first stream's prefill stops half-way through the layers
        if threading.current_thread() is first_thread[0] and not go.is_set():
            entered.set()
            go.wait(10)

    first_out: list = []

    def first():
        try:
            first_out.extend(run(engine, [200006, *range(4000, 4030)]))
        except RuntimeError as err:  # left behind by the second stream: it may not touch the cache again
            first_out.append(err)

    first_thread.append(threading.Thread(target=first))
    handle = engine.model.model.layers[1].mlp.router.register_forward_hook(pause)
    try:
        first_thread[0].start()
        assert entered.wait(10)
        second_out: list = []
        second = threading.Thread(target=lambda: second_out.extend(run(engine, PROMPT)))
        second.start()
        second.join(1.0)  # it waits for the first forward (no longer: the test would hang otherwise)
        go.set()
        second.join(30)
        first_thread[0].join(30)
    finally:
        go.set()
        handle.remove()
    assert second_out == run(fresh(engine), PROMPT)
    follow_up = PROMPT + second_out + [1600, 1601]
    assert run(engine, follow_up) == run(fresh(engine), follow_up)


def test_stop_during_a_long_prefill_ends_the_stream_between_chunks(engine):
    """Stop in the view was only seen once the first token came: a 100k-token prompt's prefill ran to its end.
    Asked between prefill chunks, it ends the stream at once; the chunks computed stay cached and correct."""
    engine = fresh(engine)
    engine.prefill_chunk = 8
    prompt = PROMPT + list(range(2000, 2044))  # 64 tokens: 8 chunks
    asked = []
    assert run(engine, prompt, should_stop=lambda: asked.append(1) or len(asked) >= 3) == []
    assert len(asked) == 3 and len(engine._tokens) == 24  # three chunks computed, then Stop
    assert run(engine, prompt) == run(fresh(engine), prompt)
    assert engine.last_prefill == len(prompt) - 24


def test_stop_between_generated_tokens_ends_the_stream_where_it_is(engine):
    """`should_stop` was asked only between prefill chunks: once tokens came the stream ran on to max_new_tokens, so
    a session that lets an engine end its own stream at Stop (to give out what it holds) got the whole reply."""
    engine = fresh(engine)
    got, routed = [], Recorder()
    for token in engine.stream(PROMPT, stop=STOP, sampling=GREEDY, recorder=routed,
                               should_stop=lambda: len(got) >= 3):
        got.append(token)
    assert got == run(fresh(engine), PROMPT)[:3]
    assert routed.routing.tokens.tolist() == PROMPT + got  # the last token's routing is recorded too
    assert run(engine, PROMPT + got + [1500]) == run(fresh(engine), PROMPT + got + [1500])  # the cache stays right


def test_stop_clicked_during_prefill_ends_the_turn_with_its_reply(engine):
    from gptoss_lab import Session

    class StopDuringPrefill:
        checks = 0

        @property
        def stop_requested(self) -> bool:
            self.checks += 1
            return self.checks >= 2

        def handle(self, event) -> None:
            pass

    engine = fresh(engine)
    engine.prefill_chunk = 16
    session = Session(engine)
    view = StopDuringPrefill()
    reply = session.ask("Hello there", view=view)
    assert reply.interrupted and reply.final == "" and engine.last_prefill > 32
    assert len(engine._tokens) == 32  # two chunks computed: Stop was seen before the third


class Slip:
    """Adds a large bonus to some tokens' logits: a model that slips into writing them (added, so a ban stays one)."""

    def __init__(self, *tokens: int) -> None:
        self.tokens = list(tokens)

    def __call__(self, input_ids, scores):
        scores = scores.clone()
        scores[:, self.tokens] += 1e4
        return scores


def test_the_format_guard_keeps_a_slipping_model_inside_harmony(engine):
    """Unguarded, the slip lands in the answer as a format token; guarded, the answer is text and ends properly."""
    prompt = harmony.encode("<|start|>user<|message|>Hi<|end|><|start|>assistant<|channel|>final<|message|>")
    slip = Sampling(temperature=0, max_new_tokens=8, logits_processor=Slip(harmony.MESSAGE, harmony.CHANNEL))
    unguarded = run(engine, prompt, slip)
    assert unguarded[0] in (harmony.MESSAGE, harmony.CHANNEL)
    guarded = run(engine, prompt, replace(slip, guard=True))
    assert len(guarded) == 8 and not set(guarded) & {harmony.MESSAGE, harmony.CHANNEL, harmony.START}

    # a final answer the model would end with <|call|> (naming no tool) ends with <|return|> under the guard
    ending = Sampling(temperature=0, max_new_tokens=4, logits_processor=Slip(harmony.CALL, harmony.RETURN), guard=True)
    assert run(engine, prompt, ending) == [harmony.RETURN]
    assert run(engine, prompt, replace(ending, logits_processor=Slip(harmony.CALL), guard=False)) == [harmony.CALL]


@pytest.mark.parametrize("device", ["meta", "meta:0"])
def test_a_device_that_holds_no_weights_is_refused_before_the_loading_line(capsys, device):
    """`%gptoss load tiny --device meta` printed "Loading gpt-oss-tiny on meta (bfloat16, 58.2 MB) ..." and then
    transformers' "requires `accelerate`"; `doctor(device="meta")` said the model "fits on meta" in the CPU's memory.
    Both say, in one line and before anything is loaded, that meta holds no weights."""
    from gptoss_lab.engines.doctor import doctor

    message = rf"^'{device}' holds no weights \(tensors there have shapes only\), so no model can answer there: use cpu"
    with pytest.raises(LoadError, match=message):
        LocalEngine.from_pretrained("tiny", device=device)
    assert "Loading" not in capsys.readouterr().out
    with pytest.raises(LoadError, match=message):
        doctor("tiny", device=device)


def test_a_load_in_a_new_process_says_so_before_torch_and_transformers_start():
    """`%gptoss load tiny` in a new kernel showed nothing for 4-6 s (torch and transformers importing) before its
    "Loading gpt-oss-tiny ..." line: a first line is printed before they start."""
    code = ("import sys\nfrom gptoss_lab.engines.local import LocalEngine\nseen = []\n"
            "class Out:\n    def write(self, text):\n"
            "        seen.append((text, 'transformers' in sys.modules)) if text.strip() else None\n"
            "    def flush(self):\n        pass\n"
            "real, sys.stdout = sys.stdout, Out()\nLocalEngine.from_pretrained('tiny')\nsys.stdout = real\n"
            "print(repr(seen[:2]))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    (first, imported), (second, _) = ast.literal_eval(run.stdout.strip().splitlines()[-1])
    assert first == "Starting torch and transformers (seconds, once per kernel) ..." and not imported
    assert second.startswith("Loading gpt-oss-tiny on cpu (float32, the CPU default, ")


def loaded_first(folder, monkeypatch):
    """(a Session holding the checkpoint in `folder` in float32, the bytes its model holds, its config), the lab's
    record of loaded models fresh as in a new kernel."""
    from gptoss_lab import Session

    monkeypatch.setattr(checkpoint, "_LOADED", weakref.WeakKeyDictionary(), raising=False)
    first = Session.load(str(folder), dtype="float32", progress=False)
    model = first.engine.model
    return first, sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers())), model.config


def test_a_second_load_that_fits_once_the_loaded_model_is_freed_says_to_unload_it(random_checkpoint, monkeypatch):
    """With a model loaded, a second one that would fit in the memory the first holds was refused with "free some
    memory", as if that memory were another program's; it now names the loaded model, what it holds, and how to
    unload it (the first model stays loaded: a refused load loses nothing), and once it is unloaded it is not named."""
    from gptoss_lab import Session

    first, held, config = loaded_first(random_checkpoint, monkeypatch)
    needed = checkpoint.weight_bytes(config, "float32", packed=False)
    monkeypatch.setattr(checkpoint, "available_ram", lambda: needed - 1)   # fits only with the first one's memory
    name = first.engine.name
    short = (f"{name} needs about {checkpoint.size(needed)} for its weights (float32) but only "
             f"{checkpoint.size(needed - 1)} is free on cpu")
    with pytest.raises(LoadError) as refused:
        Session.load(str(random_checkpoint), dtype="float32", progress=False)
    assert str(refused.value) == (f"{short}, and the loaded model {name} holds {checkpoint.size(held)} there: unload it "
                                  "first (%gptoss unload, or session.unload() in Python), or choose another device "
                                  "or dtype")
    first.unload()
    with pytest.raises(LoadError) as refused:
        Session.load(str(random_checkpoint), dtype="float32", progress=False)
    assert str(refused.value) == f"{short}: free some memory or choose another device or dtype"


def test_a_model_loaded_twice_is_named_once_with_its_count(random_checkpoint, monkeypatch):
    """The same checkpoint loaded into two sessions was listed twice where a refused load names the loaded models
    ("the loaded models random_gptoss0, random_gptoss0 hold ..."); it is named once, with how many copies there are."""
    from gptoss_lab import Session

    first, held, config = loaded_first(random_checkpoint, monkeypatch)
    second = Session.load(str(random_checkpoint), dtype="float32", progress=False)
    needed = checkpoint.weight_bytes(config, "float32", packed=False)
    monkeypatch.setattr(checkpoint, "available_ram", lambda: needed - 1)
    with pytest.raises(LoadError) as refused:
        Session.load(str(random_checkpoint), dtype="float32", progress=False)
    assert f"and the loaded models {first.engine.name} (2 copies) hold {checkpoint.size(2 * held)} there: unload " \
           "them first" in str(refused.value)
    second.unload()


def test_a_checkpoint_loaded_under_two_names_is_named_once(monkeypatch):
    """gpt-oss-tiny loaded as `tiny` and by its folder's path was listed as two models ("gpt-oss-tiny, checkpoint")
    where a refused load names the loaded models; the copies of one checkpoint go by the name it was first loaded by."""
    from gptoss_lab import Session
    from gptoss_lab.tiny import CHECKPOINT

    if not (CHECKPOINT / "model.safetensors").is_file():
        pytest.skip("gpt-oss-tiny weights are not in this checkout")
    monkeypatch.setattr(checkpoint, "_LOADED", weakref.WeakKeyDictionary(), raising=False)
    first = Session.load("tiny", dtype="float32", progress=False)
    second = Session.load(str(CHECKPOINT), dtype="float32", progress=False)
    needed = checkpoint.weight_bytes(first.engine.model.config, "float32", packed=False)
    monkeypatch.setattr(checkpoint, "available_ram", lambda: needed - 1)
    with pytest.raises(LoadError) as refused:
        Session.load("tiny", dtype="float32", progress=False)
    assert "and the loaded models gpt-oss-tiny (2 copies) hold " in str(refused.value), str(refused.value)
    first.unload()
    second.unload()


def test_a_cpu_load_that_falls_back_from_float32_for_want_of_memory_says_so_and_names_the_loaded_model(
        random_checkpoint, monkeypatch, capsys):
    """With a model loaded, a second CPU load got bfloat16 (emulated here, ~4x slower) instead of float32 without a
    word; it now says why, names the loaded model whose memory would have allowed float32, and stops once it is unloaded."""
    from gptoss_lab import Session

    first, held, config = loaded_first(random_checkpoint, monkeypatch)
    f32 = checkpoint.weight_bytes(config, "float32", packed=False)
    free = f32 * 3 // 4   # room for bfloat16, and for float32 only with the first one's memory
    monkeypatch.setattr(checkpoint, "available_ram", lambda: free)
    name = first.engine.name
    why = (f"Note: {name} loads in bfloat16, not float32 (2-4x faster on a CPU): its float32 weights take "
           f"{checkpoint.size(f32)} and {checkpoint.size(free)} is free")
    capsys.readouterr()
    second = Session.load(str(random_checkpoint))
    assert second.engine.model.dtype == torch.bfloat16
    assert f"{why}, and the loaded model {name} holds {checkpoint.size(held)} there: unload it first (%gptoss unload, " \
           "or session.unload() in Python)." in " ".join(capsys.readouterr().out.split())
    first.unload()
    second.unload()
    third = Session.load(str(random_checkpoint))
    assert f"{why}." in " ".join(capsys.readouterr().out.split())
    third.unload()
