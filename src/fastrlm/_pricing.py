"""USD cost from a shipped price table, so budgets hold even when a provider reports no cost."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ._usage import TokenUsage

_DATE_SUFFIX = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|@\d{8}|-latest|-preview-\d{2}-\d{2})$")


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens. Missing cache prices fall back to the input price."""

    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None

    def cost(self, usage: TokenUsage) -> float:
        cached = usage.cached_input_tokens
        written = usage.cache_write_tokens
        plain = max(usage.input_tokens - cached - written, 0)
        cached_price = self.input if self.cached_input is None else self.cached_input
        write_price = self.input if self.cache_write is None else self.cache_write
        total = (
            plain * self.input
            + cached * cached_price
            + written * write_price
            + usage.output_tokens * self.output
        )
        return total / 1_000_000

    def worst_case(self, input_tokens: int, output_tokens: int) -> float:
        """An upper bound on a call's cost before it is sent (no cache discount assumed)."""
        top_in = max(self.input, self.cache_write or 0.0)
        return (input_tokens * top_in + output_tokens * self.output) / 1_000_000

    def output_tokens_affordable(self, usd: float, input_tokens: int) -> int:
        """How many output tokens ``usd`` still buys after paying for ``input_tokens``."""
        left = usd - self.worst_case(input_tokens, 0)
        if left <= 0:
            return 0
        if self.output <= 0:
            return 2**31
        return math.floor(left * 1_000_000 / self.output)


FREE = Price(0.0, 0.0, 0.0, 0.0)


def call_cost(price: Price | None, usage: TokenUsage, reported: float | None) -> tuple[float, bool]:
    """The one rule that prices a call: ``(usd, priced)``.

    The price table wins when it knows the model (budgets are enforced with the same prices
    that reserved the call); else the provider's reported cost (when it is a finite,
    non-negative number); else 0 with ``priced=False``, so the result can say the spend is
    understated.
    """
    if price is not None:
        return price.cost(usage), True
    if reported is not None and math.isfinite(reported) and reported >= 0:
        return reported, True
    return 0.0, False


def _canonical(model: str) -> list[str]:
    """Lookup keys for a model string, most specific first: 'openai/gpt-5-2025-08-07' ->
    ['openai/gpt-5-2025-08-07', 'gpt-5-2025-08-07', 'gpt-5']."""
    keys = [model.lower()]
    name = model.rsplit("/", 1)[-1].lower()
    keys.append(name)
    untagged = name.split(":", 1)[0]  # ollama-style tags: qwen2.5-coder:32b
    keys.append(untagged)
    keys.append(_DATE_SUFFIX.sub("", untagged))
    return list(dict.fromkeys(keys))


class PriceTable:
    """Prices by model name. Lookup strips the provider prefix and date suffixes.

    Models of local providers (``ollama/…``, ``vllm/…``, ``llamacpp/…``, ``lmstudio/…``) cost
    nothing. ``price(model)`` returns ``None`` for a model the table does not know.
    """

    def __init__(
        self,
        overrides: Mapping[str, Price | Mapping[str, float]] | None = None,
        *,
        include_defaults: bool = True,
    ) -> None:
        self._prices: dict[str, Price] = {}
        self._free_providers: set[str] = set()
        if include_defaults:
            self._load_json(resources.files("fastrlm").joinpath("data/prices.json").read_text())
        for name, value in (overrides or {}).items():
            self._prices[name.lower()] = value if isinstance(value, Price) else _price(value)

    @classmethod
    def default(cls) -> PriceTable:
        """The shipped table plus ``$FASTRLM_HOME/prices.json`` if the user has one."""
        table = cls()
        home = os.environ.get("FASTRLM_HOME")
        user = Path(home) / "prices.json" if home else Path.home() / ".fastrlm" / "prices.json"
        if user.is_file():
            table._load_json(user.read_text())
        return table

    def _load_json(self, text: str) -> None:
        data = json.loads(text)
        models = data.get("models", data)
        for name, entry in models.items():
            if not name.startswith("_"):
                self._prices[name.lower()] = _price(entry)
        self._free_providers.update(p.lower() for p in data.get("_free_providers", []))

    def price(self, model: str) -> Price | None:
        provider = model.split("/", 1)[0].lower() if "/" in model else ""
        for key in _canonical(model):
            if key in self._prices:
                return self._prices[key]
        if provider in self._free_providers:
            return FREE
        return None

    def cost(self, model: str, usage: TokenUsage) -> float | None:
        price = self.price(model)
        return None if price is None else price.cost(usage)

    def __contains__(self, model: str) -> bool:
        return self.price(model) is not None


def _price(entry: Mapping[str, float]) -> Price:
    return Price(
        input=float(entry["input"]),
        output=float(entry["output"]),
        cached_input=None if entry.get("cached_input") is None else float(entry["cached_input"]),
        cache_write=None if entry.get("cache_write") is None else float(entry["cache_write"]),
    )
