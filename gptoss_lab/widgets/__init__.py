"""Views of a turn: `chat.ChatView` (the notebook widget), `text.TextView` (terminals), and
`transcript.Transcript` (the state both show, with text/Markdown/HTML renderings for saved notebooks)."""
from pathlib import Path

STATIC = Path(__file__).parent.parent / "static"


def asset(name: str) -> Path:
    """A front-end file from gptoss_lab/static/ (anywidget reads it; no bundler, no build step)."""
    return STATIC / name
