"""Multi-turn KV reuse on gpt-oss-tiny: whatever changed between turns (or cut one short), every engine call gives the
tokens, logits and expert routing that an engine with an empty cache gives for the same prompt."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from gptoss_lab import Reply, Session, harmony
from gptoss_lab.engines.base import Sampling
from gptoss_lab.engines.local import LocalEngine
from gptoss_lab.events import Delta
from gptoss_lab.routing import Recorder
from gptoss_lab.routing.interventions import parse_ablate

STOP = frozenset(harmony.STOP_TOKENS)


@pytest.fixture(scope="module")
def tiny() -> LocalEngine:
    return LocalEngine.from_pretrained("tiny", progress=False)   # float32 on the CPU


class _Logits:
    """A logits processor that keeps each step's logits and passes them on (to the turn's own processor, if any)."""

    def __init__(self, then) -> None:
        self.then, self.seen = then, []

    def __call__(self, ids, scores):
        self.seen.append(scores[0].clone())
        return scores if self.then is None else self.then(ids, scores)


class _Spied:
    """An engine whose stream calls are kept: (prompt, stop, sampling, tokens given out, their logits, routing)."""

    def __init__(self, engine: LocalEngine) -> None:
        self.engine, self.calls = engine, []
        inner = engine.stream

        def stream(prompt, *, stop, sampling=Sampling(), recorder=None, should_stop=None):
            logits = _Logits(sampling.logits_processor)
            tokens = inner(prompt, stop=stop, sampling=replace(sampling, logits_processor=logits), recorder=recorder,
                           should_stop=should_stop)
            got = []
            try:
                for token in tokens:
                    got.append(token)
                    yield token
            finally:
                tokens.close()   # the engine records the last token's routing as it closes
                routing = None
                if recorder is not None:
                    routing = (recorder.routing.tokens.copy(), recorder.routing.experts.copy(),
                               recorder.routing.weights.copy())
                self.calls.append((list(prompt), stop, sampling, got, logits.seen, routing))

        engine.stream = stream

    def check(self, fast: bool = True) -> int:
        """Assert that each call since the last check gave the tokens, logits and routing that a fresh engine gives for
        its prompt; return how many calls there were."""
        calls, self.calls = self.calls, []
        for prompt, stop, sampling, got, seen, routing in calls:
            fresh, logits, recorder = LocalEngine(self.engine.model, fast=fast), _Logits(sampling.logits_processor), Recorder()
            alone = list(fresh.stream(prompt, stop=stop, sampling=replace(sampling, logits_processor=logits),
                                      recorder=recorder))
            assert got == alone[:len(got)], harmony.decode(prompt[-40:])
            if seen:   # (none when it was stopped in the prefill)
                close = {"atol": 1e-4, "rtol": 1e-4} if self.engine.model.dtype == torch.float32 else {}
                torch.testing.assert_close(torch.stack(seen), torch.stack(logits.seen[:len(seen)]), **close)
            if routing is not None:
                n = len(routing[0])   # all of them, unless it was stopped in the prefill
                assert n == len(prompt) + len(got) or not got
                assert routing[0].tolist() == (prompt + got)[:n] == recorder.routing.tokens[:n].tolist()
                assert (routing[1] == recorder.routing.experts[:n]).all()
                torch.testing.assert_close(routing[2], recorder.routing.weights[:n], atol=1e-5, rtol=1e-4)
        return len(calls)


class _Stops:
    """A view that presses Stop (or Ctrl-C) once the model wrote `after` pieces of text (0: before the first)."""

    def __init__(self, after: int, interrupt: bool = False) -> None:
        self.after, self.interrupt, self.stop_requested = after, interrupt, after == 0 and not interrupt

    def handle(self, event) -> None:
        if isinstance(event, Delta):
            self.after -= 1
            if self.after <= 0 and self.interrupt:
                raise KeyboardInterrupt
            self.stop_requested = self.after <= 0

    def approve(self, call) -> bool:
        return True


@pytest.mark.parametrize("fast", [True, False])
def test_every_turn_gives_what_a_fresh_engine_gives_whatever_changed_since_the_cache_was_filled(tiny, fast):
    engine = LocalEngine(tiny.model, fast=fast)
    spied = _Spied(engine)
    s = Session(engine, approval="auto", temperature=0, max_new_tokens=6, date="2025-01-01", effort="low")

    def turn(prompt: str | None = None, **options) -> Reply:
        """Ask (or regenerate), then check the first call's prompt against a renderer that keeps nothing, and
        every call's tokens, logits and routing against a fresh engine."""
        past = s.history.copy()
        reply = s.ask(prompt, **options) if prompt is not None else s.regenerate()
        if prompt is not None:
            prefix = s.prefix(**{k: v for k, v in options.items() if k not in ("routing", "view")})
            assert spied.calls[0][0] == harmony.render(prefix + past + [harmony.user_message(prompt)],
                                                       keep_analysis_from=len(prefix) + len(past), keep_tool_calls=True)
        assert spied.check(fast)
        return reply

    turn("What is the capital of France?", routing=True)
    assert len(s.prompt_ids()) > tiny.config.sliding_window   # past the sliding window from here on
    s.history[0].content[0].text = "What is the capital of Italy?"   # in place, where no tool ran yet
    turn("What is 37 * 12?", max_new_tokens=28)   # a python call: two engine calls; routing off after on
    assert "Italy" in s.export()
    turn("What is 5 * 6?", routing=True, max_new_tokens=28)
    with parse_ablate("1:3").apply(engine):   # routed under an intervention, then as trained
        turn("What is 3 * 3?", routing=True)
    s.rewind()
    turn("What is 7 * 7?", routing=True, max_new_tokens=28)
    turn()   # regenerated: the same prompt, a strict prefix of the cache
    s.namespace["print"] = lambda *args: None   # the same call's output changes
    assert turn().tool_calls[0].output == ""
    del s.namespace["print"]
    s.history = s.history[:2]   # set by the user
    turn("What is 1 / 0?", max_new_tokens=28)   # the tool's code fails
    for change in ({"effort": "medium"}, {"instructions": "Answer briefly."}, {"tools": "none"},
                   {"response_format": {"type": "object", "properties": {"city": {"type": "string"}}}}):
        turn("What is 9 * 9?", **change)
    engine.prefill_chunk = 16
    assert turn("What is 41 * 2?", view=_Stops(0), effort="high", routing=True).interrupted   # in the prefill of a
    assert engine.last_prefill > engine.prefill_chunk   # new prompt: stopped after its first chunk
    assert turn("What is 41 * 3?", view=_Stops(3), effort="high").interrupted   # from there on, while it writes
    assert turn("What is 41 * 4?", view=_Stops(3, interrupt=True), routing=True).interrupted   # Ctrl-C while it writes
    with tiny.model.model.layers[2].mlp.router.register_forward_hook(_ctrl_c_once()):   # Ctrl-C half-way a forward
        assert turn("What is 41 * 5?").interrupted
    engine.prefill_chunk = 2048
    turn("What is 41 * 6?")   # through where that forward was cut
    ids = s.prompt_ids()
    for prompt, n in ((ids, 1), (ids, 1), (ids[:-1] + [ids[-2]], 4), (ids[:-2], 4)):   # the same as the cache, the
        list(engine.stream(prompt, stop=STOP, sampling=Sampling(temperature=0, max_new_tokens=n)))   # last token
    assert spied.check(fast) == 4                                                             # differing, a prefix
    try:
        for dtype in (torch.bfloat16, torch.float32):
            tiny.model.to(dtype)
            turn("What is 2 * 21?")
    finally:
        tiny.model.to(torch.float32)


def _ctrl_c_once():
    """A forward hook raising KeyboardInterrupt in the first prefill it sees (layers before it have cached the chunk)."""
    pending = [True]

    def hook(module, args, output):
        if pending and args[0].shape[0] > 1:
            pending.clear()
            raise KeyboardInterrupt

    return hook
