"""Typed answers: completion(output=T) validates what FINAL delivers, sends mismatches back to
the model, and gives the typed value."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Literal, TypedDict

import pytest
from pydantic import BaseModel, field_validator

from fastrlm import RLM, ConfigurationError, Limits, StopReason
from fastrlm._core.output import OutputInvalid, output_spec, schema_errors
from fastrlm.testing import ScriptedLM

from .helpers import repl


class City(BaseModel):
    name: str
    population: int


@dataclasses.dataclass
class Point:
    x: int
    y: int = 0


class Movie(TypedDict):
    title: str
    year: int


def _run(finals: list[str], output: object, **kw: object) -> tuple[object, ScriptedLM]:
    root = ScriptedLM([repl(f"FINAL({f})") for f in finals])
    result = RLM(root, sandbox="none", **kw).completion(  # type: ignore[arg-type]
        "q", "ctx", output=output)
    return result, root


def test_a_pydantic_answer_is_validated_and_typed() -> None:
    result, root = _run(['{"name": "Lisbon", "population": 545000}'], City)
    assert result.value == City(name="Lisbon", population=545000)  # type: ignore[attr-defined]
    assert json.loads(result.answer) == {"name": "Lisbon", "population": 545000}  # type: ignore[attr-defined]
    first = root.calls[0][1]["content"]
    assert "JSON schema (City)" in first and '"population"' in first


def test_a_wrong_value_is_fixed_on_the_models_second_try() -> None:
    result, root = _run(['{"name": "Lisbon", "population": "many"}',
                         '{"name": "Lisbon", "population": 545000}'], City)
    assert result.stop_reason is StopReason.FINAL  # type: ignore[attr-defined]
    assert result.value.population == 545000  # type: ignore[attr-defined]
    note = root.calls[1][-1]["content"]
    assert "does not match the required output (City)" in note
    assert "population: Input should be a valid integer" in note and "3 more tries" in note


def test_a_dataclass_a_typeddict_and_builtins() -> None:
    result, _ = _run(['{"x": 3}'], Point)
    assert result.value == Point(3, 0)  # type: ignore[attr-defined]
    result, _ = _run(['{"title": "Up", "year": 2009}'], Movie)
    assert result.value == {"title": "Up", "year": 2009}  # type: ignore[attr-defined]
    result, _ = _run(["42"], int)
    assert result.value == 42 and result.answer == "42"  # type: ignore[attr-defined]
    result, _ = _run(["[1, 2, 3]"], list[int])
    assert result.value == [1, 2, 3]  # type: ignore[attr-defined]
    result, _ = _run(["'yes'"], Literal["yes", "no"])
    assert result.value == "yes" and result.answer == '"yes"'  # type: ignore[attr-defined]
    result, _ = _run(["'free text'"], str)
    assert result.value is None and result.answer == "free text"  # type: ignore[attr-defined]


def test_a_schema_dict_is_validated_by_the_json_schema_rules() -> None:
    schema = {"type": "object", "properties": {"score": {"type": "number", "minimum": 0,
              "maximum": 10}, "label": {"enum": ["good", "bad"]}}, "required": ["score"],
              "additionalProperties": False}
    result, root = _run(['{"score": 11}', '{"score": 3, "label": "meh"}',
                         '{"score": 3, "label": "good"}'], schema)
    assert result.value == {"score": 3, "label": "good"}  # type: ignore[attr-defined]
    assert "maximum is 10, got 11" in root.calls[1][-1]["content"]
    assert "must be one of" in root.calls[2][-1]["content"]


def test_retries_run_out_with_invalid_output_and_the_last_answer() -> None:
    result, root = _run(["'nope'"] * 5, {"type": "object"}, limits=Limits(max_output_retries=2))
    assert result.stop_reason is StopReason.INVALID_OUTPUT  # type: ignore[attr-defined]
    assert result.partial and result.value is None  # type: ignore[attr-defined]
    assert result.answer == "nope" and "the answer is not JSON" in result.error  # type: ignore[attr-defined]
    assert len(root.calls) == 3


def test_children_and_plain_runs_are_not_typed() -> None:
    def reply(messages: list[dict[str, str]]) -> str:
        if "child q" in messages[1]["content"]:
            assert "JSON schema" not in messages[1]["content"]
            return repl("FINAL('a child answer in prose')")
        return repl("x = rlm_query('child q', context='c')\nFINAL({'n': len(x)})")

    from fastrlm import Budget

    rlm = RLM(ScriptedLM(reply), ScriptedLM(["s"]), sandbox="none", budget=Budget(max_depth=2))
    result = rlm.completion("q", "ctx", output={"type": "object", "required": ["n"]})
    assert result.value == {"n": len("a child answer in prose")}


@pytest.mark.parametrize("bad", [object(), {"type": "banana"}, {"description": "x"},
                                 {"type": "object", "default": {1, 2}}])
def test_an_output_that_cannot_be_validated_is_refused(bad: object) -> None:
    with pytest.raises(ConfigurationError):
        RLM(ScriptedLM(["x"]), sandbox="none").completion("q", "c", output=bad)


@pytest.mark.parametrize(
    ("value", "schema", "expected"),
    [
        (1, {"type": "integer"}, []),
        (1.0, {"type": "integer"}, []),
        (True, {"type": "integer"}, ["the answer: expected integer, got boolean"]),
        ("a", {"type": ["string", "null"]}, []),
        (None, {"type": ["string", "null"]}, []),
        ({"a": 1}, {"type": "object", "required": ["b"]},
         ["the answer: missing required field 'b'"]),
        ([1, "x"], {"type": "array", "items": {"type": "integer"}},
         ["the answer[1]: expected integer, got string"]),
        ([], {"type": "array", "minItems": 1}, ["the answer: fewer than 1 items"]),
        ("abc", {"type": "string", "pattern": "^a"}, []),
        ("xbc", {"type": "string", "pattern": "^a"},
         ["the answer: does not match the pattern '^a'"]),
        (3, {"anyOf": [{"type": "string"}, {"type": "integer"}]}, []),
        (3, {"oneOf": [{"type": "number"}, {"type": "integer"}]},
         ["the answer: matches 2 or more of the oneOf alternatives"]),
        ({"p": {"q": 1}}, {"$defs": {"P": {"type": "object",
                                           "properties": {"q": {"type": "string"}}}},
                           "type": "object", "properties": {"p": {"$ref": "#/$defs/P"}}},
         ["the answer.p.q: expected string, got integer"]),
        (float("nan"), {"type": "number"}, ["the answer: expected number, got number"]),
    ],
)
def test_schema_errors(value: object, schema: dict[str, object], expected: list[str]) -> None:
    assert schema_errors(value, schema) == expected


def test_output_spec_of_str_or_none_is_no_typing() -> None:
    assert output_spec(None) is None and output_spec(str) is None


class Node(BaseModel):
    child: Node | None = None


_NODE_SCHEMA = {"$defs": {"n": {"type": "object", "properties": {
    "child": {"anyOf": [{"$ref": "#/$defs/n"}, {"type": "null"}]}}}}, "$ref": "#/$defs/n"}


def _nested(levels: int) -> str:
    return '{"child": ' * levels + "null" + "}" * levels


@pytest.mark.parametrize("output", [Node, _NODE_SCHEMA], ids=["pydantic", "schema"])
def test_a_deeply_nested_answer_is_refused_with_the_limit_not_a_recursion_error(
    output: object,
) -> None:
    result, root = _run([json.dumps(_nested(5000))] * 2 + [json.dumps(_nested(3))], output)
    assert result.stop_reason is StopReason.FINAL  # type: ignore[attr-defined]
    assert json.loads(result.answer) == json.loads(_nested(3))  # type: ignore[attr-defined]
    note = root.calls[1][-1]["content"]
    assert "nests more than 64 levels deep, the limit" in note


@pytest.mark.parametrize("output", [Node, _NODE_SCHEMA], ids=["pydantic", "schema"])
def test_a_recursive_answer_within_the_depth_limit_is_checked_whole(output: object) -> None:
    result, _ = _run([json.dumps(_nested(63))], output)
    assert result.stop_reason is StopReason.FINAL  # type: ignore[attr-defined]
    assert json.loads(result.answer) == json.loads(_nested(63))  # type: ignore[attr-defined]


def test_a_too_deep_answer_ends_invalid_output_once_the_retries_are_spent() -> None:
    result, _ = _run([json.dumps(_nested(2000))] * 3, _NODE_SCHEMA,
                     limits=Limits(max_output_retries=1))
    assert result.stop_reason is StopReason.INVALID_OUTPUT  # type: ignore[attr-defined]
    assert "nests more than 64 levels deep" in result.error  # type: ignore[attr-defined]


def test_an_answer_over_max_answer_chars_is_refused_before_it_is_parsed() -> None:
    root = ScriptedLM(['FINAL(["' + "x" * 500 + '"])', 'FINAL(["short"])'])
    result = RLM(root, sandbox="none", limits=Limits(max_answer_chars=100)).completion(
        "q", "ctx", output=list[str])
    assert result.value == ["short"]
    assert "over the limit of 100 (Limits.max_answer_chars)" in root.calls[1][-1]["content"]


@pytest.mark.parametrize(
    "schema",
    [{"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
     {"$defs": {"a": {"anyOf": [{"$ref": "#/$defs/a"}, {"type": "null"}]}},
      "$ref": "#/$defs/a"},
     {"$defs": {"a": {"type": "object", "allOf": [{"$ref": "#/$defs/a"}]}},
      "type": "object", "properties": {"x": {"$ref": "#/$defs/a"}}}],
    ids=["ref-to-ref", "anyof-self", "allof-self-in-a-property"],
)
def test_a_schema_whose_ref_cycle_never_reaches_the_value_is_refused(
    schema: dict[str, object],
) -> None:
    with pytest.raises(ConfigurationError, match="refers back to itself"):
        output_spec(schema)


def test_a_schema_nested_past_the_limit_is_refused() -> None:
    schema: dict[str, object] = {"type": "string"}
    for _ in range(5000):
        schema = {"type": "array", "items": schema}
    with pytest.raises(ConfigurationError, match="nests more than 128 levels deep"):
        output_spec(schema)


def test_a_check_that_goes_too_deep_stops_with_an_error() -> None:
    value: object = None
    for _ in range(300):
        value = {"child": value}
    errors = schema_errors(value, _NODE_SCHEMA)
    assert len(errors) == 1 and "too deeply nested to check" in errors[0]


def test_a_prose_final_of_a_dict_is_json_as_in_a_code_block() -> None:
    for reply in ['FINAL({"name": "Lisbon", "population": 545000})',
                  repl('FINAL({"name": "Lisbon", "population": 545000})')]:
        root = ScriptedLM([reply])
        result = RLM(root, sandbox="none").completion("q", "ctx", output=City)
        assert result.value == City(name="Lisbon", population=545000)
        assert json.loads(result.answer) == {"name": "Lisbon", "population": 545000}


def test_text_with_many_parentheses_is_not_taken_for_nesting() -> None:
    result, _ = _run(["'sad ' + ':( ' * 100"], {"type": "string"})
    assert result.value == "sad " + ":( " * 100  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("schema", "says"),
    [({"type": "object", "properties": {"a": {"type": {"x": 1}}}}, "type {'x': 1} is not"),
     ({"type": "string", "pattern": "("}, "pattern '(' is not a regular expression"),
     ({"type": "object", "properties": {"a": {"type": "string", "minLength": "3"}}},
      "minLength '3' is not an integer"),
     ({"type": "number", "maximum": "10"}, "maximum '10' is not a number"),
     ({"type": "object", "required": "a"}, "required is not a list"),
     ({"type": "object", "required": [["a"]]}, "required holds a name that is not a string"),
     ({"anyOf": [{"type": "string"}, 3]}, "anyOf holds an item that is not a schema"),
     ({"type": "object", "properties": {"a": "string"}}, "properties holds a value that is not"),
     ({"type": "array", "items": "string"}, "items is not a schema, a boolean or a list"),
     ({"type": "object", "additionalProperties": "no"},
      "additionalProperties is not a schema or a boolean")],
)
def test_a_schema_keyword_the_checker_cannot_read_is_refused_up_front(
    schema: dict[str, object], says: str,
) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(says)):
        output_spec(schema)


def test_boolean_schemas_allow_anything_or_nothing() -> None:
    schema = {"type": "object", "properties": {"any": True, "never": False},
              "additionalProperties": False}
    assert output_spec(schema) is not None
    assert schema_errors({"any": [1, {"x": None}]}, schema) == []
    assert schema_errors({"never": 1}, schema) == ["the answer.never: no value is allowed here"]


def _multiplying_schema(levels: int) -> dict[str, object]:
    """Each level an anyOf of two $refs to the next: checking a wrong answer tries 2**levels
    paths (not a cycle: every path ends at an integer)."""
    defs: dict[str, object] = {
        f"a{i}": {"anyOf": [{"$ref": f"#/$defs/a{i + 1}"}, {"$ref": f"#/$defs/a{i + 1}"}]}
        for i in range(levels)}
    defs[f"a{levels}"] = {"type": "integer"}
    return {"$defs": defs, "$ref": "#/$defs/a0"}


def test_a_schema_whose_alternatives_multiply_is_checked_within_a_bounded_number_of_steps(
) -> None:
    schema = _multiplying_schema(40)  # 2**40 paths: before, checking "x" never ended
    errors = schema_errors("x", schema)
    assert len(errors) == 1 and "took over 200,000 steps" in errors[0]
    assert schema_errors(7, schema) == []  # a matching answer is found on the first path
    result, root = _run(["[1]", "7"], schema)
    assert result.value == 7  # type: ignore[attr-defined]
    assert "took over 200,000 steps" in root.calls[1][-1]["content"]


@pytest.mark.parametrize("answer", ["[float('nan')]", "[float('inf')]", "[-1e999]"])
def test_nan_or_infinity_in_a_schema_answer_is_refused_so_the_answer_is_always_json(
        answer: str) -> None:
    result, root = _run([answer, "[1.5]"], {"type": "array"})
    assert result.answer == "[1.5]"  # type: ignore[attr-defined]
    assert "NaN or Infinity" in root.calls[1][-1]["content"]
    with pytest.raises(OutputInvalid, match="NaN or Infinity"):
        output_spec({"type": "array"}).parse("[NaN, Infinity]")  # type: ignore[union-attr]


class Strict(BaseModel):
    x: int

    @field_validator("x")
    @classmethod
    def _odd_one_out(cls, x: int) -> int:
        if x == 13:
            raise RAISED[0]("unlucky")
        return x


RAISED: list[type[BaseException]] = [RuntimeError]


@pytest.mark.parametrize("error", [RuntimeError, TypeError, KeyboardInterrupt, SystemExit])
def test_a_validator_raising_anything_is_feedback_the_model_sees_not_a_crash(
        error: type[BaseException]) -> None:
    RAISED[0] = error
    result, root = _run(['{"x": 13}', '{"x": 14}'], Strict)
    assert result.value == Strict(x=14)  # type: ignore[attr-defined]
    note = root.calls[1][-1]["content"]
    assert f"checking the answer raised {error.__name__}: unlucky" in note


def test_a_long_array_against_a_long_enum_is_checked_in_linear_work() -> None:
    # 150,000 items against 150,000 options: before, every item scanned the whole list
    # (2 * 10**10 comparisons, minutes on the server's event loop); the pytest timeout catches it
    options = [f"v{i}" for i in range(150_000)]
    schema = {"type": "array", "items": {"enum": options}}
    assert schema_errors(["v149999"] * 150_000, schema) == []
    assert schema_errors(["v1", "nope"], schema)[0].startswith("the answer[1]: must be one of")


@pytest.mark.parametrize(("value", "ok"), [
    (1, True), ("a", True), ([1, 2], True), ({"k": 1}, True), (None, True),
    ([2, 1], False), ({"k": 2}, False), ("b", False), (2, False),
])
def test_an_enum_of_mixed_json_values_matches_each_kind(value: object, ok: bool) -> None:
    schema = {"enum": [1, "a", [1, 2], {"k": 1}, None]}
    assert (schema_errors(value, schema) == []) is ok
