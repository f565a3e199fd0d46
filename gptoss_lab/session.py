"""The conversation and the turn loop: the only place that loops.

`Session.ask` renders the Harmony prompt, streams tokens from the engine through `HarmonyStream`,
hands every event to the view, asks the `Toolset` who answers each call, runs it under the approval
policy, feeds the result back, and repeats until the model answers or stops. Every turn ends with
a `Reply`, also when the engine, a tool or a view fails; the conversation is left valid (no call
without an answer) whatever happened.
"""
from __future__ import annotations

import contextlib
import functools
import gc
import inspect
import operator
import re
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any, Literal, NamedTuple

from openai_harmony import Message

from . import harmony
from .engines.base import Engine, EngineError, Sampling
from .events import (
    Approval, Event, MessageEnd, Notice, ParseError, Reply, ToolCall, ToolEnd, ToolStart,
    ToolUpdate, TurnEnd, TurnStart, View, counted,
)
from .settings import ALIASES, APPROVALS, DEFAULT, Settings, SettingsError, make, setting_meant
from .structured import ResponseFormat
from .tools.base import Tool, ToolResult, Toolset, ToolSpecError, error_message, error_text, interrupted, reporting
from .tools.containment import from_model_code
from .widgets.sanitize import WrittenOut



class TurnError(WrittenOut, ValueError):
    """A turn could not start (bad settings, unknown tool, prompt too long); one line for the user."""


class _Stopped(Exception):
    """The view's Stop button: ends the turn like a kernel interrupt."""


def _settings_of(session_options: dict[str, Any] | None) -> Settings:
    """The settings among `Session(...)`'s keyword arguments, checked (SettingsError names a bad one)."""
    return make({k: v for k, v in (session_options or {}).items() if k not in ("namespace", "view", "browser")})


def _one_at_a_time(method: Callable[..., Any]) -> Callable[..., Any]:
    """Refuse `method` while a turn of the session runs: a second thread's `ask`, or a function tool that
    asks, resets or rewinds the session whose turn called it, would interleave two turns in one history. Refuse it
    to the python tool's code always: a thread it left running waited for the turn's end, then asked turns the user
    never asked, or reset the user's conversation."""
    @functools.wraps(method)
    def guarded(self: Session, *args: Any, **kwargs: Any) -> Any:
        if from_model_code():
            raise TurnError(f"the python tool's code cannot {method.__name__} the session: its turns are the user's")
        if not self._busy.acquire(blocking=False):
            raise TurnError("this session is running a turn: wait for it to end "
                            "(a tool cannot use the session whose turn called it)")
        try:
            return method(self, *args, **kwargs)
        finally:
            self._busy.release()

    return guarded


def _not_from_model_code(what: str) -> None:
    """A one-line TurnError when the python tool's code makes or changes a session (`what` says how): sessions and
    their settings are the user's. Asked first, before a model is read or a server asked."""
    if from_model_code():
        raise TurnError(f"the python tool's code cannot make or change a session ({what}): sessions and their "
                        "settings are the user's, changed between turns")


# each session's seal (`Session._sealed`), out of the session's dict, which the python tool's code can write
_SEALS: weakref.WeakKeyDictionary[Session, _SessionState] = weakref.WeakKeyDictionary()
_KEPT: weakref.WeakKeyDictionary[Session, _Conversation] = weakref.WeakKeyDictionary()  # each session's conversation
_LISTS = ("history", "replies", "_turns")  # the conversation's lists, as a session holds them
_PUT_BACK = ("The conversation (the session's history, replies or turns) changed in place since its last turn, as code "
             "a tool left running can change it; it was put back: a tool cannot change the session whose turn called "
             "it (to change the history yourself, set it: s.history = ...).")
_RAN: weakref.WeakSet[Session] = weakref.WeakSet()  # sessions whose turns ran a tool: only its threads go on after


