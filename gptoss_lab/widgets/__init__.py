"""Views of a turn: `chat.ChatView` (the notebook widget), `text.TextView` (terminals), and
`transcript.Transcript` (the state both show, with text/Markdown/HTML renderings for saved notebooks)."""
from pathlib import Path

STATIC = Path(__file__).parent.parent / "static"


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
