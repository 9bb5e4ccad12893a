"""lm-eval groups' rows, aggregated as lm-eval aggregates them (`evalkit.tasks.groups`).

A group row is the mean of its leaf tasks' values, weighted by the number of evaluated items per
task when the group's `aggregate_metric_list` says `weight_by_size` (lm-eval's
`aggregate_subtask_metrics`). Its interval is computed the same way as the value: a percentile
bootstrap that resamples the items of each leaf task independently, applies the task's own
aggregation to each resample, and combines the tasks with the group's weights (seeded).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from evalkit.schema import ScoreRow
from evalkit.stats import CI_PERCENTILE
from evalkit.tasks.base import ItemResult, MetricSpec, Task
from evalkit.tasks.groups import AggregateMetric, GroupSpec

RESAMPLES = 2000
# A task whose aggregation is not a mean is re-aggregated per resample in Python: fewer draws.
SLOW_RESAMPLES = 500


@dataclass(frozen=True)
class _Member:
    spec: MetricSpec
    values: tuple[float, ...] | tuple[object, ...]
    size: int


def run_groups(tasks: Sequence[Task]) -> dict[str, tuple[GroupSpec, str]]:
    """Every group (by name) that the run's tasks belong to and aggregates something, with the
    family of its tasks (the name the user asked for)."""
    out: dict[str, tuple[GroupSpec, str]] = {}
    for t in tasks:
        for g in getattr(t, "groups", ()):
            if isinstance(g, GroupSpec) and g.aggregate and g.name not in out:
                out[g.name] = (g, t.family)
    return out


def metric_name(metric: str, filter_key: str) -> str:
    """evalkit's name for lm-eval's `metric,filter` (bare when the filter is `none`, as for
    tasks without filters)."""
    return metric if filter_key == "none" else f"{metric},{filter_key}"


def _lookup(task: Task, metric: str, filter_key: str) -> MetricSpec | None:
    names = {m.name: m for m in task.metrics}
    spec = names.get(f"{metric},{filter_key}")
    if spec is None and filter_key == "none":
        spec = names.get(metric)
    return spec


def _filters(agg: AggregateMetric, leaves: Sequence[Task]) -> list[str]:
    if agg.filters is not None:
        return list(agg.filters)
    found: set[str] = set()
    for t in leaves:
        for m in t.metrics:
            if m.name == agg.metric:
                found.add("none")
            elif m.name.startswith(agg.metric + ","):
                found.add(m.name[len(agg.metric) + 1 :])
    return sorted(found)


def _draws(member: _Member, rng: np.random.Generator, resamples: int) -> np.ndarray:
    n = len(member.values)
    idx = rng.integers(0, n, size=(resamples, n))
    if member.spec.is_mean:
        x = np.asarray(member.values, dtype=np.float64)
        return np.asarray(x[idx].mean(axis=1))
    vals = list(member.values)
    return np.asarray([member.spec.aggregate([vals[i] for i in row]) for row in idx])


def group_scores(
    tasks: Sequence[Task], per_task: Mapping[str, Sequence[ItemResult]], seed: int = 0
) -> list[ScoreRow]:
    """One row per (group, aggregated metric and filter), level `group`, the first of each
    group primary."""
    by_name = {t.name: t for t in tasks}
    # Keyed by (group, metric): a later `aggregate_metric_list` entry for the same metric and
    # filter replaces an earlier one, as in lm-eval's results dict.
    out: dict[tuple[str, str], ScoreRow] = {}
    rng = np.random.default_rng(seed)
    for name, (group, family) in run_groups(tasks).items():
        leaves = [by_name[n] for n in group.leaves if n in by_name]
        for agg in group.aggregate:
            for filter_key in _filters(agg, leaves):
                members = []
                for t in leaves:
                    spec = _lookup(t, agg.metric, filter_key)
                    results = per_task.get(t.name, ())
                    if spec is None or not results:
                        continue
                    values = tuple(r.metrics[spec.name] for r in results if spec.name in r.metrics)
                    if values:
                        members.append(_Member(spec, values, len(results)))
                if not members:
                    continue
                weights = np.asarray(
                    [m.size if agg.weight_by_size else 1 for m in members], dtype=np.float64
                )
                weights /= weights.sum()
                point = np.asarray([m.spec.aggregate(m.values) for m in members])  # type: ignore[arg-type]
                value = float(np.dot(weights, point))
                resamples = RESAMPLES if all(m.spec.is_mean for m in members) else SLOW_RESAMPLES
                dist = weights @ np.stack([_draws(m, rng, resamples) for m in members])
                low, high = np.quantile(dist, [0.025, 0.975])
                key = metric_name(agg.metric, filter_key)
                out[name, key] = ScoreRow(
                    "",
                    family,
                    key,
                    value,
                    float(min(low, value)),
                    float(max(high, value)),
                    int(sum(m.size for m in members)),
                    members[0].spec.higher_is_better,
                    CI_PERCENTILE,
                    level="group",
                    group=name,
                )
    rows = list(out.values())
    firsts: dict[str, int] = {}
    for i, r in enumerate(rows):
        firsts.setdefault(r.group, i)
    return [replace(r, primary=i in firsts.values()) for i, r in enumerate(rows)]
