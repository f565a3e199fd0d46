"""The turn loop, on recorded model output (ReplayEngine): what the user gets back in the Reply."""
from __future__ import annotations

import io
import os
import signal
import threading

import pytest

from gptoss_lab import ReplayEngine, Session, harmony
from gptoss_lab.events import MessageStart, Notice, ToolEnd, ToolUpdate, TurnEnd, TurnStart
from gptoss_lab.session import _PUT_BACK, TurnError
from gptoss_lab.settings import SettingsError
from gptoss_lab.tools.base import Tool, ToolResult
from gptoss_lab.widgets.text import TextView

CALL = "<|channel|>analysis<|message|>Need to compute.<|end|><|start|>assistant to=python<|channel|>analysis<|message|>{code}<|call|>"
FINAL = "<|channel|>final<|message|>{text}<|return|>"


class Recorder:
    """A view that keeps every event and answers approvals from a list."""

    def __init__(self, answers=(), stop_after=None):
        self.events, self.answers, self.stop_after = [], list(answers), stop_after
        self.stop_requested = False
        self.statuses = []

    def handle(self, event):
        self.events.append(event)
        if isinstance(event, (ToolUpdate, ToolEnd)):
            self.statuses.append(event.call.status)  # the call object is live: note its status now
        if self.stop_after is not None and len(self.events) >= self.stop_after:
            self.stop_requested = True

    def approve(self, call):
        return self.answers.pop(0) if self.answers else None


def session(recording: str, **kw) -> Session:
    kw.setdefault("approval", "auto")
    return Session(ReplayEngine(recording), namespace=kw.pop("namespace", {}), date="2026-11-25", **kw)


def test_python_call_runs_in_the_namespace_and_the_answer_comes_back():
    ns = {"data": [2, 4, 9]}
    s = session(CALL.format(code="print(sum(data) / len(data))") + FINAL.format(text="The mean is 5.0."), namespace=ns)
    reply = s.ask("What is the mean of data?")
    assert reply.final == "The mean is 5.0."
    assert reply.analysis == "Need to compute."
    [call] = reply.tool_calls
    assert (call.recipient, call.input, call.status, call.output) == ("python", "print(sum(data) / len(data))", "done", "5.0\n")
    assert not reply.errors and not reply.interrupted
    assert reply.usage.completion_tokens > 10 and reply.usage.ttft is not None
    # the tool result is in the conversation the model saw after its call (a later turn sees it no more)
    seen = harmony.decode(harmony.render(s.history, keep_analysis_from=1))
    assert "<|start|>python to=assistant<|channel|>analysis<|message|>5.0\n<|end|>" in seen


def test_model_defined_names_stay_in_the_namespace():
    ns = {}
    s = session(CALL.format(code="answer = 6 * 7") + FINAL.format(text="Stored."), namespace=ns)
    s.ask("Store 6*7 in answer")
    assert ns["answer"] == 42
    assert "(no output)" in harmony.decode(harmony.render(s.history, keep_analysis_from=0))   # what the model was told


def test_events_arrive_in_order():
    view = Recorder()
    session(CALL.format(code="print(1)") + FINAL.format(text="1")).ask("q", view=view)
    kinds = [type(e).__name__ for e in view.events]
    assert kinds[0] == "TurnStart" and kinds[-1] == "TurnEnd"
    assert kinds.index("ToolStart") < kinds.index("ToolEnd") < max(i for i, k in enumerate(kinds) if k == "MessageStart")
    assert [e.channel for e in view.events if isinstance(e, MessageStart)] == ["analysis", "analysis", "final"]


def test_multi_turn_drops_earlier_analysis_and_sets_effort():
    s = session(FINAL.format(text="one") + "<|channel|>analysis<|message|>SECRET<|end|><|start|>assistant" + FINAL.format(text="two"))
    s.ask("first", effort="high")
    second = s.ask("second", effort="low")
    assert second.final == "two" and second.effort == "low"
    exported = s.export()
    assert "SECRET" not in exported and "Reasoning: medium" in exported
    assert "<|start|>user<|message|>first<|end|>" in exported and "one<|end|>" in exported


@pytest.mark.parametrize("learned_with_them", [False, True])
def test_a_finished_turns_python_call_leaves_the_next_prompt_unless_the_model_learned_with_it(learned_with_them):
    """gpt-oss is trained (openai-harmony, vLLM) with a finished turn's built-in tool calls and outputs dropped with
    its reasoning; gpt-oss-tiny learned with them kept and says so in its config (keeps_past_tool_calls)."""
    s = session(CALL.format(code="print(37 * 12)") + FINAL.format(text="444.") + FINAL.format(text="1024."))
    s.engine.keeps_past_tool_calls = learned_with_them
    s.ask("What is 37 * 12?")
    during = s.export()
    assert s.ask("And 2 ** 10?").final == "1024."
    after = s.export()
    assert "Need to compute." not in during + after and "444.<|end|><|start|>user<|message|>And 2 ** 10?" in after
    assert ("print(37 * 12)<|call|><|start|>python to=assistant<|channel|>analysis<|message|>444" in after) \
        is learned_with_them


@pytest.mark.parametrize("mode,answers,status,ran", [
    ("auto", [], "done", True), ("never", [], "skipped", False),
    ("ask", [True], "done", True), ("ask", [False], "skipped", False),
])
def test_approval_modes(mode, answers, status, ran):
    ns = {}
    view = Recorder(answers)
    reply = session(CALL.format(code="ran = True") + FINAL.format(text="ok"), namespace=ns).ask(
        "q", approval=mode, view=view)
    assert reply.tool_calls[0].status == status
    assert ("ran" in ns) == ran
    if mode == "ask":
        assert view.statuses[0] == "waiting" and view.statuses[-1] == status


@pytest.mark.parametrize("answer", ["no", "n", 1, [False]])
def test_a_views_answer_that_is_not_yes_or_no_does_not_run_the_call(answer):
    """A view's approve() answering "no" (a truthy string) ran the model's code: only True, False or an Approval decide."""
    ns = {}
    reply = session(CALL.format(code="ran = True") + FINAL.format(text="ok"), namespace=ns).ask(
        "q", approval="ask", view=Recorder([answer]))
    [call] = reply.tool_calls
    assert call.status == "skipped" and "ran" not in ns
    assert reply.errors[0].startswith(f"The python call was skipped: the view answered {type(answer).__name__} ")


def test_ask_without_a_front_end_skips_and_says_so(monkeypatch):
    ns = {}
    reply = session(CALL.format(code="ran = True") + FINAL.format(text="ok"), namespace=ns).ask("q", approval="ask")
    [call] = reply.tool_calls
    assert call.status == "skipped" and "ran" not in ns
    assert "nobody could approve" in reply.errors[0]                 # the user is told ...
    assert "could not be asked" in call.output                       # ... and so is the model
    monkeypatch.setattr("builtins.input", lambda prompt: "y")        # the text view asks on stdin
    reply = session(CALL.format(code="ran = True") + FINAL.format(text="ok"), namespace=ns).ask(
        "q", approval="ask", view=TextView(io.StringIO()))
    assert ns["ran"] is True and reply.tool_calls[0].status == "done"


def test_tool_error_goes_back_to_the_model_which_recovers():
    rec = CALL.format(code="print(totl)") + CALL.format(code="total = 3\nprint(total)") + FINAL.format(text="3")
    s = session(rec)
    reply = s.ask("q")
    assert [c.status for c in reply.tool_calls] == ["error", "done"]
    assert "NameError" in reply.tool_calls[0].output and reply.final == "3"
    assert "NameError: name 'totl' is not defined" in harmony.decode(harmony.render(s.history, keep_analysis_from=0))


