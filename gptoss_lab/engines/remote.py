"""RemoteEngine: gpt-oss on an inference server (llama.cpp, vLLM, SGLang, Ollama) behind the Engine protocol.

The session renders the Harmony prompt itself; this engine sends it as **token ids** (`"prompt": [ids]`
on `/v1/completions`, which llama.cpp's llama-server, vLLM and SGLang accept), so text inside a
user's message can never become a control token on the server. Servers that take only text
(Ollama's `/api/generate`, llama-cpp-python's server, found by its refusing the first ids) get `inert_text(ids)`: the special ids spelled
out, and every special-token spelling inside ordinary text broken by a zero-width joiner.

The streamed answer (server-sent events, or Ollama's NDJSON; both read here, line by line) is text
with the special tokens spelled out; `harmony.Retokenizer` turns it back into ids for the same parser
the local engine feeds. A dropped connection, an error event, a stalled stream (keep-alive comments
count as silence) or a server that echoes the prompt ends it with a one-line `RemoteError` after the
ids already received, so the session keeps the partial answer. Server options: docs/remote.md (in a
wheel: gptoss_lab/docs/remote.md).
"""
from __future__ import annotations

import base64
import contextlib
import errno
import html
import importlib.util
import ipaddress
import itertools
import json
import os
import queue
import selectors
import socket
import ssl
import threading
import time
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import Any

import httpcore
import httpx
import pydantic
import regex
from httpcore._backends.sync import SyncStream
from httpx_sse import EventSource, SSEError

from .. import harmony
from ..guides import guide
from ..widgets.sanitize import KEYLIKE, Secrets, visible
from .base import EngineError, Sampling