class Session:
    """A conversation with a gpt-oss model and the settings its turns use.

    Settings (effort, approval, timeout, max_new_tokens, tools, ...; see `gptoss_lab.settings`) are
    given as keyword arguments, read as attributes (`session.effort`) and changed with `configure`
    (or as attributes: `session.effort = "high"` is `configure(effort="high")`).
    `browser` is the browser tool the `browser` tool name refers to (see `gptoss_lab.tools.browser`).
    `history` and `replies` are the conversation: change it by setting them (`s.history = ...`) or with `reset`,
    `rewind` and `regenerate`; a change made in place between turns is put back once a tool has run in the
    session (`check_conversation`).
    """

    def __init__(self, engine: Engine, *, namespace: dict[str, Any] | None = None, view: View | None = None,
                 browser: Tool | None = None, **settings: Any) -> None:
        if not isinstance(engine, Engine):  # Session("tiny") for Session.load("tiny")
            raise TypeError(f"Session(...) takes an engine, not {type(engine).__name__}: load a model with "
                            "Session.load('tiny') or use a server with Session.connect(url)")
        self.engine = engine
        self.settings: Settings = make(settings)
        self.namespace = namespace if namespace is not None else _user_namespace()
        self.view = view
        self.browser = browser
        self.history: list[Message] = []
        self.replies: list[Reply] = []
        # each turn's user message index, `ask` options and the browser (and its state) before it
        # and the session's approval policy when it was asked (see `regenerate`)
        self._turns: list[tuple[int, dict[str, Any], tuple[Tool | None, Any], str]] = []
        self._allowed: set[str] = set()       # allowed for the rest of the conversation (Tool.approval_scope)
        self._renderer = harmony.Renderer()
        self._busy = threading.Lock()        # held while a turn runs (see `_one_at_a_time`)
        self._again = False                  # while `regenerate` asks again: a greedy repeat is said (`_sampling_unused`)

    @property
    def browser(self) -> Tool | None:
        """The browser tool the `browser` tool name refers to. One set mid-conversation (`%gptoss browse OTHER`)
        takes over the pages the model was shown, so the cursors and citations in the history stay valid."""
        return self.__dict__.get("_browser_tool")

    @browser.setter
    def browser(self, tool: Tool | None) -> None:
        old = self.__dict__.get("_browser_tool")
        if old is not None and tool is not None and old is not tool and type(old) is type(tool) and self.history:
            tool.restore(old.snapshot())
        self.__dict__["_browser_tool"] = tool

    def __setattr__(self, name: str, value: Any) -> None:
        _not_from_model_code(f"its {name}")  # (a thread the code left running set approval=auto after its call ended)
        if name == "namespace" and not isinstance(value, dict):  # a list failed every python call, output lost after
            raise TypeError(f"Session(..., namespace=) takes the dict of names the python tool's code runs in "
                            f"(globals()), not {type(value).__name__}")
        # `s.effort = "high"` (and `s.approve = ...`, `s.efort = ...`) made an attribute no turn read, without a word
        misspelt = not (name.startswith("_") or name in self.__dict__ or hasattr(type(self), name)) and setting_meant(name)
        if name in Settings.names() or name in ALIASES or misspelt:
            self.configure(**{name: value})   # checked; a misspelt name is refused in configure's words
        else:
            super().__setattr__(name, value)
            if name in ("settings", "_allowed", "view") and "_allowed" in self.__dict__:
                self._seal()
            if name in _LISTS and "_turns" in self.__dict__:  # the user's own edit (`s.history = ...`, `+= [...]`)
                self._keep_conversation()

    def _seal(self) -> None:
        """Keep what approval rests on (the settings, what was always allowed) as the user and the session left it,
        for `ask` to put back what changed since in place (see `_SessionState`). Refused to the python tool's code: it
        sealed the settings it had set, and the next turn put them back."""
        if from_model_code():
            raise TurnError("the python tool's code cannot seal a session's settings: they are the user's")
        _SEALS[self] = _SessionState.of(self)

    @property
    def _sealed(self) -> _SessionState:
        """The session's seal, kept out of its own dict: the tool's code wrote one of its own there
        (`vars(s)['_sealed'] = ...`, `object.__setattr__`), and the next turn put back the model's settings. A copy
        of a session (`copy.copy`, which has none yet) is sealed as it is."""
        if self not in _SEALS:
            self._seal()
        return _SEALS[self]

    @property
    def _conversation(self) -> _Conversation:
        """The conversation as the user and the session's own turns left it (`_Conversation`), kept out of its dict
        as the settings' seal is."""
        if self not in _KEPT:
            self._keep_conversation()
        return _KEPT[self]

    def _keep_conversation(self, name: str | None = None, items: tuple[Any, ...] = ()) -> None:
        """Seal the conversation as it is now (the user's change: `reset`, `s.history = ...`) or, given one of its
        lists, as it was sealed with that list holding `items` (the session's own change: what else changed stays to be
        put back). Refused to the python tool's code: it would seal the conversation it rewrote."""
        if from_model_code():
            raise TurnError("the python tool's code cannot seal a session's conversation: it is the user's")
        _KEPT[self] = _Conversation.of(self) if name is None else self._conversation.with_items(name, items)

    def _add(self, name: str, *items: Any) -> None:
        """Add `items` to the conversation's list `name` (`_LISTS`), and to its seal: a change of the session's own."""
        vars(self)[name].extend(items)
        self._keep_conversation(name, self._conversation.items(name) + items)

    def _cut(self, name: str, start: int) -> None:
        """Drop the items of the conversation's list `name` from `start` on, and its seal's: a change of its own."""
        del vars(self)[name][start:]
        self._keep_conversation(name, self._conversation.items(name)[:start])

    def check_conversation(self) -> None:
        """Put back what changed in the conversation since its last turn ended (or the user last changed it), saying so
        in a line: a thread the python tool's code left running rewrites it until its call's timeout, after the turn.
        `rewind`, `regenerate`, `export` and `%gptoss history` read it so; `ask` says it in its turn."""
        if self._moved():
            print(f"gptoss_lab: {_PUT_BACK}", file=sys.stderr)

    def _moved(self) -> bool:
        """Whether the conversation changed in place since it was sealed, put back where a tool ran in this session (a
        thread of its code may have changed it); where none ran, the change is the user's (`s.history.pop()`), sealed."""
        if self in _RAN:
            return self._conversation.put_back()
        self._keep_conversation()
        return False

    def __dir__(self) -> list[str]:
        """`s.<Tab>` offers the settings too (`s.effort`), which are read through `settings`."""
        return sorted({*super().__dir__(), *Settings.names()})

    def __getattr__(self, name: str) -> Any:
        settings = self.__dict__.get("settings")
        if settings is not None and ALIASES.get(name, name) in Settings.names():
            return getattr(settings, ALIASES.get(name, name))
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # ------------------------------------------------------------ construction

    @classmethod
    def load(cls, name_or_path: str = "tiny", *, session_options: dict[str, Any] | None = None,
             **engine_options: Any) -> Session:
        """Load a gpt-oss checkpoint into this process ("tiny", a local folder, or a hub id)."""
        from .engines.checkpoint import import_held

        import_held("numpy")  # the engine's first import of it: cut short by Ctrl-C, numpy failed for the kernel's life
        from .engines.local import LocalEngine

        _not_from_model_code("Session.load")  # it was refused only when the session was made, every weight loaded
        _settings_of(session_options)  # a bad setting is refused before the model loads, not after
        return cls(LocalEngine.from_pretrained(name_or_path, **engine_options), **(session_options or {}))

    @classmethod
    def connect(cls, url: str, *, model: str | None = None, api_key: str | None = None,
                session_options: dict[str, Any] | None = None, **engine_options: Any) -> Session:
        """Use a gpt-oss model served by an OpenAI-compatible server (vLLM, llama.cpp, Ollama)."""
        from .engines.remote import RemoteEngine

        _not_from_model_code("Session.connect")  # likewise, after the server was asked
        _settings_of(session_options)  # a bad setting is refused before the server is asked

        engine = RemoteEngine(url, model=model, api_key=api_key, **engine_options)
        return cls(engine, **(session_options or {}))

    def configure(self, **changes: Any) -> Settings:
        """Change settings for the following turns (checked; SettingsError names a bad value); None puts a
        setting back to its default (`configure(seed=None)`: no fixed seed again). Setting `approval` also
        takes back every "Always allow": `%gptoss config approve=ask` means ask again for every call."""
        changes = {ALIASES.get(k, k): v for k, v in changes.items()}   # `approve=` is `approval=`, here too
        settings = self.settings.replace(**{k: DEFAULT if v is None else v for k, v in changes.items()})
        if "tools" in changes:  # an unknown tool name is refused now, not at the next turn
            try:
                self._toolset(settings)
            except ToolSpecError as err:
                raise SettingsError(f"tools: {err}") from None
        self.settings = settings
        if "approval" in changes:
            self._allowed.clear()
            self._seal()
        return self.settings

    @property
    def always_allowed(self) -> tuple[str, ...]:
        """What "Always allow" allowed in this conversation (python, the browser, or one function): asked about no
        more until approval is set again."""
        return tuple(sorted(self._allowed))

    @_one_at_a_time
    def unload(self) -> None:
        """Let go of the model: its weights and KV cache are freed (once no other variable holds the engine) and
        a server's connections closed. The conversation and settings stay readable; later turns are refused."""
        url = getattr(self.engine, "url", None)   # a server's, as shown (its key hidden)
        engine, self.engine = self.engine, _Unloaded(self.engine.name, getattr(self.engine, "loaded_from", None),
                                                     url if isinstance(url, str) else None)
        close = getattr(engine, "close", None)
        del engine
        if callable(close):
            close()
        del close
        gc.collect()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_initialized():
            torch.cuda.empty_cache()  # give the freed blocks back to the GPU, where other processes can use them

    def __repr__(self) -> str:
        """What the session talks to and how far the conversation is (the default said only an address)."""
        from .widgets.sanitize import visible

        engine = self.engine
        url = getattr(engine, "url", None)
        served = f" at {visible(url)}" if isinstance(url, str) else ""
        return (f"Session({visible(str(getattr(engine, 'name', type(engine).__name__)))}{served}, "
                f"{counted(len(self.replies), 'turn')}, effort {self.settings.effort}, approve {self.settings.approval})")

    # ------------------------------------------------------------ conversation

    @_one_at_a_time
    def reset(self) -> None:
        """Forget the conversation (settings and the loaded model stay)."""
        self._forget()

    def _forget(self) -> None:
        self.history.clear()
        self.replies.clear()
        self._turns.clear()
        self._keep_conversation()
        self._allowed.clear()
        self._seal()
        if self.browser is not None:
            self.browser.reset()

    @_one_at_a_time
    def rewind(self) -> str:
        """Drop the last turn (its question, answer and tool calls) and return its prompt, e.g. to
        ask it again for a new sample. Side effects of its tool calls are not undone."""
        self.check_conversation()
        if not self._turns:
            raise TurnError("there is no turn to take back")
        start, _, pages, _ = self._turns[-1]
        prompt = self.replies[-1].prompt
        self._cut("_turns", len(self._turns) - 1)
        self._cut("history", start)
        self._cut("replies", len(self.replies) - 1)
        self._browser_back(pages)
        return prompt

    def _browser_state(self) -> tuple[Tool | None, Any]:
        return self.browser, self.browser.snapshot() if self.browser is not None else None

    def _browser_back(self, state: tuple[Tool | None, Any]) -> None:
        """The browser's pages as they were at `state`: a taken-back turn's pages go with it, so the next turn's
        cursors and citations start from there (none when there was no browser yet)."""
        tool, pages = state
        if self.browser is None:
            return
        if tool is None:
            self.browser.reset()
        elif type(tool) is type(self.browser):
            self.browser.restore(pages)

    @_one_at_a_time
    def regenerate(self, *, view: View | None = None) -> Reply:
        """Ask the last question again, with the options it was asked with, for a new sample. When the new
        turn is refused before it starts (a deleted function tool, a setting no longer valid) or fails mid-way (an
        engine error: `Reply.failed`) or is stopped before the model wrote anything, the old one stays and TurnError
        says why; a new turn stopped after it wrote something replaces it with what it wrote.
        The turn is held from the take-back to the new answer, so another thread's `ask` cannot come between.
        When the session's approval policy was made stricter since the question was asked, the stricter one holds:
        after `configure(approval="never")` a question once asked with `approval="auto"` runs no code when regenerated."""
        self.check_conversation()
        if not self._turns:
            raise TurnError("there is no answer to regenerate yet")
        turn = self._turns[-1]
        options, now = dict(turn[1]), self.settings.approval
        if APPROVALS.index(now) > APPROVALS.index(turn[3]):  # the user allows less than when it was asked
            for key in ("approval", "approve"):  # the setting or its alias, as the question was asked
                if options.get(key) in APPROVALS:
                    options[key] = max(options[key], now, key=APPROVALS.index)
        kept, turns = (self.history[turn[0]:], self.replies[-1], self._browser_state()), len(self._turns)
        prompt = Session.rewind.__wrapped__(self)  # type: ignore[attr-defined]  # this turn already holds _busy
        self._again = True
        try:
            reply = Session.ask.__wrapped__(self, prompt, view=view, **options)  # type: ignore[attr-defined]
        except BaseException:  # refused, or a Ctrl-C, before the new turn started (the old answer was lost to a Ctrl-C)
            if len(self._turns) < turns:
                self._put_back(turn, kept)
            raise
        finally:
            self._again = False
        if reply.failed or (reply.interrupted and not _kept(reply)):  # no new answer: the old one is the last again
            Session.rewind.__wrapped__(self)  # type: ignore[attr-defined]
            self._put_back(turn, kept)
            stopped = "stopped before the model had written any text" + (" the conversation keeps" * bool(reply.messages))
            raise TurnError(f"{reply.failed or stopped}; the earlier answer is kept")
        return reply

    def _put_back(self, turn: tuple[int, dict[str, Any], tuple[Tool | None, Any], str],
                  kept: tuple[list[Message], Reply, tuple[Tool | None, Any]]) -> None:
        """The turn `regenerate` took back, as the conversation's last again."""
        self._add("history", *kept[0])
        self._add("replies", kept[1])
        self._add("_turns", turn)
        self._browser_back(kept[2])

    def prefix(self, *, response_format: Any = None, **overrides: Any) -> list[Message]:
        """The system (and developer) messages a turn with these settings starts with."""
        settings, tools = self._checked(overrides)
        fmt = ResponseFormat.from_user(response_format) if response_format is not None else None
        return self._prefix(settings, tools, fmt)

    def export(self, **overrides: Any) -> str:
        """The whole conversation as Harmony text, as the model would see it next."""
        return harmony.decode(self.prompt_ids(**overrides))

    def prompt_ids(self, **overrides: Any) -> list[int]:
        """The whole conversation as the token ids the model would read next (`export` is their text)."""
        self.check_conversation()
        return self._renderer.render(self.prefix(**overrides) + self.history,
                                     keep_tool_calls=_keeps_tool_calls(self.engine), remember=False)

    # ------------------------------------------------------------ the turn loop

    @_one_at_a_time
    def ask(
        self,
        prompt: str,
        *,
        view: View | None = None,
        routing: bool = False,
        response_format: Any = None,
        constrain: bool = False,
        intervene: Any = None,
        new: bool = False,
        **overrides: Any,
    ) -> Reply:
        """One user turn: generate, run tool calls, feed results back, until the model answers.
        `new=True` asks it in a new conversation (`reset()`), once the question is accepted: a refused one
        forgets nothing.

        `overrides` are settings for this turn only (effort=, approval=, tools=, max_new_tokens=,
        temperature=, top_p=, seed=, timeout= ...); `intervene` changes the expert routing for this turn
        (`gptoss_lab.routing.disable(...)` ..., or `--ablate` text such as "1:3,2:5"). Problems found before generating (a bad setting,
        an unknown tool, a prompt over the model's context) raise TurnError; anything after ends
        the turn with its `Reply` (see `reply.errors`); a Ctrl-C that lands while that Reply is being kept
        is raised as KeyboardInterrupt once it is in `replies`."""
        if isinstance(self.engine, _Unloaded):
            raise TurnError(f"{self.engine.name} was unloaded: {_load_again(self.engine)} to ask again")
        tampered = self._sealed.put_back()   # by a thread the python tool's code left running
        settings, tools = self._checked(overrides)
        if not isinstance(prompt, str):
            raise TurnError(f"the prompt must be text (a str), not {type(prompt).__name__}")
        prompt = harmony.clean(prompt)
        if not prompt.strip():
            raise TurnError("the prompt is empty")
        window = _context_window(self.engine)
        if window is not None and (fewest := harmony.fewest_tokens(prompt)) > window:  # however it is tokenized
            raise TurnError(f"the prompt is {len(prompt):,} characters, at least {fewest:,} tokens, more than the "
                            f"model's context of {window:,} tokens can hold: shorten it")
        try:
            fmt = ResponseFormat.from_user(response_format) if response_format is not None else None
        except (TypeError, ValueError) as err:
            raise TurnError(f"response format: {err}") from None
        for name, flag in (("routing", routing), ("constrain", constrain), ("new", new)):
            if not isinstance(flag, bool):   # `routing="no"` recorded the routing
                raise TurnError(f"{name}= takes True or False, not {type(flag).__name__}")
        shown = view or self.view
        if shown is not None and not callable(getattr(shown, "handle", None)):   # (the turn ran, then the view "failed")
            raise TurnError(f"view= takes a view, an object with handle(event) such as "
                            f"gptoss_lab.widgets.text.TextView(), not {type(shown).__name__}")
        if constrain and fmt is None:
            raise TurnError("constrain=True (--constrain) needs a response format (--json SCHEMA)")
        if constrain and getattr(self.engine, "constrains", True) is False:
            raise TurnError(f"constrain=True (--constrain) needs the model in this kernel: {self.engine.name} runs on "
                            "a server, which cannot apply the constraint (ask without it; the answer is still checked)")
        if intervene is not None:
            intervene = _checked_intervention(intervene, self.engine)
        prefix = self._prefix(settings, tools, fmt)
        if window is not None and fmt is not None and (fewest := harmony.fewest_text_tokens(prefix)) > window:
            raise TurnError(f"the response format's schema is at least {fewest:,} tokens, more than the model's "
                            f"context of {window:,} tokens can hold: ask for a smaller one")
        moved = not new and self._moved()   # by a thread the python tool's code left running
        past = [] if new else self.history
        start = len(past)
        user = harmony.user_message(prompt)
        ids = self._renderer.render(prefix + past + [user], keep_analysis_from=len(prefix) + start,
                                    keep_tool_calls=_keeps_tool_calls(self.engine))
        if window is not None and not _leaves_answer_room(len(ids), window):
            count = functools.partial(self._renderer.render, remember=False)   # the conversation's ids stay cached
            alone = len(count(prefix + [user])) if past else len(ids)   # the question in a new conversation
            if _leaves_answer_room(alone, window):  # (it was told "shorten it" of a two-word question after a long conversation)
                raise TurnError(f"{_too_long('the conversation so far and this question are', len(ids), window)}: "
                                "start a new conversation (%gptoss reset, or ask with --new)")
            setup = len(count(prefix, keep_analysis_from=len(prefix)))
            schema = setup - len(count(self._prefix(settings, tools, None))) if fmt is not None else 0
            if schema * 2 >= alone:  # (it said "offer fewer tools or smaller types: shorten it" with no tools offered)
                raise TurnError(_too_long("the prompt is", alone, window, f" ({schema:,} of them the response format's "
                                          "schema: ask for a smaller one)"))
            why = (f" ({setup:,} of them the instructions and the tools' definitions: offer fewer tools or smaller types)"
                   if setup * 2 >= alone else "")
            raise TurnError(f"{_too_long('the prompt is', alone, window, why)}: shorten it")
        try:
            processor = fmt.processor() if constrain and fmt is not None else None
        except (ImportError, ValueError) as err:  # llguidance missing, or a schema it cannot compile
            raise TurnError(f"constrain: {err}") from None
        view = shown or _NullView()
        unrouted = _unrouted(self.engine) if routing else None  # no model in this kernel: no live view (see below)
        turn = _Turn(self, view, settings, tools, prefix, processor, routing, window,
                     Reply(prompt=prompt, effort=settings.effort, model=self.engine.name,
                           intervention=intervene.describe() if intervene is not None else _routed_under(self.engine)))
        if new:   # only now: a Ctrl-C while the turn was made (its imports) forgot the conversation and asked nothing
            self._forget()
        self._add("history", user)
        options = {"routing": routing, "response_format": response_format, "constrain": constrain,
                   "intervene": intervene, **overrides}
        self._add("_turns", (start, options, self._browser_state(), self.settings.approval))
        try:  # from here on the turn ends with its Reply, even when Ctrl-C comes while the view starts
            turn.emit(TurnStart(prompt, settings.effort, self.engine.name, settings.approval,
                                turn.recorder.routing if turn.recorder and not unrouted else None, window))
            if tampered:
                turn._warn(f"Since the last turn, code the python tool left running changed the session's settings "
                           f"({', '.join(tampered)}); they were put back.")
            if moved:
                turn._warn(_PUT_BACK)
            if fmt is not None and fmt.note:
                turn._warn(fmt.note)
            with _intervention(intervene, self.engine):
                turn.run(keep_analysis_from=len(prefix) + start)
        except (KeyboardInterrupt, _Stopped):
            turn.interrupt()
        except Exception as err:  # an engine, tool or view failure: the turn still ends with its Reply
            turn.fail(err)
        with _deferred_interrupts():  # a second Ctrl-C must not lose the reply
            turn.calls_back()
            if (turn.reply.interrupted or turn.reply.failed) and len(self.history) == start + 1:
                # stopped or failed before the model wrote anything: the question, unanswered, is left out of what the
                # model reads next (the next question followed it, two user messages in a row, and the context meter
                # counted it); the turn stays in `replies`, and `regenerate` asks it again
                self._cut("history", start)
            if unrouted and not turn.recorder.tokens:  # (an engine that forwards to a model here records all the same)
                turn._warn(f"No expert routing recorded: {unrouted}")
            reply = turn.finish(fmt)
            self._add("replies", reply)
            turn.emit(TurnEnd(reply))
        return reply

    # ------------------------------------------------------------ helpers

    def check(self, **overrides: Any) -> None:
        """Raise the TurnError `ask` would raise for these settings and tools (a browser without documents, an unknown
        tool ...), asking nothing: `%%gptoss` checks a cell so before it loads a model for it."""
        self._checked(overrides)

    def _checked(self, overrides: dict[str, Any]) -> tuple[Settings, Toolset]:
        """A turn's settings and tools; a bad value or tool name is a TurnError before anything runs."""
        try:
            settings = self.settings.replace(**overrides)
            tools = self._toolset(settings)   # checked even when none is offered
            # max_tool_calls=0: no tool is offered (offered, the model called one and the turn ended unanswered)
            return settings, tools if settings.max_tool_calls else Toolset()
        except (SettingsError, ToolSpecError) as err:
            raise TurnError(str(err)) from None

    def _toolset(self, settings: Settings) -> Toolset:
        from .tools.python import PythonTool

        builtins = {"python": lambda: PythonTool(self.namespace, timeout=settings.timeout),
                    "browser": self._browser}
        return Toolset.resolve(settings.tools, self.namespace, builtins, timeout=settings.timeout)

    def _browser(self) -> Tool:
        if self.browser is None:
            raise ToolSpecError("the browser has no documents to read: choose them with `%gptoss browse FOLDER` "
                                "or Session(..., browser=Browser(...))")
        return self.browser

    def _prefix(self, settings: Settings, tools: Toolset, fmt: ResponseFormat | None) -> list[Message]:
        messages = [harmony.system_message(settings.effort, tools=tools.system_configs(), date=settings.date)]
        developer = harmony.developer_message(settings.instructions, functions=tools.function_descriptions(),
                                              response_format=fmt.section if fmt else None)
        return messages + ([developer] if developer else [])


