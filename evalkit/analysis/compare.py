"""Paired comparison of runs: per task and per family, A, B, delta, its CI, p, and the MDE.

The first run is the reference; every other run is compared with it. Two runs of the same
model that differ only in whether the chat template was applied also get a "format" comparison
(raw -> templated), which is how sensitive each task is to the prompt format.

Task rows: one per task and metric (the task's primary metric, or all of them), paired on the
items both runs share. The p-value is the exact McNemar test for 0/1 metrics and the paired
(cluster) bootstrap otherwise (or whatever `test` forces). Holm or Benjamini-Hochberg corrects
across the task rows of a comparison; family rows are corrected among themselves.

Family rows: the unweighted mean over the family's tasks of each task's delta on its primary
metric, with a stratified bootstrap (each task resampled on its own). When a family mixes
higher-is-better and lower-is-better metrics, each task's delta is oriented so that positive
means better, and the row's metric reads "mixed (+ = better)".
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from evalkit import stats as S
from evalkit.analysis.jsonsafe import json_safe
from evalkit.analysis.runs import (
    MetricInfo,
    Pairing,
    RunSide,
    cluster_labels,
    column_values,
    pair_sides,
    side_from_run,
)
from evalkit.analysis.snr import SNRRow, snr_table
from evalkit.errors import EvalkitError
from evalkit.store import RunData

MetricsChoice = Literal["primary", "all"]
CLUSTER_TAG = "cluster"  # a tag column of this name clusters items automatically


@dataclass(frozen=True)
class CompareOptions:
    by: str | None = None  # break rows down by this item tag
    cluster: str | None = None  # resample items sharing this tag together
    correction: str = "holm"
    alpha: float = 0.05
    level: float = 0.95
    power: float = 0.8
    test: str = "auto"
    metrics: MetricsChoice = "primary"
    resamples: int = S.DEFAULT_RESAMPLES
    seed: int = 0

    def __post_init__(self) -> None:
        if self.correction not in S.CORRECTIONS:
            raise EvalkitError(
                f"unknown correction {self.correction!r}; use {', '.join(S.CORRECTIONS)}"
            )
        if self.test not in S.TESTS:
            raise EvalkitError(f"unknown test {self.test!r}; use {', '.join(S.TESTS)}")
        if self.metrics not in ("primary", "all"):
            raise EvalkitError("metrics must be 'primary' or 'all'")
        if not 0 < self.alpha < 1 or not 0 < self.level < 1 or not 0 < self.power < 1:
            raise EvalkitError("alpha, level and power must lie strictly between 0 and 1")
        if self.resamples < 100:
            raise EvalkitError("use at least 100 bootstrap resamples")


@dataclass(frozen=True)
class DeltaRow:
    scope: Literal["task", "family"]
    name: str  # task or family
    family: str
    metric: str
    higher_is_better: bool | None  # None: a family of mixed directions, deltas oriented
    group: str | None  # value of the --by tag; None for all items
    a: float
    b: float
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    p_adjusted: float
    significant: bool
    mde: float
    n: int
    n_clusters: int
    test: str

    @property
    def call(self) -> str:
        """'better', 'worse' (B against A, after correction) or 'n.s.'."""
        if not self.significant:
            return "n.s."
        up = self.delta > 0
        better = up if self.higher_is_better is not False else not up
        return "better" if better else "worse"


@dataclass(frozen=True)
class Comparison:
    a: str
    b: str
    kind: Literal["delta", "format"]  # format: one model, raw prompts -> chat template
    rows: tuple[DeltaRow, ...]
    pairing: tuple[Any, ...]  # TaskPairing
    warnings: tuple[str, ...]

    def row(
        self, name: str, metric: str | None = None, scope: str = "task", group: str | None = None
    ) -> DeltaRow:
        for r in self.rows:
            if (
                r.scope == scope
                and r.name == name
                and r.group == group
                and (metric is None or r.metric == metric)
            ):
                return r
        raise KeyError((scope, name, metric, group))


@dataclass(frozen=True)
class RunInfo:
    label: str
    path: str
    checkpoint: str | None
    model_fingerprint: str | None
    chat_template: bool
    suite: str | None


@dataclass(frozen=True)
class CompareReport:
    runs: tuple[RunInfo, ...]
    comparisons: tuple[Comparison, ...]
    options: CompareOptions
    snr: tuple[SNRRow, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "runs": [asdict(r) for r in self.runs],
            "options": asdict(self.options),
            "comparisons": [
                {
                    "a": c.a,
                    "b": c.b,
                    "kind": c.kind,
                    "rows": [{**asdict(r), "call": r.call} for r in c.rows],
                    "pairing": [asdict(p) for p in c.pairing],
                    "warnings": list(c.warnings),
                }
                for c in self.comparisons
            ],
            "base_vs_chat": [asdict(r) for r in base_vs_chat(self)],
            "snr": [asdict(s) for s in self.snr],
            "warnings": list(self.warnings),
        }
        result = json_safe(out)
        assert isinstance(result, dict)
        return result


# -- the computation -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cell:
    """One task x metric x group: the paired values and their bootstrap distribution."""

    task: str
    family: str
    metric: MetricInfo
    group: str | None
    test: S.PairedTest
    dist: np.ndarray


def _clusters(frame: Any, options: CompareOptions) -> list[str] | None:
    if options.cluster is not None:
        if options.cluster not in frame.columns:
            raise EvalkitError(f"no item tag {options.cluster!r} to cluster on")
        return cluster_labels(frame, options.cluster)
    return cluster_labels(frame, CLUSTER_TAG)


def _cell(
    task: str,
    family: str,
    metric: MetricInfo,
    group: str | None,
    frame: Any,
    options: CompareOptions,
    seed: int,
) -> _Cell | None:
    a = column_values(frame, metric.name, "a")
    b = column_values(frame, metric.name, "b")
    ok = np.isfinite(a) & np.isfinite(b)
    if not ok.any():
        return None
    sub = frame[ok]
    clusters = _clusters(sub, options)
    a, b = a[ok], b[ok]
    test = options.test
    binary = S.is_binary(a) and S.is_binary(b)
    if test == "mcnemar" and (not binary or clusters is not None):
        test = "auto"  # McNemar is not defined here; fall back rather than fail the table
    result, dist = S.paired_analysis(
        a,
        b,
        clusters,
        test=test,  # type: ignore[arg-type]
        level=options.level,
        alpha=options.alpha,
        power=options.power,
        resamples=options.resamples,
        seed=seed,
    )
    return _Cell(task, family, metric, group, result, dist)


def _groups(frame: Any, by: str | None) -> list[tuple[str | None, Any]]:
    out: list[tuple[str | None, Any]] = [(None, frame)]
    if by is None:
        return out
    if by not in frame.columns:
        return out
    values = frame[by]
    for v in sorted(values.dropna().unique(), key=lambda x: (str(type(x)), x)):
        out.append((str(v), frame[values == v]))
    return out


def _family_row(family: str, cells: Sequence[_Cell], options: CompareOptions) -> DeltaRow:
    directions = {c.metric.higher_is_better for c in cells}
    mixed = len(directions) > 1
    signs = [1.0 if (not mixed or c.metric.higher_is_better) else -1.0 for c in cells]
    dist = np.mean([s * c.dist for s, c in zip(signs, cells, strict=True)], axis=0)
    delta = float(np.mean([s * c.test.delta for s, c in zip(signs, cells, strict=True)]))
    low, high = S.percentile_interval(dist, options.level)
    low, high = min(low, delta), max(high, delta)
    if len(cells) == 1:  # a one-task family: the task's own test
        p, test = cells[0].test.p_value, cells[0].test.test
    else:
        p = S.bootstrap_p_value(dist, float(dist.mean())) if delta != 0 else 1.0
        test = f"stratified bootstrap over {len(cells)} tasks"
    se = math.sqrt(sum(c.test.se**2 for c in cells if math.isfinite(c.test.se))) / len(cells)
    names = sorted({c.metric.name for c in cells})
    return DeltaRow(
        scope="family",
        name=family,
        family=family,
        metric="mixed (+ = better)" if mixed else "/".join(names),
        higher_is_better=None if mixed else cells[0].metric.higher_is_better,
        group=cells[0].group,
        a=float("nan") if mixed else float(np.mean([c.test.a for c in cells])),
        b=float("nan") if mixed else float(np.mean([c.test.b for c in cells])),
        delta=delta,
        ci_low=low,
        ci_high=high,
        p_value=float(p),
        p_adjusted=float(p),
        significant=False,
        mde=S.mde(se, options.alpha, options.power) if se > 0 else float("nan"),
        n=sum(c.test.n for c in cells),
        n_clusters=sum(c.test.n_clusters for c in cells),
        test=test,
    )


def _task_row(cell: _Cell) -> DeltaRow:
    t = cell.test
    return DeltaRow(
        scope="task",
        name=cell.task,
        family=cell.family,
        metric=cell.metric.name,
        higher_is_better=cell.metric.higher_is_better,
        group=cell.group,
        a=t.a,
        b=t.b,
        delta=t.delta,
        ci_low=t.low,
        ci_high=t.high,
        p_value=t.p_value,
        p_adjusted=t.p_value,
        significant=False,
        mde=t.mde,
        n=t.n,
        n_clusters=t.n_clusters,
        test=t.test,
    )


def _corrected(rows: list[DeltaRow], options: CompareOptions) -> list[DeltaRow]:
    from dataclasses import replace

    adjusted = S.adjust_pvalues([r.p_value for r in rows], options.correction)
    return [
        replace(r, p_adjusted=float(q), significant=bool(q < options.alpha))
        for r, q in zip(rows, adjusted, strict=True)
    ]


def compare_sides(
    a: RunSide,
    b: RunSide,
    options: CompareOptions | None = None,
    kind: Literal["delta", "format"] = "delta",
    pairing: Pairing | None = None,
) -> Comparison:
    options = options or CompareOptions()
    pairing = pairing or pair_sides(a, b)
    frame = pairing.frame
    warnings = list(pairing.warnings)
    if options.by is not None and options.by not in frame.columns:
        warnings.append(f"no item tag {options.by!r} in these runs: no breakdown")
    cells: list[_Cell] = []
    primary: dict[tuple[str, str | None], _Cell] = {}
    for i, tp in enumerate(pairing.tasks):
        if tp.paired == 0:
            continue
        task_frame = frame[frame.task == tp.task]
        infos = a.metrics[tp.task]
        chosen = infos[:1] if options.metrics == "primary" else infos
        for j, info in enumerate(chosen):
            if all(m.name != info.name for m in b.metrics.get(tp.task, ())):
                continue
            for group, sub in _groups(task_frame, options.by):
                seed = (
                    options.seed
                    + 1009 * i
                    + 101 * j
                    + (zlib.crc32(group.encode()) % 997 if group else 0)
                )
                cell = _cell(tp.task, a.families[tp.task], info, group, sub, options, seed)
                if cell is None:
                    continue
                cells.append(cell)
                if j == 0:
                    primary[(tp.task, group)] = cell
    if not cells:
        raise EvalkitError(f"runs {a.label} and {b.label} have no metric to compare")
    task_rows = _corrected([_task_row(c) for c in cells], options)
    fam_cells: dict[tuple[str, str | None], list[_Cell]] = {}
    for (_, group), cell in primary.items():
        fam_cells.setdefault((cell.family, group), []).append(cell)
    fam_rows = _corrected(
        [_family_row(f, cs, options) for (f, _), cs in sorted(fam_cells.items(), key=_fam_key)],
        options,
    )
    return Comparison(
        a=a.label,
        b=b.label,
        kind=kind,
        rows=tuple(task_rows + fam_rows),
        pairing=pairing.tasks,
        warnings=tuple(warnings),
    )


def _fam_key(item: tuple[tuple[str, str | None], Any]) -> tuple[str, int, str]:
    (family, group), _ = item
    return (family, 0 if group is None else 1, group or "")


def run_info(run: RunData, label: str) -> RunInfo:
    m = run.manifest
    return RunInfo(
        label=label,
        path=str(run.path),
        checkpoint=m.checkpoint,
        model_fingerprint=m.model_fingerprint,
        chat_template=m.chat,
        suite=m.suite,
    )


def unique_labels(runs: Sequence[RunData], labels: Sequence[str] | None = None) -> list[str]:
    names = list(labels) if labels else [r.path.name for r in runs]
    if len(names) != len(runs):
        raise EvalkitError(f"{len(names)} labels for {len(runs)} runs")
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out


def compare_runs(
    runs: Sequence[RunData],
    options: CompareOptions | None = None,
    *,
    labels: Sequence[str] | None = None,
    noise_runs: Sequence[RunData] = (),
    noise_last: int = 5,
    min_snr: float = 3.0,
) -> CompareReport:
    """Compare runs[1:] with runs[0], and raw with chat-templated runs of one model."""
    options = options or CompareOptions()
    if len(runs) < 2:
        raise EvalkitError("compare needs at least two runs")
    names = unique_labels(runs, labels)
    sides = [side_from_run(r, n) for r, n in zip(runs, names, strict=True)]
    pairs: list[tuple[int, int, Literal["delta", "format"]]] = []
    for j in range(1, len(sides)):
        pairs.append((0, j, "format" if _format_pair(sides[0], sides[j]) else "delta"))
    for i in range(1, len(sides)):
        for j in range(i + 1, len(sides)):
            if _format_pair(sides[i], sides[j]):
                pairs.append((i, j, "format"))
    comparisons = []
    for i, j, kind in pairs:
        a, b = sides[i], sides[j]
        if kind == "format" and a.chat_template:
            a, b = b, a  # always raw -> templated
        comparisons.append(compare_sides(a, b, options, kind))
    snr: tuple[SNRRow, ...] = ()
    warnings: list[str] = []
    if noise_runs:
        snr = snr_table(runs, noise_runs, last=noise_last, min_snr=min_snr)
        low = [f"{r.task} ({r.metric}, SNR {r.snr:.2g})" for r in snr if r.low]
        if low:
            warnings.append(
                f"low signal-to-noise (< {min_snr:g}): {', '.join(low)}; average the last "
                "checkpoints (gate --baseline-select mean) rather than trust one"
            )
    return CompareReport(
        runs=tuple(run_info(r, n) for r, n in zip(runs, names, strict=True)),
        comparisons=tuple(comparisons),
        options=options,
        snr=snr,
        warnings=tuple(warnings),
    )


def _format_pair(a: RunSide, b: RunSide) -> bool:
    return (
        a.model_fingerprint is not None
        and a.model_fingerprint == b.model_fingerprint
        and a.chat_template != b.chat_template
    )


def format_sensitivity(report: CompareReport) -> Mapping[str, float]:
    """|delta| of each task's primary metric between raw and chat-templated runs of a model."""
    out: dict[str, float] = {}
    for c in report.comparisons:
        if c.kind != "format":
            continue
        for r in c.rows:
            if r.scope == "task" and r.group is None:
                out[r.name] = max(out.get(r.name, 0.0), abs(r.delta))
    return out