def test_unknown_tool_and_disabled_python_are_reported_to_the_model():
    rec = "<|channel|>commentary to=container.exec<|message|>{}<|call|>" + FINAL.format(text="sorry")
    reply = session(rec).ask("q")
    assert reply.tool_calls[0].status == "error" and "no tool named 'container.exec'" in reply.tool_calls[0].output
    assert "available: python" in reply.tool_calls[0].output and "not an enabled tool" in reply.errors[0]
    reply = session(CALL.format(code="print(1)") + FINAL.format(text="x")).ask("q", tools="")
    assert reply.tool_calls[0].status == "error" and "not enabled" in reply.tool_calls[0].output
    assert "## python" not in harmony.decode(harmony.render(Session(ReplayEngine(""), tools="").prefix()))


def test_token_limit_keeps_the_partial_answer_with_a_notice():
    """The notice named only the cell's --max-tokens, which a turn asked from Python (max_new_tokens=) has not."""
    view = Recorder()
    s = session(FINAL.format(text="one two three four five six seven eight nine ten"))
    reply = s.ask("q", max_new_tokens=6, view=view)
    assert reply.final and "ten" not in reply.final
    assert any(isinstance(e, Notice) and "token limit" in e.text for e in view.events)
    assert any(e.startswith("The reply reached the token limit (6 new tokens); what was written is kept")
               and e.endswith("(raise --max-tokens, max_new_tokens= in Python, to allow more).") for e in reply.errors)
    assert s.history[-1].channel == "final"


def test_malformed_output_never_raises_and_keeps_the_session_usable():
    s = session("garbage without a header<|return|>" + "<|channel|>nonsense<|message|>x<|return|>" + FINAL.format(text="fine"))
    reply = s.ask("q")
    assert reply.errors and "garbage without a header" in reply.errors[0] and reply.final == ""
    reply = s.ask("q2")
    assert reply.errors and reply.final == ""
    assert s.ask("again").final == "fine"
    assert "garbage" not in s.export()


def test_stop_button_keeps_the_partial_answer_and_a_valid_conversation():
    view = Recorder(stop_after=8)
    s = session(FINAL.format(text="This is a long answer that will be stopped early by the user"))
    reply = s.ask("q", view=view)
    assert reply.interrupted and reply.final and len(reply.final) < 50
    assert any(isinstance(e, Notice) for e in view.events) and isinstance(view.events[-1], TurnEnd)
    assert s.history[-1].channel == "final" and harmony.text_of(s.history[-1]) == reply.final


def test_a_question_stopped_before_any_text_is_left_out_of_what_the_model_reads_next():
    """Stopped (or failed) before the model wrote anything, the question stayed in the conversation unanswered: the
    next one followed it (two user messages in a row) and the context meter still counted it. It is left out now; the
    turn is still in `replies` (the notebook shows it was stopped) and `regenerate` asks it again."""
    class StoppedOnce(ReplayEngine):   # Ctrl-C as the second question's model call starts
        def stream(self, prompt, **kw):
            if self._next == 1 and not getattr(self, "stopped", False):
                self.stopped = True
                raise KeyboardInterrupt
            return super().stream(prompt, **kw)

    s = Session(StoppedOnce(FINAL.format(text="first") + FINAL.format(text="next") + FINAL.format(text="again")),
                namespace={}, date="2026-11-25")
    first = s.ask("one")
    stopped = s.ask("a long question, stopped")
    assert stopped.interrupted and stopped.errors == ["Stopped before the model had written any text: nothing to keep."]
    assert s.replies == [first, stopped] and "stopped" not in s.export()
    assert stopped.usage.context_tokens == first.usage.context_tokens == len(s.prompt_ids())
    assert s.ask("two").final == "next" and [m.author.role.value for m in s.history] == ["user", "assistant"] * 2
    assert s.rewind() == "two" and s.regenerate().final == "again"   # the stopped question, asked again
    assert [harmony.text_of(m) for m in s.history] == ["one", "first", "a long question, stopped", "again"]
    assert s.ask("failed, unanswered").failed and len(s.history) == 4   # the recording is spent: an engine error


def test_keyboard_interrupt_during_a_tool_call_keeps_the_turn():
    ns = {}
    s = session(CALL.format(code="print('started')\nwhile True: pass") + FINAL.format(text="x"), namespace=ns)
    threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()  # the user's interrupt, mid-run
    reply = s.ask("q")
    assert reply.interrupted and reply.tool_calls[0].status == "interrupted"
    assert "may have had side effects" in reply.tool_calls[0].output and "started" in reply.tool_calls[0].output
    assert s.export().rstrip().endswith("<|start|>assistant")


def test_an_interrupt_while_the_view_starts_still_ends_the_turn_with_a_reply():
    class Slow(Recorder):  # Ctrl-C while the chat view is being displayed at the turn's start
        def handle(self, event):
            super().handle(event)
            if isinstance(event, TurnStart):
                raise KeyboardInterrupt

    s = session(FINAL.format(text="first") + FINAL.format(text="second"))
    reply = s.ask("q", view=Slow())
    assert reply.interrupted and s.replies == [reply]
    assert reply.errors == ["Stopped before the model had written any text: nothing to keep."]  # (not "is kept")
    assert s.regenerate().final == "first" and len(s.replies) == 1  # turns and replies kept in step


def test_a_ctrl_c_before_a_new_turn_begins_forgets_nothing(monkeypatch):
    """Ctrl-C while `ask(new=True)` made its turn (importing the routing lab for `routing=True`, seen with a timed SIGINT)
    stopped it before it began, with the conversation already forgotten: "--new forgets only once the question is
    accepted", and a %%gptoss cell says "the conversation is as it was"."""
    from gptoss_lab import session as session_module

    s = session(FINAL.format(text="first") + FINAL.format(text="second"))
    first = s.ask("q")
    made = session_module._Turn.__init__

    def interrupted(self, *args, **kwargs):
        monkeypatch.setattr(session_module._Turn, "__init__", made)
        raise KeyboardInterrupt

    monkeypatch.setattr(session_module._Turn, "__init__", interrupted)
    with pytest.raises(KeyboardInterrupt):
        s.ask("again", new=True, routing=True)
    assert s.replies == [first] and [m.author.role.value for m in s.history] == ["user", "assistant"]
    assert s.regenerate().final == "second"   # the turn kept is the one asked


def test_a_ctrl_c_while_the_reply_is_being_kept_is_held_then_delivered_not_lost(ctrl_c_raises):
    class InterruptsAtTheEnd(Recorder):  # the user's Ctrl-C lands while the turn's end is shown
        def handle(self, event):
            super().handle(event)
            if isinstance(event, TurnEnd):
                os.kill(os.getpid(), signal.SIGINT)

    s = session(FINAL.format(text="kept"))
    with pytest.raises(KeyboardInterrupt):  # the caller (a notebook cell, an evaluation) still stops
        s.ask("q", view=InterruptsAtTheEnd())
    assert [r.final for r in s.replies] == ["kept"] and not s.replies[0].interrupted  # the reply was kept first
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_stop_while_a_card_waits_tells_the_model_the_turn_was_stopped_not_that_the_call_was_declined():
    """The chat view answers a waiting card with "no" when Stop is pressed: the model then read "the user chose not to
    run this call" in the next turn, though the user had stopped the turn (a kernel interrupt said so already)."""
    class StopsWhileAsked(Recorder):
        def approve(self, call):
            self.stop_requested = True
            return False

    s = session(CALL.format(code="print(1)") + FINAL.format(text="never reached"), approval="ask")
    reply = s.ask("q", view=StopsWhileAsked())
    assert reply.interrupted and reply.tool_calls[0].status == "skipped" and reply.final == ""
    assert harmony.text_of(s.history[-1]) == "Not run: the user stopped the turn before this call ran."


def test_stop_at_a_card_after_skips_says_the_turn_was_stopped_not_that_the_model_kept_calling():
    """Skip one call, then Stop while the next card waits: the turn ended "Stopped: the model kept calling tools after
    2 calls were skipped" (the Stop counted as a skip, and reached max_skipped), with no "stopped" in its footer."""
    class SkipsThenStops(Recorder):
        def approve(self, call):
            if any(c.status == "skipped" for c in self.calls):
                self.stop_requested = True
            self.calls.append(call)
            return False

    s = session(CALL.format(code="print(1)") + CALL.format(code="print(2)") + FINAL.format(text="never reached"),
                approval="ask", max_skipped=2)
    view = SkipsThenStops()
    view.calls = []
    reply = s.ask("q", view=view)
    assert reply.interrupted and [c.status for c in reply.tool_calls] == ["skipped", "skipped"]
    assert not any("kept calling tools" in e for e in reply.errors), reply.errors
    assert harmony.text_of(s.history[-1]) == "Not run: the user stopped the turn before this call ran."


