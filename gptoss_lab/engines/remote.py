"""RemoteEngine: gpt-oss on an inference server (llama.cpp, vLLM, Ollama) behind the same Engine protocol.

The session renders the Harmony prompt itself; this engine sends it as a raw streaming completion
(`/v1/completions`, or Ollama's `/api/generate` with `raw: true`) and turns the streamed text,
special tokens included, back into Harmony token ids for the same parser the local engine feeds.
Servers differ in which special tokens they print, so the engine restores what the text implies:
a `<|end|>` before a `<|start|>`, and the stop token (`<|call|>` / `<|return|>`) when the server
reports a stop instead of printing it. Server options: docs/remote.md.
"""
from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import replace
from typing import Any

import httpx
import regex

from .. import harmony
from .base import EngineError, Sampling

_HOLD = 2  # trailing pre-tokenizer pieces that more text could still change
_SNIFF = 256  # characters of output without any Harmony marker before we call the server a stripper
_DOCS = "see docs/remote.md"
_SPECIAL_TEXT = regex.compile(r"<\|[A-Za-z0-9_]+\|>")
_PARTIAL_SPECIAL = regex.compile(r"<(\|[A-Za-z0-9_]*\|?)?$")  # a special token still arriving


class RemoteError(EngineError):
    """A one-line, user-facing reason why the server could not be used."""


@functools.cache
def _splitter() -> regex.Pattern:
    return regex.compile(harmony.O200K_PATTERN)


@functools.cache
def _special_ids() -> dict[str, int]:
    return {name: token for token, name in harmony.special_tokens().items()}


class _Retokenizer:
    """Streamed text in, Harmony ids out, emitting each id once no later text can change it.

    Text between special tokens is held back by its last `_HOLD` pre-tokenizer pieces (a word can
    still grow, whitespace can still regroup) and re-encoded; a special token, complete or still
    arriving (`<|chan`), is a hard boundary.
    """

    def __init__(self) -> None:
        self._text = ""
        self._specials = _special_ids()
        self.in_content = False  # after <|message|>, before the message's end
        self.header = ""  # header text of the current message (recipient, channel)
        self.channel: str | None = None
        self.harmony_seen = False  # a <|channel|> or <|message|> arrived

    def feed(self, text: str) -> list[int]:
        self._text += text
        return self._drain(final=False)

    def flush(self) -> list[int]:
        """End of stream: everything pending is final."""
        return self._drain(final=True)

    def _drain(self, *, final: bool) -> list[int]:
        out: list[int] = []
        while True:
            match = next((m for m in _SPECIAL_TEXT.finditer(self._text) if m.group() in self._specials), None)
            if match is None:
                break
            out += self._ordinary(self._text[: match.start()])
            out += self._special(self._specials[match.group()])
            self._text = self._text[match.end():]
        if final:
            out += self._ordinary(self._text)
            self._text = ""
            return out
        cut = self._partial_special_start()
        head, tail = self._text[:cut], self._text[cut:]
        stable = _splitter().findall(head)[:-_HOLD]
        for piece in stable:  # one at a time: re-splitting them joined could regroup whitespace
            out += self._ordinary(piece)
        self._text = head[sum(map(len, stable)):] + tail
        return out

    def _partial_special_start(self) -> int:
        partial = _PARTIAL_SPECIAL.search(self._text)
        return partial.start() if partial else len(self._text)

    def _ordinary(self, text: str) -> list[int]:
        if not text:
            return []
        if not self.in_content:
            self.header += text
        return harmony.encode(text)

    def _special(self, token: int) -> list[int]:
        out = [token]
        if token == harmony.START and self.in_content:  # the server dropped the <|end|> before it
            out.insert(0, harmony.END)
        if token in (harmony.CHANNEL, harmony.MESSAGE):
            self.harmony_seen = True
        if token == harmony.MESSAGE:
            self.in_content = True
            self.channel = self.header.split("<|channel|>")[-1].split(" ")[0] if "<|channel|>" in self.header else None
        elif token == harmony.CHANNEL and not self.in_content:
            self.header += "<|channel|>"
        elif token in (harmony.START, harmony.END, harmony.RETURN, harmony.CALL):
            self.in_content = False
            self.header = ""
        return out

    def implied_stop(self) -> list[int]:
        """Tokens the server swallowed when it reported a stop: `<|call|>` after a message with a
        recipient, `<|return|>` after a final answer, `<|end|>` after other messages."""
        if not self.in_content:
            return []
        if " to=" in " " + self.header:
            return [harmony.CALL]
        if self.channel in (None, "final"):
            return [harmony.RETURN]
        return [harmony.END]


