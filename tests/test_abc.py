"""``fastrlm.abc`` is the one public door to what users implement: each name is the object
the engine itself uses, and a user's own implementation written against it runs."""

from __future__ import annotations

from collections.abc import Sequence

import fastrlm.abc as abc
from fastrlm import RLM
from fastrlm._core import call_tree
from fastrlm.lm import _base as lm_base
from fastrlm.sandbox import _base as sandbox_base


def test_every_name_is_the_engines_own_object() -> None:
    assert sorted(abc.__all__) == sorted(n for n in dir(abc) if not n.startswith("_")
                                         and n not in ("annotations",))
    assert abc.LM is lm_base.LM and abc.ChatMessage is lm_base.ChatMessage
    assert abc.Sandbox is sandbox_base.Sandbox and abc.HostBridge is sandbox_base.HostBridge
    assert abc.ResponseCache is call_tree.ResponseCache


class EchoLM:
    """An LM written only against fastrlm.abc: it answers every root turn with FINAL."""

    model = "mine/echo"
    temperature = None

    def cache_key(self) -> str:
        return self.model

    async def complete(self, messages: Sequence[abc.ChatMessage], *,
                       max_tokens: int | None) -> abc.LMResponse:
        text = "```repl\nFINAL(str(len(context)))\n```"
        return abc.LMResponse(text, abc.TokenUsage(input_tokens=10, output_tokens=5), self.model)

    async def aclose(self) -> None:
        return None


def test_an_lm_written_against_the_door_runs() -> None:
    lm: abc.LM = EchoLM()
    result = RLM(lm, sandbox="none", trace=False).completion("how long?", "x" * 42)
    assert result.answer == "42"
