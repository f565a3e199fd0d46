"""Documents to pages: HTML, Markdown, plain text and PDF become the text the model reads.

HTML goes through the reference's conversion (openai/gpt-oss `simple_browser/page_contents.py`,
Apache-2.0): links become `【{id}†text】` (`【{id}†text†domain】` off-site) so the model can open them
by id, images `[Image n: alt]`, then html2text makes Markdown-like text. Web pages fetched raw are
first cut to their main content (readability-lxml). Markdown and text are read as written; PDFs
page by page (pypdf). Every fetched page starts with a `URL:` line, as in the reference.
"""
from __future__ import annotations

import codecs
import contextlib
import functools
import io
import itertools
import logging
import math
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from html import unescape
from pathlib import PurePosixPath
from typing import Any, TypeVar
from urllib.parse import urljoin, urlparse

from .page import (LINK_PATTERN, SPECIAL_CHARACTERS, Page, cited_lines, clean_url, domain, merge_whitespace,
                   replace_special_chars)

HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
MARKDOWN_SUFFIXES = {".md", ".markdown", ".mdown", ".mkd"}
TEXT_SUFFIXES = {".txt", ".text", ".rst", ".org", ".tex", ".csv", ".tsv", ".json", ".yaml", ".yml", ".toml",
                 ".py", ".log", ".ini", ".cfg"}
PDF_SUFFIXES = {".pdf"}
DOCUMENT_SUFFIXES = HTML_SUFFIXES | MARKDOWN_SUFFIXES | TEXT_SUFFIXES | PDF_SUFFIXES
MAX_PDF_PAGES = 5_000          # listed: a PDF of more is skipped (pypdf builds each listed page before reading one)
# read: a PDF's pages past these are left unread, and said so: pypdf read a page of kerned text in 10 ms of CPU (3 ms
# one of plain lines), and a book of 5,000 was read or cut off by the 60 s deadline as the machine's load allowed
MAX_PDF_READ_PAGES = 2_000
MAX_PDF_SECONDS = 60.0
PDF_PARSE_BYTES_PER_SECOND = 500_000   # of drawing operations, about the slowest pypdf parses them (hex strings)
CMAP_PARSE_BYTES_PER_SECOND = 1_500_000   # of fonts' character maps, half the rate pypdf parsed 1.4 MB of `bfchar` lines
MAX_HTML_SECONDS = 10.0     # html2text is pure Python: a 5 MB page of `<br>` took 19 s to convert
MAX_MAIN_CONTENT_TAGS = 50_000  # readability-lxml (pure Python too) cuts only pages of at most this many tags
# ... and only pages whose elements' texts, each counted in every element around it, come to at most this many
# characters: readability cleans each candidate's whole text (0.15 s a million, with blank runs cut to 16 below)
MAX_MAIN_CONTENT_WORK = 10_000_000
_LONG_BLANKS = re.compile(r"\s{17,}")   # readability's own clean-up regexes slowed 10x on runs of 254 blanks
MAX_HTML_TAGS = 1_000_000   # more take longer than MAX_HTML_SECONDS to convert; parsing them alone took seconds
MAX_DEPTH = 255             # HTML elements nested deeper are read as text (libxml2's default parser stopped there)
# quotes and lists nested deeper are drawn at this depth: each level writes its `>` or indent on every line in it (250
# quotes around a `<pre>` of 80 kB made 5.2 MB of text, a 1.6 MB file all of a folder's MAX_FOLDER_CHARS in local.py),
# now a line gains at most about 40 characters
MAX_INDENT_DEPTH = 8
_INDENTING = {"blockquote": "blockquote", "ul": "list", "ol": "list"}   # the kinds of nesting counted
# ... and a page whose text comes to more than this many times its HTML (plus MAX_TEXT_SLACK) is refused: 8 quotes and
# 8 lists around a `<pre>` of `x` lines still made 20 times (80 kB: 1.6 MB; 4.9 MB filled MAX_FOLDER_CHARS), where
# ordinary pages (/usr/share/doc, the benchmark folder, the tests') come to at most 1.04 times
MAX_TEXT_GROWTH = 5
MAX_TEXT_SLACK = 1_000      # characters a small page may gain besides (a list of one-letter items: `  * x`)
MAX_REFERENCES = 1_000      # distinct character references a page is looked through for what they stand for
PARSE_CHUNK_CHARS = 1_000_000   # HTML is parsed this much at a time, the deadline looked at between (in one call,
                                # 48 MB of emoji took 1.8 s past a deadline)

_WORD = re.compile(r"\w")
_ESCAPED = re.compile("([&<>\r])")   # characters a tree written out holds as entities, which html.parser cuts text at
# a character reference as written (`&#x1b;`, `&shy;`, `&amp`): a number by its first 8 digits, a name whole
_CHARACTER_REFERENCE = re.compile(r"&(?:#[xX]0*([0-9a-fA-F]{1,8})|#0*([0-9]{1,8})|#|[A-Za-z][A-Za-z0-9]*;?)")
_ONE_WORD = re.compile(r"[\w\-]+")   # a `<sup>`/`<sub>` that the reference writes `^{...}`/`_{...}`
_ANCHOR_SPACE = re.compile(r"(【\@[^】]+】)(\s+)")
_BLANK_LINE = re.compile(r"^\s+$", flags=re.MULTILINE)
_LEADING_BLANK_LINES = re.compile(r"^(?:[^\S\n]*\n)+")
_EXTRA_NEWLINES = re.compile(r"\n(\s*\n)+")
# what ends a line in a text document, as its reader sees it (and str.splitlines): Windows' and classic Mac's line
# ends, Word's manual line break (vertical tab) and page break (form feed), the file, group and record separators, NEL,
# the line and paragraph separators; other separators are spaces (see page.replace_special_chars)
_LINE_ENDS = re.compile("\r\n?|[\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
_SMP = re.compile(r"[\U00010000-\U0001FFFF]")
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_XML_ENCODING = re.compile(rb"^\s*<\?xml[^>]*?\sencoding\s*=\s*[\"']\s*([\w.:-]+)")
_META_CHARSET = re.compile(rb"<meta[^>]*?charset\s*=\s*[\"']?\s*([\w.:-]+)", re.IGNORECASE)
# a tag as written: its name, then (after a space or `/`) anything up to its `>` but another `<`. Neither part can
# give characters to the other and no match passes a `<`, so a page of `<a<a<a…` with no `>` (text no parser
# would read as tags) takes linear time: `[^>]*?(/?)>` took 110 s for 2,000 of them, in one regex call the
# deadline could not stop, holding the kernel
_TAG = re.compile(r"<(/?)([A-Za-z][^\s/<>]*)((?:[\s/][^<>]*)?)>")
_TAG_AS_WRITTEN = re.compile("<[^<>]*>")
_VOID_ELEMENTS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
                  "track", "wbr"}
