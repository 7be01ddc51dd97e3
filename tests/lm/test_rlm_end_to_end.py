"""A full RLM run through FakeOpenAIServer with the real ``openai`` SDK: root, sub-calls, cost."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastrlm import RLM, Budget, Limits, StopReason
from fastrlm.lm import SubcallCache
from fastrlm.testing import FakeOpenAIServer, FakeReply, FakeRequest

ROOT_CODE = """```repl
chunks = context.split("|")
answers = llm_query_batched([f"Shout this: {c}" for c in chunks])
FINAL(";".join(answers))
```"""


def _handler(request: FakeRequest) -> FakeReply:
    if request.model == "gpt-5":  # the root
        return FakeReply(ROOT_CODE, prompt_tokens=20_000, completion_tokens=500)
    return FakeReply(
        request.prompt.split(": ", 1)[1].upper(), prompt_tokens=1_000, completion_tokens=10
    )


def _rlm(server: FakeOpenAIServer, **kw: object) -> RLM:
    return RLM(
        model="openai/gpt-5",
        sub_model="openai/gpt-5-mini",
        base_url=server.base_url,
        budget=Budget(max_iterations=4, max_subcalls=20),
        limits=Limits(max_concurrency=2, max_retries=2, request_timeout_s=10),
        sandbox="none",
        **kw,  # type: ignore[arg-type]
    )


def test_a_full_run_through_the_fake_server() -> None:
    with FakeOpenAIServer(handler=_handler, latency_s=0.02) as server:
        result = _rlm(server).completion(
            "Shout each part.", context="alpha beta|gamma delta epsilon|zeta"
        )
    assert result.stop_reason == StopReason.FINAL, result.error
    assert result.answer == "ALPHA BETA;GAMMA DELTA EPSILON;ZETA"
    assert result.subcalls == 3
    models = [r.model for r in server.completion_requests]
    assert models.count("gpt-5") == 1 and models.count("gpt-5-mini") == 3
    assert server.max_in_flight <= 2  # the engine's one semaphore, measured on the wire
    # gpt-5: 20k in x 1.25 + 500 out x 10; gpt-5-mini: 3 x (1k in x 0.25 + 10 out x 2) per 1M
    expected = (20_000 * 1.25 + 500 * 10.0) / 1e6 + 3 * (1_000 * 0.25 + 10 * 2.0) / 1e6
    assert result.cost_usd == pytest.approx(expected) == pytest.approx(0.03081)
    assert result.usage.by_model["openai/gpt-5-mini"].calls == 3


def test_a_cached_rerun_sends_no_subcall_over_http(tmp_path: Path) -> None:
    cache = SubcallCache(tmp_path / "cache.sqlite")
    with FakeOpenAIServer(handler=_handler) as server:
        rlm = _rlm(server, cache=cache)
        first = rlm.completion("Shout each part.", context="one|two")
        sent = len(server.completion_requests)
        second = rlm.completion("Shout each part.", context="one|two")  # a second event loop
        models_after = [r.model for r in server.completion_requests[sent:]]
    cache.close()
    assert first.answer == second.answer == "ONE;TWO"
    assert sent == 3
    assert models_after == []  # the root turn and both sub-calls came from the cache
    assert second.usage.by_model["openai/gpt-5-mini"].cache_hits == 2
    assert second.usage.by_model["openai/gpt-5"].cache_hits == 1
    assert second.cost_usd == 0
