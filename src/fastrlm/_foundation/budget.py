"""Budgets over a whole call tree: :class:`Budget`, the user's configuration, a frozen value (why
a run stopped is :class:`~fastrlm.StopReason`). The ledger that enforces a budget is
:mod:`fastrlm._core.ledger`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .validate import BUDGET_RULES, check_fields


@dataclass(frozen=True, slots=True)
class Budget:
    """Limits for one run and everything it spawns. ``None`` means unlimited.

    - ``max_iterations``: root turns per RLM (each child RLM gets the same allowance).
    - ``max_subcalls``: LM calls made from inside the REPL, at any depth (child RLMs' own turns
      included), each counted once whether it answers, fails, times out or comes from the
      cache. Root turns of the top-level run do not count.
    - ``max_depth``: 1 means ``rlm_query`` falls back to a plain ``llm_query`` (the paper's
      setting); 2 lets the root spawn child RLMs whose sub-calls are plain LMs; and so on.
    - ``max_requests``: HTTP requests sent to providers, root and sub-calls, retries included.
      ``None`` (the default) means ``REQUESTS_PER_CALL`` (3) times ``max_subcalls +
      max_iterations + 1`` when ``max_subcalls`` is set, else no request cap (each call is still
      bounded by ``1 + Limits.max_retries`` attempts, and every failed attempt costs).
    - ``max_input_tokens`` / ``max_output_tokens`` / ``max_usd``: summed over every request,
      failed attempts included (booked at an estimate, see :mod:`fastrlm._core.ledger`).
    - ``max_seconds``: wall time of the whole tree.
    - ``exec_timeout_s``: per code cell, counting only the worker's own time (waiting on sub-calls
      is not counted). Past it the cell gets an exception and the REPL keeps its state.

    Accepted ranges are in :data:`~fastrlm._foundation.validate.BUDGET_RULES` (counts are whole
    numbers;
    no NaN or infinity: leave a limit ``None`` for no limit).
    """

    max_iterations: int = 30
    max_subcalls: int | None = None
    max_depth: int = 1
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None
    max_usd: float | None = None
    max_seconds: float | None = None
    exec_timeout_s: float = 120.0
    max_requests: int | None = None

    def __post_init__(self) -> None:
        """Raises :class:`~fastrlm.InvalidSettingError` (a ``ValueError``) naming the field and
        its accepted range for NaN, infinite, negative, zero-where-meaningless, fractional or
        boolean values."""
        check_fields(self, BUDGET_RULES, "Budget")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @property
    def request_cap(self) -> int | None:
        """The number of requests the tree may send: ``max_requests``, or the default rule."""
        if self.max_requests is not None:
            return self.max_requests
        if self.max_subcalls is None:
            return None
        return REQUESTS_PER_CALL * (self.max_subcalls + self.max_iterations + 1)


#: The Budget fields a user sets from outside the library, all in one place: a CLI flag, a
#: ``config.toml`` key and a server request's override (which may only lower the server's).
BUDGET_KEYS = (
    "max_usd", "max_subcalls", "max_requests", "max_seconds", "max_depth", "max_iterations"
)

#: Requests per call allowed by the default request cap (a first attempt and two retries).
REQUESTS_PER_CALL = 3
