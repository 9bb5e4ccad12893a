"""Run directories: written atomically, read by analysis and reports, never by a live model.

A run is `manifest.json`, `samples.parquet` (one row per task item) and `scores.parquet` (one
row per task/family and metric), laid out as `evalkit.schema` says (version 3; older runs are
read through `evalkit.migrate`). It is assembled in a hidden sibling directory and renamed into
place, so an interrupted run never leaves a directory that looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit import migrate
from evalkit.errors import EvalkitError
from evalkit.schema import (
    SAMPLE_BASE_COLUMNS,
    SAMPLE_METRICS,
    SAMPLE_TAGS,
    SCHEMA_VERSION,
    Manifest,
    ScoreRow,
    manifest_from_json,
    rows_from_table,
    scores_table,
)
from evalkit.tasks.base import ItemResult

MANIFEST = "manifest.json"
SAMPLES = "samples.parquet"
SCORES = "scores.parquet"
RUN_SCHEMA_VERSION = SCHEMA_VERSION


def samples_frame(results: Mapping[str, Sequence[ItemResult]]) -> Any:
    """samples.parquet's frame: the base columns, then `metrics` and `tags` as struct columns
    (each left out when no item has any: parquet cannot store a struct without fields)."""
    import pandas as pd

    rows: list[dict[str, Any]] = []
    any_metric = any_tag = False
    for task, items in results.items():
        for r in items:
            # One flat namespace per item when read back (`RunData.samples`): a tag may not
            # share a name with a base column or a metric.
            for name in r.tags:
                if name in SAMPLE_BASE_COLUMNS or name in r.metrics:
                    raise EvalkitError(f"task {task}: tag {name!r} clashes with a column")
            for name in r.metrics:
                if name in SAMPLE_BASE_COLUMNS:
                    raise EvalkitError(f"task {task}: metric {name!r} clashes with a column")
            any_metric = any_metric or bool(r.metrics)
            any_tag = any_tag or bool(r.tags)
            rows.append(
                {
                    "task": task,
                    "doc_id": int(r.doc_id),
                    "prompt_hash": r.prompt_hash,
                    "loglikelihoods": [float(x) for x in r.loglikelihoods],
                    "prediction": r.prediction,
                    "target": r.target,
                    "truncated": r.truncated,
                    SAMPLE_METRICS: {
                        name: [float(v) for v in m] if isinstance(m, tuple) else float(m)
                        for name, m in r.metrics.items()
                    },
                    SAMPLE_TAGS: dict(r.tags),
                }
            )
    frame = pd.DataFrame(rows, columns=[*SAMPLE_BASE_COLUMNS, SAMPLE_METRICS, SAMPLE_TAGS])
    drop = [c for c, keep in ((SAMPLE_METRICS, any_metric), (SAMPLE_TAGS, any_tag)) if not keep]
    return frame.drop(columns=drop)


def scores_frame(scores: Sequence[ScoreRow]) -> Any:
    """scores.parquet's frame (`evalkit.schema.scores_table`)."""
    return scores_table(scores)


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
    """A stored run, as the current schema version whatever version wrote it.

    - `manifest`: the typed manifest (also a read-only mapping of manifest.json's keys, as
      the current version has them; `manifest.config` is the run's `RunConfig`).
    - `rows`: the typed score rows.
    - `samples`: one row per item, flat: the base columns, then one column per metric
      (`metric_columns`) and per tag (`tag_columns`), each listed explicitly.
    """

    path: Path
    manifest: Manifest
    samples: Any  # pandas.DataFrame
    rows: tuple[ScoreRow, ...] = ()
    metric_columns: tuple[str, ...] = ()
    tag_columns: tuple[str, ...] = ()

    @property
    def info(self) -> Manifest:
        """The typed manifest (the name version 2's readers used)."""
        return self.manifest


def is_run(path: str | os.PathLike[str]) -> bool:
    path = Path(path)
    return (path / MANIFEST).is_file() and (path / SCORES).is_file()


def read_run(path: str | os.PathLike[str]) -> RunData:
    path = Path(path)
    raw = _read_json(path)
    version = migrate.check_version(raw, str(path))
    manifest = migrate.upgrade_manifest(raw, version)
    info = manifest_from_json(manifest, str(path))
    samples = _read_table(path, SAMPLES)
    scores = _read_table(path, SCORES)
    if version >= 2:  # the tables' layout is version 2's
        rows = rows_from_table(scores, str(path))
        samples, metrics, tags = _flat_samples(samples, str(path))
    else:
        rows = migrate.score_rows_v1(scores, str(path), raw)
        samples, metrics = migrate.split_samples_v1(samples, rows)
        tags = tuple(
            c for c in samples.columns if c not in SAMPLE_BASE_COLUMNS and c not in metrics
        )
    return RunData(
        path=path,
        manifest=info,
        samples=samples,
        rows=rows,
        metric_columns=metrics,
        tag_columns=tags,
    )


def _flat_samples(frame: Any, where: str) -> tuple[Any, tuple[str, ...], tuple[str, ...]]:
    """A version-2 samples frame flattened: base columns, then metric and tag columns."""
    import pandas as pd

    missing = [c for c in ("task", "doc_id") if c not in frame.columns]
    if missing:
        raise EvalkitError(f"damaged run directory {where}: samples.parquet lacks {missing}")
    parts = [frame[[c for c in frame.columns if c not in (SAMPLE_METRICS, SAMPLE_TAGS)]]]
    names: list[tuple[str, ...]] = []
    for col in (SAMPLE_METRICS, SAMPLE_TAGS):
        if col not in frame.columns:
            names.append(())
            continue
        # A struct column reads back as one dict per row, every field present (None where
        # the item has no such metric or tag).
        wide = pd.DataFrame([v if isinstance(v, dict) else {} for v in frame[col]])
        wide.index = frame.index
        parts.append(wide)
        names.append(tuple(str(c) for c in wide.columns))
    flat = pd.concat(parts, axis=1)
    return flat, names[0], names[1]


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """manifest.json as the current version (an older manifest migrated)."""
    path = Path(path)
    raw = _read_json(path)
    return migrate.upgrade_manifest(raw, migrate.check_version(raw, str(path)))


def read_info(path: Path) -> Manifest:
    """The typed manifest of the run at `path`."""
    return manifest_from_json(read_manifest(path), str(path))


def _read_json(path: Path) -> dict[str, Any]:
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
