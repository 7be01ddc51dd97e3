"""fastrlm against the official implementation (PyPI ``rlms``), same work, same fake model.

    python benchmarks/run_all.py            # all four benchmarks, results into docs/performance.md
    python benchmarks/vs_official/run.py --only fanout,step --repeats 5 --no-write

Each measured run is a fresh process pair: the fake model (``fake_model.py``, a
``FakeOpenAIServer`` on 127.0.0.1 in its own process) and a driver that makes one completion
(``drive_fastrlm.py`` with this interpreter, ``drive_official.py`` with the official package's
virtualenv, created on first use by ``official_env.py``). Times come from the driver
(``time.time()`` around the call) and from the server (arrival of each request); memory is the
sum over the driver's process tree, sampled every 20 ms from /proc.

1. fan-out: 3 root turns issue llm_query_batched batches of 50, 200 and 750 (100 ms each).
2. big context: 10M and 100M tokens (40 and 400 MB): call -> first root request, peak memory,
   a re.findall over the whole context.
3. trace growth: bytes of trace/log written over 10 iterations, 1 MB and 100 MB contexts.
4. per-step overhead: 200 no-op iterations at zero model latency, per sandbox layer.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

import common  # noqa: E402
import official_env  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")
# Every process started here (fake server, fastrlm drivers, the timed commands) runs the fastrlm
# of this checkout, whatever is installed.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])
FANOUT_LATENCY_S = 0.100
LOOPBACK_DEFAULT = 128  # fastrlm's fan-out width for a server on this machine (lm._base)
RUN_TIMEOUT_S = 300


# ---------------------------------------------------------------------------- process tree memory
def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = defaultdict(list)
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children[ppid].append(int(name))
    pids = [root]
    for pid in pids:
        pids.extend(children.get(pid, ()))
    return pids


def _rss_pss(pid: int) -> tuple[int, int]:
    try:
        with open(f"/proc/{pid}/statm") as f:
            rss = int(f.read().split()[1]) * PAGE
        pss = 0
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1]) * 1024
                    break
        return rss, pss
    except (OSError, ValueError, IndexError):
        return 0, 0


class TreeMemory:
    """Samples the summed RSS and PSS of a process and its descendants until stopped."""

    def __init__(self, pid: int, interval_s: float = 0.02) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.peak_rss = 0
        self.peak_pss = 0
        self.peak_procs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = _tree(self.pid)
            rss = pss = 0
            for pid in pids:
                r, p = _rss_pss(pid)
                rss += r
                pss += p
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self.peak_procs = max(self.peak_procs, len(pids))
            self._stop.wait(self.interval_s)


# ---------------------------------------------------------------------------- one measured run
@dataclass
class Impl:
    name: str  # "fastrlm", "official" or "minRLM"
    python: Path
    driver: Path
    dialect: str = "rlm"  # the names the scripted root turns use (common.root_reply)


@dataclass
class RunResult:
    driver: dict[str, Any]
    server: dict[str, Any]
    peak_rss: int = 0
    peak_pss: int = 0
    trace_bytes: int = 0
    trace_files: int = 0

    @property
    def first_root_s(self) -> float:
        return self.server["root_times"][0] - self.driver["t_call"]


def _start_server(scenario: str, iterations: int, sub_latency_s: float,
                  stats_out: Path, dialect: str = "rlm") -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "fake_model.py"), "--scenario", scenario,
         "--iterations", str(iterations), "--sub-latency-ms", str(sub_latency_s * 1000),
         "--stats-out", str(stats_out), "--dialect", dialect]
        + (["--count-tokens"] if scenario.startswith("tokens") else []),
        stdout=subprocess.PIPE, text=True, cwd=HERE,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http://127.0.0.1:"):
        proc.kill()
        raise RuntimeError(f"fake model server did not start: {url!r}")
    return proc, url


def run_once(impl: Impl, scenario: str, cfg: dict[str, Any], *, iterations: int = 1,
             sub_latency_s: float = 0.0, memory: bool = False,
             trace: bool = False) -> RunResult:
    with tempfile.TemporaryDirectory(prefix="fastrlm-vs-official-") as tmp:
        tmpdir = Path(tmp)
        stats_out = tmpdir / "server.json"
        server, url = _start_server(scenario, iterations, sub_latency_s, stats_out,
                                    impl.dialect)
        trace_dir = tmpdir / "trace"
        env = dict(os.environ, FASTRLM_HOME=str(tmpdir / "home"), PYTHONUNBUFFERED="1")
        env.pop("OPENAI_API_KEY", None)
        full = dict(cfg, base_url=url, iterations=iterations,
                    trace_dir=str(trace_dir) if trace else None)
        err_path = tmpdir / "driver.err"
        try:
            with err_path.open("w") as err:
                driver = subprocess.Popen(
                    [str(impl.python), str(impl.driver), json.dumps(full)],
                    stdout=subprocess.PIPE, stderr=err, text=True, cwd=HERE, env=env,
                )
                sampler = TreeMemory(driver.pid) if memory else None
                if sampler:
                    sampler.__enter__()
                try:
                    out, _ = driver.communicate(timeout=RUN_TIMEOUT_S)
                finally:
                    if sampler:
                        sampler.__exit__()
                    if driver.poll() is None:
                        driver.kill()
                        driver.wait()
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
        lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
        if driver.returncode != 0 or not lines:
            tail = err_path.read_text()[-3000:]
            raise RuntimeError(f"{impl.name} driver failed ({driver.returncode}):\n{tail}")
        result = RunResult(json.loads(lines[-1][7:]), json.loads(stats_out.read_text()))
        if sampler:
            result.peak_rss, result.peak_pss = sampler.peak_rss, sampler.peak_pss
        if trace:
            files = [p for d in (trace_dir, tmpdir / "home") if d.exists()
                     for p in d.rglob("*") if p.is_file()]
            result.trace_bytes = sum(p.stat().st_size for p in files)
            result.trace_files = len(files)
        return result


# ---------------------------------------------------------------------------- reporting helpers
def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def fmt_s(x: float) -> str:
    return f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s"


def fmt_b(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b > 0 else "n/a"


@dataclass
class Section:
    title: str
    lines: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        self.lines.append("| " + " | ".join(header) + " |")
        self.lines.append("|" + "|".join("---" for _ in header) + "|")
        self.lines.extend("| " + " | ".join(row) + " |" for row in rows)
        self.lines.append("")

    def say(self, text: str = "") -> None:
        self.lines.append(text)

    def show(self) -> None:
        print(f"\n## {self.title}\n")
        print("\n".join(self.lines), flush=True)


def _progress(msg: str) -> None:
    print(f"  .. {msg}", file=sys.stderr, flush=True)


def interleaved(labels: Sequence[str], repeats: int, one: Callable[[str], RunResult]
                ) -> tuple[dict[str, list[RunResult]], dict[str, str]]:
    """``repeats`` runs of every label, round-robin (a burst of load on the shared machine then
    hits every configuration alike, not all the repeats of one). Returns the runs by label, and
    the error of each label whose run raised ``RuntimeError`` (it is not run again)."""
    runs: dict[str, list[RunResult]] = {label: [] for label in labels}
    errors: dict[str, str] = {}
    for i in range(repeats):
        for label in labels:
            if label in errors:
                continue
            _progress(f"{label} #{i + 1}")
            try:
                runs[label].append(one(label))
            except RuntimeError as exc:
                errors[label] = str(exc)
    return runs, errors


# ---------------------------------------------------------------------------- 1. fan-out
def bench_fanout(fast: Impl, official: Impl, repeats: int) -> Section:
    sec = Section("1. Fan-out: 1,000 sub-calls in batches of 50, 200 and 750, 100 ms latency")
    latency = FANOUT_LATENCY_S
    n_total = sum(common.FANOUT_BATCHES)
    bare = Impl("bare openai SDK", fast.python, HERE / "drive_bare_sdk.py")
    bare_aio = Impl("bare aiohttp", fast.python, HERE / "drive_bare_aiohttp.py")
    configs: list[tuple[Impl, int | None, str]] = [
        (official, 16, "official, 16 (its default)"), (fast, 16, "fastrlm, 16"),
        (bare, 16, "bare openai SDK, 16"),
        (official, 64, "official, 64 (patched)"), (fast, 64, "fastrlm, 64"),
        (bare, 64, "bare openai SDK, 64"), (bare_aio, 64, "bare aiohttp, 64"),
        (fast, None, f"fastrlm, its default ({LOOPBACK_DEFAULT}: a loopback server)")]
    rows = []
    walls: dict[str, float] = {}
    windows: dict[str, float] = {}
    by_label = {label: (impl, conc) for impl, conc, label in configs}

    def one(label: str) -> RunResult:
        impl, conc = by_label[label]
        return run_once(impl, "fanout", {"context_mb": 0, "concurrency": conc},  # None: default
                        iterations=len(common.FANOUT_BATCHES), sub_latency_s=latency)

    runs, failed = interleaved([label for _, _, label in configs], repeats, one)
    if failed:
        raise RuntimeError(f"fan-out runs failed: {failed}")
    for _impl, set_conc, label in configs:
        conc = set_conc or LOOPBACK_DEFAULT
        limit = sum(math.ceil(n / conc) for n in common.FANOUT_BATCHES) * latency
        wall, window, errors, inflight, seen = [], [], [], [], []
        sample_error = ""
        for r in runs[label]:
            wall.append(r.driver["wall_s"])
            subs = r.server["sub_times"]
            window.append(max(subs) + latency - min(subs) if subs else float("nan"))
            oks, n_err, first_err = (r.driver["answer"].split("|", 2) + ["", ""])[:3]
            errors.append(n_total - sum(json.loads(oks)) if oks.startswith("[") else n_total)
            sample_error = sample_error or first_err
            inflight.append(r.server["max_in_flight"])
            seen.append(len(subs))
        walls[label] = median(wall)
        windows[label] = median(window)
        rows.append([label, fmt_s(limit), fmt_s(median(wall)), ratio(median(wall), limit),
                     fmt_s(median(window)), ratio(median(window), limit),
                     str(max(inflight)), f"{median(seen):.0f}",
                     f"{median(errors):.0f} (max {max(errors)})"])
        sec.data[label] = {"limit_s": limit, "wall_s": wall, "window_s": window,
                           "failed_subcalls": errors, "max_in_flight": inflight,
                           "subcalls_at_server": seen,
                           "sample_error": sample_error}
    sec.say(f"Physical limit = Σ ceil(nᵢ/C) × {latency * 1000:.0f} ms over the three sequential "
            f"batches (ceil({n_total}/C) × L would be {fmt_s(math.ceil(n_total / 16) * latency)} "
            f"at C=16, {fmt_s(math.ceil(n_total / 64) * latency)} at C=64). Root replies have no "
            "latency. *Wall*: the driver's call to its return, start-up and the three root turns "
            "included. *Fan-out*: first sub-call to the last sub-call's reply, as the server saw "
            "them. *bare openai SDK*: the same batches sent straight through one AsyncOpenAI "
            "client and a semaphore, no engine and no root turns: what that HTTP client itself "
            "reaches on this machine; *bare aiohttp*: the same through one aiohttp session, the "
            "client fastrlm's provider uses. *Sub-calls at server*: requests that reached the "
            "server (retries included); *failed*: answers that came back as errors instead of "
            f"`ok`. Medians of {repeats}.")
    sec.say()
    for row, (_, conc, label) in zip(rows, configs, strict=True):
        bare_label = f"bare openai SDK, {conc}"
        row.insert(6, ratio(windows[label], windows[bare_label]) if bare_label in windows else "")
    sec.table(["implementation, concurrency", "limit", "wall", "wall/limit", "fan-out",
               "fan-out/limit", "fan-out/bare SDK", "max in flight", "sub-calls at server",
               "failed sub-calls"], rows)
    sec.say("Where the time goes (CPU per sub-call, medians): *client* is the driver process's "
            "CPU over its whole life (start-up, imports and root turns included; fastrlm: the "
            "engine and its HTTP client, not the sandbox worker), *server* the fake model's "
            "process from its first request on (aiohttp on a thread of its own, the script's side "
            "of each request on a worker thread, and a JSON parse per request). On 2 cores, "
            "(client + server CPU) / 2 is a floor under the "
            "run however the waits overlap; the rest of the gap to the physical limit is the "
            "other sessions' load on the same 2 cores (load average above).")
    sec.say()
    cpu_rows = []
    for _impl, _conc, label in configs:
        client = median([r.driver.get("cpu_s", float("nan")) for r in runs[label]])
        server = median([r.server.get("cpu_s", float("nan")) for r in runs[label]])
        cpu_rows.append([label, *(f"{x / n_total * 1000:.2f} ms" for x in (client, server)),
                         fmt_s((client + server) / 2), fmt_s(walls[label]),
                         fmt_s(windows[label])])
        sec.data[label].update({"client_cpu_s": client, "server_cpu_s": server})
    sec.table(["implementation, concurrency", "client CPU / sub-call", "server CPU / sub-call",
               "CPU floor on 2 cores", "wall", "fan-out window"], cpu_rows)
    base = walls["official, 16 (its default)"]
    fast64 = walls["fastrlm, 64"]
    default = configs[-1][2]
    sec.say(f"Speed-up over the official default (wall): fastrlm at 16 "
            f"{ratio(base, walls['fastrlm, 16'])}, at 64 {ratio(base, fast64)}, at its default "
            f"for this server ({LOOPBACK_DEFAULT}) {ratio(base, walls[default])}; official "
            f"patched to 64 vs fastrlm at 64: {ratio(walls['official, 64 (patched)'], fast64)}. "
            "Fan-out window over the physical limit at C=64: "
            f"{ratio(windows['fastrlm, 64'], sec.data['fastrlm, 64']['limit_s'])}.")
    for label, d in sec.data.items():
        if d.get("sample_error") and label.startswith("official"):
            sec.say(f"\nOfficial failures ({label}): `{d['sample_error'][:160]}`")
    return sec


# ---------------------------------------------------------------------------- 2. big context
def bench_bigctx(fast: Impl, official: Impl, repeats: int, sizes_mb: Sequence[int]) -> Section:
    sec = Section("2. Big context: start, peak memory, re.findall")
    rows = []
    for mb in sizes_mb:
        per: dict[str, dict[str, float]] = {}
        impls = {f"{impl.name}, {mb} MB": impl for impl in (official, fast)}

        def one(label: str, impls: dict[str, Impl] = impls, mb: int = mb) -> RunResult:
            return run_once(impls[label], "findall", {"context_mb": mb}, memory=True)

        runs, failed = interleaved(list(impls), repeats, one)
        if failed:
            raise RuntimeError(f"big-context runs failed: {failed}")
        for label, impl in impls.items():
            start, total, findall, rss, pss, before = [], [], [], [], [], []
            counts = set()
            for r in runs[label]:
                start.append(r.first_root_s)
                total.append(r.driver["wall_s"])
                n, dt = r.driver["answer"].split()
                counts.add(int(n))
                findall.append(float(dt))
                rss.append(r.peak_rss)
                pss.append(r.peak_pss)
                before.append(r.driver["rss_before_call"])
            per[impl.name] = {"start": median(start), "total": median(total),
                              "findall": median(findall), "rss": median(rss),
                              "pss": median(pss), "before": median(before)}
            sec.data[f"{impl.name} {mb} MB"] = {"start_s": start, "total_s": total,
                                                 "findall_s": findall, "peak_rss": rss,
                                                 "peak_pss": pss, "rss_before_call": before,
                                                 "matches": sorted(counts)}
            rows.append([f"{mb} MB ({mb // 4}M tokens)", impl.name, fmt_s(median(start)),
                         fmt_s(median(findall)), fmt_s(median(total)), fmt_b(median(rss)),
                         fmt_b(median(pss)), fmt_b(median(before)), ",".join(map(str, counts))])
        o, f = per["official"], per["fastrlm"]
        rows.append([f"{mb} MB", "**official / fastrlm**", ratio(o["start"], f["start"]),
                     ratio(o["findall"], f["findall"]), ratio(o["total"], f["total"]),
                     ratio(o["rss"], f["rss"]), ratio(o["pss"], f["pss"]), "", ""])
    sec.say("*Start*: the call to the first root request reaching the server. *findall*: "
            "`len(re.findall(r\"needle-\\d{6}\", context))` timed inside the REPL cell. "
            "*Call→answer*: the whole one-step run. *Peak RSS/PSS*: summed over the driver's "
            "process tree (fastrlm: host + sandbox worker; RSS counts the shared context pages "
            "once per process, PSS splits them). *Before call*: the driver holding its own "
            f"context string, the floor for both. Medians of {repeats}.")
    sec.say()
    sec.table(["context", "implementation", "start", "findall", "call→answer", "peak RSS",
               "peak PSS", "before call", "matches"], rows)
    return sec


# ---------------------------------------------------------------------------- 3. trace growth
def bench_trace(fast: Impl, official: Impl, sizes_mb: Sequence[int]) -> Section:
    sec = Section("3. Trace growth: bytes written over 10 iterations")
    rows = []
    sizes: dict[str, list[int]] = defaultdict(list)
    for impl in (official, fast):
        for mb in sizes_mb:
            _progress(f"trace {mb} MB {impl.name}")
            r = run_once(impl, "noop", {"context_mb": mb}, iterations=10, trace=True)
            sizes[impl.name].append(r.trace_bytes)
            sec.data[f"{impl.name} {mb} MB"] = {"bytes": r.trace_bytes, "files": r.trace_files,
                                                 "wall_s": r.driver["wall_s"]}
            rows.append([impl.name, f"{mb} MB", fmt_b(r.trace_bytes), str(r.trace_files),
                         fmt_s(r.driver["wall_s"])])
    for impl in ("official", "fastrlm"):
        a, b = sizes[impl][0], sizes[impl][-1]
        rows.append([f"**{impl}**", f"{sizes_mb[-1]} MB / {sizes_mb[0]} MB", ratio(b, a), "", ""])
    sec.say("fastrlm: `RLM(trace=dir)` (JSONL trace + SQLite index); official: "
            "`RLMLogger(log_dir=dir)`. All files written under those directories.")
    sec.say()
    sec.table(["implementation", "context", "bytes written", "files", "run time"], rows)
    return sec


# ---------------------------------------------------------------------------- 4. per-step cost
def bench_step(fast: Impl, official: Impl, repeats: int, iterations: int,
               layers: Sequence[str]) -> Section:
    sec = Section(f"4. Per-step overhead: {iterations} no-op iterations, zero model latency")
    rows = []
    configs: list[tuple[Impl, str | None]] = [(official, None)] + [(fast, x) for x in layers]
    per_iter: dict[str, float] = {}
    by_label = {(impl.name if layer is None else f"fastrlm, sandbox={layer}"): (impl, layer)
                for impl, layer in configs}

    def one(label: str) -> RunResult:
        impl, layer = by_label[label]
        cfg: dict[str, Any] = {"context_mb": 0}
        if layer:
            cfg["sandbox"] = layer
        return run_once(impl, "noop", cfg, iterations=iterations)

    runs, failed = interleaved(list(by_label), repeats, one)
    for label in by_label:
        if label in failed:
            rows.append([label, "unavailable", "", "", "", "",
                         failed[label].splitlines()[-1][:80]])
            continue
        mean, med, wall, first, last = [], [], [], [], []
        shown_layer = ""
        for r in runs[label]:
            times = r.server["root_times"]
            gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
            mean.append((times[-1] - times[0]) / (len(times) - 1))
            med.append(median(gaps))
            first.append(median(gaps[:20]))
            last.append(median(gaps[-20:]))
            wall.append(r.driver["wall_s"])
            shown_layer = r.driver.get("layer", "")
        per_iter[label] = median(mean)
        sec.data[label] = {"mean_s": mean, "median_gap_s": med, "first20_s": first,
                           "last20_s": last, "wall_s": wall, "layer": shown_layer}
        rows.append([label, f"{median(mean) * 1000:.1f} ms", f"{median(med) * 1000:.1f} ms",
                     f"{median(first) * 1000:.1f} ms", f"{median(last) * 1000:.1f} ms",
                     fmt_s(median(wall)), shown_layer])
    sec.say("Per iteration: the time between consecutive root requests at the server (the model "
            "answers at once), so it holds the engine's whole turn: parse the reply, run the "
            "cell, build the next request, plus the HTTP round trip to the local fake server "
            "(the official package through the openai SDK, fastrlm through aiohttp). The "
            "conversation grows to "
            f"{2 * iterations} messages for fastrlm ({3 * iterations} for the official one): "
            "*first 20* / *last 20* are the median turn at the "
            f"start and at the end of the run. Medians of {repeats}.")
    sec.say()
    sec.table(["implementation", "mean per iteration", "median", "median, first 20",
               "median, last 20", "wall", "layer"], rows)
    base = per_iter.get("official")
    if base:
        sec.say("official / fastrlm per iteration: " + ", ".join(
            f"{k.split('=', 1)[-1]} {ratio(base, v)}" for k, v in per_iter.items()
            if k != "official"))
    return sec


# ---------------------------------------------------------------------------- 5. root tokens
# gpt-5 list prices, USD per million tokens: input, cached input, output
PRICE_IN, PRICE_CACHED, PRICE_OUT = 1.25, 0.125, 10.0


def bench_tokens(fast: Impl, official: Impl, minrlm: Impl | None = None) -> Section:
    sec = Section("5. Root-token efficiency: one scripted 30-turn trajectory, two output mixes")
    configs = [(official, {}, "official"), (fast, {}, "fastrlm")]
    if minrlm is not None:
        configs.insert(1, (minrlm, {}, "minRLM"))
    rows = []
    tokenizer = "?"
    for scenario, title in (("tokens", "mixed"), ("tokens-heavy", "50K print every turn")):
        per: dict[str, dict[str, float]] = {}
        for impl, extra, label in configs:
            _progress(f"tokens {scenario} {label}")
            r = run_once(impl, scenario, {"context_mb": common.TOKEN_CONTEXT_MB, **extra},
                         iterations=common.TOKEN_TURNS)
            reqs = r.server["root_requests"]
            tokenizer = r.server.get("tokenizer", tokenizer)
            tin = sum(x["input_tokens"] for x in reqs)
            cached = sum(x["cached_tokens"] for x in reqs)
            out = sum(x["output_tokens"] for x in reqs)
            shares = [x["match_previous_tokens"] / x["input_tokens"] for x in reqs[1:]]
            # a request that repeats all of the previous one: it only appends (cache-stable)
            extends = sum(b["match_previous_tokens"] >= a["input_tokens"]
                          for a, b in zip(reqs, reqs[1:], strict=False))
            cost_in = ((tin - cached) * PRICE_IN + cached * PRICE_CACHED) / 1e6
            cost = cost_in + out * PRICE_OUT / 1e6
            per[label] = {"in": tin, "cached": cached, "cost_in": cost_in, "cost": cost,
                          "bytes": sum(x["bytes"] for x in reqs)}
            sec.data[f"{scenario} {label}"] = {"requests": reqs, "answer": r.driver["answer"]}
            rows.append([title, label, str(len(reqs)), f"{tin:,}", f"{cached:,}",
                         f"{tin - cached:,}", f"{out:,}", fmt_b(per[label]["bytes"]),
                         f"{max(x['input_tokens'] for x in reqs):,}",
                         f"{median(shares):.0%} (min {min(shares):.0%})",
                         f"{extends} of {len(reqs) - 1}",
                         f"${cost_in:.4f}", f"${cost:.4f}"])
        o = per["official"]
        for label in ("minRLM", "fastrlm"):
            if label not in per:
                continue
            f = per[label]
            rows.append([title, f"**{label} / official**", "", ratio(f["in"], o["in"]),
                         ratio(f["cached"], o["cached"]),
                         ratio(f["in"] - f["cached"], o["in"] - o["cached"]), "",
                         ratio(f["bytes"], o["bytes"]), "", "", "",
                         ratio(f["cost_in"], o["cost_in"]),
                         ratio(f["cost"], o["cost"])])
    sec.say(f"The same scripted root replies for both implementations (`common.root_reply`): 30 "
            f"turns over a {common.TOKEN_CONTEXT_MB} MB context; *mixed*: short prints, five "
            "50,000-character prints, two errors, three batches of 20 sub-calls; *50K print every "
            "turn*: the same with a 50,000-character print on each turn. The fake server counts "
            f"each root request as a provider bills it ({tokenizer}; message contents + 4 tokens "
            "a message): *cached* is the prefix shared with an earlier root request, in 128-token "
            "steps from 1,024 on (OpenAI's automatic prompt caching); *matches previous* is the "
            "share of each request that repeats the previous request from its start (median over "
            "requests 2-30); *extends previous* counts the requests that repeat all of the "
            "previous one (append-only: nothing earlier was rewritten). Cost at gpt-5 list "
            "prices: input "
            f"${PRICE_IN}/M, cached input ${PRICE_CACHED}/M, output ${PRICE_OUT}/M; *input cost* "
            "leaves out the output tokens, which are the same scripted replies for both. "
            "Deterministic: one run each.")
    sec.say()
    sec.table(["trajectory", "implementation", "root requests", "input tokens", "cached",
               "uncached", "output tokens", "bytes sent", "largest request",
               "matches previous", "extends previous", "input cost", "cost"], rows)
    return sec


# ---------------------------------------------------------------------------- 6. HTTP clients
def bench_http(fast: Impl, repeats: int) -> Section:
    sec = Section("6. HTTP clients: client CPU per request")
    clients = ["sdk-create", "sdk-post", "httpx", "httpx2", "aiohttp", "httpx-h2", "fastrlm"]
    n, conc = 1000, 64
    got: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for i in range(repeats):
        _progress(f"http clients #{i + 1}")
        with tempfile.TemporaryDirectory(prefix="fastrlm-http-") as tmp:
            server, url = _start_server("fanout", 1, 0.0, Path(tmp) / "server.json")
            try:
                out = subprocess.run(
                    [str(fast.python), str(HERE / "http_clients.py"),
                     json.dumps({"base_url": url, "requests": n, "concurrency": conc,
                                 "clients": clients})],
                    capture_output=True, text=True, cwd=HERE, timeout=RUN_TIMEOUT_S,
                )
            finally:
                server.send_signal(signal.SIGTERM)
                server.wait(timeout=30)
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
        if not lines:
            raise RuntimeError(f"http_clients.py failed:\n{out.stderr[-3000:]}")
        for name, res in json.loads(lines[-1][7:]).items():
            got[name].append(res)
    names = {"sdk-create": "openai SDK, `chat.completions.create`",
             "sdk-post": "openai SDK, `client.post` (fastrlm before)",
             "httpx": "plain `httpx.AsyncClient`", "httpx2": "plain `httpx2.AsyncClient`",
             "aiohttp": "plain `aiohttp.ClientSession`",
             "httpx-h2": "`httpx.AsyncClient(http2=True)`",
             "fastrlm": "fastrlm `OpenAIChatLM.complete` (aiohttp, retries, reading)"}
    base = median([r.get("cpu_ms_per_request", float("nan")) for r in got["sdk-post"]])
    rows = []
    skipped = []
    for name in clients:
        results = got[name]
        missing = sorted({r["skipped"] for r in results if "skipped" in r})
        if missing:  # not a failure: the package is simply not installed here
            skipped.append(f"{names[name]} ({missing[0]})")
            continue
        errors = [r["error"] for r in results if "error" in r]
        if errors:
            rows.append([names[name], "failed", "", "", errors[0][:80]])
            continue
        cpu = median([r["cpu_ms_per_request"] for r in results])
        wall = median([r["wall_s"] for r in results])
        versions = ",".join(sorted({v for r in results for v in r.get("http_versions", [])}))
        rows.append([names[name], f"{cpu:.2f} ms", ratio(base, cpu), fmt_s(wall),
                     versions or "HTTP/1.1"])
        sec.data[name] = results
    sec.say(f"{n:,} chat completions, {conc} at once, to the fake model (another process, no "
            "latency), after 50 to warm the pool; CPU is the client process's own "
            "(`time.process_time`) divided by the requests. *vs SDK post*: how many times "
            "cheaper than the path fastrlm used before. HTTP/2 could not be measured against "
            "this server: `httpx` speaks HTTP/2 only over TLS (ALPN) and has no cleartext h2c "
            "mode, and the fake server (aiohttp's server) speaks HTTP/1.1 only, so the "
            f"`http2=True` client negotiated the version shown. Medians of {repeats}.")
    if skipped:
        sec.say("Skipped, not installed in this environment: " + "; ".join(skipped) + ".")
    sec.say()
    sec.table(["client", "CPU per request", "vs SDK post", f"wall for {n:,}", "HTTP version"],
              rows)
    return sec


# ---------------------------------------------------------------------------- 7. start-up
def _time_cmd(cmd: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True, timeout=120, cwd=REPO)
        times.append(time.perf_counter() - t0)
    return median(times)


def bench_startup(fast: Impl, official: Impl, repeats: int) -> Section:
    sec = Section("7. Start-up: `import fastrlm` and `fastrlm --help`")
    py, off = str(fast.python), str(official.python)
    reps = max(2 * repeats, 5)
    _progress("start-up")
    cases = [("python -c pass (the interpreter alone)", [py, "-c", "pass"]),
             ("import fastrlm", [py, "-c", "import fastrlm"]),
             ("fastrlm --help", [py, "-m", "fastrlm", "--help"]),
             ("import fastrlm; resolve an OpenAI-compatible model",
              [py, "-c", "import fastrlm.lm as m; m.resolve('ollama/x')"]),
             ("official's virtualenv: python -c pass", [off, "-c", "pass"]),
             ("official: import rlm", [off, "-c", "import rlm"])]
    rows = []
    for label, cmd in cases:
        t = _time_cmd(cmd, reps)
        sec.data[label] = t
        rows.append([label, fmt_s(t)])
    out = subprocess.run([py, "-X", "importtime", "-c", "import fastrlm"], capture_output=True,
                         text=True, timeout=120, cwd=REPO).stderr
    top: list[tuple[int, str]] = []
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            top.append((int(parts[1].strip()), parts[2].rstrip()))
    heavy = sorted((t for t in top if "." not in t[1].strip()), reverse=True)[:8]
    sec.say("Wall time of each command (a fresh interpreter each time, medians of "
            f"{reps}). `PYTHONPATH` points at this checkout. Each interpreter's own start is "
            "shown too: this machine's Python has many packages installed (their `.pth` files "
            "run at every start), the official package's virtualenv only its own. The largest "
            "top-level imports of "
            "`import fastrlm` (`python -X importtime`, cumulative): "
            + ", ".join(f"`{name.strip()}` {us / 1000:.0f} ms" for us, name in heavy) + ".")
    sec.say()
    sec.table(["command", "wall"], rows)
    return sec


# ---------------------------------------------------------------------------- machine + output
def machine() -> dict[str, str]:
    def sh(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.rstrip()
        except OSError:
            return "?"

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": sh(["nproc"]),
        "cpu": cpu,
        "free -g": sh(["free", "-g"]),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


MARK_START = "<!-- results:start (written by benchmarks/run_all.py; edit outside) -->"
MARK_END = "<!-- results:end -->"


def _number(title: str) -> str:
    return title.split(".", 1)[0]


def _earlier_sections(path: Path) -> dict[str, list[str]]:
    """The ``### N. ...`` sections of the results block already in ``path``, by number, each
    marked with the run that measured it: a run of some benchmarks (``--only``) keeps the
    others' figures instead of dropping them."""
    if not path.exists() or MARK_START not in (text := path.read_text()) or MARK_END not in text:
        return {}
    block = text.split(MARK_START, 1)[1].split(MARK_END, 1)[0]
    command = next((ln for ln in block.splitlines() if ln.startswith("Command: ")), "")
    load = block.split("load average ", 1)[1].split(" ", 1)[0] if "load average " in block else "?"
    out: dict[str, list[str]] = {}
    for chunk in block.split("\n### ")[1:]:
        lines = ("### " + chunk).rstrip("\n").split("\n")
        if "(from an earlier run:" not in lines[0] and command:
            run = command[len("Command: "):].split(" (took")[0]
            lines[0] += f" (from an earlier run: {run}, load {load} at its start)"
        out[_number(lines[0][4:])] = [*lines, ""]
    return out


