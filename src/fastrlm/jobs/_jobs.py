"""Jobs and their results: the JSONL line formats, reading jobs, and the resumable results file.

A job line (``JOBS.jsonl``, one JSON object a line; blank lines and ``#`` comments skipped)::

    {"id": "c-17", "question": "Who signs?", "context_path": "contracts/17.pdf"}
    {"question": "Any late fees?", "context": "inline text", "model": "openai/gpt-5-mini",
     "budget": {"max_usd": 0.05}, "schema": {"type": "object", "required": ["fee"]}}

``question`` is required; the context is ``context`` (inline text, or a list of documents) or
``context_path`` (a path, directory, glob or ``.jsonl`` file, or a list of them: whatever
``fastrlm ask -c`` loads; relative paths are taken from the jobs file's folder). ``id`` defaults
to a digest of the line, so a re-run of an unchanged file finds the same ids. ``model`` /
``sub_model`` / ``budget`` override the batch's settings for this job; ``schema`` asks for a
JSON answer of that shape (the engine's typed answer, ``completion(output=schema)``: the model
is told the schema and a mismatch goes back to it). Any other key (an expected answer, a label)
is the job's metadata: it is not sent to the model and comes back in the result line under
``metadata``, with the keys of a ``metadata`` object if the line has one. A key that looks like
a misspelling of a known one (``questoin``, ``context_paths``) is refused with the key meant.

A result line has the job's ``id`` and what the run ended with (:meth:`JobResult.to_dict`). The
results file is the runner's :class:`~fastrlm.jobs._runner.ResultsLog`: appended one whole line
at a time and flushed, so it is valid JSONL whenever it is read.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._foundation.budget import BUDGET_KEYS, Budget
from .._foundation.errors import ConfigurationError, InvalidSettingError
from .._foundation.validate import first_repeat
from ._runner import ResultsLog

JOB_KEYS = frozenset(
    {"id", "question", "context", "context_path", "model", "sub_model", "budget", "schema",
     "metadata"}
)
#: Typos (one letter added, dropped, changed, or two swapped) a key may differ from a known
#: key by and still be taken for its misspelling; a known key of up to ``SHORT_KEY`` letters
#: only by a changed or swapped letter (``modle``; ``mode`` is a key of its own), and ``id``
#: only by case. A known key with a word added (``question_id``, ``context_len``) is a key of
#: its own: eval sets carry such fields.
MISSPELLING_EDITS = 2
SHORT_KEY = 5


def misspelling(key: str) -> str | None:
    """The known job key ``key`` looks like a misspelling of, else None (a key of its own)."""
    folded = key.strip().lower().replace("-", "_")
    if folded in JOB_KEYS:
        return folded  # `Question`, `context-path`
    for known in sorted(JOB_KEYS, key=lambda k: (_edits(folded, k), k)):
        if len(known) < 3:
            continue
        edits = _edits(folded, known)
        if len(known) <= SHORT_KEY:
            if edits == 1 and len(folded) == len(known):
                return known
        elif edits <= MISSPELLING_EDITS:
            return known
    return None


def _edits(a: str, b: str) -> int:
    """Letters added, dropped or changed, and neighbours swapped, to turn ``a`` into ``b``
    (the optimal string alignment distance)."""
    if abs(len(a) - len(b)) > MISSPELLING_EDITS:
        return MISSPELLING_EDITS + 1
    rows = [list(range(len(b) + 1))]
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            row[j] = min(rows[i - 1][j] + 1, row[j - 1] + 1,
                         rows[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], rows[i - 2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]


class JobError(ConfigurationError):
    """A job line (or a ``Job`` given to :func:`fastrlm.batch`) is not a valid job."""


@dataclass(frozen=True, slots=True)
class Job:
    """One question over one context. ``context`` is inline (a str or a list of documents);
    ``context_paths`` are loaded where the job runs (files, directories, globs, JSONL)."""

    id: str
    question: str
    context: str | list[str] | None = None
    context_paths: tuple[str, ...] = ()
    model: str | None = None
    sub_model: str | None = None
    budget: Mapping[str, Any] = field(default_factory=dict)
    schema: Mapping[str, Any] | None = None
    #: The line's other keys, passed through to its result line untouched.
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"job {self.id!r}"
        if not isinstance(self.question, str) or not self.question.strip():
            raise JobError(f"{where}: 'question' must be a non-empty string")
        if (self.context is None) == (not self.context_paths):
            raise JobError(f"{where}: give exactly one of 'context' (inline text or a list of "
                           "documents) and 'context_path' (a path, glob or list of them)")
        if self.context is not None and not (
            isinstance(self.context, str)
            or (isinstance(self.context, list) and all(isinstance(d, str) for d in self.context))
        ):
            raise JobError(f"{where}: 'context' must be a string or a list of strings")
        for name in ("model", "sub_model"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise JobError(f"{where}: {name!r} must be a model string like openai/gpt-5-mini")
        if not isinstance(self.budget, Mapping):
            raise JobError(f"{where}: 'budget' must be an object of Budget fields")
        unknown = sorted(set(self.budget) - set(BUDGET_KEYS))
        if unknown:
            raise JobError(f"{where}: unknown budget field(s) {', '.join(unknown)} "
                           f"(known: {', '.join(BUDGET_KEYS)})")
        try:
            Budget(**self.budget)
        except (InvalidSettingError, TypeError) as exc:
            raise JobError(f"{where}: budget: {exc}") from exc
        if self.schema is not None and not isinstance(self.schema, Mapping):
            raise JobError(f"{where}: 'schema' must be a JSON schema object")
        if not isinstance(self.metadata, Mapping) or not all(
                isinstance(k, str) for k in self.metadata):
            raise JobError(f"{where}: 'metadata' must be an object (string keys)")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, base: Path | None = None,
                  where: str = "job") -> Job:
        """A job from its JSON object; relative ``context_path`` entries are taken from
        ``base``. Raises :class:`JobError` naming ``where`` and what is wrong."""
        if not isinstance(data, Mapping):
            raise JobError(f"{where}: a job must be a JSON object, not {type(data).__name__}")
        extra = {k: v for k, v in data.items() if k not in JOB_KEYS}
        for key in extra:
            meant = misspelling(str(key))
            if meant is not None:
                raise JobError(f"{where}: unknown key {key!r}: did you mean {meant!r}? (a key "
                               "of your own, passed through to the result, must not look "
                               f"like one of {', '.join(sorted(JOB_KEYS))})")
        metadata = data.get("metadata")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise JobError(f"{where}: 'metadata' must be an object, not "
                           f"{type(metadata).__name__}")
        metadata = {**(metadata or {}), **extra}
        job_id = data.get("id")
        if job_id is None:
            job_id = "job-" + hashlib.sha256(
                json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:12]
        elif not isinstance(job_id, (str, int)) or isinstance(job_id, bool) or not str(job_id):
            raise JobError(f"{where}: 'id' must be a non-empty string or an integer")
        raw_paths = data.get("context_path")
        paths: tuple[str, ...] = ()
        if raw_paths is not None:
            items = [raw_paths] if isinstance(raw_paths, str) else raw_paths
            if not isinstance(items, list) or not items or not all(
                    isinstance(p, str) and p for p in items):
                raise JobError(f"{where}: 'context_path' must be a path or a list of paths")
            if "-" in items:
                raise JobError(f"{where}: 'context_path' cannot be '-' (stdin) in a batch")
            paths = tuple(_resolve_path(p, base) for p in items)
        try:
            return cls(
                id=str(job_id),
                question=data.get("question"),  # type: ignore[arg-type]  # checked in __post_init__
                context=data.get("context"),
                context_paths=paths,
                model=data.get("model"),
                sub_model=data.get("sub_model"),
                budget=data["budget"] if data.get("budget") is not None else {},
                schema=data.get("schema"),
                metadata=metadata,
            )
        except JobError as exc:
            raise JobError(f"{where}: {exc}") from None


def _resolve_path(spec: str, base: Path | None) -> str:
    expanded = os.path.expanduser(spec)
    if base is None or os.path.isabs(expanded):
        return expanded
    return str(base / expanded)


#: The largest jobs file read (a regular file is refused before it is read, a pipe once it
#: passes this): a jobs file is a list of questions, with contexts inline or by path.
MAX_JOBS_FILE_BYTES = 1024 * 1024 * 1024


def read_jobs(path: Path) -> list[Job]:
    """Every job of a JSONL file (a regular file, or a pipe such as ``<(generate)``), checked.
    Raises :class:`JobError` with the line number for a line that is not JSON or not a valid
    job, for an id used twice, and for a file that is neither a file nor a pipe (a device such
    as ``/dev/zero``) or past :data:`MAX_JOBS_FILE_BYTES`."""
    try:
        text = _read_bounded(path).decode("utf-8")
    except OSError as exc:
        raise JobError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise JobError(f"{path} is not UTF-8 text: {exc}") from exc
    jobs: list[Job] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path}:{number}"
        try:
            data = json.loads(line)
        except (ValueError, RecursionError) as exc:  # a number past int's limit, too deep
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)[:200]
            raise JobError(f"{where}: not JSON ({reason}); each line must be one job object"
                           ) from exc
        jobs.append(Job.from_dict(data, base=path.parent, where=where))
    check_unique(jobs)
    return jobs


def _read_bounded(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not (stat.S_ISREG(info.st_mode) or stat.S_ISFIFO(info.st_mode)):
            raise JobError(f"{path} is not a file or a pipe: give a JSONL file of jobs")
        if stat.S_ISREG(info.st_mode) and info.st_size > MAX_JOBS_FILE_BYTES:
            raise JobError(_too_big(path, info.st_size))
        data = file.read(MAX_JOBS_FILE_BYTES + 1)
    if len(data) > MAX_JOBS_FILE_BYTES:
        raise JobError(_too_big(path, len(data)))
    return data


def _too_big(path: Path, size: int) -> str:
    return (f"{path} holds {size:,}+ bytes, over the limit of {MAX_JOBS_FILE_BYTES:,} bytes a "
            "jobs file: split it into several files, or give large contexts by context_path")


def check_unique(jobs: Iterable[Job]) -> None:
    repeated = first_repeat(job.id for job in jobs)
    if repeated is not None:
        raise JobError(f"job id {repeated!r} is used twice; ids must be unique (they are how a "
                       "re-run finds finished jobs)")


@dataclass(frozen=True, slots=True)
class JobResult:
    """How one job ended: one line of the results file.

    ``stop_reason`` is the run's (``final``, a limit, ``error``) or ``error`` for a job that
    could not run (bad context, a crash); ``error_kind`` then says which (``provider``,
    ``sandbox``, ``context``, ``schema``, ``config``, ``crash``, ``lost``). ``cost_usd`` is the
    job's own ledger total, summed over the attempts that returned; ``lost_usd`` estimates what
    attempts lost with their worker spent (Ray). ``attempts`` counts runs of the job.
    ``output`` is the parsed JSON answer when the job gave a ``schema``; ``metadata`` the job
    line's own keys (:attr:`Job.metadata`), written only when there are some.

    ``stop_reason`` ``cancelled`` (``error_kind`` ``cancelled``) records a job running when the
    batch was interrupted: what it had spent (metered call by call) is its ``cost_usd``, and a
    re-run runs it again (:meth:`ResultsFile.finished` does not count it as done).
    """

    id: str
    answer: str = ""
    stop_reason: str = "error"
    partial: bool = False
    cost_usd: float = 0.0
    usage: Mapping[str, Any] = field(default_factory=dict)
    iterations: int = 0
    subcalls: int = 0
    requests: int = 0
    limited_by: str | None = None
    trace_id: str | None = None
    trace_path: str | None = None
    duration_s: float = 0.0
    error: str | None = None
    error_kind: str | None = None
    attempts: int = 1
    lost_usd: float = 0.0
    output: Any = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """The job ran to an answer (maybe partial: a limit stopped it); not an error line."""
        return self.stop_reason != "error" and self.error_kind is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "answer": self.answer,
            "stop_reason": self.stop_reason,
            "partial": self.partial,
            "cost_usd": round(self.cost_usd, 8),
            "usage": dict(self.usage),
            "iterations": self.iterations,
            "subcalls": self.subcalls,
            "requests": self.requests,
            "limited_by": self.limited_by,
            "trace_id": self.trace_id,
            "trace_path": self.trace_path,
            "duration_s": round(self.duration_s, 4),
            "error": self.error,
            "error_kind": self.error_kind,
            "attempts": self.attempts,
            "lost_usd": round(self.lost_usd, 8),
            "output": self.output,
            **({"metadata": dict(self.metadata)} if self.metadata else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobResult:
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        return cls(**known)


#: ``stop_reason`` and ``error_kind`` of a job the batch was interrupted in the middle of.
CANCELLED = "cancelled"


def interrupted(job_id: str, spent_usd: float, attempts: int) -> JobResult:
    """The record of a job running when its batch was interrupted (Ctrl-C, cancellation)."""
    return JobResult(job_id, stop_reason=CANCELLED, error_kind=CANCELLED, cost_usd=spent_usd,
                     attempts=attempts, error="interrupted while running; what it had spent is "
                     "cost_usd (metered per call); a re-run runs it again")


class ResultsFile(ResultsLog):
    """The results JSONL of a batch: what is already there (for resume) and appending whole
    result lines (:class:`~fastrlm.jobs._runner.ResultsLog`)."""

    def finished(self, *, rerun_errors: bool = False) -> dict[str, JobResult]:
        """The last result line of each id already in the file (with ``rerun_errors``, only
        those without an error). Lines that are not result objects are ignored, and so are
        the records of jobs an interrupted batch left running (``cancelled``): they run
        again."""
        done: dict[str, JobResult] = {}
        for data in self.records():
            if not isinstance(data, dict) or not isinstance(data.get("id"), str):
                continue
            try:
                result = JobResult.from_dict(data)
            except TypeError:
                continue
            if result.stop_reason == CANCELLED:
                continue
            done[result.id] = result
        if rerun_errors:
            done = {k: r for k, r in done.items() if r.ok}
        return done

    def write(self, result: JobResult) -> None:
        """Append ``result``'s line and flush it."""
        self.append(result.to_dict())
