"""The format room: offline vocabulary, builders, rendering rules, the streaming parser."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from gptoss_lab import harmony
from gptoss_lab.tools.python import PythonTool
from gptoss_lab.events import Delta, MessageEnd, MessageStart, ParseError


def _offline(code: str, env_extra: dict[str, str], tmp_path) -> subprocess.CompletedProcess:
    """Run Python with no network at all (own empty network namespace) and an empty tiktoken cache."""
    env = {k: v for k, v in os.environ.items() if k != "TIKTOKEN_ENCODINGS_BASE"}
    env.update(TIKTOKEN_RS_CACHE_DIR=str(tmp_path / "cache"), XDG_CACHE_HOME=str(tmp_path / "xdg"), **env_extra)
    return subprocess.run(["unshare", "-rn", sys.executable, "-c", textwrap.dedent(code)],
                          env=env, capture_output=True, text=True, timeout=120)


def test_encoding_loads_with_no_network(tmp_path):
    done = _offline("""
        from gptoss_lab import harmony
        ids = harmony.encode("<|start|>user<|message|>What is 37 * 12?<|end|>")
        print(ids[0], len(harmony.encoding().stop_tokens_for_assistant_actions()))
    """, {}, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["200006", "2"]


def test_openai_harmony_alone_cannot_load_offline(tmp_path):
    """Control: without the bundled vocabulary the same sandbox fails, so the test above means something."""
    done = _offline("""
        from openai_harmony import load_harmony_encoding, HarmonyEncodingName
        load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
    """, {}, tmp_path)
    assert done.returncode != 0


def test_damaged_vocab_is_refused(tmp_path, monkeypatch):
    bad = tmp_path / "o200k_base.tiktoken"
    bad.write_bytes(b"not the vocabulary")
    monkeypatch.setattr(harmony, "VOCAB_FILE", bad)
    with pytest.raises(RuntimeError, match="damaged"):
        harmony._check_vocab()


def test_special_token_ids_match_the_design():
    ids = harmony.encode("<|start|><|constrain|><|channel|><|end|><|return|><|message|><|call|>")
    assert ids == [200006, 200003, 200005, 200007, 200002, 200008, 200012]
    assert set(harmony.encoding().stop_tokens_for_assistant_actions()) == harmony.STOP_TOKENS


def test_system_message_carries_effort_and_python_tool():
    text = harmony.decode(harmony.render([harmony.system_message("high", tools=[PythonTool().system_config()], date="2026-11-25")]))
    assert "Reasoning: high" in text and "## python" in text and "Current date: 2026-11-25" in text
    plain = harmony.decode(harmony.render([harmony.system_message("low")]))
    assert "Reasoning: low" in plain and "## python" not in plain
    with pytest.raises(ValueError, match="low, medium, high"):
        harmony.system_message("extreme")


def test_render_drops_earlier_analysis_but_keeps_the_current_tool_loop():
    from openai_harmony import Message, Role

    def assistant(text, channel, recipient=None):
        m = Message.from_role_and_content(Role.ASSISTANT, text).with_channel(channel)
        return m.with_recipient(recipient) if recipient else m

    messages = [harmony.system_message(), harmony.user_message("first"), assistant("OLD-THOUGHT", "analysis"),
                assistant("one", "final"), harmony.user_message("second"), assistant("NEW-THOUGHT", "analysis"),
                assistant("print(1)", "analysis", "python"), harmony.tool_message("python", "1", "analysis")]
    text = harmony.decode(harmony.render(messages, keep_analysis_from=4))
    assert "OLD-THOUGHT" not in text
    assert "NEW-THOUGHT" in text and "print(1)" in text
    assert text.endswith("<|start|>assistant")
    # openai-harmony's own rule would bring the old reasoning back during the tool loop:
    from openai_harmony import Conversation, RenderConversationConfig

    lib = harmony.decode(harmony.encoding().render_conversation_for_completion(
        Conversation.from_messages(messages), Role.ASSISTANT, config=RenderConversationConfig(auto_drop_analysis=True)))
    assert "OLD-THOUGHT" in lib


def test_stream_turns_tokens_into_events():
    stream = harmony.HarmonyStream()
    events = []
    for token in harmony.encode("<|channel|>analysis<|message|>Think.<|end|><|start|>assistant to=python"
                                "<|channel|>analysis code<|message|>print(2)<|call|>"):
        events += stream.feed(token)
    starts = [e for e in events if isinstance(e, MessageStart)]
    ends = [e for e in events if isinstance(e, MessageEnd)]
    assert [(s.channel, s.recipient) for s in starts] == [("analysis", None), ("analysis", "python")]
    assert "".join(e.text for e in events if isinstance(e, Delta)) == "Think.print(2)"
    assert ends[-1].stop_token == harmony.CALL and harmony.text_of(ends[-1].message) == "print(2)"
    assert ends[-1].message.content_type == "code"


def test_stream_reports_a_cut_off_message_instead_of_raising():
    stream = harmony.HarmonyStream()
    events = [e for t in harmony.encode("<|channel|>final<|message|>half an ans") for e in stream.feed(t)]
    events += stream.close()
    assert isinstance(events[-1], MessageEnd) and events[-1].message is None  # cut off, not raised
    assert stream.in_message and stream.header.channel == "final" and stream.partial_text() == "half an ans"


def test_label_tokens_by_role_and_channel():
    ids = harmony.render([harmony.system_message(), harmony.user_message("hi")]) + harmony.encode(
        "<|channel|>analysis<|message|>x<|end|><|start|>assistant<|channel|>final<|message|>y<|return|>")
    labels = harmony.label_tokens(ids)
    assert len(labels) == len(ids)
    by_text = {harmony.decode([i]): lab for i, lab in zip(ids, labels) if lab != "system"}
    assert by_text["hi"] == "user" and by_text["x"] == "analysis" and by_text["y"] == "final"
    assert by_text["<|return|>"] == "format"
