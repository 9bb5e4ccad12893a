"""The report's "Largest changes over training" section: task-level trajectories and where each
metric jumped most between consecutive checkpoints (`evalkit.analysis.changepoint`).

The family trajectories cover only metrics a family's tasks share; this section reads every
task's own rows through the run catalog, so a suite whose tasks report different metrics (an
induction probe beside a few-shot curve) still gets its trajectories. The training axis is the
one the family trajectories use: tokens seen from provenance, else the step; runs with neither
(a base vs chat comparison) are no training series, and the section leaves them to Paired deltas.
"""

from __future__ import annotations

from typing import Any

from evalkit.analysis.changepoint import Point, describe, summarize_changes
from evalkit.errors import EvalkitError
from evalkit.report import plots as P
from evalkit.report.blocks import Figure, Section, Table, Text, absent
from evalkit.report.common import ITEM_METRICS, slug, training_position
from evalkit.report.sections import ReportContext, primary, rows, unit
from evalkit.schema import Manifest

TITLE = "Largest changes over training"


def _training_run(manifest: Manifest) -> str | None:
    """The provenance's training-run name: checkpoints of one run form a training series."""
    return manifest.provenance.checkpoint.run if manifest.provenance else None


def _metrics(ctx: ReportContext) -> list[tuple[str, str, bool]]:
    """(task, metric label, is_primary) for the focus run: each task's primary metric, then its
    own summary metrics (rows over all items that are not a per-item multiple-choice metric)."""
    by_task: dict[str, list[Any]] = {}
    for r in rows(ctx.focus):
        if r.level == "task":
            by_task.setdefault(r.task, []).append(r)
    out: list[tuple[str, str, bool]] = []
    for task, rs in by_task.items():
        first = primary(rs)
        if first is None:
            continue
        out.append((task, first.label, True))
        for r in rs:
            if r is first or r.bucket or r.metric in ITEM_METRICS:
                continue
            out.append((task, r.label, False))
    return out


def changes(ctx: ReportContext) -> Section:
    if len(ctx.runs) < 2:
        return absent("changes", TITLE, "One run: changes need several checkpoints.")
    from evalkit.catalog import trajectory

    axis, xs = training_position(ctx.runs)
    if axis.startswith("run"):  # e.g. base vs chat: not a training series; see Paired deltas
        return absent(
            "changes",
            TITLE,
            "The runs have no distinct training position (provenance tokens seen or step).",
        )
    lineages = {_training_run(r.manifest) for r in ctx.runs}
    if len(lineages) > 1:  # different models (e.g. the demo's two checkpoints), not one series
        names = ", ".join(sorted(str(n) for n in lineages))
        return absent(
            "changes", TITLE, f"The runs come from different training runs ({names}): no series."
        )
    keys = {str(r.path.resolve()): i for i, r in enumerate(ctx.runs)}
    found: dict[tuple[str, str], list[Point]] = {}
    for t in trajectory([r.path for r in ctx.runs], level="task").itertuples(index=False):
        i = keys.get(str(t.run))
        if i is not None:
            point = Point(ctx.labels[i], xs[i], float(t.value), float(t.ci_low), float(t.ci_high))
            found.setdefault((str(t.name), str(t.metric)), []).append(point)
    wanted = [(t, m, p) for t, m, p in _metrics(ctx) if len(found.get((t, m), ())) >= 2]
    if not wanted:
        return absent("changes", TITLE, "No task metric is in two or more of these runs.")
    level = 0.95  # the runs' stored score intervals; ctx.options.level is the deltas'
    blocks: list[Any] = [
        Text(
            f"For each task metric, the largest jump between consecutive checkpoints along "
            f"{axis}, with both checkpoints' {level:.0%} CIs. Disjoint CIs are a conservative "
            "sign of a real change; overlapping ones are not called a change."
        )
    ]
    try:
        summaries = {(t, m): summarize_changes(found[(t, m)]) for t, m, _ in wanted}
    except EvalkitError as exc:  # e.g. two runs at one position: the rest of the report stands
        return absent("changes", TITLE, f"No changes located: {exc}")
    for t, m, is_primary in wanted:
        if is_primary:
            blocks.append(Text(describe(summaries[(t, m)], f"{t} {m}", axis, level)))
    by_metric: dict[str, list[str]] = {}
    for t, m, is_primary in wanted:
        if is_primary:
            by_metric.setdefault(m, []).append(t)
    for metric, tasks in by_metric.items():
        series = []
        for t in tasks:
            pts = summaries[(t, metric)].points
            series.append(
                P.Series(
                    t,
                    tuple(p.x for p in pts),
                    tuple(p.value for p in pts),
                    tuple(p.low for p in pts),
                    tuple(p.high for p in pts),
                )
            )
        path = P.line_chart(
            ctx.plot(f"changes_{slug(metric)}"),
            title=f"Task {metric} over training, {level:.0%} CI bands",
            series=series,
            xlabel=axis,
            ylabel=unit(metric),
        )
        blocks.append(Figure(path, f"task {metric} trajectories against {axis}"))
    head = ("task", "metric", "largest change", "before [CI]", "after [CI]", "Δ", "CIs disjoint")
    body = []
    for t, m, _ in wanted:
        big = summaries[(t, m)].largest
        if big is None:  # two runs, but one of them without a finite value
            continue
        a, b = big.before, big.after
        body.append(
            (
                t,
                m,
                f"`{a.label}` → `{b.label}`",
                f"{a.value:.3g} [{a.low:.3g}, {a.high:.3g}]",
                f"{b.value:.3g} [{b.low:.3g}, {b.high:.3g}]",
                f"{big.delta:+.3g}",
                "yes" if big.disjoint else "no",
            )
        )
    blocks.append(Table(head, tuple(body), f"consecutive checkpoints along {axis}"))
    return Section("changes", TITLE, tuple(blocks))
