"""What the engine learns about a context before its first root request costs no walk over it:
a huge file context is checked, measured and described without a copy (issue 31)."""

from __future__ import annotations

import tracemalloc

import pytest

from fastrlm.context import context_problem, describe_shape

BIG = 8 << 20


@pytest.mark.parametrize("edges", ["\n", " \t\n", "\r\n"])
def test_a_context_that_ends_in_a_newline_is_checked_without_a_copy(edges: str) -> None:
    """A log file ends in a newline: ``str.strip()`` copied the whole of it to tell that it is
    not blank (1 GB more at the peak, and a second's copy, before the first root request)."""
    text = "2026-12-07 GET /api 200\n" * (BIG // 24) + edges
    head = edges + text  # whitespace at both ends
    describe_shape("warm")  # its first call imports what it needs: not what is measured
    for context in (text, head):
        tracemalloc.start()
        try:
            assert context_problem(context) is None
            describe_shape(context)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < BIG // 100, f"{peak:,} bytes allocated to look at the context"


@pytest.mark.parametrize("blank", [" ", "\n\n\t", "\u3000\u2028 ", "\x1c\x1d\x1e\x1f\x85"])
def test_text_of_only_whitespace_is_still_refused_as_blank(blank: str) -> None:
    problem = context_problem(blank * 1000)
    assert problem is not None and problem[0] == "empty" and "blank" in problem[1]
    assert context_problem(blank * 1000 + "x") is None
    assert context_problem("") == ("empty", "is empty: there is nothing to answer from")
