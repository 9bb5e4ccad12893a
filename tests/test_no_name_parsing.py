"""Report and analysis code reads score rows' fields (evalkit.schema), never structure encoded in
names: no `family:` prefixes, no regular expressions over metric or task names, no `metric[k=v]`
splitting. Only evalkit.migrate decodes version-1 names, once, when an old run is read.

A grep-style check over the source (AST, so comments and docstrings do not count), with a
negative control: the same check flags the version-1 style code it replaced."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "evalkit"
READERS = [
    *sorted((PACKAGE / "analysis").glob("*.py")),
    *sorted((PACKAGE / "report").glob("*.py")),
    PACKAGE / "catalog.py",
    PACKAGE / "export.py",
    PACKAGE / "trackers.py",
]
# Regular expressions these modules may use, by module and the name they are bound to, with why.
ALLOWED_REGEX = {
    # table cells (numbers and intervals), not names
    ("blocks.py", "_NUMERIC"),
    # file names made from titles
    ("common.py", "slug"),
    # code tasks still put k in the metric name (pass@1, pass_at_5); goes when code tasks
    # declare k as a bucket (issue 18, item 3: the TaskKind registry)
    ("sections.py", "_PASS"),
    # words of a document for n-gram overlap, not names
    ("contamination.py", "_WORD"),
}
NAME_TOKENS = ("family:", "[k=", "[len=", "_gap_en[", "depth=", "recall>=")


def _violations(path_name: str, source: str) -> list[str]:
    tree = ast.parse(source)
    found = []
    regex_ok = {name for module, name in ALLOWED_REGEX if module == path_name}
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    scope: list[str] = []

    def visit(node: ast.AST) -> None:
        named = isinstance(node, ast.FunctionDef | ast.Assign)
        if isinstance(node, ast.FunctionDef):
            scope.append(node.name)
        elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            scope.append(node.targets[0].id)
        else:
            named = False
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "re"
            and not (set(scope) & regex_ok)
        ):
            found.append(f"{path_name}:{node.lineno}: re.{node.func.attr} in {scope or 'module'}")
        if isinstance(node, ast.Name) and node.id in ("FAMILY_PREFIX", "V1_FAMILY_PREFIX"):
            found.append(f"{path_name}:{node.lineno}: {node.id}")
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
        ):
            # prose ("family: icl") and CSS are not a prefix
            text = node.value.replace("family: ", "").replace("font-family:", "")
            for token in NAME_TOKENS:
                if token in text:
                    found.append(f"{path_name}:{node.lineno}: {node.value!r}")
        for child in ast.iter_child_nodes(node):
            visit(child)
        if named:
            scope.pop()

    visit(tree)
    return found


def test_readers_never_parse_metric_or_task_names() -> None:
    problems = []
    for path in READERS:
        problems += _violations(path.name, path.read_text())
    assert problems == [], "\n".join(problems)


def test_the_check_flags_name_parsing_negative_control() -> None:
    old = """
import re
FAMILY_PREFIX = "family:"
_CELL = re.compile(r"^recall\\\\[len=(\\\\d+),depth=(\\\\d+)\\\\]$")

def families(rows):
    return [r for r in rows if r.task.startswith("family:")]

def split(metric):
    return _CELL.match(metric)

def gaps(rows):
    return [r for r in rows if "_gap_en[" in r.metric]
"""
    problems = _violations("sections.py", old)
    assert len(problems) >= 5, problems
    assert any("FAMILY_PREFIX" in p for p in problems)
    assert any("re.compile" in p for p in problems)
    assert any("_gap_en[" in p for p in problems)
    # and the allowed cases stay allowed
    assert _violations("blocks.py", "import re\n_NUMERIC = re.compile(r'^[0-9]+$')\n") == []
    assert _violations("sections.py", 'x = f"family: {name}"\n') == []


# The manifest is read through its typed fields (evalkit.schema.Manifest: `m.provenance.
# checkpoint.step`, `m.skipped_tasks`, `m.routing`...), never by key through its mapping view.
def _manifest_by_key(path_name: str, source: str) -> list[str]:
    def is_manifest(node: ast.AST) -> bool:
        return (isinstance(node, ast.Attribute) and node.attr == "manifest") or (
            isinstance(node, ast.Name) and node.id in ("manifest", "manifests")
        )

    found = []
    for node in ast.walk(ast.parse(source)):
        where = f"{path_name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Subscript) and is_manifest(node.value):
            found.append(f"{where}: manifest[...]")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in ("get", "keys", "items", "values") and is_manifest(
                node.func.value
            ):
                found.append(f"{where}: manifest.{node.func.attr}(...)")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id == "dict" and node.args and is_manifest(node.args[0]):
                found.append(f"{where}: dict(manifest)")
            if node.func.id == "read_manifest":  # the untyped record; read_info is typed
                found.append(f"{where}: read_manifest(...)")
        if isinstance(node, ast.Attribute) and node.attr == "raw" and is_manifest(node.value):
            found.append(f"{where}: manifest.raw")
    return found


def test_readers_read_the_manifest_by_field_not_by_key() -> None:
    problems = []
    for path in READERS:
        problems += _manifest_by_key(path.name, path.read_text())
    assert problems == [], "\n".join(problems)


def test_the_manifest_check_flags_reads_by_key_negative_control() -> None:
    old = """
def header(run, manifest):
    prov = run.manifest.get("provenance") or {}
    suite = manifest["suite"]
    whole = dict(run.manifest)
    raw = manifest.raw
    return read_manifest(run.path)
"""
    problems = _manifest_by_key("sections.py", old)
    assert len(problems) == 5, problems
    typed = """
def header(run):
    step = run.manifest.provenance.checkpoint.step if run.manifest.provenance else None
    return run.manifest.skipped_tasks, run.manifest.suite, run.manifest.to_dict(), step
"""
    assert _manifest_by_key("sections.py", typed) == []
