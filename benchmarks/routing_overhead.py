"""What routing statistics add to the scoring time of an MoE run.

    .venv/bin/python benchmarks/routing_overhead.py                       # bundled tiny-moe
    .venv/bin/python benchmarks/routing_overhead.py --checkpoint CKPT --tasks a,b --limit 100

Scores the same tasks without routing, with routing of the run's items (the checkpoint without
its provenance), and with routing of items and provenance slices' sample documents (no result cache, so every request reaches a
forward), alternating the two settings `--repeats` times, and prints per setting the median
scoring time (engine run + routing refill and statistics; model loading excluded) and the
overhead of routing relative to scoring without it, in wall seconds and in this process's
CPU seconds (one torch thread; CPU time is far less disturbed by a loaded machine). Not a test: timings on a shared machine
are not benchmarks, so say the load with the numbers.
"""

from __future__ import annotations

import argparse
import os
import shutil
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
    # "items": the run's own scored tokens (the checkpoint copied without provenance.yaml);
    # "items+slices": also each provenance slice's sample documents, an extra scoring pass.
    settings = ("off", "items", "items+slices")
    times: dict[str, list[float]] = {k: [] for k in settings}
    cpu: dict[str, list[float]] = {k: [] for k in settings}
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / "bare"
        shutil.copytree(args.checkpoint, bare, ignore=shutil.ignore_patterns("provenance.yaml"))
        for r in range(args.repeats):
            for k in settings:
                ckpt = args.checkpoint if k == "items+slices" else bare
                out = Path(tmp) / f"run-{r}-{k}"
                wall, used = one(ckpt, tasks, args.limit, k != "off", out)
                times[k].append(wall)
                cpu[k].append(used)
    load = os.getloadavg()[0]
    print(f"checkpoint {args.checkpoint.name}, tasks {args.tasks}, limit {args.limit}, CPU")
    print(f"load average at the end: {load:.1f} (on {os.cpu_count()} cores), 1 torch thread")
    print()
    print("| routing | median scoring wall s | median CPU s (whole call) | runs, CPU s |")
    print("|---|---|---|---|")
    for k in settings:
        print(
            f"| {k} | {statistics.median(times[k]):.2f} | {statistics.median(cpu[k]):.2f} | "
            f"{', '.join(f'{x:.2f}' for x in cpu[k])} |"
        )
    for k in settings[1:]:
        for name, table in (("wall", times), ("CPU", cpu)):
            off, on = statistics.median(table["off"]), statistics.median(table[k])
            print(f"overhead of routing ({k}, {name}): {100 * (on - off) / off:+.1f}%")
    print(f"\n(measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})")


if __name__ == "__main__":
    main()
