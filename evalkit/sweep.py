"""Many checkpoints at once: one Ray task per (checkpoint, suite), resumable, with retries.

Each job calls `evalkit.api.score` exactly as `evalkit score` does, into
`OUT/<checkpoint name>`, so a sweep's runs equal single-process runs. A checkpoint whose run is
already complete in OUT is skipped, which makes a sweep idempotent and resumable. A job that
raises or whose worker dies is retried by Ray up to `retries` times, then reported as failed;
the other jobs go on. `watch` polls a training run's checkpoint folder and scores each new
checkpoint once it is complete and no longer changing, optionally gating it against the one
before. Bookkeeping (attempt counts, gate verdicts) lives in `OUT/.sweep/`, which no catalog or
`evalkit runs` ever reads as a run.
"""

from __future__ import annotations

import contextlib
import glob
import inspect
import json
import os
import re
import shutil
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from evalkit.errors import EvalkitError
from evalkit.store import is_run, read_manifest

Status = Literal["done", "skipped", "failed"]
BOOKKEEPING = ".sweep"
# Test hook: the job for the checkpoint of this name SIGKILLs its own worker on its first
# attempt (read by the driver, so it reaches workers on any cluster). Nothing else uses it.
CRASH_ENV = "EVALKIT_SWEEP_TEST_CRASH"
_WEIGHT_GLOBS = ("*.safetensors", "*.bin", "*.pt", "*.pth")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")
# What `evalkit.api.score` takes from the sweep itself; everything else may pass through.
_OWN_ARGS = frozenset({"checkpoint", "out", "progress", "suite", "tasks", "backend", "device"})


@dataclass(frozen=True)
class SweepJob:
    checkpoint: Path  # resolved
    run_dir: Path  # resolved, OUT/<name>
    name: str


@dataclass(frozen=True)
class SweepOptions:
    """How every job scores its checkpoint, and what it asks Ray for."""

    suite: str | None = None
    tasks: tuple[str, ...] = ()
    backend: str = "auto"
    device: str = "auto"
    gpus_per_job: float = 0.0
    cpus_per_job: float = 1.0
    retries: int = 2
    # Keyword arguments passed unchanged to `evalkit.api.score` (limit, dtype, cache_dir,
    # backend options such as a vLLM backend's parallelism, ...).
    score_kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobOutcome:
    """What one job reports back (also what Ray returns from the worker)."""

    status: Status
    seconds: float
    error: str | None = None


@dataclass(frozen=True)
class JobResult:
    job: SweepJob
    status: Status
    attempts: int
    seconds: float
    error: str | None = None
    step: int | None = None
    gate: str | None = None  # gate outcome against the previous checkpoint, when gated
    gate_baseline: str | None = None


@dataclass(frozen=True)
class SweepReport:
    out: Path
    results: tuple[JobResult, ...]

    @property
    def failed(self) -> tuple[JobResult, ...]:
        return tuple(r for r in self.results if r.status == "failed")

    @property
    def regressions(self) -> tuple[JobResult, ...]:
        """Checkpoints whose gate found a regression (or could not be evaluated)."""
        return tuple(r for r in self.results if r.gate in ("regression", "error"))

    @property
    def exit_code(self) -> int:
        """0: every job has a complete run and no gate failed; 1 otherwise."""
        return 1 if self.failed or self.regressions else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "exit_code": self.exit_code,
            "jobs": [
                {
                    "checkpoint": str(r.job.checkpoint),
                    "name": r.job.name,
                    "run": str(r.job.run_dir),
                    "status": r.status,
                    "attempts": r.attempts,
                    "seconds": round(r.seconds, 3),
                    "step": r.step,
                    "error": r.error,
                    "gate": r.gate,
                    "gate_baseline": r.gate_baseline,
                }
                for r in self.results
            ],
        }


# -- checkpoints ---------------------------------------------------------------------------


