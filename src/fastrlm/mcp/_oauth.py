"""OAuth for ``fastrlm mcp --http``, so hosts that only speak the MCP authorization spec (OAuth
2.1 with PKCE, discovered through RFC 9728 and RFC 8414 metadata, clients registered by RFC 7591)
connect as well as hosts given the static token in a header.

The server is its own authorization server, and the one credential behind it stays the server's
token: the authorization page asks the person connecting the host for that token (once, in the
browser the host opens); given it, the host gets an authorization code, then short-lived access
tokens (and refresh tokens) of its own, which the server accepts as it accepts the static token.
Everything is kept in memory, bounded, and lost at restart (a host then authorizes again).
:class:`OAuthServer` holds the state and answers the OAuth endpoints; ``_app.BearerAuth`` routes
to it and asks it whether a bearer token is valid.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

AUTHORIZATION_METADATA = "/.well-known/oauth-authorization-server"
REGISTER, AUTHORIZE, TOKEN = "/register", "/authorize", "/token"
ENDPOINTS = frozenset({AUTHORIZATION_METADATA, REGISTER, AUTHORIZE, TOKEN})

CODE_TTL_S = 300
ACCESS_TTL_S = 3600
REFRESH_TTL_S = 7 * 86_400
MAX_CLIENTS = 1000
MAX_GRANTS = 10_000
#: Wrong server tokens typed at the authorization page before it closes until a restart.
MAX_FAILURES = 20
MAX_BODY_BYTES = 64 * 1024
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
_UNSAFE_SCHEMES = frozenset({"javascript", "data", "file", "vbscript", "blob", "about"})
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


class OAuthRefusal(Exception):
    """A request the OAuth endpoints refuse: ``error`` is the RFC 6749 code."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


@dataclass(frozen=True, slots=True)
class _Client:
    client_id: str
    redirect_uris: tuple[str, ...]
    name: str


@dataclass(frozen=True, slots=True)
class _Grant:
    client_id: str
    expires: float
    redirect_uri: str = ""
    challenge: str = ""
    resource: str = ""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _bounded_put(table: OrderedDict[str, Any], key: str, value: Any, limit: int) -> None:
    table[key] = value
    while len(table) > limit:
        table.popitem(last=False)


def check_redirect_uri(uri: object) -> str:
    """``uri`` if a client may register it: absolute, no fragment, https, http only to a
    loopback host, or a private-use scheme (``cursor://``) that is not a script or file one."""
    if not isinstance(uri, str) or len(uri) > 2000:
        raise OAuthRefusal("invalid_redirect_uri", "a redirect URI must be a string")
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if not _SCHEME.fullmatch(scheme) or scheme in _UNSAFE_SCHEMES or parts.fragment:
        raise OAuthRefusal("invalid_redirect_uri", f"redirect URI {uri!r} is not allowed")
    if scheme == "http" and (parts.hostname or "") not in _LOOPBACK:
        raise OAuthRefusal("invalid_redirect_uri",
                           f"redirect URI {uri!r}: http is allowed only to a loopback host")
    if scheme in ("http", "https") and not parts.hostname:
        raise OAuthRefusal("invalid_redirect_uri", f"redirect URI {uri!r} has no host")
    return uri


