"""Chat-tune a copy of a base checkpoint on chat-formatted versions of its own data slices.

The copy gets a chat template in its ``tokenizer_config.json``::

    <|bos|>User: {question}
    Assistant: {answer}<|eos|>
    User: ...
    Assistant:        <- the generation prompt; the answer brings its own leading space

and is fine-tuned (loss on the assistant's answers and end-of-turn tokens only) on
conversations built from the base model's slices: arithmetic (``3 + 4 =`` -> ``7``), key-value
lookup (records, then ``query key:`` -> value), number words (``fünf =`` -> ``5``), tiny code
(``def add_3(x):`` -> ``return x + 3``) and prose (a sentence -> the next one). A third of the
conversations (but key-value ones, long already) carry one to three earlier question/answer
turns of the same slice: few-shot as multi-turn, the convention evalkit's chat formatting
follows. Conversations longer than ``--max-tokens`` are skipped.

Usage (the bundled chat checkpoint; about a minute on two CPU cores)::

    python examples/train_chat.py --base examples/checkpoints/tiny-base \\
        --out examples/checkpoints/tiny-chat

Importing this module has no side effects; tests call :func:`train_chat`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}System: {{ message['content'] }}\n"
    "{% elif message['role'] == 'user' %}User: {{ message['content'] }}\n"
    "{% else %}Assistant: {{ message['content'] }}{{ eos_token }}\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def _slices_module() -> ModuleType:
    """examples/train_tiny.py, for its slice generators (it is not a package)."""
    spec = importlib.util.spec_from_file_location("evalkit_train_tiny", HERE / "train_tiny.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


QA = tuple[str, str]


def _arithmetic(rng: random.Random) -> QA:
    a, b = rng.randint(0, 19), rng.randint(0, 19)
    if rng.random() < 0.8:
        return f"{a} + {b} =", str(a + b)
    a, b = max(a, b), min(a, b)
    return f"{a} - {b} =", str(a - b)


def _kv(tiny: ModuleType) -> Callable[[random.Random], QA]:
    letters = "abcdefghijklmnopqrstuvwxyz"

    def make(rng: random.Random) -> QA:
        n = rng.randint(3, 8)
        if rng.random() < 0.5:
            keys = rng.sample(list(tiny.KV_KEYS), n)
        else:  # random letter triples, as evalkit's smoke task uses
            keys = []
            while len(keys) < n:
                k = "".join(rng.choice(letters) for _ in range(3))
                if k not in keys:
                    keys.append(k)
        values = [rng.randint(10, 99) for _ in keys]
        sep = " " if rng.random() < 0.5 else "\n"
        records = sep.join(f"key {k} is {v}." for k, v in zip(keys, values, strict=True))
        i = rng.randrange(n)
        return f"{records}\nquery {keys[i]}:", str(values[i])

    return make


def _multilingual(tiny: ModuleType) -> Callable[[random.Random], QA]:
    langs = sorted(tiny.NUMBER_WORDS)

    def make(rng: random.Random) -> QA:
        words = tiny.NUMBER_WORDS[rng.choice(langs)]
        n = rng.randrange(len(words))
        return f"{words[n]} =", str(n)

    return make


def _code(tiny: ModuleType) -> Callable[[random.Random], QA]:
    def make(rng: random.Random) -> QA:
        src = rng.choice(tiny._CODE_TEMPLATES).format(k=rng.randint(2, 19))
        head, body = src.rstrip("\n").split("\n", 1)
        return head, body.strip()

    return make


def _prose(tiny: ModuleType) -> Callable[[random.Random], QA]:
    def make(rng: random.Random) -> QA:
        doc = tiny.gen_prose(rng, 1)[0]
        sentences = [s.strip() + "." for s in doc.split(".") if s.strip()]
        return sentences[0], sentences[1]

    return make


def slice_makers(tiny: ModuleType) -> dict[str, Callable[[random.Random], QA]]:
    return {
        "chat_arithmetic": _arithmetic,
        "chat_kv": _kv(tiny),
        "chat_multilingual": _multilingual(tiny),
        "chat_code": _code(tiny),
        "chat_prose": _prose(tiny),
    }


MIX = {
    "chat_arithmetic": 0.35,
    "chat_kv": 0.25,
    "chat_multilingual": 0.2,
    "chat_code": 0.1,
    "chat_prose": 0.1,
}


def conversation(
    make: Callable[[random.Random], QA], rng: random.Random, multiturn: bool = True
) -> list[dict[str, str]]:
    shots = rng.randint(1, 3) if multiturn and rng.random() < 1 / 3 else 0
    messages = []
    for _ in range(shots + 1):
        q, a = make(rng)
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return messages


def render(
    messages: Sequence[dict[str, str]], bos: str, eos: str
) -> tuple[str, list[tuple[int, int]]]:
    """The chat template by hand, with the character spans the loss is taken on: each answer
    (from the space after ``Assistant:``, which tokenizes with the answer) and its end-of-turn."""
    text = bos
    spans = []
    for m in messages:
        if m["role"] == "user":
            text += f"User: {m['content']}\n"
        else:
            text += "Assistant:"
            start = len(text)
            text += f" {m['content']}{eos}"
            spans.append((start, len(text)))
            text += "\n"
    return text, spans


def encode(tokenizer: Any, text: str, spans: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    labels = [
        t if any(s <= start and end <= e for s, e in spans) else -100
        for t, (start, end) in zip(ids, enc["offset_mapping"], strict=True)
    ]
    return ids, labels


def train_chat(
    base: Path,
    out: Path,
    *,
    steps: int = 300,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    threads: int = 1,
    log_every: int = 50,
    max_tokens: int = 128,
) -> dict[str, Any]:
    import torch
    import yaml
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if out.exists():
        raise FileExistsError(f"{out} exists")
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(base), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        str(base), local_files_only=True, dtype=torch.float32
    )
    tiny = _slices_module()
    makers = slice_makers(tiny)
    bos, eos = tokenizer.bos_token, tokenizer.eos_token
    tokenizer.chat_template = CHAT_TEMPLATE
    # The hand renderer and the Jinja template must agree exactly.
    probe = conversation(makers["chat_arithmetic"], random.Random(1))
    assert tokenizer.apply_chat_template(probe, tokenize=False) == render(probe, bos, eos)[0]

    rng = random.Random(f"{seed}:chat")
    names = list(MIX)
    weights = [MIX[n] for n in names]
    slice_tokens = dict.fromkeys(names, 0)
    max_len = min(max_tokens, int(getattr(model.config, "max_position_embeddings", 512)))
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.95),
    )
    warmup = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            (s + 1) / warmup
            if s < warmup
            else 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, steps - warmup)))
        ),
    )
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    model.train()
    running = 0.0
    for step in range(steps):
        rows = []
        while len(rows) < batch_size:
            name = rng.choices(names, weights)[0]
            # Key-value records are long already: no earlier turns for them.
            messages = conversation(makers[name], rng, multiturn=name != "chat_kv")
            ids, labels = encode(tokenizer, *render(messages, bos, eos))
            if len(ids) > max_len:
                continue  # keep batches short: CPU time goes as the padded width
            slice_tokens[name] += len(ids)
            rows.append((ids, labels))
        width = max(len(i) for i, _ in rows)
        input_ids = torch.full((batch_size, width), pad, dtype=torch.long)
        label_t = torch.full((batch_size, width), -100, dtype=torch.long)
        mask = torch.zeros((batch_size, width), dtype=torch.long)
        for j, (ids, labels) in enumerate(rows):
            input_ids[j, : len(ids)] = torch.tensor(ids)
            label_t[j, : len(ids)] = torch.tensor(labels)
            mask[j, : len(ids)] = 1
        loss = model(input_ids=input_ids, attention_mask=mask, labels=label_t).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        running += float(loss.item())
        if (step + 1) % log_every == 0 or step + 1 == steps:
            n = step % log_every + 1
            print(
                f"step {step + 1:4d}/{steps}  loss {running / n:.4f}  {time.perf_counter() - t0:5.1f}s",
                flush=True,
            )
            running = 0.0
    model.eval()

    out.mkdir(parents=True)
    model.save_pretrained(out)
    for name in TOKENIZER_FILES:
        if (base / name).is_file():
            shutil.copy2(base / name, out / name)
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["chat_template"] = CHAT_TEMPLATE
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    base_prov: dict[str, Any] = {}
    if (base / "provenance.yaml").is_file():
        base_prov = yaml.safe_load((base / "provenance.yaml").read_text(encoding="utf-8")) or {}
    parent = (base_prov.get("checkpoint") or {}).get("run") or base.name
    total = sum(slice_tokens.values())
    prov = {
        "schema_version": 1,
        "checkpoint": {
            "run": out.name,
            "step": steps,
            "tokens_seen": total,
            "parent": parent,
            "tuning": "chat (loss on assistant turns only)",
        },
        "slices": [
            {
                "name": name,
                "tokens": tokens,
                "share": round(tokens / total, 6),
                "source": f"synthetic:{name}",
                "license": "Apache-2.0",
                "language": "multi" if name == "chat_multilingual" else "en",
                "domain": "chat",
                "quality": 1.0,
                "repeats": 1,
            }
            for name, tokens in slice_tokens.items()
        ],
    }
    (out / "provenance.yaml").write_text(
        yaml.safe_dump(prov, sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
    seconds = time.perf_counter() - t0
    print(f"saved {out} ({seconds:.1f}s)")
    return {"seconds": seconds, "slice_tokens": slice_tokens}


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", type=Path, default=HERE / "checkpoints" / "tiny-base")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="1 is fastest on a busy machine")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--max-tokens", type=int, default=128)
    args = p.parse_args(argv)
    train_chat(
        args.base,
        args.out,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        threads=args.threads,
        log_every=args.log_every,
        max_tokens=args.max_tokens,
    )


if __name__ == "__main__":
    main()
