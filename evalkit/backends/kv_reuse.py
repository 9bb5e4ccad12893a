"""One context pass per group on the unpacked path: a KV cache reused for every continuation.

The unpacked path (ALiBi, unknown architectures: `arch.py`) scores each (context,
continuation) under the model's own masks. Done naively that computes a group's context once
per continuation. Here the context runs once with `use_cache=True`; its last position scores
every continuation's first token, and the continuations' remaining tokens run as one
right-padded batch on top of that cache (repeated per row), with a 2D attention mask over
context + continuation, so the model still builds its own masks, ALiBi biases and positions.

Causal attention makes this the same computation as the plain forward of context +
continuation (the context's keys/values do not depend on what follows), up to float rounding
(tests/test_arch_matrix.py: within 1e-4 nats in fp32 on Bloom and Falcon-ALiBi).

Reuse needs a cache that holds every context token unchanged and can be repeated per row:
transformers' `DynamicCache` of plain `DynamicLayer`s. Sliding-window layers keep only the
window's tail, static, quantized, linear-attention or legacy tuple caches are not checked here:
`probe` says "off (...)" for them once at load time, and those models keep scoring each
(context, continuation) as its own row. The outcome is a backend setting (`kv_reuse`).
"""

from __future__ import annotations

from typing import Any

ON = "per group"


def probe(decoder: Any, device: Any, token: int) -> str:
    """Whether `decoder`'s cache can be reused per group: ON, or "off (reason)"."""
    import torch

    try:
        from transformers.cache_utils import DynamicCache, DynamicLayer
    except ImportError:
        return "off (transformers has no DynamicCache)"
    try:
        with torch.inference_mode():
            out = decoder(input_ids=torch.tensor([[token, token]], device=device), use_cache=True)
    except Exception as exc:  # a model that cannot run with a cache at all
        return f"off (a cached forward failed: {type(exc).__name__})"
    cache = getattr(out, "past_key_values", None)
    if not isinstance(cache, DynamicCache):
        return f"off ({type(cache).__name__} cache)"
    layers = list(getattr(cache, "layers", None) or [])
    odd = sorted({type(layer).__name__ for layer in layers if type(layer) is not DynamicLayer})
    if not layers or odd:
        return f"off (cache layers {odd or 'unknown'} do not keep every context token)"
    if not hasattr(cache, "batch_repeat_interleave"):
        return "off (the cache cannot be repeated per row)"
    return ON


def chunks(n_rows: int, per_row: int, budget: int) -> list[range]:
    """Rows of a group's continuation pass split so each pass stays within the token budget
    (every row also holds the cached context)."""
    size = max(1, budget // max(per_row, 1))
    return [range(s, min(s + size, n_rows)) for s in range(0, n_rows, size)]
