"""A turn as view state, built from events, and its text/plain, text/markdown and text/html renderings.

The chat widget streams the same state; these renderings are what nbconvert, GitHub, terminal IPython
and a saved notebook show. Model text is never passed through as HTML: Markdown is rendered with raw
HTML disabled, math becomes MathML, code is highlighted by Pygments, and every fragment then passes the
allow-list sanitizer (sanitize.py) before it leaves the kernel.
"""
from __future__ import annotations

import functools
import html
import io
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..events import (
    Delta, Event, MessageEnd, MessageStart, Notice, ParseError, ToolCall, ToolEnd, ToolStart, ToolUpdate,
    TurnEnd, TurnStart, counted,
)
from .citations import card_html, is_browser_call, sources_html, sources_markdown, sources_text, style, with_chips, \
    with_numbers
from .sanitize import NO_TYPESETTING, PROSE, RICH_BOX, demote_headings, fenced, inert_apart, inert_markdown, \
    link_host_note, literal_lines, literal_markdown, mathml_html, one_html_block, past_nesting_limit, reveal_in_code, \
    reveal_hidden, sanitize, shallow, shown_output, visible, web_link, within_markup_budget, written_controls

if TYPE_CHECKING:
    from ..events import Reply

STATUS_LABEL = {"pending": "pending", "waiting": "waiting for approval", "running": "running", "done": "done",
                "error": "error", "timeout": "timed out", "skipped": "skipped", "interrupted": "interrupted"}
LABEL = {"final": "Answer", "commentary": "Commentary"}  # what the text forms call the model's prose
REASONING_NOTE = "Reasoning is the model's unfiltered chain of thought, not a checked answer."
FOLD_LINES, FOLD_CHARS = 20, 2000  # how much of a tool's output a saved card shows before folding the rest
NAME_CHARS = 200  # how much of a tool's name a saved card shows (a server can send a name of any length)


@dataclass
class Block:
    """One assistant message of the turn; its text is kept as parts so streaming stays linear."""

    channel: str | None
    recipient: str | None = None
    content_type: str | None = None
    parts: list[str] = field(default_factory=list)
    tokens: int = 0
    started: float = 0.0
    ended: float | None = None
    call: ToolCall | None = None

    @property
    def text(self) -> str:
        if len(self.parts) > 1:
            self.parts[:] = ["".join(self.parts)]
        return self.parts[0] if self.parts else ""

    @property
    def kind(self) -> str:
        """How a view shows it: reasoning, tool (a call the session runs: a message to a tool on a channel that is not
        one is left out, never run), commentary (a preamble) or final."""
        from ..harmony import is_call  # here, not at the top: `%load_ext` imports this module, not the format's

        if self.recipient != "assistant" and is_call(self.channel, self.recipient):
            return "tool"
        return {"analysis": "reasoning", "final": "final"}.get(self.channel or "", "commentary")

    @property
    def seconds(self) -> float:
        return max(0.0, (self.ended if self.ended is not None else time.perf_counter()) - self.started)


Item = Block | Notice | ParseError


