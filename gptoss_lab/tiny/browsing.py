"""Browsing data for gpt-oss-tiny: small libraries of invented places, people and firms, and the
search -> open -> quote-and-cite turns over them, run with the lab's real `Browser`.

The facts exist only in these generated documents, so a model can only answer from what the
browser shows it: it searches, opens the result about the entity, finds the line that states
the fact, and answers with that line and its citation `【cursor†Lline】`. Names are built from
syllables; a held-out share of the names is used only for evaluation.
"""
from __future__ import annotations

import functools
import json
import re
import zlib
from dataclasses import dataclass, field
from typing import Any

from .. import harmony
from ..tools.browser import Browser
from .skills import NOT_RUN, Gen, Pool, Teach, Turn, unanswered, check, final, not_run, say, think

_FIRST = ("Vel", "Kor", "Ast", "Bram", "Cal", "Dun", "El", "Fen", "Gal", "Har", "Isk", "Jor", "Kel", "Lun", "Mar", "Nor",
          "Ost", "Pel", "Quen", "Ros", "Sar", "Tam", "Ul", "Var", "Wen", "Yar", "Zel")
_LAST = ("mora", "rin", "wick", "dale", "holm", "stad", "avo", "ford", "ena", "ton", "bury", "mere", "vik", "ora", "heim",
         "ice", "ando", "ula", "gard", "esse")
_GIVEN = ("Ilsa", "Marek", "Tove", "Anselm", "Brisa", "Caspar", "Dalia", "Emrys", "Fenna", "Gorm", "Hedda", "Ivar",
          "Jola", "Konstantin", "Liv", "Mattis", "Nerys", "Orla", "Piet", "Runa", "Sten", "Thea", "Ulla", "Vidar")
_JOBS = ("weaver", "engineer", "baker", "painter", "sailor", "teacher", "doctor", "architect", "botanist", "poet")
_PRODUCTS = ("bicycles", "lamps", "glass bottles", "wool blankets", "clocks", "kayaks", "paper", "ceramic tiles", "soap")
_DISHES = ("smoked trout", "barley bread", "plum cake", "goat cheese", "fish soup", "honey biscuits")


def _held_out(name: str) -> bool:
    return zlib.crc32(name.encode()) % 5 == 0


@functools.cache
def _training_tokens() -> frozenset[int]:
    """The tokens of every training name, as they appear in the documents and questions."""
    names = [a + b for a in _FIRST for b in _LAST if not _held_out(a + b)]
    return frozenset(t for n in names for text in (f" {n}", n, f"{n.lower()}.md") for t in harmony.encode(text))


def _name(g: Gen) -> str:
    """An invented place or firm name; one in five is held out for evaluation (those made of tokens
    that training names also have)."""
    while True:
        name = g.pick(_FIRST) + g.pick(_LAST)
        if _held_out(name) != (g.split == "eval"):
            continue
        if g.split == "train" or all(t in _training_tokens() for text in (f" {name}", name, f"{name.lower()}.md")
                                     for t in harmony.encode(text)):
            return name


def _person(g: Gen) -> str:
    return f"{g.pick(_GIVEN)} {_name(g)}"


@dataclass
class Fact:
    """One line of one document, and a question only that line answers."""

    entity: str
    question: str
    line: str                 # the document's line stating the fact (one wrapped line)
    answer: str               # what the final answer must contain
    query: str                # what the teacher searches for
    url: str = ""
    title: str = ""


@dataclass
class Library:
    """A conversation's documents (name -> Markdown text) and the facts they state."""

    texts: dict[str, str] = field(default_factory=dict)
    facts: list[Fact] = field(default_factory=list)

    def browser(self) -> Browser:
        """A fresh browser over these documents (nothing opened yet)."""
        return Browser(dict(self.texts))


