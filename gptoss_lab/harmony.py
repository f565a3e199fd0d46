"""The Harmony format: the offline encoding, message builders, rendering and a streaming parser.

Everything that knows how gpt-oss text is laid out lives here; the rest of the lab speaks in
`openai_harmony.Message` objects and the typed events of `gptoss_lab.events`.
"""
from __future__ import annotations

import binascii
import codecs
import datetime as _dt
import functools
import hashlib
import heapq
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy
import regex
from openai_harmony import (
    Author,
    Conversation,
    DeveloperContent,
    HarmonyEncoding,
    HarmonyEncodingName,
    Message,
    Role,
    SystemContent,
    TextContent,
    ToolDescription,
    load_harmony_encoding,
)
from openai_harmony import ReasoningEffort, ToolNamespaceConfig  # not in __all__

from .events import Delta, Event, MessageEnd, MessageStart, ParseError
from .settings import EFFORTS

VOCAB_DIR = Path(__file__).parent / "vocab"
VOCAB_FILE = VOCAB_DIR / "o200k_base.tiktoken"
VOCAB_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"

START, CONSTRAIN, CHANNEL, MESSAGE, END, RETURN, CALL = 200006, 200003, 200005, 200008, 200007, 200002, 200012
FIRST_SPECIAL = 199998   # ids from here to the end of the vocabulary are special (format) tokens
ASSISTANT = 173781       # `assistant`, the role the model writes after <|start|>
STOP_TOKENS: frozenset[int] = frozenset({RETURN, CALL})
VOCAB_SIZE = 201088
CHANNELS = ("analysis", "commentary", "final")
# What each token of a conversation is (see `label_tokens`); also the routing lab's channel labels.
LABELS = ("system", "developer", "user", "tool", "analysis", "commentary", "final", "format")
ROLES = ("system", "developer", "user", "assistant")

_EFFORT = {"low": ReasoningEffort.LOW, "medium": ReasoningEffort.MEDIUM, "high": ReasoningEffort.HIGH}


# tiktoken's o200k_base split pattern (also what openai-harmony uses for o200k_harmony).
O200K_PATTERN = "|".join([
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"\p{N}{1,3}",
    r" ?[^\s\p{L}\p{N}]+[\r\n/]*",
    r"\s*[\r\n]+",
    r"\s+(?!\S)",
    r"\s+",
])


def _check_vocab() -> None:
    digest = hashlib.sha256(VOCAB_FILE.read_bytes()).hexdigest()
    if digest != VOCAB_SHA256:
        raise RuntimeError(
            f"The bundled Harmony vocabulary {VOCAB_FILE} is damaged (sha256 {digest}); reinstall gptoss_lab."
        )


@functools.cache
def encoding() -> HarmonyEncoding:
    """The o200k_harmony encoding, loaded from the bundled vocabulary (no network) unless the
    user pointed `TIKTOKEN_ENCODINGS_BASE` at a folder of their own."""
    if "TIKTOKEN_ENCODINGS_BASE" not in os.environ:
        _check_vocab()
        os.environ["TIKTOKEN_ENCODINGS_BASE"] = str(VOCAB_DIR)
    return load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)


@functools.cache
def ranks() -> dict[bytes, int]:
    """The BPE vocabulary, token bytes -> rank (= id), read from the bundled, checked file."""
    return dict(_vocabulary())


def _vocabulary() -> Iterator[tuple[bytes, int]]:
    """Each token's bytes and rank (= id) as the bundled file lists them (`base64 rank` lines), once openai-harmony has
    checked the file; decoded by C loops (`map`), not a Python loop per line (0.3 s of a first turn)."""
    encoding()
    words = VOCAB_FILE.read_bytes().split()
    return zip(map(binascii.a2b_base64, words[0::2]), map(int, words[1::2]), strict=True)


@functools.cache
def special_tokens() -> dict[int, str]:
    """Every Harmony special token by id (FIRST_SPECIAL-201087), names as openai-harmony spells them."""
    names = sorted(encoding().special_tokens_set)   # encoded together, one token each: 1,091 encode calls took 0.2 s
    tokens = encoding().encode("".join(names), allowed_special="all")
    return dict(sorted((token, name) for token, name in zip(tokens, names, strict=True) if token < VOCAB_SIZE))


def decode(ids: Iterable[int]) -> str:
    """Token ids to text, special tokens spelled out (`<|start|>` ...)."""
    return encoding().decode(list(ids))


def encode(text: str) -> list[int]:
    """Text to token ids; Harmony special tokens written in the text are recognised. Text with a long run goes
    between the special tokens through `encode_text` (same ids): openai-harmony is quadratic there, and 100,000 `[`
    overflowed its stack (a PanicException, which no `except Exception` catches)."""
    if _LONG_RUN.search(text) is None:
        return encoding().encode(text, allowed_special="all")
    ids: list[int] = []
    done = 0
    for special in _special_spellings().finditer(text):
        ids += encode_text(text[done:special.start()]) + encoding().encode(special.group(), allowed_special="all")
        done = special.end()
    return ids + encode_text(text[done:])


@functools.cache
def _special_spellings() -> re.Pattern[str]:
    """Any Harmony special token as written in text (`<|start|>` ...)."""
    return re.compile("|".join(map(re.escape, sorted(encoding().special_tokens_set, key=len, reverse=True))))


def spelled_specials(ids: Sequence[int]) -> int:
    """How many Harmony special tokens are spelled out as text between the real ones (`<|end|>` typed in a prompt or
    printed by a tool): decoded, they read like the format's own tokens, though the model sees them as plain text."""
    count, run = 0, []
    for token in [*ids, FIRST_SPECIAL]:
        if token < FIRST_SPECIAL:
            run.append(token)
        elif run:
            count += len(_special_spellings().findall(decode(run)))
            run = []
    return count


def encode_text(text: str) -> list[int]:
    """Text to token ids with special-token spellings kept as plain text (user data never becomes format).

    openai-harmony's BPE is quadratic in the length of a pre-tokenizer piece (50,000 × "a": ~9 s),
    so pieces of `LONG_PIECE` characters or more go through `_long_piece` (linear, interruptible);
    the text between them, and all ordinary text, through openai-harmony. Same ids (tested)."""
    text = clean(text)
    if _LONG_RUN.search(text) is None:
        return _encode_plain(text)
    ids: list[int] = []
    done = 0
    for cut, piece in _long_pieces(text):
        ids += _encode_plain(text[done:cut]) + _long_piece(text[cut:piece.start()]) + _long_piece(piece.group())
        done = piece.end()
    return ids + _encode_plain(text[done:])


