"""Configuration precedence (flags > environment > config.toml) and exit-code mapping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fastrlm import ConfigurationError
from fastrlm._foundation.budget import BUDGET_KEYS
from fastrlm.cli._config import NoModelConfigured, config_path, resolve_settings
from fastrlm.cli._exit import ExitCode, exit_code_for


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_flags_beat_environment_beat_file(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", 'model = "file/m"\nsub_model = "openai/file-sub"\n'
                                     "max_usd = 3\nmax_subcalls = 9\n")
    env = {"FASTRLM_MODEL": "openai/env-root", "FASTRLM_SUB_MODEL": "openai/env-sub"}
    s = resolve_settings({"model": "openai/flag"}, env, cfg)
    assert (s.model, s.sub_model) == ("openai/flag", "openai/env-sub")
    assert s.origin["model"] == "flag" and s.origin["sub_model"] == "FASTRLM_SUB_MODEL"
    assert s.budget == {"max_usd": 3, "max_subcalls": 9}
    s = resolve_settings({"max_usd": 0.5}, {}, cfg)
    assert (s.model, s.budget["max_usd"]) == ("file/m", 0.5)


def test_provider_keys_pick_default_models(tmp_path: Path) -> None:
    none = tmp_path / "none.toml"
    s = resolve_settings({}, {"OPENAI_API_KEY": "sk-x"}, none)
    assert (s.model, s.sub_model) == ("openai/gpt-5", "openai/gpt-5-mini")
    s = resolve_settings({}, {"ANTHROPIC_API_KEY": "sk-ant"}, none)
    assert (s.model, s.sub_model) == ("anthropic/claude-sonnet-4-5", "anthropic/claude-haiku-4-5")
    s = resolve_settings({"sub_model": "openai/cheap"}, {"OPENAI_API_KEY": "k"}, none)
    assert s.sub_model == "openai/cheap"


def test_no_model_anywhere_raises_with_the_help(tmp_path: Path) -> None:
    s = resolve_settings({}, {}, tmp_path / "absent.toml")
    assert s.model is None
    with pytest.raises(NoModelConfigured, match="OPENAI_API_KEY"):
        s.require_model()


def test_environment_base_url_outranks_the_config_file(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", 'model = "ollama/q"\nbase_url = "http://file:1/v1"\n')
    assert resolve_settings({}, {}, cfg).base_url == "http://file:1/v1"
    env = {"OLLAMA_BASE_URL": "http://env:2/v1"}
    assert resolve_settings({}, env, cfg).base_url is None  # the registry reads the variable
    assert resolve_settings({"base_url": "http://flag:3/v1"}, env, cfg).base_url == (
        "http://flag:3/v1"
    )


def test_config_file_api_key_used_only_without_the_variable(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", 'model = "openai/m"\napi_key = "from-file"\n')
    assert resolve_settings({}, {}, cfg).api_key == "from-file"
    assert resolve_settings({}, {"OPENAI_API_KEY": "env"}, cfg).api_key is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model = [", "not valid TOML"),
        ("colour = 'blue'", "unknown key 'colour'"),
        ("max_usd = 'lots'", r"max_usd must be a finite number > 0 .*'lots'"),
        ("max_subcalls = true", "max_subcalls must be an integer >= 0 .*, not True"),
        ("max_seconds = nan", "max_seconds must be a finite number > 0 .*nan"),
        ("max_usd = inf", "max_usd must be a finite number > 0 .*inf"),
        ("max_usd = -1.0", "max_usd must be a finite number > 0"),
        ("max_usd = 0", "max_usd must be a finite number > 0"),
        ("max_iterations = 2.5", "max_iterations must be an integer >= 1 and <= 10000, not 2.5"),
        ("max_iterations = 0", "max_iterations must be an integer >= 1"),
        ("max_depth = 0", "max_depth must be an integer >= 1"),
        ("max_subcalls = -3", "max_subcalls must be an integer >= 0"),
        ("max_subcalls = 1e3", "max_subcalls must be an integer"),
        ("max_concurrency = 0", "max_concurrency must be an integer >= 1"),
        ("max_concurrency = false", "max_concurrency must be an integer >= 1"),
        ("model = 3", "model must be a string"),
        ("sandbox = 'firecracker'", "sandbox must be one of"),
    ],
)
def test_bad_config_files_are_configuration_errors(tmp_path: Path, text: str, message: str) -> None:
    cfg = write(tmp_path / "c.toml", text)
    with pytest.raises(ConfigurationError, match=message):
        resolve_settings({}, {}, cfg)


def test_config_path_honours_fastrlm_config_and_xdg(tmp_path: Path) -> None:
    assert config_path({"FASTRLM_CONFIG": str(tmp_path / "x.toml")}) == tmp_path / "x.toml"
    assert config_path({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "fastrlm/config.toml"


@pytest.mark.parametrize(
    ("stop", "error_kind", "code"),
    [
        ("final", None, ExitCode.OK),
        ("max_iterations", None, ExitCode.LIMIT),
        ("budget_usd", None, ExitCode.LIMIT),
        ("budget_subcalls", None, ExitCode.LIMIT),
        ("budget_tokens", None, ExitCode.LIMIT),
        ("budget_requests", None, ExitCode.LIMIT),
        ("timeout", None, ExitCode.LIMIT),
        ("cancelled", None, ExitCode.CANCELLED),
        ("error", "provider", ExitCode.PROVIDER),
        ("error", "sandbox", ExitCode.SANDBOX),
        ("error", "context", ExitCode.BAD_INPUT),
        ("error", None, ExitCode.ERROR),
    ],
)
def test_exit_code_for_each_outcome(stop: str, error_kind: str | None, code: ExitCode) -> None:
    assert exit_code_for(stop, error_kind) is code


def test_a_final_after_a_budget_refusal_is_a_limit_exit() -> None:
    assert exit_code_for("final", None, "budget_subcalls") is ExitCode.LIMIT
    assert exit_code_for("final", None, None) is ExitCode.OK


@pytest.mark.parametrize("key", BUDGET_KEYS)
def test_every_budget_key_is_a_flag_of_ask_and_serve_a_file_key_and_a_server_override(
    tmp_path: Path, key: str
) -> None:
    from fastrlm._foundation.budget import Budget
    from fastrlm.cli._ask import ask
    from fastrlm.cli._serve import serve
    from fastrlm.server._protocol import parse_chat_request

    flag = "--" + key.replace("_", "-")
    for command in (ask, serve):
        assert any(flag in p.opts for p in command.params), (command.name, flag)
    value = 0.5 if key in ("max_usd", "max_seconds") else 2
    settings = resolve_settings({}, {}, write(tmp_path / "c.toml", f"{key} = {value}\n"))
    assert getattr(settings.make_budget(), key) == value
    body = json.dumps({"model": "rlm", "messages": [{"role": "user", "content": "q"}],
                       "fastrlm": {key: value}}).encode()
    assert parse_chat_request(body, frozenset({"rlm"})).overrides == {key: value}
    assert getattr(Budget(), key) != value  # the file set it, not a default


def test_the_builder_puts_a_commands_limits_flags_over_the_file(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", "max_concurrency = 5\nmax_iterations = 7\n")
    settings = resolve_settings({"max_iterations": 3}, {}, cfg)
    assert settings.make_budget().max_iterations == 3
    limits = settings.make_limits(trace_full_prompts=True, max_concurrency=None)
    assert (limits.max_concurrency, limits.trace_full_prompts) == (5, True)
    assert settings.make_limits(max_concurrency=9).max_concurrency == 9
    with pytest.raises(ValueError, match="max_concurrency"):
        settings.make_limits(max_concurrency=0)


def test_the_config_file_sets_how_long_a_question_the_root_is_shown(tmp_path: Path) -> None:
    # the ContextError for a longer question names this key as the way to raise it
    cfg = write(tmp_path / "c.toml", "question_chars = 12000\n")
    assert resolve_settings({}, {}, cfg).make_limits().question_chars == 12_000
    with pytest.raises(ConfigurationError, match="question_chars"):
        resolve_settings({}, {}, write(tmp_path / "bad.toml", "question_chars = 5\n"))
