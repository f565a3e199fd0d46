"""Web backends, for users who configure one: self-hosted SearXNG, and the APIs the reference supports
(Exa, You.com) with keys from environment variables.

Nothing here runs unless the user chose such a backend (`%gptoss browse searxng:URL`, `exa`, `youcom`).
Every failure (unreachable, refused, 401, timeout, not JSON, unexpected JSON) is a one-line
`BackendError` naming the service, which the model reads as the tool's output. A request may take as long as
the browser call may run (the turn's tool timeout, `%%gptoss --timeout`), or a backend's own `timeout=` where
one is given. Requests to the APIs follow the reference (openai/gpt-oss `simple_browser/backend.py`); base URLs
can be changed, which is how the tests talk to fake servers on 127.0.0.1.
"""
from __future__ import annotations

import base64
import contextlib
import email.utils
import functools
import importlib
import ipaddress
import itertools
import json
import os
import re
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from ...widgets.sanitize import Secrets, variable_named
from ..base import call_limit, report
from .backends import Backend, BackendError, one_line
from .extract import ExtractError, document_page, html_page
from .page import Page, SearchResult, maybe_truncate, replace_special_chars

MAX_PAGE_BYTES = 5_000_000
MAX_REDIRECTS = 10
TRIES = 3              # times a busy search service (HTTP 429, 503) is asked, in all
LONGEST_WAIT = 10.0    # seconds of a busy service's Retry-After waited for; a longer one is said at once
_BUSY = (429, 503)
_HEADER_VALUE = re.compile(r"[\x21-\x7e]+")   # what an API key sent in a header can hold
USER_AGENT = "gptoss_lab-browser/0.1 (+https://github.com/openai/gpt-oss)"


def _reason(err: Exception) -> str:
    cause = err.__cause__ or err.__context__
    text = str(err) or (str(cause) if cause else "") or type(err).__name__
    return one_line(text, 160)


