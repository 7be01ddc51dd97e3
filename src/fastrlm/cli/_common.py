"""What every command shares: the one way to fail with a message and an exit code, and the one
way to go from flags to settings, prices and an RLM (:meth:`fastrlm.RLM.from_settings`)."""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Any, NoReturn

import click

from .._foundation.errors import ConfigurationError, SandboxUnavailableError
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


def prepare_run(settings: Settings) -> threading.Thread:
    """Start doing, in a thread, the slow parts of what the run does first that do not depend
    on the context: importing the models' HTTP client (about 0.1 s: ``aiohttp`` and its TLS
    set-up) and finding which sandbox layers work here (``bwrap`` starting a Python). They
    then overlap the context's load (a 1 GiB file: about 0.4 s) instead of following it. Join
    the thread before the run. Nothing it does is seen: a provider whose module cannot be
    imported, or a sandbox that cannot start, is met again and reported by the run itself
    (the layer probe's answer is cached either way)."""
    from ..lm import import_provider
    from ..sandbox import plans_for

    def prepare() -> None:
        for model in dict.fromkeys((settings.model, settings.sub_model)):
            if model:
                try:
                    import_provider(model)
                except ImportError:  # a missing extra: the run names its pip install
                    pass
        if settings.sandbox != "none":
            try:
                plans_for(settings.sandbox)
            except SandboxUnavailableError:  # the run says so, with what to install
                pass

    thread = threading.Thread(target=prepare, name="fastrlm-prepare-run", daemon=True)
    thread.start()
    return thread
