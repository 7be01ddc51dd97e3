"""Context kinds beyond text and JSON: bytes, images, DataFrames and Arrow tables, files.

(This module is over 500 lines for a reason: each kind's host side, ``encode``, and worker side,
``rebuild``, stay in one file so that a change to one is made beside the other.)

Imported by both sides (the worker too), so it imports the standard library only; pandas,
pyarrow and Pillow are imported inside the functions that need them, and only when the context
is of their kind. The host side :func:`encode` turns a context into a kind, a metadata object
and payload buffers for the context memfd (layout in :mod:`._protocol`); the worker side
:func:`rebuild` turns them back into the object model code sees. :func:`in_process` gives the
same object for the in-process sandbox. What the root model is told about each kind is
:mod:`fastrlm.context._describe` (host only).

=============  ========================================  =========================================
kind           host value                                in the REPL
=============  ========================================  =========================================
bytes          ``bytes`` / ``bytearray`` / memoryview     ``bytes`` (an image's MIME type sniffed)
image          a PIL image                                a PIL image when Pillow imports there,
                                                          else its encoded bytes
arrow          a pandas DataFrame or pyarrow Table        the same type (Arrow IPC in the memfd;
                                                          a Table's arrays point into the mapping)
files          a ``pathlib.Path`` to a directory or file  :class:`FileTree` over the read-only
                                                          mount: relative path -> contents
parquet        a ``pathlib.Path`` to a ``.parquet`` file  a DataFrame (pandas installed) or a
                                                          Table, read from the read-only mount
named          a dict of named inputs, one of them of a   a dict of the rebuilt inputs; each is
               kind above (the rest str / list of str)    also a REPL variable of its own name
=============  ========================================  =========================================

Named inputs (:func:`input_names`): a dict whose keys are Python identifiers (not keywords,
not starting with ``_``, not a name the REPL already has: :data:`RESERVED_NAMES`) and whose
values are texts (a str or a list of str) or kinds above, e.g. ``{"users": df1, "events": df2,
"notes": "..."}``. ``context`` is the dict and each input is also bound by its name (the
runtime's ``define``), on every sandbox. A dict of texts alone still travels as JSON; one with
a rich value travels as ``named``: each input encoded as its own kind (texts as JSON), their
payloads one after another.
"""

from __future__ import annotations

import base64
import os
import stat
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

KIND_BYTES, KIND_IMAGE, KIND_ARROW, KIND_FILES, KIND_PARQUET = 5, 6, 7, 8, 9
KIND_NAMED = 10
KINDS = frozenset({KIND_BYTES, KIND_IMAGE, KIND_ARROW, KIND_FILES, KIND_PARQUET, KIND_NAMED})
#: An input of a ``named`` context that is text: its JSON (a str or a list of str).
_TEXT_INPUT = 0

#: Names the REPL has before any input (its functions and ``context``, ``answer``): an input
#: may not take one.
RESERVED_NAMES = frozenset({
    "context", "answer", "FINAL", "FINAL_VAR", "SHOW_VARS", "ToolError", "llm_query",
    "llm_query_batched", "rlm_query", "rlm_query_batched",
})

#: What ``context`` may be, for the error that refuses anything else.
ACCEPTED = (
    "a str; a list of str; a JSON-serialisable value (dict, list, numbers); bytes; a "
    "pathlib.Path to a directory or a file (a .parquet file becomes a DataFrame); a pandas "
    "DataFrame or pyarrow Table; a PIL image; a dict of named inputs of these kinds or texts "
    "({'users': df1, 'events': df2}: each a REPL variable)"
)
#: Image types vision models take, by the magic bytes that open their files.
IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})

Buffer = bytes | memoryview


@dataclass(frozen=True, slots=True)
class Encoded:
    """A context ready for the memfd: its kind, JSON ``meta``, ``payload`` buffers, the host
    paths the worker must be able to read (``mounts``, read-only) and about how many bytes the
    rebuilt object takes in the worker (``decoded_bytes``, for its memory limit)."""

    kind: int
    meta: dict[str, Any]
    payload: list[Buffer] = field(default_factory=list)
    mounts: tuple[str, ...] = ()
    decoded_bytes: int = 0


class KindError(ValueError):
    """A context of a known kind that cannot be used (missing package, unreadable path). The
    host turns it into :class:`fastrlm.ContextError`."""


