"""Checking a final answer against a schema ends in bounded time whatever the schema and the answer, and says so
in one line when it cannot finish; a valid answer nested past what the check reads is told so, not called invalid.
(A security review: uniqueItems on 4 000 objects took 13.4 s, a few hundred bytes of anyOf chain 106 s at n=20, both
while the session holds Ctrl-C back.)"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Annotated, Literal

import pydantic
import pytest
from typing_extensions import TypeAliasType, TypedDict
from test_structured import _within  # (tests/ is on sys.path)

from gptoss_lab import ReplayEngine, Session
from gptoss_lab.session import TurnError
from gptoss_lab.structured import ResponseFormat, StructuredOutputError, describe_errors

_BUDGET = "the final answer could not be checked against the schema within 5 s: the check was stopped unfinished"


def _session(*finals: str) -> Session:
    recording = "".join(f"<|channel|>final<|message|>{final}<|return|>" for final in finals)
    return Session(ReplayEngine(recording), namespace={}, tools=(), approval="auto", date="2026-11-25",
                   max_new_tokens=200_000)


_UNIQUE = {"type": "array", "uniqueItems": True,
           "items": {"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": "string"}}}}


def test_unique_items_over_thousands_of_objects_is_checked_quickly_with_json_schemas_equality():
    items = [{"id": i, "name": f"item {i}"} for i in range(4000)]
    fmt = ResponseFormat.from_user(_UNIQUE)
    started = time.perf_counter()
    assert fmt.parse(json.dumps(items)) == items
    with pytest.raises(StructuredOutputError, match="^the final answer does not match the schema: answer: .*") as err:
        fmt.parse(json.dumps([*items, {"name": "item 7", "id": 7.0}]))  # keys in another order, 7.0 == 7
    assert time.perf_counter() - started < 5  # 0.05 s here; jsonschema's pair-by-pair check took 27 s for the two
    assert "\n" not in str(err.value) and len(str(err.value)) <= 400
    # the reason and the items that are the same are said, not cut off after the array's repr
    assert str(err.value).endswith("...] has non-unique elements (items 7 and 4000 are equal)")
    anything = ResponseFormat.from_user({"uniqueItems": True})
    assert anything.parse("[1, true, [1], [true], 0, false, null, {}, [], \"1\"]") is not None  # true is not 1
    for same in ("[1, 1.0]", '[{"a": [1, {"b": 2}]}, {"a": [1.0, {"b": 2}]}]', "[1e20, 100000000000000000000]"):
        with pytest.raises(StructuredOutputError, match="has non-unique elements"):
            anything.parse(same)


def test_a_turn_answering_thousands_of_unique_objects_ends_quickly_with_the_parsed_reply():
    items = [{"id": i, "name": f"item {i}"} for i in range(4000)]
    session = _session(json.dumps(items))
    started = time.perf_counter()
    with _within(30):
        reply = session.ask("list the items", response_format=_UNIQUE)
    assert (reply.parsed, reply.errors) == (items, [])
    assert time.perf_counter() - started < 8  # the whole turn: 0.5 s here, 13.75 s before (13.7 s checking)


_CITIES = [f"city-{i}" for i in range(3_000)]


class _City(pydantic.BaseModel):
    city: Literal[tuple(_CITIES)]  # type: ignore[valid-type]


@pytest.mark.parametrize("kind", [_City, {"type": "object", "properties": {"city": {"enum": _CITIES}}}],
                         ids=["typed", "schema dict"])
def test_an_enum_too_long_for_the_prompt_is_said_as_how_many_values_and_still_checked(kind):
    """Every value of an enum was written into the developer message: 100,000 made the prompt 1.3 MB, more than a
    model's context, and the turn was refused. Past 10,000 characters the model is told how many values there are,
    with a few examples, the user is told so in one line, and answers are still checked against every value."""
    session = _session('{"city": "city-2999"}', '{"city": "city-3000"}')
    prompt = session.export(response_format=kind)
    assert len(prompt) < 2_000 and '"description":"One of 3,000 values, too many to list here."' in prompt
    assert '"examples":["city-0","city-1",' in prompt and "city-2999" not in prompt
    note = ("The response format's schema has enums too long to write into the prompt (3,000 values at "
            "#/properties/city): the model is told how many values there are, with a few examples; answers are still "
            "checked against all of them.")
    good, bad = session.ask("?", response_format=kind), session.ask("?", response_format=kind)
    assert good.errors == [note] and good.parsed in ({"city": "city-2999"}, _City(city="city-2999"))
    assert bad.parsed is None and bad.errors[0] == note
    long_values = {"enum": [f"{i:02}" + "x" * 300 for i in range(40)]}  # no example given: the first is too long
    assert ResponseFormat.from_user(long_values).section["schema"] == {
        "type": "string", "description": "One of 40 values, too many to list here."}
    assert bad.errors[1].startswith("the final answer does not match the schema: city: ")


def test_an_answer_of_many_values_outside_a_long_enum_is_refused_quickly_naming_one():
    """jsonschema compared each value with every one of an enum's and wrote them all into each error: 1,000 wrong items
    of a 20,000-value enum ran past the check's 5 s, "could not be checked", where every one was wrong."""
    fmt = ResponseFormat.from_user({"type": "array", "items": {"enum": [f"city-{i}" for i in range(20_000)]}})
    started = time.perf_counter()
    with pytest.raises(StructuredOutputError) as err:
        fmt.parse(json.dumps([f"town-{i}" for i in range(1_000)]))
    assert time.perf_counter() - started < 2  # 0.05 s here
    assert str(err.value) == ("the final answer does not match the schema: 999: 'town-999' is not one of ['city-0', "
                              "'city-1', 'city-2', 'city-3', 'city-4', 'city-5', ...] (20,000 values)")
    assert fmt.parse('["city-19999", "city-0"]') == ["city-19999", "city-0"]


