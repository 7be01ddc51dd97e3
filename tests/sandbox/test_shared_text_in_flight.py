"""A large file's text is handed out while it is still being copied (issue 31: the first root
request of ``fastrlm ask -c big.log`` waited for the whole copy, 0.5 s for 1 GiB). The file is
read once and found ASCII, its two ends are copied, and a thread copies the middle while the
root model is asked. These tests hold that thread at a gate: whatever reads the middle must
wait for it, and a file changed meanwhile fails the run clearly instead of feeding it holes."""

from __future__ import annotations

import asyncio
import copy
import errno
import hashlib
import os
import pickle
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fastrlm import RLM, Budget, ContextError, Limits
from fastrlm.context import LoadedContext, as_context, load_context
from fastrlm.sandbox import _filecopy, _protocol, text_filling, text_whole
from fastrlm.testing import ScriptedLM
from fastrlm.trace import read_trace

from .helpers import skip_unless_available

LINE = "2026-12-07 svc-%03d GET /api/items 200 12ms\n"
NEEDLE = ("the one line in the middle that the question quotes whole: "
          + " ".join(f"field{i}=value{i * 7}" for i in range(20)) + "\n")  # over 200 chars


def _text(lines: int) -> str:
    body = [LINE % (i % 997) for i in range(lines)]
    body.insert(lines // 2, NEEDLE)  # far from both ends: only the thread copies it
    return "".join(body)


class Gate:
    """Holds every chunk the copying thread takes (not the ends, copied by the caller) until
    :meth:`open`; ``before`` runs once, in the thread, before its first chunk."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.opened = threading.Event()
        self.reached = threading.Event()
        self.before: Any = None
        self._once = threading.Lock()
        copy_chunk = _filecopy._copy_chunk

        def gated(*args: Any) -> bool:
            if threading.current_thread() is not threading.main_thread():
                self.reached.set()
                assert self.opened.wait(timeout=60)
                with self._once:  # every thread waits here until ``before`` has run
                    before, self.before = self.before, None
                    if before is not None:
                        before()
            return copy_chunk(*args)

        monkeypatch.setattr(_filecopy, "_copy_chunk", gated)
        monkeypatch.setattr(_filecopy, "CHUNK", 64 << 10)
        monkeypatch.setattr(_filecopy, "THREADED_MIN", 256 << 10)

    def open(self) -> None:
        self.opened.set()

    def open_when_waited(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Open only when a reader asks whether the text is still copying and is told it is:
        a reader that read the middle without waiting would find it empty, and fail."""
        from fastrlm import sandbox

        def asked(context: object) -> Any:
            filling = text_filling(context)
            if filling is not None:
                self.open()
            return filling

        monkeypatch.setattr(sandbox, "text_filling", asked)  # what wait_whole asks
        monkeypatch.setattr(_protocol, "text_filling", asked)  # what text_whole asks


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    held = Gate(monkeypatch)
    yield held
    held.open()  # a failed test must not leave the copying thread waiting


@pytest.fixture
def big(tmp_path: Path) -> tuple[Path, str]:
    text = _text(70_000)  # about 3 MB: 47 chunks of 64 KiB
    path = tmp_path / "big.log"
    path.write_bytes(text.encode())
    return path, text


def _kind(kind: str) -> str:
    if kind != "none":
        skip_unless_available(kind)
    return kind


@pytest.mark.parametrize("kind", ["none", "process", "bwrap", "landlock", "docker"])
def test_the_first_root_request_goes_out_while_the_middle_is_still_copied(
    tmp_path: Path, gate: Gate, big: tuple[Path, str], kind: str,
) -> None:
    path, text = big
    loaded = load_context([path], shared=True)
    assert text_filling(as_context(loaded)) is not None  # handed out before the copy ended
    assert gate.reached.wait(timeout=60)
    seen: list[str] = []

    def root(messages: list[dict[str, Any]]) -> str:
        if not seen:  # the first request: the copy is still held at the gate
            assert not gate.opened.is_set() and text_filling(as_context(loaded)) is not None
            assert f"{len(text):,}" in str(messages)  # told the length in characters
            seen.append("first")
            gate.open()
            return ("```repl\nat = context.find('the one line in the middle')\n"
                    "print(len(context), at, context.count(chr(0)))\n```")
        seen.append(str(messages[-1]["content"]))
        return "```repl\nFINAL(str(len(context)))\n```"

    rlm = RLM(ScriptedLM(root, model="scripted/root"), ScriptedLM(["ok"]), sandbox=_kind(kind),
              trace=tmp_path / "home", budget=Budget(max_iterations=4))
    result = rlm.completion("how long?", context=loaded)
    assert result.answer == str(len(text)), result.error
    assert f"{len(text)} {text.index(NEEDLE)} 0" in seen[1]  # the cell read the whole text
    assert result.trace_path is not None
    started = read_trace(result.trace_path).events[0]
    assert started["context"]["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert loaded.value == text


@pytest.mark.parametrize("change", ["cut", "not ascii"])
@pytest.mark.parametrize("kind", ["none", "process", "bwrap"])
def test_a_file_changed_while_its_middle_is_copied_fails_the_run_clearly(
    gate: Gate, big: tuple[Path, str], kind: str, change: str,
) -> None:
    """``logrotate --copytruncate``, or an editor rewriting the file in place, after the text
    was found ASCII and its length told to the model: the copy sees it, and the run stops with
    a context error naming the file (never a str with NULs or non-ASCII bytes in it)."""
    path, text = big

    def changing() -> None:
        if change == "cut":
            os.truncate(path, len(text) // 3)
        else:
            with path.open("r+b") as f:
                f.seek(len(text) // 2)
                f.write("é".encode())

    gate.before = changing
    loaded = load_context([path], shared=True)
    asked: list[int] = []

    def root(messages: list[dict[str, Any]]) -> str:
        asked.append(1)
        gate.open()
        return "```repl\nprint(context[-10:])\n```"

    rlm = RLM(ScriptedLM(root, model="scripted/root"), ScriptedLM(["ok"]), sandbox=_kind(kind),
              trace=False, budget=Budget(max_iterations=3))
    with pytest.raises(ContextError, match=f"{path.name}.*changed while it was copied"):
        rlm.completion("what is in it?", context=loaded)
    assert asked  # the first request had gone out: the change came after it
    with pytest.raises(ContextError, match=f"{path.name}.*changed while it was copied"):
        loaded.value  # noqa: B018 - the property is what is tested


def test_value_waits_for_the_copy_and_copies_or_pickles_carry_the_whole_text(
    gate: Gate, big: tuple[Path, str],
) -> None:
    path, text = big
    loaded = load_context([path], shared=True)
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.append(loaded.value))
    reader.start()
    assert gate.reached.wait(timeout=60)  # the copying thread is held
    assert not got  # .value has nothing to give yet: it waits
    gate.open()
    reader.join(timeout=60)
    assert got == [text]
    assert pickle.loads(pickle.dumps(loaded)).value == text
    assert copy.copy(loaded).value == text
    assert copy.copy(loaded) == loaded == load_context([path])  # by value and report, as before
    shown = repr(loaded)
    assert len(shown) < 300 and f"{len(text):,} characters" in shown


def test_as_context_leaves_anything_else_alone(big: tuple[Path, str]) -> None:
    path, text = big
    plain = load_context([path])  # not shared: read whole, nothing in flight
    assert isinstance(plain, LoadedContext)
    assert as_context(plain) == text and text_filling(as_context(plain)) is None
    for other in ("text", ["a"], {"k": 1}, None):
        assert as_context(other) is other


def test_a_long_question_quoted_from_the_middle_is_found_there(
    gate: Gate, big: tuple[Path, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A question longer than the root is shown must be found in the context: the search
    reads the middle, so it waits for the copy (a text with holes would not hold it)."""
    path, text = big
    gate.open_when_waited(monkeypatch)
    loaded = load_context([path], shared=True)
    where = text.index(NEEDLE)

    def root(messages: list[dict[str, Any]]) -> str:
        assert f"context[{where}:{where + len(NEEDLE)}]" in str(messages)
        return "```repl\nFINAL('found')\n```"

    rlm = RLM(ScriptedLM(root, model="scripted/root"), ScriptedLM(["ok"]), sandbox="none",
              trace=False, limits=Limits(question_chars=200))
    assert rlm.completion(NEEDLE, context=loaded).answer == "found"


def test_a_session_question_and_a_resume_take_the_loaded_context(
    tmp_path: Path, gate: Gate, big: tuple[Path, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, text = big
    gate.open_when_waited(monkeypatch)
    done = "```repl\nFINAL(str(len(context)) + ' ' + str(context.count(chr(0))))\n```"
    rlm = RLM(ScriptedLM([done, done], model="scripted/root"), ScriptedLM(["ok"]),
              sandbox=_kind("process"), trace=tmp_path / "home")
    with rlm.session() as session:
        first = session.ask("a small one first", context="short context")
        assert first.answer == "13 0"
        second = session.ask("how long?", context=load_context([path], shared=True))
        assert second.answer == f"{len(text)} 0"  # sent to the kept REPL whole
    solo = RLM(ScriptedLM([done], model="scripted/root"), ScriptedLM(["ok"]), sandbox="none",
               trace=tmp_path / "home")
    ran = solo.completion("how long?", context=load_context([path], shared=True))
    again = RLM(ScriptedLM([], model="scripted/root"), ScriptedLM(["ok"]), sandbox="none",
                trace=tmp_path / "home")
    resumed = again.resume(ran.trace_id, context=load_context([path], shared=True))
    assert resumed.answer == ran.answer == f"{len(text)} 0"


async def test_candidates_over_one_loaded_text_share_its_one_copy(
    gate: Gate, big: tuple[Path, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """k candidates over one file: one buffer, one copy, every worker started on it waits."""
    path, text = big
    gate.open_when_waited(monkeypatch)
    loaded = load_context([path], shared=True)
    done = "```repl\nFINAL(str(len(context)) + ' ' + str(context.count(chr(0))))\n```"
    rlm = RLM(ScriptedLM([done] * 3, model="scripted/root"), ScriptedLM(["ok"]),
              sandbox=_kind("process"), trace=False, candidates=3)
    threading.Timer(0.01, gate.open).start()  # the workers wait on the buffer, not on a reader
    result = await rlm.acompletion("how long?", context=loaded)
    assert result.answer == f"{len(text)} 0"
    assert all(c.answer == result.answer for c in result.candidates)
    await rlm.aclose()


def test_the_in_process_repl_waits_for_the_copy_before_its_first_cell(
    gate: Gate, big: tuple[Path, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``sandbox="none"`` binds the host's str itself: its start waits for the copy (the gate
    opens only when that wait asks), or the first cell would read the middle's empty pages."""
    path, text = big

    def asked(context: object) -> Any:
        filling = text_filling(context)
        if filling is not None:
            gate.open()
        return filling

    monkeypatch.setattr(_protocol, "text_filling", asked)  # text_whole's, not wait_whole's
    loaded = load_context([path], shared=True)
    done = "```repl\nFINAL(str(len(context)) + ' ' + str(context.count(chr(0))))\n```"
    rlm = RLM(ScriptedLM([done], model="scripted/root"), ScriptedLM(["ok"]), sandbox="none",
              trace=False)
    assert rlm.completion("how long?", context=loaded).answer == f"{len(text)} 0"


async def test_a_cancelled_waiter_leaves_the_copy_to_the_others(
    gate: Gate, big: tuple[Path, str],
) -> None:
    """A run cancelled while its sandbox waits for the text must not cancel the copy that
    every other reader of that text waits for."""
    path, text = big
    loaded = load_context([path], shared=True)
    waiting = asyncio.create_task(text_whole(as_context(loaded)))
    await asyncio.sleep(0)
    assert not waiting.done()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    gate.open()
    assert await asyncio.to_thread(lambda: loaded.value) == text
    await text_whole(as_context(loaded))  # done, and done well


def test_a_buffer_that_cannot_grow_mid_copy_fails_the_run_and_the_value_clearly(
    gate: Gate, big: tuple[Path, str],
) -> None:
    """Memory runs out while the middle is copied (the memfd cannot grow): the run stops with
    a context error that says what failed, and ``.value`` raises the same, never a holed text."""
    path, text = big

    def no_memory() -> None:
        raise OSError(errno.ENOMEM, "Cannot allocate memory")

    gate.before = no_memory
    loaded = load_context([path], shared=True)
    gate.open()
    rlm = RLM(ScriptedLM(["```repl\nprint(len(context))\n```"] * 3, model="scripted/root"),
              ScriptedLM(["ok"]), sandbox=_kind("process"), trace=False,
              budget=Budget(max_iterations=3))
    with pytest.raises(ContextError, match=f"cannot copy .*{path.name}.*Cannot allocate"):
        rlm.completion("how long?", context=loaded)
    with pytest.raises(ContextError, match="Cannot allocate"):
        loaded.value  # noqa: B018 - the property is what is tested