class Transcript:
    """Everything one turn shows: prompt, messages, tool calls, notices, errors and stats."""

    def __init__(self, prompt: str = "", effort: str = "", model: str = "", approval: str = "auto") -> None:
        self.prompt, self.effort, self.model, self.approval = prompt, effort, model, approval
        self.items: list[Item] = []
        self.citations: list[Any] = []       # the answer's browser citations (widgets/citations.py)
        self.stats: dict[str, Any] = {}
        self.interrupted = False
        self.ended = False

    # ------------------------------------------------------------ building

    def apply(self, event: Event) -> int | None:
        """Fold one event into the state; returns the index of the item it created or changed."""
        now = time.perf_counter()
        if isinstance(event, TurnStart):
            self.__init__(event.prompt, event.effort, event.model, event.approval)  # type: ignore[misc]
            return None
        if isinstance(event, MessageStart):
            self.items.append(Block(event.channel, event.recipient, event.content_type, started=now))
            return len(self.items) - 1
        if isinstance(event, Delta):
            i = self._open_block()
            if i is None:  # a delta with no start: begin a block on its channel
                i = self.apply(MessageStart(event.channel, None))
            block = self.items[i]
            block.parts.append(event.text)
            block.tokens += 1
            return i
        if isinstance(event, MessageEnd):
            i = self._open_block()
            if i is not None:
                self.items[i].ended = now
            return i
        if isinstance(event, (ToolStart, ToolUpdate, ToolEnd)):
            return self._attach(event.call)
        if isinstance(event, (Notice, ParseError)):
            self.items.append(event)
            return len(self.items) - 1
        if isinstance(event, TurnEnd):
            for item in self.items:
                if isinstance(item, Block) and item.ended is None:
                    item.ended = now
            self.stats = reply_stats(event.reply)
            self.citations = event.reply.citations
            self.interrupted = event.reply.interrupted
            self.ended = True
        return None

    def _open_block(self) -> int | None:
        for i in range(len(self.items) - 1, -1, -1):
            item = self.items[i]
            if isinstance(item, Block):
                return i if item.ended is None else None
        return None

    def _attach(self, call: ToolCall) -> int:
        """Give the tool call to the message that made it (or a block of its own)."""
        for i in range(len(self.items) - 1, -1, -1):
            item = self.items[i]
            if isinstance(item, Block) and item.kind == "tool" and (item.call is call or (
                    item.call is None and item.recipient == call.recipient)):
                item.call = call
                return i
        now = time.perf_counter()
        self.items.append(Block(call.channel, call.recipient, call.content_type, [call.input], started=now,
                                ended=now, call=call))
        return len(self.items) - 1

    @classmethod
    def from_events(cls, events: list[Event]) -> "Transcript":
        transcript = cls()
        for event in events:
            transcript.apply(event)
        return transcript

    @classmethod
    def from_reply(cls, reply: "Reply") -> "Transcript":
        """Rebuild the view of a finished turn from its Reply (for history and `Reply`'s own repr)."""
        from openai_harmony import Role

        from .. import harmony

        transcript = cls(reply.prompt, reply.effort, reply.model)
        calls, notes = iter(reply.tool_calls), _notes_by_place(reply)
        for i, message in enumerate(reply.messages):
            transcript.items += notes.pop(i, [])
            if message.author.role != Role.ASSISTANT:
                continue
            text = harmony.text_of(message)   # counted in the model's tokens, as the live view counts them
            block = Block(message.channel, message.recipient, message.content_type, [text],
                          tokens=len(harmony.encode_text(text)))
            if block.kind == "tool":
                block.call = next(calls, None)
            transcript.items.append(block)
        transcript.items += [note for place in sorted(notes) for note in notes[place]]
        transcript.stats = reply_stats(reply)
        transcript.citations = reply.citations
        transcript.interrupted = reply.interrupted
        transcript.ended = True
        return transcript

    # ------------------------------------------------------------ renderings

    def _shown(self) -> Iterator[Item]:
        """The items the static forms show: a message with nothing written (the token limit cut it right after
        `<|message|>`) is left out, where it showed its label over nothing ("Answer:", an empty "Reasoning")."""
        return (item for item in self.items
                if not (isinstance(item, Block) and item.call is None and not item.text.strip()))

    def footer(self, context: bool = True) -> str:
        """One line of stats: tokens, tok/s, time to first token, effort, model (and context use,
        unless a view shows it as a meter)."""
        stats = self.stats or {"effort": self.effort, "model": self.model}
        return stats_line(stats if context else {**stats, "context_tokens": None})

    def to_text(self) -> str:
        """Plain text, for terminals and text/plain. The turn's own structure starts at a line's start and every
        line of text it shows is indented, so no answer, output or prompt can pass for a label ("You:")."""
        out = [f"You: {hang(self.prompt)}"]
        for item in self._shown():
            if isinstance(item, Notice):
                out.append(f"[{item.level}] {hang(reveal_hidden(item.text))}")  # it can name a tool, a page
            elif isinstance(item, ParseError):
                out.append(f"[not valid Harmony: {hang(item.reason)}]" + (f"\n{_indent(item.raw)}" if item.raw else ""))
            elif item.kind == "reasoning":
                out.append(f"Reasoning ({_reasoning_summary(item)}):\n{_indent(item.text)}")
            elif item.kind == "tool":
                code, edited = _ran_code(item)
                out.append(f"Tool call {tool_name(item.recipient)} [{_status(item)}{edited}]:\n{_indent(code)}")
                if item.call is not None and item.call.shown:
                    out.append(f"Output:\n{_indent(shown_output(item.call.shown))}")
            else:
                out.append(f"{LABEL[item.kind]}:\n{_indent(self._cited(item, item.text))}")
        if self.citations:
            out.append(sources_text(self.citations))
        out.append(f"-- {' '.join(self.footer().split())}")  # it names the model: a server's text
        from ..harmony import clean  # a lone surrogate written out: no output can carry one

        return clean("\n\n".join(out))

    def to_markdown(self) -> str:
        """Markdown (GitHub, nbconvert): reasoning in <details>, tool calls as code blocks, the prompt and the
        model's Markdown each in a quote under its label ("You:", "Answer:"), so that no line of an answer can
        pass for the prompt, a tool card or the sources (the model's own quotes are nested in its quote).

        Each piece of model Markdown is inert alone, but one can continue another (a list item that takes
        in the next piece's fence), so the whole is checked again; where it is not inert, every piece of
        model Markdown is shown as code. So it is where one piece reaches into the next (an unclosed fence
        that would show the tool card, sources or footer after it as its code)."""
        pieces = [written_controls(piece) for piece in self._markdown(inert_markdown)]  # checked as written out
        markdown = "\n\n".join(pieces) if inert_apart(pieces) else written_controls("\n\n".join(self._markdown(fenced)))
        from ..harmony import clean

        return clean(markdown)

    def _markdown(self, prose: Callable[[str], str]) -> list[str]:
        out = [f"> **You:**\n>\n{_quoted(fenced(self.prompt) if prose is fenced else literal_lines(self.prompt))}"]
        for item in self._shown():
            if isinstance(item, Notice):
                out.append(f"*{item.level}: {literal_markdown(reveal_hidden(item.text))}*")
            elif isinstance(item, ParseError):
                out.append(f"*Not valid Harmony ({literal_markdown(item.reason)})*"
                           + (f"\n\n{fenced(shown_output(item.raw))}" if item.raw else ""))
            elif item.kind == "reasoning":
                out.append(f"<details><summary>Reasoning ({_reasoning_summary(item)})</summary>\n\n"
                           f"{fenced(item.text, '')}\n\n</details>")
            elif item.kind == "tool":
                code, edited = _ran_code(item)
                label, whole = _whole_name(item)
                name = f"<details><summary>{label}</summary>\n\n{fenced(whole)}\n\n</details>\n\n" if whole else ""
                out.append(f"**Tool call {_code_span(tool_name(item.recipient))}** — {_status(item)}{edited}\n\n"
                           + name + fenced(code, code_language(item)))
                if item.call is not None and item.call.shown:
                    output = shown_output(item.call.shown)
                    head, rest = fold(output)
                    more = f"\n\n<details><summary>{more_label(output, rest)}</summary>\n\n{fenced(rest)}\n\n</details>"
                    out.append("Output:\n\n" + fenced(head) + (more if rest else ""))
            elif prose is fenced:  # code, in which no line is structure
                out.append(fenced(self._cited(item, item.text)))
            else:  # quoted under its label: no line of it can pass for the prompt, a tool card or the sources
                out.append(f"> **{LABEL[item.kind]}:**\n>\n{_quoted(self._cited(item, prose(item.text), markdown=True))}")
        if self.citations:
            out.append(sources_markdown(self.citations))
        out.append(f"<sub>{literal_markdown(self.footer())}</sub>")  # it names the model: a server's text
        return out

    def _cited(self, item: Block, text: str, *, markdown: bool = False) -> str:
        """`text` (the item's, or its Markdown) as the text and Markdown forms show it: an answer's citation markers
        written as the numbers of their Sources, as the HTML form's chips are numbered."""
        return with_numbers(text, self.citations, markdown=markdown) if item.kind == "final" else text

    def to_html(self) -> str:
        """Self-contained, sanitised HTML: prompt, foldable reasoning, tool cards, answer and stats.

        Tool cards are one-column tables and line breaks are <br>, so the turn keeps its shape where
        the <style> block is dropped (GitHub, sanitising front ends)."""
        head, rest = fold(self.prompt)
        more = f'<details><summary>{more_label(self.prompt, rest)}</summary>{_lines(rest)}</details>' if rest else ""
        out = [f'<div class="gx-prompt" dir="auto"><b>You:</b> {_lines(head)}{more}</div>']
        noted = False
        for item in self._shown():
            if isinstance(item, Notice):
                out.append(f'<div class="gx-notice gx-{item.level}">{html.escape(reveal_hidden(item.text))}</div>')
            elif isinstance(item, ParseError):
                raw = f'<pre class="gx-raw">{html.escape(shown_output(item.raw))}</pre>' if item.raw else ""
                out.append(f'<div class="gx-notice gx-error">Not valid Harmony ({html.escape(item.reason)}){raw}</div>')
            elif item.kind == "reasoning":
                note = "" if noted else f'<div class="gx-note">{REASONING_NOTE}</div>'
                noted = True
                out.append(f'<details class="gx-reasoning"><summary>Reasoning · {_reasoning_summary(item)}</summary>'
                           f'{note}<div class="gx-reasoning-text" dir="auto">{_lines(item.text)}</div></details>')
            elif item.kind == "tool":
                out.append(_tool_html(item))
            else:  # quoted under its label, as in the Markdown form: where the style is dropped (GitHub) no line of
                # the answer passes for the prompt or a tool card; the style hides the label and the quote's bar
                answer = _kept_by_sanitizers(markdown_html(item.text))
                answer = with_chips(answer, self.citations, saved=True) if item.kind == "final" else answer
                answer = _PROSE_TAG.sub(r'<\1 dir="auto">', answer)  # each reads in its first letter's direction
                out.append(f'<blockquote class="gx-{item.kind}"><b>{LABEL[item.kind]}:</b>{answer}</blockquote>')
        if self.citations:
            out.append(sources_html(self.citations))
        out.append(f'<div class="gx-footer">{html.escape(self.footer())}</div>')
        browse = style() if self.citations or any(isinstance(i, Block) and is_browser_call(i.call) for i in self.items) else ""
        page = sanitize(written_controls("".join(out)))
        return one_html_block(f'<div class="gx-fallback {NO_TYPESETTING}">{_STYLE_BOX.format(FALLBACK_STYLE + browse)}'
                              f'{page}</div>')

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        # text/plain reaches terminals (terminal IPython, `jupyter console`): control sequences written out
        return {"text/plain": visible(self.to_text()), "text/markdown": self.to_markdown(), "text/html": self.to_html()}


