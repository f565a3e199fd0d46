"""User functions as Harmony function tools: the model calls `functions.NAME` with JSON arguments.

A function's name, docstring and type-annotated signature become the `ToolDescription` shown to
the model in the developer message. A call's arguments are parsed and validated before the
function runs (in this kernel, on this thread); its return value goes back as JSON, and every failure
goes back as an `Error: <Type>: <message>` line the model can read and recover from (the message's line breaks
written out, `\\n`).

The JSON the model (and the call's card) reads is always valid JSON, also for what JSON has no form for:
NaN and infinities become the strings "NaN", "Infinity" and "-Infinity" (pydantic's and JavaScript's
names); tuples, sets, ranges, deques and dict views become lists, other mappings objects (keys that JSON writes
alike, `{1: "a", "1": "b"}`, told apart by type: `"1 (int)"`); numpy arrays
and scalars (and torch tensors) their `tolist()` / `item()` values; a pandas DataFrame
`{"columns", "data"}` (and `"index"` unless it is 0..n-1), a Series a list (or `{"index", "data"}`);
bytes their UTF-8 text, or `<N bytes, not UTF-8> b'...'`; an int past Python's digit limit (4 300) the text
`<int of N digits> 1.234568e+5000 (ends ...789)`; datetimes ISO 8601 text, pandas' NaT and NA
null. Iterators, arrays and frames are read up to MAX_ITEMS items, with a last item saying what was left
out; lists, tuples, sets and dicts up to the most entries a cut (below) shows; nesting up to MAX_DEPTH levels.
Anything else is its str() labelled with its type, `<Money> 12.50 EUR`.

A result whose JSON is longer than MAX_OUTPUT_CHARS is cut where it is long, not as text (which left the model
invalid JSON): long strings keep their head and tail around `... [N characters cut] ...`, long lists their first
and last items around a `"... [N items cut] ..."` item, objects with many keys their first ones and a
`"...": "[N more keys cut]"` entry, and what is nested too deep becomes a string saying what it held.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import itertools
import json
import math
import re
import sys
import traceback
import types
import typing
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Set, ValuesView
from typing import Annotated, Any

import pydantic
import typing_extensions
from openai_harmony import ToolDescription
from pydantic.fields import FieldInfo
from pydantic_core import PydanticSerializationError, to_jsonable_python

from ..events import ToolCall, ToolStatus
from ..structured import describe_errors, docstring, json_default, json_value, numbers_as_written, typed_schema
from .base import Tool, ToolResult, bounded, error_message, error_text
from .containment import bound_threads
from .python import MAX_OUTPUT_CHARS, ToolTimeout, truncate

_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
MAX_ITEMS = 1000  # items read from an iterator, an array or a frame a function returns
MAX_DEPTH = 100  # levels of nesting read from a return value: past ~250 pydantic called it a circular reference,
                 # past ~300 Python's stack ran out
_NESTING = (Iterator, dict, list, tuple, set, frozenset, pydantic.BaseModel)  # what `_bounded` reads into
_ITEMS_CUT, _KEYS_CUT = "... [{} items cut] ...", "[{} more keys cut]"  # the notes `_cut` and `_bounded` leave


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
            hints = _hints(function, described)
        except Exception as err:  # a string annotation that does not name or parse: NameError, SyntaxError ...
            raise TypeError(f"{self.name}: cannot resolve a type annotation ({type(err).__name__}: "
                            f"{error_message(err)})") from None
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
        It runs here, on the caller's thread, ended by `timeout` or once `stop()` (the view's Stop) says yes; threads
        it starts are stopped at that timeout."""
        return bounded(lambda: self._bounded_call(arguments, timeout), timeout, stop)

    def _bounded_call(self, arguments: str, timeout: float | None) -> ToolResult:
        """`call`'s work, under its deadline: the threads the function leaves running end with the call's timeout."""
        with bound_threads(timeout, f"the function {self.name}"):
            return ToolResult(*self._outcome(arguments))

    def refusal(self, arguments: str, *, timeout: float | None = None) -> str | None:
        """The error the model reads of arguments the function cannot be called with (not a JSON object, refused by
        its schema), None when it can be: asked before the call is put to the user, under `timeout` (the user's
        validators run)."""
        result = bounded(lambda: _checked(self._arguments_of(arguments)), timeout, None)
        return None if result.status == "done" else result.output

    def _outcome(self, arguments: str) -> tuple[ToolStatus, str]:
        """`call`'s work, all of it under its deadline: ("done", the JSON text) or ("error", the error's text).
        The user's validators, the function, a generator's body as its value is written, the error's message
        (a message that took 12 s to build held a 3 s call 12 s) and the letting go of what the function made."""
        kwargs = self._arguments_of(arguments)
        if isinstance(kwargs, str):
            return "error", kwargs
        ran = False  # an error after the function returned is JSON's: the call's side effects happened
        try:
            given = [i for i, (name, _) in enumerate(self._positional) if name in kwargs]
            # positional-only parameters, in order, up to the last one given; one left out before it: its default
            args = [kwargs.pop(name, default) for name, default in self._positional[:given[-1] + 1 if given else 0]]
            value = _bounded(self.function(*args, **kwargs))
            ran = True
            return "done", _json_text(value)
        except BaseException as err:  # SystemExit too: the function's error goes back to the model, never up the stack
            # what the function made is let go here, under the timeout: a generator it returned, left half read
            # by a timeout, ran its `finally` once the error was dropped, past the deadline, as long as its cleanup took
            traceback.clear_frames(err.__traceback__)
            if isinstance(err, ToolTimeout | KeyboardInterrupt):
                raise
            # the function's own error, or JSON's of what it returned
            note = "the function ran, but JSON cannot write what it returned: " if ran else ""
            return "error", truncate(error_text(err, note))

    def _arguments_of(self, arguments: str) -> dict[str, Any] | str:
        """The keyword arguments the model's JSON gives, validated, or the error text the model reads."""
        try:
            text = arguments if arguments.strip() else "{}"
            raw = json_value(text)  # refuses NaN, 1e999 and a key given twice, which pydantic reads
            if not isinstance(raw, dict):
                raise TypeError(f"arguments must be a JSON object, not {type(raw).__name__}")
            # validated as JSON: a strict model takes "celsius" for an Enum, "2026-11-25" for a date. Strictly: the
            # value is the JSON type the model was shown (`true` was 1 for an int, "3" 3; they are refused)
            with numbers_as_written(text):  # a Decimal argument as written, not through a float
                return dict(self._arguments.validate_json(text, strict=True))
        except BaseException as err:   # JSONDecodeError, deep nesting (RecursionError), a validator's own error
            traceback.clear_frames(err.__traceback__)
            if isinstance(err, ToolTimeout | KeyboardInterrupt):
                raise
            if isinstance(err, pydantic.ValidationError):
                return f"Error: ValidationError: {describe_errors(err)}"
            return truncate(error_text(err))