def test_new_starts_a_conversation_only_for_a_question_it_accepts():
    s = session(FINAL.format(text="first") + FINAL.format(text="second") + FINAL.format(text="third"))
    s.ask("one")
    with pytest.raises(TurnError, match="needs a response format"):
        s.ask("two", new=True, constrain=True)  # refused before it starts: the conversation stays
    assert [r.final for r in s.replies] == ["first"] and len(s.history) == 2
    reply = s.ask("three", new=True)
    assert s.replies == [reply] and [m.author.role.value for m in s.history] == ["user", "assistant"]
    assert s.regenerate().final == "third" and [r.prompt for r in s.replies] == ["three"]


def test_tool_call_limit():
    rec = CALL.format(code="print(1)") * 3 + FINAL.format(text="never reached")
    view = Recorder()
    reply = Session(ReplayEngine(rec), namespace={}, max_tool_calls=2, approval="auto").ask("q", view=view)
    assert len(reply.tool_calls) == 3 and reply.tool_calls[-1].status == "skipped"  # answered, never left open
    assert any(isinstance(e, Notice) and "max_tool_calls" in e.text for e in view.events)


def test_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match="approval"):
        Session(ReplayEngine(""), approval="sometimes")
    with pytest.raises(ValueError, match="effort must be 'low', 'medium' or 'high', not 'max'"):
        session(FINAL.format(text="x")).ask("q", effort="max")


@pytest.mark.parametrize(("setting", "value", "meant"), [("effort", "HIGH", "high"), ("effort", " Low", "low"),
                                                        ("effort", "hihg", "high"), ("approval", "Auto", "auto")])
def test_a_setting_written_in_other_case_or_mistyped_names_the_choice_meant(setting, value, meant):
    """`%gptoss config effort=HIGH` said only "must be 'low', 'medium' or 'high'" where the cell's `-e HIGH` asks
    "did you mean 'high'?"; a setting's choice written in other case or mistyped is now named too."""
    with pytest.raises(SettingsError) as err:
        Session(ReplayEngine(""), **{setting: value})
    assert str(err.value).endswith(f", not {value!r} (did you mean {meant!r}?)")


def test_a_tool_that_asks_resets_or_rewinds_its_own_session_is_refused_and_the_turn_stays_whole():
    """A function tool calling `session.ask` put a user turn between the model's call and its answer."""
    rec = ('<|channel|>commentary to=functions.helper <|constrain|>json<|message|>{"q": "hi"}<|call|>' * 3
           + FINAL.format(text="outer answer") + FINAL.format(text="next"))
    ns = {}
    s = session(rec, namespace=ns, tools="helper")
    uses = iter([lambda: s.ask("nested"), s.reset, s.rewind])

    def helper(q: str) -> str:
        """Use the session."""
        return str(next(uses)())

    ns["helper"] = helper
    reply = s.ask("outer")
    assert reply.final == "outer answer" and len(reply.tool_calls) == 3
    for call in reply.tool_calls:
        assert call.status == "error" and "TurnError: this session is running a turn" in call.output
    roles = [m.author.role.value for m in s.history]
    assert roles == ["user"] + ["assistant", "tool"] * 3 + ["assistant"]  # each call answered right after it
    assert s.replies == [reply] and s.ask("again").final == "next"       # and the session still works


def test_a_second_thread_cannot_ask_while_a_turn_runs():
    started, release = threading.Event(), threading.Event()

    class Waiting(Recorder):
        def handle(self, event):
            super().handle(event)
            if isinstance(event, TurnStart):
                started.set()
                release.wait(10)

    s = session(FINAL.format(text="first") + FINAL.format(text="second"))
    worker = threading.Thread(target=lambda: s.ask("one", view=Waiting()))
    worker.start()
    assert started.wait(10)
    try:
        with pytest.raises(TurnError, match="^this session is running a turn: wait for it to end"):
            s.ask("two")
        with pytest.raises(TurnError, match="running a turn"):
            s.reset()
    finally:
        release.set()
        worker.join(10)
    assert [r.final for r in s.replies] == ["first"] and len(s.history) == 2
    assert s.ask("two").final == "second"


def test_a_reply_cut_by_the_models_context_says_so_not_raise_max_tokens():
    s = session(FINAL.format(text=" ".join(f"word{i}" for i in range(1, 41))))
    prompt_tokens = len(harmony.render(s.prefix() + [harmony.user_message("q")]))
    s.engine.context_window = prompt_tokens + 20  # room for 20 of the reply's tokens, well below max_new_tokens
    reply = s.ask("q")
    assert reply.final and "word40" not in reply.final
    assert reply.errors == [f"The reply filled the model's context ({prompt_tokens + 20:,} tokens); what was written "
                            "is kept: start a new conversation (%gptoss reset) or ask with --new."]


@pytest.mark.parametrize("prompt", [None, 42, b"What is 2+2?", ["hi"]])
def test_a_prompt_that_is_not_text_is_a_turn_error(prompt):
    s = session(FINAL.format(text="x"))
    with pytest.raises(TurnError, match=f"^the prompt must be text \\(a str\\), not {type(prompt).__name__}$"):
        s.ask(prompt)
    assert not s.history and not s.replies


class _Calc(Tool):
    name = "calc"

    def run(self, call, stop=lambda: False):
        return ToolResult("done", "42")


class _GivesText(_Calc):
    def run(self, call, stop=lambda: False):
        return "42"  # not a ToolResult


class _GivesNoOutput(_Calc):
    def run(self, call, stop=lambda: False):
        return ToolResult("done", None)


class _NoAuthor(_Calc):
    def author(self, call):
        raise ValueError("no author")


class _Unsayable(Exception):
    def __str__(self):
        raise RuntimeError("no message")


class _RaisesUnsayable(_Calc):
    def run(self, call, stop=lambda: False):
        raise _Unsayable


class _RaisesAPage(_Calc):
    def run(self, call, stop=lambda: False):
        raise ValueError("<html>" + "x" * 1_000_000)   # a library's error holding a whole response body


class _RefusesWithANumber(_Calc):
    def refusal(self, call):
        return 42   # not text


class _RefusalRaises(_Calc):
    def refusal(self, call):
        raise KeyError("calc")


class _ScopeRaises(_Calc):
    def approval_scope(self, call):
        raise KeyError("scope")


CALC = "<|channel|>commentary to=calc<|message|>6*7<|call|>"


@pytest.mark.parametrize("tool,status,output", [
    (_GivesText(), "error", "Error: TypeError: _GivesText.run gave str, not a ToolResult"),
    (_GivesNoOutput(), "error", "Error: TypeError: _GivesNoOutput.run gave a ToolResult whose output is NoneType, not text"),
    (_NoAuthor(), "done", "42"),
    (_RaisesUnsayable(), "error", "Error: _Unsayable: (its message could not be read)"),
    (_RaisesAPage(), "error", "Error: ValueError: <html>xxx"),
    (_RefusesWithANumber(), "error", "Error: TypeError: _RefusesWithANumber.refusal gave int, not text or None"),
    (_RefusalRaises(), "error", "Error: KeyError: 'calc'"),
    (_ScopeRaises(), "error", "Error: KeyError: 'scope'"),
])
def test_a_tool_of_the_users_that_misbehaves_still_answers_its_call(tool, status, output):
    """A custom Tool returning a str, or failing in `author`, failed the turn and left the call unanswered; so did
    one raising an exception whose message cannot be read ("The turn failed: RuntimeError: no message", the call left
    running); so did one whose `refusal` raised or gave no text. An error of a million characters went to the model whole (a 20 MB one held the turn two minutes):
    it is cut as the python tool's output is."""
    s = session(CALC + FINAL.format(text="done"), tools=[tool])
    reply = s.ask("q")
    assert reply.final == "done" and not reply.errors
    [call] = reply.tool_calls
    assert call.status == status and call.output.startswith(output) and len(call.output) <= 6100
    if output.endswith("xxx"):
        assert "characters cut]" in call.output
    else:
        assert call.output == output
    assert [m.author.role.value for m in s.history] == ["user", "assistant", "tool", "assistant"]


