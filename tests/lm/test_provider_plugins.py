"""The provider registry is open: register_provider at run time, and the ``fastrlm.providers``
entry point group for installed packages, listed by ``fastrlm doctor``."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from fastrlm import RLM, ConfigurationError, Limits
from fastrlm.cli import cli
from fastrlm.lm import (
    PRESETS,
    OpenAIChatLM,
    Preset,
    Resolved,
    _registry,
    providers,
    register_provider,
    resolve,
)
from fastrlm.testing import ScriptedLM


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    """Each test starts from the built-in table and leaves it as it found it."""
    saved = (
        dict(_registry._presets),
        dict(_registry._factories),
        dict(_registry._sources),
        dict(_registry._broken),
        _registry._plugins_loaded,
    )
    yield
    presets, factories, sources, broken, loaded = saved
    for current, old in (
        (_registry._presets, presets),
        (_registry._factories, factories),
        (_registry._sources, sources),
        (_registry._broken, broken),
    ):
        current.clear()
        current.update(old)  # type: ignore[attr-defined]
    _registry._plugins_loaded = loaded


def _scripted_factory(r: Resolved) -> ScriptedLM:
    return ScriptedLM(['```repl\nFINAL("from the plugin")\n```'], model=r.model)


async def test_a_registered_openai_compatible_host_resolves_with_its_url_and_key() -> None:
    register_provider(
        Preset(
            "acme",
            "openai-chat",
            "http://127.0.0.1:9/v1",
            base_url_env="ACME_BASE_URL",
            key_env="ACME_API_KEY",
            needs_key=True,
            about="Acme's gateway",
        )
    )
    assert "acme" in PRESETS  # the public view is live
    with pytest.raises(ConfigurationError, match="ACME_API_KEY"):
        resolve("acme/big-model", env={})
    lm = resolve("acme/big-model", env={"ACME_API_KEY": "k"})
    assert isinstance(lm, OpenAIChatLM)
    assert (lm.model, lm.api_model, lm.base_url) == (
        "acme/big-model",
        "big-model",
        "http://127.0.0.1:9/v1",
    )
    await lm.aclose()
    assert [i.source for i in providers() if i.preset.name == "acme"] == ["register_provider()"]


def test_a_new_wire_api_is_built_by_its_factory_and_runs_a_whole_completion() -> None:
    register_provider(Preset("scripted", "scripted-api", None), _scripted_factory)
    seen: list[Limits] = []

    def factory(r: Resolved) -> ScriptedLM:
        seen.append(r.limits)
        return _scripted_factory(r)

    register_provider(Preset("scripted", "scripted-api", None), factory, replace=True)
    result = RLM(model="scripted/root", sandbox="none", trace=False).completion("q", context="x")
    assert result.answer == "from the plugin"
    assert seen, "the factory built the root model"


@pytest.mark.parametrize(
    ("preset", "factory", "message"),
    [
        (Preset("openai", "openai-chat", None), None, r"already registered \(built-in\)"),
        (Preset("Bad/Name", "openai-chat", None), None, "must be lowercase"),
        (Preset("", "openai-chat", None), None, "must be lowercase"),
        (Preset("newco", "no-such-api", None), None,
         "known APIs: anthropic, azure-openai, litellm"),
        (Preset("newco", "openai-chat", None), _scripted_factory, "already has a factory"),
        (Preset("newco", "x-api", None), "not a function", "not callable"),
    ],
)
def test_bad_registrations_are_refused_and_change_nothing(
    preset: Preset, factory: object, message: str
) -> None:
    before = (dict(PRESETS), dict(_registry.FACTORIES))
    with pytest.raises(ConfigurationError, match=message):
        register_provider(preset, factory)  # type: ignore[arg-type]
    assert (dict(PRESETS), dict(_registry.FACTORIES)) == before


def test_only_a_preset_can_be_registered() -> None:
    with pytest.raises(ConfigurationError, match="takes a fastrlm.lm.Preset, not dict"):
        register_provider({"name": "x"})  # type: ignore[arg-type]


def test_an_unknown_prefix_says_how_to_add_a_provider() -> None:
    with pytest.raises(ConfigurationError, match="register_provider"):
        resolve("nosuch/model")


def _install_plugin(root: Path, dist: str, module: str, entry_points: str, code: str) -> None:
    """A package installed the way pip leaves it: a module and a dist-info with entry points."""
    info = root / f"{dist}-1.2.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2\n")
    (info / "entry_points.txt").write_text(f"[fastrlm.providers]\n{entry_points}\n")
    (root / f"{module}.py").write_text(textwrap.dedent(code))


GOOD_PLUGIN = """
    from fastrlm.lm import Preset
    from fastrlm.testing import ScriptedLM

    def _factory(r):
        return ScriptedLM(['```repl\\nFINAL("plugin answer")\\n```'], model=r.model)

    def providers():
        return [
            Preset("plug", "plug-api", None, about="a plugin's own API"),
            Preset("plughost", "openai-chat", "http://127.0.0.1:9/v1"),
        ]

    plug = (Preset("plug", "plug-api", None, about="a plugin's own API"), _factory)
    host = Preset("plughost", "openai-chat", "http://127.0.0.1:9/v1")
