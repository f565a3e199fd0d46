"""Synthetic Harmony conversations for gpt-oss-tiny, rendered exactly as `Session` renders them.

Each example is one turn (optionally after an earlier turn): system message (random effort and
date), optional developer message with function tools, the user's question, and the assistant's
messages -- analysis, a python or function call, the tool's answer, the final answer. Python tool
outputs come from the real `PythonTool` run on the example's code in the example's namespace.
Categories: arithmetic, kernel variables, direct answers, tool errors, function calls, follow-ups.
"""
from __future__ import annotations

import datetime as _dt
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from openai_harmony import Message, Role, ToolDescription

from .. import harmony
from ..tools.python import PythonTool

CATEGORIES = ("arithmetic", "kernel", "direct", "error", "function", "followup")
_WEIGHTS = (0.32, 0.24, 0.1, 0.08, 0.18, 0.08)


@dataclass
class Example:
    """One training/evaluation conversation and what a correct model does with it."""

    category: str
    effort: str
    messages: list[Message]        # the whole conversation, final answer last
    turn: int                      # index of this turn's user message
    trained: list[bool]            # per message: does the loss cover it (assistant messages only)
    namespace: dict[str, Any]      # kernel variables before the turn
    functions: dict[str, Callable[..., Any]] = field(default_factory=dict)  # listed tools, in order
    expected: list[str] = field(default_factory=list)   # strings the final answer must contain
    call: str | None = None        # expected python code, or 'functions.NAME {json args}'

    @property
    def question(self) -> str:
        return harmony.text_of(self.messages[self.turn])

    @property
    def final(self) -> str:
        return harmony.text_of(self.messages[-1])


# ---------------------------------------------------------------- message helpers

def _assistant(text: str, channel: str, recipient: str | None = None, content_type: str | None = None) -> Message:
    message = Message.from_role_and_content(Role.ASSISTANT, text).with_channel(channel)
    if recipient:
        message = message.with_recipient(recipient)
    return message.with_content_type(content_type) if content_type else message


def _run(code: str, namespace: dict[str, Any]) -> str:
    """The tool text the session would send back: real PythonTool output, '(no output)' when empty."""
    return PythonTool(namespace, timeout=None).execute(code).output or "(no output)"


def _python_call(code: str, namespace: dict[str, Any]) -> tuple[list[Message], str]:
    output = _run(code, namespace)
    return [_assistant(code, "analysis", "python"), harmony.tool_message("python", output, "analysis")], output


def _think(rng: random.Random, effort: str, low: str, steps: list[str]) -> Message:
    """Analysis whose length follows the reasoning effort: one sentence, two, or several steps."""
    if effort == "low":
        text = low
    elif effort == "medium":
        text = steps[0] + " " + steps[-1]
    else:
        text = " ".join(f"Step {i}: {s}" for i, s in enumerate(steps, 1)) + " " + rng.choice(_CHECKS)
    return _assistant(text, "analysis")


_CHECKS = ("Then I report the result exactly as printed.", "I will copy the result exactly.",
           "Finally, check the answer against the output.")


def _date(rng: random.Random) -> str:
    return (_dt.date(2024, 1, 1) + _dt.timedelta(days=rng.randrange(3 * 365))).isoformat()


# ---------------------------------------------------------------- arithmetic

_OPS = {"+": ("plus", "sum"), "-": ("minus", "difference"), "*": ("times", "product"), "//": ("divided by", "quotient")}
_ASK = ("What is {e}?", "What's {e}?", "Compute {e}.", "Calculate {e}.", "How much is {e}?", "{e} = ?",
        "Please compute {e}.", "Can you work out {e}?", "what is {e}", "Evaluate {e}.", "Use python to compute {e}.",
        "I need {e}.", "Quick: {e}?", "Solve {e}.")
