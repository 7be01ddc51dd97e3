"""OOLONG's official scoring (abertsch72/oolong ``synth_process_response``), restated.

1. Parse: the text after the last ``:`` with ``*``, ``[`` and ``]`` removed; with no ``:``, the
   whole output if shorter than 20 characters, else its last word. A long parsed answer that
   mentions "more common" / "less common" / "same frequency" is reduced to that phrase.
2. Exact string match with the gold scores 1.
3. A comparison phrase scores 1 if it is a substring of the gold.
4. NUMERIC: ``0.75 ** |gold - pred|`` when the parsed answer is an integer.
5. DATE: the parsed answer, read by ``dateutil``, equals the gold date.
6. Anything else scores 0.

Chosen over the RLM repo's more lenient ``_synth_score`` (spec §3). Extension (ours): ``MONTH``
golds ("March 2023") also accept any date string of that year and month.
"""

from __future__ import annotations

from datetime import date, datetime

_PHRASES = ("more common", "less common", "same frequency")


def parse_answer(output: str) -> str:
    """The official candidate extraction (step 1 above)."""
    if ":" not in output:
        return output if len(output) < 20 else (output.split() or [""])[-1]
    cand = output.split(":")[-1].strip().replace("*", "").replace("[", "").replace("]", "")
    if len(cand) >= 20:
        for phrase in _PHRASES:
            if phrase in cand:
                return phrase
    return cand


def _parse_date(text: str) -> date | None:
    try:
        from dateutil import parser  # type: ignore[import-untyped, unused-ignore]
    except ModuleNotFoundError:  # pragma: no cover - dateutil ships with matplotlib
        for fmt in ("%b %d, %Y", "%Y-%m-%d", "%B %d, %Y", "%B %Y", "%b %Y"):
            try:
                return datetime.strptime(text.strip(), fmt).date()
            except ValueError:
                continue
        return None
    try:
        parsed: datetime = parser.parse(text, default=datetime(2000, 1, 1))
        return parsed.date()
    except (ValueError, OverflowError):
        return None


def score_answer(output: str, gold: object, answer_type: str) -> float:
    """Score ``output`` against ``gold`` (str or int) of ``answer_type`` in [0, 1]."""
    cand = parse_answer(output)
    if cand == str(gold):
        return 1.0
    if cand in _PHRASES:
        return 1.0 if cand in str(gold) else 0.0
    if answer_type == "NUMERIC":
        try:
            return float(0.75 ** abs(int(str(gold)) - int(cand)))
        except ValueError:
            return 0.0
    if answer_type == "DATE":
        got = _parse_date(cand)
        return 1.0 if got is not None and got.isoformat() == str(gold) else 0.0
    if answer_type == "MONTH":
        got, want = _parse_date(cand), _parse_date(str(gold))
        return 1.0 if got and want and (got.year, got.month) == (want.year, want.month) else 0.0
    return 0.0
