"""The replay record's cost: one run whose root fans out N sub-calls at once (scripted models,
in-process sandbox, so what is measured is fastrlm's own work per sub-call), traced with its
replay record and traced without it, interleaved in one process; prints each time and the
ratio (record / no record), then the time to resume the recorded run (every turn and sub-call
answered from the record).

    python benchmarks/replay_record.py [--n 5000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from fastrlm import RLM, Budget, Limits
from fastrlm._core import engine
from fastrlm._core.replay import Recorder
from fastrlm.testing import ScriptedLM, prompt_of


def _rlm(home: Path, n: int, replies: list[str]) -> RLM:
    root = ScriptedLM(replies, model="scripted/root")
    sub = ScriptedLM(lambda m: "answer " + prompt_of(m)[:50], model="scripted/sub")
    return RLM(root, sub, sandbox="none", trace=home, budget=Budget(max_subcalls=n + 10),
               limits=Limits(max_concurrency=64))


def one(n: int, record: bool) -> tuple[float, Path, str]:
    home = Path(tempfile.mkdtemp())
    fan_out = (f"```repl\nr = llm_query_batched(['p%d ' % i + 'x' * 200 for i in range({n})])"
               "\nprint(len(r))\n```")
    made = engine._recorder
    if not record:
        engine._recorder = lambda *args, **kwargs: Recorder(None, None)
    try:
        started = time.perf_counter()
        result = _rlm(home, n, [fan_out, "```repl\nFINAL('ok')\n```"]).completion("q", "c")
        return time.perf_counter() - started, home, result.trace_id
    finally:
        engine._recorder = made


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    plain, recorded = [], []
    for _ in range(args.repeat):
        plain.append(one(args.n, False)[0])
        took, home, run_id = one(args.n, True)
        recorded.append(took)
    base, rec = statistics.median(plain), statistics.median(recorded)
    print(f"{args.n:,} sub-calls: trace only {base:.2f}s, trace + record {rec:.2f}s "
          f"(median of {args.repeat}); ratio {rec / base:.2f}")
    started = time.perf_counter()
    _rlm(home, args.n, []).resume(run_id, context="c")
    print(f"resume from the record: {time.perf_counter() - started:.2f}s "
          f"({(time.perf_counter() - started) / base:.2f}x the traced run), no model call")


if __name__ == "__main__":
    main()
