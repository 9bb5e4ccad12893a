"""A regression gate: is the candidate no worse than the baseline, by more than a margin?

Each check of a policy (a task or a family, a metric, a margin, alpha, a minimum n) compares the
items both runs share. With `improvement` = candidate - baseline oriented so that positive is
better, its paired estimate and standard error (`evalkit.stats.paired_delta`: Bonett-Price for
0/1 metrics, a paired t on the cluster-robust SE otherwise, SE floored), two one-sided tests
about the margin m:

- non-inferiority, H0: improvement <= -m. p_noninferior small: a drop larger than m is ruled
  out. A check passes when p_noninferior < alpha and it has at least min_n paired items. No
  correction across checks: the verdict passes only when every check passes, an
  intersection-union test, which already holds the pass rate at alpha when any one check sits
  at its margin.
- regression, H0: improvement >= -m. p_regression small: the drop exceeds the margin (not
  merely 0: a drop of exactly the tolerated size is failed at most alpha of the time). Corrected
  across the policy's checks (Holm by default), so that a healthy candidate is called a
  regression on any check at most alpha of the time. min_n never hides a regression.
- inconclusive otherwise (exit 3: score more items; the reason gives the MDE and the items
  needed).

Non-finite values are counted per side: items non-finite on both sides are left out (counted);
a candidate with more non-finite items than `max_nonfinite` (a fraction of the check's items)
where the baseline has values fails the check; a baseline with more is an error (exit 2);
fewer are left out with a warning naming the counts.

Policies are validated against the suite they declare when they are parsed: a task, family or
metric the suite does not have is an error naming it. `required: false` means the check may be
absent: when the runs lack the whole task or family (not scored, or listed in the manifest's
`skipped_tasks`) it is skipped with a warning. It never means "ignored when present": a check
that is present is decided like any other. A required family check with a task missing on
either side is an error (a family must not silently shrink to the tasks that remain).

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
    "max_nonfinite",
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
    "max_nonfinite",
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
    required: bool = True  # False: may be absent (skipped with a warning when the runs lack it)
    note: str = ""
    max_nonfinite: float = 0.01  # fraction of items non-finite on one side only, tolerated

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
    max_nonfinite: float = 0.01


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


def parse_policy(raw: Any, source: str = "<policy>", *, validate: bool = True) -> Policy:
    """Validate a policy mapping (as read from YAML); errors name the file and the field.

    With `validate` (the default), the names it uses are also checked against the suite it
    declares (`validate_policy`)."""
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
    max_nonfinite = float(
        _number(source, "max_nonfinite", raw.get("max_nonfinite", 0.01), 0.0, 1.0, integer=False)
    )
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
                max_nonfinite=float(
                    _number(
                        where,
                        "max_nonfinite",
                        c.get("max_nonfinite", max_nonfinite),
                        0.0,
                        1.0,
                        integer=False,
                    )
                ),
            )
        )
    labels = [c.label for c in checks]
    if len(set(labels)) != len(labels):
        dup = next(x for x in labels if labels.count(x) > 1)
        raise _bad(source, f"{dup} is checked twice")
    policy = Policy(
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
        max_nonfinite=max_nonfinite,
    )
    if validate and suite is not None:
        validate_policy(policy)
    return policy


def suite_metrics(suite: str) -> dict[str, tuple[str, frozenset[str]]]:
    """task -> (family, its per-item metric names) for the tasks of a suite."""
    from evalkit.tasks.registry import load_suite, resolve_tasks

    tasks = resolve_tasks(list(load_suite(suite).tasks))
    return {t.name: (t.family, frozenset(m.name for m in t.metrics)) for t in tasks}


def validate_policy(policy: Policy) -> None:
    """Every task, family and metric the policy names must exist in the suite it declares: a
    typo must not silently turn a check off. Raises EvalkitError naming what is unknown."""
    if policy.suite is None:
        return
    where = f"invalid gate policy {policy.source or '<policy>'}"
    try:
        tasks = suite_metrics(policy.suite)
    except EvalkitError as exc:
        raise EvalkitError(f"{where}: suite {policy.suite!r}: {exc}") from None
    families = sorted({f for f, _ in tasks.values()})
    for c in policy.checks:
        if c.scope == "task":
            if c.name not in tasks:
                raise EvalkitError(
                    f"{where}: {c.label}: suite {policy.suite!r} has no task {c.name!r}"
                )
            metrics = tasks[c.name][1]
        else:
            if c.name not in families:
                raise EvalkitError(
                    f"{where}: {c.label}: suite {policy.suite!r} has no family {c.name!r} "
                    f"(its families: {', '.join(families)})"
                )
            metrics = frozenset().union(*(m for f, m in tasks.values() if f == c.name))
        if c.metric not in metrics:
            raise EvalkitError(
                f"{where}: {c.label}: no task of it in suite {policy.suite!r} has metric "
                f"{c.metric!r} (known: {', '.join(sorted(metrics))})"
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
    mde: float  # distance from the margin at which a decision has 80% power
    items_needed: int  # items for the MDE to reach the margin (-1: unknown)
    p_noninferior: float  # H0: improvement <= -margin; not corrected (intersection-union)
    p_regression: float  # H0: improvement >= -margin; corrected across the checks
    outcome: Outcome
    reason: str
    baseline_runs: tuple[str, ...]
    se: float = float("nan")
    method: str = ""
    nonfinite_baseline: int = 0  # items non-finite on the baseline side only
    nonfinite_candidate: int = 0  # on the candidate side only
    nonfinite_both: int = 0  # on both sides (left out)
    tasks: tuple[str, ...] = ()

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
    skipped_checks: tuple[str, ...] = ()  # checks not required and absent from the runs

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
            "skipped_checks": list(self.skipped_checks),
            "warnings": list(self.warnings),
        }
        result = json_safe(out)
        assert isinstance(result, dict)
        return result


# -- the decision rules (pure; tests/test_gate_errors.py simulates them) ----------------------


@dataclass(frozen=True)
class Evidence:
    """One check's paired estimate, oriented so that positive is better."""

    improvement: float  # the interval's centre (Bonett-Price adjusted for 0/1), oriented
    se: float
    df: float
    n: int