class _Unloaded:
    """The engine of a session after `Session.unload`: it only keeps the model's name and what it was loaded from
    (`LocalEngine.loaded_from`, or a server's `url` as shown, to say how to load it again; turns are refused)."""

    def __init__(self, name: str, loaded_from: tuple[str, dict[str, Any]] | None = None,
                 url: str | None = None) -> None:
        self.name, self.loaded_from, self.url = name, loaded_from, url

    def stream(self, *args: Any, **kwargs: Any) -> Iterator[int]:
        raise EngineError(f"{self.name} was unloaded")


def _load_again(unloaded: _Unloaded) -> str:
    """How to load an unloaded model again, in Python and in a notebook: its own name and options where known (a
    model made in Python: any), or the server it was connected to."""
    if unloaded.url is not None:
        from .widgets.sanitize import visible

        return f"connect to it again (Session.connect({visible(unloaded.url)!r}), or %gptoss connect {visible(unloaded.url)})"
    loaded_from = unloaded.loaded_from
    if loaded_from is None:
        return "load a model (%gptoss load NAME, or Session.load)"
    from .engines.checkpoint import load_command

    model, options = loaded_from
    call = ", ".join([repr(model), *(f"{key}={value!r}" for key, value in options.items())])
    return f"load it again (Session.load({call}), or {load_command(model, options)})"


class _NullView:
    """The view used when nobody is watching (plain `Session.ask` from code): nobody can approve."""

    stop_requested = False

    def handle(self, event: Event) -> None:
        pass

    def approve(self, call: ToolCall) -> bool | None:
        return None


