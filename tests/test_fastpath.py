"""The lean CPU forward (KVForward) against transformers' own forward: same logits, same greedy tokens,
same routing, exact rollback; models it cannot run fall back to transformers with the reason."""
from __future__ import annotations

import pytest
import torch

from gptoss_lab import harmony
from gptoss_lab.engines.base import Sampling
from gptoss_lab.engines.fastpath import KVForward
from gptoss_lab.engines.local import LocalEngine
from gptoss_lab.routing import Recorder
from test_local_engine import NoRepeat

STOP = frozenset(harmony.STOP_TOKENS)
LONG = [200006, *range(2000, 2300)]  # 301 tokens: many times the random model's sliding window of 8


@pytest.fixture(scope="module")
def model(random_checkpoint):
    return LocalEngine.from_pretrained(random_checkpoint, dtype=torch.float32, progress=False).model


def greedy(engine: LocalEngine, prompt: list[int], n: int = 24, **kw) -> list[int]:
    sampling = Sampling(temperature=0, max_new_tokens=n, logits_processor=NoRepeat())
    return list(engine.stream(prompt, stop=(), sampling=sampling, **kw))


def test_prefill_in_chunks_and_blocks_gives_transformers_logits(model):
    with torch.inference_mode():
        reference = model(torch.tensor([LONG]), use_cache=False).logits[0].float()
        for block, chunks in ((2048, [301]), (16, [100, 1, 1, 199]), (7, [5, 3, 293])):
            forward = KVForward(model)
            forward.block = block
            end = 0
            for size in chunks:
                logits = forward(LONG[end:end + size])
                end += size
                torch.testing.assert_close(logits[0], reference[end - 1], atol=2e-5, rtol=1e-4)
        forward.truncate(150)  # back past many windows: positions 150.. are computed again, exactly
        torch.testing.assert_close(forward(LONG[150:])[0], reference[-1], atol=2e-5, rtol=1e-4)


def test_greedy_tokens_routing_and_reuse_equal_the_transformers_path(model):
    fast, slow = LocalEngine(model), LocalEngine(model, fast=False)
    assert fast.slow_path_reason is None and slow.slow_path_reason == "fast=False was asked for"
    fast.prefill_chunk = slow.prefill_chunk = 64
    routed = {}
    for engine in (fast, slow):
        recorder = Recorder()
        first = greedy(engine, LONG, recorder=recorder)
        assert recorder.routing.tokens.tolist() == LONG + first  # routing taken in batches, none missing
        follow_up = LONG + first + [200006, 1200, 1201]
        second = greedy(engine, follow_up)
        assert engine.last_prefill == 3  # only the new tokens (a routed turn also fed its last token)
        branch = LONG[:40] + list(range(3000, 3030))  # back before many sliding windows
        third = greedy(engine, branch)
        assert engine.last_prefill == 30
        routed[engine is fast] = (first, second, third, recorder.routing.experts, recorder.routing.weights)
    assert routed[True][:3] == routed[False][:3]
    closed = Recorder()  # a stream closed early, in the middle of a routing batch
    stream = fast.stream(LONG[:50], stop=(), sampling=Sampling(temperature=0, max_new_tokens=100), recorder=closed)
    taken = [next(stream) for _ in range(21)]
    stream.close()
    assert closed.routing.tokens.tolist() == LONG[:50] + taken
    assert (routed[True][3] == routed[False][3]).all()
    torch.testing.assert_close(torch.from_numpy(routed[True][4]), torch.from_numpy(routed[False][4]))


def test_tiny_answers_the_same_through_both_paths():
    prompt = harmony.render([harmony.system_message("low", date="2025-01-01"), harmony.user_message("What is 37 * 12?")])
    fast = LocalEngine.from_pretrained("tiny", progress=False)
    slow = LocalEngine(fast.model, fast=False)
    sampling = Sampling(temperature=0, max_new_tokens=96)
    tokens = list(fast.stream(prompt, stop=STOP, sampling=sampling))
    assert tokens == list(slow.stream(prompt, stop=STOP, sampling=sampling))
    assert "python" in harmony.decode(tokens)  # tiny computes it with its tool, as trained
    with torch.inference_mode():  # tiny's unused vocabulary rows are zero: left out, their logits stay exactly 0
        logits = KVForward(fast.model)(prompt)[0]
        torch.testing.assert_close(logits, fast.model(torch.tensor([prompt])).logits[0, -1], atol=2e-5, rtol=1e-4)
        zero = ~fast.model.lm_head.weight.any(dim=1)
    assert zero.sum() > 100_000 and (logits[zero] == 0).all()


