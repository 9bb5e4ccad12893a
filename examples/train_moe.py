"""Train a tiny sparse mixture-of-experts (Mixtral architecture) on tiny-base's slices, on CPU.

Same data as ``train_tiny.py`` (its generators, mix, seed, stream and tokenizer, imported from
that file, not copied), same token count (1,500 steps of 32 x 128 = 6,144,000 tokens), and about
the same *active* parameters: every layer has 4 experts of intermediate 176 of which 2 are used
per token, i.e. the active feed-forward width of tiny-base's 352. The router is trained with
Mixtral's load-balancing loss (coefficient 0.02); evaluation configs have it switched off.

Usage (the bundled checkpoint)::

    python examples/train_moe.py --out examples/checkpoints/tiny-moe \
        --tokenizer examples/checkpoints/tiny-base --sample-docs 32 --save-dtype float16

Every ``train_tiny.py`` option works here too; the MoE shape has its own (``--experts``,
``--top-k``, ``--expert-intermediate``, ``--aux-loss``).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any


def _train_tiny() -> ModuleType:
    path = Path(__file__).with_name("train_tiny.py")
    spec = importlib.util.spec_from_file_location("train_tiny", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_tiny"] = module
    spec.loader.exec_module(module)
    return module


tt = _train_tiny()


def make_moe(args: argparse.Namespace, moe: argparse.Namespace, tokenizer: Any) -> Any:
    from transformers import MixtralConfig, MixtralForCausalLM

    config = MixtralConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden,
        intermediate_size=moe.expert_intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        max_position_embeddings=args.max_positions,
        num_local_experts=moe.experts,
        num_experts_per_tok=moe.top_k,
        router_aux_loss_coef=moe.aux_loss,
        output_router_logits=True,  # training adds the load-balancing loss
        sliding_window=None,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return MixtralForCausalLM(config)


def active_parameters(model: Any, top_k: int, experts: int) -> int:
    """Parameters a token uses: everything but the experts it is not routed to."""
    total = 0
    for name, p in model.named_parameters():
        share = top_k / experts if ".experts." in name else 1.0
        total += round(p.numel() * share)
    return total


class _Snapshots:
    """The chunk sequence `train_tiny.train` walks, saving a complete checkpoint (weights,
    tokenizer, provenance of the tokens seen so far) every `every` steps on the way, so a run
    on a loaded machine leaves usable intermediate checkpoints with honest token counts."""

    def __init__(self, chunks: Any, every: int, save: Any) -> None:
        self.chunks, self.every, self.save = chunks, every, save

    def __getitem__(self, step: int) -> Any:
        if self.every and step and step % self.every == 0:
            self.save(step)
        return self.chunks[step]


def parse(argv: Sequence[str] | None) -> tuple[argparse.Namespace, argparse.Namespace]:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--experts", type=int, default=4)
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("--expert-intermediate", type=int, default=176)
    p.add_argument("--aux-loss", type=float, default=0.02)
    p.add_argument("--snapshot-every", type=int, default=0, help="steps between snapshots")
    moe, rest = p.parse_known_args(argv)
    return tt.parse_args(rest), moe


def main(argv: Sequence[str] | None = None) -> None:
    import torch
    from transformers import PreTrainedTokenizerFast

    args, moe = parse(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    mix = tt.parse_mix(args.mix)
    t_start = time.perf_counter()
    if args.tokenizer is not None:
        tokenizer = PreTrainedTokenizerFast.from_pretrained(args.tokenizer)
    else:
        corpus = tt.tokenizer_corpus(args.seed, args.tokenizer_docs)
        tokenizer = tt.train_tokenizer(corpus, args.vocab_size, model_max_length=args.max_positions)
    total = args.steps * args.batch_size * args.seq_len
    ids, src = tt.build_stream(tokenizer, mix, total, args.seed)
    chunks = torch.from_numpy(ids).view(args.steps, args.batch_size, args.seq_len)
    slice_tokens = {name: int((src == i).sum()) for i, name in enumerate(tt.GENERATORS)}
    print(f"data: {total} tokens {slice_tokens}  ({time.perf_counter() - t_start:.1f}s)")

    model = make_moe(args, moe, tokenizer)
    n_all = sum(p.numel() for p in model.parameters())
    n_active = active_parameters(model, moe.top_k, moe.experts)
    print(f"model: {n_all} parameters, {n_active} active per token")

    def save(out: Path, steps: int) -> None:
        seen = src[: steps * args.batch_size * args.seq_len]
        tokens = {name: int((seen == i).sum()) for i, name in enumerate(tt.GENERATORS)}
        was = model.config.output_router_logits
        model.config.output_router_logits = False  # no auxiliary loss at evaluation
        out.mkdir(parents=True, exist_ok=True)
        if args.save_dtype == "float16":
            import copy

            copy.deepcopy(model).half().save_pretrained(out)
        else:
            model.save_pretrained(out)
        model.config.output_router_logits = was
        tt.save_tokenizer(tokenizer, out)
        sample_paths = None
        if args.sample_docs > 0:
            names = [n for n in tt.GENERATORS if tokens[n] > 0]
            sample_paths = tt.write_sample_docs(
                out,
                names,
                seed=args.seed,
                n_docs=args.sample_docs,
                generators=dict(tt.GENERATORS),
                planted={},
                added=args.timestamp or "",
            )
        tt.write_provenance(
            out / "provenance.yaml",
            run=args.run or args.out.name,
            steps=steps,
            parent=args.parent,
            mix=mix,
            slice_tokens=tokens,
            sample_docs=sample_paths,
            timestamp=args.timestamp,
        )
        print(f"saved {out} at step {steps}", flush=True)

    snapshots = args.out.parent / f"{args.out.name}-snapshots"
    t_train = time.perf_counter()
    tt.train(
        model,
        _Snapshots(chunks, moe.snapshot_every, lambda k: save(snapshots / f"step-{k:05d}", k)),
        steps=args.steps,
        lr=args.lr,
        warmup=args.warmup,
        weight_decay=args.weight_decay,
        log_every=args.log_every,
    )
    train_s = time.perf_counter() - t_train
    model.config.output_router_logits = False
    save(args.out, args.steps)
    print(f"saved {args.out}  train {train_s:.1f}s  total {time.perf_counter() - t_start:.1f}s")


if __name__ == "__main__":
    main()
