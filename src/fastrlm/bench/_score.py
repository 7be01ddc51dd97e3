"""The scorers of the five tasks, each restated from its benchmark's own definition.

Pure functions of a model's output text; the task modules wrap them into ``score(pred, inst)``.

- S-NIAH, :func:`string_match_all` (RULER ``scripts/eval/synthetic/constants.py``): the share of
  reference strings found, case-insensitively, in the prediction after RULER's post-processing
  (control characters become newlines, outer whitespace is stripped).
- OOLONG: :mod:`fastrlm.bench._oolong_score` (``synth_process_response`` of abertsch72/oolong).
- OOLONG-Pairs, :func:`parse_pairs` and :func:`pair_f1`: set F1 over unordered ID pairs (the
  paper reports F1 and gives no formula; both sets empty is a perfect 1.0).
- BrowseComp-Plus, :func:`extract_answer` and :func:`normalize`: the ``Exact Answer:`` field of
  the required response format (any case, markdown emphasis allowed), compared by normalised
  exact match with the gold and its aliases. The official metric is an LLM judge:
  :mod:`fastrlm.bench._judge` (the official prompt, read from the user's copy, and its reply
  parsing).
- CodeQA (LongBench-v2), :func:`parse_choice`: LongBench's ``The correct answer is (X)`` first,
  then every common way of stating one of four options, as a letter A-D or an index 0-3.
"""

from __future__ import annotations

import re
import string
import unicodedata

# ---------------------------------------------------------------- error answers

#: ``[error: <kind>: ...]``, the text a failed or refused call leaves in place of an answer
#: (:mod:`fastrlm._foundation.error_text`).
_ERROR_ANSWER = re.compile(r"\[error: ([a-z][a-z_]*): ")


def error_answer(pred: str) -> str | None:
    """The error kind when ``pred`` carries an ``[error: <kind>: ...]`` string (a failed call's
    text that became the final answer, whole or in part), else None. The runner scores an answer
    that *is* one as 0 and flags every answer holding one, so a failure never passes for a
    finish (an error message can contain the needle or a docid it was asked about)."""
    m = _ERROR_ANSWER.search(pred)
    return m.group(1) if m else None


def is_error_only(pred: str) -> bool:
    """Whether ``pred``, stripped, is nothing but error strings."""
    return bool(pred.strip()) and not _ERROR_ONLY_REST.sub("", pred).strip()


_ERROR_ONLY_REST = re.compile(r"\[error: [a-z][a-z_]*: .*?\](?=\s|$)", re.S)

# ---------------------------------------------------------------- S-NIAH (RULER)

_CONTROL = re.compile(r"[\x00-\x1f]")


def ruler_postprocess(pred: str) -> str:
    """RULER's prediction clean-up: strip, control characters to newlines, strip again."""
    return _CONTROL.sub("\n", pred.strip()).strip()


def string_match_all(pred: str, refs: list[str]) -> float:
    """RULER's metric for one prediction: the fraction of ``refs`` found (case-insensitively).
    No references scores 0."""
    if not refs:
        return 0.0
    low = ruler_postprocess(pred).lower()
    return sum(r.lower() in low for r in refs) / len(refs)


# ---------------------------------------------------------------- OOLONG-Pairs

_PAIR = re.compile(r"\(\s*(\d+)\s*,\s*(\d+)\s*\)")


def parse_pairs(output: str) -> set[tuple[int, int]]:
    """Every ``(a, b)`` in the output as ``(min, max)``; pairs of equal IDs are dropped and
    repeats count once."""
    out = set()
    for a, b in _PAIR.findall(output):
        x, y = int(a), int(b)
        if x != y:
            out.add((min(x, y), max(x, y)))
    return out


def pair_f1(pred: set[tuple[int, int]], gold: set[tuple[int, int]]) -> float:
    """F1 of two pair sets; 1.0 when both are empty, 0.0 when exactly one is."""
    if not pred and not gold:
        return 1.0
    hit = len(pred & gold)
    if hit == 0:
        return 0.0
    p, r = hit / len(pred), hit / len(gold)
    return 2 * p * r / (p + r)


# ---------------------------------------------------------------- BrowseComp-Plus

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation + "‘’“”–—")


def normalize(text: str) -> str:
    """Lowercase, accents folded (``é`` -> ``e``); punctuation and the articles a/an/the
    dropped; whitespace collapsed."""
    folded = unicodedata.normalize("NFKD", text)
    folded = "".join(c for c in folded if not unicodedata.combining(c))
    return " ".join(_ARTICLES.sub(" ", folded.lower().translate(_PUNCT)).split())