def test_models_it_cannot_run_use_transformers_and_say_why(model, monkeypatch):
    layer = model.model.layers[0]
    monkeypatch.setitem(vars(layer.mlp), "forward", layer.mlp.forward)  # as a hub kernel would; undone, not left set
    engine = LocalEngine(model)
    assert engine.slow_path_reason == "its GptOssMLP runs a replaced forward (a hub kernel?)"
    assert greedy(engine, LONG[:20], 4) == greedy(LocalEngine(model, fast=False), LONG[:20], 4)


def test_bfloat16_weights_take_the_transformers_path(random_checkpoint):
    """In bf16 the lean path's float32 attention could flip a near tie that transformers' bf16 rounding decides."""
    engine = LocalEngine.from_pretrained(random_checkpoint, dtype="bfloat16", progress=False)
    assert engine.slow_path_reason == "its weights are bfloat16: the lean path equals transformers in float32 only"
    assert LocalEngine.from_pretrained(random_checkpoint, progress=False).slow_path_reason is None  # float32 on a CPU


def test_weights_changed_in_place_are_used_at_once(random_checkpoint):
    model = LocalEngine.from_pretrained(random_checkpoint, dtype=torch.float32, progress=False).model
    forward = KVForward(model)
    with torch.inference_mode():
        before = forward(LONG[:10])
    with torch.no_grad():
        model.lm_head.weight.mul_(-1)  # e.g. a training step between two turns (tied: the embedding too)
    forward.reset()
    with torch.inference_mode():
        after = forward(LONG[:10])
        torch.testing.assert_close(after[0], model(torch.tensor([LONG[:10]]), use_cache=False).logits[0, -1])
    assert not torch.allclose(before, after)


QUESTIONS = [  # (question, kernel variables, what a right final answer contains)
    ("What is 37 * 12?", {}, "444"),
    ("What is the mean of data?", {"data": [2, 4, 9]}, "5.0"),
    ("What is the capital of France?", {}, "Paris"),
]


def test_float32_answers_tinys_questions_as_well_as_bfloat16():
    from gptoss_lab import Session

    f32 = LocalEngine.from_pretrained("tiny", progress=False)  # the CPU default: float32, the lean forward
    bf16 = LocalEngine.from_pretrained("tiny", dtype="bfloat16", fast=False, progress=False)  # the old default
    assert f32.model.dtype == torch.float32 and bf16.model.dtype == torch.bfloat16
    right = {f32: 0, bf16: 0}
    for question, variables, expected in QUESTIONS:
        for engine in (f32, bf16):
            reply = Session(engine, namespace=dict(variables), approval="auto", effort="low").ask(question)
            assert not reply.errors, reply.errors
            right[engine] += expected in reply.final
    assert right[f32] >= right[bf16] >= len(QUESTIONS) - 1


def test_logits_written_in_place_by_a_processor_do_not_leak_into_the_next_step():
    engine = LocalEngine.from_pretrained("tiny", progress=False)
    prompt = harmony.render([harmony.system_message("low", date="2025-01-01"), harmony.user_message("Hello!")])
    forward = KVForward(engine.model)
    with torch.inference_mode():
        logits = forward(prompt)
        logits[:, :100_000] = float("-inf")  # e.g. a grammar mask written into the scores
        after = forward([1000])
        torch.testing.assert_close(after[0], engine.model(torch.tensor([prompt + [1000]])).logits[0, -1],
                                   atol=2e-5, rtol=1e-4)


def test_decoding_past_the_models_context_does_not_copy_the_kv_store_at_every_token(model):
    """Past max_position_embeddings (benchmarks at 32k on tiny) the store grew by one position per token,
    each time copying every layer's keys and values: decode there ran 2-3x slower than it had to."""
    forward = KVForward(model)
    forward.limit = 64  # the model's context, small here
    with torch.inference_mode():
        forward(list(range(1000, 1070)))  # past it
        stores = []
        for token in range(2000, 2010):
            forward([token])
            stores.append(id(forward._keys[0]))
    assert len(set(stores)) == 1 and forward.capacity >= 80  # grown once, with room to spare


