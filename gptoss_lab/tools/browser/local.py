"""The default backend: the user's own documents (a folder, files, or texts in memory), searched with BM25.

Each document is read once (HTML, Markdown, text, PDF; see extract.py) and cut into passages of a few
of its wrapped lines; bm25s ranks the passages (English stop words and stems), and a search returns
each document once, at its best passage, so `open` starts at the lines that matched. A document's URL
is its path inside the folder (`manuals/greenhouse.pdf`): short, and the same wherever the folder
lives, so line numbers do not depend on it. It is written as the model sees it (a file name's control
characters, direction overrides and link syntax left out; see `_shown_names`): what the model reads it
can open and cite, and names made alike that way are told apart, as are titles several documents share (see
`_distinct_titles`). Nothing here touches the network, and
`fetch` only ever returns one of the indexed documents: the model cannot read any other file.
"""
from __future__ import annotations

import contextlib
import errno
import fnmatch
import glob
import itertools
import math
import os
import posixpath
import re
import stat
import time
import unicodedata
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np

from ...events import counted
from ...harmony import clean as harmony_clean
from ...widgets.sanitize import HIDDEN, reveal_hidden, reveal_mixed_scripts, visible_line
from .backends import Backend, BackendError
from .cache import read_page
from .extract import DOCUMENT_SUFFIXES, ExtractError, document_page, own_lines, with_url
from .page import (
    MAX_TITLE_CHARS, Page, SearchResult, maybe_truncate, merge_whitespace, replace_special_chars, strip_links,
    wrap_lines,
)

PASSAGE_LINES = 8            # wrapped lines per indexed passage; passages overlap by half
SNIPPET_CHARS = 240
PROGRESS_FROM = 20           # files: show a progress bar from this many on
MAX_FILE_BYTES = 50_000_000
MAX_FOLDER_BYTES = 1_000_000_000    # all the files read, together
MAX_FOLDER_CHARS = 100_000_000      # all their text: kept with its lines and index, a MB of text holds 6-10 MB
MAX_READ_SECONDS = 600.0            # reading them all: each PDF may take 60 s, each HTML file 10 s
MAX_DOCUMENTS = 50_000              # files found in the folders (20,000 small ones: 5 s to find, 10 s to read)
MAX_LIST_SECONDS = 60.0             # looking for them (a home folder holds millions of files)
LIST_PROGRESS_AFTER = 1.0           # s: looking for documents longer shows a progress bar
READ_PROGRESS_AFTER = 1.0           # s: reading a PDF's pages this long into reading shows one for fewer files too
READ_PROGRESS_BYTES = 2_000_000     # a file this large shows the reading bar, naming it (10 MB of text: 6.6 s to read)
INDEX_PROGRESS_AFTER = 1.0          # s: indexing the documents longer shows a progress bar
_KERNEL_FOLDERS = (Path("/proc"), Path("/sys"))   # files of size 0 that wait for what they report (/proc/kmsg)
_OPENS_IN_FOLDERS = os.open in os.supports_dir_fd   # a file opened from its folder's descriptor (not on Windows)
# a folder on the way to a document, opened to be searched (O_PATH: as a path is, without read permission), never a link
_FOLDER_FLAGS = getattr(os, "O_PATH", os.O_RDONLY) | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
_MADE_A_LINK = "made a link since the folder was listed; not followed"
_RULES = re.compile(r"(?<!\S)(?:[-=*_~]{2,}|#+)(?!\S)")   # Markdown rules and heading marks, not words
# Chinese and Japanese (Han, kana) are written without spaces between words: each of their characters is a word of the
# index, as the words of other scripts are bm25s's runs of 2 or more word characters (a sentence of them was one word,
# and a search for 猫头鹰 in "猫头鹰在黄昏时捕猎" found nothing)
_UNSPACED = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_WORDS = re.compile(f"[^\\W{_UNSPACED}]{{2,}}|(?=\\w)[{_UNSPACED}]")
_PERCENT_ESCAPE = re.compile(r"%(?=[0-9A-Fa-f]{2})")   # what a display decodes as a URL's escape (`%41` is `A`)
_KINDS = {".pdf": "PDF", ".md": "Markdown", ".markdown": "Markdown", ".html": "HTML", ".htm": "HTML",
          ".xhtml": "HTML"}


@dataclass
class _Passage:
    doc: int
    line: int


