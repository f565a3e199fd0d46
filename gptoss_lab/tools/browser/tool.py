"""The browser tool: gpt-oss's `browser.search` / `browser.open` / `browser.find`, over any backend.

It behaves like the reference (openai/gpt-oss `simple_browser_tool.py`): every result is a page
pushed on a stack and addressed by its cursor; `search` shows a numbered result page, `open` a
window of numbered lines (by link id from a page, by URL, or scrolled with `loc`/`num_lines`),
`find` the matches of a pattern in a page; the model cites what it read as `【cursor†Lstart-Lend】`
and `citations()` resolves those against the stack. One Browser serves a whole conversation
(`Session.browser`); `reset()` forgets its pages when the conversation is cleared.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import os
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from numbers import Integral
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from openai_harmony import ToolNamespaceConfig

from ...events import Citation, ToolCall
from ...harmony import clean
from ...widgets.sanitize import WrittenOut, outside_code, short_address
from ..base import Tool, ToolResult, bounded
from .backends import Backend, BackendError, FunctionBackend, one_line
from .extract import source_text
from .local import LocalBackend
from .page import (
    CITATION_PATTERN, MAX_URL_CHARS, Page, cited_lines, clean_url, display, end_line, find_page, maybe_truncate,
    result_labels, results_page,
)

VIEW_SOURCE_PREFIX = "view-source:"
# What an answer's citations quote at most: each citation, and all of them together (a distinct citation of a
# different range each time, `【0†L0-L99999】` ..., quoted the page again each time: 2 000 of them made 280 MB of
# sources that the turn's end then rendered for a minute, Ctrl-C held). The reader opens the page for the rest.
QUOTE_CHARS = 4_000
QUOTED_CHARS = 60_000
# The longest source `view_source` shows: its lines are wrapped when it is opened (a 47 MB text document took 18 s,
# each open anew, Stop unheard); a web page's is at most its fetch's 5 MB.
MAX_SOURCE_CHARS = 5_000_000
_PARAMETERS = {
    "search": {"query", "topn", "top_n", "source"},
    "open": {"id", "cursor", "loc", "num_lines", "view_source", "source"},
    "find": {"pattern", "cursor"},
}
_REQUIRED = {"search": "query", "find": "pattern"}
_EXAMPLE = {"search": '{"query": "solar panel cleaning"}', "open": '{"id": 0}', "find": '{"pattern": "warranty"}'}


class BrowserError(WrittenOut, ValueError):
    """The browser cannot be set up as asked (no documents, an unknown backend, a missing key); one line."""


class _UsageError(Exception):
    """The model used the browser wrongly (a bad cursor, link id or location); told to the model."""


class Browser(Tool):
    """gpt-oss's browser over your documents or a search backend.

    `Browser("~/papers")` (a folder, files, globs), `Browser({"name.md": text, ...})` (texts in
    memory), `Browser(search=my_search, fetch=my_fetch)` (your own search), or
    `Browser(SearXNG("http://127.0.0.1:8888"))` / `Browser.from_sources(["searxng:http://..."])`.
    `view_tokens` sizes the windows `open` shows (about that many tokens, as gpt-oss was trained);
    a search shows at most `max_results` hits.
    """

    name = "browser"

    def __init__(self, source: Backend | str | Path | Sequence[str | Path] | Mapping[str | Path, str | bytes] | None = None, *,
                 search: Callable[[str, int], Any] | None = None, fetch: Callable[[str], Any] | str | None = None,
                 view_tokens: int = 1024, max_results: int = 20) -> None:
        for name, value in (("view_tokens", view_tokens), ("max_results", max_results)):
            if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:   # -5 showed whole documents
                raise BrowserError(f"{name} must be a positive whole number, not {maybe_truncate(repr(value), 40)}")
        self.backend = _backend(source, search, fetch)
        self.view_tokens = view_tokens
        self.max_results = max_results
        self.stack: list[Page] = []             # cursor -> page, as the model was shown them
        self._fetched: dict[str, Page] = {}    # url -> page, so opening a link twice reads it once
        # page -> the windows (first line, line after the last) the model was shown of it, at any cursor
        self._shown: weakref.WeakKeyDictionary[Page, list[tuple[int, int]]] = weakref.WeakKeyDictionary()
        self._sources: weakref.WeakKeyDictionary[Page, Page] = weakref.WeakKeyDictionary()  # page -> its source page
        self._last_local: tuple[str, bool, float] | None = None   # (url, is local, when): see _local

    @classmethod
    def from_sources(cls, sources: Sequence[str], *, api_key_env: str | None = None, **options: Any) -> Browser:
        """What `%gptoss browse` takes: folders, files and globs, or one backend: `searxng:URL` (or a bare
        http(s) URL of a SearXNG instance), `exa`, `youcom` (keys from EXA_API_KEY / YDC_API_KEY, or
        the variable `api_key_env` names)."""
        sources = [s for s in sources if str(s).strip()]    # "" is no folder (not the working one)
        return cls(_from_sources(sources, api_key_env), **options)

    def describe(self) -> str:
        """One line: what the browser reads."""
        return self.backend.describe()

    def __repr__(self) -> str:
        return f"Browser({self.describe()}; {len(self.stack)} page{'s' * (len(self.stack) != 1)} open)"

    # ------------------------------------------------------------ the Tool protocol

    def system_config(self) -> ToolNamespaceConfig:
        """The browser namespace exactly as gpt-oss was trained on it (openai-harmony's)."""
        return ToolNamespaceConfig.browser()

    def refusal(self, call: ToolCall) -> str | None:
        """gpt-oss's `Unknown function: ...` for a name that is none of search, open and find, the error of
        arguments none of them takes (no query, a word for a cursor, an unknown key), and of a page, link or line
        the pages shown so far do not have (asked "Open link 3 of the page at cursor -1?" with no page open)."""
        try:
            function, args = _parse(call)
            if function == "find":
                self._searchable(args.get("cursor", -1))
            elif function == "open" and not isinstance(args.get("id", -1), str):
                current, url = self._link(args.get("id", -1), args.get("cursor", -1))
                if args.get("id", -1) < 0 and not args.get("view_source"):   # its source has lines of its own
                    _within(current, args.get("loc", -1))
                self._openable(url)
            elif function == "open":
                self._openable(clean_url(args["id"]))
        except _UsageError as err:
            return str(err)
        return None

    def approval_question(self, call: ToolCall) -> str:
        try:
            function, args = _parse(call)
            question = self._question(function, args)
        except _UsageError:
            question = f"Run {call.recipient} with {call.input.strip() or 'no arguments'}?"
        return one_line(question, 240)

    def approval_scope(self, call: ToolCall) -> str | None:
        """The whole browser (its search, open and find read the same documents), but for opening an address on this
        computer or its network, which is asked about every time: a page's link to a cloud's metadata service or a
        local server opened with no question once one search had been allowed (a review)."""
        try:
            function, args = _parse(call)
        except _UsageError:
            return self.name
        url = self._opened_url(args) if function == "open" else None
        return None if url is not None and self._local(url) else self.name

    def _opened_url(self, args: dict[str, Any]) -> str | None:
        """The web address an `open` asks for: given, or a result's or link's of the page at `cursor`."""
        target = args.get("id", -1)
        if isinstance(target, str):
            return target
        cursor = args.get("cursor", -1)
        page = self.stack[cursor] if self.stack and -1 <= cursor < len(self.stack) else None
        return page.urls.get(str(target)) if page is not None and target >= 0 else None

    def run(self, call: ToolCall, stop: Callable[[], bool] = lambda: False, timeout: float | None = None) -> ToolResult:
        """Search, open or find, ended after the turn's `timeout` seconds or at the view's Stop while a backend waits
        (a user's search function, a silent service): the search or page it waited for is left."""
        return bounded(lambda: self._result(call), timeout, stop)

    def _result(self, call: ToolCall) -> ToolResult:
        try:
            function, args = _parse(call)  # checked against the three functions: no name from the model reaches getattr
            output, data = {"search": self._search, "open": self._open, "find": self._find}[function](**args)
        except (_UsageError, BrowserError) as err:
            return ToolResult("error", str(err))
        return ToolResult("done", output, data=data)

    def citations(self, text: str) -> list[Citation]:
        """Each `【cursor†Lstart-Lend】` in `text`, with the page it points to and the cited lines the
        model was shown, every run of cited lines it was never shown said in its place (see `_quoted`; empty text
        when the cursor or none of the lines were shown). A citation of a find page's lines points to the page
        that was searched, with those lines' numbers there. A marker written in code (the Markdown's code spans and
        blocks) is shown as written, no citation: it is not listed either."""
        found = []
        made: dict[tuple[int, int, int], Citation] = {}   # each distinct citation (cursor, lines) quoted once
        left = QUOTED_CHARS
        for match in CITATION_PATTERN.finditer(outside_code(text)):
            lines, cursor = cited_lines(match.group("content")), _number(match.group("cursor"))
            if lines is None or cursor is None:  # no lines, or a cursor of more digits than Python converts
                continue
            start, end = lines
            key = (cursor, start, end)
            if key in made:
                found.append(dataclasses.replace(made[key], marker=match.group(0)))
                continue
            page = self.stack[cursor] if cursor < len(self.stack) else None
            url = title = quoted = changed = ""
            if page is not None:
                source = page.origin or page
                past_end = start >= len(page.lines)   # of the page cited, a find page too: `_quoted` says where it ends
                url, title = self._address(source), (page if past_end else source).title
                changed = self.backend.happened(self._document(source).url) or ""   # quoted as read: the reader is told
                # a find page's match headers and blank lines are none of the searched page's
                if page.kind == "find" and not past_end:
                    numbers = _searched_lines(page)
                    searched = sorted(numbers[n] for n in numbers if start <= n <= end)
                    start, end = (searched[0], searched[-1]) if searched else (start, end)
                    page = source if searched else None
                if page is not None:
                    chars = min(QUOTE_CHARS, max(left, 0))
                    why = (f"a quote stops at {QUOTE_CHARS:,} characters" if chars == QUOTE_CHARS else
                           f"an answer's citations quote {QUOTED_CHARS:,} characters at most")
                    quoted = _quoted(page, start, end, self._shown.get(page, []), chars, why)
                    left -= len(quoted)
            made[key] = Citation(match.group(0), cursor, start, end, url, title, quoted, changed)
            found.append(made[key])
        return found

    def reset(self) -> None:
        self.stack.clear()
        self._fetched.clear()
        self._shown.clear()

    def snapshot(self) -> tuple[list[Page], dict[Page, list[tuple[int, int]]]]:
        return list(self.stack), {page: list(windows) for page, windows in self._shown.items()}

    def restore(self, snapshot: tuple[list[Page], dict[Page, list[tuple[int, int]]]]) -> None:
        stack, shown = snapshot
        self.stack[:] = stack
        self._shown = weakref.WeakKeyDictionary({page: list(windows) for page, windows in shown.items()})

    # ------------------------------------------------------------ what the model can call

    def search(self, query: str, topn: int = 10) -> str:
        """Search and show the result page (as the model sees it); raises ValueError on errors."""
        return self._call(self._search, query=query, topn=topn)

    def open(self, id: int | str = -1, cursor: int = -1, loc: int = -1, num_lines: int = -1,
             view_source: bool = False) -> str:
        """Open link `id` of page `cursor` (or a URL), or scroll the current page to line `loc`."""
        return self._call(self._open, id=id, cursor=cursor, loc=loc, num_lines=num_lines, view_source=view_source)

    def find(self, pattern: str, cursor: int = -1) -> str:
        """Find `pattern` in the current page (or page `cursor`) and show the matches."""
        return self._call(self._find, pattern=pattern, cursor=cursor)

    def _call(self, method: Callable[..., tuple[str, Any]], **args: Any) -> str:
        try:
            return method(**args)[0]
        except _UsageError as err:
            raise BrowserError(str(err)) from None

    # ------------------------------------------------------------ the reference's behaviour

    def _search(self, query: str, topn: int = 10, top_n: int | None = None, source: str | None = None) -> tuple[str, Any]:
        _not_empty("search", query)   # also asked here: `Browser.search` takes no JSON
        count = max(1, min(int(top_n or topn), self.max_results))
        try:
            results = list(itertools.islice(self.backend.search(query, count), count))   # any backend: `count` at most
        except BackendError as err:
            raise _UsageError(f"Error during search for `{maybe_truncate(query, 200)}`: {maybe_truncate(str(err))}") from None
        self.stack.append(results_page(query, results))
        text, data = self._show(0)
        data["query"] = query
        data["results"] = [{"id": i, "title": r.title, "url": r.url, "source": label, "snippet": r.snippet,
                            "cut": r.cut}   # an address cut to MAX_URL_CHARS: the card does not link it
                           for i, (r, label) in enumerate(zip(results, result_labels(results)))]
        return text, self._noted(data, [r.url for r in results])

    def _open(self, id: int | str = -1, cursor: int = -1, loc: int = -1, num_lines: int = -1,
              view_source: bool = False, source: str | None = None) -> tuple[str, Any]:
        snippet = None
        direct = isinstance(id, str)
        if isinstance(id, str):  # an address the model wrote: never with a user name or password for the site
            url = clean_url(id)   # (`https://paypal.com@evil.example/`; a result's own address is fetched as given)
        else:
            current, url = self._link(id, cursor)
            snippet = (current.snippets or {}).get(str(id))
        if not direct and id < 0:
            # the page itself, scrolled or its source shown; never fetched again by its address (a find page's
            # `https://site/page/find?pattern=x`, a result page's "" and `view-source:` reached the backend's fetch)
            page = current
        else:
            # a find match leads to the page that was searched, as it was: fetched again, a `view-source:` page was
            # no document ("Error fetching URL `view-source:owls.html`")
            match = not direct and id >= 0 and current.kind == "find" and current.origin is not None
            page = current.origin if match else self._fetch(url, direct)
        document = page   # its source shown, what changed is still the document's file
        if view_source:
            page = self._source(page)
            snippet = None
        self.stack.append(page)
        if loc < 0:  # at the result's passage: a line of the page (a backend's hit can name any value)
            line = snippet.line_idx if snippet is not None else None
            loc = int(line) if isinstance(line, Integral) and 0 <= line < len(page.lines) else 0
            if loc > 4:
                loc -= 4
        text, data = self._show(loc, num_lines)
        return text, self._noted(data, [document.url])

    def _document(self, page: Page) -> Page:
        """The document `page` shows: itself, or the one whose source it is (`view_source`)."""
        return next((document for document, source in self._sources.items() if source is page), page)

    def _source(self, page: Page) -> Page:
        """The page `view_source` shows of `page` (made once: opened again, the same page and its lines); a source
        page is its own source, and a search or find page has none."""
        if page.kind != "page":
            raise _UsageError(f"`view_source` shows a document's source, not a {page.kind} results page: open one of "
                              'its results with it, e.g. {"id": 0, "view_source": true}')
        if self._document(page) is not page:   # a source page
            return page
        if page not in self._sources:
            text = source_text(page)
            if len(text) > MAX_SOURCE_CHARS:
                raise _UsageError(f"The source of `{maybe_truncate(page.url, 200)}` is {len(text):,} characters; "
                                  f"view_source shows at most {MAX_SOURCE_CHARS:,}: open the page itself")
            self._sources[page] = Page(url=VIEW_SOURCE_PREFIX + page.url, title=page.title, text=text)
        return self._sources[page]

    def _find(self, pattern: str, cursor: int = -1) -> tuple[str, Any]:
        _not_empty("find", pattern)
        page = self._searchable(cursor)
        found = find_page(str(pattern), page)
        self.stack.append(found)
        text, data = self._show(0)
        numbers = _searched_lines(found)   # the lines of `page` the matches showed count as shown there too
        self._shown.setdefault(page, []).extend((numbers[n], numbers[n] + 1) for n in range(data["end"] + 1)
                                                if n in numbers)
        data["pattern"] = str(pattern)
        data["matches"] = [{"id": int(i), "line": e.line_idx, "text": e.text} for i, e in (found.snippets or {}).items()]
        data["url"], data["title"] = self._address(page), page.title
        return text, self._noted(data, [page.url])

    def _noted(self, data: dict[str, Any], urls: Sequence[str]) -> dict[str, Any]:
        """`data` (what the call's card shows), with the line that tells the user when the files of the pages at `urls`
        (the page opened or searched in, a search's results) changed since the backend read them ("changed"): the
        model is shown the pages as they were read, and its citations quote that."""
        if note := self.backend.changed(urls):
            data["changed"] = note
        return data

    def _searchable(self, cursor: int) -> Page:
        """The page at `cursor`, which `find` can search (a document, not a results page)."""
        page = self._page(cursor)
        if page.snippets is not None:
            raise _UsageError("Cannot run `find` on search results page or find results page")
        return page

    def _link(self, id: int, cursor: int) -> tuple[Page, str]:
        """The page at `cursor` and the address of its link `id` ("" for an `id` below 0: the page itself)."""
        current = self._page(cursor)
        url = current.urls.get(str(id), "") if id >= 0 else ""
        if id >= 0 and not url:
            raise _UsageError(f"Invalid link id `{_echo(id)}`.")
        return current, url

    def _page(self, cursor: int) -> Page:
        if not self.stack:
            raise _UsageError("No pages to access!")
        if cursor == -1:
            return self.stack[-1]
        if not 0 <= cursor < len(self.stack):
            raise _UsageError(f"Cursor `{_echo(cursor)}` is out of range. Available cursor indices: [0 - {len(self.stack) - 1}].")
        return self.stack[cursor]

    def _address(self, page: Page) -> str:
        """`page`'s address as the views name and link it: none for one a search result had cut (a search function's
        page fetched by the whole address), which names another page."""
        return "" if any(page.url in shown.cut for shown in self.stack) else page.url

    def _openable(self, url: str) -> None:
        """Refuse an address a search result had cut (SearchResult.cut), unless the backend fetches the whole one: the
        cut one names another page, which was fetched, shown and cited as the result's."""
        if url and not self.backend.fetches_as_given and any(url in page.cut for page in self.stack):
            raise _UsageError(f"Error fetching URL `{maybe_truncate(url)}`: the search service gave an address longer "
                              f"than {MAX_URL_CHARS:,} characters, kept cut to that length: a cut address is not opened "
                              "(it names another page)")

    def _fetch(self, url: str, direct: bool) -> Page:
        self._openable(url)
        if not direct and url in self._fetched:
            return self._fetched[url]
        try:
            page = self.backend.fetch(url)
        except BackendError as err:
            raise _UsageError(f"Error fetching URL `{maybe_truncate(url)}`: {maybe_truncate(str(err))}") from None
        self._fetched[url] = page
        return page

    def _show(self, loc: int, num_lines: int = -1) -> tuple[str, dict[str, Any]]:
        """The top page's window from `loc`; a location past the end takes the page off the stack."""
        page, cursor = self.stack[-1], len(self.stack) - 1
        total = len(page.lines)
        try:
            _within(page, loc)
        except _UsageError:
            self.stack.pop()
            raise
        end = end_line(page.lines, loc, num_lines, self.view_tokens)
        self._shown.setdefault(page, []).append((loc, end))
        data = {"kind": page.kind, "cursor": cursor, "title": page.title, "url": self._address(page), "start": loc,
                "end": end - 1, "total": total - 1, "lines": [[loc + i, line] for i, line in enumerate(page.lines[loc:end])]}
        return display(page, cursor, loc, end), data

    # ------------------------------------------------------------ approval

    def _question(self, function: str, args: dict[str, Any]) -> str:
        if function == "search":
            return f"Search {self.backend.where()} for {args['query']!r}?"
        if function == "find":
            title = self._title(args.get("cursor", -1))
            return f"Find {args['pattern']!r} in {title}?" if title else f"Find {args['pattern']!r}?"
        target = args.get("id", -1)
        if isinstance(target, str):
            return self._local_note(target) + f"Open {short_address(target)} ({self.backend.where()})?"
        cursor = args.get("cursor", -1)
        page = self.stack[cursor] if self.stack and -1 <= cursor < len(self.stack) else None
        if target >= 0 and page is not None and str(target) in page.urls:
            extract = (page.snippets or {}).get(str(target))
            url = short_address(page.urls[str(target)])
            if page.kind == "find" and extract is not None:   # a match's title is its number (`#2`): said where it is
                searched = page.origin or page
                return f"Open match {target} of {one_line(searched.title or url, 80)} at line {extract.line_idx}?"
            name = f"{one_line(extract.title, 80)} ({url})" if extract else url
            return self._local_note(page.urls[str(target)]) + f"Open result {target}: {name}?"
        if target < 0 and page is not None:
            return f"Show {page.title or page.url} from line {max(args.get('loc', 0), 0)}?"
        at = len(self.stack) - 1 if cursor == -1 and self.stack else cursor   # named as the cards name a page
        return f"Open link {target} of the page at cursor {at}?"

    def _local_note(self, url: str) -> str:
        """What an approval question starts with for an address on this computer or its network (its end is the
        address, which a cut question must keep)."""
        return "On this computer or its network (asked every time): " if self._local(url) else ""

    def _local(self, url: str) -> bool:
        """`_is_local_url`, its answer reused for the same address within 10 s: one approval card asks it twice (its
        scope, then its question), and each asked the name server again (a slow one doubled the wait for the card)."""
        now = time.monotonic()
        if self._last_local is not None and self._last_local[0] == url and now - self._last_local[2] < 10:
            return self._last_local[1]
        local = _is_local_url(url)
        self._last_local = (url, local, now)
        return local

    def _title(self, cursor: int) -> str:
        if self.stack and -1 <= cursor < len(self.stack):
            page = self.stack[cursor]
            return repr(page.title or page.url)
        return ""


def _within(page: Page, loc: int) -> None:
    """Refuse a location past the end of `page`."""
    if loc >= len(page.lines):
        raise _UsageError(f"Invalid location parameter: `{_echo(loc)}`. Cannot exceed page maximum of "
                          f"{len(page.lines) - 1}.")


def _is_local_url(url: str) -> bool:
    """Whether `url` is a web address on this computer or its network (see web.is_local)."""
    if not url.lower().startswith(("http://", "https://")):
        return False
    from .web import is_local   # (web imports httpx, 0.1-0.3 s, which browsing your own documents needs not)

    try:
        return is_local(urlsplit(url).hostname or "")
    except ValueError:
        return False


def _quoted(page: Page, start: int, end: int, windows: list[tuple[int, int]], chars: int, why: str) -> str:
    """Lines `start`..`end` of `page` that the model was shown (in any of `windows`), each run of the cited lines it
    was never shown, or that the page does not have, said in one line in its place (`[L5–L10: never shown to the
    model]`): a citation spanning two find matches read as one passage. Empty when none was shown. Only the windows
    are walked, not the lines cited (`L0-L1000000` walked a long page line by line), and only until the quote has
    `chars` characters: the shown lines past that are named, not quoted, and `why`. Lines all past the page's end are
    said to be (`L5` of a page ending at L4 read as a line the model was shown nothing of)."""
    total = len(page.lines)
    if start >= total:
        return _unshown(start, end, total)
    parts: list[str] = []
    at, size = start, 0
    for a, b in sorted((max(a, start), min(b, end + 1, total)) for a, b in windows):
        if b <= max(a, at):   # a window outside the cited lines, or within what was quoted
            continue
        if a > at:
            parts.append(_unshown(at, a - 1, total))
        for n in range(max(a, at), b):
            if size >= chars:
                return "\n".join(parts + [f"[{_span(n, min(end, total - 1))}: cited, not quoted here ({why})]"])
            parts.append(page.lines[n])
            size += len(page.lines[n]) + 1
        at = b
    if at == start:
        return ""
    return "\n".join(parts + ([_unshown(at, end, total)] if at <= end else []))


def _unshown(start: int, end: int, total: int) -> str:
    """What stands in a quote for its lines `start`..`end` the model was never shown (of a page of `total` lines)."""
    said = [f"[{_span(start, min(end, total - 1))}: never shown to the model]"] if start < total else []
    if end >= total:
        said.append(f"[{_span(max(start, total), end)}: not on the page, whose last line is L{total - 1}]")
    return "\n".join(said)


def _span(start: int, end: int) -> str:
    return f"L{start}" if start == end else f"L{start}–L{end}"


def _searched_lines(page: Page) -> dict[int, int]:
    """A find page's line numbers -> the numbers of the same lines in the page it searched (its match
    headers and the blank lines between matches have none)."""
    numbers: dict[int, int] = {}
    at = 0
    for extract in (page.snippets or {}).values():
        shown = extract.text.split("\n")
        for k in range(len(shown)):
            numbers[at + 1 + k] = (extract.line_idx or 0) + k
        at += len(shown) + 2  # the header, the lines shown, the blank line before the next match
    return numbers


def _parse(call: ToolCall) -> tuple[str, dict[str, Any]]:
    """The function (search, open, find) and its checked arguments; a _UsageError the model can act on."""
    function = _function(call)
    text = call.input.strip()
    try:
        args = json.loads(text) if text else {}
    except ValueError:  # not JSON, or a number of more digits than Python converts
        args = None
    if not isinstance(args, dict):
        raise _UsageError(f"Invalid function arguments: browser.{function} takes a JSON object, e.g. {_EXAMPLE[function]}")
    # JSON's "\ud800" is text no encoding writes (a find's URL raised UnicodeEncodeError): read as its escape
    args = {clean(name): clean(value) if isinstance(value, str) else value for name, value in args.items()}
    unknown = sorted(set(args) - _PARAMETERS[function])
    if unknown:
        raise _UsageError(f"Invalid function arguments: browser.{function} has no parameter `{unknown[0]}` "
                          f"(it takes {', '.join(sorted(_PARAMETERS[function]))})")
    needed = _REQUIRED.get(function)
    if needed and not isinstance(args.get(needed), str):
        raise _UsageError(f"Invalid function arguments: browser.{function} needs `{needed}` (a string), "
                          f"e.g. {_EXAMPLE[function]}")
    if needed:
        _not_empty(function, args[needed])
    for name in ("topn", "top_n", "cursor", "loc", "num_lines"):
        if name in args:
            args[name] = _integer(name, args[name])
    if "id" in args:
        value = args["id"]
        number = _number(value) if isinstance(value, str) else None
        args["id"] = number if number is not None else value if isinstance(value, str) else _integer("id", value)
    if "view_source" in args:
        value = args["view_source"]
        flag = value.strip().lower() if isinstance(value, str) else value
        if flag not in (True, False, None, "true", "false"):  # 0/1 compare equal to False/True
            raise _UsageError(f"`view_source` should be true or false, not `{maybe_truncate(str(value), 40)}`")
        args["view_source"] = flag in (True, "true")
    return function, args


def _function(call: ToolCall) -> str:
    """The browser function `call` names (search, open, find); a _UsageError for any other name."""
    function = call.recipient.split(".", 1)[1].strip() if "." in call.recipient else ""
    if function not in _PARAMETERS:
        raise _UsageError(f"Unknown function: {maybe_truncate(function or call.recipient, 80)!r} "
                          "(the browser has search, open and find)")
    return function


def _not_empty(function: str, text: Any) -> None:
    """Refuse a query or pattern of nothing: a search of it reached the service (a paid API's call) and showed an
    empty page without a word why; a find of it listed every line as a match."""
    if not str(text).strip():
        raise _UsageError(f"Invalid function arguments: `{_REQUIRED[function]}` is empty, e.g. {_EXAMPLE[function]}")


def _integer(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise _UsageError(f"`{name}` should be an integer, not `bool`")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2 ** 53:  # past that, no float is exact
        return int(value)
    number = _number(value) if isinstance(value, str) else None
    if number is not None:
        return number
    raise _UsageError(f"`{name}` should be an integer, not `{type(value).__name__}`")


def _echo(number: int) -> str:
    """A number the model gave, as an error repeats it: at most 40 characters (1e308 was read as 309 digits)."""
    return maybe_truncate(str(number), 40)


def _number(text: str) -> int | None:
    """`text` as an integer when it is one ("3", " -1 "), else None (also for digits int() does not read:
    `²`, or more of them than Python converts)."""
    if not text.strip().lstrip("-").isdigit():
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _backend(source: Any, search: Any, fetch: Any) -> Backend:
    if search is not None:
        if source is not None:
            raise BrowserError("give documents or a search function, not both")
        try:
            return FunctionBackend(search, fetch)
        except TypeError as err:
            raise BrowserError(str(err)) from None
    if isinstance(source, Backend):
        return source
    if isinstance(source, Mapping):
        try:
            return LocalBackend.from_texts(source)
        except BackendError as err:
            raise BrowserError(str(err)) from None
    if isinstance(source, str | Path) and str(source).strip():   # "" is no folder (not the working one)
        return _from_sources([str(source)], None)
    if isinstance(source, Sequence) and not isinstance(source, str) and any(str(s).strip() for s in source):
        return _from_sources([str(s) for s in source if str(s).strip()], None)
    raise BrowserError("the browser needs something to read: a folder or files (Browser('~/docs')), texts "
                       "(Browser({'name.md': text})), a backend (searxng:URL, exa, youcom) or search=my_function")


_BACKENDS = {"exa": "exa", "youcom": "youcom", "you.com": "youcom", "you": "youcom", "ydc": "youcom"}


def _from_sources(sources: list[str], api_key_env: str | None) -> Backend:
    if not sources:
        raise BrowserError("give a folder, files, or a backend (searxng:URL, exa, youcom)")
    specs = [s for s in sources if not os.path.exists(os.path.expanduser(s)) and (
        s.lower().startswith(("searxng:", "http://", "https://")) or s.lower().rstrip(":") in _BACKENDS)]
    if api_key_env and not (len(specs) == 1 and specs[0].lower().rstrip(":") in _BACKENDS):
        raise BrowserError(f"api_key_env (--api-key-env) names the key of exa or youcom; {(specs or sources)[0]} "
                           "takes no key")
    word = next((str(s) for s in sources if str(s).isidentifier() and not os.path.lexists(s)), None)
    if not specs and word:   # `%gptoss browse google` said "no such file or folder: google", and nothing of backends
        raise BrowserError(f"no such file or folder: {word} (the search backends are searxng:URL, exa and youcom)")
    try:
        if not specs:
            return LocalBackend.from_paths(sources)
        from .web import Exa, SearXNG, YouCom   # (httpx: 0.1-0.3 s that your own documents need not)

        if len(sources) > 1:
            raise BrowserError(f"a search backend ({specs[0]}) is used alone, not with other sources")
        spec = specs[0]
        name = spec.lower().rstrip(":")
        if spec.lower().startswith("searxng:"):
            return SearXNG(spec.split(":", 1)[1])
        if name.startswith(("http://", "https://")):
            return SearXNG(spec)
        keys = {"api_key_env": api_key_env} if api_key_env else {}
        return Exa(**keys) if _BACKENDS[name] == "exa" else YouCom(**keys)
    except BackendError as err:
        raise BrowserError(str(err)) from None
