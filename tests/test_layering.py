"""Data flows one way (DESIGN.md): a module never imports a stage downstream of it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "evalkit"

# Lower rank = further upstream. A module may import only modules of equal or lower rank.
RANKS: dict[str, int] = {
    "evalkit": 0,
    "evalkit.errors": 0,
    "evalkit.requests": 0,
    "evalkit.metrics": 0,
    "evalkit.fingerprint": 0,
    "evalkit.hub": 0,
    "evalkit.tasks": 1,
    "evalkit.backends.base": 2,
    "evalkit.cache": 2,
    "evalkit.engine": 2,
    "evalkit.backends": 3,
    "evalkit.sandbox": 3,
    "evalkit.stats": 4,
    "evalkit.schema": 4,
    "evalkit.scoring": 4,
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
    "evalkit.inputs": 8,
    "evalkit.sweep": 8,
    "evalkit.trackers": 8,
    "evalkit.cli": 9,
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
