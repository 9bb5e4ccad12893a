"""Aggregation (stage 4 of `evalkit.pipeline`): from per-item results to task, family and
group scores (`evalkit.schema.ScoreRow`), each with a confidence interval."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from evalkit.errors import EvalkitError
from evalkit.group_scores import group_scores, run_groups
from evalkit.schema import ScoreRow, bucket_key
from evalkit.stats import (
    CI_CLUSTER_PERCENTILE,
    bootstrap_ci,
    mean_ci,
    mean_interval,
    mover_mean,
)
from evalkit.tasks.base import ItemResult, MetricSpec, Task


def task_scores(
    task: str,
    family: str,
    metrics: Sequence[MetricSpec],
    results: Sequence[ItemResult],
    seed: int = 0,
) -> list[ScoreRow]:
    if not results:
        raise EvalkitError(f"task {task} produced no items to score")
    out: list[ScoreRow] = []
    for spec in metrics:
        values = [r.metrics[spec.name] for r in results if spec.name in r.metrics]
        if not values:
            raise EvalkitError(f"task {task}: metric {spec.name!r} has no values")
        if spec.is_mean:
            ci = mean_ci([float(v) for v in values], seed=seed)  # type: ignore[arg-type]
        else:
            ci = bootstrap_ci(values, spec.aggregate, seed=seed)
        out.append(
            ScoreRow(task, family, spec.name, ci.value, ci.low, ci.high, ci.n,
                     spec.higher_is_better, ci.method, primary=not out)
        )  # fmt: skip
    return out


# -- derived summaries, per-language slices and family scores ------------------------------------

SUMMARY_RESAMPLES = 1000


def summary_scores(task: Task, results: Sequence[ItemResult], seed: int = 0) -> list[ScoreRow]:
    """Rows for a task's `summaries` (probe tasks: few-shot slope, label sensitivity...) and,
    for tasks whose items carry a `language` tag, per-language scores and gaps to English."""
    out: list[ScoreRow] = []
    for s in task.summaries:
        bucket = s.bucket
        if bucket is not None:
            out.extend(
                _bucket_score(task, s.metric, bucket, s.cluster, s.higher_is_better, results)
            )
            continue
        # A summary computed at a parameter (effective length at a recall threshold) says
        # its own metric name and parameter; `s.metric` is then only its display label.
        base = getattr(s, "base", None) or s.metric
        params = bucket_key(getattr(s, "params", ()))
        value = float(s.compute(results))
        if not math.isfinite(value):
            continue  # not defined on this run (a slope over one k): no row rather than a NaN
        low, high = _cluster_ci(results, s.compute, s.cluster, seed=seed)
        out.append(
            ScoreRow(task.name, task.family, base, value, min(low, value), max(high, value),
                     len(results), s.higher_is_better, CI_CLUSTER_PERCENTILE, bucket=params,
                     label=s.metric)
        )  # fmt: skip
    out.extend(language_scores(task.name, task.family, task.metrics, results, seed))
    return out


def _bucket_score(
    task: Task,
    metric: str,
    bucket: Any,
    cluster: str | None,
    higher_is_better: bool,
    results: Sequence[ItemResult],
) -> list[ScoreRow]:
    """A per-bucket row (k = 4, a length, a condition): the mean over the bucket's own items,
    their n, and the interval for their kind, clustered on `cluster` when its tag is there."""
    members = [
        r
        for r in bucket.members(results)
        if bucket.metric in r.metrics and not np.isnan(float(r.metrics[bucket.metric]))
    ]
    if not members:
        return []
    values = [float(r.metrics[bucket.metric]) for r in members]
    clusters = None
    if cluster and all(cluster in r.tags for r in members):
        clusters = [r.tags[cluster] for r in members]
    ci = mean_interval(values, clusters)
    return [ScoreRow(task.name, task.family, bucket.metric, ci.value, ci.low, ci.high, ci.n,
                     higher_is_better, ci.method, bucket=bucket_key(bucket.tags),
                     label=metric)]  # fmt: skip


def _cluster_ci(
    results: Sequence[ItemResult],
    compute: Callable[[Sequence[ItemResult]], float],
    cluster: str | None,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap over clusters of items (the values of tag `cluster`; each item its
    own cluster when None), SUMMARY_RESAMPLES resamples, seed 0."""
    groups: dict[object, list[ItemResult]] = {}
    for i, r in enumerate(results):
        groups.setdefault(r.tags.get(cluster, i) if cluster else i, []).append(r)
    members = list(groups.values())
    if len(members) < 2:
        v = float(compute(results))
        return v, v
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(SUMMARY_RESAMPLES):
        pick = rng.integers(0, len(members), size=len(members))
        stats.append(float(compute([r for g in pick for r in members[g]])))
    arr = np.asarray(stats)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return float("nan"), float("nan")
    alpha = (1 - level) / 2
    low, high = np.quantile(arr, [alpha, 1 - alpha])
    return float(low), float(high)


