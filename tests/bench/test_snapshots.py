"""Generators are pure functions of their arguments: the same bytes in another process with
another hash seed, and (for the same text sources) the same bytes as when these digests were
recorded, so a change to any generator is caught (bump GENERATOR_VERSION when it is wanted)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from fastrlm.bench import get_task
from fastrlm.bench._instance import text_sources

SMALL = {
    "sniah": 4096,
    "oolong": 4096,
    "oolong-labelled": 4096,
    "oolong-pairs": 8192,
    "browsecomp": 16384,
    "codeqa": 8192,
}
RECORDED_WITH = "python3.11+wonderwords3.0.1"
GOLDEN = {
    "sniah": "4e2460b2bee2fa2e",
    "oolong": "61f423c09eb3b2d1",
    "oolong-labelled": "4755b3e4c0e47ce0",
    "oolong-pairs": "d95fe0680dfa27ed",
    "browsecomp": "8dad5fe5f32a27af",
    "codeqa": "4ecccff3e41e56a2",
}

DIGESTS = """
import hashlib, json
from fastrlm.bench import get_task
out = {}
for name, length in SMALL.items():
    h = hashlib.sha256()
    for i in range(3):
        inst = get_task(name).instance(0, length, i)
        h.update(json.dumps([inst.context, inst.query, inst.gold], sort_keys=True).encode())
    out[name] = h.hexdigest()[:16]
print(json.dumps(out))
"""


def digests() -> dict[str, str]:
    out = {}
    for name, length in SMALL.items():
        h = hashlib.sha256()
        for i in range(3):
            inst = get_task(name).instance(0, length, i)
            h.update(json.dumps([inst.context, inst.query, inst.gold], sort_keys=True).encode())
        out[name] = h.hexdigest()[:16]
    return out


def test_other_processes_with_other_hash_seeds_generate_the_same_bytes() -> None:
    here = digests()
    for seed in ("1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", f"SMALL = {SMALL!r}" + DIGESTS],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        assert json.loads(done.stdout) == here


@pytest.mark.skipif(text_sources() != RECORDED_WITH, reason="other stdlib prose or word lists")
def test_generators_match_the_recorded_digests() -> None:
    assert digests() == GOLDEN