# what no text holds (controls, unassigned and private-use characters): a reading of bytes that gives them is wrong
_NOT_TEXT = frozenset({"Cc", "Cn", "Co"})
_UNICODE_BOMS = ((b"\xff\xfe\x00\x00", "utf-32-le"), (b"\x00\x00\xfe\xff", "utf-32-be"),
                 (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))
# a CSS comment, or a string or url() (where `/*` is no comment): read in one pass, as a browser tokenizes
_CSS_COMMENT = re.compile(r"/\*.*?(?:\*/|$)|(\"(?:[^\"\\]|\\.)*\"?|'(?:[^'\\]|\\.)*'?|url\([^)]*\)?)", re.DOTALL | re.IGNORECASE)
_CSS_ESCAPE = re.compile(r"\\(?:([0-9a-fA-F]{1,6})(?:\r\n|[ \t\n\r\f])?|([^\n\r\f0-9a-fA-F]))")
_IMPORTANT = re.compile(r"!\s*important\s*$")
# a number and its unit, each digit read one way only (`0+\.?0*` backtracked: 30,000 zeros took 27 s in one match)
_CSS_NUMBER = re.compile(r"([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?)([a-z%]*)")
_ABSOLUTE_UNITS = frozenset({"px", "pt", "pc", "cm", "mm", "q", "in", "rem", "rlh", "vw", "vh", "vi", "vb", "vmin", "vmax",
                             *(f"{p}v{a}" for p in "sld" for a in ("w", "h", "i", "b", "min", "max")),
                             *(f"cq{a}" for a in ("w", "h", "i", "b", "min", "max"))})
_RELATIVE_UNITS = frozenset({"", "%", "em", "ex", "ch", "cap", "ic", "lh"})   # "": a bare 0
_SIZE_WORDS = frozenset({"xx-small", "x-small", "small", "medium", "large", "x-large", "xx-large", "xxx-large", "initial"})
# a tag name holding a character the parse drops or changes (`</span\u200b>`, `<scr😀ipt>`): `_` in its place keeps
# it another name, as a browser reads it; dropped, it closed the hidden element early or made text a script
_ODD = re.compile(f"[\x1b{_SMP.pattern[1:-1]}{SPECIAL_CHARACTERS.pattern[1:-1]}]")
_TAG_NAME_ODD = re.compile(f"</?[A-Za-z][^\\t\\n\\f\\r /><]*?{_ODD.pattern}[^\\t\\n\\f\\r /><]*")
_CSS_SPACE = " \t\n\r\f"   # CSS's whitespace: a no-break space is part of a word
_VISIBILITY = {"hidden": True, "collapse": True, "visible": False, "initial": False, "revert": False,
               "revert-layer": False}   # others (inherit, unset, a value browsers refuse) inherit
# elements a browser never draws the content of: those its own style sheet hides (`title` in a body too), those
# replaced by what they play or show (their content is a fallback for browsers without them), and SVG's definitions
# and descriptions (lxml names elements in lowercase)
_NEVER_DRAWN = frozenset({"script", "style", "noscript", "template", "title", "datalist", "noembed",
                          "noframes", "rp", "iframe", "canvas", "video", "audio", "meter", "progress",
                          "desc", "metadata", "defs", "symbol", "clippath", "mask", "pattern", "marker",
                          "lineargradient", "radialgradient", "filter"})
_PRESENTATION = ("display", "visibility", "opacity", "font-size")   # SVG's attributes that style as CSS does
# how MathML lays out its children, written as the page's `<sup>`/`<sub>` are (`x^{2}`); others are read in a row
_MATH_LAYOUTS = {"msup": (2, "{}^{{{}}}"), "msub": (2, "{}_{{{}}}"), "msubsup": (3, "{}_{{{}}}^{{{}}}"),
                 "mfrac": (2, "({})/({})"), "mroot": (2, "√[{1}]({0})")}   # children it lays out, how
_MATH_UNSEEN = frozenset({"annotation", "annotation-xml", "mphantom"})   # a formula's source, and room kept blank
# the ligatures a PDF's fonts draw as one glyph, as the letters a reader sees (`find` found no "ﬁnd")
_LIGATURES = str.maketrans({"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl",
                            "\ufb05": "st", "\ufb06": "st"})
# readability's clean-up drops a block of the article of under 25 characters, whatever it holds: "Do not take it with:
# alcohol, warfarin" lost its drugs' list, a dose's table, a price or a one-line definition in a `<div>`. Such a block
# is kept when it reads as content: without links (menus, share buttons are links) and not named as boilerplate is
# (readability's negative class or id: footer, sidebar, comment ...); `aside`, `header` and `footer` still go
_SHORT_BLOCKS = ("div", "section", "ul", "table")
# how HTML starts, as browsers sniff a document sent without its type (WHATWG MIME Sniffing): the bytes a fetch
# function read from `https://example.org/owls` were shown as markup, hidden text, scripts and all
_HTML_START = re.compile(rb"(?:\xef\xbb\xbf)?[\t\n\x0c\r ]*<(?:!doctype html|html|head|script|iframe|h1|div|font|"
                         rb"table|a|style|title|b|body|br|p|!--)[ >]", re.IGNORECASE)
_T = TypeVar("_T")


class ExtractError(ValueError):
    """A document could not be read as text (an encrypted or broken PDF, binary data); one line."""


def with_url(url: str, text: str) -> str:
    """A fetched page's text as the reference lays it out: a `URL:` line first (one line, without the control
    characters a URL or a file's name can hold, escaped as the page's URL keeps them: the model reads it, and a
    citation of it quotes it)."""
    return f"\nURL: {merge_whitespace(replace_special_chars(clean_url(url)))}\n{text}"


def own_lines(text: str) -> int:
    """How many lines a page's text holds of its own: the document's, without the `URL:` header `with_url` puts
    first (a one-line .txt was said to be "4 lines")."""
    return len((text.split("\n", 2)[2] if text.startswith("\nURL: ") else text).splitlines())


def source_text(page: Page) -> str:
    """What `view_source` shows of a page: the HTML it was converted from (its line ends read as a text document's:
    a `\\r` kept in a line read as a break the numbering did not count), else its text without the `URL:` line
    (a text or Markdown document is its own source, so it is not kept a second time: on a folder of 50,000 documents
    that copy was as large as all their text)."""
    return replace_special_chars(_LINE_ENDS.sub("\n", page.raw) if page.raw is not None
                                 else page.text.removeprefix(with_url(page.url, "")))


