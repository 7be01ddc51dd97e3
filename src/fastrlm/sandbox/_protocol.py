"""The wire between the host and the isolated worker: frames on two pipes, the context in a memfd.

This module is imported by both sides, so it uses the standard library only.
Why over 500 lines: it is the one place both ends of the wire agree on, byte for byte (frames,
the context buffer's layout, and the buffers the host shares between sandboxes).

Frames
    Pipe A carries host->worker frames, pipe B worker->host frames. A frame is a 4-byte
    big-endian unsigned length followed by that many bytes of UTF-8 JSON encoding one object
    whose ``"op"`` is a str. The host validates every worker frame (:func:`check_worker_frame`)
    and treats anything else as a protocol violation.

Request nonces
    Every request the host sends (``exec``, ``show_vars``) carries a fresh random ``nonce``
    (128 bits, from ``secrets``), and every frame the worker sends while serving it
    (``llm_query``, ``rlm_query``, ``done``, ``vars``) must echo it; the host's ``reply`` frames
    carry it too. A frame with another nonce, or any byte that arrives while no request is in
    flight, is a protocol violation: the host kills the worker and starts a fresh one. Model
    code cannot know a nonce before its request is sent, so frames it writes early, late or
    for another request are all caught (see ``docs/architecture.md``).

Context buffer
    The context is written once into a sealed memfd (no writes, no resizing) that every worker
    of a sandbox maps read-only, restarts included. Layout, all integers unsigned 64-bit
    little-endian::

        offset 0   magic   b"FRLMCTX1"
        offset 8   kind    1 = str, 2 = list[str], 3 = JSON (any other JSON-able value),
                           4 = ASCII str laid out for zero-copy, 5-9 = the kinds of :mod:`.kinds`
        offset 16  count   kind 2: number of list elements; kind 4: the data's offset;
                           kinds 5-9: the length of a JSON metadata object that follows; else 0
        offset 24  offsets (count + 1) u64 byte offsets into the data, kind 2 only
        then       data    UTF-8 (``surrogatepass``): the str, the concatenated elements, or JSON;
                           kinds 5-9: the metadata JSON, then the payload (see :mod:`.kinds`)

    A ``list[str]`` thus crosses as one buffer plus offsets, never one copy per element, and the
    worker decodes each element straight from the mapping.

    Kind 4 (a str of ASCII text of at least 1 MiB, the usual huge context) is not decoded at all:
    its bytes start at a page-aligned ``count`` and end with a NUL, and the worker maps the
    buffer copy-on-write and writes a CPython str header into the free bytes just before the
    data (one private page), so the worker's ``context`` *is* the buffer's pages, shared with
    the memfd. The host's str plus the memfd are then the whole cost: 2x the context, not 3x
    (the caller's str, the memfd and a decoded copy), and nothing is decoded at start. Where the
    interpreter's str layout is not one this knows (not CPython 3.8-3.13, or a free-threaded
    build), the worker decodes a copy as for kind 1.
"""

from __future__ import annotations

import concurrent.futures
import json
import mmap
import os
import struct
import sys
import threading
from typing import Any

from . import kinds
from ._hostops import HOST_CALL_OPS, parse_host_request

HEADER = struct.Struct(">I")
#: Largest frame either side accepts (prompts of a batch travel in one frame).
MAX_FRAME_BYTES = 256 * 1024 * 1024

CONTEXT_MAGIC = b"FRLMCTX1"
KIND_STR, KIND_LIST, KIND_JSON, KIND_ASCII = 1, 2, 3, 4
_PREFIX = struct.Struct("<8sQQ")
_IOV_BATCH = 512
_ZERO_COPY_MIN = 1 << 20
_CPYTHON = sys.implementation.name == "cpython"
Buffer = bytes | memoryview