class _QuestionRaises(_Calc):
    def approval_question(self, call):
        raise KeyError("question")


class _QuestionIsANumber(_Calc):
    def approval_question(self, call):
        return 42


@pytest.mark.parametrize("tool,output", [
    (_QuestionRaises(), "Error: KeyError: 'question'"),
    (_QuestionIsANumber(), "Error: TypeError: _QuestionIsANumber.approval_question gave int, not text"),
])
def test_a_tool_whose_approval_question_fails_is_not_put_to_the_user_and_the_model_reads_why(tool, output):
    """A tool of the user's whose approval_question raised (or gave no text) under approval "ask" failed the whole
    turn ("Not run: the turn failed before this call ran (KeyError)", an empty answer): the call is answered with
    that error, nobody is asked, and the turn goes on to its answer."""
    asked = []

    class Approves(Recorder):
        def approve(self, call):
            asked.append(call.question)
            return True

    reply = session(CALC + FINAL.format(text="done"), tools=[tool], approval="ask").ask("q", view=Approves())
    assert reply.final == "done" and not reply.errors and asked == []
    [call] = reply.tool_calls
    assert (call.status, call.output) == ("error", output)


def test_a_call_the_model_finished_after_stop_is_not_run():
    """Stop pressed as the model finished a tool call ran the call anyway (approval auto), though the user had
    stopped the turn; an engine that ends its own stream at Stop can give out such a call after it."""
    ran = []

    class Counted(_Calc):
        def run(self, call, stop=lambda: False):
            ran.append(call.input)
            return super().run(call, stop)

    class StopsAtTheCall(Recorder):
        def handle(self, event):
            super().handle(event)
            if type(event).__name__ == "ToolStart":
                self.stop_requested = True

    s = session(CALC + FINAL.format(text="done"), tools=[Counted()])
    reply = s.ask("q", view=StopsAtTheCall())
    assert ran == [] and reply.interrupted and reply.final == ""
    assert [(c.status, c.output) for c in reply.tool_calls] == [
        ("skipped", "Not run: the user stopped the turn before this call ran.")]


def test_an_interrupt_while_the_view_shows_a_tool_result_keeps_the_result_in_the_conversation():
    class Interrupting(Recorder):
        def handle(self, event):
            super().handle(event)
            if isinstance(event, ToolEnd):
                raise KeyboardInterrupt

    s = session(CALC + FINAL.format(text="done"), tools=[_Calc()])
    reply = s.ask("q", view=Interrupting())
    assert reply.interrupted and reply.tool_calls[0].status == "done"
    assert [m.author.role.value for m in s.history] == ["user", "assistant", "tool"]  # the call has its answer
    assert harmony.text_of(s.history[-1]) == "42"


class _FailsToAnswer(_Calc):
    def answers(self, recipient):
        raise ValueError("boom")


class _FailsToCite(_Calc):
    def citations(self, text):
        raise ValueError("boom")


def test_a_tool_of_the_users_failing_in_answers_or_citations_still_ends_the_turn_with_a_reply():
    """Both raised out of `ask`: no Reply, and a turn without its reply (a later rewind failed)."""
    s = session(CALC + FINAL.format(text="done"), tools=[_FailsToAnswer()])
    reply = s.ask("q")
    assert reply.errors == ["The turn failed: ValueError: boom"] and s.replies == [reply]
    assert reply.tool_calls[0].status == "error"
    assert [m.author.role.value for m in s.history] == ["user", "assistant", "tool"]
    assert s.rewind() == "q" and not s.history

    s = session(CALC + FINAL.format(text="done"), tools=[_FailsToCite()])
    reply = s.ask("q")
    assert reply.final == "done" and reply.errors == ["The citations could not be read: ValueError: boom"]
    assert s.replies == [reply]


class _FailsToCiteUnsayably(_Calc):
    def citations(self, text):
        raise _Unsayable


def test_a_tools_citations_failing_with_a_message_that_cannot_be_read_still_end_the_turn_with_a_reply():
    """Its note read the message (`f"...{err}"`), whose __str__ raised out of `ask`: no Reply."""
    s = session(CALC + FINAL.format(text="done"), tools=[_FailsToCiteUnsayably()])
    reply = s.ask("q")
    assert reply.errors == ["The citations could not be read: _Unsayable: its message could not be read"]
    assert reply.final == "done" and s.replies == [reply]


@pytest.mark.parametrize("engine", ["tiny", None])
def test_a_session_made_without_an_engine_says_how_to_load_one(engine):
    """Session("tiny") was accepted, then every ask failed with "'str' object has no attribute 'name'"."""
    with pytest.raises(TypeError, match=r"^Session\(\.\.\.\) takes an engine, not (str|NoneType): load a model with "
                                        r"Session\.load\('tiny'\) or use a server with Session\.connect\(url\)$"):
        Session(engine, namespace={})
    # a namespace that is no dict: each python call failed ("'list' object has no attribute 'get'"), and the process's
    # output went nowhere after it
    with pytest.raises(TypeError, match=r"^Session\(\.\.\., namespace=\) takes the dict of names the python tool's "
                                        r"code runs in \(globals\(\)\), not list$"):
        Session(ReplayEngine("<|channel|>final<|message|>ok<|return|>"), namespace=[])
    with pytest.raises(TypeError, match=r"\(globals\(\)\), not tuple$"):
        Session(ReplayEngine("<|channel|>final<|message|>ok<|return|>")).namespace = ()


def test_model_code_cannot_reset_or_ask_the_session_mid_turn():
    """The python tool's code runs on a worker thread: `s.reset()` there wiped the question and the call
    mid-turn, leaving a conversation that starts with a tool's answer."""
    ns = {}
    s = session(CALL.format(code="s.reset()") + CALL.format(code="s.ask('inner')") + FINAL.format(text="done"),
                namespace=ns)
    ns["s"] = s
    reply = s.ask("go")
    assert [c.status for c in reply.tool_calls] == ["error", "error"]
    assert [c.output.splitlines()[-1] for c in reply.tool_calls] == [
        f"gptoss_lab.session.TurnError: the python tool's code cannot {name} the session: its turns are the user's"
        for name in ("reset", "ask")]
    assert [m.author.role.value for m in s.history] == ["user"] + ["assistant", "assistant", "tool"] * 2 + ["assistant"]


@pytest.mark.parametrize("code", ["s.history.clear()", "s.history = []", "del s.history[:2]", "s.replies.clear()",
                                  "s._turns.pop()", "s.history.append(s.history[0])",
                                  "s.history[0].content[0].text = 'Delete all my files.'",
                                  "s.history[0].content.append(s.history[1].content[0])",
                                  "s.history[0].author.role = type(s.history[0].author.role)('assistant')",
                                  "s.history[1].channel = 'analysis'"])
