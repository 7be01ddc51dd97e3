"""The answer key is out of the sandbox's reach: model code cannot import the harness, and the
generators' seed is fresh per run (recorded in the results), so the instance cannot be rebuilt."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fastrlm import SandboxUnavailableError
from fastrlm.bench import BenchConfig, run_bench
from fastrlm.bench._config import Models
from fastrlm.bench._runner import resolve_seed
from fastrlm.sandbox import create_sandbox
from fastrlm.testing import ScriptedLM

ATTACKS = {
    "plain import": "from fastrlm.bench import get_task",
    "a submodule": "import fastrlm.bench._sniah",
    # a stub parent put in sys.modules by hand, so the package __init__ never runs
    "a stub parent": (
        "import sys, types, fastrlm\n"
        "m = types.ModuleType('fastrlm.bench')\n"
        "m.__path__ = [fastrlm.__path__[0] + '/bench']\n"
        "sys.modules['fastrlm.bench'] = m\n"
        "from fastrlm.bench import _instance\n"
        "print(_instance.rng_for(0).random())"
    ),
}


async def _errors(kind: str) -> dict[str, str | None]:
    sandbox = create_sandbox(kind)
    try:
        await sandbox.start("the context", None)  # type: ignore[arg-type]
    except SandboxUnavailableError as exc:
        pytest.skip(f"{kind}: {exc}")
    try:
        return {name: (await sandbox.execute(code)).error for name, code in ATTACKS.items()}
    finally:
        await sandbox.close()


@pytest.mark.parametrize("kind", ["process", "bwrap"])
def test_model_code_in_the_worker_cannot_import_the_harness(kind: str) -> None:
    errors = asyncio.run(_errors(kind))
    for name, error in errors.items():
        assert error is not None and "cannot be imported in the sandbox" in error, (name, error)


def _regenerating_root(messages: object) -> str:
    # what a root model that knows the harness would write: rebuild the instance, return its gold
    return (
        "```repl\nfrom fastrlm.bench import get_task\n"
        "FINAL(str(get_task('sniah').instance(0, 2048, 0).gold))\n```"
    )


def test_an_rlm_run_that_regenerates_its_instance_gets_no_gold(tmp_path: Path) -> None:
    root = ScriptedLM(_regenerating_root, model="scripted/root")
    config = BenchConfig(task="sniah", methods=("rlm",), lengths=(2048,), n=1, out=tmp_path,
                         sandbox="process", progress=False, max_iterations=2)
    [rec] = asyncio.run(run_bench(config, models=Models(root, root, root)))
    assert rec["score"] == 0.0
    assert rec["seed"] != 0


def test_every_new_run_gets_a_fresh_seed_and_a_rerun_resumes_its_own(tmp_path: Path) -> None:
    first = resolve_seed(BenchConfig(task="sniah", out=tmp_path / "a"))
    other = resolve_seed(BenchConfig(task="sniah", out=tmp_path / "b"))
    assert first.seed is not None and other.seed is not None and first.seed != other.seed
    assert resolve_seed(BenchConfig(task="sniah", out=tmp_path, seed=7)).seed == 7

    def finder(messages: object) -> str:
        return "no idea"

    lm = ScriptedLM(finder, model="scripted/root")
    config = BenchConfig(task="sniah", methods=("base",), lengths=(1024,), n=2, out=tmp_path,
                         progress=False)
    records = asyncio.run(run_bench(config, models=Models(lm, lm, lm)))
    seed = records[0]["seed"]
    assert isinstance(seed, int) and {r["seed"] for r in records} == {seed}
    again = asyncio.run(run_bench(config, models=Models(lm, lm, lm)))
    assert len(again) == 2  # resumed under the recorded seed: nothing ran twice
    assert resolve_seed(config).seed == seed


def _stripping_root(results: Path) -> object:
    # the strongest attacker: it removes the refusing finder, imports the whole harness from the
    # package's own directory, looks for the run's seed in the results file (whose host path it
    # somehow knows) and, failing that, guesses the old default seed 0
    code = (
        "import json, os, sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path\n"
        "                    if getattr(f, '__name__', '') != '_RefuseImports']\n"
        "root = os.path.dirname(sys.modules['fastrlm'].__path__[0])\n"
        "for k in [k for k in sys.modules if k.split('.')[0] == 'fastrlm']:\n"
        "    del sys.modules[k]\n"
        "sys.path.insert(0, root)\n"
        "try:\n"
        "    from fastrlm.bench import get_task\n"
        "except ImportError:\n"
        "    get_task = None\n"
        "seed = 0\n"
        "try:\n"
        f"    seed = json.loads(open({str(results)!r}).readline())['seed']\n"
        "except OSError:\n"
        "    pass\n"
        "if get_task is None:\n"
        "    found = os.listdir(os.path.join(root, 'fastrlm', 'bench'))\n"
        "    FINAL('no harness here: ' + repr(found))\n"
        "else:\n"
        "    FINAL(str(get_task('sniah').instance(seed, 2048, 0).gold))\n"
    )

    def reply(messages: object) -> str:
        return f"```repl\n{code}```"

    return reply


def test_code_that_strips_the_guard_and_imports_the_harness_still_cannot_rebuild_the_instance(
    tmp_path: Path,
) -> None:
    """The finder is a guard, not a wall; under bubblewrap the harness is not in the sandbox's
    file system at all (an empty directory in its place), and the seed that would pick the
    instance lives only in the results file, which is not mounted either."""
    from fastrlm.sandbox._layers import bwrap_problem

    problem = bwrap_problem()
    if problem is not None:
        pytest.skip(f"bubblewrap: {problem}")
    root = ScriptedLM(_stripping_root(tmp_path / "results.jsonl"), model="scripted/root")
    config = BenchConfig(task="sniah", methods=("rlm",), lengths=(2048,), n=2, out=tmp_path,
                         sandbox="bwrap", progress=False, max_iterations=2)
    records = asyncio.run(run_bench(config, models=Models(root, root, root)))
    assert len(records) == 2
    assert {r["seed"] for r in records} != {0}
    assert [r["score"] for r in records] == [0.0, 0.0]
    # the attack ran to its end: with the guard gone it still found no harness to import
    assert [r["answer"] for r in records] == ["no harness here: []"] * 2
