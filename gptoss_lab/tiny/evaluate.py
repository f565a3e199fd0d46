"""Evaluate gpt-oss-tiny through the real Session: `python -m gptoss_lab.tiny.evaluate [--n 100]`.

Held-out conversations (another seed, held-out phrasings and names) are first run with the
teacher to establish each turn's right answer; then the model is asked the same prompts, turn
after turn, in one real `Session` + `LocalEngine` (greedy), so every later turn sees the
model's own earlier answers, as a user's conversation does. A long conversation is the exception:
the teacher writes its turns up to past 8,192 tokens and the model answers the last one (scored in
the "long conversations" row, not per turn index). Scored per turn:

- valid: the reply is valid Harmony and ends with a final answer;
- tool: the first call is the right one (python printing what the right code prints; the right
  function with the right JSON arguments; a browser search), or no call where none is needed;
- final: the final answer holds the expected values (and parses, for a response format);
- cited: browsing answers cite a line that holds the fact;
- loops: a turn whose call was skipped and that called a tool again (must be none).

Printed per skill and per turn index; `--check` exits non-zero when a target is missed.
"""
from __future__ import annotations

from . import Parser, command, importing

with importing(__name__):   # Ctrl-C while the command starts: one line, as in its work (torch takes seconds)
    import argparse
    import copy
    import json
    import random
    import re
    import sys
    import time
    from collections import defaultdict
    from contextlib import redirect_stdout
    from pathlib import Path
    from typing import Any

    from . import CHECKPOINT, SEED, number

HELD_OUT_SEED = 20250805


def _parser() -> argparse.ArgumentParser:
    """The command line's parser: it needs none of the engine's imports, so `--help` and a usage error answer
    before them."""
    p = Parser(
        prog="python -m gptoss_lab.tiny.evaluate", description=__doc__.splitlines()[0],
        epilog="example: python -m gptoss_lab.tiny.evaluate --n 10 --show-failures (a quick look: 10 held-out "
               "conversations and the turns the model got wrong)")
    p.add_argument("--checkpoint", default=str(CHECKPOINT), help="a GptOss checkpoint folder (default: gpt-oss-tiny)")
    p.add_argument("--n", type=number(int, 1), default=100,
                   help="held-out conversations, 1-8 turns each (default: %(default)s)")
    p.add_argument("--seed", type=SEED, default=HELD_OUT_SEED, help="seed of the held-out conversations (default: %(default)s)")
    p.add_argument("--long-share", type=number(float, 0.0, 1.0), default=0.1,
                   help="share of conversations over 8,192 tokens (default: %(default)s)")
    p.add_argument("--fresh", action="store_true",
                   help="ask fresh held-out sentences in place of the first ones for the question types whose first "
                   "ones were read to write the training sentences of `tiny.train --more-phrasings`")
    p.add_argument("--no-guard", action="store_true",
                   help="score the model's own Harmony: decode with no format guard (a session's default is on)")
    p.add_argument("--show-failures", action="store_true", help="print each failed turn as a JSON line")
    p.add_argument("--check", action="store_true", help="exit with status 1 when a target is missed")
    return p


if __name__ == "__main__":   # before the session and engine imports: `--help` and usage errors answer at once
    _parser().parse_args()


with importing(__name__):
    from ..engines.base import EngineError
    from ..engines.local import LocalEngine
    from ..events import Reply
    from ..session import Session
    from ..widgets import text_bar
    from . import data
    from .skills import Turn

TARGETS = {"valid": 99.0, "tool": 95.0, "final_turn1": 95.0, "final_later": 92.0, "cited": 90.0, "loops": 0}
_INVALID = ("Not valid Harmony", "A message without a valid channel", "named no tool", "token limit",
            "without a final answer", "stream ended", "kept calling tools")


def conversations(n: int, seed: int = HELD_OUT_SEED, long_share: float = 0.1, fresh: bool = False
                  ) -> list[data.Conversation]:
    """`n` held-out conversations (the teacher's run of each gives the right answers); `fresh` asks the
    fresh held-out sentences of the question types that have them (`skills.Pool.fresh`) in place of their first ones."""
    rng = random.Random(f"eval-long-{seed}")
    return [data.conversation(f"eval-{seed}-{i}", "eval", long=rng.random() < long_share, fresh=fresh)
            for i in range(n)]


