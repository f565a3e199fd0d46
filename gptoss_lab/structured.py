"""Structured output: JSON schemas in Harmony's style, and a response format built once per turn.

`HarmonySchema` is pydantic's JSON-schema generator writing a compact, self-contained schema for a
Harmony prompt: everything inlined, no titles, `"type": [X, "null"]` for optional scalars. Function
tools (`tools/functions.py`) and response formats both use it, and both validate with the same
pydantic `TypeAdapter` the schema came from. What a schema *says* is decided here; how a function's
schema is *written* for the model (TypeScript-like text, escaping) is `harmony._shown`'s concern.

One regex dialect: a type's `pattern` is checked by pydantic's Rust regex, the dialect llguidance constrains with;
a pattern it cannot read (`\\Z`, look-around), a compiled `re.Pattern` and a model whose config picks Python's
re (flags and `$` the schema cannot state) are refused when the schema is made. A schema dict's patterns are
checked with `regex` (time-limited), `$` meaning the very end of the text as in JSON Schema and Rust. Both
checks read \\d and \\w as JSON Schema and llguidance do, ASCII only (\\s stays Unicode whitespace). A Literal
or Enum value whose JSON form does not validate back to it (bytes, tuples, dates) is refused too.

`ResponseFormat.from_user(obj)` takes what a user gives (a pydantic model, dataclass, TypedDict,
any type pydantic knows, or a JSON-schema dict) and holds the schema, the developer-message section
the model reads, `parse()` for the final answer, and the llguidance constraint for decoding.
"""
from __future__ import annotations

import contextlib
import contextvars
import decimal
import enum
import fractions
import functools
import importlib.util
import json
import math
import queue
import re
import reprlib
import sys
import threading
import time
import types
import typing
import unicodedata
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, is_dataclass
from typing import Any

import docstring_parser
import pydantic
import referencing
import referencing.jsonschema
import regex
import typing_extensions
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import (
    PydanticCustomError, PydanticSerializationError, SchemaError, SchemaValidator, core_schema, to_jsonable_python,
)

from . import harmony
from .tools.base import error_message

if typing.TYPE_CHECKING:
    import jsonschema

_DEFS = "#/$defs/"
_FLAGS = "x-gptoss-flags"  # HarmonySchema's note on an enum.Flag, made part of its description by `_inlined`
_VALUES = frozenset({"enum", "const", "default", "examples"})  # keys whose values are data, not schemas
_NAMED = frozenset({"properties", "patternProperties", "dependentSchemas", "$defs", "definitions"})  # name -> schema maps
_SCALARS = frozenset({"string", "integer", "number", "boolean"})
_NULL = {"type": "null"}
_SUPPORTED = ("str, int, float, bool, datetime, Literal, Enum, list, dict, Optional, "
              "a dataclass, a TypedDict or a pydantic model")


class StructuredOutputError(ValueError):
    """The model's final answer does not parse or does not match the requested schema."""


class _Unshowable(ValueError):
    """A type whose schema would tell the model something its validator does not accept, or too large to build in
    time (`typed_schema` makes it a TypeError naming where)."""


def docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """(summary, {parameter or attribute: description}) of a Google, NumPy or reST docstring.

    The summary is the first paragraph; every text is put on one line, since the renderer
    writes a description as a `//` comment and a line break would end the comment."""
    try:
        parsed = docstring_parser.parse(doc or "")
    except docstring_parser.ParseError:
        return _one_line((doc or "").split("\n\n")[0]), {}
    summary = (parsed.description or "").split("\n\n")[0]
    return _one_line(summary), {p.arg_name: _one_line(p.description) for p in parsed.params if p.description}


def _one_line(text: str) -> str:
    return " ".join(text.split())


_SHOWN_PLACES, _SHOWN_DIGITS = 10, 18  # a Decimal's decimal places and integer digits llguidance constrains to


class HarmonySchema(GenerateJsonSchema):
    """pydantic's JSON schema, compact and self-contained, as a Harmony prompt states it.

    Definitions are inlined (a `$ref` tells the model nothing; only a type that refers to itself
    keeps its `$defs`); titles and class docstrings are left out (they would be stray comments),
    attributes documented in a class docstring get their description; unions of plain types become
    one `"type"` list (`[X, "null"]` for optional scalars), unions of distinct types `oneOf` (exactly
    one matches); an optional property whose default is None is given as its type (the model leaves
    it out rather than writing null); a one-value Literal is an `enum`; an `enum.Flag` is an integer
    whose description names the flags. How a function's schema is then written as text for the
    model is `harmony._shown`'s concern (`harmony.developer_message`)."""

    def generate(self, schema: core_schema.CoreSchema, mode: Any = "validation") -> JsonSchemaValue:
        return _inlined(super().generate(schema, mode))

    def generate_inner(self, schema: Any) -> JsonSchemaValue:
        # a bound given after a validator (`Annotated[int, AfterValidator(f), Field(ge=5)]`) is noted in pydantic's
        # own name ("ge": 5), which is not JSON Schema: llguidance and the function tools' text left it out
        updates = (schema.get("metadata") or {}).get("pydantic_js_updates") if schema.get("type") == "function-after" else None
        if isinstance(updates, dict) and _JSON_BOUNDS.keys() & updates.keys():
            renamed = {_JSON_BOUNDS.get(name, name): value for name, value in updates.items()}
            schema = {**schema, "metadata": {**schema["metadata"], "pydantic_js_updates": renamed}}
        return super().generate_inner(schema)

    def model_schema(self, schema: core_schema.ModelSchema) -> JsonSchemaValue:
        return _plain_object(super().model_schema(schema), schema)

    def dataclass_schema(self, schema: core_schema.DataclassSchema) -> JsonSchemaValue:
        return _plain_object(super().dataclass_schema(schema), schema)

    def typed_dict_schema(self, schema: core_schema.TypedDictSchema) -> JsonSchemaValue:
        return _plain_object(super().typed_dict_schema(schema), schema)

    def literal_schema(self, schema: core_schema.LiteralSchema) -> JsonSchemaValue:
        _reads_back(schema, schema["expected"], "Literal")
        result = super().literal_schema(schema)
        if "const" in result:
            result["enum"] = [result.pop("const")]
        return result

    def dict_schema(self, schema: core_schema.DictSchema) -> JsonSchemaValue:
        keys = schema.get("keys_schema")
        if keys is not None and keys.get("type") in ("literal", "enum"):
            _keys_read_back(keys)
        result = super().dict_schema(schema)
        shown = _key_texts(keys) if keys is not None else None
        if shown is not None:
            result["propertyNames"] = shown
        if "patternProperties" in result:  # pydantic's form of keys with a pattern, which said nothing of other keys
            result.setdefault("additionalProperties", False)
        return result

    def enum_schema(self, schema: core_schema.EnumSchema) -> JsonSchemaValue:
        _reads_back(schema, schema["members"], "Enum")
        result = super().enum_schema(schema)
        flags = schema["cls"]
        if issubclass(flags, enum.Flag):  # any combination is valid (3 = READ | WRITE), not only the members listed
            result.pop("enum", None)
            result["type"] = "integer"
            # pydantic writes the class's docstring as the description after this: `_inlined` adds the note to it
            result[_FLAGS] = "A sum of flags: " + ", ".join(f"{member.name} = {member.value}" for member in flags) + "."
        return result

    def str_schema(self, schema: core_schema.StringSchema) -> JsonSchemaValue:
        pattern = schema.get("pattern")
        if isinstance(pattern, re.Pattern):
            raise _Unshowable(f"the pattern {reprlib.repr(pattern.pattern)} is a compiled re.Pattern, which pydantic "
                              "matches with Python's re and its flags, not as the model is shown it; give it as a "
                              "string (pydantic's Rust regex, as the schema and constrained decoding read it)")
        refusal = _pattern_refusal(pattern) if isinstance(pattern, str) else None
        if refusal is not None:
            raise _Unshowable(refusal)
        return super().str_schema(schema)

    def decimal_schema(self, schema: core_schema.DecimalSchema) -> JsonSchemaValue:
        # pydantic offers "number or numeric string" with a look-ahead pattern, which the renderer shows
        # as `any` and llguidance cannot compile; a JSON number validates to an exact Decimal
        result = super().decimal_schema(schema)
        result = result["anyOf"][0] if self.mode == "validation" and "anyOf" in result else result
        # max_digits and decimal_places, which pydantic leaves unsaid (the model wrote 123.456 for 5 digits, 2 places),
        # as far as llguidance can constrain to them (past that, only the check says)
        places, digits = schema.get("decimal_places"), schema.get("max_digits")
        if places is not None and places <= _SHOWN_PLACES:
            result["multipleOf"] = 1 if places == 0 else float(f"1e-{places}")
        if digits is not None and digits - (places or 0) <= _SHOWN_DIGITS:
            bound = 10 ** (digits - (places or 0))
            result.update(exclusiveMinimum=-bound, exclusiveMaximum=bound)
        return result

    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        inner = self.generate_inner(schema["schema"])
        if inner == _NULL:
            return inner
        kind = inner.get("type")
        kinds = [kind] if isinstance(kind, str) else kind
        if isinstance(kinds, list) and _SCALARS.issuperset(kinds) and not {"enum", "const"} & inner.keys():
            return {**inner, "type": [*kinds, "null"]}
        return {"oneOf": [inner, _NULL]}

    def union_schema(self, schema: core_schema.UnionSchema) -> JsonSchemaValue:
        result = super().union_schema(schema)
        members = result.get("anyOf")
        if members is None:
            return result
        kinds = [m.get("type") for m in members]
        if all(m.keys() == {"type"} for m in members):
            flat = [k for kind in kinds for k in ([kind] if isinstance(kind, str) else kind)]
            return {"type": list(dict.fromkeys(flat))}
        if all(isinstance(k, str) for k in kinds) and len(set(kinds)) == len(kinds):
            return {"oneOf": members}  # members of different types: exactly one matches
        return result

    def encode_default(self, dft: Any) -> Any:
        return json_default(dft, super().encode_default)

    def emit_warning(self, kind: Any, detail: str) -> None:
        if kind != "non-serializable-default":  # such a default is simply not shown to the model
            super().emit_warning(kind, detail)


# pydantic's numeric bounds as JSON Schema names them
_JSON_BOUNDS = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum", "lt": "exclusiveMaximum",
                "multiple_of": "multipleOf"}
_DEFAULT_CHARS = 500  # the longest default (as JSON) the model is shown


def json_default(value: Any, encode: Callable[[Any], Any] = to_jsonable_python) -> Any:
    """A default as the JSON value the model is shown (`encode`d); PydanticSerializationError when JSON cannot write
    it: an arbitrary object, or NaN and infinity (`within: float = math.inf`), which the Harmony renderer refuses
    (every turn would fail), bytes that are not UTF-8 or a list inside itself (their UnicodeDecodeError and
    ValueError failed every turn with a traceback), or when it is longer than `_DEFAULT_CHARS` (`ids: list[int] =
    list(range(20_000))` put 100 000 characters in every prompt). Such a default is simply not shown."""
    try:
        encoded = encode(value)
        text = json.dumps(encoded, allow_nan=False)
    except PydanticSerializationError:
        raise
    except Exception as err:  # NaN, a circular reference, bytes not UTF-8, a digit limit, a value's own error
        raise PydanticSerializationError(f"the default has no JSON form ({type(err).__name__})") from None
    if len(text) > _DEFAULT_CHARS:
        raise PydanticSerializationError(f"the default is {len(text)} characters long as JSON")
    return encoded


def _reads_back(schema: core_schema.CoreSchema, values: list[Any], kind: str) -> None:
    """Refuse a Literal or Enum value that its own JSON form does not validate back to: `Literal[b"x"]`, an Enum
    of tuples or dates were shown to the model as "x", [1, 2], "2026-01-01", which the check then refused."""
    validator = SchemaValidator(schema)
    for value in values:
        try:
            back = validator.validate_json(json.dumps(to_jsonable_python(value), allow_nan=False))
        except Exception:  # no JSON form (NaN, bytes not UTF-8), or a form that does not validate
            back = _NULL  # equal to no value a Literal or an Enum holds
        if back != value or type(back) is not type(value):
            shown = f"{type(value).__name__}.{value.name}" if isinstance(value, enum.Enum) else reprlib.repr(value)
            raise _Unshowable(f"the {kind} value {shown} has no JSON form that reads back as it; "
                              "use str, int, float, bool or None values")


_INTEGER_TEXT = "^(0|-?[1-9][0-9]*)$"  # (not "-0", which is 0)
_NUMBER_TEXT = "^-?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][-+]?[0-9]+)?$"
# a number key's one text: no exponent, no trailing zero, no "-0" (two texts of one number, "1" and "1.0", were two keys
# read as one, the second's value replacing the first's unsaid)
_KEY_NUMBER_TEXT = "^(0|-?(0\\.[0-9]*[1-9]|[1-9][0-9]*(\\.[0-9]*[1-9])?))$"


