"""The viewer in a real browser: Debian's Chromium driven by Playwright (no downloaded browser).

Layout at 1024, 1400 and 1920 px and at phone width (no horizontal overflow, no cell text
wider than its cell, table cells on one line, a clipped cell carrying its text as a tooltip),
no console error, the live page showing events appended after it opened (and after a reload),
and a 100,000-sub-call page that opens and scrolls. Every test leaves a screenshot under
``$FASTRLM_ARTIFACTS/screenshots`` (default ``test-artifacts/screenshots``). Skipped, saying
why, where Chromium or Playwright is missing, except under CI, where they must run.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fastrlm import RLM, Budget, Limits
from fastrlm.testing import ScriptedLM, prompt_of
from fastrlm.trace import read_trace
from fastrlm.trace._html import render_html
from fastrlm.trace._live import LiveView
from fastrlm.trace._lock import hold_writer_lock

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WIDTHS = {"1024": (1024, 768), "1400": (1400, 900), "1920": (1920, 1080), "phone": (390, 844)}
#: Generous: only there so a broken page fails instead of hanging.
WAIT_MS = 30_000


def _unavailable() -> str | None:
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        return "no Chromium at /usr/bin/chromium (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install -e '.[browser]')"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    why = _unavailable()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests must run in CI: {why}")
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    executable = str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium"))
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=executable, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def shots() -> Path:
    folder = Path(os.environ.get("FASTRLM_ARTIFACTS", "test-artifacts")) / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Page:
    """A browser page that records console errors and uncaught exceptions."""

    def __init__(self, browser: Any, width: int, height: int, scheme: str = "light",
                 touch: bool = False) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": height},
                                           color_scheme=scheme, has_touch=touch)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error"
                     else None)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_page(browser: Any) -> Iterator[Any]:
    pages: list[Page] = []

    def make(width: int, height: int, scheme: str = "light", touch: bool = False) -> Page:
        page = Page(browser, width, height, scheme, touch)
        pages.append(page)
        return page

    yield make
    for page in pages:
        page.close()


def repl(code: str, prose: str = "") -> str:
    return f"{prose}\n```repl\n{code}\n```\n"


LONG_MODEL = "vllm/fake-sub-model-with-a-rather-long-name"


#: A tool call's whole texts in the full trace: past any preview, with markup that stays text.
WHOLE_ARGUMENTS = '{"q": "cats <img src=x onerror=1>", "pages": [' + ", ".join(
    f'"page-{i}"' for i in range(40)) + "]}"
WHOLE_RESULT = "results: <b>many</b> cats\n" + "".join(
    f"hit {i}: a cat sat on mat number {i}\n" for i in range(60))


def realistic_trace(home: Path, *, full: bool = False) -> Path:
    """A scripted run with a fan-out, a failing cell, child runs, long names and hostile text,
    plus tool-call events written in by hand (``full``: whole prompts and replies traced)."""

    def root_fn(messages: Any) -> str:
        if "part" in messages[1]["content"]:
            return repl("x = llm_query_batched(['s1 ' * 40, 's2'])\nFINAL('child done')")
        turns = sum(1 for m in messages if m["role"] == "assistant")
        if turns == 0:
            return repl("parts = llm_query_batched([f'count {i} ' * 30 for i in range(12)])\n"
                        "print(parts)", "I will look <script>alert('x')</script> first.")
        if turns == 1:
            return repl("1/0")
        return repl("r = rlm_query_batched(['part 1', 'part 2'])\nFINAL(' | '.join(r))")

    async def sub_fn(messages: Any) -> str:
        prompt = prompt_of(messages)
        await asyncio.sleep(0.01 * (len(prompt) % 5))
        return "call answer " + prompt[:60] + " supercalifragilisticexpialidocious" * 5

    root = ScriptedLM(root_fn, model="scripted/root-model")
    sub = ScriptedLM(sub_fn, model=LONG_MODEL)
    rlm = RLM(root, sub, sandbox="none", trace=home, budget=Budget(max_depth=2),
              limits=Limits(trace_full_prompts=full))
    # in a thread of its own: Playwright's sync API may already run an event loop in this one
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        out = pool.submit(rlm.completion, "How many <b>cats</b> are there, across every one of "
                          "the files?", context="cat " * 500).result()
    path = Path(str(out.trace_path))
    lines = path.read_text().splitlines()
    run_id, ts = json.loads(lines[0])["run_id"], json.loads(lines[-1])["ts"]
    tools = [
        {"type": "tool.started", "run_id": run_id, "depth": 0, "ts": ts, "call_id": "t1",
         "tool": "search_web", "arguments_preview": '{"q": "cats <img src=x onerror=1>"}',
         **({"arguments": WHOLE_ARGUMENTS} if full else {})},
        {"type": "tool.finished", "run_id": run_id, "depth": 0, "ts": ts + 0.2, "call_id": "t1",
         "tool": "search_web", "duration_s": 0.2, "error": None,
         "result_chars": len(WHOLE_RESULT) if full else 1234,
         "result_preview": "results: <b>many</b> cats",
         **({"result": WHOLE_RESULT} if full else {})},
        {"type": "tool.finished", "run_id": run_id, "depth": 0, "ts": ts + 0.3, "call_id": "t2",
         "tool": "fetch_page", "duration_s": 0.1, "error": "timeout after 0.1s",
         "result_chars": 0, "result_preview": ""},
    ]
    body = lines[:-2] + [json.dumps(t) for t in tools] + lines[-2:]
    path.write_text("\n".join(body) + "\n")
    return path


@pytest.fixture(scope="module")
def page_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("home")
    trace = realistic_trace(home)
    target = home / "page.html"
    target.write_text(render_html(read_trace(trace)), encoding="utf-8")
    return target


@pytest.fixture(scope="module")
def full_page_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("full")
    target = home / "page.html"
    target.write_text(render_html(read_trace(realistic_trace(home, full=True))),
                      encoding="utf-8")
    return target


#: The 12 fan-out prompts of realistic_trace are 'count N ' * 30 (240 characters, past the
#: 200 a preview keeps); each reply repeats its prompt's head and a long word five times.
WHOLE_PROMPT = "count 3 " * 30
WHOLE_REPLY = "call answer " + WHOLE_PROMPT[:60] + " supercalifragilisticexpialidocious" * 5

FITS = """sel => [...document.querySelectorAll(sel)].every(e => {
  const r = e.getBoundingClientRect();
  return r.width > 0 && r.left >= 0 && r.right <= window.innerWidth + 1
    && e.scrollWidth <= e.clientWidth + 1; })"""


@pytest.mark.parametrize("size", ["1400", "phone"])
def test_a_sub_call_opens_on_click_or_tap_to_its_whole_prompt_and_reply(
    open_page: Any, full_page_file: Path, shots: Path, size: str,
) -> None:
    width, height = WIDTHS[size]
    view = open_page(width, height, touch=size == "phone")
    page = view.page
    page.goto(full_page_file.as_uri())
    page.click("button[data-mode=slowest]")  # the list is long: find the row by its id
    row = page.locator("#calls-body .vrow", has_text=WHOLE_REPLY[:30]).first
    row.wait_for(timeout=WAIT_MS)
    if size == "phone":
        row.tap()
    else:
        row.click()
    page.wait_for_selector("#call-open:not([hidden]) pre.output", timeout=WAIT_MS)
    prompt = page.inner_text("#co-body pre.code")
    reply = page.inner_text("#co-body pre.output")
    assert prompt.strip() == WHOLE_PROMPT.strip() and len(WHOLE_PROMPT) > 200
    assert reply == WHOLE_REPLY and len(WHOLE_REPLY) > 200
    assert "preview" not in page.inner_text("#co-body")  # whole texts: no preview note
    assert "(240 chars)" in page.inner_text("#co-body")
    assert page.evaluate(FITS, "#call-open, #co-body pre")  # wrapped, inside the window
    page.screenshot(path=str(shots / f"viewer-open-call-{size}.png"))
    page.click("#co-close")
    assert page.locator("#call-open").is_hidden()
    if size != "phone":  # the keyboard opens a row too
        row.focus()
        page.keyboard.press("Enter")
        page.wait_for_selector("#call-open:not([hidden]) pre.output", timeout=WAIT_MS)
        assert page.inner_text("#co-body pre.output") == WHOLE_REPLY
        # and the timeline: a click on a sub-call's bar opens it
        page.click("#co-close")
        box = page.locator("#timeline").bounding_box()
        assert box is not None
        found = page.evaluate("""() => { const c = document.getElementById('timeline');
          const r = c.getBoundingClientRect();
          for (let y = 0; y < r.height; y += 2) for (let x = 0; x < r.width; x += 2) {
            c.dispatchEvent(new MouseEvent('click', {clientX: r.left + x, clientY: r.top + y,
                                                     bubbles: true}));
            if (!document.getElementById('call-open').hidden) return true; }
          return false; }""")
        assert found and page.inner_text("#co-title").startswith("sub-call ")
    assert view.errors == []


@pytest.mark.parametrize("size", ["1400", "phone"])
def test_a_cells_sub_call_clipped_in_its_table_opens_whole_in_the_panel(
    open_page: Any, tmp_path_factory: pytest.TempPathFactory, size: str,
) -> None:
    home = tmp_path_factory.mktemp("clipped")
    page_file = home / "page.html"  # texts past 100 characters are clipped in a cell's table
    page_file.write_text(render_html(read_trace(realistic_trace(home, full=True)), max_chars=100),
                         encoding="utf-8")
    view = open_page(*WIDTHS[size], touch=size == "phone")
    page = view.page
    page.goto(page_file.as_uri())
    summary = page.locator("details.subcalls > summary").first
    summary.scroll_into_view_if_needed()
    summary.tap() if size == "phone" else summary.click()
    call = page.locator("details.subcalls details.call", has_text="count ").first
    call.locator("summary").tap() if size == "phone" else call.locator("summary").click()
    clipped = call.locator("pre.code").inner_text()
    assert "more characters" in clipped  # the cell's table keeps 100 characters of it
    n = clipped.split()[1]  # the prompt is 'count N ' * 30, its reply repeats its head
    button = call.locator("button.open-whole")
    button.tap() if size == "phone" else button.click()
    page.wait_for_selector("#call-open:not([hidden]) pre.output", timeout=WAIT_MS)
    prompt = f"count {n} " * 30
    assert page.inner_text("#co-body pre.code").strip() == prompt.strip()
    assert page.inner_text("#co-body pre.output") == (
        "call answer " + prompt[:60] + " supercalifragilisticexpialidocious" * 5)
    assert page.inner_text("#co-title") == f"sub-call {call.locator('.mono').inner_text()}"
    assert page.evaluate(FITS, "#call-open, #co-body pre, button.open-whole")
    assert view.errors == []


@pytest.mark.parametrize("size", ["1400", "phone"])
def test_a_cells_code_and_output_past_the_page_limit_fold_open_whole(
    open_page: Any, tmp_path_factory: pytest.TempPathFactory, size: str,
) -> None:
    home = tmp_path_factory.mktemp("cells")
    trace = read_trace(realistic_trace(home))
    cell = next(e for e in trace.events if e["type"] == "code.executed"
                and "llm_query_batched([f" in e["code"])
    page_file = home / "page.html"  # a cell's texts past 40 characters fold
    page_file.write_text(render_html(trace, max_chars=40), encoding="utf-8")
    view = open_page(*WIDTHS[size], touch=size == "phone")
    page = view.page
    page.goto(page_file.as_uri())
    block = page.locator("div.block", has_text="count {i}").first
    block.scroll_into_view_if_needed()
    for cls, whole in (("code", cell["code"]), ("output", cell["output"])):
        assert len(whole) > 40
        more = block.locator(f"pre.{cls}.head + details.more").first
        assert more.locator("pre").is_hidden()
        summary = more.locator("summary")
        assert summary.inner_text() == f"show the other {len(whole) - 40:,} characters"
        summary.tap() if size == "phone" else summary.click()
        head = block.locator(f"pre.{cls}.head").first.inner_text()
        assert head + more.locator("pre").inner_text() == whole  # nothing lost or doubled
    assert page.evaluate(FITS, "div.block pre")  # wrapped, inside the window
    assert view.errors == []


def test_a_live_page_fetches_the_whole_texts_it_did_not_pack(
    open_page: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fastrlm.trace import _html_data

    monkeypatch.setattr(_html_data, "MAX_PACKED_CHARS", 0)  # a page too big to pack them
    trace = realistic_trace(tmp_path, full=True)
    with LiveView(lambda: trace) as live:
        view = open_page(*WIDTHS["1400"])
        page = view.page
        page.goto(live.url)
        page.click("button[data-mode=slowest]")
        page.locator("#calls-body .vrow", has_text=WHOLE_REPLY[:30]).first.click()
        page.wait_for_selector("#co-body pre.output", timeout=WAIT_MS)
        assert page.inner_text("#co-body pre.output") == WHOLE_REPLY
        assert page.inner_text("#co-body pre.code").strip() == WHOLE_PROMPT.strip()
        assert "preview" not in page.inner_text("#co-body")
    assert view.errors == []


def test_on_a_phone_the_cells_sub_calls_open_by_tap_and_the_models_failed_column_shows(
    open_page: Any, page_file: Path, shots: Path,
) -> None:
    view = open_page(*WIDTHS["phone"], touch=True)
    page = view.page
    page.goto(page_file.as_uri())
    page.wait_for_selector("#calls-body .vrow", timeout=WAIT_MS)
    headers = page.locator("table.models th")
    visible = [h.inner_text() for h in headers.all() if h.is_visible()]
    assert "failed" in visible and "calls" in visible and "cost" in visible
    page.locator("details.subcalls > summary").first.tap()
    call = page.locator("details.subcalls details.call").first
    call.locator("summary").tap()
    assert call.locator("pre.output").is_visible()
    # a trace without full prompts says so, and how to get them
    assert "--trace-full" in call.inner_text()
    assert page.evaluate(FITS, "details.subcalls details.call[open] pre")
    page.screenshot(path=str(shots / "viewer-phone-call.png"))
    assert view.errors == []


@pytest.mark.parametrize("size", ["1400", "phone"])
def test_a_tool_call_opens_on_click_or_tap_to_its_whole_arguments_and_result(
    open_page: Any, full_page_file: Path, size: str,
) -> None:
    view = open_page(*WIDTHS[size], touch=size == "phone")
    page = view.page
    page.goto(full_page_file.as_uri())
    tool = page.locator("details.tool", has_text="search_web").first
    summary = tool.locator("summary")
    summary.scroll_into_view_if_needed()
    if size == "phone":
        summary.tap()
    else:
        summary.click()
    assert tool.get_attribute("open") is not None
    assert tool.locator("pre.code").inner_text() == WHOLE_ARGUMENTS
    assert tool.locator("pre.output").inner_text() == WHOLE_RESULT
    text = tool.inner_text()
    assert "(preview)" not in text and "--trace-full" not in text  # whole: no preview note
    assert page.evaluate(FITS, "details.tool[open] pre")  # wrapped, inside the window
    assert page.evaluate("document.querySelectorAll('img').length") == 0  # markup is text
    assert view.errors == []


def test_the_per_model_time_column_is_named_for_what_it_sums(
    open_page: Any, page_file: Path,
) -> None:
    view = open_page(*WIDTHS["1400"])
    view.page.goto(page_file.as_uri())
    header = view.page.locator("table.models th", has_text="summed latency")
    assert header.is_visible() and "exceed the run" in str(header.get_attribute("title"))
    assert view.page.locator("table.models th", has_text="time").count() == 0


LAYOUT_PROBLEMS = """() => {
  const bad = [], W = window.innerWidth, de = document.documentElement;
  if (de.scrollWidth > W + 1) bad.push('page is ' + de.scrollWidth + 'px wide in ' + W);
  document.querySelectorAll('.scroll').forEach(s => {
    if (s.scrollWidth > s.clientWidth + 1) bad.push('table wider than its box: ' +
      s.scrollWidth + ' > ' + s.clientWidth + ' ' + s.textContent.slice(0, 60));
  });
  const cells = document.querySelectorAll(
    'table.grid td, table.grid th, .vrow > span, .facts td, .facts th');
  let checked = 0;
  cells.forEach(c => {
    if (!c.getClientRects().length) return;  // not displayed (closed details, phone columns)
    checked++;
    const st = getComputedStyle(c), text = c.textContent.trim();
    const clipped = c.scrollWidth > c.clientWidth + 1;
    const grid = c.closest('table.grid, .vrow') !== null;
    if (clipped && !(grid && st.overflowX === 'hidden' && st.textOverflow === 'ellipsis'
                     && c.title.length >= text.length - 1))
      bad.push('text wider than its cell: ' + text.slice(0, 60));
    if (grid) {
      const range = document.createRange(); range.selectNodeContents(c);
      const tops = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
      if (tops.size > 1) bad.push('cell text broken over lines: ' + text.slice(0, 60));
    }
    const r = c.getBoundingClientRect();
    if (r.right > W + 1) bad.push('cell past the window edge: ' + text.slice(0, 60));
  });
  return {bad, checked};
}"""


@pytest.mark.parametrize("size", list(WIDTHS))
def test_page_fits_the_window_without_console_errors(
    open_page: Any, page_file: Path, shots: Path, size: str
) -> None:
    width, height = WIDTHS[size]
    view = open_page(width, height)
    view.page.goto(page_file.as_uri())
    view.page.wait_for_selector("#calls-body .vrow", timeout=WAIT_MS)
    view.page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
    result = view.page.evaluate(LAYOUT_PROBLEMS)
    view.page.screenshot(path=str(shots / f"viewer-{size}.png"))
    assert result["checked"] > 40  # the probe found the tables it is meant to check
    assert result["bad"] == []
    assert view.errors == []


def test_model_text_stays_text_and_each_cell_shows_its_code_once(
    open_page: Any, page_file: Path, shots: Path
) -> None:
    view = open_page(1400, 900, "dark")
    view.page.goto(page_file.as_uri())
    view.page.wait_for_selector("#calls-body .vrow", timeout=WAIT_MS)
    page = view.page
    assert page.evaluate("document.querySelectorAll('img, script:not([id])').length") == 1
    assert page.locator("text=<script>alert('x')</script>").count() == 1
    assert page.locator("pre.code", has_text="1/0").count() == 1
    assert page.locator("pre", has_text="ZeroDivisionError").count() == 1
    assert page.locator("details.tool").count() == 2
    assert page.locator("ul.tree li").count() == 3
    bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.screenshot(path=str(shots / "viewer-dark.png"))
    assert bg == "rgb(13, 17, 23)"  # the system's dark scheme is followed
    assert view.errors == []


def test_filters_show_errors_only_and_sort_by_latency_and_cost(
    open_page: Any, page_file: Path, shots: Path
) -> None:
    view = open_page(1400, 900)
    page = view.page
    page.goto(page_file.as_uri())
    page.wait_for_selector("#calls-body .vrow", timeout=WAIT_MS)
    all_rows = page.locator("#calls-body .vrow:visible").count()
    page.click("button[data-mode=slowest]")
    latencies = page.eval_on_selector_all(
        "#calls-body .vrow:not([hidden])",
        "rows => rows.map(r => [parseFloat(r.style.top), parseFloat(r.children[2].textContent)])"
        ".sort((a, b) => a[0] - b[0]).map(x => x[1])")
    assert len(latencies) == all_rows and latencies == sorted(latencies, reverse=True)
    page.click("button[data-mode=errors]")
    assert "showing 0" in page.inner_text("#calls-note")
    page.screenshot(path=str(shots / "viewer-filters.png"))
    assert view.errors == []


def test_javascript_off_still_shows_the_run_as_text(
    browser: Any, page_file: Path, shots: Path
) -> None:
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1024,
                                                                        "height": 768})
    try:
        page = context.new_page()
        page.goto(page_file.as_uri())
        text = page.inner_text("body")
        page.screenshot(path=str(shots / "viewer-no-js.png"), full_page=True)
    finally:
        context.close()
    assert "JavaScript is off" in text
    assert "How many <b>cats</b>" in text and "child done | child done" in text
    assert "ZeroDivisionError" in text and "Per model" in text
    assert "Timeline" not in text and "in the list at the top" not in text  # script-only parts


def line(**event: Any) -> str:
    return json.dumps({"run_id": "live1", "depth": 0, "ts": 1_800_000_000.0, **event}) + "\n"


def test_live_page_shows_events_appended_after_it_opened_and_after_a_reload(
    open_page: Any, tmp_path: Path, shots: Path
) -> None:
    trace = tmp_path / "live1.jsonl"
    trace.write_text(
        line(type="run.started", parent_run_id=None, question="a live run", model="m",
             sub_model="s", context={}, sandbox="none", budget={})
        + line(type="iteration.started", iteration=1, max_iterations=5))
    writer = open(trace, "a")  # noqa: SIM115 - held open as a running writer holds it
    hold_writer_lock(writer)
    with LiveView(lambda: trace) as live, writer:
        view = open_page(1400, 900)
        page = view.page
        page.goto(live.url)
        page.wait_for_selector("#live:text('live')", timeout=WAIT_MS)
        with open(trace, "a") as handle:
            handle.write(line(type="subcall.started", call_id="c0", model="s", prompt_chars=312,
                              prompt_sha256="h", prompt_preview="LIVE-PROMPT",
                              prompt="LIVE-PROMPT " + "w" * 300))
            handle.write(line(type="subcall.finished", call_id="c0", model="s", input_tokens=3,
                              output_tokens=2, cost_usd=0.5, latency_s=0.25, cached=False,
                              error=None, response_chars=311, response_preview="LIVE-REPLY",
                              response="LIVE-REPLY " + "z" * 300))
            handle.write(line(type="code.executed", iteration=1, block=1, code="print('hi')",
                              output="LIVE-OUTPUT-1", output_chars=13, error=None,
                              duration_s=0.3, timed_out=False, restarted=False, restored=[]))
        page.wait_for_selector("#calls-body .vrow >> text=LIVE-REPLY", timeout=WAIT_MS)
        page.click("#calls-body .vrow >> text=LIVE-REPLY")  # a call that came in live opens
        page.wait_for_selector("#co-body pre.output", timeout=WAIT_MS)
        assert page.inner_text("#co-body pre.output") == "LIVE-REPLY " + "z" * 300
        assert page.inner_text("#co-body pre.code") == "LIVE-PROMPT " + "w" * 300
        page.wait_for_selector("pre.output >> text=LIVE-OUTPUT-1", timeout=WAIT_MS)
        page.screenshot(path=str(shots / "viewer-live.png"))
        page.reload()
        page.wait_for_selector("pre.output >> text=LIVE-OUTPUT-1", timeout=WAIT_MS)
        summary = page.inner_text("#summary")  # no run.finished, but its writer is alive
        assert "running" in summary and "incomplete" not in summary
        with open(trace, "a") as handle:
            handle.write(line(type="run.finished", stop_reason="final", answer="LIVE-ANSWER",
                              iterations=1, subcalls=1, usage={}, cost_usd=0.5, duration_s=1.0,
                              error=None))
        page.wait_for_selector("pre.answer >> text=LIVE-ANSWER", timeout=WAIT_MS)
        page.wait_for_selector("#live:text('finished')", timeout=WAIT_MS)
        assert page.locator("#calls-body .vrow >> text=LIVE-REPLY").count() == 1
        assert view.errors == []


def test_live_page_turns_incomplete_when_the_writer_dies_mid_run(
    open_page: Any, tmp_path: Path,
) -> None:
    trace = tmp_path / "dying.jsonl"
    trace.write_text(
        line(type="run.started", parent_run_id=None, question="a run that dies", model="m",
             sub_model="s", context={}, sandbox="none", budget={})
        + line(type="iteration.started", iteration=1, max_iterations=5))
    writer = open(trace, "a")  # noqa: SIM115 - closed below, as a killed process's file is
    hold_writer_lock(writer)
    with LiveView(lambda: trace) as live:
        page = open_page(390, 800).page
        page.goto(live.url)
        page.wait_for_selector("#live:text('live')", timeout=WAIT_MS)
        assert "This trace is incomplete" not in page.inner_text("#summary")
        assert page.locator("#summary .badge.bad").count() == 0
        writer.close()  # the lock goes with the file, as when the kernel reaps a killed writer
        page.wait_for_selector("#live:text('not finished')", timeout=WAIT_MS)
        page.wait_for_selector("#summary >> text=This trace is incomplete", timeout=WAIT_MS)


def write_fanout_trace(path: Path, n_calls: int) -> None:
    """A run with ``n_calls`` sub-calls in one cell, written as JSONL directly (fast)."""
    t0 = 1_800_000_000.0
    head = {"run_id": "big", "depth": 0}
    with open(path, "w") as out:
        out.write(json.dumps({**head, "type": "run.started", "ts": t0, "parent_run_id": None,
                              "question": "fan-out", "model": "m", "sub_model": "s",
                              "context": {}, "sandbox": "none", "budget": {}}) + "\n")
        out.write(json.dumps({**head, "type": "iteration.started", "ts": t0, "iteration": 1,
                              "max_iterations": 5}) + "\n")
        for i in range(n_calls):
            start, lat = t0 + i * 0.001, 0.05 + (i % 97) / 100
            out.write(f'{{"run_id":"big","depth":0,"type":"subcall.started","ts":{start},'
                      f'"call_id":"c{i}","model":"s","prompt_chars":900,"prompt_sha256":"h",'
                      f'"prompt_preview":"prompt {i} about a chunk of the context"}}\n')
            error = '"rate limited"' if i % 1000 == 0 else "null"
            out.write(f'{{"run_id":"big","depth":0,"type":"subcall.finished","ts":{start + lat},'
                      f'"call_id":"c{i}","model":"s","input_tokens":900,"output_tokens":20,'
                      f'"cost_usd":{0.0001 * (i % 13)},"latency_s":{lat},"cached":false,'
                      f'"error":{error},"response_chars":30,"response_preview":"reply {i}"}}\n')


@pytest.mark.slow
def test_a_hundred_thousand_subcall_page_opens_and_scrolls(
    open_page: Any, tmp_path: Path, shots: Path
) -> None:
    trace = tmp_path / "big.jsonl"
    write_fanout_trace(trace, 100_000)
    page_file = tmp_path / "big.html"
    page_file.write_text(render_html(read_trace(trace)), encoding="utf-8")
    view = open_page(1400, 900)
    page = view.page
    page.goto(page_file.as_uri(), timeout=WAIT_MS * 4)
    page.wait_for_selector("#calls-body .vrow >> text=c0", timeout=WAIT_MS * 4)
    assert page.evaluate("document.querySelectorAll('#calls-body .vrow').length") < 100
    page.evaluate("(b => { b.scrollTop = b.scrollHeight; })"
                  "(document.getElementById('calls-body'))")
    page.wait_for_selector("#calls-body .vrow >> text=c99999", timeout=WAIT_MS)
    assert "100,000 sub-call(s), 100 failed" in page.inner_text("#calls-note")
    page.click("button[data-mode=errors]")
    page.wait_for_selector("#calls-note >> text=showing 100", timeout=WAIT_MS)
    page.screenshot(path=str(shots / "viewer-100k.png"))
    assert view.errors == []
