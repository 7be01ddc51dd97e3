"""Every prompt the engine sends, in one place. Override any field with ``Prompts(...)``.

Templates are ``str.format`` strings; the fields they may use are listed on each. The numbers in
them (output truncation, sub-call window, budget) come from the run's real configuration, so the
model is never told one limit while another is enforced.
"""

from __future__ import annotations

from dataclasses import dataclass

SYSTEM = """\
You answer a question about a context that is far too large to read at once. The context is not \
in this conversation: it is loaded as the variable `context` in a persistent Python REPL, which \
you drive by writing code.

How it works:
- Write Python inside ```repl fenced blocks. The blocks of a reply run in order, in one namespace \
that persists across turns (variables, imports and functions stay defined).
- After each reply you see what your code printed, cut to {output_chars:,} characters (head and \
tail). Print sizes, samples and summaries, not whole documents.
- In the REPL you have:
  - `context`: the data (its type and size are given below). Slice it, search it with `re`, \
parse it.
{subcall_tools}  - `SHOW_VARS()`: list the variables you have made.
- Work in steps: look at the structure of the context first (lengths, samples, separators); narrow \
it down with code; {strategy}collect results in variables; check them before you answer.
- When you are sure, end with `FINAL(answer)` inside a ```repl block, or `FINAL_VAR("name")` to \
answer with the value of a variable (best for long answers). The run ends after that block. \
Setting `answer["content"] = ...` then `answer["ready"] = True` does the same.
{budget}"""

SUBCALL_TOOLS = """\
  - `llm_query(prompt) -> str`: ask a sub-model. It reads about {window:,} characters per prompt, \
so put the part of the context it needs into the prompt itself.
  - `llm_query_batched(prompts) -> list[str]`: many sub-calls at once, answers in the same order. \
Far faster than calling llm_query in a loop; use it for chunk-by-chunk work.
  - `rlm_query(prompt, context=None) -> str` and `rlm_query_batched(prompts, contexts=None)`: \
{rlm_note}
"""

RLM_NOTE_RECURSIVE = """\
hand a sub-problem to a child of your own kind, with its own REPL and `context` (default: the \
prompt). Use it for sub-problems too large for one llm_query."""

RLM_NOTE_FLAT = """\
the same as llm_query here (recursion depth is used up)."""

STRATEGY_SUBCALLS = "use sub-calls for the reading and judging of chunks; "
STRATEGY_NO_SUBCALLS = "there are no sub-models, so do the work with code; "

FIRST_USER = """\
{context_description}

The question:
{question}

Nothing has run yet. Start by exploring `context` in a ```repl block."""

ITERATION_USER = """\
{outputs}
{notes}{budget}Turn {iteration} of {max_iterations} done. Continue, or answer with FINAL(...) / \
FINAL_VAR(...) in a ```repl block."""

BLOCK_OUTPUT = """\
Output of block {block}{status}:
```
{output}
```"""

NO_CODE = """\
Your reply had no ```repl block, so nothing ran. Write code in a ```repl block; when you know \
the answer, call FINAL(...) or FINAL_VAR(...) inside one."""

RESTORED = """\
Note: your code rebound {names}; {they} restored to the REPL's version. Use other names for your \
own variables.
"""

RESTARTED = """\
Note: the REPL was restarted after that block ({reason}); every variable you had made is lost. \
`context` and the REPL functions are back as at the start.
"""

BUDGET_SPENT = """\
{resource} is used up: further sub-calls will be refused. Reply now with your best final answer \
from what you have: one ```repl block that calls FINAL(...) or FINAL_VAR(...)."""

PROSE_FINAL_IGNORED = """\
Note: a FINAL(...) line outside a ```repl block is ignored when the reply also has code. Call \
FINAL inside the block.
"""

DROP_IN_QUESTION = """\
The context is the user's whole message, too long to show here. Read it with code, find what it \
asks, and do that. Its last characters:
<tail>
{tail}
</tail>"""

LAST_TURN = """\
You have used all {max_iterations} turns. Reply now with your best final answer from what you \
have found so far: one ```repl block that calls FINAL(...) or FINAL_VAR(...). No more exploring."""


@dataclass(frozen=True, slots=True)
class Prompts:
    """The templates the engine uses. Replace any of them; keep the format fields you need."""

    system: str = SYSTEM
    subcall_tools: str = SUBCALL_TOOLS
    rlm_note_recursive: str = RLM_NOTE_RECURSIVE
    rlm_note_flat: str = RLM_NOTE_FLAT
    strategy_subcalls: str = STRATEGY_SUBCALLS
    strategy_no_subcalls: str = STRATEGY_NO_SUBCALLS
    first_user: str = FIRST_USER
    iteration_user: str = ITERATION_USER
    block_output: str = BLOCK_OUTPUT
    no_code: str = NO_CODE
    restored: str = RESTORED
    restarted: str = RESTARTED
    last_turn: str = LAST_TURN
    budget_spent: str = BUDGET_SPENT
    prose_final_ignored: str = PROSE_FINAL_IGNORED
    drop_in_question: str = DROP_IN_QUESTION

    def render_system(
        self,
        *,
        output_chars: int,
        window_chars: int,
        subcalls: bool,
        recursive: bool,
        budget_text: str,
    ) -> str:
        tools = ""
        if subcalls:
            note = self.rlm_note_recursive if recursive else self.rlm_note_flat
            tools = self.subcall_tools.format(window=window_chars, rlm_note=note)
        strategy = self.strategy_subcalls if subcalls else self.strategy_no_subcalls
        budget = f"\nBudget for this run: {budget_text}" if budget_text else ""
        return self.system.format(
            output_chars=output_chars,
            subcall_tools=tools,
            strategy=strategy,
            budget=budget,
        ).rstrip()


def describe_budget(remaining: dict[str, float | int], iterations_left: int) -> str:
    """The budget sentence the model sees: what is left of each configured limit."""
    parts = [f"{iterations_left} turns"]
    if "subcalls" in remaining:
        parts.append(f"{int(remaining['subcalls']):,} sub-calls")
    if "usd" in remaining:
        parts.append(f"${float(remaining['usd']):.4f}")
    if "input_tokens" in remaining:
        parts.append(f"{int(remaining['input_tokens']):,} input tokens")
    if "output_tokens" in remaining:
        parts.append(f"{int(remaining['output_tokens']):,} output tokens")
    if "seconds" in remaining:
        parts.append(f"{int(remaining['seconds']):,} seconds")
    return "left: " + ", ".join(parts) + "."
