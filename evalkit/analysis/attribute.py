"""Attribute score differences to training-data slices (docs/provenance.md).

Two designs:

- **Ablation pairs** (a few runs): each run against the first, per task and family, paired on
  shared items with CIs (`compare_sides`), beside the difference in each slice's tokens/share.
- **Mix sweep** (many runs, RegMix-style): per task family, the run's mean per-item score is
  regressed on the log-contrast of slice shares, `y = b0 + sum_j g_j log s_j` with
  `sum_j g_j = 0` (Aitchison). It is fitted through additive log-ratios against a reference
  slice, and the ridge penalty is put on the whole `g` (the reference's `g_r = -sum` included)
  so neither the fit nor its penalty depends on which slice is the reference. Intervals come
  from a bootstrap that resamples runs and items together (crossed), so both run-to-run noise
  and the finite item sample count. A slice whose log-share barely varies, or whose variation
  other slices explain, is "not identifiable": the fit has no information about it, and no
  number is shown.

Effects are reported per doubling of a slice's share (relative to the others): `g_j * ln 2`, in
the units of the family's score (e.g. probability of the correct choice).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from evalkit import stats as S
from evalkit.analysis.compare import CompareOptions, Comparison, compare_sides, unique_labels
from evalkit.analysis.jsonsafe import json_safe
from evalkit.analysis.runs import RunSide, side_from_run
from evalkit.errors import EvalkitError
from evalkit.provenance import Provenance, manifest_provenance
from evalkit.store import RunData

# Per-item metrics tried in order when none is named. Continuous ones first (small checkpoints
# move them long before accuracy), and the gold answer's bits per byte before p_correct: a
# log-loss responds about linearly to log data (loss scaling), while p_correct saturates, and
# the misfit of a curved response leaks onto slices whose shares move with the driving one
# (the mix family's filler did, with p_correct; docs/provenance.md). Lower-is-better metrics
# are negated, so a positive effect always means better.
CONTINUOUS_METRICS = ("bpb", "p_correct", "acc_norm", "acc", "exact_match")
LN2 = math.log(2.0)


@dataclass(frozen=True)
class AttributeOptions:
    metric: str | None = None  # per-item metric; default: first of CONTINUOUS_METRICS present
    reference: str | None = None  # ALR reference slice; the results do not depend on it
    ridge: float = 1e-3  # penalty per run on sum_j g_j^2 (stabilises resamples; small: it biases)
    resamples: int = 1000
    level: float = 0.95
    min_log_sd: float = 0.05  # a slice's log-share (or its unexplained part) must vary this much
    seed: int = 0
    min_sweep_runs: int = 5  # fewer runs: ablation pairs against the first run instead

    def __post_init__(self) -> None:
        if not 0 < self.level < 1:
            raise EvalkitError("level must lie strictly between 0 and 1")
        if self.resamples < 100:
            raise EvalkitError("use at least 100 bootstrap resamples")
        if self.ridge < 0 or self.min_log_sd < 0:
            raise EvalkitError("ridge and min_log_sd must be >= 0")


@dataclass(frozen=True)
class SliceEffect:
    family: str
    slice: str
    # Score change per doubling of the slice's share; None when not identifiable.
    effect: float | None
    ci_low: float | None
    ci_high: float | None
    significant: bool
    identifiable: bool
    reason: str | None  # why not identifiable
    log_share_sd: float


@dataclass(frozen=True)
class SliceDiff:
    slice: str
    tokens_a: int
    tokens_b: int
    share_a: float
    share_b: float


@dataclass(frozen=True)
class AblationPair:
    a: str
    b: str
    slices: tuple[SliceDiff, ...]
    comparison: Comparison


@dataclass(frozen=True)
class SliceFitLink:
    """Across runs: how a slice's fit (bits per byte on its held-out docs) tracks a family."""

    slice: str
    family: str
    correlation: float | None  # Pearson r of (-bpb) with the family score; None: < 3 runs
    n_runs: int


