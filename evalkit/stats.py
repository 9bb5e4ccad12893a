"""Statistics for decisions: intervals, paired tests, corrections, power, signal and noise.

Scores get a percentile bootstrap over items (`mean_ci`, `bootstrap_ci`; vectorized, seeded, so
runs are reproducible). Comparisons are paired on the items two runs share:

- `paired_bootstrap_distribution` resamples the item-level differences b - a (or whole
  clusters of items that share a source, when `clusters` is given) and returns the bootstrap
  distribution of the mean difference; `paired_compare` turns it into a delta, a percentile
  interval, a p-value and the minimum detectable effect.
- 0/1 metrics get add-one smoothing of the differences (one pseudo-item that B wins and one
  that A wins, as in the Agresti-Min / Bonett-Price intervals for paired proportions), so that
  20 items without a single disagreement do not produce the degenerate interval [0, 0].
- `mcnemar_exact` is the exact (binomial) McNemar test on the discordant pairs.
- `permutation_test` flips the sign of each item's (or cluster's) difference: exact when all
  2^G sign patterns fit in `resamples`, Monte Carlo otherwise.
- `adjust_pvalues` applies Holm or Benjamini-Hochberg across the tasks of a suite.
- `mde` is the minimum detectable effect at a given power for a standard error.
- `relative_dispersion` and `relative_std` are the signal and noise of Heineman et al.,
  "Signal and Noise" (arXiv:2508.13144).

Nothing here needs scipy: normal quantiles come from the standard library and binomial tails
are summed in log space.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

DEFAULT_RESAMPLES = 2000
DEFAULT_LEVEL = 0.95
DEFAULT_POWER = 0.8

Correction = Literal["holm", "bh", "bonferroni", "none"]
CORRECTIONS: tuple[str, ...] = ("holm", "bh", "bonferroni", "none")
TestName = Literal["auto", "bootstrap", "permutation", "mcnemar"]
TESTS: tuple[str, ...] = ("auto", "bootstrap", "permutation", "mcnemar")


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


def _z(level: float) -> float:
    return NormalDist().inv_cdf(1 - (1 - level) / 2)


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
    z = _z(level)
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


def _t_quantile(q: float, df: float) -> float:
    """Student t quantile by the Cornish-Fisher expansion (exact enough for df >= 3: the error
    at df = 3, q = 0.975 is under 1%; no scipy at runtime)."""
    z = NormalDist().inv_cdf(q)
    if not math.isfinite(df) or df > 1e6:
        return z
    df = max(df, 1.0)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return float(z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4)


def t_cdf_upper(t: float, df: float) -> float:
    """P(T > t) for Student's t with `df` degrees of freedom (normal when df is infinite), by
    bisection on `_t_quantile`; enough for p-values compared with alpha."""
    if not math.isfinite(t):
        return 0.0 if t > 0 else 1.0
    if not math.isfinite(df) or df > 1e6:
        return 1.0 - NormalDist().cdf(t)
    lo, hi = 1e-12, 1 - 1e-12
    for _ in range(60):
        mid = (lo + hi) / 2
        if _t_quantile(mid, df) < t:
            lo = mid
        else:
            hi = mid
    return 1.0 - (lo + hi) / 2


def studentized_bootstrap(
    values: Any,
    clusters: Sequence[Any] | None = None,
    level: float = DEFAULT_LEVEL,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int | np.random.Generator = 0,
) -> tuple[float, float]:
    """Bootstrap-t interval of the mean (whole clusters resampled when `clusters` is given).

    Each replicate's mean is studentized by its own (cluster-robust) standard error, so the
    interval follows the skew of the data; at n = 20 it holds 0.93-0.95 where the percentile
    bootstrap gave 0.87 (docs/decisions.md). Replicates without spread get a floored SE.
    """
    x = _as_array(values)
    codes, g = cluster_codes(clusters, x.size)
    sums, sizes = _cluster_sums(x, codes, g)
    mean = float(sums.sum() / sizes.sum())
    se = mean_se(x, clusters)
    if g < 2 or not se > 0:
        return mean, mean
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    t = np.empty(resamples)
    block = max(1, 4_000_000 // g)
    floor = se * 1e-3
    for start in range(0, resamples, block):
        stop = min(resamples, start + block)
        idx = rng.integers(0, g, size=(stop - start, g))
        s, w = sums[idx], sizes[idx]
        m = s.sum(axis=1) / w.sum(axis=1)
        resid = s - w * m[:, None]
        se_b = np.sqrt(g / (g - 1) * (resid**2).sum(axis=1)) / w.sum(axis=1)
        t[start:stop] = (m - mean) / np.maximum(se_b, floor)
    tail = (1 - level) / 2
    t_low, t_high = np.quantile(t, [tail, 1 - tail])
    return float(mean - t_high * se), float(mean - t_low * se)


def design_effect(values: Any, clusters: Sequence[Any] | None) -> float:
    """Kish's design effect: the variance of the mean over clusters relative to that over
    independent items, at least 1. Without any spread to measure, the mean cluster size (the
    worst case: items of a cluster perfectly alike)."""
    x = _as_array(values)
    _, g = cluster_codes(clusters, x.size)
    if clusters is None or g >= x.size:
        return 1.0
    iid = mean_se(x)
    clus = mean_se(x, clusters)
    if not (iid > 0 and math.isfinite(clus)):
        return float(x.size / max(g, 1))
    return float(max(1.0, (clus / iid) ** 2))


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


# -- helpers ---------------------------------------------------------------------------------


def _as_array(values: Any, name: str = "values") -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional")
    if x.size and not np.isfinite(x).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    return x


def is_binary(values: Any) -> bool:
    """True when every value is 0 or 1 (an accuracy-like per-item metric)."""
    x = np.asarray(values, dtype=np.float64)
    return bool(x.size) and bool(np.isin(x, (0.0, 1.0)).all())


# Per-item metrics that are 0/1 by definition. Any other metric is continuous even when its
# values happen to be all 0 or 1 on a run (a p_correct of exactly 0 and 1), so the method of
# a comparison does not change with the data.
BINARY_METRICS = frozenset(
    {"acc", "acc_norm", "exact_match", "em", "pass@1", "recall", "copy_acc", "first_acc"}
)


def is_binary_metric(name: str, *values: Any) -> bool:
    """A 0/1 comparison: the metric is 0/1 by definition and every value is 0 or 1 (a mean
    of several runs' 0/1 values is not)."""
    base = name.split("[", 1)[0]
    return base in BINARY_METRICS and all(is_binary(v) for v in values)


def cluster_codes(clusters: Sequence[Any] | None, n: int) -> tuple[np.ndarray, int]:
    """Integer codes 0..G-1 for `clusters` (each item its own cluster when None)."""
    if clusters is None:
        return np.arange(n), n
    labels = np.asarray([str(c) for c in clusters])
    if labels.size != n:
        raise ValueError(f"{labels.size} cluster labels for {n} items")
    _, codes = np.unique(labels, return_inverse=True)
    return codes.astype(np.int64), int(codes.max()) + 1 if n else 0


def _cluster_sums(x: np.ndarray, codes: np.ndarray, g: int) -> tuple[np.ndarray, np.ndarray]:
    sums = np.bincount(codes, weights=x, minlength=g)
    sizes = np.bincount(codes, minlength=g).astype(np.float64)
    return sums, sizes


def bootstrap_means(
    values: Any,
    clusters: Sequence[Any] | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int | np.random.Generator = 0,
) -> np.ndarray:
    """Bootstrap distribution of the mean of `values`, resampling items or whole clusters.

    With clusters, each replicate draws G clusters with replacement and takes the ratio of the
    drawn clusters' sums to their sizes (the item mean of the resampled data).
    """
    x = _as_array(values)
    if x.size == 0:
        raise ValueError("cannot bootstrap over no items")
    codes, g = cluster_codes(clusters, x.size)
    sums, sizes = _cluster_sums(x, codes, g)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    out = np.empty(resamples)
    block = max(1, 4_000_000 // g)
    for start in range(0, resamples, block):
        stop = min(resamples, start + block)
        idx = rng.integers(0, g, size=(stop - start, g))
        out[start:stop] = sums[idx].sum(axis=1) / sizes[idx].sum(axis=1)
    return out


def percentile_interval(dist: np.ndarray, level: float = DEFAULT_LEVEL) -> tuple[float, float]:
    tail = (1 - level) / 2
    low, high = np.quantile(dist, [tail, 1 - tail])
    return float(low), float(high)


def mean_se(values: Any, clusters: Sequence[Any] | None = None) -> float:
    """Standard error of the mean; cluster-robust (CR1) when `clusters` is given.

    Without clusters this is the usual s / sqrt(n) (ddof=1).
    """
    x = _as_array(values)
    n = x.size
    if n < 2:
        return float("nan")
    codes, g = cluster_codes(clusters, n)
    if g < 2:
        return float("nan")
    sums, sizes = _cluster_sums(x, codes, g)
    mean = sums.sum() / sizes.sum()
    resid = sums - sizes * mean
    return float(math.sqrt(g / (g - 1) * float((resid**2).sum())) / sizes.sum())


def smoothed_differences(
    a: Any, b: Any, clusters: Sequence[Any] | None = None
) -> tuple[np.ndarray, list[Any] | None]:
    """b - a with one +1 and one -1 pseudo-difference appended (each its own cluster).

    For 0/1 metrics this is the add-one adjustment of the Agresti-Min and Bonett-Price
    intervals for paired proportions: it keeps intervals honest when few or no items disagree.
    """
    d = _as_array(b, "b") - _as_array(a, "a")
    out = np.concatenate([d, [1.0, -1.0]])
    if clusters is None:
        return out, None
    labels: list[Any] = [("item", str(c)) for c in clusters]
    return out, [*labels, ("pseudo", "+"), ("pseudo", "-")]


# -- paired tests ---------------------------------------------------------------------------


def _binom_half_cdf(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), summed in log space."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    logs = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2.0)
        for i in range(k + 1)
    ]
    top = max(logs)
    return min(1.0, math.exp(top) * math.fsum(math.exp(v - top) for v in logs))


@dataclass(frozen=True)
class McNemar:
    """Exact McNemar test: of the n_discordant items the runs disagree on, A alone gets
    `a_only` right and B alone `b_only`."""

    a_only: int
    b_only: int
    p_value: float

    @property
    def n_discordant(self) -> int:
        return self.a_only + self.b_only


def mcnemar_exact(a: Any, b: Any) -> McNemar:
    """Two-sided exact McNemar test for paired 0/1 outcomes (a binomial test of the discordant
    pairs against 1/2), as `statsmodels...mcnemar(table, exact=True)`."""
    x, y = _as_array(a, "a"), _as_array(b, "b")
    if x.size != y.size:
        raise ValueError("paired samples must have the same length")
    if not (is_binary(x) and is_binary(y)):
        raise ValueError("McNemar's test needs 0/1 outcomes")
    a_only = int(((x == 1) & (y == 0)).sum())
    b_only = int(((x == 0) & (y == 1)).sum())
    n = a_only + b_only
    p = 1.0 if n == 0 else min(1.0, 2.0 * _binom_half_cdf(min(a_only, b_only), n))
    return McNemar(a_only, b_only, p)


@dataclass(frozen=True)
class Permutation:
    p_value: float
    exact: bool
    resamples: int


def permutation_test(
    a: Any,
    b: Any,
    clusters: Sequence[Any] | None = None,
    resamples: int = 10_000,
    seed: int = 0,
) -> Permutation:
    """Two-sided paired permutation (sign-flip) test of mean(b - a) = 0.

    Under the null each item's (or cluster's) pair is exchangeable, so the sign of its
    difference is flipped at random. Exact when all 2^G sign patterns number at most
    `resamples`; otherwise Monte Carlo with the (count + 1) / (resamples + 1) convention. The
    two-sided p-value is twice the smaller tail, as `scipy.stats.permutation_test`.
    """
    d = _as_array(b, "b") - _as_array(a, "a")
    if d.size == 0:
        raise ValueError("cannot test over no items")
    codes, g = cluster_codes(clusters, d.size)
    sums, _ = _cluster_sums(d, codes, g)
    observed = float(sums.sum())
    exact = g <= 30 and 2**g <= resamples
    if exact:
        patterns = ((np.arange(2**g)[:, None] >> np.arange(g)[None, :]) & 1).astype(np.float64)
        null = (1.0 - 2.0 * patterns) @ sums
        adjust = 0
    else:
        rng = np.random.default_rng(seed)
        null = np.empty(resamples)
        block = max(1, 4_000_000 // g)
        for start in range(0, resamples, block):
            stop = min(resamples, start + block)
            signs = rng.integers(0, 2, size=(stop - start, g)) * 2.0 - 1.0
            null[start:stop] = signs @ sums
        adjust = 1
    eps = 1e-12 * max(1.0, abs(observed))
    total = null.size + adjust
    greater = (float((null >= observed - eps).sum()) + adjust) / total
    less = (float((null <= observed + eps).sum()) + adjust) / total
    return Permutation(min(1.0, 2.0 * min(greater, less)), exact, int(null.size))


def paired_bootstrap_distribution(
    a: Any,
    b: Any,
    clusters: Sequence[Any] | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int | np.random.Generator = 0,
    smooth: bool | None = None,
) -> np.ndarray:
    """Bootstrap distribution of mean(b - a) over paired items (or clusters of them).

    `smooth` (default: when both are 0/1) adds the two pseudo-differences of
    `smoothed_differences`.
    """
    x, y = _as_array(a, "a"), _as_array(b, "b")
    if x.size != y.size:
        raise ValueError("paired samples must have the same length")
    if smooth is None:
        smooth = is_binary(x) and is_binary(y)
    if smooth:
        d, labels = smoothed_differences(x, y, clusters)
        return bootstrap_means(d, labels, resamples, seed)
    return bootstrap_means(y - x, clusters, resamples, seed)


def bootstrap_p_value(dist: np.ndarray, center: float) -> float:
    """Two-sided bootstrap p-value of 'no difference': how often the bootstrap distribution,
    shifted to be centred on 0, lies at least as far from 0 as the observed estimate."""
    hits = float((np.abs(dist - center) >= abs(center) - 1e-12).sum())
    return min(1.0, (hits + 1.0) / (dist.size + 1.0))


def mde(
    se: float, alpha: float = 0.05, power: float = DEFAULT_POWER, two_sided: bool = True
) -> float:
    """Minimum detectable effect: the smallest true difference a z-test at `alpha` detects
    with probability `power`, given the standard error `se` of the estimate."""
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError("alpha and power must lie in (0, 1)")
    z = NormalDist()
    crit = z.inv_cdf(1 - alpha / 2) if two_sided else z.inv_cdf(1 - alpha)
    return float((crit + z.inv_cdf(power)) * se)


def _compare_mde(se: float, alpha: float, power: float, n: int, binary: bool) -> float:
    """The MDE `paired_compare` reports. For 0/1 metrics its test is exact McNemar, which is
    conservative: the normal-theory MDE gave it 73-78% power, not 80%. Two discordant pairs'
    worth (2 / n) covers the discreteness (tests/test_compare.py measures >= 80%)."""
    if not math.isfinite(se):
        return float("nan")
    return mde(se, alpha, power) + (2.0 / n if binary else 0.0)


def items_needed(n: int, current_mde: float, target: float) -> int:
    """Items needed for the MDE to shrink from `current_mde` (at n items) to `target`,
    assuming the per-item variance stays the same (MDE scales as 1 / sqrt(n))."""
    if target <= 0 or not math.isfinite(current_mde):
        return -1
    return max(n, math.ceil(n * (current_mde / target) ** 2))


@dataclass(frozen=True)
class PairedTest:
    """B against A on paired items: delta = mean(b) - mean(a)."""

    a: float
    b: float
    delta: float
    low: float
    high: float
    p_value: float
    test: str
    se: float
    mde: float
    n: int
    n_clusters: int
    level: float
    binary: bool
    ci_method: str = ""


def paired_compare(
    a: Any,
    b: Any,
    clusters: Sequence[Any] | None = None,
    *,
    test: TestName = "auto",
    level: float = DEFAULT_LEVEL,
    alpha: float = 0.05,
    power: float = DEFAULT_POWER,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> PairedTest:
    """Delta, percentile interval from the paired (cluster) bootstrap, a p-value and the MDE.

    `test="auto"`: exact McNemar for 0/1 metrics without clusters, else the paired bootstrap.
    The standard error behind the MDE is cluster-robust and, for 0/1 metrics, add-one
    smoothed, so it is never zero for a comparison of 0/1 outcomes.
    """
    result, _ = paired_analysis(
        a,
        b,
        clusters,
        test=test,
        level=level,
        alpha=alpha,
        power=power,
        resamples=resamples,
        seed=seed,
    )
    return result


def paired_analysis(
    a: Any,
    b: Any,
    clusters: Sequence[Any] | None = None,
    *,
    test: TestName = "auto",
    level: float = DEFAULT_LEVEL,
    alpha: float = 0.05,
    power: float = DEFAULT_POWER,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> tuple[PairedTest, np.ndarray]:
    """`paired_compare`, also returning the bootstrap distribution of the delta."""
    x, y = _as_array(a, "a"), _as_array(b, "b")
    if x.size != y.size:
        raise ValueError("paired samples must have the same length")
    if x.size == 0:
        raise ValueError("no paired items")
    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; choose one of {', '.join(TESTS)}")
    binary = is_binary(x) and is_binary(y)
    _, g = cluster_codes(clusters, x.size)
    clustered = clusters is not None and g < x.size
    delta = float(y.mean() - x.mean())
    dist = paired_bootstrap_distribution(x, y, clusters, resamples, seed, smooth=binary)
    closed = paired_delta(x, y, clusters, binary=binary, level=level)
    se = closed.se
    if binary:
        # Bonett-Price: holds its coverage at n = 10 and with no discordant pair at all.
        low, high, method = closed.low, closed.high, closed.method
    else:
        low, high = studentized_bootstrap(y - x, clusters, level, resamples, seed)
        method = CI_PAIRED_T
        if low == high:
            low, high, method = closed.low, closed.high, closed.method
    low, high = min(low, delta), max(high, delta)
    chosen = test
    if test == "auto":
        chosen = "mcnemar" if binary and not clustered else "bootstrap"
    if chosen == "mcnemar":
        if not binary:
            raise ValueError("McNemar's test needs 0/1 outcomes")
        if clustered:
            raise ValueError("McNemar's test assumes independent items; use the bootstrap")
        p = mcnemar_exact(x, y).p_value
    elif chosen == "permutation":
        p = permutation_test(x, y, clusters, seed=seed).p_value
    else:
        center = float(dist.mean()) if binary else delta
        p = bootstrap_p_value(dist, center) if delta != 0 else 1.0
    result = PairedTest(
        a=float(x.mean()),
        b=float(y.mean()),
        delta=delta,
        low=low,
        high=high,
        p_value=float(p),
        test={"mcnemar": "McNemar (exact)", "permutation": "permutation"}.get(
            chosen, "cluster bootstrap" if clustered else "paired bootstrap"
        ),
        se=float(se),
        mde=_compare_mde(se, alpha, power, int(x.size), binary),
        n=int(x.size),
        n_clusters=int(g),
        level=level,
        binary=binary,
        ci_method=method,
    )
    return result, dist


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


@dataclass(frozen=True)
class PairedDelta:
    """mean(b) - mean(a) on paired items with an interval, the SE behind it and its method.

    `center` is the estimate the interval and tests are built around: for 0/1 outcomes the
    add-one adjusted difference of Bonett & Price (it shrinks towards 0 with few items), else
    the plain difference. `df` are the degrees of freedom of the t reference (inf: normal).
    """

    delta: float
    center: float
    low: float
    high: float
    se: float
    df: float
    n: int
    n_clusters: int
    binary: bool
    method: str


# Relative to the metric's scale. Per-item metrics come from fp32 log-probabilities (relative
# resolution ~1e-7, summed over tokens): differences below this are rounding, not evidence.
SE_FLOOR_REL = 1e-6


def se_floor(*values: np.ndarray) -> float:
    """The smallest SE taken at face value, so that a zero-variance shift reports an SE (and
    MDE) at the resolution of the metric, not 7e-18."""
    scale = max((float(np.abs(v).max()) for v in values if v.size), default=1.0)
    return SE_FLOOR_REL * max(1.0, scale)


def paired_delta(
    a: Any,
    b: Any,
    clusters: Sequence[Any] | None = None,
    *,
    binary: bool | None = None,
    level: float = DEFAULT_LEVEL,
) -> PairedDelta:
    """Closed-form interval of the paired difference b - a.

    0/1 outcomes: Bonett & Price's adjusted Wald interval (one pseudo-pair won by each side
    added, n + 2 pairs): it never collapses, even with no discordant pair, and holds its
    coverage at n = 10 (docs/decisions.md). With clusters, the same centre with a
    cluster-robust SE and G - 1 degrees of freedom. Continuous: the paired t interval on the
    (cluster-robust) SE, G - 1 degrees of freedom; the SE is floored (`se_floor`).
    """
    x, y = _as_array(a, "a"), _as_array(b, "b")
    if x.size != y.size:
        raise ValueError("paired samples must have the same length")
    n = int(x.size)
    if n == 0:
        raise ValueError("no paired items")
    is01 = is_binary(x) and is_binary(y)
    if binary is None:
        binary = is01
    if binary and not is01:
        raise ValueError("a 0/1 comparison asked for values that are not all 0 or 1")
    _, g = cluster_codes(clusters, n)
    clustered = clusters is not None and g < n
    delta = float(y.mean() - x.mean())
    if binary:
        b_only = float(((y == 1) & (x == 0)).sum())
        a_only = float(((y == 0) & (x == 1)).sum())
        p21, p12 = (b_only + 1) / (n + 2), (a_only + 1) / (n + 2)
        center = p21 - p12
        if clustered:
            d, labels = smoothed_differences(x, y, clusters)
            se = mean_se(d, labels)
            df = float(g + 1)  # the two pseudo-pairs are clusters of their own
        else:
            se = math.sqrt(max(p12 + p21 - center**2, 0.0) / (n + 2))
            df = math.inf
        method = CI_BONETT_PRICE
    else:
        center = delta
        se = mean_se(y - x, clusters) if n > 1 else float("nan")
        df = float(max(g - 1, 1))
        method = "paired-t"
        if not (math.isfinite(se) and se > se_floor(x, y)):
            # No paired variance above rounding noise (identical runs, or one shift on every
            # item): the SE is the floor, not 7e-18, and says so in its method.
            se = se_floor(x, y)
            method = "paired-t (SE floor)"
    q = _t_quantile(1 - (1 - level) / 2, df)
    low, high = center - q * se, center + q * se
    if binary:
        low, high = max(low, -1.0), min(high, 1.0)
    return PairedDelta(
        delta=delta,
        center=center,
        low=float(low),
        high=float(high),
        se=float(se),
        df=df,
        n=n,
        n_clusters=int(g),
        binary=bool(binary),
        method=method,
    )


# -- multiple comparisons -------------------------------------------------------------------


def adjust_pvalues(p_values: Sequence[float], method: str = "holm") -> list[float]:
    """Family-wise (Holm, Bonferroni) or false-discovery-rate (Benjamini-Hochberg) adjusted
    p-values, as `statsmodels.stats.multitest.multipletests(...)[1]`. NaNs stay NaN and do not
    count as tests."""
    if method not in CORRECTIONS:
        raise ValueError(f"unknown correction {method!r}; choose one of {', '.join(CORRECTIONS)}")
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    q = p[ok]
    m = q.size
    if m == 0:
        return out.tolist()
    if method == "none":
        adj = q.copy()
    elif method == "bonferroni":
        adj = np.minimum(1.0, q * m)
    elif method == "holm":
        order = np.argsort(q, kind="mergesort")
        steps = np.maximum.accumulate((m - np.arange(m)) * q[order])
        adj = np.empty(m)
        adj[order] = np.minimum(1.0, steps)
    else:  # Benjamini-Hochberg
        order = np.argsort(q, kind="mergesort")
        scaled = q[order] * m / np.arange(1, m + 1)
        steps = np.minimum.accumulate(scaled[::-1])[::-1]
        adj = np.empty(m)
        adj[order] = np.minimum(1.0, steps)
    out[ok] = adj
    return out.tolist()


# -- signal and noise (arXiv:2508.13144) -----------------------------------------------------


def relative_dispersion(values: Sequence[float]) -> float:
    """Signal: the largest gap between any two models' scores, relative to their mean."""
    x = _as_array(values)
    if x.size < 2:
        return float("nan")
    mean = abs(float(x.mean()))
    return float((x.max() - x.min()) / mean) if mean > 0 else float("inf")


def relative_std(values: Sequence[float]) -> float:
    """Noise: the standard deviation (ddof=1) of one run's last checkpoints, relative to their
    mean."""
    x = _as_array(values)
    if x.size < 2:
        return float("nan")
    mean = abs(float(x.mean()))
    sd = float(x.std(ddof=1))
    if mean == 0:
        return 0.0 if sd == 0 else float("inf")
    return sd / mean


def signal_to_noise(signal: float, noise: float) -> float:
    if math.isnan(signal) or math.isnan(noise):
        return float("nan")
    if noise == 0:
        return float("inf") if signal > 0 else float("nan")
    return signal / noise
