"""RemoteEngine and `%gptoss connect` with https servers of their own CA, hostile back-off asks, a key the server
writes into the answer, and Stop while the server has not answered yet (or cannot be reached)."""
from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Iterator

import pytest

from gptoss_lab import Session, harmony
from gptoss_lab.engines import remote
from gptoss_lab.engines.remote import RemoteEngine, RemoteError
from test_remote import HEAD, KEY, PROMPT, FakeServer, _event, _split, _status, _StopAfter  # tests/ is on sys.path


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and its key: (cert.pem, key.pem)."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "gptoss-lab test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return str(folder / "cert.pem"), str(folder / "key.pem")


def _tls(certificate: tuple[str, str]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return context


@contextlib.contextmanager
def _https(certificate: tuple[str, str], **kw):
    """A FakeServer behind TLS with the self-signed `certificate`; yields (server, its https:// URL)."""
    with FakeServer(_split("<|channel|>final<|message|>42<|return|>"), **kw) as server:
        server.httpd.socket = _tls(certificate).wrap_socket(server.httpd.socket, server_side=True)
        yield server, server.url.replace("http://", "https://")


def _untrusted(url: str) -> str:
    return (f"the server at {url} has a TLS certificate this machine does not trust (self-signed certificate): "
            "give its CA bundle with verify='ca.pem' (%gptoss connect --ca-bundle PATH), or verify=False "
            "(--insecure) to not check it")


# ---------------------------------------------------------------- servers of their own CA


def test_a_self_signed_server_says_its_certificate_failed_and_how_to_trust_it(certificate):
    """It read "cannot reach the gpt-oss server ... is it running? (tried 3 times)"; nothing made it trusted."""
    with _https(certificate) as (server, url):
        started = time.monotonic()
        with pytest.raises(RemoteError) as caught:
            RemoteEngine(url, timeout=5)
        assert str(caught.value) == _untrusted(url)
        assert time.monotonic() - started < 1  # not retried: asking again cannot mend it
        assert Session.connect(url, verify=certificate[0]).ask("6*7?").final == "42"
        assert RemoteEngine(url, verify=False).model == "gpt-oss-test"
        assert RemoteEngine(url, verify=ssl.create_default_context(cafile=certificate[0])).model == "gpt-oss-test"


def test_a_certificate_for_another_name_says_so_not_to_give_a_ca_bundle(certificate):
    """A server reached by a name its certificate does not give (localhost for one of 127.0.0.1) was told to pass
    the CA bundle it had already passed."""
    with _https(certificate) as (server, url):
        other = url.replace("127.0.0.1", "localhost")
        with pytest.raises(RemoteError) as caught:
            RemoteEngine(other, timeout=5, verify=certificate[0])
    assert str(caught.value) == (
        f"the server at {other} has a TLS certificate for another name (Hostname mismatch, certificate is not valid "
        "for 'localhost'.): connect with a name the certificate gives (or verify=False, --insecure, to not check it)")


def test_https_to_a_plain_http_server_says_so():
    """It read "cannot reach the gpt-oss server ... is it running? (tried 3 times)" of a server that runs."""
    with FakeServer() as server:
        url = server.url.replace("http://", "https://")
        with pytest.raises(RemoteError) as caught:
            RemoteEngine(url, timeout=5)
        assert sum(path == "/api/version" for path, _, _ in server.requests) == 0  # no request got through
    message = str(caught.value)
    assert message.startswith(f"the TLS handshake with the server at {url} failed (SSLError: ")
    assert message.endswith("): it answers in plain http, so write its URL with http://")


def test_plain_http_to_an_https_server_says_to_write_https(certificate):
    """A new user's `%gptoss connect http://...` to a server that serves https (vLLM --ssl-certfile) read "cannot reach
    the gpt-oss server ... (ReadError: Connection reset by peer); is it running? (tried 3 times)" of a server that runs."""
    with _https(certificate) as (server, url):
        plain = url.replace("https://", "http://")
        started = time.monotonic()
        with pytest.raises(RemoteError) as caught:
            RemoteEngine(plain, timeout=5)
        assert time.monotonic() - started < 1  # not retried: asking again cannot mend it
    assert str(caught.value) == (f"the server at {plain} closed a plain http request without an answer, and it answers "
                                 "in https: write its URL with https://")


@pytest.mark.parametrize("bundle, why", [("missing.pem", "FileNotFoundError"), (".", "IsADirectoryError"),
                                         ("key.pem", "SSLError")])
def test_a_ca_bundle_that_cannot_be_used_is_one_line(certificate, bundle, why):
    path = certificate[1] if bundle == "key.pem" else bundle
    with pytest.raises(RemoteError, match=rf"^the CA bundle '{path}' cannot be used \({why}: .*\): give a PEM file "
                                          "of the server's certificate or of the CA that signed it$"):
        RemoteEngine("https://127.0.0.1:1", verify=path)
    with pytest.raises(RemoteError, match=r"^verify must be True, False, a CA bundle file's path or an "
                                          r"ssl\.SSLContext, not None$"):
        RemoteEngine("https://127.0.0.1:1", verify=None)


def test_a_key_sent_to_a_server_whose_certificate_is_not_checked_is_warned_about(certificate, monkeypatch):
    with _https(certificate) as (server, url):
        with warnings.catch_warnings():
            warnings.simplefilter("error", remote.RemoteWarning)
            RemoteEngine(url, api_key="sk-local-key", verify=False)   # this machine: no warning
            RemoteEngine(url, api_key="sk-local-key", verify=certificate[0])
        monkeypatch.setattr(remote, "_loopback", lambda host: False)   # as if 127.0.0.1 were another machine
        with pytest.warns(remote.RemoteWarning, match=r"^the API key goes to 127\.0\.0\.1 with its certificate "
                                                      r"unchecked \(verify=False\): anyone on the way can pose"):
            RemoteEngine(url, api_key="sk-local-key", verify=False)


def test_the_connect_magic_takes_a_ca_bundle_or_insecure(certificate, capsys):
    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "gptoss_lab")
        with _https(certificate) as (server, url):
            with pytest.raises(UsageError) as caught:
                shell.run_line_magic("gptoss", f"connect {url}")
            assert str(caught.value) == "%gptoss connect: " + _untrusted(url)
            shell.run_line_magic("gptoss", f"connect {url} --ca-bundle {certificate[0]}")
            shell.run_line_magic("gptoss", f"connect {url} --insecure")
            with pytest.raises(UsageError, match="not allowed with argument"):
                shell.run_line_magic("gptoss", f"connect {url} --insecure --ca-bundle {certificate[0]}")
        out = capsys.readouterr().out
        assert out.count(f"Connected to {url} (gpt-oss-test).") == 2
        with contextlib.suppress(SystemExit, UsageError):
            shell.run_line_magic("gptoss", "connect --help")
        shown = " ".join(capsys.readouterr().out.split())
        assert "--ca-bundle PATH trust an https server" in shown and "--insecure do not check" in shown
    finally:
        InteractiveShell.clear_instance()