def load_runs(paths: Sequence[Path]) -> list[RunData]:
    from evalkit.store import read_run

    return [read_run(Path(p)) for p in paths]


@dataclass(frozen=True)
class TuningRow:
    """Base vs chat for one task or family: what tuning changed (raw prompts on both), what the
    chat template changes on top (format sensitivity), and the two together."""

    scope: str
    name: str
    metric: str
    base: float
    chat_raw: float
    chat_template: float
    tuning: float
    tuning_call: str
    format: float
    format_call: str
    total: float
    total_call: str


def base_vs_chat(report: CompareReport) -> tuple[TuningRow, ...]:
    """Rows for each chat model scored both ways, against the reference (first) run."""
    ref = report.runs[0].label
    by_pair = {(c.a, c.b): c for c in report.comparisons}
    out: list[TuningRow] = []
    for fmt in report.comparisons:
        if fmt.kind != "format":
            continue
        tuning, total = by_pair.get((ref, fmt.a)), by_pair.get((ref, fmt.b))
        if tuning is None or total is None or fmt.a == ref:
            continue
        for r in tuning.rows:
            if r.group is not None:
                continue
            try:
                f = fmt.row(r.name, r.metric, r.scope)
                t = total.row(r.name, r.metric, r.scope)
            except KeyError:
                continue
            out.append(
                TuningRow(
                    scope=r.scope,
                    name=r.name,
                    metric=r.metric,
                    base=r.a,
                    chat_raw=r.b,
                    chat_template=t.b,
                    tuning=r.delta,
                    tuning_call=r.call,
                    format=f.delta,
                    format_call=f.call,
                    total=t.delta,
                    total_call=t.call,
                )
            )
    return tuple(out)
