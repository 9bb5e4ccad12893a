"""Score code tasks: build their programs, run each distinct one once in the sandbox, hand the
results back to the task."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from evalkit.requests import Response
from evalkit.sandbox.executor import Outcome, Sandbox
from evalkit.tasks.base import Item, ItemResult
from evalkit.tasks.code import ExecutedTask, Execution, TestedProgram


def score_executed(
    task: ExecutedTask,
    items: Sequence[Item],
    responses: Sequence[Sequence[Response]],
    sandbox: Sandbox,
    progress: bool = False,
) -> list[ItemResult]:
    per_item = [task.programs(it, r) for it, r in zip(items, responses, strict=True)]
    # Greedy and sampled completions often coincide: a program's result does not depend on
    # which request produced it, so each distinct program runs once.
    unique = list(dict.fromkeys(p for ps in per_item for p in ps))
    limits = replace(
        sandbox.limits,
        wall_seconds=task.timeout_seconds,
        cpu_seconds=max(1, math.ceil(task.timeout_seconds)),
    )
    runner = Sandbox(sandbox.isolation, limits, sandbox.workers)
    outcomes = _run(runner, unique, progress)
    found = {p: Execution(o.passed, o.status) for p, o in zip(unique, outcomes, strict=True)}
    return task.score_executed(items, responses, [[found[p] for p in ps] for ps in per_item])


def _run(sandbox: Sandbox, programs: list[TestedProgram], progress: bool) -> list[Outcome]:
    if not progress:
        return sandbox.run(programs)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("executing"), BarColumn(), MofNCompleteColumn(), transient=True
    ) as bar:
        tid = bar.add_task("run", total=len(programs))
        return sandbox.run(programs, on_done=lambda n: bar.advance(tid, n))
