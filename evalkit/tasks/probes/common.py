"""What probe tasks share: their YAML spec, summaries computed from per-item results, and
rendering of multiple-choice documents with templates that fail loudly."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalkit import metrics as M
from evalkit.errors import EvalkitError
from evalkit.requests import LoglikelihoodResult, Response
from evalkit.tasks.base import ItemResult, MetricSpec, TagValue
from evalkit.tasks.generators import get_generator

# Per-item metrics every multiple-choice probe reports (all from `evalkit.metrics`).
MC_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("acc"),
    MetricSpec("acc_norm"),
    MetricSpec("p_correct"),
    MetricSpec("p_correct_char"),
    MetricSpec("margin"),
    MetricSpec("margin_char"),
    MetricSpec("bpb", higher_is_better=False),
)


@dataclass(frozen=True)
class Bucket:
    """The items a per-bucket row averages: those whose tags equal all of `tags` (k = 4; a
    length and a depth; a label condition). The row then carries these items' own n and the
    interval of their mean (Wilson for 0/1, bootstrap-t else), not the task's."""

    metric: str
    tags: tuple[tuple[str, TagValue], ...]

    def members(self, results: Sequence[ItemResult]) -> list[ItemResult]:
        return [r for r in results if all(r.tags.get(k) == v for k, v in self.tags)]


@dataclass(frozen=True)
class Summary:
    """A task-level number derived from all of a task's per-item results (a slope, a ratio, a
    difference of conditions), written to scores.parquet as its own metric row.

    The CI resamples whole `cluster`s (the values of that tag, e.g. the test document behind
    several items) with replacement. Only scores belong here: run facts (a window, counts of
    items left out) go to the task's `manifest_notes`. A summary that is not defined on a run
    (NaN: a slope over a single k) writes no row."""

    metric: str
    compute: Callable[[Sequence[ItemResult]], float]
    higher_is_better: bool = True
    cluster: str | None = "test_doc"
    bucket: Bucket | None = None  # a mean over a subset of the items: its own n and interval
    # A number computed at a parameter: the row's metric name and the parameter, `metric`
    # then being only the display label (`effective_length[recall>=0.5]`).
    base: str | None = None
    params: tuple[tuple[str, TagValue], ...] = ()


@dataclass(frozen=True)
class ProbeSpec:
    """A `kind: probe` YAML file: the common keys, and the probe's own keys in `params`."""

    name: str
    family: str
    version: str
    probe: str
    source_file: Path
    description: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return f"probe:{self.probe}"


def group_mean(results: Sequence[ItemResult], metric: str, tag: str, value: TagValue) -> float:
    """Mean of `metric` over the results whose tag `tag` equals `value` (NaN when none)."""
    vals = [float(r.metrics[metric]) for r in results if r.tags.get(tag) == value]  # type: ignore[arg-type]
    return math.fsum(vals) / len(vals) if vals else float("nan")


def ols_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys on xs (NaN with fewer than two distinct xs)."""
    pts = [(x, y) for x, y in zip(xs, ys, strict=True) if math.isfinite(y)]
    if len({x for x, _ in pts}) < 2:
        return float("nan")
    mx = math.fsum(x for x, _ in pts) / len(pts)
    my = math.fsum(y for _, y in pts) / len(pts)
    sxx = math.fsum((x - mx) ** 2 for x, _ in pts)
    return math.fsum((x - mx) * (y - my) for x, y in pts) / sxx


def load_docs(task: str, docs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Documents from a `docs: {generator, seed, n, params}` mapping."""
    if not isinstance(docs, Mapping) or "generator" not in docs:
        raise EvalkitError(f"task {task}: 'docs' must name a generator")
    try:
        gen = get_generator(str(docs["generator"]))
    except KeyError as exc:
        raise EvalkitError(f"task {task}: {exc.args[0]}") from None
    n = int(docs.get("n", 0))
    if n <= 0:
        raise EvalkitError(f"task {task}: 'docs.n' must be a positive number of documents")
    try:
        return gen(random.Random(int(docs.get("seed", 0))), n, **dict(docs.get("params") or {}))
    except TypeError as exc:
        raise EvalkitError(f"task {task}: bad generator params: {exc}") from None


def mc_values(
    resps: Sequence[Response], choices: Sequence[str], gold: int, delimiter: str
) -> tuple[tuple[float, ...], dict[str, float]]:
    lls: list[float] = []
    for r in resps:
        if not isinstance(r, LoglikelihoodResult):
            raise TypeError(f"expected a loglikelihood result, got {type(r).__name__}")
        lls.append(r.logprob)
    values = M.multiple_choice(lls, choices, gold, delimiter)
    return tuple(lls), {m.name: values[m.name] for m in MC_METRICS}
