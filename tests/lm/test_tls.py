"""One verifying TLS context per process, the HTTP library's own default."""

from __future__ import annotations

import ssl

from fastrlm.lm import _provider
from fastrlm.lm._openai import OpenAIChatLM


def test_clients_share_one_verifying_context_built_by_the_http_library() -> None:
    context = _provider.shared_ssl_context()
    assert context is _provider.shared_ssl_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


async def test_two_clients_of_a_provider_reuse_it() -> None:
    lm = OpenAIChatLM("openai/x", base_url="https://127.0.0.1:9/v1", api_key="k")
    first, second = lm._new_client(), lm._new_client()
    try:
        assert first is not second
        assert _provider.shared_ssl_context.cache_info().currsize == 1
        # the HTTP path's pool verifies with that context
        assert first.connector is not None
        assert first.connector._ssl is _provider.shared_ssl_context()
    finally:
        await first.close()
        await second.close()


async def test_a_plain_http_endpoint_builds_no_tls_context() -> None:
    _provider.shared_ssl_context.cache_clear()
    lm = OpenAIChatLM("openai/x", base_url="http://127.0.0.1:9/v1", api_key="k")
    session = lm._new_client()
    await session.close()
    assert _provider.shared_ssl_context.cache_info().currsize == 0
