"""Benchmark fastrlm's DSPy interpreter against DSPy's own LocalInterpreter, in one run.

    python benchmarks/dspy_interpreter.py [--mb 20] [--steps 5] [--repeats 3] [--kind auto]

Each interpreter runs what ``dspy.RLM`` asks of it for one forward: ``--steps`` cells, each
given the same inputs (a ``--mb`` MB ``context`` and a short ``query``) and printing
``len(context)``, then one cell making 100 host-tool calls. Prints the medians over repeats of
the first step (start included), a later step, and one tool call (the 100-call cell less a
later step, over 100), with the fastrlm/LocalInterpreter ratio. LocalInterpreter is DSPy's
unsandboxed CPython subprocess (no isolation, JSON lines); it re-sends every input on every
step, fastrlm's interpreter sends each once. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from dspy.primitives.local_interpreter import LocalInterpreter

from fastrlm.integrations.dspy import FastRLMInterpreter


def one_forward(make: Callable[[], Any], context: str, steps: int) -> dict[str, float]:
    interpreter = make()
    inputs = {"context": context, "query": "where?"}
    try:
        began = time.perf_counter()
        interpreter.execute("print(len(context))", dict(inputs))
        first = time.perf_counter() - began
        later = []
        for _ in range(steps - 1):
            began = time.perf_counter()
            interpreter.execute("print(len(context), query)", dict(inputs))
            later.append(time.perf_counter() - began)
        began = time.perf_counter()
        interpreter.execute("for _ in range(100):\n    echo(text='x')", dict(inputs))
        tool = (time.perf_counter() - began - statistics.median(later)) / 100
    finally:
        interpreter.shutdown()
    return {"first": first, "later": statistics.median(later), "tool": max(tool, 0.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=20.0)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--kind", default="auto")
    args = parser.parse_args()
    context = "x" * int(args.mb * 1_000_000)
    tools = {"echo": lambda text: text}
    makers = {
        "fastrlm": lambda: FastRLMInterpreter(dict(tools), sandbox=args.kind),
        "LocalInterpreter": lambda: LocalInterpreter(dict(tools)),
    }
    results: dict[str, list[dict[str, float]]] = {name: [] for name in makers}
    for _ in range(args.repeats):  # alternate, so both see the same machine load
        for name, make in makers.items():
            results[name].append(one_forward(make, context, args.steps))
    print(f"{args.mb:g} MB context, {args.steps} steps, median of {args.repeats}")
    print(f"{'figure':<28}{'fastrlm':>12}{'Local':>12}{'ratio':>8}")
    for key, label in (("first", "first step (start incl.)"), ("later", "each later step"),
                       ("tool", "one host-tool call")):
        ours = statistics.median(r[key] for r in results["fastrlm"])
        theirs = statistics.median(r[key] for r in results["LocalInterpreter"])
        ratio = f"{ours / theirs:.2f}" if theirs > 0 else "-"
        print(f"{label:<28}{ours * 1e3:>10.1f}ms{theirs * 1e3:>10.1f}ms{ratio:>8}")


if __name__ == "__main__":
    main()
