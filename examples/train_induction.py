"""Train the induction positive control: a 2-layer tiny Llama on BOS + r + r (issue 16).

What ``icl_induction`` presents is BOS + r + r with r 50-100 tokens drawn uniformly from the
ordinary tokens of the model's vocabulary; it scores top-1 accuracy on the second copy. A model
can only beat chance there by looking back to the previous occurrence of the current token and
copying what followed it (an induction head), so this script trains on exactly that kind of
sequence, with r 8-120 tokens so the skill does not depend on one length, and the loss on the
second copy only (the first copy is unpredictable noise whose gradient slows the phase change).

Every ``--eval-every`` steps it measures copy accuracy on held-out sequences drawn like the probe's
(r 50-100) and saves a checkpoint ``step-XXXXX`` with its ``provenance.yaml``; it stops
``--after`` evaluations past the first one above ``--target``. The tokenizer is tiny-base's, so
the vocabulary (1,024 tokens) is the probe's.

Usage (the bundled emergence checkpoints; see examples/README.md)::

    python examples/train_induction.py --out /tmp/induction-run
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _training is a sibling module

import _training as T

ROOT = Path(__file__).resolve().parent
SLICE = "induction_copy"


def ordinary_tokens(tokenizer_dir: Path) -> tuple[int, list[int]]:
    """(bos id, ids that decode to non-empty text and are not BOS): the probe's draw set."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    bos = tok.token_to_id("<|bos|>")
    ids = [i for i in range(tok.get_vocab_size()) if i != bos and tok.decode([i]) != ""]
    return bos, ids


def batch(rng: random.Random, bos: int, ids: list[int], size: int, length: int) -> torch.Tensor:
    rows = []
    for _ in range(size):
        r = [rng.choice(ids) for _ in range(length)]
        rows.append([bos, *r, *r])
    return torch.tensor(rows)


@torch.no_grad()
def copy_accuracy(model: Any, seqs: list[torch.Tensor]) -> float:
    """Top-1 on tokens 2..L of the second copy, as the probe scores it."""
    hits = total = 0
    for ids in seqs:
        length = (ids.shape[1] - 1) // 2
        pred = model(input_ids=ids).logits[0].argmax(-1)
        # logits at position p predict token p+1; second copy's tokens 2..L sit at L+2..2L
        hits += int((pred[length + 1 : 2 * length] == ids[0, length + 2 :]).sum())
        total += length - 1
    return hits / total


def provenance(run: str, step: int, tokens: int) -> dict[str, Any]:
    info = T.SliceInfo(SLICE, tokens, f"synthetic:{SLICE}", "none", "random-tokens")
    return T.provenance(run, step, [info], {SLICE: 1.0})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--tokenizer", type=Path, default=ROOT / "checkpoints" / "tiny-base")
    p.add_argument("--run", default="induction-control")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--intermediate", type=int, default=128)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--min-len", type=int, default=8)
    p.add_argument("--max-len", type=int, default=120)
    p.add_argument("--max-steps", type=int, default=6000)
    p.add_argument("--max-seconds", type=float, default=1200.0)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--target", type=float, default=0.9)
    p.add_argument("--after", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = random.Random(a.seed)
    bos, ids = ordinary_tokens(a.tokenizer)
    model = T.tiny_llama(
        a.tokenizer, hidden=a.hidden, intermediate=a.intermediate, layers=a.layers, heads=a.heads
    )
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, T.linear_warmup(a.warmup))
    held_rng = random.Random(f"held-out:{a.seed}")  # never the probe's seeds (f"{seed}:{i}")
    held = [batch(held_rng, bos, ids, 1, held_rng.randint(50, 100)) for _ in range(16)]
    log = T.TrainLog(a.out / "train_log.json")
    stop = T.Stopper(a.after, max_seconds=a.max_seconds)
    save_tokenizer = T.copy_tokenizer(a.tokenizer)
    tokens = 0
    for step in range(1, a.max_steps + 1):
        length = rng.randint(a.min_len, a.max_len)
        x = batch(rng, bos, ids, a.batch, length)
        labels = x.clone()
        labels[:, : length + 1] = -100  # loss on the second copy only
        loss = T.train_step(model, opt, sched, model(input_ids=x, labels=labels).loss)
        tokens += x.numel()
        if step % a.eval_every == 0:
            acc = T.evaluate(model, lambda m: copy_accuracy(m, held))
            log.record({"step": step, "tokens_seen": tokens, "loss": loss, "copy_acc": acc})
            prov = provenance(a.run, step, tokens)
            T.save_checkpoint(model, a.out / f"step-{step:05d}", prov, save_tokenizer)
            if stop.should_stop(acc > a.target, log):
                break


if __name__ == "__main__":
    main()
