"""`compare`: paired comparison of stored runs; a checkpoint among the targets is scored
through the pipeline first (score, then compare: `evalkit.pipeline.targets`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evalkit.decisions.targets import PathLike, runs_at
from evalkit.errors import EvalkitError
from evalkit.pipeline.plan import Output


def compare(
    *targets: PathLike,
    suite: str | None = None,
    tasks: Sequence[str] | None = None,
    tasks_dir: PathLike | None = None,
    limit: int | None = None,
    chat: bool | None = None,
    labels: Sequence[str] | None = None,
    out_dir: PathLike | None = None,
    backend: str = "auto",
    device: str = "auto",
    dtype: str = "auto",
    cache_dir: PathLike | None = None,
    use_cache: bool = True,
    progress: bool = True,
    by: str | None = None,
    cluster: str | None = None,
    correction: str = "holm",
    alpha: float = 0.05,
    level: float = 0.95,
    test: str = "auto",
    metrics: str = "primary",
    resamples: int = 2000,
    seed: int = 0,
    noise: Sequence[PathLike] = (),
    noise_last: int = 5,
    min_snr: float = 3.0,
    settings: Mapping[str, Any] | None = None,
) -> Any:
    """Paired comparison of runs. Returns an `evalkit.analysis.compare.CompareReport`.

    The first target is the reference. The comparison reads stored runs only; a target that is
    a checkpoint is first scored through the pipeline (`evalkit.pipeline.targets`: score, then
    compare) on `suite`/`tasks` with the other run settings given here (`settings`: more
    `RunConfig` fields, e.g. `num_fewshot`), into `out_dir`. A checkpoint whose tokenizer has a
    chat template is scored twice, raw and through the template (`chat=None`: when it has one;
    `chat=False`: raw only), so the report shows what tuning changed and how sensitive each
    task is to the format. `seed` is the bootstrap's.
    """
    from evalkit.analysis.compare import CompareOptions, compare_runs
    from evalkit.pipeline.targets import Target, is_checkpoint, score_checkpoint
    from evalkit.store import is_run, read_run

    if len(targets) < 2 and not any(is_checkpoint(Path(t)) for t in targets):
        raise EvalkitError("compare needs at least two runs or checkpoints")
    options = CompareOptions(
        by=by,
        cluster=cluster,
        correction=correction,
        alpha=alpha,
        level=level,
        test=test,
        metrics=metrics,  # type: ignore[arg-type]
        resamples=resamples,
        seed=seed,
    )
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base_out = Path(out_dir) if out_dir is not None else Path("runs") / f"compare-{stamp}"
    run_settings = {
        "suite": suite,
        "tasks": tuple(tasks or ()),
        "tasks_dir": None if tasks_dir is None else str(tasks_dir),
        "limit": limit,
        "backend": backend,
        "device": device,
        "dtype": dtype,
        **(settings or {}),
    }
    output = Output(None, None if cache_dir is None else Path(cache_dir), use_cache, progress)
    found: list[Target] = []
    for i, target in enumerate(targets):
        p = Path(target)
        name = labels[i] if labels and i < len(labels) else None
        if is_run(p):
            found.append(Target(p, name or p.name))
            continue
        if not is_checkpoint(p):
            raise EvalkitError(f"not a run directory or a checkpoint: {p}")
        if suite is None and not tasks:
            raise EvalkitError(f"{p} is a checkpoint: give --suite (or --tasks) to score it")
        label = name or p.resolve().name
        found += score_checkpoint(
            p, run_settings, chat=chat, label=label, folder=base_out, prefix=f"{i}-", output=output
        )
    if len(found) < 2:
        raise EvalkitError("compare needs at least two runs or checkpoints")
    noise_runs = [read_run(q) for n in noise for q in runs_at(n, "noise run")]
    return compare_runs(
        [read_run(t.path) for t in found],
        options,
        labels=[t.label for t in found],
        noise_runs=noise_runs,
        noise_last=noise_last,
        min_snr=min_snr,
    )
