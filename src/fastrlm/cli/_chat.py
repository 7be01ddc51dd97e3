"""``fastrlm chat``: many questions over one context, in one session (one REPL, one
conversation).

On a terminal it is an interactive loop: ``you>`` prompts with line editing and history (the
standard ``readline``), live progress on stderr as in ``ask``, Ctrl-C cancels the question being
answered (the session goes on), Ctrl-D or ``/exit`` ends it. Otherwise it reads one question per
line from stdin and prints one answer per question on stdout (``--json``: one JSON object a
line), so a script can drive it.

After each answer, stderr gets the question's summary line (as ``ask`` prints it: stop reason,
turns, sub-calls, tokens, cost, time) and its trace; at the end, the session's total and how to
find its questions again (``fastrlm runs --session ID``). ``-q`` hides both.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .._foundation.errors import ContextError, RLMError
from ._common import fail, prepare_run, price_table_or_exit, rlm_or_exit, settings_or_exit
from ._exit import ExitCode, exit_code_for
from ._options import load_options, run_options, tool_options
from ._progress import RunState, make_progress
from ._runner import _run_cancellable, summary_line

if TYPE_CHECKING:
    from .. import RLMResult, Session
    from ..context import LoadLimits

EXIT_WORDS = frozenset({"/exit", "/quit", "exit", "quit"})


@click.command()
@click.option("-c", "--context", "contexts", multiple=True, metavar="PATH",
              help="A file, directory, glob, .jsonl file: the session's context. Repeatable.")
@run_options
@tool_options
@click.option("--json", "as_json", is_flag=True,
              help="One JSON result object per question on stdout (answer, stop reason, cost).")
@click.option("--no-trace", is_flag=True, help="Write no traces.")
@click.option("--no-gitignore", is_flag=True, help="Load files that .gitignore excludes.")
@load_options
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
@click.option("--resume", "resume_id", default=None, metavar="SESSION",
              help="Go on with a recorded session (its id from `fastrlm runs`, or a unique "
              "prefix): its questions replay from their records at no cost, then ask on.")
def chat(contexts: tuple[str, ...], flags: dict[str, Any], tools: tuple[Any, ...] | None,
         sub_tools: tuple[Any, ...] | None, as_json: bool, no_trace: bool, no_gitignore: bool,
         load_limits: LoadLimits, quiet: bool, resume_id: str | None) -> None:
    """Ask many questions about a context in one session (variables persist between them).

    \b
    Examples:
      fastrlm chat -c src/                   # interactive: Ctrl-C cancels a question, Ctrl-D ends
      printf 'Q1\\nQ2\\n' | fastrlm chat -c notes.txt --json
    """
    if not contexts:
        fail("give the context with -c PATH (a file, directory or glob)")
    if "-" in contexts:
        fail("chat reads its questions from stdin, so the context cannot come from there: "
             "give a file with -c PATH")
    settings = settings_or_exit(flags)
    prices = price_table_or_exit(settings)
    from ..context import load_context
    from ..trace import TraceWriter

    preparing = prepare_run(settings)
    try:
        loaded = load_context(list(contexts), gitignore=not no_gitignore, limits=load_limits,
                              shared=True)
    except (ContextError, ValueError) as exc:
        fail(str(exc))
    finally:
        preparing.join()
    rlm = rlm_or_exit(settings, prices, trace=False if no_trace else TraceWriter(),
                      tools=tools or (), sub_tools=sub_tools or ())
    interactive = sys.stdin.isatty()
    if not quiet:
        click.echo(loaded.report.summary(), err=True)
        if interactive:
            click.echo("Ask a question (Ctrl-C cancels one, Ctrl-D ends the session).", err=True)
    code = ExitCode.OK
    if resume_id is not None and no_trace:
        fail("--resume reads the session's records, which a traced session keeps: drop "
             "--no-trace")
    with rlm.session() as session:
        if resume_id is not None:
            _resume(session, resume_id, loaded.value, quiet)
        for question in _questions(interactive):
            context = loaded if not session.results and not session.state.messages else None
            result, cancelled, iterations = _ask(session, question, context, settings.budget,
                                                 quiet)
            if cancelled:
                click.echo("(cancelled; ask again, or Ctrl-D to end)", err=True)
                continue
            if result is None:
                code = ExitCode.ERROR
                continue
            _print(result, as_json)
            if not quiet:
                click.echo(_question_summary(result, iterations), err=True)
            outcome = exit_code_for(result.stop_reason.value, result.error_kind,
                                    result.limited_by.value if result.limited_by else None)
            code = max(code, outcome) if outcome != ExitCode.CANCELLED else code
        if not quiet and session.results:
            click.echo(session_total(session.id, session.results, traced=not no_trace),
                       err=True)
            if not no_trace:
                click.echo(f"go on with it later: fastrlm chat --resume {session.id} -c ...",
                           err=True)
    sys.exit(int(code))


def _resume(session: Session, resume_id: str, context: object, quiet: bool) -> None:
    """Replay the recorded session ``resume_id`` into ``session``, or exit saying why not."""
    try:
        replayed = session.resume(resume_id, context=context)
    except RLMError as exc:
        fail(str(exc))
    if not quiet:
        click.echo(f"replayed {len(replayed)} question(s) of session {resume_id} from their "
                   "records", err=True)


def _question_summary(result: RLMResult, iterations: int) -> str:
    """The question's summary line (``ask``'s), and where its trace is."""
    line = summary_line(result, iterations)
    if result.trace_path and Path(result.trace_path).is_file():
        line += f"\ntrace: {result.trace_path}  (fastrlm show {result.trace_id})"
    return line


def session_total(session_id: str, results: list[RLMResult], *, traced: bool) -> str:
    """The line at the end of a session: its questions, tokens, cost and time together, and
    how to list them again. Pure."""
    cost = sum(r.cost_usd for r in results)
    tokens_in = sum(r.usage.input_tokens for r in results)
    tokens_out = sum(r.usage.output_tokens for r in results)
    seconds = sum(r.duration_s for r in results)
    reserved = sum(r.usage.failed_usd for r in results)
    note = (f" (of which ${reserved:.4f} is a worst-case reservation for failed requests, "
            "not a charge)") if reserved > 0 else ""
    line = (f"session {session_id}: {len(results)} question(s) · {tokens_in:,} in / "
            f"{tokens_out:,} out tokens · ${cost:.4f}{note} · {seconds:.1f}s")
    if traced:
        line += f"\nits runs: fastrlm runs --session {session_id}"
    return line


def _questions(interactive: bool) -> Any:
    """The questions: typed at a ``you>`` prompt with history, or one per line of stdin."""
    if not interactive:
        for line in sys.stdin:
            if line.strip():
                yield line.strip()
        return
    try:
        import readline  # noqa: F401 - line editing and history for input()
    except ImportError:
        pass
    while True:
        try:
            line = input("you> ")
        except EOFError:
            click.echo("", err=True)
            return
        except KeyboardInterrupt:  # Ctrl-C at the prompt: a fresh prompt, as a shell does
            click.echo("", err=True)
            continue
        if line.strip().lower() in EXIT_WORDS:
            return
        if line.strip():
            yield line.strip()


def _ask(session: Session, question: str, context: object, budget: dict[str, Any],
         quiet: bool) -> tuple[RLMResult | None, bool, int]:
    """One question with live progress; Ctrl-C cancels it. Returns (result, cancelled, the
    iterations its run announced)."""
    state = RunState(max_usd=budget.get("max_usd"), max_subcalls=budget.get("max_subcalls"))
    progress = make_progress(state, sys.stderr, quiet=quiet)
    on_event = progress if progress is not None else state.update

    async def ask() -> RLMResult:
        return await session.aask(question, context, on_event=on_event)

    if progress is not None:
        progress.start()
    try:
        value, interrupted = session._blocking(lambda: _run_cancellable(ask, lambda n: None))
    except KeyboardInterrupt:  # the session's loop runs in its own thread: Ctrl-C lands here,
        return None, True, 0   # after the runner has cancelled the question and let it unwind
    except RLMError as exc:
        if exc.result is not None:
            return exc.result, False, state.iteration
        click.echo(f"fastrlm: {exc}", err=True)
        return None, False, state.iteration
    finally:
        if progress is not None:
            progress.stop()
    return value, interrupted, state.iteration


def _print(result: RLMResult, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result.to_dict(), ensure_ascii=False, default=str))
        return
    click.echo(result.answer if result.answer else f"(no answer: {result.stop_reason.value})")
    if result.partial:
        click.echo(f"fastrlm: partial answer ({result.stop_reason.value}"
                   f"{', limited by ' + result.limited_by.value if result.limited_by else ''})",
                   err=True)

