"""What the command modules share: the one-line error exit, file output, the output and
cache options of the commands that score, and logging runs to a tracker."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer

from evalkit.errors import EvalkitError


def fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror or exc}")


OutOption = Annotated[Path | None, typer.Option(help="Run directory to write (must not exist).")]
CacheDirOption = Annotated[Path | None, typer.Option(help="Result cache folder.")]
NoCacheOption = Annotated[
    bool, typer.Option("--no-cache", help="Neither read nor write the cache.")
]
ProgressOption = Annotated[bool, typer.Option(help="Show a progress bar.")]
LogOption = Annotated[
    str | None, typer.Option(help="Log scores to an experiment tracker: wandb or tensorboard.")
]
LogDirOption = Annotated[
    Path | None, typer.Option(help="Tracker folder (default: beside the run).")
]


def log_to_tracker(
    kind: str, runs: list[Path], log_dir: Path | None, gates: dict[Path, str | None]
) -> None:
    """Write the runs' HTML report and log them (scores, CIs, gate, report) to the tracker."""
    from evalkit.api import make_report
    from evalkit.trackers import Tracked, log_runs

    base = log_dir or runs[-1].parent / f"{kind}-logs"
    try:
        report = make_report(*runs, out=base / f"report-{runs[-1].name}").index
        tracked = [Tracked(r, gates.get(r), report if r == runs[-1] else None) for r in runs]
        where = log_runs(kind, tracked, base, name=runs[-1].name)
    except EvalkitError as exc:
        fail(str(exc))
    typer.echo(f"logged to {kind} in {where}")