# ---------------------------------------------------------------- recognising a kind
def _type_is(value: object, module: str, name: str) -> bool:
    """``value`` is an instance of ``module.name`` (or a subclass), without importing it."""
    return any(
        klass.__name__ == name and klass.__module__.split(".")[0] == module
        for klass in type(value).__mro__
    )


def is_dataframe(value: object) -> bool:
    return _type_is(value, "pandas", "DataFrame")


def is_arrow_table(value: object) -> bool:
    return _type_is(value, "pyarrow", "Table")


def is_pil_image(value: object) -> bool:
    return _type_is(value, "PIL", "Image") and hasattr(value, "save") and hasattr(value, "size")


def is_path(value: object) -> bool:
    return isinstance(value, os.PathLike) and not isinstance(value, (str, bytes))


def is_rich(value: object) -> bool:
    """True for the kinds this module handles (everything else is text or JSON)."""
    return (
        isinstance(value, (bytes, bytearray, memoryview))
        or is_path(value)
        or is_dataframe(value)
        or is_arrow_table(value)
        or is_pil_image(value)
    )


def _is_text(value: object) -> bool:
    return isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(x, str) for x in value))


def input_names(context: object) -> list[str] | None:
    """The names of ``context``'s inputs when it is a dict of named inputs (the module
    docstring), else None. Raises ``ValueError`` naming the key for a dict that holds a rich
    value (so it can only be named inputs) with a key that cannot be a variable."""
    if not isinstance(context, dict) or not context:
        return None
    values = list(context.values())
    # a FileTree is what a directory input is once rebuilt (the runtime asks too)
    if not all(_is_text(v) or is_rich(v) or isinstance(v, FileTree) for v in values):
        return None
    problem = next(((k, why) for k in context if (why := _name_problem(k)) is not None), None)
    if problem is None:
        return list(context)
    if any(is_rich(v) for v in values):
        key, why = problem
        raise ValueError(
            f"named input {key!r} {why}: the names of a dict of inputs become REPL variables, "
            "so each must be a Python identifier that does not start with '_' and is not one "
            f"of {', '.join(sorted(RESERVED_NAMES))}")
    return None  # a dict of texts with other keys: a JSON value, as always


def _name_problem(key: object) -> str | None:
    import keyword

    if not isinstance(key, str) or not key.isidentifier():
        return "is not a Python identifier"
    if keyword.iskeyword(key) or key.startswith("_"):
        return "is a keyword or starts with '_'"
    if key in RESERVED_NAMES or (key.startswith("context_") and key[8:].isdigit()):
        return "is a name the REPL already has"
    return None


def is_named(value: object) -> bool:
    """A dict of named inputs with at least one rich input (it cannot travel as JSON)."""
    return (isinstance(value, dict) and any(is_rich(v) for v in value.values())
            and input_names(value) is not None)


def sniff_image(data: bytes | bytearray | memoryview) -> str | None:
    """The MIME type of image bytes a vision model takes, from their magic bytes, or None."""
    head = bytes(data[:16])
    for magic, mime in IMAGE_MAGIC:
        if head.startswith(magic):
            return mime
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def image_size(data: bytes | bytearray | memoryview) -> tuple[int, int] | None:
    """(width, height) of PNG or GIF bytes from their header, else through Pillow when it is
    installed, else None."""
    head = bytes(data[:32])
    if head.startswith(b"\x89PNG") and len(head) >= 24:
        width, height = struct.unpack(">II", head[16:24])
        return int(width), int(height)
    if head[:4] in (b"GIF8",) and len(head) >= 10:
        width, height = struct.unpack("<HH", head[6:10])
        return int(width), int(height)
    try:
        import io

        from PIL import Image  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    try:
        with Image.open(io.BytesIO(bytes(data))) as image:
            return int(image.size[0]), int(image.size[1])
    except Exception:  # noqa: BLE001 - Pillow raises many types for bytes it cannot read
        return None


def image_bytes(image: Any) -> tuple[bytes, str]:
    """A PIL image encoded for the wire: (bytes, MIME type). PNG, or its own format when that
    is JPEG, GIF or WebP; modes PNG cannot hold are converted to RGB first."""
    import io

    fmt = str(getattr(image, "format", None) or "PNG").upper()
    mime = f"image/{fmt.lower()}"
    if mime not in IMAGE_TYPES:
        fmt, mime = "PNG", "image/png"
    if fmt == "PNG" and image.mode not in ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue(), mime


