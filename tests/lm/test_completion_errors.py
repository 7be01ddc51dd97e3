"""completion() raises the typed error of a failed run, with the partial result attached.

Through the real ``openai`` SDK against FakeOpenAIServer: a wrong key, a refused connection,
429 forever and a garbage body each surface as their own exception, never as ``answer=''``.
Limit stops (budget, iterations, time) still return a result with ``partial=True``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fastrlm import (
    RLM,
    AuthenticationError,
    Budget,
    Limits,
    ProviderConnectionError,
    ProviderResponseError,
    RateLimitError,
    RLMError,
    RLMResult,
    SandboxUnavailableError,
    StopReason,
)
from fastrlm.events import Event, RunFinished
from fastrlm.testing import FakeOpenAIServer, FakeReply, FakeRequest, Fault

FIRST_TURN = FakeReply("```repl\nx = 1\nprint(x)\n```", prompt_tokens=1_000, completion_tokens=50)


def rlm(base_url: str, tmp_path: Path, **kw: Any) -> RLM:
    kw.setdefault("budget", Budget(max_iterations=5))
    return RLM("openai/gpt-5", base_url=base_url, api_key=kw.pop("api_key", "sk-test"),
               limits=Limits(max_retries=2, request_timeout_s=10), sandbox="none",
               trace=tmp_path / "home", **kw)


def partial_of(error: RLMError) -> RLMResult:
    result = error.result
    assert result is not None, "the error carries the run's partial result"
    assert result.stop_reason is StopReason.ERROR and result.partial
    assert result.error_kind == "provider" and result.error
    assert result.trace_path is not None and Path(result.trace_path).is_file()
    return result


def test_a_wrong_key_raises_authentication_error_not_an_empty_answer(tmp_path: Path) -> None:
    def check_key(request: FakeRequest) -> FakeReply | Fault:
        if request.headers.get("authorization") != "Bearer sk-right":
            return Fault.http_status(401, "Incorrect API key provided")
        return FakeReply("FINAL(1)")

    with FakeOpenAIServer(handler=check_key) as server:
        with pytest.raises(AuthenticationError, match="401") as info:
            rlm(server.base_url, tmp_path, api_key="wrong").completion("q", context="c")
        assert len(server.completion_requests) == 1  # a 401 is never retried
    result = partial_of(info.value)
    assert result.answer == "" and result.iterations == 0
    # the refused attempt is still booked, at its prompt's input bound (providers may bill it)
    assert result.requests == 1 and result.usage.output_tokens == 0 and result.cost_usd > 0
    assert info.value.status == 401


def test_a_refused_connection_names_the_base_url(tmp_path: Path) -> None:
    with FakeOpenAIServer() as gone:
        url = gone.base_url  # a port that answered a moment ago and is closed now
    with pytest.raises(ProviderConnectionError) as info:
        rlm(url, tmp_path).completion("q", context="c")
    assert url in str(info.value)
    assert url in (partial_of(info.value).error or "")


def test_endless_429s_raise_rate_limit_error_with_the_usage_so_far(tmp_path: Path) -> None:
    with FakeOpenAIServer([FIRST_TURN], default=Fault.rate_limit(retry_after="0")) as server:
        with pytest.raises(RateLimitError) as info:
            rlm(server.base_url, tmp_path).completion("q", context="c")
        assert len(server.completion_requests) == 1 + 3  # the first turn, then 1 + 2 retries
    result = partial_of(info.value)
    assert result.iterations == 1 and result.requests == 4
    first_turn = (1_000 * 1.25 + 50 * 10.0) / 1e6
    # the answered turn at its reported usage, plus three refused attempts at their input bound
    assert result.usage.output_tokens == 50 and result.usage.input_tokens > 1_000
    assert result.usage.by_model["openai/gpt-5"].failed_requests == 3
    assert result.cost_usd > first_turn


def test_a_garbage_body_raises_provider_response_error(tmp_path: Path) -> None:
    with FakeOpenAIServer([FIRST_TURN], default=Fault.malformed_json()) as server:
        with pytest.raises(ProviderResponseError, match="malformed") as info:
            rlm(server.base_url, tmp_path).completion("q", context="c")
    result = partial_of(info.value)
    assert result.usage.output_tokens == 50 and result.usage.input_tokens > 1_000


async def test_stream_yields_the_failed_run_s_events_then_raises_the_same_error(
    tmp_path: Path,
) -> None:
    seen: list[Event] = []
    async with FakeOpenAIServer(default=Fault.http_status(403, "forbidden")) as server:
        model = rlm(server.base_url, tmp_path)
        with pytest.raises(AuthenticationError) as info:
            async for event in model.stream("q", context="c"):
                seen.append(event)
        await model.aclose()
    assert isinstance(seen[-1], RunFinished) and seen[-1].stop_reason == "error"
    assert partial_of(info.value).trace_id == seen[-1].run_id


async def test_a_sandbox_that_cannot_start_raises_sandbox_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fastrlm._core.run_loop

    def unavailable(kind: str, limits: object) -> object:
        raise SandboxUnavailableError("bubblewrap is not installed")

    monkeypatch.setattr(fastrlm._core.run_loop, "make_sandbox", unavailable)
    async with FakeOpenAIServer(default="FINAL(1)") as server:
        model = rlm(server.base_url, tmp_path)
        with pytest.raises(SandboxUnavailableError, match="bubblewrap") as info:
            await model.acompletion("q", context="c")
        await model.aclose()
    assert info.value.result is not None and info.value.result.error_kind == "sandbox"


@pytest.mark.parametrize(
    ("budget", "reason"),
    [(Budget(max_iterations=1), StopReason.MAX_ITERATIONS),
     (Budget(max_iterations=5, max_output_tokens=300), StopReason.BUDGET_TOKENS)],
)
def test_limit_stops_return_a_partial_result_rather_than_raise(
    tmp_path: Path, budget: Budget, reason: StopReason
) -> None:
    never_final = FakeReply("```repl\nprint('looking')\n```", completion_tokens=300)
    with FakeOpenAIServer(default=never_final) as server:
        result = rlm(server.base_url, tmp_path, budget=budget).completion("q", context="c")
    assert result.stop_reason is reason and result.partial
    assert result.error_kind is None
