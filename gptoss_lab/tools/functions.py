"""User functions as Harmony function tools: the model calls `functions.NAME` with JSON arguments.

A function's name, docstring and type-annotated signature become the `ToolDescription` shown to
the model in the developer message. A call's arguments are parsed and validated before the
function runs (in this kernel, on this thread); its return value goes back as JSON (an iterator read
up to MAX_ITEMS items), and every failure goes back as an `Error: <Type>: <message>` text the model
can read and recover from.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import itertools
import json
import time
import typing
from collections.abc import Callable, Iterable, Iterator
from typing import Annotated, Any

import pydantic
import typing_extensions
from openai_harmony import ToolDescription
from pydantic.fields import FieldInfo
from pydantic_core import PydanticSerializationError, to_jsonable_python

from ..events import ToolCall
from ..structured import describe_errors, docstring, json_default, json_value, typed_schema
from .base import Tool, ToolResult, interrupted
from .python import ToolTimeout, deadline, truncate

_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
MAX_ITEMS = 1000  # items read from an iterator a function returns


class FunctionTool:
    """A Python function the model can call; calling the object itself still calls the function."""

    def __init__(self, function: Callable[..., Any], *, name: str | None = None, description: str | None = None) -> None:
        self.function = function
        self.name = name or getattr(function, "__name__", "")
        if not self.name.isidentifier():  # not its repr: a partial's holds its arguments' (a whole table)
            raise TypeError(f"this {type(function).__name__} has no usable name ({self.name!r}); pass tool(fn, name='...')")
        described = _described(function)
        if inspect.iscoroutinefunction(described) or inspect.isasyncgenfunction(described):
            raise TypeError(f"{self.name}: async functions cannot be function tools (calls run synchronously, "
                            "outside any event loop); use a plain def")
        summary, documented = docstring(inspect.getdoc(described))
        self.summary = description or summary
        try:
            parameters = inspect.signature(function).parameters.values()
        except ValueError:  # a C function that does not say its signature (max, dict)
            raise TypeError(f"{self.name} has no signature Python can read; wrap it in a def with "
                            "type-annotated parameters") from None
        try:
            hints = typing.get_type_hints(described, include_extras=True)
        except Exception as err:  # a string annotation that does not name or parse: NameError, SyntaxError ...
            raise TypeError(f"{self.name}: cannot resolve a type annotation ({type(err).__name__}: {err})") from None
        fixed = _fixed(function)
        fields: dict[str, Any] = {}
        self._positional: list[tuple[str, Any]] = []  # positional-only parameters and their defaults
        for p in parameters:
            if p.name in fixed:  # set by the user's partial: not the model's to choose
                continue
            if p.kind in _VARIADIC:
                raise TypeError(f"{self.name}: parameter {p.name!r} is variadic (*args/**kwargs); the model needs named parameters")
            if p.name == "self" and p.name not in hints:  # `@tool` on a method in a class body
                raise TypeError(f"{self.name}: parameter 'self' is the method's object: make the tool from the "
                                f"bound method, tool(obj.{self.name})")
            if p.name not in hints:
                raise TypeError(f"{self.name}: parameter {p.name!r} has no type annotation; annotate it (e.g. {p.name}: str)")
            fields[p.name] = _field(hints[p.name], p.default, documented.get(p.name))
            if p.kind is inspect.Parameter.POSITIONAL_ONLY:
                self._positional.append((p.name, p.default))
        self._arguments, self.parameters = self._schema(fields, hints)
        # not the function's __dict__: a callable object's own `name` or `function` would replace this tool's
        functools.update_wrapper(self, function, updated=())  # type: ignore[arg-type]

    def _schema(self, fields: dict[str, Any], hints: dict[str, Any]) -> tuple[pydantic.TypeAdapter, dict[str, Any]]:
        """The arguments' validator and the JSON schema the model is shown, from one pydantic adapter."""
        arguments = typing_extensions.TypedDict(f"{self.name}_arguments", fields)  # type: ignore[operator]
        arguments.__pydantic_config__ = pydantic.ConfigDict(extra="forbid")  # type: ignore[attr-defined]
        try:
            adapter, schema = typed_schema(arguments, where=self.name)
        except TypeError:
            for name in fields:  # name the parameter whose type is the problem
                typed_schema(hints[name], where=f"{self.name}.{name}")
            raise
        if "$defs" in schema:
            raise TypeError(f"{self.name}: {', '.join(schema['$defs'])} refers to itself; recursive types "
                            "cannot be shown to the model as function parameters")
        return adapter, schema

    @property
    def description(self) -> ToolDescription:
        """What the developer message shows the model (`type NAME = (_: {...}) => any`)."""
        return ToolDescription.new(self.name, self.summary, parameters=self.parameters if self.parameters["properties"] else None)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    def __repr__(self) -> str:
        return f"FunctionTool({self.name}{inspect.signature(self.function)})"

    def call(self, arguments: str, *, timeout: float | None = None, stop: Callable[[], bool] | None = None) -> ToolResult:
        """Run the function on the model's JSON arguments; the result or the error, as text for the model.
        It runs here, on the caller's thread, ended by `timeout` or once `stop()` (the view's Stop) says yes."""
        start = time.perf_counter()
        ran = False  # an error after the function returned is JSON's: the call's side effects happened
        try:
            # the user's validators run on the model's arguments, and a generator's body as its value is written:
            # within the timeout too
            with deadline(timeout, stop):
                try:
                    text = arguments if arguments.strip() else "{}"
                    raw = json_value(text)  # refuses NaN, 1e999 and a key given twice, which pydantic reads
                    if not isinstance(raw, dict):
                        raise TypeError(f"arguments must be a JSON object, not {type(raw).__name__}")
                    # validated as JSON: a strict model takes "celsius" for an Enum, "2026-11-25" for a date
                    kwargs = dict(self._arguments.validate_json(text))
                except pydantic.ValidationError as err:
                    return ToolResult("error", f"Error: ValidationError: {describe_errors(err)}",
                                      time.perf_counter() - start)
                except Exception as err:  # JSONDecodeError, deep nesting (RecursionError), a validator's KeyError
                    return ToolResult("error", truncate(_error_text(err)), time.perf_counter() - start)
                given = [i for i, (name, _) in enumerate(self._positional) if name in kwargs]
                # positional-only parameters, in order, up to the last one given; one left out before it: its default
                args = [kwargs.pop(name, default) for name, default in self._positional[:given[-1] + 1 if given else 0]]
                value = _bounded(self.function(*args, **kwargs))
                ran = True
                output = json.dumps(to_jsonable_python(value, fallback=str), ensure_ascii=False)
        except ToolTimeout as err:
            return ToolResult("timeout", f"Error: ToolTimeout: {err}", time.perf_counter() - start)
        except KeyboardInterrupt:
            return dataclasses.replace(interrupted(""), seconds=time.perf_counter() - start)
        except BaseException as err:  # SystemExit too: the function's error goes back to the model, never up the stack
            note = "the function ran, but JSON cannot write what it returned: " if ran else ""
            return ToolResult("error", truncate(_error_text(err, note)), time.perf_counter() - start)
        return ToolResult("done", truncate(output), time.perf_counter() - start)


