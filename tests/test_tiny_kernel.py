"""gpt-oss-tiny in a real kernel, as a student meets it: a six-turn conversation with every answer
right, a DataFrame question, `2 ** 10`, a skipped call answered honestly, and a browsing answer whose
citation resolves to the line that states the fact."""
from __future__ import annotations

import pytest
from test_kernel import kernel, run  # noqa: F401  (the kernel fixture)

from gptoss_lab.tiny import CHECKPOINT

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(not (CHECKPOINT / "model.safetensors").is_file(), reason="no gpt-oss-tiny weights")]

LOAD = "%load_ext gptoss_lab\n%gptoss load tiny\n%gptoss config approval=auto"


def _ask(kc, cell: str, options: str = "", answer: str | None = None) -> str:
    out, content = run(kc, f"%%gptoss --text {options}\n{cell}", timeout=180, answer=answer)
    assert content["status"] == "ok", out
    return out


def _check(kc, expression: str) -> str:
    out, content = run(kc, f"print({expression})")
    assert content["status"] == "ok", out
    return out.strip()


def test_six_turn_conversation_every_answer_right(kernel):  # noqa: F811
    _, kc = kernel
    out, content = run(kc, LOAD + "\ndata = [12, 45, 7, 88, 23, 51]", timeout=180)
    assert content["status"] == "ok", out
    turns = [("What is 37 * 12?", "444"), ("Now divide that by 4.", "111.0"), ("What is the mean of data?", "37.67"),
             ("What is 2 ** 10?", "1024"), ("What is 17 % 5?", "2"), ("What is the capital of France?", "Paris")]
    prompts = []
    for k, (question, expected) in enumerate(turns, 1):
        _ask(kc, question)
        found = _check(kc, f"__import__('re').search(r'(?<![\\w.]){expected}(?!\\w|\\.\\d)', _gptoss.final) is not None, "
                           "len(_gptoss.errors), repr(_gptoss.final)")
        assert found.startswith("True 0"), f"turn {k}: {question!r} -> {found}"
        prompts.append(int(_check(kc, "_gptoss.usage.prompt_tokens")))
    # one conversation: each prompt carries the turns before it (turn 2 already needed turn 1)
    assert prompts == sorted(prompts) and prompts[-1] > prompts[0] + 150, prompts


def test_dataframe_question(kernel):  # noqa: F811
    _, kc = kernel
    run(kc, LOAD + "\nimport pandas as pd\n"
                   "df = pd.DataFrame({'name': ['Ana', 'Ben', 'Chen', 'Dara'], 'price': [12.5, 7.25, 30.0, 18.4], "
                   "'qty': [3, 10, 1, 6]})", timeout=180)
    _ask(kc, "What is the mean price in df?")
    assert _check(kc, "'df' in _gptoss.tool_calls[0].input, _gptoss.tool_calls[0].status") == "True done"
    assert _check(kc, "str(round(df['price'].mean(), 2)) in _gptoss.final, _gptoss.final").startswith("True")


def test_power_operator(kernel):  # noqa: F811
    _, kc = kernel
    run(kc, LOAD, timeout=180)
    _ask(kc, "What is 2 ** 10?")
    assert _check(kc, "'**' in _gptoss.tool_calls[0].input, _gptoss.tool_calls[0].output.strip(), "
                      "'1024' in _gptoss.final") == "True 1024 True"


def test_skipped_call_is_answered_honestly_without_another_call(kernel):  # noqa: F811
    _, kc = kernel
    run(kc, LOAD, timeout=180)
    out = _ask(kc, "What is 4821 - 1937?", "--approve ask", answer="n")
    assert "[y/N]" in out  # the user was asked, and said no
    assert _check(kc, "len(_gptoss.tool_calls), _gptoss.tool_calls[0].status, 'could not' in _gptoss.final") == "1 skipped True"
    _ask(kc, "OK, run it.")  # the next turn runs it
    assert _check(kc, "_gptoss.tool_calls[0].output.strip(), '2884' in _gptoss.final") == "2884 True"


def test_browsing_answer_cites_the_line_that_states_the_fact(kernel, tmp_path):  # noqa: F811
    _, kc = kernel
    run(kc, LOAD, timeout=180)
    setup = (f"import random\nfrom pathlib import Path\nfrom gptoss_lab.tiny import browsing, skills\n"
             f"library = browsing.make_library(skills.Gen(random.Random(7), 'eval'))\n"
             f"for name, text in library.texts.items():\n"
             f"    path = Path({str(tmp_path)!r}) / name\n"
             f"    path.parent.mkdir(parents=True, exist_ok=True)\n"
             f"    path.write_text(text)\n"
             f"fact = library.facts[0]\n")
    out, content = run(kc, setup + f"%gptoss browse {tmp_path}")
    assert content["status"] == "ok", out
    question = _check(kc, "fact.question")
    _ask(kc, question, "--tools browser")
    cited = _check(kc, "[c.text for c in _gptoss.citations], fact.line")
    assert _check(kc, "any(fact.line in c.text for c in _gptoss.citations), fact.answer in _gptoss.final") == "True True", cited
