"""Score rows as people read them (one frame, aggregate rows shown `family:<name>`, metrics by
their display label): what the tests that compare or print whole score tables look at."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from evalkit.schema import ScoreRow

COLUMNS = ["task", "family", "metric", "value", "ci_low", "ci_high", "n", "higher_is_better",
           "ci_method"]  # fmt: skip


def display_frame(rows: Sequence[ScoreRow]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"task": r.display_task, "family": r.family, "metric": r.label, "value": r.value,
             "ci_low": r.ci_low, "ci_high": r.ci_high, "n": r.n,
             "higher_is_better": r.higher_is_better, "ci_method": r.ci_method}
            for r in rows
        ],
        columns=COLUMNS,
    )  # fmt: skip


@dataclass(frozen=True)
class DisplayRow:
    """One score row as shown (version 1's `Score`): `task` is `family:<name>` for an
    aggregate row, `metric` the display label."""

    task: str
    family: str
    metric: str
    value: float
    ci_low: float
    ci_high: float
    n: int
    higher_is_better: bool
    ci_method: str = ""


def display_rows(rows: Sequence[ScoreRow]) -> list[DisplayRow]:
    return [DisplayRow(r.display_task, r.family, r.label, r.value, r.ci_low, r.ci_high, r.n,
                       r.higher_is_better, r.ci_method) for r in rows]  # fmt: skip
