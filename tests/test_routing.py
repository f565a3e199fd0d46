"""Expert routing: captured routing equals a recomputation from the model's weights, the analysis
helpers give known answers, and a session records labelled routing for a tool-using conversation."""
from __future__ import annotations

import numpy as np
import pytest

from gptoss_lab import harmony
from gptoss_lab.tools.python import PythonTool
from gptoss_lab.engines.hooks import RouterHooks
from gptoss_lab.routing import Recorder, Routing

PROMPT = harmony.render([harmony.system_message("low", tools=[PythonTool().system_config()], date="2025-01-01"),
                         harmony.user_message("Which experts does this sentence go through, layer by layer?")])


def _load(path):
    import torch
    from transformers import GptOssForCausalLM

    return GptOssForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()


@pytest.fixture(scope="module", params=["random", "tiny"])
def model(request):
    """A random GptOss and, once it is trained and committed, gpt-oss-tiny (float32, eager attention)."""
    if request.param == "tiny":
        from gptoss_lab.tiny import CHECKPOINT

        if not (CHECKPOINT / "config.json").exists():
            pytest.skip(f"gpt-oss-tiny is not trained yet (no {CHECKPOINT / 'config.json'})")
        return _load(CHECKPOINT)
    return _load(request.getfixturevalue("random_checkpoint"))


def recompute(model, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Routing of `ids` computed from the model's weights and `output_hidden_states`, without hooks.

    `hidden_states[i]` is the input of decoder layer i. Its router sees
    post_attention_layernorm(h + self_attn(input_layernorm(h))): the residual stream after the
    layer's attention, which no hidden state holds, so attention is re-run here with an explicit
    causal (and, on sliding layers, windowed) mask, then router logits -> top-k -> softmax.
    """
    import torch
    import torch.nn.functional as F

    config, n = model.config, len(ids)
    with torch.no_grad():
        out = model(torch.tensor([ids]), output_hidden_states=True, use_cache=False)
        position = torch.arange(n)
        rope = model.model.rotary_emb(out.hidden_states[0], position[None])
        experts, weights = [], []
        for i, layer in enumerate(model.model.layers):
            allowed = position[None, :] <= position[:, None]
            if config.layer_types[i] == "sliding_attention":
                allowed &= position[None, :] > position[:, None] - config.sliding_window
            mask = torch.zeros(n, n).masked_fill(~allowed, torch.finfo(torch.float32).min)[None, None]
            h = out.hidden_states[i]
            attention, _ = layer.self_attn(layer.input_layernorm(h), position_embeddings=rope, attention_mask=mask)
            x = layer.post_attention_layernorm(h + attention)[0]
            router = layer.mlp.router
            top, chosen = F.linear(x, router.weight, router.bias).topk(config.num_experts_per_tok, dim=-1)
            experts.append(chosen)
            weights.append(top.softmax(dim=-1))
    return torch.stack(experts, 1).numpy(), torch.stack(weights, 1).numpy()


def test_captured_routing_equals_recomputation(model):
    """Prefill plus cached greedy decoding: every position's routing is what the weights give."""
    import torch

    ids, steps = [], []
    with torch.no_grad(), RouterHooks(model) as hooks:
        out = model(torch.tensor([PROMPT]), use_cache=True)
        steps.append(hooks.take())
        ids = list(PROMPT)
        for _ in range(6):
            ids.append(int(out.logits[0, -1].argmax()))
            out = model(torch.tensor([ids[-1:]]), cache=out.cache, use_cache=True)
            steps.append(hooks.take())
    experts = np.concatenate([e for e, _ in steps])
    weights = np.concatenate([w for _, w in steps])
    config = model.config
    assert len(PROMPT) > config.sliding_window  # the sliding-window layers really slide
    assert experts.shape == weights.shape == (len(ids), config.num_hidden_layers, config.num_experts_per_tok)
    assert experts.dtype == np.int16 and weights.dtype == np.float32
    expected_experts, expected_weights = recompute(model, ids)
    np.testing.assert_array_equal(experts, expected_experts)
    np.testing.assert_allclose(weights, expected_weights, atol=2e-5)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)


def test_hooks_record_only_inside_the_context(model):
    import torch

    hooks = RouterHooks(model)
    before = [len(router._forward_hooks) for router in hooks._routers]  # transformers has its own
    with torch.no_grad():
        with hooks:
            assert hooks.take()[0].shape == (0, model.config.num_hidden_layers, model.config.num_experts_per_tok)
            model(torch.tensor([PROMPT[:5]]))
        model(torch.tensor([PROMPT[:7]]))  # after exit: not recorded, hooks removed
    assert hooks.take()[0].shape[0] == 0
    assert [len(router._forward_hooks) for router in hooks._routers] == before


# ---------------------------------------------------------------- analysis on hand-made records

