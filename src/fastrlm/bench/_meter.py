"""What every baseline method shares: metered LM calls, context windows, chunking.

:class:`Meter` prices each call from fastrlm's price table (so baselines and the RLM are costed
the same way), counts sub-calls, shares one concurrency limiter and, for sub-calls of
deterministic models, the sub-call cache (``fastrlm.lm.SubcallCache`` or anything with the same
``key_for``/``get``/``put``).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .. import Limits, PriceTable, UsageSummary
from .._foundation.pricing import call_cost
from .._foundation.windows import DEFAULT_WINDOW_TOKENS, subcall_window_chars
from .._foundation.windows import WINDOWS as MODEL_WINDOWS
from ..lm import LM, ChatMessage, LMResponse

#: Input windows in tokens: fastrlm's model table, plus the harness's scripted models at 32K (so
#: CI exercises windows and truncation).
WINDOWS: tuple[tuple[str, int], ...] = (("scripted", 32_000), *MODEL_WINDOWS)
DEFAULT_WINDOW = DEFAULT_WINDOW_TOKENS
#: Characters per token when sizing prompts (the harness's proxy).
CHARS_PER_TOKEN = 4
#: How documents name themselves (BrowseComp and its real-data adapter).
DOCID = re.compile(r"docid: ([\w.-]+)")


def window_tokens(model: str) -> int:
    """The input window of ``model`` in tokens (see :data:`WINDOWS`)."""
    name = model.lower()
    for key, size in WINDOWS:
        if key in name:
            return size
    return DEFAULT_WINDOW


def subcall_chars(model: str) -> int:
    """The longest sub-call prompt in characters the engine lets through to sub-model
    ``model`` at the default output cap (what it refuses past with ``prompt_too_long``)."""
    return subcall_window_chars(model, Limits().sub_max_tokens)


class Cache(Protocol):
    def key_for(self, lm: LM, messages: Sequence[ChatMessage], max_tokens: int | None) -> str: ...

    async def get(self, key: str) -> LMResponse | None: ...

    async def put(self, key: str, response: LMResponse) -> None: ...


@dataclass
class Meter:
    """Usage, cost and counts of one method run. One per instance."""

    prices: PriceTable = field(default_factory=PriceTable.default)
    limiter: asyncio.Semaphore | None = None
    cache: Cache | None = None
    usage: UsageSummary = field(default_factory=UsageSummary)
    calls: int = 0
    subcalls: int = 0
    cache_hits: int = 0
    unpriced: set[str] = field(default_factory=set)
    started: float = field(default_factory=time.monotonic)
    track_docids: bool = False
    touched: set[str] = field(default_factory=set)
    #: Tokens (in + out) of sub-work: calls made with ``subcall=True`` (sub-calls, compaction)
    #: and, for an RLM, its sub-calls and child runs' turns; the root's are the rest. Counted by
    #: role, so the split holds when root and sub are one model.
    sub_tokens: int = 0

    def count_sub(self, input_tokens: int, output_tokens: int) -> None:
        """Book ``input_tokens + output_tokens`` of sub-work (see :attr:`sub_tokens`)."""
        self.sub_tokens += int(input_tokens) + int(output_tokens)

    def note(self, text: str) -> None:
        """Record the docids in ``text`` as seen by a model (when ``track_docids``)."""
        if self.track_docids:
            self.touched.update(DOCID.findall(text))

    @property
    def cost_usd(self) -> float:
        return self.usage.cost_usd

    async def complete(
        self,
        lm: LM,
        messages: list[ChatMessage],
        *,
        max_tokens: int | None = None,
        subcall: bool = False,
    ) -> str:
        """Send ``messages`` to ``lm`` and account for it. Raises what ``lm.complete`` raises."""
        self.calls += 1
        self.subcalls += int(subcall)
        for message in messages:
            self.note(message["content"])
        cache = self.cache if subcall and not lm.temperature else None
        key = ""
        if cache is not None:  # not truthiness: an empty SubcallCache has len() == 0
            key = cache.key_for(lm, messages, max_tokens)
            hit = await cache.get(key)
            if hit is not None:
                self.cache_hits += 1
                self.usage.record(lm.model, hit.usage, 0.0, 0.0, True)
                self.count_sub(hit.usage.input_tokens, hit.usage.output_tokens)
                return hit.text
        if self.limiter is not None:
            async with self.limiter:
                response = await lm.complete(messages, max_tokens=max_tokens)
        else:
            response = await lm.complete(messages, max_tokens=max_tokens)
        price = self.prices.price(lm.model)
        cost, _ = call_cost(price, response.usage, response.cost_usd)
        if price is None:
            self.unpriced.add(lm.model)
        self.usage.record(lm.model, response.usage, cost, response.latency_s, False)
        if subcall:
            self.count_sub(response.usage.input_tokens, response.usage.output_tokens)
        if cache is not None:
            await cache.put(key, response)
        return response.text


@dataclass(frozen=True, slots=True)
class MethodResult:
    """One method's answer to one question, with what it cost. ``truncated``: the method had to
    cut the input to fit a window (the paper's ``*``). ``exceeded``: the input does not fit the
    method's window and the method does not cut it, so nothing was sent (the paper's N/A;
    ``stop_reason="context_exceeded"``). Other ``stop_reason`` values are fastrlm's."""

    answer: str
    stop_reason: str
    cost_usd: float
    usage: dict[str, Any]
    subcalls: int
    iterations: int
    duration_s: float
    truncated: bool = False
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    exceeded: bool = False
    #: Tokens (in + out) of sub-work, by role (:attr:`Meter.sub_tokens`); None: not counted.
    sub_tokens: int | None = None


