"""Views of a turn: `chat.ChatView` (the notebook widget), `text.TextView` (terminals), and
`transcript.Transcript` (the state both show, with text/Markdown/HTML renderings for saved notebooks)."""
from pathlib import Path

STATIC = Path(__file__).parent.parent / "static"


def asset(name: str) -> Path:
    """A front-end file from gptoss_lab/static/ (anywidget reads it; no bundler, no build step)."""
    return STATIC / name


def esm(name: str) -> str:
    """A view's ES module: static/common.js (shared DOM and colour helpers) followed by `name`.

    anywidget loads a widget's module from a blob URL, where a relative `import` cannot resolve,
    so the shared helpers are put in front of each module instead."""
    return asset("common.js").read_text() + "\n" + asset(name).read_text()
