"""``fastrlm ask`` in-process (click's CliRunner) against a real fake server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from fastrlm.cli import ExitCode, cli
from fastrlm.testing import FakeOpenAIServer
from fastrlm.testing._fake_server import Fault
from fastrlm.trace import read_trace

from .helpers import FANOUT, NEVER_FINAL, ROOT, SIMPLE_FINAL, SUB, model_args, server


def invoke(args: list[str], input: str | bytes | None = None) -> Result:
    return CliRunner().invoke(cli, args, input=input, catch_exceptions=False)


@pytest.fixture
def doc(tmp_path: Path) -> Path:
    path = tmp_path / "doc.txt"
    path.write_text("The festival happens in Lisbon every June. " * 20)
    return path


def test_answer_on_stdout_progress_and_trace_on_stderr(doc: Path) -> None:
    with server([FANOUT]) as srv:
        result = invoke(["ask", "Where?", "-c", str(doc), *model_args(srv)])
    assert result.exit_code == ExitCode.OK, result.stderr
    assert result.stdout.startswith("answer: sub saw")
    assert "context: 860 chars (~215 tokens) from 1 file(s)" in result.stderr
    assert "iteration 1/30" in result.stderr
    assert "final · 1 iteration(s) · 3 sub-call(s)" in result.stderr
    assert "trace: " in result.stderr
    assert {r.model for r in srv.completion_requests} == {ROOT, SUB}


def test_json_prints_exactly_one_result_object(doc: Path) -> None:
    with server([SIMPLE_FINAL]) as srv:
        result = invoke(["ask", "Q", "-c", str(doc), "--json", *model_args(srv)])
    assert result.exit_code == ExitCode.OK
    [line] = result.stdout.splitlines()
    payload = json.loads(line)
    assert payload["answer"] == "forty-two"
    assert payload["stop_reason"] == "final"
    assert payload["context"]["files"] == 1
    assert Path(payload["trace_path"]).is_file()


def test_stream_json_prints_every_event_one_per_line(doc: Path) -> None:
    with server([FANOUT]) as srv:
        result = invoke(["ask", "Q", "-c", str(doc), "--stream-json", *model_args(srv)])
    assert result.exit_code == ExitCode.OK
    events = [json.loads(line) for line in result.stdout.splitlines()]
    types = [e["type"] for e in events]
    assert types[0] == "run.started"
    assert types[-1] == "run.finished" and events[-1]["depth"] == 0
    assert types.count("subcall.finished") == 3
    assert "code.executed" in types
    assert all("context" not in e or "sha256" in e["context"] for e in events)


def test_json_and_stream_json_together_is_bad_input(doc: Path) -> None:
    result = invoke(["ask", "Q", "-c", str(doc), "--json", "--stream-json", "-m", "x"])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "cannot be combined" in result.stderr


def test_every_budget_flag_reaches_the_engine(doc: Path) -> None:
    flags = ["--max-usd", "2.5", "--max-subcalls", "7", "--max-seconds", "90",
             "--max-depth", "2", "--max-iterations", "4", "--sandbox", "none"]
    priced = ["--model", "openai/gpt-5", "--sub-model", "openai/gpt-5-mini"]  # max_usd needs prices
    with server([SIMPLE_FINAL]) as srv:
        result = invoke(["ask", "Q", "-c", str(doc), "--stream-json", *flags, *priced,
                         "--base-url", srv.base_url])
    started = json.loads(result.stdout.splitlines()[0])
    budget = started["budget"]
    assert (budget["max_usd"], budget["max_subcalls"], budget["max_seconds"]) == (2.5, 7, 90)
    assert (budget["max_depth"], budget["max_iterations"]) == (2, 4)
    assert started["sandbox"] == "none"


def test_iteration_limit_exits_with_the_limit_code(doc: Path) -> None:
    with server([NEVER_FINAL]) as srv:
        result = invoke(["ask", "Q", "-c", str(doc), "--max-iterations", "1", "--json",
                         *model_args(srv)])
    assert result.exit_code == ExitCode.LIMIT
    assert json.loads(result.stdout)["stop_reason"] == "max_iterations"
    assert "stopped early (max_iterations)" in result.stderr


def test_one_iteration_is_reported_as_one_plus_the_answer_now_turn(doc: Path) -> None:
    # The case: --max-iterations 1 reported "2 iteration(s)" (the last turn that asks
    # for an answer counted as an iteration) and listed all four budget flags.
    with server([NEVER_FINAL]) as srv:
        result = invoke(["ask", "Q", "-c", str(doc), "--max-iterations", "1", *model_args(srv)])
    assert result.exit_code == ExitCode.LIMIT
    assert "max_iterations · 1 iteration(s) + 1 answer-now turn ·" in result.stderr
    assert "the limit was --max-iterations 1: raise it" in result.stderr
    assert "--max-usd" not in result.stderr and "--max-subcalls" not in result.stderr


def test_a_usd_stop_names_the_amount_needed_and_only_its_flag(doc: Path) -> None:
    priced = ["--model", "openai/gpt-5", "--sub-model", "openai/gpt-5-mini"]
    with server([FANOUT]) as srv:
        result = invoke(["ask", "Q", "-c", str(doc), "--max-usd", "0.001", *priced,
                         "--base-url", srv.base_url])
    assert result.exit_code == ExitCode.LIMIT
    assert re.search(r"USD limit: this call needs up to \$0\.\d{4} \(its worst case: "
                     r"[\d,]+ input and 256 output tokens\), \$0\.0010 left of \$0\.001",
                     result.stderr), result.stderr
    assert "the limit was --max-usd 0.001: raise it" in result.stderr
    assert "--max-iterations" not in result.stderr and "--max-seconds" not in result.stderr


def test_a_limit_set_in_the_config_file_is_named_where_it_was_set(
        doc: Path, _no_user_config: Path) -> None:
    config = _no_user_config / "fastrlm" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("max_iterations = 1\n")
    with server([NEVER_FINAL]) as srv:
        result = invoke(["ask", "Q", "-c", str(doc), *model_args(srv)])
    assert result.exit_code == ExitCode.LIMIT
    assert f"the limit was max_iterations = 1 from {config}: raise it there or with " \
           "--max-iterations" in result.stderr


def test_a_failed_requests_booking_is_called_a_reservation_not_a_charge(
        doc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The case: with no network, the summary showed dollars "spent" on requests that
    # never left the machine. The booking stays (the budget is conservative) but is named.
    def no_such_name(*args: object, **kwargs: object) -> object:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    result = invoke(["ask", "Q", "-c", str(doc), "--json", "--model", "openai/gpt-5",
                     "--base-url", "http://nowhere.test/v1"])
    assert result.exit_code != ExitCode.OK
    usage = json.loads(result.stdout)["usage"]
    assert usage["failed_requests"] == 1  # a name that does not resolve is not retried
    assert usage["failed_usd"] == usage["cost_usd"] > 0
    assert re.search(r"of which \$\d\.\d{4} is a worst-case reservation for 1 failed "
                     r"request\(s\), not a charge", result.stderr), result.stderr
    assert "does not resolve; not retried" in result.stderr


FORTY_CHUNKS = """```repl
chunks = [context[i:i + 20] for i in range(0, 800, 20)]
replies = llm_query_batched(["Summarise: " + c for c in chunks])
FINAL(f"{len(replies)} summaries")
```"""


def test_a_final_given_after_refused_subcalls_warns_and_exits_with_the_limit_code(
        doc: Path) -> None:
    # The case: --max-subcalls 3 over 40 chunks answered from 37 error strings and
    # looked like success (exit 0, partial=False).
    with server([FORTY_CHUNKS]) as srv:
        result = invoke(["ask", "Q", "-c", str(doc), "--max-subcalls", "3", "--json",
                         *model_args(srv)])
        sub_requests = [r for r in srv.completion_requests if r.model == SUB]
    assert len(sub_requests) == 3
    assert result.exit_code == ExitCode.LIMIT
    payload = json.loads(result.stdout)
    assert payload["answer"] == "40 summaries" and payload["stop_reason"] == "final"
    assert payload["partial"] is True and payload["limited_by"] == "budget_subcalls"
    assert payload["subcalls_refused"] == 37 and payload["subcalls"] == 3
    [warning] = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert "37 sub-call(s) refused (budget_subcalls)" in warning


def test_usd_limit_on_an_unpriced_model_is_refused_before_any_call(doc: Path) -> None:
    with server([SIMPLE_FINAL]) as srv:
        result = invoke(["ask", "Q", "-c", str(doc), "--max-usd", "0.01", "--json",
                         *model_args(srv)])
        assert srv.completion_requests == []
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "no price is known" in result.stderr


def test_time_limit_exits_with_the_limit_code(doc: Path) -> None:
    with server([Fault.stall(30.0)]) as srv:
        result = invoke(["ask", "Q", "-c", str(doc), "--max-seconds", "0.5", "--json",
                         *model_args(srv)])
    assert result.exit_code == ExitCode.LIMIT
    assert json.loads(result.stdout)["stop_reason"] == "timeout"


def test_provider_failure_exits_with_the_provider_code(doc: Path) -> None:
    with server([Fault.http_status(401, "bad key")]) as srv:
        result = invoke(["ask", "Q", "-c", str(doc), *model_args(srv)])
    assert result.exit_code == ExitCode.PROVIDER
    assert "AuthenticationError" in result.stderr


def test_a_retry_is_shown_in_the_progress_as_it_happens(doc: Path) -> None:
    # the case: six attempts went by with nothing on screen until the run ended
    with server([Fault.server_error(), SIMPLE_FINAL]) as srv:
        result = invoke(["ask", "Q", "-c", str(doc), *model_args(srv)])
    assert result.exit_code == ExitCode.OK
    progress = result.stderr
    retry = progress.index(f"warning: root call to openai/{ROOT} failed (attempt 1), retrying in")
    assert "HTTP 500" in progress[retry:].splitlines()[0]
    assert retry < progress.index("final · 1 iteration(s)")


def test_an_iteration_whose_model_call_failed_is_not_counted_as_answered(doc: Path) -> None:
    # the iteration started (the progress said "iteration 1/30") but its model call failed:
    # the summary said "0 iteration(s)" with no word of the one that got no answer
    with server([Fault.http_status(401, "bad key")]) as srv:
        result = invoke(["ask", "Q", "-c", str(doc), *model_args(srv)])
    assert "error · 0 iteration(s) (1 more started: no answer) · " in result.stderr


def test_sandbox_failure_exits_with_the_sandbox_code(
    doc: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastrlm import SandboxUnavailableError
    from fastrlm._core import run_loop as _run

    def unavailable(kind: str, limits: object) -> None:
        raise SandboxUnavailableError(f"{kind}: not on this machine")

    monkeypatch.setattr(_run, "make_sandbox", unavailable)
    with server([SIMPLE_FINAL]) as srv:
        result = invoke(["ask", "Q", "-c", str(doc), "--sandbox", "bwrap", *model_args(srv)])
    assert result.exit_code == ExitCode.SANDBOX
    assert "not on this machine" in result.stderr


def _preparing_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "fastrlm-prepare-run"]


@pytest.mark.parametrize("command", ["ask", "chat"])
def test_the_client_and_the_sandbox_probe_are_prepared_while_the_context_loads(
    doc: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    """What the run needs first and does not depend on the context (the HTTP client's
    imports, the sandbox layer probe) overlaps the load, in ``ask`` and ``chat`` alike: here
    the load waits until both are done, which a command that did them after the load would
    never see."""
    import fastrlm.context
    import fastrlm.lm
    import fastrlm.sandbox

    real_load, real_import = fastrlm.context.load_context, fastrlm.lm.import_provider
    real_plans = fastrlm.sandbox.plans_for
    imported, probed = threading.Event(), threading.Event()
    preparers: set[str] = set()

    def importing(spec: str) -> None:
        preparers.add(threading.current_thread().name)
        real_import(spec)
        imported.set()

    loaded = threading.Event()

    def probing(kind: str) -> Any:
        if not loaded.is_set():  # the run's own probe, after the load, is its business
            preparers.add(threading.current_thread().name)
            probed.set()
        return real_plans(kind)

    def loading(*args: Any, **kwargs: Any) -> Any:
        assert imported.wait(timeout=20) and probed.wait(timeout=20)
        try:
            return real_load(*args, **kwargs)
        finally:
            loaded.set()

    monkeypatch.setattr(fastrlm.lm, "import_provider", importing)
    monkeypatch.setattr(fastrlm.sandbox, "plans_for", probing)
    monkeypatch.setattr(fastrlm.context, "load_context", loading)
    asked = ["ask", "Q"] if command == "ask" else ["chat", "-q"]
    with server([SIMPLE_FINAL]) as srv:
        result = invoke([*asked, "-c", str(doc), "--sandbox", "process", *model_args(srv)],
                        input=None if command == "ask" else "Q\n")
    assert result.exit_code == ExitCode.OK, result.stderr
    assert "forty-two" in result.stdout
    assert preparers == {"fastrlm-prepare-run"}
    assert _preparing_threads() == []  # joined before the run: it never outlives the command


def test_a_sandbox_that_cannot_start_is_reported_by_the_run_once_as_before(
    doc: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe fails in the preparing thread too: nothing of that is shown there, and the
    run's own probe reports it with the sandbox exit code."""
    import fastrlm.sandbox
    from fastrlm import SandboxUnavailableError

    def unavailable(kind: str) -> None:
        raise SandboxUnavailableError(f"sandbox {kind!r}: not on this machine")

    monkeypatch.setattr(fastrlm.sandbox, "plans_for", unavailable)
    with server([SIMPLE_FINAL]) as srv:
        result = invoke(["ask", "Q", "-c", str(doc), "--sandbox", "bwrap", *model_args(srv)])
    assert result.exit_code == ExitCode.SANDBOX
    assert result.stderr.count("not on this machine") == 1
    assert "Traceback" not in result.stderr


