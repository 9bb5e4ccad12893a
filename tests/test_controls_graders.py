"""Every grader of the long-context and in-context-learning families, calibrated on scripted
models through the shipped task files (issue 16): each reaches its maximum on a model that does
the task perfectly (an oracle) and its null on one that never does, so a grader that can only
return 0 (or only 1) fails here."""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from pathlib import Path

import pytest

import evalkit
from evalkit.backends.fake import ByteTokenizer, FakeBackend, NeedleReader
from evalkit.tasks.probes.docgen import CATEGORIES
from evalkit.tasks.probes.niah import recall
from evalkit.tasks.probes.token_level import induction_metrics

NIAH = ("longctx_niah_single", "longctx_niah_multikey", "longctx_niah_multivalue",
        "longctx_niah_multiquery")  # fmt: skip
WINDOW = 1024  # the scripted models' window (byte tokens): lengths 128..1024 of the task files
V = ByteTokenizer.vocab_size


def _scores(run: evalkit.ScoreRun) -> dict[tuple[str, str], float]:
    return {(s.display_task, s.label): s.value for s in run.rows}


def _score(tmp_path: Path, name: str, tasks: list[str], backend: FakeBackend, limit: int | None):
    return evalkit.score(
        name,
        tasks=tasks,
        backend=backend,
        out=tmp_path / name,
        use_cache=False,
        progress=False,
        limit=limit,
    )


# -- needle in a haystack -----------------------------------------------------------------------


def test_the_answer_parser_counts_exactly_the_expected_values_found() -> None:
    assert recall(["1234567"], " 1234567.") == 1.0
    assert recall(["1234567"], "The special magic number is 1234567") == 1.0
    assert recall(["1234567", "7654321"], " 7654321, 1234567.") == 1.0  # order is free
    assert recall(["1234567", "7654321", "1112223", "9998887"], " 1234567, 7654321.") == 0.5
    # Near misses are misses: a digit short, split, or another needle's value.
    assert recall(["1234567"], " 123456.") == 0.0
    assert recall(["1234567"], " 123 4567") == 0.0
    assert recall(["1234567"], " 7654321.") == 0.0
    assert recall(["1234567"], "") == 0.0


def _null_niah() -> FakeBackend:
    # Says a number that is in no prompt and gives every value the same probability.
    return FakeBackend(lambda ctx, cont: -12.0, lambda prompt, i: " 0000000.", max_length=WINDOW)


def test_needle_graders_reach_their_maximum_on_a_perfect_reader_and_null_on_a_blind_one(
    tmp_path: Path,
) -> None:
    good = _scores(
        _score(tmp_path, "oracle", list(NIAH), NeedleReader().backend(max_length=WINDOW), 1)
    )
    null = _scores(_score(tmp_path, "null", list(NIAH), _null_niah(), 1))
    for t in NIAH:
        assert good[(t, "recall")] == 1.0 and null[(t, "recall")] == 0.0
        assert good[(t, "effective_length[recall>=0.85]")] == WINDOW
        assert null[(t, "effective_length[recall>=0.85]")] == 0
        # The reader gives the right values -0.5 nats and unseen controls -20: gain 19.5.
        assert good[(t, "value_ll_gain")] == pytest.approx(19.5)
        assert null[(t, "value_ll_gain")] == 0.0
        cells = [m for (task, m) in good if task == t and m.startswith("recall[len=")]
        assert len(cells) >= 4  # a length and its three depths ran (bytes: 512+ tokens)
        for m in cells:
            assert good[(t, m)] == 1.0 and null[(t, m)] == 0.0
    assert good[("longctx_niah_multikey", "distractor_ll_gain")] == pytest.approx(19.5)
    assert null[("longctx_niah_multikey", "distractor_ll_gain")] == 0.0


def test_a_reader_that_copies_the_wrong_needle_fails_multikey_and_gains_nothing_on_distractors(
    tmp_path: Path,
) -> None:
    """A model that finds a needle but not the asked one: it answers the last needle's value
    and scores every value in the prompt alike. Recall must fall and distractor gain be 0."""
    needle = re.compile(r"The special magic number for [\w-]+ is (\d+)\.")

    def gen(prompt: str, i: int) -> str:
        return " " + needle.findall(prompt)[-1] + "."

    def score(ctx: str, cont: str) -> float:
        return -0.5 if cont.strip() in needle.findall(ctx) else -20.0

    run = _score(
        tmp_path, "wrong", ["longctx_niah_multikey"], FakeBackend(score, gen, max_length=WINDOW), 2
    )
    s = _scores(run)
    assert s[("longctx_niah_multikey", "distractor_ll_gain")] == 0.0
    assert s[("longctx_niah_multikey", "value_ll_gain")] > 0  # it does read the context
    assert s[("longctx_niah_multikey", "recall")] < 0.6


# -- induction ----------------------------------------------------------------------------------


def _copier(ctx: tuple[int, ...], tok: int) -> tuple[float, bool]:
    """Predicts the token after the earlier position whose preceding tokens match the end of
    the context longest (ties: earliest), the rule an ideal induction head follows."""
    body = ctx[1:]
    best, best_len = None, 0
    for p in range(len(body) - 1):
        m = 0
        while m <= p and body[p - m] == body[len(body) - 1 - m]:
            m += 1
        if m > best_len:
            best, best_len = body[p + 1], m
    if best is None:
        return -math.log(V), False
    return (-0.01, True) if tok == best else (-8.0, False)


