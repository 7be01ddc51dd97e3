"""Every prompt the engine sends, in one place. Override any field with ``Prompts(...)``.

Templates are ``str.format`` strings; the fields they may use are listed on each. The numbers in
them (output truncation, sub-call window, budget) come from the run's real configuration, so the
model is never told one limit while another is enforced.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .._foundation.errors import ContextError
from ..context import wait_whole
from .profiles import TurnFormat

SYSTEM = """\
You answer a question about a context that is far too large to read at once. The context is not \
in this conversation: it is loaded as the variable `context` in a persistent Python REPL, which \
you drive by writing code.

How it works:
- Write Python inside ```repl fenced blocks. The blocks of a reply run in order, in one namespace \
that persists across turns (variables, imports and functions stay defined).
- After each reply you see what your code printed, cut to at most {output_chars:,} characters \
(head and tail; less when the conversation nears its size limit); later turns may show only its \
size (re-run code to see it again). Print sizes, samples and summaries, not whole documents; \
keep long text and results in variables.
- In the REPL you have:
  - `context`: the data (its type and size are given below). Slice it, search it with `re`, \
parse it.
  - `SHOW_VARS()`: list the variables you have made.
{subcall_tools}- Work in steps: look at the structure of the context first (lengths, samples, \
separators); narrow it down with code; {strategy}collect results in variables; check them \
before you answer.
- When you are sure, end with `FINAL(answer)` inside a ```repl block, or `FINAL_VAR("name")` to \
answer with the value of a variable (best for long answers). FINAL_VAR only reads a variable that \
already exists: assign it first (an earlier block, or earlier in the same one). The run ends after \
that block. Setting `answer["content"] = ...` then `answer["ready"] = True` does the same.
{examples}{budget}"""

SUBCALL_TOOLS = """\
  - `llm_query(prompt) -> str`: ask a sub-model. It sees only its prompt (no REPL, no \
`context`), so put the part of the context it needs into the prompt itself. A prompt may hold up \
to {window:,} characters; a longer one is refused and comes back as an "[error: ...]" string. \
`llm_query(prompt, images=[...])` also sends images (bytes or PIL images) to a vision model.
  - `llm_query_batched(prompts) -> list[str]`: many sub-calls at once, answers in the same order. \
Far faster than calling llm_query in a loop; use it for chunk-by-chunk work.
  - `rlm_query(prompt, context=None) -> str` and `rlm_query_batched(prompts, contexts=None)`: \
{rlm_note}
  - `llm_map(template, items, schema=None)`, `llm_filter(question, items)`, \
`llm_reduce(template, items, fanin=8)`: a sub-call per item at `{{item}}`; the cost is \
checked first (`BudgetError` if it cannot fit).
- Sizing sub-calls: the sub-model is capable, so give each call a big piece, up to about \
{half:,} characters (half the window leaves room for your instructions and its answer). Prefer a \
few large calls to thousands of tiny ones, filter with code first when only some parts matter, \
and ask for short structured answers (a number, a list, one line per item) that code can combine.
"""

HOST_TOOLS = """\
- Host tools: functions that run outside the REPL (they may reach networks, files or services \
the REPL cannot). Call them from code like any function; arguments and results are JSON (str, \
numbers, lists, dicts), and a failed call raises `ToolError` in your code:
{tools}
"""

HOST_TOOL_LINE = "  - `{signature}`{description}"

HOST_VALUES = """\
- Values the user gave, already defined as variables of the REPL (read them like any \
variable):
{values}
"""

HOST_VALUE_LINE = "  - `{name}` ({type})"

MODELS_NOTE = """\
- `llm_query`, `llm_query_batched`, `rlm_query` and `rlm_query_batched` take `model=` to pick \
one of these models by name: {models}. Without it, the default is used.
"""

SUB_TOOLS_JSON = """\
You can call tools before you answer. To call one, reply with only a JSON object and nothing \
else: {{"tool": "<name>", "arguments": {{...}}}} (or a JSON list of such objects to call \
several). The results come back in the next message. When you have the answer, reply with the \
answer as plain text (not JSON of that form). The tools:
{tools}"""

SUB_TOOLS_RESULTS = """\
{results}