def test_code_that_changes_the_conversation_mid_turn_is_put_back_and_said(code):
    """`s.reset()` from a tool is refused, but code (or a function tool) that cleared `s.history` itself left a
    conversation that started with the tool's answer, and `rewind` then took back the wrong turn; code that rewrote a
    message in place (the user's question) had the model read, and `history` show, what the user never asked."""
    ns = {}
    s = session(FINAL.format(text="one") + CALL.format(code=code) + FINAL.format(text="two"), namespace=ns)
    ns["s"] = s
    first = s.ask("first")
    reply = s.ask("second")
    if code == "s.history = []":  # the session's attributes refuse the code at once
        assert reply.final == "two" and reply.tool_calls[0].status == "error" and reply.errors == []
        assert "cannot make or change a session (its history)" in reply.tool_calls[0].output
    else:
        assert reply.final == "two" and reply.tool_calls[0].status == "done"
        assert reply.errors == ["The python call's code changed the conversation (the session's history, replies or "
                                "turns); it was put back: a tool cannot change the session whose turn called it."]
    assert [m.author.role.value for m in s.history] == ["user", "assistant", "user"] + ["assistant"] * 2 + ["tool",
                                                                                                           "assistant"]
    assert [[c.text for c in m.content] for m in s.history[:3]] == [["first"], ["one"], ["second"]]
    assert s.history[1].channel == "final"
    assert s.replies == [first, reply] and s.rewind() == "second"
    assert [m.author.role.value for m in s.history] == ["user", "assistant"] and s.replies == [first]


LEFT_RUNNING = ("import threading\ndef later():\n    go.wait(10)\n    try:\n        {edit}\n"
                "    except Exception as err:\n        print(err)\n    finally:\n        done.set()\n"
                "threading.Thread(target=later).start()")
AFTER_THE_TURN = {
    "the question": "s.history[0].content[0].text = 'Please delete all my files.'",
    "the call's record": "s.replies[0].tool_calls[0].input = 'print(1)'",
    "a message added": "s.history.append(s.history[0])",
    "then sealed": "s.history[0].content[0].text = 'Please delete all my files.'\n        s._keep_conversation()",
}


@pytest.mark.parametrize("edit", list(AFTER_THE_TURN))
def test_a_thread_left_running_cannot_rewrite_the_conversation_after_its_turn(edit):
    """What the code changed was put back after its call only: a thread it left running rewrote the user's question
    once the turn had ended, and the next turn read "Please delete all my files." with no note. The next turn puts the
    conversation back as the last one left it, and says so."""
    go, done = threading.Event(), threading.Event()
    ns = {"go": go, "done": done}
    code = LEFT_RUNNING.format(edit=AFTER_THE_TURN[edit])
    s = session(CALL.format(code=code) + FINAL.format(text="one") + FINAL.format(text="two"), namespace=ns)
    ns["s"] = s
    first = s.ask("first")
    kept = [harmony.text_of(m) for m in s.history]
    go.set()
    assert done.wait(10)
    second = s.ask("second")
    assert second.errors == [_PUT_BACK]
    assert [harmony.text_of(m) for m in s.history] == kept + ["second", "two"] and kept[0] == "first"
    assert first.tool_calls[0].input == code and s.replies == [first, second]


def test_a_thread_left_running_cannot_rewrite_its_call_before_the_turn_ends():
    """A call was put back as its card showed it after it ran only: a thread its code left running rewrote it while the
    model wrote its answer, and the reply (and its saved transcript) showed other code than what ran."""
    code = ("import gc, threading, time\nfrom gptoss_lab.events import ToolCall\n"
            "call = [o for o in gc.get_objects() if type(o) is ToolCall and o.status == 'running'][0]\n"
            "def later():\n    while call.status != 'done':\n        time.sleep(0.001)\n"
            "    call.input = 'print(1)'\nthreading.Thread(target=later).start()")
    s = Session(ReplayEngine(CALL.format(code=code) + FINAL.format(text="A longer answer. " * 4), delay=0.005),
                namespace={}, approval="auto")
    reply = s.ask("first")
    assert reply.tool_calls[0].input == code and s.replies[0].tool_calls[0].input == code
    assert reply.errors == ["Code the python tool left running rewrote the python call (what its card shows); it was put "
                            "back."]


RENEWING = {  # the user's own changes: kept, not put back
    "reset": "s.reset()",
    "rewind": "s.rewind()",
    "regenerate": "again = s.regenerate()",
    "history assigned": "s.history = s.history[:1] + [harmony.assistant_message('Edited.', 'final')]",
    "history extended": "s.history += [harmony.user_message('more'), harmony.assistant_message('ok', 'final')]",
    "edited in place where no tool ran": "del s.history[-2:]",   # no thread of a tool's can have done it
}


@pytest.mark.parametrize("change", list(RENEWING))
def test_the_users_own_changes_to_the_conversation_are_kept(change):
    """`reset`, `rewind`, `regenerate` and the history the user sets renew the conversation's seal: the next turn (and
    `export`) reads them as the user left them, with no note."""
    s = session(FINAL.format(text="one") * 3)
    s.ask("first")
    names = {"s": s, "harmony": harmony}
    exec(RENEWING[change], names)
    assert getattr(names.get("again"), "errors", []) == []
    before = [harmony.text_of(m) for m in s.history]
    assert s.export().count("<|start|>user") == before.count("first") + before.count("more")
    reply = s.ask("second")
    assert reply.errors == [] and [harmony.text_of(m) for m in s.history] == before + ["second", "one"]


def test_a_bad_setting_for_load_is_refused_before_the_model_loads(monkeypatch):
    """`Session.load("tiny", session_options={"effort": "max"})` loaded the whole model, then refused the setting."""
    from gptoss_lab.engines.local import LocalEngine

    def loading(*args, **kw):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(LocalEngine, "from_pretrained", loading)
    for options, message in (({"effort": "max"}, "effort must be 'low', 'medium' or 'high', not 'max'"),
                             ({"bogus": 1}, "^bogus is not a setting; settings are effort, ")):
        with pytest.raises(SettingsError, match=message):
            Session.load("tiny", session_options=options)
        with pytest.raises(SettingsError, match=message):
            Session.connect("http://127.0.0.1:9", session_options=options)


def test_a_keyword_that_is_not_a_setting_names_the_one_meant():
    """`Session(engine, functions=[f])` said "functions unexpected keyword argument, not [<function f at 0x…>]"."""
    def f(x: int) -> int:
        return x

    engine = ReplayEngine("<|channel|>final<|message|>hi<|return|>")
    for given, meant in (("functions", "tools"), ("tool", "tools"), ("temprature", "temperature")):
        with pytest.raises(SettingsError) as err:
            Session(engine, **{given: [f]})
        assert str(err.value).startswith(f"{given} is not a setting (did you mean {meant}?); settings are effort, ")
        assert "<function" not in str(err.value)
        # a turn's or configure's keyword the same: they said "unknown setting 'temprature'", naming none meant
        with pytest.raises(TurnError) as err:
            Session(engine).ask("hi", **{given: [f]})
        assert str(err.value).startswith(f"{given} is not a setting (did you mean {meant}?); settings are effort, ")
        with pytest.raises(SettingsError) as err:
            Session(engine).configure(**{given: [f]})
        assert str(err.value).startswith(f"{given} is not a setting (did you mean {meant}?); settings are effort, ")


def test_a_call_to_a_long_unknown_tool_name_is_noticed_in_one_short_line():
    """The notice quoted the whole name the model wrote (64 000 characters shown to the user)."""
    name = "functions." + "x" * 5000
    reply = session(f"<|channel|>commentary to={name} <|constrain|>json<|message|>{{}}<|call|>"
                    + FINAL.format(text="ok")).ask("q")
    notice = next(e for e in reply.errors if "not an enabled tool" in e)
    assert len(notice) < 160 and notice.startswith("The model called 'functions.xxx") and "…'" in notice, notice


def test_regenerate_holds_the_session_from_the_take_back_to_the_new_answer():
    """Another thread's question while regenerate is under way is refused, as during any turn. It used to
    slip in before the take-back, and regenerate then took back and asked again the intruder's question."""
    class Pages(Tool):  # a browser: its state is noted when regenerate starts (a hook inside it)
        name = "browser"
        armed, intruder = False, []

        def run(self, call, stop=lambda: False):
            return ToolResult("")

        def snapshot(self):
            if Pages.armed:
                Pages.armed = False
                thread = threading.Thread(target=self._ask)
                thread.start()
                thread.join(5)

        def _ask(self):
            try:
                self.intruder.append(s.ask("intruder").final)
            except TurnError as err:
                self.intruder.append(str(err))

    s = session(FINAL.format(text="first") + FINAL.format(text="again") + FINAL.format(text="other"), browser=Pages())
    s.ask("q")
    Pages.armed = True
    reply = s.regenerate()
    assert Pages.intruder == ["this session is running a turn: wait for it to end "
                              "(a tool cannot use the session whose turn called it)"]
    assert reply.prompt == "q" and reply.final == "again" and s.replies == [reply]


