"""``fastrlm demo`` and ``fastrlm quickstart``.

The demo runs the real engine, the real sandbox and a real fan-out of sub-calls over a generated
~10M-token log, driven by *scripted* models (no key, no network): the root model's replies are
fixed Python that chunks the context, calls ``llm_query_batched`` over the chunks and aggregates;
the sub-model answers each chunk by counting in it. The answer is checked against the truth the
generator built in.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from ._config import SANDBOXES, resolve_settings
from ._exit import ExitCode

_F = TypeVar("_F", bound=Callable[..., Any])

SERVICES = ("payments", "auth", "search", "orders", "inventory", "gateway", "email", "billing")
LEVELS = ("INFO", "WARN", "ERROR", "DEBUG")
LEVEL_WEIGHTS = (80, 12, 5, 3)
MESSAGES = {
    "INFO": (
        "request served in {n} ms",
        "cache hit ratio {n}%",
        "user session {h} renewed",
        "job {h} completed after {n} ms",
        "health check ok ({n} ms)",
    ),
    "WARN": (
        "slow query took {n} ms",
        "retrying upstream call ({n}/5)",
        "queue depth {n} above soft limit",
        "certificate for {h} expires in {n} days",
    ),
    "ERROR": (
        "charge failed: card declined (req {h})",
        "upstream timeout after {n} ms",
        "database connection reset (pool {n})",
        "could not parse payload {h}",
    ),
    "DEBUG": ("state dump {h}", "feature flag {h} evaluated to {n}"),
}
QUESTION = (
    "How many ERROR lines did the payments service log, and what is the incident code "
    "(INC-...) that appears in the logs?"
)
CHUNK_MARK = "<<<CHUNK>>>\n"


@dataclass(frozen=True, slots=True)
class DemoInput:
    text: str
    payments_errors: int
    incident: str
    lines: int

    @property
    def expected(self) -> str:
        return (
            f"The payments service logged {self.payments_errors:,} ERROR lines; "
            f"the incident code is {self.incident}."
        )


def _line(rng: random.Random) -> str:
    level = rng.choices(LEVELS, LEVEL_WEIGHTS)[0]
    template = rng.choice(MESSAGES[level])
    message = template.format(n=rng.randrange(1, 5000), h=f"{rng.getrandbits(32):08x}")
    stamp = (
        f"2026-11-{rng.randrange(1, 29):02}T{rng.randrange(24):02}:"
        f"{rng.randrange(60):02}:{rng.randrange(60):02}Z"
    )
    return f"{stamp} {level:<5} [{rng.choice(SERVICES)}] {message}\n"


def generate_logs(target_chars: int = 40_000_000, seed: int = 7) -> DemoInput:
    """A service log of about ``target_chars`` characters with one incident line hidden in it.

    Fast: a pool of distinct lines is sampled with replacement (~0.5 s for 40 MB)."""
    rng = random.Random(seed)
    pool = [_line(rng) for _ in range(20_000)]
    average = sum(map(len, pool)) / len(pool)
    n = max(int(target_chars / average), 10)
    lines = rng.choices(pool, k=n)
    incident = f"INC-{rng.randrange(1000, 9999)}-{rng.choice('ABCDEFGHJK')}{rng.randrange(10)}"
    lines.insert(
        rng.randrange(n // 3, n),
        f"2026-11-17T03:14:07Z ERROR [payments] incident {incident} opened: card processor "
        "unreachable\n",
    )
    text = "".join(lines)
    return DemoInput(text, text.count(" ERROR [payments] "), incident, n + 1)


ROOT_PEEK = """Let me look at the context first.
```repl
print(type(context).__name__, f"{len(context):,} characters")
print(context[:240])
```"""

ROOT_FANOUT = """The context is one large log. I will split it at line boundaries into chunks
that fit a sub-model, ask a sub-model per chunk in parallel, then add the counts up.
```repl
chunk_size = 200_000
chunks, start = [], 0
while start < len(context):
    end = context.find("\\n", start + chunk_size)
    end = len(context) if end == -1 else end + 1
    chunks.append(context[start:end])
    start = end
prompts = [
    "Count the lines of this log chunk whose level is ERROR and whose service is payments, and "
    "report any incident code (INC-...). Reply exactly as 'errors=<n>; incident=<code or none>'."
    "\\n<<<CHUNK>>>\\n" + chunk
    for chunk in chunks
]
replies = llm_query_batched(prompts)
total, incidents, failed = 0, set(), 0
for reply in replies:
    try:
        fields = dict(part.split("=", 1) for part in reply.strip().split("; "))
        total += int(fields["errors"])
    except (ValueError, KeyError):
        failed += 1
        continue
    if fields.get("incident", "none") != "none":
        incidents.add(fields["incident"])
print(f"{len(chunks)} chunks, {failed} failed replies, {total:,} payments errors, "
      f"incidents: {sorted(incidents)}")
FINAL(f"The payments service logged {total:,} ERROR lines; the incident code is "
      f"{', '.join(sorted(incidents)) or 'not in the logs'}.")
```"""

ROOT_GIVE_UP = """```repl
FINAL("The scripted demo did not finish as planned; `fastrlm show last` shows why.")
```"""


def root_reply(messages: list[Any]) -> str:
    """The scripted root model: peek, fan out, and (only if that failed) give up."""
    turn = sum(1 for m in messages if m["role"] == "assistant")
    return (ROOT_PEEK, ROOT_FANOUT)[turn] if turn < 2 else ROOT_GIVE_UP


def sub_reply(messages: list[Any]) -> str:
    """The scripted sub-model: it really reads its chunk, and counts."""
    from ..testing import prompt_of

    chunk = prompt_of(messages).partition(CHUNK_MARK)[2]
    errors = chunk.count(" ERROR [payments] ")
    at = chunk.find(" incident INC-")
    incident = chunk[at + 10 :].split(" ", 1)[0] if at >= 0 else "none"
    return f"errors={errors}; incident={incident}"


def _say(text: str, quiet: bool) -> None:
    if not quiet:
        click.echo(text, err=True)


def run_demo(
    *, size_mb: float, seed: int, sandbox: str, mode: str, quiet: bool, trace: bool
) -> ExitCode:
    from .. import RLM, Budget
    from ..testing import ScriptedLM
    from ..trace import TraceWriter
    from ._runner import run, summary_line

    _say(
        "fastrlm demo: the real engine, sandbox and sub-call fan-out, driven by a SCRIPTED "
        "model\n(fixed replies, no API key, no network; `fastrlm ask` uses a real one).",
        quiet,
    )
    started = time.monotonic()
    demo = generate_logs(int(size_mb * 1_000_000), seed)
    _say(
        f"generated a service log: {len(demo.text):,} chars (~{len(demo.text) // 4:,} "
        f"tokens), {demo.lines:,} lines, in {time.monotonic() - started:.1f}s",
        quiet,
    )
    _say(f"question: {QUESTION}", quiet)
    writer = TraceWriter() if trace else None
    budget = Budget(max_iterations=6, max_subcalls=2_000, max_seconds=300)
    rlm = RLM(
        model=ScriptedLM(root_reply, model="scripted/root"),
        sub_model=ScriptedLM(sub_reply, model="scripted/sub", latency_s=0.02),
        budget=budget,
        sandbox=sandbox,
        trace=writer if writer is not None else False,
    )
    extra = {"scripted": True, "expected": demo.expected, "question": QUESTION}
    outcome = run(
        rlm,
        QUESTION,
        demo.text,
        writer=writer,
        mode=mode,
        quiet=quiet,
        budget=budget.to_dict(),
        extra_json=extra,
        print_answer=False,
        show_summary=False,
    )
    result = outcome.result
    if result is None:
        return outcome.exit_code
    correct = result.answer.strip() == demo.expected
    if mode == "text":
        click.echo(f"answer (scripted model): {result.answer}")
    if not quiet:
        verdict = "correct" if correct else f"WRONG, expected: {demo.expected}"
        _say(f"check against the generator's truth: {verdict}", quiet)
        _say(summary_line(result) + " (scripted models cost nothing)", quiet)
        if result.error:
            _say(f"error: {result.error}", quiet)
        if result.trace_path and Path(result.trace_path).is_file():
            _say(f"trace: {result.trace_path}  (fastrlm show {result.trace_id})", quiet)
    if outcome.exit_code is ExitCode.OK and not correct:
        return ExitCode.ERROR
    return outcome.exit_code


def _size_mb_option(about: str) -> Callable[[_F], _F]:
    """The ``--size-mb`` of the generated log (``demo`` and ``quickstart`` share it)."""
    return click.option("--size-mb", type=click.FloatRange(min=0.01), default=40.0,
                        show_default=True, help=about)


@click.command()
@_size_mb_option("Size of the generated log (40 MB is about 10M tokens).")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--sandbox", type=click.Choice(SANDBOXES), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON result object on stdout.")
@click.option("--no-trace", is_flag=True, help="Write no trace.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
def demo(
    size_mb: float, seed: int, sandbox: str, as_json: bool, no_trace: bool, quiet: bool
) -> None:
    """Run fastrlm end to end offline on a generated ~10M-token input, with a scripted model."""
    code = run_demo(
        size_mb=size_mb,
        seed=seed,
        sandbox=sandbox,
        mode="json" if as_json else "text",
        quiet=quiet,
        trace=not no_trace,
    )
    sys.exit(int(code))


QUICKSTART_QUESTION = (
    "What is fastrlm, and how does it stop a run from exceeding its budget? Answer in a short "
    "paragraph and name the source files involved."
)


def project_corpus() -> list[Path]:
    """fastrlm's own README, docs and source when run from a checkout; else the installed
    package's source."""
    package = Path(__file__).resolve().parents[1]
    root = package.parents[1]
    if (root / "pyproject.toml").is_file() and (root / "docs").is_dir():
        return [p for p in (root / "README.md", root / "docs", package) if p.exists()]
    return [package]


