"""A file context held once: what ``fastrlm ask -c big.log`` costs before its first root call.

    python benchmarks/file_context.py [--mb 1024] [--repeats 3] [--sandbox auto] [--only MODE]
                                      [--against OTHER/src]

Writes an ASCII log file of ``--mb`` MiB, then runs, in a fresh process each, what the CLI does
with it: ``load_context([file])`` and a completion whose scripted root reads ``len(context)``
in the sandbox. Two ways, interleaved, medians over ``--repeats``:

- **read** (``shared=False``, the way before): the file read into a ``str``, which the sandbox
  then copies into its sealed buffer;
- **shared** (``shared=True``, what ``ask`` and ``chat`` do now): the file copied once into
  the sealed buffer, the ``str`` living in that buffer;
- **cli**: ``fastrlm ask -c FILE`` itself against a fake OpenAI-compatible server, timed from
  the command's start to the server receiving the first root request: what a user waits,
  the interpreter's start and imports included (not split into phases: the load's end is not
  seen from outside). Run with bytecode caches written (``PYTHONDONTWRITEBYTECODE`` unset), as
  an installed package has them, or imports are compiled on every start.

Printed: the time from the start of the load to the first root request (and its two phases:
``load_context``, then the engine up to that request), the time to the answer (the scripted
root answers at once, so this is when its one cell could run: a shared file's copy, which
now goes on past the first request, ends before it), and the peak memory of
the process tree, each page counted once: each process's private memory and files (its PSS less
shared memory) plus every shared-memory object (the context buffer) once, at the most any one
process has mapped of it. (Summing PSS over the tree instead is not a snapshot: a process
read before the worker mapped the buffer counts it whole, the worker read after counts half.)
Also printed: the floor, the kernel copying the file into a memfd on its own (``sendfile``, no
check, no Python), which any design that holds the file once in sealed memory pays.
Goal (issue 31): peak <= 1.2x the file and
start <= 0.5 s for 1 GB. Nothing here runs in the test suite.

The file is read once, unmeasured, before the first run: the first copy of a file just written
is slower (1 GiB here: 1.0 s, then 0.40-0.42 s), and a user's log has usually been read or
written long before. ``--against OTHER/src``
(another checkout's ``src`` directory) runs every mode with that package too, alternately with
this one in each repeat, and prints both: two checkouts compared on one machine state.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

DRIVER = r"""
import asyncio, json, sys, time
from fastrlm import RLM, Budget
from fastrlm.context import LoadLimits, load_context
from fastrlm.testing import ScriptedLM

path, shared, sandbox = sys.argv[1], sys.argv[2] == "shared", sys.argv[3]
first = []
def root(messages):
    first.append(time.perf_counter())
    return "```repl\nFINAL(str(len(context)))\n```"
async def main():
    t0 = time.perf_counter()
    room = LoadLimits(max_file_bytes=4 << 30, max_total_bytes=4 << 30)  # defaults: 256 MiB
    loaded = load_context([path], shared=shared, limits=room)
    t_loaded = time.perf_counter()
    rlm = RLM(ScriptedLM(root, model="scripted/root"), ScriptedLM(["ok"], model="scripted/sub"),
              sandbox=sandbox, budget=Budget(max_iterations=2))
    # the LoadedContext itself, where this checkout takes it: the run then starts while a shared
    # file is still being copied (older checkouts take only .value, which waits for the copy)
    context = loaded if hasattr(type(loaded), "in_flight") else loaded.value
    result = await rlm.acompletion("How long is it?", context=context)
    await rlm.aclose()
    print("RESULT " + json.dumps({"start_s": first[0] - t0, "load_s": t_loaded - t0,
                                  "answer": result.answer,
                                  "total_s": time.perf_counter() - t0}))
asyncio.run(main())
"""

# The physical limit of holding the file once: the kernel's own copy of it into a memfd
# (sendfile: no user-space buffer, no check), in a fresh process like the runs above.
FLOOR = r"""
import os, sys, time
src = os.open(sys.argv[1], os.O_RDONLY)
size = os.fstat(src).st_size
t0 = time.perf_counter()
dst = os.memfd_create("floor")
done = 0
while done < size:
    done += os.sendfile(dst, src, done, min(64 << 20, size - done))
