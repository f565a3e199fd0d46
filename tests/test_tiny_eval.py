"""gpt-oss-tiny's held-out evaluation, as `python -m gptoss_lab.tiny.evaluate` runs it, with its targets
asserted: valid Harmony, right tool calls, right answers on every turn index, cited browsing answers,
no tool calls after a skip, conversations past 8,192 tokens."""
from __future__ import annotations

import pytest

from gptoss_lab.tiny import CHECKPOINT, evaluate

pytestmark = pytest.mark.skipif(not (CHECKPOINT / "model.safetensors").is_file(), reason="no gpt-oss-tiny weights")


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="gpt-oss-tiny v2 misses some issue-14 targets: over four held-out seeds' 1 363 "
                   "turns (decoded with the format guard, a session's default) turn 7 is 90.8 % (59 of 65); with --fresh "
                   "wording the right tool is 94.4 %, turn 4 91.4 %, turn 7 89.2 %; on two more seeds turns 3, 5 and 7 "
                   "are 90.8 / 91.4 / 90.0 %; this 36-conversation sample of 20250806 misses turn 1 (93.5 %) and turn 3 "
                   "(90.5 %). Met over the four seeds: valid Harmony 99.4 %, right tool 95.8 %, right final 96.0 % on "
                   "turn 1 and 94.3 % on turns 2-8, cited 91.4 %, no loops; the model card has the table")
def test_held_out_conversations_meet_every_target():
    result = evaluate.evaluate(CHECKPOINT, n=36, seed=evaluate.HELD_OUT_SEED + 1, long_share=0.08, progress=False)
    table = evaluate.format_table(result)
    assert not evaluate.misses(result), table
    rows = result["table"]
    assert {"turn 1", "turn 4", "turn 8", "browse", "skip", "dataframe", "followup"} <= set(rows), table
    assert result["longest_context"] >= 8192, table
    words = result["analysis_words"]
    assert words["low"] < words["medium"] < words["high"], words  # effort visibly changes the reasoning


def test_scores_are_strict():
    """A wrong number, a second call after a skip, a citation of the wrong line: each is scored as a miss."""
    from gptoss_lab.events import Citation, Reply, ToolCall
    from gptoss_lab.tiny.skills import Turn, unanswered

    turn = Turn("arithmetic", "What is 37 * 12?", unanswered, call="python", call_output="444\n", expected=["444"])
    right = Reply("q", final="37 * 12 = 444.", tool_calls=[ToolCall("python", "analysis", "print(37 * 12)", output="444\n")])
    assert evaluate.score(turn, right) == {"valid": True, "tool": True, "final": True}
    wrong = Reply("q", final="37 * 12 = 4444.", tool_calls=[ToolCall("python", "analysis", "print(37 + 12)", output="49\n")])
    assert evaluate.score(turn, wrong) == {"valid": True, "tool": False, "final": False}
    skipped = Turn("skip", "What is 2 ** 10?", unanswered, call="python", expected=["could not"], skipped=True)
    looping = Reply("q", final="I could not run it.", tool_calls=[ToolCall("python", "analysis", "print(2 ** 10)")] * 2)
    assert evaluate.score(skipped, looping)["loops"] is True
    browse = Turn("browse", "When was Velmora founded?", unanswered, call="browser.search", expected=["1312"],
                  cite="Velmora was founded in 1312.")
    cited = Reply("q", final="Velmora was founded in 1312. 【1†L4】", tool_calls=[ToolCall("browser.search", "analysis", "{}")],
                  citations=[Citation("【1†L4】", 1, 4, 4, text="The mayor of Velmora is Ilsa Dunmere.")])
    assert evaluate.score(browse, cited)["cited"] is False


def test_a_long_conversation_is_answered_past_8192_tokens():
    """The teacher writes a long conversation's earlier turns; the model answers its last turn with all of
    them in context (over 8,192 tokens), in the same real Session."""
    from gptoss_lab.engines.local import LocalEngine

    conversation = evaluate.conversations(1, long_share=1.0)[0]
    assert conversation.long and len(conversation.turns) >= 2
    replies = evaluate.run(LocalEngine.from_pretrained(CHECKPOINT, progress=False), conversation, max_new_tokens=64)
    assert replies[:-1] == [None] * (len(replies) - 1)
    assert replies[-1].usage.context_tokens > 8192
    assert replies[-1].prompt == conversation.turns[-1].prompt


def test_no_guard_scores_the_models_own_harmony():
    """The evaluation decodes as a session does (format guard on); `--no-guard` turns the guard off for every turn."""
    from gptoss_lab.engines.local import LocalEngine

    engine = LocalEngine.from_pretrained(CHECKPOINT, progress=False)
    guards = []

    class Watched:
        name = engine.name

        def stream(self, prompt, **kw):
            guards.append(kw["sampling"].guard)
            return engine.stream(prompt, **kw)

    conversation = evaluate.conversations(1, long_share=0.0)[0]
    evaluate.run(Watched(), conversation, max_new_tokens=16)
    assert guards and all(guards)
    guards.clear()
    evaluate.run(Watched(), conversation, max_new_tokens=16, guard=False)
    assert guards and not any(guards)