def finish(
    meter: Meter,
    answer: str,
    stop_reason: str = "final",
    *,
    iterations: int = 1,
    truncated: bool = False,
    error: str | None = None,
    exceeded: bool = False,
    **extra: Any,
) -> MethodResult:
    """A :class:`MethodResult` from a meter's totals."""
    if meter.unpriced:
        extra["unpriced_models"] = sorted(meter.unpriced)
    if meter.cache_hits:
        extra["cache_hits"] = meter.cache_hits
    return MethodResult(
        answer,
        stop_reason,
        meter.cost_usd,
        meter.usage.to_dict(),
        meter.subcalls,
        iterations,
        time.monotonic() - meter.started,
        truncated,
        error,
        extra,
        exceeded,
        meter.sub_tokens,
    )


def as_text(context: str | list[str]) -> str:
    """A list context as one string (documents separated by blank lines)."""
    return context if isinstance(context, str) else "\n\n".join(context)


def fit(text: str, max_chars: int) -> tuple[str, bool]:
    """``text`` cut to ``max_chars`` (head kept) with a visible marker; and whether it was cut."""
    if len(text) <= max_chars:
        return text, False
    note = (
        f"\n\n[... context truncated: the remaining {len(text) - max_chars:,} of "
        f"{len(text):,} characters did not fit in the model's window ...]"
    )
    return text[: max(max_chars - len(note), 0)] + note, True


def chunks(context: str | list[str], size: int) -> list[str]:
    """Consecutive pieces of at most ``size`` chars; a list context is packed document-wise (a
    document longer than ``size`` is split)."""
    if isinstance(context, str):
        return [context[i : i + size] for i in range(0, len(context), size)] or [""]
    out: list[str] = []
    cur: list[str] = []
    n = 0
    for doc in context:
        for piece in [doc] if len(doc) <= size else chunks(doc, size):
            if cur and n + len(piece) + 2 > size:
                out.append("\n\n".join(cur))
                cur, n = [], 0
            cur.append(piece)
            n += len(piece) + 2
    if cur:
        out.append("\n\n".join(cur))
    return out or [""]
