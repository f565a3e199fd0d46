"""RemoteEngine: what it holds back (the key check, the retokenizer) at Ctrl-C and Stop; which hosts are this
machine (no proxy, no plain-http warning, connected to loopback)."""
from __future__ import annotations

import _thread
import contextlib
import importlib.util
import socket
import threading
import time
import warnings

import pytest

from gptoss_lab import Session, harmony
from gptoss_lab.engines import remote
from gptoss_lab.engines.base import Sampling
from gptoss_lab.engines.remote import RemoteEngine, RemoteError, RemoteWarning
from gptoss_lab.guides import guide
from test_remote import HEAD, KEY, PROMPT, FakeServer, _event  # tests/ is on sys.path

PASTED = "sk-proj-Zq81xKeyPasted"   # a key pasted where a value belongs
HIDDEN = "(… is not shown: it looks like an API key, which goes in an environment variable: --api-key-env VAR)"
LONG_KEY = KEY + "-567890"  # 21 characters: hidden wherever the server writes it whole
# what a 404 to the model list asks (the URL's path was not the server's root)
NO_ROOT = (": is it an OpenAI-compatible server (vLLM, llama.cpp, SGLang) or Ollama, and the URL its root? "
           f"see {guide('remote.md')}")


@contextlib.contextmanager
def _ctrl_c_after(sent: threading.Event, seconds: float):
    """Ctrl-C (a KeyboardInterrupt in this thread) `seconds` after the server `sent` all it had; a test fails, not
    the test run, when it reaches the test itself instead of the turn."""
    def press() -> None:
        sent.wait(10)
        time.sleep(seconds)
        _thread.interrupt_main()

    presser = threading.Thread(target=press, daemon=True)
    presser.start()
    try:
        yield
        presser.join()
        time.sleep(0.2)  # a Ctrl-C that came after the block is raised here
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C reached the test: the turn did not take it")


def _silent_after(sent: threading.Event, *texts: str):
    """A stream that sends `texts` as events, sets `sent`, then sends nothing for 20 s (the user stops it meanwhile)."""
    yield HEAD
    yield from (_event(text) for text in texts)
    sent.set()
    yield 20.0


@pytest.mark.parametrize(("texts", "final"), [
    (["<|channel|>final<|message|>", "Hi there my good friend"], "Hi there my good friend"),  # the retokenizer's pieces
    (["<|channel|>final<|message|>It has"], "It has"),  # "s" could begin the key: held by the key check
    (["<|channel|>final<|message|>Your key is ", LONG_KEY, ". Noted"], "Your key is ***. Noted"),
])
def test_ctrl_c_while_the_server_streams_keeps_what_it_sent_and_still_hides_the_key(texts, final, ctrl_c_raises):
    """Ctrl-C while a server streamed lost the words the engine held back (the retokenizer's last pieces, the text
    the key check held): `Hi there my good friend` was kept as `Hi there my`, `It has` as nothing at all."""
    sent = threading.Event()
    with FakeServer(raw=lambda n: _silent_after(sent, *texts)) as server:
        session = Session.connect(server.url, api_key=LONG_KEY, timeout=60,
                                  session_options={"namespace": {}, "tools": "none"})
        with _ctrl_c_after(sent, 0.5):
            started = time.perf_counter()
            reply = session.ask("Say hi")
        assert time.perf_counter() - started < 5  # not the server's 20 s
    assert reply.interrupted and reply.errors == ["Stopped: the partial reply is kept."]
    assert reply.final == final and LONG_KEY not in repr(session.history)


def test_stop_while_the_server_is_silent_gives_the_text_the_key_check_held():
    """At Stop the reading thread was abandoned with the text the key check held (`s` of `It has` could begin the
    key), so the stream's ids ended with `It ha`; the retokenizer's pieces did come out."""
    sent, stop_at = threading.Event(), []
    with FakeServer(raw=lambda n: _silent_after(sent, "<|channel|>final<|message|>It has")) as server:
        engine = RemoteEngine(server.url, api_key=LONG_KEY, timeout=60)

        def stop_requested() -> bool:  # Stop, half a second after the server sent all it had
            if sent.is_set() and not stop_at:
                stop_at.append(time.perf_counter() + 0.5)
            return bool(stop_at) and time.perf_counter() >= stop_at[0]

        ids = list(engine.stream(PROMPT, stop=harmony.STOP_TOKENS, sampling=Sampling(temperature=0),
                                 should_stop=stop_requested))
    assert harmony.decode(ids) == "<|channel|>final<|message|>It has"


