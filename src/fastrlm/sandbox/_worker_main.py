"""The isolated worker's entry point: ``python -I -S -B _worker_main.py <config JSON>``.

Started by :mod:`fastrlm.sandbox._worker` (inside bubblewrap where available). It maps the
context buffer, confines itself (rlimits, Landlock, capabilities, seccomp, in that order, as the
config asks), silences fds 0-2, sends ``ready`` on pipe B and then serves ``exec``/``show_vars``
frames from pipe A until ``shutdown`` or EOF. It imports the standard library, ``pyseccomp``,
``landlock`` and three sibling modules, without running ``fastrlm/__init__.py``.

Config keys: ``fd_in`` (pipe A), ``fd_out`` (pipe B), ``fd_context`` (the sealed memfd),
``parent_pid`` (0 under bubblewrap), ``package_dir``, ``sys_path``, ``rlimits``, ``landlock``
(None or ``{"read": [...], "write": [...]}``), ``seccomp`` (bool), ``libraries``,
``max_output_bytes``, ``max_answer_chars``, ``exec_timeout_s``, ``scratch``.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import threading
import traceback
import types
from typing import Any


def _install_package_stubs(package_dir: str) -> None:
    """Make ``fastrlm.sandbox.<module>`` importable without executing the package __init__s."""
    for name, path in (("fastrlm", package_dir), ("fastrlm.sandbox", package_dir + "/sandbox")):
        module = types.ModuleType(name)
        module.__path__ = [path]
        sys.modules[name] = module


#: Packages model code may not import here: the benchmark harness, whose generators would
#: rebuild the instance being asked about, gold included.
REFUSED_PACKAGES = ("fastrlm.bench",)


class _RefuseImports:
    """A meta-path finder (first on ``sys.meta_path``) that refuses :data:`REFUSED_PACKAGES`
    and their submodules with an ``ImportError`` saying why."""

    @staticmethod
    def find_spec(name: str, path: object = None, target: object = None) -> None:
        for package in REFUSED_PACKAGES:
            if name == package or name.startswith(package + "."):
                raise ImportError(
                    f"{name} cannot be imported in the sandbox: the benchmark harness (its "
                    "answer keys) is out of model code's reach", name=name
                )


class Worker:
    """Serves frames; supplies ``host_call`` to the runtime and the soft per-exec timeout."""

    def __init__(self, config: dict[str, Any], context: object) -> None:
        from fastrlm.sandbox import _hostcalls, _protocol, _runtime

        self._protocol = _protocol
        self._fd_in: int = config["fd_in"]
        self._fd_out: int = config["fd_out"]
        self._timeout_s = float(config["exec_timeout_s"])
        self._cell_timeout = _runtime.CellTimeout
        self._lock = threading.Lock()
        self._next_id = 0
        self._nonce = ""
        self._armed = False
        self.runtime = _runtime.ReplRuntime(
            context,
            self.host_call,
            max_output_bytes=int(config["max_output_bytes"]),
            max_answer_chars=int(config["max_answer_chars"]),
            tools=[_hostcalls.ToolSpec.from_wire(t) for t in config["tools"]],
        )
        limit = config["memory_bytes"]
        if limit:
            self.runtime.memory_note = (
                f"the worker's memory limit is {limit / 2**20:,.0f} MiB: free some variables, "
                "work in pieces, or raise Limits.worker_memory_mb"
            )

    def send(self, message: dict[str, Any]) -> None:
        self._protocol.write_all(self._fd_out, self._protocol.encode_frame(message))

    # ------------------------------------------------------------- host calls
    def host_call(self, op: str, payload: dict[str, Any]) -> Any:
        """One blocking round trip to the host. The cell's soft-timeout clock stops meanwhile
        when the cell itself (the main thread) waits, so only its own time counts; a model
        thread's calls leave the clock alone (the timer is process-wide: pausing it from another
        thread, between cells, used to re-arm it at 1 ms). Raises TypeError for arguments JSON
        cannot carry."""
        main = threading.current_thread() is threading.main_thread()
        remaining = self._pause_clock() if main else None
        try:
            with self._lock:
                self._next_id += 1
                request = {"op": op, "id": self._next_id, "nonce": self._nonce, **payload}
                try:
                    frame = self._protocol.encode_frame(request)
                except (TypeError, ValueError) as exc:
                    raise TypeError(f"{op}: arguments cannot be sent to the host: {exc}") from None
                self._protocol.write_all(self._fd_out, frame)
                reply = self._protocol.read_frame(self._fd_in)
                if (
                    reply.get("op") != "reply"
                    or reply.get("id") != self._next_id
                    or reply.get("nonce") != self._nonce
                ):
                    raise RuntimeError(f"{op}: the host answered out of turn")
                return reply.get("results")
        except (EOFError, BrokenPipeError):
            os._exit(0)  # the host is gone: nothing left to serve
        finally:
            if remaining is not None:
                self._resume_clock(remaining)

    # ------------------------------------------------------------- soft timeout
    def _on_alarm(self, signum: int, frame: types.FrameType | None) -> None:
        # Raise only inside model code (frames whose globals are the REPL namespace), never in
        # the runtime's own bookkeeping; otherwise retry shortly.
        namespace = self.runtime.ns
        while frame is not None:
            if frame.f_globals is namespace:
                raise self._cell_timeout(f"the cell ran past its {self._timeout_s:g} s limit")
            frame = frame.f_back
        signal.setitimer(signal.ITIMER_REAL, 0.005)

    def _pause_clock(self) -> float:
        remaining, _ = signal.setitimer(signal.ITIMER_REAL, 0)
        return remaining

    def _resume_clock(self, remaining: float) -> None:
        if self._armed:
            signal.setitimer(signal.ITIMER_REAL, max(remaining, 0.001))

    def _timed(self, fn: Any, *args: Any) -> Any:
        signal.signal(signal.SIGALRM, self._on_alarm)
        if 0 < self._timeout_s < 1e9:  # else: no soft timeout (inf, 0 or absurd values)
            self._armed = True
            signal.setitimer(signal.ITIMER_REAL, self._timeout_s)
        try:
            return fn(*args)
        finally:
            self._armed = False
            signal.setitimer(signal.ITIMER_REAL, 0)

    # ------------------------------------------------------------- serving
    def serve(self) -> None:
        """Answer requests until ``shutdown`` or EOF. The pipe lock is held from sending one
        answer until the next request has been read, so a model thread's ``llm_query`` can only
        run while a request is being served, never interleave with ``done`` or steal the next
        request from the pipe."""
        answer: bytes | None = None
        while True:
            with self._lock:
                if answer is not None:
                    self._protocol.write_all(self._fd_out, answer)
                try:
                    message = self._protocol.read_frame(self._fd_in)
                except EOFError:
                    return
                # Under the lock: a model thread's llm_query, waiting for it, must carry the
                # new request's nonce, not the last one.
                self._nonce = str(message.get("nonce", ""))
            op = message["op"]
            if op == "exec":
                answer = self._done_frame(
                    self._timed(self.runtime.execute, str(message.get("code", "")))
                )
            elif op == "define":
                answer = self._protocol.encode_frame(
                    {"op": "defined", "nonce": self._nonce,
                     "error": self._define(message.get("name"), message.get("value"),
                                           message.get("alias"))}
                )
            elif op == "show_vars":
                answer = self._protocol.encode_frame(
                    {"op": "vars", "nonce": self._nonce, "text": self._show_vars()}
                )
            elif op == "shutdown":
                return
            else:
                answer = None

    def _define(self, name: object, value: object, alias: object) -> str | None:
        if not isinstance(name, str) or not name.isidentifier():
            return "define: the name must be an identifier"
        if alias is not None and not (isinstance(alias, str) and alias in self.runtime.ns):
            return "define: the alias names nothing"
        self.runtime.define(name, value, alias if isinstance(alias, str) else None)
        return None

    def _show_vars(self) -> str:
        try:
            return str(self._timed(self.runtime.show_vars))
        except BaseException as exc:  # noqa: BLE001 - a model-defined __len__ may raise anything
            return f"[SHOW_VARS failed: {type(exc).__name__}: {exc}]"

    def _done_frame(self, result: dict[str, Any]) -> bytes:
        message = {"op": "done", "nonce": self._nonce, **result}
        message["restored"] = list(message.get("restored") or ())
        try:
            return self._protocol.encode_frame(message)
        except (ValueError, MemoryError) as exc:  # the answer encodes past a frame's size
            message.update(final=None, answer_content=None, stdout="", stderr="")
            message["error"] = f"the cell's result could not be sent: {exc or 'out of memory'}"
            return self._protocol.encode_frame(message)


def _start(config: dict[str, Any]) -> Worker:
    from fastrlm.sandbox import _confine, _protocol

    if config["parent_pid"]:  # under bubblewrap, --die-with-parent does this
        _confine.die_with_parent(config["parent_pid"])
    _confine.apply_rlimits(config["rlimits"])
    # The host fills the buffer while this interpreter boots; "load" says it is sealed.
    if _protocol.read_frame(config["fd_in"]).get("op") != "load":
        raise RuntimeError("expected the 'load' frame first")
    if not _protocol.is_sealed(config["fd_context"]):
        raise RuntimeError("the context buffer is not sealed")
    context = _protocol.load_context(config["fd_context"])
    os.close(config["fd_context"])
    worker = Worker(config, context)
    if config["landlock"] is not None:
        _confine.no_new_privs()
        _confine.apply_landlock(config["landlock"]["read"], config["landlock"]["write"])
    _confine.drop_capabilities()
    if config["seccomp"]:
        _confine.no_new_privs()
        if _SECCOMP_TEMPLATE is not None:  # forked from a warm process that built it once
            _confine.load_seccomp_template(_SECCOMP_TEMPLATE, os.getpid())
        else:
            _confine.apply_seccomp(config["libraries"], os.getpid())
    return worker


def _serve(config: dict[str, Any]) -> None:
    """Start (:func:`_start`) and serve one run's REPL; reports a failed start to the host."""
    from fastrlm.sandbox import _protocol

    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        worker = _start(config)
    except BaseException as exc:  # noqa: BLE001 - reported to the host, then exit
        text = traceback.format_exc()[-4000:]
        # out of memory (pyarrow's ArrowMemoryError too): the host names the limit, and does
        # not retry on another layer, which would hit the same limit
        fatal = {"op": "fatal", "text": text, "out_of_memory": isinstance(exc, MemoryError)}
        _protocol.write_all(config["fd_out"], _protocol.encode_frame(fatal))
        os._exit(3)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    confined = ["rlimits"]
    confined += ["landlock"] if config["landlock"] is not None else []
    confined += ["seccomp"] if config["seccomp"] else []
    worker.send({"op": "ready", "pid": os.getpid(), "confined": confined})
    worker.serve()


