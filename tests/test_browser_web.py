"""Web backends against fake servers on 127.0.0.1 (nothing leaves this machine): SearXNG, Exa and You.com
results are parsed into the reference's result page, pages are fetched and cut to their content, and
every failure (401, timeout, not JSON, unreachable) is one line, to the model and to the user."""
from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from gptoss_lab.events import ToolCall
from gptoss_lab.tools.browser import Browser, BrowserError, Exa, SearXNG, YouCom
from gptoss_lab.tools.browser.demo import text_pdf

Reply = tuple[int, str, bytes]          # status, content type, body
Route = Callable[[dict], Reply]


class FakeServer:
    """An HTTP server on 127.0.0.1 answering from `routes` ("GET /search" -> function of the request)."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                url = urlparse(self.path)
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                request = {"method": self.command, "path": url.path, "query": parse_qs(url.query),
                           "headers": {k.lower(): v for k, v in self.headers.items()},
                           "json": json.loads(body) if body else None}
                server.requests.append(request)
                route = server.routes.get(f"{self.command} {url.path}")
                status, kind, data = route(request) if route else (404, "text/plain", b"not found")
                try:
                    self.send_response(status)
                    self.send_header("content-type", kind)
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                    pass

            do_GET = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    yield fake
    fake.close()


def as_json(value: object, status: int = 200) -> Route:
    return lambda request: (status, "application/json", json.dumps(value).encode())


def search(browser: Browser, query: str = "owls") -> tuple[str, str]:
    result = browser.run(ToolCall("browser.search", "analysis", json.dumps({"query": query}), "code"))
    return result.status, result.output


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ARTICLE = """<html><head><title>Owls of the valley</title></head><body>
<nav><a href="/">Home</a> <a href="/about">About</a> <a href="/contact">Contact</a></nav>
<article><h1>Owls of the valley</h1>
""" + "".join(f"<p>Paragraph {i}: barn owls hunt over the meadows at dusk and swallow voles whole, "
              f"then cough up pellets that tell what they ate.</p>\n" for i in range(8)) + """