class _StopAfterSent:
    """A view whose Stop button is clicked half a second after the server `sent` all it had."""

    def __init__(self, sent: threading.Event) -> None:
        self.sent, self.clicked_at, self.shown = sent, None, ""

    def handle(self, event) -> None:
        self.shown += getattr(event, "text", "") if type(event).__name__ == "Delta" else ""

    def approve(self, call) -> None:
        return None

    @property
    def stop_requested(self) -> bool:
        if self.sent.is_set() and self.clicked_at is None:
            self.clicked_at = time.perf_counter() + 0.5
        return self.clicked_at is not None and time.perf_counter() >= self.clicked_at


@pytest.mark.parametrize(("texts", "final"), [
    (["<|channel|>final<|message|>", "Hi there", " my good", " friend"], "Hi there my good friend"),
    (["<|channel|>final<|message|>Your key is ", LONG_KEY, ". Noted"], "Your key is ***. Noted"),
])
def test_stop_while_the_server_streams_keeps_what_it_sent_and_still_hides_the_key(texts, final):
    """Stop (the view's button) while a server streamed ended the turn at the next token, losing the words the
    engine gave out as its stream ended (the retokenizer's pieces): `Hi there my good friend` was kept as
    `Hi there my`. Ctrl-C kept them; Stop now lets the engine end its stream and keeps them too."""
    sent = threading.Event()
    with FakeServer(raw=lambda n: _silent_after(sent, *texts)) as server:
        session = Session.connect(server.url, api_key=LONG_KEY, timeout=60,
                                  session_options={"namespace": {}, "tools": "none"})
        view = _StopAfterSent(sent)
        started = time.perf_counter()
        reply = session.ask("Say hi", view=view)
        assert time.perf_counter() - started < 5  # not the server's 20 s
    assert reply.interrupted and reply.errors == ["Stopped: the partial reply is kept."]
    assert reply.final == view.shown == final and LONG_KEY not in repr(session.history)


# ---------------------------------------------------------------- which hosts are this machine


@pytest.mark.parametrize("host", ["localhost.", "api.localhost", "API.LocalHost.", "127.1", "0x7f.0.0.1", "0.0.0.0",
                                  "[::ffff:127.0.0.1]"])
def test_every_spelling_of_this_machine_is_asked_directly_and_quietly(monkeypatch, host):
    """`localhost.` and `api.localhost` (loopback by RFC 6761) were asked of DNS (here: no such name), or through
    the environment's proxy, with a warning that the key crossed a network in plain text; so were 127.1 and 0.0.0.0
    (the address vLLM prints), which the system connects to this machine."""
    with FakeServer(api_key="sk-local-key") as proxy, FakeServer(api_key="sk-local-key") as server:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RemoteWarning)
            engine = RemoteEngine(server.url.replace("127.0.0.1", host), api_key="sk-local-key", timeout=5, retries=0)
        assert engine.model == "gpt-oss-test" and server.requests and not proxy.requests


def test_only_this_machine_counts_as_loopback():
    """The one rule behind the plain-http warning, the proxy bypass and the connection: names that merely look local
    (`localhost.example.com`, `127.0.0.1.`, which the system asks DNS about) are other machines."""
    here = ["localhost", "LOCALHOST.", "api.localhost", "a.b.localhost.", "::1", "[::1]", "127.0.0.1", "127.9.8.7",
            "127.1", "0x7f.1", "::ffff:127.0.0.1", "0.0.0.0", "::"]
    elsewhere = ["gpu-box", "localhost.example.com", "mylocalhost", "localhost.localdomain", "127.0.0.1.",
                 "10.0.0.1", "::ffff:10.0.0.1", "fe80::1", "", "128.0.0.1"]
    assert [h for h in here if not remote._loopback(h)] == [] and [h for h in elsewhere if remote._loopback(h)] == []


# ---------------------------------------------------------------- the environment's proxy


