"""label_sensitivity = (acc[gold] - acc[random]) / (acc[gold] - acc[zero_shot]) over a
near-zero denominator (issue 16: it read -20 [-98, -11] on the label control, whose zero-shot
accuracy 1.00 is above its gold 0.958). Below `min_gain` of gold over zero-shot it has no value
(no score row), and the run says why in the manifest and on the console."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console
from test_transfer_probes import LABELS, spec

import evalkit
from evalkit.aggregate import summary_scores
from evalkit.backends.fake import FakeBackend
from evalkit.errors import EvalkitError
from evalkit.report.console import print_run_facts
from evalkit.tasks.base import ItemResult
from evalkit.tasks.probes.docgen import CATEGORIES
from evalkit.tasks.probes.labels import LabelProbeTask, label_sensitivity, sensitivity_undefined


def _results(gold: int, rand: int, zero: int, n: int = 24) -> list[ItemResult]:
    """n test docs; the first `gold`/`rand`/`zero` of them right in each condition."""
    out = []
    for i in range(n):
        for j, (cond, right) in enumerate((("gold", gold), ("random", rand), ("zero_shot", zero))):
            tags = {"condition": cond, "test_doc": i}
            out.append(ItemResult(3 * i + j, "h", (), None, "t", {"acc": float(i < right)}, tags))  # type: ignore[arg-type]
    return out


def _rows(task: LabelProbeTask, results: list[ItemResult]) -> dict[str, float]:
    return {r.label: r.value for r in summary_scores(task, results)}


def test_a_real_gain_keeps_the_ratio() -> None:
    task = LabelProbeTask(spec("label_probe", mode="labels", **LABELS))
    res = _results(gold=20, rand=8, zero=6)  # (20-8)/(20-6) = 12/14
    assert _rows(task, res)["label_sensitivity"] == pytest.approx(12 / 14)
    assert sensitivity_undefined(res) is None


@pytest.mark.parametrize(("gold", "zero"), [(23, 24), (12, 12), (14, 12), (2, 20)])
def test_no_gain_over_zero_shot_means_no_value_and_a_reason(gold: int, zero: int) -> None:
    """The label control's shape (gold 0.958 < zero-shot 1.0, where the old code gave -20),
    equal accuracies, a gain of 2/24 < 0.1, and a large loss: no row, a reason instead."""
    task = LabelProbeTask(spec("label_probe", mode="labels", **LABELS))
    res = _results(gold=gold, rand=3, zero=zero)
    old = (gold - 3) / (gold - zero) if gold != zero else float("nan")
    assert "label_sensitivity" not in _rows(task, res), old
    why = sensitivity_undefined(res)
    assert why is not None and "below min_gain 0.1" in why
    assert "acc[gold]" in _rows(task, res)  # the conditions themselves are still scored


def test_the_threshold_is_a_task_setting_and_exact_at_its_edge() -> None:
    res = _results(gold=12, rand=6, zero=6)  # gain exactly 0.25
    assert label_sensitivity(res, 0.25) == pytest.approx(1.0)
    assert label_sensitivity(res, 0.26) != label_sensitivity(res, 0.26)  # NaN
    task = LabelProbeTask(spec("label_probe", mode="labels", min_gain=0.3, **LABELS))
    assert "label_sensitivity" not in _rows(task, res)
    for bad in (0, -0.1, 2):
        with pytest.raises(EvalkitError, match="min_gain"):
            LabelProbeTask(spec("label_probe", mode="labels", min_gain=bad, **LABELS))


CATEGORY_OF = {w: c for c, words in CATEGORIES.items() for w in words}


def _knower(ctx: str, cont: str) -> float:
    """Knows every word's category and ignores the demonstrations (zero-shot = gold = 1)."""
    word = ctx.rsplit("Word: ", 1)[1].split("\n")[0]
    return -1.0 if cont.strip() == CATEGORY_OF[word] else -3.0


def test_a_run_says_why_it_has_no_label_sensitivity(tmp_path: Path) -> None:
    run = evalkit.score("knower", tasks=["icl_label_probe"], backend=FakeBackend(_knower),
                        out=tmp_path / "run", use_cache=False, progress=False, limit=4)  # fmt: skip
    metrics = {s.label for s in run.rows}
    assert "acc" in metrics and "label_sensitivity" not in metrics
    manifest = json.loads((Path(run.path) / "manifest.json").read_text())
    (entry,) = [t for t in manifest["tasks"] if t["name"] == "icl_label_probe"]
    why = entry["notes"]["undefined_summaries"]["label_sensitivity"]
    assert "= 1.000 - 1.000 = +0.000 is below min_gain 0.1" in why
    console = Console(record=True, width=300)
    print_run_facts(manifest, console)
    assert "icl_label_probe: label_sensitivity undefined: acc[gold]" in console.export_text()
