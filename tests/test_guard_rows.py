"""The guard's reference reads a continuation off a longer row only where that is the same
computation: the row-sharing rule by itself, and the backend's reference against the obvious
one-sequence-per-continuation forward on tiny models (native and transformers paths)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import torch
from arch_models import build

from evalkit.backends.base import ScoringGroup
from evalkit.backends.guard import plain_rows
from evalkit.backends.hf import HFBackend


def test_one_token_choices_share_the_context_row() -> None:
    ctx = (5, 6, 7)
    rows, host = plain_rows([ctx, ctx, ctx, ctx])  # four one-token choices: rows == context
    assert rows == [ctx] and host == [0, 0, 0, 0]


def test_a_prefix_rides_on_the_longer_row_and_the_rest_keep_their_own() -> None:
    seqs = [(1, 2), (1, 2, 3, 4), (1, 9), (1, 2, 3)]
    rows, host = plain_rows(seqs)
    assert sorted(rows) == [(1, 2, 3, 4), (1, 9)]
    for seq, r in zip(seqs, host, strict=True):
        assert rows[r][: len(seq)] == seq


def test_sequences_that_only_share_tokens_are_not_merged() -> None:
    """Negative control: same tokens, not a prefix; a common start is not enough either."""
    seqs = [(2, 1), (1, 2), (1, 2, 5), (1, 3, 5)]
    rows, host = plain_rows(seqs)
    assert len(rows) == 3 and len(set(host)) == 3
    assert rows[host[0]] == (2, 1) and rows[host[3]] == (1, 3, 5)
    assert plain_rows([]) == ([], [])


def _one_by_one(model: Any, group: ScoringGroup) -> list[list[float]]:
    """The obvious reference: each (context, continuation) as its own unpadded sequence."""
    out = []
    for cont in group.continuations:
        ids = torch.tensor([(list(group.context) + list(cont))[:-1]])
        with torch.no_grad():
            lp = torch.log_softmax(model(ids).logits[0].float(), dim=-1)
        n = len(group.context) - 1
        out.append([lp[n + i, t].item() for i, t in enumerate(cont)])
    return out


@pytest.mark.parametrize("name", ["llama-native", "mistral-sliding"])
def test_the_reference_equals_one_forward_per_continuation(
    name: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path, model = build(name, Path(tmp_path_factory.mktemp(name)))
    backend = HFBackend(path, device="cpu", dtype="float32", max_length=256)
    assert backend.plan.path == ("native" if name == "llama-native" else "packed")
    rng = random.Random(0)
    ctx = tuple(rng.randrange(3, 1000) for _ in range(60))  # past mistral's 24-token window
    groups = [
        ScoringGroup(ctx, ((11,), (12,), (13,), (14,))),  # MMLU-like: one row
        ScoringGroup(ctx, ((11,), (11, 12), (11, 12, 13), (40, 41))),  # nested: two rows
        ScoringGroup(ctx, ((7, 8, 9), (8, 7), (9,))),  # nothing shared
    ]
    with torch.inference_mode():
        for g in groups:
            got = backend.forward.plain_logprobs(g)
            want = _one_by_one(model, g)
            assert [len(x) for x in got] == [len(c) for c in g.continuations]
            for a, b in zip(got, want, strict=True):
                assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-5, name
