"""evalkit vs lm-eval: wall time, peak memory and per-document parity on two lm-eval YAML tasks.

Everything is built locally and seeded, so the benchmark runs offline and reproduces:

1. a byte-level BPE tokenizer (32,000 tokens; ``<|bos|>``, ``<|eos|>``, ``<|pad|>`` = 0, 1, 2;
   no automatic special tokens) trained on the Python standard library's own ``.py`` sources,
   and a random-init ~20M-parameter Llama (hidden 256, 4 layers, untied embeddings) saved in
   the Hugging Face layout in float32 — built once, cached under ``--out``;
2. two lm-eval YAML tasks over local JSONL files (``dataset_path: json``), with English-like
   text drawn from the standard library's docstring vocabulary:

   - ``bench_mmlu_like``: 5-shot (``fewshot_split: dev``, ``sampler: first_n``, so every
     document shares a ~350-word preamble), a question and four choices, continuations
     " A"/" B"/" C"/" D" (each one token), metric acc;
   - ``bench_hellaswag_like``: a ~60-word context and four ~20-token endings, acc and acc_norm;

3. each task through the ``lm_eval`` CLI (HF backend, ``--batch_size 16``) and through
   ``evalkit score --tasks-dir``, as subprocesses, CPU, float32, default threads. Wall time and
   peak RSS come from ``os.wait4`` on the child (its own ``ru_maxrss``, forked from a small
   launcher interpreter); each side runs ``--repeats`` times, alternating, and the run with the
   least wall time is reported;
4. per-document parity: every choice's log-likelihood (lm-eval's ``--log_samples`` JSONL vs
   evalkit's ``samples.parquet``) within 1e-4, and identical acc/acc_norm per document.

Usage::

    .venv/bin/python benchmarks/vs_lmeval.py            # 500 documents per task
    .venv/bin/python benchmarks/vs_lmeval.py --quick    # 50 documents, one repeat

Exit status: 0 when every task's results are identical, 1 on a parity mismatch, 2 when a
harness run fails.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_OUT = HERE / "out"

SEED = 1234
VOCAB_SIZE = 32000
SPECIAL_TOKENS = ("<|bos|>", "<|eos|>", "<|pad|>")  # ids 0, 1, 2
MODEL_CONFIG: dict[str, Any] = {
    "vocab_size": VOCAB_SIZE,
    "hidden_size": 256,
    "intermediate_size": 688,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": False,
    "bos_token_id": 0,
    "eos_token_id": 1,
    "pad_token_id": 2,
}
BUILD_RECIPE_VERSION = 1

MMLU_TASK = "bench_mmlu_like"
HELLASWAG_TASK = "bench_hellaswag_like"
TASKS = (MMLU_TASK, HELLASWAG_TASK)
LMEVAL_BATCH_SIZE = 16
LOGLIK_TOL = 1e-4
METRICS = ("acc", "acc_norm")


# ---------------------------------------------------------------------------------------------
# Checkpoint: tokenizer + random-init Llama, cached
# ---------------------------------------------------------------------------------------------


def stdlib_sources() -> list[Path]:
    """The standard library's own .py files (no site-packages, no test suites), sorted."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "dist-packages", "test", "tests", "idle_test"}
    return sorted(
        p for p in root.rglob("*.py") if not skip & set(p.relative_to(root).parts) and p.is_file()
    )


def read_texts(paths: Iterable[Path]) -> list[str]:
    return [p.read_text(encoding="utf-8", errors="replace") for p in paths]


