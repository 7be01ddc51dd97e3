"""Every method end to end with ScriptedLM: what it sends, what it returns, what it costs."""

from __future__ import annotations

import asyncio
import re

import pytest

from fastrlm import PriceTable
from fastrlm.bench import (
    BaseModel,
    BM25Index,
    CodeActBM25,
    Meter,
    MethodResult,
    RLMMethod,
    SimpleRLM,
    SummaryAgent,
)
from fastrlm.bench._browsecomp import generate as browsecomp
from fastrlm.bench._browsecomp import score as browsecomp_score
from fastrlm.bench._config import Method
from fastrlm.bench._sniah import generate as sniah
from fastrlm.bench._sniah import score as sniah_score
from fastrlm.lm import ChatMessage
from fastrlm.testing import ScriptedLM, prompt_of


def test_base_puts_everything_in_one_prompt_when_it_fits() -> None:
    inst = sniah(0, 4096, 0)
    lm = ScriptedLM(
        lambda m: "The number is " + re.findall(r"is: (\d+)", prompt_of(m))[0],
        model="openai/gpt-5-mini",
    )
    res = _run(BaseModel(lm), inst.query, inst.context)
    assert sniah_score(res.answer, inst) == 1.0
    assert not res.truncated and not res.exceeded
    preamble, question = inst.query.split("\n\n", 1)
    prompt = lm.calls[0][0]["content"]
    # RULER's order: "... hidden within the following text ...", the text, then the question
    assert prompt.startswith(preamble + "\n\n" + inst.context[:50])
    assert prompt.endswith(inst.context[-50:] + "\n\n" + question)
    price = PriceTable.default().price("openai/gpt-5-mini")
    assert price is not None
    usage = res.usage["by_model"]["openai/gpt-5-mini"]
    expected = (usage["input_tokens"] * price.input + usage["output_tokens"] * price.output) / 1e6
    assert res.cost_usd == pytest.approx(expected)


def test_base_truncated_cuts_to_the_window_and_says_so() -> None:
    inst = sniah(0, 65536, 3)
    lm = ScriptedLM(["Answer: 0"])
    res = _run(BaseModel(lm, window=20_000, truncate=True), inst.query, inst.context)
    prompt = lm.calls[0][0]["content"]
    assert res.truncated and not res.exceeded
    assert "[... context truncated:" in prompt
    assert len(prompt) < 20_000 * 4


def test_base_over_its_window_sends_nothing_and_reports_not_applicable() -> None:
    inst = sniah(0, 65536, 3)
    lm = ScriptedLM(["never sent"])
    res = _run(BaseModel(lm, window=20_000), inst.query, inst.context)
    assert lm.calls == []
    assert res.exceeded and res.stop_reason == "context_exceeded" and res.answer == ""
    assert res.cost_usd == 0.0 and not res.truncated


def test_base_just_inside_its_window_is_sent_whole() -> None:
    context = "word " * 2000  # 10,000 chars: at most 10,000 tokens by any count
    lm = ScriptedLM(["ok"])
    res = _run(BaseModel(lm, window=10_100 + 16_384), "q?", context)
    assert len(lm.calls) == 1 and not res.exceeded and not res.truncated


def test_summary_carries_notes_from_chunk_to_chunk_then_answers_with_the_root() -> None:
    context = ["first part mentions 1111111"] + ["filler " * 4000] * 3
    seen: list[str] = []

    def summarise(messages: list[ChatMessage]) -> str:
        seen.append(prompt_of(messages))
        return "notes: value 1111111"

    small = ScriptedLM(summarise, model="scripted/nano")
    root = ScriptedLM(lambda m: "Answer: 1111111" if "1111111" in prompt_of(m) else "?")
    res = _run(SummaryAgent(root, small, window=20_000), "What value?", context)
    assert len(seen) >= 2 and "notes: value 1111111" in seen[1]
    assert res.answer == "Answer: 1111111"
    assert res.subcalls == len(seen) and res.iterations == len(seen) + 1


def test_summary_answers_directly_when_the_input_fits() -> None:
    small = ScriptedLM(["never used"], model="scripted/nano")
    root = ScriptedLM(lambda m: "Answer: 7" if "seven is 7" in prompt_of(m) else "?")
    res = _run(SummaryAgent(root, small, window=100_000), "What is seven?", "seven is 7")
    assert small.calls == [] and len(root.calls) == 1
    assert res.answer == "Answer: 7" and res.subcalls == 0 and res.extra["chunks"] == 0


