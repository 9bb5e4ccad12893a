"""Content-addressed result cache: (model fingerprint, backend settings, request hash) -> result.

SQLite in WAL mode, committed after every batch, so a run killed with SIGKILL loses at most
the batch in flight and a second run (or a second suite) reuses everything already computed.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path

from evalkit.errors import EvalkitError
from evalkit.requests import (
    GenerateResult,
    LoglikelihoodResult,
    Response,
    RollingResult,
    TokenLogprobsResult,
)


def cache_key(model_fingerprint: str, settings: Mapping[str, str], request_hash: str) -> str:
    blob = json.dumps(
        {"model": model_fingerprint, "settings": dict(settings), "request": request_hash},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def encode_response(response: Response) -> str:
    if isinstance(response, LoglikelihoodResult):
        payload: dict[str, object] = {
            "kind": "loglikelihood",
            "logprob": response.logprob,
            "n_tokens": response.n_tokens,
            "is_greedy": response.is_greedy,
        }
    elif isinstance(response, RollingResult):
        payload = {"kind": "rolling", "logprob": response.logprob, "n_tokens": response.n_tokens}
    elif isinstance(response, TokenLogprobsResult):
        payload = {
            "kind": "token_logprobs",
            "logprobs": list(response.logprobs),
            "greedy": list(response.greedy),
        }
    else:
        payload = {"kind": "generate", "texts": list(response.texts)}
    # json writes floats with repr(), which round-trips exactly.
    return json.dumps(payload)


def decode_response(blob: str) -> Response:
    data = json.loads(blob)
    kind = data["kind"]
    if kind == "loglikelihood":
        return LoglikelihoodResult(
            logprob=float(data["logprob"]),
            n_tokens=int(data["n_tokens"]),
            is_greedy=bool(data["is_greedy"]),
        )
    if kind == "rolling":
        return RollingResult(logprob=float(data["logprob"]), n_tokens=int(data["n_tokens"]))
    if kind == "generate":
        return GenerateResult(texts=tuple(str(t) for t in data["texts"]))
    if kind == "token_logprobs":
        return TokenLogprobsResult(
            logprobs=tuple(float(x) for x in data["logprobs"]),
            greedy=tuple(bool(x) for x in data["greedy"]),
        )
    raise ValueError(f"unknown cached response kind {kind!r}")


class ResultCache:
    """A persistent map from cache keys to responses."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # An unusable folder (under a file, read-only, /proc) is the user's to fix: one line.
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), timeout=60)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, value TEXT)"
            )
            self._db.commit()
        except (OSError, sqlite3.Error) as exc:
            why = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise EvalkitError(
                f"unusable cache directory {path.parent}: {why} (give --cache-dir DIR or --no-cache)"
            ) from None

    def get_many(self, keys: Iterable[str]) -> dict[str, Response]:
        found: dict[str, Response] = {}
        key_list = list(keys)
        # SQLite caps bound parameters; query in chunks.
        for start in range(0, len(key_list), 500):
            chunk = key_list[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT key, value FROM results WHERE key IN ({marks})", chunk
            ).fetchall()
            for key, value in rows:
                found[key] = decode_response(value)
        return found

    def put_many(self, items: Mapping[str, Response]) -> None:
        if not items:
            return
        self._db.executemany(
            "INSERT OR REPLACE INTO results (key, value) VALUES (?, ?)",
            [(k, encode_response(v)) for k, v in items.items()],
        )
        self._db.commit()

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0])

    def close(self) -> None:
        self._db.close()
