"""Measured coverage of evalkit's intervals and the gate's error rates (docs/decisions.md).

    .venv/bin/python benchmarks/stats_coverage.py            # the tables in docs/decisions.md
    .venv/bin/python benchmarks/stats_coverage.py --quick    # fewer replications

Seeded; prints markdown tables. The same simulations run, with fewer replications, as tests
(tests/test_stats_coverage.py, tests/test_gate_errors.py, tests/test_attribute.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import coverage_sim as C  # noqa: E402
from test_gate_errors import REPS, _outcomes  # noqa: E402


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    reps = 500 if args.quick else 4000
    creps = 200 if args.quick else 1000

    print("## 0/1 score intervals (continuity-corrected Wilson), exact coverage\n")
    print(_row(["n", *[f"p={p}" for p in C.PS]]))
    print(_row(["---"] * (len(C.PS) + 1)))
    for n in C.NS:
        print(_row([str(n), *[f"{C.binary_score_coverage(n, p):.3f}" for p in C.PS]]))
    print("\nold percentile bootstrap, same grid (exact over outcomes):\n")
    print(_row(["n", *[f"p={p}" for p in C.PS]]))
    print(_row(["---"] * (len(C.PS) + 1)))
    for n in C.NS[:3]:
        cells = [f"{C.binary_score_coverage(n, p, 'percentile'):.3f}" for p in C.PS]
        print(_row([str(n), *cells]))

    print(f"\n## paired 0/1 deltas (Bonett-Price), {reps} replications, rho = 0 / 0.5, delta 0\n")
    print(_row(["n", *[f"p={p}" for p in C.PS]]))
    print(_row(["---"] * (len(C.PS) + 1)))
    for n in C.NS:
        cells = []
        for p in C.PS:
            a = C.paired_binary_coverage(n, p, 0.0, 0.0, reps, seed=n)[0]
            b = C.paired_binary_coverage(n, p, 0.5, 0.0, reps, seed=n + 1)[0]
            cells.append(f"{a:.3f} / {b:.3f}")
        print(_row([str(n), *cells]))
    print("\nwith a true delta of +0.05 (rho 0.3):\n")
    for n in C.NS:
        cover = [C.paired_binary_coverage(n, p, 0.3, 0.05, reps, seed=7)[0] for p in (0.3, 0.5)]
        print(f"- n = {n}: p = 0.3: {cover[0]:.3f}, p = 0.5: {cover[1]:.3f}")

    print(f"\n## continuous score intervals (studentized bootstrap), {creps} replications\n")
    ns = (10, 20, 100)
    print(_row(["distribution", *[f"n={n}" for n in ns], "old percentile, n=20"]))
    print(_row(["---"] * (len(ns) + 2)))
    for dist in C.CONTINUOUS:
        cells = [f"{C.continuous_score_coverage(dist, n, creps, seed=n):.3f}" for n in ns]
        old = C.continuous_score_coverage(dist, 20, creps, seed=20, method="percentile")
        print(_row([dist, *cells, f"{old:.3f}"]))

    print(f"\n## clustered items (25 clusters x 8), {creps} replications\n")
    for binary in (True, False):
        naive = C.clustered_coverage(binary, False, creps, seed=3)
        robust = C.clustered_coverage(binary, True, creps, seed=3)
        kind = "0/1 (Wilson at n / deff)" if binary else "continuous (cluster bootstrap-t)"
        print(f"- {kind}: item method {naive:.3f}, cluster method {robust:.3f}")

    print(f"\n## gate decisions at the margin (0.02), {REPS} replications each\n")
    print(_row(["truth", "n", "metric", "checks", "regression", "pass"]))
    print(_row(["---"] * 6))
    for n, binary, checks, delta in (
        (1000, True, 1, -0.02),
        (4000, True, 1, -0.02),
        (200, False, 1, -0.02),
        (1000, True, 10, -0.02),
        (1000, True, 10, 0.0),
    ):
        v = _outcomes(n, delta, binary=binary, checks=checks, seed=n + checks)
        print(
            _row(
                [
                    f"Δ = {delta:+.2f}",
                    str(n),
                    "0/1" if binary else "continuous",
                    str(checks),
                    f"{v.count('regression') / REPS:.3f}",
                    f"{v.count('pass') / REPS:.3f}",
                ]
            )
        )


if __name__ == "__main__":
    main()
