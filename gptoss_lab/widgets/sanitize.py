"""Allow-list HTML sanitizing (nh3) for everything rendered from model or tool text, MathML included.

Model text is untrusted: a final answer, a tool's output or a LaTeX formula can carry `<script>`,
`onerror=`, `javascript:` links or MathML/SVG tricks. Every HTML fragment the kernel builds from such
text passes `sanitize()` before it is sent to a front end or saved in a notebook; the widget's front
end sanitizes again with DOMPurify (static/common.js) before anything touches the DOM.
"""
from __future__ import annotations

import bisect
import functools
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit
from xml.etree import ElementTree

import regex

# HTML that rendered Markdown, highlighted code and the transcript's own structure need (no h1–h3: a model's
# headings are demoted, see `_heading_level`).
_HTML = {
    "a", "abbr", "b", "blockquote", "br", "code", "del", "details", "div", "em", "h4", "h5", "h6", "hr", "i",
    "kbd", "li", "ol", "p", "pre", "s", "span", "strong", "sub", "summary", "sup", "table", "tbody", "td", "tfoot",
    "th", "thead", "tr", "ul",
}
# Presentation MathML (what latex2mathml writes). No `annotation-xml` (it can hold HTML), no `maction`.
_MATHML = {
    "math", "mi", "mn", "mo", "ms", "mspace", "mtext", "mrow", "mfrac", "msqrt", "mroot", "mstyle", "merror",
    "mpadded", "mphantom", "mfenced", "menclose", "msub", "msup", "msubsup", "munder", "mover", "munderover",
    "mmultiscripts", "mprescripts", "none", "mtable", "mtr", "mtd", "mlabeledtr", "semantics", "annotation",
}
# No `mathsize` (`\Huge` is 2.49 times its parent's size: ten nested make a 10 000 px letter); a negative
# `scriptlevel` (a larger font at each step) is dropped by _filter_attribute. No `mathcolor`/`mathbackground`:
# `\color{white}` hid text on a white page (what the reader cannot see, the reader cannot check).
_MATHML_ATTRIBUTES = {
    "display", "displaystyle", "scriptlevel", "mathvariant",
    "stretchy", "fence", "separator", "accent", "accentunder", "largeop", "movablelimits", "symmetric",
    "lspace", "rspace", "minsize", "maxsize", "linethickness", "width", "height", "depth", "voffset",
    "columnalign", "rowalign", "columnspacing", "rowspacing", "columnlines", "rowlines", "frame",
    "framespacing", "columnspan", "rowspan", "notation", "open", "close", "separators", "align", "xmlns",
    "encoding",
}
# Tags removed with everything inside them (their text is code or markup, never content to show).
_DROP_WITH_CONTENT = {"script", "style", "template", "noscript", "iframe", "object", "embed", "svg", "textarea",
                      "select", "noembed", "noframes", "xmp", "plaintext", "title"}
LINK_SCHEMES = ("http://", "https://", "mailto:")
# The classes on the root of every static HTML form: JupyterLab's MathJax 3 typesets TeX in text/html outputs, which
# would paint the TeX a model wrote (`\\(\\color{red}{\\raise{3em}{…}}\\)`) past the MathML the lab renders itself with
# colour, offsets and sizes left out; `mathjax_ignore` stops it (tests/browser/test_static_math_browser.py).
# `tex2jax_ignore` is MathJax 2's class, for pages that load it (nbconvert's, from a CDN: not checked here).
NO_TYPESETTING = "mathjax_ignore tex2jax_ignore"


def _pygments_classes() -> set[str]:
    from pygments.token import STANDARD_TYPES

    return {name for name in STANDARD_TYPES.values() if name}


# Our own structural classes (the saved transcript); model text cannot produce them: Markdown is rendered
# with HTML disabled, MathML elements may carry no class at all, and a model's Markdown is cleaned without them.
_GX = {"gx-fallback", "gx-prompt", "gx-notice", "gx-info", "gx-warning", "gx-error", "gx-reasoning", "gx-note",
       "gx-reasoning-text", "gx-footer", "gx-p", "gx-h", "gx-hr"}
# The browser's citation chips, sources list and call cards (widgets/citations.py); a chip's popup is the
# text of its data-cite attribute, drawn by CSS.
_BROWSE = {"sup": {"gx-cite", "gx-cite-missing"}, "ol": {"gx-cite-sources"}, "ul": {"gx-browse-results"},
           "div": {"gx-cite-head", "gx-browse", "gx-browse-head", "gx-browse-note"}, "pre": {"gx-browse-lines"},
           "span": {"gx-browse-source", "gx-browse-snippet", "gx-browse-n", "gx-cite-lines", "gx-cite-pop"},
           "details": {"gx-browse-raw"}}
# Classes nbconvert's pages give meaning to, which its `sanitize_html` keeps where it drops our style (transcript.py):
# a tool card's head, code and output read from the left (`_LEFT`); markup that sanitizer would show as its tags is
# hidden (`RICH_BOX`).
_LEFT = {"jp-RenderedText", "text-left"}
# A box around markup that only our style shows (it draws the box as `display: contents`): a formula's MathML and a
# saved citation chip. nbconvert's pages hide it (JupyterLab's `.lm-Widget.lm-mod-hidden` in the lab template, Bootstrap's
# `.hidden` in the classic one), where `sanitize_html` showed each formula and chip as its tags (a chip's with its cited
# lines): what follows it says the same in words (the formula's TeX, the chip's popup text).
RICH_BOX = "gx-rich lm-Widget lm-mod-hidden hidden"


# MathML lengths a formula could use to paint outside its own box (`\smash{\raise{30em}{...}}` over the page
# above, `\rlap` of a long rule, negative space): mpadded's are dropped and no length may be negative. Nor
# may one be larger than a formula ever needs (`\rule{1em}{300em}` was a black block down the whole page).
# A fraction's line is thinner still: `a \above 300em b` drew a bar 4 213 px tall (a review).
_MATH_LENGTHS = {"width", "height", "depth", "lspace", "rspace", "voffset", "minsize", "maxsize", "linethickness"}
_MATH_LENGTH_MAX_EM = 12
_LINE_MAX_EM = 0.5
# Each unit in em at the default 16 px font (`mu`, which latex2mathml writes for \mkern, is 1/18 em).
_EM = {"": 1, "em": 1, "ex": 0.5, "px": 1 / 16, "pt": 1 / 12, "pc": 1, "in": 6, "cm": 2.362, "mm": 0.2362,
       "mu": 1 / 18, "%": 0.01}
_LENGTH = re.compile(r"\s*(\d*\.?\d+)\s*([a-z%]*)\s*", re.IGNORECASE)


def _small_length(value: str, limit: float = _MATH_LENGTH_MAX_EM) -> bool:
    """A non-negative MathML length of at most `limit` em, or a named one (`thinmathspace`, `thick`)."""
    if value.strip().isalpha():   # but `negativeveryverythickmathspace`, a negative one
        return not value.strip().lower().startswith("negative")
    match = _LENGTH.fullmatch(value)
    unit = match and _EM.get(match.group(2).lower())
    return bool(unit) and float(match.group(1)) * unit <= limit


PROSE = ("p", "li", "h4", "h5", "h6")  # Markdown's prose (an answer's headings are demoted to h4-h6)