@pytest.mark.parametrize(("proxy", "why"), [
    ("socks5://127.0.0.1:9", "is a SOCKS proxy, which needs the socksio package (pip install socksio), "
                             "or name gpu-box.example in NO_PROXY"),
    ("ftp://user:pw-secret@127.0.0.1:9",
     "is no http, https or socks5 URL: correct it, or name gpu-box.example in NO_PROXY"),
])
def test_a_proxy_of_the_environment_that_cannot_be_used_is_said_in_one_line(monkeypatch, proxy, why):
    """ALL_PROXY=socks5://... without socksio raised httpx's ImportError (`pip install httpx[socks]`), an ftp:// one
    its ValueError ("Unknown scheme for proxy URL"), as tracebacks out of `Session.connect`."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ALL_PROXY", proxy)
    if proxy.startswith("socks") and importlib.util.find_spec("socksio") is not None:
        pytest.skip("socksio is installed: the SOCKS proxy can be used")
    with pytest.raises(RemoteError) as caught:
        RemoteEngine("http://gpu-box.example:8000", timeout=1, retries=0)
    assert str(caught.value) == ("the proxy the environment names for http:// (HTTPS_PROXY, HTTP_PROXY or ALL_PROXY) "
                                 + why)


class _StopAtFirstText:
    """A view whose Stop button is clicked as the first text of the reply shows."""

    def __init__(self) -> None:
        self.clicked_at, self.shown = None, ""

    def handle(self, event) -> None:
        if type(event).__name__ == "Delta":
            self.shown += event.text
            self.clicked_at = self.clicked_at or time.perf_counter()

    def approve(self, call) -> None:
        return None

    @property
    def stop_requested(self) -> bool:
        return self.clicked_at is not None


def test_stop_while_one_event_of_megabytes_is_read_ends_the_turn_at_once():
    """A Stop while the engine turned one event of 2 MB into ids took effect once all of it was (seconds later),
    and the reply kept the whole event the user had stopped; now Stop is asked between slices of the event."""
    sent = threading.Event()
    with FakeServer(raw=lambda n: _silent_after(sent, "<|channel|>final<|message|>" + "word " * 400_000)) as server:
        session = Session.connect(server.url, timeout=60, session_options={"namespace": {}, "tools": "none"})
        view = _StopAtFirstText()
        reply = session.ask("Say hi", view=view, max_tokens=10**6)
        ended = time.perf_counter()
    assert reply.interrupted and reply.errors == ["Stopped: the partial reply is kept."]
    assert ended - view.clicked_at < 1.0
    assert reply.final == view.shown and 0 < len(reply.final) < 100_000


def _usage_errors(*lines: str, cell: str | None = None) -> list[str]:
    """The one-line UsageError each `%gptoss` line raises (each `%%gptoss` line above `cell`, when given), run in a
    fresh IPython shell with the extension loaded."""
    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    errors = []
    try:
        shell.run_line_magic("load_ext", "gptoss_lab")
        for line in lines:
            with pytest.raises(UsageError) as caught:
                shell.run_line_magic("gptoss", line) if cell is None else shell.run_cell_magic("gptoss", line, cell)
            errors.append(str(caught.value))
    finally:
        InteractiveShell.clear_instance()
    return errors


@pytest.mark.parametrize("line", ["connect {url} --api-key-env sk-proj-Zq81xKeyPasted", "connect {url} --api-key "
                                  "sk-proj-Zq81xKeyPasted", "connect {url} --api-key=sk-proj-Zq81xKeyPasted"])
def test_a_key_pasted_where_its_variables_name_belongs_is_never_printed(line):
    """`%gptoss connect URL --api-key-env sk-...` said "the environment variable sk-... is not set": the key, printed,
    stayed in the saved notebook. `--api-key`, which argparse read as --api-key-env, is no option (options are written
    whole): it names the option meant, the key hidden. A conventional name is still shown."""
    with FakeServer() as server:
        pasted, named = _usage_errors(line.format(url=server.url), f"connect {server.url} --api-key-env NO_SUCH_VAR")
    assert pasted == ("%gptoss connect: the environment variable given (its name is not shown: it looks like a key, not "
                      "a variable's name such as OPENAI_API_KEY) is not set" if "--api-key-env" in line else
                      f"%gptoss connect: unrecognized arguments: --api-key{line.partition('--api-key')[2][0]}…: did you "
                      f"mean '--api-key-env'? {HIDDEN} (see %gptoss connect --help)")
    assert named == "%gptoss connect: the environment variable NO_SUCH_VAR is not set"


def test_a_variables_name_with_a_space_is_said_to_be_no_name_not_a_key():
    """`--api-key-env "A B"` was answered "its name is not shown: it looks like a key": a name with a space is simply
    no environment variable's name (connect's and browse's alike)."""
    no_name = ("argument --api-key-env: the name given holds a space, which no environment variable's name holds "
               "(names are letters, digits and _, such as OPENAI_API_KEY) (see %gptoss {} --help)")
    errors = _usage_errors('connect http://127.0.0.1:1 --api-key-env "A B"', 'browse exa --api-key-env "MY KEY"',
                           "connect http://127.0.0.1:1 --api-key-env OPENAI_API_KEY=sk-proj-Zq81xKeyPasted")
    assert errors[0] == "%gptoss connect: " + no_name.format("connect")
    assert errors[1] == "%gptoss browse: " + no_name.format("browse")
    assert "holds an = sign" in errors[2] and "Zq81xKeyPasted" not in errors[2]


