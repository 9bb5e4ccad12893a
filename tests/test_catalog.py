"""The DuckDB catalog over a folder of runs: views, trajectories, the `evalkit query` CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from clirun import run_cli
from synthetic_runs import TaskData, make_run

from evalkit.catalog import catalog_runs, query, trajectory
from evalkit.errors import EvalkitError
from evalkit.store import SAMPLES, read_run


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """A training run's three evals (out of order on disk) and one unrelated run."""
    root = tmp_path / "runs"
    for step, acc in ((2000, [1, 1, 1, 0]), (500, [0, 0, 1, 0]), (1000, [1, 0, 1, 0])):
        make_run(
            root / "train" / f"ckpt-{step}",
            {
                "arith": TaskData("reasoning", {"acc": acc}, tags={"lang": ["en"] * 4}),
                "prose": TaskData("language_modeling", {"bpb": [2.0 - step / 2000] * 4}),
            },
            step=step,
            run_name="train",
        )
    make_run(root / "other", {"arith": TaskData("reasoning", {"acc": [0, 1]})})
    # A run still being assembled is hidden and never part of the catalog.
    shutil.copytree(root / "other", root / ".x.partial-1234")
    return root


def test_views_join_runs_scores_and_samples(runs: Path) -> None:
    assert len(catalog_runs(runs)) == 4
    rows = query(
        "SELECT r.step, s.value FROM scores s JOIN runs r USING (run) "
        "WHERE s.task = 'arith' AND s.metric = 'acc' AND r.ckpt_run = 'train' ORDER BY r.step",
        runs,
    ).rows
    assert rows == ((500, 0.25), (1000, 0.5), (2000, 0.75))
    counts = query(
        "SELECT name, count(*) AS n, count(lang) AS tagged FROM samples JOIN runs USING (run) "
        "GROUP BY name ORDER BY name",
        runs,
    ).records()
    assert counts == [
        {"name": "ckpt-1000", "n": 8, "tagged": 4},
        {"name": "ckpt-2000", "n": 8, "tagged": 4},
        {"name": "ckpt-500", "n": 8, "tagged": 4},
        {"name": "other", "n": 2, "tagged": 0},
    ]
    unrelated = query("SELECT step, ckpt_run FROM runs WHERE name = 'other'", runs).rows
    assert unrelated == ((None, None),)


def test_trajectory_orders_scores_by_step(runs: Path) -> None:
    t = trajectory(runs, level="task", metrics=["acc"], ckpt_run="train")
    assert list(t["name"]) == ["arith"] * 3
    assert list(t["family"]) == ["reasoning"] * 3
    assert list(t["step"]) == [500, 1000, 2000]
    assert list(t["value"]) == [0.25, 0.5, 0.75]
    # These synthetic runs have no `family:` rows (real ones do: see test_sweep.py).
    assert trajectory(runs).empty
    per_task = trajectory(runs, level="task", names=["prose"], metrics=["bpb"])
    assert list(per_task["step"]) == [500, 1000, 2000]
    assert list(per_task["value"]) == pytest.approx([1.75, 1.5, 1.0])
    with pytest.raises(EvalkitError, match="level"):
        trajectory(runs, level="suite")
    # The report passes its runs themselves rather than a folder: same rows, only those runs.
    chosen = [runs / "train" / "ckpt-1000", runs / "train" / "ckpt-500"]
    two = trajectory(chosen, level="task", metrics=["acc"])
    assert list(two["step"]) == [500, 1000] and list(two["value"]) == [0.25, 0.5]
    with pytest.raises(EvalkitError, match="not a complete run"):
        trajectory([runs], level="task")


def test_bad_sql_and_empty_folders_are_one_line_errors(runs: Path, tmp_path: Path) -> None:
    with pytest.raises(EvalkitError, match=r"query failed: .*no_such_view"):
        query("SELECT * FROM no_such_view", runs)
    (tmp_path / "empty").mkdir()
    with pytest.raises(EvalkitError, match="no complete runs"):
        query("SELECT 1", tmp_path / "empty")


def evalkit(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evalkit.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_query_cli_prints_json_csv_and_fails_cleanly(runs: Path) -> None:
    sql = "SELECT name, step FROM runs WHERE ckpt_run = 'train' ORDER BY step"
    out = evalkit("query", sql, "--runs", runs, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [
        {"name": "ckpt-500", "step": 500},
        {"name": "ckpt-1000", "step": 1000},
        {"name": "ckpt-2000", "step": 2000},
    ]
    # The rest in this process (tests/clirun.py); the JSON case above is a real process.
    out = run_cli("query", sql, "--runs", runs, "--csv")
    assert out.stdout.splitlines() == [
        "name,step",
        "ckpt-500,500",
        "ckpt-1000,1000",
        "ckpt-2000,2000",
    ]
    bad = run_cli("query", "SELEC 1", "--runs", runs)
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("error: query failed:")
    assert "Traceback" not in bad.stderr


def test_opening_the_catalog_reads_no_items_and_the_samples_view_matches_the_store(
    runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Items stay in their parquet files until a query asks for them (a folder of large runs
    must not be loaded into memory to list its runs); what the view then shows is what
    `read_run` shows, column for column."""
    import pandas as pd

    from evalkit import catalog

    read: list[str] = []
    real = pd.read_parquet

    def recording(path: Any, *args: Any, **kwargs: Any) -> Any:
        read.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(pd, "read_parquet", recording)
    con = catalog.connect(runs)
    try:
        assert con.execute("SELECT count(*) FROM scores").fetchone()[0] > 0
        assert SAMPLES not in read, read  # manifests and scores only
        got = con.execute("SELECT * FROM samples ORDER BY run, task, doc_id").df()
    finally:
        con.close()
    assert SAMPLES not in read  # DuckDB read the files, not pandas
    monkeypatch.setattr(pd, "read_parquet", real)
    _same_as_the_store(got, catalog_runs(runs))


def test_the_samples_view_flattens_both_schema_versions_like_the_store() -> None:
    golden = Path(__file__).resolve().parent / "golden_runs"
    paths = [golden / "v1", golden / "v2"]  # v1: flat columns; v2: metrics and tags structs
    from evalkit import catalog

    con = catalog.connect(paths)
    try:
        got = con.execute("SELECT * FROM samples ORDER BY run, task, doc_id").df()
        scores = con.execute("SELECT run, count(*) FROM scores GROUP BY run").fetchall()
    finally:
        con.close()
    _same_as_the_store(got, [p.resolve() for p in paths])
    assert {run: n for run, n in scores} == {str(p.resolve()): len(read_run(p).rows) for p in paths}


def _same_as_the_store(got: Any, paths: list[Path]) -> None:
    """The samples view's rows of each run are `read_run(run).samples`, column for column."""
    for path in paths:
        want = read_run(path).samples.sort_values(["task", "doc_id"]).reset_index(drop=True)
        mine = got[got.run == str(path)].drop(columns="run").reset_index(drop=True)
        assert len(mine) == len(want) > 0, path
        mine = mine[[c for c in mine.columns if mine[c].notna().any() or c in want.columns]]
        assert sorted(mine.columns) == sorted(want.columns), path  # (the view's order: a union)
        for col in want.columns:
            assert [_plain(v) for v in mine[col]] == [_plain(v) for v in want[col]], (path, col)


def _plain(value: Any) -> Any:
    """A cell compared across pandas and DuckDB: NaN and None are both missing, arrays lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if value is None or (isinstance(value, float) and value != value):
        return None
    return value