def _notes_by_place(reply: "Reply") -> dict[int, list[Notice]]:
    """The Reply's notes by how many of its messages came before each (`Reply.errors_after`), as the live view noted
    them: the turn's failure as an error, the others as warnings. A note with no place (a list changed by hand) is last."""
    places = reply.errors_after[:len(reply.errors)]
    places += [len(reply.messages)] * (len(reply.errors) - len(places))
    notes: dict[int, list[Notice]] = {}
    for place, error in zip(places, reply.errors):
        notes.setdefault(place, []).append(Notice(error, "error" if error == reply.failure_note else "warning"))
    return notes


# ---------------------------------------------------------------- shared helpers (also used by the widget)

def reply_stats(reply: "Reply") -> dict[str, Any]:
    """The footer numbers of a finished turn (live, or drawn again from its Reply: the same)."""
    usage = reply.usage
    return {"tokens": usage.completion_tokens, "tokens_per_s": usage.tokens_per_s, "ttft": usage.ttft,
            "seconds": usage.seconds, "effort": reply.effort, "model": reply.model,
            "interrupted": reply.interrupted, "context_tokens": usage.context_tokens,
            "context_window": usage.context_window, "intervention": reply.intervention}


def hang(text: str) -> str:
    """`text` with every line but its first indented: it follows a label, and no line of it may pass for one."""
    return "\n    ".join(text.splitlines())


