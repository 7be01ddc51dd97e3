"""OOLONG's official scoring (abertsch72/oolong ``synth_process_response``), restated.

1. Parse: the text after the last ``:`` with ``*``, ``[`` and ``]`` removed; with no ``:``, the
   whole output if shorter than 20 characters, else its last word. A long parsed answer that
   mentions "more common" / "less common" / "same frequency" is reduced to that phrase.
2. Exact string match with the gold scores 1.
3. A comparison phrase scores 1 if it is a substring of the gold.
4. NUMERIC: ``0.75 ** |gold - pred|`` when the parsed answer is an integer.
5. DATE: the parsed answer, read by ``dateutil``, equals the gold. The official code compares
   ``dateutil.parser.parse(answer)`` with the gold ``datetime`` at midnight, so a time of day
   (``2023-01-05T10``) makes an answer wrong. It fills missing parts from today's date; here a
   date with a missing year, month or day scores 0 instead, so a score never depends on the day
   it was computed.
6. Anything else scores 0.

Chosen over the RLM repo's more lenient ``_synth_score`` (spec §3). Extension (ours): ``MONTH``
golds ("March 2023") also accept any date string of that year and month.
"""

from __future__ import annotations

from datetime import datetime

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


_DEFAULTS = (datetime(2000, 1, 1), datetime(2001, 2, 2))


_FULL_DATE_FORMATS = ("%b %d, %Y", "%Y-%m-%d", "%B %d, %Y", "%d %B %Y", "%d %b %Y")
_MONTH_FORMATS = ("%B %Y", "%b %Y", "%Y-%m", "%b %d, %Y", "%Y-%m-%d")


def _parse_stated(text: str, parts: int, formats: tuple[str, ...]) -> datetime | None:
    """``text`` as a datetime when it states the first ``parts`` of (year, month, day), else
    None: parsed twice with different defaults, a part the text does not state comes out
    differently. Without dateutil, only ``formats`` are tried."""
    try:
        from dateutil import parser  # type: ignore[import-untyped, unused-ignore]
    except ModuleNotFoundError:  # pragma: no cover - dateutil ships with matplotlib
        for fmt in formats:
            try:
                return datetime.strptime(text.strip(), fmt)
            except ValueError:
                continue
        return None
    try:
        first, second = (parser.parse(text, default=d) for d in _DEFAULTS)
    except (ValueError, OverflowError):
        return None
    stated = (first.year, first.month, first.day)[:parts]
    if stated != (second.year, second.month, second.day)[:parts]:
        return None
    parsed: datetime = first
    return parsed


def _parse_datetime(text: str) -> datetime | None:
    """``text`` as a datetime when it states a full date (year, month and day), else None."""
    return _parse_stated(text, 3, _FULL_DATE_FORMATS)


def _parse_month(text: str) -> tuple[int, int] | None:
    """``(year, month)`` when ``text`` states both, else None."""
    parsed = _parse_stated(text, 2, _MONTH_FORMATS)
    return None if parsed is None else (parsed.year, parsed.month)


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
        got, want = _parse_datetime(cand), _parse_datetime(str(gold))
        return 1.0 if got is not None and got == want else 0.0
    if answer_type == "MONTH":
        got_month, want_month = _parse_month(cand), _parse_month(str(gold))
        return 1.0 if got_month is not None and got_month == want_month else 0.0
    return 0.0
