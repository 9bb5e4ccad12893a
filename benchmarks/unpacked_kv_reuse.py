"""The unpacked path (ALiBi, unknown architectures) with and without the per-group KV reuse.

A random-init Bloom (ALiBi) checkpoint with the bundled tiny-base tokenizer, multiple-choice
shaped groups (a long context, several multi-token endings), scored by the HF backend's
unpacked path twice: one row per (context, continuation) (`hf_unpacked.score_rows`, the code
before the reuse) and one context pass per group with its KV cache reused
(`hf_unpacked.score_unpacked`). Prints a
table: seconds (best of --repeats), scored tokens per second, speed-up, max |delta| nats.

    .venv/bin/python benchmarks/unpacked_kv_reuse.py [--hidden 256] [--layers 4] [--groups 16]

Not a test; nothing here is timed under pytest. Timing on a shared machine is indicative only.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = ROOT / "examples" / "checkpoints" / "tiny-base"


def build(out: Path, hidden: int, layers: int) -> Path:
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.BloomConfig(
        vocab_size=1024,
        hidden_size=hidden,
        n_layer=layers,
        n_head=max(1, hidden // 32),
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=2,
    )
    model = transformers.BloomForCausalLM(config)
    model.save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(TOKENIZER / name, out / name)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--groups", type=int, default=16)
    ap.add_argument("--context", type=int, default=380)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    from evalkit.backends.base import ScoringGroup
    from evalkit.backends.hf import HFBackend
    from evalkit.backends.hf_unpacked import score_rows, score_unpacked

    torch.set_num_threads(args.threads)
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = build(Path(tmp) / "bloom", args.hidden, args.layers)
        backend = HFBackend(path, device="cpu", dtype="float32", max_length=2048)
        assert backend.plan.path == "unpacked" and backend.plan.kv_reuse == "per group"
        print(f"bloom hidden {args.hidden}, {args.layers} layers; settings: {backend.settings}")
        rows = []
        for n_conts, cont_len in ((4, (3, 8)), (4, (18, 22)), (10, (2, 5))):
            groups = [
                ScoringGroup(
                    tuple(rng.randrange(3, 1024) for _ in range(args.context)),
                    tuple(
                        tuple(rng.randrange(3, 1024) for _ in range(rng.randint(*cont_len)))
                        for _ in range(n_conts)
                    ),
                )
                for _ in range(args.groups)
            ]
            scored = sum(len(c) for g in groups for c in g.continuations)
            timings = {}
            results = {}
            for label, fn in (("rows", score_rows), ("reuse", score_unpacked)):
                best = float("inf")
                for _ in range(args.repeats):
                    t = time.perf_counter()
                    with torch.inference_mode():
                        results[label] = fn(backend.forward, groups)
                    best = min(best, time.perf_counter() - t)
                timings[label] = best
            diff = max(
                abs(a.logprob - b.logprob)
                for ra, rb in zip(results["rows"], results["reuse"], strict=True)
                for a, b in zip(ra, rb, strict=True)
            )
            shape = f"{n_conts} x {cont_len[0]}-{cont_len[1]} tok"
            rows.append((shape, timings["rows"], timings["reuse"], scored, diff))
    print()
    print(
        f"| groups ({args.groups}, context {args.context}) | rows s | reuse s | rows tok/s "
        "| reuse tok/s | speed-up | max abs delta |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for shape, a, b, n, d in rows:
        print(
            f"| {shape} | {a:.2f} | {b:.2f} | {n / a:.0f} | {n / b:.0f} | {a / b:.2f}x | {d:.1e} |"
        )


if __name__ == "__main__":
    main()
