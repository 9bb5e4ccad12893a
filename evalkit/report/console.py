"""Rich tables for the terminal."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from evalkit.report.runfacts import run_facts
from evalkit.schema import Manifest, ScoreRow, as_manifest
from evalkit.tasks.kinds import KindSpec


def print_scores(scores: Sequence[ScoreRow], console: Console | None = None) -> None:
    """The family and group table first (see `evalkit.aggregate.family_scores`), then every
    task's scores."""
    # Piped output (CI logs, files) gets a wide table rather than 80 columns of ellipses.
    console = console or Console(width=None if sys.stdout.isatty() else 140)
    families = [s for s in scores if s.is_aggregate]
    tasks = [s for s in scores if not s.is_aggregate]
    if families:
        table = Table(title="Families (mean of their tasks' scores, 95% bootstrap CI)")
        table.add_column("family", no_wrap=True)
        table.add_column("metric", no_wrap=True)
        table.add_column("value", justify="right", no_wrap=True)
        table.add_column("95% CI", justify="right", no_wrap=True)
        table.add_column("n", justify="right")
        for s in sorted(families, key=lambda s: s.family):
            arrow = "↑" if s.higher_is_better else "↓"
            table.add_row(
                s.family,
                f"{escape(s.label)} {arrow}",
                f"{s.value:.4g}",
                f"[{s.ci_low:.4g}, {s.ci_high:.4g}]",
                str(s.n),
            )
        console.print(table)
    table = Table(title="Scores (95% bootstrap CI)")
    table.add_column("task", overflow="fold")
    table.add_column("metric", overflow="fold")
    table.add_column("value", justify="right", no_wrap=True, min_width=8)
    table.add_column("95% CI", justify="right", no_wrap=True, min_width=18)
    table.add_column("n", justify="right", no_wrap=True)
    for s in sorted(tasks, key=lambda s: (s.family, s.task)):
        arrow = "↑" if s.higher_is_better else "↓"
        table.add_row(
            s.task,
            f"{escape(s.label)} {arrow}",
            f"{s.value:.4g}",
            f"[{s.ci_low:.4g}, {s.ci_high:.4g}]",
            str(s.n),
        )
    console.print(table)


def print_runs(
    runs: Sequence[tuple[Path, Manifest | Mapping[str, Any]]], console: Console | None = None
) -> None:
    console = console or Console()
    table = Table(title=f"{len(runs)} run(s)")
    for col in ("run", "checkpoint", "suite / tasks", "backend", "created"):
        table.add_column(col)
    for path, record in runs:
        m = as_manifest(record, str(path))
        tasks = m.suite or ",".join(t.name for t in m.tasks)
        table.add_row(
            str(path),
            Path(m.checkpoint).name,
            tasks,
            f"{m.backend} {m.dtype_resolved or m.dtype_requested or ''}".rstrip(),
            m.created[:19],
        )
    console.print(table)


def print_tasks(
    specs: Sequence[KindSpec],
    suites: Sequence[str],
    console: Console | None = None,
) -> None:
    console = console or Console()
    table = Table(title="Native tasks")
    for col in ("family", "task", "kind", "version", "description"):
        table.add_column(col)
    for s in sorted(specs, key=lambda s: (s.family, s.name)):
        table.add_row(s.family, s.name, s.kind, s.version, s.description)
    console.print(table)
    console.print(f"Suites: {', '.join(suites) or 'none'}")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def print_query(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    fmt: str = "table",
    console: Console | None = None,
) -> None:
    """A catalog query's result as a rich table, JSON records, or CSV on stdout."""
    if fmt == "json":
        import json

        records = [dict(zip(columns, r, strict=True)) for r in rows]
        sys.stdout.write(json.dumps(records, indent=2, default=str) + "\n")
        return
    if fmt == "csv":
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows([["" if v is None else v for v in r] for r in rows])
        return
    console = console or Console()
    table = Table(title=f"{len(rows)} row(s)")
    for col in columns:
        table.add_column(col)
    for r in rows:
        table.add_row(*(_cell(v) for v in r))
    console.print(table)


def print_run_facts(manifest: Manifest | Mapping[str, Any], console: Console | None = None) -> None:
    """What the manifest says beside the scores: tasks skipped on this checkpoint (with why),
    items a task left out (e.g. few-shot prompts too long at some k), summaries with no value
    on this run (with why, e.g. a label sensitivity over no gain), and a vocabulary padded
    beyond the tokenizer. Prints nothing when there is none of it."""
    console = console or Console(width=None if sys.stdout.isatty() else 140, highlight=False)
    facts = run_facts(manifest)
    for task, family, why in facts.skipped:
        console.print(f"skipped task {escape(task)} ({escape(family)}): {escape(why)}")
    for task, bucket, count in facts.left_out:
        console.print(f"{escape(task)}: {count} item(s) left out at {escape(bucket)}")
    for task, metric, why in facts.undefined:
        console.print(f"{escape(task)}: {escape(metric)} undefined: {escape(why)}")
    if (v := facts.vocab) is not None:
        console.print(
            f"note: the embedding has {v.embedding_rows} rows, the tokenizer "
            f"{v.tokenizer_tokens} tokens ({v.padded_rows} rows never produced by "
            "the tokenizer still share the softmax, as lm-eval scores them)"
        )


def print_routing_only(manifest: Manifest, path: Path, console: Console | None = None) -> None:
    """What a routing-only run did (it has no scores to show): what was routed, through what,
    and the table it wrote."""
    console = console or Console(width=None if sys.stdout.isatty() else 140, highlight=False)
    info = manifest.routing
    if info is None or not info.collected or info.file is None:
        console.print(f"routing only: no routing collected ({info.status if info else 'none'})")
        return
    import pyarrow.parquet as pq

    table = path / info.file
    rows = pq.ParquetFile(table).metadata.num_rows
    console.print(
        f"routing only (no scores): {info.items} item(s) of {len(manifest.tasks)} task(s)"
        + (f" and {info.slice_documents} slice document(s)" if info.slice_documents else "")
        + f" routed through {len(info.layers)} MoE layer(s), {info.experts} experts, "
        f"top-{info.top_k}"
    )
    console.print(f"{escape(info.file)}: {rows} row(s) written to {escape(str(table))}")