def test_a_typed_answer_of_many_values_outside_a_long_literal_is_refused_quickly():
    """pydantic wrote every value of a Literal or Enum into each error, in Rust, where the check's deadline cannot stop
    it: 2,000 wrong items of a 20,000-value Literal held the kernel 3.5 s (5,000: 7 s). A long one's error lists a few."""
    fmt = ResponseFormat.from_user(list[Literal[tuple(f"city-{i}" for i in range(20_000))]])
    started = time.perf_counter()
    with pytest.raises(StructuredOutputError) as err:
        fmt.parse(json.dumps([f"town-{i}" for i in range(2_000)]))
    assert time.perf_counter() - started < 2  # 0.05 s here
    assert str(err.value).startswith("the final answer does not match the schema: 0: Input should be 'city-0', "
                                     "'city-1', 'city-2', 'city-3', 'city-4', 'city-5', … (20,000 values); 1: ")
    assert str(err.value).endswith("; and 1997 more errors")
    assert fmt.parse('["city-19999", "city-0"]') == ["city-19999", "city-0"]


def _anyof_chain(n: int) -> dict:
    """A few hundred bytes: each step's anyOf refers twice to the next, 2**n paths to a wrong answer."""
    steps = {f"d{i}": {"anyOf": [{"$ref": f"#/$defs/d{i + 1}"}, {"$ref": f"#/$defs/d{i + 1}"}]} for i in range(n)}
    return {"$defs": {**steps, f"d{n}": {"type": "string"}}, "$ref": "#/$defs/d0"}


@pytest.mark.parametrize("schema,wrong,right", [
    (_anyof_chain(24), "1", '"s"'),
    ({"type": "array", "items": {"type": "string", "pattern": "(a|aa)+$"}},
     json.dumps(["a" * 60 + "b"] * 3), '["aaa"]'),
], ids=["anyof-chain", "slow-patterns"])
def test_a_check_that_would_run_for_ever_stops_within_the_budget_and_keeps_the_reply(schema, wrong, right):
    session = _session(wrong, right)
    with _within(20):  # 5 s; hours before
        reply = session.ask("?", response_format=schema)
    assert (reply.final, reply.parsed, reply.errors) == (wrong, None, [_BUDGET])
    assert session.ask("again", response_format=schema).parsed == json.loads(right)  # the next check has its budget


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="shares one core with a busy process (Linux)")
def test_a_slow_pattern_check_ends_within_the_budget_on_a_busy_machine():
    """`regex` counts a match's timeout in CPU seconds: with its core shared with one busy process, the 5 s budget
    held the turn (and Ctrl-C, which the session holds back while it checks) 11 s."""
    schema = {"type": "array", "items": {"type": "string", "pattern": "(a|aa)+$"}}
    wrong = json.dumps(["a" * 60 + "b"] * 200)
    session = _session(wrong, '["aaa"]')
    kept = os.sched_getaffinity(0)
    core = {min(kept)}
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        os.sched_setaffinity(busy.pid, core)
        os.sched_setaffinity(0, core)  # this thread, and the threads it starts
        started = time.monotonic()
        with _within(30):
            reply = session.ask("?", response_format=schema)
        took = time.monotonic() - started
    finally:
        os.sched_setaffinity(0, kept)
        busy.kill()
        busy.wait()
    assert (reply.final, reply.parsed, reply.errors) == (wrong, None, [_BUDGET])
    assert took < 6, f"the turn took {took:.1f} s"
    assert session.ask("again", response_format=schema).parsed == ["aaa"]


