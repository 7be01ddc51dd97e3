"""``fastrlm.batch`` and ``fastrlm batch`` on the local backend, against a real fake server:
the provider limit holds across jobs, the batch budget stops new jobs, provider errors are
retried, a failing job is an error line, and an interrupted batch resumes."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

import fastrlm
from fastrlm import Price, PriceTable
from fastrlm.cli import ExitCode, cli
from fastrlm.context import LoadLimits
from fastrlm.events import RunStarted
from fastrlm.jobs import JobResult
from fastrlm.testing import ScriptedLM
from fastrlm.testing._fake_server import FakeRequest, Fault, Reply

from .helpers import AT_ONCE, MODEL, PRICE, collect_batch, jobs, rlm, server, tag_of, worst_case

#: Input tokens only: a call's worst case is what it sends (about a dollar a root turn), so a
#: job capped by what is left of the batch budget can still make its calls.
PRICES = PriceTable({MODEL: Price(1000.0, 0.0)})


async def collect(**kwargs: object) -> tuple[list[JobResult], fastrlm.jobs.BatchSummary]:
    return await collect_batch(**kwargs)


async def test_the_provider_limit_holds_across_jobs_and_is_reached() -> None:
    with server(hold_until_in_flight=4) as srv:
        results, summary = await collect(jobs=jobs(24), base_url=srv.base_url,
                                         max_concurrent_runs=12, provider_concurrency=4)
    assert sorted(r.answer for r in results) == sorted(f"answer:j{i}:4" for i in range(24))
    assert srv.max_in_flight == 4  # the server's own count: never more, and reached
    assert summary.peak_slots == {"openai": 4} and summary.done == 24


async def test_the_batch_budget_stops_new_jobs_and_caps_the_last() -> None:
    with server() as srv:
        results, summary = await collect(jobs=jobs(40), base_url=srv.base_url,
                                         max_concurrent_runs=2, max_usd=12.0, prices=PRICES)
        roots = [r for r in srv.completion_requests if r.is_root]
        asked = {tag_of(r) for r in roots}
    spent = sum(r.cost_usd for r in results)
    assert summary.budget_exhausted and summary.not_started > 0
    assert len(results) + summary.not_started == 40
    assert summary.spent_usd == pytest.approx(spent)
    # each job's max_usd is capped by what was left, so the total holds here; jobs start until
    # what is left no longer covers one job's worst case (its prompt bytes at the input price)
    assert 12.0 - 1.5 * worst_case(roots[0]) < spent <= 12.0
    assert asked == {r.id for r in results}  # the jobs not started sent nothing


async def test_a_provider_error_is_retried_then_reported() -> None:
    failures = {"flaky": 1, "broken": 99}

    def special(request: FakeRequest, tag: str) -> Reply | None:
        if failures.get(tag, 0) > 0:
            failures[tag] -= 1
            return Fault.http_status(400, "bad request")
        return None

    job_list = [{"id": t, "question": f"Q#{t}#", "context": "x"} for t in ("flaky", "broken")]
    with server(special) as srv:
        results, summary = await collect(jobs=job_list, base_url=srv.base_url, retries=2)
    by_id = {r.id: r for r in results}
    assert by_id["flaky"].ok and by_id["flaky"].attempts == 2
    assert by_id["broken"].error_kind == "provider" and by_id["broken"].attempts == 3
    assert summary.retried == 3 and summary.failed == 1


async def test_a_job_that_cannot_run_is_an_error_line(tmp_path: Path) -> None:
    job_list = [{"id": "gone", "question": "Q#gone#", "context_path": str(tmp_path / "no")},
                {"id": "fine", "question": "Q#fine#", "context": "x"},
                {"id": "badmodel", "question": "Q#b#", "context": "x", "model": "nope/x"}]
    with server() as srv:
        results, summary = await collect(jobs=job_list, base_url=srv.base_url)
    by_id = {r.id: r for r in results}
    assert by_id["gone"].error_kind == "context" and "no such file" in str(by_id["gone"].error)
    assert by_id["badmodel"].error_kind == "config"
    assert by_id["fine"].answer == "answer:fine:4"
    assert (summary.done, summary.failed) == (1, 2)


async def test_a_context_path_is_loaded_under_the_batchs_load_limits(tmp_path: Path) -> None:
    """context_path goes through the one loader: a FIFO is skipped, not waited on, and a file
    past the batch's limit is the job's error naming the limit."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("abcd")
    os.mkfifo(tmp_path / "docs" / "pipe")
    (tmp_path / "big.txt").write_text("x" * 100)
    job_list = [{"id": "dir", "question": "Q#dir#", "context_path": str(tmp_path / "docs")},
                {"id": "big", "question": "Q#big#", "context_path": str(tmp_path / "big.txt")}]
    with server() as srv:
        results, _ = await collect_batch(jobs=job_list, base_url=srv.base_url,
                                         load_limits=LoadLimits(max_file_bytes=50))
    by_id = {r.id: r for r in results}
    assert by_id["dir"].error is None and by_id["dir"].answer is not None
    assert by_id["big"].error_kind == "context"
    assert "100 bytes, over the limit of 50 bytes a file" in str(by_id["big"].error)
    assert "--max-file-mb" in str(by_id["big"].error)