def _error_text(err: BaseException, note: str = "") -> str:
    """`Error: Type: message`, also for an exception whose __str__ fails (it would raise out of the call)."""
    try:
        return f"Error: {type(err).__name__}: {note}{err}"
    except Exception:
        return f"Error: {type(err).__name__}: {note}(its message could not be read)"


def _described(function: Callable[..., Any]) -> Callable[..., Any]:
    """What holds a callable's annotations and docstring: a tool's or a partial's function, a callable
    object's `__call__`."""
    while isinstance(function, FunctionTool | functools.partial):
        function = function.function if isinstance(function, FunctionTool) else function.func
    return function if inspect.isroutine(function) or inspect.isclass(function) else type(function).__call__


def _fixed(function: Callable[..., Any]) -> set[str]:
    """The parameters a partial set, also one inside a tool made a tool again (`tool(notify, name=...)`)."""
    names: set[str] = set()
    while isinstance(function, FunctionTool | functools.partial):
        if isinstance(function, functools.partial):
            names.update(function.keywords)
        function = function.function if isinstance(function, FunctionTool) else function.func
    return names


def _bounded(value: Any, _within: set[int] | None = None) -> Any:
    """`value` with every iterator in it (also inside dicts, lists, tuples, sets, dataclasses and pydantic
    models) read into a list of at most MAX_ITEMS items: serializing `itertools.count()` would loop in C,
    where no timeout or Ctrl-C reaches, until memory runs out. A cut list ends with a string saying so.
    What holds no iterator is returned as it is (a model keeps its own serializer), and so is a container
    inside itself (`_within`: the ids of those being read), which JSON then names as a circular reference."""
    within = set() if _within is None else _within
    if id(value) in within:
        return value
    within.add(id(value))
    try:
        return _bounded_items(value, within)
    finally:
        within.discard(id(value))


