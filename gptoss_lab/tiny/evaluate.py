"""Evaluate gpt-oss-tiny through the real Session: `python -m gptoss_lab.tiny.evaluate [--n 100]`.

Questions come from a held-out seed of the training generator; each runs as a real turn
(`Session` + `LocalEngine` on the checkpoint folder, greedy, python in a namespace holding the
example's variables, the example's function tools). Scored per question: the reply is valid
Harmony, the first tool call is the right one (same output / same function and arguments; no call
for direct questions), and the final answer contains the expected values.
"""
from __future__ import annotations

import argparse
import copy
import inspect
import json
import random
import re
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from openai_harmony import Role
from tqdm import tqdm

from ..engines.local import LocalEngine
from ..events import Reply
from ..session import Session
from ..tools.functions import FunctionTool
from . import CHECKPOINT, data

HELD_OUT_SEED = 20250805
CATEGORIES = ("arithmetic", "kernel", "direct", "function", "followup")
_TYPES = {"string": str, "number": float}


def questions(n: int, seed: int = HELD_OUT_SEED) -> list[data.Example]:
    """`n` held-out examples, the categories in turn, efforts at random."""
    rng = random.Random(seed)
    return [data.make_example(rng, CATEGORIES[i % len(CATEGORIES)]) for i in range(n)]


def _function_tool(name: str, function: Callable[..., Any]) -> FunctionTool:
    """A typed stand-in for the example's function tool, described exactly as in training."""
    description, schema = data._FUNCTIONS[name]
    params = [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, annotation=_TYPES[v["type"]])
              for k, v in schema["properties"].items()]

    def stub(**kwargs: Any) -> Any:
        return function(**kwargs)

    stub.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    stub.__annotations__ = {p.name: p.annotation for p in params}
    return FunctionTool(stub, name=name, description=description)


def _contains(text: str, value: str) -> bool:
    """`value` appears in `text` as a whole (444 is not found in 4444)."""
    return re.search(rf"(?<![\w.]){re.escape(value)}(?!\w|\.\d)", text) is not None


def score(example: data.Example, reply: Reply) -> dict[str, bool]:
    """valid / tool / final for one reply."""
    calls = reply.tool_calls
    if example.category == "direct":
        tool = not calls
    elif example.category == "function":
        recipient, args = example.call.split(" ", 1)  # type: ignore[union-attr]
        try:
            tool = bool(calls) and calls[0].recipient == recipient and json.loads(calls[0].input) == json.loads(args)
        except ValueError:
            tool = False
    else:
        tool = bool(calls) and calls[0].recipient == "python" and calls[0].output.strip() == example.expected[0]
    return {"valid": not reply.errors and bool(reply.final), "tool": tool,
            "final": all(_contains(reply.final, e) for e in example.expected)}


def ask(engine: LocalEngine, example: data.Example, *, max_new_tokens: int = 256) -> Reply:
    """Run the example's question as one real Session turn (earlier turns given as history)."""
    tools: list[Any] = ["python", *(_function_tool(n, f) for n, f in example.functions.items())]
    session = Session(engine, effort=example.effort, approval="auto", namespace=copy.deepcopy(example.namespace),
                      tools=tools, max_new_tokens=max_new_tokens, max_tool_calls=3)
    first_user = next(i for i, m in enumerate(example.messages) if m.author.role == Role.USER)
    session.history = list(example.messages[first_user:example.turn])
    return session.ask(example.question)


def evaluate(checkpoint: str | Path = CHECKPOINT, n: int = 100, seed: int = HELD_OUT_SEED,
             engine: LocalEngine | None = None, max_new_tokens: int = 256) -> dict[str, Any]:
    """Scores per category and overall, and the mean analysis length (words) per reasoning effort."""
    engine = engine or LocalEngine.from_pretrained(checkpoint, progress=False)
    rows: dict[str, list[dict[str, bool]]] = defaultdict(list)
    words: dict[str, list[int]] = defaultdict(list)
    failures = []
    start = time.time()
    for example in tqdm(questions(n, seed), desc="evaluating", leave=False):
        reply = ask(engine, example, max_new_tokens=max_new_tokens)
        result = score(example, reply)
        rows[example.category].append(result)
        rows["all"].append(result)
        words[example.effort].append(len(reply.analysis.split()))
        if not all(result.values()):
            failures.append({"question": example.question, "expected": example.expected, "final": reply.final,
                             "calls": [c.input for c in reply.tool_calls], "errors": reply.errors})
    table = {cat: {k: round(100 * sum(r[k] for r in rows[cat]) / len(rows[cat]), 1) for k in ("valid", "tool", "final")}
             | {"n": len(rows[cat])} for cat in (*CATEGORIES, "all") if rows[cat]}
    return {"table": table, "analysis_words": {e: round(sum(w) / len(w), 1) for e, w in words.items()},
            "failures": failures, "seconds": round(time.time() - start, 1)}


def format_table(result: dict[str, Any]) -> str:
    """The evaluation as a Markdown table (percent of questions)."""
    lines = ["| category | n | valid Harmony % | right tool call % | final answer correct % |", "|---|---|---|---|---|"]
    for cat, row in result["table"].items():
        lines.append(f"| {cat} | {row['n']} | {row['valid']} | {row['tool']} | {row['final']} |")
    words = ", ".join(f"{e}: {w}" for e, w in sorted(result["analysis_words"].items()))
    return "\n".join(lines) + f"\n\nMean analysis length (words) per reasoning effort: {words}."


def main(argv: list[str] | None = None) -> None:
    """Command line: print the table (and the failed questions with --show-failures)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=str(CHECKPOINT))
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--seed", type=int, default=HELD_OUT_SEED)
    p.add_argument("--show-failures", action="store_true")
    args = p.parse_args(argv)
    result = evaluate(args.checkpoint, args.n, args.seed)
    print(format_table(result))
    print(f"({result['seconds']} s)")
    if args.show_failures:
        for f in result["failures"]:
            print(json.dumps(f, ensure_ascii=False))


if __name__ == "__main__":
    main()
