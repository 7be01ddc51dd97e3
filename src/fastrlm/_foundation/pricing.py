"""USD cost from a shipped price table, so budgets hold even when a provider reports no cost."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources

from .errors import ConfigurationError, InvalidSettingError
from .home import user_prices_path
from .usage import TokenUsage
from .validate import PRICE_RULES, check_fields

_DATE_SUFFIX = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|@\d{8}|-latest|-preview-\d{2}-\d{2})$")


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens. Missing cache prices fall back to the input price."""

    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None

    def __post_init__(self) -> None:
        """Raises :class:`~fastrlm.InvalidSettingError` for a negative, NaN or infinite price."""
        check_fields(self, PRICE_RULES, "Price")

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
    ['openai/gpt-5-2025-08-07', 'gpt-5-2025-08-07', 'gpt-5']. A Bedrock model id (what
    ``litellm/bedrock/...`` names) also gives its vendor and model without the inference
    profile's region, the version and the date: 'us.anthropic.claude-sonnet-4-5-20250929-v1:0'
    -> 'anthropic.claude-sonnet-4-5', and for Anthropic's models 'claude-sonnet-4-5' (Bedrock's
    on-demand price is Anthropic's own)."""
    keys = [model.lower()]
    name = model.rsplit("/", 1)[-1].lower()
    keys.append(name)
    untagged = name.split(":", 1)[0]  # ollama-style tags: qwen2.5-coder:32b
    keys.append(untagged)
    keys.append(_DATE_SUFFIX.sub("", untagged))
    bedrock = _BEDROCK_ID.match(untagged)
    if bedrock is not None:
        vendor, rest = bedrock.group("vendor"), bedrock.group("model")
        bare = _DATE_SUFFIX.sub("", _BEDROCK_VERSION.sub("", rest))
        keys.append(f"{vendor}.{bare}")
        if vendor == "anthropic":
            keys.append(bare)
    return list(dict.fromkeys(keys))


#: A Bedrock model id: an optional cross-region inference profile prefix, the vendor, the model.
_BEDROCK_ID = re.compile(
    r"^(?:(?:us|eu|apac|global|us-gov|jp|au|ca)\.)?"
    r"(?P<vendor>anthropic|amazon|meta|mistral|cohere|ai21|deepseek|openai|qwen|writer)"
    r"\.(?P<model>.+)$")
#: Bedrock's version suffix ('-v1', '-v2'; a ':0' tag is already gone).
_BEDROCK_VERSION = re.compile(r"-v\d+$")


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
    def default(
        cls, overrides: Mapping[str, Price | Mapping[str, float]] | None = None
    ) -> PriceTable:
        """The shipped table, then ``$FASTRLM_HOME/prices.json`` (default
        ``~/.fastrlm/prices.json``) if the user has one, then ``overrides``: later wins.

        The file's format is the shipped table's: ``{"models": {"NAME": {"input": USD,
        "output": USD, "cached_input": USD, "cache_write": USD}}}`` in USD per million tokens
        (``cached_input`` and ``cache_write`` optional), plus an optional
        ``"_free_providers": ["ollama", ...]`` list. Names match as :meth:`price` looks them up
        (``openai/my-local`` or just ``my-local``). Raises :class:`~fastrlm.ConfigurationError`
        naming the file for bad JSON, a bad entry or a negative, NaN or missing price.
        """
        table = cls()
        user = user_prices_path()
        if user.is_file():
            try:
                text = user.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigurationError(f"{user}: cannot read the price table: {exc}") from exc
            table._load_json(text, str(user))
        for name, value in (overrides or {}).items():
            table._prices[name.lower()] = value if isinstance(value, Price) else _price(value)
        return table

    def _load_json(self, text: str, source: str = "the shipped price table") -> None:
        shape = ('{"models": {"NAME": {"input": USD, "output": USD}}, '
                 '"_free_providers": ["ollama", ...]} (USD per 1M tokens)')
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:  # a number past int's limit too
            raise ConfigurationError(f"{source}: not valid JSON ({exc}); expected {shape}") from exc
        models = data.get("models", data) if isinstance(data, dict) else None
        free = data.get("_free_providers", []) if isinstance(data, dict) else None
        if not isinstance(models, dict) or not isinstance(free, list) or not all(
            isinstance(p, str) for p in free
        ):
            raise ConfigurationError(f"{source}: expected {shape}")
        for name, entry in models.items():
            if name.startswith("_"):
                continue
            try:
                self._prices[name.lower()] = _price(entry, name)
            except InvalidSettingError as exc:
                raise ConfigurationError(f"{source}: {exc} (USD per 1M tokens)") from exc
            except (TypeError, KeyError) as exc:
                raise ConfigurationError(
                    f'{source}: {name}: expected {{"input": USD, "output": USD}} per 1M tokens '
                    f"(optional: cached_input, cache_write), got {entry!r}") from exc
        self._free_providers.update(p.lower() for p in free)

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

    def unpriced(self, models: Iterable[str | None]) -> list[str]:
        """The models among ``models`` this table has no price for (sorted, each once): a
        dollar limit cannot be enforced over a call to one of them. The one rule every door
        uses (``None`` entries are skipped)."""
        return sorted({m for m in models if m is not None and self.price(m) is None})


def _price(entry: Mapping[str, float], where: str = "price") -> Price:
    if not isinstance(entry, Mapping) or set(entry) - set(PRICE_RULES):
        raise TypeError(f"{where}: not a price object")
    values = {k: PRICE_RULES[k].check(f"{where}.{k}", entry.get(k)) for k in PRICE_RULES}
    cached, written = values["cached_input"], values["cache_write"]
    return Price(
        input=float(values["input"] or 0.0),
        output=float(values["output"] or 0.0),
        cached_input=None if cached is None else float(cached),
        cache_write=None if written is None else float(written),
    )


def unpriced_message(models: Sequence[str], setting: str, fix: str) -> str:
    """Why a dollar limit (named ``setting``: ``max_usd``, ``--max-usd``, ...) is refused for
    ``models``, followed by the door's own way to fix it."""
    return (f"{setting} is set, but no price is known for {', '.join(models)}, so the dollar "
            f"limit cannot be enforced. {fix}")
