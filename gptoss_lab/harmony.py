"""The Harmony format: the offline encoding, message builders, rendering and a streaming parser.

Everything that knows how gpt-oss text is laid out lives here; the rest of the lab speaks in
`openai_harmony.Message` objects and the typed events of `gptoss_lab.events`.
"""
from __future__ import annotations

import base64
import datetime as _dt
import functools
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from openai_harmony import (
    Author,
    Conversation,
    DeveloperContent,
    HarmonyEncoding,
    HarmonyEncodingName,
    Message,
    Role,
    StreamableParser,
    SystemContent,
    TextContent,
    ToolDescription,
    load_harmony_encoding,
)
from openai_harmony import ReasoningEffort, RenderConversationConfig, ToolNamespaceConfig  # not in __all__

from .events import Delta, MessageEnd, MessageStart, ParseError

VOCAB_DIR = Path(__file__).parent / "vocab"
VOCAB_FILE = VOCAB_DIR / "o200k_base.tiktoken"
VOCAB_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"

START, CONSTRAIN, CHANNEL, MESSAGE, END, RETURN, CALL = 200006, 200003, 200005, 200008, 200007, 200002, 200012
STOP_TOKENS: frozenset[int] = frozenset({RETURN, CALL})
VOCAB_SIZE = 201088

EFFORTS = ("low", "medium", "high")
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
    encoding()
    table = {}
    for line in VOCAB_FILE.read_bytes().splitlines():
        if line:
            token, rank = line.split()
            table[base64.b64decode(token)] = int(rank)
    return table


@functools.cache
def special_tokens() -> dict[int, str]:
    """Every Harmony special token by id (199998-201087), names as openai-harmony spells them."""
    found = {}
    for name in encoding().special_tokens_set:
        (token,) = encode(name)
        if token < VOCAB_SIZE:
            found[token] = name
    return dict(sorted(found.items()))


def decode(ids: Iterable[int]) -> str:
    """Token ids to text, special tokens spelled out (`<|start|>` ...)."""
    return encoding().decode(list(ids))


def encode(text: str) -> list[int]:
    """Text to token ids; Harmony special tokens written in the text are recognised."""
    return encoding().encode(text, allowed_special="all")


# ---------------------------------------------------------------- message builders

PYTHON_TOOL = (
    "Use this tool to execute Python code in your chain of thought. The code runs in the user's live "
    "Jupyter kernel (IPython): the user's variables are available to it, and whatever it defines stays "
    "there for the user. python will respond with the output of the execution (printed text, the value "
    "of the last expression, or the traceback){timeout}. "
    "The user may have to approve each call before it runs."
)


def system_message(
    effort: str = "medium",
    *,
    python: bool = True,
    timeout: float | None = 120.0,
    date: str | None = None,
    identity: str | None = None,
) -> Message:
    """The system message gpt-oss expects: identity, dates, reasoning effort, built-in tools.

    The python tool's description says truthfully where the code runs (this kernel) and its timeout,
    instead of openai-harmony's default sandbox text."""
    if effort not in _EFFORT:
        raise ValueError(f"reasoning effort must be one of {', '.join(EFFORTS)}, not {effort!r}")
    content = (
        SystemContent.new()
        .with_reasoning_effort(_EFFORT[effort])
        .with_conversation_start_date(date or _dt.date.today().isoformat())
    )
    if identity:
        content = content.with_model_identity(identity)
    if python:
        description = PYTHON_TOOL.format(timeout=f" or time out after {timeout:g} seconds" if timeout else "")
        content = content.with_tools(ToolNamespaceConfig(name="python", description=description, tools=[]))
    return Message.from_role_and_content(Role.SYSTEM, content)


def developer_message(
    instructions: str | None = None,
    *,
    functions: Sequence[ToolDescription] = (),
    response_format: dict[str, Any] | None = None,
) -> Message | None:
    """The developer message: instructions, function tools and a response format; None when empty."""
    if not (instructions or functions or response_format):
        return None
    content = DeveloperContent.new()
    if instructions:
        content = content.with_instructions(instructions)
    if functions:
        content = content.with_function_tools(list(functions))
    message = Message.from_role_and_content(Role.DEVELOPER, content)
    if response_format:
        # openai-harmony has no builder for this section: it follows the DeveloperContent as a second
        # content, so the tools (and the system message's line about them) render unchanged.
        section = "\n\n" if instructions or functions else ""
        section += f"# Response Formats\n\n## {response_format.get('name', 'response')}\n\n"
        section += "".join(f"// {line}\n" for line in (response_format.get("description") or "").splitlines())
        section += json.dumps(response_format.get("schema", response_format), separators=(",", ":"), ensure_ascii=False)
        message = message.adding_content(TextContent(text=section))
    return message


def user_message(text: str) -> Message:
    return Message.from_role_and_content(Role.USER, text)


