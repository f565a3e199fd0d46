"""Views of a turn: `chat.ChatView` (the notebook widget), `text.TextView` (terminals), and
`transcript.Transcript` (the state both show, with text/Markdown/HTML renderings for saved notebooks)."""
