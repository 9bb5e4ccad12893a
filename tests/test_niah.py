"""Needle-in-a-haystack: the generator (exact lengths, depths, needle checks, haystacks), the
task on scripted fake models (perfect; failing beyond a length) and on the bundled checkpoint."""

from __future__ import annotations

import random
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from clirun import run_cli

import evalkit
from evalkit.api import ScoreRun
from evalkit.backends.fake import ByteTokenizer, NeedleReader
from evalkit.errors import EvalkitError, TaskCannotRun
from evalkit.tasks.base import WindowedTokenizer
from evalkit.tasks.probes import haystack as H
from evalkit.tasks.probes.niah import NiahTask, effective_length
from evalkit.tasks.registry import resolve_tasks

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "examples" / "checkpoints" / "tiny-base"

TASK_YAML = """
name: t_niah_{variant}
family: longctx
version: 1
kind: probe
probe: niah
variant: {variant}
haystack: {haystack}
lengths: {lengths}
depths: [0, 50, 100]
samples: 2
max_new_tokens: {new}
seed: 7
"""


@pytest.fixture(scope="module")
def tiny_tok() -> Iterator[WindowedTokenizer]:
    from evalkit.backends.hf_checkpoint import checkpoint_window, load_tokenizer

    tok = load_tokenizer(TINY)
    yield WindowedTokenizer(tok, checkpoint_window(TINY, tok))


def _prompt(
    tok: object, variant: str, hay: H.Haystack, n: int, depth: float, seed: int = 0
) -> H.NiahPrompt:
    needles, keys, answers = H.draw_needles(
        random.Random(seed), variant, hay, 0 if variant == "single" else 3
    )
    return H.build_prompt(tok, hay, needles, keys, answers, n, depth, random.Random(seed))  # type: ignore[arg-type]


# -- generator ----------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", H.VARIANTS)
@pytest.mark.parametrize("hay", ["noise", "prose"])
def test_prompts_are_exactly_the_asked_number_of_tokens(
    tiny_tok: WindowedTokenizer, variant: str, hay: str
) -> None:
    haystack = H.noise_haystack() if hay == "noise" else H.prose_haystack(3)
    for tok in (tiny_tok, WindowedTokenizer(ByteTokenizer(), 10_000)):
        for n in (800, 1111, 2500):
            for depth in (0.0, 0.3, 1.0):
                p = _prompt(tok, variant, haystack, n, depth, seed=n)
                assert len(tok.encode(p.prompt)) == n == p.n_tokens
                assert p.prompt.endswith(" is") or p.prompt.endswith(" are")  # answer prefix


def test_the_first_needle_sits_at_the_asked_depth_between_sentences(
    tiny_tok: WindowedTokenizer,
) -> None:
    hay = H.prose_haystack(1)
    longest = max(len(tiny_tok.encode_plain(" " + s)) for s in hay.sentences)
    for depth in (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0):
        p = _prompt(tiny_tok, "single", hay, 1500, depth)
        # The nearest sentence boundary: off by at most half of the longest sentence.
        assert abs(p.depth - depth) <= longest / 2 / p.haystack_tokens + 1e-9, depth
        body = p.prompt[len(H.HEADER) : p.prompt.index("\nQuestion:")]
        before, after = body.split(p.needles[0].text)
        assert before == "" or before.endswith(". "), before[-20:]
        assert after == "" or after.startswith(" "), after[:20]
        if depth == 0.0:
            assert before == ""
        if depth == 1.0:
            assert after == ""
        # Tokens of the haystack before the needle, measured on the prompt itself.
        measured = len(tiny_tok.encode_plain(before)) / p.haystack_tokens
        assert abs(measured - p.depth) < 0.02


def test_every_needle_survives_and_values_occur_only_in_their_needles(
    tiny_tok: WindowedTokenizer,
) -> None:
    for variant in H.VARIANTS:
        p = _prompt(tiny_tok, variant, H.noise_haystack(), 480, 0.5)
        decoded = tiny_tok.decode(tiny_tok.encode(p.prompt))
        for n in p.needles:
            assert p.prompt.count(n.text) == 1 and n.text in decoded
            assert p.prompt.count(n.value) == 1
        assert len({n.value for n in p.needles}) == len(p.needles)
        for c in p.controls:
            assert c not in p.prompt
    # The check itself fails loudly when a value also occurs in the haystack.
    p = _prompt(tiny_tok, "single", H.noise_haystack(), 300, 0.5)
    doctored = p.prompt.replace("The sky is blue.", f"The sky is {p.needles[0].value}.", 1)
    with pytest.raises(EvalkitError, match="outside its needle"):
        H.check_prompt(tiny_tok, doctored, p.needles, len(tiny_tok.encode(doctored)))
    with pytest.raises(EvalkitError, match="not 299"):
        H.check_prompt(tiny_tok, p.prompt, p.needles, 299)