def train_tokenizer(texts: Sequence[str], vocab_size: int) -> Any:
    """Byte-level BPE, <|bos|>=0, <|eos|>=1, <|pad|>=2, no post-processor (no automatic BOS).

    The same recipe as ``examples/train_tiny.py``; kept here so the benchmark's tokenizer does
    not change when that script does.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    for i, t in enumerate(SPECIAL_TOKENS):
        if tok.token_to_id(t) != i:
            raise RuntimeError(f"{t} must have id {i}")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=SPECIAL_TOKENS[0],
        eos_token=SPECIAL_TOKENS[1],
        pad_token=SPECIAL_TOKENS[2],
        model_max_length=int(MODEL_CONFIG["max_position_embeddings"]),
    )


def build_recipe() -> dict[str, Any]:
    import tokenizers
    import torch
    import transformers

    return {
        "recipe_version": BUILD_RECIPE_VERSION,
        "seed": SEED,
        "vocab_size": VOCAB_SIZE,
        "model_config": MODEL_CONFIG,
        "stdlib": sysconfig.get_paths()["stdlib"],
        "python": sys.version.split()[0],
        "tokenizers": tokenizers.__version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }


def ensure_checkpoint(ckpt: Path) -> int:
    """Build (or reuse) the benchmark checkpoint; returns its parameter count."""
    import torch
    import transformers
    from transformers import LlamaConfig, LlamaForCausalLM

    transformers.utils.logging.disable_progress_bar()

    recipe = build_recipe()
    stamp = ckpt / "bench_build.json"
    if stamp.is_file() and json.loads(stamp.read_text()).get("recipe") == recipe:
        info = json.loads(stamp.read_text())
        print(f"checkpoint: reusing {ckpt} ({info['n_params']:,} parameters)")
        return int(info["n_params"])
    if ckpt.exists():
        shutil.rmtree(ckpt)
    t0 = time.perf_counter()
    files = stdlib_sources()
    tokenizer = train_tokenizer(read_texts(files), VOCAB_SIZE)
    t_tok = time.perf_counter() - t0
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(LlamaConfig(**MODEL_CONFIG)).eval()
    if model.dtype != torch.float32:
        raise RuntimeError(f"expected a float32 model, got {model.dtype}")
    n_params = sum(p.numel() for p in model.parameters())
    tmp = ckpt.with_name(ckpt.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp)  # safetensors
    tokenizer.save_pretrained(tmp)
    info = {"recipe": recipe, "n_params": n_params, "stdlib_files": len(files)}
    (tmp / "bench_build.json").write_text(json.dumps(info, indent=2, sort_keys=True))
    tmp.rename(ckpt)
    print(
        f"checkpoint: built {ckpt} — tokenizer on {len(files)} stdlib files in {t_tok:.1f}s, "
        f"{n_params:,} parameters, float32"
    )
    return n_params


def load_tokenizer(ckpt: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(ckpt), local_files_only=True)


# ---------------------------------------------------------------------------------------------
# Synthetic English-like documents and the two lm-eval YAML tasks
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lexicon:
    words: tuple[str, ...]
    weights: tuple[int, ...]

    def sentence(self, rng: random.Random, n_words: int, end: str = ".") -> str:
        ws = rng.choices(self.words, weights=self.weights, k=n_words)
        return " ".join([ws[0].capitalize(), *ws[1:]]) + end

    def phrase(self, rng: random.Random, n_words: int) -> str:
        return " ".join(rng.choices(self.words, weights=self.weights, k=n_words))


def docstring_lexicon(paths: Sequence[Path]) -> Lexicon:
    """Lower-case words (2-12 letters) of the stdlib's docstrings, seen at least 3 times."""
    counts: Counter[str] = Counter()
    word = re.compile(r"\b[A-Za-z]{2,12}\b")
    for text in read_texts(paths):
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node)
                if doc:
                    counts.update(w.lower() for w in word.findall(doc))
    items = sorted((w, c) for w, c in counts.items() if c >= 3)
    return Lexicon(tuple(w for w, _ in items), tuple(c for _, c in items))


def mmlu_doc(rng: random.Random, lex: Lexicon) -> dict[str, Any]:
    n_sent = rng.randint(2, 3)
    question = " ".join(lex.sentence(rng, rng.randint(10, 14)) for _ in range(n_sent - 1))
    question += " " + lex.sentence(rng, rng.randint(9, 13), end="?")
    choices = [lex.phrase(rng, rng.randint(6, 10)) for _ in range(4)]
    return {"question": question, "choices": choices, "answer": rng.randrange(4)}


