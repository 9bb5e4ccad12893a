"""Train the label-following positive control: a 2-layer tiny Llama on few-shot label mappings
whose label words are permuted per document (issue 16, item 4).

``icl_flipped_labels`` and ``icl_label_probe`` show k blocks ``Word: {word}\\nCategory: {label}``
joined by a blank line, then a query block, and score the true category's label. A model moves
on them only if it reads the word -> label mapping off the demonstrations. So every training
document here is a run of such blocks over 2-4 of the probes' categories, and the label word of
each category is drawn afresh per document: the true names, the true names swapped among
themselves (animal <-> food, as a flipped demonstration shows them), or other words. The only
constant is which words share a category; the label of a block is predictable only from an
earlier block of the same category, and the loss is on exactly those label tokens (a category's
first label in a document is unpredictable noise and gets no loss).

Category membership is learned on the words of the probes' ``category_words`` generator
(``evalkit.tasks.probes.docgen.CATEGORIES``): the test words of the probes are words the model
has seen, in documents drawn from this script's own seed, never the tasks' (which demonstrations
sit next to which test word, and with which labels, differ from every evaluation item).

Every ``--eval-every`` steps it measures, on held-out documents in the flip probe's exact format
(8 demonstrations over animal/food, a query), accuracy against the true label with 0% and 100%
flipped demonstrations, and 4-way accuracy with gold labels; it stops ``--after`` evaluations
past the first that reaches ``--target`` (flip_0 >= target and flip_100 <= 1 - target), and
keeps the last checkpoint and ``train_log.json``.

Usage (the bundled control; see examples/README.md)::

    python examples/train_labels.py --out /tmp/label-run --threads 1
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _training is a sibling module

import _training as T

from evalkit.tasks.probes.docgen import CATEGORIES

ROOT = Path(__file__).resolve().parent
SLICE = "label_mapping"
PROBE_LABELS = tuple(CATEGORIES)  # the probes' label words, also used as permuted labels
# Other label words; each one's first token differs from every other label's, so once the
# first token is chosen from the demonstrations the rest of the word is determined.
EXTRA_LABELS = (
    "sport", "plant", "metal", "bird", "fruit", "tree", "drink", "game", "number", "yes",
    "bad", "left", "right", "big", "small", "hot", "cold", "day", "night", "sun", "house",
    "water", "stone", "sea", "sky", "boat",
)  # fmt: skip
DEMO = "Word: {word}\nCategory:"
SEP = "\n\n"


def label_pool(tok: Any) -> tuple[str, ...]:
    pool = (*PROBE_LABELS, *EXTRA_LABELS)
    firsts = [tok.encode(" " + w).ids[0] for w in pool]
    if len(set(firsts)) != len(firsts):
        raise SystemExit("label words must have distinct first tokens")
    return pool


def mapping(rng: random.Random, cats: list[str], pool: tuple[str, ...]) -> list[str]:
    """The label word of each category in one document."""
    r = rng.random()
    if r < 0.2:
        return list(cats)  # the true names
    if r < 0.45:
        # the true names, deranged (for two categories: swapped, as 100% flips show them)
        while True:
            perm = rng.sample(cats, len(cats))
            if all(p != c for p, c in zip(perm, cats, strict=True)):
                return perm
    return rng.sample(pool, len(cats))


def document(
    rng: random.Random, pool: tuple[str, ...], n_blocks: int, binary: float, prior: bool = False
) -> tuple[str, list[tuple[int, int]]]:
    """Text of one document and the character spans of its predictable labels. With `prior`,
    a document that uses the true names also has loss on each category's first label: a
    direct signal of category membership (the in-context one alone is slow to start)."""
    m = 2 if rng.random() < binary else rng.randint(3, len(CATEGORIES))
    cats = rng.sample(list(CATEGORIES), m)
    labels = dict(zip(cats, mapping(rng, cats, pool), strict=True))
    true_names = all(lab == c for c, lab in labels.items())
    words = {c: rng.sample(CATEGORIES[c], len(CATEGORIES[c])) for c in cats}
    text = ""
    spans: list[tuple[int, int]] = []
    seen: set[str] = set()
    for b in range(n_blocks):
        c = rng.choice(cats)
        if not words[c]:
            words[c] = rng.sample(CATEGORIES[c], len(CATEGORIES[c]))
        text += (SEP if b else "") + DEMO.format(word=words[c].pop())
        start = len(text)
        text += " " + labels[c]
        if c in seen or (prior and true_names):
            spans.append((start, len(text)))
        seen.add(c)
    return text, spans


def make_batch(
    rng: random.Random, tok: Any, pool: tuple[str, ...], a: argparse.Namespace
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n_blocks = rng.randint(a.min_blocks, a.max_blocks)
    rows: list[list[int]] = []
    masks: list[list[bool]] = []
    for _ in range(a.batch):
        text, spans = document(rng, pool, n_blocks, a.binary, a.prior)
        enc = tok.encode(text)
        ids = list(enc.ids)
        mask = [any(s <= o[0] < e for s, e in spans) for o in enc.offsets]
        if rng.random() < 0.5:  # evalkit scores with and without a leading BOS
            ids, mask = [a.bos, *ids], [False, *mask]
        rows.append(ids)
        masks.append(mask)
    width = max(len(r) for r in rows)
    x = torch.full((len(rows), width), a.pad)
    att = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100)
    for i, (r, m) in enumerate(zip(rows, masks, strict=True)):
        x[i, : len(r)] = torch.tensor(r)
        att[i, : len(r)] = 1
        labels[i, : len(r)] = torch.where(torch.tensor(m), torch.tensor(r), -100)
    return x, att, labels


def label_loss(
    model: Any, x: torch.Tensor, att: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Mean cross-entropy on the labelled tokens; the vocabulary projection is computed only at
    the positions that predict them (most positions carry no loss)."""
    hidden = model.model(input_ids=x, attention_mask=att).last_hidden_state
    target = labels[:, 1:]
    keep = target != -100
    logits = model.lm_head(hidden[:, :-1][keep])
    return torch.nn.functional.cross_entropy(logits, target[keep])


