"""What bounds ``fastrlm serve``: requests a second against the slot-bound limit (slots / model
time), with each request's sandbox worker forked from the warm process (the default) and started
cold (``--cold-workers``), interleaved in one run.

    python benchmarks/server_throughput.py [--slots 32] [--model-s 0.2] [--seconds 8]
                                           [--repeats 3] [--sandbox auto] [--context 10000]
                                           [--no-trace] [--home DIR]

The server runs in a process of its own (``RLMServer`` with its defaults: traces on unless
``--no-trace``, the given sandbox), its root a scripted model that answers after ``--model-s``
seconds (an ``asyncio.sleep``: no CPU) with one REPL block that reads the context and calls
FINAL. This process keeps ``--slots`` requests in flight (closed loop: raw keep-alive HTTP/1.1
on asyncio streams, so that the load generator's CPU stays small) for ``--seconds`` after a
warm-up second, then reads the server's CPU time. Printed per mode (medians over ``--repeats``):
requests a second and their ratio to the limit, the median and 90th-percentile latency against
the model time (in a closed loop the throughput is slots / mean latency, so the tail counts), the
server process's CPU per request (``host CPU``: the event loop, HTTP, the run, the trace, the
worker's start on the host side), the whole machine's CPU per request (``/proc/stat``: the
workers, the warm process, this load generator and anything else the machine runs) and this load
generator's share of it.

The traces go to a fresh ``FASTRLM_HOME`` (removed at the end) in ``--home``, by default the
folder that holds this user's ``FASTRLM_HOME`` (``~``), where ``fastrlm serve`` writes its
traces; the header names its file system. Each request creates its trace and its replay record,
and creating a file costs 10-20 us on tmpfs or a quiet ext4 directory but 0.2-0.7 ms in a
directory of an ext4 where many files were deleted in the last minute or so (the inode
allocator skips recently deleted inodes one by one: this VM's ``/tmp`` while test suites run,
and this benchmark's own home after a run deletes its traces). The header prints what creating
one costs in the home used; compare runs whose costs agree, or use ``--home /dev/shm``.

The header also prints how long a fixed pure-Python loop took before and after the runs, and
the CPU a bare Python start cost: this VM's speed drifts by a fifth or more within minutes
(other machines share its cores, and no steal time shows it), sometimes in the kernel's work
(fork, page faults) while the loop does not move, so compare figures only between runs whose
probes agree (the cold row's machine CPU per request is a third sign), and prefer ratios
measured in one invocation. To compare two checkouts (one's ``src`` on ``PYTHONPATH``), compile
each one's bytecode first (``python -m compileall -q src``): workers run with ``-B``, so with a
stale or missing cache every cold worker compiles its imports again.

Goal (issue 31): with 32 slots and a 200 ms model, throughput within 10% of the limit (160
requests a second) and host CPU under 10 ms a request, on a 2-core machine. Nothing here runs in
the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from fastrlm._foundation.home import fastrlm_home

SERVER = r"""
import asyncio, json, resource, sys
from fastrlm import RLM, Budget
from fastrlm.server import RLMServer
from fastrlm.testing import ScriptedLM

slots, model_s, sandbox, warm = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
trace = sys.argv[5] == "trace"
REPLY = "```repl\nFINAL(str(len(context)))\n```"

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