def test_values_and_keys_found_in_the_haystack_are_never_drawn(tmp_path: Path) -> None:
    first = H.draw_needles(random.Random(5), "multikey", H.noise_haystack(), 3)
    taken = " ".join(f"{n.key} holds {n.value}." for n in first[0])
    f = tmp_path / "h.txt"
    f.write_text(f"Numbers abound. {taken} Nothing else.\n")
    hay = H.file_haystack(f)
    again = H.draw_needles(random.Random(5), "multikey", hay, 3)
    for n in again[0]:
        assert n.value not in hay.source and n.key not in hay.source
    assert {n.value for n in again[0]}.isdisjoint({n.value for n in first[0]})


def test_lengths_over_the_window_or_too_short_for_the_needles_are_skipped_with_why(
    tiny_tok: WindowedTokenizer, tmp_path: Path
) -> None:
    (tmp_path / "t.yaml").write_text(
        TASK_YAML.format(
            variant="multivalue", haystack="noise", new=40, lengths="[64, 512, 1024, window]"
        )
    )
    (task,) = resolve_tasks(["t_niah_multivalue"], tmp_path)
    assert isinstance(task, NiahTask)
    items = task.items(None, tiny_tok)
    assert task.run_lengths == (512,)  # 'window' is 512 too: one length
    assert {dict(i.tags)["length"] for i in items} == {512}
    assert len(items) == 3 * 2
    assert task.skipped[1024] == (6, "longer than the model's window of 512 tokens")
    assert "do not fit in 64 tokens" in task.skipped[64][1]
    notes = task.manifest_notes
    assert notes["skipped_lengths"]["1024"].startswith("longer than")
    assert notes["model_window"] == 512 and notes["lengths_run"] == [512]
    # Counts of items left out are run facts: the manifest's, never score rows.
    assert notes["skipped_items"] == {"len=64": 6, "len=1024": 6}
    names = {s.metric: s for s in task.summaries}
    assert "recall[len=512,depth=50]" in names
    assert not any(m.startswith(("skipped_items", "model_window")) for m in names)
    # Without a known window the task cannot run here (a suite skips it), naming what it needs.
    with pytest.raises(TaskCannotRun, match="needs the model's window"):
        task.items(None, WindowedTokenizer(tiny_tok.tokenizer, None))


def test_a_users_haystack_file_is_used_and_bad_ones_fail_in_one_line(
    tiny_tok: WindowedTokenizer, tmp_path: Path
) -> None:
    text = "Alpha beta gamma went home. Delta rode a horse! Did epsilon swim? Zeta slept.\n" * 3
    f = tmp_path / "essay.txt"
    f.write_text(text)
    (task,) = resolve_tasks(["longctx_niah_single"])
    assert isinstance(task, NiahTask)
    mine = task.with_haystack(f)
    items = mine.items(1, tiny_tok)
    assert items and all(str(dict(i.tags)["haystack"]).startswith("file:essay.txt:") for i in items)
    assert "Delta rode a horse!" in items[0].prompt and "grass" not in items[0].prompt
    bad = {
        "missing.txt": (None, "haystack file not found"),
        "empty.txt": ("  \n", "is empty"),
        "binary.bin": (b"\xff\xfe\x00abc", "not UTF-8"),
        "nul.txt": ("a\x00b. c d.", "NUL"),
        "one.txt": ("no sentence end here", "at least two sentences"),
    }
    for name, (content, message) in bad.items():
        p = tmp_path / name
        if isinstance(content, bytes):
            p.write_bytes(content)
        elif content is not None:
            p.write_text(content)
        with pytest.raises(EvalkitError, match=message):
            task.with_haystack(p)


