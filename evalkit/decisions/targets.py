"""Where a decision command finds its runs: a run directory, or every run under a folder."""

from __future__ import annotations

from pathlib import Path

from evalkit.errors import EvalkitError
from evalkit.store import is_run, list_runs

PathLike = str | Path


def runs_at(path: PathLike, what: str) -> list[Path]:
    """A run directory, or every complete run under a folder (e.g. a training run's evals);
    `what` names the argument in the error when there is neither."""
    p = Path(path)
    if is_run(p):
        return [p]
    if not p.exists():
        raise EvalkitError(f"{what} not found: {p}")
    found = list_runs(p) if p.is_dir() else []
    if not found:
        raise EvalkitError(f"{what} {p} is not a run directory and holds no runs")
    return found
