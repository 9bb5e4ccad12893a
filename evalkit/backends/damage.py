"""Damaged checkpoints are errors, not scores.

- `check_finite_weights`: every floating-point weight is finite, checked once at load (one
  `isfinite` pass per tensor, in slices so a large embedding needs no second copy of itself).
  One NaN in one weight otherwise surfaces later as NaN log-likelihoods, or silently as empty
  generations scored 0.
- `FiniteLogits`: a generation logits processor that fails on NaN or +inf logits, or on a row
  with no finite logit at all (overflow in float16, say), instead of decoding garbage.
- `vocabulary_facts`: embedding rows against tokenizer tokens. Many real checkpoints pad their
  vocabulary; lm-eval scores the extra rows as part of the softmax and so does evalkit, but the
  run records it and the user is told.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from evalkit.backends.hfconfig import ConfigView, read_config
from evalkit.backends.llama_native import LlamaShape
from evalkit.errors import DamagedModelError

# Elements per isfinite slice: bounds the temporary boolean mask (64 MiB).
SLICE = 1 << 26


def named_weights(model: Any) -> Iterator[tuple[str, Any]]:
    """(name, tensor) for a transformers module or the native decoder (a dict of tensors)."""
    if hasattr(model, "named_parameters"):
        yield from model.named_parameters()
        return
    weights = getattr(model, "w", None)
    if isinstance(weights, dict):
        yield from weights.items()


def nonfinite_count(tensor: Any) -> int:
    import torch

    flat = tensor.detach().reshape(-1)
    bad = 0
    for start in range(0, flat.numel(), SLICE):
        part = flat[start : start + SLICE]
        if not bool(torch.isfinite(part).all()):
            bad += int((~torch.isfinite(part)).sum())
    return bad


def check_finite_weights(model: Any, checkpoint: Path, dtype: str) -> None:
    """Raise DamagedModelError naming the first tensor that holds a NaN or an infinity."""
    bad: list[tuple[str, int]] = []
    for name, tensor in named_weights(model):
        if not tensor.is_floating_point():
            continue
        count = nonfinite_count(tensor)
        if count:
            bad.append((name, count))
    if not bad:
        return
    name, count = bad[0]
    more = f" (and {len(bad) - 1} more tensor(s))" if len(bad) > 1 else ""
    hint = (
        f"; in {dtype} the weights may overflow: try --dtype bfloat16 or float32"
        if dtype == "float16"
        else ""
    )
    raise DamagedModelError(
        f"damaged checkpoint {checkpoint}: weight {name} holds {count} non-finite value(s) "
        f"(NaN/inf){more}{hint}"
    )


def native_shapes(shape: LlamaShape) -> dict[str, tuple[int, ...]]:
    """Every weight's shape as the config states it (the native decoder reads no shapes from the
    tensors, so a config that disagrees with its weights must be caught here)."""
    h, v, i = shape.hidden_size, shape.vocab_size, shape.intermediate_size
    q, kv = shape.n_heads * shape.head_dim, shape.n_kv_heads * shape.head_dim
    out: dict[str, tuple[int, ...]] = {
        "model.embed_tokens.weight": (v, h),
        "model.norm.weight": (h,),
        "lm_head.weight": (v, h),
    }
    for n in range(shape.n_layers):
        p = f"model.layers.{n}."
        out |= {
            p + "input_layernorm.weight": (h,),
            p + "post_attention_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (q, h),
            p + "self_attn.k_proj.weight": (kv, h),
            p + "self_attn.v_proj.weight": (kv, h),
            p + "self_attn.o_proj.weight": (h, q),
            p + "mlp.gate_proj.weight": (i, h),
            p + "mlp.up_proj.weight": (i, h),
            p + "mlp.down_proj.weight": (h, i),
        }
    return out


def check_native_shapes(model: Any, shape: LlamaShape, checkpoint: Path) -> None:
    """Raise DamagedModelError when a weight's shape is not the one config.json implies."""
    want = native_shapes(shape)
    for name, tensor in named_weights(model):
        expected = want.get(name)
        if expected is not None and tuple(tensor.shape) != expected:
            raise DamagedModelError(
                f"damaged checkpoint {checkpoint}: weight {name} has shape "
                f"{list(tensor.shape)} but config.json implies {list(expected)}"
            )


class FiniteLogits:
    """transformers logits processor (called as `(input_ids, scores) -> scores`) that raises on
    logits no decoding rule can use. -inf alone is allowed: processors mask tokens with it."""

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        broken = (
            torch.isnan(scores).any()
            | torch.isposinf(scores).any()
            | (~torch.isfinite(scores)).all(dim=-1).any()
        )
        if bool(broken):
            raise DamagedModelError(
                "the model produced non-finite logits (NaN/inf) while generating: its weights or "
                "activations are broken or overflow in this dtype (try --dtype float32)"
            )
        return scores


def embedding_rows(checkpoint: Path) -> int | None:
    """Rows of the input embedding as the config states them (what the weights must match)."""
    config = ConfigView(read_config(checkpoint))
    for cfg in (getattr(config, "text_config", None), config):
        rows = getattr(cfg, "vocab_size", None) if cfg is not None else None
        if isinstance(rows, int) and rows > 0:
            return rows
    return None


def vocabulary_facts(checkpoint: Path, tokenizer_tokens: int) -> dict[str, int] | None:
    """`{"embedding_rows", "tokenizer_tokens", "padded_rows"}` for the manifest (padded_rows:
    embedding rows the tokenizer never produces; negative when the tokenizer has more tokens than
    the embedding has rows). None when the config does not say."""
    rows = embedding_rows(checkpoint)
    if rows is None:
        return None
    return {
        "embedding_rows": rows,
        "tokenizer_tokens": int(tokenizer_tokens),
        "padded_rows": rows - int(tokenizer_tokens),
    }


def vocabulary_warning(checkpoint: Path, facts: dict[str, int] | None) -> str | None:
    if facts is None or facts["padded_rows"] == 0:
        return None
    rows, tokens = facts["embedding_rows"], facts["tokenizer_tokens"]
    if facts["padded_rows"] > 0:
        return (
            f"warning: {checkpoint.name}: the embedding has {rows} rows but the tokenizer "
            f"{tokens} tokens; the {rows - tokens} extra rows take part in every softmax (scored "
            "as lm-eval does, recorded in the manifest as 'vocabulary')"
        )
    return (
        f"warning: {checkpoint.name}: the tokenizer has {tokens} tokens but the embedding only "
        f"{rows} rows; a text that uses the extra tokens cannot be scored"
    )