class OAuthServer:
    """The authorization server of one ``fastrlm mcp --http`` (module docstring). ``token``
    is the server's static token, the one secret the authorization page asks for."""

    def __init__(self, token: bytes, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._token = token
        self._clock = clock
        self._clients: OrderedDict[str, _Client] = OrderedDict()
        self._codes: OrderedDict[str, _Grant] = OrderedDict()
        self._access: OrderedDict[str, _Grant] = OrderedDict()
        self._refresh: OrderedDict[str, _Grant] = OrderedDict()
        self.failures = 0

    # ------------------------------------------------------------------ metadata
    @staticmethod
    def metadata(issuer: str) -> dict[str, Any]:
        """RFC 8414 authorization server metadata."""
        return {
            "issuer": issuer,
            "authorization_endpoint": issuer + AUTHORIZE,
            "token_endpoint": issuer + TOKEN,
            "registration_endpoint": issuer + REGISTER,
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none"],
        }

    # ------------------------------------------------------------------ the bearer check
    def accepts(self, token: bytes) -> bool:
        """Whether ``token`` is an access token this server issued and that is still valid."""
        try:
            text = token.decode("ascii")
        except UnicodeDecodeError:
            return False
        grant = self._access.get(_digest(text))
        if grant is None:
            return False
        if grant.expires <= self._clock():
            self._access.pop(_digest(text), None)
            return False
        return True

    # ------------------------------------------------------------------ registration
    def register(self, body: object) -> dict[str, Any]:
        """RFC 7591 dynamic registration of a public client (no secret; PKCE instead)."""
        if not isinstance(body, dict):
            raise OAuthRefusal("invalid_client_metadata", "send the client metadata as JSON")
        uris = body.get("redirect_uris")
        if not isinstance(uris, list) or not uris or len(uris) > 10:
            raise OAuthRefusal("invalid_redirect_uri", "give 1 to 10 redirect_uris")
        checked = tuple(check_redirect_uri(u) for u in uris)
        method = body.get("token_endpoint_auth_method", "none")
        if method != "none":
            raise OAuthRefusal("invalid_client_metadata",
                               "only public clients (token_endpoint_auth_method none) with "
                               "PKCE are supported")
        name = body.get("client_name")
        client = _Client("fastrlm-" + secrets.token_urlsafe(16), checked,
                         name[:200] if isinstance(name, str) else "")
        _bounded_put(self._clients, client.client_id, client, MAX_CLIENTS)
        return {"client_id": client.client_id, "client_id_issued_at": int(time.time()),
                "redirect_uris": list(checked), "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"], "client_name": client.name}

    # ------------------------------------------------------------------ authorization
    def authorization_request(self, query: dict[str, str]) -> tuple[_Client, str]:
        """The client and redirect URI of an authorization request, checked (an error about
        the client or its redirect URI is shown to the person, never redirected)."""
        client = self._clients.get(query.get("client_id", ""))
        if client is None:
            raise OAuthRefusal("invalid_client", "unknown client_id: register the client first")
        redirect = query.get("redirect_uri") or (
            client.redirect_uris[0] if len(client.redirect_uris) == 1 else "")
        if redirect not in client.redirect_uris:
            raise OAuthRefusal("invalid_request", "redirect_uri is not one the client "
                               "registered")
        if query.get("response_type") != "code":
            raise OAuthRefusal("unsupported_response_type", "response_type must be code")
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            raise OAuthRefusal("invalid_request", "PKCE is required: code_challenge with "
                               "code_challenge_method=S256")
        return client, redirect

    def approve(self, form: dict[str, str]) -> str:
        """The redirect (with ``code`` and ``state``) for an authorization form whose person
        typed the server's token; :class:`OAuthRefusal` ``access_denied`` for a wrong one."""
        if self.failures >= MAX_FAILURES:
            raise OAuthRefusal("access_denied", "too many wrong tokens were typed: restart the "
                               "server to authorize again", 403)
        client, redirect = self.authorization_request(form)
        typed = form.get("server_token", "").strip().encode()
        if not hmac.compare_digest(typed, self._token):
            self.failures += 1
            raise OAuthRefusal("access_denied", "that is not the server's token (--token or "
                               "FASTRLM_MCP_TOKEN where the server was started)", 403)
        code = secrets.token_urlsafe(32)
        grant = _Grant(client.client_id, self._clock() + CODE_TTL_S, redirect,
                       form["code_challenge"], form.get("resource", ""))
        _bounded_put(self._codes, _digest(code), grant, MAX_GRANTS)
        params = {"code": code}
        if form.get("state"):
            params["state"] = form["state"]
        return redirect + ("&" if urlsplit(redirect).query else "?") + urlencode(params)

    # ------------------------------------------------------------------ tokens
    def token(self, form: dict[str, str]) -> dict[str, Any]:
        """The token endpoint: an authorization code (with its PKCE verifier) or a refresh
        token for a new access token; each code and refresh token is used once."""
        kind = form.get("grant_type")
        client_id = form.get("client_id", "")
        now = self._clock()
        if kind == "authorization_code":
            grant = self._codes.pop(_digest(form.get("code", "")), None)
            if grant is None or grant.expires <= now or grant.client_id != client_id:
                raise OAuthRefusal("invalid_grant", "the code is unknown, used or expired")
            if form.get("redirect_uri", grant.redirect_uri) != grant.redirect_uri:
                raise OAuthRefusal("invalid_grant", "redirect_uri differs from the request's")
            verifier = form.get("code_verifier", "")
            expected = base64.urlsafe_b64encode(
                hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if not verifier or not hmac.compare_digest(expected, grant.challenge):
                raise OAuthRefusal("invalid_grant", "the code_verifier does not match")
        elif kind == "refresh_token":
            grant = self._refresh.pop(_digest(form.get("refresh_token", "")), None)
            if grant is None or grant.expires <= now or grant.client_id != client_id:
                raise OAuthRefusal("invalid_grant", "the refresh token is unknown, used or "
                                   "expired: authorize again")
        else:
            raise OAuthRefusal("unsupported_grant_type",
                               "grant_type must be authorization_code or refresh_token")
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        _bounded_put(self._access, _digest(access),
                     _Grant(client_id, now + ACCESS_TTL_S, resource=grant.resource), MAX_GRANTS)
        _bounded_put(self._refresh, _digest(refresh),
                     _Grant(client_id, now + REFRESH_TTL_S, resource=grant.resource),
                     MAX_GRANTS)
        return {"access_token": access, "token_type": "Bearer", "expires_in": ACCESS_TTL_S,
                "refresh_token": refresh}

    # ------------------------------------------------------------------ ASGI
    async def handle(self, scope: Scope, receive: Receive, send: Send, issuer: str) -> None:
        """Answer a request to one of :data:`ENDPOINTS`."""
        path, method = str(scope.get("path", "")), str(scope.get("method", ""))
        if method == "OPTIONS":
            await _reply(send, 204, b"", "text/plain")
            return
        try:
            if path == AUTHORIZATION_METADATA and method in ("GET", "HEAD"):
                await _json(send, 200, self.metadata(issuer))
            elif path == REGISTER and method == "POST":
                body = await _body(receive)
                try:
                    data = json.loads(body or b"null")
                except ValueError:
                    data = None
                await _json(send, 201, self.register(data))
            elif path == AUTHORIZE and method == "GET":
                query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
                client, _ = self.authorization_request(query)
                await _page(send, 200, _form(query, client.name))
            elif path == AUTHORIZE and method == "POST":
                form = dict(parse_qsl((await _body(receive)).decode("utf-8", "replace")))
                try:
                    location = self.approve(form)
                except OAuthRefusal as exc:
                    if exc.error != "access_denied":
                        raise
                    await _page(send, exc.status, _form(form, "", exc.description))
                    return
                await _reply(send, 302, b"", "text/plain", [(b"location", location.encode())])
            elif path == TOKEN and method == "POST":
                form = dict(parse_qsl((await _body(receive)).decode("utf-8", "replace")))
                await _json(send, 200, self.token(form), [(b"cache-control", b"no-store")])
            else:
                raise OAuthRefusal("invalid_request", f"{method} {path} is not served", 405)
        except OAuthRefusal as exc:
            if path == AUTHORIZE:
                await _page(send, exc.status, f"<p>{html.escape(exc.description)}</p>")
            else:
                await _json(send, exc.status, {"error": exc.error,
                                               "error_description": exc.description})


async def _body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise OAuthRefusal("invalid_request", "the request body is too large", 413)
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


_CORS = [(b"access-control-allow-origin", b"*"),
         (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
         (b"access-control-allow-headers", b"authorization, content-type, mcp-protocol-version")]


async def _reply(send: Send, status: int, body: bytes, kind: str,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", kind.encode()), (b"content-length", str(len(body)).encode()),
        *_CORS, *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


async def _json(send: Send, status: int, data: dict[str, Any],
                headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await _reply(send, status, json.dumps(data).encode(), "application/json", headers)


async def _page(send: Send, status: int, inner: str) -> None:
    page = ("<!doctype html><meta charset=utf-8><title>fastrlm: connect an MCP host</title>"
            "<body style='font-family:sans-serif;max-width:36em;margin:3em auto'>"
            f"<h1>Connect to fastrlm</h1>{inner}</body>")
    await _reply(send, status, page.encode(), "text/html; charset=utf-8", [
        (b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer"),
        (b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'"),
        (b"cache-control", b"no-store")])


_CARRIED = ("client_id", "redirect_uri", "response_type", "code_challenge",
            "code_challenge_method", "state", "scope", "resource")


def _form(query: dict[str, str], client_name: str, error: str = "") -> str:
    hidden = "".join(
        f"<input type=hidden name='{name}' value='{html.escape(query[name], quote=True)}'>"
        for name in _CARRIED if name in query)
    who = html.escape(client_name or query.get("client_id", "an MCP host"))
    shown = f"<p style='color:#b00'>{html.escape(error)}</p>" if error else ""
    return (f"<p>{who} asks to use this fastrlm server. Type the server's token (the "
            "<code>--token</code> or <code>FASTRLM_MCP_TOKEN</code> it was started with) to "
            f"let it.</p>{shown}<form method=post action='{AUTHORIZE}'>{hidden}"
            "<input type=password name=server_token autofocus size=40> "
            "<button type=submit>Allow</button></form>")
