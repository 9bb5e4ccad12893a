"""Which scoring path each architecture takes, and with which attention implementation.

The packed path (context once, every continuation as a branch of a tree-shaped 4D mask with
restarted position ids) replaces the mask the model would build for itself, so it is right only
where that replacement is known to keep the model's math. This table says where: an
architecture not in `PACKED` — or one whose config asks for something the packed mask does not
reproduce (ALiBi, an unknown layer type) — is scored unpacked: each (context, continuation) as
its own plain right-padded sequence under the model's own masks. Every run checks the choice
again on its own requests (`guard.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Path_ = Literal["native", "packed", "unpacked"]

# How the packed path's mask reaches an architecture's layers:
#   "plain"       no layer slides; one 4D mask.
#   "all"         every layer slides when `config.sliding_window` is set; one windowed 4D mask.
#   "layer_types" `config.layer_types` names each layer's kind; the model takes a dict of
#                 4D masks keyed by kind (its `causal_mask_mapping`), one per kind.
# Each entry is covered by tests/test_arch_matrix.py.
PACKED: Mapping[str, str] = {
    "llama": "plain",
    "gemma": "plain",
    "gpt2": "plain",
    "gpt_neox": "plain",
    "olmo2": "plain",
    "phi": "plain",
    "mistral": "all",
    "mixtral": "all",
    "phi3": "all",
    "qwen3_moe": "all",
    "qwen2": "layer_types",
    "qwen2_moe": "layer_types",
    "qwen3": "layer_types",
    "gemma2": "layer_types",
    "gemma3_text": "layer_types",
}
# Layer kinds the packed mask reproduces (window or none).
KNOWN_LAYER_TYPES = ("full_attention", "sliding_attention")
# RoPE types whose frequencies depend on the largest position of the forward pass: rows that
# reach past the original length are scored one at a time, as the plain forward would.
LENGTH_DEPENDENT_ROPE = ("dynamic", "longrope")


@dataclass(frozen=True)
class ArchPlan:
    model_type: str
    path: Path_
    attn_implementation: str
    reason: str
    # Layer kind -> sliding window in tokens (None: full attention). One entry "all" when the
    # model takes a single mask.
    windows: Mapping[str, int | None] = field(default_factory=dict)
    # Cross-context prefix reuse (a shared preamble's key/values across batches): only where
    # no layer slides, since sliding caches keep only the window's last tokens.
    prefix_reuse: bool = True
    # Rows whose positions reach past this are scored alone (length-dependent RoPE).
    rope_threshold: int | None = None
    # Unpacked path: "per group" (one context pass, its KV cache reused for every
    # continuation: kv_reuse.py) or "off (why)"; None elsewhere.
    kv_reuse: str | None = None

    @property
    def by_layer_type(self) -> bool:
        return "all" not in self.windows and bool(self.windows)

    def describe(self) -> dict[str, str]:
        """The plan as backend settings (part of the manifest and the cache key)."""
        out = {
            "model_type": self.model_type,
            "path": self.path,
            "attn_implementation": self.attn_implementation,
        }
        windows = {k: v for k, v in self.windows.items() if v is not None}
        if windows:
            out["sliding_windows"] = ",".join(f"{k}={v}" for k, v in sorted(windows.items()))
        if self.rope_threshold is not None:
            out["rope_threshold"] = str(self.rope_threshold)
        if self.kv_reuse is not None:
            out["kv_reuse"] = self.kv_reuse
        return out


def text_config(config: Any) -> Any:
    return getattr(config, "text_config", None) or config


def uses_alibi(config: Any) -> bool:
    cfg = text_config(config)
    kind = getattr(cfg, "model_type", None)
    if kind == "bloom":
        return True
    if getattr(cfg, "alibi", False):  # falcon
        return True
    attn = getattr(cfg, "attn_config", None)  # mpt
    if attn is not None:
        value = attn.get("alibi") if isinstance(attn, Mapping) else getattr(attn, "alibi", None)
        return bool(value)
    return False


def attn_implementation(config: Any) -> str:
    """SDPA unless it would change the model's math: softcapped attention logits (Gemma-2)
    and ALiBi biases are computed as specified only by the eager path."""
    cfg = text_config(config)
    if getattr(cfg, "attn_logit_softcapping", None):
        return "eager"
    if uses_alibi(config):
        return "eager"
    return "sdpa"


def _rope(cfg: Any) -> tuple[str, int | None]:
    params = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
    if not isinstance(params, Mapping):
        params = vars(params)
    if params and all(isinstance(v, Mapping) for v in params.values()):
        # Per layer kind (Gemma-3): the most length-dependent one decides.
        kinds = list(params.values())
    else:
        kinds = [params]
    for p in kinds:
        rope_type = str(p.get("rope_type", p.get("type", "default")) or "default")
        if any(t in rope_type for t in LENGTH_DEPENDENT_ROPE):
            original = p.get("original_max_position_embeddings") or getattr(
                cfg, "original_max_position_embeddings", None
            )
            limit = original or getattr(cfg, "max_position_embeddings", None)
            return rope_type, int(limit) if limit else None
    return "default", None


def plan_for(config: Any, attn: str) -> ArchPlan:
    """The path for a model loaded through transformers with attention `attn`."""
    cfg = text_config(config)
    kind = str(getattr(cfg, "model_type", "") or getattr(config, "model_type", "?"))
    _, threshold = _rope(cfg)

    def unpacked(reason: str) -> ArchPlan:
        return ArchPlan(kind, "unpacked", attn, reason, prefix_reuse=False)

    if uses_alibi(config):
        return unpacked("ALiBi biases come from a key's slot in the row, not its position id")
    how = PACKED.get(kind)
    if how is None:
        return unpacked(f"model_type {kind!r} is not in the packed table")
    window = getattr(cfg, "sliding_window", None)
    window = int(window) if isinstance(window, int) and window > 0 else None
    windows: dict[str, int | None]
    if how == "plain":
        windows = {"all": None}
    elif how == "all":
        windows = {"all": window}
    else:
        types = list(getattr(cfg, "layer_types", None) or [])
        if not types:
            windows = {"all": window}
        else:
            unknown = sorted(set(types) - set(KNOWN_LAYER_TYPES))
            if unknown:
                return unpacked(f"layer types {unknown} are not reproduced by the packed mask")
            if "sliding_attention" in types and window is None:
                return unpacked("sliding layers without a sliding_window")
            windows = {
                t: (window if t == "sliding_attention" else None) for t in sorted(set(types))
            }
    slides = any(v is not None for v in windows.values())
    return ArchPlan(
        kind,
        "packed",
        attn,
        "known to pack exactly" + (" with windowed masks" if slides else ""),
        windows=windows,
        prefix_reuse=not slides,
        rope_threshold=threshold,
    )


def native_plan() -> ArchPlan:
    return ArchPlan("llama", "native", "native-sdpa", "plain-torch Llama decoder", {"all": None})