_SNIFF = 256  # characters of output without any Harmony marker before we call the server a stripper
_DOCS = f"see {guide('remote.md')}"  # the path of a file the user can open, installed or cloned
_WHICH_SERVER = "is it an OpenAI-compatible server (vLLM, llama.cpp, SGLang) or Ollama"  # asked of what answers otherwise
_JOINER = "\u200d"  # zero-width joiner: `<\u200d|start|>` reads the same to a person, is no token to a server
_SPELLING = regex.compile(r"<(?=\|[A-Za-z0-9_]+\|>)")  # the `<` of anything spelled like a special token
_BUSY = frozenset({408, 429, 502, 503, 504})  # statuses that say "not now", never "not this prompt"
_OVERRUN = (4, 64)  # text chunks past max_tokens=n (4n + 64: margin for servers that split tokens' text)
_LONGEST_WAIT = 86_400  # seconds: the largest timeout= (a day; 1e10 overflowed the sockets' clocks)
_MAX_WAIT = 5.0  # seconds of a server's Retry-After we wait before asking again; a longer one is reported
_HOSTNAME_MISMATCH = 62  # OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH
_MAX_WAITING = 30.0  # seconds of waits between the tries of one request, in all: then the last failure is reported
_MAX_RETRIES = 10  # the most retries= takes: the waits (0.5 s, 1 s, 2 s, 4 s, then 5 s) pass _MAX_WAITING after 8
_SHOWN_AFTER = 1.0  # s of retrying after which a progress bar says what is retried, tries n of N (before a 2 s wait)
_ECHO = 64  # characters of the prompt that, streamed back first, show a server echoing the prompt
_MAX_BODY = 1 << 22  # bytes read of an answer that is no stream (a model list, an error), characters of one event
_SLICE = 4096  # characters of a chunk's text turned into ids at a time: Stop is asked between slices
_NAME = 200  # characters of the model's name shown (a status line, a view's header)
_QUOTED = 12  # a key or password this long never comes up in an answer by chance: there the server quoted it
_HEADER_SAFE = regex.compile(r"[\x20-\x7e]*")  # what an HTTP header value can carry
# a URL's `user:password@` as typed: all after the scheme up to the last @ (a password may hold a raw / or @)
_USERINFO = regex.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)?.*@", regex.DOTALL)
# `http:/host`, `http//host`, `http:host`: a scheme typed without its colon or a slash (read as a host named http)
_SCHEME_TYPO = regex.compile(r"\s*https?(?::/?|//)(?!/)", regex.IGNORECASE)
_PORT_ALONE = regex.compile(r"\s*:?(\d+)/?\s*")  # `8000` or `:8000`: a port typed without its host
_TYPED_PORT = regex.compile(r":\d+$")  # a host's `:8080` as typed (httpx reads `:80` of http:// as no port)
_SERVER_PORTS = "llama.cpp's llama-server listens on 8080, vLLM and llama-cpp-python on 8000, Ollama on 11434"
_PATH = regex.compile(r"((?:[A-Za-z][A-Za-z0-9+.-]*://)?[^/]*)(.*)", regex.DOTALL)  # a URL's site, then its path
_QUERY = regex.compile(r"([?#]).*", regex.DOTALL)  # a URL's ?query or #fragment (after its user:password@)
# a run of what a key is made of, percent-encoded or not: a host name's label, its scheme, its port, a path's word
_KEY_CHARACTERS = regex.compile(r"(?:[\w+=-]|%[0-9A-Fa-f]{2})+")
_KEY_WORD = regex.compile(r"[\w+-]+=*")  # a key in a decoded run: its letters, and base64's padding after them
_MARKUP = regex.compile(r"<!--.*?-->|<(script|style)\b.*?</\1\s*>|<[^>]*>", regex.DOTALL | regex.IGNORECASE)
_HTML_START = regex.compile(r"\s*<(!doctype\s+html|html)\b", regex.IGNORECASE)  # a page sent as another type
_TITLE = regex.compile(r"<title\b[^>]*>(.*?)</title\s*>", regex.DOTALL | regex.IGNORECASE)
_PAGE = 8192  # characters of a page's start read for its words: the markup regex is slow on a long page
_JSON_TYPE = regex.compile(r"\s*application/(?:[\w.+-]+\+)?json\s*(?:;.*)?", regex.IGNORECASE | regex.DOTALL)
_ERROR_FIELD = regex.compile(r"(?<![^\r\n])error:")  # llama.cpp's streamed error: `error:` starting a line
# a line of an event stream that SSE passes over: no field it knows (JSON, UTF-16, `Data:`), no comment, not blank
_NOT_SSE = regex.compile(r"(?<![^\r\n])(?!(?:data|event|id|retry|error)(?::|[\r\n])|[:\r\n])([^\r\n]+)")
# what a line SSE reads starts with (a field it knows, or a comment): matched `partial` against a line still coming in
_FIELD_START = regex.compile(r"(?:data|event|id|retry|error):|:")
_FIELD = len("retry:")  # characters of a line that tell whether it starts so
_BLANK_LINE = ("\n\n", "\r\r", "\n\r")  # a line end and an empty line (a \r\n alone is one line end)
# OpenSSL's reasons (versions differ) for a TLS handshake that got a plain http answer
_PLAIN_HTTP = frozenset({"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "HTTP_REQUEST", "PACKET_LENGTH_TOO_LONG"})
# httpcore's RemoteProtocolErrors of a connection dropped (retried); h11's others say the answer is no HTTP
_DROPPED = ("Server disconnected", "peer closed connection", "peer unexpectedly closed connection")
_ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/models", "/v1", "/api/generate", "/api/chat",
              "/api/tags", "/api")  # what a pasted endpoint URL ends with, taken off to leave the server root


class RemoteError(EngineError):
    """A one-line, user-facing reason why the server could not be used."""


def inert_text(ids: Sequence[int]) -> str:
    """`ids` as text for a server that tokenizes text with special tokens recognised: the special ids
    spelled out, and special-token spellings inside ordinary text broken with a zero-width joiner,
    so the server's tokenizer finds exactly the special tokens that `ids` holds."""
    specials = harmony.special_tokens()
    parts = []
    for special, run in itertools.groupby(ids, key=specials.__contains__):
        text = harmony.decode(run)
        parts.append(text if special else _SPELLING.sub("<" + _JOINER, text))
    return "".join(parts)


class _LongList(RemoteError):
    """A server's model list longer than the lab reads (a gateway's thousands): a model named is taken unchecked."""


class _Compressed(httpx.DecodingError):
    """`RemoteEngine._one_coding`'s DecodingError: the lab's words, the codings the server named in them quoted."""


class RemoteWarning(UserWarning):
    """A remote setting that works but puts something at risk (a key sent in plain text)."""


def _loopback(host: str) -> bool:
    """Whether `host` is this machine as the connection reaches it (a key sent there in plain text crosses no network,
    and no proxy could reach it): a `_localhost` name, or an address the system reads as a loopback one (127.1 and
    ::ffff:127.0.0.1 too) or as the unspecified one (0.0.0.0, which servers print and which connects here)."""
    if _localhost(host):
        return True
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        try:  # IPv4 written as the system's resolver also reads it (127.1, 0x7f.0.0.1, 2130706433)
            ip = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return False
    ip = getattr(ip, "ipv4_mapped", None) or ip
    return ip.is_loopback or ip.is_unspecified


def _localhost(host: str) -> bool:
    """Whether `host` is `localhost` or a name under it (`api.localhost`), a final dot or not: loopback by RFC 6761,
    which `_Connector` connects to 127.0.0.1 or ::1 without asking DNS (that may answer anything for it)."""
    name = host.lower().removesuffix(".")
    return name == "localhost" or name.endswith(".localhost")


def shown_url(url: str) -> str:
    """`url` as typed, to show it: without its `user:password@` (all after the scheme up to the last @), its ?query
    or #fragment written `?…` or `#…` (`?api_key=sk-...`: some gateways take a key there, others in the path or a
    host name: a run of a label or path segment that holds a key, `_keys_in`, is written `…`)."""
    shown = _QUERY.sub("\\1…", _USERINFO.sub(r"\1", url))
    return _KEY_CHARACTERS.sub(lambda run: "…" if _keys_in(run.group()) else run.group(), shown)


def _url_keys(url: str) -> list[str]:
    """The keys in `url`'s host and path (what `shown_url` writes `…`), as sent and as a server may quote them
    (decoded): hidden wherever the server's text is shown, as a key given as api_key is."""
    return [form for run in _KEY_CHARACTERS.findall(url) if (keys := _keys_in(run)) for form in (run, *keys)]


def _keys_in(run: str) -> list[str]:
    """The API keys (`KEYLIKE`) a run of `_KEY_CHARACTERS` holds, its percent-encoding read: all of it, or a word of it
    (`key=sk-...`, `Bearer%20sk-...`, `%25sk-...`, `sk-...%2E`)."""
    text = urllib.parse.unquote(run)
    return [part for part in dict.fromkeys([text, *_KEY_WORD.findall(text)]) if KEYLIKE.fullmatch(part)]


def _base_url(url: str) -> httpx.URL:
    """The server root of `url` (scheme added, a trailing /v1, /v1/chat/completions ... taken off); RemoteError for
    what is no http(s) URL. Its `user:password@` and ?query, if any, are left out of the message."""
    if not isinstance(url, str):   # `Session.connect(8000)` said "expected string or buffer", of a regular expression
        raise RemoteError(f"the server's URL is text, like 'http://127.0.0.1:8000', not {type(url).__name__}")
    given = shown_url(url)
    secret = "@" in url  # httpx may quote a piece of a password (`Invalid port: 'se'` of `user:se/cret@`)
    if port := _PORT_ALONE.fullmatch(url):  # http://8000 is the address 0.0.31.64, port 80: somewhere else
        raise RemoteError(f"{given!r} is not a server URL (a port alone); write it with its host, like "
                          f"http://127.0.0.1:{port[1]} for a server on this machine")
    if _SCHEME_TYPO.match(url):
        raise RemoteError(f"{given!r} is not a server URL (write its scheme as http:// or https://: a colon, two "
                          "slashes); write it like http://127.0.0.1:8000")
    if _bare_ipv6(url):  # httpx read what follows its first colon as the port: "Invalid port: ':1'"
        raise RemoteError(f"{given!r} is not a server URL (an IPv6 address goes in brackets, its port after them); "
                          "write it like http://[::1]:8000")
    url = url.strip()
    url = url.rstrip("/") if "://" in url else "http://" + url.rstrip("/")
    for suffix in _ENDPOINTS:
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as err:
        why = "write / ? # @ in a password as %2F %3F %23 %40" if secret else err
        raise RemoteError(f"{given!r} is not a server URL ({why}); write it like http://127.0.0.1:8000") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise RemoteError(f"{given!r} is not an http(s) server URL; write it like http://127.0.0.1:8000")
    if "@" in parsed.path:  # a password's `/` ended the host: the rest of it would be sent as the path
        raise RemoteError(f"{given!r} is not a server URL (an @ after its host): "
                          "write / ? # @ in a password as %2F %3F %23 %40")
    if parsed.query or parsed.fragment:  # httpx would put the API's paths after it
        # the URL without them (a web page's address pasted: its own port); not of a URL with user:password@, where
        # httpx may have read the password's start as the host and port (`bob:4711#...@host`)
        bare = shown_url(str(parsed.copy_with(query=None, fragment=None))).rstrip("/")
        example = "like http://127.0.0.1:8000" if secret else f"without them: {bare}"
        raise RemoteError(f"{given!r} is not a server URL (it has a ?query or #fragment); write it {example}")
    try:
        parsed.host.encode("idna")  # as the system's name lookup is given it
    except UnicodeError as err:  # an empty label (two dots), one past 63 characters
        raise RemoteError(f"{given!r} is not a server URL (its host name cannot be looked up: {err}); "
                          "write it like http://127.0.0.1:8000") from None
    if parsed.port is not None and not 0 < parsed.port < 65536:  # the system would take it modulo 65536
        raise RemoteError(f"{given!r} is not a server URL (its port is not one from 1 to 65535); "
                          "write it like http://127.0.0.1:8000")
    return parsed


def _typed_host(url: str) -> str:
    """The host and port of `url` as typed: what stands between its `user:password@` and its path or ?query."""
    site = _PATH.fullmatch(url.strip())[1].split("://", 1)[-1].rpartition("@")[2]  # type: ignore[index]
    return _QUERY.sub("", site)


def _bare_ipv6(url: str) -> bool:
    """Whether the host of `url` (as typed) is an IPv6 address written without its brackets (`::1`, `fe80::1:8000`):
    two colons or more, none in brackets."""
    host = _typed_host(url)
    return host.count(":") >= 2 and "[" not in host


def _key_given(api_key: Any) -> str | None:
    """`api_key` without surrounding whitespace; RemoteError for one that is no text, or blank (it was dropped
    without a word, and the server's refusal then said to pass one)."""
    if api_key is None:
        return None
    if not isinstance(api_key, str):
        raise RemoteError(f"api_key must be the key as text (a str), not {type(api_key).__name__}")
    if not api_key.strip():
        raise RemoteError("api_key is empty or blank: give the key itself (is the variable it came from set?), or "
                          "leave api_key out for a server that takes none")
    return api_key.strip()


def _trusted(verify: bool | str | os.PathLike[str] | ssl.SSLContext) -> bool | ssl.SSLContext:
    """httpx's `verify=` for `verify`: a CA bundle's path as an SSL context that trusts it (httpx 0.28 deprecates
    a path); RemoteError for what is no bool, no SSL context and no readable bundle of PEM certificates."""
    if isinstance(verify, bool | ssl.SSLContext):
        return verify
    if not isinstance(verify, str | os.PathLike):
        raise RemoteError(f"verify must be True, False, a CA bundle file's path or an ssl.SSLContext, "
                          f"not {verify!r}")
    path = os.path.expanduser(os.fspath(verify))
    try:
        return ssl.create_default_context(cafile=path)
    except (OSError, ValueError) as err:  # no such file, a folder, a file without a PEM certificate (ssl.SSLError)
        raise RemoteError(f"the CA bundle {path!r} cannot be used ({_one_line(err)}): give a PEM file "
                          "of the server's certificate or of the CA that signed it") from None


def _speaks_tls(host: str, port: int, timeout: float) -> bool:
    """Whether the server at `host`:`port` completes a TLS handshake within `timeout` s (its certificate unchecked: only
    whether it speaks TLS is asked, and nothing is sent after the handshake)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no CA bundle loaded: nothing is checked
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1" if _localhost(host) else host, port), timeout=timeout) as sock, \
                context.wrap_socket(sock, server_hostname=host):
            return True
    except (OSError, ValueError):  # refused, reset, timed out, no TLS (ssl.SSLError is an OSError)
        return False


def _tls_failure(err: BaseException) -> ssl.SSLError | None:
    """The TLS error that `err` (an httpx.ConnectError) comes of, if any: a certificate refused, a handshake
    with a server that speaks no TLS."""
    cause: BaseException | None = err
    while cause is not None and not isinstance(cause, ssl.SSLError):
        cause = cause.__cause__ or cause.__context__
    return cause


def _error_text(body: Any) -> str:
    """The message in an error body (OpenAI, FastAPI and Ollama shapes), on one line; "" for none (null, true, {}:
    not "None" or "True"). Of `error`, `detail` and `message`, the first that says something is taken."""
    if isinstance(body, dict):
        fields = [body[key] for key in ("error", "detail", "message") if key in body]
        body = next((field for field in fields if _says(field)), fields[0] if fields else body)
    if isinstance(body, dict):
        body = body.get("message", body)
    return " ".join(str(body).split()) if _says(body) else ""


def _says(value: Any) -> bool:
    """Whether an error's field says something: not null, true or false (a flag), "", {} or []."""
    return not (value is None or isinstance(value, bool) or value in ("", {}, []))


def _named(code: int) -> str:
    """`HTTP 503 Service Unavailable`: the status with HTTP's name for it (the number alone where it has none)."""
    return f"HTTP {code} {httpx.codes.get_reason_phrase(code)}".rstrip()


def _status(response: httpx.Response, text: str) -> str:
    """`HTTP 503: text`, or `HTTP 503 Service Unavailable, without a message` where the body said nothing."""
    return f"HTTP {response.status_code}: {text}" if text else f"{_named(response.status_code)}, without a message"


def _loads(text: str | bytes) -> Any:
    """`text` parsed as JSON; ValueError also for JSON nested too deep for Python's parser (a hostile `[[[[...`,
    which json raises as RecursionError)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _server_message(response: httpx.Response) -> str:
    """The error text a server put in its response body (read with `_capped`), on one line; of an HTML error
    page (a proxy's "502 Bad Gateway"; its type in any case, or a page that starts as one: sent as text/plain), its
    text."""
    try:
        return _error_text(_loads(response.content))
    except ValueError:
        text = response.content.decode("utf-8", "replace")  # not its charset=: that may name any codec (rot13, zlib)
        if "html" in response.headers.get("content-type", "").lower() or _HTML_START.match(text):
            return _page_words(text)
        return " ".join(text.split())
    except httpx.ResponseNotRead:  # the body broke off: the status says enough
        return "(the response body broke off)"


def _page_words(page: str) -> str:
    """The words of an HTML page's start (`_PAGE` characters), its markup left out and entities read, on one line; of
    a page cut there, the word the cut goes through is left out (of a key the server quoted, its first letters)."""
    words = html.unescape(_MARKUP.sub(" ", page[:_PAGE])).split()
    return " ".join(words[:-1] if len(page) >= _PAGE else words)


def _json_type(value: Any) -> str:
    """What `value`, parsed from JSON, is, as a message names it: "a string", "null" ..."""
    kinds = {bool: "true or false", str: "a string", int: "a number", float: "a number", list: "a list",
             dict: "an object"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


class _Choice(pydantic.BaseModel):
    """A completion chunk's choice as the engine reads it: its text, why it ended, and vLLM's stop token (or
    string); strict, so a number, a list or an object where text belongs is no text."""

    model_config = pydantic.ConfigDict(strict=True)
    text: str | None = None
    finish_reason: str | None = None
    stop_reason: Any = None

    @pydantic.model_validator(mode="before")
    @classmethod
    def _completion(cls, data: Any) -> Any:
        """A chat completion's choice (`delta`, `message`) is refused: its text would be lost, not read as ''."""
        if isinstance(data, dict) and "text" not in data and data.keys() & {"delta", "message"}:
            raise ValueError("holds a chat completion's delta or message, no text")
        return data

    @pydantic.field_validator("stop_reason", mode="plain")
    @classmethod
    def _stop_reason(cls, value: Any) -> int | str | None:
        """vLLM's stop token id, or the stop string, or null."""
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | str)):
            raise ValueError(f"should be a number, a string or null, not {_json_type(value)}")
        return value