print("FLOOR", time.perf_counter() - t0)
"""


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = defaultdict(list)
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    children[int(f.read().rsplit(")", 1)[1].split()[1])].append(int(name))
            except (OSError, ValueError, IndexError):
                continue
    pids = [root]
    for pid in pids:
        pids.extend(children.get(pid, ()))
    return pids


def _memory(pids: list[int]) -> int:
    """Bytes the processes hold, every shared-memory page once (see the module docstring)."""
    private = 0
    shared: dict[str, int] = defaultdict(int)
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps") as f:
                inode, is_shmem = "", False
                for line in f:
                    first = line.split(maxsplit=6)
                    if "-" in first[0] and len(first) >= 5 and not first[0].endswith(":"):
                        inode = first[4]
                        is_shmem = len(first) > 5 and first[5].startswith(("/memfd:", "/dev/shm"))
                    elif first[0] == "Rss:" and is_shmem:
                        shared[inode] = max(shared[inode], int(first[1]) * 1024)
                    elif first[0] == "Pss:" and not is_shmem:
                        private += int(first[1]) * 1024
        except OSError:
            continue
    return private + sum(shared.values())


class _Peak:
    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _memory(_tree(self.pid)))


def _write_file(path: Path, mib: int) -> int:
    line = b"2026-12-07T10:00:00Z svc-042 GET /api/v1/items?page=7 200 12ms user=u-1234\n"
    block = line * ((1 << 20) // len(line) + 1)
    block = block[: (1 << 20) - 1] + b"\n"  # ends in a newline, as a log does
    with path.open("wb") as f:
        for _ in range(mib):
            f.write(block)
    return mib << 20


def _env(src: str | None) -> dict[str, str]:
    """This process's environment, with ``src`` (a checkout's ``src``) first on the path."""
    if src is None:
        return dict(os.environ)
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [src, *filter(None, [os.environ.get("PYTHONPATH")])])}


def _one(path: Path, mode: str, sandbox: str, src: str | None = None) -> dict[str, float]:
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(path), mode, sandbox],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(src))
    with _Peak(proc.pid) as memory:
        out, err = proc.communicate(timeout=600)
    lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{mode} run failed:\n{err[-3000:]}")
    result = json.loads(lines[-1][7:])
    return {"start_s": result["start_s"], "load_s": result["load_s"], "peak": memory.peak,
            "answer": float(result["answer"]), "total_s": result["total_s"]}


def _cli(path: Path, sandbox: str, home: Path, src: str | None = None) -> dict[str, float]:
    from fastrlm.testing import FakeOpenAIServer

    reply = "```repl\nFINAL(str(len(context)))\n```"
    limit = str(4 << 10)  # MiB: the defaults stop at 256 MiB
    with FakeOpenAIServer(default=reply) as server:
        env = {**_env(src), "OPENAI_API_KEY": "fake", "FASTRLM_HOME": str(home)}
        command = [sys.executable, "-m", "fastrlm", "ask", "How long is it?", "-c", str(path),
                   "-m", "openai/fake-model", "--base-url", server.base_url, "--sandbox",
                   sandbox, "--max-file-mb", limit, "--max-total-mb", limit, "-q"]
        started = time.time()
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env)
        with _Peak(proc.pid) as memory:
            out, err = proc.communicate(timeout=600)
        if proc.returncode != 0 or not server.completion_requests:
            raise SystemExit(f"cli run failed ({proc.returncode}):\n{err[-3000:]}")
        first = server.completion_requests[0].received_at - started
        total = time.time() - started
    return {"start_s": first, "load_s": 0.0, "peak": memory.peak, "answer": float(out.strip()),
            "total_s": total}


def _floor(path: Path) -> float:
    out = subprocess.run([sys.executable, "-c", FLOOR, str(path)], check=True,
                         capture_output=True, text=True, timeout=600).stdout
    return float(out.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sandbox", default="auto")
    parser.add_argument("--only", choices=("read", "shared", "cli"),
                        help="run one way only (to compare two checkouts, interleaved)")
    parser.add_argument("--against", metavar="OTHER/src",
                        help="another checkout's src directory: every mode runs with it too, "
                             "alternately with this one")
    args = parser.parse_args()
    if args.against is not None and not (Path(args.against) / "fastrlm").is_dir():
        parser.error(f"--against {args.against}: no fastrlm package there (give a checkout's "
                     "src directory)")
    checkouts: dict[str, str | None] = {"": None}
    if args.against is not None:
        checkouts = {"this": None, "against": str(Path(args.against).resolve())}
    modes = [mode for mode in ("read", "shared", "cli") if args.only in (None, mode)]
    with tempfile.TemporaryDirectory(prefix="fastrlm-file-context-") as tmp:
        path = Path(tmp) / "big.log"
        size = _write_file(path, args.mb)
        _floor(path)  # the first read of a file just written is slower: not measured
        runs: dict[tuple[str, str], list[dict[str, float]]] = {
            (name, mode): [] for mode in modes for name in checkouts}
        floors: list[float] = []
        for repeat in range(args.repeats):
            floors.append(_floor(path))
            order = list(checkouts.items())
            for name, src in order if repeat % 2 == 0 else reversed(order):
                for mode in modes:
                    run = (_cli(path, args.sandbox, Path(tmp) / "home", src) if mode == "cli"
                           else _one(path, mode, args.sandbox, src))
                    if run["answer"] != size:
                        raise SystemExit(f"{mode}: the model saw {run['answer']:.0f} characters")
                    runs[name, mode].append(run)
    print(f"a {args.mb:,} MiB ASCII file, sandbox {args.sandbox}, median of {args.repeats}:")
    floor = statistics.median(floors)
    for name, src in checkouts.items():
        if name:
            print(f" {name} ({src or 'the fastrlm this interpreter imports'}):")
        med = {mode: {k: statistics.median(r[k] for r in runs[name, mode])
                      for k in ("start_s", "load_s", "peak", "total_s")} for mode in modes}
        for mode, m in med.items():
            phases = ("(from the command's start)" if mode == "cli" else
                      f"(load_context {m['load_s']:5.2f} s, engine to first request "
                      f"{m['start_s'] - m['load_s']:5.2f} s)")
            print(f"  {mode:6s}  start {m['start_s']:6.2f} s {phases}   "
                  f"answered {m['total_s']:5.2f} s   peak memory {m['peak'] / size:4.2f}x the file")
        if "read" in med and "shared" in med:
            print(f"  shared / read: start {med['shared']['start_s'] / med['read']['start_s']:.2f}x"
                  f", peak memory {med['shared']['peak'] / med['read']['peak']:.2f}x")
        if "shared" in med:
            print(f"  shared start / floor {med['shared']['start_s'] / floor:.2f}x")
    print(f"  floor   the kernel's copy of the file into a memfd (sendfile) {floor:5.2f} s")


if __name__ == "__main__":
    main()
