"""Waiting on a thread's work from the event loop: the one way the engine, the sandboxes and
the trace await a ``concurrent.futures.Future`` that a thread completes."""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import TypeVar

_T = TypeVar("_T")


async def thread_result(future: concurrent.futures.Future[_T]) -> _T:
    """The result of a thread's ``future`` (raising its exception): at once when it is done
    (no hop through the event loop's wake-up pipe), else awaited, shielded: a cancelled
    waiter stops waiting but leaves the future to the thread and to every other waiter
    (unshielded, ``asyncio.wrap_future`` would cancel the thread's future itself)."""
    if future.done():
        return future.result()
    return await asyncio.shield(asyncio.wrap_future(future))
