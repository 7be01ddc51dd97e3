"""Small builders for engine tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastrlm import RLM
from fastrlm.events import Event
from fastrlm.testing import ScriptedLM, prompt_of


def repl(code: str, prose: str = "") -> str:
    """A root reply holding one ```repl block."""
    return f"{prose}\n```repl\n{code}\n```\n"


def echo_sub(model: str = "scripted/sub") -> ScriptedLM:
    """A sub-model that answers 'ok:<first 20 chars of the prompt>'."""
    return ScriptedLM(lambda m: "ok:" + prompt_of(m)[:20], model=model)


def make_rlm(replies: list[str] | Callable[..., Any], sub: ScriptedLM | None = None,
             events: list[Event] | None = None, **kw: Any) -> tuple[RLM, ScriptedLM]:
    root = (replies if isinstance(replies, ScriptedLM)
            else ScriptedLM(replies, model="scripted/root"))
    kw.setdefault("sandbox", "none")
    rlm = RLM(root, sub or echo_sub(), on_event=(events.append if events is not None else None),
              **kw)
    return rlm, root