def image_part(value: object, what: str) -> dict[str, str]:
    """One image as it crosses to the host: ``{"media_type": ..., "data": <base64>}``, from
    image bytes (PNG, JPEG, GIF or WebP) or a PIL image. Raises ``TypeError`` for anything
    else and ``ValueError`` for bytes that are not such an image."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        mime = sniff_image(data)
        if mime is None:
            raise ValueError(
                f"{what}: these bytes are not a PNG, JPEG, GIF or WebP image (their first "
                f"bytes are {data[:8]!r}); pass image file bytes or a PIL image"
            )
    elif is_pil_image(value):
        data, mime = image_bytes(value)
    else:
        raise TypeError(
            f"{what}: an image must be bytes (PNG, JPEG, GIF or WebP) or a PIL image, not "
            f"{type(value).__name__}"
        )
    return {"media_type": mime, "data": base64.b64encode(data).decode("ascii")}


# ---------------------------------------------------------------- host side
def encode(context: object) -> Encoded | None:
    """The memfd form of a rich context (None for text and JSON values). Raises
    :class:`KindError` for a known kind that cannot be sent (a missing package, a path that
    cannot be read)."""
    if isinstance(context, (bytes, bytearray, memoryview)):
        data = context if isinstance(context, bytes) else bytes(context)
        return Encoded(KIND_BYTES, {"mime": sniff_image(data)}, [data],
                       decoded_bytes=len(data))
    if is_pil_image(context):
        data, mime = image_bytes(context)
        width, height = context.size  # type: ignore[attr-defined]
        return Encoded(KIND_IMAGE, {"mime": mime}, [data],
                       decoded_bytes=len(data) + 4 * int(width) * int(height))
    if is_dataframe(context) or is_arrow_table(context):
        return _encode_arrow(context)
    if is_path(context):
        return encode_path(context)
    if is_named(context):
        return _encode_named(context)  # type: ignore[arg-type]
    return None


def _encode_named(context: dict[str, object]) -> Encoded:
    """Each input as its own kind (texts as JSON), its payload after the previous one's."""
    import json

    entries: list[dict[str, Any]] = []
    payload: list[Buffer] = []
    mounts: list[str] = []
    decoded = 0
    for name, value in context.items():
        inner = None if _is_text(value) else encode(value)
        if inner is None:
            data = json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
            inner = Encoded(_TEXT_INPUT, {}, [data], decoded_bytes=2 * len(data))
        size = sum(len(part) for part in inner.payload)
        entries.append({"name": name, "kind": inner.kind, "meta": inner.meta, "size": size})
        payload.extend(inner.payload)
        mounts.extend(inner.mounts)
        decoded += inner.decoded_bytes + size
    return Encoded(KIND_NAMED, {"inputs": entries}, payload,
                   mounts=tuple(dict.fromkeys(mounts)), decoded_bytes=decoded)


def _pyarrow(what: str) -> Any:
    try:
        import pyarrow
    except ImportError:
        raise KindError(
            f"{what} needs pyarrow to cross to the sandbox: pip install pyarrow"
        ) from None
    return pyarrow


def _encode_arrow(context: Any) -> Encoded:
    pa = _pyarrow("a DataFrame context" if is_dataframe(context) else "an Arrow table")
    kind = "DataFrame" if is_dataframe(context) else "Table"
    table = pa.Table.from_pandas(context) if kind == "DataFrame" else context
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    buffer = sink.getvalue()
    return Encoded(KIND_ARROW, {"type": kind}, [memoryview(buffer)],
                   decoded_bytes=2 * buffer.size)


def encode_path(context: Any) -> Encoded:
    given = os.path.abspath(os.fspath(context))
    if not os.path.exists(given):
        raise KindError(f"context path {given} does not exist")
    path = os.path.realpath(given)  # a bind or Landlock rule needs the real path
    if path == "/":
        raise KindError("context path / is the whole file system: pass a directory below it")
    if os.path.isfile(path) and path.lower().endswith(".parquet"):
        _pyarrow("a Parquet context")
        import pyarrow.parquet as pq

        try:
            pq.ParquetFile(path).close()  # reads the footer: is it Parquet at all?
        except (OSError, ValueError) as exc:
            raise KindError(f"context path {path} is not a readable Parquet file: {exc}") from exc
        # decompressed columns and the DataFrame built from them: several times the file
        return Encoded(KIND_PARQUET, {"path": path, "type": _parquet_type()}, [],
                       mounts=(path,), decoded_bytes=8 * os.path.getsize(path))
    if os.path.isfile(path):
        root, files = os.path.dirname(path), [os.path.basename(path)]
        mount = path
    elif os.path.isdir(path):
        root, files, mount = path, list_files(path), path
    else:
        raise KindError(f"context path {path} is neither a file nor a directory")
    if not os.access(mount, os.R_OK):
        raise KindError(f"context path {path} is not readable")
    return Encoded(KIND_FILES, {"root": root, "files": files}, [], mounts=(mount,))