def _checked(arguments: dict[str, Any] | str) -> ToolResult:
    """`_arguments_of`'s answer as a result: an error with its text, or done."""
    return ToolResult("error", arguments) if isinstance(arguments, str) else ToolResult("done", "")


def _described(function: Callable[..., Any]) -> Callable[..., Any]:
    """What holds a callable's annotations and docstring: a tool's or a partial's function, a callable
    object's `__call__`."""
    while isinstance(function, FunctionTool | functools.partial):
        function = function.function if isinstance(function, FunctionTool) else function.func
    return function if inspect.isroutine(function) or inspect.isclass(function) else type(function).__call__


def _hints(function: Callable[..., Any], described: Callable[..., Any]) -> dict[str, Any]:
    """The type annotations of the parameters: for a class, those of its signature (its `__init__`'s, a model's
    fields by alias), not of its attributes (`class Order` with `__init__(self, qty: int)` was "'qty' has no type
    annotation")."""
    if not inspect.isclass(described):
        return typing.get_type_hints(described, include_extras=True)
    parameters = inspect.signature(function).parameters.values()
    held = types.SimpleNamespace(__annotations__={p.name: p.annotation for p in parameters
                                                  if p.annotation is not inspect.Parameter.empty})
    module = sys.modules.get(described.__module__)  # where the class's string annotations are read, as for its own
    return typing.get_type_hints(held, vars(module) if module else {}, include_extras=True)