def _filter_attribute(tag: str, attribute: str, value: str) -> str | None:
    """Keep href only for http(s) and mailto links, no MathML geometry that leaves the formula's box or is
    larger than a formula, no negative scriptlevel, no tabindex but 0, no role but a note reference, and no id, popover
    target or popover but a saved chip's; everything else in the allow-list passes."""
    if attribute == "href":
        return value if web_link(value) else None
    if tag in _MATHML and attribute in _MATH_LENGTHS and (tag == "mpadded" or not _small_length(
            value, _LINE_MAX_EM if attribute == "linethickness" else _MATH_LENGTH_MAX_EM)):
        return None
    if attribute == "scriptlevel" and value.strip().startswith("-"):
        return None
    if attribute == "tabindex":  # in the page's order: no text taking the focus before the page's own
        return value if value == "0" else None
    if attribute == "role":  # a citation chip with no link is still a reference to a note (citations.py)
        return value if value == "doc-noteref" else None
    if attribute == "dir":  # the saved form's dir="auto" (transcript.py); no text turned right to left by a value
        return value if value == "auto" else None
    if attribute in ("id", "popovertarget"):  # a saved chip and its popover (citations._popover_key), and no other id
        return value if _POPOVER_ID.fullmatch(value) else None
    if attribute == "popover":  # a popover that light dismiss and Escape close (not "manual", not "hint")
        return value if value == "" else None
    return value


_POPOVER_ID = re.compile(r"gx-cite-[0-9a-f]{12}-[0-9]{1,4}")


def web_link(url: str) -> bool:
    """Whether `url` is a link the lab keeps: http(s) or mailto (any other `href` is dropped)."""
    return url.strip().lower().startswith(LINK_SCHEMES)


@functools.cache
def _cleaner(lab: bool = True) -> Any:
    """nh3's cleaner: the lab's own markup (`lab`: its classes, citation chips, tool cards, the attributes they
    carry), or a model's Markdown, which gets none of them whatever reaches it (chips are added after it)."""
    import nh3

    attributes: dict[str, set[str]] = {tag: set(_MATHML_ATTRIBUTES) for tag in _MATHML}
    # aria-label names a citation chip and a tool card (screen readers); tabindex="0" lets Tab reach a chip with no
    # link (the saved form has no script to do it), and its role says what it is. No title on any element ("*":
    # nh3 keeps title and lang on every one unless told): a model's link title, `[](url "Source 1: …")`, was the
    # link's name for a screen reader and its tooltip, and passed for a citation chip.
    attributes.update({"*": set(), "a": {"href"}, "ol": {"start"}, "th": {"style"}, "td": {"style"},
                       **{tag: {"dir"} for tag in ("div", *PROSE)}})
    # a model's code and formulas (a formula's TeX, `transcript._math`, in a span the styles hide)
    classes = {"span": _pygments_classes() | {"gx-tex"}, "code": {"gx-math"}}
    if lab:
        attributes.update({"a": {"href", "aria-label", "tabindex", "role"}, "table": {"aria-label"},
                           "details": {"open"}, "sup": {"data-cite"}, "button": {"popovertarget", "aria-label"},
                           "span": {"id", "popover"}})
        classes = {"span": classes["span"] | _BROWSE["span"] | set(RICH_BOX.split()), "code": {"gx-math"},
                   "div": _GX | _BROWSE["div"] | _LEFT,
                   "details": _GX | _BROWSE["details"],
                   "pre": {"gx-code", "gx-output", "gx-raw"} | _LEFT | _BROWSE["pre"],
                   "table": {"gx-tool"}, "td": {"gx-tool-head"}, "sup": _BROWSE["sup"], "ol": _BROWSE["ol"],
                   "ul": _BROWSE["ul"], "blockquote": {"gx-final", "gx-commentary"}}
    return nh3.Cleaner(
        tags=_HTML | _MATHML | ({"button"} if lab else set()),   # a saved chip (citations.chip_html)
        clean_content_tags=_DROP_WITH_CONTENT,
        attributes=attributes,
        attribute_filter=_filter_attribute,
        url_schemes={"http", "https", "mailto"},
        url_relative="deny",
        link_rel="noopener noreferrer",
        set_tag_attribute_values={"a": {"target": "_blank"}, "button": {"type": "button"}},   # no button submits
        allowed_classes=classes,
        filter_style_properties={"text-align"},   # Markdown tables align columns with style="text-align:…"
        strip_comments=True,
    )


# Unicode direction controls: in code they can make what a reader sees differ from what runs ("Trojan Source").
BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


# ... and, with them, the invisible characters that can make a name or a URL read as another one
# (zero-width space and joiners, word joiner, byte order mark); and lone surrogates, which no rendering encodes.
HIDDEN = re.compile(BIDI_CONTROLS.pattern[:-1] + "\u200b-\u200d\u2060\ufeff\ud800-\udfff]")


# ... and, in code, every character Unicode draws as nothing where a font has no glyph for it (Default_Ignorable_Code_Point:
# zero-width ones, soft hyphen, word joiner, invisible operators, variation selectors, Hangul fillers, tag characters):
# `exec(bytes(ord(c) - 0xE0000 for c in "").decode())` ran the program its string held in tag characters, and
# `"admin\u200b"` read as "admin"
CODE_UNSEEN = re.compile(BIDI_CONTROLS.pattern[:-1] + "\u00ad\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200d"
                         "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8\U0001bca0-\U0001bca3"
                         "\U0001d173-\U0001d17a\U000e0000-\U000e0fff]")


def reveal_in_code(text: str) -> str:
    """Direction controls and characters drawn as nothing written out (`\\u202e`, `\\U000e0070`), so shown code reads
    as it runs, in the order it runs."""
    return CODE_UNSEEN.sub(_escape, text)


def reveal_hidden(text: str) -> str:
    """Direction controls and zero-width characters written out (`\\u200b`): for names and URLs, which
    are shown to say what something is, never to lay out right-to-left text."""
    return HIDDEN.sub(_escape, text)


# Lookalike letters: a word of a name or title that mixes scripts (`pаypal` with a Cyrillic `а`) reads as another
# word; as browsers show such a domain as punycode, its letters not in the Latin script are written out
# (`p\u0430ypal`). That is done where one of those letters has a Latin lookalike in Unicode's confusables (UTS #39):
# `μm` and `Ωmega` read as written. A word of one script stays as it is (`Отчёт`, `報告`), and so does Latin with the
# scripts written together with it (Japanese, Chinese, Korean: `Python入門`). Letters of a script not listed count
# as one script of their own, other than Latin (a mathematical `𝐚` in `p𝐚ypal` too). A label of a host or a file's
# name before a Latin ending (`раураӏ.com`, `раураӏ.md`) written wholly in letters that look Latin is written out
# too, as browsers show such a host as punycode: a Russian word of such letters in a title (`хор`) is left as it is.
_SCRIPTS = ("Latin", "Greek", "Cyrillic", "Armenian", "Georgian", "Hebrew", "Arabic", "Syriac", "Thaana", "Nko",
            "Devanagari", "Bengali", "Gurmukhi", "Gujarati", "Oriya", "Tamil", "Telugu", "Kannada", "Malayalam",
            "Sinhala", "Thai", "Lao", "Tibetan", "Myanmar", "Khmer", "Mongolian", "Ethiopic", "Cherokee",
            "Canadian_Aboriginal", "Coptic", "Glagolitic", "Runic", "Ogham", "Tifinagh", "Lisu", "Vai", "Osage",
            "Deseret", "Gothic", "Old_Italic", "Yi", "Han", "Hiragana", "Katakana", "Bopomofo", "Hangul")
