"""The MCP wiring: :func:`build_server` registers :class:`RLMTools` as MCP tools on the official
SDK's ``MCPServer``; :func:`serve_stdio` and :func:`serve_http` run it. The ``mcp`` package is
imported here only (extra ``fastrlm[mcp]``), never by ``import fastrlm``.

Every tool that only reads (all but ``rlm_ask``, which spends, and ``rlm_load``/``rlm_drop``,
which change the handles) carries ``readOnlyHint``; ``rlm_ask`` answers with structured content
plus a short text (the answer and one line), not the structured content's JSON again.

Over HTTP every request must carry ``Authorization: Bearer <token>`` (:class:`BearerAuth`, a
constant-time compare), or an access token the server's own OAuth server issued; others get
401 before the SDK sees them. The 401 follows the MCP authorization spec's discovery (RFC
9728): its ``WWW-Authenticate`` names the protected resource metadata
(``resource_metadata="<base>/.well-known/oauth-protected-resource/mcp"``), served without a
token there and at ``/.well-known/oauth-protected-resource``, which names this server as its
authorization server (RFC 8414 metadata, registration, authorization and token endpoints:
:mod:`._oauth`, whose authorization page asks for the server's token). So a host given the
token as a header and a host that only does OAuth both connect. CORS preflights
(``OPTIONS``, which browsers send without credentials) pass through.
"""

from __future__ import annotations

import hmac
import json
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Annotated, Any

from pydantic import Field, WithJsonSchema

try:
    from mcp.server.mcpserver import Context, MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.types import CallToolResult, TextContent, ToolAnnotations
except ImportError as exc:  # pragma: no cover - exercised where the extra is missing
    from .._foundation.errors import MissingExtraError

    raise MissingExtraError("mcp", "mcp", "fastrlm mcp") from exc

from .._foundation.text import well_formed, well_formed_value
from ._oauth import ENDPOINTS as OAUTH_ENDPOINTS
from ._oauth import OAuthServer
from ._policy import ToolRefusal, budget_schema
from ._tools import RLMTools, summary_line

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

INSTRUCTIONS = """\
fastrlm answers questions over inputs too large for a context window (whole directories, \
logs, datasets): a root model reads them with code in a sandbox and calls sub-models on pieces. \
Use rlm_ask with paths (files, directories, globs under the server's roots) or text; for several \
questions about the same input, rlm_load it once and pass the handle. rlm_grep, rlm_read and \
rlm_stats look into a handle without a model (free, instant); rlm_handles and rlm_drop manage \
handles; rlm_status shows the server's models and limits; rlm_runs and rlm_trace show what past \
runs did."""

#: The well-known path of RFC 9728's protected resource metadata.
WELL_KNOWN = "/.well-known/oauth-protected-resource"
MCP_PATH = "/mcp"

_READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                             open_world_hint=False)
_HANDLE = Annotated[str, Field(description="A handle returned by rlm_load.")]


