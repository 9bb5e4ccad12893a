"""Positive control for the long-context family, and the long-context claim measured (issue 16).

`examples/checkpoints/retrieval-control` is a 2-layer tiny Llama trained by
`examples/train_retrieval.py` on documents of the needle family's own shape at lengths up to
L = 256 tokens inside a 1,024-token window. Through the shipped `longctx_niah_single` task evalkit
gives it recall 0.83 at 256 tokens (clearly above the null; short of the 0.85 the issue asked
for, so its effective context length is 0, not 256), recall falling to 0 beyond 256, and
`icl_induction` copy accuracy well above tiny-base's (0.22 vs 0.00; its parent copied 0.98).

`examples/checkpoints/retrieval-long` continues that run at up to 4 L = 1,024 tokens with long
documents upsampled: its recall past L must rise above the control's and its recall at L stay
within the control's interval (its effective length did not pass L: see docs/longctx.md). The RoPE-scaled copies
(no training; made here with `examples/rope_scale.py`) are scored too, and every number the
table in docs/longctx.md gives for them must lie inside the interval measured here."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

import evalkit

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "examples" / "checkpoints"
CONTROL = CHECKPOINTS / "retrieval-control"
LONG = CHECKPOINTS / "retrieval-long"
TINY = CHECKPOINTS / "tiny-base"
DOCS = ROOT / "docs" / "longctx.md"
L = 256
NIAH = "longctx_niah_single"
EFFECTIVE = "effective_length[recall>=0.85]"


def _rope_copy(kind: str, out: Path) -> Path:
    spec = importlib.util.spec_from_file_location("rope_scale", ROOT / "examples" / "rope_scale.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    shutil.copytree(CONTROL, out, ignore=shutil.ignore_patterns("steps", "train_log.json"))
    cfg = json.loads((CONTROL / "config.json").read_text())
    new = mod.scaled_config(cfg, kind, 4.0, L, 4 * L)
    (out / "config.json").write_text(json.dumps(new), encoding="utf-8")
    return out


def _score(
    ckpt: Path, tasks: list[str], out: Path, limit: int | None
) -> dict[tuple[str, str], Any]:
    run = evalkit.score(
        ckpt,
        tasks=tasks,
        backend="hf",
        device="cpu",
        dtype="float32",
        out=out,
        use_cache=False,
        progress=False,
        limit=limit,
    )
    return {(s.display_task, s.label): s for s in run.rows}


@pytest.fixture(scope="module")
def scores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[tuple[str, str], Any]]:
    tmp = tmp_path_factory.mktemp("retrieval")
    ckpts = {
        "retrieval-control": CONTROL,
        "retrieval-long": LONG,
        "rope-linear-x4": _rope_copy("linear", tmp / "ckpt-linear"),
        "rope-yarn-x4": _rope_copy("yarn", tmp / "ckpt-yarn"),
    }
    out = {name: _score(c, [NIAH], tmp / name, None) for name, c in ckpts.items()}
    for name, c in (("retrieval-control", CONTROL), ("tiny-base", TINY)):
        out.setdefault(name, {}).update(_score(c, ["icl_induction"], tmp / f"{name}-ind", 8))
    return out


def test_bundle_has_the_run_and_its_steps() -> None:
    steps = sorted((CONTROL / "steps").glob("step-*"))
    assert len(steps) >= 6
    log = json.loads((CONTROL / "train_log.json").read_text())
    tokens = [row["tokens_seen"] for row in log]
    assert tokens == sorted(tokens)  # one run: tokens only grow (stage 2 resumed stage 1)
    for d in [*steps, CONTROL, LONG]:
        assert (d / "provenance.yaml").is_file() and (d / "model.safetensors").is_file()
    assert json.loads((CONTROL / "config.json").read_text())["max_position_embeddings"] == 4 * L


def test_control_recalls_at_L_and_not_beyond(
    scores: dict[str, dict[tuple[str, str], Any]],
) -> None:
    s = scores["retrieval-control"]
    short = s[(NIAH, f"recall[len={L}]")]
    # Measured 0.83 (5 of 6): clearly above the null of 0, short of evalkit's 0.85 threshold.
    assert short.value >= 0.75 and short.ci_low > 0.3, short
    for n in (2 * L, 4 * L):
        far = s[(NIAH, f"recall[len={n}]")]
        assert far.value <= 0.2, far  # never trained past L: recall falls
        assert far.ci_high < short.value, (far, short)
    eff = s[(NIAH, EFFECTIVE)]
    assert eff.ci_high <= L, eff  # at most one grid step (0 while recall at L is < 0.85)


def test_control_copies_far_above_tiny_base(
    scores: dict[str, dict[tuple[str, str], Any]],
) -> None:
    ctrl = scores["retrieval-control"][("icl_induction", "copy_acc")]
    base = scores["tiny-base"][("icl_induction", "copy_acc")]
    assert base.value <= 0.02, base
    # Measured 0.22 [0.17, 0.31] on 8 items (its parent induction-control: 0.98; training on
    # needles alone wore random-token copying down) vs tiny-base's 0.00, whose all-zero
    # Wilson interval on 8 items reaches 0.40, so the margin is on the point estimate.
    assert ctrl.value >= 0.15 and ctrl.ci_low > base.value + 0.1, (ctrl, base)


def test_continued_pretraining_moves_recall_past_L_and_keeps_short_context(
    scores: dict[str, dict[tuple[str, str], Any]],
) -> None:
    ctrl, long = scores["retrieval-control"], scores["retrieval-long"]

    def beyond(s: dict[tuple[str, str], Any]) -> float:
        return sum(s[(NIAH, f"recall[len={n}]")].value for n in (2 * L, 4 * L)) / 2

    # Measured 0.25 vs 0.00 on 12 items each: a move, not yet the effective length the issue
    # asks for (both are 0 at the 0.85 threshold; docs/longctx.md says so).
    assert beyond(long) >= beyond(ctrl) + 0.15, (beyond(long), beyond(ctrl))
    s1, s2 = ctrl[(NIAH, f"recall[len={L}]")], long[(NIAH, f"recall[len={L}]")]
    assert s2.value >= s1.ci_low, (s1, s2)  # short context kept


_ROW = re.compile(
    r"^\|\s*(?P<ckpt>[\w-]+)\s*\|\s*(?P<n>\d+)\s*\|\s*(?P<v>[\d.]+)\s*\[(?P<lo>[\d.]+),\s*(?P<hi>[\d.]+)\]"
)


def _docs_table() -> dict[tuple[str, int], float]:
    """(checkpoint, length) -> recall, from docs/longctx.md's measured table."""
    out = {}
    for line in DOCS.read_text().splitlines():
        m = _ROW.match(line)
        if m:
            out[(m["ckpt"], int(m["n"]))] = float(m["v"])
    return out


def test_docs_say_what_was_measured(scores: dict[str, dict[tuple[str, str], Any]]) -> None:
    table = _docs_table()
    names = {c for c, _ in table}
    assert {"retrieval-control", "retrieval-long", "rope-linear-x4", "rope-yarn-x4"} <= names
    for (ckpt, n), documented in table.items():
        got = scores[ckpt][(NIAH, f"recall[len={n}]")]
        assert got.ci_low - 1e-9 <= documented <= got.ci_high + 1e-9, (ckpt, n, documented, got)
