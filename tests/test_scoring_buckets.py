"""Per-bucket score rows (k, condition, length, depth) carry their own n and interval."""

from __future__ import annotations

from dataclasses import dataclass

from evalkit.aggregate import summary_scores
from evalkit.stats import CI_WILSON, CI_WILSON_CLUSTER
from evalkit.tasks.base import ItemResult, MetricSpec
from evalkit.tasks.probes.common import Bucket, Summary, group_mean


@dataclass
class _Task:
    name: str = "curve"
    family: str = "icl"
    metrics: tuple[MetricSpec, ...] = (MetricSpec("acc"),)
    summaries: tuple[Summary, ...] = ()


def _results() -> list[ItemResult]:
    out = []
    # k = 0: 10 items (one seed); k = 4: 30 items (3 seeds of the same 10 test documents).
    for k, seeds in ((0, 1), (4, 3)):
        for seed in range(seeds):
            for doc in range(10):
                out.append(
                    ItemResult(
                        doc_id=len(out),
                        prompt_hash="h",
                        loglikelihoods=(),
                        prediction=None,
                        target="t",
                        metrics={"acc": float(k == 0 or doc % 2 == 0)},
                        tags={"k": k, "seed": seed, "test_doc": doc},
                    )
                )
    return out


def test_per_k_rows_carry_their_own_n_and_interval() -> None:
    results = _results()
    summaries = tuple(
        Summary(
            f"acc[k={k}]",
            lambda rs, k=k: group_mean(rs, "acc", "k", k),
            bucket=Bucket("acc", (("k", k),)),
        )
        for k in (0, 4)
    )
    rows = {s.label: s for s in summary_scores(_Task(summaries=summaries), results)}  # type: ignore[arg-type]
    assert rows["acc[k=0]"].n == 10 and rows["acc[k=4]"].n == 30  # not the task's 40
    assert rows["acc[k=0]"].value == 1.0
    # All correct at k = 0: a Wilson interval, not the collapsed [1, 1].
    assert rows["acc[k=0]"].ci_low < 0.8 and rows["acc[k=0]"].ci_high == 1.0
    assert rows["acc[k=0]"].ci_method in (CI_WILSON, CI_WILSON_CLUSTER)
    # k = 4 repeats each test document over 3 seeds: clustered on test_doc.
    assert rows["acc[k=4]"].ci_method == CI_WILSON_CLUSTER
    assert rows["acc[k=4]"].value == 0.5
