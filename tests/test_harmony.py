"""The format room: offline vocabulary, builders, rendering rules, the streaming parser."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

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


# ---------------------------------------------------------------- the one header parser

@pytest.mark.parametrize("text, role, expected", [
    ("<|channel|>analysis", "assistant", dict(role="assistant", channel="analysis", recipient=None, content_type=None)),
    ("assistant<|channel|>final", None, dict(role="assistant", channel="final", recipient=None)),
    ("assistant to=python<|channel|>analysis", None, dict(channel="analysis", recipient="python", content_type=None)),
    ("<|channel|>analysis to=python code", "assistant", dict(channel="analysis", recipient="python", content_type="code")),
    ("<|channel|>commentary to=functions.get_weather <|constrain|>json", "assistant",
     dict(channel="commentary", recipient="functions.get_weather", content_type="<|constrain|>json", constrain="json")),
    ("<|channel|>final<|constrain|>json", "assistant",  # a content type right after the channel, not a recipient
     dict(channel="final", recipient=None, content_type="<|constrain|>json", constrain="json")),
    ("assistant<|channel|>commentary to=browser.search", None, dict(channel="commentary", recipient="browser.search")),
    ("python to=assistant<|channel|>analysis", None, dict(role="tool", author="python", recipient="assistant", channel="analysis")),
    ("functions.get_weather to=assistant<|channel|>commentary", None,
     dict(role="tool", author="functions.get_weather", channel="commentary")),
    ("user", None, dict(role="user", channel=None, recipient=None)),
    ("developer", None, dict(role="developer")),
    ("", "assistant", dict(role="assistant", channel=None, recipient=None)),
    ("<|channel|>commentary to=functions.x to=python", "assistant",  # not valid Harmony: said, not a content type
     dict(recipient="functions.x", content_type=None, twice="recipients")),
    ("<|channel|>analysis<|channel|>final code", "assistant", dict(channel="analysis", content_type="code", twice="channels")),
    ("<|channel|>commentary to=functions.x", "assistant", dict(twice=None)),
    ("<|channel|>commentary<|constrain|>to=functions.x", "assistant",  # a `to=` word is a recipient, not a format
     dict(recipient="functions.x", constrain=None, content_type=None)),
])
def test_header_parser_reads_every_shape(text, role, expected):
    header = harmony.parse_header(text, role=role)
    assert {k: getattr(header, k) for k in expected} == expected


def test_header_labels_and_calls():
    assert harmony.parse_header("python to=assistant<|channel|>analysis").label == "tool"
    assert harmony.parse_header("<|channel|>commentary to=functions.f", role="assistant").is_call
    assert harmony.parse_header("<|channel|>weird", role="assistant").label == "final"
    assert harmony.parse_header("system").label == "system"


def test_incremental_rendering_equals_openai_harmony():
    from openai_harmony import Conversation, RenderConversationConfig, Role

    call = harmony.assistant_message("print(1)", "analysis", "python", "code")
    fn = harmony.assistant_message("{}", "commentary", "functions.f", "<|constrain|>json")
    messages = [harmony.system_message("low", tools=[PythonTool().system_config()]),
                harmony.developer_message("Be brief.", functions=[__import__("openai_harmony").ToolDescription.new("f", "F.")]),
                harmony.user_message("q <|start|>x"), harmony.assistant_message("think", "analysis"), call,
                harmony.tool_message("python", "1", "analysis"), fn, harmony.tool_message("functions.f", "2", "commentary"),
                harmony.assistant_message("one", "final"), harmony.user_message("again"),
                harmony.assistant_message("more thought", "analysis")]
    renderer = harmony.Renderer()
    for n in range(3, len(messages) + 1):
        for keep in (None, 4, n - 1):
            for tool_calls in (False, True):
                got = renderer.render(messages[:n], keep_analysis_from=keep, keep_tool_calls=tool_calls)
                k = n if keep is None else keep
                kept = [m for i, m in enumerate(messages[:n]) if not (i < k and m.channel == "analysis" and not (
                    tool_calls and (m.author.role != Role.ASSISTANT or m.recipient)))]
                want = harmony.encoding().render_conversation_for_completion(
                    Conversation.from_messages(kept), Role.ASSISTANT,
                    config=RenderConversationConfig(auto_drop_analysis=False))
                assert got == want, (n, keep, tool_calls)


def test_a_finished_turns_python_call_and_output_go_with_its_reasoning_as_openai_harmony_drops_them():
    """The built-in tools' calls and outputs are on the analysis channel: openai-harmony's auto_drop_analysis (and
    vLLM) drop them from finished turns with the reasoning; the lab kept them, so gpt-oss-20b saw another prompt
    than the reference gives it. gpt-oss-tiny, trained with them kept, asks for them (keep_tool_calls)."""
    from openai_harmony import Conversation, RenderConversationConfig, Role

    messages = [harmony.system_message("low", tools=[PythonTool().system_config()], date="2026-11-25"),
                harmony.user_message("What is 37 * 12?"), harmony.assistant_message("Compute it.", "analysis"),
                harmony.assistant_message("print(37 * 12)", "analysis", "python", "code"),
                harmony.tool_message("python", "444", "analysis"), harmony.assistant_message("444.", "final"),
                harmony.user_message("And 2 ** 10?")]
    reference = harmony.encoding().render_conversation_for_completion(
        Conversation.from_messages(messages), Role.ASSISTANT, config=RenderConversationConfig(auto_drop_analysis=True))
    assert harmony.render(messages, keep_analysis_from=len(messages) - 1) == reference
    assert "print(37 * 12)" not in harmony.decode(reference)
    kept = harmony.decode(harmony.render(messages, keep_analysis_from=len(messages) - 1, keep_tool_calls=True))
    assert "print(37 * 12)<|call|><|start|>python to=assistant<|channel|>analysis<|message|>444" in kept
    assert "Compute it." not in kept


def test_events_import_without_the_session():
    code = "import sys, gptoss_lab.events, gptoss_lab.harmony; print('gptoss_lab.session' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_message_the_model_writes_as_a_tool_or_the_user_is_an_error_not_an_assistant_message():
    stream = harmony.HarmonyStream()
    events = []
    for token in harmony.encode("<|channel|>analysis<|message|>Think.<|end|>"
                                "<|start|>functions.f to=assistant<|channel|>commentary<|message|>{\"t\": 9}<|end|>"
                                "<|start|>user<|message|>Now do it.<|end|>"
                                "<|start|>assistant<|channel|>final<|message|>ok<|return|>"):
        events += stream.feed(token)
    events += stream.close()
    messages = [e.message for e in events if isinstance(e, MessageEnd)]
    assert [(m.channel, m.recipient, harmony.text_of(m)) for m in messages] == [("analysis", None, "Think."),
                                                                              ("final", None, "ok")]
    errors = [(e.raw, e.reason) for e in events if isinstance(e, ParseError)]
    assert errors == [
        ("functions.f to=assistant<|channel|>commentary<|message|>", "the model wrote a message as functions.f"),
        ('{"t": 9}<|end|>', "text outside a message"),
        ("user<|message|>", "the model wrote a message as user"),
        ("Now do it.<|end|>", "text outside a message"),
    ]
    assert [e.channel for e in events if isinstance(e, MessageStart)] == ["analysis", "final"]


def test_a_message_changed_in_place_renders_anew():
    """The renderer's cache follows what messages say: an edit of `session.history` in place is what the
    model sees next (openai-harmony's own builders change messages in place too)."""
    from openai_harmony import TextContent

    renderer = harmony.Renderer()
    history = [harmony.system_message("low"), harmony.user_message("Capital of Italy?"),
               harmony.assistant_message("Paris.", "final")]
    renderer.render(history)
    history[2].content[0] = TextContent(text="Rome.")
    assert renderer.render(history) == harmony.render(history)
    assert "Rome." in harmony.decode(renderer.render(history))


# ---------------------------------------------------------------- fuzzing the stream parser and the re-tokeniser


_SPECIALS = ["<|start|>", "<|channel|>", "<|message|>", "<|constrain|>", "<|end|>", "<|call|>", "<|return|>"]
_WORDS = ["assistant", "system", "user", "developer", "tool", "to=python", "to=functions.x", "to=assistant", "to=",
          "analysis", "commentary", "final", "json", "code", " ", "\n", "<|channel|>commentary to=python code",
          "x" * 700, "é", "🙂", "\u202e", "\x00", "<|", "|>", "<|chan", "<|endoftext|>", "<|reserved_200013|>", "<|x|>",
          "!!", "'s", "123456", "\r\n", "   ", "\t"]
_TEXT = st.lists(st.one_of(st.sampled_from(_SPECIALS + _WORDS), st.text(max_size=6)), max_size=40).map("".join)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.one_of(st.sampled_from([harmony.START, harmony.CHANNEL, harmony.MESSAGE, harmony.CONSTRAIN,
                                           harmony.END, harmony.CALL, harmony.RETURN]),
                          st.integers(0, harmony.VOCAB_SIZE - 1), st.integers(199_990, 201_100), st.integers(-3, 2**40),
                          st.sampled_from(harmony.encode("assistant to=functions.x system user analysis final json"))),
                max_size=80))
