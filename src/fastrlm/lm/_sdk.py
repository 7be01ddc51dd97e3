"""Exception translation for the Stainless-generated SDKs (``openai``, ``anthropic``).

Both SDKs share one shape: ``APIStatusError`` (with ``status_code`` and ``response``),
``APITimeoutError`` (a subclass of ``APIConnectionError``) and ``APIResponseValidationError``.
LiteLLM's exceptions subclass ``openai``'s, so the same table serves it too.
"""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

from .._exceptions import (
    ProviderConnectionError,
    ProviderError,
    ProviderResponseError,
    ProviderTimeoutError,
)
from ._retry import Failure, error_for_status


def catchable(sdk: ModuleType) -> tuple[type[BaseException], ...]:
    """The exception types an SDK call can raise that :func:`translate` understands."""
    return (sdk.APIError, json.JSONDecodeError, UnicodeDecodeError)


def translate(exc: BaseException, sdk: ModuleType, *, provider: str, model: str) -> Failure:
    """Map one SDK exception to a :class:`Failure` (error to raise, whether to retry)."""
    kw: dict[str, Any] = {"provider": provider, "model": model}
    where = f"{provider} {model}"
    if isinstance(exc, sdk.APIStatusError):
        message = getattr(exc, "message", None) or str(exc)
        headers = dict(exc.response.headers.items()) if exc.response is not None else None
        return error_for_status(exc.status_code, message, headers, **kw)
    if isinstance(exc, sdk.APITimeoutError):
        return Failure(ProviderTimeoutError(f"{where}: request timed out", **kw), retryable=True)
    if isinstance(exc, sdk.APIConnectionError):
        error = ProviderConnectionError(f"{where}: cannot reach the endpoint: {exc}", **kw)
        return Failure(error, retryable=True)
    if isinstance(exc, sdk.APIResponseValidationError | json.JSONDecodeError | UnicodeDecodeError):
        error2 = ProviderResponseError(f"{where}: malformed response: {exc}", **kw)
        return Failure(error2, retryable=True)
    return Failure(ProviderError(f"{where}: {type(exc).__name__}: {exc}", **kw), retryable=False)
