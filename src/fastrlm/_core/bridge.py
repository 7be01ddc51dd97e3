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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from .._foundation.error_text import error_text
from .._foundation.stop import StopReason
from ..lm import LM, ImagePart
from ..sandbox import (
    HandlerBridge,
    HostOpRequest,
    HostRequest,
    ThreeMethodFace,
    ToolRequest,
    tool_error_reply,
)
from .call_tree import CallTree, SubcallOutcome
from .feedback import with_context
from .ledger import Account
from .run_values import Outcome, RunConfig
from .sub_agent import agent_subcall
from .tools import run_tool

_SUBCALLS_DISABLED = error_text("subcalls_disabled", "sub-calls are disabled in this run")

#: Runs a child RLM (prompt, context, its root LM, its depth) to its outcome.
SpawnChild = Callable[[str, object, LM, int], Awaitable[Outcome]]


_RUN_OVER = error_text("no_answer", "the run is over: nothing more is sent for it")

@dataclass(frozen=True)
class Answers:
    """One batch's answers, one per prompt, and the limit that refused some of them (``None``:
    none refused; a deadline is not a refusal the model can act on)."""

    texts: list[str]
    refused: StopReason | None = None


@dataclass
class SubcallBridge(ThreeMethodFace):
    """The REPL's way back to the host for the run ``run_id`` at ``depth``."""

    config: RunConfig
    tree: CallTree
    run_id: str
    depth: int
    account: Account
    spawn: SpawnChild
    #: The run's scope in the tree's record (see :mod:`.replay`).
    scope: str = ""
    refused: StopReason | None = field(default=None, init=False)
    #: The run has ended: a host call still made by its REPL (a thread of model code that
    #: outlives the cell, in-process) is answered with an error, never sent, booked or traced.
    over: bool = field(default=False, init=False)
    _ops: HandlerBridge = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._ops = HandlerBridge({
            "llm_query": self._llm_query, "rlm_query": self._rlm_query, "tool": self._tool,
        })

    async def call(self, op: str, request: HostOpRequest) -> object:
        """The :class:`~fastrlm.sandbox.HostBridge` method: answer one checked host call (from
        the tree's record when it replays one: every op, whatever the table holds)."""
        if self.over:  # answered by the handlers with an error, and never recorded
            return await self._ops.call(op, request)
        return await self.tree.recorder.host(self.scope, op, request,
                                             lambda: self._ops.call(op, request))

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
                       images: list[list[ImagePart]] | None = None) -> Answers:
        """``llm_query_batched``: each prompt to the sub-model (or a sub-agent on it)."""
        if not self.config.subcalls:
            return Answers([_SUBCALLS_DISABLED] * len(prompts))
        lm = self.pick_lm(model, self.config.sub_lm)
        if isinstance(lm, str):
            return Answers([lm] * len(prompts))
        answer: Callable[[str, list[ImagePart]], Awaitable[SubcallOutcome]] | None = None
        if self.config.sub_tools:  # each prompt is a tool-calling agent on the sub-model
            answer = functools.partial(
                agent_subcall, self.tree, lm, tools=self.config.sub_tools,
                protocol=self.config.sub_tool_protocol, prompts=self.config.prompts,
                run_id=self.run_id, depth=self.depth, account=self.account,
            )
        texts, refused = await self.tree.batch(
            lm, prompts, run_id=self.run_id, depth=self.depth, account=self.account,
            answer=answer, images=images,
        )
        return Answers(texts, None if refused is StopReason.TIMEOUT else refused)

    async def ask_rlms(self, prompts: list[str], contexts: list[object] | None,
                       model: str | None) -> Answers:
        """``rlm_query_batched``: a child RLM per prompt, or plain sub-calls at the depth cap."""
        if not self.config.subcalls:
            return Answers([_SUBCALLS_DISABLED] * len(prompts))
        child_depth = self.depth + 1
        if child_depth >= self.config.budget.max_depth:
            merged = prompts if contexts is None else [
                with_context(p, c) for p, c in zip(prompts, contexts, strict=True)
            ]
            return await self.ask_llms(merged, model)
        default = self.config.child_lms.get(child_depth, self.config.root_lm)
        lm = self.pick_lm(model, default)
        if isinstance(lm, str):
            return Answers([lm] * len(prompts))
        ctxs: list[object] = list(contexts) if contexts is not None else list(prompts)
        refusals: list[StopReason] = []  # in the order the children finished

        async def child(prompt: str, context: object) -> str:
            outcome = await self.spawn(prompt, context, lm, child_depth)
            if outcome.refused is not None:
                refusals.append(outcome.refused)
            return _child_answer(outcome)

        texts = await asyncio.gather(*(child(p, c) for p, c in zip(prompts, ctxs, strict=True)))
        return Answers(list(texts), refusals[0] if refusals else None)

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
        return self._keep(await self.ask_rlms(request.prompts, request.contexts, request.model))

    async def _tool(self, request: ToolRequest) -> dict[str, object]:
        if self.over:
            return tool_error_reply("tool_error", "the run is over: no tool runs for it")
        return await run_tool(
            {tool.name: tool for tool in self.config.tools}, request.name, request.arguments,
            counter=self.tree.tool_counter, emit=self.tree.emit, run_id=self.run_id,
            depth=self.depth,
        )


def _child_answer(outcome: Outcome) -> str:
    if outcome.answer:
        return outcome.answer
    detail = f": {outcome.error}" if outcome.error else ""
    return error_text("child_failed", f"the child RLM stopped ({outcome.stop_reason.value}) "
                                      f"without an answer{detail}")
