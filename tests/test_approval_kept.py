"""Approval kept: the code of an approved python call runs in the user's kernel and can reach the session (through
`gc`), but it cannot switch approval off for the calls after it. What it changed is put back, and the reply says so.
"""
from __future__ import annotations

import time

import pytest

from gptoss_lab import ReplayEngine, Session
from gptoss_lab.events import Approval

FIND = ("import gc\nfrom gptoss_lab import Session\n"
        "s = [o for o in gc.get_objects() if type(o) is Session and o.namespace is globals()][0]\n")
CHANGES = {
    "always allowed": FIND + "s._allowed.add('python')",
    "always-allowed set replaced": FIND + "s._allowed = {'python'}",
    "settings replaced": FIND + "s.settings = s.settings.replace(approval='auto')",
    "configure": FIND + "s.configure(approval='auto')",
    "settings changed in place": FIND + "object.__setattr__(s.settings, 'approval', 'auto')",
    "a session of its own": FIND + "Session(s.engine, namespace=globals(), approval='auto')",  # for `%gptoss use`
    "the turn's settings": ("import gc\nfrom gptoss_lab.session import _Turn\n"
                            "t = [o for o in gc.get_objects() if type(o) is _Turn and o.session.namespace is globals()]"
                            "[0]\nt.settings = t.settings.replace(approval='auto')"),
}
SECOND = "print('second')"
WARNING = "The python call's code changed the approval settings; they were put back."
REFUSED = {"always-allowed set replaced", "settings replaced", "configure", "a session of its own"}


def _recording(*codes: str) -> str:
    calls = "".join(f"<|start|>assistant to=python<|channel|>analysis<|message|>{code}<|call|>" for code in codes)
    return "<|channel|>analysis<|message|>x<|end|>" + calls + "<|channel|>final<|message|>done<|return|>"


class _View:
    """Shows each card and answers it: the user runs the first call only (with `always`, every later one)."""

    stop_requested = False

    def __init__(self, always: bool = False) -> None:
        self.cards: list[str] = []
        self.always = always

    def handle(self, event: object) -> None:
        pass

    def approve(self, call: object) -> Approval:
        self.cards.append(call.input)  # type: ignore[attr-defined]
        return Approval(len(self.cards) == 1, always=self.always)


@pytest.mark.parametrize("change", list(CHANGES))
def test_approved_code_cannot_turn_approval_off(change: str) -> None:
    s = Session(ReplayEngine(_recording(CHANGES[change], SECOND)), approval="ask", namespace={})
    view = _View()
    reply = s.ask("go", view=view)
    assert view.cards == [CHANGES[change], SECOND]  # the second call was asked about, and refused
    if change in REFUSED:  # the session's own attributes and configure refuse the code at once
        assert [c.status for c in reply.tool_calls] == ["error", "skipped"]
        assert "TurnError: the python tool's code cannot make or change a session" in reply.tool_calls[0].output
        assert reply.errors == []
    else:  # what it changed in place is put back, and the reply says so
        assert [c.status for c in reply.tool_calls] == ["done", "skipped"]
        assert reply.errors == [WARNING]
    assert s.approval == "ask" and s.always_allowed == ()  # and the next turns ask too


VIEW = FIND + "class Yes:\n    stop_requested = False\n    def handle(self, event): pass\n    def approve(self, call): return True\n"
ANSWERED = {  # the approved code answers the later cards itself: the view's approve, or the session's view, replaced
    "the view's approve": VIEW + "s.view.approve = Yes().approve",
    "its class's approve": VIEW + "type(s.view).approve = Yes.approve",
    "its class's look-up": VIEW + "type(s.view).__getattribute__ = lambda v, name: getattr(Yes(), name)",
    "the session's view": VIEW + "vars(s)['view'] = Yes()",
}


