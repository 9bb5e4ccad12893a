"""Suites degrade per task, loudly.

A task that cannot run on this checkpoint or host (no needle length fits the window, a prompt
longer than the window under `--truncation error`, no sandbox for generated code under
`--sandbox strict`, no item that fits) is dropped from the run with its reason: printed on
stderr when it happens, recorded in the manifest as `skipped_tasks` (a list of
`{"task", "family", "reason"}`, the key the gate and the report read) and shown by the console
and the report. `strict=True` (`--strict-suite`) turns every skip back into the error that
caused it, for pipelines that want one task's failure to stop everything.

Only `TaskCannotRun` and `ContextTooLongError` are skips: a malformed task file, an unknown
task or a damaged checkpoint still stops the run, whatever the mode.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from evalkit.engine import Engine, EngineResult
from evalkit.errors import ContextTooLongError, EvalkitError, TaskCannotRun
from evalkit.tasks.base import Item, Task

MANIFEST_KEY = "skipped_tasks"


@dataclass(frozen=True)
class SkippedTask:
    task: str
    family: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"task": self.task, "family": self.family, "reason": self.reason}


def manifest_skips(manifest: Mapping[str, Any]) -> list[SkippedTask]:
    """The skipped tasks a run's manifest records (none for runs written before the key)."""
    raw = manifest.get(MANIFEST_KEY) or []
    return [SkippedTask(str(s["task"]), str(s["family"]), str(s["reason"])) for s in raw]


class SuiteSkips:
    """Collects the run's skips (a run-local accumulator, handed to the manifest at the end)."""

    def __init__(self, strict: bool, echo: Callable[[str], None] | None = None) -> None:
        self.strict = strict
        self.skipped: list[SkippedTask] = []
        self._errors: list[EvalkitError] = []
        self._said = 0
        self._echo = echo or (lambda line: print(line, file=sys.stderr))

    def skip(self, task: Task, error: EvalkitError) -> None:
        if self.strict:
            raise error
        # The task is named beside the reason already.
        reason = str(error).removeprefix(f"task {task.name}: ")
        self.skipped.append(SkippedTask(task.name, task.family, reason))
        self._errors.append(error)

    def to_manifest(self) -> list[dict[str, str]]:
        return [s.to_dict() for s in self.skipped]

    def check_left(self, tasks: Sequence[Task]) -> None:
        """Fail when every task was skipped (an empty run answers nothing; the error names
        every reason, in one line); else say the new skips, as the run goes on without them."""
        if not tasks:
            if len({str(e) for e in self._errors}) == 1:
                raise self._errors[-1]  # one cause (one task asked for): the error as it was
            reasons = "; ".join(f"{s.task}: {s.reason}" for s in self.skipped)
            raise EvalkitError(f"no task can run on this checkpoint ({reasons})")
        for s in self.skipped[self._said :]:
            self._echo(f"skipped task {s.task} ({s.family}): {s.reason}")
        self._said = len(self.skipped)

    def build_items(
        self, tasks: Sequence[Task], build: Callable[[Task], list[Item]]
    ) -> tuple[list[Task], dict[str, list[Item]]]:
        """Each task's items; a task that cannot build any here is skipped."""
        kept: list[Task] = []
        items: dict[str, list[Item]] = {}
        for task in tasks:
            try:
                its = build(task)
                if not its:
                    raise TaskCannotRun(f"task {task.name} has no items that fit this checkpoint")
            except TaskCannotRun as exc:
                self.skip(task, exc)
                continue
            kept.append(task)
            items[task.name] = its
        self.check_left(kept)
        return kept, items

    def drop(
        self, tasks: Sequence[Task], doomed: Sequence[Task], error: EvalkitError
    ) -> list[Task]:
        """`tasks` less `doomed`, each of them skipped for `error`."""
        names = {t.name for t in doomed}
        for task in doomed:
            self.skip(task, error)
        kept = [t for t in tasks if t.name not in names]
        self.check_left(kept)
        return kept

    def run(
        self, engine: Engine, tasks: Sequence[Task], items: dict[str, list[Item]]
    ) -> tuple[EngineResult, list[Task], dict[str, list[Item]]]:
        """Run the engine on every task's requests; a task with a request that does not fit the
        window is skipped and the rest run again (the engine checks every length before any
        work, so a retry costs only the planning)."""
        kept = list(tasks)
        while True:
            requests = [r for t in kept for it in items[t.name] for r in it.requests]
            try:
                return engine.run(requests), kept, {t.name: items[t.name] for t in kept}
            except ContextTooLongError as exc:
                message = str(exc)
                doomed = [t for t in kept if _holds(items[t.name], message)]
                located = ContextTooLongError(
                    locate(message, {t.name: items[t.name] for t in kept})
                )
                if not doomed or self.strict:
                    raise located from None
                kept = self.drop(kept, doomed, located)


def _holds(items: Sequence[Item], message: str) -> bool:
    return any(r.hash[:12] in message for it in items for r in it.requests)


def locate(message: str, items: dict[str, list[Item]]) -> str:
    """Name the task and document behind a request-hash error message."""
    for task, its in items.items():
        for it in its:
            for r in it.requests:
                if r.hash[:12] in message:
                    detail = message.replace(f"request {r.hash[:12]} ", "")
                    return f"task {task} doc {it.doc_id}: {detail}"
    return message
