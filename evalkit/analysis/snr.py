"""Signal and noise of each task across checkpoints (Heineman et al., arXiv:2508.13144).

- signal: how far apart the compared models score, relative to their mean (relative
  dispersion: max - min over mean);
- noise: how much one training run's score moves over its last n checkpoints, relative to their
  mean (relative standard deviation); averaged over training runs when several are given;
- SNR = signal / noise. A task whose SNR is low cannot rank these models reliably from a single
  checkpoint: average the last checkpoints (item-wise, `gate --baseline-select mean`) instead.

Training runs are told apart by the checkpoint provenance's `checkpoint.run` (else the
checkpoint's parent folder) and ordered by `checkpoint.step` (else the run's creation time).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from evalkit import stats as S
from evalkit.errors import EvalkitError
from evalkit.manifest_records import CheckpointRef
from evalkit.store import RunData


@dataclass(frozen=True)
class SNRRow:
    task: str
    metric: str
    signal: float
    noise: float
    snr: float
    n_models: int
    n_checkpoints: int
    low: bool


def _provenance_checkpoint(run: RunData) -> CheckpointRef:
    prov = run.manifest.provenance
    return prov.checkpoint if prov is not None else CheckpointRef()


def training_run(run: RunData) -> str:
    name = _provenance_checkpoint(run).run
    if name:
        return name
    ckpt = run.manifest.checkpoint
    return Path(ckpt).parent.name if ckpt else str(run.path.parent)


def checkpoint_order(run: RunData) -> tuple[float, str]:
    step = _provenance_checkpoint(run).step
    key = float(step) if step is not None else -math.inf
    return (key, run.manifest.created)


def order_runs(runs: Sequence[RunData]) -> list[RunData]:
    """Oldest checkpoint first (by provenance step, then creation time)."""
    return sorted(runs, key=checkpoint_order)


def task_score(run: RunData, task: str, metric: str) -> float | None:
    """The value of the row shown as (`task`, `metric`): a task's, or a family's
    (`family:<name>`), by its metric label."""
    row = next((r for r in run.rows if r.display_task == task and r.label == metric), None)
    if row is None:
        return None
    return row.value if math.isfinite(row.value) else None


def primary_metrics(run: RunData) -> list[tuple[str, str]]:
    """(task as shown, primary metric) for every task, family and group of the run."""
    return [(r.display_task, r.label) for r in run.rows if r.primary]


def checkpoint_noise(runs: Sequence[RunData], task: str, metric: str, last: int) -> float:
    """Mean relative standard deviation of `task`'s score over each training run's last
    `last` checkpoints (NaN with fewer than two)."""
    groups: dict[str, list[RunData]] = {}
    for r in runs:
        groups.setdefault(training_run(r), []).append(r)
    noises = []
    for members in groups.values():
        tail = order_runs(members)[-last:]
        values = [v for v in (task_score(r, task, metric) for r in tail) if v is not None]
        if len(values) >= 2:
            noises.append(S.relative_std(values))
    return float(sum(noises) / len(noises)) if noises else float("nan")


def snr_table(
    model_runs: Sequence[RunData],
    noise_runs: Sequence[RunData],
    *,
    last: int = 5,
    min_snr: float = 3.0,
) -> tuple[SNRRow, ...]:
    if last < 2:
        raise EvalkitError("noise needs at least the last 2 checkpoints")
    if len(model_runs) < 2:
        raise EvalkitError("signal needs at least two models to compare")
    if len(noise_runs) < 2:
        raise EvalkitError("noise needs at least two checkpoints of a training run")
    rows = []
    for task, metric in primary_metrics(model_runs[0]):
        values = [v for v in (task_score(r, task, metric) for r in model_runs) if v is not None]
        signal = S.relative_dispersion(values)
        noise = checkpoint_noise(noise_runs, task, metric, last)
        snr = S.signal_to_noise(signal, noise)
        n_ckpt = min(last, len(noise_runs))
        rows.append(
            SNRRow(
                task=task,
                metric=metric,
                signal=signal,
                noise=noise,
                snr=snr,
                n_models=len(values),
                n_checkpoints=n_ckpt,
                low=bool(math.isfinite(snr) and snr < min_snr),
            )
        )
    return tuple(rows)
