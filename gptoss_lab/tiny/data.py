"""Synthetic multi-turn Harmony conversations for gpt-oss-tiny, made by running a real `Session`.

A conversation is 1-8 user turns that mix the skills of `skills.py`, with follow-ups that refer
back ("now divide that by 3"). A teacher engine writes the assistant's messages; everything else
is the lab's own code, so the model trains on exactly what users' sessions show it: `Session`
builds the system and developer messages from its tools, renders the prompts (earlier turns'
analysis dropped, the current tool loop kept), runs python in the conversation's namespace,
calls the functions, asks the (scripted) approval view and answers skipped calls.

The training sequence of a conversation is what the model reads while writing its last turn,
followed by that turn. The loss covers the last turn's assistant messages (as generated, from
the token after the prompt's `<|start|>assistant`) and, in earlier turns, the contents of the
tool calls and final answers the conversation kept (not their headers: there the model had
written analysis first, which the rendering dropped).
"""
from __future__ import annotations

import copy
import datetime as _dt
import inspect
import json
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from openai_harmony import Conversation as _HarmonyConversation
from openai_harmony import Role

from .. import harmony
from ..events import Approval, Event, ToolCall
from ..session import Session
from ..tools.functions import FunctionTool
from . import NEW_TOPICS, browsing, skills
from .skills import FunctionSet, Gen, Turn

TURNS = (1, 2, 3, 4, 5, 6, 7, 8)
_TURN_WEIGHTS = (0.2, 0.17, 0.14, 0.12, 0.1, 0.09, 0.09, 0.09)
DOCUMENTS = 0.35         # chance that a conversation has a document folder to browse
WITHOUT_PYTHON = 0.2     # chance that a conversation with documents or functions offers only those (`--tools browser`)
_NEEDS_PYTHON = frozenset({"arithmetic", "kernel", "dataframe", "structured", "error", "define"})
FOLLOW_UP = 0.5          # chance that a turn follows up the previous one (when it can be followed up)
LONG_TOKENS = (8400, 9400)   # a long conversation's length, in tokens


@dataclass
class Conversation:
    """A scripted conversation: its turns (with what the teacher's run established), the user's
    variables and tools before it started, and its training sequence."""

    turns: list[Turn]
    namespace: dict[str, Any]                      # the user's variables before the first turn
    functions: FunctionSet | None                  # the function tools it lists (turns set their answers)
    date: str
    library: Any = None                            # the documents the browser reads (browsing.Library), or None
    long: bool = False
    python: bool = True                            # whether the python tool is offered
    ids: list[int] = field(default_factory=list)   # the training sequence
    covered: list[bool] = field(default_factory=list)   # covered[p]: the loss predicts ids[p] (from p - 1)

    def tools(self) -> list[Any]:
        """The tools the conversation's Session offers: python (unless left out), its functions, the browser."""
        return [*(["python"] if self.python else []), *(function_tools(self.functions) if self.functions else []),
                *(["browser"] if self.library is not None else [])]

    @property
    def effort(self) -> str:
        return self.turns[-1].effort


# ---------------------------------------------------------------- the teacher and the scripted user

class Teacher:
    """An Engine that writes the current turn's scripted messages, reading each tool result first."""

    name = "teacher"
    keeps_past_tool_calls = True   # gpt-oss-tiny learns with earlier turns' tool calls in the prompt (as Session renders)

    def __init__(self) -> None:
        self.session: Session | None = None
        self.policy: Iterator[list[skills.Out]] | None = None
        self.trained: list[bool] = []      # per assistant message written, in order
        self.last: list[int] = []          # the last prompt and what was generated after it

    def stream(self, prompt: Sequence[int], *, stop: Any = (), sampling: Any = None, recorder: Any = None) -> Iterator[int]:
        assert self.session is not None and self.policy is not None
        last = self.session.history[-1]
        batch = next(self.policy) if last.author.role == Role.USER else self.policy.send(harmony.text_of(last))
        ids: list[int] = []
        for i, (message, trained) in enumerate(batch):
            rendered = harmony.encoding().render(message)
            ids += rendered[2:] if i == 0 else rendered      # the prompt ends with <|start|>assistant
            self.trained.append(trained)
        if ids[-1] == harmony.END:
            ids[-1] = harmony.RETURN
        self.last = [*prompt, *ids]
        return iter(ids)


class ScriptedUser:
    """The approval view: answers each call as the turn's script says (True run, False skip, None nobody)."""

    stop_requested = False

    def __init__(self) -> None:
        self.decisions: list[bool | None] = []

    def handle(self, event: Event) -> None:
        pass

    def approve(self, call: ToolCall) -> Approval | bool | None:
        return self.decisions.pop(0) if self.decisions else True


