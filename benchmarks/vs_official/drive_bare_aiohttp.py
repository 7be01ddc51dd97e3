"""The fan-out floor of the HTTP client fastrlm uses: the same three batches sent straight
through one ``aiohttp.ClientSession`` and a semaphore, no engine, no root turns, no retries.
Prints ``RESULT {json}``.

    python drive_bare_aiohttp.py '{"base_url": ..., "concurrency": 64}'
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp
import common


async def run(cfg: dict) -> dict:
    limiter = asyncio.Semaphore(cfg.get("concurrency", 64))
    url = cfg["base_url"] + "/chat/completions"
    oks: list[int] = []
    errs: list[str] = []
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=1000), headers={"Authorization": "Bearer fake"}
    ) as session:

        async def one(prompt: str) -> str:
            body = {"model": "fake-sub", "messages": [{"role": "user", "content": prompt}]}
            async with limiter:
                try:
                    async with session.post(url, json=body) as reply:
                        data = json.loads(await reply.read())
                except (aiohttp.ClientError, ValueError) as exc:
                    return f"[error: {exc}]"
            return str(data["choices"][0]["message"]["content"])

        t_call = time.time()
        for step, n in enumerate(common.FANOUT_BATCHES):
            answers = await asyncio.gather(
                *(one(f"{common.SUB_PREFIX}{step}-{i}") for i in range(n))
            )
            oks.append(sum(1 for a in answers if a == "ok"))
            errs.extend(a for a in answers if a != "ok")
        t_end = time.time()
    first = (errs[:1] or [""])[0][:300]
    return {"t_call": t_call, "t_end": t_end, "wall_s": t_end - t_call,
            "answer": f"{oks}|{len(errs)}|{first}", "layer": "", "rss_before_call": 0,
            **common.cpu_times()}


def main() -> None:
    print("RESULT " + json.dumps(asyncio.run(run(json.loads(sys.argv[1])))), flush=True)


if __name__ == "__main__":
    main()
