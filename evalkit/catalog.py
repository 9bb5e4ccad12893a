"""A queryable catalog over every run in a folder: DuckDB views over the runs' parquet files.

Views (see docs/sweep.md):

- `runs`: one row per complete run, from its manifest, with the checkpoint's provenance
  (`ckpt_run`, `step`, `tokens_seen`, `parent`, `mix_id`) when it has one.
- `scores`: every run's score rows (`evalkit.schema.ScoreRow`: task, family, group, level,
  metric, bucket as JSON, label, primary, value, ci_low, ci_high, ci_method, n,
  higher_is_better) with a leading `run` column, whatever schema version wrote the run.
- `samples`: every run's items, one column per base field, metric and tag (as
  `evalkit.store.RunData.samples`), with a leading `run` column (columns are the union across
  runs; a task's missing columns are NULL).
- `slices`: one row per (run, training-data slice) of the provenance.
- `routing`: an MoE run's routing statistics (`routing.parquet`, docs/moe.md) with `run`.

The catalog reads only the run store (through `evalkit.store.read_run`, so older runs are
migrated), never a live model. Hidden folders (a run still being assembled is staged in
`.NAME.partial-*`) are never runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.errors import EvalkitError
from evalkit.provenance import SLICE_FIELDS
from evalkit.schema import scores_table
from evalkit.store import MANIFEST, is_run, read_run

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


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _run_row(path: Path, m: dict[str, Any]) -> dict[str, Any]:
    prov = _dict(m.get("provenance"))
    ckpt = _dict(prov.get("checkpoint"))
    hardware = _dict(m.get("hardware"))
    timings = _dict(m.get("timings"))
    chat = m.get("chat_template")
    tasks = [str(t.get("name")) for t in m.get("tasks", []) if isinstance(t, dict)]
    skipped = [str(s.get("task")) for s in m.get("skipped_tasks") or [] if isinstance(s, dict)]
    vocab = _dict(m.get("vocabulary"))
    return {
        "run": str(path),
        "name": path.name,
        "checkpoint": m.get("checkpoint"),
        "checkpoint_name": Path(str(m.get("checkpoint", ""))).name or None,
        "suite": m.get("suite"),
        "tasks": ",".join(tasks),
        "n_tasks": len(tasks),
        "skipped_tasks": ",".join(skipped),
        "n_skipped_tasks": len(skipped),
        "padded_vocab_rows": _int_or_none(vocab.get("padded_rows")),
        "item_limit": _int_or_none(m.get("limit")),
        "backend": m.get("backend"),
        "dtype_requested": m.get("dtype_requested"),
        "dtype_resolved": m.get("dtype_resolved"),
        "device": hardware.get("device"),
        "chat_template": bool(chat.get("applied", True)) if isinstance(chat, dict) else bool(chat),
        "model_fingerprint": m.get("model_fingerprint"),
        "tokenizer_fingerprint": m.get("tokenizer_fingerprint"),
        "evalkit_version": m.get("evalkit_version"),
        "evalkit_commit": m.get("evalkit_commit"),
        "created": m.get("created"),
        "total_seconds": timings.get("total_seconds"),
        "ckpt_run": ckpt.get("run"),
        "step": _int_or_none(ckpt.get("step")),
        "tokens_seen": _int_or_none(ckpt.get("tokens_seen")),
        "parent": None if ckpt.get("parent") is None else str(ckpt.get("parent")),
        "mix_id": None if ckpt.get("mix_id") is None else str(ckpt.get("mix_id")),
    }


def _slice_rows(path: Path, m: dict[str, Any]) -> list[dict[str, Any]]:
    prov = _dict(m.get("provenance"))
    rows = []
    for s in prov.get("slices") or []:
        if isinstance(s, dict):
            rows.append({"run": str(path), **{k: s.get(k) for k in SLICE_FIELDS}})
    return rows


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
    over the given run directories."""
    import duckdb
    import pandas as pd

    paths = _resolve_runs(source)
    stored = [read_run(p) for p in paths]
    manifests = [dict(r.manifest) for r in stored]
    runs = pd.DataFrame([_run_row(p, m) for p, m in zip(paths, manifests, strict=True)])
    for col in ("item_limit", "step", "tokens_seen"):
        runs[col] = runs[col].astype("Int64")
    runs["created"] = pd.to_datetime(runs["created"], utc=True, errors="coerce")
    slices = pd.DataFrame(
        [r for p, m in zip(paths, manifests, strict=True) for r in _slice_rows(p, m)],
        columns=["run", *SLICE_FIELDS],
    )
    scores = pd.concat(
        [scores_table(r.rows).assign(run=str(p)) for p, r in zip(paths, stored, strict=True)],
        ignore_index=True,
    )
    samples = pd.concat(
        [r.samples.assign(run=str(p)) for p, r in zip(paths, stored, strict=True)],
        ignore_index=True,
    )
    con = duckdb.connect(":memory:")
    for name, frame in (
        ("runs", runs),
        ("slices", slices),
        ("scores", scores),
        ("samples", samples),
    ):
        if name in ("scores", "samples"):  # `run` first, as in the other views
            frame = frame[["run", *(c for c in frame.columns if c != "run")]]
        con.register(f"_{name}_df", frame)
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM _{name}_df")
        con.unregister(f"_{name}_df")
    _routing_view(con, paths)
    return con


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
