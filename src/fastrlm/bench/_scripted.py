"""Offline models for the harness: ``fastrlm bench --scripted`` and the oracle used in tests.

:func:`scripted_models` returns a root and a sub model (``fastrlm.testing.ScriptedLM``) that speak
every method's protocol (the RLM's ```repl blocks, CodeAct's SEARCH/python/ANSWER, plain
answers), so every task x method combination runs without a network. Their answers are fixed
placeholders, except on ``oolong-labelled`` where the RLM root writes the oracle program
(:mod:`fastrlm.bench._oracle`) and so scores 100.
"""

from __future__ import annotations

import inspect
import re

from ..lm import ChatMessage
from ..testing import ScriptedLM
from . import _oracle

_QUESTION = re.compile(r"The question:\n(.*?)\n\nNothing has run yet\.", re.S)


def oracle_source() -> str:
    """The oracle module's source without its docstring (what the oracle model writes)."""
    source = inspect.getsource(_oracle)
    return source.split('"""', 2)[2].lstrip() if source.startswith('"""') else source


def oracle_program(question: str) -> str:
    """A ```repl reply that answers ``question`` from the labelled ``context``."""
    return (
        f"```repl\n{oracle_source()}\nQUESTION = {question!r}\nFINAL(solve(context, QUESTION))\n```"
    )


def question_of(messages: list[ChatMessage]) -> str:
    """The question in the engine's first user message ('' if not found)."""
    for m in messages:
        if m["role"] == "user":
            found = _QUESTION.search(m["content"])
            if found:
                return found.group(1)
    return ""


def oracle_lm(model: str = "scripted/oracle") -> ScriptedLM:
    """A root model that writes the oracle program for the question it is asked."""
    return ScriptedLM(lambda messages: oracle_program(question_of(messages)), model=model)


def _root_reply(task: str, messages: list[ChatMessage]) -> str:
    system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
    if "```repl" in system:
        if task == "oolong-labelled":
            return oracle_program(question_of(messages))
        if "llm_query" in system:
            code = (
                "print(type(context).__name__, len(context))\n"
                "finding = llm_query('Summarise briefly: ' + str(context)[:2000])\n"
                "FINAL(finding)"
            )
        else:
            code = "print(len(context))\nFINAL(str(len(context)))"
        return f"```repl\n{code}\n```"
    turn = sum(1 for m in messages if m["role"] == "assistant")
    if "CodeAct" in system:
        if turn == 0:
            return "Let me search first.\nSEARCH(special magic number)"
        if turn == 1:
            if "llm_query" in system:
                return "```python\nprint(llm_query('Say one word.'))\n```"
            return "```python\nprint(6 * 7)\n```"
        return "ANSWER: 42"
    if "coding agent" in system:
        steps = ("GREP [0-9]+", "READ context_001.txt 1 5",
                 "```python\nprint(len(context), sorted(context)[:3])\n```")
        return steps[turn] if turn < len(steps) else "ANSWER: 42"
    return "Answer: 0"


def scripted_models(task: str) -> tuple[ScriptedLM, ScriptedLM]:
    """(root, sub) scripted models for ``task``; usage is estimated at 4 chars a token."""
    root = ScriptedLM(lambda messages: _root_reply(task, messages), model="scripted/root")
    sub = ScriptedLM(lambda messages: "NONE", model="scripted/sub")
    return root, sub
