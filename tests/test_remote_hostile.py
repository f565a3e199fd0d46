"""RemoteEngine against servers (or URLs) that a hostile party controls or a user got wrong: what the user sees
stays one line, never shows a secret, and every turn ends with its Reply."""
from __future__ import annotations

import contextlib
import gzip
import json
import socket
import threading
import time
import urllib.parse

import pytest

from gptoss_lab import Session, harmony
from gptoss_lab.engines.checkpoint import LoadError
from gptoss_lab.engines.remote import RemoteEngine, RemoteError, shown_url
from gptoss_lab.guides import guide
from gptoss_lab.session import TurnError
from test_remote import HEAD, PROMPT, FakeServer, _event, _gzip_bomb, _status  # tests/ is on sys.path
from test_transcript import _Recorder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("password", ["zq/xk", "zq#xk", "zq?xk", "97531/xk", "zq@xk/zq"])
def test_a_url_password_with_an_unescaped_slash_hash_or_at_is_never_shown(password):
    # httpx ends the host at the password's `/`, `?` or `#`: it quoted a piece of it as a port, or, when that
    # piece was a number, connected to the user name as a host and showed the rest of the password as the path
    url = f"http://localhost:{password}@127.0.0.1:{_free_port()}"
    with pytest.raises(RemoteError) as caught:
        RemoteEngine(url, retries=0, timeout=2)
    message = str(caught.value)
    assert "zq" not in message and "xk" not in message and "97531" not in message
    assert "write / ? # @ in a password as %2F %3F %23 %40" in message


@pytest.mark.parametrize("url, shown", [
    ("http://gpu-box:8000/v1?api_key=sk-Zq81xLeaked", "'http://gpu-box:8000/v1?…' is not a server URL (it has a ?query "
                                                       "or #fragment); write it without them: http://gpu-box:8000/v1"),
    ("gpu-box:8000#sk-Zq81xLeaked", "'gpu-box:8000#…' is not a server URL (it has a ?query or #fragment); "
                                    "write it without them: http://gpu-box:8000"),
    # a web page's address pasted from the browser: the example named another port (8000)
    ("http://gpu-box:8080/#/chat/sk-Zq81xLeaked", "'http://gpu-box:8080/#…' is not a server URL (it has a ?query or "
                                                  "#fragment); write it without them: http://gpu-box:8080"),
    ("http://bob:4711#Zq81x@gpu-box:8000", "'http://gpu-box:8000' is not a server URL (it has a ?query or #fragment); "
                                           "write it like http://127.0.0.1:8000"),  # a URL of a password: no example
    ("http://gpu-box:80a?key=sk-Zq81xLeaked", "'http://gpu-box:80a?…' is not a server URL (Invalid port: '80a'); "
                                              "write it like http://127.0.0.1:8000"),
])
def test_a_key_in_a_urls_query_or_fragment_is_never_shown(url, shown):
    """A URL refused for its ?query (`?api_key=sk-...`, as some gateways take a key) was quoted whole: the key stayed
    in the saved notebook; `%gptoss load URL` ("a server's address, not a checkpoint") quoted it too."""
    with pytest.raises(RemoteError) as refused:
        RemoteEngine(url)
    with pytest.raises(LoadError) as loaded:
        Session.load(url if "://" in url else "http://" + url)
    assert str(refused.value) == shown
    assert "Zq81x" not in str(loaded.value) and str(loaded.value).startswith("http://gpu-box:80")


@pytest.mark.parametrize("typed", ["http:/127.0.0.1:{port}", "http//127.0.0.1:{port}", "HTTPS:/127.0.0.1:{port}",
                                   "http:127.0.0.1:{port}"])
def test_a_scheme_typed_without_its_colon_or_a_slash_is_refused_in_one_line(typed):
    """`http:/127.0.0.1:8000` (one slash) was read as the host `http`: it was looked up, three times, and the message
    named a server at `http://http/127.0.0.1:8000` that the user had never written."""
    url = typed.format(port=_free_port())
    with pytest.raises(RemoteError) as caught:
        RemoteEngine(url, retries=2, timeout=5)
    assert str(caught.value) == (f"{url!r} is not a server URL (write its scheme as http:// or https://: a colon, two "
                                 "slashes); write it like http://127.0.0.1:8000")


@pytest.mark.parametrize("answer", ["llama-server version b6100", ["version", "build"]])
def test_a_version_answer_that_is_no_object_is_not_taken_for_ollama(answer):
    """An OpenAI-compatible server whose /api/version answered a JSON string or list holding the word "version" was
    taken for Ollama ("version" in it, a substring or an item): connect then asked /api/tags and failed on its 404."""
    with FakeServer() as server:
        handler = server.httpd.RequestHandlerClass  # this server's own class (FakeServer defines it per server)
        served = handler.do_GET

        def do_get(self):
            return self._json(200, answer) if self.path == "/api/version" else served(self)

        handler.do_GET = do_get
        engine = RemoteEngine(server.url, retries=0)
    assert not engine.ollama and engine.model == "gpt-oss-test"


def test_a_percent_encoded_password_still_works():
    with FakeServer() as server:
        engine = RemoteEngine(server.url.replace("http://", "http://bob:se%2Fcret@"), retries=0)
        assert engine.url == server.url
        assert server.requests[-1][1]["Authorization"] == "Basic Ym9iOnNlL2NyZXQ="  # bob:se/cret


DEEP = b"[" * 100_000  # valid JSON's start, nested deeper than Python's json can parse (RecursionError)


@pytest.mark.parametrize("where", ["model list", "error body", "stream event"])
def test_json_nested_too_deep_is_a_one_line_remote_error(where):
    if where == "model list":
        with FakeServer(models_body=("application/json", DEEP)) as server:
            with pytest.raises(RemoteError, match=r"answered /v1/models with no list of models \('\[\[\["):
                RemoteEngine(server.url, retries=0)
        return
    raw = [_status(400, b"Bad Request", DEEP)] if where == "error body" else [HEAD, b"data: " + DEEP + b"\n\n"]
    with FakeServer(raw=lambda n: raw) as server:
        session = Session.connect(server.url, retries=0)
        reply = session.ask("hi")
        assert len(reply.errors) == 1 and "RecursionError" not in reply.errors[0]
        assert reply.errors[0].startswith(f"The turn failed: the server at {server.url} ")


