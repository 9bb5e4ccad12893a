"""Where a metric changed most over training: the largest jump between consecutive checkpoints.

Input is one metric's trajectory (a value with its confidence interval per checkpoint, at a
position on the training axis: tokens seen, step, or the given order). Output is every
consecutive change and the largest one by magnitude, with whether the two checkpoints'
intervals are disjoint. Disjoint intervals are a conservative sign of a real change (two
overlapping 95% intervals can still differ significantly); overlapping ones are reported as
such, never as a change. Nothing here knows which task or metric it is looking at.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from evalkit.errors import EvalkitError


@dataclass(frozen=True)
class Point:
    """One checkpoint's score: its label, position on the training axis, value and CI."""

    label: str
    x: float
    value: float
    low: float
    high: float


@dataclass(frozen=True)
class Change:
    """From one checkpoint to the next one on the training axis."""

    before: Point
    after: Point

    @property
    def delta(self) -> float:
        return self.after.value - self.before.value

    @property
    def disjoint(self) -> bool:
        """The two intervals do not overlap (touching endpoints count as overlapping)."""
        a, b = self.before, self.after
        if not _finite(a.low, a.high, b.low, b.high):
            return False
        return a.high < b.low or b.high < a.low


@dataclass(frozen=True)
class ChangeSummary:
    points: tuple[Point, ...]  # sorted by position; points without a finite value left out
    changes: tuple[Change, ...]  # each consecutive pair, in training order

    @property
    def largest(self) -> Change | None:
        """The consecutive change of largest magnitude (the earlier one on a tie)."""
        return _biggest(self.changes)

    @property
    def largest_disjoint(self) -> Change | None:
        """The largest change whose two intervals are disjoint, if any is."""
        return _biggest([c for c in self.changes if c.disjoint])


def _biggest(changes: Sequence[Change]) -> Change | None:
    if not changes:
        return None
    best = max(range(len(changes)), key=lambda i: (abs(changes[i].delta), -i))
    return changes[best]


def _finite(*xs: float) -> bool:
    return all(isinstance(x, int | float) and math.isfinite(x) for x in xs)


def summarize_changes(points: Sequence[Point]) -> ChangeSummary:
    """Sort the points by position and pair each with the next. A point without a finite value
    is a checkpoint that lacks the metric and is skipped; one without a finite interval (a
    single item) is kept, but no change to or from it counts as disjoint. Two points at the
    same position cannot be ordered and are an error."""
    kept = sorted((p for p in points if _finite(p.value)), key=lambda p: p.x)
    for p in kept:
        if not _finite(p.x):
            raise EvalkitError(f"checkpoint {p.label} has no position on the training axis")
    for a, b in pairwise(kept):
        if a.x == b.x:
            raise EvalkitError(
                f"checkpoints {a.label} and {b.label} are at the same training position {a.x:g}"
            )
    changes = tuple(Change(a, b) for a, b in pairwise(kept))
    return ChangeSummary(tuple(kept), changes)


def _g(x: float) -> str:
    return f"{x:.3g}"


def describe(summary: ChangeSummary, what: str, axis: str, level: float = 0.95) -> str:
    """One sentence: where the largest change is, by how much, and whether its CIs are disjoint.

    `what` names the metric (e.g. "icl_induction copy_acc"), `axis` the position (e.g.
    "training tokens seen")."""
    big = summary.largest
    if big is None:
        return f"{what}: fewer than two checkpoints have it, so no change to locate."
    a, b = big.before, big.after
    ci = f"{level:.0%} CIs"
    head = (
        f"Largest change in {what}: between `{a.label}` ({axis} {_g(a.x)}) and `{b.label}` "
        f"({_g(b.x)}), {_g(a.value)} [{_g(a.low)}, {_g(a.high)}] → {_g(b.value)} "
        f"[{_g(b.low)}, {_g(b.high)}] ({big.delta:+.3g})"
    )
    if big.disjoint:
        return f"{head}; the two {ci} are disjoint."
    other = summary.largest_disjoint
    if other is None:
        return f"{head}; the two {ci} overlap: no change whose {ci} are disjoint."
    return (
        f"{head}; the two {ci} overlap. The largest change whose {ci} are disjoint is between "
        f"`{other.before.label}` and `{other.after.label}` ({other.delta:+.3g})."
    )
