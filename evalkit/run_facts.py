"""The manifest's backend facts with one meaning per field (evalkit.schema.Manifest).

Backends describe themselves differently: HF's `settings["dtype"]` is the dtype the weights
were loaded in, vLLM's is what was asked for (possibly "auto"); HF's `token_budget` is padded
tokens per forward batch, vLLM's is tokens submitted per wave. This says which is which.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Backends whose `settings["dtype"]` repeats the request rather than the loaded dtype.
_DTYPE_AS_REQUESTED = frozenset({"vllm"})
# Backends whose `token_budget` is tokens per submitted wave, not per padded batch.
_BUDGET_PER_WAVE = frozenset({"vllm"})


def backend_facts(
    backend: str, settings: Mapping[str, Any], token_budget: int | None, dtype_requested: str
) -> dict[str, Any]:
    """`dtype_requested`, `dtype_resolved`, `batch_token_budget`, `wave_tokens` for the
    manifest (None where the backend does not have or say it)."""
    said = settings.get("dtype")
    if backend in _DTYPE_AS_REQUESTED:
        resolved = None if said in (None, "auto") else str(said)
    else:
        resolved = None if said is None else str(said)
    per_wave = backend in _BUDGET_PER_WAVE
    return {
        "dtype_requested": dtype_requested,
        "dtype_resolved": resolved,
        "batch_token_budget": None if per_wave else token_budget,
        "wave_tokens": token_budget if per_wave else None,
    }
