"""The sections of `evalkit report`: each a small function from the runs to a `Section`.

A section that finds none of its data in the runs returns a short note instead of failing, so
one report layout serves every suite. Sections find their data in the typed score rows'
fields (`evalkit.schema.ScoreRow`: level, metric, bucket, primary), never in their names:

- families: rows of level family or group, each's primary row first;
- few-shot curves: rows bucketed by {"k": N} (and item tags `k`, `seed` for one faint line per
  seed);
- label conditions: `acc` rows bucketed by {"condition": C};
- multilingual: rows bucketed by {"language": L}, of metric M and `M_gap_en` (lang − English);
- long context: rows bucketed by {"length": L, "depth": D} (or item tags `depth` and `length`),
  and `effective_length` rows (their bucket holds the recall threshold);
- code: `pass@k` rows bucketed by {"k": N}, or metrics `pass@N` (`pass_at_N`): code tasks
  still name k in the metric (see `_pass_rows`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.analysis.compare import CompareOptions, CompareReport, compare_runs
from evalkit.errors import EvalkitError
from evalkit.metrics import CATALOG
from evalkit.report import plots as P
from evalkit.report.blocks import Figure, Section, Table, Text, absent
from evalkit.report.common import ITEM_METRICS, slug, training_position
from evalkit.report.context import ReportContext, SectionFn, SingleRun
from evalkit.report.context import ReportOptions as ReportOptions  # re-exported
from evalkit.report.markdown import num, pval, signed
from evalkit.report.runfacts import run_fact_blocks
from evalkit.schema import Level, Manifest, TagValue
from evalkit.store import RunData

# Code tasks name k in the metric (`pass@1`, lm-eval's `pass_at_1`); the one name pattern
# left, until code tasks declare k as a bucket (issue 18, item 3).
_PASS = re.compile(r"^pass(?:@|_at_)(?P<k>\d+)$")
PASS_AT_K = "pass@k"  # bucketed by {"k": N}
EFFECTIVE = "effective_length"  # evalkit.tasks.probes.niah's effective context length
CONTINUOUS = ("p_correct", "bpb")  # beside the primary metric in the per-task table
LABEL_CONDITIONS = ("zero_shot", "gold", "random")


# -- score rows ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """A score row as the sections use it: `task` is the task's name, or the family's or
    group's for aggregate rows (`level`); `label` is the metric as shown."""

    task: str
    family: str
    metric: str
    value: float
    low: float
    high: float
    n: int
    higher_is_better: bool
    label: str = ""
    bucket: tuple[tuple[str, TagValue], ...] = ()
    level: Level = "task"
    primary: bool = False

    def at(self, key: str) -> TagValue | None:
        return dict(self.bucket).get(key)


def rows(run: RunData) -> list[Row]:
    return [
        Row(
            r.scope,
            r.family,
            r.metric,
            float(r.value),
            float(r.ci_low),
            float(r.ci_high),
            int(r.n),
            bool(r.higher_is_better),
            r.label,
            r.bucket,
            r.level,
            r.primary,
        )
        for r in run.rows
    ]


def by_task(rs: Sequence[Row]) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {}
    for r in rs:
        out.setdefault(r.task, []).append(r)
    return out


def task_rows(run: RunData) -> dict[str, list[Row]]:
    return by_task([r for r in rows(run) if r.level == "task"])


def primary(rs: Sequence[Row]) -> Row | None:
    return next((r for r in rs if r.primary), None)


def ci(r: Row | None) -> str:
    if r is None:
        return "–"
    return f"{num(r.value, '.3g')} [{num(r.low, '.3g')}, {num(r.high, '.3g')}]"


def arrow(r: Row) -> str:
    return r.label + (" ↑" if r.higher_is_better else " ↓")


_UNITS = {m.name: m.unit for m in CATALOG.values() if m.unit}  # declared in evalkit.metrics


def unit(metric: str) -> str:
    """`acc` -> 'acc (fraction of items)': axis labels carry units where the metric (a row's
    `metric` field, or a gap to English of one) has one."""
    u = _UNITS.get(metric) or _UNITS.get(metric.removesuffix("_gap_en"))
    return f"{metric} ({u})" if u else metric


def _finite(x: float) -> float:
    return x if math.isfinite(x) else float("nan")


# -- header ----------------------------------------------------------------------------------