def test_a_model_turned_to_bfloat16_after_loading_leaves_the_lean_path(random_checkpoint):
    """`engine.model.to(torch.bfloat16)` (to halve its memory) kept the lean float32-only path: its greedy tokens then
    differed from transformers' (a fresh engine's) for most prompts, and slow_path_reason still said None."""
    engine = LocalEngine.from_pretrained(random_checkpoint, dtype=torch.float32, progress=False)
    greedy(engine, LONG[:30], 4)
    engine.model.to(torch.bfloat16)
    prompts = [[200006, *(1000 + (s * 37 + i * 11) % 3000 for i in range(30 + s))] for s in range(4)]
    assert [greedy(engine, p, 40) for p in prompts] == [greedy(LocalEngine(engine.model), p, 40) for p in prompts]
    assert engine.slow_path_reason == "its weights are bfloat16: the lean path equals transformers in float32 only"
    engine.model.to(torch.float32)  # and back: the lean path again, as a new engine takes it
    assert greedy(engine, prompts[0]) == greedy(LocalEngine(engine.model, fast=False), prompts[0])
    assert engine.slow_path_reason is None


def test_a_vocabulary_projection_changed_through_data_is_used_after_a_swap_or_reset(random_checkpoint):
    """The lean path's copy of lm_head outlived both `.data` changes: a tensor swapped in (seen by the engine, which
    computed the prompt again, with the old copy) and one made in place followed by `reset()`, as the engine's
    docstring says to: the greedy tokens were the old weights', not a fresh engine's."""
    engine = LocalEngine.from_pretrained(random_checkpoint, dtype=torch.float32, progress=False)
    weight = engine.model.lm_head.weight
    before = greedy(engine, LONG[:30])
    weight.data = weight.data.flip(0).contiguous()
    swapped = greedy(engine, LONG[:30])
    assert swapped == greedy(LocalEngine(engine.model), LONG[:30]) != before
    weight.data[:] = weight.data.flip(1)
    engine.reset()
    assert greedy(engine, LONG[:30]) == greedy(LocalEngine(engine.model), LONG[:30]) != swapped


def test_an_ablated_turn_then_a_plain_one_give_the_models_logits_from_one_copy_of_lm_head(random_checkpoint):
    """Each `--ablate` turn reset the engine on entry and on exit, so the lean forward copied lm_head again for it and
    for the next plain turn (for gpt-oss-20b in float32, 2.3 GB copied twice per ablated turn)."""
    from contextlib import nullcontext

    from gptoss_lab.engines.hooks import intervened
    from gptoss_lab.routing import disable

    ablation = disable({0: [1, 2], 2: [3]})
    engine, seen = LocalEngine.from_pretrained(random_checkpoint, dtype=torch.float32, progress=False), []
    model = engine.model

    def first_logits(prompt: list[int], intervention=None) -> torch.Tensor:
        keep = lambda ids, scores: seen.append(scores.clone()) or scores  # noqa: E731
        sampling = Sampling(temperature=0, max_new_tokens=1, logits_processor=keep)
        with intervention.apply(engine) if intervention else nullcontext():
            list(engine.stream(prompt, stop=(), sampling=sampling))
        return seen.pop()

    def eager(prompt: list[int], intervention=None) -> torch.Tensor:
        with torch.inference_mode(), intervened(model, intervention.check(model)) if intervention else nullcontext():
            return model(torch.tensor([prompt]), use_cache=False).logits[0, -1].float()

    first_logits(LONG[:30])
    copy = engine._fast._head[2]
    for prompt, intervention in ((LONG[:40], ablation), (LONG[:50], None), (LONG[:60], ablation)):
        torch.testing.assert_close(first_logits(prompt, intervention)[0], eager(prompt, intervention),
                                   atol=2e-5, rtol=1e-4)
    assert not torch.allclose(eager(LONG[:60], ablation), eager(LONG[:60]), atol=1e-3)  # the ablation changes them
    assert engine._fast._head is not None and engine._fast._head[2] is copy  # made once
