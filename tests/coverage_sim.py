"""Seeded coverage simulations of evalkit's intervals, shared by tests/test_stats_coverage.py
(few replications, fast) and benchmarks/stats_coverage.py (many, for docs/decisions.md).

Every number goes through evalkit's own functions; where an interval depends on the data only
through counts (0/1 scores, paired 0/1 deltas), each distinct count is evaluated once and the
coverage is summed over the binomial/multinomial distribution or over the simulated counts.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from evalkit import stats as S

PS = (0.02, 0.05, 0.3, 0.5, 0.95)
NS = (10, 20, 100, 1000)


def _binom_pmf(n: int, p: float) -> np.ndarray:
    k = np.arange(n + 1)
    logc = np.array([math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in k])
    return np.exp(logc + k * math.log(p) + (n - k) * math.log1p(-p))


def binary_score_coverage(n: int, p: float, method: str = "evalkit") -> float:
    """Exact coverage (sum over all n + 1 outcomes) of the interval of a mean of n 0/1 items."""
    pmf = _binom_pmf(n, p)
    cover = 0.0
    for k in range(n + 1):
        if pmf[k] < 1e-15:
            continue
        values = np.r_[np.ones(k), np.zeros(n - k)]
        if method == "evalkit":
            ci = S.mean_interval(values)
        else:  # the percentile bootstrap every score used before
            ci = S.percentile_mean_ci(values, resamples=1000, seed=k)
        cover += pmf[k] * (ci.low <= p <= ci.high)
    return float(cover)


def paired_binary_coverage(
    n: int, p: float, rho: float, shift: float, reps: int, seed: int
) -> tuple[float, float]:
    """Simulated coverage of the paired 0/1 delta interval (Bonett-Price), and the expected
    number of discordant pairs. A ~ Bernoulli(p), B ~ Bernoulli(p + shift), correlation rho."""
    pa, pb = p, min(max(p + shift, 0.0), 1.0)
    p11 = pa * pb + rho * math.sqrt(pa * (1 - pa) * pb * (1 - pb))
    p10, p01 = pa - p11, pb - p11
    cells = np.array([p11, p10, p01, 1 - p11 - p10 - p01])
    cells = np.clip(cells, 0, None) / np.clip(cells, 0, None).sum()
    counts = np.random.default_rng(seed).multinomial(n, cells, size=reps)
    truth = pb - pa
    hits = 0
    cache: dict[tuple[int, int, int], bool] = {}
    for both, a_only, b_only, _ in counts:
        key = (int(both), int(a_only), int(b_only))
        if key not in cache:
            a = np.r_[np.ones(both + a_only), np.zeros(b_only + n - both - a_only - b_only)]
            b = np.r_[
                np.ones(both),
                np.zeros(a_only),
                np.ones(b_only),
                np.zeros(a.size - both - a_only - b_only),
            ]
            d = S.paired_delta(a, b)
            cache[key] = d.low <= truth <= d.high
        hits += cache[key]
    return hits / reps, n * float(cells[1] + cells[2])


CONTINUOUS: dict[str, tuple[Callable[[np.random.Generator, int], np.ndarray], float]] = {
    # p_correct-like: mass at both ends
    "beta(0.5,0.5)": (lambda r, n: r.beta(0.5, 0.5, n), 0.5),
    # p_correct of a weak model: most mass near 0, a long right tail
    "beta(0.3,3)": (lambda r, n: r.beta(0.3, 3.0, n), 0.3 / 3.3),
    # bits-per-byte-like: positive, right-skewed
    "lognormal(0,0.5)": (lambda r, n: r.lognormal(0.0, 0.5, n), math.exp(0.125)),
    "exponential(1)": (lambda r, n: r.exponential(1.0, n), 1.0),
    # very skewed (skewness 6.2): the studentized bootstrap's known weak spot at small n
    "lognormal(0,1)": (lambda r, n: r.lognormal(0.0, 1.0, n), math.exp(0.5)),
}


def continuous_score_coverage(
    dist: str, n: int, reps: int, seed: int, resamples: int = 999, method: str = "evalkit"
) -> float:
    gen, mu = CONTINUOUS[dist]
    rng = np.random.default_rng(seed)
    hits = 0
    for r in range(reps):
        x = gen(rng, n)
        if method == "evalkit":
            ci = S.mean_interval(x, resamples=resamples, seed=r)
        else:
            ci = S.percentile_mean_ci(x, resamples=resamples, seed=r)
        hits += ci.low <= mu <= ci.high
    return hits / reps


def clustered_coverage(binary: bool, clustered: bool, reps: int, seed: int) -> float:
    """25 clusters of 8 items sharing a cluster effect; the interval with or without clusters."""
    rng = np.random.default_rng(seed)
    g, m = 25, 8
    labels = np.repeat(np.arange(g), m)
    truth = 0.3 if binary else 0.5
    hits = 0
    for r in range(reps):
        if binary:
            rate = np.clip(rng.beta(0.6, 1.4, g), 0, 1)[labels]  # mean 0.3, strongly clustered
            x = (rng.random(g * m) < rate).astype(float)
        else:
            x = rng.normal(0.5, 0.15, g)[labels] + rng.normal(0, 0.05, g * m)
        ci = S.mean_interval(x, labels if clustered else None, resamples=500, seed=r)
        hits += ci.low <= truth <= ci.high
    return hits / reps