def _provenance(m: Manifest) -> str:
    prov = m.provenance
    if prov is None:
        return "none recorded"
    ck = prov.checkpoint
    parts = [f"run {ck.run or '?'}"]
    if ck.step is not None:
        parts.append(f"step {ck.step}")
    if ck.tokens_seen is not None:
        parts.append(f"{float(ck.tokens_seen):.3g} tokens seen")
    if ck.parent:
        parts.append(f"parent {ck.parent}")
    slices = prov.slices
    if slices:
        top = sorted(slices, key=lambda s: -(s.share or 0.0))[:6]
        shares = ", ".join(s.name + (f" {s.share:.0%}" if s.share is not None else "") for s in top)
        more = f" (+{len(slices) - len(top)} more)" if len(slices) > len(top) else ""
        parts.append(f"{len(slices)} slices: {shares}{more}")
    return "; ".join(parts)


def _hardware(m: Manifest) -> str:
    hw = m.hardware
    bits = [str(v) for v in (hw.device, hw.gpu) if v]
    if hw.cpu_count:
        bits.append(f"{hw.cpu_count} CPUs")
    if hw.torch:
        bits.append(f"torch {hw.torch}")
    return ", ".join(bits) or "–"


def header(ctx: ReportContext) -> Section:
    fields: list[tuple[str, Callable[[Manifest], str]]] = [
        ("model", lambda m: (m.checkpoint or "–").rstrip("/").rsplit("/", 1)[-1]),
        ("model fingerprint", lambda m: (m.model_fingerprint or "–")[:16]),
        ("provenance", _provenance),
        ("suite", lambda m: m.suite or "(tasks)"),
        ("tasks", lambda m: str(len(m.tasks))),
        ("skipped tasks", lambda m: str(len(m.skipped_tasks))),
        (
            "backend",
            lambda m: (
                f"{m.backend or '–'} ({_dtype(m)}" + (", chat template" if m.chat else "") + ")"
            ),
        ),
        ("hardware", _hardware),
        ("time", lambda m: m.created or "–"),
        (
            "evalkit",
            lambda m: (
                (m.evalkit_version or "–")
                + (f" @ {m.evalkit_commit[:8]}" if m.evalkit_commit else "")
            ),
        ),
    ]
    body = tuple((name, *(fn(r.manifest) for r in ctx.runs)) for name, fn in fields)
    head = ("", *(f"`{lab}`" for lab in ctx.labels))
    blocks: list[Any] = [Table(head, body)]
    blocks += run_fact_blocks([r.manifest for r in ctx.runs], ctx.labels)
    if len(ctx.runs) > 1:
        blocks.insert(
            0,
            Text(
                f"{len(ctx.runs)} runs. Single-run sections show the last one, "
                f"`{ctx.focus_label}`, unless it lacks their results: then the last run that "
                "has them, named. Trajectories and deltas use them all."
            ),
        )
    return Section("run", "Run", tuple(blocks))


def _dtype(m: Manifest) -> str:
    """The dtype the weights ran in; else what was asked for, said as such."""
    if m.dtype_resolved:
        return m.dtype_resolved
    return f"{m.dtype_requested} requested" if m.dtype_requested else "–"


# -- families and tasks ----------------------------------------------------------------------


def family_primaries(run: RunData) -> dict[str, Row]:
    out: dict[str, Row] = {}
    for r in rows(run):
        if r.level in ("family", "group") and r.primary:
            out.setdefault(r.task, r)
    return out


def _lookup(run: RunData, family: str, label: str) -> Row | None:
    """A family's or group's row by its metric label."""
    return next(
        (
            r
            for r in rows(run)
            if r.level in ("family", "group") and r.task == family and r.label == label
        ),
        None,
    )