<p>See <a href="https://birds.example/owl">the bird atlas</a>.</p></article>
<footer>Cookie settings · Privacy · Imprint</footer></body></html>"""


# ---------------------------------------------------------------- SearXNG

def test_searxng_results_become_the_result_page_and_pages_are_fetched(server: FakeServer) -> None:
    server.routes["GET /search"] = as_json({"query": "owls", "results": [
        {"url": f"{server.url}/owls", "title": "Owls of the valley", "content": "Barn owls hunt at dusk.", "engine": "x"},
        {"url": f"{server.url}/manual.pdf", "title": "Owl box manual", "content": "Build a nest box."},
        {"title": "no url: skipped"}]})
    server.routes["GET /owls"] = lambda r: (200, "text/html; charset=utf-8", ARTICLE.encode())
    server.routes["GET /manual.pdf"] = lambda r: (200, "application/pdf", text_pdf(["Nest box manual", "Hang it 4 m high."]))
    browser = Browser.from_sources([f"searxng:{server.url}"])
    assert browser.describe() == f"the web through SearXNG at {server.url}"
    status, output = search(browser)
    assert status == "done"
    assert output.splitlines()[7:] == ["L4:   * 【0†Owls of the valley†127.0.0.1:" + server.url.rsplit(":", 1)[1]
                                       + "】 Barn owls hunt at dusk.",
                                       "L5:   * 【1†Owl box manual†127.0.0.1:" + server.url.rsplit(":", 1)[1]
                                       + "】 Build a nest box."]
    assert server.requests[0]["query"] == {"q": ["owls"], "format": ["json"]}

    page = browser.open(id=0)
    assert page.startswith(f"[1] Owls of the valley ({server.url}/owls)")
    assert "barn owls hunt over the meadows" in page and "【0†the bird atlas†birds.example】" in page
    assert "Cookie settings" not in page and "Contact" not in page      # navigation and footer cut away
    assert "\nL3: Hang it 4 m high." in browser.open(cursor=0, id=1)     # PDFs are read too


@pytest.mark.parametrize("route, message", [
    (as_json({"error": "no"}, 401), "SearXNG refused the request (HTTP 401)"),
    (as_json({"error": "no"}, 403), "SearXNG refused JSON output (HTTP 403): add `json` to search.formats in its settings.yml"),
    (lambda r: (500, "text/plain", b"Internal\nServer Error"), "SearXNG answered HTTP 500: Internal Server Error"),
    (lambda r: (200, "text/html", b"<html>not json</html>"),
     "SearXNG answered with something that is not JSON (text/html, 21 bytes)"),
    (as_json({"answers": []}), "SearXNG answered JSON without a `results` list"),
])
def test_searxng_failures_are_one_line_for_the_model(server: FakeServer, route: Route, message: str) -> None:
    server.routes["GET /search"] = route
    status, output = search(Browser(SearXNG(server.url)))
    assert (status, output) == ("error", f"Error during search for `owls`: {message}")


def test_a_slow_server_times_out_in_one_line(server: FakeServer) -> None:
    def slow(request: dict) -> Reply:
        time.sleep(1.5)
        return 200, "application/json", b'{"results": []}'

    server.routes["GET /search"] = slow
    t0 = time.perf_counter()
    status, output = search(Browser(SearXNG(server.url, timeout=0.3)))
    assert time.perf_counter() - t0 < 1.4
    assert (status, output) == ("error", "Error during search for `owls`: SearXNG did not answer within 0.3 s")


def test_an_unreachable_server_is_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    status, output = search(Browser(SearXNG(url)))
    assert status == "error"
    assert output.startswith(f"Error during search for `owls`: cannot reach SearXNG at {url} (")
    assert "\n" not in output


def test_web_pages_that_fail_are_one_line(server: FakeServer) -> None:
    server.routes["GET /search"] = as_json({"results": [{"url": f"{server.url}/gone", "title": "Gone"},
                                                        {"url": "file:///etc/passwd", "title": "Local"},
                                                        {"url": f"{server.url}/bin", "title": "Binary"}]})
    server.routes["GET /bin"] = lambda r: (200, "application/octet-stream", b"\x00\x01")
    browser = Browser(SearXNG(server.url))
    search(browser)
    opened = browser.run(ToolCall("browser.open", "analysis", '{"id": 0}'))
    assert (opened.status, opened.output) == ("error", f"Error fetching URL `{server.url}/gone`: HTTP 404 Not Found")
    local = browser.run(ToolCall("browser.open", "analysis", '{"id": 1, "cursor": 0}'))
    assert local.output == "Error fetching URL `file:///etc/passwd`: only http:// and https:// addresses can be opened"
    binary = browser.run(ToolCall("browser.open", "analysis", '{"id": 2, "cursor": 0}'))
    assert binary.output == f"Error fetching URL `{server.url}/bin`: binary data, not a text document"


# ---------------------------------------------------------------- Exa and You.com, as the reference calls them

def test_exa_search_and_contents(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXA_API_KEY", "k-123")

    def guarded(value: object) -> Route:
        return lambda r: (200, "application/json", json.dumps(value).encode()) if r["headers"].get("x-api-key") == "k-123" \
            else (401, "application/json", b'{"error": "bad key"}')

    server.routes["POST /search"] = guarded({"results": [
        {"title": "Result 1", "url": "https://www.example.com/1", "summary": "Result 1 summary"},
        {"title": "Result 2", "url": "https://www.example.com/2", "summary": "Result 2 summary"}]})
    server.routes["POST /contents"] = guarded({"results": [
        {"title": "Fetch Result 1", "url": "https://www.example.com/1", "text": "<div>Fetch Result 1 text</div>"}]})
    browser = Browser(Exa(base_url=server.url))
    status, output = search(browser, "test")
    assert status == "done" and "L4:   * 【0†Result 1†www.example.com】 Result 1 summary" in output
    assert server.requests[0]["json"] == {"query": "test", "numResults": 10, "contents": {"text": True, "summary": True}}
    page = browser.open(id=0)
    assert page.endswith("\nL0: \nL1: URL: https://www.example.com/1\nL2: Fetch Result 1 text")   # reference
    assert page.startswith("[1] Fetch Result 1 (https://www.example.com/1)")
    assert server.requests[1]["json"] == {"urls": ["https://www.example.com/1"], "text": {"includeHtmlTags": True}}

    monkeypatch.setenv("EXA_API_KEY", "wrong")
    status, output = search(Browser(Exa(base_url=server.url)), "test")
    assert (status, output) == ("error", "Error during search for `test`: Exa refused the request (HTTP 401): "
                                         "check the API key in EXA_API_KEY")


def test_youcom_web_and_news_results(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_YDC", "secret")
    server.routes["GET /v1/search"] = as_json({"results": {
        "web": [{"title": "Web Result 1", "url": "https://www.example.com/web1", "snippets": ["Web 1", "snippets"]}],
        "news": [{"title": "News Result 1", "url": "https://www.example.com/news1", "description": "News 1 description"}]}})
    server.routes["POST /v1/contents"] = as_json([{"title": "Fetch Result 1", "url": "https://www.example.com/web1",
                                                   "html": "<div>Fetch Result 1 text</div>"}])
    assert Browser.from_sources(["youcom"], api_key_env="MY_YDC").describe() == "the web through You.com (https://api.ydc-index.io)"
    browser = Browser(YouCom(api_key_env="MY_YDC", base_url=server.url))
    status, output = search(browser, "test")
    assert status == "done"
    assert "L4:   * 【0†Web Result 1†www.example.com】 Web 1 snippets\nL5:   * 【1†News Result 1†www.example.com】 News 1 description" in output
    assert server.requests[0]["headers"]["x-api-key"] == "secret"
    assert server.requests[0]["query"] == {"query": ["test"], "count": ["10"]}
    assert browser.open(id=1).endswith("L2: Fetch Result 1 text")

    server.routes["GET /v1/search"] = lambda r: (200, "application/json", b"{not json")
    status, output = search(browser, "test")
    assert output == "Error during search for `test`: You.com answered with something that is not JSON (application/json, 9 bytes)"


def test_missing_keys_and_bad_backends_are_refused_up_front(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EXA_API_KEY", raising=False)
    with pytest.raises(BrowserError, match=r"^the environment variable EXA_API_KEY is not set: put your Exa API key there"):
        Browser.from_sources(["exa"])
    with pytest.raises(BrowserError, match=r"^the environment variable NOPE is not set: put your You.com API key"):
        Browser.from_sources(["youcom"], api_key_env="NOPE")
    with pytest.raises(BrowserError, match="a SearXNG URL starts with http:// or https://"):
        Browser.from_sources(["searxng:127.0.0.1:8888"])
