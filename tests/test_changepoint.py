"""`evalkit.analysis.changepoint`: the largest jump between consecutive checkpoints.

Positive control: a clear step is found between the right two checkpoints, in either
direction, whatever order the points are given in. Negative control: flat noise (intervals
that overlap everywhere) is never called a change. The fast answer is checked against the
obvious one (every pair compared by hand) on random trajectories."""

from __future__ import annotations

import random

import pytest

from evalkit.analysis.changepoint import Change, Point, describe, summarize_changes
from evalkit.errors import EvalkitError


def pt(label: str, x: float, v: float, half: float = 0.02) -> Point:
    return Point(label, x, v, v - half, v + half)


STEP = [pt("s1", 1e5, 0.01), pt("s2", 2e5, 0.02), pt("s3", 3e5, 0.05), pt("s4", 4e5, 0.8),
        pt("s5", 5e5, 0.95), pt("s6", 6e5, 0.97)]  # fmt: skip


def test_a_clear_jump_is_found_between_the_right_checkpoints() -> None:
    s = summarize_changes(STEP)
    big = s.largest
    assert big is not None
    assert (big.before.label, big.after.label) == ("s3", "s4")
    assert big.delta == pytest.approx(0.75) and big.disjoint
    text = describe(s, "task copy_acc", "training tokens seen")
    assert "between `s3`" in text and "and `s4`" in text and "are disjoint" in text
    assert "+0.75" in text


def test_position_decides_the_order_not_the_order_given() -> None:
    shuffled = random.Random(0).sample(STEP, len(STEP))
    big = summarize_changes(shuffled).largest
    assert big is not None and (big.before.label, big.after.label) == ("s3", "s4")
    # the same values at other positions move the change: the axis is really read
    moved = [
        Point(p.label, x, p.value, p.low, p.high)
        for p, x in zip(STEP, [1, 2, 6, 4, 5, 3], strict=True)
    ]
    big = summarize_changes(moved).largest
    assert big is not None and (big.before.label, big.after.label) != ("s3", "s4")


def test_a_drop_is_a_change_too() -> None:
    down = [Point(p.label, p.x, 1 - p.value, 1 - p.high, 1 - p.low) for p in STEP]
    big = summarize_changes(down).largest
    assert big is not None and (big.before.label, big.after.label) == ("s3", "s4")
    assert big.delta == pytest.approx(-0.75)


def test_flat_noise_is_no_change_whose_intervals_are_disjoint() -> None:
    rng = random.Random(1)
    flat = [pt(f"s{i}", i, 0.5 + rng.uniform(-0.03, 0.03), half=0.1) for i in range(8)]
    s = summarize_changes(flat)
    assert s.largest is not None and not s.largest.disjoint
    assert s.largest_disjoint is None
    assert "no change whose 95% CIs are disjoint" in describe(s, "m", "step")


def test_the_largest_jump_with_overlapping_intervals_names_the_largest_disjoint_one() -> None:
    pts = [Point("a", 0, 0.0, -0.5, 0.5), Point("b", 1, 0.4, -0.1, 0.9),  # big, overlapping
           Point("c", 2, 0.7, 0.68, 0.72), Point("d", 3, 0.9, 0.88, 0.92)]  # fmt: skip
    s = summarize_changes(pts)
    assert s.largest is not None and (s.largest.before.label, s.largest.disjoint) == ("a", False)
    assert s.largest_disjoint is not None and s.largest_disjoint.before.label == "c"
    assert "disjoint is between `c` and `d`" in describe(s, "m", "step")


def test_touching_or_missing_intervals_are_not_disjoint() -> None:
    assert not Change(Point("a", 0, 0.1, 0.0, 0.2), Point("b", 1, 0.3, 0.2, 0.4)).disjoint
    assert Change(Point("a", 0, 0.1, 0.0, 0.2), Point("b", 1, 0.3, 0.21, 0.4)).disjoint
    nan = float("nan")
    assert not Change(Point("a", 0, 0.1, nan, nan), Point("b", 1, 0.9, 0.8, 1.0)).disjoint


def test_missing_values_are_skipped_and_ties_in_position_are_an_error() -> None:
    nan = float("nan")
    s = summarize_changes([pt("a", 0, 0.1), Point("b", 1, nan, nan, nan), pt("c", 2, 0.9)])
    assert [p.label for p in s.points] == ["a", "c"]
    assert summarize_changes([pt("a", 0, 0.1)]).largest is None
    assert "fewer than two" in describe(summarize_changes([]), "m", "step")
    with pytest.raises(EvalkitError, match="same training position"):
        summarize_changes([pt("a", 1, 0.1), pt("b", 1, 0.9)])


def test_largest_change_equals_the_obvious_search() -> None:
    rng = random.Random(2)
    for _ in range(200):
        n = rng.randint(2, 9)
        xs = rng.sample(range(1000), n)
        pts = [pt(f"p{x}", x, rng.random(), half=rng.uniform(0, 0.2)) for x in xs]
        by_x = sorted(pts, key=lambda p: p.x)
        first, best = ("", ""), -1.0
        for i in range(len(by_x) - 1):  # strictly larger: the earlier pair wins a tie
            if abs(by_x[i + 1].value - by_x[i].value) > best:
                best = abs(by_x[i + 1].value - by_x[i].value)
                first = (by_x[i].label, by_x[i + 1].label)
        big = summarize_changes(pts).largest
        assert big is not None and (big.before.label, big.after.label) == first