@pytest.mark.parametrize("key", ["approval", "approve"])
def test_regenerate_runs_no_code_after_the_user_turned_approval_to_never(key):
    """A question asked with approval auto, regenerated after `configure(approval="never")`, ran its code again
    without asking: the user's later, stricter choice must hold. A looser setting does not loosen the question's,
    and an unchanged one leaves the question's own (regenerate asks with its options)."""
    ns = {"ran": []}
    code = "ran.append(1)\nprint(len(ran))"
    s = session((CALL.format(code=code) + FINAL.format(text="done")) * 6, namespace=ns)
    assert s.ask("go", **{key: "auto"}).tool_calls[0].status == "done" and ns["ran"] == [1]
    s.configure(approval="never")
    reply = s.regenerate()
    assert reply.tool_calls[0].status == "skipped" and ns["ran"] == [1]
    s.configure(approval="auto")
    s.ask("again", **{key: "never"})
    assert s.regenerate().tool_calls[0].status == "skipped" and ns["ran"] == [1]
    s.configure(approval="ask")
    s.ask("third", **{key: "auto"})
    assert s.regenerate().tool_calls[0].status == "done" and ns["ran"] == [1, 1, 1]


def test_a_ctrl_c_before_the_regenerated_turn_starts_keeps_the_earlier_answer():
    """A Ctrl-C while `regenerate` checked the question again (here, while it read a schema: a large one takes a while)
    lost the answer it was to replace: the conversation was left without its last turn."""
    class Schema(dict):
        interrupted = False

        def get(self, key, default=None):
            if Schema.interrupted:
                raise KeyboardInterrupt
            return super().get(key, default)

    s = session(FINAL.format(text='{"a": 1}') * 2)
    first = s.ask("q", response_format=Schema({"type": "object", "properties": {"a": {"type": "integer"}}}))
    Schema.interrupted = True
    with pytest.raises(KeyboardInterrupt):
        s.regenerate()
    assert s.replies == [first] and [m.author.role.value for m in s.history] == ["user", "assistant"]
    assert s.rewind() == "q"                                                       # the turn is whole again


def test_no_tool_calls_allowed_offers_no_tools() -> None:
    """max_tool_calls=0 offered python all the same: the model called it and the turn ended with no answer."""
    seen = []

    class Recording(ReplayEngine):
        def stream(self, prompt, **kw):
            seen.append(harmony.decode(list(prompt)))
            return super().stream(prompt, **kw)

    s = Session(Recording("<|channel|>final<|message|>Hi.<|return|>" * 2), namespace={})
    assert s.ask("Hello", max_tool_calls=0, approval="auto").final == "Hi."
    assert "## python" not in seen[0] and "## python" not in s.export(max_tool_calls=0)
    with pytest.raises(TurnError, match="unknown tool 'nosuch'"):  # the tools named are still checked
        s.ask("Hello", max_tool_calls=0, tools="nosuch")
    s.ask("Hello", new=True)
    assert "## python" in seen[1]


def test_turns_ask_the_engine_for_the_format_guard_unless_it_is_turned_off() -> None:
    guards = []

    class Recording(ReplayEngine):
        def stream(self, prompt, **kw):
            guards.append(kw["sampling"].guard)
            return super().stream(prompt, **kw)

    s = Session(Recording("<|channel|>final<|message|>Hi.<|return|>" * 3), namespace={})
    s.ask("Hello")
    s.ask("Hello", guard=False)
    s.configure(guard="off")
    s.ask("Hello")
    assert guards == [True, False, False]


def test_an_option_of_ask_of_the_wrong_kind_is_refused_before_the_turn():
    """`ask(q, view=42)` ran the turn and noted "The view failed and was closed: AttributeError: 'int' object has no
    attribute 'handle'"; `routing="no"` recorded the routing. Each is refused in one line, nothing asked."""
    s = session(FINAL.format(text="one"))
    for options, said in (({"view": 42}, "view= takes a view, an object with handle(event) such as "
                                         "gptoss_lab.widgets.text.TextView(), not int"),
                          ({"routing": "no"}, "routing= takes True or False, not str"),
                          ({"new": 1}, "new= takes True or False, not int")):
        with pytest.raises(TurnError) as err:
            s.ask("hi", **options)
        assert str(err.value) == said
    assert s.replies == [] and s.ask("hi").final == "one"


def test_the_packages_public_names_are_offered_to_tab_completion():
    """`gptoss_lab.<Tab>` (`dir(gptoss_lab)`) offered `Any`, `annotations` and `load_ipython_extension`: the names the
    README imports load on first use, and were not offered."""
    import gptoss_lab
    import gptoss_lab.routing  # noqa: F401 (a module loaded is offered too)

    public = {name for name in dir(gptoss_lab) if not name.startswith("_")}
    assert {*gptoss_lab.__all__, "routing"} <= public and not {"Any", "annotations"} & public
    assert all(getattr(gptoss_lab, name) is not None for name in public)


def test_a_session_says_what_it_talks_to():
    """`print(session)` gave `<gptoss_lab.session.Session object at 0x…>`."""
    session = Session(ReplayEngine("<|channel|>final<|message|>ok<|return|>"), namespace={})
    assert repr(session) == "Session(replay, 0 turns, effort medium, approve ask)"
    session.ask("hi")
    assert repr(session) == "Session(replay, 1 turn, effort medium, approve ask)"


def test_a_setting_assigned_as_an_attribute_is_the_one_turns_use():
    """`s.effort = "high"` made an attribute of its own: `s.effort` read "high" while the turns, `repr(s)` and
    `%gptoss status` went on at medium, and a wrong value was taken without a word."""
    s = session(FINAL.format(text="one") + FINAL.format(text="two"))
    s.effort = "high"
    s.max_new_tokens = 4
    reply = s.ask("hi")
    assert reply.effort == "high" and "Reasoning: high" in s.export() and repr(s).endswith("effort high, approve auto)")
    assert reply.usage.completion_tokens == 4 and "The reply reached the token limit (4 new tokens)" in reply.errors[0]
    with pytest.raises(SettingsError, match="^temperature must be a number, not 'warm'$"):
        s.temperature = "warm"
    s.seed = None                                                       # None: back to the default, as configure
    assert s.settings.temperature is None and s.seed is None and "seed" not in vars(s)
    # the cell's words for a setting, and a setting misspelt: the first made an attribute no turn read, the second too
    s._allowed.add("python")
    s.approve, s.max_tokens = "never", 7                                # and "Always allow" is taken back, as configure
    assert s.always_allowed == ()
    assert (s.settings.approval, s.approve, s.settings.max_new_tokens) == ("never", "never", 7)
    assert not {"approve", "max_tokens"} & set(vars(s))
    with pytest.raises(SettingsError, match=r"^efort is not a setting \(did you mean effort\?\); settings are effort, "):
        s.efort = "low"
    assert "efort" not in vars(s) and s.effort == "high"
    s.notes = ["mine"]                                                  # a name of the user's own is theirs
    assert s.notes == ["mine"]
    assert {"effort", "max_new_tokens", "ask", "notes"} <= set(dir(s))   # `s.<Tab>` offered no setting


def test_stop_inside_a_tool_call_says_the_half_written_call_is_not_kept():
    """Stopped while the model wrote a call, the turn said "Stopped before the model had written any text" under the
    call's text shown live (a new user's review)."""
    call = '<|channel|>analysis to=python code<|message|>print("counting the words of a long text one by one")<|call|>'
    said = "Stopped while the model was writing a tool call, which is not kept half-written: nothing to keep."
    reply = session(call + FINAL.format(text="never")).ask("q", view=Recorder(stop_after=5))
    assert reply.interrupted and reply.errors == [said] and reply.tool_calls == []
    thought = "<|channel|>analysis<|message|>Count them.<|end|><|start|>assistant"
    reply = session(thought + call + FINAL.format(text="never")).ask("q", view=Recorder(stop_after=8))
    assert reply.errors == ["Stopped: the partial reply is kept, without the tool call it was writing."]
    assert reply.analysis == "Count them."


