"""Two evalkit-side costs of the vs-lmeval MMLU-like run, each old way vs new way, alternating.

1. Building an lm-eval task's items: lm-eval compiles its Jinja template on every
   `apply_template` call (~7 per five-shot document); evalkit now compiles each source once
   (`evalkit/tasks/lmeval_templates.py`). Measured: `LMEvalTask.items()` for the task with the
   cache and with it swapped for a no-op.
2. The parity guard's reference: one plain row per continuation (before) vs one row per distinct
   sequence (`guard.plain_rows`: one-token choices share the context row). Measured: the 8
   sampled groups' reference forwards through the backend, both ways, same numbers checked.

Uses the vs_lmeval benchmark's checkpoint and tasks (built under --out if absent).

    .venv/bin/python benchmarks/evalkit_overheads.py [--out benchmarks/out] [--docs 500] [--repeats 3]

Prints per measurement the least wall and process-CPU seconds over the repeats and the load
average; timing on a loaded machine is indicative only (CPU seconds suffer less than wall).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w, time.process_time() - c, out


def per_continuation_rows(backend: Any, group: Any) -> list[list[float]]:
    """The guard's reference as it was: one right-padded row per continuation."""
    import torch

    rows = [(list(group.context) + list(c))[:-1] for c in group.continuations]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), backend.tokenizer.pad_token_id, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
    hidden = backend.forward.decoder(input_ids=ids).last_hidden_state
    n_ctx = len(group.context)
    out = []
    for i, c in enumerate(group.continuations):
        cols = list(range(n_ctx - 1, n_ctx - 1 + len(c)))
        out.append(backend.forward.token_scores(hidden, [i] * len(c), cols, list(c))[0])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE / "out")
    ap.add_argument("--docs", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("HF_HOME", str(args.out / "hf_home"))
    for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(k, "1")
    import torch
    import vs_lmeval

    from evalkit.backends.base import ScoringGroup
    from evalkit.backends.guard import SAMPLE_GROUPS, sample
    from evalkit.backends.hf import HFBackend
    from evalkit.encoding import Encoder
    from evalkit.tasks import lmeval as adapter
    from evalkit.tasks.lmeval_load import load_lmeval_tasks

    ckpt = args.out / "checkpoint"
    vs_lmeval.ensure_checkpoint(ckpt)
    tasks_dir = args.out / f"tasks-{args.docs}"
    if not tasks_dir.exists():
        vs_lmeval.write_tasks(tasks_dir, args.docs, vs_lmeval.load_tokenizer(ckpt))
    (task,) = load_lmeval_tasks([vs_lmeval.MMLU_TASK], tasks_dir)
    cached = adapter.compiled_once

    def build(cache: bool) -> Any:
        adapter.compiled_once = cached if cache else contextlib.nullcontext  # type: ignore[assignment]
        try:
            return task.items()
        finally:
            adapter.compiled_once = cached

    backend = HFBackend(ckpt, device="cpu", dtype="float32", guard=False)
    results: dict[str, list[tuple[float, float]]] = {}
    items = build(True)
    assert items == build(False), "the template cache changed the items"
    enc = Encoder(backend.tokenizer)
    groups = []
    for it in items:
        units = [enc.pair(r.context, r.continuation) for r in it.requests]  # type: ignore[attr-defined]
        groups.append(ScoringGroup(units[0][0], tuple(u[1] for u in units)))
    picked = [groups[i] for i in sample(groups, SAMPLE_GROUPS)]
    with torch.inference_mode():
        for g in picked:
            a, b = per_continuation_rows(backend, g), backend.forward.plain_logprobs(g)
            assert (
                max(
                    abs(x - y) for p, q in zip(a, b, strict=True) for x, y in zip(p, q, strict=True)
                )
                < 1e-5
            )
    loads = []
    for _ in range(args.repeats):
        for name, fn in (
            ("items, compile per call (before)", lambda: build(False)),
            ("items, compiled once (after)", lambda: build(True)),
            ("guard reference, row per continuation (before)",
             lambda: [per_continuation_rows(backend, g) for g in picked]),
            ("guard reference, plain_rows (after)",
             lambda: [backend.forward.plain_logprobs(g) for g in picked]),
        ):  # fmt: skip
            loads.append(os.getloadavg()[0])
            with torch.inference_mode():
                w, c, _ = timed(fn)
            results.setdefault(name, []).append((w, c))
    print(f"\n{len(items)} MMLU-like docs, {len(picked)} guard groups, torch threads "
          f"{torch.get_num_threads()}, load average {min(loads):.1f}-{max(loads):.1f}")  # fmt: skip
    print("| measurement | least wall s | least CPU s |")
    print("| --- | --- | --- |")
    for name, runs in results.items():
        print(f"| {name} | {min(r[0] for r in runs):.2f} | {min(r[1] for r in runs):.2f} |")


if __name__ == "__main__":
    main()
