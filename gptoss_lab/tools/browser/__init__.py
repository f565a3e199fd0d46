"""gpt-oss's browser tool (`browser.search`, `browser.open`, `browser.find`) over your documents or a
search backend, with the reference's page layout and citations (`【cursor†Lstart-Lend】`) resolved.

    from gptoss_lab.tools.browser import Browser
    session = Session.load("tiny", session_options={"browser": Browser("~/papers")})   # or %gptoss browse ~/papers
"""
from .backends import Backend, BackendError, FunctionBackend
from .demo import demo_folder
from .local import LocalBackend
from .page import Page, SearchResult
from .tool import Browser, BrowserError
from .web import Exa, SearXNG, YouCom

__all__ = ["Backend", "BackendError", "Browser", "BrowserError", "Exa", "FunctionBackend", "LocalBackend", "Page",
           "SearXNG", "SearchResult", "YouCom", "demo_folder"]
