"""CodeQA: four-choice questions over a synthetic repository, golds from ``ast`` (spec §6).

The repository text comes from :mod:`fastrlm.bench._repo`; each question's gold and each
distractor is established by parsing the relevant files with ``ast`` (distractors are same-kind
items verified false). Families: which function in a module calls X; which class defines method
m; default value of a parameter; which file defines a constant; which base-class statement is
true; which function of file B a function of file A ultimately calls (import-resolved call graph,
target at depth 2-3; distractors unreachable at any depth). The prompt follows the paper
(P2 E.4): options indexed 0-3. The scorer accepts an index 0-3 or LongBench's letter formats.
"""

from __future__ import annotations

import ast
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from ._instance import Instance, SimpleTask, length_meta, rng_for
from ._repo import generate_repo
from ._score import parse_choice

PROMPT = (
    "You are a helpful assistant that can answer questions about code repositories. You must "
    "answer the given question: {question} based on the repository provided in the context. "
    "You must answer with exactly one number choice using only the choices provided:\n\n"
    "{choices}\n\n(indexed from 0 to 3). End your answer with 'Answer: <index>'."
)
HEADER = "### File: {path}\n"


@dataclass(slots=True)
class FileIndex:
    """What ``ast`` says one file defines, imports and calls."""

    functions: dict[str, ast.FunctionDef] = field(default_factory=dict)
    classes: dict[str, ast.ClassDef] = field(default_factory=dict)
    constants: set[str] = field(default_factory=set)
    imported_from: dict[str, str] = field(default_factory=dict)  # name -> module path


