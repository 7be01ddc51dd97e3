"""Click parameter types and option blocks shared by ``ask``, ``serve`` and ``bench``.

:class:`Checked` runs a flag's value through the same
:class:`~fastrlm._foundation.validate.Rule` that ``Budget`` and ``Limits`` use, so
``--max-seconds nan`` is a usage error naming the flag (exit 2), never a run that stops at
once. :class:`PriceParam` reads ``--price MODEL=IN,OUT[,CACHED]`` (a :class:`KeyedParam`, as
``batch``'s ``--max-concurrent`` limits are).

The option blocks are written once: :func:`budget_options` (one flag per
:data:`~fastrlm._foundation.budget.BUDGET_KEYS` entry, plus ``--price``), :func:`run_options` (the
model, budget and sandbox flags of a command that runs an RLM; they reach the command as one
``flags`` dict for :func:`~fastrlm.cli._config.resolve_settings`), :func:`tool_options`
(``--tools`` / ``--sub-tools MODULE:NAME,...``, loaded when the flags are parsed),
:func:`load_options` (the bounds on loading files, as one ``LoadLimits``).
"""

from __future__ import annotations

import abc
import functools
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NoReturn

import click

from .._foundation.budget import BUDGET_KEYS, Budget
from .._foundation.errors import InvalidSettingError
from .._foundation.pricing import Price, PriceTable, unpriced_message
from .._foundation.validate import BATCH_RULES, BUDGET_RULES, PRICE_RULES, Rule
from ._config import SANDBOXES


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


class ToolsParam(click.ParamType):  # type: ignore[type-arg, unused-ignore]
    """``MODULE:NAME[,MODULE:NAME...]``: host tools imported from modules (the current
    directory is importable); a bad entry is a usage error saying what is missing."""

    name = "tools"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        from .._core.tools import load_tools
        from .._foundation.errors import ConfigurationError

        try:
            return load_tools(str(value))
        except ConfigurationError as exc:
            self.fail(str(exc).removeprefix("--tools: "), param, ctx)


def tool_options(func: Any) -> Any:
    """``--tools`` (functions for the root's REPL) and ``--sub-tools`` (tools for sub-LLMs);
    the command gets ``tools`` and ``sub_tools`` as tuples of :class:`~fastrlm.Tool`."""
    func = click.option(
        "--sub-tools", type=ToolsParam(), default=None, metavar="MODULE:NAME,...",
        help="Tools for sub-LLMs only: every llm_query becomes a tool-calling agent.",
    )(func)
    return click.option(
        "--tools", type=ToolsParam(), default=None, metavar="MODULE:NAME,...",
        help="Host functions the root's REPL may call, e.g. --tools mytools:search "
        "(a function, a fastrlm.Tool or a list of them; the current directory is importable).",
    )(func)


class KeyedParam(click.ParamType, abc.ABC):  # type: ignore[type-arg, unused-ignore]
    """A ``[KEY=]VALUE`` flag: split at its last ``=`` for :meth:`parse`, once (click may hand
    a default or a value it converted already back to ``convert``)."""

    metavar = ""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        key, sep, rest = str(value).rpartition("=")
        return self.parse(str(value), key.strip() if sep else None, rest,
                          lambda message: self.fail(message, param, ctx))

    @abc.abstractmethod
    def parse(self, value: str, key: str | None, rest: str,
              fail: Callable[[str], NoReturn]) -> tuple[Any, ...]:
        """``value`` as ``key`` (None without ``=``; ``""`` for ``=VALUE``) and what follows
        the ``=``; ``fail`` with a message that shows the accepted forms."""

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return self.metavar


