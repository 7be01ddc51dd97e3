"""Model strings resolve through the preset table: endpoints, keys, canonical names."""

from __future__ import annotations

import importlib.util

import pytest

from fastrlm import ConfigurationError, Limits, MissingExtraError, PriceTable
from fastrlm.lm import PRESETS, OpenAIChatLM, resolve
from fastrlm.lm._registry import FACTORIES

OPENAI_COMPATIBLE = [name for name, p in PRESETS.items() if p.api == "openai-chat"]

LITELLM_INSTALLED = importlib.util.find_spec("litellm") is not None


@pytest.mark.parametrize("name", OPENAI_COMPATIBLE)
async def test_every_openai_compatible_preset_resolves(name: str) -> None:
    preset = PRESETS[name]
    lm = resolve(f"{name}/some-model:7b", api_key="k")
    assert isinstance(lm, OpenAIChatLM)
    assert lm.model == f"{name}/some-model:7b"
    assert lm.api_model == "some-model:7b"
    assert lm.base_url == preset.base_url
    await lm.aclose()


@pytest.mark.extra("anthropic")
async def test_anthropic_preset_resolves_to_the_anthropic_provider() -> None:
    from fastrlm.lm import AnthropicLM

    lm = resolve("anthropic/claude-sonnet-4-5", api_key="k")
    assert isinstance(lm, AnthropicLM)
    assert lm.model == "anthropic/claude-sonnet-4-5"
    assert lm.base_url == "https://api.anthropic.com"
    await lm.aclose()


@pytest.mark.skipif(LITELLM_INSTALLED, reason="litellm is installed here")
def test_litellm_preset_without_the_extra_names_the_pip_command() -> None:
    with pytest.raises(MissingExtraError, match=r"pip install 'fastrlm\[litellm\]'"):
        resolve("litellm/bedrock/anthropic.claude-3-5-sonnet")


def test_every_preset_has_a_factory() -> None:
    assert {p.api for p in PRESETS.values()} <= set(FACTORIES)


async def test_a_bare_name_is_openai() -> None:
    lm = resolve("gpt-5-mini", api_key="k")
    assert lm.model == "openai/gpt-5-mini"
    assert isinstance(lm, OpenAIChatLM) and lm.base_url == "https://api.openai.com/v1"
    await lm.aclose()


@pytest.mark.parametrize(
    ("spec", "variable"),
    [
        ("gpt-5", "OPENAI_API_KEY"),
        ("openai/gpt-5", "OPENAI_API_KEY"),
        ("openrouter/openai/gpt-5", "OPENROUTER_API_KEY"),
        ("together/meta-llama/Llama-3.3-70B", "TOGETHER_API_KEY"),
        ("fireworks/accounts/fireworks/models/qwen3", "FIREWORKS_API_KEY"),
        ("anthropic/claude-haiku-4-5", "ANTHROPIC_API_KEY"),
    ],
)
def test_a_hosted_provider_without_its_key_names_the_variable(spec: str, variable: str) -> None:
    with pytest.raises(ConfigurationError, match=variable):
        resolve(spec, env={})


@pytest.mark.parametrize("name", ["ollama", "vllm", "llamacpp", "lmstudio"])
async def test_local_servers_need_no_key(name: str) -> None:
    lm = resolve(f"{name}/qwen2.5-coder:32b", env={})
    assert lm.model == f"{name}/qwen2.5-coder:32b"
    await lm.aclose()


async def test_keys_and_urls_come_from_the_environment() -> None:
    env = {"OPENROUTER_API_KEY": "sk-or", "OLLAMA_BASE_URL": "http://gpu-box:11434/v1"}
    lm = resolve("openrouter/anthropic/claude-sonnet-4-5", env=env)
    assert isinstance(lm, OpenAIChatLM)
    remote = resolve("ollama/llama3", env=env)
    assert isinstance(remote, OpenAIChatLM) and remote.base_url == "http://gpu-box:11434/v1"
    await lm.aclose()
    await remote.aclose()


async def test_openai_base_url_points_bare_names_at_any_compatible_server() -> None:
    lm = resolve("Qwen3-8B", env={"OPENAI_BASE_URL": "http://localhost:8000/v1"})
    assert isinstance(lm, OpenAIChatLM)
    assert lm.base_url == "http://localhost:8000/v1"  # no key demanded for the user's own URL
    await lm.aclose()