def evidence(deltas: Sequence[S.PairedDelta], higher_is_better: bool) -> Evidence:
    """A task's (or a family's: the unweighted mean over its tasks) oriented estimate, with
    Welch-Satterthwaite degrees of freedom for the mean."""
    sign = 1.0 if higher_is_better else -1.0
    k = len(deltas)
    improvement = sign * float(np.mean([d.center for d in deltas]))
    var = sum(d.se**2 for d in deltas) / k**2
    se = math.sqrt(var)
    denom = sum((d.se**2 / k**2) ** 2 / d.df for d in deltas if math.isfinite(d.df))
    df = var**2 / denom if denom > 0 else math.inf
    return Evidence(improvement, se, df, sum(d.n for d in deltas))


def p_values(ev: Evidence, margin: float) -> tuple[float, float]:
    """(p_noninferior, p_regression): one-sided t tests of improvement against -margin."""
    if not ev.se > 0:
        t = math.copysign(math.inf, ev.improvement + margin) if ev.improvement + margin else 0.0
    else:
        t = (ev.improvement + margin) / ev.se
    if t == 0.0:
        return 0.5, 0.5
    return S.t_cdf_upper(t, ev.df), S.t_cdf_upper(-t, ev.df)


def gate_mde(ev: Evidence, alpha: float, power: float = S.DEFAULT_POWER) -> float:
    """How far from the margin the true improvement must be for a decision (pass above,
    regression below) with probability `power`: (t_{1-alpha} + z_power) * se."""
    if not (math.isfinite(ev.se) and ev.se > 0):
        return float("nan")
    from statistics import NormalDist

    return float((S.t_quantile(1 - alpha, ev.df) + NormalDist().inv_cdf(power)) * ev.se)


