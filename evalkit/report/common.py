"""Small helpers that more than one report section uses (sections.py, changes.py): kept here so
no section module reaches into another's private names."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from evalkit.manifest_records import CheckpointRef
from evalkit.store import RunData

# Per-item metrics that every multiple-choice task has; anything else a task reports over all its
# items is one of its own summaries (slope over k, label sensitivity, induction gain...).
ITEM_METRICS = frozenset(
    [
        "acc",
        "acc_norm",
        "p_correct",
        "p_correct_char",
        "prob_correct",
        "margin",
        "margin_char",
        "bpb",
        "exact_match",
    ]
)


def slug(text: str) -> str:
    """A file-name-safe form of a title (plot file names)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def training_position(runs: Sequence[RunData]) -> tuple[str, list[float]]:
    """Where each run sits on the training axis, and the axis' name: tokens seen, else step
    (from the provenance, when every run has a distinct one), else the order given."""
    cks = [r.manifest.provenance.checkpoint if r.manifest.provenance else None for r in runs]
    axes: tuple[tuple[str, Callable[[CheckpointRef], int | None]], ...] = (
        ("training tokens seen", lambda c: c.tokens_seen),
        ("training step", lambda c: c.step),
    )
    for label, read in axes:
        vals = [read(c) if c is not None else None for c in cks]
        nums = [float(v) for v in vals if v is not None]
        if len(nums) == len(vals) and len(set(nums)) == len(nums):
            return label, nums
    return "run (order given)", [float(i) for i in range(len(runs))]
