"""The parity guard's arithmetic, without a model: sampling, tolerances, failing loudly."""

from __future__ import annotations

import pytest

from evalkit.backends.base import ScoringGroup, TokenScore
from evalkit.backends.guard import SAMPLE_GROUPS, ParityGuard, sample
from evalkit.errors import EvalkitError


def _groups(n: int) -> list[ScoringGroup]:
    return [ScoringGroup((1, 2, i + 3), ((4,), (5, 6))) for i in range(n)]


def _fast(groups: list[ScoringGroup], delta: float) -> list[tuple[TokenScore, ...]]:
    out = []
    for g in groups:
        scores = []
        for c in g.continuations:
            lps = tuple(-1.0 + (delta if i == 0 else 0.0) for i in range(len(c)))
            scores.append(TokenScore(sum(lps), len(c), False, lps, tuple(False for _ in c)))
        out.append(tuple(scores))
    return out


def _guard(dtype: str = "float32", enabled: bool = True) -> ParityGuard:
    return ParityGuard(
        enabled=enabled,
        dtype=dtype,
        architecture="toy",
        path="packed",
        reference=lambda g: [[-1.0] * len(c) for c in g.continuations],
        reference_name="constant",
    )


def test_sample_spreads_over_the_batch_and_is_deterministic() -> None:
    assert sample(_groups(3), 8) == [0, 1, 2]
    picked = sample(_groups(100), 8)
    assert picked[0] == 0 and picked[-1] == 99 and len(picked) == 8
    assert picked == sample(_groups(100), 8)
    assert sample(_groups(5), 1) == [0] and sample([], 8) == []


def test_equal_paths_pass_and_the_sample_is_capped() -> None:
    guard = _guard()
    guard.check(_groups(5), _fast(_groups(5), 0.0))
    guard.check(_groups(10), _fast(_groups(10), 0.0))  # only 3 more groups are looked at...
    assert guard.report().status == "passed"
    assert guard.report().groups == SAMPLE_GROUPS
    guard.check(_groups(10), _fast(_groups(10), 5.0))  # ...and then none
    assert guard.done


@pytest.mark.parametrize(("dtype", "delta"), [("float32", 2e-4), ("bfloat16", 0.3)])
def test_a_difference_over_tolerance_stops_the_run(dtype: str, delta: float) -> None:
    guard = _guard(dtype)
    with pytest.raises(EvalkitError, match=r"parity guard: toy on the packed path"):
        guard.check(_groups(2), _fast(_groups(2), delta))


@pytest.mark.parametrize(("dtype", "delta"), [("float32", 5e-5), ("bfloat16", 0.2)])
def test_a_difference_under_tolerance_passes(dtype: str, delta: float) -> None:
    guard = _guard(dtype)
    guard.check(_groups(2), _fast(_groups(2), delta))
    report = guard.report()
    assert report.status == "passed" and report.max_abs_diff == pytest.approx(delta)


def test_nan_fails_and_off_is_recorded() -> None:
    with pytest.raises(EvalkitError):
        _guard().check(_groups(1), _fast(_groups(1), float("nan")))
    off = _guard(enabled=False)
    off.check(_groups(2), _fast(_groups(2), 9.0))
    assert off.report().status == "off (--no-guard)"
    assert _guard().report().status.startswith("not run")
