"""Score code tasks: the sandbox as the runner of a task's programs
(`evalkit.tasks.base.ScoringContext.run_programs`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from evalkit.requests import Response
from evalkit.sandbox.executor import Outcome, Sandbox
from evalkit.tasks.base import Item, ItemResult, ProgramRunner, ScoringContext
from evalkit.tasks.executed import ExecutedTask, Execution, TestedProgram, score_by_running


def program_runner(sandbox: Sandbox, progress: bool = False) -> ProgramRunner:
    """Runs programs in `sandbox` under each task's own timeout."""

    def run(programs: Sequence[TestedProgram | str], timeout_seconds: float) -> list[Execution]:
        limits = replace(
            sandbox.limits,
            wall_seconds=timeout_seconds,
            cpu_seconds=max(1, math.ceil(timeout_seconds)),
        )
        runner = Sandbox(sandbox.isolation, limits, sandbox.workers)
        outcomes = _run(runner, list(programs), progress)
        return [Execution(o.passed, o.status) for o in outcomes]

    return run


def score_executed(
    task: ExecutedTask,
    items: Sequence[Item],
    responses: Sequence[Sequence[Response]],
    sandbox: Sandbox,
    progress: bool = False,
) -> list[ItemResult]:
    context = ScoringContext(run_programs=program_runner(sandbox, progress))
    return score_by_running(task, context, items, responses)


def _run(sandbox: Sandbox, programs: list[TestedProgram | str], progress: bool) -> list[Outcome]:
    if not progress:
        return sandbox.run(programs)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("executing"), BarColumn(), MofNCompleteColumn(), transient=True
    ) as bar:
        tid = bar.add_task("run", total=len(programs))
        return sandbox.run(programs, on_done=lambda n: bar.advance(tid, n))
