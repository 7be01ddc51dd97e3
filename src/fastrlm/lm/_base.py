"""The one small protocol every model backend implements, and the values it exchanges."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, Protocol, TypedDict, runtime_checkable

from .._foundation.images import ImagePart as ImagePart
from .._foundation.usage import TokenUsage


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call a model asked for: the provider's call ``id``, the tool ``name`` and its
    ``arguments`` (a dict; the provider's raw text when it sent no valid JSON object)."""

    id: str
    name: str
    arguments: dict[str, Any] | str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


class ChatMessage(TypedDict):
    """One chat message. ``role`` is ``system``, ``user``, ``assistant`` or ``tool``;
    ``content`` is its text.

    A user message may also carry ``images`` (``llm_query(prompt, images=[...])``): the message
    is then multi-part, its text and its images, which each provider sends in its own format
    (:func:`openai_content`; Anthropic ``image`` blocks). Tool use (sub-agents,
    ``RLM(sub_tools=...)``) adds an assistant message's ``tool_calls`` (:meth:`ToolCall.to_dict`
    forms) and a ``tool`` message's ``tool_call_id`` (its ``content`` is the tool's result).

    ``cache_prefix``: how many characters at the start of ``content`` the other prompts of its
    batch share (a fan-out warm-up, :func:`warmup_prefix_tokens`). A provider whose prompt cache
    is explicit marks them as a cache breakpoint (Anthropic: a text block of its own with
    ``cache_control``); the others ignore it."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str
    images: NotRequired[list[ImagePart]]
    tool_calls: NotRequired[list[dict[str, Any]]]
    tool_call_id: NotRequired[str]
    cache_prefix: NotRequired[int]


#: A provider-neutral tool schema: ``{"name", "description", "parameters": <JSON schema>}``.
ToolSchema = Mapping[str, Any]


def openai_content(message: ChatMessage) -> str | list[dict[str, Any]]:
    """A message's ``content`` in the Chat Completions format: its text, or with images a list
    of a ``text`` part and one ``image_url`` part (a ``data:`` URL) per image."""
    images = message.get("images")
    if not images:
        return message["content"]
    parts: list[dict[str, Any]] = [{"type": "text", "text": message["content"]}]
    parts += [
        {"type": "image_url",
         "image_url": {"url": f"data:{image['media_type']};base64,{image['data']}"}}
        for image in images
    ]
    return parts


def message_bytes(message: ChatMessage) -> int:
    """The bytes a message sends (what the ledger's input bound counts): its UTF-8 text, its
    images' base64 data and its tool calls' JSON."""
    size = len(message["content"].encode("utf-8", "surrogatepass"))
    size += sum(len(image["data"]) for image in message.get("images") or ())
    calls = message.get("tool_calls")
    if calls:
        size += len(json.dumps(calls, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    return size


class ReplyReport(TypedDict):
    """What a reply said of itself, as ``model.response`` and ``subcall.finished`` carry it."""

    response_model: str | None
    response_id: str | None
    finish_reason: str | None
    server_address: str | None
    server_port: int | None


@dataclass(frozen=True, slots=True)
class LMResponse:
    """One completed LM call.

    ``text`` is the visible answer (reasoning/thinking excluded). ``usage.estimated`` is true
    when the provider sent no usage and it was estimated from characters. ``cost_usd`` is what the
    provider reported, if it did; fastrlm prices calls from its own table either way.
    ``tool_calls`` are the tools the model asked to call (only when it was offered tools).
    """

    text: str
    usage: TokenUsage
    model: str
    latency_s: float = 0.0
    finish_reason: str | None = None
    cost_usd: float | None = None
    cached: bool = False
    raw: dict[str, object] = field(default_factory=dict, repr=False, compare=False)
    tool_calls: tuple[ToolCall, ...] = ()
    #: The reply's own id and model name (a provider may answer with a dated version of the
    #: model asked for), and the endpoint it came from: ``(host, port)``.
    response_id: str | None = None
    response_model: str | None = None
    server: tuple[str, int] | None = None


def reply_report(response: LMResponse | None) -> ReplyReport:
    """What ``response`` said of itself, as the events carry it (all None without a reply)."""
    if response is None:
        return ReplyReport(response_model=None, response_id=None, finish_reason=None,
                           server_address=None, server_port=None)
    host, port = response.server if response.server is not None else (None, None)
    return ReplyReport(response_model=response.response_model,
                       response_id=response.response_id, finish_reason=response.finish_reason,
                       server_address=host, server_port=port)


@runtime_checkable
class LM(Protocol):
    """A chat model bound to one provider, model name and sampling parameters.

    ``model`` is the canonical ``provider/name`` string used for pricing and usage. ``cache_key``
    identifies provider, endpoint, model and sampling parameters (not credentials) for the
    sub-call cache. ``complete`` raises subclasses of :class:`fastrlm.ProviderError` only.

    A provider with native tool calling also sets ``supports_tools = True`` and takes
    ``tools=`` (a sequence of :data:`ToolSchema`) in ``complete``; the engine passes ``tools``
    only to such providers (others get the JSON fallback in the prompt).
    """

    @property
    def model(self) -> str: ...

    @property
    def temperature(self) -> float | None: ...

    def cache_key(self) -> str: ...

    async def complete(
        self, messages: Sequence[ChatMessage], *, max_tokens: int | None = None
    ) -> LMResponse: ...

    async def aclose(self) -> None: ...


#: LM calls in flight at once for a model whose provider names no ``default_concurrency``.
DEFAULT_CONCURRENCY = 64
#: The fan-out width for a server on this machine (it queues rather than rate-limits, and a
#: fan-out keeps its batch full; vLLM batches up to 256 sequences by default).
LOCAL_CONCURRENCY = 128


def default_concurrency(lm: object) -> int:
    """How many calls of ``lm`` the engine runs at once when ``Limits.max_concurrency`` is unset:
    the model's optional ``default_concurrency`` attribute (providers set it from their preset),
    else :data:`DEFAULT_CONCURRENCY`."""
    value = getattr(lm, "default_concurrency", None)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return DEFAULT_CONCURRENCY
    return value


def warmup_prefix_tokens(lm: object) -> int | None:
    """From how many tokens of shared prompt prefix a batch of ``lm``'s calls warms its prompt
    cache with one call before sending the rest: the model's optional
    ``warmup_prefix_tokens`` attribute (a provider whose cache entry exists only once a
    response is under way sets it to its smallest cacheable prompt: Anthropic), else None
    (never: OpenAI-compatible servers cache concurrent requests by themselves).
    ``Limits.warmup_prefix_tokens`` overrides it."""
    value = getattr(lm, "warmup_prefix_tokens", None)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return None
    return value


def estimate_tokens(text: str) -> int:
    """A rough token count (4 characters a token), for displays and for usage a provider omits."""
    return (len(text) + 3) // 4
