"""POST /v1/responses through the openai SDK's ``client.responses``: the same run as a chat
completion (context modes, fastrlm extensions, limits, errors) in the Responses API's shape."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import openai
import pytest

from fastrlm import Budget, ProviderConnectionError
from fastrlm.testing import ScriptedLM, prompt_of

from .helpers import ECHO_CONTEXT, ECHO_SHAPE, NEVER_FINAL, raw_request, root, serving


async def test_a_response_carries_the_answer_usage_and_the_fastrlm_extension() -> None:
    async with serving(root(ECHO_SHAPE)) as (_, client):
        response = await client.responses.create(model="rlm", input="How long is it?",
                                                 extra_body={"context": "abc"})
    assert response.output_text == "str:3"
    assert response.status == "completed" and response.object == "response"
    assert response.id.startswith("resp_") and response.model == "rlm"
    assert [item.type for item in response.output] == ["message"]
    assert response.usage is not None and response.usage.output_tokens > 0
    extra: dict[str, Any] = response.model_extra["fastrlm"]  # type: ignore[index]
    assert extra["stop_reason"] == "final" and extra["budget"]["max_iterations"] == 4


async def test_input_messages_and_instructions_are_the_drop_in_conversation() -> None:
    root_lm = root(ECHO_CONTEXT)
    async with serving(root_lm) as (_, client):
        response = await client.responses.create(
            model="rlm", instructions="Be brief.",
            input=[{"role": "user", "content": "First"},
                   {"role": "assistant", "content": [{"type": "output_text", "text": "Ok"}]},
                   {"type": "message", "role": "user",
                    "content": [{"type": "input_text", "text": "Second question"}]}])
    assert response.output_text == ("system: Be brief.\n\nuser: First\n\nassistant: Ok\n\n"
                                    "user: Second question")
    assert "Second question" in prompt_of(root_lm.calls[0])
    assert response.instructions == "Be brief."


async def test_a_previous_responses_output_fed_back_as_input_continues_the_conversation(
) -> None:
    # the SDK's documented way to go on without stored responses: input += response.output;
    # with reasoning on, that output holds a reasoning item (progress lines, not conversation)
    root_lm = root(ECHO_CONTEXT)
    async with serving(root_lm, reasoning=True) as (_, client):
        first = await client.responses.create(model="rlm", input="First")
        history: list[Any] = [{"role": "user", "content": "First"}]
        history += [item.model_dump(exclude_none=True) for item in first.output]
        history.append({"role": "user", "content": "Second"})
        second = await client.responses.create(model="rlm", input=history)
    assert [item.type for item in first.output] == ["reasoning", "message"]
    assert second.output_text == f"user: First\n\nassistant: {first.output_text}\n\nuser: Second"
    assert "iteration 1/" not in second.output_text  # progress lines stay out of the context


async def test_a_streamed_response_follows_the_responses_event_sequence() -> None:
    async with serving(root(ECHO_SHAPE)) as (_, client):
        stream = await client.responses.create(model="rlm", input="How long is it?",
                                               stream=True, extra_body={"context": "abcd"})
        events = [e async for e in stream]
    kinds = [e.type for e in events if e.type != "fastrlm.event"]
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added", "response.output_text.delta",
                     "response.output_text.done", "response.content_part.done",
                     "response.output_item.done", "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    progress = [e for e in events if e.type == "fastrlm.event"]
    assert progress[0].model_extra["event"]["type"] == "run.started"  # type: ignore[index]
    done = events[-1]
    assert done.type == "response.completed"
    assert done.response.output_text == "str:4" and done.response.usage is not None
    assert done.response.model_extra["fastrlm"]["stop_reason"] == "final"  # type: ignore[index]
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "str:4"


async def test_the_sdk_stream_helper_accumulates_the_final_response() -> None:
    async with serving(root(ECHO_SHAPE)) as (_, client):
        async with client.responses.stream(model="rlm", input="How long is it?",
                                           extra_body={"context": "abcde"}) as stream:
            texts = [e.delta async for e in stream if e.type == "response.output_text.delta"]
            final = await stream.get_final_response()
    assert texts == ["str:5"] and final.output_text == "str:5"


async def test_reasoning_on_gives_a_reasoning_item_before_the_answer() -> None:
    async with serving(root(ECHO_SHAPE)) as (_, client):
        stream = await client.responses.create(
            model="rlm", input="How long?", stream=True,
            extra_body={"context": "abc", "fastrlm": {"reasoning": True, "progress": False}})
        events = [e async for e in stream]
        whole = await client.responses.create(
            model="rlm", input="How long?",
            extra_body={"context": "abc", "fastrlm": {"reasoning": True}})
    assert not any(e.type == "fastrlm.event" for e in events)
    deltas = "".join(e.delta for e in events if e.type == "response.reasoning_text.delta")
    assert deltas.startswith("iteration 1/4\n")
    final = events[-1].response  # type: ignore[union-attr]
    assert [item.type for item in final.output] == ["reasoning", "message"]
    assert final.output[0].content[0].text == deltas  # type: ignore[union-attr]
    assert final.output_text == "str:3"
    assert [item.type for item in whole.output] == ["reasoning", "message"]
    assert whole.output_text == "str:3"


async def test_a_limit_stop_is_an_incomplete_response_that_says_which_limit() -> None:
    async with serving(root(NEVER_FINAL)) as (_, client):
        response = await client.responses.create(
            model="rlm", input="?", extra_body={"context": "c", "fastrlm": {"max_iterations": 1}})
        stream = await client.responses.create(
            model="rlm", input="?", stream=True,
            extra_body={"context": "c", "fastrlm": {"max_iterations": 1}})
        events = [e async for e in stream]
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.model_extra["fastrlm"]["stop_reason"] == "max_iterations"  # type: ignore[index]
    assert events[-1].type == "response.incomplete"


async def test_a_typed_answer_through_text_format() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    reply = '```repl\nFINAL({"n": len(context)})\n```'
    async with serving(root(reply)) as (_, client):
        response = await client.responses.create(
            model="rlm", input="Count", extra_body={"context": "abc"},
            text={"format": {"type": "json_schema", "name": "count", "schema": schema}})
    assert json.loads(response.output_text) == {"n": 3}


async def test_a_provider_failure_is_a_502_or_a_response_failed_event() -> None:
    def failing() -> ScriptedLM:
        return ScriptedLM([ProviderConnectionError("upstream down", provider="scripted",
                                                   model="scripted/root")],
                          model="scripted/root")

    async with serving(failing()) as (_, client):
        with pytest.raises(openai.InternalServerError) as caught:
            await client.responses.create(model="rlm", input="?", extra_body={"context": "c"})
    assert caught.value.status_code == 502 and caught.value.code == "provider_error"
    async with serving(failing()) as (_, client):
        stream = await client.responses.create(model="rlm", input="?", stream=True,
                                               extra_body={"context": "c"})
        events = [e async for e in stream]
    last = events[-1]
    assert last.type == "response.failed"
    assert last.response.status == "failed" and last.response.error is not None
    assert "upstream down" in last.response.error.message
    assert last.response.error.code == "server_error"


@pytest.mark.parametrize(
    ("body", "status", "code", "words"),
    [({"model": "rlm", "input": "?", "previous_response_id": "resp_1"}, 400,
      "unsupported_previous_response_id", "stores no responses"),
     ({"model": "rlm", "input": [{"type": "function_call_output", "output": "x"}]}, 400,
      "unsupported_input", "only message items"),
     ({"model": "rlm", "input": [{"role": "user", "content": [{"type": "input_image"}]}]}, 400,
      "unsupported_content", "only text parts"),
     ({"model": "rlm"}, 400, "missing_input", "'input' is required"),
     ({"model": "gpt-x", "input": "?"}, 404, "model_not_found", "does not exist"),
     ({"model": "rlm", "input": "?", "fastrlm": {"max_usd": -1}}, 400, "invalid_fastrlm",
      "fastrlm.max_usd"),
     ({"model": "rlm", "input": "?", "text": {"format": {"type": "yaml"}}}, 400,
      "invalid_response_format", "text.format type 'yaml'")],
)
async def test_bad_requests_get_the_error_shape_with_a_clear_message(
    body: dict[str, Any], status: int, code: str, words: str,
) -> None:
    async with serving(root(ECHO_SHAPE)) as (server, _):
        got, _, payload = await raw_request(server.port, "POST", "/v1/responses",
                                            json.dumps(body).encode(),
                                            {"Content-Type": "application/json"})
    assert got == status
    assert payload["error"]["code"] == code and words in payload["error"]["message"]


async def test_a_request_budget_lowers_the_servers_through_this_door_too() -> None:
    batch = '```repl\nr = llm_query_batched(["a", "b"])\nFINAL(str(len(r)))\n```'
    async with serving(root(batch), budget=Budget(max_subcalls=5)) as (_, client):
        response = await client.responses.create(
            model="rlm", input="?", extra_body={"context": "c", "fastrlm": {"max_subcalls": 1}})
    extra: dict[str, Any] = response.model_extra["fastrlm"]  # type: ignore[index]
    assert extra["budget"]["max_subcalls"] == 1 and extra["subcalls_refused"] == 1
    assert response.status == "incomplete"


async def test_a_session_keeps_its_repl_across_responses_requests() -> None:
    count = "```repl\nn = globals().get('n', 0) + 1\nFINAL(str(n))\n```"
    async with serving(root(count)) as (_, client):
        answers = [(await client.responses.create(
            model="rlm", input="again?",
            extra_body={"context": "c", "fastrlm": {"session": "s1"}})).output_text
            for _ in range(2)]
        other = await client.responses.create(model="rlm", input="again?",
                                              extra_body={"context": "c"})
    assert answers == ["1", "2"] and other.output_text == "1"


async def test_retrieving_a_stored_response_is_a_404_that_says_none_are_stored() -> None:
    async with serving(root(ECHO_SHAPE)) as (_, client):
        with pytest.raises(openai.NotFoundError, match="stores no responses") as caught:
            await client.responses.retrieve("resp_123")
    assert caught.value.code == "response_not_found"


@pytest.mark.parametrize("stream", [False, True])
async def test_a_responses_client_that_disconnects_cancels_its_run(stream: bool) -> None:
    from fastrlm.trace import TraceWriter, read_trace

    from .test_server_runs import HeldRoot

    held = HeldRoot()
    async with serving(root(held)) as (server, client):
        async def consume() -> None:
            reply = await client.responses.create(model="rlm", input="?", stream=stream,
                                                  extra_body={"context": "abc"})
            if stream:
                async for _ in reply:  # type: ignore[union-attr]
                    pass

        request = asyncio.create_task(consume())
        await held.entered.wait()
        request.cancel()  # the SDK drops the connection
        await held.cancelled.wait()
        await server.wait_until(lambda s: s.active_runs == 0)
    [path] = TraceWriter().traces_dir.glob("*.jsonl")
    finished = read_trace(path).finished
    assert finished is not None and finished["stop_reason"] == "cancelled"
