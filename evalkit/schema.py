"""What a run directory stores, as typed values (schema version 3).

A run is `manifest.json`, `samples.parquet` and `scores.parquet` (evalkit.store writes and reads
them). This module says what each holds, field by field, so that readers read fields and never
recover structure from a name:

- `ScoreRow`: one aggregate number. Its scope is explicit (`level`: a task, a family of tasks,
  an lm-eval group), its item subset is a mapping (`bucket`: {"k": 4}, {"length": 1024,
  "depth": 50}, {"language": "fr"}), and the task's headline metric is flagged (`primary`).
  `label` is the display name ("acc[k=4]", "recall[len=1024]") kept for people and for
  user-written selectors; code never parses it.
- `samples.parquet`: one row per (task, item) with the base columns below, a `metrics` struct
  column (every per-item metric) and a `tags` struct column (the item's tags), so tags are never
  found "by exclusion". A struct with no field cannot be written to parquet, so a run whose
  items carry no tag (or no metric) has no such column; readers treat it as empty.
- `Manifest`: the run's facts with one meaning per field (dtype requested vs resolved; the HF
  padded-batch budget vs vLLM's tokens per wave) and the run's `RunConfig` (version 3), from
  which it can be scored again.

Versions 1 (the format before this module) and 2 (no recorded config) are read through
`evalkit.migrate`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from evalkit.errors import EvalkitError
from evalkit.manifest import (  # noqa: F401 - re-exported: the run's schema is read here
    Manifest,
    TaskEntry,
    manifest_from_json,
    skipped_from_json,
)

SCHEMA_VERSION = 3

TagValue = str | int | float | bool
BucketKey = tuple[tuple[str, TagValue], ...]

# item: one evaluated item (samples.parquet); task: a task's aggregate; family: the unweighted
# mean over a family's tasks; group: an lm-eval group aggregated as lm-eval aggregates it.
Level = Literal["item", "task", "family", "group"]
LEVELS: tuple[Level, ...] = ("item", "task", "family", "group")

AGGREGATE_DISPLAY_PREFIX = "family:"

SAMPLE_BASE_COLUMNS = (
    "task",
    "doc_id",
    "prompt_hash",
    "loglikelihoods",
    "prediction",
    "target",
    "truncated",
)
SAMPLE_METRICS = "metrics"
SAMPLE_TAGS = "tags"

SCORE_COLUMNS = (
    "task",
    "family",
    "group",
    "level",
    "metric",
    "bucket",
    "label",
    "primary",
    "value",
    "ci_low",
    "ci_high",
    "ci_method",
    "n",
    "higher_is_better",
)


def bucket_key(bucket: Mapping[str, TagValue] | Sequence[tuple[str, TagValue]]) -> BucketKey:
    """A bucket as a hashable, ordered value (keys in the order given)."""
    pairs = bucket.items() if isinstance(bucket, Mapping) else bucket
    return tuple((str(k), v) for k, v in pairs)


@dataclass(frozen=True)
class ScoreRow:
    """One aggregate score with its 95% interval.

    - `task`: the task's name (level task); "" for family and group rows.
    - `family`: the task's family; for family rows the family itself; for group rows the
      family of the group's tasks (the name the user asked for).
    - `group`: the lm-eval group's name (level group); "" otherwise.
    - `metric`: the metric's own name ("acc", "recall", "acc_gap_en"), without its bucket.
    - `bucket`: the subset of items the row averages, as (tag, value) pairs; () for all items.
    - `primary`: the row a one-number summary of its task/family/group shows.
    - `label`: the display name; equals `metric` for a row without a bucket.
    - `ci_method`: how ci_low/ci_high were computed (evalkit.stats CI_* names).
    """

    task: str
    family: str
    metric: str
    value: float
    ci_low: float
    ci_high: float
    n: int
    higher_is_better: bool
    ci_method: str = ""
    level: Level = "task"
    bucket: BucketKey = ()
    primary: bool = False
    label: str = ""
    group: str = ""

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"unknown score level {self.level!r}")
        if not self.label:
            object.__setattr__(self, "label", self.metric)

    @property
    def scope(self) -> str:
        """The name of what the row scores: the task, family or group."""
        return {"task": self.task, "family": self.family, "group": self.group}.get(
            self.level, self.task
        )

    @property
    def display_task(self) -> str:
        """The task column as people read it: an aggregate row shows as `family:<name>`
        (rendered from the fields, never parsed back)."""
        return AGGREGATE_DISPLAY_PREFIX + self.scope if self.is_aggregate else self.task

    @property
    def bucket_map(self) -> dict[str, TagValue]:
        return dict(self.bucket)

    @property
    def is_aggregate(self) -> bool:
        """A family or group row (not one task's)."""
        return self.level in ("family", "group")


def with_primary(rows: Sequence[ScoreRow]) -> list[ScoreRow]:
    """`rows` with the first bucket-less row of each task/family/group flagged primary (the
    writers emit a scope's declared first metric first), unless one is flagged already."""
    from dataclasses import replace

    flagged = {(r.level, r.scope) for r in rows if r.primary}
    out = []
    for r in rows:
        key = (r.level, r.scope)
        if not r.bucket and key not in flagged:
            flagged.add(key)
            r = replace(r, primary=True)
        out.append(r)
    return out


def scores_table(rows: Sequence[ScoreRow]) -> Any:
    """scores.parquet's frame: one column per field; the bucket as a JSON object (parquet has
    no mapping whose values mix ints and strings; JSON keeps each value's type)."""
    import pandas as pd

    records = []
    for r in rows:
        records.append(
            {
                "task": r.task,
                "family": r.family,
                "group": r.group,
                "level": r.level,
                "metric": r.metric,
                "bucket": json.dumps(dict(r.bucket)),
                "label": r.label,
                "primary": r.primary,
                "value": float(r.value),
                "ci_low": float(r.ci_low),
                "ci_high": float(r.ci_high),
                "ci_method": r.ci_method,
                "n": int(r.n),
                "higher_is_better": bool(r.higher_is_better),
            }
        )
    return pd.DataFrame(records, columns=list(SCORE_COLUMNS))


def rows_from_table(frame: Any, where: str) -> tuple[ScoreRow, ...]:
    """The typed rows of a version-2 scores.parquet frame (an error naming `where` when a column
    is missing or a value has the wrong kind)."""
    missing = [c for c in SCORE_COLUMNS if c not in frame.columns]
    if missing:
        raise EvalkitError(f"damaged run directory {where}: scores.parquet lacks {missing}")
    out = []
    try:
        for r in frame.itertuples(index=False):
            bucket = json.loads(str(r.bucket))
            if not isinstance(bucket, dict):
                raise ValueError(f"bucket {r.bucket!r} is not a JSON object")
            out.append(
                ScoreRow(
                    task=str(r.task),
                    family=str(r.family),
                    metric=str(r.metric),
                    value=float(r.value),
                    ci_low=float(r.ci_low),
                    ci_high=float(r.ci_high),
                    n=int(r.n),
                    higher_is_better=bool(r.higher_is_better),
                    ci_method=str(r.ci_method),
                    level=str(r.level),  # type: ignore[arg-type]  # checked in __post_init__
                    bucket=bucket_key(bucket),
                    primary=bool(r.primary),
                    label=str(r.label),
                    group=str(r.group),
                )
            )
    except (TypeError, ValueError) as exc:
        raise EvalkitError(f"damaged run directory {where}: scores.parquet: {exc}") from None
    return tuple(out)


def as_manifest(m: Manifest | Mapping[str, Any], where: str = "manifest") -> Manifest:
    """`m` typed: a `Manifest` as it is; a mapping of manifest.json's keys (a caller's own
    record, possibly partial) read as the current version."""
    if isinstance(m, Manifest):
        return m
    return manifest_from_json({"schema_version": SCHEMA_VERSION, **m}, where)
