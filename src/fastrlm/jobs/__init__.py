"""Many jobs (a question over a context each): ``fastrlm batch`` and :func:`fastrlm.batch`,
and the resumable JSONL runner that ``fastrlm bench`` shares.

``_runner`` the runner: the results file (:class:`ResultsLog`), the backend protocol,
:class:`LocalBackend` and the driver loop :func:`drive`; ``_ray`` its Ray backend (imports ray
lazily). For a batch: ``_jobs`` the job and result line formats (a job's ``schema`` is the
engine's typed answer, ``completion(output=...)``); ``_budget`` the batch's dollar total and
summary; ``_limiter`` the per-provider slot pools and :class:`LimitedLM`; ``_run`` one job on
either backend; ``_batch`` :func:`batch` and the batch's policy (:class:`Batch`).
"""

from ._batch import Batch, batch
from ._budget import BatchSummary
from ._jobs import Job, JobError, JobResult, ResultsFile, read_jobs
from ._ray import RayBackend
from ._runner import Backend, Finished, LocalBackend, ResultsLog, drive

__all__ = [
    "Backend",
    "Batch",
    "BatchSummary",
    "Finished",
    "Job",
    "JobError",
    "JobResult",
    "LocalBackend",
    "RayBackend",
    "ResultsFile",
    "ResultsLog",
    "batch",
    "drive",
    "read_jobs",
]
