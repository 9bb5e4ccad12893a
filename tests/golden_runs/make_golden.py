"""Write the golden run directory of the schema version of the evalkit on PYTHONPATH.

How the committed goldens were made (tests/golden_runs/README.md says it again):

    # version 1: evalkit at commit 8dbb6f3 (before evalkit.schema), e.g. a `git worktree`
    PYTHONPATH=<that checkout> python tests/golden_runs/make_golden.py tests/golden_runs/v1
    # version 2: evalkit before its RunConfig (branch i18schema's merge, 5578341)
    PYTHONPATH=<that checkout> python tests/golden_runs/make_golden.py tests/golden_runs/v2
    # version 3: this checkout
    PYTHONPATH=$PWD python tests/golden_runs/make_golden.py tests/golden_runs/v3

Deterministic apart from times and commits: a scripted needle reader (evalkit.backends.fake)
scores a small needle task (a length beyond the window, so items are skipped), a few-shot curve
and a label probe (k and condition buckets, summaries), two multilingual tasks (language rows
and gaps, a family row) with a few items each.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import evalkit
from evalkit.backends.fake import NeedleReader

NIAH = """
name: g_niah_single
family: longctx
version: 1
kind: probe
probe: niah
variant: single
haystack: noise
lengths: [1024, 2048, 8192]
depths: [0, 100]
samples: 1
max_new_tokens: 40
seed: 7
"""

TASKS = [
    "g_niah_single",
    "icl_fewshot_curve",
    "icl_label_probe",
    "multilingual_number_words_mc",
    "multilingual_mgsm_mc",
]


def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tdir = Path(tmp) / "tasks"
        tdir.mkdir()
        (tdir / "g_niah_single.yaml").write_text(NIAH)
        if out.exists():
            shutil.rmtree(out)
        evalkit.score(
            "golden-ckpt",
            tasks=TASKS,
            tasks_dir=tdir,
            backend=NeedleReader(1024, new_tokens=40).backend(max_length=4096),
            out=out,
            limit=24,
            use_cache=False,
            progress=False,
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
