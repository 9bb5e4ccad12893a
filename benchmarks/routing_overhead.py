"""What routing statistics add to the scoring time of an MoE run.

    .venv/bin/python benchmarks/routing_overhead.py                       # bundled tiny-moe
    .venv/bin/python benchmarks/routing_overhead.py --checkpoint CKPT --tasks a,b --limit 100

Scores the same tasks with and without routing (no result cache, so every request reaches a
forward), alternating the two settings `--repeats` times, and prints per setting the median
scoring time (engine run + routing refill and statistics; model loading excluded) and the
overhead of routing relative to scoring without it, in wall seconds and in this process's
CPU seconds (one torch thread; CPU time is far less disturbed by a loaded machine). Not a test: timings on a shared machine
are not benchmarks, so say the load with the numbers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import evalkit

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "examples" / "checkpoints" / "tiny-moe"
TASKS = "reasoning_arith_mc,multilingual_number_words_mc,icl_induction,smoke_prose_bpb"


def one(ckpt: Path, tasks: list[str], limit: int, routing: bool, out: Path) -> tuple[float, float]:
    """(wall seconds of scoring + routing, CPU seconds of the whole call) for one run."""
    cpu = time.process_time()
    run = evalkit.score(
        ckpt,
        tasks=tasks,
        limit=limit,
        backend="hf",
        device="cpu",
        out=out,
        use_cache=False,
        progress=False,
        routing=routing,
    )
    t = run.manifest["timings"]
    extra = (run.manifest.get("routing") or {}).get("seconds", 0.0) if routing else 0.0
    return float(t["run_seconds"]) + float(extra), time.process_time() - cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, default=DEFAULT)
    p.add_argument("--tasks", default=TASKS)
    p.add_argument("--limit", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    tasks = args.tasks.split(",")
    import torch

    # One thread: CPU seconds then measure the work, not how busy the other cores are.
    torch.set_num_threads(1)
    times: dict[bool, list[float]] = {False: [], True: []}
    cpu: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for routing in (False, True):
                out = Path(tmp) / f"run-{r}-{int(routing)}"
                wall, used = one(args.checkpoint, tasks, args.limit, routing, out)
                times[routing].append(wall)
                cpu[routing].append(used)
    load = os.getloadavg()[0]
    print(f"checkpoint {args.checkpoint.name}, tasks {args.tasks}, limit {args.limit}, CPU")
    print(f"load average at the end: {load:.1f} (on {os.cpu_count()} cores), 1 torch thread")
    print()
    print("| routing | median scoring wall s | median CPU s (whole call) | runs, CPU s |")
    print("|---|---|---|---|")
    for routing in (False, True):
        print(
            f"| {'on' if routing else 'off'} | {statistics.median(times[routing]):.2f} | "
            f"{statistics.median(cpu[routing]):.2f} | "
            f"{', '.join(f'{x:.2f}' for x in cpu[routing])} |"
        )
    for name, table in (("wall", times), ("CPU", cpu)):
        off, on = statistics.median(table[False]), statistics.median(table[True])
        print(f"routing overhead ({name}): {100 * (on - off) / off:+.1f}%")
    print(f"\n(measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})")


if __name__ == "__main__":
    main()
