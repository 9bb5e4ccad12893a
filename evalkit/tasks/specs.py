"""What every native task spec shares, whatever its kind, written once: the header every task
file has (`load_header`: name, family, version, description, with one-line errors naming the
file) and a task's identity read from its spec (`FromSpec`).

A kind's loader reads its own keys after `load_header`; its task subclasses `FromSpec` (before
`TaskDefaults`) instead of forwarding `name`, `family` and `version` to the spec itself.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.errors import EvalkitError
from evalkit.tasks.base import Identity

HEADER_KEYS = ("name", "family", "version")
COMMON_KEYS = frozenset({*HEADER_KEYS, "description", "kind"})


@dataclass(frozen=True)
class SpecHeader:
    name: str
    family: str
    version: str
    description: str
    source_file: Path


def spec_error(path: Path, message: str) -> EvalkitError:
    return EvalkitError(f"malformed task spec {path}: {message}")


def load_header(
    path: Path,
    raw: Mapping[str, Any],
    *,
    kind: str,
    required: Iterable[str] = (),
    allowed: Collection[str] | None = None,
) -> SpecHeader:
    """The header of the native task file at `path` (parsed as `raw`). Fails naming the file
    when a header key or one of the kind's `required` keys is missing, or, when `allowed` lists
    the kind's own keys, when the file has a key that is neither those nor a common one."""
    for key in (*HEADER_KEYS, *required):
        if key not in raw:
            raise spec_error(path, f"missing required key {key!r}")
    if allowed is not None:
        unknown = set(raw) - COMMON_KEYS - set(allowed)
        if unknown:
            raise spec_error(path, f"unknown key(s) for kind {kind}: {', '.join(sorted(unknown))}")
    return SpecHeader(
        name=str(raw["name"]),
        family=str(raw["family"]),
        version=str(raw["version"]),
        description=str(raw.get("description", "")),
        source_file=path,
    )


class FromSpec:
    """A task built from a spec: its name, family and version are the spec's (one source).
    List it before `TaskDefaults` among a task's bases."""

    spec: Identity

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def family(self) -> str:
        return self.spec.family

    @property
    def version(self) -> str:
        return self.spec.version
