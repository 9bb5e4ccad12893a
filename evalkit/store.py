"""Run directories: written atomically, read by analysis and reports, never by a live model.

A run is `manifest.json`, `samples.parquet` (one row per task item) and `scores.parquet` (one
row per task/family and metric). It is assembled in a hidden sibling directory and renamed into
place, so an interrupted run never leaves a directory that looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from evalkit.errors import EvalkitError
from evalkit.scoring import Score
from evalkit.tasks.base import ItemResult

MANIFEST = "manifest.json"
SAMPLES = "samples.parquet"
SCORES = "scores.parquet"
RUN_SCHEMA_VERSION = 1
_BASE_COLUMNS = ("task", "doc_id", "prompt_hash", "loglikelihoods", "prediction", "target")


def samples_frame(results: Mapping[str, Sequence[ItemResult]]) -> Any:
    import pandas as pd

    rows: list[dict[str, Any]] = []
    for task, items in results.items():
        for r in items:
            row: dict[str, Any] = {
                "task": task,
                "doc_id": int(r.doc_id),
                "prompt_hash": r.prompt_hash,
                "loglikelihoods": [float(x) for x in r.loglikelihoods],
                "prediction": r.prediction,
                "target": r.target,
                "truncated": r.truncated,
            }
            for name, metric in r.metrics.items():
                row[name] = (
                    [float(v) for v in metric] if isinstance(metric, tuple) else float(metric)
                )
            for name, tag in r.tags.items():
                if name in row:
                    raise EvalkitError(f"task {task}: tag {name!r} clashes with a column")
                row[name] = tag
            rows.append(row)
    return pd.DataFrame(rows)


def scores_frame(scores: Sequence[Score]) -> Any:
    import pandas as pd

    return pd.DataFrame([asdict(s) for s in scores])


def write_run(
    out: Path,
    manifest: dict[str, Any],
    samples: Any,
    scores: Any,
    *,
    overwrite: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """`extra`: more tables by file name (`routing.parquet`), written beside the two."""
    out = out.resolve()
    if out.exists() and not overwrite:
        raise EvalkitError(f"run directory already exists: {out} (runs are immutable)")
    staging = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
    except OSError as exc:
        raise EvalkitError(f"cannot write run directory {out}: {exc.strerror or exc}") from None
    try:
        samples.to_parquet(staging / SAMPLES, index=False)
        scores.to_parquet(staging / SCORES, index=False)
        for name, frame in (extra or {}).items():
            frame.to_parquet(staging / name, index=False)
        # The manifest goes last: its presence marks a complete run.
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except OSError as exc:  # a full disk, say: one line, and no half-written run left
        shutil.rmtree(staging, ignore_errors=True)
        raise EvalkitError(f"cannot write run directory {out}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


@dataclass(frozen=True)
class RunData:
    path: Path
    manifest: dict[str, Any]
    samples: Any  # pandas.DataFrame
    scores: Any  # pandas.DataFrame


def is_run(path: Path) -> bool:
    return (path / MANIFEST).is_file() and (path / SCORES).is_file()


def read_run(path: Path) -> RunData:
    manifest = read_manifest(path)
    return RunData(
        path=path,
        manifest=manifest,
        samples=_read_table(path, SAMPLES),
        scores=_read_table(path, SCORES),
    )


def read_manifest(path: Path) -> dict[str, Any]:
    if not is_run(path):
        raise EvalkitError(f"not a complete evalkit run directory: {path}")
    # A run directory damaged after it was written (edited, truncated) is one line, not a
    # traceback from json or pyarrow.
    try:
        data = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise EvalkitError(f"damaged run directory {path}: {MANIFEST}: {_first(exc)}") from None
    if not isinstance(data, dict):
        raise EvalkitError(f"damaged run directory {path}: {MANIFEST} is not a JSON object")
    return data


def _read_table(path: Path, name: str) -> Any:
    import pandas as pd

    if not (path / name).is_file():
        raise EvalkitError(f"damaged run directory {path}: {name} is missing")
    try:
        return pd.read_parquet(path / name)
    except Exception as exc:  # pyarrow raises its own types; any of them means damage
        raise EvalkitError(f"damaged run directory {path}: {name}: {_first(exc)}") from None


def _first(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def list_runs(root: Path) -> list[Path]:
    """Complete runs under `root` (the root itself, or any depth below), sorted by path."""
    if not root.exists():
        raise EvalkitError(f"runs folder not found: {root}")
    found = [p.parent for p in root.rglob(MANIFEST) if is_run(p.parent)]
    return sorted(found)
