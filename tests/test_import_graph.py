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
    names = [f"{base}.{alias.name}" for alias in node.names] if node.module is None else [base]
    return names


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
    # the shared foundations every layer uses stay at the top; the engine is in _core
    assert loose == [
        "fastrlm._foundation.errors",
        "fastrlm._foundation.home",
        "fastrlm._foundation.pricing",
        "fastrlm._foundation.schema",
        "fastrlm._foundation.usage",
        "fastrlm._foundation.validate",
        "fastrlm._foundation.windows",
    ], loose
    assert not any(dep.startswith("fastrlm._core") for dep in graph["fastrlm._core"])


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
        # foundations with no public name yet: the [error: kind] vocabulary, per-call pricing,
        # model windows, and the paper's Qwen3-Coder paragraph (only the bench adds it)
        "fastrlm.bench._baselines -> fastrlm.sandbox._hostcalls",
        "fastrlm.bench._codeact -> fastrlm.sandbox._hostcalls",
        "fastrlm.bench._meter -> fastrlm._foundation.pricing",
        "fastrlm.bench._meter -> fastrlm._foundation.windows",
        "fastrlm.bench._config -> fastrlm._core.paper_prompts",
    ]), private


#: Package imports that still close a circle, each with the reason it is there. The list only
#: shrinks: an edge that is gone must be struck from it (the test says so).
KNOWN_BACK_EDGES = {
    # _exceptions annotates with the engine's stop reasons and result
    (FOUNDATIONS, "fastrlm._core"),
    # the engine starts telemetry spans; telemetry reads the engine's event classes
    ("fastrlm.telemetry", "fastrlm._core"),
}


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
