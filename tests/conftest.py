"""Shared fixtures: the bundled tiny checkpoint and a random-init one made on the fly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY_BASE = ROOT / "examples" / "checkpoints" / "tiny-base"

# Tests must never reach for a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def make_random_llama(
    out: Path, *, vocab_size: int = 300, max_position_embeddings: int = 128, seed: int = 0
) -> Path:
    """A random-init tiny Llama with a byte-level BPE tokenizer, in the Hugging Face layout."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    corpus = [
        "The quick brown fox jumps over the lazy dog. " * 3,
        "1 + 2 = 3\n4 + 5 = 9\n7 + 8 = 15\n",
        "def add(x):\n    return x + 1\n",
        "Answer: yes. Answer: no. Question: is it? ",
    ] * 20
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|bos|>", "<|eos|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|bos|>", eos_token="<|eos|>", pad_token="<|pad|>"
    )
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=2,
    )
    model = LlamaForCausalLM(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    fast.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def random_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_random_llama(tmp_path_factory.mktemp("random-llama"))


@pytest.fixture(scope="session")
def tiny_base() -> Path:
    if not (TINY_BASE / "config.json").exists():
        pytest.fail(f"bundled checkpoint missing at {TINY_BASE}")
    return TINY_BASE


@pytest.fixture(scope="session")
def emergence(tmp_path_factory: pytest.TempPathFactory) -> object:
    """`evalkit sweep` + `evalkit report` over the induction-control checkpoints, once a session
    (tests/emergence.py)."""
    from emergence import run_emergence

    return run_emergence(tmp_path_factory.mktemp("emergence"))