_WORDS = {
    "+": ("What is {a} plus {b}?", "Add {a} and {b}.", "What is the sum of {a} and {b}?"),
    "-": ("What is {a} minus {b}?", "Subtract {b} from {a}.", "What is the difference between {a} and {b}?"),
    "*": ("What is {a} times {b}?", "Multiply {a} by {b}.", "What is the product of {a} and {b}?"),
    "//": ("What is {a} divided by {b}, rounded down?", "Integer-divide {a} by {b}.", "What is {a} // {b} in integer division?"),
}
_ARITH_FINAL = ("{e} = {r}.", "{e} = {r}.", "The answer is {r}.", "{e} is {r}.")


def _operand(rng: random.Random) -> int:
    digits = rng.choice((1, 2, 2, 3, 3, 4, 4))
    return rng.randint(10 ** (digits - 1) if digits > 1 else 0, 10 ** digits - 1)


def _expression(rng: random.Random) -> tuple[str, str]:
    """(expression as the user writes it, canonical python expression)."""
    kind = rng.random()
    if kind < 0.7:
        op = rng.choice(tuple(_OPS))
        a, b = _operand(rng), _operand(rng)
        if op == "//":
            b = rng.randint(2, 99)
        expr = f"{a} {op} {b}"
        if rng.random() < 0.25:
            return rng.choice(_WORDS[op]).format(a=a, b=b), expr
        return (expr.replace(" ", "") if rng.random() < 0.2 else expr), expr
    a, b, c = (rng.randint(1, 999) for _ in range(3))
    o1, o2 = rng.choice("+-*"), rng.choice("+-*")
    expr = rng.choice((f"{a} {o1} {b} {o2} {c}", f"({a} {o1} {b}) {o2} {c}"))
    return expr, expr


def _arithmetic(rng: random.Random, effort: str, namespace: dict[str, Any]) -> tuple[list[Message], list[bool], list[str], str]:
    shown, expr = _expression(rng)
    question = shown if not shown[0].isdigit() and not shown.startswith("(") else rng.choice(_ASK).format(e=shown)
    code = f"print({expr})"
    think = _think(rng, effort, "Compute it with python.", [
        f"The user wants {expr}.", "Exact arithmetic is best done by the python tool.",
        f"Run print({expr}).", "Use python to get the exact value."])
    calls, output = _python_call(code, namespace)
    result = output.strip()
    final = _assistant(rng.choice(_ARITH_FINAL).format(e=expr, r=result), "final")
    return [harmony.user_message(question), think, *calls, final], [False, True, True, False, True], [result], code


# ---------------------------------------------------------------- kernel variables

_LISTS = ("data", "values", "scores", "numbers", "ages", "temps", "sales", "nums", "counts", "weights", "heights",
          "marks", "readings", "samples", "costs", "x", "y", "points", "totals", "visits", "steps", "results", "grades")
_DICTS = ("prices", "stock", "inventory", "population", "salaries", "ratings", "votes", "budget", "totals_by_name")
_KEYS = ("apple", "banana", "cherry", "mango", "pear", "grape", "lemon", "kiwi", "plum", "peach", "alice", "bob",
         "carol", "dave", "erin", "frank", "north", "south", "east", "west")
_STRINGS = ("text", "name", "message", "sentence", "title", "word", "greeting")
_WORDS_POOL = ("hello world", "gpt oss", "the quick brown fox", "jupyter notebook", "mixture of experts", "harmony format",
               "open weights", "python tool", "reasoning effort", "tiny model", "machine learning", "data science")

