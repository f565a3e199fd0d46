"""Web backends against fake servers on 127.0.0.1 (nothing leaves this machine): SearXNG, Exa and You.com
results are parsed into the reference's result page, pages are fetched and cut to their content, and
every failure (401, timeout, not JSON, unreachable) is one line, to the model and to the user."""
from __future__ import annotations

import gzip
import json
import socket
import ssl
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from gptoss_lab.events import ToolCall
from gptoss_lab.tools.browser import Browser, BrowserError, Exa, SearXNG, YouCom
from gptoss_lab.tools.browser.backends import BackendError
from gptoss_lab.tools.browser.demo import text_pdf
from gptoss_lab.tools.browser.page import SearchResult
from gptoss_lab.tools.browser.web import fetch_web

Reply = tuple                           # status, content type, body (bytes, or chunks sent as they come), headers?
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
                status, kind, data, *headers = route(request) if route else (404, "text/plain", b"not found")
                try:
                    self.send_response(status)
                    self.send_header("content-type", kind)
                    for name, value in (headers[0] if headers else {}).items():
                        self.send_header(name, value)
                    if isinstance(data, bytes):
                        self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    for chunk in [data] if isinstance(data, bytes) else data:
                        self.wfile.write(chunk)
                        self.wfile.flush()
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
    # a terminal's sequences and a direction override in its text were read by the model as they came
    (lambda r: (500, "text/plain", "Down\x1b[2J\x1b]0;pwned\x07 \u202e!olleh".encode()), "SearXNG answered HTTP 500: Down !olleh"),
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
    assert (status, output) == ("error", "Error during search for `owls`: SearXNG did not answer within 0.3 s "
                                         "(the timeout= given to the backend)")


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


@pytest.mark.parametrize("source", ["exa", "youcom"])
def test_a_key_pasted_where_its_variables_name_belongs_is_never_said(source: str) -> None:
    """`%gptoss browse exa --api-key-env <the key>` said "the environment variable <the key> is not set": the key,
    printed, stayed in the saved notebook."""
    with pytest.raises(BrowserError) as caught:
        Browser.from_sources([source], api_key_env="5f2c9e1a7b-pasted-key")
    assert "pasted" not in str(caught.value)
    assert str(caught.value).startswith("the environment variable given (its name is not shown: it looks like a key, "
                                        "not a variable's name such as OPENAI_API_KEY) is not set: put your ")



