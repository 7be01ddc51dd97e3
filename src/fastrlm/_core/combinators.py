"""The combinators ``llm_map``, ``llm_filter`` and ``llm_reduce``: many sub-calls whose cost is
bounded before the first one is sent.

The bound (:class:`CostBound`) is the most the calls may use, failures included: for each call
its prompt's input bound (UTF-8 bytes + the per-message overhead, the ledger's own bound) on
every attempt the provider may make (``1 + Limits.max_retries``), its ``max_tokens`` of output
once, at the model's price; with ``schema=`` (and for ``llm_filter``'s yes/no) each item's
retries with their longer prompts; for ``llm_reduce`` every level of the tree, later levels at
the longest the carried answers may be (each answer is cut to :data:`CARRY_BYTES_PER_TOKEN` x
``max_tokens`` bytes, so the bound holds). Planning is pure (:func:`map_plan`,
:func:`reduce_plan`); :func:`run_combine` carves the bound out of what is left as a
:class:`~fastrlm._core.ledger.Grant` (so it refuses before anything is sent when it cannot fit,
and no concurrent call can take its room), sends the calls under it through the tree's one
limiter and ledger, and closes it (what was not used returns). Items over the sub-model's window
are refused by ``llm_map``/``llm_filter`` and split into pieces by ``llm_reduce``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from .._foundation.error_text import error_text
from .._foundation.errors import BudgetExceededError, ConfigurationError
from .._foundation.pricing import Price
from .._foundation.windows import subcall_window_chars
from ..lm import LM
from ..sandbox import CombineRequest
from .call_tree import CallTree
from .grants import Grant, limiting_grant
from .ledger import MESSAGE_OVERHEAD_TOKENS, Account
from .output import OutputInvalid, output_spec

#: Where an item goes in a template (``{items}`` for ``llm_reduce``'s joined pieces).
ITEM_MARK = "{item}"
ITEMS_MARK = "{items}"
#: Between the pieces one ``llm_reduce`` call combines.
SEPARATOR = "\n\n---\n\n"
#: What ``llm_filter`` adds to its question.
FILTER_NOTE = "\n\nAnswer with one word: yes or no."
#: What a retry (an answer that did not match ``schema=``, or not yes/no) adds to the prompt,
#: the rejected answer and the problem cut to these lengths so the retry's size is bounded.
RETRY_NOTE = ("\n\nYour previous answer was not accepted ({errors}). It was:\n{reply}\n\n"
              "Answer again with only the corrected answer.")
RETRY_REPLY_CHARS = 2_000
#: What ``llm_map(schema=...)`` adds to each prompt.
SCHEMA_NOTE = "\n\nAnswer with only JSON matching this JSON schema: {schema}"
#: The longest answer ``schema=`` parses.
MAX_PARSED_CHARS = 1_000_000
RETRY_ERROR_CHARS = 1_000
#: An answer carried to ``llm_reduce``'s next level is cut to this many bytes per output token
#: it was allowed (answers are far shorter in practice: ~4 bytes per token).
CARRY_BYTES_PER_TOKEN = 4
#: The most pieces one ``llm_reduce`` may split its items into (each a first-level part).
MAX_REDUCE_PIECES = 100_000
#: The most bytes a retry adds to its item's prompt (a character is at most 4 UTF-8 bytes).
RETRY_EXTRA_BYTES = (len(RETRY_NOTE.format(errors="", reply="").encode())
                     + 4 * (RETRY_REPLY_CHARS + RETRY_ERROR_CHARS))


class Refused(Exception):
    """A combinator call refused before anything was sent: ``kind`` is its error kind."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class CostBound:
    """The most a set of calls may use of each budget dimension."""

    subcalls: int = 0
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    usd: float = 0.0

    def __add__(self, other: CostBound) -> CostBound:
        return CostBound(self.subcalls + other.subcalls, self.requests + other.requests,
                         self.input_tokens + other.input_tokens,
                         self.output_tokens + other.output_tokens, self.usd + other.usd)

    def times(self, count: int) -> CostBound:
        return CostBound(self.subcalls * count, self.requests * count,
                         self.input_tokens * count, self.output_tokens * count,
                         self.usd * count)

    def limits(self) -> dict[str, float]:
        """The bound by :data:`~fastrlm._core.ledger.GRANT_DIMENSIONS` name."""
        return {"usd": self.usd, "subcalls": self.subcalls, "requests": self.requests,
                "input_tokens": self.input_tokens, "output_tokens": self.output_tokens}

    def text(self) -> str:
        return (f"${self.usd:.4f}, {self.subcalls:,} sub-calls, {self.requests:,} requests "
                f"(retries included), {self.input_tokens:,} input and {self.output_tokens:,} "
                "output tokens")


