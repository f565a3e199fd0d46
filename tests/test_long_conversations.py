"""Long conversations and the model's context: what a turn that runs long or fills the context leaves the user."""
from __future__ import annotations

import pytest

from gptoss_lab import ReplayEngine, Session, harmony
from gptoss_lab.session import TurnError

PROSE = " ".join(["Step 3: Call get_distance, then answer from its result."] * 400)


def _session(recording: str, **kw) -> Session:
    return Session(ReplayEngine(recording), namespace={}, approval="auto", date="2026-11-25", **kw)


ANALYSIS = "<|channel|>analysis<|message|>Check the result.<|end|>"


@pytest.mark.parametrize("recording", [
    f"{ANALYSIS}<|start|>assistant is. {PROSE}",                    # prose where the next message's header goes
    f"{ANALYSIS}<|start|>assistant to=functions.{'x' * 30_000}",    # a recipient that never ends
    f"{ANALYSIS}{PROSE}",                                           # stray text after a message, no <|start|>
], ids=["prose header", "endless name", "text between messages"])
def test_a_runaway_header_is_stopped_and_said_not_run_to_the_token_limit_unseen(recording):
    """gpt-oss-tiny (guard on) wrote `<|start|>assistant` then 1 900 tokens of prose as a header: no view shows a
    header, so the turn showed nothing for them, ran to --max-tokens (to the context with a large one) and then
    said "what was written is kept" of text it had dropped. It is stopped within a few hundred tokens, and said."""
    s = _session(recording, max_new_tokens=20_000)
    reply = s.ask("How far is it?")
    assert reply.usage.completion_tokens < 1100, reply.usage
    assert reply.analysis == "Check the result."
    assert "what was written is kept" not in " ".join(reply.errors)
    assert reply.errors[-1].startswith("The model's reply was stopped: where a message header goes, it wrote ")
    assert reply.errors[0].startswith("Not valid Harmony (") and "longer than any Harmony header" in reply.errors[0]
    assert s.history[-1].channel == "analysis"   # the conversation goes on from what the model wrote validly


def test_a_reply_that_fills_the_context_at_the_token_limit_too_says_the_context_is_full():
    """With --max-tokens just what the context had left, a reply cut there said "raise --max-tokens to allow more":
    no more fitted. It says the context is full, as it does when --max-tokens is larger."""
    s = _session(f"<|channel|>final<|message|>{' '.join(f'word{i}' for i in range(1, 41))}<|return|>")
    left = 20
    prompt = len(harmony.render(s.prefix() + [harmony.user_message("q")]))
    s.engine.context_window = prompt + left
    reply = s.ask("q", max_new_tokens=left)
    assert reply.final and "word40" not in reply.final
    assert reply.errors == [f"The reply filled the model's context ({prompt + left:,} tokens); what was written is kept: "
                            "start a new conversation (%gptoss reset) or ask with --new."]


def test_a_turn_that_filled_the_context_with_reasoning_says_the_conversation_goes_on_without_it():
    """A reply whose reasoning filled the context said "start a new conversation (%gptoss reset)", and a user who did
    lost the conversation, while the next question fitted: a later turn reads it without this turn's reasoning (and a
    gpt-oss model without its tool calls). The note says where the next turn starts, and it does."""
    thinking = " ".join(["Let me think about the distance between the two towns once more."] * 60)
    s = _session(f"<|channel|>analysis<|message|>{thinking}<|end|><|start|>assistant<|channel|>final<|message|>Far."
                 "<|return|><|channel|>final<|message|>Yes.<|return|>")
    prompt = len(harmony.render(s.prefix() + [harmony.user_message("How far is it?")]))
    s.engine.context_window = prompt + 300
    reply = s.ask("How far is it?")
    assert reply.errors == [f"The reply filled the model's context ({prompt + 300:,} tokens); what was written is kept: "
                            f"the next question starts from {len(s.prompt_ids())} tokens, as a later turn reads this "
                            "one without its reasoning; or start a new conversation (%gptoss reset) or ask with --new."]
    assert s.ask("Is it far?").final == "Yes."


