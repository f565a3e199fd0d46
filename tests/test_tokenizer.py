"""The generated HuggingFace tokenizer gives the same ids as openai-harmony's o200k_harmony."""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from gptoss_lab import harmony
from gptoss_lab.tiny import tokenizer

CORPUS = [
    "Hello, world! I'm here; they're THERE'S. We'Ve a'lL",
    "def f(x):\n    return x**2  # square\n\n\n\tif a != b:\n\t\tpass\r\n",
    "numbers 1234567 3.14159 1e-9 0x1F ١٢٣ ½ 33333333",
    "emoji 🚀🦙 😶\u200d🌫️ zalgo Z̴͝a̷l̸g̵o ",
    "   leading and trailing   \n\n  \n",
    "Привет мир, Καλημέρα, مرحبا, नमस्ते, 한국어, 日本語のテキスト, ?我想在apple工作1314151天～",
    "https://example.com/a/b?c=d&e=f#g\n// comment\n/* block */ ''''''```````\"\"\"\"......!!!!!!??????",
    "<|start|>assistant to=python<|channel|>analysis code<|message|>print(1)<|call|>",
    "<|channel|>commentary to=functions.f <|constrain|>json<|message|>{\"a\": 1}<|call|><|return|><|end|>",
    "<|startoftext|><|endoftext|><|reserved_200000|><|reserved_201087|>x",
    "a" * 300 + " " + "ab" * 50 + "\n" * 7,
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tokenizer.ensure(tmp_path_factory.mktemp("tok"))  # an empty folder: ensure writes everything


def test_every_harmony_special_token_is_at_its_id(folder):
    doc = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    added = {t["id"]: t["content"] for t in doc["added_tokens"]}
    assert set(added) == set(range(199998, harmony.VOCAB_SIZE))
    assert all(t["special"] and not t["normalized"] for t in doc["added_tokens"])
    for token, name in [(199998, "<|startoftext|>"), (199999, "<|endoftext|>"), (200002, "<|return|>"),
                        (200003, "<|constrain|>"), (200005, "<|channel|>"), (200006, "<|start|>"), (200007, "<|end|>"),
                        (200008, "<|message|>"), (200012, "<|call|>"), (200013, "<|reserved_200013|>")]:
        assert added[token] == name == harmony.decode([token])


def test_same_ids_as_openai_harmony(folder):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    rng = random.Random(0)
    alphabet = list("aZé1 0'’s.\n\r\t!?-/_(){}中🚀\u0301") + ["  ", "'ll", "<|end|>", "<|"]
    texts = CORPUS + ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 50))) for _ in range(500)]
    for text in texts:
        ids = tok.encode(text, add_special_tokens=False).ids
        assert ids == harmony.encode(text), text
        assert tok.decode(ids, skip_special_tokens=False) == text


def test_auto_tokenizer_loads_the_folder(folder):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    text = "<|start|>user<|message|>What is 6×7? 🚀<|end|><|start|>assistant"
    assert tok(text)["input_ids"] == harmony.encode(text)  # no BOS added: the Harmony prompt is complete
    assert (tok.eos_token_id, tok.pad_token_id, tok.bos_token_id) == (harmony.RETURN, 199999, 199998)
    assert len(tok) == harmony.VOCAB_SIZE


def test_ensure_writes_only_when_missing(folder):
    assert sorted(p.name for p in folder.iterdir()) == sorted(tokenizer.FILES)
    stamp = (folder / "tokenizer.json").stat().st_mtime_ns
    tokenizer.ensure(folder)
    assert (folder / "tokenizer.json").stat().st_mtime_ns == stamp