class _Chunk(pydantic.BaseModel):
    """An OpenAI-style completion chunk's fields the engine reads (others, such as usage, are left unread)."""

    model_config = pydantic.ConfigDict(strict=True)
    choices: list[_Choice] | None = None


class _OllamaLine(pydantic.BaseModel):
    """One line of Ollama's /api/generate stream, its fields the engine reads."""

    model_config = pydantic.ConfigDict(strict=True)
    response: str = ""
    done: bool = False
    done_reason: str | None = None


_EXPECTED = {"string_type": "a string", "list_type": "a list", "model_type": "an object", "bool_type": "true or false"}


def _wrong(err: pydantic.ValidationError) -> str:
    """The first field `err` found of another shape in a chunk, in a few words: `choices should be a list, not a
    string`, `choices[0].text should be a string, not a number`."""
    first = err.errors(include_url=False)[0]
    path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"]).lstrip(".")
    if first["type"] == "value_error":
        return f"{path or 'the chunk'} {first['ctx']['error']}"
    expected = _EXPECTED.get(first["type"], first["msg"])
    return f"{path or 'the chunk'} should be {expected}, not {_json_type(first['input'])}"


class RemoteEngine:
    """Harmony tokens from a gpt-oss model on an OpenAI-compatible server (llama.cpp, vLLM, SGLang) or Ollama.

    `url` is the server root (`http://host:8000`, a trailing `/v1` is fine; `user:password@` is sent as basic
    auth, never shown). `api_key` (surrounding whitespace taken off) is sent as a bearer token; neither
    appears in the lab's errors, `url`, `name` or repr, even when the server quotes it; in the model's text one of
    12+ characters is hidden (a server quoted it), a shorter one left (a word that is also the password).
    `verify` checks an https server's certificate: True against the usual CAs, a CA bundle file's path (a self-signed or private CA's server), False
    (not checked), or an `ssl.SSLContext` (a client certificate). `model=None` takes the server's only model.
    Connection errors are retried `retries` times (waiting at most `_MAX_WAITING` s in all); `timeout` (seconds)
    is the longest a server may keep a request waiting: connecting, headers and a whole answer that is no stream in
    all, and a stream's first text, then each next text (a long answer that keeps coming is never cut).
    Construction checks the server and the model name, so a wrong URL or name fails at `Session.connect`, not at
    the first question (a name is taken unchecked where the server lists more models than the lab reads).
    `prompt_as` says how prompts travel: "ids", or "text" (`inert_text`) for Ollama and for a server
    that refused its first token-id prompt but took the same prompt as text.
    """

    constrains = False  # a logits processor (constrained output) cannot run on the server: Session refuses it up front

    def __init__(
        self,
        url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        retries: int = 2,
        verify: bool | str | os.PathLike[str] | ssl.SSLContext = True,
    ) -> None:
        if not (isinstance(timeout, int | float) and not isinstance(timeout, bool) and 0 < timeout <= _LONGEST_WAIT):
            raise RemoteError(f"timeout must be a number of seconds above 0, at most {_LONGEST_WAIT} (a day), "
                              f"not {timeout!r}")
        if not (isinstance(retries, int) and not isinstance(retries, bool) and 0 <= retries <= _MAX_RETRIES):
            raise RemoteError(f"retries must be a whole number from 0 to {_MAX_RETRIES}, not {retries!r}")
        parsed = _base_url(url)
        site = parsed.copy_with(username=None, password=None)
        root = str(site)
        self.url = shown_url(root)   # as every message and status line shows it
        # a URL typed without a port goes to 80 (443): where nothing answers there, the servers' own ports are named
        self._unported = None if _TYPED_PORT.search(_typed_host(url)) else site
        self.timeout = timeout
        self.retries = retries
        api_key = _key_given(api_key)
        if api_key and not _HEADER_SAFE.fullmatch(api_key):
            raise RemoteError("api_key holds a character an HTTP header cannot carry (a line break, a non-ASCII "
                              "letter ...): check the value or variable it came from")
        if api_key and parsed.userinfo:
            raise RemoteError("give api_key or a user:password@ in the URL, not both: both go in the one "
                              "Authorization header")
        host = shown_url(parsed.host)  # a gateway's key may be a label of it
        if (api_key or parsed.userinfo) and parsed.scheme == "http" and not _loopback(parsed.host):
            secret = "API key" if api_key else "password"
            warnings.warn(f"the {secret} goes unencrypted over http:// to {host}: anyone on the way can read it; "
                          "use https:// unless the network is yours", RemoteWarning, stacklevel=2)
        if (api_key or parsed.userinfo) and verify is False and parsed.scheme == "https" \
                and not _loopback(parsed.host):
            secret = "API key" if api_key else "password"
            warnings.warn(f"the {secret} goes to {host} with its certificate unchecked (verify=False): anyone "
                          "on the way can pose as the server and read it; give its CA bundle instead (verify='ca.pem')",
                          RemoteWarning, stacklevel=2)
        # user:password@ as its Authorization header carries it, which a server or proxy may quote back
        basic = base64.b64encode(f"{parsed.username}:{parsed.password}".encode()).decode() if parsed.userinfo else None
        token = None if parsed.password else parsed.username  # `http://TOKEN@host`: the user name is the secret
        # hidden in what a server sent (`_quote`), never in the lab's own words: any length, a short one only where it
        # stands alone (not "***word" of "password")
        secrets = [s for s in (api_key, parsed.password, token, basic, *_url_keys(root)) if s]
        self._secrets = Secrets(secrets)
        self._quoted = Secrets(s for s in secrets if len(s) >= _QUOTED)  # hidden in the model's text too
        # what a 401 or 403 refused: a key given is to be checked, not passed again
        self._credential = "the API key given" if api_key else "the URL's user:password" if parsed.userinfo else None
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        auth = httpx.BasicAuth(parsed.username, parsed.password) if parsed.userinfo else None
        # a server on this machine never through a proxy of the environment (HTTP_PROXY): one elsewhere cannot reach
        # it, and the key would cross the network in plain text to it
        proxy = None if _loopback(parsed.host) else _env_proxy(parsed)
        # a connection error through that proxy is the proxy's: named, with what to check ("", None without one)
        self._proxied = f"{_proxy_named(parsed.scheme)} on the way to " if proxy else ""
        self._proxy_hint = f"; is the proxy running? Or name {host} in NO_PROXY" if proxy else None
        transport = _Transport(_trusted(verify), proxy)
        # where a plain http request is sent straight to the server, one that drops it may serve https only
        self._plain = (parsed.host, parsed.port or 80) if parsed.scheme == "http" and proxy is None else None
        self._client = httpx.Client(base_url=root, headers={**headers, "Accept-Encoding": "gzip, deflate"},
                                    auth=auth, timeout=httpx.Timeout(timeout), transport=transport,
                                    event_hooks={"response": [self._one_coding]})
        with self._cleaned():
            self.ollama = self._is_ollama()
            self.prompt_as = "text" if self.ollama else "ids"
            self._ids_accepted = False
            try:
                models = self.models()
            except _LongList:  # a gateway's: a model named is checked by the server at the first question
                if model is None:
                    raise
                models = [model]
            if not models:  # a fresh Ollama, nothing pulled: no model= could help
                raise RemoteError(f"the server at {self.url} serves no model: load a gpt-oss model on it first "
                                  f"(Ollama: ollama pull gpt-oss:20b; llama.cpp: llama-server -m MODEL.gguf); {_DOCS}")
            if model is None:
                if len(models) != 1:
                    raise RemoteError(f"the server at {self.url} serves {len(models)} models "
                                      f"({self._listed(models)}): choose one with model=... "
                                      "(%gptoss connect URL --model NAME)")
                model = models[0]
            elif model not in models and f"{model}:latest" not in models:  # Ollama's implied tag
                raise RemoteError(f"the server at {self.url} has no model {self._quote(model, None)!r}; "
                                  f"it serves: {self._listed(models)}")
        self.model = model
        # gpt-oss-tiny learned with earlier turns' tool calls in the prompt; it is served under the name the lab's
        # llama.cpp command gives it (gpt-oss is trained without them: see harmony.Renderer)
        self.keeps_past_tool_calls = model.split(":")[0] == "gpt-oss-tiny"
        # a server's choice: any length, lines, the key quoted, terminal controls (errors and reprs show the name)
        shown = visible(" ".join(self._quote(model, None).split()))
        self.name = shown if len(shown) <= _NAME else shown[: _NAME - 1] + "…"
        # gpt-oss's recommended sampling, so an unset value means the same on every server
        self.default_sampling = Sampling(temperature=1.0, top_p=1.0)

    # ------------------------------------------------------------ requests

    @contextlib.contextmanager
    def _cleaned(self) -> Iterator[None]:
        """RemoteErrors raised inside, as a user may see them: on one line, control characters written out. The key
        and password were hidden where server text entered the message (`_quote`), not in the lab's own words."""
        try:
            yield
        except RemoteError as err:
            raise RemoteError(visible(" ".join(str(err).split()))) from None

    def _quote(self, text: str, limit: int | None = 200) -> str:
        """What a server sent, to quote in a message: the key and password hidden, then cut to `limit` characters
        (in that order, so no cut leaves part of a key)."""
        return self._secrets.hide(text)[:limit]

    def _listed(self, names: list[str], shown: int = 10) -> str:
        """The first `shown` of the server's model names, quoted (`_quote`) and each cut to 80 characters, and how many
        more: a server may serve hundreds."""
        more = f", … ({len(names) - shown} more)" if len(names) > shown else ""
        return ", ".join(self._quote(name, 80) for name in names[:shown]) + more

    def _said(self, err: BaseException) -> str:
        """`err` (httpx's or ssl's, which may quote a server's status line, header or certificate) as "Name: message"
        on one line, quoted as `_quote` quotes what a server sent; `_one_coding`'s own words as they are."""
        if isinstance(err, _Compressed):
            return " ".join(f"DecodingError: {err}".split())
        return self._quote(_one_line(err), None)

    def _one_coding(self, response: httpx.Response) -> None:
        """httpx's response hook: DecodingError for a body compressed more than once, or otherwise than gzip or
        deflate (whose one layer expands a network read at most about 1,000-fold). httpx expands each read whole,
        layer by layer: `gzip, gzip` of under a kilobyte made hundreds of MiB before `_capped` or `_Reads` saw the
        first byte. The codings the server named are quoted as it wrote them (`_quote`: a key in any case)."""
        codings = [coding.strip() for value in response.headers.get_list("content-encoding")
                   for coding in value.split(",") if coding.strip().lower() not in ("", "identity")]
        if len(codings) > 1 or not {coding.lower() for coding in codings} <= {"gzip", "deflate"}:
            raise _Compressed(f"its body is compressed as {self._quote(', '.join(codings), None)}: one gzip or "
                              "deflate is read, no more", request=response.request)

    def _get(self, path: str) -> httpx.Response:
        """GET `path` with retries on connection errors, at most `_MAX_BODY` bytes of its body read."""
        return self._retrying(lambda hook: _capped(
            self._client.send(self._client.build_request("GET", path, extensions=hook), stream=True)))

    def _retrying(self, call: Callable[[dict[str, Any]], httpx.Response],
                  aborted: threading.Event | None = None) -> httpx.Response:
        """`_tries` of `call`, counted on a progress bar that shows once they take `_SHOWN_AFTER` s (a connect that
        retried for half a minute sat silent until its one-line error)."""
        from ..widgets import text_bar

        with text_bar(total=_most_tries(self.retries), delay=_SHOWN_AFTER, mininterval=0, miniters=1, leave=False,
                      bar_format="{desc}: {n} of {total} tries failed [{elapsed}]") as bar:
            return self._tries(call, aborted or threading.Event(), bar)

    def _tries(self, call: Callable[[dict[str, Any]], httpx.Response], aborted: threading.Event,
               bar: Any) -> httpx.Response:
        """`call(extensions)`, retried on connection errors (for at most `_MAX_WAITING` s of waits); its failures
        as one-line RemoteErrors. The request that `call` sends carries the extensions: a `_Clock`, which ends it
        when the server is silent for `timeout` s, or at once when `aborted` is set; a response handed on open (a
        stream) keeps it running for its reader (`_chunks`) to stop."""
        late = f"the server at {self.url} did not answer within {self.timeout:g} s (timeout=...)"
        waited = 0.0
        for attempt in range(self.retries + 1):
            if aborted.is_set():
                raise RemoteError("stopped")  # the reader gave up: no one sees this
            clock = _Clock(self.timeout, aborted)
            response = None
            try:
                response = call({"trace": clock})
                if clock.expired:  # a body without a length, ended by the clock's shutting its connection: cut short
                    response.close()
                    raise RemoteError(late)
                return response
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as err:
                if clock.expired:
                    raise RemoteError(late) from None
                tls = _tls_failure(err)  # no retry mends it
                if isinstance(tls, ssl.SSLCertVerificationError) and tls.verify_code == _HOSTNAME_MISMATCH:
                    raise RemoteError(  # a CA bundle cannot mend this one: the certificate is another name's
                        f"the server at {self.url} has a TLS certificate for another name "
                        f"({self._quote(tls.verify_message, None)}): "
                        "connect with a name the certificate gives (or verify=False, --insecure, to not check it)"
                    ) from None
                if isinstance(tls, ssl.SSLCertVerificationError):
                    raise RemoteError(
                        f"the server at {self.url} has a TLS certificate this machine does not trust "
                        f"({self._quote(tls.verify_message or tls.reason, None)}): give its CA bundle with "
                        "verify='ca.pem' (%gptoss connect --ca-bundle PATH), or verify=False (--insecure) to not check "
                        "it") from None
                if type(tls) is ssl.SSLError:  # its subclasses: a connection closed mid-handshake, maybe for now
                    plain = ": it answers in plain http, so write its URL with http://" \
                        if tls.reason in _PLAIN_HTTP else ""
                    raise RemoteError(f"the TLS handshake with the server at {self.url} failed "
                                      f"({self._said(tls)}){plain}") from None
                if isinstance(err, httpx.ReadError | httpx.RemoteProtocolError) and self._plain \
                        and _speaks_tls(*self._plain, min(self.timeout, 5.0)):  # no retry mends it either
                    raise RemoteError(f"the server at {self.url} closed a plain http request without an answer, and "
                                      "it answers in https: write its URL with https://") from None
                if isinstance(err, httpx.RemoteProtocolError) and not str(err).startswith(_DROPPED):  # no retry mends
                    raise RemoteError(f"the server at {self.url} sent an answer that cannot be read "
                                      f"({self._said(err)}): is it the inference server's address and port?") from None
                pause = min(0.5 * 2**attempt, _MAX_WAIT)
                if attempt == self.retries or waited + pause > _MAX_WAITING:
                    capped = f"; retries stop after {_MAX_WAITING:g} s of waiting" if attempt < self.retries else ""
                    tried = f"(tried {attempt + 1} time{'s' * bool(attempt)}{capped})"
                    if isinstance(err, httpx.ConnectError):
                        check = self._port_hint(err) or self._proxy_hint or "; is it running?"
                        raise RemoteError(f"cannot reach {self._proxied}the gpt-oss server at {self.url} "
                                          f"({self._said(err)}){check} {tried}") from None
                    # it connected, then dropped the request, or an answer short of its Content-Length
                    raise RemoteError(f"the server at {self.url} dropped the connection before a whole answer "
                                      f"({self._said(err)}); is it running, and is it the inference "
                                      f"server's address? {tried}") from None
                # what is retried, as the line after the last try says it
                bar.set_description_str(f"Cannot reach {self.url} yet ({type(err).__name__})"
                                        if isinstance(err, httpx.ConnectError) else
                                        f"The server at {self.url} dropped the connection before a whole answer "
                                        f"({type(err).__name__}), asking again", refresh=False)
                bar.update()
                aborted.wait(pause)
                waited += pause
            except httpx.ConnectTimeout as err:  # not retried: each try would wait the whole timeout again
                check = self._port_hint(err) or self._proxy_hint or "; is the address right, and is it running?"
                raise RemoteError(f"cannot reach {self._proxied}the gpt-oss server at {self.url}: no connection "
                                  f"within {self.timeout:g} s (timeout=...){check}") from None
            except httpx.TimeoutException:
                raise RemoteError(late) from None
            except httpx.HTTPError as err:  # a body that cannot be decoded, a redirect loop ...
                raise RemoteError(f"the server at {self.url} sent an answer that cannot be read "
                                  f"({self._said(err)})") from None
            finally:
                if response is None or response.is_closed:  # else a stream, handed on open
                    clock.stop()

    def _port_hint(self, err: httpx.HTTPError) -> str:
        """For a URL typed without a port, where nothing took the connection (refused, or no answer): the port it went
        to, and the inference servers' own ports ("" for another failure: a name that cannot be looked up)."""
        refused = isinstance(err.__cause__, _Refused)
        if self._unported is None or self._proxied or not (refused or isinstance(err, httpx.ConnectTimeout)):
            return ""
        on = "nothing listens on" if refused else "nothing answered on"
        port = 80 if self._unported.scheme == "http" else 443
        example = shown_url(str(self._unported.copy_with(port=8080)))
        return f": {on} port {port}, where a URL without a port goes; {_SERVER_PORTS}: write it like {example}"

    def _raise_for(self, response: httpx.Response, path: str, after: str = "") -> None:
        """RemoteError for a `response` to `path` that is no success (a redirect, an HTTP error, a 304 ...); `after` is
        said after an HTTP error's status and text (the tries a busy server was given, what to check)."""
        if response.has_redirect_location:  # not followed: the key would go along to wherever it points
            location = self._quote(response.headers["location"])
            raise RemoteError(f"the server at {self.url} redirects {path} to {location!r} "
                              "(redirects are not followed): connect to the inference server's own address")
        if response.is_success:
            return
        if response.status_code in (401, 403):
            hint = f"{self._credential} was refused: check it (is it this server's?)" if self._credential else \
                "pass api_key=... (or %gptoss connect --api-key-env VAR)"
            raise RemoteError(f"the server at {self.url} refused the request "
                              f"({_status(response, self._quote(_server_message(response)))}); {hint}")
        retry = f" (Retry-After: {self._quote(response.headers['retry-after'], 40)})" \
            if "retry-after" in response.headers else ""
        raise RemoteError(f"the server at {self.url} answered {path} with "
                          f"{_status(response, self._quote(_server_message(response)))}{retry}{after}")

    def _is_ollama(self) -> bool:
        """Whether /api/version answers as Ollama's does: a JSON object with a version (a string or list that holds
        the word, as another server may answer, is not one)."""
        response = self._get("/api/version")
        try:
            body = _loads(response.content)
        except ValueError:  # not JSON
            return False
        return response.status_code == 200 and isinstance(body, dict) and "version" in body

    def models(self) -> list[str]:
        """The model names the server serves; `_LongList` for a list longer than the lab reads (`_MAX_BODY`). A name
        that is no text (null, a number, an object) is refused: it was sent back as Python wrote it ("None")."""
        path, listing, key = ("/api/tags", "models", "name") if self.ollama else ("/v1/models", "data", "id")
        with self._cleaned():
            response = self._get(path)
            # a 404: a web server of another kind on that port (python -m http.server, on 8000 too), or not the root
            self._raise_for(response, path, f": {_WHICH_SERVER}, and the URL its root? {_DOCS}"
                            if response.status_code == 404 else "")
        if len(response.content) >= _MAX_BODY and response.content.lstrip().startswith(b"{"):  # a JSON object cut
            raise _LongList(f"the server at {self.url} lists its models in more than {_MAX_BODY >> 20} MiB, more "
                            "than the lab reads: name the model with model=... (%gptoss connect URL --model NAME)")
        with self._cleaned():
            try:
                names = [model[key] for model in _loads(response.content)[listing]]
            except (ValueError, TypeError, KeyError, IndexError):  # not JSON, or JSON of another shape
                names = None
            if names is None or not all(isinstance(name, str) and name for name in names):
                raise RemoteError(f"the server at {self.url} answered {path} with no list of models "
                                  f"({self._quote(_server_message(response), 80)!r}): {_WHICH_SERVER}? {_DOCS}")
            return names

    # ------------------------------------------------------------ generation

    def _body(self, prompt: Sequence[int], stop: Collection[int], sampling: Sampling) -> tuple[str, dict]:
        if self.ollama:
            options = {"num_predict": sampling.max_new_tokens, "temperature": sampling.temperature,
                       "top_p": sampling.top_p, "seed": sampling.seed, "repeat_penalty": 1.0, "top_k": 0}
            return "/api/generate", {"model": self.model, "prompt": inert_text(prompt), "raw": True, "stream": True,
                                     "options": {k: v for k, v in options.items() if v is not None}}
        body = {
            "model": self.model, "prompt": list(prompt) if self.prompt_as == "ids" else inert_text(prompt),
            "stream": True, "max_tokens": sampling.max_new_tokens,
            "temperature": sampling.temperature, "top_p": sampling.top_p, "seed": sampling.seed,
            # vLLM: keep special tokens in the text, stop on the Harmony stop ids and say which one stopped
            "skip_special_tokens": False, "spaces_between_special_tokens": False, "stop_token_ids": sorted(stop),
            # llama.cpp: no repetition penalty / top-k / min-p unless asked, as the local engine
            "repeat_penalty": 1.0, "top_k": 0, "min_p": 0.0,
        }
        return "/v1/completions", {k: v for k, v in body.items() if v is not None}

    def _send(self, prompt: Sequence[int], stop: Collection[int], sampling: Sampling,
              aborted: threading.Event) -> httpx.Response:
        """The streaming response to one completion request, its body read when it is an HTTP error. A busy
        server (HTTP 429, 503 ...) is asked again `retries` times, after its Retry-After when that is short, for at
        most `_MAX_WAITING` s of waits; `aborted` ends a wait at once."""
        path, body = self._body(prompt, stop, sampling)
        waited = 0.0
        for attempt in range(self.retries + 1):
            response = self._retrying(lambda hook: self._error_read(self._client.send(
                self._client.build_request("POST", path, json=body, extensions=hook), stream=True)), aborted)
            wait = _retry_wait(response, attempt)
            if response.status_code not in _BUSY or attempt == self.retries or wait is None:
                return response
            if waited + wait > _MAX_WAITING:
                self._raise_for(response, path, f" (asked {attempt + 1} times; retries stop after "
                                                 f"{_MAX_WAITING:g} s of waiting)")
            if aborted.wait(wait):
                return response
            waited += wait
        return response

    def _error_read(self, response: httpx.Response) -> httpx.Response:
        """`response`, its body read (`_capped`) when it is no success (an HTTP error, a redirect, a 304 ...)."""
        if not response.is_success:
            with contextlib.suppress(httpx.HTTPError):  # a body that broke off: reported by its status alone
                response = _capped(response)
            response.close()
        return response

    def _open(self, prompt: Sequence[int], stop: Collection[int], sampling: Sampling,
              aborted: threading.Event) -> httpx.Response:
        """The streaming response. Until a token-id prompt has been accepted once, an HTTP error to one
        is answered by asking again with `inert_text` (llama-cpp-python's server answers a list prompt
        with HTTP 500); when that works, prompts are sent as text from then on."""
        response = self._send(prompt, stop, sampling, aborted)
        refused = response.status_code >= 400 and response.status_code not in _BUSY | {401, 403}
        if self.prompt_as == "ids" and not self._ids_accepted and refused:
            self.prompt_as = "text"
            response = self._send(prompt, stop, sampling, aborted)
            if response.status_code >= 400:  # refused for another reason: keep sending ids, say why
                self.prompt_as = "ids"
        self._ids_accepted |= self.prompt_as == "ids" and response.status_code < 400
        self._raise_for(response, "/api/generate" if self.ollama else "/v1/completions")
        return response

    def _json(self, line: str) -> Any:
        """`line` of the stream parsed (its shape is `_chunk`'s to check); RemoteError for one that is no JSON, or
        that is an error the server streamed."""
        try:
            data = _loads(line)
        except ValueError:
            raise RemoteError(f"the server at {self.url} sent something that is not a completion stream (no JSON): "
                              f"{self._quote(line, 120)!r}") from None
        # some send "error": null (false, {}) in every chunk
        if isinstance(data, dict) and (data.get("error") or data.get("object") == "error"):
            raise self._stopped(data)
        return data

    def _stopped(self, body: Any) -> RemoteError:
        """The one-line RemoteError for an error the server streamed (`body`: its JSON, or its text; a page's words
        without its markup: an `event: error` of a proxy's HTML page was quoted tags and all)."""
        text = _page_words(body) if isinstance(body, str) and _HTML_START.match(body) else _error_text(body)
        text = self._quote(text)
        return RemoteError(f"the server at {self.url} stopped with an error" + (f": {text}" if text else
                                                                                 ", without a message"))

    def _events(self, response: httpx.Response) -> Iterator[Any]:
        """The stream's JSON chunks (server-sent events, read by httpx-sse, or Ollama's NDJSON lines); of the events,
        only unnamed (`message`) ones carry chunks, an `error` one is the server's error, others are passed over; a JSON body
        (a server that ignored `stream: true`) is one chunk. Running out before the server said it was done (`[DONE]`, a
        finish reason, Ollama's `done`) is a RemoteError."""
        whole = not self.ollama and bool(_JSON_TYPE.fullmatch(response.headers.get("content-type", "")))
        reads = _Reads(response, RemoteError(
            f"the server at {self.url} sent {_MAX_BODY >> 20} MiB without ending an event or line: "
            "that is no completion stream"), events=not (self.ollama or whole),
            passed_over=lambda line: self._passed_over(line, reads))
        if whole:  # a server that ignored `stream: true`: its whole completion, read as one chunk
            yield self._json("".join(reads.iter_text()))
            raise RemoteError(f"the server at {self.url} answered with a whole completion (no stream) that does not "
                              "say it is done (no finish_reason)")
        if self.ollama:
            pieces: list[str] = []  # the line so far: joined once it ends (joined and split at every read of a
            texts = reads.iter_text()  # long line, 2 MB cost 9 s); lines end at "\n" only (JSON may hold U+2028)
            try:
                for text in texts:
                    *ends, rest = text.split("\n")
                    if ends:
                        done = ["".join([*pieces, ends[0]]), *ends[1:]]
                        pieces = [rest]
                        reads.unended = len(rest)
                        yield from (self._json(item) for item in done if item.strip())
                    else:
                        pieces.append(rest)
                line = "".join(pieces)
                if line.strip():
                    yield self._json(line)
            except RemoteError:
                if reads.head.lstrip().startswith("<"):  # no JSON line starts so: a page (a login, a proxy's)
                    raise self._page(reads, texts) from None
                raise
        else:
            heard = False  # any event at all: a body without one that starts with `<` is a page (a login, a proxy's)
            try:
                for event in EventSource(reads).iter_sse():  # type: ignore[arg-type]
                    heard = True
                    if event.event == "error":  # `event: error`, or llama.cpp's `error: {...}` line (see _Reads)
                        try:
                            body = _loads(event.data)
                        except ValueError:
                            body = event.data
                        raise self._stopped(body)
                    if event.event != "message":  # a named event (ping, keep-alive): completion chunks are unnamed
                        continue
                    if event.data.strip() == "[DONE]":
                        return
                    if event.data.strip():  # a blank one (`data:  `) is a keep-alive, as a comment is
                        yield self._json(event.data)
            except SSEError:
                kind = response.headers.get("content-type")
                said = f"Content-Type: {self._quote(kind)!r}" if kind else "no Content-Type"
                if response.status_code != 200:  # a 204 No Content, a 206 ...
                    said = f"{_named(response.status_code)}, {said}"
                raise RemoteError(f"the server at {self.url} did not answer with an event stream ({said})") from None
            sent = [line for line in reads.head.splitlines() if line.strip() and not line.startswith(":")]
            if not heard and sent and len(reads.head) < _PAGE and _cut_json(sent):  # the body ended inside it
                raise RemoteError(f"the server at {self.url} cut its answer short, inside its first event: "
                                  f"{self._quote(sent[-1], 120)!r}")
            if not heard and sent:  # text, but no event (a page, lines never ended by a blank one)
                raise self._passed_over(sent[0], reads)
        raise RemoteError(f"the server at {self.url} closed the stream mid-answer (it never said it was done)")

    def _passed_over(self, line: str, reads: _Reads) -> RemoteError:
        """The one-line RemoteError for a `line` of an event stream that SSE passes over (it names no field SSE knows):
        the turn waited the whole timeout, then said the server "sent nothing". A page (a login's, a proxy's) is named
        by its title, bare JSON as such, other text (UTF-16, `Data:`) quoted."""
        if reads.head.lstrip().startswith("<"):  # no event starts so
            return self._page(reads, iter(()))
        if line[:1] in ("{", "["):
            return RemoteError(f"the server at {self.url} sent a line of JSON without the `data: ` a server-sent event "
                               f"starts with (it would be passed over): {self._quote(line, 120)!r}; is it an "
                               f"OpenAI-compatible server? {_DOCS}")
        return RemoteError(f"the server at {self.url} sent no server-sent event (`data: ` lines, then a blank one; in "
                           f"UTF-8): {self._quote(line, 120)!r}; is it an OpenAI-compatible server? {_DOCS}")

    def _page(self, reads: _Reads, texts: Iterator[str]) -> RemoteError:
        """The one-line RemoteError for a body that is an HTML page, not a stream: its title (or first words), the rest
        of its start read from `texts` until it holds the title or `_PAGE` characters."""
        for _ in texts:
            if len(reads.head) >= _PAGE or _TITLE.search(reads.head):
                break
        title = _TITLE.search(reads.head)
        return RemoteError(f"the server at {self.url} answered with a page, not a completion stream: "
                           f"{self._quote(_page_words(title[1] if title else reads.head), 120)!r}; is it the "
                           "inference server's address, and does a proxy or login stand in front of it?")

    def _chunks(self, response: httpx.Response) -> Iterator[tuple[str, str | None, Any]]:
        """(text, finish_reason, stop_reason) for each streamed chunk; every failure a one-line RemoteError.
        The request's `_Clock` (its trace hook) hears each chunk with text or a finish: `timeout` seconds without
        one, from the request's start or the last text, is a stall, whatever came meanwhile (keep-alive comments,
        chunks without text, bytes that make no text yet); a long answer that keeps coming is never cut."""
        clock: _Clock = response.request.extensions["trace"]
        silent = f"the server at {self.url} sent nothing for {self.timeout:g} s (timeout=...)"
        half = ""  # a surrogate pair's first half that ended the last chunk's text (JSON's `"\ud83d"`, `"\ude80"`)
        try:
            try:
                for data in self._events(response):
                    text, finish, stop_reason = self._chunk(data)
                    if text or finish:
                        clock.heard()
                    text, half = _paired(half + text, ended=finish is not None)
                    yield text, finish, stop_reason
            except httpx.TimeoutException:
                raise RemoteError(silent) from None
            except httpx.DecodingError as err:
                raise RemoteError(f"the server at {self.url} sent a body that cannot be decoded "
                                  f"({self._said(err)})") from None
            except (httpx.TransportError, httpx.StreamError) as err:
                raise RemoteError(f"the connection to {self.url} broke mid-answer ({self._said(err)})") from None
        except RemoteError:
            if clock.expired:  # the clock shut the connection: what broke or ended the stream is its doing
                raise RemoteError(silent) from None
            raise
        finally:
            clock.stop()

    def _chunk(self, data: Any) -> tuple[str, str | None, Any]:
        """(text, finish_reason, stop_reason) of one streamed JSON chunk; RemoteError naming what is of another shape."""
        try:
            if self.ollama:
                line = _OllamaLine.model_validate(data)
                return line.response, (line.done_reason or "stop") if line.done else None, None
            choices = _Chunk.model_validate(data).choices  # a chunk without choices (usage, keep-alive): no text
        except pydantic.ValidationError as err:
            raise RemoteError(f"the server at {self.url} sent something that is not a completion stream "
                              f"({_wrong(err)}): {self._quote(json.dumps(data), 120)!r}") from None
        choice = choices[0] if choices else _Choice()
        return choice.text or "", choice.finish_reason, choice.stop_reason

    def stream(
        self,
        prompt: Sequence[int],
        *,
        stop: Collection[int],
        sampling: Sampling = Sampling(),
        recorder: Any = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Iterator[int]:
        """Generated Harmony ids as the server streams them; routing is not visible remotely. The server is
        read on a helper thread, so `should_stop()` (the view's Stop button) is asked every 0.1 s while it is
        silent, before its headers or mid-answer; when it says yes the stream ends where it is."""
        if sampling.logits_processor is not None:
            raise RemoteError(
                "a remote server cannot apply this session's logits processor (constrained output); use a local engine")
        sampling = sampling.with_defaults(self.default_sampling)
        should_stop = should_stop or (lambda: False)
        reader = _Reader(lambda aborted: self._open(prompt, stop, sampling, aborted), self._chunks)
        # the key and echo checks hold text back on this thread, not the reading one (which Stop and Ctrl-C
        # abandon): what they hold goes out at every end, as the retokenizer's pieces do
        chunks = self._unechoed(self._unkeyed(reader.chunks(should_stop)), prompt)
        try:
            with self._cleaned():
                yield from self._tokens(chunks, stop, sampling.max_new_tokens, should_stop)
        finally:
            reader.abort()

    def _unkeyed(self, chunks: Iterator[tuple[str, str | None, Any]]) -> Iterator[tuple[str, str | None, Any]]:
        """`chunks` with a key or password of `_QUOTED`+ characters hidden in their text: a server that writes one
        into the answer would have the chat view, the transcript and the saved notebook keep it. A shorter one (a
        word: `hunter22`) is left, as blanking it would change the model's words. Text that could be the start of
        one is held until the next chunk tells, or the stream ends (a failure, Stop or Ctrl-C included)."""
        held = ""
        try:
            for text, finish, stop_reason in chunks:
                text = self._quoted.hide(held + text)
                cut = len(text) - (0 if finish else _secret_start(text, self._quoted.forms))
                text, held = text[:cut], text[cut:]
                yield text, finish, stop_reason
        except (RemoteError, KeyboardInterrupt):  # what arrived before a failure or Ctrl-C still goes out
            if held:
                yield held, None, None
            raise
        if held:
            yield held, None, None

    def _unechoed(self, chunks: Iterator[tuple[str, str | None, Any]],
                  prompt: Sequence[int]) -> Iterator[tuple[str, str | None, Any]]:
        """`chunks`, or a one-line RemoteError when their text starts with the prompt: a server (or proxy) with
        `echo` on streams the prompt back before the completion. The first chunks are held while their text
        could still be the start of the prompt (a real answer leaves it within a few characters). Zero-width
        joiners are left out of the comparison, so the `inert_text` a text-only server got matches too; at most
        2 x `_ECHO` characters are held with them (a stream of joiners alone held the turn as long as it lasted)."""
        head = harmony.decode(prompt).replace(_JOINER, "")[:_ECHO]
        held: list[tuple[str, str | None, Any]] = []
        text, raw = "", 0
        try:
            for chunk in chunks:
                held.append(chunk)
                text, raw = text + chunk[0].replace(_JOINER, ""), raw + len(chunk[0])
                if chunk[1] or len(text) >= len(head) or not head.startswith(text) or raw >= 2 * _ECHO:
                    break
        except (RemoteError, KeyboardInterrupt):  # what arrived before a failure or Ctrl-C still goes out
            yield from held
            raise
        if head and text.startswith(head):
            raise RemoteError(f"the server at {self.url} echoes the prompt before its answer (its streamed text "
                              f"starts with the prompt): turn `echo` off on the server or its proxy; {_DOCS}")
        yield from held
        yield from chunks

    def _tokens(self, chunks: Iterator[tuple[str, str | None, Any]], stop: Collection[int],
                limit: int, should_stop: Callable[[], bool]) -> Iterator[int]:
        """The ids of `chunks`' text, up to a stop token or `limit`; a text of megabytes (one event) is turned into ids
        `_SLICE` characters at a time, its ids given out and `should_stop()` asked between slices (a Stop took effect
        once all of it had been, seconds later, and the reply kept all of it)."""
        retok = harmony.Retokenizer()
        pending: list[int] = []  # held until the output has shown a Harmony marker
        count = seen = texts = 0  # texts: chunks with text, about one generated token each
        finish = stop_reason = None
        failure: RemoteError | KeyboardInterrupt | None = None
        overrun = False  # cut by its count of chunks: text that still fills max_tokens is a normal end at the limit
        most = harmony.longest_token() * limit  # characters `limit` tokens can hold: a token holds at most its bytes
        while True:
            try:
                text, finish, stop_reason = next(chunks)
            except StopIteration:
                break
            except (RemoteError, KeyboardInterrupt) as err:  # the ids received so far still go out, then the error
                failure = err
                break
            seen, texts = seen + len(text), texts + bool(text)
            beyond = seen - most
            if beyond > 0:  # more text than max_tokens ids can hold (one event of megabytes): what fits is kept
                pending += retok.feed(text[: len(text) - beyond])
                failure = RemoteError(f"the server at {self.url} sent more text than max_tokens={limit} can hold "
                                      f"({seen:,} characters; it ignores the limit): the answer is cut at the limit")
                break
            overrun = texts > _OVERRUN[0] * limit + _OVERRUN[1]
            if overrun:  # far past max_tokens, text still settling ("-----..."): the server ignores the limit
                failure = RemoteError(f"the server at {self.url} kept streaming past max_tokens={limit} "
                                      "(it ignores the limit)")
                break
            stopped = False
            for start in range(0, len(text), _SLICE):
                if start and should_stop():  # the rest of the text is left, as a stream ended at Stop leaves it
                    finish, stopped = None, True
                    break
                pending += retok.feed(text[start:start + _SLICE])
                if retok.harmony_seen:
                    out, done = _until_stop(pending, stop, limit - count)
                    yield from out
                    count, pending = count + len(out), []
                    if done:
                        return
            if finish or stopped:
                break
            if not retok.harmony_seen and seen > _SNIFF:
                self._stripped()
        pending += retok.flush()
        if failure is not None:
            out, done = _until_stop(pending, stop, limit - count) if retok.harmony_seen else ([], False)
            yield from out
            if not (done and overrun):  # the flushed text filled max_tokens: a normal end at the limit
                raise failure
            return
        if seen and not retok.harmony_seen:
            if finish is None:  # Stop ended the stream (a server's own end has a finish or is an error): nothing yet
                return
            self._stripped()
        if finish == "stop":  # the server stopped on a token it may not have printed
            pending += [stop_reason] if isinstance(stop_reason, int) and stop_reason in stop else retok.implied_stop()
        out, done = _until_stop(pending, stop, limit - count)
        yield from out
        # short of max_tokens by ids and by chunks (text settles into fewer ids than the server generated where the
        # model split a word otherwise): the server's own limit, its context full
        if finish == "length" and not done and texts < limit:
            raise RemoteError(
                f"the server at {self.url} stopped at its own length limit after about {count + len(out):,} tokens, "
                f"short of max_tokens={limit}: its context is full or it caps answers; start a new conversation "
                "(%gptoss reset), or give the server a larger context (llama.cpp -c, vLLM --max-model-len, "
                "Ollama num_ctx)")

    def _stripped(self) -> None:
        raise RemoteError(
            f"the server at {self.url} strips Harmony special tokens (its output has no <|channel|> or <|message|>; "
            "or the model is not a trained gpt-oss): "
            + ("use an Ollama version with raw mode for gpt-oss" if self.ollama else
               "vLLM needs skip_special_tokens=false (sent by the lab; check a proxy is not dropping it), "
               "llama.cpp needs a release that knows gpt-oss (August 2025 or later)")
            + f"; {_DOCS}"
        )

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()


def _paired(text: str, *, ended: bool) -> tuple[str, str]:
    """`text` with its UTF-16 surrogate pairs joined into their characters (JSON may write one as two escapes, each
    in an event of its own), and, unless the stream `ended`, a first half that ends it, held for the next chunk."""
    cut = len(text) - (not ended and "\ud800" <= text[-1:] <= "\udbff")
    return text[:cut].encode("utf-16", "surrogatepass").decode("utf-16", "surrogatepass"), text[cut:]


def _cut_json(lines: list[str]) -> bool:
    """Whether the data of `lines`, an event no blank line ended, is JSON cut short (`data: {"choices": [{`): a body
    that ended inside its event, not lines of whole JSON that a server never ended with a blank line."""
    data = [line[len("data:"):].removeprefix(" ") for line in lines if line.startswith("data:")]
    if not data or not data[0].lstrip().startswith(("{", "[")):
        return False
    for text in ("\n".join(data), data[-1]):   # one value over its lines, or each line one (a blank line missing)
        try:
            _loads(text)
        except ValueError:
            continue
        return False
    return True


def _secret_start(text: str, secrets: Sequence[str]) -> int:
    """How many characters at the end of `text` could begin one of `secrets` (the next text tells)."""
    return max((n for secret in secrets for n in range(1, min(len(secret), len(text) + 1))
                if text.endswith(secret[:n])), default=0)


def _one_line(err: Exception) -> str:
    """`err` as "Name: message" on one line."""
    return " ".join(f"{type(err).__name__}: {err}".split())


# what a non-blocking connect_ex answers while connecting (Windows: WSAEWOULDBLOCK)
_CONNECTING = {errno.EINPROGRESS, errno.EWOULDBLOCK, getattr(errno, "WSAEWOULDBLOCK", errno.EWOULDBLOCK)}
_connecting = threading.local()  # `aborted`: the Stop event of the request this thread connects for (`_Clock`)


class _Connector(httpcore.SyncBackend):
    """httpcore's sockets, with a TCP connect that Stop abandons within 0.1 s: `socket.create_connection` blocks,
    so a Stop while an address never answered (a firewall, a wrong host) left the reading thread connecting until
    the timeout, as a name lookup that hung did (`_lookup`). Stop is the event `_Clock` sets for this thread
    (httpcore connects on the request's thread)."""

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        aborted = getattr(_connecting, "aborted", None) or threading.Event()
        deadline = time.monotonic() + (timeout if timeout is not None else _LONGEST_WAIT)

        def waited() -> None:
            if aborted.is_set():
                raise httpcore.ConnectError("stopped")
            if time.monotonic() >= deadline:
                raise httpcore.ConnectTimeout("timed out")

        addresses = _lookup(host, port, waited)
        failure: OSError = OSError(f"no address for {host}")
        for family, kind, proto, _, address in addresses:  # as socket.create_connection: the first that connects
            sock = socket.socket(family, kind, proto)
            try:
                if local_address:
                    sock.bind((local_address, 0))
                sock.setblocking(False)
                code = sock.connect_ex(address)
                if code in _CONNECTING:
                    with selectors.DefaultSelector() as waiting:
                        waiting.register(sock, selectors.EVENT_WRITE)
                        while not waiting.select(0.1):
                            waited()
                    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    raise OSError(code, os.strerror(code))
                sock.settimeout(timeout)
                for option in socket_options or ():
                    sock.setsockopt(*option)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return SyncStream(sock)
            except OSError as err:
                sock.close()
                if not isinstance(failure, ConnectionRefusedError):  # a refusal says most: nothing listens there
                    failure = err
            except BaseException:
                sock.close()
                raise
        raise (_Refused if isinstance(failure, ConnectionRefusedError) else httpcore.ConnectError)(str(failure)) \
            from failure


class _Refused(httpcore.ConnectError):
    """`_Connector`'s ConnectError where the connection was refused: nothing listens on that port."""


class _Transport(httpx.BaseTransport):
    """httpx's transport on an httpcore pool that connects with `_Connector` (httpx.HTTPTransport takes no network
    backend), directly or through `proxy`; requests, responses and errors as httpx's own. No kept-alive connections:
    every request connects anew, so its `_Clock` sees the socket."""

    def __init__(self, verify: bool | ssl.SSLContext, proxy: httpcore.Proxy | None) -> None:
        self._pool = httpcore.ConnectionPool(ssl_context=httpx.create_ssl_context(verify=verify), proxy=proxy,
                                             max_keepalive_connections=0, network_backend=_Connector())

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """`request` sent through the pool: the response's headers read, its body a stream."""
        url = request.url
        sent = httpcore.Request(request.method, httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port,
                                                             target=url.raw_path),
                                headers=request.headers.raw, content=request.stream, extensions=request.extensions)
        with _httpx_errors():
            response = self._pool.handle_request(sent)
        return httpx.Response(response.status, headers=response.headers, stream=_Body(response.stream),
                              extensions=response.extensions)

    def close(self) -> None:
        """Close the pool's connections."""
        self._pool.close()


