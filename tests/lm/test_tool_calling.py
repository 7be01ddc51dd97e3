"""Sub-agents through the real SDKs: OpenAI function calling and Anthropic tool use against the
fake servers (the request bodies checked), and the JSON fallback over the same wire."""

from __future__ import annotations

import json
from typing import Any

from fastrlm import RLM, Budget, Limits, StopReason
from fastrlm.testing import FakeAnthropicServer, FakeOpenAIServer, FakeReply, FakeRequest

ROOT = "```repl\nFINAL(llm_query('What is the weather in Paris and Rome?'))\n```"
SEEN: list[str] = []


def weather(city: str) -> dict[str, Any]:
    """The weather in a city."""
    SEEN.append(city)
    return {"city": city, "sky": "sunny" if city == "Paris" else "rain"}


def _sub_handler(request: FakeRequest) -> FakeReply:
    """Two tool rounds, then the answer from the tool results."""
    tool_turns = sum(1 for m in request.messages if m.get("role") == "assistant")
    if tool_turns == 0:
        return FakeReply(None, tool_calls=(("weather", {"city": "Paris"}),))
    if tool_turns == 1:
        return FakeReply(None, tool_calls=(("weather", {"city": "Rome"}),))
    return FakeReply("Paris sunny, Rome rain")


def _limits() -> Limits:
    return Limits(max_retries=0, request_timeout_s=10)


def test_openai_function_calling_drives_a_sub_agent_through_the_sdk() -> None:
    SEEN.clear()

    def handler(request: FakeRequest) -> FakeReply:
        return FakeReply(ROOT) if request.is_root else _sub_handler(request)

    with FakeOpenAIServer(handler=handler) as server:
        rlm = RLM("openai/gpt-5", "openai/gpt-5-mini", base_url=server.base_url, api_key="k",
                  sandbox="none", sub_tools=[weather], limits=_limits())
        result = rlm.completion("q", "ctx")
        subs = [r for r in server.completion_requests if not r.is_root]
    assert result.stop_reason is StopReason.FINAL, result.error
    assert result.answer == "Paris sunny, Rome rain"
    assert SEEN == ["Paris", "Rome"] and result.subcalls == 3
    assert subs[0].body["tools"] == [{"type": "function", "function": {
        "name": "weather", "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"], "additionalProperties": False}}}]
    last = subs[2].body["messages"]
    assert [m["role"] for m in last] == ["user", "assistant", "tool", "assistant", "tool"]
    call = last[1]["tool_calls"][0]
    assert call["type"] == "function" and call["function"]["name"] == "weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert last[2]["tool_call_id"] == call["id"]
    assert json.loads(last[2]["content"]) == {"city": "Paris", "sky": "sunny"}
    assert "tools" in subs[2].body  # within the round cap the tools stay offered


def test_anthropic_tool_use_drives_a_sub_agent_through_the_sdk() -> None:
    SEEN.clear()

    def handler(request: FakeRequest) -> FakeReply:
        return FakeReply(ROOT) if request.is_root else _sub_handler(request)

    with FakeAnthropicServer(handler=handler) as server:
        rlm = RLM("anthropic/claude-sonnet-4-5", "anthropic/claude-haiku-4-5",
                  base_url=server.base_url, api_key="k", sandbox="none", sub_tools=[weather],
                  limits=_limits())
        result = rlm.completion("q", "ctx")
        subs = [r for r in server.completion_requests if not r.is_root]
    assert result.answer == "Paris sunny, Rome rain", result.error
    assert SEEN == ["Paris", "Rome"]
    assert subs[0].body["tools"][0]["name"] == "weather"
    assert subs[0].body["tools"][0]["input_schema"]["required"] == ["city"]
    turns = subs[2].body["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user", "assistant", "user"]
    use = turns[1]["content"][0]
    assert use["type"] == "tool_use" and use["input"] == {"city": "Paris"}
    result_block = turns[2]["content"][0]
    assert result_block["type"] == "tool_result" and result_block["tool_use_id"] == use["id"]
    assert json.loads(result_block["content"]) == {"city": "Paris", "sky": "sunny"}


def test_two_tool_calls_in_one_anthropic_round_share_one_user_turn() -> None:
    def handler(request: FakeRequest) -> FakeReply:
        if request.is_root:
            return FakeReply(ROOT)
        if len(request.messages) == 1:
            return FakeReply("Let me check both.", tool_calls=(
                ("weather", {"city": "Paris"}), ("weather", {"city": "Rome"})))
        return FakeReply("both done")

    with FakeAnthropicServer(handler=handler) as server:
        rlm = RLM("anthropic/claude-sonnet-4-5", base_url=server.base_url, api_key="k",
                  sandbox="none", sub_tools=[weather], limits=_limits())
        assert rlm.completion("q", "ctx").answer == "both done"
        last = [r for r in server.completion_requests if not r.is_root][-1].body["messages"]
    assert [t["role"] for t in last] == ["user", "assistant", "user"]
    assert [b["type"] for b in last[1]["content"]] == ["text", "tool_use", "tool_use"]
    assert [b["type"] for b in last[2]["content"]] == ["tool_result", "tool_result"]