async def test_a_schema_job_gets_its_json_or_a_schema_error() -> None:
    def special(request: FakeRequest, tag: str) -> Reply | None:
        text = '{"fee": 5}' if tag == "good" else "five"
        return f"```repl\nFINAL({text!r})\n```"

    schema = {"type": "object", "required": ["fee"]}
    job_list = [{"id": t, "question": f"Q#{t}#", "context": "x", "schema": schema}
                for t in ("good", "bad")]
    with server(special) as srv:
        results, _ = await collect(jobs=job_list, base_url=srv.base_url)
        assert "JSON schema" in srv.completion_requests[0].messages[-1]["content"]
    by_id = {r.id: r for r in results}
    assert by_id["good"].output == {"fee": 5}
    assert by_id["bad"].error_kind == "schema" and by_id["bad"].answer == "five"


async def test_breaking_out_cancels_running_jobs_and_skip_resumes() -> None:
    with server() as srv:
        first = fastrlm.batch(jobs(12), rlm(base_url=srv.base_url), max_concurrent_runs=3)
        got = []
        async for result in first:
            got.append(result)
            if len(got) == 4:
                break
        await first.aclose()
        assert first.summary.cancelled
        rest, _ = await collect(jobs=jobs(12), base_url=srv.base_url,
                                skip=[r.id for r in got])
    assert sorted(r.id for r in got + rest) == sorted(f"j{i}" for i in range(12))


def test_bad_batch_arguments_are_refused() -> None:
    with pytest.raises(fastrlm.ConfigurationError, match="backend must be one of"):
        fastrlm.batch([], rlm(), backend="spark")
    with pytest.raises(fastrlm.ConfigurationError, match="no price is known for openai/fake"):
        fastrlm.batch(jobs(1), rlm(), max_usd=1.0)
    with pytest.raises(fastrlm.ConfigurationError, match="provider_concurrency for openai"):
        fastrlm.batch([], rlm(), provider_concurrency={"openai": 0})


@pytest.mark.parametrize(("argument", "value", "range_"), [
    ("max_concurrent_runs", 10**9, "<= 4096"),
    ("provider_concurrency", 10**9, "<= 4096"),
    ("retries", 10**6, "<= 100"),
    ("worker_retries", 10**6, "<= 100"),
    ("lease_s", math.nan, "> 0"),
    ("lease_s", 1e12, "<= 86400"),
    ("cpus_per_job", 0, "> 0"),
    ("max_usd", 1e18, "<= 1000000"),
])
def test_huge_or_meaningless_batch_arguments_are_refused_naming_the_range(
    argument: str, value: object, range_: str,
) -> None:
    # concurrency=10**9 and lease_s=nan were accepted; the bounds live in _validate.BATCH_RULES.
    with pytest.raises(fastrlm.InvalidSettingError, match=rf"^{argument}.* must be .*{range_}"):
        fastrlm.batch([], rlm(), **{argument: value})  # type: ignore[arg-type]


