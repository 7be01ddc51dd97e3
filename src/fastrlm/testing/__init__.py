"""Test doubles for fastrlm and for users' own tests: no network, realistic behaviour."""

from ._scripted import ScriptedLM, prompt_of

__all__ = ["ScriptedLM", "prompt_of"]
