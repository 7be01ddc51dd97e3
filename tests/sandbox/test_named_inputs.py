"""A dict of named inputs (``context={"users": df1, "events": df2, ...}``) crosses to every
sandbox as one REPL variable per name (and ``context`` the dict of them), bound through the
runtime's define path; the model is told the names; a name that cannot be a variable is refused
before anything runs. Parquet files in a directory context arrive as tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastrlm import RLM, ContextError
from fastrlm.context import describe_context
from fastrlm.testing import ScriptedLM

from .helpers import MakeSandbox

pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

pytestmark = pytest.mark.sandbox

LAYERS = ["bwrap", "landlock", "process", "none"]


async def run(sandbox: object, code: str) -> str:
    result = await sandbox.execute(code)  # type: ignore[attr-defined]
    assert result.error is None, result.error
    return str(result.stdout).strip()


def inputs(tmp_path: Path) -> dict[str, object]:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("alpha")
    return {
        "users": pd.DataFrame({"id": [1, 2, 3], "name": ["ann", "bo", "cy"]}),
        "events": pa.table({"kind": ["login", "logout"]}),
        "docs": docs,
        "notes": "remember the milk",
        "pages": ["p1", "p2"],
        "blob": b"\x00\x01\x02",
    }


@pytest.mark.parametrize("layer", LAYERS)
async def test_each_named_input_is_a_repl_variable_on_every_sandbox(
    make_sandbox: MakeSandbox, layer: str, tmp_path: Path,
) -> None:
    sb = await make_sandbox(layer, context=inputs(tmp_path))
    out = await run(sb, (
        "print(type(users).__name__, users.shape, list(users['name']))\n"
        "print(type(events).__name__, events.num_rows)\n"
        "print(type(docs).__name__, sorted(docs), docs['a.txt'])\n"
        "print(notes, pages, blob)\n"
        "print(sorted(context), all(context[k] is globals()[k] for k in context))"))
    assert out.splitlines() == [
        "DataFrame (3, 2) ['ann', 'bo', 'cy']",
        "Table 2",
        "FileTree ['a.txt'] alpha",
        "remember the milk ['p1', 'p2'] b'\\x00\\x01\\x02'",
        "['blob', 'docs', 'events', 'notes', 'pages', 'users'] True",
    ]
    # an input is one of the REPL's names: a cell that rebinds it gets it back next cell
    await run(sb, "users = None")
    assert await run(sb, "print(type(users).__name__)") == "DataFrame"


@pytest.mark.parametrize("layer", ["bwrap", "none"])
async def test_a_dict_of_texts_binds_its_names_too_and_other_dicts_stay_json(
    make_sandbox: MakeSandbox, layer: str,
) -> None:
    named = await make_sandbox(layer, context={"question_bank": ["q1", "q2"], "doc": "text"})
    assert await run(named, "print(doc, question_bank, context['doc'])") == \
        "text ['q1', 'q2'] text"
    record = await make_sandbox(layer, context={"id": 3, "my-key": "v"})
    assert await run(record, "print(context, 'id' in dir())") == "{'id': 3, 'my-key': 'v'} False"


@pytest.mark.parametrize("bad", ["my-users", "context", "llm_query", "_private", "class",
                                 "context_1", "FINAL"])
def test_a_name_that_cannot_be_a_variable_is_refused_naming_it(bad: str) -> None:
    with pytest.raises(ContextError, match=f"named input '{bad}'"):
        describe_context({bad: pd.DataFrame({"x": [1]}), "ok": "text"})


async def test_the_model_is_told_each_name_and_what_it_holds(tmp_path: Path) -> None:
    prompts: list[str] = []

    def root(messages: list[dict[str, str]]) -> str:
        prompts.append(messages[-1]["content"])
        return '```repl\nFINAL(str(len(users)) + notes)\n```'

    rlm = RLM(ScriptedLM(root, model="scripted/root"), sandbox="none")
    try:
        result = await rlm.acompletion("How many users?", context=inputs(tmp_path))
    finally:
        await rlm.aclose()
    assert result.answer == "3remember the milk"
    told = prompts[0]
    assert "6 named inputs: `users`, `events`, `docs`, `notes`, `pages`, `blob`" in told
    assert "`users` is a pandas DataFrame: 3 rows x 2 columns" in told
    assert "In the REPL `users` is the same DataFrame" in told
    assert "`events` is a pyarrow Table" in told and "`docs` is a directory" in told
    assert "`notes`: a str of 17 characters" in told and "`pages`: a list of 2 str" in told


def test_the_digest_follows_every_input() -> None:
    first = describe_context({"users": pd.DataFrame({"id": [1, 2]}), "notes": "a"})
    second = describe_context({"users": pd.DataFrame({"id": [1, 3]}), "notes": "a"})
    third = describe_context({"users": pd.DataFrame({"id": [1, 2]}), "notes": "b"})
    assert len({first.sha256, second.sha256, third.sha256}) == 3


@pytest.mark.parametrize("layer", LAYERS)
async def test_parquet_files_in_a_directory_context_arrive_as_tables(
    make_sandbox: MakeSandbox, layer: str, tmp_path: Path,
) -> None:
    (tmp_path / "t").mkdir()
    pq.write_table(pa.table({"n": [1, 2, 3]}), tmp_path / "t" / "nums.parquet")
    (tmp_path / "t" / "broken.parquet").write_bytes(b"not parquet at all")
    sb = await make_sandbox(layer, context=tmp_path / "t")
    out = await run(sb, (
        "t = context['nums.parquet']\n"
        "print(type(t).__name__, list(t['n']))\n"
        "print(type(context['broken.parquet']).__name__)"))
    # not Parquet: read as any other file (UTF-8 text here)
    assert out.splitlines() == ["DataFrame [1, 2, 3]", "str"]


async def test_an_input_named_as_a_tool_is_refused_before_the_run() -> None:
    from fastrlm import Tool

    def lookup(key: str) -> str:
        return key

    rlm = RLM(ScriptedLM(lambda m: '```repl\nFINAL("x")\n```', model="scripted/root"),
              sandbox="none", tools=[Tool(lookup, description="look up")])
    try:
        with pytest.raises(ContextError, match="'lookup' have the name of a tool"):
            await rlm.acompletion("q", context={"lookup": pd.DataFrame({"a": [1]})})
    finally:
        await rlm.aclose()


def test_ten_thousand_named_inputs_are_told_within_a_bound() -> None:
    # a dict of short documents keyed doc0... is named inputs too: its description was every
    # name and every head, megabytes of root prompt
    many: dict[str, object] = {f"doc{i}": "hello world " * 50 for i in range(10_000)}
    many["users"] = pd.DataFrame({"id": [1, 2]})
    told = describe_context(many)
    assert len(told.summary) < 10_000
    assert "10,001 named inputs: `doc0`, `doc1`" in told.summary
    assert "and 9,901 more (list(context) names them all)" in told.summary
    assert "- and 9,981 more inputs (5,988," in told.summary  # the DataFrame's bytes too
    assert told.size_bytes >= 10_000 * 600  # every input still counted
