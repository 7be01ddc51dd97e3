"""What every SDK-backed provider shares: its names, sampling and cache identity."""

from __future__ import annotations

import hashlib
import json
import time
from typing import ClassVar

from .._usage import TokenUsage
from ._base import LMResponse

#: What a provider reads from a reply: text, usage, finish reason, reported cost, raw fields.
ReadCompletion = tuple[str, TokenUsage, str | None, float | None, dict[str, object]]


class ProviderIdentity:
    """Mixin for providers: ``model`` (canonical ``provider/name``), ``temperature`` (``None``
    when the provider's default is used, or sampling is off for reasoning/thinking models) and a
    ``cache_key`` that names the API, endpoint, wire model and sampling parameters, never the
    credentials. Subclasses set ``_api`` and may add parameters with ``_cache_params``."""

    _api: ClassVar[str]
    _model: str
    api_model: str
    base_url: str | None
    _temperature: float | None

    @property
    def model(self) -> str:
        return self._model

    @property
    def temperature(self) -> float | None:
        return self._temperature

    def _cache_params(self) -> dict[str, object]:
        return {}

    def cache_key(self) -> str:
        """Provider, endpoint, wire model name and sampling parameters; never the key."""
        params = {
            "api": self._api,
            "base_url": self.base_url,
            "model": self.api_model,
            "temperature": self._temperature,
            **self._cache_params(),
        }
        digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
        return f"{self._model}:{digest[:16]}"

    def _response(self, read: ReadCompletion, started: float) -> LMResponse:
        """The :class:`LMResponse` for a reply read at ``time.monotonic()`` ``started``."""
        text, usage, finish, cost, raw = read
        return LMResponse(
            text=text,
            usage=usage,
            model=self._model,
            latency_s=time.monotonic() - started,
            finish_reason=finish,
            cost_usd=cost,
            raw=raw,
        )
