"""Loading lm-eval tasks: names (tasks, groups, tags, YAML files) through lm-eval's `TaskManager`
into LMEvalTask objects, with what lm-eval leaves silent made loud first (a YAML file it cannot
parse, a name defined twice, an unknown name with the close matches). Only this module asks
lm-eval for tasks; lmeval.py wraps each one.

lm-eval is imported inside functions only: importing this module stays cheap.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evalkit.errors import EvalkitError
from evalkit.tasks.groups import group_spec
from evalkit.tasks.lmeval import DEFAULT_FAMILY, LMEvalTask
from evalkit.tasks.lmeval_code import LMEvalCodeTask, deferred_code_eval
from evalkit.tasks.lmeval_convert import first_line

_IGNORED_DIRS = frozenset({"__pycache__", ".ipynb_checkpoints"})


def load_lmeval_tasks(names: Sequence[str], tasks_dir: Path | None = None) -> list[LMEvalTask]:
    """The lm-eval tasks for `names` (tasks, groups or tags; groups and tags expand to their
    tasks), in order. `tasks_dir` is a directory of lm-eval YAML searched before the registry.
    """
    if not names:
        raise EvalkitError("no lm-eval tasks given")
    if tasks_dir is not None:
        tasks_dir = Path(tasks_dir)
        if not tasks_dir.is_dir():
            raise EvalkitError(f"tasks directory not found: {tasks_dir}")
        _check_yaml_dir(tasks_dir)
    for name in names:
        if _is_yaml_path(name):
            _check_yaml_file(Path(name))
    manager = _task_manager(names, tasks_dir)

    out: list[LMEvalTask] = []
    origin: dict[str, str] = {}
    for name in names:
        entry = manager.task_index.get(name)
        if entry is None and not _is_yaml_path(name):
            raise EvalkitError(_unknown(name, manager.all_tasks, tasks_dir))
        where = f" ({entry.yaml_path})" if entry is not None and entry.yaml_path else ""
        try:
            # Code tasks' modules load `code_eval` at import: it must never run here.
            with deferred_code_eval():
                loaded = manager.load([name])
        except Exception as exc:
            raise EvalkitError(
                f"cannot load lm-eval task {name!r}{where}: {first_line(exc)}"
            ) from exc
        is_collection = entry is not None and entry.kind.name in ("GROUP", "TAG")
        family = name if is_collection else DEFAULT_FAMILY
        specs = [group_spec(g) for g in (loaded.get("groups") or {}).values()]
        for task_name, task in loaded["tasks"].items():
            if task_name in origin:
                raise EvalkitError(
                    f"lm-eval task {task_name!r} is requested twice "
                    f"(by {origin[task_name]!r} and by {name!r})"
                )
            origin[task_name] = name
            mine = tuple(g for g in specs if task_name in g.leaves)
            cls = LMEvalCodeTask if getattr(task, "UNSAFE_CODE", False) else LMEvalTask
            out.append(cls(task, family=family, groups=mine))
    return out


def _is_yaml_path(name: str) -> bool:
    path = Path(name)
    return path.suffix in (".yaml", ".yml") and path.is_file()


def _unknown(name: str, known: Sequence[str], tasks_dir: Path | None) -> str:
    where = "lm-eval's registry" + (f" and {tasks_dir}" if tasks_dir is not None else "")
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.8)
    if close:
        hint = "did you mean " + " or ".join(repr(c) for c in close) + "?"
    else:
        hint = "`lm-eval ls tasks` lists the registry; pass --tasks-dir for your own lm-eval YAML"
    return f"unknown task {name!r}: {where} has no task, group or tag of that name ({hint})"


def _yaml_files(root: Path) -> list[Path]:
    # The files lm-eval's TaskIndex walks.
    return sorted(
        (p for p in root.glob("**/*.yaml") if not _IGNORED_DIRS.intersection(p.parts)),
        key=lambda p: p.as_posix(),
    )


def _check_yaml_file(path: Path) -> dict[str, Any] | None:
    """Parse one YAML file the way lm-eval's index does (includes resolved, `!function` left
    unresolved). lm-eval skips a file it cannot parse without a word; evalkit names it."""
    import yaml
    from lm_eval.tasks._yaml_loader import load_yaml

    try:
        if not path.read_text(encoding="utf-8").strip():
            return None
        cfg = load_yaml(path, resolve_func=False, recursive=True)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise EvalkitError(f"malformed lm-eval task YAML {path}: invalid YAML{at}") from None
    except Exception as exc:
        raise EvalkitError(f"malformed lm-eval task YAML {path}: {first_line(exc)}") from None
    return cfg if isinstance(cfg, dict) else None


def _check_yaml_dir(root: Path) -> None:
    defined: dict[str, Path] = {}
    for path in _yaml_files(root):
        cfg = _check_yaml_file(path)
        if cfg is None:
            continue
        key = "group" if "group" in cfg else "task"
        name = cfg.get(key)
        if not isinstance(name, str):
            continue  # an include template, a native evalkit spec, a suite...
        if name in defined:
            raise EvalkitError(f"duplicate lm-eval {key} name {name!r}: {defined[name]} and {path}")
        defined[name] = path


def _task_manager(names: Sequence[str], tasks_dir: Path | None) -> Any:
    """A TaskManager over `tasks_dir` alone when it defines everything asked for (indexing
    lm-eval's whole registry takes seconds), else over the registry plus `tasks_dir`."""
    from lm_eval.tasks import TaskManager

    if tasks_dir is None:
        return _registry_manager()
    local = TaskManager(include_path=str(tasks_dir), include_defaults=False)
    index = local.task_index
    if all(_self_contained(name, index, set()) for name in names):
        return local
    return TaskManager(include_path=str(tasks_dir))


# The one TaskManager over lm-eval's own registry, made on first use (see _registry_manager).
_REGISTRY: dict[str, Any] = {}


def _registry_manager() -> Any:
    """lm-eval's own registry, indexed once a process: the index parses its ~14,000 YAML files
    (tens of seconds on a loaded 2-core machine), which a training loop or a session scoring
    lm-eval tasks again and again paid on every call. The installed registry does not change
    under a running process and loading reads the index without writing it (configs are
    deep-copied), so one index serves every call. A user's `tasks_dir` can change between
    calls: never cached."""
    if "manager" not in _REGISTRY:
        from lm_eval.tasks import TaskManager

        _REGISTRY["manager"] = TaskManager()
    return _REGISTRY["manager"]


def _self_contained(name: str, index: Mapping[str, Any], seen: set[str]) -> bool:
    """Whether `name` and everything it refers to resolve within `index` (so that adding the
    registry would not change what it loads)."""
    entry = index.get(name)
    if entry is None:
        return False
    if name in seen or entry.kind.name != "GROUP":
        return True
    seen.add(name)
    members = (entry.cfg or {}).get("task")
    return _members_contained(members, index, seen)


def _members_contained(members: Any, index: Mapping[str, Any], seen: set[str]) -> bool:
    if not isinstance(members, list):
        return True
    for m in members:
        if isinstance(m, str):
            ok = _self_contained(m, index, seen)
        elif isinstance(m, dict) and isinstance(m.get("group"), str):
            g = m["group"]
            ok = (
                _self_contained(g, index, seen)
                if g in index
                else _members_contained(m.get("task"), index, seen)
            )
        elif isinstance(m, dict) and isinstance(m.get("task"), str):
            ok = _self_contained(m["task"], index, seen)
        else:
            ok = False
        if not ok:
            return False
    return True