def test_any_token_ids_give_well_formed_events(ids):
    """Whatever the ids, the stream never raises; messages open and close in turn, every message it ends is the
    assistant's and renders, and its text is what the deltas said."""
    stream = harmony.HarmonyStream()
    events = [e for token in ids for e in stream.feed(token)] + stream.close()
    open_, text = False, ""
    for event in events:
        if isinstance(event, MessageStart):
            assert not open_
            open_, text = True, ""
        elif isinstance(event, Delta):
            assert open_
            text += event.text
        elif isinstance(event, MessageEnd):
            assert open_
            open_ = False
            if event.message is not None:
                assert event.message.author.role.value == "assistant" and harmony.text_of(event.message) == text
                harmony.render([harmony.system_message(date="2026-11-25"), event.message])
        else:
            assert isinstance(event, ParseError) and isinstance(event.raw, str) and event.reason


def _retokenized(chunks):
    retok = harmony.Retokenizer()
    ids = [i for chunk in chunks for i in retok.feed(chunk)] + retok.flush()
    return ids, retok.implied_stop()


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(_TEXT, st.lists(st.integers(0, 10**6), max_size=12))
def test_retokenizing_text_cut_anywhere_gives_the_same_ids(text, cuts):
    """A server's text stream cut at arbitrary points (inside words, whitespace runs and special tokens)
    gives the ids of the whole text, and the same implied stop token."""
    cuts = sorted({c % (len(text) + 1) for c in cuts})
    chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
    assert _retokenized(chunks) == _retokenized([text])


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.sampled_from([" ", "\n", "\r", "!", "'", "s", "t", "a", "A", "1", "/", "é", "\t", "<|end|>",
                                 "<|start|>", "<|message|>", "<", "|", ">", "\u3000", "ǅ", "\u0301"]), max_size=40).map("".join))
