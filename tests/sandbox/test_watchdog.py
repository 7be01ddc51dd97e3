"""The watchdog's polls (sandbox/_watchdog.py), on real processes: every worker watched from
an event loop is polled by one timer, and one worker's breach, end or failing poll never
stops the watch on the others."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator

import pytest

from fastrlm.sandbox import _watchdog
from fastrlm.sandbox._watchdog import Quotas, Watchdog

# (scratch_path None: the "scratch" read is the file system of the host's /tmp, whatever it
# holds: quotas no file system reaches)
BIG = Quotas(memory_bytes=1 << 62, scratch_bytes=1 << 62, scratch_files=1 << 62,
             scratch_path=None)
SMALL = Quotas(memory_bytes=1 << 20, scratch_bytes=1 << 62, scratch_files=1 << 62,
               scratch_path=None)  # any Python process holds more than 1 MiB


@pytest.fixture
def sleepers() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
             for _ in range(3)]
    try:
        yield procs
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def _polls() -> _watchdog._Polls:
    return _watchdog._Polls.of(asyncio.get_running_loop())


def _polled(dog: Watchdog, times: int) -> asyncio.Event:
    """Set once ``dog`` has been polled ``times`` more times."""
    polled = asyncio.Event()
    poll, count = dog._poll, [0]

    def counted() -> None:
        count[0] += 1
        if count[0] >= times:
            polled.set()
        poll()

    dog._poll = counted  # type: ignore[method-assign]
    return polled


async def test_one_timer_polls_every_worker_and_a_breach_stops_only_its_own(
        sleepers: list[subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_watchdog, "POLL_S", 0.01)
    killed: list[int] = []
    dogs = [Watchdog(proc.pid, SMALL if i == 1 else BIG, lambda i=i: killed.append(i))
            for i, proc in enumerate(sleepers)]
    first = _polled(dogs[0], 5)
    for dog in dogs:
        dog.start()
    try:
        await asyncio.wait_for(first.wait(), 20)
        assert killed == [1]  # at its first poll, once, only the one over its quota
        assert dogs[1].reason is not None and "memory" in dogs[1].reason
        assert dogs[0].reason is None and dogs[2].reason is None
        await asyncio.wait_for(_polled(dogs[2], 3).wait(), 20)  # the others are still polled
        assert killed == [1]
        timers = [h for h in asyncio.get_running_loop()._scheduled  # type: ignore[attr-defined]
                  if not h.cancelled() and getattr(h._callback, "__self__", None) is _polls()]
        assert len(timers) == 1  # one timer for all of them
    finally:
        for dog in dogs:
            dog.stop()
    assert _polls()._timer is None  # nothing watched: no timer left running
    assert all(dog._probe is None for dog in dogs)  # every handle released


async def test_a_worker_that_ends_or_a_poll_that_fails_leaves_the_others_watched(
        sleepers: list[subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(_watchdog, "POLL_S", 0.01)
    killed: list[int] = []
    dogs = [Watchdog(proc.pid, BIG, lambda i=i: killed.append(i))
            for i, proc in enumerate(sleepers)]
    started = [_polled(dog, 1) for dog in dogs]
    for dog in dogs:
        dog.start()
    try:
        for polled in started:
            await asyncio.wait_for(polled.wait(), 20)
        sleepers[0].kill()
        sleepers[0].wait()

        def broken(walk: bool) -> str | None:
            raise RuntimeError("a poll that fails")

        assert dogs[1]._probe is not None
        monkeypatch.setattr(dogs[1]._probe, "check", broken)
        await asyncio.wait_for(_polled(dogs[2], 5).wait(), 20)  # polled on, past both
        assert dogs[0].reason is None  # an ended worker is no breach
        # a watch that cannot check its worker stops it (never leaves it unbounded), once
        assert killed == [1]
        assert "could not be checked (RuntimeError: a poll that fails)" in (dogs[1].reason or "")
        assert dogs[2].reason is None
    finally:
        for dog in dogs:
            dog.stop()
    assert "watchdog failed" in caplog.text
