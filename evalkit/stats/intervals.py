"""Intervals of one run's scores: Wilson (continuity-corrected, or at the effective n of
clustered items) for 0/1 metrics, the studentized (cluster) bootstrap for continuous ones, a
percentile bootstrap for non-mean aggregates, and MOVER for a mean of independent estimates.
Each interval records its method (one of the CI_* names)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evalkit.stats.sampling import (
    DEFAULT_LEVEL,
    DEFAULT_RESAMPLES,
    design_effect,
    is_binary,
    studentized_bootstrap,
    z_value,
)


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float
    n: int
    method: str = ""  # how low/high were computed (one of the CI_* names below)


# Interval methods, recorded with every score (scores.parquet `ci_method`). Measured coverage of
# each is in docs/decisions.md; tests/test_stats.py re-measures it.
CI_WILSON = "wilson-cc"  # 0/1 items: Wilson score interval with continuity correction
CI_WILSON_CLUSTER = "wilson-cc-deff"  # clustered 0/1 items: Wilson at the effective n (Kish)
CI_BOOTSTRAP_T = "bootstrap-t"  # continuous items: studentized bootstrap
CI_CLUSTER_BOOTSTRAP_T = "cluster-bootstrap-t"  # continuous, clustered: over whole clusters
CI_PERCENTILE = "percentile-bootstrap"  # a non-mean aggregate (e.g. F1): percentile bootstrap
CI_CLUSTER_PERCENTILE = "cluster-percentile-bootstrap"  # a derived summary over clusters
CI_NONE = "none"  # a count or a single item: no interval
CI_DEGENERATE = "degenerate"  # continuous values with no spread at all: low = high = value
CI_BONETT_PRICE = "bonett-price"  # paired 0/1 delta: adjusted Wald (Bonett & Price 2012)
CI_PAIRED_T = "paired-bootstrap-t"  # paired continuous delta: studentized bootstrap


def wilson_interval(
    successes: float, n: float, level: float = DEFAULT_LEVEL, *, correct: bool = True
) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion, continuity-corrected by default
    (Newcombe 1998, method 4). Counts may be fractional (an effective n).

    Why the correction: the uncorrected Wilson interval dips to 0.84-0.91 coverage at n = 10-20
    for some p (exact enumeration, docs/decisions.md); the corrected one stays at or above the
    nominal 0.95 for every p and n >= 10, without Clopper-Pearson's beta quantiles.
    """
    if n <= 0:
        raise ValueError("a proportion needs at least one item")
    if not 0 <= successes <= n:
        raise ValueError(f"{successes} successes out of {n}")
    z = z_value(level)
    zz = z * z
    p = successes / n
    q = 1.0 - p
    if not correct:
        d = 1 + zz / n
        c = (p + zz / (2 * n)) / d
        h = z * math.sqrt(p * q / n + zz / (4 * n * n)) / d
        low, high = c - h, c + h
    else:
        low = 2 * n * p + zz - 1 - z * math.sqrt(max(zz - 2 - 1 / n + 4 * p * (n * q + 1), 0.0))
        high = 2 * n * p + zz + 1 + z * math.sqrt(max(zz + 2 - 1 / n + 4 * p * (n * q - 1), 0.0))
        low, high = low / (2 * (n + zz)), high / (2 * (n + zz))
    low = 0.0 if successes <= 0 else max(0.0, min(low, p))
    high = 1.0 if successes >= n else min(1.0, max(high, p))
    return float(low), float(high)


def _item_values(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Per-item values as floats; none at all or a NaN among them is an error."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("cannot compute a confidence interval over no items")
    if np.isnan(x).any():
        raise ValueError("a per-item metric is NaN")
    return x


def mean_interval(
    values: Sequence[float] | np.ndarray,
    clusters: Sequence[Any] | None = None,
    *,
    binary: bool | None = None,
    level: float = DEFAULT_LEVEL,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """The mean of per-item values with the interval that holds for their kind.

    0/1 values (or `binary=True`): continuity-corrected Wilson; with clusters, Wilson at the
    effective n = n / design effect. Anything else: the studentized (cluster) bootstrap.
    `binary=False` forces the continuous method (a continuous metric that happens to be 0/1).
    """
    x = _item_values(values)
    value = float(x.mean())
    n = int(x.size)
    if not np.isfinite(x).all():
        # An infinite item (a bpb of an impossible continuation): the mean is infinite too.
        return Interval(value, value, value, n, CI_NONE)
    is01 = is_binary(x)
    if binary is None:
        binary = is01
    if binary and not is01:
        raise ValueError("a 0/1 interval asked for values that are not all 0 or 1")
    if binary:
        deff = design_effect(x, clusters) if clusters is not None else 1.0
        n_eff = n / deff
        low, high = wilson_interval(value * n_eff, n_eff, level)
        method = CI_WILSON_CLUSTER if clusters is not None else CI_WILSON
        return Interval(value, low, high, n, method)
    if n == 1:
        return Interval(value, value, value, 1, CI_NONE)
    low, high = studentized_bootstrap(x, clusters, level, resamples, seed)
    # A mean never leaves the range of its values; bootstrap-t can (a near-constant sample
    # with one outlier gives a huge t spread), e.g. a copy accuracy of 0.01 with high 2.4.
    low, high = max(low, float(x.min())), min(high, float(x.max()))
    if low == high == value:
        return Interval(value, value, value, n, CI_DEGENERATE)
    method = CI_CLUSTER_BOOTSTRAP_T if clusters is not None else CI_BOOTSTRAP_T
    return Interval(value, min(low, value), max(high, value), n, method)


def mean_ci(
    values: Sequence[float],
    level: float = DEFAULT_LEVEL,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """The interval of a per-item mean: `mean_interval` (Wilson for 0/1, bootstrap-t else)."""
    return mean_interval(values, level=level, resamples=resamples, seed=seed)


def percentile_mean_ci(
    values: Sequence[float],
    level: float = DEFAULT_LEVEL,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """The percentile bootstrap of the mean (what every score used before; kept as the
    reference the coverage tests show failing at 0 and 1)."""
    x = _item_values(values)
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
    return Interval(
        value, float(min(low, value)), float(max(high, value)), int(x.size), CI_PERCENTILE
    )


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
        return Interval(value, value, value, 1, CI_NONE)
    rng = np.random.default_rng(seed)
    stats = np.array(
        [aggregate([values[i] for i in rng.integers(0, n, size=n)]) for _ in range(resamples)],
        dtype=np.float64,
    )
    stats = stats[np.isfinite(stats)]
    if stats.size == 0:
        return Interval(value, float("nan"), float("nan"), n, CI_PERCENTILE)
    alpha = (1 - level) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha])
    return Interval(value, float(low), float(high), n, CI_PERCENTILE)


def mover_mean(intervals: Sequence[Interval]) -> Interval:
    """The unweighted mean of independent estimates with its interval by MOVER (Zou & Donner
    2008): each side's half-width is recovered from the estimates' own limits, so asymmetric
    intervals near 0 or 1 (Wilson) stay asymmetric and the mean holds their coverage."""
    if not intervals:
        raise ValueError("no intervals to combine")
    w = 1.0 / len(intervals)
    value = w * math.fsum(c.value for c in intervals)
    low = value - w * math.sqrt(math.fsum((c.value - c.low) ** 2 for c in intervals))
    high = value + w * math.sqrt(math.fsum((c.high - c.value) ** 2 for c in intervals))
    methods = "+".join(sorted({c.method for c in intervals}))
    return Interval(
        value, min(low, value), max(high, value), sum(c.n for c in intervals), f"mover({methods})"
    )