class PriceParam(KeyedParam):
    """``MODEL=IN,OUT[,CACHED_IN]``: USD per million input, output and cached-input tokens."""

    name = "price"
    metavar = "MODEL=IN,OUT[,CACHED_IN]"

    def parse(self, value: str, key: str | None, rest: str,
              fail: Callable[[str], NoReturn]) -> tuple[str, Price]:
        parts = [p.strip() for p in rest.split(",")]
        if not key or len(parts) not in (2, 3):
            fail(f"{value!r} is not MODEL=IN,OUT or MODEL=IN,OUT,CACHED_IN (USD per 1M "
                 "tokens), e.g. --price openai/my-local=0,0")
        names = ("input", "output", "cached_input")[: len(parts)]
        checked: dict[str, float] = {}
        for name, part in zip(names, parts, strict=True):
            number = _number(part)
            try:
                PRICE_RULES[name].check(name, number)
            except InvalidSettingError:
                fail(f"{value!r}: the {name} price must be "
                     f"{PRICE_RULES[name].describe()} (USD per 1M tokens), not {part!r}")
            assert isinstance(number, (int, float))
            checked[name] = float(number)
        return key, Price(**checked)


#: What each budget flag limits; ``{scope}`` is what the limit covers (a run, an instance).
_BUDGET_HELP = {
    "max_usd": "Stop before {scope} spends more than this (USD; the whole call tree).",
    "max_subcalls": "Most sub-calls (llm_query and child turns) at any depth, for {scope}.",
    "max_requests": "Most HTTP requests (attempts and retries) that may reach a provider for "
    "{scope} (default: 3 per allowed call when --max-subcalls is set).",
    "max_seconds": "Wall-clock limit for {scope}.",
    "max_depth": "Recursion depth: 1 = sub-calls are plain LMs (default), 2 lets rlm_query "
    "start child RLMs.",
    "max_iterations": "Root turns per RLM (each child RLM gets as many){default}.",
}


def budget_options(
    keys: Sequence[str] = BUDGET_KEYS, *, scope: str = "the whole run",
    defaults: Mapping[str, object] | None = None,
) -> Callable[[Any], Any]:
    """The budget flags (``--max-usd`` ... one per key, checked by the rules ``Budget`` uses)
    and ``--price``. A flag left out is ``None`` (the environment, the file or ``Budget``'s
    default decides) unless ``defaults`` gives it a shown default."""
    given = dict(defaults or {})

    def decorate(func: Any) -> Any:
        func = price_option(func)
        for key in reversed(keys):
            func = click.option(
                "--" + key.replace("_", "-"),
                type=Checked(BUDGET_RULES[key]),
                default=given.get(key),
                show_default=key in given,
                help=_BUDGET_HELP[key].format(
                    scope=scope,
                    default="" if key in given else f" (default {getattr(Budget(), key)})"),
            )(func)
        return func

    return decorate