def _bounded_items(value: Any, within: set[int]) -> Any:
    """`_bounded` for one value whose id is in `within`."""
    if isinstance(value, Iterator):
        items = list(itertools.islice(value, MAX_ITEMS + 1))
        more = [f"... (more items not read: the function returned an iterator; read {MAX_ITEMS})"]
        return [_bounded(item, within) for item in items[:MAX_ITEMS]] + (more if len(items) > MAX_ITEMS else [])
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, list | tuple | set | frozenset):
        pairs = list(enumerate(value))
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        pairs = [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)]
    elif isinstance(value, pydantic.BaseModel):
        pairs = [(name, getattr(value, name)) for name in type(value).model_fields]
    else:
        return value
    bounded = [(key, _bounded(item, within)) for key, item in pairs]
    if all(new is old for (_, new), (_, old) in zip(bounded, pairs)):
        return value
    return [item for _, item in bounded] if isinstance(value, list | tuple | set | frozenset) else dict(bounded)


def _field(annotation: Any, default: Any, documented: str | None) -> Any:
    """A parameter as a TypedDict entry: required or not, with the description (an `Annotated` text,
    else the docstring's) and the default the model is shown. The default is not given to pydantic:
    a parameter left out gets the function's own default object. A `Field` as the default (`limit: int =
    Field(5, le=50)`, as pydantic.validate_call takes it) is pydantic's: its description, limits and default."""
    base, *metadata = typing.get_args(annotation) if typing.get_origin(annotation) is Annotated else (annotation,)
    field = isinstance(default, FieldInfo)
    if field:
        metadata.append(default)
    text = next((m for m in metadata if isinstance(m, str)), documented)
    extra = None
    if default is not inspect.Parameter.empty and not field:
        with contextlib.suppress(PydanticSerializationError):
            extra = {"default": json_default(default)}
    described = Annotated[(base, pydantic.Field(description=text, json_schema_extra=extra), *metadata)]  # type: ignore[valid-type]
    required = default.is_required() if field else default is inspect.Parameter.empty
    return (typing_extensions.Required if required else typing_extensions.NotRequired)[described]


def tool(function: Callable[..., Any] | None = None, *, name: str | None = None, description: str | None = None) -> Any:
    """Decorator making a function available to the model: `@tool` or `@tool(name=..., description=...)`."""
    if function is None:
        return lambda f: FunctionTool(f, name=name, description=description)
    return FunctionTool(function, name=name, description=description)


class Functions(Tool):
    """The `functions` namespace: the user's function tools, shown in the developer message."""

    name = "functions"

    def __init__(self, functions: Iterable[FunctionTool], *, timeout: float | None = None) -> None:
        self.functions = {f.name: f for f in functions}
        self.timeout = timeout

    def function_descriptions(self) -> list[ToolDescription]:
        return [f.description for f in self.functions.values()]

    def answers(self, recipient: str) -> bool:
        """Only the functions listed: a call of another name is answered as no tool, never put to the user
        ("Call delete_all_files with these arguments?" was asked for a function that does not exist)."""
        return recipient.startswith("functions.") and recipient.removeprefix("functions.") in self.functions

    def approval_question(self, call: ToolCall) -> str:
        return f"Call {call.recipient.removeprefix('functions.')} with these arguments?"

    def run(self, call: ToolCall, stop: Callable[[], bool] = lambda: False) -> ToolResult:
        """Call the named function (one it `answers`) on the JSON arguments."""
        return self.functions[call.recipient.removeprefix("functions.")].call(call.input, timeout=self.timeout, stop=stop)