def html_page(html: str, url: str, title: str | None = None, *, main_content: bool = False,
              base: str | None = None, deadline: float | None = None) -> Page:
    """An HTML document as the model reads it; `main_content` drops navigation and boilerplate first
    (for web pages fetched raw; the user's own documents are kept whole; pages of more than
    MAX_MAIN_CONTENT_TAGS tags too). Links are resolved against `base` (default: `url`). Converting
    takes at most MAX_HTML_SECONDS, and ends by `deadline` (a `time.monotonic()`) if one is given; a page of
    more than MAX_HTML_TAGS tags is refused at once, one whose text comes to more than MAX_TEXT_GROWTH times it
    once converted."""
    deadline = min(time.monotonic() + MAX_HTML_SECONDS, math.inf if deadline is None else deadline)
    raw = html
    found_title = ""
    if (tags := html.count("<")) > MAX_HTML_TAGS:
        raise ExtractError(f"the page has more than {MAX_HTML_TAGS:,} tags; the browser converts at most "
                           f"{MAX_HTML_TAGS:,}")
    if main_content and tags <= MAX_MAIN_CONTENT_TAGS:
        html, found_title = _main_content(html, deadline)
    html = _XML_DECLARATION.sub("", _TAG_NAME_ODD.sub(lambda m: _ODD.sub("_", m.group(0)), html))
    root, too_deep = _parse(html, deadline)
    if too_deep:  # libxml2 dropped the rest of the page (old HTML's unclosed `<font>` per line): its tags made shallow
        root, _ = _parse(_shallow(html, deadline), deadline)
    if root is not None and _may_decode_special(html, deadline):   # written as entities (&#12304;), they are only decoded
        for node in _clocked(root.iter(), deadline):          # now: nor can they fake links
            node.text, node.tail = _plain(node.text), _plain(node.tail)
            for name in ("alt", "title"):
                if name in node.attrib:
                    node.attrib[name] = replace_special_chars(node.attrib[name])
    title_element = next(iter(root.xpath("//title[not(ancestor::svg)]")), None) if root is not None else None
    if not title:
        title = found_title or (title_element.text if title_element is not None else None) or _site_or_name(url)
    if root is None:
        return Page(url=url, title=title, text=with_url(url, ""), raw=raw)
    _drop_unseen(root, deadline)
    _read_formulas(root, deadline)
    urls = _number_links(root, base or url, deadline)
    _replace_images(root, deadline)
    _flatten(root, deadline)
    # a carriage return is drawn as a space (CSS), also in a `<pre>` where `&#13;` writes one: kept, a numbered line
    # held a line end that a reader's view (str.splitlines, a terminal) read as two lines
    text = _html_to_text(root, deadline).replace("\r", " ")
    text = _ANCHOR_SPACE.sub(lambda m: m.group(2) + m.group(1), text)
    text = _EXTRA_NEWLINES.sub("\n\n", _BLANK_LINE.sub("", text))
    if len(text) > MAX_TEXT_GROWTH * len(raw) + MAX_TEXT_SLACK:
        raise ExtractError(f"the page's text came to {len(text) / len(raw):.1f} times its HTML ({len(text):,} "
                           f"characters of {len(raw):,}: quotes and lists around many lines); the browser keeps at "
                           f"most {MAX_TEXT_GROWTH} times")
    return Page(url=url, title=title.strip(), text=with_url(url, text), urls=urls, raw=raw)


def _may_decode_special(html: str, deadline: float) -> bool:
    """Whether a character reference of `html` may stand for a character that `replace_special_chars` replaces (the
    parse is given `html` with those replaced, so only references can make them): as Python or, for a number, as its
    code point reads it; and for a page of more than MAX_REFERENCES distinct ones (each was read by a Python call, 1M of
    them in 3 s that no deadline stopped). Without, the walk over every element that replaces them again changes
    nothing (a tenth of converting a page that has no such reference)."""
    seen: set[str] = set()
    for match in _clocked(_CHARACTER_REFERENCE.finditer(html), deadline):
        reference = match.group(0)
        if reference in seen:
            continue
        if len(seen) == MAX_REFERENCES:
            return True
        seen.add(reference)
        code = int(match.group(1), 16) if match.group(1) else int(match.group(2)) if match.group(2) else None
        if code is not None and (code > 0x10FFFF or 0xD800 <= code <= 0xDFFF or SPECIAL_CHARACTERS.search(chr(code))):
            return True
        if SPECIAL_CHARACTERS.search(unescape(reference)):
            return True
    return False


def _parse(html: str, deadline: float) -> tuple[Any, bool]:
    """The root of `html` parsed a PARSE_CHUNK_CHARS piece at a time (its characters that would read as link syntax
    replaced), refused once `deadline` passes; and whether libxml2 stopped at its depth limit (it drops the rest of
    the page then, and says so only in its log)."""
    import lxml.etree

    # without huge_tree, libxml2 silently drops the rest of a document after 255 nested elements (2,048 with it)
    # or a text of more than 10 MB (a log in `<pre>`); a parser is not shared between threads. lxml.etree's, not
    # lxml.html's: the same parse, whose elements are not given their class by a Python call each (7 % of a page)
    parser = lxml.etree.HTMLParser(huge_tree=True)
    for start in range(0, len(html), PARSE_CHUNK_CHARS):
        _in_time(deadline)
        try:
            parser.feed(replace_special_chars(_SMP.sub("", html[start:start + PARSE_CHUNK_CHARS])))
        except (lxml.etree.ParserError, lxml.etree.ParseError, ValueError):
            return None, False
    try:
        root = parser.close()
    except (lxml.etree.ParserError, lxml.etree.ParseError, ValueError):   # nothing fed: "no element found"
        return None, False
    _in_time(deadline)
    return root, any(error.type_name == "ERR_RESOURCE_LIMIT" for error in parser.feed_error_log)


def _drop_unseen(root: Any, deadline: float) -> None:
    """Drop what a browser does not draw, their tails kept: the content of _NEVER_DRAWN elements (scripts, styles, a
    `<title>` in the body, a video's fallback, SVG's `<desc>`), an abbreviation's tooltip,
    and elements hidden by markup: the `hidden` attribute and a `<dialog>` not open (unless an inline `display` shows
    them), an inline (or SVG attribute's) `display: none` or `opacity: 0`; and blank the text that `visibility:
    hidden` or `font-size: 0` hides, which an element inside may set back (a common way to close gaps between inline
    blocks). A page's hidden text was read by the model as if shown (instructions planted for it). Not read: style
    sheets, classes, `var()` and `calc()`, off-screen placing, and where libxml2 builds another tree than a browser."""
    for node in _clocked(root.iter("abbr", "acronym"), deadline):   # a tooltip, which html2text wrote as `*[A]: ...`
        node.attrib.pop("title", None)
    presented = _presented(root, deadline)   # one XPath asking each element for each tag took 1.7 s (300,000 of them)
    nodes = [*root.iter(*_NEVER_DRAWN, "dialog"), *root.xpath("descendant-or-self::*[@hidden or @style]"), *presented]
    declared = {node: {**presented.get(node, {}), **_declarations(node.get("style") or "")}
                for node in _clocked(nodes, deadline)}
    never = [(node, "") for node, properties in declared.items() if _never_drawn(node, properties)]
    if any(node is root for node, _ in never):   # <html style="display:none">: nothing is drawn
        root.clear()
        return
    _replace_nodes_with_text(never, deadline)
    if any("visibility" in properties or "font-size" in properties for properties in declared.values()):
        _blank_inherited(root, declared, deadline)


