"""Signal and noise of a benchmark, after Heineman et al., "Signal and Noise"
(arXiv:2508.13144): the spread between models relative to the spread within one run."""

from __future__ import annotations

import math
from collections.abc import Sequence

from evalkit.stats.sampling import as_array


def relative_dispersion(values: Sequence[float]) -> float:
    """Signal: the largest gap between any two models' scores, relative to their mean."""
    x = as_array(values)
    if x.size < 2:
        return float("nan")
    mean = abs(float(x.mean()))
    return float((x.max() - x.min()) / mean) if mean > 0 else float("inf")


def relative_std(values: Sequence[float]) -> float:
    """Noise: the standard deviation (ddof=1) of one run's last checkpoints, relative to their
    mean."""
    x = as_array(values)
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
