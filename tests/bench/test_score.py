"""Edge cases of every scorer, each against its benchmark's own definition (see bench/_score.py).

Each table is the kind an adversary would write: answer forms a real model produces, and forms
that look like an answer but are not.
"""

from __future__ import annotations

import pytest

from fastrlm.bench._oolong_score import parse_answer, score_answer
from fastrlm.bench._score import (
    exact_match,
    extract_answer,
    normalize,
    pair_f1,
    parse_choice,
    parse_pairs,
    string_match_all,
)

# ---------------------------------------------------------------- S-NIAH: string_match_all

SNIAH_CASES = [
    ("1234567", ["1234567"], 1.0),
    ("The special magic number is 1234567.", ["1234567"], 1.0),
    ("  1234567  ", ["1234567"], 1.0),
    ("1234567\n", ["1234567"], 1.0),
    ("number: **1234567**", ["1234567"], 1.0),
    ("12345678", ["1234567"], 1.0),  # substring match, exactly as RULER
    ("01234567", ["1234567"], 1.0),
    ("123456", ["1234567"], 0.0),
    ("1 234 567", ["1234567"], 0.0),
    ("1,234,567", ["1234567"], 0.0),
    ("1234-567", ["1234567"], 0.0),
    ("", ["1234567"], 0.0),
    ("I could not find it.", ["1234567"], 0.0),
    ("7654321", ["1234567"], 0.0),
    ("123\t4567", ["1234567"], 0.0),  # a control character becomes a newline, splitting it
    ("1234567\x00", ["1234567"], 1.0),
    ("\x07 1234567 \x07", ["1234567"], 1.0),
    ("ABC-def", ["abc-DEF"], 1.0),
    ("abc-def", ["ABC-DEF"], 1.0),
    ("ABCDEF", ["abc-def"], 0.0),
    ("a and b", ["a", "b", "c"], 2 / 3),
    ("a b c", ["a", "b", "c"], 1.0),
    ("x", ["a", "b"], 0.0),
    ("anything", [], 0.0),
    ("1234567 1234567", ["1234567"], 1.0),
    ("1234567", ["1234567", "1234567"], 1.0),
    ("1234567", ["1234567", "7654321"], 0.5),
    (
        "The uuid is 3f2b1c9e-8a7d-4e6f-9b0a-1c2d3e4f5a6b.",
        ["3f2b1c9e-8a7d-4e6f-9b0a-1c2d3e4f5a6b"],
        1.0,
    ),
    ("3F2B1C9E-8A7D-4E6F-9B0A-1C2D3E4F5A6B", ["3f2b1c9e-8a7d-4e6f-9b0a-1c2d3e4f5a6b"], 1.0),
    ("3f2b1c9e8a7d4e6f9b0a1c2d3e4f5a6b", ["3f2b1c9e-8a7d-4e6f-9b0a-1c2d3e4f5a6b"], 0.0),
    ("3f2b1c9e-8a7d-4e6f-9b0a-1c2d3e4f5a6", ["3f2b1c9e-8a7d-4e6f-9b0a-1c2d3e4f5a6b"], 0.0),
    ("{3f2b1c9e-8a7d-4e6f-9b0a-1c2d3e4f5a6b}", ["3f2b1c9e-8a7d-4e6f-9b0a-1c2d3e4f5a6b"], 1.0),
    ("FINAL(1234567)", ["1234567"], 1.0),
    ("['1234567']", ["1234567"], 1.0),
    ("Answer:1234567", ["1234567"], 1.0),
    ("1234567" * 3, ["1234567"], 1.0),
    ("١٢٣٤٥٦٧", ["1234567"], 0.0),  # other digit scripts are other characters
    ("１２３４５６７", ["1234567"], 0.0),  # full-width digits too
    ("Ünïcode 1234567", ["1234567"], 1.0),
    ("ÄBC", ["äbc"], 1.0),
    ("straße", ["STRASSE"], 0.0),  # str.lower, not casefold
    ("The key was amber-river and the value 1234567", ["1234567"], 1.0),
    ("amber-river", ["1234567"], 0.0),
    ("1234567\n2345678", ["2345678"], 1.0),
    ("\n\n\n1234567", ["1234567"], 1.0),
    ("\r\n1234567\r\n", ["1234567"], 1.0),
    ("12\r34567", ["1234567"], 0.0),
    ("The number for key is: 1234567. Also 9999999.", ["1234567"], 1.0),
    ("None", ["1234567"], 0.0),
    ("1234567", ["1234567 "], 0.0),  # the reference is used as given
    (" 1234567 ", ["1234567"], 1.0),
    ("x1234567x", ["1234567"], 1.0),
]


