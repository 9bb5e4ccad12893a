"""The bundled checkpoint is a real HF checkpoint that learned its own slices."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import evalkit


@pytest.fixture(scope="module")
def smoke_run(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> evalkit.api.ScoreRun:
    out = tmp_path_factory.mktemp("tiny") / "run"
    return evalkit.score(tiny_base, suite="smoke", out=out, use_cache=False, progress=False)


def _score(run: evalkit.api.ScoreRun, task: str, metric: str) -> tuple[float, float, float]:
    (s,) = [s for s in run.rows if s.display_task == task and s.label == metric]
    return s.value, s.ci_low, s.ci_high


def test_arithmetic_multiple_choice_is_clearly_above_chance(
    smoke_run: evalkit.api.ScoreRun,
) -> None:
    value, low, _ = _score(smoke_run, "smoke_arith_mc", "acc")
    assert low > 0.25, f"acc {value:.3f}, CI low {low:.3f} does not exclude chance (0.25)"


def test_key_value_lookup_beats_guessing(smoke_run: evalkit.api.ScoreRun) -> None:
    # 90 two-digit values: a uniform guess puts log(1/90) = -4.50 nats on the right one.
    value, _, high = _score(smoke_run, "smoke_kv_recall", "logprob")
    assert high < 0 and value > -4.5


def test_provenance_lists_slices_with_token_counts(tiny_base: Path) -> None:
    prov = yaml.safe_load((tiny_base / "provenance.yaml").read_text())
    names = {s["name"] for s in prov["slices"]}
    assert names == {"arithmetic", "kv", "multilingual", "code", "prose"}
    assert all(s["tokens"] > 0 for s in prov["slices"])


def test_manifest_keeps_the_provenance(smoke_run: evalkit.api.ScoreRun) -> None:
    assert smoke_run.manifest["provenance"]["checkpoint"]["run"] == "tiny-base"
