"""Sandbox.define: a session's later contexts bound in the REPL, restored when rebound, and
bound again in a fresh worker after a restart."""

from __future__ import annotations

import pytest

from fastrlm import ContextError

from .helpers import MakeSandbox


@pytest.mark.sandbox
@pytest.mark.parametrize("kind", ["none", "auto"])
async def test_defined_names_persist_are_restored_and_survive_a_restart(
    make_sandbox: MakeSandbox, kind: str
) -> None:
    sb = await make_sandbox(kind, context="first", exec_timeout_s=0.3, hard_grace_s=0.3)
    await sb.define("context_0", alias="context")
    await sb.define("context_1", ["second", "doc"])
    await sb.define("context", alias="context_1")
    result = await sb.execute("print(context_0, context_1, context)")
    assert result.stdout.strip() == "first ['second', 'doc'] ['second', 'doc']"
    result = await sb.execute("context_1 = 5\ncontext = 6")
    assert {"context_1", "context"} <= set(result.restored)
    result = await sb.execute("print(context_1 == context)")
    assert result.stdout.strip() == "True"
    if kind == "auto":  # a hard kill: the fresh worker gets every binding back, in order
        result = await sb.execute(
            "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True: pass")
        assert result.restarted
        result = await sb.execute("print(context_0, context_1, context)")
        assert result.stdout.strip() == "first ['second', 'doc'] ['second', 'doc']", result


@pytest.mark.sandbox
async def test_a_value_a_frame_cannot_carry_is_a_context_error(make_sandbox: MakeSandbox) -> None:
    sb = await make_sandbox("auto")
    with pytest.raises(ContextError, match="cannot be sent"):
        await sb.define("context_1", {1, 2})
    result = await sb.execute("print('context_1' in dir())")
    assert result.stdout.strip() == "False"