def _read_formulas(root: Any, deadline: float) -> None:
    """Each MathML formula becomes the text it draws, in a row (`(a)/(b)`, `x^{2}`): dropped, as the reference
    drops them, the model never read a formula the reader sees (ar5iv's papers have nothing else)."""
    inner: set[Any] = set()   # formulas within one already read
    formulas = []
    for formula in _clocked(root.iter("math"), deadline):
        if formula not in inner:
            formulas.append((formula, _math_text(formula, inner, deadline)))
    _replace_nodes_with_text(formulas, deadline)


def _math_text(node: Any, inner: set[Any], deadline: float) -> str:
    """The text a MathML element draws: its tokens in a row, laid out by _MATH_LAYOUTS or under `√`; a `<semantics>`
    draws its first child only. Formulas met inside are added to `inner`."""
    _in_time(deadline)
    if not isinstance(node.tag, str) or node.tag in _MATH_UNSEEN:   # a comment
        return ""
    if node.tag == "math":
        inner.add(node)
    children = [child for child in node if isinstance(child.tag, str)][:1 if node.tag == "semantics" else None]
    texts = [_math_text(child, inner, deadline) for child in children]
    arity, layout = _MATH_LAYOUTS.get(node.tag, (0, ""))
    if arity == len(texts) and not "".join([node.text or "", *(child.tail or "" for child in children)]).strip():
        return layout.format(*texts)
    pieces = [node.text, *(text for child, text in zip(children, texts) for text in (text, child.tail))]
    row = merge_whitespace(" ".join(piece for piece in pieces if piece)).strip()
    return f"√({row})" if node.tag == "msqrt" else row


def _never_drawn(node: Any, properties: dict[str, str]) -> bool:
    display = properties.get("display")
    if node.tag == "title" and node.getparent() is not None and node.getparent().tag == "head":
        return False   # kept to name the page (readability reads it there); html2text skips `<head>`
    if node.tag in _NEVER_DRAWN or display == "none":
        return True
    if (node.get("hidden") is not None or node.tag == "dialog" and node.get("open") is None) and display is None:
        return True   # an inline display overrides the browser's own `[hidden]` and `dialog:not([open])` rules
    number = _CSS_NUMBER.fullmatch(properties.get("opacity", "1"))
    return number is not None and number.group(2) in ("", "%") and float(number.group(1)) <= 0   # below 0 is 0


def _blank_inherited(root: Any, declared: dict[Any, dict[str, str]], deadline: float) -> None:
    """Blank each text that inherits `visibility: hidden` or a zero `font-size` from the inline styles in `declared`
    (and drop each image `visibility` hides), as CSS inherits them: an element may set its own (`visible`, a size
    in px or rem), while a value a browser would not take, or one relative to its parent's (em, %), inherits."""
    import lxml.etree

    inherited = [(False, False)]   # (invisible, zero size) of each open element
    images = []
    for event, node in _clocked(lxml.etree.iterwalk(root, events=("start", "end")), deadline):
        if event == "end":
            inherited.pop()
            if inherited and any(inherited[-1]):   # a tail is the parent's text
                node.tail = None
            continue
        invisible, zero = inherited[-1]
        properties = declared.get(node, {})
        invisible = _VISIBILITY.get(properties.get("visibility", ""), invisible)
        size = _font_size(properties["font-size"]) if "font-size" in properties else None
        zero = zero if size is None else size
        inherited.append((invisible, zero))
        if invisible or zero:
            node.text = None
        if invisible and node.tag == "img":   # an image is drawn at any font size, with its alt text
            images.append((node, ""))
    _replace_nodes_with_text(images, deadline)


def _font_size(value: str) -> bool | None:
    """Whether a font-size is zero (True) or one of its own (False); None when it follows the parent's (em, %, a
    value a browser refuses). A function (`calc()`, `var()`) is taken as a size of its own."""
    number = _CSS_NUMBER.fullmatch(value)
    if number is not None:
        amount, unit = float(number.group(1)), number.group(2)
        if unit not in _ABSOLUTE_UNITS and unit not in _RELATIVE_UNITS or amount < 0:
            return None   # `0x`, `-1px`: a browser refuses the declaration
        return True if amount == 0 else None if unit in _RELATIVE_UNITS else False
    if value in _SIZE_WORDS or value.startswith(("calc(", "clamp(", "min(", "max(", "var(")):
        return False
    return None


def _presented(root: Any, deadline: float) -> dict[Any, dict[str, str]]:
    """The presentation attributes (`<text display="none">`) of each element of the SVG drawings under `root` that
    has some, each drawing walked once (an XPath asking each element for an `svg` around it took 7 s on a page of
    300,000 elements, in one call). An HTML element's are no style: `<p hidden display="block">` stays hidden."""
    seen: set[Any] = set()
    found = {}
    for svg in _clocked(root.iter("svg"), deadline):
        if svg not in seen:
            for node in _clocked(svg.iter(), deadline):
                seen.add(node)
                if attributes := {name: node.get(name).strip(_CSS_SPACE).lower() for name in _PRESENTATION
                                  if node.get(name) is not None}:
                    found[node] = attributes
    return found


def _declarations(style: str) -> dict[str, str]:
    """An inline style's properties, lowercased, as a browser reads them: CSS comments and escapes (`d\\isplay`)
    undone, the last declaration of a property counting unless an earlier one is `!important`; the `font` shorthand
    sets `font-size` (`font: 0/0 a` hides text)."""
    properties: dict[str, str] = {}
    important: set[str] = set()
    kept = _CSS_COMMENT.sub(lambda m: m.group(1) or " ", style)
    for declaration in kept.split(";"):
        name, _, value = (_CSS_ESCAPE.sub(_css_character, part) for part in declaration.partition(":"))
        name, value = name.strip(_CSS_SPACE).lower(), value.lower()
        if name == "font":
            name, value = "font-size", _shorthand_size(value)
        if _IMPORTANT.search(value):
            important.add(name)
        elif name in important:
            continue
        properties[name] = _IMPORTANT.sub("", value).strip(_CSS_SPACE)
    return properties


def _shorthand_size(value: str) -> str:
    """The font size a `font` shorthand sets (`italic bold 0/0 serif` -> `0`); `medium` when none is given."""
    for word in value.split():
        size = word.split("/")[0]
        if _font_size(size) is not None:   # a weight (700) follows its parent's size: it is None
            return size
    return "medium"


def _css_character(match: re.Match[str]) -> str:
    """The character a CSS escape stands for (`\\69` or `\\i` is `i`)."""
    code = match.group(1)
    if code is None:
        return match.group(2)
    number = int(code, 16)
    return chr(number) if 0 < number <= 0x10FFFF and not 0xD800 <= number <= 0xDFFF else "\ufffd"


