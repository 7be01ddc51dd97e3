"""What reading the budget and bounding a combinator cost, beside one sub-call.

A scripted root times, from inside its REPL, ``budget()`` (read-only, free), ``llm_map`` over
1,000 items that its bound refuses (the whole path: the request to the host, the bound, the
refusal; nothing is sent) and ``llm_query`` (one sub-call to an OpenAI-compatible fake server on
loopback, with no latency of its own: the cheapest a real sub-call can be). The host-side bound
alone (``Combine.plan`` for 1,000 items) is timed too. Printed as ratios to one sub-call, so the
figures compare across machines; the issue's goal: both are negligible beside a sub-call.

    python benchmarks/budget_overhead.py [--reads 2000] [--calls 100] [--sandbox none]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time

from fastrlm import RLM, Budget, Limits, PriceTable
from fastrlm._core.call_tree import CallTree
from fastrlm._core.combinators import Combine
from fastrlm._core.ledger import Account, BudgetLedger
from fastrlm.lm import OpenAIChatLM
from fastrlm.sandbox import CombineRequest
from fastrlm.testing import FakeOpenAIServer, ScriptedLM

SUB = "openai/fake-model"
PRICES = PriceTable({SUB: {"input": 0.15, "output": 0.6},
                     "scripted/root": {"input": 0.0, "output": 0.0}})
ITEMS = 1_000


def root_code(reads: int, calls: int, maps: int) -> str:
    return f"""```repl
import json, time
items = [f'record {{i}}: ' + 'x' * 200 for i in range({ITEMS})]
t = time.perf_counter()
for _ in range({reads}):
    budget()
read = (time.perf_counter() - t) / {reads}
t = time.perf_counter()
for _ in range({calls}):
    llm_query('Say ok')
call = (time.perf_counter() - t) / {calls}
t = time.perf_counter()
for _ in range({maps}):
    try:
        llm_map('Classify: {{item}}', items)
    except BudgetError:
        pass
bound = (time.perf_counter() - t) / {maps}
FINAL(json.dumps({{'read': read, 'call': call, 'refused_map': bound}}))
```"""


def host_bound(repeats: int) -> float:
    """Seconds for the bound of a 1,000-item llm_map, computed on the host alone."""
    tree = CallTree(ledger=BudgetLedger(Budget()), limits=Limits(), prices=PRICES,
                    emit=lambda _e: None)
    lm = ScriptedLM(lambda m: "ok", model=SUB)
    combine = Combine(tree, lm, "bench", 0, Account())
    request = CombineRequest("map", "Classify: {item}",
                             [f"record {i}: " + "x" * 200 for i in range(ITEMS)])
    started = time.perf_counter()
    for _ in range(repeats):
        combine.plan(request, retries=0)
    return (time.perf_counter() - started) / repeats


async def measure(sandbox: str, reads: int, calls: int, base_url: str) -> dict[str, float]:
    sub = OpenAIChatLM(SUB, base_url=base_url, api_key="x")
    root = ScriptedLM([root_code(reads, calls, 20)], model="scripted/root")
    # $1 leaves room for the sub-calls; a 1,000-item map's worst case does not fit in it
    rlm = RLM(root, sub, sandbox=sandbox, prices=PRICES,
              budget=Budget(max_usd=1.0, max_iterations=2), limits=Limits(max_retries=0))
    result = await rlm.acompletion("measure", context="c")
    await sub.aclose()
    if result.error or not result.answer.startswith("{"):
        raise SystemExit(f"the run failed: {result.error or result.answer}")
    figures: dict[str, float] = json.loads(result.answer)
    return figures


def main() -> None:
    logging.getLogger("fastrlm").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reads", type=int, default=2_000)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--sandbox", action="append", default=None)
    args = parser.parse_args()
    bound = host_bound(20)
    with FakeOpenAIServer(default="ok") as server:
        for sandbox in args.sandbox or ["none", "auto"]:
            figures = asyncio.run(measure(sandbox, args.reads, args.calls, server.base_url))
            call = figures["call"]
            print(f"sandbox={sandbox}: one sub-call (fake server, loopback) "
                  f"{call * 1e3:.3f} ms")
            print(f"  budget() from the REPL      {figures['read'] * 1e6:9.1f} us  "
                  f"= {figures['read'] / call:.4f} x one sub-call")
            print(f"  llm_map bound, {ITEMS:,} items, refused, from the REPL "
                  f"{figures['refused_map'] * 1e3:.3f} ms = {figures['refused_map'] / call:.3f}"
                  " x one sub-call")
            print(f"  the bound alone on the host ({ITEMS:,} items) {bound * 1e3:.3f} ms = "
                  f"{bound / call:.3f} x one sub-call ({bound / call / ITEMS:.5f} per item)")


if __name__ == "__main__":
    main()
