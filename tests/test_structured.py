"""Structured output: the response-format section the model is shown, the validated answer, and the
llguidance constraint that keeps a `final` answer inside the schema."""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import enum
import io
import json
import math
import signal
import subprocess
import sys
import time
import typing
from decimal import Decimal
from typing import Annotated, Literal

import hypothesis
import hypothesis.strategies
import jsonschema
import pydantic
import pytest
from typing_extensions import NotRequired, TypedDict

from gptoss_lab import ReplayEngine, Session, harmony, tool
from gptoss_lab.session import TurnError
from gptoss_lab.structured import ResponseFormat, StructuredOutputError
from gptoss_lab.widgets.text import TextView


def response_format_section(schema, **kw):
    return ResponseFormat.from_user(schema, **kw).section


def parse_final(text, schema):
    return ResponseFormat.from_user(schema).parse(text)


class ShoppingList(pydantic.BaseModel):
    """Items to buy."""

    items: list[str] = pydantic.Field(description="Entries on the shopping list.")
    store: str | None = None


@dataclasses.dataclass
class Point:
    x: float
    y: float = 0.0


class Movie(TypedDict):
    title: str
    year: NotRequired[int]


PLAIN = {"title": "rating", "type": "object", "properties": {"stars": {"type": "integer", "enum": [1, 2, 3]}},
         "required": ["stars"], "additionalProperties": False}


def test_sections_for_each_kind_of_schema():
    assert response_format_section(ShoppingList) == {
        "name": "ShoppingList", "description": "Items to buy.",
        "schema": {"type": "object", "properties": {
            "items": {"description": "Entries on the shopping list.", "type": "array", "items": {"type": "string"}},
            "store": {"type": ["string", "null"], "default": None}}, "required": ["items"], "additionalProperties": False}}
    assert response_format_section(Point) == {  # a dataclass's generated docstring is not a description
        "name": "Point", "schema": {"type": "object", "properties": {
            "x": {"type": "number"}, "y": {"type": "number", "default": 0.0}}, "required": ["x"],
            "additionalProperties": False}}
    assert response_format_section(Movie)["schema"]["required"] == ["title"]
    assert response_format_section(PLAIN) == {"name": "rating", "schema": PLAIN}
    assert response_format_section(PLAIN, name="my rating!", description="How good.")["name"] == "my_rating_"


def test_the_developer_message_carries_the_response_format():
    section = response_format_section(ShoppingList)
    text = harmony.decode(harmony.render([harmony.developer_message("Be brief.", response_format=section)]))
    assert text.startswith("<|start|>developer<|message|># Instructions\n\nBe brief.\n\n# Response Formats\n\n")
    schema = json.dumps(section["schema"], separators=(",", ":"))
    assert text.endswith(f"# Response Formats\n\n## ShoppingList\n\n// Items to buy.\n{schema}<|end|><|start|>assistant")


def test_response_format_keeps_the_function_tools_working():
    @tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    developer = harmony.developer_message(functions=[add.description], response_format=response_format_section(PLAIN))
    text = harmony.decode(harmony.render([harmony.system_message(date="2026-11-25"), developer]))
    assert "Calls to these tools must go to the commentary channel: 'functions'." in text
    assert "type add = (_: {" in text and "## rating\n\n{" in text


@pytest.mark.parametrize("schema,text,expected", [
    (ShoppingList, '{"items": ["eggs", "milk"]}', ShoppingList(items=["eggs", "milk"])),
    (ShoppingList, '```json\n{"items": ["eggs"], "store": "Aldi"}\n```', ShoppingList(items=["eggs"], store="Aldi")),
    (Point, ' {"x": 1, "y": 2.5} ', Point(1.0, 2.5)),
    (Movie, '{"title": "Alien"}', {"title": "Alien"}),
    (PLAIN, '{"stars": 3}', {"stars": 3}),
    (list[int], "[1, 2]", [1, 2]),
])
def test_parse_final_gives_the_python_object(schema, text, expected):
    assert parse_final(text, schema) == expected


@pytest.mark.parametrize("schema,text,message", [
    (ShoppingList, "Here is your list: eggs", "the final answer is not valid JSON"),
    (ShoppingList, '{"items": "eggs"}', "does not match the schema: items: Input should be a valid array"),
    (Point, '{"y": 1}', "x: Field required"),
    (PLAIN, "{'stars': 3}", "the final answer is not valid JSON"),
    (PLAIN, '{"stars": 5}', "stars: 5 is not one of [1, 2, 3]"),
    (PLAIN, '{"stars": 1, "comment": "ok"}', "answer: Additional properties are not allowed ('comment' was unexpected)"),
    (PLAIN, '{}', "answer: 'stars' is a required property"),
    (PLAIN, '[1]', "answer: [1] is not of type 'object'"),
])
def test_parse_final_errors_say_what_is_wrong(schema, text, message):
    with pytest.raises(StructuredOutputError) as err:
        parse_final(text, schema)
    assert message in str(err.value)