def function_tools(fs: FunctionSet) -> list[FunctionTool]:
    """Real function tools for the conversation's functions: each returns the result the current
    turn set in `fs` (or raises its error), with the signature and description of `skills.FUNCTIONS`."""
    types = {"string": str, "number": float, "integer": int}
    tools = []
    for name in fs.names:
        description, schema = skills.FUNCTIONS[name]
        params = [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, annotation=types[v["type"]])
                  for k, v in schema["properties"].items()]

        def call(_name: str = name, **kwargs: Any) -> Any:
            # other arguments than the turn's get no data: a model that asked for IBMZN got IBM's price (or IBM's
            # error), so a wrong call could still be scored a right answer
            if _name in fs.args and kwargs != fs.args[_name]:
                raise ValueError(f"the service has no data for {json.dumps(kwargs)}")
            if _name in fs.errors:
                raise ValueError(fs.errors[_name])
            return fs.results.get(_name, {})

        stub = _with_signature(call, name, params)
        tools.append(FunctionTool(stub, name=name, description=description))
    return tools


def _with_signature(call: Callable[..., Any], name: str, params: list[inspect.Parameter]) -> Callable[..., Any]:
    def function(**kwargs: Any) -> Any:
        return call(name, **kwargs)

    function.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    function.__annotations__ = {p.name: p.annotation for p in params}
    function.__name__ = name
    return function


# ---------------------------------------------------------------- conversations

def _date(g: Gen) -> str:
    return (_dt.date(2024, 1, 1) + _dt.timedelta(days=g.rng.randrange(3 * 365))).isoformat()


def new_turn(g: Gen, effort: str, ns: dict[str, Any], fs: FunctionSet | None, library: Any,
             topics: Mapping[str, float] = NEW_TOPICS, python: bool = True) -> Turn:
    """A turn on a new topic, its skill drawn from `topics` (among those the conversation's tools allow)."""
    weights = {k: w for k, w in topics.items()
               if (k != "function" or fs) and (k != "browse" or library) and (python or k not in _NEEDS_PYTHON)}
    skill = g.rng.choices(list(weights), list(weights.values()))[0]
    if skill == "arithmetic":
        return skills.arithmetic(g, effort)
    if skill in ("kernel", "dataframe"):
        return skills.variable(g, effort, ns, g.pick(("list", "dict", "str", "list")) if skill == "kernel" else "frame")
    if skill == "function":
        return skills.function_turn(g, effort, fs)  # type: ignore[arg-type]
    if skill == "browse":
        return browsing.missing(g, effort, library) if g.chance(0.12) else browsing.browse(g, effort, library)
    if skill == "structured":
        return skills.structured(g, effort, ns)
    if skill == "error":
        return skills.error(g, effort, ns, fs)
    if skill == "skip":
        base = g.rng.random()
        if library and (base < 0.25 or not (python or fs)):
            return skills.skip(browsing.browse(g, effort, library), g)
        if fs and (base < 0.3 or not python):
            return skills.skip(skills.function_turn(g, effort, fs), g)
        if base < 0.65:
            return skills.skip(skills.arithmetic(g, effort), g)
        return skills.skip(skills.variable(g, effort, ns), g)
    if skill == "define":
        return skills.define(g, effort, ns)
    return skills.direct(g, effort)