def write_jobs(path: Path, items: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    return path


def test_the_cli_writes_one_line_per_job_and_resumes(tmp_path: Path) -> None:
    jobs_file = write_jobs(tmp_path / "jobs.jsonl", jobs(5))
    out = tmp_path / "results.jsonl"
    with server() as srv:
        args = ["batch", str(jobs_file), "--out", str(out), "-m", MODEL, "--base-url",
                srv.base_url, "--sandbox", "none", "--no-trace", "--price", PRICE]
        first = CliRunner().invoke(cli, args, catch_exceptions=False)
        assert first.exit_code == ExitCode.OK, first.stderr
        assert "batch: 5 answered · 0 failed" in first.stderr
        sent = len(srv.completion_requests)
        again = CliRunner().invoke(cli, args, catch_exceptions=False)
        assert again.exit_code == ExitCode.OK and "5 already done" in again.stderr
        assert len(srv.completion_requests) == sent  # nothing re-run
        # room for one job's worst case: it runs (spending a fraction of that), then what is
        # left covers no other job
        room = 1.2 * worst_case(next(r for r in srv.completion_requests if r.is_root))
        limited = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "r2.jsonl"),
                                           "--max-usd", f"{room:.4f}",
                                           "--max-concurrent-runs", "1"],
                                     catch_exceptions=False)
        assert limited.exit_code == ExitCode.LIMIT, limited.stderr
        assert "--max-usd reached: 4 job(s) not started" in limited.stderr
        assert len((tmp_path / "r2.jsonl").read_text().splitlines()) == 1
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(line["id"] for line in lines) == [f"j{i}" for i in range(5)]
    assert all(line["answer"].startswith("answer:j") for line in lines)


def test_the_batch_total_has_its_own_flag_and_max_usd_is_its_deprecated_spelling(
    tmp_path: Path,
) -> None:
    jobs_file = write_jobs(tmp_path / "jobs.jsonl", jobs(3))
    with server() as srv:
        args = ["batch", str(jobs_file), "-m", MODEL, "--base-url", srv.base_url, "--sandbox",
                "none", "--no-trace", "--price", PRICE, "--max-concurrent-runs", "1"]
        probe = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "r0.jsonl")],
                                   catch_exceptions=False)
        assert probe.exit_code == ExitCode.OK, probe.stderr
        room = 1.2 * worst_case(next(r for r in srv.completion_requests if r.is_root))
        total = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "r1.jsonl"),
                                         "--batch-max-usd", f"{room:.4f}"],
                                   catch_exceptions=False)
        assert total.exit_code == ExitCode.LIMIT, total.stderr
        assert "--batch-max-usd reached: 2 job(s) not started" in total.stderr
        assert "deprecated" not in total.stderr
        old = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "r2.jsonl"),
                                       "--max-usd", f"{room:.4f}"], catch_exceptions=False)
        assert old.exit_code == ExitCode.LIMIT, old.stderr  # the old meaning, this release
        assert "deprecated: write --batch-max-usd" in old.stderr
        both = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "r3.jsonl"),
                                        "--max-usd", "1", "--batch-max-usd", "1"],
                                  catch_exceptions=False)
        assert both.exit_code == ExitCode.BAD_INPUT
        assert "give the batch total once: --batch-max-usd" in both.stderr
    assert not (tmp_path / "r3.jsonl").exists()


def test_batch_max_usd_wins_over_a_max_usd_setting_meant_for_ask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = tmp_path / "config.toml"
    config.write_text("max_usd = 0.000001\n")  # a per-run cap for ask: not this batch's total
    monkeypatch.setenv("FASTRLM_CONFIG", str(config))
    jobs_file = write_jobs(tmp_path / "jobs.jsonl", jobs(2))
    with server() as srv:
        args = ["batch", str(jobs_file), "--out", str(tmp_path / "r.jsonl"), "-m", MODEL,
                "--base-url", srv.base_url, "--sandbox", "none", "--no-trace", "--price", PRICE]
        result = CliRunner().invoke(cli, [*args, "--batch-max-usd", "1000"],
                                    catch_exceptions=False)
        assert result.exit_code == ExitCode.OK, result.stderr
        assert "2 answered" in result.stderr and "deprecated" not in result.stderr
        old = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "r2.jsonl")],
                                 catch_exceptions=False)
        assert "the max_usd setting (1e-06) is taken as the whole batch's total" in old.stderr


async def test_a_batch_runs_every_job_with_the_settings_of_one_rlm() -> None:
    seen: list[fastrlm.Event] = []
    with server() as srv:
        results, summary = await collect_batch(jobs=jobs(3), base_url=srv.base_url,
                                               on_event=seen.append)
    assert summary.done == 3 and all(r.ok for r in results)
    started = [e for e in seen if isinstance(e, RunStarted)]
    assert len(started) == 3  # the RLM's on_event heard every job: its settings reach them


