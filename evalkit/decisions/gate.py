"""`gate`: a candidate run against a baseline under a policy, from stored runs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evalkit.decisions.targets import PathLike, runs_at
from evalkit.errors import EvalkitError


def gate(
    baseline: PathLike | Sequence[PathLike],
    candidate: PathLike | Sequence[PathLike],
    policy: PathLike | Any,
    *,
    baseline_select: str | None = None,
    baseline_last: int | None = None,
) -> Any:
    """Gate a candidate run against a baseline under a policy; returns a `GateVerdict`
    (`.outcome`, `.exit_code`, `.checks`).

    `baseline` is a run, several runs, or a folder of a training run's runs; with several,
    `baseline_select` picks `latest` (default), `mean` (item-wise mean of the last
    `baseline_last`) or `best` (per check, the best of the last `baseline_last`). Several
    candidate runs are averaged item by item.
    """
    from evalkit.analysis.gate import Policy, gate_runs, load_policy
    from evalkit.store import read_run

    def runs_of(x: PathLike | Sequence[PathLike], what: str) -> list[Path]:
        items = [x] if isinstance(x, str | Path) else list(x)
        if not items:
            raise EvalkitError(f"no {what} given")
        return [p for item in items for p in runs_at(item, what)]

    pol = policy if isinstance(policy, Policy) else load_policy(Path(policy))
    base_runs = [read_run(p) for p in runs_of(baseline, "baseline run")]
    cand_runs = [read_run(p) for p in runs_of(candidate, "candidate run")]
    return gate_runs(
        base_runs,
        cand_runs,
        pol,
        select=baseline_select,  # type: ignore[arg-type]
        last=baseline_last,
    )