def _tls() -> ssl.SSLContext:
    """The TLS context the browser's requests share, made before a request's clock starts. A client made its own
    from certifi's CA bundle, and the first one imported httpcore (0.3 to 0.5 s and 1.6 s of a loaded machine), taken
    from the request's `timeout=`, so a page that trickled in was said to have given no answer at all."""
    return _tls_for(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.lru_cache(maxsize=4)
def _tls_for(cafile: str | None, capath: str | None) -> ssl.SSLContext:
    """httpx's default context (it reads the same two variables), once for each CA bundle the environment names."""
    importlib.import_module("httpcore")  # what httpx imports at its first client
    return httpx.create_ssl_context()


class _Limit:
    """How long one request may take: the backend's own `timeout` where one was given, else what is left of the
    browser call's time (the turn's tool timeout), else (a backend used outside a turn) the settings' default."""

    def __init__(self, own: float | None) -> None:
        call = None if own is not None else call_limit()
        self._ends = call[1] if call is not None else None
        if own is not None:
            self.seconds, self._why = own, "the timeout= given to the backend"
        elif call is not None:
            self.seconds, self._why = call[0], ""
        else:
            from ...settings import Settings

            self.seconds, self._why = Settings().timeout, "the default tool timeout; give the backend a timeout="
        self.end = time.monotonic() + self.seconds

    def passed(self) -> bool:
        return time.monotonic() > self.end

    def left(self) -> float:
        """The seconds left of the limit (a busy service's waits spend it too)."""
        return max(0.0, self.end - time.monotonic())

    def exceeded(self, what: str) -> BaseException:
        """The error of a request that ran past the limit ("SearXNG did not answer"): the browser call's own timeout
        where it was the call's (the turn's limit, said as the turn says it), else naming the backend's `timeout=`."""
        if self._ends is not None:
            return self._ends
        return BackendError(f"{what} within {self.seconds:g} s ({self._why})")


class HttpService:
    """Requests to one service, with every way they fail turned into one line naming it."""

    def __init__(self, name: str, base_url: str, *, headers: dict[str, str] | None = None,
                 timeout: float | None = None, key_hint: str = "", key: str = "") -> None:
        self.name, self.base_url, self.timeout, self.key_hint = name, base_url.rstrip("/"), timeout, key_hint
        self.shown_url = _shown(self.base_url)
        self.headers = {"user-agent": USER_AGENT, **(headers or {})}
        address = httpx.URL(self.base_url)   # a password in it logs in (Basic): as secret as the key
        login = base64.b64encode(f"{address.username}:{address.password}".encode()).decode() if address.password else ""
        self._secrets = Secrets((key, address.password, login))   # never said (`_hide`)

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """The service's JSON answer, read whole within the request's time (see `_Limit`) and at most MAX_PAGE_BYTES
        long (a service that trickles or floods cannot hold the kernel or fill its memory). A busy service (429, 503)
        is asked again, TRIES times in all, after the wait it asks for (at most LONGEST_WAIT s, within the same time),
        each wait said on the call's card."""
        tls, limit = _tls(), _Limit(self.timeout)
        for attempt in range(1, TRIES + 1):
            response, data = self._answer(method, path, limit, tls, kwargs)
            if response.status_code not in _BUSY:
                break
            busy = f"{self.name} is busy (HTTP {response.status_code})"
            wait = _retry_after(response.headers.get("retry-after"), attempt)
            if attempt == TRIES:
                raise BackendError(f"{busy}: tried {TRIES} times; try again later")
            if wait > LONGEST_WAIT:
                when = f"in {wait:,.0f} s" if wait <= 86_400 else "in more than a day"   # `Retry-After: 999...` is inf
                raise BackendError(f"{busy} and asks to be asked again {when}; try again later")
            if wait >= limit.left():
                raise BackendError(f"{busy} and asks to be asked again in {wait:g} s, past the {limit.left():.0f} s "
                                   "this call has left; try again later")
            report(f"{busy}, retrying in {wait:g} s: try {attempt + 1} of {TRIES}")
            time.sleep(wait)
        if response.status_code in (401, 403):
            hint = f": check {self.key_hint}" if self.key_hint else ""
            raise BackendError(f"{self.name} refused the request (HTTP {response.status_code}){hint}")
        if response.is_redirect:   # not followed: the key would go along to wherever it points
            target = self._hide(response.headers["location"])
            raise BackendError(f"{self.name} answered HTTP {response.status_code}, a redirect to "
                               f"{one_line(_shown(target), 200)} (not followed): give the service's own address")
        if response.status_code >= 400:
            # its text cleaned as a result's is: a terminal's sequences and direction overrides read as they came
            text = replace_special_chars(self._hide(data.decode(response.encoding or "utf-8", "replace")))
            raise BackendError(f"{self.name} answered HTTP {response.status_code}: "
                               f"{one_line(text, 160) or response.reason_phrase}")
        try:
            return self._hidden(json.loads(data))
        except RecursionError:
            raise BackendError(f"{self.name} answered JSON nested too deeply ({len(data):,} bytes)") from None
        except ValueError:
            kind = response.headers.get("content-type", "no content type")
            raise BackendError(f"{self.name} answered with something that is not JSON ({kind}, "
                               f"{len(data):,} bytes)") from None

    def _answer(self, method: str, path: str, limit: _Limit, tls: ssl.SSLContext,
                kwargs: dict[str, Any]) -> tuple[httpx.Response, bytes]:
        """One request and its body, read within what is left of `limit`; its failures as one line naming the service."""
        try:
            with _cut_off(limit.left()) as extensions, \
                    httpx.Client(headers={**self.headers, **_ACCEPTED}, timeout=limit.left(), verify=tls) as client, \
                    client.stream(method, self.base_url + path, extensions=extensions, **kwargs) as response:
                data = _body(response, limit, f"{self.name}'s answer")
        except httpx.TimeoutException:
            raise limit.exceeded(f"{self.name} did not answer") from None
        except httpx.ConnectError as err:
            raise BackendError(f"cannot reach {self.name} at {self.shown_url} ({_reason(err)})") from None
        except httpx.HTTPError as err:
            raise BackendError(f"{self.name} request failed: {type(err).__name__}: {_reason(err)}") from None
        return response, data

    def _hide(self, text: str) -> str:
        """`text` with the API key (or the address's password) written `***` wherever the service quoted it back (an
        error's text, a redirect's address): what it says reaches the model and the saved notebook."""
        return self._secrets.hide(text)

    def _hidden(self, value: Any) -> Any:
        """A JSON answer with every string in it hidden (`_hide`): a result's title, snippet or address (only strings
        are changed, so that a short password cannot break the JSON around it)."""
        if not self._secrets or isinstance(value, int | float | bool | None):
            return value
        if isinstance(value, str):
            return self._hide(value)
        if isinstance(value, list):
            return [self._hidden(item) for item in value]
        return {self._hide(name): self._hidden(item) for name, item in value.items()}


def _retry_after(header: str | None, attempt: int) -> float:
    """The seconds a busy service asks to be left alone (`Retry-After: 2`, or a date), else 1 s, then 2 s ..."""
    if header is not None:
        with contextlib.suppress(TypeError, ValueError, OverflowError):
            text = header.strip()
            if text.isascii() and text.isdigit():
                return float(text)
            return max(0.0, email.utils.parsedate_to_datetime(text).timestamp() - time.time())
    return float(2 ** (attempt - 1))


def _shown(url: str) -> str:
    """`url` without the user name and password it may hold (`http://…@host`): the lines naming a service reach the
    model, approval cards and saved notebooks."""
    try:
        parts = urlsplit(url)
    except ValueError:   # `http://user:pw@[::1`, refused as it is said: its password left out all the same
        return re.sub(r"(?<=://)[^/?#]*@", "…@", url, count=1)
    return urlunsplit(parts._replace(netloc="…@" + parts.netloc.rsplit("@", 1)[1])) if "@" in parts.netloc else url


def _check_address(url: str) -> None:
    """Refuse a SearXNG address that no search could reach (`http://`, `http://a..b`, a port past 65535) or that
    `/search` cannot be written after (a ?query or #fragment), when it is given rather than at each search."""
    why = ""
    try:
        parsed = httpx.URL(url)
        parsed.host.encode("idna")   # as the name is looked up
    except (httpx.InvalidURL, UnicodeError) as err:
        why = one_line(str(err), 80)
    else:
        if not parsed.host:
            why = "it names no host"
        elif parsed.query or parsed.fragment:
            why = "it has a ?query or #fragment"
        elif parsed.port is not None and not 0 < parsed.port < 65536:
            why = "its port is not one from 1 to 65535"
    if why:
        raise BackendError(f"{_shown(url)!r} is not a SearXNG address ({why}); write it like http://127.0.0.1:8888")


def _malformed(name: str, what: str) -> BackendError:
    return BackendError(f"{name} answered JSON without {what}")


class SearXNG(Backend):
    """A SearXNG instance (self-hosted metasearch; its settings must allow the `json` format). Pages
    are fetched from the web directly, cut to their main content."""

    def __init__(self, url: str, *, timeout: float | None = None) -> None:
        if not url.lower().startswith(("http://", "https://")):
            raise BackendError(f"a SearXNG URL starts with http:// or https://, not {url!r}")
        _check_address(url)
        self.url, self.timeout = url.rstrip("/"), timeout
        self._service = HttpService("SearXNG", self.url, timeout=timeout)

    def search(self, query: str, topn: int) -> list[SearchResult]:
        try:
            data = self._service.json("GET", "/search", params={"q": query, "format": "json"})
        except BackendError as err:
            if "HTTP 403" in str(err):  # what SearXNG says when the json format is not enabled
                raise BackendError("SearXNG refused JSON output (HTTP 403): add `json` to search.formats "
                                   "in its settings.yml") from None
            raise
        hits = data.get("results") if isinstance(data, dict) else None
        if not isinstance(hits, list):
            raise _malformed("SearXNG", "a `results` list")
        return [SearchResult(str(h.get("title") or h["url"]), str(h["url"]), str(h.get("content") or ""))
                for h in hits[:topn] if isinstance(h, dict) and h.get("url")]

    def fetch(self, url: str) -> Page:
        return fetch_web(url, timeout=self.timeout)

    def describe(self) -> str:
        return f"the web through SearXNG at {self._service.shown_url}"

    where = describe


class _SearchApi(Backend):
    """A paid search API with an `x-api-key` key read from an environment variable (or given)."""

    NAME = BASE_URL = KEY_ENV = SOURCE = ""   # SOURCE: its name in `%gptoss browse SOURCE`

    def __init__(self, *, api_key: str | None = None, api_key_env: str | None = None,
                 base_url: str | None = None, timeout: float | None = None) -> None:
        env = api_key_env or self.KEY_ENV
        key = (api_key or os.environ.get(env, "")).strip()
        if not key:
            why = "is empty" if env in os.environ else "is not set"
            raise BackendError(f"the environment variable {variable_named(env)} {why}: put your {self.NAME} API key "
                               f"there (or pass api_key=..., or `%gptoss browse {self.SOURCE} --api-key-env VAR`)")
        where = "the api_key given" if api_key else f"the API key in {variable_named(env)}"
        if not _HEADER_VALUE.fullmatch(key):   # httpx's error quoted it, or raised UnicodeEncodeError
            raise BackendError(f"{where} holds a character an HTTP header cannot carry (a line break, a space, a letter "
                               "outside ASCII): put the key alone there")
        self._service = HttpService(self.NAME, base_url or self.BASE_URL, headers={"x-api-key": key},
                                    timeout=timeout, key_hint=where, key=key)

    def describe(self) -> str:
        return f"the web through {self.NAME} ({self._service.shown_url})"

    where = describe


class Exa(_SearchApi):
    """The Exa search API (key in EXA_API_KEY); pages come from its contents endpoint."""

    NAME, BASE_URL, KEY_ENV, SOURCE = "Exa", "https://api.exa.ai", "EXA_API_KEY", "exa"

    def search(self, query: str, topn: int) -> list[SearchResult]:
        data = self._service.json("POST", "/search", json={"query": query, "numResults": topn,
                                                           "contents": {"text": True, "summary": True}})
        hits = data.get("results") if isinstance(data, dict) else None
        if not isinstance(hits, list):
            raise _malformed("Exa", "a `results` list")
        return [SearchResult(str(h.get("title") or h["url"]), str(h["url"]), str(summary or ""))
                for h, summary in _first(((h, h.get("summary")) for h in hits if isinstance(h, dict)), topn)]

    def fetch(self, url: str) -> Page:
        data = self._service.json("POST", "/contents", json={"urls": [url], "text": {"includeHtmlTags": True}})
        results = data.get("results") if isinstance(data, dict) else None
        if not isinstance(results, list) or not results or not isinstance(results[0], dict):
            raise BackendError(f"Exa returned no contents for {url}")
        return _api_page(results[0].get("text"), url, results[0].get("title"))


class YouCom(_SearchApi):
    """The You.com search API (key in YDC_API_KEY): web and news results; pages from its contents endpoint."""

    NAME, BASE_URL, KEY_ENV, SOURCE = "You.com", "https://api.ydc-index.io", "YDC_API_KEY", "youcom"

    def search(self, query: str, topn: int) -> list[SearchResult]:
        data = self._service.json("GET", "/v1/search", params={"query": query, "count": topn})
        groups = data.get("results") if isinstance(data, dict) else None
        web, news = (groups.get("web") or [], groups.get("news") or []) if isinstance(groups, dict) else (None, None)
        if not isinstance(web, list) or not isinstance(news, list):
            raise _malformed("You.com", "a `results` object of `web` and `news` lists")
        found = itertools.chain(((h, h.get("snippets")) for h in web if isinstance(h, dict)),
                                ((h, h.get("description")) for h in news if isinstance(h, dict)))
        return [SearchResult(str(h.get("title") or h["url"]), str(h["url"]),
                             " ".join(map(str, text)) if isinstance(text, list) else str(text or ""))
                for h, text in _first(found, topn)]   # `count` is per kind: web and news, each up to topn

    def fetch(self, url: str) -> Page:
        data = self._service.json("POST", "/v1/contents", json={"urls": [url], "livecrawl_formats": "html"})
        if not isinstance(data, list) or not data or not isinstance(data[0], dict):
            raise BackendError(f"You.com returned no contents for {url}")
        if "html" not in data[0]:
            raise BackendError(f"You.com returned no HTML for {url}")
        return _api_page(data[0]["html"], url, data[0].get("title"))


def _first(found: Iterable[tuple[dict[str, Any], Any]], topn: int) -> Iterator[tuple[dict[str, Any], Any]]:
    """The first `topn` of an API's (hit, its text) that have a URL: a service's thousands of hits are not each
    cleaned into a SearchResult (2.5 s for 30,000) to show `topn`."""
    return itertools.islice(((hit, text) for hit, text in found if hit.get("url")), topn)


def _api_page(html: Any, url: str, title: Any) -> Page:
    """A page a search API returned as HTML (and its title, if any); one too slow to convert is one line."""
    try:
        return html_page(str(html or ""), url, str(title or "") or None)
    except ExtractError as err:
        raise BackendError(str(err)) from None


def fetch_web(url: str, *, timeout: float | None = None) -> Page:
    """A web page fetched directly (http and https only, at most MAX_PAGE_BYTES, all of it within `timeout` seconds,
    by default the browser call's time: see `_Limit`), cut to its main content. Redirects are followed, but not from
    one address to another on this machine or its network: the model opens such an address itself, under approval."""
    tls, limit = _tls(), _Limit(timeout)
    start, redirected = None, False

    def refuse_local() -> bool:
        """A redirected request may not connect to a local address either: its name was looked up once to check
        it and again to connect, and a name answering a public address first, 127.0.0.1 next (DNS rebinding), passed."""
        return redirected and _origin(url) != start and not _proxied(httpx.URL(url).host)

    try:
        start = _origin(url)
        with _cut_off(limit.seconds, refuse_local) as extensions, \
                httpx.Client(headers={"user-agent": USER_AGENT, **_ACCEPTED}, timeout=limit.seconds,
                             verify=tls) as client:
            for _ in range(MAX_REDIRECTS + 1):
                if not url.startswith(("http://", "https://")):
                    raise BackendError("only http:// and https:// addresses can be opened")
                with client.stream("GET", url, extensions=extensions) as response:
                    if response.is_redirect:
                        if limit.passed():
                            raise limit.exceeded("the page did not arrive")
                        target = str(response.url.join(response.headers["location"]))
                        if target.startswith(("http://", "https://")) and _origin(target) != _origin(url) \
                                and is_local(httpx.URL(target).host):
                            raise _redirects_local(target)
                        url, redirected = target, True
                        continue
                    if response.status_code >= 400:
                        raise BackendError(f"HTTP {response.status_code} {response.reason_phrase}")
                    data = _body(response, limit)
                    content_type, charset = response.headers.get("content-type", ""), response.charset_encoding
                    final = str(response.url)
                    break
            else:
                raise BackendError(f"more than {MAX_REDIRECTS} redirects")
    except _LocalPeer:
        raise _redirects_local(url) from None
    except httpx.TimeoutException:
        raise limit.exceeded("no answer") from None
    except (httpx.HTTPError, httpx.InvalidURL, UnicodeError) as err:  # UnicodeError: a host IDNA cannot write (`a..b`)
        raise BackendError(f"{type(err).__name__}: {_reason(err)}") from None
    try:
        return document_page(data, final, final, content_type=content_type, charset=charset, main_content=True)
    except ExtractError as err:
        raise BackendError(str(err)) from None


def _origin(url: str) -> tuple[str, str, int | None]:
    parsed = httpx.URL(url)
    return parsed.scheme, parsed.host, parsed.port


def is_local(host: str) -> bool:
    """Whether `host` names this computer or an address on a private network (literal addresses in
    any spelling the resolver accepts, `localhost`, or a name that resolves to such an address; through a proxy, a
    name that does not resolve here: `wiki.corp.internal` was fetched from the proxy's network, a review)."""
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            addresses = [ipaddress.ip_address(info[4][0].split("%")[0])
                         for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)]
        except (OSError, UnicodeError, ValueError):  # a name that does not resolve here is not fetched either,
            return _proxied(host)  # but for one a proxy carries: it resolves it on its own network (an intranet's)
    return any(not address.is_global for address in addresses)