class Tree(pydantic.BaseModel):
    name: str
    children: list[Tree] = []


def _tree(depth: int) -> str:
    return '{"name": "a", "children": [' * depth + '{"name": "x"}' + "]}" * depth


_TREE_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "children": {"type": "array", "items": {
    "$ref": "#"}}}, "required": ["name"]}


@pytest.mark.parametrize("kind", [Tree, _TREE_SCHEMA, {}], ids=["typed", "recursive schema dict", "any JSON"])
def test_a_valid_answer_nested_deeper_than_the_check_reads_is_told_so_in_one_line(kind):
    """Every format takes the same depth and says so in the same words: a schema dict's answer 300 deep was taken, 1,000
    deep called "not valid JSON: maximum recursion depth exceeded while decoding a JSON array", and a recursive one's
    250 deep "could not be checked against the schema (RecursionError: ...)", each as deep as Python's stack let it."""
    fmt = ResponseFormat.from_user(kind)
    assert fmt.parse(_tree(99)) == (Tree.model_validate_json(_tree(99)) if kind is Tree else json.loads(_tree(99)))
    for depth in (150, 450, 5_000):  # 301, 901 and 10,001 arrays and objects inside one another: valid JSON
        with pytest.raises(StructuredOutputError) as err:
            fmt.parse(_tree(depth))  # typed, it was called "not valid JSON: recursion limit exceeded"
        assert str(err.value) == "the final answer is nested deeper than 200 levels of arrays and objects, the most the check takes"


def test_a_schema_with_a_dollar_schema_inside_is_refused_since_that_part_would_be_checked_without_the_budget():
    inner = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "string", "pattern": "^(a+)+$"}
    with pytest.raises(ValueError, match='^not supported: "\\$schema" inside the schema .*at the top$'):
        ResponseFormat.from_user({"$defs": {"p": inner}, "$ref": "#/$defs/p"})
    top = ResponseFormat.from_user({**inner, "pattern": "^a+$"})
    assert top.parse('"aaa"') == "aaa"


def test_a_schema_too_large_to_check_in_time_is_refused_within_the_budget(monkeypatch):
    """jsonschema checks a schema dict against its meta-schema with no time limit: `--json` of a schema of 200,000
    properties held the kernel for 131 s, Ctrl-C held back, before the turn refused it as longer than the context.
    The schema's own check has the answer's budget (here cut to 0.01 s); a wrong one is still named."""
    import gptoss_lab.structured as structured

    monkeypatch.setattr(structured, "_CHECK_SECONDS", 0.01)
    wide = {"type": "object", "properties": {f"k{i}": {"type": "string"} for i in range(1000)}}
    started = time.perf_counter()
    with _within(10), pytest.raises(ValueError) as err:
        ResponseFormat.from_user(wide)
    assert str(err.value) == ("the schema could not be checked within 0.01 s: its check against its meta-schema was "
                              "stopped unfinished"), str(err.value)
    assert time.perf_counter() - started < 1.5
    with pytest.raises(ValueError, match="^not a valid JSON schema: 'x' is not of type 'number'$"):
        ResponseFormat.from_user({"type": "object", "properties": {"a": {"type": "integer", "minimum": "x"}}})