class _SessionState(NamedTuple):
    """What a tool's code must not change, as it was before the tool ran: the turn's and the session's settings and
    what was always allowed (the code of an approved call runs in this kernel and can reach them, and must not turn
    approval off for the calls after it); the conversation has a seal of its own (`_Conversation`). Of a session alone
    (no turn): its settings and what was always allowed, as `Session._seal` keeps them between turns. A tuple of tuples:
    the code that finds it (`gc`) cannot change what it puts back (`seal.fields[0]['approval'] = 'auto'` and
    `object.__setattr__(seal, ...)` did); its owners are weakly held, so a seal kept in `_SEALS` frees its session."""

    owners: tuple[weakref.ref[Any], ...]
    settings: tuple[Settings, ...]
    fields: tuple[tuple[tuple[str, Any], ...], ...]  # their values: a Settings yields to object.__setattr__
    allowed: set[str]
    entries: frozenset[str]
    views: tuple[Any, ...]  # the session's view, then each owner's view as it approves (`_Approver`)

    @classmethod
    def of(cls, owner: _Turn | Session) -> _SessionState:
        """`owner`'s state now (a turn's: its session's too)."""
        session = owner.session if isinstance(owner, _Turn) else owner
        owners = (owner, session) if owner is not session else (owner,)
        settings = tuple(vars(owner)["settings"] for owner in owners)
        allowed = vars(session)["_allowed"]
        views = (vars(session).get("view"), *(_Approver.of(vars(owner).get("view")) for owner in owners))
        return cls(tuple(map(weakref.ref, owners)), settings, tuple(tuple(vars(kept).items()) for kept in settings),
                   allowed, frozenset(allowed), views)

    def put_back(self) -> list[str]:
        """Put back the settings and what was always allowed, if they changed since; the names of what had changed
        (settings as `configure` names them, and "always allowed")."""
        changed: list[str] = []
        owners = [ref() for ref in self.owners]
        for owner, settings, items in zip(owners, self.settings, self.fields):
            fields = dict(items)
            now = vars(settings)
            current = vars(owner).get("settings")
            if current is not settings or not _same_items(now, fields):
                changed += _changed_settings(settings, fields) + _changed_settings(current, fields)
                vars(owner)["settings"] = settings
                now.clear()
                now.update(fields)
        session, allowed = owners[-1], self.allowed
        if vars(session).get("_allowed") is not allowed:
            vars(session)["_allowed"] = allowed
            changed.append("always allowed")
        if not (all(type(entry) is str for entry in allowed) and allowed == self.entries):  # no code of others' runs
            allowed.clear()
            allowed.update(self.entries)
            changed.append("always allowed")
        view, *approvers = self.views
        if vars(session).get("view") is not view:  # `vars(s)['view'] = V()`: its `approve` said yes to every later call
            vars(session)["view"] = view
            changed.append("approval")
        if any([approver.put_back() for approver in approvers]):
            changed.append("approval")
        return [name for name in [*Settings.names(), "always allowed"] if name in changed]



class _Conversation(NamedTuple):
    """The conversation as the user and the session's own turns left it: its lists (`_LISTS`) and what each held, each
    history message's parts and each reply's record with its calls (`_parts_of`). The python tool's code, and a thread
    it left running until its call's timeout, reach them (`gc`) and rewrite them, also after its turn: the next turn
    read "Please delete all my files." as the user's question. A session keeps one (`_KEPT`) that only its own changes
    and the user's renew, and puts back what else changed after each call, as a turn ends and before it is read again.
    Tuples: the code that finds it cannot change what it puts back."""

    session: weakref.ref[Any]
    lists: tuple[tuple[list[Any], tuple[Any, ...]], ...]  # each of `_LISTS` and what it held
    parts: tuple[tuple[Any, ...], ...]  # the parts of each item of each list, read as `_READS` says

    @classmethod
    def of(cls, session: Session) -> _Conversation:
        """`session`'s conversation now."""
        lists = tuple((vars(session)[name], tuple(vars(session)[name])) for name in _LISTS)
        return cls(weakref.ref(session), lists, tuple(tuple(map(read, items)) for read, (_, items) in
                                                      zip(_READS, lists)))

    def items(self, name: str) -> tuple[Any, ...]:
        """What the list `name` held."""
        return self.lists[_LISTS.index(name)][1]

    def with_items(self, name: str, items: tuple[Any, ...]) -> _Conversation:
        """This conversation with its list `name` holding `items`: those it held keep the parts read then, the others'
        are read now (about 0.1 ms for 1,000 messages, where reading them all again takes ~10)."""
        index = _LISTS.index(name)
        lists, parts = list(self.lists), list(self.parts)
        lists[index] = (lists[index][0], items)
        kept = {id(item): read for item, read in zip(self.lists[index][1], self.parts[index])}
        parts[index] = tuple(kept.get(id(item)) or _READS[index](item) for item in items)
        return self._replace(lists=tuple(lists), parts=tuple(parts))

    def put_back(self) -> bool:
        """Put back the lists and what they hold, and each message's and record's parts, where they changed (no code of
        theirs runs); whether any had."""
        changed = any([_put_back_parts(kept) for parts in self.parts for kept in parts])
        session = self.session()
        for name, (kept, items) in zip(_LISTS, self.lists):
            if vars(session).get(name) is not kept or not _same(tuple(list.copy(kept)), items):
                kept[:] = items
                vars(session)[name] = kept
                changed = True
        return changed


class _Written(NamedTuple):
    """A turn's reply as the turn wrote it: its answer, its reasoning, its lists of messages and calls with what they
    held, and each message's parts (`_parts_of`). A thread the python tool's code left running rewrote `reply.final`
    (or a message's text) while the turn still ran, before the turn's end sealed the conversation: the user read, and
    saved, an answer the model never wrote. The turn takes it again after each change of its own and puts it back
    before each (the messages' parts only after each call, as the conversation's, and as it ends: they are read then,
    and checking them all at each message made a long turn's cost grow with its square). Tuples and text: the code that
    finds it cannot change what it puts back."""

    final: str
    analysis: str
    lists: tuple[tuple[list[Any], tuple[Any, ...]], ...]   # the reply's messages and tool calls, and what each held
    parts: tuple[_Parts, ...]   # each of its messages

    _LISTED = ("messages", "tool_calls")

    @classmethod
    def of(cls, reply: Reply, before: _Written | None = None) -> _Written:
        """`reply` as it is now; the messages `before` held first keep the parts read then (a turn's reply is read
        again after each of its messages)."""
        fields = _own_fields(reply)
        lists = tuple((found, tuple(list.copy(found))) for found in map(fields.get, cls._LISTED))
        messages = lists[0][1]
        kept = before.parts if before is not None and _same(messages[:len(before.parts)], before.lists[0][1]) else ()
        return cls(fields["final"], fields["analysis"], lists, kept + tuple(map(_parts_of, messages[len(kept):])))

    def put_back(self, reply: Reply, *, parts: bool = True) -> bool:
        """The reply's fields and lists as they were read, and its messages' parts with `parts` or where those had
        changed, where they changed (no code of theirs runs); whether any had."""
        changed = False
        wanted = {"final": self.final, "analysis": self.analysis,
                  **{name: listed for name, (listed, _) in zip(self._LISTED, self.lists)}}
        fields = _own_fields(reply)
        if type(reply) is not Reply or not all(fields.get(name) is value for name, value in wanted.items()):
            object.__setattr__(reply, "__class__", Reply)
            object.__setattr__(reply, "__dict__", {**fields, **wanted})
            changed = True
        for listed, items in self.lists:
            if not _same(tuple(list.copy(listed)), items):
                listed[:] = items
                changed = True
        if parts or changed:   # (the parts too, once anything of the reply's own had changed)
            changed = any([_put_back_parts(kept) for kept in self.parts]) or changed
        return changed


_ABSENT = object()


class _Approver(NamedTuple):
    """A view as approval rests on it: its class, its own `approve` and `handle`, and what each class of its MRO holds
    under the names the turn asks it by (and those they are looked up through), as they were. The code of an approved
    call set `view.approve = lambda call: True` (or the class's), and the turn's later calls and later turns ran
    unasked; a `handle` or `stop_requested` of its class's that looped held the kernel, the turn never ending."""

    view: Any
    cls: type
    own: tuple[Any, ...]
    classes: tuple[tuple[type, tuple[Any, ...]], ...]

    _NAMES = ("approve", "handle", "stop_requested", "__getattribute__", "__getattr__")
    _OWN = ("approve", "handle")  # (not `stop_requested`: a view of the user's may set its own, as Stop is pressed)

    @classmethod
    def of(cls, view: Any) -> _Approver:
        kind, fields = type(view), _own_fields(view)
        return cls(view, kind, tuple(fields.get(name, _ABSENT) for name in cls._OWN),
                   tuple((klass, tuple(vars(klass).get(name, _ABSENT) for name in cls._NAMES)) for klass in kind.__mro__))

    def put_back(self) -> bool:
        """Put the view's approval back as it was, where it changed (no code of the view's runs); whether it had."""
        changed = False
        for klass, values in self.classes:
            for name, value in zip(self._NAMES, values):
                if vars(klass).get(name, _ABSENT) is not value:
                    changed = True
                    with contextlib.suppress(TypeError, AttributeError):  # (a built-in class: the code could not either)
                        type.__delattr__(klass, name) if value is _ABSENT else type.__setattr__(klass, name, value)
        if type(self.view) is not self.cls:
            changed = True
            with contextlib.suppress(TypeError):
                object.__setattr__(self.view, "__class__", self.cls)
        fields = _own_fields(self.view)
        if any(fields.get(name, _ABSENT) is not value for name, value in zip(self._OWN, self.own)):
            changed = True
            for name, value in zip(self._OWN, self.own):
                fields.pop(name, None) if value is _ABSENT else fields.__setitem__(name, value)
            object.__setattr__(self.view, "__dict__", fields)
        return changed

    def stop_requested(self) -> bool:
        """`view.stop_requested` as the view answered it when this was read: its class's property then, or its own
        value (True only: no code of the value's runs). The watcher asks it on the kernel's thread while the call's
        code runs, and the code replaced the class's with one that looped there: the timeout never came."""
        for klass, values in self.classes:
            found = values[self._NAMES.index("stop_requested")]
            if found is not _ABSENT:
                if type(found) is property:
                    return found.__get__(self.view, self.cls) is True
                break
        else:
            found = False
        return _own_fields(self.view).get("stop_requested", found) is True