def test_a_basic_auth_header_quoted_back_by_the_server_is_hidden():
    # a proxy that quotes the request's headers in its error holds the password as base64 (bob:hunter22)
    body = b'{"error": "bad header Authorization: Basic Ym9iOmh1bnRlcjIy"}'
    with FakeServer(raw=lambda n: [_status(500, b"Internal Server Error", body)]) as server:
        engine = RemoteEngine(server.url.replace("http://", "http://bob:hunter22@"), retries=0)
        with pytest.raises(RemoteError) as caught:
            list(engine.stream(PROMPT, stop=harmony.STOP_TOKENS))
    assert str(caught.value).endswith("bad header Authorization: Basic ***")


TRICKLE = [b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"] + [b"X-A: 1\r\n", 0.2] * 100  # 20 s of headers


def _trickling_server(items=TRICKLE) -> tuple[str, socket.socket]:
    """A server that answers every request with `items` (bytes sent, a float slept): by default headers that never
    end, a line every 0.2 s."""
    listener = socket.create_server(("127.0.0.1", 0))

    def answer(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.recv(65536)
            for item in items:
                time.sleep(item) if isinstance(item, float) else conn.sendall(item)

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                threading.Thread(target=answer, args=(listener.accept()[0],), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}", listener


def test_headers_trickled_in_cannot_hold_connect_past_the_timeout():
    url, listener = _trickling_server()
    with listener:
        started = time.monotonic()
        with pytest.raises(RemoteError) as caught:
            RemoteEngine(url, timeout=1)
    assert str(caught.value) == f"the server at {url} did not answer within 1 s (timeout=...)"
    assert time.monotonic() - started < 4


def test_headers_trickled_in_cannot_hold_a_turn_past_the_timeout():
    answer = [HEAD, _event("<|channel|>final<|message|>42<|return|>"), _event("", "stop"), b"data: [DONE]\n\n"]
    with FakeServer(raw=lambda n: TRICKLE if n == 1 else answer) as server:
        session = Session.connect(server.url, timeout=1)
        started = time.monotonic()
        reply = session.ask("6*7?")
        assert time.monotonic() - started < 4
        assert reply.errors == [f"The turn failed: the server at {server.url} did not answer within 1 s (timeout=...)"]
        assert session.ask("6*7?").final == "42"  # the conversation goes on


# 1.6 s of a 2 s timeout spent on headers, then a body that never brings text, a piece every 0.1 s for 10 s: each
# read got its own timeout and the body a new 2 s after the headers (3.6 s in all), or, for gzip's file name (which
# has no end, and decodes to nothing), no bound at all
SLOW_HEAD = [b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n"] + [b"X-A: 1\r\n", 0.2] * 8
GZIP_NAME = [b"Content-Encoding: gzip\r\n\r\n\x1f\x8b\x08\x08\x00\x00\x00\x00\x00\x03"] + [b"n", 0.1] * 100
TRICKLED_BODIES = {
    "an event a byte at a time": [b"\r\n", b'data: {"choices": [{"text": "'] + [b"a", 0.1] * 100,
    "keep-alive comments": [b"\r\n"] + [b": ping\n\n", 0.1] * 100,
    "events without text": [b"\r\n"] + [_event(""), 0.1] * 100,
    "gzip's endless file name": GZIP_NAME,
}


@pytest.mark.parametrize("body", TRICKLED_BODIES)
def test_a_trickled_answer_ends_the_turn_within_the_timeout_and_a_long_healthy_one_does_not(body):
    # a healthy answer after it: 2.4 s to its last token, but never 2 s without text
    healthy = [HEAD, *(part for piece in ("<|channel|>final", "<|message|>", "4", "2", "<|return|>")
                       for part in (_event(piece), 0.6)), _event("", "stop"), b"data: [DONE]\n\n"]
    with FakeServer(raw=lambda n: SLOW_HEAD + TRICKLED_BODIES[body] if n == 1 else healthy) as server:
        session = Session.connect(server.url, timeout=2, retries=0)
        started = time.monotonic()
        reply = session.ask("6*7?")
        took = time.monotonic() - started
        assert reply.errors == [f"The turn failed: the server at {server.url} sent nothing for 2 s (timeout=...)"]
        assert took < 2.5, f"the turn took {took:.1f} s"
        started = time.monotonic()
        reply = session.ask("6*7?")
        assert (reply.final, reply.errors) == ("42", [])
        assert time.monotonic() - started > 2  # longer than the timeout, and never cut


def test_a_slow_connect_and_trickled_headers_end_the_turn_within_the_timeout(monkeypatch):
    # connecting had its own timeout and the headers a new one once connected: 3.7 s for timeout=2
    answer = [HEAD, _event("<|channel|>final<|message|>42<|return|>"), _event("", "stop"), b"data: [DONE]\n\n"]
    with FakeServer(raw=lambda n: TRICKLE if n == 1 else answer) as server:
        session = Session.connect(server.url, timeout=2, retries=0)
        looked_up = socket.getaddrinfo
        monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kw: time.sleep(1.5) or looked_up(*args, **kw))
        started = time.monotonic()
        reply = session.ask("6*7?")
        took = time.monotonic() - started
        assert reply.errors == [f"The turn failed: the server at {server.url} did not answer within 2 s (timeout=...)"]
        assert took < 2.5, f"the turn took {took:.1f} s"
        monkeypatch.undo()
        assert session.ask("6*7?").final == "42"


@pytest.mark.parametrize("body", ["a list a byte at a time", "gzip's endless file name"])
def test_a_model_list_trickled_in_after_slow_headers_cannot_hold_connect_past_the_timeout(body):
    items = SLOW_HEAD + ([b"\r\n", b'{"data": [{"id": "m"}'] + [b" ", 0.1] * 100 if body.startswith("a list")
                         else GZIP_NAME)
    url, listener = _trickling_server(items)
    with listener:
        started = time.monotonic()
        with pytest.raises(RemoteError) as caught:
            RemoteEngine(url, timeout=2, retries=0)
        took = time.monotonic() - started
    assert str(caught.value) == f"the server at {url} did not answer within 2 s (timeout=...)"
    assert took < 2.5, f"connecting took {took:.1f} s"


def test_a_model_name_of_megabytes_is_shown_cut(capsys):
    """`%gptoss connect` takes the only model served and printed its name whole: a server can make it megabytes."""
    from IPython.core.interactiveshell import InteractiveShell

    name = "gpt-oss-" + "x" * 1_000_000
    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "gptoss_lab")
        with FakeServer(models=(name,)) as server:
            shell.run_line_magic("gptoss", "connect " + server.url)
            reply = Session.connect(server.url).ask("hi")
            sent = server.requests[-1][2]["model"]
        out = capsys.readouterr().out
    finally:
        InteractiveShell.clear_instance()
    # the cut name, a word longer than a line of the output area, has a line of its own
    assert out.startswith(f"Connected to {server.url}\n(gpt-oss-xxx") and len(out) < 300, len(out)
    assert len(reply.model) == 200 and reply.model.endswith("x…") and sent == name  # the server still gets it whole


LLAMA_ERROR = (b'error: {"code":400,"message":"the request exceeds the available context size, try increasing it",'
               b'"type":"exceed_context_size_error"}\n\n')


@pytest.mark.parametrize("error", [
    [LLAMA_ERROR, b"data: [DONE]\n\n"],  # llama.cpp's llama-server: an `error:` line, then [DONE]
    [b"\nerr", 0.05, LLAMA_ERROR[3:], b"data: [DONE]\n\n"],  # the field name cut across two reads
    [b"event: error\r\ndata: the request exceeds the available context size, try increasing it\r\n\r\n"],
])
def test_an_error_a_server_streams_as_its_own_event_is_shown_with_the_partial_answer(error):
    """llama-server streams a prompt longer than its context as `error: {...}` (no SSE field: httpx-sse drops
    it): the turn said only "The engine's stream ended before the model finished its reply"."""
    answer = [HEAD, _event("<|channel|>final<|message|>It is")]
    with FakeServer(raw=lambda n: answer + error) as server:
        reply = Session.connect(server.url).ask("hi")
    assert reply.final == "It is"
    assert reply.errors == [f"The turn failed: the server at {server.url} stopped with an error: "
                            "the request exceeds the available context size, try increasing it"]


def test_the_connect_magic_takes_a_timeout_and_retries():
    """`%gptoss connect` had no --timeout: a user of the magic waited the default 120 s on a server that trickles."""
    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "gptoss_lab")
        url, listener = _trickling_server()
        with listener:
            started = time.monotonic()
            with pytest.raises(UsageError, match=r"^%gptoss connect: the server at .* did not answer within 1 s "
                                                 r"\(timeout=\.\.\.\)$"):
                shell.run_line_magic("gptoss", f"connect {url} --timeout 1 --retries 0")
            assert time.monotonic() - started < 4
        with pytest.raises(UsageError, match=r"^%gptoss connect: timeout must be a number of seconds above 0, "
                                             r"at most 86400"):
            shell.run_line_magic("gptoss", f"connect {url} --timeout 0")
        started = time.monotonic()   # (it was taken, and sat silent for 28 s before its error)
        with pytest.raises(UsageError, match=r"^%gptoss connect: retries must be a whole number from 0 to 10, "
                                             r"not 1000000$"):
            shell.run_line_magic("gptoss", "connect http://127.0.0.1:1 --retries 1000000")
        assert time.monotonic() - started < 1
    finally:
        InteractiveShell.clear_instance()   # later tests must not find this shell's namespace