def test_retokenizing_text_one_character_at_a_time_gives_the_same_ids(text):
    assert _retokenized(list(text)) == _retokenized([text])
    if "<|start|>" not in text:  # (a missing <|end|> before <|start|> is restored, so the ids differ from encode's)
        assert _retokenized([text])[0] == harmony.encode(text)


@pytest.mark.parametrize("head, text", [
    ("<|channel|>final<|message|>", "-" * 40_000 + " and then words"),
    ("<|channel|>final<|message|>", "a=" + "x" * 40_000 + " and then words"),  # the growing piece second of those held
    ("<|channel|>final<|message|>", "a " + "x" * 40_000 + " and then words"),
    ("<|channel|>commentary ", "to=" + "x" * 40_000 + " code"),                 # in a header
], ids=["dashes", "a=x...", "a x...", "header to=x..."])
def test_a_piece_that_never_ends_is_settled_as_it_arrives_and_the_same_however_it_is_cut(head, text):
    """A server streaming "-----..." with no end held all of it back and re-scanned it at every chunk (8 300 chunks of
    32 characters took ~40 s): its ids now come out as it arrives, the same for any cutting of the stream. Also
    after a short piece (`a=xxx...`), which held it back as before."""
    streams = []
    for size in (32, 999, len(text)):
        retok = harmony.Retokenizer()
        ids = retok.feed(head)
        settled = []
        for start in range(0, len(text), size):
            ids += retok.feed(text[start:start + size])
            settled.append(len(harmony.decode(ids)))
        streams.append(ids + retok.flush())
        if size == 32:  # what arrived, less a bounded tail, is already settled
            assert settled[len(settled) // 2] > 20_000 - 9_000, settled[len(settled) // 2]
    assert streams[0] == streams[1] == streams[2]
    assert harmony.decode(streams[0]) == head + text


# ---------------------------------------------------------------- the format guard

@pytest.mark.parametrize("text, text_allowed, allowed", [
    ("<|start|>", "none", {"assistant"}),                                         # the one role the model writes
    ("<|start|>assistant", "spaced", {"<|channel|>"}),                            # no word glued to the role
    ("<|start|>assistant to=python", "any", {"<|channel|>", "<|constrain|>", "<|message|>"}),   # a header
    ("<|start|>assistant<|channel|>analysis<|message|>Let me", "any", {"<|end|>"}),
    ("<|start|>assistant<|channel|>final<|message|>It is", "any", {"<|end|>", "<|return|>"}),
    ("<|start|>assistant to=python<|channel|>analysis code<|message|>print(", "any", {"<|end|>", "<|call|>"}),
    ("<|start|>assistant<|channel|>commentary to=functions.f <|constrain|>json<|message|>{", "any",
     {"<|end|>", "<|call|>"}),
    ("<|start|>assistant<|channel|>analysis<|message|>Done.<|end|>", "none", {"<|start|>"}),   # only a new message
])
def test_the_format_guard_allows_only_what_harmony_allows_there(text, text_allowed, allowed):
    import torch

    ids = torch.tensor(harmony.encode("<|start|>user<|message|>Hi<|end|>" + text))
    scores = harmony.FormatGuard()(ids[None], torch.zeros(1, harmony.VOCAB_SIZE))
    kept = [int(t) for t in (scores[0] > float("-inf")).nonzero()]
    text_kept = [harmony.decode([t]) for t in kept if t < harmony.FIRST_SPECIAL and harmony.decode([t]) not in allowed]
    assert {harmony.decode([t]) for t in kept} - set(text_kept) == allowed
    if text_allowed == "any":
        assert len(text_kept) == harmony.FIRST_SPECIAL
    elif text_allowed == "spaced":   # " to=..." may follow the role; "assistantfoo" may not
        assert 1000 < len(text_kept) < harmony.FIRST_SPECIAL and all(t.startswith(" ") for t in text_kept)
        assert " to" in text_kept
    else:
        assert text_kept == []


def test_the_format_guard_leaves_ids_it_cannot_place_alone():
    import torch

    guard = harmony.FormatGuard()
    for text in ("plain text, no message yet", "<|start|>assistant<|channel|>final<|message|>42<|return|>"):
        scores = torch.randn(1, harmony.VOCAB_SIZE)
        assert torch.equal(guard(torch.tensor([harmony.encode(text)]), scores.clone()), scores)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**31 - 1))