@pytest.mark.parametrize(("pred", "refs", "want"), SNIAH_CASES)
def test_string_match_all_is_rulers_metric(pred: str, refs: list[str], want: float) -> None:
    assert string_match_all(pred, refs) == pytest.approx(want)


def test_sniah_table_has_fifty_cases() -> None:
    assert len(SNIAH_CASES) >= 50


# ---------------------------------------------------------------- OOLONG: synth_process_response

OOLONG_CASES = [
    # numeric: exact, then 0.75 ** |delta|
    ("Answer: 10", 10, "NUMERIC", 1.0),
    ("Answer: 11", 10, "NUMERIC", 0.75),
    ("Answer: 9", 10, "NUMERIC", 0.75),
    ("Answer: 12", 10, "NUMERIC", 0.75**2),
    ("Answer: 7", 10, "NUMERIC", 0.75**3),
    ("Answer: 0", 10, "NUMERIC", 0.75**10),
    ("Answer: 110", 10, "NUMERIC", 0.75**100),
    ("Answer: -2", 2, "NUMERIC", 0.75**4),
    ("Answer: ten", 10, "NUMERIC", 0.0),
    ("Answer: 10.0", 10, "NUMERIC", 0.0),  # int() or nothing
    ("Answer: 10.5", 10, "NUMERIC", 0.0),
    ("Answer: 1,000", 1000, "NUMERIC", 0.0),
    ("Answer: **10**", 10, "NUMERIC", 1.0),
    ("Answer: [10]", 10, "NUMERIC", 1.0),
    ("Answer:    10   ", 10, "NUMERIC", 1.0),
    ("Answer: +10", 10, "NUMERIC", 1.0),
    ("The count over all lines is 10", 10, "NUMERIC", 1.0),  # no colon, long: the last word
    ("The count is 10", 10, "NUMERIC", 0.0),  # no colon, short: all of it, not an int
    ("10", 10, "NUMERIC", 1.0),
    ("about 10", 10, "NUMERIC", 0.0),  # no colon, short: the whole text, not an int
    ("Answer: 10 items", 10, "NUMERIC", 0.0),
    ("Step 1: count. Step 2: Answer: 12", 12, "NUMERIC", 1.0),  # the last colon wins
    ("Answer: 12\nConfidence: high", 12, "NUMERIC", 0.0),
    ("", 10, "NUMERIC", 0.0),
    # labels and users: exact string match, case-sensitive as in the official code
    ("Label: location", "location", "LABEL", 1.0),
    ("Label: Location", "location", "LABEL", 0.0),
    ("Label: location.", "location", "LABEL", 0.0),
    ("Answer: **location**", "location", "LABEL", 1.0),
    ("Answer: [location]", "location", "LABEL", 1.0),
    ("Label: entity", "location", "LABEL", 0.0),
    ("Answer: numeric value", "numeric value", "LABEL", 1.0),
    ("User: 12345", "12345", "USER", 1.0),
    ("User: 12345", 12345, "USER", 1.0),
    ("User: 12346", "12345", "USER", 0.0),
    ("User: user 12345", "12345", "USER", 0.0),
    # comparisons: the phrase must be in the gold
    ("Answer: more common", "more common than", "COMPARISON", 1.0),
    ("Answer: less common", "more common than", "COMPARISON", 0.0),
    ("Answer: same frequency", "same frequency as", "COMPARISON", 1.0),
    ("Answer: entity is more common than location overall", "more common than", "COMPARISON", 1.0),
    ("Answer: entity is less common than location overall", "more common than", "COMPARISON", 0.0),
    ("Answer: they appear with the same frequency here", "same frequency as", "COMPARISON", 1.0),
    ("Answer: More common", "more common than", "COMPARISON", 0.0),
    # dates: the official compares datetimes, so only a date at midnight is a date answer
    ("Date: Apr 01, 2023", "2023-04-01", "DATE", 1.0),
    ("Date: 2023-04-01", "2023-04-01", "DATE", 1.0),
    ("Answer: April 1, 2023", "2023-04-01", "DATE", 1.0),
    ("Answer: 1 April 2023", "2023-04-01", "DATE", 1.0),
    # read by dateutil (it comes with matplotlib, in the bench extra)
    pytest.param("Answer: 2023/04/01", "2023-04-01", "DATE", 1.0,
                 marks=pytest.mark.extra("bench")),
    ("Answer: Apr 02, 2023", "2023-04-01", "DATE", 0.0),
    ("Answer: 2023-01-05T10", "2023-01-05", "DATE", 0.0),
    ("Answer: 2023-01-05 10am", "2023-01-05", "DATE", 0.0),
    ("Answer: April 2023", "2023-04-01", "DATE", 0.0),  # no day stated
    ("Answer: April 1", "2023-04-01", "DATE", 0.0),  # no year stated
    ("Answer: not a date", "2023-04-01", "DATE", 0.0),
    ("Answer: 2024-04-01", "2023-04-01", "DATE", 0.0),
    # months (fastrlm's MONTH golds)
    ("Answer: March 2023", "March 2023", "MONTH", 1.0),
    ("Answer: Mar 2023", "March 2023", "MONTH", 1.0),
    ("Answer: 2023-03", "March 2023", "MONTH", 1.0),
    ("Answer: April 2023", "March 2023", "MONTH", 0.0),
    ("Answer: March", "March 2023", "MONTH", 0.0),
    ("Answer: 2023", "March 2023", "MONTH", 0.0),
    ("Answer: March 2024", "March 2023", "MONTH", 0.0),
]


