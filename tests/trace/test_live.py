"""The live view's server: the page, its parts, and server-sent events tailing a growing trace."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from fastrlm.trace import _live
from fastrlm.trace._live import LiveView, read_lines, sse_message


def line(**event: Any) -> str:
    return json.dumps({"run_id": "r1", "depth": 0, "ts": 1.0, **event}) + "\n"


START = line(type="run.started", parent_run_id=None, question="live <q>?", model="m",
             sub_model="s", context={}, sandbox="none", budget={})


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    path = tmp_path / "r1.jsonl"
    path.write_text(START + line(type="iteration.started", iteration=1, max_iterations=5))
    return path


@pytest.fixture
def view(trace: Path) -> Iterator[LiveView]:
    with LiveView(lambda: trace) as live:
        yield live


class Got:
    def __init__(self, status: int, kind: str, body: bytes) -> None:
        self.status, self.kind, self.body = status, kind, body


def get(view: LiveView, path: str) -> Got:
    """A whole response; the connection closed."""
    host, port = view.url.removeprefix("http://").rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return Got(resp.status, resp.getheader("Content-Type", ""), resp.read())
    finally:
        conn.close()


@contextmanager
def stream(view: LiveView, path: str, headers: dict[str, str] | None = None
           ) -> Iterator[http.client.HTTPResponse]:
    host, port = view.url.removeprefix("http://").rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        yield resp
        resp.close()
    finally:
        conn.close()


def read_message(resp: http.client.HTTPResponse) -> dict[str, list[str]]:
    """The next server-sent message with data (fields by name), skipping comments and retry."""
    while True:
        fields: dict[str, list[str]] = {}
        while True:
            raw = resp.fp.readline().decode()
            assert raw, "the stream ended"
            text = raw.rstrip("\n")
            if not text:
                break
            if text.startswith(":"):
                continue
            name, _, value = text.partition(": ")
            fields.setdefault(name, []).append(value)
        if "data" in fields or "event" in fields:
            return fields


def read_lines_message(resp: http.client.HTTPResponse) -> dict[str, list[str]]:
    """The next message of trace lines: the stream's own state messages (``event: writer``,
    sent when the stream first checks for the trace's writer, whenever that falls) skipped."""
    while True:
        message = read_message(resp)
        if "event" not in message:
            return message


def test_read_lines_leaves_a_line_without_its_newline_for_later(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": 2}\n{"c": ')
    lines, offset = read_lines(path, 0)
    assert lines == ['{"a": 1}', '{"b": 2}'] and offset == 18
    assert read_lines(path, offset) == ([], offset)
    with open(path, "ab") as handle:
        handle.write(b"3}\n")
    assert read_lines(path, offset) == (['{"c": 3}'], path.stat().st_size)
    assert read_lines(tmp_path / "missing.jsonl", 5) == ([], 5)


def test_read_lines_stops_at_the_limit_with_the_offset_after_what_it_gave(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"1\n22\n333\n")
    assert read_lines(path, 0, limit=2) == (["1", "22"], 5)
    assert read_lines(path, 5, limit=2) == (["333"], 9)


def test_read_lines_reads_a_bounded_chunk_and_still_takes_a_line_longer_than_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_live, "READ_BYTES", 8)
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"1\n22\n" + b"x" * 20 + b"\n4\n")
    lines, offset = read_lines(path, 0)
    assert lines == ["1", "22"] and offset == 5  # only the first chunk's whole lines
    lines, offset = read_lines(path, offset)  # the long line arrives whole
    assert lines[0] == "x" * 20
    while True:
        more, after = read_lines(path, offset)
        if after == offset:
            break
        lines, offset = lines + more, after
    assert lines == ["x" * 20, "4"] and offset == path.stat().st_size


