"""The Ray backend on a local Ray (one per module: ``ray.init(num_cpus=2)``), against a fake
server on 127.0.0.1: the provider limit holds across every worker (the server's own count), the
batch budget stops new jobs, a worker killed mid-job has its job re-run and settled once, an
interrupted batch resumes, and the result set is the local backend's."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import fastrlm
from fastrlm import Price, PriceTable
from fastrlm.jobs import BatchSummary, JobResult
from fastrlm.testing._fake_server import FakeRequest, Reply

from .helpers import AT_ONCE, MODEL, WIDE, collect_batch, jobs, rlm, server, tag_of, worst_case

ray = pytest.importorskip("ray", reason="the Ray backend needs ray: pip install 'fastrlm[ray]'")

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

PRICES = PriceTable({MODEL: Price(1000.0, 0.0)})  # input only: see test_batch_local
#: One job per CPU of the test cluster: the two workers Ray starts with (each worker that
#: starts later costs seconds of imports on a loaded machine).
RAY = {"backend": "ray", "cpus_per_job": 1.0, "max_concurrent_runs": 2}


@pytest.fixture(scope="module", autouse=True)
def local_ray(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "FASTRLM_HOME", "RAY_ADDRESS")}
    # the workers import this checkout's fastrlm and write nothing to the user's home
    os.environ["PYTHONPATH"] = str(Path(fastrlm.__file__).parent.parent)
    os.environ["FASTRLM_HOME"] = str(tmp_path_factory.mktemp("ray-home"))
    os.environ.pop("RAY_ADDRESS", None)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    assert not _ray_children(), "ray processes left behind"


def _ray_children() -> list[str]:
    """Live processes whose parent is this one and whose command line mentions ray."""
    me, found = str(os.getpid()), []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            # any process's name and arguments may hold bytes that are not UTF-8
            stat = Path(f"/proc/{pid}/stat").read_bytes().decode(errors="replace")
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[1] == me and fields[0] != "Z" and "ray" in cmd:
            found.append(cmd)
    return found


async def collect(**kwargs: object) -> tuple[list[JobResult], BatchSummary]:
    return await collect_batch(**kwargs)


class HoldSubcalls:
    """Sub-calls wait until ``n`` of them are in flight at once (once; then none waits), so a
    limit of ``n`` is shown to be reached, not just respected."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.inside = 0
        self.reached = False
        self._cond = threading.Condition()

    def __call__(self, request: FakeRequest, tag: str) -> Reply | None:
        """Two jobs in ten (run side by side, on the two workers) fan out wide; the others
        answer at once (a fast 200)."""
        code = WIDE if int(tag[1:]) % 10 < 2 else AT_ONCE
        return code.replace("TAG", repr(tag))

    def sub(self) -> None:
        with self._cond:
            self.inside += 1
            if self.inside >= self.n:
                self.reached = True
                self._cond.notify_all()
            self._cond.wait_for(lambda: self.reached, timeout=30)
            self.inside -= 1


async def test_200_jobs_never_pass_the_provider_limit_across_workers() -> None:
    hold = HoldSubcalls(8)
    with server(hold, on_sub=hold.sub) as srv:
        results, summary = await collect(jobs=jobs(200), base_url=srv.base_url,
                                         provider_concurrency=8, prices=PRICES, **RAY)
        assert hold.reached
        assert srv.max_in_flight == 8  # the server's own count, over every worker
        local, _ = await collect(jobs=jobs(30), base_url=srv.base_url, prices=PRICES,
                                 provider_concurrency=8)
    assert summary.done == 200 and summary.peak_slots == {"openai": 8}
    assert sorted(r.answer for r in results) == sorted(
        f"answer:j{i}:12" if i % 10 < 2 else f"answer:j{i}" for i in range(200))
    same = {r.id: (r.answer, r.stop_reason, r.iterations, r.subcalls, round(r.cost_usd, 9))
            for r in results if r.id in {x.id for x in local}}
    assert same == {r.id: (r.answer, r.stop_reason, r.iterations, r.subcalls, round(r.cost_usd, 9))
                    for r in local}


async def test_the_batch_budget_stops_new_jobs_on_ray() -> None:
    with server() as srv:
        results, summary = await collect(jobs=jobs(40), base_url=srv.base_url, max_usd=12.0,
                                         prices=PRICES, **RAY)
        roots = [r for r in srv.completion_requests if r.is_root]
        asked = {tag_of(r) for r in roots}
    spent = sum(r.cost_usd for r in results)
    assert summary.budget_exhausted and summary.not_started > 0
    assert len(results) + summary.not_started == 40
    assert 12.0 - 1.5 * worst_case(roots[0]) < spent <= 12.0
    assert summary.spent_usd == pytest.approx(spent)
    assert asked == {r.id for r in results}


VICTIM = """```repl
import os, time
marker = MARKER
if os.path.exists(marker):
    FINAL("survived")
else:
    with open(marker + ".tmp", "w") as fh:
        fh.write(str(os.getpid()))
    os.rename(marker + ".tmp", marker)
    while True:
        time.sleep(0.05)
```"""