def build_server(tools: RLMTools, *, name: str = "fastrlm") -> MCPServer[Any]:
    """An ``MCPServer`` offering the tools of :class:`RLMTools`."""
    server: MCPServer[Any] = MCPServer(name, instructions=INSTRUCTIONS, log_level="WARNING")
    roots = ", ".join(tools.roots.paths)

    @server.tool(description=(
        "Answer a question over files, directories or globs (under the roots: "
        f"{roots}; relative paths start at the first), over text, or over a handle from "
        "rlm_load. Give exactly one of paths, text, handle. Returns the answer with the run's "
        "stop reason, cost and run id. Progress is reported while it runs; cancelling the call "
        "cancels the run."),
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False,
                                    idempotent_hint=False, open_world_hint=True))
    async def rlm_ask(
        question: Annotated[str, Field(description="What to answer.")],
        ctx: Context,
        paths: Annotated[list[str] | None, Field(description="Files, directories or globs.")]
        = None,
        text: Annotated[str | None, Field(description="The context itself, as text.")] = None,
        handle: Annotated[str | None, Field(description="A handle returned by rlm_load.")]
        = None,
        budget: Annotated[dict[str, Any] | None, WithJsonSchema(budget_schema())] = None,
    ) -> CallToolResult:
        async def progress(step: float, message: str) -> None:
            await ctx.report_progress(step, None, message)

        out = await _refused_as_tool_error(tools.ask(
            question, paths=paths, text=text, handle=handle, budget=budget, progress=progress))
        return CallToolResult(content=[TextContent(type="text", text=summary_line(out))],
                              structured_content=out)

    @server.tool(description=(
        "Load files, directories or globs (under the roots) once and return a handle for "
        f"rlm_ask, rlm_grep, rlm_read and rlm_stats; the server keeps the "
        f"{tools.handles.limit} most recently used handles."),
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False,
                                    idempotent_hint=False, open_world_hint=False))
    async def rlm_load(
        paths: Annotated[list[str], Field(description="Files, directories or globs.")],
    ) -> dict[str, Any]:
        return await _refused_as_tool_error(tools.load(paths))

    @server.tool(description=(
        "Search a loaded context (a handle from rlm_load) for lines matching a pattern, with "
        "lines of context either side; no model is called. Literal text unless regex=true."),
        annotations=_READ_ONLY)
    async def rlm_grep(
        handle: _HANDLE,
        pattern: Annotated[str, Field(description="The text (or regular expression) to find.")],
        regex: Annotated[bool, Field(description="Treat pattern as a regular expression.")]
        = False,
        ignore_case: Annotated[bool, Field(description="Match regardless of case.")] = False,
        context_lines: Annotated[int, Field(description="Lines either side (0-20).")] = 2,
        max_matches: Annotated[int, Field(description="At most this many (1-500).")] = 50,
    ) -> dict[str, Any]:
        return await _refused_as_tool_error(tools.grep(
            handle, pattern, regex=regex, ignore_case=ignore_case, context_lines=context_lines,
            max_matches=max_matches))

    @server.tool(description=(
        "Read a range of lines of one document of a loaded context (by index or name, as "
        "rlm_stats and rlm_grep give them); no model is called."), annotations=_READ_ONLY)
    async def rlm_read(
        handle: _HANDLE,
        document: Annotated[int | str, Field(description="Document index or name.")] = 0,
        start_line: Annotated[int, Field(description="First line, from 1.")] = 1,
        max_lines: Annotated[int, Field(description="At most this many lines (1-2000).")]
        = 200,
        start_char: Annotated[int, Field(description=(
            "Character of start_line to begin at (0-based): a long line cut short goes on "
            "from the next_char a read gave."))] = 0,
    ) -> dict[str, Any]:
        return dict(_refused(lambda: tools.read(handle, document, start_line, max_lines,
                                                start_char)))

    @server.tool(description=(
        "Sizes of a loaded context: documents, characters, lines, estimated tokens and the "
        "largest documents; no model is called."), annotations=_READ_ONLY)
    async def rlm_stats(handle: _HANDLE) -> dict[str, Any]:
        return dict(_refused(lambda: tools.stats(handle)))

    @server.tool(description="The loaded contexts (handles), most recently used first.",
                 annotations=_READ_ONLY)
    async def rlm_handles() -> list[dict[str, Any]]:
        return list(_refused(tools.handles_list))

    @server.tool(description="Drop a handle, freeing its memory.",
                 annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True,
                                             idempotent_hint=False, open_world_hint=False))
    async def rlm_drop(handle: _HANDLE) -> dict[str, Any]:
        return dict(_refused(lambda: tools.drop(handle)))

    @server.tool(description=(
        "The server: root and sub model, sandbox, roots, the budget a call may lower, handles "
        "and runs in progress."), annotations=_READ_ONLY)
    async def rlm_status() -> dict[str, Any]:
        return dict(_refused(tools.status))

    @server.tool(description="Past runs, newest first: id, question, stop reason, cost, time.",
                 annotations=_READ_ONLY)
    async def rlm_runs(
        limit: Annotated[int, Field(description="How many runs (1-1000).")] = 20,
    ) -> list[dict[str, Any]]:
        return list(_refused(lambda: tools.runs(limit)))

    @server.tool(description=(
        "One past run as a readable transcript: model replies, code, outputs, sub-calls, the "
        "answer. run_id: an id, a unique prefix, 'last' or N (the N-th newest)."),
        annotations=_READ_ONLY)
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
    """ASGI middleware: 401 unless ``Authorization: Bearer <token>`` carries the server's
    token or an access token its OAuth server (:class:`~fastrlm.mcp._oauth.OAuthServer`)
    issued; the discovery metadata and the OAuth endpoints are served without one (the module
    docstring)."""

    def __init__(self, app: ASGIApp, token: str, *, resource_name: str = "fastrlm") -> None:
        if not token:
            raise ValueError("the bearer token is empty")
        self.app = app
        self._token = token.encode()
        self.resource_name = resource_name
        self.oauth = OAuthServer(self._token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        if path in (WELL_KNOWN, WELL_KNOWN + MCP_PATH):
            await self._metadata(scope, send)
        elif path in OAUTH_ENDPOINTS:
            await self.oauth.handle(scope, receive, send, _base_url(scope))
        elif scope.get("method") == "OPTIONS" or self._authorized(scope):
            await self.app(scope, receive, send)
        else:
            await self._challenge(scope, send)

    def metadata(self, scope: Scope) -> dict[str, Any]:
        """RFC 9728's protected resource metadata for the MCP endpoint this request reached;
        the authorization server is this server itself (:mod:`._oauth`)."""
        base = _base_url(scope)
        return {"resource": base + MCP_PATH, "authorization_servers": [base],
                "bearer_methods_supported": ["header"], "resource_name": self.resource_name}

    async def _metadata(self, scope: Scope, send: Send) -> None:
        if scope.get("method") not in ("GET", "HEAD", "OPTIONS"):
            await _respond(send, 405, {"error": "method not allowed: GET the metadata"},
                           [(b"allow", b"GET, HEAD, OPTIONS")])
            return
        await _respond(send, 200, self.metadata(scope), [
            (b"access-control-allow-origin", b"*"),
            (b"access-control-allow-methods", b"GET, OPTIONS"),
            (b"access-control-allow-headers", b"mcp-protocol-version"),
            (b"cache-control", b"max-age=3600")], head=scope.get("method") == "HEAD")

    async def _challenge(self, scope: Scope, send: Send) -> None:
        where = _base_url(scope) + WELL_KNOWN + MCP_PATH
        sent = any(name.lower() == b"authorization" for name, _ in scope.get("headers", ()))
        error = 'error="invalid_token", ' if sent else ""
        challenge = f'Bearer realm="fastrlm", {error}resource_metadata="{where}"'
        await _respond(send, 401, {
            "error": "unauthorized: send Authorization: Bearer <token> (the token the server "
                     "was started with: --token or FASTRLM_MCP_TOKEN), or connect through "
                     "OAuth (discovered from resource_metadata)",
            "resource_metadata": where}, [(b"www-authenticate", challenge.encode())])

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", ()):
            if name.lower() == b"authorization":
                scheme, _, sent = bytes(value).partition(b" ")
                if scheme.lower() != b"bearer":
                    return False
                sent = sent.strip()
                return hmac.compare_digest(sent, self._token) or self.oauth.accepts(sent)
        return False


def _base_url(scope: Scope) -> str:
    """``scheme://host[:port]`` as the client addressed this server (its Host header; the
    socket's address when it sent none). A Host header with characters no host name holds is
    replaced by the socket's address, so nothing the client sent is echoed into a header."""
    scheme = str(scope.get("scheme") or "http")
    host = ""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"host":
            host = bytes(value).decode("latin-1")
            break
    if not host or not all(c.isalnum() or c in ".-:[]_" for c in host):
        server = scope.get("server") or ("127.0.0.1", 0)
        address = str(server[0])
        host = f"[{address}]" if ":" in address else address
        if server[1]:
            host += f":{server[1]}"
    return f"{scheme}://{host}"


async def _respond(send: Send, status: int, body: dict[str, Any],
                   headers: list[tuple[bytes, bytes]], *, head: bool = False) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
        *headers]})
    await send({"type": "http.response.body", "body": b"" if head else data})


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
