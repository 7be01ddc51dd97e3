"""Benchmarks of the RLM paper, generated offline with exact golds, and the baselines to compare.

Tasks (``get_task(name)``; generators are pure functions of ``(seed, length, index)``):
``sniah``, ``oolong``, ``oolong-labelled``, ``oolong-pairs``, ``browsecomp``, ``codeqa``. Real data
sets load from local paths (``get_task(name, data=...)``). Methods, each usable on its own with
``await method.run(question, context)``: :class:`RLMMethod` (``rlm``, ``rlm-no-subcalls``),
:class:`BaseModel` (``base``; ``base-truncated``), :class:`SummaryAgent`, :class:`CodeActBM25`
(``codeact``: BM25 on BrowseComp only, as the paper; ``codeact-bm25``: everywhere),
:class:`SimpleRLM`; and two controls in every table: ``shortcut`` (the strongest model-free
program per task) and ``oracle`` (the rlm method with a root writing the right program and a
sub-model knowing the hidden truth). Scorers: ``fastrlm.bench._score``; token counts:
``fastrlm.bench._tokens``.
:func:`run_bench` runs a task over methods (what ``fastrlm bench`` calls). See
docs/paper-benchmarks.md (performance benchmarks are elsewhere: ``benchmarks/``,
docs/performance.md).
"""

from ._baselines import BaseModel, SimpleRLM, SummaryAgent
from ._codeact import BM25Index, CodeActBM25
from ._config import METHODS, BenchConfig, make_method
from ._instance import Instance, Task, rng_for
from ._meter import Meter, MethodResult
from ._report import format_table, plot, summarize
from ._rlm_method import RLMMethod
from ._runner import load_results, run_bench
from ._tasks import TASKS, get_task

__all__ = [
    "METHODS",
    "TASKS",
    "BM25Index",
    "BaseModel",
    "BenchConfig",
    "CodeActBM25",
    "Instance",
    "Meter",
    "MethodResult",
    "RLMMethod",
    "SimpleRLM",
    "SummaryAgent",
    "Task",
    "format_table",
    "get_task",
    "load_results",
    "make_method",
    "plot",
    "rng_for",
    "run_bench",
    "summarize",
]
