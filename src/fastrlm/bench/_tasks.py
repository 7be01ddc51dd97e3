"""The task registry: names the CLI accepts, and real-data variants chosen by ``--data``."""

from __future__ import annotations

from pathlib import Path

from .. import ConfigurationError
from . import _adapters, _browsecomp, _codeqa, _oolong, _pairs, _sniah
from ._instance import SimpleTask, Task

TASKS: dict[str, SimpleTask] = {
    t.name: t
    for t in (
        _sniah.TASK,
        _oolong.TASK,
        _oolong.LABELLED_TASK,
        _pairs.TASK,
        _browsecomp.TASK,
        _codeqa.TASK,
    )
}


def get_task(name: str, data: str | Path | None = None, corpus: str | Path | None = None) -> Task:
    """The generated task ``name``, or with ``data`` its real-data adapter (``corpus`` is the
    BrowseComp-Plus document collection). Raises :class:`ConfigurationError` for an unknown
    name or a task without an adapter."""
    if name not in TASKS:
        raise ConfigurationError(f"unknown task {name!r}; expected one of {', '.join(TASKS)}")
    if data is None:
        return TASKS[name]
    if name == "oolong":
        return _adapters.oolong_synth(data)
    if name == "oolong-pairs":
        return _adapters.oolong_pairs_real(data)
    if name == "codeqa":
        return _adapters.longbench_codeqa(data)
    if name == "sniah":
        return _adapters.ruler_niah(data)
    if name == "browsecomp":
        if corpus is None:
            raise ConfigurationError("browsecomp with --data also needs --corpus (the documents)")
        return _adapters.browsecomp_plus(data, corpus)
    raise ConfigurationError(f"task {name!r} has no real-data adapter; drop --data")
