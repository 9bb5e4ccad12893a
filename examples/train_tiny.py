"""Train a byte-level BPE tokenizer and a tiny Llama model on synthetic slices, on CPU.

The result is a real checkpoint in the Hugging Face layout (config, float32 safetensors, fast
tokenizer) plus a ``provenance.yaml`` describing the data slices it saw, so evalkit's loading,
scoring and attribution code can be tested end to end without a GPU or a model hub.

Usage (the bundled checkpoint)::

    python examples/train_tiny.py --out examples/checkpoints/tiny-base

Ablations override the mix, e.g. ``--mix arithmetic=0.5,kv=0.1,multilingual=0.1,code=0.1,prose=0.2``.
Importing this module has no side effects; tests load the ``gen_<slice>`` functions and
``train_tokenizer`` from the file path. ``NUMBER_WORDS``, ``KV_KEYS`` and ``kv_fact_value`` come
from evalkit, so the tasks and the training data share one copy.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

# The tables the tasks read too (number words in 8 languages; the key-value slice's keys, each
# one BPE token, and the facts variant's fixed values): one copy, owned by evalkit.
from evalkit.tasks.generators import KV_FACT_KEYS as KV_KEYS
from evalkit.tasks.generators import kv_fact_value
from evalkit.tasks.probes.languages import NUMBER_WORDS

if TYPE_CHECKING:  # heavy imports stay inside functions so importing the module is cheap
    import numpy as np
    import torch
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

BOS = "<|bos|>"
EOS = "<|eos|>"
PAD = "<|pad|>"
# Order fixes the ids: <|bos|>=0, <|eos|>=1, <|pad|>=2.
SPECIAL_TOKENS: tuple[str, ...] = (BOS, EOS, PAD)

DEFAULT_MIX: dict[str, float] = {
    "arithmetic": 0.35,
    "kv": 0.15,
    "multilingual": 0.15,
    "code": 0.15,
    "prose": 0.20,
}

# Provenance metadata per slice: (language, domain).
SLICE_META: dict[str, tuple[str, str]] = {
    "arithmetic": ("en", "math"),
    "kv": ("en", "retrieval"),
    "multilingual": ("multi", "number-words"),
    "code": ("python", "code"),
    "prose": ("en", "prose"),
}


# --------------------------------------------------------------------------------------------
# Synthetic slices: each gen_<slice>(rng, n_docs) is a pure function of the rng state.
# --------------------------------------------------------------------------------------------


def gen_arithmetic(rng: random.Random, n_docs: int) -> list[str]:
    """Lines ``{a} + {b} = {a+b}`` (a, b in 0..19), with some ``{a} - {b} = {a-b}`` (a >= b)."""
    docs: list[str] = []
    for _ in range(n_docs):
        lines: list[str] = []
        # Short documents too, so "<|bos|>a + b = s<|eos|>" is common and the format is learned
        # at the very start of a sequence as well as mid-document.
        for _ in range(rng.randint(1, 10)):
            a, b = rng.randint(0, 19), rng.randint(0, 19)
            if rng.random() < 0.8:
                lines.append(f"{a} + {b} = {a + b}")
            else:
                a, b = max(a, b), min(a, b)
                lines.append(f"{a} - {b} = {a - b}")
        docs.append("\n".join(lines))
    return docs


def gen_kv(rng: random.Random, n_docs: int) -> list[str]:
    """3-8 records ``key {k} is {v}.`` then ``query {k}: {v}`` repeating one of them."""
    docs: list[str] = []
    for _ in range(n_docs):
        n = rng.randint(3, 8)
        keys = rng.sample(KV_KEYS, n)  # distinct, so the query has exactly one right answer
        values = [rng.randint(10, 99) for _ in keys]
        lines = [f"key {k} is {v}." for k, v in zip(keys, values, strict=True)]
        i = rng.randrange(n)
        lines.append(f"query {keys[i]}: {values[i]}")
        docs.append("\n".join(lines))
    return docs


def gen_kv_facts(rng: random.Random, n_docs: int) -> list[str]:
    """Like ``gen_kv`` but every key always has its fixed value ``kv_fact_value(key)``.

    Closed-book recall of these 73 facts is memorisation, which a model of a few hundred
    thousand parameters learns in a few hundred steps in proportion to how often it sees
    them, so the kv share drives a retrieval score (in-context lookup stayed at chance).
    """
    docs: list[str] = []
    for _ in range(n_docs):
        n = rng.randint(3, 8)
        keys = rng.sample(KV_KEYS, n)
        lines = [f"key {k} is {kv_fact_value(k)}." for k in keys]
        k = keys[rng.randrange(n)]
        lines.append(f"query {k}: {kv_fact_value(k)}")
        docs.append("\n".join(lines))
    return docs


def gen_multilingual(rng: random.Random, n_docs: int) -> list[str]:
    """Lines ``{word} = {n}`` for numbers 0..20, one language per document, random order."""
    langs = sorted(NUMBER_WORDS)
    docs: list[str] = []
    for _ in range(n_docs):
        words = NUMBER_WORDS[rng.choice(langs)]
        numbers = rng.sample(range(len(words)), rng.randint(3, 10))
        docs.append("\n".join(f"{words[n]} = {n}" for n in numbers))
    return docs


_CODE_TEMPLATES: tuple[str, ...] = (
    "def add_{k}(x):\n    return x + {k}\n",
    "def sub_{k}(x):\n    return x - {k}\n",
    "def mul_{k}(x):\n    return x * {k}\n",
    "def is_even(x):\n    return x % 2 == 0\n",
    "def is_odd(x):\n    return x % 2 == 1\n",
    "def is_multiple_of_{k}(x):\n    return x % {k} == 0\n",
    "def clamp_{k}(x):\n    return min(x, {k})\n",
)


def gen_code(rng: random.Random, n_docs: int) -> list[str]:
    """1-4 tiny Python functions per document, separated by a blank line."""
    docs: list[str] = []
    for _ in range(n_docs):
        funcs = [
            rng.choice(_CODE_TEMPLATES).format(k=rng.randint(2, 19))
            for _ in range(rng.randint(1, 4))
        ]
        docs.append("\n".join(funcs))
    return docs


_ADJECTIVES = (
    "quiet", "small", "old", "bright", "green", "tall", "cold", "warm", "busy", "gentle",
    "heavy", "little", "young", "dark", "red", "slow",
)  # fmt: skip
_SUBJECTS = (
    "river", "child", "farmer", "bird", "teacher", "wind", "dog", "baker", "sailor", "cat",
    "girl", "boy", "horse", "painter", "train", "storm",
)  # fmt: skip
_VERBS = (
    "carries", "finds", "watches", "paints", "follows", "holds", "moves", "pulls", "sees",
    "brings", "opens", "cleans", "builds", "loves",
)  # fmt: skip
_OBJECTS = (
    "boat", "book", "house", "apple", "letter", "garden", "window", "stone", "road", "basket",
    "bridge", "lamp", "table", "field", "song", "door",
)  # fmt: skip
_PLACES = (
    "near the hill", "in the morning", "by the sea", "after the rain", "at night",
    "in the village", "under the tree", "across the valley",
)  # fmt: skip


def gen_prose(rng: random.Random, n_docs: int) -> list[str]:
    """2-6 sentences like ``The quiet river carries a small boat.`` joined by spaces."""
    docs: list[str] = []
    for _ in range(n_docs):
        sentences: list[str] = []
        for _ in range(rng.randint(2, 6)):
            s = (
                f"The {rng.choice(_ADJECTIVES)} {rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} "
                f"a {rng.choice(_ADJECTIVES)} {rng.choice(_OBJECTS)}"
            )
            if rng.random() < 0.3:
                s += f" {rng.choice(_PLACES)}"
            sentences.append(s + ".")
        docs.append(" ".join(sentences))
    return docs


GENERATORS: dict[str, Callable[[random.Random, int], list[str]]] = {
    "arithmetic": gen_arithmetic,
    "kv": gen_kv,
    "multilingual": gen_multilingual,
    "code": gen_code,
    "prose": gen_prose,
}


def slice_rng(seed: int, name: str) -> random.Random:
    """An independent, reproducible stream per slice (str seeds hash stably across runs)."""
    return random.Random(f"{seed}:{name}")


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------


def train_tokenizer(
    texts: Iterable[str], vocab_size: int, *, model_max_length: int = 512
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer with <|bos|>=0, <|eos|>=1, <|pad|>=2.

    No post-processor: encoding never adds special tokens, so callers (and evalkit) decide
    where BOS/EOS go. All 256 bytes are in the base alphabet, so nothing is ever unknown.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    for i, t in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(t) == i, f"{t} must have id {i}"
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        model_max_length=model_max_length,
    )


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, out: Path) -> None:
    """``save_pretrained`` plus two touches so transformers 4.x loads it too.

    transformers 5 names the class ``TokenizersBackend`` (unknown to 4.x) and no longer writes
    ``special_tokens_map.json``; ``PreTrainedTokenizerFast`` resolves in both major versions.
    """
    import json

    tokenizer.save_pretrained(out)
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    special = {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD}
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")


def tokenizer_corpus(seed: int, docs_per_slice: int) -> list[str]:
    """Equal documents from every slice, independent of the mix, so ablations that retrain the
    tokenizer with the same seed get the identical vocabulary."""
    texts: list[str] = []
    for name, gen in GENERATORS.items():
        texts.extend(gen(slice_rng(seed, f"tokenizer:{name}"), docs_per_slice))
    return texts


# --------------------------------------------------------------------------------------------
# Data: documents -> <|bos|> doc <|eos|> stream -> fixed-length chunks
# --------------------------------------------------------------------------------------------


def parse_mix(spec: str | None) -> dict[str, float]:
    """``"arithmetic=0.5,kv=0.1"`` -> shares normalised to sum to 1 (missing slices get 0)."""
    if not spec:
        return dict(DEFAULT_MIX)
    mix = dict.fromkeys(GENERATORS, 0.0)
    for part in spec.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in GENERATORS:
            raise ValueError(f"bad mix entry {part!r}; slices: {', '.join(GENERATORS)}")
        share = float(value)
        if share < 0 or not math.isfinite(share):
            raise ValueError(f"share for {name} must be a finite number >= 0, got {value}")
        mix[name] = share
    total = sum(mix.values())
    if total <= 0:
        raise ValueError("mix must give at least one slice a positive share")
    return {k: v / total for k, v in mix.items()}


def mix_id(mix: dict[str, float]) -> str:
    """Short stable hash of the mix (6 decimals, sorted), for provenance and run names."""
    canon = ",".join(f"{k}={mix[k]:.6f}" for k in sorted(mix) if mix[k] > 0)
    return hashlib.sha256(canon.encode()).hexdigest()[:12]


def build_stream(
    tokenizer: PreTrainedTokenizerFast,
    mix: dict[str, float],
    total_tokens: int,
    seed: int,
    batch_docs: int = 4096,
    generators: dict[str, Callable[[random.Random, int], list[str]]] | None = None,
    planted: dict[str, list[str]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and per-token slice index for a shuffled stream of exactly ``total_tokens``.

    Each slice gets whole documents until it holds its share of the budget; documents of all
    slices are then shuffled together so every chunk mixes formats.
    """
    import numpy as np

    backend = tokenizer.backend_tokenizer
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    gens = generators or GENERATORS
    names = list(GENERATORS)
    docs: list[tuple[int, list[int]]] = []
    for si, name in enumerate(names):
        budget = math.ceil(mix.get(name, 0.0) * total_tokens)
        rng = slice_rng(seed, name)
        have = 0
        # Planted documents (contamination tests) come first and count toward the slice's share.
        for text in (planted or {}).get(name, []):
            ids = [bos, *backend.encode(text, add_special_tokens=False).ids, eos]
            docs.append((si, ids))
            have += len(ids)
        while have < budget:
            texts = gens[name](rng, batch_docs)
            for enc in backend.encode_batch(texts, add_special_tokens=False):
                ids = [bos, *enc.ids, eos]
                docs.append((si, ids))
                have += len(ids)
                if have >= budget:
                    break
    random.Random(f"{seed}:shuffle").shuffle(docs)
    ids_arr = np.fromiter((t for _, d in docs for t in d), dtype=np.int64)
    src_arr = np.concatenate([np.full(len(d), si, dtype=np.int8) for si, d in docs])
    if len(ids_arr) < total_tokens:  # only possible through rounding; never silently short
        raise RuntimeError(f"stream has {len(ids_arr)} tokens, need {total_tokens}")
    return ids_arr[:total_tokens], src_arr[:total_tokens]


