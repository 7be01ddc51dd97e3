"""The non-REPL baselines of Table 1, each usable on its own: ``await Method(...).run(q, ctx)``.

- :class:`BaseModel` ("base"): the whole input in one prompt. When it does not fit the model's
  window the model is not called: the run ends with ``stop_reason="context_exceeded"`` and
  ``exceeded=True`` (the paper reports N/A there, scored 0 with its ``*``).
  ``BaseModel(truncate=True)`` ("base-truncated") cuts the input to the window instead, with a
  visible marker (``truncated=True``): a separate, labelled method.
- :class:`SummaryAgent` ("summary"): when the input fits the root model's window it answers
  directly; otherwise it reads the context chunk by chunk, keeping running notes with a cheap
  summariser model, then answers from the notes with the root model (the paper's summary agent:
  GPT-5-nano compacts, GPT-5 answers).
- :class:`SimpleRLM` ("simple-rlm"): fixed chunks -> one sub-call each (concurrent) -> one
  aggregating root call. The fixed strategy an RLM can discover, without a REPL.

A prompt that holds the whole input puts it where the question expects it: a question whose
opening paragraph announces "the following text" (RULER's S-NIAH template) keeps that paragraph
before the text and the rest after (:func:`full_prompt`).

A method never raises for provider failures: they end the run with ``stop_reason="error"``.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from .. import ProviderError
from .._foundation.error_text import error_text
from ..lm import LM, ChatMessage
from ._meter import (
    CHARS_PER_TOKEN,
    Meter,
    MethodResult,
    as_text,
    chunks,
    finish,
    fit,
    window_tokens,
)
from ._tokens import count_tokens

ANSWER_RESERVE_TOKENS = 16_384


def _user(text: str) -> list[ChatMessage]:
    return [{"role": "user", "content": text}]


def _budget_chars(model: str, window: int | None, reserve_tokens: int, overhead: int) -> int:
    tokens = (window or window_tokens(model)) - reserve_tokens
    return max(int(tokens * CHARS_PER_TOKEN * 0.8) - overhead, 1000)  # code tokenizes denser


_LEAD = re.compile(r"\bfollowing (?:text|lines|documents|context|input|passages?)\b", re.I)


def full_prompt(question: str, text: str) -> str:
    """``text`` and ``question`` in one prompt: the question after the text, except that an
    opening paragraph referring to "the following text" (or lines, documents ...) goes first."""
    head, sep, rest = question.partition("\n\n")
    if sep and _LEAD.search(head):
        return f"{head}\n\n{text}\n\n{rest}"
    return f"{text}\n\n{question}"


def fits(prompt: str, window: int, reserve_tokens: int = 0) -> bool:
    """Whether ``prompt`` plus ``reserve_tokens`` of answer fits ``window`` tokens (o200k_base
    counts when available, else the chars/4 proxy; see :mod:`fastrlm.bench._tokens`)."""
    limit = window - reserve_tokens
    if len(prompt.encode("utf-8", "surrogatepass")) <= limit:
        return True  # a token is at least one byte
    return count_tokens(prompt, stop_above=limit) <= limit


@dataclass
class BaseModel:
    """The plain model with everything in the prompt. ``window`` overrides the model's window.
    ``truncate=False`` (the paper's base model): an input over the window is not sent and the
    result says so (``exceeded``). ``truncate=True``: the input is cut to fit, marked."""

    model: LM
    window: int | None = None
    max_tokens: int | None = None
    truncate: bool = False
    name: str = "base"

    async def run(
        self, question: str, context: str | list[str], meter: Meter | None = None
    ) -> MethodResult:
        meter = meter or Meter()
        text = as_text(context)
        cut = False
        if self.truncate:
            budget = _budget_chars(
                self.model.model, self.window, ANSWER_RESERVE_TOKENS, len(question) + 64
            )
            text, cut = fit(text, budget)
        prompt = full_prompt(question, text)
        if not self.truncate:
            window = self.window or window_tokens(self.model.model)
            if not fits(prompt, window, ANSWER_RESERVE_TOKENS):
                return finish(meter, "", "context_exceeded", iterations=0, exceeded=True)
        try:
            answer = await meter.complete(self.model, _user(prompt), max_tokens=self.max_tokens)
        except ProviderError as exc:
            return finish(meter, "", "error", truncated=cut, error=str(exc))
        return finish(meter, answer, truncated=cut)


SUMMARY_STEP = """\
You are reading a long input in parts, keeping notes that will later be used to answer a question.

Question: {question}

Your notes so far (from parts 1-{done} of {total}):
<notes>
{notes}
</notes>

Part {part} of {total}:
<part>
{chunk}
</part>

Rewrite your notes to include everything from this part that could matter for the question \
(exact names, numbers, dates, identifiers, counts so far). Keep earlier notes unless they are \
superseded. Reply with the notes only."""

SUMMARY_ANSWER = """\
You read a long input in parts and kept these notes:
<notes>
{notes}
</notes>

Using only the notes, answer: {question}"""


@dataclass
class SummaryAgent:
    """A direct answer when the input fits ``model``'s window (``window`` overrides it); else
    iterative summarisation: notes over chunks with ``summarizer``, answer with ``model``."""

    model: LM
    summarizer: LM | None = None
    window: int | None = None
    notes_chars: int = 40_000
    name: str = "summary"

    async def run(
        self, question: str, context: str | list[str], meter: Meter | None = None
    ) -> MethodResult:
        meter = meter or Meter()
        window = self.window or window_tokens(self.model.model)
        whole = full_prompt(question, as_text(context))
        if fits(whole, window, ANSWER_RESERVE_TOKENS):
            try:
                answer = await meter.complete(self.model, _user(whole))
            except ProviderError as exc:
                return finish(meter, "", "error", error=str(exc))
            return finish(meter, answer, iterations=1, chunks=0)
        small = self.summarizer or self.model
        size = _budget_chars(
            small.model,
            self.window,
            ANSWER_RESERVE_TOKENS,
            self.notes_chars + len(question) + len(SUMMARY_STEP),
        )
        parts = chunks(context, size)
        notes = "(none yet)"
        try:
            for i, part in enumerate(parts):
                prompt = SUMMARY_STEP.format(
                    question=question, done=i, total=len(parts), notes=notes, part=i + 1, chunk=part
                )
                notes = (await meter.complete(small, _user(prompt), subcall=True))[
                    : self.notes_chars
                ]
            answer = await meter.complete(
                self.model, _user(SUMMARY_ANSWER.format(notes=notes, question=question))
            )
        except ProviderError as exc:
            return finish(meter, "", "error", iterations=len(parts), error=str(exc))
        return finish(meter, answer, iterations=len(parts) + 1, chunks=len(parts))


CHUNK_PROMPT = """\
Below is part {part} of {total} of a long input. Question about the whole input: {question}

<part>
{chunk}
</part>

From this part only, extract everything needed to answer the question (exact names, numbers, \
dates, identifiers, partial counts). If it holds nothing relevant, reply "NONE"."""

AGGREGATE_PROMPT = """\
A long input was split into {total} parts; a reader extracted from each part what matters for \
the question. Their findings, in order:

{findings}

Combine the findings into the answer to: {question}"""


@dataclass
class SimpleRLM:
    """Fixed chunking -> one ``sub_model`` call per chunk (concurrently) -> one root aggregation."""

    model: LM
    sub_model: LM | None = None
    chunk_chars: int = 200_000
    findings_chars: int = 4_000
    name: str = "simple-rlm"

    async def run(
        self, question: str, context: str | list[str], meter: Meter | None = None
    ) -> MethodResult:
        meter = meter or Meter()
        sub = self.sub_model or self.model
        parts = chunks(context, self.chunk_chars)
        prompts = [
            CHUNK_PROMPT.format(part=i + 1, total=len(parts), question=question, chunk=c)
            for i, c in enumerate(parts)
        ]
        replies = await asyncio.gather(
            *(meter.complete(sub, _user(p), subcall=True) for p in prompts), return_exceptions=True
        )
        findings = []
        for i, r in enumerate(replies):
            if isinstance(r, BaseException) and not isinstance(r, ProviderError):
                raise r
            text = (error_text("subcall_failed", f"{type(r).__name__}: {r}")
                    if isinstance(r, BaseException) else r[: self.findings_chars])
            findings.append(f"Part {i + 1}: {text}")
        budget = _budget_chars(self.model.model, None, ANSWER_RESERVE_TOKENS, len(question) + 400)
        joined, cut = fit("\n\n".join(findings), budget)
        try:
            answer = await meter.complete(
                self.model,
                _user(
                    AGGREGATE_PROMPT.format(total=len(parts), findings=joined, question=question)
                ),
            )
        except ProviderError as exc:
            return finish(meter, "", "error", iterations=2, truncated=cut, error=str(exc))
        return finish(meter, answer, iterations=2, truncated=cut, chunks=len(parts))
