"""The official implementation, installed from PyPI into its own virtualenv at run time.

``ensure_official()`` creates ``.bench-venv/`` at the repository root (kept out of git through
``.git/info/exclude``) and ``pip install rlms==VERSION`` into it, once; later runs reuse it.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".bench-venv"
RLMS_VERSION = "0.1.3"
#: minRLM (PyPI ``minrlm``), the leanest peer, installed into the same virtualenv (its import
#: name ``minrlm`` does not clash with the official ``rlm``).
MINRLM_VERSION = "0.1.5"


def _exclude_from_git() -> None:
    git = REPO / ".git"
    if not git.is_dir():
        return
    exclude = git / "info" / "exclude"
    exclude.parent.mkdir(exist_ok=True)
    lines = exclude.read_text().splitlines() if exclude.exists() else []
    if "/.bench-venv/" not in lines:
        with exclude.open("a") as f:
            f.write("/.bench-venv/\n")


def ensure_official(version: str = RLMS_VERSION) -> Path:
    """The virtualenv's python, with ``rlms==version`` installed. Raises ``RuntimeError``
    with pip's output when the install fails."""
    python = VENV / "bin" / "python"
    stamp = VENV / f".rlms-{version}"
    if stamp.exists() and python.exists():
        return python
    _exclude_from_git()
    if not python.exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    print(f"installing rlms=={version} into {VENV} ...", file=sys.stderr, flush=True)
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", f"rlms=={version}"],
        capture_output=True, text=True, timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pip install rlms=={version} failed:\n{done.stdout}\n{done.stderr}")
    stamp.touch()
    return python


def official_version(python: Path) -> str:
    out = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('rlms'))"],
        capture_output=True, text=True, timeout=60,
    )
    return out.stdout.strip() or "?"


def ensure_minrlm(version: str = MINRLM_VERSION) -> Path:
    """The same virtualenv's python, with ``minrlm==version`` installed beside the official
    package. Raises ``RuntimeError`` with pip's output when the install fails."""
    python = ensure_official()
    stamp = VENV / f".minrlm-{version}"
    if stamp.exists():
        return python
    print(f"installing minrlm=={version} into {VENV} ...", file=sys.stderr, flush=True)
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", f"minrlm=={version}"],
        capture_output=True, text=True, timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pip install minrlm=={version} failed:\n{done.stdout}\n{done.stderr}")
    stamp.touch()
    return python
