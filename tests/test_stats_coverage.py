"""Coverage of evalkit's intervals, measured (seeded) on the grid of issue 14, with the old
percentile bootstrap as the negative control that fails where the issue said it did.

0/1 scores: exact coverage (every outcome enumerated). The continuity-corrected Wilson interval
is conservative: it never covers less than the nominal 0.95 on this grid, and it covers more
where the binomial is too discrete for any interval to sit at 0.95 (n * min(p, 1 - p) < 10: at
n = 10, p = 0.02 there are only 11 possible outcomes, 82% of them 0). There we require >= 0.95
and <= 0.995 (the largest value exact enumeration gives for this interval at n >= 10).
"""

from __future__ import annotations

import numpy as np
import pytest
from coverage_sim import (
    NS,
    PS,
    binary_score_coverage,
    clustered_coverage,
    continuous_score_coverage,
    paired_binary_coverage,
)

from evalkit import stats as S


@pytest.mark.parametrize("n", NS)
def test_binary_score_intervals_hold_their_coverage(n: int) -> None:
    for p in PS:
        cover = binary_score_coverage(n, p)
        assert cover >= 0.95 - 1e-9, (n, p, cover)
        regular = n * min(p, 1 - p) >= 10
        assert cover <= (0.97 if regular else 0.995), (n, p, cover)


def test_the_old_percentile_bootstrap_fails_near_zero() -> None:
    # Issue 14: 0.65 at p = 0.05, n = 20; the negative control for the test above.
    assert binary_score_coverage(20, 0.05, method="percentile") < 0.7
    assert binary_score_coverage(10, 0.02, method="percentile") < 0.3
    ci = S.mean_interval(np.zeros(16))
    assert ci.low == 0 and ci.high > 0.15 and ci.method == S.CI_WILSON  # not [0, 0]
    assert S.percentile_mean_ci(np.zeros(16)).high == 0


@pytest.mark.parametrize("n", NS)
def test_paired_binary_delta_intervals_hold_their_coverage(n: int) -> None:
    for p in PS:
        for rho in (0.0, 0.5):
            cover, discordant = paired_binary_coverage(n, p, rho, 0.0, reps=1500, seed=n)
            assert cover >= 0.93, (n, p, rho, cover)
            # With few expected discordant pairs most samples have none, and an interval that
            # does not collapse then covers 0: the excess is that mass, not a wide interval.
            if discordant >= 10:
                assert cover <= 0.97, (n, p, rho, cover)
    for n_, p in ((20, 0.3), (100, 0.5), (1000, 0.05)):
        cover, _ = paired_binary_coverage(n_, p, 0.3, 0.05, reps=1500, seed=7)
        assert 0.93 <= cover <= 0.985, (n_, p, cover)


def test_no_discordant_pair_does_not_collapse() -> None:
    a = np.r_[np.ones(10), np.zeros(10)]
    d = S.paired_delta(a, a)
    assert d.low < -0.05 and d.high > 0.05 and d.method == S.CI_BONETT_PRICE
    assert S.paired_compare(np.ones(10), np.ones(10)).low < -0.1


@pytest.mark.parametrize(
    "dist", ["beta(0.5,0.5)", "beta(0.3,3)", "lognormal(0,0.5)", "exponential(1)"]
)
def test_continuous_score_intervals_hold_at_small_n(dist: str) -> None:
    # 300 replications: the Monte Carlo SE is 0.013, so 0.93-0.97 widens by two of them.
    for n in (20, 100):
        cover = continuous_score_coverage(dist, n, reps=300, seed=n, resamples=600)
        assert 0.905 <= cover <= 0.985, (dist, n, cover)


def test_percentile_bootstrap_undercovers_a_skewed_metric_where_bootstrap_t_holds() -> None:
    old = continuous_score_coverage("lognormal(0,1)", 20, reps=300, seed=1, method="percentile")
    new = continuous_score_coverage("lognormal(0,1)", 20, reps=300, seed=1)
    assert old < 0.9 and new > old + 0.02


def test_clustered_items_need_the_cluster_method() -> None:
    for binary in (True, False):
        naive = clustered_coverage(binary, clustered=False, reps=200, seed=3)
        robust = clustered_coverage(binary, clustered=True, reps=200, seed=3)
        assert naive < 0.8, (binary, naive)
        assert 0.9 <= robust <= 0.99, (binary, robust)


def test_interval_methods_are_recorded() -> None:
    assert S.mean_interval([0, 1, 1]).method == S.CI_WILSON
    assert S.mean_interval([0.2, 0.5, 0.9]).method == S.CI_BOOTSTRAP_T
    assert S.mean_interval([0.0, 1.0, 1.0], binary=False).method == S.CI_BOOTSTRAP_T
    assert S.mean_interval([1, 0, 1, 1], ["a", "a", "b", "b"]).method == S.CI_WILSON_CLUSTER
    assert S.mean_interval([0.5, 0.5, 0.5]).method == S.CI_DEGENERATE
    with pytest.raises(ValueError):
        S.mean_interval([0.5, 1.0], binary=True)


def test_wilson_matches_r_prop_test_and_statsmodels() -> None:
    # R: prop.test(1, 10)$conf.int (continuity-corrected Wilson)
    low, high = S.wilson_interval(1, 10)
    assert low == pytest.approx(0.005242302, abs=1e-8)
    assert high == pytest.approx(0.458846016, abs=1e-8)
    from statsmodels.stats.proportion import proportion_confint

    for k, n in ((0, 10), (3, 17), (50, 100), (999, 1000)):
        ref = proportion_confint(k, n, method="wilson")
        ours = S.wilson_interval(k, n, correct=False)
        assert ours == pytest.approx(ref, abs=1e-9)


def test_t_quantiles_match_scipy() -> None:
    from scipy import stats as sps

    for df in (3, 5, 10, 30, 200):
        for q in (0.9, 0.95, 0.975):
            assert S.t_quantile(q, df) == pytest.approx(sps.t.ppf(q, df), rel=2e-3)
        assert S.t_cdf_upper(2.1, df) == pytest.approx(sps.t.sf(2.1, df), rel=2e-3, abs=1e-5)


def test_family_means_combine_task_intervals_by_mover() -> None:
    # A family of three 0/1 tasks of 20 items each, one near 0 and one near 1.
    rng = np.random.default_rng(12)
    ps = np.array([0.05, 0.3, 0.95])
    truth = float(ps.mean())
    reps, hits = 1000, 0
    for _ in range(reps):
        cis = [S.mean_interval((rng.random(20) < p).astype(float)) for p in ps]
        fam = S.mover_mean(cis)
        hits += fam.low <= truth <= fam.high
        assert fam.low < fam.value or fam.value == 0
    assert 0.93 <= hits / reps <= 0.995, hits / reps
    all_zero = S.mover_mean([S.mean_interval(np.zeros(6)) for _ in range(4)])
    assert all_zero.value == 0 and all_zero.high > 0.1  # not the [0, 0] of the demo
