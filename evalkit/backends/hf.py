"""Transformers backend (CPU or GPU, fp32/bf16/fp16): loads a checkpoint (evalkit's native
Llama decoder where it applies, else transformers with an attention implementation that keeps
the model's math) and answers the Backend protocol.

The work is divided as the model is used: `hf_checkpoint.py` (tokenizer, checks and window,
before any weights load), `hf_forward.py` (the decoder and head, the scored positions'
log-probs, the plain forward the parity guard compares against), `hf_packed.py` (a group's
context once with its continuations under a tree-shaped mask), `hf_unpacked.py` (the model's
own masks: KV reuse or one row per continuation) and `hf_generate.py`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evalkit.backends import kv_reuse
from evalkit.backends.arch import ArchPlan, attn_implementation, native_plan, plan_for
from evalkit.backends.base import GenerationJob, ScoringGroup, TokenScore
from evalkit.backends.damage import check_finite_weights, check_native_shapes
from evalkit.backends.guard import ParityGuard
from evalkit.backends.hf_checkpoint import (
    HFTokenizer,
    checkpoint_window,
    first_line,
    load_tokenizer,
)
from evalkit.backends.hf_forward import Forward
from evalkit.backends.hf_generate import generate
from evalkit.backends.hf_packed import score_packed
from evalkit.backends.hf_unpacked import score_unpacked
from evalkit.backends.llama_native import load_native, native_config
from evalkit.backends.routing import RouterTap
from evalkit.errors import EvalkitError
from evalkit.fingerprint import model_fingerprint

DTYPES = ("float32", "bfloat16", "float16")


class HFBackend:
    name = "hf"

    def __init__(
        self,
        checkpoint: str | Path,
        *,
        device: str = "auto",
        dtype: str = "auto",
        token_budget: int | None = None,
        max_length: int | None = None,
        tokenizer: HFTokenizer | None = None,
        prefix_reuse: bool = True,
        native: bool = True,
        guard: bool = True,
        trust_remote_code: bool = False,
    ) -> None:
        import torch

        path = Path(checkpoint)
        hf_tokenizer = tokenizer or load_tokenizer(path, trust_remote_code)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype == "auto":
            dtype = "bfloat16" if device.startswith("cuda") else "float32"
        if dtype not in DTYPES:
            raise EvalkitError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
        self.device = torch.device(device)
        self.dtype_name = dtype
        self._torch_dtype = getattr(torch, dtype)
        model: Any
        shape, self.native_refusal = native_config(path) if native else (None, "turned off")
        if shape is not None:
            model = load_native(path, shape, self._torch_dtype)
            check_native_shapes(model, shape, path)
            plan = native_plan()
        else:
            model, plan = _load_transformers(path, self._torch_dtype, trust_remote_code)
        self.decoder_impl = "native-llama" if shape is not None else "transformers"
        model.to(self.device)
        model.eval()
        check_finite_weights(model, path, dtype)  # a NaN weight is an error, not a score
        self.model = model
        self.checkpoint = path
        self._tokenizer = hf_tokenizer
        self._fingerprint = model_fingerprint(path, hf_tokenizer.fingerprint)
        # config.json, not the loaded config object: class defaults must not change the window.
        self._max_length = max_length or checkpoint_window(path, hf_tokenizer)
        self.forward = Forward(
            model,
            device=self.device,
            torch_dtype=self._torch_dtype,
            plan=plan,
            pad_id=hf_tokenizer.pad_token_id,
            token_budget=token_budget or self._default_budget(),
            prefix_reuse=prefix_reuse,
        )
        if plan.path == "unpacked":  # can a group's context run once? (kv_reuse.py)
            reuse = kv_reuse.probe(self.forward.decoder, self.device, hf_tokenizer.pad_token_id)
            self.plan = dataclasses.replace(plan, kv_reuse=reuse)
        self.guard = ParityGuard(
            enabled=guard,
            dtype=dtype,
            architecture=self.plan.model_type,
            path=self.plan.path,
            reference=self.forward.plain_logprobs,
            reference_name=(
                "native decoder, unpacked rows"
                if self.plan.path == "native"
                else f"transformers forward ({self.plan.attn_implementation}), unpacked rows"
            ),
        )

    # -- Backend protocol ----------------------------------------------------------------
    @property
    def tokenizer(self) -> HFTokenizer:
        return self._tokenizer

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def model_fingerprint(self) -> str:
        return self._fingerprint

    @property
    def settings(self) -> Mapping[str, str]:
        return {
            "backend": "hf",
            "decoder": self.decoder_impl,
            "dtype": self.dtype_name,
            "device": self.device.type,
            "max_length": str(self._max_length),
            **self.plan.describe(),
        }

    @property
    def token_budget(self) -> int:
        return self.forward.token_budget

    def _default_budget(self) -> int:
        import torch

        if self.device.type != "cuda":
            return 4096
        free, _ = torch.cuda.mem_get_info(self.device)
        cfg = self.model.config
        hidden = int(getattr(cfg, "hidden_size", 4096))
        return gpu_token_budget(
            int(free),
            hidden=hidden,
            intermediate=int(getattr(cfg, "intermediate_size", 4 * hidden)),
            dtype_bytes=torch.finfo(self._torch_dtype).bits // 8,
            window=self._max_length,
        )

    def score(self, groups: Sequence[ScoringGroup]) -> list[tuple[TokenScore, ...]]:
        import torch

        if not groups:
            return []
        with torch.inference_mode():
            results = self._score(groups)
            # Before the engine stores anything: the first batches' sample against the
            # model's plain forward (raises over tolerance).
            self.guard.check(groups, results)
        return results

    @property
    def plan(self) -> ArchPlan:
        """The scoring path and attention setup chosen for this architecture (`arch.py`)."""
        return self.forward.plan

    @plan.setter
    def plan(self, plan: ArchPlan) -> None:
        self.forward.plan = plan

    @property
    def routing(self) -> RouterTap | None:
        """Router decisions at scored positions, for an MoE (set by `evalkit.routing_run`)."""
        return self.forward.routing

    @routing.setter
    def routing(self, tap: RouterTap | None) -> None:
        self.forward.routing = tap

    @property
    def guard_report(self) -> dict[str, object]:
        """The parity guard's outcome, for the manifest."""
        return self.guard.report().to_dict()

    def _score(self, groups: Sequence[ScoringGroup]) -> list[tuple[TokenScore, ...]]:
        """Packed where the plan allows, else unpacked (`hf_packed.py`, `hf_unpacked.py`)."""
        results: list[tuple[TokenScore, ...] | None] = [None] * len(groups)
        packed: list[int] = []
        unpacked: list[int] = []
        limit = self.plan.rope_threshold
        for i, g in enumerate(groups):
            # Length-dependent RoPE switches on at the batch's largest position: a group that
            # reaches past the original length is scored row by row, as its plain forward.
            if self.plan.path == "unpacked" or (limit is not None and g.longest_branch > limit):
                unpacked.append(i)
            else:
                packed.append(i)
        if packed:
            for i, r in zip(
                packed, score_packed(self.forward, [groups[i] for i in packed]), strict=True
            ):
                results[i] = r
        if unpacked:
            chosen = [groups[i] for i in unpacked]
            for i, r in zip(unpacked, score_unpacked(self.forward, chosen), strict=True):
                results[i] = r
        return [r for r in results if r is not None]

    def generate(self, jobs: Sequence[GenerationJob]) -> list[tuple[str, ...]]:
        return generate(self.model, self.device, self._tokenizer, jobs)


