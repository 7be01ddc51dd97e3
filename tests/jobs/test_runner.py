"""The runner both ``batch`` and ``bench`` use: the driver loop over the local backend, and the
results log's resume rules (what a re-run counts as done, what the next append keeps)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from pathlib import Path

from fastrlm.jobs import LocalBackend, ResultsLog, drive


async def test_drive_runs_at_most_concurrency_items_at_once_and_reaches_it() -> None:
    running = peak = 0
    full = asyncio.Event()

    async def item(n: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        if running == 3:
            full.set()
        await full.wait()
        running -= 1
        return n * 10

    backend: LocalBackend[int, int] = LocalBackend(item)
    todo = deque(range(10))
    got = [f.value async for f in drive(backend, todo, 3, lambda n: (n,))]
    assert sorted(got) == [n * 10 for n in range(10)]
    assert peak == 3 and not todo and backend.running == 0


async def test_leaving_drive_early_cancels_what_still_runs() -> None:
    cancelled: list[int] = []
    never = asyncio.Event()

    async def item(n: int) -> int:
        if n:
            try:
                await never.wait()
            except asyncio.CancelledError:
                cancelled.append(n)
                raise
        return n

    backend: LocalBackend[int, int] = LocalBackend(item)
    runs = drive(backend, deque(range(4)), 4, lambda n: (n,))
    async with contextlib.aclosing(runs):
        async for finished in runs:
            assert finished.value == 0
            break
    assert sorted(cancelled) == [1, 2, 3] and backend.running == 0


async def test_no_arguments_for_an_item_stops_the_starting_and_leaves_it_queued() -> None:
    async def item(n: int) -> int:
        return n

    todo = deque(range(5))
    started: list[int] = []

    def arguments(n: int) -> tuple[int] | None:
        if len(started) == 2:
            return None  # a budget ran out
        started.append(n)
        return (n,)

    got = [f.value async for f in drive(LocalBackend(item), todo, 1, arguments)]
    assert got == [0, 1] and list(todo) == [2, 3, 4]


async def test_an_item_that_raises_comes_back_with_its_error() -> None:
    async def item(n: int) -> int:
        raise ValueError(f"bad {n}")

    [finished] = [f async for f in drive(LocalBackend(item), deque([7]), 1, lambda n: (n,))]
    assert finished.key == 7 and isinstance(finished.error, ValueError) and not finished.lost


def test_the_log_cuts_a_torn_last_line_and_keeps_a_whole_one(tmp_path: Path) -> None:
    torn = tmp_path / "torn.jsonl"
    torn.write_text('{"n": 1}\n{"n": 2')
    whole = tmp_path / "whole.jsonl"
    whole.write_text('{"n": 1}\n{"n": 2}')
    for path, kept in ((torn, [1]), (whole, [1, 2])):
        log = ResultsLog(path)
        assert [r["n"] for r in log.records()] == kept
        log.open()
        log.append({"n": 3})
        log.close()
        assert [r["n"] for r in log.records()] == [*kept, 3]
        assert path.read_text().endswith('{"n": 3}\n')


def test_a_results_pipe_is_written_to_and_never_read_back(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "results.fifo"  # as `--out /dev/stdout | tee log` or `--out >(jq .)`
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # someone reads it; nobody writes
    try:
        log = ResultsLog(fifo)
        assert list(log.records()) == []  # reading it back would wait forever
        log.open()  # nor is it "repaired": its bytes are the reader's, not a file's
        log.append({"id": "a"})
        log.close()
        assert os.read(reader, 1024) == b'{"id": "a"}\n'
    finally:
        os.close(reader)


def test_a_result_holding_a_lone_surrogate_is_one_whole_line_read_back_exact(
        tmp_path: Path) -> None:
    log = ResultsLog(tmp_path / "results.jsonl")
    log.open()
    log.append({"id": "a", "answer": "name \udcff"})  # model code can make one
    log.append({"id": "b"})
    log.close()
    assert list(log.records()) == [{"id": "a", "answer": "name \udcff"}, {"id": "b"}]