def test_schema_dicts_are_validated_with_refs_unions_and_arrays():
    schema = {"$defs": {"tag": {"type": "string"}},
              "type": "object",
              "properties": {"tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}},
                             "size": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                             "pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "number"}]}}}
    good = {"tags": ["a"], "size": None, "pair": ["x", 1.5]}
    assert parse_final(json.dumps(good), schema) == good
    for bad, where in [({"tags": ["a", 2]}, "tags.1: 2 is not of type 'string'"), ({"size": "big"}, "size: 'big'"),
                       ({"pair": [1, 1]}, "pair.0: 1 is not of type 'string'")]:
        with pytest.raises(StructuredOutputError, match=f"schema: {where}"):
            parse_final(json.dumps(bad), schema)


class Meeting(pydantic.BaseModel):
    topic: str
    at: datetime.datetime


@dataclasses.dataclass
class Tree:
    """A labelled tree."""

    label: str
    children: list[Tree] = dataclasses.field(default_factory=list)


def test_from_user_takes_each_kind_of_input_and_refuses_the_rest():
    for target in (ShoppingList, Point, Movie, list[int], PLAIN):
        fmt = ResponseFormat.from_user(target)
        assert fmt.target is target and fmt.schema is fmt.section["schema"]
        assert ResponseFormat.from_user(fmt) is fmt
    assert ResponseFormat.from_user(list[int]).section == {"name": "list", "schema": {"type": "array", "items": {"type": "integer"}}}
    # a type that refers to itself keeps its definition (the model reads the schema as JSON)
    tree = ResponseFormat.from_user(Tree)
    assert tree.section["description"] == "A labelled tree." and tree.schema["$defs"]["Tree"]["required"] == ["label"]
    assert tree.parse('{"label": "a", "children": [{"label": "b"}]}') == Tree("a", [Tree("b")])
    for wrong in (ShoppingList(items=[]), "ShoppingList", 42, print):
        with pytest.raises(TypeError, match="expected a pydantic model, dataclass, TypedDict or JSON-schema dict"):
            ResponseFormat.from_user(wrong)
    with pytest.raises(ValueError, match="not a valid JSON schema: 'strng' is not valid"):
        ResponseFormat.from_user({"type": "strng"})


class _Order(pydantic.BaseModel):
    customer: "Customr"  # noqa: F821 - a typo: the class is not defined


def test_a_type_naming_an_undefined_class_says_which_name():
    """A model whose annotation named a class not defined (a typo, a cell not run) was refused as "unsupported type
    annotation <class '_Order'>; use ... a pydantic model", of a pydantic model; now the missing name is given."""
    with pytest.raises(TurnError, match=r"^response format: _Order: <class '.*_Order'> refers to a type that is not "
                                        r"defined \(name 'Customr' is not defined\): define it \(run its cell\) first$"):
        _session('<|channel|>final<|message|>{}<|return|>').ask("?", response_format=_Order)

    def place(order: _Order) -> str:
        """Place an order."""
        return "ok"

    with pytest.raises(TypeError, match=r"^place.order: .* \(name 'Customr' is not defined\)"):
        tool(place)


def test_a_root_model_is_shown_as_its_root_type_alone():
    """A pydantic RootModel of a list or a str was shown to the model with "additionalProperties": false, a key
    about objects, on an array or a string schema."""
    class Scores(pydantic.RootModel[list[int]]):
        pass

    class Name(pydantic.RootModel[str]):
        pass

    assert response_format_section(Scores)["schema"] == {"type": "array", "items": {"type": "integer"}}
    assert response_format_section(Name)["schema"] == {"type": "string"}
    assert parse_final("[3, 4]", Scores) == Scores([3, 4])


def test_a_bad_response_format_is_a_one_line_turn_error():
    session = _session('<|channel|>final<|message|>{}<|return|>')
    with pytest.raises(TurnError, match="^response format: expected a pydantic model.*not 42$"):
        session.ask("?", response_format=42)
    with pytest.raises(TurnError, match="^response format: not a valid JSON schema"):
        session.ask("?", response_format={"type": 3})


def test_dates_are_shown_as_formatted_strings_and_parsed_to_datetimes():
    fmt = ResponseFormat.from_user(Meeting)
    assert fmt.schema["properties"]["at"] == {"type": "string", "format": "date-time"}
    assert fmt.parse('{"topic": "review", "at": "2026-11-25T10:30:00"}').at == datetime.datetime(2026, 11, 25, 10, 30)
    with pytest.raises(StructuredOutputError, match="schema: at: Input should be a valid datetime"):
        fmt.parse('{"topic": "review", "at": "next Tuesday"}')


# ---------------------------------------------------------------- constrained decoding, without a model

MOOD = {"type": "object", "additionalProperties": False, "required": ["mood", "ok", "score"],
        "properties": {"mood": {"enum": ["happy", "sad"]}, "ok": {"type": "boolean"},
                       "score": {"type": "integer", "minimum": 0, "maximum": 9}}}


class Verdict(pydantic.BaseModel):
    mood: Literal["happy", "sad"]
    ok: bool
    score: int = pydantic.Field(ge=0, le=9)
    seen: datetime.date | None = None


_PROMPT = harmony.render([harmony.user_message("Rate it.")])  # ends with <|start|>assistant


def _allowed(processor, ids: list[int]) -> set[int]:
    """The token ids the processor leaves possible after `ids`."""
    import torch

    scores = processor(torch.tensor([ids]), torch.zeros(1, harmony.VOCAB_SIZE))
    return set(torch.isfinite(scores[0]).nonzero().flatten().tolist())


def test_the_constraint_masks_only_the_open_final_answer():
    pytest.importorskip("llguidance")
    processor = ResponseFormat.from_user(MOOD).processor()
    everything = harmony.VOCAB_SIZE
    assert len(_allowed(processor, _PROMPT + harmony.encode("<|channel|>analysis<|message|>Let me think"))) == everything
    assert len(_allowed(processor, _PROMPT + harmony.encode("<|channel|>fin"))) == everything  # header not finished
    final = _PROMPT + harmony.encode("<|channel|>final<|message|>")
    assert {harmony.decode([t]) for t in _allowed(processor, final)} <= {"{", '{"', '{"\n'} | {"{\""}
    inside = {harmony.decode([t]) for t in _allowed(processor, final + harmony.encode_text('{"mood": "'))}
    assert "happy" in inside and "sad" in inside and "angry" not in inside
    assert all("happy".startswith(t) or "sad".startswith(t) for t in inside), inside
    complete = final + harmony.encode_text('{"mood": "sad", "ok": true, "score": 3}')
    assert _allowed(processor, complete) == {harmony.RETURN}
    # after the answer, in a later message of the same turn (a tool loop), the model is free again
    later = complete + [harmony.RETURN, harmony.START] + harmony.encode("assistant<|channel|>commentary<|message|>")
    assert len(_allowed(processor, later)) == everything
    # a second final answer in the same turn gets a fresh matcher
    again = later + harmony.encode("ok<|end|><|start|>assistant<|channel|>final<|message|>") + harmony.encode_text('{"mood": "h')
    assert {harmony.decode([t]) for t in _allowed(processor, again)} <= {"a", "ap", "app", "appy", 'appy"', 'appy",'}


def test_random_scores_under_the_constraint_always_decode_to_a_valid_answer():
    pytest.importorskip("llguidance")
    import torch

    fmt = ResponseFormat.from_user(Verdict)  # bounded answers: random scores must still close the JSON
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        processor, ids = fmt.processor(), _PROMPT + harmony.encode("<|channel|>final<|message|>")
        start = len(ids)
        for _ in range(60):
            scores = processor(torch.tensor([ids]), torch.randn(1, harmony.VOCAB_SIZE, generator=generator))
            ids.append(int(scores.argmax()))
            if ids[-1] == harmony.RETURN:
                break
        assert ids[-1] == harmony.RETURN, harmony.decode(ids[start:])
        assert isinstance(fmt.parse(harmony.decode(ids[start:-1])), Verdict)


def test_constraint_errors_are_clear():
    pytest.importorskip("llguidance")
    with pytest.raises(ValueError, match="llguidance cannot constrain to this schema: regex parse error"):
        ResponseFormat.from_user({"type": "string", "pattern": "(?<=x)y"}).processor()
    # what llguidance cannot enforce is left to parse(): sets, bytes
    ResponseFormat.from_user(dict[str, set[int] | bytes]).processor()
    session = _session('<|channel|>final<|message|>"y"<|return|>')
    with pytest.raises(TurnError, match="^constrain: llguidance cannot constrain to this schema: regex parse error"):
        session.ask("?", response_format={"type": "string", "pattern": "(?<=x)y"}, constrain=True)
    assert session.history == []  # refused before the turn started
    # a grammar llguidance takes but cannot start (4**6 alternatives): its matcher began in error and allowed only
    # <|return|>, so the constrained answer was empty, "not valid JSON"
    crossed = {"type": "object", "allOf": [{"anyOf": [{"required": [f"{tag}{i}"]} for i in range(4)]} for tag in "abcdef"]}
    with pytest.raises(TurnError, match="^constrain: llguidance cannot constrain to this schema: fuel exhausted") as err:
        session.ask("?", response_format=crossed, constrain=True)
    assert "\n" not in str(err.value) and session.history == []
    processor = ResponseFormat.from_user(MOOD).processor()
    forced = _PROMPT + harmony.encode("<|channel|>final<|message|>") + harmony.encode_text("Sure! Here")
    # on one line: llguidance's state followed it, a dozen lines, where the processor is used directly (model.generate)
    with pytest.raises(RuntimeError, match="^constrained decoding lost track of the answer at its top level: 'Sure' "
                                           "does not fit the schema there, which allows '{' next [^\n]*$"):
        _allowed(processor, forced)


class _Constrained(ReplayEngine):
    """A replay that runs the turn's logits processor on the ids so far before each recorded token, as a model in the
    kernel does before it draws one (a token the mask did not allow is seen at the next)."""

    def stream(self, prompt, *, stop, sampling, recorder=None):
        import torch

        ids = list(prompt)
        for token in super().stream(prompt, stop=stop, sampling=sampling, recorder=recorder):
            sampling.logits_processor(torch.tensor([ids]), torch.zeros(1, harmony.VOCAB_SIZE))
            ids.append(token)
            yield token


def test_a_constrained_answer_leaving_the_schema_says_where_and_what_it_allows_and_is_kept(capfd):
    """llguidance's "Parser Error: token "blue" doesn't satisfy the grammar" said neither where in the answer nor what
    the schema wanted there, and printed its own unfinished warning line into the cell (the kernel's stderr)."""
    pytest.importorskip("llguidance")
    schema = {"type": "object", "additionalProperties": False, "required": ["name", "tags"], "properties": {
        "name": {"type": "string"}, "tags": {"type": "array", "items": {"enum": ["red", "green"]}}}}
    session = _session("")
    session.engine = _Constrained('<|channel|>final<|message|>{"name": "Ann", "tags": ["red", "blue"]}<|return|>')
    reply = session.ask("?", response_format=schema, constrain=True)
    assert reply.failed == ("RuntimeError: constrained decoding lost track of the answer at tags.1: 'blue' does not "
                            "fit the schema there, which allows 'g' or 'r' next (the answer so far ends "
                            "'{\"name\": \"Ann\", \"tags\": [\"red\", \"')")
    # the partial answer is shown and kept, in the reply and in the conversation
    assert reply.final == '{"name": "Ann", "tags": ["red", "blue'
    assert session.history[-1].content[0].text == reply.final
    assert capfd.readouterr() == ("", "")


def _session(recording: str) -> Session:
    return Session(ReplayEngine(recording), namespace={}, tools=(), approval="auto", date="2026-11-25")


def test_session_reply_parsed_and_errors():
    good = _session('<|channel|>final<|message|>{"items": ["coffee", "soda"]}<|return|>')
    reply = good.ask("I need coffee and soda", response_format=ShoppingList)
    assert reply.parsed == ShoppingList(items=["coffee", "soda"]) and not reply.errors
    assert "# Response Formats\n\n## ShoppingList\n\n" in good.export(response_format=ShoppingList)

    bad = _session('<|channel|>final<|message|>coffee, soda<|return|>').ask("?", response_format=ShoppingList)
    assert bad.parsed is None and bad.final == "coffee, soda"
    assert bad.errors == ["the final answer is not valid JSON: Expecting value: line 1 column 1 (char 0)"]


def test_an_answer_cut_at_the_token_limit_is_said_to_be_cut():
    """An answer cut off by --max-tokens was refused as "not valid JSON: Expecting ',' delimiter ...", which under
    --constrain read as the constraint failing; the warning now says the answer was cut off."""
    session = _session('<|channel|>final<|message|>{"items": ["coffee", "soda", "tea", "milk"]}<|return|>')
    reply = session.ask("?", response_format=ShoppingList, max_new_tokens=8)
    assert reply.parsed is None and reply.errors[0].startswith("The reply reached the token limit (8 new tokens)")
    assert reply.errors[1].startswith("the final answer is not valid JSON: ")
    assert reply.errors[1].endswith(" (the answer was cut off before its end)")


def test_a_schema_too_large_for_the_context_is_named_as_the_cause():
    """A response format of thousands of fields, no tools offered: the refusal said "(N of them the instructions and
    the tools' definitions: offer fewer tools or smaller types): shorten it"; it names the schema now."""
    engine = ReplayEngine('<|channel|>final<|message|>{}<|return|>')
    engine.context_window = 4096
    session = Session(engine, namespace={}, tools=(), approval="auto", date="2026-11-25")
    wide = pydantic.create_model("Wide", **{f"field_{i}": (int, ...) for i in range(1000)})
    with pytest.raises(TurnError, match=r"^the prompt is [\d,]+ tokens but the model's context is 4,096 tokens \([\d,]+ of them "
                                        r"the response format's schema: ask for a smaller one\)$"):
        session.ask("Fill it in.", response_format=wide)
    started = time.perf_counter()  # a 1,000,000-character const (125,000 tokens) was rendered for 17 s first
    with pytest.raises(TurnError, match=r"^the response format's schema is at least 124,970 tokens, more than the "
                                        r"model's context of 4,096 tokens can hold: ask for a smaller one$"):
        session.ask("Fill it in.", response_format={"type": "string", "const": "x" * 1_000_000})
    assert time.perf_counter() - started < 1
    assert session.history == []


def test_an_answer_that_fails_its_schema_says_so_in_the_view():
    """`%%gptoss --json Schema` with an answer that did not parse showed the answer alone, as a success would be shown:
    only `_gptoss.errors` held why `.parsed` was None. The view now says it under the answer."""
    out = io.StringIO()
    reply = _session('<|channel|>final<|message|>{"items": "coffee"}<|return|>').ask(
        "?", response_format=ShoppingList, view=TextView(out, colour=False))
    assert reply.parsed is None
    assert "[warning] the final answer does not match the schema: items: Input should be a valid array" in out.getvalue()
    out = io.StringIO()
    good = _session('<|channel|>final<|message|>{"items": ["coffee"]}<|return|>').ask(
        "?", response_format=ShoppingList, view=TextView(out, colour=False))
    assert good.parsed == ShoppingList(items=["coffee"]) and "[warning]" not in out.getvalue()


@pytest.mark.slow
def test_constrained_decoding_makes_a_random_model_write_schema_valid_json(random_checkpoint):
    pytest.importorskip("llguidance")
    import torch
    from transformers import GptOssForCausalLM, LogitsProcessorList

    schema = {"type": "object", "additionalProperties": False, "required": ["mood", "ok", "score"],
              "properties": {"mood": {"enum": ["happy", "sad"]}, "ok": {"type": "boolean"},
                             "score": {"type": "integer", "minimum": 0, "maximum": 9}}}
    model = GptOssForCausalLM.from_pretrained(random_checkpoint, dtype=torch.float32).eval()
    prompt = harmony.render([harmony.user_message("Rate it.")]) + harmony.encode("<|channel|>final<|message|>")
    ids = torch.tensor([prompt])
    with torch.no_grad():
        unconstrained = model.generate(ids, max_new_tokens=12, do_sample=False)[0, len(prompt):].tolist()
        out = model.generate(ids, max_new_tokens=40, do_sample=True, top_k=0, pad_token_id=harmony.RETURN,
                             eos_token_id=harmony.RETURN, logits_processor=LogitsProcessorList([ResponseFormat.from_user(schema).processor()]))
    generated = out[0, len(prompt):].tolist()
    with pytest.raises(StructuredOutputError):  # the random model alone writes no JSON
        parse_final(harmony.decode(unconstrained), schema)
    assert generated[-1] == harmony.RETURN
    value = parse_final(harmony.decode(generated[:-1]), schema)
    assert value["mood"] in ("happy", "sad") and 0 <= value["score"] <= 9


class Strict(pydantic.BaseModel):
    x: int

    @pydantic.field_validator("x")
    @classmethod
    def _lookup(cls, value: int) -> int:
        return {1: 1}[value]  # a KeyError: pydantic passes it on instead of reporting a validation error


@pytest.mark.parametrize("schema,final,message", [
    (Strict, '{"x": 2}', "the final answer could not be checked against the schema (KeyError: 2)"),
])  # (a schema dict's $ref to nothing, which failed here, is refused when the format is made)
def test_a_schema_that_fails_while_checking_still_gives_the_reply(schema, final, message):
    s = _session(f"<|channel|>final<|message|>{final}<|return|><|channel|>final<|message|>next<|return|>")
    reply = s.ask("?", response_format=schema)
    assert reply.final == final and reply.parsed is None and reply.errors[0].startswith(message)
    assert s.replies == [reply] and s.ask("again").final == "next"


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="pydantic takes typing.TypedDict from Python 3.12 on")
def test_a_typing_typeddict_is_refused_saying_which_one_works():
    class Film(typing.TypedDict):
        title: str

    with pytest.raises(TurnError) as err:
        _session("").ask("?", response_format=Film)
    assert str(err.value).startswith("response format: Film: unsupported type annotation")
    assert "a TypedDict must come from typing_extensions, not typing" in str(err.value)


class Invoice(pydantic.BaseModel):
    total: Decimal = pydantic.Field(ge=0)
    lines: dict[str, Decimal] = {}


class _FromPath(pydantic.BaseModel):
    x: int = pydantic.Field(validation_alias=pydantic.AliasPath("a", 0))


@pydantic.dataclasses.dataclass
class _FromPaths:
    x: int = pydantic.Field(validation_alias=pydantic.AliasChoices(pydantic.AliasPath("a", 0), pydantic.AliasPath("b", "c")))


class _FromPathOrName(_FromPath):
    model_config = pydantic.ConfigDict(populate_by_name=True)


class _FromPathOrKey(pydantic.BaseModel):
    x: int = pydantic.Field(validation_alias=pydantic.AliasChoices(pydantic.AliasPath("a", 0), "y"))


def test_a_field_read_from_a_path_into_the_answer_is_refused_when_the_format_is_made():
    """`validation_alias=AliasPath("a", 0)` showed the model the field as "x", which the check refused in every answer
    ("a.0: Field required"). Refused at once, in one line; a path with a key or the name as well is taken, as shown."""
    for kind, paths in [(_FromPath, "['a', 0]"), (_FromPaths, "['a', 0]; ['b', 'c']"), (list[_FromPath], "['a', 0]")]:
        with pytest.raises(TypeError) as err:
            ResponseFormat.from_user(kind)
        assert str(err.value).endswith(f": the field 'x' is read from a path into the answer ({paths}), which the "
                                       "schema cannot show; give it an alias (one key) instead")
    with pytest.raises(TypeError, match=r"^_read\.item: the field 'x' is read from a path"):
        tool(_read)
    for kind, key in [(_FromPathOrName, "x"), (_FromPathOrKey, "y")]:
        fmt = ResponseFormat.from_user(kind)
        assert list(fmt.schema["properties"]) == [key] and fmt.parse(f'{{"{key}": 3}}').x == 3


def _read(item: _FromPath) -> int:
    """Reads an item."""
    return item.x


class Priced(pydantic.BaseModel):
    price: Decimal = pydantic.Field(max_digits=5, decimal_places=2)
    rate: Decimal | None = None
    history: list[Decimal] = []


def test_a_decimal_answer_keeps_the_digits_written_and_too_many_digits_is_a_one_line_error():
    """pydantic read a JSON number for a Decimal through a float: 12.30 was Decimal('12.3') and
    0.10000000000000000000000001 Decimal('0.1'); and max_digits/decimal_places were not shown, so the model wrote
    123.456 for 5 digits and 2 places. Digits are kept as written, the limits shown, too many digits a one-line error."""
    shown = ResponseFormat.from_user(Priced).schema["properties"]["price"]
    assert (shown["multipleOf"], shown["exclusiveMinimum"], shown["exclusiveMaximum"]) == (0.01, -1000, 1000)
    pytest.importorskip("llguidance")
    for digits, places in [(5, 2), (30, 20), (60, 0), (None, 400), (40, None)]:  # what llguidance cannot take is not shown
        precise = pydantic.create_model("Precise", v=(Decimal, pydantic.Field(max_digits=digits, decimal_places=places)))
        ResponseFormat.from_user(precise).processor()
    written = '{"price": 12.30, "rate": 0.10000000000000000000000001, "history": [1.50, 2, 1e-30, 123456789012345678.9]}'
    session = _session(f"<|channel|>final<|message|>{{\"price\": 123.456}}<|return|>"
                       f"<|channel|>final<|message|>{written}<|return|>")
    refused = session.ask("?", response_format=Priced)
    assert refused.parsed is None and refused.final == '{"price": 123.456}'
    assert refused.errors == ["the final answer does not match the schema: price: Decimal input should have no more "
                              "than 5 digits in total"]
    parsed = session.ask("again", response_format=Priced).parsed
    assert [str(parsed.price), str(parsed.rate), *map(str, parsed.history)] == [
        "12.30", "0.10000000000000000000000001", "1.50", "2", "1E-30", "123456789012345678.9"]
    assert [str(tool(_pay).call(f'{{"amount": {amount}}}').output) for amount in ("10.10", "0.30000000000000000000001")] \
        == ['"10.10"', '"0.30000000000000000000001"']


Cents = Annotated[Decimal, pydantic.Field(multiple_of=Decimal("0.01"))]


def _charge(amount: Cents) -> str:
    """Charges an amount."""
    return str(amount)


def test_a_decimal_multiple_of_is_checked_exactly_however_large_the_answer():
    """pydantic's multiple_of divides at Decimal's 28 digits: the valid 1e300 'could not be checked (InvalidOperation:
    [<class 'decimal.DivisionImpossible'>])', as a function's argument too. Checked exactly; past 10,000 digits, said."""
    fmt = ResponseFormat.from_user(Cents)
    assert fmt.parse("1e300") == Decimal("1e300") and fmt.parse("123456789012345678901234567890.01").as_tuple()[2] == -2
    with pytest.raises(StructuredOutputError, match="^the final answer does not match the schema: Input should be a "
                                                    "multiple of 0.01$"):
        fmt.parse("1.00005e2")
    with pytest.raises(StructuredOutputError, match=r"^the final answer could not be checked against the schema \("
                                                    r"ValueError: a Decimal is too large for its multiple_of to be "
                                                    r"checked exactly: it is more than 10,000 digits of multiples"):
        fmt.parse('"1e99999"')
    assert tool(_charge).call('{"amount": 1e300}').output == '"1E+300"'


def _pay(amount: Decimal) -> str:
    """Pays an amount."""
    return str(amount)


def test_decimals_are_shown_as_numbers_constrained_and_parsed_exactly():
    fmt = ResponseFormat.from_user(Invoice)  # was "anyOf number | look-ahead pattern": `any`, and no --constrain
    assert fmt.schema["properties"]["total"] == {"type": "number", "minimum": 0.0}
    assert fmt.schema["properties"]["lines"]["additionalProperties"] == {"type": "number"}
    assert fmt.parse('{"total": 0.1, "lines": {"tea": "2.50"}}') == Invoice(total=Decimal("0.1"), lines={"tea": Decimal("2.50")})
    pytest.importorskip("llguidance")
    fmt.processor()


class Cat(pydantic.BaseModel):
    kind: Literal["cat"]
    lives: int


class Dog(pydantic.BaseModel):
    kind: Literal["dog"]


class Owner(pydantic.BaseModel):
    pet: typing.Annotated[Cat | Dog, pydantic.Field(discriminator="kind")]


def test_a_discriminated_union_names_no_inlined_definition():
    schema = ResponseFormat.from_user(Owner).schema
    assert "$defs" not in json.dumps(schema) and schema["properties"]["pet"]["discriminator"] == {"propertyName": "kind"}
    assert ResponseFormat.from_user(Owner).parse('{"pet": {"kind": "cat", "lives": 9}}') == Owner(pet=Cat(kind="cat", lives=9))


@pytest.mark.parametrize("text", [
    'Here is the list:\n```json\n{"items": ["eggs"]}\n```\nAnything else?',
    '```JSON\n{"items": ["eggs"]}\n```',
    '```json {"items": ["eggs"]}```',
    '{"items": ["eggs"]}\n\nLet me know if you need more.',
    '```json\n{"items": ["eggs"]}\n```\n(prices vary)',
    '```json\r\n{"items": ["eggs"]}\r\n```',       # Windows line ends
    'Here is the list:\n```json\n{"items": ["eggs"]}',  # the fence never closed: the answer ended first
    # prose before bare JSON was "not valid JSON: Expecting value: line 1 column 1 (char 0)"
    'Here is the list: {"items": ["eggs"]}',
    'Sure! [Shopping]\n\n{"items": ["eggs"]}\nEnjoy.',
])
def test_prose_around_the_json_answer_is_ignored(text):
    assert parse_final(text, ShoppingList) == ShoppingList(items=["eggs"])
    assert parse_final(text, {"type": "object"}) == {"items": ["eggs"]}


_LONG_ITEM = "e" * 2000  # an answer longer than the first read of it


@pytest.mark.parametrize("text,items", [
    ('Using {x} as asked: {"items": ["eggs"]}', ["eggs"]),
    ('See [the docs] and {"note": 1 oops}, then: {"items": ["eggs"]}', ["eggs"]),
    ('Items [1, 2] first, then: {"items": ["eggs"]}', ["eggs"]),
    ('The format {"items": [...]} filled in:\n{"items": ["eggs"]}', ["eggs"]),
    (f'Using {{x}}: {{"items": ["{_LONG_ITEM}"]}}', [_LONG_ITEM]),
], ids=["word", "broken-json", "array-first", "template", "long-answer"])
def test_braces_in_prose_before_the_json_answer_are_passed_over(text, items):
    """The answer's JSON was read only from the text's first `{` and first `[`: prose with a brace or a bracket before
    it ("Using {x} as asked: ...") was refused as "not valid JSON: Expecting value" for a valid answer."""
    assert parse_final(text, ShoppingList) == ShoppingList(items=items)
    assert parse_final(text, {"type": "object"}) == {"items": items}


@pytest.mark.parametrize("prose", ["{x} ", '{"" ', "[a] ", "{"], ids=["words", "keys", "brackets", "braces"])
def test_an_answer_after_a_hundred_thousand_braces_of_prose_is_found_quickly(prose):
    text = prose * (100_000 // len(prose)) + '\n{"items": ["eggs"]}'
    started = time.perf_counter()
    assert parse_final(text, ShoppingList) == ShoppingList(items=["eggs"])
    assert time.perf_counter() - started < 2  # 0.15 s here; json's error counted lines from the start: 4 s


def test_an_answer_after_twenty_thousand_fences_is_found_quickly():
    """A model looping on "```json" (a long --max-tokens) held the kernel 13 s after the turn: each fence searched the
    rest of the text again for a `{` or `[`."""
    text = "```json\n" * 20_000 + '{"items": ["eggs"]}'
    started = time.perf_counter()
    assert parse_final(text, ShoppingList) == ShoppingList(items=["eggs"])
    assert time.perf_counter() - started < 2  # 0.1 s here


def test_an_answer_with_a_fence_opened_before_a_long_run_of_blanks_is_read_quickly():
    """The fence's pattern read the blanks after ``` two ways at once: a run of 20,000 spaces after one (a model padding
    its answer) held the kernel 13 s, uninterruptible, before the answer was read; 40,000 a minute."""
    text = '{"items": ["eggs"]}\n```' + " " * 20_000 + "."
    started = time.perf_counter()
    assert parse_final(text, ShoppingList) == ShoppingList(items=["eggs"])
    assert parse_final(text, {"type": "object"}) == {"items": ["eggs"]}
    assert time.perf_counter() - started < 1  # 0.01 s here


class _Count(pydantic.BaseModel):
    count: int


_FENCED_1, _FENCED_2 = '```json\n{"count": 1}\n```', '```json\n{"count": 2}\n```'


@pytest.mark.parametrize("text", [
    '{"count": 1}\n\n{"count": 2}',
    f"{_FENCED_1}\nCorrection:\n{_FENCED_2}",
    f'{{"count": 1}}\nSorry, I miscounted:\n{_FENCED_2}',
    f'{_FENCED_1}\nActually: {{"count": 2}}',
    '{"count": 1} or rather {"count": 2}, as in [1, 2]',
], ids=["bare", "fenced", "bare-then-fenced", "fenced-then-bare", "prose-after"])
def test_of_two_json_answers_the_last_the_model_wrote_is_the_answer(text):
    """The first JSON in the answer was taken, `count=1`, where the model went on to correct it to 2 (fenced or not):
    the last JSON value of the schema's type is the answer the model settled on."""
    assert parse_final(text, _Count) == _Count(count=2)
    assert parse_final(text, _Count.model_json_schema()) == {"count": 2}


def test_of_two_fenced_scalar_answers_the_last_is_the_answer():
    assert parse_final("```json\n1\n```\nNo, wait:\n```json\n2\n```", int) == 2
    assert parse_final('```json\n"a ``` b"\n```', str) == "a ``` b"  # a fence's text in the string


def test_an_answer_that_is_json_is_not_searched_for_json_inside_it():
    assert parse_final('"use {} for an empty object"', str) == "use {} for an empty object"
    with pytest.raises(StructuredOutputError, match="does not match the schema: Input should be a valid integer"):
        parse_final('"[1]"', int)


def test_a_json_answer_quoting_a_fence_is_kept_whole():
    assert parse_final('{"md": "```json {\\"a\\": 1}```"}', {"type": "object"}) == {"md": '```json {"a": 1}```'}


class _Snippet(pydantic.BaseModel):
    code: str


_QUOTES_A_FENCE = json.dumps({"code": "```python\nprint(1)\n```"})


@pytest.mark.parametrize("text", [
    f"```json\n{_QUOTES_A_FENCE}\n```",
    f"Here is the snippet:\n```json\n{_QUOTES_A_FENCE}\n```\nRun it with python.",
    f"Here is the snippet: {_QUOTES_A_FENCE}",
    f"Items [1, 2] first, then:\n```json\n{_QUOTES_A_FENCE}\n```",
])
def test_an_answer_whose_text_holds_a_code_fence_is_read_whole_around_prose_and_fences(text):
    """A code snippet in Markdown inside the JSON ended the answer's ```json fence at the snippet's own ``` (and was
    taken for a fence without one): "not valid JSON: Unterminated string", `.parsed` None, for a valid answer."""
    assert parse_final(text, _Snippet) == _Snippet(code="```python\nprint(1)\n```")
    assert parse_final(text, {"type": "object"}) == {"code": "```python\nprint(1)\n```"}


@pytest.mark.parametrize("language", ["jsonc", "javascript", "JSON5", "python"])
def test_a_fence_of_another_language_holding_the_json_answer_is_read(language):
    """A fence opened as ```jsonc (or another language) was not taken for one: its closing ``` was, and the prose after
    it was read as the answer, "not valid JSON: Expecting value", for a valid answer."""
    text = f'Here it is:\n```{language}\n{{"items": ["eggs"]}}\n```\nEnjoy your meal.'
    assert parse_final(text, ShoppingList) == ShoppingList(items=["eggs"])


def test_nan_and_infinity_are_not_json_for_a_schema_dict():
    for constant in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(StructuredOutputError, match=f"not valid JSON: {constant} is not a JSON value"):
            parse_final(constant, {"type": "number"})


@pytest.mark.parametrize("given,name", [
    ("my schema", "my_schema"), ("Ünïcode résumé", "Unicode_resume"), ("日本語", "response"), ("!!!", "response"),
    ("x" * 100, "x" * 64),
])
def test_section_names_are_readable_ascii(given, name):
    assert response_format_section(PLAIN, name=given)["name"] == name
    assert response_format_section({**PLAIN, "title": given})["name"] == name
    assert response_format_section({**PLAIN, "title": ""})["name"] == "response"


def test_an_uncompilable_schema_says_why_on_one_line():
    pytest.importorskip("llguidance")
    with pytest.raises(ValueError) as err:
        ResponseFormat.from_user({"type": "string", "pattern": "(?<=x)y"}).processor()
    assert "\n" not in str(err.value) and "look-around" in str(err.value) and "not supported" in str(err.value)


def test_constrain_without_llguidance_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "llguidance", None)
    session = _session('<|channel|>final<|message|>{}<|return|>')
    with pytest.raises(TurnError, match=r"^constrain: constrained decoding needs llguidance: pip install llguidance$"):
        session.ask("?", response_format=ShoppingList, constrain=True)
    assert session.history == []


# ---------------------------------------------------------------- hostile schemas and answers (fuzzing)

class _Deadline(Exception):
    pass


@contextlib.contextmanager
def _within(seconds):
    """Fail (instead of hanging the test run) when the block takes longer than `seconds`."""
    def expire(*_):
        raise _Deadline(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("text", ["1" * 5000, '{"n": ' + "9" * 5000 + "}"], ids=["long-int", "long-int-inside"])
def test_an_answer_with_too_long_a_number_is_not_valid_json(text):
    with pytest.raises(StructuredOutputError, match="^the final answer is not valid JSON: "):
        parse_final(text, {"type": ["array", "object", "integer"]})


@pytest.mark.parametrize("text", ['{"s": "\\ud800"}', '{"s": "ok \\uDC00"}', '{"\\ud83d": "a"}', '{"s": "\ud800"}'],
                         ids=["escaped high", "escaped low", "key", "as itself"])
@pytest.mark.parametrize("kind", [{"type": "object"}, dict[str, str]], ids=["schema dict", "typed"])
def test_a_lone_surrogate_is_refused_by_every_format_in_one_line(text, kind):
    """A schema dict's answer `{"s": "\\ud800"}` was a dict holding half a UTF-16 pair, which no widget or JSON export
    can encode later, where typed formats refused it: both refuse it, in the same words; a whole pair is text."""
    with pytest.raises(StructuredOutputError, match=r"^the final answer is not valid JSON: the string .* holds a lone "
                                                    r"surrogate '\\ud[89a-f][0-9a-f]{2}' \(half of a UTF-16 pair\)") as err:
        parse_final(text, kind)
    assert "\n" not in str(err.value)
    assert parse_final('{"s": "\\ud83d\\ude00 \\\\ud800"}', kind) == {"s": "\U0001f600 \\ud800"}


@pytest.mark.parametrize("text", ["1e999999", "-1e400", '{"n": 1E+9999}'])
def test_a_number_too_large_for_a_float_is_refused_like_infinity(text):
    with pytest.raises(StructuredOutputError, match="^the final answer is not valid JSON: .*too large"):
        parse_final(text, {"type": ["number", "object"]})
    assert parse_final("1e308", {"type": "number"}) == 1e308


@pytest.mark.parametrize("text", ["1e-999999", "-1E-400", "1.5e-320", '{"n": 0.00e-5, "m": 1e-400}'])
def test_a_number_too_small_for_a_float_is_refused_not_read_as_zero(text):
    """1e-999999 with multipleOf 0.01 was read as 0.0 and accepted: the answer silently changed."""
    with pytest.raises(StructuredOutputError, match=r"^the final answer is not valid JSON: the number \S+ is too small"
                                                    r" \(a float reads it as -?[0-9.e+-]+\)$"):
        parse_final(text, {"type": ["number", "object"], "multipleOf": 0.01})
    assert parse_final("0.0e-999", {"type": "number", "multipleOf": 0.01}) == 0
    assert parse_final("2.3e-308", {"type": "number"}) == 2.3e-308


class _Reading(pydantic.BaseModel):
    value: float


@dataclasses.dataclass
class _Sample:
    value: float


@pytest.mark.parametrize("kind", [_Reading, _Sample, float], ids=["pydantic", "dataclass", "float"])
@pytest.mark.parametrize("number", ["1e999", "-1e400", "1" + "0" * 400, "-1" + "0" * 400],
                         ids=["1e999", "-1e400", "10**400", "-10**400"])
def test_a_typed_format_refuses_a_number_too_large_for_a_float(kind, number):
    """pydantic's JSON parser read 1e999 as inf and the Reply carried value=inf; refused as the schema-dict path does."""
    text = number if kind is float else '{"value": %s}' % number
    with pytest.raises(StructuredOutputError, match="^the final answer is not valid JSON: .*too large"):
        ResponseFormat.from_user(kind).parse(text)
    fine = ResponseFormat.from_user(kind).parse("1e308" if kind is float else '{"value": 1e308}')
    assert (fine if kind is float else fine.value) == 1e308


@pytest.mark.parametrize("kind", [_Reading, _Sample, float], ids=["pydantic", "dataclass", "float"])
@pytest.mark.parametrize("number", ['"nan"', '"-Infinity"', '"inf"'])
def test_a_typed_format_refuses_nan_or_infinity_written_as_a_string(kind, number):
    """pydantic's lax mode reads the string "nan" as a float NaN: the Reply carried value=nan, which JSON has not."""
    text = number if kind is float else '{"value": %s}' % number
    with pytest.raises(StructuredOutputError, match="^the final answer does not match the schema: .*valid number"):
        ResponseFormat.from_user(kind).parse(text)
    assert ResponseFormat.from_user(kind).parse("2.5" if kind is float else '{"value": 2.5}') is not None


def test_a_mismatch_is_one_short_line_however_long_the_enum_or_the_answer():
    enum = {"enum": list(range(100_000))}
    with pytest.raises(StructuredOutputError, match="^the final answer does not match the schema: answer: 'x' is not one of") as err:
        parse_final('"x"', enum)
    assert len(str(err.value)) <= 400
    with pytest.raises(StructuredOutputError) as err:
        parse_final(json.dumps({"line\nbreak" * 1000: "x" * 100_000}), {"type": "object", "additionalProperties": {"type": "integer"}})
    assert len(str(err.value)) <= 400 and "\n" not in str(err.value)


def test_a_backtracking_pattern_cannot_hang_the_answer_check():
    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": "^(a+)+$"}}}
    with _within(5):
        with pytest.raises(StructuredOutputError, match="does not match '\\^\\(a\\+\\)\\+\\$'"):
            parse_final('{"code": "' + "a" * 60 + '!"}', schema)
        assert parse_final('{"code": "aaaa"}', schema) == {"code": "aaaa"}
        keys = {"type": "object", "patternProperties": {"^(a+)+$": {"type": "integer"}}, "additionalProperties": False}
        with pytest.raises(StructuredOutputError, match="does not match any of the regexes: '\\^\\(a\\+\\)\\+\\$'"):
            parse_final('{"' + "a" * 60 + '!": 1}', keys)
        with pytest.raises(StructuredOutputError, match="aaaa: 'x' is not of type 'integer'"):
            parse_final('{"aaaa": "x"}', keys)


def test_a_schema_dicts_dollar_is_the_end_of_the_text_as_json_schema_and_pydantic_read_it():
    # Python's `$` also matches before a last newline: "abc\n" passed ^[a-z]+$ in a schema dict, which the same
    # pattern on a pydantic field (and constrained decoding, and JSON Schema's own dialect) refuses
    schema = {"type": "object", "properties": {"name": {"type": "string", "pattern": "^[a-z]+$"}},
              "patternProperties": {"^x_[a-z]+$": {"type": "integer"}}, "additionalProperties": False}
    assert parse_final('{"name": "abc", "x_n": 1}', schema) == {"name": "abc", "x_n": 1}
    with pytest.raises(StructuredOutputError, match=r"name: 'abc\\n' does not match '\^\[a-z\]\+\$'"):
        parse_final('{"name": "abc\\n"}', schema)
    with pytest.raises(StructuredOutputError, match=r"'x_n\\n' does not match any of the regexes"):
        parse_final('{"x_n\\n": 1}', schema)
    price = {"type": "string", "pattern": r"^\$[0-9]+[$]?$"}  # an escaped or bracketed $ is a dollar sign
    assert parse_final('"$12$"', price) == "$12$"


def test_unevaluated_properties_with_pattern_properties_is_refused_not_left_to_hang():
    """jsonschema checks patternProperties for unevaluatedProperties with `re` and no time limit: a ^(a+)+$ key
    pattern and a long key held the kernel; such a schema is refused when given, in one line."""
    schema = {"type": "object", "patternProperties": {"^(a+)+$": {"type": "integer"}},
              "unevaluatedProperties": False}
    with pytest.raises(ValueError, match="^not supported: unevaluatedProperties with patternProperties"):
        ResponseFormat.from_user(schema)
    nested = {"type": "object", "properties": {"inner": schema}}
    with pytest.raises(ValueError, match="^not supported: unevaluatedProperties with patternProperties"):
        ResponseFormat.from_user(nested)
    assert ResponseFormat.from_user({"type": "object", "unevaluatedProperties": False}).parse("{}") == {}


@pytest.mark.parametrize("schema", [
    {"$schema": 5, "type": "object"},
    {"$schema": ["x"], "type": "object"},
    {"type": "string", "default": {"a", "b"}},
    {"type": "string", "examples": [datetime.date(2026, 11, 25)]},
    {"type": "integer", "maximum": 10 ** 5000},
    {"type": "number", "maximum": math.inf},  # shown to the model as `"maximum":Infinity`, which is not JSON
], ids=["schema-int", "schema-list", "set", "date", "huge-int", "infinity"])
def test_a_hostile_schema_dict_is_a_one_line_turn_error(schema):
    with pytest.raises(ValueError, match="^not a valid JSON schema"):
        ResponseFormat.from_user(schema)
    session = _session('<|channel|>final<|message|>{}<|return|>')
    with pytest.raises(TurnError, match="^response format: not a valid JSON schema") as err:
        session.ask("?", response_format=schema)
    assert "\n" not in str(err.value) and len(str(err.value)) < 400


@pytest.mark.parametrize("schema", [
    {"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
    {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
    {"$ref": "#"},
    {"type": "object", "anyOf": [{"$ref": "#"}, {"required": ["a"]}]},
    {"$defs": {"a": {"not": {"allOf": [{"$ref": "#/$defs/a"}]}}}, "properties": {"x": {"$ref": "#/$defs/a"}}},
], ids=["defs", "two defs", "root", "anyOf", "not allOf inside a property"])
def test_a_schema_that_refers_to_itself_in_place_is_refused_when_the_format_is_made(schema):
    """`{"$ref": "#"}` was taken, then every answer failed with "could not be checked against the schema
    (RecursionError: ...)": jsonschema follows such a loop for ever. It is refused at once, in one line."""
    with pytest.raises(ValueError, match=r"^not supported: #\S* refers back to itself \(#\S* -> .*#\S*\) without "):
        ResponseFormat.from_user(schema)
    session = _session('<|channel|>final<|message|>{"a": 1}<|return|>')
    with pytest.raises(TurnError, match="^response format: not supported: ") as err:
        session.ask("?", response_format=schema)
    assert "\n" not in str(err.value) and len(str(err.value)) < 400


@pytest.mark.parametrize("schema, where, missing, defined", [
    ({"$ref": "#/$defs/Missing"}, "#", "#/$defs/Missing", ""),
    ({"type": "object", "properties": {"a": {"$ref": "#/$defs/Itme"}}, "$defs": {"Item": {"type": "string"}}},
     "#/properties/a", "#/$defs/Itme", " (it defines Item)"),
    ({"$defs": {"a": {"items": {"$ref": "#/$defs/b"}}}, "$ref": "#/$defs/a"}, "#/$defs/a/items", "#/$defs/b", " (it defines a)"),
    ({"type": "object", "properties": {"a": {"$ref": "#anchor"}}}, "#/properties/a", "#anchor", ""),
], ids=["missing", "misspelt", "inside a definition", "anchor"])
def test_a_reference_to_nothing_in_the_schema_is_refused_when_the_format_is_made(schema, where, missing, defined):
    """`{"$ref": "#/$defs/Missing"}` was taken, then every answer failed with "could not be checked against the schema
    (Unresolvable: PointerToNowhere ...)". It is refused at once, in one line naming the reference."""
    said = f"not a valid JSON schema: {where} refers to '{missing}', which is not in the schema{defined}"
    with pytest.raises(ValueError) as err:
        ResponseFormat.from_user(schema)
    assert str(err.value) == said
    session = _session('<|channel|>final<|message|>{"a": "x"}<|return|>')
    with pytest.raises(TurnError) as err:
        session.ask("?", response_format=schema)
    assert str(err.value) == f"response format: {said}"


def test_multiple_of_a_decimal_fraction_takes_the_multiples_written():
    """jsonschema divides floats: 0.3 was "not a multiple of 0.1" and 0.07 not one of 0.01, answers constrained
    decoding writes, so a price schema refused most prices. Multiples are judged as the numbers are written."""
    schema = {"type": "object", "properties": {"price": {"type": "number", "multipleOf": 0.01},
                                               "tenth": {"multipleOf": 0.1}, "dozen": {"type": "integer", "multipleOf": 12}}}
    fmt = ResponseFormat.from_user(schema)
    answer = '{"price": 0.07, "tenth": 0.3, "dozen": 36}'
    assert fmt.parse(answer) == json.loads(answer)
    assert fmt.parse('{"price": 1.15, "tenth": 0.7, "dozen": 120}') == {"price": 1.15, "tenth": 0.7, "dozen": 120}
    for wrong, said in [('{"price": 0.001}', "price: 0.001 is not a multiple of 0.01"), ('{"tenth": 0.35}', "tenth: 0.35 is "
                        "not a multiple of 0.1"), ('{"dozen": 30}', "dozen: 30 is not a multiple of 12")]:
        with pytest.raises(StructuredOutputError) as err:
            fmt.parse(wrong)
        assert str(err.value) == f"the final answer does not match the schema: {said}"


def test_references_found_through_ids_and_anchors_are_taken():
    """What a reference finds through a nested `$id`, an `$anchor`, a `$dynamicAnchor` or draft 7's `definitions`
    is in the schema: such schemas still check answers."""
    nested = {"$id": "https://example.com/root", "$ref": "#/$defs/s",
              "$defs": {"s": {"$id": "sub/", "$defs": {"x": {"type": "string"}}, "properties": {"a": {"$ref": "#/$defs/x"}}}}}
    anchored = {"$anchor": "top", "type": "object", "properties": {"a": {"anyOf": [{"type": "string"}, {"$ref": "#top"}]}}}
    dynamic = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$dynamicAnchor": "n", "type": "object",
               "properties": {"a": {"anyOf": [{"type": "string"}, {"$dynamicRef": "#n"}]}}}
    draft7 = {"$schema": "http://json-schema.org/draft-07/schema#", "definitions": {"x": {"type": "string"}},
              "type": "object", "properties": {"a": {"$ref": "#/definitions/x"}}}
    for schema in (nested, anchored, dynamic, draft7):
        assert ResponseFormat.from_user(schema).parse('{"a": "x"}') == {"a": "x"}
        with pytest.raises(StructuredOutputError, match="^the final answer does not match the schema: a: "):
            ResponseFormat.from_user(schema).parse('{"a": 3}')


@pytest.mark.parametrize("length", [100, 600])
def test_a_long_chain_of_references_is_checked_or_refused_when_the_format_is_made(length):
    """A chain of 600 `$ref`s (#/$defs/a0 -> a1 -> ... -> a string) was taken, then every answer failed with "could not
    be checked against the schema (RecursionError: ...)"; past 200 it is refused at once, one of 100 checks answers."""
    chain = {"$defs": {f"a{i}": {"$ref": f"#/$defs/a{i + 1}"} for i in range(length)} | {f"a{length}": {"type": "string"}},
             "$ref": "#/$defs/a0"}
    if length > 200:
        with pytest.raises(ValueError, match=r"^not supported: more than 200 references \(\$ref, allOf ...\) in a row"):
            ResponseFormat.from_user(chain)
    else:
        assert parse_final('"x"', chain) == "x"
        with pytest.raises(StructuredOutputError, match="is not of type 'string'"):
            parse_final("3", chain)


def test_a_recursive_schema_that_goes_into_the_answer_checks_answers():
    """A tree (children: array of `$ref: "#"`) and a linked list through `$defs` still check answers both ways."""
    tree = {"type": "object", "properties": {"v": {"type": "integer"}, "children": {"type": "array", "items": {"$ref": "#"}}},
            "required": ["v"]}
    chain = {"$defs": {"n": {"type": "object", "properties": {"next": {"anyOf": [{"$ref": "#/$defs/n"}, {"type": "null"}]}}}},
             "$ref": "#/$defs/n"}
    assert parse_final('{"v": 1, "children": [{"v": 2, "children": []}]}', tree)["children"][0]["v"] == 2
    with pytest.raises(StructuredOutputError, match="children.0: 'v' is a required property"):
        parse_final('{"v": 1, "children": [{}]}', tree)
    assert parse_final('{"next": {"next": null}}', chain) == {"next": {"next": None}}
    with pytest.raises(StructuredOutputError):
        parse_final('{"next": {"next": 3}}', chain)


_JSON = hypothesis.strategies.recursive(
    hypothesis.strategies.none() | hypothesis.strategies.booleans() | hypothesis.strategies.integers()
    | hypothesis.strategies.floats(allow_nan=False, allow_infinity=False) | hypothesis.strategies.text(max_size=20),
    lambda inner: hypothesis.strategies.lists(inner, max_size=5)
    | hypothesis.strategies.dictionaries(hypothesis.strategies.text(max_size=8), inner, max_size=5),
    max_leaves=30,
)
_NOISE = hypothesis.strategies.sampled_from(
    ["", "\ufeff", "```json\n", "```", "NaN", "Infinity", "1e999", "[" * 3000, "}", ",", '"a":1,"a":2', " \n", "\ud800",
     "Here is the answer:", "{", "\x00", "-", "0x1F", "01", "1" * 5000])


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(_JSON, hypothesis.strategies.lists(_NOISE, max_size=4), hypothesis.strategies.integers(0, 3))
def test_any_final_answer_parses_or_is_one_line_error(value, noise, where):
    """Whatever the model writes as its final answer (valid JSON, broken JSON, prose, fences, huge numbers,
    deep nesting, a BOM ...), `parse` gives the value or a one-line StructuredOutputError, for a schema dict
    and for a type alike; a valid JSON answer of the right type is given back as it was written."""
    text = json.dumps(value)
    if noise:
        text = "".join(noise[:where]) + text + "".join(noise[where:])
    for fmt in (ResponseFormat.from_user({"type": ["object", "array", "string", "number", "integer", "boolean", "null"]}),
                ResponseFormat.from_user(typing.Any)):
        try:
            parsed = fmt.parse(text)
        except StructuredOutputError as err:
            assert "\n" not in str(err) and len(str(err)) <= 600
        else:
            if not noise:
                assert parsed == value


class Search(pydantic.BaseModel):
    query: str
    within: float = math.inf


def test_a_nan_or_infinite_default_is_not_shown_to_the_model():
    # the section showed `"default":Infinity`, which is not JSON (the renderer refuses it in function parameters)
    schema = ResponseFormat.from_user(Search).schema
    assert schema["properties"]["within"] == {"type": "number"}
    json.dumps(schema, allow_nan=False)
    session = _session('<|channel|>final<|message|>{"query": "cafés"}<|return|>')
    reply = session.ask("Find cafés", response_format=Search)
    assert (reply.parsed, reply.errors) == (Search(query="cafés"), [])
    assert '"within":{"type":"number"}' in session.export(response_format=Search)


class _Table:
    def __repr__(self) -> str:
        return "   a  b\n" + "0  1  2\n" * 5000


class _Loud:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


@pytest.mark.parametrize("wrong,shown", [
    (_Table(), "not a b 0 1 ... 1 2 0 1 2"),  # --json df: the whole frame was the error message
    ("x" * 5000, "not 'xxxxxx"),
    (_Loud(), "not <_Loud instance at"),  # its repr's RuntimeError came out of `ask` instead of a TurnError
    ('{"type": "object"}', """not '{"type": "object"}' (JSON text? pass json.loads(text))"""),
    # `--json m` for `m = ShoppingList(...)`: the class was meant
    (ShoppingList(items=["tea"]), "not ShoppingList(...], store=None) (an instance: pass its class, ShoppingList)"),
    (Point(1.0), "not Point(x=1.0, y=0.0) (an instance: pass its class, Point)"),
], ids=["many-lines", "long-text", "broken-repr", "json-text", "model-instance", "dataclass-instance"])
def test_a_wrong_response_format_is_named_on_one_short_line(wrong, shown):
    with pytest.raises(TurnError) as err:
        _session('<|channel|>final<|message|>{}<|return|>').ask("?", response_format=wrong)
    message = str(err.value)
    assert message.startswith("response format: expected a pydantic model") and shown in message, message
    assert "\n" not in message and len(message) < 200


class Readings(pydantic.BaseModel):
    values: list[int]


def test_an_answer_with_many_mismatches_is_one_short_error():
    # 300 wrong items made one error line of 24 000 characters in reply.errors (and the view)
    reply = _session(f'<|channel|>final<|message|>{json.dumps({"values": ["a"] * 300})}<|return|>').ask(
        "?", response_format=Readings)
    [error] = reply.errors
    assert error.startswith("the final answer does not match the schema: values.0: Input should be a valid integer")
    assert error.endswith("; and 297 more errors") and len(error) < 1000, len(error)


class _Purchase(pydantic.BaseModel):
    count: int
    paid: bool
    price: float


@pytest.mark.parametrize("answer,error", [
    ('{"count": true, "paid": true, "price": 2.5}', "count: Input should be a valid integer"),
    ('{"count": "3", "paid": true, "price": 2.5}', "count: Input should be a valid integer"),
    ('{"count": 3, "paid": "yes", "price": 2.5}', "paid: Input should be a valid boolean"),
    ('{"count": 3, "paid": 1, "price": 2.5}', "paid: Input should be a valid boolean"),
    ('{"count": 3, "paid": true, "price": "2.5"}', "price: Input should be a valid number"),
])
def test_a_typed_answer_of_another_json_type_than_the_schema_shows_is_refused_as_a_schema_dict_refuses_it(answer, error):
    """pydantic's lax mode read `"paid": "yes"` as True and `"count": true` as 1: `.parsed` held values the model never
    wrote, with no warning, where the same schema as a dict (and a function's arguments) refused the answer."""
    reply = _session(f"<|channel|>final<|message|>{answer}<|return|>").ask("Order?", response_format=_Purchase)
    assert reply.parsed is None
    assert reply.errors == [f"the final answer does not match the schema: {error}"]
    with pytest.raises(StructuredOutputError):
        parse_final(answer, _Purchase.model_json_schema())
    assert parse_final('{"count": 3, "paid": true, "price": 2}', _Purchase) == _Purchase(count=3, paid=True, price=2.0)


class _Size(enum.IntEnum):
    SMALL = 1
    LARGE = 3


class _Box(pydantic.BaseModel):
    count: int
    size: _Size
    sides: list[int]


@pytest.mark.parametrize("number", ["3.0", "3e0", "30e-1", "3.000"])
def test_an_integer_written_with_a_zero_fraction_is_an_integer_for_a_type_as_for_a_schema_dict(number):
    """Strict validation refused `{"count": 3.0}` for `count: int` ("Input should be a valid integer"), where the same
    schema as a dict took it: JSON Schema counts 3.0 as an integer. 3.5, true and "3" stay refused."""
    answer = '{"count": %s, "size": %s, "sides": [%s, 4]}' % (number, number, number)
    assert parse_final(answer, _Box) == _Box(count=3, size=_Size.LARGE, sides=[3, 4])
    assert type(parse_final(answer, _Box).count) is int
    assert parse_final(answer, _Box.model_json_schema())["count"] == 3
    for wrong in ("3.5", "true", '"3"'):
        with pytest.raises(StructuredOutputError, match="count: Input should be a valid integer"):
            parse_final('{"count": %s, "size": 3, "sides": []}' % wrong, _Box)


@pytest.mark.parametrize("written", ["1e23", "1e300", "-1e23"])
def test_a_large_whole_number_written_with_an_exponent_is_the_integer_written(written):
    """`count: int` read the model's 1e23 as 99999999999999991611392, the float nearest 10**23 made an int."""
    assert parse_final(written, int) == Decimal(written)


class _Whole(pydantic.BaseModel):
    x: int
    y: int


class _Fractional(pydantic.BaseModel):
    x: float
    y: str


class _Tree(pydantic.BaseModel):
    x: int
    kids: list[_Tree] = []


class _Real(pydantic.BaseModel):
    x: float


def _typed(value):
    """A parsed value with the type of every number in it, to compare 3.0 and 3 apart."""
    if isinstance(value, pydantic.BaseModel):
        return type(value).__name__, _typed(value.model_dump())
    if isinstance(value, dict):
        return {key: _typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_typed(item) for item in value]
    return type(value).__name__, value


@pytest.mark.parametrize("kind, answer", [
    (int | float, "3.0"), (int | float, "1e2"), (int | float, "3"), (typing.Optional[int | float], "3.0"),
    (Decimal | int, "3.0"), (int | Decimal, "3.0"), (list[int | float], "[1, 1.0, 2.5]"),
    (dict[str, int | float], '{"a": 1.0, "b": 1}'), (list[int] | list[float], "[1.0, 2]"),
    (_Whole | _Fractional, '{"x": 3.0, "y": "s"}'), (_Tree | _Real, '{"x": 3.0}'), (str | int, '"3"'), (bool | int, "true"), (int | bool, "1"),
])
def test_a_number_in_a_union_is_read_as_the_model_wrote_it(kind, answer):
    """`int | float` read the model's 3.0 as the int 3 (reading 3.0 as an integer went before the float choice);
    a union that takes the answer as written gives what pydantic's strict check gives, 3.0 a float."""
    assert _typed(parse_final(answer, kind)) == _typed(pydantic.TypeAdapter(kind).validate_json(answer, strict=True))


def test_a_whole_number_in_a_union_is_an_integer_when_no_choice_takes_it_as_written():
    """3.0 stays an integer where only an integer choice can take it, inside a union as alone; errors read as before."""
    assert _typed(parse_final("3.0", int | str)) == ("int", 3)
    assert _typed(parse_final('{"x": 3.0, "y": 4.0}', _Whole | _Fractional)) == ("_Whole", {"x": ("int", 3),
                                                                                           "y": ("int", 4)})
    with pytest.raises(StructuredOutputError) as refused:
        parse_final("3.5", int | str)
    assert str(refused.value) == ("the final answer does not match the schema: int: Input should be a valid "
                                  "integer; str: Input should be a valid string")


@pytest.mark.parametrize("kind", [dict[int, str], dict[_Size, str], dict[typing.Annotated[int, pydantic.Field(gt=0)], str],
                                  dict[str, dict[int, str]]], ids=["int", "IntEnum", "constrained int", "nested"])
def test_a_dict_with_number_keys_takes_the_keys_json_writes(kind):
    """`dict[int, str]` refused every answer, `{"1": "a"}` as much as any ("1.[key]: Input should be a valid integer"):
    JSON's keys are text, which pydantic reads as numbers, but the checks of values the keys were given did not."""
    answer = '{"1": {"3": "a"}}' if kind == dict[str, dict[int, str]] else '{"1": "a", "3": "b"}'
    assert _typed(parse_final(answer, kind)) == _typed(pydantic.TypeAdapter(kind).validate_json(answer, strict=True))
    with pytest.raises(StructuredOutputError, match=r"\[key\]"):
        parse_final('{"x": {"y": "a"}}' if kind == dict[str, dict[int, str]] else '{"x": "a"}', kind)


@pytest.mark.parametrize("kind, keys", [
    (dict[int, str], ["1", "-12", "0"]), (dict[_Size, str], ["1", "3"]), (dict[typing.Annotated[int, pydantic.Field(gt=0)], str], ["1", "30"]),
    (dict[float, str], ["1.5", "-2000", "7"]), (dict[Decimal, str], ["0.25", "100"]), (dict[bool, str], ["true", "false"]),
], ids=["int", "IntEnum", "positive int", "float", "Decimal", "bool"])
def test_the_keys_a_dict_is_shown_with_are_keys_its_check_takes(kind, keys):
    """`dict[IntEnum, str]` showed the model `propertyNames: {"enum": [1, 2], "type": "integer"}`, which no JSON key
    (text) matches, and `dict[int, str]` no rule for keys, so "x" was as good as "1": the keys are shown as the text
    the check reads, and every key the schema shown takes, the check takes."""
    schema = ResponseFormat.from_user(kind).schema
    shown = jsonschema.Draft202012Validator(schema)
    assert all(shown.is_valid({key: "a"}) for key in keys)
    for key in [*keys, "x", "", "-1", "0", "2", "01", "1.0", "1e2", " 1", "true", "True", "nan", "1_000"]:
        if shown.is_valid({key: "a"}):
            parse_final(json.dumps({key: "a"}), kind)  # raises StructuredOutputError if the check refuses it


_KEYS = ["1", "7", "10", "12", "-2", "-5", "0", "-0", "01", "+1", " 1", "1 ", "1\n", "1_000", "1.0", "1.50", "1e1",
         "1E-2", ".5", "1.", "nan", "NaN", "inf", "Infinity", "-inf", "1e999", "true", "false", "True", "yes", "3", "0x1"]


@pytest.mark.parametrize("kind, read", [
    (dict[float, str], float), (dict[Decimal, str], Decimal), (dict[int, str], int),
    (dict[pydantic.conint(ge=5, le=10), str], int), (dict[typing.Annotated[int, pydantic.Field(gt=-3, lt=3)], str], int),
    (dict[typing.Annotated[int, pydantic.Field(ge=-1000)], str], int), (dict[bool, str], lambda key: key == "true"),
    (dict[_Size, str], lambda key: _Size(int(key))), (dict[Literal[True, "x"], str], lambda key: key == "true" or key),
    (dict[typing.Annotated[int, pydantic.Field(ge=5, le=10), pydantic.AfterValidator(abs)], str], int),
], ids=["float", "Decimal", "int", "int 5 to 10", "int -2 to 2", "int from -1000", "bool", "IntEnum", "Literal",
        "int checked after"])
def test_a_dict_key_is_taken_only_as_the_text_it_is_shown_and_read_as_written(kind, read):
    """pydantic read the float keys "nan", " 1", "+1" and "1_000" (as nan, 1.0, 1.0, 1000.0), an IntEnum's "01", where
    the model was shown JSON's number text; the keys of `conint(ge=5, le=10)` were shown as any positive integer,
    which the check then refused past 10. A key is taken when the schema shown takes it, and is the value its text says."""
    shown = ResponseFormat.from_user(ResponseFormat.from_user(kind).schema)  # as JSON Schema reads it ("$" the end)
    for key in _KEYS:
        answer = json.dumps({key: "a"})
        try:
            shown.parse(answer)
        except StructuredOutputError:
            taken = False
        else:
            taken = True
        try:
            [(parsed, _)] = parse_final(answer, kind).items()
        except StructuredOutputError as err:
            assert not taken or key == "1e999", (key, str(err))  # (too large for a float)
            assert "\n" not in str(err) and "[key]" in str(err)
        else:
            assert taken, key
            assert (type(parsed), parsed) == (type(read(key)), read(key))
            if isinstance(parsed, Decimal):  # its digits as written: 1.50 stays 1.50
                assert parsed.as_tuple() == Decimal(key).as_tuple()


@pytest.mark.parametrize("kind, read", [(dict[float, str], float), (dict[Decimal, str], Decimal), (dict[int, str], int)],
                         ids=["float", "Decimal", "int"])
def test_two_keys_of_one_number_are_refused_not_read_as_one(kind, read):
    """`{"1": "a", "1.0": "b"}` for `dict[float, str]` gave `{1.0: "b"}`: two keys read as one number, the first's value
    lost unsaid. A number key has one text (no exponent, trailing zero or -0), shown so, and a float key one a float holds."""
    for first, second in [("1", "1.0"), ("0", "-0"), ("100", "1e2"), ("5", "5.0"), ("0.1", "0.10000000000000000001")]:
        answer = json.dumps({first: "a", second: "b"})
        try:
            parsed = parse_final(answer, kind)
        except StructuredOutputError as err:
            assert f"{second}.[key]: Key should be " in str(err)
        else:
            assert parsed == {read(first): "a", read(second): "b"} and len(parsed) == 2, answer
    assert parse_final('{"-12": "a", "3": "b"}', kind) == {read("-12"): "a", read("3"): "b"}


def test_a_dict_whose_keys_have_a_pattern_is_shown_taking_no_other_keys():
    """`dict[Annotated[str, StringConstraints(pattern=...)], int]` was shown as patternProperties alone, which takes any
    other key too ({"ABC": 1}), and constrained decoding wrote one; the check refused it. No other key is shown taken."""
    kind = dict[typing.Annotated[str, pydantic.StringConstraints(pattern="^[a-z]+$")], int]
    shown = ResponseFormat.from_user(ResponseFormat.from_user(kind).schema)
    for answer in ['{"ABC": 1}', '{"ab": 1, "a1": 2}']:
        with pytest.raises(StructuredOutputError, match=r"^the final answer does not match the schema: "):
            shown.parse(answer)
        with pytest.raises(StructuredOutputError, match=r"\[key\]: String should match pattern '\^\[a-z\]\+\$'"):
            parse_final(answer, kind)
    assert shown.parse('{"ab": 1}') == parse_final('{"ab": 1}', kind) == {"ab": 1}


@pytest.mark.parametrize("kind", [dict[Literal[1, 2], int], dict[str, dict[Literal[1.5], int]]], ids=["int", "nested float"])
def test_a_dict_whose_literal_keys_json_cannot_give_is_refused_when_the_format_is_made(kind):
    """pydantic reads no key of `dict[Literal[1, 2], int]` ({"1": 5}: "Input should be 1 or 2"), so the format was made
    and every answer refused; it is refused at once, as a Literal value without a JSON form is."""
    with pytest.raises(TypeError, match=r"^dict: the dict key 1(\.5)? has no JSON form that reads back as it "):
        ResponseFormat.from_user(kind)


class _Access(enum.Flag):
    READ = 1
    WRITE = 2


class _Switch(enum.Enum):
    ON = True
    OFF = False


class _Choice(pydantic.BaseModel):
    size: _Size | None = None
    access: _Access | None = None
    level: Literal[1, 2] | None = None
    flag: Literal[True] | None = None
    switch: _Switch | None = None


@pytest.mark.parametrize(("field", "wrong", "error"), [
    ("size", "true", "Input should be 1 or 3"), ("access", "true", "Input should be 1 or 2"),
    ("access", "false", "Input should be 1 or 2"), ("level", "true", "Input should be 1 or 2"),
    ("flag", "1", "Input should be True"), ("flag", "1.0", "Input should be True"),
    ("switch", "0", "Input should be True or False"),
], ids=["IntEnum true", "Flag true", "Flag false", "Literal[1, 2] true", "Literal[True] 1", "Literal[True] 1.0",
        "Enum of booleans 0"])
def test_a_choice_of_numbers_refuses_a_boolean_and_a_choice_of_booleans_a_number(field, wrong, error):
    """`{"access": true}` read as READ and `{"flag": 1}` as True: Python's True == 1 matched the choice, where JSON
    Schema (and the same schema as a dict) refuses; the number or boolean the choice holds still reads."""
    with pytest.raises(StructuredOutputError, match=f"{field}: {error}"):
        parse_final('{"%s": %s}' % (field, wrong), _Choice)
    with pytest.raises(StructuredOutputError):
        parse_final('{"%s": %s}' % (field, wrong), _Choice.model_json_schema())
    right = {"size": ("3", _Size.LARGE), "access": ("3.0", _Access.READ | _Access.WRITE), "level": ("2", 2),
             "flag": ("true", True), "switch": ("false", _Switch.OFF)}[field]
    assert getattr(parse_final('{"%s": %s}' % (field, right[0]), _Choice), field) == right[1]


def test_the_lab_imports_jsonschema_only_to_check_a_schema_dict():
    """`from gptoss_lab import Session` took 2 s of CPU, three quarters of it jsonschema's import (rfc3987_syntax builds
    its IRI grammar then), paid by every kernel that asks a question, with or without a schema: jsonschema is imported
    when a schema dict is checked, and its answers still fail in jsonschema's words, the lab's own keywords' included.
    That import still built rfc3987_syntax's grammar (1.2 s of CPU, 3 to 8 s of waiting at a first `--json` on a busy
    machine), which the lab does not use (`_check_iris`): it is imported when jsonschema's own IRI check is first used,
    which works as before."""
    code = ("import sys\nfrom gptoss_lab import Session\nimport gptoss_lab.magics, gptoss_lab.widgets.chat\n"
            "print('jsonschema' in sys.modules)\nfrom gptoss_lab.structured import ResponseFormat\n"
            "fmt = ResponseFormat.from_user({'type': 'object', 'additionalProperties': False,\n"
            "                                'properties': {'ids': {'type': 'array', 'uniqueItems': True}}})\n"
            "for text in ('{\"ids\": [1, 1]}', '{\"ids\": [], \"x\": 1}', '{\"ids\": [2]}'):\n"
            "    try:\n        print(fmt.parse(text))\n    except Exception as err:\n        print(err)\n"
            "iri = ResponseFormat.from_user({'type': 'string', 'format': 'iri'})\n"
            "print('rfc3987_syntax' in sys.modules, iri.parse('\"http://ex.com/\u00e4\"'))\n"
            "import jsonschema\nchecker = jsonschema.Draft202012Validator.FORMAT_CHECKER\n"
            "print(checker.conforms('http://ex.com/\u00e4', 'iri'), checker.conforms('not an iri', 'iri'),\n"
            "      'rfc3987_syntax' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.splitlines() == [
        "False", "the final answer does not match the schema: ids: [1, 1] has non-unique elements (items 0 and 1 are equal)",
        "the final answer does not match the schema: answer: Additional properties are not allowed ('x' was unexpected)",
        "{'ids': [2]}", "False http://ex.com/\u00e4", "True False True"], done.stderr
