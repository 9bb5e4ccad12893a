"""A checkpoint's data-slice provenance (`provenance.yaml`), kept in every run's manifest.

Schema version 2 (docs/provenance.md). Version 1 files (no `timestamp`, no
`sample_documents`) are read and migrated. Every field is checked, and unknown fields are
errors, so a typo cannot silently drop information; a bad file is one line naming the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from evalkit.errors import EvalkitError
from evalkit.schema import Manifest

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
# Shares are rounded when written; a mix whose shares sum further from 1 than this is wrong.
SHARE_SUM_TOLERANCE = 0.01

_CHECKPOINT_FIELDS = ("run", "step", "tokens_seen", "parent", "mix_id", "tuning")
SLICE_FIELDS = (
    "name",
    "tokens",
    "share",
    "source",
    "license",
    "language",
    "domain",
    "quality",
    "repeats",
    "timestamp",
    "sample_documents",
)


@dataclass(frozen=True)
class CheckpointInfo:
    run: str
    step: int
    tokens_seen: int
    parent: str | None = None
    mix_id: str | None = None
    tuning: str | None = None  # free text: how it was derived from `parent` (tuned, damaged...)


@dataclass(frozen=True)
class SliceInfo:
    name: str
    tokens: int
    share: float
    source: str | None = None
    license: str | None = None
    language: str | None = None
    domain: str | None = None
    quality: float | None = None
    repeats: float | None = None  # epochs over the slice's unique documents
    timestamp: str | None = None
    sample_documents: str | None = None  # absolute path once loaded


@dataclass(frozen=True)
class Provenance:
    checkpoint: CheckpointInfo
    slices: tuple[SliceInfo, ...]
    schema_version: int = SCHEMA_VERSION

    @property
    def shares(self) -> dict[str, float]:
        return {s.name: s.share for s in self.slices}

    def slice(self, name: str) -> SliceInfo:
        for s in self.slices:
            if s.name == name:
                return s
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """The manifest's form: plain data, fields in schema order, absent values omitted."""
        ckpt = {k: getattr(self.checkpoint, k) for k in _CHECKPOINT_FIELDS}
        slices = [
            {k: getattr(s, k) for k in SLICE_FIELDS if getattr(s, k) is not None}
            for s in self.slices
        ]
        return {
            "schema_version": self.schema_version,
            "checkpoint": {k: v for k, v in ckpt.items() if v is not None or k == "parent"},
            "slices": slices,
        }


class _Bad(Exception):
    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field} {why}")


def _str(raw: Mapping[str, Any], key: str, where: str, required: bool = False) -> str | None:
    v = raw.get(key)
    if v is None:
        if required:
            raise _Bad(f"{where}{key}", "is required")
        return None
    if isinstance(v, bool) or not isinstance(v, str | int | float):
        raise _Bad(f"{where}{key}", "must be a string")
    return str(v)


def _num(
    raw: Mapping[str, Any],
    key: str,
    where: str,
    *,
    required: bool = False,
    integer: bool = False,
    low: float | None = 0.0,
    high: float | None = None,
) -> float | None:
    v = raw.get(key)
    field = f"{where}{key}"
    if v is None:
        if required:
            raise _Bad(field, "is required")
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise _Bad(field, "must be a number")
    if integer and float(v) != int(v):
        raise _Bad(field, "must be a whole number")
    if low is not None and v < low:
        raise _Bad(field, f"must be >= {low:g}, got {v}")
    if high is not None and v > high:
        raise _Bad(field, f"must be <= {high:g}, got {v}")
    return float(v)


