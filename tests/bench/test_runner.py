"""The runner: JSONL records, resume without repeating work, summary, plot; a real HTTP run."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from fastrlm.bench import BenchConfig, format_table, load_results, plot, run_bench, summarize
from fastrlm.bench._config import Models
from fastrlm.lm import ChatMessage, resolve
from fastrlm.testing import FakeOpenAIServer, FakeReply, FakeRequest, ScriptedLM, prompt_of


def _needle_finder(messages: list[ChatMessage]) -> str:
    found = re.findall(r"is: ([0-9a-f-]{36}|\d{7})\.", prompt_of(messages))
    return f"The special magic number is {found[0]}" if found else "no idea"


def _models() -> Models:
    lm = ScriptedLM(_needle_finder, model="scripted/root")
    return Models(lm, lm, lm)


def test_results_are_jsonl_and_a_rerun_resumes_without_repeating(tmp_path: Path) -> None:
    config = BenchConfig(
        task="sniah",
        methods=("base", "simple-rlm"),
        lengths=(2048, 4096),
        n=3,
        out=tmp_path,
        progress=False,
        concurrency=2,
    )
    models = _models()
    records = asyncio.run(run_bench(config, models=models))
    assert len(records) == 2 * 2 * 3
    assert {r["score"] for r in records if r["method"] == "base"} == {1.0}
    first_calls = len(models.root.calls)  # type: ignore[attr-defined]
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert all(json.loads(line)["task"] == "sniah" for line in lines)

    again = asyncio.run(run_bench(config, models=models))
    assert len(again) == len(records)
    assert len(models.root.calls) == first_calls  # type: ignore[attr-defined]

    more = BenchConfig(
        task="sniah", methods=("base",), lengths=(2048, 4096), n=4, out=tmp_path, progress=False
    )
    assert len(asyncio.run(run_bench(more, models=models))) == len(records) + 2


def test_a_torn_last_line_is_skipped_on_resume(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text('{"task": "sniah"}\n{"task": "sn')
    assert load_results(path) == [{"task": "sniah"}]


def test_a_rerun_after_a_crash_mid_line_loses_no_record(tmp_path: Path) -> None:
    # killed while writing the second record: the rerun must not glue its first new record to
    # the torn bytes (that line would not parse, and the record would be lost again)
    config = BenchConfig(task="sniah", methods=("base",), lengths=(2048,), n=3, out=tmp_path,
                         progress=False, concurrency=1)
    records = asyncio.run(run_bench(config, models=_models()))
    path = tmp_path / "results.jsonl"
    first, second, _third = path.read_text().splitlines()
    path.write_text(first + "\n" + second[: len(second) // 2])
    again = asyncio.run(run_bench(config, models=_models()))
    lines = path.read_text().splitlines()
    assert all(json.loads(line) for line in lines)  # every line parses
    assert sorted(r["index"] for r in again) == sorted(r["index"] for r in records) == [0, 1, 2]


def test_a_whole_last_line_without_its_newline_is_kept(tmp_path: Path) -> None:
    config = BenchConfig(task="sniah", methods=("base",), lengths=(2048,), n=2, out=tmp_path,
                         progress=False, concurrency=1)
    asyncio.run(run_bench(config, models=_models()))
    path = tmp_path / "results.jsonl"
    path.write_text(path.read_text().rstrip("\n"))
    models = _models()
    more = replace(config, n=3)
    records = asyncio.run(run_bench(more, models=models))
    assert len(models.root.calls) == 1  # type: ignore[attr-defined]  # only the new instance
    assert sorted(r["index"] for r in records) == [0, 1, 2]
    assert [json.loads(line)["index"] for line in path.read_text().splitlines()] == [0, 1, 2]


def test_summary_table_and_plot(tmp_path: Path) -> None:
    config = BenchConfig(
        task="sniah", methods=("base",), lengths=(2048, 8192), n=2, out=tmp_path, progress=False
    )
    records = asyncio.run(run_bench(config, models=_models()))
    rows = summarize(records)
    overall = next(r for r in rows if r["length"] == "all")
    assert overall["n"] == 4 and overall["score"] == 100.0
    assert overall["stop_reasons"] == {"final": 4}
    table = format_table(rows)
    assert "| base | all | 4 | 100.00 [100.00, 100.00] |" in table
    png = plot(records, tmp_path / "fig.png", "sniah")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_methods_are_refused() -> None:
    from fastrlm import ConfigurationError

    with pytest.raises(ConfigurationError, match="unknown method"):
        BenchConfig(task="sniah", methods=("magic",))


ROOT_CODE = """```repl
import re
hits = re.findall(r"is: (\\d{7})\\.", context)
checked = llm_query("Repeat this number: " + hits[0])
FINAL(checked)
```"""


def _server_handler(request: FakeRequest) -> FakeReply:
    system = request.messages[0].get("content", "") if request.messages else ""
    if "```repl" in str(system):
        return FakeReply(ROOT_CODE, prompt_tokens=2_000, completion_tokens=50)
    numbers = re.findall(r"\d{7}", request.prompt)
    return FakeReply(
        f"The number is {numbers[-1] if numbers else 'unknown'}",
        prompt_tokens=1_000,
        completion_tokens=10,
    )


def test_rlm_and_base_through_the_fake_openai_server(tmp_path: Path) -> None:
    with FakeOpenAIServer(handler=_server_handler) as server:
        root = resolve("openai/gpt-5", base_url=server.base_url, api_key="test")
        sub = resolve("openai/gpt-5-mini", base_url=server.base_url, api_key="test")
        config = BenchConfig(
            task="sniah",
            methods=("rlm", "base"),
            lengths=(4096,),
            n=2,
            out=tmp_path,
            progress=False,
            sandbox="none",
        )
        records = asyncio.run(run_bench(config, models=Models(root, sub, sub)))
    assert {(r["method"], r["score"]) for r in records} == {("rlm", 1.0), ("base", 1.0)}
    rlm = [r for r in records if r["method"] == "rlm"]
    # priced from the shipped table: gpt-5 root turn + one gpt-5-mini sub-call per instance
    expected = (2_000 * 1.25 + 50 * 10.0 + 1_000 * 0.25 + 10 * 2.0) / 1e6
    assert all(r["cost_usd"] == pytest.approx(expected) for r in rlm)
    assert all(r["subcalls"] == 1 for r in rlm)


def test_a_rerun_with_the_subcall_cache_sends_no_subcall_twice(tmp_path: Path) -> None:
    root = ScriptedLM(lambda m: ROOT_CODE, model="scripted/root")
    sub = ScriptedLM(
        lambda m: "The number is " + re.findall(r"\d{7}", prompt_of(m))[-1], model="scripted/sub"
    )
    models = Models(root, sub, sub)
    for out in ("first", "second"):  # a fresh results dir: everything reruns but the cache
        config = BenchConfig(
            task="sniah",
            methods=("rlm", "simple-rlm"),
            lengths=(4096,),
            n=2,
            out=tmp_path / out,
            progress=False,
            sandbox="none",
            cache=tmp_path / "cache.sqlite",
            seed=0,  # the same instances in both dirs (a run without a seed gets a fresh one)
        )
        records = asyncio.run(run_bench(config, models=models))
        assert {r["score"] for r in records if r["method"] == "rlm"} == {1.0}
        if out == "first":
            sent = len(sub.calls)
            assert sent > 0
    assert len(sub.calls) == sent


@pytest.mark.extra("bench")
def test_real_data_sets_bound_n_and_plot_by_instance_length(tmp_path: Path) -> None:
    rows = [
        {
            "_id": str(i),
            "domain": "Code Repository Understanding",
            "question": "Which?",
            "choice_A": "a",
            "choice_B": "b",
            "choice_C": "c",
            "choice_D": "d",
            "answer": "A",
            "context": "x = 1\n" * (200 * (i + 1)),
        }
        for i in range(3)
    ]
    data = tmp_path / "lb.json"
    data.write_text(json.dumps(rows))
    lm = ScriptedLM(lambda m: "0", model="scripted/root")
    config = BenchConfig(
        task="codeqa", methods=("base",), n=50, out=tmp_path / "out", progress=False, data=data
    )
    records = asyncio.run(run_bench(config, models=Models(lm, lm, lm)))
    assert len(records) == 3 and {r["score"] for r in records} == {1.0}
    assert plot(records, tmp_path / "fig.png", "codeqa").exists()


def test_mixed_models_are_reported_separately(tmp_path: Path) -> None:
    recs = []
    for model in ("a/x", "b/y"):
        lm = ScriptedLM(_needle_finder, model=model)
        config = BenchConfig(
            task="sniah", methods=("base",), lengths=(2048,), n=1, out=tmp_path, progress=False
        )
        recs = asyncio.run(run_bench(config, models=Models(lm, lm, lm)))
    labels = {r["method"] for r in summarize(recs)}
    assert labels == {"base (a/x)", "base (b/y)"}


RECALL_CODE = """```repl
docs = [d for d in context if d.split("\\n")[0] in WANTED]
answers = llm_query_batched(["Read: " + d for d in docs])
FINAL("done")
```"""


def test_browsecomp_records_the_evidence_recall_of_what_reached_a_model(tmp_path: Path) -> None:
    from fastrlm.bench._browsecomp import generate

    inst = generate(0, 16_384, 0)
    wanted = [f"docid: {d}" for d in inst.meta["evidence_docids"][:1]]
    root = ScriptedLM(lambda m: RECALL_CODE.replace("WANTED", repr(wanted)), model="scripted/r")
    sub = ScriptedLM(lambda m: "ok", model="scripted/s")
    config = BenchConfig(
        task="browsecomp",
        methods=("rlm", "simple-rlm"),
        lengths=(16_384,),
        n=1,
        out=tmp_path,
        progress=False,
        sandbox="none",
        seed=0,  # the instance generated above
    )
    records = asyncio.run(run_bench(config, models=Models(root, sub, sub)))
    recall = {r["method"]: r["evidence_recall"] for r in records}
    evidence = len(inst.meta["evidence_docids"])
    assert recall == {"rlm": round(1 / evidence, 4), "simple-rlm": 1.0}
    assert "evidence recall" in format_table(summarize(records))


def test_the_batch_hint_reaches_the_rlm_system_prompt(tmp_path: Path) -> None:
    root = ScriptedLM(lambda m: "```repl\nFINAL('x')\n```", model="scripted/root")
    config = BenchConfig(
        task="sniah",
        methods=("rlm",),
        lengths=(2048,),
        n=1,
        out=tmp_path,
        progress=False,
        batch_hint=True,
        sandbox="none",
    )
    asyncio.run(run_bench(config, models=Models(root, root, root)))
    assert "about 200,000 characters" in root.calls[0][0]["content"]


def test_baseline_calls_share_one_limit(tmp_path: Path) -> None:
    async def slow(messages: list[ChatMessage]) -> str:
        await asyncio.sleep(0)  # yield so that calls overlap
        return "NONE"

    lm = ScriptedLM(slow, model="scripted/root")
    config = BenchConfig(
        task="sniah",
        methods=("simple-rlm",),
        lengths=(65536,),
        n=4,
        out=tmp_path,
        progress=False,
        concurrency=2,
    )
    asyncio.run(run_bench(config, models=Models(lm, lm, lm)))
    assert 1 < lm.max_in_flight <= 2 * 4


@pytest.mark.parametrize(
    ("model", "preset"),
    [
        ("openai/gpt-5", "gpt-5"),
        ("fireworks/accounts/fireworks/models/qwen3-coder-480b-a35b-instruct", "qwen3-coder"),
        ("openrouter/qwen/qwen3-8b", "qwen3-8b"),
    ],
)
def test_prompt_paper_uses_the_preset_of_the_root_model(model: str, preset: str) -> None:
    from fastrlm import Prompts
    from fastrlm.bench._config import make_method
    from fastrlm.bench._rlm_method import RLMMethod

    lm = ScriptedLM(["unused"], model=model)
    config = BenchConfig(task="oolong", model=model, prompt="paper")
    for name in ("rlm", "rlm-no-subcalls"):
        method = make_method(name, Models(lm, lm, lm), config)
        assert isinstance(method, RLMMethod) and method.prompts == Prompts.paper(preset)
    default = make_method("rlm", Models(lm, lm, lm), BenchConfig(task="oolong", model=model))
    assert isinstance(default, RLMMethod) and default.prompts == Prompts()


def test_batch_hint_adds_the_coder_paragraph_once_to_a_paper_preset() -> None:
    from fastrlm._core.paper_prompts import CODER_BATCHING
    from fastrlm.bench._config import make_method
    from fastrlm.bench._rlm_method import RLMMethod

    for model in ("openai/gpt-5", "fireworks/qwen3-coder"):
        lm = ScriptedLM(["unused"], model=model)
        config = BenchConfig(task="oolong", model=model, prompt="paper", batch_hint=True)
        method = make_method("rlm", Models(lm, lm, lm), config)
        assert isinstance(method, RLMMethod)
        assert method.prompts.strategy_subcalls.count(CODER_BATCHING) == 1


def test_an_unknown_prompt_choice_is_refused() -> None:
    from fastrlm import ConfigurationError

    with pytest.raises(ConfigurationError, match="unknown prompt 'papers'"):
        BenchConfig(task="oolong", prompt="papers")


@pytest.mark.parametrize(("task", "search"), [("browsecomp", True), ("oolong", False)])
def test_codeact_has_bm25_on_browsecomp_only_and_codeact_bm25_everywhere(
    task: str, search: bool
) -> None:
    from fastrlm.bench import CodeActBM25
    from fastrlm.bench._config import make_method

    lm = ScriptedLM(["unused"])
    paper = make_method("codeact", Models(lm, lm, lm), BenchConfig(task=task))
    forced = make_method("codeact-bm25", Models(lm, lm, lm), BenchConfig(task=task))
    assert isinstance(paper, CodeActBM25) and isinstance(forced, CodeActBM25)
    assert paper.search is search and forced.search is True
    assert (paper.name, forced.name) == ("codeact", "codeact-bm25")


@pytest.mark.parametrize(
    ("reply", "score", "correct"),
    [
        ("extracted_final_answer: x\nreasoning: same\ncorrect: yes\nconfidence: 90", 1.0, True),
        ("extracted_final_answer: x\ncorrect: no", 0.0, False),
        # no verdict: a parse error, not correct (as the official accuracy counts it)
        ("I refuse to grade.", 0.0, None),
        ("extracted_final_answer: x\ncorrect: **yes**", 0.0, None),
    ],
)
def test_a_configured_judge_grades_browsecomp_and_exact_match_is_kept(
    tmp_path: Path, reply: str, score: float, correct: bool | None
) -> None:
    root = ScriptedLM(lambda m: "Explanation: guess\nExact Answer: Nobody\nConfidence: 5%")
    judge = ScriptedLM(lambda m: reply, model="scripted/judge")
    config = BenchConfig(task="browsecomp", methods=("base",), lengths=(16_000,), n=1,
                         out=tmp_path, progress=False)
    template = "Q: {question}\nR: {response}\n[correct_answer]: {correct_answer}"
    models = Models(root, root, root, judge, template)
    [rec] = asyncio.run(run_bench(config, models=models))
    assert rec["score_exact_match"] == 0.0 and rec["score"] == score
    assert rec["judge"]["correct"] is correct and rec["judge"]["model"] == "scripted/judge"
    assert rec["judge"]["parse_error"] is (correct is None)
    sent = prompt_of(judge.calls[0])
    assert sent.startswith("Q: ") and "R: Explanation: guess" in sent
    assert "Exact Answer: Nobody" in sent and "[correct_answer]:" in sent
    assert "Your response should be" not in sent  # the question, without the format block


def test_without_a_judge_browsecomp_is_scored_by_exact_match_only(tmp_path: Path) -> None:
    root = ScriptedLM(lambda m: "Exact Answer: Nobody")
    config = BenchConfig(task="browsecomp", methods=("base",), lengths=(16_000,), n=1,
                         out=tmp_path, progress=False)
    [rec] = asyncio.run(run_bench(config, models=Models(root, root, root)))
    assert "judge" not in rec and rec["score"] == 0.0


def test_a_judge_with_scripted_models_is_refused_not_ignored() -> None:
    from fastrlm import ConfigurationError
    from fastrlm.bench._config import resolve_models

    with pytest.raises(ConfigurationError, match="--judge"):
        resolve_models(BenchConfig(task="browsecomp", scripted=True, judge="openai/gpt-4.1"))


class _Answers:
    """A method whose answer is fixed: what a run ends with when a failed call's text becomes
    its FINAL."""

    name = "fixed"

    def __init__(self, answer: str) -> None:
        self.answer = answer

    async def run(self, question: str, context: str | list[str], meter: object = None) -> object:
        from fastrlm.bench._meter import MethodResult

        return MethodResult(self.answer, "final", 0.0, {}, 1, 1, 0.0)


@pytest.mark.parametrize(
    ("answer", "score", "only"),
    [
        # the failed call's message quotes the prompt, needle included: no longer a 100
        ("[error: prompt_too_long: 524,288 characters ... is: {gold}. ... split it]", 0.0, True),
        ("[error: subcall_failed: boom] [error: timeout: {gold}]", 0.0, True),
        # an answer that quotes an error beside a real answer is scored, and flagged
        ("The number is {gold}. (one chunk said [error: timeout: took too long])", 1.0, False),
    ],
)
def test_an_error_string_answer_is_never_scored_unflagged(
    answer: str, score: float, only: bool, tmp_path: Path
) -> None:
    from fastrlm import PriceTable
    from fastrlm.bench import get_task
    from fastrlm.bench._runner import run_method

    task = get_task("sniah")
    inst = task.instance(0, 1024, 0)
    config = BenchConfig(task="sniah", out=tmp_path, scripted=True, progress=False, seed=0)
    method = _Answers(answer.format(gold=inst.gold))
    rec = asyncio.run(run_method(
        config, task, _models(), method, "fixed", 1024, 0, inst, 10, cache=None, limiter=None,
        prices=PriceTable.default(), tokenizer_name="t"))  # type: ignore[arg-type]
    assert rec["score"] == score
    assert rec["error_answer"] in ("prompt_too_long", "subcall_failed", "timeout")
    assert rec["error_answer_only"] is only
    row = next(r for r in summarize([rec]) if r["length"] == 1024)
    assert row["error_answers"] == 1


def test_a_plain_answer_is_not_flagged(tmp_path: Path) -> None:
    from fastrlm import PriceTable
    from fastrlm.bench import get_task
    from fastrlm.bench._runner import run_method

    task = get_task("sniah")
    inst = task.instance(0, 1024, 0)
    config = BenchConfig(task="sniah", out=tmp_path, scripted=True, progress=False, seed=0)
    rec = asyncio.run(run_method(
        config, task, _models(), _Answers(f"It is {inst.gold} [see note]"), "fixed", 1024, 0,
        inst, 10, cache=None, limiter=None, prices=PriceTable.default(),
        tokenizer_name="t"))  # type: ignore[arg-type]
    assert rec["score"] == 1.0 and "error_answer" not in rec
