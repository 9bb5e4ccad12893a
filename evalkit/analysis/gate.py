"""A regression gate: is the candidate no worse than the baseline, by more than a margin?

Each check of a policy (a task or a family, a metric, a margin, alpha, a minimum n) is a
non-inferiority test on the items both runs share. With `improvement` = candidate - baseline
oriented so that positive is better, and its paired (cluster) bootstrap distribution:

- p_noninferior = P*(improvement <= -margin): small when a drop larger than the margin is
  ruled out;
- p_regression  = P*(improvement >= 0): small when the candidate is significantly worse.

Both are corrected across the policy's checks (Holm by default). A check

- passes when its n is at least min_n and the corrected p_noninferior < alpha;
- is a regression when the corrected p_regression < alpha and the point estimate is a drop
  larger than the margin;
- is inconclusive otherwise: too few items (or too noisy) to rule out a drop larger than the
  margin, and no significant drop beyond it either.

The verdict is a regression if any check is, else inconclusive if any check is, else a pass,
with exit codes 0 (pass), 1 (regression), 3 (inconclusive); 2 is left to errors.

The baseline can be several runs of one training run: `latest` takes the last checkpoint,
`mean` averages the last N item by item (less checkpoint noise, as Signal and Noise
recommends), `best` takes for each check the run among the last N that scores best on it (the
strictest bar; note it is biased upwards, a winner's curse).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from evalkit import stats as S
from evalkit.analysis.jsonsafe import json_safe
from evalkit.analysis.runs import (
    RunSide,
    cluster_labels,
    column_values,
    mean_of_sides,
    pair_sides,
    side_from_run,
)
from evalkit.analysis.snr import checkpoint_noise, order_runs, task_score
from evalkit.errors import EvalkitError
from evalkit.store import RunData

Outcome = Literal["pass", "regression", "inconclusive"]
EXIT_CODES: dict[str, int] = {"pass": 0, "regression": 1, "error": 2, "inconclusive": 3}
SELECTIONS: tuple[str, ...] = ("latest", "mean", "best")
Selection = Literal["latest", "mean", "best"]

_POLICY_KEYS = {
    "suite",
    "description",
    "alpha",
    "correction",
    "min_n",
    "resamples",
    "seed",
    "baseline",
    "checks",
}
_CHECK_KEYS = {
    "task",
    "family",
    "metric",
    "margin",
    "alpha",
    "min_n",
    "cluster",
    "required",
    "note",
}
_BASELINE_KEYS = {"select", "last"}


@dataclass(frozen=True)
class Check:
    """One line of a policy: `task` or `family`, its metric and the largest drop tolerated."""

    scope: Literal["task", "family"]
    name: str
    metric: str
    margin: float
    alpha: float
    min_n: int
    cluster: str | None = None
    required: bool = True  # False: skipped, with a warning, when the runs lack it
    note: str = ""

    @property
    def label(self) -> str:
        return f"{self.scope} {self.name} / {self.metric}"


@dataclass(frozen=True)
class Policy:
    suite: str | None
    checks: tuple[Check, ...]
    alpha: float = 0.05
    correction: str = "holm"
    min_n: int = 30
    resamples: int = S.DEFAULT_RESAMPLES
    seed: int = 0
    baseline_select: Selection = "latest"
    baseline_last: int | None = None  # None: every baseline run given
    description: str = ""
    source: str | None = None


def _bad(where: str, message: str) -> EvalkitError:
    return EvalkitError(f"invalid gate policy {where}: {message}")


def _number(where: str, key: str, value: Any, low: float, high: float, *, integer: bool) -> Any:
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type:
        kind = "an integer" if integer else "a number"
        raise _bad(where, f"{key} must be {kind}, got {value!r}")
    if not low <= value <= high or (isinstance(value, float) and not math.isfinite(value)):
        raise _bad(where, f"{key} must lie in [{low:g}, {high:g}], got {value!r}")
    return value


def parse_policy(raw: Any, source: str = "<policy>") -> Policy:
    """Validate a policy mapping (as read from YAML); errors name the file and the field."""
    if not isinstance(raw, dict):
        raise _bad(source, "expected a mapping at the top level")
    unknown = set(raw) - _POLICY_KEYS
    if unknown:
        raise _bad(source, f"unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    suite = raw.get("suite")
    if suite is not None and not isinstance(suite, str):
        raise _bad(source, "suite must be a suite name")
    alpha = float(_number(source, "alpha", raw.get("alpha", 0.05), 1e-6, 0.5, integer=False))
    min_n = int(_number(source, "min_n", raw.get("min_n", 30), 1, 10**9, integer=True))
    resamples = int(
        _number(
            source, "resamples", raw.get("resamples", S.DEFAULT_RESAMPLES), 200, 10**6, integer=True
        )
    )
    seed = int(_number(source, "seed", raw.get("seed", 0), 0, 2**32 - 1, integer=True))
    correction = raw.get("correction", "holm")
    if correction not in S.CORRECTIONS:
        raise _bad(source, f"correction must be one of {', '.join(S.CORRECTIONS)}")
    baseline = raw.get("baseline") or {}
    if not isinstance(baseline, dict) or set(baseline) - _BASELINE_KEYS:
        raise _bad(source, "baseline takes only 'select' (latest|mean|best) and 'last'")
    select = baseline.get("select", "latest")
    if select not in SELECTIONS:
        raise _bad(source, f"baseline.select must be one of {', '.join(SELECTIONS)}")
    last = (
        int(_number(source, "baseline.last", baseline["last"], 1, 10**6, integer=True))
        if "last" in baseline
        else None
    )
    checks_raw = raw.get("checks")
    if not isinstance(checks_raw, list) or not checks_raw:
        raise _bad(source, "needs a non-empty 'checks' list")
    checks = []
    for i, c in enumerate(checks_raw):
        where = f"{source} checks[{i}]"
        if not isinstance(c, dict):
            raise _bad(where, "must be a mapping")
        extra = set(c) - _CHECK_KEYS
        if extra:
            raise _bad(where, f"unknown key(s) {', '.join(sorted(map(str, extra)))}")
        if ("task" in c) == ("family" in c):
            raise _bad(where, "needs exactly one of 'task' or 'family'")
        scope: Literal["task", "family"] = "task" if "task" in c else "family"
        name = c[scope]
        if not isinstance(name, str) or not name:
            raise _bad(where, f"{scope} must be a name")
        metric = c.get("metric")
        if not isinstance(metric, str) or not metric:
            raise _bad(where, "needs a 'metric' name")
        if "margin" not in c:
            raise _bad(where, "needs a 'margin' (the largest drop tolerated, in metric units)")
        margin = float(_number(where, "margin", c["margin"], 0.0, math.inf, integer=False))
        cluster = c.get("cluster")
        if cluster is not None and not isinstance(cluster, str):
            raise _bad(where, "cluster must be an item tag name")
        required = c.get("required", True)
        if not isinstance(required, bool):
            raise _bad(where, "required must be true or false")
        checks.append(
            Check(
                scope=scope,
                name=name,
                metric=metric,
                margin=margin,
                alpha=float(
                    _number(where, "alpha", c.get("alpha", alpha), 1e-6, 0.5, integer=False)
                ),
                min_n=int(_number(where, "min_n", c.get("min_n", min_n), 1, 10**9, integer=True)),
                cluster=cluster,
                required=required,
                note=str(c.get("note", "")),
            )
        )
    labels = [c.label for c in checks]
    if len(set(labels)) != len(labels):
        dup = next(x for x in labels if labels.count(x) > 1)
        raise _bad(source, f"{dup} is checked twice")
    return Policy(
        suite=suite,
        checks=tuple(checks),
        alpha=alpha,
        correction=str(correction),
        min_n=min_n,
        resamples=resamples,
        seed=seed,
        baseline_select=select,
        baseline_last=last,
        description=str(raw.get("description", "")),
        source=source,
    )


def load_policy(path: Path) -> Policy:
    import yaml

    if not path.is_file():
        raise EvalkitError(f"gate policy not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise EvalkitError(f"invalid gate policy {path}: invalid YAML{where}") from None
    return parse_policy(raw, str(path))


# -- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    check: Check
    higher_is_better: bool
    baseline: float
    candidate: float
    delta: float  # candidate - baseline, in metric units
    ci_low: float  # two-sided (1 - 2 alpha) interval of delta: its one-sided alpha bounds
    ci_high: float
    n: int
    n_clusters: int
    mde: float
    items_needed: int  # items for the MDE to reach the margin (-1: unknown)
    p_noninferior: float  # corrected
    p_regression: float  # corrected
    outcome: Outcome
    reason: str
    baseline_runs: tuple[str, ...]

    @property
    def improvement(self) -> float:
        return self.delta if self.higher_is_better else -self.delta


@dataclass(frozen=True)
class GateVerdict:
    outcome: Outcome
    checks: tuple[CheckResult, ...]
    baseline: tuple[str, ...]
    candidate: tuple[str, ...]
    baseline_select: str
    policy: str | None
    suite: str | None
    warnings: tuple[str, ...] = ()

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.outcome]

    @property
    def passed(self) -> bool:
        return self.outcome == "pass"

    def to_dict(self) -> dict[str, Any]:
        out = {
            "outcome": self.outcome,
            "exit_code": self.exit_code,
            "policy": self.policy,
            "suite": self.suite,
            "baseline": list(self.baseline),
            "baseline_select": self.baseline_select,
            "candidate": list(self.candidate),
            "checks": [{**asdict(c), "improvement": c.improvement} for c in self.checks],
            "warnings": list(self.warnings),
        }
        result = json_safe(out)
        assert isinstance(result, dict)
        return result


# -- the computation -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Raw:
    check: Check
    hib: bool
    baseline: float
    candidate: float
    delta: float
    dist: np.ndarray  # bootstrap distribution of the oriented improvement
    n: int
    n_clusters: int
    se: float
    baseline_runs: tuple[str, ...]


def _task_metric(side: RunSide, task: str, metric: str) -> bool:
    return side.metric(task, metric).higher_is_better


def _tasks_of(check: Check, base: RunSide, cand: RunSide) -> list[str]:
    if check.scope == "task":
        for side in (base, cand):
            if check.name not in side.metrics:
                raise EvalkitError(f"{check.label}: run {side.label} has no task {check.name!r}")
        return [check.name]
    tasks = [
        t
        for t, fam in base.families.items()
        if fam == check.name
        and t in cand.metrics
        and any(m.name == check.metric for m in base.metrics.get(t, ()))
    ]
    if not tasks:
        raise EvalkitError(
            f"{check.label}: no task of family {check.name!r} with metric {check.metric!r} "
            f"in both {base.label} and {cand.label}"
        )
    return tasks


def _missing(check: Check, base: RunSide, cand: RunSide) -> str | None:
    """Why the runs cannot answer `check` (a task, family or metric they lack), or None."""
    try:
        for task in _tasks_of(check, base, cand):
            base.metric(task, check.metric)
            cand.metric(task, check.metric)
    except EvalkitError as exc:
        return str(exc)
    return None


def _evaluate(
    check: Check, base: RunSide, cand: RunSide, policy: Policy, seed: int
) -> tuple[_Raw, list[str]]:
    tasks = _tasks_of(check, base, cand)
    pairing = pair_sides(base, cand)
    warnings = [w for w in pairing.warnings if any(f"task {t}:" in w for t in tasks)]
    dists, deltas, ses, bases, cands = [], [], [], [], []
    n = n_clusters = 0
    hib_set = set()
    for k, task in enumerate(tasks):
        hib = _task_metric(base, task, check.metric)
        _task_metric(cand, task, check.metric)
        hib_set.add(hib)
        frame = pairing.frame[pairing.frame.task == task]
        if len(frame) == 0:
            raise EvalkitError(f"{check.label}: runs share no items of task {task}")
        a = column_values(frame, check.metric, "a")
        b = column_values(frame, check.metric, "b")
        ok = np.isfinite(a) & np.isfinite(b)
        a, b = a[ok], b[ok]
        if a.size == 0:
            raise EvalkitError(f"{check.label}: no paired values of {check.metric} in {task}")
        col = check.cluster or "cluster"
        if check.cluster is not None and col not in pairing.frame.columns:
            raise EvalkitError(f"{check.label}: no item tag {col!r} to cluster on")
        clusters = cluster_labels(frame[ok], col)
        result, dist = S.paired_analysis(
            a,
            b,
            clusters,
            test="bootstrap",
            resamples=policy.resamples,
            seed=seed + 7919 * k,
            alpha=check.alpha,
        )
        sign = 1.0 if hib else -1.0
        dists.append(sign * dist)
        deltas.append(result.delta)
        ses.append(result.se)
        bases.append(result.a)
        cands.append(result.b)
        n += result.n
        n_clusters += result.n_clusters
    if len(hib_set) > 1:
        raise EvalkitError(f"{check.label}: the family's tasks disagree on the metric's direction")
    hib = hib_set.pop()
    se = math.sqrt(sum(s**2 for s in ses if math.isfinite(s))) / len(tasks)
    raw = _Raw(
        check=check,
        hib=hib,
        baseline=float(np.mean(bases)),
        candidate=float(np.mean(cands)),
        delta=float(np.mean(deltas)),
        dist=np.mean(dists, axis=0),
        n=n,
        n_clusters=n_clusters,
        se=se,
        baseline_runs=tuple(str(p) for p in base.paths),
    )
    return raw, warnings


def _one_sided(dist: np.ndarray, hits: np.ndarray) -> float:
    return float((hits.sum() + 1.0) / (dist.size + 1.0))


def _decide(raw: _Raw, p_ni: float, p_reg: float, correction: str) -> CheckResult:
    c = raw.check
    improvement = raw.delta if raw.hib else -raw.delta
    # One-sided alpha bounds of the improvement, mapped back to the metric's delta.
    lo_imp, hi_imp = np.quantile(raw.dist, [c.alpha, 1 - c.alpha])
    lo_imp, hi_imp = min(float(lo_imp), improvement), max(float(hi_imp), improvement)
    ci_low, ci_high = (lo_imp, hi_imp) if raw.hib else (-hi_imp, -lo_imp)
    mde = S.mde(raw.se, 2 * c.alpha) if raw.se > 0 else float("nan")  # one-sided alpha
    needed = S.items_needed(raw.n, mde, c.margin) if c.margin > 0 else -1
    worse = "higher" if not raw.hib else "lower"
    # The worst plausible delta (at one-sided alpha), in the metric's own units and direction.
    bound = (ci_low if raw.hib else ci_high) + 0.0  # + 0.0: no "-0"
    plausible = f"the worst plausible Δ is {bound:+.3g} at alpha {c.alpha:g}"
    corrected = "" if correction == "none" else f" after {correction}"
    outcome: Outcome
    if raw.n < c.min_n:
        outcome = "inconclusive"
        reason = f"only {raw.n} paired items; the policy asks for at least {c.min_n}"
    elif p_ni < c.alpha:
        outcome = "pass"
        reason = f"a drop larger than {c.margin:g} is ruled out ({plausible})"
        if p_reg < c.alpha:
            reason += "; a significant drop within the margin"
    elif p_reg < c.alpha and improvement < -c.margin:
        outcome = "regression"
        reason = (
            f"{c.metric} is significantly {worse} by {abs(raw.delta):.3g}, "
            f"beyond the margin {c.margin:g}"
        )
    else:
        outcome = "inconclusive"
        reason = (
            f"cannot rule out a drop larger than {c.margin:g} (p {p_ni:.2g}{corrected}; "
            f"uncorrected, {plausible}), nor show one"
        )
        if math.isfinite(mde) and mde > c.margin and needed > raw.n:
            reason += f"; MDE {mde:.3g} > margin: about {needed} items needed"
    return CheckResult(
        check=c,
        higher_is_better=raw.hib,
        baseline=raw.baseline,
        candidate=raw.candidate,
        delta=raw.delta,
        ci_low=ci_low,
        ci_high=ci_high,
        n=raw.n,
        n_clusters=raw.n_clusters,
        mde=mde,
        items_needed=needed,
        p_noninferior=p_ni,
        p_regression=p_reg,
        outcome=outcome,
        reason=reason,
        baseline_runs=raw.baseline_runs,
    )


def _best_side(check: Check, runs: Sequence[RunData], sides: Sequence[RunSide]) -> RunSide:
    """The run that scores best on the check's metric (family: mean over its tasks)."""
    best: tuple[float, int] | None = None
    for i, (run, side) in enumerate(zip(runs, sides, strict=True)):
        tasks = (
            [check.name]
            if check.scope == "task"
            else [t for t, f in side.families.items() if f == check.name]
        )
        values = [task_score(run, t, check.metric) for t in tasks]
        if not values or any(v is None for v in values):
            continue
        hib = side.metric(tasks[0], check.metric).higher_is_better
        value = float(np.mean([v for v in values if v is not None]))
        key = value if hib else -value
        if best is None or key > best[0]:
            best = (key, i)
    if best is None:
        raise EvalkitError(f"{check.label}: no baseline run has this metric")
    return sides[best[1]]