_SCRIPT = regex.compile("|".join(f"(?P<{name}>\\p{{sc={name}}})" for name in _SCRIPTS))
_WORD = regex.compile(r"[\p{L}\p{M}]+")
_TOGETHER = ({"Latin", "Han", "Hiragana", "Katakana"}, {"Latin", "Han", "Bopomofo"}, {"Latin", "Han", "Hangul"})
# a dotted name: a host (`раураӏ.com`) or a file's name (`раураӏ.md`); matched whole and without backtracking (the
# lookbehind starts a match only where a name starts), so that a page's 30 kB title takes linear time
_DOTTED = regex.compile(r"(?<![\p{L}\p{M}\p{N}_-])[\p{L}\p{M}\p{N}_-]++(?:\.[\p{L}\p{M}\p{N}_-]++)++")
_LATIN_LABEL = re.compile("[A-Za-z]{2,}")


def reveal_mixed_scripts(text: str) -> str:
    """`text` with lookalike letters written out (`\\u0430`) in each word that mixes scripts and in each label of a
    dotted name written wholly in them (see above): a name or title shown to say what a document is cannot pass
    for another's."""
    if text.isascii():
        return text
    return _WORD.sub(_revealed_word, _DOTTED.sub(_revealed_labels, text))


def reveal_host(host: str) -> str:
    """A host as shown: lookalike letters written out and, in one that no DNS name can be (IDNA 2008 refuses it, as
    the browser's fetches do), every character outside ASCII: `google.com\u2215signin\u2215v2.evil.example`, whose
    division slashes read as a path under Google's address, is a name under evil.example to a web browser."""
    if host.isascii():
        return host
    import idna  # (here: `%load_ext` imports this module)

    name, colon, port = host.rpartition(":")
    if not (colon and port.isdigit()):
        name, colon, port = host, "", ""
    try:
        idna.encode(name.rstrip("."), uts46=True)
    except (idna.IDNAError, UnicodeError):
        return _written(host, lambda c: not c.isascii())
    return reveal_mixed_scripts(name) + colon + port


