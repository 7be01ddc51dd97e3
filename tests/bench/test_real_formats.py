"""The real-data adapters on small fixtures in the real data sets' layouts (see fixtures/)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from fastrlm import ConfigurationError
from fastrlm.bench import Instance, get_task
from fastrlm.bench._adapters import browsecomp_plus, records_from_labelled_text, ruler_niah

FIXTURES = Path(__file__).parent / "fixtures"
#: The fixture's two BrowseComp-Plus queries (picked by id: their order is a seeded shuffle).
FIRST_QID, SECOND_QID = "7", "12"
OOLONG = FIXTURES / "oolong_synth_validation.jsonl"
BC_QUERIES = FIXTURES / "browsecomp_plus_decrypted.jsonl"
BC_CORPUS = FIXTURES / "browsecomp_plus_corpus.jsonl"
LONGBENCH = FIXTURES / "longbench_v2.json"


def test_the_oolong_fixture_golds_agree_with_its_own_labels() -> None:
    rows = [json.loads(x) for x in OOLONG.read_text().splitlines()]
    row = rows[0]
    records = records_from_labelled_text(row["context_window_text_with_labels"])
    assert len(records) == len(row["context_window_text"].splitlines()) == 9
    labels = Counter(r.label for r in records)
    users = Counter(r.user for r in records)
    days = Counter(r.day for r in records)
    answers = {r["answer_type"]: r["answer"] for r in rows[:5]}
    assert answers["ANSWER_TYPE.NUMERIC"] == f"[{labels['numeric value']}]"
    assert answers["ANSWER_TYPE.LABEL"] == f"['{labels.most_common(1)[0][0]}']"
    assert labels["entity"] < labels["location"]  # "less common than"
    assert answers["ANSWER_TYPE.USER"] == f"[{users.most_common(1)[0][0]}]"
    top_day = days.most_common(1)[0][0]
    assert answers["ANSWER_TYPE.DATE"] == f"[datetime.date({top_day.year}, {top_day.month}, " \
        f"{top_day.day})]"


def test_oolong_synth_loads_trec_coarse_rows_at_the_requested_length() -> None:
    task = get_task("oolong", data=OOLONG)
    at_1k = task.instances(0, 1024)  # type: ignore[attr-defined]
    assert [i.meta["row_id"] for i in at_1k] == [100, 101, 102, 103, 104, 200]
    assert [i.meta["row_id"] for i in task.instances(0, 2048)] == [400]  # type: ignore[attr-defined]
    assert task.instances(0, 4096) == []  # type: ignore[attr-defined]
    first = at_1k[0]
    assert "|| Label:" not in first.context and first.context.startswith("Date: Jan 05, 2023")
    assert {i.answer_type for i in at_1k} == {"NUMERIC", "LABEL", "COMPARISON", "USER", "DATE"}


@pytest.mark.parametrize(
    ("index", "answer", "score"),
    [
        (0, "Answer: 2", 1.0),
        (0, "Answer: 3", 0.75),
        (0, "Answer: two", 0.0),
        (1, "Label: location", 1.0),
        (1, "Label: entity", 0.0),
        (2, "Answer: entity is less common than location in these lines", 1.0),
        (2, "Answer: more common", 0.0),
        (3, "User: 50877", 1.0),
        (3, "User: 44120", 0.0),
        (4, "Date: Apr 01, 2023", 1.0),
        (4, "Date: 2023-04-01", 1.0),
        (4, "Answer: 2023-04-01T10", 0.0),
        (5, "Answer: 1", 1.0),
    ],
)
def test_oolong_synth_rows_score_with_the_official_rules(
    index: int, answer: str, score: float
) -> None:
    task = get_task("oolong", data=OOLONG)
    assert task.score(answer, task.instance(0, 1024, index)) == pytest.approx(score)


def test_oolong_pairs_computes_golds_from_the_labelled_windows() -> None:
    task = get_task("oolong-pairs", data=OOLONG)
    insts = task.instances(0, 1024)  # type: ignore[attr-defined]
    assert len(insts) == 2 * 20  # two trec_coarse windows at 1024, twenty queries each
    # query 1: both users have a numeric value or a location instance
    window0 = [i for i in insts if i.meta["window"] == "0"]
    q1 = window0[0]
    assert q1.meta["query"] == 1 and q1.gold == [[44120, 50877]]
    assert task.score("(50877, 44120)", q1) == 1.0
    assert task.score("[]", q1) == 0.0
    assert all("|| Label:" not in i.context for i in insts)


def test_oolong_reads_the_same_rows_from_parquet(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    pa = pytest.importorskip("pyarrow")
    rows = [json.loads(x) for x in OOLONG.read_text().splitlines()]
    path = tmp_path / "validation-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    task = get_task("oolong", data=tmp_path)  # a directory of parquet shards
    assert [i.meta["row_id"] for i in task.instances(0, 1024)] == [100, 101, 102, 103, 104, 200]  # type: ignore[attr-defined]


def _query(task: Any, seed: int, qid: str) -> Instance:
    found: Instance = next(i for i in task.instances(seed, 0) if i.meta["query_id"] == qid)
    return found


def test_browsecomp_plus_queries_are_a_seeded_random_sample() -> None:
    task = browsecomp_plus(BC_QUERIES, BC_CORPUS, docs=5)
    orders = {tuple(i.meta["query_id"] for i in task.instances(s, 0)) for s in range(8)}
    assert len(orders) > 1  # the order (so the first n) depends on the seed
    assert [i.id for i in task.instances(3, 0)] == [
        i.id for i in browsecomp_plus(BC_QUERIES, BC_CORPUS, docs=5).instances(3, 0)]


def test_browsecomp_plus_queries_get_evidence_gold_and_corpus_documents() -> None:
    task = browsecomp_plus(BC_QUERIES, BC_CORPUS, docs=12)
    first = _query(task, 0, FIRST_QID)
    assert isinstance(first.context, list) and len(first.context) == 12
    ids = [d.split("\n", 1)[0] for d in first.context]
    assert "docid: 1003" in ids and "docid: 1007" in ids and len(set(ids)) == 12
    assert first.meta["evidence_docids"] == ["1003", "1007"]
    assert first.gold == ["Ada Marsh"] and "Exact Answer:" in first.query
    again = _query(browsecomp_plus(BC_QUERIES, BC_CORPUS, docs=12), 0, FIRST_QID)
    other_seed = _query(browsecomp_plus(BC_QUERIES, BC_CORPUS, docs=12), 1, FIRST_QID)
    assert again.context == first.context and other_seed.context != first.context


def test_an_evidence_document_missing_from_the_corpus_comes_from_the_query_row() -> None:
    task = browsecomp_plus(BC_QUERIES, BC_CORPUS, docs=5)
    second = _query(task, 0, SECOND_QID)
    assert "docid: 5555\nThe Lantern Festival moved indoors in 1999." in second.context
    assert second.meta["evidence_docids"] == ["5555"]


@pytest.mark.parametrize(
    ("answer", "score"),
    [
        ("Explanation: see doc 1003.\nExact Answer: Ada Marsh\nConfidence: 80%", 1.0),
        ("EXACT ANSWER: ada marsh\nConfidence: 50%", 1.0),
        ("Exact answer: Marsh\nConfidence: 50%", 0.0),
        ("Ada Marsh\nConfidence: 50%", 1.0),
    ],
)
def test_browsecomp_plus_answers_are_scored_by_the_exact_answer_field(
    answer: str, score: float
) -> None:
    task = get_task("browsecomp", data=BC_QUERIES, corpus=BC_CORPUS)
    assert task.score(answer, _query(task, 0, FIRST_QID)) == score


def test_longbench_v2_keeps_the_code_domain_and_asks_in_the_papers_format() -> None:
    task = get_task("codeqa", data=LONGBENCH)
    insts = task.instances(0, 0)  # type: ignore[attr-defined]
    assert [i.meta["row_id"] for i in insts] == [
        "66f36490821e116aacb2cc22",
        "66f36490821e116aacb2cc24",
    ]
    first, second = insts
    assert (first.gold, second.gold) == (0, 3)
    assert "0: load_settings in config.py\n1: parse in cli.py" in first.query
    assert first.meta["difficulty"] == "hard" and second.meta["size"] == "long"
    for answer, want in (("The correct answer is (D)", 1.0), ("Answer: 3.", 1.0),
                         ("I choose option 3.", 1.0), ("Answer: 0", 0.0)):
        assert task.score(answer, second) == want, answer


def test_ruler_niah_rows_split_into_haystack_and_question() -> None:
    from fastrlm.bench._adapters import ruler_niah

    task = ruler_niah(FIXTURES / "ruler_niah_single.jsonl")
    items = task.instances(0, 0)
    assert len(items) == 5
    for inst in items:
        assert isinstance(inst.context, str) and inst.task == "sniah"
        assert f"is: {inst.gold[0]}." in inst.context  # the needle is in the haystack
        assert inst.query.endswith("mentioned in the provided text?")
        assert "afterwards." in inst.query and "afterwards" not in inst.context
        assert inst.meta["key"] in inst.query and inst.meta["source"] == "ruler"
        assert task.score(f"The number is {inst.gold[0]}", inst) == 1.0
        assert task.score("no idea", inst) == 0.0
    assert items[2].gold == ["0d6a3c1e-5b7f-4a2e-9c8d-1f2e3a4b5c6d"]  # niah_single_3: uuids
    # the uppercase uuid still matches: RULER compares lower-cased
    assert task.score(items[2].gold[0].upper(), items[2]) == 1.0


def test_a_row_outside_rulers_template_is_refused_with_how_to_make_one(tmp_path: Path) -> None:
    from fastrlm import ConfigurationError
    from fastrlm.bench._adapters import ruler_niah

    bad = tmp_path / "x.jsonl"
    bad.write_text(json.dumps({"input": "hello", "outputs": ["1"]}) + "\n")
    with pytest.raises(ConfigurationError, match="prepare.py"):
        ruler_niah(bad).instances(0, 0)


def test_sniah_with_data_uses_the_ruler_adapter_end_to_end(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from fastrlm.bench._cli import bench

    result = CliRunner().invoke(bench, [
        "sniah", "--data", str(FIXTURES / "ruler_niah_single.jsonl"), "--method", "base,oracle",
        "--scripted", "--quiet", "--no-plot", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len([r for r in lines if r["method"] == "base"]) == 5
    assert all(r.get("not_applicable") for r in lines if r["method"] == "oracle")


def test_real_oolong_rows_get_no_month_extension(tmp_path: Path) -> None:
    row = json.loads((FIXTURES / "oolong_synth_validation.jsonl").read_text().splitlines()[0])
    row.update({"answer": "['March 2023']", "answer_type": "ANSWER_TYPE.MONTH"})
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(row) + "\n")
    task = get_task("oolong", data=path)
    [inst] = task.instances(0, 1024)  # type: ignore[attr-defined]
    assert task.score("Answer: March 2023", inst) == 1.0
    assert task.score("Answer: 2023-03-14", inst) == 0.0  # the official code: exact string only


def test_ruler_multi_key_queries_and_values_load_and_score_by_share(tmp_path: Path) -> None:
    from fastrlm.bench._adapters import ruler_niah

    text = ("Some special magic numbers are hidden within the following text. Make sure to "
            "memorize it. I will quiz you about the numbers afterwards.\nHay. One of the special "
            "magic numbers for red-fox is: 1111111. Hay. One of the special magic numbers for "
            "blue-owl is: 2222222.\nWhat are all the special magic numbers for red-fox and "
            "blue-owl mentioned in the provided text?")
    row = {"index": 0, "input": text, "outputs": ["1111111", "2222222"], "length": 90,
           "length_w_model_temp": 90, "answer_prefix": " The special magic numbers for red-fox "
           "and blue-owl mentioned in the provided text are", "token_position_answer": 20}
    path = tmp_path / "validation.jsonl"
    path.write_text(json.dumps(row) + "\n")
    task = ruler_niah(path)
    [inst] = task.instances(0, 0)
    assert inst.meta["key"] == "red-fox and blue-owl"
    assert task.score("1111111", inst) == 0.5 and task.score("1111111, 2222222", inst) == 1.0


def test_a_hub_download_directory_is_read_with_its_shards_a_level_down(tmp_path: Path) -> None:
    # huggingface-cli download --local-dir X puts the files under X/data/ and a cache under
    # X/.cache/; pointing --corpus at X must find the documents (it found none before)
    (tmp_path / "data").mkdir()
    (tmp_path / ".cache").mkdir()
    (tmp_path / "README.md").write_text("# corpus\n")
    (tmp_path / "data" / "train-00000-of-00001.jsonl").write_text(BC_CORPUS.read_text())
    (tmp_path / ".cache" / "stale.jsonl").write_text('{"docid": "9999", "text": "stale"}\n')
    task = browsecomp_plus(BC_QUERIES, tmp_path, docs=12)
    first = _query(task, 0, FIRST_QID)
    assert len(first.context) == 12
    assert not any(d.startswith("docid: 9999\n") for d in first.context)


def test_a_directory_without_data_files_is_refused_with_where_to_look(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("# nothing here\n")
    with pytest.raises(ConfigurationError, match=r"holds no \.json.*subdirectories too"):
        browsecomp_plus(BC_QUERIES, tmp_path).instances(0, 0)


def test_an_empty_corpus_is_refused_not_run_with_the_evidence_alone(tmp_path: Path) -> None:
    empty = tmp_path / "corpus.jsonl"
    empty.write_text("")
    with pytest.raises(ConfigurationError, match="holds no document"):
        browsecomp_plus(BC_QUERIES, empty).instances(0, 0)


def test_obfuscated_queries_as_the_hub_publishes_them_are_refused_with_how_to_decrypt(
    tmp_path: Path,
) -> None:
    import base64

    row = json.loads(BC_QUERIES.read_text().splitlines()[0])
    row["query"] = base64.b64encode(bytes(b ^ 0x5A for b in row["query"].encode())).decode()
    row["answer"] = base64.b64encode(b"\x01\x02\x03 answer bytes").decode()
    raw = tmp_path / "test.jsonl"
    raw.write_text(json.dumps(row) + "\n")
    with pytest.raises(ConfigurationError, match="still obfuscated.*decrypt_dataset.py"):
        browsecomp_plus(raw, BC_CORPUS).instances(0, 0)


def test_the_judge_is_given_the_bare_question_of_a_real_query() -> None:
    first = _query(browsecomp_plus(BC_QUERIES, BC_CORPUS, docs=5), 0, FIRST_QID)
    assert first.meta["question"] == "Which keeper of a rebuilt lighthouse was born in 1871?"
    assert first.query.startswith(first.meta["question"] + "\n\n")


def test_loaded_instances_claim_no_generator() -> None:
    firsts = [
        get_task("oolong", data=OOLONG).instances(0, 1024)[0],
        get_task("oolong-pairs", data=OOLONG).instances(0, 1024)[0],
        browsecomp_plus(BC_QUERIES, BC_CORPUS, docs=5).instances(0, 0)[0],
        get_task("codeqa", data=LONGBENCH).instances(0, 0)[0],
        ruler_niah(FIXTURES / "ruler_niah_single.jsonl").instances(0, 0)[0],
    ]
    for inst in firsts:
        assert "generator_version" not in inst.meta and "text_sources" not in inst.meta
        assert inst.meta["tokens"] > 0 and inst.meta["chars"] > 0


def test_browsecomp_plus_instances_are_built_on_access_not_held() -> None:
    # 150 queries x 1,000 documents is gigabytes: the task must not keep every context at once
    task = browsecomp_plus(BC_QUERIES, BC_CORPUS, docs=12)
    held = task.instances(0, 0)
    first = held[0]
    again = task.instance(0, 0, 0)
    assert first is not again and first.context == again.context and first.id == again.id
    assert [i.id for i in held[:]] == [held[i].id for i in range(len(held))]
    assert held[-1].id == held[len(held) - 1].id
    with pytest.raises(IndexError):
        held[len(held)]


def test_rows_outside_the_published_layouts_are_refused_naming_the_row(tmp_path: Path) -> None:
    row = json.loads(OOLONG.read_text().splitlines()[0])
    row["answer"] = "location"  # not the stringified list the data set publishes
    bad = tmp_path / "oolong.jsonl"
    bad.write_text(json.dumps(row) + "\n")
    with pytest.raises(ConfigurationError, match=r"answer 'location' is not a stringified list"):
        get_task("oolong", data=bad).instances(0, int(row["context_len"]))
    [item] = [x for x in json.loads(LONGBENCH.read_text())
              if x["domain"] == "Code Repository Understanding"][:1]
    item["answer"] = "E"
    bad_lb = tmp_path / "data.json"
    bad_lb.write_text(json.dumps([item]))
    with pytest.raises(ConfigurationError, match="answer 'E' is not one of A-D"):
        get_task("codeqa", data=bad_lb).instances(0, 0)
