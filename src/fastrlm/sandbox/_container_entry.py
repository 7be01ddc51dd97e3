"""The worker's entry in a container: ``python -I -S -B _container_entry.py <config JSON>``.

Runs inside the container (standard library only), before :mod:`._worker_main`, which it then
runs unchanged. The container's stdin and stdout are the worker's two pipes (``docker run -i``
attaches them). The host first streams the context on stdin: an 8-byte big-endian size, then
that many bytes of the context buffer (the same bytes the other layers map from the host's
memfd). This writes them into a memfd of the container's own (charged to its memory limit),
seals it, moves the pipes off fds 0 and 1 (the worker points fds 0-2 at ``/dev/null``), and
starts the worker with those fds in its config.
"""

from __future__ import annotations

import fcntl
import json
import os
import runpy
import struct
import sys

_SIZE = struct.Struct(">Q")
_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
_CHUNK = 1 << 20


def _read_exact(fd: int, n: int) -> bytes:
    parts, left = [], n
    while left:
        chunk = os.read(fd, min(left, _CHUNK))
        if not chunk:
            raise EOFError(f"the host closed the pipe {n - left:,} bytes into {n:,}")
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def receive_context(fd: int) -> int:
    """Read the size-prefixed context stream from ``fd`` into a sealed memfd; returns it."""
    (size,) = _SIZE.unpack(_read_exact(fd, _SIZE.size))
    memfd = os.memfd_create("fastrlm-context", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    left = size
    while left:
        chunk = os.read(fd, min(left, _CHUNK))
        if not chunk:
            raise EOFError(f"the context stream ended {size - left:,} bytes into {size:,}")
        view = memoryview(chunk)
        while view:
            view = view[os.write(memfd, view):]
        left -= len(chunk)
    fcntl.fcntl(memfd, fcntl.F_ADD_SEALS, _SEALS)
    return memfd


def main() -> None:
    config = json.loads(sys.argv[1])
    fd_in, fd_out = os.dup(0), os.dup(1)
    config.update(fd_in=fd_in, fd_out=fd_out, fd_context=receive_context(fd_in))
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_worker_main.py")
    sys.argv = [script, json.dumps(config)]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
