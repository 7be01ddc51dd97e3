"""Operational limits: how wide, how long, how much is shown. Budgets live in ``_budget``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True, slots=True)
class Limits:
    """How the engine runs calls and shows output.

    - ``max_concurrency``: LM calls in flight at once over the whole call tree.
    - ``max_concurrent_children``: child RLMs (each with its own worker) running at once, per
      depth level.
    - ``request_timeout_s`` / ``max_retries``: per LM call, passed to providers.
    - ``output_chars``: how much of a cell's output the root model sees (head and tail).
    - ``history_chars``: past this size the oldest REPL outputs in the root's conversation are
      replaced by a one-line note (its code and the latest turns are kept).
    - ``subcall_window_chars``: the size of prompt a sub-model takes, as told to the root model.
    - ``root_max_tokens`` / ``sub_max_tokens``: per-call output caps (also what the budget gate
      reserves as a call's worst case).
    - ``trace_full_prompts``: record whole sub-call prompts in events and traces, not previews.
    - ``worker_memory_mb``: the sandbox worker's memory limit (heap, shared memory, tmpfs);
      ``None`` sizes it from the context: 1 GiB + the context buffer + 3x the decoded context.
    - ``scratch_mb``: the worker's scratch directory quota (also 10,000 files at most).
    - ``max_answer_chars``: the longest answer a cell may deliver; longer ones are refused with
      a message to the model, and the run goes on.
    - ``worker_env``: variables added to the worker's otherwise empty environment.
    """

    max_concurrency: int = 64
    max_concurrent_children: int = 8
    request_timeout_s: float = 300.0
    max_retries: int = 5
    output_chars: int = 20_000
    history_chars: int = 400_000
    subcall_window_chars: int = 400_000
    root_max_tokens: int = 32_768
    sub_max_tokens: int = 16_384
    trace_full_prompts: bool = False
    worker_memory_mb: int | None = None
    scratch_mb: int = 512
    max_answer_chars: int = 64 * 1024 * 1024
    worker_env: dict[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if self.output_chars < 200:
            raise ValueError("output_chars must be at least 200")
        if self.root_max_tokens < 1 or self.sub_max_tokens < 1:
            raise ValueError("max_tokens limits must be positive")
        _check_sandbox_limits(self)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _check_sandbox_limits(limits: Limits) -> None:
    if limits.worker_memory_mb is not None and not 64 <= limits.worker_memory_mb <= 1 << 20:
        raise ValueError("worker_memory_mb must be between 64 and 1048576 (or None: automatic)")
    if not 1 <= limits.scratch_mb <= 1 << 20:
        raise ValueError("scratch_mb must be between 1 and 1048576")
    if limits.max_answer_chars < 1:
        raise ValueError("max_answer_chars must be at least 1")
    for name, value in limits.worker_env.items():
        if not (isinstance(name, str) and isinstance(value, str)):
            raise ValueError("worker_env maps str names to str values")
        if not name or "=" in name or "\0" in name or "\0" in value:
            raise ValueError(f"worker_env: {name!r} is not a valid environment variable")
