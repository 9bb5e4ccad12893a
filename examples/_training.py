"""What the control-training scripts share (train_induction.py, train_labels.py,
train_controls.py): the tiny Llama they start from, the learning-rate schedules, one optimizer
step, the held-out evaluation log with its stopping rule, and a checkpoint saved with its
`provenance.yaml`.

Each piece does exactly what the scripts did inline before, in the same order of random draws
and floating-point operations, so a script's losses for a given seed are unchanged (checked on
the first 20 steps of each when this module was factored out; docs/controls.md)."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


# -- model and optimisation -----------------------------------------------------------------------


def tiny_llama(
    tokenizer_dir: Path,
    *,
    hidden: int,
    intermediate: int,
    layers: int,
    heads: int,
    max_positions: int = 512,
) -> Any:
    """A fresh Llama with the vocabulary and special ids of the checkpoint in `tokenizer_dir`,
    full multi-head attention and tied embeddings (copying a token means writing back the
    direction it was read from). Seed torch before calling: this draws the initial weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    base = json.loads((tokenizer_dir / "config.json").read_text())
    cfg = LlamaConfig(
        vocab_size=base["vocab_size"],
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
        bos_token_id=base["bos_token_id"],
        eos_token_id=base["eos_token_id"],
        pad_token_id=base["pad_token_id"],
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(cfg)


def linear_warmup(warmup: int) -> Callable[[int], float]:
    """LambdaLR factor: rises linearly to 1 over `warmup` steps, then stays."""
    return lambda step: min(1.0, (step + 1) / warmup)


def warmup_cosine(warmup: int, total: int, floor: float = 0.1) -> Callable[[int], float]:
    """LambdaLR factor: linear warmup, then a cosine from 1 down to `floor` at `total`."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return floor + (1 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def train_step(model: Any, opt: Any, sched: Any, loss: Any, clip: float = 1.0) -> float:
    """Backward, clip the gradient norm, step the optimizer and the schedule; the loss."""
    import torch

    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    sched.step()
    return float(loss.detach())


def evaluate(model: Any, fn: Callable[[Any], Any]) -> Any:
    """`fn(model)` in eval mode, the model back in training mode after."""
    model.eval()
    try:
        return fn(model)
    finally:
        model.train()


# -- the held-out log and when to stop ------------------------------------------------------------


@dataclass
class TrainLog:
    """Rows of held-out measurements, each stamped with wall and CPU seconds since the start
    (on a shared machine CPU time says more about the run than wall time), printed as one
    JSON line and written to `path` (train_log.json) at every row."""

    path: Path | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    t0: float = field(default_factory=time.time)
    c0: float = field(default_factory=time.process_time)

    def seconds(self) -> float:
        return time.time() - self.t0

    def cpu_seconds(self) -> float:
        return time.process_time() - self.c0

    def record(self, row: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(row)
        out["seconds"] = round(self.seconds(), 1)
        out["cpu_seconds"] = round(self.cpu_seconds(), 1)
        self.rows.append(out)
        print(json.dumps(out), flush=True)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.rows, indent=1), encoding="utf-8")
        return out


@dataclass
class Stopper:
    """Stop `after` evaluations past the first that reached the target, or past a wall or
    CPU-time budget."""

    after: int
    max_seconds: float = math.inf
    max_cpu_seconds: float = math.inf
    above: int = 0

    def should_stop(self, reached: bool, log: TrainLog) -> bool:
        if self.above or reached:
            self.above += 1
        return (
            self.above > self.after
            or log.seconds() > self.max_seconds
            or log.cpu_seconds() > self.max_cpu_seconds
        )


# -- checkpoints and provenance -------------------------------------------------------------------


@dataclass(frozen=True)
class SliceInfo:
    """One training slice as provenance.yaml records it (tokens counted by the script)."""

    name: str
    tokens: int
    source: str
    language: str
    domain: str


def mix_id(mix: Mapping[str, float]) -> str:
    """The mixture's id: a hash of its non-zero weights, sorted by slice name."""
    key = ",".join(f"{k}={mix[k]:.6f}" for k in sorted(mix) if mix[k] > 0)
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def provenance(
    run: str,
    step: int,
    slices: Sequence[SliceInfo],
    mix: Mapping[str, float],
    parent: str | None = None,
) -> dict[str, Any]:
    """A provenance.yaml (schema 2) for a checkpoint; slices without tokens are left out."""
    kept = [s for s in slices if s.tokens > 0]
    total = sum(s.tokens for s in kept)
    return {
        "schema_version": 2,
        "checkpoint": {
            "run": run,
            "step": step,
            "tokens_seen": int(total),
            "parent": parent,
            "mix_id": mix_id(mix),
        },
        "slices": [
            {
                "name": s.name,
                "tokens": int(s.tokens),
                "share": round(s.tokens / total, 6),
                "source": s.source,
                "license": "Apache-2.0",
                "language": s.language,
                "domain": s.domain,
                "quality": 1.0,
                "repeats": 1,
            }
            for s in kept
        ],
    }


def copy_tokenizer(tokenizer_dir: Path) -> Callable[[Path], None]:
    """A `save_tokenizer` that copies the tokenizer files of an existing checkpoint."""

    def save_tokenizer(out: Path) -> None:
        for name in TOKENIZER_FILES:
            shutil.copy(tokenizer_dir / name, out / name)

    return save_tokenizer


def save_checkpoint(
    model: Any,
    out: Path,
    prov: Mapping[str, Any],
    save_tokenizer: Callable[[Path], None],
    dtype: str = "float32",
) -> None:
    """Weights (a float16 copy when asked; the training model is left as it is), tokenizer and
    provenance.yaml in `out`."""
    import yaml

    out.mkdir(parents=True, exist_ok=True)
    if dtype == "float16":
        copy.deepcopy(model).half().save_pretrained(out)
    else:
        model.save_pretrained(out)
    save_tokenizer(out)
    (out / "provenance.yaml").write_text(yaml.safe_dump(dict(prov), sort_keys=False), "utf-8")