def test_simple_rlm_sends_one_subcall_per_chunk_then_aggregates() -> None:
    inst = sniah(1, 16384, 1)
    sub = ScriptedLM(lambda m: (re.findall(r"is: (\d+)\.", prompt_of(m)) or ["NONE"])[0])
    root = ScriptedLM(lambda m: "Answer: " + " ".join(re.findall(r"\b\d{7}\b", prompt_of(m))))
    res = _run(SimpleRLM(root, sub, chunk_chars=10_000), inst.query, inst.context)
    n_chunks = -(-len(inst.context) // 10_000)
    assert res.subcalls == len(sub.calls) == n_chunks
    assert sniah_score(res.answer, inst) == 1.0


def test_bm25_ranks_the_document_with_the_query_terms_first() -> None:
    index = BM25Index(["apples and pears", "the quiet harbor festival", "pears only"])
    assert index.search("quiet harbor", 1)[0][0] == 1


def test_codeact_searches_runs_code_and_answers() -> None:
    inst = browsecomp(0, 20_000, 0)
    gold = inst.gold[0]

    def agent(messages: list[ChatMessage]) -> str:
        turn = sum(1 for m in messages if m["role"] == "assistant")
        if turn == 0:
            return "SEARCH(" + gold + ")"
        if turn == 1:
            assert gold in messages[-1]["content"]  # the search hit is shown
            return "```python\nprint(21 * 2)\n```"
        assert "42" in messages[-1]["content"]  # the code ran
        return f"ANSWER: Exact Answer: {gold}"

    res = _run(CodeActBM25(ScriptedLM(agent), sandbox="none"), inst.query, inst.context)
    assert res.stop_reason == "final" and res.iterations == 3
    assert browsecomp_score(res.answer, inst) == 1.0
    assert res.extra["searches"] == 1


def test_codeact_without_search_offers_no_search_and_runs_none() -> None:
    def agent(messages: list[ChatMessage]) -> str:
        turn = sum(1 for m in messages if m["role"] == "assistant")
        return "SEARCH(harbor)" if turn == 0 else "ANSWER: done"

    lm = ScriptedLM(agent)
    res = _run(CodeActBM25(lm, search=False, sandbox="none"), "q?", ["doc one", "doc two"])
    assert "SEARCH" not in lm.calls[0][0]["content"]
    assert "SEARCH" not in lm.calls[1][-1]["content"]  # the reply was not taken as an action
    assert res.answer == "done" and res.extra["searches"] == 0


def test_codeact_stops_at_max_iterations() -> None:
    res = _run(
        CodeActBM25(ScriptedLM(lambda m: "thinking..."), max_iterations=3, sandbox="none"),
        "q?",
        "some context",
    )
    assert res.stop_reason == "max_iterations" and res.iterations == 3


FIND_NEEDLE = """```repl
import re
m = re.search(r"special magic \\w+ for %s is: (\\S+)\\.", context)
FINAL(m.group(1))
```"""


def test_rlm_runs_the_engine_and_reports_its_result() -> None:
    inst = sniah(2, 32768, 1)
    root = ScriptedLM(lambda m: FIND_NEEDLE % inst.meta["key"])
    res = _run(RLMMethod(root, ScriptedLM(["unused"])), inst.query, inst.context)
    assert res.stop_reason == "final"
    assert sniah_score(res.answer, inst) == 1.0
    assert res.iterations == 1 and res.subcalls == 0


def test_rlm_without_subcalls_does_not_offer_llm_query() -> None:
    root = ScriptedLM(lambda m: "```repl\nFINAL(str(len(context)))\n```")
    res = _run(RLMMethod(root, subcalls=False, name="rlm-no-subcalls"), "How long?", "x" * 1234)
    assert res.answer == "1234"
    assert "llm_query" not in root.calls[0][0]["content"]


def test_a_provider_failure_ends_a_baseline_with_an_error_result() -> None:
    from fastrlm import ProviderResponseError

    boom = ProviderResponseError("down", provider="scripted", model="scripted/lm")
    res = _run(BaseModel(ScriptedLM([boom])), "q", "ctx")
    assert res.stop_reason == "error" and res.error and "down" in res.error


def _run(method: Method, question: str, context: str | list[str]) -> MethodResult:
    return asyncio.run(method.run(question, context, Meter()))
