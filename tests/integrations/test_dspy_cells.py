"""The DSPy bridge's pure parts: names, payloads and reading SUBMIT back (no sandbox, no dspy)."""

from __future__ import annotations

import json

import pytest

from fastrlm.integrations import _dspy_cells as cells


def test_deliveries_are_read_back_only_from_their_envelopes() -> None:
    key = cells.SUBMIT_KEY
    assert cells.delivered(json.dumps({key: {"a": 1, "b": [2]}})) == (key, {"a": 1, "b": [2]})
    assert cells.delivered(json.dumps({cells.VALUE_KEY: [1]})) == (cells.VALUE_KEY, [1])
    error = {"type": "ValueError", "args": [1]}
    assert cells.delivered(json.dumps({cells.ERROR_KEY: error})) == (cells.ERROR_KEY, error)
    for text in ("plain answer", "{not json", json.dumps({key: "not a dict"}),
                 json.dumps({key: {}, "extra": 1}), json.dumps({"a": 1}),
                 json.dumps({cells.ERROR_KEY: {"type": 1, "args": []}}),
                 json.dumps({cells.ERROR_KEY: {"type": "E", "args": "x"}})):
        assert cells.delivered(text) is None, text


@pytest.mark.parametrize(("name", "problem"), [
    ("1x", "not a Python identifier"), ("class", "not a Python identifier"),
    ("context", "taken by fastrlm's REPL"), (3, "not a Python identifier"),
])
def test_names_that_cannot_be_bound_are_refused(name: object, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        cells.check_name(name, "input", frozenset({"context"}))


def test_payloads_keep_the_type_of_each_input() -> None:
    assert cells.payload("text") == ("str", "text")
    assert cells.payload(b"\x00\xff") == ("bytes", "AP8=")
    assert cells.payload({"a": (1, 2)}) == ("json", '{"a": [1, 2]}')
    assert cells.payload({3, 1, 2}) == ("json", "[1, 2, 3]")
    with pytest.raises(TypeError, match="Unsupported value type"):
        cells.payload(object())


def test_every_payload_kind_has_a_decoder_and_cells_compile() -> None:
    source = cells.assignment_cell({f"v_{kind}": kind for kind in cells._DECODERS})
    compile(source, "<assignment>", "exec")
    compile(cells.bind_cell([{"name": "answer"}, {"name": "n", "type": "int"}]), "<bind>", "exec")
    compile(cells.bind_cell(None, [cells.tool_spec("t", len)]), "<bind>", "exec")
    compile(cells.run_cell("x = \"\"\"\\n'\"\"\"\nx"), "<run>", "exec")


def test_values_follow_dspys_json_rules() -> None:
    assert cells.value_json(None) == '""' and cells.value_json("s") == '"s"'
    assert cells.value_json(float("nan")) == '"nan"'  # no NaN in JSON: its str, as DSPy
    assert cells.value_json({"k": {2, 1}}) == '{"k": [1, 2]}'
    assert cells.value_json(object()).startswith('"<object object at')
    with pytest.raises(TypeError, match="nested deeper than"):
        cells.jsonable(nested(cells.MAX_DEPTH + 5))


def nested(depth: int) -> object:
    value: object = []
    for _ in range(depth):
        value = [value]
    return value


def test_tool_specs_show_the_signature_the_repl_binds() -> None:
    def lookup(key: str, times: int = 1) -> dict:
        """Look a key up."""
        return {}

    spec = cells.tool_spec("__dspy_call__", lookup)
    assert spec.signature_text() == "__dspy_call__(key: str, times: int = 1) -> dict"
    assert spec.doc == "Look a key up."
    assert cells.tool_spec("n", len).params  # a builtin without a signature still gets one


def test_call_arguments_rebuild_the_call() -> None:
    def f(a: int, /, b: int, *rest: int, c: int = 0, **more: int) -> None: ...

    assert cells.call_arguments(f, {"a": 1, "b": 2, "rest": [3], "c": 4, "more": {"d": 5}}) == (
        [1, 2, 3], {"c": 4, "d": 5})
    assert cells.call_arguments(lambda x, y=2: x, {"x": 1}) == ([], {"x": 1})
    with pytest.raises(TypeError, match="unexpected argument"):
        cells.call_arguments(lambda x: x, {"x": 1, "z": 2})
    with pytest.raises(TypeError):
        cells.call_arguments(lambda x: x, {})


def test_an_answer_too_deep_to_decode_is_text_not_a_crash() -> None:
    """A FINAL text the model shaped as SUBMIT's envelope but nested 5,000 levels deep is read
    on the host: it is a plain answer, never a RecursionError out of ``execute``."""
    deep = '{"' + cells.SUBMIT_KEY + '": {"answer": ' + "[" * 5_000 + "]" * 5_000 + "}}"
    assert cells.delivered(deep) is None


def test_output_field_names_must_be_identifiers_given_once() -> None:
    """SUBMIT's parameters are the field names: checked on the host, never pasted as source."""
    assert cells.field_names(None) == ["output"]
    assert cells.field_names([{"name": "a"}, {"name": "b", "type": "int"}]) == ["a", "b"]
    for fields, problem in (([{"name": "class"}], "not a Python identifier"),
                            ([{"name": "a): import os; (b"}], "not a Python identifier"),
                            ([{"name": "a"}, {"name": "a"}], "more than once"),
                            ([{"type": "int"}], "must be a list of")):
        with pytest.raises(ValueError, match=problem):
            cells.field_names(fields)  # type: ignore[arg-type]