def hellaswag_doc(rng: random.Random, lex: Lexicon, tokenizer: Any) -> dict[str, Any]:
    ctx_words = 0
    sentences: list[str] = []
    target_words = rng.randint(55, 65)
    while ctx_words < target_words:
        n = min(rng.randint(8, 14), target_words - ctx_words)
        sentences.append(lex.sentence(rng, max(n, 3)))
        ctx_words += max(n, 3)
    endings: list[str] = []
    for _ in range(4):
        want = rng.randint(18, 22)  # tokens of " " + ending
        words: list[str] = []
        while len(tokenizer.encode(" " + " ".join(words), add_special_tokens=False)) < want:
            words.append(rng.choices(lex.words, weights=lex.weights, k=1)[0])
        endings.append(" ".join(words) + ".")
    return {"ctx": " ".join(sentences), "endings": endings, "label": rng.randrange(4)}


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def mmlu_yaml(dev: Path, test: Path) -> str:
    return f"""\
task: {MMLU_TASK}
dataset_path: json
dataset_kwargs:
  data_files:
    dev: {json.dumps(str(dev))}
    test: {json.dumps(str(test))}
test_split: test
fewshot_split: dev
fewshot_config:
  sampler: first_n
num_fewshot: 5
output_type: multiple_choice
description: "The following are multiple choice questions (with answers) about library design.\\n\\n"
doc_to_text: "{{{{question.strip()}}}}\\nA. {{{{choices[0]}}}}\\nB. {{{{choices[1]}}}}\\nC. {{{{choices[2]}}}}\\nD. {{{{choices[3]}}}}\\nAnswer:"
doc_to_choice: ["A", "B", "C", "D"]
doc_to_target: answer
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def hellaswag_yaml(test: Path) -> str:
    return f"""\
task: {HELLASWAG_TASK}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {json.dumps(str(test))}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{ctx}}}}"
doc_to_target: label
doc_to_choice: endings
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def write_tasks(tasks_dir: Path, n_docs: int, tokenizer: Any) -> None:
    """The two tasks' JSONL data and YAML, a pure function of (SEED, n_docs, tokenizer)."""
    for letter in "ABCD":
        ids = tokenizer.encode(" " + letter, add_special_tokens=False)
        if len(ids) != 1:
            raise RuntimeError(f"' {letter}' is {len(ids)} tokens in the benchmark tokenizer")
    if tasks_dir.exists():
        shutil.rmtree(tasks_dir)
    data = tasks_dir / "data"
    data.mkdir(parents=True)
    lex = docstring_lexicon(stdlib_sources())
    rng = random.Random(f"{SEED}:mmlu")
    write_jsonl(data / "mmlu_dev.jsonl", (mmlu_doc(rng, lex) for _ in range(5)))
    write_jsonl(data / "mmlu_test.jsonl", (mmlu_doc(rng, lex) for _ in range(n_docs)))
    rng = random.Random(f"{SEED}:hellaswag")
    write_jsonl(
        data / "hellaswag_test.jsonl", (hellaswag_doc(rng, lex, tokenizer) for _ in range(n_docs))
    )
    (tasks_dir / f"{MMLU_TASK}.yaml").write_text(
        mmlu_yaml(data / "mmlu_dev.jsonl", data / "mmlu_test.jsonl")
    )
    (tasks_dir / f"{HELLASWAG_TASK}.yaml").write_text(hellaswag_yaml(data / "hellaswag_test.jsonl"))


# ---------------------------------------------------------------------------------------------
# Running the two harnesses
# ---------------------------------------------------------------------------------------------


@dataclass
class Measured:
    wall_s: float
    peak_rss_mb: float
    returncode: int
    log: Path
    cpu_s: float = float("nan")  # user + system time of the child
    load_before: float = float("nan")  # 1-minute load average when it started


def bench_env(out: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HOME=str(out / "hf_home"),  # datasets' cache of the JSONL files, per benchmark
        TOKENIZERS_PARALLELISM="false",
        PYTHONHASHSEED="0",
    )
    return env


# Runs in a fresh, small interpreter: it forks and execs the measured command and reports the
# command's own peak RSS from os.wait4. Forking from this benchmark's process instead would count
# its ~0.5 GB (torch, transformers) as the child's peak, since Linux's ru_maxrss includes the
# pre-exec image.
_LAUNCHER = """
import json, os, sys, time
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - t0
code = os.waitstatus_to_exitcode(status)
with open(sys.argv[1], "w") as f:
    json.dump({"wall_s": wall, "maxrss_kib": usage.ru_maxrss, "returncode": code,
               "cpu_s": usage.ru_utime + usage.ru_stime}, f)
sys.exit(code if code >= 0 else 1)
"""


