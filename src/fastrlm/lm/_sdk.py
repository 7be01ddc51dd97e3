"""What the Stainless-generated SDKs (``anthropic``; ``openai``, under LiteLLM) need: exception
translation and their HTTP library's client with fastrlm's pool.

Both SDKs share one shape: ``APIStatusError`` (with ``status_code`` and ``response``),
``APITimeoutError`` (a subclass of ``APIConnectionError``) and ``APIResponseValidationError``.
LiteLLM's exceptions subclass ``openai``'s, so the same table serves it too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from types import ModuleType
from typing import Any

from .._foundation.errors import (
    ProviderConnectionError,
    ProviderError,
    ProviderResponseError,
    ProviderTimeoutError,
)
from ._provider import shared_ssl_context
from ._retry import Failure, error_for_status, hopeless


def catchable(sdk: ModuleType) -> tuple[type[BaseException], ...]:
    """The exception types an SDK call can raise that :func:`translate` understands."""
    return (sdk.APIError, json.JSONDecodeError, UnicodeDecodeError, RecursionError)


def translate(
    exc: BaseException, sdk: ModuleType, *, provider: str, model: str, base_url: str | None = None
) -> Failure:
    """Map one SDK exception to a :class:`Failure` (error to raise, whether to retry).
    Connection errors and timeouts name ``base_url``: the first thing to check is the URL."""
    kw: dict[str, Any] = {"provider": provider, "model": model}
    where = f"{provider} {model}"
    at = f" at {base_url}" if base_url else ""
    if isinstance(exc, sdk.APIStatusError):
        message = getattr(exc, "message", None) or str(exc)
        headers = dict(exc.response.headers.items()) if exc.response is not None else None
        return error_for_status(exc.status_code, message, headers, **kw)
    if isinstance(exc, sdk.APITimeoutError):
        return Failure(ProviderTimeoutError(f"{where}: request to the endpoint{at} timed out",
                                            **kw), retryable=True)
    if isinstance(exc, sdk.APIConnectionError):
        why = hopeless(exc)
        error = ProviderConnectionError(
            f"{where}: cannot reach the endpoint{at}: {exc} "
            f"({why or 'is the server running, and is the base URL right?'})", **kw)
        error.retryable = why is None
        return Failure(error, retryable=why is None)
    if isinstance(exc, sdk.APIResponseValidationError | json.JSONDecodeError | UnicodeDecodeError
                  | RecursionError):  # RecursionError: JSON nested too deeply to decode
        error2 = ProviderResponseError(f"{where}: malformed response: {exc}", **kw)
        return Failure(error2, retryable=True)
    return Failure(ProviderError(f"{where}: {type(exc).__name__}: {exc}", **kw), retryable=False)


def pool_limits(connections: int) -> Any:
    """Connection-pool limits for the SDKs' HTTP library (``httpx2`` in current releases,
    ``httpx`` in older ones): ``connections`` at once, up to 256 kept alive."""
    try:
        import httpx2 as http
    except ImportError:  # older SDK releases are built on httpx
        import httpx as http  # type: ignore[no-redef, import-not-found, unused-ignore]
    return http.Limits(max_connections=connections, max_keepalive_connections=min(connections, 256))


def http_client(factory: Callable[..., Any], *, pool_size: int, timeout_s: float) -> Any:
    """The SDK's ``DefaultAsyncHttpxClient`` (``factory``) with ``pool_size`` connections, the
    per-attempt timeout and the process's shared TLS context."""
    return factory(limits=pool_limits(pool_size), timeout=timeout_s, verify=shared_ssl_context())
