"""Adapters for the real data sets, read from local paths only (never downloaded).

- :func:`oolong_synth`: HF ``oolongbench/oolong-synth`` rows (parquet needs ``pyarrow``; JSON/JSONL
  work with the stdlib), ``dataset == "trec_coarse"`` at ``context_len == length``.
- :func:`oolong_pairs_real`: the 20 pair queries over the real trec_coarse windows, golds computed
  from ``context_window_text_with_labels``.
- :func:`browsecomp_plus`: decrypted BrowseComp-Plus queries (JSONL: ``query_id, query, answer``,
  ``evidence_docs``/``gold_docs`` as docids or ``{docid, text, url}``) plus the corpus (``docid,
  text``); each query gets its evidence and gold documents (texts from the query row when the
  corpus lacks them) and random corpus documents up to ``docs`` (1,000), shuffled by seed; the
  queries come in a seeded random order, so ``--n 150`` is a random sample of 150 (the paper's).
- :func:`longbench_codeqa`: LongBench-v2 JSON, domain "Code Repository Understanding", asked in the
  paper's 0-3 format.
- :func:`ruler_niah`: RULER's generated ``validation.jsonl`` for a single-needle task (``index,
  input, outputs, length, length_w_model_temp, answer_prefix, token_position_answer``), the
  input split into the haystack (``context``) and the template's instruction and question.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, overload

from .. import ConfigurationError, MissingExtraError
from . import _browsecomp, _codeqa, _pairs, _sniah
from ._instance import Instance, length_meta, rng_for
from ._oolong_score import score_answer
from ._records import Record

#: The file kinds :func:`read_rows` reads.
DATA_SUFFIXES = frozenset({".jsonl", ".json", ".parquet"})


def read_rows(path: str | Path) -> Iterator[dict[str, Any]]:
    """Rows of a ``.jsonl``, ``.json`` (a list) or ``.parquet`` file, or of every such file
    under a directory (subdirectories included, hidden ones such as a hub cache skipped), in
    path order. Raises :class:`ConfigurationError` for a missing file or a directory without
    one."""
    p = Path(path)
    if p.is_dir():
        # a hub download keeps its shards a level or two down (``data/validation-*.parquet``)
        files = sorted(f for f in p.rglob("*") if f.suffix in DATA_SUFFIXES and f.is_file()
                       and not any(part.startswith(".") for part in f.relative_to(p).parts))
        if not files:
            raise ConfigurationError(
                f"{p} holds no {', '.join(sorted(DATA_SUFFIXES))} file (searched its "
                "subdirectories too); point --data / --corpus at the downloaded data "
                "(docs/paper-benchmarks.md says where each set comes from)"
            )
        for child in files:
            yield from read_rows(child)
        return
    if not p.exists():
        raise ConfigurationError(f"data file not found: {p}")
    if p.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq  # type: ignore[import-untyped, import-not-found, unused-ignore]
        except ModuleNotFoundError as exc:
            raise MissingExtraError("bench", "pyarrow", "Reading parquet files") from exc
        yield from pq.read_table(p).to_pylist()
    elif p.suffix == ".json":
        data = json.loads(p.read_text(encoding="utf-8"))
        yield from (data if isinstance(data, list) else data.get("data", []))
    else:
        with p.open(encoding="utf-8") as fh:
            yield from (json.loads(line) for line in fh if line.strip())


class BuiltOnAccess(Sequence[Instance]):
    """``count`` instances, instance ``i`` made by ``make(i)`` each time it is asked for and
    never held (for data sets whose instances are too big to keep all at once)."""

    def __init__(self, count: int, make: Callable[[int], Instance]) -> None:
        self._count = count
        self._make = make

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> Instance: ...

    @overload
    def __getitem__(self, index: slice) -> list[Instance]: ...

    def __getitem__(self, index: int | slice) -> Instance | list[Instance]:
        if isinstance(index, slice):
            return [self._make(i) for i in range(*index.indices(self._count))]
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError(f"instance {index} of {self._count}")
        return self._make(index)


@dataclass
class LoadedTask:
    """A :class:`~fastrlm.bench.Task` over instances loaded from disk (``length`` is ignored
    except by loaders that select on it; ``index`` picks the instance)."""

    name: str
    load: Callable[[int, int], Sequence[Instance]]
    scorer: Callable[[str, Instance], float]
    default_lengths: tuple[int, ...] = (0,)
    default_n: int = 50
    #: The lengths the file holds, for loaders that select on length (None: length is ignored).
    lengths_in_data: Callable[[], tuple[int, ...]] | None = None

    def __post_init__(self) -> None:
        self._cache: dict[tuple[int, int], Sequence[Instance]] = {}

    def instances(self, seed: int, length: int) -> Sequence[Instance]:
        if (seed, length) not in self._cache:
            self._cache[(seed, length)] = self.load(seed, length)
        return self._cache[(seed, length)]

    def instance(self, seed: int, length: int, index: int) -> Instance:
        items = self.instances(seed, length)
        if index >= len(items):
            raise IndexError(f"{self.name}: only {len(items)} instances at length {length}")
        return items[index]

    def score(self, pred: str, inst: Instance) -> float:
        return self.scorer(pred, inst)

    def check_lengths(self, seed: int, lengths: tuple[int, ...], source: str) -> None:
        """Raise :class:`ConfigurationError` when a length in ``lengths`` selects no instance,
        naming the lengths the data at ``source`` has (a run that would do nothing and exit 0
        is a mistake in ``--lengths``); and for data whose instances carry their own lengths
        (BrowseComp-Plus, LongBench-v2, RULER), when ``lengths`` asks for any length at all
        (every instance would be recorded under a length it does not have)."""
        if self.lengths_in_data is None and set(lengths) - set(self.default_lengths):
            raise ConfigurationError(
                f"--lengths does not apply to {self.name} data ({source}): each instance has "
                "its own length (recorded as its token count); leave --lengths out"
                + (" and point --data at the file generated for the length you want"
                   if self.name == "sniah" else "")
            )
        empty = [x for x in lengths if not self.instances(seed, x)]
        if not empty:
            return
        if self.lengths_in_data is None:
            raise ConfigurationError(
                f"{source} holds no {self.name} instance; check that it is the data set's file "
                "(docs/paper-benchmarks.md says which)"
            )
        have = self.lengths_in_data()
        held = ", ".join(f"{x:,}" for x in have) or "none"
        raise ConfigurationError(
            f"--lengths {', '.join(f'{x:,}' for x in empty)} selects no {self.name} instance "
            f"in {source} (lengths there: {held}); pass one of those, or leave --lengths out"
        )


def _data_meta(context: str | list[str], extra_chars: int) -> dict[str, Any]:
    """The size metadata of a loaded instance: :func:`length_meta` without the generator's
    version and text sources (no generator made it)."""
    meta: dict[str, Any] = length_meta(context, extra_chars)
    del meta["generator_version"], meta["text_sources"]
    return meta


def _oolong_gold(answer: str, row_id: object = None) -> tuple[str | int, str | None]:
    """The gold of an oolong-synth ``answer`` (a stringified one-item list, or a
    ``datetime.date``), read as the official scorer reads it. Raises
    :class:`ConfigurationError` for one in neither form."""
    try:
        if "datetime" in answer:
            d = datetime.strptime(answer, "[datetime.date(%Y, %m, %d)]").date()
            return d.isoformat(), "DATE"
        value = ast.literal_eval(answer)[0]
    except (ValueError, SyntaxError, TypeError, IndexError, KeyError) as exc:
        raise ConfigurationError(
            f"oolong-synth row {row_id!r}: answer {answer[:80]!r} is not a stringified list "
            "such as \"['location']\", \"[42]\" or \"[datetime.date(2023, 4, 1)]\" (the "
            "published layout); is --data the oolongbench/oolong-synth download?"
        ) from exc
    return (value if isinstance(value, int) else str(value)), None


def score_official_oolong(pred: str, inst: Instance) -> float:
    """OOLONG's official scoring of a real row: only NUMERIC (partial credit) and DATE answers
    get special treatment, as in ``synth_process_response``; fastrlm's generated-task extension
    (MONTH golds matching any date of the month) is not applied to real data."""
    kind = inst.answer_type if inst.answer_type in ("NUMERIC", "DATE") else "EXACT"
    return score_answer(pred, inst.gold, kind)


def _trec_lengths(path: str | Path) -> Callable[[], tuple[int, ...]]:
    def lengths() -> tuple[int, ...]:
        return tuple(sorted({int(row.get("context_len", 0)) for row in read_rows(path)
                             if row.get("dataset") == "trec_coarse"}))

    return lengths


def oolong_synth(path: str | Path) -> LoadedTask:
    def load(seed: int, length: int) -> list[Instance]:
        del seed
        out: list[Instance] = []
        for row in read_rows(path):
            if row.get("dataset") != "trec_coarse" or int(row.get("context_len", 0)) != length:
                continue
            gold, kind = _oolong_gold(str(row["answer"]), row.get("id"))
            answer_type = kind or str(row.get("answer_type", "")).replace("ANSWER_TYPE.", "")
            ctx = str(row["context_window_text"])
            meta = _data_meta(ctx, len(str(row["question"])))
            meta.update(
                {
                    "length": length,
                    "source": "oolong-synth",
                    "row_id": row.get("id"),
                    "family": row.get("task_group"),
                    "kind": row.get("task"),
                }
            )
            out.append(
                Instance(
                    f"oolong-synth-{row.get('id', len(out))}",
                    "oolong",
                    ctx,
                    str(row["question"]),
                    gold,
                    answer_type,
                    meta,
                )
            )
        return out

    return LoadedTask(
        "oolong", load, score_official_oolong, (131072,),
        lengths_in_data=_trec_lengths(path),
    )


_LINE = re.compile(r"Date: (.+?) \|\| User: (\d+) \|\| Instance: (.*?) \|\| Label: (.+)")


def records_from_labelled_text(text: str) -> list[Record]:
    """Records parsed from ``Date: .. || User: .. || Instance: .. || Label: ..`` lines."""
    out = []
    for m in _LINE.finditer(text):
        day: date = datetime.strptime(m.group(1).strip(), "%b %d, %Y").date()
        out.append(Record(day, int(m.group(2)), m.group(3), m.group(4).strip()))
    return out


def oolong_pairs_real(path: str | Path) -> LoadedTask:
    def load(seed: int, length: int) -> list[Instance]:
        del seed
        windows: dict[object, dict[str, Any]] = {}
        for row in read_rows(path):
            if row.get("dataset") == "trec_coarse" and int(row.get("context_len", 0)) == length:
                windows.setdefault(row.get("context_window_id"), row)
        out = []
        for wid, row in sorted(windows.items(), key=lambda kv: str(kv[0])):
            records = records_from_labelled_text(str(row["context_window_text_with_labels"]))
            ctx = str(row["context_window_text"])
            for q in range(len(_pairs.QUERIES)):
                gold = [list(p) for p in _pairs.gold_pairs(records, q)]
                query = _pairs.query_text(q)
                meta = _data_meta(ctx, len(query))
                meta.update(
                    {
                        "length": length,
                        "source": "oolong-synth",
                        "window": str(wid),
                        "query": q + 1,
                        "gold_pairs": len(gold),
                    }
                )
                out.append(
                    Instance(
                        f"oolong-pairs-real-{wid}-{q + 1}",
                        "oolong-pairs",
                        ctx,
                        query,
                        gold,
                        "PAIRS",
                        meta,
                    )
                )
        return out

    return LoadedTask("oolong-pairs", load, _pairs.score, (32768,), 20,
                      lengths_in_data=_trec_lengths(path))


def _docids(items: Any) -> list[str]:
    return [str(x["docid"] if isinstance(x, dict) else x) for x in (items or [])]


_BASE64 = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")


def _check_decrypted(row: dict[str, Any], queries: str | Path) -> None:
    """Raise :class:`ConfigurationError` for a query row as the hub publishes it (its fields
    XOR-obfuscated and base64-encoded): a question in words has spaces."""
    query = str(row.get("query", ""))
    if _BASE64.fullmatch(query) or _BASE64.fullmatch(str(row.get("answer", ""))):
        raise ConfigurationError(
            f"{queries} holds BrowseComp-Plus queries still obfuscated (query_id "
            f"{row.get('query_id')!r} reads {query[:24]!r}...); decrypt them first with the "
            "benchmark's scripts_build_index/decrypt_dataset.py --output decrypted.jsonl "
            "(docs/paper-benchmarks.md) and pass that file"
        )


def browsecomp_plus(queries: str | Path, corpus: str | Path, docs: int = 1000) -> LoadedTask:
    corpus_texts: dict[str, str] = {}

    def read_corpus() -> dict[str, str]:
        # read once per task, whatever the seed (the corpus is gigabytes)
        if not corpus_texts:
            corpus_texts.update(
                (str(r["docid"]), str(r.get("text") or r.get("contents") or ""))
                for r in read_rows(corpus)
            )
        if not corpus_texts:
            raise ConfigurationError(
                f"the corpus {corpus} holds no document (rows with 'docid' and 'text'); pass "
                "Tevatron/browsecomp-plus-corpus as downloaded (docs/paper-benchmarks.md)"
            )
        return corpus_texts

    def load(seed: int, length: int) -> Sequence[Instance]:
        del length
        texts = read_corpus()
        ids = sorted(texts)
        rows = list(read_rows(queries))
        for row in rows:
            _check_decrypted(row, queries)
        # the decrypted queries carry their evidence texts: use them for documents the corpus
        # file lacks (a partial corpus download); the random documents come from the corpus
        extra: dict[str, str] = {}
        for row in rows:
            for item in [*(row.get("evidence_docs") or []), *(row.get("gold_docs") or [])]:
                if isinstance(item, dict) and str(item.get("docid")) not in texts:
                    extra.setdefault(str(item["docid"]), str(item.get("text") or ""))
        # the paper samples its 150 queries at random: the first n of a seeded shuffle are a
        # random sample, the same for the same seed
        rng_for("browsecomp-plus-queries", seed).shuffle(rows)

        def text(docid: str) -> str:
            return texts[docid] if docid in texts else extra[docid]

        def make(index: int) -> Instance:
            row = rows[index]
            qid = str(row.get("query_id", index))
            need = list(
                dict.fromkeys(_docids(row.get("evidence_docs")) + _docids(row.get("gold_docs")))
            )
            need = [d for d in need if d in texts or d in extra]
            rng = rng_for("browsecomp-plus", seed, qid)
            chosen = set(need)
            pool = [d for d in rng.sample(ids, min(len(ids), docs + len(need))) if d not in chosen]
            picked = need + pool[: max(docs - len(need), 0)]
            rng.shuffle(picked)
            ctx = [f"docid: {d}\n{text(d)}" for d in picked]
            query = str(row["query"]) + "\n\n" + _browsecomp.FORMAT
            meta = _data_meta(ctx, len(query))
            meta.update(
                {
                    "length": meta["tokens"],
                    "source": "browsecomp-plus",
                    "query_id": qid,
                    "question": str(row["query"]),
                    "docs": len(ctx),
                    "evidence_docids": need,
                }
            )
            return Instance(f"browsecomp-plus-{qid}", "browsecomp", ctx, query,
                            [str(row["answer"])], "NAME", meta)

        # 150 queries x 1,000 documents is gigabytes of context: each instance is built when
        # asked for and dropped after its run, as generated ones are
        return BuiltOnAccess(len(rows), make)

    return LoadedTask("browsecomp", load, _browsecomp.score, (0,), 150)


def _choice_index(row: dict[str, Any]) -> int:
    """LongBench-v2's ``answer`` letter as a 0-3 index. Raises :class:`ConfigurationError`
    for another value."""
    letter = str(row.get("answer", "")).strip()
    if letter not in ("A", "B", "C", "D"):
        raise ConfigurationError(
            f"LongBench-v2 row {row.get('_id')!r}: answer {letter[:20]!r} is not one of A-D "
            "(the published data.json layout); is --data THUDM/LongBench-v2's data.json?"
        )
    return "ABCD".index(letter)


def longbench_codeqa(path: str | Path) -> LoadedTask:
    def load(seed: int, length: int) -> list[Instance]:
        del seed, length
        out: list[Instance] = []
        for row in read_rows(path):
            if row.get("domain") != "Code Repository Understanding":
                continue
            options = [str(row[f"choice_{c}"]) for c in "ABCD"]
            choices = "\n".join(f"{i}: {c}" for i, c in enumerate(options))
            query = _codeqa.PROMPT.format(question=row["question"], choices=choices)
            ctx = str(row["context"])
            meta = _data_meta(ctx, len(query))
            meta.update(
                {
                    "length": meta["tokens"],
                    "source": "longbench-v2",
                    "row_id": row.get("_id"),
                    "difficulty": row.get("difficulty"),
                    "size": row.get("length"),
                }
            )
            out.append(
                Instance(
                    f"longbench-{row.get('_id', len(out))}",
                    "codeqa",
                    ctx,
                    query,
                    _choice_index(row),
                    "CHOICE",
                    meta,
                )
            )
        return out

    return LoadedTask("codeqa", load, _codeqa.score, (0,), 50)


#: RULER's NIAH template, singular or plural, around the haystack: the instruction line, the
#: haystack, the question (a chat template may wrap it all).
_RULER_INPUT = re.compile(
    r"(?P<lead>(?:Some|A) special magic (?P<kind>\w+?) (?:are|is) hidden within the following "
    r"text\. Make sure to memorize it\. I will quiz you about the \w+ afterwards\.)\s?"
    r"(?P<haystack>.*)\s"
    r"(?P<question>What (?:are all|is) the special magic \w+ for (?P<key>.+?) mentioned in the "
    r"provided text\?)",
    re.S,
)


def ruler_niah(path: str | Path) -> LoadedTask:
    """RULER single-needle rows (see the module docstring); scored with RULER's
    ``string_match_all`` against ``outputs``. Raises :class:`ConfigurationError` for a row whose
    ``input`` is not RULER's NIAH template."""

    def load(seed: int, length: int) -> list[Instance]:
        del seed, length
        out: list[Instance] = []
        for number, row in enumerate(read_rows(path)):
            text = str(row.get("input", ""))
            m = _RULER_INPUT.search(text)
            if m is None or not isinstance(row.get("outputs"), list):
                raise ConfigurationError(
                    f"{path} row {number + 1} is not a RULER NIAH row (an 'input' in RULER's "
                    "niah template and an 'outputs' list); generate it with RULER's "
                    "scripts/data/prepare.py --task niah_single_1|2|3"
                )
            query = f"{m.group('lead')}\n\n{m.group('question')}"
            ctx = m.group("haystack")
            meta = _data_meta(ctx, len(query))
            meta.update({
                "length": int(row.get("length") or meta["tokens"]),
                "source": "ruler",
                "key": m.group("key"),
                "answer_prefix": row.get("answer_prefix"),
                "token_position_answer": row.get("token_position_answer"),
            })
            out.append(Instance(f"ruler-{number}", "sniah", ctx, query,
                                [str(x) for x in row["outputs"]], "STRING", meta))
        return out

    return LoadedTask("sniah", load, _sniah.score, (0,), 50)
