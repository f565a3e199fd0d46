"""gpt-oss-tiny's training data: valid Harmony, laid out as the session feeds it, every category, real tool outputs."""
from __future__ import annotations

import copy
import functools
import json

from openai_harmony import Role

from gptoss_lab import harmony
from gptoss_lab.session import Session
from gptoss_lab.tiny import data
from gptoss_lab.tools.python import PythonTool


@functools.cache
def _examples() -> list[data.Example]:
    return data.dataset(240, seed=7)


def _kept(example: data.Example) -> list:
    """The messages the rendering keeps: earlier turns' analysis is dropped."""
    return [m for i, m in enumerate(example.messages)
            if not (i < example.turn and m.author.role == Role.ASSISTANT and m.channel == "analysis" and not m.recipient)]


def _shape(m) -> tuple:
    text = harmony.text_of(m) if m.author.role not in (Role.SYSTEM, Role.DEVELOPER) else ""
    return m.author.role, m.author.name, m.channel, m.recipient, m.content_type, text


def test_every_example_parses_back_as_harmony():
    for example in _examples():
        ids, _ = data.tokens(example)
        parsed = harmony.encoding().parse_messages_from_completion_tokens(ids, None)
        assert [_shape(m) for m in parsed] == [_shape(m) for m in _kept(example)]
        assert ids[-1] == harmony.RETURN


def test_token_layout_is_what_the_session_feeds():
    """Every prompt the session sends during the turn is a prefix of the training sequence."""
    for example in _examples()[:80]:
        ids, covered = data.tokens(example)
        for k in range(example.turn + 1, len(example.messages)):
            if example.messages[k].author.role == Role.ASSISTANT and example.messages[k - 1].author.role != Role.ASSISTANT:
                prompt = harmony.render(example.messages[:k], keep_analysis_from=example.turn)
                assert ids[:len(prompt)] == prompt
                assert not any(covered[len(prompt) - 2:len(prompt)])  # `<|start|>assistant` is the prompt's
                assert covered[len(prompt)] == example.trained[k]  # generation starts right after it


def test_system_and_developer_messages_match_the_session():
    for example in _examples()[:40]:
        date = _rendered(example.messages[0]).split("Current date: ")[1][:10]
        tools = ["python", *(_stub(n) for n in example.functions)]
        session = Session(engine=None, effort=example.effort, date=date, tools=tools, namespace={})  # type: ignore[arg-type]
        head = [_rendered(m) for m in example.messages if m.author.role in (Role.SYSTEM, Role.DEVELOPER)]
        assert [_rendered(m) for m in session.prefix()] == head


def _rendered(message) -> str:
    return harmony.decode(harmony.encoding().render(message))


def _stub(name: str):
    from gptoss_lab.tiny.evaluate import _function_tool

    return _function_tool(name, lambda **_: None)


def test_loss_covers_exactly_the_generated_assistant_tokens():
    for example in _examples()[:80]:
        ids, covered = data.tokens(example)
        role = None
        for p, t in enumerate(ids):
            if p and ids[p - 1] == harmony.START:
                role = harmony.decode([t]).strip()
            if covered[p]:
                assert role == "assistant", harmony.decode(ids[p - 3:p + 3])
        stops = [t for t, c in zip(ids, covered) if c and t in (harmony.CALL, harmony.RETURN, harmony.END)]
        assert stops[-1] == harmony.RETURN and covered[-1]
        trained_calls = sum(1 for m, t in zip(example.messages, example.trained) if t and m.recipient)
        assert stops.count(harmony.CALL) == trained_calls


def test_data_covers_every_category_and_effort():
    examples = _examples()
    assert {e.category for e in examples} == set(data.CATEGORIES)
    assert {e.effort for e in examples} == set(harmony.EFFORTS)
    assert any(e.category != "followup" and sum(m.author.role == Role.USER for m in e.messages) > 1 for e in examples)
    ops = " ".join(e.call or "" for e in examples if e.category == "arithmetic")
    assert all(f" {op} " in ops for op in ("+", "-", "*", "//"))


def test_reasoning_effort_sets_the_analysis_length():
    words = {e: [] for e in harmony.EFFORTS}
    for example in _examples():
        words[example.effort].append(len(harmony.text_of(example.messages[example.turn + 1]).split()))
    mean = {e: sum(w) / len(w) for e, w in words.items()}
    assert mean["low"] < mean["medium"] < mean["high"]


def test_python_tool_outputs_are_the_real_tool_outputs():
    for example in _examples():
        messages = example.messages
        for i, m in enumerate(messages):
            if m.author.role == Role.TOOL and m.author.name == "python" and i > example.turn:  # (earlier turns
                code = harmony.text_of(messages[i - 1])                                        # had namespaces of their own)
                output = PythonTool(copy.deepcopy(example.namespace)).execute(code).output or "(no output)"
                assert harmony.text_of(m) == output


def test_final_answers_copy_the_tool_result():
    for example in _examples():
        if example.category in ("arithmetic", "kernel", "followup"):
            tool_text = harmony.text_of(example.messages[-2]).strip()
            assert tool_text == example.expected[0] and tool_text in example.final


def test_function_calls_are_json_to_a_listed_function_on_commentary():
    calls = [(e, m) for e in _examples() for m in e.messages[e.turn:] if (m.recipient or "").startswith("functions.")]
    assert calls
    for example, m in calls:
        assert m.channel == "commentary" and m.content_type == "<|constrain|>json"
        name = m.recipient.removeprefix("functions.")
        assert name in example.functions
        answer = example.messages[example.messages.index(m) + 1]
        assert answer.author.name == m.recipient
        assert json.loads(harmony.text_of(answer)) == example.functions[name](**json.loads(harmony.text_of(m)))
