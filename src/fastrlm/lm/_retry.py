"""One retry policy for every provider: exponential backoff with full jitter, ``Retry-After``.

Providers turn their SDK's exceptions into fastrlm's (:func:`error_for_status` does the HTTP part
for every SDK) and hand :meth:`RetryPolicy.run` one attempt at a time. The SDKs' own retries are
switched off, so this is the only place a call is repeated, and every repeat is asked of the run's
budget through the attempt gate (:data:`fastrlm._foundation.gate.current_gate`, which the
engine's ledger sets): a failed attempt is booked, and a retry the budget cannot admit is not
sent.

Not every failure is worth a wait: :func:`hopeless` names the ones that waiting cannot cure (a
host name that does not resolve, a certificate that does not verify), which fail at once. A
refused connection *is* retried: nothing listens on the port now, and a server being started or
restarted (a local vLLM loading weights, a container coming back) refuses for seconds and then
answers. Each retry is announced through the gate (:meth:`RetryGate.failed` with its wait), so
the run's events show it as it happens.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from .._foundation.errors import (
    AuthenticationError,
    BudgetExceededError,
    ProviderError,
    ProviderResponseError,
    ProviderTimeoutError,
    RateLimitError,
)
from .._foundation.gate import current_gate
from .._foundation.limits import Limits

T = TypeVar("T")

# Statuses worth another try: request timeout, conflict/lock, rate limit, every 5xx (incl.
# Anthropic's 529 "overloaded").
RETRYABLE_STATUSES = frozenset({408, 409, 429}) | frozenset(range(500, 600))


#: ``getaddrinfo`` answers that waiting does not change: the name has no address. Its
#: "temporary failure in name resolution" (``EAI_AGAIN``) is retried.
_NAME_NOT_KNOWN = frozenset(
    code for code in (getattr(socket, "EAI_NONAME", None), getattr(socket, "EAI_NODATA", None))
    if code is not None
)


def hopeless(exc: BaseException) -> str | None:
    """Why the failed attempt ``exc`` cannot succeed by waiting, or None when a retry may help.

    Looks through the exception and what caused it (an SDK wraps the socket's error): a host
    name the resolver says does not exist, a TLS certificate that does not verify."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, socket.gaierror) and cause.errno in _NAME_NOT_KNOWN:
            return "the host name does not resolve; not retried: check the base URL"
        if isinstance(cause, ssl.SSLCertVerificationError):
            return "the server's TLS certificate does not verify; not retried"
        cause = cause.__cause__ or cause.__context__
    return None


@dataclass(frozen=True, slots=True)
class Failure:
    """A translated failure: the error to raise, whether to retry it, and the server's wish."""

    error: ProviderError
    retryable: bool
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a provider retries one call.

    - ``max_retries``: further attempts after the first (0 = try once).
    - ``timeout_s``: the limit on each attempt (connect, send, wait and read together); an
      attempt past it becomes :class:`ProviderTimeoutError` and is retried.
    - ``base_delay_s`` / ``max_delay_s``: attempt ``n`` (0-based) waits a random time in
      ``[0, min(max_delay_s, base_delay_s * 2**n)]`` ("full jitter").
    - ``max_retry_after_s``: a server's ``Retry-After`` is honoured up to this many seconds; a
      longer request is not waited for and the error surfaces at once.
    """

    max_retries: int = 5
    timeout_s: float = 300.0
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_retry_after_s: float = 120.0
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, compare=False)

    @classmethod
    def from_limits(cls, limits: Limits) -> RetryPolicy:
        """The policy that :class:`fastrlm.Limits` asks for (retries and per-call timeout)."""
        return cls(max_retries=limits.max_retries, timeout_s=limits.request_timeout_s)

    def backoff_s(self, attempt: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt + 1``.

        A ``Retry-After`` wins over the computed backoff (it is what the server asked for).
        """
        if retry_after_s is not None:
            return max(0.0, retry_after_s)
        ceiling = min(self.max_delay_s, self.base_delay_s * (2**attempt))
        return random.uniform(0.0, ceiling)

    async def run(
        self,
        attempt: Callable[[], Awaitable[T]],
        translate: Callable[[BaseException], Failure],
        catch: tuple[type[BaseException], ...],
        *,
        provider: str = "",
        model: str = "",
    ) -> T:
        """Run ``attempt`` until it succeeds or the policy gives up.

        Exceptions of the types in ``catch`` (the SDK's) are mapped by ``translate`` to a
        :class:`Failure`; a :class:`ProviderError` raised by the attempt itself is retried when
        its ``retryable`` says so; anything else (cancellation, bugs) propagates untouched.
        Raises the last failure's :class:`ProviderError`, chained to its cause (to the budget's
        refusal when the ledger would not admit another attempt).

        Inside an engine call, each failed attempt that is retried is booked with the ledger
        (and announced, with the wait before the retry) before the backoff, and the retry is
        admitted by the ledger after it.
        """
        tries = 0
        while True:
            cause: BaseException
            try:
                async with asyncio.timeout(self.timeout_s):
                    return await attempt()
            except TimeoutError as exc:
                message = f"{provider} {model}: no reply within {self.timeout_s:g} s"
                error = ProviderTimeoutError(message, provider=provider, model=model)
                failure = Failure(error, retryable=True)
                cause = exc
            except ProviderError as exc:
                after = exc.retry_after_s if isinstance(exc, RateLimitError) else None
                failure = Failure(exc, exc.retryable, after)
                cause = exc
            except catch as exc:
                failure = translate(exc)
                cause = exc
            wait = self._wait_for(failure, tries)
            if wait is None:
                if failure.error is cause:
                    raise failure.error
                raise failure.error from cause
            tries += 1
            gate = current_gate.get()
            if gate is not None:
                gate.failed(failure.error, wait)
            await self.sleep(wait)
            if gate is not None:
                try:
                    await gate.admit_retry()
                except BudgetExceededError as refused:
                    raise failure.error from refused

    def _wait_for(self, failure: Failure, tries: int) -> float | None:
        """Seconds to wait before the next try, or None to give up."""
        if not failure.retryable or isinstance(failure.error, AuthenticationError):
            return None
        if tries >= self.max_retries:
            return None
        after = failure.retry_after_s
        if after is not None and after > self.max_retry_after_s:
            return None
        return self.backoff_s(tries, after)


def parse_retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds a server asked us to wait: ``retry-after-ms``, ``Retry-After: <seconds>`` or
    ``Retry-After: <HTTP date>``. ``None`` when absent or unreadable."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    ms = lowered.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_for_status(
    status: int,
    message: str,
    headers: Mapping[str, str] | None,
    *,
    provider: str,
    model: str,
) -> Failure:
    """Translate an HTTP error status into fastrlm's tree (the same for every SDK)."""
    retry_after = parse_retry_after(headers)
    text = f"{provider} {model}: HTTP {status}: {message}"
    kw: dict[str, object] = {"provider": provider, "model": model, "status": status}
    if status in (401, 403):
        return Failure(AuthenticationError(text, **kw), retryable=False)  # type: ignore[arg-type]
    if status == 429:
        err = RateLimitError(text, retry_after_s=retry_after, **kw)
        return Failure(err, retryable=True, retry_after_s=retry_after)
    if status in RETRYABLE_STATUSES:
        err2 = ProviderResponseError(text, **kw)  # type: ignore[arg-type]
        return Failure(err2, retryable=True, retry_after_s=retry_after)
    return Failure(ProviderError(text, **kw), retryable=False)  # type: ignore[arg-type]