def stats_line(stats: dict[str, Any]) -> str:
    """'123 tokens · 45.6 tok/s · first token after 0.21 s · 3.0 s in all · effort medium · model-name'
    from what is known."""
    parts = []
    if stats.get("tokens") is not None:
        parts.append(counted(stats["tokens"], "token"))
    if stats.get("tokens_per_s"):
        parts.append(f"{stats['tokens_per_s']:.1f} tok/s")
    if stats.get("ttft") is not None:
        parts.append(f"first token after {stats['ttft']:.2f} s")   # "TTFT" said nothing to a new user
    if stats.get("seconds"):
        parts.append(f"{stats['seconds']:.1f} s in all")
    if stats.get("effort"):
        parts.append(f"effort {stats['effort']}")
    if stats.get("model"):
        parts.append(str(stats["model"]))
    if stats.get("context_tokens") and stats.get("context_window"):
        parts.append(_context_use(stats["context_tokens"], stats["context_window"]))
    if stats.get("intervention"):   # an answer from changed routing must not read as the model's own
        parts.append(f"routing changed: {stats['intervention']}")
    if stats.get("interrupted"):
        parts.append("stopped")
    return " · ".join(parts)


def _context_use(used: int, window: int) -> str:
    """'context 1,234 of 4,096 tokens (30%)': the tokens the next question starts from (`Usage.context_tokens`), the
    percent rounded down, so 100 % is said only of a full context ("context 604 of 400 tokens (151%)" was drawn)."""
    if used >= window:
        return f"context full ({counted(window, 'token')})"
    return f"context {used:,} of {counted(window, 'token')} ({used * 100 // window}%)"


@functools.lru_cache(maxsize=32)
def markdown_html(text: str) -> str:
    """Model Markdown to sanitised HTML: raw HTML stays text, $math$ becomes MathML, images become links,
    only http(s)/mailto links survive, and code has its direction controls written out. Markdown nested past the
    parser's limit is shown as its text, which the parser would drop, and so are blocks past the markup budget;
    a line's quotes and list items past `MAX_DEPTH` are its text (`shallow`).
    Control characters but tab and line ends are written out first (`\\x00`), as in the saved text: the parser turned
    NUL into U+FFFD and the others were invisible. Kept by text: a turn's end renders its answer for the live view,
    its citation chips and its saved HTML (each a parse of ~100 µs a block), and a saved turn under way its earlier
    messages again at each tool call. A formula is followed by its TeX, which the styles hide (`_math`)."""
    text = shallow(written_controls(text))
    md = _markdown()
    tokens = md.parse(text, {})
    if past_nesting_limit(md, tokens):
        return sanitize(f"<div>{_lines(text)}</div>", lab=False)
    return sanitize(md.renderer.render(tokens, md.options, {}), lab=False)


def code_html(code: str, language: str = "python") -> str:
    """Syntax-highlighted code as escaped HTML spans (Pygments short classes, styled by the CSS); direction
    controls are written out, so the code reads in the order it runs. Code that Pygments cannot colour within
    HIGHLIGHT_SECONDS is shown plain: its lexers take quadratic time on some text (a saved turn whose call
    held 40,000 tab-and-newline lines took 63 s). Control characters are written out, as in the saved text (the
    sanitiser dropped NUL)."""
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import get_lexer_by_name

    code = written_controls(code)
    if not language:
        return reveal_in_code(html.escape(code))
    out = io.StringIO()
    try:
        HtmlFormatter(nowrap=True).format(_in_time(get_lexer_by_name(language).get_tokens(code),
                                                   time.monotonic() + HIGHLIGHT_SECONDS), out)
    except _TooSlow:
        return reveal_in_code(html.escape(code))
    return reveal_in_code(sanitize(out.getvalue().removesuffix("\n")))


HIGHLIGHT_SECONDS = 1.0


class _TooSlow(Exception):
    pass


def _in_time(tokens: Iterator[Any], deadline: float) -> Iterator[Any]:
    """`tokens`, until `deadline` (a `time.monotonic()`) passes: then _TooSlow."""
    for token in tokens:
        if time.monotonic() > deadline:
            raise _TooSlow
        yield token


_FENCE_LINE = re.compile(r"(`{3,}|~{3,})(.*)")


class MarkdownBlocks:
    """Streamed Markdown cut into the blocks that later text cannot change: up to the last blank line outside a fence or
    $$. A fence closes only at a run of its own character at least as long, with nothing after it (a ```` block showing
    ``` lines was cut at its first inner one: the rest streamed as prose, its `# comment` a heading). Each line is read
    once: a long open block (a table, a fence) read again at every cut took time quadratic in its length."""

    def __init__(self) -> None:
        self._parts: list[str] = []   # text added since the last cut
        self._text = ""                # the text not taken yet
        self._read = 0                 # how much of it has been read: whole lines
        self._end = 0                  # where its stable blocks end
        self._fence, self._math, self._stopped = "", False, False

    def add(self, text: str) -> None:
        self._parts.append(text)

    def take(self) -> str:
        """The stable blocks not taken before ("" for none); the rest waits for more text. Reading stops for good at a
        line break other than LF or CRLF (a lone CR, U+2028 ...), where the blocks are not told apart."""
        self._text += "".join(self._parts)
        self._parts.clear()
        while not self._stopped and (line_end := self._text.find("\n", self._read) + 1):
            line = self._text[self._read:line_end]
            if len(line.splitlines()) > 1:   # another line break inside it
                self._stopped = True
                break
            if self._ends_blocks(line.strip()):
                self._end = line_end
            self._read = line_end
        done, self._text = self._text[:self._end], self._text[self._end:]
        self._read, self._end = self._read - self._end, 0
        return done

    def _ends_blocks(self, stripped: str) -> bool:
        """Follow one whole line (stripped) into or out of a fence or $$; True for a blank line that ends the blocks."""
        run = _FENCE_LINE.match(stripped)
        if self._fence:
            closes = run and run.group(1)[0] == self._fence[0] and len(run.group(1)) >= len(self._fence) \
                and not run.group(2).strip()
            self._fence = "" if closes else self._fence
        elif run and not self._math:
            self._fence = run.group(1)
        elif stripped.startswith("$$") and not (len(stripped) > 2 and stripped.endswith("$$")):
            self._math = not self._math
        return not stripped and not self._fence and not self._math