def test_the_command_line_has_help_and_writes_nothing_for_it(tmp_path, monkeypatch, capsys):
    from gptoss_lab.tiny import tokenizer

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        tokenizer.main(["--help"])
    assert exit_.value.code == 0 and "usage: python -m gptoss_lab.tiny.tokenizer" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []           # no folder named --help
    tokenizer.main(["out"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(tokenizer.FILES)


def _chat_ids(folder: Path, messages: list[dict], **options: Any) -> list[int]:
    """What a transformers user gets: `apply_chat_template` of the folder's tokenizer, as token ids."""
    from transformers import AutoTokenizer

    return list(AutoTokenizer.from_pretrained(folder).apply_chat_template(messages, tokenize=True, return_dict=False,
                                                                          **options))


def _today() -> str:
    """The date the template writes (transformers' `strftime_now`), as the lab's system message takes it."""
    import datetime

    return datetime.date.today().isoformat()


@pytest.mark.parametrize("first", ["system", "developer"])
def test_chat_template_renders_a_conversation_as_the_lab_does(folder, first):
    """`apply_chat_template` failed (no template); openai/gpt-oss-20b's tokenizer has one. The ids are the lab's."""
    messages = [{"role": first, "content": "Answer in one word."}, {"role": "user", "content": "Capital of France?"},
                {"role": "assistant", "thinking": "Paris, earlier reasoning.", "content": "Paris."},
                {"role": "user", "content": "And of Italy? 🚀"}]
    ids = _chat_ids(folder, messages, add_generation_prompt=True)
    assert ids == harmony.render([harmony.system_message("medium", date=_today()),
                                  harmony.developer_message("Answer in one word."),
                                  harmony.user_message("Capital of France?"), harmony.assistant_message("Paris.", "final"),
                                  harmony.user_message("And of Italy? 🚀")])
    assert harmony.decode(ids).endswith("<|start|>assistant<|channel|>final<|message|>Paris.<|end|>"
                                        "<|start|>user<|message|>And of Italy? 🚀<|end|><|start|>assistant")
    assert "Reasoning: medium" in harmony.decode(ids) and "earlier reasoning" not in harmony.decode(ids)


def test_chat_template_takes_the_reasoning_effort_and_a_training_text_ends_with_return(folder):
    messages = [{"role": "user", "content": "2 + 2?"}, {"role": "assistant", "thinking": "Add.", "content": "4"}]
    ids = _chat_ids(folder, messages, reasoning_effort="high")
    assert ids == harmony.render([harmony.system_message("high", date=_today()), harmony.user_message("2 + 2?"),
                                  harmony.assistant_message("Add.", "analysis")], keep_analysis_from=2)[:-2] \
        + harmony.encode("<|start|>assistant<|channel|>final<|message|>4<|return|>")
    assert "Reasoning: high" in harmony.decode(ids)


def test_chat_template_renders_function_tools_and_a_call_as_the_lab_does(folder):
    """The tools list, a call (its reasoning kept while the turn goes on) and the answer, as a session renders them."""
    from openai_harmony import ToolDescription

    params = {"type": "object", "required": ["city"], "properties": {
        "city": {"type": "string", "description": "The city,\n  in English."},
        "unit": {"type": "string", "enum": ["c", "f"], "default": "c"}, "days": {"type": "integer", "default": 1},
        "tags": {"type": "array", "items": {"type": "string"}}, "extra": {"type": "object"}, "now": {"type": "boolean"}}}
    tools = [{"type": "function", "function": {"name": "weather", "description": "The weather.", "parameters": params}},
             {"type": "function", "function": {"name": "clock", "description": "The time.", "parameters": {}}}]
    messages = [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "thinking": "Call weather.", "tool_calls": [
                    {"type": "function", "function": {"name": "weather", "arguments": {"city": "Paris"}}}]},
                {"role": "tool", "content": '{"temperature": 20}'}]
    ids = _chat_ids(folder, messages, tools=tools, add_generation_prompt=True)
    functions = [ToolDescription.new("weather", "The weather.", parameters=params), ToolDescription.new("clock", "The time.")]
    assert ids == harmony.render([
        harmony.system_message("medium", date=_today()), harmony.developer_message("Be brief.", functions=functions),
        harmony.user_message("Weather in Paris?"), harmony.assistant_message("Call weather.", "analysis"),
        harmony.assistant_message('{"city": "Paris"}', "commentary", "functions.weather", "<|constrain|>json"),
        harmony.tool_message("functions.weather", '{"temperature": 20}', "commentary")], keep_analysis_from=3)
    text = harmony.decode(ids)
    assert "Calls to these tools must go to the commentary channel: 'functions'." in text
    assert text.endswith("<|start|>assistant to=functions.weather<|channel|>commentary <|constrain|>json<|message|>"
                         '{"city": "Paris"}<|call|><|start|>functions.weather to=assistant<|channel|>commentary'
                         '<|message|>{"temperature": 20}<|end|><|start|>assistant')