def _hand_made() -> Routing:
    """3 tokens, 2 layers, top-2 of 4 experts. Layer 0 spreads evenly; layer 1 always picks 0 and 1."""
    experts = np.array([[[0, 1], [0, 1]],
                        [[2, 3], [1, 0]],
                        [[0, 2], [0, 1]]])
    weights = np.array([[[0.75, 0.25], [0.5, 0.5]]] * 3)
    return Routing(harmony.encode("a b c")[:3], experts, weights, ["user", "analysis", "analysis"], num_experts=4)


def test_load_channel_load_and_entropy():
    r = _hand_made()
    np.testing.assert_array_equal(r.load().counts, [[2, 1, 2, 1], [3, 3, 0, 0]])
    np.testing.assert_allclose(r.load().share, [[1 / 3, 1 / 6, 1 / 3, 1 / 6], [0.5, 0.5, 0, 0]])
    np.testing.assert_array_equal(r.load("analysis").counts, [[1, 0, 2, 1], [2, 2, 0, 0]])
    assert list(r.channel_load()) == ["user", "analysis"]
    np.testing.assert_array_equal(r.channel_load()["user"].counts, [[1, 1, 0, 0], [1, 1, 0, 0]])
    np.testing.assert_allclose(r.entropy(), [-(2 * (1 / 3) * np.log2(1 / 3) + 2 * (1 / 6) * np.log2(1 / 6)), 1.0])


def test_coactivation():
    r = _hand_made()
    layer1 = r.coactivation(1)
    assert layer1[0, 1] == layer1[1, 0] == 3 and layer1[0, 0] == 3 and layer1[2:].sum() == 0
    both = r.coactivation()
    assert both[0, 1] == 4 and both[2, 3] == 1 and both[0, 2] == 1 and both[1, 3] == 0
    np.testing.assert_array_equal(np.diag(both), r.load().counts.sum(0))


def test_compare_identical_and_disjoint():
    r = _hand_made()
    assert np.allclose(r.compare(r).jsd, 0) and r.compare(r).top == []
    other = Routing([1, 2, 3], (r.experts + 2) % 4, r.weights, r.labels, num_experts=4)
    result = other.compare(r)
    np.testing.assert_allclose(result.jsd[1], 1.0)  # layer 1: experts {2,3} vs {0,1}, nothing shared
    assert result.top[0][0] == 1 and result.top[0][2:] in [(0.5, 0.0), (0.0, 0.5)]
    assert "layer" in repr(result)
    with pytest.raises(ValueError, match=r"^the records differ in layers \(2 and 3\): compare compares two routings"):
        r.compare(Routing([1], np.zeros((1, 3, 2)), np.zeros((1, 3, 2)), num_experts=4))


def test_to_frame_rows():
    r = _hand_made()
    frame = r.to_frame()
    assert len(frame) == 3 * 2 * 2
    row = frame[(frame.position == 1) & (frame.layer == 1) & (frame["rank"] == 0)].iloc[0]
    assert (row.expert, row.weight, row.label, row.text) == (1, 0.5, "analysis", r.strings[1])


def test_append_notifies_observers_and_recorder_labels():
    recorder = Recorder(num_experts=4)
    seen = []
    recorder.routing.observe(lambda kind, start: seen.append((kind, start, len(recorder.routing))))
    experts = np.zeros((2, 2, 2), np.int16)
    recorder.add([200006, 173781], experts, np.ones((2, 2, 2)))
    recorder.add([200005], experts[:1], np.ones((1, 2, 2)))
    assert recorder.tokens == [200006, 173781, 200005]
    routing = recorder.finish(["format", "format", "format"])
    assert seen == [("append", 0, 2), ("append", 2, 3), ("labels", 0, 3)]
    assert routing.strings == ["<|start|>", "assistant", "<|channel|>"]
    assert routing.experts.shape == (3, 2, 2) and routing.num_experts == 4
    with pytest.raises(ValueError, match="bypass"):
        recorder.add([1], np.zeros((0, 2, 2)), np.zeros((0, 2, 2)))


def test_growing_one_token_at_a_time_keeps_everything():
    r = Routing()
    rng = np.random.default_rng(0)
    experts = rng.integers(0, 128, (300, 36, 4))
    for i in range(300):
        r.append([i], experts[i:i + 1], np.full((1, 36, 4), 0.25))
    np.testing.assert_array_equal(r.experts, experts)
    assert r.num_experts == experts.max() + 1 and len(r.strings) == len(r.labels) == 300


def test_figures_and_display_bundle():
    r = _hand_made()
    for kind, layer in [("grid", None), ("load", None), ("load", 1)]:
        assert r.figure(kind, layer=layer).axes
    bundle = r._repr_mimebundle_()
    assert bundle["text/plain"].startswith("Routing(3 tokens × 2 layers × top-2 of 4 experts")
    assert bundle["image/png"][:4] == b"\x89PNG"
    assert "application/vnd.jupyter.widget-view+json" in bundle