@pytest.mark.parametrize("value", ["", "  \n"])
def test_a_key_variable_that_is_empty_is_said_so_not_pass_a_key(monkeypatch, value):
    """`--api-key-env VAR` with VAR set but empty (an `export VAR=` before the key was pasted) sent no key, and the
    server's 401 said "pass api_key=... (or %gptoss connect --api-key-env VAR)": what the user had just done."""
    monkeypatch.setenv("LAB_EMPTY_KEY", value)
    with FakeServer(api_key=LONG_KEY) as server:
        [caught] = _usage_errors(f"connect {server.url} --api-key-env LAB_EMPTY_KEY")
    assert caught == "%gptoss connect: the environment variable LAB_EMPTY_KEY is empty: put the API key in it"
    assert not server.requests  # nothing was asked without the key


@pytest.mark.parametrize("words, shown", [("sk-proj-Zq81xKeyPasted", "…"),
                                          ("--api_key=sk-proj-Zq81xKeyPasted", "--api_key=…"),
                                          ("--key sk-proj-Zq81xKeyPasted", "--key …")])
def test_a_key_written_on_the_connect_line_is_not_printed_back(words, shown):
    """`%gptoss connect URL sk-...` (or `--api_key=sk-...`) said "unrecognized arguments: sk-...": the key, printed,
    stayed in the saved notebook. A word that may be a key is not shown; others still are."""
    caught, plain = _usage_errors(f"connect http://127.0.0.1:9 {words}", "connect http://127.0.0.1:9 --timout 5")
    assert caught == f"%gptoss connect: unrecognized arguments: {shown} {HIDDEN} (see %gptoss connect --help)"
    assert plain == "%gptoss connect: unrecognized arguments: --timout 5: did you mean '--timeout'? (see %gptoss connect --help)"



@pytest.mark.parametrize("line", ["connect {url} --model {key}", "connect {url} --model={key}", "connect {key}",
                                  "connect --url {key}", "connect {url} --timeout {key}", "connect {url} --retries {key}",
                                  "connect {url} --ca-bundle {key}", "browse {key}", "use {key}", "config seed={key}",
                                  "config effort={key}"])
def test_a_key_pasted_in_any_option_of_a_command_is_never_printed(line):
    """`%gptoss connect URL --model sk-...` said "the server ... has no model 'sk-...'", `connect --url sk-...` hinted
    "`%gptoss connect sk-...`", `config seed=sk-...` "seed must be a whole number, not 'sk-...'": the key, printed,
    stayed in the saved notebook. Whatever the option, the error shows `…` and says why; other values are shown."""
    with FakeServer() as server:
        hidden, shown = _usage_errors(line.format(url=server.url, key=PASTED), line.format(url=server.url, key="gpt-x"))
    assert PASTED.lower() not in hidden.lower() and len(hidden.splitlines()) == 1 and hidden.startswith("%gptoss")
    assert HIDDEN in hidden or line == "connect --url {key}", hidden   # (its hint names the URL, not the value)
    assert "gpt-x" in shown and HIDDEN not in shown, shown


@pytest.mark.parametrize("key", ["sk-SECRET-1234-567890", "hf_abcdEFGH1234ijkl5678mnop", "AKIAIOSFODNN7EXAMPLE",
                                 "123e4567-e89b-12d3-a456-426614174000", "Zq81xKeyPasted1234abcd=="])
def test_a_keys_kinds_are_hidden_and_a_name_of_short_words_is_shown(key):
    """Every word of 20 characters with a digit and a letter was taken for a key, so `%gptoss load
    gpt-oss-20b-finetune-v2` (a folder not there) said "no such ... … (… is not shown: it looks like an API key ...)"
    about the name the user typed. A key's prefix or a random run of 12 marks a key; a name of short words is shown."""
    name = "gpt-oss-20b-finetune-v2"
    hidden, shown = _usage_errors(f"use {key}", f"load {name}")
    assert key.lower() not in hidden.lower() and HIDDEN in hidden, hidden
    assert name in shown and HIDDEN not in shown, shown


