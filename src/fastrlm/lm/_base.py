"""The one small protocol every model backend implements, and the values it exchanges."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypedDict, runtime_checkable

from .._usage import TokenUsage


class ChatMessage(TypedDict):
    """One chat message. ``role`` is ``system``, ``user`` or ``assistant``."""

    role: Literal["system", "user", "assistant"]
    content: str


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


def estimate_tokens(text: str) -> int:
    """A rough token count (4 characters a token), for displays and for usage a provider omits."""
    return (len(text) + 3) // 4
