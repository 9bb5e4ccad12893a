"""Reading runs written by older schema versions, explicitly.

Version 2 differs from version 3 only in its manifest, which records no `RunConfig` (`config`
is then None: such a run is read like any other but cannot be rerun from its directory).

Version 1 (every run written before `evalkit.schema`) encoded structure in names: aggregate rows
were `task="family:<name>"`, item subsets were `metric[k=v,...]`, `metric[<language>]` or
`metric[<condition>]`, the primary metric was the first row of a task, and samples.parquet mixed
metric and tag columns. This module is the one place that decodes those names, once, into
`evalkit.schema` values; nothing downstream sees a version-1 encoding. A version this reader does
not know is refused with one line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from evalkit.errors import EvalkitError
from evalkit.schema import (
    SAMPLE_BASE_COLUMNS,
    SCHEMA_VERSION,
    ScoreRow,
    TagValue,
    bucket_key,
    with_primary,
)

V1_FAMILY_PREFIX = "family:"
# niah wrote `recall[len=N]` for items tagged `length`; v2 buckets use the tag's own name.
_V1_BUCKET_KEYS = {"len": "length"}
READABLE = (1, 2, SCHEMA_VERSION)


def check_version(manifest: Mapping[str, Any], where: str) -> int:
    version = manifest.get("schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        raise EvalkitError(f"damaged run directory {where}: schema_version {version!r}")
    if version not in READABLE:
        raise EvalkitError(
            f"run {where} has schema version {version}; this evalkit reads versions "
            f"{', '.join(map(str, READABLE[:-1]))} and {READABLE[-1]} (upgrade evalkit to read it)"
        )
    return version


def upgrade_manifest(manifest: Mapping[str, Any], version: int) -> dict[str, Any]:
    """A manifest of a readable `version` as the current version, one step at a time; the
    original version is kept in `migrated_from`."""
    out = dict(manifest)
    if version == 1:
        out = manifest_v1(out)
    if version <= 2:
        out.setdefault("config", None)  # not recorded before version 3
        out.setdefault("migrated_from", version)
        out["schema_version"] = SCHEMA_VERSION
    return out


def manifest_v1(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """A version-1 manifest as version 2 (`upgrade_manifest` takes it on). v1's `dtype` was the resolved dtype on HF and the
    requested one (possibly "auto") on vLLM; v1 did not record the token budget."""
    out = dict(manifest)
    dtype = out.pop("dtype", None)
    if out.get("backend") == "vllm":
        out["dtype_requested"] = dtype
        out["dtype_resolved"] = None if dtype in (None, "auto") else dtype
    else:
        out["dtype_requested"] = None
        out["dtype_resolved"] = dtype
    out.setdefault("batch_token_budget", None)
    out.setdefault("wave_tokens", None)
    out["migrated_from"] = out.get("schema_version", 1)
    out["schema_version"] = 2
    return out


def score_rows_v1(
    frame: Any, where: str, manifest: Mapping[str, Any] | None = None
) -> tuple[ScoreRow, ...]:
    """Typed rows from a version-1 scores.parquet frame. An aggregate row is an lm-eval
    group's when the manifest's tasks list a group of that name, else a family's."""
    groups = _v1_group_names(manifest or {})
    need = ("task", "family", "metric", "value", "ci_low", "ci_high", "n", "higher_is_better")
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise EvalkitError(f"damaged run directory {where}: scores.parquet lacks {missing}")
    has_method = "ci_method" in frame.columns
    rows = []
    for r in frame.itertuples(index=False):
        name, family = str(r.task), str(r.family)
        level, task, group = "task", name, ""
        if name.startswith(V1_FAMILY_PREFIX):
            scope = name[len(V1_FAMILY_PREFIX) :]
            task = ""
            if scope == family and scope not in groups:
                level = "family"
            else:
                level, group = "group", scope
        label = str(r.metric)
        metric, bucket = split_v1_metric(label)
        rows.append(
            ScoreRow(
                task=task,
                family=family,
                metric=metric,
                value=float(r.value),
                ci_low=float(r.ci_low),
                ci_high=float(r.ci_high),
                n=int(r.n),
                higher_is_better=bool(r.higher_is_better),
                ci_method=str(r.ci_method) if has_method else "",
                level=level,  # type: ignore[arg-type]
                bucket=bucket,
                label=label,
                group=group,
            )
        )
    return tuple(with_primary(rows))


def _v1_group_names(manifest: Mapping[str, Any]) -> set[str]:
    names = set()
    for t in manifest.get("tasks") or ():
        if isinstance(t, Mapping):
            for g in t.get("lmeval_groups") or ():
                if isinstance(g, Mapping) and "name" in g:
                    names.add(str(g["name"]))
    return names


def split_v1_metric(label: str) -> tuple[str, tuple[tuple[str, TagValue], ...]]:
    """`acc[k=4]` -> ('acc', (('k', 4),)); `recall[len=1024,depth=50]` -> ('recall',
    (('length', 1024), ('depth', 50))); `acc[fr]`, `acc_gap_en[fr]` -> language buckets;
    `acc[gold]` -> a label condition; `effective_length[recall>=0.5]` -> its threshold; a name
    without brackets (or lm-eval's `acc,none`) is itself."""
    if not label.endswith("]") or "[" not in label:
        return label, ()
    base, _, inner = label[:-1].partition("[")
    if not base or "[" in inner or "]" in inner or not inner:
        return label, ()
    if base == "effective_length" and inner.startswith("recall>="):
        return base, (("threshold", _number(inner[len("recall>=") :])),)
    if "=" in inner:
        pairs: list[tuple[str, TagValue]] = []
        for part in inner.split(","):
            key, sep, value = part.partition("=")
            if not sep:
                return label, ()
            key = key.strip()
            pairs.append((_V1_BUCKET_KEYS.get(key, key), _number(value.strip())))
        return base, bucket_key(pairs)
    if _is_language(inner):
        return base, (("language", inner),)
    return base, (("condition", inner),)


def _is_language(text: str) -> bool:
    """`en`, `fr`, `zh_Hans`, `pt-BR`: what v1's language rows used (label-probe conditions,
    `gold`, `pct_25`, `flip_50`, are not)."""
    head, _, tail = text.replace("-", "_").partition("_")
    return (
        2 <= len(head) <= 3
        and head.isalpha()
        and head.islower()
        and (not tail or (tail.isalpha() and 2 <= len(tail) <= 4))
    )


def _number(text: str) -> TagValue:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def split_samples_v1(frame: Any, rows: tuple[ScoreRow, ...]) -> tuple[Any, tuple[str, ...]]:
    """A version-1 samples frame (already flat) and its metric columns: those named by a score
    row of the run (v1 did not say which columns were metrics; everything else is a tag)."""
    names = {r.metric for r in rows} | {r.label for r in rows}
    metrics = tuple(c for c in frame.columns if c not in SAMPLE_BASE_COLUMNS and c in names)
    return frame, metrics
