"""Suites degrade per task, loudly.

A task that cannot run on this checkpoint or host (no needle length fits the window, a prompt
longer than the window under `--truncation error`, no sandbox for generated code under
`--sandbox strict`, no item that fits) is dropped from the run with its reason: printed on
stderr when it happens, recorded in the manifest as `skipped_tasks` (a list of
`{"task", "family", "reason"}`, `Manifest.skipped_tasks` typed) and shown by the console and
the report. `strict=True` (`--strict-suite`) turns every skip back into the error that caused
it, raised where it happens, for pipelines that want one task's failure to stop everything.

Each function here returns the skips it caused as frozen values (a tuple of `SkippedTask`);
nothing records them on the side. The stage that calls it keeps them in its own output (the
plan's `skipped`, the execution's `skipped`) and the write stage records both.

Only `TaskCannotRun` and `ContextTooLongError` are skips: a malformed task file, an unknown
task or a damaged checkpoint still stops the run, whatever the mode.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

from evalkit.engine import Engine, EngineResult
from evalkit.errors import ContextTooLongError, EvalkitError, TaskCannotRun
from evalkit.manifest_records import SkippedTask
from evalkit.tasks.base import Item, Task

MANIFEST_KEY = "skipped_tasks"

Items = Mapping[str, tuple[Item, ...]]
Echo = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def frozen_items(items: Mapping[str, Sequence[Item]]) -> Items:
    """A read-only mapping of task -> tuple of items (a plan's or an execution's)."""
    return MappingProxyType({name: tuple(its) for name, its in items.items()})


def skip(task: Task, error: EvalkitError, strict: bool) -> SkippedTask:
    """`task` skipped for `error`; under `strict`, `error` itself, raised here."""
    if strict:
        raise error
    message = str(error)
    # The task is named beside the reason already.
    return SkippedTask(task.name, task.family, message.removeprefix(f"task {task.name}: "), message)


def check_left(
    tasks: Sequence[Task],
    new: Sequence[SkippedTask],
    last: EvalkitError | None,
    earlier: Sequence[SkippedTask] = (),
    echo: Echo = _stderr,
) -> None:
    """Fail when every task was skipped (an empty run answers nothing; the error names every
    reason, in one line); else say the `new` skips (`last`: the error of the last of them), as
    the run goes on without them."""
    if not tasks:
        every = (*earlier, *new)
        if last is not None and len({s.message for s in every}) == 1:
            raise last  # one cause (one task asked for): the error as it was
        reasons = "; ".join(f"{s.task}: {s.reason}" for s in every)
        raise EvalkitError(f"no task can run on this checkpoint ({reasons})")
    for s in new:
        echo(f"skipped task {s.task} ({s.family}): {s.reason}")


def build_items(
    tasks: Sequence[Task],
    build: Callable[[Task], list[Item]],
    strict: bool,
    earlier: Sequence[SkippedTask] = (),
    echo: Echo = _stderr,
) -> tuple[tuple[Task, ...], Items, tuple[SkippedTask, ...]]:
    """Each task's items (the tasks kept, their items, the tasks skipped here); a task that
    cannot build any here is skipped."""
    kept: list[Task] = []
    items: dict[str, tuple[Item, ...]] = {}
    new: list[SkippedTask] = []
    last: EvalkitError | None = None
    for task in tasks:
        try:
            its = tuple(build(task))
            if not its:
                raise TaskCannotRun(f"task {task.name} has no items that fit this checkpoint")
        except TaskCannotRun as exc:
            new.append(skip(task, exc, strict))
            last = exc
            continue
        kept.append(task)
        items[task.name] = its
    check_left(kept, new, last, earlier, echo)
    return tuple(kept), MappingProxyType(items), tuple(new)


def drop(
    tasks: Sequence[Task],
    doomed: Sequence[Task],
    error: EvalkitError,
    strict: bool,
    earlier: Sequence[SkippedTask] = (),
    echo: Echo = _stderr,
) -> tuple[tuple[Task, ...], tuple[SkippedTask, ...]]:
    """(`tasks` less `doomed`, the skips: each of `doomed` for `error`)."""
    names = {t.name for t in doomed}
    new = tuple(skip(task, error, strict) for task in doomed)
    kept = tuple(t for t in tasks if t.name not in names)
    check_left(kept, new, error if new else None, earlier, echo)
    return kept, new


def run_fitting(
    engine: Engine,
    tasks: Sequence[Task],
    items: Mapping[str, Sequence[Item]],
    strict: bool,
    earlier: Sequence[SkippedTask] = (),
    echo: Echo = _stderr,
) -> tuple[EngineResult, tuple[Task, ...], Items, tuple[SkippedTask, ...]]:
    """Run the engine on every task's requests; a task with a request that does not fit the
    window is skipped and the rest run again (the engine checks every length before any
    work, so a retry costs only the planning). (result, tasks kept, their items, the tasks
    skipped here)."""
    kept = tuple(tasks)
    new: tuple[SkippedTask, ...] = ()
    while True:
        requests = [r for t in kept for it in items[t.name] for r in it.requests]
        try:
            result = engine.run(requests)
        except ContextTooLongError as exc:
            message = str(exc)
            doomed = [t for t in kept if _holds(items[t.name], message)]
            located = ContextTooLongError(locate(message, {t.name: items[t.name] for t in kept}))
            if not doomed or strict:
                raise located from None
            kept, more = drop(kept, doomed, located, strict, (*earlier, *new), echo)
            new += more
            continue
        return result, kept, frozen_items({t.name: items[t.name] for t in kept}), new


def _holds(items: Sequence[Item], message: str) -> bool:
    return any(r.hash[:12] in message for it in items for r in it.requests)


def locate(message: str, items: Mapping[str, Sequence[Item]]) -> str:
    """Name the task and document behind a request-hash error message."""
    for task, its in items.items():
        for it in its:
            for r in it.requests:
                if r.hash[:12] in message:
                    detail = message.replace(f"request {r.hash[:12]} ", "")
                    return f"task {task} doc {it.doc_id}: {detail}"
    return message
