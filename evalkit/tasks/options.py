"""lm-eval's everyday options applied to a run's tasks: `--num-fewshot`, `--gen-kwargs`, `--seed`.

Each task class decides what an option means for it through `with_options(options) -> Task`
(raising EvalkitError when it cannot honour one); a task without that method takes none of them:

- `num_fewshot`: lm-eval tasks as `simple_evaluate` applies it (a task whose YAML fixes
  `num_fewshot: 0` keeps 0, as in lm-eval); native tasks only when their spec's `fewshot`
  section says `overridable: true` (their demonstrations are then drawn as for the spec's own
  k); every other task refuses, naming itself.
- `gen_kwargs`: lm-eval's `key=value,...` syntax (parsed by lm-eval's own parser), merged into
  the `generation_kwargs` of lm-eval generation tasks as `simple_evaluate` does; native
  `generate` tasks take `until`, `max_gen_toks` (or `max_new_tokens`) and greedy settings.
  A task that generates with its own settings (code, probes) refuses; tasks that do not
  generate ignore them, as in lm-eval.
- `seed`: every sampler a task has (few-shot draws, sampled generations) and the run's
  bootstrap. Unset, each keeps its default (lm-eval's few-shot seed 1234, the spec's seeds, 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from evalkit.errors import EvalkitError
from evalkit.requests import Generate
from evalkit.tasks.base import Item, Task


@dataclass(frozen=True)
class RunOptions:
    num_fewshot: int | None = None
    gen_kwargs: Mapping[str, Any] = field(default_factory=dict)
    seed: int | None = None

    @property
    def any(self) -> bool:
        return self.num_fewshot is not None or bool(self.gen_kwargs) or self.seed is not None

    def manifest(self) -> dict[str, Any]:
        return {
            "num_fewshot": self.num_fewshot,
            "gen_kwargs": dict(self.gen_kwargs) or None,
            "seed": self.seed,
        }


def parse_gen_kwargs(text: str | None) -> dict[str, Any]:
    """`key=value,...` exactly as lm-eval's `--gen_kwargs` reads it (values typed: true/false,
    none, ints, floats, quoted strings)."""
    if text is None or not text.strip():
        return {}
    from lm_eval.utils import simple_parse_args_string

    bad = [p for p in text.split(",") if p.strip() and "=" not in p]
    if bad:
        raise EvalkitError(f"--gen-kwargs: {bad[0]!r} is not key=value (lm-eval's syntax)")
    return dict(simple_parse_args_string(text))


def make_options(
    num_fewshot: int | None = None, gen_kwargs: str | Mapping[str, Any] | None = None,
    seed: int | None = None,
) -> RunOptions:  # fmt: skip
    if num_fewshot is not None and num_fewshot < 0:
        raise EvalkitError(f"--num-fewshot must be >= 0, got {num_fewshot}")
    kw = parse_gen_kwargs(gen_kwargs) if isinstance(gen_kwargs, str | None) else dict(gen_kwargs)
    return RunOptions(num_fewshot=num_fewshot, gen_kwargs=kw, seed=seed)


def apply_options(tasks: Sequence[Task], options: RunOptions) -> list[Task]:
    if not options.any:
        return list(tasks)
    out: list[Task] = []
    for t in tasks:
        if t.accepts_options:
            out.append(t.with_options(options))
            continue
        if options.num_fewshot is not None:
            raise EvalkitError(
                f"--num-fewshot: task {t.name} fixes its own few-shot setup and does not "
                "define how to change it (leave it out of the run, or drop --num-fewshot)"
            )
        out.append(t)
    return out


def check_generation(tasks: Sequence[Task], items: Mapping[str, Sequence[Item]],
                     options: RunOptions) -> None:  # fmt: skip
    """--gen-kwargs must not be silently ignored by a task that generates."""
    if not options.gen_kwargs:
        return
    for t in tasks:
        if t.accepts_options:
            continue
        if any(isinstance(r, Generate) for it in items[t.name] for r in it.requests):
            raise EvalkitError(
                f"--gen-kwargs: task {t.name} generates with its own settings and does not "
                "take lm-eval generation kwargs"
            )


def native_generation(
    task: str, gen_kwargs: Mapping[str, Any], stop: tuple[str, ...], max_tokens: int
) -> tuple[tuple[str, ...], int]:
    """A native `generate` task's (stop, max_tokens) under lm-eval generation kwargs."""
    kw = dict(gen_kwargs)
    until = kw.pop("until", None)
    if until is not None:
        stop = (until,) if isinstance(until, str) else tuple(str(u) for u in until)
    for key in ("max_gen_toks", "max_new_tokens", "max_tokens"):
        if key in kw:
            max_tokens = int(kw.pop(key))
    # Greedy settings are accepted; sampling is not (lm-eval samples only with do_sample=true).
    do_sample = bool(kw.pop("do_sample", False))
    sampled = do_sample and float(kw.pop("temperature", 0) or 0) > 0
    kw.pop("temperature", None)
    if sampled or kw:
        extra = sorted(kw) + (["do_sample"] if sampled else [])
        raise EvalkitError(
            f"--gen-kwargs: native task {task} decodes greedily; it takes until and "
            f"max_gen_toks, not {', '.join(extra)}"
        )
    if max_tokens < 1:
        raise EvalkitError(f"--gen-kwargs: max_gen_toks must be >= 1, got {max_tokens}")
    return stop, max_tokens


def apply_suite(
    tasks: Sequence[Task],
    families: Mapping[str, Sequence[str]],
    fewshot: Mapping[str, int],
    options: RunOptions,
) -> list[Task]:
    """A suite's per-task few-shot counts (unless --num-fewshot overrides them all) and its
    families for lm-eval tasks outside a group."""
    family_of = {t: f for f, names in families.items() for t in names}
    out: list[Task] = []
    for t in tasks:
        # A group's or tag's tasks carry its name as their family.
        k = fewshot.get(t.name, fewshot.get(t.family))
        if k is not None and options.num_fewshot is None:
            if not t.accepts_options:
                raise EvalkitError(f"suite: task {t.name} takes no few-shot count")
            t = t.with_options(RunOptions(num_fewshot=k))
        if t.name in family_of:
            t = t.in_family(family_of[t.name])
        out.append(t)
    return out
