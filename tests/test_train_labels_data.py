"""The training data of `examples/train_labels.py` (issue 16, item 4) has the property the label
control relies on: a block's label is predictable only from an earlier block of the same
category in the same document, and the loss is on exactly those labels.

Checked on the generator itself (no training): label words vary per document for every category
(including the probes' own names swapped), the documents are in the probes' format, the loss
mask covers only repeated categories' labels, and the fast loss (vocabulary projection only at
labelled positions) equals the model's own loss."""

from __future__ import annotations

import argparse
import importlib.util
import random
import re
from collections import Counter, defaultdict
from pathlib import Path
from types import ModuleType

import pytest

from evalkit.tasks.probes.docgen import CATEGORIES

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"Word: (\w+)\nCategory: (\w+)")


@pytest.fixture(scope="module")
def tl() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "train_labels", ROOT / "examples" / "train_labels.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tok() -> object:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(
        str(ROOT / "examples" / "checkpoints" / "tiny-base" / "tokenizer.json")
    )


def _category(word: str) -> str:
    return next(c for c, ws in CATEGORIES.items() if word in ws)


def test_documents_are_in_the_probe_format_with_permuted_labels(
    tl: ModuleType, tok: object
) -> None:
    pool = tl.label_pool(tok)
    rng = random.Random(0)
    labels_of: dict[str, Counter[str]] = defaultdict(Counter)
    swapped = 0
    for _ in range(400):
        text, spans = tl.document(rng, pool, 8, 0.5)
        blocks = text.split("\n\n")
        assert len(blocks) == 8 and all(BLOCK.fullmatch(b) for b in blocks)
        mapping: dict[str, str] = {}
        predictable: list[tuple[str, tuple[int, int]]] = []
        pos = 0
        for b in blocks:
            word, label = BLOCK.fullmatch(b).groups()  # type: ignore[union-attr]
            cat = _category(word)
            assert mapping.setdefault(cat, label) == label  # one label per category per document
            start = pos + b.index("Category:") + len("Category:")
            predictable.append((cat, (start, start + len(label) + 1)))
            pos += len(b) + 2
        # loss spans: exactly the labels of blocks whose category appeared before
        seen: set[str] = set()
        expected = []
        for cat, span in predictable:
            if cat in seen:
                expected.append(span)
            seen.add(cat)
        assert spans == expected
        assert len(set(mapping.values())) == len(mapping)  # distinct labels in a document
        for cat, label in mapping.items():
            labels_of[cat][label] += 1
        if set(mapping) == {"animal", "food"} and mapping == {"animal": "food", "food": "animal"}:
            swapped += 1
    for cat in CATEGORIES:
        # no label word is the category's most of the time: only the demonstrations tell
        counts = labels_of[cat]
        assert len(counts) >= 10 and max(counts.values()) / sum(counts.values()) < 0.5, counts
    assert swapped > 0  # the flipped demonstrations' mapping is in the training data


def test_prior_adds_only_true_name_first_labels(tl: ModuleType, tok: object) -> None:
    pool = tl.label_pool(tok)
    for seed in range(50):
        text, plain = tl.document(random.Random(seed), pool, 8, 0.5, False)
        text2, prior = tl.document(random.Random(seed), pool, 8, 0.5, True)
        assert text == text2 and set(plain) <= set(prior)
        pairs = [BLOCK.fullmatch(b).groups() for b in text.split("\n\n")]  # type: ignore[union-attr]
        true_names = all(lab == _category(w) for w, lab in pairs)
        assert (len(prior) == len(pairs)) if true_names else (prior == plain)


def test_fast_label_loss_equals_the_models_loss(tl: ModuleType, tok: object) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    a = argparse.Namespace(
        min_blocks=4, max_blocks=8, batch=4, binary=0.5, prior=False, bos=0, pad=2
    )
    x, att, labels = tl.make_batch(random.Random(1), tok, tl.label_pool(tok), a)
    assert (labels != -100).any()
    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=1024,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            tie_word_embeddings=True,
        )
    )
    with torch.no_grad():
        fast = tl.label_loss(model, x, att, labels)
        slow = model(input_ids=x, attention_mask=att, labels=labels).loss
    assert abs(float(fast) - float(slow)) < 1e-5
    # and it is the loss of the labelled tokens only: change an unlabelled token's target
    # position's label and the loss moves
    labels2 = labels.clone()
    idx = (labels2 != -100).nonzero()[0]
    labels2[idx[0], idx[1]] = (labels2[idx[0], idx[1]] + 1) % 1024
    with torch.no_grad():
        assert abs(float(tl.label_loss(model, x, att, labels2)) - float(fast)) > 1e-4
