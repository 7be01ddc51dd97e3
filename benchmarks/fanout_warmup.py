"""The fan-out warm-up: cost and wall time of a batch whose prompts share a long prefix, on a
provider whose prompt cache holds an entry only once a response is under way (Anthropic).

Runs ``llm_query_batched`` of N prompts sharing a P-token prefix through the engine against
``FakeAnthropicServer(prefix_cache=True)`` (a read only after the writing request finished; L
of latency per reply), in one process, three ways:

- ``warm-up``: the default for Anthropic: one prompt first, the rest once it is answered, all
  marked with the shared prefix (1 cache write, N-1 reads);
- ``off``: ``Limits(warmup_prefix_tokens=0)``: nothing marked, every prompt pays full input;
- ``marked, at once``: the prefix marked but all N sent together (the provider called directly,
  no engine): what a batch would pay if it marked without waiting (N cache writes).

Cost is priced with fastrlm's table for ``anthropic/claude-sonnet-4-5`` (writes 1.25x input,
reads 0.1x); ratios are to ``off``, measured in the same run. Wall time is the batch's window
(first sub-call sent to last answer back); the warm-up's cost in time is one extra round trip
(about 2x a batch of one round trip; the fake does not model that a cache read also answers
sooner).

    python benchmarks/fanout_warmup.py [--n 20] [--prefix-tokens 8000] [--latency-ms 200]
                                       [--repeats 3] [--sandbox auto]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time

from fastrlm import RLM, Limits, PriceTable
from fastrlm.events import Event, SubcallFinished, SubcallStarted
from fastrlm.testing import FakeAnthropicServer, ScriptedLM

MODEL = "anthropic/claude-sonnet-4-5"
PRICES = PriceTable()


def _lm(server: FakeAnthropicServer) -> object:
    from fastrlm.lm import AnthropicLM

    return AnthropicLM(MODEL, base_url=server.base_url, api_key="bench")


async def engine_run(n: int, prefix: str, latency: float, warmup: bool,
                     sandbox: str) -> tuple[float, float, int, int]:
    """(cost USD, batch wall seconds, cache writes, cache reads) of one batch."""
    code = ("import json\n"
            f"answers = llm_query_batched([context + f'Question {{i}}?' for i in range({n})])\n"
            "FINAL(str(sum(a == 'fine' for a in answers)))")
    marks: dict[str, float] = {}

    def on_event(event: Event) -> None:
        now = time.perf_counter()
        if isinstance(event, SubcallStarted):
            marks.setdefault("first", now)
        elif isinstance(event, SubcallFinished):
            marks["last"] = now

    async with FakeAnthropicServer(default="fine", prefix_cache=True,
                                   latency_s=latency) as server:
        sub = _lm(server)
        rlm = RLM(ScriptedLM([f"```repl\n{code}\n```"], model="scripted/root"), sub,
                  sandbox=sandbox, prices=PRICES, on_event=on_event,
                  limits=Limits(warmup_prefix_tokens=None if warmup else 0))
        result = await rlm.acompletion("count", context=prefix)
        await sub.aclose()  # type: ignore[attr-defined]
    if result.answer != str(n):
        raise SystemExit(f"wrong answer {result.answer!r}: {result.error}")
    cost = result.usage.by_model[MODEL].cost_usd
    return cost, marks["last"] - marks["first"], server.cache_writes, server.cache_reads


async def marked_at_once(n: int, prefix: str, latency: float) -> tuple[float, float, int, int]:
    """The same prompts, marked, sent all at once through the provider (no engine)."""
    async with FakeAnthropicServer(default="fine", prefix_cache=True, latency_s=latency,
                                   hold_until_in_flight=n) as server:
        from fastrlm.lm import AnthropicLM

        sub = AnthropicLM(MODEL, base_url=server.base_url, api_key="bench")
        shared = len(prefix) + len("Question ")
        started = time.perf_counter()
        replies = await asyncio.gather(*(sub.complete(
            [{"role": "user", "content": f"{prefix}Question {i}?", "cache_prefix": shared}])
            for i in range(n)))
        wall = time.perf_counter() - started
        await sub.aclose()
    cost = sum(PRICES.cost(MODEL, r.usage) or 0.0 for r in replies)
    return cost, wall, server.cache_writes, server.cache_reads


async def main(args: argparse.Namespace) -> None:
    logging.getLogger("fastrlm").setLevel(logging.ERROR)  # sandbox='none' warns every run
    prefix = ("The shared document. " * (args.prefix_tokens * 4 // 21 + 1))[
        :args.prefix_tokens * 4]
    latency = args.latency_ms / 1000
    rows: dict[str, list[tuple[float, float, int, int]]] = {
        "warm-up": [], "off": [], "marked, at once": []}
    for _ in range(args.repeats):
        rows["warm-up"].append(await engine_run(args.n, prefix, latency, True, args.sandbox))
        rows["off"].append(await engine_run(args.n, prefix, latency, False, args.sandbox))
        rows["marked, at once"].append(await marked_at_once(args.n, prefix, latency))
    base_cost = statistics.median(r[0] for r in rows["off"])
    base_wall = statistics.median(r[1] for r in rows["off"])
    print(f"{args.n} prompts sharing a {args.prefix_tokens:,}-token prefix, {args.latency_ms} "
          f"ms a reply, {MODEL} prices, median of {args.repeats} (ratios to 'off', same run)")
    print(f"{'mode':<18}{'writes':>7}{'reads':>7}{'cost USD':>11}{'x off':>8}"
          f"{'wall s':>9}{'x off':>8}")
    for mode, runs in rows.items():
        cost = statistics.median(r[0] for r in runs)
        wall = statistics.median(r[1] for r in runs)
        writes, reads = runs[-1][2], runs[-1][3]
        print(f"{mode:<18}{writes:>7}{reads:>7}{cost:>11.4f}{cost / base_cost:>8.2f}"
              f"{wall:>9.3f}{wall / base_wall:>8.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--prefix-tokens", type=int, default=8000)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sandbox", default="none")
    asyncio.run(main(parser.parse_args()))
