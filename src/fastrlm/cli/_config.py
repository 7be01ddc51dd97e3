"""CLI configuration: flags > environment > ``config.toml``, built once for every command.

:func:`resolve_settings` merges the three into :class:`Settings`; :meth:`Settings.make_budget`
and :meth:`Settings.make_limits` turn that into the ``Budget`` and ``Limits`` an RLM (or the
server) is built with. ``ask``, ``serve`` and ``demo`` go through them, and the flags come from
the one option block in :mod:`fastrlm.cli._options`.

The file lives at ``$FASTRLM_CONFIG``, else ``$XDG_CONFIG_HOME/fastrlm/config.toml`` (by default
``~/.config/fastrlm/config.toml``)::

    model = "ollama/qwen2.5-coder:32b"
    sub_model = "ollama/qwen2.5-coder:7b"
    base_url = "http://gpu-box:11434/v1"   # optional
    sandbox = "auto"
    max_usd = 1.0
    max_subcalls = 500
    max_requests = 1500   # HTTP requests (attempts and retries) that may reach a provider
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._foundation.budget import BUDGET_KEYS, Budget
from .._foundation.errors import ConfigurationError, InvalidSettingError
from .._foundation.limits import Limits
from .._foundation.pricing import Price
from .._foundation.validate import BUDGET_RULES, LIMITS_RULES, Rule
from ..lm import KEY_DEFAULTS
from ..sandbox import KINDS

NO_MODEL_HELP = """\
No model is configured. Configure one of these three ways (or pass --model):

  1. OpenAI
       export OPENAI_API_KEY=sk-...
       (default models: openai/gpt-5 for the root, openai/gpt-5-mini for sub-calls;
        choose others with FASTRLM_MODEL / FASTRLM_SUB_MODEL)

  2. A local OpenAI-compatible server (no key needed)
       Ollama:     export FASTRLM_MODEL=ollama/qwen2.5-coder:32b
                   (server at http://localhost:11434/v1; elsewhere: OLLAMA_BASE_URL=...)
       llama.cpp:  export FASTRLM_MODEL=llamacpp/default
                   (llama-server at http://localhost:8080/v1; elsewhere: LLAMACPP_BASE_URL=...)
       vLLM:       export FASTRLM_MODEL=vllm/Qwen/Qwen2.5-Coder-32B-Instruct
                   (server at http://localhost:8000/v1; elsewhere: VLLM_BASE_URL=...)
       any other:  export FASTRLM_MODEL=openai/<model> OPENAI_BASE_URL=http://host:port/v1

  3. Anthropic (pip install 'fastrlm[anthropic]')
       export ANTHROPIC_API_KEY=sk-ant-...
       (default models: anthropic/claude-sonnet-4-5, sub-calls anthropic/claude-haiku-4-5)

The same keys (model, sub_model, base_url, ...) can go in {config}.
`fastrlm demo` runs offline with a scripted model, no key needed."""

#: (root, sub) defaults when only a provider key is set.

#: The sandbox kinds a setting may name (their one owner is ``fastrlm.sandbox``).
SANDBOXES = KINDS

_STRING_KEYS = ("model", "sub_model", "base_url", "api_key", "sandbox")
#: The Limits fields the config file may set.
LIMITS_KEYS = ("max_concurrency", "question_chars")
#: The file's numeric keys, checked by the rules Budget and Limits use.
_NUMBER_KEYS: dict[str, Rule] = {
    **{name: BUDGET_RULES[name] for name in BUDGET_KEYS},
    **{name: LIMITS_RULES[name] for name in LIMITS_KEYS},
}
_FILE_KEYS = (*_STRING_KEYS, *_NUMBER_KEYS)


def config_path(env: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if env is None else env
    if environ.get("FASTRLM_CONFIG"):
        return Path(environ["FASTRLM_CONFIG"]).expanduser()
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "fastrlm" / "config.toml"


def read_config_file(path: Path) -> dict[str, Any]:
    """The file's settings, checked. A missing file is empty; a broken one is an error."""
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{path}: not valid TOML: {exc}") from exc
    for key, value in data.items():
        if key not in _FILE_KEYS:
            known = ", ".join(sorted(_FILE_KEYS))
            raise ConfigurationError(f"{path}: unknown key {key!r} (known: {known})")
        if key in _NUMBER_KEYS:
            try:
                _NUMBER_KEYS[key].check(key, value)
            except InvalidSettingError as exc:
                raise ConfigurationError(f"{path}: {exc}") from exc
        elif not isinstance(value, str):
            raise ConfigurationError(f"{path}: {key} must be a string, not {value!r}")
    return data


@dataclass(frozen=True, slots=True)
class Settings:
    """What a run will use, and where each value came from (``flag``, ``env``, ``file``...)."""

    model: str | None
    sub_model: str | None
    base_url: str | None
    api_key: str | None
    sandbox: str
    budget: dict[str, Any]
    limits: dict[str, Any] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)
    config_file: Path | None = None
    prices: tuple[tuple[str, Price], ...] = ()  # --price, on top of the price table

    def require_model(self) -> str:
        if self.model is None:
            raise NoModelConfigured(NO_MODEL_HELP.format(config=self.config_file))
        return self.model

    def make_budget(self) -> Budget:
        """The ``Budget`` these settings give (unset fields keep Budget's defaults). Raises
        :class:`~fastrlm.InvalidSettingError` for a value its rule refuses."""
        return Budget(**self.budget)

    def make_limits(self, **flags: Any) -> Limits:
        """The ``Limits`` of these settings, with a command's own Limits flags on top (``None``
        = not given), e.g. ``make_limits(trace_full_prompts=True)``. Raises
        :class:`~fastrlm.InvalidSettingError` for a value its rule refuses."""
        given = {name: value for name, value in flags.items() if value is not None}
        return Limits(**{**self.limits, **given})


class NoModelConfigured(ConfigurationError):
    """No flag, variable or config file names a model."""


def resolve_settings(
    flags: Mapping[str, Any], env: Mapping[str, str] | None = None, path: Path | None = None
) -> Settings:
    """Merge flags (``None`` = not given), the environment and the config file."""
    environ = os.environ if env is None else env
    cfg_path = path if path is not None else config_path(environ)
    file = read_config_file(cfg_path)
    origin: dict[str, str] = {}

    def pick(name: str, env_name: str | None = None) -> Any:
        if flags.get(name) is not None:
            origin[name] = "flag"
            return flags[name]
        if env_name and environ.get(env_name):
            origin[name] = env_name
            return environ[env_name]
        if name in file:
            origin[name] = str(cfg_path)
            return file[name]
        return None

    model = pick("model", "FASTRLM_MODEL")
    sub_model = pick("sub_model", "FASTRLM_SUB_MODEL")
    if model is None:
        for key_var, root, sub in KEY_DEFAULTS:
            if environ.get(key_var):
                model, origin["model"] = root, f"default for {key_var}"
                if sub_model is None:
                    sub_model, origin["sub_model"] = sub, f"default for {key_var}"
                break
    base_url = flags.get("base_url")
    api_key = None
    if base_url is not None:
        origin["base_url"] = "flag"
    elif model is not None and "base_url" in file and not _provider_env(model, environ, "url"):
        base_url, origin["base_url"] = file["base_url"], str(cfg_path)
    if model is not None and "api_key" in file and not _provider_env(model, environ, "key"):
        api_key = file["api_key"]
    sandbox = pick("sandbox") or "auto"
    if sandbox not in SANDBOXES:
        raise ConfigurationError(f"sandbox must be one of {', '.join(SANDBOXES)}, not {sandbox!r}")
    budget = {name: value for name in BUDGET_KEYS if (value := pick(name)) is not None}
    limits = {name: value for name in LIMITS_KEYS if (value := pick(name)) is not None}
    return Settings(
        model=model,
        sub_model=sub_model,
        base_url=base_url,
        api_key=api_key,
        sandbox=sandbox,
        budget=budget,
        limits=limits,
        origin=origin,
        config_file=cfg_path,
        prices=tuple(flags.get("prices") or ()),
    )


def _provider_env(model: str, environ: Mapping[str, str], what: str) -> bool:
    """Whether the environment already sets the base URL (``url``) or key (``key``) of the
    provider ``model`` names; the environment outranks the config file."""
    from ..lm import split_spec

    try:
        preset, _ = split_spec(model)
    except ConfigurationError:
        return False
    name = preset.base_url_env if what == "url" else preset.key_env
    return bool(name and environ.get(name))