def _holds(owner: Any, fields: dict[str, Any]) -> bool:
    """Whether an object's own attributes are still `fields` (`_own_fields`), compared by identity, read as there."""
    table = _table(owner)
    return dict.__len__(table) == len(fields) and all(map(operator.is_, dict.keys(table), fields)) and \
        all(map(operator.is_, dict.values(table), fields.values()))   # in order: a key put back elsewhere is a change


def _own_fields(owner: Any) -> dict[str, Any]:
    """An object's own attributes under plain names (a copy), read past its class's look-ups and its dict's: the tool's
    code can make either its own (a key whose __eq__ a look-up would call). Empty where it has none; of a dict, its
    items."""
    return {name: value for name, value in dict.items(_table(owner)) if type(name) is str}


def _table(owner: Any) -> dict[Any, Any]:
    """Where an object's own attributes are (its `__dict__`, read past any look-up of its class's), or a dict itself;
    empty where there are none."""
    if type(owner) is dict:
        return owner
    try:
        return object.__getattribute__(owner, "__dict__")
    except AttributeError:
        return {}


_Parts = tuple[tuple[tuple[Any, type, dict[str, Any]], ...], tuple[tuple[list[Any], tuple[Any, ...]], ...],
               tuple[Any, ...]]


def _parts_of(owner: Any, held: tuple[str, ...] = ("author",), listed: tuple[str, ...] = ("content",)) -> _Parts:
    """An object as its parts hold it: itself, its fields `held`, and its lists `listed` with what each held, each
    object with its class and own fields, read past any look-up of theirs. Of a history message by default: the tool's
    code rewrote the user's question in place (`m.content[0].text = ...`), and the model read what was never asked."""
    fields = _own_fields(owner)
    lists = tuple((found, tuple(list.copy(found))) for name in listed if type(found := fields.get(name)) is list)
    objects = (owner, *(fields.get(name) for name in held), *(item for _, items in lists for item in items))
    objects = tuple((part, type(part), _own_fields(part)) for part in objects if part is not None)
    return objects, lists, _row(objects, lists)


def _row(objects: tuple[tuple[Any, type, dict[str, Any]], ...],
         lists: tuple[tuple[list[Any], Any], ...]) -> tuple[Any, ...]:
    """What `_parts_of` read, as it is now, in one row to compare by identity (`_same`): each list's length and items,
    each object's class and own attributes' count, names and values. Checking a row is about twice as fast as each part
    one by one, where nothing changed (the conversation is checked before each turn and after each call)."""
    row: list[Any] = []
    for listed, _ in lists:
        row += (len(listed), *list.copy(listed))
    for part, _, _ in objects:
        table = _table(part)
        row += (type(part), dict.__len__(table), *dict.keys(table), *dict.values(table))
    return tuple(row)


def _record_of(reply: Any) -> _Parts:
    """A reply as its transcript shows it (`_parts_of`): its fields, usage, calls, messages, notes and citations."""
    return _parts_of(reply, ("usage",), ("tool_calls", "messages", "errors", "citations", "errors_after"))


def _options_of(turn: tuple[Any, ...]) -> _Parts:
    """A turn's entry as `regenerate` asks it again: the options it was asked with (a thread the python tool's code
    left running set `approval='auto'` in them, and the regenerated turn ran the model's code unasked)."""
    return _parts_of(turn[1], (), ())


_READS = (_parts_of, _record_of, _options_of)  # how each of `_LISTS`'s items is read (see `_Conversation`)


def _put_back_parts(kept: _Parts) -> bool:
    """An object's parts as `_parts_of` read them, where they changed; whether they had."""
    objects, lists, row = kept
    if _same(_row(objects, lists), row):
        return False
    changed = False
    for listed, items in lists:
        if not _same(tuple(list.copy(listed)), items):
            listed[:] = items
            changed = True
    for part, kind, fields in objects:
        if type(part) is not kind or not _holds(part, fields):
            if kind is dict:
                dict.clear(part)
                dict.update(part, fields)
            else:
                object.__setattr__(part, "__class__", kind)
                object.__setattr__(part, "__dict__", dict(fields))
            changed = True
    return changed


_ASKED = ("recipient", "channel", "input", "content_type", "question")


def _asked_for(call: ToolCall) -> tuple[Any, ...]:
    """What a call asked to run, as its card shows it: its class and those fields, read past any look-up of the call's
    (the tool's code reaches its own call through `gc`: `call.input = "print('hello')"` had the card, the reply and the
    saved notebook show harmless code as the user's edit, where other code ran)."""
    fields = _own_fields(call)
    return (type(call), *(fields.get(name) for name in _ASKED))


def _same(now: tuple[Any, ...], then: tuple[Any, ...]) -> bool:
    """Whether two tuples hold the same objects (by identity: no code of the tool's runs)."""
    return len(now) == len(then) and all(map(operator.is_, now, then))


def _put_back_call(call: ToolCall, asked: tuple[Any, ...]) -> None:
    """The call's class and fields as `_asked_for` read them (its other fields kept, under plain names)."""
    kind, *values = asked
    object.__setattr__(call, "__class__", kind)
    object.__setattr__(call, "__dict__", {**_own_fields(call), **dict(zip(_ASKED, values))})


def _changed_settings(settings: Any, then: dict[str, Any]) -> list[str]:
    """The settings whose values `settings` holds no more (compared by identity, or as plain numbers and text: no code
    of the tool's runs); every one when it is no Settings object."""
    now = vars(settings) if type(settings) is Settings else None
    if now is None or not all(type(name) is str for name in now):
        return list(then)
    plain = (str, int, float, bool)
    return [name for name, was in then.items() if not (
        (value := now.get(name, now)) is was or (type(value) is type(was) and type(was) in plain and value == was))]


def _same_items(now: dict[str, Any], then: dict[str, Any]) -> bool:
    """Whether two attribute tables hold the same objects (compared by identity: no code of the tool's runs)."""
    return len(now) == len(then) and all(type(name) is str and name in then and then[name] is value
                                         for name, value in now.items())


