"""The worker's own confinement calls (sandbox/_confine.py), each applied in a forked child of
the test process, so that the test process itself stays unconfined."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from fastrlm.sandbox import _confine, _layers


def _in_child(body: Callable[[], int]) -> int:
    """Run ``body`` in a forked child; its return value is the child's exit status."""
    pid = os.fork()
    if pid == 0:
        status = 99
        try:
            status = body()
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.skipif(_layers.landlock_problem() is not None, reason="no Landlock here")
def test_landlock_allows_exactly_the_listed_paths(tmp_path: Path) -> None:
    readable, scratch, outside = tmp_path / "ro", tmp_path / "scratch", tmp_path / "out"
    for folder in (readable, scratch, outside):
        folder.mkdir()
    (readable / "a.txt").write_text("in")
    single = tmp_path / "single.txt"
    single.write_text("one file")
    (outside / "secret.txt").write_text("no")

    def body() -> int:
        _confine.no_new_privs()
        _confine.apply_landlock([str(readable), str(single), str(tmp_path / "missing")],
                                [str(scratch)])
        failures = 0
        checks: list[tuple[Callable[[], object], bool]] = [
            (lambda: (readable / "a.txt").read_text(), True),
            (lambda: os.listdir(readable), True),
            (lambda: single.read_text(), True),  # a file path gets a file's rights
            (lambda: (scratch / "new.txt").write_text("x"), True),
            (lambda: (scratch / "new.txt").unlink(), True),
            (lambda: (readable / "b.txt").write_text("x"), False),
            (lambda: (outside / "secret.txt").read_text(), False),
            (lambda: os.listdir(tmp_path), False),
        ]
        for bit, (check, allowed) in enumerate(checks):
            try:
                check()
                ok = allowed
            except PermissionError:
                ok = not allowed
            failures |= 0 if ok else 1 << bit
        return failures

    assert _in_child(body) == 0


@pytest.mark.skipif(_layers.landlock_problem() is not None, reason="no Landlock here")
def test_landlock_refuses_a_write_path_that_is_not_there(tmp_path: Path) -> None:
    def body() -> int:
        _confine.no_new_privs()
        try:
            _confine.apply_landlock([], [str(tmp_path / "missing")])
        except OSError:
            return 0  # the worker then refuses to start, as asked
        return 1

    assert _in_child(body) == 0


def test_capabilities_are_dropped_from_every_set(tmp_path: Path) -> None:
    def body() -> int:
        _confine.drop_capabilities()
        with open("/proc/self/status") as status:
            sets = dict(line.split(":\t", 1) for line in status if line.startswith("Cap"))
        return sum(int(sets[name].strip(), 16) != 0
                   for name in ("CapInh", "CapPrm", "CapEff", "CapBnd"))

    assert _in_child(body) == 0
