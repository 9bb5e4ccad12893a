"""The clustered 0/1 interval at the boundary (issue 16, label control): acc[flip_100] = 0/80
(16 test words x 5 demonstration seeds) reads [0.000, 0.241]. Why, and that it is right.

With no item varying, the within-cluster correlation cannot be estimated, so the design effect
is its worst case, the mean cluster size (5): the effective n is the number of clusters (16)
and the interval is the continuity-corrected Wilson interval of 0/16. Treating the 80 items as
independent would give [0, 0.057], which fails when a cluster's items move together: checked
here by EXACT enumeration (no simulation) of perfectly correlated clusters."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evalkit import stats as S

G, M = 16, 5  # icl_flipped_labels: 16 test documents, 5 demonstration seeds each
CLUSTERS = np.repeat(np.arange(G), M)


def test_zero_of_80_in_16_clusters_is_wilson_at_the_number_of_clusters() -> None:
    iv = S.mean_interval(np.zeros(G * M), CLUSTERS)
    assert iv.method == S.CI_WILSON_CLUSTER
    assert S.design_effect(np.zeros(G * M), CLUSTERS) == M
    assert (iv.low, iv.high) == pytest.approx(S.wilson_interval(0, G))
    assert iv.high == pytest.approx(0.2407, abs=1e-4)
    # Conservative against the exact (Clopper-Pearson) bound of 0/16, 1 - 0.025^(1/16)...
    assert iv.high >= 1 - 0.025 ** (1 / G) == pytest.approx(0.2059, abs=1e-4)
    # ...and far wider than 0/80 taken as independent items.
    assert S.mean_interval(np.zeros(G * M)).high == pytest.approx(0.0571, abs=1e-4)


def _exact_coverage(p: float, clustered: bool) -> float:
    """Coverage of p when each cluster is all 1 with probability p, else all 0 (perfect
    within-cluster correlation): K positive clusters ~ Binomial(G, p), summed exactly."""
    total = 0.0
    for k in range(G + 1):
        x = np.zeros(G * M)
        x[: k * M] = 1.0
        iv = S.mean_interval(x, CLUSTERS if clustered else None)
        total += math.comb(G, k) * p**k * (1 - p) ** (G - k) * (iv.low <= p <= iv.high)
    return total


@pytest.mark.parametrize("p", [0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.9, 0.99])
def test_the_clustered_interval_covers_perfectly_correlated_clusters(p: float) -> None:
    assert _exact_coverage(p, clustered=True) >= 0.95


def test_the_item_interval_fails_on_the_same_clusters() -> None:
    """Negative control: the same data read as 80 independent items. At p = 0.1 all 16
    clusters are 0 with probability 0.9^16 = 0.185, and then [0, 0.057] misses p."""
    assert _exact_coverage(0.1, clustered=False) < 0.8
    assert abs(0.9**16 - 0.185) < 1e-3
