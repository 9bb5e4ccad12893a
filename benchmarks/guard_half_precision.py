"""How far the packed fast path and the guard's plain forward drift apart in bf16 / fp16.

The parity guard (evalkit/backends/guard.py) compares the fast path with the model's plain
forward per token in half precision, with 0.25 nats (bf16) and 0.05 nats (fp16). This measures,
on tiny checkpoints of several architectures (tests/arch_models.py: random weights drawn large
so attention is peaked, the harsh case for rounding) and on the trained tiny-base, the largest
per-token |fast - plain| over multiple-choice groups (contexts past every sliding window, four
multi-token endings, a batch sharing a 64-token preamble for prefix reuse), in fp32, bf16 and
fp16 — and, as the scale the tolerance must stay under, what a real fault moves: the same path
with the sliding window dropped from the packed mask (the bug the guard was built for).

    .venv/bin/python benchmarks/guard_half_precision.py [--groups 24] [--archs a,b,...]

Prints a table (nats per token): max and 99th percentile of |delta|, the tolerance, the fault.
Not a test; CPU only (torch runs bf16/fp16 matmuls on CPU, slowly but exactly as specified).
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
TINY_BASE = ROOT / "examples" / "checkpoints" / "tiny-base"
DTYPES = ("float32", "bfloat16", "float16")
DEFAULT_ARCHS = ("llama-native", "mistral-sliding", "gemma2", "qwen2", "gpt-neox", "phi2")


def groups(vocab: int, n: int, seed: int = 0) -> list[Any]:
    from evalkit.backends.base import ScoringGroup

    rng = random.Random(seed)
    tok = lambda: rng.randrange(3, vocab)  # noqa: E731  (0-2: bos, eos, pad)
    preamble = tuple(tok() for _ in range(64))
    out = []
    for i in range(n):
        body = tuple(tok() for _ in range(rng.randrange(40, 160)))
        ctx = (preamble + body) if i < n // 2 else body
        conts = tuple(tuple(tok() for _ in range(rng.randrange(1, 9))) for _ in range(4))
        out.append(ScoringGroup(ctx, conts))
    return out


def deltas(backend: Any, batch: list[Any]) -> list[float]:
    import torch

    with torch.inference_mode():
        fast = backend._score(batch)
        out = []
        for g, scores in zip(batch, fast, strict=True):
            plain = backend.forward.plain_logprobs(g)
            for s, p in zip(scores, plain, strict=True):
                out.extend(abs(a - b) for a, b in zip(s.token_logprobs, p, strict=True))
    return out


def measure(name: str, path: Path, n: int) -> list[tuple[str, str, str, float, float, float]]:
    from evalkit.backends.guard import TOLERANCE
    from evalkit.backends.hf import HFBackend

    rows = []
    for dtype in DTYPES:
        try:
            backend = HFBackend(path, device="cpu", dtype=dtype, guard=False, max_length=256)
        except Exception as exc:  # a dtype the CPU build refuses: say so, keep going
            print(f"{name} {dtype}: not measured ({exc})", flush=True)
            continue
        vocab = int(backend.model.config.vocab_size)
        batch = groups(min(vocab, 1024), n)
        d = sorted(deltas(backend, batch))
        fault = float("nan")
        if any(w is not None for w in backend.plan.windows.values()):
            backend.plan = dataclasses.replace(
                backend.plan, windows=dict.fromkeys(backend.plan.windows)
            )
            fault = max(deltas(backend, batch))
        p99 = d[min(len(d) - 1, int(0.99 * len(d)))]
        rows.append((name, backend.plan.path, dtype, d[-1], p99, fault))
        tol = TOLERANCE[dtype]
        print(
            f"{name:16s} {backend.plan.path:7s} {dtype:9s} max {d[-1]:9.3g}  p99 {p99:9.3g}  "
            f"tolerance {tol:g}{'' if dtype != 'float32' else ' (per continuation)'}  "
            f"dropped window {fault:.3g}",
            flush=True,
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--groups", type=int, default=24)
    ap.add_argument("--archs", default=",".join(DEFAULT_ARCHS))
    args = ap.parse_args()
    import torch
    from arch_models import build

    torch.set_num_threads(1)  # hidden-32 models: threads only fight on a shared machine
    rows = measure("tiny-base", TINY_BASE, args.groups)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.archs.split(","):
            path, _ = build(name, Path(tmp) / name)
            rows += measure(name, path, args.groups)
    print("\n| checkpoint | path | dtype | max abs delta / token | p99 | window dropped (fault) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, path, dtype, mx, p99, fault in rows:
        f = "" if fault != fault else f"{fault:.3g}"
        print(f"| {name} | {path} | {dtype} | {mx:.3g} | {p99:.3g} | {f} |")


if __name__ == "__main__":
    main()