class LocalBackend(Backend):
    """Documents in this process, ranked with BM25; see `from_paths` and `from_texts`."""

    def __init__(self, pages: Iterable[Page], *, files: Mapping[str, Path] | None = None,
                 roots: Iterable[str] = (), skipped: Iterable[tuple[str, str]] = (),
                 kinds: Iterable[str] = (), left_out: str | None = None, linked: Iterable[str] = (),
                 others: Mapping[str, int] | None = None, progress: bool | None = None,
                 stats: Mapping[str, os.stat_result] | None = None) -> None:
        self.pages: list[Page] = list(pages)
        self.files = dict(files or {})                    # url -> the file it was read from
        self.roots = list(roots)
        self.skipped = list(skipped)                      # (name, why) of files that could not be read
        self.left_out = left_out                          # why looking for more documents stopped, if it did
        self.linked = list(linked)                        # urls of hard links to a file also elsewhere on disk
        self.kinds = Counter(kinds)
        self.others = Counter(others or {})               # suffix -> files of no kind the browser reads, passed over
        # url -> the file's modification time and size when it was read (see `changed`)
        self._read_as = {url: (found.st_mtime_ns, found.st_size) for url, found in (stats or {}).items()}
        import Stemmer

        from .bm25 import FastTokenizer   # (bm25s and scipy imported before the bar's second starts: a second on a
                                          # busy machine, which showed a small folder's bar)
        self._tokenizer = FastTokenizer(splitter=_WORDS.findall, stemmer=Stemmer.Stemmer("english").stemWord,
                                        stopwords="en")
        with _Indexing(progress) as indexing:
            _distinct_titles(self.pages, indexing)
            self._name(indexing)
            self._index(indexing)

    def _name(self, indexing: _Indexing) -> None:
        """The names each document is opened by (see `_named`), counted on the indexing bar (the names other than
        URLs too: for 50,000 files they took a second after the count)."""
        self._by_name: dict[str, int] = {}                # url, file URI, path or file name -> page
        folded: dict[str, set[int]] = {}                  # each of those names, case folded -> pages

        def add(name: str, i: int) -> None:
            if name not in self._by_name:
                self._by_name[name] = i
                folded.setdefault(name.casefold(), set()).add(i)

        aliases: dict[str, set[int]] = {}
        for i, page in indexing.stage("names", self.pages):
            add(page.url, i)
            file = self.files.get(page.url)
            for name in (*((file.as_uri(), str(file)) if file else ()), page.url.rsplit("/", 1)[-1]):
                aliases.setdefault(name, set()).add(i)
        for _, (name, found) in indexing.stage("other names", list(aliases.items())):
            if len(found) == 1:   # never another document's URL (`a/notes.txt` opened for `notes.txt`), nor one of
                add(name, *found)  # two files of that name
        # a name in another case (`Owls.md`), where it names one document only (not `owls.md` beside `OWLS.md`)
        self._by_folded = {name: found.pop() for name, found in folded.items() if len(found) == 1}

    # ------------------------------------------------------------ construction

    @classmethod
    def from_paths(cls, paths: Iterable[str | Path], *, progress: bool | None = None) -> LocalBackend:
        """Folders (searched recursively for documents), files and glob patterns."""
        files, roots, outside, stopped, others = collect(paths, progress=progress is not False)
        if not files:
            left_out = _passed_over(others)
            left_out += f"; left out {_written_out(outside[0][0])}: {outside[0][1]}" if outside else ""
            left_out += f"; stopped looking: {stopped}" if stopped else ""
            raise BackendError(f"no documents found in {', '.join(roots)} (the browser reads "
                               f"{', '.join(sorted(DOCUMENT_SUFFIXES))}{left_out})")
        from ...widgets import text_bar

        # from PROGRESS_FROM files at once, else once a PDF's pages are read READ_PROGRESS_AFTER in (see `_on_page`)
        soon = len(files) >= PROGRESS_FROM if progress is None else progress
        pages, paths, skipped, kinds, stats = [], {}, list(outside), [], {}
        deadline, total, chars = time.monotonic() + MAX_READ_SECONDS, 0, 0
        late = f"not read: the browser reads documents for at most {MAX_READ_SECONDS:g} s"
        with text_bar(total=len(files), desc="Reading documents", unit="file", disable=progress is False,
                      delay=0 if soon else math.inf, miniters=0) as bar:   # 0: redrawn for a PDF's pages too
            for (path, name), url in zip(files, _shown_names([name for _, name in files])):   # the user is told `name`
                try:
                    if time.monotonic() > deadline:
                        raise ExtractError(late)
                    data, found = _read(path, MAX_FOLDER_BYTES - total)
                    total += len(data)
                    if len(data) >= READ_PROGRESS_BYTES:   # read for seconds under no bar in a folder of a few files
                        bar.delay = 0   # (tqdm's own: shown from now on)
                        bar.set_postfix_str(maybe_truncate(url, 60))
                    inputs = (url, _readable(path.name), path.as_uri(), PurePosixPath(url).name)
                    page = read_page(data, inputs, lambda: document_page(  # converted (and wrapped) under the bar
                        data, url, inputs[1], base=inputs[2], deadline=deadline, shown_name=inputs[3],
                        on_page=_on_page(bar, url)))
                    if chars + len(page.text) > MAX_FOLDER_CHARS:   # a PDF's bytes tell little of its text
                        raise ExtractError(f"not kept: the browser keeps at most {MAX_FOLDER_CHARS / 1e6:,g} million "
                                           "characters of documents' text in all")
                    chars += len(page.text)
                except (ExtractError, OSError) as err:   # past the deadline: also the document it cut short
                    skipped.append((name, late if time.monotonic() > deadline else _why(err)))
                    continue
                finally:
                    bar.set_postfix_str("", refresh=False)
                    bar.update()
                pages.append(page)
                paths[url], stats[url] = path, found
                kinds.append(_kind(path.name))
            # the indexing bar follows a reading bar that showed at once: it waited for its own delay, 1-3 s of silence
            shown = progress if progress is not None else _was_shown(bar) or None
        if not pages:
            first = f"{_written_out(skipped[0][0])}: {_written_out(skipped[0][1])}"
            raise BackendError(f"the document could not be read ({first})" if len(skipped) == 1 else
                               f"none of the {len(skipped)} documents could be read (first: {first})")
        # links between the documents lead to their names, also written unescaped (`café.html`, `a b.html`: as_uri
        # escapes them, and the link stayed `file:///home/me/docs/café.html`); none to look up, no names made (0.3 s
        # of no bar for 50,000 files)
        if any(page.urls for page in pages):
            names = {unquote(path.as_uri()): name for name, path in paths.items()}
            for page in pages:
                page.urls = {i: names.get(unquote(link), link) for i, link in page.urls.items()}
        return cls(pages, files=paths, roots=roots, skipped=skipped, kinds=kinds, left_out=stopped,
                   linked=_hard_linked(stats), others=others, progress=shown, stats=stats)

    @classmethod
    def from_texts(cls, texts: Mapping[str | os.PathLike[str], str | bytes]) -> LocalBackend:
        """Documents given as text or as a file's bytes (a PDF's), by name, a str or a path (the name is the page's
        URL and source; `.md`/`.html`/`.pdf` names are read as Markdown/HTML/PDF)."""
        if not texts:
            raise BackendError("no documents were given")
        names = [harmony_clean(os.fspath(name) if isinstance(name, os.PathLike) else str(name)) for name in texts]
        pages = []
        for name, text, shown in zip(names, texts.values(), _shown_names(names)):
            try:
                pages.append(document_page(_given_bytes(text), shown, name, shown_name=PurePosixPath(shown).name))
            except ExtractError as err:
                raise BackendError(f"{shown}: {err}") from None
        return cls(pages, roots=["memory"], kinds=map(_kind, names))

    # ------------------------------------------------------------ the index

    def _index(self, indexing: _Indexing) -> None:
        """Cut the pages in passages and index them (see bm25.py), each step counted on the indexing bar (bm25s's
        own bars are not shown: its tokenizing bar showed for 20,000 passages and more, none of the rest). Passages overlap by half: each half (and each title) is tokenized once and a
        passage's words are its title's and its two halves' (each line was tokenized twice, each title once per
        passage: indexing /usr/share/doc's 1,037 documents took 8.5 s of CPU, now 7)."""
        from bm25s.tokenization import Tokenized

        from .bm25 import FastBM25

        half = PASSAGE_LINES // 2
        self._passages: list[_Passage] = []
        texts: list[str] = []                      # each page's title, then its halves, tokenized once each
        made: list[tuple[int, int, int]] = []      # each passage: its title's, its first and its second half's text
        for d, page in indexing.stage("passages", self.pages):
            lines, header = page.lines, with_url(page.url, "")
            words = strip_links("\n".join(lines)).split("\n")   # a link wrapped across lines keeps its line breaks
            # after the `URL:` header, however many lines a long URL wraps over (its rest was indexed and shown)
            first = len(wrap_lines(header.removesuffix("\n"))) if page.text.startswith(header) else 0
            title = len(texts)
            texts.append(page.title)
            starts = range(first, max(first + 1, len(lines) - half), half)
            halves = {start: len(texts) + k for k, start in enumerate(range(first, starts[-1] + PASSAGE_LINES, half))}
            texts += ["\n".join(words[start:start + half]) for start in halves]
            for start in starts:
                if any(line.strip() for line in lines[start:start + PASSAGE_LINES]):
                    self._passages.append(_Passage(d, start))
                    made.append((title, halves[start], halves[start + half]))
        self._passage_docs = np.array([passage.doc for passage in self._passages], dtype=np.int64)
        self._retriever = None
        if made:
            ids = [found for _, found in indexing.stage("words", self._tokenizer.tokenize(texts, return_as="stream"),
                                                        len(texts))]
            vocab = self._tokenizer.get_vocab_dict()
            empty = [vocab[""]]   # what bm25s gives a text of no words (a word of its own, never beside others)
            ids = [[] if found == empty else found for found in ids]
            passages = [ids[a] + ids[b] + ids[c] or empty[:] for a, b, c in made]   # title, halves
            self._retriever = FastBM25()
            for _ in indexing.stage("the index", [None]):   # one step of array operations (2 s for 50,000 files)
                self._retriever.index(Tokenized(ids=passages, vocab=vocab), show_progress=False)

    def search(self, query: str, topn: int) -> list[SearchResult]:
        if self._retriever is None or topn <= 0:
            return []
        words = self._tokenizer.tokenize([query], update_vocab=False, return_as="string", show_progress=False)
        if not any(words[0]):
            return []
        results: list[SearchResult] = []
        for passage_id in self._best_passages(self._retriever.get_scores([w for w in words[0] if w]), topn):
            passage = self._passages[passage_id]
            page = self.pages[passage.doc]
            results.append(SearchResult(page.title, page.url, _snippet(page, passage.line, query), page.url,
                                        passage.line))
        return results

    def _best_passages(self, scores: np.ndarray, topn: int) -> list[int]:
        """The best-scoring passage of each of the `topn` best documents (scores above 0), best first: every
        passage is ranked, so one long document whose passages all match cannot fill a search with itself (a
        page of 1,500 lines of `zebra` made the search for `zebra` show that document alone)."""
        order = np.argsort(-scores, kind="stable")
        _, first = np.unique(self._passage_docs[order], return_index=True)   # each document's best, by rank
        best = [int(order[at]) for at in np.sort(first)[:topn]]
        return [i for i in best if scores[i] > 0]

    def fetch(self, url: str) -> Page:
        i = self._named(url.strip())
        if i is None and (why := self._skipped_why(url.strip())):
            raise BackendError(f"not read: {why}")
        if i is None:
            which = "the one document" if len(self.pages) == 1 else f"one of the {len(self.pages)} documents"
            raise BackendError(f"not {which} (open a search result by its id, or a document by its path)")
        return self.pages[i]

    def changed(self, urls: Iterable[str]) -> str | None:
        """Said when the files of documents among `urls` were edited or removed since they were read: the model reads
        the text they were indexed with (what a search finds, what citations quote), and the user, who edited one,
        thought it read the new one. A search's results drawn from such files are said so as an open of one is."""
        found = [(url, happened) for url in dict.fromkeys(urls) if (happened := self.happened(url))]
        if not found:
            return None
        if len(found) == 1:
            url, happened = found[0]
            return f"{_written_out(url)} was {happened} since the folder was read: the model reads it as it was " \
                "then; %gptoss browse again to read it anew"
        named = ", ".join(_written_out(url) for url, _ in found[:3]) + (", ..." if len(found) > 3 else "")
        what = "changed" if all(happened == "changed on disk" for _, happened in found) else "changed or removed"
        return f"{len(found)} of these documents ({named}) were {what} on disk since the folder was read: the model " \
            "reads them as they were then; %gptoss browse again to read them anew"

    def happened(self, url: str) -> str | None:
        """What became of the file of the document `url` since it was read ("changed on disk", "removed from disk"),
        None if nothing (or it is no file)."""
        file, was = self.files.get(url), self._read_as.get(url)
        if file is None or was is None:
            return None
        try:
            now = os.stat(file)
        except OSError:
            return "removed from disk"
        return None if (now.st_mtime_ns, now.st_size) == was else "changed on disk"

    def _skipped_why(self, name: str) -> str | None:
        """Why the file the folder holds at `name` was not read (a link loop, unreadable), None for no such file: it
        was "not one of the documents", as a file that is not there."""
        wanted = posixpath.normpath(name)
        return next((_written_out(why) for skipped, why in self.skipped if posixpath.normpath(skipped) == wanted), None)

    def _named(self, name: str) -> int | None:
        """The document `name` names: as shown, or as the model may write it back, with its lookalike letters decoded
        (`p\\u0430ypal.md`), as a `file:` URI's path, with `./` or doubled slashes (`./owls.md` was "not one of the 2
        documents"), or in another case where that names one document only."""
        names = [name, reveal_mixed_scripts(name)]
        if name.startswith("file:"):
            with contextlib.suppress(ValueError):   # `file://[x`: urllib's "Invalid IPv6 URL"
                names.append(unquote(urlparse(name).path))
        names += [posixpath.normpath(written) for written in names if written]
        found = next((self._by_name[written] for written in names if written in self._by_name), None)
        return found if found is not None else next(
            (self._by_folded[folded] for written in names if (folded := written.casefold()) in self._by_folded), None)

    # ------------------------------------------------------------ telling the user

    def describe(self) -> str:
        kinds = ", ".join(f"{n:,} {kind}" for kind, n in self.kinds.most_common())
        lines = sum(own_lines(p.text) for p in self.pages)
        where = f" in {', '.join(self.roots)}" if self.roots and self.roots != ["memory"] else ""
        text = f"{counted(len(self.pages), 'document')}{where} ({kinds}; {counted(lines, 'line')})"
        if self.linked:   # read as the file it is, which no path tells apart: said, so the user can look
            text += f"; {len(self.linked)} {'is a hard link' if len(self.linked) == 1 else 'are hard links'} to a " \
                f"file also elsewhere on disk, maybe outside the folder ({_written_out(self.linked[0])}" + \
                (", ..." if len(self.linked) > 1 else "") + ")"
        if self.skipped:  # a file's name can hold line breaks and terminal sequences: written out, on one line
            name, why = self.skipped[0]
            text += f"; skipped {len(self.skipped)} that could not be read ({_written_out(name)}: " \
                f"{_written_out(why)}" + (", ..." if len(self.skipped) > 1 else "") + ")"
        if partial := [page for page in self.pages if page.unread]:
            text += f"; read {len(partial)} in part ({_written_out(partial[0].url)}: {partial[0].unread}" + \
                (", ..." if len(partial) > 1 else "") + ")"
        if self.left_out:
            text += f"; left out the rest: {self.left_out}"
        if changed := [url for url in self._read_as if self.happened(url)]:   # `%gptoss status` says it too
            text += f"; {len(changed)} changed on disk since read ({_written_out(changed[0])}" + \
                (", ..." if len(changed) > 1 else "") + "): %gptoss browse again to read them anew"
        return text + _passed_over(self.others)   # a folder of Word files and one .txt read as "1 document", unsaid

    def where(self) -> str:
        return f"your {counted(len(self.pages), 'document')}"