def states(text: str, value: object) -> bool:
    """Whether `text` states `value` whole: not inside another number or word (444 is not in 4444, 444.5 or a444),
    nor with another sign (2884 is not in -2884). The held-out evaluation scores answers so; the notebooks check
    the answers they show with it."""
    return re.search(rf"(?<![\w.\-\u2212]){re.escape(str(value))}(?!\w|\.\d)", text) is not None


def score(turn: Turn, reply: Reply) -> dict[str, Any]:
    """The scores of one turn's reply (see the module docstring)."""
    calls = reply.tool_calls
    first = calls[0] if calls else None
    if turn.call is None:
        tool = not calls
    elif first is None or first.recipient.split(" ")[0] != turn.call.split(" ")[0] and not (
            turn.call == "browser.search" and first.recipient.startswith("browser.search")):
        tool = False
    elif turn.call == "python" and turn.call_output is not None and not turn.skipped:
        tool = first.output == turn.call_output
    elif turn.call_args is not None:
        try:
            tool = json.loads(first.input) == turn.call_args
        except ValueError:
            tool = False
    else:
        tool = True
    final = bool(reply.final) and all(states(reply.final, e) for e in turn.expected)
    if turn.response_format is not None and not turn.skipped:
        final = final and reply.parsed is not None
    result: dict[str, Any] = {
        "valid": bool(reply.final) and not any(m in e for e in reply.errors for m in _INVALID),
        "tool": tool, "final": final,
    }
    if turn.cite is not None:
        result["cited"] = any(turn.cite in c.text for c in reply.citations)
    if turn.skipped:
        result["loops"] = len(calls) > 1
    return result


def run(engine: Any, conversation: data.Conversation, *, max_new_tokens: int = 320, guard: bool = True
        ) -> list[Reply | None]:
    """Ask the model the conversation's prompts in one real Session; the reply of each turn.

    In a long conversation the teacher writes every turn but the last (None in the list), so the
    model answers that last turn past 8,192 tokens of context whatever it would have written before."""
    user = data.ScriptedUser()
    browser = conversation.library.browser() if conversation.library is not None else None
    session = Session(engine, namespace=copy.deepcopy(conversation.namespace), view=user, browser=browser,
                      tools=conversation.tools(), date=conversation.date, guard=guard)
    teacher, teacher_tokens = data.Teacher(), session.max_new_tokens   # the teacher writes as in training
    teacher.session = session
    replies: list[Reply | None] = []
    for k, turn in enumerate(conversation.turns):
        forced = conversation.long and k < len(conversation.turns) - 1
        session.engine = teacher if forced else engine
        session.configure(max_new_tokens=teacher_tokens if forced else max_new_tokens)
        reply = data.ask(session, user, turn, teacher if forced else None)
        replies.append(None if forced else reply)
    return replies


def evaluate(checkpoint: str | Path = CHECKPOINT, n: int = 100, seed: int = HELD_OUT_SEED, *, long_share: float = 0.1,
             engine: Any = None, max_new_tokens: int = 320, progress: bool = True, fresh: bool = False,
             guard: bool = True) -> dict[str, Any]:
    """Scores per skill and per turn index (percent), the analysis length per effort, and the failures
    (`fresh`: see `conversations`; `guard=False`: the model's own Harmony, with no format guard as it decodes)."""
    engine = engine or LocalEngine.from_pretrained(checkpoint, progress=False)
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    words: dict[str, list[int]] = defaultdict(list)
    failures, longest = [], 0
    start = time.time()
    held_out = conversations(n, seed, long_share, fresh)
    for conversation in text_bar(held_out, desc="evaluating", disable=not progress):  # kept (see route)
        replies = run(engine, conversation, max_new_tokens=max_new_tokens, guard=guard)
        for k, (turn, reply) in enumerate(zip(conversation.turns, replies), 1):
            if reply is None:
                continue   # the teacher's turn of a long conversation
            result = score(turn, reply)
            longest = max(longest, reply.usage.context_tokens)
            for key in (turn.skill, "all", "long conversations" if conversation.long else f"turn {k}"):
                rows[key].append(result)
            words[turn.effort].append(len(reply.analysis.split()))
            if not all(v for key, v in result.items() if key != "loops") or result.get("loops"):
                failures.append({"turn": k, "skill": turn.skill, "prompt": turn.prompt, "expected": turn.expected,
                                 "answer": reply.final, "calls": [(c.recipient, c.input, c.output[:80]) for c in reply.tool_calls],
                                 "errors": reply.errors, **result})
    table = {key: _percent(results) for key, results in sorted(rows.items(), key=lambda kv: _order(kv[0]))}
    return {"table": table, "analysis_words": {e: round(sum(w) / len(w), 1) for e, w in words.items()},
            "longest_context": longest, "failures": failures, "seconds": round(time.time() - start, 1)}