HOST_OPS = frozenset({"load", "exec", "show_vars", "define", "reply", "shutdown"})
WORKER_OPS = frozenset({"ready", "fatal", "done", "vars", "defined"} | HOST_CALL_OPS)
FINAL_SOURCES = frozenset({"FINAL", "FINAL_VAR", "answer"})
#: Worker frames that belong to a request and must echo its nonce.
NONCE_OPS = frozenset({"done", "vars", "defined"} | HOST_CALL_OPS)


def new_nonce() -> str:
    """A request nonce: 128 random bits, unguessable by model code."""
    import secrets

    return secrets.token_hex(16)


class FrameError(ValueError):
    """A frame that breaks the protocol. The host turns it into ``ProtocolError``."""


def encode_frame(message: dict[str, Any]) -> bytes:
    """Serialise one message to a frame. Raises :class:`FrameError` past ``MAX_FRAME_BYTES``."""
    body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8", "surrogatepass"
    )
    if len(body) > MAX_FRAME_BYTES:
        raise FrameError(f"frame of {len(body):,} bytes exceeds {MAX_FRAME_BYTES:,}")
    return HEADER.pack(len(body)) + body


def decode_body(body: bytes | bytearray | memoryview) -> dict[str, Any]:
    """Parse a frame body into a message with a str ``op``; raises :class:`FrameError`."""
    try:
        message = json.loads(bytes(body).decode("utf-8", "surrogatepass"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise FrameError(f"frame is not UTF-8 JSON: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        raise FrameError("frame is not a JSON object with a str 'op'")
    return message


def _is_str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(x, str) for x in value)


def _optional(value: object, kind: type) -> bool:
    return value is None or isinstance(value, kind)


def check_worker_frame(message: dict[str, Any]) -> dict[str, Any]:
    """Validate a worker->host message field by field (a host call's fields by its
    :data:`._hostops.HOST_OPS` entry, the same check the in-process sandbox makes); returns it
    or raises FrameError."""
    op = message["op"]
    if op not in WORKER_OPS:
        raise FrameError(f"unknown op {op[:40]!r} from the worker")
    ok: bool
    if op in NONCE_OPS and not isinstance(message.get("nonce"), str):
        raise FrameError(f"{op!r} frame from the worker without a request nonce")
    if op in HOST_CALL_OPS:
        if not isinstance(message.get("id"), int):
            raise FrameError(f"malformed {op!r} frame from the worker: no int 'id'")
        try:
            parse_host_request(op, message)
        except (TypeError, ValueError) as exc:
            raise FrameError(f"malformed {op!r} frame from the worker: {exc}") from None
        ok = True
    elif op == "done":
        final = message.get("final")
        ok = (
            isinstance(message.get("stdout"), str)
            and isinstance(message.get("stderr"), str)
            and _optional(message.get("error"), str)
            and _optional(message.get("answer_content"), str)
            and _is_str_list(message.get("restored"))
            and isinstance(message.get("timed_out"), bool)
            and isinstance(message.get("dropped_bytes"), int)
            and (
                final is None
                or (
                    isinstance(final, dict)
                    and isinstance(final.get("text"), str)
                    and final.get("source") in FINAL_SOURCES
                )
            )
        )
    elif op == "ready":
        ok = isinstance(message.get("pid"), int) and _is_str_list(message.get("confined"))
    elif op == "defined":
        ok = _optional(message.get("error"), str)
    else:  # vars, fatal
        ok = isinstance(message.get("text"), str)
    if not ok:
        raise FrameError(f"malformed {op!r} frame from the worker")
    return message


# ---------------------------------------------------------------- worker side (blocking fds)
def read_exact(fd: int, n: int) -> bytes:
    """Read exactly ``n`` bytes from a blocking fd; raises EOFError on a short read."""
    parts: list[bytes] = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError("pipe closed")
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def read_frame(fd: int) -> dict[str, Any]:
    """Read one frame from a blocking fd (the worker's pipe A)."""
    (size,) = HEADER.unpack(read_exact(fd, HEADER.size))
    if size > MAX_FRAME_BYTES:
        raise FrameError(f"frame of {size:,} bytes exceeds {MAX_FRAME_BYTES:,}")
    return decode_body(read_exact(fd, size))


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to a blocking fd."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# ---------------------------------------------------------------- the context buffer
def context_parts(context: object) -> tuple[int, list[Buffer]]:
    """Encode ``context`` for the buffer: (kind, buffers to write in order, prefix first).
    A large ASCII ``str`` is not copied: its UTF-8 bytes are its own storage (see
    :func:`utf8_view`). Raises ``TypeError``/``ValueError`` for values JSON cannot carry
    (:class:`.kinds.KindError`, a ``ValueError``, for a rich kind that cannot be sent)."""
    kind, parts, _ = encode_context(context)
    return kind, parts


def encode_context(context: object) -> tuple[int, list[Buffer], kinds.Encoded | None]:
    """:func:`context_parts`, plus the :class:`.kinds.Encoded` form of a rich context (its
    read-only mounts and decoded size), or None for text and JSON."""
    if isinstance(context, str):
        data = utf8_view(context)
        if isinstance(data, memoryview):  # large compact ASCII: laid out for zero-copy
            start = _ascii_data_offset()
            pad = bytes(start - _PREFIX.size)
            prefix = _PREFIX.pack(CONTEXT_MAGIC, KIND_ASCII, start)
            return KIND_ASCII, [prefix, pad, data, b"\0"], None
        return KIND_STR, [_PREFIX.pack(CONTEXT_MAGIC, KIND_STR, 0), data], None
    if isinstance(context, (list, tuple)) and all(isinstance(x, str) for x in context):
        chunks = [utf8_view(x) for x in context]
        offsets = [0] * (len(chunks) + 1)
        total = 0
        for i, chunk in enumerate(chunks):
            total += len(chunk)
            offsets[i + 1] = total
        table = struct.pack(f"<{len(offsets)}Q", *offsets)
        prefix = _PREFIX.pack(CONTEXT_MAGIC, KIND_LIST, len(chunks))
        return KIND_LIST, [prefix, table, *chunks], None
    rich = kinds.encode(context)
    if rich is not None:
        meta = json.dumps(rich.meta, ensure_ascii=False).encode("utf-8", "surrogatepass")
        prefix = _PREFIX.pack(CONTEXT_MAGIC, rich.kind, len(meta))
        return rich.kind, [prefix, meta, *rich.payload], rich
    data = json.dumps(context, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return KIND_JSON, [_PREFIX.pack(CONTEXT_MAGIC, KIND_JSON, 0), data], None


def _ascii_data_offset() -> int:
    """Where kind 4 data starts: two allocation units in, so the str header the worker writes
    (at most 64 bytes) fits in the unit before the data, which the worker maps copy-on-write."""
    return 2 * mmap.ALLOCATIONGRANULARITY


def utf8_view(text: str) -> Buffer:
    """UTF-8 bytes of ``text``. For a large compact ASCII str on CPython this is a view of the
    str's own storage (ASCII is UTF-8), which saves a copy of the whole context; the view
    holds a reference to ``text``."""
    size = len(text)
    if size >= _ZERO_COPY_MIN and type(text) is str and text.isascii() and _CPYTHON:
        import ctypes

        address = id(text) + sys.getsizeof(text) - size - 1  # data follows the header, + NUL
        storage = (ctypes.c_char * size).from_address(address)
        storage.owner = text  # type: ignore[attr-defined]  # view -> array -> str stay alive
        view = memoryview(storage).cast("B")
        if view[:64] == text[:64].encode() and view[-64:] == text[-64:].encode():
            return view
    return text.encode("utf-8", "surrogatepass")


def new_context_fd() -> int:
    """An empty memfd for the context buffer (close-on-exec, sealable)."""
    return os.memfd_create("fastrlm-context", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)


def fill_context_fd(fd: int, parts: list[Buffer]) -> None:
    """Write ``parts`` into the empty memfd ``fd`` and seal it: no write, grow or shrink, ever.
    Closes ``fd`` in all cases (pass a dup): it can run in a thread while the worker boots."""
    import fcntl

    try:
        total = sum(len(p) for p in parts)
        if total:
            os.posix_fallocate(fd, 0, total)  # one allocation instead of growing page by page
        for start in range(0, len(parts), _IOV_BATCH):
            batch = [memoryview(p) for p in parts[start : start + _IOV_BATCH] if len(p)]
            while batch:
                written = os.writev(fd, batch)
                while batch and written >= len(batch[0]):
                    written -= len(batch[0])
                    batch.pop(0)
                if batch and written:
                    batch[0] = batch[0][written:]
        seals = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    finally:
        os.close(fd)


def write_context_fd(parts: list[Buffer]) -> int:
    """Write ``parts`` into a new sealed memfd and return its fd."""
    fd = new_context_fd()
    try:
        fill_context_fd(os.dup(fd), parts)
    except BaseException:
        os.close(fd)
        raise
    return fd


def mapped_text(fd: int, size: int, name: str = "the file") -> str | None:
    """The text of the file open at ``fd`` (``size`` bytes, read from offset 0 without moving
    the file position) as a str that lives in a sealed kind 4 buffer: the file is copied once
    into the buffer, and the str *is* the buffer's pages (as in the worker), so the host and
    every worker share one copy of the text, never two.

    The file is first read once and checked for ASCII (:func:`._filecopy.check_ascii`; a tenth
    of the copy's time), then its first and last chunks are copied, and the str is returned
    while a thread copies the rest (:func:`._filecopy.copy_ascii`, checked again on the way),
    so that a run's first root request goes out during the copy. Until that copy ends, only
    the str's length and its two ends are its text: whoever reads more waits for
    :func:`text_filling` (a sandbox waits for its buffer's ``written``, as for any context).
    That future fails with :class:`ContextError` when ``name`` changed in between (it shrank,
    or a byte is no longer ASCII).

    None when the text is not ASCII, shorter than 1 MiB, the file shrank before its ends were
    copied, or this interpreter's str layout is not one :func:`_mapped_str` knows: the caller
    then reads the file as usual. Raises ``OSError`` from reading the file or filling the
    buffer."""
    if size < _ZERO_COPY_MIN or not _CPYTHON:
        return None
    from ._filecopy import CHUNK, check_ascii, copy_ascii

    if not check_ascii(fd, size):
        return None
    start = _ascii_data_offset()
    total = start + size + 1
    head = min(CHUNK, size)
    tail = max(head, (size - 1) // CHUNK * CHUNK)  # the last chunk's offset
    buffer = new_context_fd()
    try:
        os.ftruncate(buffer, total)  # the str's mapping spans pages the copy has yet to write
        os.pwrite(buffer, _PREFIX.pack(CONTEXT_MAGIC, KIND_ASCII, start), 0)
        os.pwrite(buffer, b"\0", start + size)
        ends = copy_ascii(fd, buffer, head, start) and copy_ascii(fd, buffer, size, start, tail)
        text = _mapped_str(buffer, total, start, populate=False) if ends else None
        if text is not None and tail == head:
            _seal(buffer)
        rest = os.dup(fd) if text is not None and tail > head else -1
    except BaseException:
        os.close(buffer)
        raise
    if text is None:
        os.close(buffer)
        return None
    encoded: concurrent.futures.Future[tuple[int, int, kinds.Encoded | None]] = (
        concurrent.futures.Future())
    encoded.set_result((KIND_ASCII, total, None))
    written: concurrent.futures.Future[None] = concurrent.futures.Future()
    held = SharedBuffer(buffer, text, encoded, written, users=1, lives_in=True)
    with _SHARED_LOCK:  # held for good: the str lives in this buffer for the life of the process
        _SHARED[id(text)] = held
    if rest < 0:
        written.set_result(None)
        return text
    try:
        threading.Thread(target=_copy_rest, args=(rest, held, head, tail, start, name),
                         name="fastrlm-file-copy", daemon=True).start()
    except BaseException as exc:
        os.close(rest)
        written.set_exception(exc)
        raise
    return text


def _copy_rest(src: int, held: SharedBuffer, first: int, end: int, at: int, name: str) -> None:
    """The thread of :func:`mapped_text`: copy ``[first, end)`` of ``src`` (closed after), seal
    the buffer, complete ``held.written`` (or fail it with what went wrong)."""
    from .._foundation.errors import ContextError  # host side only: the worker never copies
    from ._filecopy import copy_ascii

    try:
        whole = copy_ascii(src, held.fd, end, at, first)
        if whole:
            _seal(held.fd)
    except OSError as exc:
        held.written.set_exception(
            ContextError(f"cannot copy {name} into the context buffer: {exc}"))
        return
    except BaseException as exc:  # noqa: BLE001 - carried to whoever waits for the text
        held.written.set_exception(exc)
        return
    finally:
        os.close(src)
    if whole:
        held.written.set_result(None)
    else:
        held.written.set_exception(ContextError(
            f"{name} changed while it was copied (it is shorter now, or holds a byte that is "
            "not ASCII where it held text): its text cannot be answered from; load it again"))


def _seal(fd: int) -> None:
    import fcntl

    seals = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)


async def text_whole(context: object) -> None:
    """Wait until the text of ``context`` is all there (:func:`text_filling`), without
    blocking the event loop; raises the copy's error. At once for any other context. Host
    side only (imported here, asyncio would be paid for by every worker's start)."""
    filling = text_filling(context)
    if filling is not None:
        from .._foundation.threads import thread_result

        await thread_result(filling)


def text_filling(context: object) -> concurrent.futures.Future[None] | None:
    """The copy still filling this very str, which lives in its buffer (:func:`mapped_text`),
    or the copy's failure; None when its text is whole (any other object: always)."""
    held = shared_buffer(context) if type(context) is str else None
    if held is None or not held.lives_in or (held.written.done() and
                                             held.written.exception() is None):
        return None
    return held.written


class SharedBuffer:
    """One context's sealed buffer, shared by every sandbox started on that same object while
    any of them runs (``k`` candidates over one context map one buffer, not ``k``), and by the
    str of :func:`mapped_text`, which lives in it. ``encoded`` gives (kind, size, rich form)
    once the context is encoded, ``written`` completes once the buffer is filled and sealed;
    the sandbox that :func:`acquire_buffer` answered ``first`` does both
    (:func:`fill_shared`)."""

    def __init__(
        self, fd: int, context: object,
        encoded: concurrent.futures.Future[tuple[int, int, kinds.Encoded | None]],
        written: concurrent.futures.Future[None], users: int = 0, lives_in: bool = False,
    ) -> None:
        self.fd = fd
        self.lives_in = lives_in  # the context is a str made in this buffer (mapped_text)
        self.context = context  # held, so its id cannot be reused while the buffer is shared
        self.encoded = encoded
        self.written = written
        self.users = users


_SHARED: dict[int, SharedBuffer] = {}
_SHARED_LOCK = threading.Lock()


def shared_buffer(context: object) -> SharedBuffer | None:
    """The buffer now shared for this very object (a str or bytes), else None."""
    held = _SHARED.get(id(context))
    return held if held is not None and held.context is context else None


def acquire_buffer(context: object) -> tuple[SharedBuffer, bool]:
    """The buffer of ``context`` (this very object) and whether the caller is the first to ask
    for it, and so must fill it (:func:`fill_shared`). Only a str or bytes is shared (a list or
    dict may change between two runs over it); any other context gets a buffer of its own.
    Pair every call with :func:`release_buffer`."""
    shareable = type(context) in (str, bytes)  # immutable: one snapshot serves every user
    with _SHARED_LOCK:
        held = shared_buffer(context)
        if held is not None:
            held.users += 1
            return held, False
        # Two users: the caller, and the fill that the caller starts (it releases its own hold,
        # so a caller that gives up early cannot close the fd under the thread writing it).
        held = SharedBuffer(new_context_fd(), context, concurrent.futures.Future(),
                            concurrent.futures.Future(), users=2)
        if shareable:
            _SHARED[id(context)] = held
        return held, True


#: A str or bytes context up to this size is encoded and written on the caller's thread:
#: handing it to a thread and back costs more than the copy.
FILL_AT_ONCE_BYTES = 256 << 10


def fills_at_once(context: object) -> bool:
    """Whether :func:`fill_shared` for ``context`` is quick enough for the event loop: a
    small str or bytes (a list or dict is encoded as JSON, whose cost its size does not say)."""
    return isinstance(context, (str, bytes)) and len(context) <= FILL_AT_ONCE_BYTES


def fill_shared(held: SharedBuffer) -> None:
    """Encode the context into its buffer and seal it (in a thread, or at once for a small one:
    :func:`fills_at_once`): ``encoded`` and then
    ``written`` complete, or carry the error (a context that cannot be sent, a buffer that
    cannot be written) to every sandbox waiting on them. Releases the fill's own hold."""
    try:
        try:
            kind, parts, rich = encode_context(held.context)
        except BaseException as exc:  # noqa: BLE001 - carried to every sandbox waiting on it
            held.encoded.set_exception(exc)
            held.written.set_exception(exc)
            return
        held.encoded.set_result((kind, sum(len(p) for p in parts), rich))
        try:
            fill_context_fd(os.dup(held.fd), parts)
        except BaseException as exc:  # noqa: BLE001 - carried to every sandbox waiting on it
            held.written.set_exception(exc)
            return
        held.written.set_result(None)
    finally:
        release_buffer(held)


def release_buffer(held: SharedBuffer) -> None:
    """One sandbox is done with ``held``: the last one closes the buffer."""
    with _SHARED_LOCK:
        held.users -= 1
        if held.users > 0:
            return
        if _SHARED.get(id(held.context)) is held:
            del _SHARED[id(held.context)]
    os.close(held.fd)


def is_sealed(fd: int) -> bool:
    """True when ``fd`` can no longer be written, grown or shrunk."""
    import fcntl

    wanted = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
    return fcntl.fcntl(fd, fcntl.F_GET_SEALS) & wanted == wanted


def load_context(fd: int) -> object:
    """Map the buffer read-only and decode the context once (worker side). Raises ValueError
    for a buffer that does not follow the layout. A kind 4 str is not decoded: it lives in a
    copy-on-write mapping of the buffer for the rest of the process (see the module
    docstring); the other kinds are copies, and the mapping is closed."""
    size = os.fstat(fd).st_size
    if size < _PREFIX.size:
        raise ValueError("context buffer too short")
    magic, kind, count = _PREFIX.unpack(os.pread(fd, _PREFIX.size, 0))
    if magic != CONTEXT_MAGIC:
        raise ValueError("bad context buffer magic")
    if kind == KIND_ASCII:
        text = _mapped_str(fd, size, count)
        if text is not None:
            return text
    if kind in kinds.KINDS:
        return _load_rich(fd, size, kind, count)
    # MAP_POPULATE maps every page at once: decoding then runs ~5x faster than on page faults.
    flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
    mapping = mmap.mmap(fd, size, flags=flags, prot=mmap.PROT_READ)
    view = memoryview(mapping)
    try:
        if kind == KIND_STR:
            return str(view[_PREFIX.size :], "utf-8", "surrogatepass")
        if kind == KIND_ASCII:  # this interpreter's str layout is unknown: decode a copy
            return str(view[count : size - 1], "ascii")
        if kind == KIND_JSON:
            return json.loads(str(view[_PREFIX.size :], "utf-8", "surrogatepass"))
        if kind != KIND_LIST:
            raise ValueError(f"unknown context kind {kind}")
        table_end = _PREFIX.size + 8 * (count + 1)
        table = view[_PREFIX.size : table_end]
        offsets = table.cast("Q") if sys.byteorder == "little" else _big_endian_offsets(table)
        data = view[table_end:]
        try:
            return [
                str(data[offsets[i] : offsets[i + 1]], "utf-8", "surrogatepass")
                for i in range(count)
            ]
        finally:
            if isinstance(offsets, memoryview):
                offsets.release()
            table.release()
            data.release()
    finally:
        view.release()
        mapping.close()


def _load_rich(fd: int, size: int, kind: int, meta_len: int) -> object:
    """A :mod:`.kinds` context: its metadata, then its payload as a read-only mapping that
    lives as long as the rebuilt object needs it (Arrow arrays point into it)."""
    start = _PREFIX.size + meta_len
    if start > size:
        raise ValueError("context buffer too short for its metadata")
    meta = json.loads(os.pread(fd, meta_len, _PREFIX.size).decode("utf-8", "surrogatepass"))
    if not isinstance(meta, dict):
        raise ValueError("context metadata is not a JSON object")
    payload: mmap.mmap | None = None
    if size > start:
        payload = mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
    return kinds.rebuild(kind, meta, payload, start)


#: CPython versions whose compact ASCII str this knows: refcount, type, length and hash are
#: the first four words, the rest of the header is copied from a real str.
_MAPPED_STR_VERSIONS = ((3, 8), (3, 13))


def _mapped_str(fd: int, size: int, start: int, *, populate: bool = True) -> str | None:
    """The kind 4 str, made in place: the buffer mapped private and read-only except for the
    allocation unit before the data, where a str header (copied from a fresh compact ASCII str,
    then given the length, no hash and a refcount that never falls to zero) is written. None
    where this interpreter's layout is not known, or the buffer is not laid out for it."""
    import ctypes
    import sysconfig

    low, high = _MAPPED_STR_VERSIONS
    if (
        not _CPYTHON
        or not low <= sys.version_info[:2] <= high
        or sysconfig.get_config_var("Py_GIL_DISABLED")
        or start % mmap.ALLOCATIONGRANULARITY
        or start < mmap.ALLOCATIONGRANULARITY + _PREFIX.size
        or size <= start
    ):
        return None
    length = size - start - 1
    template = "".join(["ab", "c"])  # fresh: not interned, compact ASCII
    header = sys.getsizeof(template) - len(template) - 1
    if header > 64 or header < 32:
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    flags = mmap.MAP_PRIVATE | (getattr(mmap, "MAP_POPULATE", 0) if populate else 0)
    base = libc.mmap(None, size, mmap.PROT_READ, flags, fd, 0)
    if base is None or base == ctypes.c_void_p(-1).value:
        return None
    unit = mmap.ALLOCATIONGRANULARITY
    if libc.mprotect(base + start - unit, unit, mmap.PROT_READ | mmap.PROT_WRITE) != 0:
        libc.munmap(base, size)
        return None
    address = base + start - header
    ctypes.memmove(address, id(template), header)
    words = (ctypes.c_ssize_t * 4).from_address(address)
    words[0] = 1 << 40  # refcount: never reaches zero, so the str is never freed
    words[2] = length
    words[3] = -1  # hash not computed yet
    text = ctypes.cast(address, ctypes.py_object).value
    edge = min(64, length)
    if (
        type(text) is not str
        or len(text) != length
        or not text.isascii()
        or text[:edge].encode() != os.pread(fd, edge, start)
        or text[length - edge :].encode() != os.pread(fd, edge, size - 1 - edge)
    ):
        del text  # the last reference into the mapping goes before the mapping does
        libc.munmap(base, size)
        return None
    return text


def _big_endian_offsets(table: memoryview) -> list[int]:
    return list(struct.unpack(f"<{len(table) // 8}Q", table))
