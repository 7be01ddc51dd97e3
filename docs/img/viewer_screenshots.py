"""Make the README's screenshots of the trace viewer from a realistic scripted run.

    PYTHONPATH=src python3 docs/img/viewer_screenshots.py

A ScriptedLM root (priced as openai/gpt-5) reads fake service logs, fans out over 24 chunks to a
sub-model (priced as openai/gpt-5-mini, with varied latency and one failure), hands the
findings to a child run, and answers. The run's code runs in the bwrap sandbox (as a real run's
would; the page's sandbox line says so) with whole prompts and replies traced (``--trace-full``),
and its page is shot in Debian's Chromium at 1400 px and at phone width (390 px, one sub-call
opened by a tap) into this folder: viewer-1400.png, viewer-phone.png.
"""

from __future__ import annotations

import asyncio
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

from fastrlm import RLM, Budget, Limits
from fastrlm._foundation.errors import ProviderResponseError
from fastrlm.testing import ScriptedLM, prompt_of
from fastrlm.trace import read_trace
from fastrlm.trace._html import render_html

HERE = Path(__file__).resolve().parent
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SERVICES = ["billing", "auth", "search", "checkout", "notifications", "inventory"]


def repl(prose: str, code: str) -> str:
    return f"{prose}\n\n```repl\n{code}\n```\n"


def logs() -> str:
    rng = random.Random(7)
    lines = []
    for day in range(1, 32):
        for _ in range(12):
            service = rng.choice(SERVICES)
            kind = rng.choice(["retry storm: upstream 503, clients retried 9x",
                               "deploy finished", "p99 latency 2.3s", "cache warmed"])
            lines.append(f"2026-03-{day:02d} {service}: {kind}")
    return "\n".join(lines)


def root_reply(messages: Any) -> str:
    if "Group these findings" in messages[1]["content"]:
        return repl("Grouping the findings per service.",
                    "groups = llm_query_batched([f'Which of these lines mention {s}? ' + "
                    "context[:400] for s in ['billing', 'auth', 'checkout']])\n"
                    "FINAL('billing, auth and checkout: retry storms on 3, 11 and 24 March')")
    turn = sum(1 for m in messages if m["role"] == "assistant")
    if turn == 0:
        return repl("Let me look at the shape of the logs first.",
                    "print(len(context), 'chars')\nprint(context[:200])")
    if turn == 1:
        return repl("The logs are line-based. I'll split them into chunks and ask a sub-model "
                    "about each one in parallel.",
                    "chunks = [context[i:i + 1000] for i in range(0, len(context), 1000)][:24]\n"
                    "answers = llm_query_batched([\n"
                    "    'Which incidents in this log were caused by the retry storm? ' + c\n"
                    "    for c in chunks])\n"
                    "print(sum('storm' in a for a in answers), 'chunks mention the storm')")
    if turn == 2:
        return repl("A child run can group what the chunks found.",
                    "summary = rlm_query_batched(['Group these findings by service'],\n"
                    "                            ['\\n'.join(answers)])[0]\nprint(summary)")
    return repl("That answers the question.", "FINAL(summary)")


async def sub_reply(messages: Any) -> str:
    prompt = prompt_of(messages)
    rng = random.Random(prompt)
    await asyncio.sleep(rng.uniform(0.05, 0.5))
    if "2026-03-10 " in prompt[:120]:  # one chunk fails every attempt
        raise ProviderResponseError("upstream returned 429: rate limited")
    service = rng.choice(SERVICES)
    return f"retry storm in {service} on 2026-03-{rng.randint(1, 31):02d}: clients retried 9x"


def main() -> int:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        root = ScriptedLM(root_reply, model="openai/gpt-5", latency_s=0.3)
        sub = ScriptedLM(sub_reply, model="openai/gpt-5-mini")
        rlm = RLM(root, sub, sandbox="bwrap", trace=Path(tmp), budget=Budget(max_depth=2),
                  limits=Limits(trace_full_prompts=True))
        out = rlm.completion("Which services had incidents caused by the retry storm in March?",
                             context=logs())
        page_file = Path(tmp) / "page.html"
        page_file.write_text(render_html(read_trace(Path(str(out.trace_path)))))
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            for name, width, height in (("viewer-1400", 1400, 1900), ("viewer-phone", 390, 1800)):
                phone = width < 500
                context = browser.new_context(viewport={"width": width, "height": height},
                                              has_touch=phone)
                page = context.new_page()
                page.goto(page_file.as_uri())
                page.wait_for_selector("html[data-ready-ms]")
                if phone:  # a tapped sub-call, opened to its prompt and reply
                    page.locator("#calls-body .vrow").nth(2).tap()
                    page.wait_for_selector("#co-body pre.output")
                    page.evaluate("document.getElementById('explorer').scrollIntoView()")
                page.screenshot(path=str(HERE / f"{name}.png"))
                context.close()
            browser.close()
    print("wrote", HERE / "viewer-1400.png", HERE / "viewer-phone.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