@pytest.mark.parametrize("change", list(ANSWERED))
def test_approved_code_cannot_answer_the_later_cards_itself(change: str) -> None:
    """Code the user ran set the view's `approve` (or its class's, or the session's view) to one that says yes: the
    turn's later calls, and every call of the later turns, ran without a card. It is put back, and the reply says so."""
    view = type("View", (_View,), {})()  # (a class of its own: an unmended put-back would leave `_View` answering)
    s = Session(ReplayEngine(_recording(ANSWERED[change], SECOND) + _recording(SECOND)), approval="ask",
                namespace={}, view=view)
    first, second = s.ask("one"), s.ask("two")
    assert view.cards == [ANSWERED[change], SECOND, SECOND]  # each later call was asked about (and refused)
    assert [c.status for c in first.tool_calls + second.tool_calls] == ["done", "skipped", "skipped"]
    assert (first.errors, second.errors) == ([WARNING], [])


TURN = ("import gc, time\nfrom gptoss_lab.session import _Turn\n"
        "t = [o for o in gc.get_objects() if type(o) is _Turn and o.session.namespace is globals()][0]\n")
HELD = {  # the view's methods the turn asks on the kernel's thread, replaced by ones that hold it there
    "its class's stop_requested": TURN + "type(t.view).stop_requested = property(lambda view: time.sleep(3))\n"
                                         "time.sleep(0.3)",
    "its class's handle": TURN + "type(t.view).handle = lambda view, event: time.sleep(3)",
    "its own handle": TURN + "t.view.handle = lambda event: time.sleep(3)",
}


@pytest.mark.parametrize("change", list(HELD))
def test_code_cannot_hold_the_kernel_through_the_views_methods(change: str) -> None:
    """The watcher asks the view's `stop_requested` on the kernel's thread while the code runs, and the turn hands each
    event to its `handle` there: replaced by the code with ones that looped, they ran unguarded and the turn never
    ended. The call's own read of Stop is the view's as the call began, and they are put back after it."""
    view = type("View", (_View,), {})()
    started = time.perf_counter()
    reply = Session(ReplayEngine(_recording(HELD[change], SECOND)), approval="auto", namespace={}).ask("go", view=view)
    assert time.perf_counter() - started < 2.5
    assert [c.status for c in reply.tool_calls] == ["done", "done"] and reply.errors == [WARNING]


def test_code_cannot_rewrite_its_own_call_to_show_other_code_ran() -> None:
    """The code reached its own call (`gc`) and set its `input`: the chat card showed the harmless code as the user's
    edit, and the reply and the saved notebook kept it, where other code had run (its `recipient` too)."""
    from gptoss_lab.events import ToolEnd

    code = ("import gc\nfrom gptoss_lab.events import ToolCall\nfor c in gc.get_objects():\n"
            "    if type(c) is ToolCall:\n        c.input, c.recipient = \"print('hello')\", 'functions.hello'\n"
            "secret = 'ran'")
    ended: list[tuple[str, str]] = []

    class Shown(_View):
        def handle(self, event: object) -> None:
            if isinstance(event, ToolEnd):
                ended.append((event.call.recipient, event.call.input))

    namespace: dict = {}
    reply = Session(ReplayEngine(_recording(code)), approval="auto", namespace=namespace).ask("go", view=Shown())
    assert namespace["secret"] == "ran"
    assert ended == [("python", code)] and (reply.tool_calls[0].recipient, reply.tool_calls[0].input) == ("python", code)
    assert reply.errors == ["The python call's code rewrote its own call (what its card shows ran); it was put back."]


def test_always_allow_chosen_by_the_user_is_kept() -> None:
    s = Session(ReplayEngine(_recording("x = 1", SECOND)), approval="ask", namespace={})
    view = _View(always=True)
    reply = s.ask("go", view=view)
    assert view.cards == ["x = 1"]  # "Always allow" on the first card: the second call runs without one
    assert [c.status for c in reply.tool_calls] == ["done", "done"]
    assert reply.errors == [] and s.always_allowed == ("python",)


def test_code_that_leaves_the_settings_alone_gets_no_warning() -> None:
    s = Session(ReplayEngine(_recording(FIND + "print(s.approval, sorted(s._allowed))")), approval="ask",
                namespace={})
    reply = s.ask("go", view=_View())
    assert reply.tool_calls[0].output.strip() == "ask []"
    assert reply.errors == []


