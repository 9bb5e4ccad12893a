"""Contamination: which eval items appear in which training slices, and what that is worth.

An item's text (its prompt, then its answer) is cut into word n-grams (13 by default, as in
the GPT-3 analysis; an item shorter than n words is one gram of its full length). Those grams
are hashed into an index, and each slice's sample documents are streamed past it, one document
at a time: memory grows with the eval items, never with the corpus, so any number of documents
can be checked (benchmarks/contamination_memory.py measures it). An item is flagged with every
slice one of whose documents shares a gram with it. Scores are then recomputed on the clean
items, and dirty minus clean is reported per task and per flagging slice (GPT-3, Llama 2).

Words are lower-cased runs of letters/digits, and each punctuation mark is a word of its own,
so "12 + 5 = 17" is five words and formatting whitespace never matters.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evalkit.analysis.jsonsafe import json_safe
from evalkit.errors import EvalkitError

_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)
DEFAULT_N = 13


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def iter_documents(path: Path) -> Iterator[str]:
    """Texts of a sample-documents file, streamed: Dolma JSONL (`{id, text, source, added,
    metadata}`, one per line) when the name has `.jsonl`/`.json`, else plain text where blank
    lines separate documents; either possibly gzipped (`.gz`)."""
    name = path.name.lower()
    opener: Callable[..., Any] = gzip.open if name.endswith(".gz") else open
    is_json = ".jsonl" in name or name.endswith((".json", ".json.gz"))
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            if is_json:
                for lineno, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        doc = json.loads(line)
                    except json.JSONDecodeError:
                        raise EvalkitError(f"{path}:{lineno}: not a JSON document") from None
                    text = doc.get("text") if isinstance(doc, dict) else None
                    if not isinstance(text, str):
                        raise EvalkitError(f"{path}:{lineno}: document has no 'text' string")
                    yield text
                return
            para: list[str] = []
            for line in fh:
                if line.strip():
                    para.append(line)
                elif para:
                    yield "".join(para)
                    para = []
            if para:
                yield "".join(para)
    except OSError as exc:
        raise EvalkitError(f"cannot read sample documents {path}: {exc}") from None


@dataclass(frozen=True)
class EvalText:
    task: str
    doc_id: int
    text: str  # prompt then answer


class GramIndex:
    """Hashed n-grams of the eval items: gram length -> {hash -> item numbers}."""

    def __init__(self, items: Sequence[EvalText], n: int = DEFAULT_N) -> None:
        if n < 1:
            raise EvalkitError(f"n-gram length must be >= 1, got {n}")
        self.n = n
        self.items = tuple(items)
        self.by_length: dict[int, dict[int, list[int]]] = {}
        for i, item in enumerate(self.items):
            w = words(item.text)
            if not w:
                continue
            size = min(n, len(w))
            table = self.by_length.setdefault(size, {})
            for start in range(len(w) - size + 1):
                hits = table.setdefault(hash(tuple(w[start : start + size])), [])
                if not hits or hits[-1] != i:
                    hits.append(i)

    @property
    def grams(self) -> int:
        return sum(len(t) for t in self.by_length.values())

    def matches(self, text: str) -> set[int]:
        """Item numbers sharing at least one gram with `text`."""
        w = words(text)
        found: set[int] = set()
        for size, table in self.by_length.items():
            for start in range(len(w) - size + 1):
                hit = table.get(hash(tuple(w[start : start + size])))
                if hit:
                    found.update(hit)
        return found


@dataclass(frozen=True)
class SliceScan:
    slice: str
    path: str
    documents: int
    flagged_items: int


def scan_slices(
    index: GramIndex,
    slices: Sequence[tuple[str, Path]],
    *,
    max_documents: int | None = None,
    on_document: Callable[[], None] | None = None,
) -> tuple[list[set[str]], list[SliceScan]]:
    """Stream every slice's documents past the index: per item, the slices that overlap it."""
    flags: list[set[str]] = [set() for _ in index.items]
    scans = []
    for name, path in slices:
        count = 0
        hit_items: set[int] = set()
        for text in iter_documents(path):
            if max_documents is not None and count >= max_documents:
                break
            count += 1
            hit_items |= index.matches(text)
            if on_document is not None:
                on_document()
        for i in hit_items:
            flags[i].add(name)
        scans.append(SliceScan(name, str(path), count, len(hit_items)))
    return flags, scans


@dataclass(frozen=True)
class ItemFlag:
    task: str
    doc_id: int
    slices: tuple[str, ...]


@dataclass(frozen=True)
class CleanDirtyRow:
    """One task (slice None: dirty = flagged by any slice) or one task x flagging slice."""

    task: str
    slice: str | None
    metric: str | None
    n_items: int
    n_dirty: int
    score_all: float | None
    score_clean: float | None
    score_dirty: float | None
    dirty_minus_clean: float | None
    ci_low: float | None
    ci_high: float | None


