"""The core provider: the official ``openai`` SDK's Chat Completions API.

It reaches OpenAI and every OpenAI-compatible server (vLLM, Ollama, llama.cpp, LM Studio,
OpenRouter, Together, Fireworks, ...). The SDK's own retries are off (``max_retries=0``): one
:class:`RetryPolicy` decides. The SDK's connection pool (1,000 connections by default) is checked
against ``Limits.max_concurrency`` so that the engine's semaphore is the only limit on fan-out.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from typing import Any

import openai
from openai.types.chat import ChatCompletion

from .._core.limits import Limits
from .._exceptions import ProviderResponseError
from .._usage import TokenUsage
from . import _sdk
from ._base import ChatMessage, LMResponse, ToolCall, ToolSchema, estimate_tokens, openai_content
from ._provider import ReadCompletion, SDKProvider
from ._retry import Failure, RetryPolicy

# OpenAI reasoning models take max_completion_tokens and reject temperature.
_REASONING = re.compile(r"^(o\d+(-|$)|gpt-5(?!-chat))")
DEFAULT_BASE_URL = "https://api.openai.com/v1"

# text, usage, finish reason, provider-reported cost, raw fields kept on the response

DEFAULT_LIMITS = Limits()


def is_reasoning_model(name: str) -> bool:
    """True for OpenAI's reasoning families (o1/o3/o4..., gpt-5*, except gpt-5-chat*)."""
    return bool(_REASONING.match(name.rsplit("/", 1)[-1].lower())) and not name.lower().endswith(
        "-chat-latest"
    )


class OpenAIChatLM(SDKProvider):
    """A model behind an OpenAI-compatible Chat Completions endpoint.

    ``model`` is the canonical ``provider/name`` string (pricing, usage); ``api_model`` is the
    name sent on the wire (default: ``model`` without its provider prefix). ``reasoning=None``
    detects OpenAI reasoning models by name; for those ``max_tokens`` is sent as
    ``max_completion_tokens`` and ``temperature`` is not sent (and :attr:`temperature` is None).

    :meth:`complete` raises :class:`fastrlm.ProviderError` subclasses only, after retries.
    A reply without ``usage`` gets an estimate (``usage.estimated=True``); a reply without
    choices or without text raises :class:`fastrlm.ProviderResponseError`.
    """

    _api = "openai-chat"
    #: Chat Completions takes ``tools`` (function calling); sub-agents use it natively.
    supports_tools = True
    _default_provider = "openai"
    _base_url_env = "OPENAI_BASE_URL"
    _default_base_url = DEFAULT_BASE_URL

    def __init__(
        self,
        model: str,
        *,
        api_model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        temperature: float | None = None,
        limits: Limits = DEFAULT_LIMITS,
        retry: RetryPolicy | None = None,
        reasoning: bool | None = None,
        default_headers: dict[str, str] | None = None,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        self._setup(
            model, api_model=api_model, base_url=base_url, api_key=api_key, limits=limits,
            retry=retry,
        )
        self._reasoning = is_reasoning_model(self.api_model) if reasoning is None else reasoning
        self._temperature = None if self._reasoning else temperature
        self._extra_body = dict(extra_body or {})
        self._headers = default_headers

    def _new_client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            api_key=self._api_key,
            base_url=self.base_url,
            max_retries=0,
            timeout=self.retry.timeout_s,
            default_headers=self._headers,
            http_client=self._http_client(openai.DefaultAsyncHttpxClient),
        )

    @property
    def reasoning(self) -> bool:
        """Whether this model is driven as a reasoning model (see the class docstring)."""
        return self._reasoning

    def _cache_params(self) -> dict[str, object]:
        return {"extra": self._extra_body}

    def request_params(
        self, messages: Sequence[ChatMessage], max_tokens: int | None,
        tools: Sequence[ToolSchema] | None = None,
    ) -> dict[str, Any]:
        """The keyword arguments sent to ``chat.completions.create`` (pure; used by tests)."""
        params: dict[str, Any] = {
            "model": self.api_model,
            "messages": [wire_message(m) for m in messages],
        }
        if tools:
            params["tools"] = [
                {"type": "function", "function": {
                    "name": t["name"], "description": t.get("description", ""),
                    "parameters": t.get("parameters") or {"type": "object", "properties": {}},
                }}
                for t in tools
            ]
        if max_tokens is not None:
            params["max_completion_tokens" if self._reasoning else "max_tokens"] = max_tokens
        if self._temperature is not None:
            params["temperature"] = self._temperature
        if self._extra_body:
            params["extra_body"] = self._extra_body
        return params

    async def complete(
        self, messages: Sequence[ChatMessage], *, max_tokens: int | None = None,
        tools: Sequence[ToolSchema] | None = None,
    ) -> LMResponse:
        params = self.request_params(messages, max_tokens, tools)
        # The body is already plain JSON. chat.completions.create() would re-validate every
        # message of the conversation on every turn (~0.35 ms a message here), which makes a
        # long run's overhead grow with the square of its turns; post() sends it as is.
        body = {k: v for k, v in params.items() if k != "extra_body"}
        body.update(params.get("extra_body") or {})
        started = time.monotonic()

        async def attempt() -> ReadCompletion:
            client = await self._clients.get()
            completion = await client.post(
                "/chat/completions", body=body, cast_to=ChatCompletion
            )
            return read_completion(
                completion, messages, provider=self._provider, model=self.api_model
            )

        completion = await self.retry.run(
            attempt,
            self._translate,
            _sdk.catchable(openai),
            provider=self._provider,
            model=self.api_model,
        )
        return self._response(completion, started)

    def _translate(self, exc: BaseException) -> Failure:
        return _sdk.translate(exc, openai, provider=self._provider, model=self.api_model,
                              base_url=self.base_url)

    async def aclose(self) -> None:
        await self._clients.aclose()

    def __repr__(self) -> str:
        return f"OpenAIChatLM({self._model!r}, base_url={self.base_url!r})"


