"""Every LM call of a run tree passes here: budget ledger, cache, one concurrency limit.

A :class:`CallTree` is shared by the root run, every sub-call and every child RLM. Every call is
reserved and settled with the tree's :class:`~fastrlm._core.ledger.BudgetLedger` (the one place that
counts and prices), and its events report the ledger's :class:`~fastrlm._core.ledger.Booking`.
Sub-calls that fail or are refused become ``"[error: ...]"`` strings, so a batch always keeps its
arity.

Every batch of sub-calls (``llm_query_batched``, ``llm_map``, ``llm_filter``, each level of
``llm_reduce``) is sent by :meth:`CallTree.fan_out`. Where the prompts share a long prefix and
the sub-model's prompt cache holds an entry only once a response is under way (Anthropic's:
parallel requests do not read each other's), it sends one call first and the rest once it is
answered, each marked with the shared prefix (:func:`warmup_prefix`), so they read one cache
entry instead of each writing their own.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypedDict, TypeVar

from .._foundation.error_text import error_text
from .._foundation.errors import BudgetExceededError, ProviderError
from .._foundation.events import (
    BudgetWarning,
    CallRetrying,
    Event,
    SubcallFinished,
    SubcallsRefused,
    SubcallStarted,
    preview,
)
from .._foundation.limits import Limits
from .._foundation.pricing import PriceTable
from .._foundation.stop import StopReason
from .._foundation.text import well_formed
from .._foundation.windows import subcall_window_chars
from ..lm import (
    DEFAULT_CONCURRENCY,
    LM,
    ChatMessage,
    ImagePart,
    LMResponse,
    ToolSchema,
    message_bytes,
    reply_report,
    warmup_prefix_tokens,
)
from .ledger import (
    Account,
    AttemptGate,
    Booking,
    BudgetLedger,
    Reservation,
    current_gate,
    input_token_bound,
)
from .replay import Recorder, call_key
from .tools import ToolCounter

log = logging.getLogger("fastrlm")

T = TypeVar("T")
#: Characters a token, as the warm-up estimates a shared prefix (the prompt cache's minimum is
#: in tokens; English text runs near 4 characters a token).
CHARS_PER_TOKEN = 4


def warmup_prefix(prompts: Sequence[str], min_tokens: int | None) -> int:
    """How many characters at the start of every prompt a batch warms the prompt cache with:
    the prefix all of ``prompts`` share, when there are two or more and it is at least
    ``min_tokens`` tokens (estimated, :data:`CHARS_PER_TOKEN`); else 0, as for ``min_tokens``
    None or 0 (no warm-up). Pure."""
    if not min_tokens or len(prompts) < 2:
        return 0
    shortest = min(len(prompt) for prompt in prompts)
    if shortest < min_tokens * CHARS_PER_TOKEN:
        return 0
    shared = len(os.path.commonprefix(list(prompts)))
    return shared if shared >= min_tokens * CHARS_PER_TOKEN else 0


class ResponseCache(Protocol):
    """What the engine needs of a sub-call cache (``fastrlm.lm.SubcallCache`` implements it)."""

    def key_for(self, lm: LM, messages: Sequence[ChatMessage], max_tokens: int | None) -> str: ...

    async def get(self, key: str) -> LMResponse | None: ...

    async def put(self, key: str, response: LMResponse) -> None: ...


@dataclass(frozen=True)
class SubcallOutcome:
    """One prompt's answer (or its ``[error: ...]`` text) and the limit that refused it.
    ``answered``: ``text`` is the model's (set by :meth:`CallTree.subcall`)."""

    text: str
    refused: StopReason | None = None
    refusal: str = ""
    answered: bool = False


def foreign_error(lm: LM, exc: Exception) -> ProviderError:
    """What an LM object raised that is not a fastrlm error (a user's own LM, a provider's
    bug), as the :class:`ProviderError` the engine handles: the root's failure ends the run
    with it, a sub-call's becomes that one call's ``[error: ...]`` answer."""
    return ProviderError(
        f"{lm.model}: the LM object raised {type(exc).__name__}: {exc}",
        provider=type(lm).__name__, model=lm.model,
    )