@functools.cache
def _markdown() -> Any:
    from markdown_it import MarkdownIt
    from mdit_py_plugins.dollarmath import dollarmath_plugin

    md = MarkdownIt("commonmark", {"html": False, "breaks": False}).enable(["table", "strikethrough"])
    md.use(dollarmath_plugin, allow_labels=False, allow_digits=False, double_inline=True, renderer=_math)
    # a link the sanitizer would leave without its address (`[docs](//host/a)`, `(./notes.md)`) is shown as written, as
    # a `javascript:` one is: it was a word in a link's colour that opened nothing, its address lost
    md.validateLink = web_link
    md.add_render_rule("image", _image_as_link)
    md.core.ruler.before("inline", "markup_budget", _plain_past_budget)
    md.core.ruler.after("inline", "math_budget", _source_past_math_budget)
    md.add_render_rule("math_source", _formula_as_source)
    md.core.ruler.push("demote_headings", demote_headings)
    md.core.ruler.push("reveal_in_code", _reveal_code)
    md.core.ruler.push("link_hosts", _say_link_hosts)
    return md


def _plain_past_budget(state: Any) -> None:
    """A markdown-it core rule (before the inline parse): blocks past the markup budget (`within_markup_budget`) shown
    as their plain text, so that any answer renders in a bounded time per character."""
    inlines = [token for token in state.tokens if token.type == "inline"]
    for token, within in zip(inlines, within_markup_budget(token.content for token in inlines)):
        if not within:
            token.type = "text"


# latex2mathml takes about 15 µs for each character of TeX, 30 times what Markdown prose takes (an answer of one 60,000
# character formula took 0.9 s to render, and a turn renders it twice): past this many, formulas are shown as their source.
MATH_BUDGET = 10_000


def _source_past_math_budget(state: Any) -> None:
    """A markdown-it core rule (after the inline parse): the formulas past MATH_BUDGET characters of TeX shown as their
    source, as a formula that is not valid LaTeX is, so that any answer renders in a bounded time per character."""
    spent = 0
    for token in (child for token in state.tokens for child in [token, *(token.children or [])]):
        if token.type.startswith("math_"):
            spent += len(token.content)
            token.type = token.type if spent <= MATH_BUDGET else "math_source"


def _formula_as_source(self: Any, tokens: list[Any], idx: int, options: Any, env: Any) -> str:
    """A formula past MATH_BUDGET as its source; a display formula in a block of its own, as it is drawn."""
    source = _math_source(tokens[idx].content.strip())
    return f"<div>{source}</div>\n" if tokens[idx].block else source


def _reveal_code(state: Any) -> None:
    """Direction controls in the answer's code written out, as in a tool call's: code is what a reader copies and
    runs, and must read in the order it runs ("Trojan Source"); prose keeps them (right-to-left text)."""
    for token in state.tokens:
        if token.type in ("fence", "code_block"):
            token.content = reveal_in_code(token.content)
        for child in token.children or []:
            if child.type == "code_inline":
                child.content = reveal_in_code(child.content)


def _say_link_hosts(state: Any) -> None:
    """A markdown-it core rule: a link whose text names another host than the one it opens says which it opens, at the
    end of its text (`link_host_note`), in the live view and the saved HTML alike."""
    from markdown_it.token import Token

    for token in state.tokens:
        children, opened = token.children or [], []
        for i, child in reversed(list(enumerate(children))):   # from the end: a note put in moves nothing before it
            if child.type == "link_close":
                opened.append(i)
            elif child.type == "link_open" and opened:
                close = opened.pop()
                text = "".join(c.content for c in children[i + 1:close] if c.type in ("text", "code_inline"))
                note = link_host_note(text, str(child.attrGet("href") or ""))
                if note:
                    children.insert(close, Token("text", "", 0, content=note))


def _image_as_link(self: Any, tokens: list[Any], idx: int, options: Any, env: Any) -> str:
    """A model's image is shown as a link: loading it would send a request (and whatever its URL
    carries) without the user's click."""
    token = tokens[idx]
    src = token.attrGet("src") or ""
    alt = html.escape((token.content or "image") + "]" + link_host_note(token.content, src))
    return f'<a href="{html.escape(src)}">[image: {alt}</a>'


def _math(latex: str, options: dict[str, Any]) -> str:
    """A formula as MathML, then its TeX in brackets, which the saved form's and the live view's styles hide: an
    untrusted notebook's JupyterLab drops MathML but keeps its text, so a saved `$\\sum_{i=0}^{9} i^2$` read "∑i=09i2";
    now its TeX follows. A formula that is not valid LaTeX (or no converter) is shown as its source alone."""
    display = options.get("display_mode", False)
    try:
        from latex2mathml.converter import convert_to_element

        math = mathml_html(convert_to_element(latex, display="block" if display else "inline"))
    except Exception:
        return _math_source(latex)
    return f'{math}<span class="gx-tex"> ({_math_source(latex)})</span>'


