"""The `kind: native` task spec: a small YAML file read into a frozen `TaskSpec` (NativeTask in
native.py builds and scores its items). One field, one meaning; an unknown key, a metric its
request shape cannot compute or a missing template is an error naming the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from evalkit.errors import EvalkitError
from evalkit.tasks.specs import load_header

# The request shape of a `kind: native` task (YAML `request`).
RequestShape = Literal["multiple_choice", "loglikelihood", "rolling", "generate"]
REQUEST_SHAPES: tuple[str, ...] = ("multiple_choice", "loglikelihood", "rolling", "generate")

# Which metrics each request shape can compute (their direction and unit: `M.CATALOG`).
KIND_METRICS: dict[str, tuple[str, ...]] = {
    "multiple_choice": (
        "acc",
        "acc_norm",
        "p_correct",
        "bpb",
        "prob_correct",
        "margin",
        "p_correct_char",
        "margin_char",
    ),
    "loglikelihood": ("acc", "bpb", "logprob"),
    "rolling": ("bpb", "logprob"),
    "generate": ("exact_match",),
}

_COMMON_KEYS = {
    "name",
    "family",
    "version",
    "description",
    "kind",
    "request",
    "docs",
    "fewshot",
    "tags",
    "metrics",
}
_KIND_KEYS: dict[str, set[str]] = {
    "multiple_choice": {"prompt", "choices", "gold", "target_delimiter"},
    "loglikelihood": {"prompt", "continuation"},
    "rolling": {"text"},
    "generate": {"prompt", "target", "stop", "max_tokens", "extract"},
}


@dataclass(frozen=True)
class DocsSpec:
    generator: str | None = None
    seed: int = 0
    n: int = 0
    params: Mapping[str, Any] = field(default_factory=dict)
    path: Path | None = None  # JSONL, one document per line


@dataclass(frozen=True)
class FewShotSpec:
    k: int = 0
    seed: int = 0
    separator: str = "\n\n"
    # Whether --num-fewshot may change k (demonstrations are then drawn as for the spec's k).
    overridable: bool = False


@dataclass(frozen=True)
class ExtractSpec:
    """How a number is read from a generation: the first or last match of an integer/decimal."""

    select: Literal["first", "last"] = "first"


@dataclass(frozen=True)
class TaskSpec:
    name: str
    family: str
    version: str
    request: RequestShape
    docs: DocsSpec
    metrics: tuple[str, ...]
    source_file: Path
    description: str = ""
    prompt: str = ""
    continuation: str = ""
    text: str = ""
    choices: str = ""  # doc field holding the list of choice texts
    gold: str = ""  # doc field holding the gold choice index
    target: str = ""  # template of the expected answer (generate)
    target_delimiter: str = " "
    stop: tuple[str, ...] = ("\n",)
    max_tokens: int = 32
    extract: ExtractSpec | None = None
    fewshot: FewShotSpec = FewShotSpec()
    tags: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        return f"native:{self.request}"


def migrate(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    """The old spelling `kind: <request shape>` read as `kind: native, request: <shape>`
    (documented in docs/tasks.md; the shipped files use the new one)."""
    kind = raw.get("kind")
    if isinstance(kind, str) and kind in REQUEST_SHAPES and "request" not in raw:
        return {**raw, "kind": "native", "request": kind}
    return raw


def _fail(path: Path, message: str) -> EvalkitError:
    return EvalkitError(f"malformed task spec {path}: {message}")


def load_spec(path: Path) -> TaskSpec:
    """The `kind: native` spec in the file at `path` (old spelling accepted, see `migrate`)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise _fail(path, f"invalid YAML{where}") from None
    if not isinstance(raw, dict):
        raise _fail(path, "expected a mapping at the top level")
    return load_spec_raw(path, raw)