class _Body(httpx.SyncByteStream):
    """A response body as httpcore reads it, its errors raised as httpx's."""

    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        with _httpx_errors():
            yield from self._stream

    def close(self) -> None:
        """Close the body (and, with no keep-alive, its connection)."""
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


@contextlib.contextmanager
def _httpx_errors() -> Iterator[None]:
    """httpcore's errors raised as httpx's of the same name (ConnectError, ReadTimeout ...), as httpx does."""
    try:
        yield
    except Exception as err:
        kind = next((getattr(httpx, k.__name__) for k in type(err).__mro__
                     if k.__module__.startswith("httpcore") and hasattr(httpx, k.__name__)), None)
        if kind is None:
            raise
        raise kind(str(err)) from err


def _env_proxy(url: httpx.URL) -> httpcore.Proxy | None:
    """The proxy the environment names for `url` (HTTPS_PROXY or HTTP_PROXY by its scheme, else ALL_PROXY; none when
    NO_PROXY names its host), read as httpx reads them (urllib's `getproxies`: the system's settings on Windows and
    macOS). RemoteError, without the proxy's URL (it may hold a password), for one that cannot be used."""
    proxies = urllib.request.getproxies()
    named = proxies.get(url.scheme) or proxies.get("all")
    if not named or urllib.request.proxy_bypass_environment(url.host, proxies):
        return None
    where = _proxy_named(url.scheme)
    host = shown_url(url.host)  # a gateway's key may be a label of it
    try:
        proxy = httpx.Proxy(named if "://" in named else f"http://{named}")
    except (ValueError, httpx.InvalidURL):
        raise RemoteError(f"{where} is no http, https or socks5 URL: correct it, or name {host} in NO_PROXY") \
            from None
    if proxy.url.scheme.startswith("socks") and importlib.util.find_spec("socksio") is None:
        raise RemoteError(f"{where} is a SOCKS proxy, which needs the socksio package (pip install socksio), "
                          f"or name {host} in NO_PROXY")
    return httpcore.Proxy(str(proxy.url), auth=proxy.raw_auth, headers=proxy.headers.raw, ssl_context=proxy.ssl_context)