def _shallow(html: str, deadline: float) -> str:
    """`html` without the start and end tags of elements nested deeper than MAX_DEPTH (their text kept, as _flatten
    keeps it; a link that deep is read as its text), the nesting read from the tags as written: an unclosed tag
    counts as open, so more may become text than libxml2 would have nested, but no text is lost."""
    open_tags: list[str] = []
    dropped: Counter[str] = Counter()    # end tags still to drop, by name
    pieces, at = [], 0
    for tag in _clocked(_TAG.finditer(html), deadline):
        closing, name = tag.group(1), tag.group(2).lower()
        if closing and dropped[name]:
            dropped[name] -= 1
        elif closing:
            if name in open_tags:
                del open_tags[len(open_tags) - 1 - open_tags[::-1].index(name):]
            continue
        elif name in _VOID_ELEMENTS or tag.group(3).endswith("/"):
            continue
        elif len(open_tags) < MAX_DEPTH:
            open_tags.append(name)
            continue
        else:
            dropped[name] += 1
        pieces.append(html[at:tag.start()])
        at = tag.end()
    return "".join(pieces) + html[at:]


def _flatten(root: Any, deadline: float) -> None:
    """What lies deeper than MAX_DEPTH elements becomes text (links and images are text by now), and quotes and lists
    inside MAX_INDENT_DEPTH others of their kind become `div`s, their text and line breaks kept: each level of a list
    or a quote indents every line in it, so kB of nesting made MB of text."""
    import lxml.etree

    depth = 0
    deep: list[Any] = []
    indents = {"blockquote": 0, "list": 0}    # quotes, and lists, open around the node
    kinds: list[str | None] = []              # the kind each open element counts in (None: neither)
    for event, node in _clocked(lxml.etree.iterwalk(root, events=("start", "end")), deadline):
        if event == "end":
            depth -= 1
            if kind := kinds.pop():
                indents[kind] -= 1
            continue
        if (depth := depth + 1) == MAX_DEPTH and len(node):
            deep.append(node)
        kind = _INDENTING.get(node.tag)
        if kind and indents[kind] >= MAX_INDENT_DEPTH:
            node.tag, kind = "div", None
        if kind:
            indents[kind] += 1
        kinds.append(kind)
    for node in _clocked(deep, deadline):
        text = "".join(node.itertext())
        del node[:]
        node.text = text


def _in_time(deadline: float) -> None:
    """Refuse the page once `deadline` (a `time.monotonic()`) has passed."""
    if time.monotonic() > deadline:
        raise ExtractError(f"converting the page took longer than {MAX_HTML_SECONDS:g} s")


def _clocked(items: Iterable[_T], deadline: float) -> Iterator[_T]:
    """`items`, refused once `deadline` passes (looked at every 1,000 items): the steps before html2text walk
    every element in Python (a 50 MB page of links took 40 s before html2text began). Taken 1,000 at a time: a step
    of Python per item (each event of a page passes two of these) was 3 % of converting a page."""
    items = iter(items)
    while chunk := list(itertools.islice(items, 1000)):
        _in_time(deadline)
        yield from chunk


def _site_or_name(url: str) -> str:
    """What names a page without a title: a web page's site, a document's file name (`notes/owls.html`)."""
    return domain(url) if "://" in url else PurePosixPath(url).name


def _plain(text: str | None) -> str | None:
    """An HTML node's text with the characters that would read as link or citation syntax replaced."""
    return replace_special_chars(text) if text else text


def text_page(text: str, url: str, title: str) -> Page:
    """Plain text or Markdown, read as written (characters that look like link syntax replaced, in its title too)."""
    text = _LINE_ENDS.sub("\n", text)
    return Page(url=url, title=replace_special_chars(title), text=with_url(url, replace_special_chars(text)))


def own_page(page: Page) -> Page:
    """A Page a user's fetch function made, its text read as a text page's is (line ends, control characters and link
    syntax replaced), but for the links it numbers itself (`【3†owls†site】` with 3 in its `urls`, as html_page
    writes them), which stay links: a Page used as it was gave the views `\x1b[2J` and the model fake links."""
    pieces, at = [], 0
    text = _LINE_ENDS.sub("\n", page.text)
    for link in LINK_PATTERN.finditer(text):
        number, inner = link.group(0)[1:-1].split("†", 1)
        if number in page.urls:
            pieces += [replace_special_chars(text[at:link.start()]), f"【{number}†{replace_special_chars(inner)}】"]
            at = link.end()
    text = "".join(pieces) + replace_special_chars(text[at:])
    return Page(url=page.url, title=page.title, text=text, urls=dict(page.urls), raw=page.raw)


def heading_title(text: str) -> str | None:
    """A document's title when it starts with one: an underlined first line, or the first `# Heading`. Read
    line by line: the regular expressions that did it backtracked for hours over a few thousand spaces."""
    lines = text.split("\n")
    first, underline = [*itertools.islice(filter(None, map(str.strip, lines)), 2), "", ""][:2]
    if len(first) <= 120 and underline and set(underline) in ({"="}, {"-"}):
        return first
    for line in lines:
        heading = line.lstrip()
        if heading.startswith("#") and heading[1:2].isspace() and len(line) - len(heading) <= 3:
            title = heading[1:].strip().rstrip("#").rstrip()   # `# Title ##`: closing marks are no part of it
            if title:
                return title
    return None


