"""The root loop of one RLM run (root or child): turns of the root model until an answer or a
limit. Its parts: :mod:`.reply` runs one reply's code, :mod:`.bridge` answers the REPL's
sub-calls, :mod:`.typed` checks typed answers, :mod:`.continuation` says what the run goes on
from (a session's earlier questions, or nothing). Everything a whole tree shares (budget ledger,
concurrency limiter, usage, events) lives in its :class:`~fastrlm._core.call_tree.CallTree`.

Why over 500 lines: one run's turns are one state machine (first turn, each turn, the answer-now
turn, a replayed turn, a child's grant); its parts that stand alone are already modules of their
own (reply, bridge, typed, continuation, history, replay).
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from dataclasses import dataclass, field, replace

from .._foundation import events as evt
from .._foundation.errors import (
    BudgetExceededError,
    ContextError,
    ProviderError,
    ReplayError,
    SandboxError,
)
from .._foundation.events import preview
from .._foundation.stop import StopReason
from .._foundation.windows import subcall_window_chars
from ..context import ContextInfo, context_digest, describe_shape
from ..lm import LM, ChatMessage, LMResponse, reply_report
from ..sandbox import Sandbox, SandboxLimits, text_whole
from .bridge import ChildGrant, SubcallBridge
from .call_tree import CallTree
from .continuation import Continuation, OneOff
from .feedback import RESOURCE_NAMES, join_text
from .grants import grant_expired
from .history import compact_history, output_budget
from .ledger import Account, Booking, Reservation
from .parsing import extract_code_blocks, looks_like_plan, without_final_calls
from .prompts import describe_budget, question_home, shown_question
from .reply import ReplyRunner
from .run_values import Outcome, RunConfig, new_run_id
from .typed import OutputCheck

_HASH_IN_THREAD_CHARS = 1_000_000


def sandbox_limits(cfg: RunConfig) -> SandboxLimits:
    """The limits of a run's sandbox, from its budget, limits and tools."""
    memory_mb = cfg.limits.worker_memory_mb
    return SandboxLimits(
        exec_timeout_s=cfg.budget.exec_timeout_s,
        max_output_bytes=max(cfg.limits.output_chars * 8, 1_000_000),
        memory_bytes=None if memory_mb is None else memory_mb * 1024 * 1024,
        scratch_bytes=cfg.limits.scratch_mb * 1024 * 1024,
        max_answer_chars=cfg.limits.max_answer_chars,
        env=tuple(sorted(cfg.limits.worker_env.items())),
        tools=tuple(tool.spec for tool in cfg.tools),
    )


def make_sandbox(kind: str, limits: SandboxLimits) -> Sandbox:
    from ..sandbox import create_sandbox

    return create_sandbox(kind, limits)