def test_a_bad_context_is_reported_before_what_was_prepared_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing file, with a provider module that cannot be imported and a sandbox that
    cannot start: the context's error alone, as when nothing was prepared beside the load."""
    import fastrlm.lm
    import fastrlm.sandbox
    from fastrlm import SandboxUnavailableError

    def missing_extra(spec: str) -> None:
        raise ImportError("No module named 'someprovider'", name="someprovider")

    def unavailable(kind: str) -> None:
        raise SandboxUnavailableError(f"sandbox {kind!r}: not on this machine")

    monkeypatch.setattr(fastrlm.lm, "import_provider", missing_extra)
    monkeypatch.setattr(fastrlm.sandbox, "plans_for", unavailable)
    result = invoke(["ask", "Q", "-c", str(tmp_path / "missing.log"), "-m", "openai/x",
                     "--base-url", "http://127.0.0.1:9/v1"])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "no such file or directory" in result.stderr
    assert "not on this machine" not in result.stderr and "someprovider" not in result.stderr
    assert _preparing_threads() == []


def test_no_model_fails_fast_with_the_three_ways_to_configure_one(doc: Path) -> None:
    result = invoke(["ask", "Q", "-c", str(doc)])
    assert result.exit_code == ExitCode.BAD_INPUT
    for needle in ("OPENAI_API_KEY", "FASTRLM_MODEL=ollama/", "http://localhost:11434/v1",
                   "llama.cpp", "http://localhost:8080/v1", "vLLM", "http://localhost:8000/v1",
                   "ANTHROPIC_API_KEY", "OPENAI_BASE_URL"):
        assert needle in result.stderr
    assert result.stdout == ""


