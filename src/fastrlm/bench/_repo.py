"""A seeded synthetic Python repository for CodeQA (spec §6 (b)): version-independent source.

Modules of a package ``pkg`` hold constants, functions (unique names repo-wide, literal defaults,
calls to other functions imported by name), list-to-integer behaviour functions under meaningless
names (:mod:`fastrlm.bench._behaviours`) and classes (bases inside the repo, methods). No name
is a keyword, soft keyword or builtin. Out come the source text and which behaviour each
behaviour function was rendered from; :mod:`fastrlm.bench._codeqa` re-checks that claim by
running the function's text from the file.
"""

from __future__ import annotations

import builtins
import keyword
import random
from functools import cache

from ._behaviours import BEHAVIOURS, render
from ._text import filler, words

#: Names Python reserves or predefines: never identifiers, module or package names here.
RESERVED = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | frozenset(dir(builtins))


#: Local names of the behaviour renderings (a parameter must not shadow one).
_LOCALS = ("out", "item", "low", "last", "seen", "sign", "i", "result")


@cache
def safe_nouns() -> tuple[str, ...]:
    """The wonderwords nouns that are valid identifiers and not keywords or builtins."""
    return tuple(n for n in words("noun") if n.isidentifier() and n not in RESERVED)


_VERBS = (
    "load",
    "parse",
    "merge",
    "render",
    "score",
    "split",
    "build",
    "check",
    "flush",
    "scan",
    "index",
    "encode",
    "decode",
    "resolve",
    "fetch",
    "store",
    "trim",
    "sort",
    "count",
    "emit",
)


def _unique(rng: random.Random, taken: set[str], make: object) -> str:
    assert callable(make)
    for _ in range(1000):
        name = make()
        last = str(name).rsplit("/", 1)[-1]
        if name not in taken and last.isidentifier() and last not in RESERVED:
            taken.add(name)
            return str(name)
    raise RuntimeError("name space exhausted")


def _literal(rng: random.Random) -> str:
    kind = rng.randrange(5)
    if kind == 0:
        return str(rng.randint(0, 999))
    if kind == 1:
        return repr(rng.choice(words("noun")))
    if kind == 2:
        return rng.choice(("None", "True", "False"))
    if kind == 3:
        return f"{rng.randint(0, 99)}.{rng.randint(1, 9)}"
    return repr((rng.randint(0, 9), rng.randint(0, 9)))


def generate_repo(
    rng: random.Random, target_chars: int
) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """``{relative path: source}`` of about ``target_chars`` characters (at least 6 files), and
    the behaviour functions: ``{function name: (path, behaviour key)}``."""
    nouns = safe_nouns()
    behaviours: dict[str, tuple[str, str]] = {}
    taken: set[str] = set()
    files: dict[str, str] = {}
    funcs: list[tuple[str, str]] = []  # (module dotted name, function)
    owner_of: dict[str, str] = {}
    module_paths: set[str] = set()
    classes: list[tuple[str, str]] = []
    total = 0
    n = 0
    sentence = rng.randrange(10_000)
    while total < target_chars or n < 6:
        pkg_name = nouns[(n * 7919) % len(nouns)]
        sub = "" if n < 4 else f"{pkg_name}/"
        prefix = f"pkg/{sub}"
        mod = _unique(rng, module_paths, lambda p=prefix: p + rng.choice(nouns))
        mod = mod.rsplit("/", 1)[1]
        path = f"pkg/{sub}{mod}.py"
        dotted = path[:-3].replace("/", ".")
        imports: dict[str, set[str]] = {}
        body: list[str] = []
        for _ in range(rng.randint(1, 3)):
            const = _unique(rng, taken, lambda: "_".join(rng.sample(nouns, 2)).upper())
            body.append(f"{const} = {_literal(rng)}\n")
        local: list[str] = []
        for _ in range(rng.randint(3, 6)):
            fname = _unique(rng, taken, lambda: f"{rng.choice(_VERBS)}_{rng.choice(nouns)}")
            params = [
                _unique(rng, set(), lambda: rng.choice(nouns)) for _ in range(rng.randint(1, 3))
            ]
            params = list(dict.fromkeys(params))
            sig = ", ".join([params[0]] + [f"{p}={_literal(rng)}" for p in params[1:]])
            callees: list[str] = []
            pool = local + [f for _, f in funcs[-40:]]
            for callee in rng.sample(pool, min(len(pool), rng.randint(0, 2))):
                callees.append(callee)
                owner = owner_of.get(callee, dotted)
                if owner != dotted:
                    imports.setdefault(owner, set()).add(callee)
            doc = _doc(rng.randint(80, 400), sentence)
            sentence += 3
            lines = [f"def {fname}({sig}):", f'    """{doc}"""', f"    result = {params[0]}"]
            lines += [f"    result = {c}(result)" for c in callees]
            lines.append("    return result\n")
            body.append("\n".join(lines) + "\n")
            local.append(fname)
        for _ in range(rng.randint(1, 2)):
            # a list-to-integer behaviour under a name that says nothing about it
            bname = _unique(rng, taken, lambda: f"{rng.choice(nouns)}_{rng.choice(nouns)}")
            beh = rng.choice(BEHAVIOURS)
            param = _unique(rng, set(_LOCALS), lambda: rng.choice(nouns))
            doc = _doc(rng.randint(80, 300), sentence)
            sentence += 3
            src = render(beh, bname, param, rng)
            head, rest = src.split("\n", 1)
            body.append(f'{head}\n    """{doc}"""\n{rest}\n')
            behaviours[bname] = (path, beh.key)
        for _ in range(rng.randint(0, 2)):
            cname = _unique(
                rng, taken, lambda: rng.choice(nouns).title() + rng.choice(nouns).title()
            )
            base = "object"
            if classes and rng.random() < 0.6:
                owner, base = rng.choice(classes[-30:])
                if owner != dotted:
                    imports.setdefault(owner, set()).add(base)
            methods = []
            for _ in range(rng.randint(1, 3)):
                mname = _unique(rng, taken, lambda: f"{rng.choice(_VERBS)}_{rng.choice(nouns)}")
                methods.append(
                    f"    def {mname}(self, value={_literal(rng)}):\n        return value\n"
                )
            head = f"class {cname}({base}):" if base != "object" else f"class {cname}:"
            body.append(
                head + '\n    """' + _doc(120, sentence) + '"""\n\n' + "\n".join(methods) + "\n"
            )
            sentence += 2
            classes.append((dotted, cname))
        funcs += [(dotted, f) for f in local]
        owner_of.update((f, dotted) for f in local)
        header = [f'"""{_doc(rng.randint(100, 300), sentence)}"""\n']
        for owner in sorted(imports):
            header.append(f"from {owner} import {', '.join(sorted(imports[owner]))}")
        source = "\n".join(header) + "\n\n\n" + "\n\n".join(body)
        files[path] = source
        total += len(source) + len(path) + 12
        n += 1
    return files, behaviours


def _doc(chars: int, sentence: int) -> str:
    """Prose safe inside a triple-quoted docstring."""
    text = " ".join(filler(chars, start=sentence))
    return text.replace("\\", "/").replace('"', "'") + " "
