"""Azure OpenAI (``azure/<deployment>``) on the OpenAI Chat Completions path: the deployment
URL with ``api-version``, key or Entra ID token auth, the v1 endpoint, and the refusals that say
what to set; against a fake server that only answers Azure's paths."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fastrlm import RLM, AuthenticationError, ConfigurationError
from fastrlm.lm import AzureOpenAIChatLM, resolve
from fastrlm.testing import FakeOpenAIServer
from fastrlm.testing._fake_server import FakeRequest

ROOT = '```repl\nFINAL("ok " + llm_query("part"))\n```'


class AzureFake(FakeOpenAIServer):
    """Answers only Azure's deployment path (``?api-version=`` required) or its v1 path."""

    def _is_completion_path(self, path: str) -> bool:
        route, _, query = path.partition("?")
        if route.startswith("/openai/deployments/") and route.endswith("/chat/completions"):
            return query.startswith("api-version=")
        return route == "/openai/v1/chat/completions"


@pytest.fixture
def fake() -> Iterator[AzureFake]:
    def reply(request: FakeRequest) -> str:
        return ROOT if request.is_root else "sub"

    with AzureFake(handler=reply) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_AD_TOKEN",
                 "AZURE_OPENAI_API_VERSION", "OPENAI_API_VERSION"):
        monkeypatch.delenv(name, raising=False)


async def test_a_run_over_deployments_with_the_resource_key(
    fake: AzureFake, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", fake.url)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "resource-key")
    monkeypatch.setenv("AZURE_OPENAI_API_VERSION", "2025-01-01-preview")
    rlm = RLM("azure/my-gpt5-deploy", "azure/mini deploy", sandbox="none")
    try:
        result = await rlm.acompletion("q", context="c")
    finally:
        await rlm.aclose()
    assert result.answer == "ok sub"
    paths = sorted({r.path for r in fake.completion_requests})
    assert paths == [
        "/openai/deployments/mini%20deploy/chat/completions?api-version=2025-01-01-preview",
        "/openai/deployments/my-gpt5-deploy/chat/completions?api-version=2025-01-01-preview"]
    for request in fake.completion_requests:
        headers = {k.lower(): v for k, v in request.headers.items()}
        assert headers["api-key"] == "resource-key" and "authorization" not in headers
    assert set(result.usage.by_model) == {"azure/my-gpt5-deploy", "azure/mini deploy"}


async def test_an_entra_id_token_and_a_token_provider_go_as_bearer(fake: AzureFake) -> None:
    calls: list[int] = []

    def provider() -> str:
        calls.append(1)
        return f"token-{len(calls)}"

    by_env = resolve("azure/dep", base_url=fake.url,
                     env={"AZURE_OPENAI_AD_TOKEN": "static-token"})
    by_provider = AzureOpenAIChatLM("azure/dep", base_url=fake.url,
                                    azure_ad_token_provider=provider)
    try:
        await by_env.complete([{"role": "user", "content": "hi"}])
        await by_provider.complete([{"role": "user", "content": "hi"}])
        await by_provider.complete([{"role": "user", "content": "hi"}])
    finally:
        await by_env.aclose()
        await by_provider.aclose()
    sent = [{k.lower(): v for k, v in r.headers.items()} for r in fake.completion_requests]
    assert [h["authorization"] for h in sent] == [
        "Bearer static-token", "Bearer token-1", "Bearer token-2"]  # fresh per call
    assert all("api-key" not in h for h in sent)
    assert all("api-version=2024-10-21" in r.path for r in fake.completion_requests)


async def test_the_v1_endpoint_sends_the_deployment_as_model(fake: AzureFake) -> None:
    lm = resolve("azure/dep-1", base_url=fake.url + "/openai/v1", api_key="k")
    try:
        await lm.complete([{"role": "user", "content": "hi"}])
    finally:
        await lm.aclose()
    [request] = fake.completion_requests
    assert request.path == "/openai/v1/chat/completions" and request.body["model"] == "dep-1"


async def test_a_token_provider_that_fails_is_an_authentication_error(fake: AzureFake) -> None:
    def broken() -> str:
        raise RuntimeError("no managed identity here")

    lm = AzureOpenAIChatLM("azure/dep", base_url=fake.url, azure_ad_token_provider=broken)
    try:
        with pytest.raises(AuthenticationError, match="no managed identity here"):
            await lm.complete([{"role": "user", "content": "hi"}])
    finally:
        await lm.aclose()
    assert fake.completion_requests == []  # nothing was sent without a token


@pytest.mark.parametrize(("env", "message"), [
    ({"AZURE_OPENAI_API_KEY": "k"}, "set AZURE_OPENAI_ENDPOINT"),
    ({"AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com"}, "set AZURE_OPENAI_API_KEY"),
])
def test_what_is_missing_is_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        resolve("azure/dep", env=env)


def test_a_key_wins_over_a_token_in_the_environment_and_both_given_is_refused() -> None:
    lm = resolve("azure/dep", env={"AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com",
                                   "AZURE_OPENAI_API_KEY": "k", "AZURE_OPENAI_AD_TOKEN": "t"})
    assert isinstance(lm, AzureOpenAIChatLM)
    assert lm.request_headers()["api-key"] == "k" and "Authorization" not in lm.request_headers()
    assert lm.chat_url() == ("https://r.openai.azure.com/openai/deployments/dep/chat/"
                             "completions?api-version=2024-10-21")
    with pytest.raises(ConfigurationError, match="one way to authenticate"):
        AzureOpenAIChatLM("azure/dep", base_url="https://r.openai.azure.com", api_key="k",
                          azure_ad_token="t")


def test_prices_and_reasoning_follow_the_deployment_name() -> None:
    from fastrlm import PriceTable

    lm = AzureOpenAIChatLM("azure/gpt-5-mini", base_url="https://r.openai.azure.com",
                           api_key="k")
    assert lm.reasoning  # a gpt-5 deployment is driven as a reasoning model
    assert PriceTable().price("azure/gpt-5-mini") == PriceTable().price("gpt-5-mini")
