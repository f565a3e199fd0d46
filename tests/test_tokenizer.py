"""The generated HuggingFace tokenizer gives the same ids as openai-harmony's o200k_harmony."""
from __future__ import annotations

import json
import random

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