def _fixed(function: Callable[..., Any]) -> set[str]:
    """The parameters a partial set, also one inside a tool made a tool again (`tool(notify, name=...)`)."""
    names: set[str] = set()
    while isinstance(function, FunctionTool | functools.partial):
        if isinstance(function, functools.partial):
            names.update(function.keywords)
        function = function.function if isinstance(function, FunctionTool) else function.func
    return names


def _json_text(value: Any) -> str:
    """A return value as the JSON text the model reads (the forms are the module docstring's), at most
    MAX_OUTPUT_CHARS long: a longer one is cut where it is long (see `_cut`), as little as it takes, so that
    it stays JSON (the text cut in two was not)."""
    plain = _finite(to_jsonable_python(_keys_apart(value, MAX_DEPTH), fallback=_jsonable))
    text = _dumps(plain)
    if len(text) <= MAX_OUTPUT_CHARS:
        return text
    # bisection of how much the cuts keep (a scale, in logs): at 1e-6 (one item, 16 characters, one level) it fits
    fits, over = math.log(1e-6), 0.0
    text = _dumps(_cut(plain, *_caps(math.exp(fits))))
    for _ in range(12):
        middle = (fits + over) / 2
        tried = _dumps(_cut(plain, *_caps(math.exp(middle))))
        if len(tried) <= MAX_OUTPUT_CHARS:
            fits, text = middle, tried
        else:
            over = middle
    return text


def _keys_apart(value: Any, depth: int) -> Any:
    """`value` with each dict (in dicts, lists and tuples, `depth` levels down) whose keys JSON writes alike,
    `{1: "a", "1": "b"}`, given keys told apart by type, `{"1 (int)": "a", "1": "b"}`: JSON keys are strings, and
    the later entry took the earlier one's place unsaid. What holds no such dict is returned as it is."""
    if depth < 0 or not isinstance(value, dict | list | tuple):
        return value
    nested = dict | list | tuple
    if isinstance(value, list | tuple):
        items = [_keys_apart(item, depth - 1) if isinstance(item, nested) else item for item in value]
        same = all(new is old for new, old in zip(items, value))
        return value if same else items if isinstance(value, list) else tuple(items)
    items = {key: _keys_apart(item, depth - 1) if isinstance(item, nested) else item for key, item in value.items()}
    kinds = {type(key) for key in items}
    with contextlib.suppress(Exception):       # a key with no JSON form fails the conversion itself, with its reason
        if not kinds <= {str} and not (len(kinds) == 1 and kinds <= {int, float, bool}) \
                and len(_key_texts(items)) < len(items):
            taken = {key for key in items if isinstance(key, str)}     # the str keys keep their names
            named = {}
            for key, item in items.items():
                text = key if isinstance(key, str) else next(iter(_key_texts({key: None})))
                if not isinstance(key, str):
                    label = text = f"{text} ({type(key).__name__})" if text in taken else text
                    for count in itertools.count(2):
                        if text not in taken:
                            break
                        text = f"{label} {count}"
                    taken.add(text)
                named[text] = item
            return named
    return value if all(items[key] is item for key, item in value.items()) else items


def _key_texts(mapping: dict) -> dict:
    """The keys of `mapping` as the JSON text writes them (entries whose keys it writes alike are one)."""
    return to_jsonable_python(dict.fromkeys(mapping), fallback=_jsonable)


