"""Tiny random checkpoints of many architectures, built from transformers configs (seeded).

Each has hidden 32, 2 layers, a window of WINDOW positions, sliding windows of SLIDE tokens
where the architecture has them (shorter than the test's contexts), and weights drawn large
enough that attention is peaked: a token the mask wrongly lets in or keeps out moves the
log-likelihoods by far more than the 1e-4 the tests allow. The tokenizer is the bundled
tiny-base's, so native task files (the smoke suite) tokenize as they do there.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER_FROM = ROOT / "examples" / "checkpoints" / "tiny-base"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
VOCAB = 1024
WINDOW = 256
SLIDE = 24
HEAD_DIM = 8


def _common(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "vocab_size": VOCAB,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": WINDOW,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "pad_token_id": 2,
        "tie_word_embeddings": False,
    }
    base.update(extra)
    return base


def _rope(kind: str, **extra: Any) -> dict[str, Any]:
    return {"rope_parameters": {"rope_type": kind, "rope_theta": 10000.0, **extra}}


def _longrope(original: int) -> dict[str, Any]:
    half = HEAD_DIM // 2
    return _rope(
        "longrope",
        short_factor=[1.0 + 0.1 * i for i in range(half)],
        long_factor=[2.0 + 0.5 * i for i in range(half)],
        original_max_position_embeddings=original,
        factor=WINDOW / original,
    )


def _configs() -> dict[str, Callable[[], Any]]:
    import transformers as t

    moe = {"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32}
    return {
        "llama-native": lambda: t.LlamaConfig(**_common()),
        "llama-tied": lambda: t.LlamaConfig(**_common(tie_word_embeddings=True)),
        "llama-rope-linear": lambda: t.LlamaConfig(**_common(**_rope("linear", factor=2.0))),
        "llama-rope-dynamic": lambda: t.LlamaConfig(**_common(**_rope("dynamic", factor=2.0))),
        "llama-rope-llama3": lambda: t.LlamaConfig(
            **_common(
                **_rope(
                    "llama3",
                    factor=4.0,
                    low_freq_factor=1.0,
                    high_freq_factor=4.0,
                    original_max_position_embeddings=64,
                )
            )
        ),
        "llama-rope-yarn": lambda: t.LlamaConfig(
            **_common(**_rope("yarn", factor=4.0, original_max_position_embeddings=64))
        ),
        "llama-rope-longrope": lambda: t.LlamaConfig(**_common(**_longrope(64))),
        "mistral-sliding": lambda: t.MistralConfig(**_common(sliding_window=SLIDE)),
        "mixtral": lambda: t.MixtralConfig(
            **_common(num_local_experts=4, num_experts_per_tok=2, sliding_window=None)
        ),
        "qwen2": lambda: t.Qwen2Config(**_common(use_sliding_window=False)),
        "qwen2-sliding": lambda: t.Qwen2Config(
            **_common(use_sliding_window=True, sliding_window=SLIDE, max_window_layers=1)
        ),
        "qwen2-moe": lambda: t.Qwen2MoeConfig(
            **_common(**moe, shared_expert_intermediate_size=32, decoder_sparse_step=1)
        ),
        "qwen3-moe": lambda: t.Qwen3MoeConfig(**_common(**moe, head_dim=HEAD_DIM)),
        "gemma": lambda: t.GemmaConfig(**_common(head_dim=HEAD_DIM)),
        "gemma2": lambda: t.Gemma2Config(
            **_common(
                head_dim=HEAD_DIM,
                sliding_window=SLIDE,
                attn_logit_softcapping=2.0,
                final_logit_softcapping=5.0,
                query_pre_attn_scalar=HEAD_DIM,
                layer_types=["sliding_attention", "full_attention"],
            )
        ),
        "gemma3-text": lambda: t.Gemma3TextConfig(
            **_common(
                head_dim=HEAD_DIM,
                sliding_window=SLIDE,
                query_pre_attn_scalar=HEAD_DIM,
                layer_types=["sliding_attention", "full_attention"],
            )
        ),
        "phi2": lambda: t.PhiConfig(**_common(partial_rotary_factor=0.5)),
        "phi3-longrope": lambda: t.Phi3Config(
            **_common(sliding_window=None, original_max_position_embeddings=64, **_longrope(64))
        ),
        "gpt-neox": lambda: t.GPTNeoXConfig(**_common(rotary_pct=0.5)),
        "olmo2": lambda: t.Olmo2Config(**_common()),
        "gpt2": lambda: t.GPT2Config(
            vocab_size=VOCAB,
            n_embd=32,
            n_layer=2,
            n_head=4,
            n_positions=WINDOW,
            bos_token_id=0,
            eos_token_id=1,
        ),
        "bloom-alibi": lambda: t.BloomConfig(
            vocab_size=VOCAB,
            hidden_size=32,
            n_layer=2,
            n_head=4,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=2,
        ),
        "falcon-alibi": lambda: t.FalconConfig(
            vocab_size=VOCAB,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            alibi=True,
            new_decoder_architecture=False,
            multi_query=False,
            parallel_attn=True,
            bias=True,
            max_position_embeddings=WINDOW,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=2,
        ),
    }


ARCHS = (
    "llama-native", "llama-tied", "llama-rope-linear", "llama-rope-dynamic",
    "llama-rope-llama3", "llama-rope-yarn", "llama-rope-longrope", "mistral-sliding", "mixtral",
    "qwen2", "qwen2-sliding", "qwen2-moe", "qwen3-moe", "gemma", "gemma2", "gemma3-text",
    "phi2", "phi3-longrope", "gpt-neox", "olmo2", "gpt2", "bloom-alibi", "falcon-alibi",
)  # fmt: skip


def build(name: str, out: Path, *, seed: int = 0, scale: float = 0.3) -> tuple[Path, Any]:
    """Write the `name` checkpoint to `out`; also return the model (eager attention, eval)."""
    import torch
    import transformers

    config = _configs()[name]()
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    with torch.no_grad():
        for p in model.parameters():
            # Large weights make attention peaked (mask errors show); norms stay at one.
            if p.dim() >= 2:
                p.normal_(0.0, scale)
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    for f in TOKENIZER_FILES:
        shutil.copy(TOKENIZER_FROM / f, out / f)
    return out, model