def collect(paths: Iterable[str | Path], *, progress: bool = True) -> tuple[
        list[tuple[Path, str]], list[str], list[tuple[str, str]], str | None, Counter[str]]:
    """The document files under `paths` (folders recursively, hidden ones skipped; files; globs), each
    with its name (its path inside the folder it was found in; the whole path where two would have the
    same name), the roots as given, (name, why) of the files left out because a link leads from a
    folder (or a glob's folder) to a file outside it: the browser reads nothing outside what it was given;
    why looking stopped early (MAX_DOCUMENTS found, or MAX_LIST_SECONDS passed), if it did; and the suffixes of the
    files in the folders that are of no kind the browser reads, counted. A progress bar shows the search once it takes
    longer than LIST_PROGRESS_AFTER (unless not `progress`)."""
    files: dict[Path, str] = {}
    roots: list[str] = []
    outside: list[tuple[str, str]] = []
    with _Search(progress) as search:
        for item in map(str, paths):
            roots.append(item)
            if search.goes_on():
                _collect_one(item, files, outside, search)
    names = {path: _readable(name) for path, name in files.items()}
    counts = Counter(names.values())
    return [(path, name if counts[name] == 1 else _readable(path.as_posix())) for path, name in names.items()], \
        roots, [(_readable(name), why) for name, why in outside], search.stopped, search.others


