"""A finished run leaves nothing in a reference cycle: its objects, its context among them, are
freed when it returns, by reference counting, not at some later pass of the garbage collector.

Before, every run's graph was one cycle garbage (the run and its bridge, the bridge and its
handler table, the reply runner's closures over the run, the worker and its watchdog). A server
with 32 runs in flight promoted those graphs to the oldest generation, and each full collection
(tens of milliseconds) stalled every request at once; a run over a big context kept it in memory
until then. Each case asks through every host call (sub-calls, a batch, a child run) and checks,
with the collector off, that the context's reference count is back where it was and that a
collection finds no object of fastrlm's.

Each case runs in an interpreter of its own: in the test process, what other tests left to end
on their own threads (an abandoned runner's loop, say) may turn to garbage in the middle of the
check and be taken for this run's.

Not for ``sandbox="none"``: there the REPL's namespace is model code's globals in this process;
a function defined in it holds it in a cycle, and a thread of model code may still use it after
the run (it gets errors, tests/engine/test_after_the_run.py), so it is left to the collector."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from fastrlm.testing import skip_unless_sandbox

SCRIPT = textwrap.dedent('''
    import asyncio, gc, json, sys
    from fastrlm import RLM, Budget
    from fastrlm.testing import ScriptedLM

    kind, form = sys.argv[1], sys.argv[2]
    CODE = (
        "a = llm_query('one')\\n"
        "b = llm_query_batched(['x', 'y'])\\n"
        "c = rlm_query('child question', 'child context')\\n"
        "def joined():\\n"
        "    return a + c + str(len(b))\\n"
        "FINAL(joined())"
    )

    def root(messages):
        asked = str(messages[-1]["content"])  # a child run's question, or the root's turn
        code = "FINAL('child')" if "child question" in asked else CODE
        return "```repl\\n" + code + "\\n```"

    rlm = RLM(ScriptedLM(root, model="scripted/root"),
              ScriptedLM(lambda m: "one", model="scripted/sub"),
              sandbox=kind, budget=Budget(max_depth=2), trace=True)

    async def ask_alone(context):
        return [(await rlm.acompletion("q", context=context)).answer for _ in range(3)]

    async def ask_in_a_session(context):
        async with rlm.session() as session:
            answers = [(await session.aask("q", context=context)).answer for _ in range(2)]
        return answers  # (the session, closed, still names its last context; dropped here)

    async def main():
        workers = await rlm.awarm_workers(slots=2) if form == "warm" else None
        ask = ask_in_a_session if form == "session" else ask_alone
        await ask("a first round: what it imports is not its garbage")
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)  # found unreachable: kept in gc.garbage, to be named
        context = "".join(["the context "] * 1000)  # a str of its own
        held = sys.getrefcount(context)
        answers = await ask(context)
        extra = sys.getrefcount(context) - held
        gc.collect()
        garbage = sorted({f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.garbage
                          if type(o).__module__.startswith("fastrlm")})
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
        if workers is not None:
            workers.close()
        print(json.dumps({"answers": answers, "extra_references": extra, "garbage": garbage}))

    asyncio.run(main())
''')


def _check(kind: str, form: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", SCRIPT, kind, form], capture_output=True,
                          text=True, timeout=120)  # a safety net: each case takes a second
    assert done.returncode == 0, done.stderr[-3000:]
    found: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return found


@pytest.mark.parametrize("form", ["cold", "warm"])
@pytest.mark.parametrize("kind", ["bwrap", "landlock"])
def test_a_finished_run_leaves_nothing_for_the_garbage_collector(kind: str, form: str) -> None:
    skip_unless_sandbox(kind)
    found = _check(kind, form)
    assert found["answers"] == ["onechild2"] * 3
    assert found["extra_references"] == 0
    assert found["garbage"] == []


@pytest.mark.parametrize("kind", ["bwrap", "landlock"])
def test_a_closed_session_leaves_nothing_for_the_garbage_collector(kind: str) -> None:
    skip_unless_sandbox(kind)
    found = _check(kind, "session")
    assert found["answers"] == ["onechild2"] * 2
    assert found["extra_references"] == 0
    assert found["garbage"] == []