def decide(
    evidences: Sequence[Evidence],
    checks: Sequence[Check],
    correction: str,
    failed: Sequence[bool] | None = None,
) -> tuple[list[Outcome], list[float], list[float]]:
    """Outcomes of a policy's checks, and their p_noninferior and corrected p_regression.

    `failed[i]`: check i already failed (too many non-finite candidate values)."""
    raw = [p_values(ev, c.margin) for ev, c in zip(evidences, checks, strict=True)]
    p_ni = [p for p, _ in raw]
    p_reg = S.adjust_pvalues([p for _, p in raw], correction)
    outcomes: list[Outcome] = []
    for i, (ev, c) in enumerate(zip(evidences, checks, strict=True)):
        if (failed is not None and failed[i]) or p_reg[i] < c.alpha:
            outcomes.append("regression")
        elif p_ni[i] < c.alpha and ev.n >= c.min_n:
            outcomes.append("pass")
        else:
            outcomes.append("inconclusive")
    return outcomes, p_ni, p_reg


def verdict_of(outcomes: Sequence[str]) -> Outcome:
    if "regression" in outcomes:
        return "regression"
    if "inconclusive" in outcomes:
        return "inconclusive"
    return "pass"


# -- from runs to evidence -------------------------------------------------------------------


@dataclass(frozen=True)
class _Raw:
    check: Check
    hib: bool
    baseline: float
    candidate: float
    delta: float
    evidence: Evidence
    n_clusters: int
    method: str
    baseline_runs: tuple[str, ...]
    tasks: tuple[str, ...]
    nonfinite: tuple[int, int, int]  # baseline only, candidate only, both
    failed_nonfinite: bool


def skipped_tasks(sides: Sequence[RunSide]) -> dict[str, tuple[str, str]]:
    """task -> (family, reason) for the tasks the runs' manifests list as skipped (a task
    that could not run on the checkpoint, e.g. no needle length fits its window)."""
    out: dict[str, tuple[str, str]] = {}
    for side in sides:
        for s in side.manifest.skipped_tasks:
            out.setdefault(s.task, (s.family, s.reason))
    return out


def _has(side: RunSide, skipped: Mapping[str, Any], task: str, metric: str) -> bool:
    return (
        task not in skipped
        and task in side.metrics
        and any(m.name == metric for m in side.metrics[task])
    )


def _scope_tasks(
    check: Check,
    base: RunSide,
    cand: RunSide,
    skipped: tuple[Mapping[str, tuple[str, str]], Mapping[str, tuple[str, str]]],
) -> tuple[list[str], list[str]]:
    """(tasks both sides can answer the check on, what is missing: one line per task)."""
    if check.scope == "task":
        names = [check.name]
    else:
        names = sorted(
            {t for side in (base, cand) for t, f in side.families.items() if f == check.name}
            | {t for sk in skipped for t, (f, _) in sk.items() if f == check.name}
        )
    present, missing = [], []
    for t in names:
        where = []
        for label, side, sk in (("baseline", base, skipped[0]), ("candidate", cand, skipped[1])):
            if t in sk:
                where.append(f"skipped in the {label} ({sk[t][1]})")
            elif t not in side.metrics:
                where.append(f"not in the {label} {side.label}")
            elif not _has(side, sk, t, check.metric):
                if check.scope == "family" and not any(
                    _has(s, k, t, check.metric) for s, k in ((base, skipped[0]), (cand, skipped[1]))
                ):
                    where = ["-"]  # a task of the family without this metric: not in scope
                    break
                where.append(f"has no metric {check.metric!r} in the {label} {side.label}")
        if where == ["-"]:
            continue
        if where:
            missing.append(f"task {t}: " + "; ".join(where))
        else:
            present.append(t)
    return present, missing