class _Search:
    """Where looking for documents stands: it stops at MAX_DOCUMENTS files or after MAX_LIST_SECONDS (what was
    found is kept), and counts the files on a progress bar shown once it takes longer than LIST_PROGRESS_AFTER."""

    def __init__(self, progress: bool) -> None:
        from ...widgets import text_bar

        self.deadline = time.monotonic() + MAX_LIST_SECONDS
        self.stopped: str | None = None
        self.count = 0   # files found (a disabled bar counts none: without progress, a folder's millions were taken)
        self.others: Counter[str] = Counter()   # suffix -> files of no kind the browser reads, passed over
        # redrawn as often as it is late to show: a notebook's bars are redrawn every 3 s, and one of a listing of 2.5 s
        # (50,000 files) never showed
        self.bar = text_bar(desc="Looking for documents", unit=" files", delay=LIST_PROGRESS_AFTER,
                            mininterval=LIST_PROGRESS_AFTER, disable=not progress, miniters=0)   # 0: see `passed_over`

    def __enter__(self) -> _Search:
        return self

    def __exit__(self, *_: object) -> None:
        self.bar.close()

    def goes_on(self) -> bool:
        """Whether to look further (asked before each folder is listed and each file is taken)."""
        if self.stopped is None and self.count >= MAX_DOCUMENTS:
            self.stopped = f"the browser reads at most {MAX_DOCUMENTS:,} documents"
        elif self.stopped is None and time.monotonic() > self.deadline:
            self.stopped = f"looking for documents took longer than {MAX_LIST_SECONDS:g} s"
        return self.stopped is None

    def found(self) -> None:
        """Count one more file found (the bar is redrawn at most 10 times a second)."""
        self.count += 1
        self.bar.update()

    def passed_over(self, suffix: str) -> None:
        """Count a file of no kind the browser reads (by its suffix), the bar redrawn as time passes: it moved only for
        documents, and a folder of 100,000 images and one note was 3 s of silence."""
        self.others[suffix] += 1
        self.looked()

    def looked(self) -> None:
        """A file looked at and not taken (of another kind, or not matching a glob): the bar is redrawn as time passes."""
        self.bar.update(0)


