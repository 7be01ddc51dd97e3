"""Numeric flags of ask, serve and bench are usage errors naming the flag; --price; binary stdin."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fastrlm.cli import ExitCode, cli
from fastrlm.lm._retry import RetryPolicy
from fastrlm.testing import FakeOpenAIServer

from .helpers import ROOT, SIMPLE_FINAL, model_args, server

BUDGET_FLAGS = {  # flag -> values an adversary tries (each must be refused)
    "--max-usd": ["nan", "inf", "-inf", "-1", "0", "abc", "1e400"],
    "--max-seconds": ["nan", "inf", "-1", "0", "abc"],
    "--max-subcalls": ["nan", "-1", "2.5", "inf", "abc", "true"],
    "--max-requests": ["0", "-1", "2.5", "nan", "inf"],
    "--max-depth": ["0", "-1", "1.5", "nan", "1000000"],
    "--max-iterations": ["0", "2.5", "nan", "-3", "inf", "1000000000"],
}
BAD_BUDGET = [(flag, value) for flag, values in BUDGET_FLAGS.items() for value in values]


def invoke(args: list[str], input: str | bytes | None = None) -> Result:
    return CliRunner().invoke(cli, args, input=input, catch_exceptions=False)


def assert_usage_error(result: Result, flag: str, value: str) -> None:
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert f"Invalid value for '{flag}'" in result.stderr
    assert "must be" in result.stderr and repr(value) in result.stderr


@pytest.fixture
def doc(tmp_path: Path) -> Path:
    path = tmp_path / "doc.txt"
    path.write_text("some text to read\n")
    return path


@pytest.mark.parametrize(("flag", "value"), BAD_BUDGET)
def test_ask_refuses_each_bad_budget_value_naming_the_flag(
    doc: Path, flag: str, value: str
) -> None:
    with server([SIMPLE_FINAL]) as srv:
        result = invoke(["ask", "Q", "-c", str(doc), flag, value, *model_args(srv)])
        assert srv.completion_requests == []
    assert_usage_error(result, flag, value)


@pytest.mark.parametrize(("flag", "value"), [*BAD_BUDGET, ("--max-body-mb", "nan"),
                                             ("--max-body-mb", "0"), ("--max-body-mb", "inf")])
def test_serve_refuses_each_bad_value_naming_the_flag(flag: str, value: str) -> None:
    result = invoke(["serve", "--port", "0", "-m", "scripted/x", flag, value])
    assert_usage_error(result, flag, value)


@pytest.mark.parametrize(("flag", "value"), [
    ("--max-usd", "nan"), ("--max-usd", "-1"), ("--max-subcalls", "2.5"),
    ("--max-iterations", "0"), ("--max-iterations", "nan"), ("--concurrency", "0"),
    ("--concurrency", "1.5"), ("--n", "0"), ("--n", "-2"), ("--window", "0"),
])
def test_bench_refuses_each_bad_value_naming_the_flag(
    tmp_path: Path, flag: str, value: str
) -> None:
    result = invoke(["bench", "sniah", "--scripted", "--out", str(tmp_path), flag, value])
    assert_usage_error(result, flag, value)


def test_max_seconds_nan_no_longer_runs_and_exits_3_silently(doc: Path) -> None:
    with server([SIMPLE_FINAL]) as srv:
        result = invoke(["ask", "Q", "-c", str(doc), "--max-seconds", "nan", *model_args(srv)])
    assert result.exit_code != ExitCode.LIMIT
    assert "--max-seconds" in result.stderr


@pytest.mark.parametrize("price", ["openai/x", "openai/x=1", "openai/x=1,2,3,4", "=1,2",
                                   "openai/x=a,2", "openai/x=-1,2", "openai/x=nan,2",
                                   "openai/x=1,inf", "openai/x=1,2,-0.5"])
def test_a_malformed_price_is_a_usage_error(doc: Path, price: str) -> None:
    result = invoke(["ask", "Q", "-c", str(doc), "-m", "openai/x", "--price", price])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "Invalid value for '--price'" in result.stderr


def test_max_usd_on_an_unpriced_model_says_how_to_fix_it_from_the_shell(doc: Path) -> None:
    with server([SIMPLE_FINAL]) as srv:
        result = invoke(["ask", "Q", "-c", str(doc), "--max-usd", "0.5", "-m",
                         f"openai/{ROOT}", "--base-url", srv.base_url])
        assert srv.completion_requests == []
    assert result.exit_code == ExitCode.BAD_INPUT
    assert f"--price openai/{ROOT}=0,0" in result.stderr
    assert "prices.json" in result.stderr


def test_price_flags_make_max_usd_enforceable_and_price_the_run(doc: Path) -> None:
    with server([SIMPLE_FINAL]) as srv:
        result = invoke(["ask", "Q", "-c", str(doc), "--max-usd", "0.5", "--json",
                         "--sandbox", "none", "--price", f"openai/{ROOT}=2,8,0.5",
                         *model_args(srv, sub=False)])
        requests = srv.completion_requests
    assert result.exit_code == ExitCode.OK, result.stderr
    usage = json.loads(result.stdout)["usage"]
    expected = (usage["input_tokens"] * 2 + usage["output_tokens"] * 8) / 1e6
    assert len(requests) == 1
    assert json.loads(result.stdout)["cost_usd"] == pytest.approx(expected, rel=1e-6)
    assert expected > 0


def test_serve_takes_the_price_flag_too() -> None:
    result = invoke(["serve", "--port", "0", "-m", "openai/my-local", "--max-usd", "1"])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "--price openai/my-local=0,0" in result.stderr


def test_bench_max_usd_on_an_unpriced_model_names_the_price_flag(tmp_path: Path) -> None:
    result = invoke(["bench", "sniah", "--model", "openai/my-local", "--max-usd", "1",
                     "--out", str(tmp_path)])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "--price openai/my-local=0,0" in result.stderr


def test_binary_data_on_stdin_is_detected_as_for_files(doc: Path) -> None:
    with server([SIMPLE_FINAL]) as srv:
        result = invoke(["ask", "Q", "-c", "-", *model_args(srv)],
                        input=b"\x7fELF\x02\x01\x00\x00binary")
        assert srv.completion_requests == []
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "binary" in result.stderr


@pytest.mark.parametrize("quiet", [[], ["-q"]], ids=["default", "quiet"])
def test_a_dead_endpoint_exits_4_naming_its_url(
    doc: Path, monkeypatch: pytest.MonkeyPatch, quiet: list[str]
) -> None:
    monkeypatch.setattr(RetryPolicy, "backoff_s", lambda *args, **kwargs: 0.0)  # retry at once
    with FakeOpenAIServer() as gone:
        url = gone.base_url
    result = invoke(["ask", "Q", "-c", str(doc), "-m", "openai/x", "--base-url", url,
                     "--sandbox", "none", *quiet])
    assert result.exit_code == ExitCode.PROVIDER
    assert f"cannot reach the endpoint at {url}" in result.stderr  # -q never hides why


def test_a_dollar_limit_from_the_config_file_names_the_file_in_the_fix(
    doc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('model = "openai/my-local"\nmax_usd = 1.0\n')
    monkeypatch.setenv("FASTRLM_CONFIG", str(config))
    result = invoke(["ask", "Q", "-c", str(doc)])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert f"max_usd in {config} is set" in result.stderr
    assert "--price openai/my-local=0,0" in result.stderr


def test_a_nan_in_the_config_file_is_bad_input_naming_the_key(
    doc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('model = "openai/x"\nmax_seconds = nan\n')
    monkeypatch.setenv("FASTRLM_CONFIG", str(config))
    result = invoke(["ask", "Q", "-c", str(doc)])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "max_seconds must be a finite number > 0" in result.stderr


@pytest.mark.extra("bench")
def test_bench_prices_its_calls_with_the_price_flag(tmp_path: Path) -> None:
    from fastrlm.testing import FakeReply

    reply = FakeReply("no idea", prompt_tokens=1_000_000, completion_tokens=100_000)
    with FakeOpenAIServer(default=reply) as srv:
        result = invoke(["bench", "sniah", "--method", "base", "--model", "openai/my-local",
                         "--base-url", srv.base_url, "--lengths", "2K", "--n", "1",
                         "--max-usd", "5", "--price", "openai/my-local=0.5,2", "--no-plot",
                         "--quiet", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    (record,) = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert record["cost_usd"] == pytest.approx(1.0 * 0.5 + 0.1 * 2)  # 1M in, 100K out


@pytest.mark.parametrize(("flag", "value"), [
    ("--worker-memory-mb", "8"), ("--worker-memory-mb", "99999999999"),
    ("--scratch-mb", "nan"), ("--max-answer-chars", "99999999999"),
])
def test_ask_refuses_a_limit_flag_out_of_range_naming_the_flag(
    doc: Path, flag: str, value: str,
) -> None:
    # These took click's own ranges (no upper bound); a huge value reached Limits and was
    # reported under the field's name, not the flag's.
    with server([SIMPLE_FINAL]) as srv:
        result = invoke(["ask", "Q", "-c", str(doc), flag, value, *model_args(srv)])
        assert srv.completion_requests == []
    assert_usage_error(result, flag, value)


@pytest.mark.parametrize(("flag", "value"), [
    ("--concurrency", "1000000000"), ("--retries", "1000000"), ("--worker-retries", "1000000"),
    ("--cpus-per-job", "nan"), ("--cpus-per-job", "100000"),
])
def test_batch_refuses_a_flag_out_of_range_naming_the_flag(
    tmp_path: Path, flag: str, value: str,
) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"id": "a", "question": "q", "context": "c"}) + "\n")
    result = invoke(["batch", str(jobs), "-o", str(tmp_path / "out.jsonl"), flag, value,
                     "--model", "openai/fake"])
    assert_usage_error(result, flag, value)


@pytest.mark.parametrize("value", ["=8", "openai=0", "openai=", "abc", "openai=x", "-3"])
def test_a_malformed_provider_concurrency_is_refused_with_its_accepted_forms(value: str) -> None:
    import click

    from fastrlm.cli._batch import ProviderLimit

    with pytest.raises(click.BadParameter, match=r"is not N or PROVIDER=N with N >= 1"):
        ProviderLimit().convert(value, None, None)


def test_provider_concurrency_and_price_read_their_key_and_pass_a_converted_value_through() -> None:
    from fastrlm.cli._batch import ProviderLimit
    from fastrlm.cli._options import PriceParam

    limit = ProviderLimit()
    assert limit.convert("16", None, None) == (None, 16)
    assert limit.convert(" openai =8", None, None) == ("openai", 8)
    assert limit.convert(("openai", 8), None, None) == ("openai", 8)
    model, price = PriceParam().convert("a=b/c=1,2", None, None)
    assert model == "a=b/c" and (price.input, price.output) == (1.0, 2.0)