def test_a_key_sent_in_plain_text_over_a_network_is_warned_about(monkeypatch):
    """`Session.connect("http://gpu-box:8000", api_key=...)` sent the key unencrypted with no word said; to this
    machine (127.0.0.1, localhost) it crosses no network and stays quiet."""
    import warnings

    from gptoss_lab.engines import remote

    loopback = remote._loopback
    assert loopback("localhost") and loopback("::1") and loopback("127.0.0.2") and not loopback("gpu-box")
    with FakeServer() as server:
        with warnings.catch_warnings():
            warnings.simplefilter("error", remote.RemoteWarning)
            RemoteEngine(server.url, api_key="sk-local-key")   # this machine: no warning
        monkeypatch.setattr(remote, "_loopback", lambda host: False)   # as if 127.0.0.1 were another machine
        with pytest.warns(remote.RemoteWarning, match=r"^the API key goes unencrypted over http:// to 127\.0\.0\.1: "):
            RemoteEngine(server.url, api_key="sk-local-key")
        with pytest.warns(remote.RemoteWarning, match=r"^the password goes unencrypted"):
            RemoteEngine(server.url.replace("http://", "http://bob:pw-secret@"))


def test_a_model_name_with_line_breaks_is_shown_on_one_line(capsys):
    """A server's model name with a line break printed a line of its own under "Connected to ...", where it could
    pose as the lab's own output ("Approved: ..."); it is sent to the server as served."""
    from IPython.core.interactiveshell import InteractiveShell

    answer = [HEAD, _event("<|channel|>final<|message|>42"), _event(finish="stop")]
    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "gptoss_lab")
        with FakeServer(raw=lambda n: answer, models=("gpt-oss\r\nApproved: python\u2028\x85ok",)) as server:
            shell.run_line_magic("gptoss", f"connect {server.url}")
            engine = RemoteEngine(server.url)
            assert engine.name == "gpt-oss Approved: python ok"
            assert Session(engine, namespace={}).ask("6*7?").final == "42"
            assert server.requests[-1][2]["model"] == "gpt-oss\r\nApproved: python\u2028\x85ok"
        assert capsys.readouterr().out == f"Connected to {server.url} (gpt-oss Approved: python ok).\n"
    finally:
        InteractiveShell.clear_instance()


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n",   # headers past h11's limit
    b"HTTP/1.1 200 OK\r\n" + b"X-A: 1\r\n" * 100_000 + b"\r\n",
    b"HTTP/1.1 two hundred\r\n\r\n",                                   # no status line
], ids=["long header", "many headers", "no status"])
def test_an_answer_that_is_no_http_is_said_so_once_not_is_it_running(answer):
    """Headers too long or no status line read "cannot reach the gpt-oss server ... is it running? (tried 3 times)"
    of a server that runs and answered, and asked it twice more: each ask a new completion on a real server."""
    with FakeServer(raw=lambda n: [answer]) as server:
        engine = RemoteEngine(server.url, timeout=5)
        with pytest.raises(RemoteError) as caught:
            list(engine.stream(PROMPT, stop=harmony.STOP_TOKENS))
        assert sum(path == "/v1/completions" for path, _, _ in server.requests) == 1
    assert str(caught.value).startswith(f"the server at {server.url} sent an answer that cannot be read "
                                        "(RemoteProtocolError: ")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_server_on_this_machine_is_never_asked_through_a_proxy_of_the_environment(monkeypatch, host):
    """With HTTP_PROXY set (and no NO_PROXY), a server on this machine was asked through the proxy: the key went
    in plain text to the proxy, where the lab says a loopback key crosses no network, and the proxy could not
    reach the server anyway."""
    with FakeServer(api_key="sk-local-key") as proxy, FakeServer(api_key="sk-local-key") as server:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        engine = RemoteEngine(server.url.replace("127.0.0.1", host), api_key="sk-local-key", timeout=5)
        assert engine.model == "gpt-oss-test" and server.requests and not proxy.requests


