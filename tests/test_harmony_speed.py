"""The format room's speed work, checked for exactness: incremental rendering equals openai-harmony's
full render, long unbroken text gets openai-harmony's ids in bounded, interruptible time, and the
per-token cost of streaming does not grow with the message."""
from __future__ import annotations

import base64
import functools
import json
import random
import signal
import string
import time

import pytest
from openai_harmony import Conversation, RenderConversationConfig, Role, ToolDescription

from gptoss_lab import Session, harmony
from gptoss_lab.engines.base import Sampling
from gptoss_lab.tools.python import PythonTool


def reference_encode(text: str) -> list[int]:
    return harmony.encoding().encode(text, allowed_special=set(), disallowed_special=())


def long_piece(rng: random.Random, n: int) -> str:
    """A pre-tokenizer piece (or run) of about n characters, of a kind openai-harmony handles slowly or oddly."""
    kind = rng.randrange(8)
    if kind == 0:
        return rng.choice("ax") * n
    if kind == 1:
        return "".join(rng.choice(string.ascii_letters) for _ in range(n))
    if kind == 2:
        return base64.b64encode(rng.randbytes(n))[:n].decode()
    if kind == 3:
        return "!" + "/\n" * (n // 2)
    if kind == 4:
        return rng.choice([" ", "\n", "\t ", "\r\n"]) * n
    if kind == 5:
        return "".join(rng.choice("éñßжя漢字") for _ in range(n))
    if kind == 6:
        return "".join(rng.choice("0123456789") for _ in range(n))
    return "Ab" * (n // 2)


def random_text(rng: random.Random) -> str:
    words = ["the", "Experts", "route", "tokens", "<|start|>", "<|end|>", "émigré", "数字", "😀", "12345", "\n\n",
             "  ", "{\"a\": [1, 2]}", "don't", "x=1;", "http://example.com/a/b?c=d", "\t"]
    parts = [rng.choice(words) for _ in range(rng.randrange(1, 12))]
    if rng.random() < 0.2:
        parts.insert(rng.randrange(len(parts) + 1), long_piece(rng, rng.randrange(harmony.LONG_PIECE - 50, 1500)))
    return rng.choice(["", " "]).join(parts)


def test_long_pieces_are_encoded_with_openai_harmonys_ids():
    rng = random.Random(0)
    for _ in range(60):
        text = random_text(rng) + long_piece(rng, rng.randrange(200, 4000)) + random_text(rng)
        assert harmony.encode_text(text) == reference_encode(text), repr(text[:40])
    a = "a" * 200_000  # openai-harmony: ~17 s
    ids = harmony.encode_text(a)
    assert harmony.decode(ids) == a and ids == harmony.encode_text("a" * 100_000) * 2  # 8-byte tokens, evenly


@pytest.mark.parametrize("blanks", [" ", "\t", "  \t", "\t\t", "\u00a0\u00a0", " \t ", "\n  \t"])
def test_spaces_and_tabs_before_a_long_rule_get_openai_harmonys_ids(blanks):
    """Text cut before a long piece ends where openai-harmony reads on: "\t\t" before a rule of 600 "=" was one
    token where it makes two (its `\\s+(?!\\S)` read the tabs as followed by nothing), so the model read a table's
    rule otherwise than openai-harmony and a server encode it."""
    for rule in ["=", "-", "/", "*", "!/\n", "a"]:
        text = f"Total:{blanks}{rule * 600}{blanks}end{blanks}{rule * 300}"
        assert harmony.encode_text(text) == reference_encode(text), (blanks, rule)


ONE_PIECE = {   # pieces of 6,000 characters that openai-harmony's pre-tokenizer keeps whole
    "lowercase": lambda rng: "".join(rng.choice(string.ascii_lowercase) for _ in range(6_000)),
    "spaced word": lambda rng: " " + "".join(rng.choice("etaoinshrdlu") for _ in range(5_997)) + "'s",
    "DNA": lambda rng: "".join(rng.choice("ACGT") for _ in range(6_000)),
    "Capitalised": lambda rng: "Sequence" + "".join(rng.choice("xyzabc") for _ in range(5_992)),
    "a run": lambda rng: "a" * 6_000,
    "accented": lambda rng: "".join(rng.choice("éñßüøçàè") for _ in range(6_000)),
    "cyrillic": lambda rng: "".join(rng.choice("абвгдежзийклмнопрст") for _ in range(6_000)),
    "CJK": lambda rng: "".join(rng.choice("漢字数学的是一不了人我在有他这中大来上国个到说们为子和你地出道也时年") for _ in range(6_000)),
    "rule": lambda rng: "".join(rng.choice("=-*#~_") for _ in range(6_000)),
    "slashes": lambda rng: "!" + "/\n" * 3_000,
    "spaces": lambda rng: " " * 6_000,
    "tabs": lambda rng: "\t " * 3_000,
    "blank lines": lambda rng: "\r\n" * 3_000,
}


@pytest.mark.parametrize("kind", ONE_PIECE)
def test_a_long_piece_is_encoded_by_openai_harmony_in_chunks_with_the_same_ids(kind, monkeypatch):
    """A long piece went whole through the pure-Python merge (`_bpe`): 9.6 µs a character, 4.8 s for 500,000 lowercase
    letters (a DNA sequence, a blob pasted without breaks). openai-harmony encodes it in chunks, `_bpe` sees at most
    two tokens' bytes (where chunks join), and the ids are `_bpe`'s."""
    piece = ONE_PIECE[kind](random.Random(kind))
    assert harmony._pieces().fullmatch(piece)
    expected = harmony._bpe(piece.encode())
    merged = []
    bpe = harmony._bpe
    monkeypatch.setattr(harmony, "_bpe", lambda data: merged.append(len(data)) or bpe(data))
    assert harmony.encode_text(piece) == expected
    assert max(merged, default=0) <= 256


def pasted_document(rng: random.Random) -> str:
    """Prose, code, a CSV and a minified JSON blob with base64 in it, as a long pasted text holds them."""
    words = ["the", "Experts", "route", "tokens", "émigré", "数字", "don't", "x=1;", "12345", "<|end|>", "😀"]
    prose = "".join(" ".join(rng.choice(words) for _ in range(rng.randrange(5, 30))) + rng.choice([".\n", ". ", "\n\n"])
                    for _ in range(400))
    code = "".join(f"def f_{i}(x):\n    return [x + {i} for _ in range({i % 7})]\n\n" for i in range(300))
    csv = "".join(f"{i},item{rng.randrange(10**6)},{rng.random():.4f}\n" for i in range(800))
    blob = json.dumps({"data": base64.b64encode(rng.randbytes(6_000)).decode(), "seq": long_piece(rng, 700)},
                      separators=(",", ":"))
    parts = [prose, code, csv, blob, long_piece(rng, rng.randrange(500, 900)), "\n" + long_piece(rng, 600) + "\nok"]
    rng.shuffle(parts)
    return "\n".join(parts)


def test_a_pasted_document_is_looked_at_piece_by_piece_only_around_its_long_runs(monkeypatch):
    """A text with one long run (a base64 blob) was cut into all its pieces in Python to find the long ones: 55 % of
    encoding a 500,000-character document (0.28 s). Only the lines around a long run are cut so now; same ids."""
    rng = random.Random(5)
    documents = [pasted_document(rng) for _ in range(6)]
    expected = [reference_encode(d) for d in documents]
    pieces = harmony._pieces()
    looked_at = []

    class Counted:
        def finditer(self, text, *args):
            for piece in pieces.finditer(text, *args):
                looked_at.append(piece.end() - piece.start())
                yield piece

        def __getattr__(self, name):
            return getattr(pieces, name)

    monkeypatch.setattr(harmony, "_pieces", Counted)
    for document, ids in zip(documents, expected):
        looked_at.clear()
        assert harmony.encode_text(document) == ids
        assert sum(looked_at) < len(document) / 3, (sum(looked_at), len(document))


@pytest.mark.parametrize("prepare", [
    lambda: functools.partial(harmony.encode_text, "b" * 40_000_000),  # 10-16 s
    lambda: functools.partial(harmony.render, [harmony.system_message(date="2025-06-01"),
                                               harmony.developer_message("b" * 4_000_000)]),  # 2 s
], ids=["text", "instructions"])
def test_encoding_long_text_can_be_interrupted(prepare):
    work = prepare()  # built, and the vocabulary loaded, before the first interrupt: it lands in the encoding
    harmony.ranks()

    def interrupt(signum, frame):
        # only while the encoding runs: a later alarm landing in pytest.raises' own exit would escape the test
        while frame is not None:
            if frame.f_code.co_filename == harmony.__file__:
                raise KeyboardInterrupt
            frame = frame.f_back

    previous = signal.signal(signal.SIGALRM, interrupt)
    # again every 0.3 s, as a user presses Ctrl-C again: Python drops an interrupt that lands in a gc callback
    # (hypothesis, used by other tests, installs one), so a single one is not always seen
    signal.setitimer(signal.ITIMER_REAL, 0.3, 0.3)
    start = time.perf_counter()
    try:
        with pytest.raises(KeyboardInterrupt):
            work()  # minutes of work in openai-harmony, seconds in `encode_text`
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert time.perf_counter() - start < 10  # it stopped long before the end (openai-harmony would not)


def random_conversation(rng: random.Random) -> tuple[list, list[int]]:
    """A conversation with tool loops, function calls and several turns; and where each turn starts."""
    tools = [PythonTool().system_config()] if rng.random() < 0.7 else []
    messages = [harmony.system_message(rng.choice(["low", "medium", "high"]), tools=tools, date="2025-06-01")]
    functions = [ToolDescription.new("lookup", "Look it up.", parameters={"type": "object", "properties": {
        "q": {"type": "string"}}})] if rng.random() < 0.5 else []
    developer = harmony.developer_message(random_text(rng) if rng.random() < 0.5 else None, functions=functions,
                                          response_format={"name": "answer", "schema": {"type": "object"}}
                                          if rng.random() < 0.3 else None)
    if developer is not None:
        messages.append(developer)
    starts = []
    for _ in range(rng.randrange(1, 4)):
        starts.append(len(messages))
        messages.append(harmony.user_message(random_text(rng)))
        for _ in range(rng.randrange(0, 4)):
            step = rng.randrange(4)
            if step == 0:
                messages.append(harmony.assistant_message(random_text(rng), "analysis"))
            elif step == 1 and tools:
                messages.append(harmony.assistant_message(random_text(rng), "analysis", "python", "code"))
                messages.append(harmony.tool_message("python", random_text(rng), "analysis"))
            elif step == 2 and functions:
                messages.append(harmony.assistant_message('{"q": "x"}', "commentary", "functions.lookup",
                                                          "<|constrain|>json"))
                messages.append(harmony.tool_message("functions.lookup", random_text(rng), "commentary"))
            else:
                messages.append(harmony.assistant_message(random_text(rng), "commentary"))
        messages.append(harmony.assistant_message(random_text(rng), "final"))
    return messages, starts


def full_render(messages: list, keep: int) -> list[int]:
    kept = [m for i, m in enumerate(messages) if not (i < keep and m.channel == "analysis")]
    return harmony.encoding().render_conversation_for_completion(
        Conversation.from_messages(kept), Role.ASSISTANT, config=RenderConversationConfig(auto_drop_analysis=False))


def test_incremental_rendering_equals_a_full_render_over_random_conversations():
    rng = random.Random(1)
    for _ in range(40):
        messages, starts = random_conversation(rng)
        renderer = harmony.Renderer()  # one per session: it sees the conversation grow, and change
        for n in range(starts[0] + 1, len(messages) + 1):
            keep = max(s for s in starts if s < n)  # the current turn's tool loop keeps its analysis
            shown = messages[:n]
            assert renderer.render(shown, keep_analysis_from=keep) == full_render(shown, keep)
        edited = list(messages)
        i = rng.randrange(starts[0], len(messages))  # a message replaced by an edited copy (approval edits)
        edited[i] = harmony.assistant_message(random_text(rng), "final")
        assert renderer.render(edited) == full_render(edited, len(edited))
        rewound = messages[:starts[-1]]  # a rewind
        assert renderer.render(rewound) == full_render(rewound, len(rewound))


def test_a_turn_encodes_only_its_new_messages(monkeypatch):
    messages, _ = random_conversation(random.Random(2))
    renderer = harmony.Renderer()
    renderer.render(messages)
    encoded = []
    render_conversation = harmony._render_conversation
    monkeypatch.setattr(harmony, "_render_conversation", lambda m: encoded.append(m) or render_conversation(m))
    question = harmony.user_message("And then?")
    renderer.render(messages + [question])
    assert encoded == [(question,)]


def random_schema(rng: random.Random, depth: int = 0) -> dict:
    """A function's parameter schema whose names, descriptions, defaults and enum values may hold long pieces."""
    def text() -> str:
        return random_text(rng) + (long_piece(rng, rng.randrange(260, 1200)) if rng.random() < 0.3 else "")
    properties = {}
    for _ in range(rng.randrange(1, 4)):
        kind = rng.randrange(5)
        if kind == 0:
            prop = {"type": "string", "description": text(), "default": text()}
        elif kind == 1:
            prop = {"type": "object", "default": {text(): [text()]}}  # written as JSON (escaped) by openai-harmony
        elif kind == 2:
            prop = {"enum": [text(), text()], "description": text()}
        elif kind == 3 and depth < 2:
            prop = random_schema(rng, depth + 1)
        else:
            prop = {"type": "array", "items": {"type": "number"}, "examples": [text()]}
        properties[text() if rng.random() < 0.3 else f"p{len(properties)}"] = prop
    return {"type": "object", "properties": properties, "description": text()}


def random_setup(rng: random.Random) -> list:
    """A system and a developer message with instructions, functions and a response format, long pieces anywhere."""
    def text() -> str:
        return random_text(rng) + long_piece(rng, rng.randrange(260, 1500)) + random_text(rng) \
            if rng.random() < 0.6 else random_text(rng)
    tools = [PythonTool().system_config()] if rng.random() < 0.5 else []
    functions = [ToolDescription.new(f"f{i}", text(), parameters=random_schema(rng) if rng.random() < 0.8 else None)
                 for i in range(rng.randrange(3))]
    response_format = {"name": "answer", "description": text(), "schema": random_schema(rng)} \
        if rng.random() < 0.5 else None
    return [harmony.system_message(rng.choice(["low", "high"]), tools=tools, date=text() if rng.random() < 0.1 else
                                   "2025-06-01"),
            harmony.developer_message(text() if rng.random() < 0.7 else None, functions=functions,
                                      response_format=response_format) or harmony.user_message(text())]


def test_instructions_tools_and_response_formats_render_with_openai_harmonys_ids():
    rng = random.Random(3)
    for _ in range(80):
        messages = random_setup(rng) + [harmony.user_message(random_text(rng))]
        assert harmony.render(messages) == full_render(messages, len(messages)), repr(messages[1])[:200]


@pytest.mark.parametrize("setup, shown", [
    (dict(instructions="[" * 200_000), "[" * 200_000),
    (dict(functions=[ToolDescription.new("f", "Finds " + "[" * 200_000, parameters={"type": "object", "properties": {
        "q": {"type": "object", "default": {"k": '"' * 20_000}}}})]), "// Finds " + "[" * 200_000),
    (dict(functions=[ToolDescription.new("f", "Finds" + "\n" * 300 + "[" * 200_000)]), "\n// " + "[" * 200_000),
    (dict(response_format={"name": "r", "description": "[" * 200_000, "schema": {"type": "object"}}), "// " + "[" * 200_000),
], ids=["instructions", "function", "lines", "response format"])
def test_long_instructions_and_tools_render_in_linear_time(setup, shown):
    """openai-harmony alone: instructions of 200,000 `[` took 33 s, a function's description as long 26 s (also where
    its line breaks, each line made a comment, are rewritten)."""
    start = time.perf_counter()
    ids = harmony.render([harmony.system_message(date="2025-06-01"), harmony.developer_message(**setup)])
    assert time.perf_counter() - start < 10
    assert shown in harmony.decode(ids)


# ---------------------------------------------------------------- streaming cost per token


def message_tokens(n: int) -> list[int]:
    """An analysis message of n content tokens, as the model writes it after `<|start|>assistant`."""
    word = harmony.encode_text(" expert")
    return harmony.encode("<|channel|>analysis<|message|>") + word * n + harmony.encode("<|end|>")


def window_costs(times: list[float], head: int, early: int, late: int, width: int) -> tuple[float, float]:
    return times[head + early + width] - times[head + early], times[head + late + width] - times[head + late]


def test_stream_parser_cost_per_token_is_flat():
    tokens = message_tokens(17_000)
    head = len(harmony.encode("<|channel|>analysis<|message|>"))
    early, late = [], []
    for _ in range(5):  # the least disturbed of several runs, each window measured in the same run
        stream, clock, times = harmony.HarmonyStream(), time.perf_counter, []
        for token in tokens:
            times.append(clock())
            stream.feed(token)
        a, b = window_costs(times, head, 1_000, 16_000, 1_000)
        early.append(a)
        late.append(b)
    assert min(late) / min(early) <= 1.2, (min(early), min(late))


class _TimedEngine:
    """Yields a recording and notes the time of every token it hands over (the session's work lies between)."""

    name = "timed"

    def __init__(self, tokens: list[int]) -> None:
        self.tokens, self.times = tokens, []

    def stream(self, prompt, *, stop, sampling=Sampling(), recorder=None):
        for token in self.tokens:
            self.times.append(time.perf_counter())
            yield token


def test_session_cost_per_token_is_flat_with_no_view():
    tokens = message_tokens(17_000) + harmony.encode("<|start|>assistant<|channel|>final<|message|>ok<|return|>")
    head = len(harmony.encode("<|channel|>analysis<|message|>"))
    early, late = [], []
    for _ in range(5):  # the least disturbed of several runs, as above
        engine = _TimedEngine(tokens)
        reply = Session(engine, namespace={}, tools="", max_new_tokens=20_000).ask("Think at length.")
        assert reply.final == "ok" and reply.analysis.count("expert") == 17_000
        a, b = window_costs(engine.times, head, 1_000, 16_000, 1_000)
        early.append(a)
        late.append(b)
    assert min(late) / min(early) <= 1.2, (min(early), min(late))


def test_a_first_turn_does_not_build_the_vocabularys_dict(tmp_path):
    """Every first turn built the vocabulary's dict (`ranks`, 0.2-0.5 s of a tiny model's ~1 s first answer): for its
    check that the question can fit (`fewest_tokens`, the longest token's length) and for the stream's table of each
    token's bytes: the table is read from the file and the length from the table; only long pieces need the dict.
    So did the browser's first search, to size its window in tokens: it reads the same table. Browsing a folder
    imported httpx (0.1-0.3 s) for the web search services: it is imported only for them."""
    import subprocess
    import sys
    from pathlib import Path

    import gptoss_lab

    code = ("from gptoss_lab import ReplayEngine, Session, harmony\n"
            "reply = Session(ReplayEngine('<|channel|>final<|message|>5<|return|>')).ask('What is 2 + 3?')\n"
            "from gptoss_lab.tools.browser import Browser\n"
            f"browser = Browser({str(tmp_path)!r})\n"
            "found = browser.search('Varn people') + browser.open(id=0) + browser.find('1,002')\n"
            "assert 'Varn has 1,002 people' in found, found\n"
            "import sys\n"
            "print(reply.final, harmony.longest_token(), harmony.ranks.cache_info().currsize, 'httpx' in sys.modules)")
    (tmp_path / "town.md").write_text("# Varn\n" + "Varn has 1,002 people. " * 400)
    package = str(Path(gptoss_lab.__file__).resolve().parents[1])
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=package)
    assert run.stdout.split() == ["5", str(max(map(len, harmony.ranks()))), "0", "False"], \
        run.stdout + run.stderr[-2000:]


def test_special_tokens_are_read_with_one_encode_call(monkeypatch):
    """Every first turn (and a browsing question, a --json cell) found the 1,091 special tokens with one encode call
    each (0.13 s of CPU); they are encoded together, each still one token with its own id."""
    real = harmony.encoding()

    class Counted:
        calls = 0

        def __getattr__(self, name):
            return getattr(real, name)

        def encode(self, *args, **kwargs):
            Counted.calls += 1
            return real.encode(*args, **kwargs)

    counted = Counted()
    monkeypatch.setattr(harmony, "encoding", lambda: counted)
    harmony.special_tokens.cache_clear()
    try:
        found = harmony.special_tokens()
    finally:
        harmony.special_tokens.cache_clear()
    assert Counted.calls == 1
    alone = {real.encode(name, allowed_special="all")[0]: name for name in real.special_tokens_set}
    assert found == {token: name for token, name in sorted(alone.items()) if token < harmony.VOCAB_SIZE}
    assert found[harmony.START] == "<|start|>" and len(found) == 1090
