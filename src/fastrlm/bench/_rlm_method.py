"""The ``rlm`` and ``rlm-no-subcalls`` methods: fastrlm's engine, as the harness calls it.

With ``meter.track_docids`` the documents that reach a model are recorded: those in sub-call
prompts and in the REPL output shown to the root model (BrowseComp's retrieval recall).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .. import Budget, Limits, RLMError
from ..events import (
    CodeExecuted,
    Event,
    ModelCallFailed,
    ModelResponse,
    SubcallFinished,
    SubcallStarted,
)
from ..lm import LM
from ._meter import Meter, MethodResult


@dataclass
class RLMMethod:
    """``RLM(model, sub_model, ...)``; ``subcalls=False`` is the no-sub-calls ablation (the REPL
    without ``llm_query``). The meter supplies the sub-call cache; its limiter is not shared (the
    engine has its own, sized by ``limits.max_concurrency``)."""

    model: LM
    sub_model: LM | None = None
    subcalls: bool = True
    budget: Budget = field(default_factory=lambda: Budget(max_iterations=30))
    limits: Limits = field(default_factory=Limits)
    sandbox: str = "auto"
    trace: bool = False
    prompts: Any = None
    name: str = "rlm"

    async def run(
        self, question: str, context: str | list[str], meter: Meter | None = None
    ) -> MethodResult:
        from .. import RLM

        meter = meter or Meter()
        limits = self.limits
        if meter.track_docids and not limits.trace_full_prompts:
            limits = replace(limits, trace_full_prompts=True)  # events then carry whole prompts

        def seen(event: Event) -> None:
            # sub-work by role: every sub-call, and the turns of child runs (depth > 0)
            if isinstance(event, SubcallFinished) or (
                isinstance(event, ModelResponse | ModelCallFailed) and event.depth > 0
            ):
                meter.count_sub(event.input_tokens, event.output_tokens)
            if isinstance(event, SubcallStarted) and event.prompt:
                meter.note(event.prompt)
            elif isinstance(event, CodeExecuted):
                meter.note(event.output)

        rlm = RLM(
            model=self.model,
            sub_model=self.sub_model or self.model,
            budget=self.budget,
            limits=limits,
            on_event=seen,
            sandbox=self.sandbox,
            subcalls=self.subcalls,
            cache=meter.cache,
            trace=self.trace,
            prompts=self.prompts,
            prices=meter.prices,
        )
        try:
            result = await rlm.acompletion(question, context=context)
        except RLMError as exc:  # a failed run is a scored failure, not a crash of the bench
            if exc.result is None:
                raise
            result = exc.result
        extra: dict[str, Any] = {"sandbox": result.sandbox, "partial": result.partial}
        if result.trace_path:
            extra["trace_path"] = result.trace_path
        return MethodResult(
            result.answer,
            result.stop_reason.value,
            result.cost_usd,
            result.usage.to_dict(),
            result.subcalls,
            result.iterations,
            result.duration_s,
            False,
            result.error,
            extra,
            sub_tokens=meter.sub_tokens,
        )
