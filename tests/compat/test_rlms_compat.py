"""``fastrlm.compat.rlms``: code written for the official ``rlms`` package, run with one changed
import, against the fake OpenAI server through the real openai SDK. The examples follow the
official package's documented usage (written fresh)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest.mock import Mock, patch

import pytest

from fastrlm import ConfigurationError, PriceTable, StopReason
from fastrlm.compat import _types, rlms
from fastrlm.compat.rlms import RLM, RLMCompatWarning, RLMLogger
from fastrlm.testing import FakeOpenAIServer, Fault, skip_unless_sandbox
from fastrlm.testing._fake_server import FakeRequest, Reply

POWERS = '```repl\nFINAL("\\n".join(str(2 ** i) for i in range(5)))\n```'
SUMMARY = ('```repl\nparts = llm_query_batched(["Summarise: " + c for c in context])\n'
           'FINAL(" | ".join(parts))\n```')


class Models:
    """Root turns (a system message) get ``root``; sub-calls answer with their model's name."""

    def __init__(self, root: Reply | Callable[[FakeRequest], Reply]) -> None:
        self.root = root
        self.requests: list[FakeRequest] = []

    def __call__(self, request: FakeRequest) -> Reply:
        self.requests.append(request)
        if request.is_root:
            return self.root(request) if callable(self.root) else self.root
        return f"{request.model} read {len(request.prompt)} chars"


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_types, "_warned", set())


@pytest.fixture
def serve() -> Iterator[Callable[[Reply | Callable[[FakeRequest], Reply]],
                                 tuple[dict[str, Any], Models]]]:
    servers: list[FakeOpenAIServer] = []

    def start(root: Reply | Callable[[FakeRequest], Reply]) -> tuple[dict[str, Any], Models]:
        models = Models(root)
        server = FakeOpenAIServer(handler=models).__enter__()
        servers.append(server)
        return {"base_url": server.base_url, "api_key": "sk-fake"}, models

    yield start
    for server in servers:
        server.__exit__(None, None, None)


def test_quickstart_prompt_alone(serve: Any) -> None:
    endpoint, _ = serve(POWERS)
    rlm = RLM(backend="openai", backend_kwargs={"model_name": "gpt-5-mini", **endpoint},
              verbose=False, sandbox="none")
    completion = rlm.completion("Print me the first 5 powers of two, each on a newline.")
    assert completion.response == "1\n2\n4\n8\n16"
    assert completion.root_model == "gpt-5-mini"
    assert completion.prompt == "Print me the first 5 powers of two, each on a newline."
    assert completion.error is None and completion.execution_time > 0
    usage = completion.usage_summary
    assert usage.total_input_tokens > 0 and usage.total_output_tokens > 0
    assert usage.total_cost > 0  # priced from fastrlm's table, no provider help needed
    assert usage.to_dict()["model_usage_summaries"]["gpt-5-mini"]["total_calls"] == 1


def test_context_and_root_prompt_with_a_sub_model(serve: Any) -> None:
    endpoint, models = serve(SUMMARY)
    rlm = RLM(backend="openai", backend_kwargs={"model_name": "gpt-5", **endpoint},
              other_backends=["openai"],
              other_backend_kwargs=[{"model_name": "gpt-5-nano", **endpoint}],
              max_iterations=5, sandbox="none")
    completion = rlm.completion(["alpha" * 10, "beta" * 10], root_prompt="Summarise each part.")
    assert completion.response == ("gpt-5-nano read 61 chars | gpt-5-nano read 51 chars")
    subs = [r for r in models.requests if not r.is_root]
    assert [r.model for r in subs] == ["gpt-5-nano", "gpt-5-nano"]
    by_model = completion.usage_summary.model_usage_summaries
    assert by_model["gpt-5-nano"].total_calls == 2  # keyed as the official package keys it
    assert completion.result is not None and completion.result.subcalls == 2


def test_a_dict_prompt_without_root_prompt_is_the_context(serve: Any) -> None:
    endpoint, _ = serve('```repl\nFINAL(",".join(sorted(context)))\n```')
    rlm = RLM(backend_kwargs={"model_name": "gpt-5-mini", **endpoint}, sandbox="none")
    assert rlm.completion({"b": 1, "a": 2}).response == "a,b"


