"""Batch throughput: many short jobs through ``fastrlm.batch``, local backend vs Ray, one run.

Each job is a whole RLM run (context, sandbox, one root turn that calls ``FINAL`` at once)
against a fake OpenAI-compatible server on 127.0.0.1 with no latency, so what is measured is
fastrlm's own cost per job: prints jobs per minute for each backend, and the overhead per job
(wall time x jobs in flight / jobs: how long a job holds its slot when the model answers
instantly). Ray is shown as a ratio to the local backend measured in the same run; Ray's
start-up (``ray.init``) is timed apart and left out of its throughput.

    python benchmarks/batch_throughput.py [--n 1000] [--concurrency 8] [--cpus-per-job 0.25]
                                          [--sandbox none] [--no-ray]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

import fastrlm
from fastrlm.testing import FakeOpenAIServer
from fastrlm.testing.fake_server import Replies

ROOT_REPLY = '```repl\nFINAL("done " + str(len(context)))\n```'
MODEL = "openai/fake"


def jobs(n: int) -> list[dict[str, str]]:
    return [{"id": f"j{i}", "question": f"job {i}", "context": f"text of job {i} " * 20}
            for i in range(n)]


async def run(backend: str, n: int, args: argparse.Namespace, base_url: str) -> float:
    rlm = fastrlm.RLM(MODEL, base_url=base_url, sandbox=args.sandbox, trace=False)
    batch = fastrlm.batch(jobs(n), rlm, concurrency=args.concurrency, provider_concurrency=None,
                          backend=backend, cpus_per_job=args.cpus_per_job)
    started = time.perf_counter()
    count = 0
    try:
        async for result in batch:
            if not result.ok:
                raise SystemExit(f"job {result.id} failed: {result.error}")
            count += 1
    finally:
        await rlm.aclose()
    if count != n:
        raise SystemExit(f"{count} of {n} jobs came back")
    return time.perf_counter() - started


def line(name: str, n: int, wall: float, in_flight: int, baseline: float | None) -> str:
    per_min = n / wall * 60
    overhead_ms = wall * in_flight / n * 1000
    ratio = f"{baseline / wall:.2f}x local" if baseline else "baseline"
    return (f"| {name} | {n:,} | {wall:.1f} s | {per_min:,.0f} | {overhead_ms:.0f} ms | "
            f"{ratio} |")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--cpus-per-job", type=float, default=0.25)
    parser.add_argument("--sandbox", default="none")
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("FASTRLM_HOME", str(Path(".bench-home").resolve()))
    rows = ["| backend | jobs | wall | jobs/min | overhead per job | vs local |",
            "| --- | --- | --- | --- | --- | --- |"]
    with FakeOpenAIServer(handler=Replies(["ok"], [ROOT_REPLY])) as server:
        local = asyncio.run(run("local", args.n, args, server.base_url))
        rows.append(line("local", args.n, local, args.concurrency, None))
        if not args.no_ray:
            import ray

            os.environ["PYTHONPATH"] = str(Path(fastrlm.__file__).parent.parent)
            started = time.perf_counter()
            ray.init(address="local", include_dashboard=False, log_to_driver=False)
            init_s = time.perf_counter() - started
            try:
                on_ray = asyncio.run(run("ray", args.n, args, server.base_url))
            finally:
                ray.shutdown()
            rows.append(line(f"ray ({args.cpus_per_job} CPU a job)", args.n, on_ray,
                             args.concurrency, local))
            rows.append(f"\nray.init: {init_s:.1f} s (not counted above)")
    print(f"{args.n:,} jobs, {args.concurrency} in flight, sandbox {args.sandbox}, "
          f"{os.cpu_count()} CPUs\n")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