def _long_pieces(text: str) -> Iterator[tuple[int, regex.Match[str]]]:
    r"""The pieces of `LONG_PIECE` characters or more, found by cutting into pieces only the lines around a long run
    (each holds one): cutting all of a 500,000-character document took longer than encoding it. A line that starts
    with a letter or digit starts a piece (no piece holds a line break and a letter or digit).
    With each, where the text before it is cut: before the piece in front of it where that is spaces or tabs and it
    starts with neither. Text cut at such a long piece ends in spaces that openai-harmony reads as followed by
    nothing, and its `\s+(?!\S)` took them whole: "\t\t" before "====" was one token where it makes two."""
    cut, before = 0, None  # where the pieces looked at so far end; the last of them
    for run in _LONG_RUN.finditer(text):
        if run.end() <= cut:
            continue
        line = _LINE_START.search(text, cut, run.start() + 1)
        before = None if line else before
        for piece in _pieces().finditer(text, line.start() + 1 if line else cut):
            if piece.end() - piece.start() >= LONG_PIECE:
                loose = before is not None and before.end() - before.start() < LONG_PIECE and \
                    _BLANKS.fullmatch(before.group()) and not _BLANKS.match(piece.group())
                yield before.start() if loose else piece.start(), piece  # type: ignore[union-attr]
            before = piece
            if piece.end() >= run.end():
                cut = piece.end()
                break


