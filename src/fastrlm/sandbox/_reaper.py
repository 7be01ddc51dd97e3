"""The reaper of a warm process's workers: a thread that waits for killed workers to end and
then runs what has to follow each exit (see :class:`_Reaper`; :mod:`._warm` holds one per warm
process)."""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
from collections.abc import Callable

logger = logging.getLogger("fastrlm.sandbox")


class _Reaper:
    """A thread that waits for killed workers to end and then runs what has to follow an exit
    (their scratch removed, their cgroup and pidfd released). A forked worker's ``close`` sends
    the kill and hands the wait here, so a run answers without waiting for its worker's address
    space to be torn down, which on a busy machine waits for a CPU (about 13 ms a request in
    ``fastrlm serve``). One per warm process, started with its first worker's exit."""

    #: How long :meth:`close` waits for the workers still ending (killed ones end at once; a
    #: worker that does not is left, and logged).
    CLOSE_WAIT_S = 10.0

    def __init__(self) -> None:
        self._pending: dict[int, Callable[[], None]] = {}
        self._lock = threading.Lock()
        self._wake_read, self._wake_write = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._thread: threading.Thread | None = None
        self._closing = False

    def after_exit(self, pidfd: int, then: Callable[[], None]) -> bool:
        """Run ``then`` on the reaper's thread once the process of ``pidfd`` has ended (it
        owns the pidfd from now: it closes it after ``then``). False, taking nothing, once the
        reaper is closing: the caller waits for the exit itself."""
        with self._lock:
            if self._closing:
                return False
            self._pending[pidfd] = then
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fastrlm-worker-reaper",
                                                daemon=True)
                self._thread.start()
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_write, b"\0")
        return True

    @property
    def pending(self) -> int:
        """Workers killed and not yet seen to end."""
        with self._lock:
            return len(self._pending)

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._wake_read, select.POLLIN)
        watched: set[int] = set()
        while True:
            with self._lock:
                if self._closing and not self._pending:
                    return
                for pidfd in self._pending.keys() - watched:
                    poller.register(pidfd, select.POLLIN)
                    watched.add(pidfd)
            for fd, _ in poller.poll():
                if fd == self._wake_read:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_read, 4096)
                    continue
                poller.unregister(fd)
                watched.discard(fd)
                with self._lock:
                    then = self._pending.pop(fd)
                try:
                    then()
                except Exception:  # one worker's clean-up must not stop the others'
                    logger.exception("cleaning up after a sandbox worker failed")
                finally:
                    os.close(fd)

    def close(self) -> None:
        """Wait (up to :attr:`CLOSE_WAIT_S`) for the workers still ending, then stop the
        thread. Call it once their warm process is gone (they die with it). Idempotent."""
        with self._lock:
            self._closing = True
            thread = self._thread
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_write, b"\0")
        if thread is not None:
            thread.join(self.CLOSE_WAIT_S)
            if thread.is_alive():
                logger.warning("%d sandbox worker(s) had not ended %.0f s after their warm "
                               "process was closed", self.pending, self.CLOSE_WAIT_S)
                return  # the thread still owns the pipe: it ends with the process
        for fd in (self._wake_read, self._wake_write):
            with contextlib.suppress(OSError):
                os.close(fd)
