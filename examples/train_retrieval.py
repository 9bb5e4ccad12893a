"""Train the retrieval positive control: a tiny Llama that answers the needle family (issue 16).

The broad mixed runs of ``train_controls.py`` never learned in-context lookup within a CPU budget;
the narrow induction run did (``train_induction.py``). So this script trains on exactly the
sequence shape ``tasks/longctx/niah_*.yaml`` present: ``<bos>`` + the family's header, a
haystack of the same kinds (RULER's noise sentences, or the prose-haystack grammar with seeds
the tasks never use) with needle sentences ``The special magic number for {key} is {value}.``
at random sentence boundaries, the question and the answer, with the loss on the question and
answer only (the haystack and the values are unpredictable noise whose gradient slows learning).
Keys come from a pool four times the tasks' (``train_controls.KEY_ADJ`` x ``KEY_NOUN``) and
values are fresh random 7-digit numbers, so the answer can only be read from the context.

Documents are 1..L tokens long (``--length``, uniformly, or the top half of that range for a
``--long-frac`` share) inside a larger position range (``--window``, the checkpoint's
``max_position_embeddings``), so the checkpoint can be asked about lengths it never trained on.
Every ``--eval-every`` steps it logs held-out answer accuracy (teacher-forced: every value token
the argmax, which is what greedy decoding then writes) at L and at 2L, and saves ``step-XXXXX``
with a ``provenance.yaml`` (tokens seen so far, counting ``--resume-from``'s).

Usage (the bundled pair; examples/README.md has every option used)::

    python examples/train_induction.py --out /tmp/w-ind --hidden 128 --heads 4 --intermediate 256
    python examples/train_retrieval.py --out /tmp/w --init /tmp/w-ind/step-00700 \\
        --copy-frac 0.15 --digit-frac 0.1 --noise-frac 0.6
    python examples/train_retrieval.py --out /tmp/wl --resume-from /tmp/w/step-00450 \\
        --length 512 --long-frac 0.7 --batch 16 --decay
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))  # train_controls is a sibling script (its key pool)

from train_controls import KEY_ADJ, KEY_NOUN  # noqa: E402

from evalkit.tasks.probes.haystack import (  # noqa: E402
    HEADER,
    NEEDLE,
    NOISE,
    QUESTION_ALL,
    QUESTION_ONE,
    join_keys,
    prose_haystack,
)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
SLICE = "needle_qa"
COPY_SLICE = "induction_copy"
DIGIT_SLICE = "digit_copy"
DOMAINS = {SLICE: "retrieval", COPY_SLICE: "induction", DIGIT_SLICE: "induction"}
VARIANTS = {"single": 0.35, "multikey": 0.35, "multivalue": 0.15, "multiquery": 0.15}
NOISE_SENTENCES = tuple(s.strip() + "." for s in NOISE.split(".") if s.strip())
# The tasks' prose haystacks use their own seeds (20301-20304); these are far from them.
PROSE_SEEDS = range(10**6, 10**6 + 64)


class Docs:
    """Needle documents as token ids with a loss mask, drawn from one seeded stream."""

    def __init__(self, tokenizer_dir: Path, seed: int, noise_frac: float = 0.5) -> None:
        from tokenizers import Tokenizer

        # share of needle documents whose haystack is RULER's repeated noise sentences (the rest:
        # prose); the repeated noise is the harder haystack for a copier (it invites copying it)
        self.noise_frac = noise_frac
        self.tok = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
        self.bos = self.tok.token_to_id("<|bos|>")
        self.pad = self.tok.token_to_id("<|pad|>")
        self.rng = random.Random(seed)
        self.prose = [prose_haystack(s, n_sentences=120).sentences for s in PROSE_SEEDS]
        self._mean: dict[str, float] = {}
        # icl_induction's draw set: ids that decode to text, BOS excluded
        self.seen = dict.fromkeys(DOMAINS, 0)  # tokens drawn per slice (no padding)
        self.ordinary = [
            i for i in range(self.tok.get_vocab_size()) if i != self.bos and self.tok.decode([i])
        ]

    def copy_doc(self, max_tokens: int) -> tuple[list[int], list[int], int]:
        """BOS + r + r with r random ordinary tokens (the induction probe's shape), loss on the
        second copy: keeps the copying the needle-only runs wore down (0.98 -> 0.22)."""
        n = self.rng.randint(8, max(8, min(120, (max_tokens - 1) // 2)))
        r = [self.rng.choice(self.ordinary) for _ in range(n)]
        return [self.bos, *r, *r], [0] * (n + 1) + [1] * n, n + 1

    def digit_doc(self, max_tokens: int) -> tuple[list[int], list[int], int]:
        """BOS + D + D with D a run of random 7-digit numbers, loss on the second copy. The
        needle answers that fail drop or repeat a digit token where a digit recurs
        (3633438 -> 363438): one-token induction is ambiguous there, and these documents
        supervise exactly that case densely (an answer gives 7 digits per 200+ tokens)."""
        most = max(1, min(16, (max_tokens - 1) // 16))
        nums = [str(self.rng.randrange(10**6, 10**7)) for _ in range(self.rng.randint(1, most))]
        d = self.tok.encode(" " + " ".join(nums) + ".").ids
        return [self.bos, *d, *d], [0] * (len(d) + 1) + [1] * len(d), len(d) + 1

    def _per_sentence(self, hay: tuple[str, ...]) -> float:
        """Mean tokens of a haystack sentence (with its space), for a first guess."""
        key = hay[0]
        if key not in self._mean:
            counts = [len(self.tok.encode(" " + s).ids) for s in hay[:40]]
            self._mean[key] = sum(counts) / len(counts)
        return self._mean[key]

    def draw(self, max_tokens: int, min_tokens: int = 1) -> tuple[list[int], list[int], int]:
        """(ids, loss mask, first answer token) of one document of at most `max_tokens`
        tokens, aiming at a length drawn uniformly from [min_tokens, max_tokens] (or from the
        needles-and-question size up, when that is larger)."""
        rng = self.rng
        variant = rng.choices(list(VARIANTS), weights=list(VARIANTS.values()))[0]
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
            v = str(rng.randrange(10**6, 10**7))
            if all(v not in u and u not in v for u in values):
                values.append(v)
        if variant == "multivalue":
            needles, asked, answers = [(keys[0], v) for v in values], keys[:1], values
        elif variant == "multikey":
            needles, asked, answers = list(zip(keys, values, strict=True)), keys[:1], values[:1]
        elif variant == "multiquery":
            needles, asked, answers = list(zip(keys, values, strict=True)), keys, values
        else:
            needles, asked, answers = [(keys[0], values[0])], keys, values
        rng.shuffle(needles)  # which needle is asked for must not be told by its place
        slots = sorted(rng.random() for _ in needles)  # relative places, kept as the text shrinks
        if variant == "multivalue":
            answers = [v for _, v in needles]  # in the order the context gives them
        hay = NOISE_SENTENCES if rng.random() < self.noise_frac else rng.choice(self.prose)
        start = rng.randrange(len(hay))
        question = (QUESTION_ONE if len(answers) == 1 else QUESTION_ALL).format(
            keys=join_keys(asked)
        )
        answer = " " + ", ".join(answers) + "."
        needle_texts = [NEEDLE.format(key=k, value=v) for k, v in needles]

        def build(n: int) -> tuple[str, int, int]:
            sents = [hay[(start + i) % len(hay)] for i in range(n)]
            for text, at in sorted(zip(needle_texts, slots, strict=True), key=lambda p: -p[1]):
                sents.insert(round(at * len(sents)), text)
            body = HEADER + " ".join(sents)
            return body + question + answer, len(body), len(body) + len(question)

        text, q_at, a_at = build(0)
        enc = self.tok.encode(text)
        if len(enc.ids) + 1 > max_tokens:  # the needles and question alone do not fit: redraw
            return self.draw(max_tokens, min_tokens)
        target = rng.randint(max(min_tokens, len(enc.ids) + 1), max_tokens)
        n = max(0, round((target - len(enc.ids) - 1) / self._per_sentence(hay)) - 1)
        text, q_at, a_at = build(n)
        enc = self.tok.encode(text)
        while len(enc.ids) + 1 < target and len(enc.ids) + 1 < max_tokens:
            n += 1
            text, q_at, a_at = build(n)
            enc = self.tok.encode(text)
        while len(enc.ids) + 1 > max_tokens and n > 0:
            n -= 1
            text, q_at, a_at = build(n)
            enc = self.tok.encode(text)
        ids = [self.bos, *enc.ids]
        # Loss on the question (its keys are read from the context) and the answer.
        mask = [0] + [1 if s >= q_at else 0 for s, _ in enc.offsets]
        first_answer = 1 + next(i for i, (s, _) in enumerate(enc.offsets) if s >= a_at)
        return ids, mask, first_answer

    def batch(
        self,
        size: int,
        max_tokens: int,
        long_frac: float,
        copy_frac: float = 0.0,
        long_lo: float = 0.5,
        digit_frac: float = 0.0,
    ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
        rows = []
        for _ in range(size):
            u = self.rng.random()
            if u < digit_frac:
                rows.append(self.digit_doc(max_tokens))
                self.seen[DIGIT_SLICE] += len(rows[-1][0])
                continue
            if u < digit_frac + copy_frac:
                rows.append(self.copy_doc(max_tokens))
                self.seen[COPY_SLICE] += len(rows[-1][0])
                continue
            lo = int(max_tokens * long_lo) if self.rng.random() < long_frac else 1
            rows.append(self.draw(max_tokens, lo))
            self.seen[SLICE] += len(rows[-1][0])
        width = max(len(r[0]) for r in rows)
        x = torch.full((size, width), self.pad)
        labels = torch.full((size, width), -100)
        spans = []
        for i, (ids, mask, first) in enumerate(rows):
            x[i, : len(ids)] = torch.tensor(ids)
            keep = torch.tensor(mask, dtype=torch.bool)
            labels[i, : len(ids)] = torch.where(keep, torch.tensor(ids), -100)
            # value tokens: the answer without its closing period
            spans.append((first, len(ids) - 1))
        return x, labels, spans


@torch.no_grad()
def answer_accuracy(model: Any, held: list[tuple[torch.Tensor, list[tuple[int, int]]]]) -> float:
    """Share of held-out documents whose every value token is the argmax (teacher-forced)."""
    hits = total = 0
    for x, spans in held:
        pred = model(input_ids=x).logits.argmax(-1)
        for i, (a, b) in enumerate(spans):
            # logits at p predict token p+1
            hits += int(bool((pred[i, a - 1 : b - 1] == x[i, a:b]).all()))
            total += 1
    return hits / total


@torch.no_grad()
def copy_accuracy(model: Any, seqs: list[list[int]]) -> float:
    """Top-1 on tokens 2..n of the second copy of BOS + r + r, as icl_induction scores it."""
    hits = total = 0
    for ids in seqs:
        n = (len(ids) - 1) // 2
        pred = model(input_ids=torch.tensor([ids])).logits[0].argmax(-1)
        hits += int((pred[n + 1 : 2 * n] == torch.tensor(ids[n + 2 :])).sum())
        total += n - 1
    return hits / total


def provenance(run: str, step: int, tokens: dict[str, int], parent: str | None) -> dict[str, Any]:
    total = sum(tokens.values())
    shares = {k: v / total if total else 0.0 for k, v in tokens.items() if v}
    mix = ",".join(f"{k}={v:.6f}" for k, v in sorted(shares.items()))
    mix_id = hashlib.sha256(mix.encode()).hexdigest()[:12]
    return {
        "schema_version": 2,
        "checkpoint": {
            "run": run,
            "step": step,
            "tokens_seen": total,
            "parent": parent,
            "mix_id": mix_id,
        },
        "slices": [
            {
                "name": name,
                "tokens": n,
                "share": round(shares[name], 6),
                "source": f"synthetic:{name}",
                "license": "Apache-2.0",
                "language": "en",
                "domain": DOMAINS[name],
                "quality": 1.0,
                "repeats": 1,
            }
            for name, n in tokens.items()
            if n
        ],
    }


def save(model: Any, tokenizer_dir: Path, out: Path, prov: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    for name in TOKENIZER_FILES:
        shutil.copy(tokenizer_dir / name, out / name)
    (out / "provenance.yaml").write_text(yaml.safe_dump(prov, sort_keys=False), encoding="utf-8")


def insert_identity_layers(model: Any, at: list[int]) -> None:
    """Grow the model deeper without changing what it computes: each new decoder layer goes in
    at index `at[i]` with its attention output and MLP down projections zeroed, so it adds
    nothing to the residual stream until training moves those weights (gradients reach them at
    once; the rest of the layer follows). Gives a converged small model room for a composition
    it lacks (here: matching two previous tokens when a digit recurs in a value)."""
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    layers = list(model.model.layers)
    for index in sorted(at):
        new = LlamaDecoderLayer(model.config, layer_idx=index)
        torch.nn.init.zeros_(new.self_attn.o_proj.weight)
        torch.nn.init.zeros_(new.mlp.down_proj.weight)
        layers.insert(index, new)
    for i, layer in enumerate(layers):
        layer.self_attn.layer_idx = i  # the KV cache is indexed by it
    model.model.layers = torch.nn.ModuleList(layers)
    model.config.num_hidden_layers = len(layers)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--tokenizer", type=Path, default=ROOT / "checkpoints" / "tiny-base")
    p.add_argument("--init", type=Path, help="start from these weights (a new run)")
    p.add_argument("--resume-from", type=Path, help="continue this run's checkpoint")
    p.add_argument("--run", default="retrieval-control")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--intermediate", type=int, default=128)
    p.add_argument("--length", type=int, default=256, help="training length L (tokens)")
    p.add_argument("--window", type=int, default=1024, help="max_position_embeddings")
    p.add_argument("--long-frac", type=float, default=0.0)
    p.add_argument(
        "--long-lo",
        type=float,
        default=0.5,
        help="a --long-frac document is --long-lo x L to L tokens long",
    )
    p.add_argument(
        "--copy-frac", type=float, default=0.0, help="share of BOS + r + r copying documents"
    )
    p.add_argument(
        "--digit-frac", type=float, default=0.0, help="share of copied 7-digit-number runs"
    )
    p.add_argument(
        "--decay", action="store_true", help="cosine lr decay to 0 over --max-steps after warmup"
    )
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--max-steps", type=int, default=3000)
    p.add_argument("--max-seconds", type=float, default=900.0)
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument("--target", type=float, default=0.95)
    p.add_argument("--after", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rope-theta", type=float, help="set the loaded model's RoPE base")
    p.add_argument("--noise-frac", type=float, default=0.5, help="share of noise haystacks")
    p.add_argument(
        "--insert-layer",
        type=int,
        action="append",
        default=[],
        help="grow the loaded model: a function-preserving new layer at this index (repeatable)",
    )
    a = p.parse_args()
    if (a.rope_theta is not None or a.insert_layer) and not (a.resume_from or a.init):
        p.error(
            "--rope-theta and --insert-layer change a loaded model: give --init or --resume-from"
        )

    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    docs = Docs(a.tokenizer, a.seed, a.noise_frac)
    start_tokens = dict.fromkeys(DOMAINS, 0)
    start_step, parent = 0, None
    source = a.resume_from or a.init
    if source is not None:
        cfg = LlamaConfig.from_pretrained(source)
        if a.rope_theta is not None:
            # a new RoPE base, trained into (not bolted on): slower rotations keep more of a
            # 16-dim head's frequency pairs usable for matching content across L tokens
            cfg.rope_parameters = {**cfg.rope_parameters, "rope_theta": a.rope_theta}
        model = LlamaForCausalLM.from_pretrained(source, config=cfg, dtype=torch.float32)
        parent = str(source)
        if a.resume_from is not None:
            prov = yaml.safe_load((a.resume_from / "provenance.yaml").read_text())
            for sl in prov["slices"]:
                start_tokens[sl["name"]] = int(sl["tokens"])
            start_step = int(prov["checkpoint"]["step"])  # steps and tokens go on counting
        # RoPE has no position parameters: the window is the config's to declare.
        model.config.max_position_embeddings = a.window
        if a.insert_layer:
            insert_identity_layers(model, a.insert_layer)
    else:
        base = json.loads((a.tokenizer / "config.json").read_text())
        cfg = LlamaConfig(
            vocab_size=base["vocab_size"],
            hidden_size=a.hidden,
            intermediate_size=a.intermediate,
            num_hidden_layers=a.layers,
            num_attention_heads=a.heads,
            num_key_value_heads=a.heads,
            max_position_embeddings=a.window,
            bos_token_id=base["bos_token_id"],
            eos_token_id=base["eos_token_id"],
            pad_token_id=base["pad_token_id"],
            tie_word_embeddings=True,  # copying a token writes back the direction it was read
        )
        model = LlamaForCausalLM(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)

    def lr_factor(s: int) -> float:
        if s < a.warmup or not a.decay:
            return min(1.0, (s + 1) / a.warmup)
        # a falling lr lets the last steps settle instead of hopping between minima
        done = (s - a.warmup) / max(1, a.max_steps - a.warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, done)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    # a fresh optimizer also when resuming: its warmup restarts (the logs say so)
    held_docs = Docs(a.tokenizer, a.seed + 10**6)  # a stream training never draws
    held_at = {
        n: [held_docs.batch(8, n, 1.0)[::2] for _ in range(3)]
        for n in sorted({a.length, 2 * a.length})
        if n <= a.window
    }
    held_copy = [held_docs.copy_doc(201)[0] for _ in range(16)]
    log: list[dict[str, Any]] = []
    t0 = time.time()
    above = 0
    for step in range(start_step + 1, start_step + a.max_steps + 1):
        x, labels, _ = docs.batch(
            a.batch, a.length, a.long_frac, a.copy_frac, a.long_lo, a.digit_frac
        )
        loss = model(input_ids=x, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        tokens = {k: start_tokens[k] + docs.seen[k] for k in start_tokens}
        if step % a.eval_every == 0:
            model.eval()
            accs = {f"acc@{n}": answer_accuracy(model, h) for n, h in held_at.items()}  # type: ignore[arg-type]
            accs["copy_acc"] = copy_accuracy(model, held_copy)
            model.train()
            row: dict[str, Any] = {
                "step": step,
                "tokens_seen": sum(tokens.values()),
                "loss": float(loss),
                "lr": sched.get_last_lr()[0],
            }
            row.update(accs)
            row["seconds"] = round(time.time() - t0, 1)
            log.append(row)
            print(json.dumps(row), flush=True)
            save(
                model,
                a.tokenizer,
                a.out / f"step-{step:05d}",
                provenance(a.run, step, tokens, parent),
            )
            if accs[f"acc@{a.length}"] >= a.target or above:
                above += 1
            if above > a.after or time.time() - t0 > a.max_seconds:
                break
    (a.out / "train_log.json").write_text(json.dumps(log, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
