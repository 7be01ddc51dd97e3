"""Exception translation for the Stainless-generated SDKs (``openai``, ``anthropic``).

Both SDKs share one shape: ``APIStatusError`` (with ``status_code`` and ``response``),
``APITimeoutError`` (a subclass of ``APIConnectionError``) and ``APIResponseValidationError``.
LiteLLM's exceptions subclass ``openai``'s, so the same table serves it too.
"""

from __future__ import annotations

import asyncio
import functools
import json
import ssl
import weakref
from collections.abc import AsyncGenerator, Callable
from types import ModuleType
from typing import Any, Generic, TypeVar

from .._exceptions import (
    ProviderConnectionError,
    ProviderError,
    ProviderResponseError,
    ProviderTimeoutError,
)
from ._retry import Failure, error_for_status

C = TypeVar("C")


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
        error = ProviderConnectionError(
            f"{where}: cannot reach the endpoint{at}: {exc} (is the server running, and is the "
            "base URL right?)", **kw)
        return Failure(error, retryable=True)
    if isinstance(exc, sdk.APIResponseValidationError | json.JSONDecodeError | UnicodeDecodeError
                  | RecursionError):  # RecursionError: JSON nested too deeply to decode
        error2 = ProviderResponseError(f"{where}: malformed response: {exc}", **kw)
        return Failure(error2, retryable=True)
    return Failure(ProviderError(f"{where}: {type(exc).__name__}: {exc}", **kw), retryable=False)


class LoopBoundClient(Generic[C]):
    """One SDK client per event loop, closed when its loop shuts down.

    An async SDK client pools connections that belong to the loop that opened them; reused from
    another loop (``RLM.completion()`` twice: two ``asyncio.run``) it fails with "Event loop is
    closed". This holder builds a client per running loop and ties its lifetime to that loop
    with a started async generator: ``asyncio.run`` (and ``asyncio.Runner``) finalise pending
    async generators while the loop still runs, and the generator's ``finally`` closes the
    client there, so no socket outlives its loop.
    """

    def __init__(self, factory: Callable[[], C]) -> None:
        self._factory = factory
        self._client: C | None = None
        self._loop: weakref.ref[asyncio.AbstractEventLoop] | None = None
        self._guard: AsyncGenerator[None, None] | None = None

    async def get(self) -> C:
        """The client for the running loop (built on first use in each loop)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is None or self._loop() is not loop:
            client = self._factory()
            self._client, self._loop = client, weakref.ref(loop)
            # strong reference: the loop only keeps a weak one to pending generators
            self._guard = _close_at_loop_end(client)
            await self._guard.__anext__()
        return self._client

    async def aclose(self) -> None:
        """Close the client of the running loop; a later :meth:`get` builds a new one."""
        guard, self._guard, self._client, self._loop = self._guard, None, None, None
        if guard is not None:
            await guard.aclose()


async def _close_at_loop_end(client: Any) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await client.close()


def pool_limits(connections: int) -> Any:
    """Connection-pool limits for the SDKs' HTTP library (``httpx2`` in current releases,
    ``httpx`` in older ones): ``connections`` at once, up to 256 kept alive."""
    try:
        import httpx2 as http
    except ImportError:  # older SDK releases are built on httpx
        import httpx as http  # type: ignore[no-redef, import-not-found, unused-ignore]
    return http.Limits(max_connections=connections, max_keepalive_connections=min(connections, 256))


def count(obj: object, name: str) -> int | None:
    """``obj.name`` if it is a non-negative int (a token count), else ``None``: a server that
    sends ``"12"`` or ``null`` for a count must not crash the reading of its reply."""
    value = getattr(obj, name, None)
    if isinstance(value, dict):  # an untyped (constructed, unvalidated) SDK object
        value = None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """The SDKs' HTTP library's own default TLS context (its trust store, its environment
    variables such as SSL_CERT_FILE), built once per process: each SDK client, one per model and
    event loop, would otherwise build its own (20-120 ms each here)."""
    try:
        import httpx2 as http
    except ImportError:  # older SDK releases are built on httpx
        import httpx as http  # type: ignore[no-redef, import-not-found, unused-ignore]
    context: ssl.SSLContext = http.create_ssl_context()
    return context