_LIST_QS = (  # (question templates, code template, final template)
    (("What is the mean of {v}?", "What's the average of {v}?", "Compute the mean of {v}.", "Average of {v}?"),
     "print(round(sum({v}) / len({v}), 2))", "The mean of {v} is {r}."),
    (("What is the sum of {v}?", "Add up all the values in {v}.", "What is the total of {v}?", "Sum {v}."),
     "print(sum({v}))", "The sum of {v} is {r}."),
    (("What is the largest value in {v}?", "What is the max of {v}?", "Find the maximum of {v}."),
     "print(max({v}))", "The largest value in {v} is {r}."),
    (("What is the smallest value in {v}?", "What is the min of {v}?", "Find the minimum of {v}."),
     "print(min({v}))", "The smallest value in {v} is {r}."),
    (("How many items are in {v}?", "What is the length of {v}?", "How long is {v}?", "len({v})?"),
     "print(len({v}))", "{v} has {r} items."),
    (("Sort {v}.", "What is {v} sorted?", "Show {v} in ascending order."),
     "print(sorted({v}))", "Sorted: {r}."),
    (("What is the first element of {v}?", "What is {v}[0]?"), "print({v}[0])", "The first element of {v} is {r}."),
    (("What is the last element of {v}?", "What is {v}[-1]?"), "print({v}[-1])", "The last element of {v} is {r}."),
    (("How many values in {v} are above {k}?", "Count the items in {v} greater than {k}."),
     "print(len([n for n in {v} if n > {k}]))", "{r} values in {v} are above {k}."),
)
_DICT_QS = (
    (("What is {v}['{k}']?", "What value does {v} have for {k}?", "Look up {k} in {v}.", "What is the {k} entry of {v}?"),
     "print({v}['{k}'])", "{v}['{k}'] is {r}."),
    (("Which key in {v} has the largest value?", "What is the key with the highest value in {v}?"),
     "print(max({v}, key={v}.get))", "The key with the largest value in {v} is {r}."),
    (("How many entries does {v} have?", "How many keys are in {v}?"), "print(len({v}))", "{v} has {r} entries."),
    (("What is the total of the values in {v}?", "Sum the values of {v}."), "print(sum({v}.values()))",
     "The values of {v} add up to {r}."),
)
_STR_QS = (
    (("How many characters are in {v}?", "What is the length of {v}?"), "print(len({v}))", "{v} has {r} characters."),
    (("What is {v} in upper case?", "Uppercase {v}."), "print({v}.upper())", "In upper case: {r}."),
    (("How many words are in {v}?", "Count the words in {v}."), "print(len({v}.split()))", "{v} has {r} words."),
)


def _kernel_namespace(rng: random.Random) -> dict[str, Any]:
    """A few user variables of each kind, as a notebook would hold them."""
    ns: dict[str, Any] = {}
    for name in rng.sample(_LISTS, 3):
        ns[name] = [rng.randint(0, 200) for _ in range(rng.randint(3, 9))]
    for name in rng.sample(_DICTS, 2):
        ns[name] = {k: rng.randint(1, 999) for k in rng.sample(_KEYS, rng.randint(2, 6))}
    ns[rng.choice(_STRINGS)] = rng.choice(_WORDS_POOL)
    return ns


def _kernel_question(rng: random.Random, namespace: dict[str, Any]) -> tuple[str, str, str]:
    """(question, code, final template with {r}) about one of the namespace's variables."""
    name = rng.choice([n for n in namespace if not n.startswith("__")])
    value = namespace[name]
    if isinstance(value, list):
        qs, code, final = rng.choice(_LIST_QS)
        key = str(rng.choice((10, 50, 100, 150)))
    elif isinstance(value, dict):
        qs, code, final = rng.choice(_DICT_QS)
        key = rng.choice(list(value))
    else:
        qs, code, final = rng.choice(_STR_QS)
        key = ""
    fill = {"v": name, "k": key}
    return rng.choice(qs).format(**fill), code.format(**fill), final.replace("{v}", name).replace("{k}", key)


def _kernel(rng: random.Random, effort: str, namespace: dict[str, Any]) -> tuple[list[Message], list[bool], list[str], str]:
    namespace.update(_kernel_namespace(rng))
    question, code, final_t = _kernel_question(rng, namespace)
    think = _think(rng, effort, "The variable lives in the user's kernel; use python.", [
        "The question is about a variable in the user's kernel.", "python runs in the same kernel, so it can read it.",
        f"Run: {code}", "I will run code on it with python."])
    calls, output = _python_call(code, namespace)
    result = output.strip()
    final = _assistant(final_t.format(r=result), "final")
    return [harmony.user_message(question), think, *calls, final], [False, True, True, False, True], [result], code


