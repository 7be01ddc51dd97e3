"""Fan-out through the engine: 1,000 sub-calls via llm_query_batched against a scripted LM.

Prints wall time as a ratio to the physical limit ceil(N/C) x L (N calls, concurrency C,
latency L). Target (issue 2): <= 1.10 with N=1000, C=32, L=50 ms.

    python benchmarks/engine_fanout.py [--n 1000] [--concurrency 32] [--latency-ms 50]
                                       [--repeats 5] [--sandbox auto]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import time

from fastrlm import RLM, Budget, Limits
from fastrlm.testing import ScriptedLM


def root_script(n: int) -> list[str]:
    code = (
        f"prompts = [f'item {{i}}: {{context[i % len(context)]}}' for i in range({n})]\n"
        "answers = llm_query_batched(prompts)\n"
        "FINAL(str(sum(a.startswith('ok') for a in answers)))"
    )
    return [f"```repl\n{code}\n```"]


async def one_run(n: int, concurrency: int, latency: float, sandbox: str) -> tuple[float, str]:
    sub = ScriptedLM(lambda m: "ok", model="scripted/sub", latency_s=latency)
    rlm = RLM(ScriptedLM(root_script(n), model="scripted/root"), sub, sandbox=sandbox,
              limits=Limits(max_concurrency=concurrency), budget=Budget(max_iterations=3))
    started = time.perf_counter()
    result = await rlm.acompletion("count", context="abcdefghij" * 100)
    elapsed = time.perf_counter() - started
    if result.answer != str(n):
        raise SystemExit(f"wrong answer {result.answer!r}: {result.error}")
    if sub.max_in_flight > concurrency:
        raise SystemExit(f"concurrency {sub.max_in_flight} > limit {concurrency}")
    return elapsed, result.sandbox


def main() -> None:
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
        times = []
        layer = ""
        for _ in range(args.repeats):
            elapsed, layer = asyncio.run(one_run(args.n, args.concurrency, latency, sandbox))
            times.append(elapsed)
        median = statistics.median(times)
        print(f"  sandbox={layer:<24} median {median:.3f} s  (min {min(times):.3f}, "
              f"max {max(times):.3f})  ratio to limit {median / ideal:.3f}")


if __name__ == "__main__":
    main()