@dataclass(frozen=True)
class AttributionReport:
    runs: tuple[str, ...]
    slices: tuple[str, ...]
    families: tuple[str, ...]
    shares: Mapping[str, Mapping[str, float]]  # run -> slice -> share
    family_scores: Mapping[str, Mapping[str, float]]  # run -> family -> mean score
    metrics: Mapping[str, str]  # task -> the per-item metric used
    effects: tuple[SliceEffect, ...]
    pairs: tuple[AblationPair, ...]
    slice_fit: Mapping[str, Mapping[str, float]]  # run -> slice -> bits per byte
    slice_fit_links: tuple[SliceFitLink, ...]
    options: AttributeOptions
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def effect(self, family: str, slice_name: str) -> SliceEffect:
        for e in self.effects:
            if e.family == family and e.slice == slice_name:
                return e
        raise KeyError((family, slice_name))

    def to_dict(self) -> dict[str, Any]:
        out = {
            "runs": list(self.runs),
            "slices": list(self.slices),
            "families": list(self.families),
            "shares": {r: dict(v) for r, v in self.shares.items()},
            "family_scores": {r: dict(v) for r, v in self.family_scores.items()},
            "metrics": dict(self.metrics),
            "effects": [asdict(e) for e in self.effects],
            "pairs": [
                {
                    "a": p.a,
                    "b": p.b,
                    "slices": [asdict(s) for s in p.slices],
                    "rows": [{**asdict(r), "call": r.call} for r in p.comparison.rows],
                }
                for p in self.pairs
            ],
            "slice_fit": {r: dict(v) for r, v in self.slice_fit.items()},
            "slice_fit_links": [asdict(s) for s in self.slice_fit_links],
            "options": asdict(self.options),
            "warnings": list(self.warnings),
        }
        result = json_safe(out)
        assert isinstance(result, dict)
        return result


# -- the regression ---------------------------------------------------------------------------


def log_shares(shares: np.ndarray) -> np.ndarray:
    """log of shares; a zero share becomes half the smallest positive share seen (log 0 has no
    place in a log-ratio; the floor is the usual multiplicative replacement)."""
    s = np.asarray(shares, dtype=float)
    if np.any(s < 0) or np.any(~np.isfinite(s)):
        raise EvalkitError("slice shares must be finite and >= 0")
    positive = s[s > 0]
    if positive.size == 0:
        raise EvalkitError("no slice has a positive share")
    return np.log(np.where(s > 0, s, positive.min() / 2))


def _alr(z: np.ndarray, ref: int) -> np.ndarray:
    others = [j for j in range(z.shape[-1]) if j != ref]
    return z[..., others] - z[..., [ref]]


def _to_gamma(beta: np.ndarray, ref: int) -> np.ndarray:
    """ALR coefficients (..., K-1) -> log-contrast coefficients (..., K), summing to zero."""
    k = beta.shape[-1] + 1
    gamma = np.empty((*beta.shape[:-1], k))
    others = [j for j in range(k) if j != ref]
    gamma[..., others] = beta
    gamma[..., ref] = -beta.sum(axis=-1)
    return gamma


def fit_log_contrast(z: np.ndarray, y: np.ndarray, ridge: float, ref: int = 0) -> np.ndarray:
    """Ridge log-contrast fit, batched: z (..., R, K) log-shares, y (..., R) -> g (..., K).

    Penalty `ridge * R * sum_j g_j^2` over all K slices, which in ALR coordinates is
    `beta' (I + 11') beta`: the same for every choice of `ref`.
    """
    x = _alr(z, ref)
    n = x.shape[-2]
    xc = x - x.mean(axis=-2, keepdims=True)
    yc = y - y.mean(axis=-1, keepdims=True)
    p = xc.shape[-1]
    penalty = ridge * n * (np.eye(p) + np.ones((p, p)))
    gram = np.swapaxes(xc, -1, -2) @ xc + penalty
    rhs = np.swapaxes(xc, -1, -2) @ yc[..., None]
    # lstsq-like robustness: a tiny jitter keeps a resample with one distinct run solvable.
    gram = gram + 1e-10 * np.eye(p)
    beta = np.linalg.solve(gram, rhs)[..., 0]
    return _to_gamma(beta, ref)


