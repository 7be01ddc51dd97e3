"""Test doubles for fastrlm and for users' own tests: no network, realistic behaviour."""

from ._fake_anthropic import FakeAnthropicServer
from ._fake_server import FakeOpenAIServer, FakeReply, FakeRequest, Fault
from ._layers import skip_unless_sandbox
from ._scripted import ScriptedLM, prompt_of

__all__ = [
    "FakeAnthropicServer",
    "FakeOpenAIServer",
    "FakeReply",
    "FakeRequest",
    "Fault",
    "ScriptedLM",
    "prompt_of",
    "skip_unless_sandbox",
]