def _key_texts(keys: core_schema.CoreSchema) -> JsonSchemaValue | None:
    """The JSON-schema of a dict's keys as JSON writes them, text, for keys pydantic reads as numbers, booleans or
    their Literals and Enums; None for others (text already). `dict[IntEnum, int]` showed the keys as the integers
    1 and 2, which no JSON key is, and `dict[int, str]` showed no rule for them. A key checked further after it is
    read (`Annotated[int, AfterValidator(f)]`) is shown as it is read (it showed no rule); a bound its pattern cannot
    state (a float's range, a multiple) is said in words: the keys of `dict[confloat(lt=1), int]` were shown as any
    number, and "7" refused."""
    keys, bounds = _key_bounds(keys)
    kind = keys.get("type")
    if kind in ("literal", "enum"):
        values = _choices(keys)
        shown = None if all(isinstance(value, str) for value in values) else {
            "type": "string", "enum": [_key_text(value) for value in values]}
    elif kind == "int":
        shown = {"type": "string", "pattern": _integers(*_int_bounds(bounds))}
        bounds = {name: values for name, values in bounds.items() if name not in _INT_PATTERN_BOUNDS}
    elif kind in ("float", "decimal"):
        shown = {"type": "string", "pattern": _KEY_NUMBER_TEXT}
    else:
        shown = {"type": "string", "enum": ["true", "false"]} if kind == "bool" else None
    if shown is None or not bounds:
        return shown
    words = [_KEY_BOUND_WORDS[name].format(value) for name, values in bounds.items() for value in values]
    return {**shown, "description": f"Each key, read as a number, {' and '.join(words)}."}


# the bounds pydantic checks on a number, as said of a key, and those an integer key's pattern states
_KEY_BOUND_WORDS = {"ge": "is at least {}", "gt": "is more than {}", "le": "is at most {}", "lt": "is less than {}",
                    "multiple_of": "is a multiple of {}", "max_digits": "has at most {} digits",
                    "decimal_places": "has at most {} decimal places"}
_INT_PATTERN_BOUNDS = frozenset({"ge", "gt", "le", "lt"})


def _key_bounds(keys: core_schema.CoreSchema) -> tuple[core_schema.CoreSchema, dict[str, list[Any]]]:
    """The core schema reading a dict's key, under the checks after it, and the bounds ({"ge": [5]}) checked on it
    or after it: `Annotated[int, AfterValidator(f), Field(ge=5)]` checks ge=5 after f (it was not shown)."""
    bounds: dict[str, list[Any]] = {}
    while keys.get("type") == "function-after":
        after = (keys.get("metadata") or {}).get("pydantic_js_updates") or {}
        for name in filter(after.__contains__, _KEY_BOUND_WORDS):
            bounds.setdefault(name, []).append(after[name])
        keys = keys["schema"]
    for name in filter(keys.__contains__, _KEY_BOUND_WORDS):
        bounds.setdefault(name, []).append(keys[name])
    return keys, bounds


def _int_bounds(bounds: Mapping[str, list[Any]]) -> tuple[int | None, int | None]:
    """The least and the most integer its ge, gt, le and lt bounds take (None: no bound)."""
    lows = [math.ceil(v) for v in bounds.get("ge", [])] + [math.floor(v) + 1 for v in bounds.get("gt", [])]
    highs = [math.floor(v) for v in bounds.get("le", [])] + [math.ceil(v) - 1 for v in bounds.get("lt", [])]
    return max(lows, default=None), min(highs, default=None)


def _integers(least: int | None, most: int | None) -> str:
    """A pattern matching the JSON text of each integer from `least` to `most` (None: no bound), and no other
    text: the keys of `dict[conint(ge=5, le=10), str]` were shown as any positive integer, which the check refused."""
    if least is None and most is None:
        return _INTEGER_TEXT
    negatives = [] if least is not None and least >= 0 else [
        "-" + part for part in _naturals(1 if most is None or most >= 0 else -most, None if least is None else -least)]
    naturals = [] if most is not None and most < 0 else _naturals(max(least or 0, 0), most)
    if not negatives + naturals:
        raise _Unshowable(f"the dict key's bounds ({least} to {most}) leave no integer it could be")
    return f"^({'|'.join(negatives + naturals)})$"


def _naturals(least: int, most: int | None) -> list[str]:
    """Patterns (alternatives) for the decimal text of each integer from `least` >= 0 to `most` (None: no bound)."""
    if most is not None and least > most:
        return []
    low, high = str(least), None if most is None else str(most)
    parts = [_digits(low if size == len(low) else "1" + "0" * (size - 1),
                     high if high is not None and size == len(high) else "9" * size)
             for size in range(len(low), (len(low) if high is None else len(high)) + 1)]
    return parts + ([f"[1-9][0-9]{{{len(low)},}}"] if high is None else [])


def _digits(low: str, high: str) -> str:
    """A pattern for the digit strings from `low` to `high`, both of the same length."""
    if low == high:
        return low
    rest = len(low) - 1
    if low[0] == high[0]:
        return low[0] + _digits(low[1:], high[1:])
    if low[1:] == "0" * rest and high[1:] == "9" * rest:
        return _span(low[0], high[0]) + _any_digits(rest)
    parts = [low[0] + _digits(low[1:], "9" * rest)]
    if int(low[0]) + 1 < int(high[0]):
        parts.append(_span(str(int(low[0]) + 1), str(int(high[0]) - 1)) + _any_digits(rest))
    parts.append(high[0] + _digits("0" * rest, high[1:]))
    return f"({'|'.join(parts)})"


def _span(low: str, high: str) -> str:
    """A pattern for one digit from `low` to `high`."""
    return low if low == high else f"[{low}-{high}]"


def _any_digits(count: int) -> str:
    """A pattern for `count` digits."""
    return "" if count == 0 else "[0-9]" if count == 1 else f"[0-9]{{{count}}}"


def _key_text(value: Any) -> str:
    """A Literal or Enum key's value as JSON writes it as a key: its text, or its JSON form (1 as "1")."""
    plain = to_jsonable_python(value)
    return plain if isinstance(plain, str) else json.dumps(plain)


def _keys_read_back(keys: core_schema.CoreSchema) -> None:
    """Refuse a dict's Literal or Enum key that JSON's key text does not validate back to: pydantic reads no key
    of `dict[Literal[1, 2], int]` ("1" is not 1), so every answer was refused."""
    validator = SchemaValidator(core_schema.dict_schema(keys, core_schema.none_schema()))
    for value in keys["expected"] if keys["type"] == "literal" else keys["members"]:
        try:
            [back] = validator.validate_json(json.dumps({_key_text(value): None}), strict=True)
        except Exception:  # noqa: BLE001 - any failure: it does not read back
            back = _NULL
        if back != value or type(back) is not type(value):
            shown = f"{type(value).__name__}.{value.name}" if isinstance(value, enum.Enum) else reprlib.repr(value)
            raise _Unshowable(f"the dict key {shown} has no JSON form that reads back as it (JSON's keys are text, "
                              "which pydantic does not read as this value); use str keys")


def _plain_object(schema: JsonSchemaValue, core: Any) -> JsonSchemaValue:
    """A class's object schema (from its `core` schema) without its docstring, its documented attributes
    described, and optional properties defaulting to None shown as their type. Unless the class keeps extra
    keys, none are allowed: pydantic would drop them, and a constrained answer must be able to end.
    A class whose config matches its patterns with Python's re is refused, as a compiled pattern is."""
    if (core.get("config") or {}).get("regex_engine") == "python-re" and _has_pattern(core):
        raise _Unshowable("its config's regex_engine='python-re' matches its patterns with Python's re, not as the "
                          "model is shown them; leave pydantic's default (Rust) regex engine")
    _shown_aliases(core)
    schema.pop("description", None)
    if schema.get("type") == "object":  # (a RootModel of a list or a str: the model read "additionalProperties" on it)
        schema.setdefault("additionalProperties", False)
    _, documented = docstring(getattr(core.get("cls"), "__doc__", None))
    required = set(schema.get("required", ()))
    for name, prop in schema.get("properties", {}).items():
        if "description" not in prop and documented.get(name):
            prop["description"] = documented[name]
        alternatives = prop.get("oneOf", ())
        if name not in required and prop.get("default", ...) is None and len(alternatives) == 2 and alternatives[1] == _NULL:
            schema["properties"][name] = {**{k: v for k, v in prop.items() if k != "oneOf"}, **alternatives[0]}
    return schema


def _shown_aliases(core: Any) -> None:
    """Refuse a class field read only from a path into the answer (`validation_alias=AliasPath("a", 0)`): the schema
    showed the model the field's name, which the check then refused ("a.0: Field required") in every answer."""
    fields = (core.get("schema", {}) if core.get("type") in ("model", "dataclass") else core).get("fields", {})
    by_name = (core.get("config") or {}).get("validate_by_name", False)
    for name, spec in fields.items() if isinstance(fields, dict) else ((spec["name"], spec) for spec in fields):
        alias = spec.get("validation_alias")
        paths = alias if isinstance(alias, list) and alias and isinstance(alias[0], list) else [alias]
        if isinstance(alias, list) and not by_name and not any(len(path) == 1 and isinstance(path[0], str) for path in paths):
            raise _Unshowable(f"the field {name!r} is read from a path into the answer ({'; '.join(map(repr, paths))}), "
                              "which the schema cannot show; give it an alias (one key) instead")


def _has_pattern(core: Any) -> bool:
    """Whether a pydantic core schema checks a string against a pattern anywhere inside it."""
    if isinstance(core, dict):
        return (core.get("type") == "str" and core.get("pattern") is not None) or any(map(_has_pattern, core.values()))
    return isinstance(core, list | tuple) and any(map(_has_pattern, core))


