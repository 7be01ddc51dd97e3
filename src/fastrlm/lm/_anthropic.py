"""The ``anthropic`` extra: Claude models through the official ``anthropic`` SDK (Messages API).

Importing this module imports ``anthropic``; :mod:`fastrlm.lm` imports it lazily and turns a
missing SDK into :class:`fastrlm.MissingExtraError`.

Prompt caching: the system prompt (stable for a whole run) always carries
``cache_control: ephemeral``. When a call has history (more than one non-system message), the
breakpoints move forward with it (:func:`cache_breakpoints`): on the last message (the root's
history only appends, so the next turn repeats everything up to it, ``fastrlm._core.history``),
on the model's latest reply and on the first message (the question and context description,
which never change, so a request after a history compaction still reads them from the cache).
Four breakpoints in all, the API's limit. A single-message call (a typical sub-call) marks
nothing else: a cache write costs more than plain input and a one-off prompt would never be
read back, unless the call's message carries a ``cache_prefix`` (the start its batch shares,
``fastrlm._core.call_tree.warmup_prefix``): that prefix is sent as a text block of its own with
``cache_control``, so the batch's other calls read it. Anthropic's cache entry exists only once
a response is under way, so such a batch is sent one call first (:attr:`AnthropicLM.
warmup_prefix_tokens`, the smallest prompt Anthropic caches for the model).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Unpack

import anthropic

from .._foundation.errors import ProviderError, ProviderResponseError
from .._foundation.usage import TokenUsage
from . import _sdk
from ._base import ChatMessage, ToolCall, ToolSchema, estimate_tokens
from ._chat import ReadCompletion
from ._provider import HTTPOptions, HTTPProvider
from ._reading import count, mapping, reply_json, text_or_none
from ._retry import Failure

DEFAULT_MAX_TOKENS = 8192
_EPHEMERAL = {"type": "ephemeral"}
#: The most ``cache_control`` breakpoints one request may carry (the API refuses more).
MAX_BREAKPOINTS = 4
#: The smallest prompt Anthropic caches, in tokens, by a part of the model's name (the first
#: that matches), as its prompt caching documentation lists them; others: :data:`MIN_CACHED`.
MIN_CACHED_BY_MODEL: tuple[tuple[str, int], ...] = (
    ("haiku-4-5", 4096), ("opus-4-5", 4096), ("haiku", 2048),
)
MIN_CACHED = 1024


def min_cached_tokens(model: str) -> int:
    """The smallest prompt (in tokens) that Anthropic caches for ``model``."""
    return next((tokens for part, tokens in MIN_CACHED_BY_MODEL if part in model), MIN_CACHED)


class AnthropicLM(HTTPProvider):
    """A Claude model via the Messages API.

    ``model`` is canonical (``anthropic/claude-sonnet-4-5``). The Messages API requires
    ``max_tokens``: when a call passes none, ``default_max_tokens`` is sent. ``thinking_budget``
    enables extended thinking (then no temperature is sent); thinking blocks never reach
    :attr:`LMResponse.text`. Usage maps Anthropic's split counts onto :class:`TokenUsage`:
    ``input_tokens`` = uncached + cache reads + cache writes, with the reads in
    ``cached_input_tokens`` and the writes in ``cache_write_tokens`` (priced separately).

    :meth:`complete` raises :class:`fastrlm.ProviderError` subclasses only, after retries.
    The other options are every HTTP provider's (:class:`~fastrlm.lm._provider.HTTPOptions`).
    """

    _api = "anthropic-messages"
    #: The Messages API takes ``tools`` (tool use); sub-agents use it natively.
    supports_tools = True
    _default_provider = "anthropic"
    _base_url_env = "ANTHROPIC_BASE_URL"
    _default_base_url = "https://api.anthropic.com"

    def __init__(
        self,
        model: str,
        *,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
        thinking_budget: int | None = None,
        prompt_caching: bool = True,
        **options: Unpack[HTTPOptions],
    ) -> None:
        super().__init__(model, **options)
        self.thinking_budget = thinking_budget
        if thinking_budget:
            self._temperature = None
        self.default_max_tokens = default_max_tokens
        self.prompt_caching = prompt_caching
        self.warmup_prefix_tokens = min_cached_tokens(model) if prompt_caching else None

    def _new_client(self) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(
            api_key=self._api_key,
            base_url=self.base_url,
            max_retries=0,
            timeout=self.retry.timeout_s,
            http_client=_sdk.http_client(anthropic.DefaultAsyncHttpxClient,
                                         pool_size=self.pool_size, timeout_s=self.retry.timeout_s),
        )

    def _cache_params(self) -> dict[str, object]:
        return {"thinking": self.thinking_budget}

    def request_params(
        self, messages: Sequence[ChatMessage], max_tokens: int | None,
        tools: Sequence[ToolSchema] | None = None,
    ) -> dict[str, Any]:
        """The keyword arguments sent to ``messages.create`` (pure; used by tests)."""
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        turns = wire_turns(messages, cache_prefixes=self.prompt_caching)
        if self.prompt_caching:
            marked = {i for i, t in enumerate(turns)
                      if any("cache_control" in block for block in t["content"])}
            room = MAX_BREAKPOINTS - len(marked) - (1 if system else 0)
            marks = [i for i in cache_breakpoints([t["role"] for t in turns])
                     if i not in marked]
            for index in marks[max(len(marks) - room, 0):] if room > 0 else ():
                turns[index]["content"][-1]["cache_control"] = _EPHEMERAL
        params: dict[str, Any] = {
            "model": self.api_model,
            "messages": turns,
            "max_tokens": max_tokens or self.default_max_tokens,
        }
        if system:
            block: dict[str, Any] = {"type": "text", "text": system}
            if self.prompt_caching:
                block["cache_control"] = _EPHEMERAL
            params["system"] = [block]
        if self._temperature is not None:
            params["temperature"] = self._temperature
        if self.thinking_budget:
            params["thinking"] = {"type": "enabled", "budget_tokens": self.thinking_budget}
        if tools:
            params["tools"] = [
                {"name": t["name"], "description": t.get("description", ""),
                 "input_schema": t.get("parameters") or {"type": "object", "properties": {}}}
                for t in tools
            ]
        return params

    def _sender(
        self, params: dict[str, Any], messages: Sequence[ChatMessage]
    ) -> Callable[[], Awaitable[ReadCompletion]]:
        if not params["messages"]:
            raise ProviderError(f"{self._model}: no user message to send",
                                provider=self._provider, model=self.api_model)

        async def attempt() -> ReadCompletion:
            client = await self._clients.get()
            return self._read(await client.messages.create(**params), messages)

        return attempt

    def _catch(self) -> tuple[type[BaseException], ...]:
        return _sdk.catchable(anthropic)

    def _read(self, message: object, messages: Sequence[ChatMessage]) -> ReadCompletion:
        """The text, usage, stop reason and (in ``raw``) id and tool calls of a Messages API
        reply, read in its JSON form with the same tolerance as every reply (``_reading``)."""
        kw: dict[str, Any] = {"provider": self._provider, "model": self.api_model}
        body = reply_json(message)
        listed = body.get("content")
        blocks = [mapping(b) for b in listed] if isinstance(listed, list) else []
        texts = [text_or_none(b.get("text")) for b in blocks if b.get("type") == "text"]
        text = "".join(t for t in texts if t is not None)
        calls = _tool_calls(blocks)
        stop = text_or_none(body.get("stop_reason"))
        if not text and not calls:
            error = ProviderResponseError(
                f"{self._model}: the reply has no text (stop_reason={stop!r})", **kw
            )
            if stop == "max_tokens":  # thinking used the whole budget: a retry would too
                error.retryable = False
            raise error
        usage = _usage(mapping(body.get("usage")), messages, text)
        raw: dict[str, object] = {"id": text_or_none(body.get("id")), "tool_calls": calls}
        answered = text_or_none(body.get("model"))
        if answered is not None:  # the model that answered (a dated version, say)
            raw["model"] = answered
        return text, usage, stop, None, raw

    def _translate(self, exc: BaseException) -> Failure:
        return _sdk.translate(exc, anthropic, provider=self._provider, model=self.api_model,
                              base_url=self.base_url)



def _tool_calls(blocks: list[Mapping[str, Any]]) -> tuple[ToolCall, ...]:
    """The ``tool_use`` blocks of a reply as :class:`ToolCall` values; a block without a name
    is skipped (as in a Chat Completions reply)."""
    calls: list[ToolCall] = []
    for block in blocks:
        name = text_or_none(block.get("name"))
        if block.get("type") != "tool_use" or not name:
            continue
        arguments = block.get("input")
        calls.append(ToolCall(str(block.get("id") or f"call-{len(calls)}"), name,
                              arguments if isinstance(arguments, dict) else str(arguments)))
    return tuple(calls)


def wire_turns(messages: Sequence[ChatMessage], *,
               cache_prefixes: bool = False) -> list[dict[str, Any]]:
    """The Messages API's turns: system messages left out (they go to ``system``), a message's
    images as ``image`` blocks before its text, an assistant's tool calls as ``tool_use``
    blocks, and tool results as ``tool_result`` blocks of one user turn (consecutive results
    share it, as the API requires). With ``cache_prefixes``, a message's ``cache_prefix``
    (:func:`text_blocks`) is a text block of its own that carries ``cache_control``."""
    turns: list[dict[str, Any]] = []
    for m in messages:
        if m["role"] == "system":
            continue
        if m["role"] == "tool":
            block = {"type": "tool_result", "tool_use_id": m.get("tool_call_id", ""),
                     "content": m["content"]}
            previous = turns[-1] if turns else None
            if (previous is not None and previous["role"] == "user"
                    and previous["content"][-1].get("type") == "tool_result"):
                previous["content"].append(block)
            else:
                turns.append({"role": "user", "content": [block]})
            continue
        content: list[dict[str, Any]] = _image_blocks(m)
        if m["content"] or not m.get("tool_calls"):
            content += text_blocks(m["content"],
                                   m.get("cache_prefix", 0) if cache_prefixes else 0)
        for call in m.get("tool_calls") or ():
            arguments = call["arguments"]
            content.append({"type": "tool_use", "id": call["id"], "name": call["name"],
                            "input": arguments if isinstance(arguments, dict) else {}})
        turns.append({"role": m["role"], "content": content})
    return turns


def text_blocks(text: str, prefix: int) -> list[dict[str, Any]]:
    """``text`` as text blocks: one, or with ``prefix`` (characters its batch shares) the prefix
    with ``cache_control`` and the rest after it (the whole text marked when there is no rest:
    the API refuses an empty block)."""
    if prefix <= 0:
        return [{"type": "text", "text": text}]
    if prefix >= len(text):
        return [{"type": "text", "text": text, "cache_control": _EPHEMERAL}]
    return [{"type": "text", "text": text[:prefix], "cache_control": _EPHEMERAL},
            {"type": "text", "text": text[prefix:]}]


def _image_blocks(message: ChatMessage) -> list[dict[str, Any]]:
    """A message's images as Messages API ``image`` blocks (base64 sources), which go before
    its text as Anthropic advises."""
    return [
        {"type": "image",
         "source": {"type": "base64", "media_type": image["media_type"], "data": image["data"]}}
        for image in message.get("images") or ()
    ]


def cache_breakpoints(roles: Sequence[str]) -> list[int]:
    """Which of a call's non-system messages carry ``cache_control`` (at most three; the
    system prompt takes the fourth): none for a single message, else the first message, the
    latest assistant reply and the last message."""
    if len(roles) < 2:
        return []
    marks = {0, len(roles) - 1}
    replies = [i for i, role in enumerate(roles) if role == "assistant"]
    if replies:
        marks.add(replies[-1])
    return sorted(marks)


def _usage(usage: Mapping[str, Any], messages: Sequence[ChatMessage], text: str) -> TokenUsage:
    uncached = count(usage, "input_tokens")
    if uncached is None:
        prompt = sum(estimate_tokens(m["content"]) + 4 for m in messages)
        return TokenUsage(prompt, estimate_tokens(text), estimated=True)
    read = count(usage, "cache_read_input_tokens") or 0
    written = count(usage, "cache_creation_input_tokens") or 0
    return TokenUsage(
        input_tokens=uncached + read + written,
        output_tokens=count(usage, "output_tokens") or 0,
        cached_input_tokens=read,
        cache_write_tokens=written,
    )