def _base_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    for suffix in ("/v1/completions", "/v1", "/api"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    return url


def _server_message(response: httpx.Response) -> str:
    """The error text a server put in its body (OpenAI, FastAPI and Ollama shapes), on one line."""
    try:
        body = response.json()
    except ValueError:
        return " ".join(response.text.split())[:200]
    error = body.get("error", body.get("detail", body.get("message", body))) if isinstance(body, dict) else body
    if isinstance(error, dict):
        error = error.get("message", error)
    return " ".join(str(error).split())[:200]


class RemoteEngine:
    """Harmony tokens from a gpt-oss model on an OpenAI-compatible server (llama.cpp, vLLM) or Ollama.

    `url` is the server root (`http://host:8000`, a trailing `/v1` is fine). `model=None` takes the
    server's only model. Connection errors are retried `retries` times; `timeout` (seconds) bounds
    connecting and each wait for the next streamed chunk. Construction checks the server and the
    model name, so a wrong URL or name fails at `Session.connect`, not at the first question.
    """

    def __init__(
        self,
        url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        retries: int = 2,
    ) -> None:
        self.url = _base_url(url)
        self.timeout = timeout
        self.retries = retries
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=httpx.Timeout(timeout))
        self.ollama = self._is_ollama()
        models = self.models()
        if model is None:
            if len(models) != 1:
                raise RemoteError(f"the server at {self.url} serves {len(models)} models "
                                  f"({', '.join(models) or 'none'}): choose one with model=...")
            model = models[0]
        elif model not in models and f"{model}:latest" not in models:  # Ollama's implied tag
            raise RemoteError(f"the server at {self.url} has no model {model!r}; it serves: {', '.join(models) or '(none)'}")
        self.model = model
        self.name = model
        # gpt-oss's recommended sampling, so an unset value means the same on every server
        self.default_sampling = Sampling(temperature=1.0, top_p=1.0)

    # ------------------------------------------------------------ requests

    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """One request with retries on connection errors; HTTP errors become RemoteError."""
        response = self._retrying(lambda: self._client.request(method, path, **kw))
        self._raise_for(response, path)
        return response

    def _retrying(self, call: Callable[[], httpx.Response]) -> httpx.Response:
        """`call()`, retried on connection errors; its failures as one-line RemoteErrors."""
        for attempt in range(self.retries + 1):
            try:
                return call()
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as err:
                if attempt == self.retries:
                    raise RemoteError(
                        f"cannot reach the gpt-oss server at {self.url} ({type(err).__name__}: {err}); "
                        f"is it running? (tried {self.retries + 1} times)"
                    ) from None
                time.sleep(0.5 * 2**attempt)
            except httpx.TimeoutException:
                raise RemoteError(f"the server at {self.url} did not answer within {self.timeout:g} s (timeout=...)") \
                    from None

    def _raise_for(self, response: httpx.Response, path: str) -> None:
        if response.status_code < 400:
            return
        if response.status_code in (401, 403):
            raise RemoteError(
                f"the server at {self.url} refused the request (HTTP {response.status_code}: {_server_message(response)}); "
                "pass api_key=... (or %gptoss connect --api-key-env VAR)"
            )
        raise RemoteError(
            f"the server at {self.url} answered {path} with HTTP {response.status_code}: {_server_message(response)}")

    def _is_ollama(self) -> bool:
        try:
            response = self._retrying(lambda: self._client.get("/api/version"))
            return response.status_code == 200 and "version" in response.json()
        except ValueError:
            return False

    def models(self) -> list[str]:
        """The model names the server serves."""
        if self.ollama:
            return [m["name"] for m in self._request("GET", "/api/tags").json().get("models", [])]
        return [m["id"] for m in self._request("GET", "/v1/models").json().get("data", [])]

    # ------------------------------------------------------------ generation

    def _body(self, prompt: Sequence[int], stop: Collection[int], sampling: Sampling) -> tuple[str, dict]:
        text = harmony.decode(prompt)
        if self.ollama:
            options = {"num_predict": sampling.max_new_tokens, "temperature": sampling.temperature,
                       "top_p": sampling.top_p, "seed": sampling.seed, "repeat_penalty": 1.0, "top_k": 0}
            return "/api/generate", {"model": self.model, "prompt": text, "raw": True, "stream": True,
                                     "options": {k: v for k, v in options.items() if v is not None}}
        body = {
            "model": self.model, "prompt": text, "stream": True, "max_tokens": sampling.max_new_tokens,
            "temperature": sampling.temperature, "top_p": sampling.top_p, "seed": sampling.seed,
            # vLLM: keep special tokens in the text, stop on the Harmony stop ids and say which one stopped
            "skip_special_tokens": False, "spaces_between_special_tokens": False, "stop_token_ids": sorted(stop),
            # llama.cpp: no repetition penalty / top-k / min-p unless asked, as the local engine
            "repeat_penalty": 1.0, "top_k": 0, "min_p": 0.0,
        }
        return "/v1/completions", {k: v for k, v in body.items() if v is not None}

    def _chunks(self, response: httpx.Response) -> Iterator[tuple[str, str | None, Any]]:
        """(text, finish_reason, stop_reason) for each streamed chunk, SSE or Ollama NDJSON."""
        for line in response.iter_lines():
            line = line.strip()
            if not line or line.startswith(":") or line.startswith("event:"):
                continue
            if line.startswith("data:"):
                line = line[5:].strip()
            if line == "[DONE]":
                return
            try:
                data = json.loads(line)
            except ValueError:
                raise RemoteError(
                    f"the server at {self.url} sent something that is not a completion stream: {line[:120]!r}") from None
            if "error" in data:
                message = _server_message(httpx.Response(500, json=data))
                raise RemoteError(f"the server at {self.url} stopped with an error: {message}")
            if self.ollama:
                yield data.get("response", ""), (data.get("done_reason") or "stop") if data.get("done") else None, None
            else:
                choice = (data.get("choices") or [{}])[0]
                yield choice.get("text") or "", choice.get("finish_reason"), choice.get("stop_reason")

    def stream(
        self,
        prompt: Sequence[int],
        *,
        stop: Collection[int],
        sampling: Sampling = Sampling(),
        recorder: Any = None,
    ) -> Iterator[int]:
        """Generated Harmony ids as the server streams them; routing is not visible remotely."""
        if sampling.logits_processor is not None:
            raise RemoteError(
                "a remote server cannot apply this session's logits processor (constrained output); use a local engine")
        if sampling.temperature is None or sampling.top_p is None:
            sampling = replace(
                sampling,
                temperature=self.default_sampling.temperature if sampling.temperature is None else sampling.temperature,
                top_p=self.default_sampling.top_p if sampling.top_p is None else sampling.top_p,
            )
        path, body = self._body(prompt, stop, sampling)
        request = self._client.build_request("POST", path, json=body)
        response = self._retrying(lambda: self._client.send(request, stream=True))
        try:
            if response.status_code >= 400:
                response.read()
                self._raise_for(response, path)
            yield from self._tokens(response, stop, sampling.max_new_tokens)
        except httpx.TimeoutException:
            raise RemoteError(f"the server at {self.url} sent nothing for {self.timeout:g} s (timeout=...)") from None
        except (httpx.TransportError, httpx.StreamError) as err:
            raise RemoteError(f"the connection to {self.url} broke mid-answer ({type(err).__name__}: {err})") from None
        finally:
            response.close()

    def _tokens(self, response: httpx.Response, stop: Collection[int], limit: int) -> Iterator[int]:
        retok = _Retokenizer()
        pending: list[int] = []  # held until the output has shown a Harmony marker
        count = seen = 0
        finish = stop_reason = None
        for text, finish, stop_reason in self._chunks(response):
            seen += len(text)
            pending += retok.feed(text)
            if finish:
                break
            if not retok.harmony_seen:
                if seen > _SNIFF:
                    self._stripped()
                continue
            out, done = _until_stop(pending, stop, limit - count)
            yield from out
            count, pending = count + len(out), []
            if done:
                return
        pending += retok.flush()
        if seen and not retok.harmony_seen:
            self._stripped()
        if finish == "stop":  # the server stopped on a token it may not have printed
            pending += [stop_reason] if isinstance(stop_reason, int) and stop_reason in stop else retok.implied_stop()
        yield from _until_stop(pending, stop, limit - count)[0]

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


def _until_stop(ids: list[int], stop: Collection[int], room: int) -> tuple[list[int], bool]:
    """The ids up to and including the first stop token, at most `room`; and whether generation is over."""
    for i, token in enumerate(ids[:room]):
        if token in stop:
            return ids[: i + 1], True
    return ids[:room], len(ids) >= room