async def test_arguments_win_over_the_environment() -> None:
    env = {"VLLM_BASE_URL": "http://from-env:1/v1"}
    lm = resolve(
        "vllm/m",
        base_url="http://from-arg:2/v1",
        env=env,
        temperature=0.3,
        limits=Limits(max_retries=1, request_timeout_s=7),
    )
    assert isinstance(lm, OpenAIChatLM)
    assert lm.base_url == "http://from-arg:2/v1"
    assert lm.temperature == 0.3
    assert (lm.retry.max_retries, lm.retry.timeout_s) == (1, 7)
    await lm.aclose()


def test_the_real_environment_is_read_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert resolve("gpt-4.1").model == "openai/gpt-4.1"


@pytest.mark.parametrize("spec", ["nope/model", "Qwen/Qwen2.5-7B"])
def test_an_unknown_provider_is_a_configuration_error_listing_the_known(spec: str) -> None:
    with pytest.raises(ConfigurationError, match="known providers: .*ollama"):
        resolve(spec, api_key="k")


def test_a_provider_with_no_model_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="names no model"):
        resolve("ollama/")


@pytest.mark.parametrize(
    ("spec", "priced_as"),
    [
        ("openai/gpt-5-mini", "gpt-5-mini"),
        ("openrouter/openai/gpt-5-mini", "gpt-5-mini"),
        ("anthropic/claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
    ],
)
async def test_canonical_names_find_their_price(spec: str, priced_as: str) -> None:
    lm = resolve(spec, api_key="k")
    table = PriceTable()
    assert table.price(lm.model) == table.price(priced_as)
    await lm.aclose()


async def test_local_models_are_free() -> None:
    lm = resolve("ollama/qwen2.5-coder:32b")
    assert PriceTable().cost(lm.model, __import__("fastrlm").TokenUsage(10**6, 10**6)) == 0.0
    await lm.aclose()


async def test_cache_keys_separate_endpoints_and_sampling_but_never_hold_the_key() -> None:
    a = resolve("vllm/m", base_url="http://a/v1", api_key="secret-1")
    b = resolve("vllm/m", base_url="http://b/v1", api_key="secret-1")
    c = resolve("vllm/m", base_url="http://a/v1", api_key="secret-2")
    d = resolve("vllm/m", base_url="http://a/v1", temperature=0.5)
    assert len({a.cache_key(), b.cache_key(), d.cache_key()}) == 3
    assert a.cache_key() == c.cache_key()
    assert "secret" not in a.cache_key()
    for lm in (a, b, c, d):
        await lm.aclose()


_IMPORT_IN_A_FRESH_PROCESS = """
import sys
{hide}
import fastrlm.lm as lm
before = set(sys.modules)
try:
    lm.import_provider({spec!r})
except ImportError as exc:
    print("ImportError", exc.name)
loaded = set(sys.modules) - before
print(sorted(m for m in loaded if m.startswith(("fastrlm.lm.", "aiohttp", "anthropic"))
             and m.count(".") < 3 and not m.startswith("aiohttp.")))
"""


def _import_provider_in_a_fresh_process(spec: str, hide: str = "") -> str:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_IN_A_FRESH_PROCESS.format(spec=spec, hide=hide)],
        capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip()


@pytest.mark.parametrize(
    ("spec", "module"),
    [("openai/gpt-5", "fastrlm.lm._openai"), ("gpt-5", "fastrlm.lm._openai"),
     ("ollama/qwen2.5-coder:7b", "fastrlm.lm._openai"),
     ("azure/my-deployment", "fastrlm.lm._azure")],
)
def test_import_provider_loads_the_module_that_builds_the_model_and_builds_nothing(
    spec: str, module: str,
) -> None:
    """What ``fastrlm ask`` does in a thread while a large context loads: the client's module
    (and ``aiohttp``) are imported, so the later ``resolve`` waits for neither."""
    loaded = _import_provider_in_a_fresh_process(spec)
    assert module in loaded and "'aiohttp'" in loaded


def test_import_provider_of_an_unknown_prefix_does_nothing_and_leaves_the_error_to_resolve(
) -> None:
    assert _import_provider_in_a_fresh_process("nosuch/model") == "[]"
    with pytest.raises(ConfigurationError, match="unknown provider 'nosuch'"):
        resolve("nosuch/model")


def test_import_provider_raises_import_error_for_a_missing_extra() -> None:
    hide = "sys.modules['anthropic'] = None  # as if the extra were not installed"
    out = _import_provider_in_a_fresh_process("anthropic/claude-haiku-4-5", hide)
    assert out.splitlines()[0] == "ImportError anthropic"


def test_every_built_in_api_names_the_module_import_provider_loads() -> None:
    from fastrlm.lm import providers
    from fastrlm.lm._registry import _API_MODULES, BUILT_IN

    assert {row.preset.api for row in providers() if row.source == BUILT_IN} <= set(_API_MODULES)
