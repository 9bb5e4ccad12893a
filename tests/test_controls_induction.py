"""Positive control for the induction probe and its emergence over training (issue 16).

`examples/checkpoints/induction-control/step-*` are intermediate checkpoints of one run of
`examples/train_induction.py` (a 2-layer tiny Llama trained on BOS + r + r). Its log
(`train_log.json`, held-out copy accuracy every few steps) shows the induction phase change
between two of them; evalkit, scoring the same checkpoints through the shipped `icl_induction`
task, must (a) give the last one copy accuracy far above tiny-base's, (b) give tiny-base about
none, and (c) place the largest jump between the same two checkpoints, in the trajectory it
reads back from the runs (steps and tokens seen from provenance)."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import pytest

import evalkit
from evalkit.catalog import trajectory

ROOT = Path(__file__).resolve().parents[1]
CONTROL = ROOT / "examples" / "checkpoints" / "induction-control"
TINY = ROOT / "examples" / "checkpoints" / "tiny-base"
LIMIT = 8


def _steps() -> list[Path]:
    return sorted(p for p in CONTROL.glob("step-*") if p.is_dir())


def _score(ckpt: Path, out: Path) -> object:
    return evalkit.score(
        ckpt,
        tasks=["icl_induction"],
        backend="hf",
        device="cpu",
        dtype="float32",
        out=out,
        use_cache=False,
        progress=False,
        limit=LIMIT,
    )


def _copy_acc(run: object) -> object:
    return next(
        s
        for s in run.scores  # type: ignore[attr-defined]
        if s.task == "icl_induction" and s.metric == "copy_acc"
    )


def _random_init_like(src: Path, out: Path) -> Path:
    """`src`'s config and tokenizer with fresh weights: the same shape, never trained."""
    import shutil

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    out.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file() and f.suffix != ".safetensors" and f.name != "provenance.yaml":
            shutil.copy(f, out / f.name)
    torch.manual_seed(1)
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(src)).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, object]]:
    """Checkpoint name -> (run directory, its copy_acc score)."""
    tmp = tmp_path_factory.mktemp("induction")
    fresh = _random_init_like(_steps()[-1], tmp / "ckpt" / "random-init")
    ckpts = [TINY, fresh, *_steps()]
    return {c.name: (tmp / c.name, _copy_acc(_score(c, tmp / c.name))) for c in ckpts}


def test_bundle_spans_the_phase_change() -> None:
    steps = _steps()
    assert len(steps) >= 6
    log = json.loads((CONTROL / "train_log.json").read_text())
    by_step = {row["step"]: row["copy_acc"] for row in log}
    accs = [by_step[int(p.name.split("-")[1])] for p in steps]
    assert accs[0] < 0.05 and accs[-1] > 0.9  # before and after, per the training log


def test_final_checkpoint_copies_and_tiny_base_does_not(
    runs: dict[str, tuple[Path, object]],
) -> None:
    final = runs[_steps()[-1].name][1]
    base = runs["tiny-base"][1]
    assert final.value >= 0.8, final  # type: ignore[attr-defined]
    assert base.value <= 0.02, base  # type: ignore[attr-defined]
    # the intervals are far apart, not merely the point estimates
    assert final.ci_low > base.ci_high + 0.5  # type: ignore[attr-defined]


def test_random_init_of_the_same_shape_copies_nothing(
    runs: dict[str, tuple[Path, object]],
) -> None:
    # the negative control for this shape: the copying is learned, not an artefact of the
    # architecture (tied embeddings) or of the probe
    fresh = runs["random-init"][1]
    assert fresh.value <= 0.02, fresh  # type: ignore[attr-defined]
    final = runs[_steps()[-1].name][1]
    assert final.ci_low > fresh.ci_high + 0.5  # type: ignore[attr-defined]


def test_evalkit_places_the_change_where_training_saw_it(
    runs: dict[str, tuple[Path, object]],
) -> None:
    log = json.loads((CONTROL / "train_log.json").read_text())
    by_step = {row["step"]: row["copy_acc"] for row in log}
    steps = [int(p.name.split("-")[1]) for p in _steps()]
    train_jumps = [by_step[b] - by_step[a] for a, b in pairwise(steps)]
    expected = train_jumps.index(max(train_jumps))

    t = trajectory(
        [runs[p.name][0] for p in _steps()],
        level="task",
        metrics=["copy_acc"],
        names=["icl_induction"],
    )
    assert list(t["step"]) == steps  # ordered by the provenance's step
    assert list(t["tokens_seen"]) == sorted(t["tokens_seen"]) and t["tokens_seen"].iloc[0] > 0
    values = list(t["value"])
    jumps = [b - a for a, b in pairwise(values)]
    assert jumps.index(max(jumps)) == expected, (steps, values, train_jumps)


def test_report_over_the_emergence_runs_shows_the_trajectory(
    runs: dict[str, tuple[Path, object]], tmp_path: Path
) -> None:
    order = [runs[p.name][0] for p in _steps()]
    evalkit.make_report(*order, out=tmp_path / "report", resamples=50)
    md = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert (tmp_path / "report" / "plots" / "trajectories_copy_acc.png").is_file()
    traj = md.split("## Trajectories over training", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in traj.splitlines() if line.startswith("| `step-")]
    assert [r.split("`")[1] for r in rows] == [p.name for p in _steps()]
    assert "tokens seen" in traj  # the x axis is read from provenance, not the run order