@pytest.mark.parametrize(("output", "gold", "kind", "want"), OOLONG_CASES)
def test_oolong_score(output: str, gold: object, kind: str, want: float) -> None:
    assert score_answer(output, gold, kind) == pytest.approx(want)


def test_oolong_table_has_fifty_cases() -> None:
    assert len(OOLONG_CASES) >= 50


@pytest.mark.parametrize(
    ("output", "cand"),
    [
        ("Reasoning... Answer: **[42]**", "42"),
        ("short", "short"),
        ("no colon here and quite a long sentence 17", "17"),
        ("x" * 30, "x" * 30),
        ("Answer: " + "entity is more common than location by a lot", "more common"),
        ("a:b:c", "c"),
    ],
)
def test_oolong_parse(output: str, cand: str) -> None:
    assert parse_answer(output) == cand


# ---------------------------------------------------------------- OOLONG-Pairs: set F1

P = set[tuple[int, int]]

PARSE_CASES: list[tuple[str, P]] = [
    ("(1, 2)", {(1, 2)}),
    ("(2, 1)", {(1, 2)}),
    ("(1,2)\n(3,4)", {(1, 2), (3, 4)}),
    ("( 1 , 2 )", {(1, 2)}),
    ("(1, 2), (1, 2)", {(1, 2)}),
    ("(1, 2), (2, 1)", {(1, 2)}),
    ("(5, 5)", set()),
    ("[]", set()),
    ("", set()),
    ("no pairs", set()),
    ("[(10, 20), (30, 40)]", {(10, 20), (30, 40)}),
    ("(10, 20, 30)", set()),
    ("(a, b)", set()),
    ("(1; 2)", set()),
    ("(-1, 2)", set()),
    ("(1.5, 2)", set()),
    ("(12345, 67890)\n(67890, 12345)", {(12345, 67890)}),
    ("(001, 2)", {(1, 2)}),
    ("((1, 2))", {(1, 2)}),
    ("(1,\n2)", {(1, 2)}),
]


@pytest.mark.parametrize(("text", "pairs"), PARSE_CASES)
def test_parse_pairs(text: str, pairs: P) -> None:
    assert parse_pairs(text) == pairs