@pytest.mark.parametrize("spare, promised", [(16, False), (20, False), (21, True), (40, True)])
def test_a_filled_context_promises_a_next_question_only_where_it_is_taken(spare, promised):
    """A turn that filled the context said "the next question starts from N tokens" where N + 5 fitted, but a question
    that leaves under 16 tokens for its answer is refused: the shortest next question was then refused. The note
    promises it exactly where it is taken, and says to start anew where it is not."""
    thinking = " ".join(["Let me think about the distance between the two towns once more."] * 60)
    s = _session(f"<|channel|>analysis<|message|>{thinking}<|end|><|start|>assistant<|channel|>final<|message|>Far."
                 "<|return|><|channel|>final<|message|>Yes.<|return|>")
    prompt = len(harmony.render(s.prefix() + [harmony.user_message("How far is it?")]))
    s.engine.context_window = prompt + spare
    note = s.ask("How far is it?").errors[-1]
    assert ("the next question starts from" in note) is promised, note
    if promised:
        assert s.ask("Far").final == "Yes."   # the shortest question there is: one token of text
    else:
        assert note.endswith(": start a new conversation (%gptoss reset) or ask with --new.")
        with pytest.raises(TurnError, match="leaving no room for an answer: start a new conversation"):
            s.ask("Far")


def test_a_prompt_far_longer_than_the_context_is_refused_before_it_is_tokenized():
    """A 50 MB prompt (a `{variable}` holding a big table) was tokenized twice before it was refused: the kernel was
    held 9 s (more for more, un-interruptible inside the tokenizer, a list of 8 million ids per pass). A prompt with
    more characters than the context can hold tokens of the longest kind is refused at once, in one line, saying so."""
    import time

    s = _session("<|channel|>final<|message|>hi<|return|>")
    s.engine.context_window = 12_288
    prompt = "alpha beta gamma delta " * 2_200_000
    t0 = time.perf_counter()
    with pytest.raises(TurnError, match=r"^the prompt is 50,600,000 characters, at least 395,313 tokens, more than the "
                                        r"model's context of 12,288 tokens can hold: shorten it$"):
        s.ask(prompt)
    assert time.perf_counter() - t0 < 2
    # 1,000,000 "x" are 125,000 tokens of 8: fewer characters than 12,288 tokens of 128 could hold, it took 9 s to tell
    assert max(map(len, harmony.ranks())) == 128 and len(harmony.encode_text("x" * 1024)) == 128
    t0 = time.perf_counter()
    with pytest.raises(TurnError, match=r"^the prompt is 1,000,000 characters, at least 124,969 tokens, more than the "
                                        r"model's context of 12,288 tokens can hold: shorten it$"):
        s.ask("x" * 1_000_000)
    assert time.perf_counter() - t0 < 1
    assert not s.history and not s.replies


def test_the_history_shows_a_turns_context_use_as_the_live_turn_did():
    """The live footer said "context 177 of 4,096 tokens (4%)"; `%gptoss history` (and a Reply's view) drew the same turn
    without it, so a user reading back a long conversation could not see how full it was. Both say it."""
    import io

    from gptoss_lab.widgets.text import TextView
    from gptoss_lab.widgets.transcript import Transcript

    s = _session("<|channel|>final<|message|>It is far.<|return|>")
    s.engine.context_window = 4096
    out = io.StringIO()
    reply = s.ask("How far is it?", view=TextView(out, colour=False))
    used = f"context {reply.usage.context_tokens:,} of 4,096 tokens"
    assert used in out.getvalue()
    assert used in Transcript.from_reply(reply).to_text()


@pytest.mark.parametrize("spare", [1, 4, 15])
def test_a_question_that_leaves_no_room_for_an_answer_is_refused_before_it_is_asked(spare):
    """A question 1-4 tokens short of the context was taken: its reply was empty, it joined the conversation, and the
    next question was refused, so only a reset went on. It is refused at once, saying why; with room it is answered."""
    engine = ReplayEngine("<|channel|>final<|message|>Forty-two.<|return|>" * 2)
    s = Session(engine, namespace={}, tools="none", date="2026-11-25")
    engine.context_window = 100_000
    prompt_tokens = s.ask("What is six times seven?").usage.prompt_tokens
    engine.context_window = prompt_tokens + spare
    with pytest.raises(TurnError, match=rf"^the prompt is {prompt_tokens:,} tokens \(\d+ of them the instructions and "
                                        rf"the tools' definitions: offer fewer tools or smaller types\) of the model's "
                                        rf"context of {prompt_tokens + spare:,}, leaving no room for an answer: shorten it$"):
        s.ask("What is six times seven?", new=True)
    assert len(s.replies) == 1
    engine.context_window = prompt_tokens + 16
    assert s.ask("What is six times seven?", new=True).final == "Forty-two."


def _footer(reply) -> str:
    from gptoss_lab.widgets.transcript import Transcript

    return Transcript.from_reply(reply).footer()