def short_address(url: str, chars: int = 120) -> str:
    """`url` on one line in about `chars` characters that never lose its host's end (where the request goes): a user
    name before the host (`user@`) is left out, a long host keeps its end, the rest is cut, and the host is shown as
    `reveal_host` shows it. For approval questions and citation chips (`en.wikipedia.org.wiki-owl-…-article.xxx…`
    hid that the page was evil.example's)."""
    url = " ".join(url.split())
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or not parts.netloc:
        return url if len(url) <= chars else url[:chars - 1] + "…"
    host = reveal_host(parts.netloc.rsplit("@", 1)[-1])
    room = max(20, chars * 2 // 3)
    host = host if len(host) <= room else "…" + host[-(room - 1):]
    start = f"{parts.scheme}://{'…@' if '@' in parts.netloc else ''}{host}"
    rest, left = url.split(parts.netloc, 1)[1], max(20, chars - len(start))
    return start + (rest if len(rest) <= left else rest[:left - 1] + "…")


def link_host_note(text: str, href: str) -> str:
    """What a link whose `text` names a host other than the one `href` opens says after its text, " (opens
    evil.example)"; else "". `[https://github.com/login](https://evil.example/login)` read as Google's sign-in page
    while it opened evil.example's (browsers show where only on hover, and not to a finger or a screen reader)."""
    named = {_site(name) for name in _named_hosts(text)}
    if href.lower().startswith("mailto:"):
        host = href[len("mailto:"):].split("?")[0].rpartition("@")[2]
    else:
        try:
            host = urlsplit(href.strip()).hostname or ""
        except ValueError:
            host = ""
    if not named or named == {_site(host)}:
        return ""
    return f" (opens {reveal_host(host) or 'no host'})"


def _named_hosts(text: str) -> Iterator[str]:
    """The hosts `text` names: an address's (`https://github.com/login`, whatever its ending), or a dotted name
    (`_DOTTED`: linear time) that no `@` follows, starting `www.` or ending as sites do (`_HOST_ENDINGS`: `github.com`,
    `help@github.com`), not as a function's or a file's name (`numpy.linalg.norm`, `config.json`, `main.py`)."""
    yield from _WEB_HOST.findall(text)
    for match in _DOTTED.finditer(text):
        name = match.group()
        if not text.startswith("@", match.end()) and (name.rpartition(".")[2].lower() in _HOST_ENDINGS
                                                       or name.lower().startswith("www.")):
            yield name


# the endings of the sites a link's text may pass for: the common generic ones and the largest countries' (not
# those that are also files' or methods' names: .py, .md, .sh, .rs, .pl, .so, .id, .to ...)
_HOST_ENDINGS = frozenset("""com org net edu gov mil int info biz name pro io ai app dev co me tv xyz site online store
    shop cloud tech blog news live page link club top art bank money pay login support help us uk de fr jp cn
    ru br ca au es it nl se no ch eu be at dk fi kr tw hk sg nz za mx ar ie il tr gr pt cz hu ro ua vn th ph in ke ng
    eg sa ae ir pk bd cl pe sk bg hr si lt lv ee is lu""".split())


def _site(host: str) -> str:
    """`host` as two names of one site compare: ASCII (IDNA), lower case, no `www.` and no final dot."""
    host = host.lower().rstrip(".")
    if not host.isascii():
        import idna

        try:
            host = idna.encode(host, uts46=True).decode()
        except (idna.IDNAError, UnicodeError):
            pass
    return host.removeprefix("www.")


# an http(s) address's host, after any user name: up to its port, path, query or fragment
_WEB_HOST = re.compile(r"(?i:https?://)(?:[^/?#@\s]*@)?([^/?#:\s]*)")


def reveal_url(text: str) -> str:
    """`text` with the host of the http(s) address it starts with shown as `reveal_host` shows it."""
    match = None if text.isascii() else _WEB_HOST.match(text)
    if not match or match.group(1).isascii():
        return text
    return text[:match.start(1)] + reveal_host(match.group(1)) + text[match.end(1):]


def _revealed_labels(match: regex.Match[str]) -> str:
    """The dotted name matched, each label before a Latin one (`com`, `md`) that is written wholly in letters that
    look Latin written out."""
    labels = match.group(0).split(".")
    latin = [i for i, label in enumerate(labels) if _LATIN_LABEL.fullmatch(label)]
    return ".".join(_written(label, lambda c: True) if latin and i < latin[-1] and _wholly_lookalike(label) else label
                    for i, label in enumerate(labels))


def _wholly_lookalike(label: str) -> bool:
    """Whether every letter of `label` is outside Latin and has a Latin lookalike (`раураӏ`; digits and dashes aside)."""
    letters = [c for c in label if unicodedata.category(c)[0] == "L"]
    return bool(letters) and all(_script(c) != "Latin" and _looks_latin(c) for c in letters)


def _revealed_word(match: regex.Match[str]) -> str:
    """The word matched, its letters outside the Latin script written out where it mixes scripts and one of those
    letters looks Latin."""
    word = match.group(0)
    scripts = {_script(letter) for letter in word if not unicodedata.category(letter).startswith("M")}
    if len(scripts) < 2 or any(scripts <= together for together in _TOGETHER):
        return word
    if not any(_script(letter) != "Latin" and _looks_latin(letter) for letter in word):
        return word
    return _written(word, lambda letter: _script(letter) != "Latin" and not unicodedata.category(letter).startswith("M"))


def _written(text: str, foreign: Any) -> str:
    """`text` with each character `foreign(c)` says is written out as Python writes it (`\\u0430`, `\\U0001d41a`)."""
    return "".join((f"\\u{ord(c):04x}" if ord(c) < 0x10000 else f"\\U{ord(c):08x}") if foreign(c) else c for c in text)


@functools.lru_cache(maxsize=4096)
def _looks_latin(letter: str) -> bool:
    """Whether `letter` has a Latin lookalike in Unicode's confusables (`а` → `a`, `𝐚` → `a`, `ӏ` → `i`; not `μ`)."""
    from confusable_homoglyphs import confusables   # its table (0.9 MB) is read at the first letter outside ASCII

    return bool(confusables.is_confusable(letter, preferred_aliases=["latin"]))


@functools.lru_cache(maxsize=4096)
def _script(letter: str) -> str:
    """The script of `letter`, one of _SCRIPTS, else `other`."""
    found = _SCRIPT.match(letter)
    return found.lastgroup if found and found.lastgroup else "other"


# Terminal colour, cursor, window-title and reset sequences (CSI in 7 and 8 bits, OSC, two-character ESC
# sequences such as `ESC c`): a notebook paints no terminal, so shown tool output leaves them out instead of
# showing ESC `[31m` (JupyterLab paints colour; the card shows text) or passing a reset on to a terminal.
_ANSI = re.compile(r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\|$)|\x1b[ -/]*[0-~]")
# the control characters but tab, line feed and return (ESC starts the sequences that retitle a terminal, write its
# clipboard or clear it)
_TERMINAL = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
# those and the two direction overrides (LRO, RLO), which turn every letter after them around: an answer's
# `user\u202eexe.txt` read "usertxt.exe" in the saved HTML and Markdown, and the live view (right-to-left text needs
# only the marks, embeddings and isolates, which prose keeps)
# ... and what prose never needs of the characters drawn as nothing (CODE_UNSEEN): tag characters but an emoji flag's
# (🏴 and tags up to U+E007F, Scotland's), zero-width space, word joiner, invisible operators, byte order mark, Hangul
# fillers: "The mean is 3.15." and 28 tag characters read as the sentence, and "Copy answer" carried the hidden words
# into whatever it was pasted in. Prose keeps the joiners (emoji, Indic and Persian scripts), variation selectors, soft
# hyphens and the direction marks, embeddings and isolates.
_FLAG = "\U0001f3f4[\U000e0020-\U000e007e]{1,32}\U000e007f"
_PROSE_UNSEEN = ("\u115f\u1160\u17b4\u17b5\u180e\u200b\u2060-\u2065\u206a-\u206f\u3164\ufeff\uffa0\ufff0-\ufff8"
                 "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e00ff\U000e01f0-\U000e0fff")
_WRITTEN_CONTROL = re.compile(f"({_FLAG})|[{_TERMINAL}\u202d\u202e{_PROSE_UNSEEN}]")
# those, lone surrogates (JSON's "\ud800", which no rendering could encode) and direction controls
_CONTROLS = re.compile(f"[{_TERMINAL}\ud800-\udfff]|" + BIDI_CONTROLS.pattern)


def shown_output(text: str) -> str:
    """A tool's output as the notebook shows it: terminal sequences left out, other control characters and
    direction controls written out (`\\x07`, `\\u202e`); the conversation keeps the output as the model read it."""
    return _CONTROLS.sub(_written_out, _ANSI.sub("", text))


def written_controls(text: str) -> str:
    """`text` (a saved turn's HTML or Markdown, an answer) with control characters but tab and line ends written out
    (`\\x1b`): those forms reach terminals too (`jupyter nbconvert --to markdown --stdout`), which obeyed the model's
    escapes; with the direction overrides written out (`\\u202e`), which make any text read as another; and with the
    characters drawn as nothing that prose never needs (`\\U000e0041`, `\\u200b`), which hid text from its reader."""
    return _WRITTEN_CONTROL.sub(_written_unseen, text)


def _written_unseen(match: re.Match[str]) -> str:
    """An emoji flag's tag sequence as it is; a control character as Python writes it (`\\x1b`), any other by its
    number (`\\u3164`: a Hangul filler is a printable letter to `repr`)."""
    if match.group(1):
        return match.group(1)
    return _written_out(match) if ord(match.group()) < 0x100 else _escape(match)


# a line break that starts a blank line (one of spaces and tabs only, or none)
_BLANK_LINE = re.compile(r"\n(?=[ \t]*(?:\n|$))")


_STYLE = re.compile(r"<style\b.*?</style\s*>", re.IGNORECASE | re.DOTALL)


def one_html_block(html: str) -> str:
    """`html` (escaped text in markup) with no blank line: `nbconvert --to markdown` writes an output's HTML into the
    Markdown as it is, and a blank line ends an HTML block there, the rest read as Markdown (a tool output's `![](…)`
    fetched an image; the table after pandas' <style> was a code block). The line break before each blank line is
    written `&#10;` (the same text), or dropped in a <style> block, where CSS would read `&#10;` as a selector."""
    return _BLANK_LINE.sub("&#10;", _STYLE.sub(lambda style: _BLANK_LINE.sub("", style.group()), html))


def _written_out(match: re.Match[str]) -> str:
    """A character as Python writes it in a string literal (`\\x1b`, `\\u202e`)."""
    return repr(match.group())[1:-1]


# what a table cell or a summary line would not show as itself: controls (tab and line ends too), line separators,
# invisible operators and the hidden characters (direction controls, zero-width ones, lone surrogates)
_UNSEEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u2061-\u2064]|" + HIDDEN.pattern)
_EDGE_SPACES = re.compile(r"^ +| +$")


def shown_text(text: str) -> str:
    """A text (a token's, a label, an answer) as a routing table or summary shows it, on one line: control, direction
    and zero-width characters written out (`\\x1b`, `\\u202e`), and its leading and trailing spaces as ␣, as the routing
    view and figures show a token (an HTML cell drops edge spaces: "the" and " the" read alike)."""
    return _EDGE_SPACES.sub(lambda run: "\u2423" * len(run.group()), _UNSEEN.sub(_written_out, text))


# a cell a spreadsheet reads as a formula (OWASP's "CSV injection"), after the tabs and returns some of them skip
_FORMULA = re.compile(r"[\t\r]*[=+\-@].", re.DOTALL)
_NOT_IN_XLSX = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")   # what an .xlsx cell cannot hold (XML 1.0)


