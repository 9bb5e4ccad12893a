"""Attribution statistics on simulated mix sweeps with known slice effects."""

from __future__ import annotations

import numpy as np
import pytest

from evalkit.analysis.attribute import (
    LN2,
    AttributeOptions,
    bootstrap_effects,
    family_effects,
    identifiability,
    log_shares,
)

SLICES = ("web", "arithmetic", "code", "filler")
# True log-contrast effects (they sum to zero), in score units per unit of log-share.
TRUE = np.array([-0.04, 0.10, -0.06, 0.0])


def _design(rng: np.random.Generator, runs: int = 12, items: int = 100) -> tuple[np.ndarray, ...]:
    """Shares from a log-normal mix sweep; per-item scores with realistic noise: item
    difficulty, items that respond to the mix differently, run (seed) noise, and noisy cells."""
    raw = np.exp(rng.normal(0, 0.6, size=(runs, len(SLICES))))
    shares = raw / raw.sum(axis=1, keepdims=True)
    z = np.log(shares)
    difficulty = rng.normal(0.5, 0.2, size=items)
    slopes = rng.normal(0, 0.05, size=(items, len(SLICES)))
    slopes -= slopes.mean(axis=1, keepdims=True)
    y = (
        difficulty[None, :]
        + z @ (TRUE[:, None] + slopes.T)
        + rng.normal(0, 0.02, size=runs)[:, None]
        + rng.normal(0, 0.3, size=(runs, items))
    )
    return shares, y


def test_intervals_cover_true_effects_at_nominal_rate() -> None:
    rng = np.random.default_rng(0)
    hits = []
    for d in range(200):
        shares, y = _design(rng)
        _, draws = bootstrap_effects(y, log_shares(shares), 1e-3, 200, rng, ref=d % 4)
        lo, hi = np.quantile(draws, [0.025, 0.975], axis=0)
        hits.append((lo <= TRUE) & (hi >= TRUE))
    coverage = float(np.mean(hits))
    assert abs(coverage - 0.95) <= 0.03, coverage


def test_permuted_slice_labels_give_no_effects() -> None:
    rng = np.random.default_rng(1)
    options = AttributeOptions(resamples=200)
    significant, estimates = 0, []
    for _ in range(40):
        shares, y = _design(rng)
        shuffled = shares[rng.permutation(len(shares))]  # scores no longer match their mix
        effects = family_effects("f", y, shuffled, SLICES, options, rng)
        significant += sum(e.significant for e in effects)
        estimates.extend(e.effect for e in effects if e.effect is not None)
    assert significant / (40 * len(SLICES)) <= 0.10
    # Unpermuted, the arithmetic effect is 0.10 * ln 2 = 0.069 per doubling.
    assert abs(float(np.mean(estimates))) < 0.01


def test_true_effects_are_found_and_the_null_slice_is_not() -> None:
    rng = np.random.default_rng(2)
    shares, y = _design(rng, runs=30)
    effects = {e.slice: e for e in family_effects("f", y, shares, SLICES, AttributeOptions(), rng)}
    assert effects["arithmetic"].significant and effects["arithmetic"].ci_low > 0
    assert effects["code"].significant and effects["code"].ci_high < 0
    assert not effects["filler"].significant
    assert effects["arithmetic"].effect == pytest.approx(0.10 * LN2, abs=0.03)


def test_collinear_or_constant_slices_are_not_identifiable() -> None:
    rng = np.random.default_rng(3)
    shares, y = _design(rng)
    # code always twice filler: only their sum's effect is in the data.
    tied = shares.copy()
    total = tied[:, 2] + tied[:, 3]
    tied[:, 2], tied[:, 3] = total * 2 / 3, total / 3
    reasons = identifiability(log_shares(tied), 0.05)
    assert reasons[2] == reasons[3] == "collinear with other slices"
    assert reasons[0] is None and reasons[1] is None
    effects = family_effects("f", y, tied, SLICES, AttributeOptions(resamples=200), rng)
    for e in effects[2:]:
        assert not e.identifiable and e.effect is None and e.ci_low is None
    # A slice held at one share says nothing about its effect.
    fixed = shares.copy()
    fixed[:, 0] = 0.5
    fixed[:, 1:] = shares[:, 1:] / shares[:, 1:].sum(axis=1, keepdims=True) * 0.5
    assert identifiability(log_shares(fixed), 0.05)[0] == "share barely varies"


def test_results_do_not_depend_on_the_reference_slice() -> None:
    shares, y = _design(np.random.default_rng(4))
    results = []
    for ref in SLICES:
        options = AttributeOptions(reference=ref, resamples=200)
        effects = family_effects("f", y, shares, SLICES, options, np.random.default_rng(5))
        results.append([(e.effect, e.ci_low, e.ci_high) for e in effects])
    base = np.array(results[0], dtype=float)
    for other in results[1:]:
        np.testing.assert_allclose(np.array(other, dtype=float), base, rtol=1e-7, atol=1e-10)


def _mix_shares() -> np.ndarray:
    """The shipped 3x3 mix design (examples/checkpoints/mix-a*-k*): tokens per slice."""
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[1] / "examples" / "checkpoints"
    rows = []
    for d in sorted(root.glob("mix-a*-k*")):
        prov = yaml.safe_load((d / "provenance.yaml").read_text())
        rows.append([float(s["tokens"]) for s in prov["slices"]])
    tokens = np.array(rows)
    return tokens / tokens.sum(axis=1, keepdims=True)


def test_intervals_on_the_shipped_3x3_design_are_t_based_and_cover() -> None:
    from evalkit.analysis.attribute import SMALL_DOF, residual_dof

    shares = _mix_shares()
    runs, k = shares.shape
    assert (runs, k) == (9, 4) and residual_dof(runs, k) < SMALL_DOF
    z = log_shares(shares)
    truth = np.array([0.10, 0.05, 0.0, -0.15])  # arithmetic, kv, code (held fixed), prose
    rng = np.random.default_rng(21)
    options = AttributeOptions(resamples=300)
    hits, old_hits = [], []
    for _ in range(150):
        # Little run-to-run noise and many items: where the percentile bootstrap over 9 runs
        # dipped below nominal.
        items = 400
        y = (
            rng.normal(0.5, 0.2, items)[None, :]
            + (z @ truth)[:, None]
            + rng.normal(0, 0.001, runs)[:, None]
            + rng.normal(0, 0.3, (runs, items))
        )
        effects = family_effects(
            "f", y, shares, ("arithmetic", "kv", "code", "prose"), options, rng
        )
        for e, g in zip(effects, truth, strict=True):
            if e.identifiable:
                hits.append(e.ci_low <= g * LN2 <= e.ci_high)
        _, draws = bootstrap_effects(y, z, 1e-3, 300, rng)
        lo, hi = np.quantile(draws, [0.025, 0.975], axis=0)
        old_hits.extend(((lo <= truth) & (truth <= hi))[[0, 1, 3]])
    coverage = float(np.mean(hits))
    assert 0.94 <= coverage <= 0.998, coverage
    assert coverage >= float(np.mean(old_hits))