def test_no_model_is_reported_before_the_context_is_read(tmp_path: Path) -> None:
    result = invoke(["ask", "Q", "-c", str(tmp_path / "missing")])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "No model is configured" in result.stderr


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "no such file or directory"),
        ("empty", "context is empty"),
        ("binary", "context is empty"),
        ("glob", "no files match"),
    ],
)
def test_bad_context_is_bad_input(tmp_path: Path, setup: str, message: str) -> None:
    target = tmp_path / "in.txt"
    if setup == "empty":
        target.write_text("")
    elif setup == "binary":
        target.write_bytes(b"\x7fELF\x00\x00\x01")
    elif setup == "glob":
        target = tmp_path / "*.nothing"
    result = invoke(["ask", "Q", "-c", str(target), "-m", "openai/x", "--base-url",
                     "http://127.0.0.1:9/v1"])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert message in result.stderr


def test_no_context_flag_is_bad_input() -> None:
    result = invoke(["ask", "Q", "-m", "openai/x"])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "-c PATH" in result.stderr


def test_binary_files_are_skipped_and_invalid_utf8_replaced_in_a_directory(
    tmp_path: Path,
) -> None:
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01" * 10)
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9 au lait")
    with server([SIMPLE_FINAL]) as srv:
        result = invoke(["ask", "Q", "-c", str(tmp_path), "--json", *model_args(srv)])
    assert result.exit_code == ExitCode.OK
    report = json.loads(result.stdout)["context"]
    assert report["skipped"] == [{"path": f"{tmp_path}/blob.bin", "reason": "binary"}]
    assert report["invalid_utf8"] == [f"{tmp_path}/latin1.txt"]
    assert "skipped 1" in result.stderr and "invalid UTF-8" in result.stderr