def _collect_one(text: str, files: dict[Path, str], outside: list[tuple[str, str]], search: _Search) -> None:
    """Add the documents of one folder, file or glob, as given (`text`), to `files`; see `collect`."""
    path = Path(os.path.expanduser(text))   # pathlib's raised RuntimeError for ~user of no such user
    try:
        if path.is_dir():
            real = path.resolve()   # once, not once a document: the folder listed, so what it lists is resolved
            documents, links = _documents_in(real, search)
            for found, name, is_link in documents:
                if is_link:   # the folders entered are none: only a link's own file may lie outside
                    _add_inside(files, outside, found, name, real, text)
                else:
                    files.setdefault(found, name)
            for link, name in links:   # (one inside the folder leads to files read where they are)
                if not link.resolve().is_relative_to(real):
                    outside.append((name, f"a link to a folder outside {text}"))
        elif path.is_file():
            files.setdefault(path.resolve(), path.name)
            search.found()
        elif path.exists():   # a pipe, socket or device: looked at, never opened (a pipe waits for a writer)
            raise BackendError(f"not a regular file: {text}")
        elif why := _dead_end(path):   # was "no such file or folder", a name the user sees in the folder
            raise BackendError(f"{why}: {text}")
        elif glob.has_magic(text):
            folder = Path(*itertools.takewhile(lambda part: not glob.has_magic(part), path.parts))
            matches = _matches(folder, path.relative_to(folder).parts, search)
            if not matches and not search.stopped:
                raise BackendError(f"no files match {text}")
            real = folder.resolve()
            for match in matches:   # named by its path inside the glob's folder, as a folder's files are
                _add_inside(files, outside, match, match.relative_to(folder).as_posix(), real, text)
        else:
            raise BackendError(f"no such file or folder: {text}")
    except OSError as err:   # a name too long, a folder on the way that cannot be entered: was a traceback
        raise BackendError(f"cannot read {text}: {err.strerror or err}") from None


def _read(path: Path, room: int) -> tuple[bytes, os.stat_result]:
    """The bytes and stat of the regular file at `path` (where `collect` found links lead), refused past
    MAX_FILE_BYTES or `room` (what is left of MAX_FOLDER_BYTES); nothing that could wait is read: the kernel's files
    (/proc, /sys), and a pipe or device (opened without waiting, then refused); nor through a link made since the
    folder was listed, the file or a folder on its way (see `_open_unlinked`)."""
    if any(path.is_relative_to(folder) for folder in _KERNEL_FOLDERS):
        raise ExtractError(f"a file of the kernel's (under /{path.parts[1]}), not a document")
    with open(path, "rb", opener=lambda _, mode: _open_unlinked(path, mode | getattr(os, "O_NONBLOCK", 0))) as file:
        size = os.fstat(file.fileno())
        if not stat.S_ISREG(size.st_mode):
            raise ExtractError("not a regular file")
        if size.st_size > MAX_FILE_BYTES:
            raise ExtractError(f"larger than {MAX_FILE_BYTES // 1_000_000} MB")
        if size.st_size > room:
            raise ExtractError(f"not read: the browser reads at most {MAX_FOLDER_BYTES / 1e6:,g} MB of "
                               "documents in all")
        return file.read(size.st_size), size