def read_completion(
    completion: Any, messages: Sequence[ChatMessage], *, provider: str, model: str
) -> ReadCompletion:
    """Text, usage, finish reason, provider-reported cost and raw fields of a Chat Completion.

    Raises :class:`ProviderResponseError` for no choices or no text (not retryable when the
    finish reason is ``length``: the token budget went to reasoning and would again).
    A missing ``usage`` is estimated from characters (``estimated=True``).
    """
    where = f"{provider} {model}"
    kw: dict[str, Any] = {"provider": provider, "model": model}
    choices = getattr(completion, "choices", None)
    if not choices or not isinstance(choices, list):
        raise ProviderResponseError(f"{where}: the reply has no choices", **kw)
    choice = choices[0]
    message = getattr(choice, "message", None)
    text = _text(message)
    finish = getattr(choice, "finish_reason", None)
    calls = _tool_calls(message)
    if text is None and calls:
        text = ""
    if text is None:
        error = ProviderResponseError(
            f"{where}: the reply has no text (finish_reason={finish!r})", **kw
        )
        if finish == "length":
            error.retryable = False
        raise error
    usage = _usage(getattr(completion, "usage", None), messages, text)
    cost = _reported_cost(getattr(completion, "usage", None))
    raw: dict[str, object] = {"id": getattr(completion, "id", None)}
    if calls:
        raw["tool_calls"] = calls
    return text, usage, finish, cost, raw


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


def _tool_calls(message: Any) -> tuple[ToolCall, ...]:
    """The function calls of a reply (arguments parsed; the raw text kept when not a JSON
    object)."""
    calls: list[ToolCall] = []
    for call in getattr(message, "tool_calls", None) or ():
        function = getattr(call, "function", None)
        name = getattr(function, "name", None)
        if not isinstance(name, str):
            continue
        text = getattr(function, "arguments", None) or "{}"
        try:
            arguments = json.loads(text)
        except (TypeError, ValueError):
            arguments = text
        calls.append(ToolCall(str(getattr(call, "id", "") or f"call-{len(calls)}"), name,
                              arguments if isinstance(arguments, dict) else str(text)))
    return tuple(calls)


def _usage(usage: Any, messages: Sequence[ChatMessage], text: str) -> TokenUsage:
    prompt = _sdk.count(usage, "prompt_tokens")
    if usage is None or prompt is None:
        estimate = sum(estimate_tokens(m["content"]) + 4 for m in messages)
        return TokenUsage(estimate, estimate_tokens(text), estimated=True)
    prompt_details = getattr(usage, "prompt_tokens_details", None)
    completion_details = getattr(usage, "completion_tokens_details", None)
    return TokenUsage(
        input_tokens=prompt,
        output_tokens=_sdk.count(usage, "completion_tokens") or 0,
        cached_input_tokens=_sdk.count(prompt_details, "cached_tokens") or 0,
        cache_write_tokens=_sdk.count(prompt_details, "cache_write_tokens") or 0,
        reasoning_tokens=_sdk.count(completion_details, "reasoning_tokens") or 0,
    )


def _text(message: Any) -> str | None:
    """The reply text: ``content`` (a string, or a list of text parts as some servers send),
    else a ``refusal``."""
    content = getattr(message, "content", None)
    if isinstance(content, list):
        parts = [
            p.get("text") if isinstance(p, dict) else getattr(p, "text", None) for p in content
        ]
        content = "".join(p for p in parts if isinstance(p, str))
    if isinstance(content, str) and content:
        return content
    refusal = getattr(message, "refusal", None)
    return refusal if isinstance(refusal, str) and refusal else None


def _reported_cost(usage: Any) -> float | None:
    """OpenRouter (and some proxies) report a USD ``cost`` in ``usage``; others do not."""
    extra = getattr(usage, "model_extra", None) or {}
    cost = extra.get("cost") if isinstance(extra, dict) else None
    return float(cost) if isinstance(cost, int | float) else None
