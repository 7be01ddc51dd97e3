"""A property over random trajectories of answers, failures, retries and over-reports: at every
moment an attempt starts, nothing is over any limit (and nothing starts after a limit was
passed); at the end, spend passes a limit only by what lying calls in flight reported; events,
the result and the trace agree to the cent."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastrlm import RLM, Budget, Limits, PriceTable, ProviderResponseError, TokenUsage
from fastrlm._core.ledger import BudgetLedger, current_gate
from fastrlm.events import (
    Event,
    ModelCallFailed,
    ModelResponse,
    RunFinished,
    SubcallFinished,
    SubcallsRefused,
    SubcallStarted,
)
from fastrlm.lm import ChatMessage, LMResponse, RetryPolicy
from fastrlm.lm._retry import Failure
from fastrlm.testing import ScriptedLM

from .helpers import repl

PRICES = PriceTable({"traj/sub": {"input": 1.0, "output": 4.0},
                     "scripted/root": {"input": 0.0, "output": 0.0}})
EPS = 1e-9


def _never(exc: BaseException) -> Failure:  # the attempt raises fastrlm errors only
    raise AssertionError(f"unexpected {exc!r}")


@dataclass
class TrajectoryLM:
    """A provider whose attempts follow a script ("ok", "fail" = HTTP 500, "lie" = reports 50x
    its max_tokens), retried by the real RetryPolicy, checking the ledger as each attempt
    starts."""

    steps: list[str]
    budget: Budget
    policy: RetryPolicy
    model: str = "traj/sub"
    temperature: float | None = None
    attempts: int = 0
    violations: list[str] = field(default_factory=list)
    ledger: BudgetLedger | None = None
    lied_usd: float = 0.0  # what the lies reported beyond their reservations, at most
    lied_tokens: int = 0

    def cache_key(self) -> str:
        return "trajectory"

    async def aclose(self) -> None:
        return None

    async def complete(self, messages: Sequence[ChatMessage], *,
                       max_tokens: int | None = None) -> LMResponse:
        cap = max_tokens or 1000

        async def attempt() -> LMResponse:
            gate = current_gate.get()
            assert gate is not None, "an engine call always carries its gate"
            self.ledger = gate.ledger
            self._check(gate.ledger)
            self.attempts += 1
            step = self.steps.pop(0) if self.steps else "ok"
            if step == "fail":
                raise ProviderResponseError("HTTP 500", provider="traj", model=self.model,
                                            status=500)
            out = cap * 50 if step == "lie" else min(120, cap)
            usage = TokenUsage(30, out)
            if step == "lie":
                self.lied_usd += PRICES.cost(self.model, usage) or 0.0
                self.lied_tokens += out
            return LMResponse("answer", usage, self.model)

        return await self.policy.run(attempt, _never, (), provider="traj", model=self.model)

    def on_event(self, event: Event) -> None:
        """At every event: settled spend is within every limit, but for what lies reported."""
        ledger, b = self.ledger, self.budget
        if ledger is None:
            return
        if b.max_usd is not None and ledger.usd > b.max_usd + self.lied_usd + EPS:
            self.violations.append(f"{event.type}: usd {ledger.usd} > {b.max_usd}")
        if (b.max_output_tokens is not None
                and ledger.output_tokens > b.max_output_tokens + self.lied_tokens):
            self.violations.append(f"{event.type}: output {ledger.output_tokens}")
        if b.max_subcalls is not None and ledger.subcalls > b.max_subcalls:
            self.violations.append(f"{event.type}: subcalls {ledger.subcalls}")

    def _check(self, ledger: BudgetLedger) -> None:
        """The moment an attempt starts (its own worst case already held)."""
        b = self.budget
        if ledger.overrun is not None:
            self.violations.append(f"attempt started after {ledger.overrun}")
        held_out = ledger.output_tokens + ledger.held_output_tokens
        if b.max_output_tokens is not None and held_out > b.max_output_tokens:
            self.violations.append(f"output {held_out} > {b.max_output_tokens}")
        if b.max_usd is not None and ledger.usd + ledger.held_usd > b.max_usd + EPS:
            self.violations.append(f"usd {ledger.usd} + held {ledger.held_usd} > {b.max_usd}")
        if b.max_subcalls is not None and ledger.subcalls > b.max_subcalls:
            self.violations.append(f"subcalls {ledger.subcalls} > {b.max_subcalls}")
        cap = b.request_cap
        if cap is not None and ledger.requests > cap:
            self.violations.append(f"requests {ledger.requests} > {cap}")


def _trace(path: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(st.sampled_from(["ok", "ok", "fail", "lie"]), max_size=40),
    rounds=st.integers(1, 6),
    width=st.integers(1, 3),
    retries=st.integers(0, 3),
    max_subcalls=st.one_of(st.none(), st.integers(0, 12)),
    max_requests=st.one_of(st.none(), st.integers(1, 30)),
    max_usd=st.one_of(st.none(), st.floats(0.003, 0.05)),
    max_out=st.one_of(st.none(), st.integers(300, 5000)),
)
def test_limits_hold_at_every_attempt_and_every_figure_agrees(
    steps: list[str], rounds: int, width: int, retries: int, max_subcalls: int | None,
    max_requests: int | None, max_usd: float | None, max_out: int | None,
) -> None:
    budget = Budget(max_subcalls=max_subcalls, max_requests=max_requests, max_usd=max_usd,
                    max_output_tokens=max_out, max_iterations=4)
    code = (f"for i in range({rounds}):\n"
            f"    r = llm_query_batched([f'question {{i}}-{{j}}' for j in range({width})])\n"
            "FINAL('done')")
    root = ScriptedLM(lambda _m: repl(code), model="scripted/root")
    sub = TrajectoryLM(list(steps), budget,
                       RetryPolicy(max_retries=retries, base_delay_s=0.0, max_delay_s=0.0))
    events: list[Event] = []
    with tempfile.TemporaryDirectory() as home:
        rlm = RLM(root, sub, sandbox="none", budget=budget, prices=PRICES,
                  limits=Limits(sub_max_tokens=1000, root_max_tokens=1000),
                  on_event=[events.append, sub.on_event],
                  trace=Path(home))
        out = rlm.completion("q", context="c")
        assert out.trace_path is not None
        trace = _trace(out.trace_path)

    assert sub.violations == []
    # the request count is the provider's own count, and within its cap
    assert out.requests == sub.attempts + len(root.calls)
    if budget.request_cap is not None:
        assert out.requests <= budget.request_cap
    if max_subcalls is not None:
        assert out.subcalls <= max_subcalls
    calls = [e for e in events if isinstance(e, SubcallFinished | ModelResponse | ModelCallFailed)]
    lied = [e for e in events if isinstance(e, SubcallFinished) and e.anomaly is not None]
    if max_usd is not None:  # past the limit only by what lying calls reported
        assert out.cost_usd <= max_usd + sum(e.cost_usd for e in lied) + EPS
        if not lied:
            assert out.cost_usd <= max_usd + EPS
    # events, result, ledger roll-up and trace: one set of figures
    assert abs(sum(e.cost_usd for e in calls) - out.cost_usd) < EPS
    assert abs(out.usage.cost_usd - out.cost_usd) < EPS
    [finished] = [e for e in events if isinstance(e, RunFinished) and e.depth == 0]
    assert abs(finished.cost_usd - out.cost_usd) < EPS
    assert finished.subcalls == out.subcalls and finished.requests == out.requests
    [traced] = [e for e in trace if e["type"] == "run.finished" and e["depth"] == 0]
    assert round(float(traced["cost_usd"]), 2) == round(out.cost_usd, 2)  # type: ignore[arg-type]
    assert abs(float(traced["cost_usd"]) - out.cost_usd) < EPS  # type: ignore[arg-type]
    traced_calls = [e for e in trace if e["type"] == "subcall.finished"]
    assert len(traced_calls) == len([e for e in events if isinstance(e, SubcallFinished)])
    assert out.subcalls == len([e for e in events if isinstance(e, SubcallStarted)])
    assert out.subcalls_failed == len(
        [e for e in events if isinstance(e, SubcallFinished) and e.error is not None])
    assert out.subcalls_refused == sum(e.count for e in events if isinstance(e, SubcallsRefused))
    assert sum(e.attempts for e in events if isinstance(e, SubcallFinished)) == sub.attempts
    if out.subcalls_refused:
        assert out.partial and out.limited_by is not None
    if max_usd is not None and out.cost_usd > max_usd + EPS:  # a lie passed the limit
        assert out.stop_reason.value in ("budget_usd", "budget_tokens") and out.partial
    if max_out is not None:
        assert out.usage.output_tokens <= max_out + sub.lied_tokens
        if out.usage.output_tokens > max_out:
            assert out.stop_reason.value in ("budget_usd", "budget_tokens") and out.partial