_TOWN = (  # (line, question, answer key, query words)
    ("{e} was founded in {year}.",
     Pool(("When was {e} founded?", "In what year was {e} founded?", "In which year was {e} founded?",
           "Find the year {e} was founded.", "When was the town of {e} founded?",
           "Can you find the year {e} was founded?", "Search for the year {e} was founded.",
           "Tell me the year {e} was founded."),
          ("What year was {e} founded?",)),
     "year", "founded"),
    ("The population of {e} is {count}.",
     Pool(("What is the population of {e}?", "How many people live in {e}?", "How many people does {e} have?",
           "Tell me the population of {e}.", "Can you find the population of {e}?", "How many people are in {e}?",
           "Population of {e}?", "What is the number of people in {e}?", "Find the population of {e}.",
           "How many people are there in {e}?"),
          ("How big is the population of {e}?",)),
     "count", "population"),
    ("The mayor of {e} is {person}.",
     Pool(("Who is the mayor of {e}?", "Tell me the mayor of {e}.", "Can you find the mayor of {e}?",
           "Who is mayor of {e}?", "Name the mayor of {e}.", "Search for the mayor of {e}.",
           "Who is the current mayor of {e}?", "Who is the mayor in {e}?", "Find the mayor of {e}.",
           "What is the name of the mayor of {e}?"),
          ("Who runs {e} as mayor?",)),
     "person", "mayor"),
    ("{e} lies on the river {river}.",
     Pool(("Which river does {e} lie on?", "What river runs through {e}?", "What river does {e} lie on?",
           "Tell me the river of {e}.", "Can you find the river {e} lies on?", "Search for the river of {e}.",
           "Which river runs by {e}?", "Find the river that runs through {e}.", "Which river runs through {e}?"),
          ("Which river is {e} on?",)),
     "river", "river"),
    ("The lighthouse of {e} is {metres} metres tall.",
     Pool(("How tall is the lighthouse of {e}?", "How high is the lighthouse of {e}?",
           "How many metres tall is the lighthouse of {e}?", "Can you find the height of the lighthouse of {e}?",
           "Find the height in metres of the lighthouse of {e}.", "Find the height of the lighthouse in {e}.",
           "How many metres high is the {e} lighthouse?", "Tell me the height of the lighthouse in {e}.",
           "Search for the lighthouse of {e} and its height."),
          ("What is the height of the {e} lighthouse?",)),
     "metres", "lighthouse"),
    ("The local dish of {e} is {dish}.",
     Pool(("What is the local dish of {e}?", "What food is {e} known for?", "Which dish is local to {e}?",
           "Tell me the local dish of {e}.", "Can you find the local dish of {e}?", "Local dish of {e}?",
           "Search for the local food of {e}.", "Name the dish of {e}.", "Which food is {e} known for?",
           "Find the local dish of {e}."),
          ("What dish is {e} known for?",)),
     "dish", "dish"),
)
_PERSON = (
    ("{e} was born in {town} in {year}.",
     Pool(("Where was {e} born?", "In which town was {e} born?", "Tell me where {e} was born.",
           "Can you find where {e} was born?", "What is the town where {e} was born?",
           "Search for where {e} was born.", "Where is {e} from?", "Tell me the town where {e} was born.",
           "Find where {e} was born."),
          ("What town was {e} born in?",)),
     "town", "born"),
    ("{e} works as a {job}.",
     Pool(("What does {e} work as?", "What is the job of {e}?", "Tell me the job of {e}.",
           "Can you find what {e} works as?", "What work does {e} do?", "Search for the job of {e}.",
           "What does {e} do for work?", "Find out what {e} works as.", "Find the job of {e}."),
          ("What job does {e} have?",)),
     "job", "job"),
    ("{e} has {count} grandchildren.",
     Pool(("How many grandchildren does {e} have?", "What is the number of grandchildren of {e}?",
           "Count the grandchildren of {e}.", "Find the number of grandchildren {e} has.",
           "What number of grandchildren does {e} have?", "Find the number of grandchildren of {e}.",
           "Tell me the number of grandchildren {e} has.", "Can you find the number of grandchildren of {e}?"),
          ("How many grandchildren has {e}?",)),
     "count", "grandchildren"),
)
_FIRM = (
    ("{e} was started by {person} in {year}.",
     Pool(("Who started {e}?", "Who founded the firm {e}?", "Who started the firm {e}?", "Who founded {e}?",
           "Who first started {e}?", "Who was it that started {e}?", "Who was it that founded {e}?",
           "Who started the firm of {e}?"),
          ("Who was {e} started by?",)),
     "person", "started"),
    ("{e} makes {product}.",
     Pool(("What does {e} make?", "What does the firm {e} produce?", "What products does {e} make?",
           "Tell me what {e} makes.", "Can you find what {e} makes?", "Search for what the firm {e} makes.",
           "What does the firm {e} make?", "What products does the firm {e} make?", "Find what {e} makes.",
           "Which products does {e} make?"),
          ("What are {e}'s products?",)),
     "product", "makes"),
    ("{e} has {count} employees.",
     Pool(("How many employees does {e} have?", "How many people work at {e}?",
           "Can you find the number of employees at {e}?", "What is the number of employees of {e}?",
           "Count the employees of {e}.", "What is the number of employees at {e}?",
           "Find the number of employees of {e}.", "How many people does the firm {e} have?",
           "How many employees has the firm {e}?"),
          ("How many employees work at {e}?",)),
     "count", "employees"),
)
_FILLER = ("Visitors often arrive by the morning train.", "The old market square is paved with grey stone.",
           "Records from that time are kept in the town archive.", "Many families have lived here for generations.",
           "The winters are long and the summers short.", "A small museum tells the story of the region.",
           "Local people meet at the square on Saturdays.", "The area is known for its quiet beaches.")