def families(ctx: ReportContext) -> Section:
    ref = family_primaries(ctx.focus)
    if not ref:
        return absent("families", "Family scores", "No family rows in these runs.")
    by_metric: dict[str, list[str]] = {}
    for fam, r in ref.items():
        by_metric.setdefault(r.label, []).append(fam)
    blocks: list[Any] = []
    for metric, fams in by_metric.items():
        hib = ref[fams[0]].higher_is_better
        bars = []
        for run, lab in zip(ctx.runs, ctx.labels, strict=True):
            got = [_lookup(run, f, metric) for f in fams]
            nan = float("nan")
            bars.append(
                P.Bars(
                    lab,
                    tuple(g.value if g else nan for g in got),
                    tuple(g.low if g else nan for g in got),
                    tuple(g.high if g else nan for g in got),
                )
            )
        path = P.bar_chart(
            ctx.plot(f"families_{slug(metric)}"),
            title=f"Family scores: mean {metric} over each family's tasks, 95% CI",
            categories=fams,
            bars=bars,
            value_label=f"{unit(metric)}, {'higher' if hib else 'lower'} is better",
            category_label="task family",
        )
        blocks.append(Figure(path, f"family scores ({metric}) with 95% CI bars"))
    head = ("family", "metric", *(f"`{lab}`" for lab in ctx.labels), "n")
    body = []
    for fam, r in ref.items():
        cells = [ci(_lookup(run, fam, r.label)) for run in ctx.runs]
        body.append((fam, arrow(r), *cells, str(r.n)))
    blocks.append(Table(head, tuple(body), "value [95% CI]; n: items in the family (last run)"))
    missing = sorted({r.family for r in rows(ctx.focus) if r.level == "task"} - set(ref))
    if missing:
        blocks.append(
            Text(
                f"No family score for {', '.join(missing)}: its tasks share no metric (see Tasks)."
            )
        )
    return Section("families", "Family scores", tuple(blocks))


def _has_tasks(run: RunData) -> bool:
    return any(primary(rs) is not None for rs in task_rows(run).values())


def _tasks(ctx: ReportContext) -> Section:
    tr = task_rows(ctx.focus)
    if not tr:
        return absent("tasks", "Tasks", "No task rows in this run.")
    cont = [
        c
        for c in CONTINUOUS
        if any(any(r.metric == c and not r.bucket for r in rs) for rs in tr.values())
    ]
    head: tuple[str, ...] = ("task", "family", "n", "primary metric", "value [95% CI]")
    head += tuple(f"{c} {'↓' if c == 'bpb' else '↑'} [95% CI]" for c in cont)
    body = []
    for task, rs in tr.items():
        p = primary(rs)
        if p is None:
            continue
        extra = [ci(next((r for r in rs if r.metric == c and not r.bucket), None)) for c in cont]
        body.append((task, p.family, str(p.n), arrow(p), ci(p), *extra))
    caption = (
        "Continuous metrics move before accuracy does on small or early checkpoints: p_correct "
        "is the normalized probability of the gold choice, bpb the bits per byte of the gold answer."
    )
    blocks: list[Any] = [Table(head, tuple(body), caption)]
    if len(ctx.runs) > 1 and ctx.focus_is_last:  # (an earlier run is named by `SingleRun`)
        blocks.insert(0, Text(f"Run `{ctx.focus_label}`."))
    return Section("tasks", "Tasks", tuple(blocks))


tasks = SingleRun(_tasks, _has_tasks, "task scores")


# -- long context ----------------------------------------------------------------------------

# The bucket keys and item tags of a depth x length grid (evalkit.tasks.probes.niah).
DEPTH, LENGTH = "depth", "length"


def _grid_from_scores(rs: Sequence[Row]) -> dict[tuple[float, float], Row]:
    grid: dict[tuple[float, float], Row] = {}
    for r in rs:
        d, n = r.at(DEPTH), r.at(LENGTH)
        if {k for k, _ in r.bucket} != {DEPTH, LENGTH}:
            continue
        if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in (d, n)):
            raise EvalkitError(f"task {r.task}: row {r.label} has a non-numeric depth or length")
        grid[(float(d), float(n))] = r  # type: ignore[arg-type]
    return grid


def _grid_from_samples(run: RunData, task: str, metric: str) -> dict[tuple[float, float], float]:
    s = run.samples
    length = LENGTH if LENGTH in run.tag_columns else None
    if DEPTH not in run.tag_columns or length is None or metric not in run.metric_columns:
        return {}
    t = s[(s.task == task)].dropna(subset=["depth", length, metric])
    if t.empty:
        return {}
    means = t.groupby(["depth", length])[metric].mean()
    return {(float(d), float(n)): float(v) for (d, n), v in means.items()}


def _fmt_len(x: float) -> str:
    return f"{x / 1024:g}k" if x >= 1024 and x % 1024 == 0 else f"{x:g}"


