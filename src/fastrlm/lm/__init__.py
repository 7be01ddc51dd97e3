"""Model backends: the :class:`LM` protocol, providers and the registry that resolves strings.

- :func:`resolve` turns ``"provider/model"`` strings into providers (see :data:`PRESETS`).
- :func:`register_provider` adds a provider (a :class:`Preset`, and for a new wire API the
  factory that takes a :class:`Resolved`); packages add theirs through the
  ``fastrlm.providers`` entry point group. :func:`providers` lists them all.
- :class:`OpenAIChatLM`: the core provider (Chat Completions, one JSON POST over ``aiohttp``),
  for OpenAI and every OpenAI-compatible server (imported on first access, like the extras).
- :class:`AnthropicLM` (extra ``fastrlm[anthropic]``) and :class:`LiteLLMLM` (extra
  ``fastrlm[litellm]``) are imported on first access; without the extra, the access raises
  :class:`fastrlm.MissingExtraError` naming the ``pip install``.
- :class:`RetryPolicy`: backoff with jitter and ``Retry-After``, the one retry policy.
- :class:`SubcallCache`: the persistent sub-call cache (SQLite under ``$FASTRLM_HOME``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._base import (
    DEFAULT_CONCURRENCY,
    LM,
    ChatMessage,
    ImagePart,
    LMResponse,
    ToolCall,
    ToolSchema,
    default_concurrency,
    estimate_tokens,
    message_bytes,
    reply_report,
    warmup_prefix_tokens,
)
from ._cache import SubcallCache
from ._registry import (
    KEY_DEFAULTS,
    PRESETS,
    Preset,
    ProviderInfo,
    Resolved,
    broken_plugins,
    import_provider,
    providers,
    register_provider,
    resolve,
    split_spec,
)
from ._retry import RetryPolicy

if TYPE_CHECKING:
    from ._anthropic import AnthropicLM
    from ._azure import AzureOpenAIChatLM
    from ._litellm import LiteLLMLM
    from ._openai import OpenAIChatLM

__all__ = [
    "DEFAULT_CONCURRENCY",
    "KEY_DEFAULTS",
    "LM",
    "PRESETS",
    "AnthropicLM",
    "AzureOpenAIChatLM",
    "ChatMessage",
    "ImagePart",
    "LMResponse",
    "ToolCall",
    "ToolSchema",
    "LiteLLMLM",
    "OpenAIChatLM",
    "Preset",
    "ProviderInfo",
    "Resolved",
    "RetryPolicy",
    "SubcallCache",
    "broken_plugins",
    "default_concurrency",
    "estimate_tokens",
    "import_provider",
    "message_bytes",
    "providers",
    "register_provider",
    "reply_report",
    "resolve",
    "split_spec",
    "warmup_prefix_tokens",
]

_LAZY = {"AnthropicLM": "anthropic", "LiteLLMLM": "litellm"}


def __getattr__(name: str) -> object:
    # Providers load on first use: importing fastrlm must not pay for (or require) any SDK.
    if name == "OpenAIChatLM":
        from ._openai import OpenAIChatLM

        return OpenAIChatLM
    if name == "AzureOpenAIChatLM":
        from ._azure import AzureOpenAIChatLM

        return AzureOpenAIChatLM
    extra = _LAZY.get(name)
    if extra is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from ._registry import load_extra

    return load_extra(extra, name)
