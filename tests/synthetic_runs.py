"""Run directories with chosen per-item metrics, for testing compare and gate without a model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evalkit.aggregate import task_scores
from evalkit.store import samples_frame, scores_frame, write_run
from evalkit.tasks.base import ItemResult, MetricSpec


@dataclass(frozen=True)
class TaskData:
    family: str
    metrics: Mapping[str, Sequence[float]]  # metric -> one value per item
    lower_is_better: frozenset[str] = frozenset({"bpb"})
    tags: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    doc_ids: Sequence[int] | None = None
    targets: Sequence[str] | None = None


def make_run(
    path: Path,
    tasks: Mapping[str, TaskData],
    *,
    fingerprint: str = "model-a",
    chat: bool = False,
    suite: str | None = "smoke",
    step: int | None = None,
    run_name: str | None = None,
    created: str = "2025-01-01T00:00:00",
) -> Path:
    results: dict[str, list[ItemResult]] = {}
    scores = []
    for name, t in tasks.items():
        n = len(next(iter(t.metrics.values())))
        ids = list(t.doc_ids) if t.doc_ids is not None else list(range(n))
        targets = list(t.targets) if t.targets is not None else [f"t{i}" for i in ids]
        items = [
            ItemResult(
                doc_id=ids[i],
                prompt_hash=f"p{ids[i]}",
                loglikelihoods=(),
                prediction=None,
                target=targets[i],
                metrics={m: float(v[i]) for m, v in t.metrics.items()},
                tags={"family": t.family, **{k: v[i] for k, v in t.tags.items()}},
            )
            for i in range(n)
        ]
        results[name] = items
        specs = [MetricSpec(m, higher_is_better=m not in t.lower_is_better) for m in t.metrics]
        scores += task_scores(name, t.family, specs, items)
    manifest: dict[str, Any] = {
        "schema_version": 2,
        "model_fingerprint": fingerprint,
        "checkpoint": f"/ckpts/{run_name or path.name}",
        "suite": suite,
        "created": created,
        "chat_template": {"applied": True} if chat else None,
        "provenance": (
            {"checkpoint": {"run": run_name, "step": step}} if step is not None else None
        ),
    }
    return write_run(path, manifest, samples_frame(results), scores_frame(scores))


def binary_pair(
    n: int, p: float, *, worse: int = 0, better: int = 0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Baseline 0/1 outcomes with rate ~p, and a candidate that loses `worse` of the baseline's
    right answers and gains `better` of its wrong ones."""
    rng = np.random.default_rng(seed)
    a = (rng.random(n) < p).astype(float)
    b = a.copy()
    right, wrong = np.flatnonzero(a == 1), np.flatnonzero(a == 0)
    b[rng.choice(right, worse, replace=False)] = 0.0
    b[rng.choice(wrong, better, replace=False)] = 1.0
    return a, b
