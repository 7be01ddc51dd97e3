"""The root loop: code blocks, persistence, iterations, prompts, drop-in use, streaming."""

from __future__ import annotations

import asyncio

import pytest

from fastrlm import RLM, Budget, ContextError, Limits, StopReason
from fastrlm.events import Event, RunFinished
from fastrlm.testing import ScriptedLM, skip_unless_sandbox

from .helpers import make_rlm, repl


async def test_python_and_py_blocks_are_run_not_ignored() -> None:
    reply = "```python\nx = 20\n```\n```py\nFINAL(x + 1)\n```"
    rlm, _ = make_rlm([reply])
    assert (await rlm.acompletion("q", context="c")).answer == "21"


async def test_backticks_in_a_string_do_not_cut_the_block() -> None:
    code = 's = """a\n```\nb"""\nFINAL(str(len(s.splitlines())))'
    rlm, _ = make_rlm([f"```repl\n{code}\n```"])
    assert (await rlm.acompletion("q", context="c")).answer == "3"


async def test_a_reply_with_prose_but_no_code_is_told_so() -> None:
    rlm, root = make_rlm(["I think the answer is 4.", repl("FINAL(4)")])
    assert (await rlm.acompletion("q", context="c")).answer == "4"
    assert "no ```repl block" in root.calls[1][-1]["content"]


async def test_late_binding_across_cells() -> None:
    rlm, _ = make_rlm([
        repl("def f():\n    return helper(base)\nbase = 1"),
        repl("def helper(v):\n    return v * 10\nbase = 5"),
        repl("FINAL(f())"),
    ])
    assert (await rlm.acompletion("q", context="c")).answer == "50"


async def test_root_sees_metadata_never_the_context() -> None:
    secret = "NEEDLE-" + "z" * 5000 + "-END"
    rlm, root = make_rlm([repl("FINAL(len(context))")])
    await rlm.acompletion("q", context=secret)
    first = "\n".join(m["content"] for m in root.calls[0])
    assert "-END" not in first
    assert f"{len(secret):,} total characters" in first


async def test_list_context_metadata_lists_chunk_lengths() -> None:
    rlm, root = make_rlm([repl("FINAL(len(context))")])
    out = await rlm.acompletion("q", context=["aa", "bbbb", "c"])
    assert out.answer == "3"
    first = root.calls[0][1]["content"]
    assert "in 3 chunks" in first and "[2, 4, 1]" in first


async def test_output_is_truncated_head_and_tail_with_true_length() -> None:
    rlm, root = make_rlm([repl("print('A' * 30000 + 'B' * 30000)"), repl("FINAL(1)")])
    await rlm.acompletion("q", context="c")
    feedback = root.calls[1][-1]["content"]
    assert "60,001 characters in all" in feedback
    assert "AAAA" in feedback and "BBBB" in feedback
    assert len(feedback) < 22_000


async def test_trailing_expression_is_shown_like_a_notebook() -> None:
    rlm, root = make_rlm([repl("len(context)"), repl("FINAL(1)")])
    await rlm.acompletion("q", context="x" * 123)
    assert "123" in root.calls[1][-1]["content"]


async def test_max_iterations_ends_with_a_user_message_and_a_last_answer_turn() -> None:
    from fastrlm import Budget

    rlm, root = make_rlm([repl("x = 1"), repl("x = 2"), repl("FINAL('best effort')")],
                         budget=Budget(max_iterations=2))
    out = await rlm.acompletion("q", context="c")
    last_call = root.calls[-1]
    assert last_call[-1]["role"] == "user"
    assert "used all 2 turns" in last_call[-1]["content"]
    assert out.answer == "best effort"
    assert out.stop_reason is StopReason.MAX_ITERATIONS
    roles = [m["role"] for m in last_call]
    assert all(a != b for a, b in zip(roles[1:], roles[2:], strict=False))


async def test_max_iterations_without_an_answer_gives_the_prose_as_partial() -> None:
    from fastrlm import Budget

    rlm, _ = make_rlm([repl("x = 1"), "My best guess is 12."], budget=Budget(max_iterations=1))
    out = await rlm.acompletion("q", context="c")
    assert out.stop_reason is StopReason.MAX_ITERATIONS
    assert out.partial and out.answer == "My best guess is 12."


async def test_drop_in_completion_uses_the_prompt_as_context() -> None:
    prompt = "lots of text " * 100 + "QUESTION: what is 2+2?"
    rlm, root = make_rlm([repl("FINAL(context[-4:])")])
    out = await rlm.acompletion(prompt)
    assert out.answer == "2+2?"
    assert "QUESTION: what is 2+2?" in root.calls[0][1]["content"]  # the tail is shown


