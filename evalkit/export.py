"""A run directory as lm-eval 0.4 writes its results (`evalkit export RUN --format lmeval`).

lm-eval's `EvaluationTracker` writes `OUT/<model_name_sanitized>/results_<date>.json` and one
`samples_<task>_<date>.jsonl` per task; dashboards and leaderboard scripts find them with
`lm_eval.utils.get_results_filenames` / `get_sample_results_filenames` and read the keys of
`lm_eval.result_schema.EvalResults`. This module writes the same from the run store alone:

- `results[task]`: `name`, `alias`, `sample_len`, and per metric `METRIC,FILTER` with
  `METRIC_stderr,FILTER` (filter `none` for tasks without filters). The stderr of a mean is
  lm-eval's (`mean_stderr`: sample standard deviation over sqrt(n)) from the per-item values;
  other aggregations get "N/A" (lm-eval bootstraps them; evalkit's CI is in scores.parquet).
- lm-eval groups with `aggregate_metric_list` (recorded in the manifest) appear in `results`
  and `groups` with lm-eval's weighting and its pooled (or unweighted-mean) stderr.
- per-sample rows carry what the store keeps: `doc_id`, `target`, the filtered response
  (generations) or per-choice log-likelihoods, `filter`, the metric values. evalkit does not
  keep documents or request arguments, so `doc` and `arguments` are empty, `doc_hash` is empty
  and `prompt_hash` is evalkit's (sha256 of the prompt, first 16 hex digits).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evalkit.errors import EvalkitError
from evalkit.schema import Manifest, ScoreRow
from evalkit.store import RunData, read_run
from evalkit.tasks.groups import GroupSpec, spec_from_dict

FORMATS = ("lmeval",)
_BASE = {"task", "doc_id", "prompt_hash", "loglikelihoods", "prediction", "target", "truncated"}


def _split(metric: str) -> tuple[str, str]:
    """evalkit's metric label as lm-eval's (metric, filter): lm-eval's own `metric,filter`
    key, which evalkit keeps as the metric's name (`evalkit.group_scores.metric_name`)."""
    if "," in metric:
        name, filt = metric.split(",", 1)
        return name, filt
    return metric, "none"


