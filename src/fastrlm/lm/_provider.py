"""What every SDK-backed provider shares: its names, sampling, cache identity, and (for the SDKs
that talk HTTP through httpx) the retry policy, the connection pool and one client per loop."""

from __future__ import annotations

import abc
import hashlib
import json
import os
import time
from collections.abc import Callable
from typing import Any, ClassVar

from .._core.limits import Limits
from .._usage import TokenUsage
from . import _sdk
from ._base import LMResponse
from ._retry import RetryPolicy

#: A placeholder key for servers that need none (the SDKs refuse to start without one).
NO_KEY = "not-needed"

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
        calls = raw.pop("tool_calls", ())
        return LMResponse(
            tool_calls=calls,  # type: ignore[arg-type]
            text=text,
            usage=usage,
            model=self._model,
            latency_s=time.monotonic() - started,
            finish_reason=finish,
            cost_usd=cost,
            raw=raw,
        )


class SDKProvider(ProviderIdentity, abc.ABC):
    """Mixin for providers built on an httpx-based SDK (``openai``, ``anthropic``).

    :meth:`_setup` settles the names (``"<provider>/<name>"``, the wire name), the one
    :class:`RetryPolicy` (the SDK's own retries stay off), the key, the base URL (argument, then
    ``_base_url_env``, then ``_default_base_url``) and a client per event loop built by the
    subclass's ``_new_client``, which takes its HTTP client from :meth:`_http_client`.
    """

    _default_provider: ClassVar[str]
    _base_url_env: ClassVar[str]
    _default_base_url: ClassVar[str]
    _provider: str
    _api_key: str
    retry: RetryPolicy
    pool_size: int

    def _setup(
        self,
        model: str,
        *,
        api_model: str | None,
        base_url: str | None,
        api_key: str | None,
        limits: Limits,
        retry: RetryPolicy | None,
    ) -> None:
        default = (self._default_provider, "", model)
        provider, _, name = model.partition("/") if "/" in model else default
        self._model = f"{provider}/{name}"
        self._provider = provider
        self.api_model = api_model or name
        self.retry = retry or RetryPolicy.from_limits(limits)
        # Never below the SDK's own default pool (1,000), never below the engine's fan-out.
        self.pool_size = max(1000, limits.max_concurrency or 0)
        self._api_key = api_key or NO_KEY
        url = base_url or os.environ.get(self._base_url_env) or self._default_base_url
        self.base_url = url.rstrip("/")
        self._clients = _sdk.LoopBoundClient(self._new_client)

    @abc.abstractmethod
    def _new_client(self) -> Any:
        """A new SDK client, for the event loop running now (see ``_sdk.LoopBoundClient``)."""

    def _http_client(self, factory: Callable[..., Any]) -> Any:
        """The SDK's ``DefaultAsyncHttpxClient`` (``factory``) with fastrlm's pool, timeout and
        the process's shared TLS context."""
        return factory(
            limits=_sdk.pool_limits(self.pool_size),
            timeout=self.retry.timeout_s,
            verify=_sdk.shared_ssl_context(),
        )
