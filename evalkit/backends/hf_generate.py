"""Generation through transformers' `generate`: greedy jobs batched by length, sampled jobs
one by one under their own seed, every text cut at its stop sequences as lm-eval cuts it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evalkit.backends.base import GenerationJob
from evalkit.backends.damage import FiniteLogits
from evalkit.backends.hf_checkpoint import HFTokenizer


def generate(
    model: Any, device: Any, tokenizer: HFTokenizer, jobs: Sequence[GenerationJob]
) -> list[tuple[str, ...]]:
    """Each job's texts (n of them), in the order given."""
    import torch

    if not jobs:
        return []
    with torch.inference_mode():
        greedy = [i for i, j in enumerate(jobs) if j.temperature == 0]
        out: dict[int, tuple[str, ...]] = {}
        # Greedy jobs with the same max_tokens batch together; sampled jobs run one by one
        # under their own seed so their samples do not depend on how they were batched.
        by_len: dict[int, list[int]] = {}
        for i in greedy:
            by_len.setdefault(jobs[i].max_tokens, []).append(i)
        for max_tokens, idxs in by_len.items():
            texts = _generate(model, device, tokenizer, [jobs[i] for i in idxs], max_tokens, False)
            for i, t in zip(idxs, texts, strict=True):
                out[i] = (t,)
        for i, job in enumerate(jobs):
            if job.temperature > 0:
                torch.manual_seed(job.seed)
                out[i] = tuple(
                    _generate(model, device, tokenizer, [job] * job.n, job.max_tokens, True)
                )
        return [out[i] for i in range(len(jobs))]


def _generate(
    model: Any,
    device: Any,
    tokenizer: HFTokenizer,
    jobs: Sequence[GenerationJob],
    max_tokens: int,
    sample: bool,
) -> list[str]:
    import torch
    import transformers

    pad = tokenizer.pad_token_id
    width = max(len(j.prompt) for j in jobs)
    ids = torch.full((len(jobs), width), pad, dtype=torch.long)
    attn = torch.zeros((len(jobs), width), dtype=torch.long)
    for r, j in enumerate(jobs):
        ids[r, width - len(j.prompt) :] = torch.tensor(j.prompt)
        attn[r, width - len(j.prompt) :] = 1
    stops = sorted({s for j in jobs for s in j.stop if s})
    criteria = transformers.StoppingCriteriaList()
    if stops:
        criteria.append(_StopOnText(tokenizer, stops, width))
    kwargs: dict[str, Any] = {"do_sample": sample}
    if sample:
        kwargs.update(temperature=jobs[0].temperature, top_k=0, top_p=1.0)
    else:
        kwargs.update(temperature=None, top_k=None, top_p=None)
    eos = tokenizer.eos_token_id
    generated = model.generate(
        input_ids=ids.to(device),
        attention_mask=attn.to(device),
        max_new_tokens=max_tokens,
        stopping_criteria=criteria,
        logits_processor=transformers.LogitsProcessorList([FiniteLogits()]),
        pad_token_id=pad,
        eos_token_id=eos,
        use_cache=True,
        **kwargs,
    )
    texts = []
    for r, j in enumerate(jobs):
        new = generated[r, width:].tolist()
        if eos is not None and eos in new:
            new = new[: new.index(eos)]
        texts.append(cut_at_stop(tokenizer.decode(new), j.stop))
    return texts


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """Text before the earliest stop sequence (what lm-eval's successive splits leave)."""
    for term in stop:
        if term:
            text = text.split(term)[0]
    return text


class _StopOnText:
    """Per-row stop once the generated text contains any stop sequence."""

    def __init__(self, tokenizer: HFTokenizer, stops: list[str], prompt_width: int) -> None:
        self.tokenizer = tokenizer
        self.stops = stops
        self.prompt_width = prompt_width
        # Byte-level tokens can be a single byte: look back far enough to see any stop whole.
        self.lookback = max(len(s.encode()) for s in stops) + 2

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        new = input_ids[:, self.prompt_width :]
        tail = new[:, -self.lookback :].tolist()
        done = [any(s in self.tokenizer.decode(t) for s in self.stops) for t in tail]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)
