"""A large text file is held once: the loader copies it into the sealed buffer the worker maps,
and the host's str lives in that same buffer (issue 31: a 1 GB file cost 2 GB before)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from fastrlm import RLM, ContextError
from fastrlm.context import load_context
from fastrlm.sandbox import _filecopy, _protocol
from fastrlm.testing import ScriptedLM
from fastrlm.trace import ReplayError

from .helpers import FakeBridge, MakeSandbox

LINE = "2026-12-07 svc-%03d GET /api/items 200 12ms\n"


def _text(lines: int) -> str:
    return "".join(LINE % (i % 997) for i in range(lines))


def _write(tmp_path: Path, text: str, name: str = "big.log") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def test_a_large_ascii_file_named_alone_lives_in_one_sealed_buffer(tmp_path: Path) -> None:
    text = _text(60_000)  # about 2.6 MB
    loaded = load_context([_write(tmp_path, text)], shared=True)
    assert loaded.value == text
    assert type(loaded.value) is str and loaded.value.isascii()
    sealed = _protocol.shared_buffer(loaded.value)
    assert sealed is not None and sealed.written.done()
    fd, size = sealed.fd, sealed.encoded.result()[1]
    assert _protocol.is_sealed(fd)
    assert os.fstat(fd).st_size == size
    assert loaded.report.bytes_read == len(text) and loaded.report.files == 1
    # what the worker will load from that buffer is the same text
    assert _protocol.load_context(fd) == text


@pytest.mark.parametrize("case", ["not shared", "small", "not ascii", "two files", "jsonl"])
def test_everything_else_is_read_as_before(tmp_path: Path, case: str) -> None:
    text = _text(60_000)
    paths = [_write(tmp_path, text)]
    shared = case != "not shared"
    if case == "small":
        text = _text(100)
        paths = [_write(tmp_path, text)]
    elif case == "not ascii":
        text = "é" + text + "ü"
        paths = [_write(tmp_path, text)]
    elif case == "two files":
        paths.append(_write(tmp_path, "second file\n", "b.txt"))
    elif case == "jsonl":
        text = '"a"\n' * 300_000
        paths = [_write(tmp_path, text, "big.jsonl")]
    loaded = load_context(paths, shared=shared)
    if case == "two files":
        assert isinstance(loaded.value, list)
        assert all(_protocol.shared_buffer(x) is None for x in loaded.value)
        return
    if case == "jsonl":
        assert loaded.value == ["a"] * 300_000
        return
    assert loaded.value == text
    assert _protocol.shared_buffer(loaded.value) is None


def test_a_binary_file_is_refused_as_before(tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    path.write_bytes(b"\x00\x01" + b"a" * (2 << 20))
    with pytest.raises(ContextError, match="binary"):
        load_context([path], shared=True)


def test_a_str_that_only_equals_a_shared_one_has_no_buffer(tmp_path: Path) -> None:
    text = _text(60_000)
    loaded = load_context([_write(tmp_path, text)], shared=True)
    copy = "".join([loaded.value[:10], loaded.value[10:]])  # type: ignore[index]
    assert copy == loaded.value and copy is not loaded.value
    assert _protocol.shared_buffer(copy) is None


async def test_the_worker_maps_the_loaded_buffer_instead_of_writing_another(
    tmp_path: Path, make_sandbox: MakeSandbox, isolated_kind: str, bridge: FakeBridge,
) -> None:
    text = _text(60_000)
    loaded = load_context([_write(tmp_path, text)], shared=True)
    sealed = _protocol.shared_buffer(loaded.value)
    assert sealed is not None
    sandbox = await make_sandbox(isolated_kind, context=loaded.value)
    result = await sandbox.execute("print(len(context), context[-20:].strip())")
    assert result.error is None, result.error
    assert result.stdout.strip().split(maxsplit=1) == [str(len(text)), text[-20:].strip()]
    held = sandbox._context_fd  # type: ignore[attr-defined]
    assert held is not None
    assert os.fstat(held).st_ino == os.fstat(sealed.fd).st_ino  # the same buffer, not a copy


async def test_sandboxes_started_on_one_str_share_one_buffer_until_the_last_closes(
    make_sandbox: MakeSandbox, isolated_kind: str,
) -> None:
    text = _text(2_000) + "END"  # k candidates over one context: one buffer, not k
    first = await make_sandbox(isolated_kind, context=text)
    second = await make_sandbox(isolated_kind, context=text)
    inodes = {os.fstat(s._context_fd).st_ino for s in (first, second)}  # type: ignore[attr-defined]
    assert len(inodes) == 1
    held = _protocol.shared_buffer(text)
    assert held is not None and held.users == 2
    await first.close()
    result = await second.execute("print(context[-3:])")  # the survivor still reads it
    assert result.stdout.strip() == "END"
    await second.close()
    assert _protocol.shared_buffer(text) is None  # the last one released it
    # an equal str that is another object, and a list, each get a buffer of their own
    third = await make_sandbox(isolated_kind, context="".join([text[:5], text[5:]]))
    assert _protocol.shared_buffer(text) is None
    await third.close()


async def test_a_context_that_cannot_be_sent_is_refused_and_leaves_no_buffer(
    make_sandbox: MakeSandbox, isolated_kind: str,
) -> None:
    bad = [object()]
    with pytest.raises(ContextError, match="cannot be sent"):
        await make_sandbox(isolated_kind, context=bad)
    assert not _protocol._SHARED or all(h.context is not bad for h in _protocol._SHARED.values())


def test_a_shared_buffer_that_cannot_be_written_fails_every_waiter_and_is_freed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_memory(fd: int, parts: object) -> None:
        os.close(fd)
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(_protocol, "fill_context_fd", no_memory)
    text = _text(100) + "shared"
    first, filler = _protocol.acquire_buffer(text)
    second, also = _protocol.acquire_buffer(text)
    assert filler and not also and first is second and first.users == 3
    fd = first.fd
    _protocol.fill_shared(first)  # what the first sandbox runs in a thread
    assert first.encoded.result()[0] in (_protocol.KIND_STR, _protocol.KIND_ASCII)
    for _ in range(2):  # both sandboxes see the failure, then let go
        with pytest.raises(OSError, match="Cannot allocate"):
            first.written.result()
        _protocol.release_buffer(first)
    assert _protocol.shared_buffer(text) is None
    try:  # closed by the last release (its number may since name something else)
        link = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        link = ""
    assert "fastrlm-context" not in link


async def test_model_code_that_writes_into_its_context_changes_no_other_sandbox(
    make_sandbox: MakeSandbox, isolated_kind: str,
) -> None:
    """The adversary's first try against a shared buffer: overwrite the context's bytes in
    place (ctypes into the str's data). The buffer is sealed and each worker maps its data
    pages read-only, so the write kills only the writer's worker (restarted, its context
    reloaded); a sandbox sharing the buffer, and the host's str, still read the original."""
    text = "ABCDE" + _text(30_000)  # over 1 MiB of ASCII: the zero-copy layout, shared
    first = await make_sandbox(isolated_kind, context=text)
    second = await make_sandbox(isolated_kind, context=text)
    attack = (
        "import ctypes, sys\n"
        "ctypes.memmove(id(context) + sys.getsizeof('') - 1, b'XXXXX', 5)\n"
        "print(context[:5])"
    )
    hit = await first.execute(attack)
    assert hit.restarted or hit.stdout.strip() == "XXXXX"  # at most its own copy changed
    for sandbox in (second, first):
        result = await sandbox.execute("print(context[:5], len(context))")
        assert result.stdout.split() == ["ABCDE", str(len(text))], result.error
    assert text[:5] == "ABCDE"