class RepoAST:
    """Lazily parsed files of a repository (a 4M-token repo is never parsed whole)."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files
        self._index: dict[str, FileIndex] = {}

    def index(self, path: str) -> FileIndex:
        if path not in self._index:
            idx = FileIndex()
            for node in ast.parse(self.files[path]).body:
                if isinstance(node, ast.FunctionDef):
                    idx.functions[node.name] = node
                elif isinstance(node, ast.ClassDef):
                    idx.classes[node.name] = node
                elif isinstance(node, ast.Assign):
                    idx.constants.update(t.id for t in node.targets if isinstance(t, ast.Name))
                elif isinstance(node, ast.ImportFrom) and node.module:
                    target = node.module.replace(".", "/") + ".py"
                    idx.imported_from.update((a.name, target) for a in node.names)
            self._index[path] = idx
        return self._index[path]

    @staticmethod
    def calls(fn: ast.FunctionDef) -> list[str]:
        return [
            n.func.id
            for n in ast.walk(fn)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
        ]

    def resolve(self, path: str, name: str) -> str | None:
        """The file defining function ``name`` as seen from ``path`` (local or imported)."""
        idx = self.index(path)
        if name in idx.functions:
            return path
        target = idx.imported_from.get(name)
        return target if target in self.files else None

    def reachable(self, path: str, fn: str, depth: int = 10**9) -> dict[tuple[str, str], int]:
        """Functions reachable from ``path:fn`` in 1..depth calls -> the shortest distance."""
        out: dict[tuple[str, str], int] = {}
        frontier = [(path, fn)]
        d = 0
        while frontier and d < depth:
            d += 1
            nxt = []
            for p, f in frontier:
                for callee in self.calls(self.index(p).functions[f]):
                    q = self.resolve(p, callee)
                    if q is not None and (q, callee) not in out:
                        out[(q, callee)] = d
                        nxt.append((q, callee))
            frontier = nxt
        return out


@dataclass(frozen=True, slots=True)
class MCQ:
    family: str
    question: str
    choices: tuple[str, str, str, str]
    gold: int


def _mcq(
    rng: random.Random, family: str, question: str, right: str, wrong: list[str]
) -> MCQ | None:
    wrong = sorted(set(wrong) - {right})
    if len(wrong) < 3:
        return None
    options = rng.sample(wrong, 3)
    gold = rng.randrange(4)
    options.insert(gold, right)
    return MCQ(family, question, (options[0], options[1], options[2], options[3]), gold)


def q_module_calls(repo: RepoAST, rng: random.Random, path: str) -> MCQ | None:
    idx = repo.index(path)
    callers = {f: set(repo.calls(node)) for f, node in idx.functions.items()}
    targets = sorted({c for cs in callers.values() for c in cs})
    if not targets:
        return None
    x = rng.choice(targets)
    right = [f for f, cs in callers.items() if x in cs]
    if len(right) != 1:
        return None
    wrong = [f for f, cs in callers.items() if x not in cs]
    mod = path[:-3].replace("/", ".")
    return _mcq(
        rng, "module_calls", f"Which function in module `{mod}` calls `{x}`?", right[0], wrong
    )


def q_class_method(repo: RepoAST, rng: random.Random, path: str) -> MCQ | None:
    idx = repo.index(path)
    if not idx.classes:
        return None
    cls = rng.choice(sorted(idx.classes))
    methods = [n.name for n in idx.classes[cls].body if isinstance(n, ast.FunctionDef)]
    m = rng.choice(methods)
    wrong = []
    for other in rng.sample(sorted(repo.files), min(len(repo.files), 12)):
        for name, node in repo.index(other).classes.items():
            if all(not (isinstance(n, ast.FunctionDef) and n.name == m) for n in node.body):
                wrong.append(name)
    return _mcq(rng, "class_method", f"Which class defines method `{m}`?", cls, wrong)


def q_default(repo: RepoAST, rng: random.Random, path: str) -> MCQ | None:
    idx = repo.index(path)
    cands = [(f, n) for f, n in idx.functions.items() if n.args.defaults]
    if not cands:
        return None
    f, node = rng.choice(sorted(cands, key=lambda t: t[0]))
    args = node.args.args[len(node.args.args) - len(node.args.defaults) :]
    k = rng.randrange(len(args))
    right = ast.unparse(node.args.defaults[k])
    pool = [
        ast.unparse(d)
        for p in rng.sample(sorted(repo.files), min(len(repo.files), 8))
        for n in repo.index(p).functions.values()
        for d in n.args.defaults
    ]
    q = f"What is the default value of parameter `{args[k].arg}` of function `{f}`?"
    return _mcq(rng, "default", q, right, pool)


def q_constant_file(repo: RepoAST, rng: random.Random, path: str) -> MCQ | None:
    const = rng.choice(sorted(repo.index(path).constants))
    others = rng.sample(sorted(set(repo.files) - {path}), min(len(repo.files) - 1, 6))
    wrong = [p for p in others if const not in repo.index(p).constants]
    return _mcq(rng, "constant_file", f"In which file is constant `{const}` defined?", path, wrong)


def q_bases(repo: RepoAST, rng: random.Random, path: str) -> MCQ | None:
    idx = repo.index(path)
    with_base = [c for c, n in idx.classes.items() if n.bases]
    if not with_base:
        return None
    cls = rng.choice(sorted(with_base))
    bases = {ast.unparse(b) for b in idx.classes[cls].bases}
    base = sorted(bases)[0]
    pool = [
        c
        for p in rng.sample(sorted(repo.files), min(len(repo.files), 12))
        for c in repo.index(p).classes
        if c not in bases and c != cls
    ]
    q = f"Which statement about the base classes of class `{cls}` is true?"
    mcq = _mcq(rng, "bases", q, base, pool)
    if mcq is None:
        return None
    stmts = tuple(f"`{cls}` inherits directly from `{b}`" for b in mcq.choices)
    return MCQ(mcq.family, q, (stmts[0], stmts[1], stmts[2], stmts[3]), mcq.gold)


def q_chain(repo: RepoAST, rng: random.Random, path: str) -> MCQ | None:
    idx = repo.index(path)
    fn = rng.choice(sorted(idx.functions))
    reach = repo.reachable(path, fn)
    far = [(p, f) for (p, f), d in reach.items() if 2 <= d <= 3 and p != path]
    if not far:
        return None
    target_path, target = rng.choice(sorted(far))
    wrong = [f for f in repo.index(target_path).functions if (target_path, f) not in reach]
    q = (
        f"Function `{fn}` in `{path}` ultimately calls (through at least one intermediate call) "
        f"which function defined in `{target_path}`?"
    )
    return _mcq(rng, "call_chain", q, target, wrong)


FAMILIES: tuple[Callable[[RepoAST, random.Random, str], MCQ | None], ...] = (
    q_module_calls,
    q_class_method,
    q_default,
    q_constant_file,
    q_bases,
    q_chain,
)


def render(files: dict[str, str]) -> str:
    return "".join(HEADER.format(path=p) + s + "\n" for p, s in files.items())


def generate(seed: int, length: int, index: int) -> Instance:
    """Instance ``index``: a fresh repository of about ``length`` proxy tokens, family
    ``index % 6`` (re-drawn on a degenerate draw)."""
    rng = rng_for("codeqa", seed, length, index)
    files = generate_repo(rng, max(length * 4 - 800, 2000))
    repo = RepoAST(files)
    family = FAMILIES[index % len(FAMILIES)]
    paths = sorted(files)
    mcq = None
    for _ in range(200):
        mcq = family(repo, rng, rng.choice(paths))
        if mcq is not None:
            break
    if mcq is None:  # pragma: no cover - every family has candidates in a 6-file repo
        raise RuntimeError(f"codeqa: no {family.__name__} question in this repository")
    choices = "\n".join(f"{i}: {c}" for i, c in enumerate(mcq.choices))
    query = PROMPT.format(question=mcq.question, choices=choices)
    context = render(files)
    meta = length_meta(context, len(query))
    meta.update(
        {
            "length": length,
            "seed": seed,
            "family": mcq.family,
            "files": len(files),
            "choices": list(mcq.choices),
        }
    )
    return Instance(
        f"codeqa-{seed}-{length}-{index}", "codeqa", context, query, mcq.gold, "CHOICE", meta
    )


def score(pred: str, inst: Instance) -> float:
    return 1.0 if parse_choice(pred) == inst.gold else 0.0


TASK = SimpleTask(
    "codeqa",
    (23_000, 131_072, 1_048_576, 4_200_000),
    13,
    generate,
    score,
    "Multiple choice over a synthetic code repository, golds from ast",
)