@pytest.mark.parametrize("line", ["--json {key}", "-o {key}", "--tools {key}", "--seed {key}", "--ablate {key}",
                                  "--effort {key}"])
def test_a_key_pasted_in_a_cells_option_is_never_printed(line):
    """`%%gptoss --tools sk-...` said "unknown tool 'sk-...'", `--seed sk-...` "--seed must be a whole number, not
    'sk-...'": the cell's error shows `…` instead, as a command's does."""
    [hidden] = _usage_errors(line.format(key=PASTED), cell="What is 2+2?")
    assert PASTED.lower() not in hidden.lower() and HIDDEN in hidden and hidden.startswith("%%gptoss"), hidden


def test_connect_to_a_server_of_several_models_says_the_option_that_names_one():
    """`%gptoss connect URL` to a server of two models said "choose one with model=...", the Python keyword, which the
    magic refuses as a stray word: it names the option too, as the other connect errors do."""
    with FakeServer(models=("gpt-oss-20b", "gpt-oss-120b")) as server:
        [said] = _usage_errors(f"connect {server.url}")
    assert said == (f"%gptoss connect: the server at {server.url} serves 2 models (gpt-oss-20b, gpt-oss-120b): choose "
                    "one with model=... (%gptoss connect URL --model NAME)")


def test_a_key_in_the_urls_host_name_is_never_printed():
    """A gateway that takes its key as a host name's label (`https://sk-....gateway.example/v1`) had it printed in every
    connect error: the label is written `…` as a path's is (a name under localhost reaches the local fake server)."""
    with FakeServer() as server:
        port = server.url.rsplit(":", 1)[1]
        [said] = _usage_errors(f"connect http://{PASTED}.localhost:{port}/x/v1")
    assert PASTED.lower() not in said.lower(), said
    assert said == (f"%gptoss connect: the server at http://….localhost:{port}/x answered /v1/models with HTTP 404: Not "
                    f"Found{NO_ROOT}")


def test_a_key_in_the_urls_path_is_never_printed():
    """A gateway that takes its key in the path (`https://host/sk-.../v1`) had it printed in every connect error and in
    "Connected to ..." and `%gptoss status`: a path segment that looks like a key is written `…`, the request still
    goes to the URL given."""
    with FakeServer() as server:
        [said] = _usage_errors(f"connect {server.url}/{PASTED}/v1")
        with pytest.raises(RemoteError) as caught:
            RemoteEngine(f"{server.url}/{PASTED}")
        asked = [path for path, _, _ in server.requests]
    assert said == f"%gptoss connect: the server at {server.url}/… answered /v1/models with HTTP 404: Not Found{NO_ROOT}"
    assert str(caught.value) == said.removeprefix("%gptoss connect: ")
    assert f"/{PASTED}/v1/models" in asked   # (the key still goes to the server, in the path it was given)


def test_a_url_without_a_port_where_nothing_listens_names_port_80_and_the_servers_ports():
    """`%gptoss connect http://localhost` (llama.cpp's llama-server listens on 8080) said "cannot reach ... is it
    running?" without saying it had tried port 80: the line names the port tried and the servers' own ones; a URL
    that names its port is told nothing of the sort."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 80)) == 0:
            pytest.skip("something listens on port 80 of this machine")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    said = _usage_errors("connect http://localhost --retries 0", f"connect localhost:{port} --retries 0",
                         "connect http://localhost: --retries 0")   # (a colon without a port: port 80 too)
    assert said[0] == ("%gptoss connect: cannot reach the gpt-oss server at http://localhost (ConnectError: [Errno 111] "
                       "Connection refused): nothing listens on port 80, where a URL without a port goes; llama.cpp's "
                       "llama-server listens on 8080, vLLM and llama-cpp-python on 8000, Ollama on 11434: write it like "
                       "http://localhost:8080 (tried 1 time)")
    assert said[1].endswith("Connection refused); is it running? (tried 1 time)") and "port 80" not in said[1]
    assert said[2] == said[0]


def test_a_key_in_the_urls_host_name_is_not_printed_by_the_plain_http_warning_or_the_proxy_line(monkeypatch):
    """The plain-http warning ("the API key goes unencrypted over http:// to sk-proj-....gateway") and the proxy's
    "name HOST in NO_PROXY" quoted the host name whole, a key in its label too: it is written `…` there as in the URL."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ALL_PROXY", "ftp://127.0.0.1:9")
    with pytest.warns(RemoteWarning) as warned, pytest.raises(RemoteError) as caught:
        RemoteEngine(f"http://{PASTED}.gateway.example:8000", api_key="sk-other-key-given", timeout=1, retries=0)
    said = [str(warning.message) for warning in warned] + [str(caught.value)]
    assert not any(PASTED.lower() in line.lower() for line in said), said
    assert said[0].startswith("the API key goes unencrypted over http:// to ….gateway.example: ")
    assert said[-1].endswith("is no http, https or socks5 URL: correct it, or name ….gateway.example in NO_PROXY")