def _percent(results: list[dict[str, Any]]) -> dict[str, Any]:
    row: dict[str, Any] = {"n": len(results)}
    for key in ("valid", "tool", "final", "cited"):
        scored = [r[key] for r in results if key in r]
        if scored:
            row[key] = round(100 * sum(scored) / len(scored), 1)
    row["loops"] = sum(bool(r.get("loops")) for r in results)
    return row


def _order(key: str) -> tuple[int, str]:
    if key.startswith("turn "):
        return 1, f"{int(key.split()[1]):02d}"
    return (2 if key in ("long conversations", "all") else 0), key


def misses(result: dict[str, Any]) -> list[str]:
    """The targets the evaluation misses (empty when every target is met)."""
    table, missed = result["table"], []
    checks = [("all", "valid", TARGETS["valid"]), ("all", "tool", TARGETS["tool"]),
              ("turn 1", "final", TARGETS["final_turn1"])]
    checks += [(k, "final", TARGETS["final_later"]) for k in table if k.startswith("turn ") and k != "turn 1"]
    checks += [("long conversations", "final", TARGETS["final_later"]), ("browse", "cited", TARGETS["cited"])]
    for key, metric, target in checks:
        value = table.get(key, {}).get(metric)
        if value is not None and value < target:
            missed.append(f"{key}: {metric} {value} % < {target} %")
    loops = table.get("all", {}).get("loops", 0)
    if loops > TARGETS["loops"]:
        missed.append(f"{loops} turn(s) kept calling tools after a skipped call")
    return missed


def format_table(result: dict[str, Any]) -> str:
    """The evaluation as a Markdown table (percent of turns)."""
    lines = ["| | turns | valid Harmony % | right tool / code % | right final answer % | cited right line % | loops after a skip |",
             "|---|---|---|---|---|---|---|"]
    for key, row in result["table"].items():
        cells = [str(row.get(k, "")) for k in ("n", "valid", "tool", "final", "cited", "loops")]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    words = ", ".join(f"{e}: {w}" for e, w in sorted(result["analysis_words"].items()))
    return ("\n".join(lines) + f"\n\nMean analysis length (words) per reasoning effort: {words}."
            f"\nLongest conversation: {result['longest_context']} tokens.")


def main(argv: list[str] | None = None) -> None:
    """Command line: print the tables (and the failed turns with --show-failures)."""
    p = _parser()
    args = p.parse_args(argv)
    try:
        with redirect_stdout(sys.stderr):   # the progress bar: stdout is the table's (`… evaluate > table.md`)
            result = evaluate(args.checkpoint, args.n, args.seed, long_share=args.long_share, fresh=args.fresh,
                              guard=not args.no_guard)
    except EngineError as err:  # a missing or damaged checkpoint: one line, not a traceback
        p.error(str(err))
    except KeyboardInterrupt:
        p.exit(130, "interrupted: no table printed\n")
    print(format_table(result))
    print(f"({result['seconds']} s)")
    if args.show_failures:
        for f in result["failures"]:
            print(json.dumps(f, ensure_ascii=False, default=str))
    missed = misses(result)
    for line in missed:
        print("missed:", line)
    if args.check and missed:
        sys.exit(1)


if __name__ == "__main__":
    command(main)
