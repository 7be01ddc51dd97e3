"""Soft timeouts (an exception in the cell, state kept) count only the worker's own time; the
hard deadline kills the process group and restarts the worker with the context."""

from __future__ import annotations

import asyncio

import pytest

from .helpers import CONTEXT, FakeBridge, MakeSandbox, assert_alive

pytestmark = pytest.mark.sandbox


class SlowBridge(FakeBridge):
    """A sub-model that takes ``delay_s`` to answer (a slow LM, not a wait on the test)."""

    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s

    async def llm_query_batched(self, prompts: list[str], model: str | None) -> list[str]:
        await asyncio.sleep(self.delay_s)
        return await super().llm_query_batched(prompts, model)


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("while True: pass", id="busy-loop"),
        pytest.param("import time\ntime.sleep(60)", id="sleep"),
        pytest.param("import re\nre.match(r'(a+)+$', 'a' * 64 + 'b')", id="catastrophic-regex"),
        pytest.param(
            "try:\n    while True: pass\nexcept Exception:\n    pass", id="except-exception"
        ),
        pytest.param("def f():\n    while True: pass\nf()", id="in-a-function"),
    ],
)
async def test_soft_timeout_interrupts_the_cell_and_keeps_state(
    make_sandbox: MakeSandbox, code: str
) -> None:
    sb = await make_sandbox("auto", exec_timeout_s=0.3, hard_grace_s=10.0)
    await sb.execute("kept = [1, 2, 3]")
    result = await sb.execute(code)
    assert result.timed_out and not result.restarted
    assert result.error is not None and "TimeoutError" in result.error
    assert result.duration_s < 5.0
    assert (await sb.execute("kept")).stdout.strip() == "[1, 2, 3]"
    await assert_alive(sb)


async def test_time_spent_in_host_calls_does_not_count(make_sandbox: MakeSandbox) -> None:
    sb = await make_sandbox("auto", fake=SlowBridge(0.6), exec_timeout_s=0.4, hard_grace_s=0.2)
    result = await sb.execute("a = llm_query('one')\nb = llm_query('two')\na, b")
    assert not result.timed_out and not result.restarted, result.error
    assert result.stdout.strip() == "('answer:one', 'answer:two')"


async def test_ignored_sigalrm_loop_is_hard_killed_and_the_worker_respawned(
    make_sandbox: MakeSandbox,
) -> None:
    sb = await make_sandbox("auto", exec_timeout_s=0.3, hard_grace_s=0.3)
    await sb.execute("lost = 'yes'")
    result = await sb.execute(
        "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True: pass"
    )
    assert result.restarted and result.timed_out
    assert "restart_reason" in result.extra
    assert "NameError" in str((await sb.execute("lost")).error)
    await assert_alive(sb, CONTEXT)
    result = await sb.execute("while True: pass")  # the fresh worker has its soft timeout
    assert result.timed_out and not result.restarted


async def test_show_vars_with_a_looping_len_is_stopped(make_sandbox: MakeSandbox) -> None:
    sb = await make_sandbox("auto", exec_timeout_s=0.3, hard_grace_s=5.0)
    await sb.execute("class Evil:\n    def __len__(self):\n        while True: pass\nevil = Evil()")
    text = await sb.show_vars()
    assert "evil" in text or "SHOW_VARS" in text
    await assert_alive(sb)


async def test_infinite_limits_mean_no_timeout(make_sandbox: MakeSandbox) -> None:
    sb = await make_sandbox("auto", exec_timeout_s=float("inf"), hard_grace_s=float("inf"))
    result = await sb.execute("sum(range(10**6))")
    assert result.stdout.strip() == str(sum(range(10**6))) and not result.timed_out
