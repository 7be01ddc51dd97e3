"""The fan-out floor on this machine: the same three batches sent straight through the openai
SDK (one AsyncOpenAI client, one semaphore), no engine, no root turns. Prints ``RESULT {json}``.

    python drive_bare_sdk.py '{"base_url": ..., "concurrency": 64}'
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import common
import openai


async def run(cfg: dict) -> dict:
    client = openai.AsyncOpenAI(base_url=cfg["base_url"], api_key="fake", max_retries=0)
    limiter = asyncio.Semaphore(cfg.get("concurrency", 64))

    async def one(prompt: str) -> str:
        async with limiter:
            try:
                done = await client.chat.completions.create(
                    model="fake-sub", messages=[{"role": "user", "content": prompt}]
                )
            except openai.OpenAIError as exc:
                return f"[error: {exc}]"
            return done.choices[0].message.content or ""

    oks: list[int] = []
    errs: list[str] = []
    t_call = time.time()
    for step, n in enumerate(common.FANOUT_BATCHES):
        answers = await asyncio.gather(
            *(one(f"{common.SUB_PREFIX}{step}-{i}") for i in range(n))
        )
        oks.append(sum(1 for a in answers if a == "ok"))
        errs.extend(a for a in answers if a != "ok")
    t_end = time.time()
    await client.close()
    first = (errs[:1] or [""])[0][:300]
    return {"t_call": t_call, "t_end": t_end, "wall_s": t_end - t_call,
            "answer": f"{oks}|{len(errs)}|{first}", "layer": "", "rss_before_call": 0,
            **common.cpu_times()}


def main() -> None:
    print("RESULT " + json.dumps(asyncio.run(run(json.loads(sys.argv[1])))), flush=True)


if __name__ == "__main__":
    main()
