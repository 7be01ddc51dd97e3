"""A cancelled run is cancelled, however close its cell was to ending: on Python 3.11,
``asyncio.wait_for`` returned the result of a future that completed just as the waiting task
was cancelled, and lost the cancellation, so a run cancelled a few steps in (a client that
hung up) went on to its answer. The in-process sandbox waited for its cell that way."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from fastrlm import RLM
from fastrlm.sandbox import create_sandbox
from fastrlm.trace import _io

FINAL = "```repl\nFINAL('done')\n```"


async def test_a_cell_cancelled_as_it_ends_raises_cancelled_at_every_step() -> None:
    sandbox = create_sandbox("none")
    await sandbox.start("ctx", None)  # type: ignore[arg-type]
    try:
        for steps in range(40):
            cell = asyncio.create_task(sandbox.execute("x = 1"))
            for _ in range(steps):
                await asyncio.sleep(0)
            if cell.done():
                continue  # it ended before the cancel: nothing to lose
            cell.cancel()
            try:
                await cell
            except asyncio.CancelledError:
                continue
            raise AssertionError(f"the cancellation was lost after {steps} steps")
    finally:
        await sandbox.close()


async def test_a_run_cancelled_at_any_step_is_cancelled() -> None:
    from fastrlm.testing import ScriptedLM

    with tempfile.TemporaryDirectory() as home:
        rlm = RLM(ScriptedLM(lambda m: FINAL, model="scripted/root"),
                  ScriptedLM(lambda m: "sub", model="scripted/sub"), sandbox="none",
                  trace=Path(home))
        for steps in range(30):
            run = asyncio.create_task(rlm.acompletion("q", context="c"))
            for _ in range(steps):
                await asyncio.sleep(0)
            if run.done():
                continue
            run.cancel()
            try:
                result = await run
            except asyncio.CancelledError:
                continue
            raise AssertionError(f"the run answered {result.answer!r} although cancelled after "
                                 f"{steps} steps")
        # a cancelled run ends once its files hold what it wrote, not its index rows (a busy
        # index may hold those): they may still be queued
        assert await asyncio.to_thread(_io.drain)