def _parquet_type() -> str:
    """What a Parquet context becomes: a DataFrame where pandas is installed, else a Table."""
    import importlib.util

    return "DataFrame" if importlib.util.find_spec("pandas") is not None else "Table"


def list_files(root: str) -> list[str]:
    """The regular files under ``root``, as sorted relative POSIX paths (host side).

    The walk is the loader's (:class:`fastrlm._foundation.files.TreeWalker`, default
    :class:`~fastrlm.context.LoadLimits`): symbolic links, FIFOs, sockets and devices are left
    out, and a tree past its files, depth or time bound is a :class:`KindError` naming it.
    A file with a hard link outside ``root`` (more links than the walk found inside) is a
    :class:`KindError`: the directory is mounted whole, so the sandbox would read what that
    link names, wherever it lies."""
    from .._foundation.errors import ContextError
    from .._foundation.files import LoadLimits, TreeWalker

    found: list[str] = []
    links: dict[tuple[int, int], tuple[str, int, int]] = {}  # inode -> (rel, nlink, seen)

    def keep_file(path: str, rel: str) -> None:
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode):
            return  # a symbolic link (to a file): the sandbox could not follow it out
        found.append(rel)
        if info.st_nlink > 1:
            key = (info.st_dev, info.st_ino)
            first, nlink, seen = links.get(key, (rel, info.st_nlink, 0))
            links[key] = (first, nlink, seen + 1)

    def descend(path: str, rel: str) -> bool:
        return True

    def skip(rel: str, reason: str) -> None:
        return None

    try:
        for path, rel, is_dir in TreeWalker(LoadLimits()).walk(root, descend=descend, skip=skip):
            if not is_dir:
                keep_file(path, rel)
    except (ContextError, OSError) as exc:
        raise KindError(f"context path {root}: {exc}") from exc
    outside = [(rel, nlink, seen) for rel, nlink, seen in links.values() if nlink > seen]
    if outside:
        rel, nlink, seen = outside[0]
        raise KindError(
            f"context directory {root} holds {len(outside):,} file(s) with a hard link outside "
            f"it (first: {rel}, {nlink} links, {seen} inside): the sandbox would read the file "
            "that link names. Copy the directory without hard links (cp -r) or remove them"
        )
    return found


def in_process(context: object) -> object:
    """What the in-process sandbox's ``context`` is: the object the worker would rebuild
    (a :class:`FileTree` or a table read from Parquet for a Path, the caller's object
    otherwise)."""
    if is_path(context):
        encoded = encode_path(context)
        return rebuild(encoded.kind, encoded.meta, None, 0)
    if is_named(context):
        return {name: in_process(value) for name, value in context.items()}  # type: ignore[attr-defined]
    if isinstance(context, (bytearray, memoryview)):
        return bytes(context)
    return context


