"""manifest.json as typed values (schema version 3): `Manifest`, one field per record, each
record a frozen type (`Hardware`, `Timings`, `RecordedProvenance`, `Routing`...), so readers
(report, catalog, export, analysis) read attributes, never keys. `evalkit.schema` re-exports
these; docs/schema.md lists the fields. Older manifests are upgraded to the current keys by
`evalkit.migrate` before `manifest_from_json` reads them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from evalkit.errors import EvalkitError
from evalkit.manifest_records import (
    ChatTemplate,
    CheckpointRef,
    Hardware,
    Hub,
    RecordedOptions,
    RecordedProvenance,
    Routing,
    Seeds,
    SkippedTask,
    SliceRef,
    Timings,
    Vocabulary,
)
from evalkit.pipeline.config import RunConfig, config_from_dict


@dataclass(frozen=True)
class TaskEntry:
    """A task as the manifest records it. `skipped_items`: items the backend could not feed at
    the model's window; `model_window`: the window a long-context task planned against;
    `notes`: the task's own run facts (haystack, lengths run and skipped...). lm-eval tasks
    also record `output_type`, `num_fewshot` and their `lmeval_groups` (each a
    `evalkit.group_scores.GroupSpec` as a mapping)."""

    name: str
    family: str
    version: str
    n_items: int
    truncated_items: int
    skipped_items: int
    content_hash: str = ""
    source: str = ""
    model_window: int | None = None
    notes: Mapping[str, Any] = field(default_factory=dict)
    output_type: str | None = None
    num_fewshot: int | None = None
    lmeval_groups: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class Manifest(Mapping[str, Any]):
    """The typed view of manifest.json. Readers read its fields; `raw` is the record as read
    (after migration), and the manifest still reads as a read-only mapping of its keys
    (`m["suite"]`, `dict(m)`) for code that passes the whole record on; package code above
    the store does not (tests/test_no_name_parsing.py).

    - `dtype_requested`: what the user asked for ("auto", "bfloat16"...), None when not known.
    - `dtype_resolved`: the dtype the weights ran in, None when the backend does not say (vLLM
      with "auto").
    - `batch_token_budget`: HF's padded tokens per forward batch; None on other backends.
    - `wave_tokens`: vLLM's tokens submitted per wave; None on other backends.
    - `config`: the run's description, re-runnable; None for a run written before version 3.
    - `skipped_tasks`: the tasks the suite left out on this checkpoint, with why.
    - `routing`: an MoE's routing statistics (None: a dense model); `routing_only`: the run
      wrote routing and no scores (`--routing-only`).
    - `migrated_from`: the schema version the run was written in, when older.
    """

    schema_version: int
    evalkit_version: str
    created: str
    checkpoint: str
    backend: str
    model_fingerprint: str | None
    dtype_requested: str | None
    dtype_resolved: str | None
    batch_token_budget: int | None
    wave_tokens: int | None
    suite: str | None
    tasks: tuple[TaskEntry, ...]
    config: RunConfig | None = None
    evalkit_commit: str | None = None
    tokenizer_fingerprint: str | None = None
    hub: Hub | None = None
    max_length: int | None = None
    limit: int | None = None
    truncation: str | None = None
    hardware: Hardware = field(default_factory=Hardware)
    timings: Timings = field(default_factory=Timings)
    seeds: Seeds = field(default_factory=Seeds)
    options: RecordedOptions = field(default_factory=RecordedOptions)
    chat_template: ChatTemplate | None = None
    vocabulary: Vocabulary | None = None
    provenance: RecordedProvenance | None = None
    skipped_tasks: tuple[SkippedTask, ...] = ()
    routing: Routing | None = None
    routing_only: bool = False
    migrated_from: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def task(self, name: str) -> TaskEntry | None:
        return next((t for t in self.tasks if t.name == name), None)

    @property
    def chat(self) -> bool:
        """Whether prompts went through a chat template."""
        return self.chat_template is not None and self.chat_template.applied

    def to_dict(self) -> dict[str, Any]:
        """manifest.json's record (a copy), for writers that pass it on whole (JSON)."""
        return dict(self.raw)

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)


