"""A file copied into a context buffer and checked for ASCII on the way, by several threads
(issue 31: the copy is the whole start of ``fastrlm ask -c big.log``). The chunks are made
small here so that a few MiB take many chunks and every thread takes some."""

from __future__ import annotations

import errno
import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fastrlm.sandbox import _filecopy

AT = 8192  # where the text starts in a kind 4 buffer, past its prefix


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_filecopy, "CHUNK", 64 << 10)
    monkeypatch.setattr(_filecopy, "THREADED_MIN", 256 << 10)


@pytest.fixture
def memfd() -> Iterator[int]:
    fd = os.memfd_create("test-copy", os.MFD_CLOEXEC)
    yield fd
    os.close(fd)


_PRINTABLE = bytes(32 + b % 95 for b in range(256))


def _ascii(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size).translate(_PRINTABLE)


def _opened(tmp_path: Path, data: bytes) -> int:
    path = tmp_path / "big.log"
    path.write_bytes(data)
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


@pytest.mark.parametrize("size", [3 << 20, (3 << 20) + 12_345, 100_000])
def test_every_chunk_lands_where_it_belongs_whichever_thread_copied_it(
    tmp_path: Path, memfd: int, size: int,
) -> None:
    data = _ascii(size)
    src = _opened(tmp_path, data)
    try:
        assert _filecopy.copy_ascii(src, memfd, size, AT)
        assert os.lseek(src, 0, os.SEEK_CUR) == 0  # the file's position is not moved
    finally:
        os.close(src)
    assert os.fstat(memfd).st_size == AT + size
    assert os.pread(memfd, size, AT) == data


@pytest.mark.parametrize("where", ["first byte", "start of a middle chunk", "last byte",
                                   "last byte of a whole chunk"])
def test_a_non_ascii_byte_anywhere_stops_the_copy(tmp_path: Path, memfd: int, where: str) -> None:
    chunk = _filecopy.CHUNK
    size = 40 * chunk if where == "last byte of a whole chunk" else 40 * chunk + 777
    at = {"first byte": 0, "start of a middle chunk": 17 * chunk}.get(where, size - 1)
    data = bytearray(_ascii(size))
    data[at] = 0xE9
    src = _opened(tmp_path, bytes(data))
    try:
        assert not _filecopy.copy_ascii(src, memfd, size, AT)
    finally:
        os.close(src)
    # the chunk that held it was never written: no unchecked byte is in the buffer
    start = at - at % chunk
    assert os.pread(memfd, chunk, AT + start).isascii()


def test_a_file_that_ends_before_its_size_is_not_whole(tmp_path: Path, memfd: int) -> None:
    """What a file truncated between its ``fstat`` and its copy looks like to the copy."""
    data = _ascii(1 << 20)
    src = _opened(tmp_path, data)
    try:
        assert not _filecopy.copy_ascii(src, memfd, len(data) + 5 * _filecopy.CHUNK, AT)
    finally:
        os.close(src)


def test_an_error_in_any_thread_is_raised_once_every_thread_has_stopped(tmp_path: Path) -> None:
    data = _ascii(2 << 20)
    src = _opened(tmp_path, data)
    read_only = os.open(tmp_path / "big.log", os.O_RDONLY | os.O_CLOEXEC)  # cannot be written
    before = threading.active_count()
    try:
        with pytest.raises(OSError) as caught:
            _filecopy.copy_ascii(src, read_only, len(data), AT)
    finally:
        os.close(src)
        os.close(read_only)
    assert caught.value.errno == errno.EBADF
    assert threading.active_count() == before  # no helper left running
    assert (tmp_path / "big.log").read_bytes() == data


def test_a_large_file_is_copied_by_two_threads_taking_chunks_in_turn(
    tmp_path: Path, memfd: int, monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = _ascii(2 << 20)
    src = _opened(tmp_path, data)
    copy_chunk = _filecopy._copy_chunk
    main_took = threading.Event()
    copiers: set[str] = set()

    def recording(*args: Any) -> bool:
        if threading.current_thread() is threading.main_thread():
            main_took.set()
        else:  # the helper waits for the caller's first chunk, so both surely take some
            assert main_took.wait(timeout=60)
        copiers.add(threading.current_thread().name)
        return copy_chunk(*args)

    monkeypatch.setattr(_filecopy, "_copy_chunk", recording)
    try:
        assert _filecopy.copy_ascii(src, memfd, len(data), AT)
    finally:
        os.close(src)
    assert copiers == {threading.main_thread().name, "fastrlm-file-copy"}
    assert os.pread(memfd, len(data), AT) == data


def test_an_interrupt_stops_every_thread_and_the_loader_keeps_no_buffer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C while a large file loads: the interrupt comes out of ``load_context``, the helper
    stops at its next chunk, and the half-filled buffer is closed."""
    from fastrlm.context import load_context

    data = _ascii(3 << 20)
    path = tmp_path / "big.log"
    path.write_bytes(data)
    copy_chunk = _filecopy._copy_chunk
    interrupted = threading.Event()

    def interrupting(*args: Any) -> bool:
        if threading.current_thread() is threading.main_thread():
            interrupted.set()
            raise KeyboardInterrupt
        assert interrupted.wait(timeout=60)  # the helper runs on only after the interrupt
        return copy_chunk(*args)

    def buffers() -> int:
        count = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                count += "fastrlm-context" in os.readlink(f"/proc/self/fd/{fd}")
            except OSError:  # the listing's own fd, closed by now
                continue
        return count

    monkeypatch.setattr(_filecopy, "_copy_chunk", interrupting)
    before_threads, before_buffers = threading.active_count(), buffers()
    with pytest.raises(KeyboardInterrupt):
        load_context([path], shared=True)
    assert threading.active_count() == before_threads
    assert buffers() == before_buffers


def test_a_helper_that_dies_mid_copy_never_leaves_a_hole(
    tmp_path: Path, memfd: int, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The chunk a helper took and never wrote must not pass for copied: whatever kills the
    helper (here a MemoryError) comes out of the copy, after every thread has stopped."""
    data = _ascii(2 << 20)
    src = _opened(tmp_path, data)
    copy_chunk = _filecopy._copy_chunk
    main_took = threading.Event()

    def dying(*args: Any) -> bool:
        if threading.current_thread() is threading.main_thread():
            main_took.set()
            return copy_chunk(*args)
        assert main_took.wait(timeout=60)
        raise MemoryError

    monkeypatch.setattr(_filecopy, "_copy_chunk", dying)
    before = threading.active_count()
    try:
        with pytest.raises(MemoryError):
            _filecopy.copy_ascii(src, memfd, len(data), AT)
    finally:
        os.close(src)
    assert threading.active_count() == before
