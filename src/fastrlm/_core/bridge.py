"""The sub-call bridge: the host side of one run's REPL, the
:class:`~fastrlm.sandbox.HostBridge` its sandbox calls back into. The engine registers one
handler per host operation (``llm_query``, ``rlm_query``, ``tool``: the sandbox's
:data:`~fastrlm.sandbox.HOST_OPS`) in :meth:`SubcallBridge.call`'s table.

The batch methods return their refusal with the answers (:class:`Answers`); the handlers, whose
answers go to the REPL as strings, keep the first refusal of the run in
:attr:`SubcallBridge.refused` for the root loop, which then gives the model its last turn.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from .._foundation.error_text import error_text
from .._foundation.errors import BudgetExceededError, InvalidSettingError
from .._foundation.stop import StopReason
from .._foundation.validate import BUDGET_RULES
from ..lm import LM, ImagePart
from ..sandbox import (
    BudgetRequest,
    CombineRequest,
    HandlerBridge,
    HostOpRequest,
    HostRequest,
    ThreeMethodFace,
    ToolRequest,
    combine_refusal,
    tool_error_reply,
)
from .call_tree import CallTree, SubcallOutcome
from .combinators import Combine, Refused
from .feedback import with_context
from .grants import Grant
from .ledger import Account
from .run_values import Outcome, RunConfig
from .sub_agent import agent_subcall
from .tools import run_tool

_SUBCALLS_DISABLED = error_text("subcalls_disabled", "sub-calls are disabled in this run")

#: Runs a child RLM (prompt, context, its root LM, its depth, its grant or None) to its outcome.
SpawnChild = Callable[[str, object, LM, int, "ChildGrant | None"], Awaitable[Outcome]]


@dataclass(frozen=True)
class ChildGrant:
    """What ``rlm_query(..., budget={...})`` gives one child: its share of the ledger
    (``grant``) and its own turn and depth allowances (``None``: the run's)."""

    grant: Grant
    max_iterations: int | None = None
    max_depth: int | None = None


_RUN_OVER = error_text("no_answer", "the run is over: nothing more is sent for it")

@dataclass(frozen=True)
class Answers:
    """One batch's answers, one per prompt, and the limit that refused some of them (``None``:
    none refused; a deadline is not a refusal the model can act on)."""

    texts: list[str]
    refused: StopReason | None = None


async def _no_child(prompt: str, context: object, lm: LM, depth: int,
                    grant: ChildGrant | None) -> Outcome:
    """A bridge's ``spawn`` once its run is over (:meth:`SubcallBridge.end`): never called, as
    every handler answers an ended run first."""
    raise RuntimeError("the run is over: it starts no child run")


@dataclass
class SubcallBridge(ThreeMethodFace):
    """The REPL's way back to the host for the run ``run_id`` at ``depth``."""

    config: RunConfig
    tree: CallTree
    run_id: str
    depth: int
    account: Account
    spawn: SpawnChild
    #: The root turns this run has taken so far (what ``budget()`` reports against
    #: ``max_iterations``).
    turns: Callable[[], int] = lambda: 0
    #: The run's scope in the tree's record (see :mod:`.replay`).
    scope: str = ""
    refused: StopReason | None = field(default=None, init=False)
    #: The run has ended (:meth:`end`): a host call still made by its REPL (a thread of model
    #: code that outlives the cell, in-process) is answered with an error, never sent, booked
    #: or traced.
    over: bool = field(default=False, init=False)

    def end(self) -> None:
        """The run is over: answer its REPL's later calls with an error, and let go of the run
        (``spawn`` and ``turns`` are its methods), so that nothing here holds it in a reference
        cycle: its objects, its context among them, are freed when it returns, not at some
        later pass of the garbage collector. Idempotent."""
        self.over = True
        turns = self.turns()
        self.turns = lambda: turns
        self.spawn = _no_child

    def _ops(self) -> HandlerBridge:
        """The host operations' handlers. Made for each call: kept on the bridge, its bound
        methods would hold the bridge in a cycle (see :meth:`end`)."""
        return HandlerBridge({
            "llm_query": self._llm_query, "rlm_query": self._rlm_query, "tool": self._tool,
            "budget": self._budget, "llm_combine": self._combine,
        })

    async def call(self, op: str, request: HostOpRequest) -> object:
        """The :class:`~fastrlm.sandbox.HostBridge` method: answer one checked host call (from
        the tree's record when it replays one: every op, whatever the table holds)."""
        ops = self._ops()
        if self.over:  # answered by the handlers with an error, and never recorded
            return await ops.call(op, request)
        return await self.tree.recorder.host(self.scope, op, request,
                                             lambda: ops.call(op, request))

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

    async def ask_llms(self, prompts: list[str], model: str | None,
                       images: list[list[ImagePart]] | None = None,
                       account: Account | None = None) -> Answers:
        """``llm_query_batched``: each prompt to the sub-model (or a sub-agent on it), drawing
        on ``account`` (default: the run's)."""
        account = account or self.account
        if not self.config.subcalls:
            return Answers([_SUBCALLS_DISABLED] * len(prompts))
        lm = self.pick_lm(model, self.config.sub_lm)
        if isinstance(lm, str):
            return Answers([lm] * len(prompts))
        answer: Callable[[str, list[ImagePart], int], Awaitable[SubcallOutcome]] | None = None
        if self.config.sub_tools:  # each prompt is a tool-calling agent on the sub-model
            answer = functools.partial(
                agent_subcall, self.tree, lm, tools=self.config.sub_tools,
                protocol=self.config.sub_tool_protocol, prompts=self.config.prompts,
                run_id=self.run_id, depth=self.depth, account=account,
            )
        texts, refused = await self.tree.batch(
            lm, prompts, run_id=self.run_id, depth=self.depth, account=account,
            answer=answer, images=images,
        )
        return Answers(texts, None if refused is StopReason.TIMEOUT else refused)

    async def ask_rlms(self, prompts: list[str], contexts: list[object] | None,
                       model: str | None,
                       budget: dict[str, int | float] | None = None) -> Answers:
        """``rlm_query_batched``: a child RLM per prompt, or plain sub-calls at the depth cap;
        with ``budget``, each child (or each plain sub-call) within its own grant, carved from
        what is left to this run (a grant that does not fit answers its prompt with the
        refusal, and nothing is sent for it)."""
        if not self.config.subcalls:
            return Answers([_SUBCALLS_DISABLED] * len(prompts))
        asked = None
        if budget is not None:
            try:
                asked = grant_request(budget)
            except InvalidSettingError as exc:
                return Answers([error_text("bad_arguments", f"rlm_query: {exc}")] * len(prompts))
        child_depth = self.depth + 1
        if child_depth >= self.config.budget.max_depth:
            merged = prompts if contexts is None else [
                with_context(p, c) for p, c in zip(prompts, contexts, strict=True)
            ]
            if asked is None:
                return await self.ask_llms(merged, model)
            return await self._granted_llms(merged, model, asked)
        default = self.config.child_lms.get(child_depth, self.config.root_lm)
        lm = self.pick_lm(model, default)
        if isinstance(lm, str):
            return Answers([lm] * len(prompts))
        ctxs: list[object] = list(contexts) if contexts is not None else list(prompts)
        refusals: list[StopReason] = []  # in the order the children finished

        async def child(prompt: str, context: object) -> str:
            granted = None
            if asked is not None:
                carved = self._carve(asked)
                if isinstance(carved, str):
                    return carved
                granted = ChildGrant(carved, asked.max_iterations, asked.max_depth)
            try:
                outcome = await self.spawn(prompt, context, lm, child_depth, granted)
            finally:
                if granted is not None:
                    self.tree.ledger.close(granted.grant)
            if outcome.refused is not None and granted is None:  # a grant's own limits are
                refusals.append(outcome.refused)  # the child's, not this run's
            return _child_answer(outcome)

        texts = await asyncio.gather(*(child(p, c) for p, c in zip(prompts, ctxs, strict=True)))
        return Answers(list(texts), refusals[0] if refusals else None)

    def _carve(self, asked: GrantRequest) -> Grant | str:
        """A grant of ``asked`` carved from what is left to this run, or the refusal text."""
        try:
            return self.tree.ledger.carve(asked.limits, parent=self.account.grant,
                                          seconds=asked.seconds)
        except BudgetExceededError as exc:
            return error_text(exc.reason.value, f"rlm_query: the budget asked for does not "
                              f"fit what is left ({exc}); ask for less, or check budget()")

    async def _granted_llms(self, prompts: list[str], model: str | None,
                            asked: GrantRequest) -> Answers:
        """Plain sub-calls (``rlm_query`` at the depth cap), each within its own grant."""
        async def one(prompt: str) -> str:
            carved = self._carve(asked)
            if isinstance(carved, str):
                return carved
            try:
                answers = await self.ask_llms([prompt], model,
                                              account=Account(self.account, grant=carved))
            finally:
                self.tree.ledger.close(carved)
            return answers.texts[0]

        return Answers(list(await asyncio.gather(*(one(p) for p in prompts))))

    def _keep(self, answers: Answers) -> list[str]:
        if answers.refused is not None and self.refused is None:
            self.refused = answers.refused
        return answers.texts

    # The host operations' handlers (see HOST_OPS in fastrlm.sandbox).
    async def _llm_query(self, request: HostRequest) -> list[str]:
        if self.over:
            return [_RUN_OVER] * len(request.prompts)
        return self._keep(await self.ask_llms(request.prompts, request.model, request.images))

    async def _rlm_query(self, request: HostRequest) -> list[str]:
        if self.over:
            return [_RUN_OVER] * len(request.prompts)
        return self._keep(await self.ask_rlms(request.prompts, request.contexts, request.model,
                                              request.budget))

    async def _tool(self, request: ToolRequest) -> dict[str, object]:
        if self.over:
            return tool_error_reply("tool_error", "the run is over: no tool runs for it")
        return await run_tool(
            {tool.name: tool for tool in self.config.tools}, request.name, request.arguments,
            counter=self.tree.tool_counter, emit=self.tree.emit, run_id=self.run_id,
            depth=self.depth,
        )


    async def _budget(self, _request: BudgetRequest) -> dict[str, object]:
        """``budget()``: what is left to this run, read from the ledger (nothing is booked)."""
        left, limits = self.tree.ledger.view(self.account.grant)
        budget = self.config.budget
        depth_limit = budget.max_depth - 1 - self.depth
        return {
            **left, "depth": max(depth_limit, 0),
            "iterations": max(budget.max_iterations - self.turns(), 0),
            "limits": {**limits, "depth": budget.max_depth,
                       "iterations": budget.max_iterations},
        }

    async def _combine(self, request: CombineRequest) -> dict[str, object]:
        """``llm_map`` / ``llm_filter`` / ``llm_reduce``: refused before anything is sent when
        its bound does not fit what is left (see :mod:`.combinators`)."""
        if self.over:
            return combine_refusal("no_answer", "the run is over: nothing more is sent for it")
        if not self.config.subcalls:
            return combine_refusal("subcalls_disabled", "sub-calls are disabled in this run")
        lm = self.pick_lm(request.model, self.config.sub_lm)
        if isinstance(lm, str):
            known = ", ".join(sorted(self.config.named_lms)) or "(none)"
            return combine_refusal("unknown_model", f"no model named {request.model!r}; "
                                   f"configured models: {known}")
        combine = Combine(self.tree, lm, self.run_id, self.depth, self.account)
        try:
            value = await combine.run(request,
                                      retries=self.config.limits.max_output_retries)
        except Refused as exc:
            return combine_refusal(exc.kind, str(exc))
        return {"ok": True, "json": json.dumps(value, ensure_ascii=False)}


@dataclass(frozen=True)
class GrantRequest:
    """A child's ``budget={...}`` checked: the ledger limits to carve, its seconds, and its
    turn and depth allowances."""

    limits: dict[str, float]
    seconds: float | None = None
    max_iterations: int | None = None
    max_depth: int | None = None


#: ``budget={...}`` keys -> the ledger's grant dimensions.
_GRANT_DIMENSIONS = {"max_usd": "usd", "max_subcalls": "subcalls", "max_requests": "requests",
                     "max_input_tokens": "input_tokens", "max_output_tokens": "output_tokens"}


def grant_request(budget: dict[str, int | float]) -> GrantRequest:
    """``budget`` (``rlm_query``'s, keys checked by the sandbox) with each value checked by
    :data:`BUDGET_RULES`. Raises :class:`InvalidSettingError` naming the key and its range."""
    for key, value in budget.items():
        BUDGET_RULES[key].check(f"budget[{key!r}]", value)
    seconds = budget.get("max_seconds")
    iterations = budget.get("max_iterations")
    depth = budget.get("max_depth")
    return GrantRequest(
        {dimension: budget[key] for key, dimension in _GRANT_DIMENSIONS.items()
         if key in budget},
        None if seconds is None else float(seconds),
        None if iterations is None else int(iterations),
        None if depth is None else int(depth),
    )


def _child_answer(outcome: Outcome) -> str:
    if outcome.answer:
        return outcome.answer
    detail = f": {outcome.error}" if outcome.error else ""
    return error_text("child_failed", f"the child RLM stopped ({outcome.stop_reason.value}) "
                                      f"without an answer{detail}")