def _caps(scale: float) -> tuple[int, int, int]:
    """(items, characters, levels) `_cut` keeps at this scale: the whole result's limit at 1, their least near 0;
    levels go last, deep data is rarely what is long."""
    return (max(1, int(MAX_OUTPUT_CHARS // 2 * scale)), max(16, int(MAX_OUTPUT_CHARS * scale)),
            max(1, int(MAX_DEPTH * math.sqrt(scale))))


def _dumps(plain: Any) -> str:
    """JSON data as the text the model reads (any script as it is; NaN and the infinities are strings by now)."""
    return json.dumps(plain, ensure_ascii=False, allow_nan=False)


def _cut(plain: Any, items: int, chars: int, depth: int) -> Any:
    """JSON data with strings past `chars` characters, lists and objects past `items` entries and what is nested
    past `depth` levels cut, each cut saying what it left out where it was made."""
    if isinstance(plain, str):
        if len(plain) <= chars:
            return plain
        head, tail = plain[:chars - chars // 3], plain[len(plain) - chars // 3:]
        return f"{head} ... [{len(plain) - len(head) - len(tail)} characters cut] ... {tail}"
    if not isinstance(plain, list | dict) or not plain:
        return plain
    if depth == 0:
        return (f"[a list of {len(plain)} items, cut: nested too deep]" if isinstance(plain, list)
                else f"[an object of {len(plain)} keys, cut: nested too deep]")
    if isinstance(plain, list):
        if len(plain) <= items:
            return [_cut(item, items, chars, depth - 1) for item in plain]
        head, tail = plain[:items - items // 3], plain[len(plain) - items // 3:]
        left = sum(_entries(item, _ITEMS_CUT) for item in plain[len(head):len(plain) - len(tail)])
        return [*(_cut(item, items, chars, depth - 1) for item in head), _ITEMS_CUT.format(left),
                *(_cut(item, items, chars, depth - 1) for item in tail)]
    shown: dict[str, Any] = {}
    for key, item in itertools.islice(plain.items(), items):  # keys are text (pydantic wrote them so)
        shown.setdefault(_cut(key, items, chars, depth), _cut(item, items, chars, depth - 1))  # two cut alike: one
    if len(shown) < len(plain):
        left = len(plain) - len(shown) + sum(_entries(item, _KEYS_CUT) - 1
                                             for _, item in itertools.islice(plain.items(), items, None))
        shown[_note_key(shown)] = _KEYS_CUT.format(left)
    return shown


def _entries(item: Any, note: str) -> int:
    """How many entries of a list or object an item `_cut` leaves out stands for: a cut's own `note` (in a long
    one `_bounded` read only the ends of) the number it says, anything else one."""
    said = re.fullmatch(re.escape(note).replace(r"\{\}", r"(\d+)"), item) if isinstance(item, str) else None
    return int(said.group(1)) if said else 1


def _note_key(shown: Mapping[Any, Any]) -> str:
    """The key of an object's note on the keys it left out: "...", longer when the object has its own "..."."""
    key = "..."
    while key in shown:
        key += "."
    return key


def _bounded(value: Any, _within: set[int] | None = None) -> Any:
    """`value` with every iterator in it (also inside dicts, lists, tuples, sets, dataclasses and pydantic
    models) read into a list of at most MAX_ITEMS items: serializing `itertools.count()` would loop in C,
    where no timeout or Ctrl-C reaches, until memory runs out. A cut list ends with a string saying so.
    Lists, tuples, sets and dicts are read up to the most entries `_cut` shows, a list its ends, with `_cut`'s
    own note on what is left out: a list of 3 000 000 ints was written whole (7 s, 520 MB) to show 6 000 characters.
    Bytes become text and pandas' NaT null: pydantic's own writing fails on bytes that are not UTF-8 and on
    NaT (a datetime with no date). What holds none of these is returned as it is (a model keeps its own
    serializer), and so is a container inside itself (`_within`: the ids of those being read), which JSON
    then names as a circular reference."""
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
    if len(within) > MAX_DEPTH and (isinstance(value, _NESTING) or dataclasses.is_dataclass(value)
                                    and not isinstance(value, type)):  # its items are not read
        return f"[a {type(value).__name__}, cut: nested more than {MAX_DEPTH} levels deep]"
    if isinstance(value, Iterator):
        return _first_items(value, "an iterator", within)
    if isinstance(value, bytes | bytearray | memoryview):
        return _bytes_text(bytes(value))
    if isinstance(value, int) and value.bit_length() > _DIGIT_LIMIT_BITS:
        return _int_text(value)
    if "pandas" in sys.modules and value is sys.modules["pandas"].NaT:
        return None
    most = _caps(1)[0]  # the most entries of one list or object `_cut` shows: the others are never read
    if isinstance(value, dict):
        pairs = list(itertools.islice(value.items(), most))
    elif isinstance(value, list | tuple) and len(value) > most:  # its ends, as `_cut` keeps them
        pairs = list(enumerate([*value[:most - most // 3], *value[len(value) - most // 3:]]))
    elif isinstance(value, list | tuple | set | frozenset):
        pairs = list(enumerate(itertools.islice(value, most)))
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        pairs = [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)]
    elif isinstance(value, pydantic.BaseModel):
        pairs = [(name, getattr(value, name)) for name in type(value).model_fields]
    else:
        return value
    bounded = [(key, _bounded(item, within)) for key, item in pairs]
    left = len(value) - len(pairs) if isinstance(value, dict | list | tuple | set | frozenset) else 0
    if not left and all(new is old for (_, new), (_, old) in zip(bounded, pairs)):
        return value
    if isinstance(value, list | tuple | set | frozenset):
        items = [item for _, item in bounded]
        return [*items[:most - most // 3], _ITEMS_CUT.format(left), *items[most - most // 3:]] if left else items
    shown = dict(bounded)
    if left:
        shown[_note_key(shown)] = _KEYS_CUT.format(left)
    return shown


_DIGIT_LIMIT_BITS = 14_000  # ints shorter than this (4 214 digits) are under any digit limit Python allows (>= 640)
_TAIL = 20  # the last digits `_int_text` shows


def _int_text(value: int) -> int | str:
    """An int as it is, or, past Python's digit limit (str() and JSON refuse it: a 5 000-digit factorial was
    `Error: ValueError` after the function ran), `<int of N digits> 3.3162751e+5735 (ends ...000)`, in about
    linear time (the digits themselves took 47 s for 8 million)."""
    limit, size = sys.get_int_max_str_digits(), abs(value)
    log = math.log10(size)
    digits = int(log) + 1
    if min(log % 1, 1 - log % 1) < 1e-9:  # next to a power of ten, where log10's float may round across it
        digits += (size >= 10 ** digits) - (size < 10 ** (digits - 1))
    if not limit or digits <= limit:
        return value
    lead = min(max(10 ** (log - digits + 1), 1), 9.999999)
    return (f"<int of {digits} digits> {'-' if value < 0 else ''}{lead:.7g}e+{digits - 1} "
            f"(ends ...{size % 10 ** _TAIL:0{_TAIL}d})")


def _first_items(items: Iterable[Any], source: str, within: set[int] | None = None) -> list[Any]:
    """At most MAX_ITEMS of `items`, each `_bounded`, and a last string saying more were left unread."""
    read = list(itertools.islice(items, MAX_ITEMS + 1))
    more = [f"... (more items not read: the function returned {source}; read {MAX_ITEMS})"]
    return [_bounded(item, within) for item in read[:MAX_ITEMS]] + (more if len(read) > MAX_ITEMS else [])


def _bytes_text(data: bytes) -> str:
    """Bytes as pydantic writes them (their UTF-8 text), or, when they are not UTF-8, their first MAX_ITEMS
    as a labelled Python bytes literal: a PNG's bytes were `Error: UnicodeDecodeError` after the function ran."""
    with contextlib.suppress(UnicodeDecodeError):
        return data.decode()
    return f"<{len(data)} bytes, not UTF-8> {data[:MAX_ITEMS]!r}" + (" ..." if len(data) > MAX_ITEMS else "")


def _jsonable(value: Any) -> Any:
    """pydantic's fallback for what it has no JSON form for (called for each such value, at any depth):
    the JSON form of the common kinds, read up to MAX_ITEMS items; anything else its str() labelled with
    its type. Only fixed methods of known types are called (tolist, item), never a name from the value."""
    numpy, pandas, torch = (sys.modules.get(name) for name in ("numpy", "pandas", "torch"))
    if numpy is not None and isinstance(value, numpy.ndarray) or torch is not None and isinstance(value, torch.Tensor):
        plain = _array(value.detach() if torch is not None and isinstance(value, torch.Tensor) else value)
    elif numpy is not None and isinstance(value, numpy.generic):  # an int64, a float32, a datetime64
        plain = str(value) if value.dtype.kind in "Mm" else value.item()  # .item() of a datetime64[ns] is an int
        if isinstance(plain, numpy.generic):  # a longdouble has no Python twin (pydantic looped on it): a float
            plain = value.astype(complex if value.dtype.kind == "c" else float).item()
    elif pandas is not None and isinstance(value, pandas.DataFrame):
        plain = _frame(value)
    elif pandas is not None and isinstance(value, pandas.Series):
        plain = _frame(value.to_frame())
        data = [row[0] if isinstance(row, list) else row for row in plain["data"]]  # one column; a note stays
        plain = {"index": plain["index"], "data": data} if "index" in plain else data
    elif pandas is not None and isinstance(value, pandas.Index):
        plain = _array(value.to_numpy())
    elif pandas is not None and value is pandas.NA:
        plain = None
    elif inspect.iscoroutine(value):  # `def f(): return fetch(url)` for an async fetch: the model read the repr
        value.close()  # never run, and no "never awaited" warning later
        raise TypeError("it is a coroutine, an async function's call never awaited (asyncio.run(...) awaits one)")
    elif isinstance(value, Mapping):  # a mappingproxy, a ChainMap, a UserDict
        plain = dict(itertools.islice(value.items(), MAX_ITEMS))
        if len(value) > MAX_ITEMS:
            plain["..."] = f"({len(value) - MAX_ITEMS} more keys not read, of the {type(value).__name__} returned)"
    elif isinstance(value, Sequence | Set | ValuesView | deque):  # range, dict_keys, dict_values, deque, array
        plain = _first_items(value, f"a {type(value).__name__}")
    else:  # labelled, unless Python's own text already is (`<class 'object'>`, `<object object at 0x...>`)
        text = str(value)
        return text if text.startswith("<") and text.endswith(">") else f"<{type(value).__name__}> {text}"
    return _bounded(plain)


def _array(array: Any) -> Any:
    """A numpy array or torch tensor as nested lists of at most about MAX_ITEMS numbers in all: as many
    leading rows as fit (or the first row, itself cut), then a string saying how many rows were left out."""
    if array.ndim == 0:
        return array.item()
    if math.prod(array.shape) <= MAX_ITEMS:
        kind = getattr(getattr(array, "dtype", None), "kind", "")
        return (array.astype(str) if kind in ("M", "m") else array).tolist()  # datetime64: ISO text, not ints
    row = math.prod(array.shape[1:])
    shown = _array(array[:max(1, MAX_ITEMS // row)]) if row <= MAX_ITEMS else [_array(array[0])]
    what = "rows" if array.ndim > 1 else "items"
    return shown + [f"... ({len(array) - len(shown)} more {what} not shown; the array's shape is {tuple(array.shape)})"]


def _frame(frame: Any) -> dict[str, Any]:
    """A pandas DataFrame as pandas' `split` JSON form, its index left out when it is 0..n-1: the first
    MAX_ITEMS columns and the rows that fit in about MAX_ITEMS values, each followed by a string saying how many
    were left out (10 rows of 100 000 columns were all converted, 5 s and 160 MB, to show the model one row)."""
    columns = min(len(frame.columns), MAX_ITEMS)
    rows = max(1, MAX_ITEMS // max(1, columns))
    plain = frame.iloc[:rows, :columns].to_dict(orient="split")
    default = frame.index.equals(sys.modules["pandas"].RangeIndex(len(frame)))
    shown = {"columns": plain["columns"], "data": plain["data"]} if default else {
        "index": plain["index"], "columns": plain["columns"], "data": plain["data"]}
    if len(frame.columns) > columns:
        shown["columns"] = [*shown["columns"], f"... ({len(frame.columns) - columns} more columns not shown, "
                                               f"of {len(frame.columns)})"]
    if len(frame) > rows:
        shown["data"] = [*shown["data"], f"... ({len(frame) - rows} more rows not shown, of {len(frame)})"]
    return shown


def _finite(value: Any) -> Any:
    """JSON-able data with NaN and the infinities as the strings "NaN", "Infinity", "-Infinity": `json.dumps`
    wrote them bare, which is not JSON (a strict reader of the output, and the model, saw invalid JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


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

    def approval_scope(self, call: ToolCall) -> str | None:
        """The one function called: functions differ in what they do (allowing a lookup must not allow a delete)."""
        return call.recipient

    def approval_question(self, call: ToolCall) -> str:
        return f"Call {call.recipient.removeprefix('functions.')} with these arguments?"

    def refusal(self, call: ToolCall) -> str | None:
        """The error of arguments the function cannot be called with: the user is never asked to approve them."""
        return self.functions[call.recipient.removeprefix("functions.")].refusal(call.input, timeout=self.timeout)

    def run(self, call: ToolCall, stop: Callable[[], bool] = lambda: False) -> ToolResult:
        """Call the named function (one it `answers`) on the JSON arguments."""
        return self.functions[call.recipient.removeprefix("functions.")].call(call.input, timeout=self.timeout, stop=stop)
