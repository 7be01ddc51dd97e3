"""Shared fixtures: every test runs with its own FASTRLM_HOME and no provider credentials."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from fastrlm import MissingExtraError

# litellm fetches its price map from the network at import unless told to use its own copy:
# tests never reach the network (set before any test imports litellm, subprocesses inherit it)
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


#: The module each optional extra brings: a test marked ``@pytest.mark.extra(NAME)`` skips,
#: naming the install, where that module is missing (the fast core path, ``.[test]``).
EXTRA_MODULES = {
    "anthropic": "anthropic",
    "litellm": "litellm",
    "bench": "wonderwords",
    "tokens": "bpe_openai",
    "pdf": "pypdf",
    "dspy": "dspy",
    "otel": "opentelemetry.sdk",
    "mcp": "mcp",
    "browser": "playwright",
    "ray": "ray",
    "dataframes": "pandas",
    "images": "PIL",
}


def missing_extra(name: str) -> bool:
    """Whether the module of extra ``name`` is not installed."""
    module = EXTRA_MODULES[name]
    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:  # a dotted name whose parent package is missing
        return True


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers("extra"):
        for name in marker.args:
            if missing_extra(name):
                pytest.skip(f"needs the {name!r} extra: pip install -e '.[{name}]'")


def _uninstalled_extra(exc: BaseException) -> MissingExtraError | None:
    """The :class:`MissingExtraError` behind ``exc`` whose package is really not installed
    (one raised with its package present is a bug, and fails the test)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, MissingExtraError):
            try:
                importlib.metadata.distribution(cause.package)
            except importlib.metadata.PackageNotFoundError:
                return cause
            return None
        cause = cause.__cause__ or cause.__context__
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    """A test that reaches an optional extra the fast core path (``.[test]``) did not install
    skips, naming the install: fastrlm's own :class:`MissingExtraError` says which."""
    try:
        return (yield)
    except Exception as exc:
        missing = _uninstalled_extra(exc)
        if missing is None:
            raise
        pytest.skip(f"needs the {missing.extra!r} extra: pip install -e '.[{missing.extra}]'")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "fastrlm-home"
    monkeypatch.setenv("FASTRLM_HOME", str(home))
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "FASTRLM_MODEL",
                 "FASTRLM_SUB_MODEL", "OPENROUTER_API_KEY", "FASTRLM_OTEL"):
        monkeypatch.delenv(name, raising=False)
    for name in [n for n in os.environ if n.startswith("OTEL_")]:  # no spans sent anywhere
        monkeypatch.delenv(name)
    yield home
