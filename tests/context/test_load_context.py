from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from fastrlm import ContextError
from fastrlm.context import load_context
from fastrlm.context._gitignore import GitIgnore, parse_rule


def test_single_file_loads_as_plain_string(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("hello world", encoding="utf-8")
    loaded = load_context([tmp_path / "a.txt"])
    assert loaded.value == "hello world"
    assert loaded.report.files == 1
    assert loaded.report.chars == 11
    assert loaded.report.est_tokens == 3


def test_directory_becomes_list_of_files_with_path_headers_in_sorted_order(tmp_path: Path) -> None:
    src = tmp_path / "proj"
    (src / "pkg").mkdir(parents=True)
    (src / "b.py").write_text("B = 2\n")
    (src / "pkg" / "a.py").write_text("A = 1\n")
    loaded = load_context([str(src)])
    assert isinstance(loaded.value, list)
    assert loaded.value == [f"==> {src}/b.py <==\nB = 2\n", f"==> {src}/pkg/a.py <==\nA = 1\n"]
    assert loaded.report.documents == 2


def test_directory_respects_gitignore_and_skips_vcs_dirs(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    (root / ".git" / "HEAD").write_text("ref: main")
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\x00bytecode")
    (root / "build").mkdir()
    (root / "build" / "out.txt").write_text("built")
    (root / "sub").mkdir()
    (root / "sub" / ".gitignore").write_text("*.log\n!keep.log\n")
    (root / "sub" / "x.log").write_text("noise")
    (root / "sub" / "keep.log").write_text("kept")
    (root / "main.py").write_text("print(1)")
    (root / ".gitignore").write_text("build/\n# comment\n")
    loaded = load_context([root])
    names = [doc.split("\n", 1)[0] for doc in loaded.value]
    assert names == [
        f"==> {root}/.gitignore <==",
        f"==> {root}/main.py <==",
        f"==> {root}/sub/.gitignore <==",
        f"==> {root}/sub/keep.log <==",
    ]
    assert loaded.report.ignored == 2


def test_gitignore_of_enclosing_repository_applies_to_a_subdirectory(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".gitignore").write_text("__pycache__/\n*.tmp\n")
    sub = tmp_path / "src"
    (sub / "__pycache__").mkdir(parents=True)
    (sub / "__pycache__" / "m.txt").write_text("cache")
    (sub / "m.py").write_text("x = 1")
    (sub / "scratch.tmp").write_text("tmp")
    loaded = load_context([sub])
    assert loaded.value == [f"==> {sub}/m.py <==\nx = 1"]


def test_gitignore_can_be_turned_off(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("*.txt\n")
    (tmp_path / "a.txt").write_text("a")
    loaded = load_context([tmp_path], gitignore=False)
    assert len(loaded.value) == 2


@pytest.mark.parametrize(
    ("pattern", "path", "is_dir", "expected"),
    [
        ("*.py", "a/b/c.py", False, True),
        ("/top.txt", "top.txt", False, True),
        ("/top.txt", "sub/top.txt", False, False),
        ("doc/*.md", "doc/x.md", False, True),
        ("doc/*.md", "doc/sub/x.md", False, False),
        ("**/logs", "a/b/logs", True, True),
        ("a/**/z", "a/b/c/z", False, True),
        ("a/**/z", "a/z", False, True),
        ("out/", "out", False, False),
        ("out/", "x/out", True, True),
        ("file[0-9].txt", "file7.txt", False, True),
        ("file[!0-9].txt", "file7.txt", False, False),
        ("\\#hash", "#hash", False, True),
        ("name?.c", "name1.c", False, True),
    ],
)
def test_gitignore_pattern_semantics(
    tmp_path: Path, pattern: str, path: str, is_dir: bool, expected: bool
) -> None:
    (tmp_path / ".gitignore").write_text(pattern + "\n")
    rules = GitIgnore()
    rules.add_file(tmp_path / ".gitignore")
    assert rules.ignored(str(tmp_path / path), is_dir) is expected


def test_gitignore_blank_and_comment_lines_are_not_rules() -> None:
    assert parse_rule("") is None
    assert parse_rule("   ") is None
    assert parse_rule("# note") is None


def test_binary_files_are_skipped_and_reported(tmp_path: Path) -> None:
    (tmp_path / "img.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    (tmp_path / "ok.txt").write_text("fine")
    loaded = load_context([tmp_path])
    assert loaded.value == [f"==> {tmp_path}/ok.txt <==\nfine"]
    assert [(s.path, s.reason) for s in loaded.report.skipped] == [
        (f"{tmp_path}/img.png", "binary")
    ]
    assert "skipped 1" in loaded.report.summary()


def test_only_binary_input_is_an_empty_context_error(tmp_path: Path) -> None:
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01\x02")
    with pytest.raises(ContextError, match="empty.*binary"):
        load_context([tmp_path / "blob.bin"])


def test_invalid_utf8_is_replaced_and_reported_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "bad.txt").write_bytes(b"caf\xe9 ok \xff\xfe end")
    loaded = load_context([tmp_path / "bad.txt"])
    assert loaded.value == "caf\ufffd ok \ufffd\ufffd end"
    assert loaded.report.replaced == [str(tmp_path / "bad.txt")]
    assert "invalid UTF-8" in loaded.report.summary()


def test_missing_path_is_a_clear_context_error(tmp_path: Path) -> None:
    with pytest.raises(ContextError, match="no such file or directory: .*nope.txt"):
        load_context([tmp_path / "nope.txt"])


def test_empty_file_is_an_empty_context_error(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ContextError, match="context is empty"):
        load_context([tmp_path / "empty.txt"])


def test_no_paths_is_an_error() -> None:
    with pytest.raises(ContextError, match="no context given"):
        load_context([])


def test_glob_expands_sorted_and_gives_a_list(tmp_path: Path) -> None:
    for name in ("b.md", "a.md", "c.txt"):
        (tmp_path / name).write_text(name)
    loaded = load_context([str(tmp_path / "*.md")])
    assert loaded.value == [f"==> {tmp_path}/a.md <==\na.md", f"==> {tmp_path}/b.md <==\nb.md"]


def test_glob_that_matches_nothing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ContextError, match="no files match"):
        load_context([str(tmp_path / "*.nothing")])


def test_jsonl_gives_one_document_per_line(tmp_path: Path) -> None:
    lines = [json.dumps("first doc"), json.dumps({"id": 2, "text": "second"}), "", "not json"]
    (tmp_path / "docs.jsonl").write_text("\n".join(lines) + "\n")
    loaded = load_context([tmp_path / "docs.jsonl"])
    assert loaded.value == ["first doc", '{"id": 2, "text": "second"}', "not json"]
    assert loaded.report.invalid_json_lines == 1


def test_a_jsonl_line_with_a_number_past_pythons_digit_limit_is_kept_as_text(
        tmp_path: Path) -> None:
    # json.loads raises a plain ValueError there: `ask -c big.jsonl` ended in a traceback
    huge = '{"n": ' + "9" * 5000 + "}"
    (tmp_path / "docs.jsonl").write_text(json.dumps("first") + "\n" + huge + "\n")
    loaded = load_context([tmp_path / "docs.jsonl"])
    assert loaded.value == ["first", huge]
    assert loaded.report.invalid_json_lines == 1


def test_stdin_dash_reads_bytes_once_and_rejects_a_second_dash() -> None:
    loaded = load_context(["-"], stdin=io.BytesIO(b"from stdin \xff"))
    assert loaded.value == "from stdin \ufffd"
    assert loaded.report.replaced == ["<stdin>"]
    with pytest.raises(ContextError, match="only once"):
        load_context(["-", "-"], stdin=io.BytesIO(b"x"))


def test_binary_stdin_is_skipped_and_reported_as_binary_files_are(tmp_path: Path) -> None:
    with pytest.raises(ContextError, match="empty.*binary"):
        load_context(["-"], stdin=io.BytesIO(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"))
    (tmp_path / "a.txt").write_text("A")
    loaded = load_context([tmp_path / "a.txt", "-"], stdin=io.BytesIO(b"GIF89a\x00\x01"))
    assert loaded.value == "A"  # the one readable document
    assert [(s.path, s.reason) for s in loaded.report.skipped] == [("<stdin>", "binary")]


def test_several_sources_give_a_list_with_headers(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("A")
    loaded = load_context([tmp_path / "a.txt", "-"], stdin=io.BytesIO(b"S"))
    assert loaded.value == [f"==> {tmp_path}/a.txt <==\nA", "S"]
    assert "stdin" in loaded.report.summary()


def test_pdf_in_a_directory_is_read_with_the_extra_or_reported(tmp_path: Path) -> None:
    pypdf = pytest.importorskip("pypdf")
    writer = pypdf.PdfWriter()
    writer.add_blank_page(width=72, height=72)
    with open(tmp_path / "doc.pdf", "wb") as handle:
        writer.write(handle)
    (tmp_path / "note.txt").write_text("note")
    loaded = load_context([tmp_path])
    assert loaded.report.files == 2
    assert loaded.value[0].startswith(f"==> {tmp_path}/doc.pdf <==")


def test_summary_states_chars_tokens_and_files(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x" * 4000)
    report = load_context([tmp_path / "a.txt"]).report
    assert report.summary().startswith("context: 4,000 chars (~1.0K tokens) from 1 file(s)")
    assert report.to_dict()["est_tokens"] == 1000


def test_large_directory_loads_each_file_once(tmp_path: Path) -> None:
    payload = "line of text\n" * 80_000  # ~1 MB per file
    for i in range(20):
        (tmp_path / f"f{i:02}.txt").write_text(payload)
    loaded = load_context([tmp_path])
    assert loaded.report.files == 20
    assert loaded.report.bytes_read == 20 * len(payload)
    assert loaded.report.chars == sum(len(d) for d in loaded.value) - sum(
        len(d.split("\n", 1)[0]) + 1 for d in loaded.value
    )


def test_an_empty_context_of_skipped_files_names_them_and_why(tmp_path: Path) -> None:
    # It ended "(1 file(s) skipped: binary, ...)": which file, and what the dots hid.
    for n in range(5):
        (tmp_path / f"blob{n}.bin").write_bytes(b"\x00\x01\x02" * 100)
    with pytest.raises(ContextError) as raised:
        load_context([tmp_path])
    message = str(raised.value)
    assert "(5 file(s) skipped: " in message and "blob0.bin: binary" in message
    assert message.endswith("; and 2 more)") and "..." not in message