@dataclass(frozen=True)
class _Grid:
    task: str
    metric: str
    cells: dict[tuple[float, float], float]  # (depth, length) -> value
    effective: tuple[Row, ...]  # the task's effective-length rows


def _grids(run: RunData) -> list[_Grid]:
    """Per task: its depth x length grid (per-cell score rows, else the item tags' means of its
    primary metric; empty when it has neither) and its effective-length rows."""
    out = []
    for task, rs in task_rows(run).items():
        by_cell = _grid_from_scores(rs)
        cells = {k: v.value for k, v in by_cell.items()}
        metric = next(iter(by_cell.values())).metric if by_cell else ""
        p = primary(rs)
        if not cells and p is not None:
            metric = p.metric
            cells = _grid_from_samples(run, task, p.metric)
        eff = tuple(r for r in rs if r.metric == EFFECTIVE)
        if cells or eff:
            out.append(_Grid(task, metric, cells, eff))
    return out


def _long_context(ctx: ReportContext) -> Section:
    title = "Long context"
    blocks: list[Any] = []
    effective: list[tuple[str, ...]] = []
    for g in _grids(ctx.focus):
        task, metric, grid = g.task, g.metric, g.cells
        effective += [(task, r.label, ci(r)) for r in g.effective]
        if not grid:
            continue
        depths = sorted({d for d, _ in grid})
        lengths = sorted({n for _, n in grid})
        matrix = [[grid.get((d, n), float("nan")) for n in lengths] for d in depths]
        vals = [v for v in grid.values() if math.isfinite(v)]
        unit_range = bool(vals) and min(vals) >= 0 and max(vals) <= 1
        lo = 0.0 if unit_range else min(vals, default=0.0)
        hi = 1.0 if unit_range else max(vals, default=1.0)
        pct = max(depths) <= 1.0
        path = P.heatmap(
            ctx.plot(f"long_context_{slug(task)}"),
            title=f"{task}: {metric} by needle depth and context length",
            matrix=matrix,
            row_labels=[f"{d * 100:g}%" if pct else f"{d:g}" for d in depths],
            col_labels=[_fmt_len(n) for n in lengths],
            xlabel="context length (tokens)",
            ylabel="needle depth (% of context)" if pct else "needle depth",
            value_label=unit(metric),
            vmin=lo,
            vmax=hi,
        )
        caption = "; ".join(f"{r.label}: {ci(r)}" for r in g.effective)
        blocks.append(Figure(path, f"{task} depth × length heatmap", caption))
    if effective:
        blocks.append(Table(("task", "metric", "value [95% CI]"), tuple(effective)))
    if not blocks:
        return absent(
            "long-context",
            title,
            "No long-context results in this run (no rows by depth and length, `depth`/`length` "
            "item tags or effective-length metric).",
        )
    return Section("long-context", title, tuple(blocks))


# e.g. the demo reports tiny-base, the retrieval control and the label control, in that order
long_context = SingleRun(_long_context, lambda run: bool(_grids(run)), "needle results")


# -- in-context learning ---------------------------------------------------------------------


def _k_rows(rs: Sequence[Row]) -> dict[str, list[tuple[int, Row]]]:
    """Per metric, its rows bucketed by the number of demonstrations k alone."""
    out: dict[str, list[tuple[int, Row]]] = {}
    for r in rs:
        k = r.at("k")
        # pass@k by k is a code metric over samples, not a curve over demonstrations.
        is_k = len(r.bucket) == 1 and isinstance(k, int) and not isinstance(k, bool)
        if is_k and r.metric != PASS_AT_K:
            out.setdefault(r.metric, []).append((k, r))  # type: ignore[arg-type]
    return {b: sorted(v, key=lambda t: t[0]) for b, v in out.items()}


def _seed_lines(run: RunData, task: str, metric: str) -> list[P.Series]:
    s = run.samples
    if not {"k", "seed", metric} <= set(s.columns):
        return []
    t = s[s.task == task].dropna(subset=["k", "seed", metric])
    lines = []
    for seed, g in t.groupby("seed"):
        m = g.groupby("k")[metric].mean().sort_index()
        xs = tuple(float(x) for x in m.index)
        lines.append(P.Series("one seed (demonstration draw)", xs, tuple(map(float, m.values))))
        del seed
    return lines


