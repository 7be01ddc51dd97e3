"""Model strings to providers: ``"provider/name"`` through a table of presets.

A preset names the wire API (``openai-chat``, ``anthropic``, ``litellm``), the default base URL,
the environment variables for the base URL and the key, and whether the hosted endpoint needs a
key. :func:`resolve` reads the preset, applies arguments over environment over defaults, and
hands the result to the API's factory. Adding a provider is adding a row, not a branch.

The table is open: :func:`register_provider` adds a preset (and, for a new wire API, its
factory) at run time, and installed packages add theirs through the ``fastrlm.providers``
entry point group, loaded the first time a prefix is not built in (or when
:func:`providers` lists them, as ``fastrlm doctor`` does), never on ``import fastrlm``.
An entry point names a :class:`Preset`, a ``(Preset, factory)`` pair, or a callable taking no
arguments that returns one of these or a list of them. A plugin that fails to load is
reported by :func:`providers` and named when its prefix is asked for; it never breaks the
built-in providers.

Why over 500 lines: the table, the plugins that extend it and what reads a model string
through it (resolve, split, import) are one contract; apart, a row and its reader would part.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .._foundation.errors import ConfigurationError, MissingExtraError
from .._foundation.limits import DEFAULT_LIMITS, Limits
from ._base import LM, LOCAL_CONCURRENCY

if TYPE_CHECKING:
    from ._provider import HTTPOptions

#: With no model named anywhere, the first of these keys found in the environment picks the
#: root and sub-call models (the library and the CLI share this table).
KEY_DEFAULTS: tuple[tuple[str, str, str], ...] = (
    ("OPENAI_API_KEY", "openai/gpt-5", "openai/gpt-5-mini"),
    ("ANTHROPIC_API_KEY", "anthropic/claude-sonnet-4-5", "anthropic/claude-haiku-4-5"),
)


@dataclass(frozen=True, slots=True)
class Preset:
    """How to reach one provider.

    - ``api``: which factory builds it (``openai-chat``, ``anthropic``, ``litellm``).
    - ``base_url`` / ``base_url_env``: the default endpoint and the variable that overrides it.
    - ``key_env``: the variable holding the key; ``needs_key``: whether the *default* endpoint
      refuses calls without one (a key is never demanded for a URL the user chose).
    - ``detect_reasoning``: drive OpenAI reasoning models (o-series, gpt-5) by their name.
    - ``concurrency``: calls in flight at once when ``Limits.max_concurrency`` is unset (the
      model's ``default_concurrency``). Hosted APIs get what their usual rate limits carry;
      local servers more, since they queue instead of refusing and a fan-out keeps their batch
      full. An OpenAI-compatible model on a loopback URL counts as local
      (:data:`LOCAL_CONCURRENCY` at least).
    """

    name: str
    api: str
    base_url: str | None
    base_url_env: str | None = None
    key_env: str | None = None
    needs_key: bool = False
    detect_reasoning: bool = False
    default_headers: Mapping[str, str] = field(default_factory=dict)
    about: str = ""
    concurrency: int = 64


def _local(name: str, port: int, about: str, concurrency: int = LOCAL_CONCURRENCY) -> Preset:
    env = name.upper()
    return Preset(
        name,
        "openai-chat",
        f"http://localhost:{port}/v1",
        f"{env}_BASE_URL",
        f"{env}_API_KEY",
        about=about,
        concurrency=concurrency,
    )


_BUILTIN: tuple[Preset, ...] = tuple(
    [
        Preset(
            "openai",
            "openai-chat",
            "https://api.openai.com/v1",
            "OPENAI_BASE_URL",
            "OPENAI_API_KEY",
            needs_key=True,
            detect_reasoning=True,
            about="OpenAI, or any compatible server via OPENAI_BASE_URL",
        ),
        _local("ollama", 11434, "Ollama's OpenAI-compatible endpoint"),
        _local("vllm", 8000, "vLLM's OpenAI-compatible server", concurrency=256),
        _local("llamacpp", 8080, "llama.cpp's llama-server"),
        _local("lmstudio", 1234, "LM Studio's local server"),
        Preset(
            "openrouter",
            "openai-chat",
            "https://openrouter.ai/api/v1",
            "OPENROUTER_BASE_URL",
            "OPENROUTER_API_KEY",
            needs_key=True,
            default_headers={"X-Title": "fastrlm"},
            about="OpenRouter",
            concurrency=32,
        ),
        Preset(
            "together",
            "openai-chat",
            "https://api.together.xyz/v1",
            "TOGETHER_BASE_URL",
            "TOGETHER_API_KEY",
            needs_key=True,
            about="Together AI",
            concurrency=32,
        ),
        Preset(
            "fireworks",
            "openai-chat",
            "https://api.fireworks.ai/inference/v1",
            "FIREWORKS_BASE_URL",
            "FIREWORKS_API_KEY",
            needs_key=True,
            about="Fireworks AI",
            concurrency=32,
        ),
        Preset(
            "groq",
            "openai-chat",
            "https://api.groq.com/openai/v1",
            "GROQ_BASE_URL",
            "GROQ_API_KEY",
            needs_key=True,
            about="Groq",
            concurrency=16,
        ),
        Preset(
            "deepseek",
            "openai-chat",
            "https://api.deepseek.com/v1",
            "DEEPSEEK_BASE_URL",
            "DEEPSEEK_API_KEY",
            needs_key=True,
            about="DeepSeek",
            concurrency=32,
        ),
        Preset(
            "gemini",
            "openai-chat",
            "https://generativelanguage.googleapis.com/v1beta/openai",
            "GEMINI_BASE_URL",
            "GEMINI_API_KEY",
            needs_key=True,
            about="Google Gemini's OpenAI-compatible endpoint",
            concurrency=16,
        ),
        Preset(
            "anthropic",
            "anthropic",
            "https://api.anthropic.com",
            "ANTHROPIC_BASE_URL",
            "ANTHROPIC_API_KEY",
            needs_key=True,
            about="Anthropic (extra: fastrlm[anthropic])",
            concurrency=32,
        ),
        Preset(
            "azure",
            "azure-openai",
            None,
            "AZURE_OPENAI_ENDPOINT",
            "AZURE_OPENAI_API_KEY",
            detect_reasoning=True,
            about="Azure OpenAI: azure/<deployment>; AZURE_OPENAI_ENDPOINT, a key "
            "(AZURE_OPENAI_API_KEY) or Entra ID token (AZURE_OPENAI_AD_TOKEN), "
            "AZURE_OPENAI_API_VERSION",
            concurrency=32,
        ),
        Preset(
            "litellm",
            "litellm",
            None,
            about="anything LiteLLM reaches (extra: fastrlm[litellm])",
            concurrency=32,
        ),
    ]
)


@dataclass(frozen=True, slots=True)
class Resolved:
    """What a factory receives: the preset and the settled configuration."""

    preset: Preset
    name: str
    base_url: str | None
    api_key: str | None
    temperature: float | None
    limits: Limits
    #: The environment it was resolved in (``resolve(env=...)``), for a provider that reads
    #: more than the base URL and key (Azure's API version and token).
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def model(self) -> str:
        return f"{self.preset.name}/{self.name}"

    def options(self) -> HTTPOptions:
        """The settled options every HTTP provider takes."""
        return {"api_model": self.name, "base_url": self.base_url, "api_key": self.api_key,
                "temperature": self.temperature, "limits": self.limits}


Factory = Callable[[Resolved], LM]


def _openai_chat(r: Resolved) -> LM:
    from ._openai import OpenAIChatLM

    return OpenAIChatLM(
        r.model,
        reasoning=None if r.preset.detect_reasoning else False,
        default_headers=dict(r.preset.default_headers) or None,
        default_concurrency=r.preset.concurrency,
        **r.options(),
    )


def _azure_openai(r: Resolved) -> LM:
    from ._azure import AzureOpenAIChatLM, azure_options

    return AzureOpenAIChatLM(
        r.model,
        reasoning=None if r.preset.detect_reasoning else False,
        default_headers=dict(r.preset.default_headers) or None,
        default_concurrency=r.preset.concurrency,
        **azure_options(r.env, has_key=bool(r.api_key)),
        **r.options(),
    )


def _anthropic(r: Resolved) -> LM:
    cls = load_extra("anthropic", "AnthropicLM")
    return _with_preset_concurrency(cls(r.model, **r.options()), r)


def _litellm(r: Resolved) -> LM:
    cls = load_extra("litellm", "LiteLLMLM")
    built = cls(
        r.model, base_url=r.base_url, api_key=r.api_key, temperature=r.temperature, limits=r.limits
    )
    return _with_preset_concurrency(built, r)


def _with_preset_concurrency(built: Any, r: Resolved) -> LM:
    """``built`` (an extra's provider) with its preset's calls in flight at once."""
    built.default_concurrency = r.preset.concurrency
    lm: LM = built
    return lm


ENTRY_POINT_GROUP = "fastrlm.providers"
BUILT_IN = "built-in"

_presets: dict[str, Preset] = {p.name: p for p in _BUILTIN}
_factories: dict[str, Factory] = {
    "openai-chat": _openai_chat,
    "azure-openai": _azure_openai,
    "anthropic": _anthropic,
    "litellm": _litellm,
}
_sources: dict[str, str] = dict.fromkeys(_presets, BUILT_IN)
_broken: dict[str, str] = {}  # entry point name -> why it did not load
_plugins_loaded = False
_lock = threading.RLock()

#: Every known provider prefix -> its preset (a live, read-only view of the registry).
PRESETS: Mapping[str, Preset] = MappingProxyType(_presets)
#: Wire API name -> the factory that builds its :class:`LM` (live, read-only view).
FACTORIES: Mapping[str, Factory] = MappingProxyType(_factories)

_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*")


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    """One row of :func:`providers`: the preset and where it came from (``"built-in"``,
    ``"entry point NAME (DIST VERSION)"`` or ``"register_provider()"``)."""

    preset: Preset
    source: str


def register_provider(
    preset: Preset, factory: Factory | None = None, *, replace: bool = False
) -> None:
    """Make ``"<preset.name>/<model>"`` strings resolve through ``preset``.

    With ``factory``, ``preset.api`` names a new wire API built by it (a callable taking a
    :class:`Resolved` and returning an :class:`LM`); without, ``preset.api`` must be a known
    one (``openai-chat`` for any OpenAI-compatible server). Raises :class:`ConfigurationError`
    for a name that is not a lowercase prefix, an unknown API, or a name or API already taken
    (pass ``replace=True`` to override one on purpose).
    """
    _register(preset, factory, replace=replace, source="register_provider()")


def _register(preset: Preset, factory: Factory | None, *, replace: bool, source: str) -> None:
    if not isinstance(preset, Preset):
        raise ConfigurationError(
            f"register_provider takes a fastrlm.lm.Preset, not {type(preset).__name__}"
        )
    if not _NAME.fullmatch(preset.name):
        raise ConfigurationError(
            f"provider name {preset.name!r} must be lowercase letters, digits, '_', '.' or '-' "
            "(it is the prefix before '/' in model strings)"
        )
    with _lock:
        if preset.name in _presets and not replace:
            raise ConfigurationError(
                f"provider {preset.name!r} is already registered ({_sources[preset.name]}); "
                "pass replace=True to override it"
            )
        if factory is not None:
            if not callable(factory):
                raise ConfigurationError(f"the factory for {preset.api!r} is not callable")
            taken = _factories.get(preset.api)
            if taken is not None and taken is not factory and not replace:
                raise ConfigurationError(
                    f"wire API {preset.api!r} already has a factory; name the new API "
                    "differently or pass replace=True"
                )
            _factories[preset.api] = factory
        elif preset.api not in _factories:
            known = ", ".join(sorted(_factories))
            raise ConfigurationError(
                f"provider {preset.name!r} uses wire API {preset.api!r}, which has no factory; "
                f"known APIs: {known} (or pass factory=...)"
            )
        _presets[preset.name] = preset
        _sources[preset.name] = source


def providers() -> list[ProviderInfo]:
    """Every registered provider: the built-in ones in table order, then the rest by name
    (entry points are loaded first). Broken plugins are in :func:`broken_plugins`."""
    load_plugins()
    with _lock:
        rows = [ProviderInfo(p, _sources[name]) for name, p in _presets.items()]
    built_in = [r for r in rows if r.source == BUILT_IN]
    return built_in + sorted((r for r in rows if r.source != BUILT_IN), key=lambda r: r.preset.name)


def broken_plugins() -> dict[str, str]:
    """Entry points of ``fastrlm.providers`` that failed to load: name -> the reason."""
    load_plugins()
    with _lock:
        return dict(_broken)


def load_plugins(*, reload: bool = False) -> None:
    """Load the ``fastrlm.providers`` entry points (once; ``reload=True`` looks again)."""
    global _plugins_loaded
    from importlib import metadata

    with _lock:
        if _plugins_loaded and not reload:
            return
        _plugins_loaded = True
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(ep, "dist", None)
            where = f"entry point {ep.name}" + (
                f" ({dist.name} {dist.version})" if dist is not None else ""
            )
            try:
                rows = list(_plugin_rows(ep.load()))
                for preset, factory in rows:
                    if _sources.get(preset.name) == where:
                        continue  # this plugin's own row, loaded before a reload
                    _register(preset, factory, replace=False, source=where)
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the rest
                _broken[ep.name] = f"{where}: {type(exc).__name__}: {exc}"
            else:
                _broken.pop(ep.name, None)


def _plugin_rows(obj: object) -> Iterable[tuple[Preset, Factory | None]]:
    if callable(obj) and not isinstance(obj, Preset):
        obj = obj()
    items = obj if isinstance(obj, list) else [obj]
    for item in items:
        if isinstance(item, Preset):
            yield item, None
        elif (
            isinstance(item, tuple)
            and len(item) == 2
            and isinstance(item[0], Preset)
            and callable(item[1])
        ):
            yield item[0], item[1]
        else:
            raise ConfigurationError(
                "a fastrlm.providers entry point must give a Preset, a (Preset, factory) "
                f"pair, or a list of them; got {type(item).__name__}"
            )


# extra name -> (module that needs it, what it enables)
#: extra -> (the provider's module, what it is for, the packages the extra installs)
_EXTRAS = {
    "anthropic": ("._anthropic", "anthropic/ models (AnthropicLM)", ("anthropic",)),
    "litellm": ("._litellm", "litellm/ models (LiteLLMLM)", ("litellm", "openai")),
}


def load_extra(extra: str, attribute: str) -> type:
    """Import an extra's provider class; a missing SDK becomes :class:`MissingExtraError`."""
    import importlib

    module_name, purpose, packages = _EXTRAS[extra]
    try:
        module = importlib.import_module(module_name, __package__)
    except ImportError as exc:
        missing = str(exc.name or extra).partition(".")[0]
        if missing not in packages:
            raise
        raise MissingExtraError(extra, missing, purpose) from exc
    cls: type = getattr(module, attribute)
    return cls


#: Wire API name -> the module its built-in factory imports (the extras' from :data:`_EXTRAS`).
_API_MODULES = {"openai-chat": "._openai", "azure-openai": "._azure",
                **{api: module for api, (module, _, _) in _EXTRAS.items()}}


def import_provider(spec: str) -> None:
    """Import the module that builds model ``spec``'s :class:`LM` (its HTTP client and TLS
    set-up, ~0.1 s) without building it, e.g. in a thread while a large context loads. Does
    nothing for a prefix or API only a plugin knows (:func:`resolve` reports on those); raises
    ``ImportError`` when an extra's SDK is missing."""
    import importlib

    preset = _presets.get(_prefix_and_name(spec)[0].lower())
    module = _API_MODULES.get(preset.api) if preset is not None else None
    if module is not None:
        importlib.import_module(module, __package__)


def _prefix_and_name(spec: str) -> tuple[str, str]:
    """``"ollama/x"`` -> (``"ollama"``, ``"x"``), as written; a bare name is OpenAI's."""
    spec = spec.strip()
    prefix, sep, rest = spec.partition("/")
    return (prefix, rest) if sep else ("openai", spec)


def split_spec(spec: str) -> tuple[Preset, str]:
    """``"ollama/qwen2.5-coder:32b"`` -> (ollama preset, ``"qwen2.5-coder:32b"``); a bare name
    is OpenAI's. Raises :class:`ConfigurationError` for an unknown prefix or an empty name."""
    spec = spec.strip()
    prefix, rest = _prefix_and_name(spec)
    preset = _presets.get(prefix.lower())
    if preset is None:
        load_plugins()
        preset = _presets.get(prefix.lower())
    if preset is None:
        known = ", ".join(sorted(_presets))
        broken = "".join(f" A plugin failed to load: {why}." for why in broken_plugins().values())
        raise ConfigurationError(
            f"unknown provider {prefix!r} in model {spec!r}; known providers: {known}. "
            "For another OpenAI-compatible server use 'openai/<model>' with base_url "
            f"(or OPENAI_BASE_URL); to add a provider, see fastrlm.lm.register_provider.{broken}"
        )
    if not rest:
        raise ConfigurationError(f"model {spec!r} names no model after {prefix!r}")
    return preset, rest


def resolve(
    spec: str,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    temperature: float | None = None,
    limits: Limits = DEFAULT_LIMITS,
    env: Mapping[str, str] | None = None,
) -> LM:
    """Build the :class:`LM` that ``spec`` names.

    Arguments win over environment variables (``env`` defaults to ``os.environ``), which win
    over the preset's defaults. Raises :class:`ConfigurationError` for an unknown provider or
    a hosted endpoint without its key (the message names the variable), and
    :class:`MissingExtraError` when the provider's extra is not installed.
    """
    environ = os.environ if env is None else env
    preset, name = split_spec(spec)
    url = base_url or (environ.get(preset.base_url_env) if preset.base_url_env else None) or None
    key = api_key or (environ.get(preset.key_env) if preset.key_env else None) or None
    if preset.needs_key and not key and url is None:
        raise ConfigurationError(
            f"{preset.name}/{name} needs an API key: set {preset.key_env} (or pass api_key=...)"
        )
    resolved = Resolved(preset, name, url or preset.base_url, key, temperature, limits, environ)
    return _factories[preset.api](resolved)