def gate_runs(
    baseline: Sequence[RunData],
    candidate: Sequence[RunData],
    policy: Policy,
    *,
    select: Selection | None = None,
    last: int | None = None,
) -> GateVerdict:
    """Gate `candidate` (one run, or several averaged item-wise) against `baseline`."""
    if not baseline:
        raise EvalkitError("no baseline run")
    if not candidate:
        raise EvalkitError("no candidate run")
    select = select or policy.baseline_select
    if select not in SELECTIONS:
        raise EvalkitError(f"unknown baseline selection {select!r}; use {', '.join(SELECTIONS)}")
    last = last or policy.baseline_last or len(baseline)
    if last < 1:
        raise EvalkitError("--baseline-last must be at least 1")
    ordered = order_runs(baseline)
    pool = ordered[-last:] if select != "latest" else ordered[-1:]
    pool_sides = [side_from_run(r) for r in pool]
    cand_sides = [side_from_run(r) for r in candidate]
    cand = mean_of_sides(cand_sides, _mean_label(cand_sides))
    warnings: list[str] = []
    for side in (*pool_sides, *cand_sides):
        suite = side.manifest.get("suite")
        if policy.suite and suite and suite != policy.suite:
            warnings.append(
                f"run {side.label} scored suite {suite!r}; the policy gates {policy.suite!r}"
            )
    if select == "mean":
        base_mean = mean_of_sides(pool_sides, _mean_label(pool_sides))
    raws = []
    for k, check in enumerate(policy.checks):
        why = _missing(check, base_mean if select == "mean" else pool_sides[-1], cand)
        if why is not None:
            if check.required:
                raise EvalkitError(why)
            warnings.append(f"{why}: skipped (not required)")
            continue
        if select == "best":
            base = _best_side(check, pool, pool_sides)
        elif select == "mean":
            base = base_mean
        else:
            base = pool_sides[-1]
        raw, notes = _evaluate(check, base, cand, policy, policy.seed + 104729 * k)
        warnings.extend(n for n in notes if n not in warnings)
        raws.append(raw)
        if len(baseline) >= 3 and check.scope == "task":
            noise = checkpoint_noise(ordered, check.name, check.metric, max(last, 3))
            sd = noise * abs(raw.baseline) if math.isfinite(noise) else float("nan")
            if (
                math.isfinite(sd)
                and check.margin > 0
                and sd > check.margin / 2
                and select != "mean"
            ):
                warnings.append(
                    f"{check.label}: checkpoint-to-checkpoint noise (sd {sd:.3g}) is large "
                    f"against the margin {check.margin:g}; consider --baseline-select mean"
                )
    if not raws:
        raise EvalkitError("none of the policy's checks applies to these runs")
    p_ni_raw = [_one_sided(r.dist, r.dist <= -r.check.margin) for r in raws]
    p_reg_raw = [_one_sided(r.dist, r.dist >= 0) for r in raws]
    p_ni = S.adjust_pvalues(p_ni_raw, policy.correction)
    p_reg = S.adjust_pvalues(p_reg_raw, policy.correction)
    results = tuple(
        _decide(r, a, b, policy.correction) for r, a, b in zip(raws, p_ni, p_reg, strict=True)
    )
    outcomes = {r.outcome for r in results}
    outcome: Outcome = (
        "regression"
        if "regression" in outcomes
        else "inconclusive"
        if "inconclusive" in outcomes
        else "pass"
    )
    return GateVerdict(
        outcome=outcome,
        checks=results,
        baseline=tuple(str(r.path) for r in pool),
        candidate=tuple(str(r.path) for r in candidate),
        baseline_select=select,
        policy=policy.source,
        suite=policy.suite,
        warnings=tuple(warnings),
    )


def _mean_label(sides: Sequence[RunSide]) -> str:
    if len(sides) == 1:
        return sides[0].label
    return f"mean of {len(sides)} runs ({sides[0].label} .. {sides[-1].label})"


def summarize(verdict: GateVerdict) -> Mapping[str, int]:
    counts: dict[str, int] = {"pass": 0, "regression": 0, "inconclusive": 0}
    for c in verdict.checks:
        counts[c.outcome] += 1
    return counts
