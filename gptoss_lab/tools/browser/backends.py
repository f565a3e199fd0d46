"""Where the browser's pages come from: one small protocol, and a backend made of the user's functions.

A backend answers `search(query, topn) -> list[SearchResult]` and `fetch(url) -> Page`, and says in
one line what it reads (`describe`) and, for approval questions, where (`where`). Local documents
(`local.py`) are the default; SearXNG, Exa and You.com (`web.py`) are for users with network access;
`FunctionBackend` plugs in any in-house search. Backends raise `BackendError` with a one-line
message, which the browser hands to the model as the tool's output and shows the user.
"""
from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from ..base import error_text
from .extract import ExtractError, html_page, own_page, text_page
from .page import Page, SearchResult, clean_url


class BackendError(Exception):
    """A search or fetch failed (unreachable, refused, timed out, unreadable); the message is one line."""


class Backend(ABC):
    """Searches and fetches pages for the browser."""

    # whether `fetch` is given a hit's address as its search gave it, also one kept cut to MAX_URL_CHARS (a cut
    # address names another page: the browser opens it only with a backend that knows the whole one)
    fetches_as_given = False

    @abstractmethod
    def search(self, query: str, topn: int) -> list[SearchResult]:
        """The best `topn` hits for `query`, best first."""

    @abstractmethod
    def fetch(self, url: str) -> Page:
        """The page at `url` (raise BackendError when it cannot be had)."""

    def changed(self, urls: Iterable[str]) -> str | None:
        """One line for the user when pages at `urls` (a page opened, a search's results) are no longer as the backend
        read them (a file edited since the folder was read), else None; the model still reads them as they were, so
        that its citations match."""
        return None

    def happened(self, url: str) -> str | None:
        """What became of the page at `url` since the backend read it, in a few words ("changed on disk"), None if
        nothing: a citation of it says so under the answer (`Citation.changed`)."""
        return None

    def describe(self) -> str:
        """One line for the user: what this backend reads."""
        return type(self).__name__

    def where(self) -> str:
        """Where a search looks, for approval questions ("your documents", "the web through SearXNG")."""
        return self.describe()


def one_line(text: str, limit: int = 300) -> str:
    """`text` on one line (whitespace runs become one space), cut to `limit` characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class FunctionBackend(Backend):
    """Search with the user's function: `search(query, topn)` returns hits as dicts (`title`, `url`,
    `snippet` or `content`, optionally the whole `text`), `(title, url, snippet)` tuples or
    `SearchResult`s. Pages come from `fetch(url)` (text, `{"title", "text" | "html"}` or a `Page`), else
    from the `text` the hits carried, else from the web when `fetch="web"`."""

    fetches_as_given = True

    def __init__(self, search: Callable[[str, int], Any], fetch: Callable[[str], Any] | str | None = None, *,
                 timeout: float | None = None) -> None:
        if not callable(search):
            raise TypeError(f"search must be a function (query, topn) -> results, not {type(search).__name__}")
        if not (fetch is None or fetch == "web" or callable(fetch)):
            raise TypeError('fetch must be a function (url) -> page text, "web" or None')
        self._search, self._fetch, self.timeout = search, fetch, timeout
        self._texts: dict[str, tuple[str, str]] = {}   # url -> (title, text) given with the hits
        # a hit's URL as kept (its control and invisible characters escaped, see clean_url) -> as the search gave it:
        # what `fetch` is asked for when the model opens the hit by its number
        self._given: dict[str, str] = {}

    def search(self, query: str, topn: int) -> list[SearchResult]:
        name = getattr(self._search, "__name__", "search")
        try:
            hits = self._search(query, topn)
            if isinstance(hits, Iterator):   # a generator's code runs as it is read: what it raises is the search's
                hits = list(itertools.islice(hits, topn))   # (and it may not end)
        except Exception as err:
            raise _raised(name, err) from None
        try:   # any exception: a hit's value whose str() raises is the user's code running here
            results = [self._result(hit) for hit in itertools.islice(hits or [], topn)]
        except Exception as err:
            raise BackendError(f"{name} returned a result the browser cannot read "
                               f"({one_line(error_text(err).removeprefix('Error: '))}); "
                               "return dicts with title, url and snippet") from None
        return results

    def _result(self, hit: Any) -> SearchResult:
        if isinstance(hit, SearchResult):
            return hit
        if isinstance(hit, Mapping):
            url, title = str(hit["url"]), str(hit.get("title") or hit["url"])
            snippet = hit.get("snippet") or hit.get("content") or hit.get("summary") or ""
            if hit.get("text"):
                self._texts[clean_url(url)] = (title, str(hit["text"]))
                snippet = snippet or str(hit["text"])[:300]
            result = SearchResult(title, url, str(snippet), str(hit.get("source") or ""), hit.get("line"))
        elif isinstance(hit, (tuple, list)) and 2 <= len(hit) <= 3:
            url = str(hit[1])
            result = SearchResult(str(hit[0]), url, str(hit[2]) if len(hit) == 3 else "")
        else:
            raise TypeError(f"a hit of type {type(hit).__name__}")
        self._given[result.url] = url
        return result

    def fetch(self, url: str) -> Page:
        given = self._given.get(url, url)
        if callable(self._fetch):
            name = getattr(self._fetch, "__name__", "fetch")
            try:
                got = self._fetch(given)
            except Exception as err:
                raise _raised(name, err) from None
            return _page_from(got, url, name)
        if clean_url(given) in self._texts:   # opened by its number, or by its address as given
            title, text = self._texts[clean_url(given)]
            return text_page(text, url, title)
        if self._fetch == "web":
            from .web import fetch_web

            return fetch_web(given, timeout=self.timeout)
        raise BackendError("the search function gave no text for this page and no fetch function was given "
                           "(Browser(search=..., fetch=...))")

    def describe(self) -> str:
        return f"the results of {getattr(self._search, '__name__', 'a search function')}()"

    def where(self) -> str:
        return f"with {getattr(self._search, '__name__', 'your search function')}()"


def _raised(name: str, err: Exception) -> BackendError:
    """What the user's search or fetch function `name` raised, as its error (`intranet raised ConnectionError: ...`),
    also an exception whose message cannot be read (it came out of Browser.search)."""
    return BackendError(f"{name} raised {one_line(error_text(err).removeprefix('Error: '))}")


def _page_from(got: Any, url: str, name: str) -> Page:
    """What a user's fetch function returned, as a page, cleaned as every page is (a Page too: see own_page); a value
    whose str() raises (the user's code, running here) is an error of one line."""
    try:
        if isinstance(got, Page):
            return own_page(got)
        if isinstance(got, bytes):
            from .extract import document_page

            return document_page(got, url, url)
        if isinstance(got, str):
            return text_page(got, url, url.rsplit("/", 1)[-1] or url)
        if isinstance(got, Mapping):
            title = str(got.get("title") or url)
            if got.get("html") is not None:
                return html_page(str(got["html"]), url, title)
            return text_page(str(got.get("text") or ""), url, title)
    except ExtractError as err:
        raise BackendError(str(err)) from None
    except Exception as err:
        raise BackendError(f"{name} returned a page the browser cannot read "
                           f"({one_line(error_text(err).removeprefix('Error: '))})") from None
    raise BackendError(f"{name} returned {type(got).__name__}; return the page text, a dict with title and "
                       "text (or html), or a Page")
