"""`%gptoss` and `%%gptoss`: parse the options, pick a view, hand over to the Session. Nothing else."""
from __future__ import annotations

import argparse
import re
import shlex
import string
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class

from .harmony import EFFORTS
from .session import APPROVALS, Session

_FIELD = re.compile(r"\{([A-Za-z_][\w.]*(?:\[[^\[\]{}]+\])*)\}")


class _Parser(argparse.ArgumentParser):
    """argparse that reports mistakes as one-line UsageErrors instead of exiting the kernel."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        raise UsageError(message or self.format_usage())


def _cell_parser() -> _Parser:
    p = _Parser(prog="%%gptoss", add_help=False, description="Ask the loaded gpt-oss model; the cell body is the prompt.")
    p.add_argument("--effort", "--reasoning", "-e", dest="effort", choices=EFFORTS, help="reasoning effort for this cell")
    p.add_argument("--approval", "--approve", "-a", dest="approval", choices=APPROVALS,
                   help="python/function calls: run (auto), ask first, or never run")
    p.add_argument("--tools", help="comma list: python and/or names of functions in your namespace; none for no tools")
    p.add_argument("--new", action="store_true", help="start a new conversation with this cell")
    p.add_argument("-o", "--output", dest="output", metavar="NAME", help="also keep the Reply in this variable")
    p.add_argument("--routing", "-r", action="store_true", help="record expert routing of every token")
    p.add_argument("--max-tokens", type=int, dest="max_new_tokens", help="max new tokens per model call")
    p.add_argument("--temperature", "-t", type=float)
    p.add_argument("--top-p", type=float, dest="top_p")
    p.add_argument("--seed", type=int)
    p.add_argument("--json", dest="response_format", metavar="SCHEMA_VAR",
                   help="answer in the JSON schema held by this variable (pydantic model, dataclass or dict)")
    p.add_argument("--constrain", action="store_true", help="with --json: constrain decoding to the schema")
    p.add_argument("--timeout", type=float, help="python tool timeout in seconds for this session")
    p.add_argument("--text", action="store_true", help="plain text view instead of the chat widget")
    return p


def _line_parser() -> _Parser:
    p = _Parser(prog="%gptoss", add_help=False)
    sub = p.add_subparsers(dest="command", parser_class=_Parser, required=True)
    load = sub.add_parser("load", help="load a checkpoint into this kernel: tiny, a folder, or a hub id")
    load.add_argument("model", nargs="?", default="tiny")
    load.add_argument("--device")
    load.add_argument("--dtype")
    load.add_argument("--device-map", dest="device_map")
    connect = sub.add_parser("connect", help="use an OpenAI-compatible server (vLLM, llama.cpp, Ollama)")
    connect.add_argument("url")
    connect.add_argument("--model")
    connect.add_argument("--api-key-env", dest="api_key_env", help="environment variable holding the API key")
    use = sub.add_parser("use", help="drive a Session object you made in Python from %%gptoss cells")
    use.add_argument("variable")
    sub.add_parser("status", help="model, settings and conversation length")
    sub.add_parser("reset", help="forget the conversation")
    history = sub.add_parser("history", help="the conversation so far")
    history.add_argument("--export", action="store_true", help="as raw Harmony text")
    config = sub.add_parser("config", help="change settings: effort=high approval=auto timeout=60 max_tokens=512 ...")
    config.add_argument("settings", nargs="*", metavar="KEY=VALUE")
    sub.add_parser("routing", help="show the last reply's expert routing")
    return p


def interpolate(text: str, namespace: dict[str, Any]) -> str:
    """Replace `{name}`, `{name.attr}`, `{name[0]}` with values from the namespace; leave other braces."""
    formatter = string.Formatter()

    def value(match: re.Match[str]) -> str:
        try:
            return str(formatter.get_field(match.group(1), (), namespace)[0])
        except (KeyError, AttributeError, IndexError, TypeError, ValueError):
            return match.group(0)

    return _FIELD.sub(value, text)


@magics_class
class GptossMagics(Magics):
    """`%gptoss COMMAND` manages the model and session; `%%gptoss [options]` asks it."""

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self.session: Session | None = None

    @line_cell_magic
    def gptoss(self, line: str, cell: str | None = None) -> Any:
        """%gptoss load|connect|status|reset|history|config|routing ... ; %%gptoss [--effort ...] prompt"""
        try:
            words = shlex.split(line)
        except ValueError as err:
            raise UsageError(f"%gptoss: {err}") from None
        if cell is None:
            return self._command(_line_parser().parse_args(words or ["status"]))
        return self._ask(_cell_parser().parse_args(words), cell)

    # ------------------------------------------------------------ %%gptoss

    def _ask(self, opts: argparse.Namespace, cell: str) -> None:
        prompt = interpolate(cell.strip(), self.shell.user_ns)
        if not prompt:
            raise UsageError("%%gptoss: the cell is empty; write your question below the magic line.")
        session = self._session()
        if opts.timeout is not None:
            session.timeout = opts.timeout
        response_format = None
        if opts.response_format:
            if opts.response_format not in self.shell.user_ns:
                raise UsageError(f"%%gptoss --json: no variable named {opts.response_format!r}")
            response_format = self.shell.user_ns[opts.response_format]
        if opts.new:
            session.reset()
        tools = "" if opts.tools == "none" else opts.tools
        view = _make_view(text=opts.text)
        reply = _one_line(
            session.ask, prompt, effort=opts.effort, approval=opts.approval,
            tools=tools, routing=opts.routing, view=view,
            max_new_tokens=opts.max_new_tokens, temperature=opts.temperature, top_p=opts.top_p,
            seed=opts.seed, response_format=response_format, constrain=opts.constrain,
        )
        self.shell.user_ns["_gptoss"] = reply  # like `_`: the last reply, for code in the next cell
        if opts.output:
            self.shell.user_ns[opts.output] = reply

    def _session(self) -> Session:
        if self.session is None:
            print("No model loaded: using the bundled gpt-oss-tiny (a toy for learning; "
                  "`%gptoss load openai/gpt-oss-20b` on a GPU for the real thing).")
            self.session = _one_line(Session.load, "tiny")
        return self.session

    # ------------------------------------------------------------ %gptoss COMMAND

    def _command(self, opts: argparse.Namespace) -> Any:
        if opts.command == "load":
            options = {k: getattr(opts, k) for k in ("device", "dtype", "device_map") if getattr(opts, k)}
            self.session = _keep_settings(_one_line(Session.load, opts.model, **options), self.session)
            print(f"Loaded {self.session.engine.name}.")
        elif opts.command == "connect":
            api_key = _env_key(opts.api_key_env)
            session = _one_line(Session.connect, opts.url, model=opts.model, api_key=api_key)
            self.session = _keep_settings(session, self.session)
            print(f"Connected to {opts.url} ({self.session.engine.name}).")
        elif opts.command == "use":
            session = self.shell.user_ns.get(opts.variable)
            if not isinstance(session, Session):
                raise UsageError(f"%gptoss use: {opts.variable!r} is not a gptoss_lab.Session")
            self.session = session
            self._status()
        elif opts.command == "reset":
            if self.session:
                self.session.reset()
            print("Conversation cleared.")
        elif opts.command == "config":
            session = self._session()
            for key, value in _settings(opts.settings).items():
                setattr(session, key, value)
            self._status()
        elif opts.command == "history":
            session = self._session()
            if opts.export:
                print(session.export())
            else:
                from .widgets.transcript import Transcript

                from IPython.display import display

                for reply in session.replies:
                    display(Transcript.from_reply(reply))
        elif opts.command == "routing":
            return self._last_routing()
        else:
            self._status()
        return None

    def _status(self) -> None:
        if self.session is None:
            print("No model loaded (the first %%gptoss cell loads gpt-oss-tiny). Use `%gptoss load NAME`.")
            return
        s = self.session
        print(f"model: {s.engine.name} | effort: {s.effort} | approval: {s.approval} | "
              f"timeout: {s.timeout} s | max tokens: {s.max_new_tokens} | turns: {len(s.replies)}")

    def _last_routing(self) -> Any:
        replies = self.session.replies if self.session else []
        if not replies or replies[-1].routing is None:
            raise UsageError("%gptoss routing: the last reply has no routing; run a cell with `%%gptoss --routing`.")
        return replies[-1].routing


_SETTINGS: dict[str, tuple[str, Any]] = {
    "effort": ("effort", EFFORTS), "reasoning": ("effort", EFFORTS),
    "approval": ("approval", APPROVALS), "approve": ("approval", APPROVALS),
    "timeout": ("timeout", float), "max_tokens": ("max_new_tokens", int),
    "instructions": ("instructions", str), "tools": ("tools", str),
}


def _settings(pairs: list[str]) -> dict[str, Any]:
    """`effort=high timeout=60` -> {"effort": "high", "timeout": 60.0}, with one-line errors."""
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in _SETTINGS:
            raise UsageError(f"%gptoss config: expected KEY=VALUE with KEY in {', '.join(_SETTINGS)}; got {pair!r}")
        name, kind = _SETTINGS[key]
        if isinstance(kind, tuple):
            if value not in kind:
                raise UsageError(f"%gptoss config: {key} must be one of {', '.join(kind)}")
            settings[name] = value
        else:
            try:
                settings[name] = kind(value)
            except ValueError:
                raise UsageError(f"%gptoss config: {key}={value!r} is not a valid {kind.__name__}") from None
    if settings.get("tools") == "none":
        settings["tools"] = ""
    return settings


def _one_line(call: Any, *args: Any, **kw: Any) -> Any:
    """Load, connect or ask; an engine's error (missing checkpoint, no memory, server down) is one line."""
    from .engines.base import EngineError

    try:
        return call(*args, **kw)
    except EngineError as err:
        raise UsageError(str(err)) from None


def _keep_settings(new: Session, old: Session | None) -> Session:
    """A new model keeps the user's settings (not the conversation: its KV cache belongs to the old one)."""
    if old is not None:
        for key in ("effort", "approval", "timeout", "max_new_tokens", "instructions", "tools", "date"):
            setattr(new, key, getattr(old, key))
    return new


def _env_key(var: str | None) -> str | None:
    if var is None:
        return None
    import os

    if var not in os.environ:
        raise UsageError(f"%gptoss connect: the environment variable {var} is not set")
    return os.environ[var]


def _make_view(*, text: bool) -> Any:
    """The chat widget in a notebook front end; the streaming text view in a terminal or on request."""
    from IPython import get_ipython

    shell = get_ipython()
    if text or shell is None or type(shell).__name__ != "ZMQInteractiveShell":
        from .widgets.text import TextView

        return TextView()
    from .widgets.chat import ChatView

    return ChatView.show()
