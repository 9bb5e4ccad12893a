"""A checkpoint's data-slice provenance (`provenance.yaml`), kept in every run's manifest.

Validated enough that a bad file is a clear error naming the field; the full versioned schema
and the joins to results grow from here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from evalkit.errors import EvalkitError

SCHEMA_VERSION = 1
_NUMERIC_SLICE_FIELDS = ("tokens", "share", "quality", "repeats")


def _bad(path: Path, field: str, why: str) -> EvalkitError:
    return EvalkitError(f"bad provenance {path}: {field} {why}")


def load_provenance(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise EvalkitError(f"cannot read provenance {path}: {type(exc).__name__}") from None
    if not isinstance(raw, dict):
        raise _bad(path, "the file", "must be a mapping")
    version = raw.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise _bad(path, "schema_version", f"is {version!r}; this evalkit reads {SCHEMA_VERSION}")
    ckpt = raw.get("checkpoint")
    if not isinstance(ckpt, dict):
        raise _bad(path, "checkpoint", "must be a mapping (run, step, tokens_seen, parent)")
    slices = raw.get("slices")
    if not isinstance(slices, list) or not slices:
        raise _bad(path, "slices", "must be a non-empty list")
    names = set()
    for i, s in enumerate(slices):
        if not isinstance(s, dict) or not isinstance(s.get("name"), str):
            raise _bad(path, f"slices[{i}].name", "is required")
        if s["name"] in names:
            raise _bad(path, f"slices[{i}].name", f"repeats {s['name']!r}")
        names.add(s["name"])
        for key in _NUMERIC_SLICE_FIELDS:
            if key in s and not isinstance(s[key], int | float):
                raise _bad(path, f"slices[{i}].{key}", "must be a number")
    return {"schema_version": SCHEMA_VERSION, **raw}


def find_provenance(checkpoint: Path, explicit: Path | None) -> dict[str, Any] | None:
    if explicit is not None:
        if not explicit.is_file():
            raise EvalkitError(f"provenance file not found: {explicit}")
        return load_provenance(explicit)
    default = checkpoint / "provenance.yaml"
    return load_provenance(default) if default.is_file() else None
