"""How the browser shows: cards for browser calls, numbered citation chips in answers, a sources list.

A browser call's card shows what it found (the query and the numbered results with titles and
sources; the opened window with its line numbers; the find matches) from the call's `data`. In an
answer each `【cursor†Lstart-Lend】` becomes a small numbered chip whose popup (CSS, from its
`data-cite` text) shows the source and the cited lines; an http(s) source opens on click. Saved
notebooks and the text view list the sources with the cited lines under the answer.

Everything from a page or the model is escaped text inside markup built here, and every fragment
passes the allow-list sanitizer; links are http(s) only and open without an opener.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import html
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import idna

from ..events import Citation, ToolCall
from . import asset
from .sanitize import HIDDEN, RICH_BOX, literal_markdown, outside_code, reveal_hidden, reveal_host, \
    reveal_mixed_scripts, reveal_url, sanitize, short_address, shown_output

# What a chip's popup shows at most: the whole popup fits the smallest box it is drawn in (JupyterLab's notebook
# panel in a 320 x 568 window: 226 x 431 px); the Sources list has the whole text.
POPUP_CHARS = 400  # of the cited text
POPUP_LINES = 8  # of the cited text
NAME_CHARS = 100  # of a title or address in a chip's popup and name
_TAG = re.compile(r"(<[^>]*>)")
# page.py's CITATION_PATTERN without its groups, not imported: a chat view does not load the browser package
_MARKER = re.compile(r"【[0-9]+†[^†】]+(?:†[^†】]+)?】")
# A model's link in Markdown (inline, or an autolink), where the HTML form puts no chip: its text and address as
# written. Brackets in its text and parentheses in its address are matched one level deep: a scan from each `[` or `](`
# to the line's end (`[^\]\n]*`) took quadratic time where none closed (60,000 `[` took 20 s per saved form).
_LINK = re.compile(r"\[(?:[^\[\]\n]|\[[^\[\]\n]*\])*\]\((?:[^()\n]|\([^()\n]*\))*\)"
                   r"|<[A-Za-z][A-Za-z0-9+.-]{1,31}:[^\s<>]*>")
_KINDS = ("search", "page", "find")
_BLOCK_START = re.compile(r"^(\d+(?=\.)|(?=[-=]))")  # before a `-` or `=` that starts a line, or a number's `.`
# Left out of a name a chip's label says: control and direction characters (and zero-width ones), which a screen reader
# spells out or which turn the words around; double quotes, which could close its quote early ('Docs”, line 1. “').
_UNSPOKEN = re.compile(HIDDEN.pattern[:-1] + "\x00-\x1f\x7f-\x9f]")
_QUOTES = re.compile('["\u201c\u201d\u201e\u201f\u00ab\u00bb]')


@functools.cache
def style() -> str:
    """The CSS of chips, sources and cards (static/citations.css) as a <style> block with no blank line (a saved turn's
    HTML is one block to Markdown: `sanitize.one_html_block`)."""
    return "<style>{}</style>".format("\n".join(filter(str.strip, asset("citations.css").read_text().splitlines())))


def _link(url: str) -> str | None:
    """`url` when it can be a link: http(s), and nothing invisible in it that makes it read as another; a host
    written in other letters is given in its ASCII form (`xn--pypal-4ve.com` for `pаypal.com`, the same address),
    which no Latin name can pass for, where the link's address is shown (a status bar, a Markdown source). A host
    IDNA 2008 refuses (the browser's fetches read hosts so) gets no link: Python's IDNA 2003 made
    `google.com\u2215signin\u2215v2.evil.example` a name under evil.example."""
    if not url.lower().startswith(("http://", "https://")) or HIDDEN.search(url):
        return None
    parts = urlsplit(url)
    if parts.netloc.isascii():
        return url
    user, at, place = parts.netloc.rpartition("@")
    host, colon, port = place.partition(":")   # a host in other letters is no [IPv6] address
    try:
        host = idna.encode(host, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):  # a host no DNS name can be: no link
        return None
    return urlunsplit(parts._replace(netloc=user + at + host + colon + port))


def _a(url: str, text: str) -> str:
    """`text` (a title or URL, shown with its hidden characters written out) as a link when `url` is http(s),
    else as bold text."""
    href, shown = _link(url), _name(text)
    return f'<a href="{html.escape(href)}">{shown}</a>' if href else f"<b>{shown}</b>"


def _name(text: str) -> str:
    """A title, URL, source, query or pattern as escaped HTML: direction controls, zero-width characters and
    lookalike letters written out, so a page cannot make its name or address read as another's."""
    return html.escape(reveal_mixed_scripts(reveal_url(reveal_hidden(text))))


def _text(text: str) -> str:
    """A page's lines as escaped HTML, shown as tool output is (terminal sequences left out, direction controls
    written out: they could reorder what is shown)."""
    return html.escape(shown_output(text))


def _shown(c: Citation) -> Citation:
    """`c` as text shows it: its title and URL each on one line with hidden characters written out (a line break in
    a title printed a line of its own, which could pass for "Answer:"), its lines as tool output is shown (a
    document's terminal sequences must not reach a terminal through the sources' text/plain)."""
    return dataclasses.replace(c, url=_one_line(c.url), title=_one_line(c.title), text=shown_output(c.text))


def _one_line(name: str) -> str:
    """A title or URL on one line (every run of white space, line breaks included, one space), hidden characters and
    lookalike letters written out (`https://p\\u0430ypal.com`: the link goes where it says, its text said another)."""
    return " ".join(reveal_mixed_scripts(reveal_url(reveal_hidden(name))).split())


def _lines_span(start: int, end: int) -> str:
    return f"L{start}" if start == end else f"L{start}–L{end}"


def _changed(c: Citation) -> str:
    """What a source says after its lines when its file changed since it was read (the lines are quoted as they were
    then: a reader checking them against the file must know), on one line; else ""."""
    return f" ({_one_line(c.changed)} since it was read)" if c.changed else ""


# ---------------------------------------------------------------- citations

def numbered(citations: Sequence[Citation]) -> list[tuple[int, Citation]]:
    """Each distinct citation once with its number (1, 2, ... in order of first appearance)."""
    seen: dict[tuple[int, int, int], int] = {}
    out = []
    for c in citations:
        key = (c.cursor, c.start, c.end)
        if key not in seen:
            seen[key] = len(seen) + 1
            out.append((seen[key], c))
    return out


def _missing(c: Citation) -> str:
    # A page is named by its cursor, as the model's calls name it (`"cursor": 3`); "page [3]" said nothing to a reader
    if not c.url and not c.title:
        return f"The model cites cursor {c.cursor}, a page it was never shown."
    where = _lines_span(c.start, c.end)
    return f"The page at cursor {c.cursor} ({c.title or c.url}) showed the model no text at {where}."


def popup_text(number: int, c: Citation) -> str:
    """What a chip shows on hover: the source, the cited lines, where it is (each part cut to its length and the
    lines to POPUP_LINES, so that the popup fits in a window: a page's title or address can be of any length)."""
    c = _chipped(c)
    if not c.text.strip():
        return f"[{number}] {_missing(c)}"
    where = f"\n{c.url}" if c.url else ""
    lines = c.text.split("\n")
    quoted = "\n".join(lines[:POPUP_LINES]) + "\n…" if len(lines) > POPUP_LINES else c.text
    return f"[{number}] {c.title or c.url} · {_lines_span(c.start, c.end)}{_changed(c)}\n{_cut(quoted, POPUP_CHARS)}{where}"


def chip_label(number: int, c: Citation) -> str:
    """What a screen reader says of a chip (which otherwise reads as a bare number): what it cites and where, the
    page's title said as one (a page titled "Source 2: official docs" was heard as a second source)."""
    title, url = _spoken(c.title), _spoken(short_address(c.url, NAME_CHARS))
    if not c.text.strip():
        return f"Source {number}: {_missing(dataclasses.replace(c, title=title, url=url))}"
    site = f" from {_spoken(_site(c.url))}" if _site(c.url) else ""  # a title says what the page claims to be
    where = f"titled {title}{site}, " if title else f"at {url}, " if url else ""
    lines = f"line {c.start}" if c.start == c.end else f"lines {c.start} to {c.end}"
    return f"Source {number}, {where}{lines}{_changed(c)}"


def _site(url: str) -> str:
    """The host of an http(s) address as shown (`reveal_host`), its end kept when long: whose page it is."""
    try:
        host = urlsplit(url).hostname if url.lower().startswith(("http://", "https://")) else None
    except ValueError:
        return ""
    host = reveal_host(host or "")
    return host if len(host) <= _SITE_CHARS else "…" + host[-(_SITE_CHARS - 1):]


_SITE_CHARS = 60


def _spoken(name: str) -> str:
    """A page's title or address as a chip's label says it: on one line, without what cannot be said, cut to
    NAME_CHARS and in quotes ("" for none)."""
    name = _QUOTES.sub("'", " ".join(filter(None, (_UNSPOKEN.sub("", word) for word in name.split()))))
    return f"\u201c{_cut(name, NAME_CHARS)}\u201d" if name else ""


def _chipped(c: Citation) -> Citation:
    """`c` as its chip shows it: as text shows it, its title cut to NAME_CHARS and its address too, keeping its
    host's end (a long host cut from the start hid whose page it was)."""
    c = _shown(c)
    return dataclasses.replace(c, title=_cut(c.title, NAME_CHARS), url=short_address(c.url, NAME_CHARS))


def _cut(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[:chars - 1] + "…"


def chip_html(number: int, c: Citation, popover: str = "") -> str:
    """A numbered chip: hover or keyboard focus shows the cited lines (data-cite, drawn by CSS), click opens an
    http(s) source; a chip with no link is still reached by Tab (tabindex) and read as a reference to a note (role).
    With a `popover` id (the saved form, which has no script) the chip is a button that opens and closes its popup
    (a popover after it, whose state the CSS draws the popup by): Escape or a click elsewhere closes it. The popover
    holds the popup's text, which our style hides: where a front end drops the style and the popover (an untrusted
    notebook, GitHub, nbconvert's sanitizer), the answer says what the chip cites after it, where it was a bare button.
    The saved chip sits in `RICH_BOX`: nbconvert's sanitizer showed it as its tags, its cited lines in data-cite."""
    missing = " gx-cite-missing" if not c.text.strip() else ""
    href = _link(c.url)
    label = f'aria-label="{html.escape(chip_label(number, c))}"'
    shown = html.escape(popup_text(number, c))
    if popover:
        return (f'<span class="{RICH_BOX}"><sup class="gx-cite{missing}" data-cite="{shown}"><button type="button" '
                f'popovertarget="{popover}" {label}>{number}</button></sup></span>'
                f'<span class="gx-cite-pop" id="{popover}" popover> ({shown})</span>')
    target = f'href="{html.escape(href)}"' if href else 'tabindex="0" role="doc-noteref"'
    return f'<sup class="gx-cite{missing}" data-cite="{shown}"><a {target} {label}>{number}</a></sup>'


def _by_marker(citations: Sequence[Citation]) -> dict[str, tuple[int, Citation]]:
    """Each marker written in the answer with its source's number and citation, as the Sources list numbers them."""
    first = {(c.cursor, c.start, c.end): (number, c) for number, c in numbered(citations)}
    return {c.marker: first[(c.cursor, c.start, c.end)] for c in citations}


def with_numbers(text: str, citations: Sequence[Citation], *, markdown: bool = False) -> str:
    """The answer's text with each citation marker written as its source's number (`[2]`), as the text and Markdown
    Sources number it (the marker's own number is the page's cursor: `【1†L5】` cited Source [2]); not in code nor in
    a link, where the HTML form shows it as written (a link's address kept). `markdown`: `text` is Markdown already
    made inert, and the brackets are escaped (`【1†L4】(p.3)` written `[1](p.3)` was a link, its "(p.3)" lost)."""
    if not citations:   # nothing to number: the answer is not parsed for its code
        return text
    number = r"\[{}\]" if markdown else "[{}]"
    numbers = _by_marker(citations)
    out, at = [], 0
    for match in _MARKER.finditer(_LINK.sub(lambda link: " " * len(link.group()), outside_code(text))):
        if match.group(0) in numbers:
            out += [text[at:match.start()], number.format(numbers[match.group(0)][0])]
            at = match.end()
    return "".join(out) + text[at:]


def with_chips(answer_html: str, citations: Sequence[Citation], *, saved: bool = False) -> str:
    """The answer's HTML with each citation marker replaced by its chip (not inside code, nor inside a model's link:
    a chip there was a link in a link, torn apart, its popup inside the model's link). `saved`: the chips open their
    popups as popovers, each named by the turn and its number (`_popover_key`)."""
    if not citations:
        return answer_html
    key = _popover_key(answer_html, citations) if saved else ""
    by_marker = {marker: chip_html(number, c, f"{key}-{number}" if saved else "")
                 for marker, (number, c) in _by_marker(citations).items()}
    parts, literal = [], 0
    for part in _TAG.split(answer_html):
        if part.startswith("<"):
            name = part[1:].lstrip("/").split(None, 1)[0].rstrip(">").lower() if len(part) > 2 else ""
            if name in ("code", "pre", "a"):
                literal += -1 if part.startswith("</") else 1
            parts.append(part)
        elif literal > 0:
            parts.append(part)
        else:
            parts.append(_MARKER.sub(lambda m: by_marker.get(html.unescape(m.group(0)), m.group(0)), part))
    return sanitize("".join(parts))


def _popover_key(answer_html: str, citations: Sequence[Citation]) -> str:
    """What names a saved turn's popovers (`gx-cite-<key>-<number>`): unique in a page of many turns (each has a chip
    1), the same each time the turn is saved. It is read from the answer and what its chips show: two turns of one answer
    citing other pages open each its own popups; two alike share theirs, which are the same."""
    shown = "\0".join([answer_html, *(popup_text(number, c) for number, c in numbered(citations))])
    return f"gx-cite-{hashlib.sha256(shown.encode('utf-8', 'surrogatepass')).hexdigest()[:12]}"


def sources_html(citations: Sequence[Citation]) -> str:
    """The sources under an answer (saved notebooks): number, title, lines, where, and the cited text."""
    items = []
    for number, c in numbered(citations):
        if c.text.strip():
            where = f' <span class="gx-browse-source">{_name(c.url)}</span>' if c.url else ""
            # the head a block of its own, not a line ended by <br>, which nbconvert's `sanitize_html` shows as text
            note = f'<div class="gx-browse-note">{html.escape(_changed(c).strip())}</div>' if c.changed else ""
            items.append(f"<li><div>{_a(c.url, c.title or c.url)} · {_lines_span(c.start, c.end)}{where}</div>{note}"
                         f'<span class="gx-cite-lines">{_text(c.text)}</span></li>')
        else:
            items.append(f"<li>{html.escape(_missing(_shown(c)))}</li>")
    return sanitize(f'<div class="gx-cite-head">Sources</div><ol class="gx-cite-sources">{"".join(items)}</ol>')


def sources_text(citations: Sequence[Citation], *, markers: bool = False) -> str:
    """The sources as plain text (terminals, text/plain), each under its number, or with `markers` under the markers
    that cite it (`【1†L5】`): a live text view prints the answer as it comes, its markers as the model wrote them."""
    cited_by: dict[int, list[str]] = {}
    for marker, (number, _) in _by_marker(citations).items():
        cited_by.setdefault(number, []).append(_one_line(marker))
    lines = ["Sources:"]
    for number, c in numbered(citations):
        label = " ".join(cited_by[number]) if markers else f"[{number}]"
        c = _shown(c)
        if c.text.strip():
            where = f" ({c.url})" if c.url else ""
            lines.append(f"  {label} {c.title or c.url}{where}, {_lines_span(c.start, c.end)}{_changed(c)}:")
            lines += [f"      {line}" for line in c.text.splitlines()]
        else:
            lines.append(f"  {label} {_missing(c)}")
    return "\n".join(lines)


def sources_markdown(citations: Sequence[Citation]) -> str:
    """The sources as Markdown (nbconvert, GitHub): a numbered list with the cited lines quoted."""
    out = ["**Sources**", ""]
    for number, c in numbered(citations):
        href, c = _link(c.url), _shown(c)
        if c.text.strip():
            title = literal_markdown(c.title or c.url)
            head = f"[{title}]({_md_url(href)})" if href else f"**{title}**" + (f" ({literal_markdown(c.url)})" if c.url else "")
            note = f" {literal_markdown(_changed(c).strip())}" if c.changed else ""
            out.append(f"{number}. {head} · {_lines_span(c.start, c.end)}{note}")
            out += [f"   > {_cited_line(line)}" for line in c.text.splitlines() if line.strip()]
        else:
            out.append(f"{number}. {literal_markdown(_missing(c))}")
    return "\n".join(out)


def _cited_line(line: str) -> str:
    """A cited line as literal Markdown that starts no block: a leading `=` or `-` (a heading's underline, a rule,
    a list item) or a number's `.` (a numbered list) escaped, so that a page makes no heading inside the Sources."""
    return _BLOCK_START.sub(r"\1\\", literal_markdown(line))


def _md_url(url: str) -> str:
    """A link destination that cannot end early: brackets, quotes and spaces percent-encoded."""
    from urllib.parse import quote

    return quote(url, safe=":/?#[]@!$&*+,;=%~.-_")


# ---------------------------------------------------------------- cards of browser calls

def is_browser_call(call: ToolCall | None) -> bool:
    return call is not None and isinstance(call.data, dict) and call.data.get("kind") in _KINDS


def card_html(call: ToolCall | None) -> str | None:
    """The card body of a browser call (None for other calls): results, the opened window, or matches. The page and
    each result are named as the model's calls name them: "cursor 0" (`"cursor": 0`), "id 2" (`open` `"id": 2`)."""
    if not is_browser_call(call):
        return None
    data: dict[str, Any] = call.data  # type: ignore[union-attr]
    cursor = f"cursor {data['cursor']}"
    if data["kind"] == "search":
        results = data.get("results") or []
        items = "".join(f'<li><span class="gx-browse-n">id {r["id"]}</span> {_a("" if r.get("cut") else r["url"], r["title"] or r["url"])} '
                        f'<span class="gx-browse-source">{_name(r["source"])}</span><br>'
                        f'<span class="gx-browse-snippet">{_text(r["snippet"])}</span></li>' for r in results)
        body = (f'<div class="gx-browse-head">Search <b>{_name(data["query"])}</b> · '
                f'{len(results)} result{"s" * (len(results) != 1)} · {cursor}</div>'
                + (f'<ul class="gx-browse-results">{items}</ul>' if results else "")
                + _raw(call.output))  # type: ignore[union-attr]
    elif data["kind"] == "find":
        matches = data.get("matches") or []
        shown = "".join(_numbered_lines([(m["line"] + k, text) for k, text in enumerate(m["text"].split("\n"))])
                        + "\n" for m in matches)
        body = (f'<div class="gx-browse-head">Find <b>{_name(data["pattern"])}</b> in '
                f'{_a(data["url"], data["title"] or data["url"])} · {len(matches)} match{"es" * (len(matches) != 1)}'
                f' · {cursor}</div>' + (f'<pre class="gx-browse-lines">{shown.rstrip()}</pre>' if matches else ""))
    else:
        body = (f'<div class="gx-browse-head">{_a(data["url"], data["title"] or data["url"])} '
                f'<span class="gx-browse-source">{_name(data["url"])}</span> · lines {data["start"]}–'
                f'{data["end"]} of {data["total"]} · {cursor}</div>'
                f'<pre class="gx-browse-lines">{_numbered_lines(data["lines"])}</pre>')
    note = browse_note(call)
    body += f'<div class="gx-browse-note">{_text(note)}</div>' if note else ""
    return sanitize(f'<div class="gx-browse">{body}</div>')


def browse_note(call: ToolCall | None) -> str:
    """What a browser call's card says to the user beside what the model read: that the document opened or searched
    was changed on disk since it was read (see LocalBackend.changed), else ""."""
    return str(call.data.get("changed") or "") if is_browser_call(call) else ""  # type: ignore[union-attr]


def _numbered_lines(lines: Sequence[Sequence[Any]]) -> str:
    return "\n".join(f'<span class="gx-browse-n">L{n}</span> {_text(str(text))}' for n, text in lines)


def _raw(output: str) -> str:
    return (f'<details class="gx-browse-raw"><summary>What the model read</summary>'
            f'<pre class="gx-browse-lines">{_text(output)}</pre></details>')