def test_the_json_fallback_over_an_endpoint_without_native_tools() -> None:
    SEEN.clear()

    def handler(request: FakeRequest) -> FakeReply:
        if request.is_root:
            return FakeReply(ROOT)
        assert "tools" not in request.body
        rounds = sum(1 for m in request.messages if m.get("role") == "assistant")
        if rounds < 2:
            city = ["Paris", "Rome"][rounds]
            return FakeReply(json.dumps({"tool": "weather", "arguments": {"city": city}}))
        return FakeReply("fallback: Paris sunny, Rome rain")

    with FakeOpenAIServer(handler=handler) as server:
        rlm = RLM("openai/gpt-5", base_url=server.base_url, api_key="k", sandbox="none",
                  sub_tools=[weather], sub_tool_protocol="json", limits=_limits())
        result = rlm.completion("q", "ctx")
    assert result.answer == "fallback: Paris sunny, Rome rain"
    assert SEEN == ["Paris", "Rome"]


def test_a_failing_provider_mid_agent_is_booked_and_the_root_gets_an_error_text() -> None:
    from fastrlm.testing import Fault

    def handler(request: FakeRequest) -> FakeReply | Fault:
        if request.is_root:
            code = "print(llm_query('go'))" if request.turn == 1 else "FINAL('after')"
            return FakeReply(f"```repl\n{code}\n```")
        if len(request.messages) == 1:
            return FakeReply(None, tool_calls=(("weather", {"city": "Paris"}),))
        return Fault.server_error(500)

    with FakeOpenAIServer(handler=handler) as server:
        rlm = RLM("openai/gpt-5", base_url=server.base_url, api_key="k", sandbox="none",
                  sub_tools=[weather], limits=_limits(), budget=Budget(max_subcalls=10))
        result = rlm.completion("q", "ctx")
        root_turn_2 = [r for r in server.completion_requests if r.is_root][1]
    assert result.answer == "after"
    assert result.subcalls == 2 and result.subcalls_failed == 1
    assert "[error: subcall_failed:" in root_turn_2.messages[-1]["content"]


def test_openai_tool_call_arguments_past_the_limits_are_refused_for_that_call_only() -> None:
    """A provider's arguments text of 40 MiB or 5,000 levels is refused before it is decoded
    (or as it is), the other call of the round runs, and the refused values are not sent back
    to the model in the next request."""
    from fastrlm.testing import Fault

    SEEN.clear()
    huge = json.dumps({"city": "x" * (40 * 2**20)})
    deep = '{"city": ' + "[" * 5_000 + "]" * 5_000 + "}"
    calls = [{"id": f"c{i}", "type": "function",
              "function": {"name": "weather", "arguments": arguments}}
             for i, arguments in enumerate([huge, deep, '{"city": "Paris"}'])]
    first = json.dumps({
        "id": "r1", "object": "chat.completion", "created": 0, "model": "gpt-5-mini",
        "choices": [{"index": 0, "finish_reason": "tool_calls",
                     "message": {"role": "assistant", "content": None, "tool_calls": calls}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
    })

    def handler(request: FakeRequest) -> FakeReply | Fault:
        if request.is_root:
            return FakeReply(ROOT)
        if not any(m.get("role") == "tool" for m in request.messages):
            return Fault.raw(first)
        return FakeReply(" | ".join(str(m["content"])[:200] for m in request.messages
                                    if m.get("role") == "tool"))

    with FakeOpenAIServer(handler=handler) as server:
        rlm = RLM("openai/gpt-5", "openai/gpt-5-mini", base_url=server.base_url, api_key="k",
                  sandbox="none", sub_tools=[weather], limits=_limits())
        result = rlm.completion("q", "ctx")
        second = [r for r in server.completion_requests if not r.is_root][1]
    assert result.stop_reason is StopReason.FINAL, result.error
    too_big, too_deep, fine = str(result.answer).split(" | ")
    assert too_big.startswith("error (bad_arguments): weather(): the arguments hold")
    assert "over the limit of 16,777,216" in too_big
    assert too_deep.startswith("error (bad_arguments): weather(): the arguments are nested more "
                               "than 100 levels deep")
    assert json.loads(fine) == {"city": "Paris", "sky": "sunny"}
    assert SEEN == ["Paris"]
    echoed = second.body["messages"][1]["tool_calls"]
    assert [c["function"]["arguments"] for c in echoed] == ["{}", "{}", '{"city": "Paris"}']


def test_an_anthropic_tool_input_too_deep_to_decode_fails_that_prompt_only() -> None:
    """The SDK decodes the reply itself: a 5,000-deep ``input`` cannot be decoded, so that
    sub-call fails (``subcall_failed``), not the whole ``llm_query_batched`` (``host_error``)."""
    from fastrlm.testing import Fault

    SEEN.clear()
    deep = "[" * 5_000 + "]" * 5_000
    body = ('{"id": "m1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5", '
            '"content": [{"type": "tool_use", "id": "t1", "name": "weather", "input": {"city": '
            + deep + '}}], "stop_reason": "tool_use", '
            '"usage": {"input_tokens": 5, "output_tokens": 5}}')
    root = ("```repl\nFINAL(' | '.join(llm_query_batched(['deep please', 'Paris please'])))"
            "\n```")

    def handler(request: FakeRequest) -> FakeReply | Fault:
        if request.is_root:
            return FakeReply(root)
        if "deep" in request.prompt:
            return Fault.raw(body)
        return _sub_handler(request) if SEEN == [] else FakeReply("Paris sunny")

    with FakeAnthropicServer(handler=handler) as server:
        rlm = RLM("anthropic/claude-sonnet-4-5", "anthropic/claude-haiku-4-5",
                  base_url=server.base_url, api_key="k", sandbox="none", sub_tools=[weather],
                  limits=_limits())
        result = rlm.completion("q", "ctx")
    assert result.stop_reason is StopReason.FINAL, result.error
    failed, fine = str(result.answer).split(" | ")
    assert failed.startswith("[error: subcall_failed:") and "malformed response" in failed
    assert fine == "Paris sunny" and SEEN == ["Paris"]
