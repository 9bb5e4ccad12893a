"""Finding tasks and suites: native specs by name, suites by name, the rest from lm-eval.

Resolution of a task name: `lmeval:NAME` always goes to lm-eval; otherwise a native task of
that name; otherwise lm-eval's TaskManager (its registry plus `--tasks-dir`). Two native specs
with one name are an error naming both files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from evalkit.errors import EvalkitError
from evalkit.tasks.base import Task
from evalkit.tasks.kinds import (
    KINDS,
    KindSpec,
    TaskKind,
    check_lmeval_or_native,
    is_native,
    load_native,
)

LMEVAL_PREFIX = "lmeval:"


def builtin_tasks_dir() -> Path:
    env = os.environ.get("EVALKIT_TASKS_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "tasks"


class _TolerantLoader(yaml.SafeLoader):
    """Reads lm-eval YAML too: its `!function` tags become plain strings."""


def _any_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)  # type: ignore[arg-type]


_TolerantLoader.add_multi_constructor("!", _any_tag)


def read_yaml(path: Path) -> Any:
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_TolerantLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise EvalkitError(f"malformed task YAML {path}: invalid YAML{where}") from None


@dataclass(frozen=True)
class Declared:
    """A native task file: its spec and the kind that loaded it (and builds its task)."""

    spec: KindSpec
    kind: TaskKind

    def build(self) -> Task:
        return self.kind.build(self.spec)


def declared_tasks(
    dirs: Sequence[Path], kinds: Mapping[str, TaskKind] = KINDS
) -> dict[str, Declared]:
    """Native task files by task name, each loaded by the kind its `kind` names. lm-eval YAML
    is left to lm-eval's TaskManager; a file that is neither is an error naming it."""
    found: dict[str, Declared] = {}
    for root in dirs:
        if not root.is_dir():
            raise EvalkitError(f"tasks directory not found: {root}")
        for path in sorted(root.rglob("*.yaml")):
            if path.parent.name in ("suites", "gates"):
                continue
            raw = read_yaml(path)
            check_lmeval_or_native(path, raw)
            if not is_native(raw):
                continue  # lm-eval YAML, left to lm-eval's TaskManager
            kind, spec = load_native(path, raw, kinds)
            if spec.name in found:
                first = found[spec.name].spec.source_file
                raise EvalkitError(f"duplicate task name {spec.name!r}: {first} and {path}")
            found[spec.name] = Declared(spec, kind)
    return found


def native_specs(
    dirs: Sequence[Path], kinds: Mapping[str, TaskKind] = KINDS
) -> dict[str, KindSpec]:
    """Native task specs by name (for listings)."""
    return {name: d.spec for name, d in declared_tasks(dirs, kinds).items()}


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    tasks: tuple[str, ...]
    source_file: Path
    # lm-eval tasks listed under a family take that family (groups keep their own rows).
    families: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Few-shot count per task (lm-eval tasks; --num-fewshot overrides them all).
    fewshot: Mapping[str, int] = field(default_factory=dict)


def suites_dir() -> Path:
    return builtin_tasks_dir() / "suites"


def available_suites() -> list[str]:
    d = suites_dir()
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def load_suite(name_or_path: str) -> Suite:
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        path = suites_dir() / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(available_suites()) or "none"
        raise EvalkitError(f"unknown suite {name_or_path!r} (built-in suites: {known})")
    raw = read_yaml(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("tasks"), list) or not raw["tasks"]:
        raise EvalkitError(f"malformed suite {path}: needs a non-empty 'tasks' list")
    tasks = tuple(str(t) for t in raw["tasks"])
    if len(set(tasks)) != len(tasks):
        raise EvalkitError(f"malformed suite {path}: a task is listed twice")
    families = raw.get("families") or {}
    fewshot = raw.get("fewshot") or {}
    if not isinstance(families, dict) or not isinstance(fewshot, dict):
        raise EvalkitError(f"malformed suite {path}: 'families' and 'fewshot' must be mappings")
    stray = sorted(set(fewshot) - set(tasks))
    if stray:
        raise EvalkitError(f"malformed suite {path}: fewshot names tasks not in it: {stray}")
    try:
        shots = {str(k): int(v) for k, v in fewshot.items()}
    except (TypeError, ValueError):
        raise EvalkitError(f"malformed suite {path}: fewshot counts must be integers") from None
    return Suite(
        name=str(raw.get("name", path.stem)),
        description=str(raw.get("description", "")),
        tasks=tasks,
        source_file=path,
        families={str(f): tuple(str(t) for t in (ts or [])) for f, ts in families.items()},
        fewshot=shots,
    )


def resolve_tasks(
    names: Sequence[str], tasks_dir: Path | None = None, kinds: Mapping[str, TaskKind] = KINDS
) -> list[Task]:
    """Tasks for `names`, in order; unknown names fail before any model is loaded. `kinds`
    is the table of task kinds (`evalkit.tasks.kinds.with_kinds` adds a caller's own)."""
    if not names:
        raise EvalkitError("no tasks given")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise EvalkitError(f"task {dup!r} is listed twice")
    dirs = [builtin_tasks_dir()] + ([tasks_dir] if tasks_dir is not None else [])
    specs = declared_tasks(dirs, kinds)
    native: dict[str, Task] = {}
    lmeval_names: list[str] = []
    for n in names:
        if n.startswith(LMEVAL_PREFIX):
            lmeval_names.append(n[len(LMEVAL_PREFIX) :])
        elif n in specs:
            native[n] = specs[n].build()
        else:
            lmeval_names.append(n)
    loaded: dict[str, Task] = {}
    if lmeval_names:
        from evalkit.tasks.lmeval_load import load_lmeval_tasks

        for t in load_lmeval_tasks(lmeval_names, tasks_dir):
            loaded[t.name] = t
    out: list[Task] = []
    for n in names:
        if n in native:
            out.append(native[n])
    out.extend(loaded.values())
    names_seen = [t.name for t in out]
    if len(set(names_seen)) != len(names_seen):
        dup = next(n for n in names_seen if names_seen.count(n) > 1)
        raise EvalkitError(f"two tasks are named {dup!r} (a native task and an lm-eval task?)")
    return out
