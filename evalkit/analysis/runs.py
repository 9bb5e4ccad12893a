"""Item-level views of run directories, and pairing two of them on the items they share.

A `RunSide` is one side of a comparison: the per-item metrics of a run, or the item-wise mean of
several runs (e.g. a training run's last checkpoints, which averages checkpoint noise away).
Items are paired on (task, doc_id); an item whose gold target differs between the sides is not
the same item and is left out, with a warning.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.errors import EvalkitError
from evalkit.schema import SAMPLE_BASE_COLUMNS, Manifest, as_manifest
from evalkit.store import RunData


@dataclass(frozen=True)
class MetricInfo:
    name: str
    higher_is_better: bool


@dataclass(frozen=True)
class RunSide:
    """Per-item metrics of one run (or the item-wise mean of several)."""

    label: str
    paths: tuple[Path, ...]
    samples: Any  # pandas.DataFrame: task, doc_id, target, prompt_hash, metrics, tags
    families: Mapping[str, str]  # task -> family
    metrics: Mapping[str, tuple[MetricInfo, ...]]  # task -> its metrics, primary first
    tag_columns: tuple[str, ...]
    manifest: Manifest
    chat_template: bool
    model_fingerprint: str | None

    @property
    def tasks(self) -> list[str]:
        return list(self.metrics)

    def metric(self, task: str, name: str | None = None) -> MetricInfo:
        infos = self.metrics.get(task)
        if not infos:
            raise EvalkitError(f"run {self.label} has no task {task!r}")
        if name is None:
            return infos[0]
        for m in infos:
            if m.name == name:
                return m
        known = ", ".join(m.name for m in infos)
        raise EvalkitError(f"task {task} in run {self.label} has no metric {name!r} ({known})")


def run_label(run: RunData) -> str:
    return run.path.name


def is_chat_run(manifest: Manifest | Mapping[str, Any]) -> bool:
    return as_manifest(manifest).chat


def side_from_run(run: RunData, label: str | None = None) -> RunSide:
    samples = run.samples
    if len(samples) == 0 or not run.rows:
        raise EvalkitError(f"run {run.path} has no items")
    families: dict[str, str] = {}
    metrics: dict[str, list[MetricInfo]] = {}
    item_tasks = set(samples.task.astype(str))
    # A task's rows over all its items, the primary first: the metrics paired item by item.
    task_rows = [r for r in run.rows if r.level == "task" and not r.bucket]
    for row in sorted(task_rows, key=lambda r: not r.primary):
        task = row.task
        if task not in item_tasks:
            continue
        families.setdefault(task, row.family)
        name = row.metric
        if name not in run.metric_columns:
            continue  # a task-level summary (a slope, a ratio) without per-item values
        values = samples.loc[samples.task == task, name]
        if not all(isinstance(v, numbers.Real) for v in values.dropna().head(5)):
            continue  # a tuple-valued (weighted) metric: not a per-item mean, not paired
        ms = metrics.setdefault(task, [])
        if all(m.name != name for m in ms):
            ms.append(MetricInfo(name, bool(row.higher_is_better)))
    metric_names = {m.name for ms in metrics.values() for m in ms}
    tags = tuple(c for c in run.tag_columns if c not in SAMPLE_BASE_COLUMNS)
    keep = ["task", "doc_id", "target", "prompt_hash", *sorted(metric_names), *tags]
    frame = samples[[c for c in keep if c in samples.columns]].copy()
    frame["task"] = frame["task"].astype(str)
    frame["doc_id"] = frame["doc_id"].astype(int)
    if frame.duplicated(["task", "doc_id"]).any():
        raise EvalkitError(f"run {run.path} lists an item twice")
    manifest = run.manifest
    return RunSide(
        label=label or run_label(run),
        paths=(run.path,),
        samples=frame,
        families=families,
        metrics={t: tuple(ms) for t, ms in metrics.items()},
        tag_columns=tags,
        manifest=manifest,
        chat_template=manifest.chat,
        model_fingerprint=manifest.model_fingerprint,
    )


def mean_of_sides(sides: Sequence[RunSide], label: str) -> RunSide:
    """Item-wise mean of several runs over the items they all share (targets must agree)."""
    import pandas as pd

    if not sides:
        raise EvalkitError("no runs to average")
    if len(sides) == 1:
        return sides[0]
    first = sides[0]
    tasks = [t for t in first.tasks if all(t in s.metrics for s in sides)]
    metric_cols = sorted(
        {m.name for t in tasks for m in first.metrics[t]}
        & set.intersection(*(set(s.samples.columns) for s in sides))
    )
    frames = []
    for i, s in enumerate(sides):
        f = s.samples[s.samples.task.isin(tasks)][["task", "doc_id", "target", *metric_cols]]
        frames.append(f.assign(_run=i))
    both = pd.concat(frames, ignore_index=True)
    counts = both.groupby(["task", "doc_id"]).agg(
        runs=("_run", "nunique"), targets=("target", "nunique")
    )
    shared = counts[(counts.runs == len(sides)) & (counts.targets == 1)].index
    if len(shared) == 0:
        raise EvalkitError(f"the runs averaged as {label} share no items")
    both = both.set_index(["task", "doc_id"]).loc[shared].reset_index()
    means = both.groupby(["task", "doc_id"], sort=False)[metric_cols].mean().reset_index()
    base = first.samples.drop(columns=[c for c in metric_cols if c in first.samples.columns])
    frame = means.merge(base, on=["task", "doc_id"], how="left")
    return RunSide(
        label=label,
        paths=tuple(p for s in sides for p in s.paths),
        samples=frame,
        families={t: first.families[t] for t in tasks},
        metrics={t: tuple(m for m in first.metrics[t] if m.name in metric_cols) for t in tasks},
        tag_columns=first.tag_columns,
        manifest=first.manifest,
        chat_template=first.chat_template,
        model_fingerprint=first.model_fingerprint if len(sides) == 1 else None,
    )


@dataclass(frozen=True)
class TaskPairing:
    task: str
    paired: int
    only_a: int
    only_b: int
    mismatched: int  # same (task, doc_id) but a different gold target
    prompts_differ: int


@dataclass(frozen=True)
class Pairing:
    """The items two sides share, task by task, and what could not be paired."""

    frame: Any  # pandas.DataFrame: task, doc_id, <metric>_a, <metric>_b, tags (from A)
    tasks: tuple[TaskPairing, ...]
    only_in_a: tuple[str, ...]  # tasks only one side has
    only_in_b: tuple[str, ...]
    warnings: tuple[str, ...]

    def task(self, name: str) -> TaskPairing:
        for t in self.tasks:
            if t.task == name:
                return t
        raise KeyError(name)

    @property
    def unpaired(self) -> int:
        return sum(t.only_a + t.only_b + t.mismatched for t in self.tasks)


def pair_sides(a: RunSide, b: RunSide) -> Pairing:
    """Pair A and B on (task, doc_id). An error when they share no item; warnings naming how
    many items are unpaired, and why."""
    tasks = [t for t in a.tasks if t in b.metrics]
    only_a = tuple(t for t in a.tasks if t not in b.metrics)
    only_b = tuple(t for t in b.tasks if t not in a.metrics)
    if not tasks:
        raise EvalkitError(
            f"runs {a.label} and {b.label} share no task "
            f"({', '.join(a.tasks)} vs {', '.join(b.tasks)})"
        )
    sa = a.samples[a.samples.task.isin(tasks)]
    sb = b.samples[b.samples.task.isin(tasks)]
    metric_cols = sorted(
        {m.name for t in tasks for m in a.metrics[t]} & set(sa.columns) & set(sb.columns)
    )
    left = sa[["task", "doc_id", "target", "prompt_hash", *metric_cols, *a.tag_columns]]
    right = sb[["task", "doc_id", "target", "prompt_hash", *metric_cols]]
    merged = left.merge(right, on=["task", "doc_id"], how="outer", suffixes=("_a", "_b"))
    in_a = merged["target_a"].notna()
    in_b = merged["target_b"].notna()
    both = in_a & in_b
    same = both & (merged["target_a"] == merged["target_b"])
    format_differs = a.chat_template != b.chat_template
    stats: list[TaskPairing] = []
    warnings: list[str] = []
    for t in tasks:
        m = merged.task == t
        differ = int((same & m & (merged["prompt_hash_a"] != merged["prompt_hash_b"])).sum())
        stats.append(
            TaskPairing(
                task=t,
                paired=int((same & m).sum()),
                only_a=int((m & in_a & ~in_b).sum()),
                only_b=int((m & in_b & ~in_a).sum()),
                mismatched=int((m & both & ~same).sum()),
                prompts_differ=0 if format_differs else differ,
            )
        )
    frame = merged[same].reset_index(drop=True)
    if len(frame) == 0:
        raise EvalkitError(f"runs {a.label} and {b.label} share no items")
    for s in stats:
        parts = []
        if s.only_a:
            parts.append(f"{s.only_a} only in {a.label}")
        if s.only_b:
            parts.append(f"{s.only_b} only in {b.label}")
        if s.mismatched:
            parts.append(f"{s.mismatched} with a different gold target")
        if parts:
            warnings.append(
                f"task {s.task}: {s.paired} items paired, "
                f"{s.only_a + s.only_b + s.mismatched} unpaired ({'; '.join(parts)})"
            )
        if s.prompts_differ:
            warnings.append(
                f"task {s.task}: {s.prompts_differ} paired items have different prompts "
                "(task version or few-shot settings changed?)"
            )
        if s.paired == 0:
            warnings.append(f"task {s.task}: no shared items; left out")
    for t in only_a:
        warnings.append(f"task {t} is only in {a.label}; left out")
    for t in only_b:
        warnings.append(f"task {t} is only in {b.label}; left out")
    return Pairing(frame, tuple(stats), only_a, only_b, tuple(warnings))


def column_values(frame: Any, metric: str, side: str) -> Any:
    """The paired metric values of one side as a float array (rows with NaN are the caller's
    to drop)."""
    import numpy as np

    col = f"{metric}_{side}"
    if col not in frame.columns:
        raise EvalkitError(f"metric {metric!r} is missing from the paired items")
    return np.asarray(frame[col], dtype=np.float64)


def finite(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


def cluster_labels(frame: Any, column: str | None) -> list[str] | None:
    """Cluster labels for resampling from an item tag column: items sharing a value are one
    cluster; items without a value (another task's tag) are each their own. None when no item
    has the tag."""
    if column is None or column not in frame.columns:
        return None
    values = frame[column]
    if values.isna().all():
        return None
    return [
        f"item:{i}" if v is None or (isinstance(v, float) and math.isnan(v)) else f"tag:{v}"
        for i, v in enumerate(values)
    ]
