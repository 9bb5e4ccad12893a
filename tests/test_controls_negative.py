"""Negative controls (issue 16): a random-init checkpoint of the same shape as a bundled one,
made in the test, shows no effect on any long-context or in-context-learning probe. Every
assertion is a margin on the point estimate (and, where there is an interval, that it reaches
the null), so it holds whatever interval method evalkit.stats uses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import evalkit

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "examples" / "checkpoints"
# The bundled positive control when it is there, else tiny-base: the shape is what matters.
SHAPE = next(CHECKPOINTS / n for n in ("ctrl-retrieval", "tiny-base") if (CHECKPOINTS / n).is_dir())
TASKS = ["icl_induction", "icl_flipped_labels", "icl_label_probe", "longctx_niah_single"]


def random_like(src: Path, out: Path, seed: int = 0) -> Path:
    """`src`'s tokenizer and config (window, rope, sizes) with freshly initialised weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    out.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file() and not f.name.endswith(".safetensors") and f.name != "provenance.yaml":
            shutil.copy(f, out / f.name)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(src))
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def random_run(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], object]:
    tmp = tmp_path_factory.mktemp("negative")
    ckpt = random_like(SHAPE, tmp / "random-init")
    assert (
        json.loads((ckpt / "config.json").read_text())["hidden_size"]
        == json.loads((SHAPE / "config.json").read_text())["hidden_size"]
    )
    run = evalkit.score(
        ckpt,
        tasks=TASKS,
        backend="hf",
        device="cpu",
        dtype="float32",
        out=tmp / "run",
        use_cache=False,
        progress=False,
        limit=4,
    )
    return {(s.display_task, s.label): s for s in run.rows}


def _covers(score: object, null: float, margin: float) -> None:
    value = score.value  # type: ignore[attr-defined]
    lo, hi = score.ci_low, score.ci_high  # type: ignore[attr-defined]
    assert abs(value - null) <= margin, (value, null)
    if lo is not None and hi is not None and lo == lo and hi == hi:  # NaN-safe
        assert lo - 1e-9 <= null + margin and hi + 1e-9 >= null - margin


def test_random_init_copies_nothing(random_run: dict) -> None:
    # Chance for a top-1 hit over ~1,000 tokens is ~0.001; a copier scores near 1.
    assert random_run[("icl_induction", "copy_acc")].value <= 0.02
    _covers(random_run[("icl_induction", "induction_gain")], 0.0, 0.05)


def test_random_init_does_not_follow_or_use_labels(random_run: dict) -> None:
    _covers(random_run[("icl_flipped_labels", "flip_delta")], 0.0, 0.3)
    for p in (0, 100):
        _covers(random_run[("icl_flipped_labels", f"acc[flip_{p}]")], 0.5, 0.3)
    gold = random_run[("icl_label_probe", "acc[gold]")].value
    rand = random_run[("icl_label_probe", "acc[random]")].value
    assert abs(gold - rand) <= 0.3


def test_random_init_finds_no_needle(random_run: dict) -> None:
    s = random_run
    assert s[("longctx_niah_single", "recall")].value == 0.0
    assert s[("longctx_niah_single", "effective_length[recall>=0.85]")].value == 0.0
    # Near-uniform predictions: the needle's value is no likelier than an unseen control.
    _covers(s[("longctx_niah_single", "value_ll_gain")], 0.0, 0.5)