async def test_a_batch_runs_on_an_rlm_built_from_an_lm_object() -> None:
    # the keyword form took model strings only; one RLM can hold any LM (a fake, a custom one)
    lm = ScriptedLM(lambda messages: '```repl\nFINAL("seen " + str(len(context)))\n```')
    batch_rlm = fastrlm.RLM(lm, sandbox="none", trace=False)
    results = [r async for r in fastrlm.batch(jobs(2), batch_rlm, provider_concurrency=1)]
    assert sorted(r.answer for r in results) == ["seen 50", "seen 50"]
    assert len(lm.calls) == 2


async def test_the_keyword_form_of_batch_still_runs_with_a_deprecation_warning() -> None:
    with server() as srv:
        with pytest.warns(DeprecationWarning, match=r"batch\(jobs, rlm=RLM\("):
            run = fastrlm.batch(jobs(2), model=MODEL, base_url=srv.base_url, sandbox="none",
                                trace=False)
        results = [result async for result in run]
    assert sorted(r.answer for r in results) == ["answer:j0:4", "answer:j1:4"]


def test_an_rlm_and_its_settings_as_keywords_are_refused_together() -> None:
    with pytest.raises(fastrlm.ConfigurationError, match="give those to RLM"):
        fastrlm.batch(jobs(1), rlm(), model=MODEL, trace=False)
    with pytest.raises(fastrlm.ConfigurationError, match=r"needs rlm=RLM"):
        fastrlm.batch(jobs(1))


def test_the_cli_explains_a_bad_jobs_file(tmp_path: Path) -> None:
    jobs_file = tmp_path / "jobs.jsonl"
    jobs_file.write_text('{"question": "q"}\n')
    result = CliRunner().invoke(cli, ["batch", str(jobs_file), "--out", str(tmp_path / "o"),
                                      "-m", MODEL], catch_exceptions=False)
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "jobs.jsonl:1" in result.stderr and "give exactly one of 'context'" in result.stderr
    bad = CliRunner().invoke(cli, ["batch", str(jobs_file), "--out", "o", "-m", MODEL,
                                   "--provider-concurrency", "openai=0"])
    assert bad.exit_code == 2 and "PROVIDER=N with N >= 1" in bad.stderr


def test_ctrl_c_leaves_a_valid_results_file_and_a_rerun_finishes(tmp_path: Path) -> None:
    release = threading.Event()

    def special(request: FakeRequest, tag: str) -> Reply | None:
        if tag.startswith("slow") and not release.is_set():
            release.wait(60)  # held until the test lets go (or the server closes)
        return None

    items = jobs(3, "fast") + jobs(2, "slow")
    jobs_file = write_jobs(tmp_path / "jobs.jsonl", items)
    out = tmp_path / "results.jsonl"

    def interrupt_when_the_fast_jobs_are_written() -> None:
        # the CLI's SIGINT handler is installed while it writes lines, so this is its Ctrl-C
        if _wait_for_lines(out, 3):
            os.kill(os.getpid(), signal.SIGINT)

    with server(special) as srv:
        args = ["batch", str(jobs_file), "--out", str(out), "-m", MODEL, "--base-url",
                srv.base_url, "--sandbox", "none", "--no-trace", "--max-concurrent-runs", "5"]
        thread = threading.Thread(target=interrupt_when_the_fast_jobs_are_written, daemon=True)
        thread.start()
        first = CliRunner().invoke(cli, args, catch_exceptions=False)
        thread.join(60)
        assert first.exit_code == ExitCode.CANCELLED, first.stderr
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        assert sorted(line["id"] for line in lines if line["stop_reason"] == "final") == [
            "fast0", "fast1", "fast2"]
        # the jobs cut short leave a record of what they spent (nothing yet: no price)
        cut = sorted((line["id"], line["error_kind"], line["cost_usd"]) for line in lines
                     if line["stop_reason"] == "cancelled")
        assert cut == [("slow0", "cancelled", 0.0), ("slow1", "cancelled", 0.0)]
        release.set()
        again = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert again.exit_code == ExitCode.OK, again.stderr
    assert "2 answered · 0 failed · 3 already done" in again.stderr
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()
           if json.loads(line)["stop_reason"] == "final"]
    assert sorted(ids) == sorted(item["id"] for item in items)


