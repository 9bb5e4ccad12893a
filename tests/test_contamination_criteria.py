"""Contamination criteria: per-benchmark n (GPT-3), token coverage (Llama 2), and the paired
gain of the same items between a contaminated and a clean checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evalkit.analysis.contamination import (
    EvalText,
    GramIndex,
    auto_n,
    contamination_report,
    paired_gain,
    scan_slices,
)


def test_auto_n_follows_gpt3() -> None:
    assert auto_n(["a b c d"] * 50) == 8  # short items: clamped at 8
    assert auto_n([" ".join(["w"] * 40)] * 50) == 13  # long items: clamped at 13
    assert auto_n([" ".join(["w"] * 10)] * 50) == 10


def test_one_shared_gram_in_a_long_item_is_not_contamination(tmp_path: Path) -> None:
    item = " ".join(f"w{i}" for i in range(100))
    docs = tmp_path / "docs.txt"
    # One document shares 13 words of the 100 (one gram); another holds the whole item.
    docs.write_text(" ".join(f"w{i}" for i in range(13)) + "\n\nunrelated text\n")
    index = GramIndex([EvalText("t", 0, item)], n=13)
    flags, _ = scan_slices(index, [("s", docs)], min_coverage=0.0)
    assert flags == [{"s"}]  # the old criterion: any shared gram
    flags, _ = scan_slices(index, [("s", docs)], min_coverage=0.5)
    assert flags == [set()]
    docs.write_text(item + "\n")
    flags, _ = scan_slices(index, [("s", docs)], min_coverage=0.5)
    assert flags == [{"s"}]


def test_report_records_per_task_n(tmp_path: Path) -> None:
    docs = tmp_path / "d.txt"
    docs.write_text("1 + 1 = 2\n")
    texts = [EvalText("short", i, f"{i} + {i} = {2 * i}") for i in range(20)]
    texts += [EvalText("long", i, " ".join(f"x{i}w{j}" for j in range(30))) for i in range(20)]
    report = contamination_report("t", texts, [("s", docs)])
    assert report.ns == {"short": 8, "long": 13}
    assert report.flagged("short") == {1: ("s",)}


def test_paired_gain_removes_item_difficulty() -> None:
    rng = np.random.default_rng(0)
    n = 200
    texts = [EvalText("t", i, f"item {i}") for i in range(n)]
    dirty = np.arange(n) < 50
    flags = [{"s"} if d else set() for d in dirty]
    # Dirty items are easier anyway (+0.3 on both checkpoints): dirty - clean is confounded.
    difficulty = np.where(dirty, 0.8, 0.5) + rng.normal(0, 0.05, n)
    clean_ckpt = difficulty + rng.normal(0, 0.05, n)
    memorized = difficulty + rng.normal(0, 0.05, n) + np.where(dirty, 0.1, 0.0)
    contaminated = {"t": ("p_correct", dict(enumerate(memorized)))}
    clean = {"t": ("p_correct", dict(enumerate(clean_ckpt)))}
    (row,) = paired_gain(texts, flags, contaminated, clean)
    assert row.n_dirty == 50 and row.n_clean == 150
    assert row.ci_low <= 0.1 <= row.ci_high and row.ci_low > 0.05
    # No memorization: the excess gain is about 0 though dirty items score 0.3 higher.
    same = {"t": ("p_correct", dict(enumerate(difficulty + rng.normal(0, 0.05, n))))}
    (null,) = paired_gain(texts, flags, same, clean)
    assert null.ci_low <= 0 <= null.ci_high
    assert float(np.mean(memorized[dirty]) - np.mean(memorized[~dirty])) > 0.3
