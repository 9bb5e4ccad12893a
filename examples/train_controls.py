"""Train the positive-control checkpoint: a tiny Llama that retrieves, copies and follows labels.

The bundled ``tiny-base`` never learned in-context retrieval, so the long-context, induction and
label instruments never move on it. This script trains a model of the same family on four slices
built so those abilities are learnable in a few CPU minutes (issue 16):

- ``needle``: RULER-style needle documents in the *format* evalkit's long-context family uses
  (header, needle sentences ``The special magic number for {key} is {value}.`` in a haystack,
  question, answer), with all four variants (single, multikey, multivalue, multiquery). Values
  are fresh random 7-digit numbers and haystacks are drawn with seeds the tasks never use, so no
  evaluation item is ever seen; key words come from a larger pool than the tasks' (see
  ``KEY_WORDS``), so lookup must be in-context.
- ``copy``: ``r + r`` with ``r`` 8-120 uniformly random ordinary tokens (induction copying) and
  prose paragraphs said twice.
- ``labels``: few-shot ``Word: {w}\\nCategory: {label}`` demonstrations whose label words are
  permuted per document half of the time, so the label must be read from the context.
- ``prose`` and ``arithmetic``: ordinary text (train_tiny's generators) for the rest.

Rows are ``seq_len`` tokens (the training length L) while ``max_position_embeddings`` is the
larger window, so the checkpoint can be asked about lengths it never trained on. Intermediate
checkpoints (``--save-at``) are written for the emergence study.

Usage (the bundled checkpoints; see examples/README.md)::

    python examples/train_controls.py --out examples/checkpoints/ctrl-retrieval
    python examples/train_controls.py --out /tmp/ctrl-long --init examples/checkpoints/ctrl-retrieval \\
        --seq-len 512 --steps 400 --lr 1e-3 --warmup 20 --seed 1
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # train_tiny is a sibling script

import _training as T
import train_tiny as tt

from evalkit.tasks.probes.docgen import CATEGORIES
from evalkit.tasks.probes.haystack import (
    HEADER,
    NEEDLE,
    NOISE,
    QUESTION_ALL,
    QUESTION_ONE,
    join_keys,
    prose_haystack,
)

# Key words: the tasks' 16 + 16 words plus as many again, so most training keys are pairs the
# tasks never ask for (and the tasks' pairs are a small minority of the 64 x 64 pairs).
KEY_ADJ = (
    "quiet", "amber", "brisk", "hollow", "lucky", "rusty", "silent", "tidy", "vivid", "woolen",
    "frozen", "gentle", "narrow", "polite", "sturdy", "wicked", "bright", "calm", "dusty", "eager",
    "fancy", "grim", "hasty", "icy", "jolly", "keen", "loud", "merry", "noble", "odd", "pale",
    "proud", "rapid", "sharp", "shy", "sleepy", "smooth", "soft", "sour", "spicy", "stale",
    "sunny", "sweet", "tame", "tiny", "ugly", "vast", "warm", "weary", "wild", "wise", "young",
    "zesty", "bold", "busy", "cheap", "clever", "crisp", "damp", "dull", "empty", "faint",
    "fierce", "golden",
)  # fmt: skip
KEY_NOUN = (
    "river", "lantern", "meadow", "parrot", "saddle", "teapot", "violin", "walnut", "harbor",
    "kettle", "mirror", "pillow", "rocket", "tunnel", "button", "castle", "anchor", "basket",
    "candle", "desert", "engine", "falcon", "garden", "hammer", "island", "jacket", "ladder",
    "magnet", "needle", "orchard", "pencil", "quilt", "ribbon", "shovel", "ticket", "umbrella",
    "valley", "wagon", "yacht", "zipper", "barrel", "cactus", "dragon", "feather", "glacier",
    "helmet", "igloo", "jungle", "koala", "lemon", "marble", "nugget", "oyster", "pepper",
    "rabbit", "sponge", "tomato", "velvet", "whistle", "bucket", "cobweb", "donkey", "fountain",
    "goblet",
)  # fmt: skip
VARIANTS = ("single", "multikey", "multivalue", "multiquery")
SLICES = ("needle", "copy", "labels", "prose", "arithmetic")
DEFAULT_MIX = {"needle": 0.35, "copy": 0.45, "labels": 0.12, "prose": 0.04, "arithmetic": 0.04}
SLICE_META = {
    "needle": ("en", "retrieval"),
    "copy": ("none", "copying"),
    "labels": ("en", "label-mapping"),
    "prose": ("en", "prose"),
    "arithmetic": ("en", "math"),
}


# -- documents -----------------------------------------------------------------------------------


def _value(rng: random.Random) -> str:
    return str(rng.randrange(10**6, 10**7))


def _haystack_sentences(rng: random.Random) -> list[str]:
    """Filler of one of three kinds: RULER's noise, the prose-haystack grammar (a seed range the
    tasks never use) or train_tiny's prose."""
    kind = rng.randrange(3)
    if kind == 0:
        return [s.strip() + "." for s in NOISE.split(".") if s.strip()] * 40
    if kind == 1:
        return list(prose_haystack(10**6 + rng.randrange(10**6), n_sentences=80).sentences)
    return " ".join(tt.gen_prose(rng, 20)).replace(". ", ".\n").splitlines()