"""

BROKEN_PLUGIN = """
    raise RuntimeError("this plugin is broken on import")
"""


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    _install_plugin(
        tmp_path,
        "fastrlm_plug",
        "fastrlm_plug",
        "plug = fastrlm_plug:plug\nplughost = fastrlm_plug:host",
        GOOD_PLUGIN,
    )
    _install_plugin(tmp_path, "fastrlm_bad", "fastrlm_bad", "bad = fastrlm_bad:x", BROKEN_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "fastrlm_plug", raising=False)
    _registry.load_plugins(reload=True)
    return tmp_path


def test_entry_point_providers_resolve_and_a_broken_plugin_is_named(plugins: Path) -> None:
    result = RLM(model="plug/any", sandbox="none", trace=False).completion("q", context="c")
    assert result.answer == "plugin answer"
    sources = {i.preset.name: i.source for i in providers()}
    assert sources["plug"] == "entry point plug (fastrlm_plug 1.2)"
    assert sources["plughost"].startswith("entry point plughost")
    assert sources["openai"] == "built-in"
    broken = _registry.broken_plugins()
    assert list(broken) == ["bad"] and "broken on import" in broken["bad"]
    with pytest.raises(ConfigurationError, match="A plugin failed to load: entry point bad"):
        resolve("missing/model")


def test_doctor_lists_built_in_plugin_and_broken_providers(plugins: Path) -> None:
    out = CliRunner().invoke(cli, ["doctor"])
    assert out.exit_code == 0, out.output
    text = out.output
    assert "providers (model strings 'PREFIX/MODEL'):" in text
    assert "plug       plug-api" in text and "[entry point plug (fastrlm_plug 1.2)]" in text
    assert "openai     openai-chat https://api.openai.com/v1" in text
    assert "BROKEN     bad:" in text


def test_importing_fastrlm_loads_no_provider_plugin(plugins: Path) -> None:
    code = (
        "import sys, fastrlm, fastrlm.lm\n"
        "fastrlm.RLM  # touching the public API still loads no plugin\n"
        "assert 'fastrlm_plug' not in sys.modules and 'fastrlm_bad' not in sys.modules\n"
        "fastrlm.lm.resolve('plughost/m', api_key='k')\n"
        "assert 'fastrlm_plug' in sys.modules\n"
        "print('ok')\n"
    )
    env = {"PYTHONPATH": f"{plugins}:{Path(__file__).parents[2] / 'src'}", "PATH": "/usr/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert out.stdout.strip() == "ok", out.stderr
