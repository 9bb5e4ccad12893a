"""The loaded model's forward for scoring: its decoder and output head on one device, the
architecture's plan (`arch.py`), and what scoring carries from batch to batch (the last shared
prefix's key/value cache, the MoE routing tap). The packed forward (`hf_packed.py`) and the
unpacked ones (`hf_unpacked.py`) run through it; `plain_logprobs` is the obvious computation the
parity guard holds them to.

Only the positions that predict a scored token go through the vocabulary projection and
log-softmax; [batch, sequence, vocabulary] is never materialized.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from evalkit.backends.arch import ArchPlan
from evalkit.backends.base import ScoringGroup, TokenScore
from evalkit.backends.guard import plain_rows
from evalkit.backends.routing import RouterTap

# Scored positions per vocabulary-projection slice.
HEAD_CHUNK = 512


class Forward:
    """A decoder-only model's scoring forward (mutable: the prefix cache and routing tap)."""

    def __init__(
        self,
        model: Any,
        *,
        device: Any,
        torch_dtype: Any,
        plan: ArchPlan,
        pad_id: int,
        token_budget: int,
        prefix_reuse: bool = True,
    ) -> None:
        self.model = model
        self.decoder = model.get_decoder()
        self.head = model.get_output_embeddings()
        self.device = device
        self.torch_dtype = torch_dtype
        self.plan = plan
        self.pad_id = pad_id
        # Padded tokens per forward batch.
        self.token_budget = token_budget
        self.softcap = getattr(model.config, "final_logit_softcapping", None)
        # Cross-context prefix reuse (`hf_packed.shared_prefix`); off only for debugging.
        self.prefix_reuse = prefix_reuse
        # The last shared prefix computed and its key/value cache (`hf_packed.prefix_cache`).
        self.prefix: tuple[tuple[int, ...], Any] | None = None
        # Router decisions at scored positions, for an MoE (set by `evalkit.routing_run`).
        self.routing: RouterTap | None = None

    def token_scores(
        self, hidden: Any, rows: list[int], cols: list[int], targets: list[int]
    ) -> tuple[list[float], list[bool]]:
        """Log-prob and greedy flag of each target, from the hidden state at (row, col)."""
        import torch

        # One host-to-device copy for all scored positions of the batch.
        row_t, col_t, tgt_t = torch.tensor([rows, cols, targets], device=self.device)
        # Every continuation's first token is predicted by the same last context position:
        # project each distinct position once.
        flat = row_t * hidden.shape[1] + col_t
        unique_pos, slot = torch.unique(flat, return_inverse=True)
        picked = hidden.reshape(-1, hidden.shape[-1])[unique_pos]
        lse_parts = []
        best_parts = []
        target_logit = torch.empty(len(targets), dtype=torch.float32, device=self.device)
        # The vocabulary projection in slices: [positions, vocab] stays small, and only
        # log-sum-exp, the argmax and the targets' logits are kept of it.
        for start in range(0, picked.shape[0], HEAD_CHUNK):
            logits = self.head(picked[start : start + HEAD_CHUNK]).float()
            if self.softcap:
                logits = torch.tanh(logits / self.softcap) * self.softcap
            mine = (slot >= start) & (slot < start + HEAD_CHUNK)
            target_logit[mine] = logits[slot[mine] - start, tgt_t[mine]]
            # One pass gives the max and the argmax; the normalizer then reuses the logits'
            # memory (two fewer passes over [positions, vocab] than logsumexp + argmax).
            top, best = logits.max(dim=-1)
            total = logits.sub_(top[:, None]).exp_().sum(dim=-1, dtype=torch.float32)
            lse_parts.append(top.float() + total.log())
            best_parts.append(best)
        lse = torch.cat(lse_parts)[slot]
        best = torch.cat(best_parts)[slot]
        # And one copy back: log-probs and greedy hits together.
        back = torch.stack([(target_logit - lse).double(), (best == tgt_t).double()]).cpu()
        return back[0].tolist(), [x > 0.5 for x in back[1].tolist()]

    def plain_logprobs(self, group: ScoringGroup) -> list[list[float]]:
        """Per-token log-probs of each continuation by the model's own plain forward of its
        sequence (context + continuation, less its last token): no packing, no position ids,
        no cache; a group's rows right-padded into one batch under the model's own masks, a
        sequence that is a prefix of another read off the longer row (`guard.plain_rows`)."""
        import torch

        rows, host = plain_rows([(list(group.context) + list(c))[:-1] for c in group.continuations])
        width = max(len(r) for r in rows)
        pad = self.pad_id
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attn = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            attn[i, : len(r)] = 1
        ids, attn = ids.to(self.device), attn.to(self.device)
        n_ctx = len(group.context)
        out: list[list[float]] = []
        if self.plan.path == "native":
            # Causal attention: right padding never reaches a real position.
            hidden = self.decoder(input_ids=ids).last_hidden_state
            for i, c in enumerate(group.continuations):
                cols = list(range(n_ctx - 1, n_ctx - 1 + len(c)))
                out.append(self.token_scores(hidden, [host[i]] * len(c), cols, list(c))[0])
            return out
        # The full model forward (its own head, scaling and softcapping), not the backend's.
        # Logits only from the first scored position on (every row's continuation starts
        # there), where the model takes `logits_to_keep` as indices.
        keep = torch.arange(n_ctx - 1, width, device=self.device)
        try:
            logits = self.model(input_ids=ids, attention_mask=attn, logits_to_keep=keep).logits
            start = 0
        except TypeError:
            logits = self.model(input_ids=ids, attention_mask=attn).logits
            start = n_ctx - 1
        for i, c in enumerate(group.continuations):
            picked = logits[host[i], start : start + len(c)].float()
            logprobs = torch.log_softmax(picked, dim=-1)
            target = torch.tensor(c, device=self.device)
            out.append(logprobs[torch.arange(len(c), device=self.device), target].tolist())
        return out


def per_group(
    groups: Sequence[ScoringGroup], token_lp: list[float], greedy: list[bool]
) -> list[tuple[TokenScore, ...]]:
    """Per-token results (in group, continuation order) summed into one score per
    continuation."""
    results: list[tuple[TokenScore, ...]] = []
    i = 0
    for g in groups:
        scores = []
        for cont in g.continuations:
            n = len(cont)
            lps = tuple(token_lp[i : i + n])
            hits = tuple(bool(x) for x in greedy[i : i + n])
            scores.append(
                TokenScore(
                    logprob=math.fsum(lps),
                    n_tokens=n,
                    is_greedy=all(hits),
                    token_logprobs=lps,
                    token_greedy=hits,
                )
            )
            i += n
        results.append(tuple(scores))
    return results
