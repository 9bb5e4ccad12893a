"""A plain-torch Llama decoder for the HF backend's scoring path.

Why: importing transformers' modeling stack (modeling_utils, generation, their imports) costs
~2 s of every run on a CPU, more than scoring a small task. Llama-architecture checkpoints — the
bundled ones and most base models — only need a dozen tensor ops, which this module runs in the
same order as transformers' `LlamaModel` with SDPA attention, so the numbers agree with it (and
with lm-eval) to float rounding. Checkpoints with anything this module does not implement (RoPE
scaling, biases, another architecture) are refused by `native_config`, and the backend loads
them through transformers instead. Generation still uses transformers' `generate`, loaded on
first use over the same tensors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.backends.hfconfig import ConfigView, read_config
from evalkit.errors import EvalkitError

WEIGHT_INDEX = "model.safetensors.index.json"
WEIGHT_FILE = "model.safetensors"


@dataclass(frozen=True)
class LlamaShape:
    vocab_size: int
    hidden_size: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    intermediate_size: int
    rms_norm_eps: float
    rope_theta: float
    tie_embeddings: bool


def native_config(checkpoint: Path) -> tuple[LlamaShape | None, str]:
    """The checkpoint's shape when this module can run it exactly, else None and why not."""
    cfg = read_config(checkpoint)
    if cfg.get("model_type") != "llama":
        return None, f"model_type {cfg.get('model_type')!r} is not llama"
    if cfg.get("architectures") not in (None, ["LlamaForCausalLM"]):
        return None, f"architectures {cfg.get('architectures')} is not LlamaForCausalLM"
    rope = cfg.get("rope_parameters") or {}
    scaling = cfg.get("rope_scaling")
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default" or (scaling and scaling.get("rope_type", scaling.get("type"))):
        return None, f"RoPE type {rope_type or scaling!r} is not implemented natively"
    for flag in ("attention_bias", "mlp_bias"):
        if cfg.get(flag):
            return None, f"{flag} is not implemented natively"
    if cfg.get("hidden_act", "silu") != "silu":
        return None, f"activation {cfg.get('hidden_act')!r} is not silu"
    if cfg.get("pretraining_tp", 1) != 1:
        return None, "pretraining_tp > 1 is not implemented natively"
    if not ((checkpoint / WEIGHT_FILE).is_file() or (checkpoint / WEIGHT_INDEX).is_file()):
        return None, "weights are not in safetensors"
    hidden = int(cfg["hidden_size"])
    heads = int(cfg["num_attention_heads"])
    shape = LlamaShape(
        vocab_size=int(cfg["vocab_size"]),
        hidden_size=hidden,
        n_layers=int(cfg["num_hidden_layers"]),
        n_heads=heads,
        n_kv_heads=int(cfg.get("num_key_value_heads") or heads),
        head_dim=int(cfg.get("head_dim") or hidden // heads),
        intermediate_size=int(cfg["intermediate_size"]),
        rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
        rope_theta=float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0))),
        tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
    )
    return shape, ""


@dataclass
class _Output:
    last_hidden_state: Any
    past_key_values: Any


class KVCache:
    """Per-layer keys and values, [batch, kv_heads, seq, head_dim]; the subset of
    transformers' DynamicCache that the backend uses (crop, repeat, length)."""

    def __init__(self, layers: list[tuple[Any, Any]] | None = None) -> None:
        self.layers: list[tuple[Any, Any]] = layers or []

    def get_seq_length(self) -> int:
        return int(self.layers[0][0].shape[2]) if self.layers else 0

    def crop(self, length: int) -> None:
        # As DynamicCache.crop: a negative length removes that many tokens from the end.
        self.layers = [(k[:, :, :length], v[:, :, :length]) for k, v in self.layers]

    def batch_repeat_interleave(self, rows: int) -> None:
        self.layers = [
            (k.repeat_interleave(rows, dim=0), v.repeat_interleave(rows, dim=0))
            for k, v in self.layers
        ]

    def __deepcopy__(self, memo: dict[int, Any]) -> KVCache:
        # Tensors are never written in place (attention concatenates), so sharing is safe.
        return KVCache(list(self.layers))


