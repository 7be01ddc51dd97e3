"""The core provider: OpenAI's Chat Completions API, over ``aiohttp``.

It reaches OpenAI and every OpenAI-compatible server (vLLM, Ollama, llama.cpp, LM Studio,
OpenRouter, Together, Fireworks, ...). The request is one JSON POST, sent by ``aiohttp`` rather
than the ``openai`` SDK: on the fan-out path the client's CPU per request is the ceiling, and
there the SDK costs ~3.4 ms a request, plain ``httpx2`` ~2.3 ms and ``aiohttp`` ~0.45 ms (issue 18,
``benchmarks/vs_official/http_clients.py``; docs/performance.md). The SDK's typed models add
nothing here: the reply is read as JSON by the one Chat Completions reader (``_chat``).
What the SDK gave is kept: HTTP errors become the typed tree (:func:`_retry.error_for_status`,
``Retry-After`` included), one :class:`RetryPolicy` repeats attempts (each under its timeout,
each retry asked of the budget ledger), TLS verifies with the system's trust store
(:func:`_provider.shared_ssl_context`), proxies come from the environment, and ``OPENAI_ORG_ID`` /
``OPENAI_PROJECT_ID`` become the headers the SDK sends for them. The pool is sized from
``Limits.max_concurrency`` so that the engine's semaphore is the only limit on fan-out.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Unpack

import aiohttp

from .._foundation.errors import ProviderConnectionError, ProviderResponseError
from .._foundation.net import is_loopback
from ._base import DEFAULT_CONCURRENCY, LOCAL_CONCURRENCY, ChatMessage, ToolSchema
from ._chat import ReadCompletion, read_completion, wire_message
from ._provider import HTTPOptions, HTTPProvider, shared_ssl_context
from ._retry import Failure, error_for_status, hopeless

# OpenAI reasoning models take max_completion_tokens and reject temperature.
_REASONING = re.compile(r"^(o\d+(-|$)|gpt-5(?!-chat))")
DEFAULT_BASE_URL = "https://api.openai.com/v1"
#: A base URL whose path names an API version (``/v1``, ``/api/v2``, ``/openai/v1beta``...).
_VERSIONED = re.compile(r"^[a-z]+://[^/]+(/.*)?/v\d+[a-z0-9]*(/|$)", re.IGNORECASE)

_JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
#: environment variable -> header, as the openai SDK sends them
_ENV_HEADERS = (("OPENAI_ORG_ID", "OpenAI-Organization"), ("OPENAI_PROJECT_ID", "OpenAI-Project"))


class HTTPStatusError(Exception):
    """A reply with an error status, before translation (carries what translation reads)."""

    def __init__(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body
        self.headers = dict(headers)


def is_reasoning_model(name: str) -> bool:
    """True for OpenAI's reasoning families (o1/o3/o4..., gpt-5*, except gpt-5-chat*)."""
    return bool(_REASONING.match(name.rsplit("/", 1)[-1].lower())) and not name.lower().endswith(
        "-chat-latest"
    )


