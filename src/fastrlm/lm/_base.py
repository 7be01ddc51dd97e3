"""The one small protocol every model backend implements, and the values it exchanges."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, Protocol, TypedDict, runtime_checkable

from .._usage import TokenUsage


class ImagePart(TypedDict):
    """An image part of a message: its MIME type (``image/png``, ``image/jpeg``,
    ``image/gif``, ``image/webp``) and its bytes in base64."""

    media_type: str
    data: str


class ChatMessage(TypedDict):
    """One chat message. ``role`` is ``system``, ``user`` or ``assistant``; ``content`` is its
    text. A user message may also carry ``images`` (``llm_query(prompt, images=[...])``): the
    message is then multi-part, its text and its images, which each provider sends in its own
    format (:func:`openai_content`; Anthropic ``image`` blocks). A provider without vision
    receives the parts and the model's server says so."""

    role: Literal["system", "user", "assistant"]
    content: str
    images: NotRequired[list[ImagePart]]


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
    """The bytes a message sends: its UTF-8 text plus its images' base64 data (what the
    ledger's input bound counts)."""
    size = len(message["content"].encode("utf-8", "surrogatepass"))
    return size + sum(len(image["data"]) for image in message.get("images") or ())


@dataclass(frozen=True, slots=True)
class LMResponse:
    """One completed LM call.

    ``text`` is the visible answer (reasoning/thinking excluded). ``usage.estimated`` is true
    when the provider sent no usage and it was estimated from characters. ``cost_usd`` is what the
    provider reported, if it did; fastrlm prices calls from its own table either way.
    """

    text: str
    usage: TokenUsage
    model: str
    latency_s: float = 0.0
    finish_reason: str | None = None
    cost_usd: float | None = None
    cached: bool = False
    raw: dict[str, object] = field(default_factory=dict, repr=False, compare=False)


@runtime_checkable
class LM(Protocol):
    """A chat model bound to one provider, model name and sampling parameters.

    ``model`` is the canonical ``provider/name`` string used for pricing and usage. ``cache_key``
    identifies provider, endpoint, model and sampling parameters (not credentials) for the
    sub-call cache. ``complete`` raises subclasses of :class:`fastrlm.ProviderError` only.
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


def estimate_tokens(text: str) -> int:
    """A rough token count (4 characters a token), for displays and for usage a provider omits."""
    return (len(text) + 3) // 4
