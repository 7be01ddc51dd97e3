"""The ``oracle`` control: the full ``rlm`` method (engine, sandbox, sub-calls, FINAL) whose root
writes a correct program and whose sub-model knows the generator's hidden truth.

The root program does what a good RLM would: it splits the context, sends each piece to
``llm_query_batched`` with the semantic question (label these lines; which entity does this
question lead to; which of these functions does what is described; what is the needle), and
combines the answers with code. The scripted sub-model answers each sub-call from the truth of
the instance (the labels of the lines, the answer document, the gold function), only about what
is in its prompt. So the oracle scoring 100 shows the golds are right and reachable through the
harness; a real sub-model replacing it is what the benchmark measures.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .. import ConfigurationError
from ..lm import ChatMessage
from ..testing import ScriptedLM
from ._instance import Instance
from ._meter import Meter, MethodResult, subcall_chars
from ._rlm_method import RLMMethod
from ._scripted import oracle_program, oracle_source

#: Characters of context per sub-call at most; less when the sub-model's window is smaller
#: (:func:`piece_chars`).
PIECE = 40_000
#: Characters a document cut into pieces repeats from one piece to the next, so a needle or a
#: definition cut by one piece is whole in the next.
OVERLAP = 1_000


def piece_chars(sub_model: str) -> int:
    """The context characters per sub-call for ``sub_model``: :data:`PIECE`, or half its
    sub-call window (what the engine refuses past) when that is smaller."""
    window = subcall_chars(sub_model)
    return max(min(PIECE, window // 2), 2 * OVERLAP)

_LABEL_PROGRAM = """
lines = [x for x in context.split("\\n") if x.startswith("Date: ")]
batches, cur, size = [], [], 0
for x in lines:
    cur.append(x)
    size += len(x)
    if size > {piece}:
        batches.append(cur)
        cur, size = [], 0
if cur:
    batches.append(cur)
prompts = [
    "Give the TREC coarse label of each line's question, one label per line, in order:\\n"
    + "\\n".join(b)
    for b in batches
]
answers = llm_query_batched(prompts)
labelled = []
for b, a in zip(batches, answers):
    labelled += [x + " || Label: " + lab for x, lab in zip(b, a.split("\\n"))]
FINAL({solver}("\\n".join(labelled), QUESTION))
"""

_PIECES_PROGRAM = """
docs = context if isinstance(context, list) else context.split("\\n### File: ")
parts = []
for d in docs:
    # a document longer than a piece (a whole S-NIAH haystack) is cut, overlapping
    parts += [d] if len(d) <= {piece} else [
        d[i:i + {piece}] for i in range(0, len(d), {piece} - {overlap})
    ]
prompts, cur = [], ""
for d in parts:
    if cur and len(cur) + len(d) > {piece}:
        prompts.append(cur)
        cur = ""
    cur += d + "\\n"
prompts.append(cur)
answers = llm_query_batched(
    ["Answer from this part of the context, or say NONE: " + QUESTION + "\\n\\n" + p
     for p in prompts]
)
found = [a for a in answers if a.strip() != "NONE"]
FINAL(found[0] if found else "NONE")
"""


def _program(task: str, question: str, piece: int = PIECE) -> str:
    if task == "oolong-labelled":
        return oracle_program(question)
    head = f"{oracle_source()}\nQUESTION = {question!r}\n"
    if task in ("oolong", "oolong-pairs"):
        solver = "solve" if task == "oolong" else "solve_pairs"
        body = _LABEL_PROGRAM.format(piece=piece, solver=solver)
    else:
        body = _PIECES_PROGRAM.format(piece=piece, overlap=OVERLAP)
    return f"```repl\n{head}{body}```"


#: Why the oracle is N/A on a real data set (an instance with a ``source``).
REAL_DATA = (
    "the oracle reads a generated instance's hidden truth; a real data set has none (N/A)"
)


def _prompt(messages: list[ChatMessage]) -> str:
    return messages[-1]["content"] if messages else ""


def truth(inst: Instance) -> Callable[[str], str]:
    """The sub-model's answer to a sub-call prompt, from ``inst``'s hidden truth. Raises
    :class:`ConfigurationError` for an instance that was not generated (no hidden truth)."""
    meta = inst.meta
    if "source" in meta:
        raise ConfigurationError(REAL_DATA)
    if inst.task in ("oolong", "oolong-pairs") and "window" in meta:
        from . import _oolong, _pairs

        records = _oolong.records_of(inst) if inst.task == "oolong" else _pairs.records_of(inst)
        labels = {r.line(): r.label for r in records}

        def label(prompt: str) -> str:
            return "\n".join(labels.get(x, "unknown") for x in prompt.split("\n")[1:])

        return label
    if inst.task == "sniah":
        value = str(inst.gold)
        return lambda prompt: value if value in prompt.split("\n\n", 1)[-1] else "NONE"
    if inst.task == "browsecomp" and meta.get("gold_docids"):
        answer_doc = f"docid: {meta['gold_docids'][-1]}\n"
        name = str(inst.gold[0])
        return lambda prompt: f"Exact Answer: {name}" if answer_doc in prompt else "NONE"
    if inst.task == "codeqa" and "choices" in meta:
        m = re.match(r"`(\w+)` in `([^`]+)`", str(meta["choices"][inst.gold]))
        if m:
            where = f"def {m.group(1)}("
            return lambda prompt: f"Answer: {inst.gold}" if where in prompt else "NONE"
    raise ConfigurationError(
        f"the oracle needs a generated {inst.task} instance (its hidden truth); "
        "it does not run on real data sets"
    )


@dataclass
class Oracle:
    """The ``oracle`` method for ``task`` (see the module docstring). Costs nothing."""

    task: str
    sandbox: str = "auto"
    name: str = "oracle"
    #: The scripted sub-model's name, which sets its window (a real model's name gives that
    #: model's window).
    sub_model: str = "scripted/oracle-sub"

    async def run(
        self, question: str, context: str | list[str], meter: Meter | None = None
    ) -> MethodResult:
        raise ConfigurationError("the oracle runs on an instance: use run_instance(inst)")

    def not_applicable(self, inst: Instance) -> str | None:
        return REAL_DATA if "source" in inst.meta else None

    async def run_instance(self, inst: Instance, meter: Meter | None = None) -> MethodResult:
        answer = truth(inst) if self.task != "oolong-labelled" else (lambda p: "NONE")
        sub = ScriptedLM(lambda messages: answer(_prompt(messages)), model=self.sub_model)
        program = _program(self.task, inst.query, piece_chars(sub.model))
        root = ScriptedLM(lambda messages: program, model="scripted/oracle")
        method = RLMMethod(root, sub, sandbox=self.sandbox, name=self.name)
        return await method.run(inst.query, inst.context, meter)
