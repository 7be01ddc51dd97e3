"""Traces on disk come back as typed events: every event type the writer records rebuilds
with ``event_from_dict`` to the same ``to_dict()``, and a trace written by an older version
(fields missing, an event type and a field this version does not know) is still read whole."""

from __future__ import annotations

import json
import types
import typing
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest

from fastrlm.events import (
    EVENT_TYPES,
    CodeExecuted,
    Event,
    FinalAnswer,
    ModelResponse,
    RunFinished,
    RunStarted,
    SandboxRestarted,
    SubcallFinished,
    SubcallStarted,
    UnknownEvent,
    event_from_dict,
)
from fastrlm.trace import TraceWriter, read_trace, render_html, render_transcript

OLD_TRACE = Path(__file__).parent / "data" / "old_trace.jsonl"


def _sample(name: str, hint: Any) -> Any:
    """A value for a field that is not its default, so a field lost on the way shows."""
    if isinstance(hint, types.UnionType):
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    origin = typing.get_origin(hint) or hint
    samples: dict[Any, Any] = {str: f"{name}-value", int: 7, float: 2.5, bool: True,
                               dict: {"key": name}, list: [name]}
    return samples[origin]


def every_event(run_id: str) -> list[Event]:
    """One event of each type with every field set, between the run's start and finish."""
    out: list[Event] = []
    for cls in EVENT_TYPES.values():
        hints = typing.get_type_hints(cls)
        values = {f.name: _sample(f.name, hints[f.name]) for f in fields(cls)
                  if f.name not in ("extra", "run_id", "depth")}
        if cls is RunStarted:
            values["parent_run_id"] = None  # the top-level run: the writer files under it
            values["context"] = {"type": "str", "total_chars": 10, "sha256": "ab" * 32}
        if cls is RunFinished:
            values["usage"] = {"input_tokens": 3, "output_tokens": 4}
        out.append(cls(run_id=run_id, depth=0, **values))
    out.sort(key=lambda ev: (not isinstance(ev, RunStarted), isinstance(ev, RunFinished)))
    return out


def test_every_event_type_written_by_the_writer_rebuilds_to_the_same_record(
    tmp_path: Path,
) -> None:
    writer = TraceWriter(tmp_path, full_prompts=True)
    sent = every_event("run1")
    for event in sent:
        writer(event)
    lines = [json.loads(line) for line in
             writer.path_for("run1").read_text(encoding="utf-8").splitlines()]
    assert sorted(line["type"] for line in lines) == sorted(EVENT_TYPES)
    for line, original in zip(lines, sent, strict=True):
        rebuilt = event_from_dict(line)
        assert type(rebuilt) is type(original)
        assert rebuilt == original
        assert rebuilt.to_dict() == line
    assert [type(ev) for ev in read_trace(writer.path_for("run1")).typed_events] == [
        type(ev) for ev in sent
    ]


def test_what_the_writer_adds_to_a_record_is_kept_on_the_typed_event(tmp_path: Path) -> None:
    writer = TraceWriter(tmp_path)
    events = every_event("run1")
    long = RunFinished(**{**{f.name: getattr(events[-1], f.name) for f in fields(RunFinished)},
                          "answer": "x" * 10_000})
    for event in [*events[:-1], long]:
        writer(event)
    record = json.loads(writer.path_for("run1").read_text(encoding="utf-8").splitlines()[-1])
    rebuilt = event_from_dict(record)
    assert isinstance(rebuilt, RunFinished)
    assert rebuilt.extra["answer_chars"] == 10_000 and rebuilt.to_dict() == record