# ---------------------------------------------------------------- worker side
class FileTree(Mapping[str, Any]):
    """A directory context: each file's path relative to :attr:`root` (POSIX separators) maps
    to its contents, read from disk when asked for (a ``.parquet`` file as a table, a
    DataFrame where pandas imports, else a pyarrow Table, when pyarrow imports; ``str`` when it
    is UTF-8, else ``bytes``).
    Only the listed files are keys, so ``context['../x']`` is a ``KeyError``; the directory is
    mounted read-only in the isolated sandboxes."""

    def __init__(self, root: str, files: list[str]) -> None:
        self.root = root
        self._files = tuple(files)
        self._index = frozenset(self._files)

    def __getitem__(self, name: str) -> Any:
        data = self.read_bytes(name)
        if name.lower().endswith(".parquet"):
            table = _parquet_table(data)
            if table is not None:
                return table
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data

    def read_table(self, name: str) -> Any:
        """A ``.parquet`` file of the tree as a table: a DataFrame where pandas imports, else
        a pyarrow Table. Raises ``ValueError`` when pyarrow is missing or it is not Parquet."""
        table = _parquet_table(self.read_bytes(name))
        if table is None:
            raise ValueError(f"{name} cannot be read as a table: it is not Parquet, or "
                             "pyarrow is not installed here (context[name] gives its bytes)")
        return table

    def __iter__(self) -> Iterator[str]:
        return iter(self._files)

    def __len__(self) -> int:
        return len(self._files)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def path(self, name: str) -> str:
        """The full path of the file ``name`` (a key), for other readers."""
        if name not in self._index:
            raise KeyError(
                f"{name!r} is not a file of the context directory ({len(self._files):,} files; "
                "list(context) names them)"
            )
        return os.path.join(self.root, name)

    def read_bytes(self, name: str) -> bytes:
        """The file's bytes. Raises ``OSError`` when it is no longer a regular file (it is
        opened without blocking or following a last symbolic link, so a FIFO swapped in for it
        is an error, not a hang)."""
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        fd = os.open(self.path(name), flags | getattr(os, "O_CLOEXEC", 0))
        with open(fd, "rb") as file:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(f"{name} is no longer a regular file: only regular files are read")
            return file.read()

    def read_text(self, name: str, errors: str = "replace") -> str:
        return self.read_bytes(name).decode("utf-8", errors)

    def __repr__(self) -> str:
        return f"<FileTree {self.root}: {len(self._files):,} files>"


def _parquet_table(data: bytes) -> Any:
    """``data`` (a Parquet file's bytes) as a DataFrame or Table, or None when pyarrow does not
    import or the bytes are not Parquet."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (OSError, ValueError, pa.ArrowException):
        return None
    try:
        return table.to_pandas()
    except ImportError:  # pandas is not installed here
        return table


def rebuild(kind: int, meta: dict[str, Any], payload: Any, start: int) -> object:
    """The REPL's ``context`` from the memfd form (``payload`` a read-only mmap of the whole
    buffer, the kind's bytes from ``start``; None when it has none). Falls back to the raw
    bytes where the package a kind needs does not import in the worker."""
    if kind == KIND_FILES:
        return FileTree(str(meta["root"]), [str(f) for f in meta["files"]])
    if kind == KIND_NAMED:
        return _rebuild_named(meta, payload, start)
    if kind == KIND_PARQUET:
        import pyarrow.parquet as pq

        table = pq.read_table(str(meta["path"]))
        return table.to_pandas() if meta.get("type") == "DataFrame" else table
    if payload is None:
        return b""
    if kind == KIND_ARROW:
        try:
            import pyarrow as pa
        except ImportError:
            return _copy_out(payload, start)
        view = memoryview(payload)[start:]
        table = pa.ipc.open_stream(pa.py_buffer(view)).read_all()
        if meta.get("type") == "DataFrame":
            frame = table.to_pandas()
            del table, view
            _close(payload)
            return frame
        return table  # its arrays point into the mapping, which lives as long as they do
    data = _copy_out(payload, start)
    if kind == KIND_IMAGE:
        try:
            import io

            from PIL import Image
        except ImportError:
            return data
        image = Image.open(io.BytesIO(data))
        image.load()
        return image
    return data


def _rebuild_named(meta: dict[str, Any], payload: Any, start: int) -> dict[str, object]:
    """The dict of a ``named`` context: each input rebuilt from its own copy of its bytes."""
    import json

    out: dict[str, object] = {}
    offset = start
    try:
        for entry in meta["inputs"]:
            size = int(entry["size"])
            data = bytes(payload[offset:offset + size]) if payload is not None else b""
            offset += size
            if len(data) != size:
                raise ValueError("a named input's bytes run past the context buffer")
            kind, name = int(entry["kind"]), str(entry["name"])
            if kind == _TEXT_INPUT:
                out[name] = json.loads(data.decode("utf-8", "surrogatepass"))
            else:
                view = memoryview(data) if data else None
                out[name] = rebuild(kind, dict(entry["meta"]), view, 0)
    finally:
        if payload is not None:
            _close(payload)
    return out


def _copy_out(payload: Any, start: int) -> bytes:
    data = bytes(payload[start:])
    _close(payload)
    return data


def _close(payload: Any) -> None:
    """Close the mapping (or release the view) ``payload``; one still pointed into is freed
    with the last thing that points into it."""
    close = getattr(payload, "close", None) or getattr(payload, "release", None)
    if close is None:
        return
    try:
        close()
    except BufferError:  # something still points into the mapping: it is freed with it
        pass