def tool_message(tool: str, output: str, channel: str | None) -> Message:
    """A tool's answer to the assistant: from `tool` (python, functions.NAME), on the caller's channel."""
    message = Message.from_author_and_content(Author.new(Role.TOOL, tool), output).with_recipient("assistant")
    return message.with_channel(channel) if channel else message


# ---------------------------------------------------------------- rendering

def render(messages: Sequence[Message], *, keep_analysis_from: int | None = None) -> list[int]:
    """Prompt ids for the next assistant message.

    Analysis of earlier turns is dropped (gpt-oss is trained without it); analysis at index
    `keep_analysis_from` or later (the current turn's tool loop) is kept. openai-harmony's own
    `auto_drop_analysis` would keep earlier reasoning during a later tool loop, so the rule is
    applied here and the library's is turned off.
    """
    keep = len(messages) if keep_analysis_from is None else keep_analysis_from
    kept = [
        m for i, m in enumerate(messages)
        if not (i < keep and m.author.role == Role.ASSISTANT and m.channel == "analysis" and not m.recipient)
    ]
    return encoding().render_conversation_for_completion(
        Conversation.from_messages(kept), Role.ASSISTANT,
        config=RenderConversationConfig(auto_drop_analysis=False),
    )


def text_of(message: Message) -> str:
    """The text content of a message (system/developer contents rendered as their text)."""
    parts = []
    for c in message.content:
        parts.append(getattr(c, "text", None) or str(c))
    return "".join(parts)


# ---------------------------------------------------------------- streaming parser

class HarmonyStream:
    """Turns generated token ids into typed events, one token at a time.

    Wraps openai-harmony's `StreamableParser`; when the model writes something that is not valid
    Harmony, it emits a `ParseError` with the raw text and starts afresh instead of raising, so a
    malformed reply never breaks the session.
    """

    def __init__(self) -> None:
        self._enc = encoding()
        self._reset()

    def _reset(self) -> None:
        self._parser = StreamableParser(self._enc, Role.ASSISTANT, strict=False)
        self._open = False
        self._raw: list[int] = []
        self._done = 0

    def feed(self, token: int) -> list:
        """Feed one token; returns the events it completes (often one `Delta`, sometimes none)."""
        self._raw.append(token)
        try:
            self._parser.process(token)
        except Exception as err:  # HarmonyError and friends: report, resync
            events = self._close_open()
            events.append(ParseError(self._enc.decode(self._raw), str(err)))
            self._reset()
            return events
        events: list = []
        p = self._parser
        if not self._open and p.current_channel is not None and p.state.name == "CONTENT":
            self._open = True
            events.append(MessageStart(p.current_channel, p.current_recipient, p.current_content_type))
        delta = p.last_content_delta
        if self._open and delta:
            events.append(Delta(delta, p.current_channel))
        messages = p.messages
        while self._done < len(messages):
            msg = messages[self._done]
            self._done += 1
            if not self._open:  # a message with no content tokens
                events.append(MessageStart(msg.channel, msg.recipient, msg.content_type))
            self._open = False
            events.append(MessageEnd(msg, token))
            self._raw = []
        return events

    def close(self) -> list:
        """End of generation: an unfinished message is returned as a `ParseError` with its raw text."""
        events = self._close_open()
        if self._raw:
            events.append(ParseError(self._enc.decode(self._raw), "generation ended inside a message"))
        self._reset()
        return events

    def _close_open(self) -> list:
        if self._open:
            self._open = False
            return [MessageEnd(None, None)]
        return []


# ---------------------------------------------------------------- token labels

LABELS = ("system", "developer", "user", "tool", "analysis", "commentary", "final", "format")
_ROLES = {"system", "developer", "user", "assistant"}


def label_tokens(ids: Sequence[int]) -> list[str]:
    """What each token of a rendered conversation is: its author's role, the channel of an assistant
    message, or "format" for special tokens and headers. Used to split expert routing by channel."""
    enc = encoding()
    labels: list[str] = []
    header: list[int] = []
    in_header, content = True, "assistant"
    for token in ids:
        if token == START:
            in_header, header = True, []
            labels.append("format")
        elif token == MESSAGE and in_header:
            in_header = False
            content = _content_label(enc.decode(header))
            labels.append("format")
        elif token >= 199998 or in_header:
            if in_header and token != START:
                header.append(token)
            labels.append("format")
        else:
            labels.append(content)
    return labels


def _content_label(header: str) -> str:
    """`assistant to=python<|channel|>analysis` -> analysis; `python to=assistant...` -> tool."""
    head, _, channel = header.partition("<|channel|>")
    words = head.split()
    role = words[0] if words else "assistant"  # the completion prompt ends with <|start|>assistant
    if role not in _ROLES:
        return "tool"
    if role != "assistant":
        return role
    channel = channel.split()[0] if channel.split() else "final"
    return channel if channel in ("analysis", "commentary", "final") else "final"
