"""A queryable catalog over every run in a folder: DuckDB views over the runs' parquet files.

Views (see docs/sweep.md):

- `runs`: one row per complete run, from its manifest, with the checkpoint's provenance
  (`ckpt_run`, `step`, `tokens_seen`, `parent`, `mix_id`) when it has one.
- `scores`: every run's score rows (`evalkit.schema.ScoreRow`: task, family, group, level,
  metric, bucket as JSON, label, primary, value, ci_low, ci_high, ci_method, n,
  higher_is_better) with a leading `run` column, whatever schema version wrote the run.
- `samples`: every run's items, one column per base field, metric and tag (as
  `evalkit.store.RunData.samples`), with a leading `run` column (columns are the union across
  runs; a task's missing columns are NULL). A view over the parquet files, read when queried:
  opening a catalog reads each run's manifest and scores, never its items.
- `slices`: one row per (run, training-data slice) of the provenance.
- `routing`: an MoE run's routing statistics (`routing.parquet`, docs/moe.md) with `run`.

The catalog reads only the run store, never a live model; older runs are migrated (manifest
and scores through `evalkit.migrate`; version-1 samples are already flat). Hidden folders (a run still being assembled is staged in
`.NAME.partial-*`) are never runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.errors import EvalkitError
from evalkit.manifest_records import CheckpointRef
from evalkit.migrate import score_rows_v1
from evalkit.provenance import SLICE_FIELDS
from evalkit.schema import (
    SAMPLE_METRICS,
    SAMPLE_TAGS,
    Manifest,
    rows_from_table,
    scores_table,
)
from evalkit.store import MANIFEST, SAMPLES, SCORES, is_run, read_info

VIEWS = ("runs", "scores", "samples", "slices", "routing")


@dataclass(frozen=True)
class QueryResult:
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def catalog_runs(root: Path) -> list[Path]:
    """Complete, visible runs at or below `root`, sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise EvalkitError(f"runs folder not found: {root}")
    found = []
    for manifest in root.rglob(MANIFEST):
        run = manifest.parent
        rel = run.relative_to(root).parts
        if any(part.startswith(".") for part in rel) or not is_run(run):
            continue
        found.append(run.resolve())
    return sorted(found)


def _run_row(path: Path, m: Manifest) -> dict[str, Any]:
    ckpt = m.provenance.checkpoint if m.provenance is not None else CheckpointRef()
    tasks = [t.name for t in m.tasks]
    skipped = [s.task for s in m.skipped_tasks]
    return {
        "run": str(path),
        "name": path.name,
        "checkpoint": m.checkpoint or None,
        "checkpoint_name": Path(m.checkpoint).name or None,
        "suite": m.suite,
        "tasks": ",".join(tasks),
        "n_tasks": len(tasks),
        "skipped_tasks": ",".join(skipped),
        "n_skipped_tasks": len(skipped),
        "padded_vocab_rows": m.vocabulary.padded_rows if m.vocabulary is not None else None,
        "item_limit": m.limit,
        "backend": m.backend or None,
        "dtype_requested": m.dtype_requested,
        "dtype_resolved": m.dtype_resolved,
        "device": m.hardware.device,
        "chat_template": m.chat,
        "model_fingerprint": m.model_fingerprint,
        "tokenizer_fingerprint": m.tokenizer_fingerprint,
        "evalkit_version": m.evalkit_version or None,
        "evalkit_commit": m.evalkit_commit,
        "created": m.created or None,
        "total_seconds": m.timings.total_seconds,
        "ckpt_run": ckpt.run,
        "step": ckpt.step,
        "tokens_seen": ckpt.tokens_seen,
        "parent": ckpt.parent,
        "mix_id": ckpt.mix_id,
    }


def _slice_rows(path: Path, m: Manifest) -> list[dict[str, Any]]:
    slices = m.provenance.slices if m.provenance is not None else ()
    return [{"run": str(path), **{k: getattr(s, k) for k in SLICE_FIELDS}} for s in slices]


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _resolve_runs(source: str | Path | Sequence[Path]) -> list[Path]:
    """A folder means every complete run under it; a sequence names the runs themselves."""
    if isinstance(source, str | Path):
        paths = catalog_runs(Path(source))
        if not paths:
            raise EvalkitError(f"no complete runs under {source}")
        return paths
    paths = [Path(p).resolve() for p in source]
    for p in paths:
        if not is_run(p):
            raise EvalkitError(f"not a complete run: {p}")
    if not paths:
        raise EvalkitError("no runs given")
    return paths


