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
    assert out.startswith(f"The browser reads 1 document in {docs} (1 Markdown; 7 lines); skipped 1 that could not "
                          f"be read (vault.txt: a link to a file outside {docs});")
    out, _ = run(kernel[1], "print(s.browser.search('vault password hunter2')); s.browser.reset()")
    assert "vault.txt" not in out

    out, content = run(kernel[1], "%%gptoss --tools browser --approve auto --text\nWhat do barn owls eat?")
    assert content["status"] == "ok", out
    assert "Barn owls eat mice" in out
    # the cited line of the find page is line 5 of the document, which the sources name
    assert "Sources:\n  [1] Owls (owls.md), L5:\n      Barn owls swallow mice whole." in out
