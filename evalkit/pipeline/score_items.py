"""Stage 3, score items: each task turns its items' responses into per-item results (through a
`ScoringContext`: the sandbox for tasks whose programs must run), and items whose requests
were truncated or could not be fed are marked or left out, counted."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from evalkit.errors import EvalkitError
from evalkit.pipeline.execute import Execution
from evalkit.sandbox import Sandbox
from evalkit.tasks.base import ItemResult, ScoringContext, responses_for


@dataclass(frozen=True)
class ItemScores:
    """Per task (in the run's task order): its item results, and how many of its items were
    truncated (scored on the window's last tokens) or skipped (not scored at all)."""

    results: Mapping[str, list[ItemResult]]
    truncated: Mapping[str, int]
    skipped: Mapping[str, int]


def scoring_context(box: Sandbox | None, progress: bool) -> ScoringContext:
    """What tasks get at scoring time: the sandbox runs the programs of tasks that need it."""
    from evalkit.sandbox.scoring import program_runner

    return ScoringContext(run_programs=program_runner(box, progress) if box else None)


def score_items(execution: Execution) -> ItemScores:
    plan, result = execution.plan, execution.result
    context = scoring_context(plan.sandbox, plan.output.progress)
    per_task: dict[str, list[ItemResult]] = {}
    truncated: dict[str, int] = {}
    skipped: dict[str, int] = {}
    for task in execution.tasks:
        items = execution.items[task.name]
        # Items the backend could not feed at the model's window are left out, counted.
        its = [it for it in items if not any(r.hash in result.skipped for r in it.requests)]
        skipped[task.name] = len(items) - len(its)
        if not its:
            raise EvalkitError(f"task {task.name}: the backend could score none of its items")
        responses = [responses_for(it, result.responses) for it in its]
        results = task.score_in(context, its, responses)
        cut = {r.hash for it in its for r in it.requests} & result.truncated
        marked = [any(q.hash in cut for q in it.requests) for it in its]
        truncated[task.name] = sum(marked)
        per_task[task.name] = [
            replace(r, truncated=True) if m else r for r, m in zip(results, marked, strict=True)
        ]
    return ItemScores(per_task, truncated, skipped)
