"""The HTML view of a trace: real runs rendered, escaped, nested, bounded in size."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from fastrlm import RLM, Budget
from fastrlm._foundation.events import IterationStarted, RunStarted, SubcallFinished, SubcallStarted
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
    assert len(page) < 36_000  # the clipped texts, twice at most, and the page's own code


def test_a_reply_past_the_page_limit_folds_its_rest_and_its_cell_still_shows_once(
    tmp_path: Path,
) -> None:
    import html

    prose = "Let me think <b>aloud</b>. " + "".join(f"step {i}; " for i in range(400))
    reply = repl("print('the cell ran')\nFINAL('done')", prose)
    rlm = RLM(ScriptedLM([reply], model="scripted/root"), ScriptedLM(["x"]), sandbox="none",
              trace=tmp_path)
    out = rlm.completion("q", context="c")
    page = render_html(read_trace(Path(str(out.trace_path))), max_chars=1_000)
    rest = reply[1_000:]
    assert f"show the other {len(rest):,} characters of this reply" in page
    [folded] = re.findall(r'<pre class="rest">(.*?)</pre>', page, re.S)
    assert html.unescape(folded) == rest  # nothing of the reply is lost
    assert "<b>aloud" not in page  # model text stays text
    # the fence past the limit still shows as its cell, once, after the reply
    assert page.count('<pre class="code">print(&#x27;the cell ran') == 1
    assert page.count('<pre class="output">the cell ran') == 1


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


def test_each_code_cell_and_traceback_appears_once(simple_page: str) -> None:
    # the reply's fence is replaced by the cell that ran it, not shown beside it
    assert simple_page.count("llm_query_batched([&#x27;count a&#x27;") == 1
    assert simple_page.count('<pre class="code">1/0</pre>') == 1
    assert simple_page.count("1/0") == 2  # the cell's code, and the traceback quoting it
    # the traceback is in the output the model saw: not repeated as a separate error
    assert simple_page.count("ZeroDivisionError: division by zero") == 1
    assert "output the model saw, with the error" in simple_page


def test_a_fence_the_repl_did_not_run_is_shown_marked_not_run(tmp_path: Path) -> None:
    root = ScriptedLM(["Plan:\n```text\nstep one\n```\n" + repl("FINAL('ok')")],
                      model="scripted/root")
    page, _ = run_to_html(root, ScriptedLM(["x"]), tmp_path)
    assert "text (not run)" in page and page.count("step one") == 1
    assert page.count("FINAL(&#x27;ok&#x27;)") == 1


def test_an_error_not_in_the_output_is_shown_after_it(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    events = [
        {"type": "run.started", "run_id": "r", "depth": 0, "ts": 1.0, "parent_run_id": None,
         "question": "q"},
        {"type": "iteration.started", "run_id": "r", "depth": 0, "ts": 1.0, "iteration": 1},
        {"type": "code.executed", "run_id": "r", "depth": 0, "ts": 2.0, "iteration": 1,
         "block": 1, "code": "x()", "output": "partial output", "error": "Killed: timeout",
         "duration_s": 1.0, "timed_out": True},
    ]
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    page = render_html(read_trace(path))
    assert page.count("partial output") == 1 and page.count("Killed: timeout") == 1
    assert 'class="badge bad">timed out<' in page


def test_per_model_breakdown_call_tree_and_cost(tmp_path: Path) -> None:
    def root_fn(messages: Any) -> str:
        if "part" in messages[1]["content"]:
            return repl("x = llm_query_batched(['s1', 's2'])\nFINAL('child done')")
        return repl("r = rlm_query_batched(['part 1'])\nFINAL(r[0])")

    root = ScriptedLM(root_fn, model="scripted/root")
    sub = ScriptedLM(lambda m: "sub", model="scripted/sub")
    page, root_id = run_to_html(root, sub, tmp_path, budget=Budget(max_depth=2))
    table = page[page.index("<h2>Per model</h2>"):page.index("<h2>Call tree</h2>")]
    assert "scripted/root" in table and "root turns" in table
    assert "scripted/sub" in table and "sub-calls" in table
    tree = page[page.index('<ul class="tree">'):page.index("<h2>Answer</h2>")]
    assert tree.count("<li>") == 2 and 'href="#run-' in tree and "part 1" in tree
    trace = read_trace(tmp_path / "traces" / f"{root_id}.jsonl")
    child = next(ev["child_run_id"] for ev in trace.events if ev["type"] == "child.started")
    assert f'href="#run-{child}"' in tree and f'id="run-{child}"' in page


def test_tool_events_render_with_their_arguments_result_and_error(tmp_path: Path) -> None:
    base = {"run_id": "r", "depth": 0}
    events = [
        {**base, "type": "run.started", "ts": 1.0, "parent_run_id": None, "question": "q"},
        {**base, "type": "iteration.started", "ts": 1.0, "iteration": 1},
        {**base, "type": "tool.started", "ts": 1.1, "call_id": "t1", "tool": "search",
         "arguments_preview": '{"q": "<img src=x onerror=alert(1)>"}'},
        {**base, "type": "tool.finished", "ts": 1.5, "call_id": "t1", "tool": "search",
         "duration_s": 0.4, "error": None, "result_chars": 5000, "result_preview": "3 hits"},
        {**base, "type": "tool.finished", "ts": 1.6, "call_id": "t2", "tool": "fetch",
         "duration_s": 0.1, "error": "connection refused", "result_chars": 0,
         "result_preview": ""},
        {**base, "type": "tool.started", "ts": 1.7, "call_id": "t3", "tool": "slow_tool",
         "arguments_preview": "{}"},
    ]
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    page = render_html(read_trace(path))
    assert page.count('<details class="tool">') == 3
    assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "in 0.40s" in page and "result (5,000 chars)" in page and "3 hits" in page
    assert "connection refused" in page and 'class="badge warn">running<' in page
    spans = page_data_of(page)["spans"]
    assert [k for k in spans["kind"] if k == "tool"] == ["tool", "tool"]
    assert spans["bad"][spans["label"].index("fetch")] == 1


def test_page_data_columns_hold_every_call_with_times_relative_to_the_start(
    tmp_path: Path,
) -> None:
    path = tmp_path / "big.jsonl"
    write_big_trace(path, 20)
    data = page_data_of(render_html(read_trace(path)))
    calls = data["calls"]
    assert len({len(column) for column in calls.values()}) == 1  # aligned columns
    assert calls["id"] == [f"c{i}" for i in range(20)]
    assert all(start >= 0 for start in calls["start"])
    assert calls["flag"][0] & 1 and not calls["flag"][1] & 1  # c0 failed ("rate limited")
    assert calls["reply"][0] == "rate limited"
    assert all(len(p) <= data["preview_chars"] for p in calls["prompt"])
    assert data["models"] == ["s"] and data["runs"][0][0] == "big"


def test_script_data_cannot_close_its_script_element(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    events = [
        {"type": "run.started", "run_id": "r", "depth": 0, "ts": 1.0, "parent_run_id": None,
         "question": "q"},
        {"type": "subcall.started", "run_id": "r", "depth": 0, "ts": 1.0, "call_id": "c0",
         "prompt_preview": "</script><script>alert(1)</script><!--"},
        {"type": "subcall.finished", "run_id": "r", "depth": 0, "ts": 1.1, "call_id": "c0",
         "response_preview": "& </SCRIPT>"},
    ]
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    page = render_html(read_trace(path))
    assert "</script><script>alert" not in page and "<!--" not in page
    assert "</SCRIPT>" not in page
    data = page_data_of(page)
    assert data["calls"]["prompt"] == ["</script><script>alert(1)</script><!--"]


def test_page_is_self_contained_follows_the_dark_scheme_and_has_a_no_script_fallback(
    simple_page: str,
) -> None:
    assert "prefers-color-scheme:dark" in simple_page
    assert "<noscript>" in simple_page and "JavaScript is off" in simple_page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", simple_page)
    assert "http://" not in simple_page and "https://" not in simple_page
    assert "innerHTML=p[k]" in simple_page  # the only innerHTML: server-rendered, escaped parts
    assert simple_page.count("innerHTML") == 1


def test_odd_events_render_as_blanks_and_zeros_never_an_error(tmp_path: Path) -> None:
    odd = [
        {"type": "run.started", "run_id": None, "ts": "nope", "depth": "x"},
        {"type": "subcall.finished", "run_id": 7, "ts": None, "latency_s": "fast",
         "input_tokens": "many", "model": None, "error": {"a": 1}},
        {"type": "model.response", "run_id": 7, "text": None, "latency_s": None},
        {"type": "code.executed", "run_id": 7, "code": None, "output": None, "block": "b"},
        {"type": "child.finished", "run_id": 7, "child_run_id": None},
        {"type": "tool.finished", "run_id": 7, "tool": None, "duration_s": "x"},
        {"type": "run.finished", "run_id": None, "usage": None, "answer": None},
    ]
    path = tmp_path / "odd.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in odd))
    page = render_html(read_trace(path))
    assert page.rstrip().endswith("</html>")
    data = page_data_of(page)
    assert data["calls"]["tin"] == [0] and data["calls"]["dur"] == [0.0]


def test_a_failed_root_call_shows_in_its_turn_and_in_the_per_model_failures(
    tmp_path: Path,
) -> None:
    base = {"run_id": "r", "depth": 0, "ts": 1.0}
    events = [
        {**base, "type": "run.started", "parent_run_id": None, "question": "q", "model": "m"},
        {**base, "type": "iteration.started", "iteration": 1, "max_iterations": 3},
        {**base, "type": "model.failed", "iteration": 1, "model": "m", "attempts": 3,
         "error": "<provider> said no", "cost_usd": 0.0},
    ]
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    page = render_html(read_trace(path))
    assert "the model call failed after 3 attempt(s): &lt;provider&gt; said no" in page
    row = page[page.index("<h2>Per model</h2>"):]
    assert '<td class="num bad">1</td>' in row  # failed: shown at every width


def test_a_trace_holding_lone_surrogates_renders_a_page_that_encodes(tmp_path: Path) -> None:
    root = ScriptedLM(lambda _m: repl("print(context[:2])\nFINAL(context[:3])"), model="r")
    rlm = RLM(root, sandbox="none", trace=tmp_path)
    out = rlm.completion("\udcff" + "pasted " * 1_000)  # a pasted "\udcff" JSON escape
    assert out.trace_path is not None
    page = render_html(read_trace(Path(out.trace_path)))
    page.encode("utf-8")  # what `fastrlm view` writes and the live view sends
    assert "\ufffdpa" in page