def pdf_text(data: bytes, deadline: float | None = None,
             on_page: Callable[[int, int], None] | None = None) -> tuple[str, str | None, str]:
    """The text of a PDF's first MAX_PDF_READ_PAGES pages, page after page (ligatures as their letters), its title if
    it has one, and what of it was left unread ("" if nothing), read within MAX_PDF_SECONDS and by `deadline` (a
    `time.monotonic()`) if one is given; `on_page(number, count)` is told of each page read (a progress bar: a book
    of thousands takes up to half a minute)."""
    from pypdf import PdfReader

    own = time.monotonic() + MAX_PDF_SECONDS
    deadline = min(own, math.inf if deadline is None else deadline)
    limit = f"{MAX_PDF_SECONDS:g} s" if deadline == own else "the time left"

    pages: list[str] = []
    listed = 0

    def late() -> ExtractError:
        return ExtractError(f"reading the PDF took longer than {MAX_PDF_SECONDS:g} s" + (
            f" (it read {len(pages):,} of its {listed:,} pages)" if pages else ""))

    def in_time(*_: object) -> None:  # called before each drawing operation: pages can share one of 1M of them
        if time.monotonic() > deadline:
            raise late()

    try:
        with _quiet("pypdf"):  # it logs at ERROR what it works around (CJK fonts' "Advanced encoding")
            reader = PdfReader(io.BytesIO(data))
            if reader.is_encrypted and not reader.decrypt(""):
                raise ExtractError("the PDF is encrypted")
            if (count := _page_count(reader.root_object["/Pages"], in_time)) > MAX_PDF_PAGES:
                raise ExtractError(f"the PDF has {count:,} pages; the browser reads at most {MAX_PDF_PAGES:,}")
            listed = len(reader.pages)
            read = min(listed, MAX_PDF_READ_PAGES)
            for number, page in enumerate(itertools.islice(reader.pages, read), 1):
                in_time()
                # pypdf parses a page's drawing operations whole before the first reaches in_time: 20 MB of one
                # hex string (a 20 kB file) took 8 s past the deadline
                drawing, fonts = _parse_bytes(page, in_time)
                needs = drawing / PDF_PARSE_BYTES_PER_SECOND + fonts / CMAP_PARSE_BYTES_PER_SECOND
                if needs > deadline - time.monotonic():
                    if needs < 1:   # not the page's size: the time ran out (it was "page 4337 draws 0.0 MB")
                        raise late()
                    maps = f" and maps its fonts in {fonts / 1e6:,.1f} MB" if fonts > 100_000 else ""
                    raise ExtractError(f"reading the PDF would take longer than {limit} (page {number} draws "
                                       f"{drawing / 1e6:,.1f} MB{maps})")
                pages.append(page.extract_text(visitor_operand_before=in_time) or "")
                if on_page is not None:
                    on_page(number, read)
            title = (reader.metadata or {}).get("/Title") if reader.metadata else None
    except ExtractError:
        raise
    except Exception as err:  # pypdf fails on broken files with assorted errors (AssertionError, AttributeError ...)
        raise ExtractError(f"not a readable PDF ({_pdf_trouble(err)})") from None
    text = "\n\n".join(p.strip("\n") for p in pages).strip().translate(_LIGATURES)
    unread = f"its first {read:,} of {listed:,} pages; the browser reads at most {MAX_PDF_READ_PAGES:,} pages of a " \
        "PDF" if read < listed else ""
    if unread and text:   # the model is told where the document it reads stops
        text += f"\n\n[The browser read the first {read:,} of this PDF's {listed:,} pages.]"
    return text, str(title).strip() if title else None, unread


def _pdf_trouble(err: Exception) -> str:
    """What pypdf's `err` says of the file, in words: its messages named its internals (`AttributeError: 'NoneType'
    object has no attribute 'get_object'`, `LimitReachedError: ... 121505 bytes remaining.`)."""
    from pypdf.errors import EmptyFileError, LimitReachedError

    if isinstance(err, LimitReachedError):
        return "it is too large when unpacked"
    return "the file is empty" if isinstance(err, EmptyFileError) else "it is damaged"


def _page_count(node: Any, in_time: Callable[[], None]) -> int:
    """How many pages the page tree under `node` lists, each node read once however often it is listed, and
    refused past MAX_PDF_PAGES distinct pages: pypdf builds every page it lists before counting them (100,000
    took 5 s and 375 MB)."""
    pages_under: dict[int, int] = {}    # id of a node (pypdf keeps each it read) -> the pages it lists
    leaves = itertools.count(1)

    def count(node: Any) -> int:
        node = node.get_object()
        if id(node) not in pages_under:
            in_time()
            pages_under[id(node)] = 0   # a node listing itself lists nothing more
            kids = node.get("/Kids") if isinstance(node, dict) else None
            if isinstance(kids, list):
                pages_under[id(node)] = sum(map(count, kids))
            elif next(leaves) > MAX_PDF_PAGES:
                raise ExtractError(f"the PDF has more than {MAX_PDF_PAGES:,} pages; the browser reads at most "
                                   f"{MAX_PDF_PAGES:,}")
            else:
                pages_under[id(node)] = 1
        return pages_under[id(node)]

    return count(node)