def test_completion_is_a_blocking_facade() -> None:
    rlm, _ = make_rlm([repl("FINAL('sync')")])
    assert rlm.completion("q", context="c").answer == "sync"


async def test_completion_inside_a_running_loop_says_to_await() -> None:
    rlm, _ = make_rlm([repl("FINAL(1)")])
    with pytest.raises(RuntimeError, match="acompletion"):
        rlm.completion("q", context="c")


@pytest.mark.parametrize("bad", ["", [], {}, None, b""])
async def test_empty_or_unusable_context_is_a_clear_error(bad: object) -> None:
    rlm, root = make_rlm([repl("FINAL(1)")])
    with pytest.raises(ContextError):
        await rlm.acompletion("q", context=bad)
    assert root.calls == []


async def test_unserialisable_context_is_a_context_error_not_a_crash() -> None:
    rlm, _ = make_rlm([repl("FINAL(1)")])
    with pytest.raises(ContextError, match="JSON") as info:
        await rlm.acompletion("q", context={"a": object()})
    assert info.value.result is not None
    assert info.value.result.stop_reason is StopReason.ERROR


async def test_stream_yields_events_and_ends_with_the_root_run_finished() -> None:
    rlm, _ = make_rlm([repl("print(llm_query('hi'))"), repl("FINAL('s')")])
    seen: list[Event] = [e async for e in rlm.stream("q", context="c")]
    types = [e.type for e in seen]
    assert types[0] == "run.started"
    assert "subcall.finished" in types and "code.executed" in types
    assert isinstance(seen[-1], RunFinished) and seen[-1].answer == "s"


async def test_provider_failure_of_the_root_ends_with_error_stop_reason() -> None:
    from fastrlm import ProviderConnectionError

    rlm, _ = make_rlm([repl("x = 1"), ProviderConnectionError("down")])  # type: ignore[list-item]
    with pytest.raises(ProviderConnectionError, match="down") as info:
        await rlm.acompletion("q", context="c")
    out = info.value.result
    assert out is not None and out.stop_reason is StopReason.ERROR
    assert out.iterations == 1 and "down" in (out.error or "")


async def test_failed_sub_call_is_an_error_string_in_its_slot() -> None:
    from fastrlm import RateLimitError

    def sub(messages: list[dict[str, str]]) -> str | BaseException:
        return RateLimitError("slow down") if "bad" in messages[-1]["content"] else "fine"

    rlm, _ = make_rlm([repl("r = llm_query_batched(['good', 'bad', 'good'])\nFINAL(repr(r))")],
                      sub=ScriptedLM(sub, model="scripted/sub"))
    out = await rlm.acompletion("q", context="c")
    answers = eval(out.answer)  # noqa: S307 - our own repr
    assert answers[0] == answers[2] == "fine"
    assert answers[1].startswith("[error: subcall_failed: RateLimitError")


async def test_soft_timeout_stops_an_infinite_loop_and_keeps_state() -> None:
    from fastrlm import Budget

    rlm, root = make_rlm([repl("kept = 41\nwhile True:\n    pass"), repl("FINAL(kept + 1)")],
                         budget=Budget(exec_timeout_s=0.5))
    out = await rlm.acompletion("q", context="c")
    assert out.answer == "42"
    assert "timed out" in root.calls[1][-1]["content"]


async def test_cancelling_the_task_reports_cancelled_and_stops() -> None:
    events: list[Event] = []
    gate = asyncio.Event()

    async def slow_sub(messages: object) -> str:
        gate.set()
        await asyncio.sleep(60)
        return "never"

    rlm, _ = make_rlm([repl("llm_query('x')")], sub=ScriptedLM(slow_sub, model="scripted/sub"),
                      events=events)
    task = asyncio.create_task(rlm.acompletion("q", context="c"))
    await gate.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    finished = [e for e in events if isinstance(e, RunFinished)]
    assert finished and finished[-1].stop_reason == "cancelled"


async def test_rlm_without_a_model_explains_the_three_ways_to_configure_one() -> None:
    from fastrlm import ConfigurationError

    with pytest.raises(ConfigurationError) as info:
        RLM()
    text = str(info.value)
    assert "OPENAI_API_KEY" in text and "ANTHROPIC_API_KEY" in text and "ollama" in text


async def test_error_stops_say_what_kind_of_error() -> None:
    from fastrlm import ProviderConnectionError

    rlm, _ = make_rlm([ProviderConnectionError("down")])  # type: ignore[list-item]
    with pytest.raises(ProviderConnectionError) as failed:
        await rlm.acompletion("q", context="c")
    provider = failed.value.result
    assert provider is not None
    assert (provider.stop_reason, provider.error_kind) == (StopReason.ERROR, "provider")
    rlm, _ = make_rlm([repl("FINAL(1)")])
    with pytest.raises(ContextError) as unusable:
        await rlm.acompletion("q", context={"a": object()})
    assert unusable.value.result is not None
    assert unusable.value.result.error_kind == "context"
    final = await make_rlm([repl("FINAL(1)")])[0].acompletion("q", context="c")
    assert final.error_kind is None


