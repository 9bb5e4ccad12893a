"""Experiment trackers: a run's (or a sweep's) scores next to the training loss.

`--log wandb|tensorboard` on `evalkit score` and `evalkit sweep` logs, per run directory, every
task and family score with its CI bounds (`TASK/METRIC`, `TASK/METRIC/ci_low`, `.../ci_high`),
the gate verdict when there is one (`gate/passed` 1 or 0, and its outcome as text), and the run's
provenance as the x-axis: the checkpoint's training step (else its tokens seen, else the run's
position), with `provenance/tokens_seen` beside it. The HTML report is attached (W&B: an
`Html` panel `report`; TensorBoard: copied next to the event files, its path in a text entry).

Both are optional extras (`pip install 'evalkit[trackers]'`) and imported only when asked for.
W&B honours its own environment (`WANDB_MODE=offline` writes local files, `WANDB_PROJECT`...).
Reads only run directories (the store), never a live model.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from evalkit.errors import EvalkitError
from evalkit.manifest_records import CheckpointRef
from evalkit.schema import Manifest
from evalkit.store import read_run

TRACKERS = ("wandb", "tensorboard")
STEP_KEY = "provenance/step"
TOKENS_KEY = "provenance/tokens_seen"


@dataclass(frozen=True)
class Tracked:
    """One run to log: its directory, its gate outcome if gated, its HTML report if any."""

    run: Path
    gate: str | None = None  # e.g. "pass", "regression" (evalkit.analysis.gate outcomes)
    report: Path | None = None


def check_tracker(kind: str) -> None:
    """Fail before any scoring when the tracker is unknown or not installed."""
    if kind not in TRACKERS:
        raise EvalkitError(f"unknown tracker {kind!r}; choose one of {', '.join(TRACKERS)}")
    module = "wandb" if kind == "wandb" else "tensorboard"
    try:
        __import__(module)
    except ImportError:
        raise EvalkitError(
            f"--log {kind} needs the {module} package: pip install 'evalkit[trackers]'"
        ) from None


def _axis(manifest: Manifest, position: int) -> tuple[int, int | None]:
    ckpt = manifest.provenance.checkpoint if manifest.provenance is not None else CheckpointRef()
    step, tokens = ckpt.step, ckpt.tokens_seen
    if step is not None:
        return step, tokens
    return (tokens if tokens is not None else position), tokens


def scalars(run: Path, gate: str | None = None) -> dict[str, float]:
    """The numbers logged for one run, by tracker key (NaN bounds left out)."""
    data = read_run(run)
    out: dict[str, float] = {}
    for r in data.rows:
        key = f"{r.display_task}/{r.label}"
        for suffix, v in (("", r.value), ("/ci_low", r.ci_low), ("/ci_high", r.ci_high)):
            if v is not None and math.isfinite(float(v)):
                out[key + suffix] = float(v)
    if gate is not None:
        out["gate/passed"] = 1.0 if gate == "pass" else 0.0
    return out


def _ordered(runs: Sequence[Tracked]) -> list[tuple[Tracked, Manifest, int, int | None]]:
    rows = []
    for i, t in enumerate(runs):
        manifest = read_run(t.run).manifest
        step, tokens = _axis(manifest, i)
        rows.append((t, manifest, step, tokens))
    return sorted(rows, key=lambda r: r[2])


def log_runs(kind: str, runs: Sequence[Tracked], logdir: Path, name: str | None = None) -> Path:
    """Log `runs` (in training order) to `kind` under `logdir`; returns where it wrote."""
    check_tracker(kind)
    if not runs:
        raise EvalkitError("nothing to log: no runs")
    logdir.mkdir(parents=True, exist_ok=True)
    rows = _ordered(runs)
    if kind == "tensorboard":
        return _tensorboard(rows, logdir)
    return _wandb(rows, logdir, name)


def _tensorboard(rows: Sequence[tuple[Tracked, Manifest, int, int | None]], logdir: Path) -> Path:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(logdir))
    try:
        for t, _, step, tokens in rows:
            for key, value in scalars(t.run, t.gate).items():
                writer.add_scalar(key, value, global_step=step)
            if tokens is not None:
                writer.add_scalar(TOKENS_KEY, float(tokens), global_step=step)
            if t.gate is not None:
                writer.add_text("gate/outcome", t.gate, global_step=step)
            if t.report is not None and t.report.is_file():
                copy = logdir / "reports" / f"{t.run.name}.html"
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(t.report, copy)
                writer.add_text("report", f"HTML report: {copy}", global_step=step)
    finally:
        writer.close()
    return logdir


def _wandb(
    rows: Sequence[tuple[Tracked, Manifest, int, int | None]], logdir: Path, name: str | None
) -> Path:
    import wandb

    first = rows[0][1]
    config = {
        "checkpoint": first.checkpoint,
        "hub": asdict(first.hub) if first.hub is not None else None,
        "suite": first.suite,
        "model_fingerprint": first.model_fingerprint,
        "evalkit_version": first.evalkit_version,
        "options": asdict(first.options),
    }
    run = wandb.init(
        project=None, name=name or rows[0][0].run.name, dir=str(logdir), config=config,
        job_type="eval", reinit=True,
    )  # fmt: skip
    try:
        run.define_metric(STEP_KEY)
        run.define_metric("*", step_metric=STEP_KEY)
        for t, _, step, tokens in rows:
            record: dict[str, Any] = {STEP_KEY: step, **scalars(t.run, t.gate)}
            if tokens is not None:
                record[TOKENS_KEY] = tokens
            if t.gate is not None:
                record["gate/outcome"] = t.gate
            if t.report is not None and t.report.is_file():
                record["report"] = wandb.Html(t.report.read_text(encoding="utf-8"))
            run.log(record)
        where = Path(run.dir).parent
    finally:
        run.finish()
        # finish() only tells W&B's service process that the run is over; the service writes
        # the run's files (the offline `.wandb` log) on its own time. Tearing the service down
        # waits for it, so the files are complete when this returns. `reinit=True` above has
        # already finished any earlier run of this process, so no other run is cut short.
        wandb.teardown()
    return where
