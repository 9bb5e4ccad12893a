"""`contamination`: eval items that overlap the training slices' sample documents; on a stored
run, its scores again on the clean items. The tasks' items are rebuilt (no model) to read their
text, and a run whose stored prompt hashes differ from them is refused."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evalkit.decisions.targets import PathLike
from evalkit.errors import EvalkitError
from evalkit.provenance import find_provenance
from evalkit.tasks.registry import load_suite, resolve_tasks


def contamination(
    target: PathLike,
    *,
    suite: str | None = None,
    tasks: Sequence[str] | None = None,
    tasks_dir: PathLike | None = None,
    n: int | None = None,  # None: per benchmark (GPT-3's rule, `contamination.auto_n`)
    provenance: PathLike | None = None,
    max_documents: int | None = None,
    progress: bool = False,
) -> Any:
    """Flag the eval items of `suite`/`tasks` that overlap the training slices' sample documents
    (`evalkit.analysis.contamination`). `target` is a run directory (then scores are recomputed
    on the clean items) or a checkpoint (flags only). Returns a `ContaminationReport`.
    """
    from evalkit.analysis.contamination import EvalText, contamination_report
    from evalkit.analysis.runs import side_from_run
    from evalkit.provenance import manifest_provenance
    from evalkit.store import is_run, read_run
    from evalkit.tasks.base import text_hash

    p = Path(target)
    run = read_run(p) if is_run(p) else None
    if run is None and not (p / "config.json").is_file():
        raise EvalkitError(f"not a run directory or a checkpoint: {p}")
    if (suite is None) == (not tasks):
        raise EvalkitError("give exactly one of a suite or a list of tasks")
    if provenance is not None:
        prov = find_provenance(p, Path(provenance))
    elif run is not None:
        prov = manifest_provenance(run.manifest, p.name)
    else:
        prov = find_provenance(p, None)
    if prov is None:
        raise EvalkitError(f"{p} has no provenance (give --provenance FILE)")
    names = list(load_suite(suite).tasks) if suite is not None else list(tasks or [])
    task_objs = resolve_tasks(names, Path(tasks_dir) if tasks_dir else None)
    texts: list[EvalText] = []
    prompt_hashes: dict[tuple[str, int], str] = {}
    for task in task_objs:
        for it in task.items():
            texts.append(EvalText(task.name, it.doc_id, f"{it.prompt} {it.target}"))
            prompt_hashes[(task.name, it.doc_id)] = text_hash(it.prompt)
    warnings: list[str] = []
    scores: dict[str, tuple[str, dict[int, float]]] | None = None
    if run is not None:
        side = side_from_run(run)
        scores = {}
        for task in task_objs:
            if task.name not in side.metrics:
                warnings.append(f"run has no task {task.name}: flags only")
                continue
            metric = side.metric(task.name).name
            rows = side.samples[side.samples.task == task.name]
            values: dict[int, float] = {}
            for doc_id, ph, v in zip(rows.doc_id, rows.prompt_hash, rows[metric], strict=True):
                if prompt_hashes.get((task.name, int(doc_id))) != ph:
                    raise EvalkitError(
                        f"{task.name} item {doc_id} in run {p.name} is not the item the task "
                        "builds now (its prompt changed): rescore it"
                    )
                values[int(doc_id)] = float(v)
            scores[task.name] = (metric, values)
    slices = [(s.name, Path(s.sample_documents)) for s in prov.slices if s.sample_documents]
    missing = [s.name for s in prov.slices if not s.sample_documents]
    if missing:
        warnings.append(f"slices without sample documents, not checked: {', '.join(missing)}")
    for name, path in slices:
        if not path.is_file():
            raise EvalkitError(f"slice {name}: sample documents not found: {path}")
    return contamination_report(
        str(p), texts, slices, scores, n=n, max_documents=max_documents, warnings=warnings
    )
