"""The report's "Largest changes over training" section on synthetic runs (no model): it names
the two consecutive checkpoints of a planted jump, along the provenance step (not the order
the runs are given in), calls flat noise no change, and stays out of reports whose runs have
no training position."""

from __future__ import annotations

from pathlib import Path

from synthetic_runs import TaskData, make_run

import evalkit

N = 60


def _runs(
    tmp: Path, steps: list[int | None], jump_at: int, names: list[str] | None = None
) -> list[Path]:
    """Runs whose task `t_jump` is ~0.03 accurate before checkpoint index `jump_at` and ~0.97
    from it on; `t_flat`'s continuous metric is the same noise at every checkpoint."""
    out = []
    for i, step in enumerate(steps):
        hits = 58 if i >= jump_at else 2
        acc = [1.0] * hits + [0.0] * (N - hits)
        flat = [0.5 + 0.3 * ((j * 7919 + i * 31) % 13 - 6) / 6 for j in range(N)]
        tasks = {
            "t_jump": TaskData("fam_a", {"acc": acc}),
            "t_flat": TaskData("fam_b", {"gain": flat}),
        }
        out.append(
            make_run(tmp / f"r{i}", tasks, step=step, run_name=names[i] if names else "train")
        )
    return out


def _section(report: Path) -> str:
    md = (report / "report.md").read_text(encoding="utf-8")
    return md.split("## Largest changes over training", 1)[1].split("\n## ", 1)[0]


def test_the_planted_jump_is_named_and_flat_noise_is_not(tmp_path: Path) -> None:
    runs = _runs(tmp_path / "runs", [100, 200, 300, 400, 500], jump_at=3)
    evalkit.make_report(*runs, out=tmp_path / "report", resamples=50)
    sec = _section(tmp_path / "report")
    jump = next(x for x in sec.splitlines() if x.startswith("Largest change in t_jump acc"))
    assert "between `r2` (training step 300) and `r3` (400)" in jump, jump
    assert "are disjoint" in jump
    flat = next(x for x in sec.splitlines() if x.startswith("Largest change in t_flat gain"))
    assert "no change whose 95% CIs are disjoint" in flat, flat
    assert (tmp_path / "report" / "plots" / "changes_acc.png").is_file()
    assert "| t_jump | acc | `r2` → `r3` |" in sec and "| yes |" in sec


def test_the_provenance_step_orders_the_runs_not_the_order_given(tmp_path: Path) -> None:
    # the same runs given in reverse order: still placed by step
    runs = _runs(tmp_path / "runs", [100, 200, 300, 400, 500], jump_at=3)
    evalkit.make_report(*reversed(runs), out=tmp_path / "report", resamples=50)
    assert "between `r2` (training step 300) and `r3` (400)" in _section(tmp_path / "report")
    # the steps shuffled in the provenance: the jump moves with them
    moved = _runs(tmp_path / "moved", [100, 400, 300, 200, 500], jump_at=3)
    evalkit.make_report(*moved, out=tmp_path / "moved-report", resamples=50)
    sec = _section(tmp_path / "moved-report")
    assert "between `r0` (training step 100) and `r3` (200)" in sec, sec


def test_runs_without_a_training_position_get_a_note(tmp_path: Path) -> None:
    runs = _runs(tmp_path / "runs", [None, None, None], jump_at=1)
    evalkit.make_report(*runs, out=tmp_path / "report", resamples=50)
    sec = _section(tmp_path / "report")
    assert "no distinct training position" in sec and "Largest change in" not in sec


def test_checkpoints_of_different_training_runs_are_no_series(tmp_path: Path) -> None:
    # e.g. the demo's tiny-base and retrieval control: distinct steps, but two models
    runs = _runs(tmp_path / "runs", [100, 200, 300], jump_at=1, names=["a", "b", "b"])
    evalkit.make_report(*runs, out=tmp_path / "report", resamples=50)
    sec = _section(tmp_path / "report")
    assert "different training runs (a, b)" in sec and "Largest change in" not in sec
