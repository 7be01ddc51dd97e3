"""What an adversary puts in a loaded tree: FIFOs, symbolic links swapped in while loading,
links into huge trees, huge files, hard links out of the roots. Every loader path (``-c``, MCP,
batch) goes through ``load_context``, so these hold for all of them."""

from __future__ import annotations

import os
import resource
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fastrlm import ContextError
from fastrlm._foundation import files as _open
from fastrlm.context import LoadLimits, load_context

SECRET = "SECRET-OUTSIDE-THE-ROOT"


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "docs").mkdir(parents=True)
    outside.mkdir()
    (root / "docs" / "a.txt").write_text("inside text")
    (outside / "secret.txt").write_text(SECRET)
    return root, outside


# ---------------------------------------------------------------- FIFOs, sockets, devices
def test_a_fifo_in_a_directory_is_skipped_and_never_waited_on(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    os.mkfifo(root / "docs" / "pipe.txt")
    loaded = load_context([root / "docs"])
    assert loaded.value == [f"==> {root / 'docs'}/a.txt <==\ninside text"]
    assert [(s.path.endswith("pipe.txt"), s.reason) for s in loaded.report.skipped] == [
        (True, "a named pipe (FIFO): only regular files are read")]


def test_a_fifo_named_outright_is_refused_saying_what_it_is(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(ContextError, match=r"pipe: a named pipe \(FIFO\): only regular files"):
        load_context([tmp_path / "pipe"])


def test_a_fifo_matched_by_a_glob_is_reported(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    os.mkfifo(root / "docs" / "b.txt")
    loaded = load_context([str(root / "docs" / "*.txt")])
    assert loaded.value == [f"==> {root}/docs/a.txt <==\ninside text"]
    assert [s.reason for s in loaded.report.skipped] == [
        "a named pipe (FIFO): only regular files are read"]


def test_a_fifo_gitignore_does_not_hang_the_walk(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    os.mkfifo(root / "docs" / ".gitignore")
    (root / "docs" / "sub").mkdir()
    os.mkfifo(root / "docs" / "sub" / ".gitignore")
    loaded = load_context([root / "docs"])
    assert loaded.value == [f"==> {root / 'docs'}/a.txt <==\ninside text"]


def test_a_device_is_skipped_and_a_socket_too(tree: tuple[Path, Path], tmp_path: Path) -> None:
    import socket

    root, _ = tree
    sock_path = root / "docs" / "s.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        (root / "docs" / "zero").symlink_to("/dev/zero")
        loaded = load_context([root / "docs"])
    assert loaded.value == [f"==> {root / 'docs'}/a.txt <==\ninside text"]
    assert sorted(s.reason for s in loaded.report.skipped) == [
        "a device: only regular files are read", "a socket: only regular files are read"]


# ---------------------------------------------------------------- confinement races
@pytest.fixture
def swapper(tree: tuple[Path, Path]) -> Iterator[threading.Event]:
    """Until the test ends, swaps (atomically, as fast as it can) ``root/docs`` between a link
    to the real directory inside and one to ``outside``, and ``docs/a.txt`` inside between the
    file and a link to the secret: both a directory and a last component change between a
    check by name and an open by name."""
    root, outside = tree
    real_dir = root / "docs.real"
    (root / "docs").rename(real_dir)
    (root / "docs").symlink_to(real_dir, target_is_directory=True)
    (outside / "a.txt").write_text(SECRET)
    stop = threading.Event()

    def swap() -> None:
        docs, a_txt = root / "docs", real_dir / "a.txt"
        tmp_dir, tmp_file = root / "docs.tmp", real_dir / "a.tmp"
        while not stop.is_set():
            for target in (outside, real_dir):
                tmp_dir.symlink_to(target, target_is_directory=True)
                os.replace(tmp_dir, docs)
            tmp_file.symlink_to(outside / "secret.txt")
            os.replace(tmp_file, a_txt)
            tmp_file.write_text("inside text")
            os.replace(tmp_file, a_txt)

    thread = threading.Thread(target=swap, daemon=True)
    thread.start()
    yield stop
    stop.set()
    thread.join()


def test_no_byte_outside_the_roots_is_read_while_links_are_swapped(
    tree: tuple[Path, Path], swapper: threading.Event
) -> None:
    root, _ = tree
    read = 0
    for _ in range(400):
        for spec in (root / "docs" / "a.txt", root / "docs", str(root / "docs" / "*.txt")):
            try:
                loaded = load_context([spec], within=[root])
            except ContextError as exc:
                assert SECRET not in str(exc)
                continue
            value = loaded.value if isinstance(loaded.value, str) else "".join(loaded.value)
            assert SECRET not in value
            read += value.count("inside text")
    assert read > 0  # the loop did load the file inside, not only refuse


def test_a_descriptor_outside_the_roots_is_refused_whatever_its_name(
    tree: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check is on what was opened: a name that resolved inside but was swapped before the
    open (simulated: the kernel reports the descriptor's path outside) is never returned."""
    root, outside = tree
    monkeypatch.setattr(_open, "fd_path", lambda fd: str(outside / "secret.txt"))
    with pytest.raises(ContextError, match="outside the allowed roots"):
        load_context([root / "docs" / "a.txt"], within=[root])
    loaded_or_error = None
    with pytest.raises(ContextError, match="the context is empty"):
        loaded_or_error = load_context([root / "docs"], within=[root])
    assert loaded_or_error is None


def test_a_hard_link_is_not_read_when_confined(tree: tuple[Path, Path]) -> None:
    root, outside = tree
    os.link(outside / "secret.txt", root / "docs" / "b.txt")
    with pytest.raises(ContextError, match="2 hard links"):
        load_context([root / "docs" / "b.txt"], within=[root])
    loaded = load_context([root / "docs"], within=[root])
    assert SECRET not in "".join(loaded.value)
    assert [s.reason.startswith("it has 2 hard links") for s in loaded.report.skipped] == [True]
    # unconfined (the user's own -c) a hard-linked file is read like any other
    assert SECRET in "".join(load_context([root / "docs"]).value)


# ---------------------------------------------------------------- bounded walks
def test_a_symlinked_directory_is_not_walked_by_default(tree: tuple[Path, Path]) -> None:
    root, outside = tree
    (root / "docs" / "usr").symlink_to(outside, target_is_directory=True)
    loaded = load_context([root / "docs"])
    assert SECRET not in "".join(loaded.value)
    assert [s.reason for s in loaded.report.skipped] == [
        "a symbolic link to a directory, not followed "
        "(LoadLimits.follow_symlinks; --follow-symlinks)"]
    # a ** glob does not go through it either (glob.glob walked links into /usr for minutes)
    assert load_context([str(root / "**" / "*.txt")]).value == [
        f"==> {root}/docs/a.txt <==\ninside text"]
    followed = load_context([root / "docs"], limits=LoadLimits(follow_symlinks=True))
    assert SECRET in "".join(followed.value)


def test_a_symlink_loop_is_walked_once_when_following(tree: tuple[Path, Path]) -> None:
    root, _ = tree
    (root / "docs" / "again").symlink_to(root / "docs", target_is_directory=True)
    loaded = load_context([root / "docs"], limits=LoadLimits(follow_symlinks=True))
    assert loaded.value == [f"==> {root / 'docs'}/a.txt <==\ninside text"]
    assert [s.reason for s in loaded.report.skipped] == [
        "a directory already walked (a symbolic link loop)"]


def test_a_walk_past_max_files_stops_naming_the_limit_and_flag(tmp_path: Path) -> None:
    for i in range(5):
        (tmp_path / f"f{i}.txt").write_text("x")
    with pytest.raises(ContextError, match=r"more than 3 files and directories walked "
                                           r"\(LoadLimits.max_files; --max-files raises it\)"):
        load_context([tmp_path], limits=LoadLimits(max_files=3))
    with pytest.raises(ContextError, match="LoadLimits.max_files"):
        load_context([str(tmp_path / "*.txt")], limits=LoadLimits(max_files=3))
    assert len(load_context([tmp_path], limits=LoadLimits(max_files=5)).value) == 5


def test_a_walk_past_max_depth_stops_naming_the_limit(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    (deep / "x.txt").write_text("deep")
    with pytest.raises(ContextError, match=r"more than 2 directory levels "
                                           r"\(LoadLimits.max_depth raises it\)"):
        load_context([tmp_path], limits=LoadLimits(max_depth=2))
    assert load_context([tmp_path], limits=LoadLimits(max_depth=3)).value == [
        f"==> {tmp_path}/a/b/c/x.txt <==\ndeep"]


def test_a_walk_past_its_time_stops_naming_the_limit_and_flag(
    tree: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = tree
    clock = iter(range(0, 10_000, 10))  # each reading of the clock is 10 s later
    monkeypatch.setattr(_open.time, "monotonic", lambda: float(next(clock)))
    with pytest.raises(ContextError, match=r"more than 5 s \(LoadLimits.max_seconds; "
                                           r"--load-timeout raises it\)"):
        load_context([root], limits=LoadLimits(max_seconds=5))


# ---------------------------------------------------------------- sizes
def test_a_huge_file_is_refused_before_a_byte_is_read(tmp_path: Path) -> None:
    big = tmp_path / "big.log"
    with open(big, "wb") as fh:
        fh.truncate(2 << 30)  # sparse: 2 GiB that take no disk
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ContextError, match=r"2,147,483,648 bytes, over the limit of "
                                           r"268,435,456 bytes a file \(LoadLimits.max_file_bytes;"
                                           r" --max-file-mb raises it\)"):
        load_context([big])
    (tmp_path / "small.txt").write_text("small")
    loaded = load_context([tmp_path])
    assert loaded.value == [f"==> {tmp_path}/small.txt <==\nsmall"]
    assert loaded.report.skipped[0].reason.startswith("2,147,483,648 bytes, over the limit")
    assert loaded.report.bytes_read == 5
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 256 * 1024, f"peak memory grew by {grown_kib} KiB"


def test_the_size_limit_is_the_one_given(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x" * 11)
    with pytest.raises(ContextError, match="11 bytes, over the limit of 10 bytes"):
        load_context([tmp_path / "a.txt"], limits=LoadLimits(max_file_bytes=10))
    assert load_context([tmp_path / "a.txt"], limits=LoadLimits(max_file_bytes=11)).value == (
        "x" * 11)


def test_load_limits_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="max_files must be a positive integer"):
        LoadLimits(max_files=0)
    with pytest.raises(ValueError, match="max_seconds must be positive"):
        LoadLimits(max_seconds=float("nan"))


def test_a_load_past_its_total_stops_before_reading_the_file_that_passes_it(
    tmp_path: Path,
) -> None:
    for name in ("a.txt", "b.txt", "c.txt"):
        (tmp_path / name).write_text("x" * 10)
    with pytest.raises(ContextError, match=r"loading stopped at .*c.txt: its 10 bytes are more "
                                           r"than the 5 left of the limit of 25 bytes a load "
                                           r"\(LoadLimits.max_total_bytes; --max-total-mb"):
        load_context([tmp_path], limits=LoadLimits(max_total_bytes=25))
    assert len(load_context([tmp_path], limits=LoadLimits(max_total_bytes=30)).value) == 3


def test_stdin_is_bounded_like_a_file(tmp_path: Path) -> None:
    import io

    with pytest.raises(ContextError, match=r"stdin: more than 10 bytes.*--max-file-mb"):
        load_context(["-"], stdin=io.BytesIO(b"y" * 11), limits=LoadLimits(max_file_bytes=10))
    (tmp_path / "a.txt").write_text("x" * 10)
    with pytest.raises(ContextError, match=r"<stdin>: its 6 bytes are more than the 5 left"):
        load_context([tmp_path / "a.txt", "-"], stdin=io.BytesIO(b"y" * 6),
                     limits=LoadLimits(max_total_bytes=15))
    assert load_context(["-"], stdin=io.BytesIO(b"y" * 10),
                        limits=LoadLimits(max_file_bytes=10)).value == "y" * 10


def test_a_glob_of_many_double_stars_is_matched_in_polynomial_time(tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*["d"] * 30)
    deep.mkdir(parents=True)
    (deep / "x.txt").write_text("deep")
    pattern = str(tmp_path / "/".join(["**"] * 25) / "nothing-*.md")
    with pytest.raises(ContextError, match="no files match"):
        load_context([pattern])


def test_a_glob_that_matches_only_a_fifo_reports_it_not_no_match(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("text")
    os.mkfifo(tmp_path / "p.log")
    loaded = load_context([tmp_path / "a.txt", str(tmp_path / "*.log")])
    assert [s.reason for s in loaded.report.skipped] == [
        "a named pipe (FIFO): only regular files are read"]
    with pytest.raises(ContextError, match="no files match"):  # a FIFO skipped earlier
        load_context([str(tmp_path / "*.log"), str(tmp_path / "*.rst")])


def test_a_followed_directory_link_out_of_the_roots_is_not_walked(
    tree: tuple[Path, Path],
) -> None:
    root, outside = tree
    (root / "docs" / "out").symlink_to(outside, target_is_directory=True)
    loaded = load_context([root / "docs"], within=[root],
                          limits=LoadLimits(follow_symlinks=True))
    assert [(s.path, s.reason) for s in loaded.report.skipped] == [
        (f"{root / 'docs'}/out", "outside the allowed roots")]  # no name from outside shown


# ---------------------------------------------------------------- links out of a walked tree
@pytest.mark.parametrize("target", ["outside-file", "/proc/self/status"])
def test_a_walked_trees_link_to_a_file_outside_it_is_not_read(
        tree: tuple[Path, Path], target: str) -> None:
    root, outside = tree
    pointed = outside / "secret.txt" if target == "outside-file" else Path(target)
    if not pointed.exists():
        pytest.skip(f"{pointed} does not exist here")
    (root / "docs" / "notes.md").symlink_to(pointed)
    (root / "docs" / "inside.md").symlink_to(root / "docs" / "a.txt")  # stays: inside the tree
    for named in ([root / "docs"], [str(root / "docs" / "*.md")], [str(root / "**" / "*.md")]):
        loaded = load_context(named)
        text = "".join(loaded.value)
        assert SECRET not in text and "VmRSS" not in text and "inside text" in text, named
        assert ("a symbolic link to a file outside the directory, not followed "
                "(LoadLimits.follow_symlinks; --follow-symlinks)") in [
            s.reason for s in loaded.report.skipped]
    followed = load_context([root / "docs"], limits=LoadLimits(follow_symlinks=True))
    assert (SECRET if target == "outside-file" else "VmRSS") in "".join(followed.value)


def test_a_directory_named_through_a_symlink_reads_its_own_files(
        tree: tuple[Path, Path], tmp_path: Path) -> None:
    root, _ = tree
    (tmp_path / "alias").symlink_to(root / "docs", target_is_directory=True)
    (root / "docs" / "rel.md").symlink_to("a.txt")  # a relative link inside the real tree
    loaded = load_context([tmp_path / "alias"])
    assert "".join(loaded.value).count("inside text") == 2
    assert loaded.report.skipped == []


def test_a_directory_of_many_tiny_files_is_refused_without_listing_it_all(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for n in range(300):
        (tmp_path / f"f{n:03}.txt").write_text("x")
    pulled = 0
    scandir = os.scandir

    class Counting:
        def __init__(self, path: str) -> None:
            self.inner = scandir(path)

        def __enter__(self) -> Counting:
            return self

        def __exit__(self, *exc: object) -> None:
            self.inner.close()

        def __iter__(self) -> Iterator[os.DirEntry[str]]:
            nonlocal pulled
            for entry in self.inner:
                pulled += 1
                yield entry

    monkeypatch.setattr(_open.os, "scandir", Counting)
    with pytest.raises(ContextError, match=r"more than 10 files and directories walked"):
        load_context([tmp_path], limits=LoadLimits(max_files=10))
    assert pulled <= 11  # millions of names are never all read, sorted and held at once
