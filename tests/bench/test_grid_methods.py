"""The v3 method grid: RLM depths, CodeAct + sub-calls, the coding agent with the context in
workspace files, the cost-matched self-consistency control; the Table-1 grid and its plot.
Each is run end to end on scripted models, failure sides included."""

from __future__ import annotations

import asyncio
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from fastrlm import Price, ProviderError
from fastrlm.bench import BenchConfig, Meter, MethodResult, run_bench
from fastrlm.bench._codeact import CodeActBM25
from fastrlm.bench._config import Models, make_method
from fastrlm.bench._consistency import SelfConsistency, majority, samples_for
from fastrlm.bench._grid import cost_score_svg, format_grid
from fastrlm.bench._report import summarize
from fastrlm.bench._rlm_method import RLMMethod
from fastrlm.bench._runner import rlm_mean_cost, split_tokens
from fastrlm.bench._sniah import generate as sniah
from fastrlm.bench._sniah import score as sniah_score
from fastrlm.bench._workspace_agent import MAX_PATTERN_CHARS, WorkspaceAgent, write_workspace
from fastrlm.lm import ChatMessage
from fastrlm.testing import ScriptedLM, prompt_of


def _run(method: Any, question: str, context: str | list[str],
         meter: Meter | None = None) -> MethodResult:
    result: MethodResult = asyncio.run(method.run(question, context, meter))
    return result


# ---------------------------------------------------------------- RLM depth


@pytest.mark.parametrize(
    ("name", "depth", "subcalls"),
    [("rlm-no-subcalls", 1, False), ("rlm", 1, True), ("rlm-depth-2", 2, True),
     ("rlm-depth-3", 3, True)],
)
def test_rlm_rows_run_at_their_depth(name: str, depth: int, subcalls: bool) -> None:
    lm = ScriptedLM(lambda m: "x")
    method = make_method(name, Models(lm, lm, lm), BenchConfig(task="sniah"))
    assert isinstance(method, RLMMethod)
    assert method.budget.max_depth == depth and method.subcalls is subcalls


def test_a_depth_two_rlm_can_recurse_into_a_child_rlm() -> None:
    def root(messages: list[ChatMessage]) -> str:
        text = prompt_of(messages)
        if "child question" in text:  # the child RLM's own root turn
            return "```repl\nFINAL('child says ' + str(len(context)))\n```"
        return ("```repl\nFINAL(rlm_query('child question', context[:10]))\n```")

    lm = ScriptedLM(root, model="scripted/root")
    method = make_method("rlm-depth-2", Models(lm, lm, lm),
                         BenchConfig(task="sniah", sandbox="process"))
    res = _run(method, "q?", "0123456789abcdef")
    assert res.stop_reason == "final" and res.answer == "child says 10", res


# ---------------------------------------------------------------- CodeAct + sub-calls


def _codeact_agent(code: str) -> ScriptedLM:
    def reply(messages: list[ChatMessage]) -> str:
        turn = sum(1 for m in messages if m["role"] == "assistant")
        if turn == 0:
            return f"```python\n{code}\n```"
        last = messages[-1]["content"]
        return "ANSWER: " + last.split("```")[1].strip()

    return ScriptedLM(reply, model="scripted/agent")


def test_codeact_with_subcalls_asks_the_sub_model_and_meters_it() -> None:
    sub = ScriptedLM(lambda m: "sub says " + prompt_of(m)[::-1], model="scripted/sub")
    agent = _codeact_agent("print(llm_query('olleh'))")
    meter = Meter()
    res = _run(CodeActBM25(agent, search=False, sandbox="none", sub_model=sub), "q?", "ctx",
               meter)
    assert res.answer == "sub says hello" and res.subcalls == 1
    assert "llm_query" in agent.calls[0][0]["content"]  # told in its system prompt


def test_codeact_without_subcalls_gets_an_error_text_not_an_answer() -> None:
    agent = _codeact_agent("print(llm_query('hi'))")
    res = _run(CodeActBM25(agent, search=False, sandbox="none"), "q?", "ctx")
    assert res.answer.startswith("[error: subcalls_disabled")


def test_codeact_subcalls_refuse_a_prompt_over_the_sub_window_and_survive_a_failure() -> None:
    def sub_reply(messages: list[ChatMessage]) -> str:
        raise ProviderError("the sub-model is down")

    sub = ScriptedLM(sub_reply, model="scripted/sub")
    agent = _codeact_agent(
        "print(llm_query('x' * 5_000_000)[:40], '|', llm_query('fine')[:30])")
    res = _run(CodeActBM25(agent, search=False, sandbox="none", sub_model=sub), "q?", "c")
    assert "[error: prompt_too_long" in res.answer and "[error: subcall_failed" in res.answer
    assert len(sub.calls) == 1  # the oversize prompt never reached the model