def _fewshot_figures(ctx: ReportContext, tr: dict[str, list[Row]]) -> list[Any]:
    blocks: list[Any] = []
    for task, rs in tr.items():
        for metric, pts in _k_rows(rs).items():
            ks = tuple(float(k) for k, _ in pts)
            series = P.Series(
                f"{metric}, mean over seeds",
                ks,
                tuple(_finite(r.value) for _, r in pts),
                tuple(_finite(r.low) for _, r in pts),
                tuple(_finite(r.high) for _, r in pts),
            )
            path = P.line_chart(
                ctx.plot(f"icl_fewshot_{slug(task)}_{slug(metric)}"),
                title=f"{task}: few-shot curve",
                series=[series],
                faint=_seed_lines(ctx.focus, task, metric),
                xlabel="demonstrations in the prompt, k (log scale)",
                ylabel=unit(metric),
                xlog=True,
                xticks=ks,
                xticklabels=[str(int(k)) for k in ks],
            )
            blocks.append(Figure(path, f"{task} few-shot curve with 95% CI band"))
            blocks.append(
                Table(
                    ("k", f"{metric} [95% CI]"),
                    tuple((str(k), ci(r)) for k, r in pts),
                    f"{task}: gray dotted lines are single seeds",
                )
            )
    return blocks


def _label_points(tr: dict[str, list[Row]]) -> dict[str, Row]:
    """Condition -> row (first task that has it), over tasks reporting label conditions."""
    out: dict[str, Row] = {}
    for rs in tr.values():
        for r in rs:
            cond = r.at("condition")
            if r.metric == "acc" and len(r.bucket) == 1 and isinstance(cond, str):
                out.setdefault(cond, r)
    return out


def _label_figure(ctx: ReportContext, pts: dict[str, Row]) -> list[Any]:
    def series(prefix: str, label: str, gold_at: Callable[[int], float]) -> P.Series | None:
        got = sorted(
            (gold_at(int(c.split("_")[1])), r) for c, r in pts.items() if c.startswith(prefix)
        )
        if prefix == "pct_" and "gold" in pts:
            got.append((100.0, pts["gold"]))
        if not got:
            return None
        return P.Series(
            f"{got[0][1].task}: {label}",
            tuple(x for x, _ in got),
            tuple(_finite(r.value) for _, r in got),
            tuple(_finite(r.low) for _, r in got),
            tuple(_finite(r.high) for _, r in got),
        )

    lines = [
        s
        for s in (
            series("pct_", "other labels replaced by a random wrong one", lambda p: float(p)),
            series("flip_", "labels flipped (gold ↔ other)", lambda p: 100.0 - p),
        )
        if s is not None
    ]
    hlines = [
        (pts[c].value, name)
        for c, name in (("zero_shot", "zero-shot (k = 0)"), ("random", "random labels"))
        if c in pts and math.isfinite(pts[c].value)
    ]
    blocks: list[Any] = []
    if lines or hlines:
        path = P.line_chart(
            ctx.plot("icl_labels"),
            title="Do demonstrations' labels matter? gold vs random vs flipped",
            series=lines,
            hlines=hlines,
            xlabel="demonstrations carrying the gold label (%)",
            ylabel="acc (fraction of items)",
        )
        blocks.append(Figure(path, "accuracy against the share of gold-labeled demonstrations"))
    order = [
        *LABEL_CONDITIONS,
        *sorted((c for c in pts if c not in LABEL_CONDITIONS), key=_cond_key),
    ]
    body = tuple((c, pts[c].task, ci(pts[c])) for c in order if c in pts)
    blocks.append(Table(("condition", "task", "acc [95% CI]"), body))
    return blocks


def _cond_key(c: str) -> tuple[str, int]:
    kind, _, p = c.partition("_")
    return (kind, int(p) if p.isdigit() else 0)


def _icl_summaries(tr: dict[str, list[Row]]) -> list[tuple[str, str, str]]:
    """(task, metric, value) of the icl family's own summary rows (slopes, sensitivities...)."""
    return [
        (t, arrow(r), ci(r))
        for t, rs in tr.items()
        if rs and rs[0].family == "icl"
        for r in rs
        if not r.bucket and r.metric not in ITEM_METRICS
    ]


def _has_icl(run: RunData) -> bool:
    tr = task_rows(run)
    return (
        any(_k_rows(rs) for rs in tr.values())
        or bool(_label_points(tr))
        or bool(_icl_summaries(tr))
    )