def manifest_from_json(data: Mapping[str, Any], where: str) -> Manifest:
    """The typed manifest of a current-version manifest.json (an error naming `where` if a
    field has the wrong kind). Records a run did not write read as their defaults."""
    try:
        tasks = tuple(_task_entry(t) for t in data.get("tasks") or ())
        return Manifest(
            schema_version=int(data["schema_version"]),
            evalkit_version=str(data.get("evalkit_version", "")),
            created=str(data.get("created", "")),
            checkpoint=str(data.get("checkpoint", "")),
            backend=str(data.get("backend", "")),
            model_fingerprint=_opt_str(data.get("model_fingerprint")),
            dtype_requested=_opt_str(data.get("dtype_requested")),
            dtype_resolved=_opt_str(data.get("dtype_resolved")),
            batch_token_budget=_opt_int(data.get("batch_token_budget")),
            wave_tokens=_opt_int(data.get("wave_tokens")),
            suite=_opt_str(data.get("suite")),
            tasks=tasks,
            config=_config(data.get("config"), where),
            evalkit_commit=_opt_str(data.get("evalkit_commit")),
            tokenizer_fingerprint=_opt_str(data.get("tokenizer_fingerprint")),
            hub=_hub(data.get("hub")),
            max_length=_opt_int(data.get("max_length")),
            limit=_opt_int(data.get("limit")),
            truncation=_opt_str(data.get("truncation")),
            hardware=_hardware(_map(data.get("hardware"))),
            timings=Timings(**_numbers(data.get("timings"), Timings.__dataclass_fields__)),
            seeds=_seeds(_map(data.get("seeds"))),
            options=_options(_map(data.get("options"))),
            chat_template=_chat(data.get("chat_template")),
            vocabulary=_vocabulary(data.get("vocabulary")),
            provenance=_provenance(data.get("provenance")),
            skipped_tasks=skipped_from_json(data.get("skipped_tasks")),
            routing=_routing(data.get("routing")),
            routing_only=bool(data.get("routing_only", False)),
            migrated_from=_opt_int(data.get("migrated_from")),
            raw=dict(data),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise EvalkitError(f"damaged run directory {where}: manifest.json: {exc!r}") from None


def skipped_from_json(raw: Any) -> tuple[SkippedTask, ...]:
    """The skipped tasks a manifest's `skipped_tasks` records (none for runs written before
    the key)."""
    return tuple(
        SkippedTask(str(s["task"]), str(s.get("family", "")), str(s.get("reason", "skipped")))
        for s in raw or ()
    )


def _config(data: Any, where: str) -> RunConfig | None:
    if data is None:
        return None
    try:
        return config_from_dict(data, "manifest.json config")
    except EvalkitError as exc:
        raise EvalkitError(f"damaged run directory {where}: {exc}") from None


def _task_entry(t: Mapping[str, Any]) -> TaskEntry:
    notes = t.get("notes") or {}
    window = t.get("model_window", notes.get("model_window"))
    return TaskEntry(
        name=str(t["name"]),
        family=str(t.get("family", "")),
        version=str(t.get("version", "")),
        n_items=int(t.get("n_items", 0)),
        truncated_items=int(t.get("truncated_items", 0)),
        skipped_items=int(t.get("skipped_items", 0)),
        content_hash=str(t.get("content_hash", "")),
        source=str(t.get("source", "")),
        model_window=_opt_int(window),
        notes=dict(notes),
        output_type=_opt_str(t.get("output_type")),
        num_fewshot=_opt_int(t.get("num_fewshot")),
        lmeval_groups=tuple(dict(g) for g in t.get("lmeval_groups") or ()),
    )


def _map(v: Any) -> Mapping[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise TypeError(f"expected a mapping, got {v!r}")
    return v


def _hub(v: Any) -> Hub | None:
    if v is None:
        return None
    m = _map(v)
    return Hub(str(m["repo_id"]), _opt_str(m.get("revision")), _opt_str(m.get("commit")))


def _hardware(m: Mapping[str, Any]) -> Hardware:
    return Hardware(
        device=_opt_str(m.get("device")),
        platform=_opt_str(m.get("platform")),
        python=_opt_str(m.get("python")),
        cpu_count=_opt_int(m.get("cpu_count")),
        torch=_opt_str(m.get("torch")),
        # An older name of the same fact.
        gpu=_opt_str(m.get("gpu", m.get("gpu_name"))),
    )


def _numbers(v: Any, names: Mapping[str, Any]) -> dict[str, float | None]:
    m = _map(v)
    return {k: None if m.get(k) is None else float(m[k]) for k in names}


def _seeds(m: Mapping[str, Any]) -> Seeds:
    return Seeds(
        _opt_int(m.get("bootstrap")), _opt_int(m.get("fewshot")), _opt_int(m.get("sampling"))
    )


def _options(m: Mapping[str, Any]) -> RecordedOptions:
    kw = m.get("gen_kwargs")
    return RecordedOptions(
        _opt_int(m.get("num_fewshot")), dict(_map(kw)) if kw else None, _opt_int(m.get("seed"))
    )


def _chat(v: Any) -> ChatTemplate | None:
    if v is None or v is False:
        return None
    if v is True:  # an early manifest's flag
        return ChatTemplate()
    m = _map(v)
    single = {str(k): int(n) for k, n in _map(m.get("single_turn_items")).items()}
    multiturn = m.get("fewshot_as_multiturn")
    return ChatTemplate(
        applied=bool(m.get("applied", True)),
        template_sha256=_opt_str(m.get("template_sha256")),
        fewshot_as_multiturn=None if multiturn is None else bool(multiturn),
        system=_opt_str(m.get("system")),
        single_turn_items=single,
    )


def _vocabulary(v: Any) -> Vocabulary | None:
    if v is None:
        return None
    m = _map(v)
    return Vocabulary(int(m["embedding_rows"]), int(m["tokenizer_tokens"]), int(m["padded_rows"]))


def _provenance(v: Any) -> RecordedProvenance | None:
    if v is None:
        return None
    m = _map(v)
    c = _map(m.get("checkpoint"))
    ckpt = CheckpointRef(
        run=_opt_str(c.get("run")),
        step=_opt_int(c.get("step")),
        tokens_seen=_opt_int(c.get("tokens_seen")),
        parent=_opt_str(c.get("parent")),
        mix_id=_opt_str(c.get("mix_id")),
        tuning=_opt_str(c.get("tuning")),
    )
    slices = tuple(_slice(_map(s)) for s in m.get("slices") or ())
    return RecordedProvenance(ckpt, slices, dict(m))


def _slice(m: Mapping[str, Any]) -> SliceRef:
    def num(k: str) -> float | None:
        return None if m.get(k) is None else float(m[k])

    texts = ("source", "license", "language", "domain", "timestamp", "sample_documents")
    return SliceRef(
        name=str(m["name"]),
        tokens=_opt_int(m.get("tokens")),
        share=num("share"),
        quality=num("quality"),
        repeats=num("repeats"),
        **{k: _opt_str(m.get(k)) for k in texts},
    )


def _routing(v: Any) -> Routing | None:
    if v is None:
        return None
    m = _map(v)
    return Routing(
        status=str(m.get("status", "")),
        file=_opt_str(m.get("file")),
        layers=tuple(m.get("layers") or ()),
        experts=_opt_int(m.get("experts")),
        top_k=_opt_int(m.get("top_k")),
        counted=_opt_str(m.get("counted")),
        items=int(m.get("items", 0)),
        slice_documents=int(m.get("slice_documents", 0)),
        recomputed_requests=int(m.get("recomputed_requests", 0)),
        recompute_seconds=float(m.get("recompute_seconds", 0.0)),
        seconds=float(m.get("seconds", 0.0)),
    )


def _opt_str(v: Any) -> str | None:
    return None if v is None else str(v)


def _opt_int(v: Any) -> int | None:
    return None if v is None else int(v)