# ---------------------------------------------------------------- direct answers

_CAPITALS = {"France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Japan": "Tokyo",
             "China": "Beijing", "India": "New Delhi", "Brazil": "Brasilia", "Canada": "Ottawa", "Egypt": "Cairo",
             "Kenya": "Nairobi", "Mexico": "Mexico City", "Peru": "Lima", "Norway": "Oslo", "Sweden": "Stockholm",
             "Poland": "Warsaw", "Greece": "Athens", "Portugal": "Lisbon", "Ireland": "Dublin", "Austria": "Vienna",
             "Russia": "Moscow", "Turkey": "Ankara", "Chile": "Santiago", "Argentina": "Buenos Aires",
             "Australia": "Canberra", "Thailand": "Bangkok", "Vietnam": "Hanoi", "Finland": "Helsinki",
             "Denmark": "Copenhagen", "Belgium": "Brussels", "Netherlands": "Amsterdam", "Cuba": "Havana"}
_CAPITAL_QS = ("What is the capital of {c}?", "What's the capital of {c}?", "Capital of {c}?",
               "Which city is the capital of {c}?", "Tell me the capital of {c}.")
_FACTS = (  # (questions, answer, key word the answer must contain)
    (("Hello!", "Hi", "Hey there", "Good morning!", "hello"), "Hello! How can I help you today?", "Hello"),
    (("Thanks!", "Thank you", "thanks a lot"), "You're welcome!", "welcome"),
    (("Who are you?", "What are you?", "What model are you?"),
     "I am gpt-oss-tiny, a small teaching model in the gpt-oss family, trained by gptoss_lab.", "gpt-oss-tiny"),
    (("What is Harmony?", "Explain the Harmony format.", "What is the harmony format?"),
     "Harmony is the chat format of gpt-oss: messages with roles and channels (analysis, commentary, final).", "channels"),
    (("What is gpt-oss?", "Tell me about gpt-oss."),
     "gpt-oss is OpenAI's family of open-weight mixture-of-experts language models.", "open-weight"),
    (("What is a mixture of experts?", "What does MoE mean?"),
     "A mixture of experts routes each token to a few expert networks chosen by a router.", "router"),
    (("What can you do?", "How can you help me?"),
     "I can do arithmetic and read your notebook variables with python, and answer short questions.", "python"),
    (("What color is the sky?", "What colour is a clear sky?"), "The sky is blue.", "blue"),
    (("How many days are in a week?",), "A week has 7 days.", "7"),
    (("What is the largest planet?", "Which planet is the biggest?"), "Jupiter is the largest planet.", "Jupiter"),
    (("What is the boiling point of water?",), "Water boils at 100 °C at sea level.", "100"),
    (("What language are you written in?", "What is Python?"), "Python is a programming language; I use it as a tool.", "Python"),
)


def _direct(rng: random.Random, effort: str, namespace: dict[str, Any]) -> tuple[list[Message], list[bool], list[str], str | None]:
    if rng.random() < 0.55:
        country = rng.choice(list(_CAPITALS))
        question, answer, key = rng.choice(_CAPITAL_QS).format(c=country), f"The capital of {country} is {_CAPITALS[country]}.", _CAPITALS[country]
    else:
        qs, answer, key = rng.choice(_FACTS)
        question = rng.choice(qs)
    think = _think(rng, effort, "Simple question; answer directly.", [
        "This is a short question I can answer directly.", "No tool is needed.", "Recall the answer.",
        "Answer briefly without a tool."])
    return [harmony.user_message(question), think, _assistant(answer, "final")], [False, True, True], [key], None


# ---------------------------------------------------------------- tool errors

def _typo(name: str, rng: random.Random) -> str:
    if len(name) < 3:
        return name + name[-1]
    i = rng.randrange(1, len(name))
    return name[:i] + name[i + 1:] if rng.random() < 0.5 else name[:i] + name[i] + name[i:]


