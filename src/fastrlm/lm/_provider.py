"""What providers share.

- :class:`Provider`: every provider's names, sampling, cache identity and the
  :class:`LMResponse` it builds from a reply.
- :class:`HTTPProvider`: a provider that talks to one HTTP endpoint (the core ``aiohttp``
  provider, the ``anthropic`` SDK): its constructor takes the options they share
  (:class:`HTTPOptions`), settles the names, key and base URL, the one :class:`RetryPolicy`,
  the pool size, and holds one client per event loop (:class:`LoopBoundClient`).
- :func:`shared_ssl_context`: the one TLS context every HTTP client verifies servers with.
"""

from __future__ import annotations

import abc
import asyncio
import functools
import hashlib
import json
import os
import ssl
import time
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any, ClassVar, Generic, TypedDict, TypeVar

from .._foundation.limits import DEFAULT_LIMITS, Limits
from ._base import ChatMessage, LMResponse, ToolSchema
from ._chat import ReadCompletion
from ._retry import Failure, RetryPolicy

#: A placeholder key for servers that need none (the SDKs refuse to start without one).
NO_KEY = "not-needed"

C = TypeVar("C")


class Provider:
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
        reply_id, reply_model = raw.get("id"), raw.get("model")
        return LMResponse(
            tool_calls=calls,  # type: ignore[arg-type]
            text=text,
            usage=usage,
            model=self._model,
            latency_s=time.monotonic() - started,
            finish_reason=finish,
            cost_usd=cost,
            raw=raw,
            response_id=reply_id if isinstance(reply_id, str) else None,
            response_model=reply_model if isinstance(reply_model, str) else None,
            server=endpoint(self.base_url),
        )


class HTTPOptions(TypedDict, total=False):
    """The constructor options every :class:`HTTPProvider` takes (each provider adds its own).

    ``api_model`` is the name sent on the wire (default: ``model`` without its provider
    prefix); ``base_url`` defaults to the provider's environment variable, then its public
    endpoint; ``api_key`` defaults to a placeholder for servers that need none; ``limits``
    sizes the pool and the default :class:`RetryPolicy`."""

    api_model: str | None
    base_url: str | None
    api_key: str | None
    temperature: float | None
    limits: Limits
    retry: RetryPolicy | None


class HTTPProvider(Provider, abc.ABC):
    """Base for providers that talk to one HTTP endpoint with a pooled client.

    The constructor settles the names (``"<provider>/<name>"``, the wire name), the one
    :class:`RetryPolicy` (a client's own retries stay off), the key, the base URL (argument,
    then ``_base_url_env``, then ``_default_base_url``), the temperature, the pool size and a
    client per event loop built by the subclass's ``_new_client``.
    """

    _default_provider: ClassVar[str]
    _base_url_env: ClassVar[str]
    _default_base_url: ClassVar[str]
    _provider: str
    _api_key: str
    retry: RetryPolicy
    pool_size: int

    def __init__(
        self,
        model: str,
        *,
        api_model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        temperature: float | None = None,
        limits: Limits = DEFAULT_LIMITS,
        retry: RetryPolicy | None = None,
    ) -> None:
        # The options are named here (not **kwargs) so that a misspelt one is a TypeError.
        default = (self._default_provider, "", model)
        provider, _, name = model.partition("/") if "/" in model else default
        self._model = f"{provider}/{name}"
        self._provider = provider
        self.api_model = api_model or name
        self._temperature = temperature
        self.retry = retry or RetryPolicy.from_limits(limits)
        # Never below the SDKs' own default pool (1,000), never below the engine's fan-out.
        self.pool_size = max(1000, limits.max_concurrency or 0)
        self._api_key = api_key or NO_KEY
        url = base_url or os.environ.get(self._base_url_env) or self._default_base_url
        self.base_url = url.rstrip("/")
        self._clients = LoopBoundClient(self._new_client)

    async def complete(
        self, messages: Sequence[ChatMessage], *, max_tokens: int | None = None,
        tools: Sequence[ToolSchema] | None = None,
    ) -> LMResponse:
        """One call: the request made once (:meth:`request_params`), each attempt sent and
        read by the subclass's :meth:`_sender`, under the one :class:`RetryPolicy`. Raises
        :class:`fastrlm.ProviderError` subclasses only, after retries."""
        send = self._sender(self.request_params(messages, max_tokens, tools), messages)
        started = time.monotonic()
        read = await self.retry.run(send, self._translate, self._catch(),
                                    provider=self._provider, model=self.api_model)
        return self._response(read, started)

    @abc.abstractmethod
    def request_params(
        self, messages: Sequence[ChatMessage], max_tokens: int | None,
        tools: Sequence[ToolSchema] | None = None,
    ) -> dict[str, Any]:
        """The request's fields (pure; used by tests)."""

    @abc.abstractmethod
    def _sender(
        self, params: dict[str, Any], messages: Sequence[ChatMessage]
    ) -> Callable[[], Awaitable[ReadCompletion]]:
        """One attempt of the call ``params`` describe: sends it and reads the reply (may
        refuse a request that cannot be sent at all, before any attempt)."""

    @abc.abstractmethod
    def _catch(self) -> tuple[type[BaseException], ...]:
        """The exceptions of an attempt that :meth:`_translate` turns into a failure."""

    @abc.abstractmethod
    def _translate(self, exc: BaseException) -> Failure:
        """One failed attempt as a :class:`Failure` (the typed error, whether to retry)."""

    async def aclose(self) -> None:
        await self._clients.aclose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._model!r}, base_url={self.base_url!r})"

    @abc.abstractmethod
    def _new_client(self) -> Any:
        """A new client, for the event loop running now (see :class:`LoopBoundClient`)."""


class LoopBoundClient(Generic[C]):
    """One client per event loop, closed when its loop shuts down.

    An async client pools connections that belong to the loop that opened them; reused from
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


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """The verifying TLS context of every provider's client, built once per process (each
    client, one per model and event loop, would otherwise build its own: 20-120 ms each).

    It is the SDKs' HTTP library's default (``httpx2``, or ``httpx`` in older releases: the
    system's trust store, ``truststore`` on macOS and Windows, ``SSL_CERT_FILE`` /
    ``SSL_CERT_DIR``) when an SDK brought it; without any SDK installed (the core needs none),
    the standard library's default context, which reads the same OpenSSL store and variables.
    """
    try:
        import httpx2 as http
    except ImportError:
        try:  # older SDK releases are built on httpx
            import httpx as http  # type: ignore[no-redef, import-not-found, unused-ignore]
        except ImportError:
            return ssl.create_default_context()
    context: ssl.SSLContext = http.create_ssl_context()
    return context


_PORTS = {"http": 80, "https": 443}


def endpoint(base_url: str | None) -> tuple[str, int] | None:
    """``(host, port)`` of a base URL (the scheme's port when it names none), or None."""
    if not base_url:
        return None
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(base_url)
        port = parts.port
    except ValueError:  # a port that is not a number
        return None
    if not parts.hostname:
        return None
    return parts.hostname, port if port is not None else _PORTS.get(parts.scheme, 443)