def _context_buffers() -> int:
    """Context buffers this process holds open (a buffer left open by a failed load leaks)."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            count += "fastrlm-context" in os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
    return count


_first_chunk = threading.Lock()  # the chunk threads race for the first call of a hook


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 64 KiB and threads from 256 KiB: a 3 MB file is copied by every thread."""
    monkeypatch.setattr(_filecopy, "CHUNK", 64 << 10)
    monkeypatch.setattr(_filecopy, "THREADED_MIN", 256 << 10)


@pytest.mark.usefixtures("small_chunks")
@pytest.mark.parametrize("tail", ["é", "\x80"])
def test_a_non_ascii_byte_at_the_very_end_of_a_large_file_is_read_as_before(
    tmp_path: Path, tail: str,
) -> None:
    text = _text(70_000)  # about 3 MB, 47 chunks
    path = tmp_path / "big.log"
    path.write_bytes(text.encode() + tail.encode("utf-8" if tail == "é" else "latin-1"))
    before = _context_buffers()
    loaded = load_context([path], shared=True)
    expected = text + ("é" if tail == "é" else "\ufffd")
    assert loaded.value == expected
    assert _protocol.shared_buffer(loaded.value) is None
    assert loaded.report.replaced == ([] if tail == "é" else [str(path)])
    assert _context_buffers() == before  # the half-filled buffer was closed