def run_measured(cmd: Sequence[str], log: Path, env: dict[str, str]) -> Measured:
    """Run `cmd` (output to `log`); its wall time and own peak RSS (os.wait4, Linux KiB)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    stats = log.with_suffix(".rusage.json")
    stats.unlink(missing_ok=True)
    load = os.getloadavg()[0]
    with log.open("w") as f:
        f.write("$ " + " ".join(cmd) + "\n\n")
        f.flush()
        launcher = [sys.executable, "-S", "-c", _LAUNCHER, str(stats), *cmd]
        proc = subprocess.run(launcher, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    if not stats.is_file():
        return Measured(float("nan"), float("nan"), proc.returncode or 1, log, load_before=load)
    r = json.loads(stats.read_text())
    return Measured(
        float(r["wall_s"]),
        r["maxrss_kib"] / 1024,
        int(r["returncode"]),
        log,
        cpu_s=float(r["cpu_s"]),
        load_before=load,
    )


def venv_bin(name: str) -> str:
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else name


def lmeval_cmd(ckpt: Path, task: str, tasks_dir: Path, out: Path) -> list[str]:
    return [
        venv_bin("lm_eval"),
        "run",
        "--model",
        "hf",
        "--model_args",
        f"pretrained={ckpt},dtype=float32",
        # Not `device=cpu` in --model_args: lm-eval 0.4.13 then passes `device` twice
        # (TypeError), since its --device flag always has a value.
        "--device",
        "cpu",
        "--tasks",
        task,
        "--include_path",
        str(tasks_dir),
        "--batch_size",
        str(LMEVAL_BATCH_SIZE),
        "--output_path",
        str(out),
        "--log_samples",
    ]


def evalkit_cmd(ckpt: Path, task: str, tasks_dir: Path, out: Path) -> list[str]:
    return [
        venv_bin("evalkit"),
        "score",
        str(ckpt),
        "--tasks",
        task,
        "--tasks-dir",
        str(tasks_dir),
        "--backend",
        "hf",
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--no-cache",
        "--no-progress",
        "--out",
        str(out),
    ]


# ---------------------------------------------------------------------------------------------
# Parity
# ---------------------------------------------------------------------------------------------


@dataclass
class DocScores:
    logliks: list[float]
    metrics: dict[str, float]


@dataclass
class Parity:
    n_docs: int
    max_abs_diff: float
    worst_doc: int | None
    loglik_mismatches: list[int] = field(default_factory=list)
    metric_mismatches: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not (self.loglik_mismatches or self.metric_mismatches or self.missing)


def _loglik_of(resp: Any) -> float:
    """A filtered_resps entry as logged by lm-eval: ["-12.3", "False"] (or a bare number)."""
    while isinstance(resp, list | tuple):
        resp = resp[0]
    return float(resp)


def lmeval_samples(run_out: Path, task: str) -> tuple[dict[int, DocScores], list[dict[str, Any]]]:
    files = sorted(run_out.rglob(f"samples_{task}_*.jsonl"))
    if len(files) != 1:
        raise RuntimeError(f"expected one lm-eval samples file for {task} in {run_out}: {files}")
    docs: dict[int, DocScores] = {}
    raw: list[dict[str, Any]] = []
    with files[0].open(encoding="utf-8") as f:
        for line in f:
            s = json.loads(line)
            raw.append(s)
            docs[int(s["doc_id"])] = DocScores(
                logliks=[_loglik_of(r) for r in s["filtered_resps"]],
                metrics={m: float(s[m]) for m in METRICS if m in s},
            )
    return docs, raw


def evalkit_samples(run_out: Path, task: str) -> dict[int, DocScores]:
    from evalkit.store import read_run

    df = read_run(run_out).samples  # flat: one column per metric, whatever the schema version
    df = df[df["task"] == task]
    docs: dict[int, DocScores] = {}
    for row in df.to_dict("records"):
        docs[int(row["doc_id"])] = DocScores(
            logliks=[float(x) for x in row["loglikelihoods"]],
            metrics={
                m: float(row[m])
                for m in METRICS
                if m in row and row[m] is not None and not _isnan(row[m])
            },
        )
    return docs


def _isnan(x: Any) -> bool:
    return isinstance(x, float) and math.isnan(x)


def compare(ref: dict[int, DocScores], got: dict[int, DocScores]) -> Parity:
    p = Parity(n_docs=len(ref), max_abs_diff=0.0, worst_doc=None)
    for doc_id in sorted(set(ref) - set(got)):
        p.missing.append(f"doc {doc_id} missing from evalkit")
    for doc_id in sorted(set(got) - set(ref)):
        p.missing.append(f"doc {doc_id} only in evalkit")
    for doc_id in sorted(set(ref) & set(got)):
        a, b = ref[doc_id], got[doc_id]
        if len(a.logliks) != len(b.logliks):
            p.loglik_mismatches.append(doc_id)
            continue
        diff = max((abs(x - y) for x, y in zip(a.logliks, b.logliks, strict=True)), default=0.0)
        if diff > p.max_abs_diff:
            p.max_abs_diff, p.worst_doc = diff, doc_id
        if not diff <= LOGLIK_TOL:
            p.loglik_mismatches.append(doc_id)
        for m, v in a.metrics.items():
            if m not in b.metrics:
                p.metric_mismatches.append(f"doc {doc_id}: evalkit has no {m}")
            elif b.metrics[m] != v:
                p.metric_mismatches.append(f"doc {doc_id}: {m} lm-eval {v} evalkit {b.metrics[m]}")
    return p


def needed_tokens(raw_samples: list[dict[str, Any]], tokenizer: Any) -> int:
    """Tokens the task needs read: per document its context once plus every continuation token.

    Contexts and continuations are the strings lm-eval logged, split as lm-eval's
    ``_encode_pair`` does (trailing context whitespace moves into the continuation; the pair is
    encoded whole and split at the encoded context's length).
    """

    def enc(text: str) -> list[int]:
        return list(tokenizer.encode(text, add_special_tokens=False))

    total = 0
    for s in raw_samples:
        args = s["arguments"]
        pairs = [(a["arg_0"], a["arg_1"]) for a in (args[k] for k in sorted(args))]
        ctx_len: int | None = None
        for context, continuation in pairs:
            n_space = len(context) - len(context.rstrip())
            if n_space:
                continuation = context[-n_space:] + continuation
                context = context[:-n_space]
            ctx = enc(context)
            whole = enc(context + continuation)
            total += len(whole) - len(ctx)
            ctx_len = len(ctx)
        total += ctx_len or 0
    return total


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------


@dataclass
class TaskResult:
    task: str
    n_docs: int
    needed_tokens: int
    lmeval: list[Measured]
    evalkit: list[Measured]
    parity: Parity | None
    error: str | None = None

    def best(self, side: str) -> Measured | None:
        ok = [m for m in getattr(self, side) if m.returncode == 0]
        return min(ok, key=lambda m: m.wall_s) if ok else None


def run_task(
    task: str, ckpt: Path, tasks_dir: Path, runs: Path, repeats: int, tokenizer: Any, n_docs: int
) -> TaskResult:
    env = bench_env(runs.parent)
    res = TaskResult(task, n_docs, 0, [], [], None)
    first_ok: dict[str, Path] = {}
    for rep in range(repeats):
        for side, make in (("lmeval", lmeval_cmd), ("evalkit", evalkit_cmd)):
            out = runs / f"{task}-{side}-{rep}"
            if out.exists():
                shutil.rmtree(out)
            log = runs / f"{task}-{side}-{rep}.log"
            m = run_measured(make(ckpt, task, tasks_dir, out), log, env)
            getattr(res, side).append(m)
            status = "ok" if m.returncode == 0 else f"FAILED (exit {m.returncode}, see {log})"
            print(
                f"  {task:22s} {side:8s} run {rep + 1}/{repeats}: {m.wall_s:7.1f}s wall "
                f"{m.cpu_s:7.1f}s cpu {m.peak_rss_mb:7.0f} MB  (load {m.load_before:.1f} "
                f"before)  {status}",
                flush=True,
            )
            if m.returncode == 0:
                first_ok.setdefault(side, out)
    if "lmeval" not in first_ok or "evalkit" not in first_ok:
        res.error = "a harness run failed: " + ", ".join(
            str(m.log) for m in res.lmeval + res.evalkit if m.returncode != 0
        )
        return res
    ref, raw = lmeval_samples(first_ok["lmeval"], task)
    res.needed_tokens = needed_tokens(raw, tokenizer)
    res.parity = compare(ref, evalkit_samples(first_ok["evalkit"], task))
    return res


def print_table(results: Sequence[TaskResult]) -> None:
    head = (
        f"{'task':22s} {'docs':>5s} {'lm-eval s':>10s} {'evalkit s':>10s} {'ratio':>6s} "
        f"{'lm-eval MB':>11s} {'evalkit MB':>11s} {'needed tok':>11s} "
        f"{'lm-eval tok/s':>14s} {'evalkit tok/s':>14s} {'max|Δll|':>9s} {'identical':>9s}"
    )
    print()
    print(head)
    print("-" * len(head))
    for r in results:
        a, b = r.best("lmeval"), r.best("evalkit")
        if a is None or b is None or r.parity is None:
            print(f"{r.task:22s} {r.n_docs:5d}  {r.error}")
            continue
        ratio = a.wall_s / b.wall_s
        ident = "yes" if r.parity.identical else "NO"
        print(
            f"{r.task:22s} {r.n_docs:5d} {a.wall_s:10.1f} {b.wall_s:10.1f} {ratio:6.2f} "
            f"{a.peak_rss_mb:11.0f} {b.peak_rss_mb:11.0f} {r.needed_tokens:11,d} "
            f"{r.needed_tokens / a.wall_s:14,.0f} {r.needed_tokens / b.wall_s:14,.0f} "
            f"{r.parity.max_abs_diff:9.1e} {ident:>9s}"
        )
    print()
    print(
        "wall = whole subprocess (imports, model and data loading, scoring, writing), minimum of "
        "the repeats; MB = the child's peak RSS (os.wait4 ru_maxrss) of that run; ratio = "
        "lm-eval / evalkit; needed tok = per document its context once plus every continuation "
        "token."
    )
    for r in results:
        if r.parity is None or r.parity.identical:
            continue
        p = r.parity
        print(f"\nPARITY MISMATCH in {r.task}:")
        if p.missing:
            print("  " + "; ".join(p.missing[:10]))
        if p.loglik_mismatches:
            print(
                f"  {len(p.loglik_mismatches)} docs differ by > {LOGLIK_TOL} nats "
                f"(first: {p.loglik_mismatches[:10]}); worst doc {p.worst_doc}: "
                f"{p.max_abs_diff:.3g}"
            )
        for line in p.metric_mismatches[:10]:
            print("  " + line)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--docs", type=int, default=500, help="documents per task (default 500)")
    ap.add_argument("--quick", action="store_true", help="smoke check: 50 documents, 1 repeat")
    ap.add_argument("--repeats", type=int, default=None, help="runs per side (default 2)")
    ap.add_argument("--tasks", default=",".join(TASKS), help="comma-separated subset of tasks")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="scratch folder")
    args = ap.parse_args(argv)
    n_docs = 50 if args.quick else args.docs
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 2)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown or n_docs < 1 or repeats < 1:
        ap.error(f"unknown tasks {unknown}" if unknown else "--docs and --repeats must be >= 1")

    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoint"
    n_params = ensure_checkpoint(ckpt)
    tokenizer = load_tokenizer(ckpt)
    tasks_dir = out / f"tasks-{n_docs}"
    write_tasks(tasks_dir, n_docs, tokenizer)
    runs = out / f"runs-{n_docs}"
    print(
        f"tasks: {tasks_dir} ({n_docs} docs each); runs: {runs}; {repeats} repeat(s) per side; "
        f"{os.cpu_count()} CPUs; torch threads default"
    )
    t0 = time.perf_counter()
    results = [run_task(t, ckpt, tasks_dir, runs, repeats, tokenizer, n_docs) for t in tasks]
    print_table(results)
    print(
        f"model: {n_params:,} parameters, fp32, CPU; benchmark took {time.perf_counter() - t0:.0f}s"
    )
    summary = {
        "n_params": n_params,
        "n_docs": n_docs,
        "repeats": repeats,
        "cpu_count": os.cpu_count(),
        "results": [asdict(r) for r in results],
    }
    (out / f"summary-{n_docs}.json").write_text(json.dumps(summary, indent=2, default=str))
    if any(r.parity is None for r in results):
        return 2
    return 0 if all(r.parity is not None and r.parity.identical for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