def _math_source(latex: str) -> str:
    """A formula as its TeX source, as code is shown (direction controls written out)."""
    return f'<code class="gx-math">{reveal_in_code(html.escape(latex))}</code>'


def code_language(block: Block) -> str:
    """The Pygments language of a tool call's input: json for JSON arguments, python for python calls."""
    if block.content_type and "json" in block.content_type:
        return "json"
    return "python" if (block.recipient or "").startswith("python") else ""


def _status(block: Block) -> str:
    """A tool card's status; a call that ended with no run is one the turn cut off half-written, which never runs."""
    if block.call is not None:
        return STATUS_LABEL.get(block.call.status, block.call.status)
    return "being written" if block.ended is None else "cut off, not run"


def _reasoning_summary(block: Block) -> str:
    if block.ended is None or not block.started:
        return counted(block.tokens, "token")
    took = "under 0.1 s" if block.seconds < 0.05 else f"{block.seconds:.1f} s"   # "0.0 s" read as "did not think"
    return f"thought for {took} · {counted(block.tokens, 'token')}"


def _lines(text: str) -> str:
    """Escaped text, each line after its first a block of its own (a lone CR ends a line too, as in the saved text; an
    empty one holds a no-break space, to keep its height): its line breaks survive without CSS, and with sanitizers
    that escape <br> (nbconvert's `sanitize_html` showed each as the text `<br>`)."""
    first, *rest = re.split(r"\r\n?|\n", text)
    return html.escape(first) + "".join(f"<div>{html.escape(line) or '&nbsp;'}</div>" for line in rest)


_PARAGRAPH = re.compile(r"<(/?)p>")
_HEADING = re.compile(r"<(/?)h[1-6]>")
_TABLE_HEAD = re.compile(r"<(/?)th\b([^>]*)>|</?t(?:head|body)>")
# a formula as latex2mathml writes it (its `"` is markup: in an attribute's value the sanitizer writes `&quot;`)
_MATHML = re.compile(r'<math xmlns="http://www.w3.org/1998/Math/MathML".*?</math>', re.DOTALL)


def _kept_by_sanitizers(answer: str) -> str:
    """An answer's sanitized HTML (`markdown_html`) in tags that nbconvert's `sanitize_html` keeps: paragraphs and
    headings as <div>s (a heading in bold), a rule as an empty one, a line break as a line's end, a table's head cells
    as its cells in bold (no <thead>, <tbody>, <th>); that sanitizer showed each <p>, <h4>, <hr>, <br> and a table's
    head as its text. A formula's MathML sits in a box that page hides (`RICH_BOX`): it showed each formula as its
    tags, and its TeX (`_math`) reads in its place. The style draws them as before; each reads in its first letter's
    direction, as the answer's other prose (`_PROSE_TAG`)."""
    answer = _MATHML.sub(lambda m: f'<span class="{RICH_BOX}">{m.group()}</span>', answer)
    answer = _TABLE_HEAD.sub(_as_cell, answer)
    answer = _HEADING.sub(lambda m: "</b></div>" if m.group(1) else '<div class="gx-h" dir="auto"><b>', answer)
    answer = _PARAGRAPH.sub(lambda m: "</div>" if m.group(1) else '<div class="gx-p" dir="auto">', answer)
    return answer.replace("<hr>", '<div class="gx-hr"></div>').replace("<br>", "<div></div>")


def _as_cell(match: re.Match[str]) -> str:
    """A table's head cell's tag as a cell's in bold; <thead> and <tbody> left out (a row is the table's own)."""
    if match.group(2) is None:
        return ""
    return "</b></td>" if match.group(1) else f"<td{match.group(2)}><b>"


def _code_span(text: str) -> str:
    """`text` as a Markdown code span on one line (a blank line would end it and let the rest be Markdown)
    that no backtick inside can end early."""
    ticks = "`" * (max(map(len, re.findall("`+", text)), default=0) + 1)  # one pass (`in` checks are quadratic)
    return f"{ticks} {' '.join(text.split())} {ticks}"


def tool_name(recipient: str | None) -> str:
    """A tool call's name as its saved card and the text view show it: cut after NAME_CHARS characters, then hidden
    characters written out (see sanitize.reveal_hidden): the time taken is the same for a name of any length."""
    name = recipient or "tool"
    if len(name) <= NAME_CHARS:
        return reveal_hidden(name)
    return f"{reveal_hidden(name[:NAME_CHARS])}… ({len(name) - NAME_CHARS:,} more characters)"


def _whole_name(block: Block) -> tuple[str, str]:
    """A tool call's name cut in its card's head (`tool_name`): the summary and text (written out as there) of the fold
    under the head that holds it whole in the saved forms; ("", "") for a name shown whole."""
    name = block.recipient or ""
    if len(name) <= NAME_CHARS:
        return "", ""
    return f"the tool's whole name ({len(name):,} characters)", reveal_hidden(name)


def _ran_code(block: Block) -> tuple[str, str]:
    """The code a tool card shows: what ran, marked when the user edited the model's code before Run; direction
    controls written out (as in tool outputs), so it reads in the order it runs in every rendering."""
    if block.call is not None and block.call.input != block.text:
        return reveal_in_code(block.call.input), " · edited before running"
    return reveal_in_code(block.text), ""


