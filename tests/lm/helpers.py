"""Builders shared by the provider tests: fast retry policies and providers aimed at a fake."""

from __future__ import annotations

from typing import Any

from fastrlm.lm import ChatMessage, OpenAIChatLM, RetryPolicy
from fastrlm.testing import FakeOpenAIServer

USER: list[ChatMessage] = [{"role": "user", "content": "hello there"}]


def fast_retry(max_retries: int = 3, timeout_s: float = 5.0, **kw: Any) -> RetryPolicy:
    """Real backoff with tiny delays, so retry tests take milliseconds."""
    kw.setdefault("base_delay_s", 0.001)
    kw.setdefault("max_delay_s", 0.005)
    return RetryPolicy(max_retries=max_retries, timeout_s=timeout_s, **kw)


def openai_lm(
    server: FakeOpenAIServer, model: str = "openai/gpt-4.1-mini", **kw: Any
) -> OpenAIChatLM:
    kw.setdefault("retry", fast_retry())
    return OpenAIChatLM(model, base_url=server.base_url, api_key="test-key", **kw)