class _SubcallNames(TypedDict):
    """What names one sub-call (or one sub-agent round) in both of its events."""

    run_id: str
    depth: int
    call_id: str
    model: str
    round: int
    agent_id: str | None


def _refused(exc: BudgetExceededError) -> SubcallOutcome:
    return SubcallOutcome(error_text(exc.reason.value, str(exc)), exc.reason, str(exc))


def sendable(messages: Sequence[ChatMessage]) -> Sequence[ChatMessage]:
    """``messages`` as every provider can send them: a lone surrogate in a message's text (a
    pasted document's ``"\\ud83d"`` escape, a head or tail cut between a pair's halves) is
    U+FFFD, where UTF-8 encoding would fail the call outright. The same list when none has one."""
    fixed = [well_formed(m["content"]) for m in messages]
    if all(text is m["content"] for text, m in zip(fixed, messages, strict=True)):
        return messages
    return [m if text is m["content"] else {**m, "content": text}
            for text, m in zip(fixed, messages, strict=True)]


@dataclass
class CallTree:
    """Shared state of one call tree. Single event loop: plain attributes, no locks."""

    ledger: BudgetLedger
    limits: Limits
    prices: PriceTable
    emit: Callable[[Event], None]
    cache: ResponseCache | None = None
    cache_sampled: bool = False
    concurrency: int | None = None  # when limits.max_concurrency is unset: the sub-model's
    limiter: asyncio.Semaphore = field(init=False)
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    child_limiters: dict[int, asyncio.Semaphore] = field(default_factory=dict)
    tool_counter: ToolCounter = field(default_factory=ToolCounter)
    #: Records the tree for a resume, and answers a resumed or forked tree from its record.
    recorder: Recorder = field(default_factory=Recorder)

    def __post_init__(self) -> None:
        width = self.limits.max_concurrency or self.concurrency or DEFAULT_CONCURRENCY
        self.limiter = asyncio.Semaphore(width)
        self.tool_counter.full = self.limits.trace_full_prompts

    def child_limiter(self, depth: int) -> asyncio.Semaphore:
        """One limiter per depth, so parents waiting on children can never starve them."""
        if depth not in self.child_limiters:
            self.child_limiters[depth] = asyncio.Semaphore(self.limits.max_concurrent_children)
        return self.child_limiters[depth]

    async def call(
        self,
        lm: LM,
        messages: Sequence[ChatMessage],
        *,
        subcall: bool,
        max_tokens: int,
        account: Account,
        run_id: str,
        depth: int,
        on_admitted: Callable[[Reservation], None] | None = None,
        emit: Callable[[Event], None] | None = None,
        tools: Sequence[ToolSchema] | None = None,
    ) -> tuple[LMResponse, Booking]:
        """Send one call of run ``run_id`` through the ledger. Raises BudgetExceededError (never
        sent) or ProviderError (sent, failed; every attempt booked; anything else the LM object
        raises is translated by :func:`foreign_error`, so one user LM's ``ValueError`` fails
        one call, not the batch of sub-calls around it). ``on_admitted`` gets the
        reservation once the ledger let the call through (its ``booking()`` is what the call cost
        so far). A limit this call takes past its warning mark is reported as a
        ``budget.warning`` of ``run_id`` through ``emit`` (default: the tree's). ``tools`` are
        offered to a provider with native tool calling (``lm.supports_tools``)."""
        messages = sendable(messages)
        size = sum(message_bytes(m) for m in messages)
        bound = input_token_bound(0, size, len(messages))
        ledger = self.ledger
        async with self.limiter:
            reservation = await ledger.reserve(
                subcall=subcall, input_tokens=bound, max_tokens=max_tokens,
                price=self.prices.price(lm.model), model=lm.model, account=account,
            )
            if on_admitted is not None:
                on_admitted(reservation)
            announce = emit or self.emit

            def retrying(attempt: int, error: BaseException, wait: float | None) -> None:
                announce(CallRetrying(run_id=run_id, depth=depth, model=lm.model,
                                      attempt=attempt, error=str(error), wait_s=wait or 0.0,
                                      subcall=subcall))

            gate = current_gate.set(AttemptGate(ledger, reservation, retrying))
            try:
                try:
                    if tools is None:
                        response = await lm.complete(messages, max_tokens=reservation.max_tokens)
                    else:
                        response = await lm.complete(  # type: ignore[call-arg]
                            messages, max_tokens=reservation.max_tokens, tools=tools
                        )
                except (ProviderError, BudgetExceededError):
                    raise
                except Exception as exc:  # noqa: BLE001 - translated, the original chained
                    raise foreign_error(lm, exc) from exc
            except BaseException as exc:
                ledger.fail(reservation, exc)
                self._warn(run_id, depth, emit or self.emit)
                raise
            finally:
                current_gate.reset(gate)
        booking = ledger.settle(reservation, response)
        self._warn(run_id, depth, emit or self.emit)
        return response, booking

    def _warn(self, run_id: str, depth: int, emit: Callable[[Event], None]) -> None:
        for resource, fraction in self.ledger.new_warnings():
            emit(BudgetWarning(run_id=run_id, depth=depth, resource=resource, fraction=fraction))

    def window_refusal(self, lm: LM, chars: int, what: str) -> SubcallOutcome | None:
        """The ``prompt_too_long`` answer when ``chars`` is over ``lm``'s sub-call window."""
        window = subcall_window_chars(
            lm.model, self.limits.sub_max_tokens, self.limits.subcall_window_chars
        )
        if chars <= window:
            return None
        return SubcallOutcome(error_text(
            "prompt_too_long", f"{chars:,} characters for sub-model {lm.model}, over its "
            f"window of {window:,} characters; {what}"
        ))

    def admit(self, lm: LM, prompt: str, account: Account | None = None,
              ) -> SubcallOutcome | None:
        """The refusal of an ``llm_query`` (plain or agent) before its first call: ``prompt``
        over ``lm``'s sub-call window, or no sub-call slot left in the budget (or in the grant
        of ``account``); None to go on."""
        refusal = self.window_refusal(lm, len(prompt), "split it into smaller prompts")
        if refusal is not None:
            return refusal
        try:
            self.ledger.check_subcall_slot(account.grant if account is not None else None)
        except BudgetExceededError as exc:
            return _refused(exc)
        return None

    async def subcall(
        self, lm: LM, prompt: str, *, run_id: str, depth: int, account: Account,
        images: list[ImagePart] | None = None, max_tokens: int | None = None,
        cache_prefix: int = 0,
    ) -> SubcallOutcome:
        """One ``llm_query``: never raises; failures and refusals come back as error text.
        ``images`` go with the prompt as parts of its message. ``max_tokens``: its output cap
        (default ``Limits.sub_max_tokens``). ``cache_prefix``: the characters its batch shares,
        for the provider to mark (:meth:`fan_out`). A resumed tree answers a sub-call its
        record holds from there (already counted: nothing is sent or booked)."""
        messages: list[ChatMessage] = [{"role": "user", "content": prompt}]
        if images:
            messages[0]["images"] = images
        max_tokens = max_tokens or self.limits.sub_max_tokens
        recorder = self.recorder
        # the record's key is the call without the cache mark (a replay need not warm up)
        record = call_key(lm.model, messages, max_tokens) if recorder.active else None
        if record is not None and (replayed := recorder.replayed_call(record)) is not None:
            return SubcallOutcome(replayed, answered=True)
        refusal = self.admit(lm, prompt, account)
        if refusal is not None:
            return refusal
        if cache_prefix:
            messages[0]["cache_prefix"] = cache_prefix
        try:
            key, hit = await self._lookup(lm, messages, max_tokens, subcall=True,
                                          account=account)
        except BudgetExceededError as exc:
            return _refused(exc)
        if hit is not None:
            if record is not None:
                recorder.record_call(record, lm.model, prompt, *hit, self.ledger.elapsed())
            return SubcallOutcome(hit[0].text, answered=True)
        answered = await self.sub_round(lm, messages, prompt, run_id=run_id, depth=depth,
                                        account=account, max_tokens=max_tokens)
        if isinstance(answered, SubcallOutcome):
            return answered
        response = answered[0]
        if record is not None:  # before anything yields: a kill after this keeps the answer
            recorder.record_call(record, lm.model, prompt, *answered, self.ledger.elapsed())
        await self._store(key, response)
        return SubcallOutcome(response.text, answered=True)

    def new_call_id(self) -> str:
        return f"c{next(self._ids)}"

    async def sub_round(
        self, lm: LM, messages: Sequence[ChatMessage], prompt: str, *, run_id: str,
        depth: int, account: Account, tools: Sequence[ToolSchema] | None = None,
        round: int = 0, agent_id: str | None = None, call_id: str | None = None,
        max_tokens: int | None = None,
    ) -> tuple[LMResponse, Booking] | SubcallOutcome:
        """One sub-model call (a plain sub-call, or one round of a sub-agent) through the
        ledger, counted as a sub-call, with its ``subcall.started`` / ``subcall.finished``
        events (``prompt`` is what they describe). Never raises but for cancellation: a
        refusal or a failure comes back as the :class:`SubcallOutcome` to answer with."""
        named: _SubcallNames = {
            "run_id": run_id, "depth": depth, "call_id": call_id or self.new_call_id(),
            "model": lm.model, "round": round, "agent_id": agent_id,
        }
        digest = hashlib.sha256(prompt.encode("utf-8", "surrogatepass")).hexdigest()
        held: list[Reservation] = []

        def admitted(reservation: Reservation) -> None:
            held.append(reservation)
            self.emit(
                SubcallStarted(
                    **named,
                    prompt_chars=len(prompt),
                    prompt_sha256=digest,
                    prompt_preview=preview(prompt),
                    prompt=prompt if self.limits.trace_full_prompts else None,
                )
            )

        try:
            response, booking = await self.call(
                lm,
                messages,
                subcall=True,
                max_tokens=max_tokens or self.limits.sub_max_tokens,
                account=account,
                run_id=run_id,
                depth=depth,
                on_admitted=admitted,
                tools=tools,
            )
        except BudgetExceededError as exc:
            return _refused(exc)
        except ProviderError as exc:
            error = f"{type(exc).__name__}: {exc}"
            self._finished(named, None, held[0].booking(), error)
            return SubcallOutcome(error_text("subcall_failed", error))
        except asyncio.CancelledError:
            if held:
                self._finished(named, None, held[0].booking(), "cancelled")
            raise
        self._finished(named, response, booking, None)
        return response, booking

    async def root_call(
        self, lm: LM, messages: Sequence[ChatMessage], *, subcall: bool, max_tokens: int,
        account: Account, run_id: str, depth: int,
        on_admitted: Callable[[Reservation], None] | None = None,
        emit: Callable[[Event], None] | None = None,
    ) -> tuple[LMResponse, Booking]:
        """A root turn through the ledger, answered from the cache when this exact conversation
        was answered before (deterministic models only): a re-run replays the turns an
        interrupted run already paid for, then goes on live."""
        key, hit = await self._lookup(lm, messages, max_tokens, subcall=subcall, account=account)
        if hit is not None:
            return hit
        response, booking = await self.call(lm, messages, subcall=subcall,
                                            max_tokens=max_tokens, account=account,
                                            run_id=run_id, depth=depth,
                                            on_admitted=on_admitted, emit=emit)
        await self._store(key, response)
        return response, booking

    async def _store(self, key: str | None, response: LMResponse) -> None:
        """Keep an answer in the cache; a cache that fails to store it is logged, the answer
        is still used."""
        if key is None or self.cache is None:
            return
        try:
            await self.cache.put(key, response)
        except Exception as exc:  # noqa: BLE001 - the call was answered and paid for
            log.warning("the response cache failed to store an answer (%s: %s)",
                        type(exc).__name__, exc)

    async def _lookup(
        self, lm: LM, messages: Sequence[ChatMessage], max_tokens: int, *, subcall: bool,
        account: Account,
    ) -> tuple[str | None, tuple[LMResponse, Booking] | None]:
        """The cache key for this call (None when caching does not apply) and a hit, if any.
        A hit costs nothing but still counts as a sub-call, so a resumed run behaves as the
        first one did (and is refused past the cap: BudgetExceededError)."""
        if self.cache is None or (lm.temperature and not self.cache_sampled):
            return None, None
        try:
            key = self.cache.key_for(lm, messages, max_tokens)
            hit = await self.cache.get(key)
        except Exception as exc:  # noqa: BLE001 - a broken cache is a miss, not a lost run
            log.warning("the response cache failed to look up a call (%s: %s); it is sent "
                        "to the model", type(exc).__name__, exc)
            return None, None
        if hit is None:
            return key, None
        booking = self.ledger.book_cache_hit(subcall=subcall, model=lm.model, usage=hit.usage,
                                             account=account)
        return key, (hit, booking)

    def _finished(
        self, named: _SubcallNames, response: LMResponse | None, booking: Booking,
        error: str | None,
    ) -> None:
        self.emit(
            SubcallFinished(
                **named,
                **booking.reported(),
                latency_s=response.latency_s if response else 0.0,
                cached=bool(response and response.cached),
                error=error,
                response_chars=len(response.text) if response else 0,
                response_preview=preview(response.text) if response else "",
                tool_calls=len(response.tool_calls) if response else 0,
                **reply_report(response),
                response=response.text if response and self.limits.trace_full_prompts
                else None,
            )
        )

    def warmup_tokens(self, lm: LM) -> int | None:
        """From how many shared prefix tokens a batch of ``lm``'s calls is warmed up:
        ``Limits.warmup_prefix_tokens`` when set (0: never), else the provider's own."""
        setting = self.limits.warmup_prefix_tokens
        return warmup_prefix_tokens(lm) if setting is None else setting

    async def fan_out(
        self, lm: LM, prompts: Sequence[str], answer: Callable[[int, int], Awaitable[T]],
    ) -> list[T]:
        """``answer(index, cache_prefix)`` for every prompt, concurrently, results in order:
        the one way a batch of sub-calls is sent. When the prompts share a prefix worth a
        warm-up (:func:`warmup_prefix` with :meth:`warmup_tokens`), prompt 0 goes alone and
        the others start once it is done, answered, failed or refused alike (so a failing
        first call delays the batch by one call, never loses it); ``cache_prefix`` is then the
        shared prefix's length, for the provider to mark, else 0."""
        prefix = warmup_prefix(prompts, self.warmup_tokens(lm))
        if not prefix:
            return list(await asyncio.gather(*(answer(i, 0) for i in range(len(prompts)))))
        first = await answer(0, prefix)
        rest = await asyncio.gather(*(answer(i, prefix) for i in range(1, len(prompts))))
        return [first, *rest]

    async def batch(
        self, lm: LM, prompts: list[str], *, run_id: str, depth: int, account: Account,
        answer: Callable[[str, list[ImagePart], int], Awaitable[SubcallOutcome]] | None = None,
        images: list[list[ImagePart]] | None = None,
    ) -> tuple[list[str], StopReason | None]:
        """``llm_query_batched``: all prompts concurrently under the tree's limit, answers in
        order, exactly one per prompt (``images``: None or one list per prompt). Returns the
        refusal reason if the gate refused any. ``answer(prompt, images, cache_prefix)`` answers
        one prompt (default: a plain :meth:`subcall`; a sub-agent with tools passes its own).
        Sent by :meth:`fan_out`, but a batch with images (they go before the text) at once."""
        per_prompt = images if images is not None else [[] for _ in prompts]

        def one(index: int, prefix: int) -> Awaitable[SubcallOutcome]:
            if answer is not None:
                return answer(prompts[index], per_prompt[index], prefix)
            return self.subcall(lm, prompts[index], run_id=run_id, depth=depth,
                                account=account, images=per_prompt[index], cache_prefix=prefix)

        if any(per_prompt):  # images go before the text: no shared prefix to mark
            outcomes = await asyncio.gather(*(one(i, 0) for i in range(len(prompts))))
        else:
            outcomes = await self.fan_out(lm, prompts, one)
        refused = [o for o in outcomes if o.refused is not None]
        reason = refused[0].refused if refused else None
        if refused and reason is not None:
            self.emit(
                SubcallsRefused(
                    run_id=run_id,
                    depth=depth,
                    count=len(refused),
                    reason=reason.value,
                    message=refused[0].refusal,
                )
            )
        return [o.text for o in outcomes], reason
