"""``fastrlm mcp --http`` for hosts that only speak the MCP authorization spec: the MCP SDK's
own OAuth client discovers the server's metadata from the 401, registers, sends the person to
the authorization page (who types the server's token), trades the code for tokens and calls the
tools; the static token keeps working beside it. The adversary's side: wrong tokens, codes
replayed or stolen without the PKCE verifier, redirect URIs that are not the client's."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import pytest
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)

from fastrlm.mcp._oauth import MAX_FAILURES, OAuthRefusal, OAuthServer, check_redirect_uri

from .test_mcp_http import TOKEN, http_url  # noqa: F401 - the served-over-HTTP fixture

REDIRECT = "http://127.0.0.1:5999/callback"


class Memory:
    """The SDK's TokenStorage, in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


def _hidden(page: str) -> dict[str, str]:
    return dict(re.findall(r"<input type=hidden name='([^']+)' value='([^']*)'>", page))


class Person:
    """What the host's browser and the person at it do: open the page, type the token."""

    def __init__(self, typed: str) -> None:
        self.typed = typed
        self.location = ""
        self.pages: list[str] = []

    async def open(self, url: str) -> None:
        async with httpx.AsyncClient() as browser:
            page = await browser.get(url)
            assert page.status_code == 200 and "Type the server's token" in page.text
            self.pages.append(page.text)
            form = {**_hidden(page.text), "server_token": self.typed}
            base = url.split("/authorize", 1)[0]
            answer = await browser.post(base + "/authorize", data=form)
            assert answer.status_code == 302, answer.text
            self.location = answer.headers["location"]

    async def callback(self) -> AuthorizationCodeResult:
        query = parse_qs(urlsplit(self.location).query)
        return AuthorizationCodeResult(code=query["code"][0], state=query.get("state", [None])[0])


async def test_an_oauth_only_host_connects_through_discovery_and_the_token_page(
    http_url: str,  # noqa: F811
) -> None:
    person = Person(TOKEN)
    storage = Memory()
    auth = OAuthClientProvider(
        server_url=http_url,
        client_metadata=OAuthClientMetadata(client_name="inspector-like host",
                                            redirect_uris=[REDIRECT],  # type: ignore[list-item]
                                            token_endpoint_auth_method="none"),
        storage=storage, redirect_handler=person.open, callback_handler=person.callback)
    with anyio.fail_after(120):
        http = create_mcp_http_client(auth=auth)
        async with http, Client(streamable_http_client(http_url, http_client=http)) as client:
            tools = await client.list_tools()
            asked = await client.call_tool("rlm_ask", {"question": "Len?", "text": "abcd"})
            status = await client.call_tool("rlm_status", {})
    assert "rlm_grep" in {t.name for t in tools.tools}
    assert not asked.is_error and asked.structured_content["answer"].startswith("chars=4 ")  # type: ignore[index]
    assert not status.is_error
    assert "inspector-like host" in person.pages[0]
    assert storage.tokens is not None and storage.tokens.access_token != TOKEN
    # the token the host got is accepted as the static one is; the static one still works
    for bearer in (storage.tokens.access_token, TOKEN):
        async with httpx.AsyncClient() as plain:
            answer = await plain.post(http_url, headers={
                "Authorization": f"Bearer {bearer}", "Accept": "application/json, "
                "text/event-stream", "Content-Type": "application/json"},
                content=b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}')
        assert answer.status_code != 401


async def test_the_401_and_the_metadata_point_to_this_server(
    http_url: str,  # noqa: F811
) -> None:
    base = http_url.removesuffix("/mcp")
    async with httpx.AsyncClient() as plain:
        refused = await plain.post(http_url, content=b"{}")
        resource = (await plain.get(base + "/.well-known/oauth-protected-resource/mcp")).json()
        # a host that tries the root well-known path (no resource path inserted) finds it too
        at_root = (await plain.get(base + "/.well-known/oauth-protected-resource")).json()
        server = (await plain.get(base + "/.well-known/oauth-authorization-server")).json()
    challenge = refused.headers["www-authenticate"]
    assert refused.status_code == 401
    assert f'resource_metadata="{base}/.well-known/oauth-protected-resource/mcp"' in challenge
    assert resource["resource"] == http_url and resource["authorization_servers"] == [base]
    assert at_root == resource
    assert server["issuer"] == base and server["code_challenge_methods_supported"] == ["S256"]
    assert server["token_endpoint"] == base + "/token"


