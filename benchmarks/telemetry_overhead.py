"""What OpenTelemetry spans cost a run: N sub-calls through the engine, spans off and on.

The sub-model answers at once (no latency), so the engine's own work is all there is to measure
and the ratio is the worst case; against a real model's latency it vanishes. Spans go through a
BatchSpanProcessor (what fastrlm's own provider uses) to an exporter that drops them, so the
recording is measured and not a collector. Both variants run in the same process, interleaved.

    python benchmarks/telemetry_overhead.py [--n 5000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from fastrlm import RLM, Budget, Limits
from fastrlm.telemetry import Telemetry
from fastrlm.testing import ScriptedLM


class _Drop(SpanExporter):
    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


def _rlm(n: int, telemetry: Telemetry | bool) -> RLM:
    code = (f"answers = llm_query_batched([f'item {{i}}' for i in range({n})])\n"
            "FINAL(str(len(answers)))")
    root = ScriptedLM([f"```repl\n{code}\n```"], model="scripted/root")
    sub = ScriptedLM(lambda m: "ok", model="scripted/sub")
    return RLM(root, sub, sandbox="none", telemetry=telemetry,
               budget=Budget(max_subcalls=n + 10), limits=Limits(max_concurrency=64))


async def _timed(rlm: RLM) -> float:
    started = time.perf_counter()
    result = await rlm.acompletion("count", context="c")
    assert result.subcalls > 0
    return time.perf_counter() - started


async def main(n: int, repeats: int) -> None:
    logging.getLogger("fastrlm").setLevel(logging.ERROR)  # the sandbox='none' warning
    exporter = _Drop()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=4 * n))
    off: list[float] = []
    on: list[float] = []
    for _ in range(repeats):
        off.append(await _timed(_rlm(n, False)))
        on.append(await _timed(_rlm(n, Telemetry(tracer_provider=provider))))
    provider.force_flush()
    provider.shutdown()
    a, b = statistics.median(off), statistics.median(on)
    print(f"{n} sub-calls, median of {repeats}: spans off {a:.3f} s, on {b:.3f} s, "
          f"ratio {b / a:.2f}x, {(b - a) / n * 1e6:.0f} us a sub-call; "
          f"{exporter.spans} spans exported")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.repeats))
