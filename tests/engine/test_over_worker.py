"""The engine end to end over the default isolated worker (sandbox="auto")."""

from __future__ import annotations

import os

import pytest

from fastrlm import RLM, Budget, StopReason
from fastrlm.events import Event
from fastrlm.testing import ScriptedLM

from .helpers import echo_sub, repl

pytestmark = pytest.mark.sandbox


def worker_rlm(replies: list[str], **kw: object) -> tuple[RLM, ScriptedLM]:
    root = ScriptedLM(replies, model="scripted/root")
    return RLM(root, kw.pop("sub", None) or echo_sub(), **kw), root  # type: ignore[arg-type]


async def test_default_sandbox_is_isolated_and_named_on_the_result() -> None:
    events: list[Event] = []
    rlm, _ = worker_rlm([repl("FINAL(len(context))")], on_event=events.append)
    out = await rlm.acompletion("q", context="abc")
    assert out.answer == "3"
    assert out.sandbox != "none" and out.sandbox
    started = [e for e in events if e.type == "sandbox.started"]
    assert started and started[0].unsafe is False  # type: ignore[attr-defined]


async def test_worker_has_no_api_key_even_when_the_host_does(monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-host-secret")
    assert os.environ["OPENAI_API_KEY"] == "sk-host-secret"
    rlm, _ = worker_rlm([repl("import os\nFINAL(repr(os.environ.get('OPENAI_API_KEY')))")])
    assert (await rlm.acompletion("q", context="c")).answer == "None"


async def test_fan_out_answers_arrive_in_order_through_the_worker() -> None:
    rlm, _ = worker_rlm([repl("r = llm_query_batched([f'n{i}' for i in range(300)])\n"
                              "FINAL(str(all(a == f'ok:n{i}' for i, a in enumerate(r))))")])
    assert (await rlm.acompletion("q", context="c")).answer == "True"


async def test_answer_channels_and_restoration_through_the_worker() -> None:
    rlm, root = worker_rlm([
        repl("context = None\nllm_query = 3\nbig = list(range(10))"),
        repl("answer.update({'content': str(len(context)) + str(callable(llm_query)), "
             "'ready': True})"),
    ])
    out = await rlm.acompletion("q", context="12345")
    assert out.answer == "5True"
    assert "`context`, `llm_query`" in root.calls[1][-1]["content"]


async def test_final_var_of_a_5mb_list_through_the_worker() -> None:
    rlm, _ = worker_rlm([repl("big = ['x' * 99 for _ in range(50_000)]\nFINAL_VAR('big')")])
    out = await rlm.acompletion("q", context="c")
    assert len(out.answer) > 5_000_000


async def test_infinite_loop_hits_the_soft_timeout_and_state_survives() -> None:
    rlm, _ = worker_rlm([repl("kept = 41\nwhile True:\n    pass"), repl("FINAL(kept + 1)")],
                        budget=Budget(exec_timeout_s=0.5))
    assert (await rlm.acompletion("q", context="c")).answer == "42"


async def test_child_rlms_get_their_own_worker_and_context() -> None:
    def root_fn(messages: list[dict[str, str]]) -> str:
        if "child question" in messages[1]["content"]:
            return repl("FINAL(context.upper())")
        return repl("r = rlm_query_batched(['child question'] * 2, contexts=['ab', 'cd'])\n"
                    "FINAL('+'.join(r))")

    rlm = RLM(ScriptedLM(root_fn, model="scripted/root"), echo_sub(),
              budget=Budget(max_depth=2))
    out = await rlm.acompletion("q", context="parent context")
    assert out.answer == "AB+CD"
    assert out.stop_reason is StopReason.FINAL


async def test_final_of_a_dict_is_json_and_final_of_a_variable_name_its_value_in_the_worker(
) -> None:
    import json

    rlm, root = worker_rlm([repl("FINAL('I will now look.')"),
                            repl("found = {'k': [1, 'é']}") + "FINAL(found)"])
    out = await rlm.acompletion("q", context="c")
    assert out.sandbox != "none"
    assert json.loads(out.answer) == {"k": [1, "é"]}
    assert "only a plan" in root.calls[1][-1]["content"]