def _load_transformers(
    path: Path, dtype: Any, trust_remote_code: bool = False
) -> tuple[Any, ArchPlan]:
    """The model, with the attention implementation that keeps its math (`arch.py`), and
    the scoring path for it."""
    import transformers

    model: Any
    info: dict[str, Any]
    try:
        config = transformers.AutoConfig.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:
        raise EvalkitError(f"cannot read the config of {path}: {first_line(exc)}") from None
    attn = attn_implementation(config)
    try:
        model, info = transformers.AutoModelForCausalLM.from_pretrained(  # type: ignore[misc]
            str(path),
            config=config,
            local_files_only=True,
            dtype=dtype,
            output_loading_info=True,
            attn_implementation=attn,
            trust_remote_code=trust_remote_code,
        )
    except Exception as exc:
        # transformers puts its reason (e.g. a size mismatch report) above a generic last line.
        raise EvalkitError(f"cannot load weights from {path}: {first_line(exc)}") from None
    missing = list(info.get("missing_keys", []))
    if missing:
        raise EvalkitError(
            f"weights in {path} lack {len(missing)} tensors (e.g. {missing[0]}): "
            "refusing to score a partly random model"
        )
    return model, plan_for(model.config, attn)


# Share of the free GPU memory one scoring batch may take (the rest: allocator slack, the
# prefix cache, the vocabulary projection's slices).
BUDGET_FRACTION = 0.5
MIN_BUDGET = 2048
MAX_BUDGET = 262144


def gpu_token_budget(
    free_bytes: int, *, hidden: int, intermediate: int, dtype_bytes: int, window: int
) -> int:
    """Padded tokens per scoring batch that fit in `free_bytes` of GPU memory.

    Per token: one layer's activations at a time (residual, attention in/out, MLP in/out),
    plus one row of the packed 4D mask (a float per key of the window)."""
    per_token = (6 * hidden + 3 * intermediate) * dtype_bytes + 4 * window
    budget = int(free_bytes * BUDGET_FRACTION / per_token)
    return max(MIN_BUDGET, min(budget, MAX_BUDGET))