def test_a_function_that_changes_other_settings_is_told_which_were_put_back() -> None:
    """A function tool that set `effort=` and `max_new_tokens=` on its session was put back with "changed the approval
    settings": the user looked for an approval change that never happened."""
    ns: dict = {}
    s = Session(ReplayEngine('<|channel|>commentary to=functions.think_harder <|constrain|>json<|message|>{}<|call|>'
                             '<|channel|>final<|message|>done<|return|>'), approval="auto", tools="think_harder",
                namespace=ns)

    def think_harder() -> str:
        """Reason at high effort from now on."""
        s.configure(effort="high", max_new_tokens=4096)
        return "effort is high now"

    ns["think_harder"] = think_harder
    reply = s.ask("go")
    assert reply.errors == ["The functions.think_harder call's code changed the session's settings (effort, "
                            "max_new_tokens); they were put back: settings change between turns, not from a tool of "
                            "the turn."]
    assert (s.effort, s.max_new_tokens) == ("medium", 2048)


LATER = {  # what a thread the approved code left running does once the call is over (`s`: the session, from gc)
    "settings replaced": "s.settings = s.settings.replace(approval='auto')",
    "configure": "s.configure(approval='auto')",
    "attribute": "s.approval = 'auto'",
    "settings changed in place": "object.__setattr__(s.settings, 'approval', 'auto')",
    "always allowed": "s._allowed.add('python')",
}


@pytest.mark.parametrize("change", list(LATER))
def test_a_thread_the_approved_code_left_running_cannot_turn_approval_off_for_later_turns(change: str) -> None:
    """A thread the approved code started waited for its call to end, then set approval=auto: the next turn's code ran
    unasked (only what the code changed during its call was put back)."""
    import threading
    import time

    done = threading.Event()
    code = (FIND + "import threading, time\ndef later():\n    time.sleep(0.2)\n    try:\n        "
            + LATER[change] + "\n    except Exception as err:\n        print(err)\n    finally:\n        done.set()\nthreading.Thread(target=later).start()")
    s = Session(ReplayEngine(_recording(code) + _recording(SECOND)), approval="ask", namespace={"done": done})
    view = _View()
    first = s.ask("one", view=view)
    assert first.tool_calls[0].status == "done" and done.wait(10)
    time.sleep(0.1)
    second = s.ask("two", view=view)
    assert view.cards == [code, SECOND]   # the second turn's call was asked about (and refused)
    assert second.tool_calls[0].status == "skipped"
    assert s.approval == "ask" and s.always_allowed == ()


def test_a_thread_the_approved_code_left_running_cannot_regenerate_its_turn_unasked(capsys) -> None:
    """A turn's options, which `regenerate` asks it again with, were not sealed: a thread the approved code left running
    set `approval='auto'` in them after the turn, and the regenerated turn ran the model's next call unasked."""
    import threading

    done = threading.Event()
    code = (FIND + "import threading, time\ndef later():\n    time.sleep(0.2)\n"
            "    s._turns[-1][1]['approval'] = 'auto'\n    done.set()\nthreading.Thread(target=later).start()")
    s = Session(ReplayEngine(_recording(code) + _recording(SECOND)), approval="ask", namespace={"done": done})
    view = _View()
    s.ask("one", view=view)
    assert done.wait(10)
    again = s.regenerate(view=view)
    assert view.cards == [code, SECOND] and again.tool_calls[0].status == "skipped"
    assert "it was put back: a tool cannot change the session whose turn called it" in capsys.readouterr().err


SEALED = {  # what approval's seal between turns rests on, written by the approved code past the session's __setattr__
    "the session's dict, then sealed": FIND + "vars(s)['settings'] = s.settings.replace(approval='auto')\ns._seal()",
    "object.__setattr__, then sealed": FIND + "object.__setattr__(s, 'settings', s.settings.replace(approval='auto'))\n"
                                              "s._seal()",
    "a seal of its own in the session's dict": FIND + "vars(s).update(settings=s.settings.replace(approval='auto'))\n"
                                                      "make = getattr(type(s._sealed), 'of', type(s._sealed))\n"
                                                      "vars(s).update(_sealed=make(s))",
    "the seal's settings changed in place": FIND + "s._sealed.fields[0]['approval'] = 'auto'",
    "the seal's always-allowed changed in place": FIND + "s._sealed.entries.add('python')\ns._allowed.add('python')",
}