def held_out(tok: Any, seed: int, n: int) -> list[dict[str, Any]]:
    """Items in the probes' format from a seed the tasks never use: 8 demonstrations and a
    query word not among them; flip probe (animal/food) and a 4-way gold probe."""
    rng = random.Random(f"held-out-labels:{seed}")
    items = []
    for i in range(n):
        cats = ["animal", "food"] if i % 2 == 0 else list(CATEGORIES)
        pool = [(w, c) for c in cats for w in CATEGORIES[c]]
        picks = rng.sample(pool, 9)
        (qw, qc), demos = picks[0], picks[1:]
        items.append({"cats": cats, "query": qw, "gold": cats.index(qc), "demos": demos})
    return items


def prompt(item: dict[str, Any], flip: bool) -> str:
    cats = item["cats"]
    parts = []
    for w, c in item["demos"]:
        lab = cats[(cats.index(c) + 1) % len(cats)] if flip else c
        parts.append(DEMO.format(word=w) + " " + lab)
    return SEP.join([*parts, DEMO.format(word=item["query"])])


@torch.no_grad()
def label_accuracy(model: Any, tok: Any, items: list[dict[str, Any]]) -> dict[str, float]:
    """Accuracy against the true label by the summed log-prob of each label continuation."""
    hits = {"flip_0": 0, "flip_100": 0, "gold4": 0}
    count = {"flip_0": 0, "flip_100": 0, "gold4": 0}
    for item in items:
        conds = ["flip_0", "flip_100"] if len(item["cats"]) == 2 else ["gold4"]
        for cond in conds:
            ctx = prompt(item, cond == "flip_100")
            scores = []
            for lab in item["cats"]:
                enc = tok.encode(ctx + " " + lab)
                n_ctx = len(tok.encode(ctx).ids)
                ids = torch.tensor([enc.ids])
                logp = model(input_ids=ids).logits[0].log_softmax(-1)
                cont = ids[0, n_ctx:]
                scores.append(float(logp[n_ctx - 1 : -1].gather(1, cont[:, None]).sum()))
            hits[cond] += int(max(range(len(scores)), key=scores.__getitem__) == item["gold"])
            count[cond] += 1
    return {k: hits[k] / count[k] for k in hits}


def provenance(run: str, step: int, tokens: int) -> dict[str, Any]:
    info = T.SliceInfo(
        SLICE,
        tokens,
        f"synthetic:{SLICE} (examples/train_labels.py)",
        "en",
        "few-shot word categories, labels permuted per document",
    )
    return T.provenance(run, step, [info], {SLICE: 1.0})


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--tokenizer", type=Path, default=ROOT / "checkpoints" / "tiny-base")
    p.add_argument("--run", default="label-control")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--intermediate", type=int, default=256)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--min-blocks", type=int, default=6)
    p.add_argument("--max-blocks", type=int, default=14)
    p.add_argument("--binary", type=float, default=0.5, help="share of 2-category documents")
    p.add_argument("--prior", action="store_true", help="loss on first true-name labels too")
    p.add_argument("--max-steps", type=int, default=20000)
    p.add_argument("--max-seconds", type=float, default=2400.0, help="wall-clock limit")
    # the budget is CPU time: on a shared machine wall time says more about the neighbours
    p.add_argument("--max-cpu-seconds", type=float, default=900.0)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--eval-items", type=int, default=48)
    p.add_argument("--target", type=float, default=0.95)
    p.add_argument("--after", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()

    from tokenizers import Tokenizer

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = random.Random(a.seed)
    tok = Tokenizer.from_file(str(a.tokenizer / "tokenizer.json"))
    pool = label_pool(tok)
    base = json.loads((a.tokenizer / "config.json").read_text())
    a.bos, a.pad = base["bos_token_id"], base["pad_token_id"]
    model = T.tiny_llama(
        a.tokenizer, hidden=a.hidden, intermediate=a.intermediate, layers=a.layers, heads=a.heads
    )
    print(json.dumps({"params": sum(p.numel() for p in model.parameters())}), flush=True)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, T.linear_warmup(a.warmup))
    held = held_out(tok, a.seed, a.eval_items)
    log = T.TrainLog(a.out / "train_log.json")
    stop = T.Stopper(a.after, max_seconds=a.max_seconds, max_cpu_seconds=a.max_cpu_seconds)
    save_tokenizer = T.copy_tokenizer(a.tokenizer)
    tokens = 0
    for step in range(1, a.max_steps + 1):
        x, att, labels = make_batch(rng, tok, pool, a)
        loss = T.train_step(model, opt, sched, label_loss(model, x, att, labels))
        tokens += int(att.sum())
        if step % a.eval_every == 0:
            acc = T.evaluate(model, lambda m: label_accuracy(m, tok, held))
            log.record({"step": step, "tokens_seen": tokens, "loss": loss, **acc})
            # saved at every evaluation so a stopped run still leaves its latest checkpoint
            T.save_checkpoint(model, a.out, provenance(a.run, step, tokens), save_tokenizer)
            reached = acc["flip_0"] >= a.target and acc["flip_100"] <= 1 - a.target
            if stop.should_stop(reached, log):
                break


if __name__ == "__main__":
    main()
