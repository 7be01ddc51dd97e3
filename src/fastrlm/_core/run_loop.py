"""One RLM run: the root loop over a sandbox, and the host side of the REPL's sub-calls.

A :class:`Run` is created per run (root or child). Everything a whole tree shares (budget
ledger, concurrency limiter, usage, events) lives in its :class:`~fastrlm._core.call_tree.CallTree`.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from .._exceptions import BudgetExceededError, ContextError, ProviderError, SandboxError
from .._windows import subcall_window_chars
from ..context._info import ContextInfo, context_digest, describe_shape
from ..lm._base import LM, ChatMessage, ImagePart, LMResponse
from ..sandbox._base import FinalValue, Sandbox, SandboxLimits
from ..sandbox._hostcalls import HostBridge, error_text
from .call_tree import CallTree, SubcallOutcome
from .events import (
    ChildRunFinished,
    ChildRunStarted,
    CodeExecuted,
    Event,
    FinalAnswer,
    IterationStarted,
    ModelCallFailed,
    ModelResponse,
    RunFinished,
    RunStarted,
    SandboxRestarted,
    SandboxStarted,
    preview,
)
from .feedback import RESOURCE_NAMES, join_text, output_of, status_of, with_context
from .history import Pending, add_feedback
from .ledger import Account, Booking, Reservation
from .output import OutputInvalid
from .parsing import (
    compact_history,
    extract_code_blocks,
    find_prose_final,
    looks_like_plan,
    truncate_output,
    unquote_literal,
    without_final_calls,
)
from .prompts import describe_budget, question_home, shown_question
from .run_values import Outcome, RunConfig, new_run_id
from .session import QuestionSpan, SessionState, compact_questions
from .stop import StopReason
from .sub_agent import agent_subcall
from .tools import run_tool

_SUBCALLS_DISABLED = error_text("subcalls_disabled", "sub-calls are disabled in this run")
_HASH_IN_THREAD_CHARS = 1_000_000


def make_sandbox(kind: str, limits: SandboxLimits) -> Sandbox:
    from ..sandbox import create_sandbox

    return create_sandbox(kind, limits)


@dataclass
class Run:
    """A single run. ``execute()`` never raises for model, budget or provider trouble: it returns
    an :class:`Outcome` with the stop reason. It re-raises ``CancelledError``."""

    config: RunConfig
    tree: CallTree
    question: str
    context: object
    depth: int = 0
    parent_run_id: str | None = None
    run_id: str = field(default_factory=new_run_id)
    account: Account = field(default_factory=Account)
    root_lm: LM | None = None
    _question_home: str | None = None  # where a question too long to show is read (prompts)
    session: SessionState | None = None
    new_context: bool = True  # in a session: this question brought a context of its own
    _question: ChatMessage | None = None  # in a session: this question's own message
    limit_hit: StopReason | None = None
    iterations: int = 0
    last_answer_content: str | None = None
    plan_rejected: bool = False
    output_failures: int = 0
    _settle: Pending | None = None  # the feedback message to settle next (history.add_feedback)
    _sandbox: Sandbox | None = None
    _sandbox_ready: asyncio.Task[None] | None = None
    _announced: asyncio.Event = field(default_factory=asyncio.Event)
    _early: list[Event] = field(default_factory=list)

    @property
    def lm(self) -> LM:
        return self.root_lm or self.config.root_lm

    # ------------------------------------------------------------------ lifecycle
    async def execute(self) -> Outcome:
        started = time.monotonic()
        outcome = Outcome("", StopReason.ERROR, 0)
        try:
            outcome = await self._execute()
        except asyncio.CancelledError:
            ledger = self.tree.ledger
            left = ledger.seconds_left()
            if ledger.overrun is not None:  # the engine stops the tree at an overrun
                reason = ledger.overrun
            elif left is not None and left <= 0:
                reason = StopReason.TIMEOUT
            else:
                reason = StopReason.CANCELLED
            outcome = Outcome(self.last_answer_content or "", reason, self.iterations)
            self._finish(outcome, started)
            raise
        self._finish(outcome, started)
        return outcome

    async def _execute(self) -> Outcome:
        cfg = self.config
        try:
            info = describe_shape(self.context)
            self._question_home = question_home(self.question, self.context,
                                                cfg.limits.question_chars)
        except ContextError as exc:
            return Outcome("", StopReason.ERROR, 0, error=str(exc), error_kind="context",
                           exception=exc)
        memory_mb = cfg.limits.worker_memory_mb
        limits = SandboxLimits(
            exec_timeout_s=cfg.budget.exec_timeout_s,
            max_output_bytes=max(cfg.limits.output_chars * 8, 1_000_000),
            memory_bytes=None if memory_mb is None else memory_mb * 1024 * 1024,
            scratch_bytes=cfg.limits.scratch_mb * 1024 * 1024,
            max_answer_chars=cfg.limits.max_answer_chars,
            env=tuple(sorted(cfg.limits.worker_env.items())),
            tools=tuple(tool.spec for tool in cfg.tools),
        )
        session = self.session
        kept = session.sandbox if session is not None else None
        if kept is not None:  # a session's later question: its REPL, maybe a new context
            sandbox = kept
        else:
            try:
                sandbox = make_sandbox(cfg.sandbox_kind, limits)
            except SandboxError as exc:
                self._emit_started(info, "unavailable")
                return Outcome("", StopReason.ERROR, 0, error=str(exc), error_kind="sandbox",
                               exception=exc)
        self._sandbox = sandbox
        # Three things start at once: hashing the context for run.started (seconds for a
        # 400 MB context), the worker, and the root's first call (which needs only the shape).
        self._announced = asyncio.Event()
        announce = asyncio.create_task(self._announce(info))
        if kept is not None:
            self._sandbox_ready = asyncio.create_task(self._next_context(sandbox, info))
        else:
            self._sandbox_ready = asyncio.create_task(self._start_sandbox(sandbox))
        try:
            outcome = await self._loop(info, announce)
        except (SandboxError, ContextError) as exc:
            kind = "context" if isinstance(exc, ContextError) else "sandbox"
            error = str(exc) if kind == "context" else f"sandbox failed: {exc}"
            outcome = Outcome(self.last_answer_content or "", StopReason.ERROR, self.iterations,
                              error=error, error_kind=kind, exception=exc)
        finally:
            for task in (announce, self._sandbox_ready):
                if not task.done():
                    task.cancel()
            await asyncio.gather(announce, self._sandbox_ready, return_exceptions=True)
            if not self._announced.is_set():  # run.started always precedes run.finished
                self._emit_started(info, cfg.sandbox_kind)
            if session is None or session.closed or not self._sandbox_ready.done() or (
                    self._sandbox_ready.cancelled() or self._sandbox_ready.exception()):
                await sandbox.close()  # a session keeps a worker that started
                if session is not None:
                    session.sandbox = None
            elif kept is None:
                session.sandbox = sandbox
        outcome.sandbox = sandbox.layer
        return outcome

    async def _next_context(self, sandbox: Sandbox, info: ContextInfo) -> None:
        """A session's later question: bind its context as ``context_<n>`` and ``context``."""
        session = self.session
        assert session is not None
        session.bridge.run = self  # the REPL's host calls are this question's now
        if self.new_context:
            name = f"context_{len(session.contexts)}"
            await sandbox.define(name, self.context)
            await sandbox.define("context", alias=name)
            session.contexts.append(_context_note(info))
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
        bridge: HostBridge = self  # a Run is its sandbox's HostBridge
        if self.session is not None:  # a session's worker outlives this run: it forwards
            self.session.bridge.run = self
            bridge = self.session.bridge
        await sandbox.start(self.context, bridge)
        if self.session is not None:  # the first question of a session: context_0 too
            await sandbox.define("context_0", alias="context")
        await self._announced.wait()
        self.tree.emit(SandboxStarted(run_id=self.run_id, depth=self.depth, layer=sandbox.layer,
                                      unsafe=sandbox.unsafe,
                                      startup_s=time.monotonic() - started))

    def _emit(self, event: Event) -> None:
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
            RunStarted(
                run_id=self.run_id,
                depth=self.depth,
                parent_run_id=self.parent_run_id,
                question=preview(self.question, 2000),
                model=self.lm.model,
                sub_model=cfg.sub_lm.model if cfg.subcalls else "",
                context=info.to_dict(),
                sandbox=layer,
                budget=cfg.budget.to_dict(),
                session_id=self.session.id if self.session else None,
                session_question=self.session.questions + 1 if self.session else 0,
            )
        )
        early, self._early = self._early, []
        for event in early:
            self.tree.emit(event)

    def _finish(self, outcome: Outcome, started: float) -> None:
        ledger = self.tree.ledger
        top = self.depth == 0
        session = self.session
        if session is not None and self._question is not None:
            # found by identity: compaction of earlier questions moves it
            start = next((i for i, m in enumerate(session.messages) if m is self._question), -1)
            if start >= 0:
                session.spans.append(QuestionSpan(
                    number=session.questions + 1, start=start, end=len(session.messages),
                    question=self.question, answer=outcome.answer,
                ))
        if outcome.source:
            self.tree.emit(
                FinalAnswer(
                    run_id=self.run_id,
                    depth=self.depth,
                    source=outcome.source,
                    answer_chars=len(outcome.answer),
                    answer_preview=preview(outcome.answer),
                )
            )
        self.tree.emit(
            RunFinished(
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
    async def _loop(self, info: ContextInfo, announce: asyncio.Task[None]) -> Outcome:
        cfg = self.config
        ledger = self.tree.ledger
        session = self.session
        if session is not None and session.messages:
            messages = session.messages  # the session's conversation goes on
            compact_questions(session, cfg.limits.history_chars)
            messages.append({"role": "user", "content": self._session_question(info)})
        else:
            messages = [
                {"role": "system", "content": self._system_prompt()},
                {"role": "user", "content": self._first_message(info)},
            ]
            if session is not None:
                session.messages = messages
                session.contexts.append(_context_note(info))
        self._question = messages[-1]
        first_call = asyncio.create_task(self._call_root(messages, 1))
        try:
            await announce
        except BaseException:
            first_call.cancel()
            await asyncio.gather(first_call, return_exceptions=True)
            raise
        max_iter = cfg.budget.max_iterations
        for iteration in range(1, max_iter + 1):
            self.iterations = iteration
            spent = ledger.exhausted() if iteration > 1 else None
            if spent is not None:
                return self._partial(spent, iteration - 1)
            self.tree.emit(
                IterationStarted(
                    run_id=self.run_id, depth=self.depth, iteration=iteration,
                    max_iterations=max_iter,
                )
            )
            reply = await self._root_turn(messages, iteration,
                                          first_call if iteration == 1 else None)
            if isinstance(reply, Outcome):
                reply.iterations = iteration - 1
                return reply
            final, feedback = await self._run_reply(reply, iteration)
            if final is not None and not self.plan_rejected and looks_like_plan(final.text):
                self.plan_rejected = True  # once per run: a second plan-only answer is taken
                note = cfg.prompts.plan_final.format(preview=preview(final.text.strip(), 80))
                feedback, final = join_text(feedback, note), None
            if final is not None and self._typed():
                typed, note = self._check_output(final, StopReason.FINAL, iteration)
                if typed is not None:
                    return typed
                feedback, final = join_text(feedback, note), None
            if final is not None:
                return Outcome(final.text, StopReason.FINAL, iteration, source=final.source)
            if self.limit_hit is not None:
                resource = RESOURCE_NAMES.get(self.limit_hit, "The budget")
                note = cfg.prompts.budget_spent.format(resource=resource)
                return await self._last_turn(messages, feedback + "\n\n" + note,
                                             self.limit_hit, iteration)
            budget = describe_budget(ledger.remaining(), max_iter - iteration)
            shown = cfg.prompts.iteration_user.format(
                outputs=feedback, notes="", budget=f"Budget {budget}\n",
                iteration=iteration, max_iterations=max_iter,
            )
            self._settle = add_feedback(messages, shown, feedback, self._settle,
                                        full_history=cfg.limits.full_history)
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
            reply.iterations = iterations
            if reply.stop_reason is StopReason.ERROR:
                reply.stop_reason = reason
            return reply
        final, _ = await self._run_reply(reply, iterations + 1, last=True)
        if final is not None and self._typed():
            self.output_failures = self.config.limits.max_output_retries  # no turn left to fix it
            typed, _ = self._check_output(final, reason, iterations + 1)
            assert typed is not None
            typed.stop_reason = reason  # the limit's reason, valid answer or not
            return typed
        if final is not None:
            return Outcome(final.text, reason, iterations + 1, source=final.source)
        outcome = self._partial(reason, iterations + 1)
        if not outcome.answer:  # the prose, less any FINAL call it could not resolve
            outcome.answer = without_final_calls(extract_code_blocks(reply).prose)
        return outcome

    def _typed(self) -> bool:
        return self.depth == 0 and self.config.output is not None

    def _check_output(self, final: FinalValue, reason: StopReason, iteration: int
                      ) -> tuple[Outcome | None, str]:
        """A delivered answer checked against ``completion(output=T)``: the outcome (the typed
        value, or ``invalid_output`` once the retries are spent), or None and the note that
        sends the problem back to the model."""
        spec = self.config.output
        assert spec is not None
        try:
            value, text = spec.parse(final.text, self.config.limits.max_answer_chars)
        except OutputInvalid as exc:
            self.output_failures += 1
            left = self.config.limits.max_output_retries - self.output_failures + 1
            if left <= 0:
                return Outcome(final.text, StopReason.INVALID_OUTPUT, iteration,
                               error=f"the answer does not match {spec.name}: {exc}",
                               source=final.source), ""
            return None, self.config.prompts.output_invalid.format(
                name=spec.name, errors=exc, tries_left=left)
        return Outcome(text, reason, iteration, source=final.source, value=value), ""

    def _partial(self, reason: StopReason, iterations: int) -> Outcome:
        return Outcome(self.last_answer_content or "", reason, iterations)

    async def _call_root(self, messages: list[ChatMessage], iteration: int
                         ) -> tuple[LMResponse, Booking] | Outcome:
        """One root call through the ledger, or the outcome that ends the run if it is refused
        or fails (a failed call's booked attempts are reported in ``model.failed``)."""
        limit = self.config.limits.history_chars
        if self.session is not None:  # whole earlier questions first, then old outputs
            compact_questions(self.session, limit)
        compact_history(messages, limit)
        held: list[Reservation] = []
        try:
            return await self.tree.root_call(
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
            return Outcome(self.last_answer_content or "", exc.reason, iteration,
                           error=str(exc))
        except ProviderError as exc:
            error = f"{type(exc).__name__}: {exc}"
            booking = held[0].booking()
            self._emit(ModelCallFailed(
                run_id=self.run_id, depth=self.depth, iteration=iteration, model=self.lm.model,
                error=error, input_tokens=booking.input_tokens,
                output_tokens=booking.output_tokens, cost_usd=booking.cost_usd,
                attempts=booking.attempts,
            ))
            return Outcome(self.last_answer_content or "", StopReason.ERROR, iteration,
                           error=error, error_kind="provider", exception=exc)

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
            ModelResponse(
                run_id=self.run_id,
                depth=self.depth,
                iteration=iteration,
                model=self.lm.model,
                text=response.text,
                input_tokens=booking.input_tokens,
                output_tokens=booking.output_tokens,
                cost_usd=booking.cost_usd,
                latency_s=response.latency_s,
                attempts=booking.attempts,
                anomaly=booking.anomaly,
            )
        )

    async def _run_reply(self, text: str, iteration: int, last: bool = False
                         ) -> tuple[FinalValue | None, str]:
        """Run the code of one reply. Returns the delivered answer (if any) and the feedback
        text for the model.

        A strict prose ``FINAL(...)``/``FINAL_VAR(...)`` line (see ``find_prose_final``) is taken
        after the reply's blocks have run without error (or, in the ``last`` turn, which has no
        later one to fix them, after any): ``FINAL_VAR(name)`` and a bare ``FINAL(identifier)``
        are resolved in the REPL (a variable of that name is delivered), any other
        ``FINAL(argument)`` is what the same call in a code block delivers for a literal (see
        ``unquote_literal``), else the text itself."""
        prompts = self.config.prompts
        reply = extract_code_blocks(text)
        prose_final = find_prose_final(reply.prose)
        if not reply.blocks and prose_final is None:
            return None, prompts.no_code
        literal: FinalValue | None = None
        final_code: str | None = None
        if prose_final is not None:
            argument = unquote_literal(prose_final.argument)
            if prose_final.kind == "FINAL_VAR":
                final_code = f"FINAL_VAR({argument!r})"
            elif prose_final.argument.isidentifier():
                final_code = f"FINAL({argument!r})"
            else:
                literal = FinalValue(argument, "FINAL")
        if not reply.blocks and literal is not None:
            return literal, ""
        assert self._sandbox is not None and self._sandbox_ready is not None
        await self._sandbox_ready
        blocks = reply.blocks + ((final_code,) if final_code is not None else ())
        per_block = max(self.config.limits.output_chars // len(blocks), 200)
        parts: list[str] = []
        notes: list[str] = []
        failed = False
        for number, code in enumerate(blocks, 1):
            if number > len(reply.blocks) and failed and not last:  # prose FINAL after a failure
                notes.append(prompts.prose_final_ignored)
                break
            result = await self._sandbox.execute(code)
            failed = failed or result.error is not None
            if result.answer_content is not None:
                self.last_answer_content = result.answer_content
            shown = truncate_output(output_of(result), per_block)
            self.tree.emit(
                CodeExecuted(
                    run_id=self.run_id, depth=self.depth, iteration=iteration, block=number,
                    code=code, output=shown, output_chars=len(result.stdout) + len(result.stderr),
                    error=result.error, duration_s=result.duration_s,
                    timed_out=result.timed_out, restarted=result.restarted,
                    restored=list(result.restored),
                )
            )
            parts.append(prompts.block_output.format(
                block=number, status=status_of(result), output=shown))
            if result.restored:
                names = ", ".join(f"`{n}`" for n in result.restored)
                they = "it was" if len(result.restored) == 1 else "they were"
                notes.append(prompts.restored.format(names=names, they=they))
            if result.restarted:
                self.tree.emit(SandboxRestarted(run_id=self.run_id, depth=self.depth,
                                                reason=result.error or "worker restarted"))
                reason = result.error or "hard timeout"
                if self.session is not None:
                    names = ", ".join(f"`context_{i}`" for i in range(len(self.session.contexts)))
                    notes.append(prompts.session_restarted.format(reason=reason,
                                                                  names=names + ", `context`"))
                else:
                    notes.append(prompts.restarted.format(reason=reason))
            if result.final is not None:
                return result.final, ""
        if literal is not None:
            if not failed or last:
                return literal, ""
            notes.append(prompts.prose_final_ignored)
        return None, "\n\n".join(parts) + ("\n\n" + "".join(notes) if notes else "")

    # ------------------------------------------------------------------ prompts
    def _system_prompt(self) -> str:
        cfg = self.config
        budget = describe_budget(self.tree.ledger.remaining(), cfg.budget.max_iterations)
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
        )

    def _session_question(self, info: ContextInfo) -> str:
        """A session's next question: its number, its context if it brought one, the list of
        contexts (the new one is counted before ``_next_context`` binds it)."""
        session = self.session
        assert session is not None
        prompts = self.config.prompts
        new = ""
        names = [f"`context_{i}` ({text})" for i, text in enumerate(session.contexts)]
        if self.new_context:
            index = len(session.contexts)
            new = prompts.session_new_context.format(index=index, description=info.describe())
            names.append(f"`context_{index}` ({_context_note(info)})")
        question = self._shown_question()
        if self._typed():
            spec = self.config.output
            assert spec is not None
            question += prompts.output_format.format(name=spec.name, schema=spec.schema_text())
        return prompts.session_question.format(
            number=session.questions + 1, question=question, new_context=new,
            contexts="; ".join(names) + f"; `context` is `context_{len(names) - 1}`.",
        )

    def _shown_question(self) -> str:
        return shown_question(self.question, self._question_home,
                              self.config.prompts.drop_in_question)

    def _first_message(self, info: ContextInfo) -> str:
        question = self._shown_question()
        if self._typed():
            spec = self.config.output
            assert spec is not None
            question += self.config.prompts.output_format.format(name=spec.name,
                                                                 schema=spec.schema_text())
        return self.config.prompts.first_user.format(
            context_description=info.describe(), question=question
        )

    # ------------------------------------------------------------------ sub-calls
    def pick_lm(self, name: str | None, default: LM) -> LM | str:
        """The LM a REPL call asked for, or an error text if the name is not configured."""
        if name is None:
            return default
        lm = self.config.named_lms.get(name)
        if lm is None:
            known = ", ".join(sorted(self.config.named_lms)) or "(none)"
            return error_text("unknown_model",
                              f"no model named {name!r}; configured models: {known}")
        return lm

    # The HostBridge methods: the sandbox's way back to the host (see sandbox._hostcalls).
    async def llm_query_batched(
        self, prompts: list[str], model: str | None, images: list[list[ImagePart]] | None = None
    ) -> list[str]:
        if not self.config.subcalls:
            return [_SUBCALLS_DISABLED] * len(prompts)
        lm = self.pick_lm(model, self.config.sub_lm)
        if isinstance(lm, str):
            return [lm] * len(prompts)
        answer: Callable[[str, list[ImagePart]], Awaitable[SubcallOutcome]] | None = None
        if self.config.sub_tools:  # each prompt is a tool-calling agent on the sub-model
            answer = functools.partial(
                agent_subcall, self.tree, lm, tools=self.config.sub_tools,
                protocol=self.config.sub_tool_protocol, prompts=self.config.prompts,
                run_id=self.run_id, depth=self.depth, account=self.account,
            )

        answers, refused = await self.tree.batch(
            lm, prompts, run_id=self.run_id, depth=self.depth, account=self.account,
            answer=answer,
            images=images,
        )
        if refused is not None and refused is not StopReason.TIMEOUT:
            self.limit_hit = refused
        return answers

    async def call_tool(self, name: str, arguments: dict[str, object]) -> dict[str, object]:
        return await run_tool(
            {tool.name: tool for tool in self.config.tools}, name, arguments,
            counter=self.tree.tool_counter, emit=self.tree.emit, run_id=self.run_id,
            depth=self.depth,
        )

    async def rlm_query_batched(
        self, prompts: list[str], contexts: list[object] | None, model: str | None
    ) -> list[str]:
        if not self.config.subcalls:
            return [_SUBCALLS_DISABLED] * len(prompts)
        child_depth = self.depth + 1
        if child_depth >= self.config.budget.max_depth:
            merged = prompts if contexts is None else [
                with_context(p, c) for p, c in zip(prompts, contexts, strict=True)
            ]
            return await self.llm_query_batched(merged, model)
        default = self.config.child_lms.get(child_depth, self.config.root_lm)
        lm = self.pick_lm(model, default)
        if isinstance(lm, str):
            return [lm] * len(prompts)
        ctxs: list[object] = list(contexts) if contexts is not None else list(prompts)
        return list(await asyncio.gather(
            *(self._child(p, c, lm, child_depth) for p, c in zip(prompts, ctxs, strict=True))
        ))

    async def _child(self, prompt: str, context: object, lm: LM, depth: int) -> str:
        async with self.tree.child_limiter(depth):
            child = Run(
                config=self.config, tree=self.tree, question=prompt, context=context,
                depth=depth, parent_run_id=self.run_id, account=Account(parent=self.account),
                root_lm=lm,
            )
            self.tree.emit(ChildRunStarted(run_id=self.run_id, depth=self.depth,
                                           child_run_id=child.run_id,
                                           prompt_preview=preview(prompt), model=lm.model))
            outcome = await child.execute()
            self.tree.emit(ChildRunFinished(run_id=self.run_id, depth=self.depth,
                                            child_run_id=child.run_id,
                                            stop_reason=outcome.stop_reason.value,
                                            cost_usd=child.account.cost_usd,
                                            answer_preview=preview(outcome.answer)))
        if child.limit_hit is not None and self.limit_hit is None:
            self.limit_hit = child.limit_hit
        if outcome.answer:
            return outcome.answer
        detail = f": {outcome.error}" if outcome.error else ""
        return error_text("child_failed", f"the child RLM stopped ({outcome.stop_reason.value}) "
                                          f"without an answer{detail}")



def _context_note(info: ContextInfo) -> str:
    """A context in a few words: ``str, 12,345 characters`` / ``list of 40, 9,000 characters``."""
    if info.type == "str":
        return f"str, {info.total_chars:,} characters"
    return f"{info.type} of {info.n_chunks:,}, {info.total_chars:,} characters"