def spreadsheet_text(text: str) -> str:
    """A text as a table's CSV gets it: one a spreadsheet would read as a formula (`=cmd|' /C calc'!A0`, `@SUM(…)`,
    `\\t=1+1`, `-based`) starts with a `'`, so the spreadsheet shows it and runs nothing; a number (-5), a lone sign
    and whitespace (a token "\\t\\t") stay as they are."""
    if not _FORMULA.match(text):
        return text
    try:
        float(text)
        return text
    except ValueError:
        return "'" + text


def xlsx_text(text: str) -> str:
    """A text as a table's .xlsx gets it: as `spreadsheet_text` writes it, and the controls no .xlsx cell can hold
    written out (`\\x1b`): openpyxl refused the whole table for one."""
    return _NOT_IN_XLSX.sub(_written_out, spreadsheet_text(text))


def _escape(match: re.Match[str]) -> str:
    """A character as a Python string literal writes it by its number (`\\u200b`, `\\U000e0070`)."""
    n = ord(match.group())
    return f"\\u{n:04x}" if n <= 0xFFFF else f"\\U{n:08x}"


def sanitize(html: str, *, lab: bool = True) -> str:
    """`html` with only allow-listed tags, attributes, classes and link schemes left (nothing executable); a lone
    surrogate (a server's "\\ud800", which no encoding can write) written out, as `harmony.clean` does. A model's
    Markdown is cleaned with `lab=False`: none of the lab's own classes or chip attributes, so nothing it writes can
    pass for a prompt, a tool card or a citation."""
    from ..harmony import clean  # here, not at the top: `%load_ext` imports this module, not the format's

    return _cleaner(lab).clean(clean(html))


# a character reference latex2mathml writes as an element's text for a symbol (`<mo>&#x0003C;</mo>`)
_CHARACTER_REFERENCE = re.compile(r"&amp;(#(?:x[0-9A-Fa-f]{1,6}|[0-9]{1,7});)")


def mathml_html(math: ElementTree.Element) -> str:
    """latex2mathml's tree (`convert_to_element`) as MathML: every text escaped but for the character references it
    writes for symbols. Its own `convert` un-escapes all it writes, so a model's `\\text{</mtext><div class=…>}` or
    `\\unicode{41;</mi>…}` was the lab's own markup (a forged prompt, tool card or citation chip); ValueError for an
    element that is not MathML."""
    for element in math.iter():
        if element.tag not in _MATHML:
            raise ValueError(f"<{element.tag}> is not MathML")
    return _CHARACTER_REFERENCE.sub(r"&\1", ElementTree.tostring(math, encoding="unicode"))


