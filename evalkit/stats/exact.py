"""Exact paired tests: McNemar's binomial test of the discordant pairs, and the sign-flip
permutation test (exact when every sign pattern fits in the resamples, Monte Carlo else).
Binomial tails are summed in log space: no scipy."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evalkit.stats.sampling import as_array, cluster_codes, cluster_sums, is_binary


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
    x, y = as_array(a, "a"), as_array(b, "b")
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
    d = as_array(b, "b") - as_array(a, "a")
    if d.size == 0:
        raise ValueError("cannot test over no items")
    codes, g = cluster_codes(clusters, d.size)
    sums, _ = cluster_sums(d, codes, g)
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