def _inlined(schema: JsonSchemaValue) -> JsonSchemaValue:
    """`schema` without titles, its descriptions on one line (the renderer writes one as a `//` comment,
    which a line break would end) and with every `$ref` replaced by its definition; a type that refers
    to itself keeps its definition in `$defs` (the only case left with references)."""
    definitions = schema.pop("$defs", {})
    if (parts := _written_size(schema, definitions)) > _MOST_SHOWN:
        raise _Unshowable(f"its schema written out for the model has {parts:,} parts (classes that refer to another "
                          f"at two places or more, inside one another, double it), more than the {_MOST_SHOWN:,} a "
                          "model's context could hold: give a smaller type")
    kept: dict[str, Any] = {}

    def walk(node: Any, seen: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [walk(item, seen) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_DEFS):
            name = ref[len(_DEFS):]
            if name in seen:  # recursive: keep the reference and its definition
                if name not in kept:
                    kept[name] = None
                    kept[name] = walk(definitions[name], (name,))
                return node
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            return {**walk(definitions[name], (*seen, name)), **walk(siblings, seen)}
        out = {}
        for key, value in node.items():
            if key in ("title", _FLAGS):
                continue
            if key in _VALUES:
                out[key] = value
            elif key == "description" and isinstance(value, str):
                out[key] = _one_line(value)
            elif key == "discriminator" and isinstance(value, dict):  # its mapping names $defs inlined away
                out[key] = {k: v for k, v in value.items() if k != "mapping"}
            elif key in _NAMED:
                out[key] = {name: walk(sub, seen) for name, sub in value.items()}
            else:
                out[key] = walk(value, seen)
        if isinstance(node.get(_FLAGS), str):
            out["description"] = " ".join(filter(None, [out.get("description"), node[_FLAGS]]))
        return out

    result = walk(schema, ())
    if kept:
        result["$defs"] = kept
    return result


_MOST_SHOWN = 100_000  # parts of a schema written out for the model (`_written_size`): 2 MB, far past its context


def _written_size(schema: Any, definitions: Mapping[str, Any]) -> int:
    """How many parts (objects, arrays and listed values) `schema` has once its `$ref`s are written out in place, as
    `_inlined` writes them, counted over each definition once: a 20-deep chain of models each with two fields of
    the next is 2**20 objects written out, which held the kernel and its memory without end."""
    sizes: dict[str, int] = {}

    def size(node: Any, inside: frozenset[str]) -> int:
        if isinstance(node, list):
            return 1 + sum(size(item, inside) for item in node)
        if not isinstance(node, dict):
            return 0
        total = 1 + sum((len(value) if isinstance(value, list) else 1) if key in _VALUES else size(value, inside)
                        for key, value in node.items())
        ref = node.get("$ref")
        name = ref[len(_DEFS):] if isinstance(ref, str) and ref.startswith(_DEFS) else None
        if name in definitions and name not in inside:  # (a type that refers to itself keeps its reference)
            if name not in sizes:
                sizes[name] = size(definitions[name], inside | {name})
            total += sizes[name]
        return total

    return size(schema, frozenset())


def typed_schema(annotation: Any, *, where: str = "value") -> tuple[pydantic.TypeAdapter, dict[str, Any]]:
    """The pydantic adapter validating a type, and its Harmony-style JSON schema; TypeError naming
    `where` for a type pydantic can't validate or describe."""
    try:
        if (parts := _parts(annotation)) > _MOST_PARTS:
            raise _Unshowable(f"written out, it has {parts:,} parts (a part such as list[T] | tuple[T, ...] is built "
                              "again at each place it is written, and unions inside one another double them), more "
                              f"than the {_MOST_PARTS:,} built in time: name the repeated part, type Part = ... "
                              "(typing_extensions.TypeAliasType before Python 3.12) or a model, which is built once")
        adapter = pydantic.TypeAdapter(annotation)
        schema = adapter.json_schema(schema_generator=HarmonySchema)
        if isinstance(adapter.validator, SchemaValidator):  # (not a plugin's wrapper)
            kind, (core, *options) = adapter.validator.__reduce__()[:2]  # pydantic's own (pickling) form of it
            # a new validator for this adapter (the user's class keeps its own)
            adapter.validator = kind(_checked_core(core), *options)
        return adapter, schema
    except (pydantic.PydanticUserError, pydantic.PydanticUndefinedAnnotation, TypeError, NameError) as err:
        if getattr(err, "code", None) == "class-not-fully-defined":  # it said "unsupported ...; use ... a pydantic model"
            missing = _undefined(annotation, set())
            raise TypeError(f"{where}: {_one_line(reprlib.repr(annotation))} refers to a type that is not defined"
                            f"{f' ({missing})' if missing else ''}: define it (run its cell) first") from None
        hint = (" (on Python < 3.12 a TypedDict must come from typing_extensions, not typing)"
                if getattr(err, "code", None) == "typed-dict-version" else "")
        raise TypeError(f"{where}: unsupported type annotation {annotation!r}{hint}; use {_SUPPORTED}") from None
    except _Unshowable as err:
        raise TypeError(f"{where}: {err}") from None
    except (SchemaError, PydanticSerializationError) as err:
        # a pattern pydantic's regex cannot compile (look-around), an Enum whose values JSON cannot write:
        # pydantic's message ends with the reason
        lines = [line.strip() for line in str(err).strip().splitlines()] or [type(err).__name__]
        reason = _one_line(lines[-1])[:200]
        if "SchemaError: regex parse error:" in lines:  # the next line is the pattern
            pattern = lines[lines.index("SchemaError: regex parse error:") + 1]
            raise TypeError(f"{where}: pydantic's Rust regex cannot read the pattern {reprlib.repr(pattern)} "
                            f"({reason}); write $ for \\Z (it never matches before a last newline), and no "
                            "look-around or backreferences") from None
        raise TypeError(f"{where}: unsupported type annotation {annotation!r} ({reason})") from None
    except RecursionError:  # list[list[...]] a few hundred deep: pydantic recurses once per level
        raise TypeError(f"{where}: the type annotation is nested too deeply to describe") from None


_MOST_PARTS = 20_000  # of a type (`_parts`): pydantic and the lab's walks over it take about 0.1 ms a part


def _parts(annotation: Any) -> int:
    """How many parts pydantic builds for a type: a generic (list[T], A | B, Annotated[...]) at every place it is
    written, so a 16-deep list[T] | tuple[T, ...] has 327,676 (22 s to build); a class or a type alias once, as
    pydantic defines it once and refers to it. Counted over the type's objects as they are shared, each once; 0 for
    one nested past Python's recursion limit."""
    sizes: dict[int, int] = {}  # id of a generic -> its parts, but for the classes and aliases inside
    defined: dict[int, Any] = {}  # id of a class or alias counted -> it (kept alive while ids are compared)
    inside = 0  # the parts of the classes' fields and the aliases' values

    def count(node: Any) -> int:
        nonlocal inside
        if id(node) in sizes:
            return sizes[id(node)]
        if isinstance(node, type) or type(node).__name__ == "TypeAliasType":
            if id(node) not in defined:
                defined[id(node)] = node
                inside += sum(map(count, _defined_parts(node)))
            return 1
        args = () if typing.get_origin(node) is typing.Literal else typing.get_args(node)
        sizes[id(node)] = 1 + sum(map(count, args))
        return sizes[id(node)]

    try:
        return count(annotation) + inside
    except RecursionError:  # nested hundreds deep: pydantic refuses it as too deeply nested
        return 0


def _defined_parts(node: Any) -> list[Any]:
    """The types a class's fields or an alias's value are made of, as pydantic builds them (a field's type written as
    text counts as one part: typing.get_type_hints, which reads it, rebuilds every type it meets, 4 s for a 16-deep
    union); none where they cannot be read (pydantic says why)."""
    try:
        if not isinstance(node, type):
            return [node.__value__]
        if issubclass(node, pydantic.BaseModel):
            return [info.annotation for info in node.model_fields.values()]
        if is_dataclass(node):
            return [each.type for each in node.__dataclass_fields__.values()]
        if typing_extensions.is_typeddict(node) or (issubclass(node, tuple) and hasattr(node, "_fields")):
            return list(getattr(node, "__annotations__", {}).values())
    except Exception:  # noqa: BLE001 - a name not defined yet, a broken hint: pydantic's own error tells it
        pass
    return []


def _undefined(annotation: Any, seen: set[int]) -> str | None:
    """What names the first undefined type inside `annotation` (pydantic's error names none): a string annotation
    of its own, or the NameError of a class's type hints; None when it is not found."""
    if isinstance(annotation, str | typing.ForwardRef):
        return f"{getattr(annotation, '__forward_arg__', annotation)!r}"
    if id(annotation) in seen:
        return None
    seen.add(id(annotation))
    inner = list(typing.get_args(annotation))
    if isinstance(annotation, type):
        try:
            inner += typing.get_type_hints(annotation).values()
        except NameError as err:
            return str(err)
        except Exception:  # noqa: BLE001 - anything else a hint raises: no name to give
            return None
    return next(filter(None, (_undefined(item, seen) for item in inner)), None)


_ERRORS_SHOWN = 3      # validation errors described; the others are counted
_ERROR_CHARS = 200     # per error: a Literal of 3 000 values lists them all


def describe_errors(err: pydantic.ValidationError) -> str:
    """pydantic's errors as `field.path: message; ...` (no URLs), short enough to show the model: the first
    few, each cut short, and how many more (5 000 wrong items were 400 000 characters)."""
    return _described(_listed(err))


def _listed(err: pydantic.ValidationError) -> list[Any]:
    """pydantic's errors without their inputs and URLs: a deep union's 65 536 errors each copied its part of the answer
    (seconds, after the check's deadline)."""
    return err.errors(include_url=False, include_input=False)


def _described(errors: list[Any]) -> str:
    """`describe_errors` of pydantic's errors (`_listed`)."""
    # not `_checked_core`'s deadline checks, nor its unions' first tries (their second ones say the same)
    errors = [e for e in errors if e["type"] != _IN_TIME_TYPE]
    places = [_location(p for p in e["loc"] if p != _WHOLE_LABEL) for e in errors[:_ERRORS_SHOWN]]
    shown = [(f"{place}: " if place else "") + _one_line(_message(e)) for place, e in zip(places, errors)]
    more = len(errors) - len(shown)
    return "; ".join(t if len(t) <= _ERROR_CHARS else t[:_ERROR_CHARS - 1] + "…" for t in shown) + (
        f"; and {more} more error{'s' if more > 1 else ''}" if more else "")


_PLACE_CHARS = 40  # a key in an error's location: a 5 000-digit key filled the error's characters, its reason cut off


def _location(parts: Iterable[Any]) -> str:
    """An error's location as `items.0.name`, each key cut to `_PLACE_CHARS` with "…", and one that is not on one
    line as it is (" 1", "a\\nb", "") or holds a character that is not printable (a control character, a direction
    override) written as JSON writes it: " 1" was told as 1, a key the answer did not have, and "user\\u202eexe.txt"
    read "usertxt.exe"."""
    shown = []
    for part in map(str, parts):
        cut = part if len(part) <= _PLACE_CHARS else part[:_PLACE_CHARS - 1] + "…"
        shown.append(cut if cut and cut == _one_line(cut) and cut.isprintable() else json.dumps(cut))
    return ".".join(shown)


def _message(error: Any) -> str:
    """One pydantic error's message, a pattern named as the user wrote it, not as `_checked_core` spelled it."""
    pattern = (error.get("ctx") or {}).get("pattern")
    if error["type"] == "string_pattern_mismatch" and pattern in _AS_WRITTEN:
        return f"String should match pattern '{_AS_WRITTEN[pattern]}'"  # pydantic's words
    return error["msg"]


# ---------------------------------------------------------------- response formats

@dataclass(frozen=True)
class ResponseFormat:
    """A requested answer format. Build with `from_user`."""

    target: Any                 # what the user gave; `parse` returns an instance of it
    section: dict[str, Any]     # {"name", "description"?, "schema"} for the developer message: the schema as shown
    _load: Callable[[str], Any] = field(repr=False, compare=False)  # JSON text -> validated value
    _schema: dict[str, Any] = field(repr=False, compare=False)  # the whole schema, answers are checked against
    note: str | None = None     # what the user should know of how the schema is shown (`_listed_enums`), one line

    @classmethod
    def from_user(cls, obj: Any, *, name: str | None = None, description: str | None = None) -> ResponseFormat:
        """From a pydantic model, dataclass, TypedDict (or any type pydantic validates) or a JSON-schema
        dict; TypeError for anything else, ValueError for a dict that is not a valid JSON schema.
        `name` and `description` replace the ones taken from the class or the schema's title."""
        if isinstance(obj, ResponseFormat):
            return obj
        if isinstance(obj, Mapping):
            schema, load = _dict_format(obj)
            default_name, doc = str(obj.get("title", "response")), obj.get("description")
        else:
            if not _is_type(obj):
                hint = " (JSON text? pass json.loads(text))" if isinstance(obj, str) and obj.lstrip()[:1] == "{" else ""
                if isinstance(obj, pydantic.BaseModel) or is_dataclass(obj):  # `m = M(...)`, then `--json m`
                    hint = f" (an instance: pass its class, {type(obj).__name__})"
                # reprlib: a DataFrame's repr is many lines, a string's may be long, a broken one raises
                raise TypeError("expected a pydantic model, dataclass, TypedDict or JSON-schema dict, "
                                f"not {_one_line(reprlib.repr(obj))}{hint}")
            adapter, schema = typed_schema(obj, where=_type_name(obj))
            default_name, doc = getattr(obj, "__name__", "response"), _class_summary(obj)
            load = functools.partial(_load_typed, adapter)
        section: dict[str, Any] = {"name": _section_name(name or default_name)}
        if description or doc:
            section["description"] = description or doc
        section["schema"], unlisted = _listed_enums(schema)
        note = None
        if unlisted:
            places = ", ".join(f"{count:,} values at {place}" for place, count in unlisted[:3])
            more = f", and {len(unlisted) - 3} more" if len(unlisted) > 3 else ""
            note = (f"The response format's schema has enums too long to write into the prompt ({places}{more}): the "
                    "model is told how many values there are, with a few examples; answers are still checked against "
                    "all of them.")
        return cls(obj, section, load, schema, note)

    @property
    def schema(self) -> dict[str, Any]:
        """The whole schema, which answers are checked and constrained against (`section` shows it to the model)."""
        return self._schema

    def parse(self, text: str) -> Any:
        """The final answer as the requested type: a model/dataclass instance, a dict or a JSON value
        (a ```json fence, with or without prose around it, or prose before or after the JSON is accepted; of two
        JSON answers, the last is the one the model settled on). StructuredOutputError says what is wrong."""
        try:
            return self._load(_json_part(text, _kinds(self.schema)))
        except (StructuredOutputError, KeyboardInterrupt):  # (the session tells a Ctrl-C)
            raise
        except BaseException as err:  # the schema's own failure: a $ref that leads nowhere, a validator that raises
            # (sys.exit(), GeneratorExit or a library's own BaseException too: they ended the turn without its Reply)
            kind = next(c.__name__ for c in type(err).__mro__ if not c.__name__.startswith("_"))
            said = error_message(err)[:300]
            raise StructuredOutputError(f"the final answer could not be checked against the schema "
                                        f"({kind}{': ' if said else ''}{said})") from None

    def processor(self) -> JsonSchemaProcessor:
        """A transformers logits processor keeping `final` answers inside the schema (needs llguidance);
        ValueError when llguidance cannot compile the schema."""
        return JsonSchemaProcessor(self.schema)


_LISTED_CHARS = 10_000   # an enum's values written as JSON that the prompt lists (`_listed_enums`)
_EXAMPLE_CHARS = 200     # of the values given as examples in place of an enum too long to list


def _listed_enums(schema: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, int]]]:
    """`schema` as the developer message shows it, and the place and size of each enum it does not list: an enum
    longer than `_LISTED_CHARS` as JSON is said as "one of N values" with a few `examples` (100,000 values made the
    prompt 1.3 MB, more than a model's context, and the turn was refused)."""
    unlisted: list[tuple[str, int]] = []

    def walk(node: Any, place: str) -> Any:
        if isinstance(node, list):
            return [walk(item, f"{place}/{index}") for index, item in enumerate(node)]
        if not isinstance(node, dict):
            return node
        shown = {key: value if key in _VALUES else
                 {name: walk(sub, f"{place}/{key}/{name}") for name, sub in value.items()}
                 if key in _NAMED and isinstance(value, Mapping) else walk(value, f"{place}/{key}")
                 for key, value in node.items()}
        values = node.get("enum")
        if not isinstance(values, list) or len(json.dumps(values)) <= _LISTED_CHARS:
            return shown
        unlisted.append((place, len(values)))
        examples, left = [], _EXAMPLE_CHARS
        for value in values:
            left -= len(json.dumps(value)) + 2
            if left < 0:
                break
            examples.append(value)
        del shown["enum"]
        kinds = {_kind(value) for value in values}  # the values' one type, where they share one, is said as the type
        if "type" not in shown and len(kinds) == 1:
            kind = kinds.pop()
            shown["type"] = "integer" if kind == "number" and all(isinstance(v, int) for v in values) else kind
        said = f"One of {len(values):,} values, too many to list here."
        shown["description"] = " ".join(filter(None, [shown.get("description"), said]))
        return {**shown, "examples": examples} if examples else shown  # (none when the first is too long to give)

    shown = walk(schema, "#")
    return (shown if unlisted else schema), unlisted


# a fence of any language (```json, ```jsonc ...: a closing ``` was taken for the opening one); a fence the answer
# ended before closing (`\Z`) still holds the JSON. One way only to read the blanks around the language (two `[ \t]*`
# side by side split a run of them every way: "```" and 10,000 spaces held the kernel 2 s, 40,000 a minute)
_FENCE = re.compile(r"```[ \t]*(?:[\w+.-]+[ \t]*)?(?:\r?\n|(?=[\[{\"]))(.*?)(?:```|\Z)", flags=re.S)


