"""The vLLM backend's parity guard and model-class record, on the fake engine (tests/fake_vllm.py,
numbers from tiny-base through transformers). The real engine: tests/test_vllm_real.py."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fake_vllm
import pytest
from conftest import TINY_BASE

from evalkit.backends.base import ScoringGroup
from evalkit.backends.vllm_guard import VLLM_TOLERANCE, resolved_model_class
from evalkit.errors import EvalkitError


@pytest.fixture(scope="module")
def loaded() -> Iterator[Any]:
    """tiny-base loaded once for the module: the fake engine's model and the guard's plain HF
    reference (each test used to load both again)."""
    from evalkit.backends.hf import HFBackend

    key = str(TINY_BASE)
    fake_vllm.LOADED[key] = fake_vllm.load(key)
    yield HFBackend(TINY_BASE, device="cpu", dtype="float32", native=False, guard=False)
    fake_vllm.LOADED.pop(key, None)


@pytest.fixture
def references(monkeypatch: pytest.MonkeyPatch, loaded: Any) -> list[dict[str, Any]]:
    """The keyword arguments the guard builds its HF reference with; the reference itself is
    the module's one (its arguments are checked to be those it was loaded with)."""
    from evalkit.backends import hf

    seen: list[dict[str, Any]] = []

    def reference(checkpoint: Any, **kw: Any) -> Any:
        seen.append(kw)
        assert Path(checkpoint) == Path(TINY_BASE)
        assert (kw["device"], kw["dtype"], kw["native"], kw["guard"]) == (
            "cpu",
            "float32",
            False,
            False,
        )
        return loaded

    monkeypatch.setattr(hf, "HFBackend", reference)
    return seen


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, references: list[dict[str, Any]]) -> Any:
    mod = fake_vllm.make_module("new")
    monkeypatch.setitem(sys.modules, "vllm", mod)
    return mod


def _backend(**kw: Any) -> Any:
    from evalkit.backends.vllm import VLLMBackend
    from evalkit.backends.vllm_options import VLLMOptions

    guard = kw.pop("guard", True)
    trust = kw.pop("trust_remote_code", False)
    return VLLMBackend(TINY_BASE, options=VLLMOptions(**kw), guard=guard, trust_remote_code=trust)


def _groups(backend: Any) -> list[ScoringGroup]:
    tok = backend.tokenizer
    out = []
    for a in range(10):
        ctx = tuple(tok.encode(f"Q: {a} + 4 = ? The answer is"))
        conts = tuple(tuple(tok.encode_plain(s)) for s in (f" {a + 4}", " twelve or so", " 7"))
        out.append(ScoringGroup(ctx, conts))
    return out


def test_records_the_class_and_passes_on_an_honest_engine(fake: Any) -> None:
    backend = _backend()
    s = backend.settings
    # The fake exposes model_config.architecture only (no model loader): the fallback.
    assert s["model_class"] == "LlamaForCausalLM"
    assert s["model_class_source"] == "model_config.architecture"
    assert s["model_dtype"] == "float32"
    assert backend.guard_report["status"].startswith("not run (nothing was scored")
    backend.score(_groups(backend))
    report = backend.guard_report
    assert report["status"] == "passed" and report["path"] == "vllm", report
    assert report["groups"] == 8 and report["per"] == "token"
    assert report["tolerance"] == VLLM_TOLERANCE["float32"]
    assert report["max_abs_diff"] is not None and report["max_abs_diff"] < 1e-4
    assert "transformers forward (llama" in str(report["reference"])


def test_a_damaged_engine_trips_the_guard_and_no_guard_skips_it(fake: Any) -> None:
    """Negative control: an engine whose log-probs are 0.01 nats off (10x the tolerance)."""
    fake.LLM.logprob_shift = 0.01
    backend = _backend()
    with pytest.raises(EvalkitError, match=r"parity guard: LlamaForCausalLM on the vllm path"):
        backend.score(_groups(backend))
    off = _backend(guard=False)
    off.score(_groups(off))  # the same damage passes unchecked
    assert off.guard_report["status"] == "off (--no-guard)"


def test_a_large_checkpoint_is_not_loaded_twice(fake: Any) -> None:
    backend = _backend(guard_max_gib=0.0)
    backend.score(_groups(backend))
    status = str(backend.guard_report["status"])
    assert status.startswith("not run (weights") and "guard_max_gib" in status


def test_the_class_comes_from_vllm_model_loader_when_it_has_one(
    fake: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Resolved:  # what vLLM's registry would hand the loader
        pass

    loader = types.ModuleType("vllm.model_executor.model_loader")
    seen: list[Any] = []

    def get_model_architecture(config: Any) -> tuple[type, str]:
        seen.append(config)
        return Resolved, "InternLM3ForCausalLM"

    loader.get_model_architecture = get_model_architecture  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm.model_executor.model_loader", loader)
    config = types.SimpleNamespace(architecture="InternLM3ForCausalLM")
    llm = types.SimpleNamespace(llm_engine=types.SimpleNamespace(model_config=config))
    name, source = resolved_model_class(fake, llm)
    assert name.endswith(".Resolved") and source == "model_loader.get_model_architecture"
    assert seen == [config]
    assert resolved_model_class(fake, object()) == ("unknown", "the engine exposes no model_config")


def test_the_manifest_carries_the_guard_and_class(fake: Any, tmp_path: Path) -> None:
    import evalkit

    run = evalkit.score(
        TINY_BASE,
        suite="smoke",
        limit=2,
        backend="vllm",
        use_cache=False,
        progress=False,
        out=tmp_path / "run",
    )
    assert run.manifest["parity_guard"]["status"] == "passed"
    assert run.manifest["backend_settings"]["model_class"] == "LlamaForCausalLM"


@pytest.mark.parametrize("trust", [False, True])
def test_the_runs_trust_remote_code_reaches_the_engine_and_the_guards_reference(
    fake: Any, references: list[dict[str, Any]], trust: bool
) -> None:
    backend = _backend(trust_remote_code=trust)
    assert backend.llm.engine_args["trust_remote_code"] is trust
    backend.score(_groups(backend))
    assert backend.guard_report["status"] == "passed"
    assert [kw["trust_remote_code"] for kw in references] == [trust]
