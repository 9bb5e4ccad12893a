"""Per-suite parity of two run directories (e.g. HF vs real vLLM on CPU), as a markdown table.

    python benchmarks/vllm_parity.py HF_RUN VLLM_RUN [HF_RUN VLLM_RUN ...]

Per suite: items, tasks, whether every item's prompt hash agrees, max |Δ log-likelihood| per
choice, max |Δ| of any numeric per-item metric, identical predictions, and the largest
|Δ| of any aggregate score. Reads only the run store.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from evalkit.store import read_run


def _row(hf: Path, vl: Path) -> str:
    m = json.loads((vl / "manifest.json").read_text())
    # Through the store: samples come back flat (one column per metric) for any schema version.
    h = read_run(hf).samples.sort_values(["task", "doc_id"])
    v = read_run(vl).samples.sort_values(["task", "doc_id"])
    same_items = list(h["prompt_hash"]) == list(v["prompt_hash"])
    dll = max(
        (
            float(np.abs(np.asarray(a, float) - np.asarray(b, float)).max())
            for a, b in zip(h["loglikelihoods"], v["loglikelihoods"], strict=True)
            if a is not None and len(a)
        ),
        default=0.0,
    )
    cols = [c for c in h.select_dtypes("number").columns if c != "doc_id"]
    rel = 0.0
    for c in cols:
        a, b = h[c].to_numpy(float), v[c].to_numpy(float)
        ok = ~(np.isnan(a) & np.isnan(b))
        if ok.any():
            rel = max(rel, float(np.abs(a - b)[ok].max()))
    preds = list(h["prediction"].astype(str)) == list(v["prediction"].astype(str))
    hs, vs = pd.read_parquet(hf / "scores.parquet"), pd.read_parquet(vl / "scores.parquet")
    dscore = float(np.nanmax(np.abs(hs["value"].to_numpy(float) - vs["value"].to_numpy(float))))
    skipped = sum(t.get("skipped_items", 0) for t in m["tasks"])
    return (
        f"| {m['suite']} | {len(m['tasks'])} | {len(v)} | {skipped} | {'yes' if same_items else 'NO'} "
        f"| {dll:.1e} | {rel:.1e} | {'yes' if preds else 'NO'} | {dscore:.1e} |"
    )


def main(argv: list[str]) -> None:
    if len(argv) < 2 or len(argv) % 2:
        raise SystemExit(__doc__)
    print(
        "| suite | tasks | items | skipped | same items (prompt hashes) | max abs Δ log-lik "
        "| max abs Δ item metric | same predictions | max abs Δ score |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for i in range(0, len(argv), 2):
        print(_row(Path(argv[i]), Path(argv[i + 1])))


if __name__ == "__main__":
    main(sys.argv[1:])
