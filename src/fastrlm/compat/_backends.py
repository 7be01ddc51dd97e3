"""The official ``backend`` / ``backend_kwargs`` / ``sampling_args`` as fastrlm models, and
``max_budget``'s price table: what :mod:`fastrlm.compat.rlms` builds an RLM's models with when
:func:`~fastrlm.compat.rlms.get_client` is not replaced."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .._foundation.errors import ConfigurationError
from .._foundation.limits import Limits
from .._foundation.pricing import PriceTable
from ..lm import LM, resolve
from ._types import _warn_once

#: official backend -> fastrlm provider prefix
BACKENDS = {
    "openai": "openai",
    "vllm": "vllm",
    "openrouter": "openrouter",
    "anthropic": "anthropic",
    "gemini": "gemini",
    "litellm": "litellm",
    "portkey": "openai",
}
#: base URL used when backend_kwargs has none (Portkey speaks the OpenAI API)
_BACKEND_URLS = {"portkey": "https://api.portkey.ai/v1"}
_BACKEND_KEYS = ("model_name", "api_key", "base_url")


def _budget_prices(max_budget: float | None, models: Sequence[LM],
                   given: PriceTable | None) -> PriceTable | None:
    """With ``max_budget`` and no ``prices=`` of the caller's, a price table in which a model
    fastrlm has no price for costs $0: the official package counts only the cost a backend
    reports, so a model without one runs and never uses up the budget. Warns once naming such
    models. A caller's own table is used as given (fastrlm refuses a model it does not price)."""
    if max_budget is None or given is not None:
        return given  # a table of the caller's own: fastrlm checks every model has a price
    unpriced = PriceTable.default().unpriced(lm.model for lm in models)
    if not unpriced:
        return None
    _warn_once(f"max_budget:{','.join(unpriced)}",
               f"rlms compat: no price is known for {', '.join(unpriced)}; its calls count $0 "
               "against max_budget (as the official package counts a backend that reports no "
               "cost), so max_budget does not limit them. Give prices to enforce it: "
               "RLM(..., prices=fastrlm.PriceTable({'name': {'input': USD_per_1M, 'output': "
               "USD_per_1M}})) or $FASTRLM_HOME/prices.json")
    return PriceTable.default({model: {"input": 0.0, "output": 0.0} for model in unpriced})


def _backend_prefix(backend: str, kwargs: Mapping[str, Any] | None, where: str) -> str:
    """fastrlm's provider prefix for official ``backend``. Raises ConfigurationError for an
    unknown backend or no ``model_name`` (checked when the RLM is built, before any client)."""
    if backend == "azure_openai":
        raise ConfigurationError(
            "backend='azure_openai' is not mapped by fastrlm's compat layer; use "
            "backend='litellm' with backend_kwargs={'model_name': 'azure/<deployment>'} "
            "(and LiteLLM's AZURE_* variables), or backend='openai' with Azure's "
            "OpenAI-compatible base_url")
    prefix = BACKENDS.get(backend)
    if prefix is None:
        raise ConfigurationError(f"{where}: unknown backend {backend!r} (known: "
                                 f"{', '.join(sorted([*BACKENDS, 'azure_openai']))})")
    options = dict(kwargs or {})
    model_name = options.get("model_name")
    if not isinstance(model_name, str) or not model_name:
        raise ConfigurationError(f"{where}: backend_kwargs needs 'model_name', e.g. "
                                 "{'model_name': 'gpt-5-mini'}")
    extra = sorted(set(options) - set(_BACKEND_KEYS))
    if extra:
        _warn_once(f"backend_kwargs:{','.join(extra)}",
                   f"rlms compat: backend_kwargs {', '.join(extra)} are ignored (fastrlm uses "
                   "model_name, api_key and base_url; timeouts and retries are Limits)")
    return prefix


def _warn_sampling(sampling: Mapping[str, Any] | None) -> None:
    for key in sampling or {}:
        if key != "temperature":
            _warn_once(f"sampling_args:{key}", f"rlms compat: sampling argument {key!r} is "
                       "ignored (fastrlm sets temperature only; max tokens are Limits)")


def _backend_lm(backend: str, kwargs: Mapping[str, Any] | None,
                sampling: Mapping[str, Any] | None, limits: Limits, where: str) -> LM:
    prefix = _backend_prefix(backend, kwargs, where)
    options = dict(kwargs or {})
    model_name = options["model_name"]
    temperature = (sampling or {}).get("temperature")
    return resolve(f"{prefix}/{model_name}",
                   base_url=options.get("base_url") or _BACKEND_URLS.get(backend),
                   api_key=options.get("api_key"),
                   temperature=None if temperature is None else float(temperature), limits=limits)