def _parse_bytes(page: Any, in_time: Callable[[], None]) -> tuple[int, int]:
    """Bytes pypdf parses to read `page`: of its drawing operations, its contents (a stream as often as they list
    it: pypdf joins them) and the forms its resources hold, forms within forms too (decoded: pypdf keeps what it
    decoded for the reading); and of its fonts' character maps (ToUnicode, a CMap encoding), once for every name a
    font is listed under in the page's or a form's resources, as pypdf parses each name's maps anew before the first
    drawing operation reaches the deadline's check (a 4 kB file listing one 1.4 MB map under 150 names took 66 s)."""
    from pypdf.generic import StreamObject

    sizes: dict[int, int] = {}   # a map's decoded size, by the stream's id (each decoded once here)

    def size(stream: StreamObject) -> int:
        if id(stream) not in sizes:
            in_time()
            sizes[id(stream)] = len(stream.get_data())
        return sizes[id(stream)]

    def font_maps(resources: Any) -> int:
        resources = resources.get_object() if resources is not None else None
        fonts = resources.get("/Font") if isinstance(resources, dict) else None
        fonts = fonts.get_object() if fonts is not None else None
        total = 0
        for font in fonts.values() if isinstance(fonts, dict) else ():
            font = font.get_object()
            for key in ("/ToUnicode", "/Encoding") if isinstance(font, dict) else ():
                cmap = font.get(key)
                cmap = cmap.get_object() if cmap is not None else None
                total += size(cmap) if isinstance(cmap, StreamObject) else 0
        return total

    def forms(resources: Any) -> list[Any]:
        resources = resources.get_object() if resources is not None else None
        xobjects = resources.get("/XObject") if isinstance(resources, dict) else None
        xobjects = xobjects.get_object() if xobjects is not None else None
        return [x for x in xobjects.values() if isinstance(form := x.get_object(), StreamObject)
                and form.get("/Subtype") == "/Form"] if isinstance(xobjects, dict) else []

    total, maps, seen = 0, font_maps(page.get("/Resources")), set()
    todo = [page.get("/Contents"), *forms(page.get("/Resources"))]
    while todo:
        in_time()
        node = todo.pop()
        node = node.get_object() if node is not None else None
        if isinstance(node, StreamObject):
            total += len(node.get_data())
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, list):
            todo += node
        elif isinstance(node, StreamObject):
            todo += forms(node.get("/Resources"))
            maps += font_maps(node.get("/Resources"))
    return total, maps


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """The logger `name` (and those under it) silent meanwhile, its level restored after."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def decode_text(data: bytes, charset: str | None = None, fallback: str | None = None) -> str:
    """Bytes of a text document as str (the declared charset, else UTF-8, else `fallback`, else Windows-1252);
    binary data (a NUL in the first 8 kB, as git tells, unless it is UTF-16/32 text) is refused; a NUL further on is
    dropped with the characters `replace_special_chars` replaces."""
    for bom, codec in _UNICODE_BOMS:  # UTF-16/32 (Notepad's "Unicode", PowerShell's `>`): NULs, yet text
        if data.startswith(bom):
            return data[len(bom):].decode(codec, "replace")
    if b"\x00" in data[:8192]:
        if (text := _unicode_without_bom(data)) is None:
            raise ExtractError("binary data, not a text document")
        return text
    if charset:
        try:
            return data.decode(charset, "replace")
        except (LookupError, UnicodeError):  # a charset Python does not know, or cannot decode with "replace"
            pass
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    if fallback:
        try:
            return data.decode(fallback, "replace")
        except (LookupError, UnicodeError):
            pass
    return data.decode("cp1252", "replace")  # the usual non-UTF-8 text file; never fails


def _unicode_without_bom(data: bytes) -> str | None:
    """`data` as the UTF-32 or UTF-16 text it clearly is without a byte-order mark (`str.encode("utf-16-le")`, a
    `.NET` writer's), else None: it decodes whole, its first 4,096 characters are text (no NUL, no control character
    but line ends and tabs, none unassigned or private) and half of them at least ASCII, and of the readings that
    are, the one with the most ASCII is taken. Binary files (ELF, PNG, zip) hold NUL pairs or controls where they are
    aligned; two bytes `\\x00\\x01` are no `Ā`."""
    readings = []
    for codec in ("utf-32-le", "utf-32-be", "utf-16-le", "utf-16-be"):
        try:
            text = data.decode(codec)
        except UnicodeDecodeError:   # an odd length, a lone surrogate, past U+10FFFF
            continue
        sample = text[:4096]
        plain = sum(char.isascii() for char in sample)
        if 2 * plain >= len(sample) and all(char in "\t\n\r\x0b\x0c" or unicodedata.category(char) not in _NOT_TEXT
                                            for char in sample):
            readings.append((plain, text))
    return max(readings, key=lambda reading: reading[0])[1] if readings else None


def document_page(data: bytes, url: str, name: str, *, content_type: str = "", charset: str | None = None,
                  main_content: bool = False, base: str | None = None, deadline: float | None = None,
                  shown_name: str | None = None, on_page: Callable[[int, int], None] | None = None) -> Page:
    """Any supported document (by content type, else by file name, else HTML by how it starts) as a page (HTML
    links resolved against `base`, default `url`), read by `deadline` (a `time.monotonic()`) if one is given. A
    text or PDF document without a title of its own is titled `shown_name` (default: its file name): a file renamed
    apart from another (`owls (2).txt`) read as `owls.txt` in results, headers and citations. A PDF tells `on_page`
    of each page read (see `pdf_text`)."""
    try:
        path = PurePosixPath(urlparse(name).path if "://" in name else name)  # a file may be named `C# notes.html`
    except ValueError:  # `http://[x/owls.html`: urllib's "Invalid IPv6 URL"
        path = PurePosixPath(name)
    suffix = path.suffix.lower()
    content_type = content_type.split(";")[0].strip().lower()
    stem = shown_name or path.name or name
    if content_type == "application/pdf" or (not content_type and suffix in PDF_SUFFIXES) or data[:5] == b"%PDF-":
        text, title, unread = pdf_text(data, deadline, on_page)
        if not text.strip():   # kept, it was a document the model never finds and opens empty; skipped, it is named
            raise ExtractError("the PDF holds no text (scanned pages? the browser reads no images)")
        page = text_page(text, url, title or stem)
        page.unread = unread
        return page
    html = content_type in ("text/html", "application/xhtml+xml") or not content_type and (
        suffix in HTML_SUFFIXES or suffix not in DOCUMENT_SUFFIXES and _HTML_START.match(data) is not None)
    markup = html or content_type in ("application/xml", "text/xml")
    text = decode_text(data, charset, _declared_charset(data) if markup else None)
    if html:
        return html_page(text, url, main_content=main_content, base=base, deadline=deadline)
    if content_type and not content_type.startswith("text/") and content_type not in ("application/json",
                                                                                        "application/xml"):
        raise ExtractError(f"cannot read {content_type} documents")
    return text_page(text, url, heading_title(text) or stem)


def _declared_charset(data: bytes) -> str | None:
    """The charset a document declares: in its XML declaration (XHTML, XML), else in a `<meta>` of its first 1,024
    bytes, where browsers look (UTF-16 and UTF-32 there mean UTF-8, as for them): HTML saved in Windows-1251 or
    Shift_JIS, and XHTML declaring KOI8-R, read as Windows-1252."""
    match = _XML_ENCODING.match(data) or _META_CHARSET.search(data[:1024])
    try:
        codec = codecs.lookup(match.group(1).decode("ascii")).name if match else None
    except LookupError:
        return None
    return None if codec is None or codec.startswith(("utf-16", "utf-32")) else codec


# ---------------------------------------------------------------- the reference's HTML conversion

def _main_content(html: str, deadline: float) -> tuple[str, str]:
    """readability-lxml's main content of a web page, unless it kept too little of it, or the page would take it
    more than a second or two (MAX_MAIN_CONTENT_WORK: 200 kB of text in 50 nested blockquotes took 14 s, before any
    deadline was looked at); then the page is kept whole, as one of too many tags is. What a browser does not
    draw is dropped first: readability strips style attributes, and kept text that `opacity: 0` had hidden."""
    import lxml.html

    logging.getLogger("readability").setLevel(logging.CRITICAL)  # it logs each page it gives up on, traceback and all
    cut = _LONG_BLANKS.sub(lambda m: m.group(0)[:16], html)   # what readability reads; a page kept whole is as written
    try:
        tree = lxml.html.fromstring(cut)
        work = 0
        for node in tree.iter():
            work += len(node.text_content())
            if work > MAX_MAIN_CONTENT_WORK:
                return html, ""
    except Exception:  # lxml refuses an empty or odd document: readability would too
        return html, ""
    _drop_unseen(tree, deadline)
    cut = lxml.html.tostring(tree, encoding="unicode")
    try:
        document = _reader_class()(cut)
        summary, title = document.summary(html_partial=True), document.short_title()
    except Exception:  # readability gives up on odd markup: keep the whole page
        return html, ""
    kept, whole = len(_visible_text(summary)), len(_visible_text(html))
    return (summary if kept >= min(500, whole // 4) else html), title or ""


@functools.lru_cache(maxsize=1)
def _reader_class() -> type:
    """readability-lxml's Document, keeping the article's short blocks that read as content (see _SHORT_BLOCKS)."""
    from readability import Document
    from readability.readability import text_length

    class Reader(Document):
        def get_preserved_elements(self, node: Any) -> dict[Any, bool]:
            kept = super().get_preserved_elements(node)
            for block in self.tags(node, *_SHORT_BLOCKS):
                if (next(block.iter("a"), None) is None and self.class_weight(block) >= 0
                        and 0 < text_length(block) < self.min_text_length):
                    kept[block] = True
            return kept

    return Reader


def _visible_text(html: str) -> str:
    """`html` without its tags, to measure: no match passes a `<` (`<[^>]*>` scanned the rest of the page from each
    `<` that no `>` closes: 20,000 of them before 1 MB of text took 13 s in one regex call)."""
    return merge_whitespace(_TAG_AS_WRITTEN.sub(" ", html)).strip()


def _node_text(node: object) -> str:
    return merge_whitespace(" ".join(node.itertext()))  # type: ignore[attr-defined]


def _replace_nodes_with_text(replacements: list[tuple[Any, str]], deadline: float) -> None:
    """Each node replaced by its text, as the reference does one node at a time (the text joins its previous
    sibling's tail, or its parent's text), but in one pass over each parent: one at a time copied the
    growing text for every node (40,000 links in one paragraph took 137 s)."""
    texts: dict[Any, dict[Any, str]] = {}
    for node, text in _clocked(replacements, deadline):
        parent = node.getparent()
        if parent is not None:
            texts.setdefault(parent, {})[node] = text
    for parent, replaced in texts.items():
        holder, pieces = None, []  # what the replaced nodes' texts join: the parent's text, or a kept child's tail
        for child in _clocked([*parent, None], deadline):
            if child is not None and child in replaced:
                pieces += [replaced[child], child.tail or ""]
                parent.remove(child)
                continue
            if pieces and holder is None:
                parent.text = (parent.text or "") + "".join(pieces)
            elif pieces:
                holder.tail = (holder.tail or "") + "".join(pieces)
            holder, pieces = child, []


def _number_links(root: Any, url: str, deadline: float) -> dict[str, str]:
    """Each link becomes `【id†text】` (`【id†text†domain】` when it leaves the page's site); id -> URL."""
    here = _site(url)
    urls: dict[str, str] = {}
    ids: dict[str, str] = {}
    replacements = []
    for a in _clocked(root.findall(".//a[@href]"), deadline):
        link = a.attrib["href"]
        if link.startswith(("mailto:", "javascript:")):
            continue
        text = _node_text(a).replace("†", "‡")
        if cited_lines(text) is not None:   # `【3†L5-L9】` would read as a citation of lines 5-9 the model could copy
            text = f"link {text.strip()}"
        if not re.sub(r"【\@([^】]+)】", "", text):  # an image link
            continue
        if link.startswith("#"):
            replacements.append((a, text))
            continue
        try:
            link = urljoin(url, link)
            there = _site(link)
        except ValueError:
            there = ""
        if not there:
            continue
        link_id = ids.get(link)
        if link_id is None:
            link_id = ids[link] = str(len(urls))
            urls[link_id] = link
        replacements.append((a, f"【{link_id}†{text}】" if there == here else f"【{link_id}†{text}†{there}】"))
    _replace_nodes_with_text(replacements, deadline)
    return urls


def _site(url: str) -> str:
    """Where a link leads: its `domain`, and for every file on this computer `file:` (what `domain` makes of a
    file URL, unless its path holds "http": then none, and links to `https-setup.html` were dropped)."""
    return "file:" if url.startswith("file:") else domain(url)


def _replace_images(root: Any, deadline: float) -> None:
    replacements = []
    for count, img in enumerate(_clocked(root.findall(".//img"), deadline)):
        name = img.get("alt", img.get("title"))
        replacements.append((img, f"[Image {count}: {name}]" if name else f"[Image {count}]"))
    _replace_nodes_with_text(replacements, deadline)


def _html_to_text(root: Any, deadline: float) -> str:
    """html2text's Markdown-like text of the tree under `root`, refused once `deadline` passes. Its handlers are
    called from the tree, as its parser (html.parser) calls them on the tree written out: written out and parsed
    again in pure Python, each page was parsed twice (/usr/share/doc's 292 HTML pages: 6.5 s of CPU, now 4.5)."""
    converter = _converter_class()()
    converter.ignore_links = True
    converter.ignore_images = True
    converter.body_width = 0
    converter.ignore_tables = True
    converter.unicode_snob = True
    converter.ignore_emphasis = True
    for kind, tag, value in _clocked(_spaced_events(root, deadline), deadline):
        if kind == "data":
            converter.handle_data(value)
        elif kind == "start":
            converter.handle_starttag(tag, value)
        elif kind == "end":
            converter.handle_endtag(tag)
    # stripped of its blank lines only: stripped whole, a page's first line lost the indent its next ones keep (a
    # `<pre>`'s code, a list's items)
    return _LEADING_BLANK_LINES.sub("", converter.optwrap(converter.finish())).rstrip()


def _spaced_events(root: Any, deadline: float) -> Iterator[tuple[str, str, Any]]:
    """`_tree_events` as html.parser reports the tree written out, spaced as the reference spaced it: the texts
    between two tags joined, each cut at the characters written as entities (`&`, `<`, `>`, `\\r`: each is a text of
    its own), and a space added to a text that a run of tags parts from another word (`owls<br>voles` reads `owls
    voles`); a comment is such a tag. html2text keeps a space ending a text, and drops one that is a text alone."""
    text = ""                                  # the text since the last run of tags, not given yet
    tags: list[tuple[str, str, Any]] = []      # the tags after it
    for event in itertools.chain(_tree_events(root, deadline), [("data", "", "")]):
        if event[0] != "data":
            tags.append(event)
        elif not tags:
            text += event[2]
        else:
            if _WORD.match(text[-1:]) and _WORD.match(event[2]):
                text += " "
            yield from (("data", "", piece) for piece in _ESCAPED.split(text) if piece)
            yield from tags
            text, tags = event[2], []
    yield from (("data", "", piece) for piece in _ESCAPED.split(text) if piece)


def _tree_events(root: Any, deadline: float) -> Iterator[tuple[str, str, Any]]:
    """The tree under `root` as html.parser reports it written out: ("start", tag, attributes), ("end", tag, None),
    ("data", "", text), and ("comment", "", None) for comments and processing instructions; a `<sup>` or `<sub>` of
    one word and no elements is the text `^{word}` or `_{word}`, as the reference writes them."""
    import lxml.etree

    for event, node in _clocked(lxml.etree.iterwalk(root, events=("start", "end", "comment", "pi")), deadline):
        if event in ("comment", "pi"):
            yield "comment", "", None
        elif node.tag in ("sup", "sub") and not len(node) and _ONE_WORD.fullmatch(node.text or ""):
            if event == "start":
                yield "data", "", f"{'^' if node.tag == 'sup' else '_'}{{{node.text}}}"
        elif event == "start":
            yield "start", node.tag, list(node.attrib.items())
            if node.text:
                yield "data", "", node.text
            continue
        else:
            yield "end", node.tag, None
        if event != "start" and node.tail:
            yield "data", "", node.tail


@functools.lru_cache(maxsize=1)
def _converter_class() -> type:
    """html2text's converter, writing a page's text as it reads: html2text escapes Markdown in text (`2024. A good
    year` read `2024\\. A good year`, `- voles` read `\\- voles`, `C:\\*` gained a backslash), escapes the author
    never wrote, which the model read and quoted. The Markdown the converter writes is its tags' (lists, headings)."""
    import html2text

    class Converter(html2text.HTML2Text):
        def handle_data(self, data: str, entity_char: bool = False) -> None:
            super().handle_data(data, True)   # html2text escapes only data not flagged as an entity's

    return Converter