def _unknown(raw: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in raw:
        if key not in allowed:
            raise _Bad(f"{where}{key}", f"is not a known field ({', '.join(allowed)})")


def _checkpoint(raw: Any) -> CheckpointInfo:
    if not isinstance(raw, dict):
        raise _Bad("checkpoint", "must be a mapping (run, step, tokens_seen, parent, mix_id)")
    _unknown(raw, _CHECKPOINT_FIELDS, "checkpoint.")
    w = "checkpoint."
    step = _num(raw, "step", w, required=True, integer=True)
    seen = _num(raw, "tokens_seen", w, required=True, integer=True)
    assert step is not None and seen is not None
    return CheckpointInfo(
        run=_str(raw, "run", w, required=True) or "",
        step=int(step),
        tokens_seen=int(seen),
        parent=_str(raw, "parent", w),
        mix_id=_str(raw, "mix_id", w),
        tuning=_str(raw, "tuning", w),
    )


def _slice(raw: Any, i: int, base: Path, check_files: bool) -> SliceInfo:
    w = f"slices[{i}]."
    if not isinstance(raw, dict):
        raise _Bad(f"slices[{i}]", "must be a mapping")
    _unknown(raw, SLICE_FIELDS, w)
    name = _str(raw, "name", w, required=True)
    tokens = _num(raw, "tokens", w, required=True, integer=True)
    share = _num(raw, "share", w, required=True, high=1.0)
    assert name is not None and tokens is not None and share is not None
    docs = _str(raw, "sample_documents", w)
    if docs is not None:
        p = Path(docs)
        p = p if p.is_absolute() else (base / p)
        if check_files and not p.is_file():
            raise _Bad(f"{w}sample_documents", f"names a missing file: {p}")
        docs = str(p.resolve() if check_files else p)
    ts = raw.get("timestamp")
    if ts is not None and not isinstance(ts, str):
        ts = str(ts)  # YAML reads an unquoted 2026-01-01 as a date
    return SliceInfo(
        name=name,
        tokens=int(tokens),
        share=share,
        source=_str(raw, "source", w),
        license=_str(raw, "license", w),
        language=_str(raw, "language", w),
        domain=_str(raw, "domain", w),
        quality=_num(raw, "quality", w, low=None),
        repeats=_num(raw, "repeats", w),
        timestamp=ts,
        sample_documents=docs,
    )


def parse_provenance(raw: Any, base: Path, check_files: bool = True) -> Provenance:
    """Validate plain data (a parsed file, or a manifest's copy); relative sample-document paths
    are resolved against `base`, and must exist when `check_files`. Raises `_Bad` naming the
    field."""
    if not isinstance(raw, dict):
        raise _Bad("the file", "must be a mapping")
    _unknown(raw, ("schema_version", "checkpoint", "slices"), "")
    version = raw.get("schema_version", 1)
    if version not in READABLE_VERSIONS:
        raise _Bad("schema_version", f"is {version!r}; this evalkit reads {READABLE_VERSIONS}")
    ckpt = _checkpoint(raw.get("checkpoint"))
    items = raw.get("slices")
    if not isinstance(items, list) or not items:
        raise _Bad("slices", "must be a non-empty list")
    slices: list[SliceInfo] = []
    for i, s in enumerate(items):
        sl = _slice(s, i, base, check_files)
        if any(o.name == sl.name for o in slices):
            raise _Bad(f"slices[{i}].name", f"repeats {sl.name!r}")
        slices.append(sl)
    total = sum(s.share for s in slices)
    if abs(total - 1.0) > SHARE_SUM_TOLERANCE:
        raise _Bad("slices[*].share", f"must sum to 1, sum to {total:.4f}")
    # Version 1 had the same fields minus timestamp and sample_documents: migrating is relabelling.
    return Provenance(checkpoint=ckpt, slices=tuple(slices), schema_version=SCHEMA_VERSION)


def load_provenance(path: Path) -> Provenance:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise EvalkitError(f"cannot read provenance {path}: {type(exc).__name__}") from None
    try:
        return parse_provenance(raw, path.parent)
    except _Bad as exc:
        raise EvalkitError(f"bad provenance {path}: {exc}") from None


def find_provenance(checkpoint: Path, explicit: Path | None) -> Provenance | None:
    if explicit is not None:
        if not explicit.is_file():
            raise EvalkitError(f"provenance file not found: {explicit}")
        return load_provenance(explicit)
    default = checkpoint / "provenance.yaml"
    return load_provenance(default) if default.is_file() else None


def manifest_provenance(manifest: Manifest, label: str = "run") -> Provenance | None:
    """The provenance a run's manifest keeps, validated (None when the checkpoint had none)."""
    if manifest.provenance is None:
        return None
    raw = dict(manifest.provenance.raw)
    try:
        # The documents may have moved since the run; whoever reads them checks then.
        return parse_provenance(raw, Path(manifest.checkpoint or "."), False)
    except _Bad as exc:
        raise EvalkitError(f"bad provenance in {label}'s manifest: {exc}") from None