@pytest.mark.parametrize("assignment, message", [
    ("guard=maybe", "guard must be on or off (true/false, yes/no, 1/0), not 'maybe'"),
    ("timeout=abc", "timeout must be a number, not 'abc'"),
    ("seed=1.5", "seed must be a whole number, not '1.5'"),
    ("temperature=warm", "temperature must be a number, not 'warm'"),
])
def test_a_setting_of_the_wrong_kind_says_what_it_takes(assignment, message):
    """`%gptoss config guard=maybe` said "guard must be a valid boolean, unable to interpret input", pydantic's
    words, and never what the setting takes (a new user's review)."""
    from gptoss_lab.settings import make, parse_assignments

    with pytest.raises(SettingsError) as error:
        make(parse_assignments([assignment]))
    assert str(error.value) == message


@pytest.mark.parametrize("call_end", ["<|end|>", ""], ids=["ended-by-end", "no-end-token"])
def test_a_recorded_tool_call_not_ended_by_call_still_replays_the_rest_of_the_turn(call_end):
    """Thinking, a call, thinking, a call, thinking, an answer, where the second call ends with <|end|> (or with no end
    token) instead of <|call|>: the session runs the call there, and the replay dropped everything after it (the third
    thought and the answer) and failed with 'the recording has no segments left to play'. Now the rest plays."""
    thoughts = ["\n".join(f"{name} line {i}" for i in range(40)) for name in ("First", "Second", "Third")]
    think = "<|start|>assistant<|channel|>analysis<|message|>{}<|end|>".format
    call = "<|start|>assistant<|channel|>analysis to=python code<|message|>print({})".format
    recording = (think(thoughts[0]) + call(1) + "<|call|>" + think(thoughts[1]) + call(2) + call_end
                 + think(thoughts[2]) + "<|start|>assistant" + FINAL.format(text="Done."))
    out = io.StringIO()
    reply = session(recording).ask("q", view=TextView(out, colour=False))
    assert reply.analysis == "\n".join(thoughts)
    assert [call.output for call in reply.tool_calls] == ["1\n", "2\n"]
    assert reply.final == "Done." and not reply.errors
    shown = [line.strip() for line in out.getvalue().splitlines()]  # the text view indents each line
    assert all(line in shown for thought in thoughts for line in thought.splitlines()) and "Done." in shown


def test_a_recording_of_harmony_strings_in_a_list_is_refused_in_one_line():
    """`ReplayEngine(["<|channel|>final..."])` (a list of Harmony texts, as one might write segments) took each text as
    one "token": nothing checked it until the parser met a str where an id belongs. A recording is one str or ids."""
    import numpy as np

    with pytest.raises(TypeError, match=r"^ReplayEngine: a recording is Harmony text \(one str\) or token ids, not a "
                                        r"sequence holding str '<\|channel\|>f"):
        ReplayEngine(["<|channel|>final<|message|>ok<|return|>"])
    assert ReplayEngine(np.array(harmony.encode("<|channel|>final<|message|>ok<|return|>"))).segments  # numpy ids
    # a file's path, bytes or a number said "'PosixPath' object is not iterable" (bytes played as token ids)
    from pathlib import Path

    for given, said in ((Path("turn.txt"), "PosixPath: give the file's text, ReplayEngine(path.read_text())"),
                        (b"<|channel|>", "bytes"), (42, "int")):
        with pytest.raises(TypeError) as err:
            ReplayEngine(given)
        assert str(err.value) == f"ReplayEngine: a recording is Harmony text (one str) or token ids, not {said}"


def test_a_recording_played_out_says_how_many_replies_it_holds_and_what_to_do(capsys):
    """A `%%gptoss` cell asked a ReplayEngine for more than its recording held and read "The turn failed: RuntimeError:
    ReplayEngine: the recording has no segments left to play" (the engine's inner words). It now reads, in one line,
    how many replies the recording holds, which one the turn asked for and what to do."""
    from IPython.core.interactiveshell import InteractiveShell

    said = ("The turn failed: the ReplayEngine's recording holds 2 replies and this turn asked for reply 3; a "
            "recording plays once: run the cell that made it again, then this one, or give the recording more replies "
            "(a reply ends at each tool call and at each answer)")
    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "gptoss_lab")
        shell.user_ns["s"] = session("<|channel|>analysis to=python code<|message|>print(6 * 7)<|call|>"
                                     + FINAL.format(text="42"))
        shell.run_line_magic("gptoss", "use s")
        shell.run_cell_magic("gptoss", "", "Six times seven?")       # a tool call and the answer: both replies
        capsys.readouterr()
        shell.run_cell_magic("gptoss", "", "And six times eight?")
        printed = capsys.readouterr().out
        replies = shell.user_ns["s"].replies
    finally:
        InteractiveShell.clear_instance()   # later tests must not find this shell's namespace
    assert f"[error] {said}\n" in printed                      # the cell's view: one line
    assert replies[-1].errors == [said] and replies[-1].final == ""   # and the turn's Reply


def test_a_long_malformed_reply_is_quoted_short_in_the_turns_notes() -> None:
    """A model that writes a message header thousands of characters long (no <|message|>), or a long message on a
    channel that is not one, had it quoted whole in `reply.errors` and in the view's one-line note. The note quotes
    its start and says how long it was; the view's ParseError card still holds the raw text."""
    header = "<|channel|>analysis to=functions." + "lookup_" * 400   # (more words than a header holds: stopped sooner)
    view = Recorder()
    reply = session(header).ask("Hi", view=view)
    note = reply.errors[0]
    assert note.startswith("Not valid Harmony (generation ended inside a message header): '<|channel|>analysis to=")
    assert note.endswith(f"… ({len(header):,} characters)") and len(note) < 300, note
    assert any(getattr(event, "raw", None) == header for event in view.events)   # the card's raw text, whole
    stray = "<|channel|>poem<|message|>" + "la " * 1000 + "<|end|><|start|>assistant<|channel|>final<|message|>Hi.<|return|>"
    reply = session(stray).ask("Hi")
    (note,) = [e for e in reply.errors if e.startswith("A message without a valid channel")]
    assert note.startswith("A message without a valid channel ('poem') was left out: 'la la ")
    assert note.endswith("… (3,000 characters)") and len(note) < 300, note
    assert reply.final == "Hi."


def test_answers_written_as_several_final_messages_are_kept_apart_in_the_reply() -> None:
    """A model that answers, calls a tool and answers again writes two `final` messages, which every view shows as
    two paragraphs; `reply.final` (`_gptoss.final`, `-o NAME`, `print(reply)`) ran them together, "check.It is"."""
    recording = ("<|channel|>final<|message|>Let me check.<|end|>" + CALL.format(code="2 + 3")
                 + "<|start|>assistant" + FINAL.format(text="It is 5."))
    reply = session(recording).ask("What is 2 + 3?")
    assert reply.final == str(reply) == "Let me check.\n\nIt is 5."


def test_an_answer_cut_inside_a_character_keeps_the_text_the_view_showed() -> None:
    """The token limit cut an answer between the bytes of one character (an emoji is several tokens): the view held
    the half character back, but the Reply, `%gptoss history` and the next prompt got a "\ufffd" the model never
    wrote, at the end of the kept answer."""
    view = Recorder()
    s = session(FINAL.format(text="Party \N{PARTY POPPER} time") + FINAL.format(text="Yes."))
    reply = s.ask("Party?", view=view, max_new_tokens=5)   # <|channel|> final <|message|> Party, half the emoji
    shown = "".join(event.text for event in view.events if type(event).__name__ == "Delta")
    assert reply.final == shown == "Party "
    assert "\ufffd" not in s.export() and s.ask("Sure?").final == "Yes."


