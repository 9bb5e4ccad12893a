"""Run inside .venv-vllm (the real vLLM engine, CPU build): one engine per checkpoint, built
through `evalkit.api.load_backend(..., "vllm", device="cpu")`, reused for every check and for
whole suites. Writes what it got to OUT/result.json and run directories under OUT; the
comparison with the HF backend happens in tests/test_vllm_real.py (main venv).

Usage: python tests/vllm_real/check_engine.py OUT [--suites smoke,transfer]
The engine core is a spawned process, hence the __main__ guard.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CKPTS = ROOT / "examples" / "checkpoints"
# Fast start on a shared CPU: no torch.compile; fp32 so numbers compare with HF at 1e-4.
OPTIONS = ["enforce_eager=true", "cpu_kvcache_space_gib=1"]


def _scores(rows: Any) -> list[list[dict[str, Any]]]:
    return [
        [
            {"logprob": s.logprob, "tokens": list(s.token_logprobs), "greedy": list(s.token_greedy)}
            for s in row
        ]
        for row in rows
    ]


def _groups(tok: Any, window: int) -> dict[str, list[tuple[list[int], list[list[int]]]]]:
    """Token-level inputs, each named for what it exercises."""
    preamble = tok.encode("Q: 1 + 1 = 2\nQ: 2 + 2 = 4\nQ: 3 + 3 = 6\n" * 3)
    few_shot = [
        (
            preamble + tok.encode_plain(f"Q: {a} + 5 ="),
            [tok.encode_plain(s) for s in (f" {a + 5}", " 12 or 13", " 7")],
        )
        for a in range(6)
    ]
    long_ids = tok.encode("key cat is 12. key dog is 7. the pig ate a fig. " * 80)
    assert len(long_ids) > window + 8
    return {
        # More one-token choices than one request may ask for (128).
        "many_choices": [(tok.encode("Pick a token:"), [[t] for t in range(3, 153)])],
        # Multi-token continuations: prompt log-probs (+ the generated position).
        "few_shot": few_shot,
        # Exactly the window fed (what HF accepts), and one token short of it.
        "near_window": [
            (long_ids[: window - 5], [long_ids[window - 5 : window + 1]]),
            (long_ids[:window], [[5], [9], [long_ids[window]]]),
            (long_ids[: window - 1], [long_ids[window - 1 : window + 1]]),
        ],
        # A rolling-style window: prefix token then a whole window of text.
        "rolling": [([tok.prefix_token_id], [long_ids[1 : window + 1]])],
    }


def _guard_negative(ckpt: Path, out: Path, backend: Any, groups: Any) -> str | None:
    """Negative control: the real engine's scores against a reference whose model differs
    (a copy of the checkpoint with one norm weight x1.5) must trip the guard."""
    import shutil

    from safetensors.torch import load_file, save_file

    from evalkit.backends.base import ScoringGroup
    from evalkit.backends.vllm_guard import VLLMParityGuard
    from evalkit.errors import EvalkitError

    damaged = out / f"{ckpt.name}-damaged"
    shutil.copytree(ckpt, damaged)
    weights = load_file(str(damaged / "model.safetensors"))
    name = next(k for k in sorted(weights) if k.endswith("post_attention_layernorm.weight"))
    weights[name] = weights[name] * 1.5
    save_file(weights, str(damaged / "model.safetensors"), metadata={"format": "pt"})
    guard = VLLMParityGuard(
        damaged, backend.tokenizer, enabled=True, dtype="float32", architecture="damaged"
    )
    sg = [ScoringGroup(tuple(c), tuple(tuple(x) for x in conts)) for c, conts in groups]
    try:
        guard.check(sg, backend.score(sg))
    except EvalkitError as exc:
        return str(exc)
    return None


def check(ckpt: Path, out: Path, suites: list[str]) -> dict[str, Any]:
    import evalkit
    from evalkit.api import load_backend
    from evalkit.backends.base import GenerationJob, ScoringGroup
    from evalkit.errors import EvalkitError

    t0 = time.time()
    backend: Any = load_backend(ckpt, "vllm", device="cpu", dtype="float32", vllm_options=OPTIONS)
    res: dict[str, Any] = {"start_seconds": round(time.time() - t0, 1)}
    res["settings"] = dict(backend.settings)
    res["engine_args"] = {k: v for k, v in backend.engine_args.items() if k != "model"}
    tok = backend.tokenizer
    window = backend.max_length
    inputs = _groups(tok, window)
    res["inputs"] = inputs
    got: dict[str, Any] = {}
    for name, groups in inputs.items():
        sg = [ScoringGroup(tuple(c), tuple(tuple(x) for x in conts)) for c, conts in groups]
        got[name] = _scores(backend.score(sg))
    res["scores"] = got
    # The parity guard ran on the first scoring calls above (vLLM vs transformers' plain
    # forward); the class vLLM resolved is in the settings.
    res["guard"] = backend.guard_report
    res["guard_negative"] = _guard_negative(ckpt, out, backend, inputs["few_shot"])

    # Order and batch independence (prefix cache warm from the calls above): all groups in
    # one call, shuffled, and one group per call must give the same numbers.
    every = [
        ScoringGroup(tuple(c), tuple(tuple(x) for x in conts))
        for groups in inputs.values()
        for c, conts in groups
    ]
    together = _scores(backend.score(every))
    order = list(range(len(every)))
    random.Random(3).shuffle(order)
    shuffled = _scores(backend.score([every[i] for i in order]))
    unshuffled = [shuffled[order.index(i)] for i in range(len(every))]
    alone = [_scores(backend.score([g]))[0] for g in every]
    res["independence"] = {"together": together, "shuffled": unshuffled, "alone": alone}

    # Prefix caching is on and serves a shared prompt (the engine's own counter).
    vllm = backend._vllm
    # Longer than a KV block whatever its size (the CPU platform's is 128 tokens).
    shared = list(tok.encode("The cat sat on the mat and looked at the dog. " * 60))[:400]
    params = vllm.SamplingParams(max_tokens=1, temperature=0.0, detokenize=False)
    outs = [
        backend.llm.generate(
            [vllm.TokensPrompt(prompt_token_ids=[*shared, t])], params, use_tqdm=False
        )[0]
        for t in (5, 9)
    ]
    res["prefix_cache"] = {
        "enabled": backend.engine_args["enable_prefix_caching"],
        "cached_tokens_second": int(outs[1].num_cached_tokens or 0),
    }

    prompt = tuple(tok.encode("key cat is 12.\nkey dog is"))
    jobs = [
        GenerationJob(prompt, ("\n",), 12, 0.0, 1, 0),
        GenerationJob(prompt, (), 8, 0.9, 4, 42),
    ]
    first = backend.generate(jobs)
    again = backend.generate(list(reversed(jobs)))[::-1]
    res["generation"] = {"prompt": list(prompt), "first": first, "again": again}

    # A request shape the engine rejects: one line, no traceback.
    try:
        backend.score([ScoringGroup(tuple(range(3, 3 + window + 4)), ((5,),))])
        res["rejected"] = None
    except EvalkitError as exc:
        res["rejected"] = str(exc)

    runs = {}
    for suite in suites:
        t = time.time()
        run = evalkit.score(
            ckpt,
            suite=suite,
            backend=backend,
            out=out / f"{ckpt.name}-{suite}",
            use_cache=False,
            progress=False,
        )
        runs[suite] = {"path": str(run.path), "seconds": round(time.time() - t, 1)}
    res["runs"] = runs
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--checkpoints", default="tiny-base")
    ap.add_argument("--suites", default="smoke,transfer")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    import vllm

    result: dict[str, Any] = {"vllm": vllm.__version__, "python": sys.executable, "checkpoints": {}}
    for i, name in enumerate(args.checkpoints.split(",")):
        suites = [s for s in args.suites.split(",") if s] if i == 0 else []
        result["checkpoints"][name] = check(CKPTS / name, args.out, suites)
    (args.out / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