def test_budgets_map_onto_fastrlm_budget(serve: Any) -> None:
    endpoint, _ = serve("```repl\nprint('still looking')\n```")
    rlm = RLM(backend_kwargs={"model_name": "gpt-5-mini", **endpoint}, max_iterations=2,
              max_depth=1, max_budget=0.5, max_timeout=60, max_tokens=100_000,
              max_concurrent_subcalls=3, sandbox="none")
    budget = rlm.fastrlm.budget
    assert (budget.max_iterations, budget.max_usd, budget.max_seconds) == (2, 0.5, 60)
    assert budget.max_input_tokens == budget.max_output_tokens == 100_000
    assert rlm.fastrlm.limits.max_concurrency == 3
    completion = rlm.completion("a context", root_prompt="never answered")
    assert completion.result is not None
    assert completion.result.stop_reason is StopReason.MAX_ITERATIONS
    assert completion.result.partial and completion.error is None


def test_max_budget_for_an_unpriced_model_runs_as_the_official_package_does(serve: Any) -> None:
    """The official package counts only reported costs: a model without a price runs, its
    calls count $0 and max_budget does not stop it (said once, in a warning)."""
    endpoint, _ = serve(POWERS)
    rlm = RLM(backend_kwargs={"model_name": "my-local-model", **endpoint}, max_budget=1e-9,
              sandbox="none")
    with pytest.warns(RLMCompatWarning, match=r"no price is known for openai/my-local-model.*"
                      r"count \$0"):
        completion = rlm.completion("powers")
    assert completion.response == "1\n2\n4\n8\n16" and completion.error is None
    assert completion.usage_summary.total_cost == 0.0
    # with a price table of the caller's own, fastrlm's check holds: every model priced
    with pytest.raises(ConfigurationError, match="no price is known"):
        RLM(backend_kwargs={"model_name": "my-local-model", **endpoint}, max_budget=1.0,
            prices=PriceTable({"other": {"input": 1, "output": 1}})).completion("x")
    priced = RLM(backend_kwargs={"model_name": "my-local-model", **endpoint}, max_budget=1e-9,
                 prices=PriceTable({"my-local-model": {"input": 1e5, "output": 1e5}}),
                 sandbox="none").completion("powers")
    assert priced.result is not None and priced.result.stop_reason is StopReason.BUDGET_USD


def test_a_logger_keeps_the_trajectory(serve: Any, tmp_path: Path) -> None:
    endpoint, _ = serve(POWERS)
    logger = RLMLogger(log_dir=str(tmp_path / "logs"))
    rlm = RLM(backend_kwargs={"model_name": "gpt-5-mini", **endpoint}, logger=logger,
              sandbox="none")
    completion = rlm.completion("powers of two")
    assert completion.metadata is not None
    kinds = [e["type"] for e in completion.metadata["events"]]
    assert kinds[0] == "run.started" and kinds[-1] == "run.finished"
    trace = Path(completion.metadata["trace_path"])
    assert trace.parent == tmp_path / "logs" / "traces" and trace.is_file()
    first = json.loads(trace.read_text().splitlines()[0])
    assert first["type"] == "run.started"
    assert RLM(backend_kwargs={"model_name": "gpt-5-mini", **endpoint},
               sandbox="none").completion("x").metadata is None


def test_callbacks_fire_for_sub_calls_and_iterations(serve: Any) -> None:
    endpoint, _ = serve('```repl\nFINAL(llm_query("hello there"))\n```')
    seen: list[tuple[Any, ...]] = []
    rlm = RLM(backend_kwargs={"model_name": "gpt-5-mini", **endpoint}, sandbox="none",
              on_subcall_start=lambda *a: seen.append(("sub start", *a)),
              on_subcall_complete=lambda d, m, t, e: seen.append(("sub done", d, m, e)),
              on_iteration_start=lambda *a: seen.append(("it start", *a)),
              on_iteration_complete=lambda d, i, t: seen.append(("it done", d, i)))
    rlm.completion("ctx", root_prompt="q")
    assert seen == [("it start", 0, 1), ("sub start", 1, "openai/gpt-5-mini", "hello there"),
                    ("sub done", 1, "openai/gpt-5-mini", None), ("it done", 0, 1)]