class NativeLlama:
    """The decoder and head of a LlamaForCausalLM, with transformers' calling conventions for
    the parts the HF backend uses (`get_decoder()(input_ids=…, attention_mask=…, …)`)."""

    def __init__(
        self, checkpoint: Path, shape: LlamaShape, weights: dict[str, Any], config: dict[str, Any]
    ) -> None:
        import torch

        self.checkpoint = checkpoint
        self.shape = shape
        self.config = ConfigView(config)
        self.w = weights
        dim = shape.head_dim
        self._inv_freq = 1.0 / (
            shape.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float) / dim)
        )
        self._generator: Any = None
        self._dtype = weights["model.embed_tokens.weight"].dtype

    # -- the transformers-shaped surface -----------------------------------------------
    def get_decoder(self) -> NativeLlama:
        return self

    def get_output_embeddings(self) -> Any:
        import torch

        weight = self.w["lm_head.weight"]
        return lambda hidden: torch.nn.functional.linear(hidden, weight)

    def to(self, device: Any) -> NativeLlama:
        self.w = {k: v.to(device) for k, v in self.w.items()}
        self._inv_freq = self._inv_freq.to(device)
        return self

    def eval(self) -> NativeLlama:
        return self

    def generate(self, **kwargs: Any) -> Any:
        return self._transformers_model().generate(**kwargs)

    def __call__(
        self,
        input_ids: Any,
        attention_mask: Any = None,
        position_ids: Any = None,
        past_key_values: KVCache | None = None,
        use_cache: bool = False,
    ) -> _Output:
        return self.forward(input_ids, attention_mask, position_ids, past_key_values, use_cache)

    # -- the model ---------------------------------------------------------------------
    def forward(
        self,
        input_ids: Any,
        attention_mask: Any = None,
        position_ids: Any = None,
        past: KVCache | None = None,
        use_cache: bool = False,
    ) -> _Output:
        import torch
        import torch.nn.functional as F

        s, w = self.shape, self.w
        batch, q_len = input_ids.shape
        past_len = past.get_seq_length() if past is not None else 0
        if position_ids is None:
            position_ids = torch.arange(past_len, past_len + q_len, device=input_ids.device)
            position_ids = position_ids[None].expand(batch, q_len)
        hidden = F.embedding(input_ids, w["model.embed_tokens.weight"])
        freqs = position_ids[..., None].float() * self._inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        cos = emb.cos().to(hidden.dtype)[:, None]
        sin = emb.sin().to(hidden.dtype)[:, None]
        mask = attention_mask
        if mask is None and past_len and q_len > 1:
            # Causal with the cached prefix in front: query i sees keys up to past_len + i.
            q_idx = torch.arange(q_len, device=input_ids.device)[:, None]
            k_idx = torch.arange(past_len + q_len, device=input_ids.device)[None, :]
            mask = (k_idx <= q_idx + past_len)[None, None]
        is_causal = mask is None and q_len > 1
        groups = s.n_heads // s.n_kv_heads
        new_layers: list[tuple[Any, Any]] = []
        for i in range(s.n_layers):
            p = f"model.layers.{i}."
            residual = hidden
            x = _rms_norm(hidden, w[p + "input_layernorm.weight"], s.rms_norm_eps)
            q = F.linear(x, w[p + "self_attn.q_proj.weight"])
            k = F.linear(x, w[p + "self_attn.k_proj.weight"])
            v = F.linear(x, w[p + "self_attn.v_proj.weight"])
            q = q.view(batch, q_len, -1, s.head_dim).transpose(1, 2)
            k = k.view(batch, q_len, -1, s.head_dim).transpose(1, 2)
            v = v.view(batch, q_len, -1, s.head_dim).transpose(1, 2)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            if past is not None and past.layers:
                pk, pv = past.layers[i]
                k = torch.cat((pk, k), dim=2)
                v = torch.cat((pv, v), dim=2)
            if use_cache:
                new_layers.append((k, v))
            # As transformers' SDPA path: GQA inside SDPA only without a mask.
            extra: dict[str, Any] = {}
            if groups > 1:
                if mask is None and s.head_dim <= 256:
                    extra["enable_gqa"] = True
                else:
                    k = _repeat_kv(k, groups)
                    v = _repeat_kv(v, groups)
            attn = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=mask,
                dropout_p=0.0,
                scale=s.head_dim**-0.5,
                is_causal=is_causal,
                **extra,
            )
            attn = attn.transpose(1, 2).contiguous().reshape(batch, q_len, -1)
            hidden = residual + F.linear(attn, w[p + "self_attn.o_proj.weight"])
            residual = hidden
            x = _rms_norm(hidden, w[p + "post_attention_layernorm.weight"], s.rms_norm_eps)
            gate = F.silu(F.linear(x, w[p + "mlp.gate_proj.weight"]))
            x = F.linear(
                gate * F.linear(x, w[p + "mlp.up_proj.weight"]), w[p + "mlp.down_proj.weight"]
            )
            hidden = residual + x
        hidden = _rms_norm(hidden, w["model.norm.weight"], s.rms_norm_eps)
        return _Output(hidden, KVCache(new_layers) if use_cache else None)

    def _transformers_model(self) -> Any:
        """transformers' model over these very tensors, built on first use (generation)."""
        if self._generator is None:
            import torch
            import transformers

            model = transformers.AutoModelForCausalLM.from_pretrained(
                str(self.checkpoint),
                local_files_only=True,
                dtype=self._dtype,
                attn_implementation="sdpa",
            )
            device = self.w["model.embed_tokens.weight"].device
            model.to(device)
            model.eval()
            # Point the native decoder at transformers' tensors: one copy of the weights.
            state = model.state_dict()
            with torch.no_grad():
                self.w = {name: state[name] for name in self.w}
            self._generator = model
        return self._generator