def make_library(g: Gen, size: int | None = None) -> Library:
    """5-9 documents about invented towns, people and firms, each stating 3-6 facts."""
    library = Library()
    used: set[str] = set()
    for _ in range(size or g.rng.randint(5, 9)):
        kind = g.pick(("town", "town", "person", "firm"))
        entity = _person(g) if kind == "person" else _name(g)
        if entity in used:
            continue
        used.add(entity)
        table = {"town": _TOWN, "person": _PERSON, "firm": _FIRM}[kind]
        values = {"e": entity, "year": str(g.rng.randint(1100, 1990)), "count": str(g.rng.randint(12, 99000)),
                  "person": _person(g), "river": _name(g), "metres": str(g.rng.randint(12, 80)), "dish": g.pick(_DISHES),
                  "town": _name(g), "job": g.pick(_JOBS), "product": g.pick(_PRODUCTS)}
        chosen = g.rng.sample(table, g.rng.randint(min(3, len(table)), len(table)))
        lines = [f"# {entity}", ""]
        folder = {"town": "places", "person": "people", "firm": "firms"}[kind]
        url = f"{folder}/{entity.lower().replace(' ', '-')}.md"
        for line, questions, key, word in chosen:
            if g.chance(0.5):
                lines.append(g.pick(_FILLER))
            text = line.format(**values)
            lines.append(text)
            library.facts.append(Fact(entity, g.pick(questions).format(e=entity), text, values[key],
                                      f"{entity} {word}", url, entity))
        library.texts[url] = "\n".join(lines) + "\n"
    return library


_RESULT = re.compile(r"【(\d+)†([^†】]+)†([^†】]+)】")
_MATCH = re.compile(r"^L\d+: # 【\d+†match at L(\d+)】\nL\d+: (.*)$", re.M)   # a find result and its first line
_PATTERNS = {"job": "works as"}   # what to find on the page when the query's word is not in the line


def _pattern_of(fact: Fact) -> str:
    """What the teacher finds on the opened page: the query's word, which the fact's line holds."""
    word = fact.query.removeprefix(fact.entity).strip()
    return _PATTERNS.get(word, word)


def cursor_of(output: str) -> int | None:
    """The cursor a browser display starts with (`[3] Title ...`)."""
    match = re.match(r"\[(\d+)\]", output)
    return int(match.group(1)) if match else None