def test_a_schema_too_large_to_check_is_refused_by_its_size_not_the_clock(monkeypatch):
    """5,000 prefixItems took the meta-schema check 4.1 s, and on a busy machine it was refused at the 5 s budget
    "at about 1 ms a property": taken or not by the machine's load. Its parts are counted before the check, whatever
    time is left, and the message says what was counted (true and false are subschemas too)."""
    import gptoss_lab.structured as structured

    monkeypatch.setattr(structured, "_CHECK_SECONDS", 1000.0)
    for items, parts in [([{"type": "string"}] * 5000, "10,002"), ([True] * 3001, "3,003")]:
        started = time.perf_counter()
        with pytest.raises(ValueError) as err:
            ResponseFormat.from_user({"type": "array", "prefixItems": items})
        assert str(err.value) == (f"not supported: the schema has {parts} parts (subschemas and the values of their "
                                  "keywords), more than the 3,000 checked in time against its "
                                  "meta-schema: give a smaller one"), str(err.value)
        assert time.perf_counter() - started < 0.5
    # a property named like a data keyword ("enum") is a subschema, counted with its parts
    named = {"properties": {"enum": {"anyOf": [{"type": "string"}] * 1500}}}
    with pytest.raises(ValueError, match="^not supported: the schema has 3,003 parts "):
        ResponseFormat.from_user(named)
    assert ResponseFormat.from_user({"enum": list(range(20_000))}).parse("7") == 7  # data: one part


def test_a_pattern_too_long_to_compile_quickly_is_refused_in_one_line():
    """A pattern of 100,000 alternatives held the kernel 9 s in the meta-schema's `format: regex` check (re.compile,
    past the check's deadline: not interruptible), then 15 s to compile for each answer. Its length is bounded first."""
    alternatives = ["|".join(f"a{i:05d}" for i in range(count)) for count in (2_000, 1_250)]
    started = time.perf_counter()
    for schema, place in [({"type": "string", "pattern": alternatives[0]}, "#/pattern"), ({"properties": {"x": {
            "patternProperties": {alternatives[0]: {}}}}}, "#/properties/x/patternProperties/a00000|a00001|a00002")]:
        with pytest.raises(ValueError) as err:
            ResponseFormat.from_user(schema)
        assert str(err.value) == (f"not supported: a pattern of 13,999 characters at {place}, more than the 10,000 the "
                                  "check takes (a pattern is compiled with no time limit)")
    assert time.perf_counter() - started < 1
    fits = ResponseFormat.from_user({"type": "string", "pattern": f"^(?:{alternatives[1]})$"})
    assert fits.parse('"a01249"') == "a01249"
    with pytest.raises(StructuredOutputError, match="does not match"):
        fits.parse('"b"')


def _nested_unions(depth: int, *, named: bool = False) -> object:
    """Each level a list or a tuple, both of which read a JSON array: pydantic tries both, 2**depth paths. Each level
    `named` as a type alias, which pydantic builds once; else written out twice, 2**depth times in all."""
    kind: object = int
    for level in range(depth):
        part = TypeAliasType(f"Level{level}", kind) if named else kind
        kind = list[part] | tuple[part, ...]
    return kind


def test_a_type_too_large_to_build_in_time_is_refused_at_once_in_one_line():
    """pydantic builds a part of a type again at each place it is written: a 16-deep list[T] | tuple[T, ...], 327,676
    parts, took 22 s to build (its repr alone 1 s, 1.5 MB) before a question was asked; a 40-deep one, for ever."""
    large = _nested_unions(16)
    fields = {"a": int, "b": large}  # a class's fields too, read without typing.get_type_hints (4 s for this one)
    kinds = {"the type": _nested_unions(40), "Fields": TypedDict("Fields", fields),
             "Record": dataclasses.make_dataclass("Record", fields.items())}
    for name, kind in kinds.items():
        started = time.perf_counter()
        with _within(5), pytest.raises(TypeError) as err:
            ResponseFormat.from_user(kind)
        assert time.perf_counter() - started < 0.5, name
        assert str(err.value).startswith(f"{name}: written out, it has ") and "\n" not in str(err.value)
        assert str(err.value).endswith("more than the 20,000 built in time: name the repeated part, type Part = ... "
                                       "(typing_extensions.TypeAliasType before Python 3.12) or a model, which is built once")
    assert ResponseFormat.from_user(_nested_unions(8)).parse("[[[[[[[[1]]]]]]]]") == [[[[[[[[1]]]]]]]]


