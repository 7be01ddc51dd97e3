"""Azure OpenAI: ``azure/<deployment>`` on the same Chat Completions path as OpenAI.

Azure serves a model under a *deployment* name the user chose, at their resource's endpoint,
behind an ``api-version`` query parameter, and takes either the resource's key (an ``api-key``
header) or a Microsoft Entra ID token (``Authorization: Bearer``). :class:`AzureOpenAIChatLM`
is :class:`~fastrlm.lm.OpenAIChatLM` with those three differences; replies, errors, retries and
usage are read as OpenAI's.

Environment (the names Azure's own SDKs read): ``AZURE_OPENAI_ENDPOINT``
(``https://<resource>.openai.azure.com``), ``AZURE_OPENAI_API_KEY``, ``AZURE_OPENAI_AD_TOKEN``
(a token, when no key is set), ``AZURE_OPENAI_API_VERSION`` (or ``OPENAI_API_VERSION``; default
:data:`DEFAULT_API_VERSION`). An endpoint ending in ``/openai/v1`` is Azure's v1 API: no
deployment in the path and no ``api-version``; the deployment goes as ``model``.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Unpack
from urllib.parse import quote

from .._foundation.errors import AuthenticationError, ConfigurationError
from ._openai import OpenAIChatLM
from ._provider import HTTPOptions

#: The generally available data-plane version used when none is set.
DEFAULT_API_VERSION = "2024-10-21"
ENDPOINT_ENV = "AZURE_OPENAI_ENDPOINT"
KEY_ENV = "AZURE_OPENAI_API_KEY"
TOKEN_ENV = "AZURE_OPENAI_AD_TOKEN"
VERSION_ENVS = ("AZURE_OPENAI_API_VERSION", "OPENAI_API_VERSION")

#: Returns a current Entra ID access token (``azure.identity.get_bearer_token_provider(...)``),
#: sync or async; called before each attempt (such providers cache the token until it expires).
TokenProvider = Callable[[], str] | Callable[[], Awaitable[str]]


class AzureOpenAIChatLM(OpenAIChatLM):
    """An Azure OpenAI deployment. ``model`` is ``azure/<deployment>``; ``base_url`` the
    resource endpoint; exactly one of ``api_key`` (the resource key), ``azure_ad_token`` (an
    Entra ID token) or ``azure_ad_token_provider`` authenticates. Raises
    :class:`~fastrlm.ConfigurationError` without an endpoint or any of the three."""

    _default_provider = "azure"
    _base_url_env = ENDPOINT_ENV
    _default_base_url = ""

    def __init__(
        self,
        model: str,
        *,
        api_version: str = DEFAULT_API_VERSION,
        azure_ad_token: str | None = None,
        azure_ad_token_provider: TokenProvider | None = None,
        reasoning: bool | None = None,
        default_headers: dict[str, str] | None = None,
        extra_body: dict[str, Any] | None = None,
        default_concurrency: int = 64,
        **options: Unpack[HTTPOptions],
    ) -> None:
        deployment = model.partition("/")[2] if "/" in model else model
        if not (options.get("base_url") or os.environ.get(ENDPOINT_ENV)):
            raise ConfigurationError(
                f"azure/{deployment} needs your resource's endpoint: set {ENDPOINT_ENV}="
                "https://<resource>.openai.azure.com (or pass base_url=...)")
        given = [n for n, v in (("api_key", options.get("api_key")),
                                ("azure_ad_token", azure_ad_token),
                                ("azure_ad_token_provider", azure_ad_token_provider)) if v]
        if not given:
            raise ConfigurationError(
                f"azure/{deployment} needs a key or an Entra ID token: set {KEY_ENV}, or "
                f"{TOKEN_ENV}, or pass azure_ad_token_provider= (e.g. azure.identity's "
                "get_bearer_token_provider)")
        if len(given) > 1:
            raise ConfigurationError(
                f"azure/{deployment}: give one way to authenticate, not {' and '.join(given)}")
        if not isinstance(api_version, str) or not api_version.strip():
            raise ConfigurationError("api_version must be a non-empty string such as "
                                     f"{DEFAULT_API_VERSION!r}")
        if azure_ad_token_provider is not None and not callable(azure_ad_token_provider):
            raise ConfigurationError("azure_ad_token_provider must be a callable returning a "
                                     "token")
        self.api_version = api_version.strip()
        self._ad_token = azure_ad_token
        self._token_provider = azure_ad_token_provider
        self._key_given = bool(options.get("api_key"))
        super().__init__(model, reasoning=reasoning, default_headers=default_headers,
                         extra_body=extra_body, default_concurrency=default_concurrency,
                         **options)

    @property
    def v1(self) -> bool:
        """Whether the endpoint is Azure's v1 API (``.../openai/v1``)."""
        return self._endpoint.endswith("/openai/v1")

    def chat_url(self) -> str:
        if self.v1:
            return self._endpoint + "/chat/completions"
        root = self._endpoint.removesuffix("/openai")
        return (f"{root}/openai/deployments/{quote(self.api_model, safe='')}/chat/completions"
                f"?api-version={quote(self.api_version, safe='')}")

    def request_headers(self) -> dict[str, str]:
        headers = super().request_headers()
        headers.pop("Authorization", None)
        if self._key_given:
            headers["api-key"] = self._api_key
        elif self._ad_token is not None:
            headers["Authorization"] = f"Bearer {self._ad_token}"
        return headers

    async def _fresh_headers(self) -> dict[str, str] | None:
        if self._token_provider is None:
            return None
        where = f"{self._model}: azure_ad_token_provider"
        try:
            token = await _call(self._token_provider)
        except Exception as exc:  # noqa: BLE001 - the identity library's own error types
            raise AuthenticationError(f"{where} failed: {type(exc).__name__}: {exc}",
                                      provider=self._provider, model=self.api_model) from exc
        if not token:
            raise AuthenticationError(f"{where} returned no token", provider=self._provider,
                                      model=self.api_model)
        return {"Authorization": f"Bearer {token}"}

    def _cache_params(self) -> dict[str, object]:
        return {**super()._cache_params(), "api_version": self.api_version}


async def _call(provider: TokenProvider) -> str:
    if inspect.iscoroutinefunction(provider):
        return str(await provider())
    value = await asyncio.to_thread(provider)  # a refresh may go over the network
    if inspect.isawaitable(value):
        value = await value
    return str(value)


def azure_options(env: Mapping[str, str], *, has_key: bool) -> dict[str, Any]:
    """What the environment says beyond the endpoint and key: the API version, and an Entra
    ID token when no key is given (a key wins)."""
    version = next((env[name] for name in VERSION_ENVS if env.get(name)), DEFAULT_API_VERSION)
    token = None if has_key else env.get(TOKEN_ENV) or None
    return {"api_version": version, "azure_ad_token": token}