def _registered(oauth: OAuthServer) -> str:
    return str(oauth.register({"redirect_uris": [REDIRECT], "client_name": "h"})["client_id"])


def _approved(oauth: OAuthServer, client: str, verifier: str = "v" * 50) -> dict[str, str]:
    import base64
    import hashlib

    challenge = base64.urlsafe_b64encode(
        hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    location = oauth.approve({
        "client_id": client, "redirect_uri": REDIRECT, "response_type": "code",
        "code_challenge": challenge, "code_challenge_method": "S256", "state": "s1",
        "server_token": "right"})
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == ["s1"]
    return {"grant_type": "authorization_code", "code": query["code"][0],
            "client_id": client, "redirect_uri": REDIRECT, "code_verifier": verifier}


def test_a_code_is_used_once_needs_its_verifier_and_its_client() -> None:
    oauth = OAuthServer(b"right")
    client = _registered(oauth)
    form = _approved(oauth, client)
    for wrong in ({"code_verifier": "x" * 50}, {"client_id": _registered(oauth)}):
        stolen = _approved(oauth, client)
        with pytest.raises(OAuthRefusal, match="verifier|unknown"):
            oauth.token({**stolen, **wrong})
    tokens = oauth.token(form)
    assert oauth.accepts(tokens["access_token"].encode())
    with pytest.raises(OAuthRefusal, match="unknown, used or expired"):
        oauth.token(form)  # replayed
    again = oauth.token({"grant_type": "refresh_token", "client_id": client,
                         "refresh_token": tokens["refresh_token"]})
    assert oauth.accepts(again["access_token"].encode())
    with pytest.raises(OAuthRefusal, match="refresh token"):
        oauth.token({"grant_type": "refresh_token", "client_id": client,
                     "refresh_token": tokens["refresh_token"]})  # rotated: used once
    assert not oauth.accepts(b"made-up") and not oauth.accepts(b"\xff\xfe")


def test_expired_access_tokens_are_refused() -> None:
    now = [0.0]
    oauth = OAuthServer(b"right", clock=lambda: now[0])
    tokens = oauth.token(_approved(oauth, _registered(oauth)))
    assert oauth.accepts(tokens["access_token"].encode())
    now[0] = 10**6
    assert not oauth.accepts(tokens["access_token"].encode())


def test_wrong_server_tokens_are_refused_then_the_page_closes() -> None:
    oauth = OAuthServer(b"right")
    client = _registered(oauth)
    form: dict[str, Any] = {"client_id": client, "redirect_uri": REDIRECT,
                            "response_type": "code", "code_challenge": "c",
                            "code_challenge_method": "S256", "server_token": "guess"}
    for _ in range(MAX_FAILURES):
        with pytest.raises(OAuthRefusal, match="not the server's token"):
            oauth.approve(form)
    with pytest.raises(OAuthRefusal, match="restart the server"):
        oauth.approve({**form, "server_token": "right"})


@pytest.mark.parametrize("uri", ["javascript:alert(1)", "http://evil.example/cb",
                                 "https://host/cb#frag", "file:///etc/passwd", "data:,x"])
def test_redirect_uris_that_could_leak_a_code_are_refused(uri: str) -> None:
    with pytest.raises(OAuthRefusal):
        check_redirect_uri(uri)


def test_an_authorization_request_must_name_a_registered_redirect_and_pkce() -> None:
    oauth = OAuthServer(b"right")
    client = _registered(oauth)
    base = {"client_id": client, "response_type": "code", "code_challenge": "c",
            "code_challenge_method": "S256"}
    with pytest.raises(OAuthRefusal, match="not one the client registered"):
        oauth.authorization_request({**base, "redirect_uri": "http://127.0.0.1:1/other"})
    with pytest.raises(OAuthRefusal, match="PKCE is required"):
        oauth.authorization_request({**base, "code_challenge_method": "plain"})
    with pytest.raises(OAuthRefusal, match="unknown client_id"):
        oauth.authorization_request({**base, "client_id": "nope"})
    assert check_redirect_uri("cursor://anysphere.cursor-mcp/oauth/callback")
