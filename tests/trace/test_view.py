"""The HTML view of a trace: real runs rendered, escaped, nested, bounded in size."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from fastrlm import RLM, Budget
from fastrlm._core.events import IterationStarted, RunStarted, SubcallFinished, SubcallStarted
from fastrlm.testing import ScriptedLM, prompt_of
from fastrlm.trace import read_trace
from fastrlm.trace._html import render_html
from fastrlm.trace._html_model import LISTED_SUBCALLS


def page_data_of(page: str) -> dict[str, Any]:
    """The JSON the page's script draws from."""
    match = re.search(r'<script type="application/json" id="fastrlm-data">(.*?)</script>', page)
    assert match is not None
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def repl(code: str, prose: str = "") -> str:
    return f"{prose}\n```repl\n{code}\n```\n"


def run_to_html(root: ScriptedLM, sub: ScriptedLM, home: Path, **kw: Any) -> tuple[str, str]:
    rlm = RLM(root, sub, sandbox="none", trace=home, **kw)
    out = rlm.completion("How many <b>cats</b>?", context="cat " * 50)
    assert out.trace_path is not None
    return render_html(read_trace(Path(out.trace_path))), out.trace_id


@pytest.fixture
def simple_page(tmp_path: Path) -> str:
    root = ScriptedLM(
        [
            repl("parts = llm_query_batched(['count a', 'count b', 'count c'])\nprint(parts)",
                 "I will look <script>alert('x')</script> first."),
            repl("1/0"),
            repl("FINAL('there are 50 cats')"),
        ],
        model="scripted/root",
    )
    sub = ScriptedLM(lambda m: "sub says " + prompt_of(m)[:7], model="scripted/sub")
    page, _ = run_to_html(root, sub, tmp_path)
    return page


def test_page_shows_question_code_outputs_subcalls_answer_and_stop_reason(
    simple_page: str,
) -> None:
    page = simple_page
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "How many &lt;b&gt;cats&lt;/b&gt;?" in page
    assert "scripted/root" in page and "scripted/sub" in page
    assert "llm_query_batched([&#x27;count a&#x27;" in page
    assert "sub says count a" in page  # the printed output and the sub-call reply preview
    assert "3 sub-call(s)" in page
    assert "ZeroDivisionError" in page and 'class="badge bad">error<' in page
    assert "iteration 3/" in page
    assert "there are 50 cats" in page
    assert 'class="badge ok">final<' in page
    assert "sha256" in page and "200 chars" in page
    assert "incomplete" not in page


def test_untrusted_model_text_is_escaped(simple_page: str) -> None:
    assert "<script>alert" not in simple_page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in simple_page
    # the page's own script is the only one, and it reaches no network
    assert simple_page.count("<script>") == 1
    assert "http://" not in simple_page and "https://" not in simple_page


def test_page_never_holds_the_context_text(tmp_path: Path) -> None:
    secret = "TOP-SECRET-CONTEXT-" * 100
    root = ScriptedLM([repl("FINAL(str(len(context)))")], model="scripted/root")
    rlm = RLM(root, ScriptedLM(["x"]), sandbox="none", trace=tmp_path)
    out = rlm.completion("q", context=secret)
    page = render_html(read_trace(Path(str(out.trace_path))))
    assert "TOP-SECRET" not in page
    assert f"{len(secret):,} chars" in page


def test_child_runs_are_nested_under_the_parent_iteration(tmp_path: Path) -> None:
    def root_fn(messages: Any) -> str:
        if "part" in messages[1]["content"]:
            return repl("x = llm_query_batched(['s1', 's2'])\nFINAL('child done')")
        return repl("r = rlm_query_batched(['part 1', 'part 2'])\nFINAL(' | '.join(r))")

    root = ScriptedLM(root_fn, model="scripted/root")
    sub = ScriptedLM(lambda m: "sub", model="scripted/sub")
    page, root_id = run_to_html(root, sub, tmp_path, budget=Budget(max_depth=2))
    trace = read_trace(tmp_path / "traces" / f"{root_id}.jsonl")
    children = [ev["child_run_id"] for ev in trace.events if ev["type"] == "child.started"]
    assert len(children) == 2
    root_iteration = page.index('<section class="iter"><h3>iteration 1/')
    root_block = page.index("rlm_query_batched([&#x27;part 1&#x27;")
    for child_id in children:
        at = page.index(f'child run <code>{child_id}</code> (depth 1)')
        assert root_iteration < root_block < at
        assert page.count(f"child run <code>{child_id}</code>") == 1  # drawn once, inside
    # each child's own iteration and sub-calls sit inside its <details>
    first = page.index(f"<code>{children[0]}</code>")
    assert page.index("2 sub-call(s)", first) < page.index(f"<code>{children[1]}</code>")
    assert "child done | child done" in page


