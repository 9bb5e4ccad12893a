"""Task kinds: what a native YAML file's `kind` names, listed in ONE table (`KINDS`).

A native task file says what TYPE of task it is (`kind: native | probe | code`) apart from the
SHAPE of its requests (`request: multiple_choice | loglikelihood | rolling | generate`, for
`kind: native`; a probe or code task fixes its own). Each kind is a `TaskKind`: it loads its
YAML into a spec (failing with one line that names the file) and builds the Task from the spec.

There is no registration by import: a kind exists when it is listed in `KINDS` (or passed to
`kind_table` by a caller, e.g. `evalkit.score(..., task_kinds=...)`), and a name listed twice is
an error. docs/tasks.md walks through adding one.

Old spelling (before the split): `kind: multiple_choice` (or another request shape) meant
`kind: native` with that request. `evalkit.tasks.native_spec.migrate` rewrites it so, explicitly,
in one place; every shipped file under tasks/ uses the new spelling.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

from evalkit.errors import EvalkitError
from evalkit.tasks.base import Identity, Task
from evalkit.tasks.code import CodeTask, load_code_spec
from evalkit.tasks.native import NativeTask
from evalkit.tasks.native_spec import REQUEST_SHAPES, load_spec_raw, migrate
from evalkit.tasks.probes.registry import load_probe_spec, make_probe


class KindSpec(Identity, Protocol):
    """What every kind's spec tells the task listing and the registry: the task's identity
    (declared once, on `Identity`; its task reads it from here) and where it came from."""

    @property
    def description(self) -> str: ...

    @property
    def source_file(self) -> Path: ...

    @property
    def kind(self) -> str:
        """A label for listings (`native:multiple_choice`, `probe:niah`, `code:humaneval`)."""
        ...


class TaskKind(Protocol):
    """One task type of native YAML files."""

    @property
    def name(self) -> str:
        """The value of the YAML `kind` key."""
        ...

    def load(self, path: Path, raw: Mapping[str, Any]) -> KindSpec:
        """The spec of the file at `path` (parsed as `raw`); EvalkitError naming it if bad."""
        ...

    def build(self, spec: Any) -> Task:
        """The task of a spec this kind's `load` returned."""
        ...


class NativeKind:
    """Templated documents (a generator or JSONL) asked in one request shape."""

    name = "native"

    def load(self, path: Path, raw: Mapping[str, Any]) -> KindSpec:
        return load_spec_raw(path, raw)

    def build(self, spec: Any) -> Task:
        return NativeTask(spec)


class ProbeKind:
    """A probe the templates cannot express (evalkit.tasks.probes: `probe: NAME`)."""

    name = "probe"

    def load(self, path: Path, raw: Mapping[str, Any]) -> KindSpec:
        return load_probe_spec(path, raw)

    def build(self, spec: Any) -> Task:
        return make_probe(spec)


class CodeKind:
    """Generated programs run against tests in the sandbox."""

    name = "code"

    def load(self, path: Path, raw: Mapping[str, Any]) -> KindSpec:
        return load_code_spec(path, raw)

    def build(self, spec: Any) -> Task:
        return CodeTask(spec)


def kind_table(kinds: Iterable[TaskKind]) -> Mapping[str, TaskKind]:
    """A read-only name -> kind mapping; a name listed twice (or a request shape's name,
    which the old spelling reads as `native`) is an error."""
    table: dict[str, TaskKind] = {}
    for kind in kinds:
        if kind.name in table:
            raise EvalkitError(f"task kind {kind.name!r} is listed twice")
        if kind.name in REQUEST_SHAPES:
            raise EvalkitError(f"task kind {kind.name!r} is a request shape's name")
        table[kind.name] = kind
    return MappingProxyType(table)


# THE table of task kinds. Adding a kind: a module with its class, and one line here.
KINDS: Mapping[str, TaskKind] = kind_table(
    [
        NativeKind(),
        ProbeKind(),
        CodeKind(),
    ]
)


def with_kinds(extra: Iterable[TaskKind]) -> Mapping[str, TaskKind]:
    """The built-in kinds and `extra` (a caller's own), duplicates an error."""
    extra = list(extra)
    return KINDS if not extra else kind_table([*KINDS.values(), *extra])


# Keys that make a YAML mapping an lm-eval task config (a task, a group, a tag or an include
# template); such files are left to lm-eval's TaskManager.
LMEVAL_KEYS = frozenset(
    {
        "task", "group", "tag", "include", "dataset_path", "output_type", "doc_to_text",
        "doc_to_target", "doc_to_choice", "metric_list", "test_split", "task_alias",
    }
)  # fmt: skip


def is_native(raw: Any) -> bool:
    return isinstance(raw, dict) and "kind" in raw and "task" not in raw


def check_lmeval_or_native(path: Path, raw: Any) -> None:
    """Nothing when `raw` is native or lm-eval YAML; else one line naming the file."""
    if is_native(raw) or (isinstance(raw, dict) and LMEVAL_KEYS.intersection(raw)):
        return
    raise EvalkitError(
        f"task file {path} is neither a native task (no 'kind') nor lm-eval YAML "
        "(no 'task', 'group', 'tag' or 'include')"
    )


def load_native(
    path: Path, raw: Mapping[str, Any], kinds: Mapping[str, TaskKind]
) -> tuple[TaskKind, KindSpec]:
    """The kind a native file names (old spelling migrated) and the spec it loads."""
    raw = migrate(raw)
    kind = raw.get("kind")
    if not isinstance(kind, str) or kind not in kinds:
        raise EvalkitError(
            f"malformed task spec {path}: unknown kind {kind!r} (kinds: {', '.join(kinds)}; "
            f"old spelling: {', '.join(REQUEST_SHAPES)})"
        )
    return kinds[kind], kinds[kind].load(path, raw)
