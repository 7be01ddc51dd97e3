"""The MCP wiring: :func:`build_server` registers :class:`RLMTools` as MCP tools on the official
SDK's ``MCPServer``; :func:`serve_stdio` and :func:`serve_http` run it. The ``mcp`` package is
imported here only (extra ``fastrlm[mcp]``), never by ``import fastrlm``.

Over HTTP every request must carry ``Authorization: Bearer <token>`` (:class:`BearerAuth`, a
constant-time compare); others get 401 before the SDK sees them.
"""

from __future__ import annotations

import hmac
import json
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Annotated, Any

from pydantic import Field

try:
    from mcp.server.mcpserver import Context, MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
except ImportError as exc:  # pragma: no cover - exercised where the extra is missing
    from .._foundation.errors import MissingExtraError

    raise MissingExtraError("mcp", "mcp", "fastrlm mcp") from exc

from .._foundation.text import well_formed, well_formed_value
from ._policy import ToolRefusal
from ._tools import RLMTools

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

INSTRUCTIONS = """\
fastrlm answers questions over inputs too large for a context window (whole directories, \
logs, datasets): a root model reads them with code in a sandbox and calls sub-models on pieces. \
Use rlm_ask with paths (files, directories, globs under the server's roots) or text; for several \
questions about the same input, rlm_load it once and pass the handle. rlm_runs and rlm_trace \
show what past runs did."""

_BUDGET_HELP = (
    "Optional limits for this call, each at most the server's: max_usd, max_subcalls, "
    "max_requests, max_seconds, max_depth, max_iterations."
)


def build_server(tools: RLMTools, *, name: str = "fastrlm") -> MCPServer[Any]:
    """An ``MCPServer`` offering ``rlm_ask``, ``rlm_load``, ``rlm_runs`` and ``rlm_trace``."""
    server: MCPServer[Any] = MCPServer(name, instructions=INSTRUCTIONS, log_level="WARNING")
    roots = ", ".join(tools.roots.paths)

    @server.tool(description=(
        "Answer a question over files, directories or globs (under the roots: "
        f"{roots}; relative paths start at the first), over text, or over a handle from "
        "rlm_load. Give exactly one of paths, text, handle. Returns the answer with the run's "
        "stop reason, cost and run id. Progress is reported while it runs; cancelling the call "
        "cancels the run."))
    async def rlm_ask(
        question: Annotated[str, Field(description="What to answer.")],
        ctx: Context,
        paths: Annotated[list[str] | None, Field(description="Files, directories or globs.")]
        = None,
        text: Annotated[str | None, Field(description="The context itself, as text.")] = None,
        handle: Annotated[str | None, Field(description="A handle returned by rlm_load.")]
        = None,
        budget: Annotated[dict[str, Any] | None, Field(description=_BUDGET_HELP)] = None,
    ) -> dict[str, Any]:
        async def progress(step: float, message: str) -> None:
            await ctx.report_progress(step, None, message)

        return await _refused_as_tool_error(tools.ask(
            question, paths=paths, text=text, handle=handle, budget=budget, progress=progress))

    @server.tool(description=(
        "Load files, directories or globs (under the roots) once and return a handle for "
        f"rlm_ask; the server keeps the {tools.handles.limit} most recently used handles."))
    async def rlm_load(
        paths: Annotated[list[str], Field(description="Files, directories or globs.")],
    ) -> dict[str, Any]:
        return await _refused_as_tool_error(tools.load(paths))

    @server.tool(description="Past runs, newest first: id, question, stop reason, cost, time.")
    async def rlm_runs(
        limit: Annotated[int, Field(description="How many runs (1-1000).")] = 20,
    ) -> list[dict[str, Any]]:
        return list(_refused(lambda: tools.runs(limit)))

    @server.tool(description=(
        "One past run as a readable transcript: model replies, code, outputs, sub-calls, the "
        "answer. run_id: an id, a unique prefix, 'last' or N (the N-th newest)."))
    async def rlm_trace(
        run_id: Annotated[str, Field(description="Run id, prefix, 'last' or N.")] = "last",
        max_chars: Annotated[int, Field(description="Clip long texts to this many characters.")]
        = 4000,
    ) -> str:
        return str(_refused(lambda: tools.trace(run_id, max_chars)))

    return server


async def _refused_as_tool_error(call: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    try:
        result: dict[str, Any] = well_formed_value(await call)
        return result
    except ToolRefusal as exc:
        raise ToolError(well_formed(str(exc))) from exc


def _refused(call: Callable[[], Any]) -> Any:
    """The tool's result, every text in it well formed (a file name of invalid UTF-8, a trace
    holding a pasted lone surrogate), which the SDK's JSON serializer would otherwise refuse,
    failing the whole call; a refusal as the tool's error."""
    try:
        return well_formed_value(call())
    except ToolRefusal as exc:
        raise ToolError(well_formed(str(exc))) from exc


class BearerAuth:
    """ASGI middleware: 401 unless ``Authorization: Bearer <token>`` matches."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        if not token:
            raise ValueError("the bearer token is empty")
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._authorized(scope):
            body = json.dumps({"error": "unauthorized: send Authorization: Bearer <token>"})
            await send({"type": "http.response.start", "status": 401, "headers": [
                (b"content-type", b"application/json"),
                (b"www-authenticate", b'Bearer realm="fastrlm"'),
                (b"content-length", str(len(body)).encode()),
            ]})
            await send({"type": "http.response.body", "body": body.encode()})
            return
        await self.app(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", ()):
            if name.lower() == b"authorization":
                scheme, _, sent = bytes(value).partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(sent.strip(),
                                                                            self._token)
        return False


async def serve_stdio(server: MCPServer[Any]) -> None:
    """Serve over stdin/stdout until the client closes them."""
    await server.run_stdio_async()


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0 picks a free one), bound before the server starts so the
    address can be printed and connections queue until it accepts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


async def serve_http(server: MCPServer[Any], sock: socket.socket, *, host: str,
                     token: str | None, max_body_bytes: int = 64 * 1024 * 1024) -> None:
    """Serve streamable HTTP at ``/mcp`` on ``sock`` until SIGINT/SIGTERM (uvicorn's handlers).
    ``token`` None means no auth (the CLI allows it only on loopback, when asked);
    ``max_body_bytes`` caps a request (a ``text`` context travels in it)."""
    import uvicorn

    app: ASGIApp = server.streamable_http_app(host=host, max_request_body_size=max_body_bytes)
    if token is not None:
        app = BearerAuth(app, token)
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    await uvicorn.Server(config).serve(sockets=[sock])
