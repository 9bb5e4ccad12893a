"""B against A on the items two runs share: the closed-form paired difference (Bonett-Price
for 0/1 outcomes, paired t else), the paired (cluster) bootstrap, and `paired_compare`, which
picks the test (exact McNemar, permutation or bootstrap) and reports delta, interval, p-value
and minimum detectable effect.

0/1 metrics get add-one smoothing of the differences (one pseudo-item that B wins and one that
A wins, as in the Agresti-Min / Bonett-Price intervals for paired proportions), so that 20 items
without a single disagreement do not produce the degenerate interval [0, 0].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from evalkit.stats.exact import mcnemar_exact, permutation_test
from evalkit.stats.intervals import CI_BONETT_PRICE, CI_PAIRED_T
from evalkit.stats.power import DEFAULT_POWER, compare_mde
from evalkit.stats.sampling import (
    DEFAULT_LEVEL,
    DEFAULT_RESAMPLES,
    as_array,
    bootstrap_means,
    cluster_codes,
    is_binary,
    mean_se,
    studentized_bootstrap,
    t_quantile,
)

TestName = Literal["auto", "bootstrap", "permutation", "mcnemar"]
TESTS: tuple[str, ...] = ("auto", "bootstrap", "permutation", "mcnemar")


def smoothed_differences(
    a: Any, b: Any, clusters: Sequence[Any] | None = None
) -> tuple[np.ndarray, list[Any] | None]:
    """b - a with one +1 and one -1 pseudo-difference appended (each its own cluster).

    For 0/1 metrics this is the add-one adjustment of the Agresti-Min and Bonett-Price
    intervals for paired proportions: it keeps intervals honest when few or no items disagree.
    """
    d = as_array(b, "b") - as_array(a, "a")
    out = np.concatenate([d, [1.0, -1.0]])
    if clusters is None:
        return out, None
    labels: list[Any] = [("item", str(c)) for c in clusters]
    return out, [*labels, ("pseudo", "+"), ("pseudo", "-")]


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
    x, y = as_array(a, "a"), as_array(b, "b")
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
    x, y = as_array(a, "a"), as_array(b, "b")
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
        mde=compare_mde(se, alpha, power, int(x.size), binary),
        n=int(x.size),
        n_clusters=int(g),
        level=level,
        binary=binary,
        ci_method=method,
    )
    return result, dist


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
    x, y = as_array(a, "a"), as_array(b, "b")
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
    q = t_quantile(1 - (1 - level) / 2, df)
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
