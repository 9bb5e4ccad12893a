"""Stage 1, plan: a `RunConfig` made concrete without loading the weights.

Everything the user can get wrong is found here, before the model loads (a typo must not cost
a model load): the tasks and their options, the sandbox of code tasks, the haystack, the
checkpoint (a hub id resolved), its tokenizer and window, the chat template, the items, the
provenance and whether the output folder takes a file.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.backends.base import Backend
from evalkit.errors import EvalkitError, TaskCannotRun
from evalkit.frozen import freeze
from evalkit.inputs import check_backend_options, check_device, check_writable_folder
from evalkit.pipeline.config import BACKENDS, RunConfig
from evalkit.provenance import Provenance, find_provenance
from evalkit.sandbox import MODES, Sandbox, choose
from evalkit.skips import Items, SkippedTask, build_items, drop, frozen_items
from evalkit.tasks.base import Task, TokenizerInfo, WindowedTokenizer
from evalkit.tasks.chat import ChatFormat, chat_all, find_chat_template, template_hash
from evalkit.tasks.kinds import TaskKind, with_kinds
from evalkit.tasks.options import (
    RunOptions,
    apply_options,
    apply_suite,
    check_generation,
    make_options,
)
from evalkit.tasks.registry import Suite, load_suite, resolve_tasks


@dataclass(frozen=True)
class Output:
    """Where and how a run is written; not part of what the run is (`RunConfig`)."""

    out: Path | None = None  # None: runs/<checkpoint>-<label>-<time>
    cache_dir: Path | None = None  # None: evalkit.pipeline.execute.default_cache_dir()
    use_cache: bool = True
    progress: bool = True


@dataclass(frozen=True)
class Runtime:
    """What a Python caller may hand in beyond settings: a built backend (a scripted one in
    tests; the run then records the backend's name) and its own task kinds."""

    backend: Backend | None = None
    task_kinds: tuple[TaskKind, ...] = ()


@dataclass(frozen=True)
class Plan:
    """A run ready to execute. `backend` is the concrete backend name (or the caller's
    backend); `tokenizer_text`/`window` are what the backend will be given; `skipped` the
    tasks planning left out (execution returns its own)."""

    config: RunConfig
    output: Output
    started: float
    checkpoint: Path
    hub: Mapping[str, Any] | None
    suite: Suite | None
    options: RunOptions
    tasks: tuple[Task, ...]
    items: Items
    skipped: tuple[SkippedTask, ...]
    sandbox: Sandbox | None
    backend: str | Backend
    text_tokenizer: Any
    window: int | None
    chat_info: Mapping[str, Any] | None
    provenance: Provenance | None
    seed: int  # the bootstrap's

    @property
    def label(self) -> str:
        label = self.suite.name if self.suite is not None else "tasks"
        label = label + "-chat" if self.config.chat_template else label
        return label + "-routing" if self.config.routing_only else label


def resolve_backend(backend: str, device: str) -> str:
    """`auto` made concrete: vLLM only where it imports and a GPU is there, else transformers."""
    if backend not in BACKENDS:
        raise EvalkitError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        from evalkit.backends.vllm import vllm_available

        return "vllm" if device in ("auto", "cuda") and vllm_available() else "hf"
    return backend


def plan(config: RunConfig, output: Output = Output(), runtime: Runtime = Runtime()) -> Plan:
    started = time.time()
    c = config
    if output.out is not None and Path(output.out).exists():
        raise EvalkitError(
            f"run directory already exists: {Path(output.out).resolve()} (runs are immutable)"
        )
    suite = load_suite(c.suite) if c.suite is not None else None
    names = list(suite.tasks) if suite is not None else list(c.tasks)
    tdir = Path(c.tasks_dir) if c.tasks_dir is not None else None
    if tdir is not None and not tdir.is_dir():
        raise EvalkitError(f"tasks directory not found: {tdir}")
    options = make_options(c.num_fewshot, c.gen_kwargs, c.seed)
    tasks = apply_options(resolve_tasks(names, tdir, with_kinds(runtime.task_kinds)), options)
    if suite is not None:
        tasks = apply_suite(tasks, suite.families, suite.fewshot, options)
    skipped: tuple[SkippedTask, ...] = ()
    try:
        box = code_sandbox(tasks, c.sandbox)
    except TaskCannotRun as exc:
        box = None
        doomed = [t for t in tasks if t.needs.sandbox]
        kept, skipped = drop(tasks, doomed, exc, c.strict_suite)
        tasks = list(kept)
    if c.haystack is not None:
        tasks = _with_haystack(tasks, Path(c.haystack))
    # Tasks see the model's window through the tokenizer they are given (from the config
    # before the weights load, so bad lengths fail early; the backend gets the same window).
    ckpt = Path(c.checkpoint)
    hub: dict[str, Any] | None = None
    window: int | None = None
    text_tokenizer: Any = None
    backend: str | Backend
    if runtime.backend is None:
        from evalkit.backends.hf_checkpoint import checkpoint_window, load_tokenizer
        from evalkit.hub import check_remote_code, resolve_checkpoint

        resolved = resolve_checkpoint(c.checkpoint, c.revision)
        ckpt, hub = resolved.path, resolved.manifest()
        check_remote_code(ckpt, c.checkpoint, c.trust_remote_code)
        backend = resolve_backend(c.backend, c.device)
        check_backend_options(backend, c.vllm_options)
        check_device(c.device)
        text_tokenizer = load_tokenizer(ckpt, c.trust_remote_code)
        window = checkpoint_window(ckpt, text_tokenizer)
        tokenizer: TokenizerInfo = WindowedTokenizer(text_tokenizer, window)
    else:
        backend = runtime.backend
        tokenizer = WindowedTokenizer(backend.tokenizer, backend.max_length)
    fmt = chat_format(ckpt) if c.chat_template else None
    if fmt is not None and tokenizer.max_context is not None:
        # Tasks that size prompts to the window (needle tasks) must leave the template room.
        room = tokenizer.max_context - _chat_overhead(fmt, tokenizer)
        tokenizer = WindowedTokenizer(tokenizer, room)
    limit = c.limit
    built, items, more = build_items(
        tasks, lambda t: list(t.items(limit, tokenizer)), c.strict_suite, skipped
    )
    skipped += more
    check_generation(built, items, options)
    chat_info: dict[str, Any] | None = None
    if fmt is not None:
        chatted, single_turn = chat_all(built, items, fmt)
        items = frozen_items(chatted)
        # Items a task gave no turns for are one user turn: said, never silent.
        chat_info = fmt.describe() | {"single_turn_items": single_turn}
    prov = None
    if runtime.backend is None:
        if not ckpt.exists():
            raise EvalkitError(f"checkpoint not found: {ckpt}")
        prov = find_provenance(ckpt, Path(c.provenance) if c.provenance else None)
    # Checked before the model loads: an unusable folder fails in seconds, not after the work.
    out = output.out
    check_writable_folder(Path(out).parent if out is not None else Path("runs"), "run directory")
    return Plan(
        config=c,
        output=output,
        started=started,
        checkpoint=ckpt,
        hub=freeze(hub),
        suite=suite,
        options=options,
        tasks=built,
        items=items,
        skipped=skipped,
        sandbox=box,
        backend=backend,
        text_tokenizer=text_tokenizer,
        window=window,
        chat_info=freeze(chat_info),
        provenance=prov,
        seed=0 if c.seed is None else c.seed,
    )


def code_sandbox(tasks: Sequence[Task], mode: str) -> Sandbox | None:
    """The sandbox for the run's code tasks (None without any), chosen before the model loads
    so `strict` fails fast; the isolation in force is said on stderr, plainly."""
    if mode not in MODES:
        raise EvalkitError(f"unknown sandbox mode {mode!r}; choose one of {', '.join(MODES)}")
    if not any(t.needs.sandbox for t in tasks):
        return None
    try:
        isolation = choose(mode)
    except EvalkitError as exc:  # no isolation here for `strict`: the code tasks cannot run
        raise TaskCannotRun(str(exc)) from None
    box = Sandbox(isolation)
    print(f"{box.isolation.describe()} [{box.workers} parallel]", file=sys.stderr)
    return box


def chat_format(checkpoint: Path) -> ChatFormat:
    """The checkpoint tokenizer's chat template as a renderer (with the generation prompt)."""
    template = find_chat_template(checkpoint) if checkpoint.is_dir() else None
    if template is None:
        raise EvalkitError(
            f"{checkpoint} has no chat template (tokenizer_config.json 'chat_template' or "
            "chat_template.jinja); score it without --chat-template"
        )
    import transformers

    transformers.logging.set_verbosity_error()
    try:
        tok = transformers.AutoTokenizer.from_pretrained(str(checkpoint), local_files_only=True)
    except Exception as exc:
        raise EvalkitError(f"no usable tokenizer in {checkpoint}: {exc}") from None
    tok.chat_template = template

    def render(messages: list[dict[str, str]]) -> str:
        try:
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception as exc:
            raise EvalkitError(f"the chat template of {checkpoint} failed: {exc}") from None
        return str(text)

    return ChatFormat(render=render, template_hash=template_hash(template))


def _chat_overhead(fmt: ChatFormat, tokenizer: TokenizerInfo) -> int:
    """Tokens a chat template adds around one user turn (+ 1 for a merge at its edges)."""
    probe = "x"
    turns = [{"role": "system", "content": fmt.system}] if fmt.system else []
    rendered = fmt.render([*turns, {"role": "user", "content": probe}])
    return len(tokenizer.encode(rendered)) - len(tokenizer.encode_plain(probe)) + 1


def _with_haystack(tasks: list[Task], path: Path) -> list[Task]:
    """Needle tasks over a user's text file; an error when no selected task uses one."""
    if not any(t.needs.haystack for t in tasks):
        raise EvalkitError("--haystack is for needle-in-a-haystack tasks and none is selected")
    return [t.with_haystack(path) if t.needs.haystack else t for t in tasks]
