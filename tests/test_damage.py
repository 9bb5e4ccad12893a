"""Damaged inputs end in one line and exit 2 (evalkit.backends.damage): non-finite weights at
load, non-finite logits while generating, an unusable cache folder before the model loads; a
vocabulary padded beyond the tokenizer is scored as lm-eval scores it, but recorded and said.

One case runs `python -m evalkit.cli` for real (damage found while loading, across the process
boundary); the others run the same typer app in this process (tests/clirun.py)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from clirun import run_cli

import evalkit
from evalkit.backends import damage
from evalkit.backends.base import GenerationJob
from evalkit.errors import DamagedModelError, EvalkitError
from evalkit.store import read_run

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "examples" / "checkpoints" / "tiny-base"
POISONED = "model.layers.1.mlp.up_proj.weight"


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evalkit.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def one_line_error(proc: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines


def _doctored(tmp: Path, name: str, value: float) -> Path:
    from safetensors.torch import load_file, save_file

    ckpt = tmp / name
    shutil.copytree(TINY, ckpt)
    weights = load_file(str(ckpt / "model.safetensors"))
    weights[POISONED][3, 5] = value
    save_file(weights, str(ckpt / "model.safetensors"), metadata={"format": "pt"})
    return ckpt


@pytest.fixture(scope="module")
def nan_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _doctored(tmp_path_factory.mktemp("nan"), "tiny-nan", float("nan"))


@pytest.fixture(scope="module")
def padded_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny-base with 64 embedding rows more than its tokenizer has tokens (random, as
    `resize_token_embeddings` leaves them)."""
    import torch
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("padded") / "tiny-padded"
    shutil.copytree(TINY, out)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(TINY), local_files_only=True)
    model.resize_token_embeddings(model.config.vocab_size + 64, mean_resizing=False)
    model.save_pretrained(out)
    return out


# -- non-finite weights ------------------------------------------------------------------------