def _icl(ctx: ReportContext) -> Section:
    title = "In-context learning"
    tr = task_rows(ctx.focus)
    blocks = _fewshot_figures(ctx, tr)
    pts = _label_points(tr)
    if pts:
        blocks += _label_figure(ctx, pts)
    summaries = _icl_summaries(tr)
    if summaries:
        blocks.append(Table(("task", "summary metric", "value [95% CI]"), tuple(summaries)))
    if not blocks:
        return absent(
            "icl", title, "No in-context-learning results in this run (no rows by k or label)."
        )
    return Section("icl", title, tuple(blocks))


icl = SingleRun(_icl, _has_icl, "in-context-learning results")


# -- multilingual ----------------------------------------------------------------------------


def _languages(rs: Sequence[Row]) -> tuple[str | None, dict[str, Row], dict[str, Row]]:
    """The metric with per-language gaps (acc first), its per-language rows and its gaps."""
    by_lang = [r for r in rs if len(r.bucket) == 1 and isinstance(r.at("language"), str)]
    metrics = {r.metric for r in by_lang}
    gap_bases = {m for m in metrics if gap_metric(m) in metrics}
    if not gap_bases:
        return None, {}, {}
    base = "acc" if "acc" in gap_bases else sorted(gap_bases)[0]
    per, gaps = {}, {}
    for r in by_lang:
        lang = str(r.at("language"))
        if r.metric == base:
            per[lang] = r
        elif r.metric == gap_metric(base):
            gaps[lang] = r
    return base, per, gaps


def gap_metric(metric: str) -> str:
    """The name `evalkit.aggregate.language_scores` gives a metric's gap to English."""
    return f"{metric}_gap_en"


def _language_results(
    run: RunData,
) -> dict[str, tuple[str | None, dict[str, Row], dict[str, Row]]]:
    return {t: got for t, rs in task_rows(run).items() if (got := _languages(rs))[0] is not None}


def _multilingual(ctx: ReportContext) -> Section:
    title = "Multilingual"
    found = _language_results(ctx.focus)
    if not found:
        return absent(
            "multilingual",
            title,
            "No per-language results in this run (no rows by language with gaps to English).",
        )
    langs = sorted(
        {lang for _, per, _ in found.values() for lang in per}, key=lambda x: (x != "en", x)
    )
    nan = float("nan")
    metric = next(iter(found.values()))[0] or "acc"

    def bars(pick: int, cats: Sequence[str]) -> list[P.Bars]:
        out = []
        for task, got in found.items():
            d = got[pick]
            assert isinstance(d, dict)
            out.append(
                P.Bars(
                    task,
                    tuple(d[c].value if c in d else nan for c in cats),
                    tuple(d[c].low if c in d else nan for c in cats),
                    tuple(d[c].high if c in d else nan for c in cats),
                )
            )
        return out

    others = [lang for lang in langs if lang != "en"]
    p1 = P.bar_chart(
        ctx.plot("multilingual_languages"),
        title=f"Per-language {metric}, 95% CI",
        categories=langs,
        bars=bars(1, langs),
        value_label=unit(metric),
        category_label="language (ISO 639)",
    )
    p2 = P.bar_chart(
        ctx.plot("multilingual_gaps"),
        title=f"Gap to English: {metric}[lang] − {metric}[en], paired 95% CI",
        categories=others,
        bars=bars(2, others),
        value_label=f"{unit(metric)}: gap to English (negative: worse than English)",
        category_label="language (ISO 639)",
        ref=0.0,
        ref_label="parity with English",
    )
    head = ("language", *(f"`{t}` {metric}" for t in found), *(f"`{t}` gap" for t in found))
    body = []
    for lang in langs:
        per = [ci(got[1].get(lang)) for got in found.values()]
        gap = ["–" if lang == "en" else ci(got[2].get(lang)) for got in found.values()]
        body.append((lang, *per, *gap))
    blocks = (
        Figure(p1, "per-language scores"),
        Figure(p2, "gaps to English"),
        Table(head, tuple(body), "value [95% CI]; gap = language − English on paired items"),
    )
    return Section("multilingual", title, blocks)


multilingual = SingleRun(
    _multilingual, lambda run: bool(_language_results(run)), "per-language results"
)


# -- code ------------------------------------------------------------------------------------