def _rms_norm(hidden: Any, weight: Any, eps: float) -> Any:
    import torch

    dtype = hidden.dtype
    x = hidden.to(torch.float32)
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x.to(dtype)


def _rotate_half(x: Any) -> Any:
    import torch

    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _repeat_kv(x: Any, groups: int) -> Any:
    b, h, n, d = x.shape
    return x[:, :, None].expand(b, h, groups, n, d).reshape(b, h * groups, n, d)


def expected_tensors(shape: LlamaShape) -> list[str]:
    names = ["model.embed_tokens.weight", "model.norm.weight"]
    for i in range(shape.n_layers):
        p = f"model.layers.{i}."
        names += [
            p + "input_layernorm.weight",
            p + "post_attention_layernorm.weight",
            *(p + f"self_attn.{n}_proj.weight" for n in "qkvo"),
            *(p + f"mlp.{n}_proj.weight" for n in ("gate", "up", "down")),
        ]
    if not shape.tie_embeddings:
        names.append("lm_head.weight")
    return names


def load_native(checkpoint: Path, shape: LlamaShape, dtype: Any) -> NativeLlama:
    """Read the safetensors weights (sharded or not) and check every tensor is there."""
    from safetensors.torch import load_file

    files = [checkpoint / WEIGHT_FILE]
    if not files[0].is_file():
        index = json.loads((checkpoint / WEIGHT_INDEX).read_text())
        files = [checkpoint / f for f in sorted(set(index["weight_map"].values()))]
    weights: dict[str, Any] = {}
    for f in files:
        try:
            weights.update(load_file(str(f)))
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise EvalkitError(f"cannot load weights from {checkpoint}: {first}") from None
    needed = expected_tensors(shape)
    missing = [n for n in needed if n not in weights]
    if missing:
        raise EvalkitError(
            f"weights in {checkpoint} lack {len(missing)} tensors (e.g. {missing[0]}): "
            "refusing to score a partly random model"
        )
    kept = {n: weights[n].to(dtype) for n in needed}
    if shape.tie_embeddings:
        kept["lm_head.weight"] = kept["model.embed_tokens.weight"]
    return NativeLlama(checkpoint, shape, kept, read_config(checkpoint))
