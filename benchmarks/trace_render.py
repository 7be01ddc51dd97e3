"""What reading and rendering a big trace costs: a 100,000-sub-call run, written by the project's
own TraceWriter from typed events, then read back and rendered as the viewer page.

    python benchmarks/trace_render.py [--calls 100000] [--repeats 5]

Prints medians over ``--repeats`` (all measured in the same process, interleaved):

- ``json.loads`` of the trace's lines: the baseline, the least any reader can do;
- ``event_from_dict`` over the records: rebuilding the typed events alone;
- ``read_trace``, then ``Trace.typed_events`` (the reader's rebuild), then ``render_html``:
  apart and together, what ``fastrlm view`` does for the page;

each also as a ratio to the baseline. Nothing here runs in the test suite.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastrlm._foundation import events as evt
from fastrlm.trace import read_trace
from fastrlm.trace._html import render_html
from fastrlm.trace._writer import TraceWriter

T0 = 1_800_000_000.0


def write_trace(home: Path, n_calls: int) -> Path:
    """One run with ``n_calls`` sub-calls in one cell (1 in 1,000 failed), through the writer."""
    writer = TraceWriter(home)
    run = "bench"
    writer(evt.RunStarted(run_id=run, ts=T0, parent_run_id=None, question="fan-out", model="m",
                          sub_model="s", context={"sha256": "x", "type": "str", "chars": 10},
                          sandbox="none", budget={}))
    writer(evt.IterationStarted(run_id=run, ts=T0, iteration=1, max_iterations=5))
    writer(evt.ModelResponse(run_id=run, ts=T0, iteration=1, model="m",
                             text="```repl\nllm_query_batched(prompts)\n```", input_tokens=100,
                             output_tokens=20, cost_usd=0.01, latency_s=1.0))
    for i in range(n_calls):
        start, lat = T0 + i * 0.001, 0.05 + (i % 97) / 100
        writer(evt.SubcallStarted(run_id=run, depth=0, ts=start, call_id=f"c{i}", model="s",
                                  prompt_chars=900, prompt_sha256="h",
                                  prompt_preview=f"prompt {i} about a chunk of the context"))
        writer(evt.SubcallFinished(run_id=run, depth=0, ts=start + lat, call_id=f"c{i}",
                                   model="s", input_tokens=900, output_tokens=20,
                                   cost_usd=0.0001 * (i % 13), latency_s=lat, cached=False,
                                   error="rate limited" if i % 1000 == 0 else None,
                                   response_chars=30, response_preview=f"reply {i}"))
    end = T0 + n_calls * 0.001 + 1
    writer(evt.CodeExecuted(run_id=run, ts=end, iteration=1, block=1, code="...",
                            output=str(n_calls), output_chars=6, error=None, duration_s=1.0))
    writer(evt.RunFinished(run_id=run, ts=end, stop_reason="final", answer="done",
                           iterations=1, subcalls=n_calls, usage={}, cost_usd=1.0,
                           duration_s=1.0, error=None))
    return writer.path_for(run)


def timed(work: Callable[[], Any]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as home:
        path = write_trace(Path(home), args.calls)
        lines = path.read_text(encoding="utf-8").splitlines()
        records = [json.loads(line) for line in lines]
        times: dict[str, list[float]] = {"json": [], "rebuild": [], "read": [], "typed": [],
                                         "render": []}
        for _ in range(args.repeats):
            times["json"].append(timed(lambda: [json.loads(line) for line in lines]))
            times["rebuild"].append(timed(lambda: list(map(evt.event_from_dict, records))))
            started = time.perf_counter()
            trace = read_trace(path)
            read = time.perf_counter()
            trace.typed_events  # noqa: B018 - the rebuild, done once and kept by the Trace
            typed = time.perf_counter()
            render_html(trace)
            times["render"].append(time.perf_counter() - typed)
            times["typed"].append(typed - read)
            times["read"].append(read - started)
            del trace
    med = {name: statistics.median(values) for name, values in times.items()}
    base = med["json"]
    print(f"trace: {args.calls:,} sub-calls, {len(lines):,} lines; medians of {args.repeats}; "
          f"Python {sys.version.split()[0]}")
    rows = [("json.loads of the lines (baseline)", base),
            ("event_from_dict over the records", med["rebuild"]),
            ("read_trace", med["read"]),
            ("Trace.typed_events (the reader's rebuild)", med["typed"]),
            ("render_html (events already typed)", med["render"]),
            ("all three: what the viewer page costs", med["read"] + med["typed"] + med["render"])]
    for label, seconds in rows:
        print(f"  {label:<42} {seconds:7.3f} s  {seconds / base:5.2f}x baseline")
    print(f"  per event rebuilt: {med['rebuild'] / len(records) * 1e6:.2f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