@pytest.mark.parametrize("past", [None, 0, 65536, 99999])
def test_a_port_past_65535_or_zero_is_refused_not_taken_modulo_65536(past):
    """A port of 80000 (a typo for 8000) connected to port 14464: the system takes it modulo 65536, so a server
    listening there was asked, with the password."""
    with FakeServer() as server:
        port = past if past is not None else int(server.url.rsplit(":", 1)[1]) + 65536  # reaches `server` modulo 65536
        with pytest.raises(RemoteError) as caught:
            RemoteEngine(f"http://bob:pw-secret@127.0.0.1:{port}/v1", retries=0)
        assert not server.requests
    assert str(caught.value) == (f"'http://127.0.0.1:{port}/v1' is not a server URL (its port is not one from 1 "
                                 "to 65535); write it like http://127.0.0.1:8000")


@pytest.mark.parametrize("host", ["gpu-box..lan", "a" * 64 + ".lan"])
def test_a_host_name_that_cannot_be_looked_up_is_refused_in_one_line(host):
    """A typo of two dots (or a label past 63 characters) raised a bare UnicodeError from inside httpx."""
    with pytest.raises(RemoteError) as caught:
        RemoteEngine(f"http://bob:pw-secret@{host}:8000", retries=0)
    assert str(caught.value).startswith(f"'http://{host}:8000' is not a server URL (its host name cannot be looked "
                                        "up: encoding with 'idna' codec failed (UnicodeError: label ")
    assert str(caught.value).endswith("write it like http://127.0.0.1:8000")


def test_a_token_given_as_the_urls_only_user_name_is_hidden_as_a_password_is():
    """`http://TOKEN@host` (a token as the user name, no password) showed the token whenever the server quoted it."""
    body = b'{"error": {"message": "unknown token sk-tok-98765 for this deployment"}}'
    with FakeServer(raw=lambda n: [_status(403, b"Forbidden", body)]) as server:
        engine = RemoteEngine(server.url.replace("http://", "http://sk-tok-98765@"), retries=0)
        with pytest.raises(RemoteError) as caught:
            list(engine.stream(PROMPT, stop=harmony.STOP_TOKENS))
    assert "sk-tok-98765" not in str(caught.value) and "unknown token *** for this deployment" in str(caught.value)


@pytest.mark.parametrize("ollama", [False, True])
def test_a_byte_order_mark_before_the_stream_is_ignored(ollama):
    """The SSE standard has a client ignore one leading U+FEFF; it made the first event a field of another name
    (`\\ufeffdata`), dropped: the answer's start was lost ("the stream ended before the model finished")."""
    text = "<|channel|>final<|message|>42"
    if ollama:
        answer = [b'HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nConnection: close\r\n\r\n',
                  b'\xef\xbb\xbf{"response": "' + text.encode() + b'", "done": false}\n', b'{"done": true}\n']
    else:
        answer = [HEAD, b"\xef\xbb\xbf" + _event(text), _event(finish="stop"), b"data: [DONE]\n\n"]
    with FakeServer(raw=lambda n: answer, ollama=ollama) as server:
        reply = Session.connect(server.url, session_options={"namespace": {}, "tools": "none"}).ask("6*7?")
    assert reply.final == "42" and not reply.errors, reply.errors


@pytest.mark.parametrize("kind", [b"Text/Event-Stream", b"TEXT/EVENT-STREAM; charset=UTF-8"])
def test_an_event_stream_type_written_in_capitals_is_read(kind):
    """A media type is case-insensitive (RFC 9110), but `Text/Event-Stream` failed each turn: "did not answer with
    an event stream (Content-Type: 'Text/Event-Stream')"."""
    answer = [HEAD.replace(b"text/event-stream", kind), _event("<|channel|>final<|message|>42"), _event(finish="stop")]
    with FakeServer(raw=lambda n: answer) as server:
        reply = Session.connect(server.url, session_options={"namespace": {}, "tools": "none"}).ask("6*7?")
    assert reply.final == "42" and not reply.errors, reply.errors


