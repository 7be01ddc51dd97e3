"""The done-test of issue 27: a run SIGKILLed in the middle of a fan-out resumes and finishes,
and the fake server's request count proves that what was recorded cost nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from fastrlm import RLM, StopReason
from fastrlm.testing import FakeOpenAIServer, FakeRequest
from fastrlm.trace import read_record, record_path

CONTEXT = "the quick brown fox jumps over the lazy dog"
FIRST = "```repl\nfirst = llm_query_batched(['a', 'b', 'c'])\nprint(first)\n```"
SECOND = ("```repl\nsecond = llm_query_batched(['p0', 'p1', 'p2', 'p3', 'p4'])\n"
          "print(second)\n```")
LAST = "```repl\nFINAL(' '.join(first + second))\n```"

CHILD = """
import sys
from fastrlm import RLM, Limits
rlm = RLM("openai/fake-model", base_url=sys.argv[1], api_key="sk-fake", sandbox="none",
          trace=sys.argv[2], limits=Limits(max_concurrency=1))
rlm.completion("join the answers", context=sys.argv[3])
"""


def test_a_run_killed_mid_fan_out_resumes_and_its_recorded_turns_cost_nothing(
        tmp_path: Path) -> None:
    arrived, release = threading.Event(), threading.Event()
    held = threading.Lock()
    blocked: list[str] = []

    def script(request: FakeRequest) -> str:
        if request.is_root:
            return {1: FIRST, 2: SECOND}.get(request.turn, LAST)
        prompt = request.prompt
        with held:
            first_time = prompt == "p3" and not blocked
            if first_time:
                blocked.append(prompt)
        if first_time:  # the fan-out's fourth sub-call: the child is killed while it waits
            arrived.set()
            release.wait(60)
        return "ans-" + prompt

    with FakeOpenAIServer(handler=script) as server:
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, server.base_url, str(tmp_path), CONTEXT],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, "FASTRLM_HOME": str(tmp_path)},
        )
        try:
            assert arrived.wait(60), "the fan-out never reached its fourth sub-call"
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=60)
        finally:
            release.set()
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == -signal.SIGKILL
        before = len(server.completion_requests)
        # two root turns, the first fan-out's 3 sub-calls, p0..p2 answered, p3 in flight
        assert before == 9
        [trace] = (tmp_path / "traces").glob("*.jsonl")
        kept = read_record(record_path(trace.parent, trace.stem))
        assert sum(e["k"] == "turn" for e in kept) == 2
        assert sum(e["k"] == "call" for e in kept) == 6

        rlm = RLM("openai/fake-model", base_url=server.base_url, api_key="sk-fake",
                  sandbox="none", trace=tmp_path)
        result = rlm.resume(trace.stem, context=CONTEXT)
        after = server.completion_requests[before:]

    assert result.stop_reason is StopReason.FINAL
    assert result.answer == "ans-a ans-b ans-c ans-p0 ans-p1 ans-p2 ans-p3 ans-p4"
    # only p3 (cut off), p4 (never sent) and the last root turn reach the server again
    assert sorted(r.prompt for r in after if not r.is_root) == ["p3", "p4"]
    assert [r.turn for r in after if r.is_root] == [3]
    assert result.subcalls == 8  # each sub-call counted once, the recorded ones included