def test_an_openai_key_alone_picks_gpt5_root_and_gpt5_mini_subcalls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    rlm = RLM()
    assert (rlm.root_lm.model, rlm.sub_lm.model) == ("openai/gpt-5", "openai/gpt-5-mini")
    monkeypatch.setenv("FASTRLM_SUB_MODEL", "openai/gpt-4.1-nano")
    assert RLM().sub_lm.model == "openai/gpt-4.1-nano"


async def test_first_root_call_does_not_wait_for_hashing_and_run_started_comes_first() -> None:
    import hashlib

    order: list[str] = []
    context = "x" * 3_000_000  # hashed in a thread

    def root_fn(messages: list[dict[str, str]]) -> str:
        order.append("root call")
        return repl("FINAL(len(context))")

    events: list[Event] = []
    rlm, _ = make_rlm(ScriptedLM(root_fn, model="scripted/root"),  # type: ignore[arg-type]
                      events=events)
    out = await rlm.acompletion("q", context=context)
    assert out.answer == "3000000"
    types = [e.type for e in events]
    assert types[0] == "run.started" and types[-1] == "run.finished"
    assert types.index("sandbox.started") > 0
    started = events[0]
    digest = hashlib.sha256(context.encode()).hexdigest()
    assert started.context["sha256"] == digest  # type: ignore[attr-defined]
    assert order == ["root call"]


#: Every layer the REPL can run on: what a long message becomes must arrive whole on each.
LAYERS = ["none", "bwrap", "landlock"]



@pytest.mark.parametrize("kind", LAYERS)
async def test_a_drop_in_message_too_long_to_show_is_read_in_the_repl(kind: str) -> None:
    skip_unless_sandbox(kind)
    message = "log line\n" * 100_000 + "How many lines?"
    rlm, root = make_rlm([repl("FINAL(str(len(context)) + context[-15:])")], sandbox=kind)
    out = await rlm.acompletion(message)
    assert out.answer == f"{len(message)}How many lines?"
    first = root.calls[0]
    shown = sum(len(m["content"]) for m in first if m["role"] != "system")
    assert shown < 5_000
    assert "How many lines?" in first[-1]["content"] and "`context`" in first[-1]["content"]


async def test_a_short_drop_in_message_is_shown_as_the_question() -> None:
    rlm, root = make_rlm([repl("FINAL(context)")])
    assert (await rlm.acompletion("What is 2+2?")).answer == "What is 2+2?"
    assert "The question:\nWhat is 2+2?" in root.calls[0][-1]["content"]


async def test_a_long_question_beside_a_context_that_does_not_hold_it_says_what_to_do() -> None:
    rlm, root = make_rlm([repl("FINAL(1)")])
    with pytest.raises(ContextError, match=r"40,000 characters.*Limits\.question_chars"):
        await rlm.acompletion("x" * 40_000, context="a short document")
    assert root.calls == []
    # raising the limit is the documented way to show it whole
    rlm, root = make_rlm([repl("FINAL(1)")], limits=Limits(question_chars=50_000))
    assert (await rlm.acompletion("x" * 40_000, context="doc")).answer == "1"
    assert "x" * 40_000 in root.calls[0][-1]["content"]


async def test_a_long_question_inside_a_list_context_is_pointed_at_by_index() -> None:
    question = "q" * 10_000
    rlm, root = make_rlm([repl("FINAL(str(len(context[1])))")])
    assert (await rlm.acompletion(question, context=["intro", question])).answer == "10000"
    assert "`context[1]`" in root.calls[0][-1]["content"]
    assert len(root.calls[0][-1]["content"]) < 5_000


async def test_a_child_rlm_given_a_long_prompt_reads_it_in_its_repl() -> None:
    def script(messages: list[dict[str, str]]) -> str:
        if "30,020 characters" in messages[1]["content"]:  # the child, told the prompt's size
            return repl("FINAL(str(len(context)))")
        return repl("FINAL(rlm_query('p' * 30_000 + ' what is the length?'))")

    rlm, root = make_rlm(script, budget=Budget(max_depth=2))
    assert (await rlm.acompletion("go", context="c")).answer == "30020"
    child = next(c for c in root.calls if "30,020 characters" in c[1]["content"])
    assert len(child[1]["content"]) < 5_000