def needle_doc(rng: random.Random, n_sentences: int) -> str:
    """One needle document with about `n_sentences` haystack sentences."""
    variant = rng.choice(VARIANTS)
    n_extra = rng.randint(1, 3)
    n_keys = 1 if variant in ("single", "multivalue") else 1 + n_extra
    n_values = 1 if variant == "single" else 1 + n_extra
    keys: list[str] = []
    while len(keys) < n_keys:
        k = f"{rng.choice(KEY_ADJ)}-{rng.choice(KEY_NOUN)}"
        if k not in keys:
            keys.append(k)
    values: list[str] = []
    while len(values) < n_values:
        v = _value(rng)
        if all(v not in u and u not in v for u in values):
            values.append(v)
    if variant == "multivalue":
        needles = [(keys[0], v) for v in values]
        asked, answers = [keys[0]], values
    elif variant == "multikey":
        needles = list(zip(keys, values, strict=True))
        asked, answers = [keys[0]], values[:1]
    elif variant == "multiquery":
        needles = list(zip(keys, values, strict=True))
        asked, answers = list(keys), values
    else:
        needles = [(keys[0], values[0])]
        asked, answers = [keys[0]], values
    hay = _haystack_sentences(rng)
    start = rng.randrange(len(hay))
    sents = [hay[(start + i) % len(hay)] for i in range(n_sentences)]
    for key, value in needles:
        sents.insert(rng.randint(0, len(sents)), NEEDLE.format(key=key, value=value))
    template = QUESTION_ONE if len(answers) == 1 else QUESTION_ALL
    question = template.format(keys=join_keys(asked))
    return HEADER + " ".join(sents) + question + " " + ", ".join(answers) + "."


def label_doc(rng: random.Random) -> str:
    """4-16 ``Word: w\\nCategory: label`` demonstrations over 2-4 categories; half the
    documents use a random permutation of the label words, so only the context tells which
    word names which category."""
    cats = rng.sample(sorted(CATEGORIES), rng.randint(2, 4))
    names = list(cats)
    if rng.random() < 0.5:
        while names == cats:
            rng.shuffle(names)
    label = dict(zip(cats, names, strict=True))
    shots = []
    for _ in range(rng.randint(4, 12)):
        c = rng.choice(cats)
        shots.append(f"Word: {rng.choice(CATEGORIES[c])}\nCategory: {label[c]}")
    return "\n\n".join(shots)


def prose_twice(rng: random.Random) -> str:
    text = tt.gen_prose(rng, 1)[0]
    return text + " " + text


def text_doc(rng: random.Random, name: str) -> str:
    if name == "labels":
        return label_doc(rng)
    if name == "prose":
        return tt.gen_prose(rng, 1)[0]
    if name == "arithmetic":
        return tt.gen_arithmetic(rng, 1)[0]
    raise ValueError(name)