def _finite(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return "N/A"
    return x


def mean_stderr(values: Sequence[float]) -> float | str:
    """The standard error lm-eval reports for a mean: sample sd (n - 1) over sqrt(n)."""
    n = len(values)
    if n < 2:
        return "N/A"
    mu = math.fsum(values) / n
    var = math.fsum((v - mu) ** 2 for v in values) / (n - 1)
    return math.sqrt(var) / math.sqrt(n)


def _per_item(frame: Any, column: str) -> list[float] | None:
    if column not in frame.columns:
        return None
    out = []
    for v in frame[column].tolist():
        if v is None or isinstance(v, list | tuple) or hasattr(v, "__len__"):
            return None
        f = float(v)
        if math.isnan(f):
            continue
        out.append(f)
    return out


def _task_metrics(name: str, rows: Sequence[ScoreRow], frame: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "alias": name, "sample_len": len(frame)}
    for r in rows:
        metric, filt = _split(r.label)
        value = float(r.value)
        # Only a row over all items is the mean of its per-item column.
        values = None if r.bucket else _per_item(frame, r.metric)
        stderr: float | str = "N/A"
        if values and math.isclose(math.fsum(values) / len(values), value, abs_tol=1e-9):
            stderr = mean_stderr(values)
        out[f"{metric},{filt}"] = _finite(value)
        out[f"{metric}_stderr,{filt}"] = _finite(stderr)
    return out


def _group_metrics(
    group: GroupSpec, rows: Sequence[ScoreRow], results: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    from lm_eval.api.metrics import pooled_sample_stderr, unweighted_mean_stderr

    leaves = [n for n in group.leaves if n in results]
    out: dict[str, Any] = {"alias": group.alias or group.name, "name": group.name}
    if not group.aggregate:  # lm-eval reports such a group by name only
        return out
    out["sample_len"] = sum(int(results[n]["sample_len"]) for n in leaves)
    by_metric = {r.label: float(r.value) for r in rows}
    counts: dict[str, int] = {}
    # The filters and weights that produced each row, the last entry winning as in lm-eval.
    weights: dict[str, bool] = {}
    for agg in group.aggregate:
        for metric in by_metric:
            name, filt = _split(metric)
            if name == agg.metric and (agg.filters is None or filt in agg.filters):
                weights[metric] = agg.weight_by_size
    for metric, weighted in weights.items():
        name, filt = _split(metric)
        key, skey = f"{name},{filt}", f"{name}_stderr,{filt}"
        have = [n for n in leaves if key in results[n]]
        stderrs = [results[n][skey] for n in have]
        sizes = [int(results[n]["sample_len"]) for n in have]
        out[key] = _finite(by_metric[metric])
        counts[key] = sum(sizes)
        if have and all(isinstance(s, float) for s in stderrs):
            se = (
                pooled_sample_stderr(stderrs, sizes)
                if weighted
                else unweighted_mean_stderr(stderrs)
            )
            out[skey] = _finite(float(se))
        else:
            out[skey] = "N/A"
    if counts:
        out["sample_count"] = counts
    return out


def _model_name(manifest: Manifest) -> str:
    hub = manifest.hub
    return (hub.repo_id if hub is not None else "") or manifest.checkpoint or "model"


def _date_id(manifest: Manifest) -> str:
    try:
        when = dt.datetime.fromisoformat(manifest.created)
    except ValueError:
        when = dt.datetime.now(dt.timezone.utc)
    return when.replace(tzinfo=None).isoformat().replace(":", "-")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _samples(task: str, frame: Any, metrics: Sequence[str]) -> list[dict[str, Any]]:
    """One row per (document, filter), as lm-eval logs them."""
    by_filter: dict[str, list[str]] = {}
    for m in metrics:
        if m in frame.columns and m not in _BASE:
            by_filter.setdefault(_split(m)[1], []).append(m)
    first = next(iter(by_filter), "none")
    out = []
    for filt, cols in by_filter.items():
        for row in frame.to_dict("records"):
            lls = [
                float(x)
                for x in (
                    row.get("loglikelihoods") if row.get("loglikelihoods") is not None else []
                )
            ]
            if lls:
                resps: list[Any] = [[[repr(x), "N/A"]] for x in lls]
                filtered: list[Any] = [[repr(x), "N/A"] for x in lls]
            else:
                # evalkit keeps the filtered answer of the task's first filter only.
                pred = "" if row.get("prediction") is None else str(row["prediction"])
                resps, filtered = [["N/A"]], [pred if filt == first else "N/A"]
            target = str(row.get("target", ""))
            sample: dict[str, Any] = {
                "doc_id": int(row["doc_id"]),
                "doc": {},
                "target": target,
                "arguments": {},
                "resps": resps,
                "filtered_resps": filtered,
                "filter": filt,
                "metrics": [_split(c)[0] for c in cols],
                "doc_hash": "",
                "prompt_hash": str(row.get("prompt_hash", "")),
                "target_hash": _sha(target),
            }
            for c in cols:
                v = row[c]
                sample[_split(c)[0]] = (
                    [float(x) for x in v] if hasattr(v, "__len__") else _finite(float(v))
                )
            out.append(sample)
    return out


def lmeval_results(run: RunData) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """lm-eval's results dict and per-task sample rows for a run."""
    manifest = run.manifest
    scores, samples = run.rows, run.samples
    entries = {t.name: t for t in manifest.tasks}
    results: dict[str, Any] = {}
    sample_rows: dict[str, list[dict[str, Any]]] = {}
    for name in entries:
        rows = [r for r in scores if r.level == "task" and r.task == name]
        frame = samples[samples["task"] == name]
        results[name] = _task_metrics(name, rows, frame)
        sample_rows[name] = _samples(name, frame, [r.label for r in rows])
    groups: dict[str, GroupSpec] = {}
    for e in entries.values():
        for g in e.lmeval_groups:
            spec = spec_from_dict(g)
            groups.setdefault(spec.name, spec)
    group_results: dict[str, Any] = {}
    for name, spec in groups.items():
        rows = [r for r in scores if r.level == "group" and r.group == name]
        group_results[name] = _group_metrics(spec, rows, results)
    results.update(group_results)

    seed = manifest.seeds.bootstrap or 0
    hub = manifest.hub
    revision = hub.revision if hub is not None else None
    model = _model_name(manifest)
    args = f"pretrained={model}" + (f",revision={revision}" if revision else "")
    out: dict[str, Any] = {
        "results": results,
        "group_subtasks": {
            **{g.name: list(g.children or g.leaves) for g in groups.values()},
            **{n: [] for n in entries if not any(n in g.leaves for g in groups.values())},
        },
        "configs": {
            n: {
                "task": n,
                "output_type": e.output_type,
                "num_fewshot": e.num_fewshot or 0,
                "metadata": {"version": e.version, "source": e.source},
            }
            for n, e in entries.items()
        },
        "versions": {
            **{n: e.version for n, e in entries.items()},
            **{g.name: g.version for g in groups.values()},
        },
        "n-shot": {
            **{n: e.num_fewshot or 0 for n, e in entries.items()},
            **{g.name: 0 for g in groups.values()},
        },
        "higher_is_better": {
            **{n: _better(scores, [n]) for n in entries},
            **{
                g.name: _better(scores, [n for n in g.leaves if n in entries])
                for g in groups.values()
            },
        },
        "n-samples": {
            n: {"original": e.n_items, "effective": e.n_items} for n, e in entries.items()
        },
        "config": {
            "model": f"evalkit-{manifest.backend}",
            "model_args": args,
            "model_dtype": manifest.dtype_resolved,
            "model_revision": revision or "main",
            "model_sha": (hub.commit if hub is not None else None) or "",
            "batch_size": None,
            "batch_sizes": [],
            "device": manifest.hardware.device,
            "use_cache": None,
            "limit": manifest.limit,
            "bootstrap_iters": 0,
            "gen_kwargs": manifest.options.gen_kwargs,
            "random_seed": seed,
            "numpy_seed": seed,
            "torch_seed": seed,
            "fewshot_seed": 1234 if manifest.seeds.fewshot is None else manifest.seeds.fewshot,
        },
        "git_hash": (manifest.evalkit_commit or "")[:7],
        "date": _timestamp(manifest),
        "lm_eval_version": _lm_eval_version(),
        "model_source": "evalkit",
        "model_name": model,
        "model_name_sanitized": _sanitize(model),
        "max_length": manifest.max_length,
        "task_hashes": {n: e.content_hash for n, e in entries.items()},
        "total_evaluation_time_seconds": str(manifest.timings.total_seconds),
    }
    aggregated = {n: r for n, r in group_results.items() if groups[n].aggregate}
    if aggregated:
        out["groups"] = aggregated
    return out, sample_rows


def _better(scores: Sequence[ScoreRow], tasks: Sequence[str]) -> dict[str, bool]:
    """Per metric (without its filter), whether higher is better; a group lists its tasks'."""
    out: dict[str, bool] = {}
    for r in scores:
        if r.level == "task" and r.task in tasks:
            out.setdefault(_split(r.label)[0], bool(r.higher_is_better))
    return out


def _timestamp(manifest: Manifest) -> float:
    try:
        return dt.datetime.fromisoformat(manifest.created).timestamp()
    except ValueError:
        return 0.0


def _lm_eval_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("lm-eval")
    except Exception:
        return None


def _sanitize(name: str) -> str:
    from lm_eval.utils import sanitize_model_name

    return str(sanitize_model_name(name))


def export(run_dir: str | Path, out: str | Path, fmt: str = "lmeval") -> list[Path]:
    """Write the run in `fmt` under `out`; returns the files written."""
    if fmt not in FORMATS:
        raise EvalkitError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    run = read_run(Path(run_dir))
    results, samples = lmeval_results(run)
    folder = Path(out) / str(results["model_name_sanitized"])
    folder.mkdir(parents=True, exist_ok=True)
    date_id = _date_id(run.manifest)
    written = []
    path = folder / f"results_{date_id}.json"
    if path.exists():
        raise EvalkitError(f"{path} already exists (this run was exported there before)")
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False, default=str), "utf-8")
    written.append(path)
    for task, rows in samples.items():
        spath = folder / f"samples_{task}_{date_id}.jsonl"
        spath.write_text(
            "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows), "utf-8"
        )
        written.append(spath)
    return written