def test_a_trace_of_an_older_version_reads_with_defaults_and_loses_nothing() -> None:
    trace = read_trace(OLD_TRACE)
    typed = trace.typed_events
    for record, event in zip(trace.events, typed, strict=True):  # nothing lost...
        rebuilt = event.to_dict()
        assert {k: rebuilt[k] for k in record} == record
    assert trace.truncated_lines == 0
    started, response, sub_started, sub_finished, cell = (
        typed[0], typed[2], typed[3], typed[4], typed[5])
    # ...but what the old writer did not record reads as the field's default
    assert isinstance(started, RunStarted)
    assert started.session_id is None and started.session_question == 0
    assert isinstance(response, ModelResponse)
    assert response.attempts == 1 and response.anomaly is None
    assert isinstance(sub_started, SubcallStarted)
    assert sub_started.round == 0 and sub_started.agent_id is None and sub_started.prompt is None
    assert isinstance(sub_finished, SubcallFinished) and sub_finished.tool_calls == 0
    assert isinstance(cell, CodeExecuted)
    assert cell.restored == [] and cell.timed_out is False and cell.output_chars == 0
    unknown = typed[6]
    assert isinstance(unknown, UnknownEvent) and unknown.event_type == "progress.note"
    assert unknown.run_id == "old1" and unknown.extra == {
        "note": "an event type this version does not know"}
    final = typed[7]
    assert isinstance(final, FinalAnswer)
    assert final.extra == {"shown_by": "a field this version does not know"}
    finished = typed[-1]
    assert isinstance(finished, RunFinished)
    assert finished.error_kind is None and finished.limited_by is None and finished.requests == 0


def test_a_trace_of_an_older_version_renders_as_transcript_and_page() -> None:
    trace = read_trace(OLD_TRACE)
    text = render_transcript(trace, subcalls=True)
    assert "Run old1" in text and "sub-calls: 1 (0 failed, 0 from cache)" in text
    assert "· c1 openai/gpt-4o-mini: 7" in text and "ran block 1 in 0.20s" in text
    assert "answer delivered via FINAL (1 chars)" in text
    assert "── finished: final" in text and "did not finish" not in text
    page = render_html(trace)
    assert "old1" in page and "How many?" in page


@pytest.mark.parametrize("record", [
    {"type": "model.response"},
    {"run_id": "r"},
    {"type": "code.executed", "run_id": "r", "restored": ["x"], "later_field": {"a": 1}},
    {"type": "later.event", "extra": 1, "event_type": "its own field"},
])
def test_any_record_with_a_type_or_none_rebuilds_to_itself_plus_defaults(
    record: dict[str, Any],
) -> None:
    rebuilt = event_from_dict(record).to_dict()
    assert {k: rebuilt[k] for k in record} == record


def test_typed_events_follow_records_appended_after_the_first_read() -> None:
    trace = read_trace(OLD_TRACE)
    before = len(trace.typed_events)
    trace.events.append({"type": "sandbox.restarted", "run_id": "old1", "reason": "oom"})
    assert len(trace.typed_events) == before + 1
    assert isinstance(trace.typed_events[-1], SandboxRestarted)
    assert trace.typed_events[-1].reason == "oom"


def test_a_record_with_exactly_its_fields_rebuilds_as_one_with_more_or_fewer_does() -> None:
    # the shortcut for a record with exactly the class's fields gives the event the general
    # path gives, without touching or sharing the record
    for original in every_event("run1"):
        record = original.to_dict()
        kept = json.loads(json.dumps(record))
        fast = event_from_dict(record)
        general = event_from_dict({**record, "added": 1})
        assert fast == original == replace(general, extra={}) and fast.extra == {}
        assert repr(fast) == repr(original)
        assert record == kept
        assert fast.__dict__ is not record and fast.extra is not event_from_dict(record).extra
        assert {**general.extra} == {"added": 1} and fast.to_dict() == record


@pytest.mark.parametrize("collecting", [True, False])
def test_typed_events_leave_the_garbage_collector_as_they_found_it(collecting: bool) -> None:
    import gc

    was = gc.isenabled()
    (gc.enable if collecting else gc.disable)()
    try:
        assert read_trace(OLD_TRACE).typed_events
        assert gc.isenabled() is collecting
    finally:
        (gc.enable if was else gc.disable)()