def _load_warning(info: dict[str, str]) -> list[str]:
    """A sentence for the report when the machine was busier than its cores at the start."""
    try:
        busy = float(info["load"].split()[0]) > float(info["nproc"])
    except (ValueError, IndexError):
        return []
    if not busy:
        return []
    return ["", f"**The machine was heavily loaded by other sessions during this run** (load "
                f"average {info['load'].split()[0]} on {info['nproc']} cores): times are "
                "inflated, CPU-bound configurations most; read the ratios within the run, and "
                "token counts, which do not depend on load."]


def write_markdown(path: Path, command: str, info: dict[str, str], rlms: str,
                   sections: Sequence[Section], started: float, load_end: str) -> None:
    body = [
        MARK_START,
        f"Command: `{command}` (took {time.time() - started:.0f} s, "
        f"{time.strftime('%Y-%m-%d %H:%M')}).",
        "",
        f"Machine: {info['nproc']} CPUs ({info['cpu']}), Python {info['python']}, "
        f"kernel {info['kernel']}; load average {info['load']} at the start, {load_end} at "
        "the end (the machine is shared, so timings are noisy). Official package: "
        f"`rlms=={rlms}` from PyPI in `.bench-venv/`.",
        *_load_warning(info),
        "",
        "```",
        "$ free -g",
        info["free -g"],
        "```",
        "",
    ]
    kept = _earlier_sections(path)
    fresh = {_number(sec.title): sec for sec in sections}
    for number in sorted(set(kept) | set(fresh), key=lambda n: (len(n), n)):
        if number in fresh:
            body.append(f"### {fresh[number].title}")
            body.append("")
            body.extend(fresh[number].lines)
            body.append("")
        else:
            body.extend(kept[number])
    body.append(MARK_END)
    block = "\n".join(body)
    if path.exists() and MARK_START in (text := path.read_text()) and MARK_END in text:
        head, rest = text.split(MARK_START, 1)
        tail = rest.split(MARK_END, 1)[1]
        path.write_text(head + block + tail)
    else:
        path.write_text("# Benchmarks: fastrlm vs the official RLM\n\n" + block + "\n")


