"""The one door every loader opens files through (``ask -c``, ``chat -c``, MCP, ``Path``
contexts, batch ``context_path``), and the bounded walk that finds them.

:func:`read_regular` opens a name once (``O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC``, after resolving
the name the caller gave), then judges *what it opened* by ``fstat``: only a regular file is
read (a FIFO, socket or device is :class:`Unreadable`, never waited on); its size is checked
before a byte is read; with ``within`` the opened descriptor's own path (``/proc/self/fd`` on
Linux, ``F_GETPATH`` on macOS) must lie under a root and it must have one hard link, and the
bytes come from that same descriptor. A name is never resolved again after it was checked.

:class:`TreeWalker` walks directories with ``os.scandir`` without following symbolic links to
directories (unless :attr:`LoadLimits.follow_symlinks`), bounded by entries, depth and time for
one whole load; past a bound it raises :class:`~fastrlm.ContextError` naming the bound.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .errors import ContextError

MIB = 1 << 20
_READ_CHUNK = 4 * MIB
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_BINARY", 0)
)


@dataclass(frozen=True, slots=True)
class LoadLimits:
    """Bounds on loading a context from files (CLI: ``--max-file-mb``, ``--max-total-mb``,
    ``--max-files``, ``--load-timeout``, ``--follow-symlinks``).

    ``max_file_bytes``: one file larger than this is refused before it is read (256 MiB).
    ``max_total_bytes``: all files (and stdin) of one load together (1 GiB); the file that
    would pass it stops the load before it is read.
    ``max_files``: files and directories one load may walk (100,000). ``max_depth``: directory
    levels below a loaded directory (64). ``max_seconds``: time one load may spend walking and
    reading (120 s). ``follow_symlinks``: descend into symbolic links to directories (off: they
    are skipped and reported; links to files are followed, then judged by what was opened).
    """

    max_file_bytes: int = 256 * MIB
    max_total_bytes: int = 1024 * MIB
    max_files: int = 100_000
    max_depth: int = 64
    max_seconds: float = 120.0
    follow_symlinks: bool = False

    def __post_init__(self) -> None:
        for name in ("max_file_bytes", "max_total_bytes", "max_files", "max_depth"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"LoadLimits.{name} must be a positive integer, not {value!r}")
        if not self.max_seconds > 0:
            raise ValueError(f"LoadLimits.max_seconds must be positive, not {self.max_seconds!r}")


def over_total(shown: str, size: int, room: int, limits: LoadLimits) -> ContextError:
    """The error for a file (or stdin) of ``size`` bytes when only ``room`` are left."""
    return ContextError(
        f"loading stopped at {shown}: its {size:,} bytes are more than the {max(room, 0):,} "
        f"left of the limit of {limits.max_total_bytes:,} bytes a load "
        "(LoadLimits.max_total_bytes; --max-total-mb raises it), or name fewer files"
    )


class Unreadable(Exception):
    """A file that is not read; ``str()`` says why (a skip reason, or the tail of an error)."""


def _kind_of(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "not a regular file"


def not_regular(mode: int) -> str:
    """The skip reason for a file of ``mode`` that is not regular."""
    return f"{_kind_of(mode)}: only regular files are read"


def too_big(size: int, limits: LoadLimits) -> str:
    return (
        f"{size:,} bytes, over the limit of {limits.max_file_bytes:,} bytes a file "
        f"(LoadLimits.max_file_bytes; --max-file-mb raises it)"
    )


def under(path: str, roots: tuple[str, ...]) -> bool:
    """Whether the real path ``path`` is one of ``roots`` or lies below one."""
    return any(os.path.commonpath((path, root)) == root for root in roots)


def fd_path(fd: int) -> str | None:
    """The path the kernel holds for the open descriptor ``fd``, or None where it cannot say."""
    if sys.platform.startswith("linux"):
        try:
            return os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return None
    if sys.platform == "darwin":
        import fcntl

        try:
            raw = fcntl.fcntl(fd, fcntl.F_GETPATH, bytes(1024))  # type: ignore[attr-defined,unused-ignore]
        except OSError:
            return None
        return os.fsdecode(bytes(raw).rstrip(b"\x00"))
    return None


def read_regular(
    path: str | os.PathLike[str],
    limits: LoadLimits,
    *,
    within: tuple[str, ...] | None = None,
    room: int | None = None,
) -> bytes:
    """The bytes of the regular file ``path`` (symbolic links in the name resolved once).

    Raises :class:`Unreadable` (its text the reason) for anything else: a FIFO, socket, device
    or directory (opened non-blocking, so never waited on), a file larger than
    ``limits.max_file_bytes`` (refused from ``fstat`` before reading, and again if it grows
    while read), an OS error, and with ``within`` (real root paths) a file whose opened
    descriptor lies outside every root or that has more than one hard link. With ``room``
    (bytes left of ``limits.max_total_bytes``), a file larger than that raises the
    :class:`~fastrlm.ContextError` of :func:`over_total`, before it is read."""
    with open_regular(path, limits, within=within, room=room) as (fd, size):
        return read_opened(fd, size, limits, path, room=room)


@contextlib.contextmanager
def open_regular(
    path: str | os.PathLike[str],
    limits: LoadLimits,
    *,
    within: tuple[str, ...] | None = None,
    room: int | None = None,
) -> Iterator[tuple[int, int]]:
    """The regular file ``path`` open for reading (at offset 0) and its size, judged before a
    byte is read exactly as :func:`read_regular` judges it (same errors); closed on exit. For a
    reader that does not want the file as one ``bytes`` (the loader maps a large text file)."""
    try:
        name = os.path.realpath(path)
        fd = os.open(name, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Unreadable("it became a symbolic link while loading; not followed") from exc
        raise Unreadable(f"unreadable: {exc.strerror or exc}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Unreadable(not_regular(info.st_mode))
        if within is not None:
            opened = fd_path(fd)
            if not under(opened if opened is not None else name, within):
                raise Unreadable("outside the allowed roots")
            if info.st_nlink > 1:
                raise Unreadable(
                    f"it has {info.st_nlink} hard links, and one may be a file outside the "
                    "allowed roots; a hard-linked file is not read when loading is confined"
                )
        if info.st_size > limits.max_file_bytes:
            raise Unreadable(too_big(info.st_size, limits))
        if room is not None and info.st_size > room:
            raise over_total(os.fspath(path), info.st_size, room, limits)
        yield fd, info.st_size
    finally:
        os.close(fd)


def read_opened(fd: int, size: int, limits: LoadLimits, path: str | os.PathLike[str], *,
                room: int | None = None) -> bytes:
    """The rest of the file :func:`open_regular` opened (``size`` its size then), within the
    same limits (a file that grew past them while read raises as :func:`read_regular` does)."""
    data = _read_at_most(fd, size, limits)
    if room is not None and len(data) > room:  # it grew while read
        raise over_total(os.fspath(path), len(data), room, limits)
    return data


def _read_at_most(fd: int, expected: int, limits: LoadLimits) -> bytes:
    chunks: list[bytes] = []
    total = 0
    want = expected + 1  # one byte more tells a file that grew from one that did not
    while True:
        try:
            chunk = os.read(fd, max(1, min(want, _READ_CHUNK)))
        except OSError as exc:
            raise Unreadable(f"unreadable: {exc.strerror or exc}") from exc
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > limits.max_file_bytes:
            raise Unreadable(too_big(total, limits) + " (it grew while being read)")
        chunks.append(chunk)
        want = _READ_CHUNK


#: ``descend(path, rel)``: whether the walk goes into the directory it just yielded.
Descend = Callable[[str, str], bool]
#: ``skip(rel, reason)``: an entry that is neither read nor descended into, and why.
Skip = Callable[[str, str], None]


class TreeWalker:
    """Walks directories for one load, all walks sharing one count of entries and one deadline
    (:class:`LoadLimits` ``max_files``, ``max_depth``, ``max_seconds``)."""

    def __init__(self, limits: LoadLimits, *, confined: bool = False) -> None:
        self.limits = limits
        # confined (load_context(within=)): read_regular judges every file by its opened
        # descriptor against the roots, links included; else a link must stay in its tree
        self.confined = confined
        self.entries = 0
        self.deadline = time.monotonic() + limits.max_seconds

    def check_time(self, where: str) -> None:
        if time.monotonic() > self.deadline:
            raise ContextError(
                f"loading stopped at {where}: it took more than {self.limits.max_seconds:g} s "
                "(LoadLimits.max_seconds; --load-timeout raises it), or name fewer or "
                "smaller directories"
            )

    def _listing(self, directory: str) -> list[os.DirEntry[str]]:
        """A directory's entries sorted by name, read only as far as the bounds allow: one
        directory of millions of tiny files is refused at ``max_files`` entries read, and
        within ``max_seconds``, not after listing and sorting it all."""
        entries: list[os.DirEntry[str]] = []
        room = self.limits.max_files - self.entries
        with os.scandir(directory) as it:
            for entry in it:
                if len(entries) == room:
                    raise ContextError(
                        f"loading stopped at {entry.path}: more than "
                        f"{self.limits.max_files:,} files and directories walked "
                        "(LoadLimits.max_files; --max-files raises it), or name a smaller "
                        "directory"
                    )
                entries.append(entry)
                if len(entries) % 4096 == 0:
                    self.check_time(directory)
        return sorted(entries, key=lambda e: e.name)

    def walk(self, root: str, *, descend: Descend, skip: Skip) -> Iterator[tuple[str, str, bool]]:
        """``(path, rel, is_dir)`` for each regular file (or link to one) and directory below
        ``root``, depth first, sorted by name within a directory; a directory's entries follow
        it only when ``descend`` says so. FIFOs, sockets, devices, broken links and (unless
        ``follow_symlinks``) links to directories and, unless ``confined``, links to files
        outside ``root`` go to ``skip``. ``rel`` uses ``/``."""
        limits = self.limits
        try:
            top = os.stat(root)
        except OSError as exc:
            skip(".", f"unreadable directory: {exc.strerror or exc}")
            return
        seen = {(top.st_dev, top.st_ino)}
        real_root = os.path.realpath(root)
        stack: list[tuple[str, str, int]] = [(root, "", 0)]
        while stack:
            directory, rel_dir, depth = stack.pop()
            self.check_time(directory)
            try:
                entries = self._listing(directory)
            except OSError as exc:
                skip(rel_dir or ".", f"unreadable directory: {exc.strerror or exc}")
                continue
            below: list[tuple[str, str, int]] = []
            for entry in entries:
                self.entries += 1
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                try:
                    link = entry.is_symlink()
                    info = entry.stat(follow_symlinks=True)
                except OSError:
                    skip(rel, "a broken symbolic link")
                    continue
                if stat.S_ISDIR(info.st_mode):
                    if link and not limits.follow_symlinks:
                        skip(rel, "a symbolic link to a directory, not followed "
                                  "(LoadLimits.follow_symlinks; --follow-symlinks)")
                        continue
                    if (info.st_dev, info.st_ino) in seen:
                        skip(rel, "a directory already walked (a symbolic link loop)")
                        continue
                    yield entry.path, rel, True
                    if not descend(entry.path, rel):
                        continue
                    if depth + 1 > limits.max_depth:
                        raise ContextError(
                            f"loading stopped at {entry.path}: more than {limits.max_depth} "
                            "directory levels (LoadLimits.max_depth raises it), or name a "
                            "directory further down"
                        )
                    seen.add((info.st_dev, info.st_ino))
                    below.append((entry.path, rel, depth + 1))
                elif stat.S_ISREG(info.st_mode):
                    if link and not (limits.follow_symlinks or self.confined) and not under(
                            os.path.realpath(entry.path), (real_root,)):
                        # a tree's link to /proc/self/environ or ~/.netrc is not its content
                        skip(rel, "a symbolic link to a file outside the directory, not "
                                  "followed (LoadLimits.follow_symlinks; --follow-symlinks)")
                        continue
                    yield entry.path, rel, False
                else:
                    skip(rel, not_regular(info.st_mode))
            stack.extend(reversed(below))
