"""The skills gpt-oss-tiny is taught, one user turn each, with the teacher's answer to it.

A `Turn` is a user prompt, the settings it is asked with (effort, approval, response format), what
a right answer contains, and `teach`: a generator that writes the assistant's messages the way a
good model would, reading each real tool result before going on. `data.py` runs turns through a
real `Session` (real python, function and browser tools, real approval texts); `evaluate.py`
asks the same prompts of the model and scores it against what the teacher's run established.

Pools of phrasings and variable names have held-out parts used only when `Gen.split == "eval"`:
new sentences and new names, both made of tokens the training data has (a token the data never has
keeps a zero embedding row, so no model trained this way could read or copy it; a test holds every
held-out prompt to this).
"""
from __future__ import annotations

import dataclasses
import json
import random
import re
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from openai_harmony import Message

from .. import harmony

Out = tuple[Message, bool]                       # an assistant message, and whether the loss covers it
Teach = Generator[list[Out], str, None]          # yields messages; is sent the tool's reply text
NOT_RUN = "Not run:"                              # how the session answers a call it did not run


class Pool:
    """Choices with a held-out part: training draws from `train`, evaluation from `held` (or both).
    `more` are further training sentences that only a `Gen` with `more` set draws (`tiny.train
    --more-phrasings`), so the default training and every evaluation draw exactly as before. They were
    written after reading which `held` sentences the model missed, so the pools that have them also have
    `fresh` held-out sentences, written before any model trained on `more` was scored: a `Gen` with
    `fresh` set asks them in place of `held` (`tiny.evaluate --fresh`; as many, so the draws stay the same, except
    in a long conversation, whose padding follows the length of the text before it). `wide` are further training
    sentences written from the training sentences alone, before any evaluation of them was read, so the pools'
    own `held` sentences stay a fair test of them; only a `Gen` with `wide` set draws them (`--wide-phrasings`)."""

    def __init__(self, train: Any, held: Any = (), more: Any = (), fresh: Any = (), wide: Any = ()) -> None:
        self.train, self.held, self.more, self.fresh = tuple(train), tuple(held), tuple(more), tuple(fresh)
        self.wide = tuple(wide)
        if self.fresh and len(self.fresh) != len(self.held):
            raise ValueError("a pool's fresh held-out sentences replace its held-out ones one for one")

    def vary(self, item: Any, g: Gen) -> Any:
        """The item as drawn (a `Names` pool makes new names from it)."""
        return item


class Names(Pool):
    """Variable names. Drawn for training, nearly half get a suffix (`temps3`, `scores_new`), so the model
    learns to copy the name it reads instead of recalling the few it has seen; the suffix "2" and the
    held-out names themselves are never made."""

    SUFFIXES = (*"13456789", "_new", "_old", "_all", "_raw", "_a", "_b", "_x", "_list", "_df", "_sales", "_v")

    def vary(self, item: Any, g: Gen) -> Any:
        if item in self.held or not g.chance(0.45):
            return item
        made = item + g.rng.choice(self.SUFFIXES)
        return item if made in self.held else made


@dataclass
class Gen:
    """The random source of one conversation, and whether it may use held-out material."""

    rng: random.Random
    split: str = "train"                          # "train" or "eval"
    more: bool = False                            # training also draws each pool's `more` sentences
    fresh: bool = False                           # evaluation asks each pool's `fresh` sentences for its `held`
    wide: bool = False                            # training also draws each pool's `wide` sentences

    def _held(self, pool: Pool) -> tuple[Any, ...]:
        return pool.fresh if self.fresh and pool.fresh else pool.held

    def pick(self, pool: Pool | Any) -> Any:
        if not isinstance(pool, Pool):
            return self.rng.choice(tuple(pool))
        if self.split == "eval" and pool.held and self.rng.random() < 0.7:
            return self.rng.choice(self._held(pool))
        extra = (pool.more if self.more else ()) + (pool.wide if self.wide else ())
        if self.split == "train" and extra:
            return pool.vary(self.rng.choice(pool.train + extra), self)
        return pool.vary(self.rng.choice(pool.train), self)

    def sample(self, pool: Pool | Any, k: int) -> list[Any]:
        if not isinstance(pool, Pool):
            return self.rng.sample(list(pool), k)
        items = self.rng.sample(list(pool.train + (self._held(pool) if self.split == "eval" else ())), k)
        return [pool.vary(item, self) for item in items]

    def chance(self, p: float) -> bool:
        return self.rng.random() < p


@dataclass
class Turn:
    """One user turn: the prompt, how it is asked, the teacher's answer, and what a right answer holds."""

    skill: str
    prompt: str
    teach: Callable[[Turn], Teach]               # the teacher's answer, given the turn it fills in
    effort: str = "medium"
    approval: str = "auto"
    decisions: tuple[bool | None, ...] = ()      # the approval view's answers, call by call
    response_format: Any = None
    expected: list[str] = field(default_factory=list)   # filled by the teacher's run: the final must hold these
    call: str | None = None                      # the right first call: "python", "functions.NAME", "browser.search"
    call_output: str | None = None               # python: what the right code prints (set by the teacher's run)
    call_args: dict[str, Any] | None = None      # functions: the right JSON arguments
    cite: str | None = None                      # browsing: text the cited line must contain
    skipped: bool = False                        # the call will not run: answer honestly, no second call
    followups: list[Callable[[Gen], Turn]] = field(default_factory=list)
    kind: str = ""                               # what the follow-ups refer back to (set by the builder)
    setup: Callable[[dict[str, Any]], None] | None = None   # prepares the tools (given the namespace) before the turn

    @property
    def settings(self) -> dict[str, Any]:
        """The per-turn settings `Session.ask` gets."""
        return {"effort": self.effort, "approval": self.approval}


def unanswered(turn: Turn) -> Teach:
    yield []


# ---------------------------------------------------------------- messages the teacher writes

def say(text: str, channel: str = "analysis", trained: bool = True) -> Out:
    return harmony.assistant_message(text, channel), trained


def final(text: str) -> Out:
    return harmony.assistant_message(text, "final"), True


def python_call(code: str, trained: bool = True) -> Out:
    return harmony.assistant_message(code, "analysis", "python"), trained


def function_call(name: str, args: dict[str, Any]) -> Out:
    return harmony.assistant_message(json.dumps(args), "commentary", f"functions.{name}", "<|constrain|>json"), True


def think(g: Gen, effort: str, low: str, steps: list[str]) -> Out:
    """Analysis that follows the reasoning effort: one line (low), a few sentences (medium), numbered steps (high)."""
    if effort == "low":
        return say(low)
    if effort == "medium":
        return say(" ".join(steps[:2]) if len(steps) > 2 else " ".join(steps))
    return say(" ".join(f"Step {i}: {s}" for i, s in enumerate(steps, 1)))


def check(effort: str, text: str) -> list[Out]:
    """High effort checks the tool's result before answering; lower efforts answer at once."""
    return [say(f"Check: {text}")] if effort == "high" else []


def result_of(output: str) -> str:
    return output.strip()


# ---------------------------------------------------------------- honest answers when a call did not run

def not_run(output: str, what: str) -> str:
    """The final answer after a call the session did not run: say why, and what is missing."""
    reason = output.removeprefix(NOT_RUN).strip().lower()
    if "chose not to run" in reason:
        return f"You chose not to run the call, so I could not {what}."
    if "could not be asked" in reason:
        return f"I could not {what}: the call needed your approval and nobody could give it."
    if "do not allow" in reason:
        return f"Your settings do not allow tool calls (approval: never), so I could not {what}."
    return f"The call did not run, so I could not {what}."


# ---------------------------------------------------------------- arithmetic

_ASK = Pool(("What is {e}?", "What's {e}?", "Compute {e}.", "Calculate {e}.", "How much is {e}?", "{e} = ?",
             "Please compute {e}.", "Can you work out {e}?", "what is {e}", "Evaluate {e}.",
             "Use python to compute {e}.", "I need {e}.", "Quick: {e}?", "Solve {e}.", "{e}"),
            ("What is the answer to {e}?", "Please work out {e}.", "Can you compute {e} for me?"),
            ("Work out {e} for me.", "What do you get from {e}?", "Give me the answer to {e}.",
             "Can you tell me {e}?", "Find the value of {e}.", "What does {e} come to?", "Tell me what {e} is."),
            fresh=("Find {e} for me.", "Show me {e}.", "Tell me the value of {e}."))
