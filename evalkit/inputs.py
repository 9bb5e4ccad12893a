"""Checks of the user's options that must fail in one line before a model loads (so a typo
does not cost a model load, and never ends in a traceback after the work is done)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from evalkit.errors import EvalkitError


def check_device(device: str) -> None:
    """`auto`, or a device torch knows and this machine has (`cpu`, `cuda`, `cuda:N`, ...)."""
    if device == "auto":
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise EvalkitError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise EvalkitError(f"--device {device}: no CUDA device is visible here")
        if dev.index is not None and dev.index >= count:
            raise EvalkitError(f"--device {device}: only {count} CUDA device(s) here")


def check_token_budget(budget: int | None) -> None:
    if budget is not None and budget < 1:
        raise EvalkitError(f"--token-budget must be a positive number of tokens, got {budget}")


def check_backend_options(backend: str, vllm_options: Sequence[str]) -> None:
    """vLLM settings given to a run that does not use vLLM would be ignored: say so instead."""
    if vllm_options and backend != "vllm":
        raise EvalkitError(
            f"--vllm-option is for the vllm backend; this run uses {backend} (give --backend vllm)"
        )


def check_writable_folder(folder: Path, what: str) -> None:
    """`folder` exists (made if needed) and takes a file: checked by writing one."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".evalkit-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise EvalkitError(f"cannot write the {what} in {folder}: {exc.strerror or exc}") from None