def _error(rng: random.Random, effort: str, namespace: dict[str, Any]) -> tuple[list[Message], list[bool], list[str], str]:
    """A failed call (not trained: the model should not learn to make it) and its correction."""
    kind = rng.random()
    if kind < 0.45:  # a typo in a kernel variable's name
        namespace.update(_kernel_namespace(rng))
        question, code, final_t = _kernel_question(rng, namespace)
        name = next(n for n in namespace if n in code)
        wrong = code.replace(name, _typo(name, rng), 1)
        fix = f"NameError: I misspelled the variable; it is {name}. Fix the name and run again."
    elif kind < 0.75:  # a missing parenthesis
        shown, expr = _expression(rng)
        question = rng.choice(_ASK).format(e=shown)
        code, final_t = f"print({expr})", f"{expr} = {{r}}."
        wrong = code[:-1]
        fix = "SyntaxError: a parenthesis is missing. Fix it and run again."
    else:  # the variable does not exist: report it, no retry
        namespace.update(_kernel_namespace(rng))
        missing = rng.choice([n for n in _LISTS if n not in namespace])
        qs, code, _ = rng.choice(_LIST_QS[:5])
        code = code.format(v=missing, k="")
        question = rng.choice(qs).format(v=missing)
        think = _think(rng, effort, "The variable lives in the user's kernel; use python.", [
            "The question is about a variable in the user's kernel.", "python runs in the same kernel, so it can read it.",
            f"Run: {code}", "I will run code on it with python."])
        calls, output = _python_call(code, namespace)
        after = _assistant(f"NameError: {missing} is not defined in the kernel. Tell the user.", "analysis")
        final = _assistant(f"There is no variable named {missing} in your kernel. Define it first.", "final")
        return ([harmony.user_message(question), think, *calls, after, final], [False, True, True, False, True, True],
                [missing], code)
    think = _think(rng, effort, "Use python.", [f"Run {code} in python.", "Use python for an exact result."])
    bad, _ = _python_call(wrong, namespace)
    after = _assistant(fix, "analysis")
    calls, output = _python_call(code, namespace)
    result = output.strip()
    final = _assistant(final_t.format(r=result), "final")
    return ([harmony.user_message(question), think, *bad, after, *calls, final],
            [False, True, False, False, True, True, False, True], [result], code)


# ---------------------------------------------------------------- function calls

_CITIES = ("Paris", "London", "Tokyo", "Berlin", "Madrid", "Rome", "Oslo", "Lima", "Cairo", "Sydney", "Toronto",
           "Chicago", "Boston", "Seoul", "Mumbai", "Lagos", "Dublin", "Vienna", "Prague", "Athens", "Denver", "Austin")