F1_CASES: list[tuple[P, P, float]] = [
    (set(), set(), 1.0),
    ({(1, 2)}, set(), 0.0),
    (set(), {(1, 2)}, 0.0),
    ({(1, 2)}, {(1, 2)}, 1.0),
    ({(1, 2)}, {(3, 4)}, 0.0),
    ({(1, 2), (3, 4)}, {(1, 2)}, 2 / 3),
    ({(1, 2)}, {(1, 2), (3, 4)}, 2 / 3),
    ({(1, 2), (3, 4)}, {(1, 2), (5, 6)}, 0.5),
    ({(1, 2), (3, 4), (5, 6)}, {(1, 2), (3, 4), (5, 6)}, 1.0),
    ({(1, 2), (3, 4), (5, 6), (7, 8)}, {(1, 2)}, 0.4),
    ({(1, 2)}, {(1, 2), (3, 4), (5, 6), (7, 8)}, 0.4),
    ({(i, i + 1) for i in range(100)}, {(i, i + 1) for i in range(50)}, 2 / 3),
    ({(i, i + 1) for i in range(10)}, {(i, i + 1) for i in range(5, 15)}, 0.5),
    ({(1, 2), (2, 3)}, {(2, 3), (3, 4)}, 0.5),
    ({(1, 3)}, {(1, 2)}, 0.0),
]


@pytest.mark.parametrize(("pred", "gold", "f1"), F1_CASES)
def test_pair_f1(pred: P, gold: P, f1: float) -> None:
    assert pair_f1(pred, gold) == pytest.approx(f1)


PAIRS_E2E: list[tuple[str, P, float]] = [
        ("(2, 1)\n(4, 3)", {(1, 2), (3, 4)}, 1.0),
        ("[]", set(), 1.0),
        ("There are no such pairs.", set(), 1.0),
        ("(1, 1)", set(), 1.0),  # a self-pair is not a pair
        ("(1, 2)\n(1, 2)\n(1, 2)", {(1, 2), (3, 4)}, 2 / 3),  # repeats do not add recall
        ("(1, 2)", {(1, 2), (3, 4)}, 2 / 3),
        ("(1, 2) (3, 4) (5, 6)", {(1, 2)}, 0.5),
        ("users 1 and 2", {(1, 2)}, 0.0),
        ("(1, 2, 3)", {(1, 2)}, 0.0),
        ("FINAL([(1, 2), (3, 4)])", {(1, 2), (3, 4)}, 1.0),
        ("(1, 2)\n" * 1000, {(1, 2)}, 1.0),
        ("(3, 4)", set(), 0.0),
        ("pairs: (10000, 99999)", {(10000, 99999)}, 1.0),
        ("(99999, 10000)", {(10000, 99999)}, 1.0),
        ("(10000 , 99999)", {(10000, 99999)}, 1.0),
        ("(10000,99999)", {(10000, 99999)}, 1.0),
        ("10000, 99999", {(10000, 99999)}, 0.0),
]


@pytest.mark.parametrize(("text", "gold", "f1"), PAIRS_E2E)
def test_pairs_end_to_end(text: str, gold: P, f1: float) -> None:
    assert pair_f1(parse_pairs(text), gold) == pytest.approx(f1)


def test_pairs_tables_have_fifty_cases() -> None:
    assert len(PARSE_CASES) + len(F1_CASES) + len(PAIRS_E2E) >= 50


# ---------------------------------------------------------------- BrowseComp-Plus

