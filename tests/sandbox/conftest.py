"""Fixtures for the sandbox tests: started sandboxes that always get closed. Isolated layers
that cannot work on this machine are skipped with the reason."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from fastrlm.sandbox import Sandbox, SandboxLimits, create_sandbox, warm_workers
from fastrlm.sandbox._layers import CONTAINER_KINDS
from fastrlm.sandbox._worker import WorkerSandbox

from .helpers import CONTEXT, FakeBridge, MakeSandbox, skip_unless_available


@pytest.fixture(params=["bwrap", "landlock", "auto", "docker", "podman", "bwrap+warm",
                        "landlock+warm"])
async def isolated_kind(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """Each layer that claims isolation in turn, `auto` included (skipped, with the reason,
    where it cannot work); ``+warm``: the layer's workers forked from a warm process (what
    ``fastrlm serve`` runs), held for the test."""
    kind: str = request.param
    layer, _, warm = kind.partition("+")
    skip_unless_available(layer)
    if not warm:
        yield layer
        return
    held = await warm_workers(layer, SandboxLimits())
    if held.warm is None:
        pytest.skip(f"no warm worker for {layer} here: {held.problem}")
    try:
        yield layer
    finally:
        held.close()


@pytest.fixture
def bridge() -> FakeBridge:
    return FakeBridge()


WarmKey = tuple[str, tuple[tuple[str, float], ...]]


@pytest.fixture(scope="module")
def warm_containers() -> Iterator[dict[WarmKey, WorkerSandbox]]:
    """Container sandboxes shared by the tests of one module that ask for ``warm=True`` (a
    container start costs a second or more; the tests that need a fresh worker do not ask).
    Each is used from one test's event loop at a time and discarded (synchronously) at the
    module's end."""
    pool: dict[WarmKey, WorkerSandbox] = {}
    yield pool
    for sandbox in pool.values():
        sandbox.discard()


@pytest.fixture
async def make_sandbox(
    bridge: FakeBridge, warm_containers: dict[WarmKey, WorkerSandbox]
) -> AsyncIterator[MakeSandbox]:
    """``await make_sandbox(kind, context=..., **SandboxLimits fields)``: a started sandbox,
    closed after the test. ``warm=True``: a container kind's sandbox with the default context
    is shared with the module's other warm tests (its worker keeps their variables; the test's
    bridge answers its host calls)."""
    made: list[Sandbox] = []

    async def make(
        kind: str = "auto",
        context: object = CONTEXT,
        fake: FakeBridge | None = None,
        warm: bool = False,
        **limits: float,
    ) -> Sandbox:
        skip_unless_available(kind)
        key: WarmKey = (kind, tuple(sorted(limits.items())))
        if warm and kind in CONTAINER_KINDS and context is CONTEXT:
            shared = warm_containers.get(key)
            if shared is not None:
                shared._bridge = fake or bridge  # this test's host calls, this test's fake
                return shared
        sandbox = create_sandbox(kind, SandboxLimits(**limits))  # type: ignore[arg-type]
        if warm and kind in CONTAINER_KINDS and context is CONTEXT:
            assert isinstance(sandbox, WorkerSandbox)
            warm_containers[key] = sandbox
        else:
            made.append(sandbox)
        await sandbox.start(context, fake or bridge)
        return sandbox

    yield make
    for sandbox in made:
        await sandbox.close()
