"""ScriptedLM: a model that replays a script, for tests (ours and users') and offline demos."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from .._foundation.errors import ProviderResponseError
from .._foundation.usage import TokenUsage
from ..lm import ChatMessage, LMResponse, ToolCall, ToolSchema, estimate_tokens

Reply = str | BaseException | ToolCall | Sequence[ToolCall]
ReplyFn = Callable[[list[ChatMessage]], Reply | Awaitable[Reply]]


@dataclass
class ScriptedLM:
    """An :class:`~fastrlm.lm.LM` that answers from a script instead of a network.

    ``replies`` is either a sequence (reply *i* answers call *i*; running out raises
    :class:`ProviderResponseError`) or a function of the messages, sync or async. A reply that is
    an exception instance is raised instead (to script provider failures). Usage is realistic: 4
    characters a token for every message in and the reply out, so cost accounting can be tested.
    ``latency_s`` simulates the network with ``asyncio.sleep``.

    ``supports_tools=True`` makes it a model with native tool calling: it takes ``tools=`` and a
    reply may be a :class:`~fastrlm.lm.ToolCall` or a list of them (the model asks for those
    calls). Without it, sub-agents use the JSON fallback with it, as with any plain model.

    ``calls`` records every message list received, ``tools_seen`` the tools offered with each;
    ``max_in_flight`` the peak concurrency seen.
    """

    replies: Sequence[Reply] | ReplyFn
    model: str = "scripted/lm"
    latency_s: float = 0.0
    temperature: float | None = None
    supports_tools: bool = False
    calls: list[list[ChatMessage]] = field(default_factory=list, repr=False)
    tools_seen: list[list[ToolSchema] | None] = field(default_factory=list, repr=False)
    max_tokens_seen: list[int | None] = field(default_factory=list, repr=False)
    in_flight: int = 0
    max_in_flight: int = 0

    def cache_key(self) -> str:
        return f"scripted|{self.model}|{self.temperature}"

    async def complete(
        self, messages: Sequence[ChatMessage], *, max_tokens: int | None = None,
        tools: Sequence[ToolSchema] | None = None,
    ) -> LMResponse:
        if tools is not None and not self.supports_tools:
            raise TypeError("ScriptedLM.complete() got tools, but supports_tools is False")
        msgs = list(messages)
        index = len(self.calls)
        self.calls.append(msgs)
        self.tools_seen.append(None if tools is None else list(tools))
        self.max_tokens_seen.append(max_tokens)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        started = time.monotonic()
        try:
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            reply = await self._reply(index, msgs)
        finally:
            self.in_flight -= 1
        if isinstance(reply, BaseException):
            raise reply
        calls = (reply,) if isinstance(reply, ToolCall) else (
            tuple(reply) if isinstance(reply, list | tuple) else ())
        if calls:
            if not all(isinstance(c, ToolCall) for c in calls):
                raise ProviderResponseError("ScriptedLM: a list reply must hold ToolCall objects",
                                            provider="scripted", model=self.model)
            if tools is None:
                raise ProviderResponseError("ScriptedLM: a tool call was scripted for a call "
                                            "offered no tools", provider="scripted",
                                            model=self.model)
            return LMResponse(
                text="", model=self.model, finish_reason="tool_calls", tool_calls=calls,
                usage=TokenUsage(sum(estimate_tokens(m["content"]) + 4 for m in msgs),
                                 sum(_arguments_tokens(c.arguments) + 4 for c in calls)),
            )
        if not isinstance(reply, str):
            raise ProviderResponseError(
                f"ScriptedLM reply must be a str, got {type(reply).__name__}",
                provider="scripted",
                model=self.model,
            )
        text = reply
        out_tokens = estimate_tokens(text)
        if max_tokens is not None and out_tokens > max_tokens:
            text = text[: max_tokens * 4]
            out_tokens = max_tokens
        usage = TokenUsage(
            input_tokens=sum(estimate_tokens(m["content"]) + 4 for m in msgs),
            output_tokens=out_tokens,
        )
        return LMResponse(
            text=text,
            usage=usage,
            model=self.model,
            latency_s=time.monotonic() - started,
            finish_reason="length" if text is not reply else "stop",
        )

    async def _reply(self, index: int, messages: list[ChatMessage]) -> Reply:
        if callable(self.replies):
            value = self.replies(messages)
            if inspect.isawaitable(value):
                value = await value
            return value
        if index >= len(self.replies):
            raise ProviderResponseError(
                f"ScriptedLM ran out of replies: the script has {len(self.replies)}, "
                f"this is call {index + 1}",
                provider="scripted",
                model=self.model,
            )
        return self.replies[index]

    async def aclose(self) -> None:
        return None


def prompt_of(messages: Sequence[ChatMessage]) -> str:
    """The last user message: what a sub-call was asked (handy in reply functions)."""
    for message in reversed(messages):
        if message["role"] == "user":
            return str(message["content"])
    return ""


def _arguments_tokens(arguments: object) -> int:
    """Tokens of a scripted tool call's arguments, as their JSON; arguments too deep to encode
    (scripted to test the host's limits) count as their top level only."""
    try:
        return estimate_tokens(json.dumps(arguments, ensure_ascii=False, default=repr))
    except (RecursionError, ValueError):
        return estimate_tokens(type(arguments).__name__)


__all__ = ["ScriptedLM", "prompt_of"]
