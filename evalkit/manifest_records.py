"""The records a manifest holds beside its scalars (`evalkit.manifest.Manifest`'s fields):
each a frozen type, read from manifest.json's sub-objects by `evalkit.manifest`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SkippedTask:
    """A task a suite left out of the run (`evalkit.skips`). `message`: the error's whole text
    (`reason` drops the task's name from it), to tell one cause from several; not recorded."""

    task: str
    family: str
    reason: str
    message: str = field(default="", compare=False, repr=False)

    def to_dict(self) -> dict[str, str]:
        return {"task": self.task, "family": self.family, "reason": self.reason}


@dataclass(frozen=True)
class Hub:
    """The hub snapshot a checkpoint given as `ORG/NAME[@REVISION]` resolved to."""

    repo_id: str
    revision: str | None = None
    commit: str | None = None


@dataclass(frozen=True)
class Hardware:
    """Where the run ran; `gpu` only on a GPU."""

    device: str | None = None
    platform: str | None = None
    python: str | None = None
    cpu_count: int | None = None
    torch: str | None = None
    gpu: str | None = None


@dataclass(frozen=True)
class Timings:
    load_seconds: float | None = None
    run_seconds: float | None = None
    total_seconds: float | None = None


@dataclass(frozen=True)
class Seeds:
    """`bootstrap`: the intervals' seed; `fewshot`/`sampling`: lm-eval's, when given."""

    bootstrap: int | None = None
    fewshot: int | None = None
    sampling: int | None = None


@dataclass(frozen=True)
class RecordedOptions:
    """lm-eval's run options as given (`--num-fewshot`, `--gen-kwargs`, `--seed`)."""

    num_fewshot: int | None = None
    gen_kwargs: Mapping[str, Any] | None = None
    seed: int | None = None


@dataclass(frozen=True)
class ChatTemplate:
    """Prompts went through the tokenizer's chat template: its hash, how few-shot examples were
    shown, the system turn, and per task the items shown as one user turn."""

    applied: bool = True
    template_sha256: str | None = None
    fewshot_as_multiturn: bool | None = None
    system: str | None = None
    single_turn_items: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Vocabulary:
    """An embedding with more (or fewer) rows than the tokenizer has tokens."""

    embedding_rows: int
    tokenizer_tokens: int
    padded_rows: int


@dataclass(frozen=True)
class Routing:
    """An MoE's routing statistics (`evalkit.routing_run`): `status` "collected" (then the
    table is `file` in the run directory) or why not."""

    status: str
    file: str | None = None
    layers: tuple[int | str, ...] = ()  # as the model names them (an index)
    experts: int | None = None
    top_k: int | None = None
    counted: str | None = None
    items: int = 0
    slice_documents: int = 0
    recomputed_requests: int = 0
    recompute_seconds: float = 0.0
    seconds: float = 0.0

    @property
    def collected(self) -> bool:
        return self.status == "collected"


@dataclass(frozen=True)
class CheckpointRef:
    """The provenance's checkpoint as the run recorded it (`evalkit.provenance.CheckpointInfo`
    once validated; a run may record less)."""

    run: str | None = None
    step: int | None = None
    tokens_seen: int | None = None
    parent: str | None = None
    mix_id: str | None = None
    tuning: str | None = None


@dataclass(frozen=True)
class SliceRef:
    """A training-data slice as the run recorded it (`evalkit.provenance.SliceInfo`'s fields,
    `evalkit.provenance.SLICE_FIELDS`; a run may record fewer)."""

    name: str
    tokens: int | None = None
    share: float | None = None
    source: str | None = None
    license: str | None = None
    language: str | None = None
    domain: str | None = None
    quality: float | None = None
    repeats: float | None = None
    timestamp: str | None = None
    sample_documents: str | None = None


@dataclass(frozen=True)
class RecordedProvenance:
    """The checkpoint's provenance as the manifest keeps it: its checkpoint, its slices and the
    record itself, which `evalkit.provenance.manifest_provenance` validates into a
    `Provenance`."""

    checkpoint: CheckpointRef
    slices: tuple[SliceRef, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