def test_a_reply_printed_says_why_the_turn_failed_or_has_no_answer(capsys: pytest.CaptureFixture[str]) -> None:
    """`print(reply)` of a failed turn printed an empty line (the reply's text was its answer alone): it shows the
    answer written so far, then why the turn failed; a turn with no answer prints its notes."""
    import itertools

    class Failing(ReplayEngine):
        def stream(self, prompt, **kw):
            yield from itertools.islice(super().stream(prompt, **kw), 6)   # the answer's first words, then the error
            raise ConnectionError("the server went away")

    def printed(reply: object) -> str:
        print(reply)
        return capsys.readouterr().out

    s = session(FINAL.format(text="Hi."))
    s.ask("a")
    first = printed(s.ask("b"))                       # the recording is played out: nothing written
    cut = printed(Session(Failing(FINAL.format(text="It is five, as python says.")), namespace={}).ask("c"))
    calls = printed(session(CALL.format(code="1") * 2).ask("d", max_tool_calls=1))
    assert first.startswith("The turn failed: the ReplayEngine's recording holds 1 reply"), first
    assert cut.startswith("It is") and "\n\nThe turn failed: " in cut and "the server went away" in cut, cut
    assert calls.startswith("Stopped after 1 tool calls (max_tool_calls)."), calls


@pytest.mark.parametrize("cut_by", ["token limit", "context", "stop"])
def test_a_reply_printed_says_its_answer_was_cut(cut_by: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`print(reply)` of an answer cut by the token limit, the model's context or Stop printed the words written so far
    as if they were the whole answer (the cell view says it was cut): the same note follows them."""
    s = session(FINAL.format(text=" ".join(f"word{i}" for i in range(1, 41))))
    s.engine.context_window = len(harmony.render(s.prefix() + [harmony.user_message("q")])) + 20
    reply = s.ask("q", view=Recorder(stop_after=8 if cut_by == "stop" else None),
                  max_new_tokens=10 if cut_by == "token limit" else None)
    print(reply)
    answer, note = capsys.readouterr().out.split("\n\n")
    assert answer == reply.final and answer.startswith("word1 word2") and "word40" not in answer
    assert note == reply.errors[-1] + "\n" and note.startswith(
        {"token limit": "The reply reached the token limit", "context": "The reply filled the model's context",
         "stop": "Stopped: the partial reply is kept"}[cut_by]), note


def test_a_recorded_message_to_a_tool_on_a_channel_that_is_not_one_replays_the_rest_of_the_turn():
    """A message `to=python` on a channel that is not one (`chat`) is left out of the conversation, never run, and the
    model writes on. The replay cut the recording there, as after a call, so the turn ended "The engine's stream ended
    before the model finished its reply" and the thought and answer after it were never played."""
    recording = ("<|channel|>chat to=python<|message|>print(1)<|end|>"
                 "<|start|>assistant<|channel|>analysis<|message|>Answer directly.<|end|>"
                 "<|start|>assistant" + FINAL.format(text="Done."))
    ran = []
    reply = session(recording, namespace={"print": ran.append}, tools="python").ask("q")
    assert reply.final == "Done." and reply.analysis == "Answer directly." and not reply.tool_calls and not ran
    assert reply.errors == ["A message without a valid channel ('chat') was left out: 'print(1)'"]


def test_stop_inside_a_message_to_a_tool_on_a_channel_that_is_not_one_says_what_it_was():
    """A message `to=python` on a channel that is not one is left out, never run; stopped while it was written, the
    turn said it was "writing a tool call, which is not kept half-written", a call that would never have run."""
    message = '<|channel|>chat to=python<|message|>print("counting the words of a long text one by one")<|end|>'
    reply = session(message + "<|start|>assistant" + FINAL.format(text="never")).ask("q", view=Recorder(stop_after=5))
    assert reply.interrupted and reply.tool_calls == [] and reply.errors == [
        "Stopped while the model was writing a message on a channel the conversation does not keep, which is not kept "
        "half-written: nothing to keep."]


@pytest.mark.parametrize("code", ["import gptoss_lab; gptoss_lab.Session.load('tiny')",
                                  "import gptoss_lab; gptoss_lab.Session.connect('http://127.0.0.1:9')"])
def test_the_python_tools_code_cannot_load_or_connect_and_nothing_is_read(monkeypatch, code):
    """`get_ipython().run_line_magic('gptoss', 'load X')` in the model's code (Session.load) was refused only when the
    session was made, after every weight had loaded; a connect, after the server was asked. Refused before either."""
    from gptoss_lab.engines import local, remote

    asked = []
    monkeypatch.setattr(local.LocalEngine, "from_pretrained",
                        classmethod(lambda cls, *args, **kw: asked.append(args) or ReplayEngine("")))
    monkeypatch.setattr(remote, "RemoteEngine", lambda *args, **kw: asked.append(args) or ReplayEngine(""))
    reply = session(CALL.format(code=code) + FINAL.format(text="done")).ask("go")
    assert reply.tool_calls[0].output.splitlines()[-1] == (
        f"gptoss_lab.session.TurnError: the python tool's code cannot make or change a session "
        f"(Session.{'load' if 'load' in code else 'connect'}): sessions and their settings are the user's, changed "
        "between turns")
    assert asked == []


def test_the_greedy_decoding_notices_start_as_sentences():
    """The seed notice and the Regenerate one ("the same question, regenerated, gets the same answer again ...") began
    with a small letter where the turn's other notices begin with a capital."""
    answer = "<|channel|>final<|message|>Hello.<|return|>"
    s = Session(ReplayEngine(answer * 3), namespace={}, tools="none", temperature=0)
    assert s.ask("Hi").errors == []
    assert s.regenerate().errors[0].startswith("The same question, regenerated, gets the same answer again: decoding")
    assert s.ask("Hi", seed=3).errors[0].startswith("Seed changes nothing here: decoding is greedy")


def test_a_value_of_the_wrong_type_from_python_says_what_the_setting_takes():
    """`ask(..., max_new_tokens=True)` ran a turn of one token and `timeout=True` gave tool calls one second: pydantic
    read True as 1. `configure(instructions=42)` said "must be a valid string". Now the setting says what it takes."""
    s = session(FINAL.format(text="one"))
    with pytest.raises(TurnError, match=r"^max_new_tokens must be a whole number, not True$"):
        s.ask("hi", max_new_tokens=True)
    for name, value, message in (("timeout", True, "a number"), ("seed", False, "a whole number"),
                                 ("temperature", True, "a number")):
        with pytest.raises(SettingsError, match=rf"^{name} must be {message}, not {value}$"):
            s.configure(**{name: value})
    for name in ("instructions", "date"):   # said "must be a valid string", pydantic's words
        with pytest.raises(SettingsError, match=rf"^{name} must be text \(a str\), not 20260101$"):
            s.configure(**{name: 20260101})
    assert s.ask("hi", max_new_tokens=50).final == "one" and s.settings.timeout == 120.0


def test_the_labs_errors_from_the_python_api_show_as_their_one_line_in_ipython(capsys):
    """`Session(..., effort="HIGH")` or `s.ask(...)` refused from a cell printed its one-line message under a
    traceback through the lab's code (settings, pydantic), as the magics' errors are not: IPython shows the line."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        shell.run_cell("from gptoss_lab import Session\nfrom gptoss_lab.engines.replay import ReplayEngine\n"
                       "s = Session(ReplayEngine(''))")
        capsys.readouterr()
        shown = []
        for cell in ("s.configure(effort='HIGH')", "s.ask('Hi', tools='pyton')"):
            shell.run_cell(cell)
            shown.append(capsys.readouterr().out.strip())
    finally:
        InteractiveShell.clear_instance()
    assert [len(out.splitlines()) for out in shown] == [1, 1], shown
    assert shown[0].startswith("SettingsError: ") and shown[1].startswith("TurnError: "), shown