def _pass_rows(rs: Sequence[Row]) -> list[tuple[int, Row]]:
    out = []
    for r in rs:
        k = r.at("k")
        if r.metric == PASS_AT_K and isinstance(k, int) and len(r.bucket) == 1:
            out.append((k, r))
            continue
        m = _PASS.match(r.metric) if not r.bucket else None
        if m:
            out.append((int(m["k"]), r))
    return sorted(out, key=lambda t: t[0])


def _code_results(run: RunData) -> dict[str, list[tuple[int, Row]]]:
    return {t: pr for t, rs in task_rows(run).items() if (pr := _pass_rows(rs))}


def _code(ctx: ReportContext) -> Section:
    title = "Code: pass@k"
    found = _code_results(ctx.focus)
    if not found:
        return absent("code", title, "No code results in this run (no `pass@k` rows).")
    series = [
        P.Series(
            task,
            tuple(float(k) for k, _ in pr),
            tuple(_finite(r.value) for _, r in pr),
            tuple(_finite(r.low) for _, r in pr),
            tuple(_finite(r.high) for _, r in pr),
        )
        for task, pr in found.items()
    ]
    ks = sorted({k for pr in found.values() for k, _ in pr})
    path = P.line_chart(
        ctx.plot("code_pass_at_k"),
        title="pass@k: chance that one of k samples passes the tests",
        series=series,
        xlabel="samples per problem, k (log scale)",
        ylabel="pass@k (fraction of problems)",
        xlog=True,
        xticks=[float(k) for k in ks],
        xticklabels=[str(k) for k in ks],
    )
    head = ("task", *(f"pass@{k} [95% CI]" for k in ks), "n")
    body = []
    for task, pr in found.items():
        d = dict(pr)
        body.append((task, *(ci(d.get(k)) for k in ks), str(pr[0][1].n)))
    return Section("code", title, (Figure(path, "pass@k curves"), Table(head, tuple(body))))


code = SingleRun(_code, lambda run: bool(_code_results(run)), "code results")


# -- several runs ----------------------------------------------------------------------------


def _catalog_families(ctx: ReportContext) -> Callable[[int, str, str], Row | None]:
    """Family rows of every run through the run catalog (DuckDB over the runs' parquet files,
    `evalkit.catalog.trajectory`), looked up by (run index, family, metric)."""
    from evalkit.catalog import trajectory

    frame = trajectory([r.path for r in ctx.runs], level="family")
    found = {
        (str(t.run), str(t.name), str(t.metric)): Row(
            str(t.name),
            str(t.family),
            str(t.metric),
            float(t.value),
            float(t.ci_low),
            float(t.ci_high),
            int(t.n),
            bool(t.higher_is_better),
            label=str(t.metric),
            level="family",
        )
        for t in frame.itertuples(index=False)
    }
    keys = [str(Path(r.path).resolve()) for r in ctx.runs]
    return lambda i, fam, metric: found.get((keys[i], fam, metric))


def trajectories(ctx: ReportContext) -> Section:
    title = "Trajectories over training"
    if len(ctx.runs) < 2:
        return absent("trajectories", title, "One run: trajectories need several checkpoints.")
    axis, xs = training_position(ctx.runs)
    order = sorted(range(len(ctx.runs)), key=lambda i: xs[i])
    ref = family_primaries(ctx.focus)
    by_metric: dict[str, list[str]] = {}
    for fam, r in ref.items():
        by_metric.setdefault(r.label, []).append(fam)
    at = _catalog_families(ctx)
    blocks: list[Any] = []
    for metric, fams in by_metric.items():
        series = []
        for fam in fams:
            got = [at(i, fam, metric) for i in order]
            keep = [(xs[i], g) for i, g in zip(order, got, strict=True) if g is not None]
            if keep:
                series.append(
                    P.Series(
                        fam,
                        tuple(x for x, _ in keep),
                        tuple(g.value for _, g in keep),
                        tuple(g.low for _, g in keep),
                        tuple(g.high for _, g in keep),
                    )
                )
        ordinal = axis.startswith("run")
        path = P.line_chart(
            ctx.plot(f"trajectories_{slug(metric)}"),
            title=f"Family {metric} over training, 95% CI bands",
            series=series,
            xlabel=axis,
            ylabel=unit(metric),
            xticks=[xs[i] for i in order] if ordinal else None,
            xticklabels=[ctx.labels[i] for i in order] if ordinal else None,
        )
        blocks.append(Figure(path, f"family {metric} trajectories"))
    head = ("run", axis, *(f"{f} ({r.label})" for f, r in ref.items()))
    body = tuple(
        (
            f"`{ctx.labels[i]}`",
            f"{xs[i]:.4g}",
            *(ci(at(i, f, r.label)) for f, r in ref.items()),
        )
        for i in order
    )
    blocks.append(Table(head, body))
    return Section("trajectories", title, tuple(blocks))


