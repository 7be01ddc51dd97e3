"""The wire between the host and the isolated worker: frames on two pipes, the context in a memfd.

This module is imported by both sides, so it uses the standard library only.

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
        offset 8   kind    1 = str, 2 = list[str], 3 = JSON (any other JSON-able value)
        offset 16  count   number of list elements (0 for kinds 1 and 3)
        offset 24  offsets (count + 1) u64 byte offsets into the data, kind 2 only
        then       data    UTF-8 (``surrogatepass``): the str, the concatenated elements, or JSON

    A ``list[str]`` thus crosses as one buffer plus offsets, never one copy per element, and the
    worker decodes each element straight from the mapping.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import sys
from typing import Any

from ._hostcalls import HOST_CALL_OPS, TOOL_OP, wire_request, wire_tool_request

HEADER = struct.Struct(">I")
#: Largest frame either side accepts (prompts of a batch travel in one frame).
MAX_FRAME_BYTES = 256 * 1024 * 1024

CONTEXT_MAGIC = b"FRLMCTX1"
KIND_STR, KIND_LIST, KIND_JSON = 1, 2, 3
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
    """Validate a worker->host message field by field (a host call's fields by
    :func:`._hostcalls.wire_request`, the same check the in-process sandbox makes); returns it or
    raises FrameError."""
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
            if op == TOOL_OP:
                wire_tool_request(message)
            else:
                wire_request(op, message)
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
    """Encode ``context`` for the buffer: (kind, buffers to write in order after the prefix).
    A large ASCII ``str`` is not copied: its UTF-8 bytes are its own storage (see
    :func:`_utf8`). Raises ``TypeError``/``ValueError`` for values JSON cannot carry."""
    if isinstance(context, str):
        return KIND_STR, [_PREFIX.pack(CONTEXT_MAGIC, KIND_STR, 0), _utf8(context)]
    if isinstance(context, (list, tuple)) and all(isinstance(x, str) for x in context):
        chunks = [_utf8(x) for x in context]
        offsets = [0] * (len(chunks) + 1)
        total = 0
        for i, chunk in enumerate(chunks):
            total += len(chunk)
            offsets[i + 1] = total
        table = struct.pack(f"<{len(offsets)}Q", *offsets)
        return KIND_LIST, [_PREFIX.pack(CONTEXT_MAGIC, KIND_LIST, len(chunks)), table, *chunks]
    data = json.dumps(context, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return KIND_JSON, [_PREFIX.pack(CONTEXT_MAGIC, KIND_JSON, 0), data]


def _utf8(text: str) -> Buffer:
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


def is_sealed(fd: int) -> bool:
    """True when ``fd`` can no longer be written, grown or shrunk."""
    import fcntl

    wanted = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
    return fcntl.fcntl(fd, fcntl.F_GET_SEALS) & wanted == wanted


def load_context(fd: int) -> object:
    """Map the buffer read-only and decode the context once (worker side). Raises ValueError
    for a buffer that does not follow the layout."""
    size = os.fstat(fd).st_size
    if size < _PREFIX.size:
        raise ValueError("context buffer too short")
    # MAP_POPULATE maps every page at once: decoding then runs ~5x faster than on page faults.
    flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
    mapping = mmap.mmap(fd, size, flags=flags, prot=mmap.PROT_READ)
    view = memoryview(mapping)
    try:
        magic, kind, count = _PREFIX.unpack_from(view)
        if magic != CONTEXT_MAGIC:
            raise ValueError("bad context buffer magic")
        if kind == KIND_STR:
            return str(view[_PREFIX.size :], "utf-8", "surrogatepass")
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


def _big_endian_offsets(table: memoryview) -> list[int]:
    return list(struct.unpack(f"<{len(table) // 8}Q", table))
