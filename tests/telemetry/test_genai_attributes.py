"""Chat spans carry the GenAI conventions' recommended response and server attributes, read
from the provider's real reply (the fake OpenAI server over HTTP); and the run's span is the
current context while it runs, so spans other code opens meanwhile nest under it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")  # the otel extra

from opentelemetry import trace  # noqa: E402

from fastrlm import RLM, Budget, Tool  # noqa: E402
from fastrlm.lm import LMResponse  # noqa: E402
from fastrlm.telemetry import Telemetry  # noqa: E402
from fastrlm.testing import FakeOpenAIServer, ScriptedLM, skip_unless_sandbox  # noqa: E402
from fastrlm.testing._fake_server import FakeRequest, Reply  # noqa: E402

from .helpers import by_name, memory_provider  # noqa: E402

ROOT = '```repl\nFINAL("ok " + llm_query("part"))\n```'


def _reply(request: FakeRequest) -> Reply:
    return ROOT if request.is_root else "sub reply"


async def test_chat_spans_carry_the_replys_model_id_finish_reason_and_server() -> None:
    provider, exporter = memory_provider()
    with FakeOpenAIServer(handler=_reply) as fake:
        rlm = RLM("openai/root-model", "openai/sub-model", base_url=fake.base_url,
                  api_key="fake", sandbox="none", telemetry=Telemetry(tracer_provider=provider))
        try:
            result = await rlm.acompletion("q", context="c")
        finally:
            await rlm.aclose()
        port = int(fake.base_url.rsplit(":", 1)[1].split("/", 1)[0])
    assert result.answer == "ok sub reply"
    spans = exporter.get_finished_spans()
    [turn] = by_name(spans, "chat root-model")
    [sub] = by_name(spans, "chat sub-model")
    for span, model in ((turn, "root-model"), (sub, "sub-model")):
        attrs = span.attributes
        assert attrs is not None
        assert attrs["gen_ai.response.model"] == model  # what the server said answered
        assert str(attrs["gen_ai.response.id"]).startswith("chatcmpl-fake-")
        assert tuple(attrs["gen_ai.response.finish_reasons"]) == ("stop",)  # type: ignore[arg-type]
        assert attrs["server.address"] == "127.0.0.1" and attrs["server.port"] == port


def test_an_endpoint_without_a_port_gets_its_schemes() -> None:
    from fastrlm.lm._provider import endpoint

    assert endpoint("https://api.openai.com/v1") == ("api.openai.com", 443)
    assert endpoint("http://[::1]:8000/v1") == ("::1", 8000)
    assert endpoint("http://host:notaport/v1") is None and endpoint(None) is None


class _SpanningLM(ScriptedLM):
    """A model whose call opens a span of its own, as an instrumented HTTP client would."""

    tracer: Any = None

    async def complete(self, messages: Sequence[Any], **kwargs: Any) -> LMResponse:
        with self.tracer.start_as_current_span(f"POST {self.model}"):
            return await super().complete(messages, **kwargs)


@pytest.mark.parametrize("sandbox", ["none", "bwrap"])
async def test_spans_opened_during_the_run_nest_under_its_span(sandbox: str) -> None:
    # in an isolated sandbox the tool runs host-side, from the worker's host op
    skip_unless_sandbox(sandbox)
    provider, exporter = memory_provider()
    other = provider.get_tracer("other-library")  # its own tracer, as httpx's would be

    def lookup(key: str) -> str:
        with other.start_as_current_span("user tool work"):
            return key.upper()

    root = _SpanningLM(lambda m: '```repl\nFINAL(lookup("x") + llm_query("p"))\n```',
                       model="scripted/root")
    sub = _SpanningLM(lambda m: "s", model="scripted/sub")
    root.tracer = sub.tracer = other
    before = trace.get_current_span()
    rlm = RLM(root, sub, sandbox=sandbox, budget=Budget(max_iterations=2),
              tools=[Tool(lookup, description="look a key up")],
              telemetry=Telemetry(tracer_provider=provider))
    try:
        result = await rlm.acompletion("q", context="c")
    finally:
        await rlm.aclose()
    assert result.answer == "Xs"
    spans = exporter.get_finished_spans()
    [run] = by_name(spans, "invoke_agent fastrlm")
    for name in ("POST scripted/root", "POST scripted/sub", "user tool work"):
        [inner] = by_name(spans, name)
        assert inner.context.trace_id == run.context.trace_id, name
        assert run.context.span_id in _ancestors(inner, spans), name
    assert trace.get_current_span() is before  # the caller's context is left as it was
    assert run.attributes is not None and run.attributes["fastrlm.stop_reason"] == "final"


async def test_a_run_refused_before_it_starts_ends_its_span() -> None:
    provider, exporter = memory_provider()
    rlm = RLM(ScriptedLM(lambda m: "x"), sandbox="none",
              telemetry=Telemetry(tracer_provider=provider))
    try:
        await rlm.acompletion("q", context=object())
    except Exception:  # noqa: BLE001 - the refusal itself is tested elsewhere
        pass
    finally:
        await rlm.aclose()
    assert all(not s.name.startswith("invoke_agent") or s.end_time for s in
               exporter.get_finished_spans())


def _ancestors(span: Any, spans: Sequence[Any]) -> set[int]:
    by_id = {s.context.span_id: s for s in spans}
    found: set[int] = set()
    while span is not None and span.parent is not None:
        found.add(span.parent.span_id)
        span = by_id.get(span.parent.span_id)
    return found
