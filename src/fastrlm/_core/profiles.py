"""Prompt profiles: another harness's turn format, so a checkpoint trained on it sees what it was
trained on. fastrlm carries none of that harness's text: a profile reads it from the user's
installed package when it is made (``Prompts.profile("rlms")``), so the format is always the
installed version's.

A profile is a :class:`TurnFormat` on :attr:`Prompts.turns`: the run loop asks it for the opening
messages, the user message before each root turn, and the message that shows a reply's cell
outputs (given each block's stdout, stderr and, when the format lists them, the REPL's variable
names after the block). Everything else (the REPL, budgets, sub-calls) stays fastrlm's.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .._foundation.errors import ConfigurationError
from ..lm import ChatMessage

#: The official package's version each profile was checked against (the test replays a
#: recorded trajectory of that version and compares every message, character by character).
CHECKED = {"rlms": ("rlms", "0.1.3")}


@dataclass(frozen=True, slots=True)
class BlockOutput:
    """What one code block did, as a turn format shows it."""

    stdout: str
    stderr: str
    variables: tuple[str, ...] = ()


class TurnFormat(Protocol):
    """How a profile shapes the root's conversation."""

    #: Whether :meth:`outputs` needs each block's REPL variable names (the engine asks the
    #: REPL for them after each block only then).
    variables: bool

    def opening(self, question: str, context: object) -> list[ChatMessage]:
        """The messages before the first turn."""
        ...

    def turn(self, number: int, max_turns: int) -> ChatMessage:
        """The user message before root turn ``number`` (from 1) of ``max_turns``."""
        ...

    def outputs(self, reply: str, blocks: Sequence[BlockOutput]) -> str | None:
        """The user message after ``reply`` whose code blocks gave ``blocks`` (None: none)."""
        ...


class OfficialTurns:
    """The official ``rlms`` package's turn format, from its own functions: the system prompt
    and metadata message (``build_rlm_system_prompt``), the per-turn message
    (``build_user_prompt``), the outputs message and its truncation (``format_iteration``,
    ``format_execution_result``, each block cut at its default ``max_character_length``).
    The REPL variables it lists are the official REPL's own (``answer``, ``context_0``,
    ``context``) followed by the names the model's code made."""

    variables = True
    #: The names the official REPL holds before any code runs, in its order.
    _SCAFFOLD = ("answer", "context_0", "context")

    def __init__(self) -> None:
        try:  # by name: the package has no type information, and may be absent
            core = importlib.import_module("rlm.core.rlm")
            types = importlib.import_module("rlm.core.types")
            parsing = importlib.import_module("rlm.utils.parsing")
            prompts = importlib.import_module("rlm.utils.prompts")
        except ImportError as exc:
            package, version = CHECKED["rlms"]
            raise ConfigurationError(
                f'the prompt profile "rlms" reads the official prompts from the installed '
                f"official package, which is missing ({exc}): pip install {package} (this "
                f"profile was checked against {package} {version})") from exc
        try:
            self._system = prompts.RLM_SYSTEM_PROMPT
            self._build_system = prompts.build_rlm_system_prompt
            self._build_user = prompts.build_user_prompt
            self._metadata = types.QueryMetadata
            self._format = parsing.format_iteration
            self._iteration, self._block, self._result = (
                types.RLMIteration, types.CodeBlock, types.REPLResult)
            options = inspect.signature(core.RLM.__init__).parameters
            self._orchestrator = options["orchestrator"].default
        except (AttributeError, KeyError) as exc:
            package, version = CHECKED["rlms"]
            raise ConfigurationError(
                f'the installed official package does not have what the "rlms" profile reads '
                f"({exc}); it was checked against {package} {version}: pip install "
                f"'{package}=={version}'") from exc

    def opening(self, question: str, context: object) -> list[ChatMessage]:
        built = self._build_system(self._system, self._metadata(context), custom_tools=None,
                                   root_prompt=question, orchestrator=self._orchestrator)
        return [{"role": m["role"], "content": m["content"]} for m in built]

    def turn(self, number: int, max_turns: int) -> ChatMessage:
        built = self._build_user(None, number - 1, 1, 0, max_iterations=max_turns)
        return {"role": built["role"], "content": built["content"]}

    def outputs(self, reply: str, blocks: Sequence[BlockOutput]) -> str | None:
        code = [self._block(code="", result=self._result(
            stdout=b.stdout, stderr=b.stderr,
            locals=dict.fromkeys(self._SCAFFOLD + b.variables, ""))) for b in blocks]
        messages: list[dict[str, Any]] = self._format(
            self._iteration(prompt="", response=reply, code_blocks=code))
        users = [m["content"] for m in messages if m.get("role") == "user"]
        return str(users[0]) if users else None


#: The profiles :meth:`Prompts.profile` knows, by name.
PROFILES = {"rlms": OfficialTurns}


def turn_format(name: str) -> TurnFormat:
    """The turn format of the profile ``name``. Raises ``ValueError`` for an unknown name,
    :class:`ConfigurationError` when the package it reads is missing or changed."""
    if name not in PROFILES:
        raise ValueError(f"unknown prompt profile {name!r}; known: {', '.join(PROFILES)} "
                         '(or fastrlm\'s own: Prompts(), the paper\'s: Prompts.paper("gpt-5"))')
    made: TurnFormat = PROFILES[name]()
    return made


#: A cell that prints the names the model's code made (simple values only, as the official
#: harness lists them), in the order they were made, as JSON.
def variables_cell(reserved: Sequence[str]) -> str:
    return ("print(__import__('json').dumps([__k for __k, __v in list(globals().items()) "
            "if not __k.startswith('_') and __k not in " + repr(tuple(reserved))
            + " and isinstance(__v, (str, int, float, bool, list, dict, tuple))]))")
