"""An official-style model client (``completion(messages) -> str``) as a fastrlm model: what a
patched ``fastrlm.compat.rlms.get_client`` may return (the official tests inject a ``Mock`` or
their ``MockLM`` this way)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._foundation.errors import ProviderError
from .._foundation.usage import TokenUsage
from ..lm import ChatMessage, LMResponse, estimate_tokens

__all__ = ["ClientLM"]


@dataclass(slots=True)
class ClientLM:
    """An official-style model client (``completion(messages) -> str``: the official
    ``BaseLM``, a ``unittest.mock.Mock``) as a :class:`fastrlm.lm.LM`.

    ``model`` is ``"<backend>/<model_name>"``. A sync ``completion`` runs in a worker thread;
    an ``async def acompletion`` is awaited instead. Usage is the client's ``get_last_usage()``
    when it reports integers (a ``ModelUsageSummary``, or a ``UsageSummary`` summed), else
    estimated from characters; its ``total_cost``, when a number, is the provider's cost.
    Whatever the client raises, or a reply that is not a str, is a
    :class:`~fastrlm.ProviderError` (not retried: a scripted client would lose its place).
    """

    client: Any
    model: str
    temperature: float | None = None

    def cache_key(self) -> str:
        return f"rlms-client|{id(self.client)}|{self.model}"

    async def complete(self, messages: Sequence[ChatMessage], *,
                       max_tokens: int | None = None) -> LMResponse:
        prompt = [dict(m) for m in messages]
        started = time.perf_counter()
        try:
            if inspect.iscoroutinefunction(getattr(type(self.client), "acompletion", None)):
                text = await self.client.acompletion(prompt)
            else:
                text = await asyncio.to_thread(_call_client, self.client.completion, prompt)
        except ProviderError:
            raise
        except Exception as exc:  # noqa: BLE001 - a user's client may raise anything
            raise ProviderError(f"{self.model}: the client's completion() raised "
                                f"{type(exc).__name__}: {exc}", provider="rlms-client",
                                model=self.model) from exc
        if not isinstance(text, str):
            raise ProviderError(f"{self.model}: the client's completion() returned a "
                                f"{type(text).__name__}, not a str", provider="rlms-client",
                                model=self.model)
        usage, cost = _client_usage(self.client, prompt, text)
        return LMResponse(text=text, usage=usage, model=self.model, cost_usd=cost,
                          latency_s=time.perf_counter() - started)

    async def aclose(self) -> None:
        return None


class _ClientStopped(Exception):
    """``StopIteration`` out of a client (a ``Mock`` whose ``side_effect`` ran out): it cannot
    cross a thread's future as itself."""


def _call_client(fn: Callable[[Any], Any], prompt: list[dict[str, Any]]) -> Any:
    try:
        return fn(prompt)
    except StopIteration as exc:
        raise _ClientStopped("no more scripted replies (StopIteration)") from exc


def _client_usage(client: Any, prompt: list[dict[str, Any]],
                  text: str) -> tuple[TokenUsage, float | None]:
    """What the client says its last call used (and cost), else an estimate."""
    report = getattr(client, "get_last_usage", None)
    summary: Any = None
    if callable(report):
        try:
            summary = report()
        except Exception:  # noqa: BLE001 - a client without usage: estimated below
            summary = None
    parts = getattr(summary, "model_usage_summaries", None)
    parts = list(parts.values()) if isinstance(parts, Mapping) else [summary]
    tokens: list[tuple[int, int]] = []
    for part in parts:
        i, o = getattr(part, "total_input_tokens", None), getattr(part, "total_output_tokens", None)
        if type(i) is int and type(o) is int and i >= 0 and o >= 0:
            tokens.append((i, o))
    if tokens and len(tokens) == len(parts):
        costs = [c for c in (getattr(p, "total_cost", None) for p in parts)
                 if type(c) is float or type(c) is int]
        cost = float(sum(costs)) if len(costs) == len(parts) else None
        return TokenUsage(sum(i for i, _ in tokens), sum(o for _, o in tokens)), cost
    estimated = sum(estimate_tokens(str(m.get("content", ""))) + 4 for m in prompt)
    return TokenUsage(estimated, estimate_tokens(text), estimated=True), None
