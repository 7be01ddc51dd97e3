"""The tools ``fastrlm mcp`` offers, as plain async methods (the MCP wiring is in ``_app``).

Runs: ``ask``. Handles: ``load``, ``handles``, ``drop``. Model-free reads of a handle (no
provider is called, nothing is spent): ``grep``, ``read``, ``stats`` (:mod:`._browse`). The
server: ``status``, ``runs``, ``trace``.

:class:`RLMTools` holds one :class:`~fastrlm.RLM` built at start, the :class:`Roots` clients may
read, the server's :class:`~fastrlm.Budget` (a call may only lower it) and the loaded contexts
(:class:`ContextHandles`, least recently used dropped past ``max_handles``). Refusals raise
:class:`~fastrlm.mcp._policy.ToolRefusal`; a run that fails raises the engine's typed error.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .._core.facade import RLM
from .._foundation.budget import BUDGET_KEYS, Budget
from .._foundation.errors import ConfigurationError, ContextError, RLMError
from .._foundation.events import Event, progress_line
from .._foundation.result import RLMResult
from ..context import LoadedContext, LoadLimits, load_context
from ..trace import (
    IndexUnusableError,
    TraceNotFoundError,
    index_path,
    list_runs,
    read_trace,
    render_transcript,
    resolve_run,
)
from . import _browse
from ._browse import Document
from ._policy import Roots, ToolRefusal, lowered_budget

#: ``await progress(step, message)``: one MCP progress notification.
Progress = Callable[[float, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Handle:
    """A context loaded by ``rlm_load``: what it was built from and what it holds."""

    id: str
    paths: tuple[str, ...]
    loaded: LoadedContext
    docs: tuple[Document, ...]

    def describe(self) -> dict[str, Any]:
        report = self.loaded.report
        return {"handle": self.id, "paths": list(self.paths), "summary": report.summary(),
                "chars": report.chars, "files": report.files, "documents": report.documents,
                "skipped": [asdict(s) for s in report.skipped]}

    def brief(self) -> dict[str, Any]:
        """What ``rlm_handles`` lists: the handle, its paths and sizes."""
        report = self.loaded.report
        return {"handle": self.id, "paths": list(self.paths), "files": report.files,
                "documents": report.documents, "chars": report.chars}


class ContextHandles:
    """At most ``limit`` loaded contexts; using one makes it the newest, loading past the limit
    drops the least recently used (its memory is freed once no run holds it)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("--max-handles must be at least 1")
        self.limit = limit
        self._items: OrderedDict[str, Handle] = OrderedDict()

    def add(self, paths: Sequence[str], loaded: LoadedContext) -> Handle:
        source = paths[0] if len(paths) == 1 else "context"
        handle = Handle("ctx-" + secrets.token_hex(6), tuple(paths), loaded,
                        tuple(_browse.documents(loaded.value, source)))
        self._items[handle.id] = handle
        while len(self._items) > self.limit:
            self._items.popitem(last=False)
        return handle

    def get(self, handle_id: str) -> Handle:
        handle = self._items.get(handle_id)
        if handle is None:
            raise ToolRefusal(f"unknown handle {handle_id!r}: it was never made or was dropped "
                              f"(the server keeps the last {self.limit}); call rlm_load again")
        self._items.move_to_end(handle_id)
        return handle

    def drop(self, handle_id: str) -> Handle:
        """Forget ``handle_id`` (its memory is freed once no run holds it)."""
        handle = self._items.pop(handle_id, None)
        if handle is None:
            raise ToolRefusal(f"unknown handle {handle_id!r}: it was never made or was "
                              "already dropped; rlm_handles lists the live ones")
        return handle

    def listed(self) -> list[Handle]:
        """The live handles, most recently used first."""
        return list(reversed(self._items.values()))

    def __len__(self) -> int:
        return len(self._items)


#: The progress line of an event (:func:`fastrlm._foundation.events.progress_line`), under the
#: name this package has always exported.
progress_message = progress_line


