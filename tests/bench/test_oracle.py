"""The oracle: a scripted root model that writes the correct program scores 100 on labelled OOLONG
through the full ``rlm`` method (engine, sandbox, FINAL), and through ``fastrlm bench``."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastrlm.bench import BenchConfig, RLMMethod, run_bench, summarize
from fastrlm.bench._config import Models
from fastrlm.bench._oolong import BUILDERS
from fastrlm.bench._oolong import LABELLED_TASK as TASK
from fastrlm.bench._scripted import oracle_lm, scripted_models


def test_the_oracle_scores_100_through_the_rlm_method() -> None:
    async def main() -> list[float]:
        scores = []
        for index in range(len(BUILDERS)):  # one question of every kind
            inst = TASK.instance(4, 16384, index)
            method = RLMMethod(oracle_lm())
            res = await method.run(inst.query, inst.context)
            assert res.stop_reason == "final", res.error
            scores.append(TASK.score(res.answer, inst))
        return scores

    scores = asyncio.run(main())
    assert 100 * sum(scores) / len(scores) == 100.0


def test_the_oracle_scores_100_through_the_runner(tmp_path: Path) -> None:
    root, sub = scripted_models("oolong-labelled")
    config = BenchConfig(
        task="oolong-labelled",
        methods=("rlm", "rlm-no-subcalls"),
        lengths=(8192,),
        n=6,
        out=tmp_path,
        progress=False,
    )
    records = asyncio.run(run_bench(config, models=Models(root, sub, sub)))
    rows = {(r["method"], r["length"]): r for r in summarize(records)}
    assert rows[("rlm", "all")]["score"] == 100.0
    assert rows[("rlm-no-subcalls", "all")]["score"] == 100.0
