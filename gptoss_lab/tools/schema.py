"""JSON schemas from Python types, for function tools and structured output, and their validation.

Schemas are written the way the Harmony renderer shows them best (everything inlined, no titles,
`"type": [X, "null"]` for optional scalars), because the model reads them as TypeScript-like text.
Values coming back from the model are validated with pydantic, which also builds the dataclasses,
models and enums the user's annotations ask for.
"""
from __future__ import annotations

import dataclasses
import enum
import inspect
import json
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pydantic
import typing_extensions

Field = tuple[str, Any, bool, Any, "str | None"]  # name, annotation, required, default, description
_SUPPORTED = "str, int, float, bool, Literal, Enum, list[X], dict[str, X], Optional[X], a dataclass or a pydantic model"
_SCALARS = {str: "string", bool: "boolean", int: "integer", float: "number", type(None): "null"}
_WRAPPERS = {typing_extensions.Required, typing_extensions.NotRequired, typing_extensions.ReadOnly}
_JSON_TYPES = {
    "string": str, "integer": int, "number": (int, float), "boolean": bool,
    "null": type(None), "array": list, "object": dict,
}
_GOOGLE_SECTION = re.compile(
    r"^(\s*)(Args|Arguments|Parameters|Params|Attributes|Keyword Args|Keyword Arguments|Other Parameters):\s*$"
)
_NUMPY_SECTION = re.compile(r"^\s*(Parameters|Attributes|Other Parameters)\s*$")
_ENTRY = re.compile(r"^\s*\**(\w+)\s*(?:\(.*\))?\s*:\s*(.*)$")
_NUMPY_ENTRY = re.compile(r"^\s*\**(\w+)\s*(?::.*)?$")


class StructuredOutputError(ValueError):
    """The model's final answer does not parse or does not match the requested schema."""


# ---------------------------------------------------------------- docstrings

def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """(summary, {parameter: description}) from a Google- or NumPy-style docstring."""
    lines = inspect.cleandoc(doc or "").splitlines()
    summary: list[str] = []
    for line in lines:
        if not line.strip() or _GOOGLE_SECTION.match(line) or _NUMPY_SECTION.match(line):
            break
        summary.append(line.strip())
    params: dict[str, str] = {}
    for i, line in enumerate(lines):
        google = _GOOGLE_SECTION.match(line)
        if google:
            params.update(_google_entries(lines[i + 1:], len(google.group(1))))
        elif _NUMPY_SECTION.match(line) and i + 1 < len(lines) and set(lines[i + 1].strip()) == {"-"}:
            params.update(_numpy_entries(lines[i + 2:], _indent(line)))
    return " ".join(summary), params


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _google_entries(lines: list[str], header_indent: int) -> dict[str, str]:
    """`name (type): text` entries, continuation lines indented deeper, until the section ends."""
    entries: dict[str, list[str]] = {}
    entry_indent, current = None, None
    for line in lines:
        if not line.strip():
            continue
        indent = _indent(line)
        if indent <= header_indent:
            break
        match = _ENTRY.match(line)
        if match and (entry_indent is None or indent <= entry_indent):
            entry_indent, current = indent, match.group(1)
            entries[current] = [match.group(2).strip()]
        elif current is not None:
            entries[current].append(line.strip())
    return {name: " ".join(p for p in parts if p) for name, parts in entries.items()}


def _numpy_entries(lines: list[str], header_indent: int) -> dict[str, str]:
    """`name : type` lines at the header's indent, descriptions indented below, until the next section."""
    entries: dict[str, list[str]] = {}
    current = None
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        if _indent(line) <= header_indent:
            following = lines[i + 1].strip() if i + 1 < len(lines) else ""
            match = _NUMPY_ENTRY.match(line)
            if (following and set(following) == {"-"}) or _GOOGLE_SECTION.match(line) or not match:
                break
            current = match.group(1)
            entries[current] = []
        elif current is not None:
            entries[current].append(line.strip())
    return {name: " ".join(parts) for name, parts in entries.items()}


# ---------------------------------------------------------------- schema generation

def json_schema(annotation: Any, *, where: str = "value") -> dict[str, Any]:
    """The JSON schema of a type annotation; TypeError naming `where` for a type the lab can't describe."""
    return _schema(annotation, where, frozenset())


def jsonable_default(value: Any) -> tuple[bool, Any]:
    """(True, value as JSON) when a default can be shown to the model, else (False, None)."""
    value = value.value if isinstance(value, enum.Enum) else value
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False, None
    return True, value


