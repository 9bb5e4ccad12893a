"""Peak memory of opening the run catalog and querying it, against the items the runs hold.

    .venv/bin/python benchmarks/catalog_memory.py                     # 8 runs x 10k / 200k items
    .venv/bin/python benchmarks/catalog_memory.py --runs 4 --items 1000 100000 1000000

Writes `--runs` version-2 run directories per size (each: a manifest, a few score rows, and a
samples.parquet of N items with `metrics` {acc, bpb} and `tags` {lang, length} structs), then, in
a fresh process per size and mode, opens the catalog (`evalkit.catalog.connect`), lists the
runs, aggregates the items (`SELECT task, avg(acc) ... FROM samples GROUP BY task`) and prints
its resident set size at start (before DuckDB and pandas load), once the catalog is open, and
at its peak (VmHWM). Mode `catalog` is evalkit's catalog: the items stay in
their parquet files behind a DuckDB view, so its peak should stay flat as N grows. Mode `eager`
is what the catalog did before (every run read into memory with `evalkit.store.read_run`), for
comparison. Not a test: nothing is timed under pytest, and numbers on a shared machine are rough.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from evalkit.schema import ScoreRow
from evalkit.store import MANIFEST, SAMPLES, SCORES, scores_frame


def peak_rss_mib() -> float:
    """This process's peak resident set size. VmHWM, not ru_maxrss: on Linux a child's
    ru_maxrss starts from its parent's peak (it survives exec), and the parent wrote the runs."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def write_run(path: Path, items: int, step: int) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(step)
    path.mkdir(parents=True)
    tasks = np.array(["arith", "words"])[np.arange(items) % 2]
    metrics = pa.StructArray.from_arrays(
        [pa.array((rng.random(items) < 0.6).astype(float)), pa.array(rng.random(items) * 3)],
        names=["acc", "bpb"],
    )
    tags = pa.StructArray.from_arrays(
        [pa.array(np.array(["en", "fr", "de"])[np.arange(items) % 3]),
         pa.array((np.arange(items) % 4 + 1) * 256)],
        names=["lang", "length"],
    )  # fmt: skip
    table = pa.table(
        {
            "task": pa.array(tasks),
            "doc_id": pa.array(np.arange(items)),
            "prompt_hash": pa.array([f"{i:016x}" for i in range(items)]),
            "loglikelihoods": pa.array([[-1.0, -2.0]] * items, pa.list_(pa.float64())),
            "prediction": pa.array(["0"] * items),
            "target": pa.array(["1"] * items),
            "truncated": pa.array([False] * items),
            "metrics": metrics,
            "tags": tags,
        }
    )
    pq.write_table(table, path / SAMPLES)
    rows = [
        ScoreRow(t, "bench", "acc", 0.6, 0.5, 0.7, items // 2, True, primary=True)
        for t in ("arith", "words")
    ]
    scores_frame(rows).to_parquet(path / SCORES, index=False)
    manifest = {
        "schema_version": 2,
        "model_fingerprint": "bench",
        "checkpoint": f"/ckpts/step{step}",
        "suite": "bench",
        "created": "2026-01-01T00:00:00",
        "provenance": {"checkpoint": {"run": "bench", "step": step}},
    }
    (path / MANIFEST).write_text(json.dumps(manifest))


def measure(root: Path, mode: str) -> None:
    """In this (fresh) process: open, query, print the peak RSS as JSON."""
    base = peak_rss_mib()
    if mode == "catalog":
        from evalkit.catalog import connect

        con = connect(root)
        n_runs = con.execute("SELECT count(*) FROM runs").fetchone()[0]
        opened = peak_rss_mib()
        means = con.execute("SELECT task, avg(acc) FROM samples GROUP BY task").fetchall()
        con.close()
    else:
        from evalkit.catalog import catalog_runs
        from evalkit.store import read_run

        stored = [read_run(p) for p in catalog_runs(root)]
        n_runs = len(stored)
        opened = peak_rss_mib()
        means = [
            (t, float(v)) for r in stored for t, v in r.samples.groupby("task").acc.mean().items()
        ]
    print(json.dumps({"runs": n_runs, "base": base, "opened": opened, "peak": peak_rss_mib(),
                      "groups": len(means)}))  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=8)
    p.add_argument("--items", type=int, nargs="+", default=[10_000, 200_000])
    p.add_argument("--modes", nargs="+", default=["catalog", "eager"])
    p.add_argument("--measure", nargs=2, metavar=("ROOT", "MODE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.measure:
        measure(Path(args.measure[0]), args.measure[1])
        return 0
    print(f"{'items/run':>10} {'runs':>5} {'mode':>8} {'start MiB':>11} {'opened MiB':>11} "
          f"{'peak MiB':>9} {'parquet MiB':>12}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for items in args.items:
            root = Path(tmp) / f"n{items}"
            for i in range(args.runs):
                write_run(root / f"step{i}", items, step=1000 * (i + 1))
            size = sum(f.stat().st_size for f in root.rglob(SAMPLES)) / 2**20
            for mode in args.modes:
                out = subprocess.run(
                    [sys.executable, __file__, "--measure", str(root), mode],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                m = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"{items:>10} {m['runs']:>5} {mode:>8} {m['base']:>11.1f} "
                      f"{m['opened']:>11.1f} {m['peak']:>9.1f} {size:>12.1f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
