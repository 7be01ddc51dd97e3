"""Many jobs (a question over a context each): ``fastrlm batch`` and :func:`fastrlm.batch`.

``_jobs`` the job and result line formats and the resumable results file (a job's ``schema``
is the engine's typed answer, ``completion(output=...)``); ``_budget`` the batch's dollar
total and summary; ``_limiter`` the per-provider slot pools and :class:`LimitedLM`; ``_run``
one job and the driver loop (local backend); ``_ray`` the Ray backend (imports ray lazily).
"""

from ._budget import BatchSummary
from ._jobs import Job, JobError, JobResult, ResultsFile, read_jobs
from ._run import Batch, batch

__all__ = ["Batch", "BatchSummary", "Job", "JobError", "JobResult", "ResultsFile", "batch",
           "read_jobs"]