def _schema(tp: Any, where: str, seen: frozenset) -> dict[str, Any]:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in _WRAPPERS:
        return _schema(args[0], where, seen)
    if origin is typing.Annotated:
        schema = _schema(args[0], where, seen)
        text = next((m if isinstance(m, str) else m.description for m in args[1:]
                     if isinstance(m, str) or getattr(m, "description", None)), None)
        return {**schema, "description": text} if text else schema
    if tp is Any:
        return {}
    if tp in _SCALARS:
        return {"type": _SCALARS[tp]}
    if tp is None:
        return {"type": "null"}
    if origin is typing.Literal:
        return _enum_schema(list(args), where)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _enum_schema([m.value for m in tp], where)
    if origin in (typing.Union, types.UnionType):
        return _union_schema([_schema(a, where, seen) for a in args])
    if tp in (list, tuple, set, frozenset) or origin in (list, set, frozenset, Sequence, typing.Sequence):
        return {"type": "array", "items": _schema(args[0], where, seen)} if args else {"type": "array"}
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": _schema(args[0], where, seen)}
        items = [_schema(a, where, seen) for a in args]
        return {"type": "array", "prefixItems": items, "minItems": len(items), "maxItems": len(items)}
    if tp is dict or origin in (dict, Mapping, typing.Mapping):
        if args and args[0] is not str:
            raise TypeError(f"{where}: dict keys must be str in JSON, not {args[0]!r}")
        return {"type": "object", "additionalProperties": _schema(args[1], where, seen)} if args else {"type": "object"}
    if isinstance(tp, type) and (
        dataclasses.is_dataclass(tp) or issubclass(tp, pydantic.BaseModel) or typing_extensions.is_typeddict(tp)
    ):
        if tp in seen:
            raise TypeError(f"{where}: {tp.__name__} refers to itself; recursive types are not supported")
        return _object_schema(tp, where, seen | {tp})
    raise TypeError(f"{where}: unsupported type annotation {tp!r}; use {_SUPPORTED}")


def _enum_schema(values: list[Any], where: str) -> dict[str, Any]:
    kinds = {_SCALARS.get(type(v)) for v in values}
    if None in kinds:
        raise TypeError(f"{where}: enum/Literal values must be str, int, float, bool or None, not {values!r}")
    if len(kinds) == 1:
        return {"type": kinds.pop(), "enum": values}
    return {"enum": values}


def _union_schema(members: list[dict[str, Any]]) -> dict[str, Any]:
    """Scalars join into a type list (rendered `string | null`); Optional[object] becomes a oneOf."""
    if all(set(m) == {"type"} and isinstance(m["type"], str) for m in members):
        return {"type": list(dict.fromkeys(m["type"] for m in members))}
    rest = [m for m in members if m != {"type": "null"}]
    if len(rest) == 1 and rest[0]:
        return {"oneOf": [rest[0], {"type": "null"}]}
    return {"anyOf": members}


def _object_schema(cls: type, where: str, seen: frozenset) -> dict[str, Any]:
    """Properties of a dataclass, pydantic model or TypedDict; descriptions from Field or the docstring."""
    _, documented = parse_docstring(cls.__doc__)
    fields: list[Field] = []
    if issubclass(cls, pydantic.BaseModel):
        for name, info in cls.model_fields.items():
            key = info.alias or name
            default = dataclasses.MISSING if info.default_factory else info.default
            fields.append((key, info.annotation, info.is_required(), default, info.description or documented.get(name)))
    else:
        hints = typing_extensions.get_type_hints(cls, include_extras=True)
        if dataclasses.is_dataclass(cls):
            for f in dataclasses.fields(cls):
                required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                fields.append((f.name, hints[f.name], required, f.default, documented.get(f.name)))
        else:
            fields = [(n, t, _typeddict_required(cls, n, t), dataclasses.MISSING, documented.get(n)) for n, t in hints.items()]
    return object_schema(fields, where, seen)


def _typeddict_required(cls: type, name: str, hint: Any) -> bool:
    """Whether a TypedDict key is required; `Required`/`NotRequired` are read from the hint, since
    `__required_keys__` misses them when annotations are strings (`from __future__ import annotations`)."""
    origin = typing.get_origin(hint)
    if origin in (typing_extensions.Required, typing_extensions.NotRequired):
        return origin is typing_extensions.Required
    return name in cls.__required_keys__ if cls.__total__ else False


def object_schema(fields: Iterable[Field], where: str, seen: frozenset = frozenset()) -> dict[str, Any]:
    """An object schema from (name, annotation, required, default, description) fields.

    An optional field whose default is None is shown as its non-null type: the model leaves it out
    rather than writing null, and the renderer has no good way to show `object | null`.
    """
    properties, required = {}, []
    for name, annotation, needed, default, description in fields:
        prop = _schema(annotation, f"{where}.{name}", seen)
        if not needed and default is None and prop.get("oneOf", [None])[-1] == {"type": "null"}:
            prop = {**prop.pop("oneOf")[0], **prop}
        if description and "description" not in prop:
            prop = {"description": description, **prop}
        if needed:
            required.append(name)
        else:
            shown, value = jsonable_default(default)
            if shown:
                prop["default"] = value
        properties[name] = prop
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


# ---------------------------------------------------------------- structured output

