"""A run killed with SIGKILL and started again recomputes only what is missing."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd


def _rows(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as con:
            return int(con.execute("SELECT COUNT(*) FROM results").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def _score(ckpt: Path, out: Path, cache: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "evalkit.cli",
        "score",
        str(ckpt),
        "--suite",
        "smoke",
        "--out",
        str(out),
        "--cache-dir",
        str(cache),
        "--token-budget",
        "48",
        "--limit",
        "40",
        "--no-progress",
    ]


def test_sigkill_then_resume_gives_identical_results(random_ckpt: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    db = cache / "results.sqlite"
    killed_out = tmp_path / "killed"
    proc = subprocess.Popen(
        _score(random_ckpt, killed_out, cache), stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )
    deadline = time.time() + 240
    while _rows(db) < 50 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not killed_out.exists()
    saved = _rows(db)
    assert saved >= 50

    resumed = subprocess.run(
        _score(random_ckpt, killed_out, cache), capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr
    m = re.search(r"(\d+) unique requests: (\d+) reused from cache, (\d+) computed", resumed.stdout)
    assert m, resumed.stdout
    unique, reused, computed = map(int, m.groups())
    assert reused == saved and computed == unique - saved and computed > 0

    fresh_out = tmp_path / "fresh"
    fresh = subprocess.run(
        _score(random_ckpt, fresh_out, tmp_path / "cache2"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert fresh.returncode == 0, fresh.stderr
    for name in ("samples.parquet", "scores.parquet"):
        a = pd.read_parquet(killed_out / name)
        b = pd.read_parquet(fresh_out / name)
        pd.testing.assert_frame_equal(a, b)