def test_a_fifo_in_the_directory_is_skipped_and_the_run_finishes(tmp_path: Path) -> None:
    """``ask -c DIR`` once waited forever on a named pipe in DIR."""
    (tmp_path / "notes.txt").write_text("readable")
    os.mkfifo(tmp_path / "pipe.txt")
    with server([SIMPLE_FINAL]) as srv:
        result = invoke(["ask", "Q", "-c", str(tmp_path), "--json", *model_args(srv)])
    assert result.exit_code == ExitCode.OK, result.stderr
    report = json.loads(result.stdout)["context"]
    assert report["skipped"] == [{"path": f"{tmp_path}/pipe.txt",
                                  "reason": "a named pipe (FIFO): only regular files are read"}]
    assert report["files"] == 1


def test_a_file_over_max_file_mb_is_bad_input_naming_the_flag(tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_text("x" * 2_000_000)
    args = ["ask", "Q", "-c", str(tmp_path / "big.txt"), "-m", "openai/x", "--base-url",
            "http://127.0.0.1:9/v1"]
    result = invoke([*args, "--max-file-mb", "1"])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "over the limit of 1,048,576 bytes a file" in result.stderr
    assert "--max-file-mb raises it" in result.stderr
    # loaded, it goes on to a port where nothing listens: one request, not six with backoffs
    assert "max_file_bytes" not in invoke([*args, "--max-file-mb", "2", "-q",
                                           "--max-requests", "1"]).stderr


def test_stdin_dash_is_the_context() -> None:
    with server([FANOUT]) as srv:
        result = invoke(["ask", "Q", "-c", "-", "--json", *model_args(srv)],
                        input=b"piped text \xff " * 20)
    assert result.exit_code == ExitCode.OK
    payload = json.loads(result.stdout)
    assert payload["context"]["sources"] == ["-"]
    assert payload["context"]["invalid_utf8"] == ["<stdin>"]
    sub_prompts = [r.prompt for r in srv.completion_requests if r.model == SUB]
    # concurrent sub-calls reach the server in any order; the first chunk is among them
    assert any(p.startswith("Summarise: piped text \ufffd") for p in sub_prompts)


def test_trace_full_records_whole_prompts_and_default_only_previews(doc: Path) -> None:
    prompts = {}
    for flag in ([], ["--trace-full"]):
        with server([FANOUT]) as srv:
            result = invoke(["ask", "Q", "-c", str(doc), "--json", *flag, *model_args(srv)])
        trace = read_trace(Path(json.loads(result.stdout)["trace_path"]))
        started = [e for e in trace.events if e["type"] == "subcall.started"]
        prompts[bool(flag)] = {e["prompt"] for e in started}
    assert prompts[False] == {None}
    assert all(p and p.startswith("Summarise: ") for p in prompts[True])


def test_no_trace_writes_nothing(doc: Path, tmp_path: Path) -> None:
    with server([SIMPLE_FINAL]) as srv:
        result = invoke(["ask", "Q", "-c", str(doc), "--no-trace", "--json", *model_args(srv)])
    assert json.loads(result.stdout)["trace_path"] is None


def test_quiet_prints_only_the_answer(doc: Path) -> None:
    with server([SIMPLE_FINAL]) as srv:
        result = invoke(["ask", "Q", "-c", str(doc), "-q", *model_args(srv)])
    assert (result.stdout, result.stderr) == ("forty-two\n", "")


def test_sub_model_defaults_to_the_root_model(doc: Path) -> None:
    with server([FANOUT]) as srv:
        invoke(["ask", "Q", "-c", str(doc), "-q", *model_args(srv, sub=False)])
        assert {r.model for r in srv.completion_requests} == {ROOT}


def test_model_from_environment_and_config_file(
    doc: Path, monkeypatch: pytest.MonkeyPatch, _no_user_config: Path
) -> None:
    with FakeOpenAIServer(default=SIMPLE_FINAL) as srv:
        config = _no_user_config / "fastrlm" / "config.toml"
        config.parent.mkdir(parents=True)
        config.write_text(f'model = "openai/from-file"\nbase_url = "{srv.base_url}"\n')
        invoke(["ask", "Q", "-c", str(doc), "-q"])
        monkeypatch.setenv("FASTRLM_MODEL", "openai/from-env")
        invoke(["ask", "Q", "-c", str(doc), "-q"])
        invoke(["ask", "Q", "-c", str(doc), "-q", "--model", "openai/from-flag"])
        assert [r.model for r in srv.completion_requests] == ["from-file", "from-env",
                                                               "from-flag"]


def test_broken_config_file_is_bad_input(doc: Path, _no_user_config: Path) -> None:
    config = _no_user_config / "fastrlm" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("model = [unclosed")
    result = invoke(["ask", "Q", "-c", str(doc)])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "not valid TOML" in result.stderr


def test_every_worker_limit_flag_reaches_the_sandbox(
    doc: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastrlm._core import run_loop as _run
    from fastrlm.sandbox import SandboxLimits, create_sandbox

    seen: list[SandboxLimits] = []

    def recording(kind: str, limits: SandboxLimits) -> object:
        seen.append(limits)
        return create_sandbox(kind, limits)

    monkeypatch.setattr(_run, "make_sandbox", recording)
    flags = ["--worker-memory-mb", "300", "--scratch-mb", "64", "--max-answer-chars", "5000",
             "--worker-env", "A=1", "--worker-env", "B=x=y", "--sandbox", "none"]
    with server([SIMPLE_FINAL]) as srv:
        result = invoke(["ask", "Q", "-c", str(doc), *flags, *model_args(srv)])
    assert result.exit_code == 0, result.stderr
    (limits,) = seen
    assert limits.memory_bytes == 300 * 2**20 and limits.scratch_bytes == 64 * 2**20
    assert limits.max_answer_chars == 5000
    assert limits.env == (("A", "1"), ("B", "x=y"))


def test_a_worker_env_without_a_name_is_bad_input(doc: Path) -> None:
    result = invoke(["ask", "Q", "-c", str(doc), "--worker-env", "NOEQUALS", "-m", "x"])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "NAME=VALUE" in result.stderr


def test_cache_reuses_sub_call_replies_on_a_rerun(doc: Path, tmp_path: Path) -> None:
    cache = tmp_path / "c" / "subcalls.sqlite"
    args = ["ask", "Where?", "-c", str(doc), "--cache-path", str(cache)]
    with server([FANOUT]) as srv:
        first = invoke([*args, *model_args(srv)])
        sent_first = sum(1 for r in srv.completion_requests if r.model == SUB)
        second = invoke([*args, *model_args(srv)])
        sent_second = sum(1 for r in srv.completion_requests if r.model == SUB) - sent_first
    assert first.exit_code == second.exit_code == ExitCode.OK, second.stderr
    assert sent_first == 3 and sent_second == 0  # every sub-call answered from the cache
    assert first.stdout == second.stdout
    stored = re.search(r"cache: 0 hit\(s\), (\d+) miss\(es\)", first.stderr)
    assert stored is not None and int(stored.group(1)) >= 3  # the sub-calls, at least
    assert f"cache: {stored.group(1)} hit(s), 0 miss(es)" in second.stderr
    assert str(cache) in second.stderr


def test_without_cache_nothing_is_cached_and_a_bad_cache_path_is_refused(
        doc: Path, tmp_path: Path) -> None:
    with server([FANOUT]) as srv:
        plain = invoke(["ask", "Where?", "-c", str(doc), *model_args(srv)])
        again = invoke(["ask", "Where?", "-c", str(doc), *model_args(srv)])
        sent = sum(1 for r in srv.completion_requests if r.model == SUB)
    assert plain.exit_code == again.exit_code == ExitCode.OK and sent == 6
    assert "cache:" not in plain.stderr
    refused = invoke(["ask", "Where?", "-c", str(doc), "--cache-path", str(tmp_path),
                      "--model", "openai/x"])
    assert refused.exit_code == ExitCode.BAD_INPUT and "is a directory" in refused.stderr


@pytest.mark.parametrize(("reason", "budget", "origin", "expected"), [
    ("budget_usd", {"max_usd": 0.5}, {}, "the limit was --max-usd 0.5: raise it"),
    ("timeout", {"max_seconds": 90}, {"max_seconds": "flag"}, "the limit was --max-seconds 90"),
    ("max_iterations", {}, {}, "--max-iterations at its default (30): raise it with"),
    ("budget_requests", {}, {}, "the limit was --max-requests at its default: raise it"),
    ("budget_subcalls", {"max_subcalls": 3}, {"max_subcalls": "/c/config.toml"},
     "max_subcalls = 3 from /c/config.toml: raise it there or with --max-subcalls"),
    ("budget_tokens", {}, {}, "Budget(max_input_tokens=..., max_output_tokens=...)"),
])
def test_a_limit_stop_names_only_the_setting_that_stopped_it(
        reason: str, budget: dict[str, object], origin: dict[str, str], expected: str) -> None:
    from fastrlm.cli._runner import limit_hint

    hint = limit_hint(reason, budget, origin)
    assert expected in hint
    assert hint.count("--max-") <= 2  # its own flag, never the list of all of them


@pytest.mark.parametrize("command", ["ask", "chat"])
def test_the_first_root_request_goes_out_while_a_large_file_is_still_copied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    """``-c big.log``: the command hands the run the loaded context itself, so the root is
    asked while the file's middle is copied. Here the copy is held until the server gets the
    first root request; a command that waited for the copy would never send it."""
    from fastrlm.sandbox import _filecopy
    from fastrlm.testing._fake_server import FakeRequest

    monkeypatch.setattr(_filecopy, "CHUNK", 64 << 10)
    monkeypatch.setattr(_filecopy, "THREADED_MIN", 256 << 10)
    asked = threading.Event()
    real_chunk = _filecopy._copy_chunk

    def held(*args: Any) -> bool:
        if threading.current_thread() is not threading.main_thread():  # the middle's copy
            assert asked.wait(timeout=60)
        return real_chunk(*args)

    monkeypatch.setattr(_filecopy, "_copy_chunk", held)
    text = "".join(f"line {i:07d} of a log long enough to be copied in a thread\n"
                   for i in range(60_000))
    big = tmp_path / "big.log"
    big.write_text(text)

    def root(request: FakeRequest) -> str:
        asked.set()
        return '```repl\nFINAL(str(len(context)) + " " + str(context.count(chr(0))))\n```'

    command_args = ["ask", "Q"] if command == "ask" else ["chat", "-q"]
    with FakeOpenAIServer(handler=root) as srv:
        result = invoke([*command_args, "-c", str(big), "--sandbox", "process",
                         *model_args(srv, sub=False)],
                        input=None if command == "ask" else "Q\n")
    assert result.exit_code == ExitCode.OK, result.stderr
    assert f"{len(text)} 0" in result.stdout
