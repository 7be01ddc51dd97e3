"""``load_context(within=...)``: loading confined to roots, symlinks resolved before each read."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from fastrlm import ContextError
from fastrlm.context import load_context


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    (root / "docs").mkdir(parents=True)
    outside.mkdir()
    (root / "docs" / "a.txt").write_text("inside text")
    (outside / "secret.txt").write_text("SECRET-VALUE")
    return root, outside


def test_a_file_inside_the_root_loads(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    loaded = load_context([root / "docs" / "a.txt"], within=[root])
    assert loaded.value == "inside text"


def test_a_file_outside_the_roots_is_refused_naming_the_roots(tree: tuple[Path, Path]) -> None:
    root, outside = tree
    with pytest.raises(ContextError, match="outside the allowed roots"):
        load_context([outside / "secret.txt"], within=[root])


def test_a_symlink_named_outright_that_leaves_the_root_is_refused(tree: tuple[Path, Path]) -> None:
    root, outside = tree
    (root / "link.txt").symlink_to(outside / "secret.txt")
    with pytest.raises(ContextError, match="outside the allowed roots"):
        load_context([root / "link.txt"], within=[root])


def test_a_symlink_found_in_a_directory_is_skipped_and_never_read(tree: tuple[Path, Path]) -> None:
    root, outside = tree
    (root / "docs" / "z-link.txt").symlink_to(outside / "secret.txt")
    loaded = load_context([root / "docs"], within=[root])
    assert "SECRET-VALUE" not in "".join(loaded.value)
    assert [(s.path.endswith("z-link.txt"), s.reason) for s in loaded.report.skipped] == [
        (True, "outside the allowed roots")]


def test_a_symlinked_directory_out_of_the_root_is_refused(tree: tuple[Path, Path]) -> None:
    root, outside = tree
    (root / "out").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ContextError, match="outside the allowed roots"):
        load_context([root / "out"], within=[root])


def test_glob_matches_outside_are_skipped(tree: tuple[Path, Path]) -> None:
    root, outside = tree
    (root / "docs" / "b.txt").symlink_to(outside / "secret.txt")
    loaded = load_context([str(root / "docs" / "*.txt")], within=[root])
    assert loaded.value == [f"==> {root}/docs/a.txt <==\ninside text"]
    assert [s.reason for s in loaded.report.skipped] == ["outside the allowed roots"]


def test_stdin_is_refused_when_confined(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    with pytest.raises(ContextError, match="stdin"):
        load_context(["-"], stdin=io.BytesIO(b"x"), within=[root])


def test_without_within_a_symlink_is_followed_as_before(tree: tuple[Path, Path]) -> None:
    root, outside = tree
    (root / "link.txt").symlink_to(outside / "secret.txt")
    assert load_context([root / "link.txt"]).value == "SECRET-VALUE"
