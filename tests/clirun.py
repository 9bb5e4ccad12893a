"""`evalkit ...` run in this process (typer's CliRunner), answered as a finished subprocess.

A subprocess pays for a fresh interpreter and a fresh torch/transformers import on every call
(seconds on a loaded 2-core machine); tests of what a command says and exits with do not need
one. What stays a real subprocess per command family: the process boundary itself (SIGKILL,
imports, the `python -m evalkit.cli` entry point, output a library writes straight to the
stream). An exception that escapes a command comes back as exit 1 with its traceback on stderr,
as the real process would print it, so "no traceback, one line" checks keep their teeth.
"""

from __future__ import annotations

import contextlib
import subprocess
import traceback
from pathlib import Path


def run_cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    from typer.testing import CliRunner

    from evalkit.cli import app

    argv = [str(a) for a in args]
    with contextlib.chdir(cwd) if cwd is not None else contextlib.nullcontext():
        res = CliRunner().invoke(app, argv)
    stderr = res.stderr
    if res.exc_info is not None and not isinstance(res.exception, SystemExit):
        stderr += "".join(traceback.format_exception(*res.exc_info))
    return subprocess.CompletedProcess(
        ["evalkit", *argv], res.exit_code, stdout=res.stdout, stderr=stderr
    )