async def main():
    rlm = RLM(ScriptedLM(lambda m: REPLY, model="scripted/root", latency_s=model_s),
              ScriptedLM(lambda m: "sub", model="scripted/sub"), sandbox=sandbox,
              budget=Budget(max_iterations=3), trace=trace)
    async with RLMServer(rlm, max_concurrent_runs=slots, max_queued_runs=4 * slots,
                         warm_workers=warm == "warm") as server:
        await server.start("127.0.0.1", 0)
        held = server._warm.warm if server._warm is not None else None
        print(json.dumps({"port": server.port, "warm": held is not None}), flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            print(json.dumps({"cpu_s": cpu(), "forks": held.forks if held else 0}), flush=True)

asyncio.run(main())
"""


def _machine_cpu_s() -> float:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


async def _load(port: int, slots: int, seconds: float, context: str) -> tuple[int, list[float]]:
    """``slots`` keep-alive connections, each sending the next request as soon as its answer is
    in, for ``seconds``: (answers, their latencies). Raw asyncio streams and one pre-built
    request, so that this load generator's own CPU stays small beside the server's."""
    body = json.dumps({"model": "rlm", "messages": [
        {"role": "user", "content": "How long is it?"}], "context": context}).encode()
    request = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
               ).encode() + body
    expected = f'"content":"{len(context)}"'.encode()
    done, latencies = 0, []
    stop = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < stop:
                began = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                answer = await reader.readexactly(length)
                if not head.startswith(b"HTTP/1.1 200") or expected not in answer.replace(
                        b": ", b":"):
                    raise RuntimeError(f"bad reply: {head[:40]!r} {answer[:300]!r}")
                latencies.append(time.perf_counter() - began)
                done += 1
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(slots)))
    return done, latencies


async def _one(mode: str, args: argparse.Namespace, home: str) -> dict[str, float]:
    proc = subprocess.Popen(  # noqa: ASYNC220 - the server process; waited for at the end
        [sys.executable, "-c", SERVER, str(args.slots), str(args.model_s), args.sandbox, mode,
         "no-trace" if args.no_trace else "trace"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "FASTRLM_HOME": home})
    assert proc.stdin is not None and proc.stdout is not None
    try:
        started = json.loads(proc.stdout.readline())
        if mode == "warm" and not started["warm"] and args.sandbox != "none":
            raise SystemExit("no warm worker for this sandbox here (see RLM.awarm_workers)")
        context = "x" * args.context
        await _load(started["port"], args.slots, 1.0, context)  # warm-up
        proc.stdin.write("\n")
        proc.stdin.flush()
        before = json.loads(proc.stdout.readline())
        machine, client = _machine_cpu_s(), time.process_time()
        began = time.perf_counter()
        done, latencies = await _load(started["port"], args.slots, args.seconds, context)
        wall = time.perf_counter() - began
        machine, client = _machine_cpu_s() - machine, time.process_time() - client
        proc.stdin.write("\n")
        proc.stdin.flush()
        after = json.loads(proc.stdout.readline())
    finally:
        proc.stdin.close()
        proc.wait(60)
    return {
        "rps": done / wall,
        "p50_s": statistics.median(latencies),
        "p90_s": statistics.quantiles(latencies, n=10)[-1],
        "host_ms": (after["cpu_s"] - before["cpu_s"]) / done * 1000,
        "machine_ms": machine / done * 1000,
        "client_ms": client / done * 1000,
        "forks": after["forks"] - before["forks"],
        "requests": done,
    }


def _speed_ms() -> float:
    """Milliseconds a fixed piece of pure-Python work takes here now (the best of five): this
    VM's speed drifts by a fifth from one minute to the next, with no steal time to show it;
    compare only runs whose figures agree."""
    times = []
    for _ in range(5):
        began = time.perf_counter()
        sum(i * i for i in range(300_000))
        times.append(time.perf_counter() - began)
    return min(times) * 1000


def _start_cpu_ms() -> float:
    """Milliseconds of CPU a bare Python start (``python -S -c pass``) costs here now (the
    median of five): fork, exec and page faults, the kernel's share of a worker's cost. This
    VM has had phases where a cold worker took 100 ms of machine CPU instead of 73 while the
    pure-Python loop above did not move: a second sign of which phase a run met."""
    times = []
    for _ in range(5):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-S", "-c", "pass"], check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        times.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return statistics.median(times) * 1000


def _create_cost_us(home: str, files: int = 100) -> float:
    """Microseconds to create (and write a line to) a file in ``home``, the median of
    ``files``: what each request's trace and record pay twice."""
    probe = os.path.join(home, "create-probe")
    os.mkdir(probe)
    times = []
    for i in range(files):
        began = time.perf_counter()
        fd = os.open(os.path.join(probe, f"{i}.jsonl"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.write(fd, b"{}\n")
        os.close(fd)
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1e6


def _file_system(path: str) -> str:
    """The type of the file system ``path`` is on (the last mount in /proc/mounts above it):
    creating a trace file costs 10-20 us on tmpfs and far more on a busy ext4."""
    path, best, kind = os.path.realpath(path), "", "?"
    with open("/proc/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            point = fields[1].replace("\\040", " ")
            inside = path == point or path.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best):
                best, kind = point, fields[2]
    return kind


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slots", type=int, default=32)
    parser.add_argument("--model-s", type=float, default=0.2)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sandbox", default="auto")
    parser.add_argument("--context", type=int, default=10_000, help="characters per request")
    parser.add_argument("--no-trace", action="store_true",
                        help="serve without traces (fastrlm serve --no-trace)")
    parser.add_argument("--home", default=None,
                        help="make the server's FASTRLM_HOME (its traces and index) in this "
                             "directory (default: the folder that holds this user's "
                             "FASTRLM_HOME, where `fastrlm serve` writes its traces)")
    args = parser.parse_args()
    limit = args.slots / args.model_s
    results: dict[str, list[dict[str, float]]] = {"warm": [], "cold": []}
    parent = args.home or str(fastrlm_home().expanduser().parent)
    with tempfile.TemporaryDirectory(dir=parent, prefix="fastrlm-bench-") as home:
        home_on = f"{_file_system(home)}, a file created in {_create_cost_us(home):.0f} us"
        speeds, starts = [_speed_ms()], [_start_cpu_ms()]
        for _ in range(args.repeats):
            for mode in ("warm", "cold"):
                results[mode].append(await _one(mode, args, home))
            speeds.append(_speed_ms())
            starts.append(_start_cpu_ms())
    print(f"slots {args.slots}, model {args.model_s * 1000:.0f} ms, sandbox {args.sandbox}, "
          f"traces {'off' if args.no_trace else f'on (home on {home_on})'}, "
          f"{os.cpu_count()} CPUs: the slot-bound limit is {limit:.0f} requests/s "
          f"(medians of {args.repeats} runs of {args.seconds:g} s); this machine's speed: a "
          f"fixed loop took {min(speeds):.1f}-{max(speeds):.1f} ms, a bare Python start "
          f"{min(starts):.1f}-{max(starts):.1f} ms of CPU")
    print(f"{'workers':8} {'req/s':>7} {'of limit':>9} {'p50 latency':>12} {'p90':>7} "
          f"{'host CPU/req':>13} {'machine CPU/req':>16} {'of which load gen.':>19}")
    for mode, runs in results.items():
        rps = statistics.median(r["rps"] for r in runs)
        p50 = statistics.median(r["p50_s"] for r in runs)
        p90 = statistics.median(r["p90_s"] for r in runs)
        host = statistics.median(r["host_ms"] for r in runs)
        machine = statistics.median(r["machine_ms"] for r in runs)
        client = statistics.median(r["client_ms"] for r in runs)
        print(f"{mode:8} {rps:7.1f} {rps / limit:8.2f}x {p50 * 1000:9.0f} ms {p90 * 1000:4.0f} ms "
              f"{host:10.1f} ms {machine:13.1f} ms {client:16.1f} ms")
    warm = statistics.median(r["rps"] for r in results["warm"])
    cold = statistics.median(r["rps"] for r in results["cold"])
    print(f"warm / cold throughput: {warm / cold:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