def _wait_for_lines(path: Path, n: int) -> bool:
    """Wait (up to a minute) until ``path`` has ``n`` lines."""
    stop = threading.Event()
    for _ in range(1200):
        if path.exists() and len(path.read_text().splitlines()) >= n:
            return True
        stop.wait(0.05)
    return False


async def test_the_ray_backend_without_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    run = fastrlm.batch(jobs(1), rlm(), backend="ray")
    with pytest.raises(fastrlm.MissingExtraError, match=r"pip install 'fastrlm\[ray\]'"):
        async with run:
            async for _ in run:
                pass


def test_the_progress_line_says_done_failed_running_spend_and_eta() -> None:
    from fastrlm.cli._batch import progress_line, summary_line
    from fastrlm.jobs import BatchSummary

    summary = BatchSummary(total=10, skipped=2, done=3, failed=1, running=2, spent_usd=0.25,
                           lost_usd=0.05, retried=1, not_started=0)
    line = progress_line(summary, 1.0)
    assert line.startswith("batch: 4/8 done · 1 failed · 2 running · $0.2500 of $1.00 · ETA ")
    end = summary_line(summary, Path("r.jsonl"))
    assert "3 answered · 1 failed · 2 already done · 1 retried" in end
    assert "~$0.0500 estimated for runs lost with their worker" in end
    assert BatchSummary(total=3).eta_s() is None  # nothing finished yet: no guess


async def test_concurrency_is_the_old_name_of_max_concurrent_runs() -> None:
    with server() as srv:
        batch_rlm = rlm(base_url=srv.base_url)
        with pytest.warns(DeprecationWarning, match="max_concurrent_runs"):
            run = fastrlm.batch(jobs(3), batch_rlm, concurrency=2)
        results = [result async for result in run]
        await batch_rlm.aclose()
    assert len(results) == 3 and run.summary.done == 3


def test_the_batch_command_takes_the_old_concurrency_flag_with_a_note(tmp_path: Path) -> None:
    path = tmp_path / "jobs.jsonl"
    path.write_text("".join(json.dumps(j) + "\n" for j in jobs(2)))
    with server() as srv:
        base = ["batch", str(path), "--out", str(tmp_path / "r.jsonl"), "-m", MODEL,
                "--base-url", srv.base_url, "--sandbox", "none", "--no-trace"]
        old = CliRunner().invoke(cli, [*base, "--concurrency", "2"])
        both = CliRunner().invoke(cli, [*base, "--concurrency", "2", "--max-concurrent-runs", "2"])
    assert old.exit_code == 0, old.output
    assert "--concurrency is deprecated: use --max-concurrent-runs" in old.stderr
    assert both.exit_code == ExitCode.BAD_INPUT and "give only --max-concurrent-runs" in both.output


class _UserLM(ScriptedLM):
    """A user's own LM (registered as a provider) whose ``complete`` raises plain exceptions."""


async def test_a_user_lm_raising_plain_exceptions_fails_only_its_own_job_and_sub_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One ValueError from a user's LM in a sub-call used to fail every prompt of the job's
    # llm_query_batched; a RuntimeError at a root now ends that job as a provider error.
    from fastrlm.lm import Preset, Resolved, _registry

    code = '```repl\nFINAL(repr(llm_query_batched(["a", "bad", "c"])))\n```'

    def answer(messages: list[dict[str, str]]) -> str | BaseException:
        text = messages[-1]["content"]
        if len(messages) > 1:  # a root turn
            if "Q#broken#" in messages[1]["content"]:
                return RuntimeError("my client is down")
            return code
        return ValueError("cannot parse") if text == "bad" else f"ok:{text}"

    def factory(r: Resolved) -> _UserLM:
        return _UserLM(answer, model=r.model)

    for table in ("_presets", "_factories", "_sources"):
        monkeypatch.setattr(_registry, table, dict(getattr(_registry, table)))
    _registry.register_provider(Preset("mine", "mine-api", None), factory)
    items = [*jobs(2), {"id": "broken", "question": "Q#broken#", "context": "x"}]
    user_rlm = fastrlm.RLM("mine/m", sandbox="none")
    run = fastrlm.batch(items, user_rlm)
    results = {r.id: r async for r in run}
    await user_rlm.aclose()
    for ok in ("j0", "j1"):
        replies = eval(results[ok].answer)  # noqa: S307 - the model's own repr
        assert replies[0] == "ok:a" and replies[2] == "ok:c", replies
        assert replies[1].startswith("[error: subcall_failed: ProviderError: mine/m: the LM "
                                     "object raised ValueError: cannot parse")
    broken = results["broken"]
    assert broken.error_kind == "provider" and "RuntimeError: my client is down" in str(
        broken.error)
    assert run.summary.done == 2 and run.summary.failed == 1


