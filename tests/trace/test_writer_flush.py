"""The trace writer's flushing: a fan-out's sub-call events are flushed in batches (one system
call per batch, not per event) and still reach the file soon after, with or without a loop.
While a loop runs, a run's file is made on the trace's I/O thread: these tests wait for it
(``settled``, which waits for the run's first row, made after the file) before they look."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from fastrlm.events import RunStarted, SubcallFinished, SubcallStarted
from fastrlm.trace import TraceWriter
from fastrlm.trace._writer import FLUSH_DELAY_S


def _start(run: str = "r") -> RunStarted:
    return RunStarted(run_id=run, parent_run_id=None, question="q", model="m", sub_model="s",
                      context={"sha256": "0" * 64, "shape": ["a", "b"]}, sandbox="none",
                      budget={})


def _sub(i: int, run: str = "r") -> SubcallStarted:
    return SubcallStarted(run_id=run, call_id=f"c{i}", model="s", prompt_chars=1,
                          prompt_sha256="x", prompt_preview="p")


def _types_on_disk(path: Path) -> list[str]:
    return [json.loads(line)["type"] for line in path.read_text().splitlines()]


def test_other_events_are_on_disk_as_soon_as_they_are_written(tmp_path: Path) -> None:
    writer = TraceWriter(tmp_path)

    async def run() -> list[str]:
        writer(_start())
        await writer.settled("r")
        return _types_on_disk(writer.path_for("r"))

    assert asyncio.run(run()) == ["run.started"]


def test_sub_call_events_reach_the_file_within_the_delay_with_no_event_after_them(
    tmp_path: Path,
) -> None:
    writer = TraceWriter(tmp_path)

    async def run() -> tuple[list[str], list[str]]:
        writer(_start())
        await writer.settled("r")
        for i in range(3):
            writer(_sub(i))
        at_once = _types_on_disk(writer.path_for("r"))
        # the loop's timers run in deadline order: the writer's flush comes before this wakes
        await asyncio.sleep(FLUSH_DELAY_S * 2)
        return at_once, _types_on_disk(writer.path_for("r"))

    at_once, later = asyncio.run(run())
    assert at_once == ["run.started"]  # batched: no system call per sub-call event
    assert later == ["run.started"] + ["subcall.started"] * 3


def test_an_event_that_is_not_batched_writes_out_the_batch_before_it(tmp_path: Path) -> None:
    writer = TraceWriter(tmp_path)
    finished = SubcallFinished(run_id="r", call_id="c0", model="s", input_tokens=1,
                               output_tokens=1, cost_usd=0.0, latency_s=0.0, cached=False,
                               error=None, response_chars=1, response_preview="a")

    async def run() -> list[str]:
        writer(_start())
        await writer.settled("r")
        writer(_sub(0))
        writer(finished)
        writer(_start("other"))  # another run's start flushes every open trace
        return _types_on_disk(writer.path_for("r"))

    assert asyncio.run(run()) == ["run.started", "subcall.started", "subcall.finished"]


def test_without_a_running_loop_every_event_is_flushed_at_once(tmp_path: Path) -> None:
    writer = TraceWriter(tmp_path)
    writer(_start())
    writer(_sub(0))
    assert _types_on_disk(writer.path_for("r")) == ["run.started", "subcall.started"]


def test_a_writer_kept_across_event_loops_flushes_in_each(tmp_path: Path) -> None:
    """A timer left on a loop that has ended would never fire: the next loop gets its own."""
    writer = TraceWriter(tmp_path)

    async def first() -> None:
        writer(_start())
        writer(_sub(0))  # the loop ends before the flush timer fires

    async def second() -> list[str]:
        writer(_sub(1))
        await asyncio.sleep(FLUSH_DELAY_S * 2)
        return _types_on_disk(writer.path_for("r"))

    asyncio.run(first())
    assert asyncio.run(second()) == ["run.started", "subcall.started", "subcall.started"]


def test_changing_what_to_dict_returned_never_changes_the_event() -> None:
    event = _start()
    data = event.to_dict()
    data["context"]["sha256"] = "changed"
    data["context"]["shape"].append("c")
    assert event.context == {"sha256": "0" * 64, "shape": ["a", "b"]}
    assert event.to_dict()["context"] == {"sha256": "0" * 64, "shape": ["a", "b"]}
