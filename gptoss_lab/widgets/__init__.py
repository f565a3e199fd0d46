"""Views of a turn: `chat.ChatView` (the notebook widget), `text.TextView` (terminals), and
`transcript.Transcript` (the state both show, with text/Markdown/HTML renderings for saved notebooks)."""
from pathlib import Path


def asset(name: str) -> Path:
    """A front-end file: shipped in gptoss_lab/static/ in a wheel, read from js/ in a source checkout."""
    shipped = Path(__file__).parent.parent / "static" / name
    return shipped if shipped.exists() else Path(__file__).parents[2] / "js" / name