class OpenAIChatLM(HTTPProvider):
    """A model behind an OpenAI-compatible Chat Completions endpoint.

    ``model`` is the canonical ``provider/name`` string (pricing, usage); ``api_model`` is the
    name sent on the wire (default: ``model`` without its provider prefix). ``reasoning=None``
    detects OpenAI reasoning models by name; for those ``max_tokens`` is sent as
    ``max_completion_tokens`` and ``temperature`` is not sent (and :attr:`temperature` is None).

    :meth:`complete` raises :class:`fastrlm.ProviderError` subclasses only, after retries.
    A reply without ``usage`` gets an estimate (``usage.estimated=True``); a reply without
    choices or without text raises :class:`fastrlm.ProviderResponseError`.
    Besides its own options it takes :class:`~fastrlm.lm._provider.HTTPOptions` (``api_model``,
    ``base_url``, ``api_key``, ``temperature``, ``limits``, ``retry``).
    """

    _api = "openai-chat"
    #: Chat Completions takes ``tools`` (function calling); sub-agents use it natively.
    supports_tools = True
    _default_provider = "openai"
    _base_url_env = "OPENAI_BASE_URL"
    _default_base_url = DEFAULT_BASE_URL

    def __init__(
        self,
        model: str,
        *,
        reasoning: bool | None = None,
        default_headers: dict[str, str] | None = None,
        extra_body: dict[str, Any] | None = None,
        default_concurrency: int = DEFAULT_CONCURRENCY,
        **options: Unpack[HTTPOptions],
    ) -> None:
        super().__init__(model, **options)
        self._reasoning = is_reasoning_model(self.api_model) if reasoning is None else reasoning
        if self._reasoning:
            self._temperature = None
        self._extra_body = dict(extra_body or {})
        self._headers = default_headers
        self._proxy: str | None = None
        self._proxy_auth: aiohttp.BasicAuth | None = None
        #: Calls in flight at once when ``Limits.max_concurrency`` is unset: the preset's, and
        #: at least :data:`LOCAL_CONCURRENCY` for a server on this machine.
        self.default_concurrency = (
            max(default_concurrency, LOCAL_CONCURRENCY) if is_loopback(self._endpoint)
            else default_concurrency
        )

    def _new_client(self) -> aiohttp.ClientSession:
        """An ``aiohttp`` session for the running loop: the pool holds ``pool_size``
        connections, TLS verifies with the shared context (https endpoints), proxies come from
        the environment.
        Each attempt's time limit is the :class:`RetryPolicy`'s scope, so the session sets none."""
        # A plain-HTTP endpoint (a local server) never needs the context, whose first build
        # may import an SDK's HTTP library and reads the trust store (~0.5 s here).
        tls = shared_ssl_context() if self._endpoint.startswith("https:") else True
        connector = aiohttp.TCPConnector(limit=self.pool_size, limit_per_host=0, ssl=tls)
        # The proxy is read from the environment here, once: aiohttp's trust_env would look it
        # (and ~/.netrc) up again in a worker thread on every request, ~0.5 ms each.
        self._proxy, self._proxy_auth = proxy_for(self._endpoint)
        return aiohttp.ClientSession(
            connector=connector,
            headers=self.request_headers(),
            timeout=aiohttp.ClientTimeout(total=None),
        )

    def request_headers(self) -> dict[str, str]:
        """The headers of every request (pure; used by tests): the key, JSON, the preset's
        and the caller's headers, and the organisation/project the environment names."""
        headers = {"Authorization": f"Bearer {self._api_key}", "User-Agent": "fastrlm",
                   **_JSON_HEADERS}
        for env, header in _ENV_HEADERS:
            if os.environ.get(env):
                headers[header] = os.environ[env]
        headers.update(self._headers or {})
        return headers

    @property
    def reasoning(self) -> bool:
        """Whether this model is driven as a reasoning model (see the class docstring)."""
        return self._reasoning

    def _cache_params(self) -> dict[str, object]:
        return {"extra": self._extra_body}

    def request_params(
        self, messages: Sequence[ChatMessage], max_tokens: int | None,
        tools: Sequence[ToolSchema] | None = None,
    ) -> dict[str, Any]:
        """The request's fields, as the openai SDK's ``chat.completions.create`` takes them
        (``extra_body`` is merged into the JSON body when sent). Pure; used by tests."""
        params: dict[str, Any] = {
            "model": self.api_model,
            "messages": [wire_message(m) for m in messages],
        }
        if tools:
            params["tools"] = [
                {"type": "function", "function": {
                    "name": t["name"], "description": t.get("description", ""),
                    "parameters": t.get("parameters") or {"type": "object", "properties": {}},
                }}
                for t in tools
            ]
        if max_tokens is not None:
            params["max_completion_tokens" if self._reasoning else "max_tokens"] = max_tokens
        if self._temperature is not None:
            params["temperature"] = self._temperature
        if self._extra_body:
            params["extra_body"] = self._extra_body
        return params

    def _sender(
        self, params: dict[str, Any], messages: Sequence[ChatMessage]
    ) -> Callable[[], Awaitable[ReadCompletion]]:
        body = {k: v for k, v in params.items() if k != "extra_body"}
        body.update(params.get("extra_body") or {})
        payload = json.dumps(body, ensure_ascii=False).encode()  # once, for every attempt
        url = self.chat_url()

        async def attempt() -> ReadCompletion:
            session = await self._clients.get()
            headers = await self._fresh_headers()
            async with session.post(url, data=payload, proxy=self._proxy,
                                    proxy_auth=self._proxy_auth, headers=headers) as reply:
                raw = await reply.read()
                if reply.status >= 400:
                    raise HTTPStatusError(reply.status, raw, reply.headers)
            return read_completion(
                json.loads(raw), messages, provider=self._provider, model=self.api_model
            )

        return attempt

    def chat_url(self) -> str:
        """Where a call is sent (pure; Azure's deployments differ)."""
        return self._endpoint + "/chat/completions"

    async def _fresh_headers(self) -> dict[str, str] | None:
        """Headers made per attempt, on top of the session's (a short-lived token); None."""
        return None

    def _catch(self) -> tuple[type[BaseException], ...]:
        return (aiohttp.ClientError, HTTPStatusError, ValueError, RecursionError)

    def _translate(self, exc: BaseException) -> Failure:
        return translate_http(exc, provider=self._provider, model=self.api_model,
                              base_url=self._endpoint)

    @property
    def _endpoint(self) -> str:
        return self.base_url or DEFAULT_BASE_URL  # _setup always settles one



