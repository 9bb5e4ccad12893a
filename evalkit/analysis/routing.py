"""Routing statistics of a sparse MoE from per-item expert counts (`routing.parquet`).

Input: for each item (a task item, or a slice's sample document), the number of times each
expert of each MoE layer was chosen at its scored positions (top-k: k choices per token), and
the item's labels (family, task, tags, slice). Output: one long table, one statistic per row.

Per (grouping, group, layer):
- `share` per expert: its fraction of the group's routed choices (sums to 1 over experts);
- `entropy_bits`: entropy of that share (log2 of the number of experts when uniform);
- `load_cv`: coefficient of variation (population SD / mean) of the experts' loads (0: even).
Per (grouping, layer) with two groups or more:
- `mi_bits`: specialisation, the mutual information between the group and the chosen expert
  over all routed choices (plug-in estimate, bits), with a bootstrap interval over items
  (resampled within each group, so group sizes stay fixed; percentile interval shifted back by
  the bootstrap's own bias, so it is about the plug-in estimate's expectation) and a
  permutation null (the
  group labels shuffled across items: `null` is its mean, `p_value` the share of shuffles at
  least as large). A router that ignores the group gives an interval that covers `null`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from evalkit.errors import EvalkitError

ROUTING = "routing.parquet"
COLUMNS = (
    "scope",  # "items" (task items) or "slices" (provenance slices' sample documents)
    "grouping",  # "all", "family", "task", "tag:<name>", "slice"
    "group",  # the group's value ("*" for a grouping-level statistic)
    "layer",
    "expert",  # -1 for a statistic of the whole group
    "stat",  # share | entropy_bits | load_cv | mi_bits
    "value",
    "ci_low",
    "ci_high",
    "null",
    "p_value",
    "choices",  # routed choices counted (tokens x top_k)
    "n_items",
)
# A tag with more distinct values than this (a length in tokens, say) is not a grouping.
MAX_GROUPS = 24
RESAMPLES = 200
LEVEL = 0.95


@dataclass(frozen=True)
class RoutedItem:
    labels: Mapping[str, str]  # grouping -> group
    counts: Any  # numpy int array [layers, experts]


def _entropy_bits(p: Any) -> float:
    import numpy as np

    nz = p[p > 0]
    return float(-(nz * np.log2(nz)).sum())


def mutual_information(joint: Any) -> Any:
    """Plug-in mutual information (bits) of [..., groups, experts] count tables."""
    import numpy as np

    joint = np.asarray(joint, dtype=np.float64)
    total = joint.sum(axis=(-2, -1), keepdims=True)
    p = np.divide(joint, total, out=np.zeros_like(joint), where=total > 0)
    pg = p.sum(axis=-1, keepdims=True)
    pe = p.sum(axis=-2, keepdims=True)
    denom = pg * pe
    ratio = np.divide(p, denom, out=np.ones_like(p), where=(p > 0) & (denom > 0))
    mi = (p * np.log2(ratio)).sum(axis=(-2, -1))
    # Rounding leaves ~1e-16 where the true value is 0 (one expert takes everything).
    return np.where(np.abs(mi) < 1e-12, 0.0, mi)


def specialisation(
    labels: Sequence[str], counts: Any, *, resamples: int = RESAMPLES, seed: int = 0
) -> dict[str, float]:
    """MI between label and expert of [items, experts] counts: point, bootstrap interval over
    items (within labels), permutation null mean and p-value."""
    import numpy as np

    counts = np.asarray(counts, dtype=np.float64)
    names = sorted(set(labels))
    g = np.array([names.index(x) for x in labels])
    onehot = np.eye(len(names))[g]  # [items, groups]
    point = float(mutual_information(onehot.T @ counts))
    rng = np.random.default_rng(seed)
    # Bootstrap weights: each group's items resampled with replacement, group sizes fixed.
    w = np.zeros((resamples, len(labels)))
    for k in range(len(names)):
        idx = np.flatnonzero(g == k)
        w[:, idx] = rng.multinomial(len(idx), np.full(len(idx), 1.0 / len(idx)), size=resamples)
    flat = (onehot[:, :, None] * counts[:, None, :]).reshape(len(labels), -1)
    boot = mutual_information((w @ flat).reshape(resamples, len(names), -1))
    alpha = (1 - LEVEL) / 2
    # Resampling adds the plug-in estimate's upward bias a second time: the percentiles are
    # shifted back by it, so the interval is about the plug-in MI's expectation, which is what
    # the permutation null's mean is under independence.
    shift = float(boot.mean()) - point
    lo_q, hi_q = np.quantile(boot, [alpha, 1 - alpha]) - shift
    # All shuffles at once: [resamples, groups, experts] tables from permuted label columns.
    order = np.argsort(rng.random((resamples, len(labels))), axis=1)
    perms = mutual_information(np.einsum("png,ne->pge", onehot[order], counts))
    return {
        "value": point,
        "ci_low": max(0.0, float(lo_q)),
        "ci_high": max(0.0, float(hi_q)),
        "null": float(perms.mean()),
        "p_value": float((1 + (perms >= point - 1e-12).sum()) / (1 + resamples)),
    }


def routing_table(
    items: Sequence[RoutedItem],
    layers: Sequence[int],
    *,
    scope: str = "items",
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Any:
    """The long statistics table (columns `COLUMNS`) of `items` routed over `layers`."""
    import numpy as np
    import pandas as pd

    rows: list[dict[str, Any]] = []
    if not items:
        return pd.DataFrame(rows, columns=list(COLUMNS))
    stack = np.stack([np.asarray(it.counts) for it in items])  # [items, layers, experts]
    if stack.shape[1] != len(layers):
        raise EvalkitError(f"routing counts have {stack.shape[1]} layers, expected {len(layers)}")
    n_experts = stack.shape[2]
    groupings: list[str] = ["all"]
    for it in items:
        for key in it.labels:
            if key not in groupings:
                groupings.append(key)
    for grouping in groupings:
        if grouping == "all":
            member = list(range(len(items)))
            labels = ["*"] * len(items)
        else:
            member = [i for i, it in enumerate(items) if grouping in it.labels]
            labels = [str(items[i].labels[grouping]) for i in member]
        names = sorted(set(labels))
        if not member or len(names) > MAX_GROUPS:
            continue
        sub = stack[member]
        for name in names:
            mine = sub[[j for j, x in enumerate(labels) if x == name]]
            n_items = int(mine.shape[0])
            for li, layer in enumerate(layers):
                c = mine[:, li, :].sum(axis=0).astype(np.float64)
                total = float(c.sum())
                share = c / total if total > 0 else np.zeros(n_experts)
                base = {"scope": scope, "grouping": grouping, "group": name, "layer": layer}
                base |= {"choices": int(total), "n_items": n_items}
                for e in range(n_experts):
                    rows.append(base | {"expert": e, "stat": "share", "value": float(share[e])})
                mean = c.mean()
                cv = float(c.std() / mean) if mean > 0 else float("nan")
                rows.append(
                    base | {"expert": -1, "stat": "entropy_bits"} | {"value": _entropy_bits(share)}
                )
                rows.append(base | {"expert": -1, "stat": "load_cv", "value": cv})
        if len(names) < 2:
            continue
        for li, layer in enumerate(layers):
            spec = specialisation(labels, sub[:, li, :], resamples=resamples, seed=seed + li)
            rows.append(
                {"scope": scope, "grouping": grouping, "group": "*", "layer": layer}
                | {"expert": -1, "stat": "mi_bits"}
                | {"choices": int(sub[:, li, :].sum()), "n_items": len(member)}
                | spec
            )
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return frame.astype(
        {"layer": "int64", "expert": "int64", "choices": "int64", "n_items": "int64"}
    )
