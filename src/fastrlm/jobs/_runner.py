"""The resumable JSONL runner that ``fastrlm batch`` and ``fastrlm bench`` share.

A run is a queue of work items, a *backend* that runs them (:class:`LocalBackend`: tasks of
this event loop; :class:`~fastrlm.jobs._ray.RayBackend`: one Ray task per item), the driver
loop :func:`drive` that keeps at most ``concurrency`` of them running and reports each as it
finishes, and a :class:`ResultsLog`: the JSONL file each result is appended to (whole lines,
flushed), from which a re-run learns what is already done. The user of the runner (a batch,
a benchmark) brings its item type, its per-item function and what it does with a result.

The results file is valid JSONL whenever it is read: a line is written whole and flushed. A
last line the process was killed while writing (no newline, not a JSON value) is cut off
before the next append; a last line that is a whole JSON value but lost its newline (edited
by hand) is kept, and the newline restored. Only a regular file is read back or repaired: a
pipe, FIFO or terminal (``--out /dev/stdout | tee``) is only appended to, never read (reading
one would wait forever for lines nobody writes).
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Generic, Protocol, TypeVar

from .._foundation.text import json_text

K = TypeVar("K")
V = TypeVar("V")


class ResultsLog:
    """A JSONL results file: the records already there (for resume), and appending records
    one whole line at a time, flushed at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[str] | None = None

    def records(self) -> Iterator[Any]:
        """Every JSON value of the file, in order (lines that are not JSON are skipped)."""
        if not self._regular():
            return
        with self.path.open("r", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn last line (killed mid-write), or a stray line

    def open(self) -> None:
        """Open for appending (creating the folder). A torn last line is cut off first; a
        whole last line without its newline gets it back."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._regular():
            with self.path.open("rb+") as fh:
                data = fh.read()
                if data and not data.endswith(b"\n"):
                    start = data.rfind(b"\n") + 1
                    if _is_json(data[start:]):
                        fh.write(b"\n")
                    else:
                        fh.truncate(start)
        self._fh = self.path.open("a", encoding="utf-8")

    def _regular(self) -> bool:
        """Whether the path is a regular file (the only kind read back)."""
        try:
            return stat.S_ISREG(os.stat(self.path).st_mode)
        except OSError:
            return False

    def append(self, record: Any) -> None:
        """Write ``record`` as one JSON line and flush it."""
        assert self._fh is not None, "open() the results file first"
        self._fh.write(json_text(record, default=str) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class Finished(Generic[K, V]):
    """One run of an item, ended: its ``value``, or the ``error`` it raised. ``lost``: the
    error is the loss of the worker that ran it (Ray), not the item's own."""

    key: K
    value: V | None = None
    error: BaseException | None = None
    lost: bool = False


class Backend(Protocol[K, V]):
    """Where items run. ``submit`` starts one (``key`` names it in its :class:`Finished`);
    ``next_finished`` waits for any to end; ``close`` cancels what still runs."""

    @property
    def running(self) -> int: ...

    async def start(self) -> None: ...

    def submit(self, key: K, *args: Any) -> None: ...

    async def next_finished(self) -> Finished[K, V]: ...

    async def close(self) -> None: ...


class LocalBackend(Generic[K, V]):
    """Items as tasks of the driver's event loop: ``function(*args)`` for each."""

    def __init__(self, function: Callable[..., Awaitable[V]]) -> None:
        self._function = function
        self._tasks: dict[asyncio.Future[V], K] = {}

    @property
    def running(self) -> int:
        return len(self._tasks)

    async def start(self) -> None:
        return None

    def submit(self, key: K, *args: Any) -> None:
        self._tasks[asyncio.ensure_future(self._function(*args))] = key

    async def next_finished(self) -> Finished[K, V]:
        done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
        task = next(iter(done))
        key = self._tasks.pop(task)
        error = task.exception()
        return Finished(key, error=error) if error is not None else Finished(key, task.result())

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        self._tasks.clear()


async def drive(
    backend: Backend[K, V],
    todo: deque[K],
    concurrency: int,
    arguments: Callable[[K], tuple[Any, ...] | None],
    on_progress: Callable[[], object] = lambda: None,
) -> AsyncGenerator[Finished[K, V], None]:
    """Run the items of ``todo`` on ``backend``, at most ``concurrency`` at once, and yield
    each as it finishes. ``arguments(item)`` gives the item's arguments when it is about to
    start, or None to start nothing more for now (a budget ran out). The caller may put items
    back into ``todo`` between results (a retry). ``on_progress`` is called whenever the
    running set changes. The backend is started only if there is work, and closed (what still
    runs cancelled) when the iteration ends, however it ends."""
    if todo:
        await backend.start()
    try:
        while todo or backend.running:
            while todo and backend.running < concurrency:
                args = arguments(todo[0])
                if args is None:
                    break
                backend.submit(todo.popleft(), *args)
            on_progress()
            if not backend.running:
                break
            yield await backend.next_finished()
    finally:
        await backend.close()
