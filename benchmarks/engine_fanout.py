"""Fan-out through the engine: 1,000 sub-calls via llm_query_batched against a scripted LM.

Prints wall time as a ratio to the physical limit ceil(N/C) x L (N calls, concurrency C,
latency L). Target (issue 2): <= 1.10 with N=1000, C=32, L=50 ms. Also printed: the fan-out
window alone (first sub-call sent to last answer back) and the worker's start-up, a fixed cost
that a real root model's first reply hides (the worker boots while the root thinks; the
scripted root here answers instantly, so the benchmark pays it in full).

    python benchmarks/engine_fanout.py [--n 1000] [--concurrency 32] [--latency-ms 50]
                                       [--repeats 5] [--sandbox auto]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import statistics
import time

from fastrlm import RLM, Budget, Limits
from fastrlm.events import Event, SandboxStarted, SubcallFinished, SubcallStarted
from fastrlm.testing import ScriptedLM


def root_script(n: int) -> list[str]:
    code = (
        f"prompts = [f'item {{i}}: {{context[i % len(context)]}}' for i in range({n})]\n"
        "answers = llm_query_batched(prompts)\n"
        "FINAL(str(sum(a.startswith('ok') for a in answers)))"
    )
    return [f"```repl\n{code}\n```"]


async def one_run(
    n: int, concurrency: int, latency: float, sandbox: str
) -> tuple[float, float, float, str]:
    sub = ScriptedLM(lambda m: "ok", model="scripted/sub", latency_s=latency)
    marks: dict[str, float] = {}
    startup = [0.0]

    def on_event(event: Event) -> None:
        now = time.perf_counter()
        if isinstance(event, SubcallStarted):
            marks.setdefault("first", now)
        elif isinstance(event, SubcallFinished):
            marks["last"] = now
        elif isinstance(event, SandboxStarted):
            startup[0] = event.startup_s

    rlm = RLM(ScriptedLM(root_script(n), model="scripted/root"), sub, sandbox=sandbox,
              limits=Limits(max_concurrency=concurrency), budget=Budget(max_iterations=3),
              on_event=on_event)
    started = time.perf_counter()
    result = await rlm.acompletion("count", context="abcdefghij" * 100)
    elapsed = time.perf_counter() - started
    if result.answer != str(n):
        raise SystemExit(f"wrong answer {result.answer!r}: {result.error}")
    if sub.max_in_flight > concurrency:
        raise SystemExit(f"concurrency {sub.max_in_flight} > limit {concurrency}")
    return elapsed, marks["last"] - marks["first"], startup[0], result.sandbox


def main() -> None:
    logging.getLogger("fastrlm").setLevel(logging.ERROR)  # the 'none' run's warning, once is enough
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sandbox", action="append", default=None)
    args = parser.parse_args()
    latency = args.latency_ms / 1000
    ideal = math.ceil(args.n / args.concurrency) * latency
    print(f"{args.n} sub-calls, concurrency {args.concurrency}, latency {args.latency_ms:g} ms: "
          f"physical limit {ideal:.3f} s")
    for sandbox in args.sandbox or ["auto", "none"]:
        runs = [asyncio.run(one_run(args.n, args.concurrency, latency, sandbox))
                for _ in range(args.repeats)]
        total = statistics.median(r[0] for r in runs)
        window = statistics.median(r[1] for r in runs)
        startup = statistics.median(r[2] for r in runs)
        print(f"  sandbox={runs[0][3]:<24} whole run {total:.3f} s = {total / ideal:.3f}x limit"
              f" | fan-out window {window:.3f} s = {window / ideal:.3f}x"
              f" | worker start {startup * 1000:.0f} ms  (medians of {args.repeats})")


if __name__ == "__main__":
    main()