# ---------------------------------------------------------------- coding agent


def test_the_workspace_holds_the_context_cut_at_line_ends(tmp_path: Path) -> None:
    text = "".join(f"line {i}\n" for i in range(1000))
    files = write_workspace(text, tmp_path, 1000)
    assert "".join(files[k] for k in sorted(files)) == text
    assert all(t.endswith("\n") for t in files.values()) and len(files) > 5
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files)
    docs = write_workspace(["a", "b"], tmp_path, 1000)
    assert docs == {"doc_0001.txt": "a", "doc_0002.txt": "b"}


def _needle_agent(messages: list[ChatMessage]) -> str:
    turn = sum(1 for m in messages if m["role"] == "assistant")
    if turn == 0:
        return "GREP special magic \\w+ for"
    if turn == 1:
        hit = re.search(r"^(\S+?):(\d+):", messages[-1]["content"], re.M)
        assert hit, messages[-1]["content"]
        return f"READ {hit.group(1)} {hit.group(2)} 1"
    value = re.search(r"is: (\S+?)\.", messages[-1]["content"])
    return f"ANSWER: {value.group(1) if value else 'none'}"


def test_the_coding_agent_finds_a_needle_in_its_workspace_files() -> None:
    inst = sniah(0, 32_768, 0)
    agent = ScriptedLM(_needle_agent, model="scripted/agent")
    res = _run(WorkspaceAgent(agent, sandbox="none", file_chars=20_000), inst.query,
               inst.context)
    assert sniah_score(res.answer, inst) == 1.0
    assert res.extra["files"] > 1 and res.extra["actions"] == {"read": 1, "grep": 1, "python": 0}
    first = agent.calls[0][1]["content"]
    assert inst.context[:200] not in first  # the context is offloaded, not in the prompt


def test_the_coding_agent_runs_python_over_the_workspace() -> None:
    def reply(messages: list[ChatMessage]) -> str:
        turn = sum(1 for m in messages if m["role"] == "assistant")
        if turn == 0:
            return "```python\nprint(sum(t.count('x') for t in context.values()))\n```"
        return "ANSWER: " + messages[-1]["content"].split("```")[1].strip()

    res = _run(WorkspaceAgent(ScriptedLM(reply), sandbox="process"), "how many x?",
               ["xx", "x y", "z"])
    assert res.answer == "3", res


@pytest.mark.parametrize(
    ("action", "said"),
    [
        ("GREP " + "a" * (MAX_PATTERN_CHARS + 1), "at most 500"),
        ("GREP ([unclosed", "Not a regular expression"),
        ("READ ../../etc/passwd", "No file"),
        ("GREP zzz-nothing", "No match."),
        ("READ context_001.txt 999999 5", "lines 999999-999998 of"),
        ("I think so.", "No action found"),
    ],
)
def test_the_coding_agent_answers_bad_actions_with_a_clear_observation(
    action: str, said: str
) -> None:
    seen: list[str] = []

    def reply(messages: list[ChatMessage]) -> str:
        if len(messages) > 2:
            seen.append(messages[-1]["content"])
            return "ANSWER: done"
        return action

    res = _run(WorkspaceAgent(ScriptedLM(reply), sandbox="none"), "q?", "some\ntext\n")
    assert res.answer == "done" and said in seen[0], seen


def test_the_coding_agent_cuts_long_observations_and_stops_at_its_turn_limit() -> None:
    res = _run(WorkspaceAgent(ScriptedLM(lambda m: "GREP a", model="scripted/a"),
                              sandbox="none", max_iterations=3, grep_hits=10_000,
                              observation_chars=100),
               "q?", "a\n" * 5000)
    assert res.stop_reason == "max_iterations" and res.iterations == 3


# ---------------------------------------------------------------- self-consistency


def test_majority_vote_folds_case_and_punctuation_and_ties_go_to_the_earliest() -> None:
    assert majority(["Paris.", "London", "paris", "LONDON "]) == ("Paris.", 2)
    assert majority(["b", "a"]) == ("b", 1)
    assert majority(["", "  "]) == ("", 0)


@pytest.mark.parametrize(
    ("target", "first", "k"),
    [(None, 0.1, 5), (1.0, 0.0, 5), (1.0, 0.1, 10), (0.05, 0.1, 1), (100.0, 0.1, 32)],
)
def test_samples_match_the_target_cost(target: float | None, first: float, k: int) -> None:
    assert samples_for(target, first, 5, 32) == k