EXTRACT_CASES = [
    ("Explanation: x\nExact Answer: Quiet Harbor\nConfidence: 80%", "Quiet Harbor"),
    ("Exact answer: Quiet Harbor\nConfidence: 50%", "Quiet Harbor"),
    ("EXACT ANSWER: Quiet Harbor\nConfidence: 50%", "Quiet Harbor"),
    ("exact answer: Quiet Harbor", "Quiet Harbor"),
    ("**Exact Answer:** Quiet Harbor", "Quiet Harbor"),
    ("**Exact Answer**: Quiet Harbor", "Quiet Harbor"),
    ("Exact Answer: **Quiet Harbor**", "Quiet Harbor"),
    ("- Exact Answer: Quiet Harbor", "Quiet Harbor"),
    ("## Exact Answer: Quiet Harbor", "Quiet Harbor"),
    ("> Exact Answer: Quiet Harbor", "Quiet Harbor"),
    ("Exact  Answer :Quiet Harbor", "Quiet Harbor"),
    ("Exact Answer: Quiet Harbor.", "Quiet Harbor"),
    ('Exact Answer: "Quiet Harbor"', "Quiet Harbor"),
    ("Exact Answer: 'Quiet Harbor'", "Quiet Harbor"),
    ("Exact Answer: `Quiet Harbor`", "Quiet Harbor"),
    ("Exact Answer:\nQuiet Harbor\nConfidence: 40%", "Quiet Harbor"),
    ("Exact Answer:\n\nQuiet Harbor", "Quiet Harbor"),
    ("Exact Answer:\nConfidence: 40%", ""),
    ("Exact Answer: A\nExact Answer: B", "B"),
    ("Explanation: the Exact Answer: is below\nExact Answer: B", "B"),
    ("Explanation: long\nConfidence: 50%", ""),
    ("Confidence: 50%", ""),
    ("Quiet Harbor\nConfidence: 50%", "Quiet Harbor"),
    ("Explanation: long text\nQuiet Harbor\nConfidence: 50%", "Quiet Harbor"),
    ("Final Answer: Quiet Harbor\nConfidence: 50%", "Quiet Harbor"),
    ("Answer: Quiet Harbor", "Quiet Harbor"),
    ("blah\nQuiet Harbor", "Quiet Harbor"),
    ("Quiet Harbor", "Quiet Harbor"),
    ("", ""),
    ("\n\n  \n", ""),
    ("Exact Answer: 1987", "1987"),
    ("Exact Answer: 3.5 km", "3.5 km"),
    ("Exact Answer: Dr. Jane Roe", "Dr. Jane Roe"),
    ("Exact Answer: Quiet Harbor   \nConfidence: 50%", "Quiet Harbor"),
    ("Explanation: It is Foo.\nExact Answer: Bar\nConfidence: 10%", "Bar"),
    ("Exact Answer: Jean-Luc Picard", "Jean-Luc Picard"),
    ("Exact Answer: Zoë Müller", "Zoë Müller"),
    ("Exact Answer: 1,200", "1,200"),
]


@pytest.mark.parametrize(("text", "want"), EXTRACT_CASES)
def test_extract_answer(text: str, want: str) -> None:
    assert extract_answer(text) == want


MATCH_CASES: list[tuple[str, list[str], float]] = [
    ("Exact Answer: Quiet Harbor", ["Quiet Harbor"], 1.0),
    ("Exact Answer: quiet harbor", ["Quiet Harbor"], 1.0),
    ("Exact Answer: QUIET HARBOR", ["Quiet Harbor"], 1.0),
    ("Exact Answer: The Quiet Harbor", ["Quiet Harbor"], 1.0),
    ("Exact Answer: Quiet-Harbor", ["Quiet Harbor"], 0.0),  # punctuation is deleted, not spaced
    ("Exact Answer: Quiet Harbor Company", ["Quiet Harbor"], 0.0),
    ("Exact Answer: Harbor", ["Quiet Harbor"], 0.0),
    ("Exact Answer: Q. Harbor", ["Quiet Harbor", "Q. Harbor"], 1.0),
    ("Exact Answer: Zoe Muller", ["Zoë Müller"], 1.0),
    ("Exact Answer: Zoë Müller", ["Zoe Muller"], 1.0),
    ("Exact Answer: None", ["Quiet Harbor"], 0.0),
    ("Exact Answer:", ["Quiet Harbor"], 0.0),
    ("Confidence: 100%", ["100"], 0.0),  # the confidence line is never the answer
    ("Exact Answer: Quiet Harbor\nConfidence: 50%", ["Quiet Harbor"], 1.0),
    ("Exact answer: Quiet Harbor\nConfidence: 50%", ["Quiet Harbor"], 1.0),
    ("Quiet Harbor\nConfidence: 50%", ["Quiet Harbor"], 1.0),
    ("Exact Answer: 1987.", ["1987"], 1.0),
    ("Exact Answer: 1988", ["1987"], 0.0),
    ("", ["Quiet Harbor"], 0.0),
    ("Exact Answer: “Quiet Harbor”", ["Quiet Harbor"], 1.0),
]