class RLMTools:
    """The tools of ``fastrlm mcp`` over one RLM (the module docstring lists them)."""

    def __init__(
        self,
        rlm: RLM,
        roots: Roots,
        *,
        max_handles: int = 8,
        max_concurrent_runs: int = 2,
        gitignore: bool = True,
        load_limits: LoadLimits | None = None,
    ) -> None:
        self.rlm = rlm
        self.roots = roots
        self.handles = ContextHandles(max_handles)
        self.gitignore = gitignore
        self.load_limits = load_limits or LoadLimits()
        self.max_concurrent_runs = max_concurrent_runs
        self._runs = asyncio.Semaphore(max_concurrent_runs)
        self._running = 0
        self._waiting = 0

    @property
    def budget(self) -> Budget:
        return self.rlm.budget

    async def _load(self, paths: Sequence[str]) -> tuple[list[str], LoadedContext]:
        if isinstance(paths, str) or not isinstance(paths, Sequence) or not paths:
            raise ToolRefusal("paths must be a non-empty list of files, directories or globs")
        checked = [self.roots.check(p) for p in paths]
        try:
            loaded = await asyncio.to_thread(
                load_context, checked, gitignore=self.gitignore, within=self.roots.paths,
                limits=self.load_limits)
        except (ContextError, ConfigurationError) as exc:
            raise ToolRefusal(str(exc)) from exc
        return checked, loaded

    async def load(self, paths: Sequence[str]) -> dict[str, Any]:
        """Load ``paths`` once and keep it under a new handle."""
        checked, loaded = await self._load(paths)
        return self.handles.add(checked, loaded).describe()

    async def ask(
        self,
        question: str,
        *,
        paths: Sequence[str] | None = None,
        text: str | None = None,
        handle: str | None = None,
        budget: Mapping[str, Any] | None = None,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Answer ``question`` over exactly one of ``paths``, ``text`` or ``handle``."""
        if not isinstance(question, str) or not question.strip():
            raise ToolRefusal("question must be a non-empty string")
        given = [name for name, v in (("paths", paths), ("text", text), ("handle", handle))
                 if v is not None]
        if len(given) != 1:
            raise ToolRefusal("give exactly one of paths (files, directories, globs), text, or "
                              f"handle (from rlm_load); got {', '.join(given) or 'none'}")
        run_budget = lowered_budget(self.budget, budget)
        context: object
        report: dict[str, Any] | None = None
        if handle is not None:
            context = self.handles.get(handle).loaded.value
        elif text is not None:
            if not isinstance(text, str) or not text.strip():
                raise ToolRefusal("text must be a non-empty string")
            context = text
        else:
            assert paths is not None
            _, loaded = await self._load(paths)
            context, report = loaded.value, loaded.report.to_dict()
        self._waiting += 1
        entered = False
        try:
            async with self._runs:
                self._waiting -= 1
                entered = True
                self._running += 1
                try:
                    result = await self._run(question, context, run_budget, progress)
                finally:
                    self._running -= 1
        finally:
            if not entered:  # cancelled while it waited for a slot
                self._waiting -= 1
        out = concise(result)
        if report is not None:
            out["context"] = {k: report[k] for k in ("files", "documents", "chars", "skipped")}
        return out

    async def _run(self, question: str, context: object, budget: Budget,
                   progress: Progress | None) -> RLMResult:
        queue: asyncio.Queue[str | None] = asyncio.Queue()

        def on_event(event: Event) -> None:
            message = progress_message(event)
            if message is not None:
                queue.put_nowait(message)

        async def report() -> None:
            assert progress is not None
            step = 0
            while (message := await queue.get()) is not None:
                step += 1
                await progress(step, message)

        reporter = asyncio.create_task(report()) if progress is not None else None
        try:
            result = await self.rlm.acompletion(question, context, budget=budget,
                                                on_event=on_event)
        except ConfigurationError as exc:  # e.g. max_usd for a model without a price
            raise ToolRefusal(str(exc)) from exc
        except RLMError as exc:
            failed = getattr(exc, "result", None)
            run = f" (run {failed.trace_id}; rlm_trace shows it)" if failed is not None else ""
            raise ToolRefusal(f"the run failed: {exc}{run}") from exc
        finally:
            if reporter is not None and not reporter.done():
                queue.put_nowait(None)  # send what is queued, then stop
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    reporter.cancel()  # a cancelled call sends nothing more
                await asyncio.gather(reporter, return_exceptions=True)
        return result

    def handles_list(self) -> list[dict[str, Any]]:
        """The live handles, most recently used first."""
        return [h.brief() for h in self.handles.listed()]

    def drop(self, handle: str) -> dict[str, Any]:
        """Forget a handle."""
        gone = self.handles.drop(_handle_id(handle))
        return {"dropped": gone.id, "handles_left": len(self.handles)}

    async def grep(self, handle: str, pattern: str, *, regex: bool = False,
                   ignore_case: bool = False, context_lines: int = 2,
                   max_matches: int = 50) -> dict[str, Any]:
        """Lines of a handle's documents that match ``pattern`` (see :func:`._browse.grep`);
        no model is called. Runs in a thread: a large context does not stall other calls."""
        docs = self.handles.get(_handle_id(handle)).docs
        found = await asyncio.to_thread(
            _browse.grep, docs, pattern, regex=_flag("regex", regex),
            ignore_case=_flag("ignore_case", ignore_case), context_lines=context_lines,
            max_matches=max_matches)
        return {"handle": handle, **found}

    def read(self, handle: str, document: int | str = 0, start_line: int = 1,
             max_lines: int = 200, start_char: int = 0) -> dict[str, Any]:
        """A range of lines of one of a handle's documents (see :func:`._browse.read`)."""
        docs = self.handles.get(_handle_id(handle)).docs
        return {"handle": handle,
                **_browse.read(docs, document, start_line, max_lines, start_char)}

    def stats(self, handle: str) -> dict[str, Any]:
        """A handle's sizes and its largest documents (see :func:`._browse.stats`)."""
        item = self.handles.get(_handle_id(handle))
        report = item.loaded.report
        return {"handle": item.id, "paths": list(item.paths), "files": report.files,
                "skipped": len(report.skipped), **_browse.stats(item.docs)}

    def status(self) -> dict[str, Any]:
        """The server: its models, roots, budget per call, handles and runs."""
        budget = self.budget
        limits = {k: getattr(budget, k) for k in BUDGET_KEYS}
        return {"model": self.rlm.root_lm.model, "sub_model": self.rlm.sub_lm.model,
                "sandbox": self.rlm.sandbox,
                "roots": list(self.roots.paths), "budget": limits,
                "handles": len(self.handles), "max_handles": self.handles.limit,
                "runs_running": self._running, "runs_waiting": self._waiting,
                "max_concurrent_runs": self.max_concurrent_runs}

    def runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """Past runs, newest first (the run index every fastrlm command writes)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise ToolRefusal("limit must be an integer from 1 to 1000")
        try:
            records = list_runs(index_path(), limit=limit)
        except IndexUnusableError as exc:
            raise ToolRefusal(str(exc)) from exc
        keep = ("run_id", "started_at", "question", "model", "stop_reason", "cost_usd",
                "duration_s", "iterations", "subcalls", "answer_preview", "error")
        return [{k: getattr(r, k) for k in keep} for r in records]

    def trace(self, run_id: str, max_chars: int = 4000) -> str:
        """One run as a readable transcript. ``run_id``: an id, a unique prefix, ``last`` or N
        (the N-th newest run); never a path, so a client cannot make the server read a file."""
        if not isinstance(run_id, str) or not run_id.strip():
            raise ToolRefusal("run_id must be a run id, a unique prefix of one, 'last' or N")
        if "/" in run_id or "\\" in run_id or run_id.endswith(".jsonl"):
            raise ToolRefusal("run_id names a run (id, prefix, 'last' or N), not a file path")
        if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 100:
            raise ToolRefusal("max_chars must be an integer of at least 100")
        try:
            trace = read_trace(resolve_run(run_id))
        except (TraceNotFoundError, IndexUnusableError, OSError) as exc:
            raise ToolRefusal(str(exc)) from exc
        return render_transcript(trace, max_chars=max_chars)


#: What a run's result keeps for an MCP client: enough to judge and follow up, no host paths
#: (``rlm_trace`` reads a run by id) and no per-model token breakdown.
CONCISE_KEYS = ("answer", "stop_reason", "cost_usd", "iterations", "subcalls", "duration_s")
#: Kept only when set (a partial answer, the limit that stopped it, the error, a typed value).
WHEN_SET_KEYS = ("partial", "limited_by", "error", "value")


def concise(result: RLMResult) -> dict[str, Any]:
    """The structured result of ``rlm_ask``: :data:`CONCISE_KEYS`, those of
    :data:`WHEN_SET_KEYS` that are set, and ``run_id``."""
    full = result.to_dict()
    out = {k: full[k] for k in CONCISE_KEYS}
    out.update((k, full[k]) for k in WHEN_SET_KEYS if full[k] not in (None, False))
    out["run_id"] = result.trace_id
    return out


def summary_line(out: Mapping[str, Any]) -> str:
    """The short text that goes with ``rlm_ask``'s structured result: the answer, then one
    line of stop reason, cost and run id."""
    tail = (f"[{out['stop_reason']}; ${float(out.get('cost_usd', 0)):.4f}; "
            f"{out.get('subcalls', 0)} sub-call(s); run {out['run_id']}]")
    return f"{out['answer']}\n{tail}"


def _handle_id(handle: object) -> str:
    if not isinstance(handle, str) or not handle.strip():
        raise ToolRefusal("handle must be a handle from rlm_load (ctx-...)")
    return handle


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ToolRefusal(f"{name} must be true or false")
    return value