def compare_report(ctx: ReportContext) -> CompareReport:
    o = ctx.options
    opts = CompareOptions(resamples=o.resamples, seed=o.seed, level=o.level)
    return compare_runs(list(ctx.runs), opts, labels=list(ctx.labels))


def deltas(ctx: ReportContext) -> Section:
    title = "Paired deltas"
    if len(ctx.runs) < 2:
        return absent("deltas", title, "One run: nothing to compare.")
    try:
        report = compare_report(ctx)
    except EvalkitError as exc:  # e.g. runs of different suites: the rest of the report stands
        return absent("deltas", title, f"No paired comparison: {exc}")
    blocks: list[Any] = [
        Text(
            f"Each run against `{report.runs[0].label}` on the items both share: "
            f"Δ = B − A with its {ctx.options.level:.0%} paired-bootstrap CI; filled squares are "
            f"significant after {report.options.correction} correction."
        )
    ]
    for i, c in enumerate(report.comparisons):
        rs = [r for r in c.rows if r.group is None]
        if not rs:
            continue
        path = P.forest(
            ctx.plot(f"forest_{i}_{slug(c.a)}_vs_{slug(c.b)}"),
            title=f"Paired deltas {c.b} − {c.a}, {ctx.options.level:.0%} CI"
            + (" (chat template − raw)" if c.kind == "format" else ""),
            rows=[
                P.ForestRow(
                    (f"family: {r.name}" if r.scope == "family" else r.name) + f" ({r.metric})",
                    r.delta,
                    r.ci_low,
                    r.ci_high,
                    r.significant,
                )
                for r in rs
            ],
            xlabel="Δ = B − A (metric units; family rows: + = better)",
        )
        blocks.append(Figure(path, f"forest plot {c.a} vs {c.b}"))
        body = tuple(
            (
                f"family: {r.name}" if r.scope == "family" else r.name,
                r.metric,
                num(r.a),
                num(r.b),
                signed(r.delta),
                f"[{num(r.ci_low)}, {num(r.ci_high)}]",
                pval(r.p_adjusted),
                r.call,
            )
            for r in rs
        )
        head = ("task / family", "metric", "A", "B", "Δ", "CI", "p (adj.)", "call")
        blocks.append(Table(head, body, f"`{c.a}` → `{c.b}`"))
    return Section("deltas", title, tuple(blocks))


def attribution(ctx: ReportContext) -> Section:
    """The provenance attribution heatmap and table (`evalkit.report.attribution_plot`)."""
    title = "Attribution to training-data slices"
    with_slices = [r for r in ctx.runs if r.manifest.provenance and r.manifest.provenance.slices]
    if len(with_slices) < 2:
        return absent(
            "attribution", title, "Attribution needs several runs whose provenance lists slices."
        )
    from evalkit.report.attribution_plot import attribution_section

    return attribution_section(list(ctx.runs), list(ctx.labels), ctx.plots)


def changes(ctx: ReportContext) -> Section:
    """Task trajectories and the largest change of each metric (`evalkit.report.changes`)."""
    from evalkit.report.changes import changes as changes_section

    return changes_section(ctx)


def _routing(ctx: ReportContext) -> Section:
    """An MoE run's routing heatmaps and specialisation (`evalkit.report.routing_section`)."""
    from evalkit.report.routing_section import routing_section

    return routing_section(ctx)


def _has_routing(run: RunData) -> bool:
    """A run whose router decisions were collected (the routing section's own test)."""
    from evalkit.analysis.routing import ROUTING

    info = run.manifest.routing
    return info is not None and info.collected and (run.path / ROUTING).is_file()


routing = SingleRun(_routing, _has_routing, "routing statistics")


SECTIONS: tuple[SectionFn, ...] = (
    header,
    families,
    tasks,
    long_context,
    icl,
    multilingual,
    code,
    trajectories,
    changes,
    deltas,
    attribution,
    routing,
)