def response_format_section(
    schema: Any, *, name: str | None = None, description: str | None = None
) -> dict[str, Any]:
    """{"name", "description"?, "schema"} for `harmony.developer_message(response_format=...)`.

    `schema` is a pydantic model class, a dataclass, a TypedDict or a JSON-schema dict.
    """
    if isinstance(schema, Mapping):
        body, default_name, doc = dict(schema), schema.get("title", "response"), schema.get("description")
    else:
        body, default_name = json_schema(schema, where="response format"), getattr(schema, "__name__", "response")
        doc = _class_summary(schema)
    section = {"name": re.sub(r"[^A-Za-z0-9_-]", "_", name or default_name)}
    if description or doc:
        section["description"] = description or doc
    section["schema"] = body
    return section


def _class_summary(cls: Any) -> str | None:
    """A class docstring's summary, ignoring the signature dataclasses write as a docstring."""
    doc = getattr(cls, "__doc__", None)
    if not doc or doc.startswith(f"{getattr(cls, '__name__', '')}("):
        return None
    return parse_docstring(doc)[0] or None


def parse_final(text: str, schema: Any) -> Any:
    """The model's final answer as the requested type: a model/dataclass instance, a dict or a JSON value.

    Raises StructuredOutputError saying what is wrong (not JSON; which field does not match).
    """
    body = _strip_fence(text)
    if isinstance(schema, Mapping):
        try:
            value = json.loads(body)
        except json.JSONDecodeError as err:
            raise StructuredOutputError(f"the final answer is not valid JSON: {err}") from None
        validate(value, schema)
        return value
    try:
        return pydantic.TypeAdapter(schema).validate_json(body)
    except pydantic.ValidationError as err:
        if any(e["type"] == "json_invalid" for e in err.errors()):
            raise StructuredOutputError(f"the final answer is not valid JSON: {err.errors()[0]['msg']}") from None
        raise StructuredOutputError(f"the final answer does not match the schema: {describe_errors(err)}") from None


def _strip_fence(text: str) -> str:
    """Accept an answer wrapped in a ```json fence, which models often write."""
    match = re.fullmatch(r"\s*```(?:json)?\s*\n(.*?)\n?```\s*", text, flags=re.S)
    return match.group(1) if match else text.strip()


def describe_errors(err: pydantic.ValidationError) -> str:
    """pydantic's errors as `field.path: message; ...` (no URLs), short enough to show the model."""
    return "; ".join(
        (".".join(str(p) for p in e["loc"]) + ": " if e["loc"] else "") + e["msg"] for e in err.errors()
    )


def validate(value: Any, schema: Mapping[str, Any]) -> None:
    """Check `value` against a JSON schema (type, enum, const, properties, required, additionalProperties,
    items, prefixItems, anyOf/oneOf/allOf, local $ref); StructuredOutputError names the failing path."""
    problem = _check(value, schema, schema, "")
    if problem:
        raise StructuredOutputError(f"the final answer does not match the schema: {problem}")


def _check(value: Any, schema: Mapping[str, Any], root: Mapping[str, Any], path: str) -> str | None:
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part] if part else target
        return _check(value, target, root, path)
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_is_type(value, k) for k in kinds):
            return f"{path or 'answer'}: expected {' or '.join(kinds)}, got {json.dumps(value)[:60]}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{path or 'answer'}: {json.dumps(value)[:60]} is not one of {schema['enum']}"
    if "const" in schema and value != schema["const"]:
        return f"{path or 'answer'}: expected {schema['const']!r}"
    for key in ("allOf", "anyOf", "oneOf"):
        if key in schema:
            failures = [_check(value, s, root, path) for s in schema[key]]
            passed = failures.count(None)
            if (key == "allOf" and passed < len(failures)) or (key != "allOf" and passed == 0):
                return next(f for f in failures if f)
            if key == "oneOf" and passed > 1:
                return f"{path or 'answer'}: matches more than one alternative of oneOf"
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                return f"{_join(path, name)}: Field required"
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in properties:
                problem = _check(item, properties[name], root, _join(path, name))
            elif extra is False:
                problem = f"{_join(path, name)}: unexpected field"
            else:
                problem = _check(item, extra, root, _join(path, name)) if isinstance(extra, Mapping) else None
            if problem:
                return problem
    if isinstance(value, list):
        prefix = schema.get("prefixItems", [])
        for i, item in enumerate(value):
            sub = prefix[i] if i < len(prefix) else schema.get("items")
            problem = _check(item, sub, root, _join(path, i)) if isinstance(sub, Mapping) else None
            if problem:
                return problem
    return None


def _join(path: str, key: Any) -> str:
    """Field paths written like pydantic's: `items.0.name`."""
    return f"{path}.{key}" if path else str(key)


def _is_type(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool) or isinstance(value, float) and value.is_integer()
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _JSON_TYPES.get(kind, object))
