"""In-context lookup: a random key -> value mapping that only the demonstrations reveal.

The few-shot curve's base task for a model that learns in context by copying (an induction
head) rather than by knowing the answer: the mapping is drawn from the task's seed, so no text
a model was trained on holds it, and a test document's answer is recoverable only when one of
its demonstrations shows the same key. The more demonstrations, the more likely that is, so
accuracy rises with k for a model that looks the key up and stays at chance for one that
cannot. See docs/controls.md for the exact expected curve.
"""

from __future__ import annotations

import random
from typing import Any

# Short common English words, disjoint between keys and values: most byte-level BPE
# vocabularies (tiny-base's 1,024 tokens included) hold each, with its leading space, as a
# single token, so a key's last token names the key and copying the token after it answers.
LOOKUP_KEYS: tuple[str, ...] = (
    "ant", "ape", "bat", "bee", "cat", "cow", "dog", "elk", "fox", "hen", "hog", "owl",
    "pig", "rat", "yak", "bird", "girl", "boy", "child", "farmer", "baker", "sailor",
    "painter", "teacher",
)  # fmt: skip
LOOKUP_VALUES: tuple[str, ...] = (
    "bag", "bed", "book", "box", "bus", "cap", "car", "cup", "door", "fan", "gem", "hat",
    "hut", "jar", "kit", "lamp", "lid", "map", "mat", "mop", "mug", "net", "pan", "pen",
    "pin", "pot", "rug", "tub", "van", "wig", "toy", "ink",
)  # fmt: skip


def incontext_lookup_mc(
    rng: random.Random, n: int, n_keys: int = 16, n_choices: int = 4
) -> list[dict[str, Any]]:
    """`n_keys` keys mapped one-to-one onto `n_keys` values, both drawn with `rng`. The docs
    come in rounds of `n_keys`, each round every key once in a fresh order, so the first round
    (a probe's test documents when n_test = n_keys) asks every key once and each later round
    shows every key once more (the demonstration pool). Choices: the key's value and
    `n_choices - 1` other keys' values, in a random order; a value appears as a demonstration
    exactly as often as its key, so preferring values that occur in the context gains nothing.
    `n` must be a whole number of rounds."""
    if not 2 <= n_choices <= n_keys:
        raise TypeError(f"need 2 <= n_choices <= n_keys, got {n_choices} and {n_keys}")
    if n_keys > min(len(LOOKUP_KEYS), len(LOOKUP_VALUES)):
        raise TypeError(f"n_keys must be <= {min(len(LOOKUP_KEYS), len(LOOKUP_VALUES))}")
    if n % n_keys:
        raise TypeError(f"n ({n}) must be a multiple of n_keys ({n_keys})")
    keys = rng.sample(LOOKUP_KEYS, n_keys)
    values = rng.sample(LOOKUP_VALUES, n_keys)
    docs: list[dict[str, Any]] = []
    for round_ in range(n // n_keys):
        for i in rng.sample(range(n_keys), n_keys):
            others = rng.sample([v for j, v in enumerate(values) if j != i], n_choices - 1)
            gold = rng.randrange(n_choices)
            choices = [*others[:gold], values[i], *others[gold:]]
            docs.append(
                {
                    "key": keys[i],
                    "value": values[i],
                    "choices": choices,
                    "gold": gold,
                    "round": round_,
                }
            )
    return docs