def utf8_bytes(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def call_bound(prompt_bytes: int, max_tokens: int, price: Price | None,
               attempts: int) -> CostBound:
    """The most one sub-call of a ``prompt_bytes`` prompt may use when its provider may make
    ``attempts`` attempts: every failed attempt is booked at its input bound, input price
    (the ledger's rule), and one answer at most its ``max_tokens`` (an unpriced model: $0)."""
    tokens = prompt_bytes + MESSAGE_OVERHEAD_TOKENS
    usd = 0.0
    if price is not None:
        usd = price.worst_case(tokens, max_tokens) + (attempts - 1) * price.worst_case(tokens, 0)
    return CostBound(1, attempts, attempts * tokens, max_tokens, usd)


def calls_bound(sizes: list[int], max_tokens: int, price: Price | None,
                attempts: int) -> CostBound:
    """:func:`call_bound` summed over one call per prompt size in ``sizes``, in one pass (the
    bound is linear in the sizes)."""
    count = len(sizes)
    tokens = sum(sizes) + MESSAGE_OVERHEAD_TOKENS * count
    usd = 0.0
    if price is not None:
        usd = (price.worst_case(tokens, max_tokens * count)
               + (attempts - 1) * price.worst_case(tokens, 0))
    return CostBound(count, attempts * count, attempts * tokens, max_tokens * count, usd)


def fill(template: str, text: str, mark: str) -> str:
    """``template`` with ``text`` at its first ``mark``, or after it when it has none."""
    if mark in template:
        return template.replace(mark, text, 1)
    return f"{template}\n\n{text}" if template else text


def retry_prompt(prompt: str, reply: str, errors: str) -> str:
    """The prompt of a retry: at most :data:`RETRY_EXTRA_BYTES` longer than ``prompt``."""
    return prompt + RETRY_NOTE.format(errors=errors[:RETRY_ERROR_CHARS],
                                      reply=reply[:RETRY_REPLY_CHARS])


@dataclass(frozen=True, slots=True)
class Plan:
    """What one combinator call will send: the first prompts, the bound of everything, and for
    ``llm_reduce`` the fan-in of the later levels and the bytes each carried answer keeps."""

    prompts: list[str]
    bound: CostBound
    retries: int = 0
    fanin: int = 0
    carry_bytes: int = 0


def map_plan(template: str, items: list[str], *, note: str, window: int, max_tokens: int,
             price: Price | None, attempts: int, retries: int) -> Plan:
    """The plan of ``llm_map`` or ``llm_filter``: one prompt per item (``template`` filled,
    then ``note``: what the answer must be), ``retries`` more calls per item at most. Raises
    :class:`Refused` (``prompt_too_long``) naming the first item whose prompt is over
    ``window`` characters. Pure."""
    prompts = [fill(template, item, ITEM_MARK) + note for item in items]
    limit = window - (RETRY_EXTRA_BYTES if retries else 0)
    for index, prompt in enumerate(prompts):
        if len(prompt) > limit:
            raise Refused("prompt_too_long", (
                f"item {index} makes a prompt of {len(prompt):,} characters, over the "
                f"{limit:,} characters a prompt may have (the sub-model's window"
                f"{', less room for a retry' if retries else ''}); nothing was sent. Split "
                "long items first (or use llm_reduce, which splits them by itself)"))
    sizes = [utf8_bytes(prompt) for prompt in prompts]
    bound = calls_bound(sizes, max_tokens, price, attempts)
    if retries:
        bound += calls_bound([size + RETRY_EXTRA_BYTES for size in sizes], max_tokens, price,
                             attempts).times(retries)
    return Plan(prompts, bound, retries)


def reduce_plan(template: str, items: list[str], *, fanin: int, window: int, max_tokens: int,
                price: Price | None, attempts: int) -> Plan:
    """The plan of ``llm_reduce``: items over the window split into pieces, pieces packed into
    the first level's prompts (at most ``fanin`` each, within ``window`` characters), and the
    later levels' count and worst-case size. Raises :class:`Refused` when the template leaves
    no room, or when the answers of one level could not be combined within the window. Pure."""
    mark = reduce_mark(template)
    empty = fill(template, "", mark)
    room = window - len(empty)
    if room < 1:
        raise Refused("prompt_too_long", (
            f"the template alone has {len(empty):,} characters, the sub-model's window "
            f"{window:,}; nothing was sent. Use a shorter template"))
    count = sum(max(math.ceil(len(item) / room), 1) for item in items)
    if count > MAX_REDUCE_PIECES:
        raise Refused("prompt_too_long", (
            f"the items make {count:,} pieces of at most {room:,} characters (the sub-model's "
            f"window less the template), over the limit of {MAX_REDUCE_PIECES:,}; nothing was "
            "sent. Narrow the items down with code first"))
    pieces: list[str] = []
    for item in items:
        pieces.extend(item[start:start + room] for start in range(0, max(len(item), 1), room))
    groups: list[list[str]] = []
    size = 0
    for piece in pieces:
        if groups and len(groups[-1]) < fanin and size + len(SEPARATOR) + len(piece) <= room:
            groups[-1].append(piece)
            size += len(SEPARATOR) + len(piece)
        else:
            groups.append([piece])
            size = len(piece)
    prompts = [fill(template, SEPARATOR.join(group), mark) for group in groups]
    bound = calls_bound([utf8_bytes(prompt) for prompt in prompts], max_tokens, price,
                        attempts)
    carry = CARRY_BYTES_PER_TOKEN * max_tokens
    later = min(fanin, (room + len(SEPARATOR)) // (carry + len(SEPARATOR)))
    calls = len(prompts)
    if calls > 1 and later < 2:
        most = (room - len(SEPARATOR)) // 2 // CARRY_BYTES_PER_TOKEN
        fix = f"Pass max_tokens={most:,} or less" if most >= 1 else "Use a shorter template"
        raise Refused("prompt_too_long", (
            f"two answers of up to {max_tokens:,} tokens ({carry:,} bytes each, as carried) "
            f"do not fit the sub-model's window of {window:,} characters with this template; "
            f"nothing was sent. {fix}"))
    later_bytes = utf8_bytes(empty) + later * carry + (later - 1) * utf8_bytes(SEPARATOR)
    while calls > 1:
        calls = math.ceil(calls / later)
        bound += call_bound(later_bytes, max_tokens, price, attempts).times(calls)
    return Plan(prompts, bound, 0, later, carry)


def reduce_mark(template: str) -> str:
    """Where ``llm_reduce`` puts its pieces: ``{items}``, else ``{item}`` (else after it)."""
    return ITEMS_MARK if ITEMS_MARK in template else ITEM_MARK


def carried(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes (at a character boundary)."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore")


@dataclass
class Combine:
    """One combinator call of one run: what :func:`run_combine` needs of the bridge."""

    tree: CallTree
    lm: LM
    run_id: str
    depth: int
    account: Account

    def plan(self, request: CombineRequest, *, retries: int) -> Plan:
        """What ``request`` will send and its bound (``retries``: per item, for answers that
        must parse). Raises :class:`Refused` for an item or template the window cannot hold,
        or a schema that cannot be checked. Pure."""
        limits = self.tree.limits
        window = subcall_window_chars(self.lm.model, limits.sub_max_tokens,
                                      limits.subcall_window_chars)
        price = self.tree.prices.price(self.lm.model)
        attempts = 1 + limits.max_retries
        max_tokens = self.max_tokens(request)
        if request.kind == "reduce":
            return reduce_plan(request.template, request.items, fanin=request.fanin,
                               window=window, max_tokens=max_tokens, price=price,
                               attempts=attempts)
        parse, note = _parser(request)
        return map_plan(request.template, request.items, note=note, window=window,
                        max_tokens=max_tokens, price=price, attempts=attempts,
                        retries=retries if parse is not None else 0)

    def max_tokens(self, request: CombineRequest) -> int:
        """Each call's output cap: the request's, within ``Limits.sub_max_tokens``."""
        cap = self.tree.limits.sub_max_tokens
        return min(request.max_tokens or cap, cap)

    async def run(self, request: CombineRequest, *, retries: int) -> object:
        """The result of ``request`` (JSON-able): its bound carved out of what is left first.
        Raises :class:`Refused` when it cannot be (nothing sent)."""
        plan = self.plan(request, retries=retries)
        parse, _note = _parser(request)
        max_tokens = self.max_tokens(request)
        tree = self.tree
        grant = self._carve(plan.bound, f"llm_{request.kind}")
        account = Account(parent=self.account, grant=grant)
        try:
            if request.kind == "reduce":
                return await self._reduce(request.template, plan, account, max_tokens)
            answers = await tree.fan_out(
                self.lm, plan.prompts, lambda index, prefix: self._answer(
                    plan.prompts[index], account, max_tokens, parse, plan.retries, prefix))
        finally:
            tree.ledger.close(grant)
        if request.kind == "map":
            return [value for value, _ok in answers]
        failed = [value for value, ok in answers if not ok]
        return {"keep": [value is True for value, _ok in answers], "unjudged": len(failed),
                "first_error": str(failed[0]) if failed else None}

    def _carve(self, bound: CostBound, name: str) -> Grant:
        ledger = self.tree.ledger
        parent = self.account.grant
        # requests only under a cap someone set: the default cap assumes 3 requests a call,
        # the bound 1 + max_retries, which would refuse most combinators that fit
        limits = {dimension: amount for dimension, amount in bound.limits().items()
                  if ledger.room(dimension, parent) is not None
                  and (dimension != "requests" or ledger.budget.max_requests is not None
                       or limiting_grant(parent, "requests") is not None)}
        try:
            return ledger.carve(limits, parent=parent)
        except BudgetExceededError as exc:
            left, _limits = ledger.view(parent)
            shown = ", ".join(f"{name} {value:.4f}" if name == "usd" else f"{name} {value:,}"
                              for name, value in left.items()
                              if value is not None and name != "seconds")
            raise Refused(exc.reason.value, (
                f"nothing was sent: its {bound.subcalls:,} sub-calls may use up to "
                f"{bound.text()}, more than is left ({exc}; left: {shown}). Use fewer or "
                "shorter items, a smaller max_tokens=, or narrow the items down with code "
                "first")) from None

    async def _answer(self, prompt: str, account: Account, max_tokens: int,
                      parse: Callable[[str], object] | None, retries: int,
                      cache_prefix: int = 0) -> tuple[object, bool]:
        """One item's answer (parsed when ``parse``) and whether it was had; a failed or
        refused call, or an answer still unparsed after ``retries``, gives its error text.
        ``cache_prefix``: what its batch shares (:meth:`CallTree.fan_out`); a retry starts
        with the same prompt, so it marks it too."""
        asked = prompt
        for attempt in range(retries + 1):
            outcome = await self.tree.subcall(self.lm, asked, run_id=self.run_id,
                                              depth=self.depth, account=account,
                                              max_tokens=max_tokens, cache_prefix=cache_prefix)
            if not outcome.answered:
                return outcome.text, False
            if parse is None:
                return outcome.text, True
            try:
                return parse(outcome.text), True
            except OutputInvalid as exc:
                if attempt == retries:
                    return error_text("bad_answer", str(exc)), False
                asked = retry_prompt(prompt, outcome.text, str(exc))
        raise AssertionError("unreachable")

    async def _reduce(self, template: str, plan: Plan, account: Account,
                      max_tokens: int) -> str:
        async def level(prompts: list[str]) -> list[str]:
            async def one(index: int, prefix: int) -> str:
                text, _ok = await self._answer(prompts[index], account, max_tokens, None, 0,
                                               prefix)
                return str(text)

            return await self.tree.fan_out(self.lm, prompts, one)

        answers = await level(plan.prompts)
        mark = reduce_mark(template)
        while len(answers) > 1:
            groups = [answers[i:i + plan.fanin] for i in range(0, len(answers), plan.fanin)]
            answers = await level([
                fill(template, SEPARATOR.join(carried(a, plan.carry_bytes) for a in group),
                     mark)
                for group in groups])
        return answers[0]


def _parser(request: CombineRequest) -> tuple[Callable[[str], object] | None, str]:
    """How each answer of ``request`` is read (``None``: as text) and the note its prompts
    end with. Raises :class:`Refused` for a schema that cannot be checked."""
    if request.kind == "filter":
        return _yes_no, FILTER_NOTE
    if request.kind != "map" or request.schema is None:
        return None, ""
    try:
        spec = output_spec(request.schema)
    except ConfigurationError as exc:
        raise Refused("bad_arguments", f"schema: {exc}") from None
    assert spec is not None

    def parse(text: str) -> object:
        return spec.parse(_unfenced(text), MAX_PARSED_CHARS)[0]

    return parse, SCHEMA_NOTE.format(schema=spec.schema_text())


def _yes_no(text: str) -> bool:
    word = text.strip().strip("*`\"'.").split(maxsplit=1)
    first = word[0].lower().strip(".,!:;*") if word else ""
    if first in ("yes", "true"):
        return True
    if first in ("no", "false"):
        return False
    raise OutputInvalid("the answer must start with yes or no")


def _unfenced(text: str) -> str:
    """A JSON answer without the Markdown fence a model may put around it."""
    stripped = text.strip()
    if stripped.startswith("```"):
        body = stripped.split("\n", 1)[1] if "\n" in stripped else ""
        return body.rsplit("```", 1)[0].strip()
    return stripped