# Classes on a tool card's code and output that left-align them where a sanitizer drops both our style and the cells'
# inline one (nbconvert's `sanitize_html` keeps classes only): JupyterLab's `.jp-RenderedText` (nbconvert's lab
# template), Bootstrap's `.text-left` (its classic one). Its cells are right-aligned there, and so was the code.
_LEFT = "jp-RenderedText text-left"


def _tool_html(block: Block) -> str:
    """A tool card as a one-column table: head (tool · status), the code that ran, its output."""
    call = block.call
    code, edited = _ran_code(block)
    seconds = f" · {call.seconds:.2f} s" if call is not None and call.seconds >= 0.005 else ""
    left = 'style="text-align:left"'  # the one inline style sanitisers keep; notebook CSS right-aligns cells
    label, whole = _whole_name(block)
    name = f'<tr><td {left}><details><summary>{label}</summary>{html.escape(whole)}</details></td></tr>'
    code_row = f'<tr><td {left}><pre class="gx-code {_LEFT}">{code_html(code, code_language(block))}</pre></td></tr>'
    rows = [name, code_row] if whole else [code_row]
    if call is not None and call.shown:  # a browser call shows its card: results or page window (citations.py)
        output = card_html(call) or _output_html(shown_output(call.shown))
        rows.append(f'<tr><td {left}>{output}</td></tr>')
    head = f'{html.escape(tool_name(block.recipient))} · {_status(block)}{seconds}{edited}'
    # what a screen reader calls the card (the tool's name, a server's text, is in its head). The head is a row's cell,
    # not a <thead>'s <th>: nbconvert's `sanitize_html` keeps only table, tr and td, and showed the head as raw tags.
    return (f'<table class="gx-tool" aria-label="Tool call, {_status(block)}">'
            f'<tr><td class="gx-tool-head" {left}><div class="{_LEFT}"><b>{head}</b></div></td></tr>'
            f'{"".join(rows)}</table>')


def fold(text: str) -> tuple[str, str]:
    """A tool's output or a prompt split into what a card shows (FOLD_LINES lines, FOLD_CHARS characters at most)
    and the rest, which folds into <details> so a long one does not bury the answer (rest "" when short)."""
    lines = text.splitlines(keepends=True)
    if len(lines) <= FOLD_LINES + 4 and len(text) <= FOLD_CHARS + 200:  # folding a few lines would save nothing
        return text, ""
    cut = min(len("".join(lines[:FOLD_LINES])), FOLD_CHARS)
    cut = text.rfind("\n", 0, cut) + 1 or cut  # at a line end where there is one
    return text[:cut].rstrip("\n"), text[cut:]


def more_label(text: str, rest: str) -> str:
    """The summary of `text`'s folded `rest` (see `fold`): how much more there is. A line longer than a card is cut
    inside: its end is not another line."""
    after = rest.rstrip("\n").count("\n")  # the lines the rest holds after its first
    size, more = f"{len(rest):,} characters", f"{len(rest):,} more characters"
    cut = len(text) - len(rest)
    if cut and text[cut - 1] != "\n":
        return f"the rest of the line and {after} more line{'s' * (after > 1)} ({size})" if after else more
    return f"{after + 1} more lines ({size})" if after else more


def _output_html(output: str) -> str:
    head, rest = fold(output)
    pre = f'<pre class="gx-output {_LEFT}">'
    folded = f'<details><summary>{more_label(output, rest)}</summary>{pre}{html.escape(rest)}</pre></details>' if rest else ""
    return f'{pre}{html.escape(head)}</pre>{folded}'


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def _quoted(markdown: str) -> str:
    """`markdown` as a block quote: each line quoted (a lone CR ends one too), so its fences and text stay inside."""
    return "> " + re.sub(r"\r\n?|\n", "\n> ", markdown)