def test_cli_haystack_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        # In this process (tests/clirun.py), from tmp_path as the working directory.
        return run_cli(
            "score", TINY, *args, "--out", tmp_path / "run", "--no-progress", "--no-cache",
            cwd=tmp_path,
        )  # fmt: skip

    for args, fragment in (
        (["--tasks", "longctx_niah_single", "--haystack", "nope.txt"], "haystack file not found"),
        (["--tasks", "smoke_arith_mc", "--haystack", "nope.txt"], "none is selected"),
    ):
        proc = run(*args)
        assert proc.returncode == 2, proc.stderr
        lines = [x for x in proc.stderr.splitlines() if x.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines
        assert not (tmp_path / "run").exists()


def test_effective_length_is_the_longest_length_before_recall_first_drops() -> None:
    assert effective_length({256: 1.0, 512: 0.9, 1024: 0.5, 2048: 1.0}, 0.85) == 512
    assert effective_length({256: 0.8, 512: 1.0}, 0.85) == 0
    assert effective_length({256: 0.85}, 0.85) == 256
    assert effective_length({256: float("nan")}, 0.85) == 0


# -- the task on scripted fakes ---------------------------------------------------------------


def _fake_run(tmp_path: Path, reader: NeedleReader, variants: tuple[str, ...]) -> ScoreRun:
    tdir = tmp_path / "tasks"
    tdir.mkdir(exist_ok=True)
    for v in variants:
        (tdir / f"{v}.yaml").write_text(
            TASK_YAML.format(
                variant=v,
                haystack="prose" if v == "multikey" else "noise",
                new=40,
                lengths="[1024, 2048, 3000, 4096, 8192, 16384]",
            )
        )
    return evalkit.score(
        "fake-ckpt",
        tasks=[f"t_niah_{v}" for v in variants],
        tasks_dir=tdir,
        backend=reader.backend(max_length=4096),
        out=tmp_path / f"run-{reader.fail_beyond}",
        use_cache=False,
        progress=False,
    )


def test_a_perfect_reader_has_recall_1_everywhere_and_the_window_as_effective_length(
    tmp_path: Path,
) -> None:
    run = _fake_run(tmp_path, NeedleReader(), H.VARIANTS)
    s = {(x.display_task, x.label): x for x in run.rows}
    for v in H.VARIANTS:
        t = f"t_niah_{v}"
        assert s[(t, "recall")].value == 1.0 and s[(t, "recall")].n == 4 * 3 * 2
        for n in (1024, 2048, 3000, 4096):
            assert s[(t, f"recall[len={n}]")].value == 1.0
            for d in (0, 50, 100):
                assert s[(t, f"recall[len={n},depth={d}]")].value == 1.0
        assert s[(t, "effective_length[recall>=0.85]")].value == 4096
        assert s[(t, "value_ll_gain")].value > 0
        assert (t, "skipped_items[len=8192]") not in s and (t, "model_window") not in s
        entry = next(e for e in run.manifest["tasks"] if e["name"] == t)
        assert entry["notes"]["skipped_items"] == {"len=8192": 6, "len=16384": 6}
        assert entry["notes"]["skipped_lengths"] == {
            "8192": "longer than the model's window of 4096 tokens",
            "16384": "longer than the model's window of 4096 tokens",
        }
    assert s[("t_niah_multikey", "distractor_ll_gain")].value > 0
    assert s[("family:longctx", "recall")].value == 1.0


@pytest.mark.parametrize("fail_beyond", [2048, 3000])
def test_a_reader_failing_beyond_a_length_has_exactly_that_effective_length(
    tmp_path: Path, fail_beyond: int
) -> None:
    run = _fake_run(tmp_path, NeedleReader(fail_beyond, new_tokens=40), ("single", "multiquery"))
    s = {(x.display_task, x.label): x.value for x in run.rows}
    for t in ("t_niah_single", "t_niah_multiquery"):
        assert s[(t, "effective_length[recall>=0.85]")] == fail_beyond
        for n in (1024, 2048, 3000, 4096):
            assert s[(t, f"recall[len={n}]")] == (1.0 if n <= fail_beyond else 0.0)


def test_the_printed_grid_states_threshold_effective_length_and_skips(tmp_path: Path) -> None:
    from rich.console import Console

    from evalkit.report.longctx import print_niah

    run = _fake_run(tmp_path, NeedleReader(2048, new_tokens=40), ("single",))
    console = Console(record=True, width=200)
    print_niah(run.rows, run.manifest, console)
    text = console.export_text()
    assert "recall >= 0.85" in text and "2048 tokens of the model's 4096" in text
    assert re.search(r"skipped lengths 8192, 16384: longer than the model's window", text)
    assert re.search(r"│\s+50 │\s+1\.00 │\s+1\.00 │\s+0\.00 │\s+0\.00 │", text), text


# -- the bundled checkpoint ---------------------------------------------------------------------


def test_tiny_base_runs_needle_tasks_at_every_length_its_window_allows(tmp_path: Path) -> None:
    run = evalkit.score(
        TINY,
        tasks=["longctx_niah_single", "longctx_niah_multikey"],
        limit=1,
        out=tmp_path / "run",
        use_cache=False,
        progress=False,
        device="cpu",
    )
    s = {(x.display_task, x.label): x for x in run.rows}
    assert run.manifest["max_length"] == 512
    assert sum(run.truncated_by_task.values()) == 0
    for entry in run.manifest["tasks"]:
        notes = entry["notes"]
        assert notes["model_window"] == 512
        run_lengths = notes["lengths_run"]
        assert run_lengths and max(run_lengths) == 512  # the window itself runs
        for n, why in notes["skipped_lengths"].items():
            # Every grid length the window allows ran, unless the needles alone overflow it.
            assert int(n) > 512 or "do not fit" in why, (n, why)
            assert int(n) not in run_lengths
        for n in run_lengths:
            assert (entry["name"], f"recall[len={n}]") in s
        eff = s[(entry["name"], "effective_length[recall>=0.85]")].value
        assert eff == 0 or eff in run_lengths
    assert ("longctx_niah_single", "recall[len=256]") in s


def test_olsson_takes_the_models_window_when_its_yaml_sets_none() -> None:
    (task,) = resolve_tasks(["icl_olsson"])
    items = task.items(1, WindowedTokenizer(ByteTokenizer(), 257))
    assert dict(items[0].tags)["late"] == 256 and dict(items[0].tags)["early"] == 25
    items = task.items(1, WindowedTokenizer(ByteTokenizer(), 4096))
    assert dict(items[0].tags)["late"] == 500 and dict(items[0].tags)["early"] == 50


def test_bracketed_metric_names_are_printed_not_eaten_as_markup() -> None:
    from rich.console import Console

    from evalkit.report.console import print_scores
    from evalkit.schema import ScoreRow

    console = Console(record=True, width=200)
    row = ScoreRow("t", "f", "recall", 1.0, 1.0, 1.0, 3, True, bucket=(("length", 512),
                   ("depth", 50)), label="recall[len=512,depth=50]")  # fmt: skip
    print_scores([row], console)
    assert "recall[len=512,depth=50]" in console.export_text()


def test_score_with_a_haystack_file_runs_the_needle_tasks_on_it(tmp_path: Path) -> None:
    f = tmp_path / "essay.txt"
    f.write_text("Rivers run to the sea. Mountains rise slowly! Who counts the stars? " * 5)
    run = evalkit.score(
        "fake-ckpt",
        tasks=["longctx_niah_single", "smoke_arith_mc"],
        backend=NeedleReader().backend(max_length=1024),
        haystack=f,
        limit=1,
        out=tmp_path / "run",
        use_cache=False,
        progress=False,
    )
    notes = next(e for e in run.manifest["tasks"] if e["name"] == "longctx_niah_single")["notes"]
    assert notes["haystack"].startswith("file:essay.txt:")
    s = {(x.display_task, x.label): x.value for x in run.rows}
    assert s[("longctx_niah_single", "recall")] == 1.0
    assert s[("longctx_niah_single", "effective_length[recall>=0.85]")] == 1024


def test_through_a_chat_template_needle_prompts_leave_the_template_room(tmp_path: Path) -> None:
    run = evalkit.score(
        ROOT / "examples" / "checkpoints" / "tiny-chat",
        tasks=["longctx_niah_single"],
        chat_template=True,
        limit=1,
        out=tmp_path / "run",
        use_cache=False,
        progress=False,
        device="cpu",
    )
    notes = run.manifest["tasks"][0]["notes"]
    assert 400 < notes["model_window"] < 512  # the template's tokens are taken off
    assert max(notes["lengths_run"]) == notes["model_window"]  # and 'window' still runs
    assert sum(run.truncated_by_task.values()) == 0
