"""The replay record file: whole-line appends, a cut last line dropped, damage refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fastrlm.trace import RecordFile, ReplayError, read_record, record_path


def test_entries_round_trip_in_order_with_surrogates_and_the_file_is_private(
        tmp_path: Path) -> None:
    path = record_path(tmp_path, "run1")
    record = RecordFile(path)
    entries = [{"k": "head", "n": 0}, {"k": "call", "text": "caf\u00e9 \ud83d"},
               {"k": "turn", "text": "x" * 100_000}]
    for i, entry in enumerate(entries):
        record.append(entry, durable=i % 2 == 0)
    record.close()
    assert read_record(path) == entries
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_a_last_line_cut_short_is_dropped_and_one_missing_only_its_newline_is_kept(
        tmp_path: Path) -> None:
    path = tmp_path / "r.record"
    record = RecordFile(path)
    record.append({"k": "head"})
    record.append({"k": "turn", "text": "whole"})
    record.close()
    whole = path.read_bytes()
    path.write_bytes(whole[:-1])  # only the newline lost
    assert [e["k"] for e in read_record(path)] == ["head", "turn"]
    path.write_bytes(whole[:-10])  # the writer died mid-line
    assert [e["k"] for e in read_record(path)] == ["head"]


@pytest.mark.parametrize("damage", [
    lambda line: line.replace(b"middle", b"muddle"),  # a flipped byte: the digest disagrees
    lambda line: line[:20],                           # a line cut, then more written after it
    lambda line: b"\xff\xfe" + line,                  # not UTF-8
    lambda line: b"0123456789abcdef [1, 2]",           # valid digest form, not an object
])
def test_damage_before_the_last_line_is_refused_naming_the_line(tmp_path: Path,
                                                                damage: object) -> None:
    path = tmp_path / "r.record"
    record = RecordFile(path)
    for text in ("head", "middle", "last"):
        record.append({"k": text})
    record.close()
    lines = path.read_bytes().split(b"\n")
    lines[1] = damage(lines[1])  # type: ignore[operator]
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(ReplayError, match="damaged at line 2 of 3"):
        read_record(path)


def test_a_missing_record_says_why_a_run_may_have_none(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="tracing off"):
        read_record(tmp_path / "absent.record")
