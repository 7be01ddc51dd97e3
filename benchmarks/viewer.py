"""Benchmark the trace viewer in a real browser (Debian's Chromium through Playwright).

    python benchmarks/viewer.py [--calls 100000] [--repeats 3] [--live-repeats 5]

Prints, medians over repeats:

- time to interactive of the page of a run with ``--calls`` sub-calls: from navigation start to
  the first sub-call row drawn by the page's script (its list, filters and timeline are then
  live), next to the same for a 1,000-sub-call page measured in the same run (the baseline);
  plus the time ``render_html`` takes and the page's size;
- live latency: from a line appended to a followed trace (``fastrlm view --follow``) to the page
  showing it, for a sub-call (drawn from the event itself) and for a code cell (redrawn from
  the server's ``/parts``).

Goals (issue 19): interactive in at most 2 s, a live event shown within 1 s. Nothing here runs
in the test suite; the browser tests only check that the page opens, scrolls and updates.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fastrlm.trace import read_trace
from fastrlm.trace._html import render_html
from fastrlm.trace._live import LiveView
from fastrlm.trace._lock import hold_writer_lock

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
T0 = 1_800_000_000.0


def write_fanout_trace(path: Path, n_calls: int, *, finished: bool = True) -> None:
    """A run with ``n_calls`` sub-calls in one cell, as JSONL written directly."""
    head = '"run_id":"big","depth":0'
    with open(path, "w") as out:
        out.write(json.dumps({"run_id": "big", "depth": 0, "type": "run.started", "ts": T0,
                              "parent_run_id": None, "question": "fan-out", "model": "m",
                              "sub_model": "s", "context": {}, "sandbox": "none",
                              "budget": {}}) + "\n")
        out.write(f'{{{head},"type":"iteration.started","ts":{T0},"iteration":1,'
                  '"max_iterations":5}\n')
        for i in range(n_calls):
            start, lat = T0 + i * 0.001, 0.05 + (i % 97) / 100
            out.write(f'{{{head},"type":"subcall.started","ts":{start},"call_id":"c{i}",'
                      f'"model":"s","prompt_chars":900,"prompt_sha256":"h",'
                      f'"prompt_preview":"prompt {i} about a chunk of the context"}}\n')
            error = '"rate limited"' if i % 1000 == 0 else "null"
            out.write(f'{{{head},"type":"subcall.finished","ts":{start + lat},"call_id":"c{i}",'
                      f'"model":"s","input_tokens":900,"output_tokens":20,'
                      f'"cost_usd":{0.0001 * (i % 13)},"latency_s":{lat},"cached":false,'
                      f'"error":{error},"response_chars":30,"response_preview":"reply {i}"}}\n')
        if finished:
            out.write(f'{{{head},"type":"run.finished","ts":{T0 + n_calls * 0.001 + 1},'
                      '"stop_reason":"final","answer":"done","iterations":1,'
                      f'"subcalls":{n_calls},"usage":{{}},"cost_usd":1.0,"duration_s":1.0,'
                      '"error":null}\n')


def page_for(folder: Path, n_calls: int) -> tuple[Path, float, int]:
    trace = folder / f"fanout-{n_calls}.jsonl"
    write_fanout_trace(trace, n_calls)
    events = read_trace(trace)
    started = time.perf_counter()
    html = render_html(events)
    rendered = time.perf_counter() - started
    page = folder / f"fanout-{n_calls}.html"
    page.write_text(html, encoding="utf-8")
    return page, rendered, len(html.encode())


def time_to_interactive(browser: Any, page_file: Path) -> float:
    """Seconds from navigation start to the first sub-call row drawn (page clock)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        page.goto(page_file.as_uri(), timeout=120_000)
        page.wait_for_selector("html[data-ready-ms]", timeout=120_000)
        # the page's own clock (from navigation start) when its script had drawn the list
        ms = page.get_attribute("html", "data-ready-ms")
        return float(ms or "nan") / 1000
    finally:
        context.close()


def line(**event: Any) -> str:
    return json.dumps({"run_id": "live", "depth": 0, "ts": time.time(), **event}) + "\n"