def _open_unlinked(path: Path, flags: int) -> int:
    """A descriptor of the file at `path` (absolute, without links: `collect` resolved it), opened through no link:
    each folder on the way is opened from the one above it without following one, so a folder swapped for a link
    after the path was checked is refused (O_NOFOLLOW guards only the file's own name: the link was followed to a
    file outside the folder). Where a file cannot be opened from its folder's descriptor (Windows), the path is
    checked, then opened."""
    if not _OPENS_IN_FOLDERS:
        if path.resolve() != path:
            raise ExtractError(_MADE_A_LINK)
        return os.open(path, flags)
    folder = os.open(path.anchor, _FOLDER_FLAGS)
    try:
        for part in path.parts[1:-1]:
            folder, above = os.open(part, _FOLDER_FLAGS, dir_fd=folder), folder
            os.close(above)
        return os.open(path.name, flags | os.O_NOFOLLOW, dir_fd=folder)
    except OSError as err:   # a folder that is a link now is not one (ENOTDIR), the file a link (ELOOP)
        if err.errno in (errno.ENOTDIR, errno.ELOOP):
            raise ExtractError(_MADE_A_LINK) from None
        raise
    finally:
        os.close(folder)


class _Indexing:
    """The bar of indexing the documents: shown once it takes longer than INDEX_PROGRESS_AFTER (a folder of 50,000
    files was indexed for 6-10 s after its reading bar, with bm25s's tokenizing bar alone in the middle), at once if
    `progress` (after a reading bar that showed), never if it is False; its steps (titles, names, passages, words,
    the index) counted on it one after the other."""

    def __init__(self, progress: bool | None) -> None:
        from ...widgets import text_bar

        # redrawn as often as it is late to show (a notebook's bar is redrawn every 3 s: a first one at 3 s)
        self.bar = text_bar(desc="Indexing documents", delay=0 if progress else INDEX_PROGRESS_AFTER,
                            mininterval=INDEX_PROGRESS_AFTER, disable=progress is False, miniters=0, total=1,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}]")

    def __enter__(self) -> _Indexing:
        return self

    def __exit__(self, *_: object) -> None:
        self.bar.close()

    def stage(self, name: str, items: Iterable[Any], total: int | None = None) -> Iterator[tuple[int, Any]]:
        """`items`, numbered, each counted on the bar under `name`; a bar already shown names the step at once (the
        index is built in one step, which has no count to show)."""
        bar = self.bar
        bar.n, bar.last_print_n = 0, 0
        bar.total = len(items) if total is None else total
        bar.set_description_str(f"Indexing documents ({name})", refresh=False)
        if not bar.disable and bar._time() - bar.start_t >= bar.delay:
            bar.refresh()
        for i, item in enumerate(items):
            yield i, item
            bar.update()


def _was_shown(bar: Any) -> bool:
    """Whether an open tqdm bar with a delay was drawn (tqdm's own test, as it closes, of whether it has a bar to end)."""
    return not bar.disable and bar.last_print_t >= bar.start_t + bar.delay


def _on_page(bar: Any, url: str) -> Callable[[int, int], None]:
    """What tells the reading bar which page of a PDF (`url`) is read, and shows the bar of a few files from
    READ_PROGRESS_AFTER into reading: a book of 4,900 pages read for a minute under no bar, then was said to have
    taken too long. (A few other files show none: they are read in seconds, a PDF's pages can take a minute.)"""
    def said(number: int, count: int) -> None:
        bar.delay = min(bar.delay, READ_PROGRESS_AFTER)   # tqdm's own: the time from the bar's start it shows after
        bar.set_postfix_str(f"{maybe_truncate(url, 60)}: page {number:,} of {count:,}", refresh=False)
        bar.update(0)   # redrawn at the bar's pace (tqdm's mininterval)

    return said


def _hard_linked(stats: Mapping[str, os.stat_result]) -> list[str]:
    """The documents (by URL) that are hard links to a file with more names than the folder holds: it is also
    elsewhere on disk, maybe outside the folder, where no path shows it (a backup's, a package store's files)."""
    inside = Counter((file.st_dev, file.st_ino) for file in stats.values())
    return [url for url, file in stats.items() if file.st_nlink > inside[file.st_dev, file.st_ino]]


