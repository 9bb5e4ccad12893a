"""Contamination: which eval items appear in which training slices, and what that is worth.

An item's text (its prompt, then its answer) is cut into word n-grams. The length n is chosen
per benchmark as in the GPT-3 analysis (Brown et al. 2020, appendix C): the 5th percentile of
the task's item lengths in words, clamped to [8, 13] (a fixed n can still be given); an item
shorter than n words is one gram of its full length. Those grams are hashed into an index, and
each slice's sample documents are streamed past it, one document at a time: memory grows with
the eval items, never with the corpus, so any number of documents can be checked
(benchmarks/contamination_memory.py measures it).

An item is flagged with a slice when the words of the item covered by grams found in that
slice's documents are at least `min_coverage` of the item (token coverage, as Llama 2's
contamination analysis; default 0.5): one shared gram in a long item is not contamination.
Scores are then recomputed on the clean items, and dirty minus clean is reported per task and
per flagging slice (GPT-3, Llama 2). That gap is confounded by item difficulty (the dirty items
may be easier anyway); where a checkpoint trained without the flagging slices exists,
`paired_gain` compares the same items between the two checkpoints instead: the gain on dirty
items minus the gain on clean ones.

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
AUTO_N_RANGE = (8, 13)  # GPT-3's per-benchmark n: the 5th percentile of item length, clamped
DEFAULT_MIN_COVERAGE = 0.5


def auto_n(texts: Sequence[str]) -> int:
    """GPT-3's per-benchmark n-gram length: the 5th percentile of the items' lengths in words,
    clamped to [8, 13]."""
    lengths = [len(words(t)) for t in texts if t.strip()]
    if not lengths:
        return DEFAULT_N
    low, high = AUTO_N_RANGE
    return int(min(high, max(low, int(np.percentile(lengths, 5)))))


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
    """Hashed n-grams of the eval items: gram length -> {hash -> [(item number, start)]}.

    `n` is one length for every item, or one per item (`ns`, e.g. per benchmark)."""

    def __init__(
        self, items: Sequence[EvalText], n: int = DEFAULT_N, ns: Sequence[int] | None = None
    ) -> None:
        if n < 1 or (ns is not None and min(ns, default=1) < 1):
            raise EvalkitError(f"n-gram length must be >= 1, got {n}")
        if ns is not None and len(ns) != len(items):
            raise ValueError("one n per item")
        self.n = n
        self.items = tuple(items)
        self.lengths: list[int] = []  # words per item
        self.by_length: dict[int, dict[int, list[tuple[int, int]]]] = {}
        for i, item in enumerate(self.items):
            w = words(item.text)
            self.lengths.append(len(w))
            if not w:
                continue
            size = min(ns[i] if ns is not None else n, len(w))
            table = self.by_length.setdefault(size, {})
            for start in range(len(w) - size + 1):
                table.setdefault(hash(tuple(w[start : start + size])), []).append((i, start))

    @property
    def grams(self) -> int:
        return sum(len(t) for t in self.by_length.values())

    def covered(self, text: str) -> dict[int, set[int]]:
        """Item number -> the word positions of the item covered by grams found in `text`."""
        w = words(text)
        found: dict[int, set[int]] = {}
        for size, table in self.by_length.items():
            for start in range(len(w) - size + 1):
                hit = table.get(hash(tuple(w[start : start + size])))
                if hit:
                    for i, at in hit:
                        found.setdefault(i, set()).update(range(at, at + size))
        return found

    def matches(self, text: str) -> set[int]:
        """Item numbers sharing at least one gram with `text`."""
        return set(self.covered(text))


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
    min_coverage: float = DEFAULT_MIN_COVERAGE,
) -> tuple[list[set[str]], list[SliceScan]]:
    """Stream every slice's documents past the index: per item, the slices whose documents
    cover at least `min_coverage` of its words (0: any shared gram)."""
    if not 0 <= min_coverage <= 1:
        raise EvalkitError(f"min_coverage must lie in [0, 1], got {min_coverage}")
    flags: list[set[str]] = [set() for _ in index.items]
    scans = []
    for name, path in slices:
        count = 0
        covered: dict[int, set[int]] = {}
        for text in iter_documents(path):
            if max_documents is not None and count >= max_documents:
                break
            count += 1
            for i, positions in index.covered(text).items():
                covered.setdefault(i, set()).update(positions)
            if on_document is not None:
                on_document()
        hit_items = {
            i
            for i, positions in covered.items()
            if positions and len(positions) >= min_coverage * index.lengths[i]
        }
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
    ns: Mapping[str, int] = field(default_factory=dict)  # task -> its n-gram length
    min_coverage: float = DEFAULT_MIN_COVERAGE
    paired: tuple[PairedGain, ...] = ()  # against a clean checkpoint's run, when given

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
                "ns": dict(self.ns),
                "min_coverage": self.min_coverage,
                "items_checked": self.items_checked,
                "slices": [asdict(s) for s in self.slices],
                "rows": [asdict(r) for r in self.rows],
                "flags": [asdict(f) for f in self.flags],
                "paired": [asdict(p) for p in self.paired],
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
    n: int | None = None,
    max_documents: int | None = None,
    on_document: Callable[[], None] | None = None,
    warnings: Sequence[str] = (),
    min_coverage: float = DEFAULT_MIN_COVERAGE,
    clean_scores: Mapping[str, tuple[str, Mapping[int, float]]] | None = None,
) -> ContaminationReport:
    """`n`: one n-gram length for every task; None: per task, `auto_n` of its items."""
    if not slices:
        raise EvalkitError(
            f"{target}: no slice has sample documents (provenance slices[*].sample_documents)"
        )
    per_task: dict[str, int] = {}
    if n is None:
        for task in dict.fromkeys(t.task for t in texts):
            per_task[task] = auto_n([t.text for t in texts if t.task == task])
    ns = [per_task.get(t.task, n or DEFAULT_N) for t in texts]
    index = GramIndex(texts, n or DEFAULT_N, ns)
    flags, scans = scan_slices(
        index,
        slices,
        max_documents=max_documents,
        on_document=on_document,
        min_coverage=min_coverage,
    )
    item_flags = tuple(
        ItemFlag(t.task, t.doc_id, tuple(sorted(f))) for t, f in zip(texts, flags, strict=True) if f
    )
    return ContaminationReport(
        target=target,
        n=n if n is not None else max(ns, default=DEFAULT_N),
        ns=per_task or {t: n or DEFAULT_N for t in dict.fromkeys(x.task for x in texts)},
        min_coverage=min_coverage,
        slices=tuple(scans),
        flags=item_flags,
        rows=tuple(clean_dirty_rows(texts, flags, scores)),
        paired=tuple(paired_gain(texts, flags, scores, clean_scores))
        if scores and clean_scores
        else (),
        items_checked=len(texts),
        warnings=tuple(warnings),
    )


# -- the same items on a contaminated and a clean checkpoint ---------------------------------


@dataclass(frozen=True)
class PairedGain:
    """Per task: how much more the contaminated checkpoint gains over the clean one on the
    dirty items than on the clean items (a difference in differences on the same items, so
    item difficulty cancels)."""

    task: str
    metric: str
    n_dirty: int
    n_clean: int
    gain_dirty: float  # mean(contaminated - clean checkpoint) over the dirty items
    gain_clean: float  # the same over the clean items
    excess: float  # gain_dirty - gain_clean
    ci_low: float
    ci_high: float


def paired_gain(
    texts: Sequence[EvalText],
    flags: Sequence[set[str]],
    contaminated: Mapping[str, tuple[str, Mapping[int, float]]],
    clean: Mapping[str, tuple[str, Mapping[int, float]]],
    *,
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> list[PairedGain]:
    """`contaminated`/`clean`: task -> (metric, doc_id -> per-item value) of a checkpoint
    trained with and one trained without the flagging slices. The interval resamples dirty and
    clean items independently, studentized (as `evalkit.stats.studentized_bootstrap`)."""
    rows: list[PairedGain] = []
    rng = np.random.default_rng(seed)
    for task in dict.fromkeys(t.task for t in texts):
        if task not in contaminated or task not in clean:
            continue
        metric, with_ = contaminated[task]
        _, without = clean[task]
        dirty_d: list[float] = []
        clean_d: list[float] = []
        for t, f in zip(texts, flags, strict=True):
            if t.task != task or t.doc_id not in with_ or t.doc_id not in without:
                continue
            d = with_[t.doc_id] - without[t.doc_id]
            if np.isfinite(d):
                (dirty_d if f else clean_d).append(d)
        if len(dirty_d) < 2 or len(clean_d) < 2:
            continue
        a, b = np.asarray(dirty_d), np.asarray(clean_d)
        excess = float(a.mean() - b.mean())
        se = float(np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size))
        ia = rng.integers(0, a.size, size=(resamples, a.size))
        ib = rng.integers(0, b.size, size=(resamples, b.size))
        ra, rb = a[ia], b[ib]
        se_b = np.sqrt(ra.var(axis=1, ddof=1) / a.size + rb.var(axis=1, ddof=1) / b.size)
        t = (ra.mean(axis=1) - rb.mean(axis=1) - excess) / np.maximum(se_b, 1e-12 + se * 1e-3)
        tail = (1 - level) / 2
        t_lo, t_hi = np.quantile(t, [tail, 1 - tail])
        low, high = (excess - t_hi * se, excess - t_lo * se) if se > 0 else (excess, excess)
        rows.append(
            PairedGain(
                task, metric, a.size, b.size, float(a.mean()), float(b.mean()), excess,
                float(low), float(high),
            )
        )  # fmt: skip
    return rows