def main(argv: Sequence[str] | None = None, command: str | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="fanout,bigctx,trace,step,tokens,http,startup",
                        help="comma-separated subset of fanout,bigctx,trace,step,tokens,http,"
                             "startup")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bigctx-mb", default="40,400")
    parser.add_argument("--trace-mb", default="1,100")
    parser.add_argument("--step-iterations", type=int, default=200)
    parser.add_argument("--layers", default="bwrap,landlock,process,none")
    parser.add_argument("--no-write", action="store_true", help="do not touch docs/performance.md")
    parser.add_argument("--json", help="also write every measurement to this file")
    args = parser.parse_args(argv)
    started = time.time()
    info = machine()
    print(f"machine: {info['nproc']} CPUs, Python {info['python']}, kernel {info['kernel']}, "
          f"load {info['load']}", flush=True)
    off_python = official_env.ensure_official()
    rlms = official_env.official_version(off_python)
    fast = Impl("fastrlm", Path(sys.executable), HERE / "drive_fastrlm.py")
    official = Impl("official", off_python, HERE / "drive_official.py")
    minrlm = (Impl("minRLM", official_env.ensure_minrlm(), HERE / "drive_minrlm.py", "minrlm")
              if "tokens" in args.only.split(",") else None)
    only = set(args.only.split(","))
    benches: list[tuple[str, Callable[[], Section]]] = [
        ("fanout", lambda: bench_fanout(fast, official, args.repeats)),
        ("bigctx", lambda: bench_bigctx(fast, official, args.repeats,
                                        [int(x) for x in args.bigctx_mb.split(",")])),
        ("trace", lambda: bench_trace(fast, official, [int(x) for x in args.trace_mb.split(",")])),
        ("step", lambda: bench_step(fast, official, args.repeats, args.step_iterations,
                                    args.layers.split(","))),
        ("tokens", lambda: bench_tokens(fast, official, minrlm)),
        ("http", lambda: bench_http(fast, args.repeats)),
        ("startup", lambda: bench_startup(fast, official, args.repeats)),
    ]
    sections = []
    for name, bench in benches:
        if name in only:
            sec = bench()
            sec.show()
            sections.append(sec)
    load_end = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\ndone in {time.time() - started:.0f} s (load {load_end})")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"machine": info, "rlms": rlms, "results": {s.title: s.data for s in sections}},
            indent=1))
    if not args.no_write:
        cmd = command or "python benchmarks/vs_official/run.py " + " ".join(argv or sys.argv[1:])
        write_markdown(REPO / "docs" / "performance.md", cmd.strip(), info, rlms, sections, started,
                       load_end)
        print(f"results written to {REPO / 'docs' / 'performance.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
