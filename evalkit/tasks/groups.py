"""lm-eval groups as evalkit sees them: which leaf tasks a group covers and how it aggregates.

lm-eval (0.4, `lm_eval.api.group.Group.aggregate`) reports a group's metric only when the group
lists it in `aggregate_metric_list`, over *all* leaf tasks below it (nested groups included):
the mean of the leaf tasks' values, weighted by each task's number of evaluated documents when
`weight_by_size` is true (the default) and unweighted otherwise; for each filter in
`filter_list`, or every filter the leaves report the metric under when it is unset. The
`aggregation` field is not consulted by lm-eval (only `mean` is accepted), so evalkit ignores
it too. A group without `aggregate_metric_list` reports no number in lm-eval.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AggregateMetric:
    metric: str
    weight_by_size: bool = True
    # None: every filter the leaf tasks report the metric under (lm-eval's auto-discovery).
    filters: tuple[str, ...] | None = None


@dataclass(frozen=True)
class GroupSpec:
    name: str
    leaves: tuple[str, ...]  # every leaf task below the group, nested groups included
    aggregate: tuple[AggregateMetric, ...]
    children: tuple[str, ...] = ()  # direct members: tasks and nested groups
    version: str = "N/A"
    alias: str | None = None


def _field(entry: Any, key: str, default: Any = None) -> Any:
    if isinstance(entry, Mapping):
        return entry.get(key, default)
    return getattr(entry, key, default)


def group_spec(group: Any) -> GroupSpec:
    """The spec of one lm-eval `Group` (built by its TaskManager)."""
    entries = getattr(group, "aggregate_metric_list", None) or []
    if isinstance(entries, Mapping) or not isinstance(entries, list | tuple):
        entries = [entries]
    aggregate = []
    for e in entries:
        filters = _field(e, "filter_list")
        if isinstance(filters, str):
            filters = [filters]
        aggregate.append(
            AggregateMetric(
                metric=str(_field(e, "metric")),
                weight_by_size=bool(_field(e, "weight_by_size", True)),
                filters=None if filters is None else tuple(str(f) for f in filters),
            )
        )
    version = getattr(group, "version", "N/A")
    return GroupSpec(
        name=str(group.name),
        leaves=tuple(str(t.task_name) for t in group.get_all_tasks()),
        aggregate=tuple(aggregate),
        children=tuple(str(c) for c in getattr(group, "child_names", ())),
        version=str(version),
        alias=getattr(group, "alias", None),
    )


def spec_from_dict(data: Mapping[str, Any]) -> GroupSpec:
    """A GroupSpec back from its manifest form (`dataclasses.asdict`)."""
    aggregate = tuple(
        AggregateMetric(
            metric=str(a["metric"]),
            weight_by_size=bool(a.get("weight_by_size", True)),
            filters=None if a.get("filters") is None else tuple(a["filters"]),
        )
        for a in data.get("aggregate", ())
    )
    return GroupSpec(
        name=str(data["name"]),
        leaves=tuple(data.get("leaves", ())),
        aggregate=aggregate,
        children=tuple(data.get("children", ())),
        version=str(data.get("version", "N/A")),
        alias=data.get("alias"),
    )
