"""GPU throughput: lm-eval's HF backend, evalkit's HF backend and evalkit's vLLM backend, side by
side, on a TinyLlama-shaped model and two lm-eval YAML tasks.

Set-up (seeded, offline):

- the benchmark tokenizer of ``vs_lmeval.py`` (byte-level BPE, 32,000 tokens, trained on the
  standard library's sources) and a random-init Llama of TinyLlama-1.1B's shape (hidden 2048,
  22 layers, 32 heads, 4 KV heads, intermediate 5632, vocabulary 32,000, 2048 positions) saved in
  bfloat16; ``--smoke`` uses a tiny model of the same family instead;
- ``vs_lmeval.py``'s two tasks: ``bench_mmlu_like`` (5-shot, a ~350-word shared preamble, four
  one-token choices; 1,000 documents) and ``bench_hellaswag_like`` (~60-word context, four
  ~20-token endings; 2,000 documents).

Each harness runs in its own child process (so GPU memory starts empty), timed around the
harness call (model loading included, interpreter start and imports not):

- ``lmeval-hf``: ``lm_eval.simple_evaluate(model="hf", ...)``, ``--lmeval-batch-size``;
- ``evalkit-hf``: ``evalkit.score(..., backend="hf")`` (token budget from free GPU memory);
- ``evalkit-vllm``: ``evalkit.score(..., backend="vllm")``, only where vLLM imports and a GPU is
  present.

Reported per task and harness: wall seconds, needed tokens per second (per document its context
once plus every continuation token, split as lm-eval splits them), the speed-up over lm-eval,
and the share of a plain batched forward pass's throughput (``model(ids)`` on
``--forward-batch`` rows of ``--forward-len`` random tokens, logits included) on the same device.

Usage::

    python benchmarks/gpu_throughput.py                 # the GPU benchmark (CUDA, bf16)
    python benchmarks/gpu_throughput.py --smoke         # tiny model, few documents, CPU is fine
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import vs_lmeval as common  # noqa: E402 - the shared tokenizer and task recipes

from evalkit.backends.vllm import vllm_available  # noqa: E402 - cheap: vLLM loads lazily

TINYLLAMA: dict[str, Any] = {
    "vocab_size": common.VOCAB_SIZE,
    "hidden_size": 2048,
    "intermediate_size": 5632,
    "num_hidden_layers": 22,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": False,
    "bos_token_id": 0,
    "eos_token_id": 1,
    "pad_token_id": 2,
}
SMOKE_MODEL: dict[str, Any] = {
    **TINYLLAMA,
    "hidden_size": 64,
    "intermediate_size": 176,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}
HARNESSES = ("lmeval-hf", "evalkit-hf", "evalkit-vllm")


@dataclass(frozen=True)
class Row:
    task: str
    harness: str
    docs: int
    wall_s: float
    needed_tokens: int
    error: str = ""

    @property
    def tok_s(self) -> float:
        return self.needed_tokens / self.wall_s if self.wall_s > 0 else float("nan")


def ensure_checkpoint(ckpt: Path, config: dict[str, Any], dtype: str) -> int:
    """A seeded random-init Llama with the benchmark tokenizer; rebuilt when the recipe moves."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    recipe = {"config": config, "dtype": dtype, "seed": common.SEED, "v": 1}
    stamp = ckpt / "gpu_bench_build.json"
    if stamp.is_file() and json.loads(stamp.read_text()).get("recipe") == recipe:
        return int(json.loads(stamp.read_text())["n_params"])
    tokenizer = common.train_tokenizer(
        common.read_texts(common.stdlib_sources()), common.VOCAB_SIZE
    )
    torch.manual_seed(common.SEED)
    model = LlamaForCausalLM(LlamaConfig(**config)).to(getattr(torch, dtype)).eval()
    n_params = sum(p.numel() for p in model.parameters())
    ckpt.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(ckpt)
    tokenizer.save_pretrained(ckpt)
    stamp.write_text(json.dumps({"recipe": recipe, "n_params": n_params}, indent=2))
    return n_params