def _proxy_named(scheme: str) -> str:
    """The proxy the environment names for `scheme`, in words (never its URL: it may hold a password)."""
    return f"the proxy the environment names for {scheme}:// (HTTPS_PROXY, HTTP_PROXY or ALL_PROXY)"


def _lookup(host: str, port: int, waited: Callable[[], None]) -> list[tuple[Any, ...]]:
    """`socket.getaddrinfo` of `host`, looked up on a helper thread while `waited()` is called every 0.1 s (it raises
    at Stop or the timeout): the system resolver cannot be interrupted, so a lookup that hangs is left to end on its
    thread, not on the request's."""
    found: queue.Queue[list[tuple[Any, ...]] | Exception] = queue.Queue()
    names = ("127.0.0.1", "::1") if _localhost(host) else (host,)  # a name under .localhost is loopback (RFC 6761)

    def look() -> None:
        try:
            found.put([info for name in names for info in socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)])
        except Exception as err:  # noqa: BLE001 - raised on the request's thread, as a ConnectError
            found.put(err)

    try:
        ipaddress.ip_address(names[0])
        look()  # an address: nothing to wait for
    except ValueError:
        threading.Thread(target=look, daemon=True, name="gptoss-remote-lookup").start()
    while True:
        try:
            addresses = found.get(timeout=0.1)
        except queue.Empty:
            waited()
            continue
        if isinstance(addresses, Exception):
            raise httpcore.ConnectError(str(addresses)) from addresses
        return addresses