{rounds_left} tool round(s) left. Call more tools with the same JSON form, or reply with the \
answer as plain text."""

SUB_TOOLS_DONE = """\
You have used all {rounds} tool rounds. Reply now with your answer as plain text, from what \
the tools gave you; no more tool calls."""

RLM_NOTE_RECURSIVE = """\
hand a sub-problem to a child of your own kind, with its own REPL and `context` (default: the \
prompt). Use it for sub-problems too large for one llm_query."""

RLM_NOTE_FLAT = """\
the same as llm_query here (recursion depth is used up)."""

STRATEGY_SUBCALLS = "use sub-calls for the reading and judging of chunks; "
STRATEGY_NO_SUBCALLS = "there are no sub-models, so do the work with code; "

#: The opening both worked-example lists share: look at the context first.
_LOOK_FIRST = """
Worked examples (shapes to adapt, not code to paste):
1. Look first:
```repl
print(type(context).__name__, len(context))
print(context[:3000])
```
"""

EXAMPLES_SUBCALLS = _LOOK_FIRST + """\
2. Map over chunks with sub-calls, keep the findings in a buffer, aggregate with one last call:
```repl
size = {half}
parts = [context[i:i + size] for i in range(0, len(context), size)]
ask = "List every line of this text that is about the topic of the question, verbatim.\\n\\n"
findings = llm_query_batched([ask + p for p in parts])
final_answer = llm_query("Answer the question from these notes.\\n\\n" + "\\n".join(findings))
print(len(parts), final_answer[:500])
```
3. A list of documents: batch several per call and record which ones matter:
```repl
hits = []
for i in range(0, len(context), 10):
    batch = "\\n\\n".join(context[i:i + 10])
    hits.append(llm_query("Which of these documents state the asked fact? Quote it.\\n\\n" + batch))
```
4. Once the answer is in a variable made earlier: `FINAL_VAR("final_answer")`.
"""

EXAMPLES_NO_SUBCALLS = _LOOK_FIRST + """\
2. Scan with code and keep what matches in a buffer:
```repl
import re
matches = [m.group(0) for m in re.finditer(r"[^\\n]*keyword[^\\n]*", context)]
print(len(matches), matches[:5])
```
3. Once the answer is in a variable made earlier: `FINAL_VAR("final_answer")`.
"""

FIRST_USER = """\
{context_description}

The question:
{question}

Nothing has run yet. Start by exploring `context` in a ```repl block."""

ITERATION_USER = """\
{outputs}
{notes}[Turn {iteration} of {max_iterations} done{budget}]"""

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
Note: your FINAL(...) line outside the ```repl block was not taken because a block failed. Fix \
the error first, then call FINAL inside a ```repl block.
"""

PLAN_FINAL = """\
Note: your final answer was only a plan ("{preview}"), so it was not taken and the run goes \
on. Do the work in a ```repl block, then call FINAL(...) with the answer itself.
"""

DROP_IN_QUESTION = """\
The question has {chars:,} characters, too long to show here: it is {where} in the REPL. \
Read it with code, find what it asks (usually near its end), and do that. Its first and last \
characters:
<head>
{head}
</head>
<tail>
{tail}
</tail>"""

OUTPUT_FORMAT = """

The answer must be a value matching this JSON schema ({name}). Deliver it with FINAL(value) \
or FINAL_VAR("name") holding a dict, list, number or string (dicts and lists are sent as JSON):
{schema}"""

OUTPUT_INVALID = """\
Note: your answer does not match the required output ({name}): {errors}. It was not taken; \
fix it and deliver it again ({tries_left} more tries)."""

SESSION_QUESTION = """\
New question ({number} in this session):
{question}