def _priced_meter(model: str, usd_per_mtok: float) -> Meter:
    from fastrlm import PriceTable

    return Meter(prices=PriceTable.default({model: Price(usd_per_mtok, usd_per_mtok)}))


def test_self_consistency_spends_the_target_and_returns_the_majority() -> None:
    answers = iter(["A", "B", "b.", "A", "B", "C"] * 10)
    lm = ScriptedLM(lambda m: next(answers), model="scripted/sc")
    meter = _priced_meter("scripted/sc", 1000.0)
    one = Meter(prices=meter.prices)
    asyncio.run(one.complete(lm, [{"role": "user", "content": "q?\n\nctx"}]))
    target = one.cost_usd * 4.5  # room for 4 samples
    answers = iter(["B", "A", "b.", "B", "C"])
    res = _run(SelfConsistency(lm, target_usd=target), "q?", "ctx", meter)
    assert res.extra["samples"] == 4 and res.answer == "B" and res.extra["votes"] == 3
    assert meter.cost_usd <= target


def test_self_consistency_is_na_over_the_window_and_reports_a_failed_sample() -> None:
    lm = ScriptedLM(lambda m: "x", model="scripted/sc")
    over = _run(SelfConsistency(lm, window=10), "q?", "c" * 1000)
    assert over.exceeded and over.stop_reason == "context_exceeded" and not lm.calls
    calls = iter([None, ProviderError("rate limited")])

    def flaky(messages: list[ChatMessage]) -> str:
        err = next(calls, None)
        if err is not None:
            raise err
        return "A"

    failed = _run(SelfConsistency(ScriptedLM(flaky), default_k=2), "q?", "c")
    assert failed.stop_reason == "error" and "rate limited" in (failed.error or "")


def test_the_cost_matched_control_runs_after_the_rlm_at_its_mean_cost(tmp_path: Path) -> None:
    rlm_root = ScriptedLM(lambda m: "```repl\nFINAL('A')\n```", model="scripted/root")
    config = BenchConfig(task="sniah", methods=("base-sc", "rlm"), lengths=(1024,), n=2,
                         out=tmp_path, progress=False, sandbox="process", seed=0,
                         prices=(("scripted/root", Price(1000.0, 1000.0)),))
    records = asyncio.run(run_bench(config, models=Models(rlm_root, rlm_root, rlm_root)))
    rlm_cost = rlm_mean_cost(records, "sniah", "scripted/root", 0)
    assert rlm_cost is not None and rlm_cost > 0
    sc = [r for r in records if r["method"] == "base-sc"]
    assert len(sc) == 2 and all(r["extra"]["target_usd"] == rlm_cost for r in sc)
    assert sum(r["cost_usd"] for r in sc) / 2 <= rlm_cost * 1.0001
    assert [r["method"] for r in records][-2:] == ["base-sc", "base-sc"]  # after the RLM


def test_rlm_mean_cost_is_none_before_any_rlm_ran() -> None:
    assert rlm_mean_cost([{"method": "base", "task": "t", "model": "m", "seed": 0,
                           "cost_usd": 1.0}], "t", "m", 0) is None


# ---------------------------------------------------------------- tokens, grid and plot


def test_root_and_sub_tokens_are_split_by_model() -> None:
    usage = {"by_model": {"root": {"input_tokens": 10, "output_tokens": 2},
                          "sub": {"input_tokens": 100, "output_tokens": 7}}}
    assert split_tokens(usage, "root", "sub") == (12, 107)
    assert split_tokens(usage, "same", "same") == (None, None)


def test_one_model_as_root_and_sub_is_split_by_role() -> None:
    usage = {"input_tokens": 110, "output_tokens": 9}
    assert split_tokens(usage, "same", "same", 107) == (12, 107)
    assert split_tokens(usage, "same", "same", 0) == (119, 0)