def connect(source: str | Path | Sequence[Path]) -> Any:
    """An in-memory DuckDB connection with the catalog views over the runs under a folder, or
    over the given run directories. Manifests and scores (small) become tables; the items stay
    in their parquet files, behind the `samples` view."""
    import duckdb
    import pandas as pd

    paths = _resolve_runs(source)
    manifests = [read_info(p) for p in paths]
    runs = pd.DataFrame([_run_row(p, m) for p, m in zip(paths, manifests, strict=True)])
    for col in ("item_limit", "step", "tokens_seen"):
        runs[col] = runs[col].astype("Int64")
    runs["created"] = pd.to_datetime(runs["created"], utc=True, errors="coerce")
    slices = pd.DataFrame(
        [r for p, m in zip(paths, manifests, strict=True) for r in _slice_rows(p, m)],
        columns=["run", *SLICE_FIELDS],
    )
    scores = pd.concat(
        [_scores(p, m).assign(run=str(p)) for p, m in zip(paths, manifests, strict=True)],
        ignore_index=True,
    )
    con = duckdb.connect(":memory:")
    for name, frame in (("runs", runs), ("slices", slices), ("scores", scores)):
        if name == "scores":  # `run` first, as in the other views
            frame = frame[["run", *(c for c in frame.columns if c != "run")]]
        con.register(f"_{name}_df", frame)
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM _{name}_df")
        con.unregister(f"_{name}_df")
    parts = [_samples_select(p, m) for p, m in zip(paths, manifests, strict=True)]
    con.execute("CREATE VIEW samples AS " + " UNION ALL BY NAME ".join(parts))
    _routing_view(con, paths)
    return con


def _damaged(path: Path, name: str, exc: BaseException) -> EvalkitError:
    lines = str(exc).strip().splitlines()
    why = lines[0] if lines else type(exc).__name__
    return EvalkitError(f"damaged run directory {path}: {name}: {why}")


def _scores(path: Path, manifest: Manifest) -> Any:
    """A run's score rows, typed (a version-1 run's migrated), as the `scores` view's frame."""
    import pandas as pd

    if not (path / SCORES).is_file():
        raise EvalkitError(f"damaged run directory {path}: {SCORES} is missing")
    try:
        frame = pd.read_parquet(path / SCORES)
    except Exception as exc:  # pyarrow raises its own types; any of them means damage
        raise _damaged(path, SCORES, exc) from None
    if _v1_tables(manifest):
        rows = score_rows_v1(frame, str(path), manifest.to_dict())
    else:
        rows = rows_from_table(frame, str(path))
    return scores_table(rows)


def _v1_tables(manifest: Manifest) -> bool:
    """Whether the run's parquet files have version 1's layout: its (migrated) manifest says it
    was written as version 1 (`evalkit.migrate` keeps the version written in `migrated_from`;
    any later version's tables have version 2's layout)."""
    return manifest.migrated_from == 1


