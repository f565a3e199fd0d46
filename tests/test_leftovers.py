"""Small leftovers found by reviewers: control characters in documents, the search index's own progress bars,
bool-like and wrongly typed routing arguments, and a function tool's generator cleaned up past its timeout."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest

from gptoss_lab.events import ToolCall
from gptoss_lab.routing import Routing
from gptoss_lab.tools.base import TIMEOUT_HINT
from gptoss_lab.tools.browser import Browser
from gptoss_lab.tools.browser.local import LocalBackend
from gptoss_lab.tools.functions import tool

# what no document's text may carry to the model or the reader: C0 and C1 controls but tab and line feed,
# and the direction overrides, embeddings and isolates
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _run(browser: Browser, recipient: str, **args: object):
    return browser.run(ToolCall(f"browser.{recipient}", "analysis", json.dumps(args), "code"))


def test_terminal_sequences_and_direction_overrides_in_documents_reach_neither_the_model_nor_the_reader(
        tmp_path: Path) -> None:
    """A text file's `ESC[2J`, window-title and cursor sequences, bells and backspaces, and a `U+202E` that showed
    `user: nimda` for `user: admin`, went to the model and the reader as they were (an HTML file's `&#xffff;` failed
    the whole folder with lxml's ValueError); the lines keep their numbers."""
    (tmp_path / "log.txt").write_bytes("status: \x1b[32mOK\x1b[0m\x1b]0;pwned\x07\nbell\x07 back\x08space \x9b2J\x85end\n"
                                       "user: \u202eadmin\u202c and \u2067x\u2069\nowls live here\n".encode())
    (tmp_path / "page.html").write_text("<title>T\x1b[31mitle</title><p>a &#x1b;[2J b &#x202e;evil&#x202c; &#x7;c&#xffff;"
                                        "<a href='https://x.org&#x1b;[2J/'>x</a></p>")   # lxml refused &#xffff;
    browser = Browser(tmp_path)
    shown = _run(browser, "open", id="log.txt")
    assert shown.output.splitlines()[3:] == ["L0: ", "L1: URL: log.txt", "L2: status: OK", "L3: bell backspace ",
                                            "L4: end", "L5: user: admin and x", "L6: owls live here", "L7: "]  # NEL: a line end
    assert shown.data["lines"][2:7] == [[2, "status: OK"], [3, "bell backspace "], [4, "end"], [5, "user: admin and x"],
                                        [6, "owls live here"]]   # what the reader shows
    assert [c.text for c in browser.citations("【0†L5】 【0†L6】")] == ["user: admin and x", "owls live here"]
    assert "match at L6】\nL1: owls live here" in _run(browser, "find", pattern="owls", cursor=0).output
    page = _run(browser, "open", id="page.html")
    assert page.output.startswith("[2] Title (page.html)") and page.output.endswith("\nL2: a b evil c x")
    assert _run(browser, "open", id="log.txt", view_source=True).output.endswith("\nL4: owls live here\nL5: ")
    web = Browser(search=lambda query, topn: [{"title": "Notes\x1b[8m", "url": "https://x.org/a%1b[2J%E2%80%AEb"}],
                  fetch=lambda url: {"title": "Notes\x1b[8m", "html": "<p>one \u202dtwo\x1b[1A <a href="
                                     "'https://gro.&#x202e;evil&#x7;.com/'>y</a></p>"})   # lxml refused the link
    results = _run(web, "search", query="notes").output
    opened = _run(web, "open", id=0).output
    assert opened.startswith("[1] Notes (https://x.org/ab)\n") and opened.endswith("\nL2: one two 【0†y†gro.evil.com】")
    for text in (shown.output, json.dumps(shown.data, ensure_ascii=False), page.output, results, opened):
        assert not _CONTROLS.search(text)


def test_the_search_index_shows_no_progress_bars_of_its_own_when_asked_for_none(tmp_path: Path, capfd) -> None:
    """bm25s printed its "Tokenize texts" and "BM25S Compute Scores" bars on stderr for 20,000 passages and more,
    also for LocalBackend.from_paths(..., progress=False)."""
    (tmp_path / "big.txt").write_text("\n".join(f"line {i} about owls" for i in range(82_000)))
    backend = LocalBackend.from_paths([tmp_path / "big.txt"], progress=False)
    assert len(backend._passages) >= 20_000   # as many as bm25s's bars show for
    assert backend.search("owls", 1)[0].url == "big.txt"
    out, err = capfd.readouterr()
    assert out == "" and err == ""


@pytest.mark.parametrize("progress", ["no", 0, None, "False"])
def test_route_refuses_a_progress_that_is_no_bool_in_one_line(progress: object) -> None:
    """route(..., progress="no") showed the bar ("no" is true), progress=None hid it."""
    from gptoss_lab.routing import route

    with pytest.raises(TypeError, match=rf"^progress must be True or False, not {re.escape(repr(progress))}$"):
        route(["hi"], object(), progress=progress)


@pytest.mark.parametrize(("make", "message"), [
    (lambda e, w: Routing([True], e, w), "token ids are whole numbers, not True"),  # as route says ("bool values")
    (lambda e, w: Routing([1.5], e, w), "token ids are whole numbers, not 1.5"),  # was "not float64 values"
    (lambda e, w: Routing(np.array([1.5]), e, w), "token ids are whole numbers, not 1.5"),
    (lambda e, w: Routing(["7"], e, w), "token ids are whole numbers, not '7'"),  # was "not <U1 values"
    (lambda e, w: Routing([1], e > 0, w), "expert ids are whole numbers (-1 = an empty slot), not bool values"),
    (lambda e, w: Routing([1], e, w > 0), "gate weights are numbers in 0..1, not bool values"),
    (lambda e, w: Routing([1], e, [[["0.5", "0.5"]]]), "gate weights are numbers in 0..1, not <U3 values"),
    (lambda e, w: Routing([1], e, [[[None, 0.5]]]), "gate weights are numbers in 0..1, not object values"),
    (lambda e, w: Routing([1], e, w, [3]), "labels are texts (a Harmony channel, 'text' ...), not 3"),
    (lambda e, w: Routing([1, 2], np.concatenate([e, e]), np.concatenate([w, w]), "ab"),
     "labels is a list of one label per token, not one text: [label] * len(tokens)"),
])
def test_a_routing_of_wrongly_typed_values_is_a_type_error_in_one_line(make, message: str) -> None:
    """Wrong types were ValueErrors, and True as an expert id was expert 1, "0.5" a weight of 0.5, None NaN,
    a text of labels one label per character."""
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        make(np.array([[[0, 1]]]), np.full((1, 1, 2), 0.5))


# the cleanup cut short by the timeout is reported as Python reports an error in a finalizer ("Exception ignored in")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_generator_a_function_returned_is_cleaned_up_within_the_timeout() -> None:
    """A generator left half read by the timeout ran its `finally` once the call's deadline had ended: a cleanup
    that blocks held the call (and the turn) for as long as it took, past the timeout."""
    cleaned: list[str] = []

    def rows():
        try:
            yield from range(5000)
        finally:
            cleaned.append("started")
            time.sleep(5)   # a cleanup that blocks
            cleaned.append("ended")

    def slow():
        while True:
            time.sleep(0.1)
            yield 1

    @tool
    def table() -> dict:
        """Two columns."""
        return {"fast": rows(), "slow": slow()}

    start = time.monotonic()
    result = table.call("{}", timeout=0.5)
    assert result.status == "timeout" and result.output == f"Error: ToolTimeout: Timed out after 0.5 s ({TIMEOUT_HINT})"
    assert time.monotonic() - start < 2.5 and cleaned == ["started"]