@pytest.mark.usefixtures("small_chunks")
def test_a_file_truncated_while_it_is_copied_is_read_as_it_now_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``logrotate --copytruncate`` cutting the log while it loads: the copy finds the file
    short, drops its buffer, and the loader reads what the file holds now (never a str with a
    hole of NULs where the cut part was)."""
    text = _text(70_000)
    path = _write(tmp_path, text)
    copy_chunk = _filecopy._copy_chunk
    cut = threading.Event()

    def truncating(*args: Any) -> bool:
        with _first_chunk:
            if not cut.is_set():
                os.truncate(path, len(text) // 2)
                cut.set()
        return copy_chunk(*args)

    monkeypatch.setattr(_filecopy, "_copy_chunk", truncating)
    before = _context_buffers()
    loaded = load_context([path], shared=True)
    assert cut.is_set()
    assert loaded.value == text[: len(text) // 2]
    assert _protocol.shared_buffer(loaded.value) is None
    assert _context_buffers() == before


@pytest.mark.usefixtures("small_chunks")
def test_a_file_that_grows_while_it_is_copied_gives_what_it_held_when_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An appended log: the text is the file as long as it was when opened, still shared."""
    text = _text(70_000)
    path = _write(tmp_path, text)
    copy_chunk = _filecopy._copy_chunk
    grown = threading.Event()

    def appending(*args: Any) -> bool:
        with _first_chunk:
            if not grown.is_set():
                with path.open("ab") as f:
                    f.write(b"appended later\n" * 10_000)
                grown.set()
        return copy_chunk(*args)

    monkeypatch.setattr(_filecopy, "_copy_chunk", appending)
    loaded = load_context([path], shared=True)
    assert grown.is_set()
    assert loaded.value == text
    assert _protocol.shared_buffer(loaded.value) is not None


def test_an_empty_file_a_fifo_and_a_device_are_refused_without_hanging(tmp_path: Path) -> None:
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    with pytest.raises(ContextError, match="the context is empty"):
        load_context([empty], shared=True)
    fifo = tmp_path / "pipe.log"
    os.mkfifo(fifo)  # no writer: a blocking open or read would wait forever
    with pytest.raises(ContextError, match="only regular files are read"):
        load_context([fifo], shared=True)
    with pytest.raises(ContextError, match="only regular files are read"):
        load_context(["/dev/zero"], shared=True)  # endless: a read to its end never ends


def test_a_shared_file_changed_in_place_is_caught_on_resume(tmp_path: Path) -> None:
    """The run's record names its context by the sha256 of its text, not by the file's
    identity: one byte changed, with the size and modification time put back, is refused on
    resume, and the same file loaded again resumes."""
    text = _text(60_000)
    path = _write(tmp_path, text)
    done = "```repl\nFINAL(str(len(context)))\n```"
    first_rlm = RLM(ScriptedLM([done], model="scripted/root"), ScriptedLM(["ok"]),
                    sandbox="none", trace=tmp_path / "home")
    first = first_rlm.completion("how long?", context=load_context([path], shared=True).value)
    assert first.answer == str(len(text))
    stat = os.stat(path)
    changed = text[:1000] + ("X" if text[1000] != "X" else "Y") + text[1001:]
    path.write_bytes(changed.encode())
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = RLM(ScriptedLM([], model="scripted/root"), ScriptedLM(["ok"]), sandbox="none",
                trace=tmp_path / "home")
    with pytest.raises(ReplayError, match="not run"):
        again.resume(first.trace_id, context=load_context([path], shared=True).value)
    path.write_bytes(text.encode())
    resumed = again.resume(first.trace_id, context=load_context([path], shared=True).value)
    assert resumed.answer == str(len(text))


@pytest.mark.parametrize("size", [1_000, 2_000_000], ids=["filled-at-once", "filled-in-a-thread"])
async def test_a_context_buffer_that_cannot_be_written_fails_the_start_however_it_is_filled(
    make_sandbox: MakeSandbox, monkeypatch: pytest.MonkeyPatch, size: int,
) -> None:
    """A small context is written into its buffer on the event loop (a thread's hand-off
    costs more), a large one in a thread: a failed write is the same clear error either way,
    and leaves no buffer behind."""
    def no_memory(fd: int, parts: object) -> None:
        os.close(fd)
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(_protocol, "fill_context_fd", no_memory)
    text = "z" * size
    assert _protocol.fills_at_once(text) is (size == 1_000)
    with pytest.raises(ContextError, match="cannot write the context buffer.*Cannot allocate"):
        await make_sandbox("process", context=text)
    assert _protocol.shared_buffer(text) is None
