"""Context memory and non-text contexts, each against its baseline in the same run.

    python benchmarks/contexts.py [--mb 400] [--rows 1000000] [--repeats 3] [--kind auto]

1. A large str context (``--mb``, ASCII): peak memory over the process tree (host + sandbox
   worker, sampled every 20 ms from /proc) from before the context exists to the first cell's
   answer, for the worker holding the context in place (the memfd's pages are its str) against
   the previous design, where the worker decoded its own copy from the memfd (the host side of
   that design is recreated in the child process). Ratios are to the context's size: the
   floor is 2x (the caller's str and one copy the worker can read).
2. A DataFrame of ``--rows`` rows (int, float and str columns): the time from ``start()`` to a
   DataFrame in the REPL and the peak memory, shipped as Arrow IPC (this design) against a
   JSON-records baseline (``df.to_dict("records")`` as a JSON context, rebuilt with
   ``pd.DataFrame(context)`` in the cell).

Every measured run is a fresh child process; rounds alternate between the designs so both see
the same machine load. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "vs_official"))

from run import TreeMemory  # noqa: E402  (the same tree sampler as run_all's big-context run)


class Bridge:
    async def llm_query_batched(self, prompts: list[str], model: str | None,
                                images: object = None) -> list[str]:
        return ["ok"] * len(prompts)

    async def rlm_query_batched(self, prompts: list[str], contexts: object,
                                model: str | None) -> list[str]:
        return ["ok"] * len(prompts)


def _decoded_copy_design() -> None:
    """Make this process send a large str as the previous design did (kind 1, decoded into a
    copy by the worker), for the baseline."""
    from fastrlm.sandbox import _protocol

    def encode(context: object) -> tuple[int, list[object], None]:
        if isinstance(context, str):
            prefix = _protocol._PREFIX.pack(_protocol.CONTEXT_MAGIC, _protocol.KIND_STR, 0)
            return _protocol.KIND_STR, [prefix, _protocol._utf8(context)], None
        raise TypeError("the baseline sends str contexts only")

    _protocol.encode_context = encode  # type: ignore[assignment]


def _frame(rows: int) -> object:
    import numpy as np
    import pandas as pd

    ids = np.arange(rows)
    return pd.DataFrame({"id": ids, "price": ids * 0.25,
                         "city": np.array(["Oslo", "Lima", "Pune", "Kyiv"], dtype=object)[ids % 4]})


async def _child(cfg: dict[str, object]) -> dict[str, float]:
    from fastrlm.sandbox import SandboxLimits, create_sandbox

    case = cfg["case"]
    if case == "str-copy":
        _decoded_copy_design()
    if case in ("str-inplace", "str-copy"):
        mb = int(cfg["mb"])  # type: ignore[call-overload]
        context: object = ("The quick brown fox jumps over the lazy dog. " * (mb * 23_000))[
            : mb * 1_000_000]
        code = "print(len(context))"
    else:
        frame = _frame(int(cfg["rows"]))  # type: ignore[call-overload]
        if case == "df-json":
            context = frame.to_dict("records")  # type: ignore[attr-defined]
            code = "import pandas as pd\ncontext = pd.DataFrame(context)\nprint(len(context))"
        else:
            context = frame
            code = "print(len(context))"
        del frame
    print("READY", flush=True)  # the parent starts sampling: the caller holds its context
    sys.stdin.readline()
    began = time.perf_counter()
    sandbox = create_sandbox(str(cfg["kind"]), SandboxLimits())
    await sandbox.start(context, Bridge())
    result = await sandbox.execute(code)
    elapsed = time.perf_counter() - began
    if result.error:
        raise RuntimeError(result.error)
    await sandbox.close()
    return {"seconds": elapsed, "rows": float(result.stdout)}


def measure(case: str, cfg: dict[str, object]) -> dict[str, float]:
    argv = [sys.executable, __file__, "--child", json.dumps({**cfg, "case": case})]
    child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             env=os.environ)
    assert child.stdin is not None and child.stdout is not None
    if child.stdout.readline().strip() != "READY":
        raise RuntimeError(f"{case}: the child failed")
    before = _tree_rss(child.pid)
    with TreeMemory(child.pid) as sampler:
        child.stdin.write("go\n")
        child.stdin.flush()
        out = child.stdout.read()
        child.wait()
    if child.returncode:
        raise RuntimeError(f"{case}: the child exited {child.returncode}")
    figures = json.loads(out.strip().splitlines()[-1])
    return {**figures, "peak_rss": sampler.peak_rss, "peak_pss": sampler.peak_pss,
            "before": before}


def _tree_rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rounds(cases: list[str], cfg: dict[str, object], repeats: int) -> dict[str, dict[str, float]]:
    runs: dict[str, list[dict[str, float]]] = {c: [] for c in cases}
    for i in range(repeats):  # alternating order: drifting load hits both designs alike
        for case in (cases if i % 2 == 0 else list(reversed(cases))):
            runs[case].append(measure(case, cfg))
    return {c: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for c, rs in runs.items()}


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=400)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--kind", default="auto")
    parser.add_argument("--only", default="str,df", help="str, df or both")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(_child(json.loads(args.child)))))
        return
    cfg: dict[str, object] = {"mb": args.mb, "rows": args.rows, "kind": args.kind}
    print(f"load average {os.getloadavg()[0]:.2f}; medians of {args.repeats}; "
          f"sandbox {args.kind!r}")
    if "str" in args.only:
        size = args.mb * 1_000_000
        got = rounds(["str-inplace", "str-copy"], cfg, args.repeats)
        print(f"\n{args.mb} MB str context: peak over the process tree (start -> first cell)")
        print("| design | start -> first cell | peak RSS | x context | peak PSS | x context | "
              "added by the run (peak RSS - caller before) |")
        print("|---|---|---|---|---|---|---|")
        for case, label in (("str-inplace", "worker maps the memfd as its str (this design)"),
                            ("str-copy", "worker decodes a copy (previous design)")):
            g = got[case]
            print(f"| {label} | {g['seconds']:.2f} s | {mib(g['peak_rss'])} | "
                  f"{g['peak_rss'] / size:.2f}x | {mib(g['peak_pss'])} | "
                  f"{g['peak_pss'] / size:.2f}x | "
                  f"{(g['peak_rss'] - g['before']) / size:.2f}x the context |")
        print(f"caller before the call (its own str + interpreter): "
              f"{mib(got['str-inplace']['before'])}")
    if "df" in args.only:
        got = rounds(["df-arrow", "df-json"], cfg, args.repeats)
        print(f"\n{args.rows:,}-row DataFrame context: start() -> a DataFrame in the REPL")
        print("| shipped as | time | peak RSS (tree) | caller before |")
        print("|---|---|---|---|")
        for case, label in (("df-arrow", "Arrow IPC in the memfd (this design)"),
                            ("df-json", "JSON records, rebuilt with pd.DataFrame (baseline)")):
            g = got[case]
            print(f"| {label} | {g['seconds']:.2f} s | {mib(g['peak_rss'])} | "
                  f"{mib(g['before'])} |")
        a, j = got["df-arrow"], got["df-json"]
        print(f"Arrow vs JSON: {j['seconds'] / a['seconds']:.1f}x faster, "
              f"{j['peak_rss'] / a['peak_rss']:.1f}x less peak memory")


if __name__ == "__main__":
    main()
