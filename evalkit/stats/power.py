"""How small a difference a comparison can see: the minimum detectable effect at a power,
and how many items it would take to see a smaller one."""

from __future__ import annotations

import math
from statistics import NormalDist

DEFAULT_POWER = 0.8


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


def compare_mde(se: float, alpha: float, power: float, n: int, binary: bool) -> float:
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