_CONDITIONS = ("sunny", "cloudy", "rainy", "windy", "snowy", "foggy", "clear")
_SYMBOLS = ("AAPL", "MSFT", "NVDA", "GOOG", "AMZN", "TSLA", "META", "IBM", "INTC", "ORCL", "NFLX", "AMD")
_CURRENCIES = ("USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "SEK")
_ZONES = ("Europe/Paris", "Asia/Tokyo", "America/New_York", "Europe/London", "Australia/Sydney", "America/Chicago")
_COUNTRIES = tuple(_CAPITALS)


def _schema(**props: str) -> dict[str, Any]:
    return {"type": "object", "properties": {k: {"type": t} for k, t in props.items()}, "required": list(props)}


_FUNCTIONS = {  # name: (description, parameters schema)
    "get_weather": ("Get the current weather for a city.", _schema(city="string")),
    "get_stock_price": ("Get the latest stock price for a ticker symbol.", _schema(symbol="string")),
    "convert_currency": ("Convert an amount of money between currencies.",
                         _schema(amount="number", from_currency="string", to_currency="string")),
    "get_time": ("Get the current local time in a time zone.", _schema(timezone="string")),
    "get_population": ("Get the population of a country.", _schema(country="string")),
}


def tool_descriptions(names: list[str]) -> list[ToolDescription]:
    """The ToolDescriptions of the synthetic function tools, as a developer message lists them."""
    return [ToolDescription.new(n, _FUNCTIONS[n][0], parameters=_FUNCTIONS[n][1]) for n in names]


def _function_case(rng: random.Random) -> tuple[str, dict[str, Any], dict[str, Any], str, list[str], str]:
    """(function name, arguments, result, final answer, expected strings, question) for one question."""
    name = rng.choice(list(_FUNCTIONS))
    if name == "get_weather":
        city = rng.choice(_CITIES)
        temp, cond = rng.randint(-10, 38), rng.choice(_CONDITIONS)
        question = rng.choice(("What's the weather in {c}?", "How warm is it in {c} right now?",
                               "Weather in {c}?", "What is the weather like in {c} today?")).format(c=city)
        return name, {"city": city}, {"city": city, "temperature_c": temp, "condition": cond}, \
            f"It is {temp} °C and {cond} in {city}.", [str(temp), cond], question
    if name == "get_stock_price":
        sym = rng.choice(_SYMBOLS)
        price = round(rng.uniform(5, 900), 2)
        question = rng.choice(("What is the stock price of {s}?", "How much is {s} trading at?",
                               "Price of {s} stock?", "Get me the latest {s} price.")).format(s=sym)
        return name, {"symbol": sym}, {"symbol": sym, "price": price}, f"{sym} is trading at {price}.", [str(price)], question
    if name == "convert_currency":
        src, dst = rng.sample(_CURRENCIES, 2)
        amount = rng.choice((rng.randint(1, 999), rng.randint(1, 9999)))
        converted = round(amount * rng.uniform(0.3, 3), 2)
        question = rng.choice(("Convert {a} {f} to {t}.", "How much is {a} {f} in {t}?",
                               "What is {a} {f} in {t}?")).format(a=amount, f=src, t=dst)
        return name, {"amount": amount, "from_currency": src, "to_currency": dst}, \
            {"amount": converted, "currency": dst}, f"{amount} {src} is {converted} {dst}.", [str(converted)], question
    if name == "get_time":
        zone = rng.choice(_ZONES)
        time = f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}"
        question = rng.choice(("What time is it in {z}?", "Current time in {z}?", "Tell me the time in {z}.")).format(z=zone)
        return name, {"timezone": zone}, {"timezone": zone, "time": time}, f"It is {time} in {zone}.", [time], question
    country = rng.choice(_COUNTRIES)
    people = rng.randint(100_000, 1_500_000_000)
    question = rng.choice(("What is the population of {c}?", "How many people live in {c}?",
                           "Population of {c}?")).format(c=country)
    return name, {"country": country}, {"country": country, "population": people}, \
        f"The population of {country} is {people}.", [str(people)], question


def _function(rng: random.Random, effort: str, namespace: dict[str, Any]) -> tuple[list[Message], list[bool], list[str], str]:
    name, args, result, answer, expected, question = _function_case(rng)
    think = _think(rng, effort, f"Call {name}.", [
        f"The user asks something the {name} function can answer.", f"Its arguments: {json.dumps(args)}.",
        "Read the result it returns.", f"I will call {name}."])
    recipient = f"functions.{name}"
    call = _assistant(json.dumps(args), "commentary", recipient, "<|constrain|>json")
    reply = harmony.tool_message(recipient, json.dumps(result, ensure_ascii=False, default=str), "commentary")
    namespace["__function__"] = (name, result)
    return ([harmony.user_message(question), think, call, reply, _assistant(answer, "final")],
            [False, True, True, False, True], expected, f"{recipient} {json.dumps(args)}")


# ---------------------------------------------------------------- follow-ups (multi-turn)

_FOLLOW = {"+": ("Now add {c} to that.", "Add {c} to the result."), "-": ("Now subtract {c} from that.", "Minus {c}?"),
           "*": ("Now multiply that by {c}.", "And times {c}?", "Multiply the result by {c}.")}


