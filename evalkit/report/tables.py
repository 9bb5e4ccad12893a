"""Rich terminal tables for comparisons and gate verdicts."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from evalkit.analysis.compare import CompareReport, Comparison, DeltaRow, base_vs_chat
from evalkit.analysis.gate import GateVerdict
from evalkit.report.markdown import (
    GATE_COLUMNS,
    SNR_COLUMNS,
    arrow,
    check_cells,
    num,
    pval,
    signed,
    snr_cells,
)

_CALL_STYLE = {"better": "[green]▲[/]", "worse": "[red]▼[/]", "n.s.": "[dim]·[/]"}


def _console() -> Console:
    # Logs and CI output are not terminals: give tables room instead of rich's 80 columns.
    return Console() if sys.stdout.isatty() else Console(width=160)


def _delta_table(title: str, rows: Sequence[DeltaRow], correction: str, level: float) -> Table:
    table = Table(
        title=title,
        title_justify="left",
        caption="▲ better / ▼ worse: significant after correction; · not significant",
        caption_justify="left",
    )
    table.add_column("", no_wrap=True)
    table.add_column("task / family", min_width=12, overflow="fold")
    table.add_column("metric", overflow="fold")
    for col in ("A", "B", "Δ", f"{level:.0%} CI", f"p ({correction})", "MDE", "n"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in rows:
        name = escape(r.name) if r.scope == "task" else f"[bold]{escape(r.name)}[/] (family)"
        if r.group is not None:
            name += escape(f" [{r.group}]")
        table.add_row(
            _CALL_STYLE[r.call],
            name,
            r.metric + arrow(r.higher_is_better),
            num(r.a),
            num(r.b),
            signed(r.delta),
            f"[{num(r.ci_low)}, {num(r.ci_high)}]",
            pval(r.p_adjusted),
            num(r.mde, ".3g"),
            str(r.n),
        )
    return table


def print_comparison(c: Comparison, report: CompareReport, console: Console) -> None:
    o = report.options
    title = (
        f"format sensitivity: {escape(c.a)} → {escape(c.b)} (raw → chat template)"
        if c.kind == "format"
        else f"{escape(c.a)} → {escape(c.b)}"
    )
    console.print(
        _delta_table(title, [r for r in c.rows if r.group is None], o.correction, o.level)
    )
    grouped = [r for r in c.rows if r.group is not None]
    if grouped:
        console.print(_delta_table(f"{title}, by {o.by}", grouped, o.correction, o.level))
    for w in c.warnings:
        console.print(f"[yellow]warning:[/] {escape(w)}")


def print_compare(report: CompareReport, console: Console | None = None) -> None:
    console = console or _console()
    tuning = base_vs_chat(report)
    if tuning:
        table = Table(title="base vs chat (* = significant)", title_justify="left")
        for col in (
            "task / family",
            "metric",
            "base",
            "chat raw",
            "chat tmpl",
            "Δ tuning",
            "Δ format",
            "Δ total",
        ):
            table.add_column(col, justify="left" if col in ("task / family", "metric") else "right")
        for r in tuning:
            table.add_row(
                escape(r.name) if r.scope == "task" else f"[bold]{escape(r.name)}[/] (family)",
                r.metric,
                num(r.base),
                num(r.chat_raw),
                num(r.chat_template),
                signed(r.tuning) + ("*" if r.tuning_call != "n.s." else ""),
                signed(r.format) + ("*" if r.format_call != "n.s." else ""),
                signed(r.total) + ("*" if r.total_call != "n.s." else ""),
            )
        console.print(table)
    for c in report.comparisons:
        print_comparison(c, report, console)
    if report.snr:
        table = Table(title="signal and noise (arXiv:2508.13144)", title_justify="left")
        for col in SNR_COLUMNS:
            table.add_column(col)
        for s in report.snr:
            table.add_row(*snr_cells(s, low="[red]low[/] "))
        console.print(table)
    for w in report.warnings:
        console.print(f"[yellow]warning:[/] {escape(w)}")


_OUTCOME = {
    "pass": "[green]PASS[/]",
    "regression": "[red]REGRESSION[/]",
    "inconclusive": "[yellow]INCONCLUSIVE[/]",
}


def print_gate(v: GateVerdict, console: Console | None = None) -> None:
    console = console or _console()
    table = Table(
        title=f"gate ({v.suite or 'policy'}): baseline {v.baseline_select}", title_justify="left"
    )
    for col in GATE_COLUMNS:
        table.add_column(col, overflow="fold")
    for c in v.checks:
        table.add_row(
            *check_cells(c, outcomes=_OUTCOME, name=c.check.name, reason=escape(c.reason))
        )
    console.print(table)
    for w in v.warnings:
        console.print(f"[yellow]warning:[/] {escape(w)}")
    console.print(f"verdict: {_OUTCOME[v.outcome]} (exit {v.exit_code})")
