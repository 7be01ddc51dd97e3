"""Benchmarks of the RLM paper: the real data sets scored as their official code scores them,
offline generators for plumbing and scale, and the methods of the paper's Table 1 (v3).

Tasks (``get_task(name)``): ``sniah``, ``oolong``, ``oolong-labelled``, ``oolong-pairs``,
``browsecomp``, ``codeqa``. ``get_task(name, data=...)`` loads a real data set from local files
(RULER, oolong-synth, BrowseComp-Plus, LongBench-v2); without ``data`` the task is generated
(a pure function of ``(seed, length, index)``), which a program knowing the generator solves.
Methods, each usable on its own with ``await method.run(question, context)``:
:class:`RLMMethod` (``rlm`` and ``rlm-depth-2``/``-3``, ``rlm-no-subcalls``), :class:`BaseModel`
(``base``; ``base-truncated``), :class:`SelfConsistency` (``base-sc``, at the RLM's cost),
:class:`SummaryAgent`, :class:`CodeActBM25` (``codeact``, ``codeact-bm25``,
``codeact-subcalls``), :class:`WorkspaceAgent` (``coding-agent``), :class:`SimpleRLM`; and two
controls, ``shortcut`` (one label-blind program per task) and ``oracle`` (the rlm method with a
root writing the right program and a sub-model knowing the hidden truth; N/A on real data).
Scorers: ``fastrlm.bench._score``; the BrowseComp-Plus judge: ``fastrlm.bench._judge``.
:func:`run_bench` runs a task over methods (what ``fastrlm bench`` calls); :func:`format_grid`
prints Table 1's shape. See docs/paper-benchmarks.md (performance benchmarks are elsewhere:
``benchmarks/``, docs/performance.md).
"""

from ._baselines import BaseModel, SimpleRLM, SummaryAgent
from ._codeact import BM25Index, CodeActBM25
from ._config import METHODS, BenchConfig, make_method
from ._consistency import SelfConsistency
from ._grid import format_grid
from ._instance import Instance, Task, rng_for
from ._meter import Meter, MethodResult
from ._report import format_table, plot, summarize
from ._rlm_method import RLMMethod
from ._runner import load_results, run_bench
from ._tasks import TASKS, get_task
from ._workspace_agent import WorkspaceAgent

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
    "SelfConsistency",
    "SimpleRLM",
    "SummaryAgent",
    "Task",
    "WorkspaceAgent",
    "format_grid",
    "format_table",
    "get_task",
    "load_results",
    "make_method",
    "plot",
    "rng_for",
    "run_bench",
    "summarize",
]
