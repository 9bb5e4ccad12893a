"""Terminal tables for provenance: run mixes, attribution, contamination."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from evalkit.analysis.attribute import AttributionReport
from evalkit.analysis.contamination import ContaminationReport
from evalkit.schema import Manifest, as_manifest


def _console(console: Console | None) -> Console:
    return console or Console(width=None if sys.stdout.isatty() else 140)


def _f(x: float | None, spec: str = ".3f") -> str:
    return "" if x is None else format(x, spec)


def print_run_slices(
    runs: Sequence[tuple[Path, Manifest | Mapping[str, Any]]], console: Console | None = None
) -> None:
    """Each run's training mix: checkpoint, step, tokens seen, and slice shares."""
    console = _console(console)
    table = Table(title="Training mix of each run")
    for col in ("run", "checkpoint (step)", "tokens seen", "mix"):
        table.add_column(col)
    for path, m in runs:
        prov = as_manifest(m, str(path)).provenance
        if prov is None:
            table.add_row(str(path), "", "", "(no provenance)")
            continue
        ck = prov.checkpoint
        mix = ", ".join(f"{s.name} {100 * (s.share or 0.0):.1f}%" for s in prov.slices)
        table.add_row(str(path), f"{ck.run} ({ck.step})", str(ck.tokens_seen), mix)
    console.print(table)


def print_attribution(report: AttributionReport, console: Console | None = None) -> None:
    console = _console(console)
    if report.effects:
        level = round(100 * report.options.level)
        table = Table(
            title=f"Slice effects per doubling of share ({level}% CI), {len(report.runs)} runs"
        )
        for col in ("family", "slice", "effect", "CI", "call"):
            table.add_column(col)
        for e in report.effects:
            if e.effect is None:
                table.add_row(e.family, e.slice, "not identifiable", "", e.reason or "")
                continue
            call = (
                "drives"
                if e.significant and (e.ci_low or 0) > 0
                else ("hurts" if e.significant else "n.s.")
            )
            table.add_row(
                e.family, e.slice, f"{e.effect:+.4f}", f"[{e.ci_low:+.4f}, {e.ci_high:+.4f}]", call
            )
        console.print(table)
    for pair in report.pairs:
        table = Table(title=f"Ablation: {pair.b} vs {pair.a} - slice differences")
        for col in ("slice", "tokens A", "tokens B", "share A", "share B"):
            table.add_column(col)
        for d in pair.slices:
            table.add_row(d.slice, str(d.tokens_a), str(d.tokens_b), _f(d.share_a), _f(d.share_b))
        console.print(table)
        rows = Table(title=f"Ablation: {pair.b} minus {pair.a}, paired")
        for col in ("scope", "name", "metric", "A", "B", "delta", "CI", "call"):
            rows.add_column(col)
        for r in pair.comparison.rows:
            if r.group is not None:
                continue
            rows.add_row(
                r.scope,
                r.name,
                r.metric,
                _f(r.a),
                _f(r.b),
                f"{r.delta:+.4f}",
                f"[{r.ci_low:+.4f}, {r.ci_high:+.4f}]",
                r.call,
            )
        console.print(rows)
    if report.slice_fit:
        table = Table(title="Slice fit: bits per byte on each slice's held-out documents")
        table.add_column("run")
        for s in report.slices:
            table.add_column(s)
        for run in report.runs:
            fit = report.slice_fit.get(run, {})
            table.add_row(run, *(_f(fit.get(s)) for s in report.slices))
        console.print(table)
        if any(link.correlation is not None for link in report.slice_fit_links):
            corr = Table(title="Across runs: correlation of slice fit (-bpb) with family score")
            corr.add_column("slice")
            for f in report.families:
                corr.add_column(f)
            for s in report.slices:
                cells = {
                    link.family: _f(link.correlation, "+.2f")
                    for link in report.slice_fit_links
                    if link.slice == s
                }
                corr.add_row(s, *(cells.get(f, "") for f in report.families))
            console.print(corr)
    for w in report.warnings:
        console.print(f"note: {w}")


def print_contamination(report: ContaminationReport, console: Console | None = None) -> None:
    console = _console(console)
    scans = Table(title=f"{report.n}-gram overlap of {report.items_checked} items with slices")
    for col in ("slice", "documents", "items flagged"):
        scans.add_column(col)
    for s in report.slices:
        scans.add_row(s.slice, str(s.documents), str(s.flagged_items))
    console.print(scans)
    table = Table(title="Clean vs dirty, per task (dirty: flagged by the slice, or by any)")
    for col in (
        "task",
        "slice",
        "metric",
        "dirty/all",
        "all",
        "clean",
        "dirty",
        "dirty-clean",
        "CI",
    ):
        table.add_column(col)
    for r in report.rows:
        ci = "" if r.ci_low is None else f"[{r.ci_low:+.3f}, {r.ci_high:+.3f}]"
        table.add_row(
            r.task,
            r.slice or "(any)",
            r.metric or "",
            f"{r.n_dirty}/{r.n_items}",
            _f(r.score_all),
            _f(r.score_clean),
            _f(r.score_dirty),
            "" if r.dirty_minus_clean is None else f"{r.dirty_minus_clean:+.3f}",
            ci,
        )
    console.print(table)
    for w in report.warnings:
        console.print(f"note: {w}")
