"""A turn the token limit cuts at a message's boundary, in the text view and the saved forms: what was written, and
no label over nothing."""
from __future__ import annotations

import io

import pytest

from gptoss_lab import ReplayEngine, Session, harmony
from gptoss_lab.widgets.text import TextView
from gptoss_lab.widgets.transcript import Transcript

THOUGHT = "<|channel|>analysis<|message|>Think.<|end|>"
# a second message cut right after its <|message|>, and the label each form would show it under
CUT_AFTER_MESSAGE = [
    ("<|start|>assistant<|channel|>analysis<|message|>", "Reasoning"),
    ("<|start|>assistant<|channel|>final<|message|>", "Answer"),
    ("<|start|>assistant<|channel|>commentary<|message|>", "Commentary"),
    ("<|start|>assistant to=python<|channel|>analysis<|message|>", "Tool call"),
    ("<|start|>assistant to=functions.f<|channel|>commentary <|constrain|>json<|message|>", "Tool call"),
]


class _Both:
    """The text view, and the events it saw (from which the chat view builds the saved form)."""

    stop_requested = False

    def __init__(self) -> None:
        self.out, self.events = io.StringIO(), []
        self.text = TextView(self.out, colour=False)

    def handle(self, event) -> None:
        self.events.append(event)
        self.text.handle(event)

    def approve(self, call) -> None:
        return None


def _cut(recording: str) -> tuple[str, Transcript, Transcript]:
    """The text view's output, the live transcript and the reopened one of a turn cut at the recording's end."""
    view = _Both()
    reply = Session(ReplayEngine(recording), namespace={}, approval="auto").ask(
        "Q?", view=view, max_new_tokens=len(harmony.encode(recording)))
    return view.out.getvalue(), Transcript.from_events(view.events), Transcript.from_reply(reply)


@pytest.mark.parametrize("tail, label", CUT_AFTER_MESSAGE)
def test_a_message_cut_before_its_first_character_shows_no_label_over_nothing(tail: str, label: str) -> None:
    """The limit right after `<|message|>` printed "── Answer ──" (or Reasoning, a tool call) over nothing in the text
    view, and "Answer:" over an empty quote in the saved text, Markdown and HTML; the thought before it stays."""
    printed, live, reopened = _cut(THOUGHT + tail)
    assert printed.count("── ") == 1 and "── Reasoning" in printed and "    Think." in printed, printed
    assert "reached the token limit" in printed
    for transcript in (live, reopened):
        text, markdown, page = transcript.to_text(), transcript.to_markdown(), transcript.to_html()
        assert text.count(f"{label} ") + text.count(f"{label}:") == (label == "Reasoning"), text
        assert "Think." in text and "Think." in markdown and "Think." in page
        assert markdown.count("<summary>") == 1 and "**Answer:**" not in markdown and "Tool call" not in markdown
        assert page.count("<summary>") == 1 and "gx-final" not in page.split("</style>")[-1] and "gx-tool" not in page.split("</style>")[-1]


def test_a_call_of_no_input_still_shows_its_header_and_run_in_the_text_view() -> None:
    """A header waits for its message's first character; a tool call that has none still shows its card's header
    above all that is said of it (a note that no such tool is enabled printed above the header), in every form."""
    printed, live, _ = _cut("<|start|>assistant to=python<|channel|>analysis<|message|><|call|>"
                            "<|start|>assistant<|channel|>final<|message|>Done.<|return|>")
    assert printed.index("── Tool call python ──") < printed.index("[python: running]") < printed.index("[python: done]")
    assert "Tool call python [done]:" in live.to_text() and "gx-tool" in live.to_html()
    printed, _, _ = _cut("<|start|>assistant to=nope<|channel|>commentary<|message|><|call|>"
                         "<|start|>assistant<|channel|>final<|message|>Done.<|return|>")
    assert printed.index("── Tool call nope ──") < printed.index("which is not an enabled tool") < printed.index("[nope:")


@pytest.mark.parametrize("tail", ["<|start|>assistant", "<|start|>assistant to=python",
                                  "<|start|>assistant to=python<|channel|>analysis",
                                  "<|start|>assistant to=functions.f<|channel|>commentary <|constrain|>",
                                  "<|start|>assistant to=functions.f<|channel|>commentary <|constrain|>json",
                                  "<|start|>assistant<|channel|>final"])
def test_a_header_the_limit_cuts_is_not_called_invalid_harmony(tail: str) -> None:
    """The limit inside a message's header printed "[not valid Harmony: generation ended inside a message header]"
    over the header's raw text, and the turn's notes said the same beside the limit's: the model wrote nothing wrong.
    The turn now says only that it reached the limit, and keeps what was written."""
    printed, live, reopened = _cut(THOUGHT + tail)
    assert "not valid Harmony" not in printed.lower() and "reached the token limit" in printed and "Think." in printed
    for transcript in (live, reopened):
        for form in (transcript.to_text(), transcript.to_markdown(), transcript.to_html()):
            assert "not valid harmony" not in form.lower() and "reached the token limit" in form and "Think." in form


def test_a_call_the_limit_cuts_half_written_is_said_not_run_nor_kept() -> None:
    """A python call cut inside its code showed as "Tool call python [written]" over the half code, under a note that
    said "what was written is kept": it was neither run nor kept in the conversation. Its card now says it was cut off
    and not run, and every form's note says the turn is kept without it."""
    printed, live, reopened = _cut(THOUGHT + "<|start|>assistant to=python<|channel|>analysis<|message|>print(6 *")
    note = "what was written is kept, without the tool call it was writing"
    assert note in printed and "print(6 *" in printed
    assert "Tool call python [cut off, not run]:\n    print(6 *" in live.to_text()
    assert "** — cut off, not run" in live.to_markdown() and "python · cut off, not run" in live.to_html()
    for transcript in (live, reopened):
        for form in (transcript.to_text(), transcript.to_markdown(), transcript.to_html()):
            assert note in form and "written]" not in form and "— written" not in form


def test_a_limit_of_one_token_is_said_in_the_singular() -> None:
    """`--max-tokens 1` ended the turn with "The reply reached the token limit (1 new tokens)"."""
    printed, live, _ = _cut("<|channel|>")
    assert "reached the token limit (1 new token);" in printed and "(1 new token);" in live.to_text()
