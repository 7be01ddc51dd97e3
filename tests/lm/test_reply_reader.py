"""One reader of a Chat Completions reply: the core provider's JSON body and an SDK's reply
object (the ``openai`` SDK's models, LiteLLM's ``ModelResponse``) read alike, by construction."""

from __future__ import annotations

import importlib
import json
import sys
import types
import warnings
from typing import Any

import pytest
from openai.types.chat import ChatCompletion

from fastrlm import ProviderResponseError
from fastrlm.lm._chat import read_completion

from .helpers import USER, fast_retry


def _reply(message: dict[str, Any], finish: object = "stop",
           usage: object = None) -> dict[str, Any]:
    body: dict[str, Any] = {"id": "c1", "choices": [{"index": 0, "finish_reason": finish,
                                                     "message": message}]}
    if usage is not None:
        body["usage"] = usage
    return body


CALL = {"id": "t1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": 1}'}}

REPLIES = {
    "text and usage details": _reply(
        {"role": "assistant", "content": "hi"},
        usage={"prompt_tokens": 10, "completion_tokens": 2,
               "prompt_tokens_details": {"cached_tokens": 8, "cache_write_tokens": 1},
               "completion_tokens_details": {"reasoning_tokens": 1}}),
    "a cost reported in usage": _reply({"content": "hi"},
                                       usage={"prompt_tokens": 3, "cost": 0.25}),
    "a cost sent as true": _reply({"content": "hi"}, usage={"prompt_tokens": 3, "cost": True}),
    "a cost sent as text": _reply({"content": "hi"}, usage={"prompt_tokens": 3, "cost": "0.1"}),
    "a finish reason sent as a number": _reply({"content": "hi"}, finish=7),
    "counts sent as text": _reply({"content": "hi"},
                                  usage={"prompt_tokens": "12", "completion_tokens": 2}),
    "a negative count": _reply({"content": "hi"},
                               usage={"prompt_tokens": 5, "completion_tokens": -1}),
    "text parts": _reply({"content": [{"type": "text", "text": "a"},
                                      {"type": "text", "text": "b"}]}),
    "a refusal": _reply({"content": None, "refusal": "no"}),
    "tool calls only": _reply(
        {"content": None, "tool_calls": [
            CALL,
            {"id": "t2", "type": "function", "function": {"name": "bad", "arguments": "{x"}},
            {"id": "t3", "type": "function", "function": {"arguments": "{}"}},
        ]}, finish="tool_calls"),
    "no choices": {"id": "c1", "choices": []},
    "cut at the length limit with no text": _reply({"content": None}, finish="length"),
    "no text": _reply({"content": ""}),
}


def _read(reply: object) -> tuple[str, object]:
    """What the reader makes of ``reply``: its five values, or the error it raises."""
    try:
        return "read", read_completion(reply, USER, provider="openai", model="m")
    except ProviderResponseError as exc:
        return "error", (type(exc), str(exc), exc.retryable)


@pytest.mark.parametrize("body", REPLIES.values(), ids=REPLIES.keys())
def test_a_reply_reads_the_same_as_json_and_as_an_sdk_object(body: dict[str, Any]) -> None:
    # ``construct`` is how the openai SDK builds its reply objects (no validation): a server's
    # odd types reach the reader as they were sent
    sdk_object = ChatCompletion.construct(**body)
    assert _read(sdk_object) == _read(body)


def test_the_reader_keeps_what_a_reply_says() -> None:
    kind, read = _read(REPLIES["tool calls only"])
    assert kind == "read"
    text, usage, finish, cost, raw = read  # type: ignore[misc]
    calls = raw["tool_calls"]
    assert (text, finish, cost, usage.estimated) == ("", "tool_calls", None, True)
    assert [(c.id, c.name, c.arguments) for c in calls] == [
        ("t1", "lookup", {"q": 1}), ("t2", "bad", "{x")]
    assert _read(REPLIES["a cost sent as true"])[1][3] is None  # type: ignore[index]
    assert _read(REPLIES["a finish reason sent as a number"])[1][2] is None  # type: ignore[index]


@pytest.fixture
def litellm_reply(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A real LiteLLM ``ModelResponse`` with a reported cost (LiteLLM declares ``usage.cost`` as
    a field, so it is not among pydantic's extras)."""
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no download at import
    with warnings.catch_warnings():  # LiteLLM's own models warn while pydantic builds them
        warnings.simplefilter("ignore", UserWarning)
        utils = pytest.importorskip("litellm.types.utils")
        return utils.ModelResponse(
            id="l1", choices=[{"finish_reason": "stop", "index": 0,
                               "message": {"role": "assistant", "content": "from litellm"}}],
            usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5, "cost": 0.25},
        )


async def test_litellm_s_reported_cost_reaches_the_response(
    litellm_reply: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake: Any = types.ModuleType("litellm")

    async def acompletion(**kw: Any) -> Any:
        return litellm_reply

    fake.acompletion = acompletion
    monkeypatch.setitem(sys.modules, "litellm", fake)
    monkeypatch.delitem(sys.modules, "fastrlm.lm._litellm", raising=False)
    try:
        module: Any = importlib.import_module("fastrlm.lm._litellm")
        lm = module.LiteLLMLM("litellm/groq/llama", retry=fast_retry())
        response = await lm.complete(USER)
    finally:
        sys.modules.pop("fastrlm.lm._litellm", None)
    assert (response.text, response.cost_usd) == ("from litellm", 0.25)
    assert (response.usage.input_tokens, response.usage.output_tokens) == (3, 2)
    assert _read(litellm_reply) == _read(litellm_reply.model_dump())


async def test_an_anthropic_reply_is_read_with_the_same_tolerance() -> None:
    """The Messages API reader is the sibling: an odd stop reason, a nameless ``tool_use`` block
    and counts sent as text read as absent, as they do in a Chat Completions reply."""
    from fastrlm.lm import AnthropicLM
    from fastrlm.testing import FakeAnthropicServer, Fault

    body = {
        "id": "m1", "type": "message", "role": "assistant", "stop_reason": 7,
        "content": [{"type": "text", "text": "hi"},
                    {"type": "tool_use", "id": "t1", "name": None, "input": {}}],
        "usage": {"input_tokens": "12", "output_tokens": 2},
    }
    async with FakeAnthropicServer([Fault.raw(json.dumps(body))]) as server:
        lm = AnthropicLM("anthropic/claude-x", base_url=server.base_url, api_key="k",
                         retry=fast_retry())
        try:
            response = await lm.complete(USER)
        finally:
            await lm.aclose()
    assert (response.text, response.finish_reason, response.tool_calls) == ("hi", None, ())
    assert response.usage.estimated and response.raw == {"id": "m1"}