_WORDS = {
    "+": Pool(("What is {a} plus {b}?", "Add {a} and {b}.", "What is the sum of {a} and {b}?", "Add {b} to {a}.",
               "Compute {a} plus {b}.", "{a} plus {b}?", "Find the sum of {a} and {b}.",
               "Can you add {a} and {b}?", "Please add {a} and {b} for me.", "Find the total of {a} and {b}."),
              ("What do {a} and {b} add up to?",),
              wide=("Could you add up {a} and {b} for me?", "I need the sum of {a} and {b}, please.",
                    "Quick one: {a} plus {b}.", "{a} and {b} added together is what?", "Sum up {a} and {b}.")),
    "-": Pool(("What is {a} minus {b}?", "Subtract {b} from {a}.", "What is the difference between {a} and {b}?", "Take {b} away from {a}.",
               "Compute {a} minus {b}.", "{a} minus {b}?", "Find the difference between {a} and {b}.",
               "Please subtract {b} from {a}.", "Can you work out {a} minus {b}?",
               "What do you get if you subtract {b} from {a}?"),
              ("How much is {a} minus {b}?",),
              wide=("Could you subtract {b} from {a} for me?", "Quick one: {a} minus {b}.",
                    "What's left if I take {b} from {a}?", "Reduce {a} by {b}.", "I need {a} minus {b} worked out.")),
    "*": Pool(("What is {a} times {b}?", "Multiply {a} by {b}.", "What is the product of {a} and {b}?", "Compute {a} times {b}.",
               "{a} times {b}?", "Find the product of {a} and {b}.", "Can you multiply {a} by {b}?",
               "Please multiply {a} and {b}.", "What do you get if you multiply {a} by {b}?",
               "Calculate {a} times {b} for me."),
              ("How much is {a} times {b}?",),
              wide=("Could you multiply {a} and {b} for me?", "Quick one: {a} times {b}.",
                    "I need {a} multiplied by {b}.", "Can I get the product of {a} and {b}?",
                    "Work out the product of {a} and {b}, please.")),
    "/": Pool(("What is {a} divided by {b}?", "Divide {a} by {b}.", "What is {a} over {b}?", "{a} divided by {b}?",
               "Compute {a} divided by {b}.", "Please divide {a} by {b}.", "Can you divide {a} by {b}?",
               "What do you get if you divide {a} by {b}?", "Calculate {a} over {b}.", "Find {a} divided by {b}."),
              ("How much is {a} divided by {b}?",),
              wide=("Could you divide {a} by {b} for me?", "Quick one: {a} divided by {b}.",
                    "Give me the quotient of {a} and {b}.", "Work out {a} divided by {b}, please.",
                    "If I divide {a} by {b}, what do I get?")),
    "//": Pool(("What is {a} divided by {b}, rounded down?", "Integer-divide {a} by {b}.",
                "How many whole times does {b} go into {a}?", "Compute {a} divided by {b}, rounded down.",
                "What is the integer division of {a} by {b}?", "Floor-divide {a} by {b}.",
                "How many times does {b} go into {a}, as a whole number?",
                "Find {a} divided by {b}, rounded down to a whole number.", "Can you integer-divide {a} by {b}?",
                "Use integer division to divide {a} by {b}."), ("What is {a} divided by {b}, as a whole number?",),
                ("What is {a} divided by {b}, without the remainder?",
                 "What is {a} divided by {b}, with no decimals?",
                 "What is {a} divided by {b}, dropping the fraction?", "What is {a} divided by {b}, in integers?",
                 "Divide {a} by {b} to a whole number.", "Divide {a} by {b}, whole number only."),
                fresh=("Divide {a} by {b} with no remainder.",)),
    "%": Pool(("What is {a} modulo {b}?", "What is the remainder of {a} divided by {b}?", "What is {a} mod {b}?", "Compute {a} modulo {b}.",
               "{a} mod {b}?", "Calculate {a} mod {b}.", "Can you work out {a} modulo {b}?",
               "Find the remainder of {a} divided by {b}.", "Divide {a} by {b} and give me the remainder."),
              ("What is the remainder of {a} over {b}?",),
              ("What is left over when {a} is divided by {b}?", "What remains after dividing {a} by {b}?",
               "Find the remainder when {a} is divided by {b}.", "What remainder does {a} leave over {b}?"),
              fresh=("Tell me the remainder for {a} and {b}.",)),
    "**": Pool(("What is {a} to the power of {b}?", "What is {a} raised to {b}?", "Raise {a} to the power {b}.", "Compute {a} to the power of {b}.",
                "Calculate {a} raised to {b}.", "Find {a} to the power of {b}.",
                "Please compute {a} raised to {b}.", "{a} to the power of {b}?",
                "Use python to compute {a} to the power of {b}.", "Can you work out {a} to the power of {b}?"),
               ("What is {a} raised to the power {b}?",),
               wide=("Could you raise {a} to the power of {b}?", "Take {a} to the power of {b}.",
                     "I need {a} to the power of {b}, please.", "What does {a} to the power of {b} come to?",
                     "Please raise {a} to the power {b}.")),
}
_ARITH_FINAL = Pool(("{e} = {r}.", "{e} = {r}.", "The answer is {r}.", "{e} is {r}."), ("The result of {e} is {r}.",))


_DIGITS = (1, 2, 2, 3, 3, 4)
# Training also asks about numbers of five to nine digits: the tokens 000-099 occur only inside numbers of six
# digits or more (590062 is 590|062), and with the users' sizes alone they were seen 8x less often than
# 100-999 and miscopied (590062 answered as 590774).
_TRAIN_DIGITS = (1, 2, 3, 4, 5, 6, 6, 7, 7, 8, 9)


def _number(g: Gen, digits: tuple[int, ...] | None = None) -> int:
    """A number of `digits` (one drawn) digits; by default the sizes users ask about, longer ones in training."""
    d = g.pick(digits or (_TRAIN_DIGITS if g.split == "train" else _DIGITS))
    return g.rng.randint(10 ** (d - 1) if d > 1 else 0, 10 ** d - 1)


def _decimal(g: Gen) -> str:
    return f"{g.rng.randint(0, 99)}.{g.rng.randint(1, 9)}" if g.chance(0.6) else f"{g.rng.randint(0, 999)}.{g.rng.randint(10, 99)}"


def code_for(expr: str) -> str:
    """The code the model writes for an expression: exact print, or rounded when it can give a float."""
    if "/" in expr.replace("//", "") or "." in expr:
        return f"print(round({expr}, 4))"
    return f"print({expr})"


def expression(g: Gen) -> tuple[str, str, str]:
    """(the question's text, the python expression, the operator word kind) for one arithmetic question."""
    kind = g.rng.random()
    if kind < 0.62:
        op = g.pick(("+", "-", "*", "+", "-", "*", "/", "//", "%", "**"))
        a, b = _number(g), _number(g)
        if op in ("/", "//", "%"):
            b = g.rng.randint(2, 99)
        if op == "**":
            a, b = g.rng.randint(2, 12), g.rng.randint(2, 9)
            while len(str(a ** b)) > 10:
                b -= 1
        if g.chance(0.15) and op in ("+", "-", "*"):
            a = -a
        sa, sb = str(a), str(b)
        if g.chance(0.12) and op in ("+", "-", "*", "/"):
            sa, sb = _decimal(g), (_decimal(g) if op != "/" else str(b))
        expr = f"{sa} {op} {sb}"
        if g.chance(0.3):
            return g.pick(_WORDS[op]).format(a=sa, b=sb), expr, op
        shown = expr.replace(" ", "") if g.chance(0.15) and not sa.startswith("-") else expr
        return g.pick(_ASK).format(e=shown), expr, op
    a, b, c = (g.rng.randint(1, 999) for _ in range(3))
    o1, o2 = g.pick("+-*"), g.pick("+-*")
    if g.chance(0.2):
        c = g.rng.randint(2, 20)
        o2 = g.pick(("/", "//", "%"))
    expr = g.pick((f"{a} {o1} {b} {o2} {c}", f"({a} {o1} {b}) {o2} {c}", f"{a} {o1} ({b} {o2} {c})"))
    if g.chance(0.1):
        expr = f"-{expr}" if expr[0] != "(" else f"-{expr}"
    return g.pick(_ASK).format(e=expr), expr, "mixed"


def python_answer(g: Gen, turn: Turn, code: str, analysis: Out, done: Callable[[str], str], what: str,
                  check_text: Callable[[str], str] | None = None, record: bool = True) -> Teach:
    """The shape of most python turns: think, call, then answer from the output (or say why not)."""
    out = yield [analysis, python_call(code)]
    yield _after_python(g, turn, out, done, what, check_text, record)


def _after_python(g: Gen, turn: Turn, out: str, done: Callable[[str], str], what: str,
                  check_text: Callable[[str], str] | None, record: bool = True) -> list[Out]:
    if out.startswith(NOT_RUN):
        turn.expected = [f"could not {what}"]
        return [final(not_run(out, what))]
    result = result_of(out)
    if record:
        turn.expected, turn.call_output = [result], out
    checked = check(turn.effort, check_text(result)) if check_text else []
    return [*checked, final(done(result))]


def arithmetic(g: Gen, effort: str, shown: str | None = None, expr: str | None = None, skill: str = "arithmetic") -> Turn:
    op = ""
    if expr is None:
        shown, expr, op = expression(g)
    code = code_for(expr)
    turn = Turn(skill, shown or expr, unanswered, effort=effort, call="python", kind="number")
    analysis = think(g, effort, g.pick(("Compute it with python.", "Use python.", "Exact arithmetic: python.")), [
        f"The user wants {expr}.", "Exact arithmetic is best done by the python tool.", f"Run {code}.",
        "Then copy the printed result."])
    template = g.pick(_ARITH_FINAL)
    turn.teach = lambda t: python_answer(g, t, code, analysis, lambda r: template.format(e=expr, r=r),
                                       f"compute {expr}", lambda r: f"python printed {r} for {expr}; report it as is.")
    turn.followups = [lambda g2: number_followup(g2, turn)]
    turn.kind = op or "mixed"
    return turn


_FOLLOW = (
    ("/", Pool(("Now divide that by {c}.", "Divide the result by {c}.", "And divided by {c}?", "Now divide it by {c}.",
                "What is that over {c}?", "Take that and divide it by {c}.", "What is the result divided by {c}?",
                "Can you divide the answer by {c}?", "Divide the answer by {c} now.",
                "Can you now divide that result by {c}?"), ("Divide that by {c}.",),
                wide=("Okay, and if you divide that number by {c}?", "Next, take the result over {c}.",
                      "Could you divide what you got by {c}?", "How much is the answer divided by {c}?",
                      "Now split it {c} ways.", "Great, now divide the number you got by {c}."))),
    ("*", Pool(("Now multiply that by {c}.", "And times {c}?", "Multiply the result by {c}.", "What is that times {c}?",
                "times {c}", "Take that and multiply it by {c}.", "What is the result times {c}?",
                "Can you multiply the answer by {c}?", "Multiply the answer by {c} now.",
                "Can you now multiply that result by {c}?"), ("Multiply that by {c}.",),
                wide=("Okay, and if you multiply that number by {c}?", "Next, take the result times {c}.",
                      "Could you multiply what you got by {c}?", "How much is the answer times {c}?",
                      "Great, now multiply the number you got by {c}."))),
    ("+", Pool(("Now add {c} to that.", "Add {c} to the result.", "Plus {c}?", "What is that plus {c}?", "And add {c}.", "Take that and add {c} to it.",
                "What is the result plus {c}?", "Can you add {c} to the answer?", "Add {c} to the answer now.",
                "Can you now add {c} to that result?"),
               ("Add {c} to that.",),
               wide=("Okay, and if you add {c} to that number?", "Next, increase the result by {c}.",
                     "Could you add {c} to what you got?", "How much is the answer plus {c}?",
                     "Great, now add {c} to the number you got."))),
    ("-", Pool(("Now subtract {c} from that.", "Minus {c}?", "Take {c} away from the result.", "What is that minus {c}?",
                "And subtract {c}.", "Take that and subtract {c} from it.", "What is the result minus {c}?",
                "Can you take {c} away from the answer?", "Subtract {c} from the answer now.",
                "Can you now subtract {c} from that result?"), ("Subtract {c} from the result.",),
                wide=("Okay, and if you subtract {c} from that number?", "Next, decrease the result by {c}.",
                      "Could you take {c} off what you got?", "How much is the answer minus {c}?",
                      "Great, now subtract {c} from the number you got."))),
    ("%", Pool(("And that modulo {c}?", "What is the remainder of that divided by {c}?", "Now take that mod {c}.", "What is the result mod {c}?",
                "Can you find the remainder of the answer divided by {c}?", "Take the answer mod {c}.",
                "And the remainder of that over {c}?", "Now compute the result modulo {c}.",
                "Take the result modulo {c}."),
               ("What about that modulo {c}?",),
               wide=("Okay, and that number mod {c}?",
                     "Next, what remainder is left when the result is divided by {c}?",
                     "Could you take what you got modulo {c}?", "How much is the answer mod {c}?",
                     "Great, now give me the remainder after dividing it by {c}."))),
    ("//", Pool(("Now integer-divide that by {c}.", "How many whole times does {c} go into that?",
                 "Floor-divide that by {c}.", "What is that divided by {c}, rounded down?",
                 "Integer-divide the result by {c}.", "How many whole times does {c} go into the result?",
                 "Now divide it by {c} as a whole number.", "Divide the result by {c}, rounded down.",
                 "Can you integer-divide the answer by {c}?", "Use integer division to divide that by {c}."), (),
                 wide=("Okay, and that number floor-divided by {c}?",
                       "Next, divide the result by {c} and round down.",
                       "Could you floor-divide what you got by {c}?",
                       "How many full times does {c} fit into the answer?",
                       "Great, now integer-divide the number you got by {c}."))),
    ("**", Pool(("What is that squared?", "Square the result.", "And squared?", "Now square that.",
                 "What is the square of that?", "square the answer", "What is the result squared?",
                 "Can you square that?", "Raise that to the power of 2.", "Can you square the answer?"), ("Now square it.",),
                 wide=("Okay, and that number squared?", "Next, multiply the result by itself.",
                       "Could you square what you got?", "How much is the answer to the power of 2?",
                       "Great, now raise the number you got to the second power."))),
)


