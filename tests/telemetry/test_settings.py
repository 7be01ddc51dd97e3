"""When spans are on: the option, the environment, a missing extra, a wrong value."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

import fastrlm
from fastrlm import ConfigurationError, MissingExtraError
from fastrlm.telemetry import _settings, enabled_by_environment

from .helpers import scripted_rlm


@pytest.mark.parametrize(("env", "on"), [
    ({}, False),
    ({"FASTRLM_OTEL": "1"}, True),
    ({"FASTRLM_OTEL": "true"}, True),
    ({"FASTRLM_OTEL": "0", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, False),
])
def test_the_environment_turns_spans_on_and_off(env: dict[str, str], on: bool) -> None:
    assert enabled_by_environment(env) is on


def test_a_fastrlm_otel_value_that_means_nothing_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="FASTRLM_OTEL='maybe'.*set it to 1"):
        enabled_by_environment({"FASTRLM_OTEL": "maybe"})


@pytest.mark.extra("otel")
def test_the_rlm_option_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASTRLM_OTEL", "1")
    assert scripted_rlm().telemetry is True
    assert scripted_rlm(telemetry=False).telemetry is False
    monkeypatch.setenv("FASTRLM_OTEL", "0")
    assert scripted_rlm().telemetry is False
    assert scripted_rlm(telemetry=True).telemetry is True


def test_telemetry_of_another_type_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="telemetry must be True, False, None"):
        scripted_rlm(telemetry="yes")


def test_asking_for_spans_without_the_extra_names_the_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_settings, "_installed", lambda: False)
    with pytest.raises(MissingExtraError, match=r"pip install 'fastrlm\[otel\]'"):
        scripted_rlm(telemetry=True)
    monkeypatch.setenv("FASTRLM_OTEL", "1")
    with pytest.raises(MissingExtraError, match=r"pip install 'fastrlm\[otel\]'"):
        scripted_rlm()


def test_otlp_variables_alone_without_the_extra_warn_and_leave_spans_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """Other programs share the OTEL_* variables: they must not break an RLM without the extra."""
    monkeypatch.setattr(_settings, "_installed", lambda: False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    with caplog.at_level(logging.WARNING, logger="fastrlm.telemetry"):
        rlm = scripted_rlm()
    assert rlm.telemetry is False
    assert "pip install 'fastrlm[otel]'" in caplog.text


def test_an_rlm_without_telemetry_never_imports_opentelemetry(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from fastrlm import RLM\n"
        "from fastrlm.testing import ScriptedLM\n"
        "rlm = RLM(ScriptedLM(['```repl\\nFINAL(1)\\n```']), sandbox='none')\n"
        "rlm.completion('q', context='c')\n"
        "loaded = [m for m in sys.modules if m.startswith('opentelemetry')]\n"
        "assert not loaded, loaded\n"
        "print('ok')\n"
    )
    src = str(Path(fastrlm.__file__).parents[1])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, check=False,
                         env={"FASTRLM_HOME": str(tmp_path), "PATH": "/usr/bin:/bin",
                              "PYTHONPATH": src})
    assert out.stdout.strip() == "ok", out.stderr


@pytest.mark.extra("otel")
def test_with_options_keeps_or_changes_telemetry() -> None:
    rlm = scripted_rlm(telemetry=True)
    assert rlm.with_options(sandbox="none").telemetry is True
    assert rlm.with_options(telemetry=False).telemetry is False
    with pytest.raises(AttributeError, match="with_options"):
        rlm.telemetry = False  # type: ignore[misc]
