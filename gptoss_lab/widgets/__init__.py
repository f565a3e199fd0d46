"""Views of a turn: `chat.ChatView` (the notebook widget), `text.TextView` (terminals), and
`transcript.Transcript` (the state both show, with text/Markdown/HTML renderings for saved notebooks)."""
from __future__ import annotations

import re
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

STATIC = Path(__file__).parent.parent / "static"
_WIDTH = 68  # characters: JupyterLab's output area holds a line this long whole in a 760 px window
_COMMAND = re.compile(r"`[^`\n]+`")   # a command or code in a message, in backquotes


def asset(name: str) -> Path:
    """A front-end file from gptoss_lab/static/ (anywidget reads it; no bundler, no build step)."""
    return STATIC / name


def esm(name: str) -> str:
    """A view's ES module: DOMPurify, static/common.js (shared DOM, colour and sanitising helpers),
    then `name`.

    anywidget loads a widget's module from a blob URL, where a relative `import` cannot resolve,
    so the shared code is put in front of each module instead. DOMPurify's UMD build is given a
    `module` of its own, so it becomes a constant of the module, not a global."""
    purify = asset("vendor/purify.min.js").read_text()
    return ("const DOMPurify = (() => {\nconst module = { exports: {} }, exports = module.exports;\n"
            f"{purify}\nreturn module.exports;\n}})();\n" + asset("common.js").read_text() + "\n"
            + asset(name).read_text())


def say(text: str, *, flush: bool = False) -> None:
    """Print one of the lab's own messages (a load, a status, a note) in lines that JupyterLab's output area does not
    break inside a word: it breaks a longer line at any letter (`word-break: break-all`), "max tok" / "ens". Control
    characters of the names in it (a folder's `\\x1b[2J`, `\\u202e`) are written out, never obeyed."""
    from .sanitize import visible

    print(_fitted(visible(text)), flush=flush)


def _fitted(text: str) -> str:
    """`text` in lines of at most 68 characters, broken at spaces; its ` | `-separated parts (a status's settings)
    each whole on a line where they fit, a line they start with "| ". A longer word (a path) has a line of its own, and
    so has a `command` in backquotes, kept whole to be copied (`%gptoss load` ended one line, its model began the next).
    (`text` is `visible`: it holds no NUL, which stands for the commands' spaces while the lines are made.)"""
    text = _COMMAND.sub(lambda command: command[0].replace(" ", "\0"), text)
    lines: list[str] = []
    for part in text.split(" | "):
        if lines and len(lines[-1]) + len(" | ") + len(part) <= _WIDTH:
            lines[-1] += " | " + part
        else:
            lines += textwrap.wrap(part, _WIDTH, initial_indent="| " if lines else "", break_long_words=False,
                                   break_on_hyphens=False) or [""]
    return "\n".join(lines).replace("\0", " ")


def text_bar(iterable: Any = None, **kwargs: Any) -> Any:
    """A plain-text tqdm progress bar on stdout. A saved notebook keeps its last state (a tqdm widget is saved
    frozen at 0 %), and JupyterLab does not paint it red, as it does stderr, nor split it from the lines around it."""
    from tqdm.std import tqdm

    from .text import is_terminal

    # outside a terminal every redraw is kept: ten a second made notebook 05's training ~570 lines in its saved HTML
    kwargs.setdefault("mininterval", 0.1 if is_terminal(sys.stdout) else 3.0)
    return tqdm(iterable, file=sys.stdout, **kwargs)


@contextmanager
def transformers_bars(enabled: bool) -> Iterator[None]:
    """transformers' progress bars (loading, saving) as `text_bar`s while this runs, or none if not `enabled`."""
    from transformers.utils import logging

    was = logging.is_progress_bar_enabled()
    if enabled:
        logging.enable_progress_bar()
        logging.set_tqdm_hook(lambda factory, args, kwargs: text_bar(*args, **kwargs))
    else:
        logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_tqdm_hook(None)
        (logging.enable_progress_bar if was else logging.disable_progress_bar)()