def needed_tokens(ckpt: Path, tasks_dir: Path, task: str, limit: int) -> int:
    """Context once per document plus every continuation token, with lm-eval's split."""
    from evalkit.backends.hf_checkpoint import load_tokenizer
    from evalkit.encoding import Encoder
    from evalkit.requests import Loglikelihood
    from evalkit.tasks.registry import resolve_tasks

    tok = load_tokenizer(ckpt)
    enc = Encoder(tok)
    (t,) = resolve_tasks([task], tasks_dir)
    total = 0
    for item in t.items(limit, tok):
        contexts = set()
        for r in item.requests:
            if isinstance(r, Loglikelihood):
                ctx, cont = enc.pair(r.context, r.continuation)
                contexts.add(ctx)
                total += len(cont)
        total += sum(len(c) for c in contexts)
    return total


def forward_rate(ckpt: Path, device: str, dtype: str, rows: int, length: int, steps: int) -> float:
    """Tokens per second of a plain batched forward pass (logits at every position)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        str(ckpt), dtype=getattr(torch, dtype), attn_implementation="sdpa", local_files_only=True
    ).to(device)
    model.eval()
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, model.config.vocab_size, (rows, length), generator=gen).to(device)

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    with torch.inference_mode():
        model(ids)  # warm-up
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            model(ids)
        sync()
        elapsed = time.perf_counter() - t0
    return rows * length * steps / elapsed


# -- children ---------------------------------------------------------------------------------


def child(args: argparse.Namespace) -> int:
    """Run one harness on one task and print {"wall_s": ...} as the last line."""
    ckpt, tasks_dir = Path(args.ckpt), Path(args.tasks_dir)
    t0 = time.perf_counter()
    if args.child == "lmeval-hf":
        import lm_eval
        from lm_eval.tasks import TaskManager

        lm_eval.simple_evaluate(
            model="hf",
            model_args=f"pretrained={ckpt},dtype={args.dtype}",
            tasks=[args.task],
            task_manager=TaskManager(include_path=str(tasks_dir)),
            batch_size=int(args.lmeval_batch_size)
            if str(args.lmeval_batch_size).isdigit()
            else args.lmeval_batch_size,
            device=args.device,
            limit=args.limit,
            log_samples=False,
        )
    else:
        import evalkit

        with tempfile.TemporaryDirectory() as tmp:
            evalkit.score(
                ckpt,
                tasks=[args.task],
                tasks_dir=tasks_dir,
                limit=args.limit,
                backend="vllm" if args.child == "evalkit-vllm" else "hf",
                device=args.device,
                dtype=args.dtype,
                out=Path(tmp) / "run",
                use_cache=False,
                progress=False,
            )
    print(json.dumps({"wall_s": time.perf_counter() - t0}))
    return 0


def run_child(args: argparse.Namespace, harness: str, task: str, limit: int, log: Path) -> Row:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        harness,
        "--task",
        task,
        "--limit",
        str(limit),
        "--ckpt",
        str(args.ckpt),
        "--tasks-dir",
        str(args.tasks_dir),
        "--device",
        args.device,
        "--dtype",
        args.dtype,
        "--lmeval-batch-size",
        str(args.lmeval_batch_size),
    ]
    env = common.bench_env(Path(args.out))
    env["PYTHONPATH"] = os.pathsep.join([str(common.REPO), env.get("PYTHONPATH", "")])
    with log.open("w") as f:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=f, text=True, env=env)
        f.write(proc.stdout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return Row(task, harness, limit, float("nan"), 0, error=f"failed, see {log}")
    return Row(task, harness, limit, float(json.loads(lines[-1])["wall_s"]), 0)


def print_table(rows: Sequence[Row], forward: float, device_name: str) -> None:
    print(f"\ndevice: {device_name}; plain batched forward: {forward:,.0f} tokens/s\n")
    head = f"{'task':<22}{'harness':<14}{'docs':>6}{'wall s':>9}{'needed tok/s':>14}"
    head += f"{'x lm-eval':>11}{'% forward':>11}"
    print(head)
    print("-" * len(head))
    base: dict[str, float] = {r.task: r.tok_s for r in rows if r.harness == "lmeval-hf"}
    for r in rows:
        if r.error:
            print(f"{r.task:<22}{r.harness:<14}{r.docs:>6}  {r.error}")
            continue
        ratio = r.tok_s / base[r.task] if base.get(r.task) else float("nan")
        print(
            f"{r.task:<22}{r.harness:<14}{r.docs:>6}{r.wall_s:>9.1f}{r.tok_s:>14,.0f}"
            f"{ratio:>10.2f}x{100 * r.tok_s / forward:>10.1f}%"
        )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny model, few documents (CPU is fine)")
    p.add_argument("--out", default=str(common.DEFAULT_OUT / "gpu"))
    p.add_argument("--mmlu-docs", type=int, default=1000)
    p.add_argument("--hellaswag-docs", type=int, default=2000)
    p.add_argument("--harnesses", default=",".join(HARNESSES))
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--dtype", default=None, help="default: bfloat16 on cuda, float32 on cpu")
    p.add_argument("--lmeval-batch-size", default=None, help="default: auto on cuda, 16 on cpu")
    p.add_argument("--forward-batch", type=int, default=32)
    p.add_argument("--forward-len", type=int, default=512)
    p.add_argument("--forward-steps", type=int, default=10)
    # Internal: one harness run in a child process.
    p.add_argument("--child", choices=HARNESSES, help=argparse.SUPPRESS)
    p.add_argument("--task", help=argparse.SUPPRESS)
    p.add_argument("--limit", type=int, help=argparse.SUPPRESS)
    p.add_argument("--ckpt", help=argparse.SUPPRESS)
    p.add_argument("--tasks-dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)

    import torch

    cuda = torch.cuda.is_available()
    args.device = args.device or ("cuda" if cuda else "cpu")
    args.dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    args.lmeval_batch_size = args.lmeval_batch_size or (
        "auto" if args.device.startswith("cuda") else "16"
    )
    if args.smoke:
        args.mmlu_docs, args.hellaswag_docs = 8, 8
        args.forward_batch, args.forward_len, args.forward_steps = 4, 128, 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = SMOKE_MODEL if args.smoke else TINYLLAMA
    args.ckpt = out / ("ckpt-smoke" if args.smoke else "ckpt-tinyllama") / args.dtype
    n_params = ensure_checkpoint(args.ckpt, config, args.dtype)
    print(f"checkpoint: {args.ckpt} ({n_params:,} parameters, {args.dtype})")
    args.tasks_dir = out / "tasks"
    n_docs = max(args.mmlu_docs, args.hellaswag_docs)
    stamp = args.tasks_dir / "n_docs"
    if not stamp.is_file() or stamp.read_text() != str(n_docs):
        common.write_tasks(args.tasks_dir, n_docs, common.load_tokenizer(args.ckpt))
        stamp.write_text(str(n_docs))
    harnesses = [h for h in args.harnesses.split(",") if h]
    if "evalkit-vllm" in harnesses and not vllm_available():
        print("evalkit-vllm: skipped (vLLM does not import here, or no GPU)")
        harnesses.remove("evalkit-vllm")
    forward = forward_rate(
        args.ckpt,
        args.device,
        args.dtype,
        args.forward_batch,
        args.forward_len,
        args.forward_steps,
    )
    device_name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    rows: list[Row] = []
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    for task, limit in (
        (common.MMLU_TASK, args.mmlu_docs),
        (common.HELLASWAG_TASK, args.hellaswag_docs),
    ):
        need = needed_tokens(args.ckpt, args.tasks_dir, task, limit)
        for h in harnesses:
            r = run_child(args, h, task, limit, logs / f"{task}-{h}.log")
            rows.append(Row(r.task, r.harness, r.docs, r.wall_s, need, r.error))
            print(f"  {task} {h}: {r.wall_s:.1f}s {r.error}", flush=True)
    print_table(rows, forward, device_name)
    summary = {
        "device": device_name,
        "dtype": args.dtype,
        "n_params": n_params,
        "forward_tokens_per_s": forward,
        "rows": [{**r.__dict__, "tok_s": r.tok_s} for r in rows],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return 1 if any(r.error for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