def conversation(seed: Any, split: str = "train", *, long: bool = False, turns: int | None = None,
                 topics: Mapping[str, float] | None = None, more: bool = False, fresh: bool = False,
                 wide: bool = False) -> Conversation:
    """One conversation from `seed`, run through a real Session with the teacher engine. `topics`
    reweights NEW_TOPICS for a training phase; a browse weight above the default also gives more
    conversations a document folder, in proportion (the same seed draws the same with none given).
    `more`: training questions are also drawn from the pools' further sentences (`skills.Pool.more`);
    `fresh`: held-out questions are asked in the pools' fresh held-out sentences (`skills.Pool.fresh`);
    `wide`: training questions are also drawn from the pools' `skills.Pool.wide` sentences."""
    g = Gen(random.Random(seed), split, more, fresh, wide)
    topics = {**NEW_TOPICS, **(topics or {})}
    ns = skills.make_namespace(g)
    fs = FunctionSet(g.sample(list(skills.FUNCTIONS), g.rng.randint(2, 4))) if g.chance(0.45) else None
    documents = DOCUMENTS * max(1.0, topics["browse"] / NEW_TOPICS["browse"])
    library = browsing.make_library(g) if g.chance(min(1.0, documents)) else None
    browser = library.browser() if library else None
    date = _date(g)
    # long conversations keep python (their long outputs are printed by it); drawn apart from `g`, so that
    # conversations which keep python are the same as before this choice existed
    python = long or not (fs or library) or random.Random(f"tools-{seed}").random() >= WITHOUT_PYTHON
    start = Conversation([], copy.deepcopy(ns), fs, date, library, long, python)
    teacher, user = Teacher(), ScriptedUser()
    session = Session(teacher, namespace=ns, view=user, browser=browser, tools=start.tools(), date=date)
    teacher.session = session
    n = turns or (g.rng.randint(5, 8) if long else g.rng.choices(TURNS, _TURN_WEIGHTS)[0])
    effort = g.pick(harmony.EFFORTS)
    shows = 0
    for k in range(n):
        if g.chance(0.2):
            effort = g.pick(harmony.EFFORTS)
        last_turn = k == n - 1
        room = LONG_TOKENS[1] - len(teacher.last)
        if long and not last_turn and len(teacher.last) < LONG_TOKENS[0] and (shows < 4 and g.chance(0.6) or k >= n - 2):
            turn = skills.show(g, effort, min(g.rng.randint(4000, 6000), 2 * room))
            shows += 1
        elif k and start.turns[-1].followups and g.chance(FOLLOW_UP):
            turn = g.pick(start.turns[-1].followups)(g)
            turn.effort = effort
        else:
            turn = new_turn(g, effort, ns, fs, library, topics, python)
        if last_turn and long:
            while len(teacher.last) < LONG_TOKENS[0]:  # pad with long outputs until the conversation is long
                padding = skills.show(g, effort, min(6000, 2 * (LONG_TOKENS[1] - len(teacher.last))))
                start.turns.append(padding)
                ask(session, user, padding, teacher)
        start.turns.append(turn)
        start_index = len(session.history)
        ask(session, user, turn, teacher)
    start.ids, start.covered = sequence(session, start.turns[-1], start_index, teacher.trained)
    if start.ids != teacher.last:
        raise AssertionError("the training sequence differs from what the session rendered")
    return start


def ask(session: Session, user: ScriptedUser, turn: Turn, teacher: Teacher | None = None) -> Any:
    """Ask `turn` in `session` as its script says (the teacher, when given, writes the answer); the Reply.

    A Session ends a turn at Ctrl-C and goes on (a notebook's stop); making data or evaluating stops instead."""
    if teacher is not None:
        teacher.policy = turn.teach(turn)
    user.decisions = list(turn.decisions)
    if turn.setup is not None:
        turn.setup(session.namespace)
    reply = session.ask(turn.prompt, effort=turn.effort, approval=turn.approval, response_format=turn.response_format)
    if reply.interrupted:
        raise KeyboardInterrupt
    return reply


# ---------------------------------------------------------------- the training sequence

def sequence(session: Session, last: Turn, start: int, trained: list[bool]) -> tuple[list[int], list[bool]]:
    """The token ids the model reads while writing the last turn, then that turn; and the loss mask.

    Equal to the session's own last prompt plus the teacher's last reply (tested)."""
    prefix = session.prefix(effort=last.effort, approval=last.approval, response_format=last.response_format)
    ids = harmony.encoding().render_conversation(_HarmonyConversation.from_messages(prefix))
    covered = [False] * len(ids)
    flags = iter(trained)
    previous_role = None
    history = session.history
    for i, message in enumerate(history):
        role = message.author.role
        if role == Role.ASSISTANT:
            flag = next(flags)
            if i < start and message.channel == "analysis" and not message.recipient:
                continue  # earlier turns' analysis is not shown to the model
        rendered = harmony.encoding().render(message)
        mask = [False] * len(rendered)
        if role == Role.ASSISTANT and flag:
            if i >= start:   # the last turn, as the model writes it
                first = 2 if previous_role != Role.ASSISTANT else 0
                mask[first:] = [True] * (len(rendered) - first)
            else:            # an earlier turn: the content of what was kept (and the <|call|> of a call)
                body = rendered.index(harmony.MESSAGE) + 1
                mask[body:-1] = [True] * (len(rendered) - 1 - body)
                mask[-1] = rendered[-1] == harmony.CALL
        ids += rendered
        covered += mask
        previous_role = role if not (role == Role.ASSISTANT and message.recipient) else Role.TOOL
    if ids[-1] == harmony.END:
        ids[-1] = harmony.RETURN
    return ids, covered


def dataset(n: int, seed: int, split: str = "train", long_share: float = 0.0) -> list[Conversation]:
    """`n` conversations from `seed`; conversation i is `conversation((seed, i))` (long for a share of them)."""
    rng = random.Random(f"long-{seed}")
    return [conversation(f"{seed}-{i}", split, long=rng.random() < long_share) for i in range(n)]
