"""Pure functions that read model replies and shape what the model is shown. No I/O."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from ..sandbox import answer_json

CODE_LANGS = frozenset({"repl", "python", "py", "python3"})
_OPEN = re.compile(r"^( {0,3})(`{3,}|~{3,})[ \t]*([A-Za-z0-9_+-]*)[^\n`]*$")
_FINAL_LINE = re.compile(r"^\s*(FINAL_VAR|FINAL)\((.*)\)\s*$")
_FINAL_CALL = re.compile(r"\bFINAL(?:_VAR)?\s*\(")

#: The deepest nesting of brackets a model-made value (an answer's JSON, a prose FINAL's
#: literal) may have before it is parsed: parsers and validators recurse once per level.
MAX_VALUE_DEPTH = 64
_STRINGS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|\'[^\'\\]*(?:\\.[^\'\\]*)*\'', re.S)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
_NOT_BRACKETS_OR_PARENS = re.compile(r"[^\[\]{}()]+")
_ONE_KIND = str.maketrans("[{]}", "(())")


@dataclass(frozen=True, slots=True)
class Reply:
    """A root reply split into the code blocks to run and what else it said."""

    blocks: tuple[str, ...]
    prose: str
    other_fences: int  # fenced blocks in another language (not run)


def _closing_candidates(lines: list[str], start: int, fence: str) -> list[int]:
    char, size = fence[0], len(fence)
    found = []
    for i in range(start, len(lines)):
        stripped = lines[i].strip()
        if stripped and set(stripped) == {char} and len(stripped) >= size:
            found.append(i)
    return found


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except SyntaxError:
        return False
    return True


def extract_code_blocks(text: str) -> Reply:
    """Find the ```repl / ```python / ```py blocks of a reply, in order.

    A closing fence is a line holding only the fence characters (at least as many as the
    opening). When several candidate closing lines exist, the first one at which the block parses
    as Python wins, so a line of ``` inside a string literal does not end the block early.
    """
    lines = text.split("\n")
    blocks: list[str] = []
    prose: list[str] = []
    other = 0
    i = 0
    while i < len(lines):
        match = _OPEN.match(lines[i])
        if not match:
            prose.append(lines[i])
            i += 1
            continue
        fence, lang = match.group(2), match.group(3).lower()
        candidates = _closing_candidates(lines, i + 1, fence)
        if not candidates:
            end = len(lines)
        else:
            end = candidates[0]
            if lang in CODE_LANGS and len(candidates) > 1:  # one closing line: no choice
                for c in candidates:
                    if _parses("\n".join(lines[i + 1 : c])):
                        end = c
                        break
        body = "\n".join(lines[i + 1 : end]).rstrip("\n")
        if lang in CODE_LANGS:
            if body.strip():
                blocks.append(body)
        else:
            other += 1
            prose.extend(lines[i : end + 1])
        i = end + 1
    return Reply(tuple(blocks), "\n".join(prose).strip(), other)


@dataclass(frozen=True, slots=True)
class ProseFinal:
    """A FINAL(...) or FINAL_VAR(...) found on a line of its own in prose."""

    kind: str  # "FINAL" | "FINAL_VAR"
    argument: str


def find_prose_final(prose: str) -> ProseFinal | None:
    """The strict fallback: ``FINAL(...)``/``FINAL_VAR(...)`` alone on a line, outside code.

    The argument runs to the last ``)`` of that line, so nested parentheses survive. A mention
    inside a sentence ("I will call FINAL(x) later") does not count. The last such line wins.
    """
    found: ProseFinal | None = None
    for line in prose.split("\n"):
        match = _FINAL_LINE.match(line)
        if match:
            found = ProseFinal(match.group(1), match.group(2).strip())
    return found


_PLAN = re.compile(
    r"(?:(?:ok(?:ay)?|now|next|first|so|then|alright)\s*[,.:!]?\s+)*"
    r"(?:i\s+will|i'll|i\s+am\s+going\s+to|i'm\s+going\s+to|let\s+me|let's|we\s+will|"
    r"we'll|i\s+need\s+to|i\s+should)\b",
    re.IGNORECASE,
)
PLAN_MAX_CHARS = 300


def looks_like_plan(answer: str) -> bool:
    """True when a delivered answer is only a statement of what the model will do next ("I will
    now ...", "Let me ...", "Next, I will ..."): short, and opening with such a phrase."""
    text = answer.strip()
    return 0 < len(text) <= PLAN_MAX_CHARS and _PLAN.match(text) is not None


def without_final_calls(prose: str) -> str:
    """``prose`` less every line that holds a ``FINAL(``/``FINAL_VAR(`` call: such a line is an
    expression to evaluate, never an answer in itself; the rest of the prose is kept."""
    kept = [line for line in prose.split("\n") if _FINAL_CALL.search(line) is None]
    return "\n".join(kept).strip()


def nests_deeper(text: str, limit: int, *, parens: bool = False) -> bool:
    """Whether the ``[]``/``{}`` of ``text`` (JSON; with ``parens``, a Python literal, ``()``
    too) nest more than ``limit`` deep, brackets inside quoted strings not counted (an unclosed
    one counts as a level, as a parser goes into it). Without recursion and in C-speed passes
    over the text (one per level up to ``limit``), so any text is measured safely before a
    recursive parser sees it."""
    kept = _NOT_BRACKETS_OR_PARENS if parens else _NOT_BRACKETS
    brackets = kept.sub("", _STRINGS.sub("", text)).translate(_ONE_KIND)
    for passes in range(limit + 1):
        if "(" not in brackets:
            return False
        shorter = brackets.replace("()", "")  # each pass takes away the innermost level
        if shorter == brackets:  # only unmatched brackets are left: each open one is a level
            return passes + shorter.count("(") > limit
        brackets = shorter
    return True


def unquote_literal(argument: str) -> str:
    """The answer a prose ``FINAL(argument)`` delivers, as the same call in a code block would:
    a str literal is its text, a dict or list literal its JSON, another literal its ``str``; an
    argument that is not a literal (or nests deeper than :data:`MAX_VALUE_DEPTH`) is the text
    verbatim."""
    if nests_deeper(argument, MAX_VALUE_DEPTH, parens=True):
        return argument
    try:
        value = ast.literal_eval(argument)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return argument
    value = answer_json(value)
    return value if isinstance(value, str) else str(value)


def truncate_output(text: str, limit: int) -> str:
    """Keep the head and the tail of ``text`` within ``limit`` characters and say how long it was.

    Output within the limit comes back unchanged.
    """
    if len(text) <= limit:
        return text
    marker = (
        f"\n[... {len(text) - limit:,} characters omitted; "
        f"the output was {len(text):,} characters in all ...]\n"
    )
    keep = max(limit - len(marker), 0)
    head = keep // 2
    tail = keep - head
    return text[:head] + marker + (text[-tail:] if tail else "")