def _natural_key(name: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


def checkpoint_step(checkpoint: Path) -> int | None:
    """The training step from the checkpoint's provenance.yaml, if it has a readable one."""
    import yaml

    try:
        raw = yaml.safe_load((checkpoint / "provenance.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    ckpt = raw.get("checkpoint") if isinstance(raw, dict) else None
    step = ckpt.get("step") if isinstance(ckpt, dict) else None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def order_key(checkpoint: Path) -> tuple[Any, ...]:
    """Training order: by provenance step where known, else by the name's numbers."""
    step = checkpoint_step(checkpoint)
    return (0, step, "") if step is not None else (1, 0, _natural_key(checkpoint.name))


def looks_complete(checkpoint: Path) -> bool:
    """config.json, a tokenizer, and weights: every shard a weights index names, or one file."""
    if not (checkpoint / "config.json").is_file():
        return False
    if not any((checkpoint / f).is_file() for f in _TOKENIZER_FILES):
        return False
    indexes = sorted(checkpoint.glob("*.index.json"))
    if indexes:
        for index in indexes:
            try:
                shards = set(json.loads(index.read_text())["weight_map"].values())
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                return False  # still being written
            if not shards or not all((checkpoint / s).is_file() for s in shards):
                return False
        return True
    return any(any(checkpoint.glob(g)) for g in _WEIGHT_GLOBS)


def signature(checkpoint: Path) -> tuple[tuple[str, int, int], ...]:
    """(path, size, mtime) of every file: equal twice, `settle` seconds apart, means stable."""
    out = []
    for p in sorted(checkpoint.rglob("*")):
        with contextlib.suppress(OSError):
            st = p.stat()
            if p.is_file():
                out.append((str(p.relative_to(checkpoint)), st.st_size, st.st_mtime_ns))
    return tuple(out)


def expand_checkpoints(specs: Sequence[str | Path]) -> list[Path]:
    """Checkpoint directories from paths and glob patterns, in training order, no repeats."""
    found: dict[Path, None] = {}
    for spec in specs:
        text = str(spec)
        matches = sorted(glob.glob(text)) if glob.has_magic(text) else [text]
        if not matches:
            raise EvalkitError(f"no checkpoint matches {text}")
        for m in matches:
            p = Path(m)
            if not (p / "config.json").is_file():
                if glob.has_magic(text):
                    continue  # a glob may sweep over other files too
                raise EvalkitError(f"not a checkpoint directory (no config.json): {p}")
            found.setdefault(p.resolve(), None)
    if not found:
        raise EvalkitError("no checkpoint directories given")
    return sorted(found, key=order_key)


def plan_jobs(checkpoints: Sequence[Path], out: Path) -> list[SweepJob]:
    """One job per checkpoint, its run at OUT/<name>; clashing names get their parent's name."""
    out = out.resolve()
    names = [c.name for c in checkpoints]
    jobs = []
    used: set[str] = set()
    for c in checkpoints:
        name = c.name if names.count(c.name) == 1 else f"{c.parent.name}-{c.name}"
        if name in used or name.startswith("."):
            raise EvalkitError(f"cannot name a run for {c} uniquely in {out}")
        used.add(name)
        jobs.append(SweepJob(checkpoint=c, run_dir=out / name, name=name))
    return jobs


def _existing(job: SweepJob, options: SweepOptions) -> bool:
    """True when OUT already holds this job's complete run; an unrelated run there is an error."""
    if not is_run(job.run_dir):
        return False
    m = read_manifest(job.run_dir)
    want = (str(job.checkpoint), options.suite, options.score_kwargs.get("limit"))
    have = (m.get("checkpoint"), m.get("suite"), m.get("limit"))
    if options.suite is None:
        want = (want[0], ",".join(options.tasks), want[2])
        have = (have[0], ",".join(t["name"] for t in m.get("tasks", [])), have[2])
    if want != have:
        raise EvalkitError(
            f"{job.run_dir} holds a run of {have[0]} ({have[1]}, limit {have[2]}), not of "
            f"{job.checkpoint} ({want[1]}, limit {want[2]}): choose another --out"
        )
    return True


# -- the job (runs on a Ray worker) ------------------------------------------------------------


def _attempts_file(job: SweepJob) -> Path:
    return job.run_dir.parent / BOOKKEEPING / f"{job.name}.attempts"


def attempts(job: SweepJob) -> int:
    try:
        return len(_attempts_file(job).read_text().splitlines())
    except OSError:
        return 0


def _die_after_first_cached_batch() -> None:
    """Test hook (CRASH_ENV): SIGKILL this worker as soon as the job's first batch of results
    is committed to the result cache, i.e. mid-way through scoring, before any run is written.
    The worker dies with the patch; no other job ever runs under it."""
    from evalkit.cache import ResultCache

    original = ResultCache.put_many

    def put_then_die(self: ResultCache, items: Mapping[str, Any]) -> None:
        original(self, items)
        os.kill(os.getpid(), signal.SIGKILL)

    setattr(ResultCache, "put_many", put_then_die)  # noqa: B010


def run_job(job: SweepJob, options: SweepOptions, crash_first_attempt: bool = False) -> JobOutcome:
    """Score one checkpoint into its run directory (the body of a sweep's Ray task)."""
    from evalkit.api import score

    started = time.time()
    marker = _attempts_file(job)
    marker.parent.mkdir(parents=True, exist_ok=True)
    with marker.open("a") as fh:
        fh.write(f"{os.getpid()} {started:.3f}\n")
    if crash_first_attempt and attempts(job) == 1:
        if options.score_kwargs.get("use_cache", True):
            _die_after_first_cached_batch()
        else:
            os.kill(os.getpid(), signal.SIGKILL)
    if is_run(job.run_dir):
        return JobOutcome("skipped", time.time() - started)  # an earlier attempt finished it
    # A worker killed while writing leaves a hidden staging folder; it is never a run.
    for stale in job.run_dir.parent.glob(f".{job.name}.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)
    device = options.device
    if device == "auto":
        # Ray decides what this task may use: no GPUs asked for means CPU.
        device = "cuda" if options.gpus_per_job > 0 else "cpu"
    try:
        score(
            job.checkpoint,
            suite=options.suite,
            tasks=list(options.tasks) or None,
            backend=options.backend,
            device=device,
            out=job.run_dir,
            progress=False,
            **dict(options.score_kwargs),
        )
    except EvalkitError as exc:
        # The user's input is wrong: retrying cannot help.
        return JobOutcome("failed", time.time() - started, str(exc))
    return JobOutcome("done", time.time() - started)


# -- Ray ---------------------------------------------------------------------------------------


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise EvalkitError("evalkit sweep needs Ray: pip install 'evalkit[sweep]'") from None
    return ray


@contextlib.contextmanager
def ray_session(
    address: str | None, num_cpus: int | None, runtime_env: Mapping[str, Any] | None
) -> Iterator[None]:
    """Use the Ray already initialized in this process, or connect/start one and stop it after."""
    ray = _ray()

    if ray.is_initialized():
        yield
        return
    kwargs: dict[str, Any] = {"include_dashboard": False}
    if runtime_env:
        kwargs["runtime_env"] = dict(runtime_env)
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=num_cpus, **kwargs)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = address or "a local Ray instance"
        raise EvalkitError(f"cannot start or reach Ray at {where}: {exc}") from None
    try:
        yield
    finally:
        ray.shutdown()


def _error_line(exc: BaseException) -> str:
    """One line for a job whose retries ran out: the original error, not Ray's wrapper."""
    cause = getattr(exc, "cause", None)
    base = cause if isinstance(cause, BaseException) else exc
    lines = [ln.strip() for ln in str(base).splitlines() if ln.strip()]
    return f"{type(base).__name__}: {lines[0] if lines else ''}"[:300]


class _Scheduler:
    """Submits jobs as Ray tasks and collects them; shared by `sweep` and `watch`."""

    def __init__(self, options: SweepOptions) -> None:
        self.options = options
        self.remote: Any = None  # made on the first submit, inside a Ray session
        self.crash_name = os.environ.get(CRASH_ENV)
        self.pending: dict[Any, SweepJob] = {}
        self.results: dict[Path, JobResult] = {}

    def submit(self, job: SweepJob) -> None:
        if self.remote is None:
            self.remote = (
                _ray()
                .remote(run_job)
                .options(
                    num_cpus=self.options.cpus_per_job,
                    num_gpus=self.options.gpus_per_job,
                    max_retries=self.options.retries,
                    retry_exceptions=True,
                )
            )
        _attempts_file(job).unlink(missing_ok=True)
        ref = self.remote.remote(job, self.options, job.checkpoint.name == self.crash_name)
        self.pending[ref] = job

    def record(
        self,
        job: SweepJob,
        status: Status,
        seconds: float,
        error: str | None,
        n_attempts: int | None = None,
    ) -> None:
        self.results[job.checkpoint] = JobResult(
            job=job,
            status=status,
            attempts=attempts(job) if n_attempts is None else n_attempts,
            seconds=seconds,
            error=error,
            step=checkpoint_step(job.checkpoint),
        )

    def collect(self, timeout: float) -> list[JobResult]:
        """Wait up to `timeout` seconds for jobs to finish; return those that did."""
        import ray

        if not self.pending:
            return []
        ready, _ = ray.wait(list(self.pending), num_returns=len(self.pending), timeout=timeout)
        finished = []
        for ref in ready:
            job = self.pending.pop(ref)
            try:
                outcome: JobOutcome = ray.get(ref)
                self.record(job, outcome.status, outcome.seconds, outcome.error)
            except Exception as exc:  # retries exhausted: a crash or an unexpected error
                self.record(job, "failed", 0.0, _error_line(exc))
            finished.append(self.results[job.checkpoint])
        return finished

    def running(self) -> int:
        return sum(1 for job in self.pending.values() if attempts(job) > 0)


def _validate(options: SweepOptions) -> None:
    from evalkit.api import score

    if (options.suite is None) == (not options.tasks):
        raise EvalkitError("give exactly one of --suite or --tasks")
    if options.retries < 0:
        raise EvalkitError(f"retries must be >= 0, got {options.retries}")
    if options.gpus_per_job < 0 or options.cpus_per_job <= 0:
        raise EvalkitError("--gpus-per-job must be >= 0 and --cpus-per-job > 0")
    known = set(inspect.signature(score).parameters) - _OWN_ARGS
    unknown = sorted(set(options.score_kwargs) - known)
    if unknown:
        raise EvalkitError(
            f"unknown score option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    limit = options.score_kwargs.get("limit")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise EvalkitError(f"--limit must be a positive integer, got {limit!r}")


def default_gpus(backend: str, device: str) -> float:
    """GPUs a job asks for when not told: one for a GPU backend or device, none otherwise
    (vLLM's CPU build with `--device cpu` needs none)."""
    return 1.0 if (backend == "vllm" and device != "cpu") or device.startswith("cuda") else 0.0


# -- gating ---------------------------------------------------------------------------------


def _gate_pending(
    order: Sequence[Path],
    scheduler: _Scheduler,
    gated: set[Path],
    policy: Any,
    out: Path,
) -> None:
    """Gate each finished checkpoint against the nearest earlier one with a complete run."""
    from evalkit.api import gate

    for i, ckpt in enumerate(order):
        res = scheduler.results.get(ckpt)
        if res is None or ckpt in gated or res.status == "failed":
            continue
        baseline: JobResult | None = None
        waiting = False
        for prev in reversed(order[:i]):
            pres = scheduler.results.get(prev)
            if pres is None:
                waiting = True  # the one before is still being scored
                break
            if pres.status != "failed":
                baseline = pres
                break
        if waiting:
            continue
        gated.add(ckpt)
        if baseline is None:
            continue  # the first checkpoint has nothing to be gated against
        try:
            verdict = gate(baseline.job.run_dir, res.job.run_dir, policy)
        except EvalkitError as exc:
            outcome, detail = "error", {"error": str(exc)}
        else:
            outcome, detail = verdict.outcome, verdict.to_dict()
        gate_dir = out / BOOKKEEPING / "gates"
        gate_dir.mkdir(parents=True, exist_ok=True)
        (gate_dir / f"{res.job.name}.json").write_text(json.dumps(detail, indent=2) + "\n")
        scheduler.results[ckpt] = replace(
            res,
            gate=outcome,
            gate_baseline=baseline.job.name,
            error=res.error if outcome != "error" else str(detail.get("error")),
        )


# -- progress -------------------------------------------------------------------------------


@contextlib.contextmanager
def _progress(enabled: bool, total: int, label: str) -> Iterator[Callable[..., None]]:
    if not enabled:
        yield lambda **_: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[state]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(label, total=total or None, state="")

        def update(**counts: int) -> None:
            finished = counts.get("done", 0) + counts.get("skipped", 0) + counts.get("failed", 0)
            state = " · ".join(f"{k} {v}" for k, v in counts.items())
            bar.update(task, completed=finished, total=counts.get("total") or None, state=state)

        yield update


def _counts(scheduler: _Scheduler, total: int) -> dict[str, int]:
    statuses = [r.status for r in scheduler.results.values()]
    running = scheduler.running()
    return {
        "total": total,
        "done": statuses.count("done"),
        "skipped": statuses.count("skipped"),
        "failed": statuses.count("failed"),
        "running": running,
        "queued": len(scheduler.pending) - running,
    }


# -- the two entry points ---------------------------------------------------------------------


def sweep(
    checkpoints: Sequence[str | Path],
    *,
    out: str | Path,
    options: SweepOptions,
    address: str | None = None,
    num_cpus: int | None = None,
    runtime_env: Mapping[str, Any] | None = None,
    gate_policy: str | Path | None = None,
    progress: bool = True,
) -> SweepReport:
    """Score every checkpoint (paths or globs) on Ray; skip those already complete in `out`."""
    _validate(options)
    out_path = Path(out).resolve()
    jobs = plan_jobs(expand_checkpoints(checkpoints), out_path)
    todo = [j for j in jobs if not _existing(j, options)]
    policy = _load_policy(gate_policy)
    # Nothing to score (a finished sweep run again): no Ray at all.
    session = ray_session(address, num_cpus, runtime_env) if todo else contextlib.nullcontext()
    with session:
        scheduler = _Scheduler(options)
        for job in jobs:
            if job not in todo:
                scheduler.record(job, "skipped", 0.0, None, 0)
        for job in todo:
            scheduler.submit(job)
        gated: set[Path] = set()
        order = [j.checkpoint for j in jobs]
        with _progress(progress, len(jobs), "sweep") as update:
            while True:
                scheduler.collect(timeout=0.5)
                if policy is not None:
                    _gate_pending(order, scheduler, gated, policy, out_path)
                update(**_counts(scheduler, len(jobs)))
                if not scheduler.pending:
                    break
    return SweepReport(out_path, tuple(scheduler.results[j.checkpoint] for j in jobs))


def watch(
    folder: str | Path,
    *,
    out: str | Path,
    options: SweepOptions,
    poll: float = 60.0,
    settle: float = 10.0,
    max_checkpoints: int | None = None,
    timeout: float | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    runtime_env: Mapping[str, Any] | None = None,
    gate_policy: str | Path | None = None,
    progress: bool = True,
    on_poll: Callable[[int], None] | None = None,
) -> SweepReport:
    """Poll `folder` for checkpoints and score each once it is complete and stable.

    A subfolder is ready once it looks complete (config, tokenizer, every weight shard) and its
    files' sizes and times have not changed for `settle` seconds, so a checkpoint still being
    copied is left alone. Stops after `max_checkpoints` checkpoints have finished, after
    `timeout` seconds (then waits for the jobs already running), or on Ctrl-C.
    `on_poll(i)` is called after the i-th scan (for tests and embedding).
    """
    _validate(options)
    if poll <= 0 or settle < 0:
        raise EvalkitError("--poll must be > 0 and --settle >= 0")
    root = Path(folder)
    if not root.is_dir():
        raise EvalkitError(f"folder to watch not found: {root}")
    out_path = Path(out).resolve()
    policy = _load_policy(gate_policy)
    started = time.monotonic()
    seen: dict[Path, tuple[Any, float]] = {}  # checkpoint -> (signature, since when unchanged)
    jobs: dict[Path, SweepJob] = {}
    gated: set[Path] = set()
    polls = 0
    with ray_session(address, num_cpus, runtime_env):
        scheduler = _Scheduler(options)
        with _progress(progress, 0, f"watch {root}") as update:
            try:
                while True:
                    now = time.monotonic()
                    next_check = now + poll
                    for ckpt in sorted(p.resolve() for p in root.iterdir() if p.is_dir()):
                        if ckpt in jobs or ckpt.name.startswith("."):
                            continue
                        sig = signature(ckpt) if looks_complete(ckpt) else None
                        prev = seen.get(ckpt)
                        if sig is None or prev is None or prev[0] != sig:
                            seen[ckpt] = (sig, now)
                            if sig is not None:
                                next_check = min(next_check, now + settle)
                            continue
                        if now - prev[1] < settle:
                            next_check = min(next_check, prev[1] + settle)
                            continue
                        job = plan_jobs([ckpt], out_path)[0]
                        if job.name in {j.name for j in jobs.values()}:
                            raise EvalkitError(f"two checkpoints named {job.name} in {root}")
                        jobs[ckpt] = job
                        if _existing(job, options):
                            scheduler.record(job, "skipped", 0.0, None, 0)
                        else:
                            scheduler.submit(job)
                    polls += 1
                    if on_poll is not None:
                        on_poll(polls)
                    order = sorted(jobs, key=order_key)
                    while True:
                        wait = max(0.0, next_check - time.monotonic())
                        scheduler.collect(timeout=min(wait, 0.5))
                        if policy is not None:
                            _gate_pending(order, scheduler, gated, policy, out_path)
                        update(**_counts(scheduler, len(jobs)))
                        if time.monotonic() >= next_check or _stop(
                            scheduler, max_checkpoints, timeout, started
                        ):
                            break
                    if _stop(scheduler, max_checkpoints, timeout, started):
                        break
            except KeyboardInterrupt:
                pass
            # Let the jobs already submitted finish, so their runs are complete.
            order = sorted(jobs, key=order_key)
            while scheduler.pending:
                scheduler.collect(timeout=0.5)
                if policy is not None:
                    _gate_pending(order, scheduler, gated, policy, out_path)
                update(**_counts(scheduler, len(jobs)))
    order = sorted(scheduler.results, key=order_key)
    return SweepReport(out_path, tuple(scheduler.results[c] for c in order))


def _stop(
    scheduler: _Scheduler, max_checkpoints: int | None, timeout: float | None, started: float
) -> bool:
    if max_checkpoints is not None and len(scheduler.results) >= max_checkpoints:
        return True
    return timeout is not None and time.monotonic() - started >= timeout


def _load_policy(path: str | Path | None) -> Any:
    if path is None:
        return None
    from evalkit.analysis.gate import load_policy

    return load_policy(Path(path))


# -- the table at the end -----------------------------------------------------------------------


def sweep_table(report: SweepReport) -> Any:
    """A rich Table: one row per checkpoint with status, attempts, time, gate, run or error."""
    from rich.table import Table

    colors = {"done": "green", "skipped": "cyan", "failed": "red"}
    counts = {s: sum(1 for r in report.results if r.status == s) for s in colors}
    summary = ", ".join(f"{v} {k}" for k, v in counts.items())
    table = Table(title=f"runs in {report.out}/<checkpoint>: {summary}")
    for col in ("checkpoint", "step", "status", "attempts", "seconds", "gate", "error"):
        table.add_column(col, justify="right" if col in ("step", "attempts", "seconds") else "left")
    for r in report.results:
        table.add_row(
            r.job.name,
            "" if r.step is None else str(r.step),
            f"[{colors[r.status]}]{r.status}[/]",
            str(r.attempts),
            f"{r.seconds:.1f}",
            "" if r.gate is None else f"{r.gate} vs {r.gate_baseline}",
            r.error or "",
        )
    return table
