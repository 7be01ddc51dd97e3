"""Prompt profiles (issue 27): ``Prompts.profile("rlms")`` sends exactly what the official
package sends, turn by turn, read from the installed package (never copied into fastrlm)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fastrlm import RLM, Budget, ConfigurationError, Prompts
from fastrlm.testing import FakeOpenAIServer, FakeRequest

CONTEXT = "hello world, the quick brown fox jumps over the lazy dog"
QUESTION = "How long is it?"
TRAJECTORY = [
    "Let me look.\n```repl\nx = len(context)\nprint(x)\n```",
    "Two steps.\n```repl\nwords = context.split()\nprint(words[:3])\n```\nthen\n"
    "```repl\nimport re\nn = len(re.findall('o', context))\nprint(n)\n```",
    "No code this time, only a plan.",
    "```repl\nprint('before')\nprint(undefined_name)\n```",
    "```repl\nprint('a' * 25000)\nimport sys\nprint('to stderr', file=sys.stderr)\n```",
    "```repl\nanswer['content'] = str(x)\nanswer['ready'] = True\n```",
]


OFFICIAL = f"""
import sys
from rlm import RLM
official = RLM(backend="openai", environment="local", max_iterations=8,
               backend_kwargs={{"model_name": "fake-model", "base_url": sys.argv[1],
                                "api_key": "sk-fake"}})
print(official.completion({CONTEXT!r}, root_prompt={QUESTION!r}).response)
"""


def _server() -> FakeOpenAIServer:
    def reply(request: FakeRequest) -> str:
        return TRAJECTORY[min(request.turn, len(TRAJECTORY)) - 1]

    return FakeOpenAIServer(handler=reply)


def test_the_rlms_profile_sends_the_official_message_sequence_character_for_character(
) -> None:
    pytest.importorskip("rlm")
    with _server() as server:  # the official package itself, recording what it sends
        # in a process of its own: its sockets and threads are its business, not this test's
        done = subprocess.run([sys.executable, "-c", OFFICIAL, server.base_url],
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "56"
        recorded = [request.messages for request in server.completion_requests]
    with _server() as server:
        rlm = RLM("openai/fake-model", base_url=server.base_url, api_key="sk-fake",
                  sandbox="none", prompts=Prompts.profile("rlms"),
                  budget=Budget(max_iterations=8))
        assert rlm.completion(QUESTION, context=CONTEXT).answer == "56"
        sent = [request.messages for request in server.completion_requests]
    assert len(sent) == len(recorded) == len(TRAJECTORY)
    for turn, (theirs, ours) in enumerate(zip(recorded, sent, strict=True), 1):
        assert ours == theirs, f"turn {turn} differs"
    shown = [m["content"] for m in recorded[-1]]
    assert any("NameError: name 'undefined_name' is not defined" in text for text in shown)
    truncated = recorded[-1][-2]["content"]  # the 25,000-character output, cut as they cut it
    assert "chars...]" in truncated and len(truncated) < 21_000


def test_a_missing_official_package_is_named_with_the_version_checked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rlm.utils.prompts", None)
    with pytest.raises(ConfigurationError, match=r"pip install rlms .*rlms 0\.1\.3"):
        Prompts.profile("rlms")


def test_an_unknown_profile_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known: rlms"):
        Prompts.profile("nano")
