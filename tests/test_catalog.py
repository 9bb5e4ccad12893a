"""The DuckDB catalog over a folder of runs: views, trajectories, the `evalkit query` CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from synthetic_runs import TaskData, make_run

from evalkit.catalog import catalog_runs, query, trajectory
from evalkit.errors import EvalkitError


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
    out = evalkit("query", sql, "--runs", runs, "--csv")
    assert out.stdout.splitlines() == [
        "name,step",
        "ckpt-500,500",
        "ckpt-1000,1000",
        "ckpt-2000,2000",
    ]
    bad = evalkit("query", "SELEC 1", "--runs", runs)
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("error: query failed:")
    assert "Traceback" not in bad.stderr
