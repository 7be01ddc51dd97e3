"""A text file copied into a context buffer, checked for ASCII on the way (standard library only).

:func:`copy_ascii` is the one pass over a file that ``load_context([file], shared=True)``
makes before its first root request (``_protocol.mapped_text``): each chunk is read from the
page cache into a small buffer that stays in the CPU cache, checked there, and written into the
memfd. The check runs on the very bytes that are written, so a file changed while it is copied
can never put a non-ASCII byte into a buffer that the host's str claims is ASCII.

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

#: Bytes a thread reads, checks and writes at a time: fits the CPU's L2 cache.
CHUNK = 2 << 20
#: Threads for a file of at least ``THREADED_MIN`` bytes (a smaller one: the calling thread alone).
THREADS = 2
THREADED_MIN = 32 << 20


def copy_ascii(src: int, dst: int, size: int, at: int) -> bool:
    """Copy bytes ``[0, size)`` of the file open at ``src`` to offset ``at`` of ``dst``,
    moving neither file's position, and say whether all of them were ASCII.

    False as soon as a chunk holds a non-ASCII byte or the file ends before ``size`` (it
    shrank while copied); what ``dst`` holds is then incomplete, and the caller discards it.
    Bytes past ``size`` (a file that grew) are not copied. Raises what any thread met (an
    ``OSError`` from an unreadable file or a buffer that cannot grow, an interrupt) once every
    thread has stopped; a helper interrupted in the middle of a chunk writes through its own
    duplicates of the two fds, so the caller may close its own at once."""
    offsets = iter(range(0, size, CHUNK))
    take = threading.Lock()
    stop = threading.Event()  # set on the first failure: the other threads take no more chunks
    errors: list[BaseException] = []
    whole = [True]

    def work(src: int, dst: int) -> None:
        buffer = bytearray(min(CHUNK, size))
        try:
            while not stop.is_set():
                with take:
                    offset = next(offsets, None)
                if offset is None:
                    return
                if not _copy_chunk(src, dst, offset, min(CHUNK, size - offset), at, buffer):
                    whole[0] = False
                    stop.set()
        except BaseException as exc:  # noqa: BLE001 - raised by the caller once all stopped
            errors.append(exc)  # a chunk taken and not copied must never pass for copied
            stop.set()

    def helper(src: int, dst: int) -> None:
        try:
            work(src, dst)
        finally:
            os.close(src)
            os.close(dst)

    helpers: list[threading.Thread] = []
    try:
        for _ in range((THREADS if size >= THREADED_MIN else 1) - 1):
            fds = (os.dup(src), os.dup(dst))
            thread = threading.Thread(target=helper, args=fds, name="fastrlm-file-copy",
                                      daemon=True)
            try:
                thread.start()
            except BaseException:
                for fd in fds:
                    os.close(fd)
                raise
            helpers.append(thread)
        work(src, dst)
    finally:
        stop.set()  # all chunks are taken by now, or the copy is being abandoned
        for thread in helpers:
            thread.join()
    if errors:
        raise errors[0]
    return whole[0]


def _copy_chunk(src: int, dst: int, offset: int, length: int, at: int,
                buffer: bytearray) -> bool:
    """One chunk of :func:`copy_ascii`: False when the file ended early or the bytes are not
    ASCII (nothing of the chunk is written then)."""
    view = memoryview(buffer)[:length]
    got = 0
    while got < length:
        n = os.preadv(src, [view[got:]], offset + got)
        if n == 0:
            return False
        got += n
    if not (buffer.isascii() if length == len(buffer) else bytes(view).isascii()):
        return False
    written = 0
    while written < length:
        written += os.pwrite(dst, view[written:], at + offset + written)
    return True