def _documents_in(folder: Path, search: _Search) -> tuple[list[tuple[Path, str, bool]], list[tuple[Path, str]]]:
    """The document files under `folder`, sorted, each with its path inside it and whether it is a link (as the
    listing saw it: each file looked at again after the listing, with no bar moving, was a second of silence for
    20,000 files), and the links to folders passed over, with their paths inside it: hidden folders are not entered,
    nor links to folders (said, so that a folder whose documents lie behind one is not just "no documents found"),
    and a folder of any depth is walked without recursion, shallow folders first (what `search` stops short of is
    what lies deepest)."""
    found: list[tuple[Path, str, bool]] = []
    links: list[tuple[Path, str]] = []
    todo = deque([(folder, "")])
    while todo and search.goes_on():
        here, inside = todo.popleft()
        try:
            with os.scandir(here) as listed:
                entries = sorted(listed, key=lambda entry: entry.name)
        except OSError:  # a folder that cannot be listed is left out, as rglob did
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            name = inside + entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    todo.append((Path(entry.path), name + "/"))
                elif entry.is_symlink() and _dead_end(Path(entry.path)):   # a loop: is_dir raised, and it was left
                    if Path(entry.name).suffix.lower() in DOCUMENT_SUFFIXES and search.goes_on():   # out unsaid
                        found.append((Path(entry.path), name, True))   # `_add_inside` says why it is not read
                        search.found()
                elif entry.is_symlink() and entry.is_dir():
                    links.append((Path(entry.path), name))
                elif entry.is_file() and (suffix := Path(entry.name).suffix.lower()) not in DOCUMENT_SUFFIXES:
                    search.passed_over(suffix)
                elif (entry.is_file() or Path(entry.name).suffix.lower() in DOCUMENT_SUFFIXES) and search.goes_on():
                    found.append((Path(entry.path), name, entry.is_symlink()))   # (a pipe or device named as a
                    search.found()        # document, or a link to one, was passed over unsaid: `_read` refuses it)
            except OSError:
                continue
    # sorted as paths are, by their parts (`a/b.md` before `a-b.md`)
    return sorted(found, key=lambda item: item[1].split("/")), sorted(links, key=lambda item: item[1].split("/"))


def _matches(folder: Path, pattern: tuple[str, ...], search: _Search) -> list[Path]:
    """The files under `folder` whose path inside it matches the glob `pattern` (its parts), sorted, as glob
    finds them (hidden names only where the pattern's part starts with a dot), but `**` enters no link to a
    folder (glob's went round a link to `.` without end, and through a link to `/` walked the whole disk); as
    many as `search` allows."""
    found: set[Path] = set()
    seen: set[tuple[Path, int]] = set()
    todo = [(folder, 0)]
    while todo and search.goes_on():
        here, at = todo.pop()
        if (here, at) in seen:
            continue
        seen.add((here, at))
        if at == len(pattern):
            if (here.is_file() or _dead_end(here)) and here not in found:
                found.add(here)
                search.found()
            continue
        part = pattern[at]
        if not glob.has_magic(part):
            todo.append((here / part, at + 1))
            continue
        if part == "**":
            todo.append((here, at + 1))
        try:
            with os.scandir(here) as entries:
                for entry in entries:
                    search.looked()   # the bar moved on matches only: a glob over 100,000 images was 3 s of silence
                    if entry.name.startswith(".") and not part.startswith("."):
                        continue
                    if part == "**":
                        if entry.is_dir(follow_symlinks=False):
                            todo.append((Path(entry.path), at))
                        if at + 1 == len(pattern):  # a last `**` matches the files too
                            todo.append((Path(entry.path), at + 1))
                    elif fnmatch.fnmatch(entry.name, part):
                        todo.append((Path(entry.path), at + 1))
        except OSError:  # not a folder, or one that cannot be listed
            continue
    return sorted(found)


def _add_inside(files: dict[Path, str], outside: list[tuple[str, str]], found: Path, name: str, folder: Path,
                given: str) -> None:
    """Add `found` under `name` when it really lies in `folder` (resolved: links followed), else say why not."""
    if why := _dead_end(found):   # resolve() raised RuntimeError for a loop
        outside.append((name, why))
        return
    real = found.resolve()
    if real.is_relative_to(folder):
        files.setdefault(real, name)
    else:
        outside.append((name, f"a link to a file outside {given}"))


def _dead_end(path: Path) -> str | None:
    """Why the link at `path` leads to no file (a loop of links, a link to nothing), None for any other path."""
    if not path.is_symlink() or path.exists():
        return None
    try:
        os.stat(path)
    except OSError as err:
        return "a loop of links, which leads to no file" if err.errno == errno.ELOOP else \
            "a link to a file that is not there"
    return None


def _why(err: ExtractError | OSError) -> str:
    """Why a file was not read, in words: the system's without its number and the path already named
    (`[Errno 13] Permission denied: '/home/me/docs/owls.md'` is `Permission denied`)."""
    return err.strerror if isinstance(err, OSError) and err.strerror else str(err)


def _readable(name: str) -> str:
    """A file name as text: bytes of it that are not UTF-8 (kept by Python as lone surrogates, which cannot be
    written out as UTF-8: a transcript's HTML, Markdown and text raised UnicodeEncodeError) read as Windows-1252,
    as a document's text is."""
    raw = os.fsencode(name)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", "replace")


def _shown_names(names: list[str]) -> list[str]:
    """Each document's name as the model reads, opens and cites it: on one line, without the control characters,
    terminal sequences and direction overrides a page's text loses (`owls\\x1b[31m.txt` is `owls.txt`) nor the
    invisible characters a name can hide (`owls\\u200d.txt`, a zero-width joiner, read as `owls.txt`), its accents
    composed (`cafe\\u0301.txt`, as macOS writes names, read as the `café.txt` beside it), `†` (it ends
    a result's label) as `‡`, and a `%` that a display would decode with what follows (`x%41.txt` showed as `xA.txt`)
    as `％`. A name that is not its own shown name, or that another file's already is, is told apart by a number
    (`owls (2).txt`): no two documents share a name, and a name already clean always stays the file's own."""
    shown = [_clean_name(name) or "unnamed" for name in names]
    unique = [""] * len(names)
    taken: set[str] = set()
    tried: dict[str, int] = {}   # shown name -> the number to try next (10,000 files named alike: not 10,000² tries)
    # names already clean first (two can be alike too: `_readable` reads the bytes `caf\xe9` as `café`), then the rest
    for i in sorted(range(len(names)), key=lambda i: shown[i] != names[i]):
        name, suffix = shown[i], PurePosixPath(shown[i]).suffix
        k = tried.get(name, 1)
        while (numbered := name if k == 1 else f"{name.removesuffix(suffix)} ({k}){suffix}") in taken:
            k += 1
        unique[i], tried[name] = numbered, k + 1
        taken.add(numbered)
    return unique


