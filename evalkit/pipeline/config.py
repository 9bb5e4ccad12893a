"""`RunConfig`: the one value that describes a run.

Built from CLI options (`evalkit.cli_options`), a YAML file, a stored run's manifest.json, or
Python (`evalkit.api.score(checkpoint, **kwargs)` builds one). It is checked once, here, for
what can be checked without the file system or the model (values, ranges, combinations); the
planning stage (`evalkit.pipeline.plan`) checks the world (paths, devices, the checkpoint).
The manifest stores it (`config`, schema version 3), so a run can be scored again from its own
directory (`evalkit rerun RUN_DIR`, `evalkit score --config RUN_DIR/manifest.json`).

Where the run is written and how (output folder, result cache, progress bar) is not part of
the description: the same run may be written anywhere, with or without a cache.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from evalkit.errors import EvalkitError

BACKENDS = ("auto", "hf", "vllm")
TRUNCATIONS = ("error", "left")
# evalkit.sandbox.isolation.MODES (not imported: the sandbox pulls in its executor).
SANDBOX_MODES = ("auto", "strict", "rlimits")
# Fields holding a local path: recorded absolute, so a rerun finds them from any folder.
PATH_FIELDS = ("checkpoint", "tasks_dir", "provenance", "haystack")


@dataclass(frozen=True)
class RunConfig:
    """What to score and how to score it. Field by field (the CLI option of the same name
    says more): `checkpoint` a directory or hub id `ORG/NAME[@REVISION]`; exactly one of
    `suite` and `tasks`; `tasks_dir` an extra folder of task YAML; `limit` items per task;
    `backend`/`device`/`dtype`/`token_budget`/`vllm_options` the model's runtime;
    `truncation` over-long inputs (`error` or `left`); `provenance` a provenance.yaml;
    `chat_template` prompts through the tokenizer's chat template; `sandbox` the isolation of
    generated code; `haystack` the filler of needle tasks; `strict_suite` a task that cannot
    run is an error; `guard` the parity guard; `revision`/`trust_remote_code` hub options;
    `num_fewshot`/`gen_kwargs`/`seed` lm-eval's options; `routing` an MoE's router stats;
    `routing_only` only the forwards routing reads (routing.parquet, no scores)."""

    checkpoint: str
    suite: str | None = None
    tasks: tuple[str, ...] = ()
    tasks_dir: str | None = None
    limit: int | None = None
    backend: str = "auto"
    device: str = "auto"
    dtype: str = "auto"
    truncation: str = "error"
    provenance: str | None = None
    token_budget: int | None = None
    chat_template: bool = False
    sandbox: str = "auto"
    haystack: str | None = None
    vllm_options: tuple[str, ...] = ()
    strict_suite: bool = False
    guard: bool = True
    revision: str | None = None
    trust_remote_code: bool = False
    num_fewshot: int | None = None
    gen_kwargs: Mapping[str, Any] = field(default_factory=dict)
    seed: int | None = None
    routing: bool = True
    routing_only: bool = False

    def __post_init__(self) -> None:
        _normalise(self)
        _check(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: tuples as lists, the mapping as a dict."""
        out = asdict(self)
        out["tasks"] = list(self.tasks)
        out["vllm_options"] = list(self.vllm_options)
        out["gen_kwargs"] = dict(self.gen_kwargs)
        return out

    def with_absolute_paths(self) -> RunConfig:
        """Local paths (those that exist here) made absolute; hub ids and names unchanged."""
        changes: dict[str, Any] = {}
        for name in PATH_FIELDS:
            value = getattr(self, name)
            if value is not None and Path(value).exists():
                changes[name] = str(Path(value).resolve())
        return replace(self, **changes)

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with `changes` (checked like any config; unknown names are an error)."""
        unknown = sorted(set(changes) - set(FIELD_NAMES))
        if unknown:
            raise EvalkitError(f"unknown run setting(s) {', '.join(unknown)}")
        return replace(self, **changes)


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(RunConfig))
_STR = ("checkpoint", "backend", "device", "dtype", "truncation", "sandbox")
_OPT_STR = ("suite", "tasks_dir", "provenance", "haystack", "revision")
_BOOL = ("chat_template", "strict_suite", "guard", "trust_remote_code", "routing", "routing_only")
_OPT_INT = ("limit", "token_budget", "num_fewshot", "seed")


def _normalise(c: RunConfig) -> None:
    """Paths as strings, sequences as tuples, `gen_kwargs` text parsed (lm-eval's syntax):
    one representation per value, so equal configs compare equal."""
    for name in (*_STR, *_OPT_STR):
        value = getattr(c, name)
        if isinstance(value, Path):
            object.__setattr__(c, name, str(value))
    for name in ("tasks", "vllm_options"):
        value = getattr(c, name)
        if value is None:
            value = ()
        if isinstance(value, str):
            # A comma-separated list, as the CLI and YAML files may give it.
            value = tuple(v.strip() for v in value.split(",") if v.strip())
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise EvalkitError(f"run setting {name}: expected a list of strings, got {value!r}")
        object.__setattr__(c, name, tuple(value))
    kw = c.gen_kwargs
    if kw is None or isinstance(kw, str):
        from evalkit.tasks.options import parse_gen_kwargs

        kw = parse_gen_kwargs(kw) if kw else {}
    if not isinstance(kw, Mapping):
        raise EvalkitError(
            f"run setting gen_kwargs: expected key=value text or a mapping, got {kw!r}"
        )
    object.__setattr__(c, "gen_kwargs", dict(kw))


def _check(c: RunConfig) -> None:
    for name in _STR:
        if not isinstance(getattr(c, name), str) or not getattr(c, name):
            raise EvalkitError(f"run setting {name}: expected text, got {getattr(c, name)!r}")
    for name in _OPT_STR:
        value = getattr(c, name)
        if value is not None and not isinstance(value, str):
            raise EvalkitError(f"run setting {name}: expected text, got {value!r}")
    for name in _BOOL:
        if not isinstance(getattr(c, name), bool):
            raise EvalkitError(
                f"run setting {name}: expected true or false, got {getattr(c, name)!r}"
            )
    for name in _OPT_INT:
        value = getattr(c, name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise EvalkitError(f"run setting {name}: expected a whole number, got {value!r}")
    if c.routing_only and not c.routing:
        raise EvalkitError("--routing-only needs the routing statistics: drop --no-routing")
    if (c.suite is None) == (not c.tasks):
        raise EvalkitError("give exactly one of a suite or a list of tasks")
    if c.limit is not None and c.limit < 1:
        raise EvalkitError(f"--limit must be positive, got {c.limit}")
    if c.truncation not in TRUNCATIONS:
        raise EvalkitError(f"unknown truncation policy {c.truncation!r}; use 'error' or 'left'")
    if c.backend not in BACKENDS:
        raise EvalkitError(f"unknown backend {c.backend!r}; choose one of {', '.join(BACKENDS)}")
    if c.sandbox not in SANDBOX_MODES:
        raise EvalkitError(
            f"unknown sandbox mode {c.sandbox!r}; choose one of {', '.join(SANDBOX_MODES)}"
        )
    if c.token_budget is not None and c.token_budget < 1:
        raise EvalkitError(
            f"--token-budget must be a positive number of tokens, got {c.token_budget}"
        )
    if c.num_fewshot is not None and c.num_fewshot < 0:
        raise EvalkitError(f"--num-fewshot must be >= 0, got {c.num_fewshot}")


def config_from_dict(data: Mapping[str, Any], where: str) -> RunConfig:
    """A config from a mapping of field names (YAML or the manifest's `config`); an unknown or
    missing name is an error naming `where`."""
    if not isinstance(data, Mapping):
        raise EvalkitError(f"{where}: a run config must be a mapping of settings")
    keys = {str(k).replace("-", "_"): v for k, v in data.items()}
    unknown = sorted(set(keys) - set(FIELD_NAMES))
    if unknown:
        raise EvalkitError(
            f"{where}: unknown run setting(s) {', '.join(unknown)}; known: {', '.join(FIELD_NAMES)}"
        )
    if "checkpoint" not in keys:
        raise EvalkitError(f"{where}: the run config names no checkpoint")
    try:
        return RunConfig(**keys)
    except EvalkitError as exc:
        raise EvalkitError(f"{where}: {exc}") from None


def load_config(path: Path) -> RunConfig:
    """A config from a YAML file of settings, a run's manifest.json, or a run directory."""
    if path.is_dir():
        path = path / "manifest.json"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise EvalkitError(f"cannot read run config {path}: {exc.strerror or exc}") from None
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise EvalkitError(f"{path}: not valid JSON ({exc})") from None
        if isinstance(data, dict) and "schema_version" in data:
            return _from_manifest(data, path)
        return config_from_dict(data, str(path))
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise EvalkitError(f"{path}: not valid YAML ({type(exc).__name__})") from None
    return config_from_dict(data, str(path))


def _from_manifest(manifest: Mapping[str, Any], path: Path) -> RunConfig:
    recorded = manifest.get("config")
    if recorded is None:
        raise EvalkitError(
            f"{path} records no run config (schema version {manifest.get('schema_version')}: "
            "written before configs were stored); score it again with its options"
        )
    return config_from_dict(recorded, str(path))
