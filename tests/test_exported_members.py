"""The public door: __all__ is exactly what fastrlm exports, and importing it is free of effects."""

from __future__ import annotations

import subprocess
import sys
import types

import fastrlm


def test_all_matches_the_public_names() -> None:
    exported = {
        name for name, value in vars(fastrlm).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert exported == set(fastrlm.__all__) - {"__version__"}
    assert fastrlm.__all__ == sorted(fastrlm.__all__, key=str.lower) or \
        fastrlm.__all__ == sorted(fastrlm.__all__)


def test_importing_fastrlm_loads_no_sdk_and_touches_nothing(tmp_path: object) -> None:
    code = (
        "import logging, sys, os\n"
        "before = set(os.listdir('.'))\n"
        "import fastrlm, fastrlm.events, fastrlm.testing\n"
        "heavy = [m for m in ('openai', 'anthropic', 'httpx', 'rich', 'matplotlib', 'litellm')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert not logging.getLogger().handlers, 'logging configured on import'\n"
        "assert set(os.listdir('.')) == before\n"
        "print('ok')\n"
    )
    env_home = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=env_home, env={"FASTRLM_HOME": env_home, "PATH": "/usr/bin:/bin"},
                         check=False)
    assert out.stdout.strip() == "ok", out.stderr
