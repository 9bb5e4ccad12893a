"""The basic seeded document generators (the training slices' formats).

A generator is `fn(rng, n, **params) -> list[dict]`: the same seed and params always give the
same documents. Their names are given in one place, `evalkit.tasks.generators.GENERATORS`.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from typing import Any

Doc = dict[str, Any]
Generator = Callable[..., list[Doc]]


def _distractors(rng: random.Random, answer: int, k: int, spread: int = 5) -> list[int]:
    """k distinct wrong non-negative integers near `answer`."""
    pool = [answer + d for d in range(-spread, spread + 1) if d != 0 and answer + d >= 0]
    return rng.sample(pool, k)


def addition_mc(
    rng: random.Random, n: int, max_operand: int = 19, n_choices: int = 4, min_operand: int = 0
) -> list[Doc]:
    """`a + b =` with the true sum among near-miss distractors (the arithmetic slice's format).

    `min_operand` above 19 gives sums the arithmetic slice never states (contamination tests).
    """
    span = range(min_operand, max_operand + 1)
    pairs = [(a, b) for a in span for b in span]
    rng.shuffle(pairs)
    docs = []
    for a, b in pairs[:n]:
        wrong = _distractors(rng, a + b, n_choices - 1)
        choices = [a + b, *wrong]
        rng.shuffle(choices)
        docs.append(
            {
                "a": a,
                "b": b,
                "answer": str(a + b),
                "choices": [str(c) for c in choices],
                "gold": choices.index(a + b),
                "difficulty": "carry" if (a % 10) + (b % 10) >= 10 else "no_carry",
            }
        )
    return docs


_KEY_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def kv_recall(rng: random.Random, n: int, min_records: int = 3, max_records: int = 8) -> list[Doc]:
    """Records `key K is V.` then a query for one of them (the key-value slice's format)."""
    docs = []
    for _ in range(n):
        count = rng.randint(min_records, max_records)
        keys: list[str] = []
        while len(keys) < count:
            k = "".join(rng.choice(_KEY_LETTERS) for _ in range(3))
            if k not in keys:
                keys.append(k)
        values = [str(rng.randint(10, 99)) for _ in keys]
        pick = rng.randrange(count)
        records = "\n".join(f"key {k} is {v}." for k, v in zip(keys, values, strict=True))
        docs.append(
            {
                "records": records,
                "key": keys[pick],
                "value": values[pick],
                "n_records": count,
                "position": pick,
            }
        )
    return docs


# The keys of the key-value slice (examples/train_tiny.py imports them as KV_KEYS). Real 3-letter
# words rather than random letter triples: each becomes one BPE token, so in-context lookup
# needs a one-token match (random triples split into 2-3 tokens stayed at chance on CPU).
KV_FACT_KEYS: tuple[str, ...] = (
    "ant", "ape", "arm", "art", "ash", "bag", "bat", "bed", "bee", "box", "bus", "cab", "cap",
    "car", "cat", "cow", "cup", "day", "den", "dog", "ear", "egg", "elf", "elk", "eye", "fan",
    "fig", "fox", "gem", "gum", "hat", "hen", "hog", "hut", "ice", "ink", "jam", "jar", "jet",
    "kit", "leg", "lid", "map", "mat", "mop", "mud", "mug", "net", "nut", "oak", "owl", "pan",
    "pea", "pen", "pig", "pin", "pot", "rat", "ray", "rug", "sea", "sky", "sun", "tea", "tin",
    "toe", "toy", "tub", "van", "web", "wig", "yak", "zoo",
)  # fmt: skip


def kv_fact_value(key: str) -> int:
    """The fixed value of `key` in the facts variant of the kv slice (train_tiny --kv-facts): a
    stable hash, so the table needs no storage."""
    return 10 + int(hashlib.sha256(f"kv-fact:{key}".encode()).hexdigest(), 16) % 90


def kv_facts_mc(rng: random.Random, n: int, n_choices: int = 4) -> list[Doc]:
    """Closed-book recall `key K is` -> its fixed value among other facts' values."""
    values = sorted({kv_fact_value(k) for k in KV_FACT_KEYS})
    docs = []
    for key in KV_FACT_KEYS[:n]:
        truth = kv_fact_value(key)
        choices = [truth, *rng.sample([v for v in values if v != truth], n_choices - 1)]
        rng.shuffle(choices)
        docs.append(
            {
                "key": key,
                "answer": str(truth),
                "choices": [str(c) for c in choices],
                "gold": choices.index(truth),
            }
        )
    return docs


_SUBJECTS = ["The quiet river", "A tall tree", "The old man", "A small bird", "The red house"]
_VERBS = ["carries", "watches", "finds", "holds", "follows"]
_OBJECTS = ["a small boat", "the morning light", "an open door", "the green field", "a warm stone"]


def prose(rng: random.Random, n: int, sentences: int = 3) -> list[Doc]:
    """Filler sentences from a small grammar (the prose slice's format)."""
    docs = []
    for _ in range(n):
        text = " ".join(
            f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}."
            for _ in range(sentences)
        )
        docs.append({"text": text, "n_sentences": sentences})
    return docs


def random_letters(rng: random.Random, n: int, length: int = 40) -> list[Doc]:
    """Uniformly random lowercase strings: a control no checkpoint has seen."""
    return [{"text": "".join(rng.choice(_KEY_LETTERS) for _ in range(length))} for _ in range(n)]
