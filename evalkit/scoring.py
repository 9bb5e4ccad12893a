"""From per-item results to task and family scores, each with a confidence interval."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from evalkit.errors import EvalkitError
from evalkit.stats import bootstrap_ci, mean_ci
from evalkit.tasks.base import ItemResult, MetricSpec


@dataclass(frozen=True)
class Score:
    task: str
    family: str
    metric: str
    value: float
    ci_low: float
    ci_high: float
    n: int
    higher_is_better: bool


def task_scores(
    task: str, family: str, metrics: Sequence[MetricSpec], results: Sequence[ItemResult]
) -> list[Score]:
    if not results:
        raise EvalkitError(f"task {task} produced no items to score")
    out = []
    for spec in metrics:
        values = [r.metrics[spec.name] for r in results if spec.name in r.metrics]
        if not values:
            raise EvalkitError(f"task {task}: metric {spec.name!r} has no values")
        if spec.is_mean:
            ci = mean_ci([float(v) for v in values])  # type: ignore[arg-type]
        else:
            ci = bootstrap_ci(values, spec.aggregate)
        out.append(
            Score(task, family, spec.name, ci.value, ci.low, ci.high, ci.n, spec.higher_is_better)
        )
    return out