def _redirects_local(target: str) -> BackendError:
    return BackendError(f"the page redirects to {maybe_truncate(target, 200)}, an address on this computer or its "
                        "network; open it directly to read it")


def _proxied(host: str) -> bool:
    """Whether httpx sends a request to `host` through a proxy (the environment's): its connection is the proxy's."""
    return bool(urllib.request.getproxies()) and not urllib.request.proxy_bypass(host)


class _LocalPeer(Exception):
    """A redirected request connected to an address on this computer or its network (see `fetch_web`)."""


@contextlib.contextmanager
def _cut_off(timeout: float, refuse_local: Callable[[], bool] = lambda: False) -> Iterator[dict[str, Any]]:
    """Request extensions under which the connections a request opens are shut down `timeout` seconds from now,
    and the request fails as timed out: httpx's timeouts hold for each read, so a server sending its headers a
    byte at a time held the kernel for as long as it liked. Where `refuse_local()` says so, a connection made to an
    address that is not global is shut at once and the request fails with _LocalPeer."""
    sockets: list[socket.socket] = []
    fired, refused = threading.Event(), threading.Event()

    def trace(event: str, info: dict[str, Any]) -> None:
        if event == "connection.connect_tcp.complete":  # a duplicate: TLS takes over (detaches) the socket itself
            sock = info["return_value"].get_extra_info("socket").dup()
            sockets.append(sock)
            if fired.is_set():  # connected just after the timeout
                shut()
            elif refuse_local() and not _global_peer(sock):
                refused.set()
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def shut() -> None:
        fired.set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(timeout, shut)
    timer.daemon = True
    timer.start()
    try:
        yield {"trace": trace}
    except httpx.TransportError as err:
        if refused.is_set():
            raise _LocalPeer from err
        if fired.is_set():
            raise httpx.ReadTimeout(f"cut off after {timeout:g} s") from err
        raise
    finally:
        timer.cancel()
        for sock in sockets:
            sock.close()