def identifiability(z: np.ndarray, min_log_sd: float) -> list[str | None]:
    """Per slice, why its effect cannot be estimated (None: it can).

    "share barely varies": the sd of its log-share across runs is below `min_log_sd`.
    "collinear with other slices": the part of its log-share variation that the other slices'
    log-ratios do not explain has sd below `min_log_sd` (or is exactly zero). Both are
    properties of the design alone, and neither depends on the reference slice.
    """
    r, k = z.shape
    reasons: list[str | None] = []
    x = _alr(z, 0)
    xc = x - x.mean(axis=0)
    gram = xc.T @ xc
    vals, vecs = np.linalg.eigh(gram)
    tol = max(vals.max(initial=0.0), 1.0) * 1e-9
    keep = vals > tol
    for j in range(k):
        if z[:, j].std() < min_log_sd:
            reasons.append("share barely varies")
            continue
        t = np.full(k - 1, -1.0) if j == 0 else np.eye(k - 1)[j - 1]
        coords = vecs.T @ t
        if np.any(np.abs(coords[~keep]) > 1e-6 * np.linalg.norm(t)):
            reasons.append("collinear with other slices")
            continue
        var = float(np.sum(coords[keep] ** 2 / vals[keep]))
        resid_sd = math.sqrt(1.0 / (var * r)) if var > 0 else 0.0
        reasons.append("collinear with other slices" if resid_sd < min_log_sd else None)
    return reasons


