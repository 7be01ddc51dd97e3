"""What writing the trace costs the host during a fan-out.

    python benchmarks/trace_write.py [--calls 10000] [--repeats 5] [--sandbox auto]

Two measurements, each a median over ``--repeats`` interleaved runs in this one process:

1. **The writer alone**: ``TraceWriter`` fed one run of ``--calls`` sub-calls (a started and a
   finished event each), in CPU microseconds per event, beside two references measured in the
   same run: the old serialization (``json.dumps(dataclasses.asdict(event))``, what the writer
   did before) and the floor (``json.dumps`` of a ready-made dict of the same fields).
2. **Its share of a fan-out**: one ``llm_query_batched`` of ``--calls`` prompts through the real
   HTTP provider against the project's fake OpenAI-compatible server (a separate process, so its
   CPU is not counted), with the trace on and off: the host process's CPU (the sandbox worker
   is another process) and the trace's share, ``(on - off) / on``. Goal (issue 31): <= 5%.

Nothing here runs in the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fastrlm import RLM, Budget, Limits
from fastrlm._foundation import events as evt
from fastrlm.trace._writer import TraceWriter


def _events(n: int) -> list[evt.Event]:
    run = "bench"
    out: list[evt.Event] = [evt.RunStarted(
        run_id=run, parent_run_id=None, question="fan-out", model="m", sub_model="s",
        context={"sha256": "0" * 64, "chars": 1000}, sandbox="bwrap", budget={"max_usd": 1.0})]
    for i in range(n):
        call = f"c{i}"
        out.append(evt.SubcallStarted(
            run_id=run, call_id=call, model="openai/fake-sub", prompt_chars=220,
            prompt_sha256="ab" * 32, prompt_preview=f"item {i}: " + "abcdefghij" * 11))
        out.append(evt.SubcallFinished(
            run_id=run, call_id=call, model="openai/fake-sub", input_tokens=60,
            output_tokens=20, cost_usd=0.00001, latency_s=0.1, cached=False, error=None,
            response_chars=60, response_preview="ok " * 20))
    return out


def _writer_us(events: list[evt.Event]) -> float:
    with tempfile.TemporaryDirectory() as home:
        writer = TraceWriter(Path(home))
        start = time.process_time()
        for event in events:
            writer(event)
        used = time.process_time() - start
        writer.close()
    return used / len(events) * 1e6


def _old_us(events: list[evt.Event]) -> float:
    start = time.process_time()
    for event in events:
        data = dataclasses.asdict(event)
        del data["extra"]
        json.dumps({**event.extra, **data, "type": event.type}, ensure_ascii=False)
    return (time.process_time() - start) / len(events) * 1e6


def _floor_us(events: list[evt.Event]) -> float:
    ready = [dict(vars(e)) for e in events]
    start = time.process_time()
    for data in ready:
        json.dumps(data)
    return (time.process_time() - start) / len(events) * 1e6


def _fake_server(calls: int) -> tuple[subprocess.Popen[str], str]:
    code = (f"answers = llm_query_batched([f'item {{i}}: ' + context[:200]"
            f" for i in range({calls})])\nFINAL(str(len(answers)))")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastrlm.testing.fake_server", "--port", "0",
         "--root-reply", f"```repl\n{code}\n```", "--sub-reply", "ok " * 20],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        found = re.search(r"http://127\.0\.0\.1:\d+/v1", line)
        if found:
            return proc, found.group(0)
    raise SystemExit("the fake server did not start")


async def _fanout_cpu(url: str, calls: int, sandbox: str, trace: str | bool) -> float:
    rlm = RLM(model="openai/fake-root", sub_model="openai/fake-sub", base_url=url,
              api_key="fake", sandbox=sandbox, limits=Limits(max_concurrency=64),
              budget=Budget(max_iterations=3, max_subcalls=calls + 10), trace=trace)
    await rlm.acompletion("warm up", context="abcdefghij" * 100)  # the worker's start-up
    start = time.process_time()
    result = await rlm.acompletion("count", context="abcdefghij" * 100)
    used = time.process_time() - start
    await rlm.aclose()
    if result.answer != str(calls):
        raise SystemExit(f"wrong answer {result.answer!r}: {result.error}")
    return used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sandbox", default="auto")
    args = parser.parse_args()

    events = _events(args.calls)
    writer, old, floor = [], [], []
    for _ in range(args.repeats):
        writer.append(_writer_us(events))
        old.append(_old_us(events))
        floor.append(_floor_us(events))
    w, o, f = (statistics.median(x) for x in (writer, old, floor))
    print(f"1. the writer alone, {len(events):,} events (median of {args.repeats}):")
    print(f"   TraceWriter (serialize + write + flush): {w:6.1f} us/event")
    print(f"   old serialization alone (asdict + dumps): {o:6.1f} us/event  "
          f"writer/old {w / o:.2f}x")
    print(f"   floor (json.dumps of a ready dict):       {f:6.1f} us/event  "
          f"writer/floor {w / f:.2f}x")

    proc, url = _fake_server(args.calls)
    try:
        on, off = [], []
        with tempfile.TemporaryDirectory() as home:
            for _ in range(args.repeats):
                on.append(asyncio.run(_fanout_cpu(url, args.calls, args.sandbox, home)))
                off.append(asyncio.run(_fanout_cpu(url, args.calls, args.sandbox, False)))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    m_on, m_off = statistics.median(on), statistics.median(off)
    print(f"2. one fan-out of {args.calls:,} sub-calls over HTTP, host CPU (median of "
          f"{args.repeats}):")
    print(f"   trace on {m_on:.2f} s, off {m_off:.2f} s: the trace is "
          f"{(m_on - m_off) / m_on:.1%} of the host's CPU (goal <= 5%)")


if __name__ == "__main__":
    main()