@dataclass
class Run:
    """A single run. ``execute()`` never raises for model, budget or provider trouble: it returns
    an :class:`Outcome` with the stop reason. It re-raises ``CancelledError``.

    Its parts, made per run: the :class:`SubcallBridge` (the REPL's host calls; the first
    refusal it saw), the :class:`ReplyRunner` (once the sandbox exists) and, for a typed root
    run, the :class:`OutputCheck`; ``continuation`` says what the run goes on from."""

    config: RunConfig
    tree: CallTree
    question: str
    context: object
    depth: int = 0
    parent_run_id: str | None = None
    run_id: str = field(default_factory=new_run_id)
    account: Account = field(default_factory=Account)
    root_lm: LM | None = None
    continuation: Continuation = field(default_factory=OneOff)
    candidate: int | None = None  # RLM(candidates=k): which candidate this run is
    #: What names this run in its tree's record in every process ("" is the top-level run).
    scope: str = ""
    iterations: int = 0
    _question: ChatMessage | None = None  # this question's own message
    _bridge: SubcallBridge = field(init=False)
    _output: OutputCheck | None = field(init=False)
    _replies: ReplyRunner | None = None
    _announced: asyncio.Event = field(default_factory=asyncio.Event)
    _early: list[evt.Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        cfg = self.config
        self._bridge = SubcallBridge(cfg, self.tree, self.run_id, self.depth, self.account,
                                     spawn=self._child, turns=lambda: self.iterations,
                                     scope=self.scope)
        spec = cfg.output if self.depth == 0 else None  # a typed answer is the root's only
        self._output = None if spec is None else OutputCheck(
            spec, cfg.limits.max_output_retries, cfg.limits.max_answer_chars, cfg.prompts)

    @property
    def lm(self) -> LM:
        return self.root_lm or self.config.root_lm

    def stopped(self, reason: StopReason, error: str | None = None) -> Outcome:
        """The outcome of a run stopped from outside (a deadline, an overrun) at this point."""
        replies = self._replies
        return Outcome(self._answer_so_far(), reason, self.iterations, error=error,
                       sandbox=replies.sandbox.layer if replies is not None else "",
                       refused=self._bridge.refused)

    def _answer_so_far(self) -> str:
        replies = self._replies
        return (replies.answer_content if replies is not None else None) or ""

    # ------------------------------------------------------------------ lifecycle
    async def execute(self) -> Outcome:
        started = time.monotonic()
        try:
            outcome = await self._execute()
        except asyncio.CancelledError:
            ledger = self.tree.ledger
            left = ledger.seconds_left()
            if ledger.overrun is not None:  # the engine stops the tree at an overrun
                reason = ledger.overrun
            elif (left is not None and left <= 0) or grant_expired(self.account.grant):
                reason = StopReason.TIMEOUT
            else:
                reason = StopReason.CANCELLED
            self._bridge.end()
            self._finish(Outcome(self._answer_so_far(), reason, self.iterations), started)
            raise
        except BaseException as exc:
            # KeyboardInterrupt or SystemExit raised inside a call (a model object, a tool):
            # the run is over even if the process goes on, and its trace must say so (left
            # open, a viewer shows it as running for as long as the process lives)
            reason = StopReason.CANCELLED if isinstance(exc, KeyboardInterrupt) else \
                StopReason.ERROR
            self._bridge.end()
            self._finish(Outcome(self._answer_so_far(), reason, self.iterations,
                                 error=f"{type(exc).__name__}: {exc}"), started)
            raise
        self._bridge.end()
        outcome = replace(outcome, refused=self._bridge.refused)
        self._finish(outcome, started)
        return outcome

    async def _execute(self) -> Outcome:
        cfg = self.config
        try:
            info = describe_shape(self.context)
            home = question_home(self.question, self.context, cfg.limits.question_chars)
        except ContextError as exc:
            return Outcome("", StopReason.ERROR, 0, error=str(exc), error_kind="context",
                           exception=exc)
        limits = sandbox_limits(cfg)
        continuation = self.continuation
        kept = continuation.kept_sandbox()
        if kept is not None:  # a session's later question: its REPL, maybe a new context
            sandbox = kept
        else:
            try:
                sandbox = make_sandbox(cfg.sandbox_kind, limits)
            except SandboxError as exc:
                self._emit_started(info, "unavailable")
                return Outcome("", StopReason.ERROR, 0, error=str(exc), error_kind="sandbox",
                               exception=exc)
        # Three things start at once: hashing the context for run.started (seconds for a
        # 400 MB context), the worker, and the root's first call (which needs only the shape).
        self._announced = asyncio.Event()
        announce = asyncio.create_task(self._announce(info))
        if kept is not None:
            ready = asyncio.create_task(self._resume_sandbox(sandbox, info))
        else:
            ready = asyncio.create_task(self._start_sandbox(sandbox))
        # Its callbacks hold what they use, never this run: the run holds the runner, and a
        # cycle through the run would keep it, and its context, until a garbage collection.
        self._replies = ReplyRunner(
            sandbox, ready, cfg.prompts, cfg.limits.output_chars, self.tree.emit, self.run_id,
            self.depth, functools.partial(continuation.restarted_note, cfg.prompts),
            on_cell=functools.partial(self.tree.recorder.cell, self.scope))
        try:
            outcome = await self._loop(info, announce, home)
        except (SandboxError, ContextError, ReplayError) as exc:
            kind = ("context" if isinstance(exc, ContextError) else
                    "replay" if isinstance(exc, ReplayError) else "sandbox")
            error = f"sandbox failed: {exc}" if kind == "sandbox" else str(exc)
            outcome = Outcome(self._answer_so_far(), StopReason.ERROR, self.iterations,
                              error=error, error_kind=kind, exception=exc)
        finally:
            for task in (announce, ready):
                if not task.done():
                    task.cancel()
            await asyncio.gather(announce, ready, return_exceptions=True)
            if not self._announced.is_set():  # run.started always precedes run.finished
                self._emit_started(info, cfg.sandbox_kind)
            usable = ready.done() and not ready.cancelled() and ready.exception() is None
            await continuation.release(sandbox, kept is not None, usable)
        return replace(outcome, sandbox=sandbox.layer)

    async def _resume_sandbox(self, sandbox: Sandbox, info: ContextInfo) -> None:
        await text_whole(self.context)  # a later context is sent as a value: all of it
        await self.continuation.resume(sandbox, self.context, info, self._bridge)
        await self._announced.wait()

    async def _announce(self, shape: ContextInfo) -> None:
        """Hash the context off the event loop, then emit run.started (always the run's first
        event; it carries the sha256 that traces reference the context by)."""
        if shape.total_chars > _HASH_IN_THREAD_CHARS:
            digest, size = await asyncio.to_thread(context_digest, self.context)
        else:
            digest, size = context_digest(self.context)
        self._emit_started(replace(shape, sha256=digest, size_bytes=size),
                           self.config.sandbox_kind)

    async def _start_sandbox(self, sandbox: Sandbox) -> None:
        started = time.monotonic()
        await self.continuation.start(sandbox, self.context, self._bridge)
        for name, text, _ in self.config.variables:  # RLM(variables=): each run its own copy
            await sandbox.define(name, json.loads(text))
        await self._announced.wait()
        self.tree.emit(evt.SandboxStarted(run_id=self.run_id, depth=self.depth, layer=sandbox.layer,
                                      unsafe=sandbox.unsafe,
                                      startup_s=time.monotonic() - started))

    def _emit(self, event: evt.Event) -> None:
        """Emit an event of this run; until ``run.started`` is out (the first root call runs
        while the context is hashed) it is held, so run.started stays the run's first event."""
        if self._announced.is_set():
            self.tree.emit(event)
        else:
            self._early.append(event)

    def _emit_started(self, info: ContextInfo, layer: str) -> None:
        cfg = self.config
        self._announced.set()
        self.tree.emit(
            evt.RunStarted(
                run_id=self.run_id,
                depth=self.depth,
                parent_run_id=self.parent_run_id,
                question=preview(self.question, 2000),
                model=self.lm.model,
                sub_model=cfg.sub_lm.model if cfg.subcalls else "",
                context=info.to_dict(),
                sandbox=layer,
                budget=cfg.budget.to_dict(),
                session_id=self.continuation.session_id,
                session_question=self.continuation.question_number,
                candidate=self.candidate,
            )
        )
        early, self._early = self._early, []
        for event in early:
            self.tree.emit(event)

    def _finish(self, outcome: Outcome, started: float) -> None:
        ledger = self.tree.ledger
        top = self.depth == 0
        if self._question is not None:
            self.continuation.record(self._question, self.question, outcome.answer)
        if outcome.source:
            self.tree.emit(
                evt.FinalAnswer(
                    run_id=self.run_id,
                    depth=self.depth,
                    source=outcome.source,
                    answer_chars=len(outcome.answer),
                    answer_preview=preview(outcome.answer),
                )
            )
        self.tree.emit(
            evt.RunFinished(
                run_id=self.run_id,
                depth=self.depth,
                stop_reason=outcome.stop_reason.value,
                answer=outcome.answer,
                iterations=outcome.iterations,
                subcalls=self.account.subcalls,
                usage=ledger.usage.to_dict() if top else {},
                cost_usd=self.account.cost_usd,
                duration_s=time.monotonic() - started,
                error=outcome.error,
                error_kind=outcome.error_kind,
                requests=ledger.requests if top else 0,
                subcalls_refused=ledger.subcalls_refused if top else 0,
                subcalls_failed=ledger.subcalls_failed if top else 0,
                limited_by=(ledger.limited_by.value if top and ledger.limited_by else None),
                tool_calls=self.tree.tool_counter.total if top else 0,
            )
        )

    # ------------------------------------------------------------------ the loop
    async def _loop(self, info: ContextInfo, announce: asyncio.Task[None], home: str | None
                    ) -> Outcome:
        """The turns. ``home``: where a question too long to show is read (prompts)."""
        cfg = self.config
        ledger = self.tree.ledger
        replies = self._replies
        assert replies is not None
        question = shown_question(self.question, home, cfg.prompts.drop_in_question)
        if self._output is not None:
            question += self._output.schema_note()
        max_iter = cfg.budget.max_iterations
        # a prompt profile shapes one-off runs; a session's turns stay fastrlm's own
        turns = cfg.prompts.turns if isinstance(self.continuation, OneOff) else None
        if turns is not None:  # the question as asked, unless fastrlm may not show it whole
            asked = self.question if home is None and self._output is None else question
            messages = [*turns.opening(asked, self.context), turns.turn(1, max_iter)]
        else:
            messages = self.continuation.opening(cfg.prompts, self._system_prompt, info,
                                                 question, cfg.limits.history_chars)
        self._question = messages[-1]
        first_call = asyncio.create_task(self._call_root(messages, 1))
        try:
            await announce
        except BaseException:
            first_call.cancel()
            await asyncio.gather(first_call, return_exceptions=True)
            raise
        plan_rejected = False
        for iteration in range(1, max_iter + 1):
            self.iterations = iteration
            spent = ledger.exhausted() if iteration > 1 else None
            if spent is not None:
                return self._partial(spent, iteration - 1)
            self.tree.emit(
                evt.IterationStarted(
                    run_id=self.run_id, depth=self.depth, iteration=iteration,
                    max_iterations=max_iter,
                )
            )
            reply = await self._root_turn(messages, iteration,
                                          first_call if iteration == 1 else None)
            if isinstance(reply, Outcome):
                return replace(reply, iterations=iteration - 1)
            handled = await replies.run(reply, iteration,
                                        shown_chars=self._output_budget(messages))
            final, feedback = handled.final, handled.feedback
            if final is not None and not plan_rejected and looks_like_plan(final.text):
                plan_rejected = True  # once per run: a second plan-only answer is taken
                note = cfg.prompts.plan_final.format(preview=preview(final.text.strip(), 80))
                feedback, final = join_text(feedback, note), None
            if final is not None and self._output is not None:
                checked = self._output.check(final, StopReason.FINAL, iteration)
                if isinstance(checked, Outcome):
                    return checked
                feedback, final = join_text(feedback, checked), None
            if final is not None:
                return Outcome(final.text, StopReason.FINAL, iteration, source=final.source)
            refused = self._bridge.refused
            if refused is not None:
                resource = RESOURCE_NAMES.get(refused, "The budget")
                note = cfg.prompts.budget_spent.format(resource=resource)
                return await self._last_turn(messages, feedback + "\n\n" + note, refused,
                                             iteration)
            if turns is not None:  # the profile's messages: the outputs, then the next turn's
                outputs = turns.outputs(reply, handled.blocks)
                if outputs is not None:
                    messages.append({"role": "user", "content": outputs})
                messages.append(turns.turn(iteration + 1, max_iter))
                continue
            left = describe_budget(ledger.remaining(self.account.grant))
            messages.append({"role": "user", "content": cfg.prompts.iteration_user.format(
                outputs=feedback, notes="", budget=f"; {left}" if left else "",
                iteration=iteration, max_iterations=max_iter,
            )})
        note = cfg.prompts.last_turn.format(max_iterations=max_iter)
        last_feedback = messages.pop()["content"] if messages[-1]["role"] == "user" else ""
        return await self._last_turn(messages, join_text(last_feedback, note),
                                     StopReason.MAX_ITERATIONS, max_iter)

    async def _last_turn(
        self, messages: list[ChatMessage], note: str, reason: StopReason, iterations: int
    ) -> Outcome:
        """One more root turn that must answer. Always ends on a *user* message before the
        call (some providers reject a trailing assistant message)."""
        messages.append({"role": "user", "content": note})
        reply = await self._root_turn(messages, iterations + 1)
        if isinstance(reply, Outcome):
            if reply.stop_reason is StopReason.ERROR:
                reply = reply.with_stop(reason)
            return replace(reply, iterations=iterations)
        assert self._replies is not None
        final = (await self._replies.run(reply, iterations + 1, last=True)).final
        if final is not None and self._output is not None:
            return self._output.last(final, reason, iterations + 1)
        if final is not None:
            return Outcome(final.text, reason, iterations + 1, source=final.source)
        outcome = self._partial(reason, iterations + 1)
        if not outcome.answer:  # the prose, less any FINAL call it could not resolve
            outcome = replace(outcome,
                              answer=without_final_calls(extract_code_blocks(reply).prose))
        return outcome

    def _partial(self, reason: StopReason, iterations: int) -> Outcome:
        return Outcome(self._answer_so_far(), reason, iterations)

    async def _call_root(self, messages: list[ChatMessage], iteration: int
                         ) -> tuple[LMResponse, Booking] | Outcome:
        """One root call through the ledger, or the outcome that ends the run if it is refused
        or fails (a failed call's booked attempts are reported in ``model.failed``)."""
        limits = self.config.limits
        limit = limits.history_chars
        self.continuation.compact(limit)  # whole earlier questions first, then old outputs
        compact_history(messages, limit, full_history=limits.full_history,
                        requests_left=self.config.budget.max_iterations - iteration + 1)
        recorder = self.tree.recorder
        replayed = recorder.replayed_turn(self.scope, iteration, messages)
        if replayed is not None:
            return replayed
        held: list[Reservation] = []
        try:
            answered = await self.tree.root_call(
                self.lm,
                list(messages),
                subcall=self.depth > 0,
                max_tokens=self.config.limits.root_max_tokens,
                account=self.account,
                run_id=self.run_id,
                depth=self.depth,
                on_admitted=held.append,
                emit=self._emit,
            )
        except BudgetExceededError as exc:
            return Outcome(self._answer_so_far(), exc.reason, iteration, error=str(exc))
        except ProviderError as exc:
            error = f"{type(exc).__name__}: {exc}"
            booking = held[0].booking()
            self._emit(evt.ModelCallFailed(
                run_id=self.run_id, depth=self.depth, iteration=iteration, model=self.lm.model,
                error=error, input_tokens=booking.input_tokens,
                output_tokens=booking.output_tokens, cost_usd=booking.cost_usd,
                attempts=booking.attempts,
            ))
            return Outcome(self._answer_so_far(), StopReason.ERROR, iteration,
                           error=error, error_kind="provider", exception=exc)
        recorder.record_turn(self.scope, iteration, self.lm.model, messages, *answered,
                             subcall=self.depth > 0, elapsed=self.tree.ledger.elapsed())
        return answered

    def _output_budget(self, messages: list[ChatMessage]) -> int:
        """How much of this turn's output the model sees (``history.output_budget``; with
        ``full_history``, always ``Limits.output_chars``)."""
        limits = self.config.limits
        if limits.full_history:
            return limits.output_chars
        return output_budget(messages, limits.history_chars, limits.output_chars)

    async def _root_turn(
        self,
        messages: list[ChatMessage],
        iteration: int,
        pending: asyncio.Task[tuple[LMResponse, Booking] | Outcome] | None = None,
    ) -> str | Outcome:
        """The root model's next reply (from ``pending`` if that call is already in flight), or
        the outcome that ends the run."""
        try:
            answered = await (pending or self._call_root(messages, iteration))
        except asyncio.CancelledError:
            # Stopped (an overrun, the deadline) just as the first turn came back: that turn was
            # paid for, so its event is still sent.
            if (pending is not None and pending.done() and not pending.cancelled()
                    and pending.exception() is None):
                done = pending.result()
                if not isinstance(done, Outcome):
                    self._report_turn(*done, iteration)
            raise
        if isinstance(answered, Outcome):
            return answered
        response, booking = answered
        self._report_turn(response, booking, iteration)
        messages.append({"role": "assistant", "content": response.text})
        return response.text

    def _report_turn(self, response: LMResponse, booking: Booking, iteration: int) -> None:
        self.tree.emit(
            evt.ModelResponse(
                run_id=self.run_id,
                depth=self.depth,
                iteration=iteration,
                model=self.lm.model,
                text=response.text,
                latency_s=response.latency_s,
                **booking.reported(),
                **reply_report(response),
            )
        )

    # ------------------------------------------------------------------ prompts
    def _system_prompt(self) -> str:
        cfg = self.config
        budget = describe_budget(self.tree.ledger.remaining(self.account.grant),
                                 cfg.budget.max_iterations)
        return cfg.prompts.render_system(
            output_chars=cfg.limits.output_chars,
            window_chars=subcall_window_chars(
                cfg.sub_lm.model, cfg.limits.sub_max_tokens, cfg.limits.subcall_window_chars
            ),
            subcalls=cfg.subcalls,
            recursive=self.depth + 1 < cfg.budget.max_depth,
            budget_text=budget,
            tools=[(tool.signature, tool.description) for tool in cfg.tools],
            models=sorted(cfg.named_lms),
            values=[(name, kind) for name, _, kind in cfg.variables],
        )

    # ------------------------------------------------------------------ children
    async def _child(self, prompt: str, context: object, lm: LM, depth: int,
                     granted: ChildGrant | None = None) -> Outcome:
        """A child RLM for ``rlm_query`` (the bridge's ``spawn``), run to its outcome; with
        ``granted``, it and everything below it draw on that grant, take at most its turns
        and depth, and stop when its time is up."""
        config, grant = self.config, None
        if granted is not None:
            grant = granted.grant
            budget = config.budget
            config = replace(config, budget=replace(
                budget,
                max_iterations=min(budget.max_iterations,
                                   granted.max_iterations or budget.max_iterations),
                max_depth=min(budget.max_depth, depth + (granted.max_depth or budget.max_depth)),
            ))
        async with self.tree.child_limiter(depth):
            child = Run(
                config=config, tree=self.tree, question=prompt, context=context,
                depth=depth, parent_run_id=self.run_id,
                account=Account(parent=self.account, grant=grant), root_lm=lm,
                scope=self.tree.recorder.child_scope(self.scope, prompt, lm.model),
            )
            self.tree.emit(evt.ChildRunStarted(run_id=self.run_id, depth=self.depth,
                                           child_run_id=child.run_id,
                                           prompt_preview=preview(prompt), model=lm.model))
            left = None if grant is None or grant.deadline is None else (
                grant.deadline - time.monotonic())
            try:
                async with asyncio.timeout(left):
                    outcome = await child.execute()
            except TimeoutError:
                outcome = child.stopped(StopReason.TIMEOUT, "the time granted to it is up")
            self.tree.emit(evt.ChildRunFinished(run_id=self.run_id, depth=self.depth,
                                            child_run_id=child.run_id,
                                            stop_reason=outcome.stop_reason.value,
                                            cost_usd=child.account.cost_usd,
                                            answer_preview=preview(outcome.answer)))
        return outcome