def _trickling_https(certificate: tuple[str, str]) -> tuple[str, socket.socket]:
    """An https server that answers every request with headers that never end, a line every 0.2 s (20 s)."""
    listener, context = socket.create_server(("127.0.0.1", 0)), _tls(certificate)

    def answer(conn: socket.socket) -> None:
        with contextlib.suppress(OSError), context.wrap_socket(conn, server_side=True) as tls:
            tls.recv(65536)
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n")
            for _ in range(100):
                tls.sendall(b"X-A: 1\r\n")
                time.sleep(0.2)

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                threading.Thread(target=answer, args=(listener.accept()[0],), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return f"https://127.0.0.1:{listener.getsockname()[1]}", listener


def test_headers_trickled_in_over_https_cannot_hold_connect_past_the_timeout(certificate):
    """The header clock shut the socket httpx connected, which TLS had detached: over https nothing happened and
    the request took the server's 20 s, then said "did not answer within 1 s"."""
    url, listener = _trickling_https(certificate)
    with listener:
        started = time.monotonic()
        with pytest.raises(RemoteError) as caught:
            RemoteEngine(url, timeout=1, verify=certificate[0])
        assert time.monotonic() - started < 4
    assert str(caught.value) == f"the server at {url} did not answer within 1 s (timeout=...)"


# ---------------------------------------------------------------- waits before asking again


def _in_time(call, seconds: float) -> BaseException:
    """What `call()` raised, failing the test when it had not ended after `seconds`."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as err:  # noqa: BLE001 - handed to the test
            raised.append(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still trying after {seconds} s"
    return raised[0]


def test_connection_retries_stop_after_the_waiting_cap(monkeypatch):
    """retries=1000 waited 0.5 s, 1 s, 2 s ... doubling with no ceiling (the 20th wait alone: 3 days); the most
    retries taken now (10) still stop at the cap."""
    monkeypatch.setattr(remote, "_MAX_WAITING", 2.0)
    with socket.create_server(("127.0.0.1", 0)) as taken:  # a port that nothing listens on once closed
        port = taken.getsockname()[1]
    err = _in_time(lambda: RemoteEngine(f"http://127.0.0.1:{port}", retries=10, timeout=2), 6)
    assert isinstance(err, RemoteError)
    assert str(err).startswith(f"cannot reach the gpt-oss server at http://127.0.0.1:{port} (ConnectError: ")
    assert str(err).endswith("is it running? (tried 3 times; retries stop after 2 s of waiting)")  # 0.5 + 1 s


@pytest.mark.parametrize("given", ["port", "no port", "proxy"])
def test_an_address_that_never_connects_is_reported_after_one_timeout(monkeypatch, given):
    """A mistyped or firewalled address (no answer to connecting) was tried 3 times, each waiting the whole
    timeout: `%gptoss connect` to it sat 6 minutes at the default 120 s before saying "is it running?". A URL without
    a port (here `localhost`, its lookup giving the silent address) says port 80 was tried, and the servers' ports; a
    proxy of the environment that never answers is named (it was "cannot reach the gpt-oss server")."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)  # never accepted: once its queue is full, Linux leaves further connections unanswered
        queued = [socket.socket() for _ in range(3)]
        for sock in queued:
            sock.setblocking(False)
            sock.connect_ex(listener.getsockname())
        url = "http://127.0.0.1:%d" % listener.getsockname()[1]
        if given == "no port":
            silent = [(socket.AF_INET, socket.SOCK_STREAM, 0, "", listener.getsockname())]
            monkeypatch.setattr(remote, "_lookup", lambda host, port, waited: silent if port == 80 else [])
            url = "http://localhost"
        if given == "proxy":
            for name in ("HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "all_proxy"):
                monkeypatch.delenv(name, raising=False)
            monkeypatch.setenv("HTTP_PROXY", url)
            url = "http://gpu-box.example"
        started = time.monotonic()
        with pytest.raises(RemoteError) as caught:
            RemoteEngine(url, timeout=1, retries=2)
        took = time.monotonic() - started
        for sock in queued:
            sock.close()
    proxy = "the proxy the environment names for http:// (HTTPS_PROXY, HTTP_PROXY or ALL_PROXY) on the way to "
    hint = {"port": "; is the address right, and is it running?",
            "no port": ": nothing answered on port 80, where a URL without a port goes; llama.cpp's llama-server "
                       "listens on 8080, vLLM and llama-cpp-python on 8000, Ollama on 11434: write it like "
                       "http://localhost:8080",
            "proxy": "; is the proxy running? Or name gpu-box.example in NO_PROXY"}[given]
    assert str(caught.value) == (f"cannot reach {proxy * (given == 'proxy')}the gpt-oss server at {url}: no connection "
                                 f"within 1 s (timeout=...){hint}")
    assert took < 2.5


def test_retrying_a_connection_shows_what_is_retried_and_the_tries_failed(monkeypatch, capsys):
    """`%gptoss connect` to nothing with many retries sat silent for half a minute before its one-line error."""
    monkeypatch.setattr(remote, "_MAX_WAIT", 0.1)   # waits of 0.1 s, shown after 0.15 s
    monkeypatch.setattr(remote, "_SHOWN_AFTER", 0.15)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    err = _in_time(lambda: RemoteEngine(f"http://127.0.0.1:{port}", retries=4, timeout=2), 3)
    shown = capsys.readouterr().out
    assert str(err).endswith("(tried 5 times)")
    assert f"Cannot reach http://127.0.0.1:{port} yet (ConnectError): 4 of 5 tries failed" in shown, shown
    assert "1 of 5" not in shown   # (not in the first 0.15 s)


@pytest.mark.parametrize("retry_after, asked", [(b"Retry-After: 0.4\r\n", 2), (b"Retry-After: 0\r\n", 2), (b"", 6)])
def test_a_busy_server_is_asked_again_for_at_most_the_waiting_cap(monkeypatch, retry_after, asked):
    """A busy server's short Retry-After was waited for `retries` times, any number (Retry-After: 0 had 1000 retries
    ask a thousand times at once: now the back-off is the shortest wait); one without Retry-After was given up on
    once the doubling back-off passed the longest wait, however many retries were left."""
    monkeypatch.setattr(remote, "_MAX_WAIT", 0.2 if not retry_after else 5.0)
    monkeypatch.setattr(remote, "_MAX_WAITING", 1.0)
    with FakeServer(raw=lambda n: [_status(503, b"Service Unavailable", headers=retry_after)]) as server:
        engine = RemoteEngine(server.url, retries=10, timeout=5)
        err = _in_time(lambda: list(engine.stream(PROMPT, stop=harmony.STOP_TOKENS)), 6)
        assert sum(path == "/v1/completions" for path, _, _ in server.requests) == asked
    after = f" (Retry-After: {retry_after[13:-2].decode()})" if retry_after else ""
    assert str(err) == (f"the server at {server.url} answered /v1/completions with HTTP 503: busy{after} "
                        f"(asked {asked} times; retries stop after 1 s of waiting)")


# ---------------------------------------------------------------- the key in the model's text


@pytest.mark.parametrize("ollama", [False, True])
def test_a_key_the_server_writes_into_the_answer_is_hidden(ollama):
    """A key of 12+ characters never comes up in an answer by chance: the server quoted it, and the chat view, the
    Reply and the conversation (the saved notebook) would keep it."""
    text = f"<|channel|>final<|message|>Your key is {KEY}; again: {KEY}<|return|>"
    for sizes in ((3, 1, 7, 2, 5), (1,), (len(text),)):  # the key cut across chunks, a character each, whole
        with FakeServer(_split(text, sizes), api_key=KEY, ollama=ollama) as server:
            session = Session.connect(server.url, api_key=KEY, session_options={"namespace": {}, "tools": "none"})
            view = _StopAfter(60)
            reply = session.ask("What is my key?", view=view)
        shown = "".join(e.text for e in view.events if type(e).__name__ == "Delta")
        assert reply.final == shown == "Your key is ***; again: ***", sizes
        assert KEY not in repr(session.history) and not reply.errors


def test_a_word_that_is_the_urls_password_stays_in_the_answer_and_is_hidden_in_the_labs_messages():
    """A password of a common word (hunter22) was blanked out wherever the model wrote it: an answer about the
    password became `Hi bob:***`. The model's name (the lab's status line) and the lab's errors still hide it; the
    Authorization header's 16 characters are hidden in the answer too (no answer has them by chance)."""
    text = "<|channel|>final<|message|>Hi bob:hunter22 (Basic Ym9iOmh1bnRlcjIy) and hunter<|return|>"
    with FakeServer(_split(text), models=("gpt-oss-hunter22",)) as server:
        session = Session.connect(server.url.replace("http://", "http://bob:hunter22@"))
        reply = session.ask("hi")
    assert reply.final == "Hi bob:hunter22 (Basic ***) and hunter"
    assert session.engine.name == reply.model == "gpt-oss-***" and session.engine.model == "gpt-oss-hunter22"
    assert "hunter22" not in session.engine.url + repr(session.engine)
    broken = [HEAD, _event("<|channel|>final<|message|>hunter22 is"),
              b'data: {"error": "bad password hunter22 (Ym9iOmh1bnRlcjIy)"}\n\n']
    with FakeServer(raw=lambda n: broken) as server:
        reply = Session.connect(server.url.replace("http://", "http://bob:hunter22@"), retries=0).ask("hi")
    assert reply.final == "hunter22 is"
    assert reply.errors == [f"The turn failed: the server at {server.url} stopped with an error: "
                            "bad password *** (***)"]


def test_the_key_is_hidden_in_what_arrived_before_the_stream_broke():
    answer = [HEAD, _event("<|channel|>final<|message|>key sk-SEC"), _event("RET-1234 and sk-SE"), None]
    with FakeServer(raw=lambda n: answer) as server:
        reply = Session.connect(server.url, api_key=KEY, retries=0).ask("hi")
    assert reply.final == "key *** and sk-SE" and len(reply.errors) == 1


# ---------------------------------------------------------------- Stop before the server answers


def _readers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name in ("gptoss-remote-stream", "gptoss-remote-clock")]


def _gone_within(seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _readers() and time.monotonic() < deadline:
        time.sleep(0.02)
    return not _readers()


@pytest.mark.parametrize("server", ["silent", "busy", "cut", "https"])
def test_stop_before_the_headers_ends_the_reader_at_once(request, server):
    """The turn ended at Stop, but the thread reading the server waited on for the 60 s header clock (or slept
    out a Retry-After or the back-off after a cut connection, and asked the server again)."""
    stalls = {"silent": [30.0], "busy": [_status(503, b"Service Unavailable", headers=b"Retry-After: 5\r\n")],
              "cut": [None]}
    with contextlib.ExitStack() as stack:
        if server == "https":
            certificate = request.getfixturevalue("certificate")  # the other cases run without `cryptography`
            url, listener = _trickling_https(certificate)
            stack.enter_context(listener)
            options = {"verify": certificate[0]}
        else:
            fake = stack.enter_context(FakeServer(raw=lambda n: stalls[server]))
            url, options = fake.url, {}
        assert _gone_within(5)  # no reader of an earlier test is left
        if server == "https":  # a server that never lists its models: an engine made without asking
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(RemoteEngine, "models", lambda self: ["gpt-oss-test"])
                patch.setattr(RemoteEngine, "_is_ollama", lambda self: False)
                session = Session(RemoteEngine(url, timeout=60, **options), namespace={}, tools="none")
        else:
            session = Session.connect(url, timeout=60, retries=3, session_options={"namespace": {}, "tools": "none"})
        reply = session.ask("Say hi", view=_StopAfter(0.5))
        assert reply.interrupted and reply.errors == ["Stopped before the model had written any text: nothing to keep."]
        assert _gone_within(1), _readers()  # so it cannot ask a busy server again either


@contextlib.contextmanager
def _unanswered() -> Iterator[str]:
    """The URL of an address that never answers a connect: a listener whose queue is full (Linux then leaves
    further connections unanswered, as a firewall or a wrong host does)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        queued = [socket.socket() for _ in range(3)]
        for sock in queued:
            sock.setblocking(False)
            sock.connect_ex(listener.getsockname())
        try:
            yield "http://127.0.0.1:%d" % listener.getsockname()[1]
        finally:
            for sock in queued:
                sock.close()


def test_stop_while_connecting_ends_the_reader_at_once():
    """The turn ended at Stop, but the thread reading the server went on connecting to an address that never
    answers until the timeout (60 s here, 120 s by default): a thread left behind for every stopped turn."""
    with _unanswered() as url, pytest.MonkeyPatch.context() as patch:
        patch.setattr(RemoteEngine, "models", lambda self: ["gpt-oss-test"])  # made without asking the server
        patch.setattr(RemoteEngine, "_is_ollama", lambda self: False)
        session = Session(RemoteEngine(url, timeout=60), namespace={}, tools="none")
        assert _gone_within(5)  # no reader of an earlier test is left
        before = threading.active_count()
        reply = session.ask("Say hi", view=_StopAfter(0.5))
        assert reply.interrupted and reply.errors == ["Stopped before the model had written any text: nothing to keep."]
        deadline = time.monotonic() + 1
        while threading.active_count() > before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert threading.active_count() <= before, threading.enumerate()


def test_stop_while_the_name_lookup_hangs_ends_the_reader_at_once(monkeypatch):
    """A name lookup that hangs (a DNS server that does not answer) held the reader after Stop until the resolver
    gave up, and held `RemoteEngine(...)` past its timeout: only the lookup itself is left to end with the resolver."""
    release, lookup = threading.Event(), socket.getaddrinfo

    def hanging(host, *args, **kwargs):  # the system resolver, waiting on a DNS server that never answers
        if host != "gpu-box.test":
            return lookup(host, *args, **kwargs)
        release.wait(30)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    try:
        started = time.monotonic()
        with pytest.raises(RemoteError) as caught:
            RemoteEngine("http://gpu-box.test:8000", timeout=1)
        assert time.monotonic() - started < 2
        assert str(caught.value).startswith("cannot reach the gpt-oss server at http://gpu-box.test:8000: "
                                            "no connection within 1 s (timeout=...)")
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(RemoteEngine, "models", lambda self: ["gpt-oss-test"])  # made without asking the server
            patch.setattr(RemoteEngine, "_is_ollama", lambda self: False)
            session = Session(RemoteEngine("http://gpu-box.test:8000", timeout=60), namespace={}, tools="none")
        assert _gone_within(5)
        reply = session.ask("Say hi", view=_StopAfter(0.5))
        assert reply.interrupted and reply.errors == ["Stopped before the model had written any text: nothing to keep."]
        assert _gone_within(1), _readers()
    finally:
        release.set()


def test_stop_while_a_busy_server_trickles_its_error_body_ends_the_reader_at_once():
    """The error body of a busy answer was read after the header clock had stopped: Stop left the thread reading
    it until the timeout."""
    trickle = [b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n", b"x", 30.0]
    with FakeServer(raw=lambda n: trickle) as server:
        session = Session.connect(server.url, timeout=60, session_options={"namespace": {}, "tools": "none"})
        assert _gone_within(5)
        reply = session.ask("Say hi", view=_StopAfter(0.5))
        assert reply.interrupted and reply.errors == ["Stopped before the model had written any text: nothing to keep."]
        assert _gone_within(1), _readers()


def test_stop_before_the_output_shows_harmony_is_a_stop_not_a_stripping_server():
    """Stop while a server had sent only a little text without a Harmony marker yet (a slow start, a thinking
    preamble) ended the turn with "the server strips Harmony special tokens", blaming the server for the user's
    Stop; the turn is stopped like any other and the conversation goes on."""
    stalls = {1: [HEAD, _event("Thinking"), 20.0]}  # text without a marker, then silent
    answer = [HEAD, _event("<|channel|>final<|message|>Back."), _event(finish="stop")]
    with FakeServer(raw=lambda n: stalls.get(n, answer)) as server:
        session = Session.connect(server.url, timeout=60, session_options={"namespace": {}, "tools": "none"})
        started = time.perf_counter()
        reply = session.ask("Say hi", view=_StopAfter(0.5))
        assert time.perf_counter() - started < 3
        assert reply.interrupted and reply.errors == ["Stopped before the model had written any text: nothing to keep."]
        assert session.ask("Still there?").final == "Back."