# "Exact Answer:" in any case, maybe in markdown emphasis or a heading, value on the same line
# or, when the line has nothing after the colon, on the next non-empty line
_EXACT = re.compile(
    r"^[ \t>#*_-]*exact[ \t]+answer[ \t*_]*:[ \t*_]*(.*?)[ \t]*$", re.IGNORECASE | re.MULTILINE
)
_FIELD = re.compile(r"^[ \t>#*_-]*(explanation|confidence)[ \t*_]*:", re.IGNORECASE)
_OTHER_ANSWER = re.compile(
    r"^[ \t>#*_-]*(?:final[ \t]+answer|answer)[ \t*_]*:[ \t*_]*(.+?)[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)


def _clean_value(value: str) -> str:
    value = value.strip().strip("*_`").strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    return value.rstrip(".").strip()


def extract_answer(output: str) -> str:
    """The answer a BrowseComp response gives: its last ``Exact Answer:`` field (any case);
    else its last ``Final Answer:`` / ``Answer:`` field; else its last line that is not an
    ``Explanation:`` or ``Confidence:`` field. Empty when there is none."""
    lines = output.splitlines()
    found = list(_EXACT.finditer(output))
    if found:
        m = found[-1]
        value = m.group(1)
        if not _clean_value(value):
            line_no = output.count("\n", 0, m.start())
            rest = [ln for ln in lines[line_no + 1 :] if ln.strip()]
            value = rest[0] if rest and not _FIELD.match(rest[0]) else ""
        return _clean_value(value)
    other = _OTHER_ANSWER.findall(output)
    if other:
        return _clean_value(other[-1])
    kept = [ln for ln in lines if ln.strip() and not _FIELD.match(ln)]
    return _clean_value(kept[-1]) if kept else ""


def exact_match(output: str, golds: list[str]) -> float:
    """1.0 when the extracted answer equals the gold or an alias after :func:`normalize`."""
    got = normalize(extract_answer(output))
    return 1.0 if got and got in {normalize(g) for g in golds} else 0.0


# ---------------------------------------------------------------- CodeQA (LongBench-v2)

_LONGBENCH = (
    re.compile(r"The correct answer is \(([A-D])\)"),
    re.compile(r"The correct answer is ([A-D])"),
)
# a choice token: an index 0-3 not part of a longer number or a decimal, or a letter A-D that is
# not the start of a word ("A" is also an article); parenthesised or bracketed forms included
_TOKEN = (
    r"(?:[(\[]\s*(?P<p>[0-3A-D])\s*[)\]]|(?<![\w.,-])(?P<b>[0-3A-D])(?![\w'-]|\.\d|,\d))"
)
_I = r"\bi(?:\s+would|\s+will|'d|'ll)?\s+(?:choose|pick|select|go\s+with)"
#: Statements of an answer, strongest first in meaning but all ranked by position (last wins).
_STATEMENTS = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        # "Answer: 2", "The answer is (B)", "Final answer - C", "answer would be option 3"
        r"\banswer(?:\s+(?:is|would\s+be|will\s+be))?\s*[:=\-]?\s*(?:option\s+|choice\s+)?"
        + _TOKEN,
        # "The correct option is C", "my choice: 1"
        r"\b(?:option|choice|selection)\s*(?:is|would\s+be|[:=])\s*" + _TOKEN,
        # "I choose option 2", "I'd pick B", "I'll go with 3"
        _I + r"\s*:?\s*(?:option\s+|choice\s+|answer\s+)?" + _TOKEN,
        # "\boxed{2}"
        r"\\boxed\{\s*" + _TOKEN + r"\s*\}",
        # "Option 2 is correct", "(B) is the right one"
        r"(?:\b(?:option|choice|answer)\s*)?" + _TOKEN + r"\s+is\s+(?:the\s+)?(?:correct|right)",
    )
)
#: Mentions of an option, used only when nothing states an answer: "Option 2."
_MENTION = re.compile(r"\b(?:option|choice)\s+(?:number\s+)?" + _TOKEN, re.IGNORECASE)
_ALONE = re.compile(
    r"(?:answer\s*:?\s*)?[(\[]?\s*([0-3A-D])\s*[)\]]?\s*[.:)]?", re.IGNORECASE
)
_STANDALONE = re.compile(r"(?<![\w.,-])([0-3])(?![\w-]|\.\d|,\d)")


def _as_index(token: str) -> int:
    return int(token) if token.isdigit() else "ABCD".index(token.upper())


def _token(m: re.Match[str]) -> str | None:
    tok = m.group("p") or m.group("b")
    if tok is None:
        return None
    # a bare "a" is the article ("the answer is a method"); so is a capital "A" followed by a
    # lowercase word ("The answer is A function that ...")
    if tok == "a" and m.group("b"):
        return None
    if tok == "A" and m.group("b"):
        after = m.string[m.end() :]
        if re.match(r"\s+[a-z]", after):
            return None
    return tok


def parse_choice(output: str) -> int | None:
    """The option (0-3) an answer picks, or ``None`` when it states none.

    In order: the whole reply is one choice (``2``, ``(B)``, ``2.``, ``Answer: C``); LongBench's
    ``The correct answer is (X)``; the last explicit statement (``Answer: 2.``, ``The answer is
    2.``, ``I choose option 2.``, ``I'll go with B``, ``Final answer: (B)``, ``\\boxed{2}``,
    ``option C is correct``); else the last mention of an option (``Option 2.``); else the last
    standalone digit 0-3 (not part of a number, a decimal or a version). Markdown ``*`` and
    backticks are ignored; letters A-D map to 0-3."""
    text = output.replace("*", "").replace("`", "").strip()
    whole = _ALONE.fullmatch(text)
    if whole and (whole.group(1).isdigit() or whole.group(1).isupper()):
        return _as_index(whole.group(1))
    for pat in _LONGBENCH:
        m = pat.search(text)
        if m:
            return _as_index(m.group(1))
    for patterns in (_STATEMENTS, (_MENTION,)):
        found: list[tuple[int, str]] = []
        for pat in patterns:
            for m in pat.finditer(text):
                tok = _token(m)
                if tok is not None:
                    found.append((m.start(), tok))
        if found:
            return _as_index(max(found)[1])
    digits = _STANDALONE.findall(text)
    return int(digits[-1]) if digits else None