class _StopWhileThinking:
    """A view whose Stop is pressed at the model's first written token."""

    stop_requested = False

    def handle(self, event) -> None:
        self.stop_requested = self.stop_requested or type(event).__name__ == "Delta"

    def approve(self, call) -> bool:
        return True


@pytest.mark.parametrize("stop", [False, True], ids=["answered", "stopped"])
def test_the_context_meter_shows_what_the_next_question_starts_from(stop):
    """The meter counted the last model call's prompt and tokens: this turn's reasoning and python calls, which the
    next prompt drops, so it read fuller than the conversation was. It shows what the next question starts from."""
    thinking = " ".join(["Let me think about it once more."] * 30)
    code = "<|start|>assistant to=python<|channel|>analysis<|constrain|>code<|message|>print(6 * 7)<|call|>"
    s = _session(f"<|channel|>analysis<|message|>{thinking}<|end|>{code}<|channel|>final<|message|>42.<|return|>")
    s.engine.context_window = 4096
    reply = s.ask("What is six times seven?", view=_StopWhileThinking() if stop else None)
    kept = len(s.prompt_ids())
    assert reply.usage.context_tokens == kept
    assert f"context {kept:,} of 4,096 tokens ({kept * 100 // 4096}%)" in _footer(reply)


def test_a_tool_output_past_the_context_shows_the_meter_full_not_over_it():
    """A function's output longer than the context made the meter read "context 604 of 400 tokens (151%)". The meter
    says the context is full (the next question is refused), never more than the window."""
    def table() -> str:
        """The whole table."""
        return "row " * 400

    s = Session(ReplayEngine('<|start|>assistant to=functions.table<|channel|>commentary json<|message|>{}<|call|>'),
                namespace={"table": table}, tools=["table"], approval="auto", date="2026-11-25")
    s.engine.context_window = 400
    reply = s.ask("Show the table")
    assert reply.usage.context_tokens == 400
    assert _footer(reply).endswith(" · context full (400 tokens)")
    with pytest.raises(TurnError, match="start a new conversation"):
        s.ask("Far")


@pytest.mark.parametrize("option", [
    {"response_format": {"type": "object", "properties": {"answer": {"type": "integer"}}}},
    {"instructions": "Answer in French, in one short sentence."},
    {"tools": ["python"], "effort": "high"},
], ids=["response_format", "instructions", "tools"])
def test_the_context_meter_counts_the_next_turns_system_messages_not_this_turns_options(option):
    """A turn asked with options for itself (--json, instructions=, tools=) counted its own developer and system messages
    in the meter (tools for one cell: 176 tokens where the next question starts from 81): it counts what the next
    prompt holds."""
    s = _session("<|channel|>final<|message|>42.<|return|>", tools=[])
    s.engine.context_window = 4096
    reply = s.ask("What is six times seven?", **option)
    kept = len(s.prompt_ids())
    assert reply.usage.context_tokens == kept and f"context {kept:,} of 4,096 tokens" in _footer(reply)


def test_a_long_pasted_text_is_encoded_once_whatever_follows(monkeypatch):
    """A document pasted in a question is encoded once. A question refused as too long was encoded twice (with the
    conversation, then alone), one too long alone left the session's renderer holding only the system message (the
    next question encoded the whole conversation again: 0.44 s after 340,000 characters), and `history --export`
    encoded the whole conversation each time (0.5 s)."""
    document = "\n".join(f"{i},item{i * 7919 % 100_003},{i * 0.37:.2f}" for i in range(3_000))   # 29,265 tokens
    s = _session("<|channel|>final<|message|>A table.<|return|>" * 2)
    s.engine.context_window = 40_000
    encoded = []
    render_conversation = harmony._render_conversation
    monkeypatch.setattr(harmony, "_render_conversation", lambda messages: encoded.append(
        sum(document in harmony.text_of(m) for m in messages)) or render_conversation(messages))
    s.ask(f"{document}\n\nWhat is this?")
    with pytest.raises(TurnError, match="the conversation so far and this question are"):
        s.ask(f"And this one?\n{document}")
    with pytest.raises(TurnError, match="the prompt is .* shorten it"):
        s.ask(f"And these?\n{document}\n{document}")
    s.ask("Which row is last?")
    ids = s.prompt_ids()
    assert s.export() == harmony.decode(ids)
    assert ids == render_conversation(tuple(s.prefix() + s.history)) + [harmony.START, harmony.ASSISTANT]
    assert sum(encoded) == 3   # each question that holds the document, once
