"""Which sandbox layers a test can run on here, for tests parametrized over the layers."""

from __future__ import annotations

from .._foundation.errors import SandboxUnavailableError
from ..sandbox import plans_for


def skip_unless_sandbox(kind: str) -> None:
    """Skip the calling pytest test when the sandbox layer ``kind`` (``"bwrap"``,
    ``"landlock"``, ``"process"``, ``"docker"``, ``"podman"``, ``"auto"``) cannot run on this
    machine, saying why (a container kind: no daemon, or no current image from ``fastrlm
    sandbox build``); ``"none"`` (in-process) runs everywhere. Imports pytest only when it skips."""
    if kind == "none":
        return
    try:
        plans_for(kind)
    except SandboxUnavailableError as exc:
        import pytest

        pytest.skip(f"sandbox layer {kind!r} is unavailable here: {exc}")