def test_a_lowercase_variable_named_for_the_key_is_named_and_its_key_never_said(server: FakeServer,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """`%gptoss browse exa --api-key-env my_key` said "the environment variable given (its name is not shown: it looks
    like a key ...) is not set", also when my_key was set but empty: any variable's name is named, a key's value never."""
    monkeypatch.delenv("my_key", raising=False)
    with pytest.raises(BrowserError) as caught:
        Browser.from_sources(["exa"], api_key_env="my_key")
    assert str(caught.value).startswith("the environment variable my_key is not set: put your Exa API key there")
    monkeypatch.setenv("my_key", " ")
    with pytest.raises(BrowserError) as caught:
        Browser.from_sources(["youcom"], api_key_env="my_key")
    assert str(caught.value).startswith("the environment variable my_key is empty: put your You.com API key there")
    monkeypatch.setenv("my_key", "k-wrong-5f2c9e1a7b")
    server.routes["POST /search"] = lambda r: (401, "application/json", b'{"error": "bad key k-wrong-5f2c9e1a7b"}')
    status, output = search(Browser(Exa(api_key_env="my_key", base_url=server.url)))
    assert (status, output) == ("error", "Error during search for `owls`: Exa refused the request (HTTP 401): "
                                         "check the API key in my_key")


@pytest.mark.parametrize("address", ["http://", "https://", "searxng:http://", "http:///search", "http://[::1",
                                     "http://a..b", "http://127.0.0.1:99999", "http://127.0.0.1:8888?q=x",
                                     "http://127.0.0.1:8888/#top"])
def test_a_searxng_address_without_a_usable_host_is_refused_when_it_is_given(address: str) -> None:
    """`%gptoss browse http://` said "The browser reads the web through SearXNG at http:", and every search failed
    later ("Request URL is missing an 'http://' or 'https://' protocol"); `http://[::1` and `http://a..b` raised
    httpx's InvalidURL and a UnicodeError out of the search, a query had `/search` written after it."""
    with pytest.raises(BrowserError, match=r"^.+ is not a SearXNG address \(.+\); write it like http://127.0.0.1:8888$"):
        Browser.from_sources([address])
    with pytest.raises(BrowserError) as refused:   # a password in it is not said
        Browser.from_sources(["http://alice:s3cret@[::1"])
    assert str(refused.value).startswith("'http://…@[::1' is not a SearXNG address (")


def test_a_searxng_address_written_in_capitals_is_taken(server: FakeServer) -> None:
    """`HTTP://host:port` (as a URL may be pasted) was refused: "a SearXNG URL starts with http:// or https://"."""
    server.routes["GET /search"] = lambda r: (200, "application/json", json.dumps({"results": [
        {"title": "Owls", "url": "https://example.com/owls", "content": "Barn owls."}]}).encode())
    status, output = search(Browser.from_sources([server.url.replace("http://", "HTTP://")]))
    assert status == "done" and output.endswith("L4:   * 【0†Owls†example.com】 Barn owls.")


# ---------------------------------------------------------------- hostile pages

def opened(browser: Browser, url: str) -> tuple[str, str]:
    result = browser.run(ToolCall("browser.open", "analysis", json.dumps({"id": url})))
    return result.status, result.output


def test_a_page_that_trickles_in_is_cut_off_at_the_timeout(server: FakeServer, monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path) -> None:
    """Said as a page that did not arrive, also where loading the CA certificates is slow (0.3 to 0.5 s of a loaded
    machine, which was taken from the timeout: 'no answer within 0.5 s'; a CA directory not seen before loads anew)."""
    def trickle(request: dict) -> Reply:
        return 200, "text/plain", (time.sleep(0.2) or b"a" for _ in range(30))   # 6 s, a byte at a time

    def slow_ca(verify: Any = True, *args: Any, **kwargs: Any) -> ssl.SSLContext:
        if verify is True:  # the CA certificates are loaded
            time.sleep(0.6)
        return make_context(verify, *args, **kwargs)

    server.routes["GET /slow"] = trickle
    server.routes["GET /page"] = lambda r: (200, "text/plain", b"Owls hunt at dusk.")
    browser = Browser(SearXNG(server.url, timeout=0.5))
    assert opened(browser, f"{server.url}/page")[0] == "done"  # the first page of all imports httpcore (1.6 s, loaded)
    make_context = httpx.create_ssl_context
    monkeypatch.setattr(httpx, "create_ssl_context", slow_ca)
    monkeypatch.setattr(httpx._transports.default, "create_ssl_context", slow_ca)
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    t0 = time.perf_counter()
    status, output = opened(browser, f"{server.url}/slow")
    assert time.perf_counter() - t0 < 2 + 0.6  # not the trickle's 6 s (0.6 s: the CA certificates loading)
    assert (status, output) == ("error", f"Error fetching URL `{server.url}/slow`: the page did not arrive within 0.5 s "
                                         "(the timeout= given to the backend)")


def test_a_page_compressed_twice_over_is_refused_before_it_is_unpacked(server: FakeServer) -> None:
    bomb = gzip.compress(gzip.compress(bytes(50_000_000)))        # a few hundred bytes, 50 MB unpacked
    server.routes["GET /bomb"] = lambda r: (200, "text/html", bomb, {"content-encoding": "gzip, gzip"})
    server.routes["GET /zipped"] = lambda r: (200, "text/html", gzip.compress(b"<p>Owls hunt at dusk.</p>"),
                                              {"content-encoding": "gzip"})
    browser = Browser(SearXNG(server.url))
    tracemalloc.start()
    try:
        status, output = opened(browser, f"{server.url}/bomb")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (status, output) == ("error", f"Error fetching URL `{server.url}/bomb`: the page is encoded 2 times over "
                                         "(gzip, gzip)")
    assert peak < 10_000_000
    assert opened(browser, f"{server.url}/zipped")[1].endswith("L2: Owls hunt at dusk.")   # one layer is read


@pytest.mark.parametrize("coding", ["zstd", "br", "compress"])
def test_a_page_compressed_otherwise_than_gzip_or_deflate_is_refused_before_it_is_unpacked(server: FakeServer,
                                                                                          coding: str) -> None:
    """One layer of zstd (or brotli) expands a network read some 30,000-fold, and httpx decodes it whenever its package
    is installed: 16 kB made 959 MiB before the size check saw a byte (a review). Only gzip and deflate are asked for
    and read."""
    asked: list[str] = []
    server.routes["GET /packed"] = lambda r: (asked.append(r["headers"].get("accept-encoding", "")) or 200,
                                              "text/html", b"\x28\xb5\x2f\xfd" + bytes(64), {"content-encoding": coding})
    status, output = opened(Browser(SearXNG(server.url)), f"{server.url}/packed")
    assert (status, output) == ("error", f"Error fetching URL `{server.url}/packed`: the page is compressed as {coding}: "
                                         "only gzip or deflate is read")
    assert asked == ["gzip, deflate"]


def test_redirects_do_not_reach_other_addresses_on_this_computer(server: FakeServer) -> None:
    inside = FakeServer()                                           # say, the Jupyter server
    inside.routes["GET /api"] = lambda r: (200, "text/plain", b"secret")
    port = inside.url.rsplit(":", 1)[1]
    try:
        server.routes["GET /moved"] = lambda r: (301, "text/plain", b"", {"location": "/owls"})
        server.routes["GET /owls"] = lambda r: (200, "text/plain", b"Owls hunt at dusk.")
        server.routes["GET /file"] = lambda r: (302, "text/plain", b"", {"location": "file:///etc/passwd"})
        browser = Browser(SearXNG(server.url))
        assert opened(browser, f"{server.url}/moved")[1].endswith("L2: Owls hunt at dusk.")   # same site: followed
        assert opened(browser, f"{server.url}/file")[1] == (f"Error fetching URL `{server.url}/file`: only http:// "
                                                             "and https:// addresses can be opened")
        for target in (f"{inside.url}/api", f"http://localhost:{port}/api", f"http://0x7f000001:{port}/api",
                       f"http://en.wikipedia.org@127.0.0.1:{port}/api", "http://169.254.169.254/latest/meta-data/"):
            server.routes["GET /jump"] = lambda r, target=target: (302, "text/plain", b"", {"location": target})
            status, output = opened(browser, f"{server.url}/jump")
            assert (status, output) == ("error", f"Error fetching URL `{server.url}/jump`: the page redirects to "
                                                 f"{target}, an address on this computer or its network; open it "
                                                 "directly to read it")
        assert inside.requests == []
        assert opened(browser, f"{inside.url}/api")[1].endswith("L2: secret")   # as documented: asked for, it opens
    finally:
        inside.close()


def test_a_redirect_to_a_name_that_rebinds_to_this_computer_does_not_reach_it(server: FakeServer, monkeypatch) -> None:
    """A name that answers a public address to the check and 127.0.0.1 to the connection (DNS rebinding, simulated by
    wrapping getaddrinfo) passed the redirect check: the model read what a service on this computer answered (a
    review). The connection itself is checked now, before anything is sent."""
    inside = FakeServer()                                           # say, a cloud's metadata service
    inside.routes["GET /latest/meta-data/"] = lambda r: (200, "text/plain", b"aws_secret_access_key=abc123")
    port = inside.url.rsplit(":", 1)[1]
    real, answers = socket.getaddrinfo, []

    def rebinding(host, *args, **kwargs):
        if host == "rebind.attacker.test":
            answers.append("93.184.215.14" if not answers else "127.0.0.1")
            return real(answers[-1], *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    target = f"http://rebind.attacker.test:{port}/latest/meta-data/"
    server.routes["GET /article"] = lambda r: (302, "text/plain", b"", {"location": target})
    try:
        status, output = opened(Browser(SearXNG(server.url)), f"{server.url}/article")
        assert (status, output) == ("error", f"Error fetching URL `{server.url}/article`: the page redirects to "
                                             f"{target}, an address on this computer or its network; open it "
                                             "directly to read it")
        assert answers == ["93.184.215.14", "127.0.0.1"] and inside.requests == []
    finally:
        inside.close()


def test_through_a_proxy_a_redirect_to_a_name_this_computer_cannot_resolve_is_refused(monkeypatch) -> None:
    """A proxy resolves names on its own network: a public page redirected the browser to the intranet's
    `wiki.corp.internal`, which this computer cannot resolve and so did not count as local (a review)."""
    proxy = FakeServer()  # a forward proxy: asked for absolute addresses
    proxy.routes["GET /article"] = lambda r: (
        302, "text/plain", b"", {"location": "http://wiki.corp.internal/hr/salaries"})
    proxy.routes["GET /hr/salaries"] = lambda r: (200, "text/plain", b"INTRANET ONLY")
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    try:
        with pytest.raises(BackendError, match="^the page redirects to http://wiki.corp.internal/hr/salaries, an "
                                               "address on this computer or its network; open it directly"):
            fetch_web("http://public.example/article")
        assert [request["path"] for request in proxy.requests] == ["/article"]  # the intranet's page never asked for
    finally:
        proxy.close()


def test_odd_charsets_and_pdfs_that_hit_pypdfs_limits_fail_in_one_line(server: FakeServer) -> None:
    server.routes["GET /idna"] = lambda r: (200, "text/plain; charset=idna", "Owls \u00e9 \xff".encode("latin-1"))
    contents = b"4 0 R /Extra [" + b"0 " * 100_001 + b"]"          # an array longer than pypdf reads
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %s >>" % contents,
               b"<< /Length 0 >>\nstream\n\nendstream"]
    pdf, offsets = b"%PDF-1.4\n", []
    for n, body in enumerate(objects, 1):
        offsets.append(len(pdf))
        pdf += b"%d 0 obj\n%s\nendobj\n" % (n, body)
    pdf += b"xref\n0 5\n0000000000 65535 f \n" + b"".join(b"%010d 00000 n \n" % o for o in offsets) \
        + b"trailer\n<< /Size 5 /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF" % (len(pdf))
    server.routes["GET /limits.pdf"] = lambda r: (200, "application/pdf", pdf)
    browser = Browser(SearXNG(server.url))
    assert opened(browser, f"{server.url}/idna")[1].endswith("L2: Owls é ÿ")
    status, output = opened(browser, f"{server.url}/limits.pdf")
    assert status == "error" and output.startswith(f"Error fetching URL `{server.url}/limits.pdf`: not a readable "
                                                   "PDF (it is too large when unpacked)") and "\n" not in output


def test_approval_questions_always_show_where_a_page_is(server: FakeServer) -> None:
    hidden = "http://en.wikipedia.org%2Fwiki%2FOwl" + "%20" * 100 + "@127.0.0.1:8888/api/contents"
    server.routes["GET /search"] = as_json({"results": [
        {"url": "http://127.0.0.1:8888/api/contents", "title": "Owl - Wikipedia (https://en.wikipedia.org/wiki/Owl)"
                                                              + " " + "." * 300},
        {"url": hidden, "title": "Owl"}]})
    browser = Browser(SearXNG(server.url))
    search(browser)
    assert browser.approval_question(ToolCall("browser.open", "analysis", '{"id": 0}')).endswith(
        "… (http://127.0.0.1:8888/api/contents)?")
    local = "On this computer or its network (asked every time): "
    assert browser.approval_question(ToolCall("browser.open", "analysis", '{"id": 1}')) == \
        local + "Open result 1: Owl (http://127.0.0.1:8888/api/contents)?"   # a hit's address, without its user name
    assert browser.approval_question(ToolCall("browser.open", "analysis", json.dumps({"id": hidden}))) == \
        local + f"Open http://…@127.0.0.1:8888/api/contents (the web through SearXNG at {server.url})?"
    lookalike = ToolCall("browser.open", "analysis", json.dumps({"id": "https://p\u0430yp\u0430l.com/login?q=SECRET"}))
    assert browser.approval_question(lookalike).startswith("Open https://p\\u0430yp\\u0430l.com/login?q=SECRET (")


def test_opening_an_address_on_this_computer_is_asked_every_time_under_auto_and_always_allow(server: FakeServer) -> None:
    """A page's link to a cloud's metadata service or a local server opened with no question once one search had been
    allowed ("Always allow" covers the whole browser), or under approval="auto" (a review): such an open is asked
    about every time; other opens are not, once allowed."""
    from gptoss_lab import ReplayEngine, Session
    from gptoss_lab.events import Approval

    server.routes["GET /owls"] = lambda r: (200, "text/plain", b"Owls hunt at dusk.")
    local, public = f"{server.url}/owls", "https://example.org/owls"
    calls = "".join(f'<|start|>assistant to=browser.open<|channel|>analysis<|message|>{{"id": "{url}"}}<|call|>'
                    for url in (local, public, local))
    asked: list[str] = []

    class View:  # the user answers every card "Always allow"
        stop_requested = False

        def approve(self, call):
            asked.append(call.question)
            return Approval(True, always=True)

        def __getattr__(self, name):
            return lambda *args, **kwargs: None

    where = f"(the web through SearXNG at {server.url})?"
    ask_local = f"On this computer or its network (asked every time): Open {local} {where}"
    for approval, expected in (("auto", [ask_local, ask_local]), ("ask", [ask_local, f"Open {public} {where}", ask_local])):
        asked.clear()
        session = Session(ReplayEngine(calls + "<|channel|>final<|message|>Done.<|return|>"), namespace={},
                          tools=[Browser(SearXNG(server.url, timeout=1))], approval=approval)
        reply = session.ask("Read them", view=View())
        assert [c.recipient for c in reply.tool_calls] == ["browser.open"] * 3
        assert asked == expected, asked
        if approval == "ask":  # the public open's "Always allow" covers the browser; the local ones' covered nothing
            assert session.always_allowed == ("browser",)


def test_an_approval_card_for_a_web_address_asks_the_name_server_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The card's scope (asked every time or not) and its question each looked the host up: with a slow name server
    the user waited twice for the card. Later cards ask again (an answer is kept 10 s, for that one address)."""
    import socket

    from gptoss_lab import ReplayEngine, Session
    from gptoss_lab.events import Approval

    looked_up: list[str] = []
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: looked_up.append(host) or
                        [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 0))])
    asked: list[str] = []

    class View:  # the user skips: nothing is fetched, so every lookup is the card's
        stop_requested = False

        def approve(self, call):
            asked.append(call.question)
            return Approval(False)

        def __getattr__(self, name):
            return lambda *args, **kwargs: None

    calls = '<|start|>assistant to=browser.open<|channel|>analysis<|message|>{"id": "https://owls.example/a"}<|call|>'
    session = Session(ReplayEngine(calls + "<|channel|>final<|message|>Done.<|return|>"), namespace={},
                      tools=[Browser(SearXNG("https://search.example", timeout=1))], approval="ask")
    session.ask("Read it", view=View())
    assert asked == ["Open https://owls.example/a (the web through SearXNG at https://search.example)?"]
    assert looked_up == ["owls.example"]


def test_a_search_service_that_trickles_or_floods_is_cut_off(server: FakeServer) -> None:
    server.routes["GET /search"] = lambda r: (200, "application/json", (time.sleep(0.2) or b" " for _ in range(30)))
    t0 = time.perf_counter()
    status, output = search(Browser(SearXNG(server.url, timeout=0.5)))
    assert time.perf_counter() - t0 < 2                              # was 6 s: the timeout held per read only
    assert (status, output) == ("error", "Error during search for `owls`: SearXNG's answer did not arrive within 0.5 s "
                                         "(the timeout= given to the backend)")

    flood = [b'{"results": [{"url": "http://x.example", "title": "'] + [b"A" * 1_000_000] * 60 + [b'"}]}']
    server.routes["GET /search"] = lambda r: (200, "application/json", iter(flood))
    tracemalloc.start()
    try:
        status, output = search(Browser(SearXNG(server.url)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (status, output) == ("error", "Error during search for `owls`: SearXNG's answer is larger than 5 MB")
    assert peak < 30_000_000                                         # was 600 MB for this 60 MB answer


def test_a_result_whose_address_was_cut_is_never_fetched_nor_linked(server: FakeServer) -> None:
    """A SearXNG hit of a 9,000-character URL was kept cut to 8,192 (`...` at its end), and `open` fetched the cut
    address as if it were the page, which the card linked too; it is refused in one line, before any approval
    card asks about it, and the card names it without a link."""
    from gptoss_lab.tools.browser.page import MAX_URL_CHARS
    from gptoss_lab.widgets.citations import card_html

    long = f"{server.url}/page?q=" + "a" * 9_000
    server.routes["GET /search"] = as_json({"results": [{"url": long, "title": "Long"},
                                                        {"url": f"{server.url}/page", "title": "Short"}]})
    server.routes["GET /page"] = lambda r: (200, "text/html", ARTICLE.encode())
    browser = Browser(SearXNG(server.url))
    call = ToolCall("browser.search", "analysis", '{"query": "owls"}', status="done")
    result = browser.run(call)
    call.data = result.data
    assert result.data["results"][0]["cut"] and not result.data["results"][1]["cut"]
    assert f'href="{server.url}/page?' not in card_html(call) and f'href="{server.url}/page"' in card_html(call)
    cut = long[:MAX_URL_CHARS - 3] + "..."
    said = (f"Error fetching URL `{cut[:1021]}...`: the search service gave an address longer than 8,192 characters, "
            "kept cut to that length: a cut address is not opened (it names another page)")
    for target in (0, cut):
        open_call = ToolCall("browser.open", "analysis", json.dumps({"id": target}))
        assert browser.refusal(open_call) == said
        assert browser.run(open_call).output == said
    assert [r["path"] for r in server.requests] == ["/search"]       # the cut address was fetched
    assert browser.open(id=1).startswith(f"[1] Owls of the valley ({server.url}/page)")


def test_search_services_answering_odd_json_are_one_line(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXA_API_KEY", "k")
    monkeypatch.setenv("YDC_API_KEY", "k")
    server.routes["GET /search"] = as_json({"results": [{"url": "http://[oops/", "title": "Owls"}]})
    status, output = search(Browser(SearXNG(server.url)))     # was a ValueError out of run(): urllib's, on the host
    assert status == "done" and output.endswith("L4:   * 【0†Owls†】 ")
    server.routes["GET /v1/search"] = as_json({"results": {"web": 5}})
    assert search(Browser(YouCom(base_url=server.url))) == ("error", "Error during search for `owls`: You.com answered "
                                                                     "JSON without a `results` object of `web` and `news` lists")
    for results in (5, {"0": {"text": "x"}}):                 # were a TypeError and a KeyError
        server.routes["POST /contents"] = as_json({"results": results})
        assert opened(Browser(Exa(base_url=server.url)), "https://example.com/owls") == (
            "error", "Error fetching URL `https://example.com/owls`: Exa returned no contents for https://example.com/owls")


def test_youcom_and_exa_show_at_most_topn_results(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """... and make no more: a service's 30,000 hits were each cleaned, 2.5 s, before all but `topn` were dropped."""
    from gptoss_lab.tools.browser import web

    made = []
    monkeypatch.setattr(web, "SearchResult", lambda *args: made.append(args) or SearchResult(*args))
    monkeypatch.setenv("YDC_API_KEY", "secret")
    monkeypatch.setenv("EXA_API_KEY", "secret")
    hits = [{"title": f"Owls {n}", "url": f"https://example.com/{n}", "snippets": ["Owls."], "description": "Owls.",
             "summary": "Owls."} for n in range(8)]
    server.routes["GET /v1/search"] = as_json({"results": {"web": hits, "news": hits}})   # `count` is per kind
    server.routes["POST /search"] = as_json({"results": hits})                            # numResults not kept
    for backend in (YouCom(base_url=server.url), Exa(base_url=server.url)):
        browser = Browser(backend)
        result = browser.run(ToolCall("browser.search", "analysis", '{"query": "owls", "topn": 3}'))
        assert result.status == "done" and len(result.data["results"]) == 3   # You.com's was 16
        assert result.output.endswith("L6:   * 【2†Owls 2†example.com】 Owls.")
        assert len(backend.search("owls", 3)) == 3
    assert len(made) == 4 * 3                                               # were 2 × 16 and 2 × 8


def test_any_backend_shows_at_most_max_results() -> None:
    from gptoss_lab.tools.browser import Backend, SearchResult

    class Everything(Backend):
        def search(self, query: str, topn: int) -> list[SearchResult]:
            return [SearchResult(f"Owls {n}", f"https://example.com/{n}", "Owls.") for n in range(100)]

        def fetch(self, url: str):  # type: ignore[no-untyped-def]
            raise NotImplementedError

    result = Browser(Everything(), max_results=5).run(ToolCall("browser.search", "analysis", '{"query": "owls"}'))
    assert result.status == "done" and len(result.data["results"]) == 5   # was 100, past max_results


def test_a_password_in_the_searxng_address_reaches_neither_the_model_nor_the_notebook(server: FakeServer) -> None:
    import base64

    login = "Basic " + base64.b64encode(b"alice:s3cret").decode()
    server.routes["GET /search"] = lambda r: (200, "application/json", json.dumps({"results": [
        {"title": "Owls", "url": "https://example.com/owls", "content": "Barn owls."}]}).encode()) \
        if r["headers"].get("authorization") == login else (401, "text/plain", b"log in")
    address = server.url.replace("http://", "http://alice:s3cret@")
    browser = Browser.from_sources([f"searxng:{address}"])
    call = ToolCall("browser.search", "analysis", '{"query": "owls"}')
    shown = f"SearXNG at {server.url.replace('http://', 'http://…@')}"
    assert browser.describe() == f"the web through {shown}"              # was the password, printed by %gptoss browse
    assert browser.approval_question(call) == f"Search the web through {shown} for 'owls'?"   # and on the card
    assert browser.run(call).output.endswith("L4:   * 【0†Owls†example.com】 Barn owls.")    # still logged in
    server.close()
    result = browser.run(call)
    assert result.output.startswith(f"Error during search for `owls`: cannot reach {shown} (")   # was the password,
    assert "s3cret" not in result.output                                                         # to the model
    echo = FakeServer()   # a service quoting the login back in its error (its header, the password) had it said
    echo.routes["GET /search"] = lambda r: (500, "text/plain", f"{r['headers'].get('authorization')} s3cret".encode())
    try:
        said = Browser.from_sources([f"searxng:{echo.url.replace('http://', 'http://alice:s3cret@')}"]).run(call).output
    finally:
        echo.close()
    assert said == "Error during search for `owls`: SearXNG answered HTTP 500: Basic *** ***"


# ---------------------------------------------------------------- one time limit: the turn's tool timeout

SEARCH_THEN_ANSWER = ('<|channel|>commentary to=browser.search <|constrain|>json<|message|>{"query": "owls"}<|call|>'
                      '<|channel|>final<|message|>Done.<|return|>')
TURN_TIMEOUT = ("the turn's tool timeout; change it with %%gptoss --timeout SECONDS, %gptoss config timeout=SECONDS "
                "or ask(timeout=SECONDS)")


def _asked(server: FakeServer, timeout: float) -> tuple[float, ToolCall]:
    """`%%gptoss --tools browser --timeout S` over `%gptoss browse searxng:URL`: the seconds the turn took, its call."""
    from gptoss_lab import ReplayEngine, Session

    session = Session(ReplayEngine(SEARCH_THEN_ANSWER), namespace={}, browser=Browser.from_sources([f"searxng:{server.url}"]),
                      tools="browser", approval="auto")
    t0 = time.perf_counter()
    reply = session.ask("Owls?", timeout=timeout)
    [call] = reply.tool_calls
    return time.perf_counter() - t0, call


def test_a_slow_search_service_is_waited_for_as_long_as_the_turns_timeout_allows(server: FakeServer) -> None:
    """`--timeout 60` with a SearXNG that takes 16 s: the search failed at 15 s ("SearXNG did not answer within
    15 s"), a limit of the backend's own that the cell's --timeout did not change. The turn's timeout is the one limit."""
    def slow(request: dict) -> Reply:
        time.sleep(16)
        return 200, "application/json", json.dumps({"results": [{"url": "https://owls.example", "title": "Owls"}]}).encode()

    server.routes["GET /search"] = slow
    took, call = _asked(server, timeout=60)
    assert call.status == "done" and "【0†Owls†owls.example】" in call.output, call.output
    assert 16 <= took < 30


def test_a_search_service_that_does_not_answer_ends_at_the_turns_timeout_and_says_how_to_change_it(
        server: FakeServer) -> None:
    """`--timeout 1`: the call ended at 1 s, and its card and the model read "Error: ToolTimeout: Timed out after
    1 s", naming neither the limit nor how to change it. It says both (whichever of the call's deadline and the
    request's own cut-off sees the time first)."""
    server.routes["GET /search"] = lambda r: (time.sleep(5) or 200, "application/json", b'{"results": []}')
    took, call = _asked(server, timeout=1)
    assert took < 3
    assert (call.status, call.output) == ("timeout", f"Error: ToolTimeout: Timed out after 1 s ({TURN_TIMEOUT})")



def test_a_busy_search_service_is_asked_again_and_each_wait_is_shown(server: FakeServer) -> None:
    """A SearXNG answering 429 or 503 failed the search at once ("SearXNG answered HTTP 429: ..."); it is asked again,
    three times in all, after the wait it asks for, and the call's card and the text view say so while the turn waits;
    a wait longer than the lab waits, or no success by the third try, is one line."""
    import io

    from gptoss_lab import ReplayEngine, Session
    from gptoss_lab.widgets.text import TextView

    answers = iter([(429, "text/plain", b"slow down", {"retry-after": "0"}),
                    (503, "text/html", b"<h1>down</h1>", {"retry-after": "0"}),
                    (200, "application/json", json.dumps({"results": [{"url": "https://owls.example",
                                                                       "title": "Owls"}]}).encode())])
    server.routes["GET /search"] = lambda r: next(answers)
    out = io.StringIO()
    session = Session(ReplayEngine(SEARCH_THEN_ANSWER), namespace={}, tools=[Browser(SearXNG(server.url))],
                      approval="auto")
    [call] = session.ask("Owls?", view=TextView(out, colour=False)).tool_calls
    assert call.status == "done" and "【0†Owls†owls.example】" in call.output
    shown = out.getvalue()
    assert "[browser.search: running · SearXNG is busy (HTTP 429), retrying in 0 s: try 2 of 3]" in shown, shown
    assert "[browser.search: running · SearXNG is busy (HTTP 503), retrying in 0 s: try 3 of 3]" in shown

    server.requests.clear()
    server.routes["GET /search"] = lambda r: (429, "text/plain", b"slow down", {"retry-after": "0"})
    assert search(Browser(SearXNG(server.url))) == (
        "error", "Error during search for `owls`: SearXNG is busy (HTTP 429): tried 3 times; try again later")
    assert len(server.requests) == 3
    server.routes["GET /search"] = lambda r: (503, "text/plain", b"", {"retry-after": "3600"})
    assert search(Browser(SearXNG(server.url))) == (
        "error", "Error during search for `owls`: SearXNG is busy (HTTP 503) and asks to be asked again in 3,600 s; "
                 "try again later")
    assert len(server.requests) == 4
    server.routes["GET /search"] = lambda r: (429, "text/plain", b"", {"retry-after": "9" * 400})   # was "in inf s"
    assert search(Browser(SearXNG(server.url)))[1].endswith("(HTTP 429) and asks to be asked again in more than a day; "
                                                            "try again later")

    class Stopping(TextView):   # Stop (or Ctrl-C) once the call waits
        @property
        def stop_requested(self) -> bool:
            return "retrying in 9 s" in out.getvalue()

    server.routes["GET /search"] = lambda r: (429, "text/plain", b"", {"retry-after": "9"})
    session = Session(ReplayEngine(SEARCH_THEN_ANSWER), namespace={}, tools=[Browser(SearXNG(server.url))],
                      approval="auto")
    out, t0 = io.StringIO(), time.perf_counter()
    [call] = session.ask("Owls?", view=Stopping(out, colour=False)).tool_calls
    assert time.perf_counter() - t0 < 3                               # not the 9 s it asked for
    assert (call.status, call.output) == ("interrupted", "Interrupted by the user while it ran, before it gave any "
                                                         "output; it may have had side effects.")


def test_a_search_service_quoting_the_key_back_never_gets_it_said(server: FakeServer,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A service that quoted the x-api-key back (in an error's body, a result's title, a redirect's Location) had it
    read by the model and kept in the notebook; a key no header can carry (a line break) was printed by httpx's
    error, one with a letter outside ASCII raised a UnicodeEncodeError out of the call. The key is never said."""
    key = "exa-S3CRET/0123456789abcdef"
    echo = lambda r: r["headers"].get("x-api-key", "")   # noqa: E731
    answers = {"error": lambda r: (400, "application/json", json.dumps({"error": f"bad key {echo(r)}"}).encode()),
               "title": lambda r: (200, "application/json", json.dumps({"results": [
                   {"url": f"https://a.example/{echo(r)}", "title": f"key {echo(r)}", "summary": echo(r)}]}).encode()),
               "redirect": lambda r: (302, "text/plain", b"", {"location": f"https://b.example/?k={echo(r)}"})}
    said = {}
    for name, route in answers.items():
        server.routes["POST /search"] = route
        browser = Browser(Exa(api_key=key, base_url=server.url))
        result = browser.run(ToolCall("browser.search", "analysis", '{"query": "owls"}'))
        said[name] = result.output + json.dumps(result.data)
    assert all("S3CRET" not in text for text in said.values()), said
    assert said["error"].startswith('Error during search for `owls`: Exa answered HTTP 400: {"error": "bad key ***"}')
    assert "【0†key ***†a.example】 ***" in said["title"]
    assert said["redirect"].startswith("Error during search for `owls`: Exa answered HTTP 302, a redirect to "
                                       "https://b.example/?k=*** (not followed): give the service's own address")
    for bad in ("exa-S3CRET\nline", "exa-S3CRÉT"):
        monkeypatch.setenv("EXA_API_KEY", bad)
        with pytest.raises(BrowserError) as caught:
            Browser.from_sources(["exa"])
        assert str(caught.value) == ("the API key in EXA_API_KEY holds a character an HTTP header cannot carry (a line "
                                     "break, a space, a letter outside ASCII): put the key alone there")


def test_a_short_key_is_hidden_where_it_is_quoted_not_in_the_words_of_the_results(server: FakeServer) -> None:
    """A key of two letters "ab" was written `***` wherever those letters stood: "About a lab" read "About a l***",
    an address `lab.example` read `l***.example`. A short key is hidden where it stands alone (quoted back, or
    after a URL-encoded `=`); a long one still wherever it appears."""
    server.routes["POST /search"] = lambda r: (200, "application/json", json.dumps({"results": [
        {"url": "https://lab.example/abc?k%3Dab", "title": "About a lab", "summary": "Tabs; key ab; drab."}]}).encode())
    result = Browser(Exa(api_key="ab", base_url=server.url)).run(ToolCall("browser.search", "analysis", '{"query": "x"}'))
    assert result.output.endswith("L4:   * 【0†About a lab†lab.example】 Tabs; key ***; drab."), result.output
    assert result.data["results"][0]["url"] == "https://lab.example/abc?k%3D***"
    server.routes["POST /search"] = lambda r: (400, "text/plain", b"bad key ab: see https://lab.example/ab")
    said = Browser(Exa(api_key="ab", base_url=server.url)).run(ToolCall("browser.search", "analysis", '{"query": "x"}'))
    assert said.output == "Error during search for `x`: Exa answered HTTP 400: bad key ***: see https://lab.example/***"