def _uniform(ctx: tuple[int, ...], tok: int) -> tuple[float, bool]:
    return -math.log(V), False


def test_induction_metric_is_maximal_on_an_ideal_copier_and_null_on_a_uniform_model(
    tmp_path: Path,
) -> None:
    good = _scores(_score(tmp_path, "copier", ["icl_induction"], FakeBackend(token_fn=_copier), 6))
    null = _scores(
        _score(tmp_path, "uniform", ["icl_induction"], FakeBackend(token_fn=_uniform), 6)
    )
    t = "icl_induction"
    assert good[(t, "copy_acc")] == 1.0 and good[(t, "copy_loss")] == pytest.approx(0.01)
    assert good[(t, "induction_gain")] > 5.0
    assert null[(t, "copy_acc")] == 0.0 and null[(t, "induction_gain")] == pytest.approx(0.0)
    # By hand, the metric's own extremes.
    perfect = induction_metrics([-5.0] * 4 + [0.0] * 4, [False] * 4 + [True] * 4, 4)
    assert perfect["copy_acc"] == 1.0 and perfect["copy_loss"] == 0.0


# -- label probes -------------------------------------------------------------------------------

CATEGORY_OF = {w: c for c, words in CATEGORIES.items() for w in words}


def _demos(ctx: str) -> tuple[list[tuple[str, str]], str]:
    words = re.findall(r"Word: (\w+)\n", ctx)
    labels = re.findall(r"Category: (\w+)", ctx)
    return list(zip(words[:-1], labels, strict=True)), words[-1]


def _follower(ctx: str, cont: str) -> float:
    """Answers with the label the demonstrations give the test word's category (majority);
    with no such demonstration it has no preference."""
    demos, word = _demos(ctx)
    votes = Counter(lab for w, lab in demos if CATEGORY_OF[w] == CATEGORY_OF[word])
    if not votes:
        return -2.0
    return -1.0 if cont.strip() == votes.most_common(1)[0][0] else -3.0


def _knower(ctx: str, cont: str) -> float:
    """Knows every word's category and ignores the demonstrations' labels."""
    _, word = _demos(ctx)
    return -1.0 if cont.strip() == CATEGORY_OF[word] else -3.0


def _null_mc(ctx: str, cont: str) -> float:
    return -2.0


def test_flip_delta_is_maximal_for_a_label_follower_and_zero_for_a_knower_or_a_null_model(
    tmp_path: Path,
) -> None:
    t = "icl_flipped_labels"
    runs = {
        name: _scores(_score(tmp_path, name, [t], FakeBackend(fn), 8))
        for name, fn in (("follower", _follower), ("knower", _knower), ("null", _null_mc))
    }
    f = runs["follower"]
    accs = [f[(t, f"acc[flip_{p}]")] for p in (0, 25, 50, 75, 100)]
    assert accs[0] >= 0.95 and accs[-1] <= 0.05  # below chance (0.5) at 100% flips
    assert all(a >= b for a, b in itertools.pairwise(accs))
    assert f[(t, "flip_delta")] >= 0.9
    for name in ("knower", "null"):
        assert runs[name][(t, "flip_delta")] == 0.0
    assert runs["knower"][(t, "acc[flip_100]")] == 1.0


def test_label_probe_separates_a_follower_from_a_knower(tmp_path: Path) -> None:
    t = "icl_label_probe"
    f = _scores(_score(tmp_path, "follower", [t], FakeBackend(_follower), 8))
    k = _scores(_score(tmp_path, "knower", [t], FakeBackend(_knower), 8))
    # 4 labels, 8 demonstrations: about (3/4)^8 = 10% of test words have no demonstration of
    # their category, and there the follower has no preference.
    assert f[(t, "acc[gold]")] >= 0.8 and f[(t, "acc[random]")] <= 0.6
    assert f[(t, "label_sensitivity")] > 0.4
    assert k[(t, "acc[gold]")] == k[(t, "acc[random]")] == k[(t, "acc[pct_0]")] == 1.0


# -- few-shot curve -----------------------------------------------------------------------------


def _adder(ctx: str, cont: str) -> float:
    a, b = ctx.split("\n")[-1].rstrip(" =").split(" + ")
    return -1.0 if cont.strip() == str(int(a) + int(b)) else -3.0


def _in_context_adder(ctx: str, cont: str) -> float:
    """Adds only after seeing at least one demonstration; before that, no preference."""
    return _adder(ctx, cont) if "\n" in ctx else -2.0


def test_fewshot_slope_is_positive_only_for_a_model_that_learns_from_demonstrations(
    tmp_path: Path,
) -> None:
    t = "icl_fewshot_curve"
    icl = _scores(_score(tmp_path, "icl", [t], FakeBackend(_in_context_adder), 6))
    flat = _scores(_score(tmp_path, "flat", [t], FakeBackend(_adder), 6))
    null = _scores(_score(tmp_path, "null", [t], FakeBackend(_null_mc), 6))
    assert icl[(t, "acc[k=0]")] <= 0.5 and icl[(t, "acc[k=1]")] == icl[(t, "acc[k=32]")] == 1.0
    assert icl[(t, "slope_log2k")] > 0.05
    assert flat[(t, "acc[k=0]")] == 1.0 and flat[(t, "slope_log2k")] == pytest.approx(0.0)
    assert null[(t, "slope_log2k")] == pytest.approx(0.0)
