"""Progress that standard clients show: the run's steps as ``reasoning_content`` deltas (the
field vLLM, DeepSeek and litellm use), off by default, on per request or by the server's
setting; the answer's ``content`` stays the answer alone."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from .helpers import ECHO_SHAPE, QUESTION, root, serving


def _reasoning(chunk: Any) -> str | None:
    if not chunk.choices:
        return None
    value = (chunk.choices[0].delta.model_extra or {}).get("reasoning_content")
    assert value is None or isinstance(value, str)
    return value


async def _stream(client: openai.AsyncOpenAI, fastrlm: dict[str, Any] | None) -> list[Any]:
    extra: dict[str, Any] = {"context": "abc"}
    if fastrlm is not None:
        extra["fastrlm"] = fastrlm
    stream = await client.chat.completions.create(model="rlm", messages=QUESTION, stream=True,
                                                  extra_body=extra)
    return [c async for c in stream]


async def test_reasoning_deltas_are_off_by_default_and_content_is_only_the_answer() -> None:
    async with serving(root(ECHO_SHAPE)) as (_, client):
        chunks = await _stream(client, None)
        reply = await client.chat.completions.create(model="rlm", messages=QUESTION,
                                                     extra_body={"context": "abc"})
    assert all(_reasoning(c) is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "str:3"
    assert "reasoning_content" not in (reply.choices[0].message.model_extra or {})


async def test_a_request_turns_reasoning_on_and_its_lines_come_before_a_clean_answer() -> None:
    async with serving(root(ECHO_SHAPE)) as (_, client):
        chunks = await _stream(client, {"reasoning": True, "progress": False})
    reasoning = [r for c in chunks if (r := _reasoning(c)) is not None]
    text = "".join(reasoning)
    assert text.startswith("iteration 1/4\n")
    assert "ran code block 1 of iteration 1\n" in text and "answer ready (5 chars)\n" in text
    assert all(r.endswith("\n") for r in reasoning)
    contents = [c.choices[0].delta.content for c in chunks if c.choices
                and c.choices[0].delta.content]
    assert contents == ["str:3"]
    answer_at = next(i for i, c in enumerate(chunks) if c.choices and c.choices[0].delta.content)
    assert max(i for i, c in enumerate(chunks) if _reasoning(c) is not None) < answer_at
    # progress off: no engine-event chunks, only the reasoning lines
    assert not any("fastrlm" in (c.model_extra or {}) and "event" in c.model_extra["fastrlm"]
                   for c in chunks)


async def test_reasoning_and_engine_events_can_travel_together() -> None:
    async with serving(root(ECHO_SHAPE)) as (_, client):
        chunks = await _stream(client, {"reasoning": True})
    events = [c.model_extra["fastrlm"]["event"]["type"] for c in chunks
              if "event" in (c.model_extra or {}).get("fastrlm", {})]
    assert events[0] == "run.started" and events[-1] == "run.finished"
    assert "iteration 1/4" in "".join(r for c in chunks if (r := _reasoning(c)))


async def test_the_server_setting_turns_reasoning_on_and_a_request_can_turn_it_off() -> None:
    async with serving(root(ECHO_SHAPE), reasoning=True) as (_, client):
        on = await _stream(client, None)
        off = await _stream(client, {"reasoning": False})
        reply = await client.chat.completions.create(model="rlm", messages=QUESTION,
                                                     extra_body={"context": "abc"})
    assert any(_reasoning(c) for c in on)
    assert all(_reasoning(c) is None for c in off)
    message = reply.choices[0].message
    assert message.content == "str:3"
    assert (message.model_extra or {})["reasoning_content"].startswith("iteration 1/4\n")


async def test_a_reasoning_field_that_is_not_a_boolean_is_a_400_naming_it() -> None:
    async with serving(root(ECHO_SHAPE)) as (_, client):
        with pytest.raises(openai.BadRequestError, match="fastrlm.reasoning' must be a boolean"):
            await client.chat.completions.create(
                model="rlm", messages=QUESTION,
                extra_body={"context": "abc", "fastrlm": {"reasoning": "yes"}})


async def test_a_failed_run_with_reasoning_on_still_ends_in_the_error_shape() -> None:
    from fastrlm import ProviderConnectionError
    from fastrlm.testing import ScriptedLM

    failing = ScriptedLM([ProviderConnectionError("down", provider="p", model="m")],
                         model="scripted/root")
    async with serving(failing, reasoning=True) as (_, client):
        with pytest.raises(openai.APIError, match="down"):
            await _stream(client, None)


# litellm's import warns about pydantic TypedDicts of its own; nothing of this project's
@pytest.mark.filterwarnings("ignore:Items? .*ReadOnly:UserWarning")
async def test_litellm_streams_the_reasoning_content_and_the_clean_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network at import
    litellm = pytest.importorskip("litellm")
    async with serving(root(ECHO_SHAPE), reasoning=True) as (server, _):
        stream = await litellm.acompletion(
            model="openai/rlm", api_base=server.base_url, api_key="unused", messages=QUESTION,
            stream=True, extra_body={"context": "abc", "fastrlm": {"progress": False}})
        chunks = [c async for c in stream]
    reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or ""
                        for c in chunks if c.choices)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "iteration 1/4" in reasoning and content == "str:3"


def test_the_server_setting_must_be_a_boolean() -> None:
    from fastrlm import RLM, ConfigurationError
    from fastrlm.server import RLMServer

    with pytest.raises(ConfigurationError, match="reasoning=.*True or False"):
        RLMServer(RLM(root(ECHO_SHAPE), sandbox="none"), reasoning="yes")  # type: ignore[arg-type]