def _evaluate(
    check: Check, tasks: Sequence[str], base: RunSide, cand: RunSide
) -> tuple[_Raw, list[str]]:
    pairing = pair_sides(base, cand)
    warnings = [w for w in pairing.warnings if any(f"task {t}:" in w for t in tasks)]
    deltas: list[S.PairedDelta] = []
    bases, cands = [], []
    hib_set = set()
    nf_base = nf_cand = nf_both = total = 0
    for task in tasks:
        hib = base.metric(task, check.metric).higher_is_better
        cand.metric(task, check.metric)
        hib_set.add(hib)
        frame = pairing.frame[pairing.frame.task == task]
        if len(frame) == 0:
            raise EvalkitError(f"{check.label}: runs share no items of task {task}")
        a = column_values(frame, check.metric, "a")
        b = column_values(frame, check.metric, "b")
        fa, fb = np.isfinite(a), np.isfinite(b)
        nf_base += int((~fa & fb).sum())
        nf_cand += int((fa & ~fb).sum())
        nf_both += int((~fa & ~fb).sum())
        total += int(a.size)
        ok = fa & fb
        a, b = a[ok], b[ok]
        if a.size == 0:
            raise EvalkitError(
                f"{check.label}: no paired finite values of {check.metric} in {task}"
            )
        col = check.cluster or "cluster"
        if check.cluster is not None and col not in pairing.frame.columns:
            raise EvalkitError(f"{check.label}: no item tag {col!r} to cluster on")
        clusters = cluster_labels(frame[ok], col)
        binary = S.is_binary_metric(check.metric, a, b)
        deltas.append(S.paired_delta(a, b, clusters, binary=binary, level=1 - 2 * check.alpha))
        bases.append(float(a.mean()))
        cands.append(float(b.mean()))
    if len(hib_set) > 1:
        raise EvalkitError(f"{check.label}: the family's tasks disagree on the metric's direction")
    hib = hib_set.pop()
    limit = check.max_nonfinite * total
    if nf_base > limit:
        raise EvalkitError(
            f"{check.label}: the baseline has {nf_base} non-finite {check.metric} values of "
            f"{total} items where the candidate has numbers (max_nonfinite {check.max_nonfinite:g})"
        )
    failed = nf_cand > limit
    if not failed and (nf_base or nf_cand or nf_both):
        warnings.append(
            f"{check.label}: left out {nf_base + nf_cand + nf_both} of {total} items with "
            f"non-finite {check.metric} (baseline only {nf_base}, candidate only {nf_cand}, "
            f"both {nf_both})"
        )
    methods = sorted({d.method for d in deltas})
    raw = _Raw(
        check=check,
        hib=hib,
        baseline=float(np.mean(bases)),
        candidate=float(np.mean(cands)),
        delta=float(np.mean([d.delta for d in deltas])),
        evidence=evidence(deltas, hib),
        n_clusters=sum(d.n_clusters for d in deltas),
        method="/".join(methods),
        baseline_runs=tuple(str(p) for p in base.paths),
        tasks=tuple(tasks),
        nonfinite=(nf_base, nf_cand, nf_both),
        failed_nonfinite=failed,
    )
    return raw, warnings


