"""The Chat Completions wire format, both ways: a message as the API takes it
(:func:`wire_message`) and the one reader of a reply (:func:`read_completion`).

Every Chat Completions reply is read here, whoever fetched it: the core provider's decoded JSON
body (``OpenAIChatLM``, over ``aiohttp``) and an SDK's reply object (LiteLLM's ``ModelResponse``,
an ``openai`` pydantic model), which is first turned into the same JSON form with its
``model_dump()`` (``_reading.reply_json``). So both paths read the same fields with the same
tolerance of odd types and raise the same errors by construction.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from .._foundation.errors import ProviderResponseError
from .._foundation.usage import TokenUsage
from .._foundation.wire import MAX_TOOL_JSON_CHARS
from ._base import ChatMessage, ToolCall, estimate_tokens, openai_content
from ._reading import count, mapping, reply_json, text_or_none

#: What a provider reads from a reply: text, usage, finish reason, reported cost, raw fields
#: (``raw["tool_calls"]``: the :class:`ToolCall` values, when the model asked for tools).
ReadCompletion = tuple[str, TokenUsage, str | None, float | None, dict[str, object]]


def wire_message(message: ChatMessage) -> dict[str, Any]:
    """A message as Chat Completions takes it (tool calls and tool results included)."""
    out: dict[str, Any] = {"role": message["role"], "content": openai_content(message)}
    calls = message.get("tool_calls")
    if calls:
        out["content"] = message["content"] or None
        out["tool_calls"] = [
            {"id": c["id"], "type": "function", "function": {
                "name": c["name"],
                "arguments": c["arguments"] if isinstance(c["arguments"], str)
                else json.dumps(c["arguments"], ensure_ascii=False),
            }}
            for c in calls
        ]
    if message["role"] == "tool":
        out["tool_call_id"] = message.get("tool_call_id", "")
    return out


def read_completion(
    reply: object, messages: Sequence[ChatMessage], *, provider: str, model: str
) -> ReadCompletion:
    """Text, usage, finish reason, provider-reported cost and raw fields of a Chat Completion,
    given as decoded JSON or as an SDK object (``_reading.reply_json``).

    Raises :class:`ProviderResponseError` for no choices, or for neither text nor tool calls
    (not retryable when the finish reason is ``length``: the token budget went to reasoning and
    would again). A missing ``usage`` is estimated from characters (``estimated=True``).
    A value of the wrong type (a count sent as ``"12"``, a finish reason as a number) is read as
    absent rather than crashing the reading.
    """
    where = f"{provider} {model}"
    kw: dict[str, Any] = {"provider": provider, "model": model}
    body = reply_json(reply)
    choices = body.get("choices")
    if not choices or not isinstance(choices, list):
        raise ProviderResponseError(f"{where}: the reply has no choices", **kw)
    choice = mapping(choices[0])
    message = mapping(choice.get("message"))
    finish = text_or_none(choice.get("finish_reason"))
    calls = _tool_calls(message)
    text = _checked_text(_text(message), calls, finish, where, kw)
    usage = body.get("usage")
    usage = usage if isinstance(usage, Mapping) else None
    raw: dict[str, object] = {"id": body.get("id")}
    if isinstance(body.get("model"), str):  # the model that answered (a dated version, say)
        raw["model"] = body["model"]
    if calls:
        raw["tool_calls"] = calls
    return text, _usage(usage, messages, text), finish, _reported_cost(usage), raw


def _checked_text(text: str | None, calls: tuple[ToolCall, ...], finish: str | None, where: str,
                  kw: dict[str, Any]) -> str:
    """A reply's text: ``""`` when it only calls tools. Raises :class:`ProviderResponseError`
    for a reply with neither."""
    if text is not None:
        return text
    if calls:
        return ""
    error = ProviderResponseError(f"{where}: the reply has no text (finish_reason={finish!r})",
                                  **kw)
    if finish == "length":
        error.retryable = False
    raise error


def _text(message: Mapping[str, Any]) -> str | None:
    """The reply text: ``content`` (a string, or a list of text parts as some servers send),
    else a ``refusal``."""
    content = message.get("content")
    if isinstance(content, list):
        parts = [p.get("text") if isinstance(p, Mapping) else None for p in content]
        content = "".join(p for p in parts if isinstance(p, str))
    if isinstance(content, str) and content:
        return content
    refusal = message.get("refusal")
    return refusal if isinstance(refusal, str) and refusal else None


def _tool_calls(message: Mapping[str, Any]) -> tuple[ToolCall, ...]:
    """The function calls of a reply (arguments parsed; the raw text kept when not a JSON
    object); a call without a name is skipped."""
    calls: list[ToolCall] = []
    listed = message.get("tool_calls")
    for call in listed if isinstance(listed, list) else ():
        call = mapping(call)
        function = mapping(call.get("function"))
        name = function.get("name")
        if not isinstance(name, str):
            continue
        text = function.get("arguments") or "{}"
        try:  # text past the tool limit stays text: the host refuses it unparsed
            arguments = (json.loads(text) if isinstance(text, str)
                         and len(text) <= MAX_TOOL_JSON_CHARS else text)
        except (ValueError, RecursionError):
            arguments = text
        calls.append(ToolCall(str(call.get("id") or f"call-{len(calls)}"), name,
                              arguments if isinstance(arguments, dict) else str(text)))
    return tuple(calls)


def _usage(usage: Mapping[str, Any] | None, messages: Sequence[ChatMessage],
           text: str) -> TokenUsage:
    prompt = count(usage, "prompt_tokens")
    if usage is None or prompt is None:
        estimate = sum(estimate_tokens(m["content"]) + 4 for m in messages)
        return TokenUsage(estimate, estimate_tokens(text), estimated=True)
    details = usage.get("prompt_tokens_details")
    out_details = usage.get("completion_tokens_details")
    return TokenUsage(
        input_tokens=prompt,
        output_tokens=count(usage, "completion_tokens") or 0,
        cached_input_tokens=count(details, "cached_tokens") or 0,
        cache_write_tokens=count(details, "cache_write_tokens") or 0,
        reasoning_tokens=count(out_details, "reasoning_tokens") or 0,
    )


def _reported_cost(usage: Mapping[str, Any] | None) -> float | None:
    """OpenRouter (and some proxies, and LiteLLM) report a USD ``cost`` in ``usage``; others do
    not. Any number is passed on; whether it is usable is the pricing's to judge
    (:func:`fastrlm._foundation.pricing.call_cost`)."""
    cost = usage.get("cost") if usage is not None else None
    if isinstance(cost, bool) or not isinstance(cost, int | float):
        return None
    return float(cost)