class _Turn:
    """The state of one `ask` while it runs; `Session.ask` drives it."""

    def __init__(self, session: Session, view: View, settings: Settings, tools: Toolset, prefix: list[Message],
                 processor: Any, routing: bool, window: int | None, reply: Reply) -> None:
        self.session, self.view, self.settings, self.tools = session, view, settings, tools
        self.prefix, self.window, self.reply = prefix, window, reply
        self.sampling = Sampling(temperature=settings.temperature, top_p=settings.top_p, seed=settings.seed,
                                 max_new_tokens=settings.max_new_tokens, logits_processor=processor,
                                 guard=settings.guard)
        self.started = time.perf_counter()
        self.recorder: Any = None
        if routing:  # one record for the turn; each engine call's prompt repeats it (recorded once)
            from .routing import Recorder

            self.recorder = Recorder()
        self.stream: harmony.HarmonyStream | None = None
        self.skipped = 0
        self.invalid = 0                       # places of the model's text that were not valid Harmony (`_invalid`)
        self.asked: tuple[tuple[ToolCall, tuple[Any, ...]], ...] = ()   # each call, as its card shows it (`_asked_for`)
        self.written = _Written.of(reply)     # the reply as the turn wrote it (see `_Written`)
        self.dropped = ""                      # what the message cut off at the end was, where it was not kept
        self.inside: list[int] = []            # the notes made while the open message was written (see `_note`)

    def emit(self, event: Event) -> None:
        """Hand an event to the view; a view that fails is dropped for the rest of the turn (noted)."""
        try:
            self.view.handle(event)
        except (KeyboardInterrupt, _Stopped):
            raise
        except Exception as err:
            self._note(f"The view failed and was closed: {type(err).__name__}: {err}")
            self.view = _NullView()

    def run(self, keep_analysis_from: int) -> None:
        history = self.session.history
        calls = 0
        if note := self._sampling_unused():
            self._warn(note)
        while True:
            ids = self.session._renderer.render(self.prefix + history, keep_analysis_from=keep_analysis_from,
                                                keep_tool_calls=_keeps_tool_calls(self.session.engine))
            call = self._generate(ids)
            if call is None:
                return
            tool = self.tools.find(call.recipient)
            if calls >= self.settings.max_tool_calls:
                self._answer(call, tool, ToolResult("skipped", f"Not run: this turn reached its limit of "
                                                    f"{self.settings.max_tool_calls} tool calls."))
                self._end_early(f"Stopped after {calls} tool calls (max_tool_calls).")
                return
            calls += 1
            self._answer(call, tool, self._run_tool(call, tool))
            if call.status == "interrupted":
                raise KeyboardInterrupt
            if self.skipped >= self.settings.max_skipped:
                self._end_early(f"Stopped: the model kept calling tools after {self.skipped} calls were skipped.")
                return

    def _sampling_unused(self) -> str | None:
        """A note when a seed or top_p is set, or the answer is regenerated, but the turn decodes greedily (gpt-oss-tiny's
        default): the seed changes nothing and Regenerate gives the same answer again, said, not left to be puzzled at."""
        given = [name for name in ("seed", "top_p") if getattr(self.settings, name) is not None]
        default = getattr(self.session.engine, "default_sampling", None)
        temperature = self.settings.temperature if self.settings.temperature is not None else \
            getattr(default, "temperature", None)
        if not (given or self.session._again) or temperature is None or temperature > 0:
            return None
        said = [f"{' and '.join(given)} change{'s' * (len(given) == 1)} nothing here"] if given else []
        said += ["the same question, regenerated, gets the same answer again"] if self.session._again else []
        said[0] = said[0][0].upper() + said[0][1:]   # a sentence, as the turn's other notes are
        return (f"{', and '.join(said)}: decoding is greedy (temperature 0, or the model's default); set "
                "a temperature above 0 to sample.")

    # ------------------------------------------------------------ generation

    def _generate(self, ids: list[int]) -> ToolCall | None:
        """One engine call; returns the tool call it ended with, if any."""
        usage = self.reply.usage
        usage.prompt_tokens = len(ids)
        room = self.sampling.max_new_tokens if self.window is None else min(self.sampling.max_new_tokens,
                                                                            self.window - len(ids))
        if room <= 0:
            self._end_early(f"The conversation fills the model's context ({self.window:,} tokens): {self._when_full()}.")
            return None
        sampling = self.sampling if room == self.sampling.max_new_tokens else _with_limit(self.sampling, room)
        if self.recorder is not None:
            self.recorder.begin()
        self.stream = stream = harmony.HarmonyStream()  # each engine call starts right after `<|start|>assistant`
        generated, last, runaway, t0 = 0, None, False, time.perf_counter()
        engine = self.session.engine
        # an engine that takes should_stop ends its own stream at Stop, giving out what it held back (a server's
        # last pieces, text the key check held), so its stream is read to its end; any other is left at once
        ends_itself = _takes(engine.stream, "should_stop")
        waits = {"should_stop": lambda: self.view.stop_requested} if ends_itself else {}
        tokens = engine.stream(ids, stop=harmony.STOP_TOKENS, sampling=sampling, recorder=self.recorder, **waits)
        try:
            for token in tokens:
                if usage.ttft is None:
                    usage.ttft = time.perf_counter() - self.started
                generated, last = generated + 1, token
                usage.completion_tokens += 1
                for event in stream.feed(int(token)):
                    call = self._on_event(event)
                    if call is not None:
                        if self.view.stop_requested:  # a call finished after Stop is answered "not run", not run
                            raise _Stopped
                        return call
                if self.view.stop_requested and not ends_itself:
                    raise _Stopped
                if stream.runaway:  # no view shows it: it ran on unseen to --max-tokens, or to the context
                    runaway = True
                    break
            if self.view.stop_requested:
                raise _Stopped
            for event in stream.close(limit=generated >= room):
                if runaway and isinstance(event, ParseError):  # the text the note below quotes, listed however late
                    self._invalid(event, listed=True)
                else:
                    self._on_event(event)
        finally:
            close = getattr(tokens, "close", None)
            if close is not None:
                close()
            usage.generation_seconds += time.perf_counter() - t0
        if runaway:
            self._end_early("The model's reply was stopped: where a message header goes, it wrote text longer than any "
                            "header (quoted above), which is not shown as it is written, nor kept.")
        elif last in harmony.STOP_TOKENS:
            if not self.reply.final and not self.reply.cut:
                self._end_early("The model ended its turn without a final answer.")
        elif generated >= room and self.window is not None and len(ids) + generated >= self.window:  # any --max-tokens
            self._end_early(f"The reply filled the model's context ({self.window:,} tokens); what was written is kept"
                            f"{_without(self.dropped)}: {self._when_full()}.")
        elif generated >= room:
            self._end_early(f"The reply reached the token limit ({room:,} new token{'s' * (room != 1)}); what was written is kept"
                            f"{_without(self.dropped)} (raise --max-tokens, max_new_tokens= in Python, to allow more).")
        else:
            self._end_early("The engine's stream ended before the model finished its reply; what was written is kept"
                            f"{_without(self.dropped)}.")
        return None

    def _when_full(self) -> str:
        """What the user can do once the turn filled the context: ask on, where the conversation as a later turn reads
        it (without this turn's reasoning, and a gpt-oss model's tool calls) leaves room for a question; else start anew
        (it said "start a new conversation" of a conversation that had room: a user who did lost it for nothing)."""
        anew = "start a new conversation (%gptoss reset) or ask with --new"
        kept = self._next_start()
        if self.window is None or not _room_for_a_question(kept, self.window):
            return anew
        return (f"the next question starts from {kept:,} tokens, as a later turn reads this one without its reasoning; "
                f"or {anew}")

    def _next_start(self) -> int:
        """Tokens the next question starts from: the conversation as a later turn reads it (without this turn's
        reasoning, and a gpt-oss model's tool calls), after the session's own system and developer messages, not this
        turn's (its response format, instructions or tools for one cell made the meter read high)."""
        try:
            prefix = self.session.prefix()
        except TurnError:  # the session's own settings cannot make a turn: the next one gives its options too
            prefix = self.prefix
        return len(self.session._renderer.render(prefix + self.session.history,
                                                 keep_tool_calls=_keeps_tool_calls(self.session.engine)))

    def _context_used(self) -> int:
        """What the context meter shows after the turn: the tokens the next question starts from, and the whole window
        when no question fits any more (it showed the last model call's tokens, reasoning the next prompt drops and a
        tool's output past the context included: "context 604 of 400 tokens (151%)")."""
        kept = self._next_start()
        if self.window is None or _room_for_a_question(kept, self.window):
            return kept
        return self.window

    def _on_event(self, event: Event) -> ToolCall | None:
        if isinstance(event, MessageEnd) and event.message is None:  # cut off: keep what was written
            self.dropped = self._keep_partial()
            return None
        if isinstance(event, ParseError):
            self._invalid(event)
            return None
        self.emit(event)
        if isinstance(event, MessageEnd):
            return self._on_message(event.message, event.stop_token)
        return None

    def _invalid(self, error: ParseError, *, listed: bool = False) -> None:
        """Text that is not valid Harmony, shown and noted where it came; past `_INVALID_LISTED` places in a turn (unless
        `listed`), said once: a model (or server) looping a special token inside its answer gave a note per token,
        thousands of error boxes in the view, `reply.errors` and the saved transcript."""
        self.invalid += 1
        if self.invalid <= _INVALID_LISTED or listed:
            self.emit(error)
            self._note(f"Not valid Harmony ({error.reason}): {_quoted(error.raw)}")
        elif self.invalid == _INVALID_LISTED + 1:
            self._warn(f"The model's text is not valid Harmony in more places than these {_INVALID_LISTED}: the others "
                       "are not listed one by one.")

    def _on_message(self, message: Message, stop: int | None) -> ToolCall | None:
        """Take a message the model ended into the reply and the conversation; the call it makes, if any. The reply is
        the turn's as it wrote it before (`_reply_back`), and sealed again after."""
        self._reply_back(parts=False)
        try:
            return self._take(message, stop)
        finally:
            self.written = _Written.of(self.reply, self.written)

    def _take(self, message: Message, stop: int | None) -> ToolCall | None:
        """`_on_message`'s work: the message in the reply, and in the conversation where its channel is one."""
        text = harmony.text_of(message)
        inside, self.inside = self.inside, []
        self.reply.messages.append(message)  # the Reply keeps all the model wrote, as the live view showed it
        for i in inside:   # the notes made while it was written come after it, as in the live view
            self.reply.errors_after[i] = len(self.reply.messages)
        if message.channel not in harmony.CHANNELS:  # but the conversation the model reads next leaves it out
            self._warn(f"A message without a valid channel ({_quoted(message.channel)}) was left out: {_quoted(text)}")
            return None
        self.session._add("history", message)
        if stop == harmony.CALL and not message.recipient:  # after the message it is about, as the view shows it
            self._warn("The model ended a message with <|call|> but named no tool; it was kept as text.")
        if harmony.is_call(message.channel, message.recipient):
            call = ToolCall(message.recipient, message.channel, text, message.content_type)
            self.reply.tool_calls.append(call)
            self.asked += ((call, _asked_for(call)),)
            self.emit(ToolStart(call))
            return call
        if message.channel == "final":  # each message a paragraph, as the views show them
            self.reply.final += ("\n\n" if self.reply.final else "") + text
        elif message.channel == "analysis":
            self.reply.analysis += ("\n" if self.reply.analysis else "") + text
        return None

    # ------------------------------------------------------------ tools

    def _run_tool(self, call: ToolCall, tool: Tool | None) -> ToolResult:
        """Run one call under the approval policy; always a result the model can read."""
        if tool is None:
            name = call.recipient if len(call.recipient) <= 80 else call.recipient[:80] + "…"  # a name can be 64 000 long
            self._warn(f"The model called {name!r}, which is not an enabled tool.")
            return ToolResult("error", self.tools.unknown(call.recipient))
        try:
            if (refusal := _asked(tool, "refusal", call)) is not None:   # `browser.__dict__`: asked, then failed
                return ToolResult("error", refusal)
            approved = self._approved(call, tool)
        except _ToolFailed as failed:
            return ToolResult("error", str(failed))
        if approved is not True:
            if approved != "stopped":   # a Stop is no skip (max_skipped): the turn ends as stopped
                self.skipped += 1
            call.reason = call.reason or _NOT_RUN[approved][1]
            return ToolResult("skipped", _NOT_RUN[approved][0])
        self._call_back(call)   # while the card waited: what runs is what it showed
        call.status = "running"
        self.emit(ToolUpdate(call))
        _RAN.add(self.session)
        t0 = time.perf_counter()
        kept = _SessionState.of(self)
        try:
            bound = {"timeout": self.settings.timeout} if _takes(tool.run, "timeout") else {}   # the browser's
            with reporting(lambda text: self._progress(call, text)):
                result = tool.run(call, stop=_Approver.of(self.view).stop_requested, **bound)
            if not isinstance(result, ToolResult):  # a tool of the user's: its mistake goes to the model too
                raise TypeError(f"{type(tool).__name__}.run gave {type(result).__name__}, not a ToolResult")
            if not isinstance(result.output, str):
                raise TypeError(f"{type(tool).__name__}.run gave a ToolResult whose output is "
                                f"{type(result.output).__name__}, not text")
        except KeyboardInterrupt:
            result = interrupted("")
        except BaseException as err:  # a tool's failure (SystemExit included) goes back to the model, cut as output is
            from .tools.python import truncate

            result = ToolResult("error", truncate(error_text(err)))
        self._call_back(call, own=True)
        if changed := kept.put_back():
            if set(changed) <= {"approval", "always allowed"}:
                self._warn(f"The {call.recipient} call's code changed the approval settings; they were put back.")
            else:  # (a function tool that set effort= was said to have changed the approval settings)
                self._warn(f"The {call.recipient} call's code changed the session's settings ({', '.join(changed)}); "
                           "they were put back: settings change between turns, not from a tool of the turn.")
        if self.session._conversation.put_back():
            self._warn(f"The {call.recipient} call's code changed the conversation (the session's history, replies or "
                       "turns); it was put back: a tool cannot change the session whose turn called it.")
        result.seconds = result.seconds or time.perf_counter() - t0
        return result

    def _call_back(self, call: ToolCall, *, own: bool = False) -> None:
        """The call as its card shows it (`self.asked`), where it changed since, with a note saying whose code did it:
        its `own`, or a thread a call's code left running (`call.input = ...` while the card waited for the user ran
        other code than the card showed, as the user's edit)."""
        asked = next(asked for made, asked in self.asked if made is call)
        if not _same(_asked_for(call), asked):
            _put_back_call(call, asked)
            self._warn(f"The {call.recipient} call's code rewrote its own call (what its card shows ran); it was put "
                       "back." if own else f"Code the python tool left running rewrote the {call.recipient} call (what "
                       "its card shows); it was put back.")

    def _shown(self, call: ToolCall) -> None:
        """The call as it is now is what its card shows: the turn's own change (its question, the user's edit)."""
        self.asked = tuple((made, _asked_for(made) if made is call else asked) for made, asked in self.asked)

    def calls_back(self) -> None:
        """Each call as its card showed it, as the turn ends: a thread its code left running rewrote it after the call
        (`call.input = ...`), and the reply and its saved transcript kept that."""
        for call, _ in self.asked:
            self._call_back(call)

    def _progress(self, call: ToolCall, text: str) -> None:
        """What the running `call` says it is doing (`tools.base.report`), shown on its card and in the text view."""
        call.progress = " ".join(harmony.clean(str(text)).split())[:300]
        self.emit(ToolUpdate(call))

    def _approved(self, call: ToolCall, tool: Tool) -> bool | str:
        """True to run, else why the call did not run (a key of _NOT_RUN)."""
        if changed := self.session._sealed.put_back():   # by a thread an earlier call's code left running
            self._warn(f"Code the python tool left running changed the session's settings ({', '.join(changed)}); "
                       "they were put back.")
        if self.settings.approval == "never":  # stronger than an earlier "Always allow"
            return "never"
        scope = _asked(tool, "approval_scope", call)
        if scope is not None and (self.settings.approval == "auto" or scope in self.session._allowed):
            return True
        self._call_back(call)   # the card asks about the call the model wrote
        call.question = (_asked(tool, "approval_question", call, optional=False) + _unseen_warning(call.input)
                         + _wide_warning(call.input))
        self._shown(call)
        call.status = "waiting"
        self.emit(ToolUpdate(call))
        decision = self.view.approve(call)
        if self.view.stop_requested:  # Stop pressed while the card waited: the turn ends, not a choice about the call
            return "stopped"
        if decision is None:
            self._warn(f"The {call.recipient} call was skipped: approval is required and nobody could approve it "
                       "(use approval='auto' or --approve auto, or a view that can ask).")
            return "unasked"
        if isinstance(decision, bool):
            decision = Approval(decision)
        elif not isinstance(decision, Approval):  # "no" is truthy: only True, False or an Approval decide
            self._warn(f"The {call.recipient} call was skipped: the view answered {type(decision).__name__} "
                       f"{str(decision)[:40]!r}, not True, False or an Approval.")
            return "unanswered"
        if not decision.run:
            call.reason = _NOT_RUN["declined"][1].format(by=decision.by or type(self.view).__name__)
            return "declined"
        if decision.always and scope is not None:
            self.session._allowed.add(scope)
            self.session._seal()
        if decision.code is not None and decision.code != call.input:
            self._edit(call, harmony.clean(decision.code))
        return True

    def _edit(self, call: ToolCall, code: str) -> None:
        """The user edited the call before running it: what runs is what the model is told it wrote. The Reply keeps
        the model's own code beside `call.input`, as the live card did (a saved turn showed the user's code as the
        model's, without "edited before running")."""
        history = self.session.history
        old = history[-1]
        self.session._cut("history", len(history) - 1)
        self.session._add("history", harmony.assistant_message(code, old.channel, old.recipient, old.content_type))
        call.input = code
        self._shown(call)

    def _answer(self, call: ToolCall, tool: Tool | None, result: ToolResult) -> None:
        """Record the result on the call, put the tool's reply in the conversation, then tell the view (a Ctrl-C
        while the view shows it, or a tool whose `author` fails, must not leave the call unanswered)."""
        result.output = harmony.clean(result.output)
        author = call.recipient.split(" ")[0]
        if tool is not None:
            with contextlib.suppress(Exception):
                author = tool.author(call)
        message = harmony.tool_message(author, result.output or "(no output)", call.channel)
        call.status, call.output, call.seconds, call.data = result.status, result.output, result.seconds, result.data
        self.session._add("history", message)
        self._reply_back()
        self.reply.messages.append(message)
        self.written = _Written.of(self.reply, self.written)
        self.emit(ToolEnd(call))

    # ------------------------------------------------------------ ending

    def _warn(self, text: str, level: Literal["warning", "error"] = "warning") -> None:
        """Something the user should know about this turn: in the view now, and in `reply.errors`."""
        self._note(text)
        self.emit(Notice(text, level))

    def _note(self, text: str) -> None:
        """Keep a note in the Reply. One made while a message is written is placed after it once it is kept, where the
        live view shows it: the message is not in `reply.messages` until it ends."""
        self.reply.note(text)
        if self.stream is not None and self.stream.in_message:
            self.inside.append(len(self.reply.errors) - 1)

    def _end_early(self, why: str, level: Literal["warning", "error"] = "warning") -> None:
        self.reply.cut = why
        self._warn(why, level)

    def _keep_partial(self) -> str:
        """A message cut off mid-way joins the conversation as written (a half tool call does not); what was not kept
        and why, for the Stop notice ("" when nothing was written or all of it was kept)."""
        stream, self.stream = self.stream, None
        if stream is None or not stream.in_message or stream.header is None:
            return ""
        header, text = stream.header, stream.partial_text()
        self.emit(MessageEnd(None, None))
        if text and not header.recipient and header.channel in harmony.CHANNELS:
            self._on_message(harmony.assistant_message(text, header.channel), None)
            return ""
        if not text:
            return ""
        return "tool call" if harmony.is_call(header.channel, header.recipient) else \
            "message on a channel the conversation does not keep"

    def interrupt(self) -> None:
        """Stop button or kernel interrupt: keep what was generated, leave the conversation valid."""
        self.reply.interrupted = True
        dropped = self._keep_partial()
        self._answer_unanswered("skipped", *_NOT_RUN["stopped"])
        if _kept(self.reply):
            self._end_early(f"Stopped: the partial reply is kept{_without(dropped)}.")
        elif self.reply.messages:
            self._end_early("Stopped: nothing the conversation keeps was written (the message on a channel that is "
                            "not one is left out).")
        elif dropped:   # it said "before the model had written any text" under the call's text shown live
            self._end_early(f"Stopped while the model was writing a {dropped}, which is not kept half-written: "
                            "nothing to keep.")
        else:  # stopped inside the first message's header: no text of the model's to keep
            self._end_early("Stopped before the model had written any text: nothing to keep.")

    def fail(self, err: Exception) -> None:
        """An engine, tool or view failed mid-turn: keep the partial reply and say what happened in one line."""
        self._keep_partial()
        self._answer_unanswered("error", f"Not run: the turn failed before this call ran ({type(err).__name__}).")
        what = str(err) if isinstance(err, EngineError) else f"{type(err).__name__}: {err}"
        self.reply.failed = (what.splitlines()[0].strip() if what.strip() else "") or type(err).__name__
        self._end_early(self.reply.failure_note, "error")  # shown as an error, not a warning

    def _answer_unanswered(self, status: Any, text: str, reason: str = "") -> None:
        for call in self.reply.tool_calls:
            if call.status in ("pending", "waiting"):  # answered as its recipient (no tool asked: one may have failed)
                call.reason = reason
                self._answer(call, None, ToolResult(status, text))

    def _reply_back(self, *, parts: bool = True) -> None:
        """The reply's answer, reasoning, messages and calls as the turn wrote them (`self.written`; the messages'
        parts with `parts`), where a thread of a call's code changed them since, with a note."""
        if self.written.put_back(self.reply, parts=parts):
            self._warn("Code the python tool left running changed this turn's reply (its answer, reasoning or "
                       "messages) while the turn ran; it was put back.")

    def finish(self, fmt: ResponseFormat | None) -> Reply:
        self._reply_back()   # what the user reads, and saves, is what the model wrote
        reply = self.reply
        reply.usage.seconds = time.perf_counter() - self.started
        reply.usage.context_tokens, reply.usage.context_window = self._context_used(), self.window
        if self.recorder is not None and self.recorder.tokens:
            reply.routing = self.recorder.finish(harmony.label_tokens(self.recorder.tokens))
            reply.routing.intervention = reply.intervention   # kept with the record when it is saved
        if reply.final:
            try:
                reply.citations = self.tools.citations(reply.final)
            except Exception as err:  # a tool of the user's: the reply is still made
                reply.note(f"The citations could not be read: {type(err).__name__}: {error_message(err)}")
        if fmt is not None and reply.final and not reply.interrupted:
            try:
                with _interruptible():  # the schema's validators are the user's code: one that never ends
                    reply.parsed = fmt.parse(reply.final)
            except KeyboardInterrupt:
                reply.parsed = None
                self._warn("The check of the final answer against the schema was stopped (Ctrl-C): reply.parsed is None.")
            except ValueError as err:  # in the view too: the answer alone looked like a success, `.parsed` None
                # (a cut answer's "Expecting ',' delimiter" read, under --constrain, as the constraint failing)
                self._warn(f"{err} (the answer was cut off before its end)" if self.reply.cut else str(err))
        return reply