def _samples_select(path: Path, manifest: Manifest) -> str:
    """One run's part of the `samples` view: its samples.parquet, read only when queried, with
    a version-2 file's `metrics` and `tags` structs spread into one column per field (as
    `evalkit.store.RunData.samples` flattens them). Only the file's schema is read here."""
    import pyarrow.parquet as pq

    file = path / SAMPLES
    if not file.is_file():
        raise EvalkitError(f"damaged run directory {path}: {SAMPLES} is missing")
    try:
        names = list(pq.read_schema(file).names)
    except Exception as exc:  # a truncated or foreign file: one line naming it
        raise _damaged(path, SAMPLES, exc) from None
    missing = [c for c in ("task", "doc_id") if c not in names]
    if missing:
        raise EvalkitError(f"damaged run directory {path}: {SAMPLES} lacks {missing}")
    structs = [c for c in (SAMPLE_METRICS, SAMPLE_TAGS) if not _v1_tables(manifest) and c in names]
    columns = [_ident(c) for c in names if c not in structs]
    columns += [f"{_ident(c)}.*" for c in structs]
    return (
        f"SELECT {_quote(str(path))} AS run, {', '.join(columns)} "
        f"FROM read_parquet({_quote(str(file))})"
    )


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _routing_view(con: Any, paths: Sequence[Path]) -> None:
    """`routing`: every MoE run's `routing.parquet` with a leading `run` column (empty, with
    its columns, when no run has one)."""
    import pandas as pd

    from evalkit.analysis.routing import COLUMNS, ROUTING

    found = [p for p in paths if (p / ROUTING).is_file()]
    if not found:
        con.register("_routing_df", pd.DataFrame(columns=["run", *COLUMNS]))
        con.execute("CREATE TABLE routing AS SELECT * FROM _routing_df")
        con.unregister("_routing_df")
        return
    parts = [
        f"SELECT {_quote(str(p))} AS run, * FROM read_parquet({_quote(str(p / ROUTING))})"
        for p in found
    ]
    con.execute("CREATE VIEW routing AS " + " UNION ALL BY NAME ".join(parts))


def query(sql: str, root: str | Path) -> QueryResult:
    """Run one SQL statement against the catalog of the runs under `root`."""
    import duckdb

    if not sql.strip():
        raise EvalkitError("empty query")
    con = connect(root)
    try:
        cursor = con.execute(sql)
        columns = tuple(d[0] for d in cursor.description or ())
        rows = tuple(tuple(r) for r in cursor.fetchall()) if columns else ()
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EvalkitError(f"query failed: {first}") from None
    finally:
        con.close()
    return QueryResult(columns, rows)


def trajectory(
    root: str | Path | Sequence[Path],
    *,
    level: str = "family",
    metrics: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
    suite: str | None = None,
    ckpt_run: str | None = None,
) -> Any:
    """Scores over training: one row per (run, family or task, metric), ordered by step.

    For the report's trajectory plots (`root`: a folder of runs, or the run directories).
    `level="family"` gives the family and group aggregate rows
    (named by family or group), `level="task"` the per-task rows. `metrics` (display labels:
    `acc`, `acc[k=4]`), `names` (families or tasks), `suite` and `ckpt_run` (the provenance's
    run name) filter. Columns: `ckpt_run`, `step`, `tokens_seen`, `checkpoint`, `run`, `suite`,
    `chat_template`, `name`, `family`, `metric` (the label), `value`, `ci_low`, `ci_high`, `n`,
    `higher_is_better`. Runs without a provenance
    step come last, in path order. Returns a pandas DataFrame.
    """
    if level not in ("family", "task"):
        raise EvalkitError(f"unknown trajectory level {level!r}; use 'family' or 'task'")
    where = ["s.level IN ('family', 'group')" if level == "family" else "s.level = 'task'"]
    name_expr = (
        """CASE s.level WHEN 'group' THEN s."group" ELSE s.family END"""
        if level == "family"
        else "s.task"
    )
    params: list[Any] = []
    if metrics:
        where.append(f"s.label IN ({', '.join('?' for _ in metrics)})")
        params.extend(metrics)
    if names:
        where.append(f"{name_expr} IN ({', '.join('?' for _ in names)})")
        params.extend(names)
    if suite is not None:
        where.append("r.suite = ?")
        params.append(suite)
    if ckpt_run is not None:
        where.append("r.ckpt_run = ?")
        params.append(ckpt_run)
    sql = (
        f"SELECT r.ckpt_run, r.step, r.tokens_seen, r.checkpoint, r.run, r.suite, "
        f"r.chat_template, {name_expr} AS name, s.family, s.label AS metric, s.value, "
        f"s.ci_low, s.ci_high, s.n, s.higher_is_better "
        f"FROM scores AS s JOIN runs AS r ON s.run = r.run WHERE {' AND '.join(where)} "
        f"ORDER BY r.ckpt_run NULLS LAST, name, metric, r.step NULLS LAST, r.run"
    )
    import duckdb

    con = connect(root)
    try:
        return con.execute(sql, params).df()
    except duckdb.Error as exc:
        raise EvalkitError(f"trajectory query failed: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()
