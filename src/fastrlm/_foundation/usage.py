"""Token usage: per call (:class:`TokenUsage`) and rolled up per model (:class:`Usage`)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """What one LM call consumed, as the provider reported it (or as estimated, see ``estimated``).

    ``input_tokens`` includes ``cached_input_tokens`` and ``cache_write_tokens``;
    ``output_tokens`` includes ``reasoning_tokens``.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_input_tokens + other.cached_input_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
            self.estimated or other.estimated,
        )


@dataclass(slots=True)
class Usage:
    """Usage of one model summed over a whole call tree.

    ``calls`` counts answered calls (cache hits included); ``failed_requests`` counts HTTP
    attempts that got no usable answer, whose estimated cost is included in ``cost_usd``.
    That estimate, ``failed_usd``, is a worst-case reservation kept for the budget (the prompt
    at the input price, whether or not the request ever reached the provider), not a charge
    any provider reported.
    """

    model: str
    calls: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    cache_hits: int = 0
    estimated_calls: int = 0
    unpriced_calls: int = 0
    failed_requests: int = 0
    failed_usd: float = 0.0

    def add(
        self,
        usage: TokenUsage,
        cost_usd: float,
        latency_s: float,
        cached: bool,
        priced: bool = True,
        failed: bool = False,
    ) -> None:
        self.calls += int(not failed)
        self.failed_requests += int(failed)
        self.unpriced_calls += int(not priced and not cached)
        self.input_tokens += usage.input_tokens
        self.cached_input_tokens += usage.cached_input_tokens
        self.cache_write_tokens += usage.cache_write_tokens
        self.output_tokens += usage.output_tokens
        self.reasoning_tokens += usage.reasoning_tokens
        self.cost_usd += cost_usd
        self.failed_usd += cost_usd if failed else 0.0
        self.latency_s += latency_s
        self.cache_hits += int(cached)
        self.estimated_calls += int(usage.estimated)

    def to_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "calls": self.calls,
            "input_tokens": self.input_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "output_tokens": self.output_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "cost_usd": round(self.cost_usd, 8),
            "latency_s": round(self.latency_s, 6),
            "cache_hits": self.cache_hits,
            "estimated_calls": self.estimated_calls,
            "unpriced_calls": self.unpriced_calls,
            "failed_requests": self.failed_requests,
            "failed_usd": round(self.failed_usd, 8),
        }


@dataclass(slots=True)
class UsageSummary:
    """Usage per model plus totals; what ``RLMResult.usage`` holds."""

    by_model: dict[str, Usage] = field(default_factory=dict)

    def record(
        self,
        model: str,
        usage: TokenUsage,
        cost_usd: float,
        latency_s: float,
        cached: bool,
        priced: bool = True,
        failed: bool = False,
    ) -> None:
        """Add one call (``failed``: one attempt that got no usable answer). ``priced=False``:
        neither the price table nor the provider gave a cost, so ``cost_usd`` understates the
        spend (see :attr:`unpriced_models`)."""
        self.by_model.setdefault(model, Usage(model)).add(
            usage, cost_usd, latency_s, cached, priced, failed
        )

    @property
    def unpriced_models(self) -> list[str]:
        """Models whose calls had no known price: their cost is counted as 0."""
        return sorted(m for m, u in self.by_model.items() if u.unpriced_calls)

    @property
    def calls(self) -> int:
        return sum(u.calls for u in self.by_model.values())

    @property
    def input_tokens(self) -> int:
        return sum(u.input_tokens for u in self.by_model.values())

    @property
    def output_tokens(self) -> int:
        return sum(u.output_tokens for u in self.by_model.values())

    @property
    def cost_usd(self) -> float:
        return sum(u.cost_usd for u in self.by_model.values())

    @property
    def failed_requests(self) -> int:
        """HTTP attempts that got no usable answer, every model together."""
        return sum(u.failed_requests for u in self.by_model.values())

    @property
    def failed_usd(self) -> float:
        """The part of :attr:`cost_usd` booked for failed requests: a worst-case reservation
        for the budget, not a charge (see :class:`Usage`)."""
        return sum(u.failed_usd for u in self.by_model.values())

    def snapshot(self) -> UsageSummary:
        return UsageSummary({k: replace(v) for k, v in self.by_model.items()})

    def to_dict(self) -> dict[str, object]:
        return {
            "calls": self.calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": round(self.cost_usd, 8),
            "failed_requests": self.failed_requests,
            "failed_usd": round(self.failed_usd, 8),
            "unpriced_models": self.unpriced_models,
            "by_model": {k: v.to_dict() for k, v in sorted(self.by_model.items())},
        }
