"""Run every benchmark that compares fastrlm with the official implementation, and write the
results into docs/performance.md (between its results markers).

    python benchmarks/run_all.py [--repeats 3] [--only fanout,bigctx,trace,step] [--no-write]

Installs the official package (PyPI ``rlms``) into ``.bench-venv/`` on first use. About 10
minutes on a 2-core machine. Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "vs_official"))

from run import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(command="python benchmarks/run_all.py " + " ".join(sys.argv[1:])))
