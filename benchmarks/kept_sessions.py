"""What keeping server sessions costs (``RLMServer(keep_sessions=DIR)``, ``fastrlm serve
--keep-sessions``): a session of Q questions over HTTP (scripted models, in-process sandbox, the
first question with a context of C characters), served with sessions kept and without,
interleaved in one process; prints the median time per question of each and the ratio (kept /
not kept), then the time the first request after a restart takes to rebuild the session from
its records against the time of a question in a session that is already live.

    python benchmarks/kept_sessions.py [--questions 20] [--chars 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import openai

from fastrlm import RLM
from fastrlm.server import RLMServer
from fastrlm.testing import ScriptedLM

STEP = "```repl\nn = globals().get('n', 0) + 1\nFINAL(str(n) + ':' + str(len(context)))\n```"


def _server(keep: Path | None) -> RLMServer:
    rlm = RLM(ScriptedLM(lambda m: STEP, model="scripted/root"),
              ScriptedLM(lambda m: "sub", model="scripted/sub"), sandbox="none", trace=True)
    return RLMServer(rlm, keep_sessions=keep)


async def _ask(client: openai.AsyncOpenAI, extra: dict[str, Any]) -> float:
    started = time.perf_counter()
    await client.chat.completions.create(
        model="rlm", messages=[{"role": "user", "content": "next"}],
        extra_body={"fastrlm": {"session": "bench"}, **extra})
    return time.perf_counter() - started


async def _serve(keep: Path | None, requests: list[dict[str, Any]]) -> list[float]:
    async with _server(keep) as server:
        await server.start("127.0.0.1", 0)
        async with openai.AsyncOpenAI(base_url=server.base_url, api_key="k",
                                      max_retries=0) as client:
            return [await _ask(client, extra) for extra in requests]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--chars", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    asked = [{"context": "x" * args.chars}] + [{}] * (args.questions - 1)
    plain: list[float] = []
    kept: list[float] = []
    rebuilt: list[float] = []
    live: list[float] = []
    for _ in range(args.repeat):
        os.environ["FASTRLM_HOME"] = tempfile.mkdtemp()
        plain += await _serve(None, asked)
        os.environ["FASTRLM_HOME"] = tempfile.mkdtemp()
        keep = Path(tempfile.mkdtemp()) / "kept"
        kept += await _serve(keep, asked)
        # a restart: a new server over the same folder and traces; its first request rebuilds
        first, second = await _serve(keep, [{}, {}])
        rebuilt.append(first)
        live.append(second)
    base, held = statistics.median(plain), statistics.median(kept)
    print(f"{args.questions} questions (first with {args.chars:,} chars): not kept "
          f"{base * 1000:.1f} ms/question, kept {held * 1000:.1f} ms/question; ratio "
          f"{held / base:.2f}")
    again, next_one = statistics.median(rebuilt), statistics.median(live)
    print(f"first request after a restart (rebuilds {args.questions} questions from their "
          f"records, no model call): {again * 1000:.1f} ms, {again / next_one:.1f}x a question "
          f"in a live session ({next_one * 1000:.1f} ms)")


if __name__ == "__main__":
    asyncio.run(main())