# --------------------------------------------------------------------------------------------
# Model, training, saving
# --------------------------------------------------------------------------------------------


def make_model(args: argparse.Namespace, tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        max_position_embeddings=args.max_positions,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


def train(
    model: LlamaForCausalLM,
    chunks: torch.Tensor,
    *,
    steps: int,
    lr: float,
    warmup: int,
    weight_decay: float,
    log_every: int,
) -> None:
    """AdamW + linear warmup + cosine decay to 10%, fp32, grad-norm clipping at 1.0."""
    import torch

    # No weight decay on norms (1-D params), as usual for transformers.
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=lr,
        betas=(0.9, 0.95),
    )

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    model.train()
    t0 = time.perf_counter()
    running = 0.0
    for step in range(steps):
        batch = chunks[step]
        out = model(input_ids=batch, labels=batch)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        running += out.loss.item()
        if (step + 1) % log_every == 0 or step + 1 == steps:
            n = (step % log_every) + 1
            elapsed = time.perf_counter() - t0
            print(
                f"step {step + 1:5d}/{steps}  loss {running / n:.4f}  "
                f"lr {sched.get_last_lr()[0]:.2e}  {elapsed:6.1f}s",
                flush=True,
            )
            running = 0.0
    model.eval()


def write_provenance(
    path: Path,
    *,
    run: str,
    steps: int,
    parent: str | None,
    mix: dict[str, float],
    slice_tokens: dict[str, int],
    sources: dict[str, str] | None = None,
    sample_docs: dict[str, str] | None = None,
    timestamp: str | None = None,
) -> None:
    import yaml

    total = sum(slice_tokens.values())
    slices: list[dict[str, Any]] = []
    for name, tokens in slice_tokens.items():
        if tokens == 0:
            continue
        language, domain = SLICE_META[name]
        slices.append(
            {
                "name": name,
                "tokens": int(tokens),
                "share": round(tokens / total, 6),
                "source": (sources or {}).get(name, f"synthetic:{name}"),
                "license": "Apache-2.0",
                "language": language,
                "domain": domain,
                "quality": 1.0,
                # Documents are generated fresh for one pass: nothing is repeated.
                "repeats": 1,
            }
        )
        if timestamp is not None:
            slices[-1]["timestamp"] = timestamp
        if sample_docs and name in sample_docs:
            slices[-1]["sample_documents"] = sample_docs[name]
    doc = {
        "schema_version": 2,
        "checkpoint": {
            "run": run,
            "step": steps,
            "tokens_seen": int(total),
            "parent": parent,
            "mix_id": mix_id(mix),
        },
        "slices": slices,
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")


def write_sample_docs(
    out: Path,
    names: Sequence[str],
    *,
    seed: int,
    n_docs: int,
    generators: dict[str, Callable[[random.Random, int], list[str]]],
    planted: dict[str, list[str]],
    added: str,
) -> dict[str, str]:
    """Per slice, ``samples/<slice>.jsonl.gz`` in Dolma's format: held-out documents from a
    stream training never drew (for slice fit), plus any planted documents verbatim (they
    were in the training data, and contamination checks must be able to find them)."""
    import gzip
    import json

    (out / "samples").mkdir(parents=True, exist_ok=True)
    paths: dict[str, str] = {}
    for name in names:
        texts = generators[name](slice_rng(seed, f"heldout:{name}"), n_docs)
        rows = [(f"{name}-heldout-{i}", t) for i, t in enumerate(texts)]
        rows += [(f"{name}-planted-{i}", t) for i, t in enumerate(planted.get(name, []))]
        rel = f"samples/{name}.jsonl.gz"
        # mtime=0: byte-identical files on regeneration.
        with gzip.GzipFile(out / rel, "wb", mtime=0) as fh:
            for doc_id, text in rows:
                rec = {"id": doc_id, "text": text, "source": name, "added": added, "metadata": {}}
                fh.write((json.dumps(rec, ensure_ascii=False) + "\n").encode())
        paths[name] = rel
    return paths


def kv_facts_accuracy(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast) -> float:
    """Closed-book recall: ``key {k} is`` -> the fixed value among 4 (3 other facts' values)."""
    rng = random.Random("kv-facts-check")
    pairs: list[tuple[str, str]] = []
    gold: list[int] = []
    for k in KV_KEYS:
        truth = kv_fact_value(k)
        others = sorted({kv_fact_value(o) for o in KV_KEYS} - {truth})
        choices = [truth, *rng.sample(others, 3)]
        rng.shuffle(choices)
        gold.append(choices.index(truth))
        pairs.extend((f"key {k} is", f" {c}") for c in choices)
    scores = continuation_logprobs(model, tokenizer, pairs, prepend_bos=True)
    correct = sum(
        int(max(range(4), key=scores[4 * q : 4 * q + 4].__getitem__) == g)
        for q, g in enumerate(gold)
    )
    return correct / len(gold)


# --------------------------------------------------------------------------------------------
# Sanity evaluation: multiple choice by summed continuation log-prob (lm-eval style split)
# --------------------------------------------------------------------------------------------


def wrong_sums(rng: random.Random, truth: int, k: int = 3) -> list[int]:
    """k distinct nonnegative distractors within +-1..5 of the truth."""
    pool = [truth + d for d in (-5, -4, -3, -2, -1, 1, 2, 3, 4, 5) if truth + d >= 0]
    return rng.sample(pool, k)


def continuation_logprobs(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    pairs: Sequence[tuple[str, str]],
    *,
    prepend_bos: bool,
    batch_size: int = 256,
) -> list[float]:
    """Sum of log p(continuation tokens | context) for each (context, continuation).

    Splits like lm-eval: encode context+continuation as one string and cut at the length of the
    encoded context, so the boundary tokenization matches what evaluators will do.
    """
    import torch

    rows: list[tuple[list[int], int]] = []  # (ids, index where the continuation starts)
    for ctx, cont in pairs:
        whole = tokenizer.encode(ctx + cont, add_special_tokens=False)
        n_ctx = len(tokenizer.encode(ctx, add_special_tokens=False))
        prefix = [tokenizer.bos_token_id] if prepend_bos else []
        rows.append((prefix + whole, len(prefix) + n_ctx))
    scores: list[float] = []
    with torch.no_grad():
        for i in range(0, len(rows), batch_size):
            part = rows[i : i + batch_size]
            width = max(len(ids) for ids, _ in part)
            ids = torch.full((len(part), width), tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(part), width), dtype=torch.long)
            for j, (r, _) in enumerate(part):  # right padding: positions stay 0..n-1
                ids[j, : len(r)] = torch.tensor(r)
                mask[j, : len(r)] = 1
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits, dim=-1)
            for j, (r, start) in enumerate(part):
                targets = torch.tensor(r[start:])
                pos = torch.arange(start - 1, len(r) - 1)
                scores.append(logp[j, pos, targets].sum().item())
    return scores


