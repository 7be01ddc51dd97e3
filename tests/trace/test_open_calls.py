"""What a sub-call or tool call opens to in the viewer: whole texts when the trace was written
with full prompts (``--trace-full``), previews that say so otherwise; whole texts past a row's
length travel packed in the page, and a preview trace's page carries nothing extra."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from fastrlm import RLM, Limits
from fastrlm.testing import ScriptedLM
from fastrlm.trace import read_trace, render_html
from fastrlm.trace._html_data import ROW_PREVIEW_CHARS, page_data

LONG_PROMPT = "p" * 50 + " " + "q" * 400
LONG_REPLY = "r" * 300 + " the end"
LONG_RESULT = "x" * 500


def lookup(key: str) -> str:
    return LONG_RESULT + key


def _traced(tmp_path: Path, full: bool) -> tuple[Path, Any]:
    code = (f"```repl\nr = llm_query({LONG_PROMPT!r})\nv = lookup({'k' * 300!r})\n"
            "FINAL(r)\n```")
    rlm = RLM(ScriptedLM([code], model="scripted/root"),
              ScriptedLM(lambda m: LONG_REPLY, model="scripted/sub"), sandbox="none",
              trace=tmp_path, tools=[lookup], limits=Limits(trace_full_prompts=full))
    path = Path(str(rlm.completion("q", context="c").trace_path))
    return path, read_trace(path)


def _record(trace: Any, kind: str) -> dict[str, Any]:
    return next(e for e in trace.events if e["type"] == kind)


def test_full_tracing_records_whole_replies_tool_arguments_and_results(tmp_path: Path) -> None:
    _, trace = _traced(tmp_path, full=True)
    assert _record(trace, "subcall.started")["prompt"] == LONG_PROMPT
    assert _record(trace, "subcall.finished")["response"] == LONG_REPLY
    assert json.loads(_record(trace, "tool.started")["arguments"]) == {"key": "k" * 300}
    assert _record(trace, "tool.finished")["result"].startswith(json.dumps(LONG_RESULT)[:50])


def test_a_preview_trace_keeps_no_whole_text(tmp_path: Path) -> None:
    _, trace = _traced(tmp_path, full=False)
    assert _record(trace, "subcall.started").get("prompt") is None
    assert _record(trace, "subcall.finished").get("response") is None
    assert _record(trace, "tool.started").get("arguments") is None
    assert _record(trace, "tool.finished").get("result") is None


def _unpack(blob: str) -> dict[str, dict[str, str]]:
    data: dict[str, dict[str, str]] = json.loads(gzip.decompress(base64.b64decode(blob)))
    return data


def test_whole_texts_past_a_row_travel_packed_and_preview_traces_pack_nothing(
    tmp_path: Path,
) -> None:
    _, full = _traced(tmp_path / "full", full=True)
    data = page_data(full.typed_events)
    assert data["calls"]["pchars"] == [len(LONG_PROMPT)]
    assert data["calls"]["rchars"] == [len(LONG_REPLY)]
    assert all(len(t) <= ROW_PREVIEW_CHARS for t in data["calls"]["prompt"])
    assert _unpack(data["texts"]) == {"p": {"0": LONG_PROMPT}, "r": {"0": LONG_REPLY}}
    _, preview = _traced(tmp_path / "preview", full=False)
    assert page_data(preview.typed_events)["texts"] == ""


def test_the_page_opens_each_call_to_whole_texts_or_says_it_holds_a_preview(
    tmp_path: Path,
) -> None:
    _, full = _traced(tmp_path / "full", full=True)
    page = render_html(full)
    assert LONG_REPLY in page and LONG_RESULT in page  # the cell's call and the tool's result
    assert "holds a preview" not in page.split('<main id="detail">')[1].split("</main>")[0]
    _, preview = _traced(tmp_path / "preview", full=False)
    detail = render_html(preview).split('<main id="detail">')[1].split("</main>")[0]
    assert LONG_REPLY not in detail
    assert "the trace holds a preview of this reply" in detail
    assert "the trace holds a preview of this result" in detail
    assert "--trace-full" in detail


@pytest.mark.parametrize("hostile", ["</script><script>alert(1)</script>", "\u2028x\u2029"])
def test_packed_texts_cannot_break_out_of_the_page(tmp_path: Path, hostile: str) -> None:
    base = {"run_id": "r", "depth": 0, "ts": 1.0}
    text = hostile * 80  # past a row's 200 characters: packed
    events = [
        {**base, "type": "run.started", "parent_run_id": None, "question": "q"},
        {**base, "type": "subcall.started", "call_id": "c0", "prompt_chars": len(text),
         "prompt_preview": text[:200], "prompt": text},
        {**base, "type": "subcall.finished", "call_id": "c0", "response_chars": len(text),
         "response_preview": text[:200], "response": text},
    ]
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    page = render_html(read_trace(path))
    assert page.count("<script") == 2  # the data element and the page's own script
    data = json.loads(page.split('id="fastrlm-data">')[1].split("</script>")[0])
    assert _unpack(data["texts"])["r"]["0"] == text


def test_packing_stops_at_its_limit_and_counts_what_it_left_out() -> None:
    from fastrlm.trace._html_data import packed_texts

    blob, left_out = packed_texts({0: "a" * 10, 1: "b" * 10}, {0: "c" * 10}, limit=25)
    assert left_out == 1
    assert _unpack(blob) == {"p": {"0": "a" * 10}, "r": {"0": "c" * 10}}
    assert packed_texts({}, {}) == ("", 0)


def test_the_live_view_serves_one_calls_whole_texts(tmp_path: Path) -> None:
    import http.client

    from fastrlm.trace._live import LiveView

    path, _ = _traced(tmp_path, full=True)
    events = read_trace(path).events
    started = next(e for e in events if e["type"] == "subcall.started")
    with LiveView(lambda: path) as live:
        def get(query: str) -> tuple[int, bytes]:
            conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=30)
            try:
                conn.request("GET", "/call?" + query)
                resp = conn.getresponse()
                return resp.status, resp.read()
            finally:
                conn.close()

        status, body = get(f"run={started['run_id']}&id={started['call_id']}")
        missing, _ = get(f"run={started['run_id']}&id=nope")
    assert status == 200
    assert json.loads(body) == {"prompt": LONG_PROMPT, "reply": LONG_REPLY, "error": None}
    assert missing == 404
