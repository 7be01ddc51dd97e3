"""Client CPU per request for the HTTP paths an OpenAI-compatible provider can take.

    python http_clients.py '{"base_url": ..., "requests": 1000, "concurrency": 64,
                             "clients": ["sdk-create", "sdk-post", "httpx", "aiohttp", ...]}'

Each client sends the same chat completion ``requests`` times, ``concurrency`` at once, to the
fake model server (another process) and the process's own CPU time (user + system, from
``time.process_time``) is divided by the number of requests: what one request costs the client,
independent of the server's latency. Prints ``RESULT {json}`` last.

- ``sdk-create``: ``AsyncOpenAI.chat.completions.create`` (the SDK's typed path);
- ``sdk-post``: ``AsyncOpenAI.post(..., cast_to=ChatCompletion)`` (fastrlm before issue 18);
- ``httpx``: a plain ``httpx.AsyncClient`` and ``json.loads`` of the body;
- ``httpx2``: the same through ``httpx2`` (the fork the openai SDK is built on);
- ``fastrlm``: ``OpenAIChatLM.complete`` (fastrlm's provider as shipped, retries and all);
- ``aiohttp``: an ``aiohttp.ClientSession``;
- ``httpx-h2``: ``httpx.AsyncClient(http2=True)`` (only over TLS with ALPN: against an
  ``http://`` server it falls back to HTTP/1.1, which the result says).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable

BODY = {"model": "fake-sub", "messages": [{"role": "user", "content": "SUB 0-0 hello"}],
        "max_tokens": 16}


async def _drive(n: int, concurrency: int, one: Callable[[], Awaitable[str]]) -> dict:
    limiter = asyncio.Semaphore(concurrency)
    bad = 0

    async def guarded() -> None:
        nonlocal bad
        async with limiter:
            if await one() != "ok":
                bad += 1

    await asyncio.gather(*(guarded() for _ in range(min(n, 50))))  # warm the pool
    bad = 0
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(guarded() for _ in range(n)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"cpu_ms_per_request": cpu / n * 1000, "wall_s": wall, "bad": bad}


async def run_client(name: str, base_url: str, n: int, concurrency: int) -> dict:
    extra: dict[str, object] = {}
    if name in ("sdk-create", "sdk-post"):
        import openai
        from openai.types.chat import ChatCompletion

        client = openai.AsyncOpenAI(base_url=base_url, api_key="fake", max_retries=0)

        async def one() -> str:
            if name == "sdk-create":
                done = await client.chat.completions.create(**BODY)  # type: ignore[arg-type]
            else:
                done = await client.post("/chat/completions", body=BODY, cast_to=ChatCompletion)
            return done.choices[0].message.content or ""

        try:
            return await _drive(n, concurrency, one)
        finally:
            await client.close()
    if name in ("httpx", "httpx-h2", "httpx2"):
        if name == "httpx2":
            import httpx2 as httpx
        else:
            import httpx

        async with httpx.AsyncClient(
            base_url=base_url, http2=name == "httpx-h2",
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=256),
            headers={"Authorization": "Bearer fake"},
        ) as hc:
            versions: set[str] = set()

            async def one() -> str:
                r = await hc.post("/chat/completions", json=BODY)
                versions.add(r.http_version)
                return str(json.loads(r.content)["choices"][0]["message"]["content"])

            out = await _drive(n, concurrency, one)
            extra["http_versions"] = sorted(versions)
            return out | extra
    if name == "aiohttp":
        import aiohttp

        connector = aiohttp.TCPConnector(limit=1000)
        async with aiohttp.ClientSession(
            connector=connector, headers={"Authorization": "Bearer fake"}
        ) as session:
            url = base_url + "/chat/completions"

            async def one() -> str:
                async with session.post(url, json=BODY) as r:
                    data = json.loads(await r.read())
                return str(data["choices"][0]["message"]["content"])

            return await _drive(n, concurrency, one)
    if name == "fastrlm":
        from fastrlm import Limits
        from fastrlm.lm import resolve

        lm = resolve("openai/fake-sub", base_url=base_url, api_key="fake",
                     limits=Limits(max_concurrency=concurrency))
        messages = BODY["messages"]

        async def one() -> str:
            return (await lm.complete(messages, max_tokens=16)).text  # type: ignore[arg-type]

        try:
            return await _drive(n, concurrency, one)
        finally:
            await lm.aclose()
    raise SystemExit(f"unknown client {name!r}")


def main() -> None:
    cfg = json.loads(sys.argv[1])
    out = {}
    for name in cfg["clients"]:
        try:
            out[name] = asyncio.run(
                run_client(name, cfg["base_url"], cfg.get("requests", 1000),
                           cfg.get("concurrency", 64)))
        except ModuleNotFoundError as exc:  # httpx where only httpx2 is installed, say
            out[name] = {"skipped": f"{exc.name} is not installed"}
        except Exception as exc:  # noqa: BLE001 - one client's failure is reported, not fatal
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
