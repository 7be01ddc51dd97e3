"""The framed protocol: round trips, validation, and fuzzing from the worker side. Whatever the
worker sends, the host gets a valid message, a ProtocolError or a WorkerCrashedError: never a
crash of another kind, never a hang."""

from __future__ import annotations

import asyncio
import json
import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastrlm import ProtocolError, WorkerCrashedError
from fastrlm.sandbox import Sandbox, _protocol
from fastrlm.sandbox._channel import Channel

from .helpers import MakeSandbox, assert_alive

VALID_DONE = {
    "op": "done",
    "nonce": "n1",
    "stdout": "out",
    "stderr": "",
    "error": None,
    "final": {"text": "42", "source": "FINAL"},
    "answer_content": None,
    "restored": ["context"],
    "timed_out": False,
    "dropped_bytes": 0,
}


async def _receive_all(data: bytes, max_frame: int = 1 << 20) -> list[dict[str, object]]:
    """Feed ``data`` through a pipe (then EOF) to a Channel and collect what it yields."""
    read_end, write_end = os.pipe()
    sink_read, sink_write = os.pipe()  # the channel's outgoing side, unused here
    os.close(sink_read)
    channel = Channel(read_end, sink_write, max_frame=max_frame)
    os.set_blocking(write_end, True)
    os.write(write_end, data)
    os.close(write_end)
    messages = []
    try:
        async with asyncio.timeout(5):
            while True:
                messages.append(await channel.receive())
    except (ProtocolError, WorkerCrashedError):
        pass
    finally:
        channel.close()
    return messages


def receive_all(data: bytes, max_frame: int = 1 << 20) -> list[dict[str, object]]:
    return asyncio.run(_receive_all(data, max_frame))


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def test_a_valid_frame_round_trips() -> None:
    data = _protocol.encode_frame(VALID_DONE)
    assert receive_all(data) == [VALID_DONE]
    assert receive_all(data * 3) == [VALID_DONE] * 3


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\x00\x00", id="truncated-header"),
        pytest.param(frame(b'{"op": "done"')[:-3], id="truncated-body"),
        pytest.param(b"\xff\xff\xff\xff" + b"x" * 100, id="oversized"),
        pytest.param(frame(b"not json"), id="not-json"),
        pytest.param(frame(b"[1, 2]"), id="not-an-object"),
        pytest.param(frame(b'{"op": 3}'), id="op-not-str"),
        pytest.param(frame(b'{"op": "launch_missiles"}'), id="unknown-op"),
        pytest.param(frame(b'{"op": "done", "stdout": 1}'), id="done-wrong-types"),
        pytest.param(frame(b'{"op": "llm_query", "id": 1, "prompts": [1]}'), id="prompts-not-str"),
        pytest.param(
            frame(b'{"op": "rlm_query", "id": 1, "prompts": ["a"], "contexts": [1, 2]}'),
            id="contexts-wrong-length",
        ),
        pytest.param(frame(b"\xff\xfe{}"), id="not-utf8"),
        pytest.param(frame(b"[" * 100_000), id="deep-nesting"),
    ],
)
def test_bad_frames_are_protocol_errors(data: bytes) -> None:
    assert receive_all(data) == []


def test_an_oversized_frame_is_refused_before_its_body_is_read() -> None:
    with pytest.raises(ProtocolError, match="announced"):
        asyncio.run(_first(struct.pack(">I", 2**31)))


async def _first(data: bytes) -> dict[str, object]:
    read_end, write_end = os.pipe()
    channel = Channel(read_end, os.dup(write_end))
    os.write(write_end, data)  # the pipe stays open: a read of the body would hang
    try:
        async with asyncio.timeout(5):
            return await channel.receive()
    finally:
        channel.close()
        os.close(write_end)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_fuzz_arbitrary_bytes_never_crash_or_hang(data: bytes) -> None:
    for message in receive_all(data):
        assert _protocol.check_worker_frame(message) is message


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=120, deadline=None)
@given(
    op=st.sampled_from(sorted(_protocol.WORKER_OPS)) | st.text(max_size=10),
    fields=st.dictionaries(
        st.sampled_from(
            [
                "id",
                "prompts",
                "contexts",
                "model",
                "text",
                "pid",
                "confined",
                "stdout",
                "stderr",
                "error",
                "final",
                "restored",
                "timed_out",
                "dropped_bytes",
                "answer_content",
            ]
        ),
        JSON,
    ),
    cut=st.integers(min_value=0, max_value=64),
)
def test_fuzz_json_frames_are_validated_or_refused(
    op: str, fields: dict[str, object], cut: int
) -> None:
    body = json.dumps({"op": op, **fields}).encode()
    data = frame(body)
    messages = receive_all(data[: len(data) - cut])
    assert len(messages) <= 1
    if messages:
        assert cut == 0 and _protocol.check_worker_frame(messages[0]) is messages[0]


def test_frames_past_the_cap_are_refused_by_the_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_protocol, "MAX_FRAME_BYTES", 1000)
    _protocol.encode_frame({"op": "exec", "code": "x" * 900})
    with pytest.raises(_protocol.FrameError):
        _protocol.encode_frame({"op": "exec", "code": "x" * 1001})


# ------------------------------------------------------------------- from a real worker
PIPE = "llm_query.__self__._host_call.__self__._fd_out"


@pytest.mark.sandbox
@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"garbage!", id="garbage"),
        pytest.param(b"\xff\xff\xff\xff", id="oversized-header"),
        pytest.param(frame(b'{"op": "done", "stdout": ""}')[:-5], id="truncated"),
        pytest.param(frame(b'{"op": "hello"}'), id="unknown-op"),
        pytest.param(frame(b'{"op": "done"}'), id="done-missing-fields"),
        pytest.param(frame(b'{"op": "vars", "text": "x"}'), id="wrong-terminal"),
        pytest.param(frame(b'{"op": "llm_query", "id": 1, "prompts": "p"}'), id="bad-query"),
    ],
)
async def test_worker_side_bad_frames_restart_the_worker(
    make_sandbox: MakeSandbox, payload: bytes
) -> None:
    sb: Sandbox = await make_sandbox("auto", exec_timeout_s=0.5, hard_grace_s=0.5)
    code = f"import os\nos.write({PIPE}, {payload!r})\nimport time\ntime.sleep(30)"
    result = await sb.execute(code)
    assert result.restarted, result
    assert result.error is not None and "SandboxRestarted" in result.error
    await assert_alive(sb)


@pytest.mark.sandbox
async def test_worker_writing_half_a_frame_then_dying_is_survived(
    make_sandbox: MakeSandbox,
) -> None:
    sb = await make_sandbox("auto")
    result = await sb.execute(
        f"import os\nos.write({PIPE}, b'\\x00\\x00\\x01\\x00{{')\nos._exit(1)"
    )
    assert result.restarted
    await assert_alive(sb)