# what a page or an answer may be compressed with: one gzip or deflate layer expands a network read at most about
# 1,000-fold; zstd and brotli (which httpx decodes whenever their packages are installed) 30,000-fold and more
_CODINGS = {"gzip", "deflate"}
_ACCEPTED = {"accept-encoding": "gzip, deflate"}


def _global_peer(sock: socket.socket) -> bool:
    """Whether a connected socket's peer is a global address (not this computer, nor a private network's)."""
    try:
        return ipaddress.ip_address(sock.getpeername()[0].split("%")[0]).is_global
    except (OSError, ValueError, IndexError):  # not connected after all, or no IP peer
        return False


def _body(response: httpx.Response, limit: _Limit, what: str = "the page") -> bytes:
    """The decoded body, refused once it grows past MAX_PAGE_BYTES or comes later than `limit` allows
    (`what` names it in the error)."""
    codings = [c.strip().lower() for c in response.headers.get_list("content-encoding", split_commas=True)
               if c.strip().lower() not in ("", "identity")]
    if len(codings) > 1:  # each layer multiplies what a few bytes decode to
        raise BackendError(f"{what} is encoded {len(codings)} times over ({', '.join(codings)})")
    if not set(codings) <= _CODINGS:  # zstd's one layer made 959 MiB of 16 kB before the size check saw a byte
        raise BackendError(f"{what} is compressed as {codings[0]}: only gzip or deflate is read")
    data = bytearray()
    try:
        for chunk in response.iter_bytes():
            data += chunk
            if len(data) > MAX_PAGE_BYTES:
                raise BackendError(f"{what} is larger than {MAX_PAGE_BYTES // 1_000_000} MB")
            if limit.passed():
                break
    except httpx.TransportError:
        if not limit.passed():
            raise
    if limit.passed():  # also when _cut_off shut the connection down: what came may end anywhere
        raise limit.exceeded(f"{what} did not arrive")
    return bytes(data)
