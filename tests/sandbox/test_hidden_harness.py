"""The benchmark harness can rebuild a task's instances (their answers), so model code must not
reach it: under bubblewrap its directory is an empty, read-only one (issue 25); the worker's
import guard refuses it on every layer."""

from __future__ import annotations

import os

from fastrlm.sandbox import _layers

from .helpers import MakeSandbox


async def test_the_bench_package_is_an_empty_read_only_directory_under_bwrap(
    make_sandbox: MakeSandbox,
) -> None:
    bench = os.path.join(_layers.package_dir(), "bench")
    assert os.listdir(bench)  # the host has it
    sandbox = await make_sandbox("bwrap")
    code = (
        "import os\n"
        f"p = {bench!r}\n"
        "print(sorted(os.listdir(p)), len(os.listdir(os.path.dirname(p))) > 3)\n"
        "try:\n"
        "    open(os.path.join(p, 'x.py'), 'w')\n"
        "except OSError as exc:\n"
        "    print(type(exc).__name__)\n"
    )
    result = await sandbox.execute(code)
    assert result.error is None, result.error
    assert result.stdout.split("\n")[:2] == ["[] True", "OSError"]


async def test_the_import_guard_refuses_the_harness_on_every_layer(
    make_sandbox: MakeSandbox, isolated_kind: str,
) -> None:
    sandbox = await make_sandbox(isolated_kind)
    result = await sandbox.execute("import fastrlm.bench")
    assert result.error is not None and "fastrlm.bench cannot be imported" in result.error