def _followup(rng: random.Random, effort: str, namespace: dict[str, Any]) -> tuple[list[Message], list[bool], list[str], str]:
    first, first_trained, expected, _ = _arithmetic(rng, effort, namespace)
    op = rng.choice(tuple(_FOLLOW))
    c = _operand(rng)
    expr = f"{expected[0]} {op} {c}"
    code = f"print({expr})"
    think = _think(rng, effort, "Use the previous result with python.", [
        f"The previous result was {expected[0]}.", f"Compute {expr}.", f"Run print({expr}).",
        "Use python on the previous result."])
    calls, output = _python_call(code, namespace)
    result = output.strip()
    final = _assistant(f"{expr} = {result}.", "final")
    messages = [*first, harmony.user_message(rng.choice(_FOLLOW[op]).format(c=c)), think, *calls, final]
    return messages, [*[False] * len(first), False, True, True, False, True], [result], code


_BUILDERS = {"arithmetic": _arithmetic, "kernel": _kernel, "direct": _direct, "error": _error,
             "function": _function, "followup": _followup}


# ---------------------------------------------------------------- examples and tokens

def make_example(rng: random.Random, category: str | None = None, effort: str | None = None) -> Example:
    """One conversation of `category` (random when None), sometimes after an unrelated earlier turn."""
    category = category or rng.choices(CATEGORIES, _WEIGHTS)[0]
    effort = effort or rng.choice(harmony.EFFORTS)
    namespace: dict[str, Any] = {}
    functions_used: list[str] = []
    body, trained, expected, call = _BUILDERS[category](rng, effort, namespace)
    if category != "followup" and rng.random() < 0.15:  # an earlier, unrelated turn
        earlier, earlier_trained, _, _ = _BUILDERS[rng.choice(("arithmetic", "direct", "kernel"))](rng, effort, {})
        body, trained = [*earlier, *body], [False] * len(earlier) + trained
    function = namespace.pop("__function__", None)
    functions: dict[str, Callable[..., Any]] = {}
    if function:
        name, result = function
        others = [n for n in _FUNCTIONS if n != name]
        functions_used = [name, *rng.sample(others, rng.randint(0, 1))]
        rng.shuffle(functions_used)
        functions = {n: (lambda _result=(result if n == name else {}), **_: _result) for n in functions_used}
    head = [harmony.system_message(effort, tools=[PythonTool().system_config()], date=_date(rng))]
    if functions_used:
        head.append(harmony.developer_message(functions=tool_descriptions(functions_used)))
    messages = [*head, *body]
    trained = [False] * len(head) + trained
    turn = max(i for i, m in enumerate(messages) if m.author.role == Role.USER)
    kernel = {k: v for k, v in namespace.items() if not k.startswith("__")}
    return Example(category, effort, messages, turn, trained, kernel, functions, expected, call)


def tokens(example: Example) -> tuple[list[int], list[bool]]:
    """Token ids of the whole turn as the session feeds them, and which targets the loss covers.

    Target position p is covered when token p is one the model generates: the tokens of a trained
    assistant message, except the `<|start|>assistant` that the prompt already ends with. The final
    message ends with `<|return|>`, a call with `<|call|>`.
    """
    msgs, turn = example.messages, example.turn
    bounds = [len(harmony.render(msgs[:k], keep_analysis_from=turn)) - 2 for k in range(turn + 1, len(msgs) + 1)]
    ids = harmony.render(msgs, keep_analysis_from=turn)[:-2]
    ids[-1] = harmony.RETURN
    covered = [False] * len(ids)
    for j, k in enumerate(range(turn + 1, len(msgs))):
        if not example.trained[k]:
            continue
        start, end = bounds[j], bounds[j + 1]
        after_prompt = msgs[k - 1].author.role != Role.ASSISTANT or msgs[k - 1].recipient is not None
        for p in range(start + (2 if after_prompt else 0), end):
            covered[p] = True
    return ids, covered


def dataset(n: int, seed: int) -> list[Example]:
    """`n` examples from `seed` (training uses seed 0, evaluation a held-out seed)."""
    rng = random.Random(seed)
    return [make_example(rng) for _ in range(n)]