@dataclass(frozen=True)
class ContaminationReport:
    target: str
    n: int
    slices: tuple[SliceScan, ...]
    flags: tuple[ItemFlag, ...]  # flagged items only
    rows: tuple[CleanDirtyRow, ...]
    items_checked: int
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def flagged(self, task: str) -> dict[int, tuple[str, ...]]:
        return {f.doc_id: f.slices for f in self.flags if f.task == task}

    def row(self, task: str, slice_name: str | None = None) -> CleanDirtyRow:
        for r in self.rows:
            if r.task == task and r.slice == slice_name:
                return r
        raise KeyError((task, slice_name))

    def to_dict(self) -> dict[str, Any]:
        out = json_safe(
            {
                "target": self.target,
                "n": self.n,
                "items_checked": self.items_checked,
                "slices": [asdict(s) for s in self.slices],
                "rows": [asdict(r) for r in self.rows],
                "flags": [asdict(f) for f in self.flags],
                "warnings": list(self.warnings),
            }
        )
        assert isinstance(out, dict)
        return out


def _diff_ci(
    dirty: np.ndarray, clean: np.ndarray, level: float, resamples: int, rng: np.random.Generator
) -> tuple[float, float]:
    a = dirty[rng.integers(0, dirty.size, size=(resamples, dirty.size))].mean(axis=1)
    b = clean[rng.integers(0, clean.size, size=(resamples, clean.size))].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(a - b, [alpha, 1 - alpha])
    return float(lo), float(hi)


def _pick(ids: Sequence[int], values: Mapping[int, float], mask: Sequence[bool]) -> np.ndarray:
    """Scores of the masked items that the run scored (a --limit run scores a prefix)."""
    got = [values[i] for i, m in zip(ids, mask, strict=True) if m and i in values]
    return np.array(got, dtype=float)


def _mean(v: np.ndarray) -> float | None:
    return float(v.mean()) if v.size else None


def clean_dirty_rows(
    texts: Sequence[EvalText],
    flags: Sequence[set[str]],
    scores: Mapping[str, tuple[str, Mapping[int, float]]] | None,
    *,
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> list[CleanDirtyRow]:
    """Per task: all/clean/dirty means and dirty minus clean (bootstrap CI), overall and for
    each slice that flags items. `scores`: task -> (metric, doc_id -> per-item value)."""
    rng = np.random.default_rng(seed)
    rows: list[CleanDirtyRow] = []
    tasks = list(dict.fromkeys(t.task for t in texts))
    for task in tasks:
        members = [(t, f) for t, f in zip(texts, flags, strict=True) if t.task == task]
        metric, values = scores[task] if scores and task in scores else (None, {})
        slice_names = sorted({s for _, f in members for s in f})
        groups: list[tuple[str | None, list[bool]]] = [(None, [bool(f) for _, f in members])]
        groups += [(s, [s in f for _, f in members]) for s in slice_names]
        clean_mask = [not f for _, f in members]
        ids = [t.doc_id for t, _ in members]

        for name, dirty_mask in groups:
            n_dirty = sum(dirty_mask)
            if metric is None:
                none: list[Any] = [None] * 6
                rows.append(CleanDirtyRow(task, name, None, len(members), n_dirty, *none))
                continue
            v_all = _pick(ids, values, [True] * len(ids))
            v_clean = _pick(ids, values, clean_mask)
            v_dirty = _pick(ids, values, dirty_mask)
            diff = lo = hi = None
            if v_clean.size and v_dirty.size:
                diff = float(v_dirty.mean() - v_clean.mean())
                lo, hi = _diff_ci(v_dirty, v_clean, level, resamples, rng)
            rows.append(
                CleanDirtyRow(
                    task,
                    name,
                    metric,
                    len(members),
                    n_dirty,
                    _mean(v_all),
                    _mean(v_clean),
                    _mean(v_dirty),
                    diff,
                    lo,
                    hi,
                )
            )
    return rows


def contamination_report(
    target: str,
    texts: Sequence[EvalText],
    slices: Sequence[tuple[str, Path]],
    scores: Mapping[str, tuple[str, Mapping[int, float]]] | None = None,
    *,
    n: int = DEFAULT_N,
    max_documents: int | None = None,
    on_document: Callable[[], None] | None = None,
    warnings: Sequence[str] = (),
) -> ContaminationReport:
    if not slices:
        raise EvalkitError(
            f"{target}: no slice has sample documents (provenance slices[*].sample_documents)"
        )
    index = GramIndex(texts, n)
    flags, scans = scan_slices(index, slices, max_documents=max_documents, on_document=on_document)
    item_flags = tuple(
        ItemFlag(t.task, t.doc_id, tuple(sorted(f))) for t, f in zip(texts, flags, strict=True) if f
    )
    return ContaminationReport(
        target=target,
        n=n,
        slices=tuple(scans),
        flags=item_flags,
        rows=tuple(clean_dirty_rows(texts, flags, scores)),
        items_checked=len(texts),
        warnings=tuple(warnings),
    )
