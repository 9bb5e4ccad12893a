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
    low, high = percentile_interval(dist, level)
    low, high = min(low, delta), max(high, delta)
    if binary:
        d, labels = smoothed_differences(x, y, clusters)
        se = mean_se(d, labels)
    else:
        se = mean_se(y - x, clusters)
        if not se > 0:
            # Identical runs: no paired variance to measure; fall back to treating the runs
            # as independent, which overstates the MDE rather than report a meaningless 0.
            se = math.sqrt(mean_se(x, clusters) ** 2 + mean_se(y, clusters) ** 2)
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
        mde=mde(se, alpha, power) if math.isfinite(se) else float("nan"),
        n=int(x.size),
        n_clusters=int(g),
        level=level,
        binary=binary,
    )
    return result, dist


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
