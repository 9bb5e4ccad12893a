"""What a Hugging Face checkpoint directory offers before its weights load: the checks that it
is one, its tokenizer (with lm-eval's conventions) and its window. Cheap: tasks are built from
these before the model loads, and every backend sizes items by the same window rule."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evalkit.backends.hfconfig import ConfigView, read_config
from evalkit.errors import EvalkitError
from evalkit.fingerprint import TOKENIZER_FILES, tokenizer_fingerprint

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


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def check_checkpoint(path: Path) -> None:
    if not path.exists():
        raise EvalkitError(f"checkpoint not found: {path}")
    if not path.is_dir():
        raise EvalkitError(f"checkpoint is not a directory: {path}")
    if not (path / "config.json").is_file():
        raise EvalkitError(f"not a Hugging Face checkpoint (no config.json): {path}")
    try:
        json.loads((path / "config.json").read_text())
    except ValueError as exc:
        raise EvalkitError(f"unreadable config.json in {path}: {first_line(exc)}") from None
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
    check_checkpoint(path)
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
            raise EvalkitError(f"unreadable {config}: {first_line(exc)}") from None
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
        raise EvalkitError(f"no usable tokenizer in {path}: {first_line(exc)}") from None
    return HFTokenizer(tokenizer, tokenizer_fingerprint(path))


def checkpoint_window(checkpoint: str | Path, tokenizer: HFTokenizer) -> int:
    """The model's window from the checkpoint's config.json (cheap: no weights are read and no
    transformers config classes imported), by the rule the backend uses once loaded, so tasks
    and engine agree on it."""
    return window_of(ConfigView(read_config(checkpoint)), tokenizer.raw)


def window_of(config: Any, tokenizer: Any) -> int:
    """The window rule every backend uses: the (text) config's `n_positions`,
    `max_position_embeddings` or `n_ctx`, else the tokenizer's `model_max_length`, else 2048."""
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
