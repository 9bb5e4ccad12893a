"""`attribute`: the stored runs' scores against their training-data slices; `--slice-fit`
loads each run's checkpoint again (`evalkit.pipeline.slice_fit`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evalkit.decisions.targets import PathLike, runs_at
from evalkit.errors import EvalkitError
from evalkit.pipeline.slice_fit import slice_fit


def attribute(
    *runs: PathLike,
    metric: str | None = None,
    reference: str | None = None,
    ridge: float = 1e-3,
    resamples: int = 1000,
    level: float = 0.95,
    min_log_sd: float = 0.05,
    seed: int = 0,
    labels: Sequence[str] | None = None,
    with_slice_fit: bool = False,
    slice_fit_documents: int = 200,
    device: str = "auto",
    dtype: str = "auto",
) -> Any:
    """Attribute the runs' scores to their training-data slices (`evalkit.analysis.attribute`).

    Each target is a run directory or a folder of runs, read from the store. `with_slice_fit`
    also measures each run's checkpoint (from its manifest) on its slices' sample documents:
    that loads the model again (`evalkit.pipeline.slice_fit`). Returns an
    `AttributionReport`.
    """
    from evalkit.analysis.attribute import AttributeOptions, attribute_runs
    from evalkit.analysis.compare import unique_labels
    from evalkit.provenance import manifest_provenance
    from evalkit.store import read_run

    paths = [q for t in runs for q in runs_at(t, "run")]
    loaded = [read_run(q) for q in paths]
    options = AttributeOptions(
        metric=metric,
        reference=reference,
        ridge=ridge,
        resamples=resamples,
        level=level,
        min_log_sd=min_log_sd,
        seed=seed,
    )
    fit: dict[str, dict[str, float]] | None = None
    if with_slice_fit:
        fit = {}
        for run, label in zip(loaded, unique_labels(loaded, labels), strict=True):
            ckpt = Path(run.manifest.checkpoint)
            if not (ckpt / "config.json").is_file():
                raise EvalkitError(f"run {label}: its checkpoint {ckpt} is gone; cannot fit slices")
            fit[label] = slice_fit(
                ckpt,
                provenance=manifest_provenance(run.manifest, label),
                max_documents=slice_fit_documents,
                device=device,
                dtype=dtype,
            )
    return attribute_runs(loaded, options, labels=labels, slice_fit=fit)