def number_followup(g: Gen, previous: Turn) -> Turn:
    """"Now divide that by 3": the same kind of question on the previous answer's number."""
    value = previous.expected[0] if previous.expected else "0"
    op, pool = g.pick(_FOLLOW)
    c = g.rng.randint(2, 99) if op in ("/", "%", "//") else (2 if op == "**" else _number(g, (1, 2, 3)))
    expr = f"{value} {op} {c}"
    shown = g.pick(pool).format(c=c)
    turn = arithmetic(g, previous.effort, shown, expr, skill="followup")
    code = code_for(expr)
    analysis = think(g, turn.effort, f"Use the previous result, {value}.", [
        f"The previous result was {value}.", f"Compute {expr} with python.", f"Run {code}.", "Copy the result."])
    template = g.pick(_ARITH_FINAL)
    turn.teach = lambda t: python_answer(g, t, code, analysis, lambda r: template.format(e=expr, r=r),
                                       f"compute {expr}", lambda r: f"{expr} printed {r}.")
    return turn


# ---------------------------------------------------------------- the user's variables

LIST_NAMES = Names(("data", "values", "scores", "numbers", "ages", "temps", "sales", "nums", "counts", "weights", "heights",
                    "marks", "readings", "samples", "costs", "x", "y", "points", "totals", "visits", "steps", "results",
                    "grades", "prices_list", "daily_sales", "times"),
                   ("data2", "scores2", "data_list", "marks_list", "nums2", "counts2"))
DICT_NAMES = Names(("prices", "stock", "inventory", "population", "salaries", "ratings", "votes", "budget", "ages_by_name",
                    "scores_by_name", "counts_by_city"), ("prices2", "stock2", "ratings2", "budget2"))
STRING_NAMES = Names(("text", "name", "message", "sentence", "title", "word", "greeting", "note"), ("text2", "note2", "title2"))
FRAME_NAMES = Names(("df", "sales_df", "people", "orders", "products", "inventory_df", "cities"),
                    ("df2", "df_sales", "people_df", "orders2"))
KEYS = Pool(("apple", "banana", "cherry", "mango", "pear", "grape", "lemon", "kiwi", "plum", "peach", "alice", "bob",
             "carol", "dave", "erin", "frank", "north", "south", "east", "west", "red", "blue", "green", "tea", "coffee"))
PHRASES = ("hello world", "gpt oss", "the quick brown fox", "jupyter notebook", "mixture of experts", "harmony format",
           "open weights", "python tool", "reasoning effort", "tiny model", "machine learning", "data science",
           "good morning everyone", "the rain in spain")