_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(?<![`\\])(`+)(?!`)(?:.+?)(?<!`)\1(?!`)")  # a whole run, not after a backslash
_DESTINATION = re.compile(r"(\]\([ \t]*<?)([^)\s>]*)")
# an image's `![`, with its alt text, `](` and address where its alt text holds no brackets
_IMAGE = re.compile(r"!\[(?:((?:[^\[\]\\]|\\.)*)" + _DESTINATION.pattern + ")?")
# A link's title (`[](url "Source 1: …")`): a tooltip, and the name a screen reader gives a link with no text, so a
# model's link could pass for a citation chip; left out (a title this misses leaves the text shown as code). The
# address stops at a `]`, where the next `](` could start: `[^\s)]*` scanned the rest of the line from each `](`
# (10,000 `](` took 1.3 s here; a saved answer of 40,000 took 20 s).
_TITLE = re.compile(r"""(\]\([ \t]*[^\s)\]]*)[ \t]+(?:"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|\((?:\\.|[^()\\])*\))[ \t]*(?=\))""")


def inert_markdown(text: str) -> str:
    """Model Markdown that any Markdown renderer shows without running anything.

    Front ends render trusted `text/markdown` outputs with their raw HTML live, so the Markdown form
    of a turn must carry none: outside code, `<` becomes `&lt;` (HTML shows as text), images become
    links (nothing is fetched without a click), link destinations other than http(s) and mailto
    become `#`, as in the HTML form, links lose their titles, and `]:` is escaped (a link reference
    definition holds for the whole page: one in an answer made `[x]` in the prompt a link). Headings are
    demoted (`_heading_level`).
    Code spans and fenced blocks stay as written (their text is never markup), direction controls
    written out as in the HTML form; a fence keeps its language only from an allow-list (`_fence_opener`), and
    math shows as its source (`_inert_prose`). The line-by-line rules for images, addresses and titles change only
    what a parser finds to be one: they apply only where the text with its HTML escaped alone still holds
    one (else `x](y` that starts no link became `x](#`). Where a CommonMark parser still finds HTML, an
    image, another link, a definition or a heading above h4 in the result (the line-by-line rules above
    misread the text's structure), or more markers than `MARKUP_BUDGET`, the text is shown as code."""
    tried = None
    for links in (False, True):
        lines = _inert_lines(text, links)
        if lines == tried:   # the link rules changed nothing: parsing the same text again finds the same
            break
        tried, demoted = lines, _demoted(lines)
        if demoted is not None and _blocks_are_inert(*demoted[1:]):
            return demoted[0]
    return fenced(text)


def _inert_lines(text: str, links: bool) -> str:
    """`text` with `_inert_line` applied outside fenced code (`links`: also its image, address and title rules), each
    line `shallow`."""
    return "".join(reveal_in_code(line) if inside else _fence_opener(line, opener) if opener else
                   _inert_line(_shallow_line(line), links) for line, opener, inside in _by_fences(text))


def _by_fences(text: str) -> Iterator[tuple[str, re.Match[str] | None, bool]]:
    """Each line of `text` (with its line break) with the fence it opens, if any, and whether it is inside a fence."""
    fence = None
    for line in text.splitlines(keepends=True):
        opener = _FENCE.match(line)
        if fence is not None:
            if opener and opener.group(1)[0] == fence[0] and len(opener.group(1)) >= len(fence):
                fence = None
            yield line, None, True
        elif opener:
            fence = opener.group(1)
            yield line, opener, False
        else:
            yield line, None, False


# How many quotes and list items (`>`, `-`, `*`, `+`, `1.`) one line may open: markdown-it reads each line once for
# every container it is in, and a lazy line goes on in all of them (one line 10 quotes deep over 8,000 lines of text
# took 3.5 s to save, 8 list markers on each of 20,000 lines 8 s). The marker past them is escaped: shown as written.
MAX_DEPTH = 4
_MARKER = r"(?:>|[-+*](?=\s|$)|\d{1,9}(?=[.)](?:\s|$)))"   # a list item's marker, its `.` left out
_DEEP = re.compile(rf"(?![ \t]{{0,3}}([-*_])(?:[ \t]*\1){{2,}}\s*$)"   # not a rule (`- - -`), which opens nothing
                   rf"((?:[ \t]{{0,3}}{_MARKER}[.)]?[ \t]*){{{MAX_DEPTH}}}[ \t]{{0,3}})({_MARKER})")


def shallow(text: str) -> str:
    """`text` with each line outside fenced code `_shallow_line`: Markdown that markdown-it reads in a time bounded
    per character, its words the same."""
    return "".join(line if inside or opener else _shallow_line(line) for line, opener, inside in _by_fences(text))


def _shallow_line(line: str) -> str:
    """`line` with the container marker past MAX_DEPTH at its start escaped (`\\>`, `1\\.`): the rest of it is text."""
    deep = _DEEP.match(line)
    if deep is None:
        return line
    marker = deep.group(3)
    return deep.group(2) + (marker + "\\" if marker[0].isdigit() else "\\" + marker) + line[deep.end():]


# The info words a fence of the model's keeps (highlighting only): renderers draw some fences instead of showing them
# (nbconvert puts a `mermaid` fence's text into the page as HTML, GitHub typesets `math`), so any other word goes.
_LANGUAGES = frozenset("""python py python3 ipython pycon pytb text txt plaintext output console bash sh shell zsh
    powershell json jsonl yaml yml toml ini csv tsv sql javascript js typescript ts html xml css c cpp java rust go r
    julia tex latex markdown md diff""".split())


def _fence_opener(line: str, opener: re.Match[str]) -> str:
    """A fence's opening line with its info string kept only when it is one word of `_LANGUAGES`."""
    info = line[opener.end():].split()
    language = info[0] if info and info[0].lower() in _LANGUAGES else ""
    return line[:opener.end()] + language + line[len(line.rstrip("\r\n")):]


def _heading_level(level: int) -> int:
    """The level a model's heading is shown at: h1–h3 as h4–h6, so that no answer puts a top-level heading
    (an entry in JupyterLab's table of contents) in the notebook it is saved in."""
    return min(6, level + 3)


def _demoted(markdown: str) -> tuple[str, list[Any], dict[str, Any]] | None:
    """`markdown` with each ATX heading at `_heading_level` and each setext heading (`Title` over `===` or `---`)
    a paragraph and a rule, as `demote_headings` renders them, with its block tokens and their env (parsed once: a long
    answer's parse is most of its Markdown form's time); None where a heading above h4 is left."""
    env: dict[str, Any] = {}
    tokens = _block_tokens(markdown, env)
    headings = [t for t in tokens if t.type == "heading_open"]
    if not headings:
        return markdown, tokens, env
    lines = re.split(r"(?<=\n)|(?<=\r)(?!\n)", markdown)  # as CommonMark ends lines (a lone CR ends one too)
    for token in headings:
        level, (first, end) = int(token.tag[1]), token.map
        if token.markup.startswith("#"):  # no `#` comes before a heading's own (only spaces and list markers do)
            at = lines[first].index("#")
            lines[first] = lines[first][:at] + "#" * (_heading_level(level) - level) + lines[first][at:]
        else:  # a blank line (in the underline's quote, if any; as the line before ends) makes it a rule
            prefix, rest = re.split("[-=]+", lines[end - 1], maxsplit=1)
            lines[end - 1] = f"{prefix.rstrip()}{lines[end - 2][-1]}{prefix}---{rest}"
    demoted, env = "".join(lines), {}
    tokens = _block_tokens(demoted, env)
    return None if any(t.type == "heading_open" and t.tag < "h4" for t in tokens) else (demoted, tokens, env)


def demote_headings(state: Any) -> None:
    """A markdown-it core rule: headings at `_heading_level`, a setext one a paragraph and a rule (what a model
    writing text over `---` most often means)."""
    from markdown_it.token import Token

    tokens = []
    for token in state.tokens:
        tokens.append(token)
        if token.type in ("heading_open", "heading_close") and token.markup.startswith("#"):
            token.tag = f"h{_heading_level(int(token.tag[1]))}"
        elif token.type in ("heading_open", "heading_close"):
            token.tag = "p"
            if token.type == "heading_close":
                tokens.append(Token("hr", "hr", 0, markup="---", block=True, level=token.level))
    state.tokens = tokens


def fenced(text: str, language: str = "") -> str:
    """`text` as a fenced code block that no line of it can close."""
    ticks = "`" * max(3, max(map(len, re.findall("`+", text)), default=0) + 1)  # one pass (`in` checks are quadratic)
    return f"{ticks}{language}\n{text}\n{ticks}"


# Our own HTML in a turn's Markdown form (widgets/transcript.py): folds and the footer.
_OWN_HTML = re.compile(r"<details><summary>[^<>]*</summary>|</details>|</?sub>")


def _blocks_are_inert(tokens: list[Any], env: dict[str, Any]) -> bool:
    """True when a CommonMark renderer that keeps raw HTML and every link (a trusted output) finds in the text parsed
    into block `tokens` (its link definitions in `env`) no HTML but our own folds and footer, no image, no link other
    than http(s), mailto or `#` nor one with a title, no link reference definition (it makes links of brackets anywhere
    in the page)."""
    if env.get("references") or past_nesting_limit(_commonmark(), tokens):   # what it did not read may hold anything
        return False
    if not all(within_markup_budget(token.content for token in tokens if token.type == "inline")):
        return False   # not parsed: shown as code
    return all(_inline_is_inert(token.content) if token.type == "inline" else _is_inert(token) for token in tokens)


@functools.lru_cache(maxsize=64)
def _inline_is_inert(text: str) -> bool:
    """Whether the text of one block, parsed as CommonMark's inline rules parse it (no link definitions: where there
    are, nothing is inert), holds no HTML, image or unsafe link; cached: a turn's Markdown form checks each answer
    alone and again quoted in the whole."""
    md, children = _commonmark(), []
    md.inline.parse(text, md, {}, children)
    return all(map(_is_inert, _tokens(children)))


def _is_inert(token: Any) -> bool:
    """Whether one token is none of HTML but our own, an image, a link other than http(s), mailto or `#`, a title."""
    if token.type in ("html_block", "html_inline"):
        return not _OWN_HTML.sub("", token.content).strip()
    return not (token.type == "image" or (token.type == "link_open" and (
        not _safe_href(str(token.attrGet("href"))) or token.attrGet("title"))))  # a title: see _TITLE


def outside_code(markdown: str) -> str:
    """`markdown` with its code (fenced and indented blocks, code spans) blanked, every other character where it was:
    what the text says outside code, where a citation marker is a citation (in code it is shown as written)."""
    parts = re.split(r"(\r\n|\r|\n)", markdown)     # lines as CommonMark counts them, each with its line break
    lines = parts[0::2]
    for token in _block_tokens(shallow(markdown)):   # as the HTML form reads it: the same lines
        if token.type in ("fence", "code_block") and token.map:
            lines[token.map[0]:token.map[1]] = map(_blank, lines[token.map[0]:token.map[1]])
    lines = [_CODE_SPAN.sub(lambda span: _blank(span.group()), line) for line in lines]
    return "".join(line + (parts[2 * i + 1] if 2 * i + 1 < len(parts) else "") for i, line in enumerate(lines))


def _blank(text: str) -> str:
    return " " * len(text)


def past_nesting_limit(md: Any, tokens: list[Any]) -> bool:
    """Whether markdown-it's parse of `tokens` may have reached its nesting limit, past which it drops the rest of the
    text unread and unsaid (an answer quoted 20 deep lost its words; a renderer without that limit shows them)."""
    return any(token.level >= md.options["maxNesting"] - 1 for token in tokens)


# markdown-it's inline parse takes up to 40 µs for each `[`, `!`, `$`, `*` ... of a block and 40 µs for each table cell (an
# answer of 50,000 `![` took 3.6 s to render, and a turn renders it three times): past this many, blocks are plain text.
MARKUP_BUDGET = 10_000
_MARKUP = re.compile(r"[\[\]!<>`*_~$&\\|]")


def within_markup_budget(inlines: Iterable[str]) -> Iterator[bool]:
    """For each block's inline text in turn, whether the blocks up to it hold at most MARKUP_BUDGET Markdown markers
    (a block counting one more), so that parsing them takes a bounded time."""
    spent = 0
    for text in inlines:
        spent += 1 + len(_MARKUP.findall(text))
        yield spent <= MARKUP_BUDGET


def inert_apart(pieces: list[str]) -> bool:
    """True when `pieces`, joined by blank lines, are inert (`_blocks_are_inert`) and are the blocks each is alone: none
    reaches into the next (an unclosed fence that takes in the tool card, sources or footer after it, a list that takes
    in the next piece). The whole is parsed once, and no piece again (an answer's piece was a parse of its own)."""
    env: dict[str, Any] = {}
    tokens = _block_tokens("\n\n".join(pieces), env)
    return _blocks_are_inert(tokens, env) and _each_in_one_piece(tokens, pieces)


_LINE_BREAK = re.compile(r"\r\n?|\n")   # as CommonMark ends lines


def _each_in_one_piece(tokens: list[Any], pieces: list[str]) -> bool:
    """Whether each top-level block of `tokens` (those of `pieces` joined by blank lines) ends before the next piece
    starts: then each piece, read after a blank line at the top level, is read as it is alone."""
    starts, line = [], 0
    for piece in pieces:
        starts.append(line)
        line += len(_LINE_BREAK.findall(piece)) + 2   # its lines and the blank one after it
    for token in tokens:
        if token.level == 0 and token.nesting >= 0 and token.map:
            after = bisect.bisect_right(starts, token.map[0])   # the index of the next piece
            if after < len(starts) and token.map[1] > starts[after]:
                return False
    return True


def _tokens(tokens: list[Any]) -> Iterator[Any]:
    for token in tokens:
        yield token
        yield from _tokens(token.children or [])


def _safe_href(href: str) -> bool:
    return href == "#" or href.lower().startswith(LINK_SCHEMES)


@functools.cache
def _commonmark(inline: bool = True) -> Any:
    """The CommonMark parser a trusted front end renders with; without `inline`, one that finds the blocks only."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
    md.validateLink = lambda url: True  # every link as written, as a trusted front end shows it
    return md if inline else md.disable("inline")


def _block_tokens(markdown: str, env: dict[str, Any] | None = None) -> list[Any]:
    """CommonMark's block tokens of `markdown` (fences, headings, quotes, link definitions into `env`), the text within
    them left unparsed: the inline parse took 2 s on 40,000 characters of `![`, and a saved answer made it 10 times."""
    tokens, found = _parsed_blocks(markdown)
    if env is not None:
        env.update(found)
    return tokens


@functools.lru_cache(maxsize=4)
def _parsed_blocks(markdown: str) -> tuple[list[Any], dict[str, Any]]:
    """`_block_tokens` of `markdown` and its env, cached (read only): the forms of one save read the same text again
    (an answer for its citations' numbers in the text and Markdown forms, its inert text for its headings and code)."""
    env: dict[str, Any] = {}
    return _commonmark(inline=False).parse(markdown, env), env


def _inert_line(line: str, links: bool) -> str:
    parts, last = [], 0
    for span in _CODE_SPAN.finditer(line):
        parts += [_inert_prose(line[last:span.start()], links), reveal_in_code(span.group())]
        last = span.end()
    return "".join(parts + [_inert_prose(line[last:], links)])


def _inert_prose(text: str, links: bool) -> str:
    """Prose with HTML shown as text and `]:` escaped (both render as written); with `links`, titles left out, images
    made links (`_inert_image`) and a link to an address other than http(s) or mailto shown as written, as the HTML
    form shows it (`(` written `&#40;`: its address made `#` cut `[js](javascript:alert(1))` to "js)").

    Backslashes, `$` and `{` are escaped too, so math shows as its TeX source: renderers that find math before
    Markdown (nbconvert's `$…$`, `\\(…\\)`, `\\begin{…}`) let a formula that starts in prose end inside a code
    span or fence, whose text (`<img onerror>`) was then read as prose. A backslash escape that starts no math
    (`\\*`) stays one, as the HTML form reads it (escaped, `\\*not em\\*` read "\\ not em\\" in emphasis); any other
    is written as the character it escapes, a reference (`_ESCAPED`)."""
    text = _BACKSLASH.sub(_inert_backslash, _LINK.sub(_noted_link, text))
    text = _LESS_THAN.sub(_inert_less_than, text.replace("$", "\\$").replace("{", "\\{"))
    if links:
        text = _DESTINATION.sub(_inert_destination, _IMAGE.sub(_inert_image, text))
        text = _TITLE.sub(r"\1", text)
    return text.replace("]:", "\\]:")


# a link with text of no brackets to an address the lab keeps, with no title: its text and address
_LINK = re.compile(r"(?<![!\\])\[([^\[\]\n]*+)(\]\([ \t]*<?((?i:https?://|mailto:)[^\s()<>]*)>?[ \t]*\))")


def _noted_link(match: re.Match[str]) -> str:
    """A link whose text names another host than the one it opens with `link_host_note` at the end of its text, as the
    HTML form shows it."""
    text, rest, address = match.groups()
    return f"[{text}{link_host_note(text, address)}{rest}"


# a backslash, with the punctuation after it where that makes a CommonMark escape, or before a line's end (a hard break)
_BACKSLASH = re.compile(r"\\([!-/:-@[-`{-~]|(?=[\r\n]))?")
# The escaped punctuation the rules here would misread (`\(`, `\[` and `\$` start math for nbconvert, `<` and `&` are
# escaped, `[`/`]` make links): written as the character reference of what the HTML form shows (`\$5` read "\$5").
_ESCAPED = {c: f"&#{ord(c)};" for c in "$&()<[]{}"}


def _inert_backslash(match: re.Match[str]) -> str:
    """A backslash escape as the HTML form reads it (the character, `_ESCAPED` as a reference), or a hard break; a lone
    backslash escaped."""
    escaped = match.group(1)
    return "\\\\" if escaped is None else _ESCAPED.get(escaped, match.group())


# `<` (escaped: HTML shows as text), or an address in angle brackets, a link's (`[a](<https://e.org/a b>)`, CommonMark's
# form for one with spaces) or an autolink (`<https://e.org>`, `<a@b.org>`): kept where the lab keeps it, as the HTML
# form shows a link
_LESS_THAN = re.compile(r"(\]\([ \t]*)?<([^<>\n]*)>|<")
_EMAIL = re.compile(r"[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*", re.ASCII)


def _inert_less_than(match: re.Match[str]) -> str:
    """`match` with its `<` written `&lt;` unless it opens an address the lab keeps (an autolink's has no space)."""
    address = match.group(2)
    if match.group(1) is not None:
        kept = _safe_address(address)
    else:
        kept = address is not None and (_safe_address(address) and not re.search(r"\s", address)
                                        or bool(_EMAIL.fullmatch(address)))
    return match.group() if kept else match.group().replace("<", "&lt;", 1)


def _inert_image(match: re.Match[str]) -> str:
    """An image as the HTML form shows it: one to an address the lab keeps a link named `[image: alt]`, any other
    written as it is (`\\![`, its `(` written `&#40;`); an `![` this cannot pair with an address, a link (`\\![`)."""
    alt, opener, address = match.groups()
    if opener is None:
        return "\\!["
    if _safe_address(address):
        return f"[[image: {alt or 'image'}]{link_host_note(alt or '', address)}{opener}{address}"
    return f"\\![{alt}{opener.replace('(', '&#40;', 1)}{address}"


def _inert_destination(match: re.Match[str]) -> str:
    """A link's `](` and address as written, its `(` written `&#40;` (no link) unless `_safe_address` keeps it."""
    if _safe_address(match.group(2)):
        return match.group()
    return match.group(1).replace("(", "&#40;", 1) + match.group(2)


def _safe_address(url: str) -> bool:
    """The HTML sanitizer's rule (`web_link`), and no entities that could hide a scheme."""
    return web_link(url) and "&" not in url


def literal_lines(text: str) -> str:
    """`text` (a prompt: the user's text, shown as written in every other form) as Markdown that shows its words as
    written, line by line: what could be markup escaped (a line's start too: `#`, `>`, `-`, `1.`), `(`, `[`, `{`,
    `$` after a backslash and `<`, `&`, `[`, `{` as references (`\\(` starts math for nbconvert), no line indented
    (four spaces made it code)."""
    return "\n".join(_MARKUP_CHARACTER.sub(_literal, line.lstrip(" \t")) for line in _LINE_BREAK.split(text))


_MARKUP_CHARACTER = re.compile(r"\\[(\[{$)\]}]|[\\`*_~|!$<&\[{]|^[#>+=-]|^\d+[.)]")


def _literal(match: re.Match[str]) -> str:
    """One character of `literal_lines` escaped (with the backslash before it, or the digits of a list's number)."""
    found = match.group()
    if found[0] == "\\" and len(found) == 2:
        return "\\\\" + _ESCAPED[found[1]]
    return found[:-1] + (_ESCAPED[found[-1]] if found[-1] in "<&[{" else "\\" + found[-1])


def literal_markdown(text: str) -> str:
    """`text` shown literally on one line of Markdown: no links, emphasis, code or HTML from it."""
    return re.sub(r"([\\`*_{}\[\]()<>#+!|~$])", r"\\\1", " ".join(text.split()))


# Terminal control characters in model or tool text (ESC sequences can retitle the window, write the
# clipboard or overwrite lines) are printed as visible escapes, never sent to the terminal.
# written out, never obeyed; with them, as in the saved forms, what prose never needs of the characters drawn as nothing
_CONTROL = re.compile(f"({_FLAG})|[\x00-\x08\x0b-\x1f\x7f-\x9f{_PROSE_UNSEEN}]|" + BIDI_CONTROLS.pattern)


# A word an API key may be (sk-proj-Zq81x..., hf_..., a UUID, 40 hex digits): 20 or more characters of letters, digits
# and -_+=, a digit and a letter among them, and a key's prefix or a run of 12 without - or _ (a random part), so that
# a name of short words (gpt-oss-20b-finetune-v2, a folder the user typed) is still shown in an error.
KEYLIKE = re.compile(r"(?=\D*\d)(?=[^A-Za-z]*[A-Za-z])"
                     r"(?=(?:sk|pk|rk|hf|r8|gsk|gh[pousr]|github_pat|glpat|xox[abpr])[-_]|AKIA|ASIA|AIza"
                     r"|[\w+=-]*?[A-Za-z0-9+=]{12})"
                     r"[\w+=-]{20,}")
_VARIABLE = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")  # an environment variable's name as they are written: OPENAI_API_KEY
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")  # any name a shell takes for one (my_key, exaKey)


def variable_named(var: str) -> str:
    """How a message names the environment variable `var` said to hold a key: a name a shell takes (letters, digits,
    _; `my_key` too) unless it looks like a key (KEYLIKE), which may be the key itself, pasted where its name belongs."""
    if _VARIABLE.fullmatch(var) or (_NAME.fullmatch(var) and not KEYLIKE.fullmatch(var)):
        return var
    return "given (its name is not shown: it looks like a key, not a variable's name such as OPENAI_API_KEY)"


SHORT_SECRET = 8   # a key or password shorter than this is hidden only where it stands alone (`_secret_pattern`)


class Secrets:
    """Keys and passwords (an API key, a URL's password, its Basic login) to write `***` in what a user or the model
    is shown; a repr says only how many (an engine's or a service's repr, an error's locals)."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        # each as a server may quote it back: as sent, or as JSON writes it in a string (escaping `"`, `\` and
        # non-ASCII letters, or not), longest first, so hiding one form leaves no part of a longer one
        forms = {form for secret in secrets if secret
                 for form in (secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1])}
        self.forms = tuple(sorted(forms, key=len, reverse=True))
        self._pattern = re.compile("|".join(map(_secret_pattern, self.forms))) if self.forms else None

    def __bool__(self) -> bool:
        return bool(self.forms)

    def __repr__(self) -> str:
        return f"<{len(self.forms)} hidden>"

    def hide(self, text: str) -> str:
        """`text` with every secret in it written `***`."""
        return self._pattern.sub("***", text) if self._pattern else text


def _secret_pattern(secret: str) -> str:
    """Where `secret` is hidden: a long one wherever it appears (a quote may run into other letters, as `%3D` of a
    URL-encoded address does); a short one only as a word of its own, not as letters of other words: a key "ab"
    wrote every "lab" of a page as "l***", a password "pass" a server's "password" as "***word"."""
    if len(secret) >= SHORT_SECRET:
        return re.escape(secret)
    return rf"(?:(?<![^\W_])|(?<=%[0-9A-Fa-f]{{2}})){re.escape(secret)}(?![^\W_])"


def visible(text: str) -> str:
    """Model or tool text with terminal control characters written out (`\\x1b`), never obeyed, and direction controls
    and the characters drawn as nothing that prose never needs (`\\U000e0069`: words hidden in tag characters)."""
    return _CONTROL.sub(_written_unseen, text)


_LINE_BREAKS = {ord(c): repr(c)[1:-1] for c in "\n\u2028\u2029"}  # those visible() leaves (\r and \x85 it writes out)


def visible_line(text: str) -> str:
    """`text` as `visible` writes it, its line breaks written out too (`\\n`): a one-line message stays one line,
    whatever it quotes (a value typed with a newline made a usage error's second line `UsageError: fake`)."""
    return visible(text).translate(_LINE_BREAKS)


class WrittenOut:
    """A mixin of the lab's one-line errors (load, doctor, connect, browser, settings, a turn's): their message is
    written out as `visible` writes the lab's other messages, and its newlines too, so a folder's or a server's name
    with `\\x1b[2J`, a `\\u202e` override or a line of its own is shown, never obeyed, wherever the error is shown;
    IPython shows it as its one line (from the Python API it printed a traceback through the lab's code above it)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*(visible_line(arg) if isinstance(arg, str) else arg for arg in args))

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]
