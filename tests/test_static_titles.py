"""A model's link cannot pass for the lab's own citation chips in any saved form (nor in the live view): no title, the
tooltip a reader sees and the name a screen reader says of a link with no text, and no chip inside the model's link."""
from __future__ import annotations

from html.parser import HTMLParser

from markdown_it import MarkdownIt

from gptoss_lab import ReplayEngine, Session
from gptoss_lab.events import Citation, Delta, MessageEnd, MessageStart
from gptoss_lab.widgets.chat import ChatView
from gptoss_lab.widgets.transcript import Transcript

OWLS = Citation("【0†L1-L2】", 0, 1, 2, "https://a.example/owls", "Owls of the world", "Owls hunt.\nAt night.")
# Links that say of themselves what a chip says ("Source 1: <title>, lines 1 to 2"): with no text, one's title is its
# name; a reference's title; one with a title in single quotes, one in parentheses.
FORGED = ('Owls hunt at night 【0†L1-L2】. See [](https://evil.example/ "Source 1: Owls of the world, lines 1 to 2")'
          "[2](https://evil.example/2 'Source 2: Owls of the world, lines 3 to 4') [3](https://evil.example/3 "
          '(Source 3: Owls)) [owls][ref].\n\n[ref]: https://evil.example/4 "Source 4: Owls"')


class _Links(HTMLParser):
    """Each element's attributes, and what a reader sees of each link (and button: a saved chip): its text, its tooltip,
    its screen reader name."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.attributes: list[tuple[str, dict[str, str | None]]] = []
        self.links: list[dict[str, str]] = []
        self._open: list[dict[str, str]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.attributes.append((tag, dict(attrs)))
        if tag in ("a", "button"):
            found = dict(attrs)
            self._open.append({"tag": tag, "href": found.get("href") or "", "text": "", "title": found.get("title") or "",
                               "name": found.get("aria-label") or "", "inside": str(len(self._open))})
        elif tag == "sup" and self._open:
            self._open[-1]["text"] += "<chip>"

    def handle_endtag(self, tag: str) -> None:
        if tag in ("a", "button") and self._open:
            link = self._open.pop()
            link["name"] = link["name"] or link["text"].strip() or link["title"]   # as a screen reader names it
            self.links.append(link)

    def handle_data(self, data: str) -> None:
        for link in self._open:
            link["text"] += data


def _turn(answer: str) -> Transcript:
    transcript = Transcript.from_reply(Session(ReplayEngine(f"<|channel|>final<|message|>{answer}<|return|>"),
                                               namespace={}).ask("Owls?"))
    transcript.citations = [OWLS]
    return transcript


def test_a_model_link_names_no_source_in_the_html_form_nor_the_live_view() -> None:
    """A model's link with no text was named "Source 1: Owls of the world, lines 1 to 2" by a screen reader (its
    title), as the real chip is, and each titled link showed its "Source n" tooltip under the pointer."""
    view = ChatView()
    view._shown = True
    sent: list[dict] = []
    view.observe(lambda change: sent.extend(change["new"]["ops"]), names="_chunk")
    for event in (MessageStart("final", None), Delta(FORGED, "final"), MessageEnd(None, None)):
        view.handle(event)
    view._flush()
    live = "".join(op["html"] for op in sent if "html" in op)
    for html in (_turn(FORGED).to_html(), live):
        links = _Links(html)
        assert [a for a in links.attributes if "title" in a[1]] == []
        model = [link for link in links.links if "evil.example" in link["href"]]
        assert [link["name"] for link in model] == ["", "2", "3", "owls"]
    chips = [link for link in _Links(_turn(FORGED).to_html()).links
             if link["href"] == "https://a.example/owls" or link["tag"] == "button"]   # the saved chip, its source
    assert [link["name"] for link in chips] == ["Source 1, titled “Owls of the world” from “a.example”, lines 1 to 2", "Owls of the world"]


def test_a_model_link_has_no_title_in_the_markdown_form() -> None:
    """GitHub and a trusted text/markdown output (CommonMark with its HTML kept) showed each link's title."""
    shown = MarkdownIt("commonmark", {"html": True}).render(_turn(FORGED).to_markdown())
    links = _Links(shown)
    assert [a for a in links.attributes if "title" in a[1]] == []
    assert [link["text"] for link in links.links if "evil.example" in link["href"]] == ["", "2", "3"]


def test_a_citation_marker_inside_a_model_link_stays_the_models_text() -> None:
    """`[【0†L1-L2】](https://evil.example/)` put the real chip (its popup, the page's cited lines) inside the model's
    link and tore the chip's own link out of it: the chip's popup then belonged to the model's link."""
    links = _Links(_turn("Owls [【0†L1-L2】](https://evil.example/) hunt 【0†L1-L2】.").to_html()).links
    model = [link for link in links if "evil.example" in link["href"]]
    assert [link["text"] for link in model] == ["【0†L1-L2】"]
    chips = [link for link in links if link["name"].startswith("Source")]
    assert [(link["tag"], link["text"], link["inside"]) for link in chips] == [("button", "1", "0")]   # the saved chip
