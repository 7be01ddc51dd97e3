"""``fastrlm doctor``: sandbox layers, configured providers, versions, where state lives."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

import click

PACKAGES = (
    ("fastrlm", "this package"),
    ("aiohttp", "core: the OpenAI-compatible provider's HTTP client"),
    ("pydantic", "core: typed answers"),
    ("click", "core: the CLI"),
    ("rich", "core: live progress"),
    ("pyseccomp", "core: sandbox syscall filter"),
    ("landlock", "core: sandbox filesystem rules"),
    ("anthropic", "extra [anthropic]"),
    ("litellm", "extra [litellm]"),
    ("pypdf", "extra [pdf]"),
)

#: (extra, the distributions it installs, what it enables): one row per extra in pyproject.
EXTRAS = (
    ("anthropic", ("anthropic",), "anthropic/... models"),
    ("litellm", ("litellm", "openai"), "litellm/... models"),
    ("mcp", ("mcp",), "fastrlm mcp (MCP server)"),
    ("dspy", ("dspy",), "fastrlm.integrations.dspy"),
    ("ray", ("ray",), "runs on a Ray cluster"),
    ("otel", ("opentelemetry-sdk",), "OpenTelemetry spans"),
    ("tokens", ("bpe-openai",), "offline token counts in bench reports"),
    ("pdf", ("pypdf",), "PDF files as context"),
    ("bench", ("wonderwords", "rank-bm25", "matplotlib"), "fastrlm bench tasks and plots"),
    ("browser", ("playwright",), "browser tests of fastrlm view"),
    ("dataframes", ("pandas", "pyarrow"), "DataFrame, Arrow and Parquet contexts"),
    ("images", ("pillow",), "PIL image contexts and crops"),
)

KEY_VARIABLES = (
    "FASTRLM_MODEL",
    "FASTRLM_SUB_MODEL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "OPENROUTER_API_KEY",
    "OLLAMA_BASE_URL",
    "VLLM_BASE_URL",
    "LLAMACPP_BASE_URL",
)


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def sandbox_lines() -> list[str]:
    try:
        from ..sandbox import doctor_report
    except ImportError as exc:
        return [f"  (sandbox report unavailable: {exc})"]
    lines = []
    try:
        report = doctor_report()
    except Exception as exc:  # noqa: BLE001 - a broken probe must not hide the rest
        return [f"  (sandbox probe failed: {type(exc).__name__}: {exc})"]
    for layer in report:
        mark = "ok  " if layer.available else "no  "
        reason = f"  {layer.reason}" if layer.reason else ""
        lines.append(f"  {mark}{layer.name:<10}{reason}")
    return lines


def extra_lines() -> list[str]:
    """One line per optional extra: installed (with versions) or the pip line that adds it."""
    lines = []
    for extra, packages, purpose in EXTRAS:
        versions = [(name, _version(name)) for name in packages]
        missing = [name for name, version in versions if version == "not installed"]
        if missing:
            state = f"missing {', '.join(missing)}: pip install 'fastrlm[{extra}]'"
        else:
            state = "installed (" + ", ".join(f"{n} {v}" for n, v in versions) + ")"
        lines.append(f"  {extra:<12}{purpose:<40}{state}")
    return lines


#: Packages model code commonly wants, by import name, with their distribution names.
SANDBOX_PACKAGES = (("numpy", "numpy"), ("pandas", "pandas"), ("pyarrow", "pyarrow"),
                    ("PIL", "pillow"))
_IMPORT_PROBE = """
import importlib
for name in {names!r}:
    try:
        module = importlib.import_module(name)
        print(name, "ok", getattr(module, "__version__", "?"))
    except BaseException as exc:
        print(name, "fails", type(exc).__name__ + ":", str(exc).replace(chr(10), " ")[:160])
