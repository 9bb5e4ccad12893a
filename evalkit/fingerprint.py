"""Stable identities for checkpoints and tokenizers: parts of every cache key and manifest.

Weights up to `FULL_HASH_LIMIT` bytes are hashed whole. Larger files are hashed by their size,
their safetensors header (every tensor's name, dtype, shape and offsets) and 64 KiB samples at
32 evenly spaced offsets: any training step changes every tensor, so a sample catches it without
reading tens of GB.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

FULL_HASH_LIMIT = 512 * 1024 * 1024
_SAMPLE = 64 * 1024
_N_SAMPLES = 32

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
)


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    size = path.stat().st_size
    h.update(f"{path.name}:{size}:".encode())
    with path.open("rb") as f:
        if size <= FULL_HASH_LIMIT:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        else:
            head = f.read(8)
            h.update(head)
            if path.suffix == ".safetensors" and len(head) == 8:
                h.update(f.read(min(int.from_bytes(head, "little"), 100 << 20)))
            for i in range(_N_SAMPLES):
                f.seek((size - _SAMPLE) * i // (_N_SAMPLES - 1))
                h.update(f.read(_SAMPLE))
    return h.hexdigest()


def weights_fingerprint(checkpoint: Path) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in checkpoint.iterdir() if p.suffix in WEIGHT_SUFFIXES)
    for p in files:
        h.update(file_digest(p).encode())
    return h.hexdigest()


def tokenizer_fingerprint(checkpoint: Path) -> str:
    h = hashlib.sha256()
    for name in TOKENIZER_FILES:
        p = checkpoint / name
        if p.is_file():
            h.update(name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def model_fingerprint(checkpoint: Path, tokenizer: str | None = None) -> str:
    """Config, weights and tokenizer. `tokenizer`: its fingerprint when already computed (the
    loaded tokenizer carries it), so the tokenizer files are not hashed twice."""
    h = hashlib.sha256()
    config = checkpoint / "config.json"
    if config.is_file():
        h.update(config.read_bytes())
    h.update(weights_fingerprint(checkpoint).encode())
    h.update((tokenizer or tokenizer_fingerprint(checkpoint)).encode())
    return h.hexdigest()
