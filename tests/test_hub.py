"""Checkpoints by hub id, from a Hugging Face cache laid out in a temporary folder (no network).

The bundled tiny checkpoint is copied into `models--evalkit-test--tiny-base/snapshots/<sha>/`
with `refs/main` naming the sha, exactly where huggingface_hub (and transformers) look.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from evalkit.errors import EvalkitError
from evalkit.hub import check_remote_code, parse_hub_id, resolve_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TINY_BASE = ROOT / "examples" / "checkpoints" / "tiny-base"
REPO = "evalkit-test/tiny-base"
SHA = "0123456789abcdef0123456789abcdef01234567"
OLD_SHA = "fedcba9876543210fedcba9876543210fedcba98"


def make_cache(root: Path) -> Path:
    """A hub cache holding REPO at SHA (main) and at OLD_SHA (tag v0, without its weights'
    provenance file: a different snapshot)."""
    repo = root / "models--evalkit-test--tiny-base"
    for sha in (SHA, OLD_SHA):
        shutil.copytree(TINY_BASE, repo / "snapshots" / sha)
    (repo / "snapshots" / OLD_SHA / "provenance.yaml").unlink()
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SHA)
    (repo / "refs" / "v0").write_text(OLD_SHA)
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cache(tmp_path_factory.mktemp("hf") / "hub")


@pytest.fixture()
def hub_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_hub_ids_are_told_from_paths() -> None:
    assert parse_hub_id("EleutherAI/pythia-70m") == ("EleutherAI/pythia-70m", None)
    assert parse_hub_id("EleutherAI/pythia-70m@step3000") == ("EleutherAI/pythia-70m", "step3000")
    assert parse_hub_id("gpt2") == ("gpt2", None)
    for path in ("./ckpt", "/abs/ckpt", "ckpt/", "runs/a/b", "~/m", "a/b@c@d"):
        assert parse_hub_id(path) is None, path


def test_resolves_the_default_branch_a_tag_and_a_sha(cache: Path, hub_offline: None) -> None:
    main = resolve_checkpoint(REPO, cache_dir=cache)
    assert main.commit == SHA and main.path.name == SHA and (main.path / "config.json").is_file()
    assert main.manifest() == {"repo_id": REPO, "revision": "main", "commit": SHA}
    tag = resolve_checkpoint(f"{REPO}@v0", cache_dir=cache)
    assert tag.commit == OLD_SHA and tag.revision == "v0"
    assert resolve_checkpoint(REPO, revision=OLD_SHA, cache_dir=cache).commit == OLD_SHA
    with pytest.raises(EvalkitError, match="--revision"):
        resolve_checkpoint(f"{REPO}@v0", revision="main", cache_dir=cache)


def test_a_local_directory_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = tmp_path / "evalkit-test" / "tiny-base"
    shutil.copytree(TINY_BASE, local)
    monkeypatch.chdir(tmp_path)
    got = resolve_checkpoint(REPO)
    assert got.repo_id is None and got.path == Path(REPO) and got.manifest() is None
    with pytest.raises(EvalkitError, match="local directory"):
        resolve_checkpoint(REPO, revision="main")


@pytest.mark.parametrize("ref", [REPO + "@nope", "evalkit-test/absent"])
def test_offline_and_not_cached_is_one_line_naming_id_revision_and_offline(
    cache: Path, hub_offline: None, ref: str
) -> None:
    with pytest.raises(EvalkitError) as err:
        resolve_checkpoint(ref, cache_dir=cache)
    msg = str(err.value)
    repo, _, rev = ref.partition("@")
    assert repo in msg and (rev or "main") in msg and "HF_HUB_OFFLINE" in msg
    assert "\n" not in msg


def test_remote_code_needs_the_flag(tmp_path: Path) -> None:
    ckpt = tmp_path / "custom"
    shutil.copytree(TINY_BASE, ckpt)
    check_remote_code(ckpt, "custom", trust_remote_code=False)  # plain Llama: fine
    config = json.loads((ckpt / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_custom.CustomForCausalLM"}
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(EvalkitError, match="--trust-remote-code") as err:
        check_remote_code(ckpt, "org/custom", trust_remote_code=False)
    assert "org/custom" in str(err.value) and "auto_map" in str(err.value)
    check_remote_code(ckpt, "org/custom", trust_remote_code=True)


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evalkit.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
    )


def test_score_by_hub_id_end_to_end(cache: Path, tmp_path: Path) -> None:
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "run"
    args = ["score", f"{REPO}@main", "--tasks", "smoke_arith_mc", "--limit", "4"]
    proc = _cli([*args, "--out", str(out), "--no-cache", "--device", "cpu"], env)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["hub"] == {"repo_id": REPO, "revision": "main", "commit": SHA}
    assert manifest["checkpoint"].endswith(f"snapshots/{SHA}")
    assert manifest["provenance"] is not None  # the snapshot's own provenance.yaml

    from evalkit.fingerprint import model_fingerprint

    assert manifest["model_fingerprint"] == model_fingerprint(TINY_BASE)

    missing = _cli(["score", "evalkit-test/absent", "--tasks", "smoke_arith_mc"], env)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    lines = [line for line in missing.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "evalkit-test/absent" in lines[0]
    assert "HF_HUB_OFFLINE" in lines[0] and "main" in lines[0]