def load_spec_raw(path: Path, raw: Mapping[str, Any]) -> TaskSpec:
    """The `kind: native` spec of `raw`, parsed from the file at `path`."""
    raw = migrate(raw)
    if "kind" in raw and raw["kind"] != "native":
        raise _fail(
            path,
            f"kind must be one of native (or, old spelling, {', '.join(REQUEST_SHAPES)}), "
            f"got {raw['kind']!r}",
        )
    head = load_header(path, raw, kind="native", required=("kind", "request", "docs"))
    shape = raw["request"]
    if shape not in REQUEST_SHAPES:
        raise _fail(path, f"request must be one of {', '.join(REQUEST_SHAPES)}, got {shape!r}")
    unknown = set(raw) - _COMMON_KEYS - _KIND_KEYS[shape]
    if unknown:
        raise _fail(path, f"unknown key(s) for request {shape}: {', '.join(sorted(unknown))}")
    docs_raw = raw["docs"]
    if not isinstance(docs_raw, dict):
        raise _fail(path, "'docs' must be a mapping with 'generator' or 'path'")
    if ("generator" in docs_raw) == ("path" in docs_raw):
        raise _fail(path, "'docs' needs exactly one of 'generator' or 'path'")
    docs = DocsSpec(
        generator=docs_raw.get("generator"),
        seed=int(docs_raw.get("seed", 0)),
        n=int(docs_raw.get("n", 0)),
        params=dict(docs_raw.get("params", {}) or {}),
        path=(path.parent / docs_raw["path"]) if "path" in docs_raw else None,
    )
    if docs.generator is not None and docs.n <= 0:
        raise _fail(path, "'docs.n' must be a positive number of documents")
    allowed = KIND_METRICS[shape]
    metrics = tuple(raw.get("metrics") or allowed)
    bad = [m for m in metrics if m not in allowed]
    if bad:
        raise _fail(
            path,
            f"metric(s) {bad} not available for kind native with request {shape} ({', '.join(allowed)})",
        )
    required = {
        "multiple_choice": ("prompt", "choices", "gold"),
        "loglikelihood": ("prompt", "continuation"),
        "rolling": ("text",),
        "generate": ("prompt", "target"),
    }[shape]
    for key in required:
        if not isinstance(raw.get(key), str):
            raise _fail(path, f"request {shape} needs a string {key!r}")
    fewshot_raw = raw.get("fewshot") or {}
    fewshot = FewShotSpec(
        k=int(fewshot_raw.get("k", 0)),
        seed=int(fewshot_raw.get("seed", 0)),
        separator=str(fewshot_raw.get("separator", "\n\n")),
        overridable=bool(fewshot_raw.get("overridable", False)),
    )
    if fewshot.k and shape == "rolling":
        raise _fail(path, "rolling tasks take no few-shot examples")
    extract_raw = raw.get("extract")
    extract = None
    if extract_raw is not None:
        select = extract_raw.get("select", "first") if isinstance(extract_raw, dict) else None
        if select not in ("first", "last"):
            raise _fail(path, "'extract.select' must be 'first' or 'last'")
        extract = ExtractSpec(select=select)
    stop = raw.get("stop", ["\n"])
    if isinstance(stop, str):
        stop = [stop]
    return TaskSpec(
        name=head.name,
        family=head.family,
        version=head.version,
        request=shape,
        docs=docs,
        metrics=metrics,
        source_file=path,
        description=head.description,
        prompt=str(raw.get("prompt", "")),
        continuation=str(raw.get("continuation", "")),
        text=str(raw.get("text", "")),
        choices=str(raw.get("choices", "")),
        gold=str(raw.get("gold", "")),
        target=str(raw.get("target", "")),
        target_delimiter=str(raw.get("target_delimiter", " ")),
        stop=tuple(str(s) for s in stop),
        max_tokens=int(raw.get("max_tokens", 32)),
        extract=extract,
        fewshot=fewshot,
        tags=tuple(str(t) for t in raw.get("tags", []) or []),
    )
