"""The browser in a real kernel (jupyter_client): what `%gptoss browse` and a browsing turn show the user."""
from __future__ import annotations

from pathlib import Path

import pytest
from test_kernel import kernel, run  # noqa: F401  (the kernel fixture; tests/ is on sys.path)

pytestmark = pytest.mark.kernel

SETUP = """
%load_ext gptoss_lab
from gptoss_lab import Session, ReplayEngine
rec = ('<|start|>assistant<|channel|>analysis to=browser.search code<|message|>{"query": "owls"}<|call|>'
       '<|start|>assistant<|channel|>analysis to=browser.open code<|message|>{"id": 0, "cursor": 0}<|call|>'
       '<|start|>assistant<|channel|>analysis to=browser.find code<|message|>{"pattern": "mice"}<|call|>'
       '<|channel|>final<|message|>Barn owls eat mice 【2†L1】.<|return|>')
s = Session(ReplayEngine(rec, delay=0.0))
%gptoss use s
"""


def test_browse_mistakes_links_out_of_the_folder_and_find_citations(kernel, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("The vault password is hunter2.\n")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "owls.md").write_text("# Owls\n\nOwls sleep all day.\nBarn owls swallow mice whole.\n")
    (docs / "vault.txt").symlink_to(outside / "secret.txt")
    out, content = run(kernel[1], SETUP)
    assert content["status"] == "ok", out

    out, content = run(kernel[1], "%gptoss browse searxng:")
    assert (content["ename"], content["evalue"]) == (
        "UsageError", "%gptoss browse: a SearXNG URL starts with http:// or https://, not ''")

    out, content = run(kernel[1], f"%gptoss browse {docs}")
    assert content["status"] == "ok", out
    assert " ".join(out.split()).startswith(f"The browser reads 1 document in {docs} (1 Markdown; 4 lines); skipped 1 that could not "
                          f"be read (vault.txt: a link to a file outside {docs});")
    out, _ = run(kernel[1], "print(s.browser.search('vault password hunter2')); s.browser.reset()")
    assert "vault.txt" not in out

    out, content = run(kernel[1], "%%gptoss --tools browser --approve auto --text\nWhat do barn owls eat?")
    assert content["status"] == "ok", out
    assert "Barn owls eat mice" in out
    # the cited line of the find page (its L1) is line 5 of the document, which the sources name under the marker
    assert "Sources:\n  【2†L1】 Owls (owls.md), L5:\n      Barn owls swallow mice whole." in out


def test_browse_a_folder_with_a_page_bomb_and_a_name_holding_terminal_sequences(kernel, tmp_path: Path) -> None:
    from test_browser_hostile import pdf

    docs = tmp_path / "hostile"
    docs.mkdir()
    (docs / "owls.md").write_text("# Owls\n\nBarn owls swallow mice whole.\n")
    text = b"BT /F1 12 Tf 72 720 Td (owls) Tj ET"
    (docs / "\x1b]0;owned\x07bomb.pdf").write_bytes(pdf([      # 2.5 kB listing one page 90,000 times
        b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [%s] /Count 90000 >>" % b" ".join([b"3 0 R"] * 300),
        b"<< /Type /Pages /Kids [%s] /Count 300 >>" % b" ".join([b"4 0 R"] * 300),
        b"<< /Type /Page /MediaBox [0 0 612 792] /Contents 5 0 R /Resources << /Font << /F1 6 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(text), text), b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]))
    out, content = run(kernel[1], SETUP + "import time\nt0 = time.perf_counter()")
    assert content["status"] == "ok", out
    out, content = run(kernel[1], f"%gptoss browse {docs}\nprint(round(time.perf_counter() - t0))")
    assert content["status"] == "ok", out
    printed, seconds = out.rstrip("\n").rsplit("\n", 1)
    assert int(seconds) < 10                        # was minutes: every listed page was read
    assert " ".join(printed.split()).startswith(f"The browser reads 1 document in {docs} (1 Markdown; 3 lines); skipped 1 that could not "
                              "be read (\\x1b]0;owned\\x07bomb.pdf: the PDF has 90,000 pages; the browser reads at most 5,000);")


def test_a_cells_timeout_ends_a_browser_search_that_does_not_answer(kernel) -> None:
    """`%%gptoss --tools browser --timeout 2` over a search function that never answers: the search held the cell
    (here 30 s) whatever the cell's timeout; it is cut off at 2 s, said timed out, and the answer follows."""
    import time

    setup = """
import time
from gptoss_lab import Session, ReplayEngine
from gptoss_lab.tools.browser import Browser
def intranet(query: str, topn: int) -> list:
    time.sleep(30)
    return []
s = Session(ReplayEngine('<|channel|>commentary to=browser.search <|constrain|>json<|message|>{"query": "owls"}<|call|>'
                         '<|channel|>final<|message|>The search did not answer.<|return|>', delay=0.0),
            browser=Browser(search=intranet))
%load_ext gptoss_lab
%gptoss use s
"""
    out, content = run(kernel[1], setup)
    assert content["status"] == "ok", out
    started = time.monotonic()
    out, content = run(kernel[1], "%%gptoss --tools browser --approve auto --text --timeout 2\nOwls?")
    assert content["status"] == "ok", out
    assert time.monotonic() - started < 15
    assert "Error: ToolTimeout: Timed out after 2 s (the turn's tool timeout; change it with %%gptoss --timeout" in out
    assert "The search did not answer." in out


def test_use_takes_the_documents_given_to_browse_before_any_model(kernel, tmp_path: Path) -> None:
    """`%gptoss browse FOLDER` before any model, then `%gptoss use s` (a Session made in Python): the documents were
    left behind with the settings holder and a browsing turn had no browser. A session with its own browser keeps it."""
    (tmp_path / "owls.md").write_text("# Owls\n\nBarn owls swallow mice whole.\n")
    search = ('<|channel|>analysis to=browser.search code<|message|>{"query": "owls"}<|call|>'
              '<|channel|>final<|message|>Searched.<|return|>')
    out, content = run(kernel[1], f"%load_ext gptoss_lab\n%gptoss browse {tmp_path}\n"
                                  f"from gptoss_lab import Session, ReplayEngine\n"
                                  f"s = Session(ReplayEngine({search!r}, delay=0.0))\n%gptoss use s")
    assert content["status"] == "ok", out
    assert "| browser: 1 document in" in out, out
    out, content = run(kernel[1], "%%gptoss --tools browser --approve auto --text\nOwls?")
    assert content["status"] == "ok", out
    assert "Barn owls swallow mice whole." in out and "Searched." in out, out
    out, _ = run(kernel[1], "from gptoss_lab.tools.browser import Browser\n"
                            "own = Browser(search=lambda query, topn: [])\n"
                            f"t = Session(ReplayEngine({search!r}, delay=0.0), browser=own)\n"
                            "%gptoss use t\nprint(t.browser is own)")
    assert out.split()[-1] == "True", out
