"""Loads this folder's JSONL docs for the YAML tasks here, wherever the process runs from.

lm-eval resolves ``!function utils.load_jsonl`` next to the YAML file, and passes the task's
``dataset_kwargs`` (here ``file``) plus its metadata to it as keyword arguments.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def load_jsonl(file: str, split: str = "test", **_: Any) -> dict[str, Any]:
    import datasets

    rows = [
        json.loads(line)
        for line in (HERE / file).read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    return {split: datasets.Dataset.from_list(rows)}