def test_one_nan_weight_fails_at_load_naming_the_tensor(nan_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = cli("score", nan_ckpt, "--suite", "smoke", "--limit", "2", "--out", out, "--no-cache")
    one_line_error(proc, f"weight {POISONED} holds 1 non-finite value")
    assert not out.exists()


def test_a_nan_weight_cannot_pass_as_zero_scores_on_generation_tasks(
    nan_ckpt: Path, tmp_path: Path
) -> None:
    # Before: exit 0, every prediction empty, exact_match 0.
    out = tmp_path / "run"
    args = ("score", nan_ckpt, "--tasks", "smoke_arith_gen", "--limit", "2", "--no-cache")
    one_line_error(run_cli(*args, "--out", out), "non-finite value")
    assert not out.exists()


def test_the_weight_check_passes_finite_models_and_counts_every_bad_value() -> None:
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    damage.check_finite_weights(model, Path("ok"), "float32")  # positive control
    with torch.no_grad():
        model[1].weight[0, 0] = float("inf")
        model[1].weight[1, 2] = float("-inf")
        model[0].bias[1] = float("nan")
    with pytest.raises(DamagedModelError, match=r"weight 0.bias holds 1 .*and 1 more tensor"):
        damage.check_finite_weights(model, Path("bad"), "float32")
    assert damage.nonfinite_count(model[1].weight) == 2
    with pytest.raises(DamagedModelError, match="try --dtype bfloat16"):
        damage.check_finite_weights(model, Path("bad"), "float16")
    # The native decoder keeps its weights in a dict: checked the same way.
    native = type("Native", (), {"w": {"a": torch.zeros(3), "b": torch.tensor([1.0, math.nan])}})()
    with pytest.raises(DamagedModelError, match="weight b holds 1"):
        damage.check_finite_weights(native, Path("bad"), "float32")
    # Sliced: a bad value in a later slice is found too.
    big = torch.zeros(damage.SLICE + 10)
    big[-1] = float("nan")
    assert damage.nonfinite_count(big) == 1


# -- non-finite logits while generating ----------------------------------------------------------


def test_finite_logits_processor_controls() -> None:
    import torch

    proc = damage.FiniteLogits()
    ok = torch.tensor([[0.0, 1.0, float("-inf")], [2.0, -3.0, 0.5]])  # -inf: a masked token
    assert proc(None, ok) is ok
    for bad in (
        torch.tensor([[0.0, float("nan"), 1.0]]),
        torch.tensor([[0.0, float("inf"), 1.0]]),
        torch.tensor([[float("-inf")] * 3, [0.0, 1.0, 2.0]]),  # a row with nothing to pick
    ):
        with pytest.raises(DamagedModelError, match="non-finite logits"):
            proc(None, bad)


@pytest.mark.parametrize("native", [True, False])
def test_nonfinite_logits_during_generation_are_an_error_not_empty_text(
    nan_ckpt: Path, monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    from evalkit.backends import hf

    # With the load-time check off, generation itself must refuse (a model whose activations
    # overflow has finite weights).
    monkeypatch.setattr(hf, "check_finite_weights", lambda *a: None)
    backend = hf.HFBackend(nan_ckpt, device="cpu", dtype="float32", native=native)
    prompt = tuple(backend.tokenizer.encode("1 + 2 ="))
    job = GenerationJob(prompt=prompt, stop=("\n",), max_tokens=4, temperature=0.0, n=1, seed=0)
    with pytest.raises(DamagedModelError, match="non-finite logits"):
        backend.generate([job])
    # Positive control: the same call on the intact checkpoint generates.
    clean = hf.HFBackend(TINY, device="cpu", dtype="float32", native=native)
    (texts,) = clean.generate([job])
    assert len(texts) == 1


# -- the cache folder ---------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["under-a-file", "proc"])
def test_an_unusable_cache_dir_fails_before_the_model_loads(tmp_path: Path, where: str) -> None:
    # Weights that cannot load: the cache error must come first, so it came before loading.
    ckpt = tmp_path / "ckpt"
    shutil.copytree(TINY, ckpt)
    (ckpt / "model.safetensors").write_bytes(b"\x07" * 4096)
    (tmp_path / "a-file").write_text("x")
    cache = tmp_path / "a-file" / "cache" if where == "under-a-file" else Path("/proc/evalkit-x")
    out = tmp_path / "run"
    proc = run_cli(
        "score", ckpt, "--suite", "smoke", "--limit", "1", "--out", out, "--cache-dir", cache
    )
    one_line_error(proc, "unusable cache directory")
    assert not out.exists()


def test_result_cache_on_a_bad_folder_is_a_user_error(tmp_path: Path) -> None:
    from evalkit.cache import ResultCache

    (tmp_path / "f").write_text("x")
    with pytest.raises(EvalkitError, match="unusable cache directory"):
        ResultCache(tmp_path / "f" / "results.sqlite")
    ResultCache(tmp_path / "ok" / "results.sqlite").close()  # positive control


# -- a padded vocabulary ------------------------------------------------------------------------


def test_a_padded_vocabulary_is_scored_recorded_and_said(padded_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ("score", padded_ckpt, "--tasks", "smoke_prose_bpb", "--limit", "2", "--no-cache")
    proc = run_cli(*args, "--out", out, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "1024 tokens; the 64 extra rows" in proc.stderr
    run = read_run(out)
    assert run.manifest["vocabulary"] == {
        "embedding_rows": 1088,
        "tokenizer_tokens": 1024,
        "padded_rows": 64,
    }
    assert "64 rows never produced by the tokenizer" in proc.stdout
    # Negative control: the intact checkpoint has no padding and no warning.
    out2 = tmp_path / "run2"
    proc = run_cli("score", TINY, *args[2:], "--out", out2, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "extra rows" not in proc.stderr
    assert read_run(out2).manifest["vocabulary"]["padded_rows"] == 0


def test_vocabulary_facts_both_ways(tmp_path: Path) -> None:
    shutil.copytree(TINY, tmp_path / "c")
    facts = damage.vocabulary_facts(tmp_path / "c", 1000)
    assert facts == {"embedding_rows": 1024, "tokenizer_tokens": 1000, "padded_rows": 24}
    assert "24 extra rows" in (damage.vocabulary_warning(tmp_path / "c", facts) or "")
    short = damage.vocabulary_facts(tmp_path / "c", 1100)
    assert short is not None and short["padded_rows"] == -76
    assert "cannot be scored" in (damage.vocabulary_warning(tmp_path / "c", short) or "")
    assert damage.vocabulary_warning(tmp_path / "c", damage.vocabulary_facts(TINY, 1024)) is None


def test_api_score_records_no_vocabulary_for_a_backend_object(tmp_path: Path) -> None:
    from evalkit.backends.fake import FakeBackend

    tdir = tmp_path / "t"
    tdir.mkdir()
    (tdir / "x.yaml").write_text(
        "name: x\nfamily: test\nversion: 1\nkind: loglikelihood\ndocs: {path: x.jsonl}\n"
        'prompt: "{text}"\ncontinuation: " end"\n'
    )
    (tdir / "x.jsonl").write_text('{"text": "a"}\n{"text": "b"}\n')
    run = evalkit.score(
        "fake",
        tasks=["x"],
        tasks_dir=tdir,
        backend=FakeBackend(),
        out=tmp_path / "run",
        use_cache=False,
        progress=False,
    )
    assert run.manifest["vocabulary"] is None


@pytest.mark.parametrize(("key", "value"), [("vocab_size", 2048), ("hidden_size", 256)])
def test_a_config_that_disagrees_with_its_weights_is_damage(
    tmp_path: Path, key: str, value: int
) -> None:
    # The native decoder reads no shapes from its tensors: before, scoring ran on such a
    # checkpoint and only generation (through transformers) failed, with a traceback.
    ckpt = tmp_path / "ckpt"
    shutil.copytree(TINY, ckpt)
    config = json.loads((ckpt / "config.json").read_text())
    config[key] = value
    (ckpt / "config.json").write_text(json.dumps(config))
    out = tmp_path / "run"
    proc = run_cli("score", ckpt, "--suite", "smoke", "--limit", "1", "--no-cache", "--out", out)
    one_line_error(proc, "but config.json implies")
    assert not out.exists()


def test_native_shapes_match_the_bundled_checkpoint() -> None:
    from safetensors.torch import load_file

    from evalkit.backends.llama_native import native_config

    shape, _ = native_config(TINY)
    assert shape is not None
    want = damage.native_shapes(shape)
    weights = load_file(str(TINY / "model.safetensors"))
    assert {n: tuple(t.shape) for n, t in weights.items()} == want  # positive control
