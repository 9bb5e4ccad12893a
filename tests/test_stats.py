"""Statistics against scipy/statsmodels references, and coverage by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower

from evalkit import stats as S

# -- exact McNemar ---------------------------------------------------------------------------

TABLES = [(0, 0), (3, 0), (0, 5), (4, 9), (12, 12), (30, 45), (200, 260), (1, 17)]


@pytest.mark.parametrize(("a_only", "b_only"), TABLES)
def test_mcnemar_matches_scipy_binomtest_and_statsmodels(a_only: int, b_only: int) -> None:
    both, neither = 37, 21
    a = np.array([1] * a_only + [0] * b_only + [1] * both + [0] * neither)
    b = np.array([0] * a_only + [1] * b_only + [1] * both + [0] * neither)
    ours = S.mcnemar_exact(a, b)
    assert (ours.a_only, ours.b_only) == (a_only, b_only)
    table = [[neither, b_only], [a_only, both]]
    ref_sm = sm_mcnemar(table, exact=True).pvalue
    assert ours.p_value == pytest.approx(ref_sm, rel=1e-9, abs=1e-15)
    if a_only + b_only:
        ref_sp = sps.binomtest(min(a_only, b_only), a_only + b_only, 0.5).pvalue
        assert ours.p_value == pytest.approx(ref_sp, rel=1e-9, abs=1e-15)
    else:
        assert ours.p_value == 1.0


def test_mcnemar_rejects_non_binary() -> None:
    with pytest.raises(ValueError):
        S.mcnemar_exact([0.5, 1.0], [1.0, 0.0])


# -- bootstrap against scipy.stats.bootstrap -----------------------------------------------


def test_mean_ci_matches_scipy_percentile_bootstrap() -> None:
    x = np.random.default_rng(1).gamma(2.0, 1.0, size=60)
    ours = S.percentile_mean_ci(x, resamples=20_000, seed=3)
    ref = sps.bootstrap(
        (x,), np.mean, n_resamples=20_000, method="percentile", random_state=4
    ).confidence_interval
    assert ours.value == pytest.approx(x.mean())
    # Two independent Monte Carlo estimates of the same quantiles.
    assert ours.low == pytest.approx(ref.low, abs=0.03)
    assert ours.high == pytest.approx(ref.high, abs=0.03)


def test_paired_bootstrap_matches_scipy_paired_bootstrap() -> None:
    rng = np.random.default_rng(2)
    a = rng.normal(0.5, 0.2, size=80)
    b = a + rng.normal(0.03, 0.05, size=80)  # strongly paired
    dist = S.paired_bootstrap_distribution(a, b, resamples=20_000, seed=5)
    low, high = S.percentile_interval(dist)
    ref = sps.bootstrap(
        (b, a),
        lambda x, y, axis=-1: np.mean(x - y, axis=axis),
        paired=True,
        n_resamples=20_000,
        method="percentile",
        random_state=6,
    ).confidence_interval
    assert low == pytest.approx(ref.low, abs=0.002)
    assert high == pytest.approx(ref.high, abs=0.002)
    # Pairing matters: the unpaired interval would be ~4x wider.
    assert high - low < 0.5 * (S.mean_ci(b).high - S.mean_ci(b).low)


def test_cluster_bootstrap_with_singleton_clusters_is_the_item_bootstrap() -> None:
    x = np.random.default_rng(3).normal(size=40)
    plain = S.bootstrap_means(x, None, resamples=500, seed=9)
    single = S.bootstrap_means(x, [f"c{i:02d}" for i in range(40)], resamples=500, seed=9)
    np.testing.assert_allclose(plain, single)


# -- permutation test against scipy.stats.permutation_test -----------------------------------


def _scipy_paired_permutation(a: np.ndarray, b: np.ndarray, n: int) -> float:
    return float(
        sps.permutation_test(
            (b, a),
            lambda x, y, axis=-1: np.mean(x - y, axis=axis),
            permutation_type="samples",
            n_resamples=n,
            alternative="two-sided",
            random_state=0,
        ).pvalue
    )


def test_exact_permutation_test_equals_scipy() -> None:
    rng = np.random.default_rng(4)
    a = rng.normal(size=12)
    b = a + rng.normal(0.4, 1.0, size=12)
    ours = S.permutation_test(a, b, resamples=10_000)
    assert ours.exact
    assert ours.p_value == pytest.approx(_scipy_paired_permutation(a, b, 10_000), rel=1e-9)


def test_monte_carlo_permutation_test_is_close_to_scipy() -> None:
    rng = np.random.default_rng(5)
    a = rng.normal(size=60)
    b = a + rng.normal(0.25, 1.0, size=60)
    ours = S.permutation_test(a, b, resamples=20_000, seed=1)
    assert not ours.exact
    assert ours.p_value == pytest.approx(_scipy_paired_permutation(a, b, 20_000), abs=0.01)


# -- multiple comparisons against statsmodels ------------------------------------------------

PVALUES = [0.001, 0.04, 0.03, 0.2, 0.012, 0.9, 0.049, 0.5]


@pytest.mark.parametrize(
    ("ours", "theirs"), [("holm", "holm"), ("bh", "fdr_bh"), ("bonferroni", "bonferroni")]
)
def test_corrections_match_statsmodels(ours: str, theirs: str) -> None:
    ref = multipletests(PVALUES, method=theirs)[1]
    np.testing.assert_allclose(S.adjust_pvalues(PVALUES, ours), ref, rtol=1e-12)


def test_corrections_ignore_nan() -> None:
    adj = S.adjust_pvalues([0.01, float("nan"), 0.04], "holm")
    assert math.isnan(adj[1])
    np.testing.assert_allclose([adj[0], adj[2]], multipletests([0.01, 0.04], method="holm")[1])


# -- minimum detectable effect against statsmodels' power solver -----------------------------


@pytest.mark.parametrize(
    ("n", "alpha", "power"), [(50, 0.05, 0.8), (400, 0.01, 0.9), (20, 0.1, 0.8)]
)
def test_mde_matches_statsmodels_power(n: int, alpha: float, power: float) -> None:
    sd = 0.37
    # One-sample z-test (ratio=0): effect size in units of the per-item sd.
    es = NormalIndPower().solve_power(nobs1=n, alpha=alpha, power=power, ratio=0)
    assert S.mde(sd / math.sqrt(n), alpha, power) == pytest.approx(es * sd, rel=1e-4)


def test_cluster_robust_se_reduces_to_plain_se_and_grows_with_clustering() -> None:
    rng = np.random.default_rng(6)
    x = rng.normal(size=200)
    assert S.mean_se(x) == pytest.approx(x.std(ddof=1) / math.sqrt(200))
    # 20 clusters of 10 items sharing a cluster effect: the robust se is much larger.
    clusters = np.repeat(np.arange(20), 10)
    y = rng.normal(size=20)[clusters] + 0.3 * rng.normal(size=200)
    assert S.mean_se(y, clusters) > 2 * S.mean_se(y)


# -- coverage by simulation ------------------------------------------------------------------


def test_mean_ci_covers_a_bernoulli_rate_about_95_percent() -> None:
    rng = np.random.default_rng(7)
    p, n, reps = 0.3, 150, 1000
    hits = 0
    for r in range(reps):
        ci = S.mean_ci(rng.random(n) < p, resamples=1000, seed=r)
        hits += ci.low <= p <= ci.high
    assert 0.93 <= hits / reps <= 0.97, hits / reps


def test_paired_delta_ci_covers_the_true_difference_about_95_percent() -> None:
    rng = np.random.default_rng(8)
    n, reps = 200, 1000
    # Correlated Bernoulli pairs: shared item difficulty, B better by 5 points on average.
    hits = 0
    for r in range(reps):
        difficulty = rng.random(n)
        a = (rng.random(n) < 0.4 + 0.5 * (difficulty - 0.5)).astype(float)
        b = (rng.random(n) < 0.45 + 0.5 * (difficulty - 0.5)).astype(float)
        t = S.paired_compare(a, b, resamples=1000, seed=r)
        hits += t.low <= 0.05 <= t.high
    assert 0.93 <= hits / reps <= 0.97, hits / reps


def test_cluster_bootstrap_keeps_coverage_where_the_item_bootstrap_loses_it() -> None:
    rng = np.random.default_rng(9)
    reps, g, m = 400, 25, 8  # 25 sources with 8 questions each, strongly correlated
    clusters = np.repeat(np.arange(g), m)
    item_hits = cluster_hits = 0
    for r in range(reps):
        shift = rng.normal(0.0, 0.15, size=g)[clusters]
        d = np.clip(rng.normal(0.02, 0.05, size=g * m) + shift, -1, 1)
        a = np.full(g * m, 0.5)
        b = a + d
        truth = 0.02
        low, high = S.percentile_interval(S.paired_bootstrap_distribution(a, b, None, 800, r))
        item_hits += low <= truth <= high
        low, high = S.percentile_interval(S.paired_bootstrap_distribution(a, b, clusters, 800, r))
        cluster_hits += low <= truth <= high
    assert item_hits / reps < 0.75
    assert 0.90 <= cluster_hits / reps <= 0.98


# -- small-sample honesty, SNR ---------------------------------------------------------------


def test_zero_disagreements_on_few_items_do_not_give_a_degenerate_interval() -> None:
    a = np.ones(20)
    t = S.paired_compare(a, a)
    assert t.delta == 0 and t.p_value == 1.0
    assert t.low < -0.05 and t.high > 0.05  # 20 items cannot rule out a 5-point change
    big = S.paired_compare(np.ones(2000), np.ones(2000))
    assert big.low > -0.01 and big.high < 0.01


def test_signal_and_noise_by_hand() -> None:
    assert S.relative_dispersion([0.5, 0.6, 0.7]) == pytest.approx(0.2 / 0.6)
    assert S.relative_std([0.5, 0.52, 0.48]) == pytest.approx(0.02 / 0.5)
    assert S.signal_to_noise(0.4, 0.04) == pytest.approx(10.0)
