"""RemoteEngine against servers (or URLs) that a hostile party controls or a user got wrong: what the user sees
stays one line, never shows a secret, and every turn ends with its Reply."""
from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest

from gptoss_lab import Session, harmony
from gptoss_lab.engines.remote import RemoteEngine, RemoteError
from test_remote import HEAD, PROMPT, FakeServer, _event, _status  # tests/ is on sys.path


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


def _trickling_server() -> tuple[str, socket.socket]:
    """A server that answers every request with headers that never end, a line every 0.2 s."""
    listener = socket.create_server(("127.0.0.1", 0))

    def answer(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.recv(65536)
            for item in TRICKLE:
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
    assert out.startswith(f"Connected to {server.url} (gpt-oss-xxx") and len(out) < 300, len(out)
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
            with pytest.raises(UsageError, match=r"^the server at .* did not answer within 1 s \(timeout=\.\.\.\)$"):
                shell.run_line_magic("gptoss", f"connect {url} --timeout 1 --retries 0")
            assert time.monotonic() - started < 4
        with pytest.raises(UsageError, match=r"^timeout must be a number of seconds above 0, at most 86400"):
            shell.run_line_magic("gptoss", f"connect {url} --timeout 0")
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