def _name_image(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """``--sandbox-image``: this process's container image, as ``$FASTRLM_SANDBOX_IMAGE``
    names it (the one setting the container layers read)."""
    if value is not None:
        from ..sandbox import IMAGE_ENV

        os.environ[IMAGE_ENV] = value


def sandbox_option(func: Any) -> Any:
    func = click.option(
        "--sandbox-image", metavar="IMAGE", expose_value=False, callback=_name_image,
        help="The image the docker / podman sandbox runs (default $FASTRLM_SANDBOX_IMAGE, "
        "else fastrlm-sandbox:latest, built by `fastrlm sandbox build`); an image named "
        "here or there is pulled if it is not there, and nothing is pulled otherwise.",
    )(func)
    return click.option(
        "--sandbox",
        type=click.Choice(SANDBOXES),
        default=None,
        help="REPL isolation (default auto: the best isolated layer available; "
        "none = in-process, unsafe).",
    )(func)


#: The parameters :func:`run_options` adds, gathered into the command's ``flags`` argument.
RUN_FLAGS = ("model", "sub_model", "base_url", *BUDGET_KEYS, "prices", "sandbox")


def run_options(func: Any) -> Any:
    """``-m/--model``, ``--sub-model``, ``--base-url``, the budget flags and ``--sandbox``: the
    flags every command that runs an RLM shares. The command gets them as one keyword,
    ``flags`` (a dict, ``None`` = not given), the input of
    :func:`~fastrlm.cli._config.resolve_settings`."""

    @functools.wraps(func)
    def command(*args: Any, **kwargs: Any) -> Any:
        flags = {name: kwargs.pop(name) for name in RUN_FLAGS}
        return func(*args, flags=flags, **kwargs)

    options = [
        click.option("-m", "--model", default=None,
                     help="Root model, e.g. openai/gpt-5, ollama/qwen2.5-coder:32b, "
                     "anthropic/claude-sonnet-4-5. [env: FASTRLM_MODEL]"),
        click.option("--sub-model", default=None,
                     help="Model for llm_query sub-calls (default: the root model). "
                     "[env: FASTRLM_SUB_MODEL]"),
        click.option("--base-url", default=None,
                     help="OpenAI-compatible endpoint for both models, e.g. "
                     "http://localhost:8000/v1."),
        budget_options(),
        sandbox_option,
    ]
    for option in reversed(options):
        command = option(command)
    return command


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


def unpriced_help(models: list[str], source: str = "--max-usd") -> str:
    """How to fix a dollar limit (set by ``source``) for models without a price, from the
    shell."""
    first = models[0]
    return unpriced_message(
        models, source,
        "Give the price in USD per 1M tokens (input,output[,cached_input]):\n"
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


def load_options(func: Any) -> Any:
    """``--max-file-mb``, ``--max-total-mb``, ``--max-files``, ``--load-timeout`` and
    ``--follow-symlinks``: the bounds on loading ``-c`` paths (MCP paths, batch
    ``context_path``). The command gets them as one keyword, ``load_limits`` (a
    :class:`~fastrlm.context.LoadLimits`)."""
    from ..context import LoadLimits

    default = LoadLimits()

    @functools.wraps(func)
    def command(*args: Any, **kwargs: Any) -> Any:
        limits = LoadLimits(
            max_file_bytes=int(kwargs.pop("max_file_mb") * (1 << 20)),
            max_total_bytes=int(kwargs.pop("max_total_mb") * (1 << 20)),
            max_files=kwargs.pop("max_files"),
            max_seconds=kwargs.pop("load_timeout"),
            follow_symlinks=kwargs.pop("follow_symlinks"),
        )
        return func(*args, load_limits=limits, **kwargs)

    options = [
        click.option("--max-file-mb", type=click.FloatRange(min=0, min_open=True),
                     default=default.max_file_bytes / (1 << 20), show_default=True,
                     help="Largest file loaded; a larger one is refused before it is read."),
        click.option("--max-total-mb", type=click.FloatRange(min=0, min_open=True),
                     default=default.max_total_bytes / (1 << 20), show_default=True,
                     help="Most bytes one load reads, all files together."),
        click.option("--max-files", type=click.IntRange(min=1), default=default.max_files,
                     show_default=True,
                     help="Most files and directories one load walks."),
        click.option("--load-timeout", type=click.FloatRange(min=0, min_open=True),
                     default=default.max_seconds, show_default=True,
                     help="Seconds one load may spend walking and reading."),
        click.option("--follow-symlinks", is_flag=True,
                     help="Walk into symbolic links to directories (skipped by default)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def concurrent_runs_option(default: int, what: str) -> Callable[[Any], Any]:
    """``--max-concurrent-runs N`` (runs at once: the one name every command uses for it, as
    ``serve`` and ``mcp`` do), with ``--concurrency`` kept hidden for one release. Read the
    value with :func:`concurrent_runs`."""
    def decorate(func: Any) -> Any:
        rule = Checked(BATCH_RULES["max_concurrent_runs"])
        func = click.option("--concurrency", "deprecated_concurrency", type=rule,
                            default=None, hidden=True)(func)
        return click.option("--max-concurrent-runs", type=rule, default=None,
                            help=f"{what} [default: {default}]")(func)
    return decorate


def concurrent_runs(value: int | None, deprecated: int | None, default: int) -> int:
    """The width ``--max-concurrent-runs`` (or the deprecated ``--concurrency``) asks for."""
    if deprecated is not None:
        if value is not None:
            raise click.UsageError("--concurrency is the old name of --max-concurrent-runs: "
                                   "give only --max-concurrent-runs")
        click.echo("fastrlm: --concurrency is deprecated: use --max-concurrent-runs (the name "
                   "serve and mcp use); it goes in the next release", err=True)
        return deprecated
    return default if value is None else value
