"""The conversation and the turn loop: the only place that loops.

`Session.ask` renders the Harmony prompt, streams tokens from the engine through `HarmonyStream`,
hands every event to the view, runs tool calls (python in this kernel, user functions) under the
approval policy, feeds the results back, and repeats until the model answers or stops.
"""
from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from openai_harmony import Message, Role

from . import harmony
from .engines.base import Engine, Sampling
from .events import (
    Delta, Event, MessageEnd, MessageStart, Notice, ParseError, Reply, ToolCall, ToolEnd, ToolStart, ToolUpdate,
    TurnEnd, TurnStart, View,
)
from .tools.python import PythonTool, ToolResult

if TYPE_CHECKING:
    from .routing import Routing

APPROVALS = ("auto", "ask", "never")
_CHANNELS = ("analysis", "commentary", "final")


class _Stopped(Exception):
    """The view's Stop button: ends the turn like a kernel interrupt."""


class Session:
    """A conversation with a gpt-oss model and the settings its turns use."""

    def __init__(
        self,
        engine: Engine,
        *,
        effort: str = "medium",
        approval: str = "ask",
        timeout: float | None = 120.0,
        namespace: dict[str, Any] | None = None,
        tools: Sequence[Any] | str = ("python",),
        instructions: str | None = None,
        date: str | None = None,
        max_new_tokens: int = 2048,
        max_tool_calls: int = 8,
        view: View | None = None,
    ) -> None:
        _check_choice("reasoning effort", effort, harmony.EFFORTS)
        _check_choice("approval", approval, APPROVALS)
        self.engine = engine
        self.effort = effort
        self.approval = approval
        self.timeout = timeout
        self.namespace = namespace if namespace is not None else _user_namespace()
        self.tools = tools
        self.instructions = instructions
        self.date = date
        self.max_new_tokens = max_new_tokens
        self.max_tool_calls = max_tool_calls
        self.view = view
        self.history: list[Message] = []
        self.replies: list[Reply] = []

    # ------------------------------------------------------------ construction

    @classmethod
    def load(cls, name_or_path: str = "tiny", *, session_options: dict[str, Any] | None = None,
             **engine_options: Any) -> "Session":
        """Load a gpt-oss checkpoint into this process ("tiny", a local folder, or a hub id)."""
        from .engines.local import LocalEngine

        return cls(LocalEngine.from_pretrained(name_or_path, **engine_options), **(session_options or {}))

    @classmethod
    def connect(cls, url: str, *, model: str | None = None, api_key: str | None = None,
                session_options: dict[str, Any] | None = None, **engine_options: Any) -> "Session":
        """Use a gpt-oss model served by an OpenAI-compatible server (vLLM, llama.cpp, Ollama)."""
        from .engines.remote import RemoteEngine

        engine = RemoteEngine(url, model=model, api_key=api_key, **engine_options)
        return cls(engine, **(session_options or {}))

    # ------------------------------------------------------------ conversation

    def reset(self) -> None:
        """Forget the conversation (settings and the loaded model stay)."""
        self.history.clear()
        self.replies.clear()

    def prefix(self, *, effort: str | None = None, tools: Sequence[Any] | str | None = None,
               response_format: Any = None) -> list[Message]:
        """The system (and developer) messages a turn with these settings starts with."""
        python, functions = self._resolve_tools(self.tools if tools is None else tools)
        return self._prefix(effort or self.effort, python, functions, response_format)

    def _prefix(self, effort: str, python: bool, functions: dict[str, Any], response_format: Any) -> list[Message]:
        fmt = None
        if response_format is not None:
            from .tools.schema import response_format_section

            fmt = response_format_section(response_format)
        messages = [harmony.system_message(effort, python=python, timeout=self.timeout, date=self.date)]
        developer = harmony.developer_message(
            self.instructions, functions=[f.description for f in functions.values()], response_format=fmt)
        return messages + ([developer] if developer else [])

    def export(self, **settings: Any) -> str:
        """The whole conversation as Harmony text, as the model would see it next."""
        return harmony.decode(harmony.render(self.prefix(**settings) + self.history))

    # ------------------------------------------------------------ the turn loop

    def ask(
        self,
        prompt: str,
        *,
        effort: str | None = None,
        approval: str | None = None,
        tools: Sequence[Any] | str | None = None,
        routing: bool = False,
        view: View | None = None,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        response_format: Any = None,
        constrain: bool = False,
    ) -> Reply:
        """One user turn: generate, run tool calls, feed results back, until the model answers."""
        effort = effort or self.effort
        approval = approval or self.approval
        _check_choice("reasoning effort", effort, harmony.EFFORTS)
        _check_choice("approval", approval, APPROVALS)
        view = view or self.view or _NullView()
        python, functions = self._resolve_tools(self.tools if tools is None else tools)
        prefix = self._prefix(effort, python, functions, response_format)
        sampling = Sampling(
            temperature=temperature, top_p=top_p, seed=seed,
            max_new_tokens=max_new_tokens or self.max_new_tokens,
            logits_processor=self._constraint(response_format) if constrain else None,
        )
        turn = _Turn(self, view, Reply(prompt=prompt, effort=effort, model=self.engine.name), approval,
                     python, functions, sampling, routing)
        start = len(self.history)
        self.history.append(harmony.user_message(prompt))
        view.handle(TurnStart(prompt, effort, self.engine.name, approval,
                              turn.recorder.routing if turn.recorder else None))
        try:
            turn.run(prefix, keep_analysis_from=len(prefix) + start)
        except (KeyboardInterrupt, _Stopped):
            turn.interrupt()
        finally:
            reply = turn.finish(response_format)
            self.replies.append(reply)
            view.handle(TurnEnd(reply))
        return reply

    # ------------------------------------------------------------ helpers

    def _resolve_tools(self, spec: Sequence[Any] | str) -> tuple[bool, dict[str, Any]]:
        names = [s.strip() for s in spec.split(",") if s.strip()] if isinstance(spec, str) else list(spec)
        if all(n == "python" for n in names):
            return bool(names), {}
        from .tools.functions import resolve_tools

        return resolve_tools(names, self.namespace)

    def _constraint(self, response_format: Any) -> Any:
        if response_format is None:
            raise ValueError("constrain=True needs a response_format")
        from .engines.constrain import json_schema_processor

        return json_schema_processor(response_format)


