"""Structured output through the server: response_format json_schema / json_object map to a
typed answer, read back with the openai SDK's own parse helper."""

from __future__ import annotations

import json

import openai
import pytest
from pydantic import BaseModel

from fastrlm.testing import ScriptedLM

from .helpers import QUESTION, raw_request, root, serving


class Verdict(BaseModel):
    label: str
    score: int


def _script(*answers: str) -> ScriptedLM:
    replies = [f"```repl\nFINAL({a})\n```" for a in answers]
    return ScriptedLM(replies, model="scripted/root")


async def test_the_sdks_parse_helper_gets_a_validated_object() -> None:
    lm = _script('{"label": "good", "score": "high"}', '{"label": "good", "score": 9}')
    async with serving(lm) as (_, client):
        reply = await client.chat.completions.parse(
            model="rlm", messages=QUESTION, response_format=Verdict,
            extra_body={"context": "a review"})
    message = reply.choices[0].message
    assert message.parsed == Verdict(label="good", score=9)
    assert json.loads(message.content or "") == {"label": "good", "score": 9}
    first = lm.calls[0][1]["content"]
    assert "JSON schema (Verdict)" in first and '"score"' in first
    assert "the answer.score: expected integer, got string" in lm.calls[1][-1]["content"]


async def test_json_object_asks_for_any_object() -> None:
    lm = _script("'plain words'", '{"ok": True}')
    async with serving(lm) as (_, client):
        reply = await client.chat.completions.create(
            model="rlm", messages=QUESTION, response_format={"type": "json_object"},
            extra_body={"context": "c"})
    assert json.loads(reply.choices[0].message.content or "") == {"ok": True}
    assert reply.choices[0].finish_reason == "stop"


async def test_text_response_format_is_plain_text() -> None:
    async with serving(root("```repl\nFINAL('words')\n```")) as (_, client):
        reply = await client.chat.completions.create(
            model="rlm", messages=QUESTION, response_format={"type": "text"},
            extra_body={"context": "c"})
    assert reply.choices[0].message.content == "words"


async def test_an_answer_that_never_matches_ends_with_length_and_the_last_answer() -> None:
    lm = _script(*(["'no'"] * 6))
    async with serving(lm) as (_, client):
        reply = await client.chat.completions.create(
            model="rlm", messages=QUESTION, response_format={"type": "json_object"},
            extra_body={"context": "c"})
    assert reply.choices[0].finish_reason == "length"
    assert reply.choices[0].message.content == "no"


@pytest.mark.parametrize(
    "response_format",
    [{"type": "json_schema"}, {"type": "json_schema", "json_schema": {"name": "x"}},
     {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "banana"}}},
     {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string",
                                                                      "pattern": "("}}},
     {"type": "xml"}, "json", {"no": "type"}],
)
async def test_a_bad_response_format_is_a_400_saying_what_is_wrong(
    response_format: object,
) -> None:
    async with serving(root("```repl\nFINAL('x')\n```")) as (_, client):
        with pytest.raises(openai.BadRequestError) as raised:
            await client.chat.completions.create(
                model="rlm", messages=QUESTION, response_format=response_format,  # type: ignore[arg-type]
                extra_body={"context": "c"})
    assert "response_format" in str(raised.value)
    assert raised.value.code == "invalid_response_format"


class Node(BaseModel):
    child: Node | None = None


def _nested(levels: int) -> str:
    return '{"child": ' * levels + "null" + "}" * levels


async def test_a_too_deep_answer_ends_with_length_through_the_sdks_parse() -> None:
    lm = _script(*[json.dumps(_nested(3000))] * 6)
    async with serving(lm) as (_, client):
        with pytest.raises(openai.LengthFinishReasonError):
            await client.chat.completions.parse(
                model="rlm", messages=QUESTION, response_format=Node,
                extra_body={"context": "c"})
    assert "nests more than 64 levels deep" in lm.calls[1][-1]["content"]


async def test_a_too_deep_answer_to_a_schema_gets_an_http_response() -> None:
    schema = {"$defs": {"n": {"type": "object", "properties": {
        "child": {"anyOf": [{"$ref": "#/$defs/n"}, {"type": "null"}]}}}}, "$ref": "#/$defs/n"}
    body = json.dumps({"model": "rlm", "messages": QUESTION, "context": "c", "response_format": {
        "type": "json_schema", "json_schema": {"name": "node", "schema": schema}}}).encode()
    async with serving(_script(*[json.dumps(_nested(3000))] * 6)) as (server, _):
        status, _, reply = await raw_request(server.port, "POST", "/v1/chat/completions", body,
                                             {"Content-Type": "application/json"})
    assert status == 200
    assert reply["choices"][0]["finish_reason"] == "length"


async def test_a_prose_final_of_a_dict_is_parsed_by_the_sdk() -> None:
    lm = ScriptedLM(['FINAL({"label": "good", "score": 9})'], model="scripted/root")
    async with serving(lm) as (_, client):
        reply = await client.chat.completions.parse(
            model="rlm", messages=QUESTION, response_format=Verdict,
            extra_body={"context": "a review"})
    assert reply.choices[0].message.parsed == Verdict(label="good", score=9)


async def test_a_response_format_schema_that_cannot_be_checked_is_a_400() -> None:
    def deep(levels: int) -> str:
        return '{"type": "array", "items": ' * levels + '{"type": "string"}' + "}" * levels

    cycle = '{"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}'
    async with serving(root("```repl\nFINAL('x')\n```")) as (server, _):
        for schema, says in ((deep(3000), "nests too deep"), (deep(200), "more than 128 levels"),
                             (cycle, "refers back to itself")):
            body = ('{"model": "rlm", "messages": [{"role": "user", "content": "q"}], '
                    '"context": "c", "response_format": {"type": "json_schema", '
                    f'"json_schema": {{"name": "x", "schema": {schema}}}}}}}').encode()
            status, _, reply = await raw_request(server.port, "POST", "/v1/chat/completions",
                                                 body, {"Content-Type": "application/json"})
            assert status == 400, reply
            assert says in reply["error"]["message"]
