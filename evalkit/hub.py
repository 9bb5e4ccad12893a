"""Checkpoints named by Hugging Face hub id: `ORG/NAME[@REVISION]` -> a local snapshot.

Resolved the way transformers resolves `from_pretrained("ORG/NAME", revision=...)`, through
`huggingface_hub`: the local cache first (`HF_HUB_CACHE`, `HF_HOME`; a branch or tag is read
from the cache's `refs/`, a commit sha names its snapshot), downloading only when the cache lacks
it and the hub is allowed (`HF_HUB_OFFLINE` unset). The snapshot folder's name is the resolved
commit sha; it goes into the run's manifest. An existing local directory always wins over a
hub id of the same spelling.

A checkpoint whose config maps its classes to code in the repository (`auto_map`) runs that code
when loaded; evalkit loads it only when `trust_remote_code` is given.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.errors import EvalkitError

# What a causal LM checkpoint needs (transformers' loading reads nothing else).
_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.py", "*.jinja"]
_BIN_PATTERNS = ["*.bin", "*.bin.index.json"]
# ORG/NAME or NAME with the hub's allowed characters, optionally @REVISION.
_HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*(?:/[\w.-]+)?)(?:@(?P<rev>[^\s@]+))?$")
_TRUE = {"1", "on", "yes", "true"}


@dataclass(frozen=True)
class ResolvedCheckpoint:
    path: Path
    repo_id: str | None = None  # None: a local directory
    revision: str | None = None  # as asked (branch, tag or sha); None: the default branch
    commit: str | None = None  # the snapshot's commit sha

    def manifest(self) -> dict[str, Any] | None:
        if self.repo_id is None:
            return None
        return {"repo_id": self.repo_id, "revision": self.revision or "main", "commit": self.commit}


def offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in _TRUE
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))  # fmt: skip


def parse_hub_id(text: str) -> tuple[str, str | None] | None:
    """(repo id, revision) when `text` reads as a hub id, else None."""
    if text.startswith((".", "/", "~")) or text.endswith("/") or "\\" in text:
        return None
    m = _HUB_ID.match(text)
    if m is None or m.group("repo").endswith((".", "-")):
        return None
    return m.group("repo"), m.group("rev")


def resolve_checkpoint(
    ref: str | Path, revision: str | None = None, cache_dir: str | Path | None = None
) -> ResolvedCheckpoint:
    """A local directory as it is; a hub id as its snapshot in the cache (downloaded if allowed)."""
    path = Path(ref)
    if path.exists():
        if revision is not None:
            raise EvalkitError(f"--revision applies to hub ids, but {ref} is a local directory")
        return ResolvedCheckpoint(path)
    parsed = parse_hub_id(str(ref))
    if parsed is None:
        raise EvalkitError(f"checkpoint not found: {ref}")
    repo_id, at = parsed
    if at is not None and revision is not None and at != revision:
        raise EvalkitError(f"{ref} names revision {at!r} but --revision says {revision!r}")
    rev = revision or at
    snapshot = _snapshot(repo_id, rev, cache_dir)
    return ResolvedCheckpoint(snapshot, repo_id, rev, snapshot.name)


def _snapshot(repo_id: str, revision: str | None, cache_dir: str | Path | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    what = f"{repo_id}@{revision or 'main'}"
    kw: dict[str, Any] = {"repo_id": repo_id, "revision": revision}
    if cache_dir is not None:
        kw["cache_dir"] = str(cache_dir)
    try:
        return Path(snapshot_download(**kw, local_files_only=True))
    except LocalEntryNotFoundError:
        pass
    except Exception as exc:
        raise EvalkitError(
            f"cannot read {what} from the Hugging Face cache: {_line(exc)}"
        ) from None
    if offline():
        raise EvalkitError(
            f"checkpoint {repo_id} (revision {revision or 'main'}) is not a local directory and "
            "not in the Hugging Face cache, and HF_HUB_OFFLINE=1 forbids downloading it"
        )
    try:
        path = Path(snapshot_download(**kw, allow_patterns=_PATTERNS))
        if not any(path.glob("*.safetensors")):
            path = Path(snapshot_download(**kw, allow_patterns=_BIN_PATTERNS))
    except Exception as exc:
        raise EvalkitError(f"cannot download {what} from the hub: {_line(exc)}") from None
    return path


def _line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0].strip() if lines else "") or type(exc).__name__


def needs_remote_code(checkpoint: Path) -> str | None:
    """The file whose `auto_map` makes loading run the repository's own code, if any."""
    for name in ("config.json", "tokenizer_config.json"):
        p = checkpoint / name
        if not p.is_file():
            continue
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except ValueError:
            continue  # the loader names unreadable files
        if isinstance(data, dict) and data.get("auto_map"):
            return name
    return None


def check_remote_code(checkpoint: Path, name: str, trust_remote_code: bool) -> None:
    where = needs_remote_code(checkpoint)
    if where is not None and not trust_remote_code:
        raise EvalkitError(
            f"checkpoint {name} runs its own model code ({where} has auto_map); "
            "pass --trust-remote-code to allow it"
        )