@click.command()
@_size_mb_option("Size of the demo's generated log when no model is configured.")
def quickstart(size_mb: float) -> None:
    """With a configured model: ask it a real question about fastrlm's own docs and source.
    Without one: say how to configure one, and run the offline demo."""
    from ..context import load_context
    from ._ask import run_settings
    from ._common import fail

    try:
        settings = resolve_settings({})
    except Exception as exc:  # noqa: BLE001 - a broken config file must not block the demo
        click.echo(f"fastrlm: ignoring configuration ({exc})", err=True)
        settings = None
    if settings is None or settings.model is None:
        click.echo(
            "No model is configured, so this runs the offline demo. To ask a real model instead:",
            err=True,
        )
        click.echo(
            "  OpenAI:     export OPENAI_API_KEY=sk-...\n"
            "  Ollama:     export FASTRLM_MODEL=ollama/qwen2.5-coder:32b\n"
            "  llama.cpp:  export FASTRLM_MODEL=llamacpp/default\n"
            "  vLLM:       export FASTRLM_MODEL=vllm/<served model name>\n"
            "  Anthropic:  export ANTHROPIC_API_KEY=sk-ant-...\n"
            "then run this again (or `fastrlm ask --help`).\n",
            err=True,
        )
        sys.exit(
            int(
                run_demo(
                    size_mb=size_mb, seed=7, sandbox="auto", mode="text", quiet=False, trace=True
                )
            )
        )
    corpus = project_corpus()
    loaded = load_context(corpus)
    click.echo(
        f"asking {settings.model} about fastrlm's own "
        f"{'docs and source' if len(corpus) > 1 else 'source'}: {QUICKSTART_QUESTION}",
        err=True,
    )
    click.echo(loaded.report.summary(), err=True)
    for name, value in (("max_iterations", 12), ("max_subcalls", 100), ("max_seconds", 600)):
        settings.budget.setdefault(name, value)
    code = run_settings(
        settings,
        QUICKSTART_QUESTION,
        loaded.value,
        mode="text",
        quiet=False,
        trace=True,
        trace_full=False,
    )
    if code is ExitCode.BAD_INPUT:
        fail("the quickstart could not run with this configuration")
    sys.exit(int(code))
