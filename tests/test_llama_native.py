"""The plain-torch Llama decoder agrees with transformers' LlamaForCausalLM, and checkpoints it
does not implement fall back to transformers instead of being scored wrongly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from evalkit.backends.base import ScoringGroup
from evalkit.backends.hf import HFBackend
from evalkit.backends.llama_native import KVCache, load_native, native_config
from evalkit.errors import EvalkitError

SHAPES = {
    # grouped-query attention, explicit head_dim, untied head
    "gqa": dict(num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False),
    # multi-head, tied embeddings, another RoPE base
    "mha-tied": dict(
        num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=True, rope_theta=500000.0
    ),
    # one KV head, head_dim different from hidden / heads
    "mqa-headdim": dict(num_attention_heads=2, num_key_value_heads=1, head_dim=24),
}


def _make(out: Path, **overrides: object) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(7)
    config = LlamaConfig(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        max_position_embeddings=64,
        **overrides,  # type: ignore[arg-type]
    )
    model = LlamaForCausalLM(config)
    # Random-init norms are all ones: perturb them so the test sees their weights.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(out)
    return out


def _pair(path: Path) -> tuple[object, torch.nn.Module]:
    from transformers import AutoModelForCausalLM

    shape, why = native_config(path)
    assert shape is not None, why
    native = load_native(path, shape, torch.float32)
    ref = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    return native, ref


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_hidden_states_and_logits_match_transformers(name: str, tmp_path: Path) -> None:
    native, ref = _pair(_make(tmp_path, **SHAPES[name]))
    ids = torch.randint(0, 97, (3, 20))
    with torch.inference_mode():
        out = native(input_ids=ids)  # type: ignore[operator]
        logits = native.get_output_embeddings()(out.last_hidden_state)  # type: ignore[attr-defined]
        expected = ref(ids).logits
    assert torch.allclose(logits, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_masks_positions_and_cached_prefixes_match_transformers(name: str, tmp_path: Path) -> None:
    native, ref = _pair(_make(tmp_path, **SHAPES[name]))
    prefix = torch.randint(0, 97, (1, 12))
    rest = torch.randint(0, 97, (2, 9))
    # A tree mask: tokens 0-2 shared, 3-5 and 6-8 two branches that restart positions at 15.
    q = torch.arange(9)
    branch = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    allowed = (q[None] <= q[:, None]) & ((branch[None] == 0) | (branch[None] == branch[:, None]))
    allowed = torch.cat((torch.ones(9, 12, dtype=torch.bool), allowed), dim=1)
    mask = torch.zeros(2, 1, 9, 21).masked_fill_(~allowed, torch.finfo(torch.float32).min)
    positions = torch.tensor([12, 13, 14, 15, 16, 17, 15, 16, 17]).expand(2, 9)
    with torch.inference_mode():
        cache = native(input_ids=prefix, use_cache=True).past_key_values  # type: ignore[operator]
        assert isinstance(cache, KVCache) and cache.get_seq_length() == 12
        cache.batch_repeat_interleave(2)
        got = native(  # type: ignore[operator]
            input_ids=rest, attention_mask=mask, position_ids=positions, past_key_values=cache
        ).last_hidden_state
        ref_cache = ref.model(input_ids=prefix, use_cache=True).past_key_values
        ref_cache.batch_repeat_interleave(2)
        want = ref.model(
            input_ids=rest, attention_mask=mask, position_ids=positions, past_key_values=ref_cache
        ).last_hidden_state
        # A cached prefix with no mask: plain causal attention behind the prefix.
        plain_cache = native(input_ids=prefix, use_cache=True).past_key_values  # type: ignore[operator]
        plain_cache.batch_repeat_interleave(2)
        got_plain = native(input_ids=rest, past_key_values=plain_cache).last_hidden_state  # type: ignore[operator]
        whole = native(input_ids=torch.cat((prefix.expand(2, 12), rest), 1)).last_hidden_state  # type: ignore[operator]
    assert torch.allclose(got, want, atol=1e-5, rtol=0)
    assert torch.allclose(got_plain, whole[:, 12:], atol=1e-5, rtol=0)


def test_unsupported_checkpoints_fall_back_to_transformers(
    tmp_path: Path, random_ckpt: Path
) -> None:
    ckpt = tmp_path / "scaled"
    ckpt.mkdir()
    for f in random_ckpt.iterdir():
        (ckpt / f.name).write_bytes(f.read_bytes())
    config = json.loads((ckpt / "config.json").read_text())
    config["rope_parameters"] = {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}
    (ckpt / "config.json").write_text(json.dumps(config))
    shape, why = native_config(ckpt)
    assert shape is None and "linear" in why
    backend = HFBackend(ckpt, device="cpu", dtype="float32")
    assert backend.decoder_impl == "transformers"
    assert backend.settings["decoder"] == "transformers"


def test_native_and_transformers_backends_score_alike(tiny_base: Path) -> None:
    native = HFBackend(tiny_base, device="cpu", dtype="float32")
    plain = HFBackend(tiny_base, device="cpu", dtype="float32", native=False)
    assert native.decoder_impl == "native-llama" and plain.decoder_impl == "transformers"
    tok = native.tokenizer
    preamble = tuple(tok.encode("12 + 7 = 19\n3 + 4 = 7\n" * 6))
    groups = [
        ScoringGroup(preamble + tuple(tok.encode(q)), tuple(tuple(tok.encode(c)) for c in cs))
        for q, cs in (("5 + 5 =", (" 10", " 11", " 1 0")), ("8 + 1 =", (" 9", " 19")))
    ]
    for a, b in zip(native.score(groups), plain.score(groups), strict=True):
        for x, y in zip(a, b, strict=True):
            assert x.logprob == pytest.approx(y.logprob, abs=1e-5)
            assert x.token_greedy == y.token_greedy


def test_missing_and_corrupt_weights_are_one_line_errors(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    path = _make(tmp_path / "m", **SHAPES["gqa"])
    shape, _ = native_config(path)
    assert shape is not None
    tensors = load_file(str(path / "model.safetensors"))
    del tensors["model.layers.1.mlp.up_proj.weight"]
    save_file(tensors, str(path / "model.safetensors"))
    with pytest.raises(EvalkitError, match="lack 1 tensors"):
        load_native(path, shape, torch.float32)
    (path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(EvalkitError, match="cannot load weights"):
        load_native(path, shape, torch.float32)


@pytest.mark.parametrize(
    ("patch", "why"),
    [
        ({"model_type": "mistral"}, "model_type"),
        ({"architectures": ["LlamaForSequenceClassification"]}, "architectures"),
        ({"rope_parameters": {"rope_type": "dynamic", "factor": 2.0}}, "RoPE type"),
        ({"rope_parameters": {"rope_type": "llama3", "factor": 8.0}}, "RoPE type"),
        ({"rope_scaling": {"type": "yarn", "factor": 4.0}}, "RoPE type"),
        ({"attention_bias": True}, "attention_bias"),
        ({"mlp_bias": True}, "mlp_bias"),
        ({"hidden_act": "gelu"}, "activation"),
        ({"pretraining_tp": 2}, "pretraining_tp"),
    ],
)
def test_each_unimplemented_feature_is_refused(
    patch: dict[str, object], why: str, tmp_path: Path, random_ckpt: Path
) -> None:
    """The native decoder runs only what it implements; anything else goes to transformers."""
    config = json.loads((random_ckpt / "config.json").read_text())
    config.update(patch)
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes(b"")
    shape, reason = native_config(tmp_path)
    assert shape is None and why in reason


def test_weights_outside_safetensors_are_refused(tmp_path: Path, random_ckpt: Path) -> None:
    (tmp_path / "config.json").write_bytes((random_ckpt / "config.json").read_bytes())
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    shape, reason = native_config(tmp_path)
    assert shape is None and "safetensors" in reason
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert native_config(tmp_path)[0] is not None  # the positive control
