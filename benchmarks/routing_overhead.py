"""What routing statistics add to the scoring time of an MoE run.

    .venv/bin/python benchmarks/routing_overhead.py                       # bundled tiny-moe
    .venv/bin/python benchmarks/routing_overhead.py --checkpoint CKPT --tasks a,b --limit 100

Scores the same tasks (no result cache, so every request reaches a forward) in three settings,
alternating them `--repeats` times: without routing; with routing of the run's items (the
checkpoint copied without its provenance); and with routing of items and of the provenance
slices' sample documents. Per setting it prints the least time over the repeats (the run least
disturbed by other processes) of scoring plus the routing step (model loading excluded), in
wall seconds and in this process's CPU seconds at one torch thread, the overhead relative to no
routing (CPU: of the whole call, loading included), and the routing step alone (`routing.seconds`: recompute, slice documents and
statistics). Not a test: on a shared machine say the load with the numbers; each run's line
has the 1-minute load average just before it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import evalkit

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "examples" / "checkpoints" / "tiny-moe"
TASKS = "reasoning_arith_mc,multilingual_number_words_mc,icl_induction,smoke_prose_bpb"
SETTINGS = ("off", "items", "items+slices")


def one(
    ckpt: Path, tasks: list[str], limit: int, routing: bool, out: Path
) -> tuple[float, float, float]:
    """(wall s of scoring + routing step, CPU s of the whole call, wall s of the routing step).
    The CPU seconds include building the tasks and loading the model (the same in every
    setting), so their overhead percentage understates the scoring's."""
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
    step = float((run.manifest.get("routing") or {}).get("seconds", 0.0)) if routing else 0.0
    return float(t["run_seconds"]) + step, time.process_time() - cpu, step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, default=DEFAULT)
    p.add_argument("--tasks", default=TASKS)
    p.add_argument("--limit", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    tasks = args.tasks.split(",")
    import torch

    # One thread: CPU seconds then measure the work, not how busy the other cores are.
    torch.set_num_threads(1)
    wall: dict[str, list[float]] = {k: [] for k in SETTINGS}
    cpu: dict[str, list[float]] = {k: [] for k in SETTINGS}
    step: dict[str, list[float]] = {k: [] for k in SETTINGS}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / "bare"
        shutil.copytree(args.checkpoint, bare, ignore=shutil.ignore_patterns("provenance.yaml"))
        one(bare, tasks, 2, False, Path(tmp) / "warmup")  # imports and first-call costs
        for r in range(args.repeats):
            for k in SETTINGS if r % 2 == 0 else SETTINGS[::-1]:
                ckpt = args.checkpoint if k == "items+slices" else bare
                load = os.getloadavg()[0]
                loads.append(load)
                w, c, s = one(ckpt, tasks, args.limit, k != "off", Path(tmp) / f"run-{r}-{k}")
                wall[k].append(w)
                cpu[k].append(c)
                step[k].append(s)
                print(f"repeat {r} {k:13s} wall {w:7.2f}  cpu {c:7.2f}  load {load:.1f}")
    print()
    print(f"checkpoint {args.checkpoint.name}, tasks {args.tasks}, limit {args.limit}, CPU")
    print(
        f"1-min load average before the runs: min {min(loads):.1f}, max {max(loads):.1f} "
        f"(on {os.cpu_count()} cores), 1 torch thread, {args.repeats} repeats alternating"
    )
    print()
    print("| routing | least wall s | overhead | least CPU s (call) | overhead | routing step s |")
    print("|---|---|---|---|---|---|")
    for k in SETTINGS:
        w, c = min(wall[k]), min(cpu[k])
        dw = 100 * (w - min(wall["off"])) / min(wall["off"])
        dc = 100 * (c - min(cpu["off"])) / min(cpu["off"])
        s = min(step[k]) if k != "off" else 0.0
        print(f"| {k} | {w:.2f} | {dw:+.1f}% | {c:.2f} | {dc:+.1f}% | {s:.2f} |")
    print(f"\n(measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})")


if __name__ == "__main__":
    main()