async def test_an_on_progress_callback_that_raises_does_not_stop_the_batch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A user's progress callback raising went up through the driver and cancelled every job.
    calls: list[int] = []

    def broken(summary: fastrlm.jobs.BatchSummary) -> None:
        calls.append(summary.done)
        raise RuntimeError("display gone")

    with server() as srv:
        results, summary = await collect(jobs=jobs(4), base_url=srv.base_url,
                                         on_progress=broken)
    assert sorted(r.id for r in results) == [f"j{i}" for i in range(4)]
    assert summary.done == 4 and not summary.cancelled and calls
    assert any("on_progress callback" in r.getMessage() for r in caplog.records)


#: Root turn 1 makes a sub-call (metered); turn 2 is held until the batch is interrupted.
SPENDS_THEN_HANGS = '```repl\nnote = llm_query("part")\nprint(note)\n```'


async def test_jobs_running_at_an_interrupt_leave_a_record_of_what_they_spent() -> None:
    release = threading.Event()
    # both jobs held at their second root turn: each has spent (turn 1 and its sub-call)
    turn_two = threading.Barrier(3)

    def special(request: FakeRequest, tag: str) -> Reply | None:
        if not tag.startswith("slow"):
            return None
        if len(request.messages) > 2:  # its second root turn: hold it
            turn_two.wait(60)
            release.wait(60)
        return SPENDS_THEN_HANGS

    items = [{**job, "label": "L" + job["id"]} for job in jobs(2, "slow")]
    with server(special) as srv:
        run = fastrlm.batch(items, rlm(base_url=srv.base_url, prices=PRICES),
                            max_concurrent_runs=2)
        consumer = asyncio.ensure_future(_drain(run))
        await asyncio.to_thread(turn_two.wait, 60)
        consumer.cancel()  # what Ctrl-C does to the CLI's task
        with pytest.raises(asyncio.CancelledError):
            await consumer
        release.set()
    records = sorted(run.interrupted, key=lambda r: r.id)
    assert [r.id for r in records] == ["slow0", "slow1"]
    assert all(r.stop_reason == "cancelled" and r.error_kind == "cancelled" for r in records)
    assert all(r.cost_usd > 0 and r.attempts == 1 for r in records)  # turn 1 and its sub-call
    assert records[0].metadata == {"label": "Lslow0"}
    assert run.summary.cancelled
    assert run.summary.spent_usd == pytest.approx(sum(r.cost_usd for r in records))


async def _drain(run: fastrlm.jobs.Batch) -> list[JobResult]:
    return [result async for result in run]


async def test_a_job_lines_own_keys_come_back_in_its_result_line(tmp_path: Path) -> None:
    items = [{**job, "expected": "answer:" + job["id"], "label": i}
             for i, job in enumerate(jobs(2, "m"))]
    items[1]["metadata"] = {"source": "set-b"}
    with server(lambda request, tag: AT_ONCE.replace("TAG", repr(tag))) as srv:
        results, _ = await collect(jobs=items, base_url=srv.base_url)
        sent = json.dumps([r.body for r in srv.completion_requests])
    by_id = {r.id: r for r in results}
    assert by_id["m0"].metadata == {"expected": "answer:m0", "label": 0}
    assert by_id["m1"].metadata == {"source": "set-b", "expected": "answer:m1", "label": 1}
    assert by_id["m0"].to_dict()["metadata"] == {"expected": "answer:m0", "label": 0}
    assert "set-b" not in sent and "expected" not in sent  # never shown to the model
    assert "metadata" not in JobResult("x").to_dict()  # no key when a line has none