def live_latency(browser: Any, folder: Path, repeats: int) -> tuple[list[float], list[float]]:
    """Seconds from a line appended to the trace to the page showing it (sub-call, cell)."""
    trace = folder / "live.jsonl"
    trace.write_text(line(type="run.started", parent_run_id=None, question="live", model="m",
                          sub_model="s", context={}, sandbox="none", budget={})
                     + line(type="iteration.started", iteration=1, max_iterations=99))
    subcall, cell = [], []
    writer = open(trace, "a")  # noqa: SIM115 - held as a running run's writer holds its trace
    hold_writer_lock(writer)
    with LiveView(lambda: trace) as live, writer:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.goto(live.url)
        page.wait_for_selector("#live:text('live')", timeout=30_000)
        page.evaluate("""() => { window.seen = {}; new MutationObserver(() => {
            const text = document.body.innerText;
            for (const m of (window.wanted || [])) {
              if (!(m in window.seen) && text.includes(m)) window.seen[m] = Date.now(); }
          }).observe(document.body, {subtree: true, childList: true, characterData: true}); }""")
        for i in range(repeats):
            reply, output = f"REPLY-{i}-MARK", f"OUTPUT-{i}-MARK"
            page.evaluate(f"window.wanted = ['{reply}', '{output}']")
            time.sleep(1.5)  # let the previous refresh settle: each sample starts quiet
            written = time.time()
            with open(trace, "a") as handle:
                handle.write(line(type="subcall.started", call_id=f"c{i}", model="s",
                                  prompt_chars=1, prompt_sha256="h", prompt_preview="p"))
                handle.write(line(type="subcall.finished", call_id=f"c{i}", model="s",
                                  input_tokens=1, output_tokens=1, cost_usd=0.0,
                                  latency_s=0.01, cached=False, error=None,
                                  response_chars=len(reply), response_preview=reply))
                handle.write(line(type="code.executed", iteration=1, block=i + 1, code="x",
                                  output=output, output_chars=len(output), error=None,
                                  duration_s=0.01, timed_out=False, restarted=False,
                                  restored=[]))
            page.wait_for_function(f"'{output}' in window.seen && '{reply}' in window.seen",
                                   timeout=30_000)
            seen = page.evaluate("window.seen")
            subcall.append(seen[reply] / 1000 - written)
            cell.append(seen[output] / 1000 - written)
        context.close()
    return subcall, cell


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--live-repeats", type=int, default=5)
    args = parser.parse_args()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("needs Playwright: pip install -e '.[browser]'", file=sys.stderr)
        return 2
    if not Path(CHROMIUM).exists():
        print(f"needs Chromium at {CHROMIUM}: apt-get install chromium", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        folder = Path(tmp)
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        big, big_render, big_bytes = page_for(folder, args.calls)
        small, small_render, small_bytes = page_for(folder, 1_000)
        big_tti, small_tti = [], []
        for _ in range(args.repeats):  # alternate, so both see the same machine load
            small_tti.append(time_to_interactive(browser, small))
            big_tti.append(time_to_interactive(browser, big))
        subcall, cell = live_latency(browser, folder, args.live_repeats)
        browser.close()
    med = statistics.median
    print(f"viewer benchmark (medians; {args.repeats} page loads, {args.live_repeats} live "
          "events)\n")
    print("| page | sub-calls | size | render_html | time to interactive | vs 1,000 |")
    print("|---|---|---|---|---|---|")
    for name, n, size, render, tti in (("baseline", 1_000, small_bytes, small_render, small_tti),
                                       ("fan-out", args.calls, big_bytes, big_render, big_tti)):
        print(f"| {name} | {n:,} | {size / 1e6:.1f} MB | {render:.2f} s | {med(tti):.2f} s | "
              f"{med(tti) / med(small_tti):.1f}x |")
    print(f"\nlive event shown after (goal <= 1 s): sub-call {med(subcall):.2f} s "
          f"(max {max(subcall):.2f}), code cell {med(cell):.2f} s (max {max(cell):.2f})")
    ok = med(big_tti) <= 2.0 and max(med(subcall), med(cell)) <= 1.0
    print(f"goals (interactive <= 2 s, live <= 1 s): {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
