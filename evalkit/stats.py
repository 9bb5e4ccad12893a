"""Confidence intervals for task scores.

Means get a percentile bootstrap over items (vectorized, seeded, so runs are reproducible);
any other aggregation (e.g. lm-eval's weighted perplexity) is bootstrapped by re-applying it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_RESAMPLES = 2000
DEFAULT_LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float
    n: int


def mean_ci(
    values: Sequence[float],
    level: float = DEFAULT_LEVEL,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Interval:
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("cannot compute a confidence interval over no items")
    if np.isnan(x).any():
        raise ValueError("a per-item metric is NaN")
    value = float(x.mean())
    if x.size == 1:
        return Interval(value, value, value, 1)
    rng = np.random.default_rng(seed)
    # Resample in blocks to bound memory for large tasks.
    means = np.empty(resamples)
    block = max(1, 4_000_000 // x.size)
    for start in range(0, resamples, block):
        stop = min(resamples, start + block)
        idx = rng.integers(0, x.size, size=(stop - start, x.size))
        means[start:stop] = x[idx].mean(axis=1)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return Interval(value, float(min(low, value)), float(max(high, value)), int(x.size))


def bootstrap_ci(
    values: Sequence[Any],
    aggregate: Callable[[Sequence[Any]], float],
    level: float = DEFAULT_LEVEL,
    resamples: int = 500,
    seed: int = 0,
) -> Interval:
    n = len(values)
    if n == 0:
        raise ValueError("cannot compute a confidence interval over no items")
    value = float(aggregate(values))
    if n == 1:
        return Interval(value, value, value, 1)
    rng = np.random.default_rng(seed)
    stats = np.array(
        [aggregate([values[i] for i in rng.integers(0, n, size=n)]) for _ in range(resamples)],
        dtype=np.float64,
    )
    stats = stats[np.isfinite(stats)]
    if stats.size == 0:
        return Interval(value, float("nan"), float("nan"), n)
    alpha = (1 - level) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha])
    return Interval(value, float(low), float(high), n)