def test_a_schema_too_large_to_write_out_for_the_model_is_refused_at_once_in_one_line():
    """Each model has two fields of the next: pydantic builds each once, but the schema the model is shown writes each
    out at every place, 2**20 objects here, which held the kernel (and took its memory) without end."""
    chain: type[pydantic.BaseModel] = pydantic.create_model("Leaf", v=(int, ...))
    for level in range(20, -1, -1):
        chain = pydantic.create_model(f"Level{level}", a=(chain, ...), b=(chain, ...))
    started = time.perf_counter()
    with _within(5), pytest.raises(TypeError) as err:
        ResponseFormat.from_user(chain)
    assert time.perf_counter() - started < 1
    assert str(err.value) == ("Level0: its schema written out for the model has 18,874,363 parts (classes that refer to "
                              "another at two places or more, inside one another, double it), more than the 100,000 a "
                              "model's context could hold: give a smaller type")
    address = pydantic.create_model("Address", city=(str, ...))
    two = ResponseFormat.from_user(pydantic.create_model("Person", home=(address, ...), work=(address, ...)))
    assert two.schema["properties"]["home"] == two.schema["properties"]["work"] == {  # written out at each place
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": False}


Deep = TypeAliasType("Deep", "list[Deep] | tuple[Deep, ...] | int")
Count = TypeAliasType("Count", int)  # `type Count = int`


class Pair(pydantic.BaseModel):  # an alias used twice: pydantic defines it once and refers to it
    a: Count
    b: Count | list[Count] = 0


@pytest.mark.parametrize("kind,depth", [(_nested_unions(16, named=True), 16), (Deep, 60)],
                         ids=["nested", "recursive alias"])
def test_a_typed_format_whose_unions_would_be_tried_for_ever_stops_within_the_budget(kind, depth):
    """pydantic checks in Rust, which nothing stopped: a 14-deep nesting took 23 s to refuse one answer, the
    recursive alias's 60-deep answer would take longer than the universe has. The reply keeps its text."""
    wrong, right = "[" * depth + '"x"' + "]" * depth, "[" * depth + "7" + "]" * depth
    started = time.perf_counter()
    fmt = ResponseFormat.from_user(kind)  # (written out, the 16-deep type took 22 s to build, and is refused now)
    assert time.perf_counter() - started < 1
    session = _session(wrong, right)
    with _within(20):
        reply = session.ask("?", response_format=fmt)
    assert (reply.final, reply.parsed, len(reply.errors)) == (wrong, None, 1)
    if kind is Deep:
        assert reply.errors == [_BUDGET]
    else:  # 3 s here, refused with pydantic's errors; on a slower machine the budget may end it first
        assert reply.errors == [_BUDGET] or reply.errors[0].startswith("the final answer does not match the schema: ")
    assert session.ask("again", response_format=fmt).parsed is not None


def test_unions_that_check_the_budget_read_and_refuse_answers_as_pydantic_does():
    """The budget's checks change no value and no error: the same types, locations and messages (a recursive
    alias's choices are named in full, `tuple[union[list[...], ...], ...]` where pydantic writes `tuple[..., ...]`)."""

    class Cat(pydantic.BaseModel):
        name: str
        lives: int | str

    class Dog(pydantic.BaseModel):
        name: str
        lives: int
        tags: list[int | float] | list[str] = []

    for kind, recursive in ((Cat | Dog, False), (Dog | Cat, False), (list[Cat | Dog | int], False),
                            (dict[str, Deep], True), (Deep, True), (Pair, False), (list[Count] | tuple[Count, ...], False)):
        fmt, plain = ResponseFormat.from_user(kind), pydantic.TypeAdapter(kind)
        for answer in ('{"name": "a", "lives": 9}', '{"name": "a", "lives": "9"}', '[{"name": "b", "lives": 1.5}]',
                       '{"name": "a", "lives": 1, "tags": [1, 2.5]}', '{"name": "a", "lives": 1, "tags": ["x", 1]}',
                       '[[1, [2, "x"]]]', '{"k": [[1], 2]}', '[7, {"name": "c"}]', '{"a": 1, "b": [2, 3]}',
                       '{"a": "1", "b": 2}', '[1, 2]'):
            try:
                expected = plain.validate_json(answer, strict=True)  # as the JSON types shown, as answers are
            except pydantic.ValidationError as err:
                with pytest.raises(StructuredOutputError) as refused:
                    fmt.parse(answer)
                if not recursive:
                    assert str(refused.value) == f"the final answer does not match the schema: {describe_errors(err)}"
            else:
                got = fmt.parse(answer)
                assert (type(got), got) == (type(expected), expected)


def _asked_of(server: socket.socket, seconds: float = 0.5) -> list[bytes]:
    """The first bytes of each connection the listening `server` took within `seconds`: a port the system handed out
    may have been a closed kernel's, whose clients' ZMQ sockets still reconnect to it, so a connection alone is not a
    fetch (CI saw one)."""
    asked, until = [], time.monotonic() + seconds
    while (left := until - time.monotonic()) > 0:
        server.settimeout(left)
        try:
            connection, _ = server.accept()
        except socket.timeout:
            break
        with connection:
            connection.settimeout(max(until - time.monotonic(), 0.05))
            try:
                asked.append(connection.recv(4096))
            except socket.timeout:
                asked.append(b"")
    return asked


def test_a_reference_to_another_document_is_refused_before_the_turn_and_nothing_is_fetched():
    """A schema dict's `$ref` to a web address or file was fetched while the answer was checked: with no timeout,
    Ctrl-C held back (a silent server held the kernel), a file's text quoted in the error. Refused up front now."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.5)
    port = server.getsockname()[1]
    refused = [{"$ref": f"http://127.0.0.1:{port}/schema.json"},
               {"type": "object", "properties": {"a": {"$ref": "file:///etc/hostname"}}},
               {"$id": f"http://127.0.0.1:{port}/root.json", "items": {"$ref": "other.json#/x"}},
               {"anyOf": [{"$dynamicRef": f"http://127.0.0.1:{port}/meta"}]}]
    for schema in refused:
        with pytest.raises(ValueError, match=r"^not supported: a reference to another document \('.*'\); put its "
                                             r"definitions under \$defs and refer to them as #/\$defs/NAME"):
            ResponseFormat.from_user(schema)
    session = _session('{"a": 1}')
    with pytest.raises(TurnError, match="^response format: not supported: a reference to another document"):
        session.ask("?", response_format=refused[0])
    assert session.history == []
    assert not [asked for asked in _asked_of(server) if b"HTTP/" in asked]   # nobody asked for a schema
    server.close()
    # data and names are not references; references inside the schema still work
    assert ResponseFormat.from_user({"const": {"$ref": "http://x"}}).parse('{"$ref": "http://x"}') == {"$ref": "http://x"}
    named = ResponseFormat.from_user({"type": "object", "properties": {"$ref": {"type": "string"}}})
    assert named.parse('{"$ref": "1"}') == {"$ref": "1"}
    inside = ResponseFormat.from_user({"$defs": {"n": {"type": "integer"}}, "type": "array", "items": {"$ref": "#/$defs/n"}})
    assert inside.parse("[1, 2]") == [1, 2]
    with pytest.raises(StructuredOutputError, match="is not of type 'integer'"):
        inside.parse('[1, "2"]')


@pytest.mark.parametrize("kind", ["iri", "iri-reference"])
def test_an_iri_format_is_checked_in_time_and_by_rfc_3987(kind):
    """`format: iri` took 40 s for a 60 000-character answer (rfc3987_syntax's parser, not stopped by the 5 s budget,
    with Ctrl-C held back): a repetitive answer held the kernel for minutes. Now checked as a URI once its non-ASCII
    characters are percent-encoded, as RFC 3987 maps an IRI to a URI."""
    fmt = ResponseFormat.from_user({"type": "string", "format": kind})
    long = "http://x/" + "/" * 119_731
    with _within(3):
        assert fmt.parse(json.dumps(long)) == long
    assert fmt.parse('"https://例え.jp/パス?q=ü#frag"') == "https://例え.jp/パス?q=ü#frag"
    assert fmt.parse('"http://[::1]:80/a"') == "http://[::1]:80/a"
    for wrong in ("http://x/\x85", "http://x/\ufdd0", "two words", "ht!tp://x"):
        with pytest.raises(StructuredOutputError, match=f"is not a '{kind}'"):
            fmt.parse(json.dumps(wrong))
    with pytest.raises(StructuredOutputError, match="holds a lone surrogate"):  # not text at all
        fmt.parse(json.dumps("http://x/\ud800"))
    relative = '"/relative/パス"'
    if kind == "iri":
        with pytest.raises(StructuredOutputError, match="is not a 'iri'"):
            fmt.parse(relative)
    else:
        assert fmt.parse(relative) == "/relative/パス"


class UnreadableError(Exception):
    """An error whose message cannot be built (its __str__ reads what was never set)."""

    def __str__(self) -> str:
        raise AttributeError("response")


class Abort(BaseException):
    """A library's own way out, as BaseException (not Exception), as gevent's and trio's are."""


class _Exits(pydantic.BaseModel):
    n: int

    @pydantic.field_validator("n")
    @classmethod
    def _check(cls, value: int) -> int:
        raise {1: SystemExit(1), 3: UnreadableError(), 4: Abort("stop here"), 5: GeneratorExit()}.get(value, KeyboardInterrupt)


@pytest.mark.parametrize("answer,error", [
    ('{"n": 1}', "the final answer could not be checked against the schema (SystemExit: 1)"),
    ('{"n": 3}', "the final answer could not be checked against the schema (UnreadableError: its message could not be read)"),
    ('{"n": 2}', "The check of the final answer against the schema was stopped (Ctrl-C): reply.parsed is None."),
    ('{"n": 4}', "the final answer could not be checked against the schema (Abort: stop here)"),
    ('{"n": 5}', "the final answer could not be checked against the schema (GeneratorExit)"),
], ids=["SystemExit", "unreadable message", "KeyboardInterrupt", "BaseException", "GeneratorExit"])
def test_a_validator_that_exits_or_is_interrupted_still_ends_the_turn_with_its_reply(answer, error):
    """sys.exit(), an error whose message cannot be read or a KeyboardInterrupt in the schema's validator went up
    out of `ask`: no Reply, none kept."""
    session = _session(answer, '{"n": 3}')
    try:
        reply = session.ask("?", response_format=_Exits)
    except KeyboardInterrupt:
        pytest.fail("the KeyboardInterrupt came out of ask(), without a Reply")
    assert (reply.final, reply.parsed, reply.errors, session.replies) == (answer, None, [error], [reply])


class _Endless(pydantic.BaseModel):
    n: int

    @pydantic.field_validator("n")
    @classmethod
    def _check(cls, value: int) -> int:
        ends = time.monotonic() + 8  # (not for ever: on a session that held Ctrl-C, the test would hang)
        while time.monotonic() < ends:
            time.sleep(0.01)
        return value


def test_ctrl_c_stops_a_validator_that_never_ends_and_the_turn_keeps_its_reply():
    """The answer was checked while the session held Ctrl-C back: a user's validator that never returned held the
    kernel, Ctrl-C and all. The first Ctrl-C stops the check; the Reply is kept."""
    session = _session('{"n": 1}')
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    started = time.monotonic()
    try:
        reply = session.ask("?", response_format=_Endless)
    except KeyboardInterrupt:
        pytest.fail(f"the Ctrl-C came out of ask() after {time.monotonic() - started:.1f} s, without a Reply")
    finally:
        timer.cancel()
    assert time.monotonic() - started < 4
    assert (reply.parsed, reply.errors, session.replies) == (
        None, ["The check of the final answer against the schema was stopped (Ctrl-C): reply.parsed is None."], [reply])


_EXPANDING = "^((a{1000}){1000}){3}$"  # 24 characters standing for 3,000,000


@pytest.mark.parametrize("given, refusal", [
    ({"type": "string", "pattern": _EXPANDING}, "not supported: the pattern '^((a{1000}){1000}){3}$' at #/pattern"),
    ({"type": "object", "patternProperties": {"^(x{200}){200}$": {}}},
     "not supported: the pattern '^(x{200}){200}$' at #/patternProperties/^(x{200}){200}$"),
    (Annotated[str, pydantic.Field(pattern="^a{20000}$")], "Annotated: the pattern '^a{20000}$'"),
], ids=["schema dict", "patternProperties", "typed"])
def test_a_pattern_whose_repetitions_expand_past_the_bound_is_refused_before_it_is_compiled(given, refusal):
    """`^((a{1000}){1000}){3}$` was taken; `regex` then compiled it for 1.4 s to check each answer (a fourth level ran the
    kernel out of memory) and llguidance for 182 s before the first constrained token, neither interruptible. A pattern's
    size with its repetitions written out is bounded before anything compiles it: refused in one line, at once."""
    started = time.perf_counter()
    with pytest.raises((ValueError, TypeError)) as err:
        ResponseFormat.from_user(given)
    assert time.perf_counter() - started < 0.5
    assert str(err.value).startswith(refusal) and "\n" not in str(err.value), str(err.value)
    assert str(err.value).endswith(" characters with its repetitions written out, more than the 10,000 that checking "
                                   "and constrained decoding compile in time; give a length as minLength and maxLength "
                                   "instead")
    with pytest.raises(TurnError, match="^response format: ") as err:
        _session('"a"').ask("?", response_format=given, constrain=True)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("pattern, good, bad", [
    ("^[A-Z]{2}\\d{4}$", "AB1234", "AB123"), ("^\\w{1,64}$", "x" * 64, "x" * 65),
    ("^[^@\\s]+@[^@\\s]+\\.[a-z]{2,}$", "ann@example.org", "ann@example"), ("^\\d{4}-\\d{2}-\\d{2}$", "2026-12-07", "2026-1-7"),
    ("^(?:[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12})$", "0" * 8 + "-0000" * 3 + "-" + "0" * 12, "0"),
    ("^(a{100}){100}$", "a" * 10_000, "a" * 9_999),
], ids=["code", "word", "email", "date", "uuid", "at the bound"])
def test_patterns_users_write_are_taken_by_every_format(pattern, good, bad):
    for given in ({"type": "string", "pattern": pattern}, Annotated[str, pydantic.Field(pattern=pattern)]):
        fmt = ResponseFormat.from_user(given)
        assert fmt.parse(json.dumps(good)) == good
        with pytest.raises(StructuredOutputError, match="does not match|should match"):
            fmt.parse(json.dumps(bad))


def _schema_levels(depth: int, wrap: str = '{"not":', leaf: str = '{"type": "integer"}') -> dict:
    """A valid schema `depth` arrays and objects deep."""
    return json.loads(wrap * (depth - 1) + leaf + "}" * (depth - 1))


def _in_frames(count: int, call):
    """`call()` from `count` frames deeper, as a kernel's cell runs."""
    return call() if count == 0 else _in_frames(count - 1, call)


@pytest.mark.parametrize("schema", [_schema_levels(101), _schema_levels(150), _schema_levels(900, '{"items":'),
                                    json.loads('{"properties": {"a":' * 60 + "{}" + "}}" * 60)],
                         ids=["101 levels", "150 levels", "900 items", "60 properties"])
def test_a_schema_dict_nested_past_the_bound_is_refused_in_one_line_whatever_the_stack(schema):
    """A valid schema 900 levels deep was "not a valid JSON schema (RecursionError: maximum recursion depth exceeded while
    calling a Python object)", one of 101 taken, how deep depending on Python's stack and its limit (IPython's is
    3,000), and llguidance cannot read past 124 (--constrain). Every schema dict is bounded the same, told in one line,
    and one at the bound is taken, also from a kernel's depth, and constrained."""
    with pytest.raises(TurnError) as err:
        _session('"a"').ask("?", response_format=schema)
    assert str(err.value) == ("response format: not supported: the schema is nested deeper than 100 levels of arrays and "
                              "objects, the most the check and constrained decoding take")
    fits = _in_frames(150, lambda: ResponseFormat.from_user(_schema_levels(100, '{"type": "array", "items":')))
    assert fits.parse("[" * 99 + "1" + "]" * 99) == json.loads("[" * 99 + "1" + "]" * 99)
    with pytest.raises(StructuredOutputError, match="does not match"):
        fits.parse("[" * 99 + '"a"' + "]" * 99)
    if importlib.util.find_spec("llguidance"):
        fits.processor()


_LINKED = {"$defs": {"node": {"anyOf": [{"type": "null"}, {"type": "object", "properties": {"next": {
    "$ref": "#/$defs/node"}}, "required": ["next"]}]}}, "$ref": "#/$defs/node"}


def test_an_answer_a_recursive_schema_dicts_check_cannot_follow_is_told_so_in_one_line():
    """jsonschema follows a recursive schema several frames a level: in a script (Python's limit of 1,000 frames; IPython
    raises it to 3,000), a linked list 199 deep, within the answers' bound, was "could not be checked against the schema
    (RecursionError: maximum recursion depth exceeded while getting the repr of an object)". It says what happened;
    shallower lists are checked as before."""
    fmt = ResponseFormat.from_user(_LINKED)
    chain = '{"next": ' * 199 + "null" + "}" * 199
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)  # (IPython, which other tests load, raised it)
    try:
        with pytest.raises(StructuredOutputError) as err:
            _in_frames(100, lambda: fmt.parse(chain))
    finally:
        sys.setrecursionlimit(limit)
    assert str(err.value) == ("the final answer, 199 levels of arrays and objects deep, is nested deeper than the check of "
                              "this schema can follow (it ran out of Python's stack)")
    assert _in_frames(100, lambda: fmt.parse('{"next": ' * 50 + "null" + "}" * 50)) == json.loads(
        '{"next": ' * 50 + "null" + "}" * 50)