@pytest.mark.parametrize("charset", ["rot13", "zlib_codec", "utf-16"])
def test_a_charset_the_server_names_never_picks_the_codec(charset):
    """httpx decoded with whatever Python codec `charset=` named: rot13, zlib_codec or utf-16 raised a bare TypeError,
    AssertionError or UnicodeError ("The turn failed: AssertionError: "). Event streams and JSON are UTF-8 (the SSE
    standard ignores charset), and an error's text is read as UTF-8 too."""
    kind = b"text/event-stream; charset=" + charset.encode()
    answer = [b"HTTP/1.1 200 OK\r\nContent-Type: " + kind + b"\r\nConnection: close\r\n\r\n",
              _event("<|channel|>final<|message|>42 \u00e9"), _event(finish="stop")]
    with FakeServer(raw=lambda n: answer) as server:
        reply = Session.connect(server.url, session_options={"namespace": {}, "tools": "none"}).ask("6*7?")
    assert reply.final == "42 \u00e9" and not reply.errors, reply.errors
    body = "model is busy \u00e9".encode()
    refusal = (b"HTTP/1.1 500 Oops\r\nContent-Type: text/plain; charset=" + charset.encode() +
               b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
    with FakeServer(raw=lambda n: [refusal]) as server:
        with pytest.raises(RemoteError) as caught:
            list(RemoteEngine(server.url, retries=0).stream(PROMPT, stop=harmony.STOP_TOKENS))
    assert str(caught.value) == (f"the server at {server.url} answered /v1/completions with HTTP 500: "
                                 "model is busy \u00e9")


@pytest.mark.parametrize("status, coding", [
    (200, b"gzip, gzip"), (500, b"gzip, gzip"), (200, b"gzip\r\nContent-Encoding: gzip"), (200, b"br"),
], ids=["stream", "error body", "two headers", "brotli"])
def test_a_body_compressed_twice_over_is_refused_before_it_is_expanded(status, coding):
    """httpx expands each read whole, layer by layer: `Content-Encoding: gzip, gzip` made 256 MiB in memory of a
    body of under a kilobyte (three layers: more than any kernel has) before the lab's 4 MiB limit saw any of it.
    One gzip or deflate layer (at most about 1,000 times a read) is read; more, or a coding without that bound, not."""
    import tracemalloc

    bomb = gzip.compress(_gzip_bomb(256))  # 256 MiB of spaces, compressed twice over
    kind = b"text/event-stream" if status == 200 else b"application/json"
    answer = [b"HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Encoding: %s\r\nConnection: close\r\n\r\n"
              % (status, kind, coding) + bomb]
    with FakeServer(raw=lambda n: answer) as server:
        engine = RemoteEngine(server.url, retries=0)
        tracemalloc.start()
        try:
            with pytest.raises(RemoteError) as caught:
                list(engine.stream(PROMPT, stop=harmony.STOP_TOKENS))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 32 << 20, f"{peak >> 20} MiB"
    shown = "br" if coding == b"br" else "gzip, gzip"
    assert str(caught.value) == (f"the server at {server.url} sent an answer that cannot be read (DecodingError: its "
                                 f"body is compressed as {shown}: one gzip or deflate is read, no more)")


@pytest.mark.parametrize("status, said", [(b"304 Not Modified", "HTTP 304 Not Modified, without a message"),
                                          (b"300 Multiple Choices", "HTTP 300 Multiple Choices, without a message"),
                                          (b"999 Odd", "HTTP 999: odd")])
def test_a_status_without_a_location_or_past_599_is_said_in_one_line(status, said):
    """A 3xx without a Location raised a bare KeyError ('location'), at connect too; a status past 599 said
    "(the response body broke off)" of a body that was whole."""
    body = b"odd" if status.startswith(b"999") else b""
    answer = [b"HTTP/1.1 " + status + b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body]
    with FakeServer(raw=lambda n: answer) as server:
        reply = Session.connect(server.url, retries=0, session_options={"namespace": {}, "tools": "none"}).ask("hi")
        assert reply.errors == [f"The turn failed: the server at {server.url} answered /v1/completions with {said}"]
        server.httpd.RequestHandlerClass.do_GET = lambda self: self._raw(answer)
        with pytest.raises(RemoteError) as caught:
            RemoteEngine(server.url, retries=0)
    assert str(caught.value) == f"the server at {server.url} answered /v1/models with {said}"


@pytest.mark.parametrize("password", ["grün-geheim-wörter", 'zq"qx\\jw'])
def test_a_secret_the_server_quotes_back_json_escaped_is_hidden_too(password):
    """A server echoing the password or key in a JSON body writes it JSON-escaped (`gr\\u00fcn…`, `\\"`, `\\\\`):
    the plain-text hiding missed that form and the error showed it."""
    body = json.dumps({"choices": [{"text": None, "finish_reason": 0}], "debug": {"auth_user": password}})
    answer = [HEAD, b"data: " + body.encode() + b"\n\n"]
    with FakeServer(raw=lambda n: answer) as server:
        url = server.url.replace("http://", f"http://bob:{urllib.parse.quote(password, safe='')}@")
        engines = [RemoteEngine(url, retries=0)]
        if password.isascii():   # a header carries no other key
            engines.append(RemoteEngine(server.url, api_key=password, retries=0))
        for engine in engines:
            with pytest.raises(RemoteError) as caught:
                list(engine.stream(PROMPT, stop=harmony.STOP_TOKENS))
            message = str(caught.value)
            assert '"auth_user": "***"' in message, message
            # (letters, not digits: a port number held "98" and failed the test)
            assert all(part not in message for part in ("geheim", "w\\\\u00f6rter", "qx", "jw")), message


def test_a_model_name_with_terminal_controls_is_written_out_in_errors():
    """A served model name carrying ESC, BEL or a right-to-left override reached exception texts raw (a terminal
    IPython acts on them: window title, clear screen); it is sent to the server as served."""
    served = "gpt-oss\x1b]0;pwned\x07\x1b[2J\u202eevil"
    with FakeServer(models=(served,)) as server:
        session = Session.connect(server.url, retries=0)
        with pytest.raises(TurnError) as caught:
            session.ask("6*7?", response_format={"type": "integer"}, constrain=True)
    assert session.engine.name == "gpt-oss\\x1b]0;pwned\\x07\\x1b[2J\\u202eevil"
    assert not any(c in str(caught.value) for c in "\x1b\x07\u202e") and "gpt-oss\\x1b]0;pwned" in str(caught.value)
    assert session.engine.model == served


def test_a_stream_of_zero_width_joiners_cannot_hold_a_turn_past_max_tokens():
    # text that is all joiners is no text to the echo check (a text-only server's echo carries `<\u200d|start|>`), so
    # it held every such chunk while it waited for the prompt's first characters: each chunk had text for the clock
    # (timeout never came) and none reached the max_tokens count, so the turn lasted as long as the server liked
    joiners = [HEAD] + [_event("\u200d"), 0.02] * 1000  # 20 s, a joiner every 0.02 s
    with FakeServer(raw=lambda n: joiners) as server:
        session = Session.connect(server.url, timeout=2, retries=0, session_options={"max_new_tokens": 8})
        started = time.monotonic()
        reply = session.ask("6*7?")
        took = time.monotonic() - started
    assert reply.errors == [f"The turn failed: the server at {server.url} kept streaming past max_tokens=8 "
                            "(it ignores the limit)"]
    assert took < 5, f"the turn took {took:.1f} s"


@pytest.mark.parametrize("answer, said", [
    ([HEAD, _event("<|channel|>final<|message|>Hi"), b"event: error\ndata: null\n\n"],
     "stopped with an error, without a message"),
    ([HEAD, _event("<|channel|>final<|message|>Hi"), b'data: {"error": {"message": null}}\n\n'],
     "stopped with an error, without a message"),
    ([HEAD, _event("<|channel|>final<|message|>Hi"), b'data: {"error": true}\n\n'],
     "stopped with an error, without a message"),
    ([HEAD, b'data: {"error": true, "message": "model unloaded"}\n\n'], "stopped with an error: model unloaded"),
    ([_status(500, b"Internal Server Error", b'{"error": null}')],
     "answered /v1/completions with HTTP 500 Internal Server Error, without a message"),
    ([_status(503, b"Service Unavailable", b"{}")],
     "answered /v1/completions with HTTP 503 Service Unavailable, without a message"),
    ([b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"],
     "did not answer with an event stream (HTTP 204 No Content, no Content-Type)"),
])
def test_an_error_without_a_message_says_so_not_none(answer, said):
    """An error event or body whose message is null read "stopped with an error: None" (or "HTTP 500: None"); then
    "(no text)", `"error": true` "stopped with an error: True", and a 204 "(Content-Type: None)"."""
    with FakeServer(raw=lambda n: answer) as server:
        reply = Session.connect(server.url, retries=0, session_options={"namespace": {}, "tools": "none"}).ask("Hi?")
    assert reply.errors == [f"The turn failed: the server at {server.url} {said}"]


def test_an_error_event_holding_a_page_gives_its_words_not_its_markup():
    """`event: error` whose data is a proxy's HTML page read "stopped with an error: <html><head><title>..."."""
    page = b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title><style>b{}</style></head><body><h1>Bad &amp; gone"
    answer = [HEAD, _event("<|channel|>final<|message|>Hi"), b"event: error\ndata: " + page + b"\n\n"]
    with FakeServer(raw=lambda n: answer) as server:
        reply = Session.connect(server.url, session_options={"namespace": {}, "tools": "none"}).ask("Hi?")
    assert reply.errors == [f"The turn failed: the server at {server.url} stopped with an error: 502 Bad Gateway Bad "
                            "& gone"]


def test_blank_data_lines_are_keep_alives_not_a_broken_stream():
    """An event of blank data (`data:  `, `data:\\t`) failed the turn: "sent something that is not a completion
    stream: ' '"."""
    answer = [HEAD, b"data:  \n\n", _event("<|channel|>final<|message|>42"), b"data:\t\r\n\r\n", _event(finish="stop")]
    with FakeServer(raw=lambda n: answer) as server:
        reply = Session.connect(server.url, session_options={"namespace": {}, "tools": "none"}).ask("6*7?")
    assert reply.final == "42" and not reply.errors, reply.errors


@pytest.mark.parametrize("named", [b"event: ping\ndata: pong\n\n", b"event: keep-alive\r\ndata: {}\r\n\r\n",
                                   b'event: usage\ndata: {"choices": [{"text": "not the answer"}]}\n\n'])
def test_named_events_other_than_error_are_passed_over(named):
    """A named event with non-JSON data (`event: ping` / `data: pong`) failed the turn: "not a completion stream (no
    JSON): 'pong'". Only unnamed events carry completion chunks; an `event: error` is still the server's error."""
    error = b'event: error\ndata: {"error": {"message": "out of\\nmemory"}}\n\n'
    answer = [HEAD, named, _event("<|channel|>final<|message|>42"), named, error]
    with FakeServer(raw=lambda n: answer) as server:
        reply = Session.connect(server.url, session_options={"namespace": {}, "tools": "none"}).ask("6*7?")
    assert reply.final == "42"
    assert reply.errors == [f"The turn failed: the server at {server.url} stopped with an error: out of memory"]


@pytest.mark.parametrize("ollama", [False, True])
def test_a_surrogate_pair_split_across_two_chunks_is_one_character(ollama):
    """JSON may write 🚀 as two escapes, `"\\ud83d"` ending one chunk and `"\\ude80"` starting the next: the reply
    showed the escapes `\\ud83d\\ude80`, not the emoji."""
    first, second = r"<|channel|>final<|message|>Go \ud83d", r"\ude80 now"
    if ollama:
        answer = [b'HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nConnection: close\r\n\r\n',
                  b'{"response": "%s", "done": false}\n' % first.encode(), 0.05,
                  b'{"response": "%s", "done": true}\n' % second.encode()]
    else:
        answer = [HEAD, b'data: {"choices": [{"text": "%s"}]}\n\n' % first.encode(), 0.05,
                  b'data: {"choices": [{"text": "%s", "finish_reason": "stop"}]}\n\n' % second.encode()]
    with FakeServer(raw=lambda n: answer, ollama=ollama) as server:
        reply = Session.connect(server.url, session_options={"namespace": {}, "tools": "none"}).ask("Launch?")
    assert reply.final == "Go \U0001f680 now" and not reply.errors, reply.errors


@pytest.mark.parametrize("ollama", [False, True])
@pytest.mark.parametrize("page, said", [
    ([b"<!DOCTYPE html>\n<html><head><title>Sign in &amp; <b>go</b>\n</title></head>\n", 0.05,
      b"<body><form>user</form></body></html>\n"], "'Sign in & go'"),
    ([b"\n  <html><body><h1>Please log in</h1><script>alert(1)</script></body></html>"], "'Please log in'"),
])
def test_a_page_sent_as_a_stream_is_said_to_be_a_page(page, said, ollama):
    """An HTTP 200 `text/event-stream` whose body is an HTML login page said "closed the stream mid-answer (it never
    said it was done)"; Ollama's NDJSON type quoted the page's first line ("no JSON: '<!DOCTYPE html>'")."""
    head = HEAD.replace(b"text/event-stream", b"application/x-ndjson") if ollama else HEAD
    with FakeServer(raw=lambda n: [head, *page], ollama=ollama) as server:
        reply = Session.connect(server.url, session_options={"namespace": {}, "tools": "none"}).ask("6*7?")
    assert reply.errors == [f"The turn failed: the server at {server.url} answered with a page, not a completion "
                            f"stream: {said}; is it the inference server's address, and does a proxy or login stand "
                            "in front of it?"]


@pytest.mark.parametrize("line", [b'{"choices": [{"text": "<|channel|>final<|message|>42"}]}', b"[DONE]"])
def test_json_lines_without_data_are_said_at_once_not_after_the_timeout(line):
    """A server streaming its chunks as bare JSON lines (no `data: `) under text/event-stream had them passed over:
    the turn waited the whole timeout and said "sent nothing for 10 s" (or "closed the stream mid-answer")."""
    answer = [HEAD, _event("<|channel|>analysis<|message|>ok"), line + b"\n\n", line + b"\n\n", 20.0]
    with FakeServer(raw=lambda n: answer) as server:
        started = time.monotonic()
        reply = Session.connect(server.url, timeout=10, session_options={"tools": "none"}).ask("6*7?")
    assert time.monotonic() - started < 3
    assert reply.analysis == "ok"
    assert reply.errors == [f"The turn failed: the server at {server.url} sent a line of JSON without the `data: ` a "
                            f"server-sent event starts with (it would be passed over): {line.decode()!r}; is it an "
                            f"OpenAI-compatible server? see {guide('remote.md')}"]


@pytest.mark.parametrize("typed", ["{port}", ":{port}", " {port}/"])
def test_a_port_typed_without_its_host_is_refused_with_the_url_to_write(typed):
    """`%gptoss connect 8000` was read as the host 8000, the address 0.0.31.64, and asked its port 80 (with the key)."""
    with FakeServer() as server:
        port = server.url.rsplit(":", 1)[1]
        with pytest.raises(RemoteError) as caught:
            RemoteEngine(typed.format(port=port), retries=0, timeout=2)
    assert str(caught.value) == (f"{typed.format(port=port)!r} is not a server URL (a port alone); write it with its "
                                 f"host, like http://127.0.0.1:{port} for a server on this machine")


@pytest.mark.parametrize("body, first", [
    (_event("<|channel|>final<|message|>42", "stop").decode().encode("utf-16-le"), "d\\x00a\\x00t\\x00a\\x00:"),
    (b'data: {"choices": [{"text": "42", "finish_reason": "stop"}]}', 'data: {"choices": [{"text": "42", "f'),
    (b'data: {"choices": [{"text": "4"}]}\ndata: {"choices": [{"text": "2"}]}', 'data: {"choices": [{"text": "4"}]}'),
], ids=["utf-16", "no-blank-line", "no-blank-lines"])
def test_a_body_of_no_server_sent_event_is_quoted_not_said_to_have_closed(body, first):
    """A stream in UTF-16, or of `data:` lines never ended by a blank line, said "closed the stream mid-answer (it
    never said it was done)", as if the server had dropped the connection."""
    with FakeServer(raw=lambda n: [HEAD, b": ping\n\n", body]) as server:
        reply = Session.connect(server.url, session_options={"tools": "none"}).ask("6*7?")
    assert reply.errors[0].startswith(f"The turn failed: the server at {server.url} sent no server-sent event "
                                      f"(`data: ` lines, then a blank one; in UTF-8): '{first}")
    assert reply.errors[0].endswith(f"'; is it an OpenAI-compatible server? see {guide('remote.md')}")


def test_an_answer_cut_inside_its_first_event_is_said_to_be_cut():
    """A body that ended inside its first event (`Content-Length: 20` in front of a whole event) was said to be
    "no server-sent event (`data: ` lines, then a blank one ...)", as if the server spoke another format."""
    cut = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 20\r\nConnection: close\r\n\r\n"
           + _event("<|channel|>final<|message|>42", "stop"))
    with FakeServer(raw=lambda n: [cut]) as server:
        with pytest.raises(RemoteError) as caught:
            list(RemoteEngine(server.url, retries=0, timeout=10).stream(PROMPT, stop=harmony.STOP_TOKENS))
    assert str(caught.value) == (f"the server at {server.url} cut its answer short, inside its first event: "
                                 """'data: {"choices": [{'""")


def _whole(body: bytes) -> list[bytes]:
    """An HTTP 200 answer of one `application/json` body: a server that ignored `stream: true`."""
    return [b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n" % len(body), body]


@pytest.mark.parametrize("text, final, errors", [
    ("<|channel|>final<|message|>42, key sk-abcdefghijklmnopqrstuvwx", "42, key ***", []),
    ("<|channel|>final<|message|>" + "A" * (5 << 20), "", ["sent 4 MiB without ending an event or line: that is no "
                                                         "completion stream"])], ids=["answer", "huge"])
def test_a_whole_completion_in_json_is_read_as_one_message(text, final, errors):
    """A server that ignores `stream: true` and answers one `application/json` completion was refused: "did not
    answer with an event stream (Content-Type: 'application/json')"."""
    body = json.dumps({"object": "text_completion", "choices": [{"index": 0, "text": text, "finish_reason": "stop"}]})
    with FakeServer(raw=lambda n: _whole(body.encode()), api_key="sk-abcdefghijklmnopqrstuvwx") as server:
        session = Session.connect(server.url, api_key="sk-abcdefghijklmnopqrstuvwx", session_options={"tools": "none"})
        reply = session.ask("6*7?")
    assert (reply.final, reply.errors) == (final, [f"The turn failed: the server at {server.url} {e}" for e in errors])


@pytest.mark.parametrize("line", [_event("<|channel|>final<|message|>42").decode().encode("utf-16-le"),
                                  b'Data: {"choices": [{"text": "42"}]}\n\n', b"Log in first; " * 3],
                         ids=["utf-16", "Data:", "no line break"])
def test_a_stream_of_no_server_sent_event_that_goes_on_is_quoted_at_once(line):
    """A stream that never closed and kept sending lines SSE passes over (UTF-16, a field of another case, text that
    never breaks a line) waited the whole timeout, then said the server "sent nothing for 10 s"."""
    with FakeServer(raw=lambda n: [HEAD, b": ping\n\n"] + [line, 0.3] * 60) as server:
        started = time.monotonic()
        reply = Session.connect(server.url, timeout=10, session_options={"tools": "none"}).ask("6*7?")
    assert time.monotonic() - started < 3
    first = line.decode().split("\n")[0][:120]
    assert reply.errors == [f"The turn failed: the server at {server.url} sent no server-sent event (`data: ` lines, "
                            f"then a blank one; in UTF-8): {first!r}; is it an OpenAI-compatible server? "
                            f"see {guide('remote.md')}"]


@pytest.mark.parametrize("typed", ["::1", "http://::1:{port}/v1", "http://user:pw@fe80::1%eth0:{port}"])
def test_an_ipv6_address_without_brackets_is_refused_with_the_url_to_write(typed):
    """`%gptoss connect ::1` said "Invalid port: ':1'", with no word of the brackets an IPv6 address needs."""
    with pytest.raises(RemoteError) as caught:
        RemoteEngine(typed.format(port=8000), retries=0, timeout=1)
    assert str(caught.value) == (f"{shown_url(typed.format(port=8000))!r} is not a server URL (an IPv6 address goes "
                                 "in brackets, its port after them); write it like http://[::1]:8000")


BLANK_KEY = ("api_key is empty or blank: give the key itself (is the variable it came from set?), or leave api_key "
             "out for a server that takes none")


@pytest.mark.parametrize("key, said", [("   ", BLANK_KEY), ("", BLANK_KEY),
                                       (12345, "api_key must be the key as text (a str), not int")])
def test_a_blank_api_key_is_refused_not_dropped(key, said):
    """`api_key="   "` was dropped without a word and the server's 401 then said "pass api_key=..."; a number raised
    AttributeError ('int' object has no attribute 'strip')."""
    with FakeServer(api_key="sk-needed") as server:
        with pytest.raises(RemoteError) as caught:
            Session.connect(server.url, api_key=key, retries=0)
    assert str(caught.value) == said and server.requests == []


def test_a_stream_of_special_tokens_inside_an_answer_is_listed_ten_times_not_thousands():
    """A server looping `<|message|>` inside the answer (a broken model, or a hostile server) gave one "Not valid
    Harmony" note per token: 5,000 in `reply.errors`, 5,000 error boxes in the view and the saved transcript."""
    text = "<|channel|>final<|message|>Hi" + "<|message|>" * 5_000
    with FakeServer(raw=lambda n: [HEAD, _event(text, "stop")]) as server:
        session = Session.connect(server.url, session_options={"namespace": {}, "tools": "none"})
        view = _Recorder()  # keeps every event the turn hands it
        reply = session.ask("hi", view=view, max_new_tokens=10_000)
    listed = ["Not valid Harmony (a special token inside a message's text): '<|message|>'"] * 10
    assert reply.errors == [*listed, "The model's text is not valid Harmony in more places than these 10: the others "
                                     "are not listed one by one."]
    assert sum(type(event).__name__ in ("ParseError", "Notice") for event in view.events) == 11
    assert reply.final == "Hi" + "<|message|>" * 5_000   # the text itself is all kept, as written


def test_a_runaway_header_after_the_listed_places_is_still_quoted():
    """The note that ends a turn whose header ran away says its text is "quoted above": it is, also after ten other
    places that were not valid Harmony."""
    text = "<|channel|>final<|message|>Hi" + "<|message|>" * 20 + "<|end|><|start|>assistant" + " word" * 3_000
    with FakeServer(raw=lambda n: [HEAD, _event(text, "stop")]) as server:
        session = Session.connect(server.url, session_options={"namespace": {}, "tools": "none"})
        reply = session.ask("hi", max_new_tokens=10_000)
    assert reply.errors[11].startswith("Not valid Harmony (a message header longer than any Harmony header): 'assistant word")
    assert reply.errors[12].startswith("The model's reply was stopped: where a message header goes, it wrote text "
                                       "longer than any header (quoted above)")


def test_a_flood_of_keep_alive_comments_is_silence_not_an_unended_event():
    """Keep-alive comments sent without pause (5 MiB of them, each ended by a blank line) ended the turn with "sent 4 MiB
    without ending an event or line", though every line and comment ended: they count as silence, as slow ones do."""
    comments = (b": " + b"." * 1000 + b"\n\n") * 1000
    flood = [HEAD, _event("<|channel|>final<|message|>Hi")] + [comments] * 5
    with FakeServer(raw=lambda n: flood + [30.0]) as server:
        reply = Session.connect(server.url, timeout=2, session_options={"namespace": {}, "tools": "none"}).ask("hi")
    assert reply.final == "Hi"
    assert reply.errors == [f"The turn failed: the server at {server.url} sent nothing for 2 s (timeout=...)"]


def test_a_body_shorter_than_its_content_length_is_said_to_be_cut_not_unreachable(monkeypatch, capsys):
    """A server whose answer stopped short of its Content-Length (a lying header, a crash mid-body) was said to be out of
    reach: "cannot reach the gpt-oss server ... is it running?", of a server that had just answered; while it was
    retried, the progress bar said "Cannot reach URL yet"."""
    from gptoss_lab.engines import remote

    monkeypatch.setattr(remote, "_SHOWN_AFTER", 0)   # the bar at once, and a short wait before the retry
    monkeypatch.setattr(remote, "_MAX_WAIT", 0.1)

    def short(handler):
        handler.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"data\": [")
        handler.wfile.flush()
        handler.close_connection = True

    with FakeServer() as server:
        server.httpd.RequestHandlerClass.do_GET = short
        with pytest.raises(RemoteError) as caught:
            RemoteEngine(server.url, retries=1, timeout=5)
    assert str(caught.value) == (f"the server at {server.url} dropped the connection before a whole answer "
                                 "(RemoteProtocolError: peer closed connection without sending complete message body "
                                 "(received 10 bytes, expected 500)); is it running, and is it the inference server's "
                                 "address? (tried 2 times)")
    shown = capsys.readouterr().out
    assert (f"The server at {server.url} dropped the connection before a whole answer (RemoteProtocolError), asking "
            "again: 1 of 2 tries failed") in shown, shown


PATH_KEY = "sk-proj-Zq81xKeyInPath"


@pytest.mark.parametrize("path", [f"/v1;key={PATH_KEY}", f"/key:{PATH_KEY}", f"/{PATH_KEY}.json", f"/k,{PATH_KEY}~",
                                  "/token/" + PATH_KEY.replace("-", "%2D"), f"/Bearer%20{PATH_KEY}", f"/%25{PATH_KEY}",
                                  f"/{PATH_KEY}%2E"])
def test_a_key_in_the_urls_path_among_other_characters_is_never_shown_even_where_the_server_quotes_it(path):
    """A path segment was written `…` only where all of it looked like a key: `/v1;key=sk-...`, `/sk-....json`, a key
    percent-encoded (`sk%2Dproj...`) was shown in every connect error, `%gptoss status` and the saved notebook, and a
    server that quoted the path it was asked (`no route for /v1;key=sk-.../v1/models`) had it shown too."""
    body = f"no route for {path}/v1/models ({urllib.parse.unquote(path)})".encode()
    url, listener = _trickling_server([b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                                       b"\r\n%s" % (len(body), body)])
    with listener, pytest.raises(RemoteError) as caught:
        RemoteEngine(url + path, retries=0, timeout=5)
    said = str(caught.value)
    assert "Zq81x" not in said, said
    assert said.startswith(f"the server at {url}/") and "…" in said.split(" answered ")[0], said
    assert "HTTP 404: no route for /" in said and "***" in said, said   # the quote still says what it said


@pytest.mark.parametrize("model", [None, "gpt-oss-c"])
def test_a_key_at_the_cut_of_a_listed_model_name_shows_no_part_of_it(model):
    """Each listed model name was cut to 80 characters before the key was hidden: a server naming a model `m` * 70 +
    the key had its first 10 characters (`sk-live-Zq`) shown in "serves 2 models (...)" and "has no model ...; it serves"."""
    key = "sk-live-Zq81xKeyOfTheUser42"
    with FakeServer(models=("m" * 70 + key, "gpt-oss-b"), api_key=key) as server, \
            pytest.raises(RemoteError) as caught:
        RemoteEngine(server.url, api_key=key, model=model)
    said = str(caught.value)
    assert "sk-live" not in said and "m" * 70 + "***" in said and "gpt-oss-b" in said, said


@pytest.mark.parametrize("status, kind", [(b"200 OK", b"text/event-stream"), (b"401 Unauthorized", b"text/html")])
def test_a_key_a_page_holds_where_its_start_is_cut_shows_no_part_of_it(status, kind):
    """Of a page sent where the stream goes (or as an HTTP error), its first 8,192 characters were read for its words:
    a server that put the key across that cut, after markup, had its first letters shown (`'<sk-live-Zq'`); the word
    the cut goes through is left out."""
    key = "sk-live-Zq81xKeyOfTheUser42"
    page = ("<html><body>" + "<i></i>" * 2000)[:8192 - 10] + key + " more words</body></html>"
    answer = [b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s"
              % (status, kind, len(page), page.encode())]
    with FakeServer(raw=lambda n: answer, api_key=key) as server:
        engine = RemoteEngine(server.url, api_key=key)
        with pytest.raises(RemoteError) as caught:
            list(engine.stream(PROMPT, stop=harmony.STOP_TOKENS))
    said = str(caught.value)
    assert "sk-live" not in said and ("answered with a page" in said or "HTTP 401" in said), said
