"""Statistics for decisions: intervals, paired tests, corrections, power, signal and noise.

This package's namespace is its API (`from evalkit import stats; stats.mean_interval(...)`);
the work is divided by question:

- `sampling`: the shared building blocks (per-item arrays, clusters, cluster-robust standard
  errors, normal and t quantiles, the (cluster) bootstrap and the studentized bootstrap);
- `intervals`: one run's scores (Wilson for 0/1 items, bootstrap-t for continuous ones,
  percentile bootstrap for other aggregates, MOVER for a mean of independent estimates);
- `paired`: B against A on shared items (Bonett-Price / paired t, the paired bootstrap,
  `paired_compare`);
- `exact`: exact McNemar and the sign-flip permutation test;
- `power`: minimum detectable effect and the items needed for a smaller one;
- `multiple`: Holm, Bonferroni and Benjamini-Hochberg across the tasks of a suite;
- `noise`: the signal and noise of Heineman et al. (arXiv:2508.13144).

Every estimate is seeded, so runs are reproducible. Nothing here needs scipy: normal quantiles
come from the standard library and binomial tails are summed in log space.
"""

from evalkit.stats.exact import McNemar, Permutation, mcnemar_exact, permutation_test
from evalkit.stats.intervals import (
    CI_BONETT_PRICE,
    CI_BOOTSTRAP_T,
    CI_CLUSTER_BOOTSTRAP_T,
    CI_CLUSTER_PERCENTILE,
    CI_DEGENERATE,
    CI_NONE,
    CI_PAIRED_T,
    CI_PERCENTILE,
    CI_WILSON,
    CI_WILSON_CLUSTER,
    Interval,
    bootstrap_ci,
    mean_ci,
    mean_interval,
    mover_mean,
    percentile_mean_ci,
    wilson_interval,
)
from evalkit.stats.multiple import CORRECTIONS, Correction, adjust_pvalues
from evalkit.stats.noise import relative_dispersion, relative_std, signal_to_noise
from evalkit.stats.paired import (
    SE_FLOOR_REL,
    TESTS,
    PairedDelta,
    PairedTest,
    TestName,
    bootstrap_p_value,
    paired_analysis,
    paired_bootstrap_distribution,
    paired_compare,
    paired_delta,
    se_floor,
    smoothed_differences,
)
from evalkit.stats.power import DEFAULT_POWER, items_needed, mde
from evalkit.stats.sampling import (
    BINARY_METRICS,
    DEFAULT_LEVEL,
    DEFAULT_RESAMPLES,
    bootstrap_means,
    cluster_codes,
    design_effect,
    is_binary,
    is_binary_metric,
    mean_se,
    percentile_interval,
    studentized_bootstrap,
    t_cdf_upper,
    t_quantile,
)

__all__ = [
    "BINARY_METRICS",
    "CI_BONETT_PRICE",
    "CI_BOOTSTRAP_T",
    "CI_CLUSTER_BOOTSTRAP_T",
    "CI_CLUSTER_PERCENTILE",
    "CI_DEGENERATE",
    "CI_NONE",
    "CI_PAIRED_T",
    "CI_PERCENTILE",
    "CI_WILSON",
    "CI_WILSON_CLUSTER",
    "CORRECTIONS",
    "DEFAULT_LEVEL",
    "DEFAULT_POWER",
    "DEFAULT_RESAMPLES",
    "SE_FLOOR_REL",
    "TESTS",
    "Correction",
    "Interval",
    "McNemar",
    "PairedDelta",
    "PairedTest",
    "Permutation",
    "TestName",
    "adjust_pvalues",
    "bootstrap_ci",
    "bootstrap_means",
    "bootstrap_p_value",
    "cluster_codes",
    "design_effect",
    "is_binary",
    "is_binary_metric",
    "items_needed",
    "mcnemar_exact",
    "mde",
    "mean_ci",
    "mean_interval",
    "mean_se",
    "mover_mean",
    "paired_analysis",
    "paired_bootstrap_distribution",
    "paired_compare",
    "paired_delta",
    "percentile_interval",
    "percentile_mean_ci",
    "permutation_test",
    "relative_dispersion",
    "relative_std",
    "se_floor",
    "signal_to_noise",
    "smoothed_differences",
    "studentized_bootstrap",
    "t_cdf_upper",
    "t_quantile",
    "wilson_interval",
]