class _Clock:
    """httpx's `trace` hook for one request: it shuts the request's connection once `timeout` seconds passed without
    news from the server, counted from the start of connecting (the connect itself, a TLS handshake, headers and a
    body sent a byte at a time all count) and again from each `heard()` (new text of a stream), or as soon as
    `aborted` is set (Stop), until `stop()` (the request and its reading are over). httpx's timeout bounds each read,
    so a server sending a byte every second, or gzip's header (its file name has no end) held a request forever, and
    the headers' time came on top of the body's. `expired` says it timed out; while the request connects, it hands
    `aborted` to `_Connector` (whose own deadline is the same). It holds a duplicate of the connection's socket: TLS
    detaches the socket httpx connected, so shutting that one down did nothing to an https request."""

    def __init__(self, timeout: float, aborted: threading.Event) -> None:
        self.timeout, self.expired, self._aborted = timeout, False, aborted
        self._deadline = time.monotonic() + timeout
        self._done = threading.Event()

    def __call__(self, event: str, info: dict[str, Any]) -> None:
        if event == "connection.connect_tcp.started":
            self._deadline = time.monotonic() + self.timeout
            _connecting.aborted = self._aborted  # for `_Connector`, on this thread
        elif event == "connection.connect_tcp.failed":
            _connecting.aborted = None
        elif event == "connection.connect_tcp.complete":
            _connecting.aborted = None
            sock = info["return_value"].get_extra_info("socket").dup()
            threading.Thread(target=self._watch, args=(sock,), daemon=True, name="gptoss-remote-clock").start()

    def heard(self) -> None:
        """The server sent news (text of a stream): it has `timeout` seconds again."""
        self._deadline = time.monotonic() + self.timeout

    def _watch(self, sock: socket.socket) -> None:
        """Shut `sock` down once the request is aborted, or its time is up."""
        with sock:
            while not self._done.wait(0.1):
                if self._aborted.is_set() or time.monotonic() >= self._deadline:
                    self.expired = not self._aborted.is_set()
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                    return

    def stop(self) -> None:
        """The request is over, its answer read: the clock stops."""
        self._done.set()