"""


def sandbox_package_lines(kind: str = "auto") -> list[str]:
    """One line per package of :data:`SANDBOX_PACKAGES`: importable in a real ``kind`` worker
    (with its version), installed here but failing there (and why), or not installed."""
    import asyncio
    import importlib.util

    from ..sandbox import HandlerBridge, SandboxLimits, create_sandbox

    async def probe() -> str:
        sandbox = create_sandbox(kind, SandboxLimits(exec_timeout_s=60.0))
        try:
            await sandbox.start("", HandlerBridge({}))  # the probe makes no host calls
            names = [name for name, _ in SANDBOX_PACKAGES]
            result = await sandbox.execute(_IMPORT_PROBE.format(names=names))
            return result.stdout if result.error is None else f"error {result.error}"
        finally:
            await sandbox.close()

    try:
        out = asyncio.run(probe())
    except Exception as exc:  # noqa: BLE001 - no sandbox here: say so, keep diagnosing
        return [f"  (no sandbox worker could start: {type(exc).__name__}: {exc})"]
    found = {line.split(" ", 1)[0]: line.split(" ", 1)[1:] for line in out.splitlines()}
    lines = []
    for name, dist in SANDBOX_PACKAGES:
        answer = (found.get(name) or ["fails (no answer from the worker)"])[0]
        if importlib.util.find_spec(name) is None:
            text = f"not installed (pip install {dist})"
        elif answer.startswith("ok "):
            text = f"importable ({answer[3:]})"
        else:
            text = f"installed here, but {answer}"
        lines.append(f"  {name:<10} {text}")
    return lines


def provider_lines() -> list[str]:
    """One line per registered provider (built-in, entry point, run time) and per plugin that
    failed to load."""
    from ..lm import broken_plugins, providers

    lines = []
    for info in providers():
        p = info.preset
        where = p.base_url or "(set by the provider)"
        origin = "" if info.source == "built-in" else f"  [{info.source}]"
        lines.append(f"  {p.name:<11}{p.api:<12}{where}{origin}")
    for name, why in broken_plugins().items():
        lines.append(f"  BROKEN     {name}: {why}")
    return lines


@click.command()
def doctor() -> None:
    """Check this machine: sandbox layers, configured providers, versions."""
    from ..trace import fastrlm_home, index_path, traces_dir
    from ._config import resolve_settings

    click.echo(
        f"fastrlm {_version('fastrlm')} · Python {platform.python_version()} · "
        f"{platform.system()} {platform.release()} ({platform.machine()})"
    )
    click.echo(f"python: {sys.executable}")
    click.echo("\nsandbox layers (auto picks the first that works):")
    for line in sandbox_lines():
        click.echo(line)

    click.echo("\nmodels:")
    try:
        settings = resolve_settings({})
    except Exception as exc:  # noqa: BLE001 - report it, keep diagnosing
        click.echo(f"  configuration error: {exc}")
    else:
        origin = settings.origin
        if settings.model is None:
            click.echo(
                "  no model configured (see `fastrlm ask --help`; `fastrlm demo` needs none)"
            )
        else:
            click.echo(f"  root:  {settings.model}  (from {origin.get('model')})")
            sub = settings.sub_model or settings.model
            click.echo(f"  sub:   {sub}  (from {origin.get('sub_model', 'the root model')})")
        if settings.base_url:
            click.echo(f"  base URL: {settings.base_url}  (from {origin.get('base_url')})")
        state = "found" if settings.config_file and settings.config_file.is_file() else "absent"
        click.echo(f"  config file: {settings.config_file} ({state})")
    for name in KEY_VARIABLES:
        if os.environ.get(name):
            shown = "set" if "KEY" in name else os.environ[name]
            click.echo(f"  {name}: {shown}")

    click.echo("\nproviders (model strings 'PREFIX/MODEL'):")
    for line in provider_lines():
        click.echo(line)

    click.echo("\nextras:")
    for line in extra_lines():
        click.echo(line)

    click.echo("\npackages:")
    for name, why in PACKAGES:
        click.echo(f"  {name:<10} {_version(name):<14} {why}")

    click.echo("\nthird-party packages in the sandbox (model code may import them):")
    for line in sandbox_package_lines():
        click.echo(line)

    home = fastrlm_home()
    tdir = traces_dir()
    n_traces = len(list(tdir.glob("*.jsonl"))) if tdir.is_dir() else 0
    click.echo(f"\nstate: {home} (FASTRLM_HOME) · {n_traces} trace(s) · index {index_path()}")
