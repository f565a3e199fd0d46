"""The text the browser gives the model is the text a reader of the document sees: no escape the author never wrote,
no content cut as boilerplate, separators read as what they separate, and `find` matching a phrase wherever the
reader reads it (across wrapped lines, in any case), cited at the lines it is on."""
from __future__ import annotations

from gptoss_lab.events import ToolCall
from gptoss_lab.tools.browser import Browser


def _run(browser: Browser, function: str, arguments: str) -> str:
    """The output of the model's call of `browser.{function}` with these JSON arguments."""
    result = browser.run(ToolCall(f"browser.{function}", "analysis", arguments, "code"))
    assert result.status == "done", result.output
    return result.output


def test_a_web_pages_text_keeps_no_markdown_escape_the_author_never_wrote() -> None:
    """html2text escaped Markdown in a page's text: "2024. A good year" reached the model as `2024\\. A good year`,
    a line's `- voles` as `\\- voles`, a path `C:\\*` as `C:\\\\*`; the model read and quoted them so."""
    html = ("<p>2024. A good year</p><p>- voles\n+ mice</p><p>Files in C:\\* and a_b * c # d [e](f) `g` !</p>"
            "<ul><li>1. first</li></ul>")
    shown = _run(Browser({"notes.html": html}), "open", '{"id": "notes.html"}')
    assert shown.splitlines()[5:] == ["L2: 2024. A good year", "L3: ", "L4: - voles + mice ", "L5: ",
                                      "L6: Files in C:\\* and a_b * c # d [e](f) `g` !", "L7: ", "L8:   * 1. first"]
