"""The job and result line formats: checks with clear errors, stable ids, a results file that is
valid JSONL after a crash, and resume reading."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from fastrlm.jobs import Job, JobError, JobResult, ResultsFile, _jobs, read_jobs


def write(path: Path, *lines: object) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def test_jobs_read_with_paths_taken_from_the_jobs_folder(tmp_path: Path) -> None:
    path = write(tmp_path / "jobs.jsonl", "# a comment", "",
                 {"id": 7, "question": "q", "context_path": "docs/*.txt"},
                 {"question": "q2", "context": ["a", "b"], "budget": {"max_iterations": 3}})
    first, second = read_jobs(path)
    assert first.id == "7" and first.context_paths == (str(tmp_path / "docs/*.txt"),)
    assert second.context == ["a", "b"] and second.budget == {"max_iterations": 3}
    assert second.id.startswith("job-") and read_jobs(path)[1].id == second.id  # stable digest


@pytest.mark.parametrize(("line", "message"), [
    ("not json", "jobs.jsonl:1: not JSON"),
    ({"context": "x"}, "'question' must be a non-empty string"),
    ({"question": "q"}, "give exactly one of 'context'"),
    ({"question": "q", "context": "x", "context_path": "y"}, "give exactly one of 'context'"),
    ({"question": "q", "context": 3}, "'context' must be a string or a list"),
    ({"questoin": "q", "context": "x"}, "unknown key 'questoin': did you mean 'question'?"),
    ({"question": "q", "context_paths": ["x"]}, "did you mean 'context_path'?"),
    ({"question": "q", "context": "x", "Model": "m"}, "did you mean 'model'?"),
    ({"question": "q", "context": "x", "metadata": [1]}, "'metadata' must be an object"),
    ({"question": "q", "context": "x", "budget": {"max_usd": -1}}, "Budget.max_usd must be"),
    ({"question": "q", "context": "x", "budget": {"max_dollars": 1}}, "unknown budget field"),
    ({"question": "q", "context_path": "-"}, "cannot be '-'"),
    ({"question": "q", "context": "x", "id": True}, "'id' must be"),
    ([1, 2], "a job must be a JSON object"),
])
def test_a_bad_job_line_names_its_line_and_the_fix(
    tmp_path: Path, line: object, message: str
) -> None:
    path = write(tmp_path / "jobs.jsonl", line)
    with pytest.raises(JobError) as info:
        read_jobs(path)
    assert message in str(info.value) and "jobs.jsonl:1" in str(info.value)


@pytest.mark.parametrize("key", ["question_id", "context_id", "context_len", "model_name",
                                 "mode", "ids", "label", "gold", "meta"])
def test_eval_set_fields_near_a_known_key_are_the_lines_own(tmp_path: Path, key: str) -> None:
    # a known key with a word added is a field of the user's, not a typo of the known key
    path = write(tmp_path / "jobs.jsonl", {"question": "q", "context": "x", key: 7})
    [job] = read_jobs(path)
    assert job.metadata == {key: 7} and job.question == "q"


@pytest.mark.parametrize(("key", "meant"), [
    ("quesiton", "question"), ("qestion", "question"), ("submodel", "sub_model"),
    ("sub-model", "sub_model"), ("modle", "model"), ("ID", "id"), ("metdata", "metadata"),
    ("contxt", "context"), ("context_pth", "context_path"),
])
def test_typos_of_known_keys_are_refused_with_the_key_meant(key: str, meant: str) -> None:
    assert _jobs.misspelling(key) == meant


def test_an_id_used_twice_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "jobs.jsonl", {"id": "a", "question": "q", "context": "x"},
                 {"id": "a", "question": "r", "context": "y"})
    with pytest.raises(JobError, match="'a' is used twice"):
        read_jobs(path)


def test_the_results_file_drops_a_torn_line_and_resumes(tmp_path: Path) -> None:
    path = tmp_path / "out" / "results.jsonl"
    results = ResultsFile(path)
    assert results.finished() == {}
    results.open()
    results.write(JobResult("a", answer="1", stop_reason="final"))
    results.write(JobResult("b", error="boom", error_kind="provider"))
    results.close()
    with path.open("a") as fh:
        fh.write('{"id": "c", "answ')  # killed mid-write
    assert set(ResultsFile(path).finished()) == {"a", "b"}
    assert set(ResultsFile(path).finished(rerun_errors=True)) == {"a"}
    again = ResultsFile(path)
    again.open()
    again.write(JobResult("c", answer="3", stop_reason="final"))
    again.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["id"] for line in lines] == ["a", "b", "c"]


def test_a_whole_last_line_without_its_newline_is_kept_on_resume(tmp_path: Path) -> None:
    # a results file whose last line lost its newline (edited by hand, copied) still holds a
    # whole result: resume counts it and the next append keeps it, on its own line
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(JobResult("a", answer="1", stop_reason="final").to_dict()) + "\n"
                    + json.dumps(JobResult("b", answer="2", stop_reason="final").to_dict()))
    assert set(ResultsFile(path).finished()) == {"a", "b"}
    again = ResultsFile(path)
    again.open()
    again.write(JobResult("c", answer="3", stop_reason="final"))
    again.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["id"] for line in lines] == ["a", "b", "c"]


def test_a_result_line_round_trips() -> None:
    result = JobResult("x", answer="a", stop_reason="final", cost_usd=0.5, attempts=2,
                       output={"k": 1})
    assert JobResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result


def test_job_objects_are_checked_too() -> None:
    with pytest.raises(JobError, match="give exactly one"):
        Job("x", "q")




@pytest.mark.parametrize("line", ['{"question": "q", "context": ' + "9" * 5000 + "}",
                                  '{"question": "q", "context": ' + "[" * 100_000 + "]" * 100_000
                                  + "}"], ids=["digits", "deep"])
def test_a_job_line_json_cannot_read_is_a_job_error_naming_its_line(
        tmp_path: Path, line: str) -> None:
    # a number past Python's digit limit raised a plain ValueError; too deep, a RecursionError
    path = tmp_path / "jobs.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(JobError, match=r"jobs\.jsonl:1: not JSON"):
        read_jobs(path)


def test_a_device_as_the_jobs_file_is_refused_before_anything_is_read() -> None:
    # /dev/zero as the jobs file once read until memory ran out
    with pytest.raises(JobError, match="not a file or a pipe"):
        read_jobs(Path("/dev/zero"))


def test_a_jobs_file_past_the_limit_is_refused_naming_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_jobs, "MAX_JOBS_FILE_BYTES", 100)
    big = tmp_path / "big.jsonl"
    with big.open("wb") as file:  # sparse: its size says it all, nothing needs reading
        file.truncate(1 << 30)
    with pytest.raises(JobError, match=r"over the limit of 100 bytes a jobs file: split it"):
        read_jobs(big)
    fifo = tmp_path / "jobs.fifo"
    os.mkfifo(fifo)
    line = json.dumps({"id": "a", "question": "q", "context": "c"}) + "\n"

    def feed(text: str) -> None:
        with fifo.open("w") as pipe:
            pipe.write(text)

    writer = threading.Thread(target=feed, args=(line,))
    writer.start()
    assert [job.id for job in read_jobs(fifo)] == ["a"]  # a pipe (`<(gen)`) is read
    writer.join()
    writer = threading.Thread(target=feed, args=(line * 10,))
    writer.start()
    with pytest.raises(JobError, match="over the limit of 100 bytes"):
        read_jobs(fifo)
    writer.join()
