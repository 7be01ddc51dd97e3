"""What both implementations share: the contexts, the scripted root replies, the wire markers.

Standard library only: the fake model server (fastrlm's interpreter) and both drivers (fastrlm's
interpreter and the official package's virtualenv) import it.
"""

from __future__ import annotations

import random
import re
import resource

MB = 1_000_000
UNIT_CHARS = MB  # contexts are a 1 MB unit repeated: one allocation, no transient copy
SUB_PREFIX = "SUB "  # every sub-call prompt starts with it; root requests never do
STEP_RE = re.compile(r"@@step (\d+)")
NEEDLE_RE = r"needle-\d{6}"

# Fan-out (issue 7, benchmark 1): three root turns issue these llm_query_batched batches.
FANOUT_BATCHES = (50, 200, 750)

_WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november "
    "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu the of and to "
    "in is was for on that with as by at from this be or an are were which not but have had"
).split()


def cpu_times() -> dict[str, float]:
    """CPU seconds (user + system) of this process and of its reaped children (a sandbox
    worker, once stopped)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"cpu_s": me.ru_utime + me.ru_stime, "children_cpu_s": kids.ru_utime + kids.ru_stime}


def context_unit(seed: int = 7) -> str:
    """1 MB of ASCII prose-like text with a ``needle-NNNNNN`` every ~4 KB."""
    rng = random.Random(seed)
    parts: list[str] = []
    size = 0
    needle = 0
    while size < UNIT_CHARS:
        words = " ".join(rng.choice(_WORDS) for _ in range(600))
        chunk = f"{words} needle-{needle:06d}.\n"
        needle += 1
        parts.append(chunk)
        size += len(chunk)
    return "".join(parts)[:UNIT_CHARS]


def make_context(megabytes: int) -> str:
    """``megabytes`` MB of ASCII text (4 characters a token: 1 MB is 250k tokens)."""
    return context_unit() * megabytes


# Root-token efficiency (issue 18, benchmark 5): one scripted 30-turn trajectory of mixed
# outputs over a 2 MB context. "tokens": short prints, five 50K-character prints, two errors and
# three batches of 20 sub-calls; "tokens-heavy": the same with a 50K print on every turn.
TOKEN_TURNS = 30
TOKEN_CONTEXT_MB = 2
LONG_PRINT_CHARS = 50_000
_LONG_STEPS = frozenset({2, 7, 12, 17, 22})
_ERROR_STEPS = frozenset({5, 19})
_BATCH_STEPS = frozenset({9, 14, 24})


def _token_step(scenario: str, step: int, dialect: str = "rlm") -> list[str]:
    """One turn's code. ``dialect`` ``"minrlm"`` writes the same turn in minRLM's own names (the
    context is ``input_0``, sub-calls go through ``sub_llm_batch`` of (task, context) pairs,
    the answer through ``FINAL``, which minRLM accepts only after a ``search()`` of the input)."""
    ctx = "input_0" if dialect == "minrlm" else "context"
    lines = [_step_marker(step + 1)]  # first, so an error later in the cell cannot hide it
    if step >= TOKEN_TURNS - 1:
        if dialect == "minrlm":
            return lines + ['search(input_0, "@@")', 'FINAL("done")']
        return lines + [_finish('"done"')]
    at = step * 60_000
    if step in _LONG_STEPS or scenario == "tokens-heavy":
        lines.append(f"print({ctx}[{at}:{at + LONG_PRINT_CHARS}])")
    else:
        lines.append(f"print(len({ctx}), repr({ctx}[{at}:{at + 300}]))")
    if step in _ERROR_STEPS:
        lines.append(f"print(missing_name_{step})")
    if step in _BATCH_STEPS:
        prompts = (f'[f"{SUB_PREFIX}{step}-{{i}}: " + {ctx}[{at} + i * 500:'
                   f"{at} + i * 500 + 500] for i in range(20)]")
        call = (f"sub_llm_batch([(p, '') for p in {prompts}])" if dialect == "minrlm"
                else f"llm_query_batched({prompts})")
        lines += [f"r = {call}", 'print(sum(x == "ok" for x in r), "of", len(r), "answered")']
    return lines


def _step_marker(step: int) -> str:
    # Built by concatenation so the marker never appears in the code the model "wrote", only in
    # the REPL output that comes back in the next request.
    return f'print("@@" + "step", {step})'


def _finish(content: str) -> str:
    return f'answer["content"] = {content}\nanswer["ready"] = True'


def root_reply(scenario: str, step: int, iterations: int, dialect: str = "rlm") -> str:
    """The scripted root model's reply at ``step`` (0-based). Both implementations run the
    same code: sub-calls through ``llm_query_batched``, the answer through the ``answer`` dict
    (the official package's channel; fastrlm supports it too)."""
    if scenario == "fanout":
        lines = ["oks = []", "errs = []"] if step == 0 else []
        n = FANOUT_BATCHES[step]
        lines += [
            f'r = llm_query_batched([f"{SUB_PREFIX}{step}-{{i}}" for i in range({n})])',
            'oks.append(sum(1 for x in r if x == "ok"))',
            'errs.extend(x for x in r if x != "ok")',
            _step_marker(step + 1),
        ]
        if step == len(FANOUT_BATCHES) - 1:
            lines.append(_finish('f"{oks}|{len(errs)}|{(errs[:1] or [\'\'])[0][:300]}"'))
    elif scenario == "findall":
        lines = [
            "import re, time",
            "t0 = time.perf_counter()",
            f'n = len(re.findall(r"{NEEDLE_RE}", context))',
            "dt = time.perf_counter() - t0",
            _step_marker(step + 1),
            _finish('f"{n} {dt:.6f}"'),
        ]
    elif scenario in ("tokens", "tokens-heavy"):
        lines = _token_step(scenario, step, dialect)
        code = "\n".join(lines)
        fence = "python" if dialect == "minrlm" else "repl"
        return (f"Turn {step + 1}: I look at the next part of the context and keep notes."
                f"\n```{fence}\n{code}\n```")
    elif scenario == "noop":
        lines = ["x = 1", _step_marker(step + 1)]
        if step >= iterations - 1:
            lines.append(_finish('"done"'))
    else:
        raise ValueError(f"unknown scenario {scenario!r}")
    code = "\n".join(lines)
    return f"Next step.\n```repl\n{code}\n```"


def next_step(texts: list[str]) -> int:
    """The step a root request asks for: one past the highest marker in its last messages."""
    seen = [int(m) for text in texts for m in STEP_RE.findall(text)]
    return max(seen, default=0)