@pytest.mark.parametrize(("text", "golds", "want"), MATCH_CASES)
def test_exact_match(text: str, golds: list[str], want: float) -> None:
    assert exact_match(text, golds) == want


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("The  Quiet-Harbor!", "quietharbor"),
        ("An Apple a day", "apple day"),
        ("Théâtre", "theatre"),
        ("  many   spaces ", "many spaces"),
        ("Another", "another"),  # an article only as a whole word
        ("“quoted”", "quoted"),
    ],
)
def test_normalize(text: str, want: str) -> None:
    assert normalize(text) == want


def test_browsecomp_tables_have_fifty_cases() -> None:
    assert len(EXTRACT_CASES) + len(MATCH_CASES) >= 50


# ---------------------------------------------------------------- CodeQA: choice extraction

CHOICE_CASES: list[tuple[str, int | None]] = [
    # the reply is just the choice
    ("2", 2),
    ("2.", 2),
    ("(2)", 2),
    ("2)", 2),
    ("[2]", 2),
    ("B", 1),
    ("(B)", 1),
    ("B.", 1),
    ("B)", 1),
    ("**B**", 1),
    ("  3  ", 3),
    ("0", 0),
    ("Answer: C", 2),
    ("Answer 2", 2),
    # LongBench's official format
    ("The correct answer is (C)", 2),
    ("**The correct answer is D**", 3),
    ("The correct answer is (A)", 0),
    ("Reasoning... The correct answer is (B).", 1),
    # stated in words
    ("Answer: 2.", 2),
    ("Answer: 2", 2),
    ("answer: 2", 2),
    ("ANSWER: 2.", 2),
    ("Answer:2", 2),
    ("Answer: (2)", 2),
    ("Answer: [2]", 2),
    ("Final answer: 1", 1),
    ("Final Answer: (B)", 1),
    ("The answer is 2.", 2),
    ("The answer is 2", 2),
    ("the answer is (B).", 1),
    ("The answer is B.", 1),
    ("My answer is 3.", 3),
    ("The correct answer is 2.", 2),
    ("I choose option 2.", 2),
    ("I choose 2.", 2),
    ("I'd pick option B.", 1),
    ("I would go with choice 0.", 0),
    ("I will select 3.", 3),
    ("Option 2 is correct.", 2),
    ("option C is correct", 2),
    ("Choice 1.", 1),
    ("(B) is the correct option.", 1),
    ("B is correct.", 1),
    ("The answer would be 3.", 3),
    ("Answer = 1", 1),
    ("I think 1 fits.\nAnswer: 3", 3),
    ("Option 0 looked right at first.\nAnswer: 2", 2),
    ("Looking at the code, the function returns early.\nAnswer: 2.", 2),
    ("FINAL(2)", 2),
    ("2: the class Foo", 2),
    ("I'll go with 2.", 2),
    ("I'd choose B", 1),
    ("Answer: `2`", 2),
    ("The answer is `C`.", 2),
    ("Answer: Option 2", 2),
    ("The correct option is C.", 2),
    ("My choice: 1", 1),
    ("answer is: 2", 2),
    ("Answer - 3", 3),
    ("\\boxed{2}", 2),
    ("So the result is \\boxed{B}.", 1),
    ("Answer: 2. Option 1 is wrong because it loops.", 2),  # a statement beats a mention
    ("Answer: 2. Note that the loop starts at index 0.", 2),
    ("Option 3.", 3),  # only a mention: it stands
    ("Options 0 and 1 are wrong; the answer is 3.", 3),
    ("The answer depends on B's value; answer: D", 3),
    # the last standalone index
    ("It must be 1.", 1),
    ("Between 0 and 3, I think 1.", 1),
    # nothing, or something that is not an option
    ("no idea", None),
    ("", None),
    ("Answer: 12", None),
    ("Answer: 4", None),
    ("1.5 or so", None),
    ("Python 3.11", None),
    ("version 2.0", None),
    ("The answer is a function that loops.", None),
    ("The answer is A function that loops.", None),
    ("Answer: E", None),
    ("42", None),
    ("10 files", None),
    ("-1", None),
    ("2-3", None),
]


@pytest.mark.parametrize(("text", "choice"), CHOICE_CASES)
def test_parse_choice(text: str, choice: int | None) -> None:
    assert parse_choice(text) == choice


def test_codeqa_table_has_fifty_cases() -> None:
    assert len(CHOICE_CASES) >= 50
