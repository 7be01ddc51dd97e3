"""Click parameter types shared by ``ask``, ``serve`` and ``bench``.

:class:`Checked` runs a flag's value through the same :class:`~fastrlm._validate.Rule` that
``Budget`` and ``Limits`` use, so ``--max-seconds nan`` is a usage error naming the flag (exit
2), never a run that stops at once. :class:`PriceParam` reads ``--price MODEL=IN,OUT[,CACHED]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import click

from .._exceptions import InvalidSettingError
from .._pricing import Price, PriceTable
from .._validate import PRICE_RULES, Rule


class Checked(click.ParamType):  # type: ignore[type-arg, unused-ignore]
    """A number checked by ``rule``; the error says the flag and the accepted range."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.name = "integer" if rule.kind == "int" else "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            parsed: object = value
        else:
            parsed = _number(value.strip())
        flag = param.opts[0] if param is not None and param.opts else "value"
        try:
            return self.rule.check(flag, parsed)
        except InvalidSettingError:
            self.fail(f"must be {self.rule.describe()}, not {value!r}", param, ctx)

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "N" if self.rule.kind == "int" else "X"


def _number(text: str) -> object:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


class PriceParam(click.ParamType):  # type: ignore[type-arg, unused-ignore]
    """``MODEL=IN,OUT[,CACHED_IN]``: USD per million input, output and cached-input tokens."""

    name = "price"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        model, sep, numbers = str(value).rpartition("=")
        parts = [p.strip() for p in numbers.split(",")]
        if not sep or not model.strip() or len(parts) not in (2, 3):
            self.fail(f"{value!r} is not MODEL=IN,OUT or MODEL=IN,OUT,CACHED_IN (USD per 1M "
                      "tokens), e.g. --price openai/my-local=0,0", param, ctx)
        names = ("input", "output", "cached_input")[: len(parts)]
        checked: dict[str, float] = {}
        for name, part in zip(names, parts, strict=True):
            number = _number(part)
            try:
                PRICE_RULES[name].check(name, number)
            except InvalidSettingError:
                self.fail(f"{value!r}: the {name} price must be "
                          f"{PRICE_RULES[name].describe()} (USD per 1M tokens), not {part!r}",
                          param, ctx)
            assert isinstance(number, (int, float))
            checked[name] = float(number)
        return model.strip(), Price(**checked)

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "MODEL=IN,OUT[,CACHED_IN]"


def price_option(func: Any) -> Any:
    return click.option(
        "--price",
        "prices",
        type=PriceParam(),
        multiple=True,
        help="Price of a model in USD per 1M tokens, e.g. --price openai/my-local=0,0 or "
        "--price openai/big=1.25,10,0.125 (input, output, cached input); repeatable. Needed "
        "for --max-usd with a model fastrlm has no price for. Also: $FASTRLM_HOME/prices.json.",
    )(func)


def unpriced_models(models: Iterable[str | None], prices: PriceTable) -> list[str]:
    return sorted({m for m in models if m is not None and prices.price(m) is None})


def unpriced_help(models: list[str], source: str = "--max-usd") -> str:
    """How to fix a dollar limit (set by ``source``) for models without a price, from the
    shell."""
    first = models[0]
    return (
        f"{source} is set, but no price is known for {', '.join(models)}, so the dollar limit "
        f"cannot be enforced. Give the price in USD per 1M tokens (input,output[,cached_input]):\n"
        f"  --price {first}=0,0          (a free local model)\n"
        f"  --price {first}=1.25,10      (a paid one)\n"
        "or add it to $FASTRLM_HOME/prices.json (default ~/.fastrlm/prices.json):\n"
        f'  {{"models": {{"{first}": {{"input": 1.25, "output": 10.0}}}}}}\n'
        f"or leave out {source}."
    )


def as_table(prices: Iterable[tuple[str, Price]]) -> PriceTable:
    """The default table (shipped, then ``$FASTRLM_HOME/prices.json``) with ``--price`` on top."""
    overrides: Mapping[str, Price] = dict(prices)
    return PriceTable.default(overrides)