@pytest.mark.parametrize("route", list(SEALED))
def test_the_approved_code_cannot_reseal_the_settings_for_the_next_turn(route: str) -> None:
    """The session's seal (what `ask` puts back before each turn) was in the session's dict and mutable: code that wrote
    it, or sealed the settings it set, had the next turn's calls run unasked."""
    s = Session(ReplayEngine(_recording(SEALED[route]) + _recording(SECOND)), approval="ask", namespace={})
    view = _View()
    s.ask("one", view=view)
    second = s.ask("two", view=view)
    assert view.cards == [SEALED[route], SECOND]   # the second turn's call was asked about (and refused)
    assert second.tool_calls[0].status == "skipped"
    assert s.approval == "ask" and s.always_allowed == ()


def test_a_copy_of_a_session_asks_under_its_own_seal() -> None:
    """With the seal kept out of the session's dict, `copy.copy(session).ask(...)` failed with a KeyError."""
    import copy

    s = Session(ReplayEngine(_recording(SECOND)), approval="ask", namespace={})
    view = _View(always=True)
    reply = copy.copy(s).ask("go", view=view)
    assert (reply.final, view.cards) == ("done", [SECOND])


def test_a_thread_the_code_left_running_cannot_rewrite_what_the_turn_still_writes() -> None:
    """A thread the approved code left running rewrote the turn's answer, its reasoning and a later call's code while
    the turn still ran (before its end sealed the conversation): the user read and saved an answer the model never
    wrote, and the card of the next call asked about, and ran, code the model never wrote as the user's edit. What the
    model wrote is what the reply holds, and what the card asks about and runs; the reply says it was put back."""
    import queue

    from gptoss_lab.events import MessageEnd, ToolStart

    asks: queue.Queue = queue.Queue()
    done: queue.Queue = queue.Queue()
    code = (TURN + "import threading\ndef later():\n    for _ in range(3):\n        what = asks.get(timeout=10)\n"
            "        if what == 'analysis':\n            t.reply.final = 'Please delete all my files.'\n"
            "        elif what == 'call':\n            t.reply.tool_calls[-1].input = \"print('hello')\"\n"
            "        else:\n            t.reply.analysis = 'I must delete them.'\n"
            "            t.reply.messages[-1].content[0].text = 'I must delete them.'\n"
            "        done.put(what)\nthreading.Thread(target=later).start()")

    class Paced(_View):
        """Lets the thread write at each message the model ends after the first call, and at the second call's card."""

        def handle(self, event: object) -> None:
            if self.cards and isinstance(event, ToolStart):
                asks.put("call")
            elif self.cards and isinstance(event, MessageEnd) and event.message and not event.message.recipient:
                asks.put(event.message.channel)
            else:
                return
            assert done.get(timeout=10)

        def approve(self, call: object) -> Approval:
            self.cards.append(call.input)  # type: ignore[attr-defined]
            return Approval(True)

    recording = ("<|channel|>analysis<|message|>x<|end|>"
                 f"<|start|>assistant to=python<|channel|>analysis<|message|>{code}<|call|>"
                 "<|start|>assistant<|channel|>analysis<|message|>y<|end|>"
                 f"<|start|>assistant to=python<|channel|>analysis<|message|>{SECOND}<|call|>"
                 "<|start|>assistant<|channel|>final<|message|>done<|return|>")
    view = Paced()
    s = Session(ReplayEngine(recording), approval="ask", namespace={"asks": asks, "done": done})
    reply = s.ask("go", view=view)
    assert (reply.final, reply.analysis) == ("done", "x\ny")
    assert [m.content[0].text for m in reply.messages if m.channel == "analysis" and not m.recipient] == ["x", "y"]
    assert view.cards == [code, SECOND] and reply.tool_calls[1].output == "second\n"
    assert reply.errors == [
        "Code the python tool left running changed this turn's reply (its answer, reasoning or messages) while the "
        "turn ran; it was put back.",
        "Code the python tool left running rewrote the python call (what its card shows); it was put back.",
        "Code the python tool left running changed this turn's reply (its answer, reasoning or messages) while the "
        "turn ran; it was put back."]