def test_an_incomplete_trace_still_renders_marked_incomplete(tmp_path: Path) -> None:
    root = ScriptedLM([repl("print('working')"), repl("FINAL('done')")], model="scripted/root")
    rlm = RLM(root, ScriptedLM(["x"]), sandbox="none", trace=tmp_path)
    path = Path(str(rlm.completion("q", context="c").trace_path))
    lines = path.read_text().splitlines()
    cut = [ln for ln in lines if json.loads(ln)["type"] not in ("final", "run.finished")]
    path.write_text("\n".join(cut[:-1]) + '\n{"type": "code.exec')  # killed mid-write
    page = render_html(read_trace(path))
    assert 'class="badge bad">incomplete<' in page
    assert "This trace is incomplete" in page
    assert "working" in page
    assert "1 unreadable trace line(s)" in page


def test_long_outputs_and_answers_are_clipped_with_a_note(tmp_path: Path) -> None:
    answer = "A" * 30_000
    root = ScriptedLM([repl(f"FINAL('{'A'}' * {len(answer)})")], model="scripted/root")
    rlm = RLM(root, ScriptedLM(["x"]), sandbox="none", trace=tmp_path)
    out = rlm.completion("q", context="c")
    assert out.answer == answer
    page = render_html(read_trace(Path(str(out.trace_path))), max_chars=5_000)
    assert "A" * 5_000 in page and "A" * 5_001 not in page
    assert "25,000 more characters" in page
    assert '<details class="answer">' in page
    assert len(page) < 30_000


def write_big_trace(path: Path, n_calls: int) -> None:
    run = "big"
    events: list[Any] = [
        RunStarted(run_id=run, parent_run_id=None, question="big fan-out", model="m",
                   sub_model="s", context={"type": "str", "total_chars": 10**7}, sandbox="none",
                   budget={}),
        IterationStarted(run_id=run, iteration=1, max_iterations=30),
    ]
    for i in range(n_calls):
        events.append(SubcallStarted(run_id=run, call_id=f"c{i}", model="s", prompt_chars=5000,
                                     prompt_sha256="h", prompt_preview=f"prompt {i} " + "p" * 150))
        events.append(SubcallFinished(run_id=run, call_id=f"c{i}", model="s", input_tokens=1000,
                                      output_tokens=10, cost_usd=0.001, latency_s=i / n_calls,
                                      cached=False, error="rate limited" if i % 100 == 0 else None,
                                      response_chars=40, response_preview="r" * 40))
    with open(path, "w") as handle:
        for ev in events:
            handle.write(json.dumps(ev.to_dict()) + "\n")


def test_ten_thousand_subcalls_render_fast_into_a_bounded_page(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    write_big_trace(path, 5_000)  # 10,000 sub-call events
    trace = read_trace(path)
    started = time.perf_counter()
    page = render_html(trace)
    elapsed = time.perf_counter() - started
    assert elapsed < 2.0  # typically ~0.05 s; the bound only catches quadratic blow-ups
    # no HTML row per sub-call (only the capped list for JavaScript off): they are data
    assert page.count("<tr>") < LISTED_SUBCALLS + 30
    assert len(page) < 5_000 * 300  # one compact row each (previews clipped)
    assert "5,000 sub-call(s)" in page and "50 failed" in page
    assert "$5.0000" in page
    assert "prompt 4999 " in page  # the slowest call, with its prompt preview
    assert 'class="badge bad">incomplete<' in page
    data = page_data_of(page)
    assert len(data["calls"]["id"]) == 5_000
    assert sum(flag & 1 for flag in data["calls"]["flag"]) == 50
