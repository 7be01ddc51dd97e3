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