def proxy_for(url: str) -> tuple[str | None, aiohttp.BasicAuth | None]:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY``, ``HTTP_PROXY``,
    ``NO_PROXY``, as the openai SDK reads them), with its credentials; ``(None, None)`` for a
    direct connection."""
    from aiohttp.helpers import get_env_proxy_for_url
    from yarl import URL

    try:
        proxy, auth = get_env_proxy_for_url(URL(url))
    except LookupError:
        return None, None
    return str(proxy), auth


def translate_http(
    exc: BaseException, *, provider: str, model: str, base_url: str
) -> Failure:
    """One failed attempt of the HTTP path as a :class:`Failure`: an error status through
    :func:`error_for_status` (the message read from an OpenAI-style error body; a 404 under a
    base URL with no API version asks whether ``/v1`` is missing), a connection that failed or
    broke mid-reply as a :class:`ProviderConnectionError` naming ``base_url`` (retryable,
    unless :func:`~fastrlm.lm._retry.hopeless` says waiting cannot cure it), a body that is
    not JSON (``ValueError``, or ``RecursionError``: nested too deeply to decode) as a
    retryable :class:`ProviderResponseError`."""
    kw: dict[str, Any] = {"provider": provider, "model": model}
    where = f"{provider} {model}"
    if isinstance(exc, HTTPStatusError):
        message = _error_message(exc.body)
        if exc.status == 404 and not _VERSIONED.search(base_url):
            message += (f" (did you mean the base URL {base_url}/v1? OpenAI-compatible servers "
                        "answer at <base URL>/chat/completions, and most put it under /v1)")
        return error_for_status(exc.status, message, exc.headers, **kw)
    if isinstance(exc, aiohttp.ClientError):
        why = hopeless(exc)
        if why is None and isinstance(exc, aiohttp.InvalidURL):
            why = "the base URL is not a valid URL; not retried"
        error = ProviderConnectionError(
            f"{where}: cannot reach the endpoint at {base_url}: {type(exc).__name__}: {exc} "
            f"({why or 'is the server running, and is the base URL right?'})", **kw)
        error.retryable = why is None
        return Failure(error, retryable=why is None)
    return Failure(ProviderResponseError(f"{where}: malformed response: {exc}", **kw),
                   retryable=True)


def _error_message(body: bytes) -> str:
    """``error.message`` of an OpenAI-style error body, else the body's start."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if isinstance(message, str) and message:
        return message
    if isinstance(error, str) and error:
        return error
    return body[:300].decode("utf-8", "replace") or "(empty body)"
