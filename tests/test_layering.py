"""Data flows one way (DESIGN.md): a module never imports a stage downstream of it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "evalkit"

# Lower rank = further upstream. A module may import only modules of equal or lower rank.
RANKS: dict[str, int] = {
    "evalkit": 0,
    "evalkit.errors": 0,
    "evalkit.frozen": 0,
    "evalkit.requests": 0,
    "evalkit.metrics": 0,
    "evalkit.fingerprint": 0,
    "evalkit.hub": 0,
    "evalkit.tasks": 1,
    "evalkit.backends.base": 2,
    "evalkit.cache": 2,
    "evalkit.encoding": 2,
    "evalkit.batching": 2,
    "evalkit.engine": 2,
    "evalkit.backends": 3,
    "evalkit.sandbox": 3,
    "evalkit.stats": 4,
    "evalkit.schema": 4,
    "evalkit.manifest": 4,
    "evalkit.manifest_records": 4,
    "evalkit.aggregate": 4,
    "evalkit.pipeline.config": 4,
    "evalkit.group_scores": 4,
    "evalkit.provenance": 5,
    "evalkit.migrate": 5,
    "evalkit.run_facts": 5,
    "evalkit.store": 5,
    "evalkit.skips": 5,
    "evalkit.analysis": 6,
    "evalkit.catalog": 6,
    "evalkit.export": 6,
    "evalkit.report": 7,
    "evalkit.api": 8,
    "evalkit.decisions": 8,
    "evalkit.routing_run": 8,
    "evalkit.pipeline": 8,
    "evalkit.inputs": 8,
    "evalkit.sweep": 8,
    "evalkit.trackers": 8,
    "evalkit.cli": 9,
    "evalkit.cli_options": 9,
}


def rank(module: str) -> int:
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        name = ".".join(parts[:i])
        if name in RANKS:
            return RANKS[name]
    raise AssertionError(f"{module} has no place in the data flow: add it to RANKS")


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("evalkit"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("evalkit"):
            found.add(node.module)
    return found


def test_no_module_imports_downstream() -> None:
    bad = []
    for path in PACKAGE.rglob("*.py"):
        mod = module_name(path)
        if mod == "evalkit":
            continue  # the package root re-exports the API lazily, inside functions
        for imp in imports(path):
            if rank(imp) > rank(mod):
                bad.append(f"{mod} (rank {rank(mod)}) imports {imp} (rank {rank(imp)})")
    assert not bad, "\n".join(bad)


def _module_graph(top_level_only: bool) -> dict[str, set[str]]:
    """evalkit module -> the evalkit modules it imports (`from pkg import mod` counts as
    importing `pkg.mod` when that is a module)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for mod, path in modules.items():
        tree = ast.parse(path.read_text())
        nodes = tree.body if top_level_only else list(ast.walk(tree))
        deps: set[str] = set()
        for node in nodes:
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom) and node.module in modules:
                subs = {f"{node.module}.{a.name}" for a in node.names}
                deps.update(subs & modules.keys())
                if not subs <= modules.keys():  # a name defined in the module itself
                    deps.add(node.module)
        graph[mod] = {d for d in deps if d in modules and d != mod}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` (as a path that returns to its start), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                return [*path[path.index(d) :], d]
            if d not in state and (found := visit(d)):
                return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_import_cycle_in_evalkit() -> None:
    # Package __init__ modules are skipped as sources: importing `evalkit` re-exports lazily.
    graph = _module_graph(top_level_only=True)
    graph["evalkit"] = set()
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    # Negative control: the finder reports a planted cycle and passes an acyclic graph.
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
