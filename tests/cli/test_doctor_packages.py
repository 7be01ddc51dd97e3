"""``fastrlm doctor`` says which third-party packages model code can import in the sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastrlm import SandboxUnavailableError
from fastrlm.cli import _doctor
from fastrlm.sandbox import _layers

pytestmark = pytest.mark.sandbox


@pytest.fixture(autouse=True)
def _needs_a_worker() -> None:
    try:
        _layers.plans_for("auto")
    except SandboxUnavailableError as exc:
        pytest.skip(f"no isolated sandbox here: {exc}")


def test_installed_packages_are_reported_importable_in_the_worker() -> None:
    pytest.importorskip("pandas")
    lines = _doctor.sandbox_package_lines()
    pandas_line = next(line for line in lines if line.split()[0] == "pandas")
    assert "importable (" in pandas_line, lines


def test_a_package_the_worker_cannot_import_or_that_is_missing_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # importable here through sys.path, but not from a site directory the worker gets
    (tmp_path / "only_on_the_host.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(_doctor, "SANDBOX_PACKAGES", (
        ("only_on_the_host", "only-on-the-host"), ("no_such_package_xyz", "no-such-package")))
    lines = _doctor.sandbox_package_lines()
    assert any(line.split()[0] == "only_on_the_host"
               and "installed here, but fails ModuleNotFoundError" in line for line in lines), lines
    assert any("not installed (pip install no-such-package)" in line for line in lines), lines
