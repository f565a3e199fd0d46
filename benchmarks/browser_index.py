"""The browser's first search over a big folder of the user's documents, and what follows it, in CPU seconds.

    python benchmarks/browser_index.py [--documents 3000] [--profile 15]

A folder of generated documents (half HTML, 30 % Markdown, text, 1 % PDF; paragraphs of words from
/usr/share/dict/words, 3 % of them hyphened) is made in a temporary folder. Measured: the first search
(the folder read and indexed, then a search, nothing kept from before), a second search, and the folder read again
after one file changed (what `%gptoss browse` once more costs: only that file is converted). With
--profile N, cProfile's N slowest functions (cumulative) of the first search are printed.

Measured 2026-12-07 on 2 shared cores, 3,000 documents (438,833 lines), CPU seconds before -> after the
faster wrapping, index build and pages kept by their bytes: first search 14.4 -> 10.6-11.5, second
search 7 ms -> 7 ms, read again with one file changed 13.7 -> 4.7-4.9. Then (a machine without
/usr/share/dict/words: words w0 to w29999), before -> after bm25s's ids made in C, passages joined as lists, pages
parsed into lxml.etree's elements and walked 1,000 items at a time, five runs of each, old and new interleaved (the
old code took 10.8 s earlier that day: the shared cores' load varies): first search 8.4-9.8 (median 9.6) -> 8.4-9.3
(8.8), second search 6-7 ms, read again 3.0-3.9 (3.6) -> 3.1-3.7 (3.3). What is left of a first search:
converting HTML (about 3 s, a third of it html2text's handlers), the regular expression that finds words (about
0.8 s) and wrapping lines. Then, before -> after the second walk over a page's elements skipped where no character
reference can make what it replaces and the folder resolved once, six runs of each, alternating (load 3-9): first
search 9.1-13.3 (median 11.5) -> 9.0-12.1 (10.4), read again 4.1-6.2 (5.0) -> 3.4-4.7 (4.2); the spread of one
run is larger than the gain: the 1,500 HTML pages alone, three runs of each (load 5-6), convert in 3.57-3.73 s
(median 3.69) -> 3.09-3.49 (3.22). Where a first search went before them (3,000 documents, each step timed alone):
converting HTML 3.6-4.0 s (html2text's handlers and the walk that feeds them 1.8 s, numbering links 0.6 s, parsing
0.4 s), the other documents 0.4 s, tokenizing the index 1.7-1.9 s, wrapping lines 1.0 s, building the index 0.8 s,
cutting passages and the rest of indexing 0.8 s, listing the files 0.2 s.
"""
from __future__ import annotations

import cProfile
import json
import pstats
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from gptoss_lab.arguments import Parser
from gptoss_lab.events import ToolCall
from gptoss_lab.tools.browser import Browser, LocalBackend, cache
from gptoss_lab.tools.browser.demo import text_pdf


def make_folder(folder: Path, documents: int, seed: int = 0) -> None:
    """`documents` files of the four kinds, in 37 subfolders, with links between them."""
    rng = random.Random(seed)
    dictionary = Path("/usr/share/dict/words")
    words = dictionary.read_text().split() if dictionary.exists() else [f"w{i}" for i in range(30_000)]

    def sentence(most: int = 12) -> str:
        said = [rng.choice(words) + (f"-{rng.choice(words)}" if rng.random() < 0.03 else "")
                for _ in range(rng.randint(min(4, most), most))]
        return " ".join(said).capitalize() + "."

    def paragraph() -> str:
        return " ".join(sentence() for _ in range(rng.randint(2, 6)))

    for i in range(documents):
        sub = folder / f"d{i % 37}"
        sub.mkdir(parents=True, exist_ok=True)
        if i % 100 == 9:
            (sub / f"f{i}.pdf").write_bytes(text_pdf([sentence(8) for _ in range(40)], title=sentence(4)))
        elif i % 10 < 5:
            body = "".join(f"<h2>{sentence(5)}</h2><p>{paragraph()} <a href='f{rng.randrange(documents)}.html'>"
                           f"{sentence(3)}</a> <b>{sentence(4)}</b></p><ul><li>{sentence()}</li><li>{sentence()}</li>"
                           f"</ul><table><tr><td>{sentence(3)}</td><td>{rng.random():.3f}</td></tr></table>"
                           for _ in range(rng.randint(3, 25)))
            (sub / f"f{i}.html").write_text(f"<!doctype html><html><head><title>{sentence(5)}</title><style>p "
                                            f"{{color: red}}</style></head><body><nav><a href='/'>Home</a></nav>"
                                            f"{body}</body></html>")
        elif i % 10 < 8:
            body = "\n\n".join(f"## {sentence(5)}\n\n{paragraph()}\n\n- {sentence()}\n- {sentence()}"
                               for _ in range(rng.randint(3, 25)))
            (sub / f"f{i}.md").write_text(f"# {sentence(5)}\n\n{body}\n")
        else:
            (sub / f"f{i}.txt").write_text("\n\n".join(paragraph() for _ in range(rng.randint(3, 40))))


def cpu(work: Callable[[], object]) -> tuple[float, object]:
    """The CPU seconds `work` took, and what it gave."""
    start = time.process_time()
    result = work()
    return time.process_time() - start, result


def read(folder: Path) -> Browser:
    """The browser of `folder`, no progress bars drawn."""
    return Browser(LocalBackend.from_paths([folder], progress=False))


def search(browser: Browser, query: str) -> str:
    return browser.run(ToolCall("browser.search", "analysis", json.dumps({"query": query}), "code")).output


def main() -> None:
    parser = Parser(description=__doc__.split("\n")[0])
    parser.add_argument("--documents", type=int, default=3000, help="documents in the folder")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="print the first search's N slowest")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_folder(folder, args.documents)
        cache.forget()
        first, browser = cpu(lambda: (b := read(folder), search(b, "garden water"))[0])
        second, _ = cpu(lambda: search(browser, "river stone"))
        changed = next(folder.rglob("*.md"))
        changed.write_text(changed.read_text() + "\nOne more line.\n")
        again, _ = cpu(lambda: search(read(folder), "garden water"))
        print(browser.describe())
        print(f"first search (read, index, search): {first:6.2f} s of CPU")
        print(f"second search:                      {second * 1000:6.1f} ms")
        print(f"read again, one file changed:       {again:6.2f} s of CPU")
        if args.profile:   # a cold first search again, under the profiler (which slows it)
            cache.forget()
            profile = cProfile.Profile()
            profile.runcall(lambda: search(read(folder), "garden water"))
            pstats.Stats(profile).sort_stats("cumulative").print_stats(args.profile)


if __name__ == "__main__":
    main()