_PEOPLE = ("Ana", "Ben", "Chen", "Dara", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jin", "Kai", "Lea", "Max", "Nia", "Omar", "Pia")
_FRAME_COLUMNS = (("price", "float"), ("qty", "int"), ("score", "int"), ("age", "int"), ("rating", "float"), ("sales", "int"))


def make_namespace(g: Gen) -> dict[str, Any]:
    """A notebook's variables: a few lists, dicts and strings, and a pandas DataFrame."""
    import pandas as pd

    ns: dict[str, Any] = {}
    for name in g.sample(LIST_NAMES, 3):
        ns[name] = [g.rng.randint(0, 200) for _ in range(g.rng.randint(3, 9))]
    for name in g.sample(DICT_NAMES, 2):
        ns[name] = {k: g.rng.randint(1, 999) for k in g.sample(KEYS, g.rng.randint(2, 6))}
    ns[g.pick(STRING_NAMES)] = g.pick(PHRASES)
    columns = g.rng.sample(_FRAME_COLUMNS, g.rng.randint(2, 3))
    rows = g.rng.randint(4, 8)
    frame: dict[str, list[Any]] = {"name": g.rng.sample(_PEOPLE, rows)}
    for col, kind in columns:
        frame[col] = [round(g.rng.uniform(1, 99), 2) if kind == "float" else g.rng.randint(1, 60) for _ in range(rows)]
    ns[g.pick(FRAME_NAMES)] = pd.DataFrame(frame)
    return ns


_LIST_QS = {  # stat: (questions, code, final)
    "mean": (Pool(("What is the mean of {v}?", "What's the average of {v}?", "Compute the mean of {v}.", "Average of {v}?", "Find the mean of {v}.",
                   "Calculate the average of {v}.", "Mean of {v}?", "Can you compute the mean of {v}?",
                   "Compute the average of the values in {v}.", "Can you give me the average of {v}?"),
                  ("What is the arithmetic mean of {v}?",),
                  wide=("Average the numbers in {v} for me.", "I'd like the mean value of {v}.",
                        "Could you tell me what {v} averages out to?", "What's the average value in the list {v}?",
                        "Give me the mean of the list {v}, please.")),
            "print(round(sum({v}) / len({v}), 2))", "The mean of {v} is {r}."),
    "sum": (Pool(("What is the sum of {v}?", "Add up all the values in {v}.", "What is the total of {v}?", "Sum {v}.", "Find the sum of {v}.",
                  "Compute the sum of {v}.", "Can you sum up {v}?", "What is the sum of all the numbers in {v}?",
                  "Sum of {v}?", "Can you give me the total of {v}?"),
                 ("What do the values in {v} add up to?",),
                 wide=("Total up the numbers in {v}.", "Could you add together everything in {v}?",
                       "I'd like the sum of the list {v}.", "What's the total when you add up all of {v}?",
                       "Give me the total of all numbers in {v}, please.")),
            "print(sum({v}))", "The sum of {v} is {r}."),
    "max": (Pool(("What is the largest value in {v}?", "What is the max of {v}?", "Find the maximum of {v}.",
                  "What is the biggest number in {v}?", "Max of {v}?", "Which number in {v} is the largest?",
                  "Compute the max of {v}.", "Can you find the largest value in {v}?",
                  "Can you give me the maximum of {v}?", "Which value in {v} is the biggest?"),
                 ("What is the highest value in {v}?",),
                 ("Find the highest value of {v}.", "Which number in {v} is highest?", "Highest value of {v}?",
                  "Give me the top value in {v}."),
                 fresh=("Show the max value of {v}.",)),
            "print(max({v}))", "The largest value in {v} is {r}."),
    "min": (Pool(("What is the smallest value in {v}?", "What is the min of {v}?", "Find the minimum of {v}.",
                  "What is the lowest number in {v}?", "Compute the min of {v}.",
                  "Can you find the lowest value in {v}?", "Print the min of {v}.",
                  "Which value of {v} is the lowest?", "Can you give me the minimum of {v}?",
                  "Use python to find the min of {v}."),
                 ("What is the smallest number in {v}?",),
                 wide=("Which value in {v} is smallest?", "Give me the lowest value of the list {v}.",
                       "I'd like the minimum value in {v}, please.", "Could you tell me the min of {v}?",
                       "Find the smallest entry of the list {v}.")),
            "print(min({v}))", "The smallest value in {v} is {r}."),
    "len": (Pool(("How many items are in {v}?", "What is the length of {v}?", "How long is {v}?", "len({v})?", "Count the values in {v}.", "Count the items in {v}.",
                  "How many values are there in {v}?", "Count the numbers in {v}.",
                  "Can you count the items in {v}?", "Print the length of {v}."),
                 ("How many items does {v} have?",),
                 ("What size is {v}?", "How big is {v}, counting its items?",
                  "Find out how big {v} is by counting its items.", "How many items has {v} got?"),
                 fresh=("What is the number of items in {v}?",)),
            "print(len({v}))", "{v} has {r} items."),
    "sorted": (Pool(("Sort {v}.", "What is {v} sorted?", "Show {v} in ascending order.",
                     "Order {v} from small to large.", "Sort the values in {v}.",
                     "Show {v} sorted from low to high.", "Print {v} in ascending order.",
                     "Sort the numbers in {v}, smallest first.", "What is {v} in sorted order?",
                     "Print {v} sorted."), ("Put {v} in order.",),
                     ("Put the values of {v} in ascending order.", "Put the numbers in {v} in order from smallest.",
                      "Can you order the values in {v}?", "Arrange {v} in increasing order."),
                     fresh=("Get {v} in order.",)),
               "print(sorted({v}))", "Sorted: {r}."),
    "first": (Pool(("What is the first element of {v}?", "What is {v}[0]?", "Show the first item of {v}.",
                    "What comes first in {v}?", "Which value comes first in {v}?", "Print the first item in {v}.",
                    "Print the first element of {v}.", "Which number is at the beginning of {v}?",
                    "Read the first value in {v}."), ("What is the first value of {v}?",),
                    ("Give me the first value of the list {v}.", "Which is the first value in {v}?",
                     "Show me the value at the start of {v}."),
                    fresh=("What item is first in {v}?",)),
              "print({v}[0])", "The first element of {v} is {r}."),
    "last": (Pool(("What is the last element of {v}?", "What is {v}[-1]?", "Show the last item of {v}.",
                   "What is at the end of {v}?", "Which value comes last in {v}?",
                   "What number is at the end of {v}?", "Print the last item in {v}.",
                   "Print the last element of {v}.", "Read the last value in {v}."), ("What is the last value of {v}?",),
                   ("Give me the last value of the list {v}.", "Which is the last value in {v}?",
                    "Show me the final value of {v}."),
                   fresh=("What does {v} end with?",)),
             "print({v}[-1])", "The last element of {v} is {r}."),
    "above": (Pool(("How many values in {v} are above {k}?", "Count the items in {v} greater than {k}.",
                    "How many numbers in {v} are over {k}?", "Count the values in {v} that are above {k}.",
                    "Count the numbers over {k} in {v}.", "How many of the values in {v} are more than {k}?",
                    "Count the numbers in {v} that are greater than {k}.",
                    "What is the count of values in {v} above {k}?", "Can you count the items of {v} above {k}?",
                    "Find the number of values in {v} above {k}."),
                   ("How many items in {v} are greater than {k}?",),
                   wide=("Could you tell me how many numbers in {v} exceed {k}?",
                         "Count every number in {v} bigger than {k}.",
                         "What's the number of entries of {v} exceeding {k}?",
                         "I'd like to know how many values of {v} exceed {k}.",
                         "Tally the values in {v} that are larger than {k}.")),
            "print(len([n for n in {v} if n > {k}]))",
              "{r} values in {v} are above {k}."),
}
_DICT_QS = {
    "get": (Pool(("What is {v}['{k}']?", "What value does {v} have for {k}?", "Look up {k} in {v}.",
                  "What is the {k} entry of {v}?", "What does {v} say for {k}?", "Get the value of {k} in {v}.",
                  "Look up the {k} entry in {v}.", "Print {v}['{k}'].", "{v}['{k}']?",
                  "Can you find the value for {k} in {v}?"), ("Find {k} in {v}.",),
                  ("Find the value of {k} in {v}.", "Find what {v} has for {k}.",
                   "Find the key {k} in the dict {v}.", "Find {k} inside {v} and print it."),
                  fresh=("Show me {k} in {v}.",)),
            "print({v}['{k}'])", "{v}['{k}'] is {r}."),
    "argmax": (Pool(("Which key in {v} has the largest value?", "What is the key with the highest value in {v}?",
                     "Which key of {v} is the largest?", "Which key of {v} has the highest value?",
                     "Find the key with the largest value in {v}.", "What key has the max value in {v}?",
                     "Use python to find the key in {v} with the largest value.",
                     "Can you find which key in {v} has the highest value?",
                     "Print the key of {v} with the largest value."),
                    ("Which entry of {v} is biggest?",),
                    ("Which entry in {v} holds the biggest number?", "Find the biggest entry of {v}.",
                     "Which key of {v} has the biggest value?", "Which of the entries of {v} is the largest?"),
                    fresh=("Which key in {v} is biggest?",)),
               "print(max({v}, key={v}.get))",
               "The key with the largest value in {v} is {r}."),
    "len": (Pool(("How many entries does {v} have?", "How many keys are in {v}?", "What is the size of {v}?", "Count the entries in {v}.",
                  "Can you count the keys of {v}?", "len({v})?", "Count the keys in {v}.",
                  "Find the length of {v}.", "How many keys are there in {v}?",
                  "Print the number of entries in {v}."), ("How big is {v}?",),
                  ("What size is the dict {v}?", "How big is {v} in number of keys?",
                   "Find out how big {v} is by counting its entries.", "How many entries has {v} got?"),
                  fresh=("How large is {v}?",)),
            "print(len({v}))", "{v} has {r} entries."),
    "total": (Pool(("What is the total of the values in {v}?", "Sum the values of {v}.",
                    "What do the values of {v} sum to?", "Sum up the values in {v}.",
                    "What is the sum of the values of {v}?", "Can you sum the values of {v}?",
                    "Add up every value in {v}.", "Sum of the values in {v}?",
                    "Print the sum of all the values in {v}.", "Sum all the values of {v}."), ("Add up {v}.",),
                    wide=("Could you add together all the values stored in {v}?",
                          "What's the grand total of the numbers in the dict {v}?",
                          "Total the values of the dictionary {v}, please.",
                          "I'd like the sum of the numbers stored in {v}.",
                          "Give me the values of {v} summed together.")),
              "print(sum({v}.values()))", "The values of {v} add up to {r}."),
}
_STR_QS = {
    "chars": (Pool(("How many characters are in {v}?", "What is the length of {v}?", "Count the characters in {v}.",
                    "Can you count the characters of {v}?", "What is the length of the string {v}?", "len({v})?",
                    "Print the length of {v}.", "Find the number of characters in {v}.",
                    "Tell me the number of characters in {v}."), ("How long is the string {v}?",),
                    wide=("Could you tell me how many characters {v} has?", "What's the character count of {v}?",
                          "Give me the number of characters in the string {v}.",
                          "Count how many characters make up {v}.", "I'd like the length of {v} in characters.")),
              "print(len({v}))", "{v} has {r} characters."),
    "upper": (Pool(("What is {v} in upper case?", "Uppercase {v}.", "Convert {v} to upper case.",
                    "Upper case of {v}?", "Print {v} in all upper case.", "Can you convert {v} to upper case?",
                    "I need {v} in upper case.", "What does {v} say in upper case?",
                    "Convert the string {v} into upper case."), ("Show {v} in upper case.",),
                    wide=("Could you turn {v} into capital letters?", "Give me {v} written in uppercase.",
                          "I'd like {v} converted to all caps.", "Make {v} upper case, please.",
                          "What does {v} look like in capitals?")),
              "print({v}.upper())", "In upper case: {r}."),
    "words": (Pool(("How many words are in {v}?", "Count the words in {v}.", "Count the words of {v}.",
                    "Can you count the words in {v}?", "How many words make up {v}?",
                    "How many words are there in {v}?", "What is the word count of {v}?",
                    "Find the number of words in {v}.", "Print the number of words in {v}.",
                    "Tell me the number of words in the string {v}."), ("How many words does {v} have?",),
                    wide=("Could you count how many words {v} contains?",
                          "What's the number of words in the string {v}?", "Give me the word count for {v}.",
                          "I'd like to know how many words {v} is made of.",
                          "Split {v} into words and tell me how many there are.")),
              "print(len({v}.split()))", "{v} has {r} words."),
}
_FRAME_QS = {
    "shape": (Pool(("What is the shape of {v}?", "How many rows and columns does {v} have?", "What is {v}.shape?", "Can you print the shape of {v}?",
                    "Tell me the number of rows and columns of {v}.", "What size is {v}, in rows and columns?",
                    "Print {v}.shape.", "Find the shape of {v}.", "What shape does {v} have?",
                    "Count the rows and the columns of {v}."),
                   ("How many rows and columns are in {v}?",),
                   wide=("Could you give me the dimensions of {v}?",
                         "What are the dimensions of the DataFrame {v}?",
                         "I'd like to know the shape of {v}, please.",
                         "Give me the row count and column count of {v}.", "Show the shape of the table {v}.")),
            "print({v}.shape)", "{v} has {r0} rows and {r1} columns."),
    "columns": (Pool(("What columns does {v} have?", "List the columns of {v}.", "What are the column names of {v}?", "Show the columns of {v}.",
                      "What are the columns in {v}?", "Print the columns of {v}.",
                      "Tell me the column names in {v}.", "Which columns does {v} have?",
                      "Can you print the column names of {v}?", "Find the names of the columns in {v}."),
                     ("Which columns are in {v}?",),
                     wide=("Could you tell me the column names of {v}?",
                           "What fields does the DataFrame {v} contain?", "Give me a list of the columns in {v}.",
                           "I'd like to see the column headers of {v}.", "Name the columns of the table {v}.")),
            "print(list({v}.columns))", "The columns of {v} are {rl}."),
    "rows": (Pool(("How many rows does {v} have?", "How many rows are in {v}?", "len({v})?", "Count the rows of {v}.",
                   "Can you count the rows in {v}?", "Find the number of rows in {v}.",
                   "Print the number of rows of {v}.", "Can you find the length of {v}?",
                   "Tell me the number of rows in {v}.", "What is the length of {v} in rows?"), ("How long is {v}?",),
                   wide=("Could you tell me how many rows are in {v}?",
                         "What's the row count of the DataFrame {v}?",
                         "Give me the number of rows in the table {v}.",
                         "I'd like to know how many rows {v} contains.", "How many records does {v} hold?")),
             "print(len({v}))", "{v} has {r} rows."),
    "mean": (Pool(("What is the mean {c} in {v}?", "What is the average of the {c} column of {v}?",
                   "Mean of {v}['{c}']?", "Compute the mean of the {c} column in {v}.", "Average {c} in {v}?",
                   "Find the mean {c} of {v}.", "Can you compute the average {c} of {v}?",
                   "Print the mean of {c} in {v}.", "Find the mean of the {c} values in {v}."), ("What is the average {c} in {v}?",),
                   wide=("Could you give me the average of {c} across {v}?",
                         "What's the mean value of the {c} column in {v}?",
                         "I'd like the mean of {v}['{c}'], please.", "Average the {c} values of {v}.",
                         "Take the mean of column {c} in {v}.")),
             "print(round({v}['{c}'].mean(), 2))", "The mean {c} in {v} is {r}."),
    "max": (Pool(("What is the largest {c} in {v}?", "What is the max of the {c} column in {v}?", "Which {c} in {v} is the biggest?", "Max {c} in {v}?",
                  "What is the maximum {c} of {v}?", "Can you find the biggest {c} in {v}?",
                  "Which {c} value of {v} is largest?", "Compute the maximum of the {c} column of {v}.",
                  "Use python to find the largest {c} in {v}.", "Print the max {c} in {v}."),
                 ("What is the highest {c} in {v}?",),
                 ("Find the highest {c} value of {v}.", "Give me the highest {c} in {v}.",
                  "How high does {c} go in {v}?", "Tell me the top {c} value in {v}."),
                 fresh=("Show the biggest {c} of {v}.",)),
            "print({v}['{c}'].max())", "The largest {c} in {v} is {r}."),
    "min": (Pool(("What is the smallest {c} in {v}?", "What is the min of the {c} column in {v}?", "What is the lowest {c} in {v}?", "What is the minimum {c} of {v}?",
                  "Can you find the lowest {c} in {v}?", "Which {c} value of {v} is smallest?",
                  "Compute the minimum of the {c} column of {v}.", "What is the min {c} of {v}?",
                  "Print the min {c} in {v}.", "Use python to get the lowest {c} in {v}."),
                 ("Find the smallest {c} in {v}.",),
                 wide=("Could you tell me the lowest {c} value in {v}?", "What's the minimum of column {c} of {v}?",
                       "Give me the smallest value of {c} in the DataFrame {v}.", "I'd like the min of {v}['{c}'].",
                       "How low does {c} go in {v}?")), "print({v}['{c}'].min())", "The smallest {c} in {v} is {r}."),
    "sum": (Pool(("What is the total {c} in {v}?", "Sum the {c} column of {v}.",
                  "What do the {c} values in {v} add up to?", "Compute the sum of the {c} column of {v}.",
                  "Can you sum up the {c} values of {v}?", "Find the sum of the {c} column in {v}.",
                  "What does the {c} column of {v} add up to?", "Sum of {c} in {v}?",
                  "Can you find the sum of {c} in {v}?", "Print the total {c} of {v}."), ("Add up {c} in {v}.",),
                  wide=("Could you total the {c} column of {v}?", "What's the sum of all {c} values in {v}?",
                        "Give me the grand total of {c} across {v}.", "I'd like the sum of {v}['{c}'].",
                        "What does {c} total to across {v}?")),
            "print(round({v}['{c}'].sum(), 2))", "The total {c} in {v} is {r}."),
    "count_above": (Pool(("How many rows of {v} have {c} above {k}?", "Count the rows in {v} where {c} > {k}.",
                          "How many rows have {c} over {k} in {v}?", "Count the rows of {v} with {c} above {k}.",
                          "Can you count the rows where {c} is above {k} in {v}?",
                          "What number of rows in {v} have {c} above {k}?",
                          "Count the rows in {v} with a {c} greater than {k}.",
                          "What is the number of rows of {v} where {c} is greater than {k}?",
                          "Tell me the number of rows in {v} with {c} above {k}.",
                          "Can you count the rows of {v} that have {c} over {k}?"),
                         ("How many rows in {v} have a {c} over {k}?",),
                         wide=("Could you tell me how many rows of {v} have {c} bigger than {k}?",
                               "In {v}, count the rows whose {c} exceeds {k}.",
                               "What's the number of rows in {v} with {c} higher than {k}?",
                               "Give me a count of the rows of {v} where {c} is more than {k}.",
                               "For how many rows of {v} is {c} greater than {k}?")),
                    "print(len({v}[{v}['{c}'] > {k}]))", "{r} rows of {v} have {c} above {k}."),
    "names_above": (Pool(("Which names in {v} have {c} above {k}?", "Who in {v} has a {c} greater than {k}?",
                          "Show the names in {v} where {c} is over {k}.", "Who in {v} has {c} above {k}?",
                          "Which people in {v} have a {c} over {k}?",
                          "Show me the names in {v} with a {c} greater than {k}.",
                          "Can you find the names in {v} where {c} is above {k}?",
                          "Print the names of the rows in {v} with {c} above {k}.",
                          "Find the names in {v} where {c} is more than {k}.",
                          "In {v}, which people have {c} greater than {k}?"),
                         ("List the names in {v} with {c} over {k}.",),
                         wide=("Could you tell me who in {v} has {c} higher than {k}?",
                               "Which people of {v} have a {c} that exceeds {k}?",
                               "Give me the names from {v} whose {c} is more than {k}.",
                               "Name everyone in {v} with a {c} bigger than {k}.",
                               "I'd like the names of the people in {v} whose {c} exceeds {k}.")),
                    "print({v}[{v}['{c}'] > {k}]['name'].tolist())", "The names with {c} above {k}: {rl}."),
    "top": (Pool(("Who has the highest {c} in {v}?", "Which name in {v} has the largest {c}?", "Whose {c} is highest in {v}?", "Who in {v} has the largest {c}?",
                  "Find the name with the highest {c} in {v}.", "Who has the most {c} in {v}?",
                  "Can you find the name with the max {c} in {v}?", "Find the name in {v} with the largest {c}."),
                 ("Which name has the biggest {c} in {v}?",),
                 wide=("Could you tell me who in {v} has the top {c}?", "Whose {c} is the largest in {v}?",
                       "Who is the person with the maximum {c} in {v}?",
                       "Give me the name of whoever has the greatest {c} in {v}.")),
            "print({v}.loc[{v}['{c}'].idxmax(), 'name'])",
            "{r} has the highest {c} in {v}."),
}


def _fill(template: str, result: str) -> str:
    """A final-answer template filled from the printed result ({r}, the items of a list {rl}, a shape {r0} {r1})."""
    items = [s.strip().strip("'\"") for s in result.strip("[]()").split(",") if s.strip()]
    values = {"r": result, "rl": ", ".join(items) if items else "none"}
    if len(items) >= 2:
        values["r0"], values["r1"] = items[0], items[1]
    return re.sub(r"\{(r|rl|r0|r1)\}", lambda m: values.get(m.group(1), result), template)


def _expected_parts(template: str, result: str) -> list[str]:
    """What the final answer must contain: the result itself, or its items when it is a list or a shape."""
    if "{rl}" in template or "{r0}" in template:
        return [s.strip().strip("'\"") for s in result.strip("[]()").split(",") if s.strip()] or ["none"]
    return [result]


def variable_question(g: Gen, ns: dict[str, Any], kind: str | None = None, name: str | None = None,
                      stat: str | None = None, column: str | None = None) -> tuple[str, str, str, dict[str, Any]]:
    """(question, code, final template, what the follow-ups need) about one of the user's variables."""
    import pandas as pd

    names = [n for n, v in ns.items() if _kind(v) == kind] if kind else [n for n in ns if _kind(ns[n])]
    name = name or g.pick(names)
    value = ns[name]
    kind = _kind(value)
    table = {"list": _LIST_QS, "dict": _DICT_QS, "str": _STR_QS, "frame": _FRAME_QS}[kind]
    stat = stat if stat in table else g.pick(sorted(table))
    questions, code, final_t = table[stat]
    key = ""
    if kind == "list":
        key = str(g.pick((10, 50, 100, 150)))
    elif kind == "dict":
        key = g.pick(list(value))
    elif kind == "frame" and isinstance(value, pd.DataFrame):
        numeric = [c for c in value.columns if c != "name"]
        column = column if column in numeric else g.pick(numeric)
        key = str(g.pick((10, 20, 30, 50)))
    fill = {"v": name, "k": key, "c": column or ""}
    return (g.pick(questions).format(**fill), code.format(**fill), final_t.format_map(_Keep(fill)),
            {"kind": kind, "name": name, "stat": stat, "column": column})


class _Keep(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _kind(value: Any) -> str:
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        return "frame"
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
        return "list"
    if isinstance(value, dict) and value and all(isinstance(v, (int, float)) for v in value.values()):
        return "dict"
    return "str" if isinstance(value, str) and len(value) < 80 else ""


def variable(g: Gen, effort: str, ns: dict[str, Any], kind: str | None = None, skill: str = "kernel",
             name: str | None = None, stat: str | None = None, column: str | None = None) -> Turn:
    question, code, final_t, about = variable_question(g, ns, kind, name, stat, column)
    skill = "dataframe" if about["kind"] == "frame" and skill == "kernel" else skill
    turn = Turn(skill, question, unanswered, effort=effort, call="python", kind=about["kind"])
    analysis = think(g, effort, g.pick(("The variable is in the user's kernel; use python.", "Read it with python.")), [
        f"The question is about {about['name']}, a variable in the user's kernel.",
        "python runs in the same kernel, so it can read it.", f"Run: {code}", "Answer from the printed output."])

    def teach(turn: Turn) -> Teach:
        out = yield [analysis, python_call(code)]
        if out.startswith(NOT_RUN):
            turn.expected = [f"could not read {about['name']}"]
            yield [final(not_run(out, f"read {about['name']}"))]
            return
        result = result_of(out)
        turn.expected, turn.call_output = _expected_parts(final_t, result), out
        yield [*check(effort, f"the output is {result}; copy it exactly."), final(_fill(final_t, result))]

    turn.teach = teach
    turn.followups = [lambda g2: variable_followup(g2, turn, ns, about)]
    return turn


_SAME_STAT_OTHER = Pool(("What about {v}?", "And for {v}?", "Same for {v}.", "Do the same for {v}.", "Now for {v}.", "How about {v}?",
                         "And {v}?", "Now the same for {v}.", "The same question for {v}.",
                         "Can you do it for {v}?"), ("Now do {v}.",),
                         ("Now do the same for {v}.", "Now try {v}.", "Do it again for {v}.", "Repeat that for {v}.",
                          "Now run it on {v}."),
                         fresh=("Now use {v}.",))
_OTHER_STAT = Pool(("And the {s}?", "What about the {s}?", "Now the {s}.", "How about the {s}?", "What is the {s}?",
                    "Now give me the {s}.", "And what is the {s}?", "Can you find the {s}?",
                    "What is the {s} of it?", "Compute the {s} of the same variable."), ("And now the {s}?",),
                    ("Now what about the {s}?", "Next, the {s}?", "Now tell me the {s}.", "Then the {s}?"),
                    fresh=("Tell me its {s}.",))
_STAT_WORDS = {"mean": "mean", "sum": "sum", "max": "maximum", "min": "minimum", "len": "length"}


def variable_followup(g: Gen, previous: Turn, ns: dict[str, Any], about: dict[str, Any]) -> Turn:
    """"And the max?" (same variable) or "What about temps?" (same question, another variable)."""
    kind, name, stat = about["kind"], about["name"], about["stat"]
    others = [n for n, v in ns.items() if _kind(v) == kind and n != name]
    if kind in ("list", "frame") and g.chance(0.5):
        new_stat = g.pick([s for s in _STAT_WORDS if s != stat and (kind == "list" or s in ("mean", "max", "min", "sum"))])
        turn = variable(g, previous.effort, ns, kind, "followup", name, new_stat, about.get("column"))
        turn.prompt = g.pick(_OTHER_STAT).format(s=_STAT_WORDS[new_stat])
        return turn
    if others and stat not in ("get", "above", "count_above", "names_above"):
        other = g.pick(others)
        turn = variable(g, previous.effort, ns, kind, "followup", other, stat, about.get("column"))
        turn.prompt = g.pick(_SAME_STAT_OTHER).format(v=other)
        return turn
    return variable(g, previous.effort, ns, kind, "followup", name)


def define(g: Gen, effort: str, ns: dict[str, Any]) -> Turn:
    """"Store 37 * 12 in total": the model's code defines a variable that stays in the kernel."""
    shown, expr, _ = expression(g)
    target = g.pick(Names(("total", "result", "answer", "value", "product", "amount", "z", "n"), ("total2", "result2", "value2")))
    code = f"{target} = {expr}\nprint({target})"
    prompt = g.pick(Pool(("Store {e} in a variable called {t}.", "Set {t} to {e}.", "Save {e} as {t}.",
                          "Put the value of {e} in {t}.", "Put {e} in a variable {t}.", "Define {t} as {e}.",
                          "Define a variable {t} holding {e}.", "Set a variable {t} to {e}.", "Store {e} as {t}."), ("Store the value of {e} in {t}.",),
                          wide=("Could you assign {e} to a variable named {t}?",
                                "Make a variable {t} equal to {e}.", "I want {t} to hold the result of {e}.",
                                "Please create {t} and set it to {e}.",
                                "Keep {e} in a new variable {t}."))).format(e=expr, t=target)
    turn = Turn("define", prompt, unanswered, effort=effort, call="python", kind="number")
    analysis = think(g, effort, f"Define {target} with python.", [
        f"The user wants a variable {target} holding {expr}.", "Code run by python stays in the user's kernel.",
        f"Run {target} = {expr} and print it."])
    turn.teach = lambda t: python_answer(g, t, code, analysis, lambda r: f"Done: {target} = {r}.",
                                       f"set {target}", lambda r: f"{target} is now {r}.")

    def use(g2: Gen) -> Turn:
        op = g2.pick(("*", "+", "-", "/", "//"))
        c = g2.rng.randint(2, 99)
        follow = arithmetic(g2, turn.effort, None, f"{target} {op} {c}", skill="followup")
        follow.prompt = g2.pick(Pool(("What is {t} {o} {c}?", "Now compute {t} {o} {c}.", "Can you work out {t} {o} {c}?",
                                      "What do you get for {t} {o} {c}?", "Use python to compute {t} {o} {c}.",
                                      "Please compute {t} {o} {c} now.", "What is the value of {t} {o} {c}?",
                                      "Now use {t}: what is {t} {o} {c}?", "What does {t} {o} {c} give?",
                                      "Calculate {t} {o} {c} with python."), ("Evaluate {t} {o} {c}.",),
                                      wide=("Could you tell me what {t} {o} {c} is?", "Now, {t} {o} {c} is what?",
                                            "Run {t} {o} {c} for me.", "Using {t}, work out {t} {o} {c}.",
                                            "I'd like the value of {t} {o} {c}, please."))).format(
            t=target, o=op, c=c)
        return follow

    turn.followups = [use, lambda g2: number_followup(g2, turn)]
    return turn


# ---------------------------------------------------------------- direct answers (no tool)

CAPITALS = {"France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Japan": "Tokyo",
            "China": "Beijing", "India": "New Delhi", "Brazil": "Brasilia", "Canada": "Ottawa", "Egypt": "Cairo",
            "Kenya": "Nairobi", "Mexico": "Mexico City", "Peru": "Lima", "Norway": "Oslo", "Sweden": "Stockholm",
            "Poland": "Warsaw", "Greece": "Athens", "Portugal": "Lisbon", "Ireland": "Dublin", "Austria": "Vienna",
            "Russia": "Moscow", "Turkey": "Ankara", "Chile": "Santiago", "Argentina": "Buenos Aires",
            "Australia": "Canberra", "Thailand": "Bangkok", "Vietnam": "Hanoi", "Finland": "Helsinki",
            "Denmark": "Copenhagen", "Belgium": "Brussels", "Netherlands": "Amsterdam", "Cuba": "Havana"}
COUNTRIES = Pool(CAPITALS)
_CAPITAL_QS = Pool(("What is the capital of {c}?", "What's the capital of {c}?", "Capital of {c}?",
                    "Which city is the capital of {c}?", "Capital city of {c}?",
                    "What city is the capital of {c}?", "Do you know the capital of {c}?",
                    "The capital of {c} is which city?"), ("Tell me the capital of {c}.", "Name the capital of {c}."),
                    wide=("Which city serves as the capital of {c}?", "I'm curious, what's {c}'s capital?",
                          "{c} has which capital city?", "What is {c}'s capital city?"))
_FACTS = (  # (questions, answer, key word the answer must contain)
    (Pool(("Hello!", "Hi", "Hey there", "Good morning!", "hello", "Hello", "Hi!", "Hey!", "Good morning",
           "Hello there!"), ("Hi there!",),
           wide=("Hey, how are you?", "Hiya!", "Good afternoon!", "Hello, anyone there?")),
     "Hello! How can I help you today?", "Hello"),
    (Pool(("Thanks!", "Thank you", "thanks a lot", "Thank you!", "Thanks", "thanks!", "Thank you so much!",
           "Thanks, that is what I need.", "Thanks for the help!"), ("Thanks a lot!",),
           wide=("Cheers, thanks!", "Thank you, that helps.", "Great, thank you very much!", "Many thanks.",
                 "Perfect, thanks!")), "You're welcome!", "welcome"),
    (Pool(("Who are you?", "What are you?", "What model are you?", "What is your name?", "What are you called?",
           "Which model are you?", "Tell me your name.", "What are you exactly?"), ("Which model is this?",),
           ("Which model am I talking to?", "Name this model.", "Which model runs here?",
            "What kind of model is answering me?"),
           fresh=("What is this model called?",)),
     "I am gpt-oss-tiny, a small teaching model in the gpt-oss family, trained by gptoss_lab.", "gpt-oss-tiny"),
    (Pool(("What is Harmony?", "Explain the Harmony format.", "What is the harmony format?", "What is the Harmony format?",
           "Explain Harmony.", "How does the Harmony format work?", "What does Harmony do?",
           "What is the harmony chat format?"), ("Tell me about Harmony.",),
           wide=("Can you describe the Harmony format?", "What's Harmony used for?",
                 "Give me a short explanation of Harmony.", "I keep hearing about Harmony. What is it?",
                 "Tell me briefly what Harmony is.")),
     "Harmony is the chat format of gpt-oss: messages with roles and channels (analysis, commentary, final).", "channels"),
    (Pool(("What is gpt-oss?", "Tell me about gpt-oss.", "Explain gpt-oss.", "What does gpt-oss mean?",
           "Is gpt-oss an open model?", "What is the gpt-oss family?", "Tell me what gpt-oss is.",
           "Explain what gpt-oss is.", "What is the gpt-oss model family?"), ("What are the gpt-oss models?",),
           wide=("Can you describe gpt-oss?", "What's gpt-oss all about?",
                 "Give me a short explanation of gpt-oss.", "I keep hearing about gpt-oss. What is it?")),
     "gpt-oss is OpenAI's family of open-weight mixture-of-experts language models.", "open-weight"),
    (Pool(("What is a mixture of experts?", "What does MoE mean?", "What is MoE?",
           "How does a mixture of experts work?", "Explain what MoE is.", "What does mixture of experts mean?",
           "Tell me what a mixture of experts is.", "Explain MoE.", "What is MoE in a language model?",
           "How does MoE work?"), ("Explain mixture of experts.",),
           wide=("Can you describe how mixture-of-experts models work?", "What's an MoE model?",
                 "Give me a short explanation of MoE.", "I keep hearing about MoE. What is it?")),
     "A mixture of experts routes each token to a few expert networks chosen by a router.", "router"),
    (Pool(("What can you do?", "How can you help me?", "What can you do for me?", "How can you help?",
           "What do you do?", "What tools can you use?", "Tell me what you can do.",
           "Tell me what you can do for me.", "What tools do you have?", "Which tools can you use?"), ("What can you help me with?",),
           wide=("What are you able to do?", "Can you describe what you can do?",
                 "What sort of tasks do you handle?", "Give me a short list of what you can do.",
                 "What are your skills?")),
     "I can do arithmetic and read your notebook variables with python, call your functions, search the documents "
     "you give me, and answer short questions.", "python"),
    (Pool(("What color is the sky?", "What colour is a clear sky?", "What colour is the sky?",
           "Which color is the sky?", "What is the color of the sky?", "What color is the sky today?",
           "Tell me the colour of the sky.", "What is the colour of the sky?", "Tell me the color of the sky.",
           "Which colour is the sky?"), (),
           wide=("What colour does the sky look on a clear day?", "Tell me what color the sky is.",
                 "The sky is what color?", "What colour do we see when we look up at the sky?")),
     "The sky is blue.", "blue"),
    (Pool(("How many days are in a week?", "How long is a week in days?", "How many days make up a week?",
           "Count the days of a week.", "How many days long is a week?", "Tell me the number of days in a week.",
           "What is the number of days in a week?", "What number of days is in a week?"), ("How many days does a week have?",),
           wide=("What's the number of days in one week?", "Quick question: how many days in a week?",
                 "Tell me how long a week is, in days.", "How many days does one week last?")),
     "A week has 7 days.", "7"),
    (Pool(("What is the largest planet?", "Which planet is the biggest?", "Which planet is the largest?",
           "What is the biggest planet?", "Name the largest planet.", "What planet is the biggest?",
           "Which is the largest planet?", "Tell me the biggest planet.", "Which planet is largest?",
           "What planet is the largest?"), (),
           wide=("Which planet in our solar system is the largest?",
                 "What's the biggest planet in the solar system?", "Tell me which planet is the largest.",
                 "Of all the planets, which is biggest?")), "Jupiter is the largest planet.", "Jupiter"),
)


def direct(g: Gen, effort: str, country: str | None = None) -> Turn:
    if country or g.chance(0.5):
        country = country or g.pick(COUNTRIES)
        prompt, answer, key = g.pick(_CAPITAL_QS).format(c=country), f"The capital of {country} is {CAPITALS[country]}.", CAPITALS[country]
    else:
        questions, answer, key = g.pick(_FACTS)
        prompt = g.pick(questions)
    turn = Turn("direct", prompt, unanswered, effort=effort, expected=[key], kind="capital" if country else "fact")
    analysis = think(g, effort, "Simple question; answer directly.", [
        "This is a short question I can answer directly.", "No tool is needed.", "Answer briefly."])

    def teach(turn: Turn) -> Teach:
        yield [analysis, final(answer)]

    turn.teach = teach
    if country:
        turn.followups = [lambda g2: _capital_followup(g2, turn, country)]
    return turn


def _capital_followup(g: Gen, previous: Turn, country: str) -> Turn:
    other = g.pick([c for c in (COUNTRIES.train + (COUNTRIES.held if g.split == "eval" else ())) if c != country])
    turn = direct(g, previous.effort, other)
    turn.skill = "followup"
    turn.prompt = g.pick(Pool(("And of {c}?", "What about {c}?", "And {c}?", "And for {c}?", "How about {c}?",
                               "What is the capital of {c} then?", "Now {c}.", "What about the capital of {c}?",
                               "Which city for {c}?"), ("Same for {c}.",),
                               wide=("Okay, and {c}'s capital?", "And which city is it for {c}?",
                                     "Now do {c}, please.", "How about the capital of {c}?",
                                     "Then {c}'s capital?"))).format(c=other)
    return turn


# ---------------------------------------------------------------- function tools

CITIES = Pool(("Paris", "London", "Tokyo", "Berlin", "Madrid", "Rome", "Oslo", "Lima", "Cairo", "Sydney", "Toronto",
               "Chicago", "Boston", "Seoul", "Mumbai", "Lagos", "Dublin", "Vienna", "Prague", "Athens", "Denver",
               "Austin"))
_CONDITIONS = ("sunny", "cloudy", "rainy", "windy", "snowy", "foggy", "clear")
_SYMBOLS = Pool(("AAPL", "MSFT", "NVDA", "GOOG", "AMZN", "TSLA", "META", "IBM", "INTC", "ORCL", "NFLX", "AMD"))
_CURRENCIES = ("USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "SEK")
_ZONES = Pool(("Europe/Paris", "Asia/Tokyo", "America/New_York", "Europe/London", "Australia/Sydney", "America/Chicago"))


def _object(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(props)}


FUNCTIONS: dict[str, tuple[str, dict[str, Any]]] = {  # name: (description, JSON schema of the arguments)
    "get_weather": ("Get the current weather for a city.", _object(city={"type": "string"})),
    "get_stock_price": ("Get the latest stock price for a ticker symbol.", _object(symbol={"type": "string"})),
    "convert_currency": ("Convert an amount of money between currencies.",
                         _object(amount={"type": "number"}, from_currency={"type": "string"}, to_currency={"type": "string"})),
    "get_time": ("Get the current local time in a time zone.", _object(timezone={"type": "string"})),
    "get_population": ("Get the population of a country.", _object(country={"type": "string"})),
    "get_distance": ("Get the road distance in km between two cities.",
                     _object(origin={"type": "string"}, destination={"type": "string"})),
    "order_status": ("Look up the status of an order by its number.", _object(order_id={"type": "integer"})),
}
_ORDER_STATES = ("shipped", "delivered", "processing", "cancelled", "packed")


def function_case(g: Gen, name: str) -> tuple[dict[str, Any], dict[str, Any], str, list[str], str, str]:
    """(arguments, result, final answer, expected strings, question, what) for one call of `name`."""
    r = g.rng
    if name == "get_weather":
        city = g.pick(CITIES)
        temp, cond = r.randint(-10, 38), r.choice(_CONDITIONS)
        q = g.pick(Pool(("What's the weather in {c}?", "How warm is it in {c} right now?", "Weather in {c}?",
                         "What is the weather like in {c} today?", "Weather for {c} today?",
                         "Is it warm in {c} today?", "What is the weather in {c} right now?",
                         "Can you check the weather in {c}?", "Tell me the weather in {c}.",
                         "Get the current weather for {c}."), ("How is the weather in {c} today?",),
                         wide=("Could you tell me what the weather is doing in {c}?",
                               "What are conditions like in {c} at the moment?",
                               "Is it raining or sunny in {c} right now?",
                               "I'm heading to {c}; what's the weather there?",
                               "Current weather for {c}, please."))).format(c=city)
        return {"city": city}, {"city": city, "temperature_c": temp, "condition": cond}, \
            f"It is {temp} °C and {cond} in {city}.", [str(temp), cond], q, f"get the weather for {city}"
    if name == "get_stock_price":
        sym = g.pick(_SYMBOLS)
        price = round(r.uniform(5, 900), 2)
        q = g.pick(Pool(("What is the stock price of {s}?", "How much is {s} trading at?", "Price of {s} stock?", "What is {s} trading at?",
                         "What does {s} stock cost right now?", "Can you get the stock price for {s}?",
                         "Tell me the price of {s}.", "Check the {s} stock price.", "Current price of {s}?",
                         "Can you check the price of {s} stock?"),
                        ("Get me the latest {s} price.",),
                        wide=("Could you look up what {s} shares cost?", "How is {s} priced right now?",
                              "What's one share of {s} going for?", "I'd like a quote for {s}.",
                              "Check how much {s} stock costs today."))).format(s=sym)
        return {"symbol": sym}, {"symbol": sym, "price": price}, f"{sym} is trading at {price}.", [str(price)], q, \
            f"get the price of {sym}"
    if name == "convert_currency":
        src, dst = r.sample(_CURRENCIES, 2)
        amount = r.choice((r.randint(1, 999), r.randint(1, 9999)))
        converted = round(amount * r.uniform(0.3, 3), 2)
        q = g.pick(Pool(("Convert {a} {f} to {t}.", "How much is {a} {f} in {t}?", "What is {a} {f} in {t}?", "Can you convert {a} {f} into {t}?",
                         "{a} {f} to {t}?", "Please convert {a} {f} to {t}.", "How many {t} do I get for {a} {f}?",
                         "Convert {a} {f} into {t} for me.", "I need {a} {f} in {t}."),
                        ("How much {t} is {a} {f}?",),
                        wide=("Could you change {a} {f} into {t}?", "I have {a} {f}; what is that in {t}?",
                              "What do {a} {f} come to in {t}?", "Exchange {a} {f} to {t}, please.",
                              "Turn {a} {f} into {t}."))).format(a=amount, f=src, t=dst)
        return {"amount": amount, "from_currency": src, "to_currency": dst}, {"amount": converted, "currency": dst}, \
            f"{amount} {src} is {converted} {dst}.", [str(converted)], q, f"convert {amount} {src}"
    if name == "get_time":
        zone = g.pick(_ZONES)
        time = f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}"
        q = g.pick(Pool(("What time is it in {z}?", "Current time in {z}?", "Tell me the time in {z}.", "What time is it now in {z}?",
                         "Get the current time for {z}.", "Check the time in {z}.",
                         "Tell me the current time in {z}.", "What time is it right now in {z}?",
                         "Can you get the time in {z}?", "Get me the time in {z}."),
                        ("What is the local time in {z}?",),
                        wide=("Could you tell me the clock time in {z}?",
                              "What's the time over in {z} at the moment?",
                              "I need to know what time it is in {z}.", "Check the clock in {z} for me.",
                              "What does the clock say in {z}?"))).format(z=zone)
        return {"timezone": zone}, {"timezone": zone, "time": time}, f"It is {time} in {zone}.", [time], q, \
            f"get the time in {zone}"
    if name == "get_population":
        country = g.pick(COUNTRIES)
        people = r.randint(100_000, 1_500_000_000)
        q = g.pick(Pool(("What is the population of {c}?", "How many people live in {c}?", "Population of {c}?", "How many people are in {c}?",
                         "Can you get the population of {c}?", "How many people does {c} have?",
                         "Get the population for {c}.", "Find the population of {c}.",
                         "How many people live in {c} today?", "What is the current population of {c}?"),
                        ("What population does {c} have?",),
                        wide=("Could you look up how many people live in {c}?",
                              "What's the number of inhabitants of {c}?", "How populous is {c}?",
                              "I'd like the population figure for {c}.",
                              "How big is the population of {c} right now?"))).format(c=country)
        return {"country": country}, {"country": country, "population": people}, \
            f"The population of {country} is {people}.", [str(people)], q, f"get the population of {country}"
    if name == "get_distance":
        a, b = g.sample(CITIES, 2)
        km = r.randint(20, 9000)
        q = g.pick(Pool(("How far is it from {a} to {b}?", "Distance from {a} to {b}?", "How many km from {a} to {b}?", "How many km is it from {a} to {b}?",
                         "Can you get the distance between {a} and {b}?", "How far is {a} from {b}?",
                         "Tell me the distance from {a} to {b} in km.", "Get the distance in km from {a} to {b}.",
                         "Find the distance from {a} to {b}.", "How many km is {a} from {b}?"),
                        ("What is the road distance between {a} and {b}?",),
                        wide=("Could you tell me how many kilometres it is from {a} to {b}?",
                              "How many km would I drive from {a} to {b}?",
                              "What's the distance by road from {a} to {b}?",
                              "I need the distance in km between {a} and {b}.", "{a} to {b}: how far is that?",
                              "Measure the distance between {a} and {b} for me."))).format(a=a, b=b)
        return {"origin": a, "destination": b}, {"origin": a, "destination": b, "km": km}, \
            f"It is {km} km from {a} to {b}.", [str(km)], q, f"get the distance from {a} to {b}"
    order = r.randint(1000, 99999)
    state = r.choice(_ORDER_STATES)
    q = g.pick(Pool(("What is the status of order {o}?", "Where is my order {o}?", "Check order {o}.", "Can you check the status of order {o}?",
                     "Tell me the status of my order {o}.", "Look up order {o}.", "Check the status of order {o}.",
                     "What is the current status of order {o}?", "Can you find my order {o}?"),
                    ("Where is order {o} now?",),
                    wide=("Could you tell me where my order {o} is?", "What's going on with order {o}?",
                          "Any update on order {o}?", "I'd like the status of order {o}, please.",
                          "Track order {o} for me."))).format(o=order)
    return {"order_id": order}, {"order_id": order, "status": state}, f"Order {order} is {state}.", [state], q, \
        f"check order {order}"


@dataclass
class FunctionSet:
    """The functions a conversation lists, and what each returns on the next call (set per turn)."""

    names: list[str]
    results: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    args: dict[str, dict[str, Any]] = field(default_factory=dict)   # the arguments the turn's results are for


def function_turn(g: Gen, effort: str, fs: FunctionSet, name: str | None = None, skill: str = "function") -> Turn:
    name = name or g.pick(fs.names)
    args, result, answer, expected, question, what = function_case(g, name)
    turn = Turn(skill, question, unanswered, effort=effort, call=f"functions.{name}", call_args=args, kind=name)
    analysis = think(g, effort, f"Call {name}.", [
        f"The user asks something the {name} function can answer.", f"Its arguments: {json.dumps(args)}.",
        f"Call {name}, then answer from its result."])
    failing = skill == "error"

    def setup(namespace: dict[str, Any]) -> None:
        fs.results, fs.args = {name: result}, {name: args}
        fs.errors = {name: f"the service has no data for {json.dumps(args)}"} if failing else {}

    def teach(turn: Turn) -> Teach:
        out = yield [analysis, function_call(name, args)]
        if out.startswith(NOT_RUN):
            turn.expected = [f"could not {what}"]
            yield [final(not_run(out, what))]
        elif out.startswith("Error"):
            turn.expected = [f"could not {what}"]
            yield [final(f"I could not {what}: {name} reported an error ({out.split(':', 2)[-1].strip()}).")]
        else:
            turn.expected = expected
            yield [*check(effort, f"{name} returned {out}."), final(answer)]

    turn.teach, turn.setup = teach, setup
    turn.followups = [lambda g2: _function_followup(g2, turn, fs, name)]
    return turn


def _function_followup(g: Gen, previous: Turn, fs: FunctionSet, name: str) -> Turn:
    turn = function_turn(g, previous.effort, fs, name, skill="followup")
    prompts = {"get_weather": ("And in {city}?", "What about {city}?"), "get_stock_price": ("And {symbol}?", "What about {symbol}?"),
               "get_population": ("And {country}?", "What about {country}?"), "get_time": ("And in {timezone}?",),
               "order_status": ("And order {order_id}?",)}
    if name in prompts:
        turn.prompt = g.pick(prompts[name]).format(**turn.call_args)  # type: ignore[arg-type]
    return turn


# ---------------------------------------------------------------- structured answers

def structured(g: Gen, effort: str, ns: dict[str, Any]) -> Turn:
    """A final answer as JSON in the requested shape (the response format in the developer message)."""
    if g.chance(0.6):
        shown, expr, _ = expression(g)
        code = code_for(expr)
        fmt = _format(g, "Calculation", (("expression", str), ("result", float)))
        turn = Turn("structured", shown, unanswered, effort=effort, call="python", response_format=fmt, kind="number")
        make = lambda r: json.dumps({"expression": expr, "result": _json_number(r)})  # noqa: E731
        what = f"compute {expr}"
    else:
        question, code, _, about = variable_question(g, ns, g.pick(("list", "frame")))
        fmt = _format(g, "Answer", (("question", str), ("answer", str)))
        turn = Turn("structured", question, unanswered, effort=effort, call="python", response_format=fmt, kind="")
        make = lambda r: json.dumps({"question": question, "answer": r})  # noqa: E731
        what = f"read {about['name']}"
    analysis = think(g, effort, "Use python, then answer in the requested JSON format.", [
        "The answer must follow the response format in the developer message.", f"Compute it with {code}.",
        "Then write the JSON object."])

    def teach(turn: Turn) -> Teach:
        out = yield [analysis, python_call(code)]
        if out.startswith(NOT_RUN):
            turn.expected = [f"could not {what}"]
            yield [final(not_run(out, what))]
            return
        result = result_of(out)
        turn.expected, turn.call_output = [result], out
        yield [final(make(result))]

    turn.teach = teach
    return turn


def _json_number(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _format(g: Gen, name: str, fields: tuple[tuple[str, type], ...]) -> Any:
    """A response format as users write it: a dataclass, or a JSON-schema dict."""
    if g.chance(0.5):
        return dataclasses.make_dataclass(name, list(fields))
    types = {str: "string", float: "number", int: "integer"}
    return {"title": name, "type": "object", "properties": {k: {"type": types[t]} for k, t in fields},
            "required": [k for k, _ in fields]}


# ---------------------------------------------------------------- tool errors and recovery

def _typo(name: str, g: Gen) -> str:
    if len(name) < 3:
        return name + name[-1]
    i = g.rng.randrange(1, len(name))
    return name[:i] + name[i + 1:] if g.chance(0.5) else name[:i] + name[i] + name[i:]


def error(g: Gen, effort: str, ns: dict[str, Any], fs: FunctionSet | None) -> Turn:
    """A call that fails: fixed and run again (typo, syntax), or reported honestly (no such variable,
    division by zero, a missing key, a function's error)."""
    kind, listing = g.rng.random(), None
    if fs and kind < 0.15:
        return function_turn(g, effort, fs, skill="error")
    if kind < 0.45:
        fix = "typo" if g.chance(0.6) else "syntax"
        if fix == "typo":
            question, code, final_t, about = variable_question(g, ns, g.pick(("list", "dict", "frame")))
            wrong = code.replace(about["name"], _typo(about["name"], g), 1)
            note = f"NameError: I misspelled the variable; it is {about['name']}. Fix the name and run again."
        else:
            question, expr, _ = expression(g)
            code, final_t = code_for(expr), f"{expr} = {{r}}."
            wrong = code[:-1]
            note = "SyntaxError: a parenthesis is missing. Fix it and run again."
        turn = Turn("error", question, unanswered, effort=effort, call="python")
        analysis = think(g, effort, "Use python.", [f"Run {code} in python.", "Use python for an exact result."])

        def teach(turn: Turn) -> Teach:
            out = yield [analysis, python_call(wrong, trained=False)]
            if out.startswith(NOT_RUN):
                turn.expected = ["could not run the code"]
                yield [final(not_run(out, "run the code"))]
                return
            out = yield [say(note), python_call(code)]
            result = result_of(out)
            turn.expected, turn.call_output = _expected_parts(final_t, result), out
            yield [final(_fill(final_t, result))]

        turn.teach = teach
        return turn
    if kind < 0.65:
        missing = g.pick([m for m in (LIST_NAMES.vary(n, g) for n in LIST_NAMES.train) if m not in ns])
        stat = g.pick(("mean", "sum", "max", "len"))
        question, code, _, _ = variable_question(g, {missing: [1, 2]}, "list", missing, stat)
        answer = f"There is no variable named {missing} in your kernel. Define it first, then ask again."
        expected, note = [missing], f"NameError: {missing} is not defined in the kernel. Tell the user."
    elif kind < 0.82:
        a = _number(g)
        question = g.pick(_WORDS["/"]).format(a=a, b=0) if g.chance(0.4) else g.pick(_ASK).format(e=f"{a} / 0")
        code = code_for(f"{a} / 0")
        answer = f"{a} / 0 is undefined: dividing by zero is not possible, and python raised ZeroDivisionError."
        expected, note = ["undefined"], "ZeroDivisionError: division by zero has no result. Tell the user."
    else:
        name = g.pick([n for n, v in ns.items() if _kind(v) == "dict"])
        key = g.pick([k for k in KEYS.train if k not in ns[name]])
        question = g.pick(_DICT_QS["get"][0]).format(v=name, k=key)
        code, listing = f"print({name}['{key}'])", f"print(list({name}))"
        answer = f"{name} has no entry for {key} (KeyError). Its keys are: {', '.join(ns[name])}."
        expected, note = [key, *list(ns[name])], f"KeyError: {key} is not a key of {name}. List its keys with {listing}."
    turn = Turn("error", question, unanswered, effort=effort, call="python")
    analysis = think(g, effort, "Use python.", [f"Run {code} in python.", "Use python for an exact result."])

    def report(turn: Turn) -> Teach:
        out = yield [analysis, python_call(code)]
        if out.startswith(NOT_RUN):
            turn.expected = ["could not run the code"]
            yield [final(not_run(out, "run the code"))]
            return
        turn.expected, turn.call_output = expected, out
        if listing is None:
            yield [say(note), final(answer)]
            return
        # the keys are named only after a call has shown them: the model must not learn to make them up
        keys = yield [say(note), python_call(listing)]
        if keys.startswith(NOT_RUN):
            turn.expected = [key]
            yield [final(f"{name} has no entry for {key} (KeyError); I could not list its keys.")]
            return
        yield [final(answer)]

    turn.teach = report
    return turn


# ---------------------------------------------------------------- skipped calls

def skip(turn: Turn, g: Gen) -> Turn:
    """The same turn, asked so that its call does not run: the user skips it, nobody can approve it,
    or approval is `never`. The teacher answers honestly and does not call again."""
    how = g.rng.random()
    if how < 0.5:
        turn.approval, turn.decisions = "ask", (False,)
    elif how < 0.75:
        turn.approval, turn.decisions = "ask", (None,)
    else:
        turn.approval = "never"
    turn.skill, turn.skipped = "skip", True
    original = turn.teach

    def again(g2: Gen) -> Turn:
        prompt = g2.pick(Pool(("OK, run it.", "Go ahead and run it.", "You can run it now.", "Please try again, I allow it.", "Run it.",
                               "OK, go ahead.", "I allow it, run it now.", "You can run it.",
                               "OK, you can run the code now.", "You can try again, I approve."),
                              ("Please run it now.",),
                              wide=("Fine, you may run it.", "Alright, I approve. Go ahead.",
                                    "Sure, try the call again.", "Okay, I give permission. Run it.",
                                    "Approved, go on and run it.")))
        retry = dataclasses.replace(turn, skill="followup", prompt=prompt, approval="auto", decisions=(), skipped=False,
                                    expected=[], followups=[])
        retry.teach = original
        return retry

    turn.followups = [again]
    return turn


# ---------------------------------------------------------------- long outputs (long conversations)

def show(g: Gen, effort: str, size: int) -> Turn:
    """"Show me the log": a variable whose printed value is long (`size` characters), for long contexts."""
    name = g.pick(Pool(("log_lines", "readings_all", "big_list", "history", "sensor_data", "events"), ("events2", "history2")))
    values = [g.rng.randint(0, 9999) for _ in range(max(4, size // 6))]
    prompt = g.pick(Pool(("Show me {v}.", "Print {v}.", "What is in {v}?", "Display {v}.", "Print out {v}.",
                          "Show {v}.", "Display the values of {v}.", "Can you print {v}?",
                          "Show the values in {v}.", "Display {v} for me."), ("Let me see {v}.",),
                          wide=("Could you show me what {v} holds?", "I'd like to look at {v}.",
                                "Output the contents of {v}.", "Print the whole of {v}, please.",
                                "What does {v} contain? Print it."))).format(v=name)
    turn = Turn("long", prompt, unanswered, effort=effort, call="python", kind="list")
    analysis = think(g, effort, "Print it with python.", [f"The user wants to see {name}.", f"Run print({name})."])
    turn.teach = lambda t: python_answer(g, t, f"print({name})", analysis,
                                       lambda r: f"{name} is printed above; it starts with {values[0]} and ends with {values[-1]}.",
                                       f"show {name}", None, record=False)
    turn.expected = [str(values[0])]
    turn.setup = lambda namespace: namespace.__setitem__(name, list(values))
    return turn
