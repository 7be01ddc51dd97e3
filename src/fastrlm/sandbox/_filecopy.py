"""A text file copied into a context buffer, checked for ASCII on the way (standard library only).

``load_context([file], shared=True)`` (``_protocol.mapped_text``) makes two passes over a large
file. :func:`check_ascii` reads it once and keeps nothing: the run's first root request can go
out once it is known to be ASCII. :func:`copy_ascii` then copies it into the memfd, mostly while
that request is answered: each chunk is read from the page cache into a small buffer that stays
in the CPU cache, checked there, and written into the memfd. The copy checks the very bytes it
writes, so a file changed after the first pass can never put a non-ASCII byte into a buffer that
the host's str claims is ASCII (the copy then fails, and the run with it).

Why threads: the memfd's writes are serialized by the kernel (one lock per inode) but the reads
and checks are not, so two threads that take chunks in turn keep the writer busy: a 1 GiB file
took 0.50 s alone and 0.40 s with two on this project's two-core machine (a third gained
nothing). ``copy_file_range`` would copy without a buffer but fails across file systems (a
memfd is on its own), and ``sendfile`` copies as fast as two threads but leaves the check to a
second read of the buffer.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

#: Bytes a thread reads, checks and writes at a time: fits the CPU's L2 cache.
CHUNK = 2 << 20
#: Threads for a file of at least ``THREADED_MIN`` bytes (a smaller one: the calling thread alone).
THREADS = 2
THREADED_MIN = 32 << 20


def check_ascii(fd: int, size: int) -> bool:
    """Read bytes ``[0, size)`` of the file open at ``fd`` and say whether all of them are
    ASCII (False, too, when the file ends first), keeping nothing: the pass that lets a run's
    first root request go out before the copy, because the model is told the text's length in
    characters, which only ASCII makes its length in bytes. A 1 GiB file in the page cache
    takes 0.05 s (two threads) where the copy takes 0.4 s. Raises as :func:`copy_ascii`."""
    return _in_chunks((fd,), 0, size, _check_chunk)


def copy_ascii(src: int, dst: int, size: int, at: int, first: int = 0) -> bool:
    """Copy bytes ``[first, size)`` of the file open at ``src`` (``first`` a multiple of
    :data:`CHUNK`) to the same offsets plus ``at`` in ``dst``, moving neither file's position,
    and say whether all of them were ASCII.

    False as soon as a chunk holds a non-ASCII byte or the file ends before ``size`` (it
    shrank while copied); what ``dst`` holds is then incomplete, and the caller discards it.
    Bytes past ``size`` (a file that grew) are not copied. Raises what any thread met (an
    ``OSError`` from an unreadable file or a buffer that cannot grow, an interrupt) once every
    thread has stopped; a helper interrupted in the middle of a chunk writes through its own
    duplicates of the two fds, so the caller may close its own at once."""

    def copy(fds: tuple[int, ...], offset: int, length: int, buffer: bytearray) -> bool:
        return _copy_chunk(fds[0], fds[1], offset, length, at, buffer)

    return _in_chunks((src, dst), first, size, copy)


_Chunk = Callable[[tuple[int, ...], int, int, bytearray], bool]


def _in_chunks(fds: tuple[int, ...], first: int, end: int, chunk: _Chunk) -> bool:
    """Run ``chunk(fds, offset, length, buffer)`` over ``[first, end)`` in chunks of
    :data:`CHUNK`, taken in turn by the calling thread and, for a large range, helpers (each on
    its own duplicates of ``fds``). False as soon as one chunk answers False; raises what any
    thread met once every thread has stopped."""
    size = end - first
    if size <= 0:
        return True
    offsets = iter(range(first, end, CHUNK))
    take = threading.Lock()
    stop = threading.Event()  # set on the first failure: the other threads take no more chunks
    errors: list[BaseException] = []
    whole = [True]

    def work(fds: tuple[int, ...]) -> None:
        buffer = bytearray(min(CHUNK, size))
        try:
            while not stop.is_set():
                with take:
                    offset = next(offsets, None)
                if offset is None:
                    return
                if not chunk(fds, offset, min(CHUNK, end - offset), buffer):
                    whole[0] = False
                    stop.set()
        except BaseException as exc:  # noqa: BLE001 - raised by the caller once all stopped
            errors.append(exc)  # a chunk taken and not done must never pass for done
            stop.set()

    def helper(own: tuple[int, ...]) -> None:
        try:
            work(own)
        finally:
            for fd in own:
                os.close(fd)

    helpers: list[threading.Thread] = []
    try:
        for _ in range((THREADS if size >= THREADED_MIN else 1) - 1):
            own = tuple(os.dup(fd) for fd in fds)
            thread = threading.Thread(target=helper, args=(own,), name="fastrlm-file-copy",
                                      daemon=True)
            try:
                thread.start()
            except BaseException:
                for fd in own:
                    os.close(fd)
                raise
            helpers.append(thread)
        work(fds)
    finally:
        stop.set()  # all chunks are taken by now, or the pass is being abandoned
        for thread in helpers:
            thread.join()
    if errors:
        raise errors[0]
    return whole[0]


def _read_chunk(src: int, offset: int, length: int, buffer: bytearray) -> memoryview | None:
    """Bytes ``[offset, offset + length)`` of ``src`` read into ``buffer``, or None when the
    file ends first."""
    view = memoryview(buffer)[:length]
    got = 0
    while got < length:
        n = os.preadv(src, [view[got:]], offset + got)
        if n == 0:
            return None
        got += n
    return view


def _is_ascii(view: memoryview, buffer: bytearray) -> bool:
    return buffer.isascii() if len(view) == len(buffer) else bytes(view).isascii()


def _check_chunk(fds: tuple[int, ...], offset: int, length: int, buffer: bytearray) -> bool:
    """One chunk of :func:`check_ascii`."""
    view = _read_chunk(fds[0], offset, length, buffer)
    return view is not None and _is_ascii(view, buffer)


def _copy_chunk(src: int, dst: int, offset: int, length: int, at: int,
                buffer: bytearray) -> bool:
    """One chunk of :func:`copy_ascii`: False when the file ended early or the bytes are not
    ASCII (nothing of the chunk is written then)."""
    view = _read_chunk(src, offset, length, buffer)
    if view is None or not _is_ascii(view, buffer):
        return False
    written = 0
    while written < length:
        written += os.pwrite(dst, view[written:], at + offset + written)
    return True
