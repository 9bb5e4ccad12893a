"""Writes this folder's JSONL docs (deterministic; rerun to regenerate byte-identical files).

    python tests/data/lmeval_tasks/make_data.py

arith.jsonl: 32 sums ``a + b`` with a, b in 0..19 (the tiny checkpoint's training format), each
with 4 distinct numeric choices (the sum and three near misses) and the gold index.
prose.jsonl: 24 short texts in the style of the tiny checkpoint's prose slice; every fourth one
is long (3-4k characters, over 512 tokens) so that it needs more than one rolling window.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent

ADJECTIVES = ("quiet", "old", "small", "bright", "green", "tall", "slow", "happy", "cold", "red")
SUBJECTS = ("river", "farmer", "child", "bird", "teacher", "dog", "wind", "sailor", "cat")
VERBS = ("carries", "finds", "paints", "watches", "builds", "follows", "holds", "moves")
OBJECTS = ("boat", "stone", "house", "letter", "garden", "basket", "lamp", "bridge", "cart")
PLACES = ("near the hill", "in the morning", "by the sea", "after the rain", "at night")


def arith(rng: random.Random, n: int) -> list[dict[str, object]]:
    docs = []
    for _ in range(n):
        a, b = rng.randint(0, 19), rng.randint(0, 19)
        s = a + b
        wrong = rng.sample([s + d for d in (-3, -2, -1, 1, 2, 3) if s + d >= 0], 3)
        choices = [str(c) for c in [s, *wrong]]
        rng.shuffle(choices)
        docs.append({"a": a, "b": b, "sum": s, "choices": choices, "label": choices.index(str(s))})
    return docs


def sentence(rng: random.Random) -> str:
    s = (
        f"The {rng.choice(ADJECTIVES)} {rng.choice(SUBJECTS)} {rng.choice(VERBS)} "
        f"a {rng.choice(ADJECTIVES)} {rng.choice(OBJECTS)}"
    )
    if rng.random() < 0.3:
        s += f" {rng.choice(PLACES)}"
    return s + "."


def prose(rng: random.Random, n: int) -> list[dict[str, object]]:
    docs = []
    for i in range(n):
        k = rng.randint(60, 90) if i % 4 == 3 else rng.randint(1, 4)
        docs.append({"text": " ".join(sentence(rng) for _ in range(k))})
    return docs


def write(name: str, docs: list[dict[str, object]]) -> None:
    lines = [json.dumps(d, sort_keys=True) for d in docs]
    (HERE / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write("arith.jsonl", arith(random.Random(20240601), 32))
    write("prose.jsonl", prose(random.Random(20240602), 24))
