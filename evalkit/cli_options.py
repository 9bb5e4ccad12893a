"""The CLI's options that describe a run (`RunConfig`), defined once.

`evalkit score`, `evalkit sweep` and `evalkit compare` (which scores checkpoints it is given)
take them through `@run_options`: the decorator adds every option below to the command's
signature (typer reads the signature) and hands the command one `RunOptions` value instead of
twenty-odd parameters. `RunOptions` knows which options were given on the command line, so a
config read from a file (`--config`) is changed only where the user said so.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from evalkit.errors import EvalkitError
from evalkit.pipeline.config import RunConfig, load_config

F = TypeVar("F", bound=Callable[..., Any])

# name -> (annotation with its typer.Option, default). Names are RunConfig's fields, except
# where the CLI says it the other way round (`no_guard`, `no_routing`) or as text (`tasks`,
# repeated `vllm_option`); `_to_config` turns them into fields.
OPTIONS: dict[str, tuple[Any, Any]] = {
    "suite": (Annotated[str | None, typer.Option(help="Suite name (tasks/suites/NAME.yaml) or path.")], None),
    "tasks": (Annotated[str | None, typer.Option(help="Comma-separated task names.")], None),
    "tasks_dir": (Annotated[Path | None, typer.Option(help="Extra folder of task YAML (native or lm-eval).")], None),
    "limit": (Annotated[int | None, typer.Option(help="Score only the first N items per task.")], None),
    "backend": (Annotated[str, typer.Option(help="hf, vllm, or auto.")], "auto"),
    "device": (Annotated[str, typer.Option(help="cpu, cuda, cuda:N, or auto.")], "auto"),
    "dtype": (Annotated[str, typer.Option(help="float32, bfloat16, float16, or auto.")], "auto"),
    "truncation": (Annotated[str, typer.Option(help="Over-long inputs: 'error' (default) or 'left' (drop oldest tokens, counted).")], "error"),
    "provenance": (Annotated[Path | None, typer.Option(help="provenance.yaml (default: the checkpoint's own).")], None),
    "token_budget": (Annotated[int | None, typer.Option(help="Padded tokens per scoring batch (default: from the device).")], None),
    "chat_template": (Annotated[bool, typer.Option("--chat-template", help="Format prompts with the checkpoint tokenizer's chat template (few-shot as turns).")], False),
    "sandbox": (Annotated[str, typer.Option(help="Generated code: auto (bubblewrap, else rlimits with a warning), strict (refuse without bubblewrap) or rlimits.")], "auto"),
    "haystack": (Annotated[Path | None, typer.Option(help="Text file to use as the filler of needle-in-a-haystack tasks.")], None),
    "vllm_option": (Annotated[list[str] | None, typer.Option(help="vLLM engine setting KEY=VALUE, repeatable (tensor_parallel_size, data_parallel_size, gpu_memory_utilization, max_model_len, max_num_batched_tokens...).")], None),
    "strict_suite": (Annotated[bool, typer.Option("--strict-suite", help="Stop on a task that cannot run on this checkpoint (default: skip it, loudly).")], False),
    "no_guard": (Annotated[bool, typer.Option("--no-guard", help="Skip the parity guard (fast path vs the model's plain forward on a sample).")], False),
    "no_routing": (Annotated[bool, typer.Option("--no-routing", help="Skip an MoE checkpoint's routing statistics (routing.parquet, docs/moe.md).")], False),
    "routing_only": (Annotated[bool, typer.Option("--routing-only", help="MoE: run only the forwards routing needs; routing.parquet, no scores.")], False),
    "revision": (Annotated[str | None, typer.Option(help="Hub revision (branch, tag or commit) of a hub-id checkpoint.")], None),
    "trust_remote_code": (Annotated[bool, typer.Option("--trust-remote-code", help="Allow a checkpoint's own model code (auto_map).")], False),
    "num_fewshot": (Annotated[int | None, typer.Option(help="Few-shot examples for lm-eval tasks (native: if their spec allows).")], None),
    "gen_kwargs": (Annotated[str | None, typer.Option(help="Generation settings, lm-eval's key=value,... (until, max_gen_toks...).")], None),
    "seed": (Annotated[int | None, typer.Option(help="Seed of every sampler (few-shot, sampling) and bootstrap.")], None),
}  # fmt: skip


@dataclass(frozen=True)
class RunOptions:
    """The run options of one command line: each as a `RunConfig` field, and the fields the
    user gave explicitly (the rest are defaults)."""

    values: Mapping[str, Any]
    given: frozenset[str]

    def config(self, checkpoint: str | None, config_file: Path | None = None) -> RunConfig:
        """The run's config: from `config_file` (YAML, or a run's manifest.json or directory)
        changed by the options given here, else from these options alone."""
        if config_file is None:
            if checkpoint is None:
                raise EvalkitError("give a checkpoint (or --config FILE)")
            return RunConfig(checkpoint=checkpoint, **self.values)
        base = load_config(config_file)
        changes = {k: v for k, v in self.values.items() if k in self.given}
        if checkpoint is not None:
            changes["checkpoint"] = checkpoint
        if ("suite" in changes) != ("tasks" in changes):  # one replaces the other
            changes.setdefault("suite", None)
            changes.setdefault("tasks", ())
        return base.replace(**changes)

    def changes(self) -> dict[str, Any]:
        """Only the options given on the command line (a sweep passes these on)."""
        return {k: v for k, v in self.values.items() if k in self.given}


def _to_config(raw: Mapping[str, Any]) -> dict[str, tuple[str, Any]]:
    """CLI name -> (RunConfig field, value)."""
    out: dict[str, tuple[str, Any]] = {}
    for name, value in raw.items():
        if name == "tasks":
            out[name] = (
                "tasks",
                tuple(t.strip() for t in value.split(",") if t.strip()) if value else (),
            )
        elif name == "vllm_option":
            out[name] = ("vllm_options", tuple(value or ()))
        elif name in ("no_guard", "no_routing"):
            out[name] = (name[3:], not value)
        elif isinstance(value, Path):
            out[name] = (name, str(value))
        else:
            out[name] = (name, value)
    return out  # fmt: skip


_CONTEXT = "evalkit_context"


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether option `name` came from the command line (or the environment), not a default."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def run_options(exclude: Collection[str] = ()) -> Callable[[F], F]:
    """Give a typer command every run option (less `exclude`, whose names the command uses
    for something else); the command takes `run: RunOptions` in their place."""
    names = [n for n in OPTIONS if n not in exclude]

    def decorate(fn: F) -> F:
        sig = inspect.signature(fn, eval_str=True)  # typer needs the real annotations
        own = [p for p in sig.parameters.values() if p.name != "run"]
        clash = {p.name for p in own} & set(names)
        if clash:
            raise AssertionError(f"{fn.__name__} defines run options itself: {sorted(clash)}")
        extra = [
            inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=OPTIONS[n][1],
                              annotation=OPTIONS[n][0])
            for n in names
        ]  # fmt: skip

        @functools.wraps(fn)
        def command(*args: Any, **kwargs: Any) -> Any:
            ctx: typer.Context = kwargs.pop(_CONTEXT)
            raw = {n: kwargs.pop(n) for n in names}
            fields = _to_config(raw)
            given = frozenset(fields[n][0] for n in names if _given(ctx, n))
            values = dict(fields.values())
            return fn(*args, run=RunOptions(values, given), **kwargs)

        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
        # typer hands a parameter annotated `typer.Context` the click context.
        context = inspect.Parameter(
            _CONTEXT, inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context
        )
        command.__signature__ = sig.replace(parameters=[*params, *extra, context])  # type: ignore[attr-defined]
        command.__annotations__ = {}  # the signature above is what typer reads
        return command  # type: ignore[return-value]

    return decorate