def test_the_page_holds_the_whole_trace_however_many_chunks_it_takes(
    trace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_live, "READ_BYTES", 64)
    with open(trace, "a") as handle:
        for i in range(20):
            handle.write(line(type="code.executed", iteration=1, block=i, code="x",
                              output=f"out-{i}"))
    tail = _live.TraceTail(lambda: trace)
    assert len(tail.refresh().events) == 22 and tail.offset == trace.stat().st_size


def test_an_sse_message_has_one_data_field_per_line_and_the_offset_as_id() -> None:
    assert sse_message(['{"a":1}', '{"b":2}'], 42) == b'id: 42\ndata: {"a":1}\ndata: {"b":2}\n\n'


def test_the_page_is_escaped_and_told_where_to_follow_from(view: LiveView, trace: Path) -> None:
    resp = get(view, "/")
    assert resp.status == 200 and resp.kind.startswith("text/html")
    page = resp.body.decode()
    assert "live &lt;q&gt;?" in page and "<q>" not in page
    assert f'"events":"/events?from={trace.stat().st_size}"' in page
    assert view.url.startswith("http://127.0.0.1:")


def test_events_stream_lines_appended_after_the_page_and_resume_by_last_event_id(
    view: LiveView, trace: Path
) -> None:
    size = trace.stat().st_size
    cell = line(type="code.executed", iteration=1, block=1, code="x", output="NEW")
    with stream(view, f"/events?from={size}") as resp:
        assert resp.getheader("Content-Type") == "text/event-stream"
        with open(trace, "a") as handle:
            handle.write(cell)
            handle.write('{"type": "final", "run_')  # being written: not sent yet
        message = read_lines_message(resp)
    assert [json.loads(d)["output"] for d in message["data"]] == ["NEW"]
    after = int(message["id"][0])
    assert after == size + len(cell)
    # a reconnecting browser sends Last-Event-ID, which wins over the page's ?from=
    with open(trace, "a") as handle:
        handle.write('id": "r1", "depth": 0, "ts": 2.0, "source": "FINAL"}\n')
    with stream(view, f"/events?from={size}", {"Last-Event-ID": str(after)}) as again:
        event = json.loads(read_lines_message(again)["data"][0])
    assert event["type"] == "final" and event["source"] == "FINAL"


def test_parts_render_what_the_trace_holds_now(view: LiveView, trace: Path) -> None:
    with open(trace, "a") as handle:
        handle.write(line(type="code.executed", iteration=1, block=1, code="print(1)",
                          output="<b>out</b>"))
    parts = json.loads(get(view, "/parts").body)
    assert set(parts) == {"summary", "detail"}
    assert "&lt;b&gt;out&lt;/b&gt;" in parts["detail"] and "<b>out" not in parts["detail"]
    assert "incomplete" in parts["summary"]  # a crashed or running run: no run.finished


def test_a_trace_that_does_not_exist_yet_is_waited_for(tmp_path: Path) -> None:
    later = tmp_path / "later.jsonl"
    with LiveView(lambda: later if later.exists() else None) as live:
        assert "incomplete" in get(live, "/").body.decode()
        with stream(live, "/events?from=0") as resp:
            assert read_message(resp)["event"] == ["waiting"]
            later.write_text(START)
            assert json.loads(read_lines_message(resp)["data"][0])["type"] == "run.started"


def test_unknown_paths_are_404_with_the_routes_named(view: LiveView) -> None:
    resp = get(view, "/nope")
    assert resp.status == 404 and b"/events" in resp.body


def test_a_request_for_another_host_is_refused(view: LiveView) -> None:
    host, port = view.url.removeprefix("http://").rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("GET", "/", headers={"Host": f"evil.example:{port}"})
        resp = conn.getresponse()
        assert resp.status == 403 and b"open the live view as http://127.0.0.1:" in resp.read()
    finally:
        conn.close()
    assert get(view, "/").status == 200  # the real address still works


def test_a_taken_port_is_an_os_error(view: LiveView, trace: Path) -> None:
    port = int(view.url.rstrip("/").rsplit(":", 1)[1])
    with pytest.raises(OSError):
        LiveView(lambda: trace, port=port)