def test_a_remote_environment_warns_once_and_runs_in_fastrlms_sandbox(serve: Any) -> None:
    endpoint, _ = serve(POWERS)
    kwargs = {"backend_kwargs": {"model_name": "gpt-5-mini", **endpoint}, "sandbox": "none"}
    with pytest.warns(RLMCompatWarning) as record:
        rlm = RLM(environment="modal", environment_kwargs={"app_name": "x"}, **kwargs)
    assert ["environment='modal'" in str(w.message) for w in record] == [True, False]
    assert "environment_kwargs (app_name) are ignored" in str(record[1].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RLM(environment="modal", **kwargs)  # once per process
    assert rlm.completion("powers").response == "1\n2\n4\n8\n16"
    assert issubclass(RLMCompatWarning, UserWarning)


@pytest.mark.parametrize("argument", [
    {"max_errors": 3}, {"depth": 1},
    {"sampling_args": {"top_p": 0.5}}, {"backend_kwargs_extra": True},
])
def test_arguments_without_meaning_here_warn(serve: Any, argument: dict[str, Any]) -> None:
    endpoint, _ = serve(POWERS)
    backend_kwargs = {"model_name": "gpt-5-mini", **endpoint}
    if argument.pop("backend_kwargs_extra", False):
        backend_kwargs["timeout"] = 30
    with pytest.warns(RLMCompatWarning, match="ignored"):
        RLM(backend_kwargs=backend_kwargs, sandbox="none", **argument)


def test_bad_backends_and_environments_are_refused_with_the_fix() -> None:
    with pytest.raises(ConfigurationError, match="model_name"):
        RLM(backend="openai", backend_kwargs={})
    with pytest.raises(ConfigurationError, match="unknown backend 'bedrock'"):
        RLM(backend="bedrock", backend_kwargs={"model_name": "x"})
    with pytest.raises(ConfigurationError, match="litellm"):
        RLM(backend="azure_openai", backend_kwargs={"model_name": "x"})
    with pytest.raises(ConfigurationError, match="unknown environment"):
        RLM(environment="kubernetes", backend_kwargs={"model_name": "gpt-5-mini"})
    with pytest.raises(ConfigurationError, match="one dict per backend"):
        RLM(backend_kwargs={"model_name": "gpt-5-mini", "api_key": "k"},
            other_backends=["openai", "openai"], other_backend_kwargs=[{"model_name": "a"}])


def test_a_failed_run_is_a_completion_with_error(serve: Any) -> None:
    endpoint, _ = serve(Fault.http_status(401, "Incorrect API key provided"))
    rlm = RLM(backend_kwargs={"model_name": "gpt-5-mini", **endpoint}, sandbox="none")
    completion = rlm.completion("anything")
    assert completion.error is not None and "Incorrect API key" in completion.error
    assert completion.response == ""
    assert completion.result is not None and completion.result.stop_reason is StopReason.ERROR


def test_a_custom_system_prompt_reaches_the_model_verbatim(serve: Any) -> None:
    endpoint, models = serve(POWERS)
    prompt = 'You are terse. Reply in JSON like {"a": 1}.'
    with RLM(backend_kwargs={"model_name": "gpt-5-mini", **endpoint}, sandbox="none",
             custom_system_prompt=prompt) as rlm:
        rlm.completion("powers")
    system = models.requests[0].messages[0]
    assert system["role"] == "system" and system["content"] == prompt


async def test_acompletion_in_async_code(serve: Any) -> None:
    endpoint, _ = serve(POWERS)
    rlm = RLM(backend_kwargs={"model_name": "gpt-5-mini", **endpoint}, sandbox="none")
    completion = await rlm.acompletion("powers")
    await rlm.aclose()
    assert completion.response.endswith("16")


def test_repl_code_names_other_backends_by_their_model_name(serve: Any) -> None:
    endpoint, _ = serve('```repl\nFINAL(llm_query("hi", model="gpt-5-nano") + " / " + '
                        'llm_query("hi"))\n```')
    rlm = RLM(backend_kwargs={"model_name": "gpt-5", **endpoint}, sandbox="none",
              other_backends=["openai", "openai"],
              other_backend_kwargs=[{"model_name": "gpt-5-mini", **endpoint},
                                    {"model_name": "gpt-5-nano", **endpoint}])
    assert rlm.completion("ctx", root_prompt="q").response == (
        "gpt-5-nano read 2 chars / gpt-5-mini read 2 chars")


def test_verbose_prints_progress_on_stderr(serve: Any, capsys: pytest.CaptureFixture[str]) -> None:
    endpoint, _ = serve(POWERS)
    RLM(backend_kwargs={"model_name": "gpt-5-mini", **endpoint}, sandbox="none",
        verbose=True).completion("powers")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "[fastrlm] iteration 1/30" in captured.err
    assert "[fastrlm] finished: final" in captured.err


def test_persistent_keeps_one_repl_across_completions(serve: Any) -> None:
    """The recorded gpt-4o trajectory of the official package: x = 500 in one completion, read
    back in the next."""

    def root(request: FakeRequest) -> str:
        if "New question (2" in str(request.messages[-1].get("content", "")):
            return '```repl\nFINAL(str(x) + "|" + context_0 + "|" + context)\n```'
        return "```repl\nx = 500\nFINAL('stored')\n```"

    endpoint, _ = serve(root)
    rlm = RLM(backend_kwargs={"model_name": "gpt-5-mini", **endpoint}, persistent=True,
              sandbox="none")
    try:
        assert rlm.completion("first doc", root_prompt="remember").response == "stored"
        assert rlm.completion("second doc", root_prompt="recall").response == (
            "500|first doc|second doc")
    finally:
        rlm.close()


def test_custom_tools_become_host_tools_in_the_repl(serve: Any) -> None:
    endpoint, _ = serve('```repl\nFINAL(str(lookup("k")) + str(shout("hi")))\n```')

    def shout(text: str) -> str:
        return text.upper()

    rlm = RLM(backend_kwargs={"model_name": "gpt-5-mini", **endpoint}, sandbox="none",
              custom_tools={"lookup": lambda key: {"k": 7}[key], "shout": shout})
    assert rlm.completion("ctx", root_prompt="q").response == "7HI"
    with pytest.raises(ConfigurationError, match="custom_tools"):
        RLM(backend_kwargs={"model_name": "gpt-5-mini", **endpoint}, custom_tools="lookup")



@pytest.mark.parametrize("kind", ["none", "bwrap", "landlock"])
def test_persistent_adds_each_later_prompt_as_the_next_context(serve: Any, kind: str) -> None:
    """The documented persistent mode: prompts without a root_prompt become context_0,
    context_1, ... (a later prompt used to be asked about the first one instead)."""
    skip_unless_sandbox(kind)

    def root(request: FakeRequest) -> str:
        if "New question (2" in str(request.messages[-1].get("content", "")):
            return '```repl\nFINAL(context_0 + "|" + context_1 + "|" + context)\n```'
        return "```repl\nFINAL('first')\n```"

    endpoint, _ = serve(root)
    rlm = RLM(backend_kwargs={"model_name": "gpt-5-mini", **endpoint}, persistent=True,
              sandbox=kind)
    try:
        assert rlm.completion("Summarise A.").response == "first"
        assert rlm.completion("Summarise B.").response == (
            "Summarise A.|Summarise B.|Summarise B.")
    finally:
        rlm.close()


def test_a_long_prompt_is_read_in_the_repl_not_shown_to_the_root(serve: Any) -> None:
    prompt = "record\n" * 100_000 + "How many records?"
    endpoint, models = serve('```repl\nFINAL(str(len(context)))\n```')
    rlm = RLM(backend_kwargs={"model_name": "gpt-5-mini", **endpoint}, sandbox="none")
    assert rlm.completion(prompt).response == str(len(prompt))
    first = next(r for r in models.requests if r.is_root).messages
    shown = sum(len(str(m.get("content", ""))) for m in first if m.get("role") != "system")
    # where the question stands depends on the turn format (the official one, when installed)
    assert shown < 5_000 and any("How many records?" in str(m.get("content")) for m in first)


def test_a_root_prompt_too_long_to_show_is_an_error_saying_what_to_do(serve: Any) -> None:
    endpoint, models = serve('```repl\nFINAL("1")\n```')
    rlm = RLM(backend_kwargs={"model_name": "gpt-5-mini", **endpoint}, sandbox="none")
    completion = rlm.completion("a document", root_prompt="why? " * 10_000)
    assert completion.error is not None and "Limits.question_chars" in completion.error
    assert not [r for r in models.requests if r.is_root]


# ------------------------------------------------- the official API's points (issue 30)


def official_reply(content: str) -> str:
    """A root reply ending the run through the answer dict, as the official tests script it."""
    return f"```repl\nanswer['content'] = {content!r}\nanswer['ready'] = True\n```"


def mock_client(replies: list[str], *, input_tokens: int = 100, output_tokens: int = 50) -> Mock:
    """An official-style client as the official tests build one: a Mock with completion()."""
    client = Mock()
    client.completion.side_effect = list(replies)
    client.get_last_usage.return_value = SimpleNamespace(
        total_calls=1, total_input_tokens=input_tokens, total_output_tokens=output_tokens,
        total_cost=None)
    return client


def test_a_mock_client_is_injected_by_patching_get_client_as_official_tests_do() -> None:
    """Users' tests patch ``get_client`` on the module they import RLM from; only the import
    line changes. The client is asked when the first completion needs it (so a test may
    patch around completion() alone) and its usage is what it reports."""
    rlm = RLM(backend="openai", backend_kwargs={"model_name": "test-model"}, sandbox="none")
    with patch.object(rlms, "get_client") as get_client:
        client = mock_client(["```repl\nx = 6 * 7\nprint(x)\n```", official_reply("42")])
        get_client.return_value = client
        completion = rlm.completion("What is the answer?")
    assert completion.response == "42" and completion.error is None
    get_client.assert_called_once_with("openai", {"model_name": "test-model"})
    messages = client.completion.call_args_list[0].args[0]
    assert messages[0]["role"] == "system" and "What is the answer?" in str(messages)
    usage = completion.usage_summary.model_usage_summaries["test-model"]
    assert (usage.total_calls, usage.total_input_tokens, usage.total_output_tokens) == (2, 200,
                                                                                       100)
    assert completion.root_model == "test-model"


def test_a_client_that_fails_or_runs_out_ends_the_run_with_an_error() -> None:
    class Broken:
        model_name = "broken"

        def completion(self, prompt: object) -> str:
            raise ConnectionError("down")

    for client, message in ((Broken(), "ConnectionError: down"),
                            (mock_client([]), "no more scripted replies"),
                            (mock_client([{"not": "text"}]), "returned a dict, not a str")):  # type: ignore[list-item]
        with patch.object(rlms, "get_client", return_value=client):
            completion = RLM(backend_kwargs={"model_name": "m"}, sandbox="none").completion("x")
        assert completion.error is not None and message in completion.error, completion.error
        assert completion.response == ""


async def test_an_async_client_is_awaited_and_its_reported_cost_kept() -> None:
    class AsyncClient:
        model_name = "async-model"

        def __init__(self) -> None:
            self.replies = [official_reply("done")]

        def completion(self, prompt: object) -> str:
            raise AssertionError("the async path should be used")

        async def acompletion(self, prompt: object) -> str:
            return self.replies.pop(0)

        def get_last_usage(self) -> Any:
            # an official UsageSummary (the official MockLM's shape): summed
            return SimpleNamespace(model_usage_summaries={"a": SimpleNamespace(
                total_input_tokens=7, total_output_tokens=3, total_cost=0.25)})

    with patch.object(rlms, "get_client", return_value=AsyncClient()):
        rlm = RLM(backend_kwargs={"model_name": "async-model"}, sandbox="none")
        completion = await rlm.acompletion("x")
        await rlm.aclose()
    usage = completion.usage_summary.model_usage_summaries["async-model"]
    assert (usage.total_input_tokens, usage.total_output_tokens) == (7, 3)


def test_metadata_has_the_official_run_metadata_and_iterations() -> None:
    with patch.object(rlms, "get_client") as get_client:
        get_client.return_value = mock_client(["Thinking.\n```repl\nx = 1\nprint(x)\n```",
                                               official_reply("42")])
        rlm = RLM(backend="openai", backend_kwargs={"model_name": "test-model",
                                                    "api_key": "sk-secret"},
                  max_depth=1, logger=RLMLogger(), sandbox="none")
        completion = rlm.completion("What is the answer?")
    metadata = completion.metadata
    assert metadata is not None
    run = metadata["run_metadata"]
    assert run["root_model"] == "test-model" and run["backend"] == "openai"
    assert run["max_iterations"] == 30 and run["environment_type"] == "local"
    assert run["backend_kwargs"] == {"model_name": "test-model", "api_key": "<redacted>"}
    first, second = metadata["iterations"]
    assert (first["iteration"], second["iteration"]) == (1, 2)
    assert first["response"].startswith("Thinking.")
    assert first["code_blocks"][0]["code"] == "x = 1\nprint(x)"
    assert first["code_blocks"][0]["result"]["stdout"].startswith("1")
    assert first["final_answer"] is None and second["final_answer"] == "42"
    assert "events" in metadata and metadata["stop_reason"] == "final"
    json.dumps(metadata)  # it is plain data, as the official package's is


def test_environments_the_official_package_refuses_raise_value_error() -> None:
    with pytest.raises(ValueError, match="unknown environment 'kubernetes'"):
        RLM(environment="kubernetes", backend_kwargs={"model_name": "m"})
    with pytest.raises(ValueError, match="persistent=True is not supported for environment"):
        RLM(environment="modal", persistent=True, backend_kwargs={"model_name": "m"})
    assert issubclass(rlms.RLMCompatValueError, ConfigurationError)
    # construction needs no key or client, as the official package's
    with pytest.warns(RLMCompatWarning, match="environment='docker'"):
        rlm = RLM(backend_kwargs={"model_name": "test"}, environment="docker", persistent=True)
    assert rlm.persistent is True and rlm.environment_type == "docker"


def test_custom_tools_in_the_official_format(serve: Any) -> None:
    endpoint, models = serve('```repl\nFINAL(str(lookup("k")))\n```')
    rlm = RLM(backend_kwargs={"model_name": "gpt-5-mini", **endpoint}, sandbox="none",
              custom_tools={"lookup": {"tool": lambda key: {"k": 7}[key],
                                       "description": "Find a key in the store"}})
    assert rlm.completion("ctx", root_prompt="q").response == "7"
    assert "Find a key in the store" in str(models.requests[0].messages[0])
    with pytest.raises(ConfigurationError, match=r"custom_sub_tools\['limit'\] is a int, "
                       "not a function"):
        RLM(backend_kwargs={"model_name": "gpt-5-mini", **endpoint},
            custom_sub_tools={"limit": {"tool": 10, "description": "the page limit"}})
    with pytest.raises(ConfigurationError, match=r"custom_tools holds a value the REPL cannot "
                       r"take: variables\['ids'\] is a set"):
        RLM(backend_kwargs={"model_name": "gpt-5-mini", **endpoint}, custom_tools={"ids": {1}})
    with pytest.raises(ConfigurationError, match=r"\['description'\] must be a str"):
        RLM(backend_kwargs={"model_name": "gpt-5-mini", **endpoint},
            custom_tools={"f": {"tool": len, "description": 3}})


def test_a_persistent_answer_from_one_completion_does_not_end_the_next() -> None:
    """The official answer dict ends a run when the model sets ``answer["ready"] = True``: the
    next completion of a persistent RLM starts with a fresh answer, so its first cell (which
    does not set it) does not end the run with the earlier answer."""
    with patch.object(rlms, "get_client") as get_client:
        client = mock_client(["```repl\nnote = 'cats'\n```", official_reply("first")])
        get_client.return_value = client
        with RLM(backend_kwargs={"model_name": "test"}, persistent=True, sandbox="none") as rlm:
            assert rlm.completion("First document").response == "first"
            client.completion.side_effect = ["```repl\nprint(note)\n```",
                                             official_reply("second")]
            assert rlm.completion("Second document").response == "second"
            assert client.completion.call_count == 4


@pytest.mark.parametrize("kind", ["none", "auto"])
def test_custom_tools_values_become_repl_variables_as_in_the_official_package(
        serve: Any, kind: str) -> None:
    """The official package puts a non-callable ``custom_tools`` value in the REPL as a
    variable of its name (plain or in the ``{"tool": ..., "description": ...}`` form); here it
    is bound through the sandbox's define before the first cell, on every sandbox."""
    skip_unless_sandbox(kind)
    endpoint, models = serve("```repl\nFINAL(str(page_limit * 2) + ' ' + base['url'] + ' ' "
                             "+ str(len(ids)))\n```")
    rlm = RLM(backend_kwargs={"model_name": "gpt-5-mini", **endpoint}, sandbox=kind,
              custom_tools={"page_limit": {"tool": 10, "description": "the page limit"},
                            "base": {"url": "https://example.test"}, "ids": [1, 2, 3],
                            "double": lambda x: 2 * x})
    completion = rlm.completion("ctx", root_prompt="q")
    assert completion.response == "20 https://example.test 3", completion.error
    system = str(models.requests[0].messages[0])
    assert "`page_limit` (int)" in system and "`base` (dict)" in system
