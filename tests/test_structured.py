"""Structured output: the response-format section the model is shown, and the validated answer."""
from __future__ import annotations

import dataclasses
import json

import pydantic
import pytest
from typing_extensions import NotRequired, TypedDict

from gptoss_lab import ReplayEngine, Session, harmony, tool
from gptoss_lab.tools.schema import StructuredOutputError, parse_final, response_format_section, validate


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
            "store": {"type": ["string", "null"], "default": None}}, "required": ["items"]}}
    assert response_format_section(Point) == {  # a dataclass's generated docstring is not a description
        "name": "Point", "schema": {"type": "object", "properties": {
            "x": {"type": "number"}, "y": {"type": "number", "default": 0.0}}, "required": ["x"]}}
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
    (PLAIN, '{"stars": 1, "comment": "ok"}', "comment: unexpected field"),
    (PLAIN, '{}', "stars: Field required"),
    (PLAIN, '[1]', "answer: expected object"),
])
def test_parse_final_errors_say_what_is_wrong(schema, text, message):
    with pytest.raises(StructuredOutputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_final(text, schema)


def test_validator_handles_refs_unions_and_arrays():
    schema = {"$defs": {"tag": {"type": "string"}},
              "type": "object",
              "properties": {"tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}},
                             "size": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                             "pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "number"}]}}}
    validate({"tags": ["a"], "size": None, "pair": ["x", 1.5]}, schema)
    for bad, where in [({"tags": ["a", 2]}, "tags.1"), ({"size": "big"}, "size"), ({"pair": [1, 1]}, "pair.0")]:
        with pytest.raises(StructuredOutputError, match=f"schema: {where}: expected"):
            validate(bad, schema)


def _session(recording: str) -> Session:
    return Session(ReplayEngine(recording), namespace={}, tools=(), approval="auto", date="2026-11-25")


def test_session_reply_parsed_and_errors():
    good = _session('<|channel|>final<|message|>{"items": ["coffee", "soda"]}<|return|>')
    reply = good.ask("I need coffee and soda", response_format=ShoppingList)
    assert reply.parsed == ShoppingList(items=["coffee", "soda"]) and not reply.errors
    assert "# Response Formats\n\n## ShoppingList\n\n" in good.export(response_format=ShoppingList)

    bad = _session('<|channel|>final<|message|>coffee, soda<|return|>').ask("?", response_format=ShoppingList)
    assert bad.parsed is None and bad.final == "coffee, soda"
    assert bad.errors == ["the final answer is not valid JSON: Invalid JSON: expected value at line 1 column 1"]


@pytest.mark.slow
def test_constrained_decoding_makes_a_random_model_write_schema_valid_json(random_checkpoint):
    pytest.importorskip("llguidance")
    import torch
    from transformers import GptOssForCausalLM, LogitsProcessorList

    from gptoss_lab.engines.constrain import json_schema_processor

    schema = {"type": "object", "additionalProperties": False, "required": ["mood", "ok", "score"],
              "properties": {"mood": {"enum": ["happy", "sad"]}, "ok": {"type": "boolean"},
                             "score": {"type": "integer", "minimum": 0, "maximum": 9}}}
    model = GptOssForCausalLM.from_pretrained(random_checkpoint, dtype=torch.float32).eval()
    prompt = harmony.render([harmony.user_message("Rate it.")]) + harmony.encode("<|channel|>final<|message|>")
    ids = torch.tensor([prompt])
    with torch.no_grad():
        unconstrained = model.generate(ids, max_new_tokens=12, do_sample=False)[0, len(prompt):].tolist()
        out = model.generate(ids, max_new_tokens=40, do_sample=True, top_k=0, pad_token_id=harmony.RETURN,
                             eos_token_id=harmony.RETURN, logits_processor=LogitsProcessorList([json_schema_processor(schema)]))
    generated = out[0, len(prompt):].tolist()
    with pytest.raises(StructuredOutputError):  # the random model alone writes no JSON
        parse_final(harmony.decode(unconstrained), schema)
    assert generated[-1] == harmony.RETURN
    value = parse_final(harmony.decode(generated[:-1]), schema)
    assert value["mood"] in ("happy", "sad") and 0 <= value["score"] <= 9