def test_a_depth_two_rlm_on_one_model_books_child_turns_and_sub_calls_as_sub_work() -> None:
    # Qwen3-Coder in the paper is its own sub-model: the by-model split cannot tell root from
    # sub there, so the RLM counts sub-work by role from its events
    def one_model(messages: list[ChatMessage]) -> str:
        text = "\n".join(str(m["content"]) for m in messages)
        if text.startswith("leaf: "):  # the child's sub-call
            return "sub says hi"
        if "child question" in text and "q?" not in text:  # the child RLM's root turns
            if any(m["role"] == "assistant" for m in messages):
                return "```repl\nFINAL(got)\n```"
            return "```repl\ngot = llm_query('leaf: ' + context)\nprint(got)\n```"
        return "```repl\nFINAL(rlm_query('child question', context[:10]))\n```"

    lm = ScriptedLM(one_model, model="scripted/same")
    method = make_method("rlm-depth-2", Models(lm, lm, lm),
                         BenchConfig(task="sniah", sandbox="process"))
    meter = Meter()
    res = _run(method, "q?", "0123456789abcdef", meter)
    assert res.stop_reason == "final" and res.answer == "sub says hi", res
    assert len(lm.calls) == 4  # root, child turn 1, its sub-call, child turn 2
    total = int(res.usage["input_tokens"]) + int(res.usage["output_tokens"])
    assert res.sub_tokens is not None and 0 < res.sub_tokens < total
    root, sub = split_tokens(res.usage, "scripted/same", "scripted/same", res.sub_tokens)
    assert root is not None and sub == res.sub_tokens and root + sub == total


def test_baseline_sub_calls_are_sub_work_on_one_model() -> None:
    lm = ScriptedLM(lambda m: "chunk notes", model="scripted/same")
    meter = Meter()
    asyncio.run(meter.complete(lm, [{"role": "user", "content": "root turn"}]))
    assert meter.sub_tokens == 0
    asyncio.run(meter.complete(lm, [{"role": "user", "content": "a sub-call"}], subcall=True))
    assert 0 < meter.sub_tokens < meter.usage.input_tokens + meter.usage.output_tokens


def _rec(method: str, task: str, score: float, cost: float, **kw: Any) -> dict[str, Any]:
    base = {"method": method, "model": "m", "task": task, "length": 0, "score": score,
            "cost_usd": cost, "input_tokens": 1, "output_tokens": 1, "subcalls": 0,
            "duration_s": 1.0, "stop_reason": "final", "root_tokens": 5, "sub_tokens": 9}
    base.update(kw)
    return base


def test_summaries_carry_median_and_p95_cost_and_token_split() -> None:
    rows = summarize([_rec("rlm", "oolong", 1.0, c) for c in (0.1, 0.2, 0.3, 0.4, 10.0)])
    row = next(r for r in rows if r["length"] == "all")
    assert row["cost_median"] == 0.3 and 0.4 < row["cost_p95"] < 10.0
    assert row["root_tokens"] == 5 and row["sub_tokens"] == 9


def test_the_grid_is_table_one_shaped_with_the_papers_na_forms() -> None:
    records = [
        _rec("rlm-depth-2", "codeqa", 1.0, 0.1), _rec("rlm-depth-2", "oolong", 0.5, 0.2),
        _rec("base", "browsecomp", 0.0, 0.0, exceeded=True),
        _rec("oracle", "oolong", 0.0, 0.0, not_applicable="no hidden truth"),
        _rec("rlm", "codeqa", 0.0, 0.05),
    ]
    grid = format_grid(records)
    lines = grid.splitlines()
    assert lines[0] == "| method | CodeQA | BrowseComp+ (1K) | OOLONG |"
    order = [line.split(" |")[0] for line in lines[2:7]]
    assert order[:4] == ["| Base model", "| RLM depth 1", "| RLM depth 2", "| oracle (control)"]
    base = next(line for line in lines if line.startswith("| Base model"))
    assert "0.00* (N/A)" in base
    oracle = next(line for line in lines if line.startswith("| oracle"))
    assert "| N/A |" in oracle
    depth2 = next(line for line in lines if line.startswith("| RLM depth 2"))
    assert "100.00 [100.00, 100.00] ($0.100, n=1)" in depth2


def test_the_grid_prints_every_cell_in_full_and_flags_error_answers() -> None:
    records = [
        _rec("rlm", "oolong", 1.0, c, duration_s=2.0) for c in (0.1, 0.2, 0.3, 0.4, 10.0)
    ] + [_rec("base", "oolong", 0.0, 0.01, error_answer="prompt_too_long"),
         _rec("oracle", "oolong", 0.0, 0.0, not_applicable="no hidden truth")]
    grid = format_grid(records)
    base = next(ln for ln in grid.splitlines() if ln.startswith("| Base model"))
    assert "1 error answer(s)!" in base
    detail = next(ln for ln in grid.splitlines() if ln.startswith("| OOLONG | rlm |"))
    assert detail == ("| OOLONG | rlm | 5 | 100.00 [100.00, 100.00] | $2.2000 / $0.3000 / "
                      f"${summarize(records)[-1]['cost_p95']:.4f} | 5 / 9 | 2.0 | 0 |")
    assert not any(ln.startswith("| OOLONG | oracle") for ln in grid.splitlines())
    base_detail = next(ln for ln in grid.splitlines() if ln.startswith("| OOLONG | base |"))
    assert base_detail.startswith("| OOLONG | base | 1 | 0.00 [0.00, 0.00] |")
    assert base_detail.endswith("| 1 |")  # its error answer


