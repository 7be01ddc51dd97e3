"""Grants: shares of a call tree's budget carved out for one part of it (a child RLM given
``rlm_query(..., budget={...})``, one combinator call). The values and the walk up a grant's
chain live here; :class:`~fastrlm._core.ledger.BudgetLedger` carves, checks and closes them
(``carve``, ``room``, ``close``), since they share its counts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .._foundation.stop import StopReason

#: What a :class:`Grant` may limit: the ledger's counters by name.
GRANT_DIMENSIONS = ("usd", "subcalls", "requests", "input_tokens", "output_tokens")


@dataclass(slots=True, eq=False)
class Grant:
    """A share of the budget carved out for one part of the tree (a child RLM given
    ``budget={...}``, one combinator call): made by :meth:`BudgetLedger.carve`, given back by
    :meth:`BudgetLedger.close`. Written by the ledger only.

    ``limits``: dimension (:data:`GRANT_DIMENSIONS`) -> the most the part may use; a dimension
    it does not limit draws on the enclosing grant (``parent``) or the tree's budget. While it
    is open, what it has not used of a limit is held for it where it was carved from, so no
    sibling can take it; what it does not use returns when it closes. ``used`` counts what the
    part and everything under it used (settled spend, admitted sub-calls and requests);
    ``held`` the worst cases of its calls in flight, ``carved`` what its own open grants hold.
    ``deadline``: a ``time.monotonic()`` value past which nothing more is admitted for it."""

    limits: dict[str, float]
    parent: Grant | None = None
    deadline: float | None = None
    seconds: float | None = None
    used: dict[str, float] = field(default_factory=lambda: dict.fromkeys(GRANT_DIMENSIONS, 0))
    held: dict[str, float] = field(default_factory=lambda: dict.fromkeys(GRANT_DIMENSIONS, 0))
    carved: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(GRANT_DIMENSIONS, 0))
    open: bool = True

    def unused(self, dimension: str) -> float:
        """What is left of this grant's own limit on ``dimension`` (0 past it)."""
        return max(self.limits[dimension] - self.used[dimension], 0)


#: The stop reason of a refusal for each dimension.
DIMENSION_REASONS = {
    "usd": StopReason.BUDGET_USD, "subcalls": StopReason.BUDGET_SUBCALLS,
    "requests": StopReason.BUDGET_REQUESTS, "input_tokens": StopReason.BUDGET_TOKENS,
    "output_tokens": StopReason.BUDGET_TOKENS,
}


def limiting_grant(grant: Grant | None, dimension: str) -> Grant | None:
    """The first grant up ``grant``'s chain that limits ``dimension``: the one whose limit
    binds a call drawing on ``grant`` (None: the tree's budget)."""
    while grant is not None and dimension not in grant.limits:
        grant = grant.parent
    return grant


def short_of(room: float | None, amount: float) -> bool:
    return room is not None and room < amount


def grant_expired(grant: Grant | None) -> bool:
    """Whether the time of ``grant`` or of a grant above it is up."""
    now = time.monotonic()
    while grant is not None:
        if grant.deadline is not None and now >= grant.deadline:
            return True
        grant = grant.parent
    return False
