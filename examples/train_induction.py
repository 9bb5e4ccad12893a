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
import hashlib
import json
import random
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import yaml

ROOT = Path(__file__).resolve().parent
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
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
    mix_id = hashlib.sha256(f"{SLICE}=1.000000".encode()).hexdigest()[:12]
    return {
        "schema_version": 2,
        "checkpoint": {
            "run": run,
            "step": step,
            "tokens_seen": tokens,
            "parent": None,
            "mix_id": mix_id,
        },
        "slices": [
            {
                "name": SLICE,
                "tokens": tokens,
                "share": 1.0,
                "source": f"synthetic:{SLICE}",
                "license": "Apache-2.0",
                "language": "none",
                "domain": "random-tokens",
                "quality": 1.0,
                "repeats": 1,
            }
        ],
    }


def save(model: Any, tokenizer_dir: Path, out: Path, prov: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    for name in TOKENIZER_FILES:
        shutil.copy(tokenizer_dir / name, out / name)
    (out / "provenance.yaml").write_text(yaml.safe_dump(prov, sort_keys=False), encoding="utf-8")


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

    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = random.Random(a.seed)
    bos, ids = ordinary_tokens(a.tokenizer)
    base = json.loads((a.tokenizer / "config.json").read_text())
    cfg = LlamaConfig(
        vocab_size=base["vocab_size"],
        hidden_size=a.hidden,
        intermediate_size=a.intermediate,
        num_hidden_layers=a.layers,
        num_attention_heads=a.heads,
        num_key_value_heads=a.heads,
        max_position_embeddings=512,
        bos_token_id=base["bos_token_id"],
        eos_token_id=base["eos_token_id"],
        pad_token_id=base["pad_token_id"],
        # tied embeddings: copying token t means writing back the direction t was read from
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / a.warmup))
    held_rng = random.Random(f"held-out:{a.seed}")  # never the probe's seeds (f"{seed}:{i}")
    held = [batch(held_rng, bos, ids, 1, held_rng.randint(50, 100)) for _ in range(16)]
    log: list[dict[str, float]] = []
    tokens = 0
    t0 = time.time()
    above = 0
    for step in range(1, a.max_steps + 1):
        length = rng.randint(a.min_len, a.max_len)
        x = batch(rng, bos, ids, a.batch, length)
        labels = x.clone()
        labels[:, : length + 1] = -100  # loss on the second copy only
        loss = model(input_ids=x, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        tokens += x.numel()
        if step % a.eval_every == 0:
            model.eval()
            acc = copy_accuracy(model, held)
            model.train()
            row = {
                "step": step,
                "tokens_seen": tokens,
                "loss": float(loss.detach()),
                "copy_acc": acc,
            }
            row["seconds"] = round(time.time() - t0, 1)
            log.append(row)
            print(json.dumps(row), flush=True)
            save(model, a.tokenizer, a.out / f"step-{step:05d}", provenance(a.run, step, tokens))
            if acc > a.target or above:
                above += 1
            if above > a.after or time.time() - t0 > a.max_seconds:
                break
    (a.out / "train_log.json").write_text(json.dumps(log, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
