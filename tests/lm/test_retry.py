"""The retry policy on its own: backoff bounds, Retry-After parsing, status translation."""

from __future__ import annotations

import asyncio
import email.utils
import random
from collections.abc import Iterator

import pytest

from fastrlm import (
    AuthenticationError,
    ProviderError,
    ProviderResponseError,
    ProviderTimeoutError,
    RateLimitError,
)
from fastrlm.lm import RetryPolicy
from fastrlm.lm._retry import Failure, error_for_status, parse_retry_after


class _SDKError(Exception):
    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"status {status}")
        self.status = status
        self.headers = headers


def _translate(exc: BaseException) -> Failure:
    assert isinstance(exc, _SDKError)
    return error_for_status(exc.status, "boom", exc.headers, provider="p", model="m")


class _Recorder:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def test_backoff_is_full_jitter_under_an_exponential_ceiling() -> None:
    random.seed(7)
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=4.0)
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (9, 4.0)]:
        samples = [policy.backoff_s(attempt) for _ in range(200)]
        assert all(0.0 <= s <= ceiling for s in samples)
        assert max(samples) > ceiling * 0.8  # jitter spans the range, not a constant


def test_retry_after_wins_over_computed_backoff() -> None:
    assert RetryPolicy(base_delay_s=10).backoff_s(3, retry_after_s=0.25) == 0.25


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after-ms": "250", "Retry-After": "9"}, 0.25),
        ({"Retry-After": "-4"}, 0.0),
        ({"Retry-After": "soon"}, None),
        ({}, None),
        (None, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str] | None, expected: float | None) -> None:
    assert parse_retry_after(headers) == expected


def test_parse_retry_after_http_date() -> None:
    now = 1_800_000_000.0
    header = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after({"Retry-After": header}, now=now) == pytest.approx(30.0)


@pytest.mark.parametrize(
    ("status", "kind", "retryable"),
    [
        (401, AuthenticationError, False),
        (403, AuthenticationError, False),
        (429, RateLimitError, True),
        (500, ProviderResponseError, True),
        (503, ProviderResponseError, True),
        (529, ProviderResponseError, True),
        (408, ProviderResponseError, True),
        (400, ProviderError, False),
        (404, ProviderError, False),
    ],
)
def test_status_translation(status: int, kind: type[ProviderError], retryable: bool) -> None:
    failure = error_for_status(status, "msg", {"Retry-After": "2"}, provider="p", model="m")
    assert type(failure.error) is kind
    assert failure.retryable is retryable
    assert failure.error.status == status
    assert "HTTP" in str(failure.error) and "msg" in str(failure.error)


async def test_gives_up_after_max_retries_with_the_last_error() -> None:
    sleep = _Recorder()
    policy = RetryPolicy(max_retries=3, base_delay_s=0.01, max_delay_s=0.01, sleep=sleep)
    calls = 0

    async def attempt() -> str:
        nonlocal calls
        calls += 1
        raise _SDKError(503)

    with pytest.raises(ProviderResponseError) as info:
        await policy.run(attempt, _translate, (_SDKError,))
    assert calls == 4
    assert len(sleep.delays) == 3
    assert isinstance(info.value.__cause__, _SDKError)


async def test_retry_after_is_what_the_policy_waits() -> None:
    sleep = _Recorder()
    policy = RetryPolicy(max_retries=2, sleep=sleep)
    replies: Iterator[str | _SDKError] = iter([_SDKError(429, {"Retry-After": "1.5"}), "ok"])

    async def attempt() -> str:
        reply = next(replies)
        if isinstance(reply, BaseException):
            raise reply
        return reply

    assert await policy.run(attempt, _translate, (_SDKError,)) == "ok"
    assert sleep.delays == [1.5]


async def test_retry_after_past_the_cap_surfaces_at_once() -> None:
    sleep = _Recorder()
    policy = RetryPolicy(max_retries=5, max_retry_after_s=10, sleep=sleep)

    async def attempt() -> str:
        raise _SDKError(429, {"Retry-After": "3600"})

    with pytest.raises(RateLimitError) as info:
        await policy.run(attempt, _translate, (_SDKError,))
    assert info.value.retry_after_s == 3600
    assert sleep.delays == []


async def test_authentication_errors_are_never_retried() -> None:
    sleep = _Recorder()
    calls = 0

    async def attempt() -> str:
        nonlocal calls
        calls += 1
        raise _SDKError(401)

    with pytest.raises(AuthenticationError):
        await RetryPolicy(max_retries=5, sleep=sleep).run(attempt, _translate, (_SDKError,))
    assert calls == 1


async def test_an_attempt_past_the_timeout_becomes_provider_timeout_and_is_retried() -> None:
    sleep = _Recorder()
    policy = RetryPolicy(max_retries=1, timeout_s=0.05, sleep=sleep)
    never = asyncio.Event()

    async def attempt() -> str:
        await never.wait()
        return "unreachable"

    with pytest.raises(ProviderTimeoutError):
        await policy.run(attempt, _translate, (_SDKError,), provider="p", model="m")
    assert len(sleep.delays) == 1


async def test_exceptions_that_are_not_the_providers_propagate_untouched() -> None:
    async def attempt() -> str:
        raise KeyError("a bug, not a provider failure")

    with pytest.raises(KeyError):
        await RetryPolicy().run(attempt, _translate, (_SDKError,))


async def test_cancellation_is_not_retried() -> None:
    started = asyncio.Event()

    async def attempt() -> str:
        started.set()
        await asyncio.Event().wait()
        return "unreachable"

    task = asyncio.create_task(RetryPolicy().run(attempt, _translate, (_SDKError,)))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_the_retry_loop_asks_the_gate_the_engine_sets() -> None:
    """Providers and the ledger share one context variable, now in the foundations; the name
    custom LMs were told to use (``fastrlm._core.ledger.current_gate``) is that same variable."""
    from fastrlm._core import ledger
    from fastrlm._foundation import gate

    assert ledger.current_gate is gate.current_gate
    asked: list[str] = []

    class Gate:
        def failed(self, error: BaseException, retry_in_s: float | None = None) -> None:
            asked.append(f"failed: {type(error).__name__} (retry in {retry_in_s:g} s)")

        async def admit_retry(self) -> None:
            asked.append("admit")

    replies = iter([ProviderResponseError("flaky", provider="p", model="m"), None])

    async def attempt() -> str:
        error = next(replies)
        if error is not None:
            error.retryable = True
            raise error
        return "ok"

    token = ledger.current_gate.set(Gate())
    try:
        policy = RetryPolicy(max_retries=2, base_delay_s=0, max_delay_s=0)
        untranslated = lambda e: Failure(ProviderError(str(e)), False)  # noqa: E731
        assert await policy.run(attempt, untranslated, ()) == "ok"
    finally:
        ledger.current_gate.reset(token)
    assert asked == ["failed: ProviderResponseError (retry in 0 s)", "admit"]