# ---------------------------------------------------------------- through the session

def test_session_routing_on_a_tool_using_conversation(random_checkpoint):
    """Turn 1 (replayed) calls python; turn 2 runs the random model with routing=True: its record
    covers the whole prompt (tool call and result included) plus the generated tokens, labelled."""
    local = pytest.importorskip("gptoss_lab.engines.local")
    from gptoss_lab import ReplayEngine, Session

    engine = local.LocalEngine.from_pretrained(str(random_checkpoint), dtype="float32")  # as `recompute`
    prompts = []

    class Spy:
        name = "spy"
        keeps_past_tool_calls = True   # turn 1's call and result stay in the prompt, as for gpt-oss-tiny

        def stream(self, prompt, **kwargs):
            prompts.append(list(prompt))
            return engine.stream(prompt, **kwargs)

    session = Session(ReplayEngine(" to=python<|channel|>analysis<|message|>print(6*7)<|call|>"
                                   "<|channel|>final<|message|>42<|return|>"), approval="auto", date="2025-01-01")
    session.ask("What is 6*7? Use python.")
    session.engine = Spy()
    config = engine.model.config
    reference = _load(random_checkpoint)
    for question in ("And 7*8?", "And 8*9?"):  # the second reuses the first's KV cache (and routing)
        routing = session.ask(question, routing=True, max_new_tokens=4, temperature=0).routing
        prompt = prompts[-1]
        assert routing.experts.shape == (len(routing), config.num_hidden_layers, config.num_experts_per_tok)
        assert len(prompt) < len(routing) <= len(prompt) + 4
        assert routing.tokens[: len(prompt)].tolist() == prompt
        assert routing.labels == harmony.label_tokens(routing.tokens.tolist())
        assert {"system", "user", "analysis", "tool", "final", "format"} <= set(routing.labels[: len(prompt)])
        assert routing.strings[routing.labels.index("tool")] in "42\n"
        expected, _ = recompute(reference, routing.tokens.tolist())
        np.testing.assert_array_equal(routing.experts, expected)
    assert engine.last_prefill < len(prompt)  # the last turn did reuse cached positions


def test_a_turn_that_fails_midway_keeps_the_routing_of_the_tokens_it_computed(random_checkpoint):
    """A forward that failed half-way (a GPU out of memory, in its third layer) lost the routing of the tokens generated
    since the last batch was taken (up to 15): the failed turn kept their text, its record ended at the prompt. Now it
    keeps every token the model went through, as the model routed it; the half-done one has none."""
    local = pytest.importorskip("gptoss_lab.engines.local")
    from gptoss_lab import Session
    from gptoss_lab.engines.hooks import routers

    engine = local.LocalEngine.from_pretrained(str(random_checkpoint), dtype="float32")
    calls = 0

    def out_of_memory(module, args, output):
        nonlocal calls
        calls += 1
        if calls == 8:   # the prompt's forward, then six tokens' go through; the seventh's fails in layer 2
            raise RuntimeError("CUDA out of memory")

    handle = routers(engine.model)[2].register_forward_hook(out_of_memory)
    session = Session(engine, date="2025-01-01")
    try:
        reply = session.ask("Which experts?", routing=True, max_new_tokens=20, temperature=0, tools="none")
    finally:
        handle.remove()
    assert reply.failed == "RuntimeError: CUDA out of memory" and reply.usage.completion_tokens == 7
    routing, prompt = reply.routing, reply.usage.prompt_tokens
    assert len(routing) == prompt + 6 and routing.labels == harmony.label_tokens(routing.tokens.tolist())
    expected, _ = recompute(_load(random_checkpoint), routing.tokens.tolist())
    np.testing.assert_array_equal(routing.experts, expected)


def test_recorder_keeps_one_record_across_the_engine_calls_of_a_turn():
    """Each engine call re-sends the turn so far as its prompt: it is recorded once; a prompt that
    differs from what was recorded replaces the differing tail."""
    from gptoss_lab.routing import Recorder

    def routed(tokens):
        n = len(tokens)
        experts = np.tile(np.asarray(tokens, np.int16)[:, None, None] % 8, (1, 2, 2))
        return tokens, experts, np.full((n, 2, 2), 0.5, np.float32)

    rec = Recorder(num_experts=8)
    rec.begin()
    rec.add(*routed([1, 2, 3]))      # first call: prompt
    rec.add(*routed([4]))            # generated
    rec.begin()
    rec.add(*routed([1, 2, 3, 4, 5]))  # second call: prompt = turn so far + tool message
    rec.add(*routed([6]))
    assert rec.tokens == [1, 2, 3, 4, 5, 6]
    rec.begin()
    rec.add(*routed([1, 2, 9]))      # re-rendered differently from position 2 on
    assert rec.tokens == [1, 2, 9]
    assert rec.routing.experts[:, 0, 0].tolist() == [1, 2, 1]
