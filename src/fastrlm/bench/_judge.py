"""BrowseComp-Plus's LLM judge: its official grader prompt, read from the user's copy of the
benchmark, and a reader of the judge's reply that behaves as the official one does.

The prompt must be the official text for a judged score to mean what the paper's means, and
fastrlm does not ship another project's text: :func:`load_grader_template` reads it at run time
from a clone of ``github.com/texttron/BrowseComp-Plus`` (the ``GRADER_TEMPLATE`` string of
``scripts_evaluation/evaluate_run.py`` or ``search_agent/prompts.py``, taken from the file's
syntax tree, never executed) or from a plain text file holding the template.

:func:`parse_judgement` reads a reply field by field as BrowseComp-Plus's ``parse_judge_response``
does (restated, not copied): for each field it tries three spellings in order, ``**name:**``,
``**name**:`` and ``name:``, each anywhere in the reply, case-insensitively, and takes the first
match of the first spelling that matches. So ``correct: nope`` is a "no" (its first two letters),
``correct: **yes**`` has no verdict, and a ``correct: yes`` inside the reasoning wins over a later
``correct: no`` line: exactly as the official grader counts them. A reply without a verdict is
a parse error, graded not correct (as the official accuracy counts it).
"""

from __future__ import annotations

import ast
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from .. import ConfigurationError

#: Where the template lives in a clone of the benchmark, in the order tried.
TEMPLATE_FILES = ("scripts_evaluation/evaluate_run.py", "search_agent/prompts.py")
#: The placeholders the official template fills.
PLACEHOLDERS = ("{question}", "{response}", "{correct_answer}")
#: The environment variable naming the template (a clone, a ``.py`` file or a text file).
TEMPLATE_ENV = "FASTRLM_JUDGE_TEMPLATE"
#: The largest template file read.
MAX_TEMPLATE_FILE_BYTES = 4 * 2**20

_HOW = (
    "clone https://github.com/texttron/BrowseComp-Plus and pass --judge-template with the clone's "
    f"path (or set {TEMPLATE_ENV}); a .py file defining GRADER_TEMPLATE or a text file holding "
    "the template also works"
)


def _read(path: Path) -> str:
    if not path.is_file():
        raise ConfigurationError(f"judge template {path} is not a file; {_HOW}")
    size = path.stat().st_size
    if size > MAX_TEMPLATE_FILE_BYTES:
        raise ConfigurationError(
            f"judge template file {path} is {size:,} bytes, over the {MAX_TEMPLATE_FILE_BYTES:,} "
            f"read; {_HOW}"
        )
    return path.read_text(encoding="utf-8")


def _string_value(node: ast.expr) -> str | None:
    """A string literal, or a string literal's ``.strip()``: the forms the template takes."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "strip"
        and not node.args
        and not node.keywords
    ):
        inner = _string_value(node.func.value)
        return inner.strip() if inner is not None else None
    return None


def template_from_source(source: str, where: str) -> str | None:
    """The ``GRADER_TEMPLATE`` string assigned at the top level of Python ``source``, or None
    when it assigns none. Raises :class:`ConfigurationError` when ``source`` does not parse."""
    try:
        with warnings.catch_warnings():
            # the official file writes "\%" in a plain string: a warning, not an error
            warnings.simplefilter("ignore", SyntaxWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            tree = ast.parse(source, filename=where)
    except SyntaxError as exc:
        raise ConfigurationError(f"{where} is not Python that parses: {exc}; {_HOW}") from exc
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "GRADER_TEMPLATE" for t in node.targets
        ):
            return _string_value(node.value)
    return None


def load_grader_template(path: str | Path | None = None) -> str:
    """The official BrowseComp-Plus grader prompt from ``path`` (or :data:`TEMPLATE_ENV`): a
    clone of the benchmark, a ``.py`` file assigning ``GRADER_TEMPLATE`` or a text file. Raises
    :class:`ConfigurationError`, saying how to get it, when it is absent or lacks the
    ``{question}``, ``{response}`` and ``{correct_answer}`` placeholders."""
    given = path if path is not None else os.environ.get(TEMPLATE_ENV)
    if not given:
        raise ConfigurationError(
            f"--judge needs BrowseComp-Plus's official grader prompt, which fastrlm does not "
            f"ship; {_HOW}"
        )
    where = Path(given).expanduser()
    if where.is_dir():
        candidates = [where / name for name in TEMPLATE_FILES if (where / name).is_file()]
        if not candidates:
            raise ConfigurationError(
                f"{where} has none of {', '.join(TEMPLATE_FILES)}: is it a BrowseComp-Plus "
                f"clone? {_HOW}"
            )
        where = candidates[0]
    text = _read(where)
    template = template_from_source(text, str(where)) if where.suffix == ".py" else text
    if template is None:
        raise ConfigurationError(f"{where} assigns no GRADER_TEMPLATE string; {_HOW}")
    missing = [p for p in PLACEHOLDERS if p not in template]
    if missing:
        raise ConfigurationError(
            f"the judge template from {where} lacks {', '.join(missing)}: not BrowseComp-Plus's "
            f"grader prompt; {_HOW}"
        )
    return template


def judge_prompt(template: str, question: str, response: str, correct_answer: str) -> str:
    """The message for the judge: ``template`` filled as the official grader fills it."""
    return template.format(question=question, response=response, correct_answer=correct_answer)


@dataclass(frozen=True, slots=True)
class Judgement:
    """A judge's reply read as the official grader reads it. ``correct`` is None when the reply
    has no verdict (``parse_error``), which the official accuracy counts as not correct."""

    correct: bool | None
    extracted: str | None
    confidence: float | None
    reasoning: str | None = None

    @property
    def parse_error(self) -> bool:
        return self.correct is None


def _spellings(name: str) -> tuple[str, str, str]:
    """The field's three spellings, in the order the official grader tries them."""
    return (rf"\*\*{name}:\*\*", rf"\*\*{name}\*\*:", rf"{name}:")


def _first(name: str, value: str, reply: str, flags: int = 0) -> re.Match[str] | None:
    for label in _spellings(name):
        found = re.search(label + value, reply, re.IGNORECASE | flags)
        if found:
            return found
    return None


#: What ends the reasoning field: the next verdict line in any of its spellings.
_REASONING_END = r"(?=\n\*\*correct:\*\*|\n\*\*correct\*\*:|\ncorrect:|$)"


def parse_judgement(reply: str) -> Judgement:
    """Read ``reply`` as BrowseComp-Plus's ``parse_judge_response`` does (see the module
    docstring). A confidence above 100 is capped at 100."""
    if not reply:
        return Judgement(None, None, None)
    verdict = _first("correct", r"\s*(yes|no)", reply)
    extracted = _first("extracted_final_answer", r"\s*(.*?)(?=\n|$)", reply, re.DOTALL)
    conf = _first("confidence", r"\s*(\d+(?:\.\d+)?)\s*%?", reply)
    # the plain spelling of the reasoning ends only at a plain verdict line
    reasoning = None
    for label, end in zip(_spellings("reasoning"),
                          (_REASONING_END, _REASONING_END, r"(?=\ncorrect:|$)"), strict=True):
        found = re.search(label + r"\s*(.*?)" + end, reply, re.IGNORECASE | re.DOTALL)
        if found:
            reasoning = found.group(1).strip()
            break
    return Judgement(
        correct=verdict.group(1).lower() == "yes" if verdict else None,
        extracted=extracted.group(1).strip() if extracted else None,
        confidence=min(float(conf.group(1)), 100.0) if conf else None,
        reasoning=reasoning,
    )