# The last five rules are more specific than JupyterLab's and nbconvert's rendered-HTML rules (`.jp-ThemedContainer
# .jp-RenderedHTMLCommon pre` paints every pre and code in the page colour; `tbody tr:nth-child(even)` stripes and
# `tbody tr:hover` tints table rows), which would otherwise put a tool card's output in a box of its own, tint the
# card blue under the pointer, and leave a code block in the answer without a background. The prompt's, reasoning's
# and answer's paragraphs each read in the direction of their first letter (unicode-bidi: plaintext): Arabic and
# Hebrew right to left, as in the live view (chat.css). The style hides the "You:" and "Answer:" labels and says them
# again out of sight (::before), for a screen reader: without them the prompt and the answer read as one text.
# Where no JupyterLab theme sets the colours (VS Code, a bare page), --gx-grey and --gx-link are mixed from the text's
# own colour, so they read at 4.5:1 on a dark page as on a light one (a fixed grey read at 2.6:1 on a dark page).
# A formula wider than the answer scrolls sideways, as code does (none breaks across lines: one ran past the page's edge).
# An answer's table has no <thead> (`_kept_by_sanitizers`): its first row is drawn as a head row and the rows after it
# striped as JupyterLab stripes a table's body.
_PROSE_TAG = re.compile(rf"<({'|'.join(PROSE)})>")  # as the sanitiser writes them: no attributes
# The saved turn's <style> blocks, in a box nbconvert's pages hide (JupyterLab's `.lm-Widget.lm-mod-hidden` in the lab
# template, Bootstrap's `.hidden` in the classic one) where its sanitizer drops `hidden` and shows the CSS as text.
_STYLE_BOX = '<div class="lm-Widget lm-mod-hidden hidden" hidden>{}</div>'
FALLBACK_STYLE = """<style>
.gx-fallback{font-family:var(--jp-ui-font-family,system-ui,sans-serif);font-size:var(--jp-content-font-size1,14px);
 color:var(--jp-content-font-color1,inherit);max-width:52em;line-height:1.5;overflow-wrap:anywhere;
 --gx-grey:#57606a;--gx-link:#0d47a1}
@supports (color:color-mix(in srgb,red 50%,blue)){.gx-fallback{--gx-grey:color-mix(in srgb,currentColor 70%,#808080);
 --gx-link:color-mix(in srgb,#1976d2 50%,currentColor)}}
.gx-fallback .gx-prompt{background:var(--jp-layout-color2,rgba(127,127,127,.12));border-radius:12px;padding:6px 12px;
 margin:4px 0 8px auto;width:fit-content;max-width:80%}
div.gx-fallback blockquote.gx-final,div.gx-fallback blockquote.gx-commentary{margin:0;padding:0;border:0}
.gx-fallback .gx-prompt > b:first-child,.gx-fallback blockquote.gx-final > b:first-child,
 .gx-fallback blockquote.gx-commentary > b:first-child{display:none}
.gx-fallback .gx-prompt::before,.gx-fallback blockquote.gx-final::before,.gx-fallback blockquote.gx-commentary::before{
 position:absolute;width:1px;height:1px;overflow:hidden;clip-path:inset(50%);white-space:nowrap}
.gx-fallback .gx-prompt::before{content:"You:"}
.gx-fallback blockquote.gx-final::before{content:"Answer:"}
.gx-fallback blockquote.gx-commentary::before{content:"Commentary:"}
.gx-fallback details{border-left:3px solid var(--jp-border-color2,#ccc);padding:2px 0 2px 10px;margin:6px 0;
 color:var(--jp-content-font-color2,var(--gx-grey))}
.gx-fallback summary{cursor:pointer}
.gx-fallback .gx-prompt,.gx-fallback .gx-reasoning-text,.gx-fallback :is(.gx-prompt,.gx-reasoning-text) div,.gx-fallback .gx-notice,
 .gx-fallback blockquote :is(.gx-p,.gx-h,li,td,th){unicode-bidi:plaintext;text-align:start}
.gx-fallback .gx-p{margin:0 0 1em}
.gx-fallback .gx-h{margin:1em 0 .5em}
.gx-fallback .gx-hr{border-top:1px solid var(--jp-border-color2,#ccc);margin:1em 0}
.gx-fallback .gx-note,.gx-fallback .gx-footer{font-size:85%;color:var(--jp-content-font-color2,var(--gx-grey))}
.gx-fallback .gx-notice{font-size:90%;padding:4px 10px;margin:6px 0;border-radius:6px;
 background:var(--jp-layout-color2,rgba(127,127,127,.12))}
.gx-fallback .gx-warning{border-left:3px solid var(--jp-warn-color1,#ed6c02)}
.gx-fallback .gx-error{border-left:3px solid var(--jp-error-color1,#d32f2f)}
.gx-fallback table.gx-tool{border:1px solid var(--jp-border-color2,#ccc);border-collapse:separate;border-spacing:0;
 border-radius:8px;margin:8px 0;width:100%;overflow:hidden}
.gx-fallback table.gx-tool td{border:0;padding:6px 10px;text-align:left}
.gx-fallback table.gx-tool td.gx-tool-head{background:var(--jp-layout-color2,rgba(127,127,127,.12));font-size:85%}
.gx-fallback table.gx-tool td.gx-tool-head b{font-weight:600}
.gx-fallback table.gx-tool td.gx-tool-head div{font-family:inherit;line-height:inherit;padding:0}
.gx-fallback span.gx-rich.lm-mod-hidden.hidden{display:contents !important}
.gx-fallback blockquote tr:first-child > td{border-bottom:var(--jp-border-width,1px) solid var(--jp-border-color1,#ccc)}
.gx-fallback blockquote tbody tr:nth-child(even){background:var(--jp-layout-color0,none)}
.gx-fallback blockquote tbody tr:nth-child(odd):not(:first-child){background:var(--jp-rendermime-table-row-background,none)}
.gx-fallback table.gx-tool tr:not(:first-child) + tr td{border-top:1px dashed var(--jp-border-color2,#ccc)}
.gx-fallback math{max-width:100%;overflow-x:auto}
.gx-fallback .gx-tex{display:none}
.gx-fallback pre{margin:0;padding:0;background:none;overflow-x:auto;white-space:pre-wrap;word-break:normal;
 overflow-wrap:anywhere;font-family:var(--jp-code-font-family,monospace);font-size:var(--jp-code-font-size,13px)}
.gx-fallback .gx-output{color:var(--jp-content-font-color2,var(--gx-grey))}
.gx-fallback table.gx-tool tbody tr{background:none}
.gx-fallback table.gx-tool pre,.gx-fallback div.gx-notice pre{background:none;color:inherit;
 font-size:var(--jp-code-font-size,13px)}
.gx-fallback table.gx-tool pre.gx-output{color:var(--jp-content-font-color2,var(--gx-grey))}
.gx-fallback blockquote.gx-final pre,.gx-fallback blockquote.gx-commentary pre{margin:8px 0;padding:6px 10px;
 border-radius:6px;background:var(--jp-layout-color2,rgba(127,127,127,.12))}
.gx-fallback blockquote.gx-final pre code,.gx-fallback blockquote.gx-commentary pre code{background:none;padding:0}
</style>"""
