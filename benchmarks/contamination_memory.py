"""Peak memory of the contamination scan: streams N slice documents past the n-gram index.

    .venv/bin/python benchmarks/contamination_memory.py                # 100,000 documents
    .venv/bin/python benchmarks/contamination_memory.py --docs 10000   # compare: same peak

Writes N Dolma-format documents (synthetic prose, arithmetic and key-value text like the
bundled slices, ~60 words each; one in every 1,000 contains an eval item verbatim) to a gzipped
JSONL file, generating them one at a time, then indexes the items of the `attribution` suite
and streams the file past the index. Prints the peak resident set size (ru_maxrss) before and
after the scan, the documents scanned and the items flagged. Not a test: nothing is timed
under pytest, and timings on a shared machine are not benchmarks.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

from evalkit.analysis.contamination import EvalText, GramIndex, scan_slices
from evalkit.tasks.registry import load_suite, resolve_tasks

WORDS = [
    "the",
    "quiet",
    "river",
    "carries",
    "a",
    "small",
    "boat",
    "near",
    "hill",
    "in",
    "morning",
    "bright",
    "farmer",
    "finds",
    "old",
]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def write_docs(path: Path, n: int, planted: list[str], seed: int = 0) -> None:
    rng = random.Random(seed)
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for i in range(n):
            kind = i % 3
            if kind == 0:
                text = " ".join(rng.choice(WORDS) for _ in range(60))
            elif kind == 1:
                text = "\n".join(
                    f"{rng.randint(100, 199)} + {rng.randint(100, 199)} = {rng.randint(200, 398)}"
                    for _ in range(12)
                )
            else:
                text = "\n".join(
                    f"key k{rng.randint(0, 999)} is {rng.randint(10, 99)}." for _ in range(12)
                )
            if i % 1000 == 0 and planted:
                text += "\n" + planted[(i // 1000) % len(planted)]
            rec = {"id": f"d{i}", "text": text, "source": "bench", "added": "", "metadata": {}}
            fh.write(json.dumps(rec) + "\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=100_000)
    p.add_argument("--n", type=int, default=13)
    p.add_argument("--suite", default="attribution")
    args = p.parse_args()
    texts = [
        EvalText(t.name, it.doc_id, f"{it.prompt} {it.target}")
        for t in resolve_tasks(list(load_suite(args.suite).tasks))
        for it in t.items()
    ]
    planted = [t.text for t in texts[::50]]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "slice.jsonl.gz"
        write_docs(path, args.docs, planted)
        before = peak_rss_mib()
        index = GramIndex(texts, args.n)
        t0 = time.perf_counter()
        flags, scans = scan_slices(index, [("bench", path)])
        seconds = time.perf_counter() - t0
        after = peak_rss_mib()
    flagged = sum(1 for f in flags if f)
    print(
        f"items {len(texts)} ({index.grams} grams), documents {scans[0].documents}, "
        f"file {path.name}\n"
        f"peak RSS before scan {before:.1f} MiB, after scan {after:.1f} MiB "
        f"(growth {after - before:.1f} MiB)\n"
        f"items flagged {flagged} (planted {len(planted)}), scan {seconds:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