{new_context}The contexts: {contexts}
Your variables from earlier questions are still defined. Work in ```repl blocks as before and \
end with FINAL(...) or FINAL_VAR(...) for this question."""

SESSION_NEW_CONTEXT = """\
A new context came with it, bound as `context_{index}` (and `context`):
{description}

"""

SESSION_RESTARTED = """\
Note: the REPL was restarted after that block ({reason}); every variable you had made, in this \
question and earlier ones, is lost. The contexts ({names}) and the REPL functions are back.
"""

LAST_TURN = """\
You have used all {max_iterations} turns. Reply now with your best final answer from what you \
have found so far: one ```repl block that calls FINAL(...) or FINAL_VAR(...). No more exploring."""


@dataclass(frozen=True, slots=True)
class Prompts:
    """The templates the engine uses. Replace any of them; keep the format fields you need.

    ``system`` may use ``{output_chars}``, ``{subcall_tools}``, ``{strategy}``, ``{examples}``,
    ``{role}`` and ``{budget}``; ``subcall_tools`` and the examples may use ``{window}`` (the
    sub-call window in characters: the sub-model's real one, or ``subcall_capacity_chars`` when
    that is smaller) and ``{half}``; ``subcall_tools`` also ``{rlm_note}``. The ``*_subcalls``
    variants are used when sub-calls are on, the ``*_no_subcalls`` ones when they are off.
    With ``RLM(tools=...)`` the REPL-function list (the ``{subcall_tools}`` field) gains
    ``host_tools`` (``{tools}``: one ``host_tool_line`` per tool, with ``{signature}`` and
    ``{description}``); with ``RLM(variables=...)``, ``host_values`` (``{values}``: one
    ``host_value_line`` per variable, with ``{name}`` and ``{type}``); with several models,
    ``models_note`` (``{models}``). A sub-agent on the
    JSON fallback is told ``sub_tools_json`` (``{tools}``), gets results in
    ``sub_tools_results`` (``{results}``, ``{rounds_left}``) and ``sub_tools_done``
    (``{rounds}``) when its rounds are used up. With ``completion(output=T)`` the first message
    gains ``output_format`` (``{name}``, ``{schema}``) and an answer that does not match gets
    ``output_invalid`` (``{name}``, ``{errors}``, ``{tries_left}``). In a session each later
    question is ``session_question`` (``{number}``, ``{question}``, ``{new_context}``: a
    ``session_new_context`` with ``{index}`` and ``{description}``, or empty; ``{contexts}``),
    and a restart is told with ``session_restarted`` (``{reason}``, ``{names}``). A question
    longer than ``Limits.question_chars`` is shown as ``drop_in_question`` (``{where}``: where
    the REPL holds it, ``{chars}``, ``{head}``, ``{tail}``).
    :meth:`paper` gives the paper's prompts."""

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
    plan_final: str = PLAN_FINAL
    drop_in_question: str = DROP_IN_QUESTION
    examples_subcalls: str = EXAMPLES_SUBCALLS
    examples_no_subcalls: str = EXAMPLES_NO_SUBCALLS
    role_subcalls: str = ""
    role_no_subcalls: str = ""
    subcall_capacity_chars: int | None = None
    host_tools: str = HOST_TOOLS
    host_tool_line: str = HOST_TOOL_LINE
    host_values: str = HOST_VALUES
    host_value_line: str = HOST_VALUE_LINE
    models_note: str = MODELS_NOTE
    sub_tools_json: str = SUB_TOOLS_JSON
    sub_tools_results: str = SUB_TOOLS_RESULTS
    sub_tools_done: str = SUB_TOOLS_DONE
    output_format: str = OUTPUT_FORMAT
    session_question: str = SESSION_QUESTION
    session_new_context: str = SESSION_NEW_CONTEXT
    session_restarted: str = SESSION_RESTARTED
    output_invalid: str = OUTPUT_INVALID
    #: Another harness's turn format (:meth:`profile`); None: fastrlm's own, from the fields.
    turns: TurnFormat | None = None

    @classmethod
    def profile(cls, name: str) -> Prompts:
        """The prompt profile ``name``: ``"rlms"`` drives the root with exactly the official
        package's system prompt, first user message, per-turn messages and output truncation,
        read from the installed package now (``pip install rlms``), never copied into fastrlm.
        One-off runs use it; sessions keep fastrlm's own turns. Raises ``ValueError`` for an
        unknown name, :class:`ConfigurationError` naming the version it was checked against
        when the package is missing or changed."""
        from .profiles import turn_format

        return cls(turns=turn_format(name))

    @classmethod
    def paper(cls, preset: str) -> Prompts:
        """The paper's system prompt for ``"gpt-5"``, ``"qwen3-coder"`` or ``"qwen3-8b"``
        (written fresh from the paper's App. C; see ``fastrlm._core.paper_prompts``). Run with
        sub-calls off, the same preset renders the paper's no-sub-call ablation prompt.
        Raises ``ValueError`` for another name."""
        from . import paper_prompts as paper

        if preset not in paper.PRESETS:
            raise ValueError(
                f"unknown paper prompt {preset!r}; expected one of {', '.join(paper.PRESETS)}"
            )
        capacity, strategy, examples = paper.PRESETS[preset]
        return cls(
            system=paper.PAPER_SYSTEM,
            subcall_tools=paper.SUBCALL_TOOLS,
            strategy_subcalls=strategy,
            strategy_no_subcalls=paper.STRATEGY_NO_SUBCALLS,
            examples_subcalls=examples,
            examples_no_subcalls=paper.EXAMPLES_NO_SUBCALLS,
            role_subcalls=paper.ROLE_SUBCALLS,
            role_no_subcalls=paper.ROLE_NO_SUBCALLS,
            subcall_capacity_chars=capacity,
        )

    @classmethod
    def paper_no_subcalls(cls) -> Prompts:
        """The paper's ablation prompt (the REPL without sub-LLMs): the GPT-5 preset, which
        renders without ``llm_query`` when the run has sub-calls off."""
        return cls.paper("gpt-5")

    @classmethod
    def paper_for(cls, model: str) -> Prompts:
        """The paper preset matching ``model`` (Qwen3-Coder and Qwen3-8B have their own; any
        other model gets the main GPT-5 prompt)."""
        from .paper_prompts import preset_for

        return cls.paper(preset_for(model))

    def render_system(
        self,
        *,
        output_chars: int,
        window_chars: int,
        subcalls: bool,
        recursive: bool,
        budget_text: str,
        tools: Sequence[tuple[str, str]] = (),
        models: Sequence[str] = (),
        values: Sequence[tuple[str, str]] = (),
    ) -> str:
        """The system prompt. ``window_chars`` is the enforced sub-call window; the model is told
        it, or ``subcall_capacity_chars`` when that is smaller (never more than is enforced).
        ``tools`` are the host tools' ``(signature, description)``; ``models`` the model names
        REPL code may pick with ``model=`` (listed when there is more than one); ``values`` the
        REPL variables ``RLM(variables=)`` binds, as ``(name, type name)``."""
        window = window_chars
        if self.subcall_capacity_chars is not None:
            window = min(window, self.subcall_capacity_chars)
        sizes = {"window": window, "half": window // 2}
        functions = ""
        if subcalls:
            note = self.rlm_note_recursive if recursive else self.rlm_note_flat
            functions = self.subcall_tools.format(rlm_note=note, **sizes)
            if len(models) > 1:
                functions += self.models_note.format(models=", ".join(f"`{m}`" for m in models))
        if tools:
            lines = "\n".join(
                self.host_tool_line.format(signature=signature,
                                           description=f": {text}" if text else "")
                for signature, text in tools
            )
            functions += self.host_tools.format(tools=lines)
        if values:
            functions += self.host_values.format(values="\n".join(
                self.host_value_line.format(name=name, type=kind) for name, kind in values))
        strategy = self.strategy_subcalls if subcalls else self.strategy_no_subcalls
        examples = (self.examples_subcalls if subcalls else self.examples_no_subcalls).format(
            **sizes
        )
        budget = (f"\nBudget for this run: {budget_text} `budget()` returns what is left."
                  if budget_text else "")
        return self.system.format(
            output_chars=output_chars,
            subcall_tools=functions,
            strategy=strategy,
            examples=examples,
            role=self.role_subcalls if subcalls else self.role_no_subcalls,
            budget=budget,
        ).rstrip()


def describe_budget(remaining: dict[str, float | int], iterations_left: int | None = None) -> str:
    """The budget sentence the model sees: what is left of each configured limit (and of the
    turns, when ``iterations_left`` is given); empty when nothing is limited."""
    parts = [] if iterations_left is None else [f"{iterations_left} turns"]
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
    return "left: " + ", ".join(parts) + "." if parts else ""


#: RLM(candidates=k): what candidate i > 0 is told after the question, in turn.
CANDIDATE_HINTS = (
    "(Take a different approach from the most obvious one.)",
    "(Check your answer by a second, independent method before you give it.)",
    "(Work from the details of the context up, not from a guess down.)",
)
#: RLM(candidates=k, select="judge"): the one sub-call that picks an answer.
JUDGE_PROMPT = """\
Several attempts answered the question below. Pick the best-supported answer.

Question: {question}

{answers}

Reply with only the number (1 to {count}) of the best answer."""

#: What the root is shown of a question too long to show whole (``drop_in_question``).
QUESTION_HEAD_CHARS = 300
QUESTION_TAIL_CHARS = 1_000


def shown_whole(question: str, limit: int) -> bool:
    """Whether ``question`` is short enough (``Limits.question_chars``) to show the root whole;
    a longer one must be read in the REPL (:func:`question_home`)."""
    return len(question) <= limit


def question_home(question: str, context: object, limit: int) -> str | None:
    """Where the root must read ``question`` in the REPL, or ``None`` when it is shown whole.

    The one rule for every door (``completion(prompt)``, the server, MCP, sessions, compat): a
    question of at most ``limit`` (``Limits.question_chars``) characters is shown whole. A
    longer one is shown by :func:`shown_question` only where the REPL holds it: the context
    itself (drop-in use), the last slice of a str context that ends with it or contains it (the
    server's conversation), or an element of a list context. Raises :class:`ContextError` for
    a longer question that the context does not hold (it would be lost or sent whole)."""
    if shown_whole(question, limit):
        return None
    if isinstance(context, str):
        wait_whole(context)  # a shared file's text may still be copying in
        if context == question:
            return "`context`"
        # the server's conversation ends with it: checked first, a full search only if not
        start = (len(context) - len(question) if context.endswith(question)
                 else context.rfind(question))
        if start >= 0:
            return f"`context[{start}:{start + len(question)}]`"
    elif isinstance(context, list | tuple):
        for index in range(len(context) - 1, -1, -1):
            if context[index] == question:
                return f"`context[{index}]`"
    raise ContextError(
        f"the question has {len(question):,} characters, more than the root model is shown "
        f"({limit:,}, Limits.question_chars) and it is not in the context: pass the long text "
        "as the context and ask a short question about it, or raise Limits.question_chars "
        "(question_chars in fastrlm's config file)"
    )


def shown_question(question: str, home: str | None, template: str) -> str:
    """The question as the root sees it: whole when ``home`` is ``None``, else ``template``
    (``Prompts.drop_in_question``: ``{where}``, ``{chars}``, ``{head}``, ``{tail}``) saying
    where it is, how long, and its head and tail."""
    if home is None:
        return question
    return template.format(where=home, chars=len(question),
                           head=question[:QUESTION_HEAD_CHARS],
                           tail=question[-QUESTION_TAIL_CHARS:])