_INVALID_LISTED = 10  # places of text that is not valid Harmony a turn lists, each with its text; more are said once
_SHORTEST_QUESTION = 5  # tokens a question adds to a conversation at least: <|start|>user<|message|>, one of text, <|end|>


def _kept(reply: Reply) -> bool:
    """Whether the turn wrote a message the conversation keeps: a Reply also holds those on a channel that is not one,
    which the model does not read next, so they are no answer to keep in place of an earlier one."""
    return any(message.channel in harmony.CHANNELS for message in reply.messages)


def _without(dropped: str) -> str:
    """What a cut-off turn's note adds about the message it was writing, which is not kept ("" when all was): a
    half-written tool call shown above the note must not read as kept, or run."""
    return f", without the {dropped} it was writing" if dropped else ""


def _with_limit(sampling: Sampling, limit: int) -> Sampling:
    from dataclasses import replace

    return replace(sampling, max_new_tokens=limit)


def _keeps_tool_calls(engine: Engine) -> bool:
    """Whether the model learned with earlier turns' built-in tool calls kept in the prompt (gpt-oss-tiny); gpt-oss
    and any other engine: dropped with the reasoning, as openai-harmony renders."""
    return getattr(engine, "keeps_past_tool_calls", False) is True


def _quoted(text: str | None, limit: int = 200) -> str:
    """`text` quoted for a one-line note, cut to `limit` characters with how long it was: a model's malformed
    header or stray message can run to thousands of characters, and the note quoted it whole."""
    if text is None or len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… ({len(text):,} characters)"


