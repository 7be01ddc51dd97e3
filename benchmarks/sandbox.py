"""Benchmark the isolated worker against the in-process ``none`` sandbox, in one run.

    python benchmarks/sandbox.py [--kind auto] [--repeats 5] [--mb 100] [--with docker]
    python benchmarks/sandbox.py --before /path/to/other/checkout/src [--kind auto] [--repeats 5]

Prints, for each sandbox: worker start time (tiny context), per-exec round trip of an empty
cell, ``llm_query`` round trip (the host answers at once), 100 MB context load time (start() to
ready) and the peak RSS it costs; medians over repeats, and the isolated/none ratio.
``--with KIND`` (repeatable) adds a second table: that layer against ``--kind``, measured
interleaved (starts alternate between the layers; the two workers stay up side by side and
take turns of 100 cells), so that both see the same machine load and the ratio is the figure to
read (e.g. ``--kind bwrap --with docker``: what a container costs beside bwrap).

``--before SRC`` compares two versions of fastrlm in the same run instead: rounds alternate
between a process importing fastrlm from ``SRC`` and one importing this checkout, so both see
the same machine load, and the table gives each figure before and after with the change.
Not part of the test suite.
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

from fastrlm.sandbox import Sandbox, SandboxLimits, create_sandbox


class InstantBridge:
    async def llm_query_batched(self, prompts: list[str], model: str | None) -> list[str]:
        return ["ok"] * len(prompts)

    async def rlm_query_batched(
        self, prompts: list[str], contexts: list[object] | None, model: str | None
    ) -> list[str]:
        return ["ok"] * len(prompts)


def figure_rows(megabytes: float) -> list[tuple[str, str, float, str]]:
    """(label, key, scale, unit) of each figure the benchmark prints."""
    return [
        ("worker start (tiny context)", "start", 1e3, "ms"),
        ("exec round trip (empty cell)", "exec", 1e6, "µs"),
        ("exec CPU, host + worker", "cpu", 1e6, "µs"),
        ("llm_query round trip", "llm", 1e6, "µs"),
        (f"{megabytes} MB context load (start→ready)", "load", 1e3, "ms"),
        (f"{megabytes} MB context peak RSS", "rss", 1 / 2**20, "MiB"),
    ]


def rss_bytes(field: str, path: str = "/proc/self/status") -> int:
    with open(path) as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return -1


async def started(kind: str, context: object) -> Sandbox:
    sandbox = create_sandbox(kind, SandboxLimits())
    await sandbox.start(context, InstantBridge())
    return sandbox


def leaf_cpu_seconds(sandbox: Sandbox) -> float:
    """CPU seconds used so far by the worker process (the deepest under bubblewrap), 0 for the
    in-process sandbox. Read from /proc, so it works on any version of fastrlm."""
    worker = getattr(sandbox, "_worker", None)
    if worker is None:
        return 0.0
    pid = worker.proc.pid
    container = getattr(worker, "container", None)
    if container is not None:  # the run command is not the worker: ask for the container's init
        done = subprocess.run([container.runtime, "inspect", "--format", "{{.State.Pid}}",
                               container.name], capture_output=True, text=True, check=False)
        pid = int(done.stdout.strip() or 0) or pid
    while True:
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as children:
                below = children.read().split()
        except OSError:
            break
        if not below:
            break
        pid = int(below[0])
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def exec_lap(sandbox: Sandbox, code: str) -> float:
    began = time.perf_counter()
    await sandbox.execute(code)
    return time.perf_counter() - began


async def measure(kind: str, repeats: int, megabytes: int) -> dict[str, float]:
    keys = ("start", "exec", "cpu", "llm", "load", "rss")
    figures: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(repeats):
        began = time.perf_counter()
        sandbox = await started(kind, "tiny")
        figures["start"].append(time.perf_counter() - began)
        await sandbox.execute("pass")
        host_cpu, worker_cpu = time.process_time(), leaf_cpu_seconds(sandbox)
        laps = [await exec_lap(sandbox, "pass") for _ in range(1000)]
        figures["exec"].append(statistics.median(laps))
        spent = time.process_time() - host_cpu + leaf_cpu_seconds(sandbox) - worker_cpu
        figures["cpu"].append(spent / len(laps))
        result = await sandbox.execute(
            "import time\nt = time.perf_counter()\nfor _ in range(2000): llm_query('x')\n"
            "print((time.perf_counter() - t) / 2000)"
        )
        figures["llm"].append(float(result.stdout))
        await sandbox.close()

    text = ("The quick brown fox jumps over the lazy dog. " * (megabytes * 23_000))[
        : megabytes * 1_000_000
    ]
    for _ in range(max(1, repeats // 2)):
        before = rss_bytes("VmRSS")
        began = time.perf_counter()
        sandbox = await started(kind, text)
        figures["load"].append(time.perf_counter() - began)
        if sandbox.unsafe:  # the cells run in this process: what did holding the context cost?
            figures["rss"].append(rss_bytes("VmRSS") - before)
        else:  # the worker's own peak: from inside under bubblewrap (own PID namespace),
            # from here under Landlock (which denies the worker its /proc)
            result = await sandbox.execute(
                "try:\n    s = open('/proc/self/status').read()\n"
                "    print(int(s.split('VmHWM:')[1].split()[0]) * 1024)\n"
                "except OSError:\n    print(-1)"
            )
            peak = float(result.stdout)
            if peak < 0:
                peak = rss_bytes("VmHWM", f"/proc/{getattr(sandbox, 'worker_pid', 0)}/status")
            figures["rss"].append(peak)
        await sandbox.close()
    return {k: statistics.median(v) for k, v in figures.items()}


INTERLEAVED_ROWS = [
    ("worker start (tiny context)", "start", 1e3, "ms"),
    ("restart after a hard kill", "restart", 1e3, "ms"),
    ("exec round trip (empty cell)", "exec", 1e6, "µs"),
    ("llm_query round trip", "llm", 1e6, "µs"),
    ("context load (start→ready)", "load", 1e3, "ms"),
]


async def interleaved(
    base: str, other: str, repeats: int, megabytes: int
) -> tuple[tuple[str, dict[str, float]], tuple[str, dict[str, float]]]:
    """``base`` and ``other`` measured in turns: starts (tiny and ``megabytes`` contexts) and
    restarts alternate between them, and their two live workers take turns of 100 empty cells
    and 200 ``llm_query`` calls. Returns (base layer, its figures), (other layer, its figures)."""
    kinds = (base, other)
    figures: dict[str, dict[str, list[float]]] = {
        k: {"start": [], "restart": [], "exec": [], "llm": [], "load": []} for k in kinds}
    text = ("The quick brown fox jumps over the lazy dog. " * (megabytes * 23_000))[
        : megabytes * 1_000_000
    ]
    live: dict[str, Sandbox] = {}
    for _ in range(repeats):
        for kind in kinds:
            began = time.perf_counter()
            sandbox = await started(kind, "tiny")
            figures[kind]["start"].append(time.perf_counter() - began)
            await sandbox.close()
    for kind in kinds:
        live[kind] = await started(kind, "tiny")
        await live[kind].execute("pass")
    for _ in range(repeats * 4):
        for kind in kinds:
            laps = [await exec_lap(live[kind], "pass") for _ in range(100)]
            figures[kind]["exec"].append(statistics.median(laps))
            result = await live[kind].execute(
                "import time\nt = time.perf_counter()\nfor _ in range(200): llm_query('x')\n"
                "print((time.perf_counter() - t) / 200)"
            )
            figures[kind]["llm"].append(float(result.stdout))
    for kind in kinds:
        await live[kind].close()
    for _ in range(max(1, repeats // 2)):
        for kind in kinds:
            sandbox = create_sandbox(kind, SandboxLimits(exec_timeout_s=0.2, hard_grace_s=0.2))
            began = time.perf_counter()
            await sandbox.start(text, InstantBridge())
            figures[kind]["load"].append(time.perf_counter() - began)
            await sandbox.close()
    for _ in range(max(1, repeats // 2)):
        for kind in kinds:
            sandbox = create_sandbox(kind, SandboxLimits(exec_timeout_s=0.2, hard_grace_s=0.2))
            await sandbox.start("tiny", InstantBridge())
            result = await sandbox.execute(
                "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True: pass")
            # the cell's own time to the kill (0.4 s) is the same on both: leave it out
            figures[kind]["restart"].append(result.duration_s - 0.4)
            await sandbox.close()
    medians = {k: {f: statistics.median(v) for f, v in fs.items()} for k, fs in figures.items()}
    layers = {k: create_sandbox(k).layer for k in kinds}
    return (layers[base], medians[base]), (layers[other], medians[other])


def one_round(src: str, kind: str, megabytes: int, repeats: int = 3) -> dict[str, float]:
    """:func:`measure` in a fresh interpreter importing fastrlm from ``src``."""
    env = {**os.environ, "PYTHONPATH": src}
    argv = [sys.executable, __file__, "--json", "--kind", kind, "--repeats", str(repeats),
            "--mb", str(megabytes)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the round with {src} failed:\n{done.stderr[-3000:]}")
    figures: dict[str, float] = json.loads(done.stdout.splitlines()[-1])
    return figures


def compare(before_src: str, kind: str, repeats: int, megabytes: int) -> None:
    import fastrlm

    after_src = os.path.dirname(os.path.dirname(os.path.abspath(fastrlm.__file__)))
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    for i in range(repeats):  # ABBA order, so drifting machine load hits both alike
        order = ("before", "after") if i % 2 == 0 else ("after", "before")
        for side in order:
            src = before_src if side == "before" else after_src
            runs[side].append(one_round(src, kind, megabytes))
    medians = {
        side: {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
        for side, rounds in runs.items()
    }
    rows = figure_rows(megabytes)
    print(f"sandbox {kind!r}, medians over {repeats} rounds (ABBA order) of 3 repeats each")
    print(f"  before: {before_src}\n  after:  {after_src}")
    print(f"{'figure':<38}{'before':>14}{'after':>14}{'change':>10}")
    for label, key, scale, unit in rows:
        a, b = medians["before"][key] * scale, medians["after"][key] * scale
        change = f"{(b - a) / a:+.0%}" if a > 0 else "n/a"
        print(f"{label:<38}{a:>9.1f} {unit:<4}{b:>9.1f} {unit:<4}{change:>10}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="auto", help="isolated kind to compare with none")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--mb", type=int, default=100, help="size of the large context (MB)")
    parser.add_argument("--before", metavar="SRC", help="compare with fastrlm imported from SRC")
    parser.add_argument("--json", action="store_true", help="print the isolated figures as JSON")
    parser.add_argument("--with", dest="with_kinds", action="append", default=[], metavar="KIND",
                        help="also measure this layer (e.g. docker), beside --kind")
    args = parser.parse_args()
    if args.before:
        compare(args.before, args.kind, args.repeats, args.mb)
        return
    if args.json:
        print(json.dumps(asyncio.run(measure(args.kind, args.repeats, args.mb))))
        return

    async def both() -> tuple[str, dict[str, float], dict[str, float]]:
        probe = create_sandbox(args.kind)
        layer = probe.layer
        isolated = await measure(args.kind, args.repeats, args.mb)
        unsafe = await measure("none", args.repeats, args.mb)
        return layer, isolated, unsafe

    layer, isolated, unsafe = asyncio.run(both())
    extra = [asyncio.run(interleaved(args.kind, other, args.repeats, args.mb))
             for other in args.with_kinds]
    rows = figure_rows(args.mb)
    print(f"medians over {args.repeats} repeats; isolated layer: {layer}")
    print(f"{'figure':<36}{layer:>26}{'none (in-process)':>20}{'ratio':>9}")
    for label, key, scale, unit in rows:
        a, b = isolated[key] * scale, unsafe[key] * scale
        ratio = f"{a / b:.1f}x" if b > 0 and (key != "rss" or b >= 1) else "n/a"
        print(f"{label:<36}{a:>20.1f} {unit:<5}{b:>14.1f} {unit:<5}{ratio:>9}")
    for base, other in extra:
        print(f"\ninterleaved, medians over {args.repeats} repeats")
        print(f"{'figure':<36}{base[0]:>26}{other[0]:>26}{'ratio':>9}")
        for label, key, scale, unit in INTERLEAVED_ROWS:
            a, c = base[1][key] * scale, other[1][key] * scale
            ratio = f"{c / a:.1f}x" if a > 0 else "n/a"
            print(f"{label:<36}{a:>20.1f} {unit:<5}{c:>20.1f} {unit:<5}{ratio:>9}")
    print(
        "RSS: isolated = the worker's whole peak (VmHWM: interpreter + mapping + str); "
        "none = what this process grew by (the host's str is shared, not copied)."
    )


if __name__ == "__main__":
    main()
