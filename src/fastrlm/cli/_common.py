"""What every command shares: the one way to fail with a message and an exit code, and the one
way to go from flags to settings, prices and an RLM (:meth:`fastrlm.RLM.from_settings`)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click

from .._foundation.errors import ConfigurationError
from .._foundation.pricing import PriceTable
from ._config import NoModelConfigured, Settings, resolve_settings
from ._exit import ExitCode
from ._options import as_table, unpriced_help

if TYPE_CHECKING:
    from .. import RLM


def price_table_or_exit(settings: Settings) -> PriceTable:
    """The prices a run uses (shipped, ``$FASTRLM_HOME/prices.json``, ``--price``); exits with
    the shell-level fix when ``--max-usd`` is set for a model without a price."""
    try:
        prices = as_table(settings.prices)
    except ConfigurationError as exc:
        fail(str(exc))
    if settings.budget.get("max_usd") is not None:
        missing = prices.unpriced((settings.model, settings.sub_model))
        if missing:
            origin = settings.origin.get("max_usd", "flag")
            fail(unpriced_help(missing, "--max-usd" if origin == "flag" else
                               f"max_usd in {origin}"))
    return prices


def fail(message: str, code: ExitCode = ExitCode.BAD_INPUT) -> NoReturn:
    click.echo(f"fastrlm: {message}", err=True)
    sys.exit(int(code))


def settings_or_exit(flags: dict[str, Any]) -> Settings:
    try:
        settings = resolve_settings(flags)
        settings.require_model()
    except NoModelConfigured as exc:
        click.echo(str(exc), err=True)
        sys.exit(int(ExitCode.BAD_INPUT))
    except ConfigurationError as exc:
        fail(str(exc))
    return settings


def rlm_or_exit(settings: Settings, prices: PriceTable, **options: Any) -> RLM:
    """``RLM.from_settings(settings, prices=prices, **options)``, or exit 2 with the message
    of the configuration it refuses."""
    from .. import RLM

    try:
        return RLM.from_settings(settings, prices=prices, **options)
    except (ConfigurationError, ValueError) as exc:
        fail(str(exc))