#: The seccomp filter's program a warm process built once for the workers it forks
#: (``_confine.seccomp_template``), or None: each worker builds its own.
_SECCOMP_TEMPLATE: bytes | None = None


def _warm(config: dict[str, Any]) -> None:
    """The warm worker (``config["warm"]``): import everything a run's worker needs once, then
    fork one fresh worker per order from the host (see :mod:`fastrlm.sandbox._warm`). The
    seccomp filter's program is built here once; each worker loads it with its own pid.

    An order is one datagram on the control socket (``fd_control``): ``{"op": "fork",
    "config": {...}}`` with four fds (pipe A, pipe B, the context buffer, and the socket the
    order's answer goes to), or ``{"op": "clean", "dir": path}`` (a finished worker's scratch
    directory, under bubblewrap's private ``/tmp``). The forked worker leads a session of its
    own, dies with this process, sends one datagram (``b"forked"``) on the answer socket, whose
    credentials tell the host its pid, closes both sockets and then starts exactly like a
    spawned worker (:func:`_serve`); a fork that fails is answered with why, by this process.
    Nothing a worker does can reach this process: the worker closed its sockets, and its
    seccomp filter refuses ``kill``/``ptrace`` on any process but itself. Ends when the host
    closes the control socket."""
    global _SECCOMP_TEMPLATE
    import shutil
    import socket

    from fastrlm.sandbox import _confine, _hostcalls, _protocol, _runtime  # noqa: F401 - warm

    if config["landlock"] is not None:
        import landlock  # type: ignore[import-untyped]  # noqa: F401 - warm for the workers
    _confine.prepare(landlock=config["landlock"] is not None)
    if config["seccomp"]:
        _SECCOMP_TEMPLATE = _confine.seccomp_template(config["libraries"])
    if config["parent_pid"]:
        _confine.die_with_parent(config["parent_pid"])
    control = socket.socket(fileno=config["fd_control"])
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the forked workers
    gc.collect()
    gc.freeze()  # a worker's collections leave these objects, and their pages, alone
    own = os.getpid()
    control.send(b"warm")
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 1 << 20, 4)
        except OSError:
            return
        if not message:  # the host closed its end
            return
        order = json.loads(message)
        if order["op"] == "clean":
            shutil.rmtree(order["dir"], ignore_errors=True)
            continue
        answer = socket.socket(fileno=fds[3])
        try:
            pid = os.fork()
        except OSError as exc:
            answer.send(f"cannot fork: {exc}".encode())
            pid = -1
        if pid == 0:
            try:
                _forked(order["config"], fds[:3], answer, control, own)
            except BaseException as exc:  # noqa: BLE001 - never back into this loop
                try:
                    answer.send(f"the forked worker could not start: {exc!r}".encode())
                finally:
                    os._exit(3)
            os._exit(0)
        answer.close()
        for fd in fds[:3]:
            os.close(fd)


def _forked(config: dict[str, Any], fds: list[int], answer: Any, control: Any,
            parent: int) -> None:
    """A worker forked by :func:`_warm`: its own session, scratch directory and environment,
    then the run (:func:`_serve`)."""
    from fastrlm.sandbox import _confine

    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.setsid()  # the host kills the group it leads
    _confine.die_with_parent(parent)
    config["fd_in"], config["fd_out"], config["fd_context"] = fds
    scratch = config["scratch"]
    os.makedirs(scratch, mode=0o700, exist_ok=True)
    os.chdir(scratch)
    os.environ["HOME"] = os.environ["TMPDIR"] = scratch
    answer.send(b"forked")  # its credentials carry this process's pid, as the host sees it
    answer.close()
    control.close()
    _serve(config)


def main() -> None:
    config = json.loads(sys.argv[1])
    sys.path[:0] = config["sys_path"]
    _install_package_stubs(config["package_dir"])
    sys.meta_path.insert(0, _RefuseImports)
    if config.get("warm"):
        _warm(config)
    else:
        _serve(config)


if __name__ == "__main__":
    main()
