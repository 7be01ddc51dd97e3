"""Whether a trace's writer is still alive: a lock the writer holds while its run is open.

The :class:`~._writer.TraceWriter` takes a shared ``flock`` on a run's trace file when it opens
it and keeps it until the run's ``run.finished`` closes the file; the kernel drops it when the
process ends, however it ends (a crash, ``kill -9``). A reader asks :func:`writer_alive`: an
exclusive lock it cannot take means a writer holds the file now. A trace copied to another
machine, or left by a killed process, has no holder: unfinished there means incomplete, never
"still running" by a stale pid. Where ``flock`` does not exist (Windows) the answer is unknown.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import IO, Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock, liveness unknown
    fcntl = None  # type: ignore[assignment]


#: Tries, a millisecond apart, to take the writer's lock while a reader's probe holds the file
#: (for two system calls). Bounded: anyone who can read a trace can lock it, and the writer
#: runs on the engine's event loop, so a lock held on purpose must not stall a run.
LOCK_TRIES = 50


def hold_writer_lock(handle: IO[Any]) -> bool:
    """Mark ``handle``'s file as being written until it is closed; ``True`` when it is. Never
    raises or waits long: a file system without locks, or a file someone else keeps locked,
    only makes the run look incomplete to a viewer while it runs."""
    if fcntl is None:
        return False
    for _ in range(LOCK_TRIES):
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            time.sleep(0.001)
        except OSError:
            return False
    return False


def writer_alive(path: Path) -> bool | None:
    """``True`` while a process holds ``path`` open for writing its run, ``False`` when none
    does, ``None`` when it cannot be known (no ``flock``, an unreadable file)."""
    if fcntl is None:
        return None
    try:
        with open(path, "rb") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            return False
    except OSError:
        return None
