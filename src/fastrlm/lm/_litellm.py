"""The ``litellm`` extra: a thin adapter for every provider LiteLLM reaches (Bedrock, Vertex, ...).

Importing this module imports ``litellm``; :mod:`fastrlm.lm` imports it lazily and turns a
missing package into :class:`fastrlm.MissingExtraError`. LiteLLM's exceptions subclass the
``openai`` SDK's, so they translate with the same table; its own retries are switched off
(``num_retries=0``) so that :class:`RetryPolicy` is the only one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import litellm  # type: ignore[import-not-found, unused-ignore]
import openai

from .._foundation.limits import DEFAULT_LIMITS, Limits
from . import _sdk
from ._base import ChatMessage, LMResponse, openai_content
from ._chat import ReadCompletion, read_completion
from ._provider import Provider
from ._retry import Failure, RetryPolicy


class LiteLLMLM(Provider):
    """A model behind ``litellm.acompletion``; ``model`` is ``litellm/<litellm model string>``
    (``litellm/bedrock/anthropic.claude-3-5-sonnet``). Credentials come from LiteLLM's own
    environment variables unless ``api_key`` / ``base_url`` are given.

    :meth:`complete` raises :class:`fastrlm.ProviderError` subclasses only, after retries; the
    reply is read by the one Chat Completions reader (LiteLLM's ``ModelResponse`` has that
    shape, read through its JSON form: ``fastrlm.lm._chat``).
    """

    _api = "litellm"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        temperature: float | None = None,
        limits: Limits = DEFAULT_LIMITS,
        retry: RetryPolicy | None = None,
    ) -> None:
        name = model.split("/", 1)[1] if model.startswith("litellm/") else model
        self._model = f"litellm/{name}"
        self.api_model = name
        self.base_url = base_url
        self._api_key = api_key
        self._temperature = temperature
        self.retry = retry or RetryPolicy.from_limits(limits)


    async def complete(
        self, messages: Sequence[ChatMessage], *, max_tokens: int | None = None
    ) -> LMResponse:
        params: dict[str, Any] = {
            "model": self.api_model,
            "messages": [{"role": m["role"], "content": openai_content(m)} for m in messages],
            "num_retries": 0,
            "timeout": self.retry.timeout_s,
        }
        if max_tokens is not None:
            params["max_tokens"] = max_tokens
        if self._temperature is not None:
            params["temperature"] = self._temperature
        if self.base_url:
            params["api_base"] = self.base_url
        if self._api_key:
            params["api_key"] = self._api_key
        started = time.monotonic()

        async def attempt() -> ReadCompletion:
            response = await litellm.acompletion(**params)
            return read_completion(response, messages, provider="litellm", model=self.api_model)

        completion = await self.retry.run(
            attempt,
            self._translate,
            _sdk.catchable(openai),
            provider="litellm",
            model=self.api_model,
        )
        return self._response(completion, started)

    def _translate(self, exc: BaseException) -> Failure:
        return _sdk.translate(exc, openai, provider="litellm", model=self.api_model,
                              base_url=self.base_url)

    async def aclose(self) -> None:
        """LiteLLM keeps no per-instance client."""