def tokenizer_corpus(seed: int, n: int) -> list[str]:
    rng = random.Random(f"{seed}:tokenizer")
    texts = [needle_doc(rng, rng.randint(2, 12)) for _ in range(n)]
    texts += [label_doc(rng) for _ in range(n // 2)]
    texts += tt.gen_prose(rng, n) + tt.gen_arithmetic(rng, n // 2)
    return texts


# -- rows of token ids ---------------------------------------------------------------------------


class RowMaker:
    """Rows of exactly `seq_len` token ids, each a packed run of <bos> doc <eos> documents
    opening with a document of the row's slice (needle documents sized to fill up to the row,
    so retrieval distances cover 0..L), counting the tokens each slice contributed."""

    def __init__(self, tokenizer: Any, seq_len: int, mix: dict[str, float], seed: int) -> None:
        self.enc = tokenizer.backend_tokenizer
        self.bos, self.eos = tokenizer.bos_token_id, tokenizer.eos_token_id
        self.ordinary = [i for i in range(len(tokenizer)) if i > 2 and tokenizer.decode([i]) != ""]
        self.seq_len = seq_len
        self.names = [n for n in SLICES if mix.get(n, 0) > 0]
        self.weights = [mix[n] for n in self.names]
        self.rng = random.Random(f"{seed}:rows")
        self.tokens = dict.fromkeys(SLICES, 0)
        # Tokens per haystack sentence, for sizing needle documents (~12 for every kind).
        self.per_sentence = 11.0

    def _ids(self, text: str) -> list[int]:
        return [self.bos, *self.enc.encode(text, add_special_tokens=False).ids, self.eos]

    def doc(self, name: str, room: int) -> list[int]:
        rng = self.rng
        if name == "needle":
            # Fill between a third of the room and all of it: answer distances up to L.
            want = rng.randint(max(48, room // 3), max(48, room))
            n = max(1, int((want - 70) / self.per_sentence))
            ids = self._ids(needle_doc(rng, n))
            while len(ids) > room and n > 1:  # too long for the room: fewer sentences
                n = max(1, int(n * 0.8))
                ids = self._ids(needle_doc(rng, n))
            return ids
        if name == "copy":
            if rng.random() < 0.8:
                # A span said 2-4 times (every repeat is a copy target); spans up to 100 tokens
                # (the induction probe's longest) and a copy cut by the row end still trains
                # the distance r.
                n = rng.randint(8, 100) if rng.random() < 0.3 else rng.randint(8, 40)
                r = [rng.choice(self.ordinary) for _ in range(n)]
                return [self.bos, *(r * rng.randint(2, 4)), self.eos]
            return self._ids(prose_twice(rng))
        return self._ids(text_doc(rng, name))

    def row(self) -> list[int]:
        out: list[int] = []
        while len(out) < self.seq_len:
            name = self.rng.choices(self.names, self.weights)[0]
            ids = self.doc(name, self.seq_len - len(out))
            ids = ids[: self.seq_len - len(out)]
            self.tokens[name] += len(ids)
            out.extend(ids)
        return out


# -- training ------------------------------------------------------------------------------------


def quick_copy_acc(model: Any, maker: RowMaker, n: int = 8) -> float:
    """Greedy top-1 accuracy on the second copy of BOS r r (r 60 random tokens): the induction
    probe in miniature, logged to find the phase change."""
    import torch

    rng = random.Random("quick-copy")
    hits = total = 0
    with torch.no_grad():
        for _ in range(n):
            r = [rng.choice(maker.ordinary) for _ in range(60)]
            ids = torch.tensor([[maker.bos, *r, *r]])
            pred = model(input_ids=ids).logits[0].argmax(-1)
            # position p predicts token p+1; second copy tokens 2..60 sit at 62..120
            hits += int((pred[61:120] == ids[0, 62:121]).sum())
            total += 59
    return hits / total


def provenance(
    run: str, step: int, tokens: dict[str, int], parent: str | None, mix: dict[str, float]
) -> dict[str, Any]:
    slices = [
        T.SliceInfo(name, tokens.get(name, 0), f"synthetic:{name}", *SLICE_META[name])
        for name in SLICES
    ]
    return T.provenance(run, step, slices, mix, parent)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--run", default=None)
    p.add_argument("--init", type=Path, default=None, help="continue from this checkpoint")
    p.add_argument("--mix", default=None, help="e.g. needle=0.5,copy=0.2 (normalised)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=128, help="training length L")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--vocab-size", type=int, default=1024)
    p.add_argument("--hidden", type=int, default=96)
    p.add_argument("--intermediate", type=int, default=256)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--max-positions", type=int, default=512, help="window, > seq-len")
    p.add_argument(
        "--save-at",
        default="100,200,300,400,500,600,700,800,1000,1200,1400,1700",
        help="steps to save intermediate checkpoints at",
    )
    p.add_argument("--save-dtype", choices=("float32", "float16"), default="float16")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--log-every", type=int, default=25)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    import torch
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    mix = dict(DEFAULT_MIX)
    if args.mix:
        mix = dict.fromkeys(SLICES, 0.0)
        for part in args.mix.split(","):
            k, _, v = part.partition("=")
            if k not in SLICES:
                raise SystemExit(f"unknown slice {k!r}; slices: {', '.join(SLICES)}")
            mix[k] = float(v)
    total_w = sum(mix.values())
    mix = {k: v / total_w for k, v in mix.items()}
    run = args.run or args.out.name
    t0 = time.perf_counter()
    parent = None
    if args.init is not None:
        tokenizer = PreTrainedTokenizerFast.from_pretrained(args.init)
        tokenizer.model_max_length = args.max_positions
        model = LlamaForCausalLM.from_pretrained(args.init, dtype=torch.float32)
        cfg = json.loads((args.init / "config.json").read_text())
        if cfg.get("max_position_embeddings", 0) < args.max_positions:
            model.config.max_position_embeddings = args.max_positions
        parent = str(args.init.name)
    else:
        corpus = tokenizer_corpus(args.seed, 3000)
        tokenizer = tt.train_tokenizer(corpus, args.vocab_size, model_max_length=args.max_positions)
        ns = argparse.Namespace(**vars(args))
        model = tt.make_model(ns, tokenizer)
    print(f"tokenizer {len(tokenizer)}; model {sum(p.numel() for p in model.parameters())} params")
    maker = RowMaker(tokenizer, args.seq_len, mix, args.seed)
    save_at = {int(s) for s in args.save_at.split(",") if s}

    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": args.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=args.lr,
        betas=(0.9, 0.95),
    )

    sched = torch.optim.lr_scheduler.LambdaLR(opt, T.warmup_cosine(args.warmup, args.steps))
    log = T.TrainLog(args.out / "train_log.json")
    model.train()
    running = 0.0
    for step in range(1, args.steps + 1):
        batch = torch.tensor([maker.row() for _ in range(args.batch_size)])
        running += T.train_step(model, opt, sched, model(input_ids=batch, labels=batch).loss)
        if step % args.log_every == 0 or step == args.steps:
            acc = T.evaluate(model, lambda m: quick_copy_acc(m, maker))
            n = (step - 1) % args.log_every + 1
            row = {"step": step, "tokens_seen": sum(maker.tokens.values()), "loss": running / n}
            log.record({**row, "copy_acc": acc, "lr": sched.get_last_lr()[0]})
            running = 0.0
        if step in save_at or step == args.steps:
            dest = args.out if step == args.steps else args.out.parent / f"{run}-step{step:05d}"
            # One run name for all of a run's checkpoints: trajectories group by it.
            prov = provenance(run, step, maker.tokens, parent, mix)
            T.save_checkpoint(
                model,
                dest,
                prov,
                lambda out: tt.save_tokenizer(tokenizer, out),
                dtype=args.save_dtype,
            )
            print(f"saved {dest}", flush=True)
    print(f"done in {time.perf_counter() - t0:.1f}s; tokens {maker.tokens}")


if __name__ == "__main__":
    main()
