"""The pages of documents already read in this kernel, by their bytes: reading a folder again (`%gptoss browse` once
more after one file changed, a new session's browser) converts only what changed.

A page is kept under a digest of the file's bytes and every other input of its conversion (its URL, name, link base,
shown name), never under a path and a time: a file rewritten within the clock's tick, or put back as it was, is
never served another's text. Each use gets its own copy of the page (a browser renames titles and links in its own),
sharing the text and wrapped lines. At most MAX_CACHED_CHARS of pages' text and source are kept, the least recently
used let go first; a document that could not be read is not kept (its error may be a deadline's).
"""
from __future__ import annotations

import copy
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable

from .page import Page

MAX_CACHED_CHARS = 100_000_000   # as much as one folder's text may be (local.MAX_FOLDER_CHARS)

_pages: OrderedDict[tuple[bytes, tuple[str | None, ...]], tuple[Page, int]] = OrderedDict()
_held = 0
_lock = threading.Lock()


def read_page(data: bytes, inputs: tuple[str | None, ...], convert: Callable[[], Page]) -> Page:
    """The page `convert` makes of the document `data` with these other `inputs`, converted only the first time (its
    lines wrapped then too); a copy of it each time."""
    global _held
    key = (hashlib.blake2b(data, digest_size=32).digest(), inputs)
    with _lock:
        kept = _pages.get(key)
        if kept is not None:
            _pages.move_to_end(key)
            return copy.copy(kept[0])
    page = convert()
    page.lines  # noqa: B018  (wrapped once, shared by every copy)
    size = len(page.text) + len(page.raw or "")
    with _lock:
        if size <= MAX_CACHED_CHARS and key not in _pages:
            _pages[key] = (page, size)
            _held += size
            while _held > MAX_CACHED_CHARS:
                _held -= _pages.popitem(last=False)[1][1]
    return copy.copy(page)


def forget() -> None:
    """Let go of every page kept."""
    global _held
    with _lock:
        _pages.clear()
        _held = 0
