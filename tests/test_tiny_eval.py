"""gpt-oss-tiny's held-out evaluation, as `python -m gptoss_lab.tiny.evaluate` runs it, with its targets
asserted: valid Harmony, right tool calls, right answers on every turn index, cited browsing answers,
no tool calls after a skip, conversations past 8,192 tokens."""
from __future__ import annotations

import pytest

from gptoss_lab.tiny import CHECKPOINT, evaluate

pytestmark = pytest.mark.skipif(not (CHECKPOINT / "model.safetensors").is_file(), reason="no gpt-oss-tiny weights")


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="gpt-oss-tiny v2 misses some issue-14 targets: over four held-out seeds' 1 363 "
                   "turns (decoded with the format guard, a session's default; scored as corrected in stop 53) turn 7 "
                   "is 89.2 % (58 of 65); the old scoring's runs also missed, with --fresh wording, the right tool "
                   "(94.4 %) and turn 4, and on two more seeds turns 3, 5 and 7. Met over the four seeds: valid Harmony "
                   "99.4 %, right tool 95.8 %, right final 96.0 % on turn 1 and 93.4 % on turns 2-8, cited 91.4 %, "
                   "no loops; the model card has the table")
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


def test_a_function_answers_only_the_turns_arguments_and_could_not_must_say_what():
    """Notebook 05's table scored two wrong answers right (a reader's review): the stand-in function returned the
    turn's result, or its error, for any arguments (IBMZN got IBM's price), and a skipped or failed call's answer
    counted whenever it said "could not" ("I could not get the price of Brazil16", asked for IBM)."""
    from gptoss_lab.events import Reply
    from gptoss_lab.tiny import data, skills

    conversation = next(c for i in range(200) if (c := data.conversation(f"eval-{i}")).functions is not None
                        and any(t.call and t.call.startswith("functions.") for t in c.turns))
    turn = next(t for t in conversation.turns if t.call and t.call.startswith("functions."))
    name = turn.call.split(".", 1)[1]
    fs = conversation.functions
    turn.setup({}) if turn.setup else None
    stub = next(tool for tool in data.function_tools(fs) if tool.name == name)
    assert stub.function(**turn.call_args) == fs.results[name]
    wrong = {key: f"{value}X" if isinstance(value, str) else value + 1 for key, value in turn.call_args.items()}
    with pytest.raises(ValueError, match="^the service has no data for "):
        stub.function(**wrong)
    ibm = skills.Turn("skip", "Get me the latest IBM price.", skills.unanswered, call="functions.get_stock_price",
                      expected=["could not get the price of IBM"], skipped=True)
    for said, right in (("You chose not to run the call, so I could not get the price of IBM.", True),
                        ("I could not get the price of Brazil16: get_stock_price reported an error.", False)):
        assert evaluate.score(ibm, Reply("q", final=said))["final"] is right


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


@pytest.mark.parametrize("text, value, stated", [
    ("4821 - 1937 = 2884.", 2884, True), ("4821 - 1937 = -2884.", 2884, False), ("It is −2884.", 2884, False),
    ("The result is -5.", -5, True), ("The result is -5.", 5, False), ("37 * 12 = 444.5", 444, False),
    ("37 * 12 = 4440.", 444, False), ("Total: 17.55", "17.5", False), ("Total: 17.5.", "17.5", True),
    ("The capital is Oslofjord.", "Oslo", False), ("(444)", 444, True), ("5-3 = 2", 3, False),
])
def test_an_answer_states_a_value_whole_and_with_its_sign(text, value, stated):
    """The evaluation scored "-2884" a right answer for 2884 (a sign before the result was not looked at), and the
    notebooks' checks let it pass as well."""
    assert evaluate.states(text, value) is stated
