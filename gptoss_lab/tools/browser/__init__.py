"""gpt-oss's browser tool (`browser.search`, `browser.open`, `browser.find`) over your documents or a
search backend, with the reference's page layout and citations (`【cursor†Lstart-Lend】`) resolved.

    from gptoss_lab.tools.browser import Browser
    session = Session.load("tiny", session_options={"browser": Browser("~/papers")})   # or %gptoss browse ~/papers
"""
from typing import Any

from .backends import Backend, BackendError, FunctionBackend
from .demo import demo_folder
from .local import LocalBackend
from .page import Page, SearchResult
from .tool import Browser, BrowserError

__all__ = ["Backend", "BackendError", "Browser", "BrowserError", "Exa", "FunctionBackend", "LocalBackend", "Page",
           "SearXNG", "SearchResult", "YouCom", "demo_folder"]


def __getattr__(name: str) -> Any:
    """The web search services, imported when named: web imports httpx (0.1-0.3 s), which `%gptoss browse FOLDER`
    needs not."""
    if name in ("Exa", "SearXNG", "YouCom"):
        from . import web

        return getattr(web, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
