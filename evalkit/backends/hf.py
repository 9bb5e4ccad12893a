"""Transformers backend (CPU or GPU, fp32/bf16/fp16).

Scoring packs a group's context once followed by every continuation (less its last token) into
one sequence, with a tree-shaped 4D attention mask (each branch sees the context and its own
earlier tokens) and position ids that restart after the context for every branch. Only the
positions that predict a scored token go through the vocabulary projection and log-softmax;
[batch, sequence, vocabulary] is never materialized.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evalkit.backends import kv_reuse
from evalkit.backends.arch import ArchPlan, attn_implementation, native_plan, plan_for
from evalkit.backends.base import GenerationJob, ScoringGroup, TokenScore
from evalkit.backends.damage import FiniteLogits, check_finite_weights, check_native_shapes
from evalkit.backends.guard import ParityGuard, plain_rows
from evalkit.backends.hfconfig import ConfigView, read_config
from evalkit.backends.llama_native import load_native, native_config
from evalkit.backends.routing import RouterTap, grouped, routed
from evalkit.errors import EvalkitError
from evalkit.fingerprint import TOKENIZER_FILES, model_fingerprint, tokenizer_fingerprint

DTYPES = ("float32", "bfloat16", "float16")
# Shorter shared prefixes are not worth a cache copy.
MIN_SHARED_PREFIX = 32
# Scored positions per vocabulary-projection slice.
HEAD_CHUNK = 512
# tokenizer_config.json classes that are transformers' plain fast tokenizer (5.x renamed it).
PLAIN_TOKENIZER_CLASSES = ("PreTrainedTokenizerFast", "TokenizersBackend")


class HFTokenizer:
    """lm-eval's tokenizer conventions over a transformers tokenizer."""

    def __init__(self, tokenizer: Any, fingerprint: str) -> None:
        self._tok = tokenizer
        self._fingerprint = fingerprint
        self._bos_text = (
            tokenizer.decode([tokenizer.bos_token_id])
            if tokenizer.bos_token_id is not None
            else None
        )

    @property
    def prefix_token_id(self) -> int:
        tok = self._tok
        prefix = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        if prefix is None:
            raise EvalkitError("the tokenizer has neither a BOS nor an EOS token to prefix texts")
        return int(prefix)

    @property
    def eos_token_id(self) -> int | None:
        return self._tok.eos_token_id

    @property
    def pad_token_id(self) -> int:
        tok = self._tok
        for candidate in (tok.pad_token_id, tok.eos_token_id, tok.bos_token_id, 0):
            if candidate is not None:
                return int(candidate)
        return 0  # pragma: no cover

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def vocab_size(self) -> int:
        return len(self._tok)

    def encode(self, text: str) -> list[int]:
        # As lm-eval: the tokenizer's default special tokens, unless the text already starts
        # with the BOS text.
        if self._bos_text and text.startswith(self._bos_text):
            return list(self._tok.encode(text, add_special_tokens=False))
        return list(self._tok.encode(text))

    def encode_plain(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        return str(self._tok.decode(list(ids), skip_special_tokens=True))

    @property
    def raw(self) -> Any:
        return self._tok


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _check_checkpoint(path: Path) -> None:
    if not path.exists():
        raise EvalkitError(f"checkpoint not found: {path}")
    if not path.is_dir():
        raise EvalkitError(f"checkpoint is not a directory: {path}")
    if not (path / "config.json").is_file():
        raise EvalkitError(f"not a Hugging Face checkpoint (no config.json): {path}")
    try:
        json.loads((path / "config.json").read_text())
    except ValueError as exc:
        raise EvalkitError(f"unreadable config.json in {path}: {_first_line(exc)}") from None
    if not any(p.suffix in (".safetensors", ".bin") for p in path.iterdir()):
        raise EvalkitError(f"no weights (*.safetensors or *.bin) in {path}")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise EvalkitError(
            f"no tokenizer in {path} (none of {', '.join(TOKENIZER_FILES)}); "
            "save one with tokenizer.save_pretrained"
        )


def load_tokenizer(checkpoint: str | Path, trust_remote_code: bool = False) -> HFTokenizer:
    """The checkpoint's tokenizer alone (cheap): tasks can be built before the model loads."""
    import transformers

    path = Path(checkpoint)
    _check_checkpoint(path)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    # The plain tokenizers-backed class loads without AutoTokenizer's imports (~2 s); any
    # other class goes through AutoTokenizer, as lm-eval loads it.
    name = None
    config = path / "tokenizer_config.json"
    if config.is_file():
        try:
            name = json.loads(config.read_text()).get("tokenizer_class")
        except ValueError as exc:
            raise EvalkitError(f"unreadable {config}: {_first_line(exc)}") from None
    # (Attribute access is what imports: touch AutoTokenizer only when it is needed.)
    cls: Any
    if name in PLAIN_TOKENIZER_CLASSES:
        cls = transformers.PreTrainedTokenizerFast
    else:
        cls = transformers.AutoTokenizer
    try:
        tokenizer = cls.from_pretrained(
            str(path), local_files_only=True, trust_remote_code=trust_remote_code
        )
    except Exception as exc:
        raise EvalkitError(f"no usable tokenizer in {path}: {_first_line(exc)}") from None
    return HFTokenizer(tokenizer, tokenizer_fingerprint(path))


def checkpoint_window(checkpoint: str | Path, tokenizer: HFTokenizer) -> int:
    """The model's window from the checkpoint's config.json (cheap: no weights are read and no
    transformers config classes imported), by the rule the backend uses once loaded, so tasks
    and engine agree on it."""
    return _window(ConfigView(read_config(checkpoint)), tokenizer.raw)


class HFBackend:
    name = "hf"

    def __init__(
        self,
        checkpoint: str | Path,
        *,
        device: str = "auto",
        dtype: str = "auto",
        token_budget: int | None = None,
        max_length: int | None = None,
        tokenizer: HFTokenizer | None = None,
        prefix_reuse: bool = True,
        native: bool = True,
        guard: bool = True,
        trust_remote_code: bool = False,
    ) -> None:
        import torch

        path = Path(checkpoint)
        hf_tokenizer = tokenizer or load_tokenizer(path, trust_remote_code)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype == "auto":
            dtype = "bfloat16" if device.startswith("cuda") else "float32"
        if dtype not in DTYPES:
            raise EvalkitError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
        self.device = torch.device(device)
        self.dtype_name = dtype
        self._torch_dtype = getattr(torch, dtype)
        model: Any
        shape, self.native_refusal = native_config(path) if native else (None, "turned off")
        if shape is not None:
            model = load_native(path, shape, self._torch_dtype)
            check_native_shapes(model, shape, path)
            self.plan = native_plan()
        else:
            model, self.plan = _load_transformers(path, self._torch_dtype, trust_remote_code)
        self.decoder_impl = "native-llama" if shape is not None else "transformers"
        model.to(self.device)
        model.eval()
        check_finite_weights(model, path, dtype)  # a NaN weight is an error, not a score
        self.model = model
        self.checkpoint = path
        self._tokenizer = hf_tokenizer
        self._fingerprint = model_fingerprint(path, hf_tokenizer.fingerprint)
        # config.json, not the loaded config object: class defaults must not change the window.
        self._max_length = max_length or checkpoint_window(path, hf_tokenizer)
        self._decoder = model.get_decoder()
        self._head = model.get_output_embeddings()
        if self.plan.path == "unpacked":  # can a group's context run once? (kv_reuse.py)
            reuse = kv_reuse.probe(self._decoder, self.device, hf_tokenizer.pad_token_id)
            self.plan = dataclasses.replace(self.plan, kv_reuse=reuse)
        self._softcap = getattr(model.config, "final_logit_softcapping", None)
        self._token_budget = token_budget or self._default_budget()
        # Cross-context prefix reuse (see `_shared_prefix`); off only for debugging.
        self.prefix_reuse = prefix_reuse
        self._prefix: tuple[tuple[int, ...], Any] | None = None
        # Router decisions at scored positions, for an MoE (set by `evalkit.routing_run`).
        self.routing: RouterTap | None = None
        self.guard = ParityGuard(
            enabled=guard,
            dtype=dtype,
            architecture=self.plan.model_type,
            path=self.plan.path,
            reference=self._plain_logprobs,
            reference_name=(
                "native decoder, unpacked rows"
                if self.plan.path == "native"
                else f"transformers forward ({self.plan.attn_implementation}), unpacked rows"
            ),
        )

    # -- Backend protocol ----------------------------------------------------------------
    @property
    def tokenizer(self) -> HFTokenizer:
        return self._tokenizer

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def model_fingerprint(self) -> str:
        return self._fingerprint

    @property
    def settings(self) -> Mapping[str, str]:
        return {
            "backend": "hf",
            "decoder": self.decoder_impl,
            "dtype": self.dtype_name,
            "device": self.device.type,
            "max_length": str(self._max_length),
            **self.plan.describe(),
        }

    @property
    def token_budget(self) -> int:
        return self._token_budget

    def _default_budget(self) -> int:
        import torch

        if self.device.type != "cuda":
            return 4096
        free, _ = torch.cuda.mem_get_info(self.device)
        cfg = self.model.config
        hidden = int(getattr(cfg, "hidden_size", 4096))
        return gpu_token_budget(
            int(free),
            hidden=hidden,
            intermediate=int(getattr(cfg, "intermediate_size", 4 * hidden)),
            dtype_bytes=torch.finfo(self._torch_dtype).bits // 8,
            window=self._max_length,
        )

    def score(self, groups: Sequence[ScoringGroup]) -> list[tuple[TokenScore, ...]]:
        import torch

        if not groups:
            return []
        with torch.inference_mode():
            results = self._score(groups)
            # Before the engine stores anything: the first batches' sample against the
            # model's plain forward (raises over tolerance).
            self.guard.check(groups, results)
        return results

    @property
    def guard_report(self) -> dict[str, object]:
        """The parity guard's outcome, for the manifest."""
        return self.guard.report().to_dict()

    def _plain_logprobs(self, group: ScoringGroup) -> list[list[float]]:
        """Per-token log-probs of each continuation by the model's own plain forward of its
        sequence (context + continuation, less its last token): no packing, no position ids,
        no cache; a group's rows right-padded into one batch under the model's own masks, a
        sequence that is a prefix of another read off the longer row (`guard.plain_rows`)."""
        import torch

        rows, host = plain_rows([(list(group.context) + list(c))[:-1] for c in group.continuations])
        width = max(len(r) for r in rows)
        pad = self._tokenizer.pad_token_id
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
            hidden = self._decoder(input_ids=ids).last_hidden_state
            for i, c in enumerate(group.continuations):
                cols = list(range(n_ctx - 1, n_ctx - 1 + len(c)))
                out.append(self._token_scores(hidden, [host[i]] * len(c), cols, list(c))[0])
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

    def _score(self, groups: Sequence[ScoringGroup]) -> list[tuple[TokenScore, ...]]:
        results: list[tuple[TokenScore, ...] | None] = [None] * len(groups)
        packed: list[int] = []
        unpacked: list[int] = []
        limit = self.plan.rope_threshold
        for i, g in enumerate(groups):
            # Length-dependent RoPE switches on at the batch's largest position: a group that
            # reaches past the original length is scored row by row, as its plain forward.
            if self.plan.path == "unpacked" or (limit is not None and g.longest_branch > limit):
                unpacked.append(i)
            else:
                packed.append(i)
        if packed:
            for i, r in zip(packed, self._score_packed([groups[i] for i in packed]), strict=True):
                results[i] = r
        if unpacked:
            chosen = [groups[i] for i in unpacked]
            for i, r in zip(unpacked, self._score_unpacked(chosen), strict=True):
                results[i] = r
        return [r for r in results if r is not None]

    def _score_packed(self, groups: Sequence[ScoringGroup]) -> list[tuple[TokenScore, ...]]:
        import torch

        n_rows = len(groups)
        width = max(g.packed_length for g in groups)
        pad = self._tokenizer.pad_token_id
        ids = torch.full((n_rows, width), pad, dtype=torch.long)
        # Padding slots keep position 0: no position id past what the model accepts.
        positions = torch.zeros((n_rows, width), dtype=torch.long)
        segment = torch.full((n_rows, width), -1, dtype=torch.long)
        # Per scored token: (row, column whose hidden state predicts it, target id).
        rows: list[int] = []
        cols: list[int] = []
        targets: list[int] = []
        branched = False
        for r, g in enumerate(groups):
            n_ctx = len(g.context)
            tokens = list(g.context)
            pos = list(range(n_ctx))
            seg = [0] * n_ctx
            for b, cont in enumerate(g.continuations, start=1):
                start = len(tokens)
                body = cont[:-1]
                tokens.extend(body)
                pos.extend(range(n_ctx, n_ctx + len(body)))
                seg.extend([b] * len(body))
                branched = branched or bool(body)
                # The first continuation token is predicted by the context's last position,
                # the next ones by the branch's own tokens.
                predictors = [n_ctx - 1, *range(start, start + len(body))]
                rows.extend([r] * len(cont))
                cols.extend(predictors)
                targets.extend(cont)
            L = len(tokens)
            ids[r, :L] = torch.tensor(tokens)
            positions[r, :L] = torch.tensor(pos)
            segment[r, :L] = torch.tensor(seg)
        windowed = any(w is not None and w < width for w in self.plan.windows.values())
        shared = self._shared_prefix([g.context for g in groups]) if self.plan.prefix_reuse else 0
        past = self._prefix_cache(groups[0].context[:shared], len(groups)) if shared else None
        mask: Any = None
        if branched or windowed:
            mask = self._tree_masks(segment, positions, shared)
        ids = ids[:, shared:].to(self.device)
        positions = positions[:, shared:].to(self.device)
        cols = [c - shared for c in cols]
        owners = lambda: [(g.context, c) for g in groups for c in g.continuations for _ in c]  # noqa: E731
        # Without branches or windows, right padding under the plain causal mask leaves every
        # real position untouched, so no mask is needed.
        with routed(self.routing, ids.shape[1], rows, cols, owners):
            out = self._decoder(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=past,
                use_cache=past is not None,
            )
        token_lp, greedy = self._token_scores(out.last_hidden_state, rows, cols, targets)
        return _per_group(groups, token_lp, greedy)

    def _tree_masks(self, segment: Any, positions: Any, shared: int) -> Any:
        """The packed rows' 4D masks: each branch sees the context and its own earlier tokens;
        a sliding layer also only keys within its window of the query's position (as the
        model's own sliding mask: query - key < window). One mask, or one per layer kind."""
        import torch

        seg_t = segment.to(self.device)
        pos_t = positions.to(self.device)
        width = seg_t.shape[1]
        idx = torch.arange(width, device=self.device)
        causal = idx[None, :] <= idx[:, None]
        key_seg = seg_t[:, None, :]
        tree = causal[None] & ((key_seg == 0) | (key_seg == seg_t[:, :, None]))
        # Queries are the uncached positions; keys are all of them (cached prefix first).
        tree = tree[:, shared:, :]
        distance = (pos_t[:, :, None] - pos_t[:, None, :])[:, shared:, :]
        built: dict[int | None, Any] = {}
        for window in set(self.plan.windows.values()):
            allowed = tree if window is None else tree & (distance < window)
            mask = torch.zeros(allowed.shape, dtype=self._torch_dtype, device=self.device)
            mask.masked_fill_(~allowed, torch.finfo(self._torch_dtype).min)
            built[window] = mask[:, None]
        if self.plan.by_layer_type:
            return {kind: built[w] for kind, w in self.plan.windows.items()}
        return built[self.plan.windows.get("all")]

    def _score_unpacked(self, groups: Sequence[ScoringGroup]) -> list[tuple[TokenScore, ...]]:
        """Under the model's own masks and position ids, for what packing cannot reproduce: a
        group with several continuations runs its context once and reuses its KV cache where
        the cache allows (`kv_reuse.py`); the rest as one right-padded row per (context,
        continuation)."""
        limit = self.plan.rope_threshold
        reuse = [
            i
            for i, g in enumerate(groups)
            if self.plan.kv_reuse == kv_reuse.ON
            and len(g.continuations) > 1
            # Length-dependent RoPE: frequencies follow the forward's largest position.
            and (limit is None or g.longest_branch <= limit)
        ]
        results: list[tuple[TokenScore, ...] | None] = [None] * len(groups)
        for i in reuse:
            results[i] = self._score_reused(groups[i])
        rest = [i for i in range(len(groups)) if results[i] is None]
        if rest:
            for i, r in zip(rest, self._score_rows([groups[i] for i in rest]), strict=True):
                results[i] = r
        return [r for r in results if r is not None]

    def _context_pass(self, context: tuple[int, ...]) -> tuple[Any, Any]:
        """Hidden states and KV cache of one context, alone."""
        import torch

        out = self._decoder(input_ids=torch.tensor([context], device=self.device), use_cache=True)
        return out.last_hidden_state, out.past_key_values

    def _score_reused(self, group: ScoringGroup) -> tuple[TokenScore, ...]:
        """One context pass; every continuation's first token from its last position, the
        other tokens as a right-padded batch over the (repeated) cache. An MoE's routing adds
        up over both passes per continuation (the context's last position once for each), as
        its plain row would count it (`routing.py`)."""
        with grouped(self.routing):
            return self._score_reused_passes(group)

    def _score_reused_passes(self, group: ScoringGroup) -> tuple[TokenScore, ...]:
        import copy

        import torch

        n_ctx = len(group.context)
        conts = group.continuations
        ctx = group.context
        with routed(
            self.routing,
            n_ctx,
            [0] * len(conts),
            [n_ctx - 1] * len(conts),
            lambda: [(ctx, c) for c in conts],
        ):
            hidden, cache = self._context_pass(ctx)
        first_lp, first_hit = self._token_scores(
            hidden, [0] * len(conts), [n_ctx - 1] * len(conts), [c[0] for c in conts]
        )
        token_lp = [[lp] for lp in first_lp]
        greedy = [[hit] for hit in first_hit]
        multi = [i for i, c in enumerate(conts) if len(c) > 1]
        width = max((len(conts[i]) - 1 for i in multi), default=0)
        pad = self._tokenizer.pad_token_id
        parts = kv_reuse.chunks(len(multi), n_ctx + width, self._token_budget)
        for k, part in enumerate(parts):
            rows = [multi[j] for j in part]
            # The last chunk may use the context's cache itself; earlier ones a copy.
            past = cache if k == len(parts) - 1 else copy.deepcopy(cache)
            if len(rows) > 1:
                past.batch_repeat_interleave(len(rows))
            ids = torch.full((len(rows), width), pad, dtype=torch.long)
            attn = torch.zeros((len(rows), n_ctx + width), dtype=torch.long)
            attn[:, :n_ctx] = 1
            r_idx: list[int] = []
            cols: list[int] = []
            targets: list[int] = []
            for r, i in enumerate(rows):
                body = conts[i][:-1]
                ids[r, : len(body)] = torch.tensor(body)
                attn[r, n_ctx : n_ctx + len(body)] = 1
                r_idx.extend([r] * len(body))
                cols.extend(range(len(body)))
                targets.extend(conts[i][1:])
            owners = lambda rows=rows: [  # noqa: E731
                (ctx, conts[i]) for i in rows for _ in range(len(conts[i]) - 1)
            ]
            with routed(self.routing, width, r_idx, cols, owners):
                out = self._decoder(
                    input_ids=ids.to(self.device),
                    attention_mask=attn.to(self.device),
                    past_key_values=past,
                    use_cache=True,
                )
            lps, hits = self._token_scores(out.last_hidden_state, r_idx, cols, targets)
            at = 0
            for i in rows:
                n = len(conts[i]) - 1
                token_lp[i] += lps[at : at + n]
                greedy[i] += hits[at : at + n]
                at += n
        flat_lp = [x for row in token_lp for x in row]
        flat_hit = [x for row in greedy for x in row]
        return _per_group([group], flat_lp, flat_hit)[0]

    def _score_rows(self, groups: Sequence[ScoringGroup]) -> list[tuple[TokenScore, ...]]:
        """Each (context, continuation) as its own right-padded row: the obvious computation."""
        import torch

        units = [(g.context, c) for g in groups for c in g.continuations]
        order = sorted(range(len(units)), key=lambda i: -_row_length(units[i]))
        limit = self.plan.rope_threshold
        batches: list[list[int]] = []
        for i in order:
            n = _row_length(units[i])
            alone = limit is not None and n > limit
            last = batches[-1] if batches else None
            if (
                last is None
                or alone
                or (limit is not None and _row_length(units[last[0]]) > limit)
                or (len(last) + 1) * _row_length(units[last[0]]) > self._token_budget
            ):
                batches.append([i])
            else:
                last.append(i)
        token_lp_of: dict[int, list[float]] = {}
        greedy_of: dict[int, list[bool]] = {}
        pad = self._tokenizer.pad_token_id
        for batch in batches:
            width = _row_length(units[batch[0]])
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            attn = torch.zeros((len(batch), width), dtype=torch.long)
            rows: list[int] = []
            cols: list[int] = []
            targets: list[int] = []
            for r, i in enumerate(batch):
                ctx, cont = units[i]
                tokens = list(ctx) + list(cont[:-1])
                ids[r, : len(tokens)] = torch.tensor(tokens)
                attn[r, : len(tokens)] = 1
                rows.extend([r] * len(cont))
                cols.extend(range(len(ctx) - 1, len(tokens)))
                targets.extend(cont)
            owners = lambda b=batch: [units[i] for i in b for _ in units[i][1]]  # noqa: E731
            with routed(self.routing, width, rows, cols, owners):
                out = self._decoder(
                    input_ids=ids.to(self.device), attention_mask=attn.to(self.device)
                )
            lps, hits = self._token_scores(out.last_hidden_state, rows, cols, targets)
            at = 0
            for i in batch:
                n = len(units[i][1])
                token_lp_of[i], greedy_of[i] = lps[at : at + n], hits[at : at + n]
                at += n
        token_lp = [x for i in range(len(units)) for x in token_lp_of[i]]
        greedy = [x for i in range(len(units)) for x in greedy_of[i]]
        return _per_group(groups, token_lp, greedy)

    def _token_scores(
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
            logits = self._head(picked[start : start + HEAD_CHUNK]).float()
            if self._softcap:
                logits = torch.tanh(logits / self._softcap) * self._softcap
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

    def _shared_prefix(self, contexts: Sequence[tuple[int, ...]]) -> int:
        """Tokens at the start of every context of a batch (a few-shot preamble, say) that can
        be computed once: never the last context token, whose position is scored."""
        if not self.prefix_reuse:
            return 0
        first = contexts[0]
        limit = min(len(c) for c in contexts) - 1
        n = 0
        while n < limit and all(c[n] == first[n] for c in contexts):
            n += 1
        if self._prefix is not None:
            # Reuse the previous batch's prefix when it covers enough of this batch's.
            stored = self._prefix[0]
            m = 0
            while m < min(n, len(stored)) and stored[m] == first[m]:
                m += 1
            if m >= MIN_SHARED_PREFIX:
                return m
        return n if n >= MIN_SHARED_PREFIX and len(contexts) > 1 else 0

    def _prefix_cache(self, prefix: tuple[int, ...], rows: int) -> Any:
        """Key/value cache of `prefix`, repeated for `rows` rows. The last prefix computed is
        kept, so a preamble shared by a whole task is computed once per run, not per batch."""
        import copy

        import torch

        if self._prefix is None or self._prefix[0][: len(prefix)] != prefix:
            ids = torch.tensor([prefix], device=self.device)
            out = self._decoder(input_ids=ids, use_cache=True)
            self._prefix = (prefix, out.past_key_values)
        cache = copy.deepcopy(self._prefix[1])
        extra = len(self._prefix[0]) - len(prefix)
        if extra:
            # A negative count removes that many tokens (transformers 5 refuses positive ones).
            cache.crop(-extra)
        if rows > 1:
            cache.batch_repeat_interleave(rows)
        return cache

    def generate(self, jobs: Sequence[GenerationJob]) -> list[tuple[str, ...]]:
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
                texts = self._generate([jobs[i] for i in idxs], max_tokens, sample=False)
                for i, t in zip(idxs, texts, strict=True):
                    out[i] = (t,)
            for i, job in enumerate(jobs):
                if job.temperature > 0:
                    torch.manual_seed(job.seed)
                    out[i] = tuple(self._generate([job] * job.n, job.max_tokens, sample=True))
            return [out[i] for i in range(len(jobs))]

    def _generate(self, jobs: Sequence[GenerationJob], max_tokens: int, sample: bool) -> list[str]:
        import torch
        import transformers

        pad = self._tokenizer.pad_token_id
        width = max(len(j.prompt) for j in jobs)
        ids = torch.full((len(jobs), width), pad, dtype=torch.long)
        attn = torch.zeros((len(jobs), width), dtype=torch.long)
        for r, j in enumerate(jobs):
            ids[r, width - len(j.prompt) :] = torch.tensor(j.prompt)
            attn[r, width - len(j.prompt) :] = 1
        stops = sorted({s for j in jobs for s in j.stop if s})
        criteria = transformers.StoppingCriteriaList()
        if stops:
            criteria.append(_StopOnText(self._tokenizer, stops, width))
        kwargs: dict[str, Any] = {"do_sample": sample}
        if sample:
            kwargs.update(temperature=jobs[0].temperature, top_k=0, top_p=1.0)
        else:
            kwargs.update(temperature=None, top_k=None, top_p=None)
        eos = self._tokenizer.eos_token_id
        generated = self.model.generate(
            input_ids=ids.to(self.device),
            attention_mask=attn.to(self.device),
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
            texts.append(cut_at_stop(self._tokenizer.decode(new), j.stop))
        return texts


def _row_length(unit: tuple[tuple[int, ...], tuple[int, ...]]) -> int:
    return len(unit[0]) + len(unit[1]) - 1


def _per_group(
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


def _load_transformers(
    path: Path, dtype: Any, trust_remote_code: bool = False
) -> tuple[Any, ArchPlan]:
    """The model, with the attention implementation that keeps its math (`arch.py`), and
    the scoring path for it."""
    import transformers

    model: Any
    info: dict[str, Any]
    try:
        config = transformers.AutoConfig.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:
        raise EvalkitError(f"cannot read the config of {path}: {_first_line(exc)}") from None
    attn = attn_implementation(config)
    try:
        model, info = transformers.AutoModelForCausalLM.from_pretrained(  # type: ignore[misc]
            str(path),
            config=config,
            local_files_only=True,
            dtype=dtype,
            output_loading_info=True,
            attn_implementation=attn,
            trust_remote_code=trust_remote_code,
        )
    except Exception as exc:
        # transformers puts its reason (e.g. a size mismatch report) above a generic last line.
        raise EvalkitError(f"cannot load weights from {path}: {_first_line(exc)}") from None
    missing = list(info.get("missing_keys", []))
    if missing:
        raise EvalkitError(
            f"weights in {path} lack {len(missing)} tensors (e.g. {missing[0]}): "
            "refusing to score a partly random model"
        )
    return model, plan_for(model.config, attn)


# Share of the free GPU memory one scoring batch may take (the rest: allocator slack, the
# prefix cache, the vocabulary projection's slices).
BUDGET_FRACTION = 0.5
MIN_BUDGET = 2048
MAX_BUDGET = 262144


def gpu_token_budget(
    free_bytes: int, *, hidden: int, intermediate: int, dtype_bytes: int, window: int
) -> int:
    """Padded tokens per scoring batch that fit in `free_bytes` of GPU memory.

    Per token: one layer's activations at a time (residual, attention in/out, MLP in/out),
    plus one row of the packed 4D mask (a float per key of the window)."""
    per_token = (6 * hidden + 3 * intermediate) * dtype_bytes + 4 * window
    budget = int(free_bytes * BUDGET_FRACTION / per_token)
    return max(MIN_BUDGET, min(budget, MAX_BUDGET))


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


def _window(config: Any, tokenizer: Any) -> int:
    text_config = getattr(config, "text_config", None)
    for cfg in (text_config, config):
        if cfg is None:
            continue
        for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
            value = getattr(cfg, attr, None)
            if isinstance(value, int) and value > 0:
                return value
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 1_000_000_000:
        return limit
    return 2048