def _result(raw: _Raw, outcome: Outcome, p_ni: float, p_reg: float, correction: str) -> CheckResult:
    c = raw.check
    ev = raw.evidence
    q = S.t_quantile(1 - c.alpha, ev.df)
    lo_imp, hi_imp = ev.improvement - q * ev.se, ev.improvement + q * ev.se
    ci_low, ci_high = (lo_imp, hi_imp) if raw.hib else (-hi_imp, -lo_imp)
    mde = gate_mde(ev, c.alpha)
    needed = S.items_needed(ev.n, mde, c.margin) if c.margin > 0 else -1
    worse = "higher" if not raw.hib else "lower"
    bound = (ci_low if raw.hib else ci_high) + 0.0  # + 0.0: no "-0"
    plausible = f"the worst plausible Δ is {bound:+.3g} at alpha {c.alpha:g}"
    corrected = "" if correction == "none" else f" after {correction}"
    nf_base, nf_cand, _ = raw.nonfinite
    if outcome == "regression" and raw.failed_nonfinite:
        reason = (
            f"the candidate has {nf_cand} non-finite {c.metric} values of {ev.n + sum(raw.nonfinite)} "
            f"items where the baseline has numbers (at most {c.max_nonfinite:g} of them allowed)"
        )
    elif outcome == "regression":
        reason = (
            f"{c.metric} is significantly {worse} by more than the margin {c.margin:g} "
            f"(Δ {raw.delta:+.3g}, p {p_reg:.2g}{corrected})"
        )
    elif outcome == "pass":
        reason = f"a drop larger than {c.margin:g} is ruled out ({plausible})"
    elif ev.n < c.min_n and p_ni < c.alpha:
        reason = (
            f"a drop larger than {c.margin:g} is ruled out, but on only {ev.n} paired items; "
            f"the policy asks for at least {c.min_n} before it passes a check"
        )
    else:
        reason = (
            f"cannot rule out a drop larger than {c.margin:g} (p {p_ni:.2g}; {plausible}), "
            f"nor show one"
        )
        if math.isfinite(mde) and needed > ev.n:
            reason += f"; MDE {mde:.3g}: about {needed} items needed"
    return CheckResult(
        check=c,
        higher_is_better=raw.hib,
        baseline=raw.baseline,
        candidate=raw.candidate,
        delta=raw.delta,
        ci_low=float(ci_low),
        ci_high=float(ci_high),
        n=ev.n,
        n_clusters=raw.n_clusters,
        mde=mde,
        items_needed=needed,
        p_noninferior=float(p_ni),
        p_regression=float(p_reg),
        outcome=outcome,
        reason=reason,
        baseline_runs=raw.baseline_runs,
        se=ev.se,
        method=raw.method,
        nonfinite_baseline=nf_base,
        nonfinite_candidate=nf_cand,
        nonfinite_both=raw.nonfinite[2],
        tasks=raw.tasks,
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
        suite = side.manifest.suite
        if policy.suite and suite and suite != policy.suite:
            warnings.append(
                f"run {side.label} scored suite {suite!r}; the policy gates {policy.suite!r}"
            )
    base_mean = mean_of_sides(pool_sides, _mean_label(pool_sides)) if select == "mean" else None
    skipped = (skipped_tasks(pool_sides), skipped_tasks(cand_sides))
    raws: list[_Raw] = []
    absent: list[str] = []
    for check in policy.checks:
        probe = base_mean if base_mean is not None else pool_sides[-1]
        tasks, missing = _scope_tasks(check, probe, cand, skipped)
        if not tasks or missing:
            what = "; ".join(missing) or f"no task with metric {check.metric!r} in either run"
            if check.required:
                raise EvalkitError(f"{check.label} (required): {what}")
            if not tasks:
                absent.append(check.label)
                warnings.append(
                    f"{check.label}: absent from the runs, skipped (not required): {what}"
                )
                continue
            warnings.append(
                f"{check.label}: decided on {', '.join(tasks)} only (not required): {what}"
            )
        if select == "best":
            base = _best_side(check, pool, pool_sides)
        elif base_mean is not None:
            base = base_mean
        else:
            base = pool_sides[-1]
        raw, notes = _evaluate(check, tasks, base, cand)
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
    outcomes, p_ni, p_reg = decide(
        [r.evidence for r in raws],
        [r.check for r in raws],
        policy.correction,
        [r.failed_nonfinite for r in raws],
    )
    results = tuple(
        _result(r, o, a, b, policy.correction)
        for r, o, a, b in zip(raws, outcomes, p_ni, p_reg, strict=True)
    )
    return GateVerdict(
        outcome=verdict_of(outcomes),
        checks=results,
        baseline=tuple(str(r.path) for r in pool),
        candidate=tuple(str(r.path) for r in candidate),
        baseline_select=select,
        policy=policy.source,
        suite=policy.suite,
        warnings=tuple(warnings),
        skipped_checks=tuple(absent),
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