class _Reads:
    """The response as httpx-sse reads it (its headers and text), raising `too_long` once `_MAX_BODY` characters
    came since an event stream's last blank line (an event's end; a flood of keep-alive comments, each ended, was said to
    be one unended event) or since the reader last set `unended` (an NDJSON line's end), so an endless line cannot fill
    memory; a byte order mark starting the stream is left out; its Content-Type in lower case (httpx-sse refused
    `Text/Event-Stream`, and a media type is case-insensitive). Of an event stream (`events`), whole lines are handed
    on, llama.cpp's `error: {...}` lines (a field SSE does not know, which httpx-sse drops) written as `event: error`
    events. `head` keeps the stream's first `_PAGE` characters (to say
    what a body that is no stream was). A line of an event stream that SSE passes over as a field it does not know
    (`{"choices": ...` without `data: `, UTF-16, a page) raises `passed_over(line)` as soon as its start shows it,
    before its line break (text that never breaks a line kept coming): the turn ended "closed mid-answer", or "sent
    nothing" after the whole timeout where the stream went on, as if the server had sent no text."""

    def __init__(self, response: httpx.Response, too_long: RemoteError, *, events: bool,
                 passed_over: Callable[[str], RemoteError]) -> None:
        self.headers = httpx.Headers({"content-type": response.headers.get("content-type", "").lower()})
        self._response, self._too_long, self._passed_over = response, too_long, passed_over
        response.encoding = "utf-8"  # as SSE and JSON are, whatever its charset= names (httpx would run any codec)
        self._events = events
        self._ended = ""  # the line end that ended the text handed on last (a blank line may start right after it)
        self.unended = 0
        self.head = ""

    def iter_text(self) -> Iterator[str]:
        held: list[str] = []  # an event stream's text after its last line break: a line whose start is not known
        line = ""  # the first `_FIELD` characters of that line: enough to tell whether SSE would pass it over
        start = True  # one U+FEFF (byte order mark) starting the stream is no text (the SSE standard's rule)
        for text in self._response.iter_text():
            if start and text:
                text, start = text.removeprefix("\ufeff"), False
            if len(self.head) < _PAGE:
                self.head += text[: _PAGE - len(self.head)]
            self.unended += len(text)
            if self.unended > _MAX_BODY:
                raise self._too_long
            if not self._events:
                yield text
                continue
            end = max(text.rfind("\n"), text.rfind("\r")) + 1
            if end:
                lines = "".join(held) + text[:end]
                ended = self._ended + lines
                blank = max(map(ended.rfind, _BLANK_LINE))  # a line end, then an empty line
                if blank >= 0:
                    self.unended = len(ended) - blank - 2 + len(text) - end
                self._ended = lines[-1]
                stray = _NOT_SSE.search(lines)
                yield _ERROR_FIELD.sub("event: error\ndata:", lines[: stray.start() if stray else None])
                if stray:  # after the events before it (their text is kept)
                    raise self._passed_over(stray[1])
                held, line = [], ""
            held.append(text[end:])
            line += text[end:end + _FIELD - len(line)]
            if not _FIELD_START.match(line, partial=True) and self._page_read():  # text with no line break,
                raise self._passed_over("".join(held))  # coming on: said at once, not as silence after the timeout
        if any(held):
            yield "".join(held)

    def _page_read(self) -> bool:
        """Whether enough of a body that starts as a page (`<`) is read to name it by its title; True for any other."""
        return not self.head.lstrip().startswith("<") or len(self.head) >= _PAGE or bool(_TITLE.search(self.head))