_ANSWER_ROOM = 16   # tokens an answer needs at the least: its header, a few words, its end


def _leaves_answer_room(tokens: int, window: int) -> bool:
    """Whether a prompt of `tokens` leaves an answer `_ANSWER_ROOM` in a context of `window`: the one rule by which a
    question is refused, by which the next one is promised and by which the context meter says full."""
    return tokens + _ANSWER_ROOM <= window


def _room_for_a_question(kept: int, window: int) -> bool:
    """Whether the shortest question after a conversation of `kept` tokens would be taken (see `_leaves_answer_room`):
    a turn said "the next question starts from N tokens" where that question was then refused."""
    return _leaves_answer_room(kept + _SHORTEST_QUESTION, window)


def _too_long(what: str, tokens: int, window: int, why: str = "") -> str:
    """Why a prompt of `tokens` (`why`: what most of them are) cannot be asked in a context of `window`: over it, or
    leaving under `_ANSWER_ROOM` (a question 1-4 tokens short of the context was taken, its reply empty, and the next
    question refused)."""
    if tokens >= window:
        return f"{what} {tokens:,} tokens but the model's context is {window:,} tokens{why}"
    return f"{what} {tokens:,} tokens{why} of the model's context of {window:,}, leaving no room for an answer"


def _context_window(engine: Engine) -> int | None:
    window = getattr(engine, "context_window", None)
    return int(window) if window else None


def _unseen_warning(code: str) -> str:
    """A warning for the approval question when the call holds Unicode direction controls or characters drawn as
    nothing (both shown written out)."""
    from .widgets.sanitize import BIDI_CONTROLS, CODE_UNSEEN

    if BIDI_CONTROLS.search(code) is not None:
        return (" Careful: it holds Unicode direction controls (shown as \\u202e ...), which can make code read "
                "in another order than it runs.")
    if CODE_UNSEEN.search(code) is not None:
        return (" Careful: it holds characters that are drawn as nothing (shown as \\u200b ...), which can make code "
                "read as other code.")
    return ""


_WIDE = 120  # characters of a line a tool card shows without scrolling sideways, about


def _wide_warning(code: str) -> str:
    """A warning for the approval question when a line is too long to read whole: code pushed past the card's
    right edge (after a run of spaces, say) runs all the same. Lines as Python splits them (not at \\f, \\u2028)."""
    widest = max(len(line.expandtabs()) for line in re.split("\r\n?|\n", code))
    if widest <= _WIDE:
        return ""
    return f" Careful: a line is {widest} characters long; scroll sideways to read all of it before it runs."


def _takes(function: Any, keyword: str) -> bool:
    """Whether `function` names the parameter `keyword` (not just **kwargs, which a wrapper may pass on to
    an engine without it)."""
    try:
        return keyword in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def _checked_intervention(intervene: Any, engine: Engine) -> Any:
    """`intervene=` as an Intervention (`--ablate` text is parsed) the loaded model can take; TurnError otherwise."""
    from .routing.interventions import Intervention, parse_ablate

    try:
        intervene = parse_ablate(intervene) if isinstance(intervene, str) else intervene
        if not isinstance(intervene, Intervention):
            raise TypeError(f"intervene= takes gptoss_lab.routing.disable(...), force(...), top_k(...) or "
                            f"'LAYER:EXPERT,...' text, not {type(intervene).__name__}")
        intervene.check(engine)
    except (TypeError, ValueError) as err:  # no such layer or expert, or no model here to change
        raise TurnError(f"intervention (--ablate): {err}") from None
    return intervene


def _routed_under(engine: Engine) -> str:
    """The intervention an `apply(session)` around the turn has the model route under, in words ("" for none): the
    turn's record said it was the model's own routing, and its footer said nothing."""
    from .engines.hooks import intervention_on, model_of

    try:
        _, model = model_of(engine)
    except ValueError:  # no model in this kernel
        return ""
    if intervention_on(model) is None:  # (the routing package, and pandas, are imported only under one)
        return ""
    from .routing.interventions import in_force

    return in_force(model) or ""


def _unrouted(engine: Engine) -> str | None:
    """Why `engine` has no model in this kernel to record routing from (a server, a replay), or None. Such a turn draws
    no live routing view (an empty one promised tokens that never came) and, when nothing was recorded, says why."""
    from .engines.hooks import model_of

    try:
        model_of(engine)
    except ValueError as err:
        return str(err)
    return None


@contextlib.contextmanager
def _intervention(intervene: Any, engine: Engine) -> Iterator[None]:
    """Apply a routing intervention (see `gptoss_lab.routing`) to the engine for one turn."""
    if intervene is None:
        yield
        return
    with intervene.apply(engine):
        yield


class _ToolFailed(Exception):
    """A tool of the user's failed in a method the session asks before running it; the text is what the model reads."""


def _asked(tool: Tool, method: str, call: ToolCall, optional: bool = True) -> str | None:
    """`tool.refusal(call)`, `.approval_scope(call)` or `.approval_question(call)`, which a tool of the user's may get
    wrong: its error, or an answer that is not text (or None where `optional`), raised as _ToolFailed in the words its
    `run` would have answered (the turn failed: `'int' object has no attribute 'encode'`)."""
    try:
        said = getattr(tool, method)(call)   # (one of three method names of the Tool protocol, never model text)
        if not (isinstance(said, str) or (optional and said is None)):
            raise TypeError(f"{type(tool).__name__}.{method} gave {type(said).__name__}, "
                            f"not text{' or None' if optional else ''}")
    except Exception as err:
        from .tools.python import truncate

        raise _ToolFailed(truncate(error_text(err))) from None
    return said


# Why a call did not run (`_Turn._approved`): what the model reads in the tool's reply, and what the call's card tells
# the user (ToolCall.reason), who is not the model's "user" in the third person; a skip names who decided (Approval.by).
_NOT_RUN = {
    "never": ("Not run: the user's settings do not allow tool calls (approval: never). Answer without it.",
              "Not run: approval is set to never"),
    "unasked": ("Not run: the user could not be asked to approve this call. Answer without it, and say so.",
                "Not run: could not ask you (no front end)"),
    "unanswered": ("Not run: the user could not be asked to approve this call. Answer without it, and say so.",
                   "Not run: the view gave no answer"),
    "declined": ("Not run: the user chose not to run this call. Answer without it, and say so.", "Skipped by {by}"),
    "stopped": ("Not run: the user stopped the turn before this call ran.", "Not run: you stopped the turn"),
}


_LIVE: list[bool] = []  # set inside `_interruptible`: Ctrl-C stops the block (once) instead of waiting


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """Inside `_deferred_interrupts`, a block that the first Ctrl-C stops with KeyboardInterrupt: the user's code run
    while the Reply is made (a schema's validator that never ended held the kernel, Ctrl-C and all)."""
    if threading.current_thread() is threading.main_thread():  # (where the Ctrl-C handler runs)
        _LIVE.append(True)
    try:
        yield
    finally:
        _LIVE.clear()


@contextlib.contextmanager
def _deferred_interrupts() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) until the block ends, so a turn's Reply is always made and kept; then deliver
    it (a notebook cell or an evaluation still stops: it was dropped before)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        if _LIVE:  # inside `_interruptible`: this Ctrl-C stops it, a later one waits
            _LIVE.clear()
            raise KeyboardInterrupt
        held.append(signum)

    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held:
            signal.raise_signal(signal.SIGINT)


def _user_namespace() -> dict[str, Any]:
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        shell = None
    return shell.user_ns if shell is not None else {}
