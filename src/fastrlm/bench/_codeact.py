"""CodeAct: a ReAct-style agent that acts by writing code (and, with BM25, searching), with the
input in its prompt (the paper's CodeAct baseline: unlike an RLM it does not offload the context).

Each turn the model replies with one of: a ```python block (run in a fastrlm sandbox with no
context and no sub-calls; its output is shown next turn), ``SEARCH(query)`` when ``search`` is on
(BM25 over the documents, or over passages of a string context, via ``rank_bm25``; top ``k`` hits
shown), or ``ANSWER: ...`` (ends the run). The paper gives CodeAct its BM25 retriever on
BrowseComp-Plus only: the harness's ``codeact`` method turns ``search`` on for ``browsecomp``
alone, and ``codeact-bm25`` turns it on for every task. The context is put in the first message,
cut to the model's window with a marker (``truncated=True``). Runs out of turns ->
``stop_reason="max_iterations"`` with the last reply as a best effort.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

from .. import MissingExtraError, ProviderError
from .._foundation.error_text import error_text
from ..lm import LM, ChatMessage
from ._baselines import full_prompt
from ._meter import (
    CHARS_PER_TOKEN,
    Meter,
    MethodResult,
    as_text,
    chunks,
    finish,
    fit,
    subcall_chars,
    window_tokens,
)

SYSTEM = """\
You are a CodeAct agent. You answer a question about the input given below. Each reply must \
contain exactly one action:
- a ```python fenced block: it runs in a persistent Python interpreter (no network, no access to \
the input except what you paste into code) and you see its output;{subcalls}
{search}- ANSWER: your final answer (ends the task).
Think briefly, then act."""

SEARCH_ACTION = """\
- SEARCH(your query): BM25 search over the input's documents; you see the top {k} results;
"""

SUBCALLS = (
    " in it, llm_query(prompt) asks a sub-model and returns its answer as a string, and "
    "llm_query_batched(prompts) asks several at once (each prompt at most {chars:,} characters)"
)

FIRST = """\
<input>
{context}
</input>

Question: {question}"""

def first_message(question: str, text: str) -> str:
    """The input and the question, in the order the question expects (see ``full_prompt``)."""
    wrapped = f"<input>\n{text}\n</input>"
    ordered = full_prompt(question, wrapped)
    return ordered if not ordered.startswith(wrapped) else FIRST.format(
        context=text, question=question
    )


_CODE = re.compile(r"```(?:python|py|repl)?\s*\n(.*?)```", re.S)
_SEARCH = re.compile(r"SEARCH\((.*?)\)\s*$", re.M | re.S)
_ANSWER = re.compile(r"ANSWER:\s*(.*)", re.S)
_TOKEN = re.compile(r"\w+")


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


class BM25Index:
    """Okapi BM25 (``rank_bm25``) over documents; ``search`` gives ``(index, doc)``, best first."""

    def __init__(self, docs: list[str]) -> None:
        try:
            from rank_bm25 import BM25Okapi  # type: ignore[import-untyped]
        except ModuleNotFoundError as exc:  # pragma: no cover - the bench extra is missing
            raise MissingExtraError("bench", "rank-bm25", "CodeAct's BM25 search") from exc
        self.docs = docs
        self._bm25 = BM25Okapi([tokenize(d) or [""] for d in docs])

    def search(self, query: str, k: int) -> list[tuple[int, str]]:
        scores = self._bm25.get_scores(tokenize(query))
        order = sorted(range(len(self.docs)), key=lambda i: (-scores[i], i))
        return [(i, self.docs[i]) for i in order[:k]]


_NO_SUBMODEL = error_text("subcalls_disabled", "CodeAct has no sub-model")


async def _no_subcalls(request: Any) -> list[str]:
    """CodeAct's answer to every ``llm_query`` / ``rlm_query`` (a ``HostRequest``)."""
    return [_NO_SUBMODEL] * len(request.prompts)


def subcall_handler(sub: LM, meter: Meter) -> Any:
    """``llm_query`` for CodeAct with sub-calls: each prompt one metered sub-call of ``sub``; a
    prompt over its window, or a failed call, answers ``[error: ...]`` as the RLM's would."""
    window = subcall_chars(sub.model)

    async def one(prompt: str) -> str:
        if len(prompt) > window:
            return error_text("prompt_too_long", f"{len(prompt):,} characters for sub-model "
                              f"{sub.model}, over its window of {window:,}; split the prompt")
        try:
            return await meter.complete(sub, [{"role": "user", "content": prompt}],
                                        subcall=True)
        except ProviderError as exc:
            return error_text("subcall_failed", str(exc))

    async def handle(request: Any) -> list[str]:
        return list(await asyncio.gather(*(one(p) for p in request.prompts)))

    return handle


@dataclass
class CodeActBM25:
    """The agent. ``search`` offers the BM25 ``SEARCH`` action; ``sandbox`` is a fastrlm sandbox
    kind; ``passage_chars`` sizes BM25 passages of a string context; ``snippet_chars`` caps each
    search hit shown to the model."""

    model: LM
    search: bool = True
    max_iterations: int = 20
    k: int = 5
    sandbox: str = "auto"
    window: int | None = None
    passage_chars: int = 4_000
    snippet_chars: int = 3_000
    output_chars: int = 10_000
    name: str = "codeact-bm25"
    #: CodeAct (+sub-calls): ``llm_query`` in its interpreter asks this model; None: no sub-calls.
    sub_model: LM | None = None

    async def run(
        self, question: str, context: str | list[str], meter: Meter | None = None
    ) -> MethodResult:
        meter = meter or Meter()
        index = None
        if self.search:
            docs = context if isinstance(context, list) else chunks(context, self.passage_chars)
            index = BM25Index(docs)
        window = self.window or window_tokens(self.model.model)
        budget = int((window - min(32_000, window // 4)) * CHARS_PER_TOKEN * 0.6)
        text, cut = fit(as_text(context), max(budget, 2_000))
        tool = SEARCH_ACTION.format(k=self.k) if self.search else ""
        subcalls = ""
        query: Any = _no_subcalls
        if self.sub_model is not None:
            subcalls = SUBCALLS.format(chars=subcall_chars(self.sub_model.model))
            query = subcall_handler(self.sub_model, meter)
        messages: list[ChatMessage] = [
            {"role": "system", "content": SYSTEM.format(search=tool, subcalls=subcalls)},
            {"role": "user", "content": first_message(question, text)},
        ]
        from ..sandbox import HandlerBridge, create_sandbox

        sb: Any = None
        reply = ""
        searches = 0
        try:
            for turn in range(1, self.max_iterations + 1):
                reply = await meter.complete(self.model, messages)
                messages.append({"role": "assistant", "content": reply})
                code = _CODE.search(reply)
                search = _SEARCH.search(reply) if index is not None else None
                answer = _ANSWER.search(reply)
                if code:
                    if sb is None:
                        sb = create_sandbox(self.sandbox)
                        # no host tools: a tool call is a host_error
                        await sb.start("", HandlerBridge(
                            {"llm_query": query, "rlm_query": query}))
                    res = await sb.execute(code.group(1))
                    out = (res.stdout + res.stderr + (res.error or ""))[: self.output_chars]
                    observation = f"Output:\n```\n{out or '(no output)'}\n```"
                elif search and index is not None:
                    searches += 1
                    hits = index.search(search.group(1).strip().strip("\"'"), self.k)
                    observation = "\n\n".join(
                        f"[result {r + 1}]\n{doc[: self.snippet_chars]}"
                        for r, (_, doc) in enumerate(hits)
                    )
                elif answer:
                    return finish(
                        meter,
                        answer.group(1).strip(),
                        iterations=turn,
                        truncated=cut,
                        searches=searches,
                    )
                else:
                    search_or = "SEARCH(...), " if index is not None else ""
                    observation = (
                        f"No action found. Reply with a ```python block, {search_or}or ANSWER: ..."
                    )
                messages.append({"role": "user", "content": observation})
        except ProviderError as exc:
            return finish(
                meter,
                reply,
                "error",
                iterations=len(messages) // 2,
                truncated=cut,
                error=str(exc),
                searches=searches,
            )
        finally:
            if sb is not None:
                await sb.close()
        return finish(
            meter,
            reply,
            "max_iterations",
            iterations=self.max_iterations,
            truncated=cut,
            searches=searches,
        )
