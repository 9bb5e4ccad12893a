"""Every shipped gate policy passes two runs of the same checkpoint and fails a damaged one.

smoke.yaml is exercised on real checkpoints in tests/test_gate.py (tiny-base, a copy damaged
by examples/damage_checkpoint.py). The transfer suite takes minutes per run on CPU, so here
transfer.yaml is gated on runs with the suite's own tasks, families, metrics, item counts and
tags (read from the task registry), values drawn once; the real end-to-end version runs with
EVALKIT_SLOW_TESTS=1 (about 15 minutes on two loaded cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from synthetic_runs import TaskData, make_run

from evalkit.analysis.gate import gate_runs, load_policy, suite_metrics
from evalkit.store import read_run

ROOT = Path(__file__).resolve().parents[1]
TRANSFER = ROOT / "tasks" / "gates" / "transfer.yaml"
# Items per task in a full transfer run of tiny-base (the suite's generators' sizes).
N_ITEMS = {"code": 16, "longctx": 8, "icl": 120}
LOWER = frozenset({"bpb", "copy_loss", "first_loss", "loss_early", "loss_late"})


def _transfer_runs(tmp: Path, *, damaged: bool = False, seed: int = 0) -> dict[str, TaskData]:
    rng = np.random.default_rng(seed)
    tasks: dict[str, TaskData] = {}
    for name, (family, metrics) in suite_metrics("transfer").items():
        n = N_ITEMS.get(family, 120)
        values: dict[str, np.ndarray] = {}
        for m in sorted(metrics):
            if m in ("acc", "acc_norm", "exact_match", "pass@1", "recall", "copy_acc"):
                values[m] = (rng.random(n) < 0.5).astype(float)
            elif m.startswith("p_correct") or m == "prob_correct":
                values[m] = rng.beta(2, 2, n)
            else:
                values[m] = rng.normal(3.0, 1.0, n)
        tags = {"test_doc": [i % 40 for i in range(n)]} if family == "icl" else {}
        tasks[name] = TaskData(family, values, lower_is_better=LOWER, tags=tags)
    return tasks


def _damage(tasks: dict[str, TaskData], seed: int) -> dict[str, TaskData]:
    """What noise on every weight does: the gold choice loses probability, bpb rises."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, t in tasks.items():
        values = {}
        for m, v in t.metrics.items():
            v = np.asarray(v, dtype=float)
            if m.startswith("p_correct"):
                v = np.clip(v - 0.15 + rng.normal(0, 0.05, v.size), 0, 1)
            elif m == "bpb":
                v = v + 1.0 + rng.normal(0, 0.2, v.size)
            values[m] = v
        out[name] = TaskData(t.family, values, lower_is_better=t.lower_is_better, tags=t.tags)
    return out


def test_transfer_policy_passes_the_same_checkpoint_and_fails_a_damaged_one(
    tmp_path: Path,
) -> None:
    policy = load_policy(TRANSFER)  # validated against the suite at load
    tasks = _transfer_runs(tmp_path)
    a = make_run(tmp_path / "a", tasks, suite="transfer")
    b = make_run(tmp_path / "b", tasks, suite="transfer")
    v = gate_runs([read_run(a)], [read_run(b)], policy)
    assert v.exit_code == 0, [(c.check.label, c.outcome, c.reason) for c in v.checks]
    assert {c.check.name for c in v.checks} == {c.name for c in policy.checks}
    bad = make_run(tmp_path / "bad", _damage(tasks, 1), suite="transfer")
    v = gate_runs([read_run(a)], [read_run(bad)], policy)
    assert v.exit_code == 1
    assert {c.check.name for c in v.checks if c.outcome == "regression"} >= {"reasoning", "code"}


def test_transfer_policy_on_a_short_window_checkpoint_skips_longctx(tmp_path: Path) -> None:
    policy = load_policy(TRANSFER)
    tasks = {k: v for k, v in _transfer_runs(tmp_path).items() if v.family != "longctx"}
    skipped = [
        {"task": t, "family": "longctx", "reason": "no needle length fits the window 128"}
        for t, (f, _) in suite_metrics("transfer").items()
        if f == "longctx"
    ]
    runs = []
    for name in ("a", "b"):
        path = make_run(tmp_path / name, tasks, suite="transfer")
        manifest = json.loads((path / "manifest.json").read_text())
        manifest["skipped_tasks"] = skipped
        (path / "manifest.json").write_text(json.dumps(manifest))
        runs.append(read_run(path))
    v = gate_runs(runs[:1], runs[1:], policy)
    assert v.exit_code == 0 and v.skipped_checks == ("family longctx / value_ll_gain",)
    assert any("no needle length fits" in w for w in v.warnings)


# -- the real thing (slow) ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("EVALKIT_SLOW_TESTS") != "1", reason="set EVALKIT_SLOW_TESTS=1 (~15 min)"
)
def test_transfer_policy_end_to_end_on_tiny_base(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "examples"))
    from conftest import TINY_BASE
    from damage_checkpoint import damage

    def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "evalkit.cli", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=1800,
        )

    broken = damage(TINY_BASE, tmp_path / "damaged-ckpt", scale=1.0, seed=0)
    cache = tmp_path / "cache"
    for name, ckpt in (("base", TINY_BASE), ("again", TINY_BASE), ("damaged", broken)):
        proc = cli("score", ckpt, "--suite", "transfer", "--device", "cpu", "--out",
                   tmp_path / name, "--cache-dir", cache, "--no-progress")  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    same = cli("gate", "--baseline", tmp_path / "base", "--candidate", tmp_path / "again",
               "--policy", TRANSFER)  # fmt: skip
    assert same.returncode == 0, same.stdout + same.stderr
    bad = cli("gate", "--baseline", tmp_path / "base", "--candidate", tmp_path / "damaged",
              "--policy", TRANSFER)  # fmt: skip
    assert bad.returncode == 1, bad.stdout + bad.stderr