async def test_a_killed_worker_reruns_its_job_which_is_settled_once(tmp_path: Path) -> None:
    marker = tmp_path / "victim.pid"
    code = VICTIM.replace("MARKER", repr(str(marker)))

    def special(request: FakeRequest, tag: str) -> Reply | None:
        return code if tag == "victim" else None

    def killer() -> None:
        for _ in range(2400):  # up to two minutes for the job to start
            if marker.exists():
                os.kill(int(marker.read_text()), signal.SIGKILL)
                return
            stop.wait(0.05)

    stop = threading.Event()
    job_list = [{"id": "victim", "question": "Q#victim#", "context": "x"}, *jobs(3)]
    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    with server(special) as srv:
        results, summary = await collect(jobs=job_list, base_url=srv.base_url, prices=PRICES,
                                         worker_retries=2, max_usd=100.0, **RAY)
        victim_turns = [r for r in srv.completion_requests if r.is_root and tag_of(r) == "victim"]
    stop.set()
    thread.join(10)
    victim = [r for r in results if r.id == "victim"]
    assert len(victim) == 1 and victim[0].answer == "survived"  # re-run, and written once
    assert victim[0].attempts == 2  # the run its worker died in counts
    assert {r.attempts for r in results if r.id != "victim"} == {1}
    assert len(victim_turns) == 2  # one root turn per attempt
    assert victim[0].lost_usd > 0 and summary.lost_usd == pytest.approx(victim[0].lost_usd)
    # the lost attempt is counted once, as an estimate; the kept one from its own ledger
    assert summary.spent_usd == pytest.approx(sum(r.cost_usd for r in results) + summary.lost_usd)
    assert victim[0].cost_usd == pytest.approx(victim[0].lost_usd, rel=0.2)
    assert summary.done == 4


async def test_an_interrupted_ray_batch_resumes_without_repeats() -> None:
    def at_once(request: FakeRequest, tag: str) -> Reply:
        return AT_ONCE.replace("TAG", repr(tag))

    with server(at_once) as srv:
        first = fastrlm.batch(jobs(16), rlm(base_url=srv.base_url), **RAY)  # type: ignore[arg-type]
        got = []
        async for result in first:
            got.append(result)
            if len(got) == 5:
                break
        await first.aclose()
        assert first.summary.cancelled
        # each job running at the interrupt left a record; none of them is a finished one
        assert all(r.stop_reason == "cancelled" for r in first.interrupted)
        assert not {r.id for r in first.interrupted} & {r.id for r in got}
        rest, _ = await collect(jobs=jobs(16), base_url=srv.base_url,
                                skip=[r.id for r in got], **RAY)
    assert sorted(r.id for r in got + rest) == sorted(f"j{i}" for i in range(16))


def test_bench_on_ray_writes_what_the_local_runner_writes(tmp_path: Path) -> None:
    import asyncio

    from fastrlm.bench import BenchConfig, run_bench

    def config(name: str, backend: str) -> BenchConfig:
        return BenchConfig(task="sniah", methods=("rlm", "base"), lengths=(2048,), n=2,
                           scripted=True, sandbox="none", out=tmp_path / name, progress=False,
                           concurrency=2, backend=backend, seed=0)

    def key(rec: dict[str, object]) -> tuple[object, ...]:
        return (rec["method"], rec["length"], rec["index"])

    on_ray = asyncio.run(run_bench(config("ray", "ray")))
    local = asyncio.run(run_bench(config("local", "local")))
    assert len(on_ray) == 4
    assert {key(r): (r["score"], r["answer"], r["stop_reason"]) for r in on_ray} == {
        key(r): (r["score"], r["answer"], r["stop_reason"]) for r in local}
    assert len(asyncio.run(run_bench(config("ray", "ray")))) == 4  # resumed: nothing re-run


def test_the_cli_runs_a_batch_on_ray(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from fastrlm.cli import ExitCode, cli

    jobs_file = tmp_path / "jobs.jsonl"
    jobs_file.write_text("".join(json.dumps(job) + "\n" for job in jobs(6)))
    out = tmp_path / "results.jsonl"

    def at_once(request: FakeRequest, tag: str) -> Reply:
        return AT_ONCE.replace("TAG", repr(tag))

    with server(at_once) as srv:
        result = CliRunner().invoke(cli, [
            "batch", str(jobs_file), "--out", str(out), "-m", MODEL, "--base-url", srv.base_url,
            "--sandbox", "none", "--no-trace", "--backend", "ray", "--max-concurrent-runs", "2",
            "--provider-concurrency", "openai=2"], catch_exceptions=False)
        assert srv.max_in_flight <= 2
    assert result.exit_code == ExitCode.OK, result.stderr
    assert "batch: 6 answered · 0 failed" in result.stderr
    answers = sorted(json.loads(line)["answer"] for line in out.read_text().splitlines())
    assert answers == sorted(f"answer:j{i}" for i in range(6))


async def test_jobs_running_on_ray_at_an_interrupt_leave_a_record_of_what_they_spent() -> None:
    release, turn_two = threading.Event(), threading.Event()
    spends_then_hangs = '```repl\nnote = llm_query("part")\nprint(note)\n```'

    def special(request: FakeRequest, tag: str) -> Reply | None:
        if len(request.messages) > 2:  # a job's second root turn: hold it
            turn_two.set()
            release.wait(60)
        return spends_then_hangs

    with server(special) as srv:
        run = fastrlm.batch(jobs(1, "slow"), rlm(base_url=srv.base_url, prices=PRICES),
                            **RAY)  # type: ignore[arg-type]
        consumer = asyncio.ensure_future(_drain(run))
        await asyncio.to_thread(turn_two.wait, 120)
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        release.set()
    [record] = run.interrupted
    assert record.id == "slow0" and record.stop_reason == "cancelled"
    assert record.cost_usd > 0 and run.summary.spent_usd == pytest.approx(record.cost_usd)


async def _drain(run: fastrlm.jobs.Batch) -> list[JobResult]:
    return [result async for result in run]
