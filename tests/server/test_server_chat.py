"""POST /v1/chat/completions through the real openai SDK: context modes, streaming, budgets."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from fastrlm import (
    RLM,
    Budget,
    ConfigurationError,
    PriceTable,
    ProviderConnectionError,
    RLMResult,
    StopReason,
)
from fastrlm._foundation.usage import UsageSummary
from fastrlm.server import RLMServer
from fastrlm.server._protocol import result_status
from fastrlm.testing import ScriptedLM, prompt_of
from fastrlm.trace import TraceWriter, read_trace

from .helpers import ECHO_CONTEXT, ECHO_SHAPE, NEVER_FINAL, QUESTION, root, serving


async def test_models_lists_rlm_and_the_root_model() -> None:
    async with serving(root(ECHO_SHAPE)) as (_, client):
        models = await client.models.list()
        one = await client.models.retrieve("rlm/scripted/root")
    assert [m.id for m in models.data] == ["rlm", "rlm/scripted/root"]
    assert one.owned_by == "fastrlm"


async def test_extra_body_context_reaches_the_repl_and_final_is_the_answer() -> None:
    root_lm = root(ECHO_SHAPE)
    async with serving(root_lm) as (_, client):
        reply = await client.chat.completions.create(
            model="rlm", messages=QUESTION, extra_body={"context": "x" * 1000})
    assert reply.choices[0].message.content == "str:1000"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.object == "chat.completion" and reply.model == "rlm"
    assert reply.usage is not None and reply.usage.prompt_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    extra: dict[str, Any] = reply.model_extra["fastrlm"]  # type: ignore[index]
    assert extra["stop_reason"] == "final" and extra["iterations"] == 1
    assert extra["sandbox"] and extra["trace_id"]
    assert prompt_of(root_lm.calls[0]).count("How long is it?") >= 1
    trace = read_trace(TraceWriter().path_for(extra["trace_id"]))  # under $FASTRLM_HOME
    assert trace.finished is not None and trace.finished["stop_reason"] == "final"


@pytest.mark.parametrize(("context", "shape"), [(["a", "bb", "ccc"], "list:3"),
                                                ({"k": [1, 2]}, "dict:1")])
async def test_list_and_json_contexts_keep_their_type(context: object, shape: str) -> None:
    async with serving(root(ECHO_SHAPE)) as (_, client):
        reply = await client.chat.completions.create(
            model="rlm/scripted/root", messages=QUESTION, extra_body={"context": context})
    assert reply.choices[0].message.content == shape


async def test_drop_in_mode_makes_the_role_labelled_conversation_the_context() -> None:
    root_lm = root(ECHO_CONTEXT)
    messages: list[Any] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "First question"}]},
        {"role": "assistant", "content": "First answer"},
        {"role": "user", "content": "Second question"},
    ]
    async with serving(root_lm) as (_, client):
        reply = await client.chat.completions.create(model="rlm", messages=messages)
    assert reply.choices[0].message.content == (
        "system: Be brief.\n\nuser: First question\n\nassistant: First answer\n\n"
        "user: Second question")
    assert "Second question" in prompt_of(root_lm.calls[0])


async def test_streaming_sends_progress_then_content_finish_usage_and_done() -> None:
    async with serving(root(ECHO_SHAPE)) as (_, client):
        stream = await client.chat.completions.create(
            model="rlm", messages=QUESTION, stream=True, extra_body={"context": "abc"},
            stream_options={"include_usage": True})
        chunks = [c async for c in stream]
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == "str:3"
    events = [c.model_extra["fastrlm"]["event"]["type"] for c in chunks  # type: ignore[index]
              if "event" in (c.model_extra or {}).get("fastrlm", {})]
    assert events[0] == "run.started" and events[-1] == "run.finished"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and finishes.count("stop") == 1
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0
    assert all(c.object == "chat.completion.chunk" for c in chunks)


async def test_streaming_without_progress_or_usage_is_plain() -> None:
    async with serving(root(ECHO_SHAPE)) as (_, client):
        stream = await client.chat.completions.create(
            model="rlm", messages=QUESTION, stream=True,
            extra_body={"context": "abcd", "fastrlm": {"progress": False}})
        chunks = [c async for c in stream]
    assert [c.choices[0].delta.content for c in chunks] == ["", "str:4", None]
    assert chunks[-1].choices[0].finish_reason == "stop" and chunks[-1].usage is None


async def test_a_request_budget_lowers_the_server_limit_but_cannot_raise_it() -> None:
    batch = ('```repl\nr = llm_query_batched(["a", "b", "c"])\n'
             'FINAL(str(sum(x.startswith("[error") for x in r)))\n```')
    async with serving(root(batch), budget=Budget(max_subcalls=1)) as (_, client):
        raised = await client.chat.completions.create(
            model="rlm", messages=QUESTION,
            extra_body={"context": "c", "fastrlm": {"max_subcalls": 100, "max_usd": 5}})
        lowered = await client.chat.completions.create(
            model="rlm", messages=QUESTION, extra_body={"context": "c",
                                                        "fastrlm": {"max_subcalls": 0}})
    assert raised.choices[0].message.content == "2"  # still capped at the server's 1 sub-call
    extra: dict[str, Any] = raised.model_extra["fastrlm"]  # type: ignore[index]
    assert extra["budget"]["max_subcalls"] == 1 and extra["budget"]["max_usd"] == 5
    assert extra["subcalls"] == 1
    assert lowered.choices[0].message.content == "3"


async def test_a_final_after_refused_subcalls_finishes_with_length_and_says_why() -> None:
    batch = ('```repl\nr = llm_query_batched(["a", "b", "c"])\n'
             'FINAL(str(sum(x.startswith("[error") for x in r)))\n```')
    async with serving(root(batch), budget=Budget(max_subcalls=1)) as (_, client):
        reply = await client.chat.completions.create(
            model="rlm", messages=QUESTION, extra_body={"context": "c"})
    assert reply.choices[0].message.content == "2"
    assert reply.choices[0].finish_reason == "length"
    extra: dict[str, Any] = reply.model_extra["fastrlm"]  # type: ignore[index]
    assert extra["stop_reason"] == "final" and extra["partial"] is True
    assert extra["limited_by"] == "budget_subcalls"
    assert extra["subcalls_refused"] == 2 and extra["subcalls_failed"] == 0


async def test_a_run_stopped_by_a_limit_finishes_with_length() -> None:
    async with serving(root(NEVER_FINAL)) as (_, client):
        reply = await client.chat.completions.create(
            model="rlm", messages=QUESTION,
            extra_body={"context": "c", "fastrlm": {"max_iterations": 1}})
    assert reply.choices[0].finish_reason == "length"
    assert reply.model_extra["fastrlm"]["stop_reason"] == "max_iterations"  # type: ignore[index]


async def test_provider_failure_is_a_502_with_the_openai_error_shape() -> None:
    failing = ScriptedLM([openai_error()], model="scripted/root")
    async with serving(failing) as (_, client):
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(model="rlm", messages=QUESTION,
                                                 extra_body={"context": "c"})
    assert caught.value.status_code == 502
    assert caught.value.code == "provider_error"


def openai_error() -> BaseException:
    return ProviderConnectionError("upstream down", provider="scripted", model="scripted/root")


async def test_a_dollar_limit_on_unpriced_models_is_refused_not_silently_empty() -> None:
    mystery = ScriptedLM(lambda m: ECHO_SHAPE, model="custom/mystery")
    async with serving(mystery) as (_, client):
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(
                model="rlm", messages=QUESTION,
                extra_body={"context": "c", "fastrlm": {"max_usd": 1}})
    assert caught.value.code == "unpriced_model"
    with pytest.raises(ConfigurationError, match="no price is known for custom/mystery"):
        RLMServer(RLM(mystery, sandbox="none", budget=Budget(max_usd=1)))
    priced = PriceTable({"custom/mystery": {"input": 1.0, "output": 2.0}})
    assert RLMServer(RLM(mystery, sandbox="none", budget=Budget(max_usd=1), prices=priced)).budget


@pytest.mark.parametrize(
    ("stop", "kind", "status"),
    [("final", None, None), ("budget_usd", None, None), ("timeout", None, None),
     ("error", "provider", 502), ("error", "sandbox", 503), ("error", "context", 400),
     ("error", None, 500), ("cancelled", None, 503)],
)
def test_result_status_maps_stop_reasons_and_error_kinds(
    stop: str, kind: str | None, status: int | None
) -> None:
    result = RLMResult(answer="", stop_reason=StopReason(stop), usage=UsageSummary(), cost_usd=0,
                       trace_id="t", trace_path=None, iterations=1, subcalls=0, sandbox="none",
                       duration_s=0.1, error="boom" if stop == "error" else None,
                       error_kind=kind)
    error = result_status(result)
    assert (error.status if error else None) == status
    if error is not None:
        assert error.body()["fastrlm"]["trace_id"] == "t"


#: The root checks that the whole conversation is in the REPL and ends with the question.
_HOLDS_IT = ('```repl\nFINAL(str(len(context)) + ":" + '
             'str(context.endswith("How many services?")))\n```')


def _log(size: int) -> str:
    lines = [f"2026-12-07T04:00:{i % 60:02d} service=svc-{i % 37} status=ok latency_ms={i}"
             for i in range(size // 60 + 1)]
    return "\n".join(lines)[:size]


async def test_a_document_piped_into_the_message_is_read_in_the_repl_not_shown_to_the_root(
) -> None:
    # `cat big.log | llm -m rlm "How many services?"`: llm joins stdin and the prompt with one
    # space into a single user message and streams it (stream_options.include_usage)
    document = _log(1_000_000)
    message = document + " " + "How many services?"
    root_lm = root(_HOLDS_IT)
    async with serving(root_lm) as (_, client):
        stream = await client.chat.completions.create(
            model="rlm", messages=[{"role": "user", "content": message}], stream=True,
            stream_options={"include_usage": True})
        chunks = [c async for c in stream]
    answer = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert answer == f"{len('user: ') + len(message)}:True"  # the whole message is `context`
    first = root_lm.calls[0]
    shown = sum(len(m["content"]) for m in first if m["role"] != "system")
    assert shown < 5_000, f"the root was shown {shown:,} characters of a 1 MB message"
    assert "How many services?" in first[-1]["content"]  # the question part reaches the root
    assert "1,000,019 characters" in first[-1]["content"]


async def test_a_long_earlier_message_of_the_conversation_is_not_shown_to_the_root() -> None:
    root_lm = root(ECHO_SHAPE)
    messages: list[Any] = [
        {"role": "user", "content": _log(300_000)},
        {"role": "assistant", "content": "Got it."},
        {"role": "user", "content": "How many services?"},
    ]
    async with serving(root_lm) as (_, client):
        await client.chat.completions.create(model="rlm", messages=messages)
    first = root_lm.calls[0]
    assert sum(len(m["content"]) for m in first if m["role"] != "system") < 5_000
    assert "How many services?" in first[-1]["content"]


async def test_a_long_question_beside_a_context_that_does_not_hold_it_is_a_clear_400() -> None:
    root_lm = root(ECHO_SHAPE)
    async with serving(root_lm) as (_, client):
        with pytest.raises(openai.BadRequestError, match="Limits.question_chars"):
            await client.chat.completions.create(
                model="rlm", messages=[{"role": "user", "content": "q" * 50_000}],
                extra_body={"context": "a small document"})
    assert root_lm.calls == []


async def test_the_older_keyword_form_still_serves_with_a_deprecation_warning() -> None:
    root = ScriptedLM(lambda m: "```repl\nFINAL('ok')\n```", model="scripted/root")
    with pytest.warns(DeprecationWarning, match="RLMServer\\(RLM\\(model"):
        server = RLMServer(root, sandbox="none", trace=False, budget=Budget(max_iterations=2))
    assert server.budget.max_iterations == 2
    await server.close()


def test_an_rlm_is_taken_as_it_is_and_its_own_options_are_refused_beside_it() -> None:
    rlm = RLM(ScriptedLM(lambda m: "x", model="scripted/root"), sandbox="none")
    with pytest.raises(ConfigurationError, match="budget belong to RLM"):
        RLMServer(rlm, budget=Budget(max_iterations=2))
    assert RLMServer(rlm).budget is rlm.budget
