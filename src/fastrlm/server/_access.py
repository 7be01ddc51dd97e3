"""The server's access log: one line per request, on the ``fastrlm.server.access`` logger.

A line holds only the fields of :class:`AccessRecord`: when, the client's address, method, path,
status, duration and, for a chat completion, its run id, stop reason and cost (plus the error
code of a refused request). Headers, bodies, keys and prompts are never read into it. Status 499
means the client went away before its response was complete (a disconnect mid-run cancels it).

``fastrlm serve`` prints them as text or JSON (:func:`formatter`); a program embedding
:class:`~fastrlm.server.RLMServer` configures the logger as it likes (no handler is set here).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from .._foundation.events import Event

access_log = logging.getLogger("fastrlm.server.access")

#: nginx's "client closed request": the client left before its response was complete.
CLIENT_GONE = 499
_MAX_PATH = 200


@dataclass
class AccessRecord:
    """What one request's log line says; filled in as the request is answered."""

    client: str
    method: str = "-"
    path: str = "-"
    status: int | None = None
    error: str | None = None  # the refusal's code, e.g. "invalid_api_key"
    run_id: str | None = None
    stop_reason: str | None = None
    cost_usd: float | None = None
    ts: float = field(default_factory=time.time)
    started: float = field(default_factory=time.monotonic)

    def seen(self, event: Event) -> None:
        """Take the run's id, stop reason and cost from its top-level events."""
        if event.depth != 0:
            return
        if event.type == "run.started":
            self.run_id = event.run_id
        elif event.type == "run.finished":
            self.stop_reason = getattr(event, "stop_reason", None)
            self.cost_usd = getattr(event, "cost_usd", None)

    def fields(self) -> dict[str, Any]:
        line: dict[str, Any] = {
            "time": _iso(self.ts),
            "client": self.client,
            "method": self.method,
            "path": self.path[:_MAX_PATH],
            "status": self.status if self.status is not None else CLIENT_GONE,
            "duration_s": round(time.monotonic() - self.started, 4),
        }
        for name in ("error", "run_id", "stop_reason"):
            if getattr(self, name) is not None:
                line[name] = getattr(self, name)
        if self.cost_usd is not None:
            line["cost_usd"] = round(self.cost_usd, 6)
        return line


def log_access(record: AccessRecord) -> None:
    if not access_log.isEnabledFor(logging.INFO):
        return  # nobody reads it: building the line was a tenth of a small request's CPU
    line = record.fields()
    access_log.info("%s", text_line(line), extra={"access": line})


def text_line(line: dict[str, Any]) -> str:
    """``TIME CLIENT METHOD PATH STATUS DURATIONs [key=value ...]``, control characters of the
    path escaped (a request cannot forge a line)."""
    path = _printable(line["path"]).replace(" ", "%20")
    head = (f"{line['time']} {line['client']} {line['method']} {path} "
            f"{line['status']} {line['duration_s']:.3f}s")
    tail = [f"{k}={_printable(str(line[k]))}" for k in ("run_id", "stop_reason", "error")
            if k in line]
    if "cost_usd" in line:
        tail.append(f"cost_usd={line['cost_usd']:.6f}")
    return " ".join([head, *tail])


class _Text(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        access = getattr(record, "access", None)
        if access is not None:
            return text_line(access)
        return f"{_iso(record.created)} {record.levelname.lower()} {record.name}: " + \
            _printable(super().format(record), keep_newlines=True)


class _JSON(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        access = getattr(record, "access", None)
        if access is not None:
            return json.dumps(access, ensure_ascii=False)
        line = {"time": _iso(record.created), "level": record.levelname.lower(),
                "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def formatter(log_format: str) -> logging.Formatter:
    """The formatter of ``fastrlm serve --log-format text|json``."""
    return _JSON() if log_format == "json" else _Text()


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def _printable(text: str, keep_newlines: bool = False) -> str:
    return "".join(c if c.isprintable() or (keep_newlines and c == "\n")
                   else c.encode("unicode_escape").decode("ascii") for c in text)