class _NullView:
    """The view used when nobody is watching (plain `Session.ask` from code)."""

    stop_requested = False

    def handle(self, event: Event) -> None:
        pass

    def approve(self, call: ToolCall) -> bool | None:
        return None


class _Turn:
    """The state of one `ask` while it runs; `Session.ask` drives it."""

    def __init__(self, session: Session, view: View, reply: Reply, approval: str, python: bool,
                 functions: dict[str, Any], sampling: Sampling, routing: bool) -> None:
        self.session, self.view, self.reply = session, view, reply
        self.approval, self.python, self.functions = approval, python, functions
        self.sampling = sampling
        self.started = time.perf_counter()
        self.recorder: Any = None
        if routing:  # one record for the turn; each engine call's prompt repeats it (recorded once)
            from .routing import Recorder

            self.recorder = Recorder()
        self.partial: list[str] = []          # text of the message being generated
        self.partial_start: MessageStart | None = None

    def emit(self, event: Event) -> None:
        self.view.handle(event)

    def run(self, prefix: list[Message], keep_analysis_from: int) -> None:
        history = self.session.history
        for calls in range(self.session.max_tool_calls + 1):
            ids = harmony.render(prefix + history, keep_analysis_from=keep_analysis_from)
            call = self._generate(ids)
            if call is None:
                return
            if calls == self.session.max_tool_calls:
                self.emit(Notice(f"Stopped after {calls} tool calls (max_tool_calls).", "warning"))
                return
            result = self._run_tool(call)
            history.append(harmony.tool_message(call.recipient, result.output or "(no output)", call.channel))
            self.reply.messages.append(history[-1])

    def _generate(self, ids: list[int]) -> ToolCall | None:
        """One engine call; returns the tool call it ended with, if any."""
        usage = self.reply.usage
        usage.prompt_tokens = len(ids)
        if self.recorder is not None:
            self.recorder.begin()
        call = None
        stream = harmony.HarmonyStream()  # each engine call starts right after `<|start|>assistant`
        t0 = time.perf_counter()
        try:
            for token in self.session.engine.stream(ids, stop=harmony.STOP_TOKENS, sampling=self.sampling,
                                                    recorder=self.recorder):
                if usage.ttft is None:
                    usage.ttft = time.perf_counter() - self.started
                usage.completion_tokens += 1
                for event in stream.feed(token):
                    call = self._on_event(event) or call
                if self.view.stop_requested:
                    raise _Stopped
            events, cut = stream.close(), self.partial_start is not None
            for event in events:
                if not (cut and isinstance(event, ParseError)):
                    self._on_event(event)
            if cut:  # the token limit ended a message: keep what was written
                self._keep_partial()
                self.emit(Notice(f"The reply reached the token limit ({self.sampling.max_new_tokens} new tokens); "
                                 "the partial message is kept.", "warning"))
        finally:
            usage.generation_seconds += time.perf_counter() - t0
        return call

    def _on_event(self, event: Event) -> ToolCall | None:
        self.emit(event)
        if isinstance(event, MessageStart):
            self.partial, self.partial_start = [], event
        elif isinstance(event, Delta):
            self.partial.append(event.text)
        elif isinstance(event, ParseError):
            self.reply.errors.append(f"Not valid Harmony ({event.reason}): {event.raw!r}")
        elif isinstance(event, MessageEnd) and event.message is not None:
            self.partial_start = None
            return self._on_message(event.message)
        return None

    def _on_message(self, message: Message) -> ToolCall | None:
        if message.channel not in _CHANNELS:
            self.reply.errors.append(f"Message without a valid channel: {harmony.text_of(message)!r}")
            return None
        self.session.history.append(message)
        self.reply.messages.append(message)
        text = harmony.text_of(message)
        if message.recipient:
            call = ToolCall(message.recipient, message.channel, text, message.content_type,
                            index=len(self.reply.tool_calls))
            self.reply.tool_calls.append(call)
            self.emit(ToolStart(call))
            return call
        if message.channel == "final":
            self.reply.final += text
        elif message.channel == "analysis":
            self.reply.analysis += ("\n" if self.reply.analysis else "") + text
        return None

    # ------------------------------------------------------------ tools

    def _run_tool(self, call: ToolCall) -> ToolResult:
        """Dispatch one call under the approval policy; always returns a result the model can read."""
        runner = self._runner(call)
        if isinstance(runner, str):  # unknown or disabled tool: tell the model, let it recover
            return self._finish_call(call, ToolResult("error", runner, 0.0))
        if not self._approved(call):
            return self._finish_call(call, ToolResult("skipped", "The user did not allow this call to run.", 0.0))
        call.status = "running"
        self.emit(ToolUpdate(call))
        return self._finish_call(call, runner(call.input))

    def _runner(self, call: ToolCall) -> Callable[[str], ToolResult] | str:
        if call.recipient in ("python", "python.exec") or call.recipient.startswith("python "):
            if not self.python:
                return "Error: the python tool is not enabled in this conversation."
            return PythonTool(self.session.namespace, timeout=self.session.timeout).run
        if call.recipient.startswith("functions."):
            fn = self.functions.get(call.name)
            if fn is None:
                from .tools.functions import unknown_function_result

                return unknown_function_result(call.name, list(self.functions))
            return functools.partial(fn.call, timeout=self.session.timeout)
        return f"Error: there is no tool named {call.recipient!r}."

    def _approved(self, call: ToolCall) -> bool:
        if self.approval == "auto":
            return True
        if self.approval == "never":
            return False
        call.status = "waiting"
        self.emit(ToolUpdate(call))
        decision = self.view.approve(call)
        return _ask_stdin(call) if decision is None else decision

    def _finish_call(self, call: ToolCall, result: ToolResult) -> ToolResult:
        call.status, call.output, call.seconds = result.status, result.output, result.seconds  # type: ignore[assignment]
        self.emit(ToolEnd(call))
        return result

    # ------------------------------------------------------------ ending

    def interrupt(self) -> None:
        """Stop button or kernel interrupt: keep what was generated, leave the conversation valid."""
        self.reply.interrupted = True
        self._keep_partial()
        for call in self.reply.tool_calls:
            if call.status in ("pending", "waiting", "running"):
                self._finish_call(call, ToolResult("skipped", "Interrupted before it ran.", 0.0))
                self.session.history.append(harmony.tool_message(call.recipient, call.output, call.channel))
        self.emit(Notice("Stopped: the partial reply is kept.", "warning"))

    def _keep_partial(self) -> None:
        """A message cut off mid-way joins the conversation as written (a half tool call does not)."""
        start, text = self.partial_start, "".join(self.partial)
        self.partial_start = None
        if start is not None and text and not start.recipient and start.channel in _CHANNELS:
            self._on_message(Message.from_role_and_content(Role.ASSISTANT, text).with_channel(start.channel))

    def finish(self, response_format: Any) -> Reply:
        reply = self.reply
        reply.usage.seconds = time.perf_counter() - self.started
        if self.recorder is not None and self.recorder.tokens:
            reply.routing = self.recorder.finish(harmony.label_tokens(self.recorder.tokens))
        if response_format is not None and reply.final and not reply.interrupted:
            from .tools.schema import parse_final

            try:
                reply.parsed = parse_final(reply.final, response_format)
            except ValueError as err:
                reply.errors.append(str(err))
        return reply


def _ask_stdin(call: ToolCall) -> bool:
    """Approval through the notebook's input() box (works while the cell is busy); no stdin -> skip."""
    try:
        answer = input(f"Run this {call.recipient} call?\n{call.input}\n[y/N] ")
    except Exception:  # StdinNotImplementedError, EOFError: nobody can answer
        return False
    return answer.strip().lower() in ("y", "yes")


def _user_namespace() -> dict[str, Any]:
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        shell = None
    return shell.user_ns if shell is not None else {}


def _check_choice(what: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{what} must be one of {', '.join(choices)}, not {value!r}")