def test_the_cost_vs_score_plot_is_valid_svg_with_one_point_per_priced_cell(
    tmp_path: Path,
) -> None:
    records = [_rec("rlm", "oolong", 1.0, 0.4), _rec("base", "oolong", 0.5, 0.01),
               _rec("rlm", "codeqa", 0.0, 2.0), _rec("oracle", "codeqa", 1.0, 0.0)]
    path = cost_score_svg(records, tmp_path / "p.svg", "t <&>")
    root = ET.parse(path).getroot()
    circles = root.findall("{http://www.w3.org/2000/svg}circle")
    assert len(circles) == 3 + 2  # three priced cells, two legend marks
    assert "oracle (codeqa)" in path.read_text()  # free cells are named, not dropped silently


# ---------------------------------------------------------------- cost estimate


def test_the_estimate_grows_with_the_data_and_follows_the_prices() -> None:
    from fastrlm import PriceTable
    from fastrlm.bench import get_task
    from fastrlm.bench._estimate import estimate

    prices = PriceTable.default({"r": Price(1.0, 10.0), "s": Price(0.1, 1.0)})
    names = ("r", "s", "s")
    task = get_task("sniah")
    small = estimate(BenchConfig(task="sniah", methods=("rlm", "base", "oracle"), n=2,
                                 lengths=(4096,), seed=0), task, names, prices)
    large = estimate(BenchConfig(task="sniah", methods=("rlm", "base", "oracle"), n=2,
                                 lengths=(65536,), seed=0), task, names, prices)
    assert small.instances == 2 and small.usd["oracle"] == 0.0
    assert 0 < small.usd["rlm"] < large.usd["rlm"] and small.usd["base"] < large.usd["base"]
    over = estimate(BenchConfig(task="sniah", methods=("base",), n=1, lengths=(65536,),
                                window=1000, seed=0), task, names, prices)
    assert over.usd["base"] == 0.0  # not sent over the window: N/A, free
    unknown = estimate(BenchConfig(task="sniah", methods=("rlm",), n=1, lengths=(4096,),
                                   seed=0), task, ("x/unpriced", "x/unpriced", "x/unpriced"),
                       prices)
    assert unknown.unpriced == {"x/unpriced"} and "not priced" in unknown.text()


def test_the_cli_prints_the_estimate_and_calls_no_model(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from fastrlm.bench._cli import bench

    fixture = Path(__file__).parent / "fixtures" / "oolong_synth_validation.jsonl"
    result = CliRunner().invoke(bench, [
        "oolong", "--data", str(fixture), "--lengths", "1K", "--method", "rlm,base",
        "--model", "openai/gpt-5", "--estimate", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output  # no API key needed: nothing is called
    assert "Cost estimate before the run" in result.output and "rlm: $" in result.output
    assert not (tmp_path / "results.jsonl").exists()


def test_grid_dirs_are_checked_before_the_run_and_join_with_their_last_seed(
    tmp_path: Path,
) -> None:
    pytest.importorskip("wonderwords")  # the generated task: the bench extra
    import json

    from click.testing import CliRunner

    from fastrlm.bench._cli import bench

    args = ["sniah", "--method", "base", "--scripted", "--lengths", "1K", "--n", "1",
            "--quiet", "--no-plot"]
    missing = CliRunner().invoke(bench, [*args, "--out", str(tmp_path / "a"),
                                         "--grid", str(tmp_path / "nope")])
    assert missing.exit_code != 0 and "no results.jsonl" in missing.output
    assert not (tmp_path / "a").exists()
    other = tmp_path / "other"
    other.mkdir()
    rows = [_rec("rlm", "codeqa", 1.0, 0.1, seed=1), _rec("rlm", "codeqa", 0.0, 0.1, seed=2)]
    (other / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ok = CliRunner().invoke(bench, [*args, "--out", str(tmp_path / "b"), "--grid", str(other)])
    assert ok.exit_code == 0, ok.output
    grid = (tmp_path / "b" / "table1.md").read_text()
    assert "| CodeQA | S-NIAH |" in grid.splitlines()[0]
    depth1 = next(x for x in grid.splitlines() if x.startswith("| RLM depth 1 |"))
    assert "0.00 [0.00, 0.00] ($0.100, n=1)" in depth1  # seed 2 only, not pooled with seed 1
