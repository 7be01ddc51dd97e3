"""The REPL sandbox: where model-written code runs.

``create_sandbox("auto")`` gives the best isolated layer that works on this machine (bubblewrap,
then Landlock; a container, docker or podman, only where neither works and a daemon answers
with the image :func:`build_image` makes) and raises :class:`~fastrlm.SandboxUnavailableError`
when none works: it never
falls back to the plain confined process (``"process"``: seccomp and rlimits only, the host's
files stay readable) or to the in-process one; both must be asked for by name, and ``"none"`` is
unsafe. ``doctor_report()`` says which layers work here and why the others
do not.
"""

from __future__ import annotations

from ._base import (
    RESERVED_NAMES,
    ExecResult,
    FinalValue,
    HostBridge,
    Sandbox,
    SandboxLimits,
)
from ._budgetcalls import BudgetRequest, CombineRequest, combine_refusal
from ._container import DEFAULT_IMAGE, IMAGE_ENV, ImageInfo, image_name
from ._container_image import build_image
from ._hostcalls import (
    MAX_TOOL_NAME_CHARS,
    HostRequest,
    ToolParam,
    ToolSpec,
    tool_arguments,
    tool_error_reply,
)
from ._hostops import (
    HOST_OPS,
    HandlerBridge,
    HostOpRequest,
    ThreeMethodFace,
    ToolRequest,
    dispatch,
)
from ._layers import KINDS, LayerStatus, doctor_report, plans_for
from ._protocol import MAX_FRAME_BYTES, mapped_text, text_filling, text_whole, utf8_view
from ._runtime import answer_json
from ._warm import WarmWorkers, warm_workers


def create_sandbox(kind: str = "auto", limits: SandboxLimits | None = None) -> Sandbox:
    """A sandbox of ``kind``: ``"auto"``, ``"bwrap"``, ``"landlock"``, ``"process"``,
    ``"docker"``, ``"podman"`` or ``"none"``. Raises ``ValueError`` for an unknown kind and
    :class:`~fastrlm.SandboxUnavailableError` (saying why) when the layer cannot work here."""
    limits = limits if limits is not None else SandboxLimits()
    if kind not in KINDS:
        raise ValueError(f"unknown sandbox kind {kind!r}; expected one of {', '.join(KINDS)}")
    if kind == "none":
        from ._inprocess import InProcessSandbox

        return InProcessSandbox(limits)
    from ._worker import WorkerSandbox

    return WorkerSandbox(plans_for(kind), limits)


__all__ = [
    "DEFAULT_IMAGE",
    "IMAGE_ENV",
    "HOST_OPS",
    "KINDS",
    "MAX_FRAME_BYTES",
    "MAX_TOOL_NAME_CHARS",
    "RESERVED_NAMES",
    "BudgetRequest",
    "CombineRequest",
    "ExecResult",
    "FinalValue",
    "HandlerBridge",
    "HostBridge",
    "HostOpRequest",
    "HostRequest",
    "ImageInfo",
    "LayerStatus",
    "Sandbox",
    "SandboxLimits",
    "ThreeMethodFace",
    "ToolRequest",
    "ToolParam",
    "WarmWorkers",
    "ToolSpec",
    "answer_json",
    "build_image",
    "combine_refusal",
    "create_sandbox",
    "dispatch",
    "doctor_report",
    "image_name",
    "mapped_text",
    "plans_for",
    "text_filling",
    "text_whole",
    "tool_arguments",
    "tool_error_reply",
    "utf8_view",
    "warm_workers",
]
