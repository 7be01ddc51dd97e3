"""The package's modules import each other without cycles: module-level imports, those under
``if TYPE_CHECKING`` included (a cycle for the type checker is still a knot for a reader);
imports inside functions are deliberate deferrals and are not counted. A cycle is reported as
the chain of modules that forms it.

Packages too: a package is the first component under ``fastrlm`` (``fastrlm.lm``,
``fastrlm._core``), ``fastrlm._foundation`` and the top-level ``fastrlm/_*.py`` modules together
are the foundations, and packages may not import each other in a circle either."""

from __future__ import annotations

import ast
from pathlib import Path

import fastrlm

PACKAGE = Path(fastrlm.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    if node.level == 0:
        base = node.module or ""
    else:
        anchor = module.split(".") if is_package else module.split(".")[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join(anchor + ([node.module] if node.module else []))
    # ``from pkg import name`` imports pkg, and pkg.name too when that is a module
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def _top_level_imports(tree: ast.Module) -> list[ast.stmt]:
    found: list[ast.stmt] = []
    todo: list[ast.stmt] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If):
            todo.extend(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            todo.extend(node.body + node.orelse + node.finalbody)
            for handler in node.handlers:
                todo.extend(handler.body)
    return found


def import_graph(*, deferred: bool = False) -> dict[str, set[str]]:
    """Module -> the fastrlm modules it imports; with ``deferred``, imports inside functions
    count too."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        is_package = path.name == "__init__.py"
        nodes = (
            [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
            if deferred else _top_level_imports(tree)
        )
        for node in nodes:
            targets = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else _resolve(name, is_package, node)
            )
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and target.startswith("fastrlm"):
                    graph[name].add(target)
    return graph


FOUNDATIONS = "fastrlm.<foundations>"


def package_of(module: str) -> str:
    """``fastrlm.lm._openai`` -> ``fastrlm.lm``; ``fastrlm._foundation.usage`` and
    ``fastrlm._foundation.limits`` -> the foundations; a public top-level module (``fastrlm``,
    ``fastrlm.events``) is a package of its own."""
    parts = module.split(".")
    if len(parts) == 1:
        return module
    if parts[1] == "_foundation":
        return FOUNDATIONS
    if (PACKAGE / parts[1]).is_dir():
        return ".".join(parts[:2])
    if parts[1].startswith("_") and not parts[1].startswith("__"):
        return FOUNDATIONS
    return ".".join(parts[:2])


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    packages: dict[str, set[str]] = {package_of(m): set() for m in graph}
    for module, targets in graph.items():
        for target in targets:
            if package_of(target) != package_of(module):
                packages[package_of(module)].add(package_of(target))
    return packages


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A shortest-found cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            # importing a package's submodule runs the package's __init__ first, which is fine
            # (Python finishes the package before the submodule is reached by name).
            if node.startswith(nxt + "."):
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def test_the_package_has_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_checker_sees_a_cycle_when_there_is_one() -> None:
    graph: dict[str, set[str]] = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_engine_lives_in_its_room() -> None:
    graph = import_graph()
    loose = sorted(
        name
        for name in graph
        if name.count(".") == 1
        and name.split(".")[1].startswith("_")
        and name.split(".")[1] not in ("__main__", "_core", "_foundation")
    )
    # no loose private modules at the top: the foundations and the engine each have a room
    assert loose == [], loose
    assert not any(dep.startswith("fastrlm._core") for dep in graph["fastrlm._core"])
    assert not graph["fastrlm._foundation"]


def _within(graph: dict[str, set[str]], *packages: str) -> dict[str, set[str]]:
    def inside(name: str) -> bool:
        return any(name == p or name.startswith(p + ".") for p in packages)

    return {m: {t for t in deps if inside(t)} for m, deps in graph.items() if inside(m)}


def test_the_runner_and_the_bench_have_no_circle_even_through_deferred_imports() -> None:
    # jobs/_run <-> jobs/_ray and bench/_runner <-> bench/_ray were circles closed by imports
    # inside functions; the shared runner has none
    graph = _within(import_graph(deferred=True), "fastrlm.jobs", "fastrlm.bench")
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_the_bench_reaches_the_rest_of_fastrlm_through_public_names() -> None:
    graph = import_graph(deferred=True)
    private = sorted(
        f"{module} -> {target}"
        for module, deps in graph.items()
        if module.startswith("fastrlm.bench")
        for target in deps
        if not target.startswith("fastrlm.bench") and "._" in target
    )
    assert private == sorted([
        # the bench command shares the CLI's flag helpers and checks
        "fastrlm.bench._cli -> fastrlm._foundation.validate",
        "fastrlm.bench._cli -> fastrlm.cli._options",
        # the foundations: the [error: kind] vocabulary, per-call pricing, model windows; and
        # the paper's Qwen3-Coder paragraph (only the bench adds it)
        "fastrlm.bench._baselines -> fastrlm._foundation.error_text",
        "fastrlm.bench._codeact -> fastrlm._foundation.error_text",
        "fastrlm.bench._meter -> fastrlm._foundation.pricing",
        "fastrlm.bench._meter -> fastrlm._foundation.windows",
        "fastrlm.bench._config -> fastrlm._core.paper_prompts",
    ]), private


#: Package imports that still close a circle, each with the reason it is there. The list only
#: shrinks: an edge that is gone must be struck from it (the test says so).
KNOWN_BACK_EDGES: set[tuple[str, str]] = set()


def test_packages_import_each_other_without_a_cycle() -> None:
    packages = package_graph(import_graph())
    stale = sorted(edge for edge in KNOWN_BACK_EDGES if edge[1] not in packages[edge[0]])
    assert not stale, f"these package imports are gone; strike them from KNOWN_BACK_EDGES: {stale}"
    for source, target in KNOWN_BACK_EDGES:
        packages[source].discard(target)
    cycle = find_cycle(packages)
    assert cycle is None, "package import cycle: " + " -> ".join(cycle or [])


def test_the_package_checker_sees_a_cycle_between_packages() -> None:
    graph = {
        "fastrlm._core.ledger": {"fastrlm.lm._base"},
        "fastrlm.lm._retry": {"fastrlm._core.ledger", "fastrlm._foundation.usage"},
        "fastrlm.lm._base": set(),
        "fastrlm._foundation.usage": set(),
    }
    packages = package_graph(graph)
    assert packages["fastrlm.lm"] == {"fastrlm._core", FOUNDATIONS}
    assert find_cycle(packages) == ["fastrlm._core", "fastrlm.lm", "fastrlm._core"]


def test_providers_sit_below_the_engine() -> None:
    """``fastrlm.lm`` imports only itself and the foundations, at module level or deferred:
    the engine reaches providers, never the other way (the retry loop finds the ledger through
    ``fastrlm._foundation.gate``, limits come from ``fastrlm._foundation.limits``)."""
    graph = import_graph(deferred=True)
    above = sorted(
        (module, target)
        for module, targets in graph.items() if package_of(module) == "fastrlm.lm"
        for target in targets if package_of(target) not in ("fastrlm.lm", FOUNDATIONS)
    )
    assert above == [], above


def test_the_foundations_package_imports_nothing_above_it() -> None:
    graph = import_graph(deferred=True)
    for module in (m for m in graph if m.startswith("fastrlm._foundation")):
        assert all(package_of(t) == FOUNDATIONS for t in graph[module]), (module, graph[module])


# -- the layer rules (docs/architecture.md, "Layers") ---------------------------------------

#: Each package's rank: a module imports (at module level or deferred, inside a function) only
#: from its own package or from a package of a lower rank.
LAYERS: dict[str, int] = {
    FOUNDATIONS: 0,
    "fastrlm.sandbox": 1,
    "fastrlm.lm": 1,
    "fastrlm.trace": 1,
    "fastrlm.telemetry": 1,
    "fastrlm.context": 2,
    "fastrlm._core": 3,
    "fastrlm.testing": 4,
    "fastrlm": 5,  # the public doors: fastrlm/__init__.py, fastrlm.events, fastrlm.abc
    "fastrlm.events": 5,
    "fastrlm.abc": 5,
    "fastrlm.jobs": 6,
    "fastrlm.server": 6,
    "fastrlm.mcp": 6,
    "fastrlm.compat": 6,
    "fastrlm.integrations": 6,
    "fastrlm.bench": 7,
    "fastrlm.cli": 8,
    "fastrlm.__main__": 9,
}
#: Known exceptions to the layer order, each with its reason. The list only shrinks.
LAYER_EXCEPTIONS: dict[tuple[str, str], str] = {
    ("fastrlm", "fastrlm.jobs"): "fastrlm.batch / Job / JobResult are re-exported by the door",
    ("fastrlm.bench", "fastrlm.cli"): "bench's command reuses the CLI's option blocks",
}


def test_every_package_has_a_rank() -> None:
    packages = {package_of(m) for m in import_graph()}
    assert packages == set(LAYERS), packages ^ set(LAYERS)


def test_imports_run_downhill() -> None:
    wrong, used = set(), set()
    for module, targets in import_graph(deferred=True).items():
        a = package_of(module)
        for target in targets:
            b = package_of(target)
            if a == b:
                continue
            if (a, b) in LAYER_EXCEPTIONS:
                used.add((a, b))
            elif LAYERS[b] >= LAYERS[a]:
                wrong.add(f"{module} -> {target}")
    assert not wrong, "imports against the layer order:\n" + "\n".join(sorted(wrong))
    stale = sorted(set(LAYER_EXCEPTIONS) - used)
    assert not stale, f"strike these from LAYER_EXCEPTIONS, they no longer occur: {stale}"


def _private_imports() -> set[str]:
    """Imports of another public package's private module (``fastrlm.lm._base`` from outside
    ``fastrlm.lm``). The foundations and the engine are rooms of their own, imported downhill."""
    found = set()
    for module, targets in import_graph(deferred=True).items():
        for target in targets:
            package = package_of(target)
            leaf = target.rpartition(".")[2]
            if (package not in (package_of(module), FOUNDATIONS, "fastrlm._core")
                    and leaf.startswith("_") and not leaf.startswith("__")):
                found.add(f"{module} -> {target}")
    return found


#: Another package's private modules still imported, each a door still to open. Shrink, never
#: grow: a new cross-package import goes through the package's ``__init__``.
PRIVATE_IMPORTS: frozenset[str] = frozenset({
    # the bench command is a CLI command kept beside its harness; it shares the option blocks
    "fastrlm.bench._cli -> fastrlm.cli._options",
})


def test_no_package_imports_another_packages_private_module() -> None:
    found = _private_imports()
    stale = sorted(PRIVATE_IMPORTS - found)
    assert not stale, f"strike these from PRIVATE_IMPORTS, they no longer occur: {stale}"
    new = sorted(found - PRIVATE_IMPORTS)
    assert not new, "private modules imported across packages:\n" + "\n".join(new)