def bootstrap_effects(
    y: np.ndarray,
    z: np.ndarray,
    ridge: float,
    resamples: int,
    rng: np.random.Generator,
    ref: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Point estimate (K,) and bootstrap draws (B, K) of g from per-item scores y (R, I).

    Runs crossed with items, additively: each draw adds the deviation of a run resample (the
    runs' mean scores, with their slice shares; it carries run-to-run noise and the item noise
    inside each run's mean) to that of an item resample (runs fixed; it carries how the items'
    own responses to the mix vary). The item-noise part both contain is removed from the item
    deviation once (its variance, from the two-way residuals, is known in closed form), and the
    run deviation gets a small-sample factor sqrt((R - 1) / (R - p - 1)). Resampling runs and
    items together instead (the "pigeonhole" bootstrap) counts the item noise three times: its
    intervals covered 99% at a nominal 95% in our simulations; these cover 94-97%.
    """
    n_runs, n_items = y.shape
    ybar = y.mean(axis=1)
    point = fit_log_contrast(z, ybar, ridge, ref)
    idx = rng.integers(0, n_runs, size=(resamples, n_runs))
    dev_runs = fit_log_contrast(z[idx], ybar[idx], ridge, ref) - point
    weights = rng.multinomial(n_items, np.full(n_items, 1.0 / n_items), size=resamples)
    dev_items = fit_log_contrast(z, (y @ weights.T / n_items).T, ridge, ref) - point
    # The item noise's share of the item deviation: g = L ybar is linear, so its variance from
    # cell noise of variance s2 is sum_r L[j, r]^2 * s2 / I.
    x = _alr(z, ref)
    xc = x - x.mean(axis=0)
    p = xc.shape[1]
    gram = xc.T @ xc + ridge * n_runs * (np.eye(p) + np.ones((p, p))) + 1e-10 * np.eye(p)
    lin = _to_gamma(np.linalg.solve(gram, xc.T).T, ref).T  # (K, R)
    design = np.column_stack([np.ones(n_runs), x])
    resid = y - design @ (np.linalg.pinv(design) @ y)  # each item's own line in the shares
    resid = resid - resid.mean(axis=1, keepdims=True)  # and each run's own offset
    dof = max((n_runs - p - 1) * (n_items - 1), 1)
    noise = (lin**2).sum(axis=1) * float((resid**2).sum()) / dof / n_items
    var_items = dev_items.var(axis=0)
    keep = np.sqrt(np.clip(1.0 - noise / np.maximum(var_items, 1e-300), 0.0, 1.0))
    small = math.sqrt((n_runs - 1) / max(n_runs - p - 1, 1))
    return point, point + dev_runs * small + dev_items * keep


SMALL_DOF = 10  # runs - parameters below this: t-based intervals, with a warning


def residual_dof(n_runs: int, n_slices: int) -> int:
    """Runs minus the parameters of the log-contrast fit (an intercept and K - 1 slopes)."""
    return max(n_runs - n_slices, 1)


def family_effects(
    family: str,
    y: np.ndarray,
    shares: np.ndarray,
    slices: Sequence[str],
    options: AttributeOptions,
    rng: np.random.Generator,
) -> list[SliceEffect]:
    z = log_shares(shares)
    ref = slices.index(options.reference) if options.reference else 0
    reasons = identifiability(z, options.min_log_sd)
    point, draws = bootstrap_effects(y, z, options.ridge, options.resamples, rng, ref)
    alpha = (1 - options.level) / 2
    dof = residual_dof(len(y), len(slices))
    if dof < SMALL_DOF:
        # Few runs per parameter: the run bootstrap draws from a handful of distinct runs (9
        # runs: 6.5% of resamples hold <= 4) and its quantiles are unreliable. Use its SD with
        # a t quantile on the regression's residual degrees of freedom instead.
        q = S.t_quantile(1 - alpha, dof)
        sd = draws.std(axis=0, ddof=1)
        lows, highs = point - q * sd, point + q * sd
    else:
        lows = np.quantile(draws, alpha, axis=0)
        highs = np.quantile(draws, 1 - alpha, axis=0)
    out = []
    for j, name in enumerate(slices):
        sd = float(z[:, j].std())
        if reasons[j] is not None:
            out.append(SliceEffect(family, name, None, None, None, False, False, reasons[j], sd))
            continue
        lo, hi = float(lows[j]) * LN2, float(highs[j]) * LN2
        out.append(
            SliceEffect(
                family, name, float(point[j]) * LN2, lo, hi, lo > 0 or hi < 0, True, None, sd
            )
        )
    return out


# -- from runs --------------------------------------------------------------------------------


def _metric_for(side: RunSide, task: str, wanted: str | None) -> tuple[str, bool]:
    infos = side.metrics.get(task, ())
    names = [m.name for m in infos]
    for name in [wanted] if wanted else CONTINUOUS_METRICS:
        if name in names:
            info = next(m for m in infos if m.name == name)
            return name, info.higher_is_better
    if wanted:
        raise EvalkitError(f"task {task} has no per-item metric {wanted!r} ({', '.join(names)})")
    if not infos:
        raise EvalkitError(f"task {task} has no per-item metric to attribute")
    return infos[0].name, infos[0].higher_is_better


def _provenances(runs: Sequence[RunData], labels: Sequence[str]) -> list[Provenance]:
    provs = []
    for run, label in zip(runs, labels, strict=True):
        prov = manifest_provenance(run.manifest, label)
        if prov is None:
            raise EvalkitError(
                f"run {label} has no provenance: score it with the checkpoint's provenance.yaml "
                "or --provenance FILE"
            )
        provs.append(prov)
    return provs


@dataclass(frozen=True)
class Design:
    labels: tuple[str, ...]
    slices: tuple[str, ...]
    shares: np.ndarray  # (R, K)
    tokens: np.ndarray  # (R, K)
    family_items: Mapping[str, np.ndarray]  # family -> (R, I) per-item scores, higher better
    metrics: Mapping[str, str]  # task -> metric


def build_design(
    runs: Sequence[RunData], options: AttributeOptions, labels: Sequence[str] | None = None
) -> Design:
    import pandas as pd

    names = unique_labels(runs, labels)
    provs = _provenances(runs, names)
    slices: list[str] = []
    for p in provs:
        slices.extend(s.name for s in p.slices if s.name not in slices)
    shares = np.array([[p.shares.get(s, 0.0) for s in slices] for p in provs])
    tokens = np.array(
        [[next((x.tokens for x in p.slices if x.name == s), 0) for s in slices] for p in provs]
    )
    sides = [side_from_run(r, n) for r, n in zip(runs, names, strict=True)]
    tasks = [t for t in sides[0].tasks if all(t in s.metrics for s in sides)]
    if not tasks:
        raise EvalkitError("the runs share no task")
    metrics: dict[str, str] = {}
    columns: dict[str, list[Any]] = {}
    for task in tasks:
        metric, higher = _metric_for(sides[0], task, options.metric)
        metrics[task] = metric
        frames = []
        for i, side in enumerate(sides):
            f = side.samples[side.samples.task == task][["doc_id", "target", metric]]
            frames.append(f.assign(_run=i))
        both = pd.concat(frames, ignore_index=True).dropna(subset=[metric])
        counts = both.groupby("doc_id").agg(runs=("_run", "nunique"), t=("target", "nunique"))
        shared = counts[(counts.runs == len(sides)) & (counts.t == 1)].index
        if len(shared) == 0:
            continue
        wide = both[both.doc_id.isin(shared)].pivot_table(
            index="_run", columns="doc_id", values=metric
        )
        values = wide.to_numpy(dtype=float) * (1.0 if higher else -1.0)
        columns.setdefault(sides[0].families[task], []).append(values)
    family_items = {f: np.concatenate(v, axis=1) for f, v in sorted(columns.items())}
    if not family_items:
        raise EvalkitError("the runs share no scored items")
    return Design(tuple(names), tuple(slices), shares, tokens, family_items, metrics)


def _pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    if len(x) < 3 or x.std() == 0 or y.std() == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def attribute_runs(
    runs: Sequence[RunData],
    options: AttributeOptions | None = None,
    *,
    labels: Sequence[str] | None = None,
    slice_fit: Mapping[str, Mapping[str, float]] | None = None,
    compare_options: CompareOptions | None = None,
) -> AttributionReport:
    """Attribute the runs' family scores to their slices. `slice_fit`: run label -> slice ->
    bits per byte on that slice's held-out documents (from `evalkit.api.slice_fit`)."""
    options = options or AttributeOptions()
    if len(runs) < 2:
        raise EvalkitError("attribute needs at least two runs")
    d = build_design(runs, options, labels)
    if options.reference is not None and options.reference not in d.slices:
        raise EvalkitError(
            f"reference slice {options.reference!r} is in no run ({', '.join(d.slices)})"
        )
    rng = np.random.default_rng(options.seed)
    warnings: list[str] = []
    effects: list[SliceEffect] = []
    pairs: list[AblationPair] = []
    if len(runs) >= options.min_sweep_runs:
        dof = residual_dof(len(runs), len(d.slices))
        if dof < SMALL_DOF:
            warnings.append(
                f"{len(runs)} runs for {len(d.slices)} slices leave {dof} residual degrees of "
                f"freedom: intervals are t-based (bootstrap SD x t quantile with {dof} df), and "
                "wide; more runs narrow them (docs/provenance.md)"
            )
        for family, y in d.family_items.items():
            effects.extend(family_effects(family, y, d.shares, d.slices, options, rng))
    else:
        warnings.append(
            f"{len(runs)} runs: ablation pairs only (a mix sweep needs {options.min_sweep_runs})"
        )
        copts = compare_options or CompareOptions(seed=options.seed)
        sides = [side_from_run(r, n) for r, n in zip(runs, d.labels, strict=True)]
        for j in range(1, len(runs)):
            diffs = tuple(
                SliceDiff(
                    s,
                    int(d.tokens[0, k]),
                    int(d.tokens[j, k]),
                    float(d.shares[0, k]),
                    float(d.shares[j, k]),
                )
                for k, s in enumerate(d.slices)
            )
            cmp = compare_sides(sides[0], sides[j], copts, "delta")
            pairs.append(AblationPair(d.labels[0], d.labels[j], diffs, cmp))
    family_scores = {
        label: {f: float(y[i].mean()) for f, y in d.family_items.items()}
        for i, label in enumerate(d.labels)
    }
    links: list[SliceFitLink] = []
    fit = {k: dict(v) for k, v in (slice_fit or {}).items()}
    if fit:
        have = [label for label in d.labels if label in fit]
        for s in d.slices:
            rows = [label for label in have if s in fit[label]]
            bpb = np.array([fit[label][s] for label in rows])
            for f in d.family_items:
                score = np.array([family_scores[label][f] for label in rows])
                links.append(SliceFitLink(s, f, _pearson(-bpb, score), len(rows)))
    return AttributionReport(
        runs=d.labels,
        slices=d.slices,
        families=tuple(d.family_items),
        shares={
            label: {s: float(d.shares[i, k]) for k, s in enumerate(d.slices)}
            for i, label in enumerate(d.labels)
        },
        family_scores=family_scores,
        metrics=d.metrics,
        effects=tuple(effects),
        pairs=tuple(pairs),
        slice_fit=fit,
        slice_fit_links=tuple(links),
        options=options,
        warnings=tuple(warnings),
    )