def _json_part(text: str, kinds: frozenset[str] | None) -> str:
    """The JSON in a final answer: all of it when it is JSON ("see {}" is a string, not the object in it), else the
    last JSON value in it whose type is one of the schema's `kinds` (any when None), else the last of another type:
    the answer the model settled on (`{"count": 1}` then `{"count": 2}` is a correction; the first was taken).
    Values are read from each `{` and `[` and where a ``` fence's content starts (```json or any language; a fence
    left open runs to the end; a ``` inside the JSON's strings is their text); prose around them is ignored. When
    none reads: the last fence's content, or the text, for the error to be about."""
    body = text.strip()
    with contextlib.suppress(ValueError, RecursionError):
        _SPANS.decode(body)
        return body
    fences = list(_FENCE.finditer(body))
    wanted = other = None
    for span in _json_values(body, [_SPACES.match(body, fence.start(1)).end() for fence in fences]):
        if kinds is None or _kind(span[2]) in kinds:
            wanted = span
        else:
            other = span
    found = wanted or other
    if found is not None:
        return body[found[0]:found[1]]
    return fences[-1].group(1).strip() if fences else body


# reads JSON only to find where it is: an integer as a float, as digits past Python's int limit raise (the answer's
# own check, `json_value`, refuses them)
_SPANS = json.JSONDecoder(parse_int=float)
# a `{` or `[` that may start JSON: one before a character no JSON goes on with (`{x}`, `[the docs]`) is not read
_SPACES = re.compile(r"[ \t\n\r]*")
_OPENERS = re.compile(r'\{(?=[ \t\n\r]*["}])|\[(?=[ \t\n\r]*[-0-9"{}\[\]tfnNI])')
_WINDOW = 512  # characters a JSON value is first read from (`_value_at`)
_EDGE = 16  # an error this near a window's end may be the window's (`-Infinity` cut after `-Inf`), not the text's
_BROKE_OFF = object()  # `_value_at`'s value for JSON that is not: it broke off at the position given


def _json_values(text: str, starts: list[int]) -> Iterator[tuple[int, int, Any]]:
    """(start, end, value) of each JSON value in `text` that no other holds, left to right, read from each `{` and `[`
    and from each of `starts` (in order): one inside a value read, or inside JSON that broke off before its end
    (`{"b": 1}` in `{"a": {"b": 1} oops`), is part of it. Linear in the text (`_value_at`; the next opener is searched
    for again only once it is passed: 20 000 fences took 13 s); nesting too deep to read ends the search."""
    cursor, given = 0, iter(starts)
    after = next(given, None)
    opener = _OPENERS.search(text)
    while True:
        if opener is not None and opener.start() < cursor:
            opener = _OPENERS.search(text, cursor)
        while after is not None and after < cursor:
            after = next(given, None)
        candidates = [place for place in (opener.start() if opener else None, after) if place is not None]
        if not candidates:
            return
        start = min(candidates)
        try:
            end, value = _value_at(text, start)
        except RecursionError:
            return
        if value is not _BROKE_OFF:
            yield start, end, value
        cursor = max(end, start + 1)


def _value_at(text: str, start: int) -> tuple[int, Any]:
    """(end, value) of the JSON value at `start`, or (where it broke off, `_BROKE_OFF`). It is read from a window of
    the text that doubles while the window's end may be what broke it: json's error finds its line and column by
    counting from the start of the text it read, which made a search of 100 000 braces take 4 s, and read whole."""
    window = _WINDOW
    while True:
        part = text[start:start + window]
        whole = start + window >= len(text)
        try:
            value, end = _SPANS.raw_decode(part)
        except json.JSONDecodeError as err:
            if whole or (err.pos < len(part) - _EDGE and not err.msg.startswith("Unterminated string")):
                return start + err.pos, _BROKE_OFF
        else:
            if whole or end < len(part):  # (a number at the window's end may go on past it)
                return start + end, value
        window *= 2


def _kind(value: Any) -> str:
    """A JSON value's type as JSON Schema names it ("number" for any number)."""
    if isinstance(value, bool):
        return "boolean"
    kinds = {dict: "object", list: "array", str: "string", type(None): "null"}
    return kinds.get(type(value), "number")


def _kinds(schema: Any) -> frozenset[str] | None:
    """The JSON types a schema's answer may have, as `_kind` names them, from its "type" and its "anyOf" or "oneOf"
    alternatives; None when it does not say (any type)."""
    if not isinstance(schema, Mapping):
        return None
    stated = schema.get("type")
    kinds = {stated} if isinstance(stated, str) else set(stated) if isinstance(stated, list) else None
    for key in ("anyOf", "oneOf"):
        alternatives = schema.get(key)
        if isinstance(alternatives, list):
            each = [_kinds(alternative) for alternative in alternatives]
            if all(kind is not None for kind in each):
                union = set().union(*each)
                kinds = union if kinds is None else kinds & union
    if kinds is None:
        return None
    return frozenset("number" if kind == "integer" else kind for kind in kinds)


