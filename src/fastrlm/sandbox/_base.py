"""The contract between the engine (host) and a REPL sandbox.

The engine owns a :class:`HostBridge`; the sandbox runs model-written code in one persistent
namespace and, whenever that code calls a function that reaches the host (``llm_query*``,
``rlm_query*``, a host tool: the operations of :data:`._hostops.HOST_OPS`), calls back into the
bridge (through :func:`._hostops.dispatch`, which owns that path and its replies) and hands the
answers to the code. Keys, budgets and LM clients stay on the host side.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from .._foundation.validate import SANDBOX_RULES, check_fields
from ._hostcalls import RESERVED_NAMES, ToolSpec
from ._hostops import HostBridge

__all__ = [
    "DEFAULT_MAX_ANSWER_CHARS",
    "DEFAULT_SCRATCH_BYTES",
    "DEFAULT_SCRATCH_FILES",
    "RESERVED_NAMES",
    "ExecResult",
    "FinalValue",
    "HostBridge",
    "Sandbox",
    "SandboxLimits",
    "cell_result",
]

#: Scratch quota of every layer, and how many files it may hold.
DEFAULT_SCRATCH_BYTES = 512 * 1024 * 1024
DEFAULT_SCRATCH_FILES = 10_000
#: The largest answer (FINAL, FINAL_VAR, ``answer["content"]``) a cell may deliver.
DEFAULT_MAX_ANSWER_CHARS = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class FinalValue:
    """The answer a cell delivered, and which channel delivered it."""

    text: str
    source: Literal["FINAL", "FINAL_VAR", "answer"]


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    """Per-sandbox limits. ``exec_timeout_s`` counts the worker's own time only; the hard kill
    comes at ``exec_timeout_s + hard_grace_s`` of the same clock. ``max_output_bytes`` caps what a
    cell's stdout/stderr may buffer at the source. ``memory_bytes`` is the worker's memory limit
    (``None``: sized from the context, see ``_layers.memory_limit_bytes``); ``scratch_bytes`` and
    ``scratch_files`` cap its scratch directory; ``max_answer_chars`` is the largest answer a
    cell may deliver; ``env`` is added to the worker's (otherwise empty) environment;
    ``tools`` are the host tools the REPL offers as functions (the ``tool`` host call)."""

    exec_timeout_s: float = 120.0
    hard_grace_s: float = 5.0
    max_output_bytes: int = 1_000_000
    memory_bytes: int | None = None
    scratch_bytes: int = DEFAULT_SCRATCH_BYTES
    scratch_files: int = DEFAULT_SCRATCH_FILES
    max_answer_chars: int = DEFAULT_MAX_ANSWER_CHARS
    env: tuple[tuple[str, str], ...] = ()
    tools: tuple[ToolSpec, ...] = ()

    def __post_init__(self) -> None:
        """Raises :class:`~fastrlm.InvalidSettingError` naming the field and its range
        (:data:`fastrlm._foundation.validate.SANDBOX_RULES`): ``memory_bytes=0`` silently meant
        "sized from the context", a negative one a limit no worker could start under."""
        check_fields(self, SANDBOX_RULES, "SandboxLimits")


@dataclass(frozen=True, slots=True)
class ExecResult:
    """What one cell did.

    - ``stdout``/``stderr``: captured output, capped at the source; ``dropped_bytes`` says how
      much was discarded past the cap.
    - ``error``: a short traceback (model-facing), or ``None``.
    - ``final``: set when ``FINAL``/``FINAL_VAR`` was called or ``answer["ready"]`` became true.
    - ``answer_content``: ``answer["content"]`` if non-empty, even when not ready (for partial
      answers when a budget runs out).
    - ``restored``: reserved names the cell rebound, restored afterwards.
    - ``timed_out``: the soft timeout interrupted the cell; state kept.
    - ``restarted``: the worker was killed (hard timeout, crash, OOM) and replaced; state lost.
    """

    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    final: FinalValue | None = None
    answer_content: str | None = None
    restored: tuple[str, ...] = ()
    timed_out: bool = False
    restarted: bool = False
    dropped_bytes: int = 0
    duration_s: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)


def cell_result(
    fields: Mapping[str, Any],
    duration_s: float,
    *,
    restart_reason: str | None = None,
) -> ExecResult:
    """The :class:`ExecResult` of a cell from the fields ``ReplRuntime.execute`` returns (in
    process) or the worker's ``done`` frame carries (already checked). ``restart_reason``: the
    worker was replaced before the cell ran."""
    final = fields["final"]
    return ExecResult(
        stdout=fields["stdout"],
        stderr=fields["stderr"],
        error=fields["error"],
        final=None if final is None else FinalValue(final["text"], final["source"]),
        answer_content=fields["answer_content"],
        restored=tuple(fields["restored"]),
        timed_out=bool(fields["timed_out"]),
        restarted=restart_reason is not None,
        dropped_bytes=int(fields["dropped_bytes"]),
        duration_s=duration_s,
        extra={} if restart_reason is None else {"restart_reason": restart_reason},
    )


class Sandbox(Protocol):
    """One persistent REPL. ``layer`` names the isolation in force (e.g. ``"bwrap+seccomp"``,
    ``"landlock+seccomp"``, ``"none"``); ``unsafe`` is true when model code runs in the host
    process."""

    @property
    def layer(self) -> str: ...

    @property
    def unsafe(self) -> bool: ...

    async def start(self, context: object, bridge: HostBridge) -> None:
        """Load ``context`` (str, list[str], or a JSON-able value) as the ``context`` variable."""
        ...

    async def execute(self, code: str) -> ExecResult:
        """Run one cell in the persistent namespace. Never raises for model-code errors."""
        ...

    async def define(self, name: str, value: object = None, *, alias: str | None = None) -> None:
        """Bind ``name`` to ``value`` (a str, list or JSON-able value), or with ``alias`` to the
        REPL's own value of that name (no copy), as one of the REPL's names: restored when a
        cell rebinds it, and bound again in a fresh worker after a restart. Raises
        :class:`~fastrlm.ContextError` for a value that cannot be sent."""
        ...

    async def show_vars(self) -> str:
        """A one-line-per-variable summary of the user variables (what ``SHOW_VARS()`` prints)."""
        ...

    async def close(self) -> None:
        """Stop the worker and free everything. Idempotent."""
        ...

    def discard(self) -> None:
        """Stop the worker now, synchronously and without waiting for it to exit (a session
        dropped unclosed, or left open at interpreter exit). Idempotent."""
        ...