class _Reader:
    """One completion request read on a daemon thread, its chunks (or its RemoteError) handed over in order,
    so the caller can give up on a silent server at once: `abort()` shuts the socket, which wakes the
    thread from its read, and the thread closes the response; before the headers, `open_response` is given the
    event `abort()` sets (its `_Clock` then shuts the socket, and waits to ask a busy server again end).
    At most `_AHEAD` chunks, and about `_MAX_BODY` characters of text, wait to be taken: a server that streams
    faster than they are taken waits (TCP holds it back) instead of filling memory, also with chunks of
    megabytes each."""

    _END = object()
    _AHEAD = 1024

    def __init__(self, open_response: Callable[[threading.Event], httpx.Response],
                 read: Callable[[httpx.Response], Iterator[tuple[str, str | None, Any]]]) -> None:
        self._items: queue.Queue[Any] = queue.Queue(self._AHEAD)
        self._given = self._taken = 0  # characters of text handed over and taken (each written by one thread)
        self._aborted = threading.Event()
        self._response: httpx.Response | None = None
        self._thread = threading.Thread(target=self._run, args=(open_response, read), daemon=True,
                                        name="gptoss-remote-stream")
        self._thread.start()

    def _run(self, open_response: Callable[[threading.Event], httpx.Response],
             read: Callable[[httpx.Response], Iterator[tuple[str, str | None, Any]]]) -> None:
        response = None
        try:
            response = self._response = open_response(self._aborted)
            if self._aborted.is_set():
                return
            for chunk in read(response):
                if not self._put(chunk):
                    return
        except Exception as err:  # noqa: BLE001 - handed to the reading thread, which raises it there
            self._put(err)
        finally:
            if response is not None:
                response.close()
            self._put(self._END)

    def _put(self, item: Any) -> bool:
        """Hand `item` over once there is room; False (and nothing handed over) once aborted."""
        size = len(item[0]) if isinstance(item, tuple) else 0
        while not self._aborted.is_set():
            if self._given - self._taken >= _MAX_BODY:
                time.sleep(0.01)
                continue
            try:
                self._items.put(item, timeout=0.1)
            except queue.Full:
                continue
            self._given += size
            return True
        return False

    def chunks(self, should_stop: Callable[[], bool]) -> Iterator[tuple[str, str | None, Any]]:
        """The chunks as they come; ends quietly once `should_stop()` says yes, asked while waiting and at
        every chunk (a flood of text that gives no token yet would otherwise never let the caller ask)."""
        while True:
            try:
                item = self._items.get(timeout=0.1)
            except queue.Empty:
                if should_stop():
                    return
                continue
            if item is self._END or should_stop():
                return
            if isinstance(item, Exception):
                raise item
            self._taken += len(item[0])
            yield item

    def abort(self) -> None:
        """Stop reading: the thread ends at its next chunk, or within about 0.1 s if it waits on the server."""
        if not self._thread.is_alive():
            return
        self._aborted.set()
        stream = self._response.extensions.get("network_stream") if self._response is not None else None
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _capped(response: httpx.Response) -> httpx.Response:
    """`response` (opened with stream=True) with at most `_MAX_BODY` bytes of its decoded body read, then closed:
    a hostile or broken server (an endless body, a gzip bomb) cannot fill the kernel's memory; one that trickles it
    in is cut by the request's `_Clock`."""
    body = bytearray()
    try:
        for part in response.iter_bytes():
            body += part
            if len(body) >= _MAX_BODY:
                break
    finally:
        response.close()
    headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() != "content-encoding"]  # decoded
    return httpx.Response(response.status_code, headers=headers, content=bytes(body[:_MAX_BODY]),
                          request=response.request)


def _most_tries(retries: int) -> int:
    """The tries a request with `retries` makes at most on connection errors: its waits stop at `_MAX_WAITING`."""
    tries, waited = 1, 0.0
    while tries <= retries and waited + min(0.5 * 2 ** (tries - 1), _MAX_WAIT) <= _MAX_WAITING:
        waited += min(0.5 * 2 ** (tries - 1), _MAX_WAIT)
        tries += 1
    return tries


def _retry_wait(response: httpx.Response, attempt: int) -> float | None:
    """Seconds to wait before asking a busy server again: the back-off, or its Retry-After (seconds) when longer
    (a Retry-After of 0 had `retries=1000` ask a thousand times at once); None when it asks for more than
    `_MAX_WAIT`."""
    backoff = min(0.5 * 2**attempt, _MAX_WAIT)
    try:
        wait = float(response.headers.get("retry-after", backoff))
    except ValueError:  # an HTTP date: too far ahead to wait for in a notebook
        return None
    return max(wait, backoff) if wait <= _MAX_WAIT else None


def _until_stop(ids: list[int], stop: Collection[int], room: int) -> tuple[list[int], bool]:
    """The ids up to and including the first stop token, at most `room`; and whether generation is over."""
    for i, token in enumerate(ids[:room]):
        if token in stop:
            return ids[: i + 1], True
    return ids[:room], len(ids) >= room