def browse(g: Gen, effort: str, library: Library, fact: Fact | None = None, prompt: str | None = None,
           skill: str = "browse") -> Turn:
    """Search, open the entity's document, find the fact's word on it, answer with the line that states
    the fact and cite it: the line number is copied from the find result (`match at L5`), one short hop."""
    fact = fact or g.pick(library.facts)
    turn = Turn(skill, prompt or fact.question, unanswered, effort=effort, call="browser.search",
                expected=[fact.answer], cite=fact.line, kind="browse")
    analysis = think(g, effort, "Search the documents.", [
        f"The user asks about {fact.entity}; only the documents can know this.",
        f"Search for {fact.query}.", "Open the result about it and find the line that answers."])

    def teach(turn: Turn) -> Teach:
        out = yield [analysis, browser_call("search", {"query": fact.query})]
        if out.startswith(NOT_RUN):
            turn.expected, turn.cite = [f"could not search the documents about {fact.entity}"], None
            yield [final(not_run(out, f"search the documents about {fact.entity}"))]
            return
        search_cursor = cursor_of(out)
        hit = next((m for m in _RESULT.finditer(out) if m.group(3) == fact.url), None)
        if hit is None or search_cursor is None:
            turn.cite = None
            yield [final(f"The documents I searched do not mention {fact.entity}.")]
            return
        out = yield [say(f"Result {hit.group(1)} is about {fact.title}. Open it."),
                     browser_call("open", {"id": int(hit.group(1)), "cursor": search_cursor})]
        page_cursor = cursor_of(out)
        pattern = _pattern_of(fact)
        if page_cursor is not None:
            out = yield [say(f"Find \"{pattern}\" on page {page_cursor}."), browser_call("find", {"pattern": pattern})]
        line = next((int(m.group(1)) for m in _MATCH.finditer(out) if m.group(2).strip() == fact.line), None)
        if line is None or page_cursor is None:
            turn.cite = None
            yield [final(f"The page about {fact.entity} does not say.")]
            return
        yield [say(f"L{line}: {fact.line}"), *check(effort, f"line {line} says: {fact.line}"),
               final(f"{fact.line} 【{page_cursor}†L{line}】")]

    turn.teach = teach
    turn.followups = [lambda g2: _browse_followup(g2, turn, library, fact)]
    return turn


def _browse_followup(g: Gen, previous: Turn, library: Library, fact: Fact) -> Turn:
    """"And its mayor?": another fact about the same entity, named only in the earlier turn."""
    others = [f for f in library.facts if f.entity == fact.entity and f.line != fact.line]
    if not others:
        return browse(g, previous.effort, library, skill="followup")
    other = g.pick(others)
    word = other.query.removeprefix(other.entity).strip()
    prompt = g.pick(Pool(("And what about its {w}?", "What does it say about the {w}?", "What about the {w}?",
                          "And its {w}?", "Now the {w}.", "What does the page say about its {w}?",
                          "How about the {w}?", "Now search for the {w}.", "Tell me about its {w}.",
                          "Can you find its {w}?"), ("And the {w}?",))).format(w=word)
    return browse(g, previous.effort, library, other, prompt, skill="followup")


def missing(g: Gen, effort: str, library: Library) -> Turn:
    """A question about an entity the documents do not have: searched, and answered honestly."""
    absent = _name(g)
    while any(absent in f.entity for f in library.facts):
        absent = _name(g)
    word = g.pick(("founded", "mayor", "population"))
    fact = Fact(absent, g.pick(Pool(("When was {e} founded?", "Who is the mayor of {e}?", "What is the population of {e}?",
                                     "How many people live in {e}?", "Which river does {e} lie on?",
                                     "What is the local dish of {e}?", "Can you find the mayor of {e}?", "Search for {e}.",
                                     "What do you know about {e}?", "Who is the mayor in {e}?"),
                                    ("What do the documents say about {e}?",))).format(e=absent),
                "", "do not mention", f"{absent} {word}", url="(none)", title=absent)
    turn = browse(g, effort, library, fact)
    turn.cite = None
    return turn


def browser_call(function: str, args: dict[str, Any]) -> tuple[Any, bool]:
    return harmony.assistant_message(json.dumps(args), "analysis", f"browser.{function}", "code"), True
