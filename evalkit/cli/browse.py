"""The commands that read and present what is stored: `runs`, `tasks`, `report`, `query`,
`export` and `version`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from evalkit.cli.common import fail
from evalkit.errors import EvalkitError


def runs(
    folder: Annotated[Path, typer.Argument(help="Folder holding run directories.")] = Path("runs"),
    slices: Annotated[
        bool, typer.Option("--slices", help="Show each run's training mix (provenance).")
    ] = False,
) -> None:
    """List the complete runs under FOLDER."""
    from evalkit.report.console import print_runs
    from evalkit.store import list_runs, read_manifest

    try:
        paths = list_runs(folder)
        if slices:
            from evalkit.report.provenance_tables import print_run_slices

            print_run_slices([(p, read_manifest(p)) for p in paths])
            return
        print_runs([(p, read_manifest(p)) for p in paths])
    except EvalkitError as exc:
        fail(str(exc))


def list_tasks(
    tasks_dir: Annotated[Path | None, typer.Option(help="Extra folder of task YAML.")] = None,
) -> None:
    """List native tasks and suites."""
    from evalkit.report.console import print_tasks
    from evalkit.tasks.registry import available_suites, builtin_tasks_dir, native_specs

    try:
        dirs = [builtin_tasks_dir()] + ([tasks_dir] if tasks_dir else [])
        print_tasks(list(native_specs(dirs).values()), available_suites())
    except EvalkitError as exc:
        fail(str(exc))


def version() -> None:
    """Print evalkit's version."""
    from evalkit import __version__

    typer.echo(__version__)


def report(
    runs: Annotated[
        list[Path], typer.Argument(help="Run directories (or folders of runs), oldest first.")
    ],
    out: Annotated[Path, typer.Option(help="Report folder (index.html, report.md, plots/).")],
    label: Annotated[
        list[str] | None, typer.Option(help="Label of each run (repeat; default: folder name).")
    ] = None,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples of the deltas.")] = 2000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    title: Annotated[str | None, typer.Option(help="Page title.")] = None,
) -> None:
    """Write a self-contained HTML report and a markdown report with plots of RUNS."""
    from evalkit.api import make_report as run_report

    try:
        files = run_report(
            *runs, out=out, labels=label or None, resamples=resamples, seed=seed, title=title
        )
    except EvalkitError as exc:
        fail(str(exc))
    typer.echo(f"markdown: {files.markdown}")
    typer.echo(f"plots: {len(files.plots)} in {files.out / 'plots'}")
    typer.echo(f"report written to {files.index}")


def query(
    sql: Annotated[
        str, typer.Argument(help="SQL over the views runs, scores, samples, slices, routing.")
    ] = "SELECT * FROM runs",
    runs_dir: Annotated[Path, typer.Option("--runs", help="Folder holding runs.")] = Path("runs"),
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON records.")] = False,
    csv_out: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
) -> None:
    """Query every run under --runs with DuckDB SQL (see docs/sweep.md for the views)."""
    from evalkit.catalog import query as run_query

    if json_out and csv_out:
        fail("give at most one of --json and --csv")
    try:
        result = run_query(sql, runs_dir)
    except EvalkitError as exc:
        fail(str(exc))
    from evalkit.report.console import print_query

    print_query(result.columns, result.rows, "json" if json_out else "csv" if csv_out else "table")


def export_run(
    run: Annotated[Path, typer.Argument(help="Run directory to export.")],
    out: Annotated[Path, typer.Option(help="Folder to write the files under.")],
    format: Annotated[str, typer.Option("--format", help="lmeval (lm-eval 0.4's files).")] = (
        "lmeval"
    ),
) -> None:
    """Write a run as another harness's result files (lm-eval's results_*.json, samples_*.jsonl)."""
    from evalkit.export import export

    try:
        files = export(run, out, format)
    except EvalkitError as exc:
        fail(str(exc))
    typer.echo(f"{len(files)} files written to {files[0].parent}")