def test_a_server_url_given_to_load_as_an_option_says_to_connect():
    """`%gptoss load --url http://localhost:8080` (a new user's guess) read "unrecognized arguments: --url (see %gptoss
    load --help)", whose help names no server: the line says a url goes to `%gptoss connect`, as that line is written."""
    said = _usage_errors("load --url http://localhost:8080", "load --url=localhost:8080")
    hint = ": a url is given to `%gptoss connect`, written without --url: `%gptoss connect {}` (see %gptoss load --help)"
    assert said == ["%gptoss load: unrecognized arguments: --url" + hint.format("http://localhost:8080"),
                    "%gptoss load: unrecognized arguments: --url=localhost:8080" + hint.format("localhost:8080")]


def test_a_refusal_is_said_when_another_address_of_the_name_is_unreachable(monkeypatch):
    """`localhost` is 127.0.0.1 and ::1: where 127.0.0.1 refused and ::1 cannot be reached (a machine without IPv6),
    the line quoted the last failure ("Network is unreachable") and not that nothing listens on port 80."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        refused = s.getsockname()
    addresses = [(socket.AF_INET, socket.SOCK_STREAM, 0, "", refused),
                 (socket.AF_INET, socket.SOCK_STREAM, 0, "", ("255.255.255.255", 80))]   # unreachable at once
    monkeypatch.setattr(remote, "_lookup", lambda host, port, waited: addresses)
    with pytest.raises(RemoteError) as caught:
        RemoteEngine("http://localhost", retries=0, timeout=5)
    assert str(caught.value).startswith("cannot reach the gpt-oss server at http://localhost (ConnectError: [Errno 111] "
                                        "Connection refused): nothing listens on port 80, "), str(caught.value)


def test_a_proxy_of_the_environment_that_refuses_is_named_not_the_servers_port(monkeypatch):
    """Where HTTP_PROXY names a proxy that is down, `%gptoss connect http://gpu-box.example` read "cannot reach the
    gpt-oss server ... nothing listens on port 80": the server was never asked. The line names the proxy instead."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:%d" % s.getsockname()[1])
    with pytest.raises(RemoteError) as caught:
        RemoteEngine("http://gpu-box.example", retries=0, timeout=5)
    assert str(caught.value) == (
        "cannot reach the proxy the environment names for http:// (HTTPS_PROXY, HTTP_PROXY or ALL_PROXY) on the way to "
        "the gpt-oss server at http://gpu-box.example (ConnectError: [Errno 111] Connection refused); is the proxy "
        "running? Or name gpu-box.example in NO_PROXY (tried 1 time)")


def test_an_unloaded_servers_session_says_to_connect_again_not_to_load(lab_shell, capsys):
    """After `Session.unload()` (or `%gptoss unload`) of a session connected to a server, asking again said "load a
    model (%gptoss load NAME, or Session.load)": the lab knew the server; each line now gives its connect line."""
    from gptoss_lab.session import TurnError

    with FakeServer(["<|channel|>final<|message|>Hi"]) as server:
        session = Session.connect(server.url, session_options={"tools": "none"})
        session.unload()
        with pytest.raises(TurnError) as refused:
            session.ask("again")
        lab_shell.run_line_magic("gptoss", f"connect {server.url}")
        capsys.readouterr()
        lab_shell.run_line_magic("gptoss", "unload")
        lab_shell.run_line_magic("gptoss", "status")
        unloaded = capsys.readouterr().out
    assert str(refused.value) == (f"gpt-oss-test was unloaded: connect to it again (Session.connect('{server.url}'), "
                                  f"or %gptoss connect {server.url}) to ask again")
    assert " ".join(unloaded.split()).count(f"`%gptoss connect {server.url}` for gpt-oss-test again") == 2, unloaded