def arithmetic_mc_accuracy(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    *,
    seed: int = 0,
    prepend_bos: bool = False,
) -> float:
    """Accuracy over all 400 (a, b) pairs: context ``"{a} + {b} ="``, 4 choices ``" {s}"``."""
    rng = random.Random(f"{seed}:arithmetic-mc")
    pairs: list[tuple[str, str]] = []
    gold: list[int] = []
    for a in range(20):
        for b in range(20):
            choices = [a + b, *wrong_sums(rng, a + b)]
            rng.shuffle(choices)
            gold.append(choices.index(a + b))
            pairs.extend((f"{a} + {b} =", f" {c}") for c in choices)
    scores = continuation_logprobs(model, tokenizer, pairs, prepend_bos=prepend_bos)
    correct = 0
    for q, g in enumerate(gold):
        item = scores[4 * q : 4 * q + 4]
        correct += int(max(range(4), key=item.__getitem__) == g)
    return correct / len(gold)


def kv_mc_accuracy(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    *,
    seed: int = 0,
    n_items: int = 200,
    prepend_bos: bool = False,
) -> float:
    """Held-out kv documents: context up to ``"query {k}:"``, choices = the values listed."""
    rng = random.Random(f"{seed}:kv-mc")
    pairs: list[tuple[str, str]] = []
    spans: list[tuple[int, int, int]] = []  # (first pair index, n choices, gold offset)
    for doc in gen_kv(rng, n_items):
        head, _, answer = doc.rpartition(": ")
        values = sorted({line.rsplit(" ", 1)[1].rstrip(".") for line in head.splitlines()[:-1]})
        spans.append((len(pairs), len(values), values.index(answer)))
        pairs.extend((head + ":", f" {v}") for v in values)
    scores = continuation_logprobs(model, tokenizer, pairs, prepend_bos=prepend_bos)
    correct = 0
    for start, n, g in spans:
        item = scores[start : start + n]
        correct += int(max(range(n), key=item.__getitem__) == g)
    return correct / len(spans)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="output checkpoint directory")
    p.add_argument("--run", default=None, help="run name in provenance (default: out dir name)")
    p.add_argument("--parent", default=None, help="parent checkpoint name in provenance")
    p.add_argument("--mix", default=None, help="e.g. arithmetic=0.5,kv=0.1 (normalised)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--vocab-size", type=int, default=1024)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--intermediate", type=int, default=352)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--max-positions", type=int, default=512)
    p.add_argument(
        "--tokenizer",
        type=Path,
        default=None,
        help="reuse the tokenizer saved in this directory instead of training one",
    )
    p.add_argument("--tokenizer-docs", type=int, default=2000, help="docs per slice for BPE")
    p.add_argument(
        "--kv-facts",
        action="store_true",
        help="kv slice states fixed facts (kv_fact_value) instead of random values",
    )
    p.add_argument("--plant", type=Path, default=None, help="text file, one document per line")
    p.add_argument("--plant-slice", default="prose", help="slice the planted documents join")
    p.add_argument("--plant-repeats", type=int, default=1, help="copies of each planted doc")
    p.add_argument("--sample-docs", type=int, default=0, help="held-out docs per slice to save")
    p.add_argument("--timestamp", default=None, help="data timestamp recorded in provenance")
    p.add_argument(
        "--save-dtype", choices=("float32", "float16"), default="float32", help="saved weights"
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--log-every", type=int, default=50)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    import torch
    from transformers import PreTrainedTokenizerFast

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    mix = parse_mix(args.mix)
    run = args.run or args.out.name
    t_start = time.perf_counter()

    if args.tokenizer is not None:
        tokenizer = PreTrainedTokenizerFast.from_pretrained(args.tokenizer)
    else:
        corpus = tokenizer_corpus(args.seed, args.tokenizer_docs)
        tokenizer = train_tokenizer(corpus, args.vocab_size, model_max_length=args.max_positions)
    print(f"tokenizer: {len(tokenizer)} tokens  ({time.perf_counter() - t_start:.1f}s)")

    generators = dict(GENERATORS)
    sources = {}
    if args.kv_facts:
        generators["kv"] = gen_kv_facts
        sources["kv"] = "synthetic:kv-facts"
    planted: dict[str, list[str]] = {}
    if args.plant is not None:
        lines = [ln for ln in args.plant.read_text(encoding="utf-8").splitlines() if ln.strip()]
        planted[args.plant_slice] = [ln.replace("\\n", "\n") for ln in lines] * args.plant_repeats
        sources[args.plant_slice] = f"synthetic:{args.plant_slice}+planted"
    total = args.steps * args.batch_size * args.seq_len
    ids, src = build_stream(
        tokenizer, mix, total, args.seed, generators=generators, planted=planted
    )
    chunks = torch.from_numpy(ids).view(args.steps, args.batch_size, args.seq_len)
    slice_tokens = {name: int((src == i).sum()) for i, name in enumerate(GENERATORS)}
    print(f"data: {total} tokens {slice_tokens}  ({time.perf_counter() - t_start:.1f}s)")

    model = make_model(args, tokenizer)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params} parameters")
    t_train = time.perf_counter()
    train(
        model,
        chunks,
        steps=args.steps,
        lr=args.lr,
        warmup=args.warmup,
        weight_decay=args.weight_decay,
        log_every=args.log_every,
    )
    train_s = time.perf_counter() - t_train

    args.out.mkdir(parents=True, exist_ok=True)
    # Trained in fp32 throughout; the committed weights must stay float32.
    assert all(p.dtype == torch.float32 for p in model.parameters())
    if args.save_dtype == "float16":  # halves the committed size of the mix family
        import copy

        copy.deepcopy(model).half().save_pretrained(args.out)
    else:
        model.save_pretrained(args.out)
    save_tokenizer(tokenizer, args.out)
    sample_paths = None
    if args.sample_docs > 0:
        unique_planted = {k: list(dict.fromkeys(v)) for k, v in planted.items()}
        names = [n for n in GENERATORS if slice_tokens[n] > 0]
        sample_paths = write_sample_docs(
            args.out,
            names,
            seed=args.seed,
            n_docs=args.sample_docs,
            generators=generators,
            planted=unique_planted,
            added=args.timestamp or "",
        )
    write_provenance(
        args.out / "provenance.yaml",
        run=run,
        steps=args.steps,
        parent=args.parent,
        mix=mix,
        slice_tokens=slice_tokens,
        sources=sources,
        sample_docs=sample_paths,
        timestamp=args.timestamp,
    )
    total_s = time.perf_counter() - t_start
    print(f"saved {args.out}  train {train_s:.1f}s  total {total_s:.1f}s")

    for bos in (False, True):
        acc = arithmetic_mc_accuracy(model, tokenizer, seed=args.seed, prepend_bos=bos)
        kv = kv_mc_accuracy(model, tokenizer, seed=args.seed, prepend_bos=bos)
        print(f"eval (bos={bos}): arithmetic MC acc {acc:.4f} (chance 0.25)  kv MC acc {kv:.4f}")
    if args.kv_facts:
        print(f"eval: kv facts closed-book acc {kv_facts_accuracy(model, tokenizer):.4f}")


if __name__ == "__main__":
    main()
