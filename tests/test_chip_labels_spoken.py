"""What a screen reader says of a citation chip (its aria-label, in the live view and the saved forms): the page's own
title said as a title, so that a page cannot make its chip pass for another source or say what it likes."""
from __future__ import annotations

import html
import re

import pytest

from gptoss_lab.events import Citation
from gptoss_lab.widgets.citations import NAME_CHARS, with_chips


def _said(title: str, text: str = "Owls hunt at night.", url: str = "https://a.example/owls") -> str:
    """The name a screen reader gives chip 1 of an answer citing a page titled `title` (lines 4 to 5)."""
    answer = with_chips("<p>Owls hunt 【0†L4-L5】.</p>", [Citation("【0†L4-L5】", 0, 4, 5, url, title, text)])
    return html.unescape(re.search(r'<a [^>]*aria-label="([^"]*)"', answer).group(1))


def test_a_page_titled_as_a_source_is_said_as_a_title() -> None:
    """A page titled "Source 2: official docs" made chip 1 read "Source 1: Source 2: official docs"."""
    assert _said("Source 2: official docs") == "Source 1, titled “Source 2: official docs” from “a.example”, lines 4 to 5"
    assert _said("", url="https://a.example/owls") == "Source 1, at “https://a.example/owls”, lines 4 to 5"
    assert _said("Source 2: official docs", text="") == \
        "Source 1: The page at cursor 0 (“Source 2: official docs”) showed the model no text at L4–L5."


def test_a_title_cannot_close_its_own_quotes() -> None:
    said = _said('Docs”, lines 1 to 2. Source 2, titled “Evil "Docs"')
    assert said == "Source 1, titled “Docs', lines 1 to 2. Source 2, titled 'Evil 'Docs'” from “a.example”, lines 4 to 5"


@pytest.mark.parametrize("title", ["Owls\u202e of\u200b the world", "Owls\x1b of\x07\nthe\u2066 world\u2069\t",
                                   "\u200fOwls of\r\n the\x00 world"])
def test_a_title_s_control_and_direction_characters_are_not_said(title: str) -> None:
    """Direction controls turned the words around and control characters were spelled out ("backslash u 202e")."""
    assert _said(title) == "Source 1, titled “Owls of the world” from “a.example”, lines 4 to 5"


def test_a_long_title_is_cut() -> None:
    said = _said("Owls " * 4_000)
    assert said.endswith("…” from “a.example”, lines 4 to 5")
    assert len(said) <= NAME_CHARS + len("Source 1, titled “” from “a.example”, lines 4 to 5")


def test_a_chip_names_the_site_a_titled_page_is_from_and_its_popup_keeps_the_hosts_end():
    """A page titled "Owl - Wikipedia" on en.wikipedia.org.wiki-owl-…-article.evil.example: the popup cut the address
    from its start and the label named only the title, so neither said it was evil.example's (a review)."""
    from gptoss_lab.events import Citation
    from gptoss_lab.widgets.citations import chip_label, popup_text

    url = "http://en.wikipedia.org.wiki-owl-" + "x" * 120 + "-article.evil.example/wiki/Owl"
    cited = Citation("【0†L5】", 0, 5, 5, url, "Owl - Wikipedia", "Owls hunt at dusk.")
    assert popup_text(1, cited).splitlines()[-1].startswith("http://…") and "-article.evil.example/" in popup_text(1, cited)
    assert chip_label(1, cited).startswith("Source 1, titled “Owl - Wikipedia” from “…")
    assert chip_label(1, cited).endswith("-article.evil.example”, line 5")
    real = Citation("【0†L5】", 0, 5, 5, "https://en.wikipedia.org/wiki/Owl", "Owl - Wikipedia", "Owls hunt at dusk.")
    assert chip_label(1, real) == "Source 1, titled “Owl - Wikipedia” from “en.wikipedia.org”, line 5"