def _section_name(name: str) -> str:
    """A name for the `## name` heading: ASCII letters, digits, `_` and `-` (accents dropped, others `_`),
    at most 64 characters; "response" when nothing readable is left."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", ascii_name.strip())[:64]
    return cleaned if re.search(r"[A-Za-z0-9]", cleaned) else "response"


def _is_type(obj: Any) -> bool:
    """A class or a typing construct (list[int], Literal[...]), not an instance or a string."""
    return isinstance(obj, type) or type(obj).__module__ in ("typing", "types", "typing_extensions")


def _type_name(kind: Any) -> str:
    """How an error names a type: its name, else its repr, but for one too large to build (`_parts`), whose repr
    takes seconds (a 16-deep union's is 1.5 MB)."""
    name = getattr(kind, "__name__", None)
    if isinstance(name, str):
        return name
    return "the type" if _parts(kind) > _MOST_PARTS else repr(kind)


def _class_summary(cls: Any) -> str | None:
    """A class docstring's summary, ignoring the signature dataclasses write as a docstring."""
    doc = cls.__dict__.get("__doc__") if isinstance(cls, type) else None
    if not doc or doc.startswith(f"{cls.__name__}("):
        return None
    return docstring(doc)[0] or None


def _load_typed(adapter: pydantic.TypeAdapter, body: str) -> Any:
    _strict_json(body)  # pydantic reads 1e999 as inf
    with _checked_in_time(), numbers_as_written(body):  # its unions check the deadline (`_checked_core`)
        return _validated(adapter, body)


# the numbers with a fraction or an exponent in the JSON being checked, as written: float -> the texts read as it
_WRITTEN: contextvars.ContextVar[Mapping[float, list[str]]] = contextvars.ContextVar("_WRITTEN", default={})


# digits of a Decimal division made exactly: pydantic's multiple_of divides at the default 28, so the valid 1e300
# (a multiple of 0.01) "could not be checked (InvalidOperation: [<class 'decimal.DivisionImpossible'>])"
_EXACT_DIGITS = 10_000


@contextlib.contextmanager
def numbers_as_written(text: str) -> Iterator[None]:
    """Checks made inside (of the JSON `text`) read a Decimal as `text` writes it (`_decimal_as_written`) and divide
    it exactly to `_EXACT_DIGITS` digits; a ValueError that says so past them."""
    written: dict[float, list[str]] = {}

    def note(number: str) -> float:
        value = float(number)
        written.setdefault(value, []).append(number)
        return value

    with contextlib.suppress(ValueError, RecursionError):  # (JSON that does not read is refused by the check)
        json.loads(text, parse_float=note)
    token = _WRITTEN.set(written)
    try:
        with decimal.localcontext(prec=_EXACT_DIGITS):
            yield
    except decimal.InvalidOperation as err:
        if decimal.DivisionImpossible not in (err.args[0] if err.args and isinstance(err.args[0], list) else ()):
            raise
        raise ValueError(f"a Decimal is too large for its multiple_of to be checked exactly: it is more than "
                         f"{_EXACT_DIGITS:,} digits of multiples away from 0") from None
    finally:
        _WRITTEN.reset(token)


def _decimal_as_written(value: Any) -> Any:
    """A JSON number checked as a Decimal, read from its text (`numbers_as_written`): pydantic reads it through a
    float, so 0.10000000000000000000000001 was Decimal('0.1') and 12.30 Decimal('12.3'). Numeric text keeps being
    read as it is written, anything else refused."""
    if isinstance(value, float):
        texts = list(dict.fromkeys(_WRITTEN.get().get(value, [repr(value)])))
        if len({decimal.Decimal(text) for text in texts}) > 1:
            raise PydanticCustomError("gptoss_decimal_text", "Decimal input is one of {texts}, which the check cannot "
                                      "tell apart (they read as the same float)", {"texts": ", ".join(texts)[:100]})
        return decimal.Decimal(texts[0])
    if isinstance(value, int) and not isinstance(value, bool):
        return decimal.Decimal(value)
    if isinstance(value, str) and _search(_NUMBER_TEXT, value):  # a number given as text, which pydantic takes
        return decimal.Decimal(value)
    raise PydanticCustomError("decimal_parsing", "Input should be a valid decimal")  # pydantic's words


def _validated(adapter: pydantic.TypeAdapter, body: str) -> Any:
    """The answer's JSON text validated by the adapter, strictly as the JSON types the model was shown (as a schema
    dict and a function's arguments are: lax mode read `"yes"` as True, `true` as 1 and the string "nan" as a float
    NaN); StructuredOutputError saying what is wrong."""
    try:
        return adapter.validate_json(body, strict=True)
    except pydantic.ValidationError as err:
        errors = _listed(err)   # once: a deep union's are seconds to list
        invalid = [e["msg"] for e in errors if e["type"] == "json_invalid"]
        if invalid:
            raise StructuredOutputError(f"the final answer is not valid JSON: {invalid[0]}") from None
        raise StructuredOutputError(f"the final answer does not match the schema: {_described(errors)}") from None


def _dict_format(schema: Mapping[str, Any]) -> tuple[dict[str, Any], Callable[[str], Any]]:
    """A JSON-schema dict, checked, and its loader. pydantic builds validators from types, not from
    schemas, so a schema dict is validated by `jsonschema` (the reference implementation), imported here (`_jsonschema`),
    which every other use goes without."""
    jsonschema = _jsonschema()

    schema = dict(schema)
    if _depth(schema) > _SCHEMA_DEPTH:
        raise ValueError(f"not supported: the schema is nested deeper than {_SCHEMA_DEPTH} levels of arrays and objects, "
                         "the most the check and constrained decoding take")
    try:
        kind = jsonschema.validators.validator_for(schema)
        refusal = _costly_pattern(schema, kind)
        if refusal is not None:
            raise ValueError(f"not supported: {refusal}")
        _check_schema(kind, schema)
    except jsonschema.SchemaError as err:
        raise ValueError(f"not a valid JSON schema: {_one_line(err.message)[:300]}") from None
    except (AttributeError, TypeError, RecursionError) as err:  # a "$schema" that is not text; nesting too deep
        raise ValueError(f"not a valid JSON schema ({type(err).__name__}: {_one_line(str(err))[:200]})") from None
    try:  # the developer message shows the schema as JSON: a set, a date, a 5000-digit number, infinity cannot be shown
        json.dumps(schema, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"not a valid JSON schema: {_one_line(str(err))[:200]}") from None
    if _has_key(schema, "unevaluatedProperties") and _has_key(schema, "patternProperties"):
        raise ValueError("not supported: unevaluatedProperties with patternProperties (jsonschema matches those "
                         "patterns with no time limit); use additionalProperties instead")
    elsewhere = next(_outside_refs(schema), None)
    if elsewhere is not None:
        raise ValueError(f"not supported: a reference to another document ({_one_line(reprlib.repr(elsewhere))}); "
                         "put its definitions under $defs and refer to them as #/$defs/NAME (nothing is fetched)")
    missing = _unresolved(schema, kind)
    if missing is not None:
        raise ValueError(f"not a valid JSON schema: {missing[0]} refers to {_one_line(reprlib.repr(missing[1]))}, which "
                         f"is not in the schema{_defined(schema)}")
    try:
        loop = _loop_in_place(schema, kind)
    except RecursionError:
        raise ValueError(f"not supported: more than {_IN_PLACE_DEPTH} references ($ref, allOf ...) in a row applied to "
                         "the same value, which the check cannot follow") from None
    if loop is not None:
        raise ValueError(f"not supported: {loop[0]} refers back to itself ({' -> '.join(loop)}) without going into a "
                         "part of the answer, so no answer could be checked; a recursive schema refers to itself "
                         "inside properties or items")
    if _has_key({key: value for key, value in schema.items() if key != "$schema"}, "$schema"):
        raise ValueError('not supported: "$schema" inside the schema (jsonschema checks such a part with its own '
                         'validator, without the time limit on the check); give "$schema" once, at the top')
    # patterns matched with the `regex` module: `re` backtracks for ever on patterns like ^(a+)+$ and a long answer;
    # uniqueItems and enum by hashing (jsonschema compares every pair of objects, an answer's value with each of an
    # enum's); every keyword first checks the deadline
    keywords = {**kind.VALIDATORS, "pattern": _pattern, "patternProperties": _pattern_properties,
                "additionalProperties": _additional_properties, "uniqueItems": _unique_items, "multipleOf": _multiple_of,
                "enum": _enum_keyword()}
    kind = jsonschema.validators.extend(kind, {name: _in_time(check) for name, check in keywords.items()})
    # an empty registry: a reference the schema does not hold is an error, never a download (jsonschema's default
    # fetched it with no timeout, while the session holds Ctrl-C back, and read file:// paths)
    validator = kind(schema, format_checker=_format_checker(kind), registry=referencing.Registry())

    def load(body: str) -> Any:
        value = _strict_json(body)
        try:
            with _checked_in_time():
                error = jsonschema.exceptions.best_match(validator.iter_errors(value))
        except RecursionError:  # jsonschema recurses several frames a level of the answer, more through $refs
            raise StructuredOutputError(f"the final answer, {_depth(value)} levels of arrays and objects deep, is nested "
                                        "deeper than the check of this schema can follow (it ran out of Python's "
                                        "stack)") from None
        if error is not None:
            where = _location(error.absolute_path) or "answer"
            # one short line, however long the answer or the schema's enum
            raise StructuredOutputError(_one_line(f"the final answer does not match the schema: {where}: "
                                                  f"{_said(error)}")[:400])
        return value

    return schema, load


_PART = reprlib.Repr()  # how an error quotes the part of the answer it is about
_PART.maxstring, _PART.maxother = 60, 60


def _said(error: jsonschema.ValidationError) -> str:
    """jsonschema's message with the part of the answer it starts with (its repr) quoted short: the repr of a long
    array or text filled the one line before the reason ("... has non-unique elements", "... does not match '^x$'"),
    which was cut off."""
    whole = repr(error.instance)
    if len(whole) <= _PART.maxstring or not error.message.startswith(whole):
        return error.message
    return _PART.repr(error.instance) + error.message[len(whole):]


def _jsonschema() -> Any:
    """jsonschema, imported with rfc3987_syntax's import put off to the first use of jsonschema's own IRI check: that
    import builds its IRI grammar, 1.2 s of CPU (3 s at the first `--json` of a schema dict on a busy machine) of
    jsonschema's 1.25 s, and the lab checks IRIs its own way (`_check_iris`). A stand-in module gives jsonschema
    `_iri_syntax` for the real one while it is imported; where rfc3987_syntax is not installed, or was imported before,
    jsonschema is imported as it is."""
    if "jsonschema" in sys.modules or "rfc3987_syntax" in sys.modules or importlib.util.find_spec("rfc3987_syntax") is None:
        import jsonschema
        return jsonschema
    stand_in = types.ModuleType("rfc3987_syntax")
    stand_in.is_valid_syntax = _iri_syntax  # type: ignore[attr-defined]
    sys.modules["rfc3987_syntax"] = stand_in
    try:
        import jsonschema
    finally:
        if sys.modules.get("rfc3987_syntax") is stand_in:
            del sys.modules["rfc3987_syntax"]
    return jsonschema


def _iri_syntax(term: str, value: str) -> bool:
    """rfc3987_syntax's `is_valid_syntax`, imported at its first call (`_jsonschema`); True where it cannot be
    imported, as jsonschema then leaves the IRI formats unchecked."""
    try:
        from rfc3987_syntax import is_valid_syntax
    except ImportError:
        return True
    return bool(is_valid_syntax(term, value))


# arrays and objects inside one another in a schema dict: jsonschema's check of it against its meta-schema ran out of
# Python's stack near 120 in a script (Python's limit of 1,000 frames, less those its caller holds; IPython raises it to
# 3,000): "not a valid JSON schema (RecursionError: ...)"; llguidance reads up to 124 (--constrain)
_SCHEMA_DEPTH = 100


def _outside_refs(node: Any) -> Iterator[str]:
    """The references (`$ref`, `$dynamicRef`, `$recursiveRef`) in a schema that point outside it (not `#…`); the
    values of enum, const, default and examples are data, and a property may be named "$ref"."""
    if isinstance(node, list):
        for item in node:
            yield from _outside_refs(item)
    elif isinstance(node, Mapping):
        for key, value in node.items():
            if key in ("$ref", "$dynamicRef", "$recursiveRef") and isinstance(value, str) and not value.startswith("#"):
                yield value
            elif key in _NAMED and isinstance(value, Mapping):
                for sub in value.values():
                    yield from _outside_refs(sub)
            elif key not in _VALUES:
                yield from _outside_refs(value)


# keywords applying a schema to the very value they check (not to a part of it, as properties and items do)
_IN_PLACE_DEPTH = 200  # such subschemas one inside another: jsonschema ran out of stack on every answer near 500
_IN_PLACE = ("$ref", "$dynamicRef", "$recursiveRef", "allOf", "anyOf", "oneOf", "not", "if", "then", "else",
             "dependentSchemas", "dependencies")


def _loop_in_place(schema: Mapping[str, Any], kind: Any) -> list[str] | None:
    """The places (`#`, `#/$defs/a`) of a loop of subschemas, anywhere in the schema, that apply one another to the
    same value, first and last the same, or None: jsonschema follows `{"$ref": "#"}` for ever, and every answer failed with RecursionError.
    A loop through properties or items goes a level into the answer each time, and ends with it. RecursionError for
    more than `_IN_PLACE_DEPTH` such subschemas in a row (a chain of $refs), which jsonschema cannot follow either."""
    specification = _specification(kind)
    walking: dict[int, str] = {}  # id of each subschema on the way to the present one -> its place
    done: set[int] = set()

    def walk(node: Any, place: str, resolver: Any) -> list[str] | None:
        if not isinstance(node, Mapping) or id(node) in done:
            return None
        if id(node) in walking:
            places = list(walking.values())
            return [*places[list(walking).index(id(node)):], place]
        walking[id(node)] = place
        if len(walking) > _IN_PLACE_DEPTH:
            raise RecursionError
        resolver = resolver.in_subresource(specification.create_resource(node))
        for key in _IN_PLACE:
            value = node.get(key)
            if key.startswith("$") and isinstance(value, str):
                try:
                    resolved = resolver.lookup(value)
                except referencing.exceptions.Unresolvable:  # refused before (`_unresolved`)
                    continue
                nexts = [(resolved.contents, value, resolved.resolver)]
            elif isinstance(value, Mapping) and key in ("dependentSchemas", "dependencies"):
                nexts = [(sub, f"{place}/{key}/{name}", resolver) for name, sub in value.items()]
            elif isinstance(value, list):
                nexts = [(sub, f"{place}/{key}/{index}", resolver) for index, sub in enumerate(value)]
            else:
                nexts = [(value, f"{place}/{key}", resolver)]
            for step in nexts:
                loop = walk(*step)
                if loop is not None:
                    return loop
        del walking[id(node)]
        done.add(id(node))
        return None

    return next(filter(None, (walk(*found) for found in _subschemas(schema, specification))), None)


# characters of a schema's pattern: compiling one is not interruptible (100,000 alternatives held the kernel 9 s
# in the meta-schema's `format: regex` check and 15 s in `regex` when an answer was checked)
_PATTERN_CHARS = 10_000


def _costly_pattern(schema: Mapping[str, Any], kind: Any) -> str | None:
    """Why the first `pattern` or `patternProperties` key in a schema is refused (`_pattern_refusal`), also one
    longer than `_PATTERN_CHARS`, with its place; None when every one is taken."""
    for node, place, _ in _subschemas(schema, _specification(kind)):
        named = node.get("patternProperties")
        for where, pattern in [("pattern", node.get("pattern")), *(
                (f"patternProperties/{key[:20]}", key) for key in (named if isinstance(named, Mapping) else ()))]:
            if isinstance(pattern, str) and len(pattern) > _PATTERN_CHARS:
                return (f"a pattern of {len(pattern):,} characters at {place}/{where}, more than the "
                        f"{_PATTERN_CHARS:,} the check takes (a pattern is compiled with no time limit)")
            refusal = _pattern_refusal(pattern, f" at {place}/{where}") if isinstance(pattern, str) else None
            if refusal is not None:
                return refusal
    return None


# characters a pattern may stand for with its repetitions written out (`_written_out`): compiled, `((a{1000}){1000}){3}`
# took `regex` 1.4 s to check an answer (a fourth level ran the kernel out of memory) and llguidance 182 s before the
# first token of a constrained answer (`a{100000}` 47 s), neither interruptible; `a{10000}` takes it ~0.15 s a token
_PATTERN_SIZE = 10_000
_SIZE_CEILING = 10 ** 12  # sizes are counted up to this, so that `(((a{999999999}){999999999})...)` stays a small number
# the pieces `_written_out` reads: a group of flags or an anchor, a group's opening (its `?` extension with it), its end,
# `|`, a counted repetition, `*` `+` `?`, and one item: an escape (\p{...}, \x{...} whole), a character class, a character
_REPEATS = regex.compile(r"""(?P<flags>\(\?[a-zA-Z-]*\)|[\^$]|\\[bBAzZ])
    | (?P<open>\((?:\?(?:<?[=!]|P?<[^>]*>|[a-zA-Z-]*:|>))?) | (?P<close>\)) | (?P<bar>\|)
    | \{(?P<least>[0-9]*)(?:,(?P<most>[0-9]*))?\} | (?P<once>[*+?])
    | \\[pPxu]\{[^}]*\} | \\. | \[\^?\]?(?:\[:\w*:\]|\\.|[^\]\\])*\] | .""", flags=regex.S | regex.X)


def _written_out(pattern: str) -> int:
    """How many items (characters, classes) `pattern` stands for with its counted repetitions written out, as
    `regex` and llguidance build it: `(ab){3}` is 6, `(a{10}|b){10}` 110; `*`, `+` and `{m,}` repeat once (or m times).
    Anchors stand for none. Read in both dialects (Rust's and JSON Schema's), without compiling it; at most
    `_SIZE_CEILING`."""
    sizes, last = [0], 0  # the items of each group open, innermost last; of the one a repetition would repeat
    for piece in _REPEATS.finditer(pattern):
        if piece["open"] is not None:
            sizes.append(0)
            last = 0
        elif piece["close"] is not None and len(sizes) > 1:
            last = sizes.pop()
            sizes[-1] = min(sizes[-1] + last, _SIZE_CEILING)
        elif piece["flags"] is not None or piece["bar"] is not None:
            last = 0
        elif piece["least"] is not None:
            count = max(_SIZE_CEILING if len(digits.lstrip("0")) > 12 else int(digits or 0)
                        for digits in (piece["least"], piece["most"] or "", "1"))
            sizes[-1] = min(sizes[-1] + last * (count - 1), _SIZE_CEILING)
            last = min(last * count, _SIZE_CEILING)
        elif piece["once"] is None:
            sizes[-1] += 1
            last = 1
    return min(sum(sizes), _SIZE_CEILING)


def _pattern_refusal(pattern: str, place: str = "") -> str | None:
    """Why `pattern` (at `place`) is refused, on one line: it stands for more than `_PATTERN_SIZE` items written out
    (`_written_out`), which no engine compiles in time, nor can a compilation be interrupted; None when it is taken."""
    size = _written_out(pattern)
    if size <= _PATTERN_SIZE:
        return None
    more = " or more" if size >= _SIZE_CEILING else ""
    return (f"the pattern {_one_line(reprlib.repr(pattern))}{place} stands for {size:,}{more} "
            f"characters with its repetitions written out, more than the {_PATTERN_SIZE:,} that checking and "
            "constrained decoding compile in time; give a length as minLength and maxLength instead")


def _unresolved(schema: Mapping[str, Any], kind: Any) -> tuple[str, str] | None:
    """(place, reference) of the first `$ref`, `$dynamicRef` or `$recursiveRef` in a schema that leads to nothing
    in it (`#/$defs/Itme` for `Item`), or None: such a schema was taken, then every answer failed to be checked."""
    specification = _specification(kind)
    for node, place, around in _subschemas(schema, specification):
        resolver = around.in_subresource(specification.create_resource(node))
        for key in ("$ref", "$dynamicRef", "$recursiveRef"):
            reference = node.get(key)
            if isinstance(reference, str):
                try:
                    resolver.lookup(reference)
                except referencing.exceptions.Unresolvable:
                    return place, reference
    return None


def _defined(schema: Mapping[str, Any]) -> str:
    """The names a schema defines under `$defs` (or `definitions`), as the end of a sentence; "" when none."""
    names = [str(name) for key in ("$defs", "definitions") if isinstance(schema.get(key), Mapping) for name in schema[key]]
    return f" (it defines {_one_line(', '.join(names))[:200]})" if names else ""


def _specification(kind: Any) -> referencing.Specification:
    """The `referencing` specification of a jsonschema validator class's dialect (how `$id`, anchors read)."""
    return referencing.jsonschema.specification_with(kind.ID_OF(kind.META_SCHEMA) or "urn:unknown-dialect",
                                                     default=referencing.Specification.OPAQUE)


def _subschemas(schema: Mapping[str, Any], specification: referencing.Specification,
                ) -> Iterator[tuple[Mapping[str, Any], str, referencing.Resolver]]:
    """Each object inside a schema that may be a subschema, with its place and the resolver around it (the
    `$id`s of the subschemas holding it applied); enum, const, default and examples are data."""
    root = referencing.Registry().resolver_with_root(specification.create_resource(schema))

    def walk(node: Any, place: str, around: referencing.Resolver) -> Iterator[Any]:
        if isinstance(node, list):
            for index, item in enumerate(node):
                yield from walk(item, f"{place}/{index}", around)
        elif isinstance(node, Mapping):
            yield node, place, around
            inside = around.in_subresource(specification.create_resource(node))
            for key, value in node.items():
                if key in _NAMED and isinstance(value, Mapping):  # a property may be named "enum"
                    for name, sub in value.items():
                        yield from walk(sub, f"{place}/{key}/{name}", inside)
                elif key not in _VALUES:
                    yield from walk(value, f"{place}/{key}", inside)

    return walk(schema, "#", root)


# RFC 3987: an IRI holds ASCII (as a URI does) and these (ucschar, and iprivate, allowed here anywhere)
_IRI_EXTRA = regex.compile("[^\\x00-\\x7f]")
_NOT_IRI = regex.compile("[^\\x00-\\x7f\\xa0-\\ud7ff\\ue000-\\ufdcf\\ufdf0-\\uffef" + "".join(
    f"\\U{plane:04x}{0x1000 if plane == 14 else 0:04x}-\\U{plane:04x}fffd" for plane in range(1, 17)) + "]")


def _format_checker(kind: Any) -> jsonschema.FormatChecker:
    """`kind`'s format checks, each `_false_on_error`, with `iri` and `iri-reference` made linear: the IRI with its
    non-ASCII characters percent-encoded (RFC 3987 §3.1) checked as a URI. rfc3987_syntax's parser took 40 s, past
    the check's deadline and not interruptible, for a 60 000-character answer."""
    import jsonschema

    checker = jsonschema.FormatChecker(())
    checker.checkers = {name: check for name, check in kind.FORMAT_CHECKER.checkers.items()
                        if name not in ("iri", "iri-reference")}
    with contextlib.suppress(ImportError):   # without it, as jsonschema does: the IRI formats are not checked
        _check_iris(checker)
    checker.checkers = {name: (_false_on_error(check), raises) for name, (check, raises) in checker.checkers.items()}
    return checker


def _false_on_error(check: Callable[[object], bool]) -> Callable[[object], bool]:
    """A format's check taking any error it raises as "not of this format": `"a{4294967296}"` for "regex" raised
    OverflowError, deep parentheses RecursionError, and the answer "could not be checked" where it is not a regex."""
    @functools.wraps(check)
    def checked(instance: object) -> bool:
        try:
            return check(instance)
        except _OutOfTime:
            raise
        except Exception:  # noqa: BLE001 - the text's own failure to be read as the format
            return False
    return checked


def _check_iris(checker: jsonschema.FormatChecker) -> None:
    """Adds `iri` and `iri-reference` to `checker` (`_format_checker`); ImportError without rfc3986_validator."""
    from rfc3986_validator import validate_rfc3986

    for name, rule in (("iri", "URI"), ("iri-reference", "URI_reference")):
        def is_iri(instance: object, rule: str = rule) -> bool:
            if not isinstance(instance, str):
                return True
            if _NOT_IRI.search(instance):
                return False
            return bool(validate_rfc3986(_IRI_EXTRA.sub(lambda m: urllib.parse.quote(m[0], safe=""), instance),
                                         rule=rule))
        checker.checks(name)(is_iri)


def _has_key(node: Any, key: str) -> bool:
    """Whether `key` is a key of any object inside this JSON value (a checked schema: finite nesting)."""
    if isinstance(node, Mapping):
        return key in node or any(_has_key(value, key) for value in node.values())
    return isinstance(node, list) and any(_has_key(value, key) for value in node)


# arrays and objects inside one another an answer may hold, in every format: what pydantic's JSON reader (jiter) takes,
# and about what jsonschema's check of a recursive schema dict follows within Python's default limit (250 ran out of it)
_MOST_DEPTH = 200


def _strict_json(body: str) -> Any:
    """The answer as JSON, or a one-line StructuredOutputError: no NaN/Infinity, no number too large for a float,
    no integer over Python's digit limit, no nesting past `_MOST_DEPTH` (the same words however deep: past Python's
    recursion limit its json cannot read it)."""
    try:
        value = json_value(body)
    except ValueError as err:  # JSONDecodeError; digits over the int limit
        raise StructuredOutputError(f"the final answer is not valid JSON: {_one_line(str(err))[:300]}") from None
    except RecursionError:
        deep = True
    else:
        deep = _depth(value) > _MOST_DEPTH
    if deep:
        raise StructuredOutputError(f"the final answer is nested deeper than {_MOST_DEPTH} levels of arrays and objects, "
                                    "the most the check takes")
    return value


def _depth(value: Any) -> int:
    """How many arrays and objects a JSON value holds inside one another (walked without recursion)."""
    most, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        inside = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if inside is not None:
            most = max(most, level)
            stack.extend((each, level + 1) for each in inside)
    return most


def json_value(text: str) -> Any:
    """`text` as JSON has it (ValueError or RecursionError otherwise): Python's json module also reads NaN,
    Infinity and 1e999 (as inf), which are not JSON and which a model's answer or arguments must not carry
    (nor 1 followed by 400 zeros, which pydantic's JSON reader makes inf), and keeps the last of a key given
    twice, where a reader of the text (the approval card) sees the first."""
    value = json.loads(text, parse_constant=_not_json, parse_float=_finite, parse_int=_whole,
                       object_pairs_hook=_once_each)
    if _SURROGATE_HINT.search(text):
        _no_lone_surrogate(value)
    return value


# a lone surrogate written as an escape (\ud800) or as itself; a pair's halves (\ud83d\ude00) also match this hint
_SURROGATE_HINT = re.compile(r"\\u[dD][89a-fA-F]|[\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _no_lone_surrogate(value: Any) -> None:
    """ValueError for a string or key holding half of a UTF-16 pair (`"\\ud800"` alone), which Python's json reads
    and nothing can encode later (a widget, the JSON export); pydantic's reader refuses it (typed formats, arguments)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found = _SURROGATE.search(item)
            if found:
                raise ValueError(f"the string {reprlib.repr(item)} holds a lone surrogate {ascii(found[0])} (half of a "
                                 "UTF-16 pair), which is not text")
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _once_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for key, item in pairs:
        if key in value:
            raise ValueError(f"the key {key[:80]!r} is given twice")
        value[key] = item
    return value


def _not_json(constant: str) -> Any:
    raise json.JSONDecodeError(f"{constant} is not a JSON value", constant, 0)


def _finite(text: str) -> float:
    """A JSON number as a float; one too large for a float (1e999) is refused like Infinity, and one too small for a
    float's full precision (1e-999999 read as 0.0, 1e-320 as 4 digits of it) is refused too: never silently changed."""
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"the number {text[:40]} is too large")
    if abs(value) < sys.float_info.min and re.split("[eE]", text)[0].strip("-0."):
        raise ValueError(f"the number {text[:40]} is too small (a float reads it as {value!r})")
    return value


def _whole(text: str) -> int:
    """A JSON integer; one too large for a float is refused like 1e999, also one past Python's digit limit (its
    error said to call sys.set_int_max_str_digits)."""
    if len(text.lstrip("-")) > sys.float_info.max_10_exp + 1 or abs(value := int(text)) > sys.float_info.max:
        raise ValueError(f"the number {text[:40]} is too large")
    return value


# checking an answer against a schema dict has a deadline: a user's schema can make jsonschema's work grow
# exponentially with a few hundred bytes (an anyOf of two $refs to the next of a chain), a model's answer
# quadratically (uniqueItems), and the check runs while the session holds Ctrl-C back
_CHECK_SECONDS = 5.0
# time.monotonic() to stop at; none outside a check (a function tool's arguments are checked under its own timeout)
_DEADLINE: contextvars.ContextVar[float] = contextvars.ContextVar("_DEADLINE", default=math.inf)


class _OutOfTime(Exception):
    """The answer's check reached its deadline (`_time_left`)."""


def _time_left() -> float:
    """Seconds left to check the answer (`_DEADLINE`); _OutOfTime when none are."""
    left = _DEADLINE.get() - time.monotonic()
    if left <= 0:
        raise _OutOfTime
    return left


@contextlib.contextmanager
def _checked_in_time(unfinished: Exception | None = None) -> Iterator[None]:
    """Checks made inside stop at `_CHECK_SECONDS` from now with a one-line error: `unfinished`, else the answer's
    StructuredOutputError."""
    deadline = _DEADLINE.set(time.monotonic() + _CHECK_SECONDS)
    try:
        yield
    except _OutOfTime:
        raise unfinished or StructuredOutputError(f"the final answer could not be checked against the schema within "
                                                  f"{_CHECK_SECONDS:g} s: the check was stopped unfinished") from None
    finally:
        _DEADLINE.reset(deadline)


# parts of a schema dict (`_checked_parts`) checked against its meta-schema: 5,000 took 4.7 s of the check's 5 s at a
# load of 8 on 2 cores when each was `true` or `{}` (0.94 ms a part, the costliest), 2.1 s as `{"type": "string"}`
_MOST_CHECKED = 3_000


def _checked_parts(node: Any) -> int:
    """How many parts jsonschema's check of a schema dict against its meta-schema goes through: each subschema
    (`true` and `false` too) and each value of its keywords, the items of a list one by one; enum, const, default and
    examples are data, one part each, and a property may be named "enum"."""
    if isinstance(node, list):
        return sum(map(_checked_parts, node))
    if not isinstance(node, Mapping):
        return 1
    return 1 + sum(1 + sum(map(_checked_parts, value.values())) if key in _NAMED and isinstance(value, Mapping)
                   else 1 if key in _VALUES else _checked_parts(value) for key, value in node.items())


def _check_schema(kind: Any, schema: dict[str, Any]) -> None:
    """`kind.check_schema(schema)`, its cost counted first (`_MOST_CHECKED`) and under the check's deadline:
    `--json` of a schema of 200,000 properties held the kernel for two minutes, Ctrl-C held back, and whether one of
    5,000 prefixItems was taken depended on the machine's load."""
    import jsonschema   # only where a schema dict is checked (see _dict_format)

    if (parts := _checked_parts(schema)) > _MOST_CHECKED:
        raise ValueError(f"not supported: the schema has {parts:,} parts (subschemas and the values of their "
                         f"keywords), more than the {_MOST_CHECKED:,} checked in time against its "
                         "meta-schema: give a smaller one")
    meta = jsonschema.validators.validator_for(kind.META_SCHEMA, default=kind)
    timed = jsonschema.validators.extend(meta, {name: _in_time(check) for name, check in meta.VALIDATORS.items()})
    validator = timed(_without_dialect(kind.META_SCHEMA), format_checker=meta.FORMAT_CHECKER, registry=_meta_schemas())
    with _checked_in_time(ValueError(f"the schema could not be checked within {_CHECK_SECONDS:g} s: its check against "
                                     "its meta-schema was stopped unfinished")):
        for error in validator.iter_errors(schema):
            raise jsonschema.SchemaError.create_from(error)


def _without_dialect(contents: Any) -> Any:
    """A meta-schema without its `$schema`: jsonschema checks a part that names one with that dialect's own validator,
    not the timed one (`_check_schema`)."""
    return {key: value for key, value in contents.items() if key != "$schema"} if isinstance(contents, dict) else contents


@functools.cache
def _meta_schemas() -> referencing.Registry[Any]:
    """The meta-schemas jsonschema ships, each read in its own dialect but without its `$schema` (`_without_dialect`)."""
    from jsonschema_specifications import REGISTRY

    return referencing.Registry().with_resources(   # type: ignore[no-any-return]
        (uri, referencing.jsonschema.specification_with(resource.contents["$schema"]).create_resource(
            _without_dialect(resource.contents))) for uri, resource in REGISTRY.items())


def _in_time(check: Callable[..., Any]) -> Callable[..., Any]:
    """A jsonschema keyword function that first makes sure the deadline has not passed: every subschema applied
    to every part of the answer goes through one, so the check stops within one keyword's work of the deadline."""
    def timed(validator: Any, value: Any, instance: Any, schema: Any) -> Any:
        _time_left()
        return check(validator, value, instance, schema)
    return timed


def _invalid(message: str) -> jsonschema.ValidationError:
    """A failed check of one of the lab's own keywords, as jsonschema's are reported."""
    import jsonschema

    return jsonschema.ValidationError(message)


def _unique_items(validator: Any, unique: Any, instance: Any, schema: Any) -> Any:
    """uniqueItems by hashing each item's `_canonical` form: jsonschema compares every pair of items it cannot
    sort (objects), 13 s for 4 000 of them."""
    if not unique or not validator.is_type(instance, "array"):
        return
    first: dict[Any, int] = {}
    for index, item in enumerate(map(_canonical, instance)):
        if item in first:  # jsonschema's words, and which items are the same
            yield _invalid(f"{instance!r} has non-unique elements (items {first[item]} and {index} are equal)")
            return
        first[item] = index


_ENUM_LISTED = 20  # values of an enum an error lists; past them it lists a few and says how many


def _enum_keyword() -> Callable[..., Any]:
    """The `enum` keyword of one schema's validator: each enum's values hashed once (`_canonical`), and an error that
    names a long enum's values short. jsonschema compared a value with each of them in turn and wrote every one into
    its error: 6 ms for each wrong value of a 20,000-value enum, and 1,000 wrong items ran past the check's deadline,
    "could not be checked" where the first was wrong."""
    known: dict[int, tuple[list[Any], frozenset[Any]]] = {}  # id of an enum -> it (kept alive) and its values hashed

    def enum(validator: Any, enums: list[Any], instance: Any, schema: Any) -> Any:
        if id(enums) not in known:
            known[id(enums)] = enums, frozenset(map(_canonical, enums))
        if _canonical(instance) not in known[id(enums)][1]:
            listed = repr(enums) if len(enums) <= _ENUM_LISTED else f"{_PART.repr(enums)} ({len(enums):,} values)"
            yield _invalid(f"{instance!r} is not one of {listed}")  # jsonschema's words
    return enum


def _multiple_of(validator: Any, step: Any, instance: Any, schema: Any) -> Any:
    """multipleOf in decimal, as the numbers are written: jsonschema divides floats, so 0.3 was "not a multiple of
    0.1" and 0.07 not one of 0.01 (constrained decoding wrote them, the check refused every such answer)."""
    if validator.is_type(instance, "number") and (fractions.Fraction(repr(instance)) / fractions.Fraction(repr(step))
                                                  ).denominator != 1:
        yield _invalid(f"{instance!r} is not a multiple of {step}")  # jsonschema's words


def _canonical(value: Any) -> tuple[str, Any]:
    """A JSON value as a hashable key, equal for values JSON Schema holds equal: 1 and 1.0 alike, true and 1 not,
    an object's keys in any order."""
    if isinstance(value, dict):
        return "object", frozenset((key, _canonical(item)) for key, item in value.items())
    if isinstance(value, list):
        return "array", tuple(map(_canonical, value))
    if isinstance(value, bool) or value is None:
        return "constant", value
    return ("number" if isinstance(value, int | float) else "string"), value


# jsonschema's `pattern`, `patternProperties` and `additionalProperties` keywords, with `regex` for `re`

# a pattern's pieces: an escape, a character class (a `]` first in it is one of its characters), `$`, any other
_PIECES = regex.compile(r"\\.|\[\^?\]?(?:\\.|[^\]\\])*\]|\$|.", flags=regex.S)


# \d, \w and their negations as JSON Schema (ECMA-262) and llguidance read them, ASCII: Rust's and Python's
# regex read them as Unicode, so "٣" (Arabic-Indic 3) passed `^\d$`, an answer constrained decoding never writes.
# \s is Unicode whitespace in all of them, and stays.
_ASCII_CLASSES = {"\\d": "0-9", "\\D": "\\x00-/:-\\U0010FFFF", "\\w": "0-9A-Za-z_",
                  "\\W": "\\x00-/:-@\\x5B-\\x5E\\x60\\x7B-\\U0010FFFF"}
_ESCAPE = regex.compile(r"\\.", flags=regex.S)
_AS_WRITTEN: dict[str, str] = {}  # each such pattern as the user wrote it, for pydantic's error messages


def _ascii_piece(piece: str, ascii_group: str) -> str:
    """One of a pattern's `_PIECES` with \\d, \\w, \\D and \\W as the ASCII classes they are in JSON Schema,
    alone or inside a character class (`[\\d.]`), and \\b, \\B as ASCII word boundaries in `ascii_group`, the
    engine's spelling of an ASCII-only group (`(?-u:` for Rust's regex, `(?a:` for Python's)."""
    if piece.startswith("["):
        return _ESCAPE.sub(lambda escape: _ASCII_CLASSES.get(escape[0], escape[0]), piece)
    if piece in ("\\b", "\\B"):
        return f"{ascii_group}{piece})"
    return f"[{_ASCII_CLASSES[piece]}]" if piece in _ASCII_CLASSES else piece


@functools.lru_cache(maxsize=256)
def _ascii_pattern(pattern: str) -> str:
    """A type's pattern for pydantic's Rust regex, \\d, \\w and \\b as JSON Schema means them (`$` is its already)."""
    return "".join(_ascii_piece(piece, "(?-u:") for piece in _PIECES.findall(pattern))


_LABEL_CHARS = 80  # a union choice's name in an error's location


def _checked_core(core: Any) -> Any:
    """A pydantic core schema as answers are checked with it: its string patterns made `_ascii_pattern`s, and every
    union first checking the deadline, as unions inside unions make pydantic try every branch of every one, in Rust,
    where nothing else can stop it (a 14-deep Union[list[T], tuple[T, ...]] took 23 s to refuse an answer). The check
    is a first choice that always fails (`_IN_TIME`), not a wrapper: a wrapper handed its choices Python objects,
    which strict validation refuses where JSON is read (a date's text, a tuple's array: `date | int` refused
    "2026-11-25"). Each union's choices keep the names pydantic gives them, so errors read as before, cut to
    `_LABEL_CHARS`: every error under a choice carries its name, and a deep union's is as long as the type (300 kB;
    copied into each of 16 000 errors, it held a check 30 s past its deadline). A number the model is shown as an
    integer takes one written with a zero fraction, 3.0, as JSON Schema does (strict validation refused it), but
    inside a union only when the answer as written fits no choice (`int | float` read 3.0 as the int 3)."""
    definitions = core.get("definitions", []) if isinstance(core, dict) and core.get("type") == "definitions" else []

    labels: dict[int, str] = {}  # id of a union's choice -> its name (a union is walked for each of its tries)

    def name(choice: Any) -> str:
        if id(choice) not in labels:
            title = SchemaValidator(core_schema.definitions_schema(choice, definitions) if definitions else choice).title
            labels[id(choice)] = title if len(title) <= _LABEL_CHARS else title[:_LABEL_CHARS - 1] + "…"
        return labels[id(choice)]

    defined = {d["ref"]: d for d in definitions if isinstance(d, dict) and "ref" in d}
    tries: dict[int, tuple[str, str]] = {}  # id of a union node -> the refs of its two tries, made once
    written: dict[str, str] = {}  # a definition's ref -> the ref of its copy for first tries
    made: list[Any] = []  # the tries' definitions and those copies

    def as_written(ref: str) -> str:
        """The ref of a definition's copy that reads no 3.0 as 3, for first tries (`Recursive | Fractional` read
        {"n": 3.0} as the recursive model's int in its first try); made once."""
        if ref not in written:
            written[ref] = f"{ref}-{_AS_WRITTEN_LABEL}"
            body = {key: value for key, value in defined[ref].items() if key != "ref"}
            made.append({**walk(body, False), "ref": written[ref]})
        return written[ref]

    def tried(node: dict, whole: bool) -> Any:
        """A union with integers inside: its try of the answer as written, then (when `whole`) its try reading 3.0
        as 3, each defined once and referred to (copies inside copies grew a 16-deep union to gigabytes)."""
        if id(node) not in tries:
            refs = tries[id(node)] = (f"{_AS_WRITTEN_LABEL}-{len(tries)}", f"{_WHOLE_LABEL}-{len(tries)}")
            body = {key: value for key, value in node.items() if key != "ref"}
            made.append({**walk(body, False, own=False), "ref": refs[0], **_UNSAID})
            made.append({**walk(body, True, own=False), "ref": refs[1]})
        plain, converting = map(core_schema.definition_reference_schema, tries[id(node)])
        result = core_schema.union_schema([(plain, _AS_WRITTEN_LABEL), (converting, _WHOLE_LABEL)],
                                          mode="left_to_right") if whole else plain
        return {**result, "ref": node["ref"]} if "ref" in node else result

    def walk(node: Any, whole: bool, *, own: bool = True, key: bool = False) -> Any:
        """`node` as checked; `whole`: integers written as 3.0 are read (a union's first try reads none); `own`:
        a union with integers inside is `tried` (False for the tries themselves); `key`: `node` checks a dict's
        keys, JSON text pydantic reads as their type ("1" for an int), which a check of values (handed the text as a
        Python str) refused: `dict[int, str]` took no answer."""
        if isinstance(node, list | tuple):
            return type(node)(walk(item, whole, key=key) for item in node)
        if not isinstance(node, dict):
            return node
        if own and not key and node.get("type") == "union" and _has_integer(node, defined):
            return tried(node, whole)
        if not whole and not key and node.get("type") == "definition-ref" and node["schema_ref"] in defined \
                and _has_integer(node, defined):
            return {**node, "schema_ref": as_written(node["schema_ref"])}
        return {**check_node(node, whole, key), **({"ref": node["ref"]} if "ref" in node else {})}

    def check_node(node: dict, whole: bool, key: bool) -> Any:
        """`walk`'s check of one node, without its ref, which goes on the outermost check `walk` wraps it in (on the
        int itself, a `type Count = int` used twice was referred to past the 3.0-as-3 reading, a SchemaError)."""
        new = {name: walk(value, whole, key=key or (name == "keys_schema" and node.get("type") == "dict"))
               for name, value in node.items() if name != "ref"}
        pattern = node.get("pattern") if node.get("type") == "str" else None
        if isinstance(pattern, str) and _ascii_pattern(pattern) != pattern:
            new["pattern"] = _ascii_pattern(pattern)
            _AS_WRITTEN[new["pattern"]] = pattern
        if key:
            return _key_read(node, new)
        if whole and _shown_as_integer(node):
            new = core_schema.no_info_before_validator_function(_integer_if_whole, new)
        if node.get("type") == "decimal":
            new = core_schema.no_info_before_validator_function(_decimal_as_written, new)
        if _reads_pattern(node):
            new["function"] = {**node["function"], "function": functools.partial(_regex_or_invalid, node["function"]["function"])}
        if node.get("type") in ("enum", "literal"):
            choices = _choices(node)
            among = _among(choices) if len(choices) > _ENUM_LISTED and "missing" not in node else None
            if among is not None:
                new = core_schema.no_info_before_validator_function(among, new)
            kinds = frozenset(map(_json_kind, choices))
            new = core_schema.no_info_before_validator_function(functools.partial(_of_kinds, kinds), new)
        if node.get("type") != "union":
            return new
        new["choices"] = [(_IN_TIME, _IN_TIME_TYPE)] + [
            choice if isinstance(given, tuple) else (choice, name(given))  # a label given stays
            for choice, given in zip(new["choices"], node["choices"])]
        return new

    checked = walk(core, True)
    if not made:
        return checked
    if checked.get("type") == "definitions":
        return {**checked, "definitions": [*checked["definitions"], *made]}
    return core_schema.definitions_schema(checked, made)


# the labels of a union's two tries (`_checked_core`): its errors are the second's, told as pydantic tells them; the
# first's are one error `describe_errors` skips (collecting them held thousands of errors a deep union made twice)
_AS_WRITTEN_LABEL, _WHOLE_LABEL = "gptoss-as-written", "gptoss-whole-numbers"


def _key_read(node: Any, checked: Any) -> Any:
    """`checked`, a dict key's check, reading the key from its text only as the model is shown it (`_key_texts`):
    pydantic read " 1", "+1", "1_000" and "nan" as float keys (an IntEnum's " 1" and "01" as 1), which no
    shown pattern allowed. A Decimal key keeps its digits as written."""
    kind = node.get("type") if isinstance(node, dict) else None
    if kind in ("literal", "enum", "bool"):
        values = [True, False] if kind == "bool" else _choices(node)
        if all(isinstance(value, str) for value in values):
            return checked
        texts = {_key_text(value): value for value in values}
        read = functools.partial(_key_choice, texts)
    elif kind in _KEY_NUMBERS:
        read = functools.partial(_key_number, *_KEY_NUMBERS[kind])
    else:
        return checked
    return core_schema.no_info_before_validator_function(read, checked)


# a number key's text (JSON's form of the number) and what reads it
_KEY_NUMBERS: dict[str, tuple[str, str, Callable[[str], Any]]] = {
    "int": (_INTEGER_TEXT, "an integer", int), "float": (_KEY_NUMBER_TEXT, "a number", float),
    "decimal": (_KEY_NUMBER_TEXT, "a number", decimal.Decimal)}


def _key_choice(texts: dict[str, Any], key: Any) -> Any:
    """The Literal or Enum value (or bool) whose JSON text the key is; the key's check refuses it otherwise."""
    if not isinstance(key, str):
        return key
    if key not in texts:
        shown = ", ".join(map(repr, texts))
        raise PydanticCustomError("gptoss_key_text", "Key should be one of {shown}", {"shown": shown})
    return texts[key]


def _key_number(pattern: str, what: str, read: Callable[[str], Any], key: Any) -> Any:
    """The number a key's text is, read only when it is its one text (`pattern`); a float key with more digits than a
    float holds is refused (0.1 and 0.10000000000000000001 were one key)."""
    if not isinstance(key, str):
        return key
    if not _search(pattern, key):
        raise PydanticCustomError("gptoss_key_text", "Key should be {what} in its one JSON form, matching pattern "
                                  "'{pattern}'", {"what": what, "pattern": pattern})
    try:
        value = read(key)
    except ValueError:   # an int past Python's digit limit: its error said to call sys.set_int_max_str_digits()
        raise PydanticCustomError("gptoss_key_text", "Key has too many digits ({digits})",
                                  {"digits": len(key.lstrip("-"))}) from None
    if isinstance(value, float) and decimal.Decimal(repr(value)) != decimal.Decimal(key):
        raise PydanticCustomError("gptoss_key_text", "Key should be a number a float holds as written (it reads as {value})",
                                  {"value": repr(value)})
    return value


def _reads_pattern(node: dict) -> bool:
    """Whether a core schema node is pydantic's own reading of a `re.Pattern` field (compiling the text)."""
    function = node.get("function") if node.get("type") == "function-plain" else None
    read = function.get("function") if isinstance(function, dict) else None
    return getattr(read, "__module__", None) == "pydantic._internal._validators" and \
        getattr(read, "__name__", "").startswith("pattern_")


def _regex_or_invalid(read: Callable[[Any], Any], value: Any) -> Any:
    """`read(value)`, pydantic's compiling of a `re.Pattern` field, with any error `re` raises refused in pydantic's
    words: it refuses re.error only, and `"a{4294967296}"` (OverflowError) or deep parentheses (RecursionError) made
    the answer one that "could not be checked", where it is not a regular expression."""
    try:
        return read(value)
    except PydanticCustomError:
        raise
    except Exception:  # noqa: BLE001 - re's failure to compile the text, whatever its kind
        raise PydanticCustomError("pattern_regex", "Input should be a valid regular expression") from None


def _has_integer(node: Any, defined: Mapping[str, Any], seen: frozenset[str] = frozenset()) -> bool:
    """Whether a pydantic core schema node holds one `_shown_as_integer` anywhere inside it, also inside the
    definitions (`defined`, by ref) it refers to."""
    if isinstance(node, list | tuple):
        return any(_has_integer(item, defined, seen) for item in node)
    if not isinstance(node, dict):
        return False
    ref = node.get("schema_ref") if node.get("type") == "definition-ref" else None
    if ref in defined and ref not in seen:
        return _has_integer(defined[ref], defined, seen | {ref})
    return _shown_as_integer(node) or any(_has_integer(value, defined, seen) for value in node.values())


def _shown_as_integer(node: Any) -> bool:
    """Whether a pydantic core schema node is shown to the model as an integer: an int, or an Enum of int values."""
    if node.get("type") == "int":
        return True
    values = [member.value for member in node.get("members", ())] if node.get("type") == "enum" else []
    return bool(values) and all(isinstance(value, int) and not isinstance(value, bool) for value in values)


def _choices(node: dict) -> list:
    """The values a Literal or Enum core schema node allows."""
    return list(node["expected"]) if node["type"] == "literal" else [member.value for member in node["members"]]


def _among(choices: list[Any]) -> Callable[[Any], Any] | None:
    """A check refusing a value no choice of a long Literal or Enum equals, with a short error: pydantic wrote all of
    them into each error (20,000 values: 5,000 wrong items held the kernel 7 s, in Rust, past the check's deadline).
    What may equal one is left to pydantic's exact check; None when the choices cannot be hashed."""
    try:
        known = frozenset([*choices, *(choice.value for choice in choices if isinstance(choice, enum.Enum))])
    except TypeError:
        return None
    expected = ", ".join(map(repr, (c.value if isinstance(c, enum.Enum) else c for c in choices[:6])))
    said = f"{expected}, … ({len(choices):,} values)"

    def among(value: Any) -> Any:
        try:
            found = value in known
        except TypeError:  # an array or an object: pydantic refuses it
            found = True
        if not found:
            raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": said})
        return value
    return among


def _json_kind(value: Any) -> str:
    """A value's JSON kind where Python's equality mixes them: true == 1 == 1.0 in Python, never in JSON Schema."""
    return "boolean" if isinstance(value, bool) else "number" if isinstance(value, int | float) else "other"


class _OtherKind:
    """An answer's value in place of a boolean given for a number choice, or a number for a boolean one, which no
    choice equals, so the check refuses it in its usual words ("Input should be 1 or 2")."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return json.dumps(self.value)


def _of_kinds(kinds: frozenset[str], value: Any) -> Any:
    """The value if its JSON kind is among the choices' (`Literal[1]` and an Enum of 1 took `true`, `Literal[True]`
    took 1), a whole number as an integer (`Literal[1, True]` read 1.0 as True), else `_OtherKind`."""
    kind = _json_kind(value)
    return _OtherKind(value) if kind != "other" and kind not in kinds else _integer_if_whole(value)


def _integer_if_whole(value: Any) -> Any:
    """A JSON number with a zero fraction (3.0, 3e0, 1e23) as the integer it is in JSON Schema, read from its decimal
    form (int(1e23) is 99999999999999991611392, the float nearest 10**23); any other value as it is, for the strict
    check after this to judge (2.5, true and "3" stay refused)."""
    return int(decimal.Decimal(repr(value))) if type(value) is float and value.is_integer() else value


def _no_choice_in_time(value: Any) -> Any:
    """`_IN_TIME`'s check: _OutOfTime past the deadline, else an error of its own type, which `describe_errors` skips,
    so the union goes on to its real choices with the answer as it was read."""
    _time_left()
    raise PydanticCustomError(_IN_TIME_TYPE, "the deadline was checked")


_IN_TIME_TYPE = "gptoss_in_time"
_UNSAID = {"custom_error_type": _IN_TIME_TYPE, "custom_error_message": "the answer as written is not one of the choices"}
_IN_TIME = core_schema.no_info_plain_validator_function(_no_choice_in_time)


@functools.lru_cache(maxsize=256)
def _json_schema_pattern(pattern: str) -> str:
    """`pattern` for the `regex` module as JSON Schema (ECMA-262), pydantic and llguidance read it: `$` the very
    end of the text (Python's also matches before a last newline, so "abc\\n" passed `^[a-z]+$`), \\d and \\w
    and \\b ASCII (`_ascii_piece`)."""
    return "".join(r"\Z" if piece == "$" else _ascii_piece(piece, "(?a:") for piece in _PIECES.findall(pattern))


_INLINE = 0.05  # CPU seconds a pattern's match may take on the checking thread before it goes to `_watched`


def _search(pattern: str, text: str) -> bool:
    """Whether `pattern` matches in `text`, within the time left to check the answer (_OutOfTime past it). `regex`
    counts its timeout in CPU seconds, which a busy machine stretches (a 5 s budget took 11 s with a core shared):
    a match that takes longer than `_INLINE` is run again by `_watched`, which the clock on the wall ends."""
    compiled = _json_schema_pattern(pattern)
    try:
        return regex.search(compiled, text, timeout=min(_INLINE, _time_left())) is not None
    except TimeoutError:
        return _watched(compiled, text)


def _watched(pattern: str, text: str) -> bool:
    """`regex.search(pattern, text)` on a helper thread, without the GIL, waited for until the deadline
    (_OutOfTime then; the match ends on its own once it has had the time that was left, in CPU seconds)."""
    left = _time_left()
    outcome: queue.Queue[bool | Exception] = queue.Queue()

    def search() -> None:
        try:
            outcome.put(regex.search(pattern, text, timeout=left, concurrent=True) is not None)
        except Exception as err:  # noqa: BLE001 - raised on the checking thread
            outcome.put(err)

    threading.Thread(target=search, daemon=True, name="gptoss-pattern").start()
    try:
        found = outcome.get(timeout=left)
    except queue.Empty:
        raise _OutOfTime from None
    if isinstance(found, TimeoutError):
        raise _OutOfTime
    if isinstance(found, Exception):
        raise found
    return found


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
    if validator.is_type(instance, "string") and not _search(pattern, instance):
        yield _invalid(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(validator: Any, patterns: dict[str, Any], instance: Any, schema: Any) -> Any:
    if validator.is_type(instance, "object"):
        for pattern, subschema in patterns.items():
            for key, value in instance.items():
                if _search(pattern, key):
                    yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(validator: Any, allowed: Any, instance: Any, schema: Any) -> Any:
    if not validator.is_type(instance, "object"):
        return
    patterns = list(schema.get("patternProperties", {}))
    extras = [key for key in instance
              if key not in schema.get("properties", {}) and not any(_search(p, key) for p in patterns)]
    if validator.is_type(allowed, "object"):
        for key in extras:
            yield from validator.descend(instance[key], allowed, path=key)
    elif not allowed and extras:
        names = ", ".join(repr(key) for key in sorted(extras))
        if patterns:
            yield _invalid(f"{names} {'does' if len(extras) == 1 else 'do'} not match any of the "
                           f"regexes: {', '.join(repr(p) for p in sorted(patterns))}")
        else:
            yield _invalid(f"Additional properties are not allowed ({names} "
                           f"{'was' if len(extras) == 1 else 'were'} unexpected)")


# ---------------------------------------------------------------- constrained decoding

@functools.cache
def _tokenizer() -> Any:
    """The Harmony vocabulary as an llguidance tokenizer, from the bundled file (seconds; cached)."""
    import llguidance

    specials = {name: token for token, name in harmony.special_tokens().items()}
    return llguidance.LLTokenizer.from_tiktoken(
        encoder=harmony.ranks(), special_tokens=specials, pattern=harmony.O200K_PATTERN, eos_token=harmony.RETURN,
        n_vocab=harmony.VOCAB_SIZE,
    )


class JsonSchemaProcessor:
    """Logits processor (transformers' `__call__(input_ids, scores)`) keeping the content of an open
    `final` message inside a JSON schema; reasoning, tool calls and headers are free. Once the JSON
    is complete the only token allowed is `<|return|>`.

    Stateless across engine calls: each call finds the message being written in `input_ids`, so the
    same processor serves every call of a tool-using turn."""

    def __init__(self, schema: dict[str, Any]) -> None:
        try:
            import llguidance
            import llguidance.torch
        except ImportError:
            raise ImportError("constrained decoding needs llguidance: pip install llguidance") from None
        # compact JSON: with free whitespace a weak model can pad forever without closing the object;
        # lenient: keywords llguidance cannot enforce (uniqueItems, format: binary ...) are left to `parse`
        options = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": ", "lenient": True}
        self.grammar = llguidance.LLMatcher.grammar_from_json_schema(schema, defaults=options)
        problem = llguidance.LLMatcher.validate_grammar(self.grammar, _tokenizer())
        if problem:
            raise ValueError(f"llguidance cannot constrain to this schema: {_one_line(problem)[:300]}")
        self._mask = llguidance.torch.allocate_token_bitmask(1, harmony.VOCAB_SIZE)
        # the first answer's matcher, made now: one that starts in error (a grammar too large to start, 4**6
        # alternatives) allowed only <|return|>, an empty answer, silently
        self._matcher: Any = self._new_matcher()
        if self._matcher.is_error():
            raise ValueError(f"llguidance cannot constrain to this schema: {_llguidance_error(self._matcher)}")
        self._consumed: list[int] = []

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        content = _final_content(input_ids[0].tolist())
        if content is None:
            return scores
        import torch
        from llguidance.torch import apply_token_bitmask_inplace, fill_next_token_bitmask

        fill_next_token_bitmask(self._advance(content), self._mask)
        # llguidance's masking kernel is torch.compile'd; compiling it at the first constrained token
        # took 11-106 s on a 2-core CPU, more than it saves over a turn (about 3 ms a token): run it eagerly
        eager = torch.compiler.set_stance("force_eager") if hasattr(torch.compiler, "set_stance") else contextlib.nullcontext()
        with eager:
            apply_token_bitmask_inplace(scores, self._mask.to(scores.device, non_blocking=True))
        return scores

    def _new_matcher(self) -> Any:
        """A matcher at the start of an answer, silent (llguidance printed its own warning on the kernel's stderr, an
        unfinished line in the cell, when the answer left the grammar: `_lost_track` says it in one line)."""
        import llguidance

        return llguidance.LLMatcher(_tokenizer(), self.grammar, log_level=0)

    def _advance(self, content: list[int]) -> Any:
        """The matcher brought to `content` (a new final message starts a fresh matcher)."""
        if content[:len(self._consumed)] != self._consumed:
            self._matcher, self._consumed = self._new_matcher(), []
        new = content[len(self._consumed):]
        taken = self._matcher.try_consume_tokens(new) if new else 0
        if taken < len(new):
            raise RuntimeError(_lost_track(self._matcher, content[:len(self._consumed) + taken], new[taken]))
        self._consumed = content
        return self._matcher


_CHOICES_SHOWN = 12  # characters a lost track's message names as allowed next; more are counted


def _lost_track(matcher: Any, written: list[int], token: int) -> str:
    """One line saying where in the answer (`tags.1`) the token left the schema, what the schema allows next there,
    and how the answer so far ends: llguidance's own error ("token "blue" doesn't satisfy the grammar") said neither
    where nor what. `matcher` has taken `written` and not `token`."""
    import numpy as np

    text = harmony.decode(written)
    bits = np.unpackbits(np.frombuffer(matcher.compute_bitmask(), dtype=np.uint8), bitorder="little")
    firsts = {(harmony.token_bytes(int(i)) or b"").decode("utf-8", "replace")[:1] for i in
              np.flatnonzero(bits[:harmony.FIRST_SPECIAL])}
    shown = sorted(filter(None, firsts))[:_CHOICES_SHOWN]
    allowed = [*map(repr, shown), *(["the end of the answer"] if bits[harmony.RETURN] else [])]
    more = len(firsts - {""}) - len(shown)
    said = " or ".join(allowed) + (f" (and {more} more characters)" if more > 0 else "") if allowed else "nothing"
    return (f"constrained decoding lost track of the answer at {_json_place(text) or 'its top level'}: "
            f"{harmony.decode([token])!r} does not fit the schema there, which allows {said} next (the answer so far "
            f"ends {text[-40:]!r})")[:400]


# a JSON text's strings (one left open too: no closing quote) and its punctuation, which `_json_place` follows
_JSON_PIECES = re.compile(r'"(?:[^"\\]|\\.)*("?)|[{}\[\],]')


def _json_place(text: str) -> str:
    """Where the end of a JSON text cut short is, as an error's location names it (`tags.1`); "" at its top level
    (a key being written is not a place yet)."""
    places: list[list[Any]] = []  # per array or object open: its kind and the index or the key written last
    for found in _JSON_PIECES.finditer(text):
        piece = found[0]
        if piece in ("{", "["):
            places.append([piece, None if piece == "{" else 0])
        elif piece in ("}", "]"):
            del places[-1:]
        elif piece == "," and places:
            places[-1][1] = places[-1][1] + 1 if places[-1][0] == "[" else None
        elif found[1] and places and places[-1] == ["{", None]:  # a key: the first string after { or ,
            places[-1][1] = json.loads(piece, strict=False)  # (a control character written as itself)
    return _location(place for _, place in places if place is not None)


def _llguidance_error(matcher: Any) -> str:
    """A matcher's error on one line: its first, without the state (a dozen lines) or the backtrace llguidance adds."""
    return (matcher.get_error().strip().splitlines() or ["unknown error"])[0][:300]


_CLOSED = frozenset({harmony.END, *harmony.STOP_TOKENS})


def _final_content(ids: list[int]) -> list[int] | None:
    """The tokens written so far in an open `final` answer, or None when the model is elsewhere."""
    if harmony.START not in ids:
        return None
    start = len(ids) - ids[::-1].index(harmony.START)
    rest = ids[start:]
    if harmony.MESSAGE not in rest:
        return None
    body = rest.index(harmony.MESSAGE)
    content = rest[body + 1:]
    if _CLOSED.intersection(content):
        return None
    header = harmony.parse_header(harmony.decode(rest[:body]))
    return content if header.role == "assistant" and header.channel == "final" and not header.is_call else None
