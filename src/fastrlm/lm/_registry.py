"""Model strings to providers: ``"provider/name"`` through a table of presets.

A preset names the wire API (``openai-chat``, ``anthropic``, ``litellm``), the default base URL,
the environment variables for the base URL and the key, and whether the hosted endpoint needs a
key. :func:`resolve` reads the preset, applies arguments over environment over defaults, and
hands the result to the API's factory. Adding a provider is adding a row, not a branch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .._config import Limits
from .._exceptions import ConfigurationError, MissingExtraError
from ._base import LM

#: With no model named anywhere, the first of these keys found in the environment picks the
#: root and sub-call models (the library and the CLI share this table).
KEY_DEFAULTS: tuple[tuple[str, str, str], ...] = (
    ("OPENAI_API_KEY", "openai/gpt-5", "openai/gpt-5-mini"),
    ("ANTHROPIC_API_KEY", "anthropic/claude-sonnet-4-5", "anthropic/claude-haiku-4-5"),
)

DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class Preset:
    """How to reach one provider.

    - ``api``: which factory builds it (``openai-chat``, ``anthropic``, ``litellm``).
    - ``base_url`` / ``base_url_env``: the default endpoint and the variable that overrides it.
    - ``key_env``: the variable holding the key; ``needs_key``: whether the *default* endpoint
      refuses calls without one (a key is never demanded for a URL the user chose).
    - ``detect_reasoning``: drive OpenAI reasoning models (o-series, gpt-5) by their name.
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


def _local(name: str, port: int, about: str) -> Preset:
    env = name.upper()
    return Preset(
        name,
        "openai-chat",
        f"http://localhost:{port}/v1",
        f"{env}_BASE_URL",
        f"{env}_API_KEY",
        about=about,
    )


PRESETS: Mapping[str, Preset] = MappingProxyType(
    {
        p.name: p
        for p in [
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
            _local("vllm", 8000, "vLLM's OpenAI-compatible server"),
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
            ),
            Preset(
                "together",
                "openai-chat",
                "https://api.together.xyz/v1",
                "TOGETHER_BASE_URL",
                "TOGETHER_API_KEY",
                needs_key=True,
                about="Together AI",
            ),
            Preset(
                "fireworks",
                "openai-chat",
                "https://api.fireworks.ai/inference/v1",
                "FIREWORKS_BASE_URL",
                "FIREWORKS_API_KEY",
                needs_key=True,
                about="Fireworks AI",
            ),
            Preset(
                "groq",
                "openai-chat",
                "https://api.groq.com/openai/v1",
                "GROQ_BASE_URL",
                "GROQ_API_KEY",
                needs_key=True,
                about="Groq",
            ),
            Preset(
                "deepseek",
                "openai-chat",
                "https://api.deepseek.com/v1",
                "DEEPSEEK_BASE_URL",
                "DEEPSEEK_API_KEY",
                needs_key=True,
                about="DeepSeek",
            ),
            Preset(
                "gemini",
                "openai-chat",
                "https://generativelanguage.googleapis.com/v1beta/openai",
                "GEMINI_BASE_URL",
                "GEMINI_API_KEY",
                needs_key=True,
                about="Google Gemini's OpenAI-compatible endpoint",
            ),
            Preset(
                "anthropic",
                "anthropic",
                "https://api.anthropic.com",
                "ANTHROPIC_BASE_URL",
                "ANTHROPIC_API_KEY",
                needs_key=True,
                about="Anthropic (extra: fastrlm[anthropic])",
            ),
            Preset(
                "litellm",
                "litellm",
                None,
                about="anything LiteLLM reaches (extra: fastrlm[litellm])",
            ),
        ]
    }
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

    @property
    def model(self) -> str:
        return f"{self.preset.name}/{self.name}"


Factory = Callable[[Resolved], LM]


def _openai_chat(r: Resolved) -> LM:
    from ._openai import OpenAIChatLM

    return OpenAIChatLM(
        r.model,
        api_model=r.name,
        base_url=r.base_url,
        api_key=r.api_key,
        temperature=r.temperature,
        limits=r.limits,
        reasoning=None if r.preset.detect_reasoning else False,
        default_headers=dict(r.preset.default_headers) or None,
    )


def _anthropic(r: Resolved) -> LM:
    cls = load_extra("anthropic", "AnthropicLM")
    lm: LM = cls(
        r.model,
        api_model=r.name,
        base_url=r.base_url,
        api_key=r.api_key,
        temperature=r.temperature,
        limits=r.limits,
    )
    return lm


def _litellm(r: Resolved) -> LM:
    cls = load_extra("litellm", "LiteLLMLM")
    lm: LM = cls(
        r.model, base_url=r.base_url, api_key=r.api_key, temperature=r.temperature, limits=r.limits
    )
    return lm


FACTORIES: dict[str, Factory] = {
    "openai-chat": _openai_chat,
    "anthropic": _anthropic,
    "litellm": _litellm,
}

# extra name -> (module that needs it, what it enables)
_EXTRAS = {
    "anthropic": ("._anthropic", "anthropic/ models (AnthropicLM)"),
    "litellm": ("._litellm", "litellm/ models (LiteLLMLM)"),
}


def load_extra(extra: str, attribute: str) -> type:
    """Import an extra's provider class; a missing SDK becomes :class:`MissingExtraError`."""
    import importlib

    module_name, purpose = _EXTRAS[extra]
    try:
        module = importlib.import_module(module_name, __package__)
    except ImportError as exc:
        if exc.name not in (extra, None) and not str(exc.name).startswith(extra + "."):
            raise
        raise MissingExtraError(extra, extra, purpose) from exc
    cls: type = getattr(module, attribute)
    return cls


def split_spec(spec: str) -> tuple[Preset, str]:
    """``"ollama/qwen2.5-coder:32b"`` -> (ollama preset, ``"qwen2.5-coder:32b"``); a bare name
    is OpenAI's. Raises :class:`ConfigurationError` for an unknown prefix or an empty name."""
    spec = spec.strip()
    prefix, sep, rest = spec.partition("/")
    if not sep:
        prefix, rest = "openai", spec
    preset = PRESETS.get(prefix.lower())
    if preset is None:
        known = ", ".join(sorted(PRESETS))
        raise ConfigurationError(
            f"unknown provider {prefix!r} in model {spec!r}; known providers: {known}. "
            "For another OpenAI-compatible server use 'openai/<model>' with base_url "
            "(or OPENAI_BASE_URL)."
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
    resolved = Resolved(preset, name, url or preset.base_url, key, temperature, limits)
    return FACTORIES[preset.api](resolved)