def _clean_name(name: str) -> str:
    """`name` as `_shown_names` shows it, before names made alike are told apart."""
    name = unicodedata.normalize("NFC", merge_whitespace(HIDDEN.sub("", replace_special_chars(name))))
    return reveal_mixed_scripts(_PERCENT_ESCAPE.sub("％", name.strip().replace("†", "‡")))


def _distinct_titles(pages: list[Page], indexing: _Indexing) -> None:
    """Give each page a title no other page's looks like (alike once compatibility forms are folded: `ｒeadme`): a
    title that several documents share gets its document's path after it (`Notes — a/readme.md`), a title that is
    the file name becomes the path (`a/readme.md`), so that results, headers and citations tell them apart where
    only the label did; a title no other page has stays as it is. A path in a title cannot be taken by another
    document: a title made alike anyway (a heading `Notes — b/readme.md`) is numbered (`(2)`). A title that is another
    document's path, or ends as the lab names one (`… — notes/dosage.md`), gets its own path too: an HTML file titled
    `notes/dosage.md` was cited, and spoken, as that document. Each page's title and path are folded once, counted on
    the indexing bar (0.66 s for 50,000 documents, under no bar)."""
    looks = [(_looks(page.title), _looks(page.url)) for _, page in indexing.stage("titles", pages)]
    counts = Counter(title for title, _ in looks)
    paths = {own for _, own in looks}

    def claims_another(title: str, own: str) -> bool:
        return any(name in paths and name != own for name in (title, title.rpartition(" — ")[2]))

    moved = {i for i, (title, own) in enumerate(looks) if counts[title] > 1 or claims_another(title, own)}
    taken = {title for i, (title, _) in enumerate(looks) if i not in moved}
    for page in (pages[i] for i in sorted(moved)):
        if _looks(page.title) == _looks(PurePosixPath(page.url).name):
            title = page.url
        else:
            where = f" — {page.url}"
            title = maybe_truncate(page.title, max(MAX_TITLE_CHARS - len(where), 40)) + where
        k, numbered = 2, title
        while _looks(numbered) in taken:
            numbered, k = f"{title} ({k})", k + 1
        taken.add(_looks(numbered))
        page.title = numbered


def _looks(title: str) -> str:
    """What a title looks like, for telling titles apart: `ＲＥＡＤＭＥ` and `README` alike."""
    return unicodedata.normalize("NFKC", title)


def _passed_over(others: Counter[str]) -> str:
    """What a message of the documents found (or that none were) adds of the files of other kinds that were (`; passed
    over 3 files of other kinds: .docx, .png`): a folder of Word files was told "no documents found", as an empty one is."""
    if not others:
        return ""
    kinds = [suffix or "no suffix" for suffix, _ in others.most_common(8)]
    return f"; passed over {counted(others.total(), 'file')} of other kinds: " + \
        _written_out(", ".join(kinds) + (", ..." if len(others) > len(kinds) else ""))


def _written_out(text: str) -> str:
    """`text` on one line, its line breaks, terminal control characters and invisible ones written out (`\\n`,
    `\\x1b`, `\\u200d`: a skipped `owls\\u200d.pdf` read as the `owls.pdf` that was not skipped)."""
    return visible_line(reveal_hidden(text))


def _given_bytes(text: object) -> bytes:
    """A document given in memory as bytes: a str as UTF-8 (its lone surrogates, which UTF-8 cannot write, as their
    escapes), bytes as they are (`{path.name: path.read_bytes()}` had the model read `b'%PDF-1.7...'`)."""
    if isinstance(text, bytes | bytearray | memoryview):
        return bytes(text)
    if not isinstance(text, str):
        raise ExtractError(f"a document is given as text (str) or bytes, not {type(text).__name__}")
    return harmony_clean(text).encode()


def _kind(name: str) -> str:
    return _KINDS.get(Path(name).suffix.lower(), "text")


def _snippet(page: Page, line: int, query: str) -> str:
    """The passage's text around the first query word it contains, about SNIPPET_CHARS long."""
    text = merge_whitespace(_RULES.sub(" ", strip_links(" ".join(page.lines[line:line + PASSAGE_LINES])))).strip()
    if len(text) <= SNIPPET_CHARS:
        return text
    words = [w for w in re.findall(r"\w{3,}", query.lower())]
    lower = text.lower()
    hits = [lower.find(w[: max(3, len(w) - 2)]) for w in words]
    first = min((h for h in hits if h >= 0), default=0)
    start = max(0, first - SNIPPET_CHARS // 4)
    start = text.rfind(" ", 0, start) + 1 if start else 0
    # to the text's end where it fits (its last word was cut off at the space before it: the word searched for)
    end = len(text) if len(text) <= start + SNIPPET_CHARS else text.rfind(" ", start, start + SNIPPET_CHARS)
    end = end if end > start else start + SNIPPET_CHARS
    return ("…" if start else "") + text[start:end] + ("…" if end < len(text) else "")

