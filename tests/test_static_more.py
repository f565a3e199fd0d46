"""The saved form's citations and tool cards for people who do not use a mouse or do not see the page: every chip
names what it cites and is reached by Tab, a tool card is named; a page's title of any length leaves the chip's
popup small enough for a window, and the sanitizer keeps only the names and focus order the kernel writes."""
from __future__ import annotations

import dataclasses
import html
import re

from gptoss_lab import ReplayEngine, Session
from gptoss_lab.events import Citation
from gptoss_lab.widgets.citations import POPUP_CHARS
from gptoss_lab.widgets.sanitize import sanitize
from gptoss_lab.widgets.transcript import Transcript

NAME_CHARS = 100  # what a chip shows of a title or address at most (citations.NAME_CHARS)
RECORDING = ("<|start|>assistant to=python<|channel|>analysis<|message|>print(6 * 7)<|call|>"
             "<|channel|>final<|message|>Owls hunt at night 【0†L1-L2】 and sleep in trees 【1†L3-L3】.<|return|>")


def _saved(citations: list[Citation]) -> str:
    transcript = Transcript.from_reply(Session(ReplayEngine(RECORDING), namespace={}, approval="auto").ask("Owls?"))
    transcript.citations = citations
    return transcript.to_html()


def _chips(saved: str) -> list[tuple[str, str]]:
    """Each chip's popup text and its button's attributes."""
    return re.findall(r'<sup class="gx-cite[^"]*" data-cite="([^"]*)"><button ([^>]*)>', saved)


def test_each_chip_names_what_it_cites_and_a_chip_without_a_link_takes_the_focus() -> None:
    saved = _saved([Citation("【0†L1-L2】", 0, 1, 2, "https://a.example/", "Owls <b>&amp; \"friends\"", "Owls hunt.\nAt night."),
                    Citation("【1†L3-L3】", 1, 3, 3, "", "manuals/owl.pdf", "They roost in trees.")])
    (_, web), (_, local) = _chips(saved)
    assert "aria-label=\"Source 1, titled “Owls &lt;b&gt;&amp;amp; 'friends'” from “a.example”, lines 1 to 2\"" in web  # text, escaped
    assert 'aria-label="Source 2, titled “manuals/owl.pdf”, line 3"' in local
    for chip in (web, local):   # a button, in the Tab order, that opens its own popover (and the page has it)
        target = re.search(r'popovertarget="(gx-cite-[0-9a-f]{12}-[12])"', chip).group(1)
        assert re.search(f'</sup></span><span class="gx-cite-pop" id="{target}" popover=""> \\(\\[[12]\\] [^<]+\\)</span>', saved)
    assert 'aria-label="Tool call, done"' in saved


def test_the_sanitizer_keeps_no_focus_order_nor_role_but_a_chips() -> None:
    """A tabindex other than 0 would move the focus ahead of the page's (or off the element), and a role other than a
    note reference would make a link pass for a control: both dropped."""
    for value in ("1", "-1", "32767", " 0"):
        assert "tabindex" not in sanitize(f'<a tabindex="{value}">x</a>')
    for role in ("button", "presentation", "doc-noteref link"):   # nor a role that would make text pass for a control
        assert "role" not in sanitize(f'<a role="{role}">x</a>')
    kept = sanitize('<a tabindex="0" aria-label="Source 1">1</a>')
    assert 'tabindex="0"' in kept and 'aria-label="Source 1"' in kept


def test_two_saved_turns_of_one_answer_citing_other_pages_each_open_their_own_popups() -> None:
    """A saved chip's popover was named by its answer alone: in a notebook of two turns of one answer (a regenerated
    one) that cited other pages, the second turn's chips opened the first turn's popups, their text of the other page."""
    owls = [Citation("【0†L1-L2】", 0, 1, 2, "https://a.example/", "Owls", "Owls hunt."),
            Citation("【1†L3-L3】", 1, 3, 3, "", "owl.pdf", "They roost.")]
    voles = [dataclasses.replace(c, title="Voles", text="Voles hide.") for c in owls]
    first, second, again = (re.findall(r'popovertarget="([^"]+)"', _saved(cited)) for cited in (owls, voles, owls))
    assert len(set(first)) == 2 and not set(first) & set(second) and again == first   # the same each time it is saved


def test_the_sanitizer_keeps_no_id_popover_nor_button_type_but_a_saved_chips() -> None:
    """A saved chip's button opens the popover its id names (citations._popover_key): any other id could take the place of
    a chip's or of the page's own (`id="notebook"`), a manual popover would stay open past Escape, and a submit button
    would submit; all dropped."""
    hostile = sanitize('<button type="submit" popovertarget="notebook">1</button><span id="gx-cite-x-1" '
                       'popover="manual">a</span><span id="user-content-a" popover="hint">b</span>')
    assert hostile == '<button type="button">1</button><span>a</span><span>b</span>'
    kept = '<button popovertarget="gx-cite-0123456789ab-1" type="button">1</button><span id="gx-cite-0123456789ab-1" popover=""></span>'
    assert sanitize(kept) == kept and sanitize(kept, lab=False) == "1<span></span>"   # a model's Markdown keeps neither


def test_a_title_or_address_of_any_length_leaves_the_popup_small_enough_for_a_window() -> None:
    """A page titled with 20,000 characters made a popup of 20,000 characters (taller than any window, its cited
    lines below the bottom edge), and 300 one-letter cited lines a popup of 300 lines; the title and address are now
    cut to NAME_CHARS each, the cited lines to 8."""
    long = Citation("【0†L1-L2】", 0, 1, 2, "https://a.example/" + "p" * 20_000, "Owls " * 4_000, "Owls hunt.\nAt night.")
    missing = Citation("【1†L3-L3】", 1, 3, 3, "", "T" * 20_000, "")
    for popup, link in _chips(_saved([long, missing])):
        popup = html.unescape(popup)
        assert len(popup) <= POPUP_CHARS + 2 * NAME_CHARS + 80, len(popup)
        assert len(html.unescape(re.search(r'aria-label="([^"]*)"', link).group(1))) <= NAME_CHARS + 80
    assert "Owls hunt.\nAt night." in html.unescape(_chips(_saved([long]))[0][0])   # the cited lines are still there
    tall = Citation("【0†L1-L2】", 0, 1, 300, "", "list", "a\n" * 300)                # 300 one-letter lines
    assert html.unescape(_chips(_saved([tall]))[0][0]).count("\n") <= 12