LONG_PIECE = 500  # characters: a piece this long costs openai-harmony ~1 ms at worst ("aaa…")
# Every piece of LONG_PIECE characters holds a run this long of non-space, space, or [\r\n/] characters.
_LONG_RUN = re.compile(r"\S{%d,}|\s{%d,}|[\r\n/]{%d,}" % ((LONG_PIECE // 2,) * 3))
_LINE_START = regex.compile(r"\n[\p{L}\p{N}]", regex.REVERSE)  # searched from the end: the last before a run
_BLANKS = regex.compile(r"[^\S\r\n]+")  # white space that is no line break


def fewest_tokens(text: str) -> int:
    """At least how many tokens `encode_text(text)` makes, counted in linear time without encoding it, so that text
    which cannot fit a context is refused at once (1,000,000 "x", 125,000 tokens of 8, took 9 s to encode). A token
    holds at most the vocabulary's longest token's bytes; one inside a run of an ASCII character at most the longest
    token of that character alone, and at most two tokens reach into a run from outside it."""
    data = text.encode("utf-8", "surrogatepass")   # (`clean` only makes text longer)
    longest = longest_token()
    edge = 2 * (longest - 1)   # a run longer than this has bytes no token from outside it reaches
    inside, tokens = 0, 0
    for chunk in range(0, len(data), _RUNS_CHUNK):  # (a run cut in two only counts for less)
        codes = numpy.frombuffer(data, numpy.uint8, min(_RUNS_CHUNK, len(data) - chunk), chunk)
        edges = numpy.concatenate(([0], numpy.flatnonzero(codes[1:] != codes[:-1]) + 1, [len(codes)]))
        lengths = numpy.diff(edges)
        long = lengths > edge
        for start, length in zip(edges[:-1][long].tolist(), lengths[long].tolist()):
            if codes[start] < 0x80:
                inside += length
                tokens += -(-(length - edge) // _longest_runs()[codes[start]])
    return tokens + -(-(len(data) - inside) // longest)


def fewest_text_tokens(messages: Sequence[Message]) -> int:
    """At least how many tokens the messages' text contents render to (`fewest_tokens`): the response format's section
    of a developer message, whose 1,000,000-character `const` took 17 s to render before it was refused."""
    return sum(fewest_tokens(c.text) for m in messages for c in m.content if isinstance(c, TextContent))


_RUNS_CHUNK = 1 << 20  # bytes `fewest_tokens` looks at together


@functools.cache
def longest_token() -> int:
    """Bytes of the vocabulary's longest token (128 in o200k_harmony), so at most as many characters: what bounds the
    text a number of tokens can hold. Read from the stream's table of token bytes, which every turn makes, not from
    `ranks` (~0.5 s), which a first turn needs not."""
    return max(len(token) for token in _token_bytes()[:FIRST_SPECIAL] if token)


@functools.cache
def _longest_runs() -> list[int]:
    """For each ASCII byte, the bytes of the vocabulary's longest token made of it alone (every byte is a token)."""
    longest = [1] * 0x80
    for token in ranks():
        if token[0] < 0x80 and token == token[:1] * len(token):
            longest[token[0]] = max(longest[token[0]], len(token))
    return longest


def _encode_plain(text: str) -> list[int]:
    return encoding().encode(text, allowed_special=set(), disallowed_special=()) if text else []


def _long_piece(piece: str) -> list[int]:
    """`_bpe(piece.encode())` of a long pre-tokenizer piece (openai-harmony's ids of a short one, or of ""), made by
    openai-harmony a short chunk at a time (`_bpe`
    took 9.6 µs a character, 4.8 s for 500,000 lowercase letters). Exact: the merges of a text never cross a joint
    where the last token of its left part's ids and the first of its right part's are merged into neither when
    encoded together, and where they would be, or where the chunk after it would not be one piece to openai-harmony,
    the joint is moved back a token; a piece whose joints cannot be placed so is left to `_bpe`."""
    data, table = piece.encode(), _token_bytes()
    ids: list[int] = []
    ends: list[int] = []  # where in `data` each of `ids` ends
    start, farthest, moved = 0, 0, 0   # moved: joints moved back since a chunk last ended past `farthest`
    while start < len(data):
        end = len(data) if len(data) - start < 2 * _CHUNK else start + _CHUNK
        while end < len(data) and data[end] & 0xC0 == 0x80:  # inside a character: a chunk is text
            end -= 1
        chunk = data[start:end].decode()
        new = _encode_plain(chunk) if _one_piece(chunk) else None
        if (not ids and new is None) or moved > _MOVES:
            return _bpe(data)
        if ids and (new is None or not _apart(ids[-1], new[0])):
            ids.pop(), ends.pop()   # the ids of a text's start up to a token's end are that start's own
            while ends and data[ends[-1]] & 0xC0 == 0x80:
                ids.pop(), ends.pop()
            start, moved = ends[-1] if ends else 0, moved + 1
            continue
        for token in new:
            ends.append((ends[-1] if ends else 0) + len(table[token]))  # type: ignore[arg-type]
        ids += new
        start = end
        if start > farthest:
            farthest, moved = start, 0
    return ids


def _one_piece(text: str) -> bool:
    """Whether openai-harmony's pre-tokenizer keeps `text` whole: then it encodes it by merges alone."""
    whole = _pieces().match(text)
    return whole is not None and whole.end() == len(text)


def _apart(left: int, right: int) -> bool:
    """Whether the merges of the two tokens' bytes together leave them as they are. openai-harmony answers where the
    bytes are one piece of text (where they are a token, it gives that one token: "not apart", which is safe)."""
    pair = _token_bytes()[left] + _token_bytes()[right]  # type: ignore[operator]
    try:
        text = pair.decode()
    except UnicodeDecodeError:
        text = ""
    return (_encode_plain(text) if _one_piece(text) else _bpe(pair)) == [left, right]


_CHUNK = 256  # bytes of a long piece openai-harmony encodes at once: more than any token's (128), in ~0.2 ms
_MOVES = 16   # times a joint is moved back before `_long_piece` leaves the piece to `_bpe`


def _bpe(piece: bytes) -> list[int]:
    """tiktoken's byte-pair merge of one piece (lowest rank first, leftmost on ties) with a heap:
    O(n log n) where the reference scan is O(n²)."""
    table = ranks()
    n = len(piece)
    end = list(range(1, n + 1))   # end[i]: where the part starting at byte i ends (parts start where they start)
    before = list(range(-1, n - 1))  # the start of the part before the one starting at i
    heap = [(rank, i, i + 2) for i in range(n - 1) if (rank := table.get(piece[i:i + 2])) is not None]
    heapq.heapify(heap)
    while heap:
        _, i, stop = heapq.heappop(heap)
        if before[i] == -2 or end[i] >= n or end[end[i]] != stop:  # stale: a part it joined has changed
            continue
        before[end[i]] = -2  # the right part is merged into part i
        end[i] = stop
        if stop < n:
            before[stop] = i
            if (rank := table.get(piece[i:end[stop]])) is not None:
                heapq.heappush(heap, (rank, i, end[stop]))
        if before[i] >= 0 and (rank := table.get(piece[before[i]:stop])) is not None:
            heapq.heappush(heap, (rank, before[i], stop))
    ids, i = [], 0
    while i < n:
        ids.append(table[piece[i:end[i]]])
        i = end[i]
    return ids


def clean(text: str) -> str:
    """`text` as valid UTF-8: lone surrogates (from undecodable file names, say) become `\\udcxx` escapes.

    Every place where text enters the conversation goes through this, so one odd character can
    never make a later render or export fail."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


@functools.cache
def _token_bytes() -> list[bytes | None]:
    """Bytes of every token id (special tokens as their spelling), for O(1) streaming decode."""
    table: list[bytes | None] = [None] * VOCAB_SIZE
    for token_bytes, rank in _vocabulary():   # not `ranks()`: a first turn needs no dict of the vocabulary
        table[rank] = token_bytes
    for token, name in special_tokens().items():
        table[token] = name.encode()
    return table


@functools.cache
def token_lengths() -> list[int]:
    """Characters each ordinary token decodes to, by id: what a browser window's size in tokens is counted with. Read
    from the stream's table, which every turn makes (from `ranks`, the browser's first search spent 0.15 s of CPU)."""
    return [len(token.decode("utf-8", "replace")) if token else 1 for token in _token_bytes()[:FIRST_SPECIAL]]


def token_bytes(token: int) -> bytes | None:
    """The bytes of token id `token` (a special token's spelling); None for an id no token has."""
    table = _token_bytes()
    return table[token] if 0 <= token < len(table) else None


# ---------------------------------------------------------------- message builders

def system_message(effort: str = "medium", *, tools: Sequence[ToolNamespaceConfig] = (), date: str | None = None) -> Message:
    """The system message gpt-oss expects: identity, dates, reasoning effort, built-in tools (python, browser)."""
    if effort not in _EFFORT:
        raise ValueError(f"reasoning effort must be one of {', '.join(EFFORTS)}, not {effort!r}")
    content = (
        SystemContent.new()
        .with_reasoning_effort(_EFFORT[effort])
        .with_conversation_start_date(date or _dt.date.today().isoformat())
    )
    for config in tools:
        content = content.with_tools(config)
    return Message.from_role_and_content(Role.SYSTEM, content)


def developer_message(
    instructions: str | None = None,
    *,
    functions: Sequence[ToolDescription] = (),
    response_format: dict[str, Any] | None = None,
) -> Message | None:
    """The developer message: instructions, function tools and a response format; None when empty.

    Function tools' schemas are rewritten for openai-harmony's renderer (see `_shown_tool`).
    `response_format` is `{"name", "description"?, "schema"}` (see `gptoss_lab.structured`)."""
    if not (instructions or functions or response_format):
        return None
    content = DeveloperContent.new()
    if instructions:
        content = content.with_instructions(clean(instructions))
    if functions:
        content = content.with_function_tools([_shown_tool(f) for f in functions])
    message = Message.from_role_and_content(Role.DEVELOPER, content)
    if response_format:
        # openai-harmony has no builder for this section: it follows the DeveloperContent as a second
        # content, so the tools (and the system message's line about them) render unchanged.
        section = "\n\n" if instructions or functions else ""
        section += f"# Response Formats\n\n## {response_format.get('name', 'response')}\n\n"
        section += "".join(f"// {line}\n" for line in (response_format.get("description") or "").splitlines())
        section += _json(response_format.get("schema", response_format), separators=(",", ":"))
        message = message.adding_content(TextContent(text=clean(section)))
    return message


# ---------------------------------------------------------------- function tools as the model reads them

_LIMITS = ("format", "pattern", "minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum", "multipleOf",
           "minLength", "maxLength", "minItems", "maxItems")  # keywords the renderer does not show
_LINE_BREAKS = {ord(c): f"\\u{ord(c):04x}" for c in "\u0085\u2028\u2029"}  # lines to str.splitlines, not to JSON
_SCALAR_TEXT = {"string": "string", "number": "number", "integer": "number", "boolean": "boolean", "null": "null"}


def _shown_tool(tool: ToolDescription) -> ToolDescription:
    """`tool` with a schema openai-harmony's renderer turns into TypeScript-like text that states what the
    function accepts, and with nothing that could end a comment, a string or the namespace it is written in.

    The renderer writes a number enum (`Literal[1, 2]`, an IntEnum) as `number`; a mixed enum (`Literal["a",
    None]`), `null` and a tuple as `any`; a list of a union as `"x" | "y"[]`; string enum values, string
    defaults, examples and property names as they are (a quote or a line break in them ends the string or
    the `//` comment). It writes a `type` list as its members joined by ` | `, so a type it cannot show is
    given to it as one member holding the type's TypeScript text (see `_shown`)."""
    parameters = _shown(tool.parameters) if tool.parameters else None
    return ToolDescription.new(tool.name, clean("\n".join(tool.description.splitlines())), parameters=parameters)


def _shown(schema: Any, *, in_property: bool = False) -> dict[str, Any]:
    """The schema for the renderer: objects with properties (and arrays and unions of them) left for it to
    lay out with their descriptions as comments; every other type as its one-line TypeScript text.
    `in_property`: the schema is an object's property (the renderer writes its description above it)."""
    if not isinstance(schema, dict):
        return {"type": [_text(schema)[0]]}
    notes = _notes(schema)
    variants = schema.get("oneOf", schema.get("anyOf"))
    if _has_properties(schema):
        required = set(schema.get("required", ()))
        properties = schema["properties"]
        shown = {"type": "object", "required": [_key(k) for k in properties if k in required],
                 "properties": {_key(k): _shown(v, in_property=True) for k, v in properties.items()}}
        # the renderer writes an object's description inside its type too (`start:     // ...` then `{`):
        # a property's is written above it as a union of one, elsewhere it is left out
        description = notes.pop("description", None)
        if description and in_property:
            return {**notes, "description": description, "oneOf": [shown]}
        return {**notes, **shown}
    if isinstance(variants, list) and any(map(_has_properties, variants)):
        return {**notes, "oneOf": [_shown(v) for v in variants]}
    if schema.get("type") == "array" and "prefixItems" not in schema and _has_properties(schema.get("items")):
        return {**notes, "type": "array", "items": _shown(schema["items"])}
    inner = "; ".join(dict.fromkeys(_inner_notes(schema)))
    if inner:  # the one-line text below has no room for the descriptions of the properties inside it
        notes["description"] = f"{notes['description']} ({inner})" if notes.get("description") else inner
    return {**notes, "type": [_text(schema)[0]]}


def _inner_notes(schema: Any) -> Iterator[str]:
    """`name: description` of each described property anywhere inside `schema` (in a tuple, a union, a map)."""
    if isinstance(schema, list):
        for item in schema:
            yield from _inner_notes(item)
        return
    if not isinstance(schema, dict):
        return
    properties = schema.get("properties")
    for name, sub in (properties.items() if isinstance(properties, dict) else ()):
        if isinstance(sub, dict) and (note := _notes(sub).get("description")):
            yield f"{_key(name)}: {note}"
        yield from _inner_notes(sub)
    for key in ("items", "prefixItems", "oneOf", "anyOf", "allOf", "additionalProperties"):
        yield from _inner_notes(schema.get(key))


def _has_properties(schema: Any) -> bool:
    """An object schema with properties: the renderer lays it out, a property a line."""
    properties = schema.get("properties") if isinstance(schema, dict) and schema.get("type") == "object" else None
    return isinstance(properties, dict) and bool(properties)


def _notes(schema: dict[str, Any]) -> dict[str, Any]:
    """The description (on one line, with the limits the renderer leaves out: a format, a range, a pattern),
    default and string examples, each string escaped as JSON writes it: the renderer writes them inside
    `//` comments and quotes as they are."""
    notes: dict[str, Any] = {}
    tuple_like = "prefixItems" in schema or schema.get("maxItems") == 0  # its text has its length: `[A, B]`, `[]`
    limits = ", ".join(f"{key}: {_json(schema[key])}" for key in _LIMITS
                       if key in schema and not (tuple_like and key.endswith("Items")))
    description = " ".join(str(schema.get("description") or "").split())
    if description or limits:
        notes["description"] = f"{description} ({limits})" if description and limits else description or limits
    if "default" in schema:
        notes["default"] = _escaped(schema["default"]) if isinstance(schema["default"], str) else schema["default"]
    if isinstance(schema.get("examples"), list):
        notes["examples"] = [_escaped(e) for e in schema["examples"] if isinstance(e, str)]
    return notes


def _escaped(text: str) -> str:
    """`text` as it is written between quotes in JSON (line breaks and quotes escaped)."""
    return _json(text)[1:-1]


def _json(value: Any, **options: Any) -> str:
    """`value` as JSON text on one line: the line breaks JSON writes as they are (U+0085, U+2028, U+2029) are
    escaped too, so a name or value cannot start a line of its own in the text the model reads."""
    return json.dumps(value, ensure_ascii=False, **options).translate(_LINE_BREAKS)


def _key(name: str) -> str:
    """A property name as TypeScript writes it: quoted (JSON-escaped) unless it is an identifier."""
    return name if name.isidentifier() else _json(name)


def _text(schema: Any) -> tuple[str, bool]:
    """One line of TypeScript for a JSON schema, and whether it is a union (an array of it needs brackets)."""
    if not isinstance(schema, dict):
        return ("never" if schema is False else "any"), False
    if schema.get("nullable") is True:  # OpenAPI's way to allow null, which the renderer shows
        return _union([_text({k: v for k, v in schema.items() if k != "nullable"}), ("null", False)])
    values = [schema["const"]] if "const" in schema else schema.get("enum")
    if isinstance(values, list) and values:
        return _union([(_json(v), False) for v in values])
    variants = schema.get("oneOf", schema.get("anyOf"))
    if isinstance(variants, list) and variants:
        return _union([_text(v) for v in variants])
    if isinstance(schema.get("allOf"), list) and len(schema["allOf"]) == 1:
        return _text(schema["allOf"][0])
    kind = schema.get("type")
    if isinstance(kind, list) and kind:
        return _union([_text({**schema, "type": k}) for k in kind])
    if kind == "array":
        return _array_text(schema), False
    if kind == "object":
        return _object_text(schema), False
    return _SCALAR_TEXT.get(kind, "any") if isinstance(kind, str) else "any", False


def _union(members: list[tuple[str, bool]]) -> tuple[str, bool]:
    """`A | B` of (text, is a union) members, each once."""
    unique = list(dict.fromkeys(members))
    return " | ".join(text for text, _ in unique), len(unique) > 1 or unique[0][1]


def _array_text(schema: dict[str, Any]) -> str:
    """`T[]`, `(A | B)[]`, or a tuple: `[A, B]`, `[A, ...B[]]`."""
    rest = schema.get("items")
    if isinstance(schema.get("prefixItems"), list):
        items = [_text(s)[0] for s in schema["prefixItems"]]
        if rest is not None and rest is not False:
            items.append(f"...{_array_text({'items': rest})}")
        return f"[{', '.join(items)}]"
    if schema.get("maxItems") == 0:
        return "[]"
    text, union = _text({} if rest is None else rest)
    return f"({text})[]" if union else f"{text}[]"


def _object_text(schema: dict[str, Any]) -> str:
    """`{a: T, b?: U}`, or `Record<string, T>` for a map."""
    properties = schema.get("properties")
    if isinstance(properties, dict) and properties:
        required = set(schema.get("required", ()))
        return "{" + ", ".join(f"{_key(k)}{'' if k in required else '?'}: {_text(v)[0]}"
                               for k, v in properties.items()) + "}"
    extra = schema.get("additionalProperties", True)
    patterned = schema.get("patternProperties")
    values = [*(patterned.values() if isinstance(patterned, dict) else ()), *([] if extra is False else [extra])]
    return f"Record<string, {_union([_text(value) for value in values])[0]}>" if values else "{}"


def user_message(text: str) -> Message:
    return Message.from_role_and_content(Role.USER, clean(text))


def tool_message(author: str, output: str, channel: str | None) -> Message:
    """A tool's answer to the assistant: from `author` (python, functions.NAME, browser.search), on the caller's channel.
    An author that would read as a role (a call to `system`, `user` ...) answers as functions.NAME instead,
    so no reply to the model's call can pose as the system or the user in the next prompt."""
    if author in _ROLE_NAMES:
        author = f"functions.{author}"
    message = Message.from_author_and_content(Author.new(Role.TOOL, author), clean(output)).with_recipient("assistant")
    return message.with_channel(channel) if channel else message


_ROLE_NAMES = frozenset(role.value for role in Role)


def assistant_message(text: str, channel: str | None, recipient: str | None = None,
                      content_type: str | None = None) -> Message:
    """An assistant message as the model wrote it (channel, optional recipient and content type)."""
    message = Message.from_role_and_content(Role.ASSISTANT, clean(text))
    if channel:
        message = message.with_channel(channel)
    if recipient:
        message = message.with_recipient(recipient)
    return message.with_content_type(content_type) if content_type else message


def is_call(channel: str | None, recipient: str | None) -> bool:
    """Whether an assistant message with this channel and recipient is a tool call a session runs: one addressed to a
    tool on a channel the conversation keeps (a message on any other channel is left out, its recipient with it)."""
    return bool(recipient) and channel in CHANNELS


def text_of(message: Message) -> str:
    """The text content of a message (system/developer contents rendered as their text)."""
    return "".join(c.text if isinstance(getattr(c, "text", None), str) else str(c) for c in message.content)


# ---------------------------------------------------------------- rendering

def render(messages: Sequence[Message], *, keep_analysis_from: int | None = None,
           keep_tool_calls: bool = False) -> list[int]:
    """Prompt ids for the next assistant message (see `Renderer.render`; this one caches nothing)."""
    return Renderer().render(messages, keep_analysis_from=keep_analysis_from, keep_tool_calls=keep_tool_calls)


class Renderer:
    """Renders conversations for completion, encoding each message once and reusing it after.

    A session keeps one, so a turn's engine calls only encode the messages that are new. The ids
    equal openai-harmony's `render_conversation_for_completion` of the kept messages (tested). The
    leading system and developer messages are rendered together: the system message's text depends
    on whether the developer message lists function tools.
    """

    _SUFFIX = [START, ASSISTANT]

    def __init__(self) -> None:
        self._cache: dict[Any, list[int]] = {}

    def render(self, messages: Sequence[Message], *, keep_analysis_from: int | None = None,
               keep_tool_calls: bool = False, remember: bool = True) -> list[int]:
        """Every analysis-channel message of earlier turns is dropped, the built-in tools' calls and outputs with the
        reasoning (as openai-harmony's `auto_drop_analysis` and vLLM drop them: gpt-oss is trained without them);
        messages at index `keep_analysis_from` or later (the current turn's tool loop) are kept. openai-harmony
        itself would keep earlier reasoning during a later tool loop, so the rule is applied here.
        `keep_tool_calls`: only the reasoning is dropped (how gpt-oss-tiny is trained).
        `remember=False`: read from the cache but keep it as it is, for a count or an export beside the conversation
        (kept, the cache would hold only those messages and the next turn encode the whole conversation again)."""
        keep = len(messages) if keep_analysis_from is None else keep_analysis_from
        head = 0
        while head < len(messages) and messages[head].author.role in (Role.SYSTEM, Role.DEVELOPER):
            head += 1
        live: dict[Any, list[int]] = {}
        ids = list(self._ids(tuple(messages[:head]), live)) if head else []  # a copy: cached lists stay as they are
        for i in range(head, len(messages)):
            m = messages[i]
            if i < keep and m.channel == "analysis" and not (
                    keep_tool_calls and (m.author.role != Role.ASSISTANT or m.recipient)):
                continue
            ids += self._ids(m, live)
        if remember:
            self._cache = live
        return ids + self._SUFFIX

    def _ids(self, item: Message | tuple[Message, ...], live: dict[Any, list[int]]) -> list[int]:
        # keyed by what the messages say, not by the objects: a message changed in place renders anew
        key = tuple(map(_signature, item)) if isinstance(item, tuple) else _signature(item)
        ids = self._cache.get(key)
        if ids is None:
            ids = _render_conversation(item if isinstance(item, tuple) else (item,))
        live[key] = ids
        return ids


def _render_conversation(messages: tuple[Message, ...], kept: frozenset[int] = frozenset()) -> list[int]:
    """openai-harmony's `render_conversation` of `messages` in about linear time, interruptible.

    openai-harmony encodes each content's text in one call, quadratic in a long pre-tokenizer piece ("[" * 100,000 as
    instructions: 8 s). So it renders a copy whose long runs are placeholders (`_Masked`) and whose texts are empty;
    each content's text, its runs put back, is then encoded by `encode_text`, one content at a time as it does.
    Runs it rewrote (a description's line breaks) are rendered again left as they are (`kept`: their numbers)."""
    mask = _Masked(messages, kept)
    if not mask.needed:
        return encoding().render_conversation(Conversation.from_messages(list(messages)))
    frame = encoding().render_conversation(Conversation.from_messages([mask.message(m) for m in messages]))
    ids: list[int] = []
    rest = iter(frame)
    for message in messages:
        ids += _through(rest, MESSAGE)
        body = _through(rest, END, CALL)
        structured = [c for c in message.content if not isinstance(c, TextContent)]
        text = mask.restore(decode(body[:-1])) if structured else ""
        if text is None and mask.rewritten - kept:
            return _render_conversation(messages, kept | mask.rewritten)
        if len(structured) > 1 or text is None:  # its contents' texts cannot be told apart
            return encoding().render_conversation(Conversation.from_messages(list(messages)))
        ids += [i for c in message.content for i in encode_text(c.text if isinstance(c, TextContent) else text)]
        ids.append(body[-1])
    return ids


def _through(ids: Iterator[int], *stops: int) -> list[int]:
    """The next ids up to and including the first of `stops` (a format token: content text is encoded as ordinary)."""
    taken = []
    for token in ids:
        taken.append(token)
        if token in stops:
            break
    return taken


class _Masked:
    """Messages' long runs (`_LONG_RUN`) replaced by short placeholders, and the placeholders put back.

    A placeholder keeps its run's first and last characters (text trimmed or split at its ends is trimmed or split
    alike) and holds a quote, and a line break where its run has one: written as it is, it stands where openai-harmony
    wrote its run as it is; JSON-escaped (a default value), where it wrote the run JSON-escaped; any other way (a
    description's lines each made a comment), where it rewrote the run (its number is then in `rewritten`)."""

    def __init__(self, messages: Sequence[Message], kept: frozenset[int] = frozenset()) -> None:
        contents = [c for m in messages for c in m.content]
        dumps = {id(c): c.model_dump() for c in contents if not isinstance(c, TextContent)}
        strings = [c.text for c in contents if isinstance(c, TextContent)]
        for dump in dumps.values():
            _mapped(dump, lambda text: strings.append(text) or text)
        held = set().union(*(map(set, strings)))
        # a private-use character none of them holds marks the placeholders
        self._mark = next((chr(c) for c in range(0xF0000, 0x110000) if chr(c) not in held), None)
        self.needed = self._mark is not None and any(map(_LONG_RUN.search, strings))
        self._runs: list[str] = []
        self._kept = kept  # the numbers of the runs left as they are
        self.rewritten: set[int] = set()
        self._masked = {key: _mapped(dump, self._masked_text) for key, dump in dumps.items()} if self.needed else {}

    def message(self, message: Message) -> Message:
        """`message` with its texts empty and the long runs of its other contents masked."""
        return message.model_copy(update={"content": [
            TextContent(text="") if isinstance(c, TextContent) else type(c).model_validate(self._masked[id(c)])
            for c in message.content]})

    def restore(self, text: str) -> str | None:
        """`text` as openai-harmony writes it from the unmasked messages; None where it rewrote a run."""
        parts, done = [], 0
        for core in re.finditer(f'{self._mark}(\\d+)("\n?|\\\\"(?:\\\\n)?){self._mark}', text):
            run = self._runs[int(core.group(1))]
            placeholder = self._placeholder(int(core.group(1)))
            escaped = core.group(2).startswith("\\")
            start = core.start() - len(_escape(run[0]) if escaped else run[0])
            shown = _escape(placeholder) if escaped else placeholder
            if start >= done and text.startswith(shown, start):
                parts += [text[done:start], _escape(run) if escaped else run]
                done = start + len(shown)
        restored = "".join(parts) + text[done:]
        self.rewritten |= {int(number) for number in re.findall(f"{self._mark}(\\d+)", restored)}
        return None if self._mark in restored else restored

    def _masked_text(self, text: str) -> str:
        return _LONG_RUN.sub(self._masked_run, text)

    def _masked_run(self, match: re.Match[str]) -> str:
        self._runs.append(match.group())
        return match.group() if len(self._runs) - 1 in self._kept else self._placeholder(len(self._runs) - 1)

    def _placeholder(self, index: int) -> str:
        run = self._runs[index]
        breaks = "\n" if "\n" in run else ""  # a description's lines are split: a run is split only if it has one
        return f'{run[0]}{self._mark}{index}"{breaks}{self._mark}{run[-1]}'


def _mapped(value: Any, change: Callable[[str], str]) -> Any:
    """`value` (a content's `model_dump()`) with `change` applied to every string in it, dict keys too."""
    if isinstance(value, dict):
        return {_mapped(k, change): _mapped(v, change) for k, v in value.items()}
    if isinstance(value, list):
        return [_mapped(v, change) for v in value]
    return change(value) if isinstance(value, str) else value


def _escape(text: str) -> str:
    """`text` as openai-harmony's JSON (serde_json) writes it inside quotes."""
    return json.dumps(text, ensure_ascii=False)[1:-1]


def _signature(message: Message) -> tuple[Any, ...]:
    """Everything a message's rendering depends on (its author, header and contents), as a dict key."""
    contents = tuple(c.text if isinstance(c, TextContent) else c.model_dump_json() for c in message.content)
    return (message.author.role, message.author.name, message.channel, message.recipient, message.content_type, contents)


# ---------------------------------------------------------------- the header parser

_MARKERS = re.compile(r"(<\|channel\|>|<\|constrain\|>)")


@dataclass(frozen=True)
class Header:
    """A message header (`assistant to=python<|channel|>analysis code`): who wrote it, on which
    channel, to whom, and its content type. The one parser of headers in the lab."""

    role: str = "assistant"              # system, developer, user, assistant, or tool
    author: str | None = None            # a tool message's author (python, functions.NAME, browser.open)
    channel: str | None = None
    recipient: str | None = None
    content_type: str | None = None      # as openai-harmony keeps it: "code", "<|constrain|>json"
    constrain: str | None = None         # the format after <|constrain|>: "json"
    twice: str | None = None             # "recipients" or "channels" when it names two: not valid Harmony

    @property
    def label(self) -> str:
        """What its content is, for token labels: a role, "tool", or an assistant message's channel."""
        if self.role != "assistant":
            return self.role
        return self.channel if self.channel in CHANNELS else "final"

    @property
    def is_call(self) -> bool:
        """An assistant message addressed to a tool."""
        return self.role == "assistant" and self.recipient is not None


def parse_header(text: str, *, role: str | None = None) -> Header:
    """Parse header text (between `<|start|>` and `<|message|>`, special tokens spelled out).

    `role` is given when the text starts after the role (a completion prompt ends with
    `<|start|>assistant`). Accepts every shape gpt-oss and servers write: the recipient before or
    after the channel, `to=python code`, `<|constrain|>json` after the recipient or right after the
    channel (then it is a content type, not a recipient). A `to=` word is a recipient wherever it is written; a second
    recipient or channel is kept out of the content type and said in `twice` (openai-harmony refuses such a header)."""
    parts = _MARKERS.split(text)
    first = parts[0].split()
    author = None
    if role is None:
        name = first.pop(0) if first and not first[0].startswith("to=") else "assistant"
        role, author = (name, None) if name in ROLES else ("tool", name)
    channel = recipient = constrain = twice = None
    extra: list[str] = []
    words = [("", w) for w in first]
    for marker, segment in zip(parts[1::2], parts[2::2]):
        seg = segment.split()
        if marker == "<|channel|>" and seg and not seg[0].startswith("to="):
            named = seg.pop(0)
            twice = "channels" if channel is not None else twice
            channel = channel or named
        elif marker == "<|constrain|>" and seg and constrain is None and not seg[0].startswith("to="):
            constrain = seg.pop(0)
        words += [("", w) for w in seg]
    for _, word in words:
        if word.startswith("to=") and recipient is not None:
            twice = twice or "recipients"
        elif word.startswith("to="):
            recipient = word[3:] or None
        else:
            extra.append(word)
    if role == "assistant" and recipient == "assistant":
        recipient = None
    content_type = " ".join(extra) or None
    if constrain:
        content_type = f"<|constrain|>{constrain}" if content_type is None else f"{content_type} <|constrain|>{constrain}"
    return Header(role, author, channel, recipient, content_type, constrain, twice)


# ---------------------------------------------------------------- streaming parser

_END_NAMES = {END: "<|end|>", RETURN: "<|return|>", CALL: "<|call|>"}


# Harmony headers are a few words (role, channel, recipient, content type) of a few dozen tokens: more written where one
# goes (or between messages), which no view shows, is a model that lost the format (`HarmonyStream.runaway`).
MAX_HEADER_WORDS = 16
MAX_HEADER_TOKENS = 1024   # a recipient is one word: a long function name fits, a name that never ends does not


class HarmonyStream:
    """Turns generated token ids into typed events, one token at a time, in O(1) per token.

    Generation starts right after `<|start|>assistant`. When the model writes something that is not
    valid Harmony, the stream emits a `ParseError` with the raw text and resynchronises at the next
    `<|start|>` instead of raising, so a malformed reply never breaks the session; a message it writes
    as another author (a tool's answer, a user turn) is such an error, never an assistant message. A missing
    `<|end|>` before the next `<|start|>` closes the open message (it is not merged into the next).
    """

    def __init__(self) -> None:
        self._bytes = _token_bytes()
        self._state = "header"
        self._role: str | None = "assistant"   # the header's role is already written
        self._raw: list[bytes] = []              # header bytes, or stray bytes between messages
        self._words = 0                          # words begun in `_raw` (see `runaway`)
        self._spaced = True                      # whether `_raw` ends in a space (the next letter begins a word)
        self._parts: list[str] = []              # content text of the open message
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.header: Header | None = None        # the open message's header, while in its content

    @property
    def in_message(self) -> bool:
        """Whether a message's content was being written when generation stopped or is still being written."""
        return self._state in ("content", "cut")

    @property
    def runaway(self) -> bool:
        """Whether the text written outside a message's content (its header, or stray text between messages), which no
        view shows, is longer than any Harmony header: prose or a name of thousands of characters, not a header."""
        return len(self._raw) > MAX_HEADER_TOKENS or self._words > MAX_HEADER_WORDS

    def feed(self, token: int) -> list[Event]:
        """Feed one token; returns the events it completes (often one `Delta`, sometimes none)."""
        piece = self._bytes[token] if 0 <= token < VOCAB_SIZE else None
        if piece is None:
            return [ParseError(f"<token {token}>", f"token id {token} is not in the Harmony vocabulary")]
        if token == START:
            return self._start()
        if self._state == "content":
            return self._content(token, piece)
        if self._state == "between":
            self._keep_raw(piece)
            return []
        if token == MESSAGE:
            return self._open()
        if token in _END_NAMES:
            raw = self._take_raw() + _END_NAMES[token]
            self._state = "between"
            return [ParseError(raw, f"a message header ended by {_END_NAMES[token]} before <|message|>")]
        self._keep_raw(piece)
        return []

    def close(self, *, limit: bool = False) -> list[Event]:
        """End of generation: an open message ends as `MessageEnd(None, None)` (cut off; its header
        and `partial_text()` stay readable, without a character cut between its bytes, which no `Delta` showed);
        an unfinished header or stray text is a `ParseError`, except a header that the token `limit` cut (the model
        wrote nothing wrong: it was stopped mid-way) unless it had run away (see `runaway`)."""
        events: list[Event] = []
        if self._state == "content":
            self._decoder.reset()
            events.append(MessageEnd(None, None))
            self._state = "cut"
        elif limit and self._state == "header" and not self.runaway:
            self._take_raw()
            self._state = "between"
        elif self._raw:
            header = self._state == "header"
            if self.runaway:
                reason = f"{'a message header' if header else 'text after the last message'} longer than any Harmony header"
            else:
                reason = "generation ended inside a message header" if header else "text after the last message"
            events.append(ParseError(self._take_raw(), reason))
            self._state = "between"
        return events

    def partial_text(self) -> str:
        """The content written so far in the open message."""
        return "".join(self._parts)

    # ------------------------------------------------------------ states

    def _start(self) -> list[Event]:
        events: list[Event] = []
        if self._state == "content":  # the <|end|> is missing: the open message ends as written
            events += self._end(None)
        elif self._raw:
            reason = "text outside a message" if self._state == "between" else "a message header with no <|message|>"
            events.append(ParseError(self._take_raw(), reason))
        self._state, self._role = "header", None
        return events

    def _open(self) -> list[Event]:
        text = self._take_raw()
        header = parse_header(text, role=self._role)
        if header.role != "assistant" or header.twice:  # a tool's answer or a user turn, or a call to two tools
            self._state = "between"  # not its message: its text is reported as text outside a message
            why = f"a message header with two {header.twice}" if header.twice else \
                f"the model wrote a message as {header.author or header.role}"
            return [ParseError(f"{text}<|message|>", why)]
        self.header = header
        self._state, self._parts = "content", []
        self._decoder.reset()
        return [MessageStart(self.header.channel, self.header.recipient, self.header.content_type)]

    def _content(self, token: int, piece: bytes) -> list[Event]:
        if token in _END_NAMES:
            return self._end(token)
        events: list[Event] = []
        if token >= FIRST_SPECIAL:  # a format token inside the text: kept as written, and reported
            events.append(ParseError(piece.decode(), "a special token inside a message's text"))
        text = self._decoder.decode(piece)
        if text:
            self._parts.append(text)
            events.append(Delta(text, self.header.channel if self.header else None))
        return events

    def _end(self, stop: int | None) -> list[Event]:
        events: list[Event] = []
        tail = self._flush_decoder()
        if tail:
            events.append(Delta(tail, self.header.channel if self.header else None))
        header = self.header or Header()
        message = assistant_message("".join(self._parts), header.channel, header.recipient, header.content_type)
        events.append(MessageEnd(message, stop))
        self._state, self.header, self._parts, self._role = "between", None, [], None
        return events

    def _flush_decoder(self) -> str:
        tail = self._decoder.decode(b"", final=True)
        if tail:
            self._parts.append(tail)
        return tail

    def _keep_raw(self, piece: bytes) -> None:
        """Keep a piece of header or stray text, counting the words it begins (O(1) per token)."""
        self._raw.append(piece)
        for byte in piece:
            spaced = byte in b" \t\r\n"
            self._words += self._spaced and not spaced
            self._spaced = spaced

    def _take_raw(self) -> str:
        text = b"".join(self._raw).decode("utf-8", "replace")
        self._raw, self._words, self._spaced = [], 0, True
        return text


# ---------------------------------------------------------------- the format guard

class FormatGuard:
    """Logits processor (transformers' `__call__(input_ids, scores)`) ruling out the tokens Harmony does not
    allow where the model is writing: after `<|start|>`, any role but `assistant`, then a word glued to it; in a
    header, an end token or a second `<|channel|>`; in a message's text, a format token (`<|message|>`, `<|channel|>`,
    `<|start|>` ...), `<|call|>` with no recipient, `<|return|>` outside a final answer; after `<|end|>`, anything but
    `<|start|>`. A weak model's slip then costs its likeliest allowed token, not the turn; what a model writes validly
    is unchanged. Ids without a `<|start|>` are free.

    It keeps no place between calls: each reads it from `input_ids` (one scan for the last `<|start|>`)."""

    def __init__(self) -> None:
        self._masks: dict[tuple[Any, ...], Any] = {}
        self._header: tuple[list[int], Header] | None = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        allowed = self.allowed(input_ids[0])
        if allowed is None:
            return scores
        text, tokens = allowed
        if text == "any":   # most tokens: only the ~1 000 special ids change (a full-vocabulary mask cost 90 µs)
            kept = scores[..., list(tokens)]
            scores[..., FIRST_SPECIAL:] = float("-inf")
            scores[..., list(tokens)] = kept
            return scores
        key = (allowed, scores.shape[-1], scores.device)
        if key not in self._masks:
            import torch

            banned = torch.ones(scores.shape[-1], dtype=torch.bool, device=scores.device)
            if text == "spaced":
                banned[:FIRST_SPECIAL] = _unspaced().to(scores.device)
            banned[list(tokens)] = False
            self._masks[key] = banned
        return scores.masked_fill_(self._masks[key], float("-inf"))

    def allowed(self, ids: Any) -> tuple[str, tuple[int, ...]] | None:
        """What may follow `ids` (a 1-d tensor): which text ("any", "none", or "spaced": tokens that start with a
        space) and which other tokens; None when no rule applies (no `<|start|>` yet, or the last message stopped)."""
        starts = (ids == START).nonzero()
        if not len(starts):
            return None
        rest = ids[int(starts[-1]) + 1:]
        if not len(rest):
            return "none", (ASSISTANT,)
        if len(rest) == 1 and int(rest[0]) == ASSISTANT:
            return "spaced", (CHANNEL,)
        # only the special tokens leave Python's side: a long message's text stays a tensor (a list of it grew
        # the guard's cost with the message: 1.9 ms a token 30 000 tokens into it)
        where = (rest >= FIRST_SPECIAL).nonzero().flatten().tolist()
        marks = rest[where].tolist()
        if MESSAGE not in marks:  # one <|channel|> a header (a second is not valid Harmony: see `parse_header`)
            return "any", (CONSTRAIN, MESSAGE) if CHANNEL in marks else (CHANNEL, CONSTRAIN, MESSAGE)
        opened = marks.index(MESSAGE)
        body, later = where[opened], marks[opened + 1:]
        if END in later:
            return "none", (START,)
        if RETURN in later or CALL in later:
            return None
        header = rest[:body].tolist()
        if self._header is None or self._header[0] != header:
            self._header = header, parse_header(decode(header))
        parsed = self._header[1]
        return "any", (END,) + ((RETURN,) if parsed.channel in (None, "final") else ()) + \
            ((CALL,) if parsed.recipient else ())


@functools.cache
def _unspaced() -> Any:
    """A bool tensor: which ordinary tokens do not start with a space (none may follow the role word in a header).
    Made once (26 ms): every engine call of a session starts right after the role."""
    import torch

    return torch.tensor([piece is None or piece[:1] != b" " for piece in _token_bytes()[:FIRST_SPECIAL]])


# ---------------------------------------------------------------- token labels

def label_tokens(ids: Sequence[int]) -> list[str]:
    """What each token of a rendered conversation is (one of LABELS): its author's role, the channel
    of an assistant message, or "format" for special tokens and headers. Used to split expert routing
    by channel."""
    table = _token_bytes()
    labels: list[str] = []
    header: list[bytes] = []
    in_header, content = True, "final"
    role: str | None = "assistant"  # the completion prompt ends with <|start|>assistant
    for token in ids:
        if token == START:
            in_header, header, role = True, [], None
            labels.append("format")
        elif token == MESSAGE and in_header:
            in_header = False
            content = parse_header(b"".join(header).decode("utf-8", "replace"), role=role).label
            labels.append("format")
        elif in_header or token >= FIRST_SPECIAL:
            if in_header and 0 <= token < VOCAB_SIZE and table[token] is not None:
                header.append(table[token])
            labels.append("format")
        else:
            labels.append(content)
    return labels


# ---------------------------------------------------------------- re-tokenising streamed text
# (remote engines: a server streams what the model wrote as text with the special tokens spelled
# out; this turns it back into the ids the local engine would have produced)

_SPELLED = re.compile(r"<\|[A-Za-z0-9_]+\|>")
# a special token cut by the chunk boundary: at most as long as the longest, `<|reserved_201087|>` (16 characters
# between `<|` and `|>`); unbounded, `<|aaa...` streamed without end was held and re-scanned at every chunk (quadratic)
_SPELLING_ARRIVES = re.compile(r"<(\|[A-Za-z0-9_]{0,16}\|?)?$")
_HOLD = 2  # trailing pre-tokenizer pieces that more text could still change
_SETTLE = 4096  # characters of a piece that never ends settled at a time (see Retokenizer._ordinary_piece)


@functools.cache
def _pieces() -> regex.Pattern:
    return regex.compile(O200K_PATTERN)


@functools.cache
def _special_ids() -> dict[str, int]:
    return {name: token for token, name in special_tokens().items()}


class Retokenizer:
    """Streamed text in, Harmony ids out, each id emitted once no later text can change it.

    Text between special tokens is held back by its last `_HOLD` pre-tokenizer pieces (a word can
    still grow, whitespace can still regroup) and encoded piece by piece; a special token, complete
    or still arriving (`<|chan`), is a hard boundary. Headers are read with `parse_header`, so the
    ids the server left out can be restored: an `<|end|>` missing before `<|start|>`, and the stop
    token (`implied_stop`) when the server stopped without printing it.
    """

    def __init__(self) -> None:
        self._text = ""                      # text not yet turned into ids
        self._role: str | None = "assistant"  # a completion prompt ends with <|start|>assistant
        self._header_text = ""
        self.header: Header | None = None    # the open message's header, while its content streams
        self.harmony_seen = False            # a <|channel|> or <|message|> arrived

    def feed(self, text: str) -> list[int]:
        """More streamed text; returns the ids it settles."""
        self._text += text
        return self._drain(final=False)

    def flush(self) -> list[int]:
        """End of stream: everything pending is final."""
        return self._drain(final=True)

    def implied_stop(self) -> list[int]:
        """The stop token a server swallowed when it reported a stop: `<|call|>` after a message with
        a recipient, `<|return|>` after a final answer, `<|end|>` after other messages."""
        if self.header is None:
            return []
        if self.header.is_call:
            return [CALL]
        return [RETURN] if self.header.channel in (None, "final") else [END]

    def _drain(self, *, final: bool) -> list[int]:
        out: list[int] = []
        specials = _special_ids()
        while (match := next((m for m in _SPELLED.finditer(self._text) if m.group() in specials), None)):
            out += self._ordinary(self._text[: match.start()])
            out += self._special(specials[match.group()])
            self._text = self._text[match.end():]
        if final:
            out += self._ordinary(self._text)
            self._text = ""
            return out
        arriving = _SPELLING_ARRIVES.search(self._text)
        cut = arriving.start() if arriving else len(self._text)
        pieces = _pieces().findall(self._text[:cut])
        held = range(max(len(pieces) - _HOLD, 0), len(pieces))
        # a held piece that keeps growing settles the pieces before it (`a=xxx...`: held whole, it was re-scanned
        # at every chunk), and its own start
        growing = max((k for k in held if len(pieces[k]) >= 2 * _SETTLE), default=None)
        stable = pieces[:held.start if growing is None else growing]
        for piece in stable:  # one at a time: re-splitting them joined could regroup whitespace
            out += self._ordinary_piece(piece)
        self._text = self._text[sum(map(len, stable)):]
        if growing is not None:
            done = (len(pieces[growing]) // _SETTLE - 1) * _SETTLE
            out += self._ordinary_piece(self._text[:done])
            self._text = self._text[done:]
        return out

    def _ordinary_piece(self, piece: str) -> list[int]:
        """One pre-tokenizer piece; one of 2 * `_SETTLE` characters or more ("-----..." that never ends) in
        `_SETTLE`-character parts, whole or as it arrives alike, so the held text, and each feed's work, stay bounded."""
        if len(piece) < 2 * _SETTLE:
            return self._ordinary(piece)
        done = (len(piece) // _SETTLE - 1) * _SETTLE
        return [i for start in range(0, done, _SETTLE) for i in self._ordinary(piece[start:start + _SETTLE])] \
            + self._ordinary(piece[done:])

    def _ordinary(self, text: str) -> list[int]:
        if not text:
            return []
        if self.header is None:
            self._header_text += text
        return encode_text(text)

    def _special(self, token: int) -> list[int]:
        out = [token]
        self.harmony_seen |= token in (CHANNEL, MESSAGE)
        if token == START:
            if self.header is not None:  # the server dropped the <|end|> before it
                out.insert(0, END)
            self.header, self._header_text, self._role = None, "", None
        elif self.header is not None:  # inside a message's content
            if token in _END_NAMES:
                self.header = None
        elif token == MESSAGE:
            self.header, self._header_text = parse_header(self._header_text, role=self._role), ""
        elif token in _END_NAMES:  # a header cut short: the stream's parser reports it
            self._header_text = ""
        else:  # <|channel|>, <|constrain|> inside the header
            self._header_text += special_tokens()[token]
        return out
