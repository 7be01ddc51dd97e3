"""A file made on an I/O lane while its writer goes on (trace/_io.py ``Making``), the one
mechanism behind a run's trace file and its replay record: nothing held is lost or reordered,
whatever the order of the make, the writes, the hand-over and the writer's end, and a file
that cannot be made (or written) drops what was held and says so once."""

from __future__ import annotations

import threading

from fastrlm.trace._io import Making


class FakeFile:
    def __init__(self, fail_at: int | None = None) -> None:
        self.lines: list[str] = []
        self.closed = False
        self.fail_at = fail_at


def _making(file: FakeFile, failures: list[OSError], create_fails: bool = False,
            slow: threading.Event | None = None) -> Making[FakeFile, str]:
    made = []

    def create() -> FakeFile:
        made.append(1)
        assert len(made) == 1, "made twice"
        if create_fails:
            raise PermissionError("no room for it")
        return file

    def write(handle: FakeFile, lines: list[str]) -> None:
        if slow is not None:
            slow.wait(5)
        for line in lines:
            if handle.fail_at is not None and len(handle.lines) == handle.fail_at:
                raise OSError("the disk is full")
            handle.lines.append(line)

    def close(handle: FakeFile) -> None:
        assert not handle.closed, "closed twice"
        handle.closed = True

    return Making(create, write, close, failures.append)


def test_what_is_held_is_written_first_then_the_file_is_the_writers() -> None:
    file, failures = FakeFile(), []
    making = _making(file, failures)
    assert making.hold("1") and making.hold("2")
    assert making.make() is True and making.done.done()
    assert not making.hold("3")  # handed over: the writer writes it itself
    assert making.handle is file and file.lines == ["1", "2"] and not file.closed
    assert making.make() is True  # later calls say what the first did
    assert failures == []


def test_a_writer_that_ends_first_has_its_file_closed_once_made_and_later_writes_dropped(
        ) -> None:
    file, failures = FakeFile(), []
    making = _making(file, failures)
    making.hold("1")
    making.hold("last", last=True)
    assert making.hold("after the end")  # taken, and dropped
    making.make()
    assert file.lines == ["1", "last"] and file.closed and making.handle is None


def test_an_end_after_the_hand_over_closes_the_file_not_taken() -> None:
    file, failures = FakeFile(), []
    making = _making(file, failures)
    making.make()
    making.end()
    assert file.closed and making.handle is None
    making.end()  # once


def test_a_file_that_cannot_be_made_drops_what_is_held_and_says_so_once() -> None:
    file, failures = FakeFile(), []
    making = _making(file, failures, create_fails=True)
    making.hold("1")
    assert making.make() is False and making.make() is False
    assert [type(exc) for exc in failures] == [PermissionError]
    assert not making.hold("2") and making.handle is None  # the writer writes nothing more
    assert making.done.done()


def test_a_held_write_that_fails_closes_the_file_and_says_so() -> None:
    file, failures = FakeFile(fail_at=1), []
    making = _making(file, failures)
    making.hold("1")
    making.hold("2")
    assert making.make() is False
    assert file.closed and file.lines == ["1"] and len(failures) == 1
    assert not making.hold("3") and making.handle is None


def test_writes_racing_the_hand_over_are_never_lost_or_reordered() -> None:
    for _ in range(200):
        file, failures = FakeFile(), []
        gate = threading.Event()
        making = _making(file, failures, slow=gate)
        lane = threading.Thread(target=making.make)
        making.hold("0")
        lane.start()
        handle = None
        for i in range(1, 60):
            if i == 5:
                gate.set()  # the lane writes what it holds while more is written
            if handle is None and not making.hold(str(i)):
                handle = making.handle
            if handle is not None:
                handle.lines.append(str(i))
        lane.join()
        if handle is None:  # all of it was held: the lane handed the file over after
            assert making.handle is file
        assert file.lines == [str(i) for i in range(60)]
