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
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar

from .errors import InvalidSettingError

_H = TypeVar("_H", bound=Hashable)


def first_repeat(names: Iterable[_H]) -> _H | None:
    """The first of ``names`` that came before (a tool's name, a job's id), or None when every
    one is new: what a check that names must be unique reports."""
    seen: set[_H] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


@dataclass(frozen=True, slots=True)
class Rule:
    """The values one setting accepts.

    - ``kind``: ``"int"`` (a real ``int``, never a ``bool`` or a float such as ``2.0``) or
      ``"float"`` (an ``int`` or ``float``, never a ``bool``; NaN and infinities refused).
    - ``minimum`` / ``maximum``: inclusive bounds; ``above`` makes the lower bound exclusive
      (``above=0`` reads "> 0").
    - ``optional``: ``None`` is accepted and means ``unset`` ("no limit" unless told).
    - ``infinite``: ``float("inf")`` is accepted and means no limit (a sandbox's timeouts).
    """

    kind: Literal["int", "float"]
    minimum: float | None = None
    above: float | None = None
    maximum: float | None = None
    optional: bool = False
    unset: str = "no limit"
    infinite: bool = False

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
        if self.infinite:
            text += " (or inf for no limit)"
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
        if self.infinite and value == math.inf:
            return value
        if not math.isfinite(value):
            raise InvalidSettingError(setting, value, self.describe())
        too_low = (self.minimum is not None and value < self.minimum) or (
            self.above is not None and value <= self.above
        )
        if too_low:
            raise InvalidSettingError(setting, value, self.describe())
        if self.maximum is not None and value > self.maximum:
            hint = f"{_show(self.maximum)} is the most it takes; a larger value is a mistake"
            if self.optional:
                hint += f": leave it unset for {self.unset}"
            raise InvalidSettingError(setting, value, self.describe(), hint)
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


def non_negative(*, optional: bool = False, maximum: float | None = None) -> Rule:
    """A finite number ``>= 0`` (a price)."""
    return Rule("float", minimum=0, maximum=maximum, optional=optional)


DAY_S = 86_400
#: The deepest call tree: each level holds a sandbox worker while its children run.
MAX_DEPTH = 64
#: Character counts (what the model is shown, a prompt's window): 100 million characters is
#: past every model's context window.
MAX_CHARS = 100_000_000
#: Output tokens per call: past every model's output limit.
MAX_TOKENS = 10_000_000
#: USD per million tokens: two orders of magnitude above the dearest model priced today.
MAX_PRICE = 100_000

#: :class:`fastrlm.Budget`'s numeric fields. Every bound is inclusive; an upper bound is where a
#: larger value can only be a typo (a limit that is not meant is left unset instead).
BUDGET_RULES: dict[str, Rule] = {
    "max_iterations": count(1, maximum=10_000),
    "max_subcalls": count(0, maximum=10_000_000, optional=True),
    "max_requests": count(1, maximum=10_000_000, optional=True),
    "max_depth": count(1, maximum=MAX_DEPTH),
    "max_input_tokens": count(1, maximum=10**12, optional=True),
    "max_output_tokens": count(1, maximum=10**12, optional=True),
    "max_usd": positive(optional=True, maximum=1_000_000),
    "max_seconds": positive(optional=True, maximum=30 * DAY_S),
    "exec_timeout_s": positive(maximum=DAY_S),
}

#: A call-tree depth (``RLM(child_models={depth: ...})``): the root is 0, children start at 1.
DEPTH_RULE = count(1, maximum=MAX_DEPTH)

#: :class:`fastrlm.Limits`'s numeric fields.
LIMITS_RULES: dict[str, Rule] = {
    "max_concurrency": count(1, maximum=4096, optional=True,
                             unset="the sub-model provider's default"),
    "max_concurrent_children": count(1, maximum=256),  # each child runs a worker process
    "request_timeout_s": positive(maximum=DAY_S),
    "max_retries": count(0, maximum=100),
    "output_chars": count(200, maximum=MAX_CHARS),
    "history_chars": count(1, maximum=MAX_CHARS),
    "subcall_window_chars": count(1000, maximum=MAX_CHARS, optional=True),  # None: the window's
    "root_max_tokens": count(1, maximum=MAX_TOKENS),
    "sub_max_tokens": count(1, maximum=MAX_TOKENS),
    "worker_memory_mb": count(64, maximum=1 << 20, optional=True),  # None: from the context
    "scratch_mb": count(1, maximum=1 << 20),
    "max_answer_chars": count(1, maximum=1 << 30),
    "max_tool_rounds": count(1, maximum=100),
    "max_output_retries": count(0, maximum=100),
    "question_chars": count(200, maximum=MAX_CHARS),
    "warmup_prefix_tokens": count(0, maximum=MAX_CHARS, optional=True,
                                  unset="the sub-model provider's own (0: never)"),
}

#: :class:`fastrlm.sandbox.SandboxLimits`'s numeric fields (a sandbox of your own; the engine
#: builds one from ``Budget`` and ``Limits``).
SANDBOX_RULES: dict[str, Rule] = {
    "exec_timeout_s": Rule("float", above=0, maximum=DAY_S, infinite=True),
    "hard_grace_s": Rule("float", above=0, maximum=3600, infinite=True),
    "max_output_bytes": count(1, maximum=1 << 33),
    "memory_bytes": count(1 << 20, maximum=1 << 40, optional=True,
                          unset="a limit sized from the context"),
    "scratch_bytes": count(1, maximum=1 << 40),
    "scratch_files": count(1, maximum=1_000_000_000),
    "max_answer_chars": count(1, maximum=1 << 30),
}

#: :func:`fastrlm.batch`'s numeric arguments (``provider_concurrency``: each provider's value).
BATCH_RULES: dict[str, Rule] = {
    "max_concurrent_runs": count(1, maximum=4096),
    "provider_concurrency": count(1, maximum=4096),
    "retries": count(0, maximum=100),
    "worker_retries": count(0, maximum=100),
    "max_usd": Rule("float", minimum=0, maximum=1_000_000, optional=True),
    "cpus_per_job": positive(maximum=1024),
    "lease_s": positive(maximum=DAY_S),
}

#: :class:`fastrlm.server.RLMServer`'s numeric arguments.
SERVER_RULES: dict[str, Rule] = {
    "max_concurrent_runs": count(1, maximum=4096),
    "max_queued_runs": count(0, maximum=1_000_000),
    "max_sessions": count(1, maximum=4096),  # each session keeps a sandbox worker
    "session_idle_s": positive(maximum=30 * DAY_S),
    "max_session_chars": count(1, maximum=1 << 36),
}

#: :class:`fastrlm.Tool`'s numeric fields.
TOOL_RULES: dict[str, Rule] = {
    "timeout_s": positive(maximum=DAY_S),
    "max_calls": count(1, maximum=10_000_000, optional=True),
}

#: A :class:`fastrlm.Price` (USD per million tokens).
PRICE_RULES: dict[str, Rule] = {
    "input": non_negative(maximum=MAX_PRICE),
    "output": non_negative(maximum=MAX_PRICE),
    "cached_input": non_negative(optional=True, maximum=MAX_PRICE),
    "cache_write": non_negative(optional=True, maximum=MAX_PRICE),
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