def language_scores(
    task: str,
    family: str,
    metrics: Sequence[MetricSpec],
    results: Sequence[ItemResult],
    seed: int = 0,
) -> list[ScoreRow]:
    """For results tagged with >= 2 languages, English among them: the task's first metric (and
    `bpb`, byte-normalized, when it has it) per language as `METRIC[LANG]`, and each other
    language's gap to English `METRIC_gap_en[LANG]` = METRIC[LANG] - METRIC[en], with a CI that
    resamples the items of both languages independently."""
    langs = sorted({str(r.tags["language"]) for r in results if "language" in r.tags})
    if len(langs) < 2 or "en" not in langs:
        return []
    specs = [m for m in metrics if m.is_mean][:1]
    specs += [m for m in metrics if m.name == "bpb" and m not in specs]
    out: list[ScoreRow] = []
    for m in specs:
        by_lang = {
            lang: np.asarray(
                [float(r.metrics[m.name]) for r in results  # type: ignore[arg-type]
                 if r.tags.get("language") == lang and m.name in r.metrics]
            )
            for lang in langs
        }  # fmt: skip
        draws = {lang: _mean_draws(x, seed=seed + i) for i, (lang, x) in enumerate(by_lang.items())}
        for lang in langs:
            x = by_lang[lang]
            if x.size == 0:
                continue
            ci = mean_ci(list(x))
            out.append(ScoreRow(task, family, m.name, ci.value, ci.low, ci.high, ci.n,
                                m.higher_is_better, ci.method, bucket=(("language", lang),),
                                label=f"{m.name}[{lang}]"))  # fmt: skip
        en = by_lang["en"]
        for lang in langs:
            x = by_lang[lang]
            if lang == "en" or x.size == 0 or en.size == 0:
                continue
            gap = float(x.mean() - en.mean())
            diff = draws[lang] - draws["en"]
            low, high = np.quantile(diff, [0.025, 0.975])
            out.append(ScoreRow(task, family, f"{m.name}_gap_en", gap, float(low),
                                float(high), int(x.size + en.size), m.higher_is_better,
                                "percentile-bootstrap-2sample", bucket=(("language", lang),),
                                label=f"{m.name}_gap_en[{lang}]"))  # fmt: skip
    return out


def _mean_draws(x: np.ndarray, seed: int, resamples: int = 2000) -> np.ndarray:
    if x.size == 0:
        return np.zeros(resamples)
    rng = np.random.default_rng(seed)
    return np.asarray(x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1))


def family_scores(
    tasks: Sequence[Task],
    per_task: Mapping[str, Sequence[ItemResult]],
    resamples: int = 2000,
    seed: int = 0,
) -> list[ScoreRow]:
    """One row per (family, metric) for every metric that at least two of the family's tasks
    report (or its only task): the unweighted mean of those tasks' scores. Its interval
    combines the tasks' own intervals (Wilson for 0/1, bootstrap-t else) by MOVER (Zou & Donner
    2008: the variance of a mean of independent estimates recovered from each one's limits), so
    that it holds where they do and never collapses to [0, 0]. Rows have level `family`, the
    first of a family primary; `n` is the number of items behind them.
    lm-eval groups with an `aggregate_metric_list` get lm-eval's aggregation instead
    (`evalkit.group_scores`), nested groups each their own rows."""
    groups = run_groups(tasks)
    by_family: dict[str, list[Task]] = {}
    for t in tasks:
        if t.family not in groups:
            by_family.setdefault(t.family, []).append(t)
    out: list[ScoreRow] = []
    for family, members in sorted(by_family.items()):
        counts: dict[str, list[tuple[Task, MetricSpec]]] = {}
        for t in members:
            for m in t.metrics:
                if m.is_mean:
                    counts.setdefault(m.name, []).append((t, m))
        for name, reporters in counts.items():
            if len(reporters) < min(2, len(members)):
                continue
            cis = []
            for k, (t, _) in enumerate(reporters):
                x = [float(r.metrics[name]) for r in per_task[t.name] if name in r.metrics]  # type: ignore[arg-type]
                x = [v for v in x if not np.isnan(v)]
                if x:
                    cis.append(mean_interval(x, resamples=resamples, seed=seed + k))
            if not cis:
                continue
            ci = mover_mean(cis)
            out.append(ScoreRow("", family, name, ci.value, ci.low, ci.high, ci.n,
                                reporters[0][1].higher_is_better, ci.method, level="family",
                                primary=all(r.family != family for r in out)))  # fmt: skip
    return out + group_scores(tasks, per_task, seed)


def aggregate(
    tasks: Sequence[Task], per_task: Mapping[str, Sequence[ItemResult]], seed: int = 0
) -> tuple[ScoreRow, ...]:
    """Stage 4 of the pipeline: every score row of a run, in the stored order (each task's
    metrics, then its summaries and language rows; then families and lm-eval groups)."""
    rows: list[ScoreRow] = []
    for task in tasks:
        results = per_task[task.name]
        rows.extend(task_scores(task.name, task.family, task.metrics, results, seed))
        rows.extend(summary_scores(task, results, seed))
    rows.extend(family_scores(tasks, per_task, seed=seed))
    return tuple(rows)
