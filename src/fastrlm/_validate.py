"""One validator for every number a user can set: library objects, CLI flags, TOML, server.

A :class:`Rule` says what a setting accepts (an integer or a number, its lower and upper bound,
whether ``None`` means "no limit"). :meth:`Rule.check` either returns the value or raises
:class:`InvalidSettingError` naming the setting *as the caller knows it* (``Budget.max_usd``,
``--max-usd``, ``config.toml: max_usd``, ``fastrlm.max_usd``) and the accepted range. The rule
tables (:data:`BUDGET_RULES`, :data:`LIMITS_RULES`, :data:`PRICE_RULES`) are the single
statement of each range; :func:`check_fields` applies one to a dataclass in ``__post_init__``.

A new numeric field of ``Budget``, ``Limits`` or ``Price`` gets its rule here (one line); the
CLI, TOML and server pick it up by name. ``tests/engine/test_validate.py`` fails for a numeric
field that has no rule.

What is refused: booleans for numbers (``True`` is an ``int`` to Python, never a count to a
user), fractional or non-numeric counts, NaN, infinities (leave a limit unset for "no limit"),
and anything below or above the bound, zero included wherever zero means nothing could run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from ._exceptions import InvalidSettingError


@dataclass(frozen=True, slots=True)
class Rule:
    """The values one setting accepts.

    - ``kind``: ``"int"`` (a real ``int``, never a ``bool`` or a float such as ``2.0``) or
      ``"float"`` (an ``int`` or ``float``, never a ``bool``; NaN and infinities refused).
    - ``minimum`` / ``maximum``: inclusive bounds; ``above`` makes the lower bound exclusive
      (``above=0`` reads "> 0").
    - ``optional``: ``None`` is accepted and means ``unset`` ("no limit" unless told).
    """

    kind: Literal["int", "float"]
    minimum: float | None = None
    above: float | None = None
    maximum: float | None = None
    optional: bool = False
    unset: str = "no limit"

    def describe(self) -> str:
        """The accepted range in words, e.g. ``"an integer >= 1"`` or ``"a number > 0"``."""
        parts = ["an integer" if self.kind == "int" else "a finite number"]
        if self.above is not None:
            parts.append(f"> {_show(self.above)}")
        if self.minimum is not None:
            parts.append(f">= {_show(self.minimum)}")
        if self.maximum is not None:
            parts.append(f"<= {_show(self.maximum)}")
        text = " ".join(parts[:2]) + "".join(f" and {p}" for p in parts[2:])
        return text + (f" (or unset for {self.unset})" if self.optional else "")

    def check(self, setting: str, value: object) -> int | float | None:
        """``value`` if this rule accepts it, else raise :class:`InvalidSettingError`."""
        if value is None:
            if self.optional:
                return None
            raise InvalidSettingError(setting, value, self.describe())
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidSettingError(setting, value, self.describe())
        if self.kind == "int" and not isinstance(value, int):
            hint = "a count is a whole number" if math.isfinite(value) else ""
            raise InvalidSettingError(setting, value, self.describe(), hint)
        if not math.isfinite(value):
            raise InvalidSettingError(setting, value, self.describe())
        too_low = (self.minimum is not None and value < self.minimum) or (
            self.above is not None and value <= self.above
        )
        if too_low or (self.maximum is not None and value > self.maximum):
            raise InvalidSettingError(setting, value, self.describe())
        return value


def _show(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def count(minimum: int = 0, *, maximum: int | None = None, optional: bool = False,
          unset: str = "no limit") -> Rule:
    """A whole number ``>= minimum``."""
    return Rule("int", minimum=minimum, maximum=maximum, optional=optional, unset=unset)


def positive(*, optional: bool = False, maximum: float | None = None) -> Rule:
    """A finite number ``> 0`` (a duration, a dollar limit)."""
    return Rule("float", above=0, maximum=maximum, optional=optional)


def non_negative(*, optional: bool = False) -> Rule:
    """A finite number ``>= 0`` (a price)."""
    return Rule("float", minimum=0, optional=optional)


#: :class:`fastrlm.Budget`'s numeric fields.
BUDGET_RULES: dict[str, Rule] = {
    "max_iterations": count(1),
    "max_subcalls": count(0, optional=True),
    "max_requests": count(1, optional=True),
    "max_depth": count(1),
    "max_input_tokens": count(1, optional=True),
    "max_output_tokens": count(1, optional=True),
    "max_usd": positive(optional=True),
    "max_seconds": positive(optional=True),
    "exec_timeout_s": positive(),
}

#: A call-tree depth (``RLM(child_models={depth: ...})``): the root is 0, children start at 1.
DEPTH_RULE = count(1)

#: :class:`fastrlm.Limits`'s numeric fields.
LIMITS_RULES: dict[str, Rule] = {
    "max_concurrency": count(1, optional=True, unset="the sub-model provider's default"),
    "max_concurrent_children": count(1),
    "request_timeout_s": positive(),
    "max_retries": count(0),
    "output_chars": count(200),
    "history_chars": count(1),
    "subcall_window_chars": count(1000, optional=True),  # None: from the sub-model's window
    "root_max_tokens": count(1),
    "sub_max_tokens": count(1),
    "worker_memory_mb": count(64, maximum=1 << 20, optional=True),  # None: from the context
    "scratch_mb": count(1, maximum=1 << 20),
    "max_answer_chars": count(1),
    "max_tool_rounds": count(1, maximum=100),
    "max_output_retries": count(0, maximum=100),
    "question_chars": count(200),
}

#: A :class:`fastrlm.Price` (USD per million tokens).
PRICE_RULES: dict[str, Rule] = {
    "input": non_negative(),
    "output": non_negative(),
    "cached_input": non_negative(optional=True),
    "cache_write": non_negative(optional=True),
}


def check_fields(obj: object, rules: Mapping[str, Rule], owner: str) -> None:
    """Check every field of ``obj`` that ``rules`` names; errors say ``owner.field``."""
    for name, rule in rules.items():
        rule.check(f"{owner}.{name}", getattr(obj, name))


def check_flag(setting: str, value: object) -> bool:
    """``value`` if it is a real ``bool``, else raise :class:`InvalidSettingError`."""
    if not isinstance(value, bool):
        raise InvalidSettingError(setting, value, "True or False")
    return value


def check_choice(setting: str, value: object, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``, else raise :class:`InvalidSettingError`."""
    if not isinstance(value, str) or value not in choices:
        raise InvalidSettingError(setting, value, "one of " + ", ".join(map(repr, choices)))
    return value