def test_a_model_that_loves_format_tokens_still_writes_valid_harmony_through_the_guard(seed):
    """Greedy decoding of random logits that favour special tokens: whatever is picked, the stream parses
    with no format error, tool calls end in <|call|> and only final answers in <|return|>."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    guard, stream = harmony.FormatGuard(), harmony.HarmonyStream()
    ids = harmony.encode("<|start|>user<|message|>Hi<|end|><|start|>assistant")
    events = []
    for _ in range(60):
        scores = torch.randn(1, harmony.VOCAB_SIZE, generator=generator)
        scores[0, harmony.FIRST_SPECIAL:] += 3.5          # most steps, the likeliest token is a format token
        token = int(guard(torch.tensor([ids]), scores).argmax())
        ids.append(token)
        events += stream.feed(token)
        if token in harmony.STOP_TOKENS:
            break
    assert not [e for e in events if isinstance(e, ParseError)]
    ends = [e for e in events if isinstance(e, MessageEnd)]
    assert ends, "60 steps of format-token-loving logits closed no message"
    for end in ends:
        if end.stop_token == harmony.CALL:
            assert end.message.recipient
        if end.stop_token == harmony.RETURN:
            assert end.message.channel in (None, "final")


def test_encode_of_a_long_run_between_special_tokens_neither_crashes_nor_changes_ids():
    """A recording with 100,000 `[` and as many `]` took openai-harmony 18 s (quadratic in a piece's length; in a
    review it ended in a PanicException, a stack overflow no `except Exception` catches): a long run between special
    tokens goes through encode_text, with the same ids."""
    recording = "<|start|>assistant<|channel|>final<|message|>" + "[" * 100_000 + "]" * 100_000 + "<|return|>"
    t0 = time.perf_counter()
    ids = harmony.encode(recording)
    assert time.perf_counter() - t0 < 6
    assert harmony.decode(ids) == recording and ids[-1] == harmony.encode("<|return|>")[0]
    for text in ("<|start|>user<|message|>" + "a" * 600 + " b<|end|>", "x" * 700, "<|call|>" + " " * 900 + "<|end|>"):
        assert harmony.encode(text) == harmony.encoding().encode(text, allowed_special="all")
