"""Fixtures for the sandbox tests: started sandboxes that always get closed. Isolated layers
that cannot work on this machine are skipped with the reason."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from fastrlm.sandbox import Sandbox, SandboxLimits, create_sandbox

from .helpers import CONTEXT, FakeBridge, MakeSandbox, skip_unless_available


@pytest.fixture(params=["bwrap", "landlock", "auto"])
def isolated_kind(request: pytest.FixtureRequest) -> str:
    """Each layer that claims isolation in turn, `auto` included (skipped, with the reason,
    where it cannot work)."""
    kind: str = request.param
    skip_unless_available(kind)
    return kind


@pytest.fixture
def bridge() -> FakeBridge:
    return FakeBridge()


@pytest.fixture
async def make_sandbox(bridge: FakeBridge) -> AsyncIterator[MakeSandbox]:
    """``await make_sandbox(kind, context=..., **SandboxLimits fields)``: a started sandbox,
    closed after the test."""
    made: list[Sandbox] = []

    async def make(
        kind: str = "auto",
        context: object = CONTEXT,
        fake: FakeBridge | None = None,
        **limits: float,
    ) -> Sandbox:
        skip_unless_available(kind)
        sandbox = create_sandbox(kind, SandboxLimits(**limits))  # type: ignore[arg-type]
        made.append(sandbox)
        await sandbox.start(context, fake or bridge)
        return sandbox

    yield make
    for sandbox in made:
        await sandbox.close()
